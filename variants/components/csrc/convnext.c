/* ConvNeXt (Conv-Embed, paper section 3.1) on the CPU: the elementwise work around the
 * point-wise matrix products of convnext.py's _FusedHiddenCPU, and the depth-wise
 * convolution's weight gradient, for channels-last tensors seen as row-major
 * (frames, channels) float32 matrices. */
#include <stdlib.h>
#include <string.h>
#include "kernels.h"

/* The hidden layer's forward, in place of its matrix product m (n x c, no bias):
 * h = m + bias, z = h - offset, a = softplus(z) - 0.08 z (SwooshL(h) + constant; softplus as
 * max(log(1 + exp(min(z, 80))), z), as csrc/swoosh.c), and the derivative's rounded level
 * q = floor(sigmoid(z) / step + 0.5) as a byte (sigmoid(z) in [0, 1]: q in [0, 255]; it stands
 * for q step + deriv_min, see convnext_grad_levels). keep_h: m becomes h. */
KERNEL convnext_hidden_levels(float *restrict m, const float *restrict bias, float *restrict a,
                               uint8_t *restrict q, int64_t n, int64_t c, float offset, float step,
                               int keep_h) {
    const float inv = 1.0f / step;
    for (int64_t i = 0; i < n; i++) {
        float *mr = m + i * c, *ar = a + i * c;
        uint8_t *qr = q + i * c;
        for (int64_t j = 0; j < c; j++) {
            float h = mr[j] + bias[j];
            float z = h - offset, e;
            ar[j] = softplus_and_exp(z, &e) - 0.08f * z;
            qr[j] = (uint8_t)(int32_t)derivative_level(e, inv);
            if (keep_h)
                mr[j] = h;
        }
    }
}

/* The branch's output and the residual, in place of the second matrix product o
 * (bsz * rows x c, no bias): o = (o + bias) * keep[utterance] + x (keep: the layer drop's 0/1
 * per utterance, or all 1 when use_keep is 0). */
KERNEL convnext_residual(float *restrict o, const float *restrict bias, const float *restrict keep,
                         const float *restrict x, int64_t bsz, int64_t rows, int64_t c, int use_keep) {
    for (int64_t b = 0; b < bsz; b++) {
        float k = use_keep ? keep[b] : 1.0f;
        for (int64_t r = 0; r < rows; r++) {
            float *orow = o + (b * rows + r) * c;
            const float *xr = x + (b * rows + r) * c;
            for (int64_t j = 0; j < c; j++)
                orow[j] = (orow[j] + bias[j]) * k + xr[j];
        }
    }
}

/* Per-channel sums of an n x c matrix (float64 accumulation) into s. */
static void column_sums(const float *g, float *s, int64_t n, int64_t c) {
    double *acc = calloc((size_t)c, sizeof(double));
    float *row = malloc((size_t)c * sizeof(float));
    /* float partial sums over blocks of 64 rows, added up in float64 */
    for (int64_t i0 = 0; i0 < n; i0 += 64) {
        int64_t i1 = i0 + 64 < n ? i0 + 64 : n;
        memset(row, 0, (size_t)c * sizeof(float));
        for (int64_t i = i0; i < i1; i++) {
            const float *gr = g + i * c;
            for (int64_t j = 0; j < c; j++)
                row[j] += gr[j];
        }
        for (int64_t j = 0; j < c; j++)
            acc[j] += row[j];
    }
    for (int64_t j = 0; j < c; j++)
        s[j] = (float)acc[j];
    free(acc);
    free(row);
}

/* g2 = grad * keep[utterance] (use_keep; else g2 is not written and grad is summed) and
 * s = the per-channel sums of g2. */
KERNEL convnext_grad_out(const float *restrict grad, const float *restrict keep, float *restrict g2,
                         float *restrict s, int64_t bsz, int64_t rows, int64_t c, int use_keep) {
    if (use_keep) {
        for (int64_t b = 0; b < bsz; b++) {
            float k = keep[b];
            const float *gb = grad + b * rows * c;
            float *ob = g2 + b * rows * c;
            for (int64_t i = 0; i < rows * c; i++)
                ob[i] = gb[i] * k;
        }
        column_sums(g2, s, bsz * rows, c);
    } else {
        column_sums(grad, s, bsz * rows, c);
    }
}

/* The hidden layer's backward: g *= q step + deriv_min (the derivative the level q of
 * convnext_hidden_levels stands for), and when do_sum the per-channel sums of the product
 * into s. */
