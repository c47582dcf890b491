/* MPI test of the communicator module (run under mpirun with 2-4 ranks): slab allreduce equals
 * the serial sum, verdict agreement carries the failing rank's message, the work queue hands
 * every item to exactly one rank. Exits non-zero on any mismatch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monosem/io.h"

static int failures = 0, checks = 0;
#define CHECK(c, ...)                                                                        \
    do {                                                                                     \
        checks++;                                                                            \
        if (!(c)) {                                                                          \
            failures++;                                                                      \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", comm.rank, __FILE__, __LINE__, #c); \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
        }                                                                                    \
    } while (0)

int main(int argc, char **argv)
{
    ms_comm comm;
    ms_err err = {0};
    if (ms_comm_init(&comm, &argc, &argv, &err)) return 1;
    const int P = comm.size, r = comm.rank;

    /* float slab: values are small integers so the sum is exact in any order */
    size_t n = 3000017;
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = (float)((int)(i % 97) + 100 * r);
    CHECK(ms_comm_allreduce_f32(&comm, f, n, &err) == MS_OK, "%s", err.msg);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = (float)(P * (int)(i % 97) + 100 * P * (P - 1) / 2);
        if (f[i] != want) bad++;
    }
    CHECK(bad == 0, "%zu of %zu float sums differ", bad, n);
    free(f);

    double d[5];
    int64_t q[5];
    for (int i = 0; i < 5; i++) d[i] = 0.5 * r + i, q[i] = (int64_t)r << 33;
    ms_comm_allreduce_f64(&comm, d, 5, &err);
    ms_comm_allreduce_i64(&comm, q, 5, &err);
    CHECK(d[3] == 0.5 * P * (P - 1) / 2 + 3.0 * P, "f64 sum %g", d[3]);
    CHECK(q[0] == ((int64_t)P * (P - 1) / 2) << 33, "i64 sum %lld", (long long)q[0]);

    /* verdicts */
    ms_err e = {0};
    CHECK(ms_comm_agree(&comm, MS_OK, &e) == MS_OK, "ok verdict");
    ms_status mine = MS_OK;
    if (r == P - 1) mine = ms_err_set(&e, MS_ERR_FORMAT, "data.h5: rows 10-20: NaN on rank %d", r);
    ms_status all = ms_comm_agree(&comm, mine, &e);
    char want[128];
    snprintf(want, sizeof want, "data.h5: rows 10-20: NaN on rank %d", P - 1);
    CHECK(all == MS_ERR_FORMAT, "agreed status %d", (int)all);
    CHECK(strcmp(e.msg, want) == 0, "agreed message '%s'", e.msg);

    /* broadcast */
    char buf[64] = {0};
    if (r == 0) snprintf(buf, sizeof buf, "hello from 0");
    ms_comm_bcast(&comm, buf, sizeof buf, 0, &err);
    CHECK(strcmp(buf, "hello from 0") == 0, "bcast got '%s'", buf);

    /* min/avg/max */
    double mn, avg, mx;
    ms_comm_minavgmax(&comm, (double)r, &mn, &avg, &mx);
    CHECK(mn == 0 && mx == P - 1 && avg == (P - 1) / 2.0, "minavgmax %g %g %g", mn, avg, mx);

    /* dynamic work queue: 101 items, rank 0 works and serves */
    const int64_t N = 101;
    int64_t *count = calloc((size_t)N, sizeof *count);
    if (r == 0) {
        ms_queue qu;
        ms_queue_init(&qu, N, NULL, P - 1);
        int64_t it;
        while ((it = ms_queue_take(&qu)) >= 0) {
            count[it]++;
            ms_queue_serve(&comm, &qu);
        }
        ms_queue_drain(&comm, &qu);
    } else {
        int64_t it;
        while ((it = ms_queue_request(&comm)) >= 0) count[it]++;
    }
    ms_comm_allreduce_i64(&comm, count, (size_t)N, &err);
    int64_t wrong = 0;
    for (int64_t i = 0; i < N; i++) wrong += count[i] != 1;
    CHECK(wrong == 0, "%lld items not handed out exactly once", (long long)wrong);
    free(count);

    /* a worker that quits early must not block rank 0's drain */
    if (r == 0) {
        ms_queue qu;
        ms_queue_init(&qu, 4, NULL, P - 1);
        while (ms_queue_take(&qu) >= 0) ms_queue_serve(&comm, &qu);
        ms_queue_drain(&comm, &qu);
    } else {
        ms_queue_quit(&comm);
    }

    int tot_fail = failures;
    int64_t tf = tot_fail;
    ms_comm_allreduce_i64(&comm, &tf, 1, &err);
    if (r == 0) printf("%d passed, %lld failed\n", checks - (int)tf, (long long)tf);
    ms_comm_finalize(&comm);
    return tf ? 1 : 0;
}
