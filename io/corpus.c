/* Corpus: glob expansion, streaming document readers (text, jsonl, token shards), the seeded
 * held-out split, token shard files, tokenized splits and the rank-sharded tokenize core. */
#include "monosem/io.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ===================================================================== paths */

void ms_corpus_paths_free(char **paths, int n)
{
    if (!paths) return;
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

ms_status ms_corpus_expand(const char *const *patterns, int n_patterns, char ***paths,
                           int *n_paths, ms_err *err)
{
    *paths = NULL;
    *n_paths = 0;
    char **out = NULL;
    int n = 0, cap = 0;
    ms_status st = MS_OK;
    for (int p = 0; p < n_patterns && st == MS_OK; p++) {
        glob_t g;
        memset(&g, 0, sizeof g);
        /* glob sorts its matches; GLOB_NOCHECK is not used so literal misses are errors */
        int rc = glob(patterns[p], GLOB_ERR, NULL, &g);
        if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
            st = ms_err_set(err, MS_ERR_IO, "corpus.paths[%d]: '%s' matches no file", p,
                            patterns[p]);
        } else if (rc != 0) {
            st = ms_err_set(err, MS_ERR_IO, "corpus.paths[%d]: cannot expand '%s'", p,
                            patterns[p]);
        }
        for (size_t i = 0; st == MS_OK && i < g.gl_pathc; i++) {
            struct stat sb;
            if (stat(g.gl_pathv[i], &sb) != 0 || !S_ISREG(sb.st_mode)) continue; /* dirs */
            bool dup = false;
            for (int j = 0; j < n && !dup; j++) dup = strcmp(out[j], g.gl_pathv[i]) == 0;
            if (dup) continue;
            if (n == cap) {
                int nc = cap ? 2 * cap : 16;
                char **no = realloc(out, (size_t)nc * sizeof *no);
                if (!no) {
                    st = ms_err_set(err, MS_ERR_NOMEM, "corpus.paths: out of memory");
                    break;
                }
                out = no;
                cap = nc;
            }
            if (!(out[n] = strdup(g.gl_pathv[i]))) {
                st = ms_err_set(err, MS_ERR_NOMEM, "corpus.paths: out of memory");
                break;
            }
            n++;
        }
        globfree(&g);
    }
    if (st == MS_OK && n == 0)
        st = ms_err_set(err, MS_ERR_IO, "corpus.paths: no regular file matched");
    if (st != MS_OK) {
        ms_corpus_paths_free(out, n);
        return st;
    }
    *paths = out;
    *n_paths = n;
    return MS_OK;
}

/* ===================================================================== document readers */

struct ms_doc_reader {
    char *path;
    ms_doc_opts opts;
    FILE *f;
    int64_t line;    /* lines consumed so far */
    int64_t n_docs;  /* documents returned so far */
    char *lbuf;      /* getline buffer */
    size_t lcap;
    char *text;      /* current document */
    size_t tlen, tcap;
    bool done;
    /* token files */
    ms_tokshard shard;
    int64_t tpos;    /* next token to read */
    int32_t *ids;    /* current document */
    size_t n_ids, ids_cap;
    int32_t *blk;    /* read-ahead block */
    size_t blk_n, blk_pos;
};

static ms_status text_reserve(ms_doc_reader *r, size_t need, ms_err *err)
{
    if (need <= r->tcap) return MS_OK;
    size_t nc = r->tcap ? r->tcap : 4096;
    while (nc < need) nc *= 2;
    char *nt = realloc(r->text, nc);
    if (!nt) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory for a document", r->path);
    r->text = nt;
    r->tcap = nc;
    return MS_OK;
}

ms_status ms_doc_reader_open(ms_doc_reader **out, const char *path, const ms_doc_opts *opts,
                             ms_err *err)
{
    *out = NULL;
    ms_doc_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    }
    r->opts = *opts;
    r->shard.fd = -1;
    ms_status st = MS_OK;
    if (opts->format == MS_CORPUS_TOKENS) {
        st = ms_tokshard_open(&r->shard, path, err);
    } else if (opts->format == MS_CORPUS_TEXT || opts->format == MS_CORPUS_JSONL) {
        r->f = fopen(path, "rb");
        if (!r->f) st = ms_err_set(err, MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    } else {
        st = ms_err_set(err, MS_ERR_CONFIG, "%s: unknown corpus format %d", path, opts->format);
    }
    if (st != MS_OK) {
        ms_doc_reader_close(r);
        return st;
    }
    *out = r;
    return MS_OK;
}

