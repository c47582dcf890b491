/* libsae/sae.c: SAE parameters as slabs, per-arch forward/backward (dense 5-GEMM+1-GEMV path
 * and sparse path), Adam step, initialisation, resampling, schedules and the RNG. */
#include "sae_internal.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define BTOPK_THRESHOLD_RATE 0.01 /* batchtopk running-threshold EMA rate (as SAELens) */
#define CLIP_BLOCK 4096           /* fixed blocks: the grad norm sums in the same order always */

/* ===================================================================== RNG */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ms_rng_init(ms_rng *r, uint64_t seed, uint64_t stream)
{
    r->key = mix64(mix64(seed) ^ (stream * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL));
    r->counter = 0;
}

uint64_t ms_rng_u64(ms_rng *r)
{
    uint64_t c = r->counter++;
    return mix64(mix64(r->key + c * 0x9e3779b97f4a7c15ULL) ^ r->key);
}

double ms_rng_uniform(ms_rng *r) { return (double)(ms_rng_u64(r) >> 11) * 0x1.0p-53; }

double ms_rng_normal(ms_rng *r)
{
    double u1 = 1.0 - ms_rng_uniform(r); /* (0,1] */
    double u2 = ms_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ===================================================================== hyper-parameters */

static bool is_topk(int arch) { return arch == MS_SAE_TOPK || arch == MS_SAE_BATCHTOPK; }

ms_status ms_sae_hparams_check(const ms_sae_hparams *hp, ms_err *err)
{
    if (hp->arch < MS_SAE_RELU_L1 || hp->arch > MS_SAE_APRIL_2024)
        return ms_err_set(err, MS_ERR_CONFIG, "sae.arch: unknown architecture %d", hp->arch);
    if (hp->d_in <= 0 || hp->d_in > INT32_MAX)
        return ms_err_set(err, MS_ERR_CONFIG, "sae.d_in: expected 1..%d, got %lld", INT32_MAX,
                          (long long)hp->d_in);
    if (hp->d_sae <= 0 || hp->d_sae > INT32_MAX)
        return ms_err_set(err, MS_ERR_CONFIG, "sae.d_sae: expected 1..%d, got %lld", INT32_MAX,
                          (long long)hp->d_sae);
    if (hp->max_batch <= 0 || hp->max_batch > INT32_MAX)
        return ms_err_set(err, MS_ERR_CONFIG, "sae.batch: local batch must be 1..%d, got %lld",
                          INT32_MAX, (long long)hp->max_batch);
    if (is_topk(hp->arch) && (hp->k <= 0 || hp->k > hp->d_sae))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.k: expected 1..d_sae (%lld), got %lld",
                          (long long)hp->d_sae, (long long)hp->k);
    if (is_topk(hp->arch) && (hp->k_aux < 0 || hp->k_aux > hp->d_sae))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.k_aux: expected 0..d_sae (%lld), got %lld",
                          (long long)hp->d_sae, (long long)hp->k_aux);
    if (hp->arch == MS_SAE_JUMPRELU && !(hp->bandwidth > 0.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.bandwidth: expected > 0, got %g", hp->bandwidth);
    if (hp->arch == MS_SAE_JUMPRELU && !(hp->threshold_init > 0.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.threshold_init: expected > 0, got %g",
                          hp->threshold_init);
    if (!(hp->beta1 >= 0.0 && hp->beta1 < 1.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.beta1: expected in [0,1), got %g", hp->beta1);
    if (!(hp->beta2 >= 0.0 && hp->beta2 < 1.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.beta2: expected in [0,1), got %g", hp->beta2);
    if (!(hp->adam_eps > 0.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.adam_eps: expected > 0, got %g", hp->adam_eps);
    if (!(hp->lr >= 0.0) || !isfinite(hp->lr))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.lr: expected a finite value >= 0, got %g",
                          hp->lr);
    if (!(hp->lambda_warmup_frac >= 0.0 && hp->lambda_warmup_frac <= 1.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.lambda_warmup_frac: expected in [0,1], got %g",
                          hp->lambda_warmup_frac);
    if (!(hp->lr_decay_frac >= 0.0 && hp->lr_decay_frac <= 1.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.lr_decay_frac: expected in [0,1], got %g",
                          hp->lr_decay_frac);
    if (!(hp->grad_clip >= 0.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.grad_clip: expected >= 0, got %g",
                          hp->grad_clip);
    if (hp->l1_coeff < 0.0 || hp->aux_coeff < 0.0 || hp->l0_coeff < 0.0)
        return ms_err_set(err, MS_ERR_CONFIG,
                          "sae: l1_coeff, aux_coeff and l0_coeff must be >= 0 (got %g, %g, %g)",
                          hp->l1_coeff, hp->aux_coeff, hp->l0_coeff);
    return MS_OK;
}

double ms_sae_lr_at(const ms_sae_hparams *hp, int64_t step)
{
    if (hp->lr_decay_frac <= 0.0 || hp->steps <= 0) return hp->lr;
    int64_t n_decay = (int64_t)(hp->lr_decay_frac * (double)hp->steps);
    if (n_decay <= 0) return hp->lr;
    int64_t start = hp->steps - n_decay;
    if (step < start) return hp->lr;
    double f = (double)(hp->steps - step) / (double)n_decay;
    return f > 0.0 ? hp->lr * f : 0.0;
}

double ms_sae_l1_at(const ms_sae_hparams *hp, int64_t step)
{
    double lam = hp->arch == MS_SAE_JUMPRELU ? hp->l0_coeff : hp->l1_coeff;
    if (hp->lambda_warmup_frac <= 0.0 || hp->steps <= 0) return lam;
    int64_t n_warm = (int64_t)(hp->lambda_warmup_frac * (double)hp->steps);
    if (n_warm <= 0 || step >= n_warm) return lam;
    return lam * (double)(step + 1) / (double)n_warm;
}

/* ===================================================================== profiling */

/* Phase timers (ws->prof) for bench_sae --profile: a clock read per phase, negligible. */
static double prof_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#define PROF(k)                                                                                    \
    do {                                                                                           \
        double tn_ = prof_now();                                                                   \
        w->prof[k] += tn_ - tp;                                                                    \
        tp = tn_;                                                                                  \
    } while (0)

/* ===================================================================== allocation */

int sae_nthreads(void)
{
    int n = openblas_get_num_threads();
    return n < 1 ? 1 : n;
}

static int nthreads_for(const ms_sae *sae)
{
    int n = sae_nthreads();
    return n > sae->ws->nthreads_max ? sae->ws->nthreads_max : n;
}

/* 64-byte aligned, zeroed (so every page is touched now, not in the step). */
static void *zalloc(size_t n)
{
    size_t sz = (n + 63) & ~(size_t)63;
    if (sz == 0) sz = 64;
    void *p = aligned_alloc(64, sz);
    if (p) memset(p, 0, sz);
    return p;
}

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

static void set_views(ms_sae_tensors *t, float *slab, const ms_sae_layout *L)
{
    t->W_enc = slab + L->W_enc;
    t->b_enc = slab + L->b_enc;
    t->W_dec = slab + L->W_dec;
    t->b_dec = slab + L->b_dec;
    t->threshold = slab + L->threshold;
}

static void sparse_free(sae_sparse *s)
{
    free(s->ptr), free(s->idx), free(s->val), free(s->grad);
    memset(s, 0, sizeof *s);
}

static bool sparse_alloc(sae_sparse *s, int64_t n_outer, int64_t cap)
{
    s->ptr = zalloc(sizeof(int64_t) * (size_t)(n_outer + 1));
    s->idx = zalloc(sizeof(int32_t) * (size_t)cap);
    s->val = zalloc(sizeof(float) * (size_t)cap);
    s->grad = zalloc(sizeof(float) * (size_t)cap);
    s->cap = cap;
    return s->ptr && s->idx && s->val && s->grad;
}

static bool aux_enabled(const ms_sae_hparams *hp)
{
    return is_topk(hp->arch) && hp->k_aux > 0 && hp->aux_coeff > 0.0;
}

void ms_sae_free(ms_sae *sae)
{
    if (!sae) return;
    free(sae->params), free(sae->grads), free(sae->adam_m), free(sae->adam_v);
    free(sae->since_fired);
    ms_sae_ws *w = sae->ws;
    if (w) {
        free(w->xbar), free(w->xhat), free(w->dxhat), free(w->Z), free(w->F);
        free(w->fsum), free(w->colnorm), free(w->dead_idx), free(w->ehat), free(w->tmp);
        free(w->heap_idx), free(w->heap_val), free(w->zeros), free(w->partials), free(w->dbsum), free(w->zerom), free(w->addv), free(w->rowtmp);
        sparse_free(&w->csr), sparse_free(&w->csc), sparse_free(&w->acsr), sparse_free(&w->acsc);
        free(w);
    }
    memset(sae, 0, sizeof *sae);
}

ms_status ms_sae_init(ms_sae *sae, const ms_sae_hparams *hp, ms_err *err)
{
    memset(sae, 0, sizeof *sae);
    ms_status st = ms_sae_hparams_check(hp, err);
    if (st != MS_OK) return st;
    sae->hp = *hp;
    sae->input_scale = 1.0f;
    size_t d = (size_t)hp->d_in, m = (size_t)hp->d_sae, B = (size_t)hp->max_batch;
    ms_sae_layout *L = &sae->layout;
    L->W_enc = 0;
    L->b_enc = L->W_enc + pad16(d * m);
    L->W_dec = L->b_enc + pad16(m);
    L->b_dec = L->W_dec + pad16(m * d);
    L->threshold = L->b_dec + pad16(d);
    L->n_params = L->threshold + pad16(m);
    size_t P = L->n_params;
    sae->params = zalloc(sizeof(float) * P);
    sae->grads = zalloc(sizeof(float) * P);
    sae->adam_m = zalloc(sizeof(float) * P);
    sae->adam_v = zalloc(sizeof(float) * P);
    sae->since_fired = zalloc(sizeof(int64_t) * m);
    ms_sae_ws *w = sae->ws = calloc(1, sizeof *w);
    if (!sae->params || !sae->grads || !sae->adam_m || !sae->adam_v || !sae->since_fired || !w)
        goto nomem;
    set_views(&sae->p, sae->params, L);
    set_views(&sae->g, sae->grads, L);
    set_views(&sae->m, sae->adam_m, L);
    set_views(&sae->v, sae->adam_v, L);

    w->B = (int64_t)B;
    int nt = sae_nthreads();
#ifdef _OPENMP
    if (omp_get_num_procs() > nt) nt = omp_get_num_procs();
#endif
    w->nthreads_max = nt;
    w->xbar = zalloc(sizeof(float) * B * d);
    w->xhat = zalloc(sizeof(float) * B * d);
    w->dxhat = zalloc(sizeof(float) * B * d);
    w->Z = zalloc(sizeof(float) * B * m);
    w->F = zalloc(sizeof(float) * B * m);
    w->fsum = zalloc(sizeof(double) * m);
    w->dbsum = zalloc(sizeof(double) * (m > d ? m : d));
    w->colnorm = zalloc(sizeof(float) * m);
    w->dead_idx = zalloc(sizeof(int32_t) * m);
    w->zeros = zalloc(sizeof(float) * d);
    w->zerom = zalloc(sizeof(float) * m);
    w->addv = zalloc(sizeof(float) * m);
    w->rowtmp = zalloc(sizeof(int64_t) * 2 * B);
    w->partials = zalloc(sizeof(double) * (P / CLIP_BLOCK + 1));
    w->tmp_stride = (int64_t)(16 * d > 2 * m ? 16 * d : 2 * m) + 16;
    w->tmp = zalloc(sizeof(float) * (size_t)nt * (size_t)w->tmp_stride);
    int64_t kh = hp->k > hp->k_aux ? hp->k : hp->k_aux;
    if (kh < 1) kh = 1;
    w->heap_idx = zalloc(sizeof(int32_t) * (size_t)nt * (size_t)kh);
    w->heap_val = zalloc(sizeof(float) * (size_t)nt * (size_t)kh);
    if (!w->xbar || !w->xhat || !w->dxhat || !w->Z || !w->F || !w->fsum || !w->dbsum || !w->colnorm ||
        !w->dead_idx || !w->zeros || !w->zerom || !w->addv || !w->rowtmp || !w->partials || !w->tmp || !w->heap_idx || !w->heap_val)
        goto nomem;
    /* sparse capacity: every entry for small problems (tests), else what the sparse path can
     * use: B·k for topk archs, the crossover density for the others */
    double dens = hp->sparse_density > 0.0 ? hp->sparse_density : SAE_SPARSE_CROSSOVER;
    int64_t full = (int64_t)(B * m), cap;
    if (full <= (1 << 20))
        cap = full;
    else if (is_topk(hp->arch))
        cap = (int64_t)B * hp->k;
    else if (hp->sparse_density < 0.0)
        cap = 1;
    else
        cap = (int64_t)ceil(dens * (double)full);
    if (cap > full) cap = full;
    if (cap < 1) cap = 1;
    if (!sparse_alloc(&w->csr, (int64_t)B, cap) || !sparse_alloc(&w->csc, (int64_t)m, cap))
        goto nomem;
    if (aux_enabled(hp)) {
        int64_t acap = (int64_t)B * hp->k_aux;
        w->ehat = zalloc(sizeof(float) * B * d);
        if (!w->ehat || !sparse_alloc(&w->acsr, (int64_t)B, acap) ||
            !sparse_alloc(&w->acsc, (int64_t)m, acap))
            goto nomem;
    }
    return MS_OK;
nomem:
    ms_sae_free(sae);
    return ms_err_set(err, MS_ERR_NOMEM,
                      "sae: cannot allocate parameters and workspace (d_in %zu, d_sae %zu, "
                      "batch %zu)",
                      d, m, B);
}

void sae_set_kernel(ms_sae *sae, int kernel) { sae->ws->kernel = kernel; }
void sae_set_path(ms_sae *sae, int path) { sae->ws->path = path; }
int sae_last_sparse(const ms_sae *sae) { return sae->ws->last_sparse; }

/* ===================================================================== initialisation */

static void normalize_rows(float *W, int64_t rows, int64_t cols, float target)
{
    for (int64_t j = 0; j < rows; j++) {
        float *w = W + j * cols;
        double s = 0.0;
        for (int64_t i = 0; i < cols; i++) s += (double)w[i] * w[i];
        if (s <= 0.0) continue;
        float f = (float)(target / sqrt(s));
        for (int64_t i = 0; i < cols; i++) w[i] *= f;
    }
}

/* W_enc (d,m) := W_decᵀ (W_dec is (m,d)) */
static void transpose_into(float *dst, const float *src, int64_t rows, int64_t cols)
{
    for (int64_t j = 0; j < rows; j++)
        for (int64_t i = 0; i < cols; i++) dst[i * rows + j] = src[j * cols + i];
}

void ms_sae_init_params(ms_sae *sae, ms_rng *rng)
{
    const ms_sae_hparams *hp = &sae->hp;
    int64_t d = hp->d_in, m = hp->d_sae;
    memset(sae->params, 0, sizeof(float) * sae->layout.n_params);
    memset(sae->adam_m, 0, sizeof(float) * sae->layout.n_params);
    memset(sae->adam_v, 0, sizeof(float) * sae->layout.n_params);
    memset(sae->since_fired, 0, sizeof(int64_t) * (size_t)m);
    sae->step = 0;
    sae->threshold_set = false;
    if (hp->arch == MS_SAE_APRIL_2024) {
        for (int64_t e = 0; e < m * d; e++) sae->p.W_dec[e] = (float)ms_rng_normal(rng);
        normalize_rows(sae->p.W_dec, m, d, 0.1f);
        transpose_into(sae->p.W_enc, sae->p.W_dec, m, d);
        return;
    }
    float bd = (float)sqrt(6.0 / (double)m); /* W_dec fan_in = d_sae */
    for (int64_t e = 0; e < m * d; e++)
        sae->p.W_dec[e] = (float)((2.0 * ms_rng_uniform(rng) - 1.0) * bd);
    normalize_rows(sae->p.W_dec, m, d, 1.0f);
    if (hp->arch == MS_SAE_RELU_L1 && !hp->enc_transpose) {
        float be = (float)sqrt(6.0 / (double)d); /* W_enc fan_in = d_in */
        for (int64_t e = 0; e < d * m; e++)
            sae->p.W_enc[e] = (float)((2.0 * ms_rng_uniform(rng) - 1.0) * be);
    } else {
        transpose_into(sae->p.W_enc, sae->p.W_dec, m, d);
    }
    if (hp->arch == MS_SAE_JUMPRELU)
        for (int64_t j = 0; j < m; j++) sae->p.threshold[j] = (float)hp->threshold_init;
}

int ms_sae_geometric_median(float *out, const float *x, int64_t n, int64_t d, int max_iter,
                            double tol)
{
    if (n <= 0 || d <= 0) return 0;
    double *y = calloc((size_t)d, sizeof(double)), *num = calloc((size_t)d, sizeof(double));
    if (!y || !num) {
        free(y), free(num);
        return -1;
    }
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < d; i++) y[i] += x[r * d + i];
    for (int64_t i = 0; i < d; i++) y[i] /= (double)n;
    int it = 0;
    for (; it < max_iter; it++) {
        double den = 0.0, mean_dist = 0.0;
        memset(num, 0, sizeof(double) * (size_t)d);
        for (int64_t r = 0; r < n; r++) {
            const float *p = x + r * d;
            double s = 0.0;
            for (int64_t i = 0; i < d; i++) s += (p[i] - y[i]) * (p[i] - y[i]);
            double dist = sqrt(s);
            mean_dist += dist;
            double wgt = 1.0 / (dist > 1e-12 ? dist : 1e-12); /* point at y: bounded weight */
            den += wgt;
            for (int64_t i = 0; i < d; i++) num[i] += wgt * p[i];
        }
        mean_dist /= (double)n;
        double step = 0.0;
        for (int64_t i = 0; i < d; i++) {
            double yn = num[i] / den;
            step += (yn - y[i]) * (yn - y[i]);
            y[i] = yn;
        }
        if (sqrt(step) <= tol * mean_dist) {
            it++;
            break;
        }
    }
    for (int64_t i = 0; i < d; i++) out[i] = (float)y[i];
    free(y), free(num);
    return it;
}

double ms_sae_norm_sum(const float *x, int64_t n, int64_t d)
{
    double t = 0.0;
    for (int64_t r = 0; r < n; r++) {
        double s = 0.0;
        for (int64_t i = 0; i < d; i++) s += (double)x[r * d + i] * x[r * d + i];
        t += sqrt(s);
    }
    return t;
}

double ms_sae_input_scale(double norm_sum, double count, int64_t d)
{
    if (!(norm_sum > 0.0) || !(count > 0.0)) return 1.0;
    return sqrt((double)d) / (norm_sum / count);
}

/* ===================================================================== stats */

size_t ms_sae_stats_len(const ms_sae *sae)
{
    return (size_t)MS_SAE_STAT_FIXED + (size_t)sae->hp.d_sae + (size_t)sae->hp.d_in;
}

double ms_sae_stats_mse(const ms_sae *sae, const double *st)
{
    double n = st[MS_SAE_STAT_ROWS] * (double)sae->hp.d_in;
    return n > 0 ? st[MS_SAE_STAT_SSE] / n : 0.0;
}

double ms_sae_stats_fvu(const ms_sae *sae, const double *st)
{
    double rows = st[MS_SAE_STAT_ROWS];
    if (rows <= 0) return 0.0;
    const double *xs = st + MS_SAE_STAT_FIXED + sae->hp.d_sae;
    double m2 = 0.0;
    for (int64_t i = 0; i < sae->hp.d_in; i++) m2 += xs[i] * xs[i];
    double var = st[MS_SAE_STAT_X_SQ] - m2 / rows;
    return var > 0 ? st[MS_SAE_STAT_SSE] / var : 0.0;
}

double ms_sae_stats_l0(const double *st)
{
    return st[MS_SAE_STAT_ROWS] > 0 ? st[MS_SAE_STAT_L0] / st[MS_SAE_STAT_ROWS] : 0.0;
}

/* ===================================================================== forward pieces */

/* Is entry z of feature j active (f = z) under the arch's mask? Unselected topk entries hold
 * -inf in Z, so z > 0 covers relu, topk and batchtopk. */
static inline bool is_active(int arch, float z, float th)
{
    return arch == MS_SAE_JUMPRELU ? z > th : z > 0.0f;
}

/* xbar = s·x − b_dec; Z = xbar·W_enc + b_enc (bias added by the callers' passes). */
static void encoder_gemm(ms_sae *sae, const float *x, int64_t B, int nt, double *xsq,
                         double *xsum)
{
    const ms_sae_hparams *hp = &sae->hp;
    int64_t d = hp->d_in, m = hp->d_sae;
    float s = sae->input_scale;
    ms_sae_ws *w = sae->ws;
    double sq = 0.0;
    for (int64_t b = 0; b < B; b++) {
        const float *xr = x + b * d;
        float *xb = w->xbar + b * d;
        for (int64_t i = 0; i < d; i++) {
            float v = s * xr[i];
            if (xsum) xsum[i] += v;
            sq += (double)v * v;
            xb[i] = v - sae->p.b_dec[i];
        }
    }
    if (xsq) *xsq = sq;
    (void)nt;
    sae_sgemm(w->kernel, 0, 0, B, m, d, 1.0f, w->xbar, d, sae->p.W_enc, m, 0.0f, w->Z, m);
}

/* Adds b_enc to Z's rows; topk: keeps the row's top k (others -inf); AuxK selection among
 * the dead latents (before masking), into acsr with k_aux_eff entries per row. */
static void activation_rows(ms_sae *sae, int64_t B, int nt, const int32_t *dead, int64_t n_dead,
                            int64_t kx, int64_t *rowcnt)
{
    const float hb = 0.5f * (float)sae->hp.bandwidth;
    const ms_sae_hparams *hp = &sae->hp;
    int64_t m = hp->d_sae;
    ms_sae_ws *w = sae->ws;
    int64_t kh = hp->k > hp->k_aux ? hp->k : hp->k_aux;
    if (kh < 1) kh = 1;
#pragma omp parallel num_threads(nt)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        int32_t *hidx = w->heap_idx + (int64_t)t * kh;
        float *hval = w->heap_val + (int64_t)t * kh;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            float *z = w->Z + b * m;
            /* bias, fused with the row's entry count (active, + jumprelu's window) */
            if (rowcnt)
                rowcnt[b + 1] = hp->arch == MS_SAE_JUMPRELU
                                    ? sae_bias_count(z, sae->p.b_enc, sae->p.threshold, hb, m, 1)
                                    : sae_bias_count(z, sae->p.b_enc, w->zerom, 0.0f, m, 0);
            else
                for (int64_t j = 0; j < m; j++) z[j] += sae->p.b_enc[j];
            if (kx > 0) {
                int64_t base = b * kx;
                int64_t got = sae_topk(hidx, hval, z, dead, n_dead, kx);
                for (int64_t e = 0; e < got; e++) {
                    int32_t j = hidx[e];
                    w->acsr.idx[base + e] = j;
                    w->acsr.val[base + e] = z[j] > 0.0f ? z[j] : 0.0f;
                    w->acsr.grad[base + e] = 0.0f;
                }
                w->acsr.ptr[b + 1] = base + got;
            }
            if (hp->arch == MS_SAE_TOPK) {
                int64_t got = sae_topk_fast(hidx, hval, z, m, hp->k,
                                            (int32_t *)(w->tmp + (int64_t)t * w->tmp_stride));
                for (int64_t e = 0; e < got; e++) hval[e] = z[hidx[e]];
                for (int64_t j = 0; j < m; j++) z[j] = -INFINITY;
                int64_t c = 0;
                for (int64_t e = 0; e < got; e++) z[hidx[e]] = hval[e], c += hval[e] > 0.0f;
                if (rowcnt) rowcnt[b + 1] = c;
            }
        }
    }
    if (kx > 0) w->acsr.ptr[0] = 0;
}

/* batchtopk: keep the top k·B entries of the whole local batch (ties: row-major order);
 * returns the smallest selected positive value (or +inf if none). */
static float batchtopk_select(ms_sae *sae, int64_t B, int nt)
{
    int64_t m = sae->hp.d_sae, N = B * m;
    ms_sae_ws *w = sae->ws;
    int64_t K = sae->hp.k * B;
    if (K > N) K = N;
    /* K-th largest: a cut from a strided sample so that ~1.25K entries exceed it, quickselect
     * on those only (exact when at least K do; else on everything) */
    enum { S = 4096 };
    float t;
    {
        float smp[S] = {0}, scr[S];
        int64_t ns = N < S ? N : S, stride = N / ns;
        for (int64_t q = 0; q < ns; q++) smp[q] = w->Z[q * stride];
        int64_t r = (int64_t)((double)ns * 1.25 * (double)K / (double)N) + 1;
        if (r > ns) r = ns;
        float cut = sae_kth_largest(scr, smp, ns, r);
        int64_t c = 0;
        if (r < ns)
            for (int64_t e = 0; e < N && c <= N / 2; e++)
                if (w->Z[e] > cut) w->F[c++] = w->Z[e];
        if (r < ns && c >= K && 2 * c <= N) /* candidates in F[0,c), quickselect scratch after */
            t = sae_kth_largest(w->F + c, w->F, c, K);
        else
            t = sae_kth_largest(w->F, w->Z, N, K);
    }
    /* per row: > t and == t counts (parallel), then the tie budget in row-major order */
    int64_t *gt = w->rowtmp, *eq = w->rowtmp + B;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        int64_t g = 0, q = 0;
        const float *z = w->Z + b * m;
        for (int64_t j = 0; j < m; j++) g += z[j] > t, q += z[j] == t;
        gt[b] = g, eq[b] = q;
    }
    int64_t ties = K;
    for (int64_t b = 0; b < B; b++) ties -= gt[b];
    for (int64_t b = 0; b < B; b++) { /* eq[b] := ties this row may keep */
        int64_t take = eq[b] < ties ? eq[b] : (ties > 0 ? ties : 0);
        ties -= take;
        eq[b] = take;
    }
    int64_t *rowcnt = w->csr.ptr;
    float mn = INFINITY;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(min : mn)
    for (int64_t b = 0; b < B; b++) {
        float *z = w->Z + b * m;
        int64_t c = 0, tb = eq[b];
        for (int64_t j = 0; j < m; j++) {
            float v = z[j];
            bool keep = v > t || (v == t && tb-- > 0);
            if (!keep)
                z[j] = -INFINITY;
            else if (v > 0.0f) {
                c++;
                if (v < mn) mn = v;
            }
        }
        rowcnt[b + 1] = c;
    }
    return mn;
}

/* Column-block partition for passes that accumulate per feature without races. */
static void col_range(int64_t m, int nt, int t, int64_t *c0, int64_t *c1)
{
    int64_t per = (m + nt - 1) / nt;
    per = (per + 15) & ~(int64_t)15;
    *c0 = (int64_t)t * per;
    *c1 = *c0 + per;
    if (*c0 > m) *c0 = m;
    if (*c1 > m) *c1 = m;
}

/* ===================================================================== forward_backward */

ms_status ms_sae_forward_backward(ms_sae *sae, const float *x, int64_t B, int64_t B_global,
                                  double *stats, ms_err *err)
{
    const ms_sae_hparams *hp = &sae->hp;
    ms_sae_ws *w = sae->ws;
    if (B < 1 || B > w->B || B_global < B)
        return ms_err_set(err, MS_ERR_USAGE,
                          "sae forward_backward: local batch %lld must be in 1..%lld and <= "
                          "global batch %lld",
                          (long long)B, (long long)w->B, (long long)B_global);
    const int arch = hp->arch;
    const int64_t d = hp->d_in, m = hp->d_sae;
    const float s = sae->input_scale;
    /* own loops threaded only when there is enough work to pay for the fork/join */
    const int nt = B * m >= (1 << 20) ? nthreads_for(sae) : 1;
    const double inv = 1.0 / (double)B_global;
    const double c_mse = arch == MS_SAE_APRIL_2024 ? 1.0 : 1.0 / (double)d;
    const double lam = ms_sae_l1_at(hp, sae->step);
    const float eps_bw = (float)hp->bandwidth;
    memset(stats, 0, sizeof(double) * ms_sae_stats_len(sae));
    double *cnt = stats + MS_SAE_STAT_FIXED, *xsum = cnt + m;
    double *fsum = w->fsum;
    float *th = sae->p.threshold;

    double tp = prof_now();
    /* 1. encoder: xbar, Z (GEMM 1) */
    encoder_gemm(sae, x, B, nt, &stats[MS_SAE_STAT_X_SQ], xsum);

    PROF(0);
    /* 2. activation: bias, AuxK selection among dead latents, topk/batchtopk selection */
    int64_t n_dead = 0, kx = 0;
    if (aux_enabled(hp)) {
        for (int64_t j = 0; j < m; j++)
            if (sae->since_fired[j] >= hp->dead_tokens) w->dead_idx[n_dead++] = (int32_t)j;
        kx = hp->k_aux < n_dead ? hp->k_aux : n_dead;
    }
    activation_rows(sae, B, nt, w->dead_idx, n_dead, kx, w->csr.ptr);
    if (arch == MS_SAE_BATCHTOPK) {
        float mn = batchtopk_select(sae, B, nt);
        if (isfinite(mn)) stats[MS_SAE_STAT_THRESH_SUM] = mn, stats[MS_SAE_STAT_THRESH_N] = 1.0;
    }

    PROF(1);
    /* 3. path by measured density (entries per row counted in the activation pass) */
    const float *thm = arch == MS_SAE_JUMPRELU ? th : w->zerom; /* active: z > thm_j */
    const float hb = 0.5f * eps_bw;
    int64_t *rp = w->csr.ptr; /* row counts from the activation pass */
    rp[0] = 0;
    for (int64_t b = 0; b < B; b++) rp[b + 1] += rp[b];
    int64_t entries = rp[B];
    double dens_thr = hp->sparse_density > 0.0 ? hp->sparse_density : SAE_SPARSE_CROSSOVER;
    bool sparse;
    if (w->path == SAE_PATH_DENSE || hp->sparse_density < 0.0)
        sparse = false;
    else if (w->path == SAE_PATH_SPARSE || is_topk(arch))
        sparse = true;
    else
        sparse = (double)entries <= dens_thr * (double)B * (double)m;
    if (entries > w->csr.cap) sparse = false;
    w->last_sparse = sparse;
    stats[MS_SAE_STAT_SPARSE] = sparse ? 1.0 : 0.0;
    if (arch == MS_SAE_APRIL_2024)
        for (int64_t j = 0; j < m; j++) {
            const float *wr = sae->p.W_dec + j * d;
            double q = 0.0;
            for (int64_t i = 0; i < d; i++) q += (double)wr[i] * wr[i];
            w->colnorm[j] = (float)sqrt(q);
        }

    PROF(2);
    /* 4. f, per-feature firing counts and Σf; 5. decoder x̂ = f·W_dec + b_dec */
    if (sparse) {
        /* CSR of active entries (+ jumprelu window entries with f = 0), rows in parallel */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t b = 0; b < B; b++)
            sae_row_compress(w->csr.idx + rp[b], w->csr.val + rp[b], w->Z + b * m, thm,
                             arch == MS_SAE_JUMPRELU ? hb : -1.0f, m);
        for (int64_t j = 0; j < m; j++) cnt[j] = 0.0, fsum[j] = 0.0;
        for (int64_t e = 0; e < entries; e++) { /* nnz is small here: serial is fine */
            float v = w->csr.val[e];
            cnt[w->csr.idx[e]] += v > 0.0f;
            fsum[w->csr.idx[e]] += v;
        }
        /* feature-major from here on: each W_dec row is loaded once per step, not once per
         * entry (x̂ rows, 16x smaller than W_dec at 512x16384, take the random accesses) */
        sae_csr_to_csc(&w->csc, &w->csr, B, m);
        sae_csc_decode(w->xhat, &w->csc, sae->p.W_dec, sae->p.b_dec, B, m, d, nt);
    } else {
        /* column blocks: F and the per-feature sums without races */
#pragma omp parallel num_threads(nt)
        {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            int64_t c0, c1;
            col_range(m, nt, t, &c0, &c1);
            if (c1 > c0)
                sae_mask_fill_stats(w->F, w->Z, B, m, c0, c1, thm, cnt, fsum,
                                    w->tmp + (int64_t)t * w->tmp_stride);
        }
        for (int64_t b = 0; b < B; b++)
            memcpy(w->xhat + b * d, sae->p.b_dec, sizeof(float) * (size_t)d);
        /* GEMM 2: (B,m)·(m,d) */
        sae_sgemm(w->kernel, 0, 0, B, d, m, 1.0f, w->F, m, sae->p.W_dec, d, 1.0f, w->xhat, d);
    }
    double nnz = 0.0, l1 = 0.0;
    for (int64_t j = 0; j < m; j++) nnz += cnt[j], l1 += fsum[j];
    stats[MS_SAE_STAT_L0] = nnz;
    stats[MS_SAE_STAT_L1] = l1;

    PROF(3);
    /* 6. reconstruction loss and ∂L/∂x̂ (x̂ − s·x kept in dxhat for AuxK first) */
    double sse = 0.0;
    const float gscale = (float)(2.0 * c_mse * inv);
    for (int64_t b = 0; b < B; b++) {
        const float *xr = x + b * d, *xh = w->xhat + b * d;
        float *r = w->dxhat + b * d;
        for (int64_t i = 0; i < d; i++) {
            float e = xh[i] - s * xr[i];
            sse += (double)e * e;
            r[i] = e;
        }
    }
    stats[MS_SAE_STAT_SSE] = sse;
    double loss_mse = c_mse * inv * sse;

    /* 7. AuxK: ê from the dead latents; target the detached residual e = s·x − x̂ = −r */
    double loss_aux = 0.0;
    if (kx > 0) {
        double scale = (double)n_dead / (double)hp->k_aux;
        if (scale > 1.0) scale = 1.0;
        /* feature-major, as the main sparse path: each dead latent's W_dec row read once */
        sae_csr_to_csc(&w->acsc, &w->acsr, B, m);
        sae_csc_decode(w->ehat, &w->acsc, sae->p.W_dec, w->zeros, B, m, d, nt);
        double asse = 0.0;
        const float ag = (float)(2.0 * hp->aux_coeff * scale * c_mse * inv);
        for (int64_t b = 0; b < B; b++) {
            float *eh = w->ehat + b * d;
            const float *r = w->dxhat + b * d;
            for (int64_t i = 0; i < d; i++) {
                float q = eh[i] + r[i];
                asse += (double)q * q;
                eh[i] = ag * q; /* ehat now holds ∂L/∂ê */
            }
        }
        loss_aux = hp->aux_coeff * scale * c_mse * inv * asse;
        sae_csc_rowdot(w->acsc.grad, &w->acsc, w->ehat, sae->p.W_dec, m, d, nt);
        int64_t na = w->acsc.ptr[m];
        for (int64_t e = 0; e < na; e++)
            if (!(w->acsc.val[e] > 0.0f)) w->acsc.grad[e] = 0.0f;
    }
    for (int64_t e = 0; e < B * d; e++) w->dxhat[e] *= gscale;

    PROF(4);
    /* 8. sparsity term */
    double loss_sp = 0.0;
    if (arch == MS_SAE_RELU_L1)
        loss_sp = lam * inv * l1;
    else if (arch == MS_SAE_APRIL_2024) {
        double q = 0.0;
        for (int64_t j = 0; j < m; j++) q += fsum[j] * w->colnorm[j];
        loss_sp = lam * inv * q;
    } else if (arch == MS_SAE_JUMPRELU)
        loss_sp = lam * inv * nnz;
    stats[MS_SAE_STAT_SPARSITY] = loss_sp;
    stats[MS_SAE_STAT_AUX] = loss_aux;
    stats[MS_SAE_STAT_LOSS] = loss_mse + loss_sp + loss_aux;
    stats[MS_SAE_STAT_ROWS] = (double)B;
    if (!isfinite(stats[MS_SAE_STAT_LOSS]))
        return ms_err_set(err, MS_ERR_NUMERIC,
                          "sae forward_backward: loss is not finite (mse %g, sparsity %g, aux %g)",
                          loss_mse, loss_sp, loss_aux);

    /* 9. backward. ∂L/∂z at active entries: df (+λ/B, +λ/B·‖W_dec,j‖); jumprelu θ by STE. */
    const float l1g = (float)(lam * inv);
    const float inv_eps = 1.0f / eps_bw;
    const float l0g = (float)(lam * inv);
    float *gth = sae->g.threshold;
    memset(gth, 0, sizeof(float) * (size_t)m);
    memset(sae->g.b_enc, 0, sizeof(float) * (size_t)m);
    if (!sparse) {
        /* GEMM 3: dW_dec = fᵀ·dx̂ (m,B)·(B,d) */
        sae_sgemm(w->kernel, 1, 0, m, d, B, 1.0f, w->F, m, w->dxhat, d, 0.0f, sae->g.W_dec, d);
        /* GEMM 4: F := ∂L/∂f = dx̂·W_decᵀ (B,d)·(d,m) */
        sae_sgemm(w->kernel, 0, 1, B, m, d, 1.0f, w->dxhat, d, sae->p.W_dec, d, 0.0f, w->F, m);
        PROF(5);
        /* ∂L/∂z = (z active) ? df + addv_j : 0, and db_enc = Σ_b ∂L/∂z (column blocks) */
        float *addv = w->addv;
        for (int64_t j = 0; j < m; j++)
            addv[j] = arch == MS_SAE_RELU_L1 ? l1g
                      : arch == MS_SAE_APRIL_2024 ? l1g * w->colnorm[j] : 0.0f;
        if (arch == MS_SAE_JUMPRELU) /* θ's STE needs df at the window entries: before masking */
            for (int64_t b = 0; b < B; b++) {
                const float *z = w->Z + b * m, *g = w->F + b * m;
                for (int64_t j = 0; j < m; j++)
                    if (fabsf(z[j] - th[j]) < hb) gth[j] += -(th[j] * inv_eps) * g[j] - l0g * inv_eps;
            }
        if (kx > 0) { /* AuxK's ∂L/∂z joins after the mask (its entries need not be active) */
#pragma omp parallel num_threads(nt)
            {
                int t = 0;
#ifdef _OPENMP
                t = omp_get_thread_num();
#endif
                int64_t c0, c1;
                col_range(m, nt, t, &c0, &c1);
                if (c1 > c0)
                    sae_dz_dense(w->F, w->Z, B, m, c0, c1, thm, addv, NULL,
                                 w->tmp + (int64_t)t * w->tmp_stride);
            }
            for (int64_t j = 0; j < m; j++)
                for (int64_t e = w->acsc.ptr[j]; e < w->acsc.ptr[j + 1]; e++)
                    w->F[(int64_t)w->acsc.idx[e] * m + j] += w->acsc.grad[e];
            for (int64_t j = 0; j < m; j++) addv[j] = 0.0f;
        }
#pragma omp parallel num_threads(nt)
        {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            int64_t c0, c1;
            col_range(m, nt, t, &c0, &c1);
            if (c1 > c0)
                sae_dz_dense(w->F, kx > 0 ? NULL : w->Z, B, m, c0, c1, thm, addv, w->dbsum,
                             w->tmp + (int64_t)t * w->tmp_stride);
            for (int64_t j = c0; j < c1; j++) sae->g.b_enc[j] = (float)w->dbsum[j];
        }
        PROF(6);
        /* GEMM 5: dW_enc = x̄ᵀ·dz (d,B)·(B,m) */
        sae_sgemm(w->kernel, 1, 0, d, m, B, 1.0f, w->xbar, d, w->F, m, 0.0f, sae->g.W_enc, m);
    } else {
        /* df at the listed entries, then per feature (CSC): dz, θ gradient, db_enc */
        sae_csc_rowdot(w->csc.grad, &w->csc, w->dxhat, sae->p.W_dec, m, d, nt);
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t j = 0; j < m; j++) {
            double gb = 0.0, gt = 0.0;
            for (int64_t e = w->csc.ptr[j]; e < w->csc.ptr[j + 1]; e++) {
                float df = w->csc.grad[e], dz = df; /* entries are active except jumprelu's window */
                if (arch == MS_SAE_RELU_L1) dz += l1g;
                else if (arch == MS_SAE_APRIL_2024) dz += l1g * w->colnorm[j];
                else if (arch == MS_SAE_JUMPRELU) {
                    float z = w->Z[(int64_t)w->csc.idx[e] * m + j];
                    if (fabsf(z - th[j]) < hb)
                        gt += -(th[j] * inv_eps) * df - l0g * inv_eps;
                    if (!(z > th[j])) dz = 0.0f;
                }
                w->csc.grad[e] = dz;
                gb += dz;
            }
            if (kx > 0)
                for (int64_t e = w->acsc.ptr[j]; e < w->acsc.ptr[j + 1]; e++) gb += w->acsc.grad[e];
            sae->g.b_enc[j] = (float)gb;
            gth[j] = (float)gt;
        }
        PROF(5);
        /* dW_dec_j = Σ f·dx̂ (+ Σ f_aux·∂L/∂ê) */
        sae_csc_rows(sae->g.W_dec, &w->csc, w->csc.val, w->dxhat, kx > 0 ? &w->acsc : NULL,
                     w->acsc.val, w->ehat, m, d, nt, w->tmp);
        PROF(6);
        /* dW_enc[:,j] = Σ dz·x̄ */
        sae_csc_cols(sae->g.W_enc, &w->csc, w->csc.grad, kx > 0 ? &w->acsc : NULL, w->acsc.grad,
                     w->xbar, m, d, nt, w->tmp, w->tmp_stride);
    }
    PROF(7);
    if (!sparse && kx > 0) {
        /* dense path: AuxK's contribution to dW_dec rows */
        for (int64_t j = 0; j < m; j++)
            for (int64_t e = w->acsc.ptr[j]; e < w->acsc.ptr[j + 1]; e++)
                if (w->acsc.val[e] != 0.0f)
                    sae_axpy(sae->g.W_dec + j * d, w->acsc.val[e],
                             w->ehat + (int64_t)w->acsc.idx[e] * d, d);
    }
    /* april-2024: ∂/∂W_dec,j of λ/B·Σ_b f_bj‖W_dec,j‖ = λ/B·(Σ_b f_bj)·W_dec,j/‖W_dec,j‖ */
    if (arch == MS_SAE_APRIL_2024)
        for (int64_t j = 0; j < m; j++) {
            if (w->colnorm[j] <= 0.0f || fsum[j] == 0.0) continue;
            float c = (float)(lam * inv * fsum[j] / w->colnorm[j]);
            const float *wr = sae->p.W_dec + j * d;
            float *gr = sae->g.W_dec + j * d;
            for (int64_t i = 0; i < d; i++) gr[i] += c * wr[i];
        }
    /* jumprelu: the slab holds ∂L/∂(log θ) = θ·∂L/∂θ */
    if (arch == MS_SAE_JUMPRELU)
        for (int64_t j = 0; j < m; j++) gth[j] *= th[j];
    /* db_dec = Σ_b dx̂ − W_enc·db_enc: the GEMV that replaces autograd's 6th GEMM */
    float *gbd = sae->g.b_dec;
    double *accd = w->dbsum; /* Σ_b dx̂ in double, row by row (contiguous) */
    for (int64_t i = 0; i < d; i++) accd[i] = 0.0;
    for (int64_t b = 0; b < B; b++) {
        const float *r = w->dxhat + b * d;
        for (int64_t i = 0; i < d; i++) accd[i] += r[i];
    }
    for (int64_t i = 0; i < d; i++) gbd[i] = (float)accd[i];
    sae_sgemv(w->kernel, 0, d, m, -1.0f, sae->p.W_enc, m, sae->g.b_enc, 1.0f, gbd);
    PROF(8);
    return MS_OK;
}

/* ===================================================================== step */

ms_status ms_sae_step(ms_sae *sae, double lr, const double *stats, ms_sae_step_info *info,
                      ms_err *err)
{
    const ms_sae_hparams *hp = &sae->hp;
    const int64_t d = hp->d_in, m = hp->d_sae;
    const ms_sae_layout *L = &sae->layout;
    const int nt = L->n_params >= ((size_t)1 << 21) ? nthreads_for(sae) : 1;
    float *g = sae->grads, *p = sae->params, *mm = sae->adam_m, *vv = sae->adam_v;
    if (info) info->lr = lr, info->grad_norm = 0.0;
    double tp = prof_now();
    ms_sae_ws *w = sae->ws;

    /* relu-l1: remove the component of each W_dec row's gradient along the row */
    if (hp->arch == MS_SAE_RELU_L1) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t j = 0; j < m; j++) {
            const float *wr = sae->p.W_dec + j * d;
            float *gr = sae->g.W_dec + j * d;
            float gw = sae_dot(gr, wr, d), ww = sae_dot(wr, wr, d);
            if (!(ww > 0.0f)) continue;
            sae_axpy(gr, -gw / ww, wr, d);
        }
    }

    /* global-norm clipping (fixed-block summation: same order whatever the thread count) */
    if (hp->grad_clip > 0.0) {
        size_t P = L->n_params, nb = (P + CLIP_BLOCK - 1) / CLIP_BLOCK;
        double *part = sae->ws->partials;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t k = 0; k < nb; k++) {
            size_t e0 = k * CLIP_BLOCK, e1 = e0 + CLIP_BLOCK < P ? e0 + CLIP_BLOCK : P;
            double q = 0.0;
            for (size_t e = e0; e < e1; e++) q += (double)g[e] * g[e];
            part[k] = q;
        }
        double q = 0.0;
        for (size_t k = 0; k < nb; k++) q += part[k];
        double norm = sqrt(q);
        if (info) info->grad_norm = norm;
        if (!isfinite(norm))
            return ms_err_set(err, MS_ERR_NUMERIC, "sae step %lld: gradient norm is not finite",
                              (long long)sae->step);
        if (norm > hp->grad_clip) {
            float c = (float)(hp->grad_clip / norm);
#pragma omp parallel for num_threads(nt) schedule(static)
            for (size_t e = 0; e < P; e++) g[e] *= c;
        }
    }

    /* Adam, bias-corrected, t = step + 1 */
    const double t = (double)(sae->step + 1);
    /* 1−β in double first: (1.0f − 0.999f) is off by 1.3e-5 relative */
    const float b1 = (float)hp->beta1, b2 = (float)hp->beta2;
    const float omb1 = (float)(1.0 - hp->beta1), omb2 = (float)(1.0 - hp->beta2);
    const float bc1 = (float)(1.0 - pow(hp->beta1, t)), bc2 = (float)(1.0 - pow(hp->beta2, t));
    const float lrf = (float)lr, eps = (float)hp->adam_eps;
    const size_t n_main = L->threshold; /* everything before the threshold block */
    int bad = 0;
    const size_t chunk = 1 << 16;
    const size_t n_chunks = (n_main + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : bad)
    for (size_t c = 0; c < n_chunks; c++) {
        size_t e0 = c * chunk, n = n_main - e0 < chunk ? n_main - e0 : chunk;
        bad |= sae_adam(p + e0, mm + e0, vv + e0, g + e0, n, b1, omb1, b2, omb2, lrf / bc1,
                        1.0f / bc2, eps);
    }
    if (hp->arch == MS_SAE_JUMPRELU) {
        /* Adam on log θ: θ ← θ·exp(−Δ) */
        for (int64_t j = 0; j < m; j++) {
            size_t e = L->threshold + (size_t)j;
            float gi = g[e];
            float mi = b1 * mm[e] + omb1 * gi;
            float vi = b2 * vv[e] + omb2 * gi * gi;
            mm[e] = mi, vv[e] = vi;
            float delta = lrf * (mi / bc1) / (sqrtf(vi / bc2) + eps);
            p[e] *= expf(-delta);
            bad |= !isfinite(p[e]);
        }
    }
    if (bad)
        return ms_err_set(err, MS_ERR_NUMERIC,
                          "sae step %lld: parameters became non-finite (lr %g too large?)",
                          (long long)sae->step, lr);

    if (hp->arch == MS_SAE_RELU_L1) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t j = 0; j < m; j++) {
            float *wr = sae->p.W_dec + j * d;
            float ww = sae_dot(wr, wr, d);
            if (ww > 0.0f) sae_scale(wr, 1.0f / sqrtf(ww), d);
        }
    }

    if (hp->arch == MS_SAE_BATCHTOPK && stats[MS_SAE_STAT_THRESH_N] > 0.0) {
        double v = stats[MS_SAE_STAT_THRESH_SUM] / stats[MS_SAE_STAT_THRESH_N];
        double th = sae->threshold_set ? (1.0 - BTOPK_THRESHOLD_RATE) * sae->p.threshold[0] +
                                             BTOPK_THRESHOLD_RATE * v
                                       : v;
        for (int64_t j = 0; j < m; j++) sae->p.threshold[j] = (float)th;
        sae->threshold_set = true;
    }

    const double *cnt = stats + MS_SAE_STAT_FIXED;
    int64_t rows = (int64_t)stats[MS_SAE_STAT_ROWS];
    for (int64_t j = 0; j < m; j++) sae->since_fired[j] = cnt[j] > 0.0 ? 0 : sae->since_fired[j] + rows;
    sae->step++;
    PROF(9);
    return MS_OK;
}

