/* Stop signals for wall-clock limits: SIGTERM, SIGINT and SIGUSR1 only set a flag; long stages
 * agree on it at step boundaries (ms_comm_signal_agree), checkpoint, and exit 75. */
#include "monosem/io.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t g_caught = 0; /* the last stop signal caught, 0 none */
static volatile sig_atomic_t g_count = 0;  /* how many (capped): a second one must do no harm */

/* Async-signal-safe: two stores. No I/O, no exit: a checkpoint being written when a second
 * signal arrives finishes undisturbed (the write goes to a temporary name, renamed whole). */
static void on_stop_signal(int sig)
{
    g_caught = sig;
    if (g_count < 1000) g_count = g_count + 1;
}

void ms_signals_install(void)
{
    static int installed = 0;
    if (installed) return;
    installed = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGUSR1);
    sa.sa_flags = SA_RESTART; /* file and MPI calls carry on as if nothing happened */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int ms_signal_caught(void) { return g_caught; }

int ms_signal_count(void) { return g_count; }

void ms_signals_clear(void)
{
    g_caught = 0;
    g_count = 0;
}

const char *ms_signal_name(int sig)
{
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    case 0: return "no signal";
    default: return "a signal";
    }
}
