/* Transformer backward kernels, one per forward kernel of kernels*.c; BLAS paths with naive
 * twins kept for tests (llm.c style). Gradients accumulate (+=). */
#include "kernels_backward.h"

#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "monosem/io.h"

/* ------------------------------------------------------------------ matmul */

void ms_matmul_backward_naive(float *dinp, int lddi, float *dw, int lddw, float *dbias,
                              const float *dout, int lddo, const float *inp, int ldi,
                              const float *w, int ldw, int N, int K, int M)
{
    if (dinp)
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                double acc = 0;
                for (int m = 0; m < M; m++)
                    acc += (double)dout[(size_t)n * lddo + m] * w[(size_t)k * ldw + m];
                dinp[(size_t)n * lddi + k] += (float)acc;
            }
    if (dw)
        for (int k = 0; k < K; k++)
            for (int m = 0; m < M; m++) {
                double acc = 0;
                for (int n = 0; n < N; n++)
                    acc += (double)inp[(size_t)n * ldi + k] * dout[(size_t)n * lddo + m];
                dw[(size_t)k * lddw + m] += (float)acc;
            }
    if (dbias)
        for (int m = 0; m < M; m++) {
            double acc = 0;
            for (int n = 0; n < N; n++) acc += dout[(size_t)n * lddo + m];
            dbias[m] += (float)acc;
        }
}

void ms_matmul_backward(float *dinp, int lddi, float *dw, int lddw, float *dbias,
                        const float *dout, int lddo, const float *inp, int ldi, const float *w,
                        int ldw, int N, int K, int M)
{
    if (ms_kernels_naive()) {
        ms_matmul_backward_naive(dinp, lddi, dw, lddw, dbias, dout, lddo, inp, ldi, w, ldw, N, K, M);
        return;
    }
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, K, M, 1.0f, dout, lddo, w, ldw,
                    1.0f, dinp, lddi);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, M, N, 1.0f, inp, ldi, dout, lddo,
                    1.0f, dw, lddw);
    if (dbias)
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * lddo;
            for (int m = 0; m < M; m++) dbias[m] += d[m];
        }
}

/* ------------------------------------------------------------------ embedding, layernorm */

void ms_embed_backward(float *dW_E, float *dW_pos, const float *dout, const int32_t *tokens,
                       int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            float *e = dW_E + (size_t)tokens[(size_t)b * T + t] * C;
            float *p = dW_pos + (size_t)t * C;
            for (int c = 0; c < C; c++) {
                e[c] += d[c];
                p[c] += d[c];
            }
        }
}

void ms_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, const float *mean,
                           const float *rstd, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        const float *d = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        const float m = mean[n], r = rstd[n];
        float s1 = 0.0f, s2 = 0.0f; /* mean(dnorm), mean(dnorm * norm) */
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * r;
            float dn = w ? d[c] * w[c] : d[c];
            s1 += dn;
            s2 += dn * norm;
        }
        s1 /= (float)C;
        s2 /= (float)C;
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * r;
            float dn = w ? d[c] * w[c] : d[c];
            if (w) {
                dw[c] += d[c] * norm;
                db[c] += d[c];
            }
            dx[c] += r * (dn - s1 - norm * s2);
        }
    }
}

/* ------------------------------------------------------------------ attention */

