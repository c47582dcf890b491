/* Unit tests of the job-file parser: every error class with its exact one-line message, the
 * round trip of every default, overrides, derived defaults and the hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "monosem/io.h"
#include "monosem/job.h"

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
    assert_int_equal(ms_status_exit_code(st), 2);
    assert_string_equal(e.msg, msg);
    assert_null(strchr(e.msg, '\n'));
}

static void test_unknown_key(void **s)
{
    (void)s;
    expect_error("sae:\n  d_saee: 5\n", "job.yaml:2:3: unknown key 'sae.d_saee' (did you mean 'sae.d_sae'?)");
    expect_error("saee:\n  d_sae: 5\n", "job.yaml:1:1: unknown key 'saee' (did you mean 'sae'?)");
    expect_error("model:\n  zzz_qq_xx: 5\n", "job.yaml:2:3: unknown key 'model.zzz_qq_xx'");
}

static void test_wrong_type(void **s)
{
    (void)s;
    expect_error("sae:\n  d_sae: abc\n", "job.yaml:2:10: key 'sae.d_sae': expected a positive integer, got \"abc\"");
    expect_error("sae:\n  shuffle: maybe\n", "job.yaml:2:12: key 'sae.shuffle': expected true or false, got \"maybe\"");
    expect_error("sae:\n  arch: relu\n",
                 "job.yaml:2:9: key 'sae.arch': expected one of relu-l1, topk, batchtopk, jumprelu, april-2024, got \"relu\"");
    expect_error("sae: 5\n", "job.yaml:1:1: key 'sae': expected a mapping of its keys, got a scalar");
    expect_error("sae:\n  d_sae: [1, 2]\n", "job.yaml:2:10: key 'sae.d_sae': expected a positive integer, got a sequence");
    expect_error("- a\n- b\n", "job.yaml:1:1: expected a mapping of sections (run:, corpus:, sae:, ...), got a sequence");
}

static void test_out_of_range(void **s)
{
    (void)s;
    expect_error("sae:\n  l1_coeff: -1\n", "job.yaml:2:13: key 'sae.l1_coeff': expected a non-negative number, got \"-1\"");
    expect_error("corpus:\n  heldout_fraction: 0.9\n",
                 "job.yaml:2:21: key 'corpus.heldout_fraction': expected a number in [0, 0.5], got \"0.9\"");
    expect_error("sae:\n  d_sae: 0\n", "job.yaml:2:10: key 'sae.d_sae': expected a positive integer, got \"0\"");
    expect_error("sae:\n  d_sae: 4000000000\n",
                 "job.yaml:2:10: key 'sae.d_sae': expected an integer in [1, 1073741824], got \"4000000000\"");
    expect_error("generate:\n  sample_per_context: 500\n",
                 "job.yaml:2:3: key 'generate.sample_per_context': expected at most corpus.context (128), got 500");
    expect_error("sae:\n  resample:\n    at: [10, 5]\n",
                 "job.yaml:3:5: key 'sae.resample.at': expected increasing steps, got 5 after 10");
}

static void test_duplicate_key(void **s)
{
    (void)s;
    expect_error("sae:\n  lr: 1e-4\n  lr: 2e-4\n", "job.yaml:3:3: duplicate key 'sae.lr' (first set at 2:3)");
    expect_error("sae:\n  lr: 1e-4\nsae:\n  k: 4\n", "job.yaml:3:1: duplicate key 'sae' (first set at 1:1)");
}

static void test_malformed(void **s)
{
    (void)s;
    ms_config c;
    ms_err e;
    assert_int_equal(parse(&c, "sae:\n  d_sae: [1, 2\n", &e), MS_ERR_CONFIG);
    assert_true(strncmp(e.msg, "job.yaml:3:1: malformed YAML: ", 30) == 0);
    assert_int_equal(parse(&c, "sae:\n d_sae: 1\n  lr: 2\n", &e), MS_ERR_CONFIG);
    assert_true(strncmp(e.msg, "job.yaml:3:5: malformed YAML: mapping values are not allowed", 60) == 0);
    assert_int_equal(parse(&c, "a: 1\n---\nb: 2\n", &e), MS_ERR_CONFIG);
    assert_string_equal(e.msg, "job.yaml:2:1: expected a single YAML document, found another");
}

static void test_missing_required(void **s)
{
    (void)s;
    const char *req[] = {"corpus.paths", NULL};
    ms_config c;
    ms_err e = {0};
    const char *t = "run:\n  name: x\n";
    assert_int_equal(ms_config_parse(&c, "job.yaml", t, strlen(t), NULL, 0, req, &e), MS_ERR_CONFIG);
    assert_string_equal(e.msg, "job.yaml: missing required key 'corpus.paths' (files or globs)");
    ms_err_clear(&e);
    t = "corpus:\n  paths: data/a.txt\n";
    assert_int_equal(ms_config_parse(&c, "job.yaml", t, strlen(t), NULL, 0, req, &e), MS_OK);
    assert_int_equal(c.corpus.n_paths, 1); /* a single string is a one-element list */
    assert_string_equal(c.corpus.paths[0], "data/a.txt");
    ms_config_free(&c);
}

