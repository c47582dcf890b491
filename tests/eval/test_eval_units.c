/* Unit tests of eval's pieces: density counts and histogram, the derived metrics, and the
 * model forward resumed at a hook (what lets several splices share one clean forward). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "eval.h"

static void test_density_stats(void **state)
{
    (void)state;
    const double fires[5] = {0, 1, 5, 100, 0};
    ms_density d;
    ms_density_stats(&d, fires, 5, 100.0, 0.02, 0.06);
    assert_int_equal(d.dead, 2);
    assert_int_equal(d.ultralow, 1); /* 0.01 < 0.02 */
    assert_int_equal(d.rare, 2);     /* 0.01, 0.05 < 0.06; dead ones are not rare */
    assert_int_equal(d.dense, 2);    /* 0.05 and 1.0 > 0.01 */
    assert_true(fabs(d.min_detectable - 0.01) < 1e-15);
    /* log10 0.01 = -2 -> bin 32; log10 0.05 = -1.30 -> bin 34; density 1 -> the last bin */
    int64_t total = 0;
    for (int b = 0; b < MS_DENSITY_HIST_BINS; b++) total += d.hist[b];
    assert_int_equal(total, 3);
    assert_int_equal(d.hist[32], 1);
    assert_int_equal(d.hist[34], 1);
    assert_int_equal(d.hist[MS_DENSITY_HIST_BINS - 1], 1);
}

static void test_derive(void **state)
{
    (void)state;
    /* 2 tokens, d_in 2, d_sae 3: x = (1,0), (3,2); mean (2,1); Σ‖x − mean‖² = 2 + 2 = 4 */
    double glob[EVAL_GLOB_FIXED] = {2, 2 * 4.0};
    double hook[EVAL_HOOK_FIXED + 2] = {2 * 5.0, 2 * 0.5, 3, 2, 1};
    double sae[EVAL_SAE_FIXED + 3 + 2] = {0};
    sae[EVAL_SAE_LOSS] = 2 * 4.25, sae[EVAL_SAE_KL] = 0.2, sae[EVAL_SAE_SSE] = 1.0, sae[EVAL_SAE_X_SQ] = 1 + 13;
    sae[EVAL_SAE_COS] = 1.8, sae[EVAL_SAE_COS_ROWS] = 2, sae[EVAL_SAE_RATIO] = 1.6, sae[EVAL_SAE_NZ_ROWS] = 2;
    sae[EVAL_SAE_L0] = 3, sae[EVAL_SAE_L1] = 5;
    sae[EVAL_SAE_FIXED + 0] = 2, sae[EVAL_SAE_FIXED + 1] = 1, sae[EVAL_SAE_FIXED + 2] = 0;
    sae[EVAL_SAE_FIXED + 3] = 4, sae[EVAL_SAE_FIXED + 4] = 2; /* Σx */
    app_eval_result r;
    app_eval_derive(&r, glob, hook, sae, 2, 3, 1e-6, 1e-4);
    assert_true(fabs(r.loss_clean - 4.0) < 1e-12 && fabs(r.loss_sae - 4.25) < 1e-12);
    assert_true(fabs(r.loss_zero - 5.0) < 1e-12);
    assert_true(fabs(r.loss_recovered - 0.75) < 1e-12); /* (5 − 4.25)/(5 − 4) */
    assert_true(fabs(r.kl - 0.1) < 1e-12 && fabs(r.kl_zero - 0.5) < 1e-12);
    assert_true(fabs(r.mse - 0.25) < 1e-12); /* 1/(2·2) */
    assert_true(fabs(r.fvu - 0.25) < 1e-12); /* 1/4 */
    assert_true(fabs(r.cos - 0.9) < 1e-12 && fabs(r.l2_ratio - 0.8) < 1e-12);
    assert_true(fabs(r.l0 - 1.5) < 1e-12 && fabs(r.l1 - 2.5) < 1e-12);
    assert_int_equal(r.features.dead, 1);
    assert_true(fabs(r.neuron_l0 - 1.5) < 1e-12);
    assert_int_equal(r.neurons.dead, 0);
}

