/* Test driver: `monosem eval`'s pass over several SAEs at once (what a job with several SAEs
 * will hand it), under mpirun: eval_driver JOB.yaml SAE_DIR... (each DIR holds saelens/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"

int main(int argc, char **argv)
{
    app_ctx app;
    memset(&app, 0, sizeof app);
    ms_err err = {0};
    ms_status st = ms_comm_init(&app.comm, &argc, &argv, &err);
    if (st) return 1;
    ms_log_init(app.comm.rank);
    char *text = NULL;
    size_t len = 0;
    app_job_sae *saes = NULL;
    int n = argc - 2;
    if (argc < 3) st = ms_err_set(&err, MS_ERR_USAGE, "usage: eval_driver JOB.yaml SAE_DIR...");
    if (!st) st = ms_file_read_all(argv[1], &text, &len, &err);
    if (!st) st = ms_config_parse(&app.cfg, argv[1], text, len, NULL, 0, NULL, &err);
    if (!st) {
        saes = calloc((size_t)n, sizeof *saes);
        for (int i = 0; saes && i < n; i++) {
            snprintf(saes[i].name, sizeof saes[i].name, "sae%d", i);
            saes[i].dir = strdup(argv[2 + i]);
            saes[i].model_dir = strdup(app.cfg.model.dir);
            saes[i].activations = strdup("");
        }
        if (!saes) st = ms_err_set(&err, MS_ERR_NOMEM, "out of memory");
    }
    st = ms_comm_agree(&app.comm, st, &err);
    if (!st) {
        app.have_cfg = true;
        ms_blas_threads_set(&app.comm, app.cfg.run.blas_threads);
        ms_runrec_init(&app.rec, "eval");
        st = app_eval_run(&app, saes, n, &err);
        st = ms_comm_agree(&app.comm, st, &err);
    }
    if (st && app.comm.rank == 0) fprintf(stderr, "%s\n", err.msg);
    if (saes) app_job_saes_free(saes, n);
    free(text);
    ms_config_free(&app.cfg);
    ms_comm_finalize(&app.comm);
    return ms_status_exit_code(st);
}
