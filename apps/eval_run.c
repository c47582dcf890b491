/* The eval pass: held-out contexts shared over ranks; per batch one clean forward, then per hook
 * a zero-ablated tail and per SAE a spliced tail (forwards resumed at the hook); partial sums
 * reduced once at the end; the comparison table (eval_write.c writes eval.json and the
 * per-feature densities). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"

/* rows per SAE encode/decode: bounds the SAE workspace (≈ 11·chunk·d_sae bytes) */
#define EVAL_SAE_CHUNK 1024
/* rows per unembedding: bounds the two logits chunks (rows·d_vocab floats each, 103 MB at
 * GPT-2's vocabulary) and keeps them in a large last-level cache for the logsumexp, loss and KL
 * passes; fewer rows repack W_U too often (OpenBLAS packs it per call: ~25% more at 64 rows) */
#define EVAL_UNEMBED_ROWS 512

static ms_status oom(ms_err *err, const char *what)
{
    return ms_err_set(err, MS_ERR_NOMEM, "eval: out of memory for %s (lower eval.batch)", what);
}

static int hook_rank(ms_hook h) { return h.layer * MS_HOOK_KIND_COUNT + (int)h.kind; }

static void evaluator_free(evaluator *e)
{
    for (int i = 0; i < e->n_jobs && e->saes; i++) {
        ms_sae_free(&e->saes[i].sae);
        free(e->saes[i].lens_dir);
        free(e->saes[i].splice.f);
        free(e->saes[i].splice.xhat);
        free(e->saes[i].resid);
    }
    free(e->saes);
    for (int h = 0; h < e->n_hooks; h++) free(e->hooks[h].clean), free(e->hooks[h].resid);
    free(e->order);
    free(e->win), free(e->tokens), free(e->targets);
    free(e->resid_clean), free(e->logits_c), free(e->logits_x);
    free(e->lse_c), free(e->lse_x), free(e->loss), free(e->kl), free(e->scratch);
    free(e->pdot), free(e->psum);
    free(e->sums);
    ms_tokset_close(&e->ts);
    ms_model_acts_free(&e->a);
    if (e->m.params) ms_model_free(&e->m);
}

/* The SAEs (opened from what training saved) and the distinct hooks they read, with their
 * buffers; *n_sums grows by their partial sums. Local. */
static ms_status setup_saes(evaluator *e, size_t rows, int64_t chunk, size_t *n_sums_out, ms_err *err)
{
    const ms_config *cfg = e->cfg;
    const ms_model_config *mc = &e->m.cfg;
    ms_status st = MS_OK;
    e->saes = calloc((size_t)e->n_jobs, sizeof *e->saes);
    if (!e->saes) return oom(err, "the SAE list");
    size_t n_sums = *n_sums_out;
    for (int i = 0; i < e->n_jobs; i++) {
        eval_sae *s = &e->saes[i];
        s->job = &e->jobs[i];
        s->lens_dir = ms_path_join(s->job->dir, "saelens");
        if (!s->lens_dir) return oom(err, "a path");
        st = ms_saelens_open(&s->sae, s->lens_dir, chunk, &s->info, err);
        if (st) return st;
        const char *hn = s->info.hook_name[0] ? s->info.hook_name : cfg->model.hook;
        ms_hook h;
        st = ms_hook_parse(&h, hn, mc, err);
        if (st) return st;
        if (ms_hook_dim(mc, h) != s->sae.hp.d_in)
            return ms_err_set(err, MS_ERR_STATE,
                              "%s/cfg.json: d_in %lld, but %s of the model in %s has width %d",
                              s->lens_dir, (long long)s->sae.hp.d_in, hn, s->job->model_dir,
                              ms_hook_dim(mc, h));
        int k = 0;
        while (k < e->n_hooks && hook_rank(e->hooks[k].hook) != hook_rank(h)) k++;
        if (k == e->n_hooks) {
            if (k == (int)(sizeof e->hooks / sizeof e->hooks[0]))
                return ms_err_set(err, MS_ERR_UNSUPPORTED, "eval: too many distinct hooks");
            e->hooks[k].hook = h;
            e->hooks[k].d = ms_hook_dim(mc, h);
            e->hooks[k].clean = malloc(rows * (size_t)e->hooks[k].d * sizeof(float));
            e->hooks[k].resid = malloc(rows * (size_t)mc->d_model * sizeof(float));
            if (!e->hooks[k].clean || !e->hooks[k].resid) return oom(err, "the clean activations");
            n_sums += ms_eval_hook_len(e->hooks[k].d);
            e->n_hooks++;
        }
        s->hook = k;
        n_sums += ms_eval_sae_len(s->sae.hp.d_sae, s->sae.hp.d_in);
        s->splice = (app_eval_splice){.sae = &s->sae, .chunk = chunk};
        s->splice.f = malloc((size_t)chunk * (size_t)s->sae.hp.d_sae * sizeof(float));
        s->splice.xhat = malloc((size_t)chunk * (size_t)s->sae.hp.d_in * sizeof(float));
        s->resid = malloc(rows * (size_t)mc->d_model * sizeof(float));
        if (!s->splice.f || !s->splice.xhat || !s->resid) return oom(err, "the SAE codes");
    }
    *n_sums_out = n_sums;
    return MS_OK;
}

