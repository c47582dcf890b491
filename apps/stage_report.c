/* `monosem report job.yaml`: the static feature dashboard under <out_dir>/report/ from what
 * eval and analyze wrote. Rank 0 builds it; the other ranks only join the agreed verdict. */
#include "app.h"
#include "report_build.h"

ms_status app_stage_report(app_ctx *app, ms_err *err)
{
    if (app->comm.rank != 0) return MS_OK;
    double t0 = ms_time_now();
    ms_status st = app_report_build(&app->cfg, &app->rec, err);
    ms_runrec_time(&app->rec, "report", ms_time_now() - t0);
    return st;
}
