/* `monosem train-model job.yaml`: data-parallel training of the transformer on token shards,
 * with JSON-lines losses, a unigram baseline, exact checkpoint/resume and the final model
 * (the step loop is in train_model_steps.c). */
#include "train_model.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ the run */

static void trainer_free(trainer *t)
{
    if (t->log) fclose(t->log);
    free(t->unigram);
    free(t->win);
    free(t->x);
    free(t->y);
    ms_model_params_unbind(&t->gv);
    free(t->grads);
    free(t->adam_m);
    free(t->adam_v);
    ms_model_backbuf_free(&t->bb);
    ms_model_acts_free(&t->acts);
    ms_model_free(&t->m);
    ms_tokset_close(&t->train);
    ms_tokset_close(&t->heldout);
    free(t->job_keys);
    free(t->train_dir);
    free(t->ckpt_path);
    free(t->log_path);
}

static void *xcalloc(size_t n, size_t sz, ms_status *st, ms_err *err)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p && *st == MS_OK) *st = ms_err_set(err, MS_ERR_NOMEM, "train-model: out of memory");
    return p;
}

/* The job keys a resume compares one by one (ms_config_result_diff names the changed ones;
 * cadence, checkpoint interval and paths may change). */
static const char *const result_scopes[] = {"run.seed", "corpus.context", "model.n_layers", "model.d_model",
                                            "model.d_mlp", "model.n_heads", "model.d_head", "model.n_ctx",
                                            "model.act_fn", "model.normalization", "model.eps", "train_model.",
                                            NULL};

/* What else must match for a checkpoint to be resumed: the model shape (with the vocabulary)
 * and the token shards' content. v2 (checkpoints without job_keys) also hashed every
 * train_model key. */
static void run_fingerprint(const trainer *t, const char *tokens_fp, int version, char out[17])
{
    const ms_config *c = t->cfg;
    const char *tag = version == 2 ? "monosem-train-model-v2" : "monosem-train-model-v3";
    uint64_t h = ms_fnv1a64(tag, 22, 0); /* v2: Feistel data order; v3: keys compared apart */
    h = ms_fnv1a64(&t->m.cfg, sizeof t->m.cfg, h);
    /* the numeric settings (train_model.dir, a path, and seed, hashed below, are not bytes of
     * the run's identity) */
    if (version == 2)
        h = ms_fnv1a64(&c->train_model, (size_t)((const char *)&c->train_model.dir - (const char *)&c->train_model), h);
    int64_t v[2] = {c->corpus.context, c->train_model.seed ? c->train_model.seed : c->run.seed};
    h = ms_fnv1a64(v, sizeof v, h);
    h = ms_fnv1a64(tokens_fp, strlen(tokens_fp), h);
    snprintf(out, 17, "%016" PRIx64, h);
}

/* The "job_keys" metadata of a checkpoint (malloc'd; NULL if it has none: an older file). */
static char *ckpt_job_keys(const char *path)
{
    ms_safetensors f;
    char *k = NULL;
    if (ms_safetensors_open(&f, path, NULL) != MS_OK) return NULL;
    const char *v = ms_safetensors_meta(&f, "job_keys");
    if (v) k = strdup(v);
    ms_safetensors_close(&f);
    return k;
}

/* Unigram log-probabilities from the whole train split (each rank counts a slice). */
static ms_status unigram_init(trainer *t, ms_err *err)
{
    const int V = t->m.cfg.d_vocab;
    int64_t *counts = calloc((size_t)V, sizeof *counts);
    int32_t *blk = malloc((size_t)1 << 22);
    t->unigram = calloc((size_t)V, sizeof *t->unigram);
    ms_status st = (!counts || !blk || !t->unigram) ? ms_err_set(err, MS_ERR_NOMEM, "train-model: out of memory")
                                                    : MS_OK;
    int64_t lo = 0, hi = 0;
    ms_shard_range(t->train.count, t->comm->rank, t->comm->size, &lo, &hi);
    const int64_t nb = ((int64_t)1 << 22) / 4;
    for (int64_t p = lo; p < hi && st == MS_OK; p += nb) {
        int64_t n = hi - p < nb ? hi - p : nb;
        st = ms_tokset_read(&t->train, p, n, blk, err);
        for (int64_t i = 0; st == MS_OK && i < n; i++) {
            if (blk[i] < 0 || blk[i] >= V)
                st = ms_err_set(err, MS_ERR_FORMAT, "train-model: token %d at %" PRId64 " outside the vocabulary (%d)",
                                blk[i], p + i, V);
            else
                counts[blk[i]]++;
        }
    }
    st = ms_comm_agree(t->comm, st, err);
    if (st == MS_OK) st = ms_comm_allreduce_i64(t->comm, counts, (size_t)V, err);
    if (st == MS_OK) ms_train_unigram_logprobs(t->unigram, counts, V);
    free(counts);
    free(blk);
    return st;
}