void ms_doc_reader_close(ms_doc_reader *r)
{
    if (!r) return;
    if (r->f) fclose(r->f);
    ms_tokshard_close(&r->shard);
    free(r->lbuf);
    free(r->text);
    free(r->ids);
    free(r->blk);
    free(r->path);
    free(r);
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return false;
    return true;
}

/* Strips a trailing "\n" or "\r\n" for delimiter comparison. */
static size_t line_body(const char *s, size_t n)
{
    if (n && s[n - 1] == '\n') n--;
    if (n && s[n - 1] == '\r') n--;
    return n;
}

static ms_status next_text(ms_doc_reader *r, ms_doc *doc, bool *got, ms_err *err)
{
    const char *delim = r->opts.delimiter;
    size_t dlen = delim ? strlen(delim) : 0;
    for (;;) {
        if (r->done) return MS_OK;
        r->tlen = 0;
        int64_t start_line = r->line + 1;
        ssize_t k;
        bool ended = false;
        while ((k = getline(&r->lbuf, &r->lcap, r->f)) >= 0) {
            r->line++;
            if (dlen && line_body(r->lbuf, (size_t)k) == dlen &&
                memcmp(r->lbuf, delim, dlen) == 0) {
                ended = true;
                break;
            }
            ms_status st = text_reserve(r, r->tlen + (size_t)k + 1, err);
            if (st != MS_OK) return st;
            memcpy(r->text + r->tlen, r->lbuf, (size_t)k);
            r->tlen += (size_t)k;
        }
        if (!ended) {
            if (ferror(r->f))
                return ms_err_set(err, MS_ERR_IO, "%s:%" PRId64 ": read error", r->path, r->line);
            r->done = true;
        }
        if (r->tlen == 0 || is_blank(r->text, r->tlen)) continue; /* empty documents skipped */
        r->text[r->tlen] = '\0';
        doc->text = r->text;
        doc->len = r->tlen;
        doc->index = r->n_docs++;
        doc->line = start_line;
        *got = true;
        return MS_OK;
    }
}

static ms_status next_jsonl(ms_doc_reader *r, ms_doc *doc, bool *got, ms_err *err)
{
    const char *field = r->opts.text_field && *r->opts.text_field ? r->opts.text_field : "text";
    ssize_t k;
    while ((k = getline(&r->lbuf, &r->lcap, r->f)) >= 0) {
        r->line++;
        if (is_blank(r->lbuf, (size_t)k)) continue;
        cJSON *j = cJSON_ParseWithLength(r->lbuf, (size_t)k);
        if (!j)
            return ms_err_set(err, MS_ERR_FORMAT, "%s:%" PRId64 ": expected one JSON object per line",
                              r->path, r->line);
        const cJSON *t = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, field) : NULL;
        if (!cJSON_IsString(t) || !t->valuestring) {
            cJSON_Delete(j);
            return ms_err_set(err, MS_ERR_FORMAT,
                              "%s:%" PRId64 ": expected an object with a string field \"%s\"",
                              r->path, r->line, field);
        }
        /* cJSON strings are NUL-terminated: an escaped \u0000 would truncate silently */
        size_t n = strlen(t->valuestring);
        ms_status st = text_reserve(r, n + 1, err);
        if (st != MS_OK) {
            cJSON_Delete(j);
            return st;
        }
        memcpy(r->text, t->valuestring, n + 1);
        cJSON_Delete(j);
        if (n == 0) continue;
        r->tlen = n;
        doc->text = r->text;
        doc->len = n;
        doc->index = r->n_docs++;
        doc->line = r->line;
        *got = true;
        return MS_OK;
    }
    if (ferror(r->f))
        return ms_err_set(err, MS_ERR_IO, "%s:%" PRId64 ": read error", r->path, r->line);
    return MS_OK;
}

