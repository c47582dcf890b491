/* libsae/sae_kernels.c: the SAE's compute kernels — BLAS wrappers with naive twins, top-k
 * selection, and the sparse kernels used once f is sparse. */
#include "sae_internal.h"

#include <cblas.h>
#include <float.h>
#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* The hot sparse loops are axpy/dot over d_in floats: build them for AVX2+FMA as well as the
 * baseline, picked at load time (the build does not assume -march). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define SAE_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SAE_CLONES
#endif

/* ===================================================================== BLAS and naive twins */

void sae_sgemm(int naive, int tA, int tB, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *Bm, int64_t ldb, float beta, float *C,
               int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    if (!naive) {
        cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans,
                    (int)M, (int)N, (int)K, alpha, A, (int)lda, Bm, (int)ldb, beta, C, (int)ldc);
        return;
    }
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t p = 0; p < K; p++) {
                double a = tA ? A[p * lda + i] : A[i * lda + p];
                double b = tB ? Bm[j * ldb + p] : Bm[p * ldb + j];
                acc += a * b;
            }
            float c = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
            C[i * ldc + j] = c + alpha * (float)acc;
        }
    }
}

void sae_sgemv(int naive, int tA, int64_t M, int64_t N, float alpha, const float *A,
               int64_t lda, const float *x, float beta, float *y)
{
    if (M <= 0) return;
    if (!naive) {
        /* y (M): no-trans A is (M,N); trans A is (N,M) */
        if (!tA)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)M, (int)N, alpha, A, (int)lda, x, 1,
                        beta, y, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)N, (int)M, alpha, A, (int)lda, x, 1, beta,
                        y, 1);
        return;
    }
    for (int64_t i = 0; i < M; i++) {
        double acc = 0.0;
        for (int64_t p = 0; p < N; p++) acc += (double)(tA ? A[p * lda + i] : A[i * lda + p]) * x[p];
        y[i] = (beta == 0.0f ? 0.0f : beta * y[i]) + alpha * (float)acc;
    }
}

/* ===================================================================== selection */

/* Min-heap on (value, -index): the root is the weakest kept element; a candidate replaces it
 * when larger, or equal with a lower index (so ties keep the lowest indices). */
static inline int heap_less(float va, int32_t ia, float vb, int32_t ib)
{
    return va < vb || (va == vb && ia > ib);
}

static void heap_sift_down(float *hv, int32_t *hi, int64_t n, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_less(hv[l], hi[l], hv[m], hi[m])) m = l;
        if (r < n && heap_less(hv[r], hi[r], hv[m], hi[m])) m = r;
        if (m == i) return;
        float tv = hv[i];
        hv[i] = hv[m], hv[m] = tv;
        int32_t ti = hi[i];
        hi[i] = hi[m], hi[m] = ti;
        i = m;
    }
}

SAE_CLONES
int64_t sae_topk(int32_t *out_idx, float *heap_val, const float *v, const int32_t *cand,
                 int64_t n, int64_t k)
{
    if (k > n) k = n;
    if (k <= 0) return 0;
    int64_t i = 0;
    for (; i < k; i++) {
        int32_t j = cand ? cand[i] : (int32_t)i;
        out_idx[i] = j;
        heap_val[i] = v[j];
    }
    for (int64_t h = k / 2 - 1; h >= 0; h--) heap_sift_down(heap_val, out_idx, k, h);
    /* Later indices never win ties (candidates ascend), so only x > root replaces. Most
     * blocks hold no such x once the heap has filled: skip them with a vector compare. */
    if (!cand)
        while (i + 16 <= n) {
            float root = heap_val[0];
            int any = 0;
            for (int l = 0; l < 16; l++) any |= v[i + l] > root;
            if (!any) {
                i += 16;
                continue;
            }
            for (int64_t e = i + 16; i < e; i++) {
                float x = v[i];
                if (x > heap_val[0]) {
                    heap_val[0] = x;
                    out_idx[0] = (int32_t)i;
                    heap_sift_down(heap_val, out_idx, k, 0);
                }
            }
        }
    for (; i < n; i++) {
        int32_t j = cand ? cand[i] : (int32_t)i;
        float x = v[j];
        if (heap_less(heap_val[0], out_idx[0], x, j)) {
            heap_val[0] = x;
            out_idx[0] = j;
            heap_sift_down(heap_val, out_idx, k, 0);
        }
    }
    return k;
}

