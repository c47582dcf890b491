/* The data-parallel SAE training loop: data stream, one grads allreduce per step, resampling,
 * metrics, exact checkpoints and resume, final HDF5 + SAELens outputs. */
#include "sae_train.h"

#include "eval.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOWUP_FACTOR 1e3 /* loss above this x the first step's loss = divergence */

void app_sae_hparams_from_config(ms_sae_hparams *hp, const ms_config *cfg, int64_t d_in,
                                 int64_t max_batch)
{
    memset(hp, 0, sizeof *hp);
    hp->arch = cfg->sae.arch;
    hp->enc_transpose = cfg->sae.init_encoder == 1;
    hp->d_in = d_in;
    hp->d_sae = cfg->sae.d_sae;
    hp->max_batch = max_batch;
    hp->k = cfg->sae.k;
    hp->k_aux = cfg->sae.k_aux;
    hp->l1_coeff = cfg->sae.l1_coeff;
    hp->aux_coeff = cfg->sae.aux_coeff;
    hp->dead_tokens = cfg->sae.dead_tokens;
    hp->threshold_init = cfg->sae.threshold_init;
    hp->bandwidth = cfg->sae.bandwidth;
    hp->l0_coeff = cfg->sae.l0_coeff;
    hp->lr = cfg->sae.lr;
    hp->beta1 = cfg->sae.beta1;
    hp->beta2 = cfg->sae.beta2;
    hp->adam_eps = cfg->sae.adam_eps;
    hp->steps = cfg->sae.steps;
    hp->lambda_warmup_frac = cfg->sae.lambda_warmup_frac;
    hp->lr_decay_frac = cfg->sae.lr_decay_frac;
    hp->grad_clip = cfg->sae.grad_clip;
    hp->sparse_density = 0.0;
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

/* One SAE run: what every phase below reads and writes. */
typedef struct trainer {
    const ms_config *cfg;
    const ms_comm *comm;
    ms_runrec *rec; /* NULL: no run record (benchmarks) */
    app_train_result *res;
    int64_t B, steps;  /* global batch, sae.steps */
    int64_t b, d;      /* this rank's rows of a batch, d_in */
    char *ckpt_path, *metrics_path, *h5_path, *lens_dir;
    ms_actfile *f;
    ms_actmeta meta;
    ms_actstream *stream;
    ms_sae sae;
    app_train_state t;
    float *x;          /* (b, d) this rank's slice of the batch */
    float *log10d;     /* (d_sae) final densities */
    double *stats;     /* (n_stats + 1) the step's sums, + "some rank failed" */
    size_t n_stats;
    bool repro;        /* sae.reproducible: micro-shards, fixed-order sum (sae_reduce.c) */
    app_repro rp;
    FILE *metrics;     /* rank 0 */
    bool resumed, was_complete;
    int32_t have_ckpt; /* 0 fresh, 1 the checkpoint, 2 its .prev */
    int64_t start_step, last_ckpt, n_checked, step_last_log;
    double t_begin, t_last_log;
} trainer;

/* The data file and the shapes it must have. COLLECTIVE. */
static ms_status trainer_open(trainer *tr, ms_err *err)
{
    const ms_config *cfg = tr->cfg;
    const char *out_dir = cfg->sae.out_dir;
    tr->ckpt_path = ms_path_join(out_dir, "checkpoint.safetensors");
    tr->metrics_path = ms_path_join(out_dir, "metrics.jsonl");
    tr->h5_path = ms_path_join(out_dir, "sae.h5");
    tr->lens_dir = ms_path_join(out_dir, "saelens");
    ms_status st = MS_OK;
    if (!tr->ckpt_path || !tr->metrics_path || !tr->h5_path || !tr->lens_dir)
        st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    const ms_actmeta *m = &tr->meta;
    if (!st) st = ms_actfile_open(&tr->f, cfg->sae.activations, &tr->meta, err);
    if (!st && cfg->sae.d_in != 0 && cfg->sae.d_in != m->d)
        st = ms_err_set(err, MS_ERR_STATE,
                        "%s: activations have d = %lld but sae.d_in is %lld (set sae.d_in: 0 to "
                        "take it from the file)",
                        cfg->sae.activations, (long long)m->d, (long long)cfg->sae.d_in);
    if (!st && tr->B < tr->comm->size)
        st = ms_err_set(err, MS_ERR_CONFIG, "sae.batch %lld is smaller than the %d ranks",
                        (long long)tr->B, tr->comm->size);
    if (!st && !cfg->sae.repeat && tr->steps > m->n_rows / tr->B)
        st = ms_err_set(err, MS_ERR_STATE,
                        "%s: %lld rows cannot feed sae.steps %lld x sae.batch %lld = %lld rows "
                        "without repeating data: lower sae.steps or sae.batch, generate more, "
                        "or set sae.repeat: true",
                        cfg->sae.activations, (long long)m->n_rows, (long long)tr->steps,
                        (long long)tr->B, (long long)(tr->steps * tr->B));
    if (!st && cfg->sae.init && *cfg->sae.init) {
        int64_t di = 0, dsae = 0;
        st = ms_sae_saelens_dims(cfg->sae.init, &di, &dsae, err);
        if (!st && (di != m->d || dsae != cfg->sae.d_sae))
            st = ms_err_set(err, MS_ERR_STATE,
                            "%s/cfg.json: d_in %lld, d_sae %lld; this run has d_in %lld (from "
                            "%s), sae.d_sae %lld",
                            cfg->sae.init, (long long)di, (long long)dsae, (long long)m->d,
                            cfg->sae.activations, (long long)cfg->sae.d_sae);
    }
    return ms_comm_agree(tr->comm, st, err);
}

/* A fresh SAE: initialised weights, b_dec the geometric median of a sample every rank reads
 * identically (or the weights of sae.init). Local; identical on every rank. */
static ms_status trainer_init_fresh(trainer *tr, ms_err *err)
{
    const ms_config *cfg = tr->cfg;
    ms_rng_init(&tr->t.rng, (uint64_t)cfg->run.seed, 0x5ae);
    ms_sae_init_params(&tr->sae, &tr->t.rng);
    if (cfg->sae.init && *cfg->sae.init) return ms_sae_load_saelens(&tr->sae, cfg->sae.init, err);
    const int64_t d = tr->d;
    int64_t n = cfg->sae.median_samples < tr->meta.n_rows ? cfg->sae.median_samples : tr->meta.n_rows;
    float *smp = malloc((size_t)(n * d) * sizeof *smp); /* (n, d) */
    ms_status st = smp ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "out of memory for the median sample");
    if (!st) st = read_sample(tr->f, cfg, (uint64_t)cfg->run.seed ^ 0x3ed1a4ull, n, smp, err);
    if (!st) {
        if (tr->sae.hp.arch == MS_SAE_APRIL_2024) {
            tr->sae.input_scale = (float)ms_sae_input_scale(ms_sae_norm_sum(smp, n, d), (double)n, d);
            for (int64_t i = 0; i < n * d; i++) smp[i] *= tr->sae.input_scale;
        }
        ms_sae_geometric_median(tr->sae.p.b_dec, smp, n, d, 100, 1e-6);
    }
    free(smp);
    return st;
}

