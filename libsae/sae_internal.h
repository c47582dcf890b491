/* libsae/sae_internal.h: private workspace, step context and kernel declarations shared by
 * libsae's SAE files (sae*.c) and the white-box tests (tests/sae). */
#ifndef MONOSEM_SAE_INTERNAL_H
#define MONOSEM_SAE_INTERNAL_H

#include "monosem/sae.h"

#include <time.h>

/* Which matmul implementation forward_backward uses: BLAS (production) or the naive loops
 * kept beside it as the reference the tests compare against. */
enum { SAE_KERNEL_BLAS = 0, SAE_KERNEL_NAIVE = 1 };
/* Path choice: by measured density (auto) or forced, for tests and benchmarks. */
enum { SAE_PATH_AUTO = 0, SAE_PATH_DENSE = 1, SAE_PATH_SPARSE = 2 };

/* Built-in dense/sparse crossover: active fraction of f at or below which the sparse kernels
 * win (bench_sae --crossover, 512x4096, batch 4096, 1 thread CPU time: sparse 250 ms vs dense
 * 920 ms at 1% density, equal near 17%; kept below that so the sparse buffers stay modest;
 * hp.sparse_density overrides). */
#define SAE_SPARSE_CROSSOVER 0.12

/* A sparse matrix in compressed rows (per input row b: features j) or compressed columns
 * (per feature j: rows b). `val` is f, `grad` is ∂L/∂z at the entry. Capacity `cap`. */
typedef struct sae_sparse {
    int64_t *ptr;  /* (n_outer+1) */
    int32_t *idx;  /* (cap) inner index */
    float *val;    /* (cap) */
    float *grad;   /* (cap) */
    int64_t cap;
} sae_sparse;

struct ms_sae_ws {
    int64_t B;           /* capacity in rows */
    int nthreads_max;    /* per-thread scratch allocated for this many threads */
    int kernel;          /* SAE_KERNEL_* */
    int path;            /* SAE_PATH_* */
    int last_sparse;     /* path taken by the last forward_backward (1 = sparse) */
    float *xbar;         /* (B,d_in)  s·x − b_dec */
    float *xhat;         /* (B,d_in) */
    float *dxhat;        /* (B,d_in)  ∂L/∂x̂ */
    float *Z;            /* (B,d_sae) pre-activations; -inf where topk did not select */
    float *F;            /* (B,d_sae) f, then ∂L/∂f, then ∂L/∂z (dense path); scratch */
    double *fsum;        /* (d_sae) Σ_b f_bj */
    double *dbsum;       /* (max(d_sae,d_in)) Σ_b ∂L/∂z_bj, then Σ_b dx̂, in double */
    float *zeros;        /* (d_in) zero bias for the AuxK decode */
    float *zerom;        /* (d_sae) zero thresholds (relu-type masks) */
    float *addv;         /* (d_sae) per-feature constant added to ∂L/∂z at active entries */
    int64_t *rowtmp;     /* (2B) batchtopk per-row counts */
    double *partials;    /* (n_params/4096+1) fixed-block partial sums for the grad norm */
    int64_t tmp_stride;  /* floats of tmp per thread */
    float *colnorm;      /* (d_sae) ‖W_dec,j‖ */
    int32_t *dead_idx;   /* (d_sae) indices of dead latents */
    sae_sparse csr, csc; /* active entries (+ jumprelu window entries with val 0) */
    /* AuxK (topk, batchtopk): k_aux entries per row among dead latents */
    sae_sparse acsr, acsc;
    float *ehat;         /* (B,d_in) AuxK reconstruction ê, then ∂L/∂ê */
    float *tmp;          /* (nthreads_max, 16*d_in) per-thread scratch */
    /* phase seconds, accumulated: 0 encoder GEMM, 1 activation/selection, 2 feature stats,
     * 3 decoder, 4 residual+AuxK, 5 GEMM3+4 | rowdot+CSC+dz, 6 dz pass | dW_dec rows,
     * 7 GEMM5 | dW_enc cols, 8 tail (db_dec GEMV), 9 step */
    double prof[10];
    int32_t *heap_idx;   /* (nthreads_max, max(k,k_aux)) */
    float *heap_val;     /* (nthreads_max, max(k,k_aux)) */
};

/* Test hooks. */
void sae_set_kernel(ms_sae *sae, int kernel);
void sae_set_path(ms_sae *sae, int path);
int sae_last_sparse(const ms_sae *sae);
int sae_nthreads(void);

/* ---- shared helpers (sae*.c) */

#define CLIP_BLOCK 4096 /* fixed blocks: the grad norm sums in the same order always */

static inline bool is_topk(int arch) { return arch == MS_SAE_TOPK || arch == MS_SAE_BATCHTOPK; }

static inline bool aux_enabled(const ms_sae_hparams *hp)
{
    return is_topk(hp->arch) && hp->k_aux > 0 && hp->aux_coeff > 0.0;
}

