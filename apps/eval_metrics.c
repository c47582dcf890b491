/* Eval metrics: the paper's numbers derived from the global partial sums (pure functions). */
#include <math.h>
#include <string.h>

#include "eval.h"

void ms_eval_derive(ms_eval_result *r, const double *glob, const double *hook, const double *sae,
                    int64_t d_in, int64_t d_sae, double ultralow, double rare)
{
    memset(r, 0, sizeof *r);
    const double N = glob[EVG_TOKENS];
    r->tokens = N;
    r->loss_clean = glob[EVG_LOSS_CLEAN] / N;
    r->loss_sae = sae[EVS_LOSS] / N;
    r->loss_zero = hook[EVH_LOSS_ZERO] / N;
    r->loss_recovered = (r->loss_zero - r->loss_sae) / (r->loss_zero - r->loss_clean);
    r->kl = sae[EVS_KL] / N;
    r->kl_zero = hook[EVH_KL_ZERO] / N;
    r->mse = sae[EVS_SSE] / (N * (double)d_in);
    /* total variance Σ‖x − x̄‖² = Σ‖x‖² − ‖Σx‖²/N */
    const double *xsum = sae + EVS_FIXED + d_sae;
    double s2 = 0.0;
    for (int64_t i = 0; i < d_in; i++) s2 += xsum[i] * xsum[i];
    r->fvu = sae[EVS_SSE] / (sae[EVS_X_SQ] - s2 / N);
    r->cos = sae[EVS_COS_ROWS] > 0 ? sae[EVS_COS] / sae[EVS_COS_ROWS] : NAN;
    r->l2_ratio = sae[EVS_NZ_ROWS] > 0 ? sae[EVS_RATIO] / sae[EVS_NZ_ROWS] : NAN;
    r->l0 = sae[EVS_L0] / N;
    r->l1 = sae[EVS_L1] / N;
    r->neuron_l0 = hook[EVH_L0] / N;
    ms_density_stats(&r->features, sae + EVS_FIXED, d_sae, N, ultralow, rare);
    ms_density_stats(&r->neurons, hook + EVH_FIXED, d_in, N, ultralow, rare);
}
