/* bench/bench_util.c: the machine's own limits, measured in the same run as the benchmark. */
#include "bench_util.h"

#include <cblas.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_sgemm_flops(int m, int n, int k, int reps)
{
    float *a = malloc(sizeof(float) * (size_t)m * (size_t)k);
    float *b = malloc(sizeof(float) * (size_t)k * (size_t)n);
    float *c = malloc(sizeof(float) * (size_t)m * (size_t)n);
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0.0;
    }
    for (size_t i = 0; i < (size_t)m * (size_t)k; i++) a[i] = (float)((i * 7919) % 1000) * 1e-3f;
    for (size_t i = 0; i < (size_t)k * (size_t)n; i++) b[i] = (float)((i * 104729) % 1000) * 1e-3f;
    memset(c, 0, sizeof(float) * (size_t)m * (size_t)n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c,
                    n);
        double dt = bench_now() - t0;
        if (dt < best) best = dt;
    }
    free(a), free(b), free(c);
    return 2.0 * m * n * (double)k / best;
}

double bench_disk_write_mbs(const char *dir, int mb)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_disk.%ld.tmp", dir, (long)getpid());
    size_t chunk = 4u << 20;
    char *buf = malloc(chunk);
    if (!buf) return 0.0;
    memset(buf, 0x5a, chunk);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        free(buf);
        return 0.0;
    }
    size_t total = (size_t)mb << 20, done = 0;
    double t0 = bench_now();
    while (done < total) {
        ssize_t w = write(fd, buf, chunk);
        if (w <= 0) break;
        done += (size_t)w;
    }
    fdatasync(fd);
    double dt = bench_now() - t0;
    close(fd);
    unlink(path);
    free(buf);
    return (double)done / 1e6 / dt;
}

void bench_report(const char *name, double value, const char *unit)
{
    printf("%-48s %14.4g %s\n", name, value, unit);
}

void bench_affinity_report(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    char list[256] = "";
    size_t len = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int c = 0; c < CPU_SETSIZE && len + 16 < sizeof list; c++) {
            if (!CPU_ISSET(c, &set)) continue;
            int e = c;
            while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, &set)) e++;
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", len ? "," : "", c);
            if (e > c) len += (size_t)snprintf(list + len, sizeof list - len, "-%d", e);
            c = e;
        }
    }
    printf("  affinity: CPUs %s (%d of %ld online), OpenBLAS threads %d\n", len ? list : "?", CPU_COUNT(&set),
           sysconf(_SC_NPROCESSORS_ONLN), openblas_get_num_threads());
}
