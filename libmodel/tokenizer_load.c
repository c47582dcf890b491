/* Tokenizer loading: encoder.json + vocab.bpe into the id tables, byte ids and merge ranks;
 * the small accessors on the loaded vocabulary. */
#include "tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== hash tables */

static int32_t bmap_find(const ms_tokenizer *t, const uint8_t *s, size_t n, uint64_t h)
{
    for (size_t i = h & t->bmap_mask;; i = (i + 1) & t->bmap_mask) {
        const ms_bmap_slot *sl = &t->bmap[i];
        if (sl->id < 0) return -1;
        if (sl->hash == h && t->tok_len[sl->id] == n && memcmp(t->tok_arena + t->tok_off[sl->id], s, n) == 0)
            return sl->id;
    }
}

static void bmap_insert(ms_tokenizer *t, int32_t id, uint64_t h)
{
    size_t i = h & t->bmap_mask;
    while (t->bmap[i].id >= 0) i = (i + 1) & t->bmap_mask;
    t->bmap[i].hash = h;
    t->bmap[i].id = id;
}

static void pair_set(ms_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t merged)
{
    uint64_t k = pair_key(a, b);
    size_t i = ms_bpe_hash_u64(k) & t->pair_mask;
    while (t->pairs[i].rank != UINT32_MAX && t->pairs[i].key != k) i = (i + 1) & t->pair_mask;
    /* a repeated merge line takes the later rank, as dict(zip(merges, range)) does */
    t->pairs[i].key = k;
    t->pairs[i].rank = rank;
    t->pairs[i].merged = merged;
}

/* ===================================================================== loading */

void ms_tokenizer_free(ms_tokenizer *t)
{
    if (!t) return;
    free(t->tok_off);
    free(t->tok_len);
    free(t->tok_arena);
    free(t->bmap);
    free(t->pairs);
    ms_pretok_free(&t->pre);
    free(t->cache);
    free(t->cache_arena);
    free(t->sym);
    free(t->prev);
    free(t->next);
    free(t->heap);
    free(t);
}

