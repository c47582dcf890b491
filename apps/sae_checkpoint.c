/* Exact checkpoints of SAE training: write (rank 0, rotating), read back range-checked
 * against the job and the activations, verify (tools, tests, fuzzing). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sae_train.h"

#define CKPT_VERSION 1

void app_train_state_free(app_train_state *t)
{
    free(t->fire_count);
    free(t->fire_start);
    free(t->fire_prev);
    free(t->history);
    free(t->win_fired);
    memset(t, 0, sizeof *t);
}

ms_status app_train_state_alloc(app_train_state *t, int64_t d_sae, ms_err *err)
{
    t->fire_count = calloc((size_t)d_sae, sizeof *t->fire_count);
    t->fire_start = calloc((size_t)d_sae, sizeof *t->fire_start);
    t->fire_prev = calloc((size_t)(2 * d_sae), sizeof *t->fire_prev);
    t->win_fired = calloc((size_t)d_sae + 1, sizeof *t->win_fired); /* + 1: the rows, when saved */
    if (!t->fire_count || !t->fire_start || !t->fire_prev || !t->win_fired)
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory for %lld firing counters",
                          (long long)d_sae);
    return MS_OK;
}

ms_status app_train_state_history_add(app_train_state *t, int64_t step, int64_t n, ms_err *err)
{
    int64_t *h = realloc(t->history, (size_t)(t->n_hist + 1) * 2 * sizeof *h);
    if (!h) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    t->history = h;
    h[2 * t->n_hist] = step;
    h[2 * t->n_hist + 1] = n;
    t->n_hist++;
    return MS_OK;
}

enum {
    CK_VERSION, CK_STEP, CK_RNG_KEY, CK_RNG_CTR, CK_EPOCH, CK_WINDOW, CK_WSTART, CK_NEXT,
    CK_SKIPPED, CK_THRESH_SET, CK_TOKENS, CK_SCALE_BITS, CK_LOSSREF_BITS, CK_BATCH, CK_D_IN,
    CK_D_SAE, CK_ARCH, CK_N
};

/* What a resume compares: the job keys that can change the SAE (not cadence or paths) ... */
static const char *const result_scopes[] = {"run.seed", "sae.", NULL};

/* ... and the activations by content identity, not by path (a moved or re-linked file is the
 * same data; a regenerated one is not). */
static void acts_identity(const ms_actmeta *m, char *buf, size_t n)
{
    snprintf(buf, n, "%lld rows x %lld %s, context %lld, seed %lld, hook %s, model %.16s, config %s",
             (long long)m->n_rows, (long long)m->d, m->dtype == MS_DTYPE_F16 ? "float16" : "float32",
             (long long)m->context, (long long)m->seed, m->hook, m->model_sha256, m->config_hash);
}

