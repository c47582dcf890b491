/* BPE trainer output: the learned vocabulary as vocab.json (GPT-2 id order) and merges.txt,
 * in the byte alphabet, each written atomically. */
#include "bpe_internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} ms_sbuf;

static void sb_put(ms_sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n + 1) cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = true;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

/* Token t in the byte alphabet; JSON-escaped when json (only '"' and '\\' can occur). */
static void sb_token(ms_sbuf *b, const ms_bpe_learned *s, int32_t t, const uint16_t b2u[256], bool json)
{
    char tmp[2 * 64];
    const uint8_t *p = s->tok_arena + s->tok_off[t];
    for (uint32_t i = 0; i < s->tok_len[t];) {
        uint32_t k = s->tok_len[t] - i < 64 ? s->tok_len[t] - i : 64;
        size_t o = ms_bpe_bytes_to_alpha(tmp, p + i, k, b2u);
        if (json) {
            for (size_t q = 0; q < o; q++) {
                if (tmp[q] == '"' || tmp[q] == '\\') sb_put(b, "\\", 1);
                sb_put(b, tmp + q, 1);
            }
        } else {
            sb_put(b, tmp, o);
        }
        i += k;
    }
}

ms_status ms_bpe_write_outputs(const ms_bpe_learned *s, const char *vocab_path, const char *merges_path,
                               int32_t *vocab_size, ms_err *err)
{
    uint16_t b2u[256];
    int16_t u2b[324];
    ms_bpe_alphabet(b2u, u2b);
    /* GPT-2 order of the byte tokens: printable bytes first (as bytes_to_unicode lists them) */
    int32_t order[256], k = 0;
    for (int b = 0; b < 256; b++)
        if (b2u[b] == b) order[k++] = b;
    for (int b = 0; b < 256; b++)
        if (b2u[b] != b) order[k++] = b;
    ms_sbuf v = {0}, m = {0};
    char num[32];
    sb_put(&v, "{", 1);
    int32_t id = 0;
    for (int i = 0; i < 256; i++) {
        sb_put(&v, id ? ", \"" : "\"", id ? 3 : 1);
        sb_token(&v, s, order[i], b2u, true);
        int l = snprintf(num, sizeof num, "\": %d", id++);
        sb_put(&v, num, (size_t)l);
    }
    for (int32_t t = 256; t < s->n_tok; t++) {
        sb_put(&v, ", \"", 3);
        sb_token(&v, s, t, b2u, true);
        int l = snprintf(num, sizeof num, "\": %d", id++);
        sb_put(&v, num, (size_t)l);
    }
    int l = snprintf(num, sizeof num, ", \"<|endoftext|>\": %d}", id++);
    sb_put(&v, num, (size_t)l);
    sb_put(&m, "#version: 0.2\n", 14);
    for (int64_t i = 0; i < s->n_merges; i++) {
        sb_token(&m, s, s->merges[i][0], b2u, false);
        sb_put(&m, " ", 1);
        sb_token(&m, s, s->merges[i][1], b2u, false);
        sb_put(&m, "\n", 1);
    }
    ms_status st = MS_OK;
    if (v.oom || m.oom)
        st = ms_err_set(err, MS_ERR_NOMEM, "bpe trainer: out of memory writing %s", vocab_path);
    if (st == MS_OK) st = ms_file_write_atomic(vocab_path, v.buf, v.len, err);
    if (st == MS_OK) st = ms_file_write_atomic(merges_path, m.buf, m.len, err);
    free(v.buf);
    free(m.buf);
    *vocab_size = id;
    return st;
}
