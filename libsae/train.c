/* The data-parallel SAE training loop: data stream, one grads allreduce per step, resampling,
 * metrics, exact checkpoints and resume, final HDF5 + SAELens outputs. */
#include "monosem/sae.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CKPT_VERSION 1
#define BLOWUP_FACTOR 1e3 /* loss above this x the first step's loss = divergence */

/* Everything besides the ms_sae that a resumed run needs to continue exactly. */
typedef struct train_state {
    ms_rng rng;           /* init + resampling draws (identical on every rank) */
    ms_streampos pos;     /* reader position at the checkpointed step */
    int64_t tokens;       /* rows trained on */
    double loss_ref;      /* first step's loss, for blow-up detection */
    int64_t *fire_count;  /* (d_sae) rows on which feature j fired since fire_start[j] */
    int64_t *fire_start;  /* (d_sae) tokens at which feature j's count was (re)started */
    int64_t *fire_prev;   /* (2, d_sae): fired rows and rows of feature j's last complete
                           * density window (0 rows: none yet); see densities() */
    int64_t *history;     /* (n_hist, 2): (step, n_resampled) */
    int64_t n_hist;
} train_state;

/* ------------------------------------------------------------------ checkpoints */

static void state_free(train_state *t)
{
    free(t->fire_count);
    free(t->fire_start);
    free(t->fire_prev);
    free(t->history);
    memset(t, 0, sizeof *t);
}

static ms_status state_alloc(train_state *t, int64_t d_sae, ms_err *err)
{
    t->fire_count = calloc((size_t)d_sae, sizeof *t->fire_count);
    t->fire_start = calloc((size_t)d_sae, sizeof *t->fire_start);
    t->fire_prev = calloc((size_t)(2 * d_sae), sizeof *t->fire_prev);
    if (!t->fire_count || !t->fire_start || !t->fire_prev)
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory for %lld firing counters",
                          (long long)d_sae);
    return MS_OK;
}

static ms_status history_add(train_state *t, int64_t step, int64_t n, ms_err *err)
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