/* The SAE and its buffers, fresh or from a checkpoint (rank 0 picks which), the data stream
 * at the right place, metrics.jsonl open. COLLECTIVE. */
static ms_status trainer_init(trainer *tr, ms_err *err)
{
    const ms_config *cfg = tr->cfg;
    const ms_comm *comm = tr->comm;
    int64_t lo, hi;
    const int64_t granule = app_sae_slice(cfg, comm, &lo, &hi);
    tr->repro = granule > 0;
    /* OpenBLAS 0.3.21's sgemm rounds differently with the thread count (and the call's M, N):
     * one thread per rank, so a shard's GEMMs are the same calls on any launch (docs/clusters.md) */
    if (tr->repro) ms_blas_threads_set(comm, 1);
    tr->b = hi - lo, tr->d = tr->meta.d;
    ms_sae_hparams hp; /* reproducible: the workspace holds one micro-shard */
    app_sae_hparams_from_config(&hp, cfg, tr->d, tr->repro ? granule : tr->b);
    ms_status st = ms_sae_hparams_check(&hp, err);
    if (!st) st = ms_sae_init(&tr->sae, &hp, err);
    if (!st) st = app_train_state_alloc(&tr->t, hp.d_sae, err);
    tr->n_stats = st ? 0 : ms_sae_stats_len(&tr->sae);
    if (!st && tr->repro) st = app_repro_init(&tr->rp, cfg, &tr->sae, comm, tr->n_stats + 1, err);
    if (!st) {
        tr->x = malloc((size_t)(tr->b * tr->d) * sizeof *tr->x);
        tr->stats = calloc(tr->n_stats + 1, sizeof *tr->stats);
        tr->log10d = malloc((size_t)hp.d_sae * sizeof *tr->log10d);
        if (!tr->x || !tr->stats || !tr->log10d) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    if (!st) st = ms_mkdirs(cfg->sae.out_dir, err);
    st = ms_comm_agree(comm, st, err);
    if (st) return st;
    if (comm->rank == 0) {
        int use = 0;
        st = ms_ckpt_pick(tr->ckpt_path, &use, err);
        tr->have_ckpt = use;
    }
    st = ms_comm_agree(comm, st, err);
    if (!st) st = ms_comm_bcast(comm, &tr->have_ckpt, sizeof tr->have_ckpt, 0, err);
    if (st) return st;
    tr->resumed = tr->have_ckpt != 0;
    if (tr->resumed) {
        char prev[4096];
        snprintf(prev, sizeof prev, "%s.prev", tr->ckpt_path);
        st = app_sae_ckpt_read(tr->have_ckpt == 2 ? prev : tr->ckpt_path, &tr->sae, &tr->t, cfg, &tr->meta, err);
        tr->res->resumed_from = tr->sae.step;
    } else {
        st = trainer_init_fresh(tr, err);
    }
    if (!st && tr->sae.step > tr->steps)
        st = ms_err_set(err, MS_ERR_STATE, "%s: checkpoint at step %lld is past sae.steps %lld",
                        tr->ckpt_path, (long long)tr->sae.step, (long long)tr->steps);
    ms_actstream_opts so = {.batch = tr->B,
                            .block_rows = 0,
                            .window_rows = cfg->sae.shuffle_buffer,
                            .shuffle = cfg->sae.shuffle,
                            .skip_nonfinite = cfg->sae.skip_nonfinite,
                            .repeat = cfg->sae.repeat,
                            .seed = (uint64_t)cfg->run.seed,
                            .granule = granule};
    if (!st) st = ms_actstream_open(&tr->stream, tr->f, &so, comm->rank, comm->size, tr->resumed ? &tr->t.pos : NULL, err);
    st = ms_comm_agree(comm, st, err);
    if (st) return st;
    if (comm->rank == 0) {
        remove_stale_tmp(cfg->sae.out_dir);
        if (tr->resumed) app_train_metrics_truncate(tr->metrics_path, tr->sae.step);
        tr->metrics = fopen(tr->metrics_path, tr->resumed ? "a" : "w");
        if (!tr->metrics)
            st = ms_err_set(err, MS_ERR_IO, "%s: cannot open: %s", tr->metrics_path, strerror(errno));
    }
    return ms_comm_agree(comm, st, err);
}

/* The start lines: resuming, the run's shape, a dead-window warning. Rank 0 prints. */
static void trainer_log_start(const trainer *tr)
{
    const ms_config *cfg = tr->cfg;
    if (tr->resumed)
        ms_log("train: resuming from %s%s at step %lld of %lld", tr->ckpt_path, tr->have_ckpt == 2 ? ".prev" : "",
               (long long)tr->sae.step, (long long)tr->steps);
    ms_log("train: %s d_in %lld d_sae %lld, batch %lld over %d rank(s), %lld steps, %lld rows "
           "in %s",
           ms_enum_name("sae.arch", tr->sae.hp.arch), (long long)tr->d, (long long)tr->sae.hp.d_sae,
           (long long)tr->B, tr->comm->size, (long long)tr->steps, (long long)tr->meta.n_rows,
           cfg->sae.activations);
    if (tr->repro)
        ms_log("train: reproducible: %d micro-shards of %lld rows, this rank %d of them; summed in a fixed "
               "order, 1 BLAS thread per rank (bitwise the same on any rank count up to %d)", tr->rp.S,
               (long long)tr->rp.rows, tr->rp.s1 - tr->rp.s0, tr->rp.S);
    if (cfg->sae.dead_tokens > tr->steps * tr->B)
        ms_log("train: warning: sae.dead_tokens %lld exceeds this run's %lld tokens: no feature "
               "can count as dead in training, and densities cover the run so far (including its "
               "dense start); lower sae.dead_tokens, or measure with `monosem eval`",
               (long long)cfg->sae.dead_tokens, (long long)(tr->steps * tr->B));
}

/* One step: resampling if due, read, forward_backward, the two allreduces, divergence checks,
 * the identical update, firing counters. COLLECTIVE. *lr = the step's learning rate. */
static ms_status trainer_step(trainer *tr, double *lr, ms_err *err)
{
    const ms_config *cfg = tr->cfg;
    const ms_comm *comm = tr->comm;
    app_train_result *res = tr->res;
    ms_sae *sae = &tr->sae;
    const int64_t step = sae->step;
    ms_status st;
    if (contains(cfg->sae.resample.at, cfg->sae.resample.n_at, step) && step > 0) {
        int64_t nr = 0;
        double t0 = ms_time_now();
        st = app_sae_resample(sae, &tr->t, tr->f, cfg, comm, &nr, err);
        st = ms_comm_agree(comm, st, err);
        if (st) return st;
        if (cfg->sae.resample.max_density > 0)
            ms_log("train: step %lld: resampled %lld feature(s) firing on < %g of the window's %lld tokens (%.2fs)",
                   (long long)step, (long long)nr, cfg->sae.resample.max_density,
                   (long long)tr->t.win_fired[sae->hp.d_sae], ms_time_now() - t0);
        else
            ms_log("train: step %lld: resampled %lld dead neuron(s) (%.2fs)", (long long)step,
                   (long long)nr, ms_time_now() - t0);
    }
    if (app_train_resample_window_start(cfg, step)) /* the next event's window starts here */
        memset(tr->t.win_fired, 0, (size_t)(sae->hp.d_sae + 1) * sizeof *tr->t.win_fired);
    double t0 = ms_time_now();
    ms_status local = ms_actstream_next(tr->stream, tr->x, err);
    double t1 = ms_time_now();
    double *stats = tr->stats, t2, t3;
    if (tr->repro) { /* the shards' forward_backward and their fixed-order sum */
        double t_red = 0.0;
        st = app_repro_grads(&tr->rp, sae, tr->x, tr->B, &local, stats, comm, &t_red, err);
        t3 = ms_time_now();
        t2 = t3 - t_red;
    } else {
        if (!local) local = ms_sae_forward_backward(sae, tr->x, tr->b, tr->B, stats, err);
        t2 = ms_time_now();
        stats[tr->n_stats] = local != MS_OK; /* travels with the stats: no extra collective */
        st = ms_comm_allreduce_f32(comm, sae->grads, sae->layout.n_params, err);
        if (!st) st = ms_comm_allreduce_f64(comm, stats, tr->n_stats + 1, err);
        t3 = ms_time_now();
    }
    res->t_read += t1 - t0;
    res->t_compute += t2 - t1;
    res->t_allreduce += t3 - t2;
    if (st) return st; /* MPI failure: nothing more can be agreed */
    if (stats[tr->n_stats] != 0.0) {
        st = ms_comm_agree(comm, local ? local : MS_OK, err);
        return st ? st : ms_err_set(err, MS_ERR_MPI, "a rank failed at step %lld", (long long)step);
    }
    const double loss = stats[MS_SAE_STAT_LOSS];
    if (step == 0 || tr->t.loss_ref == 0.0) tr->t.loss_ref = loss;
    if (!isfinite(loss) || (tr->t.loss_ref > 0 && loss > BLOWUP_FACTOR * tr->t.loss_ref))
        return ms_err_set(err, MS_ERR_NUMERIC,
                          "training diverged at step %lld: loss %g (first step %g); the last "
                          "good checkpoint (%s) is kept: lower sae.lr",
                          (long long)step, loss, tr->t.loss_ref, tr->last_ckpt >= 0 ? tr->ckpt_path : "none written yet");
    *lr = ms_sae_lr_at(&sae->hp, step);
    ms_sae_step_info info;
    st = ms_sae_step(sae, *lr, stats, &info, err);
    /* the step is deterministic, so ranks fail it together; agreeing anyway (two 4-byte
     * allreduces) means no rank can ever wait alone in the next step's allreduce */
    st = ms_comm_agree(comm, st, err);
    res->t_step += ms_time_now() - t3;
    if (st) {
        ms_err_clear(err);
        return ms_err_set(err, MS_ERR_NUMERIC,
                          "training diverged at step %lld: the update is not finite; the "
                          "last good checkpoint (%s) is kept: lower sae.lr",
                          (long long)step, tr->last_ckpt >= 0 ? tr->ckpt_path : "none written yet");
    }
    const double *fired = stats + MS_SAE_STAT_FIXED;
    for (int64_t j = 0; j < sae->hp.d_sae; j++) {
        tr->t.fire_count[j] += (int64_t)fired[j];
        tr->t.win_fired[j] += (int64_t)fired[j];
    }
    tr->t.tokens += (int64_t)stats[MS_SAE_STAT_ROWS];
    tr->t.win_fired[sae->hp.d_sae] += (int64_t)stats[MS_SAE_STAT_ROWS];
    app_train_window_roll(&tr->t, sae->hp.d_sae, cfg->sae.dead_tokens);
    tr->t.pos = ms_actstream_pos(tr->stream);
    res->loss = loss;
    res->mse = ms_sae_stats_mse(sae, stats);
    res->fvu = ms_sae_stats_fvu(sae, stats);
    res->l0 = ms_sae_stats_l0(stats);
    res->l1 = stats[MS_SAE_STAT_L1] / stats[MS_SAE_STAT_ROWS];
    return MS_OK;
}

/* After the last step: the final weights' densities over the file's first rows, in file order
 * (whole global batches, each rank its slice), counted as eval counts them
 * (ms_eval_density_stats: dead = never fired, ultralow / rare = alive below the cut), so the
 * training-time numbers describe the dictionary training ends with, not a window of weights
 * that kept moving; log10d gets the densities. Integer counts, summed once: the same on any
 * rank count. COLLECTIVE. */
static ms_status trainer_final_densities(trainer *tr, ms_err *err)
{
    const ms_config *cfg = tr->cfg;
    app_train_result *res = tr->res;
    const int64_t m = tr->sae.hp.d_sae;
    int64_t want = cfg->sae.final_density_rows < tr->meta.n_rows ? cfg->sae.final_density_rows : tr->meta.n_rows;
    const int64_t n_batches = want / tr->B;
    res->final_rows = 0;
    if (n_batches == 0) return MS_OK;
    double t0 = ms_time_now();
    /* skipped non-finite rows make the file's finite rows fewer than n_rows: then the last batch
     * continues from the file's start (the rows counted are the first finite ones, wrapped) */
    ms_actstream_opts so = {.batch = tr->B, .window_rows = tr->B, .shuffle = false,
                            .skip_nonfinite = cfg->sae.skip_nonfinite, .repeat = cfg->sae.skip_nonfinite,
                            .limit = n_batches * tr->B, .granule = tr->repro ? tr->rp.rows : 0};
    ms_actstream *s = NULL;
    const int64_t chunk = tr->sae.hp.max_batch; /* reproducible: one micro-shard per encode */
    float *f = malloc((size_t)(chunk * m) * sizeof *f);          /* (chunk, d_sae) codes */
    double *fires = calloc((size_t)m + 1, sizeof *fires);        /* (d_sae) + rows */
    ms_status st = f && fires ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "out of memory for the final densities");
    if (!st) st = ms_actstream_open(&s, tr->f, &so, tr->comm->rank, tr->comm->size, NULL, err);
    for (int64_t k = 0; k < n_batches && !st; k++) {
        st = ms_actstream_next(s, tr->x, err);
        if (st) break;
        for (int64_t r0 = 0; r0 < tr->b; r0 += chunk) {
            const int64_t nr = tr->b - r0 < chunk ? tr->b - r0 : chunk;
            ms_sae_encode(&tr->sae, f, tr->x + r0 * tr->d, nr);
            for (int64_t r = 0; r < nr; r++)
                for (int64_t j = 0; j < m; j++) fires[j] += f[r * m + j] != 0.0f;
        }
        fires[m] += (double)tr->b;
    }
    ms_actstream_close(s);
    free(f);
    st = ms_comm_agree(tr->comm, st, err);
    if (!st) st = ms_comm_allreduce_f64(tr->comm, fires, (size_t)m + 1, err); /* counts < 2^53: exact */
    if (!st) {
        ms_eval_density d;
        ms_eval_density_stats(&d, fires, m, fires[m], cfg->sae.ultralow_density, cfg->sae.rare_density);
        res->final_rows = (int64_t)fires[m];
        res->final_dead = d.dead, res->final_ultralow = d.ultralow, res->final_rare = d.rare;
        for (int64_t j = 0; j < m; j++) tr->log10d[j] = (float)log10(fires[j] / fires[m] + 1e-10);
        if (tr->rec) ms_runrec_time(tr->rec, "final_densities", ms_time_now() - t0);
    }
    free(fires);
    return st;
}

