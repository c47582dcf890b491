/* Hook points (names, widths) and the activations slab that holds every hook's buffer. */
#include "monosem/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== hooks */

static const char *hook_suffix[MS_HOOK_KIND_COUNT] = {
    [MS_HOOK_RESID_PRE] = "hook_resid_pre", [MS_HOOK_ATTN_OUT] = "hook_attn_out",
    [MS_HOOK_RESID_MID] = "hook_resid_mid", [MS_HOOK_MLP_PRE] = "mlp.hook_pre",
    [MS_HOOK_MLP_MID] = "mlp.hook_mid",     [MS_HOOK_MLP_POST] = "mlp.hook_post",
    [MS_HOOK_MLP_OUT] = "hook_mlp_out",     [MS_HOOK_RESID_POST] = "hook_resid_post",
};

ms_status ms_hook_parse(ms_hook *h, const char *name, const ms_model_config *cfg, ms_err *err)
{
    int layer, pos = 0;
    if (!name || sscanf(name, "blocks.%d.%n", &layer, &pos) != 1 || pos == 0)
        return ms_err_set(err, MS_ERR_USAGE, "hook '%s': expected blocks.L.<hook>, e.g. blocks.0.mlp.hook_post",
                          name ? name : "");
    for (int k = 0; k < MS_HOOK_KIND_COUNT; k++) {
        if (strcmp(name + pos, hook_suffix[k]) != 0) continue;
        if (layer < 0 || layer >= cfg->n_layers)
            return ms_err_set(err, MS_ERR_USAGE, "hook '%s': layer %d outside 0..%d", name, layer, cfg->n_layers - 1);
        if (k == MS_HOOK_MLP_MID && cfg->act_fn != MS_ACT_SOLU_LN)
            return ms_err_set(err, MS_ERR_USAGE, "hook '%s': hook_mid exists only with act_fn solu_ln", name);
        h->layer = layer;
        h->kind = (ms_hook_kind)k;
        return MS_OK;
    }
    return ms_err_set(err, MS_ERR_USAGE,
                      "hook '%s': unknown; expected hook_resid_pre, hook_attn_out, hook_resid_mid, mlp.hook_pre, "
                      "mlp.hook_mid, mlp.hook_post, hook_mlp_out or hook_resid_post after blocks.L.",
                      name);
}

void ms_hook_name(ms_hook h, char *buf, size_t n)
{
    snprintf(buf, n, "blocks.%d.%s", h.layer, (unsigned)h.kind < MS_HOOK_KIND_COUNT ? hook_suffix[h.kind] : "?");
}

int ms_hook_dim(const ms_model_config *cfg, ms_hook h)
{
    return (h.kind == MS_HOOK_MLP_PRE || h.kind == MS_HOOK_MLP_MID || h.kind == MS_HOOK_MLP_POST) ? cfg->d_mlp
                                                                                                : cfg->d_model;
}

ms_status ms_hook_fn_zero(void *user, ms_hook hook, float *act, int B, int T, int d, ms_err *err)
{
    (void)user, (void)hook, (void)err;
    memset(act, 0, (size_t)B * T * d * sizeof(float));
    return MS_OK;
}

/* ===================================================================== activations */

void ms_model_acts_free(ms_model_acts *a)
{
    if (!a) return;
    free(a->mem);
    free(a->layers);
    memset(a, 0, sizeof *a);
}

