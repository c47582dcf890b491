/* Per-slot bounded sets of the k best (smallest (key, pos)) entries, with window payloads: the
 * top-k activations and interval samples of every unit, and their rank-count-independent merge. */
#include "monosem/units.h"

#include <stdlib.h>
#include <string.h>

ms_status ms_topk_init(ms_topk *t, int64_t n_slots, int k, int w, ms_err *err)
{
    memset(t, 0, sizeof *t);
    t->n_slots = n_slots;
    t->k = k;
    t->w = w;
    /* the header is 24 bytes; payload floats and int32 keep every entry 8-byte aligned */
    t->entry_bytes = sizeof(ms_topk_entry) + 8 * (size_t)w;
    size_t n = (size_t)n_slots * (size_t)k;
    t->mem = malloc(n * t->entry_bytes + 1);
    t->n = calloc((size_t)n_slots + 1, sizeof *t->n);
    t->scratch = malloc((2 * (size_t)k + 1) * t->entry_bytes);
    if (!t->mem || !t->n || !t->scratch) {
        ms_topk_free(t);
        return ms_err_set(err, MS_ERR_NOMEM, "analysis: out of memory for %lld x %d entries of %zu bytes",
                          (long long)n_slots, k, (size_t)(sizeof(ms_topk_entry) + 8 * (size_t)w));
    }
    for (size_t i = 0; i < n; i++) {
        ms_topk_entry *e = (ms_topk_entry *)(t->mem + i * t->entry_bytes);
        memset(e, 0, t->entry_bytes);
        e->pos = -1;
        e->key = UINT64_MAX;
        e->next = -1;
    }
    return MS_OK;
}

void ms_topk_free(ms_topk *t)
{
    free(t->mem);
    free(t->n);
    free(t->scratch);
    memset(t, 0, sizeof *t);
}

ms_topk_entry *ms_topk_at(const ms_topk *t, int64_t slot, int i)
{
    return (ms_topk_entry *)(t->mem + ((size_t)slot * (size_t)t->k + (size_t)i) * t->entry_bytes);
}

float *ms_topk_entry_acts(const ms_topk *t, ms_topk_entry *e)
{
    (void)t;
    return (float *)(e + 1);
}

int32_t *ms_topk_entry_tokens(const ms_topk *t, ms_topk_entry *e)
{
    return (int32_t *)((float *)(e + 1) + t->w);
}

/* (key, pos) order; empty entries (pos -1) after every real one */
static int entry_less(const ms_topk_entry *a, const ms_topk_entry *b)
{
    if ((a->pos < 0) != (b->pos < 0)) return a->pos >= 0;
    if (a->key != b->key) return a->key < b->key;
    return a->pos < b->pos;
}

static int entry_cmp(const void *x, const void *y)
{
    const ms_topk_entry *a = x, *b = y;
    return entry_less(a, b) ? -1 : entry_less(b, a) ? 1 : 0;
}

uint64_t ms_topk_bar(const ms_topk *t, int64_t slot)
{
    if (t->n[slot] < t->k) return UINT64_MAX;
    return ms_topk_at(t, slot, 0)->key;
}

static void swap_entries(const ms_topk *t, ms_topk_entry *a, ms_topk_entry *b)
{
    memcpy(t->scratch, a, t->entry_bytes);
    memcpy(a, b, t->entry_bytes);
    memcpy(b, t->scratch, t->entry_bytes);
}

/* the slot is a max-heap under entry_less: the root is the worst entry held */
ms_topk_entry *ms_topk_push(ms_topk *t, int64_t slot, uint64_t key, int64_t pos)
{
    ms_topk_entry probe = {.key = key, .pos = pos};
    int n = t->n[slot];
    int i;
    if (n < t->k) {
        i = n;
        t->n[slot] = n + 1;
        ms_topk_entry *e = ms_topk_at(t, slot, i);
        e->key = key;
        e->pos = pos;
        while (i > 0) { /* sift up */
            int p = (i - 1) / 2;
            ms_topk_entry *pe = ms_topk_at(t, slot, p), *ce = ms_topk_at(t, slot, i);
            if (!entry_less(pe, ce)) break;
            swap_entries(t, pe, ce);
            i = p;
        }
        return ms_topk_at(t, slot, i);
    }
    ms_topk_entry *root = ms_topk_at(t, slot, 0);
    if (!entry_less(&probe, root)) return NULL;
    root->key = key;
    root->pos = pos;
    i = 0;
    for (;;) { /* sift down */
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && entry_less(ms_topk_at(t, slot, m), ms_topk_at(t, slot, l))) m = l;
        if (r < n && entry_less(ms_topk_at(t, slot, m), ms_topk_at(t, slot, r))) m = r;
        if (m == i) break;
        swap_entries(t, ms_topk_at(t, slot, i), ms_topk_at(t, slot, m));
        i = m;
    }
    return ms_topk_at(t, slot, i);
}

void ms_topk_sort(ms_topk *t)
{
    for (int64_t s = 0; s < t->n_slots; s++)
        qsort(ms_topk_at(t, s, 0), (size_t)t->k, t->entry_bytes, entry_cmp);
}

void ms_topk_merge(void *ctx, void *inout, const void *in, size_t n, size_t item_bytes)
{
    ms_topk *t = ctx;
    size_t k = (size_t)t->k, eb = t->entry_bytes;
    (void)item_bytes; /* == k * eb */
    for (size_t s = 0; s < n; s++) {
        unsigned char *dst = (unsigned char *)inout + s * k * eb;
        const unsigned char *src = (const unsigned char *)in + s * k * eb;
        memcpy(t->scratch, dst, k * eb);
        memcpy(t->scratch + k * eb, src, k * eb);
        qsort(t->scratch, 2 * k, eb, entry_cmp);
        memcpy(dst, t->scratch, k * eb);
    }
}

uint64_t ms_topk_key_act(float a)
{
    uint32_t b;
    memcpy(&b, &a, sizeof b); /* for a > 0 the bit pattern orders like the value */
    return (uint64_t)(UINT32_MAX - b);
}

uint64_t ms_analysis_hash(uint64_t seed, int64_t unit, int64_t pos)
{
    uint64_t u = ms_rng_mix(seed ^ ((uint64_t)unit + 1) * MS_RNG_GAMMA);
    return ms_rng_mix(u ^ ((uint64_t)pos + 1) * 0xd1b54a32d192ed03ull);
}
