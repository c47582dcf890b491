/* Logit effects by path expansion: each unit's direction carried to the residual stream, through
 * the final LayerNorm linearised around the mean scale (as the paper's logit weights), to W_U. */
#include "analyze_logits.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

bool app_logit_path_supported(ms_hook h)
{
    switch (h.kind) {
    case MS_HOOK_MLP_POST:
    case MS_HOOK_MLP_OUT:
    case MS_HOOK_ATTN_OUT:
    case MS_HOOK_RESID_PRE:
    case MS_HOOK_RESID_MID:
    case MS_HOOK_RESID_POST:
        return true;
    default:
        return false;
    }
}

/* inserts (v, id) into the best-L list (ids, vals, *n), ordered by better(): value then id */
static void keep(int64_t *ids, float *vals, int *n, int L, float v, int64_t id, int sign)
{
    /* sign +1 keeps the largest, -1 the smallest; ids arrive increasing, so an equal value loses */
    float sv = sign * v;
    if (*n == L && !(sv > sign * vals[L - 1])) return;
    int i = *n < L ? (*n)++ : L - 1;
    while (i > 0 && sv > sign * vals[i - 1]) {
        vals[i] = vals[i - 1];
        ids[i] = ids[i - 1];
        i--;
    }
    vals[i] = v;
    ids[i] = id;
}

ms_status app_logit_effects(const ms_model *m, ms_hook h, const float *dirs, int64_t U,
                           double ln_scale, int L, int rank, int size, int64_t *top_ids,
                           float *top, int64_t *bot_ids, float *bot, ms_err *err)
{
    const ms_model_config *c = &m->cfg;
    const int C = c->d_model, M = c->d_mlp, V = c->d_vocab;
    const int d = ms_hook_dim(c, h);
    memset(top_ids, 0, (size_t)U * (size_t)L * sizeof *top_ids);
    memset(bot_ids, 0, (size_t)U * (size_t)L * sizeof *bot_ids);
    memset(top, 0, (size_t)U * (size_t)L * sizeof *top);
    memset(bot, 0, (size_t)U * (size_t)L * sizeof *bot);
    if (!app_logit_path_supported(h))
        return ms_err_set(err, MS_ERR_UNSUPPORTED, "logit effects: no direct path from this hook");
    if (L > V) return ms_err_set(err, MS_ERR_CONFIG, "analyze.n_logits %d exceeds the vocabulary (%d)", L, V);
    float *R = malloc((size_t)MS_LOGIT_CHUNK * (size_t)C * sizeof *R);            /* (ch, C) */
    float *logits = malloc((size_t)MS_LOGIT_CHUNK * (size_t)V * sizeof *logits); /* (ch, V) */
    if (!R || !logits) {
        free(R);
        free(logits);
        return ms_err_set(err, MS_ERR_NOMEM, "logit effects: out of memory");
    }
    const float *W_out = m->w.blocks[h.layer].W_out; /* (M, C) */
    const float *lnw = m->w.lnf_w;                   /* (C) or NULL */
    const bool ln = c->normalization != MS_NORM_NONE;
    int64_t n_chunks = (U + MS_LOGIT_CHUNK - 1) / MS_LOGIT_CHUNK;
    for (int64_t ch = rank; ch < n_chunks; ch += size) {
        int64_t u0 = ch * MS_LOGIT_CHUNK, nu = U - u0 < MS_LOGIT_CHUNK ? U - u0 : MS_LOGIT_CHUNK;
        /* 1. the residual-stream direction of each unit */
        if (h.kind == MS_HOOK_MLP_POST) {
            if (dirs)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nu, C, M, 1.0f,
                            dirs + u0 * d, d, W_out, C, 0.0f, R, C);
            else
                memcpy(R, W_out + u0 * C, (size_t)nu * (size_t)C * sizeof *R);
        } else if (dirs) {
            memcpy(R, dirs + u0 * d, (size_t)nu * (size_t)C * sizeof *R);
        } else {
            memset(R, 0, (size_t)nu * (size_t)C * sizeof *R);
            for (int64_t i = 0; i < nu; i++) R[i * C + (u0 + i)] = 1.0f;
        }
        /* 2. the final LayerNorm, linearised: centre, scale by w / σ̄ */
        if (ln)
            for (int64_t i = 0; i < nu; i++) {
                float *r = R + i * C;
                double mu = 0;
                for (int j = 0; j < C; j++) mu += r[j];
                mu /= C;
                for (int j = 0; j < C; j++)
                    r[j] = (float)(((double)r[j] - mu) * (lnw ? (double)lnw[j] : 1.0) / ln_scale);
            }
        /* 3. the unembedding */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nu, V, C, 1.0f, R, C, m->w.W_U,
                    V, 0.0f, logits, V);
        for (int64_t i = 0; i < nu; i++) {
            int64_t u = u0 + i;
            int nt = 0, nb = 0;
            const float *lg = logits + i * (int64_t)V;
            for (int v = 0; v < V; v++) {
                keep(top_ids + u * L, top + u * L, &nt, L, lg[v], v, +1);
                keep(bot_ids + u * L, bot + u * L, &nb, L, lg[v], v, -1);
            }
        }
    }
    free(R);
    free(logits);
    return MS_OK;
}
