/* The test hooks (io/testhook.c): each case runs in a child process (the hook is read once per
 * process) and checks what the hook does at its point: fail, kill, stop with a report file
 * until released (also when another thread takes the stop signal), the first-rank-wins claim of
 * RANK any, and a malformed spec (exit 2). */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "monosem/io.h"

static char g_dir[900];

/* Runs body(arg) in a child with MONOSEM_TEST_HOOK=spec; returns its wait status. */
static int in_child(const char *spec, int (*body)(void), pid_t *child)
{
    fflush(NULL);
    pid_t p = fork();
    if (p == 0) {
        setenv("MONOSEM_TEST_HOOK", spec, 1);
        _exit(body());
    }
    if (child) {
        *child = p;
        return 0;
    }
    int status = 0;
    waitpid(p, &status, 0);
    return status;
}

/* passes "step" 1..5 on rank 0; exits with the first step whose hook returned true, or 0 */
static int pass_steps(void)
{
    ms_testhook_set_rank(0);
    for (int64_t n = 1; n <= 5; n++)
        if (ms_testhook("step", n)) return (int)n;
    return 0;
}

static int pass_steps_rank1(void)
{
    ms_testhook_set_rank(1);
    for (int64_t n = 1; n <= 5; n++)
        if (ms_testhook("step", n)) return (int)n;
    return 0;
}

static void test_fail_and_kill(void **s)
{
    (void)s;
    int st = in_child("step:3:*:fail", pass_steps, NULL);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 3); /* fails exactly at step 3 */
    st = in_child("checkpoint:3:*:fail", pass_steps, NULL);
    assert_int_equal(WEXITSTATUS(st), 0); /* another point: nothing */
    st = in_child("step:4:1:fail", pass_steps, NULL);
    assert_int_equal(WEXITSTATUS(st), 2); /* fail on one rank alone is refused (it would hang) */
    st = in_child("step:4:0:kill", pass_steps, NULL);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
    st = in_child("step:4:1:kill", pass_steps, NULL);
    assert_true(WIFEXITED(st)); /* rank 0 is not rank 1 */
    st = in_child("step:4:1:kill", pass_steps_rank1, NULL);
    assert_true(WIFSIGNALED(st));
    const char *bad[] = {"step", "step:x:0:kill", "step:1:0:explode", "step:1:-3:kill", "step:1:0:stop"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = in_child(bad[i], pass_steps, NULL);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 2);
    }
}

