/* libsae/sae_forward.c: ms_sae_forward_backward and its forward half: activation and selection,
 * the dense/sparse path choice, the decoder, and the reconstruction, AuxK and sparsity losses
 * (the backward half is sae_backward.c). */
#include "sae_internal.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* 2. bias, AuxK selection among the dead latents (sets c->n_dead, c->kx), topk/batchtopk
 * selection; per-row entry counts into csr.ptr[1..B]. stats (ms_sae_stats_len). */
static void fb_activation(ms_sae *sae, sae_fb *c, double *stats)
{
    const ms_sae_hparams *hp = &sae->hp;
    ms_sae_ws *w = sae->ws;
    const int64_t B = c->B, m = c->m;
    const int nt = c->nt;
    int64_t n_dead = 0, kx = 0;
    if (aux_enabled(hp)) {
        for (int64_t j = 0; j < m; j++)
            if (sae->since_fired[j] >= hp->dead_tokens) w->dead_idx[n_dead++] = (int32_t)j;
        kx = hp->k_aux < n_dead ? hp->k_aux : n_dead;
    }
    sae_activation_rows(sae, B, nt, w->dead_idx, n_dead, kx, w->csr.ptr);
    if (c->arch == MS_SAE_BATCHTOPK) {
        float mn = sae_batchtopk_select(sae, B, nt);
        if (isfinite(mn)) stats[MS_SAE_STAT_THRESH_SUM] = mn, stats[MS_SAE_STAT_THRESH_N] = 1.0;
    }
    c->n_dead = n_dead, c->kx = kx;
}

/* 3. path by measured density (entries per row counted in the activation pass): csr.ptr
 * becomes row offsets, sets c->entries, c->sparse; april-2024: colnorm_j = ‖W_dec,j‖.
 * stats (ms_sae_stats_len). */
static void fb_choose_path(ms_sae *sae, sae_fb *c, double *stats)
{
    const ms_sae_hparams *hp = &sae->hp;
    ms_sae_ws *w = sae->ws;
    const int arch = c->arch;
    const int64_t B = c->B, d = c->d, m = c->m;
    int64_t *rp = w->csr.ptr; /* row counts from the activation pass */
    rp[0] = 0;
    for (int64_t b = 0; b < B; b++) rp[b + 1] += rp[b];
    int64_t entries = rp[B];
    double dens_thr = hp->sparse_density > 0.0 ? hp->sparse_density : SAE_SPARSE_CROSSOVER;
    bool sparse;
    if (w->path == SAE_PATH_DENSE || hp->sparse_density < 0.0)
        sparse = false;
    else if (w->path == SAE_PATH_SPARSE || is_topk(arch))
        sparse = true;
    else
        sparse = (double)entries <= dens_thr * (double)B * (double)m;
    if (entries > w->csr.cap) sparse = false;
    w->last_sparse = sparse;
    stats[MS_SAE_STAT_SPARSE] = sparse ? 1.0 : 0.0;
    if (arch == MS_SAE_APRIL_2024)
        for (int64_t j = 0; j < m; j++) {
            const float *wr = sae->p.W_dec + j * d;
            double q = 0.0;
            for (int64_t i = 0; i < d; i++) q += (double)wr[i] * wr[i];
            w->colnorm[j] = (float)sqrt(q);
        }
    c->entries = entries, c->sparse = sparse;
}

/* 4. f, per-feature firing counts c->cnt and Σf c->fsum; 5. decoder x̂ (B,d_in) = f·W_dec +
 * b_dec; sets c->nnz, c->l1. stats (ms_sae_stats_len). */
