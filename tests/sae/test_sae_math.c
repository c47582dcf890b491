/* tests/sae/test_sae_math.c: libsae mathematics — finite-difference gradients for every arch,
 * naive vs BLAS vs sparse kernels, step semantics, resampling, init, RNG, median, schedules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "sae_internal.h"

/* ---------------------------------------------------------------- helpers */

static void fill_normal(float *v, int64_t n, ms_rng *r, double scale)
{
    for (int64_t i = 0; i < n; i++) v[i] = (float)(scale * ms_rng_normal(r));
}

static bool is_topk_arch(int a) { return a == MS_SAE_TOPK || a == MS_SAE_BATCHTOPK; }

static ms_sae_hparams base_hp(int arch, int64_t d, int64_t m, int64_t B)
{
    ms_sae_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.arch = arch;
    hp.d_in = d;
    hp.d_sae = m;
    hp.max_batch = B;
    hp.k = 3;
    hp.k_aux = 4;
    hp.l1_coeff = arch == MS_SAE_APRIL_2024 ? 0.5 : 0.2;
    hp.aux_coeff = 0.0;
    hp.dead_tokens = 100;
    hp.threshold_init = 0.3;
    hp.bandwidth = 0.05;
    hp.l0_coeff = 0.02;
    hp.lr = 1e-3;
    hp.beta1 = 0.9;
    hp.beta2 = 0.999;
    hp.adam_eps = 1e-8;
    hp.steps = 1000;
    return hp;
}

/* An SAE with random params (biases too, so every gradient is exercised). */
static void make_sae(ms_sae *sae, const ms_sae_hparams *hp, uint64_t seed)
{
    ms_err err = {0};
    assert_int_equal(ms_sae_init(sae, hp, &err), MS_OK);
    ms_rng r;
    ms_rng_init(&r, seed, 1);
    ms_sae_init_params(sae, &r);
    fill_normal(sae->p.b_enc, hp->d_sae, &r, 0.3);
    fill_normal(sae->p.b_dec, hp->d_in, &r, 0.3);
    if (hp->arch == MS_SAE_JUMPRELU)
        for (int64_t j = 0; j < hp->d_sae; j++)
            sae->p.threshold[j] = (float)(0.2 + 0.4 * ms_rng_uniform(&r));
}

static float *rand_x(int64_t n, int64_t d, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (size_t)(n * d));
    ms_rng r;
    ms_rng_init(&r, seed, 2);
    fill_normal(x, n * d, &r, 1.0);
    return x;
}

static double run_fb(ms_sae *sae, const float *x, int64_t B, double *st)
{
    ms_err err = {0};
    assert_int_equal(ms_sae_forward_backward(sae, x, B, B, st, &err), MS_OK);
    return st[MS_SAE_STAT_LOSS];
}

/* Active pattern fingerprint: L0 plus per-feature counts (changes when a kink is crossed). */
static bool same_pattern(const ms_sae *sae, const double *a, const double *b)
{
    if (a[MS_SAE_STAT_L0] != b[MS_SAE_STAT_L0]) return false;
    for (int64_t j = 0; j < sae->hp.d_sae; j++)
        if (a[MS_SAE_STAT_FIXED + j] != b[MS_SAE_STAT_FIXED + j]) return false;
    return true;
}

/* Central differences on params [off, off+n) against the analytic grads in G; entries
 * where `only` is non-NULL and only[e-off]==0 are skipped. Returns the number checked. */
static int fd_check(ms_sae *sae, const float *x, int64_t B, const float *G, size_t off, size_t n,
                    const uint8_t *only, const char *what)
{
    size_t len = ms_sae_stats_len(sae);
    double *s0 = malloc(sizeof(double) * len), *sp = malloc(sizeof(double) * len),
           *sm = malloc(sizeof(double) * len);
    run_fb(sae, x, B, s0);
    double gmax = 0.0;
    for (size_t e = 0; e < n; e++) gmax = fmax(gmax, fabs(G[off + e]));
    int checked = 0, skipped = 0;
    double worst = 0.0;
    for (size_t e = 0; e < n; e++) {
        if (only && !only[e]) continue;
        float *p = sae->params + off + e;
        float p0 = *p;
        float h = 2e-3f * fmaxf(1.0f, fabsf(p0));
        *p = p0 + h;
        double lp = run_fb(sae, x, B, sp);
        *p = p0 - h;
        double lm = run_fb(sae, x, B, sm);
        *p = p0;
        if (!same_pattern(sae, s0, sp) || !same_pattern(sae, s0, sm)) {
            skipped++;
            continue;
        }
        double fd = (lp - lm) / (double)((p0 + h) - (p0 - h));
        double g = G[off + e];
        double errv = fabs(fd - g);
        double tol = 5e-4 * gmax + 5e-3 * fabs(g) + 1e-8; /* observed noise ≈ 1.5e-4·max|g| */
        if (errv / (gmax + 1e-12) > worst) worst = errv / (gmax + 1e-12);
        if (errv > tol)
            fail_msg("%s[%zu]: analytic %.8g vs finite difference %.8g (max |g| %.3g)", what, e, g,
                     fd, gmax);
        checked++;
    }
    if (getenv("SAE_FD_VERBOSE")) fprintf(stderr, "%s: worst |fd-g|/max|g| %.3g over %d\n", what, worst, checked);
    assert_true(skipped <= (int)(n / 4) + 1);
    free(s0), free(sp), free(sm);
    return checked;
}