ms_status app_sae_ckpt_write(const char *path, const ms_sae *sae, const app_train_state *t,
                            const ms_config *cfg, const ms_actmeta *am, int n_ranks, ms_err *err)
{
    int64_t s[CK_N] = {0};
    s[CK_VERSION] = CKPT_VERSION;
    s[CK_STEP] = sae->step;
    s[CK_RNG_KEY] = (int64_t)t->rng.key;
    s[CK_RNG_CTR] = (int64_t)t->rng.counter;
    s[CK_EPOCH] = t->pos.epoch;
    s[CK_WINDOW] = t->pos.window;
    s[CK_WSTART] = t->pos.window_start;
    s[CK_NEXT] = t->pos.next;
    s[CK_SKIPPED] = t->pos.skipped;
    s[CK_THRESH_SET] = sae->threshold_set;
    s[CK_TOKENS] = t->tokens;
    uint32_t fb;
    memcpy(&fb, &sae->input_scale, 4);
    s[CK_SCALE_BITS] = fb;
    memcpy(&s[CK_LOSSREF_BITS], &t->loss_ref, 8);
    s[CK_BATCH] = cfg->sae.batch;
    s[CK_D_IN] = sae->hp.d_in;
    s[CK_D_SAE] = sae->hp.d_sae;
    s[CK_ARCH] = sae->hp.arch;
    const int64_t np = (int64_t)sae->layout.n_params, ds = sae->hp.d_sae;
    int64_t hist0[2] = {0, 0};
    ms_safetensors_item items[] = {
        {"params", MS_SAFETENSORS_F32, 1, {np}, sae->params},
        {"adam_m", MS_SAFETENSORS_F32, 1, {np}, sae->adam_m},
        {"adam_v", MS_SAFETENSORS_F32, 1, {np}, sae->adam_v},
        {"since_fired", MS_SAFETENSORS_I64, 1, {ds}, sae->since_fired},
        {"fire_count", MS_SAFETENSORS_I64, 1, {ds}, t->fire_count},
        {"fire_start", MS_SAFETENSORS_I64, 1, {ds}, t->fire_start},
        {"fire_prev", MS_SAFETENSORS_I64, 2, {2, ds}, t->fire_prev},
        {"resample_window", MS_SAFETENSORS_I64, 1, {ds + 1}, t->win_fired},
        {"state", MS_SAFETENSORS_I64, 1, {CK_N}, s},
        {"resample_history", MS_SAFETENSORS_I64, 2, {t->n_hist, 2}, t->n_hist ? t->history : hist0},
    };
    char ranks[16];
    snprintf(ranks, sizeof ranks, "%d", n_ranks);
    char acts_id[512];
    acts_identity(am, acts_id, sizeof acts_id);
    char *keys = ms_config_result_keys(cfg, result_scopes);
    if (!keys) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    const char *meta[] = {"config_hash", cfg->hash, "arch", ms_enum_name("sae.arch", sae->hp.arch),
                          "n_ranks", ranks, "version", MS_VERSION_STRING, "result_keys", keys,
                          "activations_id", acts_id};
    /* the replaced checkpoint stays as .prev: the fallback if this one is found corrupt */
    ms_status st = ms_safetensors_write_rotate(path, items, (int)(sizeof items / sizeof items[0]), meta, 6, err);
    free(keys);
    return st;
}

/* Reads an I64 tensor of exactly n elements. */
static ms_status st_read_i64(const ms_safetensors *f, const char *name, int64_t n, int64_t *dst,
                             ms_err *err)
{
    const ms_safetensors_tensor *t = ms_safetensors_find(f, name);
    if (!t || t->dtype != MS_SAFETENSORS_I64 || (int64_t)t->numel != n)
        return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor %s: expected I64 with %lld elements",
                          f->path, name, (long long)n);
    if (n == 0) return MS_OK;
    if (fseeko(f->f, (off_t)(f->data_start + t->begin), SEEK_SET) != 0 ||
        fread(dst, 8, (size_t)n, f->f) != (size_t)n)
        return ms_err_set(err, MS_ERR_IO, "%s: tensor %s: short read", f->path, name);
    return MS_OK;
}

/* Every state value read back in range (a corrupt or hand-edited file must fail here, not
 * make the loop or the reader spin): s is the "state" tensor; the counters are already read. */
