/* Model forward: the layer loop with hook replaces/captures/stop, and the tiled unembed with
 * fused log-sum-exp, cross-entropy and KL. */
#include "monosem/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* ===================================================================== forward */

/* Runs replaces then captures at hook (layer, kind); sets *stop when this is the stop hook. */
static ms_status hook_point(const ms_model *m, ms_model_acts *a, const ms_forward_opts *o, int layer,
                            ms_hook_kind kind, int B, int T, bool *stop, ms_err *err)
{
    if (!o) return MS_OK;
    ms_hook h = {layer, kind};
    float *buf = ms_model_acts_hook(a, h);
    int d = ms_hook_dim(&m->cfg, h);
    for (int i = 0; i < o->n_replaces; i++) {
        const ms_hook_replace *r = &o->replaces[i];
        if (r->hook.layer != layer || r->hook.kind != kind) continue;
        ms_status rc = r->fn(r->user, h, buf, B, T, d, err);
        if (rc) {
            char nm[96];
            ms_hook_name(h, nm, sizeof nm);
            return ms_err_set(err, rc, "model forward: replace callback at %s failed", nm);
        }
    }
    for (int i = 0; i < o->n_captures; i++) {
        const ms_hook_capture *c = &o->captures[i];
        if (c->hook.layer == layer && c->hook.kind == kind && c->dst)
            ms_copy_forward(c->dst, buf, (size_t)B * T * d);
    }
    if (o->stop_after && o->stop_after->layer == layer && o->stop_after->kind == kind) *stop = true;
    return MS_OK;
}

static void matmul_rows(int tile, float *out, int ldo, const float *inp, int ldi, const float *w, int ldw,
                        const float *bias, int N, int K, int M)
{
    if (tile > 0)
        ms_matmul_forward_tiled(out, ldo, inp, ldi, w, ldw, bias, N, K, M, tile);
    else
        ms_matmul_forward(out, ldo, inp, ldi, w, ldw, bias, N, K, M);
}

/* Final LayerNorm and unembedding of n rows of the residual stream: logits (n,V); with lse:
 * their logsumexps; with targets and losses: per-row loss (0 where target < 0); with kl and a
 * reference (logits, lse of the same rows): per-row KL(ref ‖ these). lnf (n,C), mean and rstd
 * (n), lnf1 (n,C+1) are scratch. Shared by the forward and ms_model_unembed. */
static void unembed(const ms_model *m, float *logits, float *lse, float *losses, float *kl, const float *ref,
                    const float *ref_lse, const ms_kl_ref *kref, float *lnf, float *mean, float *rstd, float *lnf1,
                    const float *resid, const int32_t *tg, int n)
{
    const ms_model_config *c = &m->cfg;
    const int C = c->d_model, V = c->d_vocab;
    const size_t N = (size_t)n;
    if (c->normalization == MS_NORM_NONE)
        memcpy(lnf, resid, N * C * sizeof(float));
    else
        ms_layernorm_forward(lnf, mean, rstd, resid, m->w.lnf_w, m->w.lnf_b, n, C, c->eps);
    const bool with_kl = kl && ref && ref_lse && lse;
    const float *bias = m->w.b_U;
    if (m->w.b_U == m->w.W_U + (size_t)C * V && !ms_kernels_naive()) {
        /* b_U directly follows W_U in the slab (C*V a multiple of 16): [W_U; b_U] is one (C+1,V)
         * matrix, so with a ones column on lnf the bias costs one more K step instead of a
         * read-write pass over all the logits. */
        for (size_t i = 0; i < N; i++) {
            memcpy(lnf1 + i * (C + 1), lnf + i * C, (size_t)C * sizeof(float));
            lnf1[i * (C + 1) + C] = 1.0f;
        }
        ms_matmul_forward(logits, V, lnf1, C + 1, m->w.W_U, V, NULL, n, C + 1, V);
        bias = NULL;
    } else {
        /* the bias is added in the same pass over the logits that computes the logsumexp */
        ms_matmul_forward(logits, V, lnf, C, m->w.W_U, V, NULL, n, C, V);
    }
    if (kl && kref && lse)
        ms_logits_bias_lse_klref_forward(kl, logits, lse, bias, kref, n, V);
    else if (with_kl)
        ms_logits_bias_lse_kl_forward(kl, logits, lse, bias, ref, ref_lse, n, V);
    else if (bias || lse)
        ms_logits_bias_lse_forward(logits, lse, bias, n, V);
    if (tg && losses && lse)
        for (size_t i = 0; i < N; i++) losses[i] = tg[i] >= 0 ? lse[i] - logits[i * V + tg[i]] : 0.0f;
}

