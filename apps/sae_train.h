/* The SAE training stage's internals (apps only; libsae knows nothing of jobs, files or
 * signals): the data-parallel loop (sae_train.c; its setup sae_train_setup.c, its final outputs
 * sae_train_out.c), its exact checkpoints (sae_checkpoint.c), resampling (sae_resample.c),
 * training-time firing statistics (sae_train_metrics.c) and the reproducible mode's
 * fixed-order gradient sum (sae_reduce.c).
 *
 * Conventions: every `app_sae_*` call that takes a comm is COLLECTIVE and returns the same
 * status on every rank (err filled everywhere); the rest are local. A train_state belongs to
 * its caller: app_train_state_alloc fills it, app_train_state_free releases it. */
#ifndef MONOSEM_APPS_SAE_TRAIN_H
#define MONOSEM_APPS_SAE_TRAIN_H

#include "monosem/io.h"
#include "monosem/job.h"
#include "monosem/sae.h"

#include <stdio.h>

/* Fills hp from the job's (derived) sae section: arch, d_sae, k, coefficients, lr, Adam,
 * schedules. d_in and max_batch come from the data file and the rank count. Only training
 * builds an SAE from the job; everything after it opens what training saved
 * (ms_saelens_open), so the two can never disagree. */
void app_sae_hparams_from_config(ms_sae_hparams *hp, const ms_config *cfg, int64_t d_in,
                                 int64_t max_batch);

/* Everything besides the ms_sae that a resumed run needs to continue exactly. */
typedef struct app_train_state {
    ms_rng rng;           /* init + resampling draws (identical on every rank) */
    ms_streampos pos;     /* reader position at the checkpointed step */
    int64_t tokens;       /* rows trained on */
    double loss_ref;      /* first step's loss, for blow-up detection */
    int64_t *fire_count;  /* (d_sae) rows on which feature j fired since fire_start[j] */
    int64_t *fire_start;  /* (d_sae) tokens at which feature j's count was (re)started */
    int64_t *fire_prev;   /* (2, d_sae): fired rows and rows of feature j's last complete
                           * density window (0 rows: none yet); see app_train_densities() */
    int64_t *history;     /* (n_hist, 2): (step, n_resampled) */
    int64_t n_hist;
    int64_t *win_fired;   /* (d_sae + 1): rows on which feature j fired in the current
                           * resampling window (app_train_resample_window_start); the last
                           * entry: rows in that window */
} app_train_state;

ms_status app_train_state_alloc(app_train_state *t, int64_t d_sae, ms_err *err);
void app_train_state_free(app_train_state *t);
ms_status app_train_state_history_add(app_train_state *t, int64_t step, int64_t n, ms_err *err);

/* ---- checkpoints (sae_checkpoint.c): safetensors, rank 0 writes (temp + rename, the old one
 * kept as .prev); read back with every value range-checked against the job and the data */
ms_status app_sae_ckpt_write(const char *path, const ms_sae *sae, const app_train_state *t,
                             const ms_config *cfg, const ms_actmeta *am, int n_ranks, ms_err *err);
ms_status app_sae_ckpt_read(const char *path, ms_sae *sae, app_train_state *t, const ms_config *cfg,
                            const ms_actmeta *am, ms_err *err);
/* Reads the SAE checkpoint at path exactly as a resume of job cfg on the activations described
 * by acts would, and frees it again: MS_OK if `monosem train` would resume from it. Local
 * (tools, tests, fuzzing). */
ms_status app_sae_checkpoint_verify(const char *path, const ms_config *cfg, const ms_actmeta *acts,
                                    ms_err *err);

/* ---- training-time firing statistics (sae_train_stats.c). Estimates, not the held-out numbers
 * `monosem eval` measures. Feature j's firing count runs over a window of `window` tokens
 * (sae.dead_tokens) from fire_start[j]; when full it becomes fire_prev and a new one starts
 * (resampling restarts it). The density is that of the last complete window, or of the current
 * partial one before the first completes. dead = not fired in the last `dead_tokens` tokens;
 * ultralow = alive with density < ultralow; rare = alive with density < rare (eval's same cut).
 * log10_density (d_sae) may be NULL. */