/* Model, SAEs, hooks, tokens and buffers; every rank the same (local errors, agreed after). */
static ms_status setup(evaluator *e, ms_err *err)
{
    const ms_config *cfg = e->cfg;
    ms_status st = MS_OK;
    if (e->n_jobs < 1) return ms_err_set(err, MS_ERR_USAGE, "eval: no SAE to evaluate");
    for (int i = 1; i < e->n_jobs; i++)
        if (strcmp(e->jobs[i].model_dir, e->jobs[0].model_dir) != 0)
            return ms_err_set(err, MS_ERR_UNSUPPORTED,
                              "eval: SAEs %s and %s read different models (%s, %s); one eval "
                              "run shares one model's forward: evaluate them in separate jobs",
                              e->jobs[0].name, e->jobs[i].name, e->jobs[0].model_dir,
                              e->jobs[i].model_dir);
    st = ms_model_load(&e->m, e->jobs[0].model_dir, err);
    if (st) return st;
    const ms_model_config *mc = &e->m.cfg;
    if ((st = app_check_model_fit(cfg, e->jobs[0].model_dir, mc->n_ctx, mc->d_vocab, NULL, err))) return st;
    e->T = (int)cfg->corpus.context;
    st = ms_tokset_open(&e->ts, cfg->corpus.token_dir, "heldout", err);
    if (st) return st;
    int64_t avail = ms_tokset_n_contexts(&e->ts, e->T, true);
    if (avail < 1)
        return ms_err_set(err, MS_ERR_STATE,
                          "%s: the held-out split has %lld tokens; one context needs %d (raise "
                          "corpus.heldout_fraction)",
                          cfg->corpus.token_dir, (long long)e->ts.count, e->T + 1);
    int64_t want = cfg->eval.tokens / e->T;
    if (want < 1) want = 1;
    e->n_ctx = want < avail ? want : avail;
    ms_shard_range(e->n_ctx, e->comm->rank, e->comm->size, &e->lo, &e->hi);
    int64_t per_rank = (e->n_ctx + e->comm->size - 1) / e->comm->size;
    e->B = (int)(cfg->eval.batch < per_rank ? cfg->eval.batch : per_rank);
    if (e->B < 1) e->B = 1;
    const size_t rows = (size_t)e->B * e->T;
    const int64_t chunk = (int64_t)rows < EVAL_SAE_CHUNK ? (int64_t)rows : EVAL_SAE_CHUNK;

    /* SAEs and the distinct hooks they read */
    size_t n_sums = EVAL_GLOB_FIXED;
    if ((st = setup_saes(e, rows, chunk, &n_sums, err))) return st;
    /* one array of sums: global | hooks | SAEs (one allreduce at the end) */
    e->n_sums = n_sums;
    e->sums = calloc(n_sums, sizeof *e->sums);
    e->order = malloc((size_t)e->n_hooks * sizeof *e->order);
    if (!e->sums || !e->order) return oom(err, "the sums");
    size_t off = EVAL_GLOB_FIXED;
    for (int k = 0; k < e->n_hooks; k++) {
        e->hooks[k].acc = e->sums + off;
        off += ms_eval_hook_len(e->hooks[k].d);
        e->order[k] = k;
    }
    for (int i = 0; i < e->n_jobs; i++) {
        e->saes[i].splice.acc = e->sums + off;
        off += ms_eval_sae_len(e->saes[i].sae.hp.d_sae, e->saes[i].sae.hp.d_in);
    }
    for (int a = 1; a < e->n_hooks; a++) /* latest hook first */
        for (int b = a; b > 0 && hook_rank(e->hooks[e->order[b]].hook) >
                                     hook_rank(e->hooks[e->order[b - 1]].hook); b--) {
            int t = e->order[b];
            e->order[b] = e->order[b - 1];
            e->order[b - 1] = t;
        }

    st = ms_model_acts_init(&e->a, mc, e->B, e->T, MS_ACTS_NO_LOGITS, err);
    if (st) return st;
    e->last_hook = (ms_hook){mc->n_layers - 1, MS_HOOK_RESID_POST};
    const size_t V = (size_t)mc->d_vocab;
    e->R = (int)rows < EVAL_UNEMBED_ROWS ? (int)rows : EVAL_UNEMBED_ROWS;
    const size_t R = (size_t)e->R;
    e->win = malloc((size_t)(e->T + 1) * sizeof *e->win);
    e->tokens = malloc(rows * sizeof *e->tokens);
    e->targets = malloc(rows * sizeof *e->targets);
    e->resid_clean = malloc(rows * (size_t)mc->d_model * sizeof(float));
    e->logits_c = calloc(R * V, sizeof(float)); /* calloc: pages touched now, not in the loop */
    e->logits_x = calloc(R * V, sizeof(float));
    e->lse_c = malloc(R * sizeof(float)), e->lse_x = malloc(R * sizeof(float));
    e->loss = malloc(R * sizeof(float)), e->kl = malloc(R * sizeof(float));
    e->scratch = malloc(ms_model_unembed_scratch(mc, e->R) * sizeof(float));
    e->pdot = malloc(R * sizeof(double)), e->psum = malloc(R * sizeof(double));
    if (!e->win || !e->tokens || !e->targets || !e->resid_clean || !e->logits_c || !e->logits_x ||
        !e->lse_c || !e->lse_x || !e->loss || !e->kl || !e->scratch || !e->pdot || !e->psum)
        return oom(err, "the logits");
    memset(e->logits_c, 0, R * V * sizeof(float));
    memset(e->logits_x, 0, R * V * sizeof(float));
    return MS_OK;
}