static ms_status ckpt_write(const char *path, const ms_sae *sae, const train_state *t,
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
    ms_st_item items[] = {
        {"params", MS_ST_F32, 1, {np}, sae->params},
        {"adam_m", MS_ST_F32, 1, {np}, sae->adam_m},
        {"adam_v", MS_ST_F32, 1, {np}, sae->adam_v},
        {"since_fired", MS_ST_I64, 1, {ds}, sae->since_fired},
        {"fire_count", MS_ST_I64, 1, {ds}, t->fire_count},
        {"fire_start", MS_ST_I64, 1, {ds}, t->fire_start},
        {"fire_prev", MS_ST_I64, 2, {2, ds}, t->fire_prev},
        {"state", MS_ST_I64, 1, {CK_N}, s},
        {"resample_history", MS_ST_I64, 2, {t->n_hist, 2}, t->n_hist ? t->history : hist0},
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
    ms_status st = ms_st_write_rotate(path, items, (int)(sizeof items / sizeof items[0]), meta, 6, err);
    free(keys);
    return st;
}

/* Reads an I64 tensor of exactly n elements. */
static ms_status st_read_i64(const ms_safetensors *f, const char *name, int64_t n, int64_t *dst,
                             ms_err *err)
{
    const ms_st_tensor *t = ms_st_find(f, name);
    if (!t || t->dtype != MS_ST_I64 || (int64_t)t->numel != n)
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
                             const train_state *t, const ms_config *cfg, ms_err *err)
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

static ms_status ckpt_read(const char *path, ms_sae *sae, train_state *t, const ms_config *cfg,
                           const ms_actmeta *am, ms_err *err)
{
    ms_safetensors f;
    memset(&f, 0, sizeof f);
    ms_status st = ms_st_open(&f, path, err);
    if (st) return st;
    const char *h = ms_st_meta(&f, "config_hash"), *keys = ms_st_meta(&f, "result_keys"),
               *ids = ms_st_meta(&f, "activations_id");
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
    const ms_st_tensor *tt;
    const char *fl[3] = {"params", "adam_m", "adam_v"};
    float *dst[3] = {sae->params, sae->adam_m, sae->adam_v};
    for (int i = 0; i < 3 && !st; i++) {
        tt = ms_st_find(&f, fl[i]);
        if (!tt || tt->dtype != MS_ST_F32 || (int64_t)tt->numel != np)
            st = ms_err_set(err, MS_ERR_FORMAT, "%s: tensor %s: expected F32 with %lld elements",
                            path, fl[i], (long long)np);
        else
            st = ms_st_read_f32(&f, tt, dst[i], err);
    }
    if (!st) st = st_read_i64(&f, "since_fired", ds, sae->since_fired, err);
    if (!st) st = st_read_i64(&f, "fire_count", ds, t->fire_count, err);
    if (!st) st = st_read_i64(&f, "fire_start", ds, t->fire_start, err);
    if (!st && ms_st_find(&f, "fire_prev")) /* absent in checkpoints before the window */
        st = st_read_i64(&f, "fire_prev", 2 * ds, t->fire_prev, err);
    if (!st && (tt = ms_st_find(&f, "resample_history")) && tt->ndim == 2) {
        int64_t nh = tt->shape[0];
        if (nh < 0 || (s[CK_STEP] >= 0 && nh > s[CK_STEP])) /* <= one resampling per step */
            st = ms_err_set(err, MS_ERR_FORMAT, "%s: corrupt checkpoint: %lld resample_history rows at step %lld",
                            path, (long long)nh, (long long)s[CK_STEP]);
    }
    if (!st && (tt = ms_st_find(&f, "resample_history")) && tt->ndim == 2) {
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
    ms_st_close(&f);
    return st;
}

ms_status ms_sae_checkpoint_verify(const char *path, const ms_config *cfg, const ms_actmeta *acts,
                                   ms_err *err)
{
    ms_sae_hparams hp;
    ms_sae_hparams_from_config(&hp, cfg, acts->d, cfg->sae.batch);
    ms_sae sae;
    memset(&sae, 0, sizeof sae);
    train_state t;
    memset(&t, 0, sizeof t);
    ms_status st = ms_sae_hparams_check(&hp, err);
    if (!st) st = ms_sae_init(&sae, &hp, err);
    if (!st) st = state_alloc(&t, hp.d_sae, err);
    if (!st) st = ckpt_read(path, &sae, &t, cfg, acts, err);
    if (!st && sae.step > cfg->sae.steps)
        st = ms_err_set(err, MS_ERR_STATE, "%s: checkpoint at step %lld is past sae.steps %lld", path,
                        (long long)sae.step, (long long)cfg->sae.steps);
    ms_sae_free(&sae);
    state_free(&t);
    return st;
}

/* ------------------------------------------------------------------ metrics */

/* Training-time estimates (not the held-out numbers `monosem eval` measures). Feature j's
 * firing count runs over a window of `window` tokens (sae.dead_tokens) from fire_start[j]; when
 * the window is full it becomes fire_prev and a new one starts (resampling restarts it). The
 * density is that of the last complete window, or of the current partial one before the first
 * completes. dead = not fired in the last `window` tokens (since_fired); ultralow = alive with
 * density < ultralow. */
static void window_roll(train_state *t, int64_t d_sae, int64_t window)
{
    for (int64_t j = 0; j < d_sae; j++)
        if (t->tokens - t->fire_start[j] >= window) {
            t->fire_prev[j] = t->fire_count[j];
            t->fire_prev[d_sae + j] = t->tokens - t->fire_start[j];
            t->fire_count[j] = 0;
            t->fire_start[j] = t->tokens;
        }
}

static void densities(const ms_sae *sae, const train_state *t, double ultralow, int64_t dead_tokens,
                      float *log10_density, int64_t *n_dead, int64_t *n_ultralow)
{
    int64_t dead = 0, low = 0;
    const int64_t m = sae->hp.d_sae;
    for (int64_t j = 0; j < m; j++) {
        int64_t span = t->tokens - t->fire_start[j], cnt = t->fire_count[j];
        if (t->fire_prev[m + j] > 0) span = t->fire_prev[m + j], cnt = t->fire_prev[j];
        double dens = span > 0 ? (double)cnt / (double)span : 0.0;
        bool is_dead = sae->since_fired[j] >= dead_tokens;
        dead += is_dead;
        low += !is_dead && dens < ultralow;
        if (log10_density) log10_density[j] = (float)log10(dens + 1e-10);
    }
    *n_dead = dead;
    *n_ultralow = low;
}

/* Keeps the lines of metrics.jsonl with step <= last_step (a resumed run rewrites the rest). */
static void metrics_truncate(const char *path, int64_t last_step)
{
    char *text = NULL;
    size_t len = 0;
    if (ms_file_read_all(path, &text, &len, NULL) != MS_OK) return;
    size_t keep = 0;
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl) break; /* a partial last line (killed mid-write) is dropped */
        long long step = -1;
        if (sscanf(line, "{\"step\": %lld", &step) != 1 || step > last_step) break;
        keep = (size_t)(nl + 1 - text);
        line = nl + 1;
    }
    ms_file_write_atomic(path, text, keep, NULL);
    free(text);
}

/* The metrics line of `step` (the last one of a finished run), for a rerun that has nothing to
 * train: its numbers are the run's, not zeros. false if metrics.jsonl lacks that line. */
static bool metrics_at(const char *path, int64_t step, ms_train_result *res)
{
    char *text = NULL;
    size_t len = 0;
    if (ms_file_read_all(path, &text, &len, NULL) != MS_OK) return false;
    bool found = false;
    for (char *line = text; line < text + len && !found;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl) break;
        *nl = '\0';
        long long st = -1, tok, dead, low;
        double v[5];
        if (sscanf(line, "{\"step\": %lld, \"tokens\": %lld, \"loss\": %lg, \"mse\": %lg, \"fvu\": %lg, "
                         "\"l0\": %lg, \"l1\": %lg, \"dead\": %lld, \"ultralow\": %lld",
                   &st, &tok, &v[0], &v[1], &v[2], &v[3], &v[4], &dead, &low) == 9 && st == step) {
            res->loss = v[0], res->mse = v[1], res->fvu = v[2], res->l0 = v[3], res->l1 = v[4];
            res->dead = dead, res->ultralow = low;
            found = true;
        }
        line = nl + 1;
    }
    free(text);
    return found;
}

