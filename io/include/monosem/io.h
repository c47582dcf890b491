/* monosem/io.h: the one public header of libmsio — status/errors, the job file's enums, MPI,
 * logging, hashing, and the file formats (safetensors, activations store, corpus). */
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
    MS_INTERRUPTED,     /* stopped by a signal after writing a checkpoint: rerun to resume */
    MS_STATUS_COUNT
} ms_status;

/* Static string naming the status ("ok", "config error", ...). Never NULL. */
const char *ms_status_str(ms_status s);
/* Process exit code for a status: 0 ok, 2 usage/config errors, 3 unsupported (e.g. a stage
 * not built in this version), 75 (EX_TEMPFAIL) interrupted by a signal after a checkpoint
 * (requeue and rerun to resume), 1 otherwise. */
#define MS_EXIT_INTERRUPTED 75
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

/* ===================================================================== enums of the job file */

/* Shared by the job layer (apps/job: the job file's keys) and the libraries that take these
 * values (the model's activation and normalisation, the store's dtype, the SAE's recipe). */
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

/* Their names as job files spell them (index = value, NULL-terminated; io/enums.c). */
extern const char *const ms_corpus_format_names[];
extern const char *const ms_act_fn_names[];
extern const char *const ms_norm_type_names[];
extern const char *const ms_store_dtype_names[];
extern const char *const ms_sae_arch_names[];
/* The name of value of the enum the job key holds: ("sae.arch", 0) -> "relu-l1"; "?" for a key
 * that holds none of these enums or a value out of range. */
const char *ms_enum_name(const char *key, int value);

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

/* For states that cannot happen unless monosem itself is wrong (never for bad input, which gets
 * an ms_err): MS_INVARIANT(cond) prints "monosem: rank R: file:line: invariant failed: cond" to
 * stderr and aborts every rank with exit code 70 (EX_SOFTWARE). Works before MPI is initialised
 * and in single-process tests. Cheap enough to stay on in release builds. */
#define MS_EXIT_INVARIANT 70
#define MS_INVARIANT(cond) ((cond) ? (void)0 : ms_invariant_fail(__FILE__, __LINE__, #cond))
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
void ms_invariant_fail(const char *file, int line, const char *cond);

/* COLLECTIVE. Agree on a verdict: returns the worst status over all ranks. When the local
 * status is an error, err->msg is broadcast from the lowest failing rank into every rank's
 * err, so rank 0 can print it. */
ms_status ms_comm_agree(const ms_comm *comm, ms_status local, ms_err *err);

/* COLLECTIVE. In-place sum over ranks of n floats / doubles; chunked past INT_MAX elements. */
ms_status ms_comm_allreduce_f32(const ms_comm *comm, float *buf, size_t n, ms_err *err);
ms_status ms_comm_allreduce_f64(const ms_comm *comm, double *buf, size_t n, ms_err *err);
ms_status ms_comm_allreduce_i64(const ms_comm *comm, int64_t *buf, size_t n, ms_err *err);
/* COLLECTIVE. Rank q receives counts[q] floats from root's send + displs[q] (send read on root
 * only; counts and displs have size entries, the same on every rank, each at most INT_MAX). */
ms_status ms_comm_scatterv_f32(const ms_comm *comm, const float *send, const int64_t *counts,
                               const int64_t *displs, float *recv, int root, ms_err *err);
/* COLLECTIVE. recv + displs[q] := rank q's counts[q] elements of send, on every rank. Pure
 * copies: with the fixed-order reduction (apps/sae_reduce.c) sums stay bitwise order-free. */
ms_status ms_comm_allgatherv_f32(const ms_comm *comm, const float *send, float *recv,
                                 const int64_t *counts, const int64_t *displs, ms_err *err);
ms_status ms_comm_allgatherv_f64(const ms_comm *comm, const double *send, double *recv,
                                 const int64_t *counts, const int64_t *displs, ms_err *err);
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
/* A worker that stops early (after an error) tells rank 0 so its drain does not wait for it.
 * Call at most once, and not after ms_queue_request returned -1. */
void ms_queue_quit(const ms_comm *comm);
/* Like ms_queue_quit, for a worker that caught a stop signal: rank 0 then hands out nothing
 * more to any rank, so every rank finishes its current item and the queue phase ends. */
void ms_queue_stop(const ms_comm *comm);
/* Rank 0's own next item (does not serve). */
int64_t ms_queue_take(ms_queue *q);

/* --- sharding: contiguous split of n items over size ranks (first n%size get one more). */
void ms_shard_range(int64_t n, int rank, int size, int64_t *begin, int64_t *end);

/* An HDF5 file-access property list for MPI-IO over this communicator (parallel HDF5 is the
 * one other place MPI reaches); the caller closes it with H5Pclose. Returns an hid_t. */
int64_t ms_comm_h5_fapl(const ms_comm *comm);

/* COLLECTIVE. Merges n_items items of item_bytes each from every rank into root's buf, with
 * a user merge fn(ctx, inout, in, n, item_bytes) that must be associative and commutative
 * (e.g. "keep the k best of the union" under a total order); other ranks' buf is left as it
 * was. One reduction at a time per process (the fn is parked in a static for MPI). */
typedef void (*ms_merge_fn)(void *ctx, void *inout, const void *in, size_t n, size_t item_bytes);
ms_status ms_comm_reduce_merge(const ms_comm *comm, void *buf, size_t n_items, size_t item_bytes,
                               ms_merge_fn fn, void *ctx, int root, ms_err *err);

/* The MPI library's version line. */
void ms_comm_library_version(char *buf, size_t n);

