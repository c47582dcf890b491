/* Prints the threads a rank chose from its CPU binding (ms_blas_threads_set), for
 * threads_binding.sh: `threads_probe [requested]` -> "rank R mask M sharers S online O threads T
 * openblas B". */
#include "monosem/io.h"

#include <stdio.h>
#include <stdlib.h>

int openblas_get_num_threads(void);

int main(int argc, char **argv)
{
    ms_comm comm;
    ms_err err = {0};
    if (ms_comm_init(&comm, &argc, &argv, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    ms_log_init(comm.rank);
    int t = ms_blas_threads_set(&comm, argc > 1 ? atoll(argv[1]) : 0);
    ms_blas_threads_set(&comm, argc > 1 ? atoll(argv[1]) : 0); /* a second call logs nothing */
    int cpus, sharers, online;
    ms_cpu_binding(&cpus, &sharers, &online);
    printf("rank %d mask %d sharers %d online %d threads %d openblas %d\n", comm.rank, cpus, sharers, online, t,
           openblas_get_num_threads());
    fflush(stdout);
    ms_comm_finalize(&comm);
    return 0;
}