/* Every sae.log_every steps and at the end: one metrics.jsonl line (rank 0). Local. */
static void trainer_log_metrics(trainer *tr, double lr)
{
    const ms_config *cfg = tr->cfg;
    app_train_result *res = tr->res;
    const int64_t step = tr->sae.step;
    if (step % cfg->sae.log_every != 0 && step != tr->steps) return;
    double now = ms_time_now();
    double tps = (double)(step - tr->step_last_log) * (double)tr->B / (now - tr->t_last_log);
    tr->t_last_log = now;
    tr->step_last_log = step;
    app_train_densities(&tr->sae, &tr->t, cfg->sae.ultralow_density, cfg->sae.rare_density, cfg->sae.dead_tokens,
                        NULL, &res->dead, &res->ultralow, &res->rare);
    if (!tr->metrics) return;
    fprintf(tr->metrics,
            "{\"step\": %lld, \"tokens\": %lld, \"loss\": %.9g, \"mse\": %.9g, "
            "\"fvu\": %.9g, \"l0\": %.6g, \"l1\": %.9g, \"dead\": %lld, "
            "\"ultralow\": %lld, \"rare\": %lld, \"density_window\": %lld, \"lr\": %.9g, "
            "\"tokens_per_s\": %.1f, \"skipped\": %lld, \"resampled\": %lld, \"resampled_total\": %lld",
            (long long)step, (long long)tr->t.tokens, res->loss, res->mse, res->fvu, res->l0, res->l1,
            (long long)res->dead, (long long)res->ultralow, (long long)res->rare, (long long)cfg->sae.dead_tokens, lr, tps,
            (long long)ms_actstream_skipped(tr->stream),
            /* events since the previous line of the log_every grid (exact on resume) */
            (long long)app_train_resampled_between(&tr->t, (step - 1) / cfg->sae.log_every * cfg->sae.log_every, step),
            (long long)app_train_resampled_between(&tr->t, 0, step));
    if (step == tr->steps && res->final_rows > 0) /* the final weights (trainer_final_densities) */
        fprintf(tr->metrics, ", \"final_rows\": %lld, \"final_dead\": %lld, \"final_ultralow\": %lld, \"final_rare\": %lld",
                (long long)res->final_rows, (long long)res->final_dead, (long long)res->final_ultralow,
                (long long)res->final_rare);
    fputs("}\n", tr->metrics);
    fflush(tr->metrics);
}

