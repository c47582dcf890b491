/* Eval metrics: the paper's numbers derived from the global partial sums (pure functions). */
#include <math.h>
#include <string.h>

#include "eval.h"

void app_eval_derive(app_eval_result *r, const double *glob, const double *hook, const double *sae,
                    int64_t d_in, int64_t d_sae, double ultralow, double rare)
{
    memset(r, 0, sizeof *r);
    const double N = glob[EVAL_GLOB_TOKENS];
    r->tokens = N;
    r->loss_clean = glob[EVAL_GLOB_LOSS_CLEAN] / N;
    r->loss_sae = sae[EVAL_SAE_LOSS] / N;
    r->loss_zero = hook[EVAL_HOOK_LOSS_ZERO] / N;
    r->loss_recovered = (r->loss_zero - r->loss_sae) / (r->loss_zero - r->loss_clean);
    r->kl = sae[EVAL_SAE_KL] / N;
    r->kl_zero = hook[EVAL_HOOK_KL_ZERO] / N;
    r->mse = sae[EVAL_SAE_SSE] / (N * (double)d_in);
    /* total variance Σ‖x − x̄‖² = Σ‖x‖² − ‖Σx‖²/N */
    const double *xsum = sae + EVAL_SAE_FIXED + d_sae;
    double s2 = 0.0;
    for (int64_t i = 0; i < d_in; i++) s2 += xsum[i] * xsum[i];
    r->fvu = sae[EVAL_SAE_SSE] / (sae[EVAL_SAE_X_SQ] - s2 / N);
    r->cos = sae[EVAL_SAE_COS_ROWS] > 0 ? sae[EVAL_SAE_COS] / sae[EVAL_SAE_COS_ROWS] : NAN;
    r->l2_ratio = sae[EVAL_SAE_NZ_ROWS] > 0 ? sae[EVAL_SAE_RATIO] / sae[EVAL_SAE_NZ_ROWS] : NAN;
    r->l0 = sae[EVAL_SAE_L0] / N;
    r->l1 = sae[EVAL_SAE_L1] / N;
    r->neuron_l0 = hook[EVAL_HOOK_L0] / N;
    ms_density_stats(&r->features, sae + EVAL_SAE_FIXED, d_sae, N, ultralow, rare);
    ms_density_stats(&r->neurons, hook + EVAL_HOOK_FIXED, d_in, N, ultralow, rare);
}
