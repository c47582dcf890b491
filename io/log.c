/* Rank-0 logging and the progress meter: redrawn in place on a terminal, periodic plain lines
 * in batch logs; the rate/ETA arithmetic is pure so it is unit-tested. */
#include "monosem/io.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static int g_rank = 0;
static bool g_all = false;

void ms_log_init(int rank)
{
    g_rank = rank;
    const char *a = getenv("MONOSEM_LOG_ALL");
    g_all = a && *a && strcmp(a, "0") != 0;
}

bool ms_log_is_root(void) { return g_rank == 0; }

static void vlog(FILE *f, const char *fmt, va_list ap)
{
    if (g_rank != 0 && !g_all) return;
    /* one write per line: stderr is unbuffered, and mpirun interleaves the two streams */
    char line[4096];
    va_list again;
    va_copy(again, ap);
    int n0 = g_all && g_rank != 0 ? snprintf(line, sizeof line, "[rank %d] ", g_rank) : 0;
    int n = vsnprintf(line + n0, sizeof line - (size_t)n0 - 1, fmt, ap);
    if (n >= 0 && n0 + n < (int)sizeof line - 1) {
        n += n0;
        line[n++] = '\n';
        fwrite(line, 1, (size_t)n, f);
    } else { /* a long message: written in pieces */
        fwrite(line, 1, (size_t)n0, f);
        vfprintf(f, fmt, again);
        fputc('\n', f);
    }
    va_end(again);
    fflush(f);
}

void ms_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(stdout, fmt, ap);
    va_end(ap);
}

void ms_log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(stderr, fmt, ap);
    va_end(ap);
}

double ms_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double ms_cpu_time(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

double ms_progress_rate(double done, double elapsed) { return elapsed > 0 ? done / elapsed : 0.0; }

double ms_progress_eta(double done, double total, double elapsed)
{
    if (done <= 0 || elapsed <= 0 || total <= 0) return -1.0;
    if (done >= total) return 0.0;
    return (total - done) * elapsed / done;
}

void ms_format_duration(double s, char *buf, size_t n)
{
    if (s < 0) {
        snprintf(buf, n, "?");
        return;
    }
    if (s < 60) {
        snprintf(buf, n, "%.1fs", s);
        return;
    }
    long t = (long)(s + 0.5);
    if (t < 3600)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%ldh%02ldm%02lds", t / 3600, (t / 60) % 60, t % 60);
}

/* 1234567 -> "1.23M" */
static void fmt_count(double v, char *buf, size_t n)
{
    const char *suf[] = {"", "k", "M", "G", "T"};
    int i = 0;
    while (v >= 1000 && i < 4) v /= 1000, i++;
    if (i == 0)
        snprintf(buf, n, "%.0f", v);
    else
        snprintf(buf, n, "%.3g%s", v, suf[i]);
}

/* Redraw in place only on a real terminal. Open MPI hands its ranks a pseudo-terminal even
 * when mpirun's own output goes to a batch log, so under a launcher the ranks cannot tell:
 * plain lines there unless MONOSEM_PROGRESS=tty (MONOSEM_PROGRESS=lines forces lines). */
static bool progress_tty(void)
{
    const char *m = getenv("MONOSEM_PROGRESS");
    if (m && strcmp(m, "tty") == 0) return true;
    if (m && strcmp(m, "lines") == 0) return false;
    bool launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_RANK") || getenv("PMIX_RANK") || getenv("SLURM_STEP_ID");
    return !launched && isatty(fileno(stdout));
}

void ms_progress_init(ms_progress *p, const char *label, const char *unit, double total, double every_s)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    snprintf(p->unit, sizeof p->unit, "%s", unit);
    p->total = total;
    p->every_s = every_s > 0 ? every_s : 30;
    p->t_start = p->t_last_print = ms_time_now();
    p->enabled = g_rank == 0;
    p->tty = p->enabled && progress_tty();
}

void ms_progress_format(const ms_progress *p, double now, char *buf, size_t n)
{
    double el = now - p->t_start;
    char d[32], t[32], r[32], eta[32], els[32];
    fmt_count(p->done, d, sizeof d);
    fmt_count(p->total, t, sizeof t);
    fmt_count(ms_progress_rate(p->done - p->done0, el), r, sizeof r);
    ms_format_duration(ms_progress_eta(p->done - p->done0, p->total - p->done0, el), eta, sizeof eta);
    ms_format_duration(el, els, sizeof els);
    double pct = p->total > 0 ? 100.0 * p->done / p->total : 0.0;
    snprintf(buf, n, "%s: %s/%s %s (%.1f%%) %s %s/s elapsed %s ETA %s", p->label, d, t, p->unit, pct, r, p->unit,
             els, eta);
}

void ms_progress_update(ms_progress *p, double done)
{
    p->done = done;
    if (!p->enabled) return;
    double now = ms_time_now();
    double every = p->tty ? 0.25 : p->every_s;
    if (now - p->t_last_print < every) return;
    p->t_last_print = now;
    char line[256];
    ms_progress_format(p, now, line, sizeof line);
    if (p->tty)
        printf("\r\033[K%s", line);
    else
        printf("%s\n", line);
    fflush(stdout);
}

void ms_progress_finish(ms_progress *p)
{
    if (!p->enabled) return;
    char line[256];
    ms_progress_format(p, ms_time_now(), line, sizeof line);
    if (p->tty)
        printf("\r\033[K%s\n", line);
    else
        printf("%s\n", line);
    fflush(stdout);
}