static void fd_all(int arch, double aux_coeff)
{
    const int64_t d = 6, m = 12, B = 5;
    ms_sae_hparams hp = base_hp(arch, d, m, B);
    hp.aux_coeff = aux_coeff;
    ms_sae sae;
    make_sae(&sae, &hp, 11 + (uint64_t)arch);
    float *x = rand_x(B, d, 7);
    if (arch == MS_SAE_APRIL_2024) {
        sae.input_scale = 1.7f;
        /* decoder norms away from 0.1 so the norm-weighted term has a real W_dec gradient */
        for (int64_t e = 0; e < m * d; e++) sae.p.W_dec[e] *= 3.0f;
    }
    if (aux_coeff > 0)
        for (int64_t j = 0; j < m; j += 2) sae.since_fired[j] = hp.dead_tokens;
    size_t len = ms_sae_stats_len(&sae);
    double *st = malloc(sizeof(double) * len);
    run_fb(&sae, x, B, st);
    if (aux_coeff > 0) assert_true(st[MS_SAE_STAT_AUX] > 0.0);
    float *G = malloc(sizeof(float) * sae.layout.n_params);
    memcpy(G, sae.grads, sizeof(float) * sae.layout.n_params);
    const ms_sae_layout *L = &sae.layout;
    if (aux_coeff > 0) {
        /* the AuxK target is detached: only parameters that do not move x̂ (dead latents that
         * never won the main selection) have an FD-checkable total gradient */
        uint8_t *enc = calloc((size_t)(d * m), 1), *dec = calloc((size_t)(m * d), 1),
                *be = calloc((size_t)m, 1);
        int n_ok = 0;
        for (int64_t j = 0; j < m; j++) {
            if (sae.since_fired[j] < hp.dead_tokens || st[MS_SAE_STAT_FIXED + j] > 0) continue;
            be[j] = 1, n_ok++;
            for (int64_t i = 0; i < d; i++) enc[i * m + j] = 1, dec[j * d + i] = 1;
        }
        assert_true(n_ok > 0);
        int c = fd_check(&sae, x, B, G, L->W_enc, (size_t)(d * m), enc, "W_enc(aux)");
        c += fd_check(&sae, x, B, G, L->W_dec, (size_t)(m * d), dec, "W_dec(aux)");
        c += fd_check(&sae, x, B, G, L->b_enc, (size_t)m, be, "b_enc(aux)");
        assert_true(c > 0);
        /* and the AuxK gradient is really there: it differs from the gradient without it */
        sae.hp.aux_coeff = 0; /* same workspace; aux off */
        run_fb(&sae, x, B, st);
        double diff = 0.0;
        for (size_t e = 0; e < L->n_params; e++) diff += fabs(sae.grads[e] - G[e]);
        assert_true(diff > 1e-6);
        free(enc), free(dec), free(be);
    } else {
        int c = fd_check(&sae, x, B, G, L->W_enc, (size_t)(d * m), NULL, "W_enc");
        c += fd_check(&sae, x, B, G, L->b_enc, (size_t)m, NULL, "b_enc");
        c += fd_check(&sae, x, B, G, L->W_dec, (size_t)(m * d), NULL, "W_dec");
        c += fd_check(&sae, x, B, G, L->b_dec, (size_t)d, NULL, "b_dec");
        assert_true(c > (int)(d * m));
    }
    free(G), free(st), free(x);
    ms_sae_free(&sae);
}

static void test_fd_relu_l1(void **s) { (void)s, fd_all(MS_SAE_RELU_L1, 0); }
static void test_fd_topk(void **s) { (void)s, fd_all(MS_SAE_TOPK, 0); }
static void test_fd_topk_aux(void **s) { (void)s, fd_all(MS_SAE_TOPK, 1.0 / 32); }
static void test_fd_batchtopk(void **s) { (void)s, fd_all(MS_SAE_BATCHTOPK, 0); }
static void test_fd_batchtopk_aux(void **s) { (void)s, fd_all(MS_SAE_BATCHTOPK, 0.5); }
static void test_fd_jumprelu(void **s) { (void)s, fd_all(MS_SAE_JUMPRELU, 0); }
static void test_fd_april(void **s) { (void)s, fd_all(MS_SAE_APRIL_2024, 0); }

/* JumpReLU θ: the L0 part of the STE gradient equals the central difference of the L0 term
 * with step ε/2 (rectangle kernel), exactly up to rounding. */
static void test_jumprelu_threshold_l0(void **state)
{
    (void)state;
    const int64_t d = 5, m = 16, B = 40;
    ms_sae_hparams hp = base_hp(MS_SAE_JUMPRELU, d, m, B);
    hp.bandwidth = 0.4; /* wide window: many entries near θ */
    hp.l0_coeff = 0.3;
    ms_sae sae;
    make_sae(&sae, &hp, 5);
    float *x = rand_x(B, d, 9);
    size_t len = ms_sae_stats_len(&sae);
    double *st = malloc(sizeof(double) * len);
    float *g1 = malloc(sizeof(float) * (size_t)m), *g0 = malloc(sizeof(float) * (size_t)m);
    run_fb(&sae, x, B, st);
    memcpy(g1, sae.g.threshold, sizeof(float) * (size_t)m);
    sae.hp.l0_coeff = 0.0;
    run_fb(&sae, x, B, st);
    memcpy(g0, sae.g.threshold, sizeof(float) * (size_t)m);
    sae.hp.l0_coeff = hp.l0_coeff;
    int nonzero = 0;
    for (int64_t j = 0; j < m; j++) {
        float th = sae.p.threshold[j];
        float hh = (float)(hp.bandwidth / 2);
        sae.p.threshold[j] = th + hh;
        run_fb(&sae, x, B, st);
        double sp = st[MS_SAE_STAT_SPARSITY];
        sae.p.threshold[j] = th - hh;
        run_fb(&sae, x, B, st);
        double sm = st[MS_SAE_STAT_SPARSITY];
        sae.p.threshold[j] = th;
        double fd = (sp - sm) / hp.bandwidth;       /* ∂(L0 term)/∂θ */
        double ste = (double)(g1[j] - g0[j]) / th;   /* slab holds ∂/∂log θ */
        assert_true(fabs(fd - ste) <= 1e-4 * fabs(fd) + 1e-6);
        nonzero += fd != 0.0;
    }
    assert_true(nonzero > m / 2);
    free(st), free(g1), free(g0), free(x);
    ms_sae_free(&sae);
}

/* ---------------------------------------------------------------- naive vs BLAS vs sparse */

static void compare_paths(int arch, double aux)
{
    const int64_t d = 24, m = 96, B = 48;
    ms_sae_hparams hp = base_hp(arch, d, m, B);
    hp.k = 5;
    hp.k_aux = 7;
    hp.aux_coeff = aux;
    ms_sae sae;
    make_sae(&sae, &hp, 21 + (uint64_t)arch);
    for (int64_t j = 0; j < m; j++) sae.p.b_enc[j] -= 0.5f; /* sparser f */
    if (aux > 0)
        for (int64_t j = 0; j < m; j += 3) sae.since_fired[j] = hp.dead_tokens;
    float *x = rand_x(B, d, 3);
    size_t len = ms_sae_stats_len(&sae), P = sae.layout.n_params;
    double *st[3];
    float *gr[3];
    const int cfg[3][2] = {{SAE_KERNEL_NAIVE, SAE_PATH_DENSE},
                           {SAE_KERNEL_BLAS, SAE_PATH_DENSE},
                           {SAE_KERNEL_BLAS, SAE_PATH_SPARSE}};
    for (int c = 0; c < 3; c++) {
        sae_set_kernel(&sae, cfg[c][0]);
        sae_set_path(&sae, cfg[c][1]);
        st[c] = malloc(sizeof(double) * len);
        gr[c] = malloc(sizeof(float) * P);
        run_fb(&sae, x, B, st[c]);
        assert_int_equal(sae_last_sparse(&sae), cfg[c][1] == SAE_PATH_SPARSE);
        memcpy(gr[c], sae.grads, sizeof(float) * P);
    }
    double gmax = 0.0;
    for (size_t e = 0; e < P; e++) gmax = fmax(gmax, fabs(gr[0][e]));
    assert_true(gmax > 0.0);
    for (int c = 1; c < 3; c++) {
        for (size_t e = 0; e < P; e++)
            if (fabs(gr[c][e] - gr[0][e]) > 2e-5 * gmax)
                fail_msg("arch %d config %d: grads[%zu] %.8g vs naive %.8g", arch, c, e, gr[c][e],
                         gr[0][e]);
        for (size_t k = 0; k < len; k++) {
            if (k == MS_SAE_STAT_SPARSE) continue;
            double a = st[c][k], b = st[0][k];
            if (fabs(a - b) > 1e-5 * (fabs(b) + 1e-3))
                fail_msg("arch %d config %d: stats[%zu] %.10g vs naive %.10g", arch, c, k, a, b);
        }
    }
    for (int c = 0; c < 3; c++) free(st[c]), free(gr[c]);
    free(x);
    ms_sae_free(&sae);
}

