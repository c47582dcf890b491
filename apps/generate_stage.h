/* generate_stage.h: private to `monosem generate`'s two files: the stage's state and the queue
 * phase (generate_work.c) that stage_generate.c sets up and finishes. */
#ifndef MONOSEM_APPS_GENERATE_STAGE_H
#define MONOSEM_APPS_GENERATE_STAGE_H

#include "app.h"
#include "generate_plan.h"
#include "monosem/model.h"

/* Rank 0 answers queue requests between forwards of at most this many tokens, and inside each
 * forward at the hooks before the stop hook (a no-op "replace" callback that serves), so a
 * worker waiting for its next shard waits a few milliseconds, not a whole batch. */
#define RANK0_SERVE_TOKENS 2048
#define MAX_SERVE_HOOKS 16

typedef struct gen {
    app_ctx *app;
    const ms_config *cfg;
    ms_tokset ts;
    ms_model model;
    bool have_model;
    ms_model_acts acts;
    ms_hook hook;
    int d;
    app_gen_plan plan;
    ms_actmeta meta;
    char *config_text;
    char *partial; /* <out>.partial: the file being written; renamed to <out> when complete */
    ms_actwriter *w;
    uint8_t *done; /* (n_shards) finished shards, from /progress on resume */
    int64_t n_done_before;
    /* per-shard buffers (allocated once: memory bounded by the shard, never by N) */
    int32_t *tokens;  /* (shard_contexts, T) */
    void *rows;       /* (shard_contexts*K, d) in the store's dtype */
    int32_t *index;   /* (shard_contexts*K, 2) */
    int64_t *scratch; /* (T) */
    int batch;        /* contexts per forward on this rank */
    /* accounting (this rank) */
    double t_read, t_fwd, t_gather, t_write, t_wait;
    int64_t shards_mine, tokens_mine, bytes_written;
    /* rank 0 with workers: queue service points inside the forward */
    ms_hook_replace serve_at[MAX_SERVE_HOOKS];
    int n_serve_at;
    /* rank 0: progress */
    ms_queue q;
    ms_progress prog;
    int64_t todo_shards;
} gen;

/* Service points: the hooks of layers up to the stop hook's that come before it (the forward
 * computes nothing after the stop hook, so later ones would never run). */
void app_gen_serve_points(gen *g);

/* The queue phase. Never collective; every rank returns (rank 0 after every worker was told
 * "done" or quit), so the caller's agree cannot hang. */
ms_status app_gen_work(gen *g, ms_err *err);

#endif