KERNEL convnext_grad_levels(float *restrict g, const uint8_t *restrict q, float *restrict s,
                            int64_t n, int64_t c, float step, float deriv_min, int do_sum) {
    for (int64_t i = 0; i < n * c; i++)
        g[i] *= (float)q[i] * step + deriv_min;
    if (do_sum)
        column_sums(g, s, n, c);
}

/* One channel block of 16 of the depth-wise weight gradient for one kernel row: for the
 * frames t of an utterance whose shifted frame t + sh exists, out[j] += sum_f g[t, f] x[t + sh,
 * f + j - pw] (zero outside the F bins; the sum over f in float). kw is a constant where
 * inlined below. */
/* 16 floats as one value (GCC/Clang vector extension; unaligned loads and stores through
 * memcpy): the accumulators below stay in registers. */
typedef float v16 __attribute__((vector_size(64)));

static inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The general kernel width (accumulators in memory). */
static void dw_row(const float *restrict x, const float *restrict g, double *restrict out, int64_t t0,
                   int64_t t1, int64_t sh, int64_t f, int64_t c, int64_t cb, int64_t kw) {
    const int64_t pw = (kw - 1) / 2;
    v16 *acc = aligned_alloc(sizeof(v16), (size_t)kw * sizeof(v16));   /* v16 is 64-byte aligned */
    for (int64_t t = t0; t < t1; t++) {
        const float *gr = g + t * f * c + cb, *xr = x + (t + sh) * f * c + cb;
        for (int64_t j = 0; j < kw; j++)
            acc[j] = (v16){0};
        for (int64_t fo = 0; fo < f; fo++) {
            v16 gv = load16(gr + fo * c);
            for (int64_t j = 0; j < kw; j++) {
                int64_t fi = fo + j - pw;
                if (fi >= 0 && fi < f)
                    acc[j] += gv * load16(xr + fi * c);
            }
        }
        for (int64_t j = 0; j < kw; j++)
            for (int k = 0; k < 16; k++)
                out[j * c + k] += acc[j][k];
    }
    free(acc);
}

/* Width 7 (ConvNeXt's): the seven accumulators in registers. */
static void dw_row7(const float *restrict x, const float *restrict g, double *restrict out, int64_t t0,
                    int64_t t1, int64_t sh, int64_t f, int64_t c, int64_t cb) {
    for (int64_t tb = t0; tb < t1; tb += 4) {
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0};
        for (int64_t t = tb; t < t1 && t < tb + 4; t++) {
            const float *gr = g + t * f * c + cb, *xr = x + (t + sh) * f * c + cb;
#define TAP(J) do { int64_t fi = fo + (J) - 3; \
                    if (fi >= 0 && fi < f) a##J += gv * load16(xr + fi * c); } while (0)
            for (int64_t fo = 0; fo < f; fo++) {
                v16 gv = load16(gr + fo * c);
                if (fo >= 3 && fo + 3 < f) {        /* every tap inside the bins */
                    const float *xv = xr + (fo - 3) * c;
                    a0 += gv * load16(xv);
                    a1 += gv * load16(xv + c);
                    a2 += gv * load16(xv + 2 * c);
                    a3 += gv * load16(xv + 3 * c);
                    a4 += gv * load16(xv + 4 * c);
                    a5 += gv * load16(xv + 5 * c);
                    a6 += gv * load16(xv + 6 * c);
                } else {
                    TAP(0); TAP(1); TAP(2); TAP(3); TAP(4); TAP(5); TAP(6);
                }
            }
#undef TAP
        }
        v16 acc[7] = {a0, a1, a2, a3, a4, a5, a6};
        for (int64_t j = 0; j < 7; j++)
            for (int k = 0; k < 16; k++)
                out[j * c + k] += acc[j][k];
    }
}

/* The weight gradient dw (c, kh, kw) of a depth-wise convolution with 'same' zero padding
 * ((kh - 1) / 2, (kw - 1) / 2) and odd kernel, from its input x and its output's gradient g,
 * both channels-last (bsz, t, f, c) contiguous, c a multiple of 16: dw[c, i, j] = sum
 * g[b, t, f, c] x[b, t + i - ph, f + j - pw, c]; and db (c) = sum g (the bias gradient).
 * Float partial sums per frame, kernel row and channel block, added up in float64. */
