/* safetensors reader (validated header via cJSON, F32/F16/BF16/F64 -> f32) and atomic writer. */
#include "monosem/io.h"

#include <openssl/evp.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    size_t size;
} st_dtypes[MS_SAFETENSORS_DTYPE_COUNT] = {
    [MS_SAFETENSORS_F32] = {"F32", 4}, [MS_SAFETENSORS_F16] = {"F16", 2}, [MS_SAFETENSORS_BF16] = {"BF16", 2},
    [MS_SAFETENSORS_F64] = {"F64", 8}, [MS_SAFETENSORS_I64] = {"I64", 8}, [MS_SAFETENSORS_I32] = {"I32", 4},
    [MS_SAFETENSORS_I16] = {"I16", 2}, [MS_SAFETENSORS_I8] = {"I8", 1},   [MS_SAFETENSORS_U8] = {"U8", 1},
    [MS_SAFETENSORS_BOOL] = {"BOOL", 1},
};

size_t ms_safetensors_dtype_size(ms_safetensors_dtype d)
{
    return (unsigned)d < MS_SAFETENSORS_DTYPE_COUNT ? st_dtypes[d].size : 0;
}

const char *ms_safetensors_dtype_name(ms_safetensors_dtype d)
{
    return (unsigned)d < MS_SAFETENSORS_DTYPE_COUNT ? st_dtypes[d].name : "?";
}

void ms_safetensors_close(ms_safetensors *st)
{
    if (!st) return;
    if (st->f) fclose(st->f);
    for (int i = 0; i < st->n; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->meta);
    free(st->path);
    memset(st, 0, sizeof *st);
}

/* A JSON number that is a non-negative integer exactly representable (< 2^53). */
static bool json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return false;
    double v = j->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || v != floor(v)) return false;
    *out = (uint64_t)v;
    return true;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const ms_safetensors_tensor *const *)a)->name, (*(const ms_safetensors_tensor *const *)b)->name);
}

static int cmp_begin(const void *a, const void *b)
{
    const ms_safetensors_tensor *x = *(const ms_safetensors_tensor *const *)a, *y = *(const ms_safetensors_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* The __metadata__ object e: string values only, copied into st->meta. */
static ms_status parse_meta(ms_safetensors *st, const cJSON *e, const char *path, ms_err *err)
{
    if (!cJSON_IsObject(e))
        return ms_err_set(err, MS_ERR_FORMAT, "%s: __metadata__: expected an object of strings", path);
    int nm = cJSON_GetArraySize(e);
    free(st->meta);
    st->meta = calloc(2 * (size_t)nm + 1, sizeof *st->meta);
    if (!st->meta) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    for (const cJSON *m = e->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return ms_err_set(err, MS_ERR_FORMAT, "%s: __metadata__ key '%s': expected a string value", path,
                              m->string ? m->string : "");
        st->meta[2 * st->n_meta] = strdup(m->string ? m->string : "");
        st->meta[2 * st->n_meta + 1] = strdup(m->valuestring);
        st->n_meta++;
        if (!st->meta[2 * st->n_meta - 2] || !st->meta[2 * st->n_meta - 1])
            return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    }
    return MS_OK;
}

/* t's 'shape' sh: at most MS_SAFETENSORS_MAX_DIMS non-negative integers whose product cannot overflow. */
static ms_status parse_shape(ms_safetensors_tensor *t, const cJSON *sh, const char *key, const char *path, ms_err *err)
{
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > MS_SAFETENSORS_MAX_DIMS)
        return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s': expected 'shape' as an array of at most %d integers",
                          path, key, MS_SAFETENSORS_MAX_DIMS);
    uint64_t numel = 1;
    for (const cJSON *s = sh->child; s; s = s->next) {
        uint64_t v;
        if (!json_uint(s, &v))
            return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s': shape entries must be non-negative integers",
                              path, key);
        /* overflow guard: the product must fit the data section anyway */
        if (v != 0 && numel > (UINT64_MAX / 16) / v)
            return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s': shape too large", path, key);
        numel *= v;
        t->shape[t->ndim++] = (int64_t)v;
    }
    t->numel = numel;
    return MS_OK;
}

/* One tensor entry e (its name already in t): dtype, shape, and data_offsets inside the data
 * section and spanning exactly dtype x shape. */
