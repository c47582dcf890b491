/* Generic HDF5 helpers: error quieting, scalar attributes, the tensors-to-file writer, and the
 * small serial read/write API the apps use instead of raw HDF5 (handles are hid_t as ms_h5id). */
#include "monosem/io.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(hid_t) == sizeof(ms_h5id), "ms_h5id holds an hid_t");

void ms_h5_quiet(void)
{
    /* errors are reported through ms_err with the file name; HDF5's stack dump is noise */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* ------------------------------------------------------------------ attributes */

int ms_h5_attr_write_i64(ms_h5id obj, const char *name, int64_t v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t r = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return r;
}

int ms_h5_attr_write_str(ms_h5id obj, const char *name, const char *v)
{
    if (!v) v = "";
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t r = a < 0 ? -1 : H5Awrite(a, t, v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return r;
}

int ms_h5_attr_write_ascii(ms_h5id obj, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, t, v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

static int attr_read_i64(hid_t obj, const char *name, int64_t *v)
{
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    herr_t r = H5Aread(a, H5T_NATIVE_INT64, v);
    H5Aclose(a);
    return r < 0 ? -1 : 0;
}

static char *attr_read_str(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t ft = H5Aget_type(a);
    char *out = NULL;
    if (H5Tget_class(ft) == H5T_STRING) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(ft));
            char *p = NULL;
            if (H5Aread(a, mt, &p) >= 0 && p) {
                out = strdup(p);
                hid_t sp = H5Screate(H5S_SCALAR);
                H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, &p);
                H5Sclose(sp);
            }
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(ft);
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, n + 1);
            H5Tset_strpad(mt, H5T_STR_NULLTERM);
            H5Tset_cset(mt, H5Tget_cset(ft));
            out = calloc(n + 2, 1);
            if (out && H5Aread(a, mt, out) < 0) {
                free(out);
                out = NULL;
            }
            H5Tclose(mt);
        }
    }
    H5Tclose(ft);
    H5Aclose(a);
    return out;
}

/* The readers print nothing even where main has not called ms_h5_quiet (tests, tools). */
int ms_h5_attr_read_i64(ms_h5id obj, const char *name, int64_t *v)
{
    int r;
    H5E_BEGIN_TRY { r = attr_read_i64(obj, name, v); }
    H5E_END_TRY;
    return r;
}

char *ms_h5_attr_read_str(ms_h5id obj, const char *name)
{
    char *s;
    H5E_BEGIN_TRY { s = attr_read_str(obj, name); }
    H5E_END_TRY;
    return s;
}

static ms_h5_kind kind_of(hid_t t)
{
    switch (H5Tget_class(t)) {
    case H5T_INTEGER: return MS_H5_INT;
    case H5T_FLOAT: return MS_H5_FLOAT;
    case H5T_STRING: return MS_H5_STRING;
    default: return MS_H5_OTHER;
    }
}

ms_h5_kind ms_h5_attr_info(ms_h5id obj, const char *name, int64_t *npoints, int *rank)
{
    ms_h5_kind k = MS_H5_NONE;
    H5E_BEGIN_TRY
    {
        hid_t a = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : -1;
        if (a >= 0) {
            hid_t t = H5Aget_type(a), s = H5Aget_space(a);
            k = kind_of(t);
            if (npoints) *npoints = (int64_t)H5Sget_simple_extent_npoints(s);
            if (rank) *rank = H5Sget_simple_extent_ndims(s);
            H5Tclose(t), H5Sclose(s), H5Aclose(a);
        }
    }
    H5E_END_TRY;
    return k;
}

int ms_h5_attr_read_f64(ms_h5id obj, const char *name, double *v)
{
    herr_t r = -1;
    H5E_BEGIN_TRY
    {
        hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
        if (a >= 0) r = H5Aread(a, H5T_NATIVE_DOUBLE, v), H5Aclose(a);
    }
    H5E_END_TRY;
    return r < 0 ? -1 : 0;
}

typedef struct attr_iter {
    int (*fn)(const char *name, void *ctx);
    void *ctx;
} attr_iter;

static herr_t attr_iter_cb(hid_t loc, const char *name, const H5A_info_t *info, void *op)
{
    attr_iter *it = op;
    (void)loc, (void)info;
    return it->fn(name, it->ctx);
}

int ms_h5_attr_iterate(ms_h5id obj, int (*fn)(const char *name, void *ctx), void *ctx)
{
    attr_iter it = {fn, ctx};
    herr_t rc;
    H5E_BEGIN_TRY { rc = H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, NULL, attr_iter_cb, &it); }
    H5E_END_TRY;
    return rc;
}

/* ------------------------------------------------------------------ files and datasets */

ms_h5id ms_h5_file_open(const char *path)
{
    hid_t f = -1;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); }
    H5E_END_TRY;
    return f;
}

ms_h5id ms_h5_file_create(const char *path)
{
    return H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
}

int ms_h5_file_close(ms_h5id f)
{
    return H5Fclose(f);
}

typedef struct ds_visit {
    int (*fn)(const ms_h5_dsinfo *ds, void *ctx);
    void *ctx;
} ds_visit;