/* Position of a hook in forward order (resume points compare by it). */
static int hook_order(int layer, ms_hook_kind kind) { return layer * MS_HOOK_KIND_COUNT + (int)kind; }

/* With opts->start_at, hooks before it are skipped and so is the computation that produces
 * an activation at or before it (COMPUTE(kind): does the block producing `kind` run?). */
#define COMPUTE(kind) (hook_order(l, kind) > start)
#define HOOK(kind)                                                               \
    do {                                                                         \
        if (hook_order(l, kind) >= start) {                                      \
            ms_status rc_ = hook_point(m, a, opts, l, kind, B, T, &stop, err);  \
            if (rc_) return rc_;                                                 \
            if (stop) return MS_OK;                                              \
        }                                                                        \
    } while (0)

ms_status ms_model_forward(const ms_model *m, ms_model_acts *a, const int32_t *tokens, int B, int T,
                           const ms_forward_opts *opts, ms_err *err)
{
    const ms_model_config *c = &m->cfg;
    if (B < 1 || T < 1 || B > a->B || T > a->T)
        return ms_err_set(err, MS_ERR_USAGE, "model forward: batch (%d,%d) exceeds the activations' (%d,%d)", B, T,
                          a->B, a->T);
    const ms_model_config *ac = &a->cfg;
    if (ac->n_layers != c->n_layers || ac->d_model != c->d_model || ac->d_mlp != c->d_mlp ||
        ac->n_heads != c->n_heads || ac->d_head != c->d_head || ac->d_vocab != c->d_vocab ||
        (ac->act_fn == MS_ACT_SOLU_LN) != (c->act_fn == MS_ACT_SOLU_LN))
        return ms_err_set(err, MS_ERR_USAGE, "model forward: activations were allocated for another model shape");
    const size_t N = (size_t)B * T;
    for (size_t i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= c->d_vocab)
            return ms_err_set(err, MS_ERR_USAGE, "model forward: token %d at (%zu,%zu) outside the vocabulary [0,%d)",
                              tokens[i], i / (size_t)T, i % (size_t)T, c->d_vocab);
    if (opts && opts->stop_after) {
        const ms_hook *s = opts->stop_after;
        if (s->layer < 0 || s->layer >= c->n_layers || (unsigned)s->kind >= MS_HOOK_KIND_COUNT ||
            (s->kind == MS_HOOK_MLP_MID && c->act_fn != MS_ACT_SOLU_LN))
            return ms_err_set(err, MS_ERR_USAGE, "model forward: stop_after hook does not exist in this model");
    } else if (a->flags & MS_ACTS_NO_LOGITS) {
        return ms_err_set(err, MS_ERR_USAGE, "model forward: activations allocated without logits need stop_after");
    }
    int start = -1;
    if (opts && opts->start_at) {
        const ms_hook *s = opts->start_at;
        if (s->layer < 0 || s->layer >= c->n_layers || (unsigned)s->kind >= MS_HOOK_KIND_COUNT ||
            (s->kind == MS_HOOK_MLP_MID && c->act_fn != MS_ACT_SOLU_LN))
            return ms_err_set(err, MS_ERR_USAGE, "model forward: start_at hook does not exist in this model");
        if (a->b != B || a->t != T)
            return ms_err_set(err, MS_ERR_USAGE,
                              "model forward: start_at needs the previous forward's batch (%d,%d), got (%d,%d)", a->b,
                              a->t, B, T);
        start = hook_order(s->layer, s->kind);
    }
    a->b = B;
    a->t = T;
    a->mean_loss = NAN;
    a->n_loss = 0;
    const int C = c->d_model, M = c->d_mlp, H = c->n_heads, D = c->d_head, HD = H * D, V = c->d_vocab;
    bool stop = false;
    int l = 0;
    /* row-invariant: every GEMM over one context's T rows (see ms_matmul_forward_tiled) */
    const int row_tile = opts && opts->row_invariant ? T : 0;
    if (COMPUTE(MS_HOOK_RESID_PRE)) ms_embed_forward(a->layers[0].resid_pre, tokens, m->w.W_E, m->w.W_pos, B, T, C);
    for (l = 0; l < c->n_layers; l++) {
        const ms_layer_params *p = &m->w.blocks[l];
        ms_layer_acts *L = &a->layers[l];
        HOOK(MS_HOOK_RESID_PRE);
        if (COMPUTE(MS_HOOK_ATTN_OUT)) {
            if (c->normalization == MS_NORM_NONE)
                memcpy(L->ln1, L->resid_pre, N * C * sizeof(float));
            else
                ms_layernorm_forward(L->ln1, L->ln1_mean, L->ln1_rstd, L->resid_pre, p->ln1_w, p->ln1_b, (int)N, C, c->eps);
            /* q, k, v: W_Q/W_K/W_V (H,C,D) packed into (C,3,H,D) so one GEMM fills (N,3,H,D) */
            const float *Wqkv[3] = {p->W_Q, p->W_K, p->W_V}, *bqkv[3] = {p->b_Q, p->b_K, p->b_V};
            for (int which = 0; which < 3; which++) {
                for (int h = 0; h < H; h++)
                    for (int r = 0; r < C; r++)
                        memcpy(a->wqkv + (size_t)r * 3 * HD + (size_t)which * HD + (size_t)h * D,
                               Wqkv[which] + ((size_t)h * C + r) * D, (size_t)D * sizeof(float));
                memcpy(a->bqkv + (size_t)which * HD, bqkv[which], (size_t)HD * sizeof(float));
            }
            matmul_rows(row_tile, L->qkv, 3 * HD, L->ln1, C, a->wqkv, 3 * HD, a->bqkv, (int)N, C, 3 * HD);
            ms_attention_forward(L->z, L->att, L->qkv, B, T, H, D);
            matmul_rows(row_tile, L->attn_out, C, L->z, HD, p->W_O, C, p->b_O, (int)N, HD, C);
        }
        HOOK(MS_HOOK_ATTN_OUT);
        if (COMPUTE(MS_HOOK_RESID_MID)) ms_residual_forward(L->resid_mid, L->resid_pre, L->attn_out, N * C);
        HOOK(MS_HOOK_RESID_MID);
        if (COMPUTE(MS_HOOK_MLP_PRE)) {
            if (c->normalization == MS_NORM_NONE)
                memcpy(L->ln2, L->resid_mid, N * C * sizeof(float));
            else
                ms_layernorm_forward(L->ln2, L->ln2_mean, L->ln2_rstd, L->resid_mid, p->ln2_w, p->ln2_b, (int)N, C,
                                     c->eps);
            matmul_rows(row_tile, L->mlp_pre, M, L->ln2, C, p->W_in, M, p->b_in, (int)N, C, M);
        }
        HOOK(MS_HOOK_MLP_PRE);
        if (c->act_fn == MS_ACT_SOLU_LN) {
            if (COMPUTE(MS_HOOK_MLP_MID)) ms_solu_forward(L->mlp_mid, L->mlp_pre, (int)N, M);
            HOOK(MS_HOOK_MLP_MID);
            if (COMPUTE(MS_HOOK_MLP_POST)) {
                if (c->normalization == MS_NORM_NONE)
                    memcpy(L->mlp_post, L->mlp_mid, N * M * sizeof(float));
                else
                    ms_layernorm_forward(L->mlp_post, L->mid_mean, L->mid_rstd, L->mlp_mid, p->ln_mid_w,
                                         p->ln_mid_b, (int)N, M, c->eps);
            }
        } else if (COMPUTE(MS_HOOK_MLP_POST)) {
            ms_act_forward(L->mlp_post, L->mlp_pre, N * M, c->act_fn);
        }
        HOOK(MS_HOOK_MLP_POST);
        if (COMPUTE(MS_HOOK_MLP_OUT))
            matmul_rows(row_tile, L->mlp_out, C, L->mlp_post, M, p->W_out, C, p->b_out, (int)N, M, C);
        HOOK(MS_HOOK_MLP_OUT);
        if (COMPUTE(MS_HOOK_RESID_POST)) ms_residual_forward(L->resid_post, L->resid_mid, L->mlp_out, N * C);
        HOOK(MS_HOOK_RESID_POST);
    }
    const int32_t *tg = opts ? opts->targets : NULL;
    if (tg)
        for (size_t i = 0; i < N; i++)
            if (tg[i] >= V)
                return ms_err_set(err, MS_ERR_USAGE, "model forward: target %d at (%zu,%zu) outside the vocabulary",
                                  tg[i], i / (size_t)T, i % (size_t)T);
    unembed(m, a->logits, tg ? a->lse : NULL, tg ? a->losses : NULL, NULL, NULL, NULL, NULL, a->lnf, a->lnf_mean,
            a->lnf_rstd, a->lnf1, a->layers[c->n_layers - 1].resid_post, tg, (int)N);
    if (tg) {
        double total = 0;
        int64_t cnt = 0;
        for (size_t i = 0; i < N; i++)
            if (tg[i] >= 0) total += a->losses[i], cnt++;
        a->n_loss = cnt;
        a->mean_loss = cnt ? total / (double)cnt : NAN;
    }
    return MS_OK;
}