/* Every default written out and read back gives the same config and the same hash. */
static void test_defaults_round_trip(void **s)
{
    (void)s;
    ms_config d, r;
    ms_err e = {0};
    assert_int_equal(ms_config_init_defaults(&d, &e), MS_OK);
    char *dump = ms_config_dump_string(&d);
    assert_non_null(dump);
    assert_int_equal(ms_config_parse(&r, "dump.yaml", dump, strlen(dump), NULL, 0, NULL, &e), MS_OK);
    char *dump2 = ms_config_dump_string(&r);
    assert_string_equal(dump, dump2);
    assert_string_equal(d.hash, r.hash);
    /* spot checks of the paper's recipe defaults and derived paths */
    assert_int_equal(d.sae.arch, MS_SAE_RELU_L1);
    assert_int_equal(d.sae.batch, 8192);
    assert_true(d.sae.l1_coeff == 0.004);
    assert_int_equal(d.model.d_mlp, 512);
    assert_string_equal(d.model.hook, "blocks.0.mlp.hook_post");
    assert_string_equal(d.run.out_dir, "runs/monosem");
    assert_string_equal(d.generate.out, "runs/monosem/activations.h5");
    assert_string_equal(d.sae.activations, "runs/monosem/activations.h5");
    assert_string_equal(ms_enum_name("generate.dtype", d.generate.dtype), "float16");
    assert_true(d.sae.shuffle);
    free(dump);
    free(dump2);
    ms_config_free(&d);
    ms_config_free(&r);
}

/* A non-default value of every type survives dump and re-parse. */
static void test_values_round_trip(void **s)
{
    (void)s;
    const char *t = "run: {name: exp1, seed: 7}\n"
                    "corpus: {paths: [a.txt, '123', \"b c.txt\"], format: jsonl, heldout_fraction: 0.05}\n"
                    "sae:\n  arch: topk\n  lr: 3.3e-5\n  shuffle: false\n  tokens_unused_comment: 1\n";
    ms_config c;
    ms_err e = {0};
    /* the stray key is an error... */
    assert_int_equal(ms_config_parse(&c, "j.yaml", t, strlen(t), NULL, 0, NULL, &e), MS_ERR_CONFIG);
    t = "run: {name: exp1, seed: 7}\n"
        "corpus: {paths: [a.txt, '123', \"b c.txt\"], format: jsonl, heldout_fraction: 0.05}\n"
        "sae:\n  arch: topk\n  lr: 3.3e-5\n  shuffle: false\n  steps: 2e6\n  resample: {at: [1_000, 2000]}\n";
    ms_err_clear(&e);
    assert_int_equal(ms_config_parse(&c, "j.yaml", t, strlen(t), NULL, 0, NULL, &e), MS_OK);
    assert_int_equal(c.sae.steps, 2000000);
    assert_int_equal(c.sae.resample.n_at, 2);
    assert_int_equal(c.sae.resample.at[0], 1000);
    char *dump = ms_config_dump_string(&c);
    ms_config r;
    assert_int_equal(ms_config_parse(&r, "d.yaml", dump, strlen(dump), NULL, 0, NULL, &e), MS_OK);
    assert_string_equal(r.corpus.paths[1], "123");
    assert_string_equal(r.corpus.paths[2], "b c.txt");
    assert_true(r.sae.lr == 3.3e-5);
    assert_false(r.sae.shuffle);
    assert_string_equal(r.run.out_dir, "runs/exp1");
    assert_string_equal(c.hash, r.hash);
    int line, col;
    ms_config_where(&c, "sae.lr", &line, &col);
    assert_int_equal(line, 5);
    assert_int_equal(col, 3);
    free(dump);
    ms_config_free(&c);
    ms_config_free(&r);
}

