/* Swoosh (paper eq. 6-7) on the CPU: value and rounded derivative level in one pass. */
#include "kernels.h"

/* y = log(1 + exp(z)) - 0.08 x - constant,  z = x - offset  (softplus as max(log(1 + exp(min(z, 80))), z):
 * above z = 20 it rounds to z, as torch's softplus);
 * d = the dequantized derivative level: floor(sigmoid(z) / step + 0.5) * step + deriv_min
 * (sigmoid(z) as e / (1 + e) with e = exp(min(z, 80)): the exp serves both). */
KERNEL swoosh_forward(const float *x, float *y, float *d, int64_t n, float offset, float constant,
                      float step, float deriv_min) {
    const float inv = 1.0f / step;
    for (int64_t i = 0; i < n; i++) {
        float xi = x[i];
        float z = xi - offset;
        float e = expf(z < 80.0f ? z : 80.0f);
        float sp = logf(1.0f + e);
        sp = sp > z ? sp : z;
        y[i] = sp - 0.08f * xi - constant;
        float s = e / (1.0f + e);
        d[i] = floorf(s * inv + 0.5f) * step + deriv_min;
    }
}