static int wait_stopped(pid_t p)
{
    for (int i = 0; i < 2000; i++) {
        int st = 0;
        pid_t r = waitpid(p, &st, WUNTRACED | WNOHANG);
        if (r == p && WIFSTOPPED(st)) return 1;
        if (r == p) return 0;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static void test_stop_report_release(void **s)
{
    (void)s;
    char spec[1024], rep[1000];
    snprintf(rep, sizeof rep, "%s/hook_stop.rep", g_dir);
    unlink(rep);
    snprintf(spec, sizeof spec, "step:2:0:stop:%s", rep);
    pid_t p;
    in_child(spec, pass_steps, &p);
    assert_true(wait_stopped(p)); /* stopped at its point ... */
    FILE *f = fopen(rep, "r");
    assert_non_null(f);
    int pid = 0, rank = -1;
    char point[32];
    long long n = 0;
    assert_int_equal(fscanf(f, "%d %d %31s %lld", &pid, &rank, point, &n), 4);
    fclose(f);
    assert_int_equal(pid, p); /* ... and said so: pid, rank, point, count */
    assert_int_equal(rank, 0);
    assert_string_equal(point, "step");
    assert_int_equal(n, 2);
    kill(p, SIGCONT); /* a SIGCONT alone (the report still there) does not release it */
    assert_true(wait_stopped(p));
    unlink(rep);
    kill(p, SIGCONT);
    int st = 0;
    waitpid(p, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static char g_rep_sig[1000];

/* The only thread that may take SIGUSR1, and only after the test announced it and let the
 * process go on (plus 50 ms): its handler runs after the hooked thread first looks at the flag,
 * as when an MPI or BLAS thread takes the signal at SIGCONT. */
static void *late_signal_taker(void *arg)
{
    (void)arg;
    struct timespec ms = {0, 1000000};
    for (;;) {
        FILE *f = fopen(g_rep_sig, "r");
        char line[200];
        int seen = 0;
        while (f && fgets(line, sizeof line, f)) seen |= strncmp(line, "signal", 6) == 0;
        if (f) fclose(f);
        if (seen) break;
        nanosleep(&ms, NULL);
    }
    struct timespec ms50 = {0, 50000000};
    nanosleep(&ms50, NULL);
    sigset_t u;
    sigemptyset(&u);
    sigaddset(&u, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &u, NULL);
    for (;;) nanosleep(&ms, NULL);
    return NULL;
}

/* stops at step 2 with SIGUSR1 blocked in this thread; exits 0 if the hook let it go with the
 * signal caught, 1 if it went on without it */
static int stop_signal_elsewhere(void)
{
    ms_signals_install();
    sigset_t b;
    sigemptyset(&b);
    sigaddset(&b, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &b, NULL); /* the new thread inherits the block */
    pthread_t t;
    if (pthread_create(&t, NULL, late_signal_taker, NULL) != 0) return 3;
    ms_testhook_set_rank(0);
    for (int64_t n = 1; n <= 2; n++) ms_testhook("step", n);
    return ms_signal_caught() == SIGUSR1 ? 0 : 1;
}

static void test_stop_signal_other_thread(void **s)
{
    (void)s;
    char spec[1100];
    snprintf(g_rep_sig, sizeof g_rep_sig, "%s/hook_sig.rep", g_dir);
    unlink(g_rep_sig);
    snprintf(spec, sizeof spec, "step:2:0:stop:%s", g_rep_sig);
    pid_t p;
    in_child(spec, stop_signal_elsewhere, &p);
    assert_true(wait_stopped(p));
    kill(p, SIGUSR1); /* pending while stopped, as a launcher's forwarded signal */
    FILE *f = fopen(g_rep_sig, "a");
    assert_non_null(f);
    fputs("signal\n", f); /* what hook_release_signalled does */
    fclose(f);
    kill(p, SIGCONT);
    int st = 0, stopped_again = 0;
    for (int i = 0; i < 6000; i++) { /* bounded: 30 s */
        pid_t r = waitpid(p, &st, WUNTRACED | WNOHANG);
        if (r == p && WIFSTOPPED(st)) { stopped_again = 1; break; }
        if (r == p) break;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    if (stopped_again || !(WIFEXITED(st) || WIFSIGNALED(st))) {
        kill(p, SIGKILL);
        waitpid(p, &st, 0);
        fail_msg("the hooked rank %s after its announced signal was taken by another thread",
                 stopped_again ? "stopped again" : "never went on");
    }
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0); /* released with the signal caught */
    unlink(g_rep_sig);
}

static void test_any_claims_once(void **s)
{
    (void)s;
    char spec[1024], rep[1000];
    snprintf(rep, sizeof rep, "%s/hook_any.rep", g_dir);
    unlink(rep);
    snprintf(spec, sizeof spec, "step:2:any:kill:%s", rep);
    int st = in_child(spec, pass_steps, NULL); /* the first rank there claims the report and dies */
    assert_true(WIFSIGNALED(st));
    st = in_child(spec, pass_steps_rank1, NULL); /* a later one finds it claimed: goes on */
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    unlink(rep);
}

int main(void)
{
    const char *tmp = getenv("MS_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s", tmp ? tmp : "/tmp");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_and_kill),
        cmocka_unit_test(test_stop_report_release),
        cmocka_unit_test(test_stop_signal_other_thread),
        cmocka_unit_test(test_any_claims_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