KERNEL depthwise_weight_grad_cl(const float *restrict x, const float *restrict g, float *restrict dw,
                                float *restrict db, int64_t bsz, int64_t t, int64_t f, int64_t c,
                                int64_t kh, int64_t kw) {
    const int64_t ph = (kh - 1) / 2;
    double *acc = calloc((size_t)(kh * kw * c), sizeof(double));
    for (int64_t b = 0; b < bsz; b++) {
        const float *xb = x + b * t * f * c, *gb = g + b * t * f * c;
        for (int64_t i = 0; i < kh; i++) {
            int64_t sh = i - ph;
            int64_t t0 = sh < 0 ? -sh : 0, t1 = sh > 0 ? t - sh : t;
            if (t1 <= t0)
                continue;
            for (int64_t cb = 0; cb < c; cb += 16) {
                double *out = acc + i * kw * c + cb;
                if (kw == 7)
                    dw_row7(xb, gb, out, t0, t1, sh, f, c, cb);
                else
                    dw_row(xb, gb, out, t0, t1, sh, f, c, cb, kw);
            }
        }
    }
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t i = 0; i < kh; i++)
            for (int64_t j = 0; j < kw; j++)
                dw[(ch * kh + i) * kw + j] = (float)acc[(i * kw + j) * c + ch];
    free(acc);
    column_sums(g, db, bsz * t * f, c);
}

/* out = bias + the depth-wise convolution of x with 'same' zero padding, kernel (kh, kw) with
 * kw = 7 (ConvNeXt's), plus res where use_res; x, res, out channels-last (bsz, t, f, c)
 * contiguous, c a multiple of 16; wt the weights as (kh * kw, c) (tap-major). The input's
 * gradient is the same loop with the kernel flipped and res the residual's gradient. */
KERNEL depthwise_conv7_cl(const float *restrict x, const float *restrict wt, const float *restrict bias,
                          const float *restrict res, float *restrict out, int64_t bsz, int64_t t,
                          int64_t f, int64_t c, int64_t kh, int use_res) {
    const int64_t ph = (kh - 1) / 2;
    for (int64_t b = 0; b < bsz; b++) {
        for (int64_t to = 0; to < t; to++) {
            float *orow = out + (b * t + to) * f * c;
            const float *rrow = res + (b * t + to) * f * c;
            for (int64_t cb = 0; cb < c; cb += 16) {
                v16 bv = load16(bias + cb);
                for (int64_t fo = 0; fo < f; fo++) {
                    v16 v = bv;
                    if (use_res)
                        v += load16(rrow + fo * c + cb);
                    memcpy(orow + fo * c + cb, &v, sizeof v);
                }
                for (int64_t i = 0; i < kh; i++) {
                    int64_t ti = to + i - ph;
                    if (ti < 0 || ti >= t)
                        continue;
                    const float *xr = x + (b * t + ti) * f * c + cb;
                    const float *wr = wt + i * 7 * c + cb;
                    v16 w0 = load16(wr), w1 = load16(wr + c), w2 = load16(wr + 2 * c),
                        w3 = load16(wr + 3 * c), w4 = load16(wr + 4 * c), w5 = load16(wr + 5 * c),
                        w6 = load16(wr + 6 * c);
                    /* input bin n reaches outputs n - 3 .. n + 3: their sums so far in a0 .. a6;
                     * output n - 3 is complete after bin n (this kernel row) */
                    float *ob = orow + cb;
                    v16 z = {0};
                    v16 a0 = z, a1 = z, a2 = z;
                    v16 a3 = load16(ob), a4 = f > 1 ? load16(ob + c) : z,
                        a5 = f > 2 ? load16(ob + 2 * c) : z, a6 = f > 3 ? load16(ob + 3 * c) : z;
                    for (int64_t n = 0; n < f; n++) {
                        v16 xv = load16(xr + n * c);
                        a0 += w6 * xv;
                        a1 += w5 * xv;
                        a2 += w4 * xv;
                        a3 += w3 * xv;
                        a4 += w2 * xv;
                        a5 += w1 * xv;
                        a6 += w0 * xv;
                        if (n >= 3)
                            memcpy(ob + (n - 3) * c, &a0, sizeof a0);
                        a0 = a1; a1 = a2; a2 = a3; a3 = a4; a4 = a5; a5 = a6;
                        a6 = n + 4 < f ? load16(ob + (n + 4) * c) : z;
                    }
                    /* outputs f - 3 .. f - 1 */
                    if (f >= 3)
                        memcpy(ob + (f - 3) * c, &a0, sizeof a0);
                    if (f >= 2)
                        memcpy(ob + (f - 2) * c, &a1, sizeof a1);
                    memcpy(ob + (f - 1) * c, &a2, sizeof a2);
                }
            }
        }
    }
}
