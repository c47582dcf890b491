/* activations.h5: the reader (serial, read-only; one handle per rank) of a complete store, and
 * the inspecting open of an incomplete one. The writer and the shared helpers: io/actstore.c. */
#include "monosem/io.h"
#include "actstore_impl.h"

#include <hdf5.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ reader */

struct ms_actfile {
    char *path;
    hid_t file, acts, index, tokens, f16;
    ms_actmeta meta;
    char *config_text;
    uint16_t *scratch;
    size_t scratch_n;
};

void ms_actfile_close(ms_actfile *f)
{
    if (!f) return;
    if (f->acts >= 0) H5Dclose(f->acts);
    if (f->index >= 0) H5Dclose(f->index);
    if (f->tokens >= 0) H5Dclose(f->tokens);
    if (f->f16 >= 0) H5Tclose(f->f16);
    if (f->file >= 0) H5Fclose(f->file);
    free(f->config_text);
    free(f->scratch);
    free(f->path);
    free(f);
}

ms_status ms_actfile_open(ms_actfile **out, const char *path, ms_actmeta *meta, ms_err *err)
{
    /* the same open as for inspection, plus the verdict: training never reads a partial file */
    bool complete = false;
    int64_t nd = 0;
    ms_status st = ms_actfile_open_any(out, path, meta, &complete, &nd, err);
    if (st || complete) return st;
    int64_t n_shards = (*out)->meta.n_shards;
    ms_actfile_close(*out);
    *out = NULL;
    return ms_err_set(err, MS_ERR_STATE,
                      "%s: incomplete activations file (%lld of %lld shards done, no "
                      "'complete' attribute): rerun `monosem generate` to finish it",
                      path, (long long)nd, (long long)n_shards);
}

const ms_actmeta *ms_actfile_meta(const ms_actfile *f)
{
    return &f->meta;
}

const char *ms_actfile_path(const ms_actfile *f)
{
    return f->path;
}

static ms_status read_rows(ms_actfile *f, hid_t ds, hid_t mtype, int64_t rows_total, int64_t row0,
                           int64_t n, int64_t cols, void *buf, const char *what, ms_err *err)
{
    if (ds < 0) return ms_err_set(err, MS_ERR_FORMAT, "%s: no %s dataset", f->path, what);
    if (row0 < 0 || n < 0 || row0 + n > rows_total)
        return ms_err_set(err, MS_ERR_USAGE, "%s: %s rows [%lld,%lld) outside [0,%lld)", f->path,
                          what, (long long)row0, (long long)(row0 + n), (long long)rows_total);
    if (n == 0) return MS_OK;
    hid_t fsp, msp;
    if (actstore_select_rows(ds, row0, n, cols, &fsp, &msp) < 0)
        return ms_err_set(err, MS_ERR_IO, "%s: %s: cannot select rows", f->path, what);
    herr_t r = H5Dread(ds, mtype, msp, fsp, H5P_DEFAULT, buf);
    H5Sclose(fsp);
    H5Sclose(msp);
    if (r < 0)
        return ms_err_set(err, MS_ERR_IO, "%s: reading %s rows [%lld,%lld) failed", f->path, what,
                          (long long)row0, (long long)(row0 + n));
    return MS_OK;
}

ms_status ms_actfile_read(ms_actfile *f, int64_t row0, int64_t n, float *out, ms_err *err)
{
    const int64_t d = f->meta.d;
    if (f->meta.dtype == MS_DTYPE_F32)
        return read_rows(f, f->acts, H5T_NATIVE_FLOAT, f->meta.n_rows, row0, n, d, out, "/acts",
                         err);
    /* float16: read the raw halves (no HDF5 soft conversion, which is slow) and convert */
    size_t need = (size_t)(n > 0 ? n * d : 0);
    if (need > f->scratch_n) {
        uint16_t *s = realloc(f->scratch, need * sizeof *s);
        if (!s) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", f->path);
        f->scratch = s;
        f->scratch_n = need;
    }
    ms_status st =
        read_rows(f, f->acts, f->f16, f->meta.n_rows, row0, n, d, f->scratch, "/acts", err);
    if (!st) ms_half_to_float_n(out, f->scratch, need);
    return st;
}

ms_status ms_actfile_read_raw(ms_actfile *f, int64_t row0, int64_t n, void *out, ms_err *err)
{
    return read_rows(f, f->acts, f->meta.dtype == MS_DTYPE_F16 ? f->f16 : H5T_NATIVE_FLOAT,
                     f->meta.n_rows, row0, n, f->meta.d, out, "/acts", err);
}

ms_status ms_actfile_read_index(ms_actfile *f, int64_t row0, int64_t n, int32_t *out,
                                ms_err *err)
{
    return read_rows(f, f->index, H5T_NATIVE_INT32, f->meta.n_rows, row0, n, 2, out, "/index",
                     err);
}

ms_status ms_actfile_read_tokens(ms_actfile *f, int64_t ctx0, int64_t n, int32_t *out,
                                 ms_err *err)
{
    return read_rows(f, f->tokens, H5T_NATIVE_INT32, f->meta.n_contexts, ctx0, n,
                     f->meta.context, out, "/tokens", err);
}

ms_status ms_actfile_open_any(ms_actfile **out, const char *path, ms_actmeta *meta,
                              bool *complete, int64_t *shards_done, ms_err *err)
{
    *out = NULL;
    ms_h5_quiet();
    ms_actfile *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    }
    f->file = f->acts = f->index = f->tokens = -1;
    f->f16 = actstore_f16_type();
    ms_status st = MS_OK;
    if (!ms_path_exists(path)) {
        st = ms_err_set(err, MS_ERR_IO, "%s: activations file not found", path);
        goto fail;
    }
    f->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f->file < 0) {
        st = access(path, R_OK) != 0 ? ms_err_set(err, MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno))
                                     : ms_err_set(err, MS_ERR_FORMAT, "%s: cannot open as HDF5", path);
        goto fail;
    }
    st = actstore_read_meta(f->file, path, &f->meta, &f->config_text, err);
    if (st) goto fail;
    f->acts = H5Dopen2(f->file, "acts", H5P_DEFAULT);
    if (f->acts < 0) {
        st = ms_err_set(err, MS_ERR_FORMAT, "%s: no /acts dataset", path);
        goto fail;
    }
    st = actstore_read_acts_layout(f->acts, path, &f->meta, err);
    if (st) goto fail;
    char *want = ms_h5_attr_read_str(f->file, "meta_sha256"); /* absent in files from before */
    if (want) {
        char got[65];
        actstore_meta_digest(&f->meta, f->config_text, got);
        if (strcmp(got, want) != 0)
            st = ms_err_set(err, MS_ERR_FORMAT,
                            "%s: corrupt: its attributes (shape, provenance, config) do not match meta_sha256 "
                            "(changed after it was written)", path);
        free(want);
        if (st) goto fail;
    }
    int64_t c = 0;
    *complete = ms_h5_attr_read_i64(f->file, "complete", &c) >= 0 && c == 1;
    hid_t pr = H5Dopen2(f->file, "progress", H5P_DEFAULT);
    *shards_done = pr >= 0 ? actstore_count_done(pr, f->meta.n_shards, NULL) : -1;
    if (pr >= 0) H5Dclose(pr);
    f->index = H5Dopen2(f->file, "index", H5P_DEFAULT);
    f->tokens = H5Dopen2(f->file, "tokens", H5P_DEFAULT);
    f->meta.config_text = f->config_text;
    if (meta) *meta = f->meta;
    *out = f;
    return MS_OK;
fail:
    ms_actfile_close(f);
    return st;
}
