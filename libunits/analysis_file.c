/* analysis.h5: one dictionary's analysis as flat root datasets (layout in docs/analysis.md). */
#include "monosem/units.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEASURE_BINS 20
#define MAX_ITEMS 48
#define MAX_ATTRS 64

typedef struct flat {
    float *act;      /* (S,k) */
    int64_t *ctx;    /* (S,k) */
    int64_t *pos;    /* (S,k) */
    int32_t *tokens; /* (S,k,w) */
    float *tacts;    /* (S,k,w) */
} flat;

static void flat_free(flat *f)
{
    free(f->act);
    free(f->ctx);
    free(f->pos);
    free(f->tokens);
    free(f->tacts);
}

/* sorted slots -> arrays; empty slots: ctx -1, pos -1, act 0, tokens -1, acts 0 */
static ms_status flatten(const ms_topk *t, int64_t T, flat *f, ms_err *err)
{
    size_t n = (size_t)t->n_slots * (size_t)t->k, w = (size_t)t->w;
    memset(f, 0, sizeof *f);
    f->act = malloc(n * sizeof *f->act + 1);
    f->ctx = malloc(n * sizeof *f->ctx + 1);
    f->pos = malloc(n * sizeof *f->pos + 1);
    f->tokens = malloc(n * w * sizeof *f->tokens + 1);
    f->tacts = malloc(n * w * sizeof *f->tacts + 1);
    if (!f->act || !f->ctx || !f->pos || !f->tokens || !f->tacts) {
        flat_free(f);
        return ms_err_set(err, MS_ERR_NOMEM, "analysis write: out of memory");
    }
    for (int64_t s = 0; s < t->n_slots; s++)
        for (int i = 0; i < t->k; i++) {
            size_t j = (size_t)s * (size_t)t->k + (size_t)i;
            ms_topk_entry *e = ms_topk_at(t, s, i);
            bool ok = i < t->n[s];
            f->act[j] = ok ? e->act : 0.0f;
            f->ctx[j] = ok ? e->pos / T : -1;
            f->pos[j] = ok ? e->pos % T : -1;
            const float *wa = ms_topk_entry_acts(t, e);
            const int32_t *wt = ms_topk_entry_tokens(t, e);
            for (size_t q = 0; q < w; q++) {
                f->tokens[j * w + q] = ok ? wt[q] : -1;
                f->tacts[j * w + q] = ok ? wa[q] : 0.0f;
            }
        }
    return MS_OK;
}

static ms_safetensors_item item(const char *name, ms_safetensors_dtype dt, const void *data, int ndim, int64_t d0,
                       int64_t d1, int64_t d2, int64_t d3)
{
    ms_safetensors_item it = {.name = name, .dtype = dt, .ndim = ndim, .data = data};
    int64_t d[4] = {d0, d1, d2, d3};
    for (int i = 0; i < ndim; i++) it.shape[i] = d[i];
    return it;
}

/* The measures' distributions over alive units: histograms and their edges, the medians as
 * attribute strings, and the names they are written under. */
typedef struct mdists {
    int64_t hist[3][MEASURE_BINS];
    float edges[3][MEASURE_BINS + 1];
    char med_s[3][32], meda_s[3][32], hname[3][48], ename[3][48], mkey[3][48], makey[3][48];
} mdists;

