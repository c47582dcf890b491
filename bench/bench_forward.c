/* bench/bench_forward.c: forward tokens/s of the paper-sized model (to the MLP hook and through
 * the unembedding), against the sgemm FLOP/s limit for the same FLOPs and against PyTorch CPU
 * (bench_forward_torch.py) on the same weights and thread count.
 * usage: bench_forward [--B 32] [--T 128] [--vocab 50257] [--reps 10] [--rounds 1] [--dir DIR]
 *                      [--torch SCRIPT]
 * Threads: OPENBLAS_NUM_THREADS (default: OpenBLAS's own, all cores). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "monosem/model.h"

static double best_of(const ms_model *m, ms_model_acts *a, const int32_t *tok, int B, int T,
                      const ms_forward_opts *o, int reps)
{
    ms_err err = {0};
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) { /* first run is a warm-up */
        double t0 = bench_now();
        if (ms_model_forward(m, a, tok, B, T, o, &err)) {
            fprintf(stderr, "forward failed: %s\n", err.msg);
            exit(1);
        }
        double dt = bench_now() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv)
{
    int B = 32, T = 128, V = 50257, reps = 10, rounds = 1;
    const char *dir = "/tmp/monosem_bench_forward", *torch = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--B")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--T")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--vocab")) V = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--torch")) torch = argv[i + 1];
    }
    ms_model_config cfg = {.n_layers = 1, .d_model = 128, .d_mlp = 512, .n_heads = 4, .d_head = 32,
                           .n_ctx = 128, .d_vocab = V, .act_fn = MS_ACT_RELU,
                           .normalization = MS_NORM_LN, .eps = 1e-5f};
    if (T > cfg.n_ctx) cfg.n_ctx = T;
    ms_err err = {0};
    ms_model m;
    if (ms_model_init(&m, &cfg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    ms_model_init_random(&m, 1234, 0.05f);
    if (ms_model_save(&m, dir, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int32_t *tok = malloc((size_t)B * T * sizeof *tok), *tg = malloc((size_t)B * T * sizeof *tg);
    float *hook = malloc((size_t)B * T * cfg.d_mlp * sizeof(float));
    uint64_t s = 42;
    for (int i = 0; i < B * T; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((s >> 33) % (uint64_t)V);
    }
    ms_model_next_targets(tg, tok, B, T);
    char tpath[4096];
    snprintf(tpath, sizeof tpath, "%s/tokens.bin", dir);
    FILE *tf = fopen(tpath, "wb");
    if (tf) {
        fwrite(tok, sizeof *tok, (size_t)B * T, tf);
        fclose(tf);
    }
    ms_model_acts a;
    if (ms_model_acts_init(&a, &cfg, B, T, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int threads = openblas_get_num_threads();
    printf("bench_forward: 1 layer, d_model 128, d_mlp 512, 4 heads x 32, relu, vocab %d, batch %d x ctx %d, "
           "%d OpenBLAS thread(s), best of %d\n",
           V, B, T, threads, reps);
    bench_affinity_report();

    /* FLOPs per token (multiply-adds x 2) of what each variant computes usefully: causal
     * attention counts the lower triangle (average (T+1)/2 keys per query). */
    const double C = 128, M = 512, HD = 128, N = (double)B * T;
    double att = 2.0 * 2.0 * HD * (T + 1) / 2.0;
    double fl_mlp = 2.0 * C * 3 * HD + att + 2.0 * HD * C + 2.0 * C * M;
    double fl_full = fl_mlp + 2.0 * M * C + 2.0 * C * V;
    double peak_mlp = 0, peak_full = 0; /* measured in every round too: best of all */

    ms_hook h = {0, MS_HOOK_MLP_POST};
    ms_hook_capture cap = {h, hook};
    ms_forward_opts o_mlp = {.stop_after = &h, .captures = &cap, .n_captures = 1};
    ms_forward_opts o_full = {0};
    ms_forward_opts o_loss = {.targets = tg};
    /* Rounds alternate C and PyTorch so both see the same background load; best of each. */
    double r_mlp = 0, r_full = 0, r_loss = 0, tm = 0, tf2 = 0, tl = 0;
    for (int round = 0; round < rounds; round++) {
        peak_mlp = fmax(peak_mlp, bench_sgemm_flops(B * T, (int)M, (int)C, 5));
        peak_full = fmax(peak_full, bench_sgemm_flops(B * T, V, (int)C, 3));
        double t_mlp = best_of(&m, &a, tok, B, T, &o_mlp, reps);
        double t_full = best_of(&m, &a, tok, B, T, &o_full, reps > 3 ? reps / 2 : reps);
        double t_loss = best_of(&m, &a, tok, B, T, &o_loss, reps > 3 ? reps / 2 : reps);
        r_mlp = fmax(r_mlp, N / t_mlp);
        r_full = fmax(r_full, N / t_full);
        r_loss = fmax(r_loss, N / t_loss);
        printf("round %d: C %.0f / %.0f / %.0f tokens/s (to MLP / logits / logits+loss)\n", round, N / t_mlp,
               N / t_full, N / t_loss);
        if (!torch) continue;
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %d %d %d %d", torch, dir, B, T, threads, reps);
        FILE *p = popen(cmd, "r");
        char line[512];
        double x;
        while (p && fgets(line, sizeof line, p)) {
            if (sscanf(line, "torch_mlp_tokens_per_s %lf", &x) == 1) tm = fmax(tm, x);
            if (sscanf(line, "torch_logits_tokens_per_s %lf", &x) == 1) tf2 = fmax(tf2, x);
            if (sscanf(line, "torch_loss_tokens_per_s %lf", &x) == 1) tl = fmax(tl, x);
            if (round == 0 && !strncmp(line, "torch ", 6)) fputs(line, stdout);
        }
        if (p) pclose(p);
        printf("round %d: PyTorch best so far %.0f / %.0f / %.0f tokens/s\n", round, tm, tf2, tl);
    }

    double lim_mlp = peak_mlp / fl_mlp, lim_full = peak_full / fl_full;
    printf("sgemm peak: %.1f GFLOP/s at (%d x %d x %d), %.1f GFLOP/s at (%d x %d x %d)\n", peak_mlp * 1e-9, B * T,
           (int)C, (int)M, peak_full * 1e-9, B * T, (int)C, V);
    printf("to mlp.hook_post:        %10.0f tokens/s  (%.1f GFLOP/s, %.0f%% of the sgemm limit %.0f tokens/s)\n",
           r_mlp, r_mlp * fl_mlp * 1e-9, 100.0 * r_mlp / lim_mlp, lim_mlp);
    printf("through the unembedding: %10.0f tokens/s  (%.1f GFLOP/s, %.0f%% of the sgemm limit %.0f tokens/s)\n",
           r_full, r_full * fl_full * 1e-9, 100.0 * r_full / lim_full, lim_full);
    printf("  + per-token loss:      %10.0f tokens/s\n", r_loss);
    bench_report("forward_mlp_tokens_per_s", r_mlp, "tokens/s");
    bench_report("forward_logits_tokens_per_s", r_full, "tokens/s");
    bench_report("forward_loss_tokens_per_s", r_loss, "tokens/s");
    if (tm > 0 && tf2 > 0 && tl > 0) {
        printf("PyTorch %d threads: %.0f / %.0f / %.0f tokens/s\n", threads, tm, tf2, tl);
        printf("vs PyTorch (same weights, tokens, threads): to MLP %.2fx, through unembedding %.2fx, with loss %.2fx\n",
               r_mlp / tm, r_full / tf2, r_loss / tl);
    }
    free(tok);
    free(tg);
    free(hook);
    ms_model_acts_free(&a);
    ms_model_free(&m);
    return 0;
}
