/* libsae/sae_encode.c: the encoder pieces the training step shares with inference (x̄ and the
 * encoder GEMM, bias + topk/AuxK selection, batchtopk's batch selection) and the public
 * encode/decode/per-input-loss calls. */
#include "sae_internal.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Is entry z of feature j active (f = z) under the arch's mask? Unselected topk entries hold
 * -inf in Z, so z > 0 covers relu, topk and batchtopk. */
static inline bool is_active(int arch, float z, float th)
{
    return arch == MS_SAE_JUMPRELU ? z > th : z > 0.0f;
}

/* xbar = s·x − b_dec; Z = xbar·W_enc + b_enc (bias added by the callers' passes). */
void sae_encoder_gemm(ms_sae *sae, const float *x, int64_t B, int nt, double *xsq,
                      double *xsum)
{
    const ms_sae_hparams *hp = &sae->hp;
    int64_t d = hp->d_in, m = hp->d_sae;
    float s = sae->input_scale;
    ms_sae_ws *w = sae->ws;
    double sq = 0.0;
    for (int64_t b = 0; b < B; b++) {
        const float *xr = x + b * d;
        float *xb = w->xbar + b * d;
        for (int64_t i = 0; i < d; i++) {
            float v = s * xr[i];
            if (xsum) xsum[i] += v;
            sq += (double)v * v;
            xb[i] = v - sae->p.b_dec[i];
        }
    }
    if (xsq) *xsq = sq;
    (void)nt;
    sae_sgemm(w->kernel, 0, 0, B, m, d, 1.0f, w->xbar, d, sae->p.W_enc, m, 0.0f, w->Z, m);
}

/* Adds b_enc to Z's rows; topk: keeps the row's top k (others -inf); AuxK selection among
 * the dead latents (before masking), into acsr with k_aux_eff entries per row. */
void sae_activation_rows(ms_sae *sae, int64_t B, int nt, const int32_t *dead, int64_t n_dead,
                         int64_t kx, int64_t *rowcnt)
{
    const float hb = 0.5f * (float)sae->hp.bandwidth;
    const ms_sae_hparams *hp = &sae->hp;
    int64_t m = hp->d_sae;
    ms_sae_ws *w = sae->ws;
    int64_t kh = hp->k > hp->k_aux ? hp->k : hp->k_aux;
    if (kh < 1) kh = 1;
#pragma omp parallel num_threads(nt)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        int32_t *hidx = w->heap_idx + (int64_t)t * kh;
        float *hval = w->heap_val + (int64_t)t * kh;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            float *z = w->Z + b * m;
            /* bias, fused with the row's entry count (active, + jumprelu's window) */
            if (rowcnt)
                rowcnt[b + 1] = hp->arch == MS_SAE_JUMPRELU
                                    ? sae_bias_count(z, sae->p.b_enc, sae->p.threshold, hb, m, 1)
                                    : sae_bias_count(z, sae->p.b_enc, w->zerom, 0.0f, m, 0);
            else
                for (int64_t j = 0; j < m; j++) z[j] += sae->p.b_enc[j];
            if (kx > 0) {
                int64_t base = b * kx;
                int64_t got = sae_topk(hidx, hval, z, dead, n_dead, kx);
                for (int64_t e = 0; e < got; e++) {
                    int32_t j = hidx[e];
                    w->acsr.idx[base + e] = j;
                    w->acsr.val[base + e] = z[j] > 0.0f ? z[j] : 0.0f;
                    w->acsr.grad[base + e] = 0.0f;
                }
                w->acsr.ptr[b + 1] = base + got;
            }
            if (hp->arch == MS_SAE_TOPK) {
                int64_t got = sae_topk_fast(hidx, hval, z, m, hp->k,
                                            (int32_t *)(w->tmp + (int64_t)t * w->tmp_stride));
                for (int64_t e = 0; e < got; e++) hval[e] = z[hidx[e]];
                for (int64_t j = 0; j < m; j++) z[j] = -INFINITY;
                int64_t c = 0;
                for (int64_t e = 0; e < got; e++) z[hidx[e]] = hval[e], c += hval[e] > 0.0f;
                if (rowcnt) rowcnt[b + 1] = c;
            }
        }
    }
    if (kx > 0) w->acsr.ptr[0] = 0;
}

