/* Unit tests of the pure parts of the MPI module and logging: work-queue state, sharding,
 * progress/ETA arithmetic, duration formatting. No mpirun needed. */
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "monosem/io.h"

static void test_queue_all_once(void **s)
{
    (void)s;
    ms_queue q;
    ms_queue_init(&q, 10, NULL, 3);
    assert_int_equal(ms_queue_remaining(&q), 10);
    for (int i = 0; i < 10; i++) assert_int_equal(ms_queue_next(&q), i);
    assert_int_equal(ms_queue_next(&q), -1);
    assert_int_equal(ms_queue_next(&q), -1);
    assert_int_equal(ms_queue_remaining(&q), 0);
}

static void test_queue_skips_done(void **s)
{
    (void)s;
    uint8_t done[6] = {1, 0, 1, 1, 0, 1};
    ms_queue q;
    ms_queue_init(&q, 6, done, 1);
    assert_int_equal(ms_queue_remaining(&q), 2);
    assert_int_equal(ms_queue_next(&q), 1);
    assert_int_equal(ms_queue_next(&q), 4);
    assert_int_equal(ms_queue_next(&q), -1);
}

static void test_shard_range(void **s)
{
    (void)s;
    for (int64_t n = 0; n < 40; n++)
        for (int size = 1; size <= 7; size++) {
            int64_t prev_end = 0, mn = n, mx = 0;
            for (int r = 0; r < size; r++) {
                int64_t b, e;
                ms_shard_range(n, r, size, &b, &e);
                assert_int_equal(b, prev_end); /* contiguous, in rank order */
                prev_end = e;
                if (e - b < mn) mn = e - b;
                if (e - b > mx) mx = e - b;
            }
            assert_int_equal(prev_end, n); /* covers everything */
            assert_true(mx - mn <= 1);     /* balanced */
        }
}

static void test_progress_math(void **s)
{
    (void)s;
    assert_true(ms_progress_rate(500, 10) == 50);
    assert_true(ms_progress_rate(500, 0) == 0);
    assert_true(ms_progress_eta(250, 1000, 10) == 30);
    assert_true(ms_progress_eta(0, 1000, 10) == -1);
    assert_true(ms_progress_eta(1000, 1000, 10) == 0);
    char b[32];
    ms_format_duration(5.25, b, sizeof b);
    assert_string_equal(b, "5.2s");
    ms_format_duration(245, b, sizeof b);
    assert_string_equal(b, "4m05s");
    ms_format_duration(3723, b, sizeof b);
    assert_string_equal(b, "1h02m03s");
    ms_format_duration(-1, b, sizeof b);
    assert_string_equal(b, "?");
    ms_progress p;
    ms_log_init(0);
    ms_progress_init(&p, "generate", "tok", 2e6, 30);
    p.done = 5e5;
    char line[256];
    ms_progress_format(&p, p.t_start + 10, line, sizeof line);
    assert_string_equal(line, "generate: 500k/2M tok (25.0%) 50k tok/s elapsed 10.0s ETA 30.0s");
}

static void test_status(void **s)
{
    (void)s;
    assert_string_equal(ms_status_str(MS_OK), "ok");
    assert_string_equal(ms_status_str(MS_ERR_CONFIG), "config error");
    assert_string_equal(ms_status_str((ms_status)999), "unknown status");
    assert_int_equal(ms_status_exit_code(MS_ERR_USAGE), 2);
    assert_int_equal(ms_status_exit_code(MS_ERR_IO), 1);
    ms_err e = {0};
    ms_err_set(&e, MS_ERR_IO, "first\nline");
    ms_err_set(&e, MS_ERR_FORMAT, "second");
    assert_int_equal(e.status, MS_ERR_IO); /* the first error wins */
    assert_string_equal(e.msg, "first line");
}

/* threads per rank from the binding; the stop-signal flag and the interrupted exit code */
static void test_threads_and_signals(void **s)
{
    (void)s;
    assert_int_equal(ms_threads_for_binding(1, 1, 0), 1);  /* mpirun -n 1, default core binding */
    assert_int_equal(ms_threads_for_binding(8, 1, 0), 8);  /* srun --cpus-per-task=8 */
    assert_int_equal(ms_threads_for_binding(8, 3, 0), 2);  /* 3 unbound ranks share 8 CPUs */
    assert_int_equal(ms_threads_for_binding(2, 4, 0), 1);  /* oversubscribed: at least 1 */
    assert_int_equal(ms_threads_for_binding(1, 1, 4), 4);  /* run.blas_threads wins */
    assert_int_equal(ms_status_exit_code(MS_INTERRUPTED), 75);
    assert_string_equal(ms_status_str(MS_INTERRUPTED), "interrupted");
    ms_signals_install();
    assert_int_equal(ms_signal_caught(), 0);
    raise(SIGTERM); /* handled: the process lives on with the flag set */
    raise(SIGUSR1);
    assert_int_equal(ms_signal_caught(), SIGUSR1);
    assert_int_equal(ms_signal_count(), 2);
    assert_string_equal(ms_signal_name(SIGTERM), "SIGTERM");
    ms_signals_clear();
    assert_int_equal(ms_signal_caught(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_all_once), cmocka_unit_test(test_queue_skips_done),
        cmocka_unit_test(test_shard_range),    cmocka_unit_test(test_progress_math),
        cmocka_unit_test(test_status),         cmocka_unit_test(test_threads_and_signals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
