/* Forward kernels for the layer input side: token+position embedding, layernorm and causal
 * attention (blocked fast path beside its naive twin). */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kernels_simd.h"
#include "monosem/io.h"
#include "monosem/model.h"

/* ------------------------------------------------------------------ embedding, layernorm */

typedef struct embed_ctx {
    float *out;
    const int32_t *tokens;
    const float *W_E, *W_pos;
    int T, C;
} embed_ctx;

MS_HOT
static void embed_range(void *vctx, int64_t i0, int64_t i1)
{
    const embed_ctx *x = vctx;
    const int C = x->C;
    for (int64_t i = i0; i < i1; i++) {
        float *o = x->out + (size_t)i * C;
        const float *e = x->W_E + (size_t)x->tokens[i] * C;
        const float *p = x->W_pos + (size_t)(i % x->T) * C;
        for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
    }
}

void ms_embed_forward(float *out, const int32_t *tokens, const float *W_E, const float *W_pos,
                      int B, int T, int C)
{
    embed_ctx x = {out, tokens, W_E, W_pos, T, C};
    ms_parallel_for((int64_t)B * T, 1024, embed_range, &x);
}

typedef struct ln_ctx {
    float *out, *mean, *rstd;
    const float *inp, *w, *b;
    int C;
    float eps;
} ln_ctx;

MS_HOT
static void layernorm_range(void *vctx, int64_t n0, int64_t n1)
{
    const ln_ctx *x = vctx;
    const int C = x->C, C8 = C & ~7;
    for (int64_t n = n0; n < n1; n++) {
        const float *in = x->inp + (size_t)n * C;
        float *o = x->out + (size_t)n * C;
        v8f acc = splat8(0.0f);
        for (int c = 0; c < C8; c += 8) acc += ld8(in + c);
        float s = hsum8(acc);
        for (int c = C8; c < C; c++) s += in[c];
        const float m = s / (float)C;
        acc = splat8(0.0f);
        for (int c = 0; c < C8; c += 8) {
            v8f d = ld8(in + c) - m;
            acc += d * d;
        }
        float v = hsum8(acc);
        for (int c = C8; c < C; c++) v += (in[c] - m) * (in[c] - m);
        const float r = 1.0f / sqrtf(v / (float)C + x->eps);
        if (x->w) {
            for (int c = 0; c < C8; c += 8) st8(o + c, (ld8(in + c) - m) * r * ld8(x->w + c) + ld8(x->b + c));
            for (int c = C8; c < C; c++) o[c] = (in[c] - m) * r * x->w[c] + x->b[c];
        } else {
            for (int c = 0; c < C8; c += 8) st8(o + c, (ld8(in + c) - m) * r);
            for (int c = C8; c < C; c++) o[c] = (in[c] - m) * r;
        }
        x->mean[n] = m;
        x->rstd[n] = r;
    }
}

void ms_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C, float eps)
{
    ln_ctx x = {out, mean, rstd, inp, w, b, C, eps};
    ms_parallel_for(N, 256, layernorm_range, &x);
}

/* ------------------------------------------------------------------ attention */

void ms_attention_forward_naive(float *z, float *att, const float *qkv, int B, int T, int H, int D)
{
    const int HD = H * D, ld = 3 * HD;
    const float scale = 1.0f / sqrtf((float)D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float *P = att + ((size_t)b * H + h) * T * T;
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((size_t)b * T + i) * ld + h * D;
                float mx = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    const float *k = qkv + ((size_t)b * T + j) * ld + HD + h * D;
                    double s = 0;
                    for (int d = 0; d < D; d++) s += (double)q[d] * k[d];
                    P[(size_t)i * T + j] = (float)s * scale;
                    if (P[(size_t)i * T + j] > mx) mx = P[(size_t)i * T + j];
                }
                double sum = 0;
                for (int j = 0; j <= i; j++) {
                    P[(size_t)i * T + j] = expf(P[(size_t)i * T + j] - mx);
                    sum += P[(size_t)i * T + j];
                }
                for (int j = 0; j <= i; j++) P[(size_t)i * T + j] = (float)(P[(size_t)i * T + j] / sum);
                for (int j = i + 1; j < T; j++) P[(size_t)i * T + j] = 0.0f;
                float *o = z + ((size_t)b * T + i) * HD + h * D;
                for (int d = 0; d < D; d++) {
                    double acc = 0;
                    for (int j = 0; j <= i; j++)
                        acc += (double)P[(size_t)i * T + j] * qkv[((size_t)b * T + j) * ld + 2 * HD + h * D + d];
                    o[d] = (float)acc;
                }
            }
        }
}

/* Row blocks of the pattern: each block multiplies only the columns up to its last row, so the
 * upper triangle is (mostly) never computed. */
#ifndef ATT_BLOCK
#define ATT_BLOCK 32
#endif

typedef struct att_ctx {
    float *z, *att;
    const float *qkv;
    int T, H, D;
} att_ctx;

MS_HOT
static void attention_range(void *vctx, int64_t p0, int64_t p1)
{
    const att_ctx *x = vctx;
    const int T = x->T, H = x->H, D = x->D, HD = H * D, ld = 3 * HD;
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t bh = p0; bh < p1; bh++) {
        const int b = (int)(bh / H), h = (int)(bh % H);
        const float *Q = x->qkv + (size_t)b * T * ld + h * D;
        const float *K = Q + HD;
        const float *V = Q + 2 * HD;
        float *P = x->att + (size_t)bh * T * T;
        float *Z = x->z + (size_t)b * T * HD + h * D;
        for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
            int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;
            /* P[r0:r1, 0:r1] = scale * Q[r0:r1] K[0:r1]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, D, scale, Q + (size_t)r0 * ld, ld, K,
                        ld, 0.0f, P + (size_t)r0 * T, T);
            for (int i = r0; i < r1; i++) softmax_prefix(P + (size_t)i * T, i + 1, T);
            /* Z[r0:r1] = P[r0:r1, 0:r1] V[0:r1] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, D, r1, 1.0f, P + (size_t)r0 * T, T, V, ld,
                        0.0f, Z + (size_t)r0 * HD, HD);
        }
    }
}

void ms_attention_forward(float *z, float *att, const float *qkv, int B, int T, int H, int D)
{
    if (ms_kernels_naive()) {
        ms_attention_forward_naive(z, att, qkv, B, T, H, D);
        return;
    }
    att_ctx x = {z, att, qkv, T, H, D};
    /* (b,h) pairs split over our threads; each pair's GEMMs run inline in its thread */
    ms_parallel_for_blas(-1, (int64_t)B * H, 1, attention_range, &x);
}