/* batchtopk: keep the top k·B entries of the whole local batch (ties: row-major order);
 * returns the smallest selected positive value (or +inf if none). */
float sae_batchtopk_select(ms_sae *sae, int64_t B, int nt)
{
    int64_t m = sae->hp.d_sae, N = B * m;
    ms_sae_ws *w = sae->ws;
    int64_t K = sae->hp.k * B;
    if (K > N) K = N;
    /* K-th largest: a cut from a strided sample so that ~1.25K entries exceed it, quickselect
     * on those only (exact when at least K do; else on everything) */
    enum { S = 4096 };
    float t;
    {
        float smp[S] = {0}, scr[S];
        int64_t ns = N < S ? N : S, stride = N / ns;
        for (int64_t q = 0; q < ns; q++) smp[q] = w->Z[q * stride];
        int64_t r = (int64_t)((double)ns * 1.25 * (double)K / (double)N) + 1;
        if (r > ns) r = ns;
        float cut = sae_kth_largest(scr, smp, ns, r);
        int64_t c = 0;
        if (r < ns)
            for (int64_t e = 0; e < N && c <= N / 2; e++)
                if (w->Z[e] > cut) w->F[c++] = w->Z[e];
        if (r < ns && c >= K && 2 * c <= N) /* candidates in F[0,c), quickselect scratch after */
            t = sae_kth_largest(w->F + c, w->F, c, K);
        else
            t = sae_kth_largest(w->F, w->Z, N, K);
    }
    /* per row: > t and == t counts (parallel), then the tie budget in row-major order */
    int64_t *gt = w->rowtmp, *eq = w->rowtmp + B;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        int64_t g = 0, q = 0;
        const float *z = w->Z + b * m;
        for (int64_t j = 0; j < m; j++) g += z[j] > t, q += z[j] == t;
        gt[b] = g, eq[b] = q;
    }
    int64_t ties = K;
    for (int64_t b = 0; b < B; b++) ties -= gt[b];
    for (int64_t b = 0; b < B; b++) { /* eq[b] := ties this row may keep */
        int64_t take = eq[b] < ties ? eq[b] : (ties > 0 ? ties : 0);
        ties -= take;
        eq[b] = take;
    }
    int64_t *rowcnt = w->csr.ptr;
    float mn = INFINITY;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(min : mn)
    for (int64_t b = 0; b < B; b++) {
        float *z = w->Z + b * m;
        int64_t c = 0, tb = eq[b];
        for (int64_t j = 0; j < m; j++) {
            float v = z[j];
            bool keep = v > t || (v == t && tb-- > 0);
            if (!keep)
                z[j] = -INFINITY;
            else if (v > 0.0f) {
                c++;
                if (v < mn) mn = v;
            }
        }
        rowcnt[b + 1] = c;
    }
    return mn;
}

