/* The reproducible trainer's gradient (sae.reproducible): fixed micro-shards, a fixed-order sum. */
#include "sae_train.h"

#include <stdlib.h>
#include <string.h>

/* Why a tree and not fixed point: the shards' gradients are summed in ONE binary tree over the
 * shard indices, the same whatever the ranks: a rank adds up the subtrees it owns whole, and
 * the nodes that straddle ranks are added after the exchange in the same tree positions. IEEE
 * addition of two floats is exactly defined, so every rank count does the same additions on
 * the same operands: bitwise identical, with float32 pairwise accuracy (no quantisation, no
 * overflow bound) and the bytes of one float allreduce on the wire. */

static int shard_owner(int s, int S, int P)
{
    for (int r = 0; r < P; r++) {
        int64_t lo, hi;
        ms_shard_range(S, r, P, &lo, &hi);
        if (s >= lo && s < hi) return r;
    }
    return P - 1;
}

static int split(int lo, int hi) { return lo + (hi - lo) / 2; }

/* levels of additions below node [lo,hi) (0 for a leaf) */
static int node_depth(int lo, int hi)
{
    if (hi - lo <= 1) return 0;
    int m = split(lo, hi), a = node_depth(lo, m), b = node_depth(m, hi);
    return 1 + (a > b ? a : b);
}

/* the frontier, in tree (= shard, = rank) order: the largest nodes one rank owns whole */
static void frontier_walk(int lo, int hi, int S, int P, int *n, int *nlo, int *nhi, int *own)
{
    int a = shard_owner(lo, S, P), b = shard_owner(hi - 1, S, P);
    if (a == b) {
        if (nlo) nlo[*n] = lo, nhi[*n] = hi, own[*n] = a;
        (*n)++;
        return;
    }
    int m = split(lo, hi);
    frontier_walk(lo, m, S, P, n, nlo, nhi, own);
    frontier_walk(m, hi, S, P, n, nlo, nhi, own);
}

int app_repro_frontier(int S, int P, int *lo, int *hi, int *owner)
{
    int n = 0;
    frontier_walk(0, S, S, P, &n, lo, hi, owner);
    return n;
}

int64_t app_sae_slice(const ms_config *cfg, const ms_comm *comm, int64_t *lo, int64_t *hi)
{
    const int64_t B = cfg->sae.batch, S = cfg->sae.micro_shards;
    if (!cfg->sae.reproducible || S < comm->size || B % S != 0) { /* the latter refused later */
        ms_shard_range(B, comm->rank, comm->size, lo, hi);
        return cfg->sae.reproducible ? B / S > 0 ? B / S : 1 : 0;
    }
    ms_shard_range(S, comm->rank, comm->size, lo, hi);
    *lo *= B / S, *hi *= B / S;
    return B / S;
}

static float *slab(size_t n)
{
    float *p = malloc(n * sizeof *p);
    if (p) memset(p, 0, n * sizeof *p); /* touched here, not in the step */
    return p;
}

ms_status app_repro_init(app_repro *r, const ms_config *cfg, const ms_sae *sae, const ms_comm *comm,
                         size_t n_stats, ms_err *err)
{
    memset(r, 0, sizeof *r);
    const int S = (int)cfg->sae.micro_shards, P = comm->size;
    if (S < P)
        return ms_err_set(err, MS_ERR_CONFIG,
                          "sae.micro_shards %d is smaller than the %d ranks: raise it to at least %d (the "
                          "result depends on sae.micro_shards, not on the rank count)", S, P, P);
    if (cfg->sae.batch % S != 0)
        return ms_err_set(err, MS_ERR_CONFIG, "sae.micro_shards %d does not divide sae.batch %lld", S,
                          (long long)cfg->sae.batch);
    r->S = S;
    r->rows = cfg->sae.batch / S;
    r->n = sae->layout.n_params;
    r->n_stats = n_stats;
    int64_t a, b;
    ms_shard_range(S, comm->rank, P, &a, &b);
    r->s0 = (int)a, r->s1 = (int)b;
    r->n_nodes = app_repro_frontier(S, P, NULL, NULL, NULL);
    r->node_lo = malloc((size_t)r->n_nodes * 3 * sizeof(int));
    r->cnt = malloc((size_t)P * 4 * sizeof(int64_t));
    r->shard_stats = calloc((size_t)S * n_stats, sizeof(double));
    if (!r->node_lo || !r->cnt || !r->shard_stats) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    r->node_hi = r->node_lo + r->n_nodes, r->node_owner = r->node_hi + r->n_nodes;
    r->dsp = r->cnt + P, r->scnt = r->dsp + P, r->sdsp = r->scnt + P;
    app_repro_frontier(S, P, r->node_lo, r->node_hi, r->node_owner);
    r->my0 = r->n_nodes, r->my1 = 0;
    for (int j = 0; j < r->n_nodes; j++) {
        if (r->node_owner[j] != comm->rank) continue;
        if (j < r->my0) r->my0 = j;
        r->my1 = j + 1;
        int dj = node_depth(r->node_lo[j], r->node_hi[j]);
        if (dj > r->depth) r->depth = dj;
    }
    int64_t cmax = 0;
    for (int q = 0; q < P; q++) {
        int64_t lo, hi, s_lo, s_hi;
        ms_shard_range((int64_t)r->n, q, P, &lo, &hi);
        r->cnt[q] = hi - lo, r->dsp[q] = lo;
        if (hi - lo > cmax) cmax = hi - lo;
        ms_shard_range(S, q, P, &s_lo, &s_hi);
        r->scnt[q] = (s_hi - s_lo) * (int64_t)n_stats, r->sdsp[q] = s_lo * (int64_t)n_stats;
    }
    r->cmax = cmax;
    r->node = calloc((size_t)(r->my1 - r->my0 + r->depth) + 1, sizeof *r->node);
    if (!r->node) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    r->scratch = r->node + (r->my1 - r->my0);
    for (int i = 0; i < r->my1 - r->my0 + r->depth; i++)
        if (!(r->node[i] = slab(r->n)))
            return ms_err_set(err, MS_ERR_NOMEM, "out of memory for the reproducible reduction's %d slabs of %zu floats",
                              r->my1 - r->my0 + r->depth, r->n);
    if (P > 1 && !(r->recv = slab((size_t)r->n_nodes * (size_t)cmax)))
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory for the reproducible reduction");
    return MS_OK;
}

