/* libsae/sae_adam.c: the optimizer step (relu-l1 decoder projection, global-norm clipping,
 * Adam, jumprelu's log θ, batchtopk's running threshold, dead-latent counters) and the
 * lr / sparsity-coefficient schedules. */
#include "sae_internal.h"

#include <math.h>
#include <string.h>

#define BTOPK_THRESHOLD_RATE 0.01 /* batchtopk running-threshold EMA rate (as SAELens) */

double ms_sae_lr_at(const ms_sae_hparams *hp, int64_t step)
{
    if (hp->lr_decay_frac <= 0.0 || hp->steps <= 0) return hp->lr;
    int64_t n_decay = (int64_t)(hp->lr_decay_frac * (double)hp->steps);
    if (n_decay <= 0) return hp->lr;
    int64_t start = hp->steps - n_decay;
    if (step < start) return hp->lr;
    double f = (double)(hp->steps - step) / (double)n_decay;
    return f > 0.0 ? hp->lr * f : 0.0;
}

double ms_sae_l1_at(const ms_sae_hparams *hp, int64_t step)
{
    double lam = hp->arch == MS_SAE_JUMPRELU ? hp->l0_coeff : hp->l1_coeff;
    if (hp->lambda_warmup_frac <= 0.0 || hp->steps <= 0) return lam;
    int64_t n_warm = (int64_t)(hp->lambda_warmup_frac * (double)hp->steps);
    if (n_warm <= 0 || step >= n_warm) return lam;
    return lam * (double)(step + 1) / (double)n_warm;
}

ms_status ms_sae_step(ms_sae *sae, double lr, const double *stats, ms_sae_step_info *info,
                      ms_err *err)
{
    const ms_sae_hparams *hp = &sae->hp;
    const int64_t d = hp->d_in, m = hp->d_sae;
    const ms_sae_layout *L = &sae->layout;
    const int nt = L->n_params >= ((size_t)1 << 21) ? sae_nthreads_for(sae) : 1;
    float *g = sae->grads, *p = sae->params, *mm = sae->adam_m, *vv = sae->adam_v;
    if (info) info->lr = lr, info->grad_norm = 0.0;
    double tp = sae_prof_now();
    ms_sae_ws *w = sae->ws;

    /* relu-l1: remove the component of each W_dec row's gradient along the row */
    if (hp->arch == MS_SAE_RELU_L1) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t j = 0; j < m; j++) {
            const float *wr = sae->p.W_dec + j * d;
            float *gr = sae->g.W_dec + j * d;
            float gw = sae_dot(gr, wr, d), ww = sae_dot(wr, wr, d);
            if (!(ww > 0.0f)) continue;
            sae_axpy(gr, -gw / ww, wr, d);
        }
    }

    /* global-norm clipping (fixed-block summation: same order whatever the thread count) */
    if (hp->grad_clip > 0.0) {
        size_t P = L->n_params, nb = (P + CLIP_BLOCK - 1) / CLIP_BLOCK;
        double *part = sae->ws->partials;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t k = 0; k < nb; k++) {
            size_t e0 = k * CLIP_BLOCK, e1 = e0 + CLIP_BLOCK < P ? e0 + CLIP_BLOCK : P;
            double q = 0.0;
            for (size_t e = e0; e < e1; e++) q += (double)g[e] * g[e];
            part[k] = q;
        }
        double q = 0.0;
        for (size_t k = 0; k < nb; k++) q += part[k];
        double norm = sqrt(q);
        if (info) info->grad_norm = norm;
        if (!isfinite(norm))
            return ms_err_set(err, MS_ERR_NUMERIC, "sae step %lld: gradient norm is not finite",
                              (long long)sae->step);
        if (norm > hp->grad_clip) {
            float c = (float)(hp->grad_clip / norm);
#pragma omp parallel for num_threads(nt) schedule(static)
            for (size_t e = 0; e < P; e++) g[e] *= c;
        }
    }

    /* Adam, bias-corrected, t = step + 1 */
    const double t = (double)(sae->step + 1);
    /* 1−β in double first: (1.0f − 0.999f) is off by 1.3e-5 relative */
    const float b1 = (float)hp->beta1, b2 = (float)hp->beta2;
    const float omb1 = (float)(1.0 - hp->beta1), omb2 = (float)(1.0 - hp->beta2);
    const float bc1 = (float)(1.0 - pow(hp->beta1, t)), bc2 = (float)(1.0 - pow(hp->beta2, t));
    const float lrf = (float)lr, eps = (float)hp->adam_eps;
    const size_t n_main = L->threshold; /* everything before the threshold block */
    int bad = 0;
    const size_t chunk = 1 << 16;
    const size_t n_chunks = (n_main + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : bad)
    for (size_t c = 0; c < n_chunks; c++) {
        size_t e0 = c * chunk, n = n_main - e0 < chunk ? n_main - e0 : chunk;
        bad |= sae_adam(p + e0, mm + e0, vv + e0, g + e0, n, b1, omb1, b2, omb2, lrf / bc1,
                        1.0f / bc2, eps);
    }
    if (hp->arch == MS_SAE_JUMPRELU) {
        /* Adam on log θ: θ ← θ·exp(−Δ) */
        for (int64_t j = 0; j < m; j++) {
            size_t e = L->threshold + (size_t)j;
            float gi = g[e];
            float mi = b1 * mm[e] + omb1 * gi;
            float vi = b2 * vv[e] + omb2 * gi * gi;
            mm[e] = mi, vv[e] = vi;
            float delta = lrf * (mi / bc1) / (sqrtf(vi / bc2) + eps);
            p[e] *= expf(-delta);
            bad |= !isfinite(p[e]);
        }
    }
    if (bad)
        return ms_err_set(err, MS_ERR_NUMERIC,
                          "sae step %lld: parameters became non-finite (lr %g too large?)",
                          (long long)sae->step, lr);

    if (hp->arch == MS_SAE_RELU_L1) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t j = 0; j < m; j++) {
            float *wr = sae->p.W_dec + j * d;
            float ww = sae_dot(wr, wr, d);
            if (ww > 0.0f) sae_scale(wr, 1.0f / sqrtf(ww), d);
        }
    }

    if (hp->arch == MS_SAE_BATCHTOPK && stats[MS_SAE_STAT_THRESH_N] > 0.0) {
        double v = stats[MS_SAE_STAT_THRESH_SUM] / stats[MS_SAE_STAT_THRESH_N];
        double th = sae->threshold_set ? (1.0 - BTOPK_THRESHOLD_RATE) * sae->p.threshold[0] +
                                             BTOPK_THRESHOLD_RATE * v
                                       : v;
        for (int64_t j = 0; j < m; j++) sae->p.threshold[j] = (float)th;
        sae->threshold_set = true;
    }

    const double *cnt = stats + MS_SAE_STAT_FIXED;
    int64_t rows = (int64_t)stats[MS_SAE_STAT_ROWS];
    for (int64_t j = 0; j < m; j++) sae->since_fired[j] = cnt[j] > 0.0 ? 0 : sae->since_fired[j] + rows;
    sae->step++;
    sae_prof(w, 9, &tp);
    return MS_OK;
}

