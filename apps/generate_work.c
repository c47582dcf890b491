/* generate's queue phase: rank 0 hands out context shards (serving inside its own forwards),
 * every rank reads, forwards to the hook, gathers the sampled rows and writes its shards. */
#include "generate_stage.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static ms_status serve_cb(void *user, ms_hook hook, float *act, int B, int T, int d, ms_err *err)
{
    (void)hook, (void)act, (void)B, (void)T, (void)d, (void)err;
    gen *g = user;
    ms_queue_serve(&g->app->comm, &g->q);
    return MS_OK;
}

void app_gen_serve_points(gen *g)
{
    static const ms_hook_kind kinds[] = {MS_HOOK_RESID_PRE, MS_HOOK_ATTN_OUT, MS_HOOK_RESID_MID, MS_HOOK_MLP_PRE};
    g->n_serve_at = 0;
    for (int l = 0; l <= g->hook.layer; l++)
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            if (l == g->hook.layer && kinds[k] >= g->hook.kind) break;
            if (g->n_serve_at == MAX_SERVE_HOOKS) return;
            g->serve_at[g->n_serve_at++] = (ms_hook_replace){{l, kinds[k]}, serve_cb, g};
        }
}

/* Rank 0's estimate of finished shards: handed out, minus those still held by a worker (each
 * worker not yet told "done" holds at most one) and rank 0's own current one. */
static void gen_progress(gen *g, bool holding)
{
    if (g->app->comm.rank != 0) return;
    int64_t handed = g->todo_shards - ms_queue_remaining(&g->q);
    int64_t done = handed - (holding ? 1 : 0) - g->q.n_workers_left;
    if (done < 0) done = 0;
    double per = (double)g->plan.shard_contexts * (double)g->plan.context;
    double tok = (double)done * per;
    if (tok > g->prog.total) tok = g->prog.total;
    snprintf(g->prog.label, sizeof g->prog.label, "generate %" PRId64 "/%" PRId64 " shards", done,
             g->todo_shards);
    ms_progress_update(&g->prog, tok);
}

/* One shard: read its contexts, forward to the hook, gather the sampled rows, write rows and
 * tokens, sync, then mark it done. Rank 0 serves the queue between forwards. Local. */
static ms_status gen_shard(gen *g, int64_t s, ms_err *err)
{
    const ms_comm *comm = &g->app->comm;
    const int64_t T = g->plan.context, K = g->plan.sample, d = g->d;
    int64_t c0, c1;
    app_gen_shard_contexts(&g->plan, s, &c0, &c1);
    const int64_t n = c1 - c0;
    double t = ms_time_now();
    /* contexts are consecutive windows of the token stream: one read per shard */
    ms_status st = ms_tokset_read(&g->ts, c0 * T, n * T, g->tokens, err);
    double t2 = ms_time_now();
    g->t_read += t2 - t;
    if (st) return st;
    /* rows must not depend on the rank, the batch (rank 0's is shorter, a shard's last one
     * ragged) or the thread count: every GEMM covers one context */
    ms_forward_opts opts = {.stop_after = &g->hook, .row_invariant = true};
    if (comm->rank == 0 && comm->size > 1) {
        opts.replaces = g->serve_at;
        opts.n_replaces = g->n_serve_at;
    }
    const float *act = NULL;
    for (int64_t b0 = 0; b0 < n; b0 += g->batch) {
        int64_t nb = n - b0 < g->batch ? n - b0 : g->batch;
        t = ms_time_now();
        st = ms_model_forward(&g->model, &g->acts, g->tokens + b0 * T, (int)nb, (int)T, &opts, err);
        if (st) return st;
        act = ms_model_acts_hook(&g->acts, g->hook);
        t2 = ms_time_now();
        g->t_fwd += t2 - t;
        size_t esz = g->meta.dtype == MS_DTYPE_F16 ? 2 : 4;
        app_gen_gather((char *)g->rows + (size_t)(b0 * K * d) * esz, g->meta.dtype, g->index + b0 * K * 2, act,
                      nb, T, d, K, (uint64_t)g->meta.seed, c0 + b0, g->scratch);
        t = ms_time_now();
        g->t_gather += t - t2;
        if (comm->rank == 0) {
            ms_queue_serve(comm, &g->q);
            gen_progress(g, true);
        }
    }
    t = ms_time_now();
    st = ms_actwriter_write_rows_raw(g->w, c0 * K, n * K, g->rows, g->index, err);
    if (comm->rank == 0) ms_queue_serve(comm, &g->q);
    if (!st) st = ms_actwriter_write_tokens(g->w, c0, n, g->tokens, err);
    ms_testhook("shard-rows", g->shards_mine + 1); /* test hook: rows written, shard not yet done */
    /* rows reach the OS before the shard is recorded done: a kill -9 after this point leaves
     * a shard that resume may skip; before it, one that resume redoes */
    if (!st) st = ms_actwriter_sync(g->w, err);
    if (!st) st = ms_actwriter_mark_done(g->w, s, err);
    if (!st) st = ms_actwriter_sync(g->w, err); /* the mark itself, so resume redoes at most this shard */
    g->t_write += ms_time_now() - t;
    if (st) return st;
    g->shards_mine++;
    ms_testhook("shard", g->shards_mine); /* test hook: this rank's Nth shard recorded done */
    g->tokens_mine += n * T;
    g->bytes_written += n * K * d * (g->meta.dtype == MS_DTYPE_F16 ? 2 : 4) + n * K * 8 + n * T * 4;
    return MS_OK;
}

ms_status app_gen_work(gen *g, ms_err *err)
{
    const ms_comm *comm = &g->app->comm;
    ms_status st = MS_OK;
    if (comm->rank == 0) {
        for (;;) {
            /* a stop signal: hand out nothing more (shards in hand finish, marked done) */
            if (ms_signal_caught()) g->q.next = g->q.n_items;
            ms_queue_serve(comm, &g->q);
            int64_t s = ms_queue_take(&g->q);
            if (s < 0) break;
            st = gen_shard(g, s, err);
            if (st) {
                g->q.next = g->q.n_items; /* hand out nothing more: workers stop too */
                break;
            }
            gen_progress(g, false);
        }
        double t = ms_time_now();
        ms_queue_drain(comm, &g->q);
        g->t_wait += ms_time_now() - t;
    } else {
        for (;;) {
            if (ms_signal_caught()) { /* rank 0 stops handing out to every rank */
                ms_queue_stop(comm);
                break;
            }
            double t = ms_time_now();
            int64_t s = ms_queue_request(comm);
            g->t_wait += ms_time_now() - t;
            if (s < 0) break;
            st = gen_shard(g, s, err);
            if (st) {
                ms_queue_quit(comm);
                break;
            }
        }
    }
    return st;
}
