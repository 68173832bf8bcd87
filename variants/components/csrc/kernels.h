/* Shared by the fused CPU loops (see ../cpu_kernels.py).
 *
 * KERNEL marks a function the loader exposes: cpu_kernels.py reads each
 * "KERNEL name(args)" prototype from the sources and gives ctypes its argument
 * types (pointer, int64_t, float, double), so a signature is written once, here.
 * Loops are plain C over raw float32 (or float64) arrays, written for the compiler's
 * vectoriser (-O3 -march=native); exp and log vectorise through glibc's libmvec
 * (the declarations below; the same functions, 4 ulp, as -ffast-math would pick,
 * without fast-math's other licences: NaN and infinity keep IEEE meaning).
 */
#ifndef HARNESS_KERNELS_H
#define HARNESS_KERNELS_H
#include <math.h>
#include <stdint.h>
#include <stddef.h>

#define KERNEL __attribute__((visibility("default"))) void

#if defined(__x86_64__) && defined(__GLIBC__) && defined(HARNESS_LIBMVEC)
__attribute__((simd("notinbranch"))) float expf(float);
__attribute__((simd("notinbranch"))) float logf(float);
__attribute__((simd("notinbranch"))) double exp(double);
__attribute__((simd("notinbranch"))) double log(double);
#endif

#endif