/* ===================================================================== dead latents, resampling */

int64_t ms_sae_dead_mask(const ms_sae *sae, int64_t tokens, uint8_t *mask)
{
    int64_t n = 0;
    for (int64_t j = 0; j < sae->hp.d_sae; j++) {
        mask[j] = sae->since_fired[j] >= tokens;
        n += mask[j];
    }
    return n;
}

void ms_sae_encode(ms_sae *sae, float *f, const float *x, int64_t B)
{
    const ms_sae_hparams *hp = &sae->hp;
    ms_sae_ws *w = sae->ws;
    int64_t m = hp->d_sae;
    int nt = nthreads_for(sae);
    for (int64_t b0 = 0; b0 < B; b0 += w->B) {
        int64_t nb = B - b0 < w->B ? B - b0 : w->B;
        encoder_gemm(sae, x + b0 * hp->d_in, nb, nt, NULL, NULL);
        int arch = hp->arch == MS_SAE_BATCHTOPK ? MS_SAE_JUMPRELU : hp->arch;
        if (hp->arch == MS_SAE_TOPK) {
            activation_rows(sae, nb, nt, NULL, 0, 0, NULL);
        } else {
#pragma omp parallel for num_threads(nt) schedule(static)
            for (int64_t b = 0; b < nb; b++)
                for (int64_t j = 0; j < m; j++) w->Z[b * m + j] += sae->p.b_enc[j];
        }
        float *fo = f + b0 * m;
        const float *th = sae->p.threshold;
        for (int64_t b = 0; b < nb; b++)
            for (int64_t j = 0; j < m; j++) {
                float z = w->Z[b * m + j];
                fo[b * m + j] = is_active(arch, z, th[j]) ? z : 0.0f;
            }
    }
}

