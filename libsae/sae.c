/* libsae/sae.c: the hyper-parameter check, the step statistics' accessors and export/import
 * of the weights (allocation: sae_params.c; the step: sae_forward.c, sae_backward.c,
 * sae_adam.c; the RNG, ms_rng, is io's: monosem/rng.h). */
#include "sae_internal.h"

#include <math.h>
#include <string.h>

/* ===================================================================== hyper-parameters */

ms_status ms_sae_hparams_check(const ms_sae_hparams *hp, ms_err *err)
{
    if (hp->arch < MS_SAE_RELU_L1 || hp->arch > MS_SAE_APRIL_2024)
        return ms_err_set(err, MS_ERR_CONFIG, "sae.arch: unknown architecture %d", hp->arch);
    if (hp->d_in <= 0 || hp->d_in > INT32_MAX)
        return ms_err_set(err, MS_ERR_CONFIG, "sae.d_in: expected 1..%d, got %lld", INT32_MAX,
                          (long long)hp->d_in);
    if (hp->d_sae <= 0 || hp->d_sae > INT32_MAX)
        return ms_err_set(err, MS_ERR_CONFIG, "sae.d_sae: expected 1..%d, got %lld", INT32_MAX,
                          (long long)hp->d_sae);
    if (hp->max_batch <= 0 || hp->max_batch > INT32_MAX)
        return ms_err_set(err, MS_ERR_CONFIG, "sae.batch: local batch must be 1..%d, got %lld",
                          INT32_MAX, (long long)hp->max_batch);
    if (is_topk(hp->arch) && (hp->k <= 0 || hp->k > hp->d_sae))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.k: expected 1..d_sae (%lld), got %lld",
                          (long long)hp->d_sae, (long long)hp->k);
    if (is_topk(hp->arch) && (hp->k_aux < 0 || hp->k_aux > hp->d_sae))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.k_aux: expected 0..d_sae (%lld), got %lld",
                          (long long)hp->d_sae, (long long)hp->k_aux);
    if (hp->arch == MS_SAE_JUMPRELU && !(hp->bandwidth > 0.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.bandwidth: expected > 0, got %g", hp->bandwidth);
    if (hp->arch == MS_SAE_JUMPRELU && !(hp->threshold_init > 0.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.threshold_init: expected > 0, got %g",
                          hp->threshold_init);
    if (!(hp->beta1 >= 0.0 && hp->beta1 < 1.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.beta1: expected in [0,1), got %g", hp->beta1);
    if (!(hp->beta2 >= 0.0 && hp->beta2 < 1.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.beta2: expected in [0,1), got %g", hp->beta2);
    if (!(hp->adam_eps > 0.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.adam_eps: expected > 0, got %g", hp->adam_eps);
    if (!(hp->lr >= 0.0) || !isfinite(hp->lr))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.lr: expected a finite value >= 0, got %g",
                          hp->lr);
    if (!(hp->lambda_warmup_frac >= 0.0 && hp->lambda_warmup_frac <= 1.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.lambda_warmup_frac: expected in [0,1], got %g",
                          hp->lambda_warmup_frac);
    if (!(hp->lr_decay_frac >= 0.0 && hp->lr_decay_frac <= 1.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.lr_decay_frac: expected in [0,1], got %g",
                          hp->lr_decay_frac);
    if (!(hp->grad_clip >= 0.0))
        return ms_err_set(err, MS_ERR_CONFIG, "sae.grad_clip: expected >= 0, got %g",
                          hp->grad_clip);
    if (hp->l1_coeff < 0.0 || hp->aux_coeff < 0.0 || hp->l0_coeff < 0.0)
        return ms_err_set(err, MS_ERR_CONFIG,
                          "sae: l1_coeff, aux_coeff and l0_coeff must be >= 0 (got %g, %g, %g)",
                          hp->l1_coeff, hp->aux_coeff, hp->l0_coeff);
    return MS_OK;
}

/* ===================================================================== stats */

size_t ms_sae_stats_len(const ms_sae *sae)
{
    return (size_t)MS_SAE_STAT_FIXED + (size_t)sae->hp.d_sae + (size_t)sae->hp.d_in;
}

double ms_sae_stats_mse(const ms_sae *sae, const double *st)
{
    double n = st[MS_SAE_STAT_ROWS] * (double)sae->hp.d_in;
    return n > 0 ? st[MS_SAE_STAT_SSE] / n : 0.0;
}

double ms_sae_stats_fvu(const ms_sae *sae, const double *st)
{
    double rows = st[MS_SAE_STAT_ROWS];
    if (rows <= 0) return 0.0;
    const double *xs = st + MS_SAE_STAT_FIXED + sae->hp.d_sae;
    double m2 = 0.0;
    for (int64_t i = 0; i < sae->hp.d_in; i++) m2 += xs[i] * xs[i];
    double var = st[MS_SAE_STAT_X_SQ] - m2 / rows;
    return var > 0 ? st[MS_SAE_STAT_SSE] / var : 0.0;
}

double ms_sae_stats_l0(const double *st)
{
    return st[MS_SAE_STAT_ROWS] > 0 ? st[MS_SAE_STAT_L0] / st[MS_SAE_STAT_ROWS] : 0.0;
}

/* ===================================================================== export / import */

void ms_sae_export(const ms_sae *sae, float *W_enc, float *b_enc, float *W_dec, float *b_dec,
                   float *threshold)
{
    int64_t d = sae->hp.d_in, m = sae->hp.d_sae;
    float s = sae->input_scale;
    if (W_enc)
        for (int64_t e = 0; e < d * m; e++) W_enc[e] = sae->p.W_enc[e] * s;
    if (b_enc) memcpy(b_enc, sae->p.b_enc, sizeof(float) * (size_t)m);
    if (W_dec)
        for (int64_t e = 0; e < m * d; e++) W_dec[e] = sae->p.W_dec[e] / s;
    if (b_dec)
        for (int64_t i = 0; i < d; i++) b_dec[i] = sae->p.b_dec[i] / s;
    if (threshold) {
        bool has = sae->hp.arch == MS_SAE_JUMPRELU || sae->hp.arch == MS_SAE_BATCHTOPK;
        for (int64_t j = 0; j < m; j++) threshold[j] = has ? sae->p.threshold[j] : 0.0f;
    }
}

void ms_sae_import(ms_sae *sae, const float *W_enc, const float *b_enc, const float *W_dec,
                   const float *b_dec, const float *threshold)
{
    int64_t d = sae->hp.d_in, m = sae->hp.d_sae;
    memset(sae->adam_m, 0, sizeof(float) * sae->layout.n_params);
    memset(sae->adam_v, 0, sizeof(float) * sae->layout.n_params);
    memset(sae->since_fired, 0, sizeof(int64_t) * (size_t)m);
    sae->step = 0;
    sae->input_scale = 1.0f;
    memcpy(sae->p.W_enc, W_enc, sizeof(float) * (size_t)(d * m));
    memcpy(sae->p.b_enc, b_enc, sizeof(float) * (size_t)m);
    memcpy(sae->p.W_dec, W_dec, sizeof(float) * (size_t)(m * d));
    memcpy(sae->p.b_dec, b_dec, sizeof(float) * (size_t)d);
    sae->threshold_set = false;
    if (threshold) {
        memcpy(sae->p.threshold, threshold, sizeof(float) * (size_t)m);
        sae->threshold_set = sae->hp.arch == MS_SAE_BATCHTOPK;
    } else {
        float t = sae->hp.arch == MS_SAE_JUMPRELU ? (float)sae->hp.threshold_init : 0.0f;
        for (int64_t j = 0; j < m; j++) sae->p.threshold[j] = t;
    }
}