#define TOK_BLOCK 65536

static ms_status next_tokens(ms_doc_reader *r, ms_doc *doc, bool *got, ms_err *err)
{
    if (!r->blk && !(r->blk = malloc(TOK_BLOCK * sizeof *r->blk)))
        return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", r->path);
    for (;;) {
        r->n_ids = 0;
        bool ended = false, any = false;
        for (;;) {
            if (r->blk_pos == r->blk_n) {
                int64_t left = r->shard.count - r->tpos;
                if (left <= 0) break;
                size_t n = left < TOK_BLOCK ? (size_t)left : TOK_BLOCK;
                ms_status st = ms_tokshard_read(&r->shard, r->tpos, (int64_t)n, r->blk, err);
                if (st != MS_OK) return st;
                r->tpos += (int64_t)n;
                r->blk_n = n;
                r->blk_pos = 0;
            }
            int32_t id = r->blk[r->blk_pos++];
            any = true;
            if (r->opts.eot >= 0 && id == r->opts.eot) {
                ended = true;
                break;
            }
            if (r->n_ids == r->ids_cap) {
                size_t nc = r->ids_cap ? 2 * r->ids_cap : 4096;
                int32_t *ni = realloc(r->ids, nc * sizeof *ni);
                if (!ni) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", r->path);
                r->ids = ni;
                r->ids_cap = nc;
            }
            r->ids[r->n_ids++] = id;
        }
        if (!ended && !any) return MS_OK; /* end of file */
        if (r->n_ids == 0) continue;      /* leading eot or two in a row */
        doc->ids = r->ids;
        doc->n_ids = r->n_ids;
        doc->index = r->n_docs++;
        doc->line = 0;
        *got = true;
        return MS_OK;
    }
}

ms_status ms_doc_reader_next(ms_doc_reader *r, ms_doc *doc, bool *got, ms_err *err)
{
    memset(doc, 0, sizeof *doc);
    *got = false;
    switch (r->opts.format) {
    case MS_CORPUS_TEXT: return next_text(r, doc, got, err);
    case MS_CORPUS_JSONL: return next_jsonl(r, doc, got, err);
    default: return next_tokens(r, doc, got, err);
    }
}

/* ===================================================================== held-out split */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

bool ms_corpus_is_heldout(uint64_t seed, const char *path, int64_t doc_index, double fraction)
{
    if (fraction <= 0) return false;
    if (fraction >= 1) return true;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    uint64_t h = ms_fnv1a64(base, strlen(base), 0);
    h = splitmix64(h ^ splitmix64(seed ^ 0x6d6f6e6f73656d31ULL) ^ splitmix64((uint64_t)doc_index));
    double u = (double)(h >> 11) * 0x1.0p-53;
    return u < fraction;
}

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

/* ===================================================================== tokenize core */

static char *shard_name(const char *split, int64_t chunk)
{
    char *s = malloc(64);
    if (s) snprintf(s, 64, "%s-%06" PRId64 ".bin", split, chunk);
    return s;
}

static int job_dtype(const ms_tokenize_job *job) { return job->vocab_size <= 65536 ? 2 : 4; }

/* Writes one chunk's documents (already grouped) for one split. */
typedef struct chunk_out {
    ms_tokshard_writer *w[2]; /* train, heldout */
} chunk_out;

static ms_status chunk_open(const ms_tokenize_job *job, int64_t chunk, chunk_out *co, ms_err *err)
{
    static const char *const split[2] = {"train", "heldout"};
    for (int s = 0; s < 2; s++) {
        char *name = shard_name(split[s], chunk);
        char *p = name ? ms_path_join(job->out_dir, name) : NULL;
        free(name);
        if (!p) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        ms_status st = ms_tokshard_create(&co->w[s], p, job_dtype(job), err);
        free(p);
        if (st != MS_OK) return st;
    }
    return MS_OK;
}