void ms_sae_decode(const ms_sae *sae, float *xhat, const float *f, int64_t B)
{
    int64_t d = sae->hp.d_in, m = sae->hp.d_sae;
    for (int64_t b = 0; b < B; b++) memcpy(xhat + b * d, sae->p.b_dec, sizeof(float) * (size_t)d);
    sae_sgemm(sae->ws->kernel, 0, 0, B, d, m, 1.0f, f, m, sae->p.W_dec, d, 1.0f, xhat, d);
}

void ms_sae_decode_sparse(const ms_sae *sae, float *xhat, const float *f, int64_t B)
{
    const int64_t d = sae->hp.d_in, m = sae->hp.d_sae;
    int nt = nthreads_for(sae);
    (void)nt;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        float *xr = xhat + b * d;
        const float *fr = f + b * m;
        memcpy(xr, sae->p.b_dec, sizeof(float) * (size_t)d);
        for (int64_t j = 0; j < m; j++) {
            if (fr[j] == 0.0f) continue;
            const float a = fr[j], *w = sae->p.W_dec + j * d;
            for (int64_t i = 0; i < d; i++) xr[i] += a * w[i];
        }
    }
}

void ms_sae_loss_per_input(ms_sae *sae, const float *x, int64_t n, float *out)
{
    const ms_sae_hparams *hp = &sae->hp;
    ms_sae_ws *w = sae->ws;
    int64_t d = hp->d_in, m = hp->d_sae;
    double c_mse = hp->arch == MS_SAE_APRIL_2024 ? 1.0 : 1.0 / (double)d;
    double lam = ms_sae_l1_at(hp, sae->step);
    float s = sae->input_scale;
    if (hp->arch == MS_SAE_APRIL_2024)
        for (int64_t j = 0; j < m; j++) {
            double q = 0.0;
            for (int64_t i = 0; i < d; i++) q += (double)sae->p.W_dec[j * d + i] * sae->p.W_dec[j * d + i];
            w->colnorm[j] = (float)sqrt(q);
        }
    for (int64_t b0 = 0; b0 < n; b0 += w->B) {
        int64_t nb = n - b0 < w->B ? n - b0 : w->B;
        const float *xc = x + b0 * d;
        ms_sae_encode(sae, w->F, xc, nb);
        ms_sae_decode(sae, w->xhat, w->F, nb);
        for (int64_t b = 0; b < nb; b++) {
            double q = 0.0, sp = 0.0;
            for (int64_t i = 0; i < d; i++) {
                double e = (double)w->xhat[b * d + i] - (double)s * xc[b * d + i];
                q += e * e;
            }
            const float *f = w->F + b * m;
            for (int64_t j = 0; j < m; j++) {
                if (f[j] == 0.0f) continue;
                if (hp->arch == MS_SAE_RELU_L1) sp += f[j];
                else if (hp->arch == MS_SAE_APRIL_2024) sp += (double)f[j] * w->colnorm[j];
                else if (hp->arch == MS_SAE_JUMPRELU) sp += 1.0;
            }
            out[b0 + b] = (float)(c_mse * q + lam * sp);
        }
    }
}