/* Line and column of byte offset off in text, for messages. */
static void line_col(const char *text, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off && text[i]; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static ms_status load_vocab(ms_tokenizer *t, const char *path, ms_err *err)
{
    char *text = NULL;
    size_t len = 0;
    ms_status st = ms_file_read_all(path, &text, &len, err);
    if (st != MS_OK) return st;
    const char *endp = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &endp, 0);
    if (!root || !cJSON_IsObject(root)) {
        int line = 0, col = 0;
        line_col(text, root ? 0 : (size_t)((endp ? endp : text) - text), &line, &col);
        st = ms_err_set(err, MS_ERR_FORMAT, "%s:%d:%d: expected a JSON object of token -> id", path,
                        line, col);
        cJSON_Delete(root);
        free(text);
        return st;
    }
    int16_t u2b[324];
    uint16_t b2u[256];
    ms_bpe_alphabet(b2u, u2b);
    size_t n_entries = 0, total = 0;
    int32_t max_id = -1;
    for (cJSON *e = root->child; e; e = e->next) {
        double v = e->valuedouble;
        if (!cJSON_IsNumber(e) || v < 0 || v >= (double)INT32_MAX || v != (double)(int32_t)v) {
            st = ms_err_set(err, MS_ERR_FORMAT, "%s: token \"%.60s\": expected a non-negative integer id",
                            path, e->string);
            goto out;
        }
        if ((int32_t)v > max_id) max_id = (int32_t)v;
        total += strlen(e->string);
        n_entries++;
    }
    if (n_entries == 0) {
        st = ms_err_set(err, MS_ERR_FORMAT, "%s: expected at least one token, found an empty object", path);
        goto out;
    }
    /* ids index arrays: refuse absurdly sparse ones rather than allocate gigabytes */
    if ((size_t)max_id >= 2 * n_entries + 1024) {
        st = ms_err_set(err, MS_ERR_FORMAT, "%s: id %d is far beyond the %zu tokens: expected ids 0..n-1 "
                        "(a dense vocabulary)", path, max_id, n_entries);
        goto out;
    }
    t->n_ids = max_id + 1;
    t->tok_off = malloc((size_t)t->n_ids * sizeof *t->tok_off);
    t->tok_len = calloc((size_t)t->n_ids, sizeof *t->tok_len);
    t->tok_arena = malloc(total + 1);
    t->bmap_mask = pow2_at_least(2 * n_entries) - 1;
    t->bmap = malloc((t->bmap_mask + 1) * sizeof *t->bmap);
    if (!t->tok_off || !t->tok_len || !t->tok_arena || !t->bmap) {
        st = ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory for %zu tokens", path, n_entries);
        goto out;
    }
    for (int32_t i = 0; i < t->n_ids; i++) t->tok_off[i] = UINT64_MAX;
    for (size_t i = 0; i <= t->bmap_mask; i++) t->bmap[i].id = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    t->eot = -1;
    for (cJSON *e = root->child; e; e = e->next) {
        int32_t id = (int32_t)e->valuedouble;
        const char *key = e->string;
        size_t klen = strlen(key);
        if (t->tok_off[id] != UINT64_MAX) {
            st = ms_err_set(err, MS_ERR_FORMAT, "%s: token \"%.60s\": id %d is used twice", path, key, id);
            goto out;
        }
        uint8_t *dst = t->tok_arena + t->arena_len;
        long nb = strcmp(key, "<|endoftext|>") == 0 ? -1 : ms_bpe_alpha_to_bytes(dst, key, klen, u2b);
        t->tok_off[id] = t->arena_len;
        if (nb < 0) {
            /* <|endoftext|> and other added tokens outside the byte alphabet: decode to their
             * own text, never produced by encoding */
            memcpy(dst, key, klen);
            t->tok_len[id] = (uint32_t)klen;
            t->arena_len += klen;
            if (strcmp(key, "<|endoftext|>") == 0) t->eot = id;
            continue;
        }
        t->tok_len[id] = (uint32_t)nb;
        t->arena_len += (size_t)nb;
        if (nb == 0) {
            st = ms_err_set(err, MS_ERR_FORMAT, "%s: the empty string is not a valid token", path);
            goto out;
        }
        uint64_t h = ms_bpe_hash(dst, (size_t)nb);
        int32_t other = bmap_find(t, dst, (size_t)nb, h);
        if (other >= 0) {
            st = ms_err_set(err, MS_ERR_FORMAT, "%s: token \"%.60s\" (id %d) has the same bytes as id %d",
                            path, key, id, other);
            goto out;
        }
        bmap_insert(t, id, h);
        if (nb == 1) t->byte_id[dst[0]] = id;
    }
    for (int b = 0; b < 256; b++) {
        if (t->byte_id[b] < 0) {
            char a[3];
            size_t an = ms_bpe_bytes_to_alpha(a, (const uint8_t[]){(uint8_t)b}, 1, b2u);
            st = ms_err_set(err, MS_ERR_FORMAT,
                            "%s: byte 0x%02x (token \"%.*s\") is missing: a byte-level BPE vocabulary "
                            "needs all 256 byte tokens",
                            path, b, (int)an, a);
            goto out;
        }
    }
out:
    cJSON_Delete(root);
    free(text);
    return st;
}

