/* The MPI module: the only file that calls MPI. Init/finalize, verdict agreement, chunked
 * reductions and broadcasts, BLAS thread sizing from the CPU binding, the stop-signal
 * agreement, and rank 0's dynamic work queue. */
#include "monosem/io.h"

#include <cblas.h>
#include <limits.h>
#include <hdf5.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COMM(c) (*(MPI_Comm *)(c)->mpi_comm)
/* Largest element count handed to one MPI call: counts are int. */
#define MS_MPI_CHUNK ((size_t)1 << 30)

enum { TAG_REQUEST = 7101, TAG_REPLY = 7102 };

static MPI_Comm g_world = MPI_COMM_NULL;
static MPI_Comm g_node = MPI_COMM_NULL;
static int g_we_initialised = 0;
static int *g_ints; /* (2, size) MPI counts and displacements, allocated once at init */
/* The CPU binding, read once at init: CPUs in this rank's affinity mask and how many ranks on
 * this node have a mask overlapping it (unbound ranks all share the whole node). */
static int g_mask_cpus = 0, g_mask_sharers = 1;

static void affinity_read(cpu_set_t *set)
{
    CPU_ZERO(set);
    if (sched_getaffinity(0, sizeof *set, set) != 0 || CPU_COUNT(set) < 1) {
        long n = sysconf(_SC_NPROCESSORS_ONLN); /* no mask readable: all online CPUs */
        CPU_ZERO(set);
        for (long i = 0; i < (n < 1 ? 1 : n) && i < CPU_SETSIZE; i++) CPU_SET((int)i, set);
    }
}

/* COLLECTIVE over the node: gathers every rank's mask and counts those overlapping ours. */
static void affinity_init(void)
{
    cpu_set_t mine;
    affinity_read(&mine);
    g_mask_cpus = CPU_COUNT(&mine);
    g_mask_sharers = 1;
    int nn = 1;
    MPI_Comm_size(g_node, &nn);
    if (nn <= 1) return;
    cpu_set_t *all = malloc(sizeof *all * (size_t)nn);
    if (!all) return; /* assume exclusive masks: never more threads than our own CPUs */
    MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, g_node);
    int me = 0, sharers = 0;
    MPI_Comm_rank(g_node, &me);
    for (int r = 0; r < nn; r++) {
        cpu_set_t both;
        CPU_AND(&both, &mine, &all[r]);
        sharers += r == me || CPU_COUNT(&both) > 0;
    }
    free(all);
    g_mask_sharers = sharers < 1 ? 1 : sharers;
}

ms_status ms_comm_init(ms_comm *comm, int *argc, char ***argv, ms_err *err)
{
    memset(comm, 0, sizeof *comm);
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init(argc, argv) != MPI_SUCCESS) return ms_err_set(err, MS_ERR_MPI, "MPI_Init failed");
        g_we_initialised = 1;
    }
    if (g_world == MPI_COMM_NULL) {
        MPI_Comm_dup(MPI_COMM_WORLD, &g_world);
        /* errors come back as codes so every rank can report and exit together */
        MPI_Comm_set_errhandler(g_world, MPI_ERRORS_RETURN);
        MPI_Comm_split_type(g_world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &g_node);
        affinity_init();
    }
    comm->mpi_comm = &g_world;
    MPI_Comm_rank(g_world, &comm->rank);
    MPI_Comm_size(g_world, &comm->size);
    MPI_Comm_rank(g_node, &comm->node_rank);
    MPI_Comm_size(g_node, &comm->node_size);
    ms_testhook_set_rank(comm->rank);
    if (!g_ints) g_ints = calloc(2 * (size_t)comm->size, sizeof *g_ints);
    if (!g_ints) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    return MS_OK;
}

void ms_comm_finalize(ms_comm *comm)
{
    (void)comm;
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;
    free(g_ints);
    g_ints = NULL;
    if (g_node != MPI_COMM_NULL) MPI_Comm_free(&g_node);
    if (g_world != MPI_COMM_NULL) MPI_Comm_free(&g_world);
    if (g_we_initialised) MPI_Finalize();
}

void ms_comm_abort(const ms_comm *comm, int code)
{
    MPI_Abort(comm && comm->mpi_comm ? COMM(comm) : MPI_COMM_WORLD, code);
}

