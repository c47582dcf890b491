/* monosem/comm.h: the MPI module (io/comm.c, the only file that calls MPI): ranks, collectives,
 * the work queue, sharding, threads from the CPU binding, the stop-signal agreement.
 * Conventions: calls marked COLLECTIVE must be reached by every rank of the communicator in the
 * same order; those returning a status give every rank the same verdict (ms_comm_agree). Buffers
 * are the caller's; sizes are size_t/int64 and chunked past MPI's INT_MAX counts. The queue and
 * sharding arithmetic is pure (unit-tested without mpirun). Main thread only (MPI_Init
 * asks for no thread support). */
#ifndef MONOSEM_COMM_H
#define MONOSEM_COMM_H

#include <stddef.h>
#include <stdint.h>
#include "monosem/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* All MPI in monosem goes through these calls. Functions marked COLLECTIVE must be called by
 * every rank of the communicator. */
typedef struct ms_comm {
    int rank, size;
    int node_rank, node_size; /* ranks sharing this node, for BLAS thread sizing */
    void *mpi_comm;           /* MPI_Comm*, opaque to keep mpi.h out of users */
} ms_comm;

/* COLLECTIVE. Initialises MPI (once per process) and fills comm for MPI_COMM_WORLD. */
ms_status ms_comm_init(ms_comm *comm, int *argc, char ***argv, ms_err *err);
/* COLLECTIVE. Finalises MPI. */
void ms_comm_finalize(ms_comm *comm);
/* Aborts every rank: for unrecoverable states only (exit codes cannot be agreed). */
void ms_comm_abort(const ms_comm *comm, int code);

/* COLLECTIVE. Agree on a verdict: returns the worst status over all ranks. When the local
 * status is an error, err->msg is broadcast from the lowest failing rank into every rank's
 * err, so rank 0 can print it. */
ms_status ms_comm_agree(const ms_comm *comm, ms_status local, ms_err *err);

/* COLLECTIVE. In-place sum over ranks of n floats / doubles; chunked past INT_MAX elements. */
ms_status ms_comm_allreduce_f32(const ms_comm *comm, float *buf, size_t n, ms_err *err);
ms_status ms_comm_allreduce_f64(const ms_comm *comm, double *buf, size_t n, ms_err *err);
ms_status ms_comm_allreduce_i64(const ms_comm *comm, int64_t *buf, size_t n, ms_err *err);
/* COLLECTIVE. Rank q receives counts[q] floats from root's send + displs[q] (send read on root
 * only; counts and displs have size entries, the same on every rank, each at most INT_MAX). */
ms_status ms_comm_scatterv_f32(const ms_comm *comm, const float *send, const int64_t *counts,
                               const int64_t *displs, float *recv, int root, ms_err *err);
/* COLLECTIVE. recv + displs[q] := rank q's counts[q] elements of send, on every rank. Pure
 * copies: with the fixed-order reduction (apps/sae_reduce.c) sums stay bitwise order-free. */
ms_status ms_comm_allgatherv_f32(const ms_comm *comm, const float *send, float *recv,
                                 const int64_t *counts, const int64_t *displs, ms_err *err);
ms_status ms_comm_allgatherv_f64(const ms_comm *comm, const double *send, double *recv,
                                 const int64_t *counts, const int64_t *displs, ms_err *err);
/* COLLECTIVE. Broadcast n bytes from root (chunked past INT_MAX). */
ms_status ms_comm_bcast(const ms_comm *comm, void *buf, size_t n, int root, ms_err *err);
/* COLLECTIVE. Barrier. */
void ms_comm_barrier(const ms_comm *comm);
/* COLLECTIVE. min, mean and max of a per-rank value. */
void ms_comm_minavgmax(const ms_comm *comm, double v, double *mn, double *avg, double *mx);
/* COLLECTIVE. Gather one double from every rank to root (out has size entries on root). */
void ms_comm_gather_f64(const ms_comm *comm, double v, double *out, int root);