/* After a step: a checkpoint when due, at the end or on an agreed stop signal (then the run
 * stops: MS_INTERRUPTED); the crash-after-checkpoint test hook. COLLECTIVE. */
static ms_status trainer_checkpoint(trainer *tr, ms_err *err)
{
    const ms_config *cfg = tr->cfg;
    const ms_comm *comm = tr->comm;
    const int64_t step = tr->sae.step;
    const bool last = step == tr->steps;
    const int stop_sig = last ? 0 : ms_comm_signal_agree(comm, step); /* any rank signalled */
    if (!last && !stop_sig && !(cfg->sae.checkpoint_every > 0 && step % cfg->sae.checkpoint_every == 0))
        return MS_OK;
    double c0 = ms_time_now();
    ms_status cs = check_identical(&tr->sae, comm, err);
    tr->n_checked += cs == MS_OK;
    if (!cs && comm->rank == 0) cs = app_sae_ckpt_write(tr->ckpt_path, &tr->sae, &tr->t, cfg, &tr->meta, comm->size, err);
    ms_status st = ms_comm_agree(comm, cs, err);
    if (tr->rec) ms_runrec_time(tr->rec, "checkpoint", ms_time_now() - c0);
    if (st) return st;
    tr->last_ckpt = step;
    if (stop_sig)
        return ms_err_set(err, MS_INTERRUPTED, "train: %s: stopped at step %lld of %lld after "
                          "writing %s; rerun the same command to resume",
                          ms_signal_name(stop_sig), (long long)step, (long long)tr->steps, tr->ckpt_path);
    /* test hook: stop like a crash right after this checkpoint (resume tests) */
    if (ms_testhook("checkpoint", step))
        return ms_err_set(err, MS_ERR_STATE, "train: stopped after the checkpoint at step %lld "
                          "(test hook)", (long long)step);
    return MS_OK;
}

