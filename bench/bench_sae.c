/* bench/bench_sae.c: steady-state SAE training throughput (forward_backward + Adam step) for the
 * issue's shapes on 1 and 2 threads, dense and sparse regimes, against the sgemm peak measured
 * in the same run and (with --torch) PyTorch CPU running the same relu-l1 step.
 *
 * usage: bench_sae [--steps N] [--batch B] [--threads 1,2] [--shapes all|small|DxM] [--torch]
 *                  [--path auto|dense|sparse] [--profile] [--mpi]
 *        mpirun -n 2 bench_sae --mpi --threads 1   (data parallel: allreduce share of a step)
 * Regimes: "dense"  relu-l1 from a fresh init (about half the features fire);
 *          "sparse" relu-l1 on a trained-like dictionary: inputs are sparse sums of L true
 *                   directions (L ≈ 0.5% of d_sae), W_dec = the true directions, W_enc = W_decᵀ,
 *                   negative b_enc, so f has L0 near L as after training;
 *          "topk"   topk (k = 32) on the same data;
 *          "topk+aux" the same with a quarter of the latents dead, so AuxK (k_aux 256) runs.
 * FLOP/s are dense-equivalent (10·d_in·d_sae per activation) in every regime. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "monosem/sae.h"
#include "sae_internal.h"

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "."
#endif

typedef struct {
    int64_t d, m;
} shape;

static int g_profile = 0;
static ms_comm *g_comm = NULL; /* --mpi: data parallel over the ranks */
static double g_allreduce_frac = 0.0;
static double g_cpu_rate = 0.0; /* activations per process-CPU-second of the best step */
static double cpu_now(void);

/* Sparse synthetic data from a random unit dictionary D (m,d): each row a sum of L
 * directions with coefficients in [0.5,1.5]. */
static void make_sparse_data(float *x, float *D, int64_t B, int64_t d, int64_t m, int64_t L,
                             ms_rng *r)
{
    for (int64_t e = 0; e < m * d; e++) D[e] = (float)ms_rng_normal(r);
    for (int64_t j = 0; j < m; j++) {
        double q = 0.0;
        for (int64_t i = 0; i < d; i++) q += (double)D[j * d + i] * D[j * d + i];
        float s = (float)(1.0 / sqrt(q));
        for (int64_t i = 0; i < d; i++) D[j * d + i] *= s;
    }
    memset(x, 0, sizeof(float) * (size_t)(B * d));
    for (int64_t b = 0; b < B; b++)
        for (int64_t l = 0; l < L; l++) {
            int64_t j = (int64_t)(ms_rng_uniform(r) * (double)m);
            float c = (float)(0.5 + ms_rng_uniform(r));
            for (int64_t i = 0; i < d; i++) x[b * d + i] += c * D[j * d + i];
        }
}

