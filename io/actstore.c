/* activations.h5: the writer (parallel HDF5, one hyperslab per rank) and the helpers it shares
 * with the reader (io/actfile.c). Layout documented in docs/formats.md; half floats in
 * io/half.c, the generic HDF5 helpers (attributes, quieting) in io/h5.c. */
#include "monosem/io.h"
#include "actstore_impl.h"

#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* ------------------------------------------------ helpers shared with the reader (actstore_impl.h) */

/* The IEEE binary16 file type exactly as h5py defines it, so numpy sees float16. */
hid_t actstore_f16_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    return t;
}

/* sha256 (hex) of the provenance attributes as one canonical text, stored as `meta_sha256`
 * and checked by readers: a flipped attribute (a shape, the model hash, the config) is an
 * error, not a silently different description of the rows. */
void actstore_meta_digest(const ms_actmeta *m, const char *config_text, char out[65])
{
    size_t cl = config_text ? strlen(config_text) : 0;
    size_t n = 1024 + cl;
    char *buf = malloc(n);
    if (!buf) {
        out[0] = 0;
        return;
    }
    int k = snprintf(buf, n,
                     "v%d|d %lld|rows %lld|contexts %lld|context %lld|shards %lld|seed %lld|%s|hook %s|"
                     "model %s|tokenizer %s|config_hash %s|version %s|config ",
                     MS_ACTSTORE_VERSION, (long long)m->d, (long long)m->n_rows, (long long)m->n_contexts,
                     (long long)m->context, (long long)m->n_shards, (long long)m->seed,
                     m->dtype == MS_DTYPE_F16 ? "float16" : "float32", m->hook, m->model_sha256,
                     m->tokenizer_sha256, m->config_hash, m->version[0] ? m->version : MS_VERSION_STRING);
    if (cl) memcpy(buf + k, config_text, cl);
    ms_sha256_buf(buf, (size_t)k + cl, out);
    free(buf);
}

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

/* Selects rows [row0, row0+n) x all columns of a 2-D dataset; returns the file and memory
 * spaces (caller closes). */