static ms_status add_one(void *user, ms_hook hook, float *act, int B, int T, int d, ms_err *err)
{
    (void)user, (void)hook, (void)err;
    for (size_t i = 0; i < (size_t)B * T * d; i++) act[i] += 1.0f;
    return MS_OK;
}

/* A resumed forward equals the full forward with the same replace, bitwise. */
static void test_forward_resume(void **state)
{
    (void)state;
    ms_model_config c = {.n_layers = 2, .d_model = 16, .d_mlp = 32, .n_heads = 2, .d_head = 8,
                         .n_ctx = 12, .d_vocab = 40, .act_fn = MS_ACT_RELU,
                         .normalization = MS_NORM_LN, .eps = 1e-5f};
    ms_model m;
    ms_err err = {0};
    assert_int_equal(ms_model_init(&m, &c, &err), MS_OK);
    ms_model_init_random(&m, 5, 0.3f);
    enum { B = 3, T = 10 };
    int32_t tok[B * T], tg[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 7 + 3) % c.d_vocab;
    ms_model_next_targets(tg, tok, B, T);
    ms_model_acts full = {0}, res = {0};
    assert_int_equal(ms_model_acts_init(&full, &c, B, T, 0, &err), MS_OK);
    assert_int_equal(ms_model_acts_init(&res, &c, B, T, 0, &err), MS_OK);
    const size_t nl = (size_t)B * T * c.d_vocab;
    ms_hook hooks[3] = {{1, MS_HOOK_MLP_POST}, {1, MS_HOOK_RESID_MID}, {0, MS_HOOK_MLP_POST}};
    ms_forward_opts clean = {.targets = tg};
    assert_int_equal(ms_model_forward(&m, &res, tok, B, T, &clean, &err), MS_OK);
    for (int h = 0; h < 3; h++) { /* latest hook first, as the documented order asks */
        ms_hook_replace r = {hooks[h], add_one, NULL};
        ms_forward_opts of = {.targets = tg, .replaces = &r, .n_replaces = 1};
        ms_forward_opts orr = {.targets = tg, .replaces = &r, .n_replaces = 1, .start_at = &hooks[h]};
        assert_int_equal(ms_model_forward(&m, &full, tok, B, T, &of, &err), MS_OK);
        /* the replace adds 1 to whatever the buffer holds: restore the clean one first */
        ms_model_acts tmp = {0};
        assert_int_equal(ms_model_acts_init(&tmp, &c, B, T, 0, &err), MS_OK);
        assert_int_equal(ms_model_forward(&m, &tmp, tok, B, T, &clean, &err), MS_OK);
        float *src = ms_model_acts_hook(&tmp, hooks[h]), *dst = ms_model_acts_hook(&res, hooks[h]);
        memcpy(dst, src, (size_t)B * T * ms_hook_dim(&c, hooks[h]) * sizeof(float));
        ms_model_acts_free(&tmp);
        assert_int_equal(ms_model_forward(&m, &res, tok, B, T, &orr, &err), MS_OK);
        assert_memory_equal(full.logits, res.logits, nl * sizeof(float));
        assert_true(full.mean_loss == res.mean_loss);
    }
    /* a resume needs the previous forward's shape */
    ms_forward_opts bad = {.targets = tg, .start_at = &hooks[0]};
    assert_int_equal(ms_model_forward(&m, &res, tok, B - 1, T, &bad, &err), MS_ERR_USAGE);
    ms_model_acts_free(&full);
    ms_model_acts_free(&res);
    ms_model_free(&m);
}

/* ms_model_unembed on row chunks of a captured last residual stream gives the forward's
 * logits and losses; a chunk against itself has KL exactly 0. */