void ms_invariant_fail(const char *file, int line, const char *cond)
{
    int init = 0, fin = 0, rank = -1;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    fprintf(stderr, "monosem: rank %d: %s:%d: invariant failed: %s (a bug in monosem: please report it)\n",
            rank, file, line, cond);
    fflush(stderr);
    if (init && !fin) MPI_Abort(MPI_COMM_WORLD, MS_EXIT_INVARIANT);
    exit(MS_EXIT_INVARIANT);
}

ms_status ms_comm_agree(const ms_comm *comm, ms_status local, ms_err *err)
{
    /* worst status wins; the message travels from the lowest failing rank */
    int mine[2] = {(int)local, local != MS_OK ? comm->rank : INT_MAX}, all[2];
    int worst_status, first_rank;
    MPI_Allreduce(&mine[0], &all[0], 1, MPI_INT, MPI_MAX, COMM(comm));
    MPI_Allreduce(&mine[1], &all[1], 1, MPI_INT, MPI_MIN, COMM(comm));
    worst_status = all[0];
    first_rank = all[1];
    if (worst_status == MS_OK) return MS_OK;
    ms_err tmp;
    if (comm->rank == first_rank && err) tmp = *err;
    else memset(&tmp, 0, sizeof tmp);
    MPI_Bcast(&tmp, (int)sizeof tmp, MPI_BYTE, first_rank, COMM(comm));
    if (err) {
        if (err->status == MS_OK || comm->rank != first_rank) *err = tmp;
        if (err->status == MS_OK)
            ms_err_set(err, (ms_status)worst_status, "rank %d failed (%s)", first_rank,
                       ms_status_str((ms_status)worst_status));
    }
    return err ? err->status : (ms_status)worst_status;
}

static ms_status allreduce(const ms_comm *comm, void *buf, size_t n, size_t elem, MPI_Datatype t,
                           ms_err *err)
{
    if (comm->size == 1) return MS_OK;
    char *p = buf;
    for (size_t off = 0; off < n; off += MS_MPI_CHUNK) {
        size_t cnt = n - off < MS_MPI_CHUNK ? n - off : MS_MPI_CHUNK;
        if (MPI_Allreduce(MPI_IN_PLACE, p + off * elem, (int)cnt, t, MPI_SUM, COMM(comm)) != MPI_SUCCESS)
            return ms_err_set(err, MS_ERR_MPI, "MPI_Allreduce of %zu elements failed", cnt);
    }
    return MS_OK;
}

ms_status ms_comm_allreduce_f32(const ms_comm *comm, float *buf, size_t n, ms_err *err)
{
    return allreduce(comm, buf, n, sizeof(float), MPI_FLOAT, err);
}

ms_status ms_comm_allreduce_f64(const ms_comm *comm, double *buf, size_t n, ms_err *err)
{
    return allreduce(comm, buf, n, sizeof(double), MPI_DOUBLE, err);
}

ms_status ms_comm_allreduce_i64(const ms_comm *comm, int64_t *buf, size_t n, ms_err *err)
{
    return allreduce(comm, buf, n, sizeof(int64_t), MPI_INT64_T, err);
}

/* Counts and displacements as MPI ints: the fixed-order reduction's pieces stay far below
 * INT_MAX elements (a chunk of one slab), so one call each, checked rather than chunked. */
static ms_status to_ints(int *out, const int64_t *in, int n, const char *what, ms_err *err)
{
    for (int i = 0; i < n; i++) {
        if (in[i] < 0 || in[i] > INT_MAX)
            return ms_err_set(err, MS_ERR_MPI, "%s: %lld elements exceed one MPI call", what, (long long)in[i]);
        out[i] = (int)in[i];
    }
    return MS_OK;
}

static ms_status scatterv(const ms_comm *comm, const void *send, const int64_t *counts,
                          const int64_t *displs, void *recv, int root, MPI_Datatype t, size_t elem,
                          ms_err *err)
{
    if (comm->size == 1) {
        memcpy(recv, (const char *)send + displs[0] * elem, (size_t)counts[0] * elem);
        return MS_OK;
    }
    int n = comm->size, *c = g_ints, *dsp = g_ints + n;
    ms_status st = to_ints(c, counts, n, "MPI_Scatterv", err);
    if (!st) st = to_ints(dsp, displs, n, "MPI_Scatterv", err);
    if (st) return st;
    if (MPI_Scatterv(send, c, dsp, t, recv, c[comm->rank], t, root, COMM(comm)) != MPI_SUCCESS)
        return ms_err_set(err, MS_ERR_MPI, "MPI_Scatterv from rank %d failed", root);
    return MS_OK;
}