int64_t ms_sae_resample(ms_sae *sae, const uint8_t *dead, const float *x, const float *loss,
                        int64_t n, ms_rng *rng)
{
    const ms_sae_hparams *hp = &sae->hp;
    int64_t d = hp->d_in, m = hp->d_sae;
    int64_t n_dead = 0;
    for (int64_t j = 0; j < m; j++) n_dead += dead[j] != 0;
    if (n_dead == 0 || n <= 0) return 0;
    double *cum = malloc(sizeof(double) * (size_t)n);
    double *encn = malloc(sizeof(double) * (size_t)m);
    if (!cum || !encn) {
        free(cum), free(encn);
        return -1;
    }
    double tot = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double l = loss[i];
        tot += isfinite(l) ? l * l : 0.0;
        cum[i] = tot;
    }
    bool uniform = !(tot > 0.0) || !isfinite(tot);
    /* mean norm of the alive encoder columns */
    memset(encn, 0, sizeof(double) * (size_t)m);
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < m; j++) encn[j] += (double)sae->p.W_enc[i * m + j] * sae->p.W_enc[i * m + j];
    double alive_sum = 0.0;
    int64_t n_alive = 0;
    for (int64_t j = 0; j < m; j++)
        if (!dead[j]) alive_sum += sqrt(encn[j]), n_alive++;
    double enc_norm = n_alive > 0 ? alive_sum / (double)n_alive : 1.0;
    float s = sae->input_scale;
    int64_t done = 0;
    for (int64_t j = 0; j < m; j++) {
        if (!dead[j]) continue;
        int64_t pick;
        if (uniform) {
            pick = (int64_t)(ms_rng_uniform(rng) * (double)n);
        } else {
            double u = ms_rng_uniform(rng) * tot;
            int64_t lo = 0, hi = n - 1; /* first i with cum[i] > u */
            while (lo < hi) {
                int64_t mid = lo + (hi - lo) / 2;
                if (cum[mid] > u) hi = mid;
                else lo = mid + 1;
            }
            pick = lo;
        }
        if (pick >= n) pick = n - 1;
        /* the direction of the input as the encoder sees it, s·x − b_dec: along the raw x a
         * feature can start with u·(s·x − b_dec) ≤ 0 on the very input it was made for (ReLU
         * activations share a large positive b_dec) and never fire again */
        const float *xi = x + pick * d;
        const float *bd = sae->p.b_dec;
        double q = 0.0;
        for (int64_t i = 0; i < d; i++) q += ((double)(s * xi[i]) - bd[i]) * ((double)(s * xi[i]) - bd[i]);
        if (!(q > 0.0)) continue; /* an input at b_dec has no direction: leave this latent */
        double inv = 1.0 / sqrt(q);
        float *wd = sae->p.W_dec + j * d;
        for (int64_t i = 0; i < d; i++) {
            float u = (float)(((double)(s * xi[i]) - bd[i]) * inv);
            wd[i] = u;
            sae->p.W_enc[i * m + j] = (float)(u * 0.2 * enc_norm);
            sae->m.W_enc[i * m + j] = sae->v.W_enc[i * m + j] = 0.0f;
        }
        memset(sae->m.W_dec + j * d, 0, sizeof(float) * (size_t)d);
        memset(sae->v.W_dec + j * d, 0, sizeof(float) * (size_t)d);
        sae->p.b_enc[j] = 0.0f;
        sae->m.b_enc[j] = sae->v.b_enc[j] = 0.0f;
        sae->since_fired[j] = 0;
        done++;
    }
    free(cum), free(encn);
    return done;
}

