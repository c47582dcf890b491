/* tests/sae/ref_driver.c: runs two forward_backward + step iterations of one arch on random
 * data and dumps every input and output as raw little-endian arrays for ref_sae.py (NumPy). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monosem/sae.h"

static int dump(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes) {
        fprintf(stderr, "ref_driver: cannot write %s\n", path);
        if (f) fclose(f);
        return 1;
    }
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ref_driver OUTDIR ARCH(relu-l1|topk|batchtopk|jumprelu|april-2024)\n");
        return 2;
    }
    const char *dir = argv[1], *an = argv[2];
    const char *names[] = {"relu-l1", "topk", "batchtopk", "jumprelu", "april-2024"};
    int arch = -1;
    for (int a = 0; a < 5; a++)
        if (!strcmp(an, names[a])) arch = a;
    if (arch < 0) return 2;
    const int64_t d = 24, m = 64, B = 32, Bg = 48; /* local rows 32 of a global batch of 48 */
    ms_sae_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.arch = arch;
    hp.d_in = d, hp.d_sae = m, hp.max_batch = B;
    hp.k = 6, hp.k_aux = 10, hp.aux_coeff = arch == MS_SAE_BATCHTOPK ? 0.25 : 1.0 / 32;
    hp.dead_tokens = 1000;
    hp.l1_coeff = arch == MS_SAE_APRIL_2024 ? 2.0 : 0.1;
    hp.threshold_init = 0.3, hp.bandwidth = 0.2, hp.l0_coeff = 0.05;
    hp.lr = 2e-3, hp.beta1 = 0.9, hp.beta2 = 0.999, hp.adam_eps = 1e-8;
    hp.steps = 100;
    if (arch == MS_SAE_APRIL_2024) hp.lambda_warmup_frac = 0.05, hp.lr_decay_frac = 0.2,
                                   hp.grad_clip = 0.05;
    ms_sae sae;
    ms_err err = {0};
    if (ms_sae_init(&sae, &hp, &err) != MS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    ms_rng r;
    ms_rng_init(&r, 2024, (uint64_t)arch);
    ms_sae_init_params(&sae, &r);
    for (int64_t j = 0; j < m; j++) sae.p.b_enc[j] = (float)(0.2 * ms_rng_normal(&r) - 0.1);
    for (int64_t i = 0; i < d; i++) sae.p.b_dec[i] = (float)(0.3 * ms_rng_normal(&r));
    if (arch == MS_SAE_JUMPRELU)
        for (int64_t j = 0; j < m; j++) sae.p.threshold[j] = (float)(0.1 + 0.5 * ms_rng_uniform(&r));
    if (arch == MS_SAE_APRIL_2024) sae.input_scale = 1.3f, sae.step = 3; /* inside the warm-up */
    uint8_t *dead = calloc((size_t)m, 1);
    for (int64_t j = 0; j < m; j += 3) sae.since_fired[j] = hp.dead_tokens, dead[j] = 1;
    float *x = malloc(sizeof(float) * (size_t)(B * d));
    for (int64_t e = 0; e < B * d; e++) x[e] = (float)ms_rng_normal(&r);
    size_t P = sae.layout.n_params, S = ms_sae_stats_len(&sae);
    double *st = malloc(sizeof(double) * S);
    char meta[2048];
    snprintf(meta, sizeof meta,
             "{\"arch\": \"%s\", \"d\": %lld, \"m\": %lld, \"B\": %lld, \"Bg\": %lld, \"k\": %lld, "
             "\"k_aux\": %lld, \"aux_coeff\": %.17g, \"l1\": %.17g, \"l0\": %.17g, \"bandwidth\": "
             "%.17g, \"lr\": %.17g, \"beta1\": %.17g, \"beta2\": %.17g, \"eps\": %.17g, "
             "\"steps\": %lld, \"warmup\": %.17g, \"decay\": %.17g, \"clip\": %.17g, \"scale\": "
             "%.9g, \"step0\": %lld, \"layout\": [%zu, %zu, %zu, %zu, %zu, %zu], \"stats_len\": %zu}\n",
             an, (long long)d, (long long)m, (long long)B, (long long)Bg, (long long)hp.k,
             (long long)hp.k_aux, hp.aux_coeff, hp.l1_coeff, hp.l0_coeff, hp.bandwidth, hp.lr,
             hp.beta1, hp.beta2, hp.adam_eps, (long long)hp.steps, hp.lambda_warmup_frac,
             hp.lr_decay_frac, hp.grad_clip, (double)sae.input_scale, (long long)sae.step,
             sae.layout.W_enc, sae.layout.b_enc, sae.layout.W_dec, sae.layout.b_dec,
             sae.layout.threshold, P, S);
    char path[4096];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fputs(meta, f);
    fclose(f);
    int bad = dump(dir, "params0", sae.params, P * 4) + dump(dir, "x", x, (size_t)(B * d) * 4) +
              dump(dir, "dead", dead, (size_t)m);
    for (int it = 1; it <= 2; it++) {
        char nm[32];
        if (ms_sae_forward_backward(&sae, x, B, Bg, st, &err) != MS_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        snprintf(nm, sizeof nm, "grads%d", it), bad += dump(dir, nm, sae.grads, P * 4);
        snprintf(nm, sizeof nm, "stats%d", it), bad += dump(dir, nm, st, S * 8);
        double lr = ms_sae_lr_at(&hp, sae.step);
        if (ms_sae_step(&sae, lr, st, NULL, &err) != MS_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        snprintf(nm, sizeof nm, "params%d", it), bad += dump(dir, nm, sae.params, P * 4);
        snprintf(nm, sizeof nm, "m%d", it), bad += dump(dir, nm, sae.adam_m, P * 4);
        snprintf(nm, sizeof nm, "v%d", it), bad += dump(dir, nm, sae.adam_v, P * 4);
    }
    free(st), free(x), free(dead);
    ms_sae_free(&sae);
    return bad ? 1 : 0;
}