static ms_status allgatherv(const ms_comm *comm, const void *send, void *recv, const int64_t *counts,
                            const int64_t *displs, MPI_Datatype t, size_t elem, ms_err *err)
{
    if (comm->size == 1) {
        memmove((char *)recv + displs[0] * elem, send, (size_t)counts[0] * elem);
        return MS_OK;
    }
    int n = comm->size, *c = g_ints, *dsp = g_ints + n;
    ms_status st = to_ints(c, counts, n, "MPI_Allgatherv", err);
    if (!st) st = to_ints(dsp, displs, n, "MPI_Allgatherv", err);
    if (st) return st;
    /* send already in place (this rank's piece of recv): MPI forbids aliasing without saying so */
    const void *sb = send == (const char *)recv + displs[comm->rank] * elem ? MPI_IN_PLACE : send;
    if (MPI_Allgatherv(sb, c[comm->rank], t, recv, c, dsp, t, COMM(comm)) != MPI_SUCCESS)
        return ms_err_set(err, MS_ERR_MPI, "MPI_Allgatherv failed");
    return MS_OK;
}

ms_status ms_comm_scatterv_f32(const ms_comm *comm, const float *send, const int64_t *counts,
                               const int64_t *displs, float *recv, int root, ms_err *err)
{
    return scatterv(comm, send, counts, displs, recv, root, MPI_FLOAT, sizeof(float), err);
}

ms_status ms_comm_allgatherv_f32(const ms_comm *comm, const float *send, float *recv,
                                 const int64_t *counts, const int64_t *displs, ms_err *err)
{
    return allgatherv(comm, send, recv, counts, displs, MPI_FLOAT, sizeof(float), err);
}

ms_status ms_comm_allgatherv_f64(const ms_comm *comm, const double *send, double *recv,
                                 const int64_t *counts, const int64_t *displs, ms_err *err)
{
    return allgatherv(comm, send, recv, counts, displs, MPI_DOUBLE, sizeof(double), err);
}

ms_status ms_comm_bcast(const ms_comm *comm, void *buf, size_t n, int root, ms_err *err)
{
    if (comm->size == 1) return MS_OK;
    char *p = buf;
    for (size_t off = 0; off < n || (n == 0 && off == 0); off += MS_MPI_CHUNK) {
        size_t cnt = n - off < MS_MPI_CHUNK ? n - off : MS_MPI_CHUNK;
        if (MPI_Bcast(p + off, (int)cnt, MPI_BYTE, root, COMM(comm)) != MPI_SUCCESS)
            return ms_err_set(err, MS_ERR_MPI, "MPI_Bcast of %zu bytes failed", cnt);
        if (n == 0) break;
    }
    return MS_OK;
}

void ms_comm_barrier(const ms_comm *comm)
{
    if (comm->size > 1) MPI_Barrier(COMM(comm));
}

void ms_comm_minavgmax(const ms_comm *comm, double v, double *mn, double *avg, double *mx)
{
    double a = v, b = v, s = v;
    if (comm->size > 1) {
        MPI_Allreduce(&v, &a, 1, MPI_DOUBLE, MPI_MIN, COMM(comm));
        MPI_Allreduce(&v, &b, 1, MPI_DOUBLE, MPI_MAX, COMM(comm));
        MPI_Allreduce(&v, &s, 1, MPI_DOUBLE, MPI_SUM, COMM(comm));
    }
    *mn = a;
    *mx = b;
    *avg = s / comm->size;
}

/* The user merge of ms_comm_reduce_merge: MPI operations receive no context, so the call
 * parks it here for its duration (one reduction at a time per process). */
static ms_merge_fn g_merge_fn;
static void *g_merge_ctx;
static size_t g_merge_item;

static void merge_op(void *in, void *inout, int *len, MPI_Datatype *dt)
{
    (void)dt;
    g_merge_fn(g_merge_ctx, inout, in, (size_t)*len, g_merge_item);
}