/* A cut t from a strided sample so that about 2k entries exceed it; the entries > t are
 * compressed out in one vector-friendly pass and the heap runs on those only. Exact: when at
 * least k entries exceed t, the k largest (ties included) all do. Otherwise the full heap. */
SAE_CLONES
static int64_t above_cut(int32_t *restrict out, const float *restrict v, int64_t n, float t)
{
    int64_t c = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        int any = 0;
        for (int l = 0; l < 16; l++) any |= v[i + l] > t;
        if (!any) continue;
        for (int l = 0; l < 16; l++)
            if (v[i + l] > t) out[c++] = (int32_t)(i + l);
    }
    for (; i < n; i++)
        if (v[i] > t) out[c++] = (int32_t)i;
    return c;
}

int64_t sae_topk_fast(int32_t *out_idx, float *heap_val, const float *v, int64_t n, int64_t k,
                      int32_t *scratch)
{
    enum { S = 128 };
    if (k <= 0) return 0;
    if (n < 4 * k || n < 2 * S) return sae_topk(out_idx, heap_val, v, NULL, n, k);
    float smp[S];
    int64_t stride = n / S;
    for (int q = 0; q < S; q++) smp[q] = v[q * stride];
    int64_t r = (int64_t)((double)S * 2.0 * (double)k / (double)n) + 1; /* rank in the sample */
    if (r > S) r = S;
    float scratch_s[S];
    float t = sae_kth_largest(scratch_s, smp, S, r);
    int64_t c = above_cut(scratch, v, n, t);
    if (c < k) return sae_topk(out_idx, heap_val, v, NULL, n, k);
    return sae_topk(out_idx, heap_val, v, scratch, c, k);
}

float sae_kth_largest(float *a, const float *v, int64_t n, int64_t k)
{
    memcpy(a, v, sizeof(float) * (size_t)n);
    /* quickselect for position k-1 in descending order; median-of-three pivot */
    int64_t lo = 0, hi = n - 1, target = k - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        float x = a[lo], y = a[mid], z = a[hi];
        float pivot = (x > y) ? ((y > z) ? y : (x > z ? z : x)) : ((x > z) ? x : (y > z ? z : y));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j], a[j] = t;
                i++, j--;
            }
        }
        if (target <= j)
            hi = j;
        else if (target >= i)
            lo = i;
        else
            return a[target];
    }
    return a[target];
}

/* ===================================================================== sparse kernels */

SAE_CLONES
static void axpy(float *restrict y, float a, const float *restrict x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

SAE_CLONES
static float dot(const float *restrict a, const float *restrict b, int64_t n)
{
    /* 8 partial sums so the compiler can vectorise without -ffast-math */
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s[l] += a[i + l] * b[i + l];
    float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

void sae_sparse_decode(float *xhat, const sae_sparse *csr, const float *W_dec, const float *b_dec,
                       int64_t B, int64_t d_in, int nt)
{
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        float *y = xhat + b * d_in;
        memcpy(y, b_dec, sizeof(float) * (size_t)d_in);
        for (int64_t e = csr->ptr[b]; e < csr->ptr[b + 1]; e++)
            if (csr->val[e] != 0.0f) axpy(y, csr->val[e], W_dec + (int64_t)csr->idx[e] * d_in, d_in);
    }
}

void sae_sparse_rowdot(float *out, const sae_sparse *csr, const float *A, const float *W_dec,
                       int64_t B, int64_t d_in, int nt)
{
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float *a = A + b * d_in;
        for (int64_t e = csr->ptr[b]; e < csr->ptr[b + 1]; e++)
            out[e] = dot(a, W_dec + (int64_t)csr->idx[e] * d_in, d_in);
    }
}

