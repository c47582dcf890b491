/* monosem/status.h: status codes and one-line errors (io/status.c), the version, MS_INVARIANT.
 * Conventions: every fallible call returns an ms_status and fills an ms_err (may be NULL) with
 * one line naming the file, the place (file:line:col for text inputs) and what was expected; the
 * first error set wins. ms_err is a plain value (no allocation, nothing to free). Pure and
 * thread-safe, except ms_invariant_fail (io/comm.c), which aborts every rank. */
#ifndef MONOSEM_STATUS_H
#define MONOSEM_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#define MS_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define MS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MS_PRINTF(a, b)
#endif

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

#ifdef __cplusplus
}
#endif
#endif