static void fb_decode(ms_sae *sae, sae_fb *c, double *stats)
{
    ms_sae_ws *w = sae->ws;
    const int arch = c->arch;
    const int64_t B = c->B, d = c->d, m = c->m, entries = c->entries;
    const int nt = c->nt;
    const float *thm = c->thm;
    const float hb = c->hb;
    const int64_t *rp = w->csr.ptr;
    double *cnt = c->cnt, *fsum = c->fsum;
    if (c->sparse) {
        /* CSR of active entries (+ jumprelu window entries with f = 0), rows in parallel */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t b = 0; b < B; b++)
            sae_row_compress(w->csr.idx + rp[b], w->csr.val + rp[b], w->Z + b * m, thm,
                             arch == MS_SAE_JUMPRELU ? hb : -1.0f, m);
        for (int64_t j = 0; j < m; j++) cnt[j] = 0.0, fsum[j] = 0.0;
        for (int64_t e = 0; e < entries; e++) { /* nnz is small here: serial is fine */
            float v = w->csr.val[e];
            cnt[w->csr.idx[e]] += v > 0.0f;
            fsum[w->csr.idx[e]] += v;
        }
        /* feature-major from here on: each W_dec row is loaded once per step, not once per
         * entry (x̂ rows, 16x smaller than W_dec at 512x16384, take the random accesses) */
        sae_csr_to_csc(&w->csc, &w->csr, B, m);
        sae_csc_decode(w->xhat, &w->csc, sae->p.W_dec, sae->p.b_dec, B, m, d, nt);
    } else {
        /* column blocks: F and the per-feature sums without races */
#pragma omp parallel num_threads(nt)
        {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            int64_t c0, c1;
            col_range(m, nt, t, &c0, &c1);
            if (c1 > c0)
                sae_mask_fill_stats(w->F, w->Z, B, m, c0, c1, thm, cnt, fsum,
                                    w->tmp + (int64_t)t * w->tmp_stride);
        }
        for (int64_t b = 0; b < B; b++)
            memcpy(w->xhat + b * d, sae->p.b_dec, sizeof(float) * (size_t)d);
        /* GEMM 2: (B,m)·(m,d) */
        sae_sgemm(w->kernel, 0, 0, B, d, m, 1.0f, w->F, m, sae->p.W_dec, d, 1.0f, w->xhat, d);
    }
    double nnz = 0.0, l1 = 0.0;
    for (int64_t j = 0; j < m; j++) nnz += cnt[j], l1 += fsum[j];
    stats[MS_SAE_STAT_L0] = nnz;
    stats[MS_SAE_STAT_L1] = l1;
    c->nnz = nnz, c->l1 = l1;
}

/* 6. reconstruction loss; dxhat (B,d_in) := x̂ − s·x (kept unscaled for AuxK). x (B,d_in),
 * stats (ms_sae_stats_len). Returns the MSE term. */
static double fb_recon(ms_sae *sae, const sae_fb *c, const float *x, double *stats)
{
    ms_sae_ws *w = sae->ws;
    const int64_t B = c->B, d = c->d;
    const float s = c->s;
    double sse = 0.0;
    for (int64_t b = 0; b < B; b++) {
        const float *xr = x + b * d, *xh = w->xhat + b * d;
        float *r = w->dxhat + b * d;
        for (int64_t i = 0; i < d; i++) {
            float e = xh[i] - s * xr[i];
            sse += (double)e * e;
            r[i] = e;
        }
    }
    stats[MS_SAE_STAT_SSE] = sse;
    return c->c_mse * c->inv * sse;
}

/* 7. AuxK (c->kx > 0): ê (B,d_in) from the dead latents; target the detached residual
 * e = s·x − x̂ = −r (r in dxhat); ehat := ∂L/∂ê, acsc.grad := ∂L/∂z at AuxK's entries.
 * Returns the AuxK term. */
static double fb_auxk(ms_sae *sae, const sae_fb *c)
{
    const ms_sae_hparams *hp = &sae->hp;
    ms_sae_ws *w = sae->ws;
    const int64_t B = c->B, d = c->d, m = c->m;
    const int nt = c->nt;
    const double c_mse = c->c_mse, inv = c->inv;
    double scale = (double)c->n_dead / (double)hp->k_aux;
    if (scale > 1.0) scale = 1.0;
    /* feature-major, as the main sparse path: each dead latent's W_dec row read once */
    sae_csr_to_csc(&w->acsc, &w->acsr, B, m);
    sae_csc_decode(w->ehat, &w->acsc, sae->p.W_dec, w->zeros, B, m, d, nt);
    double asse = 0.0;
    const float ag = (float)(2.0 * hp->aux_coeff * scale * c_mse * inv);
    for (int64_t b = 0; b < B; b++) {
        float *eh = w->ehat + b * d;
        const float *r = w->dxhat + b * d;
        for (int64_t i = 0; i < d; i++) {
            float q = eh[i] + r[i];
            asse += (double)q * q;
            eh[i] = ag * q; /* ehat now holds ∂L/∂ê */
        }
    }
    double loss_aux = hp->aux_coeff * scale * c_mse * inv * asse;
    sae_csc_rowdot(w->acsc.grad, &w->acsc, w->ehat, sae->p.W_dec, m, d, nt);
    int64_t na = w->acsc.ptr[m];
    for (int64_t e = 0; e < na; e++)
        if (!(w->acsc.val[e] > 0.0f)) w->acsc.grad[e] = 0.0f;
    return loss_aux;
}

