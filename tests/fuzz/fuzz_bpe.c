/* tests/fuzz/fuzz_bpe.c: libFuzzer harness for the BPE encoder (pre-tokenizer regex, merge
 * kernels, word cache). A tokenizer is learned once from a built-in text (no file needed); each
 * input is encoded whole and in two parts at an arbitrary byte: every id in range and decoding
 * gives the input back byte for byte (byte-level BPE is lossless for any bytes). */
#include "fuzz_util.h"
#include "monosem/model.h"

static ms_tokenizer *g_tok;

static const char train_text[] =
    "In the beginning God created the heaven and the earth. And the earth was without form, and void;\n"
    "and darkness was upon the face of the deep. Call me Ishmael. Some years ago - never mind how long\n"
    "precisely - having little or no money in my purse, and nothing particular to interest me on shore,\n"
    "I thought I would sail about a little and see the watery part of the world. 1234 5678 90 ... !!!\n"
    "It's the whale's; they'll we've I'd you're   spaces\t\ttabs\r\nCRLF caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac "
    "\xf0\x9f\x90\xb3 emoji <|endoftext|> def f(x): return x**2  # code\n";

static void setup(void)
{
    ms_bpe_counter *c = NULL;
    ms_err err = {0};
    char vp[300], mp[300];
    snprintf(vp, sizeof vp, "%s/vocab.json", fz_tmpdir());
    snprintf(mp, sizeof mp, "%s/merges.txt", fz_tmpdir());
    ms_bpe_result res;
    if (ms_bpe_counter_init(&c, &err) || ms_bpe_counter_add(c, train_text, sizeof train_text - 1, &err) ||
        ms_bpe_train(c, 200, vp, mp, &res, &err) || ms_tokenizer_load(&g_tok, vp, mp, &err)) {
        fprintf(stderr, "fuzz_bpe: cannot build the tokenizer: %s\n", err.msg);
        abort();
    }
    ms_bpe_counter_free(c);
}

static void roundtrip(const uint8_t *data, size_t size, size_t cut)
{
    int32_t *ids = NULL;
    size_t n = 0, cap = 0, len = 0, ocap = 0;
    char *out = NULL;
    ms_err err = {0};
    if (ms_tokenizer_encode(g_tok, (const char *)data, cut, &ids, &n, &cap, &err) != MS_OK ||
        ms_tokenizer_encode(g_tok, (const char *)data + cut, size - cut, &ids, &n, &cap, &err) != MS_OK)
        abort();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= ms_tokenizer_vocab_size(g_tok)) abort();
    if (ms_tokenizer_decode(g_tok, ids, n, &out, &len, &ocap, &err) != MS_OK) abort();
    if (len != size || memcmp(out, data, size) != 0) abort();
    free(ids);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_tok) setup();
    roundtrip(data, size, size);
    if (size > 1) roundtrip(data, size, data[0] % size);
    return 0;
}
