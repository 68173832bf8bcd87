/* Whitener (paper appendix A.3.2) backward on the CPU, around the two matrix products
 * torch does (C = xc^T xc and xc dM/dC): see whitener.py (_c_backward, the closed form
 * in _fused_backward's docstring). x and its gradient are (frames, channels) matrices
 * with unit channel stride and a row stride (ld) each; the channels split into `groups`
 * groups of dg. */
#include <stdlib.h>
#include "kernels.h"

/* sum of p[i]^2 in float64, in 16 partial sums (so the loop vectorises) */
static double sum_squares(const float *p, int64_t n) {
    double acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++)
            acc[k] += (double)p[i + k] * (double)p[i + k];
    double s = 0.0;
    for (; i < n; i++)
        s += (double)p[i] * (double)p[i];
    for (int k = 0; k < 16; k++)
        s += acc[k];
    return s;
}

/* xc (groups, n, dg), contiguous: x centred per channel (float64 means). */
KERNEL whitener_centre(const float *x, int64_t ldx, float *restrict xc, int64_t n,
                       int64_t groups, int64_t dg) {
    const int64_t c = groups * dg;
    double *s = calloc((size_t)c, sizeof(double));
    float *mean = malloc((size_t)c * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * ldx;
        for (int64_t j = 0; j < c; j++)
            s[j] += (double)xr[j];
    }
    for (int64_t j = 0; j < c; j++)
        mean[j] = (float)(s[j] / (double)n);
    for (int64_t g = 0; g < groups; g++) {
        const float *mg = mean + g * dg;
        float *out = xc + g * n * dg;
        for (int64_t i = 0; i < n; i++) {
            const float *xr = x + i * ldx + g * dg;
            float *o = out + i * dg;
            for (int64_t j = 0; j < dg; j++)
                o[j] = xr[j] - mg[j];
        }
    }
    free(s);
    free(mean);
}

/* From C (groups, dg, dg): the metric M = s / (t^2 + 1e-20), s = sum C^2 / K,
 * t = trace C / K, K = groups dg (float64 sums), into info[0]; info[1] = 1 where M is
 * not below `limit` (float32 comparison, as the torch path's), else 0; the Whitener's
 * next probability *prob = pmax or pmin accordingly. Where M is not below the limit,
 * C is overwritten with dM/dC = (2 C - 2 s t / (t^2 + 1e-20) I) / (K (t^2 + 1e-20)). */
KERNEL whitener_metric(float *cov, int64_t groups, int64_t dg, float limit, double *info,
                       double *prob, double pmin, double pmax) {
    const int64_t k = groups * dg, per = dg * dg;
    double tr = 0.0, sq = 0.0;
    for (int64_t g = 0; g < groups; g++) {
        const float *cg = cov + g * per;
        for (int64_t i = 0; i < dg; i++)
            tr += (double)cg[i * dg + i];
        sq += sum_squares(cg, per);
    }
    double t = tr / (double)k, s = sq / (double)k;
    double den = t * t + 1e-20;
    double metric = s / den;
    int above = !((float)metric < limit);
    info[0] = metric;
    info[1] = above;
    *prob = above ? pmax : pmin;
    if (!above)
        return;
    const float a = (float)(2.0 / ((double)k * den));
    const float diag = (float)(2.0 * s * t / ((double)k * den * den));
    for (int64_t g = 0; g < groups; g++) {
        float *cg = cov + g * per;
        for (int64_t i = 0; i < per; i++)
            cg[i] *= a;
        for (int64_t i = 0; i < dg; i++)
            cg[i * dg + i] -= diag;
    }
}

/* out = g + half * scale, scale = 2 grad_scale ||g|| / (2 ||half|| + 1e-20) (the penalty
 * gradient 2 half scaled to grad_scale ||g||; float64 norms); half is (groups, n, dg)
 * contiguous, g and out (n, groups dg) with row strides ldg and ldo. out may be half
 * where groups is 1 and ldo is dg. */
KERNEL whitener_add(const float *half, const float *g, int64_t ldg, float *out, int64_t ldo,
                    int64_t n, int64_t groups, int64_t dg, double grad_scale) {
    const int64_t c = groups * dg, total = groups * n * dg;
    double gg = 0.0, hh = 0.0;
    hh = sum_squares(half, total);
    if (ldg == c)
        gg = sum_squares(g, n * c);
    else
        for (int64_t i = 0; i < n; i++)
            gg += sum_squares(g + i * ldg, c);
    const float scale = (float)(grad_scale * sqrt(gg) / (2.0 * sqrt(hh) + 1e-20) * 2.0);
    for (int64_t gi = 0; gi < groups; gi++) {
        const float *hg = half + gi * n * dg;
        for (int64_t i = 0; i < n; i++) {
            const float *hr = hg + i * dg, *gr = g + i * ldg + gi * dg;
            float *o = out + i * ldo + gi * dg;
            for (int64_t j = 0; j < dg; j++)
                o[j] = gr[j] + hr[j] * scale;
        }
    }
}