/* The CPU binding of this process, read at ms_comm_init: CPUs in its affinity mask
 * (sched_getaffinity: what mpirun/srun/the scheduler granted), ranks on this node whose masks
 * overlap it (itself included; unbound ranks all share the node), and the node's online CPUs. */
void ms_cpu_binding(int *mask_cpus, int *sharers, int *online);
/* Threads per rank for a binding: requested > 0 wins; else mask_cpus / sharers, at least 1. */
int ms_threads_for_binding(int mask_cpus, int sharers, int64_t requested);
/* Sets this rank's OpenBLAS (and kernel) threads from ms_threads_for_binding and returns the
 * count. The first call per process logs one line (stderr, rank 0) when the count exceeds the
 * CPUs the binding gives the rank (a warning: threads share cores) or when ranks leave node CPUs
 * unused. */
int ms_blas_threads_set(const ms_comm *comm, int64_t requested);

/* COLLECTIVE. The stop signal (ms_signal_caught) of the most recent one caught on any rank,
 * 0 if none: every rank gets the same answer, so all stop at the same step. One 4-byte
 * allreduce; long stages call it at each step boundary. step: the boundary's number in the
 * stage's own count (train steps, analyze block rounds), the test hooks' point "step". */
int ms_comm_signal_agree(const ms_comm *comm, int64_t step);

/* ===================================================================== stop signals */

/* Wall-clock limits: schedulers send SIGTERM (Slurm --signal, at the limit, scancel) before
 * SIGKILL; mpirun forwards SIGUSR1. Long stages (train-model, generate, train) install these
 * handlers, agree on the flag at each step boundary (ms_comm_signal_agree), write a checkpoint
 * and return MS_INTERRUPTED (exit code 75); rerunning the command resumes. */
/* Installs handlers for SIGTERM, SIGINT and SIGUSR1 that only record the signal (idempotent).
 * Further signals while a checkpoint is written change nothing. */
void ms_signals_install(void);
/* The last stop signal caught by this process, 0 if none (local, no MPI). */
int ms_signal_caught(void);
/* Number of stop signals caught by this process (capped at 1000). */
int ms_signal_count(void);
/* Forget caught signals (tests; a stage that handled one). */
void ms_signals_clear(void);
/* "SIGTERM", "SIGINT", "SIGUSR1", ... (static). */
const char *ms_signal_name(int sig);

/* ===================================================================== test hooks */

/* Fault injection for tests at a point the program reports, never after a guessed delay. The
 * environment variable MONOSEM_TEST_HOOK, read once per process, holds up to 4 comma-separated
 * hooks POINT:N:RANK:ACTION[:FILE]. When this process passes POINT with count N (the first
 * time only), on rank RANK (a number; '*' every rank; 'any' the first rank to create FILE):
 *   stop  writes FILE ("pid rank point n"; FILE.<rank> for '*') whole, then raises SIGSTOP: the
 *         test acts (kill -9, fills a disk, sends a signal, starts a second run). The rank goes
 *         on at SIGCONT once FILE is removed or a stop signal was caught (it stops again
 *         otherwise: a launcher's SIGCONT ahead of its signal does not release it). A test
 *         that knows a stop signal is pending appends a line "signal" to FILE before SIGCONT:
 *         the rank then waits for its handler (which another thread may run) instead
 *   kill  writes FILE if given, then raises SIGKILL: a crash exactly there
 *   fail  ms_testhook returns true and the stage stops with an error, as if the operation failed
 *         (RANK must be '*': every rank stops at the same point)
 * Points and their N (each documented where it is called):
 *   step        a step boundary, before the stop-signal agreement (ms_comm_signal_agree):
 *               train-model and train after step N, analyze after block round N (both passes
 *               counted on), generate 0 (its one agreement, after the queue phase)
 *   checkpoint  train-model and train: the checkpoint of step N is in place (fail honoured)
 *   save        any safetensors file: this process's Nth save, data written and synced, not yet
 *               renamed into place (a crash leaves only the temporary file)
 *   shard       generate: this rank's Nth shard is recorded done
 *   shard-rows  generate: this rank's Nth shard's rows are written, not yet recorded done
 * Not thread-safe: call from the stage's main thread. A malformed hook prints one line and
 * exits 2. No timer: a test that must outlast a scheduler's limit stops a rank at a point and
 * lets it go when the limit's signal has come. */
bool ms_testhook(const char *point, int64_t n);
/* The MPI rank the hooks match against (ms_comm_init sets it; 0 before). */
void ms_testhook_set_rank(int rank);

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
    double done0; /* done when this process started (a resumed run): rate and ETA count from it */
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
/* This node's available memory in bytes (MemAvailable of /proc/meminfo), 0 when unknown. */
double ms_mem_available(void);
/* Why a file cannot be created at path, as strerror text ("Read-only file system", "No such
 * file or directory", "Permission denied", ...), found by probing its directory; for failures
 * reported by a library without errno (HDF5). "reason unknown" if the directory looks fine. */
const char *ms_create_error(const char *path);

/* sha256 of a file / buffer as 64 lowercase hex digits + NUL. */
ms_status ms_sha256_file(const char *path, char out[65], ms_err *err);
void ms_sha256_buf(const void *buf, size_t len, char out[65]);
/* FNV-1a 64-bit. */
uint64_t ms_fnv1a64(const void *buf, size_t len, uint64_t h);
/* Strict decimal integer: optional '-', digits only, no spaces or trailing text, no overflow,
 * value in [lo, hi]. For state read back from files ("abc" or "-5" must not become a step). */
