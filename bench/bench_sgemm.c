/* bench/bench_sgemm.c: sgemm FLOP/s of every rank at once, each with the threads its binding
 * gives it (as the stages run): the compute limit other benchmarks divide by. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "monosem/io.h"

int main(int argc, char **argv)
{
    ms_comm comm;
    ms_err err = {0};
    if (ms_comm_init(&comm, &argc, &argv, &err)) {
        fprintf(stderr, "bench_sgemm: %s\n", err.msg);
        return 1;
    }
    int m = 4096, n = 2560, k = 512, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--m")) m = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--n")) n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--k")) k = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    }
    if (m < 1 || n < 1 || k < 1 || reps < 1) {
        if (comm.rank == 0) fprintf(stderr, "usage: bench_sgemm [--m M] [--n N] [--k K] [--reps R]\n");
        ms_comm_finalize(&comm);
        return 2;
    }
    int threads = ms_blas_threads_set(&comm, 0);
    ms_comm_barrier(&comm); /* all ranks multiply at the same time, sharing the node as a stage does */
    const double own = bench_sgemm_flops(m, n, k, reps);
    double sum = own;
    if (ms_comm_allreduce_f64(&comm, &sum, 1, &err)) {
        fprintf(stderr, "bench_sgemm: %s\n", err.msg);
        ms_comm_finalize(&comm);
        return 1;
    }
    if (comm.rank == 0)
        printf("sgemm %dx%dx%d: %d rank(s) x %d thread(s): %.1f GFLOP/s in all (rank 0 %.1f)\n", m, n, k, comm.size,
               threads, sum / 1e9, own / 1e9);
    ms_comm_finalize(&comm);
    return 0;
}
