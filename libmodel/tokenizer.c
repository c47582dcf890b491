/* GPT-2 byte-level BPE tokenizer: loads encoder.json + vocab.bpe, pre-tokenizes with PCRE2,
 * merges by rank with a per-word cache, decodes ids back to the exact bytes. */
#include "bpe_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== byte alphabet */

void ms_bpe_alphabet(uint16_t b2u[256], int16_t u2b[324])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        b2u[b] = printable ? (uint16_t)b : (uint16_t)(256 + n++);
    }
    for (int u = 0; u < 324; u++) u2b[u] = -1;
    for (int b = 0; b < 256; b++) u2b[b2u[b]] = (int16_t)b;
}

size_t ms_bpe_bytes_to_alpha(char *out, const uint8_t *s, size_t n, const uint16_t b2u[256])
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned u = b2u[s[i]];
        if (u < 0x80) {
            out[o++] = (char)u;
        } else {
            out[o++] = (char)(0xC0 | (u >> 6));
            out[o++] = (char)(0x80 | (u & 0x3F));
        }
    }
    return o;
}

long ms_bpe_alpha_to_bytes(uint8_t *out, const char *s, size_t n, const int16_t u2b[324])
{
    const uint8_t *p = (const uint8_t *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned u;
        if (p[i] < 0x80) {
            u = p[i];
            i += 1;
        } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < n && (p[i + 1] & 0xC0) == 0x80) {
            u = ((unsigned)(p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
            i += 2;
        } else {
            return -1; /* 3-4 byte characters are never in the alphabet */
        }
        if (u >= 324 || u2b[u] < 0) return -1;
        out[o++] = (uint8_t)u2b[u];
    }
    return (long)o;
}

/* ===================================================================== UTF-8 */

int ms_utf8_seq_len(const uint8_t *s, size_t avail)
{
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (avail >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (avail < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (avail < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

size_t ms_utf8_first_invalid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (v & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int k = ms_utf8_seq_len(s + i, n - i);
        if (k == 0) return i;
        i += (size_t)k;
    }
    return n;
}

/* ===================================================================== pre-tokenizer */

/* ECMAScript \s: WhiteSpace (TAB VT FF SP NBSP ZWNBSP + Zs) and LineTerminator (LF CR LS PS). */
#define MS_WS "\\t\\n\\x0b\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}" \
              "\\x{205f}\\x{3000}\\x{feff}"
static const char ms_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" MS_WS "\\p{L}\\p{N}]+|[" MS_WS
    "]+(?![^" MS_WS "])|[" MS_WS "]+";

ms_status ms_pretok_init(ms_pretok *p, ms_err *err)
{
    memset(p, 0, sizeof *p);
    int ec;
    PCRE2_SIZE eo;
    p->re = pcre2_compile((PCRE2_SPTR)ms_gpt2_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &ec, &eo, NULL);
    if (!p->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return ms_err_set(err, MS_ERR_UNSUPPORTED,
                          "tokenizer: PCRE2 cannot compile the GPT-2 pattern at offset %zu: %s",
                          (size_t)eo, (const char *)msg);
    }
    p->md = pcre2_match_data_create_from_pattern(p->re, NULL);
    p->mctx = pcre2_match_context_create(NULL);
    if (!p->md || !p->mctx) {
        ms_pretok_free(p);
        return ms_err_set(err, MS_ERR_NOMEM, "tokenizer: out of memory (PCRE2 match data)");
    }
    /* JIT is ~10x faster; without it (no JIT support in this libpcre2) pcre2_match is used. */
    if (pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE) == 0) {
        p->jit_stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
        if (p->jit_stack) pcre2_jit_stack_assign(p->mctx, NULL, p->jit_stack);
    }
    return MS_OK;
}

void ms_pretok_free(ms_pretok *p)
{
    if (!p) return;
    if (p->jit_stack) pcre2_jit_stack_free(p->jit_stack);
    if (p->mctx) pcre2_match_context_free(p->mctx);
    if (p->md) pcre2_match_data_free(p->md);
    if (p->re) pcre2_code_free(p->re);
    free(p->sub);
    memset(p, 0, sizeof *p);
}

ms_status ms_pretok_run(ms_pretok *p, const uint8_t *text, size_t len, ms_pretok_fn fn, void *ctx,
                        ms_err *err)
{
    if (len == 0) return MS_OK;
    const uint8_t *subject = text;
    size_t bad = ms_utf8_first_invalid(text, len);
    if (bad < len) {
        /* Each invalid byte becomes '!', an "other" character like the U+FFFD a UTF-8 decoder
         * would produce; offsets are unchanged, and words are cut from the original bytes. */
        if (p->sub_cap < len) {
            uint8_t *ns = realloc(p->sub, len);
            if (!ns) return ms_err_set(err, MS_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", len);
            p->sub = ns;
            p->sub_cap = len;
        }
        memcpy(p->sub, text, bad);
        for (size_t i = bad; i < len;) {
            int k = ms_utf8_seq_len(text + i, len - i);
            if (k == 0) {
                p->sub[i++] = '!';
            } else {
                memcpy(p->sub + i, text + i, (size_t)k);
                i += (size_t)k;
            }
        }
        subject = p->sub;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
    size_t start = 0;
    while (start < len) {
        int rc = p->jit_stack ? pcre2_jit_match(p->re, subject, len, start, 0, p->md, p->mctx)
                              : pcre2_match(p->re, subject, len, start, PCRE2_NO_UTF_CHECK, p->md,
                                            p->mctx);
        size_t ms, me;
        if (rc == PCRE2_ERROR_NOMATCH) {
            ms = len; /* cannot happen (every character matches an alternative); keep the rest */
            me = len;
        } else if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ms_err_set(err, MS_ERR_UNSUPPORTED, "tokenizer: PCRE2 match failed at byte %zu: %s",
                              start, (const char *)msg);
        } else {
            ms = ov[0];
            me = ov[1];
        }
        ms_status st;
        if (ms > start && (st = fn(ctx, text + start, ms - start)) != MS_OK) return st;
        if (me <= ms) { /* no empty matches exist in the pattern; guard against looping */
            if (ms >= len) break;
            int k = ms_utf8_seq_len(subject + ms, len - ms);
            me = ms + (size_t)(k > 0 ? k : 1);
        }
        if ((st = fn(ctx, text + ms, me - ms)) != MS_OK) return st;
        start = me;
    }
    return MS_OK;
}

size_t ms_pretok_safe_cut(const uint8_t *text, size_t n)
{
    for (size_t p = n; p-- > 1;)
        if (text[p] == ' ' && text[p - 1] > ' ' && text[p - 1] < 0x7F) return p;
    return 0;
}

/* ===================================================================== hash tables */

/* bytes -> id, open addressing; keys live in the tokenizer's token arena. */
typedef struct {
    uint64_t hash;
    int32_t id; /* -1 = empty */
} ms_bmap_slot;

/* (a,b) -> rank, merged id. */
typedef struct {
    uint64_t key;
    uint32_t rank; /* UINT32_MAX = empty */
    int32_t merged;
} ms_pair_slot;

/* word cache: bytes -> ids; key and ids live in cache_arena at off. */
typedef struct {
    uint64_t hash;
    uint32_t off;   /* UINT32_MAX = empty */
    uint16_t klen;  /* key bytes */
    uint16_t nids;
} ms_cache_slot;

#define MS_CACHE_MAX_KEY 255
#define MS_CACHE_MIN_SLOTS (1u << 14)
#define MS_CACHE_MAX_SLOTS (1u << 20)
#define MS_HEAP_THRESHOLD 128 /* words with more bytes use the O(n log n) merge */

typedef struct {
    uint32_t rank;
    int32_t pos, a, b;
} ms_heap_ent;

struct ms_tokenizer {
    int32_t n_ids;       /* max id + 1 */
    int32_t eot;         /* -1 if none */
    uint64_t *tok_off;   /* (n_ids) offset into tok_arena, UINT64_MAX if no token has this id */
    uint32_t *tok_len;   /* (n_ids) */
    uint8_t *tok_arena;  /* raw bytes of every token */
    size_t arena_len;
    int32_t byte_id[256];
    ms_bmap_slot *bmap; /* bytes -> id for ordinary tokens */
    size_t bmap_mask;
    ms_pair_slot *pairs;
    size_t pair_mask;
    uint32_t n_merges;
    ms_pretok pre;
    /* per-word cache */
    ms_cache_slot *cache;
    size_t cache_mask, cache_count;
    uint8_t *cache_arena;
    size_t cache_len, cache_cap;
    /* scratch for one word */
    int32_t *sym;
    int32_t *prev, *next;
    ms_heap_ent *heap;
    size_t scratch_cap;
    /* encode output plumbing */
    int32_t **out_ids;
    size_t *out_n, *out_cap;
};

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

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

static inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static inline const ms_pair_slot *pair_find(const ms_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t k = pair_key(a, b);
    for (size_t i = ms_bpe_hash_u64(k) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
        const ms_pair_slot *sl = &t->pairs[i];
        if (sl->rank == UINT32_MAX) return NULL;
        if (sl->key == k) return sl;
    }
}

static inline uint32_t pair_rank(const ms_tokenizer *t, int32_t a, int32_t b)
{
    const ms_pair_slot *sl = pair_find(t, a, b);
    return sl ? sl->rank : UINT32_MAX;
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

/* ===================================================================== merge kernels */

size_t ms_tokenizer_bpe_naive(const ms_tokenizer *tok, int32_t *sym, size_t n)
{
    if (n < 2) return n;
    uint32_t stack_rk[MS_HEAP_THRESHOLD];
    uint32_t *rk = n <= MS_HEAP_THRESHOLD ? stack_rk : malloc(n * sizeof *rk);
    if (!rk) return n; /* only the test path uses long words here */
    /* rk[i]: rank of (sym[i], sym[i+1]); a rank names one pair, so equal rank = same pair */
    for (size_t i = 0; i + 1 < n; i++) rk[i] = pair_rank(tok, sym[i], sym[i + 1]);
    rk[n - 1] = UINT32_MAX;
    const uint32_t DIRTY = UINT32_MAX - 1;
    for (;;) {
        uint32_t r = UINT32_MAX;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (rk[i] < r) {
                r = rk[i];
                at = i;
            }
        if (r == UINT32_MAX) break;
        int32_t c = pair_find(tok, sym[at], sym[at + 1])->merged;
        size_t j = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && rk[i] == r) {
                sym[j] = c;
                rk[j] = DIRTY;
                if (j > 0) rk[j - 1] = DIRTY;
                j++;
                i += 2;
            } else {
                sym[j] = sym[i];
                rk[j] = rk[i];
                j++;
                i++;
            }
        }
        n = j;
        rk[n - 1] = UINT32_MAX;
        for (size_t i = 0; i + 1 < n; i++)
            if (rk[i] == DIRTY) rk[i] = pair_rank(tok, sym[i], sym[i + 1]);
        if (n == 1) break;
    }
    if (rk != stack_rk) free(rk);
    return n;
}

static ms_status scratch_reserve(ms_tokenizer *t, size_t n)
{
    if (n <= t->scratch_cap) return MS_OK;
    size_t cap = pow2_at_least(n);
    int32_t *s = realloc(t->sym, cap * sizeof *s);
    if (s) t->sym = s;
    int32_t *p = realloc(t->prev, cap * sizeof *p);
    if (p) t->prev = p;
    int32_t *x = realloc(t->next, cap * sizeof *x);
    if (x) t->next = x;
    ms_heap_ent *h = realloc(t->heap, 3 * cap * sizeof *h);
    if (h) t->heap = h;
    if (!s || !p || !x || !h) return MS_ERR_NOMEM;
    t->scratch_cap = cap;
    return MS_OK;
}

static inline bool heap_less(const ms_heap_ent *x, const ms_heap_ent *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(ms_heap_ent *h, size_t *n, ms_heap_ent e)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static ms_heap_ent heap_pop(ms_heap_ent *h, size_t *n)
{
    ms_heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

size_t ms_tokenizer_bpe_heap(ms_tokenizer *t, int32_t *sym, size_t n)
{
    if (n < 2) return n;
    if (scratch_reserve(t, n) != MS_OK) return ms_tokenizer_bpe_naive(t, sym, n);
    int32_t *prev = t->prev, *next = t->next;
    ms_heap_ent *heap = t->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t r = pair_rank(t, sym[i], sym[i + 1]);
        if (r != UINT32_MAX) heap_push(heap, &hn, (ms_heap_ent){r, (int32_t)i, sym[i], sym[i + 1]});
    }
    /* Nodes keep their original index, so (rank, index) order is (rank, position) order: all
     * occurrences of the lowest pair merge left to right before any newly formed pair is
     * queued, exactly as the reference loop. Stale entries are detected by their symbols. */
    int32_t *tbuf = t->sym; /* nodes merged in this round (scratch, never the caller's sym) */
    size_t n_touched = 0;
    while (hn > 0) {
        uint32_t r = heap[0].rank;
        n_touched = 0;
        while (hn > 0 && heap[0].rank == r) {
            ms_heap_ent e = heap_pop(heap, &hn);
            int32_t l = e.pos;
            if (sym[l] == INT32_MIN) continue; /* removed node */
            int32_t rt = next[l];
            if (rt < 0 || sym[l] != e.a || sym[rt] != e.b) continue;
            sym[l] = pair_find(t, e.a, e.b)->merged;
            sym[rt] = INT32_MIN;
            next[l] = next[rt];
            if (next[rt] >= 0) prev[next[rt]] = l;
            tbuf[n_touched++] = l;
        }
        for (size_t k = 0; k < n_touched; k++) {
            int32_t l = tbuf[k];
            if (sym[l] == INT32_MIN) continue;
            int32_t p = prev[l], x = next[l];
            uint32_t q;
            if (p >= 0 && (q = pair_rank(t, sym[p], sym[l])) != UINT32_MAX)
                heap_push(heap, &hn, (ms_heap_ent){q, p, sym[p], sym[l]});
            if (x >= 0 && (q = pair_rank(t, sym[l], sym[x])) != UINT32_MAX)
                heap_push(heap, &hn, (ms_heap_ent){q, l, sym[l], sym[x]});
        }
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) sym[m++] = sym[i];
    return m;
}

/* ===================================================================== encode / decode */

static ms_status append_ids(ms_tokenizer *t, const int32_t *ids, size_t k)
{
    if (*t->out_n + k > *t->out_cap) {
        size_t cap = *t->out_cap ? *t->out_cap : 1024;
        while (cap < *t->out_n + k) cap *= 2;
        int32_t *nb = realloc(*t->out_ids, cap * sizeof *nb);
        if (!nb) return MS_ERR_NOMEM;
        *t->out_ids = nb;
        *t->out_cap = cap;
    }
    memcpy(*t->out_ids + *t->out_n, ids, k * sizeof *ids);
    *t->out_n += k;
    return MS_OK;
}

static void cache_clear(ms_tokenizer *t)
{
    for (size_t i = 0; i <= t->cache_mask; i++) t->cache[i].off = UINT32_MAX;
    t->cache_count = 0;
    t->cache_len = 0;
}

static void cache_insert(ms_tokenizer *t, const uint8_t *w, size_t n, uint64_t h, const int32_t *ids, size_t k)
{
    if (n > MS_CACHE_MAX_KEY || k > UINT16_MAX) return;
    if (2 * (t->cache_count + 1) > t->cache_mask + 1) {
        size_t slots = t->cache_mask + 1;
        ms_cache_slot *nc = slots < MS_CACHE_MAX_SLOTS ? malloc(2 * slots * sizeof *nc) : NULL;
        if (!nc) {
            cache_clear(t); /* at the size bound (or OOM): start over */
        } else {
            size_t mask = 2 * slots - 1;
            for (size_t i = 0; i <= mask; i++) nc[i].off = UINT32_MAX;
            for (size_t i = 0; i < slots; i++) {
                if (t->cache[i].off == UINT32_MAX) continue;
                size_t j = t->cache[i].hash & mask;
                while (nc[j].off != UINT32_MAX) j = (j + 1) & mask;
                nc[j] = t->cache[i];
            }
            free(t->cache);
            t->cache = nc;
            t->cache_mask = mask;
        }
    }
    size_t kpad = (n + 3) & ~(size_t)3;
    size_t need = kpad + k * sizeof(int32_t);
    if (t->cache_len + need > t->cache_cap) {
        size_t cap = t->cache_cap * 2;
        uint8_t *na = cap <= UINT32_MAX / 2 ? realloc(t->cache_arena, cap) : NULL;
        if (!na) {
            cache_clear(t);
            if (need > t->cache_cap) return;
        } else {
            t->cache_arena = na;
            t->cache_cap = cap;
        }
    }
    uint32_t off = (uint32_t)t->cache_len;
    memcpy(t->cache_arena + off, w, n);
    memcpy(t->cache_arena + off + kpad, ids, k * sizeof *ids);
    t->cache_len += need;
    size_t i = h & t->cache_mask;
    while (t->cache[i].off != UINT32_MAX) i = (i + 1) & t->cache_mask;
    t->cache[i] = (ms_cache_slot){h, off, (uint16_t)n, (uint16_t)k};
    t->cache_count++;
}

static ms_status encode_word(void *ctx, const uint8_t *w, size_t n)
{
    ms_tokenizer *t = ctx;
    if (n == 1) return append_ids(t, &t->byte_id[w[0]], 1);
    uint64_t h = 0;
    if (n <= MS_CACHE_MAX_KEY) {
        h = ms_bpe_hash(w, n);
        for (size_t i = h & t->cache_mask;; i = (i + 1) & t->cache_mask) {
            const ms_cache_slot *sl = &t->cache[i];
            if (sl->off == UINT32_MAX) break;
            if (sl->hash == h && sl->klen == n && memcmp(t->cache_arena + sl->off, w, n) == 0)
                return append_ids(t, (const int32_t *)(const void *)(t->cache_arena + sl->off + ((n + 3) & ~(size_t)3)),
                                  sl->nids);
        }
    }
    if (scratch_reserve(t, n) != MS_OK) return MS_ERR_NOMEM;
    int32_t local[MS_HEAP_THRESHOLD];
    int32_t *sym = local, *own = NULL;
    if (n > MS_HEAP_THRESHOLD) {
        own = malloc(n * sizeof *own);
        if (!own) return MS_ERR_NOMEM;
        sym = own;
    }
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[w[i]];
    size_t m = n <= MS_HEAP_THRESHOLD ? ms_tokenizer_bpe_naive(t, sym, n) : ms_tokenizer_bpe_heap(t, sym, n);
    ms_status st = append_ids(t, sym, m);
    if (st == MS_OK && n <= MS_CACHE_MAX_KEY) cache_insert(t, w, n, h, sym, m);
    free(own);
    return st;
}

ms_status ms_tokenizer_encode(ms_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n,
                              size_t *cap, ms_err *err)
{
    tok->out_ids = ids;
    tok->out_n = n;
    tok->out_cap = cap;
    ms_status st = ms_pretok_run(&tok->pre, (const uint8_t *)text, len, encode_word, tok, err);
    tok->out_ids = NULL;
    if (st == MS_ERR_NOMEM) return ms_err_set(err, st, "tokenizer: out of memory encoding %zu bytes", len);
    return st;
}

ms_status ms_tokenizer_decode(const ms_tokenizer *tok, const int32_t *ids, size_t n, char **out, size_t *len,
                              size_t *cap, ms_err *err)
{
    size_t need = *len + 1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_ids || tok->tok_off[id] == UINT64_MAX)
            return ms_err_set(err, MS_ERR_FORMAT, "decode: token %zu: id %d is not in the vocabulary (0..%d)", i,
                              id, tok->n_ids - 1);
        need += tok->tok_len[id];
    }
    if (need > *cap || !*out) {
        size_t c = *cap ? *cap : 256;
        while (c < need) c *= 2;
        char *nb = realloc(*out, c);
        if (!nb) return ms_err_set(err, MS_ERR_NOMEM, "decode: out of memory (%zu bytes)", need);
        *out = nb;
        *cap = c;
    }
    char *o = *out + *len;
    for (size_t i = 0; i < n; i++) {
        memcpy(o, tok->tok_arena + tok->tok_off[ids[i]], tok->tok_len[ids[i]]);
        o += tok->tok_len[ids[i]];
    }
    *o = '\0';
    *len = (size_t)(o - *out);
    return MS_OK;
}
