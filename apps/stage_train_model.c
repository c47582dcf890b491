/* `monosem train-model job.yaml`: data-parallel training of the transformer on token shards,
 * with JSON-lines losses, a unigram baseline, exact checkpoint/resume and the final model. */
#include "app.h"
#include "monosem/model.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ data order */

/* Contexts are visited in a seeded permutation per epoch; global context g of the run is
 * perm_e(g mod n) with e = g / n. The permutation is a keyed 4-round Feistel network on the
 * smallest even power of two >= n, cycle-walked back into [0, n): O(1) memory whatever the
 * corpus size, and a pure function of (seed, g), so resume needs only the step. */
typedef struct data_order {
    int64_t n;
    int half;      /* bits per Feistel half */
    uint64_t seed;
} data_order;

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static void data_order_init(data_order *o, int64_t n, uint64_t seed)
{
    o->n = n;
    o->seed = seed;
    int bits = 2;
    while (bits < 62 && ((int64_t)1 << bits) < n) bits++;
    o->half = (bits + 1) / 2;
}

static uint64_t feistel(const data_order *o, uint64_t x, uint64_t key)
{
    const uint64_t mask = ((uint64_t)1 << o->half) - 1;
    uint64_t l = x >> o->half, r = x & mask;
    for (uint64_t round = 0; round < 4; round++) {
        uint64_t f = mix64(r ^ mix64(key + round)) & mask;
        uint64_t t = l ^ f;
        l = r;
        r = t;
    }
    return (l << o->half) | r;
}

static int64_t data_context(const data_order *o, int64_t g)
{
    uint64_t key = mix64(o->seed ^ mix64((uint64_t)(g / o->n) + 0x7472616eULL));
    uint64_t x = (uint64_t)(g % o->n);
    do x = feistel(o, x, key);
    while (x >= (uint64_t)o->n);
    return (int64_t)x;
}

/* ------------------------------------------------------------------ the run */

typedef struct trainer {
    const ms_config *cfg;
    const ms_comm *comm;
    ms_model m;
    ms_model_acts acts;
    ms_model_backbuf bb;
    float *grads; /* n_params + 2 tail floats: local loss sum, local error flag */
    float *adam_m, *adam_v;
    ms_model_params gv;
    ms_tokset train, heldout;
    int T, Bg, Bcap;
    int64_t lo, hi; /* this rank's rows of the global batch */
    int32_t *win, *x, *y;
    double *unigram; /* (V) log-probabilities from the train split */
    data_order order;
    FILE *log;
} trainer;

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
    if (ms_st_open(&f, path, NULL) != MS_OK) return NULL;
    const char *v = ms_st_meta(&f, "job_keys");
    if (v) k = strdup(v);
    ms_st_close(&f);
    return k;
}

/* Held-out loss of the model and of the unigram baseline on the same target tokens, in
 * nats/token. COLLECTIVE. */
