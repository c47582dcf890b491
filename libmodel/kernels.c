/* Transformer forward kernels: BLAS paths with naive twins kept for tests (llm.c style). */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "monosem/io.h"

static int g_naive = 0;
void ms_kernels_set_naive(int on) { g_naive = on; }
int ms_kernels_naive(void) { return g_naive; }

/* Hot elementwise loops get an AVX2+FMA clone picked at load time (ifunc); the default clone
 * keeps the binary portable. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MS_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MS_HOT
#endif

/* exp via 2^n * 2^f: n = round(x log2 e), polynomial for 2^f on [-0.5, 0.5]. Written with
 * plain float ops so loops calling it vectorise. */
static inline float expf_inl(float x)
{
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.7f ? 88.7f : x;
    float t = x * 1.44269504088896341f;
    float r = (t + 12582912.0f) - 12582912.0f; /* round to nearest (no -ffast-math here) */
    float f = t - r;                           /* [-0.5, 0.5] */
    /* 2^f = e^(f ln2): minimax-ish Taylor to degree 6 (rel err < 2e-7 on the range) */
    float p = 1.5403530393381606e-4f;
    p = p * f + 1.3333558146428443e-3f;
    p = p * f + 9.6181291076284772e-3f;
    p = p * f + 5.5504108664821580e-2f;
    p = p * f + 2.4022650695910071e-1f;
    p = p * f + 6.9314718055994531e-1f;
    p = p * f + 1.0f;
    int32_t n = (int32_t)r;
    union {
        uint32_t u;
        float f;
    } s;
    s.u = (uint32_t)(n + 127) << 23;
    return p * s.f;
}

float ms_expf(float x) { return expf_inl(x); }

/* ------------------------------------------------------------------ matmul */

void ms_matmul_forward_naive(float *out, int ldo, const float *inp, int ldi, const float *w,
                             int ldw, const float *bias, int N, int K, int M)
{
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * ldo;
        const float *x = inp + (size_t)n * ldi;
        for (int m = 0; m < M; m++) {
            double acc = bias ? bias[m] : 0.0;
            for (int k = 0; k < K; k++) acc += (double)x[k] * w[(size_t)k * ldw + m];
            o[m] = (float)acc;
        }
    }
}

void ms_matmul_forward(float *out, int ldo, const float *inp, int ldi, const float *w, int ldw,
                       const float *bias, int N, int K, int M)
{
    if (g_naive) {
        ms_matmul_forward_naive(out, ldo, inp, ldi, w, ldw, bias, N, K, M);
        return;
    }
    float beta = 0.0f;
    if (bias) {
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * ldo, bias, (size_t)M * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, M, K, 1.0f, inp, ldi, w, ldw, beta,
                out, ldo);
}

/* ------------------------------------------------------------------ embedding, layernorm */

void ms_embed_forward(float *out, const int32_t *tokens, const float *W_E, const float *W_pos,
                      int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *e = W_E + (size_t)tokens[(size_t)b * T + t] * C;
            const float *p = W_pos + (size_t)t * C;
            for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
        }
}

MS_HOT
void ms_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C, float eps)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float s = 0.0f;
        for (int c = 0; c < C; c++) s += x[c];
        float m = s / (float)C;
        float v = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            v += d * d;
        }
        float r = 1.0f / sqrtf(v / (float)C + eps);
        if (w) {
            for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * w[c] + b[c];
        } else {
            for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r;
        }
        mean[n] = m;
        rstd[n] = r;
    }
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

