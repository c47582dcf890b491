/* Which outputs each stage locks (io/lock.c) before it runs: two runs into one output cannot
 * interleave (metrics.jsonl, checkpoints, shards, the activations file). */
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

#define LOCK_NAME ".monosem.lock"

/* Creates dir (rank 0) and locks dir/file. COLLECTIVE. */
static ms_status lock_in(const app_ctx *app, const char *dir, const char *file, const char *what, ms_lock *l,
                         ms_err *err)
{
    ms_status st = MS_OK;
    if (app->comm.rank == 0) st = ms_mkdirs(dir, err);
    st = ms_comm_agree(&app->comm, st, err);
    if (st) return st;
    char *path = ms_path_join(dir, file);
    if (!path) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    st = ms_comm_agree(&app->comm, st, err);
    if (st) return st;
    st = ms_lock_acquire(l, path, what, app->stage, &app->comm, err);
    free(path);
    return st;
}

/* Locks `.<name>.lock` in the directory that holds path (created if missing), so that nothing
 * is created inside path itself before the stage has checked its inputs, and other outputs in
 * the same directory stay free. COLLECTIVE. */
static ms_status lock_beside(const app_ctx *app, const char *path, ms_lock *l, ms_err *err)
{
    char *d = strdup(path), *b = strdup(path);
    char *lk = d && b ? malloc(strlen(b) + 8) : NULL;
    if (lk) snprintf(lk, strlen(b) + 8, ".%s.lock", basename(b));
    ms_status st = lk ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    st = ms_comm_agree(&app->comm, st, err);
    if (!st) st = lock_in(app, dirname(d), lk, path, l, err);
    free(d), free(b), free(lk);
    return st;
}

ms_status app_lock_outputs(const app_ctx *app, const char *stage, ms_lock *locks, int *n, ms_err *err)
{
    *n = 0;
    if (!app->have_cfg) return MS_OK;
    const ms_config *c = &app->cfg;
    ms_status st = MS_OK;
    /* the token directory, shared by both models; per-model and per-SAE outputs are locked by
     * the stage bodies (app_lock_model_outputs, app_lock_dir) */
    if (strcmp(stage, "tokenize") == 0 || (strcmp(stage, "generate") == 0 && c->corpus.n_paths > 0)) {
        st = lock_beside(app, c->corpus.token_dir, &locks[*n], err);
        if (st) return st;
        (*n)++;
    }
    return MS_OK;
}

ms_status app_lock_model_outputs(const app_ctx *app, const char *stage, ms_lock *l, int *n, ms_err *err)
{
    *n = 0;
    const ms_config *c = &app->cfg;
    ms_status st = MS_OK;
    if (strcmp(stage, "generate") == 0) st = lock_beside(app, c->generate.out, l, err);
    else if (strcmp(stage, "train-model") == 0) st = app_lock_dir(app, c->train_model.dir, l, err);
    else return MS_OK;
    if (!st) *n = 1;
    return st;
}

ms_status app_lock_dir(const app_ctx *app, const char *dir, ms_lock *l, ms_err *err)
{
    return lock_in(app, dir, LOCK_NAME, dir, l, err);
}

void app_unlock(ms_lock *locks, int n)
{
    for (int i = n - 1; i >= 0; i--) ms_lock_release(&locks[i]);
}