static void test_unembed_rows(void **state)
{
    (void)state;
    ms_model_config c = {.n_layers = 1, .d_model = 16, .d_mlp = 32, .n_heads = 2, .d_head = 8,
                         .n_ctx = 12, .d_vocab = 53, .act_fn = MS_ACT_RELU,
                         .normalization = MS_NORM_LN, .eps = 1e-5f};
    ms_model m;
    ms_err err = {0};
    assert_int_equal(ms_model_init(&m, &c, &err), MS_OK);
    ms_model_init_random(&m, 9, 0.3f);
    enum { B = 2, T = 11, N = B * T, V = 53, C = 16, R = 7 };
    int32_t tok[N], tg[N];
    for (int i = 0; i < N; i++) tok[i] = (i * 5 + 1) % V;
    ms_model_next_targets(tg, tok, B, T);
    ms_model_acts a = {0};
    assert_int_equal(ms_model_acts_init(&a, &c, B, T, 0, &err), MS_OK);
    static float resid[N * C], lg[R * V], lg2[R * V], lse[R], lse2[R], loss[R], kl[R];
    float *scratch = malloc(ms_model_unembed_scratch(&c, R) * sizeof(float));
    ms_hook last = {0, MS_HOOK_RESID_POST};
    ms_hook_capture cap = {last, resid};
    ms_forward_opts o = {.targets = tg, .captures = &cap, .n_captures = 1};
    assert_int_equal(ms_model_forward(&m, &a, tok, B, T, &o, &err), MS_OK);
    for (int r0 = 0; r0 < N; r0 += R) {
        int n = N - r0 < R ? N - r0 : R;
        assert_int_equal(ms_model_unembed(&m, lg, lse, loss, NULL, resid + r0 * C, tg + r0, NULL, NULL,
                                          scratch, n, &err), MS_OK);
        for (int i = 0; i < n; i++) {
            assert_true(fabsf(loss[i] - a.losses[r0 + i]) <= 1e-5f * (1 + fabsf(a.losses[r0 + i])));
            for (int v = 0; v < V; v++)
                assert_true(fabsf(lg[i * V + v] - a.logits[(size_t)(r0 + i) * V + v]) <= 1e-5f);
        }
        assert_int_equal(ms_model_unembed(&m, lg2, lse2, loss, kl, resid + r0 * C, tg + r0, lg, lse,
                                          scratch, n, &err), MS_OK);
        for (int i = 0; i < n; i++) assert_true(kl[i] == 0.0f);
    }
    free(scratch);
    ms_model_acts_free(&a);
    ms_model_free(&m);
}

/* KL of identical logits is exactly 0; of shifted logits (same distribution) ~0; else > 0. */
static void test_kl(void **state)
{
    (void)state;
    enum { N = 3, V = 37 };
    float a[N * V], b[N * V], la[N], lb[N], kl[N];
    for (int i = 0; i < N * V; i++) a[i] = (float)sin(i * 0.7) * 3, b[i] = a[i];
    for (int n = 0; n < N; n++) {
        double s = 0, m = -1e30;
        for (int v = 0; v < V; v++) m = fmax(m, a[n * V + v]);
        for (int v = 0; v < V; v++) s += exp(a[n * V + v] - m);
        la[n] = lb[n] = (float)(m + log(s));
    }
    ms_logits_kl(kl, a, la, b, lb, N, V);
    for (int n = 0; n < N; n++) assert_true(kl[n] == 0.0f);
    b[5] += 2.0f; /* row 0 changes: recompute its lse */
    double s = 0;
    for (int v = 0; v < V; v++) s += exp(b[v]);
    lb[0] = (float)log(s);
    ms_logits_kl(kl, a, la, b, lb, N, V);
    double want = 0;
    for (int v = 0; v < V; v++) {
        double lp = a[v] - la[0], lq = b[v] - lb[0];
        want += exp(lp) * (lp - lq);
    }
    assert_true(kl[0] > 0 && fabs(kl[0] - want) < 1e-5 * want + 1e-7);
    assert_true(kl[1] == 0.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_density_stats),
        cmocka_unit_test(test_derive),
        cmocka_unit_test(test_forward_resume),
        cmocka_unit_test(test_kl),
        cmocka_unit_test(test_unembed_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
