/* monosem/io.h: the one public header of libmsio — status/errors, job config, MPI, logging,
 * run record, hashing, and the file formats (safetensors, activations store, corpus). */
#ifndef MONOSEM_IO_H
#define MONOSEM_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MS_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define MS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MS_PRINTF(a, b)
#endif

/* ===================================================================== status and errors */

typedef enum ms_status {
    MS_OK = 0,
    MS_ERR_USAGE,       /* bad command line */
    MS_ERR_CONFIG,      /* job file: YAML syntax, unknown key, wrong type, range, missing key */
    MS_ERR_IO,          /* open/read/write/rename failed */
    MS_ERR_FORMAT,      /* a data file is malformed (safetensors, HDF5 layout, tokenizer files) */
    MS_ERR_NOMEM,       /* allocation failed */
    MS_ERR_MPI,         /* an MPI call failed or another rank reported failure */
    MS_ERR_NUMERIC,     /* NaN/Inf or divergence */
    MS_ERR_STATE,       /* incompatible state: incomplete file, checkpoint from another config */
    MS_ERR_UNSUPPORTED, /* a valid request this build cannot serve */
    MS_STATUS_COUNT
} ms_status;

/* Static string naming the status ("ok", "config error", ...). Never NULL. */
const char *ms_status_str(ms_status s);
/* Process exit code for a status: 0 ok, 2 usage/config errors, 1 otherwise. */
int ms_status_exit_code(ms_status s);

/* An error: a status plus one line of text that names the file, the place and what was
 * expected, e.g. "job.yaml:4:9: key 'sae.d_sae': expected a positive integer, got \"abc\"". */
typedef struct ms_err {
    ms_status status;
    char msg[1024];
} ms_err;

/* Sets e (if non-NULL) and returns s. The first error wins: an already-set error is kept. */
ms_status ms_err_set(ms_err *e, ms_status s, const char *fmt, ...) MS_PRINTF(3, 4);
void ms_err_clear(ms_err *e);

/* Memory helpers that abort with a message on OOM are deliberately absent: callers return
 * MS_ERR_NOMEM so every rank can exit together. */

/* ===================================================================== job configuration */

typedef enum { MS_CORPUS_TEXT = 0, MS_CORPUS_JSONL, MS_CORPUS_TOKENS } ms_corpus_format;
typedef enum { MS_ACT_RELU = 0, MS_ACT_GELU, MS_ACT_GELU_NEW, MS_ACT_SOLU_LN } ms_act_fn;
typedef enum { MS_NORM_LN = 0, MS_NORM_LNPRE, MS_NORM_NONE } ms_norm_type;
typedef enum { MS_DTYPE_F16 = 0, MS_DTYPE_F32 } ms_store_dtype;
typedef enum {
    MS_SAE_RELU_L1 = 0,
    MS_SAE_TOPK,
    MS_SAE_BATCHTOPK,
    MS_SAE_JUMPRELU,
    MS_SAE_APRIL_2024
} ms_sae_arch;

/* The resolved job. Strings and arrays are owned by the config; free with ms_config_free.
 * Every field has a default (see io/config.c's field table, or `monosem config --defaults`). */
typedef struct ms_config {
    char *path; /* job file as given, for messages */
    struct {
        char *name;
        char *out_dir;        /* default "runs/<name>" */
        int64_t seed;
        int64_t blas_threads; /* per rank; 0 = cores / ranks on this node, at least 1 */
        double log_every_s;   /* seconds between progress lines when stdout is not a tty */
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
    } train_model;
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
            int64_t window;
            int64_t inputs;
        } resample;
        int64_t checkpoint_every, log_every;
        bool shuffle;
        int64_t shuffle_buffer; /* rows held per rank */
        char *init;             /* SAELens directory to start from; "" = fresh */
        int64_t median_samples;
        double ultralow_density;
        bool skip_nonfinite;
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
    } analyze;
    char hash[17]; /* 16 hex digits: FNV-1a 64 of the canonical resolved dump */
} ms_config;

/* Fills cfg with every default (resolved as if from an empty job file). */
ms_status ms_config_init_defaults(ms_config *cfg, ms_err *err);