static double sum(const float *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    return s;
}

/* A forward resumed at h (NULL: from the start) that stops at the last residual stream,
 * replacing at h with rep (may be NULL) and keeping that residual stream in resid. */
static ms_status forward_to_resid(evaluator *e, const ms_hook *h, const ms_hook_replace *rep,
                                  const ms_hook_capture *extra, int n_extra, float *resid, int nb,
                                  ms_err *err)
{
    ms_hook_capture caps[MS_HOOK_KIND_COUNT * 8 + 1];
    for (int k = 0; k < n_extra; k++) caps[k] = extra[k];
    caps[n_extra] = (ms_hook_capture){e->last_hook, resid};
    ms_forward_opts o = {.stop_after = &e->last_hook, .start_at = h, .captures = caps,
                         .n_captures = n_extra + 1, .replaces = rep, .n_replaces = rep ? 1 : 0};
    return ms_model_forward(&e->m, &e->a, e->tokens, nb, e->T, &o, err);
}

/* Unembeds rows [r0, r0+n) of a variant's residual stream against the clean chunk (held as
 * probabilities in logits_c): adds its loss and KL sums. */
static ms_status unembed_variant(evaluator *e, const float *resid, int64_t r0, int n, double *loss,
                                 double *kl, ms_err *err)
{
    const int C = e->m.cfg.d_model;
    ms_kl_ref ref = {e->logits_c, e->lse_c, e->pdot, e->psum};
    ms_status st = ms_model_unembed_kl(&e->m, e->logits_x, e->lse_x, e->loss, e->kl, resid + r0 * C,
                                       e->targets + r0, &ref, e->scratch, n, err);
    *loss += sum(e->loss, n);
    *kl += sum(e->kl, n);
    return st;
}