static void test_overrides(void **s)
{
    (void)s;
    const char *t = "sae:\n  d_sae: 1024\n";
    const char *ov[] = {"--sae.d_sae=8192", "--corpus.paths=[x, y]", "--run.name=o"};
    ms_config c;
    ms_err e = {0};
    assert_int_equal(ms_config_parse(&c, "j.yaml", t, strlen(t), ov, 3, NULL, &e), MS_OK);
    assert_int_equal(c.sae.d_sae, 8192);
    assert_int_equal(c.corpus.n_paths, 2);
    assert_string_equal(c.run.out_dir, "runs/o");
    char h1[17];
    memcpy(h1, c.hash, 17);
    ms_config_free(&c);
    assert_int_equal(ms_config_parse(&c, "j.yaml", t, strlen(t), NULL, 0, NULL, &e), MS_OK);
    assert_string_not_equal(h1, c.hash); /* the hash follows the resolved values */
    ms_config_free(&c);
    const char *bad[] = {"--sae.d_sae=abc"};
    assert_int_equal(ms_config_parse(&c, "j.yaml", t, strlen(t), bad, 1, NULL, &e), MS_ERR_CONFIG);
    assert_string_equal(e.msg, "command line: key 'sae.d_sae': expected a positive integer, got \"abc\"");
    const char *unk[] = {"--sae.dsae=5"};
    ms_err_clear(&e);
    assert_int_equal(ms_config_parse(&c, "j.yaml", t, strlen(t), unk, 1, NULL, &e), MS_ERR_CONFIG);
    assert_string_equal(e.msg, "command line: unknown key 'sae.dsae' (did you mean 'sae.d_sae'?)");
}

static void test_empty_and_null(void **s)
{
    (void)s;
    ms_config c;
    ms_err e = {0};
    assert_int_equal(parse(&c, "", &e), MS_OK);
    ms_config_free(&c);
    assert_int_equal(parse(&c, "eval:\nanalyze: ~\n", &e), MS_OK);
    assert_int_equal(c.eval.tokens, 200000);
    ms_config_free(&c);
}

/* Nesting is bounded before a document is built: refused at once with the place. */
static void test_nesting_depth(void **s)
{
    (void)s;
    size_t n = 100000;
    char *deep = malloc(5 * n + 3);
    for (size_t i = 0; i < n; i++) memcpy(deep + 4 * i, "{a: ", 4);
    deep[4 * n] = '1';
    memset(deep + 4 * n + 1, '}', n);
    deep[5 * n + 1] = '\0';
    expect_error(deep, "job.yaml:1:129: nesting deeper than 32 levels (a job file needs at most 4)");
    free(deep);
    expect_error("sae: {resample: {at: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}\n",
                 "job.yaml:1:51: nesting deeper than 32 levels (a job file needs at most 4)");
}