bool ms_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);

/* ===================================================================== output locks */
/* (io/lock.c) A stage locks its output so that two runs into one place cannot interleave: a
 * lock file holding "host pid stage time", locked by rank 0 with fcntl (also over NFS). A lock
 * held by a live process is refused naming its stage, host and pid; a lock file left by a job
 * that died (kill -9: the kernel dropped the lock, the record stayed) is taken over with a
 * message naming the dead holder. Other ranks hold nothing. */
typedef struct ms_lock {
    int fd; /* rank 0: the locked file; -1 elsewhere or when not held */
} ms_lock;
/* COLLECTIVE (comm may be NULL: this process alone). `what` names the output in messages
 * (e.g. its directory); the lock file's directory must exist. On error (MS_ERR_STATE: in use;
 * MS_ERR_IO) no rank holds the lock and every rank has the same message. */
ms_status ms_lock_acquire(ms_lock *l, const char *path, const char *what, const char *stage,
                          const ms_comm *comm, ms_err *err);
/* Releases (rank 0 empties the file and closes it). Safe on a lock not held. */
void ms_lock_release(ms_lock *l);

/* ===================================================================== safetensors */
/* Reader and writer (io/safetensors.c): 8-byte little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
 * raw little-endian data (offsets relative to the end of the header). The reader validates
 * the header fully (dtype, shape, offsets inside the data and matching dtype x shape, no
 * overlaps) before any tensor is read.
 * Conventions: shapes are row-major int64 dims (ndim <= MS_SAFETENSORS_MAX_DIMS), offsets in bytes; an
 * ms_safetensors owns every string and array in it (ms_safetensors_close frees them, also after a failed
 * open); items and metadata passed to the writers stay the caller's. Writers are atomic
 * (temp file, fsync, rename). Not collective; one handle per thread (reads share no state). */

typedef enum ms_safetensors_dtype {
    MS_SAFETENSORS_F32 = 0, MS_SAFETENSORS_F16, MS_SAFETENSORS_BF16, MS_SAFETENSORS_F64,
    MS_SAFETENSORS_I64, MS_SAFETENSORS_I32, MS_SAFETENSORS_I16, MS_SAFETENSORS_I8, MS_SAFETENSORS_U8, MS_SAFETENSORS_BOOL,
    MS_SAFETENSORS_DTYPE_COUNT
} ms_safetensors_dtype;

#define MS_SAFETENSORS_MAX_DIMS 8
#define MS_SAFETENSORS_MAX_HEADER (100u << 20) /* as the reference implementation */