/* ------------------------------------------------------------------ helpers */

/* Removes temporary files a killed run left in dir (name.tmp.<pid> of our outputs). */
static void remove_stale_tmp(const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp) return;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (strstr(e->d_name, ".tmp.") &&
            (!strncmp(e->d_name, "checkpoint.safetensors", 22) ||
             !strncmp(e->d_name, "metrics.jsonl", 13) || !strncmp(e->d_name, "sae.h5", 6))) {
            char *p = ms_path_join(dir, e->d_name);
            if (p) unlink(p);
            free(p);
        }
    }
    closedir(dp);
}

/* Reads the first n rows of a seeded stream (rank 0 of 1: every rank gets the same rows). */
static ms_status read_sample(ms_actfile *f, const ms_config *cfg, uint64_t seed, int64_t n,
                             float *out, ms_err *err)
{
    ms_actstream_opts o = {.batch = n,
                           .block_rows = 0,
                           .window_rows = cfg->sae.shuffle_buffer > n ? cfg->sae.shuffle_buffer : n,
                           .shuffle = true,
                           .skip_nonfinite = cfg->sae.skip_nonfinite,
                           .repeat = true,
                           .seed = seed,
                           .limit = n};
    ms_actstream *s;
    ms_status st = ms_actstream_open(&s, f, &o, 0, 1, NULL, err);
    if (st) return st;
    st = ms_actstream_next(s, out, err);
    ms_actstream_close(s);
    return st;
}

static bool contains(const int64_t *a, int n, int64_t v)
{
    for (int i = 0; i < n; i++)
        if (a[i] == v) return true;
    return false;
}

/* Dead-neuron resampling at this step, in memory bounded by one batch of inputs: the ranks
 * stream the `inputs` sample (same rows for any rank count) in batches of sae.batch, each
 * computing the loss of its slice; one allreduce gives every rank all losses; every rank then
 * draws, with the shared rng, one input per dead neuron with probability ∝ loss²; a second
 * pass over the same sample collects those rows (one allreduce), and ms_sae_resample assigns
 * them (uniformly among the drawn rows, so each neuron's input stays distributed ∝ loss²). */
static ms_status resample(ms_sae *sae, train_state *t, ms_actfile *f, const ms_config *cfg,
                          const ms_comm *comm, int64_t *n_done, ms_err *err)
{
    const int64_t d = sae->hp.d_in, m = sae->hp.d_sae, N = ms_actfile_meta(f)->n_rows;
    const int64_t c = cfg->sae.batch;
    int64_t n = cfg->sae.resample.inputs < N ? cfg->sae.resample.inputs : N;
    n = n / c * c;
    if (n < c) n = c < N ? c : N;
    const uint64_t seed = (uint64_t)cfg->run.seed ^ (0x7e5a3b1eull * (uint64_t)(sae->step + 1));
    ms_actstream_opts o = {.batch = c,
                           .window_rows = cfg->sae.shuffle_buffer,
                           .shuffle = true,
                           .skip_nonfinite = cfg->sae.skip_nonfinite,
                           .repeat = true,
                           .seed = seed,
                           .limit = n};
    int64_t lo, hi;
    ms_shard_range(c, comm->rank, comm->size, &lo, &hi);
    uint8_t *dead = malloc((size_t)m);
    int64_t n_dead = dead ? ms_sae_dead_mask(sae, cfg->sae.resample.window * cfg->sae.batch, dead)
                          : 0;
    float *x = malloc((size_t)((hi - lo) * d + 1) * sizeof *x);
    float *loss = calloc((size_t)n, sizeof *loss);
    float *sel = calloc((size_t)(n_dead * d + 1), sizeof *sel);
    float *ones = malloc((size_t)(n_dead + 1) * sizeof *ones);
    int64_t *pick = malloc((size_t)(n_dead + 1) * sizeof *pick);
    double *cum = malloc((size_t)n * sizeof *cum);
    ms_actstream *s = NULL;
    ms_status st = (!dead || !x || !loss || !sel || !ones || !pick || !cum)
                       ? ms_err_set(err, MS_ERR_NOMEM, "resampling: out of memory")
                       : MS_OK;
    /* pass 1: losses of this rank's slices */
    if (!st) st = ms_actstream_open(&s, f, &o, comm->rank, comm->size, NULL, err);
    for (int64_t k = 0; !st && k < n / c; k++) {
        st = ms_actstream_next(s, x, err);
        if (!st) ms_sae_loss_per_input(sae, x, hi - lo, loss + k * c + lo);
    }
    ms_actstream_close(s);
    s = NULL;
    st = ms_comm_agree(comm, st, err);
    if (!st) st = ms_comm_allreduce_f32(comm, loss, (size_t)n, err);
    if (st || n_dead == 0) goto out;
    /* the draw, identical on every rank */
    double tot = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double l = loss[i];
        tot += isfinite(l) ? l * l : 0.0;
        cum[i] = tot;
    }
    for (int64_t j = 0; j < n_dead; j++) {
        double u = ms_rng_uniform(&t->rng) * (tot > 0.0 && isfinite(tot) ? tot : (double)n);
        int64_t a = 0, b = n - 1;
        if (tot > 0.0 && isfinite(tot)) {
            while (a < b) {
                int64_t mid = a + (b - a) / 2;
                if (cum[mid] > u) b = mid;
                else a = mid + 1;
            }
        } else {
            a = (int64_t)u < n ? (int64_t)u : n - 1;
        }
        pick[j] = a;
        ones[j] = 1.0f;
    }
    /* pass 2: the owner of each drawn row copies it; one allreduce shares them */
    st = ms_actstream_open(&s, f, &o, comm->rank, comm->size, NULL, err);
    for (int64_t k = 0; !st && k < n / c; k++) {
        st = ms_actstream_next(s, x, err);
        for (int64_t j = 0; !st && j < n_dead; j++) {
            int64_t i = pick[j] - k * c - lo;
            if (i >= 0 && i < hi - lo)
                memcpy(sel + j * d, x + i * d, (size_t)d * sizeof(float));
        }
    }
    ms_actstream_close(s);
    st = ms_comm_agree(comm, st, err);
    if (!st) st = ms_comm_allreduce_f32(comm, sel, (size_t)(n_dead * d), err);
    if (!st) {
        *n_done = ms_sae_resample(sae, dead, sel, ones, n_dead, &t->rng);
        if (*n_done < 0) st = ms_err_set(err, MS_ERR_NOMEM, "resampling: out of memory");
    }
    if (!st)
        for (int64_t j = 0; j < m; j++)
            if (dead[j]) t->fire_count[j] = 0, t->fire_start[j] = t->tokens, t->fire_prev[m + j] = 0;