/* One batch of nb contexts starting at context c0. */
static ms_status eval_batch(evaluator *e, int64_t c0, int nb, ms_err *err)
{
    const int T = e->T, C = e->m.cfg.d_model;
    const int64_t rows = (int64_t)nb * T;
    double t0 = ms_time_now();
    for (int b = 0; b < nb; b++) {
        ms_status st = ms_tokset_context(&e->ts, c0 + b, T, true, e->win, err);
        if (st) return st;
        memcpy(e->tokens + (size_t)b * T, e->win, (size_t)T * sizeof(int32_t));
        memcpy(e->targets + (size_t)b * T, e->win + 1, (size_t)T * sizeof(int32_t));
    }
    double t1 = ms_time_now();
    e->t_read += t1 - t0;
    /* clean forward to the last residual stream, capturing every hook an SAE reads */
    ms_hook_capture caps[MS_HOOK_KIND_COUNT * 8];
    for (int k = 0; k < e->n_hooks; k++) caps[k] = (ms_hook_capture){e->hooks[k].hook, e->hooks[k].clean};
    ms_status st = forward_to_resid(e, NULL, NULL, caps, e->n_hooks, e->resid_clean, nb, err);
    if (st) return st;
    for (int k = 0; k < e->n_hooks; k++)
        app_eval_neuron_sums(e->hooks[k].acc, e->hooks[k].clean, rows, e->hooks[k].d);
    double t2 = ms_time_now();
    e->t_clean += t2 - t1;
    /* per hook, latest first: zero ablation, then each SAE reading it, resumed at the hook */
    for (int oi = 0; oi < e->n_hooks; oi++) {
        eval_hook *h = &e->hooks[e->order[oi]];
        double z0 = ms_time_now();
        ms_hook_replace zr = {h->hook, ms_hook_fn_zero, NULL};
        st = forward_to_resid(e, &h->hook, &zr, NULL, 0, h->resid, nb, err);
        if (st) return st;
        e->t_zero += ms_time_now() - z0;
        for (int i = 0; i < e->n_jobs; i++) {
            eval_sae *s = &e->saes[i];
            if (s->hook != e->order[oi]) continue;
            double s0 = ms_time_now();
            s->splice.clean = h->clean;
            ms_hook_replace sr = {h->hook, app_eval_splice_fn, &s->splice};
            st = forward_to_resid(e, &h->hook, &sr, NULL, 0, s->resid, nb, err);
            if (st) return st;
            s->t_tail += ms_time_now() - s0;
        }
    }
    /* the unembeddings, chunk by chunk: the clean logits stay in cache for every variant */
    for (int64_t r0 = 0; r0 < rows; r0 += e->R) {
        const int n = rows - r0 < e->R ? (int)(rows - r0) : e->R;
        double u0 = ms_time_now();
        st = ms_model_unembed(&e->m, e->logits_c, e->lse_c, e->loss, NULL, e->resid_clean + r0 * C,
                              e->targets + r0, NULL, NULL, e->scratch, n, err);
        if (st) return st;
        e->sums[EVAL_GLOB_TOKENS] += n;
        e->sums[EVAL_GLOB_LOSS_CLEAN] += sum(e->loss, n);
        /* the clean chunk becomes the KL reference: probabilities in place, one exp per logit
         * here instead of one per logit in every variant */
        ms_logits_kl_ref_fill(e->logits_c, e->pdot, e->psum, e->logits_c, e->lse_c, n, e->m.cfg.d_vocab);
        double u1 = ms_time_now();
        e->t_clean += u1 - u0;
        for (int k = 0; k < e->n_hooks && !st; k++)
            st = unembed_variant(e, e->hooks[k].resid, r0, n, &e->hooks[k].acc[EVAL_HOOK_LOSS_ZERO],
                                 &e->hooks[k].acc[EVAL_HOOK_KL_ZERO], err);
        double u2 = ms_time_now();
        e->t_zero += u2 - u1;
        for (int i = 0; i < e->n_jobs && !st; i++) {
            double s0 = ms_time_now();
            eval_sae *s = &e->saes[i];
            st = unembed_variant(e, s->resid, r0, n, &s->splice.acc[EVAL_SAE_LOSS], &s->splice.acc[EVAL_SAE_KL], err);
            s->t_tail += ms_time_now() - s0;
        }
        if (st) return st;
    }
    return MS_OK;
}