ms_status ms_comm_reduce_merge(const ms_comm *comm, void *buf, size_t n_items, size_t item_bytes,
                               ms_merge_fn fn, void *ctx, int root, ms_err *err)
{
    if (comm->size == 1 || n_items == 0) return MS_OK;
    if (item_bytes == 0 || item_bytes > INT_MAX)
        return ms_err_set(err, MS_ERR_USAGE, "reduce_merge: item of %zu bytes", item_bytes);
    MPI_Datatype dt;
    MPI_Op op;
    if (MPI_Type_contiguous((int)item_bytes, MPI_BYTE, &dt) != MPI_SUCCESS || MPI_Type_commit(&dt) != MPI_SUCCESS)
        return ms_err_set(err, MS_ERR_MPI, "reduce_merge: MPI_Type_contiguous(%zu) failed", item_bytes);
    MPI_Op_create(merge_op, 1, &op);
    g_merge_fn = fn;
    g_merge_ctx = ctx;
    g_merge_item = item_bytes;
    ms_status st = MS_OK;
    size_t per = MS_MPI_CHUNK / item_bytes > 0 ? MS_MPI_CHUNK / item_bytes : 1;
    if (per > INT_MAX) per = INT_MAX;
    char *p = buf;
    for (size_t off = 0; off < n_items && !st; off += per) {
        size_t cnt = n_items - off < per ? n_items - off : per;
        void *b = p + off * item_bytes;
        int rc = comm->rank == root ? MPI_Reduce(MPI_IN_PLACE, b, (int)cnt, dt, op, root, COMM(comm))
                                    : MPI_Reduce(b, NULL, (int)cnt, dt, op, root, COMM(comm));
        if (rc != MPI_SUCCESS) st = ms_err_set(err, MS_ERR_MPI, "MPI_Reduce (merge) of %zu items failed", cnt);
    }
    MPI_Op_free(&op);
    MPI_Type_free(&dt);
    return st;
}

void ms_comm_gather_f64(const ms_comm *comm, double v, double *out, int root)
{
    MPI_Gather(&v, 1, MPI_DOUBLE, out, 1, MPI_DOUBLE, root, COMM(comm));
}

void ms_cpu_binding(int *mask_cpus, int *sharers, int *online)
{
    if (g_mask_cpus < 1) { /* MPI not initialised: this process alone */
        cpu_set_t set;
        affinity_read(&set);
        g_mask_cpus = CPU_COUNT(&set);
    }
    long on = sysconf(_SC_NPROCESSORS_ONLN);
    if (mask_cpus) *mask_cpus = g_mask_cpus;
    if (sharers) *sharers = g_mask_sharers;
    if (online) *online = on < 1 ? 1 : (int)on;
}

int ms_threads_for_binding(int mask_cpus, int sharers, int64_t requested)
{
    if (requested > 0) return requested > 1024 ? 1024 : (int)requested;
    int t = mask_cpus / (sharers < 1 ? 1 : sharers);
    return t < 1 ? 1 : t;
}

int ms_blas_threads_set(const ms_comm *comm, int64_t requested)
{
    static int said = 0; /* stages call this again after main: one line per process */
    int cpus, sharers, online;
    ms_cpu_binding(&cpus, &sharers, &online);
    const int fit = ms_threads_for_binding(cpus, sharers, 0);
    const int t = ms_threads_for_binding(cpus, sharers, requested);
    openblas_set_num_threads(t);
    if (!said) {
        said = 1;
        if (t > fit)
            ms_log_error("warning: run.blas_threads %d but this rank may run on %d CPU(s) (affinity mask of "
                         "%d shared by %d rank(s)): threads will share cores; bind ranks to more CPUs "
                         "(mpirun --map-by slot:PE=%d, srun --cpus-per-task=%d) or lower run.blas_threads",
                         t, fit, cpus, sharers, t, t);
        else if (requested <= 0 && sharers == 1 && (int64_t)cpus * (comm ? comm->node_size : 1) < online)
            ms_log_error("threads: %d per rank: the launcher bound each rank to %d of this node's %d CPUs "
                         "(mpirun --bind-to none, --map-by slot:PE=N or srun --cpus-per-task=N give a rank "
                         "N CPUs)", t, cpus, online);
    }
    return t;
}

