/* Small per-frame computations of the Zipformer encoder's layers on the CPU, each one
 * C call in place of several small torch ops: BiasNorm (paper section 3.3, eq. 2; see
 * bias_norm.py) forward and backward, limit_param_value's backward (param_limit.py) and
 * Bypass's combination (lean_autograd.bypass_combine). Channels last. */
#include <stdlib.h>
#include "kernels.h"

/* rms[i] = sqrt(max(mean_j (x_ij - b_j)^2, 1e-20)), y = x / rms * exp(log_scale). */
KERNEL bias_norm_forward(const float *x, const float *bias, float *restrict y, float *restrict rms,
                         int64_t n, int64_t c, float log_scale) {
    const float scale = expf(log_scale);
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * c;
        float *yr = y + i * c;
        double s = 0.0;
        float acc[16] = {0};
        int64_t j = 0;
        for (; j + 16 <= c; j += 16)
            for (int k = 0; k < 16; k++) {
                float v = xr[j + k] - bias[j + k];
                acc[k] += v * v;
            }
        for (; j < c; j++) {
            float v = xr[j] - bias[j];
            s += (double)v * v;
        }
        for (int k = 0; k < 16; k++)
            s += acc[k];
        double m = s / (double)c;
        float r = (float)sqrt(m > 1e-20 ? m : 1e-20);
        rms[i] = r;
        for (j = 0; j < c; j++)
            yr[j] = xr[j] / r * scale;
    }
}

/* The gradients of y = x / rms * scale, scale = exp(log_scale), from g = dL/dy:
 * with gx_i = sum_j g_ij x_ij and coef_i = gx_i scale / (c rms_i^3) (0 where rms_i <= 1e-10,
 * the clamp's flat side), gx = g scale / rms - (x - b) coef, gb = sum_i (x - b) coef,
 * glog[0] = sum_i gx_i scale / rms_i (float64 sums over frames). */
KERNEL bias_norm_backward(const float *x, const float *bias, const float *rms, const float *g,
                          float *restrict gx, float *restrict gb, float *restrict glog,
                          int64_t n, int64_t c, float log_scale) {
    const float scale = expf(log_scale);
    double *sb = calloc((size_t)c, sizeof(double));
    double sl = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * c, *gr = g + i * c;
        float *o = gx + i * c;
        float acc[16] = {0};
        double dot = 0.0;
        int64_t j = 0;
        for (; j + 16 <= c; j += 16)
            for (int k = 0; k < 16; k++)
                acc[k] += gr[j + k] * xr[j + k];
        for (; j < c; j++)
            dot += (double)gr[j] * xr[j];
        for (int k = 0; k < 16; k++)
            dot += acc[k];
        const float r = rms[i];
        const float d = (float)dot;
        const float coef = r > 1e-10f ? d * scale / (r * r * r) / (float)c : 0.0f;
        const float sr = scale / r;
        for (j = 0; j < c; j++) {
            float cc = (xr[j] - bias[j]) * coef;
            o[j] = gr[j] * sr - cc;
            sb[j] += cc;
        }
        sl += (double)(d * sr);
    }
    for (int64_t j = 0; j < c; j++)
        gb[j] = (float)sb[j];
    glog[0] = (float)sl;
    free(sb);
}

/* limit_param_value's backward (param_limit.py): out = -g where g would move x further
 * below lo or above hi, else g (exact: a sign flip). */
KERNEL limit_param_grad(const float *x, const float *g, float *out, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i], xi = x[i];
        int flip = (gi > 0.0f && xi < lo) || (gi < 0.0f && xi > hi);
        out[i] = flip ? -gi : gi;
    }
}

/* lean_autograd.bypass_combine: out = x + (y - x) c for x, y (b, t, ch) rows with strides
 * ldx, ldy (out contiguous), c (ch) or, per_batch, (b, 1, ch). */
KERNEL bypass_forward(const float *x, int64_t ldx, const float *y, int64_t ldy, const float *c,
                      float *restrict out, int64_t b, int64_t t, int64_t ch, int per_batch) {
    for (int64_t bi = 0; bi < b; bi++) {
        const float *cb = per_batch ? c + bi * ch : c;
        for (int64_t ti = 0; ti < t; ti++) {
            const int64_t i = bi * t + ti;
            const float *xr = x + i * ldx, *yr = y + i * ldy;
            float *o = out + i * ch;
            for (int64_t j = 0; j < ch; j++)
                o[j] = xr[j] + (yr[j] - xr[j]) * cb[j];
        }
    }
}

/* Its backward from g (row stride ldg): gy = g c, gx = g - g c, gc = sum over frames (of each
 * batch entry, per_batch) of g (y - x) (float64 sums); gx, gy or gc NULL: not computed. */
