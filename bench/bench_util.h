/* bench/bench_util.h: machine limits measured in the same run (sgemm peak, disk write speed)
 * and timing helpers shared by the benchmarks. */
#ifndef MONOSEM_BENCH_UTIL_H
#define MONOSEM_BENCH_UTIL_H

#include <stddef.h>

/* Wall seconds (monotonic). */
double bench_now(void);
/* Measured OpenBLAS sgemm FLOP/s for an (m,k)x(k,n) product with the current thread count:
 * best of `reps` after a warm-up. Use the shapes of the workload being compared. */
double bench_sgemm_flops(int m, int n, int k, int reps);
/* Sequential write MB/s (1e6 bytes) to a temporary file in dir, with fdatasync, `mb` MB. */
double bench_disk_write_mbs(const char *dir, int mb);
/* Prints the CPU binding the benchmark runs under (affinity mask as a CPU list, of how many
 * online, and OpenBLAS's thread count): numbers are only comparable under the same binding. */
void bench_affinity_report(void);
/* Prints "name: value unit" lines in a uniform format. */
void bench_report(const char *name, double value, const char *unit);

#endif