static void test_paths_relu_l1(void **s) { (void)s, compare_paths(MS_SAE_RELU_L1, 0); }
static void test_paths_topk(void **s) { (void)s, compare_paths(MS_SAE_TOPK, 1.0 / 32); }
static void test_paths_batchtopk(void **s) { (void)s, compare_paths(MS_SAE_BATCHTOPK, 0.25); }
static void test_paths_jumprelu(void **s) { (void)s, compare_paths(MS_SAE_JUMPRELU, 0); }
static void test_paths_april(void **s) { (void)s, compare_paths(MS_SAE_APRIL_2024, 0); }

/* Threaded loops (2 threads, work above the threading cut) agree with 1 thread. */
static void threads_case(int arch, int path)
{
    const int64_t d = 32, m = 4096, B = 256; /* B·m = 2^20: own loops go parallel */
    ms_sae_hparams hp = base_hp(arch, d, m, B);
    hp.k = 16, hp.k_aux = 32, hp.aux_coeff = is_topk_arch(arch) ? 0.25 : 0.0;
    ms_sae sae;
    make_sae(&sae, &hp, 77);
    for (int64_t j = 0; j < m; j++) sae.p.b_enc[j] -= 1.0f;
    if (hp.aux_coeff > 0)
        for (int64_t j = 0; j < m; j += 5) sae.since_fired[j] = hp.dead_tokens;
    sae_set_path(&sae, path);
    float *x = rand_x(B, d, 78);
    size_t len = ms_sae_stats_len(&sae), P = sae.layout.n_params;
    double *s1 = malloc(sizeof(double) * len), *s2 = malloc(sizeof(double) * len);
    float *g1 = malloc(sizeof(float) * P);
    openblas_set_num_threads(1);
    run_fb(&sae, x, B, s1);
    memcpy(g1, sae.grads, sizeof(float) * P);
    openblas_set_num_threads(2);
    assert_int_equal(sae_nthreads(), 2);
    run_fb(&sae, x, B, s2);
    openblas_set_num_threads(1);
    assert_int_equal(sae_last_sparse(&sae),
                     path == SAE_PATH_SPARSE || (path == SAE_PATH_AUTO && is_topk_arch(arch)));
    double gmax = 0.0;
    for (size_t e = 0; e < P; e++) gmax = fmax(gmax, fabs(g1[e]));
    for (size_t e = 0; e < P; e++)
        if (fabs(sae.grads[e] - g1[e]) > 1e-5 * gmax)
            fail_msg("arch %d path %d: 2-thread grads[%zu] %.8g vs 1-thread %.8g", arch, path, e,
                     sae.grads[e], g1[e]);
    for (size_t k = 0; k < len; k++)
        assert_true(fabs(s1[k] - s2[k]) <= 1e-5 * (fabs(s1[k]) + 1e-3));
    /* a step with 2 threads too (Adam, projection, clipping blocks) */
    ms_err err = {0};
    openblas_set_num_threads(2);
    assert_int_equal(ms_sae_step(&sae, 1e-3, s2, NULL, &err), MS_OK);
    openblas_set_num_threads(1);
    free(s1), free(s2), free(g1), free(x);
    ms_sae_free(&sae);
}

static void test_threads(void **state)
{
    (void)state;
    threads_case(MS_SAE_RELU_L1, SAE_PATH_DENSE);
    threads_case(MS_SAE_RELU_L1, SAE_PATH_SPARSE);
    threads_case(MS_SAE_TOPK, SAE_PATH_AUTO);
    threads_case(MS_SAE_BATCHTOPK, SAE_PATH_AUTO);
    threads_case(MS_SAE_JUMPRELU, SAE_PATH_DENSE);
    threads_case(MS_SAE_JUMPRELU, SAE_PATH_SPARSE);
    threads_case(MS_SAE_APRIL_2024, SAE_PATH_DENSE);
}

/* Auto path: dense when f is dense, sparse when it is sparse (relu-l1). */
static void test_auto_path(void **state)
{
    (void)state;
    const int64_t d = 16, m = 256, B = 32;
    ms_sae_hparams hp = base_hp(MS_SAE_RELU_L1, d, m, B);
    ms_sae sae;
    make_sae(&sae, &hp, 4);
    float *x = rand_x(B, d, 4);
    double *st = malloc(sizeof(double) * ms_sae_stats_len(&sae));
    for (int64_t j = 0; j < m; j++) sae.p.b_enc[j] = 5.0f; /* everything fires */
    run_fb(&sae, x, B, st);
    assert_int_equal(sae_last_sparse(&sae), 0);
    for (int64_t j = 0; j < m; j++) sae.p.b_enc[j] = j < 4 ? 5.0f : -50.0f; /* 4/256 fire */
    run_fb(&sae, x, B, st);
    assert_int_equal(sae_last_sparse(&sae), 1);
    assert_true(st[MS_SAE_STAT_SPARSE] == 1.0);
    assert_true(fabs(ms_sae_stats_l0(st) - 4.0) < 1e-9);
    free(st), free(x);
    ms_sae_free(&sae);
}

