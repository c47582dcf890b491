/* libsae/sae_backward.c: ms_sae_forward_backward's backward half: ∂L/∂z, the θ and b_enc
 * gradients, dW_dec, dW_enc (dense: GEMMs 3-5; sparse: per-feature passes over the CSC) and
 * db_dec by one GEMV. Reads what sae_forward.c left in the workspace (see sae_fb). */
#include "sae_internal.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Dense path. In: F (B,d_sae) = f, Z (B,d_sae), dxhat (B,d_in) = ∂L/∂x̂, xbar (B,d_in);
 * AuxK: acsc.grad. Out: g.W_dec (d_sae,d_in), g.W_enc (d_in,d_sae), g.b_enc (d_sae),
 * g.threshold (d_sae) (jumprelu: ∂L/∂θ); F := ∂L/∂z. */
void sae_backward_dense(ms_sae *sae, const sae_fb *c, double *tp)
{
    ms_sae_ws *w = sae->ws;
    const int arch = c->arch;
    const int64_t B = c->B, d = c->d, m = c->m, kx = c->kx;
    const int nt = c->nt;
    const double lam = c->lam, inv = c->inv;
    const float hb = c->hb, *thm = c->thm, *th = sae->p.threshold;
    const float l1g = (float)(lam * inv);
    const float inv_eps = 1.0f / c->eps_bw;
    const float l0g = (float)(lam * inv);
    float *gth = sae->g.threshold;
    /* GEMM 3: dW_dec = fᵀ·dx̂ (m,B)·(B,d) */
    sae_sgemm(w->kernel, 1, 0, m, d, B, 1.0f, w->F, m, w->dxhat, d, 0.0f, sae->g.W_dec, d);
    /* GEMM 4: F := ∂L/∂f = dx̂·W_decᵀ (B,d)·(d,m) */
    sae_sgemm(w->kernel, 0, 1, B, m, d, 1.0f, w->dxhat, d, sae->p.W_dec, d, 0.0f, w->F, m);
    sae_prof(w, 5, tp);
    /* ∂L/∂z = (z active) ? df + addv_j : 0, and db_enc = Σ_b ∂L/∂z (column blocks) */
    float *addv = w->addv;
    for (int64_t j = 0; j < m; j++)
        addv[j] = arch == MS_SAE_RELU_L1 ? l1g
                  : arch == MS_SAE_APRIL_2024 ? l1g * w->colnorm[j] : 0.0f;
    if (arch == MS_SAE_JUMPRELU) /* θ's STE needs df at the window entries: before masking */
        for (int64_t b = 0; b < B; b++) {
            const float *z = w->Z + b * m, *g = w->F + b * m;
            for (int64_t j = 0; j < m; j++)
                if (fabsf(z[j] - th[j]) < hb) gth[j] += -(th[j] * inv_eps) * g[j] - l0g * inv_eps;
        }
    if (kx > 0) { /* AuxK's ∂L/∂z joins after the mask (its entries need not be active) */
#pragma omp parallel num_threads(nt)
        {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            int64_t c0, c1;
            col_range(m, nt, t, &c0, &c1);
            if (c1 > c0)
                sae_dz_dense(w->F, w->Z, B, m, c0, c1, thm, addv, NULL,
                             w->tmp + (int64_t)t * w->tmp_stride);
        }
        for (int64_t j = 0; j < m; j++)
            for (int64_t e = w->acsc.ptr[j]; e < w->acsc.ptr[j + 1]; e++)
                w->F[(int64_t)w->acsc.idx[e] * m + j] += w->acsc.grad[e];
        for (int64_t j = 0; j < m; j++) addv[j] = 0.0f;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        int64_t c0, c1;
        col_range(m, nt, t, &c0, &c1);
        if (c1 > c0)
            sae_dz_dense(w->F, kx > 0 ? NULL : w->Z, B, m, c0, c1, thm, addv, w->dbsum,
                         w->tmp + (int64_t)t * w->tmp_stride);
        for (int64_t j = c0; j < c1; j++) sae->g.b_enc[j] = (float)w->dbsum[j];
    }
    sae_prof(w, 6, tp);
    /* GEMM 5: dW_enc = x̄ᵀ·dz (d,B)·(B,m) */
    sae_sgemm(w->kernel, 1, 0, d, m, B, 1.0f, w->xbar, d, w->F, m, 0.0f, sae->g.W_enc, m);
}

/* Sparse path. In: csc (val = f), Z (B,d_sae), dxhat (B,d_in) = ∂L/∂x̂, xbar (B,d_in),
 * colnorm; AuxK: acsc, ehat. Out: g.W_dec (d_sae,d_in), g.W_enc (d_in,d_sae), g.b_enc
 * (d_sae), g.threshold (d_sae) (jumprelu: ∂L/∂θ); csc.grad := ∂L/∂z. */
