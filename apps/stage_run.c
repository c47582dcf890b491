/* `monosem run job.yaml`: the pipeline stages in order in one launch, each with its own run
 * record; stages whose outputs already exist are skipped, the others resume or start. */
#include <stdlib.h>
#include <string.h>

#include "app.h"

static const char *const pipeline[] = {"tokenizer-train", "tokenize", "train-model", "generate", "train", "eval",
                                       "analyze", "report"};

/* True on every rank if rank 0 sees the file (ranks agree even without a shared view). */
static bool exists_agreed(const ms_app *app, const char *path)
{
    int e = app->comm.rank == 0 && ms_path_exists(path);
    ms_comm_bcast(&app->comm, &e, sizeof e, 0, NULL);
    return e != 0;
}

/* Outputs that make a stage unnecessary: tokenizer files (tokenizer-train keeps existing ones
 * anyway) or a finished model. The other stages decide for themselves (they resume). */
static bool finished(const ms_app *app, const char *stage)
{
    if (strcmp(stage, "tokenizer-train") == 0)
        return exists_agreed(app, app->cfg.tokenizer.vocab) && exists_agreed(app, app->cfg.tokenizer.merges);
    if (strcmp(stage, "train-model") == 0) {
        char *p = ms_path_join(app->cfg.model.dir, "model.safetensors");
        bool done = p && exists_agreed(app, p);
        free(p);
        return done;
    }
    return false;
}

ms_status ms_stage_run(ms_app *app, ms_err *err)
{
    char done[256] = "";
    for (size_t i = 0; i < sizeof pipeline / sizeof pipeline[0]; i++) {
        const ms_stage *def = ms_stage_find(pipeline[i]);
        if (!def->run)
            return ms_err_set(err, MS_ERR_UNSUPPORTED,
                              "monosem run: stage '%s' is not built in monosem %s; completed: %s", def->name,
                              MS_VERSION_STRING, done[0] ? done : "none");
        if (finished(app, def->name)) {
            ms_log("== %s: outputs exist, skipped", def->name);
        } else {
            ms_status st = ms_config_check_required(&app->cfg, def->required, err);
            if (st) return st; /* identical on every rank: no agreement needed */
            ms_log("== %s", def->name);
            ms_app sub = *app;
            sub.def = def;
            sub.stage = def->name;
            ms_runrec_init(&sub.rec, def->name);
            ms_lock locks[MS_APP_MAX_LOCKS];
            int n_locks = 0;
            st = ms_app_lock_outputs(&sub, def->name, locks, &n_locks, err);
            if (st) return st;
            st = def->run(&sub, err);
            st = ms_comm_agree(&app->comm, st, err);
            ms_app_unlock(locks, n_locks);
            ms_err rerr = {0};
            ms_status rst = ms_runrec_write(&sub.rec, &app->comm, &app->cfg, app->cfg.run.out_dir, st, &rerr);
            if (st) return st;
            if (ms_comm_agree(&app->comm, rst, &rerr)) return ms_err_set(err, rerr.status, "%s", rerr.msg);
        }
        snprintf(done + strlen(done), sizeof done - strlen(done), "%s%s", done[0] ? ", " : "", def->name);
    }
    return MS_OK;
}
