/* monosem/log.h: logging on rank 0, the progress meter and clocks (io/log.c).
 * Conventions: messages are one line each, printed by rank 0 only (ms_log_init sets the rank);
 * the progress arithmetic is pure and unit-tested; an ms_progress is a caller-owned value with
 * nothing to free. Not collective. Logging is not serialised: call from the main thread. */
#ifndef MONOSEM_LOG_H
#define MONOSEM_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include "monosem/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Logging prints on rank 0 only (others are silent unless MONOSEM_LOG_ALL=1). */
void ms_log_init(int rank);
void ms_log(const char *fmt, ...) MS_PRINTF(1, 2);        /* stdout, rank 0 */
void ms_log_error(const char *fmt, ...) MS_PRINTF(1, 2);  /* stderr, rank 0 */
bool ms_log_is_root(void);

/* A progress meter: redrawn in place on a terminal, a plain line every `every_s` seconds
 * otherwise (batch logs). Arithmetic is pure and unit-tested. */
typedef struct ms_progress {
    char label[64];
    char unit[16];
    double total;
    double done;
    double done0; /* done when this process started (a resumed run): rate and ETA count from it */
    double t_start, t_last_print;
    double every_s;
    bool tty;
    bool enabled; /* false on ranks other than 0 */
} ms_progress;
void ms_progress_init(ms_progress *p, const char *label, const char *unit, double total,
                      double every_s);
/* Update `done` (absolute) and print when due. */
void ms_progress_update(ms_progress *p, double done);
/* Final line (always printed on rank 0). */
void ms_progress_finish(ms_progress *p);
/* Rate (units/s) and ETA (s; -1 if unknown) for done of total after elapsed seconds. */
double ms_progress_rate(double done, double elapsed);
double ms_progress_eta(double done, double total, double elapsed);
/* Formats p's current state as one line (no newline) into buf at time `now`. */
void ms_progress_format(const ms_progress *p, double now, char *buf, size_t n);
/* Formats seconds as "1h02m03s" / "4m05s" / "6.0s". */
void ms_format_duration(double s, char *buf, size_t n);

double ms_time_now(void); /* monotonic seconds */
double ms_cpu_time(void); /* process CPU seconds */

#ifdef __cplusplus
}
#endif
#endif
