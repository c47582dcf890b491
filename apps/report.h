/* apps/report.h: the report stage's parts — a JSON text buffer, the generic reader of analysis
 * HDF5 files (per-unit columns, per-block slices, globals), decoder-cosine neighbours, the
 * embedded static assets. Internal to the monosem command; rank 0 calls all of it. */
#ifndef MONOSEM_REPORT_H
#define MONOSEM_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "monosem/io.h"

/* Units per data block file (data/<dict>/block-NNNNN.js): one block is what a unit page loads. */
#define MS_REPORT_BLOCK 64
/* Nearest units listed per other dictionary. */
#define MS_REPORT_NEAREST 5

/* ------------------------------------------------------------------ growing text buffer */
typedef struct ms_rbuf {
    char *p;
    size_t len, cap;
    bool oom; /* set on the first failed growth; later appends are dropped */
} ms_rbuf;
void ms_rbuf_free(ms_rbuf *b);
void ms_rbuf_clear(ms_rbuf *b);
void ms_rbuf_put(ms_rbuf *b, const char *s, size_t n);
void ms_rbuf_puts(ms_rbuf *b, const char *s);
void ms_rbuf_printf(ms_rbuf *b, const char *fmt, ...) MS_PRINTF(2, 3);
/* A JSON number: %.5g, or null for NaN/inf (JSON has neither). */
void ms_rbuf_num(ms_rbuf *b, double v);
/* A decimal integer. */
void ms_rbuf_int(ms_rbuf *b, int64_t v);
/* A JSON string literal of n bytes; invalid UTF-8 becomes U+FFFD so the .js file stays valid. */
void ms_rbuf_str(ms_rbuf *b, const char *s, size_t n);
/* Writes the buffer to path (plain write: the report is built in a temporary directory that is
 * renamed when complete). */
ms_status ms_rbuf_write(const ms_rbuf *b, const char *path, ms_err *err);

/* ------------------------------------------------------------------ analysis HDF5 file */
/* One numeric dataset of an analysis file. */
typedef struct ms_rds {
    char name[128]; /* path inside the file without the leading '/', e.g. "top/acts" */
    int rank;
    int64_t dims[8];
    bool is_int;
    bool per_unit; /* dims[0] == the file's unit count */
} ms_rds;

typedef struct ms_ranalysis {
    char *path;
    int64_t n_units;
    int n_ds;
    ms_rds *ds;
    int64_t hid; /* hid_t of the open file */
} ms_ranalysis;

/* Opens an analysis file and lists its numeric datasets. The unit count is the root attribute
 * n_units (or d_sae / n_features / n_neurons), else the most common leading dimension.
 * Close with ms_ranalysis_close (also on a zeroed struct). */
ms_status ms_ranalysis_open(ms_ranalysis *a, const char *path, ms_err *err);
void ms_ranalysis_close(ms_ranalysis *a);
/* Appends the root attributes as JSON object members ("name":value,...) to b (numbers,
 * numeric arrays and strings). */
ms_status ms_ranalysis_attrs_json(const ms_ranalysis *a, ms_rbuf *b, ms_err *err);
/* Appends dataset ds, units [u0,u1) (all of it if !per_unit), as nested JSON arrays: one
 * element per unit. Memory: the slab read (bounded by block size x per-unit extent). */
ms_status ms_ranalysis_slab_json(const ms_ranalysis *a, const ms_rds *ds, int64_t u0, int64_t u1, ms_rbuf *b,
                                 ms_err *err);
/* Reads, for units [u0,u1), the element ds[u, idx[0], idx[1], ...] (idx has rank-1 entries;
 * NULL for a 1-D dataset) as int32 into out. Memory: one value per unit. */
ms_status ms_ranalysis_pick_i32(const ms_ranalysis *a, const ms_rds *ds, const int64_t *idx, int64_t u0, int64_t u1,
                                int32_t *out, ms_err *err);
/* The token strings stored in the file (vocab_offsets (V+1), vocab_bytes): malloc'd, caller
 * frees both; *n_tokens = 0 and NULLs when the file has none. */
ms_status ms_ranalysis_vocab(const ms_ranalysis *a, int64_t **offsets, int64_t *n_tokens, unsigned char **bytes,
                             ms_err *err);
const ms_rds *ms_ranalysis_find(const ms_ranalysis *a, const char *name);
/* Every value of the integer dataset ds is a token id of a vocabulary of n_vocab tokens, or -1
 * (none: a context position before the text); else MS_ERR_FORMAT naming the file, dataset,
 * unit and value. Reads ~4 MB at a time. */
ms_status ms_ranalysis_check_ids(const ms_ranalysis *a, const ms_rds *ds, int64_t n_vocab, ms_err *err);

/* Reads a float32 2-D dataset (rows, cols) of an HDF5 file into a malloc'd array (caller
 * frees). */
ms_status ms_report_read_matrix(const char *path, const char *name, float **out, int64_t *rows, int64_t *cols,
                                ms_err *err);

/* ------------------------------------------------------------------ decoder-cosine neighbours */
/* Unit directions of one dictionary: rows (n, d), L2-normalised in place by ms_rdict_normalize. */
typedef struct ms_rdict {
    float *dirs; /* (n, d); NULL for the identity dictionary (neurons: direction i = e_i) */
    int64_t n, d;
} ms_rdict;
void ms_rdict_normalize(ms_rdict *dict);
/* For rows [r0,r1) of dictionary a, the k most similar units of b by cosine (descending;
 * ties to the lower id). ids (r1-r0, k) int32, cos (r1-r0, k); entries past b->n are -1/NaN.
 * work holds (r1-r0) x b->n floats. Dimensions of a and b must agree. */
void ms_rdict_nearest(int32_t *ids, float *cos, const ms_rdict *a, int64_t r0, int64_t r1, const ms_rdict *b, int k,
                      float *work);

/* ------------------------------------------------------------------ embedded assets */
typedef struct ms_rasset {
    const char *name; /* file name in the report directory */
    const unsigned char *data;
    size_t len;
} ms_rasset;
extern const ms_rasset ms_report_assets[];
extern const int ms_report_n_assets;

#endif