/* ---------------------------------------------------------------- kernels */

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void test_topk_kernels(void **state)
{
    (void)state;
    ms_rng r;
    ms_rng_init(&r, 3, 3);
    enum { N = 1000 };
    float v[N], sorted[N], scratch[N], hv[64];
    int32_t idx[64];
    for (int i = 0; i < N; i++) v[i] = (float)ms_rng_normal(&r);
    v[10] = v[20] = 9.0f; /* a tie at the top */
    memcpy(sorted, v, sizeof v);
    qsort(sorted, N, sizeof(float), cmp_desc);
    for (int k = 1; k <= 64; k += 7) {
        int64_t got = sae_topk(idx, hv, v, NULL, N, k);
        assert_int_equal(got, k);
        float mn = INFINITY;
        for (int e = 0; e < k; e++) mn = fminf(mn, v[idx[e]]);
        assert_true(mn == sorted[k - 1]);
        assert_true(sae_kth_largest(scratch, v, N, k) == sorted[k - 1]);
    }
    /* tie at k=1: the lower index wins */
    sae_topk(idx, hv, v, NULL, N, 1);
    assert_int_equal(idx[0], 10);
    /* candidates subset */
    int32_t cand[3] = {5, 500, 999};
    int64_t got = sae_topk(idx, hv, v, cand, 3, 10);
    assert_int_equal(got, 3);
    for (int k = N - 3; k <= N; k++) assert_true(sae_kth_largest(scratch, v, N, k) == sorted[k - 1]);
    /* the sampled-cut top-k selects exactly the same set as the plain heap, ties included */
    int32_t idx2[64], scr[N];
    for (int trial = 0; trial < 40; trial++) {
        for (int i = 0; i < N; i++) {
            double u = ms_rng_normal(&r);
            v[i] = trial % 4 == 0 ? (float)floor(u * 3) /* many ties */
                   : trial % 4 == 1 ? (float)(u - 5.0) : (float)u;
        }
        if (trial % 4 == 3)
            for (int i = 0; i < N; i += 2) v[i] = 7.0f; /* a big tie block at the top */
        int k = 1 + trial % 64;
        int64_t a = sae_topk(idx, hv, v, NULL, N, k), b = sae_topk_fast(idx2, hv, v, N, k, scr);
        assert_int_equal(a, b);
        qsort(idx, (size_t)a, sizeof(int32_t), cmp_i32);
        qsort(idx2, (size_t)b, sizeof(int32_t), cmp_i32);
        assert_memory_equal(idx, idx2, sizeof(int32_t) * (size_t)a);
    }
}

/* csr->csc transposition and the two CSC accumulations against dense loops */
static void test_sparse_kernels(void **state)
{
    (void)state;
    const int64_t R = 37, C = 53, D = 19;
    ms_rng r;
    ms_rng_init(&r, 8, 8);
    float *dense = calloc((size_t)(R * C), sizeof(float));
    sae_sparse csr = {0}, csc = {0};
    int64_t cap = R * C;
    csr.ptr = calloc((size_t)R + 1, sizeof(int64_t));
    csc.ptr = calloc((size_t)C + 1, sizeof(int64_t));
    csr.idx = malloc(sizeof(int32_t) * (size_t)cap), csc.idx = malloc(sizeof(int32_t) * (size_t)cap);
    csr.val = malloc(sizeof(float) * (size_t)cap), csc.val = malloc(sizeof(float) * (size_t)cap);
    csr.grad = malloc(sizeof(float) * (size_t)cap), csc.grad = malloc(sizeof(float) * (size_t)cap);
    int64_t e = 0;
    for (int64_t b = 0; b < R; b++) {
        for (int64_t j = 0; j < C; j++)
            if (ms_rng_uniform(&r) < 0.15) {
                float v = (float)ms_rng_normal(&r);
                dense[b * C + j] = v;
                csr.idx[e] = (int32_t)j, csr.val[e] = v, csr.grad[e] = 2 * v;
                e++;
            }
        csr.ptr[b + 1] = e;
    }
    sae_csr_to_csc(&csc, &csr, R, C);
    assert_int_equal(csc.ptr[C], e);
    for (int64_t j = 0; j < C; j++)
        for (int64_t q = csc.ptr[j]; q < csc.ptr[j + 1]; q++) {
            assert_true(csc.val[q] == dense[csc.idx[q] * C + j]);
            assert_true(csc.grad[q] == 2 * csc.val[q]);
            if (q > csc.ptr[j]) assert_true(csc.idx[q] > csc.idx[q - 1]);
        }
    float *A = malloc(sizeof(float) * (size_t)(R * D)), *W = malloc(sizeof(float) * (size_t)(C * D));
    fill_normal(A, R * D, &r, 1.0);
    fill_normal(W, C * D, &r, 1.0);
    float *o1 = malloc(sizeof(float) * (size_t)(C * D)), *o2 = malloc(sizeof(float) * (size_t)(D * C));
    float *tmp = malloc(sizeof(float) * 16 * (size_t)D * 8);
    sae_csc_rows(o1, &csc, csc.val, A, NULL, NULL, NULL, C, D, 2, tmp);
    sae_csc_cols(o2, &csc, csc.val, NULL, NULL, A, C, D, 2, tmp, 16 * D);
    for (int64_t j = 0; j < C; j++)
        for (int64_t i = 0; i < D; i++) {
            double ref = 0.0;
            for (int64_t b = 0; b < R; b++) ref += (double)dense[b * C + j] * A[b * D + i];
            assert_true(fabs(o1[j * D + i] - ref) < 1e-4);
            assert_true(fabs(o2[i * C + j] - ref) < 1e-4);
        }
    /* decode and rowdot */
    float *xh = malloc(sizeof(float) * (size_t)(R * D)), *bias = calloc((size_t)D, sizeof(float));
    float *dots = malloc(sizeof(float) * (size_t)cap);
    bias[0] = 1.0f;
    sae_sparse_decode(xh, &csr, W, bias, R, D, 2);
    sae_sparse_rowdot(dots, &csr, A, W, R, D, 2);
    for (int64_t b = 0; b < R; b++) {
        for (int64_t i = 0; i < D; i++) {
            double ref = bias[i];
            for (int64_t j = 0; j < C; j++) ref += (double)dense[b * C + j] * W[j * D + i];
            assert_true(fabs(xh[b * D + i] - ref) < 1e-4);
        }
        for (int64_t q = csr.ptr[b]; q < csr.ptr[b + 1]; q++) {
            double ref = 0.0;
            for (int64_t i = 0; i < D; i++) ref += (double)A[b * D + i] * W[csr.idx[q] * D + i];
            assert_true(fabs(dots[q] - ref) < 1e-4);
        }
    }
    /* BLAS wrappers against their naive twins */
    float *c1 = malloc(sizeof(float) * (size_t)(C * D)), *c2 = malloc(sizeof(float) * (size_t)(C * D));
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) {
            /* C (R,D) = op(X)·op(Y) with X (R,C)/(C,R), Y (C,D)/(D,C) */
            const float *X = dense, *Y = W;
            float *Xt = malloc(sizeof(float) * (size_t)(R * C)), *Yt = malloc(sizeof(float) * (size_t)(C * D));
            for (int64_t a = 0; a < R; a++)
                for (int64_t b = 0; b < C; b++) Xt[b * R + a] = dense[a * C + b];
            for (int64_t a = 0; a < C; a++)
                for (int64_t b = 0; b < D; b++) Yt[b * C + a] = W[a * D + b];
            const float *XA = tA ? Xt : X, *YB = tB ? Yt : Y;
            for (int64_t q = 0; q < R * D; q++) c1[q] = c2[q] = 0.5f;
            sae_sgemm(0, tA, tB, R, D, C, 1.5f, XA, tA ? R : C, YB, tB ? C : D, 0.5f, c1, D);
            sae_sgemm(1, tA, tB, R, D, C, 1.5f, XA, tA ? R : C, YB, tB ? C : D, 0.5f, c2, D);
            for (int64_t q = 0; q < R * D; q++) assert_true(fabs(c1[q] - c2[q]) < 1e-4);
            free(Xt), free(Yt);
        }
    float y1[64], y2[64];
    for (int tA = 0; tA < 2; tA++) {
        int64_t M = tA ? C : R, N = tA ? R : C;
        for (int64_t q = 0; q < M; q++) y1[q] = y2[q] = 1.0f;
        sae_sgemv(0, tA, M, N, -1.0f, dense, C, tA ? A : W, 1.0f, y1);
        sae_sgemv(1, tA, M, N, -1.0f, dense, C, tA ? A : W, 1.0f, y2);
        for (int64_t q = 0; q < M; q++) assert_true(fabs(y1[q] - y2[q]) < 1e-4);
    }
    free(c1), free(c2), free(xh), free(bias), free(dots);
    free(A), free(W), free(o1), free(o2), free(tmp), free(dense);
    free(csr.ptr), free(csr.idx), free(csr.val), free(csr.grad);
    free(csc.ptr), free(csc.idx), free(csc.val), free(csc.grad);
}

