/* Unit tests of the study's job-file shape: the saes: list (entries over the sae section, each
 * SAE's derived config), model_b and the control model_r, their error messages with file:line:col, the dump round trip,
 * and the key subsets `monosem run` hashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "monosem/io.h"
#include "monosem/job.h"

static const char *const STUDY =
    "run: {name: s, out_dir: out, seed: 5}\n"                  /* 1 */
    "sae:\n"                                                   /* 2 */
    "  d_sae: 64\n"                                            /* 3 */
    "  lr: 0.002\n"                                            /* 4 */
    "  resample: {at: [10, 20], window: 5}\n"                  /* 5 */
    "model_b: {seed: 7}\n"                                     /* 6 */
    "saes:\n"                                                  /* 7 */
    "  - name: A0\n"                                           /* 8 */
    "    d_sae: 32\n"                                          /* 9 */
    "  - {name: A1, d_sae: 128, resample: {at: [5]}, init: 'x: y'}\n" /* 10 */
    "  - {name: B1, model: B, d_sae: 128, out_dir: elsewhere}\n";     /* 11 */

static ms_status parse(ms_config *c, const char *text, ms_err *e)
{
    ms_err_clear(e);
    return ms_config_parse(c, "job.yaml", text, strlen(text), NULL, 0, NULL, e);
}

static void expect_error(const char *text, const char *msg)
{
    ms_config c;
    ms_err e;
    ms_status st = parse(&c, text, &e);
    assert_int_equal(st, MS_ERR_CONFIG);
    assert_string_equal(e.msg, msg);
}

static void test_entries_parsed(void **s)
{
    (void)s;
    ms_config c;
    ms_err e;
    assert_int_equal(parse(&c, STUDY, &e), MS_OK);
    assert_int_equal(c.n_saes, 3);
    assert_string_equal(c.saes[0].name, "A0");
    assert_int_equal(c.saes[0].model, 0);
    assert_int_equal(c.saes[0].line, 9 - 1);
    assert_int_equal(c.saes[2].model, 1);
    assert_int_equal(c.model_b.seed, 7);
    assert_string_equal(c.model_b.dir, "out/model-b");
    assert_string_equal(c.model_b.activations, "out/activations-b.h5");
    assert_string_equal(c.train_model.dir, "out/train_model");
    /* the sae section itself is untouched by the entries */
    assert_int_equal(c.sae.d_sae, 64);
    ms_config_free(&c);
}

static void test_derived_sae(void **s)
{
    (void)s;
    ms_config c, d;
    ms_err e;
    assert_int_equal(parse(&c, STUDY, &e), MS_OK);
    /* A0: its d_sae, the section's other keys, out_dir <out_dir>/sae-A0, model A */
    assert_int_equal(ms_config_derive_sae(&c, 0, &d, &e), MS_OK);
    assert_int_equal(d.sae.d_sae, 32);
    assert_true(d.sae.lr == 0.002);
    assert_int_equal(d.sae.resample.n_at, 2);
    assert_string_equal(d.sae.out_dir, "out/sae-A0");
    assert_string_equal(d.sae.activations, "out/activations.h5");
    assert_string_equal(d.model.dir, "out/model");
    assert_int_equal(d.run.seed, 5);
    assert_int_equal(d.n_saes, 0);
    assert_int_equal(d.model_b.seed, 0);
    char h0[17];
    memcpy(h0, d.hash, sizeof h0);
    ms_config_free(&d);
    /* A1: nested resample list replaced, a quoted string kept verbatim */
    assert_int_equal(ms_config_derive_sae(&c, 1, &d, &e), MS_OK);
    assert_int_equal(d.sae.d_sae, 128);
    assert_int_equal(d.sae.resample.n_at, 1);
    assert_int_equal(d.sae.resample.at[0], 5);
    assert_int_equal(d.sae.resample.window, 5);
    assert_string_equal(d.sae.init, "x: y");
    ms_config_free(&d);
    /* B1: model B's directories, activations and seed; its own out_dir wins */
    assert_int_equal(ms_config_derive_sae(&c, 2, &d, &e), MS_OK);
    assert_string_equal(d.model.dir, "out/model-b");
    assert_string_equal(d.sae.activations, "out/activations-b.h5");
    assert_string_equal(d.generate.out, "out/activations-b.h5");
    assert_string_equal(d.train_model.dir, "out/train_model-b");
    assert_string_equal(d.sae.out_dir, "elsewhere");
    assert_int_equal(d.train_model.seed, 7);
    assert_int_equal(d.run.seed, 5); /* the held-out split and sampling stay model A's */
    ms_config_free(&d);
    ms_config_free(&c);
    /* an SAE's hash (its checkpoint identity) does not depend on the other entries */
    char other[1024];
    snprintf(other, sizeof other, "%s  - {name: A2, d_sae: 512}\n", STUDY);
    assert_int_equal(parse(&c, other, &e), MS_OK);
    assert_int_equal(c.n_saes, 4);
    assert_int_equal(ms_config_derive_sae(&c, 0, &d, &e), MS_OK);
    assert_string_equal(d.hash, h0);
    ms_config_free(&d);
    ms_config_free(&c);
}