void ms_sae_encode(ms_sae *sae, float *f, const float *x, int64_t B)
{
    const ms_sae_hparams *hp = &sae->hp;
    ms_sae_ws *w = sae->ws;
    int64_t m = hp->d_sae;
    int nt = sae_nthreads_for(sae);
    for (int64_t b0 = 0; b0 < B; b0 += w->B) {
        int64_t nb = B - b0 < w->B ? B - b0 : w->B;
        sae_encoder_gemm(sae, x + b0 * hp->d_in, nb, nt, NULL, NULL);
        int arch = hp->arch == MS_SAE_BATCHTOPK ? MS_SAE_JUMPRELU : hp->arch;
        if (hp->arch == MS_SAE_TOPK) {
            sae_activation_rows(sae, nb, nt, NULL, 0, 0, NULL);
        } else {
#pragma omp parallel for num_threads(nt) schedule(static)
            for (int64_t b = 0; b < nb; b++)
                for (int64_t j = 0; j < m; j++) w->Z[b * m + j] += sae->p.b_enc[j];
        }
        float *fo = f + b0 * m;
        const float *th = sae->p.threshold;
        for (int64_t b = 0; b < nb; b++)
            for (int64_t j = 0; j < m; j++) {
                float z = w->Z[b * m + j];
                fo[b * m + j] = is_active(arch, z, th[j]) ? z : 0.0f;
            }
    }
}

void ms_sae_decode(const ms_sae *sae, float *xhat, const float *f, int64_t B)
{
    int64_t d = sae->hp.d_in, m = sae->hp.d_sae;
    for (int64_t b = 0; b < B; b++) memcpy(xhat + b * d, sae->p.b_dec, sizeof(float) * (size_t)d);
    sae_sgemm(sae->ws->kernel, 0, 0, B, d, m, 1.0f, f, m, sae->p.W_dec, d, 1.0f, xhat, d);
}

void ms_sae_decode_sparse(const ms_sae *sae, float *xhat, const float *f, int64_t B)
{
    const int64_t d = sae->hp.d_in, m = sae->hp.d_sae;
    int nt = sae_nthreads_for(sae);
    (void)nt;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        float *xr = xhat + b * d;
        const float *fr = f + b * m;
        memcpy(xr, sae->p.b_dec, sizeof(float) * (size_t)d);
        for (int64_t j = 0; j < m; j++) {
            if (fr[j] == 0.0f) continue;
            const float a = fr[j], *w = sae->p.W_dec + j * d;
            for (int64_t i = 0; i < d; i++) xr[i] += a * w[i];
        }
    }
}

void ms_sae_loss_per_input(ms_sae *sae, const float *x, int64_t n, float *out)
{
    const ms_sae_hparams *hp = &sae->hp;
    ms_sae_ws *w = sae->ws;
    int64_t d = hp->d_in, m = hp->d_sae;
    double c_mse = hp->arch == MS_SAE_APRIL_2024 ? 1.0 : 1.0 / (double)d;
    double lam = ms_sae_l1_at(hp, sae->step);
    float s = sae->input_scale;
    if (hp->arch == MS_SAE_APRIL_2024)
        for (int64_t j = 0; j < m; j++) {
            double q = 0.0;
            for (int64_t i = 0; i < d; i++) q += (double)sae->p.W_dec[j * d + i] * sae->p.W_dec[j * d + i];
            w->colnorm[j] = (float)sqrt(q);
        }
    for (int64_t b0 = 0; b0 < n; b0 += w->B) {
        int64_t nb = n - b0 < w->B ? n - b0 : w->B;
        const float *xc = x + b0 * d;
        ms_sae_encode(sae, w->F, xc, nb);
        ms_sae_decode(sae, w->xhat, w->F, nb);
        for (int64_t b = 0; b < nb; b++) {
            double q = 0.0, sp = 0.0;
            for (int64_t i = 0; i < d; i++) {
                double e = (double)w->xhat[b * d + i] - (double)s * xc[b * d + i];
                q += e * e;
            }
            const float *f = w->F + b * m;
            for (int64_t j = 0; j < m; j++) {
                if (f[j] == 0.0f) continue;
                if (hp->arch == MS_SAE_RELU_L1) sp += f[j];
                else if (hp->arch == MS_SAE_APRIL_2024) sp += (double)f[j] * w->colnorm[j];
                else if (hp->arch == MS_SAE_JUMPRELU) sp += 1.0;
            }
            out[b0 + b] = (float)(c_mse * q + lam * sp);
        }
    }
}

