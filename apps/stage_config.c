/* `monosem config [job.yaml]`: print the fully resolved job (every default filled in) once. */
#include "app.h"

ms_status app_stage_config(app_ctx *app, ms_err *err)
{
    if (app->comm.rank != 0) return MS_OK;
    printf("# monosem %s resolved config of %s (hash %s)\n", MS_VERSION_STRING,
           app->job_path ? app->job_path : "defaults", app->cfg.hash);
    ms_status st = ms_config_dump(&app->cfg, stdout, err);
    fflush(stdout);
    return st;
}
