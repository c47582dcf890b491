/* `monosem analyze job.yaml`: what every SAE feature and every neuron responds to (top-k and
 * interval contexts, histograms, logit effects, monosemanticity measures), features vs neurons;
 * for model A, then for the untrained control R when the job has one. */
#include "analyze.h"
#include "analyze_logits.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of unit activations held per encode (whole contexts, at least one). */
#define ENCODE_BYTES ((int64_t)64 << 20)

static void analyzer_free(analyzer *a)
{
    for (int i = 0; i < a->n_dicts; i++) {
        dict *d = &a->dicts[i];
        if (d->have_sae) ms_sae_free(&d->sae);
        if (d->have_an) ms_analysis_free(&d->an);
        if (d->have_spill) app_spill_free(&d->spill);
        free(d->source);
        free(d->out_path);
        free(d->f);
        free(d->dirs);
        free(d->top_token);
        free(d->is_ultralow);
        for (int m = 0; m < N_MEASURES; m++) free(d->measure[m]);
    }
    free(a->dicts);
    app_job_saes_free(a->saes, a->n_saes_all);
    ms_tokset_close(&a->ts);
    if (a->have_model) ms_model_free(&a->model);
    ms_model_acts_free(&a->acts);
    free(a->tokens);
}

/* One SAE: opened from its SAELens directory (weights, architecture, k), encode buffers. Local. */
static ms_status dict_load_sae(analyzer *a, dict *dc, const app_job_sae *js, ms_err *err)
{
    const ms_config *cfg = a->cfg;
    snprintf(dc->name, sizeof dc->name, "%s", js->name);
    dc->is_sae = true;
    dc->source = strdup(js->dir);
    dc->out_path = app_job_analysis_path(cfg, js->name, js->dir);
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
    ms_status st = ms_saelens_open(&dc->sae, sl, a->enc_ctx * a->T, &info, err);
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
    st = app_spill_init(&dc->spill, cfg->analyze.scratch_dir, dc->U, err);
    dc->have_spill = !st;
    return st;
}

/* Tokens, model, hook, plan, dictionaries, buffers on every rank. Local; the caller agrees. */
/* Keys that scale analyze's work and memory, bounded by what the job can use: a window of
 * context each side within one context, no more top examples than tokens analysed, and the
 * top-k stores of every dictionary within this node's available memory per rank. Identical on
 * every rank but the memory figure: a rank whose node lacks it fails, and the agreement after
 * setup stops every rank with its message. */
static ms_status check_bounds(const analyzer *a, const ms_analysis_opts *o, ms_err *err)
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

