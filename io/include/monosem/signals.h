/* monosem/signals.h: stop signals (io/signals.c): SIGTERM/SIGINT/SIGUSR1 recorded, never acted
 * on in the handler.
 * Conventions: local to the process, no MPI (ranks agree through ms_comm_signal_agree); the
 * handler only stores two sig_atomic_t flags, so the queries are safe from any thread; install
 * and clear from the main thread. Nothing allocated. */
#ifndef MONOSEM_SIGNALS_H
#define MONOSEM_SIGNALS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Wall-clock limits: schedulers send SIGTERM (Slurm --signal, at the limit, scancel) before
 * SIGKILL; mpirun forwards SIGUSR1. Long stages (train-model, generate, train) install these
 * handlers, agree on the flag at each step boundary (ms_comm_signal_agree), write a checkpoint
 * and return MS_INTERRUPTED (exit code 75); rerunning the command resumes. */
/* Installs handlers for SIGTERM, SIGINT and SIGUSR1 that only record the signal (idempotent).
 * Further signals while a checkpoint is written change nothing. */
void ms_signals_install(void);
/* The last stop signal caught by this process, 0 if none (local, no MPI). */
int ms_signal_caught(void);
/* Number of stop signals caught by this process (capped at 1000). */
int ms_signal_count(void);
/* Forget caught signals (tests; a stage that handled one). */
void ms_signals_clear(void);
/* "SIGTERM", "SIGINT", "SIGUSR1", ... (static). */
const char *ms_signal_name(int sig);

#ifdef __cplusplus
}
#endif
#endif
