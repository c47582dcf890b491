/* The report's reader of analysis HDF5 files: lists every numeric dataset, decides which are
 * per-unit (leading dimension = the unit count) and hands out slabs of them as JSON. It knows
 * no dataset names: the page maps names to views, so a new analysis output shows up as data
 * without a change here. Serial HDF5 on rank 0. */
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
    app_ranalysis *a;
    int cap;
    bool oom;
} walk;

static int visit(const ms_h5_dsinfo *ds, void *op)
{
    walk *w = op;
    const char *name = ds->name;
    if ((ds->kind == MS_H5_INT || ds->kind == MS_H5_FLOAT) && strlen(name) < 128) {
        if (w->a->n_ds == w->cap) {
            int cap = w->cap ? 2 * w->cap : 32;
            app_rds *p = realloc(w->a->ds, (size_t)cap * sizeof *p);
            if (!p) {
                w->oom = true;
                return 1;
            }
            w->a->ds = p, w->cap = cap;
        }
        app_rds *d = &w->a->ds[w->a->n_ds++];
        memset(d, 0, sizeof *d);
        snprintf(d->name, sizeof d->name, "%s", name);
        d->rank = ds->rank;
        for (int i = 0; i < ds->rank; i++) d->dims[i] = ds->dims[i];
        d->is_int = ds->kind == MS_H5_INT;
    }
    return 0;
}

static bool attr_i64(ms_h5id f, const char *name, int64_t *v)
{
    int64_t np = 0;
    ms_h5_kind c = ms_h5_attr_info(f, name, &np, NULL);
    bool ok = false;
    if (np == 1) {
        if (c == MS_H5_INT || c == MS_H5_FLOAT) {
            double x;
            ok = ms_h5_attr_read_f64(f, name, &x) >= 0;
            *v = (int64_t)x;
        } else if (c == MS_H5_STRING) {
            char *buf = ms_h5_attr_read_str(f, name);
            if (buf) {
                char *end;
                long long x = strtoll(buf, &end, 10);
                ok = end != buf;
                *v = x;
            }
            free(buf);
        }
    }
    return ok;
}

