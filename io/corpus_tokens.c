/* Token shard files (MSTOKENS: header, checksummed ids; writer and pread reader) and tokenized
 * splits (a manifest's shards read as one stream of contexts). */
#include "monosem/io.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ===================================================================== token shard files */

struct ms_tokshard_writer {
    FILE *f;
    char *path, *tmp;
    int dtype_bytes;
    int64_t count;
    void *buf;       /* conversion buffer */
    EVP_MD_CTX *sum; /* sha256 of the token bytes, for the header's checksum */
};

/* The header's checksum: the first 8 bytes of the sha256 of the token bytes (little-endian);
 * 0 means none (shards written before checksums). */
static uint64_t sum_final(EVP_MD_CTX *ctx)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;
    EVP_DigestFinal_ex(ctx, d, &dn);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | d[i];
    return v ? v : 1;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void header_encode(unsigned char h[MS_TOKSHARD_HEADER], int dtype_bytes, int64_t count, uint64_t sum)
{
    memset(h, 0, MS_TOKSHARD_HEADER);
    memcpy(h, MS_TOKSHARD_MAGIC, 8);
    put_u32(h + 8, MS_TOKSHARD_VERSION);
    put_u32(h + 12, (uint32_t)dtype_bytes);
    put_u64(h + 16, (uint64_t)count);
    put_u64(h + 24, sum);
}

#define CONV_N 65536

ms_status ms_tokshard_create(ms_tokshard_writer **out, const char *path, int dtype_bytes,
                             ms_err *err)
{
    *out = NULL;
    if (dtype_bytes != 2 && dtype_bytes != 4)
        return ms_err_set(err, MS_ERR_UNSUPPORTED, "%s: token dtype must be 2 or 4 bytes, got %d",
                          path, dtype_bytes);
    ms_tokshard_writer *w = calloc(1, sizeof *w);
    size_t n = strlen(path) + 32;
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(n)) ||
        !(w->buf = malloc((size_t)CONV_N * 4)) || !(w->sum = EVP_MD_CTX_new())) {
        if (w) {
            free(w->path);
            free(w->tmp);
            free(w->buf);
            free(w);
        }
        return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    }
    EVP_DigestInit_ex(w->sum, EVP_sha256(), NULL);
    snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    w->dtype_bytes = dtype_bytes;
    w->f = fopen(w->tmp, "wb");
    unsigned char h[MS_TOKSHARD_HEADER];
    header_encode(h, dtype_bytes, 0, 0);
    if (!w->f || fwrite(h, 1, sizeof h, w->f) != sizeof h) {
        ms_status st = ms_err_set(err, MS_ERR_IO, "%s: cannot create: %s", w->tmp, strerror(errno));
        ms_tokshard_abort(w);
        return st;
    }
    *out = w;
    return MS_OK;
}

ms_status ms_tokshard_append(ms_tokshard_writer *w, const int32_t *ids, size_t n, ms_err *err)
{
    uint32_t lim = w->dtype_bytes == 2 ? 0xFFFFu : 0x7FFFFFFFu;
    while (n > 0) {
        size_t m = n < CONV_N ? n : CONV_N;
        unsigned char *b = w->buf;
        for (size_t i = 0; i < m; i++) {
            if (ids[i] < 0 || (uint32_t)ids[i] > lim)
                return ms_err_set(err, MS_ERR_FORMAT, "%s: token id %d at %" PRId64
                                  " does not fit %d-byte tokens", w->path, ids[i],
                                  w->count + (int64_t)i, w->dtype_bytes);
            uint32_t v = (uint32_t)ids[i];
            for (int k = 0; k < w->dtype_bytes; k++) b[i * (size_t)w->dtype_bytes + k] = (unsigned char)(v >> (8 * k));
        }
        if (fwrite(b, (size_t)w->dtype_bytes, m, w->f) != m)
            return ms_err_set(err, MS_ERR_IO, "%s: write failed: %s", w->tmp, strerror(errno));
        EVP_DigestUpdate(w->sum, b, m * (size_t)w->dtype_bytes);
        w->count += (int64_t)m;
        ids += m;
        n -= m;
    }
    return MS_OK;
}

int64_t ms_tokshard_writer_count(const ms_tokshard_writer *w) { return w->count; }