void ms_attention_backward_naive(float *dqkv, float *scratch, const float *dz, const float *qkv,
                                 const float *att, int B, int T, int H, int D)
{
    const int HD = H * D, ld = 3 * HD;
    const float scale = 1.0f / sqrtf((float)D);
    float *dS = scratch; /* (T,T) */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *P = att + ((size_t)b * H + h) * T * T;
            const float *Q = qkv + (size_t)b * T * ld + h * D;
            const float *K = Q + HD, *V = Q + 2 * HD;
            float *dQ = dqkv + (size_t)b * T * ld + h * D;
            float *dK = dQ + HD, *dV = dQ + 2 * HD;
            const float *dZ = dz + (size_t)b * T * HD + h * D;
            for (int i = 0; i < T; i++) {
                /* dP[i,j] = dZ[i] . V[j]; dS = P * (dP - sum_k P dP) */
                double dot = 0;
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int d = 0; d < D; d++) s += (double)dZ[(size_t)i * HD + d] * V[(size_t)j * ld + d];
                    dS[(size_t)i * T + j] = (float)s;
                    dot += s * P[(size_t)i * T + j];
                }
                for (int j = 0; j <= i; j++)
                    dS[(size_t)i * T + j] = (float)(P[(size_t)i * T + j] * (dS[(size_t)i * T + j] - dot));
            }
            for (int i = 0; i < T; i++)
                for (int d = 0; d < D; d++) {
                    double dq = 0, dk = 0, dv = 0;
                    for (int j = 0; j <= i; j++) dq += (double)dS[(size_t)i * T + j] * K[(size_t)j * ld + d];
                    for (int r = i; r < T; r++) {
                        dk += (double)dS[(size_t)r * T + i] * Q[(size_t)r * ld + d];
                        dv += (double)P[(size_t)r * T + i] * dZ[(size_t)r * HD + d];
                    }
                    dQ[(size_t)i * ld + d] += (float)(dq * scale);
                    dK[(size_t)i * ld + d] += (float)(dk * scale);
                    dV[(size_t)i * ld + d] += (float)dv;
                }
        }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MS_HOT_B __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MS_HOT_B
#endif

/* dS = P * (dP - rowsum(P * dP)) on the causal part; the upper triangle is zeroed. */
MS_HOT_B
static void softmax_rows_backward(float *dS, const float *P, int T)
{
    for (int i = 0; i < T; i++) {
        float *d = dS + (size_t)i * T;
        const float *p = P + (size_t)i * T;
        float dot = 0.0f;
        for (int j = 0; j <= i; j++) dot += p[j] * d[j];
        for (int j = 0; j <= i; j++) d[j] = p[j] * (d[j] - dot);
        for (int j = i + 1; j < T; j++) d[j] = 0.0f;
    }
}

typedef struct att_bwd_ctx {
    float *dqkv, *scratch;
    const float *dz, *qkv, *att;
    int T, H, D;
} att_bwd_ctx;

/* (b,h) pairs p0..p1-1; each pair has its own T*T slice of scratch, so workers never share. */
static void attention_backward_range(void *vctx, int64_t p0, int64_t p1)
{
    const att_bwd_ctx *x = vctx;
    const int T = x->T, H = x->H, D = x->D, HD = H * D, ld = 3 * HD;
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t p = p0; p < p1; p++) {
        const int b = (int)(p / H), h = (int)(p % H);
        float *dS = x->scratch + (size_t)p * T * T;
        const float *P = x->att + ((size_t)b * H + h) * T * T;
        const float *Q = x->qkv + (size_t)b * T * ld + h * D;
        const float *K = Q + HD, *V = Q + 2 * HD;
        float *dQ = x->dqkv + (size_t)b * T * ld + h * D;
        float *dK = dQ + HD, *dV = dQ + 2 * HD;
        const float *dZ = x->dz + (size_t)b * T * HD + h * D;
        /* dV (T,D) += P^T dZ */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1.0f, P, T, dZ, HD, 1.0f, dV, ld);
        /* dP (T,T) = dZ V^T, then through the softmax */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f, dZ, HD, V, ld, 0.0f, dS, T);
        softmax_rows_backward(dS, P, T);
        /* dQ += scale dS K;  dK += scale dS^T Q */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, scale, dS, T, K, ld, 1.0f, dQ, ld);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, scale, dS, T, Q, ld, 1.0f, dK, ld);
    }
}

void ms_attention_backward(float *dqkv, float *scratch, const float *dz, const float *qkv,
                           const float *att, int B, int T, int H, int D)
{
    if (ms_kernels_naive()) {
        ms_attention_backward_naive(dqkv, scratch, dz, qkv, att, B, T, H, D);
        return;
    }
    /* (b,h) pairs write disjoint columns of dqkv: split them over the kernel threads */
    att_bwd_ctx x = {dqkv, scratch, dz, qkv, att, T, H, D};
    ms_parallel_for((int64_t)B * H, 1, attention_backward_range, &x);
}

/* ------------------------------------------------------------------ activations, residual */

MS_HOT_B
static void relu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
}

