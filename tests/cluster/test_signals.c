/* Stop signals arriving while a checkpoint is written (a timer sends SIGTERM every 50 us during
 * ms_safetensors_write of 4 MB, five times): the process lives on, the flag and count record them, and
 * every file reads back whole and exact. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "monosem/io.h"

static void test_signals_during_checkpoint_write(void **s)
{
    (void)s;
    const char *tmp = getenv("MS_TEST_TMP");
    char path[1024];
    snprintf(path, sizeof path, "%s/signals_ckpt.safetensors", tmp ? tmp : "/tmp");
    const int64_t n = 1 << 20; /* 4 MB of float32 */
    float *x = malloc(sizeof(float) * (size_t)n), *back = malloc(sizeof(float) * (size_t)n);
    assert_non_null(x);
    assert_non_null(back);
    ms_signals_install();
    ms_signals_clear();
    timer_t timer;
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGTERM;
    assert_int_equal(timer_create(CLOCK_MONOTONIC, &ev, &timer), 0);
    struct itimerspec every = {{0, 50000}, {0, 50000}}, off = {{0, 0}, {0, 0}};
    for (int round = 0; round < 5; round++) {
        for (int64_t i = 0; i < n; i++) x[i] = (float)(i % 9973) * 0.5f + (float)round;
        ms_safetensors_item it = {"w", MS_SAFETENSORS_F32, 1, {n}, x};
        const char *meta[] = {"round", "r"};
        ms_err err = {0};
        assert_int_equal(timer_settime(timer, 0, &every, NULL), 0);
        ms_status st = ms_safetensors_write(path, &it, 1, meta, 1, &err);
        assert_int_equal(timer_settime(timer, 0, &off, NULL), 0);
        assert_int_equal(st, MS_OK);
        ms_safetensors f;
        assert_int_equal(ms_safetensors_open(&f, path, &err), MS_OK);
        int64_t shape[1] = {n};
        assert_int_equal(ms_safetensors_read_f32_shaped(&f, "w", 1, shape, back, &err), MS_OK);
        ms_safetensors_close(&f);
        assert_memory_equal(x, back, sizeof(float) * (size_t)n);
    }
    timer_delete(timer);
    assert_int_equal(ms_signal_caught(), SIGTERM);
    /* the timer did fire during the writes (expirations may merge: at least a few) */
    print_message("%d SIGTERMs arrived during the writes\n", ms_signal_count());
    assert_true(ms_signal_count() >= 2);
    remove(path);
    free(x);
    free(back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_signals_during_checkpoint_write)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
