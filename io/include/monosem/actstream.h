/* monosem/actstream.h: the trainer's shuffled, data-parallel row stream over an activations
 * store (io/actstream.c).
 * Conventions: not collective (rank and size are plain ints; every rank computes the same stream
 * and reads its own slice); out buffers are the caller's, (local_rows, d) float32; the stream
 * borrows the ms_actfile and frees only itself (ms_actstream_close). One thread per stream. */
#ifndef MONOSEM_ACTSTREAM_H
#define MONOSEM_ACTSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include "monosem/actstore.h"
#include "monosem/status.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif
#endif
