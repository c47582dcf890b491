/* The report's reader of analysis HDF5 files: lists every numeric dataset, decides which are
 * per-unit (leading dimension = the unit count) and hands out slabs of them as JSON. It knows
 * no dataset names: the page maps names to views, so a new analysis output shows up as data
 * without a change here. Serial HDF5 on rank 0. */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

static const char *const unit_count_attrs[] = {"n_units", "d_sae", "n_features", "n_neurons", NULL};
/* Name prefixes of datasets that are never per unit whatever their length (docs/analysis.md:
 * the vocabulary, the measures' distributions, the log10-density histogram), so a unit count
 * equal to the vocabulary size or a bin count cannot mislabel them. */
static const char *const global_prefixes[] = {"vocab_", "measure_hist_", "measure_edges_", "log10_density_", NULL};

static bool is_global(const char *name)
{
    for (int i = 0; global_prefixes[i]; i++)
        if (strncmp(name, global_prefixes[i], strlen(global_prefixes[i])) == 0) return true;
    return false;
}

typedef struct walk {
    ms_ranalysis *a;
    int cap;
    bool oom;
} walk;

static herr_t visit(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
    walk *w = op;
    (void)info;
    if (H5Oexists_by_name(g, name, H5P_DEFAULT) <= 0) return 0;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return 0;
    if (H5Iget_type(o) == H5I_DATASET) {
        hid_t t = H5Dget_type(o), s = H5Dget_space(o);
        H5T_class_t cls = H5Tget_class(t);
        int rank = H5Sget_simple_extent_ndims(s);
        if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && rank >= 0 && rank <= 8 && strlen(name) < 128) {
            if (w->a->n_ds == w->cap) {
                int cap = w->cap ? 2 * w->cap : 32;
                ms_rds *p = realloc(w->a->ds, (size_t)cap * sizeof *p);
                if (!p) {
                    w->oom = true;
                    H5Tclose(t), H5Sclose(s), H5Oclose(o);
                    return 1;
                }
                w->a->ds = p, w->cap = cap;
            }
            ms_rds *d = &w->a->ds[w->a->n_ds++];
            memset(d, 0, sizeof *d);
            snprintf(d->name, sizeof d->name, "%s", name);
            d->rank = rank;
            hsize_t dims[8];
            H5Sget_simple_extent_dims(s, dims, NULL);
            for (int i = 0; i < rank; i++) d->dims[i] = (int64_t)dims[i];
            d->is_int = cls == H5T_INTEGER;
        }
        H5Tclose(t);
        H5Sclose(s);
    }
    H5Oclose(o);
    return 0;
}

static bool attr_i64(hid_t f, const char *name, int64_t *v)
{
    if (H5Aexists(f, name) <= 0) return false;
    hid_t at = H5Aopen(f, name, H5P_DEFAULT);
    if (at < 0) return false;
    hid_t t = H5Aget_type(at), s = H5Aget_space(at);
    bool ok = false;
    if (H5Sget_simple_extent_npoints(s) == 1) {
        H5T_class_t c = H5Tget_class(t);
        if (c == H5T_INTEGER || c == H5T_FLOAT) {
            double x;
            ok = H5Aread(at, H5T_NATIVE_DOUBLE, &x) >= 0;
            *v = (int64_t)x;
        } else if (c == H5T_STRING) {
            char *buf = NULL;
            if (H5Tis_variable_str(t)) {
                hid_t mt = H5Tcopy(H5T_C_S1);
                H5Tset_size(mt, H5T_VARIABLE);
                H5Tset_cset(mt, H5Tget_cset(t));
                char *vs = NULL;
                if (H5Aread(at, mt, &vs) >= 0 && vs) {
                    buf = strdup(vs);
                    H5free_memory(vs);
                }
                H5Tclose(mt);
            } else {
                buf = calloc(H5Tget_size(t) + 1, 1);
                if (buf && H5Aread(at, t, buf) < 0) buf[0] = 0;
            }
            if (buf) {
                char *end;
                long long x = strtoll(buf, &end, 10);
                ok = end != buf;
                *v = x;
            }
            free(buf);
        }
    }
    H5Tclose(t), H5Sclose(s), H5Aclose(at);
    return ok;
}

