/* `monosem analyze job.yaml`: what every SAE feature and every neuron responds to (top-k and
 * interval contexts, histograms, logit effects, monosemanticity measures), features vs neurons;
 * for model A, then for the untrained control R when the job has one. */
#include "analyze_logits.h"
#include "analyze_spill.h"
#include "app.h"
#include "monosem/model.h"
#include "monosem/sae.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of unit activations held per encode (whole contexts, at least one). */
#define ENCODE_BYTES ((int64_t)64 << 20)
#define N_MEASURES 3

/* One dictionary: an SAE of the job, or the neurons (the identity dictionary). */
typedef struct dict {
    char name[64];
    bool is_sae;
    char *source;   /* SAE directory or model directory */
    char *out_path; /* its analysis.h5 */
    ms_sae sae;
    bool have_sae;
    int64_t U;
    ms_analysis an;
    bool have_an;
    float *f;         /* (enc_ctx*T, U) codes of one encode (SAE only) */
    float *dirs;      /* (U, d) decoder rows for the logit path (SAE only; rank-local copy) */
    ms_spill spill;   /* pass 1's sparse codes, read back by pass 2 (SAE only) */
    bool have_spill;
    double t_encode, t_scan;
    /* rank 0, after the analysis: measures and their medians */
    int32_t *top_token;
    float *measure[N_MEASURES];
    ms_measure_summary summary[N_MEASURES];     /* alive units outside the ultralow cluster */
    ms_measure_summary summary_all[N_MEASURES]; /* every alive unit */
    ms_measure_summary density;
    int64_t alive, ultralow;
    double ultralow_cut;
    uint8_t *is_ultralow; /* (U) */
} dict;

static const char *const measure_names[N_MEASURES] = {"top_token_share", "eff_tokens", "logit_agreement"};

typedef struct az {
    ms_app *app;
    const ms_config *cfg; /* the job (analyze.*, corpus, the saes list) */
    int which;            /* the model analysed: 0 = A, 2 = the control R */
    const char *model_dir;
    ms_tokset ts;
    ms_model model;
    bool have_model;
    ms_model_acts acts;
    ms_hook hook, last_resid;
    int d;
    bool ln_needed, logits_ok;
    ms_job_sae *saes;
    int n_saes;     /* the SAEs analysed (this model's), first in saes */
    int n_saes_all; /* entries of saes (freed) */
    dict *dicts;
    int n_dicts;
    int64_t T, n_ctx, n_blocks, blk0, blk1, enc_ctx;
    int B;
    int32_t *tokens; /* (B, T) */
    int64_t ln_fx;   /* Σ σ_t of the final LayerNorm in 2^-24 fixed point (exact) */
    int64_t ln_n;
    double ln_scale;
    double t_read, t_fwd;
    ms_progress prog;
    double done_tokens;
} az;

static void az_free(az *a)
{
    for (int i = 0; i < a->n_dicts; i++) {
        dict *d = &a->dicts[i];
        if (d->have_sae) ms_sae_free(&d->sae);
        if (d->have_an) ms_analysis_free(&d->an);
        if (d->have_spill) ms_spill_free(&d->spill);
        free(d->source);
        free(d->out_path);
        free(d->f);
        free(d->dirs);
        free(d->top_token);
        free(d->is_ultralow);
        for (int m = 0; m < N_MEASURES; m++) free(d->measure[m]);
    }
    free(a->dicts);
    ms_job_saes_free(a->saes, a->n_saes_all);
    ms_tokset_close(&a->ts);
    if (a->have_model) ms_model_free(&a->model);
    ms_model_acts_free(&a->acts);
    free(a->tokens);
}