void ms_tokshard_abort(ms_tokshard_writer *w)
{
    if (!w) return;
    if (w->f) fclose(w->f);
    if (w->tmp) unlink(w->tmp);
    free(w->tmp);
    free(w->path);
    free(w->buf);
    EVP_MD_CTX_free(w->sum);
    free(w);
}

ms_status ms_tokshard_commit(ms_tokshard_writer *w, ms_err *err)
{
    unsigned char h[MS_TOKSHARD_HEADER];
    header_encode(h, w->dtype_bytes, w->count, sum_final(w->sum));
    ms_status st = MS_OK;
    if (fflush(w->f) != 0 || fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, sizeof h, w->f) != sizeof h ||
        fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)
        st = ms_err_set(err, MS_ERR_IO, "%s: write failed: %s", w->tmp, strerror(errno));
    int rc = fclose(w->f);
    w->f = NULL;
    if (st == MS_OK && rc != 0)
        st = ms_err_set(err, MS_ERR_IO, "%s: close failed: %s", w->tmp, strerror(errno));
    if (st == MS_OK && rename(w->tmp, w->path) != 0)
        st = ms_err_set(err, MS_ERR_IO, "%s: cannot rename into place: %s", w->path, strerror(errno));
    if (st == MS_OK) {
        free(w->tmp);
        w->tmp = NULL; /* nothing to unlink */
    }
    ms_tokshard_abort(w);
    return st;
}

ms_status ms_tokshard_open(ms_tokshard *s, const char *path, ms_err *err)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ms_err_set(err, MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char h[MS_TOKSHARD_HEADER];
    struct stat sb;
    ms_status st = MS_OK;
    if (fstat(fd, &sb) != 0 || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h) {
        st = ms_err_set(err, MS_ERR_FORMAT, "%s: shorter than the %d-byte token shard header",
                        path, MS_TOKSHARD_HEADER);
    } else if (memcmp(h, MS_TOKSHARD_MAGIC, 8) != 0) {
        st = ms_err_set(err, MS_ERR_FORMAT, "%s: bad magic: expected \"%s\" (a token shard)", path,
                        MS_TOKSHARD_MAGIC);
    } else if (get_u32(h + 8) != MS_TOKSHARD_VERSION) {
        st = ms_err_set(err, MS_ERR_FORMAT, "%s: version %u: expected %u", path, get_u32(h + 8),
                        MS_TOKSHARD_VERSION);
    } else if (get_u32(h + 12) != 2 && get_u32(h + 12) != 4) {
        st = ms_err_set(err, MS_ERR_FORMAT, "%s: dtype %u bytes: expected 2 or 4", path,
                        get_u32(h + 12));
    } else {
        uint64_t count = get_u64(h + 16);
        uint32_t dt = get_u32(h + 12);
        if (count > (uint64_t)INT64_MAX / 8 ||
            (uint64_t)sb.st_size != MS_TOKSHARD_HEADER + count * dt)
            st = ms_err_set(err, MS_ERR_FORMAT,
                            "%s: header says %" PRIu64 " tokens of %u bytes but the file has %lld bytes",
                            path, count, dt, (long long)sb.st_size);
        s->dtype_bytes = (int)dt;
        s->count = (int64_t)count;
        s->sum = get_u64(h + 24);
    }
    if (st == MS_OK && !(s->path = strdup(path))) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (st != MS_OK) {
        close(fd);
        memset(s, 0, sizeof *s);
        s->fd = -1;
        return st;
    }
    s->fd = fd;
    return MS_OK;
}

ms_status ms_tokshard_verify(const ms_tokshard *s, ms_err *err)
{
    if (s->sum == 0) return MS_OK; /* written before checksums */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1 << 20);
    ms_status st = ctx && buf ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", s->path);
    if (!st) EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    off_t off = MS_TOKSHARD_HEADER, end = MS_TOKSHARD_HEADER + (off_t)s->count * s->dtype_bytes;
    while (!st && off < end) {
        size_t want = end - off < (1 << 20) ? (size_t)(end - off) : (1u << 20);
        ssize_t k = pread(s->fd, buf, want, off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            st = ms_err_set(err, MS_ERR_IO, "%s: read failed: %s", s->path, k < 0 ? strerror(errno) : "unexpected end");
            break;
        }
        EVP_DigestUpdate(ctx, buf, (size_t)k);
        off += k;
    }
    uint64_t got = st ? 0 : sum_final(ctx);
    EVP_MD_CTX_free(ctx);
    free(buf);
    if (!st && got != s->sum)
        st = ms_err_set(err, MS_ERR_FORMAT,
                        "%s: corrupt: its tokens do not match the header's checksum (bytes changed after it was "
                        "written): rerun tokenize with --force", s->path);
    return st;
}

