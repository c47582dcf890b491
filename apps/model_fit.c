/* Whether a job's contexts and token shards fit a model: the check every stage that runs a model
 * over the token shards makes before it starts. */
#include <inttypes.h>

#include "app.h"

ms_status app_check_model_fit(const ms_config *cfg, const char *model_dir, int n_ctx, int d_vocab,
                                 const ms_tokset *ts, ms_err *err)
{
    if (cfg->corpus.context > n_ctx)
        return ms_err_set(err, MS_ERR_CONFIG, "%s: key 'corpus.context': %" PRId64 " exceeds the model's n_ctx %d (%s)",
                          cfg->path, cfg->corpus.context, n_ctx, model_dir);
    if (ts && ts->vocab_size > d_vocab)
        return ms_err_set(err, MS_ERR_STATE,
                          "%s: the token shards use a vocabulary of %d ids but the model (%s) has d_vocab %d",
                          cfg->corpus.token_dir, ts->vocab_size, model_dir, d_vocab);
    return MS_OK;
}