/* A rerun of a finished run trains nothing: report the run's own last numbers (rank 0's
 * metrics.jsonl, to every rank), not the zeros of a loop that did not run. COLLECTIVE. */
static ms_status trainer_rerun_numbers(trainer *tr, ms_err *err)
{
    app_train_result *res = tr->res;
    const long long steps = (long long)tr->steps;
    double v[8] = {NAN, NAN, NAN, NAN, NAN, 0, 0, 0};
    if (tr->comm->rank == 0 && app_train_metrics_at(tr->metrics_path, tr->steps, res)) {
        double got[8] = {res->loss, res->mse, res->fvu, res->l0, res->l1, (double)res->dead,
                         (double)res->ultralow, 1};
        memcpy(v, got, sizeof v);
    }
    ms_status st = ms_comm_bcast(tr->comm, v, sizeof v, 0, err);
    if (st) return st;
    res->loss = v[0], res->mse = v[1], res->fvu = v[2], res->l0 = v[3], res->l1 = v[4];
    res->dead = (int64_t)v[5], res->ultralow = (int64_t)v[6];
    if (v[7] != 0)
        ms_log("train: already complete at step %lld (nothing to train): loss %.6g, MSE %.6g, FVU %.4f, "
               "L0 %.2f, dead %lld, ultralow %lld; remove %s to train again",
               steps, res->loss, res->mse, res->fvu, res->l0, (long long)res->dead, (long long)res->ultralow,
               tr->ckpt_path);
    else
        ms_log("train: already complete at step %lld (nothing to train; %s has no line for that "
               "step, so no final numbers); remove %s to train again",
               steps, tr->metrics_path, tr->ckpt_path);
    return MS_OK;
}