static double run(int arch, shape sh, int64_t B, int steps, int regime, int path, double *l0_out,
                  int *sparse_out)
{
    ms_sae_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.arch = arch;
    hp.d_in = sh.d, hp.d_sae = sh.m, hp.max_batch = B;
    hp.k = 32, hp.k_aux = 256, hp.aux_coeff = 1.0 / 32, hp.dead_tokens = 10000000;
    hp.l1_coeff = 0.004, hp.lr = 1e-4, hp.beta1 = 0.9, hp.beta2 = 0.999, hp.adam_eps = 1e-8;
    hp.steps = 1000;
    ms_sae sae;
    ms_err err = {0};
    if (ms_sae_init(&sae, &hp, &err) != MS_OK) {
        fprintf(stderr, "bench_sae: %s\n", err.msg);
        exit(1);
    }
    sae_set_path(&sae, path);
    ms_rng r;
    ms_rng_init(&r, 1, 2);
    float *x = malloc(sizeof(float) * (size_t)(B * sh.d));
    float *D = malloc(sizeof(float) * (size_t)(sh.m * sh.d));
    if (regime == 0) {
        ms_sae_init_params(&sae, &r);
        for (int64_t e = 0; e < B * sh.d; e++) x[e] = (float)ms_rng_normal(&r);
    } else {
        int64_t L = sh.m / 200 > 1 ? sh.m / 200 : 1;
        make_sparse_data(x, D, B, sh.d, sh.m, L, &r);
        memcpy(sae.p.W_dec, D, sizeof(float) * (size_t)(sh.m * sh.d));
        for (int64_t j = 0; j < sh.m; j++)
            for (int64_t i = 0; i < sh.d; i++) sae.p.W_enc[i * sh.m + j] = D[j * sh.d + i];
        /* interference of L random unit directions ~ √(L/d): cut at 3σ */
        float cut = (float)(3.0 * sqrt((double)L / (double)sh.d) * 0.75 + 0.25);
        for (int64_t j = 0; j < sh.m; j++) sae.p.b_enc[j] = -cut;
    }
    if (regime == 3) /* a quarter of the latents dead: AuxK (k_aux 256) active every step */
        for (int64_t j = 0; j < sh.m; j += 4) sae.since_fired[j] = hp.dead_tokens << 20;
    size_t S = ms_sae_stats_len(&sae);
    double *st = malloc(sizeof(double) * S);
    double best = 1e30, l0 = 0.0;
    int P = g_comm ? g_comm->size : 1;
    int64_t Bl = B / P; /* local rows; the global batch is B */
    for (int it = 0; it < steps + 1; it++) { /* first step is warm-up */
        if (g_comm) ms_comm_barrier(g_comm);
        double t0 = bench_now(), tr = 0.0, c0 = cpu_now();
        if (ms_sae_forward_backward(&sae, x, Bl, Bl * P, st, &err) != MS_OK) {
            fprintf(stderr, "bench_sae: %s\n", err.msg);
            exit(1);
        }
        if (g_comm) {
            ms_comm_barrier(g_comm); /* time the reduction itself, not the wait for a slow rank */
            double ta = bench_now();
            if (ms_comm_allreduce_f32(g_comm, sae.grads, sae.layout.n_params, &err) != MS_OK ||
                ms_comm_allreduce_f64(g_comm, st, S, &err) != MS_OK) {
                fprintf(stderr, "bench_sae: %s\n", err.msg);
                exit(1);
            }
            tr = bench_now() - ta;
        }
        if (ms_sae_step(&sae, 1e-6, st, NULL, &err) != MS_OK) {
            fprintf(stderr, "bench_sae: %s\n", err.msg);
            exit(1);
        }
        double dt = bench_now() - t0, dc = cpu_now() - c0;
        if (it > 0 && (it == 1 || (double)B / dc > g_cpu_rate)) g_cpu_rate = (double)B / dc;
        if (g_comm) { /* the slowest rank's step is the step */
            double mn, avg, mx;
            ms_comm_minavgmax(g_comm, dt, &mn, &avg, &mx);
            dt = mx;
            ms_comm_minavgmax(g_comm, tr, &mn, &avg, &mx);
            tr = avg;
        }
        if (it > 0 && dt < best) best = dt, g_allreduce_frac = tr / dt;
        l0 = ms_sae_stats_l0(st);
    }
    if (g_profile) {
        const char *nm[10] = {"enc", "act", "stats", "dec", "resid", "bwd1", "bwd2", "bwd3", "tail", "step"};
        fprintf(stderr, "  profile ms/step:");
        for (int k = 0; k < 10; k++) fprintf(stderr, " %s %.1f", nm[k], 1e3 * sae.ws->prof[k] / (steps + 1));
        fprintf(stderr, "\n");
    }
    *l0_out = l0;
    *sparse_out = sae_last_sparse(&sae);
    free(st), free(x), free(D);
    ms_sae_free(&sae);
    return (double)B / best;
}

/* process CPU seconds: with one thread, robust to other jobs sharing the cores */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Dense vs sparse relu-l1 step time as the active fraction of f varies (calibrates
 * SAE_SPARSE_CROSSOVER): Gaussian inputs, fresh init, b_enc shifted to hit each density. */