/* ---------------------------------------------------------------- step semantics */

static double slab_norm(const float *g, size_t n)
{
    double q = 0.0;
    for (size_t e = 0; e < n; e++) q += (double)g[e] * g[e];
    return sqrt(q);
}

/* relu-l1's encoder init: Kaiming uniform, independent of the decoder, or its transpose */
static void test_init_encoder(void **state)
{
    (void)state;
    for (int tr = 0; tr < 2; tr++) {
        ms_sae_hparams hp = base_hp(MS_SAE_RELU_L1, 12, 20, 8);
        hp.enc_transpose = tr;
        ms_sae sae;
        ms_err err = {0};
        assert_int_equal(ms_sae_init(&sae, &hp, &err), MS_OK);
        ms_rng r;
        ms_rng_init(&r, 9, 1);
        ms_sae_init_params(&sae, &r);
        int64_t d = hp.d_in, m = hp.d_sae, same = 0;
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < m; j++) same += sae.p.W_enc[i * m + j] == sae.p.W_dec[j * d + i];
        assert_int_equal(same == d * m, tr == 1);
        for (int64_t j = 0; j < m; j++) { /* the decoder rows are unit norm either way */
            double n2 = 0;
            for (int64_t i = 0; i < d; i++) n2 += (double)sae.p.W_dec[j * d + i] * sae.p.W_dec[j * d + i];
            assert_true(fabs(n2 - 1.0) < 1e-5);
        }
        ms_sae_free(&sae);
    }
}

static void test_step_relu_l1(void **state)
{
    (void)state;
    const int64_t d = 8, m = 20, B = 16;
    ms_sae_hparams hp = base_hp(MS_SAE_RELU_L1, d, m, B);
    ms_sae sae;
    make_sae(&sae, &hp, 2);
    float *x = rand_x(B, d, 2);
    double *st = malloc(sizeof(double) * ms_sae_stats_len(&sae));
    run_fb(&sae, x, B, st);
    float *w0 = malloc(sizeof(float) * (size_t)(m * d)), *p0 = malloc(sizeof(float) * sae.layout.n_params);
    memcpy(w0, sae.p.W_dec, sizeof(float) * (size_t)(m * d));
    memcpy(p0, sae.params, sizeof(float) * sae.layout.n_params);
    float *g0 = malloc(sizeof(float) * sae.layout.n_params);
    memcpy(g0, sae.grads, sizeof(float) * sae.layout.n_params);
    ms_err err = {0};
    ms_sae_step_info info;
    double lr = 1e-2;
    assert_int_equal(ms_sae_step(&sae, lr, st, &info, &err), MS_OK);
    assert_int_equal(sae.step, 1);
    for (int64_t j = 0; j < m; j++) {
        double gw = 0.0, nn = 0.0, pr = 0.0;
        for (int64_t i = 0; i < d; i++) {
            gw += (double)sae.g.W_dec[j * d + i] * w0[j * d + i];
            nn += (double)sae.p.W_dec[j * d + i] * sae.p.W_dec[j * d + i];
            pr += fabs(sae.g.W_dec[j * d + i]);
        }
        assert_true(fabs(gw) < 1e-6 * (pr + 1e-9) + 1e-9); /* parallel component removed */
        assert_true(fabs(nn - 1.0) < 1e-5);                 /* renormalised */
    }
    /* first Adam step: Δ = −lr·m̂/(√v̂+eps) = −lr·g/(|g|+eps) on b_enc */
    for (int64_t j = 0; j < m; j++) {
        float g = g0[sae.layout.b_enc + (size_t)j];
        double want = p0[sae.layout.b_enc + (size_t)j] - lr * g / (fabs(g) + 1e-8);
        assert_true(fabs(sae.p.b_enc[j] - want) < 1e-6);
    }
    /* firing counters */
    for (int64_t j = 0; j < m; j++)
        assert_int_equal(sae.since_fired[j], st[MS_SAE_STAT_FIXED + j] > 0 ? 0 : B);
    free(w0), free(p0), free(g0), free(st), free(x);
    ms_sae_free(&sae);
}

static void test_step_clip_and_numeric(void **state)
{
    (void)state;
    const int64_t d = 8, m = 20, B = 16;
    ms_sae_hparams hp = base_hp(MS_SAE_APRIL_2024, d, m, B);
    hp.grad_clip = 1e-3;
    ms_sae sae;
    make_sae(&sae, &hp, 2);
    float *x = rand_x(B, d, 2);
    double *st = malloc(sizeof(double) * ms_sae_stats_len(&sae));
    run_fb(&sae, x, B, st);
    double n0 = slab_norm(sae.grads, sae.layout.n_params);
    ms_err err = {0};
    ms_sae_step_info info;
    assert_int_equal(ms_sae_step(&sae, 1e-3, st, &info, &err), MS_OK);
    assert_true(fabs(info.grad_norm - n0) < 1e-6 * n0);
    assert_true(n0 > 1e-3);
    assert_true(fabs(slab_norm(sae.grads, sae.layout.n_params) - 1e-3) < 1e-7);
    /* april: no norm constraint (rows stay near 0.1, not 1) */
    double nn = 0.0;
    for (int64_t i = 0; i < d; i++) nn += (double)sae.p.W_dec[i] * sae.p.W_dec[i];
    assert_true(sqrt(nn) < 0.5);
    /* a non-finite input is reported, not trained on */
    x[3] = NAN;
    assert_int_equal(ms_sae_forward_backward(&sae, x, B, B, st, &err), MS_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "not finite"));
    ms_err_clear(&err);
    assert_int_equal(ms_sae_forward_backward(&sae, x, B + 1, B + 1, st, &err), MS_ERR_USAGE);
    free(st), free(x);
    ms_sae_free(&sae);
}

