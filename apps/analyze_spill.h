/* apps/analyze_spill.h: an SAE's sparse codes from analyze's pass 1, kept in an anonymous local
 * file so pass 2 reads them back instead of running the encoder again (the encoder GEMM is most
 * of a pass). Disk, not memory: 4 + 8·L0 bytes per token; the file is unlinked at creation, so
 * it vanishes when the process ends, however it ends. */
#ifndef MONOSEM_ANALYZE_SPILL_H
#define MONOSEM_ANALYZE_SPILL_H

#include <stdio.h>

#include "monosem/io.h"

typedef struct app_spill {
    FILE *f;
    char path[4096];  /* where it was created (for messages; already unlinked) */
    int32_t *pairs_i; /* (U) staging of one row's indices */
    float *pairs_v;   /* (U) and values */
    int64_t U;
    int64_t bytes;
} app_spill;

/* Creates the file in dir (NULL or "": $TMPDIR, else /tmp) for rows of U units. Caller frees with
 * app_spill_free. */
ms_status app_spill_init(app_spill *s, const char *dir, int64_t U, ms_err *err);
void app_spill_free(app_spill *s); /* safe on a zeroed struct */
/* Appends n dense rows f (n, U): per row its count and (index, value) pairs of non-zeros. */
ms_status app_spill_write(app_spill *s, const float *f, int64_t n, ms_err *err);
/* After the last write: back to the start for reading. */
ms_status app_spill_rewind(app_spill *s, ms_err *err);
/* Reads the next n rows back into f (n, U) dense (zeros elsewhere), bitwise as written. */
ms_status app_spill_read(app_spill *s, float *f, int64_t n, ms_err *err);

#endif