/* One SAE: opened from its SAELens directory (weights, architecture, k), encode buffers. Local. */
static ms_status dict_load_sae(az *a, dict *dc, const ms_job_sae *js, ms_err *err)
{
    const ms_config *cfg = a->cfg;
    snprintf(dc->name, sizeof dc->name, "%s", js->name);
    dc->is_sae = true;
    dc->source = strdup(js->dir);
    dc->out_path = ms_job_analysis_path(cfg, js->name, js->dir);
    char *sl = ms_path_join(js->dir, "saelens");
    if (!dc->source || !dc->out_path || !sl) {
        free(sl);
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    if (strcmp(js->model_dir, a->model_dir) != 0) {
        ms_status st = ms_err_set(err, MS_ERR_UNSUPPORTED,
                                  "analyze: SAE '%s' reads model %s, not the job's model %s (one model per run)",
                                  js->name, js->model_dir, a->model_dir);
        free(sl);
        return st;
    }
    /* the one way a trained SAE is opened: from what training saved (its cfg.json names the
     * architecture, k, threshold), never rebuilt from the job */
    ms_saelens_info info;
    ms_status st = ms_sae_open_saelens(&dc->sae, sl, a->enc_ctx * a->T, &info, err);
    dc->have_sae = !st;
    if (!st && dc->sae.hp.d_in != a->d)
        st = ms_err_set(err, MS_ERR_STATE, "%s/cfg.json: d_in %" PRId64 " but hook %s of %s has width %d", sl,
                        dc->sae.hp.d_in, cfg->model.hook, a->model_dir, a->d);
    const int64_t d_sae = dc->sae.hp.d_sae;
    free(sl);
    if (st) return st;
    dc->U = d_sae;
    dc->f = malloc((size_t)(a->enc_ctx * a->T) * (size_t)dc->U * sizeof *dc->f);
    dc->dirs = malloc((size_t)dc->U * (size_t)a->d * sizeof *dc->dirs);
    if (!dc->f || !dc->dirs) return ms_err_set(err, MS_ERR_NOMEM, "analyze: out of memory for SAE %s", js->name);
    memset(dc->f, 0, (size_t)(a->enc_ctx * a->T) * (size_t)dc->U * sizeof *dc->f);
    ms_sae_export(&dc->sae, NULL, NULL, dc->dirs, NULL, NULL);
    st = ms_spill_init(&dc->spill, cfg->analyze.scratch_dir, dc->U, err);
    dc->have_spill = !st;
    return st;
}

/* Tokens, model, hook, plan, dictionaries, buffers on every rank. Local; the caller agrees. */
/* Keys that scale analyze's work and memory, bounded by what the job can use: a window of
 * context each side within one context, no more top examples than tokens analysed, and the
 * top-k stores of every dictionary within this node's available memory per rank. Identical on
 * every rank but the memory figure: a rank whose node lacks it fails, and the agreement after
 * setup stops every rank with its message. */
static ms_status check_bounds(const az *a, const ms_analysis_opts *o, ms_err *err)
{
    const ms_config *cfg = a->cfg;
    char at[4200];
    if (o->window > a->T - 1) {
        ms_config_key_where(cfg, "analyze.context_window", at, sizeof at);
        return ms_err_set(err, MS_ERR_CONFIG, "%s: key 'analyze.context_window': %lld tokens each side, but a "
                          "context holds corpus.context %lld tokens: expected at most %lld", at,
                          (long long)o->window, (long long)a->T, (long long)a->T - 1);
    }
    const int64_t tokens = a->n_ctx * a->T;
    if (o->top_k > tokens) {
        ms_config_key_where(cfg, "analyze.top_k", at, sizeof at);
        return ms_err_set(err, MS_ERR_CONFIG, "%s: key 'analyze.top_k': %lld top examples per unit, but analyze "
                          "reads %lld tokens: expected at most that", at, (long long)o->top_k,
                          (long long)tokens);
    }
    double need = 0;
    for (int i = 0; i < a->n_dicts; i++) need += ms_analysis_bytes(a->dicts[i].U, o);
    const double avail = ms_mem_available() / (a->app->comm.node_size > 0 ? a->app->comm.node_size : 1);
    if (avail > 0 && need > 0.8 * avail) {
        ms_config_key_where(cfg, "analyze.top_k", at, sizeof at);
        return ms_err_set(err, MS_ERR_CONFIG, "%s: analyze would hold %.1f GB per rank of top and interval "
                          "examples (%d dictionaries; analyze.top_k %lld, analyze.context_window %lld, analyze.intervals "
                          "%lld x analyze.interval_samples %lld) but %.1f GB per rank is available on this node: lower "
                          "those keys", at, need / 1e9, a->n_dicts, (long long)o->top_k,
                          (long long)o->window, (long long)o->intervals, (long long)o->interval_samples, avail / 1e9);
    }
    return MS_OK;
}

static ms_status az_prepare(az *a, ms_err *err)
{
    const ms_config *cfg = a->cfg;
    const ms_comm *comm = &a->app->comm;
    ms_status st = ms_tokset_open(&a->ts, cfg->corpus.token_dir, "train", err);
    if (st) return st;
    st = ms_model_load(&a->model, a->model_dir, err);
    if (st) return st;
    a->have_model = true;
    const ms_model_config *mc = &a->model.cfg;
    st = ms_hook_parse(&a->hook, cfg->model.hook, mc, err);
    if (st) return st;
    a->d = ms_hook_dim(mc, a->hook);
    a->T = cfg->corpus.context;
    if ((st = ms_app_check_model_fit(cfg, a->model_dir, mc->n_ctx, mc->d_vocab, &a->ts, err))) return st;
    int64_t avail = ms_tokset_n_contexts(&a->ts, a->T, false);
    a->n_ctx = (cfg->analyze.tokens + a->T - 1) / a->T;
    if (a->n_ctx > avail) a->n_ctx = avail;
    if (a->n_ctx == 0)
        return ms_err_set(err, MS_ERR_STATE, "%s: the train split of %s has no full context of %" PRId64 " tokens",
                          cfg->path, cfg->corpus.token_dir, a->T);
    a->B = (int)(cfg->analyze.batch < a->n_ctx ? cfg->analyze.batch : a->n_ctx);
    a->n_blocks = (a->n_ctx + a->B - 1) / a->B;
    ms_shard_range(a->n_blocks, comm->rank, comm->size, &a->blk0, &a->blk1);
    a->last_resid = (ms_hook){mc->n_layers - 1, MS_HOOK_RESID_POST};
    a->ln_needed = mc->normalization != MS_NORM_NONE;
    a->logits_ok = ms_logit_path_supported(a->hook);

    st = ms_job_saes(cfg, &a->saes, &a->n_saes, err);
    if (st) return st;
    /* this model's SAEs and neurons (the paper's dashboards); model B's SAEs are compared with
     * A's by `monosem compare` (universality) and evaluated by `monosem eval` */
    int keep = 0;
    for (int i = 0; i < a->n_saes; i++) {
        if (a->saes[i].model == a->which) {
            ms_job_sae t = a->saes[keep];
            a->saes[keep++] = a->saes[i];
            a->saes[i] = t;
        } else if (a->which == 0 && !ms_job_analyzes_model(cfg, a->saes[i].model)) {
            ms_log("analyze: %s (model %s) skipped: analyze covers model A's and the control's SAEs and neurons",
                   a->saes[i].name, ms_job_model_name(a->saes[i].model));
        }
    }
    a->n_saes_all = a->n_saes;
    a->n_saes = keep;
    a->n_dicts = a->n_saes + 1;
    a->dicts = calloc((size_t)a->n_dicts, sizeof *a->dicts);
    if (!a->dicts) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    int64_t max_units = a->d;
    for (int i = 0; i < a->n_saes; i++) {
        int64_t dsae = 0;
        char *sl = ms_path_join(a->saes[i].dir, "saelens");
        st = sl ? ms_sae_saelens_dims(sl, NULL, &dsae, err) : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        free(sl);
        if (st) return st;
        if (dsae > max_units) max_units = dsae;
    }
    /* contexts per encode: one batch, or fewer so the codes stay within ENCODE_BYTES */
    a->enc_ctx = ENCODE_BYTES / (a->T * max_units * (int64_t)sizeof(float));
    if (a->enc_ctx > a->B) a->enc_ctx = a->B;
    if (a->enc_ctx < 1) a->enc_ctx = 1;
    ms_analysis_opts o = {.top_k = cfg->analyze.top_k, .window = cfg->analyze.context_window,
                          .intervals = cfg->analyze.intervals, .interval_samples = cfg->analyze.interval_samples,
                          .hist_bins = cfg->analyze.hist_bins, .context = a->T, .seed = (uint64_t)cfg->run.seed};
    for (int i = 0; i < a->n_saes && !st; i++) st = dict_load_sae(a, &a->dicts[i], &a->saes[i], err);
    if (st) return st;
    dict *nd = &a->dicts[a->n_saes];
    snprintf(nd->name, sizeof nd->name, "%s", ms_job_neurons_name(a->which));
    nd->U = a->d;
    nd->source = strdup(a->model_dir);
    nd->out_path = ms_job_neurons_analysis_path(cfg, a->which);
    if (!nd->source || !nd->out_path) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if ((st = check_bounds(a, &o, err))) return st;
    for (int i = 0; i < a->n_dicts && !st; i++) {
        st = ms_analysis_init(&a->dicts[i].an, a->dicts[i].U, &o, err);
        a->dicts[i].have_an = !st;
    }
    if (st) return st;
    st = ms_model_acts_init(&a->acts, mc, a->B, (int)a->T, MS_ACTS_NO_LOGITS, err);
    if (st) return st;
    a->tokens = calloc((size_t)a->B * (size_t)a->T, sizeof *a->tokens);
    if (!a->tokens) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    return MS_OK;
}

/* Σ of the final LayerNorm's scale √(var + eps) over the rows of resid (n, C), fixed point. */
static void ln_accumulate(az *a, const float *resid, int64_t n)
{
    const int C = a->model.cfg.d_model;
    for (int64_t r = 0; r < n; r++) {
        const float *x = resid + r * C;
        double mu = 0, var = 0;
        for (int j = 0; j < C; j++) mu += x[j];
        mu /= C;
        for (int j = 0; j < C; j++) var += ((double)x[j] - mu) * ((double)x[j] - mu);
        var /= C;
        a->ln_fx += llrint(sqrt(var + a->model.cfg.eps) * 16777216.0);
    }
    a->ln_n += n;
}

/* One pass over this rank's blocks: forward, encoders (pass 1; pass 2 reads their codes back),
 * and the pass's scan. Local. */
/* One block of contexts: forward to the hook, encode, scan. Local. */
static ms_status az_block(az *a, int pass, int64_t blk, ms_err *err)
{
    const int64_t T = a->T;
    const ms_comm *comm = &a->app->comm;
    ms_forward_opts opts = {.stop_after = pass == 1 && a->ln_needed ? &a->last_resid : &a->hook};
    {
        int64_t c0 = blk * a->B, nb = a->n_ctx - c0 < a->B ? a->n_ctx - c0 : a->B;
        double t = ms_time_now();
        ms_status st = ms_tokset_read(&a->ts, c0 * T, nb * T, a->tokens, err);
        double t2 = ms_time_now();
        a->t_read += t2 - t;
        if (st) return st;
        st = ms_model_forward(&a->model, &a->acts, a->tokens, (int)nb, (int)T, &opts, err);
        if (st) return st;
        const float *x = ms_model_acts_hook(&a->acts, a->hook); /* (nb*T, d) */
        if (pass == 1 && a->ln_needed) ln_accumulate(a, ms_model_acts_hook(&a->acts, a->last_resid), nb * T);
        t = ms_time_now();
        a->t_fwd += t - t2;
        for (int i = 0; i < a->n_dicts; i++) {
            dict *dc = &a->dicts[i];
            for (int64_t e0 = 0; e0 < nb; e0 += dc->is_sae ? a->enc_ctx : nb) {
                int64_t ne = dc->is_sae ? (nb - e0 < a->enc_ctx ? nb - e0 : a->enc_ctx) : nb;
                const float *acts = x;
                t = ms_time_now();
                if (dc->is_sae && pass == 1) { /* encode, and keep the sparse codes for pass 2 */
                    ms_sae_encode(&dc->sae, dc->f, x + e0 * T * a->d, ne * T);
                    st = ms_spill_write(&dc->spill, dc->f, ne * T, err);
                } else if (dc->is_sae) {
                    st = ms_spill_read(&dc->spill, dc->f, ne * T, err);
                }
                if (st) return st;
                if (dc->is_sae) acts = dc->f;
                t2 = ms_time_now();
                dc->t_encode += t2 - t;
                if (pass == 1) ms_analysis_scan_top(&dc->an, acts, a->tokens + e0 * T, ne, c0 + e0);
                else ms_analysis_scan_intervals(&dc->an, acts, a->tokens + e0 * T, ne, c0 + e0);
                dc->t_scan += ms_time_now() - t2;
            }
        }
        if (comm->rank == 0) {
            /* rank 0's own share, scaled: ranks hold equal shares of blocks */
            a->done_tokens += (double)(nb * T) * comm->size;
            ms_progress_update(&a->prog, a->done_tokens < a->prog.total ? a->done_tokens : a->prog.total);
        }
    }
    return MS_OK;
}

/* COLLECTIVE. One pass over this rank's blocks. Every rank runs the same number of rounds (the
 * largest share), agreeing on stop signals after each, so a SIGTERM on any rank stops all of
 * them at the same block; a rank that failed keeps joining the rounds without working. Returns
 * MS_INTERRUPTED (err set) when a signal stopped the pass. */
static ms_status az_pass(az *a, int pass, ms_err *err)
{
    const ms_comm *comm = &a->app->comm;
    const int64_t rounds = (a->n_blocks + comm->size - 1) / comm->size;
    ms_status st = MS_OK;
    for (int64_t k = 0; k < rounds; k++) {
        if (!st && a->blk0 + k < a->blk1) st = az_block(a, pass, a->blk0 + k, err);
        int sig = ms_comm_signal_agree(comm, (int64_t)(pass - 1) * rounds + k + 1); /* rounds over both passes */
        if (sig && !st)
            st = ms_err_set(err, MS_INTERRUPTED,
                            "analyze: %s: stopped in pass %d of 2 after %" PRId64 " of %" PRId64 " blocks per rank; "
                            "analyze keeps no checkpoint (its passes are short next to training): rerun to start over",
                            ms_signal_name(sig), pass, k + 1, rounds);
        if (sig) break;
    }
    return st;
}

/* Token bytes table for the dashboards (rank 0). */
static ms_status vocab_table(const az *a, int64_t **offsets, uint8_t **bytes, int64_t *n_vocab, ms_err *err)
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

/* Logit effects of every dictionary: chunks spread over ranks, summed (exact: other rows are 0).
 * COLLECTIVE. Results into the arrays (U, L) of each dict on every rank. */
static ms_status az_logits(az *a, int di, int64_t *top_ids, float *top, int64_t *bot_ids, float *bot, ms_err *err)
{
    const ms_comm *comm = &a->app->comm;
    dict *dc = &a->dicts[di];
    int L = (int)a->cfg->analyze.n_logits;
    ms_status st = ms_logit_effects(&a->model, a->hook, dc->is_sae ? dc->dirs : NULL, dc->U, a->ln_scale, L,
                                    comm->rank, comm->size, top_ids, top, bot_ids, bot, err);
    st = ms_comm_agree(comm, st, err);
    size_t n = (size_t)dc->U * (size_t)L;
    if (!st) st = ms_comm_allreduce_i64(comm, top_ids, n, err);
    if (!st) st = ms_comm_allreduce_i64(comm, bot_ids, n, err);
    if (!st) st = ms_comm_allreduce_f32(comm, top, n, err);
    if (!st) st = ms_comm_allreduce_f32(comm, bot, n, err);
    return ms_comm_agree(comm, st, err);
}

/* Rank 0: measures, distributions and the file of one dictionary. */
static ms_status az_finish_dict(az *a, int di, const int64_t *top_ids64, const float *top, const int64_t *bot_ids64,
                                const float *bot, const int64_t *voff, const uint8_t *vbytes, int64_t nv,
                                ms_err *err)
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
    if (!st)
        st = ms_analysis_measures(&dc->an, a->logits_ok ? tid : NULL, L, dc->top_token, dc->measure[0],
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
static void az_report(az *a)
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

/* One model's dictionaries (its SAEs and neurons), with facts in app's run record. COLLECTIVE. */
static ms_status analyze_model(ms_app *app, int model, const char *model_dir, ms_err *err)
{
    const ms_config *cfg = &app->cfg;
    const ms_comm *comm = &app->comm;
    az a;
    memset(&a, 0, sizeof a);
    a.app = app;
    a.cfg = cfg;
    a.which = model;
    a.model_dir = model_dir;
    double t_start = ms_time_now();
    int64_t *top_ids = NULL, *bot_ids = NULL, *voff = NULL;
    float *top = NULL, *bot = NULL;
    uint8_t *vbytes = NULL;
    int64_t nv = 0;

    ms_signals_install(); /* SIGTERM/SIGINT/SIGUSR1: all ranks stop at the same block, exit 75 */
    ms_status st = az_prepare(&a, err);
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;
    if (comm->rank == 0) {
        char units[256];
        int n = 0;
        for (int i = 0; i < a.n_dicts; i++)
            n += snprintf(units + n, sizeof units - (size_t)n, "%s%s (%" PRId64 ")", i ? ", " : "", a.dicts[i].name,
                          a.dicts[i].U);
        ms_log("analyze: %" PRId64 " contexts x %" PRId64 " tokens of the train split (%s), two passes, %d rank(s); "
               "units: %s",
               a.n_ctx, a.T, cfg->corpus.token_dir, comm->size, units);
        ms_progress_init(&a.prog, "analyze", "tokens", 2.0 * (double)(a.n_ctx * a.T), cfg->run.log_every_s);
    }

    /* pass 1: top-k, counts, sums, the LayerNorm scale */
    double t1 = ms_time_now();
    st = az_pass(&a, 1, err);
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;
    for (int i = 0; i < a.n_dicts && !st; i++) st = ms_analysis_reduce_top(&a.dicts[i].an, comm, err);
    int64_t ln[2] = {a.ln_fx, a.ln_n};
    if (!st) st = ms_comm_allreduce_i64(comm, ln, 2, err);
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;
    a.ln_scale = a.ln_needed && ln[1] > 0 ? (double)ln[0] / 16777216.0 / (double)ln[1] : 1.0;
    double pass1_s = ms_time_now() - t1;

    /* pass 2: interval samples and histograms, the max now known; SAE codes from the scratch file */
    for (int i = 0; i < a.n_saes && !st; i++) st = ms_spill_rewind(&a.dicts[i].spill, err);
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;
    double t2 = ms_time_now();
    st = az_pass(&a, 2, err);
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;
    for (int i = 0; i < a.n_dicts && !st; i++) st = ms_analysis_reduce_intervals(&a.dicts[i].an, comm, err);
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;
    double pass2_s = ms_time_now() - t2;
    double scan_s = ms_time_now() - t1;
    if (comm->rank == 0) {
        a.prog.done = a.prog.total;
        ms_progress_finish(&a.prog);
    }

    /* logit effects, measures, files */
    double t3 = ms_time_now();
    if (comm->rank == 0) st = vocab_table(&a, &voff, &vbytes, &nv, err);
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;
    for (int i = 0; i < a.n_dicts; i++) {
        size_t n = (size_t)a.dicts[i].U * (size_t)cfg->analyze.n_logits;
        top_ids = malloc(n * sizeof *top_ids + 1);
        bot_ids = malloc(n * sizeof *bot_ids + 1);
        top = malloc(n * sizeof *top + 1);
        bot = malloc(n * sizeof *bot + 1);
        st = top_ids && bot_ids && top && bot ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        st = ms_comm_agree(comm, st, err);
        if (!st && a.logits_ok) st = az_logits(&a, i, top_ids, top, bot_ids, bot, err);
        if (!st && comm->rank == 0) st = az_finish_dict(&a, i, top_ids, top, bot_ids, bot, voff, vbytes, nv, err);
        st = ms_comm_agree(comm, st, err);
        free(top_ids), free(bot_ids), free(top), free(bot);
        top_ids = bot_ids = NULL, top = bot = NULL;
        if (st) goto done;
    }
    double finish_s = ms_time_now() - t3;

    double tokens = (double)(a.n_ctx * a.T);
    double rate = scan_s > 0 ? tokens / scan_s : 0;
    if (comm->rank == 0) {
        az_report(&a);
        for (int i = 0; i < a.n_dicts; i++) ms_log("analyze: wrote %s", a.dicts[i].out_path);
        ms_log("analyze: %.0f tokens in %.2fs (pass 1 %.2fs, pass 2 %.2fs): %.0f tokens/s; logits, measures and "
               "files %.2fs; LayerNorm scale %.4g",
               tokens, scan_s, pass1_s, pass2_s, rate, finish_s, a.ln_scale);
    }
    ms_runrec_fact(&app->rec, "analyze.tokens", "%.0f", tokens);
    ms_runrec_fact(&app->rec, "analyze.contexts", "%" PRId64, a.n_ctx);
    ms_runrec_fact(&app->rec, "analyze.split", "train");
    ms_runrec_fact(&app->rec, "analyze.tokens_per_s", "%.0f", rate);
    ms_runrec_fact(&app->rec, "analyze.ln_scale", "%.6g", a.ln_scale);
    int64_t spill_bytes = 0;
    for (int i = 0; i < a.n_saes; i++) spill_bytes += a.dicts[i].spill.bytes;
    ms_comm_allreduce_i64(comm, &spill_bytes, 1, NULL);
    ms_runrec_fact(&app->rec, "analyze.scratch_bytes", "%" PRId64, spill_bytes);

done:
    ms_runrec_time(&app->rec, "analyze.read_tokens", a.t_read);
    ms_runrec_time(&app->rec, "analyze.forward", a.t_fwd);
    for (int i = 0; i < a.n_dicts; i++) {
        char key[96];
        snprintf(key, sizeof key, "analyze.%s.encode", a.dicts[i].name);
        ms_runrec_time(&app->rec, key, a.dicts[i].t_encode);
        snprintf(key, sizeof key, "analyze.%s.scan", a.dicts[i].name);
        ms_runrec_time(&app->rec, key, a.dicts[i].t_scan);
    }
    ms_runrec_time(&app->rec, "analyze.total", ms_time_now() - t_start);
    free(top_ids), free(bot_ids), free(top), free(bot), free(voff), free(vbytes);
    az_free(&a);
    return st;
}

/* Model A, then the control R with its own run record (<out_dir>/run-analyze-r.yaml). */
ms_status ms_stage_analyze(ms_app *app, ms_err *err)
{
    ms_status st = analyze_model(app, 0, app->cfg.model.dir, err);
    if (st || !ms_job_has_model(&app->cfg, 2)) return st;
    ms_config r;
    if ((st = ms_config_derive_model(&app->cfg, 2, &r, err))) return st;
    ms_log("== analyze: the control model R (untrained, %s)", r.model.dir);
    ms_app sub = *app;
    ms_runrec_init(&sub.rec, "analyze-r");
    st = analyze_model(&sub, 2, r.model.dir, err);
    ms_err rerr = {0};
    ms_status rst = ms_runrec_write(&sub.rec, &app->comm, &app->cfg, app->cfg.run.out_dir, st, &rerr);
    rst = ms_comm_agree(&app->comm, rst, &rerr);
    ms_config_free(&r);
    if (!st && rst) st = ms_err_set(err, rerr.status, "%s", rerr.msg);
    return st;
}