static void test_step_jumprelu_batchtopk(void **state)
{
    (void)state;
    const int64_t d = 8, m = 32, B = 16;
    ms_err err = {0};
    /* jumprelu: θ stays positive and moves against its gradient */
    ms_sae_hparams hp = base_hp(MS_SAE_JUMPRELU, d, m, B);
    hp.bandwidth = 0.5;
    ms_sae sae;
    make_sae(&sae, &hp, 3);
    float *x = rand_x(B, d, 3);
    double *st = malloc(sizeof(double) * ms_sae_stats_len(&sae));
    run_fb(&sae, x, B, st);
    float *th0 = malloc(sizeof(float) * (size_t)m), *gt = malloc(sizeof(float) * (size_t)m);
    memcpy(th0, sae.p.threshold, sizeof(float) * (size_t)m);
    memcpy(gt, sae.g.threshold, sizeof(float) * (size_t)m);
    assert_int_equal(ms_sae_step(&sae, 0.05, st, NULL, &err), MS_OK);
    int moved = 0;
    for (int64_t j = 0; j < m; j++) {
        assert_true(sae.p.threshold[j] > 0.0f);
        if (gt[j] > 0) assert_true(sae.p.threshold[j] < th0[j]);
        if (gt[j] < 0) assert_true(sae.p.threshold[j] > th0[j]);
        if (gt[j] != 0) {
            /* first step on log θ: θ·exp(−lr·sign(g)) */
            double want = th0[j] * exp(-0.05 * (gt[j] > 0 ? 1 : -1));
            assert_true(fabs(sae.p.threshold[j] - want) < 1e-5);
            moved++;
        }
    }
    assert_true(moved > 0);
    ms_sae_free(&sae);
    /* batchtopk: exactly k·B selected; the first step sets θ to the smallest selected value,
     * then an EMA with rate 0.01 */
    hp = base_hp(MS_SAE_BATCHTOPK, d, m, B);
    hp.k = 4;
    make_sae(&sae, &hp, 4);
    for (int64_t j = 0; j < m; j++) sae.p.b_enc[j] += 2.0f; /* all positive */
    run_fb(&sae, x, B, st);
    assert_true(st[MS_SAE_STAT_L0] == (double)(hp.k * B));
    double mn = st[MS_SAE_STAT_THRESH_SUM];
    assert_true(st[MS_SAE_STAT_THRESH_N] == 1.0 && mn > 0);
    assert_int_equal(ms_sae_step(&sae, 1e-4, st, NULL, &err), MS_OK);
    assert_true(sae.p.threshold[0] == (float)mn && sae.p.threshold[m - 1] == (float)mn);
    run_fb(&sae, x, B, st);
    double mn2 = st[MS_SAE_STAT_THRESH_SUM];
    assert_int_equal(ms_sae_step(&sae, 1e-4, st, NULL, &err), MS_OK);
    assert_true(fabs(sae.p.threshold[0] - (0.99 * (float)mn + 0.01 * mn2)) < 1e-6);
    /* inference encode uses z > θ */
    float *f = malloc(sizeof(float) * (size_t)(B * m));
    ms_sae_encode(&sae, f, x, B);
    for (int64_t e = 0; e < B * m; e++) assert_true(f[e] == 0.0f || f[e] > sae.p.threshold[0]);
    free(f), free(th0), free(gt), free(st), free(x);
    ms_sae_free(&sae);
}

static void test_schedules(void **state)
{
    (void)state;
    ms_sae_hparams hp = base_hp(MS_SAE_APRIL_2024, 4, 4, 4);
    hp.lr = 5e-5;
    hp.l1_coeff = 5.0;
    hp.steps = 1000;
    hp.lambda_warmup_frac = 0.05;
    hp.lr_decay_frac = 0.2;
    assert_true(ms_sae_lr_at(&hp, 0) == 5e-5);
    assert_true(ms_sae_lr_at(&hp, 799) == 5e-5);
    assert_true(fabs(ms_sae_lr_at(&hp, 800) - 5e-5) < 1e-15);
    assert_true(fabs(ms_sae_lr_at(&hp, 900) - 2.5e-5) < 1e-15);
    assert_true(fabs(ms_sae_lr_at(&hp, 999) - 5e-5 / 200) < 1e-15);
    assert_true(ms_sae_lr_at(&hp, 1000) == 0.0);
    assert_true(fabs(ms_sae_l1_at(&hp, 0) - 5.0 / 50) < 1e-12);
    assert_true(fabs(ms_sae_l1_at(&hp, 24) - 2.5) < 1e-12);
    assert_true(ms_sae_l1_at(&hp, 49) == 5.0 && ms_sae_l1_at(&hp, 5000) == 5.0);
    hp.lambda_warmup_frac = 0, hp.lr_decay_frac = 0;
    assert_true(ms_sae_l1_at(&hp, 0) == 5.0 && ms_sae_lr_at(&hp, 999) == 5e-5);
    /* checks name the key */
    ms_err err = {0};
    hp.arch = MS_SAE_TOPK;
    hp.k = 9;
    assert_int_equal(ms_sae_hparams_check(&hp, &err), MS_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "sae.k"));
}

/* ---------------------------------------------------------------- resampling */