static ms_status chunk_close(const ms_tokenize_job *job, int64_t chunk, chunk_out *co, ms_err *err)
{
    static const char *const split[2] = {"train", "heldout"};
    ms_status st = MS_OK;
    for (int s = 0; s < 2; s++) {
        if (!co->w[s]) continue;
        if (st == MS_OK && ms_tokshard_writer_count(co->w[s]) > 0) {
            st = ms_tokshard_commit(co->w[s], err);
        } else {
            ms_tokshard_abort(co->w[s]); /* empty split of this chunk: no file */
            if (st == MS_OK) {
                /* remove a stale file of the same name from an earlier run */
                char *name = shard_name(split[s], chunk);
                char *p = name ? ms_path_join(job->out_dir, name) : NULL;
                if (p) unlink(p);
                free(p);
                free(name);
            }
        }
        co->w[s] = NULL;
    }
    return st;
}

ms_status ms_corpus_tokenize_part(const ms_tokenize_job *job, int rank, int size,
                                  int64_t **stats_out, int64_t *n_chunks_out, ms_err *err)
{
    *stats_out = NULL;
    *n_chunks_out = 0;
    if (size < 1 || rank < 0 || rank >= size)
        return ms_err_set(err, MS_ERR_USAGE, "tokenize: rank %d of %d is invalid", rank, size);
    if (job->doc.format != MS_CORPUS_TOKENS && !job->encode)
        return ms_err_set(err, MS_ERR_USAGE, "tokenize: a text corpus needs a tokenizer");
    if (job->eot < 0)
        return ms_err_set(err, MS_ERR_FORMAT, "tokenize: the tokenizer has no <|endoftext|> token");
    size_t scap = 64 * MS_CHUNK_STATS;
    int64_t *stats = calloc(scap, sizeof *stats);
    int32_t *ids = NULL;
    size_t n_ids = 0, ids_cap = 0;
    if (!stats) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    ms_status st = MS_OK;
    int64_t chunk = 0, chunk_fill = 0;
    chunk_out co = {{NULL, NULL}};
    bool mine = (chunk % size) == rank;
    for (int f = 0; f < job->n_paths && st == MS_OK; f++) {
        ms_doc_reader *r = NULL;
        st = ms_doc_reader_open(&r, job->paths[f], &job->doc, err);
        while (st == MS_OK) {
            ms_doc d;
            bool got = false;
            st = ms_doc_reader_next(r, &d, &got, err);
            if (st != MS_OK || !got) break;
            if ((size_t)(chunk + 1) * MS_CHUNK_STATS > scap) {
                int64_t *ns = realloc(stats, 2 * scap * sizeof *ns);
                if (!ns) {
                    st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
                    break;
                }
                memset(ns + scap, 0, scap * sizeof *ns);
                stats = ns;
                scap *= 2;
            }
            size_t in_bytes = job->doc.format == MS_CORPUS_TOKENS ? 4 * d.n_ids : d.len;
            if (mine) {
                if (!co.w[0]) st = chunk_open(job, chunk, &co, err);
                bool held = ms_corpus_is_heldout(job->seed, job->paths[f], d.index,
                                                 job->heldout_fraction);
                n_ids = 0;
                if (st == MS_OK) {
                    if (ids_cap == 0) {
                        ids_cap = 4096;
                        if (!(ids = malloc(ids_cap * sizeof *ids)))
                            st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
                    }
                    if (st == MS_OK) ids[n_ids++] = job->eot; /* documents start with eot */
                }
                if (st == MS_OK && job->doc.format == MS_CORPUS_TOKENS) {
                    if (n_ids + d.n_ids > ids_cap) {
                        size_t nc = n_ids + d.n_ids;
                        int32_t *ni = realloc(ids, nc * sizeof *ni);
                        if (!ni) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
                        else {
                            ids = ni;
                            ids_cap = nc;
                        }
                    }
                    if (st == MS_OK) {
                        memcpy(ids + n_ids, d.ids, d.n_ids * sizeof *ids);
                        n_ids += d.n_ids;
                    }
                } else if (st == MS_OK) {
                    st = job->encode(job->encode_ctx, d.text, d.len, &ids, &n_ids, &ids_cap, err);
                }
                for (size_t i = 0; st == MS_OK && i < n_ids; i++)
                    if (ids[i] < 0 || ids[i] >= job->vocab_size)
                        st = ms_err_set(err, MS_ERR_FORMAT,
                                        "%s: document %" PRId64 ": token id %d outside the vocabulary (%d)",
                                        job->paths[f], d.index, ids[i], job->vocab_size);
                if (st == MS_OK) st = ms_tokshard_append(co.w[held ? 1 : 0], ids, n_ids, err);
                if (st == MS_OK) {
                    int64_t *s = stats + chunk * MS_CHUNK_STATS + (held ? 2 : 0);
                    s[0] += (int64_t)n_ids;
                    s[1] += 1;
                }
            }
            chunk_fill += (int64_t)in_bytes;
            if (st == MS_OK && chunk_fill >= job->chunk_bytes) {
                if (mine) st = chunk_close(job, chunk, &co, err);
                chunk++;
                chunk_fill = 0;
                mine = (chunk % size) == rank;
            }
        }
        ms_doc_reader_close(r);
    }
    if (chunk_fill > 0) {
        if (mine && st == MS_OK) st = chunk_close(job, chunk, &co, err);
        chunk++;
    }
    for (int s = 0; s < 2; s++) ms_tokshard_abort(co.w[s]);
    free(ids);
    if (st != MS_OK) {
        free(stats);
        return st;
    }
    *stats_out = stats;
    *n_chunks_out = chunk;
    return MS_OK;
}

