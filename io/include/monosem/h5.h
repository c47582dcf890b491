/* monosem/h5.h: the HDF5 helpers every layer uses instead of hdf5.h (io/h5.c).
 * The one place outside the activations store that speaks HDF5, so that no other library or app
 * includes hdf5.h.
 * Conventions: an ms_h5id is an HDF5 hid_t (a file, dataset or object handle); a negative id
 * means failure. Calls return 0 / >= 0 on success and -1 (or a negative id) on failure, and print
 * nothing (HDF5's error stack is suppressed): the caller words the one-line ms_err message,
 * naming the file. Handles are owned by whoever opened them and closed with the matching _close.
 * Serial driver only, never collective: call on one rank (the parallel activations store has its
 * own writer). Not thread-safe (HDF5 is built without thread safety). Element types are
 * ms_safetensors_dtype values (F32, F64, I64, I32, U8). */
#ifndef MONOSEM_H5_H
#define MONOSEM_H5_H

#include <stdint.h>
#include "monosem/safetensors.h"
#include "monosem/status.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif
#endif
