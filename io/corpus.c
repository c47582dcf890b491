/* Corpus reading: glob expansion, streaming document readers (text, jsonl, token shards) and
 * the seeded held-out split. Token shard files and splits: corpus_tokens.c; the rank-sharded
 * tokenize core and its manifest: corpus_tokenize.c. */
#include "monosem/io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
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

bool ms_corpus_is_heldout(uint64_t seed, const char *path, int64_t doc_index, double fraction)
{
    if (fraction <= 0) return false;
    if (fraction >= 1) return true;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    uint64_t h = ms_fnv1a64(base, strlen(base), 0);
    h = ms_rng_hash(h ^ ms_rng_hash(seed ^ 0x6d6f6e6f73656d31ULL) ^ ms_rng_hash((uint64_t)doc_index));
    double u = (double)(h >> 11) * 0x1.0p-53;
    return u < fraction;
}
