/* `monosem analyze`'s rank-0 outputs: measures, distributions and the density histogram of each
 * dictionary (computed by libunits), its analysis.h5, and the features-vs-neurons table. */
#include "analyze.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const measure_names[N_MEASURES] = {"top_token_share", "eff_tokens", "logit_agreement"};

ms_status app_analyze_vocab_table(const analyzer *a, int64_t **offsets, uint8_t **bytes, int64_t *n_vocab, ms_err *err)
{
    ms_tokenizer *tok = NULL;
    ms_status st = ms_tokenizer_load(&tok, a->cfg->tokenizer.vocab, a->cfg->tokenizer.merges, err);
    if (st) return st;
    int64_t V = a->model.cfg.d_vocab;
    *n_vocab = V;
    *offsets = malloc(((size_t)V + 1) * sizeof **offsets);
    size_t total = 0;
    for (int32_t v = 0; v < V; v++) {
        size_t len = 0;
        if (ms_tokenizer_token_bytes(tok, v, &len)) total += len;
    }
    *bytes = malloc(total + 1);
    if (!*offsets || !*bytes) {
        ms_tokenizer_free(tok);
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    size_t off = 0;
    for (int32_t v = 0; v < V; v++) {
        (*offsets)[v] = (int64_t)off;
        size_t len = 0;
        const char *b = ms_tokenizer_token_bytes(tok, v, &len);
        if (b) {
            memcpy(*bytes + off, b, len);
            off += len;
        }
    }
    (*offsets)[V] = (int64_t)off;
    ms_tokenizer_free(tok);
    return MS_OK;
}

/* The measures of dictionary dc (logit ids tid as int32), the ultralow cluster, the measures'
 * summaries, the density summary and the log10-density histogram. dens (U) is scratch. */
static ms_status finish_measures(const analyzer *a, dict *dc, const int32_t *tid, float *dens, ms_err *err)
{
    const ms_config *cfg = a->cfg;
    const int64_t U = dc->U;
    const int L = (int)cfg->analyze.n_logits;
    ms_status st = ms_analysis_measures(&dc->an, a->logits_ok ? tid : NULL, L, dc->top_token, dc->measure[0],
                                        dc->measure[1], dc->measure[2], err);
    int64_t hist[20];
    /* the ultralow cluster (if any) is set apart from the distributions, as the paper does */
    dc->is_ultralow = calloc((size_t)U + 1, 1);
    float *kept = malloc((size_t)U * sizeof *kept + 1);
    if (!st && (!dc->is_ultralow || !kept)) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    dc->ultralow_cut = st ? 0 : ms_ultralow_cut(dc->an.count, U, dc->an.tokens);
    dc->alive = dc->ultralow = 0;
    for (int64_t u = 0; !st && u < U; u++) {
        double den = (double)dc->an.count[u] / (double)dc->an.tokens;
        dc->alive += dc->an.count[u] > 0;
        dc->is_ultralow[u] = dc->an.count[u] > 0 && den < dc->ultralow_cut;
        dc->ultralow += dc->is_ultralow[u];
        dens[u] = dc->an.count[u] > 0 && !dc->is_ultralow[u] ? (float)den : NAN;
    }
    for (int m = 0; !st && m < N_MEASURES; m++) {
        double lo, hi;
        ms_measure_range(m, &dc->an.o, &lo, &hi);
        for (int64_t u = 0; u < U; u++) kept[u] = dc->is_ultralow[u] ? NAN : dc->measure[m][u];
        st = ms_measure_summarize(kept, U, lo, hi, 20, hist, &dc->summary[m], err);
        if (!st) st = ms_measure_summarize(dc->measure[m], U, lo, hi, 20, hist, &dc->summary_all[m], err);
    }
    free(kept);
    if (!st) st = ms_measure_summarize(dens, U, 0, 1, 20, hist, &dc->density, err);
    /* the one density histogram (libunits/density.c, eval's bins) of every unit's firing count */
    double *fires = st ? NULL : malloc((size_t)U * sizeof *fires + 1);
    if (!st && !fires) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int64_t u = 0; !st && u < U; u++) fires[u] = (double)dc->an.count[u];
    if (!st)
        ms_density_stats(&dc->density_stats, fires, U, (double)dc->an.tokens, cfg->sae.ultralow_density,
                         cfg->sae.rare_density);
    free(fires);
    return st;
}