static ms_status analyzer_prepare(analyzer *a, ms_err *err)
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
    if ((st = app_check_model_fit(cfg, a->model_dir, mc->n_ctx, mc->d_vocab, &a->ts, err))) return st;
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
    a->logits_ok = app_logit_path_supported(a->hook);

    st = app_job_saes(cfg, &a->saes, &a->n_saes, err);
    if (st) return st;
    /* this model's SAEs and neurons (the paper's dashboards); model B's SAEs are compared with
     * A's by `monosem compare` (universality) and evaluated by `monosem eval` */
    int keep = 0;
    for (int i = 0; i < a->n_saes; i++) {
        if (a->saes[i].model == a->which) {
            app_job_sae t = a->saes[keep];
            a->saes[keep++] = a->saes[i];
            a->saes[i] = t;
        } else if (a->which == 0 && !app_job_analyzes_model(cfg, a->saes[i].model)) {
            ms_log("analyze: %s (model %s) skipped: analyze covers model A's and the control's SAEs and neurons",
                   a->saes[i].name, app_job_model_name(a->saes[i].model));
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
        st = sl ? ms_saelens_dims(sl, NULL, &dsae, err) : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
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
    snprintf(nd->name, sizeof nd->name, "%s", app_job_neurons_name(a->which));
    nd->U = a->d;
    nd->source = strdup(a->model_dir);
    nd->out_path = app_job_neurons_analysis_path(cfg, a->which);
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
static void ln_accumulate(analyzer *a, const float *resid, int64_t n)
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
static ms_status analyzer_block(analyzer *a, int pass, int64_t blk, ms_err *err)
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
                    st = app_spill_write(&dc->spill, dc->f, ne * T, err);
                } else if (dc->is_sae) {
                    st = app_spill_read(&dc->spill, dc->f, ne * T, err);
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
static ms_status analyzer_pass(analyzer *a, int pass, ms_err *err)
{
    const ms_comm *comm = &a->app->comm;
    const int64_t rounds = (a->n_blocks + comm->size - 1) / comm->size;
    ms_status st = MS_OK;
    for (int64_t k = 0; k < rounds; k++) {
        if (!st && a->blk0 + k < a->blk1) st = analyzer_block(a, pass, a->blk0 + k, err);
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


/* Logit effects of every dictionary: chunks spread over ranks, summed (exact: other rows are 0).
 * COLLECTIVE. Results into the arrays (U, L) of each dict on every rank. */
static ms_status analyzer_logits(analyzer *a, int di, int64_t *top_ids, float *top, int64_t *bot_ids, float *bot, ms_err *err)
{
    const ms_comm *comm = &a->app->comm;
    dict *dc = &a->dicts[di];
    int L = (int)a->cfg->analyze.n_logits;
    ms_status st = app_logit_effects(&a->model, a->hook, dc->is_sae ? dc->dirs : NULL, dc->U, a->ln_scale, L,
                                    comm->rank, comm->size, top_ids, top, bot_ids, bot, err);
    st = ms_comm_agree(comm, st, err);
    size_t n = (size_t)dc->U * (size_t)L;
    if (!st) st = ms_comm_allreduce_i64(comm, top_ids, n, err);
    if (!st) st = ms_comm_allreduce_i64(comm, bot_ids, n, err);
    if (!st) st = ms_comm_allreduce_f32(comm, top, n, err);
    if (!st) st = ms_comm_allreduce_f32(comm, bot, n, err);
    return ms_comm_agree(comm, st, err);
}


/* One model's dictionaries (its SAEs and neurons), with facts in app's run record. COLLECTIVE. */
static ms_status analyze_model(app_ctx *app, int model, const char *model_dir, ms_err *err)
{
    const ms_config *cfg = &app->cfg;
    const ms_comm *comm = &app->comm;
    analyzer a;
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
    ms_status st = analyzer_prepare(&a, err);
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
    st = analyzer_pass(&a, 1, err);
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
    for (int i = 0; i < a.n_saes && !st; i++) st = app_spill_rewind(&a.dicts[i].spill, err);
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;
    double t2 = ms_time_now();
    st = analyzer_pass(&a, 2, err);
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
    if (comm->rank == 0) st = app_analyze_vocab_table(&a, &voff, &vbytes, &nv, err);
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
        if (!st && a.logits_ok) st = analyzer_logits(&a, i, top_ids, top, bot_ids, bot, err);
        if (!st && comm->rank == 0) st = app_analyze_finish_dict(&a, i, top_ids, top, bot_ids, bot, voff, vbytes, nv, err);
        st = ms_comm_agree(comm, st, err);
        free(top_ids), free(bot_ids), free(top), free(bot);
        top_ids = bot_ids = NULL, top = bot = NULL;
        if (st) goto done;
    }
    double finish_s = ms_time_now() - t3;

    double tokens = (double)(a.n_ctx * a.T);
    double rate = scan_s > 0 ? tokens / scan_s : 0;
    if (comm->rank == 0) {
        app_analyze_report(&a);
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
    analyzer_free(&a);
    return st;
}

/* Model A, then the control R with its own run record (<out_dir>/run-analyze-r.yaml). */
ms_status app_stage_analyze(app_ctx *app, ms_err *err)
{
    ms_status st = analyze_model(app, 0, app->cfg.model.dir, err);
    if (st || !app_job_has_model(&app->cfg, 2)) return st;
    ms_config r;
    if ((st = ms_config_derive_model(&app->cfg, 2, &r, err))) return st;
    ms_log("== analyze: the control model R (untrained, %s)", r.model.dir);
    app_ctx sub = *app;
    ms_runrec_init(&sub.rec, "analyze-r");
    st = analyze_model(&sub, 2, r.model.dir, err);
    ms_err rerr = {0};
    ms_status rst = ms_runrec_write(&sub.rec, &app->comm, &app->cfg, app->cfg.run.out_dir, st, &rerr);
    rst = ms_comm_agree(&app->comm, rst, &rerr);
    ms_config_free(&r);
    if (!st && rst) st = ms_err_set(err, rerr.status, "%s", rerr.msg);
    return st;
}
