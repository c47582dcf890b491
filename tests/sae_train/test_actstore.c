/* Unit tests of the activations store (serial writer/reader, resume, completeness) and of the
 * shuffled data-parallel row stream (rank-count independence, coverage, exact resume, skip). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "monosem/io.h"

static char g_tmp[512];

static const char *tmp_path(const char *name)
{
    static char buf[8][768];
    static int k;
    k = (k + 1) % 8;
    const char *t = getenv("MS_TEST_TMP");
    snprintf(g_tmp, sizeof g_tmp, "%s", t ? t : "/tmp");
    ms_mkdirs(g_tmp, NULL);
    snprintf(buf[k], sizeof buf[k], "%s/actstore_%s", g_tmp, name);
    return buf[k];
}

/* Row i of the test file holds (i, i+0.5, -i, ...) so any row read back names itself. */
static float row_val(int64_t i, int64_t j)
{
    return (float)(j % 3 == 0 ? i : j % 3 == 1 ? i + 0.5 : -(double)i);
}

static void fill_meta(ms_actmeta *m, int64_t n, int64_t d, int dtype, int64_t shards)
{
    memset(m, 0, sizeof *m);
    m->n_rows = n;
    m->d = d;
    m->n_contexts = 4;
    m->context = 8;
    m->n_shards = shards;
    m->dtype = dtype;
    m->seed = 7;
    m->chunk_rows = 16;
    snprintf(m->hook, sizeof m->hook, "blocks.0.mlp.hook_post");
    snprintf(m->model_sha256, sizeof m->model_sha256, "%064d", 1);
    snprintf(m->config_hash, sizeof m->config_hash, "0123456789abcdef");
    m->config_text = "sae: {d_sae: 8}\n";
}

/* Writes a complete file of n rows (f32) where row i is row_val(i, .); rows in bad[] get NaN. */
static void write_file(const char *path, int64_t n, int64_t d, const int64_t *bad, int n_bad)
{
    ms_actmeta m;
    fill_meta(&m, n, d, MS_DTYPE_F32, 1);
    ms_err err = {0};
    ms_actwriter *w;
    assert_int_equal(ms_actwriter_create(&w, path, &m, NULL, &err), MS_OK);
    float *x = malloc((size_t)(n * d) * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) x[i * d + j] = row_val(i, j);
    for (int k = 0; k < n_bad; k++) x[bad[k] * d + 1] = k % 2 ? INFINITY : NAN;
    assert_int_equal(ms_actwriter_write_rows(w, 0, n, x, NULL, &err), MS_OK);
    assert_int_equal(ms_actwriter_mark_done(w, 0, &err), MS_OK);
    assert_int_equal(ms_actwriter_finalize(w, &err), MS_OK);
    free(x);
}

