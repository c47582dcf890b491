/* `monosem eval job.yaml`: every SAE of the job measured on held-out text with the paper's
 * numbers (the pass lives in eval_run.c; this stage only wires the job's SAEs to it). */
#include <stdlib.h>

#include "eval.h"

ms_status app_stage_eval(app_ctx *app, ms_err *err)
{
    app_job_sae *saes = NULL;
    int n = 0;
    ms_status st = app_job_saes(&app->cfg, &saes, &n, err);
    if (st) return st;
    /* one pass per model (a pass shares one model's forward): model A's SAEs, then model B's
     * and the control R's on their derived configs (same held-out tokens: the split follows
     * run.seed, which B and R keep) */
    app_job_sae *sel = calloc((size_t)n + 1, sizeof *sel); /* shallow copies: strings stay owned by saes */
    if (!sel) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int m = 0; !st && m < MS_JOB_MAX_MODELS; m++) {
        if (!app_job_has_model(&app->cfg, m)) continue;
        int k = 0;
        for (int i = 0; i < n; i++)
            if (saes[i].model == m) sel[k++] = saes[i];
        if (k == 0) continue;
        if (m == 0) {
            st = app_eval_run(app, sel, k, err);
            continue;
        }
        ms_config mine = app->cfg, derived;
        if ((st = ms_config_derive_model(&mine, m, &derived, err))) break;
        ms_log("== eval: model %s (%s)", app_job_model_name(m), derived.model.dir);
        app->cfg = derived;
        st = app_eval_run(app, sel, k, err);
        app->cfg = mine;
        ms_config_free(&derived);
    }
    free(sel);
    app_job_saes_free(saes, n);
    return st;
}