void app_repro_free(app_repro *r)
{
    if (r->node)
        for (int i = 0; i < r->my1 - r->my0 + r->depth; i++) free(r->node[i]);
    free(r->node);
    free(r->recv);
    free(r->node_lo);
    free(r->cnt);
    free(r->shard_stats);
    memset(r, 0, sizeof *r);
}

static void add_into(float *restrict out, const float *restrict in, int64_t n)
{
    for (int64_t i = 0; i < n; i++) out[i] += in[i];
}

/* out := the sum of node [lo,hi)'s shard gradients, computed locally; lvl picks the scratch. */
static ms_status eval_node(app_repro *r, ms_sae *sae, const float *x, int64_t B, int lo, int hi, float *out,
                           int lvl, ms_err *err)
{
    if (hi - lo == 1) {
        const float *xs = x + (int64_t)(lo - r->s0) * r->rows * sae->hp.d_in;
        double *st = r->shard_stats + (size_t)lo * r->n_stats;
        ms_status s = ms_sae_forward_backward(sae, xs, r->rows, B, st, err);
        st[r->n_stats - 1] = s != MS_OK;
        if (!s) memcpy(out, sae->grads, r->n * sizeof *out);
        return s;
    }
    int m = split(lo, hi);
    ms_status s = eval_node(r, sae, x, B, lo, m, out, lvl, err);
    if (!s) s = eval_node(r, sae, x, B, m, hi, r->scratch[lvl], lvl + 1, err);
    if (!s) add_into(out, r->scratch[lvl], (int64_t)r->n);
    return s;
}

/* The same tree over this rank's chunk of every frontier node (recv): returns the node whose
 * buffer holds the sum. *next walks the frontier in the order app_repro_frontier lists it. */
static int combine(app_repro *r, int lo, int hi, int *next, int64_t len)
{
    int j = *next;
    if (j < r->n_nodes && r->node_lo[j] == lo && r->node_hi[j] == hi) {
        (*next)++;
        return j;
    }
    int m = split(lo, hi);
    int a = combine(r, lo, m, next, len), b = combine(r, m, hi, next, len);
    add_into(r->recv + (size_t)a * (size_t)r->cmax, r->recv + (size_t)b * (size_t)r->cmax, len);
    return a;
}

ms_status app_repro_grads(app_repro *r, ms_sae *sae, const float *x, int64_t B, ms_status *local_st,
                          double *stats, const ms_comm *comm, double *t_reduce, ms_err *err)
{
    const size_t ns = r->n_stats;
    ms_status local = *local_st;
    for (int s = r->s0; s < r->s1; s++) r->shard_stats[(size_t)s * ns + ns - 1] = local != MS_OK;
    for (int j = r->my0; j < r->my1 && !local; j++)
        local = eval_node(r, sae, x, B, r->node_lo[j], r->node_hi[j], r->node[j - r->my0], 0, err);
    if (local) /* every shard of this rank reports the failure (its stats are not used) */
        for (int s = r->s0; s < r->s1; s++) r->shard_stats[(size_t)s * ns + ns - 1] = 1.0;
    *local_st = local;
    double t0 = ms_time_now();
    /* statistics: every shard's, then summed in shard order (on every rank alike) */
    ms_status st = ms_comm_allgatherv_f64(comm, r->shard_stats + (size_t)r->s0 * ns, r->shard_stats,
                                          r->scnt, r->sdsp, err);
    if (st) return st;
    for (size_t k = 0; k < ns; k++) {
        double v = 0.0;
        for (int s = 0; s < r->S; s++) v += r->shard_stats[(size_t)s * ns + k];
        stats[k] = v;
    }
    if (stats[ns - 1] != 0.0) { /* some shard failed: the caller agrees on it, grads unused */
        *t_reduce = ms_time_now() - t0;
        return MS_OK;
    }
    if (comm->size == 1) {
        memcpy(sae->grads, r->node[0], r->n * sizeof(float));
    } else {
        /* rank q gathers chunk q of every frontier node, adds them in tree order, all gather */
        for (int j = 0; j < r->n_nodes && !st; j++) {
            const int own = r->node_owner[j];
            const float *send = own == comm->rank ? r->node[j - r->my0] : NULL;
            st = ms_comm_scatterv_f32(comm, send, r->cnt, r->dsp, r->recv + (size_t)j * (size_t)r->cmax, own, err);
        }
        int next = 0;
        int root = st ? 0 : combine(r, 0, r->S, &next, r->cnt[comm->rank]);
        if (!st)
            st = ms_comm_allgatherv_f32(comm, r->recv + (size_t)root * (size_t)r->cmax, sae->grads, r->cnt,
                                        r->dsp, err);
    }
    *t_reduce = ms_time_now() - t0;
    return st;
}
