/* `monosem encode|decode VOCAB MERGES [FILE]` (check a tokenizer by hand) and
 * `monosem tokenizer-train job.yaml` (learn BPE merges from the corpus); rank 0 does the work. */
#include "app.h"
#include "monosem/model.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_BYTES ((size_t)16 << 20)

/* Largest p <= n where text can be split without changing the GPT-2 pre-tokenization: a space
 * after a printable ASCII byte (see ms_pretok_safe_cut; duplicated here to keep the library's
 * private header out of apps). 0 if none. */
static size_t safe_cut(const char *text, size_t n)
{
    for (size_t p = n; p-- > 1;)
        if (text[p] == ' ' && (unsigned char)text[p - 1] > ' ' && (unsigned char)text[p - 1] < 0x7F) return p;
    return 0;
}

static ms_status open_input(const char *path, FILE **f, ms_err *err)
{
    if (!path || strcmp(path, "-") == 0) {
        *f = stdin;
        return MS_OK;
    }
    *f = fopen(path, "rb");
    if (!*f) return ms_err_set(err, MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return MS_OK;
}

static ms_status load_tok(app_ctx *app, ms_tokenizer **tok, const char **in_path, ms_err *err)
{
    const char *vocab = app_positional(app, 0), *merges = app_positional(app, 1);
    *in_path = app_positional(app, 2);
    if (!vocab || !merges || app_positional(app, 3))
        return ms_err_set(err, MS_ERR_USAGE, "usage: monosem %s VOCAB MERGES [FILE]  (FILE or stdin)", app->stage);
    return ms_tokenizer_load(tok, vocab, merges, err);
}

/* Formats ids one per line and writes them. */
static ms_status print_ids(const int32_t *ids, size_t n, char *buf, ms_err *err)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char tmp[12];
        int k = 0;
        uint32_t v = (uint32_t)ids[i];
        do {
            tmp[k++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        while (k) buf[o++] = tmp[--k];
        buf[o++] = '\n';
        if (o > 60000 || i + 1 == n) {
            if (fwrite(buf, 1, o, stdout) != o) return ms_err_set(err, MS_ERR_IO, "encode: writing stdout failed");
            o = 0;
        }
    }
    return MS_OK;
}

/* Reads f to its end (or about `limit` bytes; 0 = no limit) in chunks and hands fn pieces that
 * end at safe cuts, so the pieces tokenize exactly like the whole text. A chunk without any cut
 * point grows the buffer instead. *consumed gets the bytes handed over, *at_limit whether the
 * limit stopped the stream (both may be NULL). */
typedef ms_status (*piece_fn)(void *ctx, const char *text, size_t len, ms_err *err);
static ms_status stream_pieces(FILE *f, const char *name, int64_t limit, piece_fn fn, void *ctx, int64_t *consumed,
                               bool *at_limit, ms_err *err)
{
    size_t cap = CHUNK_BYTES, have = 0;
    int64_t done = 0;
    char *buf = malloc(cap);
    if (!buf) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", name);
    ms_status st = MS_OK;
    bool eof = false, last = false;
    while (st == MS_OK && !eof) {
        if (have == cap) {
            char *nb = realloc(buf, 2 * cap);
            if (!nb) {
                st = ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory (%zu bytes without a cut point)", name, cap);
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + have, 1, cap - have, f);
        if (got == 0) {
            if (ferror(f)) {
                st = ms_err_set(err, MS_ERR_IO, "%s: read error", name);
                break;
            }
            eof = true;
        }
        have += got;
        size_t cut;
        if (limit > 0 && done + (int64_t)have >= limit && !(eof && done + (int64_t)have == limit)) {
            cut = safe_cut(buf, (size_t)(limit - done)); /* the final piece, cut cleanly */
            last = true;
        } else {
            cut = eof ? have : safe_cut(buf, have);
        }
        if (cut > 0) st = fn(ctx, buf, cut, err);
        done += (int64_t)cut;
        if (last) break;
        memmove(buf, buf + cut, have - cut);
        have -= cut;
    }
    free(buf);
    if (consumed) *consumed = done;
    if (at_limit) *at_limit = last;
    return st;
}

typedef struct {
    ms_tokenizer *tok;
    int32_t *ids;
    size_t idcap;
    char line[65536 + 16];
} encode_ctx;

static ms_status encode_piece(void *ctx, const char *text, size_t len, ms_err *err)
{
    encode_ctx *e = ctx;
    size_t n = 0;
    ms_status st = ms_tokenizer_encode(e->tok, text, len, &e->ids, &n, &e->idcap, err);
    if (st == MS_OK) st = print_ids(e->ids, n, e->line, err);
    return st;
}

ms_status app_stage_encode(app_ctx *app, ms_err *err)
{
    if (app->comm.rank != 0) return MS_OK;
    const char *path = NULL;
    FILE *f = NULL;
    encode_ctx *e = calloc(1, sizeof *e);
    if (!e) return ms_err_set(err, MS_ERR_NOMEM, "encode: out of memory");
    ms_status st = load_tok(app, &e->tok, &path, err);
    if (st == MS_OK) st = open_input(path, &f, err);
    if (st == MS_OK) st = stream_pieces(f, path ? path : "stdin", 0, encode_piece, e, NULL, NULL, err);
    if (st == MS_OK && fflush(stdout) != 0) st = ms_err_set(err, MS_ERR_IO, "encode: writing stdout failed");
    if (f && f != stdin) fclose(f);
    free(e->ids);
    ms_tokenizer_free(e->tok);
    free(e);
    return st;
}

ms_status app_stage_decode(app_ctx *app, ms_err *err)
{
    if (app->comm.rank != 0) return MS_OK;
    ms_tokenizer *tok = NULL;
    const char *path = NULL;
    FILE *f = NULL;
    ms_status st = load_tok(app, &tok, &path, err);
    if (st == MS_OK) st = open_input(path, &f, err);
    const char *name = path ? path : "stdin";
    size_t nid = 0, idcap = 65536, olen = 0, ocap = 0;
    int32_t *ids = malloc(idcap * sizeof *ids);
    char *out = NULL;
    if (st == MS_OK && !ids) st = ms_err_set(err, MS_ERR_NOMEM, "decode: out of memory");
    int64_t line = 1;
    int c = 0;
    while (st == MS_OK && c != EOF) {
        c = getc_unlocked(f);
        if (c >= '0' && c <= '9') {
            int64_t v = 0;
            while (c >= '0' && c <= '9') {
                v = v * 10 + (c - '0');
                if (v > INT32_MAX) break;
                c = getc_unlocked(f);
            }
            if (v > INT32_MAX || (c != EOF && c != ' ' && c != '\t' && c != '\n' && c != '\r')) {
                st = ms_err_set(err, MS_ERR_FORMAT, "%s:%" PRId64 ": expected token ids (integers "
                                "separated by whitespace), found a malformed number", name, line);
                break;
            }
            if (v >= ms_tokenizer_vocab_size(tok) || !ms_tokenizer_token_bytes(tok, (int32_t)v, NULL)) {
                st = ms_err_set(err, MS_ERR_FORMAT, "%s:%" PRId64 ": token id %" PRId64
                                " is not in the vocabulary (0..%d)", name, line, v,
                                ms_tokenizer_vocab_size(tok) - 1);
                break;
            }
            ids[nid++] = (int32_t)v;
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != EOF) {
            st = ms_err_set(err, MS_ERR_FORMAT, "%s:%" PRId64 ": expected token ids (integers separated by "
                            "whitespace), found '%c'", name, line, c >= 0x20 && c < 0x7F ? c : '?');
            break;
        }
        if (c == '\n') line++;
        if (nid == idcap || (c == EOF && nid > 0)) {
            olen = 0;
            st = ms_tokenizer_decode(tok, ids, nid, &out, &olen, &ocap, err);
            if (st == MS_OK && fwrite(out, 1, olen, stdout) != olen)
                st = ms_err_set(err, MS_ERR_IO, "decode: writing stdout failed");
            nid = 0;
        }
    }
    if (st == MS_OK && f && ferror(f)) st = ms_err_set(err, MS_ERR_IO, "%s: read error", name);
    if (st == MS_OK && fflush(stdout) != 0) st = ms_err_set(err, MS_ERR_IO, "decode: writing stdout failed");
    if (f && f != stdin) fclose(f);
    free(out);
    free(ids);
    ms_tokenizer_free(tok);
    return st;
}

static ms_status mkdirs_parent(const char *path, ms_err *err)
{
    char *d = strdup(path);
    if (!d) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    char *s = strrchr(d, '/');
    ms_status st = MS_OK;
    if (s && s != d) {
        *s = '\0';
        st = ms_mkdirs(d, err);
    }
    free(d);
    return st;
}

static ms_status count_piece(void *ctx, const char *text, size_t len, ms_err *err)
{
    return ms_bpe_counter_add(ctx, text, len, err);
}

ms_status app_stage_tokenizer_train(app_ctx *app, ms_err *err)
{
    if (app->comm.rank != 0) return MS_OK; /* one rank: counting is I/O-bound, merging serial */
    const ms_config *cfg = &app->cfg;
    /* never replace tokenizer files silently: they may be GPT-2's own, or the vocabulary an
     * existing model and activations file were made with */
    if (ms_path_exists(cfg->tokenizer.vocab) && ms_path_exists(cfg->tokenizer.merges) && !app_flag(app, "force")) {
        ms_log("tokenizer-train: %s and %s exist: kept (--force retrains and replaces them)", cfg->tokenizer.vocab,
               cfg->tokenizer.merges);
        return MS_OK;
    }
    if (cfg->corpus.format != MS_CORPUS_TEXT && cfg->corpus.format != MS_CORPUS_JSONL)
        return ms_err_set(err, MS_ERR_CONFIG, "%s: key 'corpus.format': tokenizer-train needs text or jsonl, got %s",
                          cfg->path ? cfg->path : "job", ms_enum_name("corpus.format", cfg->corpus.format));
    double t0 = ms_time_now();
    char **paths = NULL;
    int n_paths = 0;
    ms_bpe_counter *cnt = NULL;
    ms_status st = ms_corpus_expand((const char *const *)cfg->corpus.paths, cfg->corpus.n_paths, &paths, &n_paths,
                                    err);
    if (st == MS_OK) st = ms_bpe_counter_init(&cnt, err);
    const int64_t max_bytes = cfg->tokenizer.train_max_bytes;
    int64_t bytes = 0, docs = 0;
    ms_doc_opts opts = {.format = cfg->corpus.format,
                        .delimiter = cfg->corpus.delimiter,
                        .text_field = cfg->corpus.text_field,
                        .eot = -1};
    bool full = false;
    const bool whole_files = cfg->corpus.format == MS_CORPUS_TEXT && (!cfg->corpus.delimiter || !*cfg->corpus.delimiter);
    for (int i = 0; st == MS_OK && i < n_paths && !full; i++) {
        if (whole_files) {
            /* one document per file: stream it in chunks cut at safe points (exact, and memory
             * stays bounded by the distinct pre-tokens however large the file) */
            FILE *f = fopen(paths[i], "rb");
            if (!f) {
                st = ms_err_set(err, MS_ERR_IO, "%s: cannot open: %s", paths[i], strerror(errno));
                break;
            }
            int64_t got = 0;
            st = stream_pieces(f, paths[i], max_bytes > 0 ? max_bytes - bytes : 0, count_piece, cnt, &got, &full,
                               err);
            fclose(f);
            bytes += got;
            docs++;
            if (max_bytes > 0 && bytes >= max_bytes) full = true;
            continue;
        }
        ms_doc_reader *r = NULL;
        if ((st = ms_doc_reader_open(&r, paths[i], &opts, err)) != MS_OK) break;
        for (;;) {
            ms_doc doc;
            bool got = false;
            if ((st = ms_doc_reader_next(r, &doc, &got, err)) != MS_OK || !got) break;
            size_t len = doc.len;
            if (max_bytes > 0 && bytes + (int64_t)len > max_bytes) {
                /* the last document is cut where the pre-tokenization is unaffected */
                len = safe_cut(doc.text, (size_t)(max_bytes - bytes));
            }
            if ((st = ms_bpe_counter_add(cnt, doc.text, len, err)) != MS_OK) break;
            bytes += (int64_t)len;
            docs++;
            if (max_bytes > 0 && (bytes >= max_bytes || len < doc.len)) {
                full = true;
                break;
            }
        }
        ms_doc_reader_close(r);
    }
    double t_count = ms_time_now() - t0;
    if (st == MS_OK) {
        ms_log("tokenizer-train: %d file(s), %" PRId64 " document(s), %" PRId64 " bytes: %" PRId64
               " pre-tokens, %zu distinct (%.1fs, %.1f MB/s)",
               n_paths, docs, bytes, ms_bpe_counter_total(cnt), ms_bpe_counter_distinct(cnt), t_count,
               (double)bytes / 1e6 / (t_count > 0 ? t_count : 1e-9));
        if (ms_bpe_counter_total(cnt) == 0)
            st = ms_err_set(err, MS_ERR_CONFIG, "%s: key 'corpus.paths': the corpus is empty: nothing to learn from",
                            cfg->path ? cfg->path : "job");
    }
    if (st == MS_OK) st = mkdirs_parent(cfg->tokenizer.vocab, err);
    if (st == MS_OK) st = mkdirs_parent(cfg->tokenizer.merges, err);
    ms_bpe_result res = {0};
    if (st == MS_OK)
        st = ms_bpe_train(cnt, cfg->tokenizer.train_merges, cfg->tokenizer.vocab, cfg->tokenizer.merges, &res, err);
    /* the outputs must load in the encoder */
    ms_tokenizer *tok = NULL;
    if (st == MS_OK) st = ms_tokenizer_load(&tok, cfg->tokenizer.vocab, cfg->tokenizer.merges, err);
    char sha[65] = "";
    if (st == MS_OK) st = ms_tokenizer_files_sha256(cfg->tokenizer.vocab, cfg->tokenizer.merges, sha, err);
    if (st == MS_OK) {
        ms_log("tokenizer-train: %" PRId64 " merges (asked %" PRId64 "), vocabulary %d -> %s, %s (%.1fs)",
               res.n_merges, cfg->tokenizer.train_merges, res.vocab_size, cfg->tokenizer.vocab,
               cfg->tokenizer.merges, res.seconds);
        if (res.n_merges < cfg->tokenizer.train_merges)
            ms_log("tokenizer-train: warning: the corpus ran out of pairs after %" PRId64 " merges", res.n_merges);
        ms_runrec_fact(&app->rec, "tokenizer_train.bytes", "%" PRId64, bytes);
        ms_runrec_fact(&app->rec, "tokenizer_train.documents", "%" PRId64, docs);
        ms_runrec_fact(&app->rec, "tokenizer_train.distinct_pretokens", "%zu", ms_bpe_counter_distinct(cnt));
        ms_runrec_fact(&app->rec, "tokenizer_train.merges", "%" PRId64, res.n_merges);
        ms_runrec_fact(&app->rec, "tokenizer_train.vocab_size", "%d", res.vocab_size);
        ms_runrec_fact(&app->rec, "tokenizer_train.vocab", "%s", cfg->tokenizer.vocab);
        ms_runrec_fact(&app->rec, "tokenizer_train.merges_file", "%s", cfg->tokenizer.merges);
        ms_runrec_fact(&app->rec, "tokenizer_train.tokenizer_sha256", "%s", sha);
        ms_runrec_time(&app->rec, "count", t_count);
        ms_runrec_time(&app->rec, "merge", res.seconds);
    }
    ms_tokenizer_free(tok);
    ms_bpe_counter_free(cnt);
    ms_corpus_paths_free(paths, n_paths);
    return st;
}