void sae_csr_to_csc(sae_sparse *csc, const sae_sparse *csr, int64_t n_rows, int64_t n_cols)
{
    int64_t *cp = csc->ptr;
    memset(cp, 0, sizeof(int64_t) * (size_t)(n_cols + 1));
    int64_t nnz = csr->ptr[n_rows];
    for (int64_t e = 0; e < nnz; e++) cp[csr->idx[e] + 1]++;
    for (int64_t j = 0; j < n_cols; j++) cp[j + 1] += cp[j];
    /* fill using ptr[j] as a cursor, then shift back */
    for (int64_t b = 0; b < n_rows; b++) {
        for (int64_t e = csr->ptr[b]; e < csr->ptr[b + 1]; e++) {
            int64_t p = cp[csr->idx[e]]++;
            csc->idx[p] = (int32_t)b;
            csc->val[p] = csr->val[e];
            csc->grad[p] = csr->grad[e];
        }
    }
    for (int64_t j = n_cols; j > 0; j--) cp[j] = cp[j - 1];
    cp[0] = 0;
}

void sae_csc_rows(float *out, const sae_sparse *c1, const float *coef1, const float *A1,
                  const sae_sparse *c2, const float *coef2, const float *A2, int64_t n_cols,
                  int64_t d, int nt, float *tmp)
{
    (void)tmp;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64)
    for (int64_t j = 0; j < n_cols; j++) {
        float *y = out + j * d;
        memset(y, 0, sizeof(float) * (size_t)d);
        for (int64_t e = c1->ptr[j]; e < c1->ptr[j + 1]; e++)
            if (coef1[e] != 0.0f) axpy(y, coef1[e], A1 + (int64_t)c1->idx[e] * d, d);
        if (c2)
            for (int64_t e = c2->ptr[j]; e < c2->ptr[j + 1]; e++)
                if (coef2[e] != 0.0f) axpy(y, coef2[e], A2 + (int64_t)c2->idx[e] * d, d);
    }
}

void sae_csc_cols(float *out, const sae_sparse *c1, const float *coef1, const sae_sparse *c2,
                  const float *coef2, const float *A, int64_t n_cols, int64_t d, int nt,
                  float *tmp, int64_t tmp_stride)
{
    enum { BLK = 16 };
    int64_t nblk = (n_cols + BLK - 1) / BLK;
#pragma omp parallel num_threads(nt)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *T = tmp + (int64_t)t * tmp_stride; /* (BLK,d) */
#pragma omp for schedule(dynamic, 4)
        for (int64_t blk = 0; blk < nblk; blk++) {
            int64_t j0 = blk * BLK, nj = n_cols - j0 < BLK ? n_cols - j0 : BLK;
            memset(T, 0, sizeof(float) * (size_t)(BLK * d));
            for (int64_t jj = 0; jj < nj; jj++) {
                float *y = T + jj * d;
                int64_t j = j0 + jj;
                for (int64_t e = c1->ptr[j]; e < c1->ptr[j + 1]; e++)
                    if (coef1[e] != 0.0f) axpy(y, coef1[e], A + (int64_t)c1->idx[e] * d, d);
                if (c2)
                    for (int64_t e = c2->ptr[j]; e < c2->ptr[j + 1]; e++)
                        if (coef2[e] != 0.0f) axpy(y, coef2[e], A + (int64_t)c2->idx[e] * d, d);
            }
            for (int64_t i = 0; i < d; i++) {
                float *o = out + i * n_cols + j0;
                for (int64_t jj = 0; jj < nj; jj++) o[jj] = T[jj * d + i];
            }
        }
    }
}

/* ===================================================================== dense elementwise passes */

SAE_CLONES
int64_t sae_bias_count(float *restrict z, const float *restrict bias, const float *restrict th,
                       float hb, int64_t m, int window)
{
    int32_t c = 0;
    if (window)
        for (int64_t j = 0; j < m; j++) {
            float v = z[j] + bias[j];
            z[j] = v;
            c += (v > th[j]) | (fabsf(v - th[j]) < hb);
        }
    else
        for (int64_t j = 0; j < m; j++) {
            float v = z[j] + bias[j];
            z[j] = v;
            c += v > th[j];
        }
    return c;
}

