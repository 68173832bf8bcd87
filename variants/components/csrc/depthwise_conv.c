/* Depth-wise 1-d convolution over time (the Zipformer convolution module's, paper
 * section 3.1) on the CPU, for x held as row-major (B, T, C): one output frame is a
 * weighted sum of K input frames, channel by channel, so every inner loop runs over the
 * C contiguous channels. Zero padding of (K - 1) / 2 frames on each side, stride 1.
 * The weight arrives transposed, wt (K, C); bias (C) may be NULL. */
#include "kernels.h"

KERNEL depthwise_conv1d_forward(const float *restrict x, const float *restrict wt,
                                const float *restrict bias, float *restrict y,
                                int64_t b, int64_t t, int64_t c, int64_t k) {
    const int64_t pad = (k - 1) / 2;
    for (int64_t n = 0; n < b; n++) {
        const float *xb = x + n * t * c;
        float *yb = y + n * t * c;
        for (int64_t i = 0; i < t; i++) {
            float *yr = yb + i * c;
            for (int64_t j = 0; j < c; j++)
                yr[j] = bias ? bias[j] : 0.0f;
            int64_t k0 = pad - i > 0 ? pad - i : 0;
            int64_t k1 = t + pad - i < k ? t + pad - i : k;
            for (int64_t q = k0; q < k1; q++) {
                const float *xr = xb + (i + q - pad) * c;
                const float *wr = wt + q * c;
                for (int64_t j = 0; j < c; j++)
                    yr[j] += wr[j] * xr[j];
            }
        }
    }
}

/* Gradients of the above from g (B, T, C): gx (B, T, C) if not NULL, gwt (K, C) and
 * gbias (C) (if not NULL) overwritten. */
KERNEL depthwise_conv1d_backward(const float *restrict x, const float *restrict wt,
                                 const float *restrict g, float *restrict gx,
                                 float *restrict gwt, float *restrict gbias,
                                 int64_t b, int64_t t, int64_t c, int64_t k) {
    const int64_t pad = (k - 1) / 2;
    for (int64_t j = 0; j < k * c; j++)
        gwt[j] = 0.0f;
    if (gbias)
        for (int64_t j = 0; j < c; j++)
            gbias[j] = 0.0f;
    for (int64_t n = 0; n < b; n++) {
        const float *xb = x + n * t * c, *gb = g + n * t * c;
        for (int64_t i = 0; i < t; i++) {
            const float *gr = gb + i * c;
            if (gbias)
                for (int64_t j = 0; j < c; j++)
                    gbias[j] += gr[j];
            int64_t k0 = pad - i > 0 ? pad - i : 0;
            int64_t k1 = t + pad - i < k ? t + pad - i : k;
            for (int64_t q = k0; q < k1; q++) {
                const float *xr = xb + (i + q - pad) * c;
                float *gw = gwt + q * c;
                for (int64_t j = 0; j < c; j++)
                    gw[j] += gr[j] * xr[j];
            }
        }
        if (gx) {
            float *gxb = gx + n * t * c;
            /* input frame s gets w[q] * g[s - q + pad] */
            for (int64_t s = 0; s < t; s++) {
                float *o = gxb + s * c;
                for (int64_t j = 0; j < c; j++)
                    o[j] = 0.0f;
                int64_t q0 = s + pad - (t - 1) > 0 ? s + pad - (t - 1) : 0;
                int64_t q1 = s + pad + 1 < k ? s + pad + 1 : k;
                for (int64_t q = q0; q < q1; q++) {
                    const float *gr = gb + (s - q + pad) * c;
                    const float *wr = wt + q * c;
                    for (int64_t j = 0; j < c; j++)
                        o[j] += wr[j] * gr[j];
                }
            }
        }
    }
}