/* Threads for libsae's own loops: BLAS's count, capped by the per-thread scratch. */
static inline int sae_nthreads_for(const ms_sae *sae)
{
    int n = sae_nthreads();
    return n > sae->ws->nthreads_max ? sae->ws->nthreads_max : n;
}

/* Phase timers (ws->prof) for bench_sae --profile: a clock read per phase, negligible. */
static inline double sae_prof_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
/* Adds the time since *tp to phase k and restarts the clock at now. */
static inline void sae_prof(ms_sae_ws *w, int k, double *tp)
{
    double tn = sae_prof_now();
    w->prof[k] += tn - *tp;
    *tp = tn;
}

/* Column-block partition for passes that accumulate per feature without races. */
static inline void col_range(int64_t m, int nt, int t, int64_t *c0, int64_t *c1)
{
    int64_t per = (m + nt - 1) / nt;
    per = (per + 15) & ~(int64_t)15;
    *c0 = (int64_t)t * per;
    *c1 = *c0 + per;
    if (*c0 > m) *c0 = m;
    if (*c1 > m) *c1 = m;
}

/* ---- encoder pieces (sae_encode.c), shared by the step and ms_sae_encode */

/* xbar (B,d_in) = s·x − b_dec; Z (B,d_sae) = xbar·W_enc (b_enc is added by
 * sae_activation_rows). x (B,d_in). xsq, xsum (d_in): Σ (s·x)², Σ_b s·x if not NULL. */
void sae_encoder_gemm(ms_sae *sae, const float *x, int64_t B, int nt, double *xsq,
                      double *xsum);
/* Adds b_enc to Z's B rows; topk keeps each row's top k (others -inf). kx > 0: AuxK's top kx
 * among the dead latents dead (n_dead) per row, into ws->acsr. rowcnt (B+1) if not NULL:
 * rowcnt[b+1] := row b's entry count (active, + jumprelu's window). */
void sae_activation_rows(ms_sae *sae, int64_t B, int nt, const int32_t *dead, int64_t n_dead,
                         int64_t kx, int64_t *rowcnt);
/* batchtopk: keeps the top k·B entries of Z (B,d_sae) (others -inf, ties in row-major order),
 * row counts into csr.ptr[1..B]; returns the smallest selected positive value (+inf if none). */
float sae_batchtopk_select(ms_sae *sae, int64_t B, int nt);

/* ---- ms_sae_forward_backward's pieces (sae_forward.c, sae_backward.c) */

/* One step's constants and what the forward half hands the backward half. */
typedef struct sae_fb {
    int arch;
    int64_t B, d, m;    /* local batch, d_in, d_sae */
    int nt;             /* threads for libsae's own loops */
    float s;            /* input_scale */
    double inv;         /* 1/B_global */
    double c_mse;       /* MSE normalisation: 1/d_in, april-2024 1 */
    double lam;         /* sparsity coefficient at this step (ms_sae_l1_at) */
    float eps_bw, hb;   /* jumprelu bandwidth ε and ε/2 */
    const float *thm;   /* (d_sae) active iff z > thm_j: threshold (jumprelu) or zeros */
    double *cnt, *fsum; /* (d_sae) per-feature firing counts (in stats), Σ_b f */
    int64_t n_dead, kx; /* dead latents, AuxK entries per row (0: no AuxK this step) */
    int64_t entries;    /* entries in ws->csr */
    bool sparse;        /* the sparse path this step */
    double nnz, l1;     /* Σ firing counts, Σ f */
} sae_fb;

/* The backward half (sae_backward.c), after g.threshold and g.b_enc are zeroed. Dense: the
 * GEMMs 3-5 and the dz pass; sparse: per-feature dz, θ and b_enc, dW_dec rows, dW_enc cols.
 * tp: the phase clock (sae_prof). */
void sae_backward_dense(ms_sae *sae, const sae_fb *c, double *tp);
void sae_backward_sparse(ms_sae *sae, const sae_fb *c, double *tp);
/* After either: dense AuxK's dW_dec rows, april-2024's ‖W_dec,j‖ term, jumprelu's log θ,
 * and db_dec = Σ_b dx̂ − W_enc·db_enc. */
void sae_backward_tail(ms_sae *sae, const sae_fb *c);

/* ---- kernels (sae_kernels.c). Row-major; naive selects the reference loops. */

/* C (M,N) = alpha·op(A)·op(B) + beta·C, op = transpose when tA/tB. */
void sae_sgemm(int naive, int tA, int tB, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *Bm, int64_t ldb, float beta, float *C,
               int64_t ldc);
/* y (M) = alpha·op(A)·x + beta·y, A (M,N) or its transpose (tA: A is (N,M)). */
void sae_sgemv(int naive, int tA, int64_t M, int64_t N, float alpha, const float *A,
               int64_t lda, const float *x, float beta, float *y);

/* Indices of the k largest of v[cand[i]] (cand NULL: v[0..n)), ties to the lower index;
 * written to out_idx in no particular order. Scratch heap_val (k). Returns min(k, n). */
int64_t sae_topk(int32_t *out_idx, float *heap_val, const float *v, const int32_t *cand,
                 int64_t n, int64_t k);
