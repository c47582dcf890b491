/* tests/fuzz/fuzz_util.h: what the harnesses share: inputs written as files in one private
 * temporary directory (the readers under test take paths), split into parts, and the check
 * that every error is one non-empty line. */
#ifndef MS_FUZZ_UTIL_H
#define MS_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monosem/io.h"

/* The harness's directory, made once per process (removed at exit with its files). */
static char fz_dir[64];
static inline void fz_cleanup(void)
{
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fz_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: cannot remove %s\n", fz_dir);
}
static inline const char *fz_tmpdir(void)
{
    if (!fz_dir[0]) {
        snprintf(fz_dir, sizeof fz_dir, "/tmp/msfuzz.XXXXXX");
        if (!mkdtemp(fz_dir)) abort();
        atexit(fz_cleanup);
    }
    return fz_dir;
}

/* Writes buf to <tmpdir>/name; returns the path (static storage per slot 0..3). */
static inline const char *fz_write(int slot, const char *name, const void *buf, size_t n)
{
    static char paths[4][256];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fz_tmpdir(), name);
    FILE *f = fopen(paths[slot], "wb");
    if (!f) abort();
    if (n && fwrite(buf, 1, n, f) != n) abort();
    fclose(f);
    return paths[slot];
}

/* Splits data at the first occurrence of the 4-byte marker "\n@@\n" (part b empty if none). */
static inline void fz_split(const uint8_t *data, size_t size, const uint8_t **a, size_t *na, const uint8_t **b,
                     size_t *nb)
{
    *a = data, *na = size, *b = data + size, *nb = 0;
    for (size_t i = 0; i + 4 <= size; i++)
        if (memcmp(data + i, "\n@@\n", 4) == 0) {
            *na = i;
            *b = data + i + 4;
            *nb = size - i - 4;
            return;
        }
}

/* An error must be one non-empty line naming something: anything else is a finding. */
static inline void fz_check_err(ms_status st, const ms_err *err)
{
    if (st == MS_OK) return;
    if (err->msg[0] == '\0' || strchr(err->msg, '\n')) abort();
}

#endif
