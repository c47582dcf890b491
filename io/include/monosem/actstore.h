/* monosem/actstore.h: the activations store activations.h5: writer (io/actstore.c) and reader
 * (io/actfile.c).
 * Layout (docs/formats.md): /acts (N,d) float16|float32 chunked by rows, /tokens int32
 * (n_contexts, context), /index int32 (N,2) = (context, position) of each row, /progress uint8
 * (n_shards) = 1 when a shard's rows are written, and attributes; the root attribute `complete`
 * (int 1) is written last by ms_actwriter_finalize.
 * Conventions: rows are (N, d) row-major, one row per sampled token; row, context and shard
 * indices are int64 and 0-based. Handles (ms_actwriter, ms_actfile) are opaque and owned by the
 * caller until their _finalize/_close; arrays passed in stay the caller's. Writer calls are
 * COLLECTIVE or independent as marked, over the comm given at create/resume; readers are never
 * collective. A handle is used by one thread at a time (HDF5 is not thread-safe). */
#ifndef MONOSEM_ACTSTORE_H
#define MONOSEM_ACTSTORE_H

#include <stdbool.h>
#include <stdint.h>
#include "monosem/comm.h"
#include "monosem/status.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif
#endif