void app_train_window_roll(app_train_state *t, int64_t d_sae, int64_t window);
void app_train_densities(const ms_sae *sae, const app_train_state *t, double ultralow, double rare,
                         int64_t dead_tokens, float *log10_density, int64_t *n_dead,
                         int64_t *n_ultralow, int64_t *n_rare);
/* Keeps the lines of metrics.jsonl with step <= last_step (a resumed run rewrites the rest). */
void app_train_metrics_truncate(const char *path, int64_t last_step);
struct app_train_result;
/* The metrics line of `step` into res (loss .. rare); false if the file lacks it. */
bool app_train_metrics_at(const char *path, int64_t step, struct app_train_result *res);

/* ---- resampling (sae_resample.c). COLLECTIVE: resamples, at this step, the features the
 * criterion picks: not fired in sae.resample.window steps (the paper's rule), or with
 * sae.resample.max_density > 0 firing on fewer than that share of the window's rows. The
 * window of an event at step a starts at max(a - window, the previous event) (step 0 for the
 * first). *n_done = how many were resampled. */
ms_status app_sae_resample(ms_sae *sae, app_train_state *t, ms_actfile *f, const ms_config *cfg,
                           const ms_comm *comm, int64_t *n_done, ms_err *err);
/* true if a resampling window starts at this step (the caller zeroes the window counters) */
bool app_train_resample_window_start(const ms_config *cfg, int64_t step);
/* features resampled at events in steps [from, to) (from the resample history) */
int64_t app_train_resampled_between(const app_train_state *t, int64_t from, int64_t to);

/* ---- the reproducible gradient (sae_reduce.c, sae.reproducible): the global batch is S =
 * sae.micro_shards shards of B/S rows, shard s on rank ms_shard_range(S, ., P)'s owner; each
 * shard's forward_backward has the same shape on any rank count; the shards' gradients are
 * summed in one fixed binary tree (split at lo + (hi-lo)/2): each rank adds the subtrees it owns
 * whole (the frontier), rank q then receives chunk q of every frontier node, adds them in the
 * same tree, and an allgather assembles the slab. Statistics: every shard's, summed in shard
 * order. The result is a function of S, not of P (needs S >= P). Memory: (frontier nodes + tree
 * depth) slabs per rank, plus the frontier nodes' chunks. */
typedef struct app_repro {
    int S;                    /* micro-shards */
    int64_t rows;             /* rows per shard */
    size_t n, n_stats;        /* floats per slab; doubles per shard's stats (+ failure flag) */
    int s0, s1;               /* this rank's shards */
    int n_nodes;              /* frontier nodes, all ranks, in tree order */
    int *node_lo, *node_hi, *node_owner;
    int my0, my1;             /* this rank's frontier nodes */
    int depth;                /* scratch levels for the local subtrees */
    float **node, **scratch;  /* (my1-my0) node sums; (depth) right-subtree scratch */
    float *recv;              /* (n_nodes, cmax) this rank's chunk of every node */
    int64_t cmax;
    int64_t *cnt, *dsp, *scnt, *sdsp; /* (P) slab chunks; shard-stat pieces */
    double *shard_stats;      /* (S, n_stats) */
} app_repro;

/* This rank's rows [lo,hi) of every global batch of the job (also the resampler's): whole
 * micro-shards with sae.reproducible (returns the rows per shard), else ms_shard_range (0). */
int64_t app_sae_slice(const ms_config *cfg, const ms_comm *comm, int64_t *lo, int64_t *hi);
/* The frontier of S shards over P ranks: its nodes [lo,hi) and owners (NULL arrays: count only).
 * Returns the count. Pure. */
int app_repro_frontier(int S, int P, int *lo, int *hi, int *owner);
/* COLLECTIVE callers agree. Buffers for this rank; n_stats = ms_sae_stats_len + 1. Fails when
 * sae.micro_shards < ranks. app_repro_free is safe on a zeroed struct. */