/* Keeps the log lines of steps <= step (a resumed run rewrites what came after). Rank 0. */
static ms_status log_open(trainer *t, const char *path, int64_t step, ms_err *err)
{
    char *text = NULL;
    size_t len = 0;
    size_t keep = 0;
    if (step > 0 && ms_file_read_all(path, &text, &len, NULL) == MS_OK) {
        size_t pos = 0;
        while (pos < len) {
            char *nl = memchr(text + pos, '\n', len - pos);
            if (!nl) break; /* a torn last line is dropped */
            long long s = -1;
            if (sscanf(text + pos, "{\"step\":%lld", &s) != 1 || s > step) break;
            pos = (size_t)(nl - text) + 1;
            keep = pos;
        }
    }
    t->log = fopen(path, "wb");
    if (!t->log) {
        free(text);
        return ms_err_set(err, MS_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    if (keep) fwrite(text, 1, keep, t->log);
    fflush(t->log);
    free(text);
    return MS_OK;
}

/* model B differs from A by this seed only (the held-out split keeps run.seed) */
static int64_t run_seed(const ms_config *cfg) { return cfg->train_model.seed ? cfg->train_model.seed : cfg->run.seed; }

/* Paths, threads, signals; the token splits, the model and every buffer; the unigram
 * baseline. *mc gets the model shape. COLLECTIVE. */
static ms_status trainer_setup(trainer *t, ms_model_config *mc, ms_err *err)
{
    const ms_config *cfg = t->cfg;
    const ms_comm *comm = t->comm;
    ms_status st = MS_OK;
    t->train_dir = strdup(cfg->train_model.dir);
    t->ckpt_path = t->train_dir ? ms_path_join(t->train_dir, "checkpoint.safetensors") : NULL;
    t->log_path = t->train_dir ? ms_path_join(t->train_dir, "log.jsonl") : NULL;
    if (!t->ckpt_path || !t->log_path) st = ms_err_set(err, MS_ERR_NOMEM, "train-model: out of memory");
    t->threads = ms_blas_threads_set(comm, cfg->run.blas_threads);
    ms_signals_install(); /* SIGTERM/SIGINT/SIGUSR1: checkpoint at the next step, exit 75 */
    const int64_t seed = run_seed(cfg);

    /* ---- data and model */
    if (st == MS_OK) st = ms_tokset_open(&t->train, cfg->corpus.token_dir, "train", err);
    if (st == MS_OK) st = ms_tokset_open(&t->heldout, cfg->corpus.token_dir, "heldout", err);
    t->T = (int)cfg->corpus.context;
    t->Bg = (int)cfg->train_model.batch;
    t->Bcap = (t->Bg + comm->size - 1) / comm->size;
    ms_shard_range(t->Bg, comm->rank, comm->size, &t->lo, &t->hi);
    *mc = (ms_model_config){.n_layers = (int)cfg->model.n_layers,
                            .d_model = (int)cfg->model.d_model,
                            .d_mlp = (int)cfg->model.d_mlp,
                            .n_heads = (int)cfg->model.n_heads,
                            .d_head = (int)cfg->model.d_head,
                            .n_ctx = (int)cfg->model.n_ctx,
                            .d_vocab = t->train.vocab_size,
                            .act_fn = cfg->model.act_fn,
                            .normalization = cfg->model.normalization,
                            .eps = (float)cfg->model.eps};
    if (st == MS_OK) {
        t->n_ctx_train = ms_tokset_n_contexts(&t->train, t->T, true);
        if (t->T > mc->n_ctx)
            st = ms_err_set(err, MS_ERR_CONFIG, "%s: corpus.context %d exceeds model.n_ctx %d", cfg->path, t->T,
                            mc->n_ctx);
        else if (mc->act_fn == MS_ACT_SOLU_LN)
            st = ms_err_set(err, MS_ERR_UNSUPPORTED, "%s: model.act_fn solu_ln cannot be trained here (relu, gelu, gelu_new)",
                            cfg->path);
        else if (t->Bg < comm->size)
            st = ms_err_set(err, MS_ERR_CONFIG, "%s: train_model.batch %d is smaller than the %d ranks", cfg->path,
                            t->Bg, comm->size);
        else if (t->n_ctx_train < 1)
            st = ms_err_set(err, MS_ERR_STATE, "%s: the train split has %" PRId64 " tokens, fewer than one context of %d",
                            cfg->corpus.token_dir, t->train.count, t->T + 1);
        else if (ms_tokset_n_contexts(&t->heldout, t->T, true) < 1)
            ms_log("train-model: warning: the held-out split of %s has no full context of %d tokens: no held-out "
                   "evaluation (raise corpus.heldout_fraction)", cfg->corpus.token_dir, t->T + 1);
    }
    if (st == MS_OK) st = ms_model_init(&t->m, mc, err);
    if (st == MS_OK) st = ms_model_acts_init(&t->acts, mc, t->Bcap, t->T, 0, err);
    if (st == MS_OK) st = ms_model_backbuf_init(&t->bb, mc, t->Bcap, t->T, err);
    size_t np = t->m.n_params;
    if (st == MS_OK) {
        t->grads = xcalloc(np + 2, sizeof(float), &st, err);
        t->adam_m = xcalloc(np, sizeof(float), &st, err);
        t->adam_v = xcalloc(np, sizeof(float), &st, err);
        t->win = xcalloc((size_t)t->T + 1, sizeof(int32_t), &st, err);
        t->x = xcalloc((size_t)t->Bcap * t->T, sizeof(int32_t), &st, err);
        t->y = xcalloc((size_t)t->Bcap * t->T, sizeof(int32_t), &st, err);
        train_model_order_init(&t->order, t->n_ctx_train, (uint64_t)seed);
    }
    if (st == MS_OK) st = ms_model_params_bind(mc, t->grads, &t->gv, err);
    st = ms_comm_agree(comm, st, err);
    if (st != MS_OK) return st;
    return unigram_init(t, err);
}

/* Loads checkpoint use_path into the model and AdamW moments and checks it belongs to this
 * job (keys, fingerprint fp2 for v2 files) and is in range; sets t->step. Every rank. */
static ms_status resume_load(trainer *t, const char *use_path, const char *fp2, ms_err *err)
{
    const ms_config *cfg = t->cfg;
    const char *train_dir = t->train_dir;
    ms_train_ckpt_info info;
    ms_status st = ms_train_checkpoint_load(use_path, &t->m, t->adam_m, t->adam_v, &info, err);
    char *saved_keys = st == MS_OK ? ckpt_job_keys(use_path) : NULL;
    if (st == MS_OK && saved_keys) {
        char hint[512];
        snprintf(hint, sizeof hint, "restore them, or delete %s to start over", train_dir);
        st = ms_config_result_diff(cfg, result_scopes, saved_keys, use_path, hint, err);
    }
    if (st == MS_OK && strcmp(info.fingerprint, saved_keys ? t->fp : fp2) != 0)
        st = ms_err_set(err, MS_ERR_STATE,
                        "%s: checkpoint of a run with another model shape or other token shards "
                        "(fingerprint %s, this job %s); delete %s to start over",
                        use_path, info.fingerprint, saved_keys ? t->fp : fp2, train_dir);
    free(saved_keys);
    /* state values in range: a step past the end or a data position that is not
     * step x batch is a damaged file, not something to continue from */
    if (st == MS_OK && (info.data_pos % t->Bg != 0 || info.data_pos / t->Bg != info.step))
        st = ms_err_set(err, MS_ERR_FORMAT,
                        "%s: corrupt checkpoint state: data_position %" PRId64 " at step %" PRId64
                        " (expected step x batch %d); delete %s to start over",
                        use_path, info.data_pos, info.step, t->Bg, train_dir);
    if (st == MS_OK && info.step > cfg->train_model.steps)
        st = ms_err_set(err, MS_ERR_STATE, "%s: checkpoint at step %" PRId64 " is past train_model.steps %" PRId64
                        "; delete %s to start over", use_path, info.step, cfg->train_model.steps, train_dir);
    if (st == MS_OK) {
        t->step = info.step;
        if (info.n_ranks != t->comm->size)
            ms_log("train-model: resuming a %d-rank checkpoint on %d ranks: results will match to "
                   "float tolerance, not bitwise", info.n_ranks, t->comm->size);
        if (t->step == cfg->train_model.steps)
            ms_log("train-model: already complete at step %" PRId64 " (nothing to train): the model is written "
                   "from %s and evaluated once; delete %s to train again", t->step, use_path, train_dir);
        else
            ms_log("train-model: resuming from %s at step %" PRId64, use_path, t->step);
    }
    return st;
}

/* Fresh start or resume (rank 0 decides; every rank reads the same file), then the log opened
 * at the starting step. COLLECTIVE. */
static ms_status trainer_start(trainer *t, ms_err *err)
{
    const ms_config *cfg = t->cfg;
    const ms_comm *comm = t->comm;
    char tokens_fp[17] = "", fp2[17];
    ms_corpus_manifest_fingerprint(cfg->corpus.token_dir, tokens_fp);
    run_fingerprint(t, tokens_fp, 3, t->fp);
    run_fingerprint(t, tokens_fp, 2, fp2);
    t->job_keys = ms_config_result_keys(cfg, result_scopes);
    if (!t->job_keys) return ms_err_set(err, MS_ERR_NOMEM, "train-model: out of memory");
    /* rank 0 decides: 0 fresh, 1 the checkpoint, 2 its .prev (the latest is corrupt) */
    int32_t resume = 0;
    ms_status st = MS_OK;
    if (comm->rank == 0) {
        int use = 0;
        st = ms_ckpt_pick(t->ckpt_path, &use, err);
        resume = use;
    }
    st = ms_comm_agree(comm, st, err);
    if (st == MS_OK) st = ms_comm_bcast(comm, &resume, sizeof resume, 0, err);
    if (st != MS_OK) return st;
    if (resume) {
        char prev[4096];
        snprintf(prev, sizeof prev, "%s.prev", t->ckpt_path);
        st = resume_load(t, resume == 2 ? prev : t->ckpt_path, fp2, err);
    } else {
        ms_model_init_random(&t->m, (uint64_t)run_seed(cfg), 0.02f);
    }
    if (st == MS_OK && comm->rank == 0) {
        st = ms_mkdirs(t->train_dir, err);
        if (st == MS_OK) st = log_open(t, t->log_path, t->step, err);
    }
    return ms_comm_agree(comm, st, err);
}

/* The final model (rank 0 saves and checks it reloads identically), a held-out evaluation if
 * the loop ran none, and the run record's facts. COLLECTIVE. */
static ms_status trainer_finish(app_ctx *app, trainer *t, ms_err *err)
{
    const ms_config *cfg = t->cfg;
    const ms_comm *comm = t->comm;
    const size_t np = t->m.n_params;
    const int64_t steps = cfg->train_model.steps;
    const int64_t tok_per_step = (int64_t)t->Bg * t->T;
    ms_status st = MS_OK;
    if (comm->rank == 0) {
        st = ms_model_save(&t->m, cfg->model.dir, err);
        /* the forward path must load exactly what was trained */
        ms_model back;
        memset(&back, 0, sizeof back);
        if (st == MS_OK) st = ms_model_load(&back, cfg->model.dir, err);
        if (st == MS_OK && (back.n_params != t->m.n_params ||
                            memcmp(back.params, t->m.params, np * sizeof(float)) != 0))
            st = ms_err_set(err, MS_ERR_STATE, "%s: the saved model does not reload identically", cfg->model.dir);
        ms_model_free(&back); /* zeroed after a failed load: safe */
    }
    st = ms_comm_agree(comm, st, err);
    if (st != MS_OK) return st;
    if (isnan(t->last_eval)) { /* resumed at the end, or 0 steps (the control): evaluate once for the record */
        int64_t n_tok = 0;
        st = train_model_evaluate(t, &t->last_eval, &t->last_uni, &n_tok, err);
        if (st != MS_OK) return st;
        if (steps == 0 && comm->rank == 0 && n_tok > 0) { /* the log's only line: the untrained model */
            fprintf(t->log, "{\"step\":0,\"split\":\"heldout\",\"loss\":%.6f,\"unigram_loss\":%.6f,"
                            "\"tokens\":%" PRId64 "}\n", t->last_eval, t->last_uni, n_tok);
            fflush(t->log);
        }
    }
    if (isnan(t->last_eval))
        ms_log("train-model: wrote %s (no held-out evaluation)", cfg->model.dir);
    else
        ms_log("train-model: wrote %s (heldout %.4f nats/token vs unigram %.4f)", cfg->model.dir, t->last_eval,
               t->last_uni);
    ms_runrec_fact(&app->rec, "train_model.model_dir", "%s", cfg->model.dir);
    ms_runrec_fact(&app->rec, "invariant.params_identical_across_ranks", "checked at every checkpoint (%d ranks)",
                   comm->size);
    ms_runrec_fact(&app->rec, "invariant.model_reloads_identically", "true");
    ms_runrec_fact(&app->rec, "train_model.steps", "%" PRId64, steps);
    if (!isnan(t->last_loss)) ms_runrec_fact(&app->rec, "train_model.final_train_loss", "%.5f", t->last_loss);
    ms_runrec_fact(&app->rec, "train_model.heldout_loss_nats", "%.5f", t->last_eval);
    ms_runrec_fact(&app->rec, "train_model.unigram_loss_nats", "%.5f", t->last_uni);
    if (t->steps_run > 0 && t->t_step + t->t_comm > 0)
        ms_runrec_fact(&app->rec, "train_model.tokens_per_s", "%.0f",
                       (double)(t->steps_run * tok_per_step) / (t->t_step + t->t_comm));
    ms_runrec_time(&app->rec, "train_model.step", t->t_step);
    ms_runrec_time(&app->rec, "train_model.allreduce", t->t_comm);
    ms_runrec_time(&app->rec, "train_model.eval", t->t_eval);
    ms_runrec_time(&app->rec, "train_model.checkpoint", t->t_ckpt);
    return MS_OK;
}

static ms_status train_model_one(app_ctx *app, ms_err *err)
{
    trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.cfg = &app->cfg;
    tr.comm = &app->comm;
    tr.last_loss = tr.last_eval = tr.last_uni = NAN;
    ms_model_config mc;
    ms_status st = trainer_setup(&tr, &mc, err);
    if (st == MS_OK) st = trainer_start(&tr, err);
    if (st == MS_OK) {
        const int64_t tok_per_step = (int64_t)tr.Bg * tr.T;
        ms_log("train-model: %d layer(s) d_model %d d_mlp %d heads %dx%d vocab %d ctx %d, %zu params; "
               "%" PRId64 " steps x %d contexts (%" PRId64 " tokens/step) on %d rank(s) x %d thread(s); "
               "train %" PRId64 " tokens (%" PRId64 " contexts), heldout %" PRId64 " tokens",
               mc.n_layers, mc.d_model, mc.d_mlp, mc.n_heads, mc.d_head, mc.d_vocab, tr.T, tr.m.n_params,
               tr.cfg->train_model.steps, tr.Bg, tok_per_step, tr.comm->size, tr.threads, tr.train.count,
               tr.n_ctx_train, tr.heldout.count);
        st = train_model_loop(&tr, err);
    }
    if (st == MS_OK) st = trainer_finish(app, &tr, err);
    trainer_free(&tr);
    return st;
}

/* Model A, then model B when the job has one (--only A|B picks one). */
ms_status app_stage_train_model(app_ctx *app, ms_err *err) { return app_job_each_model(app, train_model_one, err); }
