/* What one batch of unit activations adds to a dictionary's analysis (top-k, counts, sums in pass
 * 1; interval samples and histograms in pass 2), and the collective merges between the passes. */
#include "monosem/units.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FX_SCALE 16777216.0 /* 2^24: fixed-point sums are exact, so any rank count agrees */

ms_status ms_analysis_init(ms_analysis *a, int64_t n_units, const ms_analysis_opts *o, ms_err *err)
{
    memset(a, 0, sizeof *a);
    a->o = *o;
    a->n_units = n_units;
    int w = (int)(2 * o->window + 1);
    ms_status st = ms_topk_init(&a->top, n_units, (int)o->top_k, w, err);
    if (!st) st = ms_topk_init(&a->iv, n_units * o->intervals, (int)o->interval_samples, w, err);
    if (st) {
        ms_analysis_free(a);
        return st;
    }
    size_t U = (size_t)n_units;
    a->count = calloc(U, sizeof *a->count);
    a->sum_fx = calloc(U, sizeof *a->sum_fx);
    a->hist = calloc(U * (size_t)o->hist_bins, sizeof *a->hist);
    a->iv_count = calloc(U * (size_t)o->intervals, sizeof *a->iv_count);
    a->max = calloc(U, sizeof *a->max);
    a->bar_act = calloc(U, sizeof *a->bar_act);
    a->unit_hash = malloc(U * sizeof *a->unit_hash + 1);
    if (!a->count || !a->sum_fx || !a->hist || !a->iv_count || !a->max || !a->bar_act || !a->unit_hash) {
        ms_analysis_free(a);
        return ms_err_set(err, MS_ERR_NOMEM, "analysis: out of memory for %lld units", (long long)n_units);
    }
    for (int64_t u = 0; u < n_units; u++) /* the unit half of ms_analysis_hash */
        a->unit_hash[u] = ms_rng_mix(o->seed ^ ((uint64_t)u + 1) * MS_RNG_GAMMA);
    return MS_OK;
}

double ms_analysis_bytes(int64_t n_units, const ms_analysis_opts *o)
{
    const double entry = (double)sizeof(ms_topk_entry) + 8.0 * (double)(2 * o->window + 1);
    const double U = (double)n_units;
    return U * ((double)o->top_k + (double)o->intervals * (double)o->interval_samples) * entry +
           U * (8.0 * (double)(o->hist_bins + o->intervals) + 40.0);
}

void ms_analysis_free(ms_analysis *a)
{
    ms_topk_free(&a->top);
    ms_topk_free(&a->iv);
    free(a->count);
    free(a->sum_fx);
    free(a->hist);
    free(a->iv_count);
    free(a->max);
    free(a->bar_act);
    free(a->unit_hash);
    memset(a, 0, sizeof *a);
}

/* The window of unit u around token t of context b: activations and token ids, -1/0 outside. */
static void fill_window(const ms_analysis *a, const ms_topk *t, ms_topk_entry *e, const float *acts,
                        const int32_t *tokens, int64_t b, int64_t tpos, int64_t u)
{
    const int64_t T = a->o.context, W = a->o.window, U = a->n_units;
    float *wa = ms_topk_entry_acts(t, e);
    int32_t *wt = ms_topk_entry_tokens(t, e);
    for (int64_t j = -W; j <= W; j++) {
        int64_t s = tpos + j;
        bool in = s >= 0 && s < T;
        wa[j + W] = in ? acts[(b * T + s) * U + u] : 0.0f;
        wt[j + W] = in ? tokens[b * T + s] : -1;
    }
    e->next = tpos + 1 < T ? tokens[b * T + tpos + 1] : -1;
}

/* Sparse rows (an SAE's codes are >99% zeros) are swept 16 units at a time with a branch-free,
 * vectorisable test; only blocks holding an active unit are visited one by one. */
#define BLOCK 16
static int64_t next_active_block(const float *row, int64_t u0, int64_t U)
{
    for (; u0 < U; u0 += BLOCK) {
        int64_t ue = u0 + BLOCK < U ? u0 + BLOCK : U;
        int any = 0;
        for (int64_t u = u0; u < ue; u++) any |= row[u] > 0.0f;
        if (any) return u0;
    }
    return U;
}

