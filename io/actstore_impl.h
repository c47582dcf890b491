/* Private to libmsio: the activations store's helpers shared by its writer (io/actstore.c) and
 * reader (io/actfile.c). Not installed; handles are hid_t, caller closes what it gets. */
#ifndef MONOSEM_ACTSTORE_IMPL_H
#define MONOSEM_ACTSTORE_IMPL_H

#include <hdf5.h>

#include "monosem/io.h"

/* The IEEE binary16 file type exactly as h5py defines it, so numpy sees float16. */
hid_t actstore_f16_type(void);
/* sha256 (hex) of the provenance attributes as one canonical text (the `meta_sha256` attribute). */
void actstore_meta_digest(const ms_actmeta *m, const char *config_text, char out[65]);
/* Selects rows [row0, row0+n) x all columns of a 2-D dataset into *fsp and a matching *msp. */
int actstore_select_rows(hid_t ds, int64_t row0, int64_t n, int64_t cols, hid_t *fsp, hid_t *msp);
/* The root attributes into m (and the config text into *cfg, malloc'd, if cfg). */
ms_status actstore_read_meta(hid_t file, const char *path, ms_actmeta *m, char **cfg, ms_err *err);
/* /acts' dtype, shape and chunking checked against and filled into m. */
ms_status actstore_read_acts_layout(hid_t acts, const char *path, ms_actmeta *m, ms_err *err);
/* Shards marked done in /progress (n of them; into done[] if not NULL); -1 if unreadable. */
int64_t actstore_count_done(hid_t progress, int64_t n, uint8_t *done);

#endif
