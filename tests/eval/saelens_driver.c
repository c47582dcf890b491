/* Test driver: for each recipe, a random SAE (input scale ≠ 1 for april-2024, a trained-like
 * threshold for jumprelu/batchtopk) encodes random inputs with monosem's own inference, is
 * exported with ms_saelens_save, and read back with ms_saelens_open (what eval uses).
 * Writes OUT/<arch>/{x.f32, f.f32, f_reopened.f32} and OUT/<arch>/saelens/.
 * usage: saelens_driver OUT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monosem/sae.h"

enum { D_IN = 24, D_SAE = 64, ROWS = 50, K = 5 };

static int write_f32(const char *dir, const char *name, const float *v, size_t n)
{
    if (strlen(dir) + strlen(name) + 2 > 4096) return 1;
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(v, sizeof *v, n, f) != n) return 1;
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) return fprintf(stderr, "usage: saelens_driver OUT\n"), 2;
    const int archs[] = {MS_SAE_RELU_L1, MS_SAE_TOPK, MS_SAE_BATCHTOPK, MS_SAE_JUMPRELU, MS_SAE_APRIL_2024};
    static float x[ROWS * D_IN], f[ROWS * D_SAE], f2[ROWS * D_SAE], dens[D_SAE];
    ms_err err = {0};
    int fails = 0;
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        ms_sae_hparams hp = {.arch = archs[a], .d_in = D_IN, .d_sae = D_SAE, .max_batch = ROWS, .k = K,
                             .k_aux = 8, .l1_coeff = 1e-3, .threshold_init = 0.05, .bandwidth = 1e-3,
                             .lr = 1e-4, .beta1 = 0.9, .beta2 = 0.999, .adam_eps = 1e-8, .steps = 10,
                             .dead_tokens = 1000};
        ms_sae sae, back;
        ms_rng rng;
        ms_rng_init(&rng, 7, (uint64_t)a);
        if (ms_sae_init(&sae, &hp, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        ms_sae_init_params(&sae, &rng);
        for (int j = 0; j < D_SAE; j++) {
            sae.p.b_enc[j] = (float)(0.1 * ms_rng_normal(&rng));
            sae.p.threshold[j] = (float)(0.2 * ms_rng_uniform(&rng));
            dens[j] = (float)(-1.0 - 3.0 * ms_rng_uniform(&rng));
        }
        for (int i = 0; i < D_IN; i++) sae.p.b_dec[i] = (float)(0.2 * ms_rng_normal(&rng));
        if (archs[a] == MS_SAE_BATCHTOPK) sae.threshold_set = true;
        if (archs[a] == MS_SAE_APRIL_2024) sae.input_scale = 2.75f;
        for (int i = 0; i < ROWS * D_IN; i++) x[i] = (float)ms_rng_normal(&rng);
        ms_sae_encode(&sae, f, x, ROWS);
        char dir[2048], lens[2100];
        snprintf(dir, sizeof dir, "%s/%s", argv[1], ms_enum_name("sae.arch", archs[a]));
        snprintf(lens, sizeof lens, "%s/saelens", dir);
        ms_saelens_meta meta = {.hook_name = "blocks.0.mlp.hook_post", .model_name = "test-model",
                                .dataset_path = "acts.h5", .context_size = 128, .l1_coefficient = 1e-3,
                                .training_tokens = 12345, .density_source = "test"};
        ms_saelens_info info;
        if (ms_saelens_save(&sae, lens, dens, &meta, &err) ||
            ms_saelens_open(&back, lens, ROWS, &info, &err))
            return fprintf(stderr, "%s\n", err.msg), 1;
        ms_sae_encode(&back, f2, x, ROWS);
        fails += write_f32(dir, "x.f32", x, ROWS * D_IN) + write_f32(dir, "f.f32", f, ROWS * D_SAE) +
                 write_f32(dir, "f_reopened.f32", f2, ROWS * D_SAE);
        if (strcmp(info.hook_name, meta.hook_name) || info.prepend_bos || info.context_size != 128 ||
            (archs[a] == MS_SAE_TOPK && info.k != K)) {
            fprintf(stderr, "%s: cfg.json read back wrong (hook %s, prepend_bos %d, context %lld, k %lld)\n",
                    dir, info.hook_name, info.prepend_bos, (long long)info.context_size, (long long)info.k);
            fails++;
        }
        ms_sae_free(&sae);
        ms_sae_free(&back);
    }
    return fails ? 1 : 0;
}
