/* Status codes, their names and exit codes, and the first-error-wins error record. */
#include "monosem/io.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *ms_status_str(ms_status s)
{
    static const char *const names[MS_STATUS_COUNT] = {
        [MS_OK] = "ok",
        [MS_ERR_USAGE] = "usage error",
        [MS_ERR_CONFIG] = "config error",
        [MS_ERR_IO] = "i/o error",
        [MS_ERR_FORMAT] = "format error",
        [MS_ERR_NOMEM] = "out of memory",
        [MS_ERR_MPI] = "mpi error",
        [MS_ERR_NUMERIC] = "numeric error",
        [MS_ERR_STATE] = "state error",
        [MS_ERR_UNSUPPORTED] = "unsupported",
        [MS_INTERRUPTED] = "interrupted",
    };
    if ((int)s < 0 || s >= MS_STATUS_COUNT) return "unknown status";
    return names[s];
}

int ms_status_exit_code(ms_status s)
{
    if (s == MS_OK) return 0;
    if (s == MS_ERR_USAGE || s == MS_ERR_CONFIG) return 2;
    if (s == MS_ERR_UNSUPPORTED) return 3; /* scripts tell "not built" from a failure */
    if (s == MS_INTERRUPTED) return MS_EXIT_INTERRUPTED; /* job scripts requeue on it */
    return 1;
}

ms_status ms_err_set(ms_err *e, ms_status s, const char *fmt, ...)
{
    if (!e || e->status != MS_OK) return s;
    e->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    /* one line: messages are printed as a single line on every path */
    for (char *p = e->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return s;
}

void ms_err_clear(ms_err *e)
{
    if (!e) return;
    e->status = MS_OK;
    e->msg[0] = '\0';
}

bool ms_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (!s) return false;
    const char *d = s + (*s == '-');
    if (!isdigit((unsigned char)*d)) return false; /* also refuses "", " 5", "+5" */
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || errno != 0 || v < lo || v > hi) return false;
    *out = v;
    return true;
}
