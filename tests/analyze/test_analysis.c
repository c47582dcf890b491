/* Unit tests of the analysis statistics (libsae/analysis_*.c): bounded sets against a sort,
 * merges of split streams in any order equal the unsplit result, measures and summaries on
 * hand-made units, and the scratch file of pass 1's codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analyze_spill.h"
#include "monosem/units.h"

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* keys drawn from a small range so ties (broken by position) happen */
static uint64_t key_of(uint64_t s, int64_t p) { return ms_analysis_hash(s, 0, p) % 50; }

static void test_topk_matches_sort(void **state)
{
    (void)state;
    ms_topk t;
    ms_err e = {0};
    assert_int_equal(ms_topk_init(&t, 3, 7, 2, &e), MS_OK);
    int64_t N = 500;
    for (int64_t p = 0; p < N; p++)
        for (int64_t s = 0; s < 3; s++) {
            ms_topk_entry *en = ms_topk_push(&t, s, key_of((uint64_t)s, p), p);
            if (en) ms_topk_entry_tokens(&t, en)[1] = (int32_t)p; /* payload travels with it */
        }
    ms_topk_sort(&t);
    for (int64_t s = 0; s < 3; s++) {
        uint64_t *all = malloc((size_t)N * sizeof *all);
        for (int64_t p = 0; p < N; p++) all[p] = key_of((uint64_t)s, p) << 32 | (uint64_t)p;
        qsort(all, (size_t)N, sizeof *all, cmp_u64);
        assert_int_equal(t.n[s], 7);
        for (int i = 0; i < 7; i++) {
            ms_topk_entry *en = ms_topk_at(&t, s, i);
            assert_int_equal(en->key, all[i] >> 32);
            assert_int_equal(en->pos, (int64_t)(all[i] & 0xffffffffu));
            assert_int_equal(ms_topk_entry_tokens(&t, en)[1], en->pos);
        }
        free(all);
    }
    ms_topk_free(&t);
}

/* three "ranks" take interleaved blocks of the stream; merging in any order gives the unsplit set */
static void test_merge_any_order(void **state)
{
    (void)state;
    ms_err e = {0};
    ms_topk whole, part[3];
    assert_int_equal(ms_topk_init(&whole, 4, 5, 1, &e), MS_OK);
    for (int r = 0; r < 3; r++) assert_int_equal(ms_topk_init(&part[r], 4, 5, 1, &e), MS_OK);
    for (int64_t p = 0; p < 300; p++)
        for (int64_t s = 0; s < 4; s++) {
            uint64_t k = key_of((uint64_t)s + 9, p);
            ms_topk_push(&whole, s, k, p);
            ms_topk_push(&part[(p / 17) % 3], s, k, p);
        }
    ms_topk_sort(&whole);
    size_t item = (size_t)5 * whole.entry_bytes;
    int orders[2][3] = {{0, 1, 2}, {2, 0, 1}};
    for (int o = 0; o < 2; o++) {
        unsigned char *acc = malloc(4 * item);
        memcpy(acc, part[orders[o][0]].mem, 4 * item);
        for (int j = 1; j < 3; j++) ms_topk_merge(&whole, acc, part[orders[o][j]].mem, 4, item);
        assert_memory_equal(acc, whole.mem, 4 * item);
        free(acc);
    }
    ms_topk_free(&whole);
    for (int r = 0; r < 3; r++) ms_topk_free(&part[r]);
}

static void test_key_act_orders(void **state)
{
    (void)state;
    assert_true(ms_topk_key_act(2.0f) < ms_topk_key_act(1.5f));
    assert_true(ms_topk_key_act(1e-30f) > ms_topk_key_act(1e-29f));
    assert_true(ms_analysis_hash(1, 2, 3) != ms_analysis_hash(1, 3, 2));
}

