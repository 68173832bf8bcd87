/* Conv-Embed's convolution stages (paper section 3.1) on the CPU: the elementwise work
 * around each convolution of conv_embed.py's _ConvBalancedSwooshRCPU, on channels-last
 * (bsz, t, f, c) float32 tensors, each frame's f * c values contiguous. */
#include "kernels.h"

/* Whether frame t of utterance b is kept: use_lens and t < lens[b] (else every frame). */
static inline int kept(const int64_t *lens, int use_lens, int64_t b, int64_t t) {
    return !use_lens || t < lens[b];
}

/* SwooshR and its derivative's level on a stage's convolution output h: y = log(1 + exp(z))
 * - 0.08 h - constant with z = h - offset (softplus as max(log(1 + exp(min(z, 80))), z)) and
 * q = floor(sigmoid(z) / step + 0.5) as a byte (the arithmetic of csrc/swoosh.c's
 * swoosh_forward, whose float level is q step + deriv_min); with use_lens the frames from
 * lens[b] on are 0 in y (Conv-Embed's padded frames; q 0 there). */
KERNEL conv_stage_forward(const float *restrict h, float *restrict y, uint8_t *restrict q,
                          const int64_t *restrict lens, int64_t bsz, int64_t t, int64_t row,
                          int use_lens, float offset, float constant, float step) {
    const float inv = 1.0f / step;
    for (int64_t b = 0; b < bsz; b++) {
        for (int64_t ti = 0; ti < t; ti++) {
            int64_t o = (b * t + ti) * row;
            const float *hr = h + o;
            float *yr = y + o;
            uint8_t *qr = q + o;
            if (!kept(lens, use_lens, b, ti)) {
                for (int64_t i = 0; i < row; i++) {
                    yr[i] = 0.0f;
                    qr[i] = 0;
                }
                continue;
            }
            for (int64_t i = 0; i < row; i++) {
                float xi = hr[i], e;
                yr[i] = softplus_and_exp(xi - offset, &e) - 0.08f * xi - constant;
                qr[i] = (uint8_t)(int32_t)derivative_level(e, inv);
            }
        }
    }
}

/* The stage's backward through SwooshR: gh = (q step + deriv_min) grad, 0 on the frames the
 * forward zeroed (use_lens). */
KERNEL conv_stage_backward(const uint8_t *restrict q, const float *restrict grad, float *restrict gh,
                           const int64_t *restrict lens, int64_t bsz, int64_t t, int64_t row,
                           int use_lens, float step, float deriv_min) {
    for (int64_t b = 0; b < bsz; b++) {
        for (int64_t ti = 0; ti < t; ti++) {
            int64_t o = (b * t + ti) * row;
            const uint8_t *qr = q + o;
            const float *gr = grad + o;
            float *out = gh + o;
            if (!kept(lens, use_lens, b, ti)) {
                for (int64_t i = 0; i < row; i++)
                    out[i] = 0.0f;
                continue;
            }
            for (int64_t i = 0; i < row; i++)
                out[i] = ((float)qr[i] * step + deriv_min) * gr[i];
        }
    }
}