int actstore_select_rows(hid_t ds, int64_t row0, int64_t n, int64_t cols, hid_t *fsp, hid_t *msp)
{
    *fsp = H5Dget_space(ds);
    hsize_t start[2] = {(hsize_t)row0, 0}, count[2] = {(hsize_t)n, (hsize_t)cols};
    int nd = H5Sget_simple_extent_ndims(*fsp);
    if (H5Sselect_hyperslab(*fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0) {
        H5Sclose(*fsp);
        return -1;
    }
    *msp = H5Screate_simple(nd, count, NULL);
    return 0;
}

static int64_t default_chunk_rows(int64_t d, int dtype)
{
    int64_t bytes = d * (dtype == MS_DTYPE_F16 ? 2 : 4);
    int64_t r = (1 << 20) / (bytes > 0 ? bytes : 1);
    return r < 1 ? 1 : r;
}

/* ------------------------------------------------------------------ writer */

struct ms_actwriter {
    char *path;
    hid_t file, acts, tokens, index, progress, f16;
    ms_actmeta meta;
    uint16_t *scratch; /* f16 conversion buffer, grown as needed */
    size_t scratch_n;
    bool parallel;
    ms_comm comm; /* valid when parallel */
};

static hid_t writer_fapl(const ms_comm *comm)
{
    return comm && comm->size > 1 && comm->mpi_comm ? (hid_t)ms_comm_h5_fapl(comm) : H5Pcreate(H5P_FILE_ACCESS);
}

static void writer_free(ms_actwriter *w)
{
    if (!w) return;
    if (w->acts >= 0) H5Dclose(w->acts);
    if (w->tokens >= 0) H5Dclose(w->tokens);
    if (w->index >= 0) H5Dclose(w->index);
    if (w->progress >= 0) H5Dclose(w->progress);
    if (w->f16 >= 0) H5Tclose(w->f16);
    if (w->file >= 0) H5Fclose(w->file);
    free(w->scratch);
    free(w->path);
    free(w);
}

static ms_actwriter *writer_new(const char *path, const ms_comm *comm)
{
    ms_actwriter *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->file = w->acts = w->tokens = w->index = w->progress = w->f16 = -1;
    w->path = strdup(path);
    w->parallel = comm && comm->size > 1 && comm->mpi_comm;
    if (w->parallel) w->comm = *comm;
    if (!w->path) {
        free(w);
        return NULL;
    }
    w->f16 = actstore_f16_type();
    return w;
}

static hid_t create_2d(hid_t file, const char *name, hid_t type, int64_t rows, int64_t cols,
                       int64_t chunk_rows)
{
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (rows > 0) {
        hsize_t ch[2] = {(hsize_t)(chunk_rows < rows ? chunk_rows : rows), (hsize_t)cols};
        if (ch[0] < 1) ch[0] = 1;
        H5Pset_chunk(dcpl, 2, ch);
    }
    /* never write fill values: an 8 TB store must not be written twice */
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    hid_t ds = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return ds;
}

static ms_status check_meta(const ms_actmeta *m, const char *path, ms_err *err)
{
    if (m->n_rows < 0 || m->d < 1 || m->n_contexts < 0 || m->context < 1 || m->n_shards < 1 ||
        (m->dtype != MS_DTYPE_F16 && m->dtype != MS_DTYPE_F32) || m->chunk_rows < 0)
        return ms_err_set(err, MS_ERR_USAGE,
                          "%s: invalid store shape (N=%lld d=%lld contexts=%lld context=%lld "
                          "shards=%lld): expected N>=0, d>=1, context>=1, shards>=1",
                          path, (long long)m->n_rows, (long long)m->d, (long long)m->n_contexts,
                          (long long)m->context, (long long)m->n_shards);
    return MS_OK;
}

ms_status ms_actwriter_create(ms_actwriter **out, const char *path, const ms_actmeta *meta,
                              const ms_comm *comm, ms_err *err)
{
    *out = NULL;
    ms_status st = check_meta(meta, path, err);
    if (st) return st;
    ms_h5_quiet();
    ms_actwriter *w = writer_new(path, comm);
    if (!w) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    w->meta = *meta;
    w->meta.config_text = NULL;
    if (w->meta.chunk_rows == 0) w->meta.chunk_rows = default_chunk_rows(meta->d, meta->dtype);
    hid_t fapl = writer_fapl(comm);
    w->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (w->file < 0) {
        writer_free(w);
        return ms_err_set(err, MS_ERR_IO, "%s: cannot create the activations file: %s", path, ms_create_error(path));
    }
    hid_t at = meta->dtype == MS_DTYPE_F16 ? w->f16 : H5T_IEEE_F32LE;
    w->acts = create_2d(w->file, "acts", at, meta->n_rows, meta->d, w->meta.chunk_rows);
    w->index = create_2d(w->file, "index", H5T_STD_I32LE, meta->n_rows, 2, 1 << 16);
    w->tokens = create_2d(w->file, "tokens", H5T_STD_I32LE, meta->n_contexts, meta->context,
                          (1 << 20) / (4 * meta->context) + 1);
    hsize_t ns = (hsize_t)meta->n_shards;
    hid_t sp = H5Screate_simple(1, &ns, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    uint8_t zero = 0;
    H5Pset_fill_value(dcpl, H5T_NATIVE_UINT8, &zero);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_ALLOC);
    w->progress = H5Dcreate2(w->file, "progress", H5T_STD_U8LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    herr_t r = 0;
    if (w->acts < 0 || w->index < 0 || w->tokens < 0 || w->progress < 0) r = -1;
    hid_t root = w->file;
    r |= ms_h5_attr_write_i64(root, "format_version", MS_ACTSTORE_VERSION);
    r |= ms_h5_attr_write_i64(root, "d", meta->d);
    r |= ms_h5_attr_write_i64(root, "n_rows", meta->n_rows);
    r |= ms_h5_attr_write_i64(root, "n_contexts", meta->n_contexts);
    r |= ms_h5_attr_write_i64(root, "context", meta->context);
    r |= ms_h5_attr_write_i64(root, "n_shards", meta->n_shards);
    r |= ms_h5_attr_write_i64(root, "seed", meta->seed);
    r |= ms_h5_attr_write_str(root, "dtype", meta->dtype == MS_DTYPE_F16 ? "float16" : "float32");
    r |= ms_h5_attr_write_str(root, "hook", meta->hook);
    r |= ms_h5_attr_write_str(root, "model_sha256", meta->model_sha256);
    r |= ms_h5_attr_write_str(root, "tokenizer_sha256", meta->tokenizer_sha256);
    r |= ms_h5_attr_write_str(root, "config_hash", meta->config_hash);
    r |= ms_h5_attr_write_str(root, "config", meta->config_text);
    r |= ms_h5_attr_write_str(root, "version", meta->version[0] ? meta->version : MS_VERSION_STRING);
    char digest[65];
    actstore_meta_digest(meta, meta->config_text, digest);
    r |= ms_h5_attr_write_str(root, "meta_sha256", digest);
    /* every rank flushes (collective) and the ranks agree on failure: under MPI-IO only some
     * ranks may see a metadata write fail (e.g. disk full), and a rank skipping the flush
     * while another is inside it would hang both */
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0) r = -1;
    if (w->parallel) {
        int64_t bad = r < 0;
        ms_comm_allreduce_i64(&w->comm, &bad, 1, NULL);
        if (bad) r = -1;
    }
    if (r < 0) {
        writer_free(w);
        return ms_err_set(err, MS_ERR_IO, "%s: cannot create datasets/attributes: %s", path, ms_create_error(path));
    }
    *out = w;
    return MS_OK;
}

static ms_status open_datasets(ms_actwriter *w, ms_err *err)
{
    w->acts = H5Dopen2(w->file, "acts", H5P_DEFAULT);
    w->index = H5Dopen2(w->file, "index", H5P_DEFAULT);
    w->tokens = H5Dopen2(w->file, "tokens", H5P_DEFAULT);
    w->progress = H5Dopen2(w->file, "progress", H5P_DEFAULT);
    if (w->acts < 0 || w->index < 0 || w->tokens < 0 || w->progress < 0)
        return ms_err_set(err, MS_ERR_FORMAT,
                          "%s: not an activations file (expected datasets acts, index, tokens, "
                          "progress)",
                          w->path);
    return MS_OK;
}

/* Reads the root attributes into m; config_text is returned malloc'd in *cfg (may be NULL). */
ms_status actstore_read_meta(hid_t file, const char *path, ms_actmeta *m, char **cfg, ms_err *err)
{
    memset(m, 0, sizeof *m);
    int64_t ver = 0;
    if (ms_h5_attr_read_i64(file, "format_version", &ver) < 0 || ms_h5_attr_read_i64(file, "d", &m->d) < 0 ||
        ms_h5_attr_read_i64(file, "n_rows", &m->n_rows) < 0 ||
        ms_h5_attr_read_i64(file, "n_contexts", &m->n_contexts) < 0 ||
        ms_h5_attr_read_i64(file, "context", &m->context) < 0 ||
        ms_h5_attr_read_i64(file, "n_shards", &m->n_shards) < 0)
        return ms_err_set(err, MS_ERR_FORMAT,
                          "%s: missing attributes (expected format_version, d, n_rows, "
                          "n_contexts, context, n_shards)",
                          path);
    if (ver != MS_ACTSTORE_VERSION)
        return ms_err_set(err, MS_ERR_FORMAT, "%s: format_version %lld, expected %d", path,
                          (long long)ver, MS_ACTSTORE_VERSION);
    ms_h5_attr_read_i64(file, "seed", &m->seed);
    char *s;
    if ((s = ms_h5_attr_read_str(file, "hook"))) copy_str(m->hook, sizeof m->hook, s), free(s);
    if ((s = ms_h5_attr_read_str(file, "model_sha256")))
        copy_str(m->model_sha256, sizeof m->model_sha256, s), free(s);
    if ((s = ms_h5_attr_read_str(file, "tokenizer_sha256")))
        copy_str(m->tokenizer_sha256, sizeof m->tokenizer_sha256, s), free(s);
    if ((s = ms_h5_attr_read_str(file, "config_hash")))
        copy_str(m->config_hash, sizeof m->config_hash, s), free(s);
    if ((s = ms_h5_attr_read_str(file, "version"))) copy_str(m->version, sizeof m->version, s), free(s);
    if (cfg) *cfg = ms_h5_attr_read_str(file, "config");
    return MS_OK;
}

/* dtype and chunk rows from /acts. */
ms_status actstore_read_acts_layout(hid_t acts, const char *path, ms_actmeta *m, ms_err *err)
{
    hid_t t = H5Dget_type(acts);
    size_t sz = H5Tget_size(t);
    H5T_class_t cl = H5Tget_class(t);
    H5Tclose(t);
    if (cl != H5T_FLOAT || (sz != 2 && sz != 4))
        return ms_err_set(err, MS_ERR_FORMAT, "%s: /acts: expected float16 or float32 elements",
                          path);
    m->dtype = sz == 2 ? MS_DTYPE_F16 : MS_DTYPE_F32;
    hid_t sp = H5Dget_space(acts);
    hsize_t dims[2] = {0, 0};
    int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    if (nd != 2 || (int64_t)dims[0] != m->n_rows || (int64_t)dims[1] != m->d)
        return ms_err_set(err, MS_ERR_FORMAT,
                          "%s: /acts has shape (%llu,%llu), attributes say (%lld,%lld)", path,
                          (unsigned long long)dims[0], (unsigned long long)dims[1],
                          (long long)m->n_rows, (long long)m->d);
    hid_t dcpl = H5Dget_create_plist(acts);
    hsize_t ch[2] = {0, 0};
    if (H5Pget_layout(dcpl) == H5D_CHUNKED) H5Pget_chunk(dcpl, 2, ch);
    H5Pclose(dcpl);
    m->chunk_rows = ch[0] > 0 ? (int64_t)ch[0] : default_chunk_rows(m->d, m->dtype);
    return MS_OK;
}

int64_t actstore_count_done(hid_t progress, int64_t n, uint8_t *done)
{
    uint8_t *buf = done ? done : malloc((size_t)n + 1);
    if (!buf) return -1;
    int64_t c = -1;
    if (n == 0 || H5Dread(progress, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) {
        c = 0;
        for (int64_t i = 0; i < n; i++) c += buf[i] != 0;
    }
    if (!done) free(buf);
    return c;
}

ms_status ms_actwriter_resume(ms_actwriter **out, const char *path, const ms_actmeta *expect,
                              uint8_t *done, const ms_comm *comm, ms_err *err)
{
    *out = NULL;
    ms_h5_quiet();
    ms_actwriter *w = writer_new(path, comm);
    if (!w) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    hid_t fapl = writer_fapl(comm);
    w->file = H5Fopen(path, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (w->file < 0) {
        writer_free(w);
        return ms_err_set(err, MS_ERR_IO, "%s: cannot open the activations file to resume: %s", path,
                          access(path, R_OK | W_OK) != 0 ? strerror(errno) : "not a readable HDF5 file");
    }
    ms_status st = open_datasets(w, err);
    if (!st) st = actstore_read_meta(w->file, path, &w->meta, NULL, err);
    if (!st) st = actstore_read_acts_layout(w->acts, path, &w->meta, err);
    if (!st && H5Aexists(w->file, "complete") > 0)
        st = ms_err_set(err, MS_ERR_STATE, "%s: already complete; nothing to resume", path);
    const ms_actmeta *m = &w->meta;
#define MS_CHECK_I(field)                                                                     \
    if (!st && m->field != expect->field)                                                     \
        st = ms_err_set(err, MS_ERR_STATE,                                                    \
                        "%s: cannot resume: file has " #field " %lld, this run expects %lld", \
                        path, (long long)m->field, (long long)expect->field);
#define MS_CHECK_S(field)                                                                     \
    if (!st && strcmp(m->field, expect->field) != 0)                                          \
        st = ms_err_set(err, MS_ERR_STATE,                                                    \
                        "%s: cannot resume: file has " #field " \"%s\", this run expects "    \
                        "\"%s\"",                                                             \
                        path, m->field, expect->field);
    MS_CHECK_I(d)
    MS_CHECK_I(n_rows)
    MS_CHECK_I(n_contexts)
    MS_CHECK_I(context)
    MS_CHECK_I(n_shards)
    MS_CHECK_I(dtype)
    MS_CHECK_S(hook)
    MS_CHECK_S(model_sha256)
    MS_CHECK_S(config_hash)
#undef MS_CHECK_I
#undef MS_CHECK_S
    if (!st && actstore_count_done(w->progress, m->n_shards, done) < 0)
        st = ms_err_set(err, MS_ERR_IO, "%s: cannot read /progress", path);
    /* every rank has read /progress before any rank marks a new shard done in it */
    if (w->parallel) ms_comm_barrier(&w->comm);
    if (st) {
        writer_free(w);
        return st;
    }
    *out = w;
    return MS_OK;
}

static ms_status write_rows(ms_actwriter *w, hid_t ds, hid_t mtype, int64_t rows_total,
                            int64_t row0, int64_t n, int64_t cols, const void *buf,
                            const char *what, ms_err *err)
{
    if (row0 < 0 || n < 0 || row0 + n > rows_total)
        return ms_err_set(err, MS_ERR_USAGE, "%s: %s rows [%lld,%lld) outside [0,%lld)", w->path,
                          what, (long long)row0, (long long)(row0 + n), (long long)rows_total);
    if (n == 0) return MS_OK;
    hid_t fsp, msp;
    if (actstore_select_rows(ds, row0, n, cols, &fsp, &msp) < 0)
        return ms_err_set(err, MS_ERR_IO, "%s: %s: cannot select rows", w->path, what);
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (w->parallel) H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_INDEPENDENT);
    herr_t r = H5Dwrite(ds, mtype, msp, fsp, dxpl, buf);
    H5Pclose(dxpl);
    H5Sclose(fsp);
    H5Sclose(msp);
    if (r < 0)
        return ms_err_set(err, MS_ERR_IO, "%s: writing %s rows [%lld,%lld) failed", w->path, what,
                          (long long)row0, (long long)(row0 + n));
    return MS_OK;
}

ms_status ms_actwriter_write_rows(ms_actwriter *w, int64_t row0, int64_t n, const float *acts,
                                  const int32_t *index, ms_err *err)
{
    const int64_t d = w->meta.d;
    const void *buf = acts;
    hid_t mt = H5T_NATIVE_FLOAT;
    if (w->meta.dtype == MS_DTYPE_F16 && n > 0) {
        size_t need = (size_t)(n * d);
        if (need > w->scratch_n) {
            uint16_t *s = realloc(w->scratch, need * sizeof *s);
            if (!s) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", w->path);
            w->scratch = s;
            w->scratch_n = need;
        }
        ms_half_from_float_n(w->scratch, acts, need);
        buf = w->scratch;
        mt = w->f16;
    }
    ms_status st = write_rows(w, w->acts, mt, w->meta.n_rows, row0, n, d, buf, "/acts", err);
    if (!st && index)
        st = write_rows(w, w->index, H5T_NATIVE_INT32, w->meta.n_rows, row0, n, 2, index,
                        "/index", err);
    return st;
}

ms_status ms_actwriter_write_tokens(ms_actwriter *w, int64_t ctx0, int64_t n,
                                    const int32_t *tokens, ms_err *err)
{
    return write_rows(w, w->tokens, H5T_NATIVE_INT32, w->meta.n_contexts, ctx0, n,
                      w->meta.context, tokens, "/tokens", err);
}

ms_status ms_actwriter_mark_done(ms_actwriter *w, int64_t shard, ms_err *err)
{
    if (shard < 0 || shard >= w->meta.n_shards)
        return ms_err_set(err, MS_ERR_USAGE, "%s: shard %lld outside [0,%lld)", w->path,
                          (long long)shard, (long long)w->meta.n_shards);
    hid_t fsp = H5Dget_space(w->progress);
    hsize_t start = (hsize_t)shard, count = 1;
    H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &start, NULL, &count, NULL);
    hid_t msp = H5Screate_simple(1, &count, NULL);
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (w->parallel) H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_INDEPENDENT);
    uint8_t one = 1;
    herr_t r = H5Dwrite(w->progress, H5T_NATIVE_UINT8, msp, fsp, dxpl, &one);
    H5Pclose(dxpl);
    H5Sclose(msp);
    H5Sclose(fsp);
    if (r < 0)
        return ms_err_set(err, MS_ERR_IO, "%s: cannot mark shard %lld done", w->path,
                          (long long)shard);
    return MS_OK;
}