typedef struct ms_safetensors_tensor {
    char *name;
    ms_safetensors_dtype dtype;
    int ndim;
    int64_t shape[MS_SAFETENSORS_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end; /* byte offsets into the data section */
} ms_safetensors_tensor;

typedef struct ms_safetensors {
    char *path;            /* for messages */
    FILE *f;               /* NULL for a header parsed from memory */
    uint64_t data_start;   /* file offset of the data section (8 + N) */
    uint64_t data_len;     /* bytes in the data section */
    ms_safetensors_tensor *tensors; /* n entries, in header order */
    int n;
    char **meta;           /* n_meta key/value pairs: meta[2i], meta[2i+1] */
    int n_meta;
} ms_safetensors;

/* Bytes per element of a dtype; its safetensors name ("F32"...). */
size_t ms_safetensors_dtype_size(ms_safetensors_dtype d);
const char *ms_safetensors_dtype_name(ms_safetensors_dtype d);

/* Parses a JSON header (not NUL-terminated, len bytes) for a data section of data_len bytes
 * into st (st->f stays NULL). Pure: this is what the fuzzer drives. On error st is freed. */
ms_status ms_safetensors_parse_header(ms_safetensors *st, const char *path, const char *json, size_t len,
                             uint64_t data_len, ms_err *err);
/* Opens path and parses its header. Caller closes with ms_safetensors_close (also on a zeroed st). */
ms_status ms_safetensors_open(ms_safetensors *st, const char *path, ms_err *err);
void ms_safetensors_close(ms_safetensors *st);
/* The tensor called name, or NULL. */
const ms_safetensors_tensor *ms_safetensors_find(const ms_safetensors *st, const char *name);
/* Value of a __metadata__ key, or NULL. */
const char *ms_safetensors_meta(const ms_safetensors *st, const char *key);
/* Reads tensor t converted to float32 into dst (t->numel floats). F32/F16/BF16/F64 only;
 * other dtypes are MS_ERR_FORMAT naming the file and tensor. */
ms_status ms_safetensors_read_f32(const ms_safetensors *st, const ms_safetensors_tensor *t, float *dst,
                         ms_err *err);
/* Finds `name`, checks it has exactly the given shape, reads it as float32. Errors: missing
 * tensor, wrong shape, unsupported dtype, short read -- each naming file and tensor. */
ms_status ms_safetensors_read_f32_shaped(const ms_safetensors *st, const char *name, int ndim,
                                const int64_t *shape, float *dst, ms_err *err);

/* One tensor to write: data holds numel(shape) elements of dtype, little-endian. */
typedef struct ms_safetensors_item {
    const char *name;
    ms_safetensors_dtype dtype;
    int ndim;
    int64_t shape[MS_SAFETENSORS_MAX_DIMS];
    const void *data;
} ms_safetensors_item;
/* Writes items (in order, data 8-byte aligned) and optional metadata key/value pairs to
 * path.tmp.<pid>, fsyncs and renames to path. The metadata also gets MS_SAFETENSORS_CHECKSUM_KEY: the
 * sha256 (hex) of the whole data section, which ms_safetensors_open verifies (other tools ignore it). */
ms_status ms_safetensors_write(const char *path, const ms_safetensors_item *items, int n_items,
                      const char *const *meta_kv, int n_meta, ms_err *err);
/* Same, keeping the file it replaces as path.prev (checkpoints: the fallback when the latest is
 * found corrupt; see ms_ckpt_pick). */
ms_status ms_safetensors_write_rotate(const char *path, const ms_safetensors_item *items, int n_items,
                             const char *const *meta_kv, int n_meta, ms_err *err);
#define MS_SAFETENSORS_CHECKSUM_KEY "data_sha256"
/* Verifies the data section against MS_SAFETENSORS_CHECKSUM_KEY (MS_ERR_FORMAT "...: corrupt: ..."
 * naming the file); MS_OK when the file records none. ms_safetensors_open calls it. */
ms_status ms_safetensors_verify(const ms_safetensors *st, ms_err *err);

/* Which checkpoint to resume from (io/checkpoint.c). Not collective (rank 0 decides, then
 * broadcasts). path is tried first, then path.prev; a file that fails to open or verify, or
 * carries no checksum, is "corrupt": it is logged with the reason, renamed to path.corrupt (kept
 * for inspection, never rotated into path.prev), and the previous one is used. *use = 0 none
 * (start fresh), 1 path, 2 path.prev. Both corrupt (or only a corrupt one) is MS_ERR_STATE
 * naming both reasons. */
ms_status ms_ckpt_pick(const char *path, int *use, ms_err *err);

/* ===================================================================== activations store */
/* activations.h5 (io/actstore.c writer, io/actfile.c reader; layout in docs/formats.md): /acts
 * (N,d) float16|float32 chunked by rows, /tokens int32 (n_contexts, context), /index int32
 * (N,2) = (context, position) of each row, /progress uint8 (n_shards) = 1 when a shard's rows
 * are written, and attributes; the root attribute `complete` (int 1) is written last by ms_actwriter_finalize.
 * Conventions: rows are (N, d) row-major, one row per sampled token; row, context and shard
 * indices are int64 and 0-based. Handles (ms_actwriter, ms_actfile) are opaque and owned by
 * the caller until their _finalize/_close; arrays passed in stay the caller's. Writer calls
 * are COLLECTIVE or independent as marked, over the comm given at create/resume; readers are
 * never collective. A handle is used by one thread at a time (HDF5 is not thread-safe). */

#define MS_ACTSTORE_VERSION 1

/* What a store describes. Strings are copied by the store; config_text may be NULL. */
typedef struct ms_actmeta {
    int64_t n_rows;     /* N: sampled tokens */
    int64_t d;          /* width of one activation vector */
    int64_t n_contexts; /* rows of /tokens */
    int64_t context;    /* tokens per context */
    int64_t n_shards;   /* units of work recorded in /progress (>= 1) */
    int dtype;          /* ms_store_dtype of /acts */
    int64_t seed;
    int64_t chunk_rows; /* rows per HDF5 chunk of /acts; 0 = about 1 MiB per chunk */
    char hook[128];
    char model_sha256[65];
    char tokenizer_sha256[65];
    char config_hash[17];
    char version[32]; /* tool version that wrote it (MS_VERSION_STRING) */
    const char *config_text;
} ms_actmeta;

/* ---- writer (generation stage). COLLECTIVE calls are over comm; comm == NULL means this
 * process alone (serial HDF5 driver, no MPI needed: tests and small tools). With several
 * ranks the file is opened through MPI-IO and each rank writes its own rows independently
 * (independent MPI-IO measured faster than collective on this machine's disk). */
typedef struct ms_actwriter ms_actwriter;

/* COLLECTIVE. Creates path (truncating) with every dataset at full size (space allocated, never
 * filled) and the attributes, flushed so a crash leaves a resumable file. *w freed by
 * ms_actwriter_finalize or ms_actwriter_close. */
ms_status ms_actwriter_create(ms_actwriter **w, const char *path, const ms_actmeta *meta,
                              const ms_comm *comm, ms_err *err);
/* COLLECTIVE. Reopens an incomplete store to continue: checks that d, N, n_contexts, context,
 * n_shards, dtype, hook, model sha256 and config hash match `expect` (a clear MS_ERR_STATE
 * naming the first difference otherwise) and fills done[n_shards] (caller's array) with
 * /progress. A complete store is refused with MS_ERR_STATE ("already complete"). */
ms_status ms_actwriter_resume(ms_actwriter **w, const char *path, const ms_actmeta *expect,
                              uint8_t *done, const ms_comm *comm, ms_err *err);
/* Independent. Rows [row0, row0+n) of /acts from acts (n,d) float32 (converted to the store
 * dtype, round to nearest even) and of /index from index (n,2) (may be NULL). */
ms_status ms_actwriter_write_rows(ms_actwriter *w, int64_t row0, int64_t n, const float *acts,
                                  const int32_t *index, ms_err *err);
/* Independent. Contexts [ctx0, ctx0+n) of /tokens from tokens (n, context). */
ms_status ms_actwriter_write_tokens(ms_actwriter *w, int64_t ctx0, int64_t n,
                                    const int32_t *tokens, ms_err *err);
/* Independent. Marks a shard finished in /progress; call after its rows and tokens. */
ms_status ms_actwriter_mark_done(ms_actwriter *w, int64_t shard, ms_err *err);
/* COLLECTIVE. Checks /progress is all ones (MS_ERR_STATE otherwise), sets `complete`, closes
 * and frees w (also on error). */
ms_status ms_actwriter_finalize(ms_actwriter *w, ms_err *err);
/* COLLECTIVE. Closes without marking complete (crash-like stop; resumable). NULL-safe. */
void ms_actwriter_close(ms_actwriter *w);

/* ---- reader (training, eval, dashboards). Not collective: every rank opens its own handle
 * (serial driver, read-only; many readers may share the file). */
typedef struct ms_actfile ms_actfile;

/* Opens a complete store; an incomplete one (no `complete` attribute) is refused with
 * MS_ERR_STATE naming the file and how many shards are done. meta (optional) receives the
 * attributes; meta->config_text stays owned by the file handle. Caller frees with
 * ms_actfile_close. */
ms_status ms_actfile_open(ms_actfile **f, const char *path, ms_actmeta *meta, ms_err *err);
void ms_actfile_close(ms_actfile *f);
const ms_actmeta *ms_actfile_meta(const ms_actfile *f);
const char *ms_actfile_path(const ms_actfile *f);
/* Rows [row0, row0+n) of /acts into out (n,d) float32 (float16 converted exactly). */
ms_status ms_actfile_read(ms_actfile *f, int64_t row0, int64_t n, float *out, ms_err *err);
/* Rows [row0, row0+n) of /acts as stored: (n,d) uint16 IEEE halves for float16 files, floats
 * for float32 ones (the stream converts only the rows it keeps). */
ms_status ms_actfile_read_raw(ms_actfile *f, int64_t row0, int64_t n, void *out, ms_err *err);
/* /index rows [row0, row0+n) into out (n,2); /tokens contexts [ctx0, ctx0+n) into (n,context). */
ms_status ms_actfile_read_index(ms_actfile *f, int64_t row0, int64_t n, int32_t *out,
                                ms_err *err);
ms_status ms_actfile_read_tokens(ms_actfile *f, int64_t ctx0, int64_t n, int32_t *out,
                                 ms_err *err);

/* ---- generation helpers (monosem generate / inspect) */
/* Independent. Pushes rows this process wrote so far to the OS (the serial driver buffers
 * chunks in the process; MPI-IO independent writes are already there), so that rows synced
 * before ms_actwriter_mark_done survive a kill -9 of this process. */
ms_status ms_actwriter_sync(ms_actwriter *w, ms_err *err);
/* Independent. As ms_actwriter_write_rows, with acts (n,d) already in the store's dtype
 * (IEEE half as uint16 for float16 stores, float for float32): no conversion inside. */
ms_status ms_actwriter_write_rows_raw(ms_actwriter *w, int64_t row0, int64_t n, const void *acts,
                                      const int32_t *index, ms_err *err);
/* Like ms_actfile_open but also opens an incomplete store (for inspection): *complete tells
 * whether `complete` is set, *shards_done counts /progress (-1 if unreadable). Rows of shards
 * not done hold undefined values. Caller frees with ms_actfile_close. */
ms_status ms_actfile_open_any(ms_actfile **f, const char *path, ms_actmeta *meta,
                              bool *complete, int64_t *shards_done, ms_err *err);

/* ---- half floats (io/half.c). IEEE binary16 as uint16_t bit patterns <-> float32: half ->
 * float is exact (NaN made quiet, payload kept), float -> half rounds to nearest even and
 * overflows to inf. The _n forms convert n values out <- in (caller's buffers, no overlap) with
 * the x86 F16C instructions when the CPU has them, bit-identical to the scalar code. Thread-safe
 * (the bulk table is built once, atomically). Environment: MONOSEM_NO_F16C set (any value)
 * forces the scalar path, read on every _n call: how tests and benchmarks compare the two
 * paths (not a test hook of ms_testhook's kind: it changes no behaviour, only the route). */
float ms_half_to_float(uint16_t h);
uint16_t ms_half_from_float(float f);
void ms_half_to_float_n(float *out, const uint16_t *in, size_t n);
void ms_half_from_float_n(uint16_t *out, const float *in, size_t n);

/* ---- shuffled data-parallel row stream for training (io/actstream.c).
 * The file's rows are cut into blocks of block_rows. Epoch e visits the blocks in a seeded
 * permutation (identity when !shuffle); consecutive blocks form windows of about window_rows
 * rows, and the rows of each window are permuted (seeded; identity when !shuffle). The stream
 * is the concatenation of the windows of epochs 0, 1, ...; global batch k is stream positions
 * [k*B, (k+1)*B) and rank r takes the contiguous slice ms_shard_range(B, r, size) of it. The
 * stream does not depend on the rank count, so the set of rows in every global batch is the
 * same for any number of ranks. A rank holds only its own rows of the current window (about
 * window_rows/size rows plus one block of staging), so memory is bounded by the window, never
 * by the file; every rank reads every block of a window (reads scale with ranks, not memory).
 * Rows with NaN/Inf are an error naming the row range, or skipped (and counted) when
 * skip_nonfinite: the whole window is scanned on every rank, so skipping is rank-agreed. */
typedef struct ms_streampos {
    int64_t epoch;       /* epoch of the current window */
    int64_t window;      /* window index within the epoch */
    int64_t window_start; /* stream position of the window's first row */
    int64_t next;        /* next global stream position to hand out (= k*B at a batch start) */
    int64_t skipped;     /* non-finite rows skipped so far (rank-agreed) */
} ms_streampos;

typedef struct ms_actstream_opts {
    int64_t batch;       /* global batch B */
    int64_t block_rows;  /* 0 = the file's chunk rows */
    int64_t window_rows; /* shuffle window (global); rounded up to whole blocks */
    bool shuffle;
    bool skip_nonfinite;
    bool repeat;         /* false: running past epoch 0 is an error (no repetition) */
    uint64_t seed;
    int64_t limit;       /* > 0: only stream positions < limit will be asked for (samples) */
    int64_t granule;     /* > 0: rank slices are whole granules of this many rows (batch a
                          * multiple, at least one granule per rank): the reproducible trainer's
                          * micro-shards; 0 = ms_shard_range over rows */
} ms_actstream_opts;

typedef struct ms_actstream ms_actstream;

/* Opens the stream for this rank (rank, size as plain ints). f stays owned by the caller and
 * must outlive the stream. pos == NULL starts at the beginning; otherwise resumes exactly at a
 * position saved by ms_actstream_pos (same file, options and batch; any rank count). */
ms_status ms_actstream_open(ms_actstream **s, ms_actfile *f, const ms_actstream_opts *o,
                            int rank, int size, const ms_streampos *pos, ms_err *err);
void ms_actstream_close(ms_actstream *s);
/* This rank's number of rows per global batch (its slice of B). */
int64_t ms_actstream_local_rows(const ms_actstream *s);
/* Next global batch: this rank's rows into out (local_rows, d) float32. */
ms_status ms_actstream_next(ms_actstream *s, float *out, ms_err *err);
/* Position to save (at a batch boundary it is identical on every rank). */
ms_streampos ms_actstream_pos(const ms_actstream *s);
/* Non-finite rows skipped so far, including the current window (rank-agreed). */
int64_t ms_actstream_skipped(const ms_actstream *s);
/* Bytes read from the file so far by this rank (for throughput reports). */
int64_t ms_actstream_bytes_read(const ms_actstream *s);

/* Pure index logic (unit-tested without MPI or files). */
/* Fisher-Yates permutation of [0,n) from a counter-based generator keyed by (seed, a, b). */
void ms_perm_seeded(int64_t *perm, int64_t n, uint64_t seed, uint64_t a, uint64_t b);
/* splitmix64 step: returns the next value and advances *state. */
uint64_t ms_splitmix64(uint64_t *state);

/* ===================================================================== HDF5 helpers */
/* (io/h5.c) The one place outside the activations store that speaks HDF5, so that no other
 * library or app includes hdf5.h. Conventions: an ms_h5id is an HDF5 hid_t (a file, dataset or
 * object handle); a negative id means failure. Calls return 0 / >= 0 on success and -1 (or a
 * negative id) on failure, and print nothing (HDF5's error stack is suppressed): the caller
 * words the one-line ms_err message, naming the file. Handles are owned by whoever opened
 * them and closed with the matching _close. Serial driver only, never collective: call on one
 * rank (the parallel activations store has its own writer). Not thread-safe (HDF5 is built
 * without thread safety). Element types are ms_safetensors_dtype values (F32, F64, I64, I32, U8). */
typedef int64_t ms_h5id;
#define MS_H5_MAX_RANK 8

/* Turns off HDF5's automatic printing of its error stack (18 lines before monosem's own one-line
 * message); every HDF5 failure is reported through ms_err instead. main calls it once. */
void ms_h5_quiet(void);

/* Writes tensors (F32, I64, I32 or U8 items, any shape) as root datasets of an HDF5 file, plus
 * string attributes (key/value pairs) on the root, built in memory then written atomically to
 * path. Not collective (serial driver): call on one rank. */
ms_status ms_h5_write_tensors(const char *path, const ms_safetensors_item *items, int n_items,
                              const char *const *attr_kv, int n_attr, ms_err *err);

/* Files: an existing file read-only (-1 if absent or not HDF5), or a new one (truncating). */
ms_h5id ms_h5_file_open(const char *path);
ms_h5id ms_h5_file_create(const char *path);
int ms_h5_file_close(ms_h5id f);

/* What an attribute or dataset holds: its element class. */
typedef enum ms_h5_kind { MS_H5_NONE = 0, MS_H5_INT, MS_H5_FLOAT, MS_H5_STRING, MS_H5_OTHER } ms_h5_kind;

/* Scalar attributes on an object (a file is its root group). Strings are written NUL-terminated
 * fixed-length: _str UTF-8 (NULL writes ""), _ascii ASCII. */
int ms_h5_attr_write_i64(ms_h5id obj, const char *name, int64_t v);
int ms_h5_attr_write_str(ms_h5id obj, const char *name, const char *v);
int ms_h5_attr_write_ascii(ms_h5id obj, const char *name, const char *v);
/* Class of attribute name (MS_H5_NONE if absent), its element count and rank (either may be NULL). */
ms_h5_kind ms_h5_attr_info(ms_h5id obj, const char *name, int64_t *npoints, int *rank);
/* Reads a numeric attribute converted to int64 (-1 if absent) or all its elements to double
 * (v holds npoints values). */
int ms_h5_attr_read_i64(ms_h5id obj, const char *name, int64_t *v);
int ms_h5_attr_read_f64(ms_h5id obj, const char *name, double *v);
/* A string attribute (fixed or variable length, any charset) as a malloc'd string, or NULL. */
char *ms_h5_attr_read_str(ms_h5id obj, const char *name);
/* Calls fn for each attribute of obj in name order; a nonzero return stops and is returned. */
int ms_h5_attr_iterate(ms_h5id obj, int (*fn)(const char *name, void *ctx), void *ctx);

/* A dataset found by ms_h5_dataset_visit: its path from the root, class, rank and dims. */
typedef struct ms_h5_dsinfo {
    const char *name; /* valid during the callback */
    ms_h5_kind kind;
    int rank;
    int64_t dims[MS_H5_MAX_RANK];
} ms_h5_dsinfo;
/* Calls fn for every dataset of rank <= MS_H5_MAX_RANK under the root (recursively, in name
 * order); a nonzero return stops. Returns < 0 when the walk fails. */
int ms_h5_dataset_visit(ms_h5id f, int (*fn)(const ms_h5_dsinfo *ds, void *ctx), void *ctx);
ms_h5id ms_h5_dataset_open(ms_h5id f, const char *name);
void ms_h5_dataset_close(ms_h5id d); /* negative ids ignored */
/* Rank (<= MS_H5_MAX_RANK, else -1) and dims of an open dataset. */
int ms_h5_dataset_dims(ms_h5id d, int *rank, int64_t dims[MS_H5_MAX_RANK]);
/* Reads (writes) the hyperslab start/count (rank entries each) of d, converted from (to) mem
 * elements in out (buf), row-major; start == NULL means the whole dataset. An empty count
 * reads nothing and succeeds. */
int ms_h5_dataset_read(ms_h5id d, ms_safetensors_dtype mem, int rank, const int64_t *start, const int64_t *count, void *out);
int ms_h5_dataset_write(ms_h5id d, ms_safetensors_dtype mem, int rank, const int64_t *start, const int64_t *count,
                        const void *buf);
/* A contiguous little-endian dataset of dims (rank >= 1); only MS_SAFETENSORS_F32 for now. */
ms_h5id ms_h5_dataset_create(ms_h5id f, const char *name, ms_safetensors_dtype type, int rank, const int64_t *dims);

/* ===================================================================== corpus */
/* Documents are read one at a time (memory bounded by the largest document); token shards
 * are read by range with pread. Files: io/corpus.c (globs, document readers, held-out split),
 * io/corpus_tokens.c (token shards, tokenized splits), io/corpus_tokenize.c (the tokenize core,
 * manifest, fingerprint).
 * Conventions: token ids are int32 in memory (2 or 4 bytes on disk), positions and counts
 * int64; what a function returns malloc'd is the caller's to free with the named _free/_close
 * (ms_doc contents are borrowed from the reader). Nothing here is collective or uses MPI: the
 * tokenize core takes (rank, size) as plain ints. A reader, shard or split handle is used by
 * one thread at a time. */

/* Token shard file (little-endian): 32-byte header
 *   char magic[8] = "MSTOKENS"; uint32 version = 1; uint32 dtype = bytes per token (2 or 4);
 *   uint64 count (tokens); uint64 checksum = first 8 bytes of sha256 of the token bytes read as
 *   a little-endian integer (0 = none: written before checksums)
 * then count tokens of dtype bytes each. A document is preceded by <|endoftext|>. */
#define MS_TOKSHARD_MAGIC "MSTOKENS"
#define MS_TOKSHARD_VERSION 1u
#define MS_TOKSHARD_HEADER 32
/* Manifest written by `monosem tokenize` into corpus.token_dir. */
#define MS_TOKENS_MANIFEST "manifest.json"

/* Expands glob patterns into malloc'd paths: each pattern's matches sorted, in pattern order,
 * duplicates dropped; a pattern matching nothing is an error (MS_ERR_IO naming it). Caller
 * frees with ms_corpus_paths_free. */
ms_status ms_corpus_expand(const char *const *patterns, int n_patterns, char ***paths,
                           int *n_paths, ms_err *err);
void ms_corpus_paths_free(char **paths, int n);

/* How to cut a file into documents. */
typedef struct ms_doc_opts {
    int format;             /* ms_corpus_format */
    const char *delimiter;  /* text: a line equal to this ends a document; NULL/"" = whole file */
    const char *text_field; /* jsonl: string field holding the document (default "text") */
    int32_t eot;            /* tokens: id separating documents (-1 = whole file is one doc) */
} ms_doc_opts;

/* One document. text/len for text and jsonl, ids/n_ids for token files; both point into the
 * reader and stay valid until the next ms_doc_reader_next. */
typedef struct ms_doc {
    const char *text;
    size_t len;
    const int32_t *ids;
    size_t n_ids;
    int64_t index; /* 0-based document index within its file */
    int64_t line;  /* 1-based line where it starts (text, jsonl); 0 for token files */
} ms_doc;

typedef struct ms_doc_reader ms_doc_reader;
/* Opens path; on error *r is NULL. Caller closes. */
ms_status ms_doc_reader_open(ms_doc_reader **r, const char *path, const ms_doc_opts *opts,
                             ms_err *err);
/* Next non-empty document: *got = false at the end. jsonl errors name file:line. */
ms_status ms_doc_reader_next(ms_doc_reader *r, ms_doc *doc, bool *got, ms_err *err);
void ms_doc_reader_close(ms_doc_reader *r);

/* Seeded held-out split by document: a pure function of (seed, file basename, document index
 * within the file), so it does not depend on rank count, file order or path prefix. */
bool ms_corpus_is_heldout(uint64_t seed, const char *path, int64_t doc_index, double fraction);

/* --- token shard writer: writes path.tmp.<pid>, ms_tokshard_commit fixes the header count,
 * fsyncs and renames into place (and frees w); ms_tokshard_abort removes the temp file. */
typedef struct ms_tokshard_writer ms_tokshard_writer;
ms_status ms_tokshard_create(ms_tokshard_writer **w, const char *path, int dtype_bytes,
                             ms_err *err);
/* Appends n ids; an id that does not fit dtype is MS_ERR_FORMAT. */
ms_status ms_tokshard_append(ms_tokshard_writer *w, const int32_t *ids, size_t n, ms_err *err);
int64_t ms_tokshard_writer_count(const ms_tokshard_writer *w);
ms_status ms_tokshard_commit(ms_tokshard_writer *w, ms_err *err);
void ms_tokshard_abort(ms_tokshard_writer *w);

/* --- token shard reader (header validated against the file size). */
typedef struct ms_tokshard {
    int fd;
    char *path;
    int dtype_bytes;
    int64_t count;
    uint64_t sum;  /* header bytes 24..31: first 8 bytes of sha256(token bytes); 0 = none */
    bool verified; /* set by the first read (which verifies the whole shard) */
} ms_tokshard;
/* Verifies the token bytes against the header's checksum (MS_ERR_FORMAT "...: corrupt: ...");
 * the first ms_tokshard_read of a handle does it, so a rank checks the shards it reads. */
ms_status ms_tokshard_verify(const ms_tokshard *s, ms_err *err);
ms_status ms_tokshard_open(ms_tokshard *s, const char *path, ms_err *err);
/* Reads tokens [start, start+n) widened to int32. */
ms_status ms_tokshard_read(const ms_tokshard *s, int64_t start, int64_t n, int32_t *out,
                           ms_err *err);
void ms_tokshard_close(ms_tokshard *s); /* safe on a zeroed struct */

/* --- a tokenized split (train or heldout) from token_dir/manifest.json: the shards of the
 * split concatenated into one stream of tokens. */
typedef struct ms_tokset {
    int n_shards;
    ms_tokshard *shards;
    int64_t *offsets; /* n_shards + 1: first token of each shard in the stream */
    int64_t count;    /* tokens in the split */
    int64_t n_docs;
    int32_t vocab_size, eot;
    char tokenizer_sha256[65];
} ms_tokset;
/* split is "train" or "heldout". An empty split opens with count 0. */
ms_status ms_tokset_open(ms_tokset *ts, const char *token_dir, const char *split, ms_err *err);
void ms_tokset_close(ms_tokset *ts); /* safe on a zeroed struct */
/* Reads tokens [start, start+n) of the stream. */
ms_status ms_tokset_read(const ms_tokset *ts, int64_t start, int64_t n, int32_t *out,
                         ms_err *err);
/* Contexts: non-overlapping windows of `context` tokens; window i starts at i*context. With
 * `target` the window carries one more token (the next-token target of its last position),
 * so n = floor((count - 1) / context) instead of floor(count / context). */
int64_t ms_tokset_n_contexts(const ms_tokset *ts, int64_t context, bool target);
ms_status ms_tokset_context(const ms_tokset *ts, int64_t i, int64_t context, bool target,
                            int32_t *out, ms_err *err);

/* --- tokenizing a corpus into shards (the core of `monosem tokenize`, MPI-free so it can be
 * tested by simulating ranks). Documents are grouped in order into chunks of about
 * chunk_bytes of input; chunk c is written by rank c % size as <out_dir>/train-<c>.bin and
 * heldout-<c>.bin, so the files do not depend on the rank count. Every rank reads (not
 * tokenizes) the whole corpus to find the chunk boundaries: cheap next to BPE encoding. */
typedef ms_status (*ms_encode_fn)(void *ctx, const char *text, size_t len, int32_t **ids,
                                  size_t *n, size_t *cap, ms_err *err);
typedef struct ms_tokenize_job {
    char **paths; /* expanded input files */
    int n_paths;
    ms_doc_opts doc;
    double heldout_fraction;
    uint64_t seed;
    int64_t chunk_bytes; /* input bytes per chunk (token files: 4 per id) */
    const char *out_dir;
    int32_t eot, vocab_size;
    ms_encode_fn encode; /* text formats */
    void *encode_ctx;
} ms_tokenize_job;
/* Per chunk, 4 counts: train tokens, train docs, heldout tokens, heldout docs. */
#define MS_CHUNK_STATS 4
/* Tokenizes this rank's chunks. *stats (malloc'd, caller frees) has MS_CHUNK_STATS entries per
 * chunk, zero for chunks of other ranks: sum them over ranks (allreduce) for the manifest. */
ms_status ms_corpus_tokenize_part(const ms_tokenize_job *job, int rank, int size,
                                  int64_t **stats, int64_t *n_chunks, ms_err *err);
/* Writes <out_dir>/manifest.json atomically from the summed stats, after deleting the shard
 * files (and temporaries) of earlier runs that it does not list. fingerprint identifies the
 * inputs and settings (see ms_corpus_fingerprint). */
ms_status ms_corpus_manifest_write(const ms_tokenize_job *job, const int64_t *stats,
                                   int64_t n_chunks, const char *tokenizer_sha256,
                                   const char *fingerprint, ms_err *err);
/* 16 hex digits over the input paths, sizes and mtimes, the split/chunk settings and the
 * tokenizer hash: a manifest with the same fingerprint means the shards are up to date. */
void ms_corpus_fingerprint(const ms_tokenize_job *job, const char *tokenizer_sha256,
                           char out[17]);
/* Reads the fingerprint of an existing manifest into out; false if none or unreadable. */
bool ms_corpus_manifest_fingerprint(const char *token_dir, char out[17]);
/* Identity of a tokenizer's files: sha256 of "<sha256(vocab)>\n<sha256(merges)>\n" (hex). */
ms_status ms_tokenizer_files_sha256(const char *vocab_path, const char *merges_path,
                                    char out[65], ms_err *err);

#ifdef __cplusplus
}
#endif
#endif
