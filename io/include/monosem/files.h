/* monosem/files.h: file helpers, sha256, FNV-1a and strict integer parsing (io/files.c).
 * Conventions: paths are NUL-terminated; what a call returns malloc'd (ms_file_read_all's buffer,
 * ms_path_join's string) is the caller's to free(); hex digests are written into the caller's
 * char[65]. Writes are atomic (temp file, fsync, rename). Not collective; thread-safe (no shared
 * state). */
#ifndef MONOSEM_FILES_H
#define MONOSEM_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "monosem/status.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif
#endif