/* unit 0 fires on tokens 5,5,7 (masses 3,2,1): share 5/6, eff exp(H(5/6,1/6)); unit 1 dead */
static void test_measures(void **state)
{
    (void)state;
    ms_err e = {0};
    ms_analysis a;
    ms_analysis_opts o = {.top_k = 4, .window = 1, .intervals = 2, .interval_samples = 1, .hist_bins = 2,
                          .context = 4, .seed = 1};
    assert_int_equal(ms_analysis_init(&a, 2, &o, &e), MS_OK);
    /* one context of 4 tokens: 5 5 7 9; unit 0 activations 3 2 1 0, unit 1 all zero */
    float acts[8] = {3, 0, 2, 0, 1, 0, 0, 0};
    int32_t tok[4] = {5, 5, 7, 9};
    ms_analysis_scan_top(&a, acts, tok, 1, 0);
    ms_topk_sort(&a.top);
    int32_t logit_ids[2 * 2] = {7, 1, 0, 0}; /* unit 0 promotes 7: next tokens 5,7,9 -> 1 of 3 */
    int32_t top[2];
    float share[2], eff[2], agree[2];
    assert_int_equal(ms_analysis_measures(&a, logit_ids, 2, top, share, eff, agree, &e), MS_OK);
    assert_int_equal(top[0], 5);
    assert_float_equal(share[0], 5.0 / 6.0, 1e-6);
    double p = 5.0 / 6.0, q = 1.0 / 6.0;
    assert_float_equal(eff[0], exp(-(p * log(p) + q * log(q))), 1e-5);
    assert_float_equal(agree[0], 1.0 / 3.0, 1e-6);
    assert_int_equal(top[1], -1);
    assert_true(isnan(share[1]) && isnan(eff[1]) && isnan(agree[1]));
    assert_int_equal(a.count[0], 3);
    assert_int_equal(a.sum_fx[0], 6 * 16777216LL);
    /* window of the top entry (position 0): [-1, 5, 5] tokens, [0, 3, 2] activations */
    ms_topk_entry *en = ms_topk_at(&a.top, 0, 0);
    assert_int_equal(en->pos, 0);
    assert_int_equal(ms_topk_entry_tokens(&a.top, en)[0], -1);
    assert_int_equal(ms_topk_entry_tokens(&a.top, en)[2], 5);
    assert_float_equal(ms_topk_entry_acts(&a.top, en)[1], 3.0, 0);
    assert_float_equal(ms_topk_entry_acts(&a.top, en)[2], 2.0, 0);
    ms_analysis_free(&a);
}

static void test_summary(void **state)
{
    (void)state;
    ms_err e = {0};
    float v[6] = {0.1f, NAN, 0.9f, 0.5f, 0.3f, 0.7f};
    int64_t h[4];
    ms_measure_summary s;
    assert_int_equal(ms_measure_summarize(v, 6, 0, 1, 4, h, &s, &e), MS_OK);
    assert_int_equal(s.n, 5);
    assert_float_equal(s.median, 0.5, 1e-6);
    assert_float_equal(s.q25, 0.3, 1e-6);
    assert_float_equal(s.q75, 0.7, 1e-6);
    assert_int_equal(h[0], 1);
    assert_int_equal(h[1], 1);
    assert_int_equal(h[2], 2);
    assert_int_equal(h[3], 1);
}

/* the scratch file gives back exactly the rows written, zeros included, in order */
/* The ultralow cluster is a low mode far below the typical density (the paper's), never the
 * majority: 20% of units at ~1e-6 among 80% at ~1e-2 form one; 80% at ~1e-4 do not. */
static void test_ultralow_cut(void **state)
{
    (void)state;
    enum { U = 100 };
    const int64_t tokens = 100000000;
    int64_t count[U];
    for (int u = 0; u < U; u++) count[u] = u < 20 ? 100 + u : 1000000 + 1000 * u; /* 1e-6 vs 1e-2 */
    double cut = ms_ultralow_cut(count, U, tokens);
    assert_true(cut > 1.19e-6 && cut < 1e-2);
    int below = 0;
    for (int u = 0; u < U; u++) below += (double)count[u] / (double)tokens < cut;
    assert_int_equal(below, 20);
    for (int u = 0; u < U; u++) count[u] = u < 80 ? 10000 + u : 1000000 + 1000 * u; /* 80% at 1e-4 */
    assert_true(ms_ultralow_cut(count, U, tokens) == 0.0);
    count[0] = 0; /* dead units do not count */
    assert_true(ms_ultralow_cut(count, U, tokens) == 0.0);
}

static void test_spill_round_trip(void **state)
{
    (void)state;
    ms_err e = {0};
    app_spill sp;
    assert_int_equal(app_spill_init(&sp, NULL, 5, &e), MS_OK);
    float rows[3 * 5] = {0, 1.5f, 0, 0, -2.0f, 0, 0, 0, 0, 0, 3e-30f, 0, 0, 7.0f, 1e30f};
    assert_int_equal(app_spill_write(&sp, rows, 2, &e), MS_OK);
    assert_int_equal(app_spill_write(&sp, rows + 10, 1, &e), MS_OK);
    assert_int_equal(sp.bytes, 3 * 4 + 8 * 5);
    assert_int_equal(app_spill_rewind(&sp, &e), MS_OK);
    float back[3 * 5];
    memset(back, 0xff, sizeof back);
    assert_int_equal(app_spill_read(&sp, back, 1, &e), MS_OK);
    assert_int_equal(app_spill_read(&sp, back + 5, 2, &e), MS_OK);
    assert_memory_equal(back, rows, sizeof rows);
    assert_int_not_equal(app_spill_read(&sp, back, 1, &e), MS_OK); /* past the end: an error */
    app_spill_free(&sp);
    app_spill bad;
    assert_int_equal(app_spill_init(&bad, "/proc/version/x", 5, &e), MS_ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topk_matches_sort), cmocka_unit_test(test_merge_any_order),
        cmocka_unit_test(test_key_act_orders),    cmocka_unit_test(test_measures),
        cmocka_unit_test(test_summary),           cmocka_unit_test(test_spill_round_trip),
        cmocka_unit_test(test_ultralow_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