ms_status ms_ranalysis_open(ms_ranalysis *a, const char *path, ms_err *err)
{
    memset(a, 0, sizeof *a);
    a->hid = -1;
    a->path = strdup(path);
    if (!a->path) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    hid_t f = -1;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); }
    H5E_END_TRY;
    if (f < 0) return ms_err_set(err, MS_ERR_IO, "report: %s: cannot open as HDF5", path);
    a->hid = f;
    walk w = {.a = a};
    H5E_BEGIN_TRY { H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, visit, &w); }
    H5E_END_TRY;
    if (w.oom) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    int64_t n = 0;
    for (int i = 0; unit_count_attrs[i] && n <= 0; i++)
        if (!attr_i64(f, unit_count_attrs[i], &n)) n = 0;
    if (n <= 0) { /* the most common leading dimension among datasets of rank >= 1 */
        int best = 0;
        for (int i = 0; i < a->n_ds; i++) {
            if (a->ds[i].rank < 1 || is_global(a->ds[i].name)) continue;
            int c = 0;
            for (int j = 0; j < a->n_ds; j++)
                c += a->ds[j].rank >= 1 && !is_global(a->ds[j].name) && a->ds[j].dims[0] == a->ds[i].dims[0];
            if (c > best) best = c, n = a->ds[i].dims[0];
        }
    }
    if (n <= 0)
        return ms_err_set(err, MS_ERR_FORMAT, "report: %s: no per-unit datasets (expected an n_units attribute)",
                          path);
    a->n_units = n;
    for (int i = 0; i < a->n_ds; i++)
        a->ds[i].per_unit = a->ds[i].rank >= 1 && a->ds[i].dims[0] == n && !is_global(a->ds[i].name);
    return MS_OK;
}

void ms_ranalysis_close(ms_ranalysis *a)
{
    if (a->path && a->hid >= 0) H5Fclose((hid_t)a->hid);
    free(a->path);
    free(a->ds);
    memset(a, 0, sizeof *a);
    a->hid = -1;
}

const ms_rds *ms_ranalysis_find(const ms_ranalysis *a, const char *name)
{
    for (int i = 0; i < a->n_ds; i++)
        if (strcmp(a->ds[i].name, name) == 0) return &a->ds[i];
    return NULL;
}

typedef struct attr_ctx {
    ms_rbuf *b;
    int n;
} attr_ctx;

static herr_t attr_visit(hid_t loc, const char *name, const H5A_info_t *info, void *op)
{
    attr_ctx *c = op;
    (void)info;
    hid_t at = H5Aopen(loc, name, H5P_DEFAULT);
    if (at < 0) return 0;
    hid_t t = H5Aget_type(at), s = H5Aget_space(at);
    H5T_class_t cls = H5Tget_class(t);
    hssize_t np = H5Sget_simple_extent_npoints(s);
    int rank = H5Sget_simple_extent_ndims(s);
    if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && np >= 1 && np <= 4096) {
        double *v = malloc((size_t)np * sizeof *v);
        if (v && H5Aread(at, H5T_NATIVE_DOUBLE, v) >= 0) {
            ms_rbuf_puts(c->b, c->n++ ? "," : "");
            ms_rbuf_str(c->b, name, strlen(name));
            ms_rbuf_puts(c->b, ":");
            if (rank >= 1) ms_rbuf_puts(c->b, "[");
            for (hssize_t i = 0; i < np; i++) {
                if (i) ms_rbuf_puts(c->b, ",");
                ms_rbuf_num(c->b, v[i]);
            }
            if (rank >= 1) ms_rbuf_puts(c->b, "]");
        }
        free(v);
    } else if (cls == H5T_STRING && np == 1) {
        char *str = NULL;
        if (H5Tis_variable_str(t)) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(t)); /* HDF5 does not convert between ASCII and UTF-8 */
            char *vs = NULL;
            if (H5Aread(at, mt, &vs) >= 0 && vs) {
                str = strdup(vs);
                H5free_memory(vs);
            }
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(t);
            str = calloc(n + 1, 1);
            if (str && H5Aread(at, t, str) < 0) str[0] = 0;
        }
        if (str) {
            ms_rbuf_puts(c->b, c->n++ ? "," : "");
            ms_rbuf_str(c->b, name, strlen(name));
            ms_rbuf_puts(c->b, ":");
            ms_rbuf_str(c->b, str, strlen(str));
        }
        free(str);
    }
    H5Tclose(t), H5Sclose(s), H5Aclose(at);
    return 0;
}

