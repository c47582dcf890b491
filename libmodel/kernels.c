/* Transformer forward kernels: thread settings, parallel-for over OpenBLAS's pool, exp and the
 * matmul family (BLAS paths with naive twins kept for tests, llm.c style). */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kernels_simd.h"
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
