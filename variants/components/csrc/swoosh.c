/* Swoosh (paper eq. 6-7) on the CPU: value and rounded derivative level in one pass. */
#include "kernels.h"

/* y = softplus(z) - 0.08 x - constant,  z = x - offset  (see kernels.h);
 * d = the dequantized derivative level: floor(sigmoid(z) / step + 0.5) * step + deriv_min
 * (the exp serves both). */
KERNEL swoosh_forward(const float *x, float *y, float *d, int64_t n, float offset, float constant,
                      float step, float deriv_min) {
    const float inv = 1.0f / step;
    for (int64_t i = 0; i < n; i++) {
        float xi = x[i], e;
        y[i] = softplus_and_exp(xi - offset, &e) - 0.08f * xi - constant;
        d[i] = derivative_level(e, inv) * step + deriv_min;
    }
}

/* y = Swoosh(x) as in swoosh_forward and d = sigmoid(z) - 0.08 (its exact derivative),
 * both times a dropout mask shared over time when mask is not NULL: x, y and d are
 * (b, t, c) row-major, mask (b, 1, c). */
KERNEL swoosh_and_deriv(const float *x, const float *mask, float *y, float *d, int64_t b,
                        int64_t t, int64_t c, float offset, float constant) {
    for (int64_t bi = 0; bi < b; bi++) {
        const float *m = mask ? mask + bi * c : NULL;
        for (int64_t ti = 0; ti < t; ti++) {
            const int64_t o = (bi * t + ti) * c;
            const float *xr = x + o;
            float *yr = y + o, *dr = d + o;
            if (m) {
                for (int64_t j = 0; j < c; j++) {
                    float xi = xr[j], e;
                    yr[j] = (softplus_and_exp(xi - offset, &e) - 0.08f * xi - constant) * m[j];
                    dr[j] = (e / (1.0f + e) - 0.08f) * m[j];
                }
            } else {
                for (int64_t j = 0; j < c; j++) {
                    float xi = xr[j], e;
                    yr[j] = softplus_and_exp(xi - offset, &e) - 0.08f * xi - constant;
                    dr[j] = e / (1.0f + e) - 0.08f;
                }
            }
        }
    }
}
