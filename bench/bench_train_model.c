/* bench/bench_train_model.c: training tokens/s of the demo model (forward + backward + one
 * gradient allreduce + AdamW per step, as `monosem train-model` runs it), and the achieved
 * model FLOP/s against the sgemm peak measured in the same run on the same cores.
 * usage: mpirun -n P bench_train_model [--B 32] [--T 128] [--vocab 4257] [--steps 20]
 * B is the global batch (split over ranks); threads per rank: from the CPU binding (or --threads).
 * PyTorch CPU baseline of the same step: /usr/bin/python3 bench/bench_train_model_torch.py
 * --threads N (same shapes, AdamW, clip). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "monosem/model.h"

static void die(const ms_err *e)
{
    fprintf(stderr, "bench_train_model: %s\n", e->msg);
    exit(1);
}

int main(int argc, char **argv)
{
    ms_comm comm;
    ms_err err = {0};
    if (ms_comm_init(&comm, &argc, &argv, &err)) die(&err);
    int B = 32, T = 128, V = 4257, steps = 20, threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--B")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--T")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--vocab")) V = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    }
    threads = ms_blas_threads_set(&comm, threads);
    ms_model_config c = {.n_layers = 1, .d_model = 128, .d_mlp = 512, .n_heads = 4, .d_head = 32,
                         .n_ctx = T, .d_vocab = V, .act_fn = MS_ACT_RELU, .normalization = MS_NORM_LN,
                         .eps = 1e-5f};
    int64_t lo, hi;
    ms_shard_range(B, comm.rank, comm.size, &lo, &hi);
    int bl = (int)(hi - lo);
    ms_model m;
    ms_model_acts a;
    ms_model_backbuf bb;
    ms_model_params gv;
    if (ms_model_init(&m, &c, &err) || ms_model_acts_init(&a, &c, bl, T, 0, &err) ||
        ms_model_backbuf_init(&bb, &c, bl, T, &err))
        die(&err);
    ms_model_init_random(&m, 1, 0.02f);
    size_t np = m.n_params;
    float *g = calloc(np + 2, sizeof(float)), *am = calloc(np, sizeof(float)), *av = calloc(np, sizeof(float));
    if (ms_model_params_bind(&c, g, &gv, &err)) die(&err);
    int32_t *x = malloc((size_t)bl * T * sizeof *x), *y = malloc((size_t)bl * T * sizeof *y);
    uint64_t s = 12345 + (uint64_t)comm.rank;
    for (int i = 0; i < bl * T; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (int32_t)((s >> 33) % (uint64_t)V);
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        y[i] = (int32_t)((s >> 33) % (uint64_t)V);
    }
    const float scale = 1.0f / (float)(B * T);
    /* sgemm peak on the same cores: every rank at once with its thread count, on the unembed
     * shape of its slice (the dominant GEMM); measured before and after, the best kept */
    ms_comm_barrier(&comm);
    double peak_before = bench_sgemm_flops(bl * T, V, c.d_model, 5);
    double best = 1e30, sum = 0, t_fwd = 0, t_bwd = 0, t_red = 0, t_opt = 0;
    for (int it = 0; it < steps + 2; it++) { /* two warm-up steps */
        ms_comm_barrier(&comm);
        double t0 = bench_now();
        memset(g, 0, (np + 2) * sizeof(float));
        ms_forward_opts o = {.targets = y};
        if (ms_model_forward(&m, &a, x, bl, T, &o, &err)) die(&err);
        double t1 = bench_now();
        if (ms_model_backward(&m, &a, &bb, &gv, x, y, scale, &err)) die(&err);
        double t2 = bench_now();
        if (ms_comm_allreduce_f32(&comm, g, np + 2, &err)) die(&err);
        double t3 = bench_now();
        double norm = ms_train_grad_norm(g, np);
        if (norm > 1.0)
            for (size_t i = 0; i < np; i++) g[i] *= (float)(1.0 / norm);
        for (int i = 0; i < m.n_tensors; i++) {
            const ms_model_tensor *t = &m.tensors[i];
            ms_train_adamw_update(m.params + t->offset, g + t->offset, am + t->offset, av + t->offset, t->numel, 1e-3f,
                            0.9f, 0.95f, 1e-8f, ms_model_tensor_decays(t) ? 0.1f : 0.0f, it + 1);
        }
        double t4 = bench_now();
        double dt = t4 - t0, mx, mn, avg;
        ms_comm_minavgmax(&comm, dt, &mn, &avg, &mx); /* a step ends when the slowest rank does */
        if (it >= 2) {
            best = mx < best ? mx : best;
            sum += mx;
            t_fwd += t1 - t0;
            t_bwd += t2 - t1;
            t_red += t3 - t2;
            t_opt += t4 - t3;
        }
    }
    /* model FLOPs per token: matmuls (qkv, W_O, W_in, W_out, W_U) and causal attention,
     * forward x 3 for forward + backward */
    const double C = c.d_model, M = c.d_mlp, HD = c.n_heads * c.d_head;
    double fwd_tok = 2.0 * (4 * C * HD + 2 * C * M + C * V) + 2.0 * 2.0 * HD * (T + 1) / 2.0;
    double flop_tok = 3.0 * fwd_tok;
    double tok = (double)B * T;
    ms_comm_barrier(&comm);
    double peak_rank = bench_sgemm_flops(bl * T, V, (int)C, 5), peak = 0;
    if (peak_before > peak_rank) peak_rank = peak_before;
    double peaks[1] = {peak_rank};
    if (ms_comm_allreduce_f64(&comm, peaks, 1, &err)) die(&err);
    peak = peaks[0];
    if (comm.rank == 0) {
        double tps_best = tok / best, tps_mean = tok * steps / sum;
        printf("bench_train_model: d_model 128, d_mlp 512, 4x32 heads, vocab %d, ctx %d, global batch %d "
               "(%d tokens/step), %zu params, %d rank(s) x %d thread(s), %d steps\n",
               V, T, B, B * T, np, comm.size, threads, steps);
        bench_affinity_report();
        bench_report("train tokens/s (best step)", tps_best, "tokens/s");
        bench_report("train tokens/s (mean step)", tps_mean, "tokens/s");
        bench_report("model FLOP/token (fwd+bwd)", flop_tok / 1e6, "MFLOP");
        bench_report("achieved (best step)", flop_tok * tps_best / 1e9, "GFLOP/s");
        bench_report("sgemm peak, same cores", peak / 1e9, "GFLOP/s");
        bench_report("achieved / sgemm peak", flop_tok * tps_best / peak, "ratio");
        printf("  rank 0 step split: forward %.1f%%, backward %.1f%%, allreduce %.1f%%, clip+AdamW %.1f%%\n",
               100 * t_fwd / (t_fwd + t_bwd + t_red + t_opt), 100 * t_bwd / (t_fwd + t_bwd + t_red + t_opt),
               100 * t_red / (t_fwd + t_bwd + t_red + t_opt), 100 * t_opt / (t_fwd + t_bwd + t_red + t_opt));
    }
    ms_model_params_unbind(&gv);
    free(g);
    free(am);
    free(av);
    free(x);
    free(y);
    ms_model_backbuf_free(&bb);
    ms_model_acts_free(&a);
    ms_model_free(&m);
    ms_comm_finalize(&comm);
    return 0;
}