static void crossover(shape sh, int64_t B, int steps)
{
    ms_sae_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.arch = MS_SAE_RELU_L1;
    hp.d_in = sh.d, hp.d_sae = sh.m, hp.max_batch = B;
    hp.sparse_density = 0.5; /* capacity for the sparse path up to 50% */
    hp.l1_coeff = 0.004, hp.lr = 1e-4, hp.beta1 = 0.9, hp.beta2 = 0.999, hp.adam_eps = 1e-8;
    hp.steps = 1000;
    ms_sae sae;
    ms_err err = {0};
    if (ms_sae_init(&sae, &hp, &err) != MS_OK) {
        fprintf(stderr, "bench_sae: %s\n", err.msg);
        exit(1);
    }
    ms_rng r;
    ms_rng_init(&r, 5, 5);
    ms_sae_init_params(&sae, &r);
    float *x = malloc(sizeof(float) * (size_t)(B * sh.d));
    for (int64_t e = 0; e < B * sh.d; e++) x[e] = (float)ms_rng_normal(&r);
    float *f = malloc(sizeof(float) * (size_t)(B * sh.m));
    ms_sae_encode(&sae, f, x, B);
    int64_t ns = B * sh.m < (1 << 22) ? B * sh.m : (1 << 22);
    qsort(f, (size_t)ns, sizeof(float), cmp_f);
    double *st = malloc(sizeof(double) * ms_sae_stats_len(&sae));
    const double dens[] = {0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.12, 0.2};
    printf("# crossover %lldx%lld batch %lld: forward_backward CPU ms (1 thread) dense vs sparse\n", (long long)sh.d,
           (long long)sh.m, (long long)B);
    for (size_t q = 0; q < sizeof dens / sizeof dens[0]; q++) {
        float cut = f[(int64_t)((1.0 - dens[q]) * (double)(ns - 1))];
        for (int64_t j = 0; j < sh.m; j++) sae.p.b_enc[j] = -cut;
        double best[2] = {1e30, 1e30};
        for (int it = 0; it < steps + 1; it++)
            for (int pth = 0; pth < 2; pth++) {
                sae_set_path(&sae, pth ? SAE_PATH_SPARSE : SAE_PATH_DENSE);
                double t0 = cpu_now();
                ms_sae_forward_backward(&sae, x, B, B, st, &err);
                double dt = cpu_now() - t0;
                if (it > 0 && dt < best[pth]) best[pth] = dt;
            }
        printf("density %.3f (L0 %.1f): dense %.1f ms, sparse %.1f ms\n", dens[q],
               ms_sae_stats_l0(st), 1e3 * best[0], 1e3 * best[1]);
        fflush(stdout);
    }
    free(st), free(f), free(x);
    ms_sae_free(&sae);
}

/* Runs the PyTorch twin and returns its activations/s (0 if unavailable). */
static double g_torch_cpu = 0.0;
static double torch_rate(shape sh, int64_t B, int threads, int regime, int steps)
{
    g_torch_cpu = 0.0;
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             /* torch's BLAS keeps its own thread pool: pin it to the same count */
             "OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d MKL_NUM_THREADS=%d "
             "/usr/bin/python3 %s/bench_sae_torch.py --d %lld --m %lld --batch %lld --threads %d "
             "--regime %s --steps %d 2>/dev/null",
             threads, threads, threads, BENCH_SOURCE_DIR, (long long)sh.d, (long long)sh.m, (long long)B, threads,
             regime == 0 ? "dense" : regime == 1 ? "sparse" : "topk", steps);
    FILE *p = popen(cmd, "r");
    if (!p) return 0.0;
    char line[512];
    double rate = 0.0;
    while (fgets(line, sizeof line, p)) {
        double v;
        if (sscanf(line, "torch_act_per_s %lf", &v) == 1) rate = v;
        if (sscanf(line, "torch_act_per_cpu_s %lf", &v) == 1) g_torch_cpu = v;
    }
    pclose(p);
    return rate;
}