ms_status app_eval_run(app_ctx *app, app_job_sae *saes, int n_saes, ms_err *err)
{
    evaluator e;
    memset(&e, 0, sizeof e);
    e.cfg = &app->cfg;
    e.comm = &app->comm;
    e.jobs = saes;
    e.n_jobs = n_saes;
    const ms_comm *comm = &app->comm;
    ms_signals_install(); /* SIGTERM/SIGINT/SIGUSR1: all ranks stop at the same batch, exit 75 */
    ms_status st = setup(&e, err);
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;
    ms_log("eval: %d SAE(s) on %lld held-out contexts x %d tokens (%lld of %lld split tokens) "
           "over %d rank(s), %d contexts per forward",
           e.n_jobs, (long long)e.n_ctx, e.T, (long long)(e.n_ctx * e.T), (long long)e.ts.count,
           comm->size, e.B);
    if ((double)e.n_ctx * e.T < 1.0 / app->cfg.sae.ultralow_density)
        ms_log("eval: note: %lld tokens cannot resolve densities below 1/%lld, above "
               "sae.ultralow_density %g: ultralow counts are 0 by construction (raise eval.tokens)",
               (long long)(e.n_ctx * e.T), (long long)(e.n_ctx * e.T), app->cfg.sae.ultralow_density);
    ms_progress prog;
    ms_progress_init(&prog, "eval", "tokens", (double)(e.n_ctx * e.T), app->cfg.run.log_every_s);
    double t_begin = ms_time_now();
    /* every rank runs the same number of rounds (the largest share) and agrees on stop signals
     * after each, so a SIGTERM on any rank stops all at the same batch; a rank that failed keeps
     * joining the rounds without working */
    const int64_t per_rank = (e.n_ctx + comm->size - 1) / comm->size, rounds = (per_rank + e.B - 1) / e.B;
    for (int64_t k = 0; k < rounds; k++) {
        const int64_t c = e.lo + k * e.B;
        if (!st && c < e.hi) {
            int nb = (int)(e.hi - c < e.B ? e.hi - c : e.B);
            st = eval_batch(&e, c, nb, err);
            /* rank 0's share scaled to the whole: ranks hold equal shares within one context */
            ms_progress_update(&prog, (double)(c + nb - e.lo) * e.T * comm->size);
        }
        int sig = ms_comm_signal_agree(comm, k + 1);
        if (sig && !st)
            st = ms_err_set(err, MS_INTERRUPTED,
                            "eval: %s: stopped after %lld of %lld batches per rank, nothing written; eval keeps no "
                            "checkpoint (one pass over held-out text): rerun to start over",
                            ms_signal_name(sig), (long long)(k + 1), (long long)rounds);
        if (sig) break;
    }
    st = ms_comm_agree(comm, st, err);
    if (!st) st = ms_comm_allreduce_f64(comm, e.sums, e.n_sums, err);
    if (st) goto done;
    ms_progress_finish(&prog);
    double seconds = ms_time_now() - t_begin;
    ms_runrec_time(&app->rec, "read", e.t_read);
    ms_runrec_time(&app->rec, "clean_forward", e.t_clean);
    ms_runrec_time(&app->rec, "zero_ablation", e.t_zero);
    double t_sae = 0, t_tail = 0;
    for (int i = 0; i < e.n_jobs; i++) t_sae += e.saes[i].splice.t_sae, t_tail += e.saes[i].t_tail;
    ms_runrec_time(&app->rec, "sae_encode_decode", t_sae);
    ms_runrec_time(&app->rec, "spliced_forward", t_tail);
    const double N = e.sums[EVAL_GLOB_TOKENS];
    ms_runrec_fact(&app->rec, "eval.tokens", "%.0f (%lld contexts x %d, held-out split)", N,
                   (long long)e.n_ctx, e.T);
    ms_runrec_fact(&app->rec, "eval.tokens_per_s", "%.1f", seconds > 0 ? N / seconds : 0.0);
    app_eval_result *res = calloc((size_t)e.n_jobs, sizeof *res);
    if (!res) st = oom(err, "the results");
    for (int i = 0; i < e.n_jobs && !st; i++) {
        eval_sae *s = &e.saes[i];
        app_eval_derive(&res[i], e.sums, e.hooks[s->hook].acc, s->splice.acc, s->sae.hp.d_in,
                       s->sae.hp.d_sae, app->cfg.sae.ultralow_density, app->cfg.sae.rare_density);
        const app_eval_result *r = &res[i];
        char key[80]; /* runrec keys hold 63 characters: longer names are cut there */
        snprintf(key, sizeof key, "eval.%s", s->job->name);
        ms_runrec_fact(&app->rec, key,
                       "L_clean %.5f L_sae %.5f L_zero %.5f recovered %.4f KL %.5f MSE %.4g "
                       "FVU %.4f L0 %.2f dead %lld ultralow %lld rare %lld",
                       r->loss_clean, r->loss_sae, r->loss_zero, r->loss_recovered, r->kl, r->mse,
                       r->fvu, r->l0, (long long)r->features.dead, (long long)r->features.ultralow,
                       (long long)r->features.rare);
        if (comm->rank == 0) st = app_eval_write(&e, s, r, seconds, err);
    }
    st = ms_comm_agree(comm, st, err);
    if (!st) {
        for (int i = 0; i < e.n_jobs; i++) {
            const app_eval_result *r = &res[i];
            const eval_sae *s = &e.saes[i];
            char hn[96];
            ms_hook_name(e.hooks[s->hook].hook, hn, sizeof hn);
            ms_log("eval: %s (%s, %lld features at %s): L_clean %.4f  L_sae %.4f  L_zero %.4f  "
                   "loss recovered %.4f  KL %.4f  MSE %.4g  FVU %.4f  cos %.4f  L2 ratio %.4f  "
                   "L0 %.2f  L1 %.4g  dead %lld  ultralow %lld  rare %lld  dense %lld; neurons: L0 %.1f, "
                   "dead %lld of %lld -> %s/eval.json",
                   s->job->name, s->info.architecture, (long long)s->sae.hp.d_sae, hn,
                   r->loss_clean, r->loss_sae, r->loss_zero, r->loss_recovered, r->kl, r->mse,
                   r->fvu, r->cos, r->l2_ratio, r->l0, r->l1, (long long)r->features.dead,
                   (long long)r->features.ultralow, (long long)r->features.rare, (long long)r->features.dense, r->neuron_l0,
                   (long long)r->neurons.dead, (long long)r->neurons.n_units, s->job->dir);
        }
        if (e.n_jobs > 1) {
            ms_log("eval: %-16s %8s %8s %8s %9s %8s %9s %7s %7s %6s %8s %6s", "sae", "d_sae",
                   "L_sae", "L_zero", "recovered", "KL", "MSE", "FVU", "L0", "dead", "ultralow", "rare");
            for (int i = 0; i < e.n_jobs; i++) {
                const app_eval_result *r = &res[i];
                ms_log("eval: %-16s %8lld %8.4f %8.4f %9.4f %8.4f %9.3g %7.4f %7.2f %6lld %8lld %6lld",
                       e.saes[i].job->name, (long long)e.saes[i].sae.hp.d_sae, r->loss_sae,
                       r->loss_zero, r->loss_recovered, r->kl, r->mse, r->fvu, r->l0,
                       (long long)r->features.dead, (long long)r->features.ultralow,
                       (long long)r->features.rare);
            }
        }
        ms_log("eval: %.0f tokens in %.1fs (%.0f tokens/s over %d rank(s); clean forward %.1fs, "
               "zero ablation %.1fs, spliced forwards %.1fs of which SAE %.1fs, on rank 0)",
               N, seconds, N / seconds, comm->size, e.t_clean, e.t_zero, t_tail, t_sae);
    }
    free(res);
done:
    evaluator_free(&e);
    return st;
}
