/* monosem/job.h: the job layer (libmsjob), used by the apps only — the job configuration (the
 * YAML job file resolved through one field table) and the run record each stage writes.
 *
 * Conventions:
 * - Keys are dotted as in the job file ("sae.d_sae"); sizes are counts (tokens, rows, steps),
 *   times seconds, densities fractions in [0, 1]. The enums the fields hold (ms_sae_arch, ...)
 *   and their names are io.h's: the libraries take those values without knowing this layer.
 * - An ms_config owns its strings, lists and `saes` entries; ms_config_free frees them (safe on
 *   a zeroed struct). Strings returned by ms_config_* (subset, dump_string, result_keys) are
 *   malloc'd and the caller frees them. ms_runrec is a plain value (no heap).
 * - Errors come back as ms_status with a one-line "file:line:col: ..." in ms_err.
 * - Nothing here is collective except ms_runrec_write (every rank of comm); parsing is done the
 *   same way on every rank, so every rank reaches the same config and the same errors.
 * - Not thread-safe per object; distinct configs may be used from distinct threads. */
#ifndef MONOSEM_JOB_H
#define MONOSEM_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "monosem/io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================== job configuration */

/* The resolved job. Strings and arrays are owned by the config; free with ms_config_free.
 * Every field has a default (see apps/job/config_fields.c's field table, or `monosem config --defaults`). */
typedef struct ms_config {
    char *path; /* job file as given, for messages */
    struct {
        char *name;
        char *out_dir;        /* default "runs/<name>" */
        int64_t seed;
        int64_t blas_threads; /* per rank; 0 = CPUs in the affinity mask / ranks sharing it, at least 1 */
        double log_every_s;   /* seconds between progress lines when stdout is not a tty */
        char **stages;        /* stages `monosem run` runs (pipeline order); empty = all */
        int n_stages;
    } run;
    struct {
        int format; /* ms_corpus_format */
        char **paths;
        int n_paths;
        char *delimiter;  /* text: document separator line; "" = one document per file */
        char *text_field; /* jsonl */
        int64_t context;  /* tokens per context */
        double heldout_fraction;
        char *token_dir;  /* default "<out_dir>/tokens" */
        int64_t shard_tokens;
    } corpus;
    struct {
        char *vocab;  /* encoder.json / vocab.json */
        char *merges; /* vocab.bpe / merges.txt */
        int64_t train_merges;
        int64_t train_max_bytes;
    } tokenizer;
    struct {
        char *dir; /* model directory: config.json + model.safetensors; default "<out_dir>/model" */
        char *hook;
        int64_t n_layers, d_model, d_mlp, n_heads, d_head, n_ctx;
        int act_fn;        /* ms_act_fn */
        int normalization; /* ms_norm_type */
        double eps;
    } model;
    struct {
        int64_t steps;
        int64_t batch; /* contexts per global step */
        double lr, min_lr_frac, weight_decay, grad_clip, beta1, beta2;
        int64_t warmup_steps;
        int64_t checkpoint_every, eval_every, eval_batches, log_every;
        char *dir; /* checkpoint and log (default "<out_dir>/train_model") */
        int64_t seed; /* initialisation and data order; 0 = run.seed (model B: model_b.seed) */
    } train_model;
    struct {
        int64_t seed;      /* 0 = no model B; else the seed of a second model trained like A */
        char *dir;         /* default "<out_dir>/model-b" */
        char *activations; /* default "<out_dir>/activations-b.h5" */
    } model_b;
    struct {
        int64_t seed;      /* 0 = no control; else model A's shape initialised with this seed, never trained */
        char *dir;         /* default "<out_dir>/model-r" */
        char *activations; /* default "<out_dir>/activations-r.h5" */
    } model_r;
    struct {
        char *out; /* default "<out_dir>/activations.h5" */
        int64_t tokens; /* 0 = the whole corpus */
        int64_t sample_per_context;
        int dtype; /* ms_store_dtype */
        int64_t shard_contexts;
        int64_t batch;
    } generate;
    struct {
        char *activations; /* default generate.out */
        char *out_dir;     /* default "<out_dir>/sae" */
        int arch;          /* ms_sae_arch */
        int init_encoder;  /* relu-l1: 0 Kaiming uniform, 1 the decoder's transpose */
        int64_t d_in;      /* 0 = from the activations file */
        int64_t d_sae;
        int64_t batch; /* global */
        int64_t steps;
        double lr, beta1, beta2, adam_eps;
        double l1_coeff;
        int64_t k, k_aux;
        double aux_coeff;
        int64_t dead_tokens;
        double threshold_init, bandwidth, l0_coeff;
        double lambda_warmup_frac, lr_decay_frac, grad_clip;
        struct {
            int64_t *at;
            int n_at;
            int64_t window;       /* steps before an event that its criterion looks at */
            int64_t inputs;
            double max_density;   /* > 0: resample features whose firing density over the
                                   * window is below this (the paper's dead rule is 0) */
        } resample;
        int64_t checkpoint_every, log_every;
        bool shuffle;
        int64_t shuffle_buffer; /* shuffle window rows (global; a rank holds ~1/P) */
        char *init;             /* SAELens directory to start from; "" = fresh */
        int64_t median_samples;
        double ultralow_density;
        double rare_density; /* a coarser cut that short runs resolve (eval and training count it) */
        int64_t final_density_rows; /* end of training: the final weights' densities over these rows */
        bool skip_nonfinite;
        bool reproducible;     /* fixed micro-shards + fixed-order reduction (apps/sae_reduce.c) */
        int64_t micro_shards;  /* batch split into this many shards, whatever the rank count */
        bool repeat; /* allow more than one (reshuffled) pass over the data */
    } sae;
    struct {
        int64_t tokens;
        int64_t batch;
    } eval;
    struct {
        int64_t top_k, context_window, intervals, n_features, tokens;
        bool dashboard;
        char **compare; /* other SAE dirs for feature splitting */
        int n_compare;
        int64_t batch;            /* contexts per forward */
        int64_t interval_samples; /* tokens kept per activation interval */
        int64_t hist_bins;        /* activation histogram bins over (0, max] */
        int64_t n_logits;         /* top/bottom logit-effect tokens kept */
        char *out_dir;            /* "" = beside each SAE (and <out_dir>/neurons) */
        char *scratch_dir;        /* pass 1's sparse codes; "" = $TMPDIR or /tmp */
    } analyze;
    struct {
        int64_t tokens;    /* tokens (train split, from the start) for activation correlations */
        int64_t batch;     /* contexts per forward */
        double block_mb;   /* MiB per rank for the correlation blocks of one pass (Σab of the pairs) */
        double family_min; /* decoder cosine a large feature needs to join its best small one */
    } compare;
    /* The `saes:` list: several SAEs from one job (a dictionary sweep, model B's SAEs). Each
     * entry overrides keys of the `sae` section; empty = the `sae` section is the one SAE. */
    struct ms_sae_entry *saes;
    int n_saes;
    char hash[17]; /* 16 hex digits: FNV-1a 64 of the canonical resolved dump */
    int32_t *marks; /* private: (line, col) where each field was set; 0 = default */
    /* private: the job text and overrides as given, so one entry's config can be re-derived */
    char *src;
    size_t src_len;
    char **ovr;
    int n_ovr;
    bool derived; /* private: made by ms_config_derive_* (one pipeline of the job) */
} ms_config;

