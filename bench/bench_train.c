/* bench_train: the SAE trainer's data path and loop against the machine's limits, measured in
 * the same run: activations writer and shuffled reader MB/s vs sequential disk-write MB/s, and
 * the `monosem train` loop's time split (read / forward_backward / allreduce / step) with the
 * allreduce share of a step (goal < 5% at 2 ranks).
 *   mpirun -n 1|2 bench_train [--dir DIR] [--mb 384] [--d 512] [--d-sae 4096] [--batch 4096]
 *                             [--steps 12] [--window 65536] [--shards S]
 * --shards S: sae.reproducible with S micro-shards (its cost against the plain allreduce).
 * BLAS threads per rank: OPENBLAS_NUM_THREADS (default 1 per rank when run by mpirun -n 2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "monosem/io.h"
#include "sae_train.h"

static void die(const ms_comm *c, const ms_err *e)
{
    fprintf(stderr, "bench_train: rank %d: %s\n", c->rank, e->msg);
    ms_comm_abort(c, 1);
}

int main(int argc, char **argv)
{
    ms_comm comm;
    ms_err err = {0};
    if (ms_comm_init(&comm, &argc, &argv, &err) != MS_OK) return 1;
    ms_log_init(comm.rank);
    const char *dir = "/tmp";
    int64_t mb = 384, d = 512, d_sae = 4096, batch = 4096, steps = 12, window = 65536, shards = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--mb")) mb = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--d")) d = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--d-sae")) d_sae = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--window")) window = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--shards")) shards = atoll(argv[i + 1]);
    }
    int threads = ms_blas_threads_set(&comm, 0);
    char path[2048];
    snprintf(path, sizeof path, "%s/bench_train.%d.h5", dir, (int)getpid());
    ms_comm_bcast(&comm, path, sizeof path, 0, &err); /* one name for all ranks */

    /* ---- limit: sequential disk write with fdatasync (rank 0 alone) */
    double disk = 0.0;
    for (int r = 0; r < 3 && comm.rank == 0; r++) { /* best of 3: the disk is shared */
        double v = bench_disk_write_mbs(dir, 256);
        if (v > disk) disk = v;
    }
    ms_comm_bcast(&comm, &disk, sizeof disk, 0, &err);

    /* ---- writer: each rank writes its contiguous rows, independent MPI-IO */
    const int64_t n = mb * 1000000 / (d * 2);
    ms_actmeta m;
    memset(&m, 0, sizeof m);
    m.n_rows = n;
    m.d = d;
    m.n_contexts = 1;
    m.context = 1;
    m.n_shards = comm.size;
    m.dtype = MS_DTYPE_F16;
    snprintf(m.hook, sizeof m.hook, "bench");
    int64_t lo, hi;
    ms_shard_range(n, comm.rank, comm.size, &lo, &hi);
    const int64_t rows_per_call = 8192;
    float *x = malloc((size_t)(rows_per_call * d) * sizeof *x);
    for (int64_t i = 0; i < rows_per_call * d; i++) x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f;
    ms_actwriter *w;
    ms_comm_barrier(&comm);
    double t0 = bench_now();
    if (ms_actwriter_create(&w, path, &m, &comm, &err)) die(&comm, &err);
    for (int64_t r = lo; r < hi; r += rows_per_call) {
        int64_t k = hi - r < rows_per_call ? hi - r : rows_per_call;
        if (ms_actwriter_write_rows(w, r, k, x, NULL, &err)) die(&comm, &err);
    }
    if (ms_actwriter_mark_done(w, comm.rank, &err)) die(&comm, &err);
    if (ms_actwriter_finalize(w, &err)) die(&comm, &err);
    double t_write = bench_now() - t0;
    sync(); /* count the data reaching the disk, as the disk limit does */
    ms_comm_barrier(&comm);
    double t_write_sync = bench_now() - t0;
    free(x);
    const double file_mb = (double)n * (double)d * 2.0 / 1e6;

    /* ---- reader: one epoch of the shuffled stream, each rank its slice of every batch */
    ms_actfile *f;
    if (ms_actfile_open(&f, path, NULL, &err)) die(&comm, &err);
    ms_actstream_opts o = {.batch = 8192, .window_rows = window, .shuffle = true, .seed = 1};
    const int64_t nb = n / o.batch;
    double t_read = 1e30, read_mb = 0, own_rows = 0, mn, avg, t_read_max = 1e30;
    for (int rep = 0; rep < 2; rep++) { /* best of 2 epochs */
        ms_actstream *s;
        if (ms_actstream_open(&s, f, &o, comm.rank, comm.size, NULL, &err)) die(&comm, &err);
        float *buf = malloc((size_t)(ms_actstream_local_rows(s) * d) * sizeof *buf);
        ms_comm_barrier(&comm);
        t0 = bench_now();
        for (int64_t k = 0; k < nb; k++)
            if (ms_actstream_next(s, buf, &err)) die(&comm, &err);
        double tr = bench_now() - t0, trm;
        ms_comm_minavgmax(&comm, tr, &mn, &avg, &trm);
        if (trm < t_read_max) t_read_max = trm, t_read = tr;
        read_mb = (double)ms_actstream_bytes_read(s) / 1e6;
        own_rows = (double)(nb * ms_actstream_local_rows(s));
        free(buf);
        ms_actstream_close(s);
    }
    ms_actfile_close(f);

    if (comm.rank == 0) {
        printf("# bench_train: %d rank(s) x %d BLAS thread(s); file %.0f MB float16 (%lld rows x %lld)\n",
               comm.size, threads, file_mb, (long long)n, (long long)d);
        bench_affinity_report();
        printf("disk sequential write (fdatasync, 256 MB, best of 3): %8.0f MB/s   (the limit)\n", disk);
        printf("actwriter, %d rank(s), independent MPI-IO:   %8.0f MB/s to page cache, %8.0f MB/s "
               "incl. sync = %.2f x disk\n",
               comm.size, file_mb / t_write, file_mb / t_write_sync, file_mb / t_write_sync / disk);
        printf("shuffled reader, one epoch, best of 2 (window %lld): %8.0f MB/s of file read per rank, "
               "%8.0f MB/s of rows delivered (all ranks) = %.2f x disk; %.0f rows/s/rank\n",
               (long long)window, read_mb / t_read, file_mb / t_read_max, file_mb / t_read_max / disk,
               own_rows / t_read);
        printf("  (file hot in the page cache after writing: this is the reader's CPU-side rate; "
               "cold reads are bounded by the disk)\n");
    }

    /* ---- the train loop on this file: time split and allreduce share */
    char yaml[8800];
    snprintf(yaml, sizeof yaml,
             "run: {name: bench, out_dir: %s.run, seed: 1}\n"
             "sae: {activations: %s, d_sae: %lld, batch: %lld, steps: %lld, checkpoint_every: 0, "
             "log_every: 1000, median_samples: 2048, shuffle_buffer: 65536, reproducible: %s, "
             "micro_shards: %lld}\n",
             path, path, (long long)d_sae, (long long)batch,
             (long long)steps, shards > 0 ? "true" : "false", (long long)(shards > 0 ? shards : 8));
    ms_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (ms_config_parse(&cfg, "bench_train", yaml, strlen(yaml), NULL, 0, NULL, &err))
        die(&comm, &err);
    app_train_result res;
    if (app_sae_train(&cfg, &comm, NULL, &res, &err)) die(&comm, &err);
    double loop = res.t_read + res.t_compute + res.t_allreduce + res.t_step;
    double ar_max, rd_max, fb_max, st_max;
    ms_comm_minavgmax(&comm, res.t_allreduce, &mn, &avg, &ar_max);
    ms_comm_minavgmax(&comm, res.t_read, &mn, &avg, &rd_max);
    ms_comm_minavgmax(&comm, res.t_compute, &mn, &avg, &fb_max);
    ms_comm_minavgmax(&comm, res.t_step, &mn, &avg, &st_max);
    /* the allreduce alone (after a barrier, so no waiting for a slower rank): best of 5 */
    size_t n_params = (size_t)(2 * d * d_sae + 2 * d_sae + d);
    float *g = calloc(n_params, sizeof *g);
    double ar_best = 1e30;
    for (int r = 0; r < 6 && g && comm.size > 1; r++) {
        ms_comm_barrier(&comm);
        double a0 = bench_now();
        ms_comm_allreduce_f32(&comm, g, n_params, &err);
        double a1 = bench_now() - a0;
        ms_comm_minavgmax(&comm, a1, &mn, &avg, &ar_max);
        if (r > 0 && ar_max < ar_best) ar_best = ar_max;
    }
    free(g);
    double sg = 0.0;
    if (comm.rank == 0) sg = bench_sgemm_flops((int)(batch / comm.size), (int)d_sae, (int)d, 3);
    if (comm.rank == 0) {
        double dense = 10.0 * (double)d * (double)d_sae * res.tokens_per_s;
        printf("train loop d_in %lld d_sae %lld batch %lld, %lld steps: %.0f act/s; per step: read "
               "%.1f ms, forward_backward %.1f ms, allreduce %.1f ms (%.1f%% of the step, incl. "
               "waiting for the slower rank), step %.1f ms (rank 0; max over ranks: %.1f/%.1f/"
               "%.1f/%.1f)\n",
               (long long)d, (long long)d_sae, (long long)batch, (long long)res.steps,
               res.tokens_per_s, 1e3 * res.t_read / steps, 1e3 * res.t_compute / steps,
               1e3 * res.t_allreduce / steps, 100.0 * res.t_allreduce / loop,
               1e3 * res.t_step / steps, 1e3 * rd_max / steps, 1e3 * fb_max / steps,
               1e3 * ar_max / steps, 1e3 * st_max / steps);
        printf("  dense-equivalent %.1f GFLOP/s = %.0f%% of %d x the sgemm peak measured now "
               "(%.1f GFLOP/s per rank); the reader needs %.1f MB/s at this rate (%.2f%% of "
               "disk)\n",
               dense / 1e9, 100.0 * dense / (sg * comm.size), comm.size, sg / 1e9,
               res.tokens_per_s * (double)d * 2.0 / 1e6,
               100.0 * res.tokens_per_s * (double)d * 2.0 / 1e6 / disk);
    }
    if (comm.rank == 0 && comm.size > 1)
        printf("  allreduce of the %.1f MB grads slab alone (barrier first, best of 5): %.2f ms = "
               "%.2f%% of the mean step (%.1f ms) -- the cost without load imbalance\n",
               (double)n_params * 4e-6, 1e3 * ar_best, 100.0 * ar_best / (loop / (double)steps),
               1e3 * loop / (double)steps);
    ms_config_free(&cfg);
    ms_comm_barrier(&comm);
    if (comm.rank == 0) { /* remove the file and the run's outputs */
        unlink(path);
        const char *outs[] = {"sae/checkpoint.safetensors", "sae/metrics.jsonl", "sae/sae.h5",
                              "sae/saelens/cfg.json", "sae/saelens/sae_weights.safetensors",
                              "sae/saelens/sparsity.safetensors", "sae/saelens", "sae", ""};
        for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
            char p[2200];
            snprintf(p, sizeof p, "%s.run/%s", path, outs[i]);
            if (unlink(p) != 0) rmdir(p);
        }
    }
    ms_comm_finalize(&comm);
    return 0;
}
