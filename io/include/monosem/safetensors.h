/* monosem/safetensors.h: the safetensors reader and writer (io/safetensors.c).
 * Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape,
 * data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the raw little-endian data
 * (offsets relative to the end of the header). The reader validates the header fully (dtype,
 * shape, offsets inside the data and matching dtype x shape, no overlaps) before any tensor is
 * read.
 * Conventions: shapes are row-major int64 dims (ndim <= MS_SAFETENSORS_MAX_DIMS), offsets in
 * bytes; an ms_safetensors owns every string and array in it (ms_safetensors_close frees them,
 * also after a failed open); items and metadata passed to the writers stay the caller's. Writers
 * are atomic (temp file, fsync, rename). Not collective; one handle per thread (reads share no
 * state). */
#ifndef MONOSEM_SAFETENSORS_H
#define MONOSEM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "monosem/status.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif
#endif
