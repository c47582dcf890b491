/* Unit tests of the generation plan: shard ranges, row offsets, seeded sample positions, gather. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "generate_plan.h"

static void test_plan_sizes(void **state)
{
    (void)state;
    app_gen_plan p;
    app_gen_plan_init(&p, 1000, 0, 128, 64, 256);
    assert_int_equal(p.n_contexts, 1000);
    assert_int_equal(p.n_shards, 4);
    assert_int_equal(p.n_rows, 64000);
    /* tokens rounds up to whole contexts, capped at what the corpus has */
    app_gen_plan_init(&p, 1000, 129, 128, 64, 256);
    assert_int_equal(p.n_contexts, 2);
    assert_int_equal(p.n_shards, 1);
    app_gen_plan_init(&p, 10, 1 << 30, 128, 4, 3);
    assert_int_equal(p.n_contexts, 10);
    assert_int_equal(p.n_shards, 4);
    app_gen_plan_init(&p, 0, 0, 128, 4, 3);
    assert_int_equal(p.n_contexts, 0);
    assert_int_equal(p.n_shards, 0);
}

static void test_shards_cover_once(void **state)
{
    (void)state;
    app_gen_plan p;
    app_gen_plan_init(&p, 1001, 0, 16, 4, 37);
    int *seen = calloc(1001, sizeof *seen);
    int64_t prev_end = 0;
    for (int64_t s = 0; s < p.n_shards; s++) {
        int64_t c0, c1;
        app_gen_shard_contexts(&p, s, &c0, &c1);
        assert_int_equal(c0, prev_end);
        assert_true(c1 > c0 && c1 - c0 <= 37);
        for (int64_t c = c0; c < c1; c++) seen[c]++;
        prev_end = c1;
    }
    assert_int_equal(prev_end, 1001);
    for (int c = 0; c < 1001; c++) assert_int_equal(seen[c], 1);
    free(seen);
}

static void test_positions(void **state)
{
    (void)state;
    enum { T = 128, K = 40 };
    int64_t scratch[T];
    int32_t a[K], b[K], c[K];
    int hist[T] = {0};
    for (int64_t ctx = 0; ctx < 2000; ctx++) {
        app_gen_sample_positions(a, T, K, 1234, ctx, scratch);
        for (int k = 0; k < K; k++) {
            assert_true(a[k] >= 0 && a[k] < T);
            if (k) assert_true(a[k] > a[k - 1]); /* distinct, ascending */
            hist[a[k]]++;
        }
    }
    /* uniform: each position picked ~2000*K/T = 625 times */
    for (int t = 0; t < T; t++) assert_true(hist[t] > 500 && hist[t] < 750);
    /* a pure function of (seed, ctx) */
    app_gen_sample_positions(a, T, K, 1234, 77, scratch);
    app_gen_sample_positions(b, T, K, 1234, 77, scratch);
    assert_memory_equal(a, b, sizeof a);
    app_gen_sample_positions(b, T, K, 1234, 78, scratch);
    app_gen_sample_positions(c, T, K, 1235, 77, scratch);
    assert_true(memcmp(a, b, sizeof a) != 0);
    assert_true(memcmp(a, c, sizeof a) != 0);
    /* K == T: every position */
    int32_t all[T];
    app_gen_sample_positions(all, T, T, 9, 3, scratch);
    for (int t = 0; t < T; t++) assert_int_equal(all[t], t);
}

static void test_gather(void **state)
{
    (void)state;
    enum { NB = 3, T = 16, D = 5, K = 4 };
    float act[NB * T * D], out[NB * K * D];
    uint16_t out16[NB * K * D];
    int32_t index16[NB * K * 2];
    int32_t index[NB * K * 2], pos[K];
    int64_t scratch[T];
    for (int i = 0; i < NB * T * D; i++) act[i] = (float)i;
    for (int i = 0; i < NB * T * D; i++) act[i] = (float)i * 0.37f - 3.0f;
    app_gen_gather(out, MS_DTYPE_F32, index, act, NB, T, D, K, 42, 100, scratch);
    app_gen_gather(out16, MS_DTYPE_F16, index16, act, NB, T, D, K, 42, 100, scratch);
    assert_memory_equal(index, index16, sizeof index);
    for (int b = 0; b < NB; b++) {
        app_gen_sample_positions(pos, T, K, 42, 100 + b, scratch);
        for (int k = 0; k < K; k++) {
            int r = b * K + k;
            assert_int_equal(index[2 * r], 100 + b);
            assert_int_equal(index[2 * r + 1], pos[k]);
            for (int j = 0; j < D; j++) {
                assert_true(out[r * D + j] == act[(b * T + pos[k]) * D + j]);
                assert_int_equal(out16[r * D + j], ms_half_from_float(act[(b * T + pos[k]) * D + j]));
            }
        }
    }
}

/* the fast converter is bit-identical to the reference one: every float16 value and its
 * neighbours, rounding ties, subnormals, overflow, infinities, NaN, and random floats */
static void test_f2h(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    float *x = malloc(N * sizeof *x);
    uint16_t *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    size_t n = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ms_half_to_float((uint16_t)h);
        uint32_t u;
        memcpy(&u, &f, 4);
        for (int dlt = -2; dlt <= 2; dlt++) {
            uint32_t v = u + (uint32_t)(dlt * 4096); /* ties and near-ties between halves */
            memcpy(&x[n++], &v, 4);
        }
    }
    uint64_t s = 99;
    while (n < N) {
        uint32_t v = (uint32_t)ms_rng_next(&s);
        memcpy(&x[n++], &v, 4);
    }
    app_gen_f2h(a, x, N);
    ms_half_from_float_n(b, x, N);
    size_t bad = 0;
    for (size_t i = 0; i < N; i++) bad += a[i] != b[i]; /* NaN payloads included */
    assert_int_equal(bad, 0);
    free(x), free(a), free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_sizes),
        cmocka_unit_test(test_shards_cover_once),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_f2h),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