/* Deletes shard files of an earlier run that the new manifest will not list (a corpus that
 * shrank leaves train-000007.bin behind), and temporaries of killed runs. Runs before the
 * manifest is written: until then the directory has no manifest, so no reader trusts it. */
static ms_status remove_stale_shards(const ms_tokenize_job *job, const int64_t *stats, int64_t n_chunks,
                                     ms_err *err)
{
    DIR *dp = opendir(job->out_dir);
    if (!dp) return ms_err_set(err, MS_ERR_IO, "%s: cannot list: %s", job->out_dir, strerror(errno));
    ms_status st = MS_OK;
    struct dirent *e;
    while (st == MS_OK && (e = readdir(dp))) {
        int s = strncmp(e->d_name, "train-", 6) == 0 ? 0 : strncmp(e->d_name, "heldout-", 8) == 0 ? 1 : -1;
        if (s < 0) continue;
        const char *num = e->d_name + (s == 0 ? 6 : 8);
        char *end;
        long long c = strtoll(num, &end, 10);
        bool shard = end != num && strcmp(end, ".bin") == 0;
        bool tmp = end != num && strncmp(end, ".bin.tmp.", 9) == 0;
        if (!shard && !tmp) continue;
        if (shard && c >= 0 && c < n_chunks && stats[c * MS_CHUNK_STATS + 2 * s] > 0) continue; /* listed */
        char *p = ms_path_join(job->out_dir, e->d_name);
        if (!p) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        else if (unlink(p) != 0 && errno != ENOENT)
            st = ms_err_set(err, MS_ERR_IO, "%s: cannot remove a stale shard: %s", p, strerror(errno));
        free(p);
    }
    closedir(dp);
    return st;
}