out:
    if (!st) st = history_add(t, sae->step, *n_done, err);
    free(dead);
    free(x);
    free(loss);
    free(sel);
    free(ones);
    free(pick);
    free(cum);
    return st;
}

/* COLLECTIVE. The data-parallel invariant: params and Adam state bitwise equal on all ranks. */
static ms_status check_identical(const ms_sae *sae, const ms_comm *comm, ms_err *err)
{
    if (comm->size == 1) return MS_OK;
    size_t nb = sae->layout.n_params * sizeof(float);
    uint64_t h = ms_fnv1a64(sae->params, nb, 0xcbf29ce484222325ull);
    h = ms_fnv1a64(sae->adam_m, nb, h);
    h = ms_fnv1a64(sae->adam_v, nb, h);
    double mn, avg, mx;
    ms_comm_minavgmax(comm, (double)(h >> 11), &mn, &avg, &mx); /* 53 bits, exact in a double */
    if (mn != mx)
        return ms_err_set(err, MS_ERR_STATE,
                          "data-parallel invariant broken at step %lld: parameters differ "
                          "between ranks",
                          (long long)sae->step);
    return MS_OK;
}

/* ------------------------------------------------------------------ the loop */

ms_status ms_sae_train(const ms_config *cfg, const ms_comm *comm, ms_runrec *rec,
                       ms_train_result *res, ms_err *err)
{
    memset(res, 0, sizeof *res);
    res->resumed_from = -1;
    const int64_t B = cfg->sae.batch, steps = cfg->sae.steps;
    const char *out_dir = cfg->sae.out_dir;
    char *ckpt_path = ms_path_join(out_dir, "checkpoint.safetensors");
    char *metrics_path = ms_path_join(out_dir, "metrics.jsonl");
    char *h5_path = ms_path_join(out_dir, "sae.h5");
    char *lens_dir = ms_path_join(out_dir, "saelens");
    ms_actfile *f = NULL;
    ms_actstream *stream = NULL;
    ms_sae sae;
    memset(&sae, 0, sizeof sae);
    train_state t;
    memset(&t, 0, sizeof t);
    float *x = NULL, *log10d = NULL;
    double *stats = NULL;
    FILE *metrics = NULL;
    ms_actmeta meta;
    memset(&meta, 0, sizeof meta);
    ms_status st = MS_OK;
    if (!ckpt_path || !metrics_path || !h5_path || !lens_dir)
        st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");

    /* ---- data file, shapes */
    if (!st) st = ms_actfile_open(&f, cfg->sae.activations, &meta, err);
    if (!st && cfg->sae.d_in != 0 && cfg->sae.d_in != meta.d)
        st = ms_err_set(err, MS_ERR_STATE,
                        "%s: activations have d = %lld but sae.d_in is %lld (set sae.d_in: 0 to "
                        "take it from the file)",
                        cfg->sae.activations, (long long)meta.d, (long long)cfg->sae.d_in);
    if (!st && B < comm->size)
        st = ms_err_set(err, MS_ERR_CONFIG, "sae.batch %lld is smaller than the %d ranks",
                        (long long)B, comm->size);
    if (!st && !cfg->sae.repeat && steps > meta.n_rows / B)
        st = ms_err_set(err, MS_ERR_STATE,
                        "%s: %lld rows cannot feed sae.steps %lld x sae.batch %lld = %lld rows "
                        "without repeating data: lower sae.steps or sae.batch, generate more, "
                        "or set sae.repeat: true",
                        cfg->sae.activations, (long long)meta.n_rows, (long long)steps,
                        (long long)B, (long long)(steps * B));
    if (!st && cfg->sae.init && *cfg->sae.init) {
        int64_t di = 0, dsae = 0;
        st = ms_sae_saelens_dims(cfg->sae.init, &di, &dsae, err);
        if (!st && (di != meta.d || dsae != cfg->sae.d_sae))
            st = ms_err_set(err, MS_ERR_STATE,
                            "%s/cfg.json: d_in %lld, d_sae %lld; this run has d_in %lld (from "
                            "%s), sae.d_sae %lld",
                            cfg->sae.init, (long long)di, (long long)dsae, (long long)meta.d,
                            cfg->sae.activations, (long long)cfg->sae.d_sae);
    }
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;

    /* ---- the SAE, fresh or from a checkpoint */
    int64_t lo, hi;
    ms_shard_range(B, comm->rank, comm->size, &lo, &hi);
    const int64_t b = hi - lo, d = meta.d;
    ms_sae_hparams hp;
    ms_sae_hparams_from_config(&hp, cfg, d, b);
    st = ms_sae_hparams_check(&hp, err);
    if (!st) st = ms_sae_init(&sae, &hp, err);
    if (!st) st = state_alloc(&t, hp.d_sae, err);
    const size_t n_stats = st ? 0 : ms_sae_stats_len(&sae);
    if (!st) {
        x = malloc((size_t)(b * d) * sizeof *x);
        stats = calloc(n_stats + 1, sizeof *stats); /* + 1: "some rank failed" flag */
        log10d = malloc((size_t)hp.d_sae * sizeof *log10d);
        if (!x || !stats || !log10d) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    if (!st) st = ms_mkdirs(out_dir, err);
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;
    /* rank 0 decides: 0 fresh, 1 the checkpoint, 2 its .prev (the latest is corrupt) */
    int32_t have_ckpt = 0;
    if (comm->rank == 0) {
        int use = 0;
        st = ms_ckpt_pick(ckpt_path, &use, err);
        have_ckpt = use;
    }
    st = ms_comm_agree(comm, st, err);
    if (!st) st = ms_comm_bcast(comm, &have_ckpt, sizeof have_ckpt, 0, err);
    if (st) goto done;
    bool resumed = have_ckpt != 0;
    if (resumed) {
        char prev[4096];
        snprintf(prev, sizeof prev, "%s.prev", ckpt_path);
        st = ckpt_read(have_ckpt == 2 ? prev : ckpt_path, &sae, &t, cfg, &meta, err);
        res->resumed_from = sae.step;
    } else {
        ms_rng_init(&t.rng, (uint64_t)cfg->run.seed, 0x5ae);
        ms_sae_init_params(&sae, &t.rng);
        if (cfg->sae.init && *cfg->sae.init) {
            st = ms_sae_load_saelens(&sae, cfg->sae.init, err);
        } else {
            /* b_dec = geometric median of a sample every rank reads identically */
            int64_t n = cfg->sae.median_samples < meta.n_rows ? cfg->sae.median_samples
                                                               : meta.n_rows;
            float *smp = malloc((size_t)(n * d) * sizeof *smp);
            if (!smp) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory for the median sample");
            if (!st) st = read_sample(f, cfg, (uint64_t)cfg->run.seed ^ 0x3ed1a4ull, n, smp, err);
            if (!st) {
                if (hp.arch == MS_SAE_APRIL_2024) {
                    sae.input_scale =
                        (float)ms_sae_input_scale(ms_sae_norm_sum(smp, n, d), (double)n, d);
                    for (int64_t i = 0; i < n * d; i++) smp[i] *= sae.input_scale;
                }
                ms_sae_geometric_median(sae.p.b_dec, smp, n, d, 100, 1e-6);
            }
            free(smp);
        }
    }
    if (!st && sae.step > steps)
        st = ms_err_set(err, MS_ERR_STATE, "%s: checkpoint at step %lld is past sae.steps %lld",
                        ckpt_path, (long long)sae.step, (long long)steps);
    ms_actstream_opts so = {.batch = B,
                            .block_rows = 0,
                            .window_rows = cfg->sae.shuffle_buffer,
                            .shuffle = cfg->sae.shuffle,
                            .skip_nonfinite = cfg->sae.skip_nonfinite,
                            .repeat = cfg->sae.repeat,
                            .seed = (uint64_t)cfg->run.seed};
    if (!st) st = ms_actstream_open(&stream, f, &so, comm->rank, comm->size,
                                    resumed ? &t.pos : NULL, err);
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;
    if (comm->rank == 0) {
        remove_stale_tmp(out_dir);
        if (resumed) metrics_truncate(metrics_path, sae.step);
        metrics = fopen(metrics_path, resumed ? "a" : "w");
        if (!metrics)
            st = ms_err_set(err, MS_ERR_IO, "%s: cannot open: %s", metrics_path, strerror(errno));
    }
    st = ms_comm_agree(comm, st, err);
    if (st) goto done;
    if (resumed)
        ms_log("train: resuming from %s%s at step %lld of %lld", ckpt_path, have_ckpt == 2 ? ".prev" : "",
               (long long)sae.step,
               (long long)steps);
    ms_log("train: %s d_in %lld d_sae %lld, batch %lld over %d rank(s), %lld steps, %lld rows "
           "in %s",
           ms_enum_name("sae.arch", hp.arch), (long long)d, (long long)hp.d_sae, (long long)B,
           comm->size, (long long)steps, (long long)meta.n_rows, cfg->sae.activations);
    if (cfg->sae.dead_tokens > steps * B)
        ms_log("train: warning: sae.dead_tokens %lld exceeds this run's %lld tokens: no feature "
               "can count as dead in training, and densities cover the run so far (including its "
               "dense start); lower sae.dead_tokens, or measure with `monosem eval`",
               (long long)cfg->sae.dead_tokens, (long long)(steps * B));

    /* ---- steps */
    ms_progress prog;
    ms_progress_init(&prog, "train", "steps", (double)steps, cfg->run.log_every_s);
    prog.done = prog.done0 = (double)sae.step; /* a resumed run starts where its checkpoint is */
    const int64_t start_step = sae.step;
    double t_begin = ms_time_now(), t_last_log = t_begin;
    int64_t step_last_log = sae.step;
    int64_t last_ckpt = resumed ? sae.step : -1;
    int64_t n_checked = 0;
    while (sae.step < steps) {
        const int64_t step = sae.step;
        if (contains(cfg->sae.resample.at, cfg->sae.resample.n_at, step) && step > 0) {
            int64_t nr = 0;
            double t0 = ms_time_now();
            st = resample(&sae, &t, f, cfg, comm, &nr, err);
            st = ms_comm_agree(comm, st, err);
            if (st) break;
            ms_log("train: step %lld: resampled %lld dead neuron(s) (%.2fs)", (long long)step,
                   (long long)nr, ms_time_now() - t0);
        }
        double t0 = ms_time_now();
        ms_status local = ms_actstream_next(stream, x, err);
        double t1 = ms_time_now();
        if (!local) local = ms_sae_forward_backward(&sae, x, b, B, stats, err);
        double t2 = ms_time_now();
        stats[n_stats] = local != MS_OK; /* travels with the stats: no extra collective */
        st = ms_comm_allreduce_f32(comm, sae.grads, sae.layout.n_params, err);
        if (!st) st = ms_comm_allreduce_f64(comm, stats, n_stats + 1, err);
        double t3 = ms_time_now();
        res->t_read += t1 - t0;
        res->t_compute += t2 - t1;
        res->t_allreduce += t3 - t2;
        if (st) break; /* MPI failure: nothing more can be agreed */
        if (stats[n_stats] != 0.0) {
            st = ms_comm_agree(comm, local ? local : MS_OK, err);
            if (!st) st = ms_err_set(err, MS_ERR_MPI, "a rank failed at step %lld", (long long)step);
            break;
        }
        const double loss = stats[MS_SAE_STAT_LOSS];
        if (step == 0 || t.loss_ref == 0.0) t.loss_ref = loss;
        if (!isfinite(loss) || (t.loss_ref > 0 && loss > BLOWUP_FACTOR * t.loss_ref)) {
            st = ms_err_set(err, MS_ERR_NUMERIC,
                            "training diverged at step %lld: loss %g (first step %g); the last "
                            "good checkpoint (%s) is kept: lower sae.lr",
                            (long long)step, loss, t.loss_ref,
                            last_ckpt >= 0 ? ckpt_path : "none written yet");
            break;
        }
        double lr = ms_sae_lr_at(&sae.hp, step);
        ms_sae_step_info info;
        st = ms_sae_step(&sae, lr, stats, &info, err);
        /* the step is deterministic, so ranks fail it together; agreeing anyway (two 4-byte
         * allreduces) means no rank can ever wait alone in the next step's allreduce */
        st = ms_comm_agree(comm, st, err);
        res->t_step += ms_time_now() - t3;
        if (st) {
            ms_err_clear(err);
            st = ms_err_set(err, MS_ERR_NUMERIC,
                            "training diverged at step %lld: the update is not finite; the "
                            "last good checkpoint (%s) is kept: lower sae.lr",
                            (long long)step, last_ckpt >= 0 ? ckpt_path : "none written yet");
            break;
        }
        const double *fired = stats + MS_SAE_STAT_FIXED;
        for (int64_t j = 0; j < hp.d_sae; j++) t.fire_count[j] += (int64_t)fired[j];
        t.tokens += (int64_t)stats[MS_SAE_STAT_ROWS];
        window_roll(&t, hp.d_sae, cfg->sae.dead_tokens);
        t.pos = ms_actstream_pos(stream);
        res->loss = loss;
        res->mse = ms_sae_stats_mse(&sae, stats);
        res->fvu = ms_sae_stats_fvu(&sae, stats);
        res->l0 = ms_sae_stats_l0(stats);
        res->l1 = stats[MS_SAE_STAT_L1] / stats[MS_SAE_STAT_ROWS];
        const bool last = sae.step == steps;
        if (sae.step % cfg->sae.log_every == 0 || last) {
            double now = ms_time_now();
            double tps = (double)(sae.step - step_last_log) * (double)B / (now - t_last_log);
            t_last_log = now;
            step_last_log = sae.step;
            densities(&sae, &t, cfg->sae.ultralow_density, cfg->sae.dead_tokens, NULL, &res->dead,
                      &res->ultralow);
            if (metrics) {
                fprintf(metrics,
                        "{\"step\": %lld, \"tokens\": %lld, \"loss\": %.9g, \"mse\": %.9g, "
                        "\"fvu\": %.9g, \"l0\": %.6g, \"l1\": %.9g, \"dead\": %lld, "
                        "\"ultralow\": %lld, \"density_window\": %lld, \"lr\": %.9g, "
                        "\"tokens_per_s\": %.1f, \"skipped\": %lld}\n",
                        (long long)sae.step, (long long)t.tokens, loss, res->mse, res->fvu,
                        res->l0, res->l1, (long long)res->dead, (long long)res->ultralow,
                        (long long)cfg->sae.dead_tokens, lr, tps,
                        (long long)ms_actstream_skipped(stream));
                fflush(metrics);
            }
        }
        ms_progress_update(&prog, (double)sae.step);
        const int stop_sig = last ? 0 : ms_comm_signal_agree(comm, sae.step); /* any rank signalled */
        bool ck = last || stop_sig ||
                  (cfg->sae.checkpoint_every > 0 && sae.step % cfg->sae.checkpoint_every == 0);
        if (ck) {
            double c0 = ms_time_now();
            ms_status cs = check_identical(&sae, comm, err);
            n_checked += cs == MS_OK;
            if (!cs && comm->rank == 0) cs = ckpt_write(ckpt_path, &sae, &t, cfg, &meta, comm->size, err);
            st = ms_comm_agree(comm, cs, err);
            if (rec) ms_runrec_time(rec, "checkpoint", ms_time_now() - c0);
            if (st) break;
            last_ckpt = sae.step;
            if (stop_sig) {
                st = ms_err_set(err, MS_INTERRUPTED, "train: %s: stopped at step %lld of %lld after "
                                "writing %s; rerun the same command to resume",
                                ms_signal_name(stop_sig), (long long)sae.step, (long long)steps, ckpt_path);
                break;
            }
            /* test hook: stop like a crash right after this checkpoint (resume tests) */
            if (ms_testhook("checkpoint", sae.step)) {
                st = ms_err_set(err, MS_ERR_STATE, "train: stopped after the checkpoint at step %lld "
                                "(test hook)", (long long)sae.step);
                break;
            }
        }
    }
    if (st) goto done;
    if (start_step < steps) ms_progress_finish(&prog);
    /* a rerun of a finished run trains nothing: report the run's own last numbers (rank 0's
     * metrics.jsonl, to every rank), not the zeros of a loop that did not run */
    const bool was_complete = resumed && start_step == steps;
    if (was_complete) {
        double v[8] = {NAN, NAN, NAN, NAN, NAN, 0, 0, 0};
        if (comm->rank == 0 && metrics_at(metrics_path, steps, res)) {
            double got[8] = {res->loss, res->mse, res->fvu, res->l0, res->l1, (double)res->dead,
                             (double)res->ultralow, 1};
            memcpy(v, got, sizeof v);
        }
        st = ms_comm_bcast(comm, v, sizeof v, 0, err);
        if (st) goto done;
        res->loss = v[0], res->mse = v[1], res->fvu = v[2], res->l0 = v[3], res->l1 = v[4];
        res->dead = (int64_t)v[5], res->ultralow = (int64_t)v[6];
        if (v[7] != 0)
            ms_log("train: already complete at step %lld (nothing to train): loss %.6g, MSE %.6g, FVU %.4f, "
                   "L0 %.2f, dead %lld, ultralow %lld; remove %s to train again",
                   (long long)steps, res->loss, res->mse, res->fvu, res->l0, (long long)res->dead,
                   (long long)res->ultralow, ckpt_path);
        else
            ms_log("train: already complete at step %lld (nothing to train; %s has no line for that "
                   "step, so no final numbers); remove %s to train again",
                   (long long)steps, metrics_path, ckpt_path);
    }
    double t_total = ms_time_now() - t_begin;
    res->steps = sae.step;
    res->skipped_rows = ms_actstream_skipped(stream);
    res->tokens_per_s = sae.step > start_step ? (double)(sae.step - start_step) * (double)B / t_total
                                              : 0.0;

    /* ---- final outputs (rank 0) */
    int64_t n_dead = 0, n_low = 0;
    densities(&sae, &t, cfg->sae.ultralow_density, cfg->sae.dead_tokens, log10d, &n_dead, &n_low);
    if (!was_complete) res->dead = n_dead, res->ultralow = n_low;
    if (comm->rank == 0) {
        const int64_t ds = hp.d_sae;
        float *buf = malloc(sae.layout.n_params * sizeof *buf);
        if (!buf) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        if (!st) {
            float *We = buf, *be = We + d * ds, *Wd = be + ds, *bd = Wd + ds * d, *th = bd + d;
            ms_sae_export(&sae, We, be, Wd, bd, th);
            char steps_s[32], dsae_s[32], scale_s[32];
            snprintf(steps_s, sizeof steps_s, "%lld", (long long)sae.step);
            snprintf(dsae_s, sizeof dsae_s, "%lld", (long long)ds);
            snprintf(scale_s, sizeof scale_s, "%.9g", (double)sae.input_scale);
            ms_st_item items[] = {
                {"W_enc", MS_ST_F32, 2, {d, ds}, We},     {"b_enc", MS_ST_F32, 1, {ds}, be},
                {"W_dec", MS_ST_F32, 2, {ds, d}, Wd},     {"b_dec", MS_ST_F32, 1, {d}, bd},
                {"threshold", MS_ST_F32, 1, {ds}, th},    {"log10_density", MS_ST_F32, 1, {ds}, log10d},
                {"resample_history", MS_ST_I64, 2, {t.n_hist, 2}, t.history ? t.history : (int64_t *)buf},
            };
            const char *attrs[] = {"arch", ms_enum_name("sae.arch", hp.arch), "hook", meta.hook,
                                   "activations", cfg->sae.activations, "config_hash", cfg->hash,
                                   "steps", steps_s, "d_sae", dsae_s, "input_scale", scale_s,
                                   "version", MS_VERSION_STRING};
            st = ms_h5_write_tensors(h5_path, items, 7, attrs, 8, err);
        }
        free(buf);
        if (!st) {
            char src[160];
            snprintf(src, sizeof src, "training window of %lld tokens (sae.dead_tokens)",
                     (long long)cfg->sae.dead_tokens);
            /* monosem models have no public name: the run's name identifies them */
            ms_saelens_meta lm = {.hook_name = meta.hook,
                                  .model_name = cfg->run.name && *cfg->run.name ? cfg->run.name
                                                                                : "monosem",
                                  .dataset_path = cfg->sae.activations,
                                  .context_size = meta.context,
                                  .l1_coefficient = cfg->sae.l1_coeff,
                                  .training_tokens = t.tokens,
                                  .density_source = src};
            st = ms_sae_save_saelens(&sae, lens_dir, log10d, &lm, err);
        }
    }
    st = ms_comm_agree(comm, st, err);
    if (!st && rec) {
        ms_runrec_time(rec, "read", res->t_read);
        ms_runrec_time(rec, "forward_backward", res->t_compute);
        ms_runrec_time(rec, "allreduce", res->t_allreduce);
        ms_runrec_time(rec, "step", res->t_step);
        ms_runrec_fact(rec, "sae.final_loss", "%.9g", res->loss);
        ms_runrec_fact(rec, "sae.final_mse", "%.9g", res->mse);
        ms_runrec_fact(rec, "sae.final_fvu", "%.9g", res->fvu);
        ms_runrec_fact(rec, "sae.final_l0", "%.6g", res->l0);
        ms_runrec_fact(rec, "sae.dead", "%lld (training-time estimate: not fired in the last %lld "
                       "tokens)", (long long)res->dead, (long long)cfg->sae.dead_tokens);
        ms_runrec_fact(rec, "sae.ultralow", "%lld (training-time estimate over a %lld-token "
                       "window)", (long long)res->ultralow, (long long)cfg->sae.dead_tokens);
        if (was_complete)
            ms_runrec_fact(rec, "sae.already_complete", "true (rerun at step %lld: numbers from metrics.jsonl)",
                           (long long)steps);
        else
            ms_runrec_fact(rec, "sae.tokens_per_s", "%.1f", res->tokens_per_s);
        ms_runrec_fact(rec, "sae.skipped_rows", "%lld", (long long)res->skipped_rows);
        ms_runrec_fact(rec, "sae.resumed_from", "%lld", (long long)res->resumed_from);
        ms_runrec_fact(rec, "sae.invariant.params_identical_across_ranks",
                       "%s (checked at %lld checkpoints over %d ranks)",
                       comm->size > 1 ? "yes" : "trivially (1 rank)", (long long)n_checked,
                       comm->size);
        ms_runrec_fact(rec, "sae.out", "%s", h5_path);
        ms_runrec_fact(rec, "sae.saelens", "%s", lens_dir);
    }
    if (!st && !was_complete)
        ms_log("train: done, %lld steps, loss %.6g, MSE %.6g, FVU %.4f, L0 %.2f; training-time "
               "estimates over the last %lld tokens: dead %lld, ultralow %lld (held-out numbers: "
               "monosem eval); %s, %s",
               (long long)sae.step, res->loss, res->mse, res->fvu, res->l0,
               (long long)cfg->sae.dead_tokens, (long long)res->dead, (long long)res->ultralow,
               h5_path, lens_dir);
done:
    if (metrics) fclose(metrics);
    ms_actstream_close(stream);
    ms_actfile_close(f);
    ms_sae_free(&sae);
    state_free(&t);
    free(x);
    free(stats);
    free(log10d);
    free(ckpt_path);
    free(metrics_path);
    free(h5_path);
    free(lens_dir);
    return st;
}