static ms_status parse_tensor(ms_safetensors_tensor *t, const cJSON *e, const char *key, uint64_t data_len,
                              const char *path, ms_err *err)
{
    if (!cJSON_IsObject(e)) return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s': expected an object", path, key);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s': expected a string 'dtype'", path, key);
    int d = -1;
    for (int k = 0; k < MS_SAFETENSORS_DTYPE_COUNT; k++)
        if (strcmp(dt->valuestring, st_dtypes[k].name) == 0) d = k;
    if (d < 0)
        return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.32s'", path, key, dt->valuestring);
    t->dtype = (ms_safetensors_dtype)d;
    ms_status rc = parse_shape(t, sh, key, path, err);
    if (rc) return rc;
    const uint64_t numel = t->numel;
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &b) ||
        !json_uint(off->child->next, &en))
        return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s': expected 'data_offsets' [begin, end]", path, key);
    if (b > en || en > data_len)
        return ms_err_set(err, MS_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section (%llu bytes)", path,
                          key, (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_len);
    if (en - b != numel * st_dtypes[d].size)
        return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s': data_offsets span %llu bytes, shape x %s needs %llu",
                          path, key, (unsigned long long)(en - b), st_dtypes[d].name,
                          (unsigned long long)(numel * st_dtypes[d].size));
    t->begin = b;
    t->end = en;
    return MS_OK;
}

/* No two tensors share a name or overlapping bytes (sorting: n log n, even for a hostile header
 * with many tensors). */
static ms_status check_unique(const ms_safetensors *st, const char *path, ms_err *err)
{
    ms_safetensors_tensor **order = malloc(((size_t)st->n + 1) * sizeof *order);
    if (!order) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    ms_status rc = MS_OK;
    for (int i = 0; i < st->n; i++) order[i] = &st->tensors[i];
    qsort(order, (size_t)st->n, sizeof *order, cmp_name);
    for (int i = 1; i < st->n && !rc; i++)
        if (strcmp(order[i]->name, order[i - 1]->name) == 0)
            rc = ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s': duplicate name", path, order[i]->name);
    /* overlap check: sort by begin, each empty-or-not range must start at or after the last end */
    if (!rc) {
        for (int i = 0; i < st->n; i++) order[i] = &st->tensors[i];
        qsort(order, (size_t)st->n, sizeof *order, cmp_begin);
    }
    for (int i = 1; i < st->n && !rc; i++)
        if (order[i]->begin < order[i - 1]->end)
            rc = ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s': data overlaps tensor '%s'", path, order[i]->name,
                            order[i - 1]->name);
    free(order);
    return rc;
}