ms_status ms_actwriter_finalize(ms_actwriter *w, ms_err *err)
{
    ms_status st = MS_OK;
    /* make every rank's independent writes visible (sync, barrier) before counting, and agree
     * on the count so that either all ranks or none write the (collective) attribute */
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0)
        st = ms_err_set(err, MS_ERR_IO, "%s: flush failed", w->path);
    if (w->parallel) ms_comm_barrier(&w->comm);
    int64_t n_done = actstore_count_done(w->progress, w->meta.n_shards, NULL);
    if (w->parallel) {
        double mn, avg, mx; /* counts are far below 2^53: exact as doubles */
        ms_comm_minavgmax(&w->comm, (double)n_done, &mn, &avg, &mx);
        n_done = (int64_t)mn;
    }
    if (!st && n_done < 0)
        st = ms_err_set(err, MS_ERR_IO, "%s: cannot read /progress", w->path);
    else if (!st && n_done != w->meta.n_shards)
        st = ms_err_set(err, MS_ERR_STATE, "%s: only %lld of %lld shards done; not complete",
                        w->path, (long long)n_done, (long long)w->meta.n_shards);
    if (!st && (ms_h5_attr_write_i64(w->file, "complete", 1) < 0 ||
                H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0))
        st = ms_err_set(err, MS_ERR_IO, "%s: cannot mark complete", w->path);
    writer_free(w);
    return st;
}