static void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    const float inv_sqrt2 = 0.70710678118654752f, inv_sqrt2pi = 0.39894228040143268f;
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float g = 0.5f * (1.0f + erff(x * inv_sqrt2)) + x * inv_sqrt2pi * expf(-0.5f * x * x);
        dinp[i] += dout[i] * g;
    }
}

static void gelu_new_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    const float k = 0.79788456080286536f;
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = k * (x + 0.044715f * x * x * x);
        float th = tanhf(u);
        float g = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * k * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += dout[i] * g;
    }
}

void ms_act_backward(float *dinp, const float *inp, const float *dout, size_t n, int act)
{
    switch (act) {
    case MS_ACT_RELU: relu_backward(dinp, inp, dout, n); break;
    case MS_ACT_GELU: gelu_backward(dinp, inp, dout, n); break;
    default: gelu_new_backward(dinp, inp, dout, n); break;
    }
}

MS_HOT_B
void ms_residual_backward(float *da, float *db, const float *dout, size_t n)
{
    if (da)
        for (size_t i = 0; i < n; i++) da[i] += dout[i];
    if (db)
        for (size_t i = 0; i < n; i++) db[i] += dout[i];
}

/* ------------------------------------------------------------------ loss */

/* exp for x <= 0 (logits minus their logsumexp): 2^n * 2^f with a degree-6 polynomial on
 * f in [-0.5, 0.5] (rel. error < 2e-7, as ms_expf). The clamp is on the integer exponent and
 * the function is always inlined: both are needed for GCC to vectorise the row loops inside
 * target_clones functions (a float select there counts as control flow). Below e^-87 it
 * returns a value < 1.2e-38 instead of 0. */
static inline __attribute__((always_inline)) float exp_neg(float x)
{
    float t = x * 1.44269504088896341f;
    float r = (t + 12582912.0f) - 12582912.0f;
    float f = t - r;
    float p = 1.5403530393381606e-4f;
    p = p * f + 1.3333558146428443e-3f;
    p = p * f + 9.6181291076284772e-3f;
    p = p * f + 5.5504108664821580e-2f;
    p = p * f + 2.4022650695910071e-1f;
    p = p * f + 6.9314718055994531e-1f;
    p = p * f + 1.0f;
    int32_t n = (int32_t)r;
    n = n < -126 ? -126 : n;
    union {
        uint32_t u;
        float f;
    } s;
    s.u = (uint32_t)(n + 127) << 23;
    return p * s.f;
}

MS_HOT_B
static void ce_row(float *restrict d, const float *restrict x, float lse, int32_t t, int V, float scale)
{
    for (int v = 0; v < V; v++) d[v] = scale * exp_neg(x[v] - lse);
    d[t] -= scale;
}

/* In place (dlogits aliasing logits): one pointer, so the loop vectorises without the
 * overlap check that would send ce_row to its scalar fallback. */
MS_HOT_B
static void ce_row_inplace(float *d, float lse, int32_t t, int V, float scale)
{
    for (int v = 0; v < V; v++) d[v] = scale * exp_neg(d[v] - lse);
    d[t] -= scale;
}

typedef struct ce_bwd_ctx {
    float *dlogits;
    const float *logits, *lse;
    const int32_t *targets;
    int V;
    float scale;
} ce_bwd_ctx;

static void ce_backward_range(void *vctx, int64_t n0, int64_t n1)
{
    const ce_bwd_ctx *c = vctx;
    const int V = c->V;
    const int32_t *targets = c->targets;
    for (int64_t n = n0; n < n1; n++) {
        float *d = c->dlogits + (size_t)n * V;
        const float *x = c->logits + (size_t)n * V;
        if (targets && targets[n] >= 0) {
            if (d == x) ce_row_inplace(d, c->lse[n], targets[n], V, c->scale);
            else ce_row(d, x, c->lse[n], targets[n], V, c->scale);
        } else {
            memset(d, 0, (size_t)V * sizeof *d);
        }
    }
}

void ms_crossentropy_backward(float *dlogits, const float *logits, const float *lse,
                              const int32_t *targets, int N, int V, float scale)
{
    ce_bwd_ctx c = {dlogits, logits, lse, targets, V, scale};
    ms_parallel_for(N, 64, ce_backward_range, &c);
}
