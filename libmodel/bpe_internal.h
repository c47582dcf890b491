/* bpe_internal.h: private pieces shared by the BPE tokenizer and trainer: GPT-2 byte alphabet,
 * pre-tokenizer (PCRE2), UTF-8 checks, byte hashing and a safe chunk-cut rule for streaming. */
#ifndef MONOSEM_BPE_INTERNAL_H
#define MONOSEM_BPE_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "monosem/model.h"

/* ---- GPT-2 byte alphabet (bytes_to_unicode): byte b is shown as code point ms_b2u[b] (< 324);
 * printable Latin-1 bytes map to themselves, the 68 others to U+0100.. in byte order. */
void ms_bpe_alphabet(uint16_t b2u[256], int16_t u2b[324]);

/* Appends the UTF-8 of byte string s (len n) in the byte alphabet to out (needs 2n bytes);
 * returns bytes written. */
size_t ms_bpe_bytes_to_alpha(char *out, const uint8_t *s, size_t n, const uint16_t b2u[256]);
/* Inverse: alphabet UTF-8 text -> raw bytes into out (needs n bytes). Returns the number of
 * bytes or -1 if a character is outside the alphabet or the UTF-8 is malformed. */
long ms_bpe_alpha_to_bytes(uint8_t *out, const char *s, size_t n, const int16_t u2b[324]);

/* ---- UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF, the same rule PCRE2 checks).
 * Length of the valid sequence starting at s[0] (1..4), or 0 if s[0] starts no valid one. */
int ms_utf8_seq_len(const uint8_t *s, size_t avail);
/* Index of the first invalid byte, or n if all of s is valid. */
size_t ms_utf8_first_invalid(const uint8_t *s, size_t n);

/* ---- pre-tokenizer: the GPT-2 pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \s the ECMAScript whitespace set (the reference gpt-3-encoder runs it in JavaScript).
 * Bytes that are not valid UTF-8 are treated as one "other" character each (as the U+FFFD a
 * decoder would put there), so they join neighbouring punctuation; BPE then runs on the raw
 * bytes, so decode(encode(x)) == x for any x. */
typedef struct ms_pretok {
    pcre2_code *re;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    uint8_t *sub; /* scratch copy with invalid bytes replaced (grown as needed) */
    size_t sub_cap;
} ms_pretok;

ms_status ms_pretok_init(ms_pretok *p, ms_err *err);
void ms_pretok_free(ms_pretok *p);
/* Calls fn(ctx, start, len) for each pre-token of text in order; the pieces cover text exactly.
 * Stops and returns fn's status if it is not MS_OK. */
typedef ms_status (*ms_pretok_fn)(void *ctx, const uint8_t *word, size_t len);
ms_status ms_pretok_run(ms_pretok *p, const uint8_t *text, size_t len, ms_pretok_fn fn, void *ctx,
                        ms_err *err);

/* A position p in text[0..n) where the text can be split in two without changing the
 * pre-tokenization (text[p] == ' ' and text[p-1] is printable ASCII other than space): the
 * largest such p, or 0 if none. */
size_t ms_pretok_safe_cut(const uint8_t *text, size_t n);

/* ---- hashing of byte strings (fast, not cryptographic) */
static inline uint64_t ms_bpe_hash(const uint8_t *s, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)s[i] << (8 * i);
    h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 32);
}
static inline uint64_t ms_bpe_hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    return x ^ (x >> 33);
}

/* ---- the word counter's table (bpe_count.c fills it, the trainer reads its words) */
typedef struct {
    uint64_t hash;
    int64_t count; /* 0 = empty slot */
    uint64_t off;  /* into arena */
    uint64_t len;
} ms_word_slot;

struct ms_bpe_counter {
    ms_pretok pre;
    ms_word_slot *tab;
    size_t mask, n;
    uint8_t *arena;
    size_t alen, acap;
    int64_t total;
};

/* ---- the trainer's result as bpe_write.c writes it: token t's bytes are tok_arena + tok_off[t]
 * (tok_len[t] of them), ids < 256 the single bytes; merges (n_merges pairs) in learned order. */
typedef struct ms_bpe_learned {
    const uint64_t *tok_off;
    const uint32_t *tok_len;
    const uint8_t *tok_arena;
    int32_t n_tok;
    int32_t (*merges)[2];
    int64_t n_merges;
} ms_bpe_learned;

/* Writes vocab.json (the 256 byte tokens in GPT-2 order, the learned ones, <|endoftext|> last)
 * and merges.txt for ms_tokenizer_load, each atomically; *vocab_size = ids written. */
ms_status ms_bpe_write_outputs(const ms_bpe_learned *l, const char *vocab_path, const char *merges_path,
                               int32_t *vocab_size, ms_err *err);

/* ---- internals exposed for tests: the two BPE merge kernels on a symbol array.
 * Both apply merges with exactly the reference semantics (lowest-ranked pair first, all its
 * non-overlapping occurrences left to right), in place; they return the new length. The naive
 * one is O(n^2); the heap one O(n log n) (used for long words). */
size_t ms_tokenizer_bpe_naive(const ms_tokenizer *tok, int32_t *sym, size_t n);
size_t ms_tokenizer_bpe_heap(ms_tokenizer *tok, int32_t *sym, size_t n);
/* Id of single byte b. */
int32_t ms_tokenizer_byte_id(const ms_tokenizer *tok, uint8_t b);

#endif