/* Softmax of rows r0..r1-1 of a causal pattern: row i uses columns 0..i, the rest zeroed. */
MS_HOT
static void causal_softmax_rows(float *P, int T, int r0, int r1)
{
    for (int i = r0; i < r1; i++) {
        float *p = P + (size_t)i * T;
        float mx = p[0];
        for (int j = 1; j <= i; j++) mx = p[j] > mx ? p[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j <= i; j++) {
            float e = expf_inl(p[j] - mx);
            p[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int j = 0; j <= i; j++) p[j] *= inv;
        for (int j = i + 1; j < T; j++) p[j] = 0.0f;
    }
}

/* Row blocks of the pattern: each block multiplies only the columns up to its last row, so the
 * upper triangle is (mostly) never computed. */
#define ATT_BLOCK 32

void ms_attention_forward(float *z, float *att, const float *qkv, int B, int T, int H, int D)
{
    if (g_naive) {
        ms_attention_forward_naive(z, att, qkv, B, T, H, D);
        return;
    }
    const int HD = H * D, ld = 3 * HD;
    const float scale = 1.0f / sqrtf((float)D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *Q = qkv + (size_t)b * T * ld + h * D;
            const float *K = Q + HD;
            const float *V = Q + 2 * HD;
            float *P = att + ((size_t)b * H + h) * T * T;
            float *Z = z + (size_t)b * T * HD + h * D;
            for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;
                /* P[r0:r1, 0:r1] = scale * Q[r0:r1] K[0:r1]^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, D, scale,
                            Q + (size_t)r0 * ld, ld, K, ld, 0.0f, P + (size_t)r0 * T, T);
                causal_softmax_rows(P, T, r0, r1);
                /* Z[r0:r1] = P[r0:r1, 0:r1] V[0:r1] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, D, r1, 1.0f,
                            P + (size_t)r0 * T, T, V, ld, 0.0f, Z + (size_t)r0 * HD, HD);
            }
        }
}

/* ------------------------------------------------------------------ MLP activations */

MS_HOT
static void relu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

static void gelu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * 0.70710678118654752f));
}

MS_HOT
static void gelu_new_forward(float *out, const float *inp, size_t n)
{
    /* tanh(u) = 1 - 2 / (exp(2u) + 1), with the vectorisable exp */
    const float k = 0.79788456080286536f; /* sqrt(2/pi) */
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = k * (x + 0.044715f * x * x * x);
        float th = 1.0f - 2.0f / (expf_inl(2.0f * u) + 1.0f);
        out[i] = 0.5f * x * (1.0f + th);
    }
}

void ms_act_forward(float *out, const float *inp, size_t n, int act)
{
    switch (act) {
    case MS_ACT_RELU: relu_forward(out, inp, n); break;
    case MS_ACT_GELU: gelu_forward(out, inp, n); break;
    default: gelu_new_forward(out, inp, n); break;
    }
}

MS_HOT
void ms_solu_forward(float *out, const float *inp, int N, int M)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * M;
        float *o = out + (size_t)n * M;
        float mx = x[0];
        for (int m = 1; m < M; m++) mx = x[m] > mx ? x[m] : mx;
        float sum = 0.0f;
        for (int m = 0; m < M; m++) {
            float e = expf_inl(x[m] - mx);
            o[m] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int m = 0; m < M; m++) o[m] = x[m] * o[m] * inv;
    }
}

MS_HOT
void ms_residual_forward(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* ------------------------------------------------------------------ loss */

/* Max and sum of exp over one row, 8 independent lanes so the loops vectorise without
 * -ffast-math. */
MS_HOT
static float row_lse(const float *x, int V)
{
    float m8[8];
    for (int k = 0; k < 8; k++) m8[k] = -INFINITY;
    int v = 0;
    for (; v + 8 <= V; v += 8)
        for (int k = 0; k < 8; k++) m8[k] = x[v + k] > m8[k] ? x[v + k] : m8[k];
    float mx = -INFINITY;
    for (int k = 0; k < 8; k++) mx = m8[k] > mx ? m8[k] : mx;
    for (; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    float s8[8] = {0};
    v = 0;
    for (; v + 8 <= V; v += 8)
        for (int k = 0; k < 8; k++) s8[k] += expf_inl(x[v + k] - mx);
    double s = 0;
    for (int k = 0; k < 8; k++) s += s8[k];
    for (; v < V; v++) s += expf_inl(x[v] - mx);
    return mx + (float)log(s);
}

double ms_crossentropy_forward(float *losses, float *lse, const float *logits,
                               const int32_t *targets, int N, int V, int64_t *n_loss)
{
    double total = 0;
    int64_t cnt = 0;
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        lse[n] = row_lse(x, V);
        if (targets && targets[n] >= 0) {
            losses[n] = lse[n] - x[targets[n]];
            total += losses[n];
            cnt++;
        } else {
            losses[n] = 0.0f;
        }
    }
    if (n_loss) *n_loss = cnt;
    return total;
}