ms_status ms_corpus_manifest_write(const ms_tokenize_job *job, const int64_t *stats,
                                   int64_t n_chunks, const char *tokenizer_sha256,
                                   const char *fingerprint, ms_err *err)
{
    ms_status sst = remove_stale_shards(job, stats, n_chunks, err);
    if (sst != MS_OK) return sst;
    cJSON *j = cJSON_CreateObject();
    if (!j) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddStringToObject(j, "format", MS_TOKSHARD_MAGIC);
    cJSON_AddStringToObject(j, "dtype", job_dtype(job) == 2 ? "uint16" : "uint32");
    cJSON_AddStringToObject(j, "tokenizer_sha256", tokenizer_sha256);
    cJSON_AddNumberToObject(j, "vocab_size", job->vocab_size);
    cJSON_AddNumberToObject(j, "eot", job->eot);
    cJSON_AddNumberToObject(j, "heldout_fraction", job->heldout_fraction);
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, job->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddStringToObject(j, "fingerprint", fingerprint);
    cJSON *inputs = cJSON_AddArrayToObject(j, "inputs");
    for (int i = 0; i < job->n_paths; i++) cJSON_AddItemToArray(inputs, cJSON_CreateString(job->paths[i]));
    static const char *const split[2] = {"train", "heldout"};
    for (int s = 0; s < 2; s++) {
        cJSON *arr = cJSON_AddArrayToObject(j, split[s]);
        int64_t tok = 0, docs = 0;
        for (int64_t c = 0; c < n_chunks; c++) {
            const int64_t *cs = stats + c * MS_CHUNK_STATS + 2 * s;
            if (cs[0] == 0) continue;
            char *name = shard_name(split[s], c);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "file", name ? name : "?");
            cJSON_AddNumberToObject(e, "tokens", (double)cs[0]);
            cJSON_AddNumberToObject(e, "docs", (double)cs[1]);
            cJSON_AddItemToArray(arr, e);
            free(name);
            tok += cs[0];
            docs += cs[1];
        }
        char key[32];
        snprintf(key, sizeof key, "%s_tokens", split[s]);
        cJSON_AddNumberToObject(j, key, (double)tok);
        snprintf(key, sizeof key, "%s_docs", split[s]);
        cJSON_AddNumberToObject(j, key, (double)docs);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    char *p = ms_path_join(job->out_dir, MS_TOKENS_MANIFEST);
    ms_status st = p ? ms_file_write_atomic(p, text, strlen(text), err)
                     : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    free(p);
    free(text);
    return st;
}

void ms_corpus_fingerprint(const ms_tokenize_job *job, const char *tokenizer_sha256, char out[17])
{
    uint64_t h = ms_fnv1a64("monosem-tokens-v1", 17, 0);
    for (int i = 0; i < job->n_paths; i++) {
        h = ms_fnv1a64(job->paths[i], strlen(job->paths[i]) + 1, h);
        struct stat sb;
        int64_t meta[3] = {0, 0, 0};
        if (stat(job->paths[i], &sb) == 0) {
            meta[0] = (int64_t)sb.st_size;
            meta[1] = (int64_t)sb.st_mtim.tv_sec;
            meta[2] = (int64_t)sb.st_mtim.tv_nsec;
        }
        h = ms_fnv1a64(meta, sizeof meta, h);
    }
    const char *delim = job->doc.delimiter ? job->doc.delimiter : "";
    const char *field = job->doc.text_field ? job->doc.text_field : "";
    h = ms_fnv1a64(delim, strlen(delim) + 1, h);
    h = ms_fnv1a64(field, strlen(field) + 1, h);
    int64_t nums[4] = {job->doc.format, (int64_t)job->seed, job->chunk_bytes, job->eot};
    h = ms_fnv1a64(nums, sizeof nums, h);
    h = ms_fnv1a64(&job->heldout_fraction, sizeof job->heldout_fraction, h);
    h = ms_fnv1a64(tokenizer_sha256, strlen(tokenizer_sha256), h);
    snprintf(out, 17, "%016" PRIx64, h);
}

bool ms_corpus_manifest_fingerprint(const char *token_dir, char out[17])
{
    out[0] = '\0';
    char *p = ms_path_join(token_dir, MS_TOKENS_MANIFEST);
    char *text = NULL;
    size_t len = 0;
    bool ok = false;
    if (p && ms_file_read_all(p, &text, &len, NULL) == MS_OK) {
        cJSON *j = cJSON_ParseWithLength(text, len);
        const cJSON *f = j ? jget(j, "fingerprint") : NULL;
        if (cJSON_IsString(f) && strlen(f->valuestring) == 16) {
            memcpy(out, f->valuestring, 17);
            ok = true;
        }
        cJSON_Delete(j);
    }
    free(text);
    free(p);
    return ok;
}

ms_status ms_tokenizer_files_sha256(const char *vocab_path, const char *merges_path,
                                    char out[65], ms_err *err)
{
    char a[65], b[65], both[132];
    ms_status st = ms_sha256_file(vocab_path, a, err);
    if (st == MS_OK) st = ms_sha256_file(merges_path, b, err);
    if (st != MS_OK) return st;
    snprintf(both, sizeof both, "%s\n%s\n", a, b);
    ms_sha256_buf(both, strlen(both), out);
    return MS_OK;
}