SAE_CLONES
int64_t sae_count_above(const float *restrict z, const float *restrict th, int64_t m)
{
    int32_t c = 0;
    for (int64_t j = 0; j < m; j++) c += z[j] > th[j];
    return c;
}

SAE_CLONES
int64_t sae_count_window(const float *restrict z, const float *restrict th, float hb, int64_t m)
{
    int32_t c = 0;
    for (int64_t j = 0; j < m; j++) c += (z[j] > th[j]) | (fabsf(z[j] - th[j]) < hb);
    return c;
}

/* Float partial sums over at most this many rows, then into double: vectorisable and exact
 * enough (counts are exact in float up to 2^24). */
#define SAE_FLUSH_ROWS 256

SAE_CLONES
void sae_mask_fill_stats(float *restrict F, const float *restrict Z, int64_t B, int64_t ld,
                         int64_t c0, int64_t c1, const float *restrict th, double *restrict cnt,
                         double *restrict fsum, float *restrict scratch)
{
    int64_t n = c1 - c0;
    float *ac = scratch, *af = scratch + n;
    for (int64_t j = c0; j < c1; j++) cnt[j] = 0.0, fsum[j] = 0.0;
    for (int64_t b0 = 0; b0 < B; b0 += SAE_FLUSH_ROWS) {
        int64_t b1 = b0 + SAE_FLUSH_ROWS < B ? b0 + SAE_FLUSH_ROWS : B;
        for (int64_t q = 0; q < n; q++) ac[q] = 0.0f, af[q] = 0.0f;
        for (int64_t b = b0; b < b1; b++) {
            const float *restrict z = Z + b * ld + c0;
            float *restrict f = F + b * ld + c0;
            const float *restrict t = th + c0;
            for (int64_t q = 0; q < n; q++) {
                float a = z[q] > t[q] ? 1.0f : 0.0f;
                float v = z[q] > t[q] ? z[q] : 0.0f;
                f[q] = v;
                ac[q] += a;
                af[q] += v;
            }
        }
        for (int64_t q = 0; q < n; q++) cnt[c0 + q] += ac[q], fsum[c0 + q] += af[q];
    }
}

/* one row segment: g := z > t ? g + a : 0; acc += g */
SAE_CLONES
static void dz_row(float *restrict g, const float *restrict z, const float *restrict t,
                   const float *restrict a, float *restrict acc, int64_t n)
{
    for (int64_t q = 0; q < n; q++) {
        float u = g[q] + a[q];
        float v = z[q] > t[q] ? u : 0.0f;
        g[q] = v;
        acc[q] += v;
    }
}

SAE_CLONES
static void sum_row(const float *restrict g, float *restrict acc, int64_t n)
{
    for (int64_t q = 0; q < n; q++) acc[q] += g[q];
}

void sae_dz_dense(float *G, const float *Z, int64_t B, int64_t ld, int64_t c0, int64_t c1,
                  const float *th, const float *addv, double *db, float *scratch)
{
    int64_t n = c1 - c0;
    float *acc = scratch;
    if (db)
        for (int64_t j = c0; j < c1; j++) db[j] = 0.0;
    for (int64_t b0 = 0; b0 < B; b0 += SAE_FLUSH_ROWS) {
        int64_t b1 = b0 + SAE_FLUSH_ROWS < B ? b0 + SAE_FLUSH_ROWS : B;
        for (int64_t q = 0; q < n; q++) acc[q] = 0.0f;
        for (int64_t b = b0; b < b1; b++) {
            if (Z)
                dz_row(G + b * ld + c0, Z + b * ld + c0, th + c0, addv + c0, acc, n);
            else
                sum_row(G + b * ld + c0, acc, n);
        }
        if (db)
            for (int64_t q = 0; q < n; q++) db[c0 + q] += acc[q];
    }
}

/* ===================================================================== Adam */

