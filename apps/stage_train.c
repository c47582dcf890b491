/* `monosem train job.yaml [--only NAME]`: trains every SAE of the job in sequence (the saes:
 * list, or the sae section), each from its own derived config into its own out_dir with its
 * own run record; the loop itself lives in sae_train.c. */
#include <string.h>

#include "app.h"
#include "sae_train.h"

/* One SAE: train (resuming from its checkpoint if there is one) and record. COLLECTIVE. */
static ms_status train_one(app_ctx *app, const app_job_sae *s, ms_err *err)
{
    ms_config d;
    ms_status st = ms_config_derive_sae(&app->cfg, s->index, &d, err);
    if (st) return st; /* a pure function of the config: identical on every rank */
    if (app->cfg.n_saes > 0) ms_log("== train %s: d_sae %lld, model %s -> %s", s->name, (long long)d.sae.d_sae,
                                    app_job_model_name(s->model), d.sae.out_dir);
    /* one SAE (the sae section): its facts are the stage's record; several: each SAE gets
     * its own record beside its outputs, and one line in the stage's record */
    const bool single = app->cfg.n_saes == 0;
    ms_runrec rec;
    ms_runrec_init(&rec, "train");
    ms_runrec *r = single ? &app->rec : &rec;
    app_train_result res;
    memset(&res, 0, sizeof res);
    ms_lock lk = {.fd = -1};
    st = app_lock_dir(app, d.sae.out_dir, &lk, err); /* one run per SAE directory */
    if (!st) st = app_sae_train(&d, &app->comm, r, &res, err);
    st = ms_comm_agree(&app->comm, st, err);
    ms_lock_release(&lk);
    if (st == MS_OK && res.resumed_from >= 0) ms_runrec_fact(r, "sae.resumed", "from step %lld", (long long)res.resumed_from);
    ms_err rerr = {0};
    ms_status rst = single ? MS_OK : ms_runrec_write(&rec, &app->comm, &d, d.sae.out_dir, st, &rerr);
    rst = ms_comm_agree(&app->comm, rst, &rerr);
    if (st == MS_OK && !single)
        ms_runrec_fact(&app->rec, s->name, "d_sae %lld, model %s, %lld steps, L0 %.2f, FVU %.4f, dead %lld -> %s",
                       (long long)d.sae.d_sae, app_job_model_name(s->model), (long long)res.steps, res.l0, res.fvu,
                       (long long)res.dead, d.sae.out_dir);
    ms_config_free(&d);
    if (st) return st;
    if (rst) return ms_err_set(err, rerr.status, "%s", rerr.msg);
    return MS_OK;
}

ms_status app_stage_train(app_ctx *app, ms_err *err)
{
    ms_signals_install(); /* SIGTERM/SIGINT/SIGUSR1: checkpoint at the next step, exit 75 */
    app_job_sae *saes = NULL;
    int n = 0;
    ms_status st = app_job_saes(&app->cfg, &saes, &n, err);
    if (st) return st;
    const char *only = app_option(app, "only");
    bool found = false;
    for (int i = 0; i < n && st == MS_OK; i++) {
        if (only && strcmp(only, saes[i].name) != 0) continue;
        found = true;
        st = train_one(app, &saes[i], err);
    }
    if (st == MS_OK && only && !found) {
        char names[512] = "";
        for (int i = 0; i < n; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", saes[i].name);
        st = ms_err_set(err, MS_ERR_USAGE, "monosem train --only %s: the job has no SAE of that name (it has: %s)",
                        only, names);
    }
    app_job_saes_free(saes, n);
    return st;
}