/* 8. the sparsity term. */
static double fb_sparsity(const ms_sae *sae, const sae_fb *c)
{
    const int64_t m = c->m;
    if (c->arch == MS_SAE_RELU_L1) return c->lam * c->inv * c->l1;
    if (c->arch == MS_SAE_APRIL_2024) {
        double q = 0.0;
        for (int64_t j = 0; j < m; j++) q += c->fsum[j] * sae->ws->colnorm[j];
        return c->lam * c->inv * q;
    }
    if (c->arch == MS_SAE_JUMPRELU) return c->lam * c->inv * c->nnz;
    return 0.0;
}

ms_status ms_sae_forward_backward(ms_sae *sae, const float *x, int64_t B, int64_t B_global,
                                  double *stats, ms_err *err)
{
    const ms_sae_hparams *hp = &sae->hp;
    ms_sae_ws *w = sae->ws;
    if (B < 1 || B > w->B || B_global < B)
        return ms_err_set(err, MS_ERR_USAGE,
                          "sae forward_backward: local batch %lld must be in 1..%lld and <= "
                          "global batch %lld",
                          (long long)B, (long long)w->B, (long long)B_global);
    sae_fb c = {.arch = hp->arch, .B = B, .d = hp->d_in, .m = hp->d_sae, .s = sae->input_scale};
    /* own loops threaded only when there is enough work to pay for the fork/join */
    c.nt = B * c.m >= (1 << 20) ? sae_nthreads_for(sae) : 1;
    c.inv = 1.0 / (double)B_global;
    c.c_mse = c.arch == MS_SAE_APRIL_2024 ? 1.0 : 1.0 / (double)c.d;
    c.lam = ms_sae_l1_at(hp, sae->step);
    c.eps_bw = (float)hp->bandwidth;
    c.hb = 0.5f * c.eps_bw;
    c.thm = c.arch == MS_SAE_JUMPRELU ? sae->p.threshold : w->zerom; /* active: z > thm_j */
    memset(stats, 0, sizeof(double) * ms_sae_stats_len(sae));
    c.cnt = stats + MS_SAE_STAT_FIXED, c.fsum = w->fsum;
    double *xsum = c.cnt + c.m;

    double tp = sae_prof_now();
    /* 1. encoder: xbar, Z (GEMM 1) */
    sae_encoder_gemm(sae, x, B, c.nt, &stats[MS_SAE_STAT_X_SQ], xsum);
    sae_prof(w, 0, &tp);
    fb_activation(sae, &c, stats);
    sae_prof(w, 1, &tp);
    fb_choose_path(sae, &c, stats);
    sae_prof(w, 2, &tp);
    fb_decode(sae, &c, stats);
    sae_prof(w, 3, &tp);
    const float gscale = (float)(2.0 * c.c_mse * c.inv);
    double loss_mse = fb_recon(sae, &c, x, stats);
    double loss_aux = c.kx > 0 ? fb_auxk(sae, &c) : 0.0;
    for (int64_t e = 0; e < B * c.d; e++) w->dxhat[e] *= gscale; /* dxhat := ∂L/∂x̂ */
    sae_prof(w, 4, &tp);
    double loss_sp = fb_sparsity(sae, &c);
    stats[MS_SAE_STAT_SPARSITY] = loss_sp;
    stats[MS_SAE_STAT_AUX] = loss_aux;
    stats[MS_SAE_STAT_LOSS] = loss_mse + loss_sp + loss_aux;
    stats[MS_SAE_STAT_ROWS] = (double)B;
    if (!isfinite(stats[MS_SAE_STAT_LOSS]))
        return ms_err_set(err, MS_ERR_NUMERIC,
                          "sae forward_backward: loss is not finite (mse %g, sparsity %g, aux %g)",
                          loss_mse, loss_sp, loss_aux);

    /* 9. backward. ∂L/∂z at active entries: df (+λ/B, +λ/B·‖W_dec,j‖); jumprelu θ by STE. */
    memset(sae->g.threshold, 0, sizeof(float) * (size_t)c.m);
    memset(sae->g.b_enc, 0, sizeof(float) * (size_t)c.m);
    if (!c.sparse)
        sae_backward_dense(sae, &c, &tp);
    else
        sae_backward_sparse(sae, &c, &tp);
    sae_prof(w, 7, &tp);
    sae_backward_tail(sae, &c);
    sae_prof(w, 8, &tp);
    return MS_OK;
}