KERNEL bypass_backward(const float *g, int64_t ldg, const float *x, int64_t ldx, const float *y,
                       int64_t ldy, const float *c, float *gx, float *gy, float *gc, int64_t b,
                       int64_t t, int64_t ch, int per_batch) {
    double *acc = gc ? calloc((size_t)ch, sizeof(double)) : NULL;
    for (int64_t bi = 0; bi < b; bi++) {
        const float *cb = per_batch ? c + bi * ch : c;
        for (int64_t ti = 0; ti < t; ti++) {
            const int64_t i = bi * t + ti;
            const float *gr = g + i * ldg;
            if (gx || gy) {
                float *ox = gx ? gx + i * ch : NULL, *oy = gy ? gy + i * ch : NULL;
                for (int64_t j = 0; j < ch; j++) {
                    float gyc = gr[j] * cb[j];
                    if (oy) oy[j] = gyc;
                    if (ox) ox[j] = gr[j] - gyc;
                }
            }
            if (acc) {
                const float *xr = x + i * ldx, *yr = y + i * ldy;
                for (int64_t j = 0; j < ch; j++)
                    acc[j] += (double)(gr[j] * (yr[j] - xr[j]));
            }
        }
        if (acc && (per_batch || bi == b - 1)) {
            float *o = per_batch ? gc + bi * ch : gc;
            for (int64_t j = 0; j < ch; j++) {
                o[j] = (float)acc[j];
                acc[j] = 0.0;
            }
        }
    }
    free(acc);
}

/* lean_autograd.weighted_group_sum (Downsample): y[b, o] = sum_j w[j] x[b, idx[b, o k + j]]
 * over frames of c channels; x (b, t, c) with strides (sxb, sxt, 1), idx (b, tout k) with
 * strides (sib, sit) (the same index for every channel), y (b, tout, c) contiguous. */
KERNEL group_sum_forward(const float *x, int64_t sxb, int64_t sxt, const int64_t *idx,
                         int64_t sib, int64_t sit, const float *w, float *restrict y, int64_t b,
                         int64_t tout, int64_t k, int64_t c) {
    for (int64_t bi = 0; bi < b; bi++)
        for (int64_t o = 0; o < tout; o++) {
            float *yr = y + (bi * tout + o) * c;
            for (int64_t j = 0; j < k; j++) {
                const float *xr = x + bi * sxb + idx[bi * sib + (o * k + j) * sit] * sxt;
                const float wj = w[j];
                if (j == 0)
                    for (int64_t ci = 0; ci < c; ci++)
                        yr[ci] = xr[ci] * wj;
                else
                    for (int64_t ci = 0; ci < c; ci++)
                        yr[ci] += xr[ci] * wj;
            }
        }
}

/* Its backward from g (b, tout, c) contiguous: gx (b, t, c) contiguous, zeroed here, gets
 * g w[j] added at each gathered frame (gx NULL: not computed); gw[j] = sum of g x over the
 * frames gathered j-th (float64 sums; gw NULL: not computed). */
KERNEL group_sum_backward(const float *g, const float *x, int64_t sxb, int64_t sxt,
                          const int64_t *idx, int64_t sib, int64_t sit, const float *w,
                          float *gx, float *gw, int64_t b, int64_t t, int64_t tout, int64_t k,
                          int64_t c) {
    if (gx)
        for (int64_t i = 0; i < b * t * c; i++)
            gx[i] = 0.0f;
    double *acc = gw ? calloc((size_t)k, sizeof(double)) : NULL;
    for (int64_t bi = 0; bi < b; bi++)
        for (int64_t o = 0; o < tout; o++) {
            const float *gr = g + (bi * tout + o) * c;
            for (int64_t j = 0; j < k; j++) {
                const int64_t src = idx[bi * sib + (o * k + j) * sit];
                if (gx) {
                    float *gxr = gx + (bi * t + src) * c;
                    const float wj = w[j];
                    for (int64_t ci = 0; ci < c; ci++)
                        gxr[ci] += gr[ci] * wj;
                }
                if (acc) {
                    const float *xr = x + bi * sxb + src * sxt;
                    float s[16] = {0};
                    int64_t ci = 0;
                    for (; ci + 16 <= c; ci += 16)
                        for (int q = 0; q < 16; q++)
                            s[q] += gr[ci + q] * xr[ci + q];
                    double d = 0.0;
                    for (; ci < c; ci++)
                        d += (double)(gr[ci] * xr[ci]);
                    for (int q = 0; q < 16; q++)
                        d += s[q];
                    acc[j] += d;
                }
            }
        }
    if (acc) {
        for (int64_t j = 0; j < k; j++)
            gw[j] = (float)acc[j];
        free(acc);
    }
}
