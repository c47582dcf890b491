/* Unit tests of io/rng.c: SplitMix64 against its published reference sequences, the mixer and
 * hash forms, the ms_rng stream and the seeded permutation pinned to the values the copies they
 * replaced produced (main at 4f9e895), and the permutation's properties. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "monosem/rng.h"

/* Vigna's splitmix64.c from state 0, and the sequence for seed 1234567 quoted with Java's
 * SplittableRandom (the same generator). */
static void test_next_reference(void **s)
{
    (void)s;
    const uint64_t from0[5] = {0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull, 0x06c45d188009454full,
                               0xf88bb8a8724c81ecull, 0x1b39896a51a8749bull};
    const uint64_t from1234567[5] = {6457827717110365317ull, 3203168211198807973ull,
                                     9817491932198370423ull, 4593380528125082431ull,
                                     16408922859458223821ull};
    uint64_t st = 0;
    for (int i = 0; i < 5; i++) assert_true(ms_rng_next(&st) == from0[i]);
    assert_true(st == 5 * MS_RNG_GAMMA);
    st = 1234567;
    for (int i = 0; i < 5; i++) assert_true(ms_rng_next(&st) == from1234567[i]);
}

/* hash(x) is the step's output for state x without the state; mix has no increment. */
static void test_mix_and_hash(void **s)
{
    (void)s;
    assert_true(ms_rng_mix(0) == 0); /* a bijection fixing 0: why callers spread inputs first */
    assert_true(ms_rng_mix(42) == 0xa759ea27d4727622ull);
    assert_true(ms_rng_hash(42) == 0xbdd732262feb6e95ull);
    for (uint64_t x = 0; x < 1000; x += 37) {
        uint64_t st = x;
        assert_true(ms_rng_hash(x) == ms_rng_next(&st));
        assert_true(ms_rng_hash(x) == ms_rng_mix(x + MS_RNG_GAMMA));
    }
}

/* The stream moved from libsae: same values as before the move, resumable from its state. */
static void test_stream(void **s)
{
    (void)s;
    ms_rng r;
    ms_rng_init(&r, 42, 7);
    assert_true(ms_rng_u64(&r) == 0xc9d25d552c3f15ecull);
    assert_true(ms_rng_u64(&r) == 0x8db3c1850cf84f30ull);
    assert_true(ms_rng_u64(&r) == 0x3a9b1fe96fa74badull);
    ms_rng_init(&r, 3, 3);
    assert_true(ms_rng_uniform(&r) == 0.072670990218205889); /* integer arithmetic: exact */
    assert_true(fabs(ms_rng_normal(&r) - -1.0610097127880325) < 1e-12); /* libm: within ulps */
    ms_rng saved = r;
    uint64_t a = ms_rng_u64(&r), b = ms_rng_u64(&r);
    assert_true(ms_rng_u64(&saved) == a && ms_rng_u64(&saved) == b);
    ms_rng o;
    ms_rng_init(&o, 3, 4);
    ms_rng_init(&r, 3, 3);
    assert_true(ms_rng_u64(&o) != ms_rng_u64(&r)); /* streams of one seed differ */
}

static void test_perm_pinned(void **s)
{
    (void)s;
    const int64_t want[10] = {2, 9, 8, 0, 7, 6, 3, 5, 4, 1};
    int64_t p[10];
    ms_rng_perm(p, 10, 5, 3, 1);
    assert_memory_equal(p, want, sizeof want);
}

/* Every n gives a permutation; the same key gives the same one; another key another one. */
static void test_perm_properties(void **s)
{
    (void)s;
    enum { N = 1000 };
    int64_t *p = malloc(N * sizeof *p), *q = malloc(N * sizeof *q);
    char *seen = malloc(N);
    assert_non_null(p);
    assert_non_null(q);
    assert_non_null(seen);
    for (int64_t n = 0; n <= N; n += (n < 10 ? 1 : 99)) {
        ms_rng_perm(p, n, 11, (uint64_t)n, 2);
        memset(seen, 0, N);
        for (int64_t i = 0; i < n; i++) {
            assert_true(p[i] >= 0 && p[i] < n);
            assert_int_equal(seen[p[i]], 0);
            seen[p[i]] = 1;
        }
        ms_rng_perm(q, n, 11, (uint64_t)n, 2);
        if (n > 0) assert_memory_equal(p, q, (size_t)n * sizeof *p);
    }
    ms_rng_perm(p, N, 11, 1, 2);
    ms_rng_perm(q, N, 11, 2, 2);
    assert_true(memcmp(p, q, N * sizeof *p) != 0);
    ms_rng_perm(q, N, 12, 1, 2);
    assert_true(memcmp(p, q, N * sizeof *p) != 0);
    free(p);
    free(q);
    free(seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_reference), cmocka_unit_test(test_mix_and_hash),
        cmocka_unit_test(test_stream),         cmocka_unit_test(test_perm_pinned),
        cmocka_unit_test(test_perm_properties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