static herr_t ds_visit_cb(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
    ds_visit *v = op;
    (void)info;
    if (H5Oexists_by_name(g, name, H5P_DEFAULT) <= 0) return 0;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return 0;
    int rc = 0;
    if (H5Iget_type(o) == H5I_DATASET) {
        hid_t t = H5Dget_type(o), s = H5Dget_space(o);
        ms_h5_dsinfo d = {.name = name, .kind = kind_of(t), .rank = H5Sget_simple_extent_ndims(s)};
        if (d.rank >= 0 && d.rank <= MS_H5_MAX_RANK) {
            hsize_t dims[MS_H5_MAX_RANK];
            H5Sget_simple_extent_dims(s, dims, NULL);
            for (int i = 0; i < d.rank; i++) d.dims[i] = (int64_t)dims[i];
            H5Tclose(t), H5Sclose(s);
            rc = v->fn(&d, v->ctx);
        } else {
            H5Tclose(t), H5Sclose(s);
        }
    }
    H5Oclose(o);
    return rc;
}

int ms_h5_dataset_visit(ms_h5id f, int (*fn)(const ms_h5_dsinfo *ds, void *ctx), void *ctx)
{
    ds_visit v = {fn, ctx};
    herr_t rc;
    H5E_BEGIN_TRY { rc = H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, ds_visit_cb, &v); }
    H5E_END_TRY;
    return rc;
}

ms_h5id ms_h5_dataset_open(ms_h5id f, const char *name)
{
    hid_t d = -1;
    H5E_BEGIN_TRY { d = H5Dopen2(f, name, H5P_DEFAULT); }
    H5E_END_TRY;
    return d;
}

void ms_h5_dataset_close(ms_h5id d)
{
    if (d >= 0) H5Dclose(d);
}

int ms_h5_dataset_dims(ms_h5id d, int *rank, int64_t dims[MS_H5_MAX_RANK])
{
    int r = -1;
    H5E_BEGIN_TRY
    {
        hid_t s = H5Dget_space(d);
        if (s >= 0) {
            r = H5Sget_simple_extent_ndims(s);
            if (r >= 0 && r <= MS_H5_MAX_RANK) {
                hsize_t h[MS_H5_MAX_RANK];
                H5Sget_simple_extent_dims(s, h, NULL);
                for (int i = 0; i < r; i++) dims[i] = (int64_t)h[i];
            } else {
                r = -1;
            }
            H5Sclose(s);
        }
    }
    H5E_END_TRY;
    *rank = r;
    return r < 0 ? -1 : 0;
}

/* The native memory type of a dtype; -1 for the ones the helpers do not handle. */
static hid_t mem_type(ms_safetensors_dtype t)
{
    switch (t) {
    case MS_SAFETENSORS_F32: return H5T_NATIVE_FLOAT;
    case MS_SAFETENSORS_F64: return H5T_NATIVE_DOUBLE;
    case MS_SAFETENSORS_I64: return H5T_NATIVE_INT64;
    case MS_SAFETENSORS_I32: return H5T_NATIVE_INT32;
    case MS_SAFETENSORS_U8: return H5T_NATIVE_UCHAR;
    default: return -1;
    }
}

/* Reads or writes (write = true) a hyperslab start/count of d, or the whole dataset (start NULL). */
static int dataset_io(hid_t d, bool write, ms_safetensors_dtype mem, int rank, const int64_t *start, const int64_t *count,
                      void *buf)
{
    hid_t mt = mem_type(mem);
    if (mt < 0) return -1;
    if (!start) return write ? H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf)
                             : H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    hsize_t st[MS_H5_MAX_RANK], cnt[MS_H5_MAX_RANK], n = 1;
    if (rank < 0 || rank > MS_H5_MAX_RANK) return -1;
    for (int i = 0; i < rank; i++) st[i] = (hsize_t)start[i], cnt[i] = (hsize_t)count[i], n *= cnt[i];
    if (n == 0) return 0;
    hid_t fs = H5Dget_space(d);
    hid_t ms = rank ? H5Screate_simple(rank, cnt, NULL) : H5Screate(H5S_SCALAR);
    herr_t rc = rank ? H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, cnt, NULL) : 0;
    if (rc >= 0) rc = write ? H5Dwrite(d, mt, ms, fs, H5P_DEFAULT, buf) : H5Dread(d, mt, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    return rc < 0 ? -1 : 0;
}

int ms_h5_dataset_read(ms_h5id d, ms_safetensors_dtype mem, int rank, const int64_t *start, const int64_t *count, void *out)
{
    int rc;
    H5E_BEGIN_TRY { rc = dataset_io(d, false, mem, rank, start, count, out); }
    H5E_END_TRY;
    return rc < 0 ? -1 : 0;
}

int ms_h5_dataset_write(ms_h5id d, ms_safetensors_dtype mem, int rank, const int64_t *start, const int64_t *count,
                        const void *buf)
{
    return dataset_io(d, true, mem, rank, start, count, (void *)buf) < 0 ? -1 : 0;
}