static void test_resample(void **state)
{
    (void)state;
    const int64_t d = 6, m = 4000, B = 4, n = 3;
    ms_sae_hparams hp = base_hp(MS_SAE_RELU_L1, d, m, B);
    ms_sae sae;
    make_sae(&sae, &hp, 9);
    float *x = rand_x(n, d, 10);
    uint8_t *dead = calloc((size_t)m, 1);
    for (int64_t j = 0; j < m; j++) dead[j] = j >= 10; /* 10 alive */
    for (size_t e = 0; e < sae.layout.n_params; e++) sae.adam_m[e] = 1.0f, sae.adam_v[e] = 2.0f;
    double alive = 0.0;
    for (int64_t j = 0; j < 10; j++) {
        double q = 0.0;
        for (int64_t i = 0; i < d; i++) q += (double)sae.p.W_enc[i * m + j] * sae.p.W_enc[i * m + j];
        alive += sqrt(q) / 10;
    }
    /* a nonzero b_dec: the new directions are those of s·x − b_dec, as the encoder sees x */
    for (int64_t i = 0; i < d; i++) sae.p.b_dec[i] = 0.25f * (float)(i % 3) - 0.1f;
    const float sc = sae.input_scale;
    float *keep = malloc(sizeof(float) * sae.layout.n_params);
    memcpy(keep, sae.params, sizeof(float) * sae.layout.n_params);
    /* loss 1 and 2 on inputs 0 and 2 (input 1 has loss 0): P ∝ loss² = 1:0:4 */
    float loss[3] = {1.0f, 0.0f, 2.0f};
    ms_rng r, r2;
    ms_rng_init(&r, 77, 5);
    r2 = r;
    assert_int_equal(ms_sae_resample(&sae, dead, x, loss, n, &r), m - 10);
    int64_t picks[3] = {0, 0, 0};
    for (int64_t j = 0; j < m; j++) {
        if (!dead[j]) {
            /* alive latents untouched, their Adam state too */
            for (int64_t i = 0; i < d; i++) {
                assert_true(sae.p.W_dec[j * d + i] == keep[sae.layout.W_dec + (size_t)(j * d + i)]);
                assert_true(sae.m.W_dec[j * d + i] == 1.0f);
            }
            assert_true(sae.m.b_enc[j] == 1.0f && sae.p.b_enc[j] == keep[sae.layout.b_enc + (size_t)j]);
            continue;
        }
        int which = -1;
        for (int c = 0; c < 3; c++) {
            double q = 0.0, dotv = 0.0;
            for (int64_t i = 0; i < d; i++) {
                double v = (double)(sc * x[c * d + i]) - sae.p.b_dec[i];
                q += v * v;
            }
            for (int64_t i = 0; i < d; i++)
                dotv += sae.p.W_dec[j * d + i] * ((double)(sc * x[c * d + i]) - sae.p.b_dec[i]) / sqrt(q);
            if (fabs(dotv - 1.0) < 1e-5) which = c;
        }
        assert_true(which == 0 || which == 2);
        picks[which]++;
        double qe = 0.0;
        for (int64_t i = 0; i < d; i++) {
            double want = sae.p.W_dec[j * d + i] * 0.2 * alive;
            assert_true(fabs(sae.p.W_enc[i * m + j] - want) < 1e-5);
            assert_true(sae.m.W_enc[i * m + j] == 0.0f && sae.v.W_enc[i * m + j] == 0.0f);
            assert_true(sae.m.W_dec[j * d + i] == 0.0f && sae.v.W_dec[j * d + i] == 0.0f);
            qe += (double)sae.p.W_enc[i * m + j] * sae.p.W_enc[i * m + j];
        }
        assert_true(fabs(sqrt(qe) - 0.2 * alive) < 1e-5);
        assert_true(sae.p.b_enc[j] == 0.0f && sae.m.b_enc[j] == 0.0f && sae.v.b_enc[j] == 0.0f);
        assert_int_equal(sae.since_fired[j], 0);
    }
    assert_int_equal(picks[1], 0);
    double frac2 = (double)picks[2] / (double)(m - 10); /* expected 0.8, sd ≈ 0.0063 */
    assert_true(fabs(frac2 - 0.8) < 0.03);
    /* a pure function: same inputs and rng state -> identical params */
    ms_sae other;
    make_sae(&other, &hp, 9);
    for (size_t e = 0; e < other.layout.n_params; e++) other.adam_m[e] = 1.0f, other.adam_v[e] = 2.0f;
    for (int64_t i = 0; i < d; i++) other.p.b_dec[i] = 0.25f * (float)(i % 3) - 0.1f;
    assert_int_equal(ms_sae_resample(&other, dead, x, loss, n, &r2), m - 10);
    assert_memory_equal(other.params, sae.params, sizeof(float) * sae.layout.n_params);
    assert_true(r.counter == r2.counter);
    ms_sae_free(&other);
    /* loss per input: the arch's per-row loss (relu-l1: MSE/d + λ·Σf) */
    float lp[3];
    ms_sae_loss_per_input(&sae, x, n, lp);
    float *f = malloc(sizeof(float) * (size_t)(n * m)), *xh = malloc(sizeof(float) * (size_t)(n * d));
    ms_sae_encode(&sae, f, x, n);
    ms_sae_decode(&sae, xh, f, n);
    for (int64_t b = 0; b < n; b++) {
        double q = 0.0, l1 = 0.0;
        for (int64_t i = 0; i < d; i++) q += pow(xh[b * d + i] - x[b * d + i], 2);
        for (int64_t j = 0; j < m; j++) l1 += f[b * m + j];
        assert_true(fabs(lp[b] - (q / d + hp.l1_coeff * l1)) < 1e-4 * (1 + lp[b]));
    }
    free(f), free(xh), free(keep), free(dead), free(x);
    ms_sae_free(&sae);
}

/* ---------------------------------------------------------------- init, RNG, median, scale */

static void test_init(void **state)
{
    (void)state;
    const int64_t d = 16, m = 64, B = 2;
    for (int arch = MS_SAE_RELU_L1; arch <= MS_SAE_APRIL_2024; arch++) {
        ms_sae_hparams hp = base_hp(arch, d, m, B);
        ms_sae a, b;
        ms_err err = {0};
        assert_int_equal(ms_sae_init(&a, &hp, &err), MS_OK);
        assert_int_equal(ms_sae_init(&b, &hp, &err), MS_OK);
        ms_rng r1, r2;
        ms_rng_init(&r1, 1234, 0), ms_rng_init(&r2, 1234, 0);
        ms_sae_init_params(&a, &r1);
        ms_sae_init_params(&b, &r2);
        assert_memory_equal(a.params, b.params, sizeof(float) * a.layout.n_params);
        double want = arch == MS_SAE_APRIL_2024 ? 0.1 : 1.0;
        for (int64_t j = 0; j < m; j++) {
            double q = 0.0;
            for (int64_t i = 0; i < d; i++) q += (double)a.p.W_dec[j * d + i] * a.p.W_dec[j * d + i];
            assert_true(fabs(sqrt(q) - want) < 1e-5);
        }
        bool tied = true;
        for (int64_t j = 0; j < m; j++)
            for (int64_t i = 0; i < d; i++) tied &= a.p.W_enc[i * m + j] == a.p.W_dec[j * d + i];
        assert_true(tied == (arch != MS_SAE_RELU_L1));
        if (arch == MS_SAE_RELU_L1) {
            /* Kaiming-uniform encoder: within ±√(6/d_in), variance 2/d_in */
            double bound = sqrt(6.0 / d), var = 0.0;
            for (int64_t e = 0; e < d * m; e++) {
                assert_true(fabs(a.p.W_enc[e]) <= bound);
                var += (double)a.p.W_enc[e] * a.p.W_enc[e] / (double)(d * m);
            }
            assert_true(fabs(var - 2.0 / d) < 0.2 * 2.0 / d);
        }
        if (arch == MS_SAE_JUMPRELU) assert_true(a.p.threshold[5] == (float)hp.threshold_init);
        ms_rng_init(&r2, 1235, 0);
        ms_sae_init_params(&b, &r2);
        assert_true(memcmp(a.params, b.params, sizeof(float) * a.layout.n_params) != 0);
        ms_sae_free(&a), ms_sae_free(&b);
    }
}

