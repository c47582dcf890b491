/* bench_tokenizer: GPT-2 BPE encode throughput on real English prose, one thread (MB/s/core).
 *   bench_tokenizer [VOCAB MERGES [TEXT]]
 * Defaults: data/gpt2/encoder.json data/gpt2/vocab.bpe (scripts/fetch-gpt2-bpe data/gpt2) and
 * the whole King James Bible from `bible` (Debian bible-kjv, ~4.3 MB). Reports a cold pass (fresh
 * word cache), warm passes, the pre-tokenizer alone, decode, and the BPE trainer. Goal: encode
 * >= 5 MB/s per core. Single-threaded by construction: the tokenizer is one per thread. */
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monosem/model.h"

static char *read_bible(size_t *len)
{
    FILE *p = popen("bible -l200 'Genesis 1:1-Revelation 22:21' 2>/dev/null", "r");
    if (!p) return NULL;
    size_t cap = 8 << 20, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n, p);
        if (got == 0) break;
        n += got;
    }
    pclose(p);
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    const char *vocab = argc > 2 ? argv[1] : "data/gpt2/encoder.json";
    const char *merges = argc > 2 ? argv[2] : "data/gpt2/vocab.bpe";
    ms_err err = {0};
    char *text = NULL;
    size_t len = 0;
    const char *src;
    if (argc > 3) {
        src = argv[3];
        if (ms_file_read_all(argv[3], &text, &len, &err) != MS_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
    } else {
        src = "bible 'Genesis 1:1-Revelation 22:21' (bible-kjv)";
        text = read_bible(&len);
        if (!text || len < (1 << 20)) {
            fprintf(stderr, "bench_tokenizer: `bible` gave %zu bytes: install bible-kjv or pass TEXT\n", len);
            return 1;
        }
    }
    double t0 = bench_now();
    ms_tokenizer *tok = NULL;
    if (ms_tokenizer_load(&tok, vocab, merges, &err) != MS_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n(run scripts/fetch-gpt2-bpe data/gpt2, or pass VOCAB MERGES)\n", err.msg);
        return 1;
    }
    double t_load = bench_now() - t0;
    printf("bench_tokenizer: %s, %.2f MB, vocab %d (loaded in %.3f s), 1 thread\n", src, len / 1e6,
           ms_tokenizer_vocab_size(tok), t_load);

    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    t0 = bench_now();
    if (ms_tokenizer_encode(tok, text, len, &ids, &n, &cap, &err) != MS_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    double cold = bench_now() - t0;
    size_t n_tokens = n;
    double warm = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        n = 0;
        t0 = bench_now();
        ms_tokenizer_encode(tok, text, len, &ids, &n, &cap, &err);
        double dt = bench_now() - t0;
        if (dt < warm) warm = dt;
    }
    /* the cost of the cache-miss path alone: a fresh tokenizer on every pass would pay `cold` */
    char *out = NULL;
    size_t olen = 0, ocap = 0;
    double dec = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        olen = 0;
        t0 = bench_now();
        ms_tokenizer_decode(tok, ids, n_tokens, &out, &olen, &ocap, &err);
        double dt = bench_now() - t0;
        if (dt < dec) dec = dt;
    }
    int ok = olen == len && memcmp(out, text, len) == 0;

    /* pre-tokenizer alone, through the trainer's counter (PCRE2 + word hashing) */
    ms_bpe_counter *cnt = NULL;
    ms_bpe_counter_init(&cnt, &err);
    t0 = bench_now();
    ms_bpe_counter_add(cnt, text, len, &err);
    double count = bench_now() - t0;
    t0 = bench_now();
    ms_bpe_result res = {0};
    ms_status st = ms_bpe_train(cnt, 4000, "/tmp/bench_tokenizer_vocab.json", "/tmp/bench_tokenizer_merges.txt",
                                &res, &err);
    double train = bench_now() - t0;
    remove("/tmp/bench_tokenizer_vocab.json");
    remove("/tmp/bench_tokenizer_merges.txt");

    printf("  tokens: %zu (%.2f bytes/token); decode(encode(x)) == x: %s\n", n_tokens, (double)len / n_tokens,
           ok ? "yes" : "NO");
    bench_report("encode cold (empty word cache), MB/s/core", len / 1e6 / cold, "MB/s");
    bench_report("encode warm (best of 5), MB/s/core", len / 1e6 / warm, "MB/s");
    bench_report("encode warm, tokens/s/core", n_tokens / warm, "tokens/s");
    bench_report("goal 5 MB/s/core: cold / goal", len / 1e6 / cold / 5.0, "x");
    bench_report("pre-tokenize + count words, MB/s", len / 1e6 / count, "MB/s");
    bench_report("decode (best of 5), MB/s", len / 1e6 / dec, "MB/s");
    if (st == MS_OK)
        printf("  trainer: %zu distinct pre-tokens, %lld merges learned in %.2f s (vocab %d)\n",
               ms_bpe_counter_distinct(cnt), (long long)res.n_merges, train, res.vocab_size);
    else
        printf("  trainer: %s\n", err.msg);
    ms_bpe_counter_free(cnt);
    free(out);
    free(ids);
    ms_tokenizer_free(tok);
    free(text);
    return ok ? 0 : 1;
}