/* Rank 0: measures, distributions and the file of one dictionary. */
ms_status app_analyze_finish_dict(analyzer *a, int di, const int64_t *top_ids64, const float *top,
                                  const int64_t *bot_ids64, const float *bot, const int64_t *voff,
                                  const uint8_t *vbytes, int64_t nv, ms_err *err)
{
    const ms_config *cfg = a->cfg;
    dict *dc = &a->dicts[di];
    const int64_t U = dc->U;
    const int L = (int)cfg->analyze.n_logits;
    int32_t *tid = malloc((size_t)U * (size_t)L * sizeof *tid + 1);
    int32_t *bid = malloc((size_t)U * (size_t)L * sizeof *bid + 1);
    dc->top_token = malloc((size_t)U * sizeof *dc->top_token + 1);
    float *dens = malloc((size_t)U * sizeof *dens + 1);
    bool ok = tid && bid && dc->top_token && dens;
    for (int m = 0; m < N_MEASURES; m++) ok = ok && (dc->measure[m] = malloc((size_t)U * sizeof(float) + 1));
    ms_status st = ok ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (!st && a->logits_ok)
        for (size_t i = 0; i < (size_t)U * (size_t)L; i++) {
            tid[i] = (int32_t)top_ids64[i];
            bid[i] = (int32_t)bot_ids64[i];
        }
    if (!st) st = finish_measures(a, dc, tid, dens, err);
    char s_tokens[32], s_nctx[32], s_ctx[32], s_k[32], s_w[32], s_i[32], s_s[32], s_nb[32], s_L[32], s_seed[32],
        s_ln[32], s_dead[32];
    snprintf(s_tokens, sizeof s_tokens, "%" PRId64, dc->an.tokens);
    snprintf(s_nctx, sizeof s_nctx, "%" PRId64, a->n_ctx);
    snprintf(s_ctx, sizeof s_ctx, "%" PRId64, a->T);
    snprintf(s_k, sizeof s_k, "%" PRId64, cfg->analyze.top_k);
    snprintf(s_w, sizeof s_w, "%" PRId64, cfg->analyze.context_window);
    snprintf(s_i, sizeof s_i, "%" PRId64, cfg->analyze.intervals);
    snprintf(s_s, sizeof s_s, "%" PRId64, cfg->analyze.interval_samples);
    snprintf(s_nb, sizeof s_nb, "%" PRId64, cfg->analyze.hist_bins);
    snprintf(s_L, sizeof s_L, "%d", L);
    snprintf(s_seed, sizeof s_seed, "%" PRId64, cfg->run.seed);
    snprintf(s_ln, sizeof s_ln, "%.9g", a->ln_scale);
    snprintf(s_dead, sizeof s_dead, "%" PRId64, U - dc->alive);
    const char *kv[] = {"format_version", "1", "kind", dc->is_sae ? "sae" : "neurons", "name", dc->name,
                        "source", dc->source, "model_dir", a->model_dir, "hook", cfg->model.hook,
                        "token_dir", cfg->corpus.token_dir, "split", "train", "tokens", s_tokens,
                        "n_contexts", s_nctx, "context", s_ctx, "top_k", s_k, "context_window", s_w,
                        "intervals", s_i, "interval_samples", s_s, "hist_bins", s_nb, "n_logits", s_L,
                        "seed", s_seed, "ln_scale", s_ln, "dead", s_dead, "config_hash", cfg->hash,
                        "version", MS_VERSION_STRING};
    ms_analysis_extra x = {.n_logits = L, .top_token = dc->top_token, .ultralow = dc->is_ultralow,
                           .ultralow_cut = dc->ultralow_cut, .top_token_share = dc->measure[0],
                           .eff_tokens = dc->measure[1], .logit_agreement = dc->measure[2],
                           .density_hist = dc->density_stats.hist,
                           .vocab_offsets = voff, .vocab_bytes = vbytes, .n_vocab = nv,
                           .attr_kv = kv, .n_attr = (int)(sizeof kv / sizeof kv[0] / 2)};
    if (a->logits_ok) {
        x.logit_top_ids = tid;
        x.logit_bottom_ids = bid;
        x.logit_top = top;
        x.logit_bottom = bot;
    }
    char *dir = NULL;
    if (!st) {
        dir = strdup(dc->out_path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash) {
            *slash = '\0';
            st = ms_mkdirs(dir, err);
        }
    }
    free(dir);
    if (!st) st = ms_analysis_write(&dc->an, &x, dc->out_path, err);
    free(tid);
    free(bid);
    free(dens);
    return st;
}

/* Rank 0: the comparison table (medians [quartiles] over alive units outside the ultralow
 * cluster; the same over every alive unit), histograms, and the run record. */