/* One entry of `saes:` (owned by the config). */
typedef struct ms_sae_entry {
    char *name;  /* [A-Za-z0-9_.-]+, unique; outputs default to <out_dir>/sae-<name> */
    int model;   /* 0 = model A (model.dir), 1 = model B (model_b), 2 = the control R (model_r) */
    char **set;  /* the entry's keys as overrides "sae.key=value" (YAML flow text) */
    int n_set;
    int line, col; /* where the entry starts in the job file */
} ms_sae_entry;

/* Fills cfg with every default (resolved as if from an empty job file). */
ms_status ms_config_init_defaults(ms_config *cfg, ms_err *err);

/* Parses YAML text (from path `name` for messages) plus overrides "key=value" (dotted keys,
 * values in YAML scalar syntax), validates, resolves derived defaults, computes the hash.
 * `required` is a NULL-terminated list of dotted keys that must be set explicitly (may be
 * NULL). On error cfg is freed and err holds "name:line:col: ..." . Not collective. */
ms_status ms_config_parse(ms_config *cfg, const char *name, const char *text, size_t len,
                          const char *const *overrides, int n_overrides,
                          const char *const *required, ms_err *err);

/* The config of one SAE of the job: the job re-derived with entry i's keys over the `sae`
 * section (i = -1: the `sae` section itself), sae.out_dir defaulting to <out_dir>/sae-<name>,
 * and for a model-B or model-R entry that model's settings (see ms_config_derive_model). The
 * result has no `saes` list and no model_b or model_r section, and its hash (the SAE checkpoint's identity) covers the
 * run, corpus, tokenizer, model, train_model, generate and sae keys only (not run.stages,
 * run.log_every_s, run.blas_threads, eval, analyze, compare, other entries): changing those
 * never blocks a resume. Caller frees out. Not collective. */