static ms_status state_check(const char *path, const int64_t *s, const ms_sae *sae,
                             const app_train_state *t, const ms_config *cfg, ms_err *err)
{
    const char *bad = NULL;
    float scale;
    uint32_t fb = (uint32_t)s[CK_SCALE_BITS];
    memcpy(&scale, &fb, 4);
    double lref;
    memcpy(&lref, &s[CK_LOSSREF_BITS], 8);
    if (s[CK_STEP] < 0 || s[CK_STEP] > INT64_MAX / cfg->sae.batch) bad = "step"; /* past sae.steps: the caller says so */
    else if (s[CK_EPOCH] < 0 || s[CK_WINDOW] < 0) bad = "reader epoch/window";
    else if (s[CK_WSTART] < 0 || s[CK_NEXT] < s[CK_WSTART] || s[CK_NEXT] != s[CK_STEP] * cfg->sae.batch)
        bad = "reader position";
    else if (s[CK_SKIPPED] < 0) bad = "skipped rows";
    else if (s[CK_THRESH_SET] != 0 && s[CK_THRESH_SET] != 1) bad = "threshold flag";
    else if (s[CK_TOKENS] < 0 || s[CK_TOKENS] > s[CK_STEP] * cfg->sae.batch) bad = "tokens";
    else if (s[CK_SCALE_BITS] < 0 || s[CK_SCALE_BITS] > (int64_t)UINT32_MAX || !isfinite(scale) || scale <= 0)
        bad = "input scale";
    else if (!isfinite(lref) || lref < 0) bad = "reference loss";
    for (int64_t j = 0; !bad && j < sae->hp.d_sae; j++)
        if (sae->since_fired[j] < 0 || t->fire_count[j] < 0 || t->fire_start[j] < 0 ||
            t->fire_start[j] > s[CK_TOKENS] || t->fire_count[j] > s[CK_TOKENS] - t->fire_start[j])
            bad = "firing counters";
    const int64_t wr = t->win_fired[sae->hp.d_sae];
    if (!bad && (wr < 0 || wr > s[CK_TOKENS])) bad = "resampling window rows";
    for (int64_t j = 0; !bad && j < sae->hp.d_sae; j++)
        if (t->win_fired[j] < 0 || t->win_fired[j] > wr) bad = "resampling window counters";
    for (int64_t i = 0; !bad && i < t->n_hist; i++)
        if (t->history[2 * i] < 1 || t->history[2 * i] > s[CK_STEP] || t->history[2 * i + 1] < 0 ||
            t->history[2 * i + 1] > sae->hp.d_sae)
            bad = "resample history";
    if (!bad) return MS_OK;
    return ms_err_set(err, MS_ERR_FORMAT,
                      "%s: corrupt checkpoint: %s out of range (step %lld of sae.steps %lld); "
                      "remove it or use another sae.out_dir",
                      path, bad, (long long)s[CK_STEP], (long long)cfg->sae.steps);
}