ms_status app_repro_init(app_repro *r, const ms_config *cfg, const ms_sae *sae, const ms_comm *comm,
                         size_t n_stats, ms_err *err);
void app_repro_free(app_repro *r);
/* COLLECTIVE. This rank's rows x (its shards, in order) → every shard's forward_backward, the
 * fixed-order sum into sae->grads and stats (n_stats; the last = shards that failed, including
 * a rank whose *local (its read) failed: then grads are not reduced). *local becomes this
 * rank's status (err set where it failed). Returns an MPI failure only; *t_reduce = seconds in
 * the exchange. */
ms_status app_repro_grads(app_repro *r, ms_sae *sae, const float *x, int64_t B, ms_status *local,
                          double *stats, const ms_comm *comm, double *t_reduce, ms_err *err);

/* ---- the loop (sae_train.c). The `monosem train` loop for one SAE, data parallel: each rank
 * reads its slice of every global batch (ms_actstream), forward_backward, ONE allreduce of the
 * grads slab and one of the stats, the identical step on every rank. Resampling at
 * sae.resample.at, metrics JSON lines every sae.log_every steps (<sae.out_dir>/metrics.jsonl),
 * checkpoints every sae.checkpoint_every steps, at the end and on a stop signal
 * (<sae.out_dir>/checkpoint.safetensors); after the last step, the final weights' densities
 * over the file's first sae.final_density_rows rows (the last metrics line's final_* keys,
 * sae.h5's log10_density and sparsity.safetensors); rerunning resumes from it, bitwise identical to an
 * uninterrupted run on the same rank and thread counts (with sae.reproducible: on any rank count). Final outputs: <sae.out_dir>/sae.h5
 * and <sae.out_dir>/saelens/ (cfg.json, sae_weights.safetensors, sparsity.safetensors).
 * COLLECTIVE. rec may be NULL (benchmarks). */
typedef struct app_train_result {
    int64_t steps;         /* steps completed */
    int64_t resumed_from;  /* step of the checkpoint resumed from, -1 if fresh */
    double loss, mse, fvu, l0, l1; /* last step's global metrics */
    int64_t dead, ultralow, rare;  /* the training window's estimates (app_train_densities) */
    /* the final weights over the file's first final_rows rows (sae.final_density_rows, whole
     * batches), counted as eval counts (ms_density_stats); final_rows 0 = not measured */
    int64_t final_rows, final_dead, final_ultralow, final_rare;
    int64_t skipped_rows;  /* non-finite rows skipped */
    double tokens_per_s;   /* over the steps run in this process */
    double t_read, t_compute, t_allreduce, t_step; /* seconds in this process (this rank) */
} app_train_result;

ms_status app_sae_train(const ms_config *cfg, const ms_comm *comm, ms_runrec *rec,
                        app_train_result *res, ms_err *err);

/* ---- the trainer's phases, shared by sae_train.c (the loop), sae_train_setup.c and
 * sae_train_out.c (internal to app_sae_train). */
/* One SAE run: what every phase below reads and writes. */
typedef struct app_trainer {
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
} app_trainer;

/* The data file and the shapes it must have. COLLECTIVE. */
ms_status app_trainer_open(app_trainer *tr, ms_err *err);
/* The SAE and its buffers, fresh or from a checkpoint, the data stream, metrics.jsonl. COLLECTIVE. */
ms_status app_trainer_init(app_trainer *tr, ms_err *err);
/* The start lines (rank 0 prints). */
void app_trainer_log_start(const app_trainer *tr);
/* A finished run's rerun: its own last numbers from metrics.jsonl. COLLECTIVE. */
ms_status app_trainer_rerun_numbers(app_trainer *tr, ms_err *err);
/* sae.h5 and the SAELens directory. Rank 0; local, the caller agrees. */
ms_status app_trainer_write_outputs(app_trainer *tr, ms_err *err);
/* The run record's facts and times. Local. */
void app_trainer_record(const app_trainer *tr, ms_runrec *rec);

#endif