void ms_analysis_scan_top(ms_analysis *a, const float *acts, const int32_t *tokens, int64_t nb,
                          int64_t ctx0)
{
    const int64_t T = a->o.context, U = a->n_units;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t t = 0; t < T; t++) {
            const float *row = acts + (b * T + t) * U;
            const int64_t pos = (ctx0 + b) * T + t;
            for (int64_t u0 = next_active_block(row, 0, U), u = 0; u0 < U;
                 u0 = next_active_block(row, u0 + BLOCK, U))
                for (u = u0; u < u0 + BLOCK && u < U; u++) {
                    float x = row[u];
                    if (!(x > 0.0f)) continue;
                    a->count[u]++;
                    a->sum_fx[u] += llrint((double)x * FX_SCALE);
                    /* a token arrives after every entry held, so on an equal activation it loses */
                    if (x <= a->bar_act[u]) continue;
                    ms_topk_entry *e = ms_topk_push(&a->top, u, ms_topk_key_act(x), pos);
                    if (!e) continue;
                    e->act = x;
                    fill_window(a, &a->top, e, acts, tokens, b, t, u);
                    if (a->top.n[u] == a->top.k) a->bar_act[u] = ms_topk_at(&a->top, u, 0)->act;
                }
        }
    a->tokens += nb * T;
}

void ms_analysis_scan_intervals(ms_analysis *a, const float *acts, const int32_t *tokens,
                                int64_t nb, int64_t ctx0)
{
    const int64_t T = a->o.context, U = a->n_units, I = a->o.intervals, NB = a->o.hist_bins;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t t = 0; t < T; t++) {
            const float *row = acts + (b * T + t) * U;
            const int64_t pos = (ctx0 + b) * T + t;
            const uint64_t pmix = ((uint64_t)pos + 1) * 0xd1b54a32d192ed03ull;
            for (int64_t u0 = next_active_block(row, 0, U), u = 0; u0 < U;
                 u0 = next_active_block(row, u0 + BLOCK, U))
                for (u = u0; u < u0 + BLOCK && u < U; u++) {
                    float x = row[u];
                    if (!(x > 0.0f)) continue;
                    double m = (double)a->max[u];
                    int64_t i = (int64_t)floor((double)x * (double)I / m);
                    if (i > I - 1) i = I - 1;
                    int64_t h = (int64_t)floor((double)x * (double)NB / m);
                    if (h > NB - 1) h = NB - 1;
                    a->iv_count[u * I + i]++;
                    a->hist[u * NB + h]++;
                    /* the hash of docs/analysis.md, its unit half precomputed */
                    uint64_t z = ms_rng_mix(a->unit_hash[u] ^ pmix);
                    int64_t slot = u * I + i;
                    if (z > ms_topk_bar(&a->iv, slot)) continue;
                    ms_topk_entry *e = ms_topk_push(&a->iv, slot, z, pos);
                    if (!e) continue;
                    e->act = x;
                    fill_window(a, &a->iv, e, acts, tokens, b, t, u);
                }
        }
}

/* rank 0 after a merge: entries are sorted; count them */
static void recount(ms_topk *t)
{
    for (int64_t s = 0; s < t->n_slots; s++) {
        int n = 0;
        while (n < t->k && ms_topk_at(t, s, n)->pos >= 0) n++;
        t->n[s] = n;
    }
}

ms_status ms_analysis_reduce_top(ms_analysis *a, const ms_comm *comm, ms_err *err)
{
    const int64_t U = a->n_units;
    ms_status st = ms_comm_allreduce_i64(comm, a->count, (size_t)U, err);
    if (!st) st = ms_comm_allreduce_i64(comm, a->sum_fx, (size_t)U, err);
    if (!st) st = ms_comm_allreduce_i64(comm, &a->tokens, 1, err);
    if (!st)
        st = ms_comm_reduce_merge(comm, a->top.mem, (size_t)U, (size_t)a->top.k * a->top.entry_bytes,
                                  ms_topk_merge, &a->top, 0, err);
    if (st) return st;
    if (comm->rank == 0) {
        ms_topk_sort(&a->top);
        recount(&a->top);
        for (int64_t u = 0; u < U; u++) a->max[u] = a->top.n[u] > 0 ? ms_topk_at(&a->top, u, 0)->act : 0.0f;
    }
    return ms_comm_bcast(comm, a->max, (size_t)U * sizeof *a->max, 0, err);
}

ms_status ms_analysis_reduce_intervals(ms_analysis *a, const ms_comm *comm, ms_err *err)
{
    const int64_t U = a->n_units;
    ms_status st = ms_comm_allreduce_i64(comm, a->hist, (size_t)(U * a->o.hist_bins), err);
    if (!st) st = ms_comm_allreduce_i64(comm, a->iv_count, (size_t)(U * a->o.intervals), err);
    if (!st)
        st = ms_comm_reduce_merge(comm, a->iv.mem, (size_t)a->iv.n_slots,
                                  (size_t)a->iv.k * a->iv.entry_bytes, ms_topk_merge, &a->iv, 0, err);
    if (st) return st;
    if (comm->rank == 0) {
        ms_topk_sort(&a->iv);
        recount(&a->iv);
    }
    return MS_OK;
}