int main(int argc, char **argv)
{
    int steps = 3, torch = 0, path = SAE_PATH_AUTO, small = 0, use_mpi = 0, do_cross = 0;
    long long one_d = 0, one_m = 0;
    int64_t B = 4096;
    int threads[2] = {1, 2}, n_threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--torch")) torch = 1;
        else if (!strcmp(argv[i], "--profile")) g_profile = 1;
        else if (!strcmp(argv[i], "--mpi")) use_mpi = 1;
        else if (!strcmp(argv[i], "--crossover")) do_cross = 1;
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) {
            const char *a = argv[++i];
            small = !strcmp(a, "small");
            if (sscanf(a, "%lldx%lld", &one_d, &one_m) == 2) small = 2;
        }
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            const char *t = argv[++i];
            n_threads = sscanf(t, "%d,%d", &threads[0], &threads[1]);
        } else if (!strcmp(argv[i], "--path") && i + 1 < argc) {
            const char *p = argv[++i];
            path = !strcmp(p, "dense") ? SAE_PATH_DENSE : !strcmp(p, "sparse") ? SAE_PATH_SPARSE
                                                                                 : SAE_PATH_AUTO;
        } else {
            fprintf(stderr, "usage: bench_sae [--steps N] [--batch B] [--threads 1,2] "
                            "[--shapes all|small|DxM] [--torch] [--path auto|dense|sparse] [--profile] [--mpi] [--crossover]\n");
            return 2;
        }
    }
    static ms_comm comm;
    if (use_mpi) {
        ms_err err = {0};
        if (ms_comm_init(&comm, &argc, &argv, &err) != MS_OK) {
            fprintf(stderr, "bench_sae: %s\n", err.msg);
            return 1;
        }
        g_comm = &comm;
        if (comm.rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;
        torch = 0;
    }
    shape shapes[3] = {{512, 4096}, {512, 16384}, {128, 1024}};
    if (do_cross) {
        openblas_set_num_threads(threads[0]);
        crossover(small == 1 ? (shape){128, 1024} : shapes[0], B, steps);
        return 0;
    }
    int n_shapes = small ? 1 : 3;
    if (small == 1) shapes[0] = (shape){128, 1024};
    if (small == 2) shapes[0] = (shape){one_d, one_m};
    const char *rname[4] = {"dense", "sparse", "topk", "topk+aux"};
    printf("# bench_sae: batch %lld, best of %d steps after a warm-up; FLOP/s dense-equivalent "
           "(10·d_in·d_sae per activation)\n",
           (long long)B, steps);
    if (g_comm)
        printf("# %d ranks x the thread count below; global batch split over ranks; %%allreduce = "
               "mean allreduce time (grads slab + stats, after a barrier) / step; peak = one rank's sgemm peak x "
               "ranks\n",
               g_comm->size);
    printf("# 1 thread also per CPU-second (robust to other jobs on the cores): cpu act/s, and "
           "the same for torch\n");
    bench_affinity_report();
    printf("%-8s %-12s %-8s %8s %6s %11s %9s %9s %6s %11s %7s %10s %10s %8s%s\n", "threads",
           "shape", "regime", "L0", "path", "act/s", "GFLOP/s", "peak", "%peak", "torch act/s",
           "vs torch", "cpu act/s", "torch cpu", "vs(cpu)", g_comm ? " %allreduce" : "");
    for (int ti = 0; ti < n_threads; ti++) {
        int nt = threads[ti];
        openblas_set_num_threads(nt);
        for (int s = 0; s < n_shapes; s++) {
            shape sh = shapes[s];
            double peak = bench_sgemm_flops((int)B, (int)sh.m, (int)sh.d, 3);
            if (g_comm) { /* every rank measures at once (they share the cores): sum */
                double mn, avg, mx;
                ms_comm_minavgmax(g_comm, peak, &mn, &avg, &mx);
                peak = avg * g_comm->size;
            }
            for (int regime = 0; regime < 4; regime++) {
                double l0;
                int sp;
                int arch = regime >= 2 ? MS_SAE_TOPK : MS_SAE_RELU_L1;
                double rate = run(arch, sh, B, steps, regime, path, &l0, &sp);
                double flops = rate * 10.0 * (double)sh.d * (double)sh.m;
                double tr = torch && regime < 2 ? torch_rate(sh, B, nt, regime, steps) : 0.0;
                char shs[32], trs[16] = "-", vs[16] = "-";
                snprintf(shs, sizeof shs, "%lldx%lld", (long long)sh.d, (long long)sh.m);
                if (tr > 0) snprintf(trs, sizeof trs, "%.0f", tr), snprintf(vs, sizeof vs, "%.2fx", rate / tr);
                char ar[16] = "", cr[16] = "-", tc[16] = "-", vc[16] = "-";
                if (g_comm) snprintf(ar, sizeof ar, " %9.1f%%", 100.0 * g_allreduce_frac);
                if (nt == 1 && !g_comm) {
                    snprintf(cr, sizeof cr, "%.0f", g_cpu_rate);
                    if (g_torch_cpu > 0 && tr > 0)
                        snprintf(tc, sizeof tc, "%.0f", g_torch_cpu),
                            snprintf(vc, sizeof vc, "%.2fx", g_cpu_rate / g_torch_cpu);
                }
                printf("%-8d %-12s %-8s %8.1f %6s %11.0f %9.1f %9.1f %5.1f%% %11s %7s %10s %10s "
                       "%8s%s\n",
                       nt, shs, rname[regime], l0, sp ? "sparse" : "dense", rate, flops / 1e9,
                       peak / 1e9, 100.0 * flops / peak, trs, vs, cr, tc, vc, ar);
                fflush(stdout);
            }
        }
    }
    if (g_comm) ms_comm_finalize(g_comm);
    return 0;
}