static ms_status load_merges(ms_tokenizer *t, const char *path, ms_err *err)
{
    char *text = NULL;
    size_t len = 0;
    ms_status st = ms_file_read_all(path, &text, &len, err);
    if (st != MS_OK) return st;
    int16_t u2b[324];
    uint16_t b2u[256];
    ms_bpe_alphabet(b2u, u2b);
    /* count lines to size the table */
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    t->pair_mask = pow2_at_least(2 * lines) - 1;
    t->pairs = malloc((t->pair_mask + 1) * sizeof *t->pairs);
    uint8_t *buf = malloc(len + 1);
    if (!t->pairs || !buf) {
        free(buf);
        free(text);
        return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i <= t->pair_mask; i++) t->pairs[i].rank = UINT32_MAX;
    uint32_t rank = 0;
    int lineno = 0;
    for (char *line = text; line < text + len;) {
        char *eol = memchr(line, '\n', (size_t)(text + len - line));
        if (!eol) eol = text + len;
        lineno++;
        char *e = eol;
        if (e > line && e[-1] == '\r') e--;
        *e = '\0';
        char *next = eol < text + len ? eol + 1 : eol;
        if ((lineno == 1 && strncmp(line, "#version", 8) == 0) || e == line) {
            line = next;
            continue;
        }
        /* two fields separated by one space (tokens never contain spaces: ' ' is U+0120) */
        char *sp = strchr(line, ' ');
        if (!sp || sp == line || sp[1] == '\0' || strchr(sp + 1, ' ')) {
            st = ms_err_set(err, MS_ERR_FORMAT, "%s:%d: expected two tokens separated by one space, got \"%.60s\"",
                            path, lineno, line);
            goto out;
        }
        size_t la = (size_t)(sp - line), lb = strlen(sp + 1);
        long na = ms_bpe_alpha_to_bytes(buf, line, la, u2b);
        long nb = na < 0 ? -1 : ms_bpe_alpha_to_bytes(buf + na, sp + 1, lb, u2b);
        if (na <= 0 || nb <= 0) {
            st = ms_err_set(err, MS_ERR_FORMAT, "%s:%d: \"%.60s\": a token has characters outside the GPT-2 byte alphabet",
                            path, lineno, line);
            goto out;
        }
        int32_t a = bmap_find(t, buf, (size_t)na, ms_bpe_hash(buf, (size_t)na));
        int32_t b = bmap_find(t, buf + na, (size_t)nb, ms_bpe_hash(buf + na, (size_t)nb));
        int32_t m = bmap_find(t, buf, (size_t)(na + nb), ms_bpe_hash(buf, (size_t)(na + nb)));
        if (a < 0 || b < 0 || m < 0) {
            *sp = '\0';
            st = ms_err_set(err, MS_ERR_FORMAT,
                            "%s:%d: merge \"%.60s %.60s\": %s is not in the vocabulary (vocabulary "
                            "and merges files that do not belong together?)",
                            path, lineno, line, sp + 1,
                            a < 0 ? "the first token" : b < 0 ? "the second token" : "the merged token");
            goto out;
        }
        pair_set(t, a, b, rank++, m);
        line = next;
    }
    t->n_merges = rank;
    if (rank == 0) {
        /* no merge line (an empty or truncated file) with a vocabulary of multi-byte tokens
         * would silently encode byte by byte: only a bytes-only vocabulary may have none */
        int32_t multi = 0;
        for (int32_t id = 0; id < t->n_ids; id++) {
            if (t->tok_off[id] == UINT64_MAX || t->tok_len[id] < 2) continue;
            const uint8_t *b = t->tok_arena + t->tok_off[id];
            if (bmap_find(t, b, t->tok_len[id], ms_bpe_hash(b, t->tok_len[id])) == id) multi++;
        }
        if (multi > 0)
            st = ms_err_set(err, MS_ERR_FORMAT,
                            "%s: no merges (%s), but the vocabulary has %d multi-byte tokens: expected one "
                            "merge per line (\"a b\") after #version; empty or truncated file?",
                            path, len == 0 ? "empty file" : "no line after #version", multi);
    }
out:
    free(buf);
    free(text);
    return st;
}

ms_status ms_tokenizer_load(ms_tokenizer **tok, const char *vocab_path, const char *merges_path, ms_err *err)
{
    *tok = NULL;
    ms_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ms_err_set(err, MS_ERR_NOMEM, "tokenizer: out of memory");
    ms_status st = load_vocab(t, vocab_path, err);
    if (st == MS_OK) st = load_merges(t, merges_path, err);
    if (st == MS_OK) st = ms_pretok_init(&t->pre, err);
    if (st == MS_OK) {
        t->cache_mask = MS_CACHE_MIN_SLOTS - 1;
        t->cache = malloc((t->cache_mask + 1) * sizeof *t->cache);
        t->cache_cap = 1 << 20;
        t->cache_arena = malloc(t->cache_cap);
        if (!t->cache || !t->cache_arena) st = ms_err_set(err, MS_ERR_NOMEM, "tokenizer: out of memory (cache)");
        else
            for (size_t i = 0; i <= t->cache_mask; i++) t->cache[i].off = UINT32_MAX;
    }
    if (st != MS_OK) {
        ms_tokenizer_free(t);
        return st;
    }
    *tok = t;
    return MS_OK;
}

int32_t ms_tokenizer_vocab_size(const ms_tokenizer *tok) { return tok->n_ids; }
int32_t ms_tokenizer_eot(const ms_tokenizer *tok) { return tok->eot; }
int32_t ms_tokenizer_byte_id(const ms_tokenizer *tok, uint8_t b) { return tok->byte_id[b]; }

const char *ms_tokenizer_token_bytes(const ms_tokenizer *tok, int32_t id, size_t *len)
{
    if (id < 0 || id >= tok->n_ids || tok->tok_off[id] == UINT64_MAX) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = tok->tok_len[id];
    return (const char *)tok->tok_arena + tok->tok_off[id];
}