ms_status ms_model_unembed(const ms_model *m, float *logits, float *lse, float *losses, float *kl,
                           const float *resid, const int32_t *targets, const float *kl_ref_logits,
                           const float *kl_ref_lse, float *scratch, int n, ms_err *err)
{
    const int C = m->cfg.d_model, V = m->cfg.d_vocab;
    for (int i = 0; i < n; i++)
        if (targets[i] >= V)
            return ms_err_set(err, MS_ERR_USAGE, "model unembed: target %d at row %d outside the vocabulary",
                              targets[i], i);
    float *lnf = scratch, *mean = lnf + (size_t)n * C, *rstd = mean + n, *lnf1 = rstd + n;
    unembed(m, logits, lse, losses, kl, kl_ref_logits, kl_ref_lse, NULL, lnf, mean, rstd, lnf1, resid, targets, n);
    return MS_OK;
}

ms_status ms_model_unembed_kl(const ms_model *m, float *logits, float *lse, float *losses, float *kl,
                              const float *resid, const int32_t *targets, const ms_kl_ref *ref,
                              float *scratch, int n, ms_err *err)
{
    const int C = m->cfg.d_model, V = m->cfg.d_vocab;
    for (int i = 0; i < n; i++)
        if (targets[i] >= V)
            return ms_err_set(err, MS_ERR_USAGE, "model unembed: target %d at row %d outside the vocabulary",
                              targets[i], i);
    float *lnf = scratch, *mean = lnf + (size_t)n * C, *rstd = mean + n, *lnf1 = rstd + n;
    unembed(m, logits, lse, losses, ref ? kl : NULL, NULL, NULL, ref, lnf, mean, rstd, lnf1, resid, targets, n);
    return MS_OK;
}

size_t ms_model_unembed_scratch(const ms_model_config *cfg, int n)
{
    return (size_t)n * (2 * (size_t)cfg->d_model + 3);
}
