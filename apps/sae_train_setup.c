/* The SAE trainer's setup: the job's hyper-parameters, the data file and its shapes, a fresh
 * SAE or the checkpoint resumed from, the data stream, metrics.jsonl, the start lines. */
#include "sae_train.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* The data file and the shapes it must have. COLLECTIVE. */
ms_status app_trainer_open(app_trainer *tr, ms_err *err)
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
        st = ms_saelens_dims(cfg->sae.init, &di, &dsae, err);
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
static ms_status trainer_init_fresh(app_trainer *tr, ms_err *err)
{
    const ms_config *cfg = tr->cfg;
    ms_rng_init(&tr->t.rng, (uint64_t)cfg->run.seed, 0x5ae);
    ms_sae_init_params(&tr->sae, &tr->t.rng);
    if (cfg->sae.init && *cfg->sae.init) return ms_saelens_load(&tr->sae, cfg->sae.init, err);
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
ms_status app_trainer_init(app_trainer *tr, ms_err *err)
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
void app_trainer_log_start(const app_trainer *tr)
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
