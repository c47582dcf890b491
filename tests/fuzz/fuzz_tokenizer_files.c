/* tests/fuzz/fuzz_tokenizer_files.c: libFuzzer harness for the tokenizer file loaders
 * (vocab.json + merges.txt, libmodel/tokenizer.c). Input = vocab bytes, "\n@@\n", merges bytes.
 * An error is one line; a loaded tokenizer encodes and decodes text back byte for byte. */
#include "fuzz_util.h"
#include "monosem/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *a, *b;
    size_t na, nb;
    fz_split(data, size, &a, &na, &b, &nb);
    const char *vp = fz_write(0, "vocab.json", a, na);
    const char *mp = fz_write(1, "merges.txt", b, nb);
    ms_tokenizer *tok = NULL;
    ms_err err = {0};
    ms_status st = ms_tokenizer_load(&tok, vp, mp, &err);
    fz_check_err(st, &err);
    if (st != MS_OK) return 0;
    static const char text[] = "Hello, world! The whale's  white\n\n\tline 1234 \xe2\x80\x94 caf\xc3\xa9 \xff\xfe";
    int32_t *ids = NULL;
    size_t n = 0, cap = 0, len = 0, ocap = 0;
    char *out = NULL;
    if (ms_tokenizer_encode(tok, text, sizeof text - 1, &ids, &n, &cap, &err) != MS_OK) abort();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= ms_tokenizer_vocab_size(tok)) abort();
    if (ms_tokenizer_decode(tok, ids, n, &out, &len, &ocap, &err) != MS_OK) abort();
    if (len != sizeof text - 1 || memcmp(out, text, len) != 0) abort(); /* lossless */
    free(ids);
    free(out);
    ms_tokenizer_free(tok);
    return 0;
}