/* Final outputs, rank 0: sae.h5 (weights, densities, resampling history) and the SAELens
 * directory. Local; the caller agrees. */
static ms_status trainer_write_outputs(trainer *tr, ms_err *err)
{
    const ms_config *cfg = tr->cfg;
    const ms_sae *sae = &tr->sae;
    const int64_t d = tr->d, ds = sae->hp.d_sae;
    float *buf = malloc(sae->layout.n_params * sizeof *buf);
    ms_status st = buf ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (!st) {
        float *We = buf, *be = We + d * ds, *Wd = be + ds, *bd = Wd + ds * d, *th = bd + d;
        ms_sae_export(sae, We, be, Wd, bd, th);
        char steps_s[32], dsae_s[32], scale_s[32];
        snprintf(steps_s, sizeof steps_s, "%lld", (long long)sae->step);
        snprintf(dsae_s, sizeof dsae_s, "%lld", (long long)ds);
        snprintf(scale_s, sizeof scale_s, "%.9g", (double)sae->input_scale);
        ms_st_item items[] = {
            {"W_enc", MS_ST_F32, 2, {d, ds}, We},     {"b_enc", MS_ST_F32, 1, {ds}, be},
            {"W_dec", MS_ST_F32, 2, {ds, d}, Wd},     {"b_dec", MS_ST_F32, 1, {d}, bd},
            {"threshold", MS_ST_F32, 1, {ds}, th},    {"log10_density", MS_ST_F32, 1, {ds}, tr->log10d},
            {"resample_history", MS_ST_I64, 2, {tr->t.n_hist, 2}, tr->t.history ? tr->t.history : (int64_t *)buf},
        };
        const char *attrs[] = {"arch", ms_enum_name("sae.arch", sae->hp.arch), "hook", tr->meta.hook,
                               "activations", cfg->sae.activations, "config_hash", cfg->hash,
                               "steps", steps_s, "d_sae", dsae_s, "input_scale", scale_s,
                               "version", MS_VERSION_STRING};
        st = ms_h5_write_tensors(tr->h5_path, items, 7, attrs, 8, err);
    }
    free(buf);
    if (st) return st;
    char src[192];
    if (tr->res->final_rows > 0)
        snprintf(src, sizeof src, "final weights on the first %lld rows of the activation file (sae.final_density_rows)",
                 (long long)tr->res->final_rows);
    else
        snprintf(src, sizeof src, "training window of %lld tokens (sae.dead_tokens)", (long long)cfg->sae.dead_tokens);
    /* monosem models have no public name: the run's name identifies them */
    ms_saelens_meta lm = {.hook_name = tr->meta.hook,
                          .model_name = cfg->run.name && *cfg->run.name ? cfg->run.name : "monosem",
                          .dataset_path = cfg->sae.activations,
                          .context_size = tr->meta.context,
                          .l1_coefficient = cfg->sae.l1_coeff,
                          .training_tokens = tr->t.tokens,
                          .density_source = src};
    return ms_sae_save_saelens(sae, tr->lens_dir, tr->log10d, &lm, err);
}

