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

/* softplus(z) = log(1 + exp(z)) as max(log(1 + exp(min(z, 80))), z): exp cannot overflow, and
 * above z = 20 it rounds to z, as torch's softplus; *e = exp(min(z, 80)), from which
 * sigmoid(z) = e / (1 + e). Swoosh (paper eq. 6-7) is softplus(x - offset) - 0.08 x - constant. */
static inline float softplus_and_exp(float z, float *e) {
    float ez = expf(z < 80.0f ? z : 80.0f);
    float sp = logf(1.0f + ez);
    *e = ez;
    return sp > z ? sp : z;
}

/* The rounded level of a Swoosh derivative sigmoid(z) - 0.08 from e = exp(min(z, 80)):
 * floor(sigmoid(z) / step + 0.5) for inv = 1 / step; it stands for level * step + deriv_min. */
static inline float derivative_level(float e, float inv) {
    return floorf(e / (1.0f + e) * inv + 0.5f);
}

#endif