static void test_half_roundtrip(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ms_half_to_float((uint16_t)h);
        if (isnan(f)) {
            assert_true(isnan(ms_half_to_float(ms_half_from_float(f))));
            continue;
        }
        assert_int_equal(ms_half_from_float(f), h);
    }
    /* rounding: halfway between 1 and 1+2^-10 goes to even (1); just above goes up */
    assert_int_equal(ms_half_from_float(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(ms_half_from_float(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    assert_int_equal(ms_half_from_float(65520.0f), 0x7c00); /* rounds past max half: inf */
    assert_int_equal(ms_half_from_float(65519.0f), 0x7bff);
    assert_int_equal(ms_half_from_float(0x1p-25f), 0);      /* tie to even (0) */
    assert_int_equal(ms_half_from_float(0x1.8p-25f), 1);    /* smallest subnormal */
}

/* The vector conversions (F16C when the CPU has it) equal the scalar ones bit for bit: every
 * half, and floats around every half (exact, ties, between, overflow, NaN payloads). */
static void test_half_vector_equals_scalar(void **state)
{
    (void)state;
    enum { N = 65536 * 4 };
    uint16_t *h = malloc(N * sizeof *h), *h2 = malloc(N * sizeof *h2);
    float *f = malloc(N * sizeof *f);
    uint32_t *bits = malloc(N * sizeof *bits);
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    ms_half_to_float_n(f, h, 65536);
    for (uint32_t i = 0; i < 65536; i++) {
        float s = ms_half_to_float((uint16_t)i);
        assert_memory_equal(&s, &f[i], 4);
    }
    /* floats: each half's value, and its bit pattern +-1 ulp of a tie (mantissa bit 12) */
    for (uint32_t i = 0; i < 65536; i++) {
        float v = ms_half_to_float((uint16_t)i);
        uint32_t u;
        memcpy(&u, &v, 4);
        bits[4 * i] = u;
        bits[4 * i + 1] = u + 0x1000u;      /* exactly halfway to the next half (normals) */
        bits[4 * i + 2] = u + 0x1001u;      /* just above halfway */
        bits[4 * i + 3] = u ^ 0x00400001u;  /* quiet-bit / payload flips, arbitrary values */
    }
    memcpy(f, bits, N * sizeof *f);
    ms_half_from_float_n(h2, f, N);
    for (uint32_t i = 0; i < N; i++) {
        uint16_t s = ms_half_from_float(f[i]);
        if (s != h2[i]) fail_msg("float bits 0x%08x: vector 0x%04x, scalar 0x%04x", bits[i], h2[i], s);
    }
    free(h), free(h2), free(f), free(bits);
}

static void test_store_roundtrip_and_resume(void **state)
{
    (void)state;
    const char *path = tmp_path("rt.h5");
    const int64_t n = 100, d = 5;
    ms_actmeta m;
    fill_meta(&m, n, d, MS_DTYPE_F16, 2);
    ms_err err = {0};
    ms_actwriter *w;
    assert_int_equal(ms_actwriter_create(&w, path, &m, NULL, &err), MS_OK);
    float x[100 * 5];
    int32_t idx[100 * 2], tok[4 * 8];
    for (int i = 0; i < n * d; i++) x[i] = (float)i * 0.37f - 40.0f;
    for (int i = 0; i < n; i++) idx[2 * i] = i / 25, idx[2 * i + 1] = i % 8;
    for (int i = 0; i < 32; i++) tok[i] = 1000 + i;
    assert_int_equal(ms_actwriter_write_rows(w, 0, 50, x, idx, &err), MS_OK);
    assert_int_equal(ms_actwriter_write_tokens(w, 0, 4, tok, &err), MS_OK);
    assert_int_equal(ms_actwriter_mark_done(w, 0, &err), MS_OK);
    ms_actwriter_close(w); /* "crash" after one shard */

    /* an incomplete file is refused by the reader, with the shard count in the message */
    ms_actfile *f = NULL;
    assert_int_equal(ms_actfile_open(&f, path, NULL, &err), MS_ERR_STATE);
    assert_non_null(strstr(err.msg, "incomplete"));
    assert_non_null(strstr(err.msg, "1 of 2 shards"));
    ms_err_clear(&err);

    /* resume with a different hook is refused; with the same meta reports shard 0 done */
    uint8_t done[2] = {9, 9};
    ms_actmeta other = m;
    snprintf(other.hook, sizeof other.hook, "blocks.0.hook_resid_post");
    assert_int_equal(ms_actwriter_resume(&w, path, &other, done, NULL, &err), MS_ERR_STATE);
    assert_non_null(strstr(err.msg, "hook"));
    ms_err_clear(&err);
    if (ms_actwriter_resume(&w, path, &m, done, NULL, &err) != MS_OK) fail_msg("%s", err.msg);
    assert_int_equal(done[0], 1);
    assert_int_equal(done[1], 0);
    /* finalize with a shard missing fails and leaves the file incomplete */
    assert_int_equal(ms_actwriter_finalize(w, &err), MS_ERR_STATE);
    ms_err_clear(&err);
    assert_int_equal(ms_actwriter_resume(&w, path, &m, done, NULL, &err), MS_OK);
    assert_int_equal(ms_actwriter_write_rows(w, 50, 50, x + 50 * d, idx + 100, &err), MS_OK);
    assert_int_equal(ms_actwriter_mark_done(w, 1, &err), MS_OK);
    assert_int_equal(ms_actwriter_finalize(w, &err), MS_OK);

    ms_actmeta got;
    assert_int_equal(ms_actfile_open(&f, path, &got, &err), MS_OK);
    assert_int_equal(got.n_rows, n);
    assert_int_equal(got.d, d);
    assert_int_equal(got.dtype, MS_DTYPE_F16);
    assert_int_equal(got.chunk_rows, 16);
    assert_string_equal(got.hook, m.hook);
    assert_string_equal(got.config_text, m.config_text);
    float y[100 * 5];
    assert_int_equal(ms_actfile_read(f, 0, n, y, &err), MS_OK);
    for (int i = 0; i < n * d; i++)
        assert_int_equal(ms_half_from_float(y[i]), ms_half_from_float(x[i])); /* exact f16 */
    int32_t idx2[200], tok2[32];
    assert_int_equal(ms_actfile_read_index(f, 0, n, idx2, &err), MS_OK);
    assert_memory_equal(idx, idx2, sizeof idx);
    assert_int_equal(ms_actfile_read_tokens(f, 0, 4, tok2, &err), MS_OK);
    assert_memory_equal(tok, tok2, sizeof tok);
    /* reads outside the file are usage errors naming the range */
    assert_int_equal(ms_actfile_read(f, 90, 20, y, &err), MS_ERR_USAGE);
    assert_non_null(strstr(err.msg, "[90,110)"));
    ms_actfile_close(f);
    /* a complete file cannot be "resumed" */
    ms_err_clear(&err);
    assert_int_equal(ms_actwriter_resume(&w, path, &m, done, NULL, &err), MS_ERR_STATE);
}

/* Reads `steps` global batches for `size` ranks; out[(step*B + pos)] = row id. */
static void run_stream(const char *path, const ms_actstream_opts *o, int size, int64_t steps,
                       int64_t *out, const ms_streampos *start, ms_streampos *end)
{
    ms_err err = {0};
    ms_actfile *f;
    assert_int_equal(ms_actfile_open(&f, path, NULL, &err), MS_OK);
    int64_t d = ms_actfile_meta(f)->d;
    for (int r = 0; r < size; r++) {
        ms_actstream *s;
        assert_int_equal(ms_actstream_open(&s, f, o, r, size, start, &err), MS_OK);
        int64_t lo, hi;
        ms_shard_range(o->batch, r, size, &lo, &hi);
        assert_int_equal(ms_actstream_local_rows(s), hi - lo);
        float *x = malloc((size_t)((hi - lo) * d) * sizeof *x);
        for (int64_t k = 0; k < steps; k++) {
            ms_status st = ms_actstream_next(s, x, &err);
            if (st) fail_msg("stream: %s", err.msg);
            for (int64_t i = 0; i < hi - lo; i++) {
                int64_t id = (int64_t)x[i * d];
                for (int64_t j = 0; j < d; j++) assert_true(x[i * d + j] == row_val(id, j));
                out[k * o->batch + lo + i] = id;
            }
        }
        ms_streampos p = ms_actstream_pos(s);
        if (end && r == 0) *end = p;
        if (end && r > 0) assert_memory_equal(&p, end, sizeof p); /* same on every rank */
        free(x);
        ms_actstream_close(s);
    }
    ms_actfile_close(f);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_stream_ranks_coverage_resume(void **state)
{
    (void)state;
    const char *path = tmp_path("stream.h5");
    const int64_t n = 1003, d = 3, B = 59; /* partial last block, batches straddle windows */
    write_file(path, n, d, NULL, 0);
    ms_actstream_opts o = {.batch = B, .block_rows = 0, .window_rows = 100, .shuffle = true,
                           .skip_nonfinite = false, .repeat = false, .seed = 42};
    const int64_t steps = n / B; /* 17 batches = 1003 rows: exactly one epoch */
    int64_t *ref = malloc((size_t)(steps * B) * sizeof *ref);
    int64_t *got = malloc((size_t)(steps * B) * sizeof *got);
    run_stream(path, &o, 1, steps, ref, NULL, NULL);
    /* one epoch without repetition: every row exactly once */
    memcpy(got, ref, (size_t)(steps * B) * sizeof *got);
    qsort(got, (size_t)(steps * B), sizeof *got, cmp_i64);
    for (int64_t i = 0; i < steps * B; i++) assert_int_equal(got[i], i);
    /* shuffled: not file order */
    int64_t in_order = 0;
    for (int64_t i = 0; i < steps * B; i++) in_order += ref[i] == i;
    assert_true(in_order < 50);
    /* 2, 3 and 4 ranks: the same rows at the same stream positions */
    for (int size = 2; size <= 4; size++) {
        memset(got, 0xff, (size_t)(steps * B) * sizeof *got);
        run_stream(path, &o, size, steps, got, NULL, NULL);
        assert_memory_equal(ref, got, (size_t)(steps * B) * sizeof *got);
    }
    /* resume after 5 steps with another rank count gives the uninterrupted stream */
    ms_streampos mid;
    run_stream(path, &o, 3, 5, got, NULL, &mid);
    assert_int_equal(mid.next, 5 * B);
    run_stream(path, &o, 2, steps - 5, got + 5 * B, &mid, NULL);
    assert_memory_equal(ref, got, (size_t)(steps * B) * sizeof *got);
    /* another seed, another order */
    o.seed = 43;
    run_stream(path, &o, 1, steps, got, NULL, NULL);
    assert_true(memcmp(ref, got, (size_t)(steps * B) * sizeof *got) != 0);
    /* shuffle off: file order */
    o.shuffle = false;
    run_stream(path, &o, 2, steps, got, NULL, NULL);
    for (int64_t i = 0; i < steps * B; i++) assert_int_equal(got[i], i);
    /* past the end without repetition: a clear error; with repetition: epoch 1 reshuffled */
    o.shuffle = true;
    ms_err err = {0};
    ms_actfile *f;
    assert_int_equal(ms_actfile_open(&f, path, NULL, &err), MS_OK);
    ms_actstream *s;
    assert_int_equal(ms_actstream_open(&s, f, &o, 0, 1, NULL, &err), MS_OK);
    float *x = malloc((size_t)(B * d) * sizeof *x);
    for (int64_t k = 0; k < steps; k++) assert_int_equal(ms_actstream_next(s, x, &err), MS_OK);
    assert_int_equal(ms_actstream_next(s, x, &err), MS_ERR_STATE);
    assert_non_null(strstr(err.msg, "end of the data"));
    ms_actstream_close(s);
    ms_err_clear(&err);
    o.repeat = true;
    assert_int_equal(ms_actstream_open(&s, f, &o, 0, 1, NULL, &err), MS_OK);
    int64_t e0[59], e1[59];
    for (int64_t k = 0; k <= steps; k++) {
        assert_int_equal(ms_actstream_next(s, x, &err), MS_OK);
        for (int64_t i = 0; i < B; i++) (k == 0 ? e0 : e1)[i] = (int64_t)x[i * d];
    }
    assert_int_equal(ms_actstream_pos(s).epoch, 1);
    assert_true(memcmp(e0, e1, sizeof e0) != 0); /* epoch 1 has its own order */
    assert_true(ms_actstream_bytes_read(s) >= (steps + 1) * B * d * 4);
    ms_actstream_close(s);
    ms_actfile_close(f);
    free(x);
    free(ref);
    free(got);
}

static void test_stream_nonfinite(void **state)
{
    (void)state;
    const char *path = tmp_path("nan.h5");
    const int64_t n = 200, d = 4, B = 20;
    const int64_t bad[3] = {17, 18, 150};
    write_file(path, n, d, bad, 3);
    ms_actstream_opts o = {.batch = B, .window_rows = 64, .shuffle = false, .seed = 1};
    ms_err err = {0};
    ms_actfile *f;
    assert_int_equal(ms_actfile_open(&f, path, NULL, &err), MS_OK);
    ms_actstream *s;
    float x[20 * 4];
    assert_int_equal(ms_actstream_open(&s, f, &o, 0, 1, NULL, &err), MS_OK);
    assert_int_equal(ms_actstream_next(s, x, &err), MS_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "rows 17..18"));
    ms_actstream_close(s);
    ms_err_clear(&err);
    /* skipping: the bad rows never appear, the count is reported and rank-agreed */
    o.skip_nonfinite = true;
    o.shuffle = true;
    const int64_t steps = (n - 3) / B;
    int64_t ref[9 * 20], got[9 * 20];
    run_stream(path, &o, 1, steps, ref, NULL, NULL);
    ms_streampos p2;
    run_stream(path, &o, 2, steps, got, NULL, &p2);
    assert_memory_equal(ref, got, sizeof ref);
    for (int64_t i = 0; i < steps * B; i++)
        assert_true(ref[i] != 17 && ref[i] != 18 && ref[i] != 150);
    assert_int_equal(ms_actstream_open(&s, f, &o, 0, 1, NULL, &err), MS_OK);
    for (int64_t k = 0; k < steps; k++) assert_int_equal(ms_actstream_next(s, x, &err), MS_OK);
    ms_streampos p = ms_actstream_pos(s);
    assert_true(p.skipped <= 3);
    qsort(ref, (size_t)(steps * B), sizeof *ref, cmp_i64);
    for (int64_t i = 1; i < steps * B; i++) assert_true(ref[i] > ref[i - 1]); /* no repeats */
    ms_actstream_close(s);
    ms_actfile_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_roundtrip),
        cmocka_unit_test(test_half_vector_equals_scalar),
        cmocka_unit_test(test_store_roundtrip_and_resume),
        cmocka_unit_test(test_stream_ranks_coverage_resume),
        cmocka_unit_test(test_stream_nonfinite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