ms_status ms_ranalysis_attrs_json(const ms_ranalysis *a, ms_rbuf *b, ms_err *err)
{
    attr_ctx c = {.b = b};
    herr_t rc;
    H5E_BEGIN_TRY { rc = H5Aiterate2((hid_t)a->hid, H5_INDEX_NAME, H5_ITER_INC, NULL, attr_visit, &c); }
    H5E_END_TRY;
    if (rc < 0) return ms_err_set(err, MS_ERR_FORMAT, "report: %s: cannot read the root attributes", a->path);
    return MS_OK;
}

/* Reads elements [u0,u1) x (rest of the dims) of ds as doubles into a malloc'd array. */
static ms_status read_slab(const ms_ranalysis *a, const ms_rds *ds, int64_t u0, int64_t u1, double **out,
                           size_t *count, ms_err *err)
{
    *out = NULL;
    hsize_t start[8] = {0}, cnt[8];
    size_t n = 1;
    for (int i = 0; i < ds->rank; i++) {
        cnt[i] = (hsize_t)ds->dims[i];
        if (i == 0 && ds->per_unit) start[0] = (hsize_t)u0, cnt[0] = (hsize_t)(u1 - u0);
        n *= cnt[i];
    }
    *count = n;
    double *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return ms_err_set(err, MS_ERR_NOMEM, "report: %s: out of memory reading %s", a->path, ds->name);
    herr_t rc = -1;
    H5E_BEGIN_TRY
    {
        hid_t d = H5Dopen2((hid_t)a->hid, ds->name, H5P_DEFAULT);
        if (d >= 0) {
            hid_t fs = H5Dget_space(d);
            hid_t ms = ds->rank ? H5Screate_simple(ds->rank, cnt, NULL) : H5Screate(H5S_SCALAR);
            rc = 0;
            if (ds->rank && n) rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
            if (rc >= 0 && n) rc = H5Dread(d, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, v);
            H5Sclose(ms), H5Sclose(fs), H5Dclose(d);
        }
    }
    H5E_END_TRY;
    if (rc < 0) {
        free(v);
        return ms_err_set(err, MS_ERR_FORMAT, "report: %s: cannot read dataset %s", a->path, ds->name);
    }
    *out = v;
    return MS_OK;
}

/* Nested arrays over dims [lev, rank) of v (row-major), from *pos on. */
static void emit(ms_rbuf *b, const double *v, size_t *pos, const int64_t *dims, int lev, int rank, bool is_int)
{
    if (lev == rank) {
        double x = v[(*pos)++];
        if (is_int) ms_rbuf_int(b, (int64_t)x);
        else ms_rbuf_num(b, x);
        return;
    }
    ms_rbuf_puts(b, "[");
    for (int64_t i = 0; i < dims[lev]; i++) {
        if (i) ms_rbuf_puts(b, ",");
        emit(b, v, pos, dims, lev + 1, rank, is_int);
    }
    ms_rbuf_puts(b, "]");
}

ms_status ms_ranalysis_slab_json(const ms_ranalysis *a, const ms_rds *ds, int64_t u0, int64_t u1, ms_rbuf *b,
                                 ms_err *err)
{
    double *v;
    size_t n;
    ms_status st = read_slab(a, ds, u0, u1, &v, &n, err);
    if (st) return st;
    int64_t dims[8];
    memcpy(dims, ds->dims, sizeof dims);
    if (ds->per_unit) dims[0] = u1 - u0;
    size_t pos = 0;
    emit(b, v, &pos, dims, 0, ds->rank, ds->is_int);
    free(v);
    return MS_OK;
}