void app_analyze_report(analyzer *a)
{
    ms_runrec *rec = &a->app->rec;
    char line[1024], key[160], cell[96];
    int n = snprintf(line, sizeof line, "  %-17s", "measure");
    for (int i = 0; i < a->n_dicts; i++) n += snprintf(line + n, sizeof line - (size_t)n, " %-30s", a->dicts[i].name);
    ms_log("analyze: features vs neurons, median [q25, q75] over alive units outside the ultralow cluster "
           "(docs/analysis.md)");
    ms_log("%s", line);
    for (int m = 0; m <= N_MEASURES; m++) {
        const char *mname = m < N_MEASURES ? measure_names[m] : "density";
        n = snprintf(line, sizeof line, "  %-17s", mname);
        for (int i = 0; i < a->n_dicts; i++) {
            const dict *dc = &a->dicts[i];
            const ms_measure_summary *s = m < N_MEASURES ? &dc->summary[m] : &dc->density;
            snprintf(cell, sizeof cell, "%.3g [%.3g, %.3g]", s->median, s->q25, s->q75);
            n += snprintf(line + n, sizeof line - (size_t)n, " %-30s", cell);
            snprintf(key, sizeof key, "analyze.%s.median_%s", dc->name, mname);
            ms_runrec_fact(rec, key, "%.6g", s->median);
            if (m < N_MEASURES) {
                snprintf(key, sizeof key, "analyze.%s.median_all_%s", dc->name, mname);
                ms_runrec_fact(rec, key, "%.6g", dc->summary_all[m].median);
            }
        }
        ms_log("%s", line);
    }
    n = snprintf(line, sizeof line, "  %-17s", "units kept");
    for (int i = 0; i < a->n_dicts; i++) {
        const dict *dc = &a->dicts[i];
        snprintf(cell, sizeof cell, "%" PRId64 " of %" PRId64 " (%" PRId64 " dead)", dc->alive - dc->ultralow, dc->U,
                 dc->U - dc->alive);
        n += snprintf(line + n, sizeof line - (size_t)n, " %-30s", cell);
        snprintf(key, sizeof key, "analyze.%s.alive", dc->name);
        ms_runrec_fact(rec, key, "%" PRId64 " of %" PRId64, dc->alive, dc->U);
        snprintf(key, sizeof key, "analyze.%s.ultralow", dc->name);
        ms_runrec_fact(rec, key, "%" PRId64 " below density %.3g", dc->ultralow, dc->ultralow_cut);
        snprintf(key, sizeof key, "analyze.%s.out", dc->name);
        ms_runrec_fact(rec, key, "%s", dc->out_path);
    }
    ms_log("%s", line);
    n = snprintf(line, sizeof line, "  %-17s", "ultralow cluster");
    for (int i = 0; i < a->n_dicts; i++) {
        const dict *dc = &a->dicts[i];
        if (dc->ultralow_cut > 0) snprintf(cell, sizeof cell, "%" PRId64 " below %.2g", dc->ultralow, dc->ultralow_cut);
        else snprintf(cell, sizeof cell, "none");
        n += snprintf(line + n, sizeof line - (size_t)n, " %-30s", cell);
    }
    ms_log("%s", line);
    n = snprintf(line, sizeof line, "  all alive units:");
    for (int m = 0; m < N_MEASURES; m++) {
        n += snprintf(line + n, sizeof line - (size_t)n, " %s", measure_names[m]);
        for (int i = 0; i < a->n_dicts; i++)
            n += snprintf(line + n, sizeof line - (size_t)n, "%s%s %.3g", i ? ", " : " ", a->dicts[i].name,
                          a->dicts[i].summary_all[m].median);
        if (m < N_MEASURES - 1) n += snprintf(line + n, sizeof line - (size_t)n, ";");
    }
    ms_log("%s", line);
    /* the distributions themselves (kept units): 10 bins, % of units */
    for (int m = 0; m < N_MEASURES; m++) {
        double lo, hi;
        ms_measure_range(m, &a->dicts[0].an.o, &lo, &hi);
        for (int i = 0; i < a->n_dicts; i++) {
            const dict *dc = &a->dicts[i];
            int64_t h[10];
            ms_measure_summary s;
            ms_err e = {0};
            float *kept = malloc((size_t)dc->U * sizeof *kept + 1);
            if (!kept) continue;
            for (int64_t u = 0; u < dc->U; u++) kept[u] = dc->is_ultralow[u] ? NAN : dc->measure[m][u];
            ms_status st = ms_measure_summarize(kept, dc->U, lo, hi, 10, h, &s, &e);
            free(kept);
            if (st) continue;
            n = snprintf(line, sizeof line, "  %-17s %-8s [%g..%g] %%:", i == 0 ? measure_names[m] : "", dc->name, lo, hi);
            for (int b = 0; b < 10; b++)
                n += snprintf(line + n, sizeof line - (size_t)n, " %3.0f", s.n ? 100.0 * (double)h[b] / (double)s.n : 0);
            ms_log("%s", line);
            snprintf(key, sizeof key, "analyze.%s.hist_%s", dc->name, measure_names[m]);
            ms_runrec_fact(rec, key, "%s", strchr(line, ':') + 1);
        }
    }
}