ms_status ms_model_acts_init(ms_model_acts *a, const ms_model_config *c, int B, int T, unsigned flags,
                             ms_err *err)
{
    memset(a, 0, sizeof *a);
    if (B < 1 || T < 1 || T > c->n_ctx)
        return ms_err_set(err, MS_ERR_USAGE, "model activations: need B >= 1 and 1 <= T <= n_ctx=%d (got B=%d, T=%d)",
                          c->n_ctx, B, T);
    a->B = B;
    a->T = T;
    a->flags = flags;
    a->n_layers = c->n_layers;
    a->cfg = *c;
    a->layers = calloc((size_t)c->n_layers, sizeof *a->layers);
    if (!a->layers) return ms_err_set(err, MS_ERR_NOMEM, "model activations: out of memory");
    const size_t N = (size_t)B * T, C = (size_t)c->d_model, M = (size_t)c->d_mlp,
                 HD = (size_t)c->n_heads * c->d_head, V = (size_t)c->d_vocab;
    const bool solu = c->act_fn == MS_ACT_SOLU_LN;
    /* two passes: count, then carve (each tensor 16-float aligned) */
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0;
#define TAKE(ptr, n)                                                    \
    do {                                                                \
        if (pass) (ptr) = a->mem + off;                                 \
        off += ((size_t)(n) + 15) & ~(size_t)15;                        \
    } while (0)
        float *resid0 = NULL;
        TAKE(resid0, N * C);
        for (int l = 0; l < c->n_layers; l++) {
            ms_layer_acts *L = &a->layers[l];
            if (pass) L->resid_pre = l == 0 ? resid0 : a->layers[l - 1].resid_post;
            TAKE(L->ln1, N * C);
            TAKE(L->ln1_mean, N);
            TAKE(L->ln1_rstd, N);
            TAKE(L->qkv, 3 * N * HD);
            TAKE(L->att, (size_t)B * c->n_heads * T * T);
            TAKE(L->z, N * HD);
            TAKE(L->attn_out, N * C);
            TAKE(L->resid_mid, N * C);
            TAKE(L->ln2, N * C);
            TAKE(L->ln2_mean, N);
            TAKE(L->ln2_rstd, N);
            TAKE(L->mlp_pre, N * M);
            if (solu) {
                TAKE(L->mlp_mid, N * M);
                TAKE(L->mid_mean, N);
                TAKE(L->mid_rstd, N);
            }
            TAKE(L->mlp_post, N * M);
            TAKE(L->mlp_out, N * C);
            TAKE(L->resid_post, N * C);
        }
        TAKE(a->wqkv, C * 3 * HD);
        TAKE(a->bqkv, 3 * HD);
        if (!(flags & MS_ACTS_NO_LOGITS)) {
            TAKE(a->lnf, N * C);
            TAKE(a->lnf_mean, N);
            TAKE(a->lnf_rstd, N);
            TAKE(a->logits, N * V);
            TAKE(a->lnf1, N * (C + 1));
            TAKE(a->lse, N);
            TAKE(a->losses, N);
        }
#undef TAKE
        if (!pass) {
            a->n_floats = off;
            a->mem = aligned_alloc(64, off * sizeof(float));
            if (!a->mem) {
                ms_model_acts_free(a);
                return ms_err_set(err, MS_ERR_NOMEM, "model activations: out of memory for %.1f MiB",
                                  (double)off * 4 / 1048576.0);
            }
            memset(a->mem, 0, off * sizeof(float)); /* first touch here, not in the step loop */
        }
    }
    a->mean_loss = NAN;
    return MS_OK;
}

float *ms_model_acts_hook(const ms_model_acts *acts, ms_hook h)
{
    if (!acts->layers || h.layer < 0 || h.layer >= acts->n_layers) return NULL;
    const ms_layer_acts *L = &acts->layers[h.layer];
    switch (h.kind) {
    case MS_HOOK_RESID_PRE: return L->resid_pre;
    case MS_HOOK_ATTN_OUT: return L->attn_out;
    case MS_HOOK_RESID_MID: return L->resid_mid;
    case MS_HOOK_MLP_PRE: return L->mlp_pre;
    case MS_HOOK_MLP_MID: return L->mlp_mid;
    case MS_HOOK_MLP_POST: return L->mlp_post;
    case MS_HOOK_MLP_OUT: return L->mlp_out;
    case MS_HOOK_RESID_POST: return L->resid_post;
    default: return NULL;
    }
}

void ms_model_next_targets(int32_t *targets, const int32_t *tokens, int B, int T)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            targets[(size_t)b * T + t] = t + 1 < T ? tokens[(size_t)b * T + t + 1] : -1;
}