ms_status ms_ranalysis_pick_i32(const ms_ranalysis *a, const ms_rds *ds, const int64_t *idx, int64_t u0, int64_t u1,
                                int32_t *out, ms_err *err)
{
    /* one element per unit: a (u1-u0, 1, ..., 1) hyperslab, so memory is one value per unit */
    hsize_t start[8] = {0}, cnt[8];
    for (int i = 0; i < ds->rank; i++) {
        start[i] = i ? (hsize_t)idx[i - 1] : (hsize_t)u0;
        cnt[i] = i ? 1 : (hsize_t)(u1 - u0);
        if (i && (idx[i - 1] < 0 || idx[i - 1] >= ds->dims[i]))
            return ms_err_set(err, MS_ERR_FORMAT, "report: %s: index %lld outside %s's dimension %d", a->path,
                              (long long)idx[i - 1], ds->name, i);
    }
    if (u1 <= u0) return MS_OK;
    herr_t rc = -1;
    H5E_BEGIN_TRY
    {
        hid_t d = H5Dopen2((hid_t)a->hid, ds->name, H5P_DEFAULT);
        if (d >= 0) {
            hid_t fs = H5Dget_space(d);
            hid_t ms = H5Screate_simple(ds->rank, cnt, NULL);
            rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
            if (rc >= 0) rc = H5Dread(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, out);
            H5Sclose(ms), H5Sclose(fs), H5Dclose(d);
        }
    }
    H5E_END_TRY;
    if (rc < 0) return ms_err_set(err, MS_ERR_FORMAT, "report: %s: cannot read dataset %s", a->path, ds->name);
    return MS_OK;
}

ms_status ms_ranalysis_check_ids(const ms_ranalysis *a, const ms_rds *ds, int64_t n_vocab, ms_err *err)
{
    int64_t per = 1; /* values per unit */
    for (int i = 1; i < ds->rank; i++) per *= ds->dims[i];
    const int64_t n_units = ds->rank ? ds->dims[0] : 1;
    const int64_t block = per > 0 ? (1 << 20) / per + 1 : n_units; /* ~4 MB of int32 per read */
    int32_t *buf = per > 0 ? malloc((size_t)(block * per) * sizeof *buf) : NULL;
    if (per > 0 && !buf) return ms_err_set(err, MS_ERR_NOMEM, "report: out of memory");
    ms_status st = MS_OK;
    hid_t d = -1;
    H5E_BEGIN_TRY { d = H5Dopen2((hid_t)a->hid, ds->name, H5P_DEFAULT); }
    H5E_END_TRY;
    if (d < 0) st = ms_err_set(err, MS_ERR_FORMAT, "report: %s: cannot read dataset %s", a->path, ds->name);
    for (int64_t u0 = 0; u0 < n_units && per > 0 && !st; u0 += block) {
        const int64_t u1 = u0 + block < n_units ? u0 + block : n_units;
        hsize_t start[8] = {0}, cnt[8];
        for (int i = 0; i < ds->rank; i++) cnt[i] = i ? (hsize_t)ds->dims[i] : (hsize_t)(u1 - u0);
        start[0] = (hsize_t)u0;
        herr_t rc = -1;
        H5E_BEGIN_TRY
        {
            hid_t fs = H5Dget_space(d), ms = H5Screate_simple(ds->rank ? ds->rank : 1, cnt, NULL);
            rc = ds->rank ? H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) : 0;
            if (rc >= 0) rc = H5Dread(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, buf);
            H5Sclose(ms), H5Sclose(fs);
        }
        H5E_END_TRY;
        if (rc < 0) st = ms_err_set(err, MS_ERR_FORMAT, "report: %s: cannot read dataset %s", a->path, ds->name);
        for (int64_t i = 0; !st && i < (u1 - u0) * per; i++)
            if (buf[i] < -1 || buf[i] >= n_vocab)
                st = ms_err_set(err, MS_ERR_FORMAT,
                                "report: %s: dataset %s: unit %lld holds token id %d, outside the vocabulary of %lld "
                                "tokens (expected -1 for none, or 0..%lld)",
                                a->path, ds->name, (long long)(u0 + i / per), buf[i], (long long)n_vocab,
                                (long long)n_vocab - 1);
    }
    if (d >= 0) H5Dclose(d);
    free(buf);
    return st;
}