static ms_status evaluate(trainer *t, double *loss, double *uni, int64_t *n_tok, ms_err *err)
{
    const ms_config *c = t->cfg;
    int64_t n_h = ms_tokset_n_contexts(&t->heldout, t->T, true);
    int64_t n_eval = c->train_model.eval_batches * t->Bg;
    if (n_eval > n_h) n_eval = n_h;
    int64_t lo, hi;
    ms_shard_range(n_eval, t->comm->rank, t->comm->size, &lo, &hi);
    double acc[3] = {0, 0, 0};
    ms_status st = MS_OK;
    for (int64_t i0 = lo; i0 < hi && st == MS_OK; i0 += t->Bcap) {
        int b = (int)(hi - i0 < t->Bcap ? hi - i0 : t->Bcap);
        for (int k = 0; k < b && st == MS_OK; k++) {
            int64_t ctx = (i0 + k) * n_h / n_eval; /* spread over the whole split */
            st = ms_tokset_context(&t->heldout, ctx, t->T, true, t->win, err);
            memcpy(t->x + (size_t)k * t->T, t->win, (size_t)t->T * sizeof(int32_t));
            memcpy(t->y + (size_t)k * t->T, t->win + 1, (size_t)t->T * sizeof(int32_t));
        }
        ms_forward_opts o = {.targets = t->y};
        if (st == MS_OK) st = ms_model_forward(&t->m, &t->acts, t->x, b, t->T, &o, err);
        if (st == MS_OK) {
            acc[0] += t->acts.mean_loss * (double)t->acts.n_loss;
            acc[2] += (double)t->acts.n_loss;
            for (int64_t k = 0; k < (int64_t)b * t->T; k++) acc[1] -= t->unigram[t->y[k]];
        }
    }
    st = ms_comm_agree(t->comm, st, err);
    if (st == MS_OK) st = ms_comm_allreduce_f64(t->comm, acc, 3, err);
    if (st != MS_OK) return st;
    *loss = acc[2] > 0 ? acc[0] / acc[2] : NAN;
    *uni = acc[2] > 0 ? acc[1] / acc[2] : NAN;
    *n_tok = (int64_t)acc[2];
    return MS_OK;
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
    if (st == MS_OK) ms_unigram_logprobs(t->unigram, counts, V);
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

/* Every rank must hold the same parameters (identical updates from identical reduced
 * gradients): compares a hash of the slab over ranks. COLLECTIVE. */
static ms_status check_replicas(const trainer *t, int64_t step, ms_err *err)
{
    uint64_t h = ms_fnv1a64(t->m.params, t->m.n_params * sizeof(float), 0);
    double parts[2] = {(double)(h >> 32), (double)(h & 0xffffffffu)};
    for (int k = 0; k < 2; k++) {
        double mn, avg, mx;
        ms_comm_minavgmax(t->comm, parts[k], &mn, &avg, &mx);
        if (mn != mx)
            return ms_err_set(err, MS_ERR_STATE, "train-model: parameters differ between ranks at step %" PRId64, step);
    }
    return MS_OK;
}

static ms_status train_model_one(ms_app *app, ms_err *err)
{
    const ms_config *cfg = &app->cfg;
    const ms_comm *comm = &app->comm;
    trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.cfg = cfg;
    tr.comm = comm;
    char *job_keys = NULL; /* this job's result keys, stored in every checkpoint */
    ms_status st = MS_OK;
    char *train_dir = strdup(cfg->train_model.dir);
    char *ckpt_path = train_dir ? ms_path_join(train_dir, "checkpoint.safetensors") : NULL;
    char *log_path = train_dir ? ms_path_join(train_dir, "log.jsonl") : NULL;
    if (!ckpt_path || !log_path) st = ms_err_set(err, MS_ERR_NOMEM, "train-model: out of memory");
    int threads = ms_blas_threads_set(comm, cfg->run.blas_threads);
    ms_signals_install(); /* SIGTERM/SIGINT/SIGUSR1: checkpoint at the next step, exit 75 */
    /* model B differs from A by this seed only (the held-out split keeps run.seed) */
    const int64_t seed = cfg->train_model.seed ? cfg->train_model.seed : cfg->run.seed;

    /* ---- data and model */
    if (st == MS_OK) st = ms_tokset_open(&tr.train, cfg->corpus.token_dir, "train", err);
    if (st == MS_OK) st = ms_tokset_open(&tr.heldout, cfg->corpus.token_dir, "heldout", err);
    tr.T = (int)cfg->corpus.context;
    tr.Bg = (int)cfg->train_model.batch;
    tr.Bcap = (tr.Bg + comm->size - 1) / comm->size;
    ms_shard_range(tr.Bg, comm->rank, comm->size, &tr.lo, &tr.hi);
    ms_model_config mc = {.n_layers = (int)cfg->model.n_layers,
                          .d_model = (int)cfg->model.d_model,
                          .d_mlp = (int)cfg->model.d_mlp,
                          .n_heads = (int)cfg->model.n_heads,
                          .d_head = (int)cfg->model.d_head,
                          .n_ctx = (int)cfg->model.n_ctx,
                          .d_vocab = tr.train.vocab_size,
                          .act_fn = cfg->model.act_fn,
                          .normalization = cfg->model.normalization,
                          .eps = (float)cfg->model.eps};
    int64_t n_ctx_train = 0;
    if (st == MS_OK) {
        n_ctx_train = ms_tokset_n_contexts(&tr.train, tr.T, true);
        if (tr.T > mc.n_ctx)
            st = ms_err_set(err, MS_ERR_CONFIG, "%s: corpus.context %d exceeds model.n_ctx %d", cfg->path, tr.T,
                            mc.n_ctx);
        else if (mc.act_fn == MS_ACT_SOLU_LN)
            st = ms_err_set(err, MS_ERR_UNSUPPORTED, "%s: model.act_fn solu_ln cannot be trained here (relu, gelu, gelu_new)",
                            cfg->path);
        else if (tr.Bg < comm->size)
            st = ms_err_set(err, MS_ERR_CONFIG, "%s: train_model.batch %d is smaller than the %d ranks", cfg->path,
                            tr.Bg, comm->size);
        else if (n_ctx_train < 1)
            st = ms_err_set(err, MS_ERR_STATE, "%s: the train split has %" PRId64 " tokens, fewer than one context of %d",
                            cfg->corpus.token_dir, tr.train.count, tr.T + 1);
        else if (ms_tokset_n_contexts(&tr.heldout, tr.T, true) < 1)
            ms_log("train-model: warning: the held-out split of %s has no full context of %d tokens: no held-out "
                   "evaluation (raise corpus.heldout_fraction)", cfg->corpus.token_dir, tr.T + 1);
    }
    if (st == MS_OK) st = ms_model_init(&tr.m, &mc, err);
    if (st == MS_OK) st = ms_model_acts_init(&tr.acts, &mc, tr.Bcap, tr.T, 0, err);
    if (st == MS_OK) st = ms_model_backbuf_init(&tr.bb, &mc, tr.Bcap, tr.T, err);
    size_t np = tr.m.n_params;
    if (st == MS_OK) {
        tr.grads = xcalloc(np + 2, sizeof(float), &st, err);
        tr.adam_m = xcalloc(np, sizeof(float), &st, err);
        tr.adam_v = xcalloc(np, sizeof(float), &st, err);
        tr.win = xcalloc((size_t)tr.T + 1, sizeof(int32_t), &st, err);
        tr.x = xcalloc((size_t)tr.Bcap * tr.T, sizeof(int32_t), &st, err);
        tr.y = xcalloc((size_t)tr.Bcap * tr.T, sizeof(int32_t), &st, err);
        data_order_init(&tr.order, n_ctx_train, (uint64_t)seed);
    }
    if (st == MS_OK) st = ms_model_params_bind(&mc, tr.grads, &tr.gv, err);
    st = ms_comm_agree(comm, st, err);
    if (st != MS_OK) goto done;
    st = unigram_init(&tr, err);
    if (st != MS_OK) goto done;

    /* ---- fresh start or resume (rank 0 decides; every rank reads the same file) */
    char tokens_fp[17] = "", fp[17], fp2[17];
    ms_corpus_manifest_fingerprint(cfg->corpus.token_dir, tokens_fp);
    run_fingerprint(&tr, tokens_fp, 3, fp);
    run_fingerprint(&tr, tokens_fp, 2, fp2);
    job_keys = ms_config_result_keys(cfg, result_scopes);
    if (!job_keys) {
        st = ms_err_set(err, MS_ERR_NOMEM, "train-model: out of memory");
        goto done;
    }
    /* rank 0 decides: 0 fresh, 1 the checkpoint, 2 its .prev (the latest is corrupt) */
    int32_t resume = 0;
    if (comm->rank == 0) {
        int use = 0;
        st = ms_ckpt_pick(ckpt_path, &use, err);
        resume = use;
    }
    st = ms_comm_agree(comm, st, err);
    if (st == MS_OK) st = ms_comm_bcast(comm, &resume, sizeof resume, 0, err);
    if (st != MS_OK) goto done;
    int64_t step = 0;
    if (resume) {
        ms_train_ckpt_info info;
        char prev[4096];
        snprintf(prev, sizeof prev, "%s.prev", ckpt_path);
        const char *use_path = resume == 2 ? prev : ckpt_path;
        st = ms_train_checkpoint_load(use_path, &tr.m, tr.adam_m, tr.adam_v, &info, err);
        char *saved_keys = st == MS_OK ? ckpt_job_keys(use_path) : NULL;
        if (st == MS_OK && saved_keys) {
            char hint[512];
            snprintf(hint, sizeof hint, "restore them, or delete %s to start over", train_dir);
            st = ms_config_result_diff(cfg, result_scopes, saved_keys, use_path, hint, err);
        }
        if (st == MS_OK && strcmp(info.fingerprint, saved_keys ? fp : fp2) != 0)
            st = ms_err_set(err, MS_ERR_STATE,
                            "%s: checkpoint of a run with another model shape or other token shards "
                            "(fingerprint %s, this job %s); delete %s to start over",
                            use_path, info.fingerprint, saved_keys ? fp : fp2, train_dir);
        free(saved_keys);
        /* state values in range: a step past the end or a data position that is not
         * step x batch is a damaged file, not something to continue from */
        if (st == MS_OK && (info.data_pos % tr.Bg != 0 || info.data_pos / tr.Bg != info.step))
            st = ms_err_set(err, MS_ERR_FORMAT,
                            "%s: corrupt checkpoint state: data_position %" PRId64 " at step %" PRId64
                            " (expected step x batch %d); delete %s to start over",
                            use_path, info.data_pos, info.step, tr.Bg, train_dir);
        if (st == MS_OK && info.step > cfg->train_model.steps)
            st = ms_err_set(err, MS_ERR_STATE, "%s: checkpoint at step %" PRId64 " is past train_model.steps %" PRId64
                            "; delete %s to start over", use_path, info.step, cfg->train_model.steps, train_dir);
        if (st == MS_OK) {
            step = info.step;
            if (info.n_ranks != comm->size)
                ms_log("train-model: resuming a %d-rank checkpoint on %d ranks: results will match to "
                       "float tolerance, not bitwise", info.n_ranks, comm->size);
            if (step == cfg->train_model.steps)
                ms_log("train-model: already complete at step %" PRId64 " (nothing to train): the model is written "
                       "from %s and evaluated once; delete %s to train again", step, use_path, train_dir);
            else
                ms_log("train-model: resuming from %s at step %" PRId64, use_path, step);
        }
    } else {
        ms_model_init_random(&tr.m, (uint64_t)seed, 0.02f);
    }
    if (st == MS_OK && comm->rank == 0) {
        st = ms_mkdirs(train_dir, err);
        if (st == MS_OK) st = log_open(&tr, log_path, step, err);
    }
    st = ms_comm_agree(comm, st, err);
    if (st != MS_OK) goto done;

    const int64_t steps = cfg->train_model.steps;
    const int64_t tok_per_step = (int64_t)tr.Bg * tr.T;
    ms_log("train-model: %d layer(s) d_model %d d_mlp %d heads %dx%d vocab %d ctx %d, %zu params; "
           "%" PRId64 " steps x %d contexts (%" PRId64 " tokens/step) on %d rank(s) x %d thread(s); "
           "train %" PRId64 " tokens (%" PRId64 " contexts), heldout %" PRId64 " tokens",
           mc.n_layers, mc.d_model, mc.d_mlp, mc.n_heads, mc.d_head, mc.d_vocab, tr.T, np, steps, tr.Bg,
           tok_per_step, comm->size, threads, tr.train.count, n_ctx_train, tr.heldout.count);
    ms_progress prog;
    ms_progress_init(&prog, "train-model", "steps", (double)steps, cfg->run.log_every_s);
    prog.done = prog.done0 = (double)step;
    const float scale = 1.0f / (float)tok_per_step;
    const int bl = (int)(tr.hi - tr.lo);
    double t_step = 0, t_comm = 0, t_eval = 0, t_ckpt = 0;
    double t_window = ms_time_now();
    int64_t window_steps = 0, steps_run = 0;
    double last_loss = NAN, last_eval = NAN, last_uni = NAN;

    while (step < steps) {
        double t0 = ms_time_now();
        ms_status local = MS_OK;
        /* this rank's rows of global step `step` */
        for (int k = 0; k < bl && local == MS_OK; k++) {
            int64_t g = step * tr.Bg + tr.lo + k;
            int64_t ctx = data_context(&tr.order, g);
            local = ms_tokset_context(&tr.train, ctx, tr.T, true, tr.win, err);
            memcpy(tr.x + (size_t)k * tr.T, tr.win, (size_t)tr.T * sizeof(int32_t));
            memcpy(tr.y + (size_t)k * tr.T, tr.win + 1, (size_t)tr.T * sizeof(int32_t));
        }
        memset(tr.grads, 0, (np + 2) * sizeof(float));
        ms_forward_opts o = {.targets = tr.y};
        if (local == MS_OK && bl > 0) local = ms_model_forward(&tr.m, &tr.acts, tr.x, bl, tr.T, &o, err);
        if (local == MS_OK && bl > 0)
            local = ms_model_backward(&tr.m, &tr.acts, &tr.bb, &tr.gv, tr.x, tr.y, scale, err);
        if (local == MS_OK && bl > 0) tr.grads[np] = (float)(tr.acts.mean_loss * (double)tr.acts.n_loss);
        if (local != MS_OK) tr.grads[np + 1] = 1.0f;
        double t1 = ms_time_now();
        /* the one collective of a step: gradients, loss and error flag together */
        st = ms_comm_allreduce_f32(comm, tr.grads, np + 2, err);
        double t2 = ms_time_now();
        if (st != MS_OK) goto done;
        if (tr.grads[np + 1] != 0.0f) {
            st = ms_comm_agree(comm, local != MS_OK ? local : MS_OK, err);
            if (st == MS_OK) st = ms_err_set(err, MS_ERR_STATE, "train-model: a rank failed at step %" PRId64, step);
            goto done;
        }
        double loss = (double)tr.grads[np] / (double)tok_per_step;
        if (!isfinite(loss)) {
            st = ms_err_set(err, MS_ERR_NUMERIC, "train-model: loss is %g at step %" PRId64 " (lower train_model.lr?)",
                            loss, step);
            goto done;
        }
        double norm = ms_grad_norm(tr.grads, np);
        if (cfg->train_model.grad_clip > 0 && norm > cfg->train_model.grad_clip) {
            float f = (float)(cfg->train_model.grad_clip / norm);
            for (size_t i = 0; i < np; i++) tr.grads[i] *= f;
        }
        double lr = ms_lr_schedule(step, cfg->train_model.warmup_steps, steps, cfg->train_model.lr,
                                   cfg->train_model.min_lr_frac);
        for (int i = 0; i < tr.m.n_tensors; i++) {
            const ms_model_tensor *t = &tr.m.tensors[i];
            float wd = ms_model_tensor_decays(t) ? (float)cfg->train_model.weight_decay : 0.0f;
            ms_adamw_update(tr.m.params + t->offset, tr.grads + t->offset, tr.adam_m + t->offset,
                            tr.adam_v + t->offset, t->numel, (float)lr, (float)cfg->train_model.beta1,
                            (float)cfg->train_model.beta2, 1e-8f, wd, step + 1);
        }
        step++;
        steps_run++;
        window_steps++;
        last_loss = loss;
        t_step += (t1 - t0) + (ms_time_now() - t2);
        t_comm += t2 - t1;

        bool last = step == steps;
        const int stop_sig = last ? 0 : ms_comm_signal_agree(comm, step); /* any rank signalled */
        if (comm->rank == 0 && (step % cfg->train_model.log_every == 0 || last)) {
            double now = ms_time_now();
            double tps = (double)(window_steps * tok_per_step) / (now - t_window);
            fprintf(tr.log, "{\"step\":%" PRId64 ",\"split\":\"train\",\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.5g,"
                            "\"tokens\":%" PRId64 ",\"tokens_per_s\":%.1f}\n",
                    step, loss, lr, norm, step * tok_per_step, tps);
            fflush(tr.log);
            t_window = now;
            window_steps = 0;
        }
        if ((cfg->train_model.eval_every > 0 && step % cfg->train_model.eval_every == 0) || last) {
            double te = ms_time_now();
            int64_t n_tok = 0;
            st = evaluate(&tr, &last_eval, &last_uni, &n_tok, err);
            if (st != MS_OK) goto done;
            if (comm->rank == 0 && n_tok > 0) {
                fprintf(tr.log, "{\"step\":%" PRId64 ",\"split\":\"heldout\",\"loss\":%.6f,\"unigram_loss\":%.6f,"
                                "\"tokens\":%" PRId64 "}\n", step, last_eval, last_uni, n_tok);
                fflush(tr.log);
                ms_log("train-model: step %" PRId64 " train %.4f  heldout %.4f nats/token (unigram %.4f)", step,
                       loss, last_eval, last_uni);
            }
            t_eval += ms_time_now() - te;
            t_window += ms_time_now() - te; /* keep eval out of the tokens/s */
        }
        if ((cfg->train_model.checkpoint_every > 0 && step % cfg->train_model.checkpoint_every == 0) || last ||
            stop_sig) {
            double tc = ms_time_now();
            ms_train_ckpt_info info = {.step = step, .data_pos = step * tr.Bg, .n_ranks = comm->size};
            memcpy(info.fingerprint, fp, sizeof fp);
            info.job_keys = job_keys;
            st = check_replicas(&tr, step, err);
            if (st != MS_OK) goto done;
            ms_status cs = MS_OK;
            if (comm->rank == 0) cs = ms_train_checkpoint_save(ckpt_path, &tr.m, tr.adam_m, tr.adam_v, &info, err);
            st = ms_comm_agree(comm, cs, err);
            if (st != MS_OK) goto done;
            if (ms_testhook("checkpoint", step)) { /* test hook: fail right after this checkpoint */
                st = ms_err_set(err, MS_ERR_STATE, "train-model: stopped after the checkpoint at step %" PRId64
                                " (test hook)", step);
                goto done;
            }
            t_ckpt += ms_time_now() - tc;
            t_window += ms_time_now() - tc;
        }
        ms_progress_update(&prog, (double)step);
        if (stop_sig) {
            st = ms_err_set(err, MS_INTERRUPTED,
                            "train-model: %s: stopped at step %" PRId64 " of %" PRId64 " after writing %s; "
                            "rerun the same command to resume", ms_signal_name(stop_sig), step, steps, ckpt_path);
            goto done;
        }
    }
    ms_progress_finish(&prog);

    /* ---- the final model */
    if (comm->rank == 0) {
        st = ms_model_save(&tr.m, cfg->model.dir, err);
        /* the forward path must load exactly what was trained */
        ms_model back;
        memset(&back, 0, sizeof back);
        if (st == MS_OK) st = ms_model_load(&back, cfg->model.dir, err);
        if (st == MS_OK && (back.n_params != tr.m.n_params ||
                            memcmp(back.params, tr.m.params, np * sizeof(float)) != 0))
            st = ms_err_set(err, MS_ERR_STATE, "%s: the saved model does not reload identically", cfg->model.dir);
        ms_model_free(&back); /* zeroed after a failed load: safe */
    }
    st = ms_comm_agree(comm, st, err);
    if (st != MS_OK) goto done;
    if (isnan(last_eval)) { /* resumed at the end, or 0 steps (the control): evaluate once for the record */
        int64_t n_tok = 0;
        st = evaluate(&tr, &last_eval, &last_uni, &n_tok, err);
        if (st != MS_OK) goto done;
        if (steps == 0 && comm->rank == 0 && n_tok > 0) { /* the log's only line: the untrained model */
            fprintf(tr.log, "{\"step\":0,\"split\":\"heldout\",\"loss\":%.6f,\"unigram_loss\":%.6f,"
                            "\"tokens\":%" PRId64 "}\n", last_eval, last_uni, n_tok);
            fflush(tr.log);
        }
    }
    if (isnan(last_eval))
        ms_log("train-model: wrote %s (no held-out evaluation)", cfg->model.dir);
    else
        ms_log("train-model: wrote %s (heldout %.4f nats/token vs unigram %.4f)", cfg->model.dir, last_eval, last_uni);
    ms_runrec_fact(&app->rec, "train_model.model_dir", "%s", cfg->model.dir);
    ms_runrec_fact(&app->rec, "invariant.params_identical_across_ranks", "checked at every checkpoint (%d ranks)",
                   comm->size);
    ms_runrec_fact(&app->rec, "invariant.model_reloads_identically", "true");
    ms_runrec_fact(&app->rec, "train_model.steps", "%" PRId64, steps);
    if (!isnan(last_loss)) ms_runrec_fact(&app->rec, "train_model.final_train_loss", "%.5f", last_loss);
    ms_runrec_fact(&app->rec, "train_model.heldout_loss_nats", "%.5f", last_eval);
    ms_runrec_fact(&app->rec, "train_model.unigram_loss_nats", "%.5f", last_uni);
    if (steps_run > 0 && t_step + t_comm > 0)
        ms_runrec_fact(&app->rec, "train_model.tokens_per_s", "%.0f",
                       (double)(steps_run * tok_per_step) / (t_step + t_comm));
    ms_runrec_time(&app->rec, "train_model.step", t_step);
    ms_runrec_time(&app->rec, "train_model.allreduce", t_comm);
    ms_runrec_time(&app->rec, "train_model.eval", t_eval);
    ms_runrec_time(&app->rec, "train_model.checkpoint", t_ckpt);
done:
    free(job_keys);
    trainer_free(&tr);
    free(train_dir);
    free(ckpt_path);
    free(log_path);
    return st;
}

/* Model A, then model B when the job has one (--only A|B picks one). */
ms_status ms_stage_train_model(ms_app *app, ms_err *err) { return ms_job_each_model(app, train_model_one, err); }