static void test_derived_model_and_overrides(void **s)
{
    (void)s;
    ms_config c, a, b;
    ms_err e;
    const char *ov[] = {"--sae.lr=0.5", "--model_b.dir=mb"};
    assert_int_equal(ms_config_parse(&c, "job.yaml", STUDY, strlen(STUDY), ov, 2, NULL, &e), MS_OK);
    assert_int_equal(ms_config_derive_model(&c, 0, &a, &e), MS_OK);
    assert_int_equal(ms_config_derive_model(&c, 1, &b, &e), MS_OK);
    assert_string_equal(a.model.dir, "out/model");
    assert_string_equal(b.model.dir, "mb");
    assert_int_equal(b.train_model.seed, 7);
    assert_int_equal(a.train_model.seed, 0);
    assert_true(a.sae.lr == 0.5 && b.sae.lr == 0.5); /* command-line overrides reach every derived config */
    ms_config_free(&a);
    ms_config_free(&b);
    /* an entry's own key beats the command line's for that SAE */
    ms_config_free(&c);
    const char *ov2[] = {"--sae.d_sae=16"};
    assert_int_equal(ms_config_parse(&c, "job.yaml", STUDY, strlen(STUDY), ov2, 1, NULL, &e), MS_OK);
    assert_int_equal(ms_config_derive_sae(&c, 0, &a, &e), MS_OK);
    assert_int_equal(a.sae.d_sae, 32);
    ms_config_free(&a);
    ms_config_free(&c);
    /* no model B, no control */
    assert_int_equal(parse(&c, "run: {name: x}\n", &e), MS_OK);
    assert_int_equal(ms_config_derive_model(&c, 1, &a, &e), MS_ERR_CONFIG);
    assert_int_equal(ms_config_derive_model(&c, 2, &a, &e), MS_ERR_CONFIG);
    assert_int_equal(ms_config_derive_model(&c, 3, &a, &e), MS_ERR_USAGE);
    ms_config_free(&c);
    /* the control R: model A's recipe and shape, its own seed and directories, 0 steps; an R
     * entry reads R's activations; A's own configuration is untouched */
    const char *rjob = "run: {name: x, out_dir: o, seed: 3}\ntrain_model: {steps: 500}\nmodel: {d_mlp: 64}\n"
                       "model_r: {seed: 3}\nsaes:\n  - {name: R1, model: R, d_sae: 128}\n";
    assert_int_equal(parse(&c, rjob, &e), MS_OK);
    assert_int_equal(c.saes[0].model, 2);
    assert_string_equal(c.model_r.dir, "o/model-r");
    assert_int_equal(ms_config_derive_model(&c, 2, &a, &e), MS_OK);
    assert_int_equal(a.train_model.steps, 0);
    assert_int_equal(a.train_model.seed, 3); /* A's own seed is allowed: then R is A's initialisation */
    assert_int_equal(a.model.d_mlp, 64);
    assert_string_equal(a.model.dir, "o/model-r");
    assert_string_equal(a.generate.out, "o/activations-r.h5");
    assert_string_equal(a.train_model.dir, "o/train_model-r");
    assert_int_equal(a.model_r.seed, 0);
    ms_config_free(&a);
    assert_int_equal(ms_config_derive_sae(&c, 0, &a, &e), MS_OK);
    assert_string_equal(a.sae.activations, "o/activations-r.h5");
    assert_string_equal(a.sae.out_dir, "o/sae-R1");
    assert_int_equal(a.train_model.steps, 0);
    ms_config_free(&a);
    assert_int_equal(ms_config_derive_model(&c, 0, &a, &e), MS_OK);
    assert_int_equal(a.train_model.steps, 500);
    ms_config_free(&a);
    ms_config_free(&c);
}