/* Parses YAML text (from path `name` for messages) plus overrides "key=value" (dotted keys,
 * values in YAML scalar syntax), validates, resolves derived defaults, computes the hash.
 * `required` is a NULL-terminated list of dotted keys that must be set explicitly (may be
 * NULL). On error cfg is freed and err holds "name:line:col: ..." . Not collective. */
ms_status ms_config_parse(ms_config *cfg, const char *name, const char *text, size_t len,
                          const char *const *overrides, int n_overrides,
                          const char *const *required, ms_err *err);

/* Frees what the config owns; cfg may then be reused. Safe on a zeroed struct. */
void ms_config_free(ms_config *cfg);

/* Writes the resolved config as YAML (sections in order, every field) to f. */
ms_status ms_config_dump(const ms_config *cfg, FILE *f, ms_err *err);
/* Same into a malloc'd NUL-terminated string; caller frees. */
char *ms_config_dump_string(const ms_config *cfg);

/* Line and column (1-based) where a key was set in the job file; 0,0 if defaulted. */
void ms_config_where(const ms_config *cfg, const char *key, int *line, int *col);

const char *ms_enum_name(const char *key, int value); /* e.g. ("sae.arch", 0) -> "relu-l1" */

/* ===================================================================== MPI communicator */

/* All MPI in monosem goes through these calls. Functions marked COLLECTIVE must be called by
 * every rank of the communicator. */
typedef struct ms_comm {
    int rank, size;
    int node_rank, node_size; /* ranks sharing this node, for BLAS thread sizing */
    void *mpi_comm;           /* MPI_Comm*, opaque to keep mpi.h out of users */
} ms_comm;

/* COLLECTIVE. Initialises MPI (once per process) and fills comm for MPI_COMM_WORLD. */
ms_status ms_comm_init(ms_comm *comm, int *argc, char ***argv, ms_err *err);
/* COLLECTIVE. Finalises MPI. */
void ms_comm_finalize(ms_comm *comm);
/* Aborts every rank: for unrecoverable states only (exit codes cannot be agreed). */
void ms_comm_abort(const ms_comm *comm, int code);

/* COLLECTIVE. Agree on a verdict: returns the worst status over all ranks. When the local
 * status is an error, err->msg is broadcast from the lowest failing rank into every rank's
 * err, so rank 0 can print it. */
ms_status ms_comm_agree(const ms_comm *comm, ms_status local, ms_err *err);

/* COLLECTIVE. In-place sum over ranks of n floats / doubles; chunked past INT_MAX elements. */
ms_status ms_comm_allreduce_f32(const ms_comm *comm, float *buf, size_t n, ms_err *err);
ms_status ms_comm_allreduce_f64(const ms_comm *comm, double *buf, size_t n, ms_err *err);
ms_status ms_comm_allreduce_i64(const ms_comm *comm, int64_t *buf, size_t n, ms_err *err);
/* COLLECTIVE. Broadcast n bytes from root (chunked past INT_MAX). */
ms_status ms_comm_bcast(const ms_comm *comm, void *buf, size_t n, int root, ms_err *err);
/* COLLECTIVE. Barrier. */
void ms_comm_barrier(const ms_comm *comm);
/* COLLECTIVE. min, mean and max of a per-rank value. */
void ms_comm_minavgmax(const ms_comm *comm, double v, double *mn, double *avg, double *mx);
/* COLLECTIVE. Gather one double from every rank to root (out has size entries on root). */
void ms_comm_gather_f64(const ms_comm *comm, double v, double *out, int root);

/* --- dynamic work queue (rank 0 hands out shard ids). Pure state, testable without MPI. */
typedef struct ms_queue {
    int64_t n_items;
    int64_t next;       /* next candidate item */
    const uint8_t *skip; /* optional: items already done (resume); not owned */
    int n_workers_left; /* remote workers not yet told "done" */
} ms_queue;
void ms_queue_init(ms_queue *q, int64_t n_items, const uint8_t *skip, int n_remote_workers);
/* Next item id to hand out, or -1 when exhausted. */
int64_t ms_queue_next(ms_queue *q);
/* Items this queue will hand out in total (n_items minus skipped). */
int64_t ms_queue_remaining(const ms_queue *q);