ms_status ms_safetensors_parse_header(ms_safetensors *st, const char *path, const char *json, size_t len,
                             uint64_t data_len, ms_err *err)
{
    memset(st, 0, sizeof *st);
    ms_status rc = MS_OK;
    st->path = strdup(path ? path : "(memory)");
    if (!st->path) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    st->data_len = data_len;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        rc = ms_err_set(err, MS_ERR_FORMAT, "%s: safetensors header: expected a JSON object", path);
        goto done;
    }
    int count = cJSON_GetArraySize(root);
    st->tensors = calloc((size_t)count + 1, sizeof *st->tensors);
    if (!st->tensors) {
        rc = ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (const cJSON *e = root->child; e && !rc; e = e->next) {
        const char *key = e->string ? e->string : "";
        if (strcmp(key, "__metadata__") == 0) {
            rc = parse_meta(st, e, path, err);
            continue;
        }
        ms_safetensors_tensor *t = &st->tensors[st->n];
        t->name = strdup(key);
        if (!t->name) {
            rc = ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        st->n++;
        rc = parse_tensor(t, e, key, data_len, path, err);
    }
    if (!rc) rc = check_unique(st, path, err);
done:
    cJSON_Delete(root);
    if (rc != MS_OK) ms_safetensors_close(st);
    return rc;
}

ms_status ms_safetensors_open(ms_safetensors *st, const char *path, ms_err *err)
{
    memset(st, 0, sizeof *st);
    FILE *f = fopen(path, "rb");
    if (!f) return ms_err_set(err, MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        fclose(f);
        return ms_err_set(err, MS_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    unsigned char lenb[8];
    if (fsize < 8 || fread(lenb, 1, 8, f) != 8) {
        fclose(f);
        return ms_err_set(err, MS_ERR_FORMAT, "%s: not a safetensors file: shorter than the 8-byte header length", path);
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | lenb[i];
    if (n > MS_SAFETENSORS_MAX_HEADER || n > fsize - 8) {
        fclose(f);
        return ms_err_set(err, MS_ERR_FORMAT,
                          "%s: safetensors header length %llu runs past the end of the file (%llu bytes) or the %u-byte limit",
                          path, (unsigned long long)n, (unsigned long long)fsize, MS_SAFETENSORS_MAX_HEADER);
    }
    char *hdr = malloc(n + 1);
    if (!hdr) {
        fclose(f);
        return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory for a %llu-byte header", path, (unsigned long long)n);
    }
    if (fread(hdr, 1, n, f) != n) {
        free(hdr);
        fclose(f);
        return ms_err_set(err, MS_ERR_IO, "%s: short read of the header", path);
    }
    ms_status rc = ms_safetensors_parse_header(st, path, hdr, n, fsize - 8 - n, err);
    free(hdr);
    if (rc != MS_OK) {
        fclose(f);
        return rc;
    }
    st->f = f;
    st->data_start = 8 + n;
    rc = ms_safetensors_verify(st, err);
    if (rc != MS_OK) ms_safetensors_close(st);
    return rc;
}

/* The data section's sha256, streamed from the file (page cache makes the later tensor reads
 * cheap). Measured on this machine: see docs/formats.md. */
ms_status ms_safetensors_verify(const ms_safetensors *st, ms_err *err)
{
    const char *want = ms_safetensors_meta(st, MS_SAFETENSORS_CHECKSUM_KEY);
    if (!want) return MS_OK; /* files from other tools carry none */
    if (!st->f) return MS_OK;
    if (strlen(want) != 64)
        return ms_err_set(err, MS_ERR_FORMAT, "%s: corrupt: __metadata__ %s is not 64 hex digits", st->path,
                          MS_SAFETENSORS_CHECKSUM_KEY);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *chunk = malloc(1 << 20);
    if (!ctx || !chunk) {
        EVP_MD_CTX_free(ctx);
        free(chunk);
        return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory to verify the checksum", st->path);
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    ms_status rc = MS_OK;
    if (fseeko(st->f, (off_t)st->data_start, SEEK_SET) != 0)
        rc = ms_err_set(err, MS_ERR_IO, "%s: seek failed: %s", st->path, strerror(errno));
    uint64_t left = st->data_len;
    while (!rc && left > 0) {
        size_t k = left < (1u << 20) ? (size_t)left : (1u << 20);
        if (fread(chunk, 1, k, st->f) != k) {
            rc = ms_err_set(err, MS_ERR_IO, "%s: short read of the data section (file truncated?)", st->path);
            break;
        }
        EVP_DigestUpdate(ctx, chunk, k);
        left -= k;
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;
    EVP_DigestFinal_ex(ctx, d, &dn);
    EVP_MD_CTX_free(ctx);
    free(chunk);
    if (rc) return rc;
    char got[65];
    for (unsigned i = 0; i < 32; i++) snprintf(got + 2 * i, 3, "%02x", d[i]);
    if (strcmp(got, want) != 0)
        return ms_err_set(err, MS_ERR_FORMAT,
                          "%s: corrupt: the sha256 of its %llu data bytes is %.16s..., the header records %.16s... "
                          "(bytes changed after it was written)",
                          st->path, (unsigned long long)st->data_len, got, want);
    return MS_OK;
}

const ms_safetensors_tensor *ms_safetensors_find(const ms_safetensors *st, const char *name)
{
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *ms_safetensors_meta(const ms_safetensors *st, const char *key)
{
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

ms_status ms_safetensors_read_f32(const ms_safetensors *st, const ms_safetensors_tensor *t, float *dst, ms_err *err)
{
    if (!st->f) return ms_err_set(err, MS_ERR_STATE, "%s: tensor '%s': no file to read from", st->path, t->name);
    if (t->dtype != MS_SAFETENSORS_F32 && t->dtype != MS_SAFETENSORS_F16 && t->dtype != MS_SAFETENSORS_BF16 && t->dtype != MS_SAFETENSORS_F64)
        return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s': dtype %s, expected F32, F16, BF16 or F64",
                          st->path, t->name, ms_safetensors_dtype_name(t->dtype));
    size_t es = ms_safetensors_dtype_size(t->dtype);
    if (fseeko(st->f, (off_t)(st->data_start + t->begin), SEEK_SET) != 0)
        return ms_err_set(err, MS_ERR_IO, "%s: tensor '%s': seek failed: %s", st->path, t->name, strerror(errno));
    if (t->dtype == MS_SAFETENSORS_F32) {
        if (fread(dst, 4, t->numel, st->f) != t->numel)
            return ms_err_set(err, MS_ERR_IO, "%s: tensor '%s': short read (file truncated?)", st->path, t->name);
        return MS_OK; /* little-endian host assumed (x86-64, aarch64) */
    }
    /* convert in chunks through a small buffer */
    unsigned char buf[1 << 16];
    size_t per = sizeof buf / es, done = 0;
    while (done < t->numel) {
        size_t k = t->numel - done < per ? t->numel - done : per;
        if (fread(buf, es, k, st->f) != k)
            return ms_err_set(err, MS_ERR_IO, "%s: tensor '%s': short read (file truncated?)", st->path, t->name);
        for (size_t i = 0; i < k; i++) {
            if (t->dtype == MS_SAFETENSORS_F16) {
                uint16_t h;
                memcpy(&h, buf + 2 * i, 2);
                dst[done + i] = f16_to_f32(h);
            } else if (t->dtype == MS_SAFETENSORS_BF16) {
                uint16_t h;
                memcpy(&h, buf + 2 * i, 2);
                uint32_t bits = (uint32_t)h << 16;
                memcpy(&dst[done + i], &bits, 4);
            } else {
                double v;
                memcpy(&v, buf + 8 * i, 8);
                dst[done + i] = (float)v;
            }
        }
        done += k;
    }
    return MS_OK;
}

ms_status ms_safetensors_read_f32_shaped(const ms_safetensors *st, const char *name, int ndim,
                                const int64_t *shape, float *dst, ms_err *err)
{
    const ms_safetensors_tensor *t = ms_safetensors_find(st, name);
    if (!t) return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s' is missing", st->path, name);
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char got[160] = "", want[160] = "";
        size_t g = 0, w = 0;
        for (int i = 0; i < t->ndim && g < sizeof got; i++)
            g += (size_t)snprintf(got + g, sizeof got - g, "%s%lld", i ? "," : "", (long long)t->shape[i]);
        for (int i = 0; i < ndim && w < sizeof want; i++)
            w += (size_t)snprintf(want + w, sizeof want - w, "%s%lld", i ? "," : "", (long long)shape[i]);
        return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor '%s': shape (%s), expected (%s)", st->path, name,
                          got, want);
    }
    return ms_safetensors_read_f32(st, t, dst, err);
}

/* The header text is built by hand so tensors keep the caller's order. */
static bool buf_put(char **b, size_t *n, size_t *cap, const char *s, size_t len)
{
    if (*n + len + 1 > *cap) {
        size_t nc = (*cap ? *cap : 256);
        while (*n + len + 1 > nc) nc *= 2;
        char *nb = realloc(*b, nc);
        if (!nb) return false;
        *b = nb;
        *cap = nc;
    }
    memcpy(*b + *n, s, len);
    *n += len;
    (*b)[*n] = 0;
    return true;
}

static bool buf_json_str(char **b, size_t *n, size_t *cap, const char *s)
{
    /* small hand escaper: quotes, backslash, control characters */
    if (!buf_put(b, n, cap, "\"", 1)) return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char tmp[8];
        size_t k;
        if (*p == '"' || *p == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)*p;
            k = 2;
        } else if (*p < 0x20) {
            k = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", *p);
        } else {
            tmp[0] = (char)*p;
            k = 1;
        }
        if (!buf_put(b, n, cap, tmp, k)) return false;
    }
    return buf_put(b, n, cap, "\"", 1);
}

/* sha256 (hex) of the items' data, in order: the data section the writer lays out. */
static void items_sha256(const ms_safetensors_item *items, int n_items, char out[65])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (int i = 0; i < n_items; i++) {
        uint64_t numel = 1;
        for (int k = 0; k < items[i].ndim; k++) numel *= (uint64_t)items[i].shape[k];
        size_t bytes = (size_t)(numel * ms_safetensors_dtype_size(items[i].dtype));
        if (bytes) EVP_DigestUpdate(ctx, items[i].data, bytes);
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;
    EVP_DigestFinal_ex(ctx, d, &dn);
    EVP_MD_CTX_free(ctx);
    for (unsigned i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static ms_status st_write(const char *path, const ms_safetensors_item *items, int n_items, const char *const *meta_kv,
                          int n_meta, bool keep_prev, ms_err *err)
{
    char *h = NULL;
    size_t hn = 0, hcap = 0;
    char sum[65];
    items_sha256(items, n_items, sum);
    bool ok = buf_put(&h, &hn, &hcap, "{", 1);
    ok = ok && buf_put(&h, &hn, &hcap, "\"__metadata__\":{", 16);
    for (int i = 0; i < n_meta && ok; i++) {
        if (strcmp(meta_kv[2 * i], MS_SAFETENSORS_CHECKSUM_KEY) == 0) continue; /* ours is written below */
        ok = buf_json_str(&h, &hn, &hcap, meta_kv[2 * i]) && buf_put(&h, &hn, &hcap, ":", 1) &&
             buf_json_str(&h, &hn, &hcap, meta_kv[2 * i + 1]) && buf_put(&h, &hn, &hcap, ",", 1);
    }
    ok = ok && buf_json_str(&h, &hn, &hcap, MS_SAFETENSORS_CHECKSUM_KEY) && buf_put(&h, &hn, &hcap, ":", 1) &&
         buf_json_str(&h, &hn, &hcap, sum) && buf_put(&h, &hn, &hcap, "}", 1);
    n_meta = 1; /* the header has a __metadata__ entry: tensors follow a comma */
    uint64_t off = 0;
    uint64_t *sizes = calloc((size_t)n_items + 1, sizeof *sizes);
    if (!sizes) ok = false;
    for (int i = 0; i < n_items && ok; i++) {
        const ms_safetensors_item *it = &items[i];
        uint64_t numel = 1;
        for (int k = 0; k < it->ndim; k++) numel *= (uint64_t)it->shape[k];
        sizes[i] = numel * ms_safetensors_dtype_size(it->dtype);
        char tmp[128];
        if (i || n_meta > 0) ok = buf_put(&h, &hn, &hcap, ",", 1);
        ok = ok && buf_json_str(&h, &hn, &hcap, it->name);
        int k = snprintf(tmp, sizeof tmp, ":{\"dtype\":\"%s\",\"shape\":[", ms_safetensors_dtype_name(it->dtype));
        ok = ok && buf_put(&h, &hn, &hcap, tmp, (size_t)k);
        for (int d = 0; d < it->ndim && ok; d++) {
            k = snprintf(tmp, sizeof tmp, "%s%lld", d ? "," : "", (long long)it->shape[d]);
            ok = buf_put(&h, &hn, &hcap, tmp, (size_t)k);
        }
        k = snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                     (unsigned long long)(off + sizes[i]));
        ok = ok && buf_put(&h, &hn, &hcap, tmp, (size_t)k);
        off += sizes[i];
    }
    ok = ok && buf_put(&h, &hn, &hcap, "}", 1);
    /* pad the header with spaces so the data starts 8-byte aligned */
    while (ok && (8 + hn) % 8) ok = buf_put(&h, &hn, &hcap, " ", 1);
    if (!ok) {
        free(h);
        free(sizes);
        return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory building the header", path);
    }
    char tmpname[4096];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmpname, "wb");
    if (!f) {
        free(h);
        free(sizes);
        return ms_err_set(err, MS_ERR_IO, "%s: cannot create: %s", tmpname, strerror(errno));
    }
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)((uint64_t)hn >> (8 * i));
    ok = fwrite(lenb, 1, 8, f) == 8 && fwrite(h, 1, hn, f) == hn;
    for (int i = 0; i < n_items && ok; i++)
        ok = sizes[i] == 0 || fwrite(items[i].data, 1, sizes[i], f) == sizes[i];
    free(h);
    free(sizes);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0) ok = false;
    static int64_t n_saved = 0; /* test hook "save": a crash between the data and the rename */
    if (ok) ms_testhook("save", ++n_saved);
    if (ok && keep_prev) {
        /* the previous file becomes path.prev (the fallback if this one is found corrupt); a
         * crash between the two renames leaves path.prev alone, which the reader falls back to */
        char prev[4096];
        snprintf(prev, sizeof prev, "%s.prev", path);
        if (rename(path, prev) != 0 && errno != ENOENT) ok = false;
    }
    if (!ok || rename(tmpname, path) != 0) {
        int e = errno;
        unlink(tmpname);
        return ms_err_set(err, MS_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return MS_OK;
}

ms_status ms_safetensors_write(const char *path, const ms_safetensors_item *items, int n_items,
                      const char *const *meta_kv, int n_meta, ms_err *err)
{
    return st_write(path, items, n_items, meta_kv, n_meta, false, err);
}

ms_status ms_safetensors_write_rotate(const char *path, const ms_safetensors_item *items, int n_items,
                             const char *const *meta_kv, int n_meta, ms_err *err)
{
    return st_write(path, items, n_items, meta_kv, n_meta, true, err);
}
