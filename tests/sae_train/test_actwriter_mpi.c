/* Under mpirun: every rank writes its shards of an activations file with independent parallel
 * HDF5 writes, "crashes" half way, resumes from /progress, finalizes; every rank then reads the
 * whole file back. Usage: test_actwriter_mpi OUT.h5 (row i, column j holds value(i, j)). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monosem/io.h"

#define N_SHARDS 8
#define SHARD_ROWS 50
#define D 6
#define CONTEXT 4

static float value(int64_t i, int64_t j)
{
    return (float)(i * 0.25 - j * 1.5); /* exact in float16 for these ranges */
}

static int fail(const ms_comm *c, const char *what, const ms_err *e)
{
    fprintf(stderr, "rank %d: %s: %s\n", c->rank, what, e ? e->msg : "");
    ms_comm_abort(c, 1);
    return 1;
}

static void write_shard(ms_actwriter *w, int64_t s, const ms_comm *c)
{
    float x[SHARD_ROWS * D];
    int32_t idx[SHARD_ROWS * 2], tok[SHARD_ROWS / CONTEXT * CONTEXT + CONTEXT];
    for (int64_t r = 0; r < SHARD_ROWS; r++) {
        int64_t i = s * SHARD_ROWS + r;
        for (int64_t j = 0; j < D; j++) x[r * D + j] = value(i, j);
        idx[2 * r] = (int32_t)(i / CONTEXT);
        idx[2 * r + 1] = (int32_t)(i % CONTEXT);
    }
    ms_err e = {0};
    if (ms_actwriter_write_rows(w, s * SHARD_ROWS, SHARD_ROWS, x, idx, &e)) fail(c, "write", &e);
    /* one context per shard in /tokens */
    for (int k = 0; k < CONTEXT; k++) tok[k] = (int32_t)(s * 100 + k);
    if (ms_actwriter_write_tokens(w, s, 1, tok, &e)) fail(c, "tokens", &e);
    if (ms_actwriter_mark_done(w, s, &e)) fail(c, "mark", &e);
}

int main(int argc, char **argv)
{
    ms_comm comm;
    ms_err err = {0};
    if (ms_comm_init(&comm, &argc, &argv, &err) != MS_OK) return 1;
    if (argc < 2) return fail(&comm, "usage", NULL);
    const char *path = argv[1];
    ms_actmeta m;
    memset(&m, 0, sizeof m);
    m.n_rows = N_SHARDS * SHARD_ROWS;
    m.d = D;
    m.n_contexts = N_SHARDS;
    m.context = CONTEXT;
    m.n_shards = N_SHARDS;
    m.dtype = MS_DTYPE_F16;
    m.seed = 11;
    m.chunk_rows = 32;
    snprintf(m.hook, sizeof m.hook, "blocks.0.mlp.hook_post");
    snprintf(m.model_sha256, sizeof m.model_sha256, "%s",
             "ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01");
    snprintf(m.config_hash, sizeof m.config_hash, "fedcba9876543210");
    m.config_text = "generate: {dtype: float16}\n";

    ms_actwriter *w;
    if (ms_actwriter_create(&w, path, &m, &comm, &err)) return fail(&comm, "create", &err);
    /* first pass: shards s with s % size == rank, only the first half of them */
    for (int64_t s = comm.rank; s < N_SHARDS / 2; s += comm.size) write_shard(w, s, &comm);
    ms_actwriter_close(w);

    uint8_t done[N_SHARDS];
    if (ms_actwriter_resume(&w, path, &m, done, &comm, &err)) return fail(&comm, "resume", &err);
    int64_t n_done = 0;
    for (int s = 0; s < N_SHARDS; s++) n_done += done[s];
    if (n_done != N_SHARDS / 2) {
        char msg[128];
        int k = snprintf(msg, sizeof msg, "resume: %lld shards done, expected %d:", (long long)n_done,
                         N_SHARDS / 2);
        for (int s = 0; s < N_SHARDS; s++) k += snprintf(msg + k, sizeof msg - (size_t)k, " %d", done[s]);
        return fail(&comm, msg, NULL);
    }
    for (int64_t s = comm.rank; s < N_SHARDS; s += comm.size)
        if (!done[s]) write_shard(w, s, &comm);
    if (ms_actwriter_finalize(w, &err)) return fail(&comm, "finalize", &err);

    ms_actfile *f;
    ms_actmeta got;
    if (ms_actfile_open(&f, path, &got, &err)) return fail(&comm, "open", &err);
    float y[N_SHARDS * SHARD_ROWS * D];
    int32_t idx[N_SHARDS * SHARD_ROWS * 2], tok[N_SHARDS * CONTEXT];
    if (ms_actfile_read(f, 0, m.n_rows, y, &err) || ms_actfile_read_index(f, 0, m.n_rows, idx, &err) ||
        ms_actfile_read_tokens(f, 0, N_SHARDS, tok, &err))
        return fail(&comm, "read", &err);
    for (int64_t i = 0; i < m.n_rows; i++) {
        for (int64_t j = 0; j < D; j++)
            if (y[i * D + j] != value(i, j)) return fail(&comm, "row value mismatch", NULL);
        if (idx[2 * i] != i / CONTEXT || idx[2 * i + 1] != i % CONTEXT)
            return fail(&comm, "index mismatch", NULL);
    }
    for (int s = 0; s < N_SHARDS; s++)
        for (int k = 0; k < CONTEXT; k++)
            if (tok[s * CONTEXT + k] != s * 100 + k) return fail(&comm, "tokens mismatch", NULL);
    if (got.n_shards != N_SHARDS || strcmp(got.hook, m.hook) || strcmp(got.config_text, m.config_text))
        return fail(&comm, "attributes mismatch", NULL);
    ms_actfile_close(f);
    ms_comm_barrier(&comm);
    if (comm.rank == 0) printf("actwriter: %d ranks wrote and read back %lld rows\n", comm.size,
                               (long long)m.n_rows);
    ms_comm_finalize(&comm);
    return 0;
}