int ms_comm_signal_agree(const ms_comm *comm, int64_t step)
{
    ms_testhook("step", step); /* before the flag is read: a signal sent while stopped counts here */
    int mine = ms_signal_caught(), any = mine;
    /* MAX: any rank's signal stops all; a failed call reads as "no signal" and the step's own
     * collective reports the MPI failure */
    if (comm && comm->size > 1 &&
        MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, COMM(comm)) != MPI_SUCCESS)
        any = mine;
    return any;
}

/* ------------------------------------------------------------------ sharding and the queue */

void ms_shard_range(int64_t n, int rank, int size, int64_t *begin, int64_t *end)
{
    MS_INVARIANT(n >= 0 && size > 0 && rank >= 0 && rank < size);
    int64_t base = n / size, extra = n % size;
    int64_t r = rank;
    *begin = r * base + (r < extra ? r : extra);
    *end = *begin + base + (r < extra ? 1 : 0);
}

void ms_queue_init(ms_queue *q, int64_t n_items, const uint8_t *skip, int n_remote_workers)
{
    q->n_items = n_items;
    q->next = 0;
    q->skip = skip;
    q->n_workers_left = n_remote_workers;
}

int64_t ms_queue_next(ms_queue *q)
{
    while (q->next < q->n_items && q->skip && q->skip[q->next]) q->next++;
    if (q->next >= q->n_items) return -1;
    return q->next++;
}

int64_t ms_queue_remaining(const ms_queue *q)
{
    int64_t n = 0;
    for (int64_t i = q->next; i < q->n_items; i++)
        if (!q->skip || !q->skip[i]) n++;
    return n;
}

int64_t ms_queue_take(ms_queue *q) { return ms_queue_next(q); }

static void serve_one(const ms_comm *comm, ms_queue *q, int src)
{
    int64_t msg;
    MPI_Recv(&msg, 1, MPI_INT64_T, src, TAG_REQUEST, COMM(comm), MPI_STATUS_IGNORE);
    if (msg < 0) { /* the worker quits (after an error, or a stop signal): no reply expected */
        q->n_workers_left--;
        if (msg == -2) q->next = q->n_items; /* a stop signal: hand out nothing more to anyone */
        return;
    }
    int64_t item = ms_queue_next(q);
    if (item < 0) q->n_workers_left--;
    MS_INVARIANT(q->n_workers_left >= 0);
    MPI_Send(&item, 1, MPI_INT64_T, src, TAG_REPLY, COMM(comm));
}

void ms_queue_serve(const ms_comm *comm, ms_queue *q)
{
    if (comm->size == 1) return;
    for (;;) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_REQUEST, COMM(comm), &flag, &st);
        if (!flag) return;
        serve_one(comm, q, st.MPI_SOURCE);
    }
}

void ms_queue_drain(const ms_comm *comm, ms_queue *q)
{
    while (comm->size > 1 && q->n_workers_left > 0) {
        MPI_Status st;
        MPI_Probe(MPI_ANY_SOURCE, TAG_REQUEST, COMM(comm), &st);
        serve_one(comm, q, st.MPI_SOURCE);
    }
}

int64_t ms_queue_request(const ms_comm *comm)
{
    int64_t req = comm->rank, item = -1;
    MPI_Send(&req, 1, MPI_INT64_T, 0, TAG_REQUEST, COMM(comm));
    MPI_Recv(&item, 1, MPI_INT64_T, 0, TAG_REPLY, COMM(comm), MPI_STATUS_IGNORE);
    return item;
}

void ms_queue_quit(const ms_comm *comm)
{
    int64_t msg = -1;
    if (comm->size > 1 && comm->rank != 0) MPI_Send(&msg, 1, MPI_INT64_T, 0, TAG_REQUEST, COMM(comm));
}

void ms_queue_stop(const ms_comm *comm)
{
    int64_t msg = -2;
    if (comm->size > 1 && comm->rank != 0) MPI_Send(&msg, 1, MPI_INT64_T, 0, TAG_REQUEST, COMM(comm));
}

void ms_comm_library_version(char *buf, size_t n)
{
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    /* first line only: Open MPI appends build details */
    char *nl = strchr(v, '\n');
    if (nl) *nl = '\0';
    snprintf(buf, n, "%s", v);
}

int64_t ms_comm_h5_fapl(const ms_comm *comm)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    MPI_Info info;
    MPI_Info_create(&info);
    H5Pset_fapl_mpio(fapl, COMM(comm), info);
    MPI_Info_free(&info);
    return (int64_t)fapl;
}