SAE_CLONES
int sae_adam(float *restrict p, float *restrict m, float *restrict v, const float *restrict g,
             size_t n, float b1, float omb1, float b2, float omb2, float lr_bc1, float inv_bc2,
             float eps)
{
    int bad = 0;
    for (size_t e = 0; e < n; e++) {
        float gi = g[e];
        float mi = b1 * m[e] + omb1 * gi;
        float vi = b2 * v[e] + omb2 * gi * gi;
        m[e] = mi;
        v[e] = vi;
        float pi = p[e] - lr_bc1 * mi / (sqrtf(vi * inv_bc2) + eps);
        bad |= !(fabsf(pi) <= FLT_MAX); /* NaN or ±inf */
        p[e] = pi;
    }
    return bad;
}

/* ===================================================================== row compression */

SAE_CLONES
int64_t sae_row_compress(int32_t *restrict idx, float *restrict val, const float *restrict z,
                         const float *restrict th, float hb, int64_t m)
{
    int64_t e = 0, j = 0;
    /* once f is sparse most 16-blocks hold nothing: skip them with one vector test */
    for (; j + 16 <= m; j += 16) {
        int any = 0;
        if (hb < 0.0f)
            for (int l = 0; l < 16; l++) any |= z[j + l] > th[j + l];
        else
            for (int l = 0; l < 16; l++)
                any |= (z[j + l] > th[j + l]) | (fabsf(z[j + l] - th[j + l]) < hb);
        if (!any) continue;
        for (int l = 0; l < 16; l++) {
            float v = z[j + l], t = th[j + l];
            bool a = v > t;
            if (a || (hb >= 0.0f && fabsf(v - t) < hb)) idx[e] = (int32_t)(j + l), val[e++] = a ? v : 0.0f;
        }
    }
    for (; j < m; j++) {
        float v = z[j], t = th[j];
        bool a = v > t;
        if (a || (hb >= 0.0f && fabsf(v - t) < hb)) idx[e] = (int32_t)j, val[e++] = a ? v : 0.0f;
    }
    return e;
}

/* ===================================================================== feature-major sparse */

void sae_csc_decode(float *xhat, const sae_sparse *csc, const float *W_dec, const float *b_dec,
                    int64_t B, int64_t n_cols, int64_t d, int nt)
{
#pragma omp parallel num_threads(nt)
    {
        int t = 0, T = 1;
#ifdef _OPENMP
        t = omp_get_thread_num(), T = omp_get_num_threads();
#endif
        /* each thread owns a range of rows: no races, every W_dec row read once per thread */
        int64_t r0 = B * t / T, r1 = B * (t + 1) / T;
        for (int64_t b = r0; b < r1; b++) memcpy(xhat + b * d, b_dec, sizeof(float) * (size_t)d);
        for (int64_t j = 0; j < n_cols; j++) {
            int64_t e = csc->ptr[j], e1 = csc->ptr[j + 1];
            if (e == e1) continue;
            const float *wr = W_dec + j * d;
            while (e < e1 && csc->idx[e] < r0) e++;
            for (; e < e1 && csc->idx[e] < r1; e++)
                if (csc->val[e] != 0.0f) axpy(xhat + (int64_t)csc->idx[e] * d, csc->val[e], wr, d);
        }
    }
}

void sae_csc_rowdot(float *out, const sae_sparse *csc, const float *A, const float *W_dec,
                    int64_t n_cols, int64_t d, int nt)
{
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64)
    for (int64_t j = 0; j < n_cols; j++) {
        const float *wr = W_dec + j * d;
        for (int64_t e = csc->ptr[j]; e < csc->ptr[j + 1]; e++)
            out[e] = dot(A + (int64_t)csc->idx[e] * d, wr, d);
    }
}

/* ===================================================================== vector helpers */

float sae_dot(const float *a, const float *b, int64_t n) { return dot(a, b, n); }
void sae_axpy(float *y, float a, const float *x, int64_t n) { axpy(y, a, x, n); }

SAE_CLONES
void sae_scale(float *restrict y, float a, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] *= a;
}