/* The run record's facts and times. Local (rank 0's record is the one written). */
static void trainer_record(const trainer *tr, ms_runrec *rec)
{
    const app_train_result *res = tr->res;
    const ms_config *cfg = tr->cfg;
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
    ms_runrec_fact(rec, "sae.rare", "%lld (alive, density < %g over the same window)", (long long)res->rare,
                   cfg->sae.rare_density);
    if (res->final_rows > 0) {
        ms_runrec_fact(rec, "sae.final_rows", "%lld (the activation file's first rows, final weights)",
                       (long long)res->final_rows);
        ms_runrec_fact(rec, "sae.final_dead", "%lld (never fired on those rows)", (long long)res->final_dead);
        ms_runrec_fact(rec, "sae.final_ultralow", "%lld (alive, density < %g)", (long long)res->final_ultralow,
                       cfg->sae.ultralow_density);
        ms_runrec_fact(rec, "sae.final_rare", "%lld (alive, density < %g)", (long long)res->final_rare,
                       cfg->sae.rare_density);
    }
    if (tr->was_complete)
        ms_runrec_fact(rec, "sae.already_complete", "true (rerun at step %lld: numbers from metrics.jsonl)",
                       (long long)tr->steps);
    else
        ms_runrec_fact(rec, "sae.tokens_per_s", "%.1f", res->tokens_per_s);
    ms_runrec_fact(rec, "sae.skipped_rows", "%lld", (long long)res->skipped_rows);
    ms_runrec_fact(rec, "sae.resumed_from", "%lld", (long long)res->resumed_from);
    ms_runrec_fact(rec, "sae.invariant.params_identical_across_ranks",
                   "%s (checked at %lld checkpoints over %d ranks)",
                   tr->comm->size > 1 ? "yes" : "trivially (1 rank)", (long long)tr->n_checked, tr->comm->size);
    ms_runrec_fact(rec, "sae.out", "%s", tr->h5_path);
    ms_runrec_fact(rec, "sae.saelens", "%s", tr->lens_dir);
}

static void trainer_free(trainer *tr)
{
    if (tr->metrics) fclose(tr->metrics);
    ms_actstream_close(tr->stream);
    ms_actfile_close(tr->f);
    ms_sae_free(&tr->sae);
    app_repro_free(&tr->rp);
    app_train_state_free(&tr->t);
    free(tr->x);
    free(tr->stats);
    free(tr->log10d);
    free(tr->ckpt_path);
    free(tr->metrics_path);
    free(tr->h5_path);
    free(tr->lens_dir);
}