ms_status ms_report_read_matrix(const char *path, const char *name, float **out, int64_t *rows, int64_t *cols,
                                ms_err *err)
{
    *out = NULL;
    hid_t f = -1, d = -1, s = -1;
    ms_status st = MS_OK;
    H5E_BEGIN_TRY
    {
        f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0) d = H5Dopen2(f, name, H5P_DEFAULT);
        if (d >= 0) s = H5Dget_space(d);
        hsize_t dims[2];
        if (s < 0 || H5Sget_simple_extent_ndims(s) != 2) {
            st = ms_err_set(err, MS_ERR_FORMAT, "report: %s: expected a 2-D dataset %s", path, name);
        } else {
            H5Sget_simple_extent_dims(s, dims, NULL);
            *rows = (int64_t)dims[0], *cols = (int64_t)dims[1];
            size_t cnt = (size_t)(dims[0] * dims[1]);
            float *m = malloc((cnt ? cnt : 1) * sizeof *m);
            if (!m) st = ms_err_set(err, MS_ERR_NOMEM, "report: %s: out of memory reading %s", path, name);
            else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, m) < 0) {
                free(m);
                st = ms_err_set(err, MS_ERR_FORMAT, "report: %s: cannot read %s", path, name);
            } else {
                *out = m;
            }
        }
        if (s >= 0) H5Sclose(s);
        if (d >= 0) H5Dclose(d);
        if (f >= 0) H5Fclose(f);
    }
    H5E_END_TRY;
    return st;
}

ms_status ms_ranalysis_vocab(const ms_ranalysis *a, int64_t **offsets, int64_t *n_tokens, unsigned char **bytes,
                             ms_err *err)
{
    *offsets = NULL, *bytes = NULL, *n_tokens = 0;
    const ms_rds *o = ms_ranalysis_find(a, "vocab_offsets"), *b = ms_ranalysis_find(a, "vocab_bytes");
    if (!o || !b || o->rank != 1 || b->rank != 1 || o->dims[0] < 1) return MS_OK;
    int64_t *off = malloc((size_t)o->dims[0] * sizeof *off);
    unsigned char *raw = malloc((size_t)(b->dims[0] ? b->dims[0] : 1));
    herr_t rc = -1;
    if (off && raw) {
        H5E_BEGIN_TRY
        {
            hid_t d1 = H5Dopen2((hid_t)a->hid, "vocab_offsets", H5P_DEFAULT);
            hid_t d2 = H5Dopen2((hid_t)a->hid, "vocab_bytes", H5P_DEFAULT);
            if (d1 >= 0 && d2 >= 0) {
                rc = H5Dread(d1, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off);
                if (rc >= 0 && b->dims[0]) rc = H5Dread(d2, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
            }
            if (d1 >= 0) H5Dclose(d1);
            if (d2 >= 0) H5Dclose(d2);
        }
        H5E_END_TRY;
    }
    bool ok = rc >= 0;
    for (int64_t i = 0; ok && i + 1 < o->dims[0]; i++)
        ok = off[i] >= 0 && off[i] <= off[i + 1] && off[i + 1] <= b->dims[0];
    if (!ok) {
        free(off), free(raw);
        return off && raw ? ms_err_set(err, MS_ERR_FORMAT, "report: %s: unreadable or inconsistent vocab_offsets/vocab_bytes", a->path)
                          : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    *offsets = off, *bytes = raw, *n_tokens = o->dims[0] - 1;
    return MS_OK;
}
