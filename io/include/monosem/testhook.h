/* monosem/testhook.h: fault injection for tests at points the program reports (io/testhook.c).
 * Conventions: driven by one environment variable read once per process; no allocation visible
 * to callers; not collective (each rank matches its own hooks); main thread only. */
#ifndef MONOSEM_TESTHOOK_H
#define MONOSEM_TESTHOOK_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fault injection for tests at a point the program reports, never after a guessed delay. The
 * environment variable MONOSEM_TEST_HOOK, read once per process, holds up to 4 comma-separated
 * hooks POINT:N:RANK:ACTION[:FILE]. When this process passes POINT with count N (the first
 * time only), on rank RANK (a number; '*' every rank; 'any' the first rank to create FILE):
 *   stop  writes FILE ("pid rank point n"; FILE.<rank> for '*') whole, then raises SIGSTOP: the
 *         test acts (kill -9, fills a disk, sends a signal, starts a second run). The rank goes
 *         on at SIGCONT once FILE is removed or a stop signal was caught (it stops again
 *         otherwise: a launcher's SIGCONT ahead of its signal does not release it). A test
 *         that knows a stop signal is pending appends a line "signal" to FILE before SIGCONT:
 *         the rank then waits for its handler (which another thread may run) instead
 *   kill  writes FILE if given, then raises SIGKILL: a crash exactly there
 *   fail  ms_testhook returns true and the stage stops with an error, as if the operation failed
 *         (RANK must be '*': every rank stops at the same point)
 * Points and their N (each documented where it is called):
 *   step        a step boundary, before the stop-signal agreement (ms_comm_signal_agree):
 *               train-model and train after step N, analyze after block round N (both passes
 *               counted on), generate 0 (its one agreement, after the queue phase)
 *   checkpoint  train-model and train: the checkpoint of step N is in place (fail honoured)
 *   save        any safetensors file: this process's Nth save, data written and synced, not yet
 *               renamed into place (a crash leaves only the temporary file)
 *   shard       generate: this rank's Nth shard is recorded done
 *   shard-rows  generate: this rank's Nth shard's rows are written, not yet recorded done
 * Not thread-safe: call from the stage's main thread. A malformed hook prints one line and
 * exits 2. No timer: a test that must outlast a scheduler's limit stops a rank at a point and
 * lets it go when the limit's signal has come. */
bool ms_testhook(const char *point, int64_t n);
/* The MPI rank the hooks match against (ms_comm_init sets it; 0 before). */
void ms_testhook_set_rank(int rank);

#ifdef __cplusplus
}
#endif
#endif