/* ===================================================================== export / import */

void ms_sae_export(const ms_sae *sae, float *W_enc, float *b_enc, float *W_dec, float *b_dec,
                   float *threshold)
{
    int64_t d = sae->hp.d_in, m = sae->hp.d_sae;
    float s = sae->input_scale;
    if (W_enc)
        for (int64_t e = 0; e < d * m; e++) W_enc[e] = sae->p.W_enc[e] * s;
    if (b_enc) memcpy(b_enc, sae->p.b_enc, sizeof(float) * (size_t)m);
    if (W_dec)
        for (int64_t e = 0; e < m * d; e++) W_dec[e] = sae->p.W_dec[e] / s;
    if (b_dec)
        for (int64_t i = 0; i < d; i++) b_dec[i] = sae->p.b_dec[i] / s;
    if (threshold) {
        bool has = sae->hp.arch == MS_SAE_JUMPRELU || sae->hp.arch == MS_SAE_BATCHTOPK;
        for (int64_t j = 0; j < m; j++) threshold[j] = has ? sae->p.threshold[j] : 0.0f;
    }
}

void ms_sae_import(ms_sae *sae, const float *W_enc, const float *b_enc, const float *W_dec,
                   const float *b_dec, const float *threshold)
{
    int64_t d = sae->hp.d_in, m = sae->hp.d_sae;
    memset(sae->adam_m, 0, sizeof(float) * sae->layout.n_params);
    memset(sae->adam_v, 0, sizeof(float) * sae->layout.n_params);
    memset(sae->since_fired, 0, sizeof(int64_t) * (size_t)m);
    sae->step = 0;
    sae->input_scale = 1.0f;
    memcpy(sae->p.W_enc, W_enc, sizeof(float) * (size_t)(d * m));
    memcpy(sae->p.b_enc, b_enc, sizeof(float) * (size_t)m);
    memcpy(sae->p.W_dec, W_dec, sizeof(float) * (size_t)(m * d));
    memcpy(sae->p.b_dec, b_dec, sizeof(float) * (size_t)d);
    sae->threshold_set = false;
    if (threshold) {
        memcpy(sae->p.threshold, threshold, sizeof(float) * (size_t)m);
        sae->threshold_set = sae->hp.arch == MS_SAE_BATCHTOPK;
    } else {
        float t = sae->hp.arch == MS_SAE_JUMPRELU ? (float)sae->hp.threshold_init : 0.0f;
        for (int64_t j = 0; j < m; j++) sae->p.threshold[j] = t;
    }
}