void sae_backward_sparse(ms_sae *sae, const sae_fb *c, double *tp)
{
    ms_sae_ws *w = sae->ws;
    const int arch = c->arch;
    const int64_t d = c->d, m = c->m, kx = c->kx;
    const int nt = c->nt;
    const double lam = c->lam, inv = c->inv;
    const float hb = c->hb, *th = sae->p.threshold;
    const float l1g = (float)(lam * inv);
    const float inv_eps = 1.0f / c->eps_bw;
    const float l0g = (float)(lam * inv);
    float *gth = sae->g.threshold;
    /* df at the listed entries, then per feature (CSC): dz, θ gradient, db_enc */
    sae_csc_rowdot(w->csc.grad, &w->csc, w->dxhat, sae->p.W_dec, m, d, nt);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t j = 0; j < m; j++) {
        double gb = 0.0, gt = 0.0;
        for (int64_t e = w->csc.ptr[j]; e < w->csc.ptr[j + 1]; e++) {
            float df = w->csc.grad[e], dz = df; /* entries are active except jumprelu's window */
            if (arch == MS_SAE_RELU_L1) dz += l1g;
            else if (arch == MS_SAE_APRIL_2024) dz += l1g * w->colnorm[j];
            else if (arch == MS_SAE_JUMPRELU) {
                float z = w->Z[(int64_t)w->csc.idx[e] * m + j];
                if (fabsf(z - th[j]) < hb)
                    gt += -(th[j] * inv_eps) * df - l0g * inv_eps;
                if (!(z > th[j])) dz = 0.0f;
            }
            w->csc.grad[e] = dz;
            gb += dz;
        }
        if (kx > 0)
            for (int64_t e = w->acsc.ptr[j]; e < w->acsc.ptr[j + 1]; e++) gb += w->acsc.grad[e];
        sae->g.b_enc[j] = (float)gb;
        gth[j] = (float)gt;
    }
    sae_prof(w, 5, tp);
    /* dW_dec_j = Σ f·dx̂ (+ Σ f_aux·∂L/∂ê) */
    sae_csc_rows(sae->g.W_dec, &w->csc, w->csc.val, w->dxhat, kx > 0 ? &w->acsc : NULL,
                 w->acsc.val, w->ehat, m, d, nt, w->tmp);
    sae_prof(w, 6, tp);
    /* dW_enc[:,j] = Σ dz·x̄ */
    sae_csc_cols(sae->g.W_enc, &w->csc, w->csc.grad, kx > 0 ? &w->acsc : NULL, w->acsc.grad,
                 w->xbar, m, d, nt, w->tmp, w->tmp_stride);
}

/* Both paths. In: g.W_dec, g.b_enc (d_sae), g.threshold (∂L/∂θ), dxhat (B,d_in); AuxK (dense
 * path): acsc, ehat (B,d_in). Out: g.W_dec (d_sae,d_in) completed, g.threshold := ∂L/∂(log θ),
 * g.b_dec (d_in). */
void sae_backward_tail(ms_sae *sae, const sae_fb *c)
{
    ms_sae_ws *w = sae->ws;
    const int arch = c->arch;
    const int64_t B = c->B, d = c->d, m = c->m, kx = c->kx;
    const double lam = c->lam, inv = c->inv;
    const double *fsum = c->fsum;
    const float *th = sae->p.threshold;
    float *gth = sae->g.threshold;
    if (!c->sparse && kx > 0) {
        /* dense path: AuxK's contribution to dW_dec rows */
        for (int64_t j = 0; j < m; j++)
            for (int64_t e = w->acsc.ptr[j]; e < w->acsc.ptr[j + 1]; e++)
                if (w->acsc.val[e] != 0.0f)
                    sae_axpy(sae->g.W_dec + j * d, w->acsc.val[e],
                             w->ehat + (int64_t)w->acsc.idx[e] * d, d);
    }
    /* april-2024: ∂/∂W_dec,j of λ/B·Σ_b f_bj‖W_dec,j‖ = λ/B·(Σ_b f_bj)·W_dec,j/‖W_dec,j‖ */
    if (arch == MS_SAE_APRIL_2024)
        for (int64_t j = 0; j < m; j++) {
            if (w->colnorm[j] <= 0.0f || fsum[j] == 0.0) continue;
            float cf = (float)(lam * inv * fsum[j] / w->colnorm[j]);
            const float *wr = sae->p.W_dec + j * d;
            float *gr = sae->g.W_dec + j * d;
            for (int64_t i = 0; i < d; i++) gr[i] += cf * wr[i];
        }
    /* jumprelu: the slab holds ∂L/∂(log θ) = θ·∂L/∂θ */
    if (arch == MS_SAE_JUMPRELU)
        for (int64_t j = 0; j < m; j++) gth[j] *= th[j];
    /* db_dec = Σ_b dx̂ − W_enc·db_enc: the GEMV that replaces autograd's 6th GEMM */
    float *gbd = sae->g.b_dec;
    double *accd = w->dbsum; /* Σ_b dx̂ in double, row by row (contiguous) */
    for (int64_t i = 0; i < d; i++) accd[i] = 0.0;
    for (int64_t b = 0; b < B; b++) {
        const float *r = w->dxhat + b * d;
        for (int64_t i = 0; i < d; i++) accd[i] += r[i];
    }
    for (int64_t i = 0; i < d; i++) gbd[i] = (float)accd[i];
    sae_sgemv(w->kernel, 0, d, m, -1.0f, sae->p.W_enc, m, sae->g.b_enc, 1.0f, gbd);
}
