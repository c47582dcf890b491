/* Transformer forward kernels: BLAS paths with naive twins kept for tests (llm.c style). */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "monosem/io.h"
#include "monosem/model.h"

static int g_naive = 0;
static int g_threads = 0;
void ms_kernels_set_naive(int on) { g_naive = on; }
int ms_kernels_naive(void) { return g_naive; }
void ms_kernels_set_threads(int n) { g_threads = n; }

int ms_kernels_threads(void)
{
    int nt = g_threads > 0 ? g_threads : openblas_get_num_threads();
    return nt < 1 ? 1 : nt > 64 ? 64 : nt;
}

/* ------------------------------------------------------------------ parallel for */

typedef struct par_job {
    ms_par_fn fn;
    void *ctx;
    int64_t b, e;
} par_job;

static void *par_run(void *p)
{
    par_job *j = p;
    j->fn(j->ctx, j->b, j->e);
    return NULL;
}

void ms_parallel_for(int64_t n, int64_t grain, ms_par_fn fn, void *ctx)
{
    ms_parallel_for_nt(ms_kernels_threads(), n, grain, fn, ctx);
}

void ms_parallel_for_nt(int nt, int64_t n, int64_t grain, ms_par_fn fn, void *ctx)
{
    if (nt > 64) nt = 64;
    if (grain < 1) grain = 1;
    if (nt > n / grain) nt = (int)(n / grain);
    if (nt <= 1) {
        if (n > 0) fn(ctx, 0, n);
        return;
    }
    pthread_t th[64];
    par_job jobs[64];
    bool started[64] = {false};
    for (int t = 0; t < nt; t++) jobs[t] = (par_job){fn, ctx, n * t / nt, n * (t + 1) / nt};
    for (int t = 1; t < nt; t++) started[t] = pthread_create(&th[t], NULL, par_run, &jobs[t]) == 0;
    par_run(&jobs[0]);
    for (int t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            par_run(&jobs[t]); /* could not start a thread: do its share here */
    }
}

void ms_parallel_for_blas(int nt, int64_t n, int64_t grain, ms_par_fn fn, void *ctx)
{
    if (nt < 1) nt = ms_kernels_threads();
    const int blas_nt = openblas_get_num_threads();
    /* held whenever BLAS has threads, also for one item: a threaded GEMM rounds like a serial
     * one only for some shapes, and rows must not depend on the thread count */
    const bool hold = blas_nt > 1;
    if (hold) openblas_set_num_threads(1);
    ms_parallel_for_nt(hold ? nt : 1, n, grain, fn, ctx);
    if (hold) openblas_set_num_threads(blas_nt);
}

/* ------------------------------------------------------------------ 8-lane vectors */
/* GCC/clang vector extensions: AVX registers in the x86-64-v3 clones, SSE pairs otherwise.
 * The helpers are static inline, so the psabi note about passing 32-byte vectors is moot. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* Always inlined: a non-inlined helper (-O0) compiled for the default target would pass
 * 32-byte vectors by a different ABI than the AVX clone calling it. */
#define MS_VINLINE static inline __attribute__((always_inline))

MS_VINLINE v8f ld8(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}
MS_VINLINE void st8(float *p, v8f v) { memcpy(p, &v, sizeof v); }
MS_VINLINE v8f splat8(float x) { return (v8f){x, x, x, x, x, x, x, x}; }
MS_VINLINE v8f sel8(v8i m, v8f a, v8f b) { return (v8f)((m & (v8i)a) | (~m & (v8i)b)); }
MS_VINLINE v8f max8(v8f a, v8f b) { return sel8(a > b, a, b); }
MS_VINLINE float hsum8(v8f v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }
MS_VINLINE float hmax8(v8f v)
{
    float m = v[0];
    for (int k = 1; k < 8; k++) m = v[k] > m ? v[k] : m;
    return m;
}

/* 8-lane exp, same method and constants as expf_inl below. */
MS_VINLINE v8f exp8(v8f x)
{
    x = max8(x, splat8(-87.3f));
    x = sel8(x > splat8(88.7f), splat8(88.7f), x);
    v8f r = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    v8f f = (x - r * 0.693145751953125f) - r * 1.428606765330187045e-06f;
    v8f p = splat8(1.9841269841269841e-4f);
    p = p * f + 1.3888888888888889e-3f;
    p = p * f + 8.3333333333333333e-3f;
    p = p * f + 4.1666666666666667e-2f;
    p = p * f + 1.6666666666666667e-1f;
    p = p * f + 0.5f;
    p = p * f + 1.0f;
    p = p * f + 1.0f;
    v8i n = __builtin_convertvector(r, v8i);
    return p * (v8f)((n + 127) << 23);
}

