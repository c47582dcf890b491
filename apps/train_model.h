/* train_model.h: private to `monosem train-model`'s two files: the trainer's state, the seeded
 * data order and the step loop (train_model_steps.c) that stage_train_model.c drives. */
#ifndef MONOSEM_APPS_TRAIN_MODEL_H
#define MONOSEM_APPS_TRAIN_MODEL_H

#include <stdio.h>

#include "app.h"
#include "monosem/model.h"

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

void train_model_order_init(data_order *o, int64_t n, uint64_t seed);

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
    /* the run: paths, identity, progress and timings shared by its phases */
    char *train_dir, *ckpt_path, *log_path;
    char *job_keys; /* this job's result keys, stored in every checkpoint */
    char fp[17];    /* run fingerprint stored in every checkpoint */
    int64_t n_ctx_train, step, steps_run;
    int threads;
    double t_step, t_comm, t_eval, t_ckpt;
    double last_loss, last_eval, last_uni;
} trainer;

/* Held-out loss of the model and of the unigram baseline on the same target tokens, in
 * nats/token. COLLECTIVE. */
ms_status train_model_evaluate(trainer *t, double *loss, double *uni, int64_t *n_tok, ms_err *err);

/* Steps t->step .. train_model.steps: batch, forward, backward, the one allreduce, AdamW; the
 * JSON-lines log, held-out evaluations and checkpoints at their cadence; a signal checkpoints
 * and stops (MS_INTERRUPTED). COLLECTIVE. */
ms_status train_model_loop(trainer *t, ms_err *err);

#endif
