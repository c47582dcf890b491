/* BPE word counter: GPT-2 pre-tokens of the training text counted in an open-addressing table
 * (the input the merge trainer learns from). */
#include "bpe_internal.h"

#include <stdlib.h>
#include <string.h>

ms_status ms_bpe_counter_init(ms_bpe_counter **out, ms_err *err)
{
    *out = NULL;
    ms_bpe_counter *c = calloc(1, sizeof *c);
    if (!c) return ms_err_set(err, MS_ERR_NOMEM, "bpe trainer: out of memory");
    ms_status st = ms_pretok_init(&c->pre, err);
    if (st != MS_OK) {
        free(c);
        return st;
    }
    c->mask = (1u << 12) - 1;
    c->tab = calloc(c->mask + 1, sizeof *c->tab);
    c->acap = 1 << 16;
    c->arena = malloc(c->acap);
    if (!c->tab || !c->arena) {
        ms_bpe_counter_free(c);
        return ms_err_set(err, MS_ERR_NOMEM, "bpe trainer: out of memory");
    }
    *out = c;
    return MS_OK;
}

void ms_bpe_counter_free(ms_bpe_counter *c)
{
    if (!c) return;
    ms_pretok_free(&c->pre);
    free(c->tab);
    free(c->arena);
    free(c);
}

static ms_status count_word(void *ctx, const uint8_t *w, size_t n)
{
    ms_bpe_counter *c = ctx;
    uint64_t h = ms_bpe_hash(w, n);
    size_t i = h & c->mask;
    for (;; i = (i + 1) & c->mask) {
        ms_word_slot *s = &c->tab[i];
        if (s->count == 0) break;
        if (s->hash == h && s->len == n && memcmp(c->arena + s->off, w, n) == 0) {
            s->count++;
            c->total++;
            return MS_OK;
        }
    }
    if (c->alen + n > c->acap) {
        size_t cap = c->acap;
        while (cap < c->alen + n) cap *= 2;
        uint8_t *na = realloc(c->arena, cap);
        if (!na) return MS_ERR_NOMEM;
        c->arena = na;
        c->acap = cap;
    }
    memcpy(c->arena + c->alen, w, n);
    c->tab[i] = (ms_word_slot){h, 1, c->alen, n};
    c->alen += n;
    c->n++;
    c->total++;
    if (2 * c->n > c->mask + 1) {
        size_t mask = 2 * (c->mask + 1) - 1;
        ms_word_slot *nt = calloc(mask + 1, sizeof *nt);
        if (!nt) return MS_ERR_NOMEM;
        for (size_t k = 0; k <= c->mask; k++) {
            if (c->tab[k].count == 0) continue;
            size_t j = c->tab[k].hash & mask;
            while (nt[j].count != 0) j = (j + 1) & mask;
            nt[j] = c->tab[k];
        }
        free(c->tab);
        c->tab = nt;
        c->mask = mask;
    }
    return MS_OK;
}

ms_status ms_bpe_counter_add(ms_bpe_counter *c, const char *text, size_t len, ms_err *err)
{
    ms_status st = ms_pretok_run(&c->pre, (const uint8_t *)text, len, count_word, c, err);
    if (st == MS_ERR_NOMEM)
        return ms_err_set(err, st, "bpe trainer: out of memory counting words (%zu distinct so far)", c->n);
    return st;
}

size_t ms_bpe_counter_distinct(const ms_bpe_counter *c) { return c->n; }
int64_t ms_bpe_counter_total(const ms_bpe_counter *c) { return c->total; }
