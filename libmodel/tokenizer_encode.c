/* Tokenizer encoding: the two BPE merge kernels (naive and heap, for long words), the per-word
 * cache, encode and decode. */
#include "tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

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