static ms_status measure_dists(const ms_analysis *a, const ms_analysis_extra *x, mdists *d, ms_err *err)
{
    const int64_t U = a->n_units;
    static const char *const mnames[3] = {"top_token_share", "eff_tokens", "logit_agreement"};
    const float *mvals[3] = {x->top_token_share, x->eff_tokens, x->logit_agreement};
    double lo[3], hi[3];
    for (int m = 0; m < 3; m++) ms_measure_range(m, &a->o, &lo[m], &hi[m]);
    int64_t scratch[MEASURE_BINS];
    /* the distributions leave the ultralow cluster out (as the paper); median_all_* keep it */
    float *kept = malloc((size_t)U * sizeof *kept + 1);
    ms_status st = kept ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "analysis write: out of memory");
    for (int m = 0; !st && m < 3; m++) {
        ms_measure_summary sum, all;
        for (int64_t u = 0; u < U; u++) kept[u] = x->ultralow && x->ultralow[u] ? NAN : mvals[m][u];
        st = ms_measure_summarize(kept, U, lo[m], hi[m], MEASURE_BINS, d->hist[m], &sum, err);
        if (!st) st = ms_measure_summarize(mvals[m], U, lo[m], hi[m], MEASURE_BINS, scratch, &all, err);
        snprintf(d->meda_s[m], sizeof d->meda_s[m], "%.6g", all.median);
        snprintf(d->makey[m], sizeof d->makey[m], "median_all_%s", mnames[m]);
        for (int b = 0; b <= MEASURE_BINS; b++) d->edges[m][b] = (float)(lo[m] + (hi[m] - lo[m]) * b / MEASURE_BINS);
        snprintf(d->med_s[m], sizeof d->med_s[m], "%.6g", sum.median);
        snprintf(d->hname[m], sizeof d->hname[m], "measure_hist_%s", mnames[m]);
        snprintf(d->ename[m], sizeof d->ename[m], "measure_edges_%s", mnames[m]);
        snprintf(d->mkey[m], sizeof d->mkey[m], "median_%s", mnames[m]);
    }
    free(kept);
    return st;
}

