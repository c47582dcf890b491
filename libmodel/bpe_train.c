/* BPE trainer: from the word counter's table (bpe_count.c), learns merges with incremental
 * pair counts and a lazy max-heap; bpe_write.c writes vocab.json + merges.txt. */
#include "bpe_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== trainer state */

typedef struct {
    int32_t a, b;
    int64_t count;
    int32_t *where; /* words that contained the pair at some point (may be stale) */
    int32_t nw, cw;
    int64_t pushed; /* step at which it was last queued as a new pair */
} ms_pair;

typedef struct {
    int64_t count;
    int32_t a, b;
} ms_hent;

typedef struct {
    /* tokens: internal id t < 256 is byte t; bytes of every token in tok_arena */
    uint64_t *tok_off;
    uint32_t *tok_len;
    int32_t n_tok, cap_tok;
    uint8_t *tok_arena;
    size_t tok_alen, tok_acap;
    int32_t *tmap; /* bytes -> token (open addressing, -1 empty) */
    uint64_t *tmap_hash;
    size_t tmap_mask;
    /* words */
    int32_t *sym;      /* every word's symbols, word w at sym + woff[w] */
    uint64_t *woff;
    int32_t *wlen;
    int64_t *wcnt;
    int64_t *wstamp;
    size_t n_words;
    /* pairs */
    ms_pair *pairs;
    int32_t n_pairs, cap_pairs;
    int32_t *pidx; /* hash index -> pair, -1 empty */
    uint64_t *pkey;
    size_t pmask;
    /* heap */
    ms_hent *heap;
    size_t hn, hcap;
    /* learned merges */
    int32_t (*merges)[2];
    int64_t n_merges;
    int32_t *new_pairs;
    int32_t n_new, cap_new;
} ms_bpe_state;

static void state_free(ms_bpe_state *s)
{
    free(s->tok_off);
    free(s->tok_len);
    free(s->tok_arena);
    free(s->tmap);
    free(s->tmap_hash);
    free(s->sym);
    free(s->woff);
    free(s->wlen);
    free(s->wcnt);
    free(s->wstamp);
    for (int32_t i = 0; i < s->n_pairs; i++) free(s->pairs[i].where);
    free(s->pairs);
    free(s->pidx);
    free(s->pkey);
    free(s->heap);
    free(s->merges);
    free(s->new_pairs);
}

static int tok_cmp(const ms_bpe_state *s, int32_t x, int32_t y)
{
    uint32_t lx = s->tok_len[x], ly = s->tok_len[y];
    int c = memcmp(s->tok_arena + s->tok_off[x], s->tok_arena + s->tok_off[y], lx < ly ? lx : ly);
    if (c) return c;
    return lx < ly ? -1 : lx > ly ? 1 : 0;
}

/* true if heap entry x should come out before y */
static bool hent_before(const ms_bpe_state *s, const ms_hent *x, const ms_hent *y)
{
    if (x->count != y->count) return x->count > y->count;
    int c = tok_cmp(s, x->a, y->a);
    if (c) return c < 0;
    return tok_cmp(s, x->b, y->b) < 0;
}

