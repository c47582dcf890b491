/* tests/fuzz/fuzz_tokens.c: libFuzzer harness for token shards and their manifest
 * (io/corpus.c). Byte 0 even: the rest is one shard file, opened and read whole. Odd: the rest
 * is manifest.json, "\n@@\n", the bytes of train-000000.bin; the train split is opened, read
 * whole and cut into contexts. Errors are one line; reads stay inside what was opened. */
#include "fuzz_util.h"

static void read_all_shard(const ms_tokshard *s)
{
    int32_t buf[256];
    ms_err err = {0};
    for (int64_t p = 0; p < s->count && p < (1 << 16); p += 256) {
        int64_t n = s->count - p < 256 ? s->count - p : 256;
        if (ms_tokshard_read(s, p, n, buf, &err) != MS_OK) {
            fz_check_err(MS_ERR_IO, &err);
            return;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    ms_err err = {0};
    if ((data[0] & 1) == 0) {
        const char *p = fz_write(0, "shard.bin", data + 1, size - 1);
        ms_tokshard s;
        memset(&s, 0, sizeof s);
        ms_status st = ms_tokshard_open(&s, p, &err);
        fz_check_err(st, &err);
        if (st == MS_OK) {
            if (s.count < 0 || (s.dtype_bytes != 2 && s.dtype_bytes != 4)) abort();
            read_all_shard(&s);
        }
        ms_tokshard_close(&s);
        return 0;
    }
    const uint8_t *a, *b;
    size_t na, nb;
    fz_split(data + 1, size - 1, &a, &na, &b, &nb);
    fz_write(0, "manifest.json", a, na);
    fz_write(1, "train-000000.bin", b, nb);
    ms_tokset ts;
    ms_status st = ms_tokset_open(&ts, fz_tmpdir(), "train", &err);
    fz_check_err(st, &err);
    if (st != MS_OK) return 0;
    if (ts.count < 0) abort();
    int32_t buf[65];
    for (int64_t p = 0; p < ts.count && p < (1 << 16); p += 64) {
        int64_t n = ts.count - p < 64 ? ts.count - p : 64;
        ms_err e = {0};
        if (ms_tokset_read(&ts, p, n, buf, &e) != MS_OK) {
            fz_check_err(MS_ERR_IO, &e);
            break;
        }
    }
    int64_t nc = ms_tokset_n_contexts(&ts, 16, true);
    for (int64_t i = 0; i < nc && i < 256; i++) {
        ms_err e = {0};
        if (ms_tokset_context(&ts, i, 16, true, buf, &e) != MS_OK) fz_check_err(MS_ERR_IO, &e);
    }
    ms_tokset_close(&ts);
    return 0;
}
