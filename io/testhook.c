/* Test hooks: the one place where a test makes a stage stop, crash or fail at a point the
 * program itself reports (a step, a shard, a file saved), instead of racing it with a timer. */
#include "monosem/io.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_HOOKS 4

typedef enum { ACT_STOP, ACT_KILL, ACT_FAIL } hook_action;
enum { RANK_EVERY = -1, RANK_ANY = -2 };

typedef struct {
    char point[32];
    int64_t n;
    int rank; /* >= 0, RANK_EVERY (*) or RANK_ANY (the first rank to claim FILE) */
    hook_action action;
    char file[4096]; /* the report file, "" none */
    int fired;
} hook;

static hook g_hooks[MAX_HOOKS];
static int g_n_hooks = 0;
static int g_read = 0;
static int g_rank = 0;

/* A malformed hook is a broken test, not bad user input: say so and stop this process. */
static void hook_fatal(const char *spec, const char *why)
{
    fprintf(stderr, "MONOSEM_TEST_HOOK: \"%s\": %s; expected POINT:N:RANK:ACTION[:FILE] "
            "(RANK a number, * or any; ACTION stop, kill or fail)\n", spec, why);
    _exit(2);
}

static void hook_parse(char *spec)
{
    if (g_n_hooks == MAX_HOOKS) hook_fatal(spec, "more than 4 hooks");
    hook *h = &g_hooks[g_n_hooks];
    memset(h, 0, sizeof *h);
    char *f[5] = {0};
    int nf = 0;
    for (char *p = spec; p && nf < 5; nf++) { /* the FILE, last, may itself contain ':' */
        f[nf] = p;
        char *c = nf < 4 ? strchr(p, ':') : NULL;
        if (c) *c = 0;
        p = c ? c + 1 : NULL;
    }
    if (nf < 4) hook_fatal(f[0], "too few fields");
    if (!*f[0] || strlen(f[0]) >= sizeof h->point) hook_fatal(f[0], "bad POINT");
    snprintf(h->point, sizeof h->point, "%s", f[0]);
    char *end = NULL;
    h->n = strtoll(f[1], &end, 10);
    if (!*f[1] || *end || h->n < 0) hook_fatal(f[1], "bad N");
    if (strcmp(f[2], "*") == 0) h->rank = RANK_EVERY;
    else if (strcmp(f[2], "any") == 0) h->rank = RANK_ANY;
    else {
        long r = strtol(f[2], &end, 10);
        if (!*f[2] || *end || r < 0) hook_fatal(f[2], "bad RANK");
        h->rank = (int)r;
    }
    if (strcmp(f[3], "stop") == 0) h->action = ACT_STOP;
    else if (strcmp(f[3], "kill") == 0) h->action = ACT_KILL;
    else if (strcmp(f[3], "fail") == 0) h->action = ACT_FAIL;
    else hook_fatal(f[3], "bad ACTION");
    if (nf == 5) snprintf(h->file, sizeof h->file, "%s", f[4]);
    if (h->action == ACT_FAIL && h->rank != RANK_EVERY) /* one rank failing alone would hang the rest */
        hook_fatal(f[0], "fail needs RANK *");
    if ((h->action == ACT_STOP || h->rank == RANK_ANY) && !h->file[0])
        hook_fatal(f[0], "stop and RANK any need a FILE");
    g_n_hooks++;
}

static void hook_read(void)
{
    if (g_read) return;
    g_read = 1;
    const char *e = getenv("MONOSEM_TEST_HOOK");
    if (!e || !*e) return;
    char *copy = strdup(e);
    if (!copy) hook_fatal(e, "out of memory");
    char *save = NULL;
    for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) hook_parse(s);
    free(copy);
}

/* The report: "pid rank point n", written whole (a temporary name, then a rename, or for RANK
 * any an exclusive create that only the first rank wins). Returns 0 if another rank claimed it. */
static int hook_report(const hook *h, int64_t n, const char *path)
{
    char line[160];
    int len = snprintf(line, sizeof line, "%d %d %s %lld\n", (int)getpid(), g_rank, h->point, (long long)n);
    if (h->rank == RANK_ANY) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) return errno == EEXIST ? 0 : 1;
        if (write(fd, line, (size_t)len) != len) { /* the test times out naming the file */
        }
        fsync(fd);
        close(fd);
        return 1;
    }
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (f) {
        fputs(line, f);
        fclose(f);
        rename(tmp, path);
    }
    return 1;
}

/* Whether the test appended "signal" to the report: it saw a stop signal pending on this
 * process (or sent one) before its SIGCONT. */
static int hook_signal_announced(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[200];
    int found = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "signal", 6) == 0) found = 1;
    fclose(f);
    return found;
}

/* Stopped until the test removes the report and sends SIGCONT, or a stop signal has been
 * caught: a launcher's SIGCONT that precedes its signal does not let it go. A pending
 * process-directed signal is taken at SIGCONT by whichever thread runs first (an MPI or BLAS
 * thread as often as this one), so its handler may set the flag a moment after this thread
 * looks: when the test has announced the signal, wait for the flag instead of stopping again. */
static void hook_stop(const char *path)
{
    for (;;) {
        raise(SIGSTOP);
        if (ms_signal_caught() || access(path, F_OK) != 0) return;
        if (!hook_signal_announced(path)) continue;
        struct timespec ms1 = {0, 1000000};
        for (int i = 0; i < 120000 && !ms_signal_caught(); i++) nanosleep(&ms1, NULL);
        if (!ms_signal_caught())
            fprintf(stderr, "MONOSEM_TEST_HOOK: %s announced a stop signal but none was caught "
                    "within 120 s of SIGCONT\n", path);
        return;
    }
}

void ms_testhook_set_rank(int rank)
{
    g_rank = rank;
}

bool ms_testhook(const char *point, int64_t n)
{
    hook_read();
    for (int i = 0; i < g_n_hooks; i++) {
        hook *h = &g_hooks[i];
        if (h->fired || h->n != n || strcmp(h->point, point) != 0) continue;
        if (h->rank >= 0 && h->rank != g_rank) continue;
        h->fired = 1; /* once per process: a later pass over the same count does nothing */
        char path[4200] = "";
        if (h->rank == RANK_EVERY) snprintf(path, sizeof path, "%s.%d", h->file, g_rank);
        else snprintf(path, sizeof path, "%s", h->file);
        if (h->file[0] && !hook_report(h, n, path)) continue;
        switch (h->action) {
        case ACT_STOP: hook_stop(path); break;
        case ACT_KILL: raise(SIGKILL); break;
        case ACT_FAIL: return true;
        }
    }
    return false;
}