ms_status app_sae_train(const ms_config *cfg, const ms_comm *comm, ms_runrec *rec,
                        app_train_result *res, ms_err *err)
{
    memset(res, 0, sizeof *res);
    res->resumed_from = -1;
    trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.cfg = cfg, tr.comm = comm, tr.rec = rec, tr.res = res;
    tr.B = cfg->sae.batch, tr.steps = cfg->sae.steps;
    ms_status st = trainer_open(&tr, err);
    if (!st) st = trainer_init(&tr, err);
    if (st) goto done;
    trainer_log_start(&tr);

    ms_progress prog;
    ms_progress_init(&prog, "train", "steps", (double)tr.steps, cfg->run.log_every_s);
    prog.done = prog.done0 = (double)tr.sae.step; /* a resumed run starts where its checkpoint is */
    tr.start_step = tr.sae.step;
    tr.t_begin = tr.t_last_log = ms_time_now();
    tr.step_last_log = tr.sae.step;
    tr.last_ckpt = tr.resumed ? tr.sae.step : -1;
    while (tr.sae.step < tr.steps) {
        double lr = 0.0;
        if ((st = trainer_step(&tr, &lr, err))) break;
        if (tr.sae.step == tr.steps && (st = trainer_final_densities(&tr, err))) break;
        trainer_log_metrics(&tr, lr);
        ms_progress_update(&prog, (double)tr.sae.step);
        if ((st = trainer_checkpoint(&tr, err))) break;
    }
    if (st) goto done;
    if (tr.start_step < tr.steps) ms_progress_finish(&prog);
    tr.was_complete = tr.resumed && tr.start_step == tr.steps;
    if (tr.was_complete && (st = trainer_rerun_numbers(&tr, err))) goto done;
    double t_total = ms_time_now() - tr.t_begin;
    res->steps = tr.sae.step;
    res->skipped_rows = ms_actstream_skipped(tr.stream);
    res->tokens_per_s = tr.sae.step > tr.start_step ? (double)(tr.sae.step - tr.start_step) * (double)tr.B / t_total : 0.0;

    int64_t n_dead = 0, n_low = 0, n_rare = 0;
    /* the window's densities go to sae.h5 / sparsity only when the final ones were not counted */
    if (tr.was_complete && cfg->sae.final_density_rows > 0 && (st = trainer_final_densities(&tr, err))) goto done;
    float *window_log10d = res->final_rows > 0 ? NULL : tr.log10d;
    app_train_densities(&tr.sae, &tr.t, cfg->sae.ultralow_density, cfg->sae.rare_density, cfg->sae.dead_tokens,
                        window_log10d, &n_dead, &n_low, &n_rare);
    if (!tr.was_complete) res->dead = n_dead, res->ultralow = n_low, res->rare = n_rare;
    if (comm->rank == 0) st = trainer_write_outputs(&tr, err);
    st = ms_comm_agree(comm, st, err);
    if (!st && rec) trainer_record(&tr, rec);
    if (!st && !tr.was_complete && res->final_rows > 0)
        ms_log("train: done, %lld steps, loss %.6g, MSE %.6g, FVU %.4f, L0 %.2f; the final weights on the "
               "first %lld rows: dead %lld, ultralow (< %g) %lld, rare (< %g) %lld (the last %lld-token window, "
               "weights still moving: dead %lld, ultralow %lld, rare %lld; held-out numbers: monosem eval); %s, %s",
               (long long)tr.sae.step, res->loss, res->mse, res->fvu, res->l0, (long long)res->final_rows,
               (long long)res->final_dead, cfg->sae.ultralow_density, (long long)res->final_ultralow,
               cfg->sae.rare_density, (long long)res->final_rare, (long long)cfg->sae.dead_tokens,
               (long long)res->dead, (long long)res->ultralow, (long long)res->rare, tr.h5_path, tr.lens_dir);
    else if (!st && !tr.was_complete)
        ms_log("train: done, %lld steps, loss %.6g, MSE %.6g, FVU %.4f, L0 %.2f; training-time "
               "estimates over the last %lld tokens: dead %lld, ultralow %lld, rare (< %g) %lld "
               "(held-out numbers: monosem eval); %s, %s",
               (long long)tr.sae.step, res->loss, res->mse, res->fvu, res->l0, (long long)cfg->sae.dead_tokens,
               (long long)res->dead, (long long)res->ultralow, cfg->sae.rare_density, (long long)res->rare,
               tr.h5_path, tr.lens_dir);
done:
    if (tr.repro) ms_blas_threads_set(comm, cfg->run.blas_threads); /* the process's own count again */
    trainer_free(&tr);
    return st;
}