ms_status ms_config_derive_sae(const ms_config *base, int i, ms_config *out, ms_err *err);
/* The config of model A (model 0), model B (model 1) or the control R (model 2) as a
 * single-model job: for B, train_model.seed = model_b.seed (initialisation and data order;
 * run.seed, which also fixes the held-out split, the sampled positions and the SAE streams,
 * stays), model.dir = model_b.dir, generate.out and sae.activations = model_b.activations,
 * train_model.dir = <train_model.dir>-b. R likewise from model_r (train_model.dir
 * <train_model.dir>-r) with train_model.steps = 0: the initialised model, never trained. No
 * `saes`, no model_b, no model_r. MS_ERR_CONFIG when the job lacks the model. */
ms_status ms_config_derive_model(const ms_config *base, int model, ms_config *out, ms_err *err);
/* "key=value" lines (value as in the dump) of every field whose key starts with one of the
 * NULL-terminated prefixes and not with one of `exclude` (may be NULL); malloc'd, caller
 * frees. What a stage's outputs depend on, for `monosem run`'s skip/redo decisions. */
char *ms_config_subset(const ms_config *cfg, const char *const *prefixes, const char *const *exclude);

/* Frees what the config owns; cfg may then be reused. Safe on a zeroed struct. */
void ms_config_free(ms_config *cfg);

/* Writes the resolved config as YAML (sections in order, every field) to f. */
ms_status ms_config_dump(const ms_config *cfg, FILE *f, ms_err *err);
/* Same into a malloc'd NUL-terminated string; caller frees. */
char *ms_config_dump_string(const ms_config *cfg);

/* Checks that every key of the NULL-terminated list `required` was set (lists non-empty,
 * strings non-empty); err says which is missing. ms_config_parse calls it. */
ms_status ms_config_check_required(const ms_config *cfg, const char *const *required, ms_err *err);

/* Line and column (1-based) where a key was set in the job file; 0,0 if defaulted. */
void ms_config_where(const ms_config *cfg, const char *key, int *line, int *col);
/* "<job>:<line>:<col>" of key in the job file, or "<job> (--key on the command line or its
 * default)" when the file does not set it: the prefix of an error about that key's value. */
void ms_config_key_where(const ms_config *cfg, const char *key, char *buf, size_t n);

/* Keys the job file or the command line set (0: an empty job file, all defaults). */
int ms_config_n_set(const ms_config *cfg);

/* Resume checks, key by key. Each key of the field table is classed as affecting a stage's
 * result or not: log cadence, checkpoint interval, progress, thread count and every path
 * (run/output directories, input files: their content identity is checked by the stage) do
 * not. `scopes` (NULL-terminated) selects keys: "sae." = a section, "run.seed" = one key.
 * ms_config_result_keys: the selected result keys as "key=value" lines (canonical text, stored
 * in checkpoints); malloc'd, caller frees; NULL if out of memory.
 * ms_config_result_diff: compares such a text with cfg; MS_OK if every selected result key has
 * the same value, else MS_ERR_STATE with err = "<what>: changed since the checkpoint: sae.lr
 * 0.001 -> 0.002, sae.d_sae 4096 -> 8192 (<hint>)"; a key the saved text lacks (added to the
 * table since) counts only if this job sets it to a non-default value. Not collective. */
char *ms_config_result_keys(const ms_config *cfg, const char *const *scopes);
ms_status ms_config_result_diff(const ms_config *cfg, const char *const *scopes, const char *saved,
                                const char *what, const char *hint, ms_err *err);
/* Prints every key with its type, default and meaning (for --help). */
void ms_config_describe(FILE *f);

/* ===================================================================== run record */

/* <out_dir>/run.yaml: resolved config, its hash, ranks, library versions, timers (min/avg/max
 * over ranks), invariants checked, exit status. Written by rank 0, to a temporary name then
 * renamed. */
#define MS_RUNREC_MAX_TIMERS 32
#define MS_RUNREC_MAX_FACTS 64
typedef struct ms_runrec {
    char stage[32];
    double t_start, cpu_start;
    int n_timers;
    struct {
        char name[48];
        double seconds;
    } timers[MS_RUNREC_MAX_TIMERS];
    int n_facts;
    struct {
        char key[64];
        char value[192];
    } facts[MS_RUNREC_MAX_FACTS];
} ms_runrec;
void ms_runrec_init(ms_runrec *r, const char *stage);
/* Adds seconds to a named timer (created on first use). */
void ms_runrec_time(ms_runrec *r, const char *name, double seconds);
/* Records a fact (metric, invariant, output path): key -> value text. Later sets overwrite. */
void ms_runrec_fact(ms_runrec *r, const char *key, const char *fmt, ...) MS_PRINTF(3, 4);
/* COLLECTIVE. Reduces timers over ranks; rank 0 writes <dir>/run-<stage>.yaml and a copy as
 * <dir>/run.yaml (the latest stage's record). */
ms_status ms_runrec_write(ms_runrec *r, const ms_comm *comm, const ms_config *cfg,
                          const char *dir, ms_status exit_status, ms_err *err);

#ifdef __cplusplus
}
#endif

#endif
