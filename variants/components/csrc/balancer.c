/* Balancer (paper appendix A.3.1) backward on the CPU, for x and its gradient as
 * row-major (frames, channels) float32 matrices: see balancer.py (_fused_backward,
 * affine_loss_grad, _moment_grads) for the closed form this follows. */
#include <stdlib.h>
#include "kernels.h"

static inline double sgn(double v) { return (double)((v > 0.0) - (v < 0.0)); }
static inline double clampd(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Per-channel (A, B) with the scaled constraint gradient A + B x, from s1 = sum x and
 * s2 = sum x^2 over n frames (balancer.affine_loss_grad, _moment_grads). */
static void affine_coefficients(const double *s1, const double *s2, int64_t n, int64_t c,
                                double min_mean, double max_mean, double min_rms, double max_rms,
                                double grad_scale, float *A, float *B) {
    for (int64_t j = 0; j < c; j++) {
        double mean = s1[j] / (double)n, u = s2[j] / (double)n;
        double var = u - mean * mean;
        double sd = sqrt(var > 1e-20 ? var : 1e-20);
        double rms = sqrt(u > 1e-20 ? u : 1e-20);
        double m = mean / sd;
        double dm = sgn(m - clampd(m, min_mean, max_mean));
        double q = log(clampd(rms, min_rms, max_rms) / rms);
        double drms = -sgn(q) / rms;
        double dsd_dvar = (var >= 1e-20 ? 1.0 : 0.0) * 0.5 / sd;
        double dm_dvar = -m / sd * dsd_dvar;
        double d_mean = dm * (1.0 / sd + dm_dvar * (-2.0 * mean));
        double d_u = dm * dm_dvar + drms * (u >= 1e-20 ? 1.0 : 0.0) * 0.5 / rms;
        double a = d_mean / (double)n, b = d_u * (2.0 / (double)n);
        double cc = a + b * mean;
        double v = var > 0.0 ? var : 0.0;
        double r = sqrt(cc * cc + b * b * v);
        double coef = grad_scale / (r > 1e-20 ? r : 1e-20);
        A[j] = (float)(cc * coef - b * coef * mean);
        B[j] = (float)(b * coef);
    }
}

/* balancer_extra_2d for rows with strides: row i of x, g and out starts at
 * i * ldx, i * ldg and i * ldo (a slice of a wider matrix, e.g. a projection's output). */
KERNEL balancer_extra_rows(const float *x, int64_t ldx, const float *g, int64_t ldg, float *out,
                           int64_t ldo, int64_t n, int64_t c, double min_mean, double max_mean,
                           double min_rms, double max_rms, double grad_scale) {
    double *s = calloc((size_t)(2 * c), sizeof(double));
    float *ab = malloc((size_t)(2 * c) * sizeof(float));
    double *s1 = s, *s2 = s + c;
    float *A = ab, *B = ab + c;
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * ldx;
        for (int64_t j = 0; j < c; j++) {
            double v = (double)xr[j];
            s1[j] += v;
            s2[j] += v * v;
        }
    }
    affine_coefficients(s1, s2, n, c, min_mean, max_mean, min_rms, max_rms, grad_scale, A, B);
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * ldx, *gr = g + i * ldg;
        float *o = out + i * ldo;
        for (int64_t j = 0; j < c; j++) {
            float gv = gr[j];
            o[j] = gv + fabsf(gv) * (A[j] + B[j] * xr[j]);
        }
    }
    free(s);
    free(ab);
}

/* out = g + |g| (A + B x) with (A, B) from x's per-channel moments (float64 sums):
 * two passes over x, one over g; out may be g. */
KERNEL balancer_extra_2d(const float *x, const float *g, float *out, int64_t n, int64_t c,
                         double min_mean, double max_mean, double min_rms, double max_rms,
                         double grad_scale) {
    balancer_extra_rows(x, c, g, c, out, c, n, c, min_mean, max_mean, min_rms, max_rms, grad_scale);
}