/* --- dynamic work queue (rank 0 hands out shard ids). Pure state, testable without MPI. */
typedef struct ms_queue {
    int64_t n_items;
    int64_t next;       /* next candidate item */
    const uint8_t *skip; /* optional: items already done (resume); not owned */
    int n_workers_left; /* remote workers not yet told "done" */
} ms_queue;
void ms_queue_init(ms_queue *q, int64_t n_items, const uint8_t *skip, int n_remote_workers);
/* Next item id to hand out, or -1 when exhausted. */
int64_t ms_queue_next(ms_queue *q);
/* Items this queue will hand out in total (n_items minus skipped). */
int64_t ms_queue_remaining(const ms_queue *q);

/* MPI side of the queue. Rank 0 both works and serves: it calls ms_queue_serve between its own
 * units of work, and ms_queue_drain at the end (serves until every worker was told done).
 * Other ranks call ms_queue_request, which blocks for the next id (-1 = no more work). */
void ms_queue_serve(const ms_comm *comm, ms_queue *q);
void ms_queue_drain(const ms_comm *comm, ms_queue *q);
int64_t ms_queue_request(const ms_comm *comm);
/* A worker that stops early (after an error) tells rank 0 so its drain does not wait for it.
 * Call at most once, and not after ms_queue_request returned -1. */
void ms_queue_quit(const ms_comm *comm);
/* Like ms_queue_quit, for a worker that caught a stop signal: rank 0 then hands out nothing
 * more to any rank, so every rank finishes its current item and the queue phase ends. */
void ms_queue_stop(const ms_comm *comm);
/* Rank 0's own next item (does not serve). */
int64_t ms_queue_take(ms_queue *q);

/* --- sharding: contiguous split of n items over size ranks (first n%size get one more). */
void ms_shard_range(int64_t n, int rank, int size, int64_t *begin, int64_t *end);

/* An HDF5 file-access property list for MPI-IO over this communicator (parallel HDF5 is the
 * one other place MPI reaches); the caller closes it with H5Pclose. Returns an hid_t. */
int64_t ms_comm_h5_fapl(const ms_comm *comm);

/* COLLECTIVE. Merges n_items items of item_bytes each from every rank into root's buf, with
 * a user merge fn(ctx, inout, in, n, item_bytes) that must be associative and commutative
 * (e.g. "keep the k best of the union" under a total order); other ranks' buf is left as it
 * was. One reduction at a time per process (the fn is parked in a static for MPI). */
typedef void (*ms_merge_fn)(void *ctx, void *inout, const void *in, size_t n, size_t item_bytes);
ms_status ms_comm_reduce_merge(const ms_comm *comm, void *buf, size_t n_items, size_t item_bytes,
                               ms_merge_fn fn, void *ctx, int root, ms_err *err);

/* The MPI library's version line. */
void ms_comm_library_version(char *buf, size_t n);

/* The CPU binding of this process, read at ms_comm_init: CPUs in its affinity mask
 * (sched_getaffinity: what mpirun/srun/the scheduler granted), ranks on this node whose masks
 * overlap it (itself included; unbound ranks all share the node), and the node's online CPUs. */
void ms_cpu_binding(int *mask_cpus, int *sharers, int *online);
/* Threads per rank for a binding: requested > 0 wins; else mask_cpus / sharers, at least 1. */
int ms_threads_for_binding(int mask_cpus, int sharers, int64_t requested);
/* Sets this rank's OpenBLAS (and kernel) threads from ms_threads_for_binding and returns the
 * count. The first call per process logs one line (stderr, rank 0) when the count exceeds the
 * CPUs the binding gives the rank (a warning: threads share cores) or when ranks leave node CPUs
 * unused. */
int ms_blas_threads_set(const ms_comm *comm, int64_t requested);

/* COLLECTIVE. The stop signal (ms_signal_caught) of the most recent one caught on any rank,
 * 0 if none: every rank gets the same answer, so all stop at the same step. One 4-byte
 * allreduce; long stages call it at each step boundary. step: the boundary's number in the
 * stage's own count (train steps, analyze block rounds), the test hooks' point "step". */
int ms_comm_signal_agree(const ms_comm *comm, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