/* MPI side of the queue. Rank 0 both works and serves: it calls ms_queue_serve between its own
 * units of work, and ms_queue_drain at the end (serves until every worker was told done).
 * Other ranks call ms_queue_request, which blocks for the next id (-1 = no more work). */
void ms_queue_serve(const ms_comm *comm, ms_queue *q);
void ms_queue_drain(const ms_comm *comm, ms_queue *q);
int64_t ms_queue_request(const ms_comm *comm);
/* Rank 0's own next item (does not serve). */
int64_t ms_queue_take(ms_queue *q);

/* --- sharding: contiguous split of n items over size ranks (first n%size get one more). */
void ms_shard_range(int64_t n, int rank, int size, int64_t *begin, int64_t *end);

/* Sets OpenBLAS threads for this rank: requested > 0 wins, else cores / ranks-on-node. */
int ms_blas_threads_set(const ms_comm *comm, int64_t requested);

/* ===================================================================== logging and progress */

/* Logging prints on rank 0 only (others are silent unless MONOSEM_LOG_ALL=1). */
void ms_log_init(int rank);
void ms_log(const char *fmt, ...) MS_PRINTF(1, 2);        /* stdout, rank 0 */
void ms_log_error(const char *fmt, ...) MS_PRINTF(1, 2);  /* stderr, rank 0 */
bool ms_log_is_root(void);

/* A progress meter: redrawn in place on a terminal, a plain line every `every_s` seconds
 * otherwise (batch logs). Arithmetic is pure and unit-tested. */
typedef struct ms_progress {
    char label[64];
    char unit[16];
    double total;
    double done;
    double t_start, t_last_print;
    double every_s;
    bool tty;
    bool enabled; /* false on ranks other than 0 */
} ms_progress;
void ms_progress_init(ms_progress *p, const char *label, const char *unit, double total,
                      double every_s);
/* Update `done` (absolute) and print when due. */
void ms_progress_update(ms_progress *p, double done);
/* Final line (always printed on rank 0). */
void ms_progress_finish(ms_progress *p);
/* Rate (units/s) and ETA (s; -1 if unknown) for done of total after elapsed seconds. */
double ms_progress_rate(double done, double elapsed);
double ms_progress_eta(double done, double total, double elapsed);
/* Formats p's current state as one line (no newline) into buf at time `now`. */
void ms_progress_format(const ms_progress *p, double now, char *buf, size_t n);
/* Formats seconds as "1h02m03s" / "4m05s" / "6.0s". */
void ms_format_duration(double s, char *buf, size_t n);

double ms_time_now(void); /* monotonic seconds */
double ms_cpu_time(void); /* process CPU seconds */

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

/* ===================================================================== files and hashing */

/* mkdir -p. */
ms_status ms_mkdirs(const char *path, ms_err *err);
/* Reads a whole (small) file into a malloc'd NUL-terminated buffer. */
ms_status ms_file_read_all(const char *path, char **out, size_t *len, ms_err *err);
/* Writes buf to path atomically: path.tmp.<pid>, fsync, rename. */
ms_status ms_file_write_atomic(const char *path, const void *buf, size_t len, ms_err *err);
/* Joins a and b with '/' into a malloc'd string. */
char *ms_path_join(const char *a, const char *b);
bool ms_path_exists(const char *path);

/* sha256 of a file / buffer as 64 lowercase hex digits + NUL. */
ms_status ms_sha256_file(const char *path, char out[65], ms_err *err);
void ms_sha256_buf(const void *buf, size_t len, char out[65]);
/* FNV-1a 64-bit. */
uint64_t ms_fnv1a64(const void *buf, size_t len, uint64_t h);

/* ===================================================================== safetensors */
/* (libmodel issue: reader/writer live in io/safetensors.c) */

/* ===================================================================== activations store */
/* (activations.h5: io/actstore.c) */

/* ===================================================================== corpus */
/* (io/corpus.c) */

#ifdef __cplusplus
}
#endif
#endif
