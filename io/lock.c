/* Exclusive lock of a stage's output (a lock file holding host, pid and stage, locked with fcntl
 * by rank 0): two runs into one directory cannot interleave; a dead job's lock is taken over. */
#include "monosem/io.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The holder written into the file: "host pid stage unix-time\n". */
typedef struct holder {
    char host[256];
    long pid;
    char stage[64];
    long long since;
} holder;

static bool holder_parse(const char *text, holder *h)
{
    memset(h, 0, sizeof *h);
    return sscanf(text, "%255s %ld %63s %lld", h->host, &h->pid, h->stage, &h->since) == 4 && h->pid > 0;
}

static void holder_read(int fd, holder *h, bool *have)
{
    char buf[512] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    *have = n > 0 && holder_parse(buf, h);
}

static void since_text(long long t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm)) snprintf(out, n, "?");
}

/* Rank 0: locks path or says why not. *stale (out) describes a dead holder taken over. */
static ms_status lock_local(ms_lock *l, const char *path, const char *what, const char *stage, char *stale,
                            size_t stale_n, ms_err *err)
{
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return ms_err_set(err, MS_ERR_IO, "%s: cannot create the lock file %s: %s", what, path, strerror(errno));
    holder h;
    bool have = false;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int e = errno;
        holder_read(fd, &h, &have);
        close(fd);
        if (e == EACCES || e == EAGAIN) {
            char since[64];
            since_text(have ? h.since : 0, since, sizeof since);
            if (have)
                return ms_err_set(err, MS_ERR_STATE,
                                  "%s: in use by `monosem %s` on host %s, pid %ld (since %s; lock %s): wait for "
                                  "it to finish or use another directory",
                                  what, h.stage, h.host, h.pid, since, path);
            return ms_err_set(err, MS_ERR_STATE, "%s: in use by another process (lock %s is held)", what, path);
        }
        /* the file system cannot lock (ENOLCK, ENOSYS): decide from the holder's record */
        if (have && strcmp(h.host, host) == 0 && kill((pid_t)h.pid, 0) == 0 && h.pid != (long)getpid())
            return ms_err_set(err, MS_ERR_STATE, "%s: in use by `monosem %s` on host %s, pid %ld (lock %s)", what,
                              h.stage, h.host, h.pid, path);
        if (have && strcmp(h.host, host) != 0)
            return ms_err_set(err, MS_ERR_STATE,
                              "%s: the file system cannot lock (%s) and %s names `monosem %s` on host %s, pid %ld: "
                              "if that job is gone, remove the lock file",
                              what, strerror(e), path, h.stage, h.host, h.pid);
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) return ms_err_set(err, MS_ERR_IO, "%s: cannot reopen %s: %s", what, path, strerror(errno));
    } else {
        holder_read(fd, &h, &have);
    }
    /* locked: a holder still recorded is a job that died without releasing (kill -9, node loss) */
    if (have && stale)
        snprintf(stale, stale_n, "%s: taking over the stale lock of `monosem %s` (host %s, pid %ld, no longer running)",
                 what, h.stage, h.host, h.pid);
    char rec[512];
    int n = snprintf(rec, sizeof rec, "%s %ld %s %lld\n", host, (long)getpid(), stage, (long long)time(NULL));
    if (ftruncate(fd, 0) != 0 || pwrite(fd, rec, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return ms_err_set(err, MS_ERR_IO, "%s: cannot write the lock file %s: %s", what, path, strerror(e));
    }
    fsync(fd);
    l->fd = fd;
    return MS_OK;
}

ms_status ms_lock_acquire(ms_lock *l, const char *path, const char *what, const char *stage, const ms_comm *comm,
                          ms_err *err)
{
    l->fd = -1;
    ms_status st = MS_OK;
    char stale[768] = "";
    if (!comm || comm->rank == 0) st = lock_local(l, path, what, stage, stale, sizeof stale, err);
    if (comm) st = ms_comm_agree(comm, st, err);
    if (st) {
        ms_lock_release(l);
        return st;
    }
    if (stale[0]) ms_log("%s", stale);
    return MS_OK;
}

void ms_lock_release(ms_lock *l)
{
    if (!l || l->fd < 0) return;
    /* an empty file marks a clean release: only a killed job leaves its record behind */
    if (ftruncate(l->fd, 0) != 0) { /* the lock still goes with the close */
    }
    close(l->fd);
    l->fd = -1;
}
