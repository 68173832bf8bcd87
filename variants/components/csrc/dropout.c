/* Dropout (keep with probability q = 1 - p, scale kept values by 1 / q) with the very
 * masks torch's CPU dropout draws, for float32 tensors in memory order.
 *
 * torch (2.x, CPU) draws a dropout mask as noise.bernoulli_(q): one value per element,
 * in memory order, each from two 32-bit outputs r1, r2 of the default generator's
 * Mersenne Twister (MT19937): u = ((r1 << 32 | r2) mod 2^53) / 2^53 in double, kept
 * where u < q; then noise /= q (float32) and out = x * noise. It runs one element at a
 * time through its generic loop. Here the twister's state is regenerated and tempered
 * 624 words at a time in vectorisable loops and the test u < q is the integer test
 * (r1 << 32 | r2) mod 2^53 < ceil(q * 2^53) (exact: both sides are integers times
 * 2^-53), so the masks, the outputs and the generator's state afterwards are the same
 * bits as torch's.
 *
 * The generator's state arrives as the bytes of torch.Generator.get_state() (CPU):
 * int64 seed, int32 left, int32 seeded, uint64 next, uint64 state[624], ... ; `left`
 * and `next` follow torch's engine: the engine returns state[next++] (tempered) after
 * regenerating the whole state when --left reaches 0, so left - 1 words of the current
 * state remain, from index `next`. */
#include "kernels.h"
#include <string.h>

#define MT_N 624
#define MT_M 397

static inline uint32_t twist(uint32_t u, uint32_t v) {
    uint32_t y = (u & 0x80000000u) | (v & 0x7fffffffu);
    return (y >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

static void regenerate(uint32_t *s) {
    int i = 0;
    for (; i < MT_N - MT_M; i++)
        s[i] = s[i + MT_M] ^ twist(s[i], s[i + 1]);
    for (; i < MT_N - 1; i++)
        s[i] = s[i + MT_M - MT_N] ^ twist(s[i], s[i + 1]);
    s[MT_N - 1] = s[MT_M - 1] ^ twist(s[MT_N - 1], s[0]);
}

static void temper(const uint32_t *restrict s, uint32_t *restrict out) {
    for (int i = 0; i < MT_N; i++) {
        uint32_t y = s[i];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680u;
        y ^= (y << 15) & 0xefc60000u;
        y ^= y >> 18;
        out[i] = y;
    }
}

/* The generator held while drawing: state words, their tempered outputs, the next
 * output's index and how many outputs of this state remain. */
typedef struct {
    uint32_t s[MT_N];
    uint32_t t[MT_N];
    int64_t pos, remaining;
} twister;

static void load(twister *g, const unsigned char *bytes) {
    int32_t left;
    uint64_t next, words[MT_N];
    memcpy(&left, bytes + 8, 4);
    memcpy(&next, bytes + 16, 8);
    memcpy(words, bytes + 24, sizeof(words));
    for (int i = 0; i < MT_N; i++)
        g->s[i] = (uint32_t)words[i];
    g->pos = (int64_t)next;
    g->remaining = (int64_t)left - 1;
    if (g->remaining > 0)
        temper(g->s, g->t);
}

static void store(const twister *g, unsigned char *bytes) {
    int32_t left = (int32_t)(g->remaining + 1);
    uint64_t next = (uint64_t)g->pos, words[MT_N];
    for (int i = 0; i < MT_N; i++)
        words[i] = g->s[i];
    memcpy(bytes + 8, &left, 4);
    memcpy(bytes + 16, &next, 8);
    memcpy(bytes + 24, words, sizeof(words));
}

static inline uint32_t draw(twister *g) {
    if (g->remaining == 0) {
        regenerate(g->s);
        temper(g->s, g->t);
        g->pos = 0;
        g->remaining = MT_N;
    }
    g->remaining--;
    return g->t[g->pos++];
}

#define MASK53 ((UINT64_C(1) << 53) - 1)

/* keep[i] = 1 where element i is kept, else 0, for n elements; the state bytes are
 * read and written back (drawn past the n * 2 outputs used). threshold = ceil(q * 2^53). */
static void draw_keep(unsigned char *restrict state, unsigned char *restrict keep,
                      int64_t n, uint64_t threshold) {
    twister g;
    load(&g, state);
    int64_t i = 0;
    while (i < n) {
        if (g.remaining >= 2) {
            /* whole pairs left in this state: a vectorisable run */
            int64_t run = g.remaining / 2;
            if (run > n - i)
                run = n - i;
            const uint32_t *t = g.t + g.pos;
            for (int64_t j = 0; j < run; j++) {
                uint64_t v = (((uint64_t)t[2 * j] << 32) | t[2 * j + 1]) & MASK53;
                keep[i + j] = v < threshold;
            }
            g.pos += 2 * run;
            g.remaining -= 2 * run;
            i += run;
        } else {
            /* a pair across two states (or none left): one at a time */
            uint64_t hi = draw(&g);
            uint64_t lo = draw(&g);
            keep[i++] = (((hi << 32) | lo) & MASK53) < threshold;
        }
    }
    store(&g, state);
}

/* y = x * (keep ? scale : 0) over n float32 elements in memory order, keep (uint8) written
 * for the backward; scale = 1 / q rounded to float32 as torch's noise.div_(q). */
KERNEL dropout_forward(unsigned char *state, const float *restrict x, float *restrict y,
                       unsigned char *restrict keep, int64_t n, int64_t threshold, float scale) {
    draw_keep(state, keep, n, (uint64_t)threshold);
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * (keep[i] ? scale : 0.0f);
}

/* gx = g * (keep ? scale : 0): the gradient of the above (torch: grad * noise). */
KERNEL dropout_backward(const float *restrict g, const unsigned char *restrict keep,
                        float *restrict gx, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++)
        gx[i] = g[i] * (keep[i] ? scale : 0.0f);
}

/* Swish then dropout, the Conformer feed-forward's hidden layer: y = x sigmoid(x) * (keep ?
 * scale : 0), the mask drawn as dropout_forward draws it (the same bits as torch's); within
 * float32 roundings of torch's x * sigmoid(x) (exp here is libmvec's). */
KERNEL swish_dropout_forward(unsigned char *state, const float *restrict x, float *restrict y,
                             unsigned char *restrict keep, int64_t n, int64_t threshold,
                             float scale) {
    draw_keep(state, keep, n, (uint64_t)threshold);
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        y[i] = x[i] * s * (keep[i] ? scale : 0.0f);
    }
}

/* gx = g * (keep ? scale : 0) * (s + x s (1 - s)), s = sigmoid(x): the gradient of the above. */
KERNEL swish_dropout_backward(const float *restrict x, const float *restrict g,
                              const unsigned char *restrict keep, float *restrict gx,
                              int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        gx[i] = g[i] * (keep[i] ? scale : 0.0f) * (s + x[i] * s * (1.0f - s));
    }
}
