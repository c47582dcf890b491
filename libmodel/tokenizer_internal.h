/* tokenizer_internal.h: private to the tokenizer's loading and encoding files: its hash-table
 * slots, struct ms_tokenizer and the pair lookups both halves use. */
#ifndef MONOSEM_TOKENIZER_INTERNAL_H
#define MONOSEM_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bpe_internal.h"

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

static inline size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
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

#endif