ms_status ms_tokshard_read(const ms_tokshard *s, int64_t start, int64_t n, int32_t *out,
                           ms_err *err)
{
    if (start < 0 || n < 0 || start + n > s->count)
        return ms_err_set(err, MS_ERR_STATE, "%s: read of tokens [%" PRId64 ", %" PRId64
                          ") past the end (%" PRId64 " tokens)", s->path, start, start + n, s->count);
    if (!s->verified) {
        /* the whole shard once per handle, on first use: a rank verifies what it reads */
        ms_status st = ms_tokshard_verify(s, err);
        if (st) return st;
        ((ms_tokshard *)s)->verified = true; /* the handle is the caller's, not const storage */
    }
    /* read into the tail of out (as bytes), then widen front to back in place */
    size_t nb = (size_t)n * (size_t)s->dtype_bytes;
    unsigned char *raw = (unsigned char *)out + ((size_t)n * 4 - nb);
    size_t done = 0;
    off_t off = MS_TOKSHARD_HEADER + (off_t)start * s->dtype_bytes;
    while (done < nb) {
        ssize_t k = pread(s->fd, raw + done, nb - done, off + (off_t)done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return ms_err_set(err, MS_ERR_IO, "%s: read failed at token %" PRId64 ": %s", s->path,
                              start, k < 0 ? strerror(errno) : "unexpected end of file");
        done += (size_t)k;
    }
    if (s->dtype_bytes == 2) {
        for (int64_t i = 0; i < n; i++)
            out[i] = (int32_t)((uint32_t)raw[2 * i] | ((uint32_t)raw[2 * i + 1] << 8));
    } else {
        for (int64_t i = 0; i < n; i++) out[i] = (int32_t)get_u32(raw + 4 * i);
    }
    return MS_OK;
}

void ms_tokshard_close(ms_tokshard *s)
{
    if (!s) return;
    if (s->path && s->fd >= 0) close(s->fd);
    free(s->path);
    s->path = NULL;
    s->fd = -1;
}

/* ===================================================================== tokenized splits */

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

ms_status ms_tokset_open(ms_tokset *ts, const char *token_dir, const char *split, ms_err *err)
{
    memset(ts, 0, sizeof *ts);
    char *mpath = ms_path_join(token_dir, MS_TOKENS_MANIFEST);
    if (!mpath) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    if (!ms_path_exists(mpath)) {
        ms_status st = ms_err_set(err, MS_ERR_STATE, "%s: no token manifest (run `monosem tokenize` first)", mpath);
        free(mpath);
        return st;
    }
    ms_status st = ms_file_read_all(mpath, &text, &len, err);
    if (st != MS_OK) {
        free(mpath);
        return st;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *arr = j ? jget(j, split) : NULL;
    const cJSON *sha = j ? jget(j, "tokenizer_sha256") : NULL;
    const cJSON *vs = j ? jget(j, "vocab_size") : NULL, *eot = j ? jget(j, "eot") : NULL;
    if (!cJSON_IsArray(arr) || !cJSON_IsString(sha) || !cJSON_IsNumber(vs) || !cJSON_IsNumber(eot)) {
        st = ms_err_set(err, MS_ERR_FORMAT,
                        "%s: expected a JSON object with \"%s\" (array), \"tokenizer_sha256\", "
                        "\"vocab_size\" and \"eot\"", mpath, split);
        goto done;
    }
    /* numbers range-checked before the conversion (a double outside int32 is undefined) */
    if (!(vs->valuedouble >= 1 && vs->valuedouble <= INT32_MAX && vs->valuedouble == (int32_t)vs->valuedouble) ||
        !(eot->valuedouble >= -1 && eot->valuedouble < vs->valuedouble && eot->valuedouble == (int32_t)eot->valuedouble)) {
        st = ms_err_set(err, MS_ERR_FORMAT, "%s: vocab_size %g / eot %g: expected integers, 1 <= vocab_size and "
                        "-1 <= eot < vocab_size", mpath, vs->valuedouble, eot->valuedouble);
        goto done;
    }
    snprintf(ts->tokenizer_sha256, sizeof ts->tokenizer_sha256, "%s", sha->valuestring);
    ts->vocab_size = (int32_t)vs->valuedouble;
    ts->eot = (int32_t)eot->valuedouble;
    int n = cJSON_GetArraySize(arr);
    ts->shards = calloc((size_t)n + 1, sizeof *ts->shards);
    ts->offsets = calloc((size_t)n + 1, sizeof *ts->offsets);
    if (!ts->shards || !ts->offsets) {
        st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) ts->shards[i].fd = -1;
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(arr, i);
        const cJSON *file = jget(e, "file"), *tok = jget(e, "tokens"), *docs = jget(e, "docs");
        /* a shard is a plain name inside token_dir: no path can lead elsewhere */
        if (!cJSON_IsString(file) || !cJSON_IsNumber(tok) || strchr(file->valuestring, '/') ||
            !file->valuestring[0] || strcmp(file->valuestring, "..") == 0) {
            st = ms_err_set(err, MS_ERR_FORMAT, "%s: %s[%d]: expected {\"file\": NAME, \"tokens\": ...} with a "
                            "plain file name", mpath, split, i);
            goto done;
        }
        char *sp = ms_path_join(token_dir, file->valuestring);
        if (!sp) {
            st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
            goto done;
        }
        st = ms_tokshard_open(&ts->shards[i], sp, err);
        free(sp);
        if (st != MS_OK) goto done;
        ts->n_shards = i + 1;
        if ((double)ts->shards[i].count != tok->valuedouble) {
            st = ms_err_set(err, MS_ERR_STATE, "%s: %s has %" PRId64 " tokens, manifest says %.0f",
                            mpath, file->valuestring, ts->shards[i].count, tok->valuedouble);
            goto done;
        }
        ts->offsets[i + 1] = ts->offsets[i] + ts->shards[i].count;
        if (cJSON_IsNumber(docs) && docs->valuedouble >= 0 && docs->valuedouble < 9e18)
            ts->n_docs += (int64_t)docs->valuedouble;
    }
    ts->count = ts->offsets[n];
done:
    cJSON_Delete(j);
    free(mpath);
    if (st != MS_OK) ms_tokset_close(ts);
    return st;
}

void ms_tokset_close(ms_tokset *ts)
{
    if (!ts) return;
    for (int i = 0; i < ts->n_shards; i++) ms_tokshard_close(&ts->shards[i]);
    free(ts->shards);
    free(ts->offsets);
    memset(ts, 0, sizeof *ts);
}

ms_status ms_tokset_read(const ms_tokset *ts, int64_t start, int64_t n, int32_t *out, ms_err *err)
{
    if (start < 0 || n < 0 || start + n > ts->count)
        return ms_err_set(err, MS_ERR_STATE, "token split: read of [%" PRId64 ", %" PRId64
                          ") past the end (%" PRId64 " tokens)", start, start + n, ts->count);
    /* binary search for the shard holding start */
    int lo = 0, hi = ts->n_shards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ts->offsets[mid] <= start) lo = mid;
        else hi = mid - 1;
    }
    while (n > 0) {
        int64_t local = start - ts->offsets[lo];
        int64_t m = ts->shards[lo].count - local;
        if (m > n) m = n;
        if (m > 0) {
            ms_status st = ms_tokshard_read(&ts->shards[lo], local, m, out, err);
            if (st != MS_OK) return st;
        }
        out += m;
        start += m;
        n -= m;
        lo++;
    }
    return MS_OK;
}

int64_t ms_tokset_n_contexts(const ms_tokset *ts, int64_t context, bool target)
{
    if (context <= 0) return 0;
    int64_t avail = ts->count - (target ? 1 : 0);
    return avail > 0 ? avail / context : 0;
}

ms_status ms_tokset_context(const ms_tokset *ts, int64_t i, int64_t context, bool target,
                            int32_t *out, ms_err *err)
{
    return ms_tokset_read(ts, i * context, context + (target ? 1 : 0), out, err);
}