ms_status ms_analysis_write(const ms_analysis *a, const ms_analysis_extra *x, const char *path,
                            ms_err *err)
{
    const int64_t U = a->n_units, K = a->o.top_k, I = a->o.intervals, S = a->o.interval_samples,
                  NB = a->o.hist_bins, W = 2 * a->o.window + 1, T = a->o.context;
    flat top, iv;
    ms_status st = flatten(&a->top, T, &top, err);
    if (st) return st;
    st = flatten(&a->iv, T, &iv, err);
    if (st) {
        flat_free(&top);
        return st;
    }
    float *density = malloc((size_t)U * sizeof *density + 1);
    float *mean = malloc((size_t)U * sizeof *mean + 1);
    float *edges = malloc((size_t)U * (size_t)(I + 1) * sizeof *edges + 1);
    if (!density || !mean || !edges) st = ms_err_set(err, MS_ERR_NOMEM, "analysis write: out of memory");
    for (int64_t u = 0; !st && u < U; u++) {
        density[u] = a->tokens > 0 ? (float)((double)a->count[u] / (double)a->tokens) : 0.0f;
        mean[u] = a->count[u] > 0 ? (float)((double)a->sum_fx[u] / 16777216.0 / (double)a->count[u]) : 0.0f;
        for (int64_t i = 0; i <= I; i++) edges[u * (I + 1) + i] = (float)((double)a->max[u] * (double)i / (double)I);
    }

    mdists md;
    float dedges[MS_DENSITY_HIST_BINS + 1];
    ms_density_edges(dedges);
    if (!st) st = measure_dists(a, x, &md, err);

    ms_safetensors_item it[MAX_ITEMS];
    int n = 0;
    if (!st) {
        it[n++] = item("count", MS_SAFETENSORS_I64, a->count, 1, U, 0, 0, 0);
        it[n++] = item("density", MS_SAFETENSORS_F32, density, 1, U, 0, 0, 0);
        it[n++] = item("max_act", MS_SAFETENSORS_F32, a->max, 1, U, 0, 0, 0);
        it[n++] = item("mean_act", MS_SAFETENSORS_F32, mean, 1, U, 0, 0, 0);
        it[n++] = item("top_act", MS_SAFETENSORS_F32, top.act, 2, U, K, 0, 0);
        it[n++] = item("top_ctx", MS_SAFETENSORS_I64, top.ctx, 2, U, K, 0, 0);
        it[n++] = item("top_pos", MS_SAFETENSORS_I64, top.pos, 2, U, K, 0, 0);
        it[n++] = item("top_tokens", MS_SAFETENSORS_I32, top.tokens, 3, U, K, W, 0);
        it[n++] = item("top_token_acts", MS_SAFETENSORS_F32, top.tacts, 3, U, K, W, 0);
        it[n++] = item("interval_edges", MS_SAFETENSORS_F32, edges, 2, U, I + 1, 0, 0);
        it[n++] = item("interval_count", MS_SAFETENSORS_I64, a->iv_count, 2, U, I, 0, 0);
        it[n++] = item("interval_act", MS_SAFETENSORS_F32, iv.act, 3, U, I, S, 0);
        it[n++] = item("interval_ctx", MS_SAFETENSORS_I64, iv.ctx, 3, U, I, S, 0);
        it[n++] = item("interval_pos", MS_SAFETENSORS_I64, iv.pos, 3, U, I, S, 0);
        it[n++] = item("interval_tokens", MS_SAFETENSORS_I32, iv.tokens, 4, U, I, S, W);
        it[n++] = item("interval_token_acts", MS_SAFETENSORS_F32, iv.tacts, 4, U, I, S, W);
        it[n++] = item("hist", MS_SAFETENSORS_I64, a->hist, 2, U, NB, 0, 0);
        if (x->logit_top_ids) {
            int64_t L = x->n_logits;
            it[n++] = item("logit_top_ids", MS_SAFETENSORS_I32, x->logit_top_ids, 2, U, L, 0, 0);
            it[n++] = item("logit_top", MS_SAFETENSORS_F32, x->logit_top, 2, U, L, 0, 0);
            it[n++] = item("logit_bottom_ids", MS_SAFETENSORS_I32, x->logit_bottom_ids, 2, U, L, 0, 0);
            it[n++] = item("logit_bottom", MS_SAFETENSORS_F32, x->logit_bottom, 2, U, L, 0, 0);
        }
        it[n++] = item("top_token", MS_SAFETENSORS_I32, x->top_token, 1, U, 0, 0, 0);
        if (x->ultralow) it[n++] = item("ultralow", MS_SAFETENSORS_U8, x->ultralow, 1, U, 0, 0, 0);
        it[n++] = item("top_token_share", MS_SAFETENSORS_F32, x->top_token_share, 1, U, 0, 0, 0);
        it[n++] = item("eff_tokens", MS_SAFETENSORS_F32, x->eff_tokens, 1, U, 0, 0, 0);
        it[n++] = item("logit_agreement", MS_SAFETENSORS_F32, x->logit_agreement, 1, U, 0, 0, 0);
        for (int m = 0; m < 3; m++) {
            it[n++] = item(md.hname[m], MS_SAFETENSORS_I64, md.hist[m], 1, MEASURE_BINS, 0, 0, 0);
            it[n++] = item(md.ename[m], MS_SAFETENSORS_F32, md.edges[m], 1, MEASURE_BINS + 1, 0, 0, 0);
        }
        if (x->density_hist) { /* the log10-density histogram every stage shares (density.c) */
            it[n++] = item("log10_density_hist", MS_SAFETENSORS_I64, x->density_hist, 1, MS_DENSITY_HIST_BINS, 0, 0, 0);
            it[n++] = item("log10_density_edges", MS_SAFETENSORS_F32, dedges, 1, MS_DENSITY_HIST_BINS + 1, 0, 0, 0);
        }
        if (x->vocab_offsets) {
            it[n++] = item("vocab_offsets", MS_SAFETENSORS_I64, x->vocab_offsets, 1, x->n_vocab + 1, 0, 0, 0);
            it[n++] = item("vocab_bytes", MS_SAFETENSORS_U8, x->vocab_bytes, 1, x->vocab_offsets[x->n_vocab], 0, 0, 0);
        }
    }
    const char *kv[2 * MAX_ATTRS];
    int na = 0;
    for (int i = 0; i < x->n_attr && na < MAX_ATTRS - 8; i++, na++) {
        kv[2 * na] = x->attr_kv[2 * i];
        kv[2 * na + 1] = x->attr_kv[2 * i + 1];
    }
    for (int m = 0; m < 3; m++, na++) {
        kv[2 * na] = md.mkey[m];
        kv[2 * na + 1] = md.med_s[m];
    }
    for (int m = 0; m < 3 && na < MAX_ATTRS; m++, na++) {
        kv[2 * na] = md.makey[m];
        kv[2 * na + 1] = md.meda_s[m];
    }
    char cut_s[32];
    snprintf(cut_s, sizeof cut_s, "%.6g", x->ultralow_cut);
    if (na < MAX_ATTRS) {
        kv[2 * na] = "ultralow_cut";
        kv[2 * na + 1] = cut_s;
        na++;
    }
    if (!st) st = ms_h5_write_tensors(path, it, n, kv, na, err);
    free(density);
    free(mean);
    free(edges);
    flat_free(&top);
    flat_free(&iv);
    return st;
}
