/* The whole job validated before any stage starts: every SAE entry's hyper-parameters (the
 * relations libsae checks at training time, e.g. topk's k_aux <= d_sae) and every model's
 * shape, so a bad entry is refused by `monosem config` and by the first stage, not after the
 * SAEs before it trained. */
#include <string.h>

#include "app.h"
#include "monosem/model.h"
#include "sae_train.h"

static void model_config_of(ms_model_config *mc, const ms_config *cfg)
{
    *mc = (ms_model_config){.n_layers = (int)cfg->model.n_layers,
                            .d_model = (int)cfg->model.d_model,
                            .d_mlp = (int)cfg->model.d_mlp,
                            .n_heads = (int)cfg->model.n_heads,
                            .d_head = (int)cfg->model.d_head,
                            .n_ctx = (int)cfg->model.n_ctx,
                            .d_vocab = 1, /* the tokenizer's: unknown until tokenize */
                            .act_fn = cfg->model.act_fn,
                            .normalization = cfg->model.normalization,
                            .eps = (float)cfg->model.eps};
}

/* "<job>:<line>:<col>: saes entry 'NAME': " or "<job>: " (the sae section) before msg */
static ms_status entry_err(const ms_config *cfg, int i, ms_status st, const ms_err *e2, ms_err *err)
{
    const char *msg = e2->msg;
    size_t pl = strlen(cfg->path);
    if (strncmp(msg, cfg->path, pl) == 0 && msg[pl] == ':') msg += pl + 1 + (msg[pl + 1] == ' ');
    if (i < 0) return ms_err_set(err, st, "%s: %s", cfg->path, msg);
    return ms_err_set(err, st, "%s:%d:%d: saes entry '%s': %s", cfg->path, cfg->saes[i].line, cfg->saes[i].col,
                      cfg->saes[i].name, msg);
}

ms_status app_job_check(const ms_config *cfg, ms_err *err)
{
    ms_err e2 = {0};
    ms_status st = MS_OK;
    for (int m = 0; m < MS_JOB_MAX_MODELS && !st; m++) {
        if (!app_job_has_model(cfg, m)) continue;
        ms_config d;
        if ((st = ms_config_derive_model(cfg, m, &d, err))) return st;
        ms_model_config mc;
        model_config_of(&mc, &d);
        char where[96];
        snprintf(where, sizeof where, "%s: model %s", cfg->path, app_job_model_name(m));
        st = ms_model_config_check(&mc, where, err);
        ms_config_free(&d);
    }
    for (int i = cfg->n_saes > 0 ? 0 : -1; i < (cfg->n_saes > 0 ? cfg->n_saes : 0) && !st; i++) {
        ms_config d;
        if ((st = ms_config_derive_sae(cfg, i, &d, err))) return st;
        ms_model_config mc;
        model_config_of(&mc, &d);
        ms_hook h;
        /* d_in: the hook's width in the job's model (the activations file, once made, must
         * agree); a hook the model lacks is the stages' error to report (with its key) */
        ms_sae_hparams hp;
        ms_err herr = {0};
        const int64_t d_in = ms_hook_parse(&h, d.model.hook, &mc, &herr) ? 1 : ms_hook_dim(&mc, h);
        app_sae_hparams_from_config(&hp, &d, d_in, d.sae.batch);
        st = ms_sae_hparams_check(&hp, &e2);
        if (st) st = entry_err(cfg, i, st, &e2, err);
        ms_config_free(&d);
    }
    return st;
}