static ms_status heap_push(ms_bpe_state *s, ms_hent e)
{
    if (s->hn == s->hcap) {
        size_t cap = s->hcap ? 2 * s->hcap : 1024;
        ms_hent *nh = realloc(s->heap, cap * sizeof *nh);
        if (!nh) return MS_ERR_NOMEM;
        s->heap = nh;
        s->hcap = cap;
    }
    size_t i = s->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hent_before(s, &e, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
    return MS_OK;
}

static ms_hent heap_pop(ms_bpe_state *s)
{
    ms_hent top = s->heap[0], last = s->heap[--s->hn];
    size_t i = 0, n = s->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && hent_before(s, &s->heap[c + 1], &s->heap[c])) c++;
        if (!hent_before(s, &s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

static int32_t tmap_find(const ms_bpe_state *s, const uint8_t *b, size_t n, uint64_t h, size_t *slot)
{
    size_t i = h & s->tmap_mask;
    for (;; i = (i + 1) & s->tmap_mask) {
        int32_t t = s->tmap[i];
        if (t < 0) break;
        if (s->tmap_hash[i] == h && s->tok_len[t] == n && memcmp(s->tok_arena + s->tok_off[t], b, n) == 0)
            return t;
    }
    *slot = i;
    return -1;
}

static ms_status tmap_grow(ms_bpe_state *s)
{
    size_t mask = s->tmap_mask ? 2 * (s->tmap_mask + 1) - 1 : 1023;
    int32_t *nm = malloc((mask + 1) * sizeof *nm);
    uint64_t *nh = malloc((mask + 1) * sizeof *nh);
    if (!nm || !nh) {
        free(nm);
        free(nh);
        return MS_ERR_NOMEM;
    }
    for (size_t i = 0; i <= mask; i++) nm[i] = -1;
    for (size_t i = 0; s->tmap && i <= s->tmap_mask; i++) {
        if (s->tmap[i] < 0) continue;
        size_t j = s->tmap_hash[i] & mask;
        while (nm[j] >= 0) j = (j + 1) & mask;
        nm[j] = s->tmap[i];
        nh[j] = s->tmap_hash[i];
    }
    free(s->tmap);
    free(s->tmap_hash);
    s->tmap = nm;
    s->tmap_hash = nh;
    s->tmap_mask = mask;
    return MS_OK;
}

/* Token for the concatenation of a and b: the existing one with those bytes, or a new one. */
static ms_status token_concat(ms_bpe_state *s, int32_t a, int32_t b, int32_t *out)
{
    size_t la = s->tok_len[a], lb = s->tok_len[b], n = la + lb;
    if (s->tok_alen + n > s->tok_acap) {
        size_t cap = s->tok_acap ? s->tok_acap : 4096;
        while (cap < s->tok_alen + n) cap *= 2;
        uint8_t *na = realloc(s->tok_arena, cap);
        if (!na) return MS_ERR_NOMEM;
        s->tok_arena = na;
        s->tok_acap = cap;
    }
    uint8_t *dst = s->tok_arena + s->tok_alen;
    memmove(dst, s->tok_arena + s->tok_off[a], la);
    memmove(dst + la, s->tok_arena + s->tok_off[b], lb);
    uint64_t h = ms_bpe_hash(dst, n);
    size_t slot = 0;
    int32_t t = tmap_find(s, dst, n, h, &slot);
    if (t >= 0) {
        *out = t;
        return MS_OK;
    }
    if (s->n_tok == s->cap_tok) {
        int32_t cap = 2 * s->cap_tok;
        uint64_t *no = realloc(s->tok_off, (size_t)cap * sizeof *no);
        if (no) s->tok_off = no;
        uint32_t *nl = realloc(s->tok_len, (size_t)cap * sizeof *nl);
        if (nl) s->tok_len = nl;
        if (!no || !nl) return MS_ERR_NOMEM;
        s->cap_tok = cap;
    }
    t = s->n_tok++;
    s->tok_off[t] = s->tok_alen;
    s->tok_len[t] = (uint32_t)n;
    s->tok_alen += n;
    s->tmap[slot] = t;
    s->tmap_hash[slot] = h;
    if (2 * (size_t)s->n_tok > s->tmap_mask + 1 && tmap_grow(s) != MS_OK) return MS_ERR_NOMEM;
    *out = t;
    return MS_OK;
}

static ms_status pairs_rehash(ms_bpe_state *s)
{
    size_t mask = s->pmask ? 2 * (s->pmask + 1) - 1 : 4095;
    int32_t *ni = malloc((mask + 1) * sizeof *ni);
    uint64_t *nk = malloc((mask + 1) * sizeof *nk);
    if (!ni || !nk) {
        free(ni);
        free(nk);
        return MS_ERR_NOMEM;
    }
    for (size_t i = 0; i <= mask; i++) ni[i] = -1;
    for (size_t i = 0; s->pidx && i <= s->pmask; i++) {
        if (s->pidx[i] < 0) continue;
        size_t j = ms_bpe_hash_u64(s->pkey[i]) & mask;
        while (ni[j] >= 0) j = (j + 1) & mask;
        ni[j] = s->pidx[i];
        nk[j] = s->pkey[i];
    }
    free(s->pidx);
    free(s->pkey);
    s->pidx = ni;
    s->pkey = nk;
    s->pmask = mask;
    return MS_OK;
}

/* The pair (a,b), created with count 0 if absent; NULL on OOM. */
static ms_pair *pair_get(ms_bpe_state *s, int32_t a, int32_t b)
{
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = ms_bpe_hash_u64(k) & s->pmask;
    for (;; i = (i + 1) & s->pmask) {
        if (s->pidx[i] < 0) break;
        if (s->pkey[i] == k) return &s->pairs[s->pidx[i]];
    }
    if (s->n_pairs == s->cap_pairs) {
        int32_t cap = s->cap_pairs ? 2 * s->cap_pairs : 4096;
        ms_pair *np = realloc(s->pairs, (size_t)cap * sizeof *np);
        if (!np) return NULL;
        s->pairs = np;
        s->cap_pairs = cap;
    }
    int32_t p = s->n_pairs++;
    s->pairs[p] = (ms_pair){a, b, 0, NULL, 0, 0, -1};
    s->pidx[i] = p;
    s->pkey[i] = k;
    if (2 * (size_t)s->n_pairs > s->pmask + 1 && pairs_rehash(s) != MS_OK) return NULL;
    return &s->pairs[p];
}

static ms_pair *pair_find(const ms_bpe_state *s, int32_t a, int32_t b)
{
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (size_t i = ms_bpe_hash_u64(k) & s->pmask;; i = (i + 1) & s->pmask) {
        if (s->pidx[i] < 0) return NULL;
        if (s->pkey[i] == k) return &s->pairs[s->pidx[i]];
    }
}

static ms_status where_add(ms_pair *p, int32_t w)
{
    if (p->nw > 0 && p->where[p->nw - 1] == w) return MS_OK;
    if (p->nw == p->cw) {
        int32_t cap = p->cw ? 2 * p->cw : 4;
        int32_t *nw = realloc(p->where, (size_t)cap * sizeof *nw);
        if (!nw) return MS_ERR_NOMEM;
        p->where = nw;
        p->cw = cap;
    }
    p->where[p->nw++] = w;
    return MS_OK;
}

static ms_status state_init(ms_bpe_state *s, const ms_bpe_counter *c, int64_t n_merges)
{
    memset(s, 0, sizeof *s);
    s->cap_tok = 512;
    s->n_tok = 256;
    s->tok_off = malloc((size_t)s->cap_tok * sizeof *s->tok_off);
    s->tok_len = malloc((size_t)s->cap_tok * sizeof *s->tok_len);
    s->tok_acap = 4096;
    s->tok_arena = malloc(s->tok_acap);
    s->merges = malloc((size_t)(n_merges > 0 ? n_merges : 1) * sizeof *s->merges);
    if (!s->tok_off || !s->tok_len || !s->tok_arena || !s->merges || tmap_grow(s) != MS_OK ||
        pairs_rehash(s) != MS_OK)
        return MS_ERR_NOMEM;
    for (int32_t b = 0; b < 256; b++) {
        s->tok_arena[b] = (uint8_t)b;
        s->tok_off[b] = (uint64_t)b;
        s->tok_len[b] = 1;
        uint64_t h = ms_bpe_hash(s->tok_arena + b, 1);
        size_t i = h & s->tmap_mask;
        while (s->tmap[i] >= 0) i = (i + 1) & s->tmap_mask;
        s->tmap[i] = b;
        s->tmap_hash[i] = h;
    }
    s->tok_alen = 256;
    while (2 * 256 > s->tmap_mask + 1)
        if (tmap_grow(s) != MS_OK) return MS_ERR_NOMEM;
    /* words in table order; symbols start as bytes */
    s->n_words = c->n;
    s->sym = malloc((c->alen ? c->alen : 1) * sizeof *s->sym);
    s->woff = malloc((c->n ? c->n : 1) * sizeof *s->woff);
    s->wlen = malloc((c->n ? c->n : 1) * sizeof *s->wlen);
    s->wcnt = malloc((c->n ? c->n : 1) * sizeof *s->wcnt);
    s->wstamp = malloc((c->n ? c->n : 1) * sizeof *s->wstamp);
    if (!s->sym || !s->woff || !s->wlen || !s->wcnt || !s->wstamp) return MS_ERR_NOMEM;
    size_t w = 0, off = 0;
    for (size_t i = 0; i <= c->mask; i++) {
        const ms_word_slot *ws = &c->tab[i];
        if (ws->count == 0) continue;
        s->woff[w] = off;
        s->wlen[w] = (int32_t)ws->len;
        s->wcnt[w] = ws->count;
        s->wstamp[w] = -1;
        for (size_t k = 0; k < ws->len; k++) s->sym[off + k] = c->arena[ws->off + k];
        off += ws->len;
        w++;
    }
    for (size_t wi = 0; wi < s->n_words; wi++) {
        const int32_t *y = s->sym + s->woff[wi];
        for (int32_t k = 0; k + 1 < s->wlen[wi]; k++) {
            ms_pair *p = pair_get(s, y[k], y[k + 1]);
            if (!p) return MS_ERR_NOMEM;
            p->count += s->wcnt[wi];
            if (where_add(p, (int32_t)wi) != MS_OK) return MS_ERR_NOMEM;
        }
    }
    for (int32_t i = 0; i < s->n_pairs; i++)
        if (heap_push(s, (ms_hent){s->pairs[i].count, s->pairs[i].a, s->pairs[i].b}) != MS_OK) return MS_ERR_NOMEM;
    return MS_OK;
}

/* Applies merge (a,b) -> t to every word holding the pair, updating pair counts. */
static ms_status apply_merge(ms_bpe_state *s, int32_t a, int32_t b, int32_t t, int64_t step)
{
    ms_pair *pp = pair_find(s, a, b);
    int32_t *where = pp->where, nw = pp->nw;
    pp->where = NULL; /* the pair disappears from every word; new pairs all contain t != a, b */
    pp->nw = pp->cw = 0;
    s->n_new = 0;
    ms_status st = MS_OK;
    for (int32_t k = 0; k < nw && st == MS_OK; k++) {
        int32_t w = where[k];
        if (s->wstamp[w] == step) continue;
        s->wstamp[w] = step;
        int32_t *y = s->sym + s->woff[w];
        int32_t n = s->wlen[w];
        int64_t cnt = s->wcnt[w];
        bool has = false;
        for (int32_t i = 0; i + 1 < n && !has; i++) has = y[i] == a && y[i + 1] == b;
        if (!has) continue;
        for (int32_t i = 0; i + 1 < n; i++) pair_find(s, y[i], y[i + 1])->count -= cnt;
        int32_t j = 0;
        for (int32_t i = 0; i < n;) {
            if (i + 1 < n && y[i] == a && y[i + 1] == b) {
                y[j++] = t;
                i += 2;
            } else {
                y[j++] = y[i++];
            }
        }
        n = s->wlen[w] = j;
        for (int32_t i = 0; i + 1 < n; i++) {
            ms_pair *q = pair_get(s, y[i], y[i + 1]);
            if (!q) {
                st = MS_ERR_NOMEM;
                break;
            }
            q->count += cnt;
            if (y[i] == t || y[i + 1] == t) {
                if (where_add(q, w) != MS_OK) {
                    st = MS_ERR_NOMEM;
                    break;
                }
                if (q->pushed != step) {
                    q->pushed = step;
                    if (s->n_new == s->cap_new) {
                        int32_t cap = s->cap_new ? 2 * s->cap_new : 256;
                        int32_t *nn = realloc(s->new_pairs, (size_t)cap * sizeof *nn);
                        if (!nn) {
                            st = MS_ERR_NOMEM;
                            break;
                        }
                        s->new_pairs = nn;
                        s->cap_new = cap;
                    }
                    s->new_pairs[s->n_new++] = (int32_t)(q - s->pairs);
                }
            }
        }
    }
    free(where);
    for (int32_t k = 0; k < s->n_new && st == MS_OK; k++) {
        const ms_pair *q = &s->pairs[s->new_pairs[k]];
        if (q->count > 0) st = heap_push(s, (ms_hent){q->count, q->a, q->b});
    }
    return st;
}

ms_status ms_bpe_train(const ms_bpe_counter *c, int64_t n_merges, const char *vocab_path, const char *merges_path,
                       ms_bpe_result *res, ms_err *err)
{
    double t0 = ms_time_now();
    if (n_merges < 0 || n_merges > INT32_MAX / 2)
        return ms_err_set(err, MS_ERR_USAGE, "bpe trainer: merges: expected 0..%d, got %lld", INT32_MAX / 2,
                          (long long)n_merges);
    ms_bpe_state s;
    ms_status st = state_init(&s, c, n_merges);
    int64_t step = 0;
    while (st == MS_OK && s.n_merges < n_merges && s.hn > 0) {
        ms_hent e = heap_pop(&s);
        ms_pair *p = pair_find(&s, e.a, e.b);
        if (p->count != e.count) {
            /* stale: a lower current count is re-queued; a higher one has its own entry */
            if (p->count > 0 && p->count < e.count) st = heap_push(&s, (ms_hent){p->count, e.a, e.b});
            continue;
        }
        if (p->count <= 0) continue;
        int32_t t;
        if ((st = token_concat(&s, e.a, e.b, &t)) != MS_OK) break;
        s.merges[s.n_merges][0] = e.a;
        s.merges[s.n_merges][1] = e.b;
        s.n_merges++;
        st = apply_merge(&s, e.a, e.b, t, step++);
    }
    if (st == MS_ERR_NOMEM)
        st = ms_err_set(err, st, "bpe trainer: out of memory after %lld merges", (long long)s.n_merges);
    int32_t vocab_size = 0;
    if (st == MS_OK) {
        ms_bpe_learned l = {s.tok_off, s.tok_len, s.tok_arena, s.n_tok, s.merges, s.n_merges};
        st = ms_bpe_write_outputs(&l, vocab_path, merges_path, &vocab_size, err);
    }
    if (res) {
        res->n_merges = s.n_merges;
        res->vocab_size = vocab_size;
        res->seconds = ms_time_now() - t0;
    }
    state_free(&s);
    return st;
}