/* Resume checks: only RESULT keys of the scopes are compared, and each change is named. */
static void test_result_keys(void **s)
{
    (void)s;
    static const char *const scopes[] = {"run.seed", "sae.", NULL};
    ms_config a, b;
    ms_err e = {0};
    assert_int_equal(parse(&a, "run: {seed: 5, out_dir: /x}\nsae: {lr: 0.01, log_every: 5}\n", &e), MS_OK);
    char *keys = ms_config_result_keys(&a, scopes);
    assert_non_null(keys);
    assert_non_null(strstr(keys, "run.seed=5\nsae.arch=relu-l1\n"));
    assert_non_null(strstr(keys, "sae.lr=0.01\n"));
    assert_null(strstr(keys, "sae.log_every")); /* cadence */
    assert_null(strstr(keys, "sae.out_dir"));   /* a path */
    assert_null(strstr(keys, "run.out_dir"));   /* outside the scopes and a path */
    assert_null(strstr(keys, "model."));        /* outside the scopes */
    /* harmless changes */
    assert_int_equal(parse(&b, "run: {seed: 5, out_dir: /y, name: z, log_every_s: 1}\n"
                               "sae: {lr: 0.01, log_every: 7, checkpoint_every: 3, activations: /other.h5}\n"
                               "model: {d_mlp: 64}\n", &e), MS_OK);
    assert_int_equal(ms_config_result_diff(&b, scopes, keys, "ck", "hint", &e), MS_OK);
    ms_config_free(&b);
    /* changes that alter the result, all named with both values */
    assert_int_equal(parse(&b, "run: {seed: 6}\nsae: {lr: 0.02, resample: {at: [10, 20]}}\n", &e), MS_OK);
    assert_int_equal(ms_config_result_diff(&b, scopes, keys, "ck", "hint", &e), MS_ERR_STATE);
    assert_string_equal(e.msg, "ck: changed since the checkpoint: run.seed 5 -> 6, sae.lr 0.01 -> 0.02, "
                               "sae.resample.at [] -> [10, 20] (hint)");
    ms_config_free(&b);
    /* a key missing from an older checkpoint counts only if it is not at its default */
    ms_err_clear(&e);
    assert_int_equal(parse(&b, "run: {seed: 5}\nsae: {lr: 0.01}\n", &e), MS_OK);
    assert_int_equal(ms_config_result_diff(&b, scopes, "run.seed=5\nsae.lr=0.01\n", "ck", "h", &e), MS_OK);
    ms_config_free(&b);
    assert_int_equal(parse(&b, "run: {seed: 5}\nsae: {lr: 0.01, k: 7}\n", &e), MS_OK);
    assert_int_equal(ms_config_result_diff(&b, scopes, "run.seed=5\nsae.lr=0.01\n", "ck", "h", &e), MS_ERR_STATE);
    assert_string_equal(e.msg, "ck: changed since the checkpoint: sae.k (unset) -> 7 (h)");
    ms_config_free(&b);
    free(keys);
    ms_config_free(&a);
    /* keys set: 0 for an empty job (stages refuse it), overrides count */
    assert_int_equal(parse(&a, "# only a comment\nsae:\n", &e), MS_OK);
    assert_int_equal(ms_config_n_set(&a), 0);
    ms_config_free(&a);
    assert_int_equal(parse(&a, "sae: {d_sae: 8}\nrun: {seed: 2}\n", &e), MS_OK);
    assert_int_equal(ms_config_n_set(&a), 2);
    ms_config_free(&a);
}

/* The resolved dump of a valid job is a valid job with the same hash (found by fuzz_config:
 * corpus.context above the default model.n_ctx). */
static void test_dump_is_a_job(void **s)
{
    (void)s;
    ms_config a, b;
    ms_err e = {0};
    assert_int_equal(parse(&a, "corpus: {context: 256}\n", &e), MS_OK);
    assert_int_equal(a.model.n_ctx, 256);
    char *d = ms_config_dump_string(&a);
    assert_int_equal(parse(&b, d, &e), MS_OK);
    assert_string_equal(a.hash, b.hash);
    free(d);
    ms_config_free(&a);
    ms_config_free(&b);
    expect_error("corpus: {context: 256}\nmodel: {n_ctx: 128}\n",
                 "job.yaml:1:10: key 'corpus.context': expected at most model.n_ctx (128), got 256");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_key),       cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_out_of_range),      cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_malformed),         cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_defaults_round_trip), cmocka_unit_test(test_values_round_trip),
        cmocka_unit_test(test_overrides),         cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_nesting_depth),     cmocka_unit_test(test_result_keys),
        cmocka_unit_test(test_dump_is_a_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