void ms_actwriter_close(ms_actwriter *w)
{
    writer_free(w);
}

/* ------------------------------------------------------------------ generation helpers
 * (added for `monosem generate` / `monosem inspect`; separate from the writer/reader above) */

ms_status ms_actwriter_sync(ms_actwriter *w, ms_err *err)
{
    /* Under MPI-IO, independent raw writes reach the OS at once (and H5Fflush would be
     * collective); the serial driver buffers chunks and sieve data in the process. */
    if (w->parallel) return MS_OK;
    if (H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0)
        return ms_err_set(err, MS_ERR_IO, "%s: flush failed", w->path);
    return MS_OK;
}

ms_status ms_actwriter_write_rows_raw(ms_actwriter *w, int64_t row0, int64_t n, const void *acts,
                                      const int32_t *index, ms_err *err)
{
    /* acts already in the store's dtype: no conversion pass, no scratch copy */
    hid_t mt = w->meta.dtype == MS_DTYPE_F16 ? w->f16 : H5T_NATIVE_FLOAT;
    ms_status st = write_rows(w, w->acts, mt, w->meta.n_rows, row0, n, w->meta.d, acts, "/acts", err);
    if (!st && index)
        st = write_rows(w, w->index, H5T_NATIVE_INT32, w->meta.n_rows, row0, n, 2, index,
                        "/index", err);
    return st;
}
