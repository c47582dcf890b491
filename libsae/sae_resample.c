/* libsae/sae_resample.c: libsae's part of dead-latent resampling: the dead mask and the
 * re-initialisation of dead latents from loss-weighted inputs (the schedule and the data are
 * apps/sae_resample.c's). */
#include "sae_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t ms_sae_dead_mask(const ms_sae *sae, int64_t tokens, uint8_t *mask)
{
    int64_t n = 0;
    for (int64_t j = 0; j < sae->hp.d_sae; j++) {
        mask[j] = sae->since_fired[j] >= tokens;
        n += mask[j];
    }
    return n;
}

int64_t ms_sae_resample(ms_sae *sae, const uint8_t *dead, const float *x, const float *loss,
                        int64_t n, ms_rng *rng)
{
    const ms_sae_hparams *hp = &sae->hp;
    int64_t d = hp->d_in, m = hp->d_sae;
    int64_t n_dead = 0;
    for (int64_t j = 0; j < m; j++) n_dead += dead[j] != 0;
    if (n_dead == 0 || n <= 0) return 0;
    double *cum = malloc(sizeof(double) * (size_t)n);
    double *encn = malloc(sizeof(double) * (size_t)m);
    if (!cum || !encn) {
        free(cum), free(encn);
        return -1;
    }
    double tot = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double l = loss[i];
        tot += isfinite(l) ? l * l : 0.0;
        cum[i] = tot;
    }
    bool uniform = !(tot > 0.0) || !isfinite(tot);
    /* mean norm of the alive encoder columns */
    memset(encn, 0, sizeof(double) * (size_t)m);
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < m; j++) encn[j] += (double)sae->p.W_enc[i * m + j] * sae->p.W_enc[i * m + j];
    double alive_sum = 0.0;
    int64_t n_alive = 0;
    for (int64_t j = 0; j < m; j++)
        if (!dead[j]) alive_sum += sqrt(encn[j]), n_alive++;
    double enc_norm = n_alive > 0 ? alive_sum / (double)n_alive : 1.0;
    float s = sae->input_scale;
    int64_t done = 0;
    for (int64_t j = 0; j < m; j++) {
        if (!dead[j]) continue;
        int64_t pick;
        if (uniform) {
            pick = (int64_t)(ms_rng_uniform(rng) * (double)n);
        } else {
            double u = ms_rng_uniform(rng) * tot;
            int64_t lo = 0, hi = n - 1; /* first i with cum[i] > u */
            while (lo < hi) {
                int64_t mid = lo + (hi - lo) / 2;
                if (cum[mid] > u) hi = mid;
                else lo = mid + 1;
            }
            pick = lo;
        }
        if (pick >= n) pick = n - 1;
        /* the direction of the input as the encoder sees it, s·x − b_dec: along the raw x a
         * feature can start with u·(s·x − b_dec) ≤ 0 on the very input it was made for (ReLU
         * activations share a large positive b_dec) and never fire again */
        const float *xi = x + pick * d;
        const float *bd = sae->p.b_dec;
        double q = 0.0;
        for (int64_t i = 0; i < d; i++) q += ((double)(s * xi[i]) - bd[i]) * ((double)(s * xi[i]) - bd[i]);
        if (!(q > 0.0)) continue; /* an input at b_dec has no direction: leave this latent */
        double inv = 1.0 / sqrt(q);
        float *wd = sae->p.W_dec + j * d;
        for (int64_t i = 0; i < d; i++) {
            float u = (float)(((double)(s * xi[i]) - bd[i]) * inv);
            wd[i] = u;
            sae->p.W_enc[i * m + j] = (float)(u * 0.2 * enc_norm);
            sae->m.W_enc[i * m + j] = sae->v.W_enc[i * m + j] = 0.0f;
        }
        memset(sae->m.W_dec + j * d, 0, sizeof(float) * (size_t)d);
        memset(sae->v.W_dec + j * d, 0, sizeof(float) * (size_t)d);
        sae->p.b_enc[j] = 0.0f;
        sae->m.b_enc[j] = sae->v.b_enc[j] = 0.0f;
        sae->since_fired[j] = 0;
        done++;
    }
    free(cum), free(encn);
    return done;
}

