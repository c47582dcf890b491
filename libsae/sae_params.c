/* libsae/sae_params.c: the parameter slabs and workspace (allocation, free), initialisation of
 * the weights, and the input statistics (geometric median, norm sums) the callers initialise with. */
#include "sae_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int sae_nthreads(void)
{
    int n = openblas_get_num_threads();
    return n < 1 ? 1 : n;
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

