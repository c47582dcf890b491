/* `monosem train job.yaml`: trains the sparse autoencoder on the activations file, data parallel
 * (the loop lives in libsae/train.c; this stage only wires the job to it). */
#include "app.h"
#include "monosem/sae.h"

ms_status ms_stage_train(ms_app *app, ms_err *err)
{
    ms_train_result res;
    ms_signals_install(); /* SIGTERM/SIGINT/SIGUSR1: checkpoint at the next step, exit 75 */
    ms_status st = ms_sae_train(&app->cfg, &app->comm, &app->rec, &res, err);
    if (st == MS_OK && res.resumed_from >= 0)
        ms_runrec_fact(&app->rec, "sae.resumed", "from step %lld", (long long)res.resumed_from);
    return st;
}