static void test_dump_round_trip(void **s)
{
    (void)s;
    ms_config c, r;
    ms_err e;
    assert_int_equal(parse(&c, STUDY, &e), MS_OK);
    char *dump = ms_config_dump_string(&c);
    assert_non_null(dump);
    assert_non_null(strstr(dump, "saes:"));
    assert_int_equal(parse(&r, dump, &e), MS_OK);
    assert_string_equal(c.hash, r.hash);
    assert_int_equal(r.n_saes, 3);
    ms_config d;
    assert_int_equal(ms_config_derive_sae(&r, 1, &d, &e), MS_OK);
    assert_string_equal(d.sae.init, "x: y");
    assert_int_equal(d.sae.resample.at[0], 5);
    ms_config_free(&d);
    free(dump);
    ms_config_free(&r);
    ms_config_free(&c);
}

static void test_errors(void **s)
{
    (void)s;
    expect_error("saes: 3\n", "job.yaml:1:1: key 'saes': expected a list of mappings (- name: A0, d_sae: 512), got a scalar");
    expect_error("saes: [3]\n",
                 "job.yaml:1:8: key 'saes': expected each entry to be a mapping (name: ..., d_sae: ...), got a scalar");
    expect_error("saes:\n  - d_sae: 3\n", "job.yaml:2:5: saes entry 1: missing key 'name'");
    expect_error("saes:\n  - {name: a, d_sea: 3}\n", "job.yaml:2:15: unknown key 'sae.d_sea' (did you mean 'sae.d_sae'?)");
    expect_error("saes:\n  - {name: a, d_sae: abc}\n", "job.yaml:2:22: key 'sae.d_sae': expected a positive integer, got \"abc\"");
    expect_error("saes:\n  - {name: a}\n  - {name: a}\n", "job.yaml:3:5: saes entry 2: duplicate name 'a' (first at 2:5)");
    expect_error("saes:\n  - {name: a, model: B}\n",
                 "job.yaml:2:5: saes entry 'a': model B needs key 'model_b.seed' (a seed other than model A's)");
    expect_error("saes:\n  - {name: a, model: C}\n",
                 "job.yaml:2:22: key 'saes.model': expected A, B or R (the control), got \"C\"");
    expect_error("saes:\n  - {name: a, model: R}\n",
                 "job.yaml:2:5: saes entry 'a': the control model R needs key 'model_r.seed' (its initialisation seed)");
    expect_error("saes:\n  - {name: 'a/b'}\n",
                 "job.yaml:2:12: key 'saes.name': expected a name of letters, digits, '_', '.', '-' (at most 47, used in "
                 "directory names), got \"a/b\"");
    expect_error("saes:\n  - {name: a, arch: topk, k: 100, d_sae: 50}\n",
                 "job.yaml:2:5: saes entry 'a': key 'sae.k': expected at most sae.d_sae (50), got 100");
    expect_error("saes:\n  - {name: a, resample: 3}\n", "job.yaml:2:15: key 'sae.resample': expected a mapping of its keys, got a scalar");
    expect_error("saes:\n  - {name: a, d_sae: 3, d_sae: 4}\n", "job.yaml:2:25: duplicate key 'sae.d_sae' (first set at 2:15)");
    expect_error("run: {seed: 9}\nmodel_b: {seed: 9}\n",
                 "job.yaml:2:11: key 'model_b.seed': expected a seed other than model A's (9): model B is model A's recipe "
                 "with another seed");
    expect_error("train_model: {seed: 3}\nmodel_b: {seed: 3}\n",
                 "job.yaml:2:11: key 'model_b.seed': expected a seed other than model A's (3): model B is model A's recipe "
                 "with another seed");
    expect_error("saes:\n  - {name: a}\nsaes: []\n", "job.yaml:3:1: duplicate key 'saes' (first set at 1:1)");
}

static void test_subset(void **s)
{
    (void)s;
    ms_config c;
    ms_err e;
    assert_int_equal(parse(&c, STUDY, &e), MS_OK);
    const char *pre[] = {"sae.resample.", "run.seed", NULL}, *ex[] = {"sae.resample.inputs", NULL};
    char *t = ms_config_subset(&c, pre, ex);
    assert_non_null(t);
    assert_string_equal(t, "run.seed=5\nsae.resample.at=10,20\nsae.resample.window=5\nsae.resample.max_density=0.0\n");
    free(t);
    ms_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries_parsed), cmocka_unit_test(test_derived_sae),
        cmocka_unit_test(test_derived_model_and_overrides), cmocka_unit_test(test_dump_round_trip),
        cmocka_unit_test(test_errors), cmocka_unit_test(test_subset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
