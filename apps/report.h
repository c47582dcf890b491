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
typedef struct app_rbuf {
    char *p;
    size_t len, cap;
    bool oom; /* set on the first failed growth; later appends are dropped */
} app_rbuf;
void app_rbuf_free(app_rbuf *b);
void app_rbuf_clear(app_rbuf *b);
void app_rbuf_put(app_rbuf *b, const char *s, size_t n);
void app_rbuf_puts(app_rbuf *b, const char *s);
void app_rbuf_printf(app_rbuf *b, const char *fmt, ...) MS_PRINTF(2, 3);
/* A JSON number: %.5g, or null for NaN/inf (JSON has neither). */
void app_rbuf_num(app_rbuf *b, double v);
/* A decimal integer. */
void app_rbuf_int(app_rbuf *b, int64_t v);
/* A JSON string literal of n bytes; invalid UTF-8 becomes U+FFFD so the .js file stays valid. */
void app_rbuf_str(app_rbuf *b, const char *s, size_t n);
/* Writes the buffer to path (plain write: the report is built in a temporary directory that is
 * renamed when complete). */
ms_status app_rbuf_write(const app_rbuf *b, const char *path, ms_err *err);

/* ------------------------------------------------------------------ analysis HDF5 file */
/* One numeric dataset of an analysis file. */
typedef struct app_rds {
    char name[128]; /* path inside the file without the leading '/', e.g. "top/acts" */
    int rank;
    int64_t dims[8];
    bool is_int;
    bool per_unit; /* dims[0] == the file's unit count */
} app_rds;

typedef struct app_ranalysis {
    char *path;
    int64_t n_units;
    int n_ds;
    app_rds *ds;
    int64_t hid; /* hid_t of the open file */
} app_ranalysis;

/* Opens an analysis file and lists its numeric datasets. The unit count is the root attribute
 * n_units (or d_sae / n_features / n_neurons), else the most common leading dimension.
 * Close with app_ranalysis_close (also on a zeroed struct). */
ms_status app_ranalysis_open(app_ranalysis *a, const char *path, ms_err *err);
void app_ranalysis_close(app_ranalysis *a);
/* Appends the root attributes as JSON object members ("name":value,...) to b (numbers,
 * numeric arrays and strings). */
ms_status app_ranalysis_attrs_json(const app_ranalysis *a, app_rbuf *b, ms_err *err);
/* Appends dataset ds, units [u0,u1) (all of it if !per_unit), as nested JSON arrays: one
 * element per unit. Memory: the slab read (bounded by block size x per-unit extent). */
ms_status app_ranalysis_slab_json(const app_ranalysis *a, const app_rds *ds, int64_t u0, int64_t u1, app_rbuf *b,
                                 ms_err *err);
/* Reads, for units [u0,u1), the element ds[u, idx[0], idx[1], ...] (idx has rank-1 entries;
 * NULL for a 1-D dataset) as int32 into out. Memory: one value per unit. */
ms_status app_ranalysis_pick_i32(const app_ranalysis *a, const app_rds *ds, const int64_t *idx, int64_t u0, int64_t u1,
                                int32_t *out, ms_err *err);
/* The token strings stored in the file (vocab_offsets (V+1), vocab_bytes): malloc'd, caller
 * frees both; *n_tokens = 0 and NULLs when the file has none. */
ms_status app_ranalysis_vocab(const app_ranalysis *a, int64_t **offsets, int64_t *n_tokens, unsigned char **bytes,
                             ms_err *err);
const app_rds *app_ranalysis_find(const app_ranalysis *a, const char *name);
/* Every value of the integer dataset ds is a token id of a vocabulary of n_vocab tokens, or -1
 * (none: a context position before the text); else MS_ERR_FORMAT naming the file, dataset,
 * unit and value. Reads ~4 MB at a time. */
ms_status app_ranalysis_check_ids(const app_ranalysis *a, const app_rds *ds, int64_t n_vocab, ms_err *err);

/* Reads a float32 2-D dataset (rows, cols) of an HDF5 file into a malloc'd array (caller
 * frees). */
ms_status app_report_read_matrix(const char *path, const char *name, float **out, int64_t *rows, int64_t *cols,
                                ms_err *err);

/* ------------------------------------------------------------------ decoder-cosine neighbours */
/* Unit directions of one dictionary: rows (n, d), L2-normalised in place by app_rdict_normalize. */
typedef struct app_rdict {
    float *dirs; /* (n, d); NULL for the identity dictionary (neurons: direction i = e_i) */
    int64_t n, d;
} app_rdict;
void app_rdict_normalize(app_rdict *dict);
/* For rows [r0,r1) of dictionary a, the k most similar units of b by cosine (descending;
 * ties to the lower id). ids (r1-r0, k) int32, cos (r1-r0, k); entries past b->n are -1/NaN.
 * work holds (r1-r0) x b->n floats. Dimensions of a and b must agree. */
void app_rdict_nearest(int32_t *ids, float *cos, const app_rdict *a, int64_t r0, int64_t r1, const app_rdict *b, int k,
                      float *work);

/* ------------------------------------------------------------------ embedded assets */
typedef struct app_rasset {
    const char *name; /* file name in the report directory */
    const unsigned char *data;
    size_t len;
} app_rasset;
extern const app_rasset app_report_assets[];
extern const int app_report_n_assets;

#endif
