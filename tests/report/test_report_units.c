/* Unit tests of the report's C helpers: JSON strings stay valid whatever bytes a token holds
 * (apps/report_json.c), and the nearest-unit ranking (apps/report_nearest.c) orders by cosine
 * with ties to the lower id, for dense and identity dictionaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "report.h"

static void expect_str(const char *in, size_t n, const char *want)
{
    app_rbuf b = {0};
    app_rbuf_str(&b, in, n);
    assert_false(b.oom);
    assert_string_equal(b.p, want);
    app_rbuf_free(&b);
}

static void test_json_strings(void **state)
{
    (void)state;
    expect_str("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    expect_str("\n\t\x01\x7f", 4, "\"\\u000a\\u0009\\u0001\\u007f\"");
    expect_str("caf\xc3\xa9", 5, "\"caf\xc3\xa9\"");            /* valid 2-byte sequence kept */
    expect_str("\xe2\x82\xac", 3, "\"\xe2\x82\xac\"");           /* euro sign kept */
    expect_str("\xf0\x9f\x90\xb3", 4, "\"\xf0\x9f\x90\xb3\"");   /* 4-byte (whale emoji) kept */
    expect_str("\xe2\x80", 2, "\"\\ufffd\\ufffd\"");             /* truncated: each byte replaced */
    expect_str("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");             /* overlong */
    expect_str("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"");  /* UTF-16 surrogate */
    expect_str("\xff", 1, "\"\\ufffd\"");
    expect_str("\xe2\x80\xa8", 3, "\"\\u2028\"");                /* line separator escaped for JS */
    expect_str("a\0b", 3, "\"a\\u0000b\"");                      /* embedded NUL */
}

static void test_json_numbers(void **state)
{
    (void)state;
    app_rbuf b = {0};
    app_rbuf_num(&b, NAN);
    app_rbuf_puts(&b, ",");
    app_rbuf_num(&b, INFINITY);
    app_rbuf_puts(&b, ",");
    app_rbuf_num(&b, 0.000123456789);
    app_rbuf_puts(&b, ",");
    app_rbuf_num(&b, -2.5);
    app_rbuf_puts(&b, ",");
    app_rbuf_num(&b, 0.0);
    app_rbuf_puts(&b, ",");
    app_rbuf_num(&b, -0.0);
    app_rbuf_puts(&b, ",");
    app_rbuf_int(&b, 0);
    app_rbuf_puts(&b, ",");
    app_rbuf_int(&b, -1);
    app_rbuf_puts(&b, ",");
    app_rbuf_int(&b, INT64_MIN);
    app_rbuf_puts(&b, ",");
    app_rbuf_int(&b, 1234567890123);
    assert_string_equal(b.p, "null,null,0.00012346,-2.5,0,0,0,-1,-9223372036854775808,1234567890123");
    app_rbuf_free(&b);
}

static void test_nearest(void **state)
{
    (void)state;
    /* a: 2 directions in 3-D; b: 4 directions (two identical, so a tie) */
    float a[] = {1, 0, 0, 0, 3, 4}; /* (2, 3) */
    float b[] = {0, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 1}; /* (4, 3) */
    app_rdict da = {a, 2, 3}, db = {b, 4, 3};
    app_rdict_normalize(&da);
    app_rdict_normalize(&db);
    assert_float_equal(a[4], 0.6f, 1e-6);
    int32_t ids[2 * 5];
    float cos[2 * 5], work[2 * 4];
    app_rdict_nearest(ids, cos, &da, 0, 2, &db, 5, work);
    /* row 0 = e0: cos 0.707 with b1 and b2 (tie: 1 before 2), then 0 for b0 and b3 */
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_int_equal(ids[2], 0);
    assert_int_equal(ids[3], 3);
    assert_int_equal(ids[4], -1); /* only 4 units in b */
    assert_true(isnan(cos[4]));
    assert_float_equal(cos[0], (float)M_SQRT1_2, 1e-6);
    /* row 1 = (0, .6, .8): b3 (0.8) then b0 (0.6) then b1, b2 (0.424) */
    assert_int_equal(ids[5], 3);
    assert_int_equal(ids[6], 0);
    assert_int_equal(ids[7], 1);
    assert_int_equal(ids[8], 2);
    assert_float_equal(cos[5], 0.8f, 1e-6);

    /* the identity dictionary (neurons): a feature's nearest neurons are its largest components */
    app_rdict id3 = {NULL, 3, 3};
    int32_t ids2[2 * 2];
    float cos2[2 * 2], work2[2 * 3];
    app_rdict_nearest(ids2, cos2, &da, 0, 2, &id3, 2, work2);
    assert_int_equal(ids2[0], 0);
    assert_float_equal(cos2[0], 1.0f, 1e-6);
    assert_int_equal(ids2[2], 2);
    assert_int_equal(ids2[3], 1);
    assert_float_equal(cos2[3], 0.6f, 1e-6);
    /* ... and a neuron's nearest features are the features' components along it (rows 1..2) */
    app_rdict_nearest(ids2, cos2, &id3, 1, 3, &da, 2, work2);
    assert_int_equal(ids2[0], 1); /* neuron 1: feature 1 (0.6) before feature 0 (0) */
    assert_float_equal(cos2[0], 0.6f, 1e-6);
    assert_int_equal(ids2[1], 0);
    assert_int_equal(ids2[2], 1); /* neuron 2: feature 1 (0.8) */
    assert_float_equal(cos2[2], 0.8f, 1e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_strings),
        cmocka_unit_test(test_json_numbers),
        cmocka_unit_test(test_nearest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