ms_status app_ranalysis_open(app_ranalysis *a, const char *path, ms_err *err)
{
    memset(a, 0, sizeof *a);
    a->hid = -1;
    a->path = strdup(path);
    if (!a->path) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    ms_h5id f = ms_h5_file_open(path);
    if (f < 0) return ms_err_set(err, MS_ERR_IO, "report: %s: cannot open as HDF5", path);
    a->hid = f;
    walk w = {.a = a};
    ms_h5_dataset_visit(f, visit, &w);
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

void app_ranalysis_close(app_ranalysis *a)
{
    if (a->path && a->hid >= 0) ms_h5_file_close(a->hid);
    free(a->path);
    free(a->ds);
    memset(a, 0, sizeof *a);
    a->hid = -1;
}

const app_rds *app_ranalysis_find(const app_ranalysis *a, const char *name)
{
    for (int i = 0; i < a->n_ds; i++)
        if (strcmp(a->ds[i].name, name) == 0) return &a->ds[i];
    return NULL;
}

typedef struct attr_ctx {
    app_rbuf *b;
    int n;
    ms_h5id loc;
} attr_ctx;

static int attr_visit(const char *name, void *op)
{
    attr_ctx *c = op;
    int64_t np = 0;
    int rank = 0;
    ms_h5_kind cls = ms_h5_attr_info(c->loc, name, &np, &rank);
    if ((cls == MS_H5_INT || cls == MS_H5_FLOAT) && np >= 1 && np <= 4096) {
        double *v = malloc((size_t)np * sizeof *v);
        if (v && ms_h5_attr_read_f64(c->loc, name, v) >= 0) {
            app_rbuf_puts(c->b, c->n++ ? "," : "");
            app_rbuf_str(c->b, name, strlen(name));
            app_rbuf_puts(c->b, ":");
            if (rank >= 1) app_rbuf_puts(c->b, "[");
            for (int64_t i = 0; i < np; i++) {
                if (i) app_rbuf_puts(c->b, ",");
                app_rbuf_num(c->b, v[i]);
            }
            if (rank >= 1) app_rbuf_puts(c->b, "]");
        }
        free(v);
    } else if (cls == MS_H5_STRING && np == 1) {
        char *str = ms_h5_attr_read_str(c->loc, name);
        if (str) {
            app_rbuf_puts(c->b, c->n++ ? "," : "");
            app_rbuf_str(c->b, name, strlen(name));
            app_rbuf_puts(c->b, ":");
            app_rbuf_str(c->b, str, strlen(str));
        }
        free(str);
    }
    return 0;
}

ms_status app_ranalysis_attrs_json(const app_ranalysis *a, app_rbuf *b, ms_err *err)
{
    attr_ctx c = {.b = b, .loc = a->hid};
    if (ms_h5_attr_iterate(a->hid, attr_visit, &c) < 0) return ms_err_set(err, MS_ERR_FORMAT, "report: %s: cannot read the root attributes", a->path);
    return MS_OK;
}

/* Reads elements [u0,u1) x (rest of the dims) of ds as doubles into a malloc'd array. */
static ms_status read_slab(const app_ranalysis *a, const app_rds *ds, int64_t u0, int64_t u1, double **out,
                           size_t *count, ms_err *err)
{
    *out = NULL;
    int64_t start[8] = {0}, cnt[8];
    size_t n = 1;
    for (int i = 0; i < ds->rank; i++) {
        cnt[i] = ds->dims[i];
        if (i == 0 && ds->per_unit) start[0] = u0, cnt[0] = u1 - u0;
        n *= (size_t)cnt[i];
    }
    *count = n;
    double *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return ms_err_set(err, MS_ERR_NOMEM, "report: %s: out of memory reading %s", a->path, ds->name);
    int rc = -1;
    ms_h5id d = ms_h5_dataset_open(a->hid, ds->name);
    if (d >= 0) rc = ms_h5_dataset_read(d, MS_SAFETENSORS_F64, ds->rank, start, cnt, v);
    ms_h5_dataset_close(d);
    if (rc < 0) {
        free(v);
        return ms_err_set(err, MS_ERR_FORMAT, "report: %s: cannot read dataset %s", a->path, ds->name);
    }
    *out = v;
    return MS_OK;
}

/* Nested arrays over dims [lev, rank) of v (row-major), from *pos on. */
static void emit(app_rbuf *b, const double *v, size_t *pos, const int64_t *dims, int lev, int rank, bool is_int)
{
    if (lev == rank) {
        double x = v[(*pos)++];
        if (is_int) app_rbuf_int(b, (int64_t)x);
        else app_rbuf_num(b, x);
        return;
    }
    app_rbuf_puts(b, "[");
    for (int64_t i = 0; i < dims[lev]; i++) {
        if (i) app_rbuf_puts(b, ",");
        emit(b, v, pos, dims, lev + 1, rank, is_int);
    }
    app_rbuf_puts(b, "]");
}

ms_status app_ranalysis_slab_json(const app_ranalysis *a, const app_rds *ds, int64_t u0, int64_t u1, app_rbuf *b,
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

ms_status app_ranalysis_pick_i32(const app_ranalysis *a, const app_rds *ds, const int64_t *idx, int64_t u0, int64_t u1,
                                int32_t *out, ms_err *err)
{
    /* one element per unit: a (u1-u0, 1, ..., 1) hyperslab, so memory is one value per unit */
    int64_t start[8] = {0}, cnt[8];
    for (int i = 0; i < ds->rank; i++) {
        start[i] = i ? idx[i - 1] : u0;
        cnt[i] = i ? 1 : u1 - u0;
        if (i && (idx[i - 1] < 0 || idx[i - 1] >= ds->dims[i]))
            return ms_err_set(err, MS_ERR_FORMAT, "report: %s: index %lld outside %s's dimension %d", a->path,
                              (long long)idx[i - 1], ds->name, i);
    }
    if (u1 <= u0) return MS_OK;
    int rc = -1;
    ms_h5id d = ms_h5_dataset_open(a->hid, ds->name);
    if (d >= 0) rc = ms_h5_dataset_read(d, MS_SAFETENSORS_I32, ds->rank, start, cnt, out);
    ms_h5_dataset_close(d);
    if (rc < 0) return ms_err_set(err, MS_ERR_FORMAT, "report: %s: cannot read dataset %s", a->path, ds->name);
    return MS_OK;
}

ms_status app_ranalysis_check_ids(const app_ranalysis *a, const app_rds *ds, int64_t n_vocab, ms_err *err)
{
    int64_t per = 1; /* values per unit */
    for (int i = 1; i < ds->rank; i++) per *= ds->dims[i];
    const int64_t n_units = ds->rank ? ds->dims[0] : 1;
    const int64_t block = per > 0 ? (1 << 20) / per + 1 : n_units; /* ~4 MB of int32 per read */
    int32_t *buf = per > 0 ? malloc((size_t)(block * per) * sizeof *buf) : NULL;
    if (per > 0 && !buf) return ms_err_set(err, MS_ERR_NOMEM, "report: out of memory");
    ms_status st = MS_OK;
    ms_h5id d = ms_h5_dataset_open(a->hid, ds->name);
    if (d < 0) st = ms_err_set(err, MS_ERR_FORMAT, "report: %s: cannot read dataset %s", a->path, ds->name);
    for (int64_t u0 = 0; u0 < n_units && per > 0 && !st; u0 += block) {
        const int64_t u1 = u0 + block < n_units ? u0 + block : n_units;
        int64_t start[8] = {0}, cnt[8];
        for (int i = 0; i < ds->rank; i++) cnt[i] = i ? ds->dims[i] : u1 - u0;
        start[0] = u0;
        int rc = ms_h5_dataset_read(d, MS_SAFETENSORS_I32, ds->rank, start, cnt, buf);
        if (rc < 0) st = ms_err_set(err, MS_ERR_FORMAT, "report: %s: cannot read dataset %s", a->path, ds->name);
        for (int64_t i = 0; !st && i < (u1 - u0) * per; i++)
            if (buf[i] < -1 || buf[i] >= n_vocab)
                st = ms_err_set(err, MS_ERR_FORMAT,
                                "report: %s: dataset %s: unit %lld holds token id %d, outside the vocabulary of %lld "
                                "tokens (expected -1 for none, or 0..%lld)",
                                a->path, ds->name, (long long)(u0 + i / per), buf[i], (long long)n_vocab,
                                (long long)n_vocab - 1);
    }
    ms_h5_dataset_close(d);
    free(buf);
    return st;
}

ms_status app_report_read_matrix(const char *path, const char *name, float **out, int64_t *rows, int64_t *cols,
                                ms_err *err)
{
    *out = NULL;
    ms_h5id f = -1, d = -1;
    ms_status st = MS_OK;
    f = ms_h5_file_open(path);
    if (f >= 0) d = ms_h5_dataset_open(f, name);
    int rank = -1;
    int64_t dims[MS_H5_MAX_RANK];
    if (d < 0 || ms_h5_dataset_dims(d, &rank, dims) < 0 || rank != 2) {
        st = ms_err_set(err, MS_ERR_FORMAT, "report: %s: expected a 2-D dataset %s", path, name);
    } else {
        *rows = dims[0], *cols = dims[1];
        size_t cnt = (size_t)(dims[0] * dims[1]);
        float *m = malloc((cnt ? cnt : 1) * sizeof *m);
        if (!m) st = ms_err_set(err, MS_ERR_NOMEM, "report: %s: out of memory reading %s", path, name);
        else if (ms_h5_dataset_read(d, MS_SAFETENSORS_F32, 2, NULL, NULL, m) < 0) {
            free(m);
            st = ms_err_set(err, MS_ERR_FORMAT, "report: %s: cannot read %s", path, name);
        } else {
            *out = m;
        }
    }
    ms_h5_dataset_close(d);
    if (f >= 0) ms_h5_file_close(f);
    return st;
}

ms_status app_ranalysis_vocab(const app_ranalysis *a, int64_t **offsets, int64_t *n_tokens, unsigned char **bytes,
                             ms_err *err)
{
    *offsets = NULL, *bytes = NULL, *n_tokens = 0;
    const app_rds *o = app_ranalysis_find(a, "vocab_offsets"), *b = app_ranalysis_find(a, "vocab_bytes");
    if (!o || !b || o->rank != 1 || b->rank != 1 || o->dims[0] < 1) return MS_OK;
    int64_t *off = malloc((size_t)o->dims[0] * sizeof *off);
    unsigned char *raw = malloc((size_t)(b->dims[0] ? b->dims[0] : 1));
    int rc = -1;
    if (off && raw) {
        ms_h5id d1 = ms_h5_dataset_open(a->hid, "vocab_offsets");
        ms_h5id d2 = ms_h5_dataset_open(a->hid, "vocab_bytes");
        if (d1 >= 0 && d2 >= 0) {
            rc = ms_h5_dataset_read(d1, MS_SAFETENSORS_I64, 1, NULL, NULL, off);
            if (rc >= 0 && b->dims[0]) rc = ms_h5_dataset_read(d2, MS_SAFETENSORS_U8, 1, NULL, NULL, raw);
        }
        ms_h5_dataset_close(d1);
        ms_h5_dataset_close(d2);
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