/* Same result as sae_topk over all of v (ties to the lower index), faster when k ≪ n:
 * scratch holds n int32. */
int64_t sae_topk_fast(int32_t *out_idx, float *heap_val, const float *v, int64_t n, int64_t k,
                      int32_t *scratch);
/* The k-th largest value of v (n) (1-based k ≤ n); scratch (n) is clobbered. */
float sae_kth_largest(float *scratch, const float *v, int64_t n, int64_t k);

/* xhat (B,d_in) = b_dec + Σ_{entries of row b} val·W_dec[idx] (CSR over rows). */
void sae_sparse_decode(float *xhat, const sae_sparse *csr, const float *W_dec, const float *b_dec,
                       int64_t B, int64_t d_in, int nt);
/* out[e] = A[b]·W_dec[idx[e]] for every entry e of row b (CSR). */
void sae_sparse_rowdot(float *out, const sae_sparse *csr, const float *A, const float *W_dec,
                       int64_t B, int64_t d_in, int nt);
/* CSR (n_rows) -> CSC (n_cols), entries of a column in increasing row order. */
void sae_csr_to_csc(sae_sparse *csc, const sae_sparse *csr, int64_t n_rows, int64_t n_cols);
/* out[j] = Σ_{e in column j} coef[e]·A[row e] (+ the same over a second CSC if given) for
 * every j (rows with no entries become 0). out (n_cols,d), A (n_rows,d). coef is val or grad. */
void sae_csc_rows(float *out, const sae_sparse *c1, const float *coef1, const float *A1,
                  const sae_sparse *c2, const float *coef2, const float *A2, int64_t n_cols,
                  int64_t d, int nt, float *tmp);
/* Same but written transposed into out (d, n_cols): column j of out. tmp: per-thread scratch
 * of 16·d floats. */
void sae_csc_cols(float *out, const sae_sparse *c1, const float *coef1, const sae_sparse *c2,
                  const float *coef2, const float *A, int64_t n_cols, int64_t d, int nt,
                  float *tmp, int64_t tmp_stride);


/* Dense elementwise passes (vectorised). count_above: #{z_j > th_j}; count_window: #{z_j > th_j
 * or |z_j − th_j| < hb}. */
/* z += bias, returning the count (z > th, or with window also |z − th| < hb). */
int64_t sae_bias_count(float *z, const float *bias, const float *th, float hb, int64_t m,
                       int window);
int64_t sae_count_above(const float *z, const float *th, int64_t m);
int64_t sae_count_window(const float *z, const float *th, float hb, int64_t m);
/* Columns [c0,c1) of B rows (leading dimension ld): F = z > th ? z : 0; cnt_j, fsum_j :=
 * Σ_b [z > th], Σ_b f. scratch: 2·(c1−c0) floats. */
void sae_mask_fill_stats(float *F, const float *Z, int64_t B, int64_t ld, int64_t c0, int64_t c1,
                         const float *th, double *cnt, double *fsum, float *scratch);
/* Columns [c0,c1): G := z > th ? G + addv_j : 0 (Z NULL: G unchanged); db_j := Σ_b G if db.
 * scratch: (c1−c0) floats. */
void sae_dz_dense(float *G, const float *Z, int64_t B, int64_t ld, int64_t c0, int64_t c1,
                  const float *th, const float *addv, double *db, float *scratch);

/* Entries of row z (m) with z_j > th_j (value z_j), plus, when hb >= 0, those with
 * |z_j − th_j| < hb (value 0), in increasing j, into idx/val. Returns the count. */
int64_t sae_row_compress(int32_t *idx, float *val, const float *z, const float *th, float hb,
                         int64_t m);

/* Feature-major twins: xhat (B,d) = b_dec + Σ_{entries (b,j)} val·W_dec[j] from a CSC
 * (threads own row ranges); out[e] = A[row e]·W_dec[j] for every entry of column j. */
void sae_csc_decode(float *xhat, const sae_sparse *csc, const float *W_dec, const float *b_dec,
                    int64_t B, int64_t n_cols, int64_t d, int nt);
void sae_csc_rowdot(float *out, const sae_sparse *csc, const float *A, const float *W_dec,
                    int64_t n_cols, int64_t d, int nt);

/* Vector helpers (dot with 8 float partial sums; y += a·x; y *= a). */
float sae_dot(const float *a, const float *b, int64_t n);
void sae_axpy(float *y, float a, const float *x, int64_t n);
void sae_scale(float *y, float a, int64_t n);

/* Adam on n entries (bias corrections folded: lr_bc1 = lr/(1−β1^t), inv_bc2 = 1/(1−β2^t)):
 * m, v updated, p −= lr_bc1·m/(√(v·inv_bc2)+eps). Returns nonzero if a parameter became
 * non-finite. */
int sae_adam(float *p, float *m, float *v, const float *g, size_t n, float b1, float omb1,
             float b2, float omb2, float lr_bc1, float inv_bc2, float eps);

#endif
