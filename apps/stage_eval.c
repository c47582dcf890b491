/* `monosem eval job.yaml`: every SAE of the job measured on held-out text with the paper's
 * numbers (the pass lives in eval_run.c; this stage only wires the job's SAEs to it). */
#include "eval.h"

ms_status ms_stage_eval(ms_app *app, ms_err *err)
{
    ms_job_sae *saes = NULL;
    int n = 0;
    ms_status st = ms_job_saes(&app->cfg, &saes, &n, err);
    if (!st) st = ms_eval_run(app, saes, n, err);
    ms_job_saes_free(saes, n);
    return st;
}
