/* The SAEs and models a job describes, as lists that train, eval, analyze, compare and report
 * iterate over. */
#include <stdlib.h>
#include <string.h>

#include "app.h"

static char *dup_str(const char *s) { return s ? strdup(s) : strdup(""); }

bool app_job_has_model(const ms_config *cfg, int model)
{
    return model == 0 || (model == 1 && cfg->model_b.seed != 0) || (model == 2 && cfg->model_r.seed != 0);
}

const char *app_job_model_name(int model) { return model == 1 ? "B" : model == 2 ? "R" : "A"; }

const char *app_job_model_suffix(int model) { return model == 1 ? "-b" : model == 2 ? "-r" : ""; }

int app_job_model_parse(const char *name)
{
    for (int m = 0; m < MS_JOB_MAX_MODELS; m++)
        if (strcmp(name, app_job_model_name(m)) == 0) return m;
    return -1;
}

ms_status app_job_saes(const ms_config *cfg, app_job_sae **out, int *n, ms_err *err)
{
    *out = NULL;
    *n = 0;
    /* without a saes: list the sae section is the job's one SAE */
    int count = cfg->n_saes > 0 ? cfg->n_saes : 1;
    app_job_sae *s = calloc((size_t)count, sizeof *s);
    if (!s) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int i = 0; i < count; i++) {
        int idx = cfg->n_saes > 0 ? i : -1;
        ms_config d;
        ms_status st = ms_config_derive_sae(cfg, idx, &d, err);
        if (st) {
            app_job_saes_free(s, count);
            return st;
        }
        snprintf(s[i].name, sizeof s[i].name, "%s", idx < 0 ? "sae" : cfg->saes[i].name);
        s[i].dir = dup_str(d.sae.out_dir);
        s[i].model_dir = dup_str(d.model.dir);
        s[i].activations = dup_str(d.sae.activations);
        s[i].model = idx < 0 ? 0 : cfg->saes[i].model;
        s[i].d_sae = d.sae.d_sae;
        s[i].index = idx;
        ms_config_free(&d);
        if (!s[i].dir || !s[i].model_dir || !s[i].activations) {
            app_job_saes_free(s, count);
            return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        }
    }
    *out = s;
    *n = count;
    return MS_OK;
}

void app_job_saes_free(app_job_sae *s, int n)
{
    if (!s) return;
    for (int i = 0; i < n; i++) {
        free(s[i].dir);
        free(s[i].model_dir);
        free(s[i].activations);
    }
    free(s);
}

char *app_job_analysis_path(const ms_config *cfg, const char *name, const char *beside)
{
    const char *base = cfg->analyze.out_dir && *cfg->analyze.out_dir ? cfg->analyze.out_dir : NULL;
    char *dir = base ? ms_path_join(base, name) : strdup(beside);
    char *p = dir ? ms_path_join(dir, "analysis.h5") : NULL;
    free(dir);
    return p;
}

bool app_job_analyzes_model(const ms_config *cfg, int model) { return model != 1 && app_job_has_model(cfg, model); }

const char *app_job_neurons_name(int model) { return model == 2 ? "neurons-R" : "neurons"; }

char *app_job_neurons_analysis_path(const ms_config *cfg, int model)
{
    char *beside = ms_path_join(cfg->run.out_dir, model == 2 ? "neurons-r" : "neurons");
    char *p = beside ? app_job_analysis_path(cfg, app_job_neurons_name(model), beside) : NULL;
    free(beside);
    return p;
}

/* One model's stage body under the lock of that model's outputs. COLLECTIVE. */
static ms_status locked(app_ctx *app, app_stage_fn one, ms_err *err)
{
    ms_lock lk;
    int n = 0;
    ms_status st = app_lock_model_outputs(app, app->stage, &lk, &n, err);
    if (st) return st;
    st = one(app, err);
    st = ms_comm_agree(&app->comm, st, err);
    if (n) ms_lock_release(&lk);
    return st;
}

/* One model's stage on its derived config, with its own run record <out_dir>/run-<stage>-<b|r>.yaml.
 * COLLECTIVE. */
static ms_status run_derived(app_ctx *app, int m, app_stage_fn one, ms_err *err)
{
    app_ctx sub = *app;
    ms_status st = ms_config_derive_model(&app->cfg, m, &sub.cfg, err);
    if (st) return st;
    char label[32];
    snprintf(label, sizeof label, "%s%s", app->stage, app_job_model_suffix(m));
    ms_log("== %s: model %s (seed %lld%s) -> %s", app->stage, app_job_model_name(m), (long long)sub.cfg.train_model.seed,
           m == 2 ? ", the untrained control" : "", sub.cfg.model.dir);
    ms_runrec_init(&sub.rec, label);
    st = locked(&sub, one, err);
    st = ms_comm_agree(&app->comm, st, err);
    ms_err rerr = {0};
    ms_status rst = ms_runrec_write(&sub.rec, &app->comm, &sub.cfg, app->cfg.run.out_dir, st, &rerr);
    rst = ms_comm_agree(&app->comm, rst, &rerr);
    ms_config_free(&sub.cfg);
    if (!st && rst) st = ms_err_set(err, rerr.status, "%s", rerr.msg);
    return st;
}

ms_status app_job_each_model(app_ctx *app, app_stage_fn one, ms_err *err)
{
    const char *only = app_option(app, "only");
    const int pick = only ? app_job_model_parse(only) : -1;
    if (only && pick < 0)
        return ms_err_set(err, MS_ERR_USAGE, "monosem %s --only %s: expected A, B or R (the job's models)", app->stage,
                          only);
    if (only && !app_job_has_model(&app->cfg, pick))
        return ms_err_set(err, MS_ERR_USAGE, "monosem %s --only %s: the job has no model %s (%s.seed is 0)", app->stage,
                          only, only, pick == 1 ? "model_b" : "model_r");
    ms_status st = MS_OK;
    for (int m = 0; m < MS_JOB_MAX_MODELS && !st; m++) {
        if (!app_job_has_model(&app->cfg, m) || (only && m != pick)) continue;
        st = m == 0 ? locked(app, one, err) : run_derived(app, m, one, err);
    }
    return st;
}