ms_h5id ms_h5_dataset_create(ms_h5id f, const char *name, ms_safetensors_dtype type, int rank, const int64_t *dims)
{
    if (type != MS_SAFETENSORS_F32 || rank < 1 || rank > MS_H5_MAX_RANK) return -1;
    hsize_t h[MS_H5_MAX_RANK];
    for (int i = 0; i < rank; i++) h[i] = (hsize_t)dims[i];
    hid_t sp = H5Screate_simple(rank, h, NULL);
    if (sp < 0) return -1;
    hid_t d = H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    return d;
}

/* ------------------------------------------------------------------ tensors to a file */

/* Dataset creation for ms_h5_write_tensors: chunked (chunks of at most ~4 MiB of whole rows)
 * with HDF5's fletcher32 checksum filter, which every HDF5 reader (h5py too) verifies when it
 * reads a chunk: flipped bytes are an error, never silent data. Scalars and empty tensors
 * cannot be chunked and stay contiguous. */
static hid_t tensor_dcpl(int ndim, const hsize_t *dims, size_t esize)
{
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0 || ndim == 0) return dcpl;
    hsize_t chunk[MS_SAFETENSORS_MAX_DIMS], row = esize;
    for (int k = 0; k < ndim; k++) {
        if (dims[k] == 0) return dcpl;
        chunk[k] = dims[k];
        if (k > 0) row *= dims[k];
    }
    hsize_t rows = ((hsize_t)4 << 20) / (row ? row : 1);
    chunk[0] = rows < 1 ? 1 : rows < dims[0] ? rows : dims[0];
    if (H5Pset_chunk(dcpl, ndim, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0) {
        H5Pclose(dcpl);
        return -1;
    }
    return dcpl;
}

ms_status ms_h5_write_tensors(const char *path, const ms_safetensors_item *items, int n_items,
                              const char *const *attr_kv, int n_attr, ms_err *err)
{
    /* The file is built in memory (HDF5's core driver, no backing store) and written with
     * ms_file_write_atomic: a full disk or an I/O error then fails a plain write(), with a
     * clean message and no temporary left, never HDF5's own flush of a half-written file
     * (which, after a failed H5Fclose, crashed HDF5's atexit clean-up in MPI_Finalize). */
    ms_h5_quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return ms_err_set(err, MS_ERR_IO, "%s: cannot set up HDF5's in-memory file", path);
    }
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (file < 0) return ms_err_set(err, MS_ERR_NOMEM, "%s: cannot create the file in memory", path);
    herr_t r = 0;
    for (int i = 0; i < n_items && r >= 0; i++) {
        const ms_safetensors_item *it = &items[i];
        hsize_t dims[MS_SAFETENSORS_MAX_DIMS];
        for (int k = 0; k < it->ndim; k++) dims[k] = (hsize_t)it->shape[k];
        hid_t ft, mt;
        switch (it->dtype) {
        case MS_SAFETENSORS_F32: ft = H5T_IEEE_F32LE, mt = H5T_NATIVE_FLOAT; break;
        case MS_SAFETENSORS_I64: ft = H5T_STD_I64LE, mt = H5T_NATIVE_INT64; break;
        case MS_SAFETENSORS_I32: ft = H5T_STD_I32LE, mt = H5T_NATIVE_INT32; break;
        case MS_SAFETENSORS_U8: ft = H5T_STD_U8LE, mt = H5T_NATIVE_UINT8; break;
        default:
            H5Fclose(file);
            return ms_err_set(err, MS_ERR_USAGE, "%s: tensor %s: only F32, I64, I32, U8 supported",
                              path, it->name);
        }
        hid_t sp = it->ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(it->ndim, dims, NULL);
        hid_t dcpl = tensor_dcpl(it->ndim, dims, ms_safetensors_dtype_size(it->dtype));
        hid_t ds = dcpl < 0 ? -1 : H5Dcreate2(file, it->name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        r = ds < 0 ? -1 : H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, it->data);
        if (ds >= 0) H5Dclose(ds);
        if (dcpl >= 0) H5Pclose(dcpl);
        H5Sclose(sp);
    }
    for (int i = 0; i < n_attr && r >= 0; i++)
        r = ms_h5_attr_write_str(file, attr_kv[2 * i], attr_kv[2 * i + 1]);
    if (r >= 0) r = H5Fflush(file, H5F_SCOPE_LOCAL);
    ssize_t size = r >= 0 ? H5Fget_file_image(file, NULL, 0) : -1;
    void *image = size > 0 ? malloc((size_t)size) : NULL;
    if (image && H5Fget_file_image(file, image, (size_t)size) != size) size = -1;
    H5Fclose(file); /* in memory: nothing left to fail */
    ms_status st = MS_OK;
    if (r < 0 || size <= 0)
        st = ms_err_set(err, MS_ERR_NOMEM, "%s: building the HDF5 file in memory failed (out of memory?)", path);
    else if (!image)
        st = ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory for the %lld-byte file image", path, (long long)size);
    else
        st = ms_file_write_atomic(path, image, (size_t)size, err);
    free(image);
    return st;
}