/* Hot elementwise loops get an AVX2+FMA clone picked at load time (ifunc); the default clone
 * keeps the binary portable. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MS_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MS_HOT
#endif

/* exp as 2^n e^f: n = round(x log2 e), f = x - n ln2 by Cody-Waite (ln2 split in a 12-bit head,
 * so n*head is exact), e^f by its Taylor series to degree 7 on |f| <= 0.35 (error < 1e-8).
 * Plain float ops, so loops calling it vectorise. */
static inline float expf_inl(float x)
{
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.7f ? 88.7f : x;
    float r = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float f = (x - r * 0.693145751953125f) - r * 1.428606765330187045e-06f;
    float p = 1.9841269841269841e-4f;
    p = p * f + 1.3888888888888889e-3f;
    p = p * f + 8.3333333333333333e-3f;
    p = p * f + 4.1666666666666667e-2f;
    p = p * f + 1.6666666666666667e-1f;
    p = p * f + 0.5f;
    p = p * f + 1.0f;
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

typedef struct rows_ctx {
    float *out;
    int ldo;
    const float *row;
    int M;
} rows_ctx;

static void bias_rows_range(void *vctx, int64_t n0, int64_t n1)
{
    const rows_ctx *x = vctx;
    for (int64_t n = n0; n < n1; n++) memcpy(x->out + (size_t)n * x->ldo, x->row, (size_t)x->M * sizeof(float));
}

typedef struct copy_ctx {
    float *dst;
    const float *src;
} copy_ctx;

static void copy_range(void *vctx, int64_t i0, int64_t i1)
{
    const copy_ctx *x = vctx;
    memcpy(x->dst + i0, x->src + i0, (size_t)(i1 - i0) * sizeof(float));
}

void ms_copy_forward(float *dst, const float *src, size_t n)
{
    copy_ctx x = {dst, src};
    ms_parallel_for((int64_t)n, 1 << 18, copy_range, &x);
}

void ms_matmul_forward(float *out, int ldo, const float *inp, int ldi, const float *w, int ldw,
                       const float *bias, int N, int K, int M)
{
    if (g_naive) {
        ms_matmul_forward_naive(out, ldo, inp, ldi, w, ldw, bias, N, K, M);
        return;
    }
    float beta = 0.0f;
    if (bias) { /* C starts as the bias rows (threads share the memory traffic), then beta = 1 */
        rows_ctx x = {out, ldo, bias, M};
        ms_parallel_for(N, 512, bias_rows_range, &x);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, M, K, 1.0f, inp, ldi, w, ldw, beta,
                out, ldo);
}

/* Row-invariant GEMM: OpenBLAS picks its kernel by the call's shape (small-matrix and direct
 * kernels below a size cut, threaded or not above another), and those kernels round
 * differently, so with one GEMM over all B*T rows a row's value depends on how many contexts
 * were batched with it (measured: batch 45 vs 8 on AVX-512 changed 2.8% of the floats). Here
 * every call has the same shape (tile rows, K, M) whatever N, runs single-threaded in BLAS, and
 * our threads take whole tiles: a row depends only on its tile's rows, never on the batch, the
 * rank or the thread count. */
typedef struct tile_ctx {
    float *out;
    const float *inp, *w;
    int ldo, ldi, ldw, K, M, tile;
    float beta;
} tile_ctx;

static void matmul_tiles(void *vctx, int64_t t0, int64_t t1)
{
    const tile_ctx *x = vctx;
    for (int64_t t = t0; t < t1; t++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, x->tile, x->M, x->K, 1.0f,
                    x->inp + (size_t)t * x->tile * x->ldi, x->ldi, x->w, x->ldw, x->beta,
                    x->out + (size_t)t * x->tile * x->ldo, x->ldo);
}

void ms_matmul_forward_tiled(float *out, int ldo, const float *inp, int ldi, const float *w, int ldw,
                             const float *bias, int N, int K, int M, int tile)
{
    if (g_naive || tile < 1 || N % tile != 0) {
        /* the naive loop is row-invariant by construction; a ragged N cannot be tiled */
        if (g_naive || tile < 1) ms_matmul_forward_naive(out, ldo, inp, ldi, w, ldw, bias, N, K, M);
        else ms_matmul_forward(out, ldo, inp, ldi, w, ldw, bias, N, K, M);
        return;
    }
    float beta = 0.0f;
    if (bias) {
        rows_ctx x = {out, ldo, bias, M};
        ms_parallel_for(N, 512, bias_rows_range, &x);
        beta = 1.0f;
    }
    tile_ctx x = {out, inp, w, ldo, ldi, ldw, K, M, tile, beta};
    const int nt = ms_kernels_threads(), blas_nt = openblas_get_num_threads();
    if (blas_nt != 1) openblas_set_num_threads(1);
    ms_parallel_for_nt(nt, N / tile, 1, matmul_tiles, &x);
    if (blas_nt != 1) openblas_set_num_threads(blas_nt);
}

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

/* Softmax of one row's first n entries (the causal prefix) in place; the rest up to T zeroed. */
static inline void softmax_prefix(float *p, int n, int T)
{
    const int n8 = n & ~7;
    v8f mv = splat8(-INFINITY);
    for (int j = 0; j < n8; j += 8) mv = max8(mv, ld8(p + j));
    float mx = hmax8(mv);
    for (int j = n8; j < n; j++) mx = p[j] > mx ? p[j] : mx;
    v8f sv = splat8(0.0f);
    for (int j = 0; j < n8; j += 8) {
        v8f e = exp8(ld8(p + j) - mx);
        st8(p + j, e);
        sv += e;
    }
    float sum = hsum8(sv);
    for (int j = n8; j < n; j++) {
        p[j] = expf_inl(p[j] - mx);
        sum += p[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < n8; j += 8) st8(p + j, ld8(p + j) * inv);
    for (int j = n8; j < n; j++) p[j] *= inv;
    for (int j = n; j < T; j++) p[j] = 0.0f;
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
    if (g_naive) {
        ms_attention_forward_naive(z, att, qkv, B, T, H, D);
        return;
    }
    att_ctx x = {z, att, qkv, T, H, D};
    /* (b,h) pairs split over our threads; each pair's GEMMs run inline in its thread */
    ms_parallel_for_blas(-1, (int64_t)B * H, 1, attention_range, &x);
}

/* ------------------------------------------------------------------ MLP activations */

/* erfc(|z|) by the Chebyshev-fitted form t exp(-z^2 + P(t)), t = 1/(1 + |z|/2) (Numerical
 * Recipes' erfcc; relative error < 1.2e-7 everywhere). */
MS_VINLINE v8f erfc8_abs(v8f z)
{
    z = sel8(z < 0.0f, -z, z);
    v8f t = 1.0f / (1.0f + 0.5f * z);
    v8f p = splat8(0.17087277f);
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    return t * exp8(p - z * z);
}

typedef struct ew_ctx {
    float *out;
    const float *a, *b;
    int act;
} ew_ctx;

MS_HOT
static void act_range(void *vctx, int64_t i0, int64_t i1)
{
    const ew_ctx *x = vctx;
    float *out = x->out;
    const float *in = x->a;
    int64_t i = i0;
    switch (x->act) {
    case MS_ACT_RELU:
        for (; i + 8 <= i1; i += 8) st8(out + i, max8(ld8(in + i), splat8(0.0f)));
        for (; i < i1; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
        break;
    case MS_ACT_GELU: /* exact: 0.5 x (1 + erf(x/sqrt2)), via erfc (below) for accuracy at x < 0 */
        for (; i < i1; i += 8) {
            /* the tail goes through the same 8-lane formula (padded), so an element's value
             * does not depend on where a thread's range or the batch ends */
            float tin[8] = {0}, tout[8];
            const bool full = i + 8 <= i1;
            const float *src = full ? in + i : tin;
            if (!full) memcpy(tin, in + i, (size_t)(i1 - i) * sizeof(float));
            v8f v = ld8(src);
            v8f c = erfc8_abs(v * 0.70710678118654752f);
            v8f r = sel8(v >= 0.0f, v - 0.5f * v * c, 0.5f * v * c);
            if (full) st8(out + i, r);
            else {
                st8(tout, r);
                memcpy(out + i, tout, (size_t)(i1 - i) * sizeof(float));
            }
        }
        break;
    default: { /* gelu_new: 0.5 x (1 + tanh u) = x / (1 + exp(-2u)), free of cancellation at x << 0 */
        const float k = 0.79788456080286536f; /* sqrt(2/pi) */
        for (; i < i1; i += 8) {
            float tin[8] = {0}, tout[8];
            const bool full = i + 8 <= i1;
            const float *src = full ? in + i : tin;
            if (!full) memcpy(tin, in + i, (size_t)(i1 - i) * sizeof(float));
            v8f v = ld8(src);
            v8f u = k * (v + 0.044715f * v * v * v);
            v8f r = v / (1.0f + exp8(-2.0f * u));
            if (full) st8(out + i, r);
            else {
                st8(tout, r);
                memcpy(out + i, tout, (size_t)(i1 - i) * sizeof(float));
            }
        }
    }
    }
}

void ms_act_forward(float *out, const float *inp, size_t n, int act)
{
    ew_ctx x = {out, inp, NULL, act};
    ms_parallel_for((int64_t)n, 1 << 16, act_range, &x);
}

typedef struct solu_ctx {
    float *out;
    const float *inp;
    int M;
} solu_ctx;

MS_HOT
static void solu_range(void *vctx, int64_t n0, int64_t n1)
{
    const solu_ctx *x = vctx;
    const int M = x->M;
    for (int64_t n = n0; n < n1; n++) {
        const float *in = x->inp + (size_t)n * M;
        float *o = x->out + (size_t)n * M;
        memcpy(o, in, (size_t)M * sizeof(float));
        softmax_prefix(o, M, M);
        for (int m = 0; m < M; m++) o[m] *= in[m];
    }
}

void ms_solu_forward(float *out, const float *inp, int N, int M)
{
    solu_ctx x = {out, inp, M};
    ms_parallel_for(N, 64, solu_range, &x);
}

MS_HOT
static void residual_range(void *vctx, int64_t i0, int64_t i1)
{
    const ew_ctx *x = vctx;
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) st8(x->out + i, ld8(x->a + i) + ld8(x->b + i));
    for (; i < i1; i++) x->out[i] = x->a[i] + x->b[i];
}

void ms_residual_forward(float *out, const float *a, const float *b, size_t n)
{
    ew_ctx x = {out, a, b, 0};
    ms_parallel_for((int64_t)n, 1 << 16, residual_range, &x);
}

/* ------------------------------------------------------------------ logits, loss */

/* Adds bias (if any) to the row x (V) and returns the row's max, in one pass. Always inlined, so
 * it is compiled for each MS_HOT caller's target. */
static inline __attribute__((always_inline)) float row_bias_max(float *x, const float *bias, int V)
{
    const int V8 = V & ~7;
    v8f mv = splat8(-INFINITY);
    if (bias) {
        for (int v = 0; v < V8; v += 8) {
            v8f y = ld8(x + v) + ld8(bias + v);
            st8(x + v, y);
            mv = max8(mv, y);
        }
        for (int v = V8; v < V; v++) x[v] += bias[v];
    } else {
        for (int v = 0; v < V8; v += 8) mv = max8(mv, ld8(x + v));
    }
    float mx = hmax8(mv);
    for (int v = V8; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    return mx;
}

/* logsumexp of one row; if bias, adds it to the row first (same pass). */
MS_HOT
static float row_bias_lse(float *x, const float *bias, int V)
{
    const int V8 = V & ~7;
    const float mx = row_bias_max(x, bias, V);
    v8f sv = splat8(0.0f);
    for (int v = 0; v < V8; v += 8) sv += exp8(ld8(x + v) - mx);
    double s = hsum8(sv);
    for (int v = V8; v < V; v++) s += expf_inl(x[v] - mx);
    return mx + (float)log(s);
}

/* KL(p ‖ q) of one row from logits and logsumexps: Σ_v p_v (lp_v − lq_v) written as
 * Σ p_v (a_v − b_v) + (lse_b − lse_a)·Σ p_v, so identical rows give exactly 0 and nothing large
 * cancels; float lanes are flushed into a double every 256 entries. */
MS_HOT
static float row_kl(const float *a, float lse_a, const float *b, float lse_b, int V)
{
    const int V8 = V & ~7;
    double kl = 0, sp = 0;
    int v = 0;
    while (v < V8) {
        v8f acc = splat8(0.0f), ps = splat8(0.0f);
        const int end = v + 256 < V8 ? v + 256 : V8;
        for (; v < end; v += 8) {
            v8f av = ld8(a + v), p = exp8(av - lse_a);
            acc += p * (av - ld8(b + v));
            ps += p;
        }
        kl += hsum8(acc);
        sp += hsum8(ps);
    }
    for (; v < V; v++) {
        float p = expf_inl(a[v] - lse_a);
        kl += (double)(p * (a[v] - b[v]));
        sp += p;
    }
    return (float)(kl + ((double)lse_b - (double)lse_a) * sp);
}

/* Σ_v p_v·x_v for the KL: float products summed in 8 float lanes over blocks of 64 entries,
 * each block's lanes added into two double accumulators. Every caller (the reference pass and
 * the fused logsumexp pass below) runs this same sequence, so the same p and x give the same
 * bits and identical logits a KL of exactly 0. */
typedef double v4d __attribute__((vector_size(32)));
#define PDOT_BLOCK 64
MS_VINLINE void pdot_flush(v4d *a0, v4d *a1, v8f acc)
{
    *a0 += __builtin_convertvector(__builtin_shufflevector(acc, acc, 0, 1, 2, 3), v4d);
    *a1 += __builtin_convertvector(__builtin_shufflevector(acc, acc, 4, 5, 6, 7), v4d);
}
MS_VINLINE double pdot_sum(v4d a0, v4d a1) { return ((a0[0] + a0[1]) + (a0[2] + a0[3])) + ((a1[0] + a1[1]) + (a1[2] + a1[3])); }

/* Reference row: probs = exp(logits − lse) (in place allowed), pdot = Σ p·logit, psum = Σ p. */
MS_HOT
static void row_kl_ref(float *probs, double *pdot, double *psum, const float *x, float lse, int V)
{
    const int V8 = V & ~7;
    v4d a0 = {0, 0, 0, 0}, a1 = {0, 0, 0, 0}, s0 = {0, 0, 0, 0}, s1 = {0, 0, 0, 0};
    for (int v = 0; v < V8;) {
        const int end = v + PDOT_BLOCK < V8 ? v + PDOT_BLOCK : V8;
        v8f acc = splat8(0.0f), ps = splat8(0.0f);
        for (; v < end; v += 8) {
            v8f xv = ld8(x + v), p = exp8(xv - lse);
            acc += p * xv;
            ps += p;
            st8(probs + v, p);
        }
        pdot_flush(&a0, &a1, acc);
        pdot_flush(&s0, &s1, ps);
    }
    double d = pdot_sum(a0, a1), sp = pdot_sum(s0, s1);
    for (int v = V8; v < V; v++) {
        float p = expf_inl(x[v] - lse);
        d += (double)(p * x[v]);
        sp += p;
        probs[v] = p;
    }
    *pdot = d;
    *psum = sp;
}

/* Logsumexp of a row (bias added first when given) and, in the same exp pass, Σ ref_p·x for the
 * KL against a reference: KL(ref ‖ row) = (ref_pdot − Σ ref_p·x) + (lse − ref_lse)·ref_psum. */
MS_HOT
static float row_bias_lse_kl(float *x, const float *bias, const float *rp, double rdot, double rsum,
                             float rlse, float *kl, int V)
{
    const int V8 = V & ~7;
    const float mx = row_bias_max(x, bias, V);
    v8f sv = splat8(0.0f);
    v4d a0 = {0, 0, 0, 0}, a1 = {0, 0, 0, 0};
    for (int v = 0; v < V8;) {
        const int end = v + PDOT_BLOCK < V8 ? v + PDOT_BLOCK : V8;
        v8f acc = splat8(0.0f);
        for (; v < end; v += 8) {
            v8f xv = ld8(x + v);
            sv += exp8(xv - mx);
            acc += ld8(rp + v) * xv;
        }
        pdot_flush(&a0, &a1, acc);
    }
    double s = hsum8(sv), d = pdot_sum(a0, a1);
    for (int v = V8; v < V; v++) {
        s += expf_inl(x[v] - mx);
        d += (double)(rp[v] * x[v]);
    }
    float lse = mx + (float)log(s);
    *kl = (float)((rdot - d) + ((double)lse - (double)rlse) * rsum);
    return lse;
}

typedef struct lse_ctx {
    float *logits, *lse;
    const float *bias;
    int V;
    const float *ref, *ref_lse; /* optional: KL(ref ‖ logits) per row into kl */
    float *kl;
    const ms_kl_ref *kref; /* optional, instead of ref: the reference in probability form */
} lse_ctx;

MS_HOT
static void bias_lse_range(void *vctx, int64_t n0, int64_t n1)
{
    const lse_ctx *x = vctx;
    const int V = x->V;
    for (int64_t n = n0; n < n1; n++) {
        float *row = x->logits + (size_t)n * V;
        if (x->lse && x->kref) {
            const ms_kl_ref *r = x->kref;
            x->lse[n] = row_bias_lse_kl(row, x->bias, r->probs + (size_t)n * V, r->pdot[n], r->psum[n], r->lse[n],
                                        &x->kl[n], V);
        } else if (x->lse) {
            x->lse[n] = row_bias_lse(row, x->bias, V);
            if (x->kl) x->kl[n] = row_kl(x->ref + (size_t)n * V, x->ref_lse[n], row, x->lse[n], V);
        } else if (x->bias) {
            int v = 0;
            for (; v + 8 <= V; v += 8) st8(row + v, ld8(row + v) + ld8(x->bias + v));
            for (; v < V; v++) row[v] += x->bias[v];
        }
    }
}

void ms_logits_bias_lse_forward(float *logits, float *lse, const float *bias, int N, int V)
{
    lse_ctx x = {logits, lse, bias, V, NULL, NULL, NULL, NULL};
    ms_parallel_for(N, 8, bias_lse_range, &x);
}

void ms_logits_bias_lse_klref_forward(float *kl, float *logits, float *lse, const float *bias,
                                      const ms_kl_ref *ref, int N, int V)
{
    lse_ctx x = {logits, lse, bias, V, NULL, NULL, kl, ref};
    ms_parallel_for(N, 8, bias_lse_range, &x);
}

typedef struct klref_ctx {
    float *probs;
    double *pdot, *psum;
    const float *logits, *lse;
    int V;
} klref_ctx;

static void klref_range(void *vctx, int64_t n0, int64_t n1)
{
    const klref_ctx *x = vctx;
    for (int64_t n = n0; n < n1; n++)
        row_kl_ref(x->probs + (size_t)n * x->V, &x->pdot[n], &x->psum[n], x->logits + (size_t)n * x->V, x->lse[n],
                   x->V);
}

void ms_kl_ref_fill(float *probs, double *pdot, double *psum, const float *logits, const float *lse, int N,
                    int V)
{
    klref_ctx x = {probs, pdot, psum, logits, lse, V};
    ms_parallel_for(N, 8, klref_range, &x);
}

void ms_logits_bias_lse_kl_forward(float *kl, float *logits, float *lse, const float *bias,
                                   const float *ref, const float *ref_lse, int N, int V)
{
    lse_ctx x = {logits, lse, bias, V, ref, ref_lse, kl, NULL};
    ms_parallel_for(N, 8, bias_lse_range, &x);
}

typedef struct kl_ctx {
    float *kl;
    const float *lp, *lse_p, *lq, *lse_q;
    int V;
} kl_ctx;

static void kl_range(void *vctx, int64_t n0, int64_t n1)
{
    const kl_ctx *x = vctx;
    for (int64_t n = n0; n < n1; n++)
        x->kl[n] = row_kl(x->lp + (size_t)n * x->V, x->lse_p[n], x->lq + (size_t)n * x->V, x->lse_q[n], x->V);
}

void ms_logits_kl(float *kl, const float *logits_p, const float *lse_p, const float *logits_q,
                  const float *lse_q, int N, int V)
{
    kl_ctx x = {kl, logits_p, lse_p, logits_q, lse_q, V};
    ms_parallel_for(N, 8, kl_range, &x);
}

double ms_crossentropy_forward(float *losses, float *lse, const float *logits,
                               const int32_t *targets, int N, int V, int64_t *n_loss)
{
    ms_logits_bias_lse_forward((float *)logits, lse, NULL, N, V); /* bias NULL: logits untouched */
    double total = 0;
    int64_t cnt = 0;
    for (int n = 0; n < N; n++) {
        if (targets && targets[n] >= 0) {
            losses[n] = lse[n] - logits[(size_t)n * V + targets[n]];
            total += losses[n];
            cnt++;
        } else {
            losses[n] = 0.0f;
        }
    }
    if (n_loss) *n_loss = cnt;
    return total;
}