static void test_rng(void **state)
{
    (void)state;
    ms_rng a, b;
    ms_rng_init(&a, 42, 7);
    ms_rng_init(&b, 42, 8);
    assert_true(ms_rng_u64(&a) != ms_rng_u64(&b));
    ms_rng_init(&a, 42, 7);
    double mean = 0.0, var = 0.0;
    enum { N = 200000 };
    for (int i = 0; i < N; i++) {
        double u = ms_rng_uniform(&a);
        assert_true(u >= 0.0 && u < 1.0);
        mean += u / N;
    }
    assert_true(fabs(mean - 0.5) < 0.005);
    mean = 0.0;
    for (int i = 0; i < N; i++) {
        double z = ms_rng_normal(&a);
        mean += z / N, var += z * z / N;
    }
    assert_true(fabs(mean) < 0.01 && fabs(var - 1.0) < 0.02);
    /* saved state resumes the same stream */
    ms_rng saved = a;
    uint64_t v1 = ms_rng_u64(&a), v2 = ms_rng_u64(&a);
    assert_true(ms_rng_u64(&saved) == v1 && ms_rng_u64(&saved) == v2);
}

static void test_geometric_median(void **state)
{
    (void)state;
    /* 3 points at the origin and one far outlier: the median stays at the origin */
    float x[4 * 2] = {0, 0, 0, 0, 0, 0, 100, 100};
    float out[2];
    int it = ms_sae_geometric_median(out, x, 4, 2, 200, 1e-9);
    assert_true(it > 0);
    assert_true(fabs(out[0]) < 1e-3 && fabs(out[1]) < 1e-3);
    /* generic cloud: optimality, Σ (x_i − y)/‖x_i − y‖ ≈ 0 */
    const int64_t n = 500, d = 7;
    float *p = rand_x(n, d, 12);
    for (int64_t r = 0; r < n; r++) p[r * d] += (float)(r % 10 == 0 ? 30.0 : 1.0);
    float y[7];
    ms_sae_geometric_median(y, p, n, d, 500, 1e-10);
    double gsum[7] = {0}, mean0 = 0.0;
    for (int64_t r = 0; r < n; r++) {
        double q = 0.0;
        for (int64_t i = 0; i < d; i++) q += pow(p[r * d + i] - y[i], 2);
        q = sqrt(q);
        for (int64_t i = 0; i < d; i++) gsum[i] += (p[r * d + i] - y[i]) / q;
        mean0 += p[r * d] / (double)n;
    }
    for (int64_t i = 0; i < d; i++) assert_true(fabs(gsum[i]) / n < 1e-3);
    assert_true(y[0] < mean0 - 1.0); /* robust: pulled far less by the outliers than the mean */
    /* april input scale: mean norm after scaling is √d */
    double sc = ms_sae_input_scale(ms_sae_norm_sum(p, n, d), (double)n, d);
    for (int64_t e = 0; e < n * d; e++) p[e] *= (float)sc;
    assert_true(fabs(ms_sae_norm_sum(p, n, d) / n - sqrt((double)d)) < 1e-4);
    free(p);
}

/* export folds the input scale: the exported SAE on raw x equals the SAE on s·x, over s */
static void test_export_import(void **state)
{
    (void)state;
    const int64_t d = 8, m = 24, B = 6;
    ms_sae_hparams hp = base_hp(MS_SAE_APRIL_2024, d, m, B);
    ms_sae a, b;
    make_sae(&a, &hp, 31);
    a.input_scale = 2.5f;
    ms_err err = {0};
    assert_int_equal(ms_sae_init(&b, &hp, &err), MS_OK);
    float *We = malloc(sizeof(float) * (size_t)(d * m)), *Wd = malloc(sizeof(float) * (size_t)(d * m));
    float *be = malloc(sizeof(float) * (size_t)m), *bd = malloc(sizeof(float) * (size_t)d);
    float *th = malloc(sizeof(float) * (size_t)m);
    ms_sae_export(&a, We, be, Wd, bd, th);
    ms_sae_import(&b, We, be, Wd, bd, th);
    float *x = rand_x(B, d, 5);
    float *fa = malloc(sizeof(float) * (size_t)(B * m)), *fb = malloc(sizeof(float) * (size_t)(B * m));
    float *xa = malloc(sizeof(float) * (size_t)(B * d)), *xb = malloc(sizeof(float) * (size_t)(B * d));
    ms_sae_encode(&a, fa, x, B);
    ms_sae_encode(&b, fb, x, B);
    ms_sae_decode(&a, xa, fa, B);
    ms_sae_decode(&b, xb, fb, B);
    for (int64_t e = 0; e < B * m; e++) assert_true(fabs(fa[e] - fb[e]) < 1e-4);
    for (int64_t e = 0; e < B * d; e++) assert_true(fabs(xa[e] / 2.5f - xb[e]) < 1e-4);
    free(We), free(Wd), free(be), free(bd), free(th), free(x), free(fa), free(fb), free(xa), free(xb);
    ms_sae_free(&a), ms_sae_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_relu_l1),
        cmocka_unit_test(test_fd_topk),
        cmocka_unit_test(test_fd_topk_aux),
        cmocka_unit_test(test_fd_batchtopk),
        cmocka_unit_test(test_fd_batchtopk_aux),
        cmocka_unit_test(test_fd_jumprelu),
        cmocka_unit_test(test_fd_april),
        cmocka_unit_test(test_jumprelu_threshold_l0),
        cmocka_unit_test(test_paths_relu_l1),
        cmocka_unit_test(test_paths_topk),
        cmocka_unit_test(test_paths_batchtopk),
        cmocka_unit_test(test_paths_jumprelu),
        cmocka_unit_test(test_paths_april),
        cmocka_unit_test(test_auto_path),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_topk_kernels),
        cmocka_unit_test(test_sparse_kernels),
        cmocka_unit_test(test_step_relu_l1),
        cmocka_unit_test(test_init_encoder),
        cmocka_unit_test(test_step_clip_and_numeric),
        cmocka_unit_test(test_step_jumprelu_batchtopk),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_resample),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_geometric_median),
        cmocka_unit_test(test_export_import),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
