/* monosem/lock.h: output locks: one run per output directory or file (io/lock.c).
 * A stage locks its output so that two runs into one place cannot interleave: a lock file holding
 * "host pid stage time", locked by rank 0 with fcntl (also over NFS). A lock held by a live
 * process is refused naming its stage, host and pid; a lock file left by a job that died (kill -9:
 * the kernel dropped the lock, the record stayed) is taken over with a message naming the dead
 * holder. Other ranks hold nothing.
 * Conventions: ms_lock is a caller-owned value released with ms_lock_release; acquiring is
 * COLLECTIVE when given a comm (every rank gets rank 0's verdict). Main thread only. */
#ifndef MONOSEM_LOCK_H
#define MONOSEM_LOCK_H

#include "monosem/comm.h"
#include "monosem/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ms_lock {
    int fd; /* rank 0: the locked file; -1 elsewhere or when not held */
} ms_lock;
/* COLLECTIVE (comm may be NULL: this process alone). `what` names the output in messages
 * (e.g. its directory); the lock file's directory must exist. On error (MS_ERR_STATE: in use;
 * MS_ERR_IO) no rank holds the lock and every rank has the same message. */
ms_status ms_lock_acquire(ms_lock *l, const char *path, const char *what, const char *stage,
                          const ms_comm *comm, ms_err *err);
/* Releases (rank 0 empties the file and closes it). Safe on a lock not held. */
void ms_lock_release(ms_lock *l);

#ifdef __cplusplus
}
#endif
#endif