ms_status app_sae_ckpt_read(const char *path, ms_sae *sae, app_train_state *t, const ms_config *cfg,
                           const ms_actmeta *am, ms_err *err)
{
    ms_safetensors f;
    memset(&f, 0, sizeof f);
    ms_status st = ms_safetensors_open(&f, path, err);
    if (st) return st;
    const char *h = ms_safetensors_meta(&f, "config_hash"), *keys = ms_safetensors_meta(&f, "result_keys"),
               *ids = ms_safetensors_meta(&f, "activations_id");
    int64_t s[CK_N];
    char acts_id[512];
    acts_identity(am, acts_id, sizeof acts_id);
    if (keys) /* key by key: name what changed, allow what cannot change the result */
        st = ms_config_result_diff(cfg, result_scopes, keys, path,
                                   "restore them, or remove the checkpoint or use another sae.out_dir to start over",
                                   err);
    else if (!h || strcmp(h, cfg->hash) != 0) /* a checkpoint of an earlier version */
        st = ms_err_set(err, MS_ERR_STATE,
                        "%s: checkpoint from another job configuration (hash %s, this job %s): "
                        "remove it or use another sae.out_dir",
                        path, h ? h : "none", cfg->hash);
    if (!st && ids && strcmp(ids, acts_id) != 0)
        st = ms_err_set(err, MS_ERR_STATE,
                        "%s: sae.activations %s is not the data the checkpoint was trained on (checkpoint: %s; "
                        "this file: %s): remove the checkpoint or use another sae.out_dir to start over",
                        path, cfg->sae.activations, ids, acts_id);
    if (!st) st = st_read_i64(&f, "state", CK_N, s, err);
    if (!st && (s[CK_VERSION] != CKPT_VERSION || s[CK_D_IN] != sae->hp.d_in ||
                s[CK_D_SAE] != sae->hp.d_sae || s[CK_ARCH] != sae->hp.arch ||
                s[CK_BATCH] != cfg->sae.batch))
        st = ms_err_set(err, MS_ERR_STATE,
                        "%s: checkpoint shape (version %lld, d_in %lld, d_sae %lld, batch %lld) "
                        "does not match this run (d_in %lld, d_sae %lld, batch %lld)",
                        path, (long long)s[CK_VERSION], (long long)s[CK_D_IN],
                        (long long)s[CK_D_SAE], (long long)s[CK_BATCH], (long long)sae->hp.d_in,
                        (long long)sae->hp.d_sae, (long long)cfg->sae.batch);
    const int64_t np = (int64_t)sae->layout.n_params, ds = sae->hp.d_sae;
    const ms_safetensors_tensor *tt;
    const char *fl[3] = {"params", "adam_m", "adam_v"};
    float *dst[3] = {sae->params, sae->adam_m, sae->adam_v};
    for (int i = 0; i < 3 && !st; i++) {
        tt = ms_safetensors_find(&f, fl[i]);
        if (!tt || tt->dtype != MS_SAFETENSORS_F32 || (int64_t)tt->numel != np)
            st = ms_err_set(err, MS_ERR_FORMAT, "%s: tensor %s: expected F32 with %lld elements",
                            path, fl[i], (long long)np);
        else
            st = ms_safetensors_read_f32(&f, tt, dst[i], err);
    }
    if (!st) st = st_read_i64(&f, "since_fired", ds, sae->since_fired, err);
    if (!st) st = st_read_i64(&f, "fire_count", ds, t->fire_count, err);
    if (!st) st = st_read_i64(&f, "fire_start", ds, t->fire_start, err);
    if (!st && ms_safetensors_find(&f, "fire_prev")) /* absent in checkpoints before the window */
        st = st_read_i64(&f, "fire_prev", 2 * ds, t->fire_prev, err);
    if (!st && ms_safetensors_find(&f, "resample_window")) /* absent before the density criterion: zeros */
        st = st_read_i64(&f, "resample_window", ds + 1, t->win_fired, err);
    if (!st && (tt = ms_safetensors_find(&f, "resample_history")) && tt->ndim == 2) {
        int64_t nh = tt->shape[0];
        if (nh < 0 || (s[CK_STEP] >= 0 && nh > s[CK_STEP])) /* <= one resampling per step */
            st = ms_err_set(err, MS_ERR_FORMAT, "%s: corrupt checkpoint: %lld resample_history rows at step %lld",
                            path, (long long)nh, (long long)s[CK_STEP]);
    }
    if (!st && (tt = ms_safetensors_find(&f, "resample_history")) && tt->ndim == 2) {
        int64_t nh = tt->shape[0];
        free(t->history);
        t->history = malloc((size_t)(nh + 1) * 2 * sizeof *t->history);
        t->n_hist = nh;
        if (!t->history) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        if (!st) st = st_read_i64(&f, "resample_history", 2 * nh, t->history, err);
    }
    if (!st) st = state_check(path, s, sae, t, cfg, err);
    if (!st) {
        sae->step = s[CK_STEP];
        t->rng.key = (uint64_t)s[CK_RNG_KEY];
        t->rng.counter = (uint64_t)s[CK_RNG_CTR];
        t->pos.epoch = s[CK_EPOCH];
        t->pos.window = s[CK_WINDOW];
        t->pos.window_start = s[CK_WSTART];
        t->pos.next = s[CK_NEXT];
        t->pos.skipped = s[CK_SKIPPED];
        sae->threshold_set = s[CK_THRESH_SET] != 0;
        t->tokens = s[CK_TOKENS];
        uint32_t fb = (uint32_t)s[CK_SCALE_BITS];
        memcpy(&sae->input_scale, &fb, 4);
        memcpy(&t->loss_ref, &s[CK_LOSSREF_BITS], 8);
    }
    ms_safetensors_close(&f);
    return st;
}

ms_status app_sae_checkpoint_verify(const char *path, const ms_config *cfg, const ms_actmeta *acts,
                                   ms_err *err)
{
    ms_sae_hparams hp;
    app_sae_hparams_from_config(&hp, cfg, acts->d, cfg->sae.batch);
    ms_sae sae;
    memset(&sae, 0, sizeof sae);
    app_train_state t;
    memset(&t, 0, sizeof t);
    ms_status st = ms_sae_hparams_check(&hp, err);
    if (!st) st = ms_sae_init(&sae, &hp, err);
    if (!st) st = app_train_state_alloc(&t, hp.d_sae, err);
    if (!st) st = app_sae_ckpt_read(path, &sae, &t, cfg, acts, err);
    if (!st && sae.step > cfg->sae.steps)
        st = ms_err_set(err, MS_ERR_STATE, "%s: checkpoint at step %lld is past sae.steps %lld", path,
                        (long long)sae.step, (long long)cfg->sae.steps);
    ms_sae_free(&sae);
    app_train_state_free(&t);
    return st;
}
