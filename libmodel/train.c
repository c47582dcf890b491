/* Model trainer pieces: the model backward (reverse of ms_model_forward), the LR schedule,
 * gradient norm, AdamW, the unigram baseline and checkpoints (safetensors + Adam state). */
#include "monosem/model.h"

#include "kernels.h"
#include "kernels_backward.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== backward buffers */

void ms_model_backbuf_free(ms_model_backbuf *b)
{
    if (!b) return;
    free(b->mem);
    memset(b, 0, sizeof *b);
}

ms_status ms_model_backbuf_init(ms_model_backbuf *b, const ms_model_config *c, int B, int T,
                                ms_err *err)
{
    memset(b, 0, sizeof *b);
    const size_t N = (size_t)B * T, C = (size_t)c->d_model, M = (size_t)c->d_mlp,
                 HD = (size_t)c->n_heads * c->d_head;
    size_t sz[9] = {N * C, N * C, 3 * N * HD, N * HD, (size_t)B * c->n_heads * T * T, N * M, N * M, 3 * C * HD, 3 * C * HD};
    size_t off = 0;
    for (int i = 0; i < 9; i++) off += (sz[i] + 15) & ~(size_t)15;
    b->mem = aligned_alloc(64, off * sizeof(float));
    if (!b->mem)
        return ms_err_set(err, MS_ERR_NOMEM, "model backward: out of memory for %.1f MiB",
                          (double)off * 4 / 1048576.0);
    memset(b->mem, 0, off * sizeof(float)); /* first touch once, not in the step loop */
    b->n_floats = off;
    b->B = B;
    b->T = T;
    float **dst[9] = {&b->dresid, &b->dtmp, &b->dqkv, &b->dz, &b->datt, &b->dpost, &b->dpre, &b->wqkv, &b->dwqkv};
    off = 0;
    for (int i = 0; i < 9; i++) {
        *dst[i] = b->mem + off;
        off += (sz[i] + 15) & ~(size_t)15;
    }
    return MS_OK;
}

/* ===================================================================== backward */

ms_status ms_model_backward(const ms_model *m, ms_model_acts *a, ms_model_backbuf *buf,
                            const ms_model_params *g, const int32_t *tokens,
                            const int32_t *targets, float loss_scale, ms_err *err)
{
    const ms_model_config *c = &m->cfg;
    const int B = a->b, T = a->t;
    if (c->act_fn == MS_ACT_SOLU_LN)
        return ms_err_set(err, MS_ERR_UNSUPPORTED, "model backward: act_fn solu_ln is not trainable here");
    if (!a->logits || !targets)
        return ms_err_set(err, MS_ERR_USAGE, "model backward: needs a full forward with targets");
    if (B > buf->B || T > buf->T)
        return ms_err_set(err, MS_ERR_USAGE, "model backward: batch (%d,%d) exceeds the buffers' (%d,%d)", B, T,
                          buf->B, buf->T);
    const int C = c->d_model, M = c->d_mlp, H = c->n_heads, D = c->d_head, HD = H * D, V = c->d_vocab;
    const int N = B * T;
    const bool ln = c->normalization != MS_NORM_NONE;
    const size_t NC = (size_t)N * C;

    /* loss -> logits (in place) -> unembed -> final LayerNorm */
    ms_crossentropy_backward(a->logits, a->logits, a->lse, targets, N, V, loss_scale);
    float *dlogits = a->logits;
    memset(buf->dtmp, 0, NC * sizeof(float));
    ms_matmul_backward(buf->dtmp, C, g->W_U, V, g->b_U, dlogits, V, a->lnf, C, m->w.W_U, V, N, C, V);
    memset(buf->dresid, 0, NC * sizeof(float));
    const float *resid_last = a->layers[c->n_layers - 1].resid_post;
    if (ln)
        ms_layernorm_backward(buf->dresid, g->lnf_w, g->lnf_b, buf->dtmp, resid_last, m->w.lnf_w,
                              a->lnf_mean, a->lnf_rstd, N, C);
    else
        ms_residual_backward(buf->dresid, NULL, buf->dtmp, NC);

    for (int l = c->n_layers - 1; l >= 0; l--) {
        const ms_layer_params *p = &m->w.blocks[l];
        const ms_layer_params *gp = &g->blocks[l];
        ms_layer_acts *L = &a->layers[l];
        /* resid_post = resid_mid + mlp_out: dresid is d(mlp_out) and part of d(resid_mid) */
        memset(buf->dpost, 0, (size_t)N * M * sizeof(float));
        ms_matmul_backward(buf->dpost, M, gp->W_out, C, gp->b_out, buf->dresid, C, L->mlp_post, M, p->W_out, C,
                           N, M, C);
        memset(buf->dpre, 0, (size_t)N * M * sizeof(float));
        ms_act_backward(buf->dpre, L->mlp_pre, buf->dpost, (size_t)N * M, c->act_fn);
        memset(buf->dtmp, 0, NC * sizeof(float));
        ms_matmul_backward(buf->dtmp, C, gp->W_in, M, gp->b_in, buf->dpre, M, L->ln2, C, p->W_in, M, N, C, M);
        if (ln)
            ms_layernorm_backward(buf->dresid, gp->ln2_w, gp->ln2_b, buf->dtmp, L->resid_mid, p->ln2_w,
                                  L->ln2_mean, L->ln2_rstd, N, C);
        else
            ms_residual_backward(buf->dresid, NULL, buf->dtmp, NC);
        /* resid_mid = resid_pre + attn_out: dresid is now d(resid_mid) = d(attn_out) */
        memset(buf->dz, 0, (size_t)N * HD * sizeof(float));
        ms_matmul_backward(buf->dz, HD, gp->W_O, C, gp->b_O, buf->dresid, C, L->z, HD, p->W_O, C, N, HD, C);
        memset(buf->dqkv, 0, (size_t)N * 3 * HD * sizeof(float));
        ms_attention_backward(buf->dqkv, buf->datt, buf->dz, L->qkv, L->att, B, T, H, D);
        memset(buf->dtmp, 0, NC * sizeof(float));
        float *gW[3] = {gp->W_Q, gp->W_K, gp->W_V}, *gb[3] = {gp->b_Q, gp->b_K, gp->b_V};
        const float *W[3] = {p->W_Q, p->W_K, p->W_V};
        /* one GEMM pair over (N,3HD) instead of 3H thin ones: W_Q|W_K|W_V (H,C,D) packed as
         * (C,3,H,D), the packed gradient scattered back (biases (3,H,D) are contiguous) */
        const size_t W3 = (size_t)3 * HD;
        for (int which = 0; which < 3; which++)
            for (int h = 0; h < H; h++)
                for (int r = 0; r < C; r++)
                    memcpy(buf->wqkv + (size_t)r * W3 + (size_t)which * HD + (size_t)h * D,
                           W[which] + ((size_t)h * C + r) * D, (size_t)D * sizeof(float));
        memset(buf->dwqkv, 0, (size_t)C * W3 * sizeof(float));
        ms_matmul_backward(buf->dtmp, C, buf->dwqkv, (int)W3, NULL, buf->dqkv, (int)W3, L->ln1, C, buf->wqkv, (int)W3,
                           N, C, (int)W3);
        for (int which = 0; which < 3; which++) {
            for (int h = 0; h < H; h++)
                for (int r = 0; r < C; r++) {
                    float *g = gW[which] + ((size_t)h * C + r) * D;
                    const float *s = buf->dwqkv + (size_t)r * W3 + (size_t)which * HD + (size_t)h * D;
                    for (int d = 0; d < D; d++) g[d] += s[d];
                }
            for (int n = 0; n < N; n++) {
                const float *s = buf->dqkv + (size_t)n * W3 + (size_t)which * HD;
                for (int k = 0; k < HD; k++) gb[which][k] += s[k];
            }
        }
        /* ∂L/∂b_K is exactly zero (q·b_K is the same for every score of a query row, and softmax
         * ignores a shift); the summed float noise left there would make Adam random-walk b_K
         * by ~lr a step, differently on every CPU and rank count. */
        memset(gp->b_K, 0, (size_t)HD * sizeof(float));
        if (ln)
            ms_layernorm_backward(buf->dresid, gp->ln1_w, gp->ln1_b, buf->dtmp, L->resid_pre, p->ln1_w,
                                  L->ln1_mean, L->ln1_rstd, N, C);
        else
            ms_residual_backward(buf->dresid, NULL, buf->dtmp, NC);
        /* dresid is now d(resid_pre) = d(previous resid_post) */
    }
    ms_embed_backward(g->W_E, g->W_pos, buf->dresid, tokens, B, T, C);
    return MS_OK;
}

/* ===================================================================== optimizer */

double ms_train_lr_schedule(int64_t step, int64_t warmup, int64_t total, double lr, double min_frac)
{
    if (warmup > 0 && step < warmup) return lr * (double)(step + 1) / (double)warmup;
    double span = (double)(total - warmup);
    double x = span > 0 ? (double)(step - warmup) / span : 1.0;
    if (x > 1) x = 1;
    if (x < 0) x = 0;
    double coef = 0.5 * (1.0 + cos(M_PI * x));
    return lr * (min_frac + (1.0 - min_frac) * coef);
}

double ms_train_grad_norm(const float *g, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

bool ms_model_tensor_decays(const ms_model_tensor *t)
{
    const char *leaf = strrchr(t->name, '.');
    leaf = leaf ? leaf + 1 : t->name;
    return leaf[0] == 'W' && leaf[1] == '_';
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
void ms_train_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, int64_t t)
{
    const float bc1 = 1.0f / (1.0f - powf(beta1, (float)t));
    const float bc2 = 1.0f / (1.0f - powf(beta2, (float)t));
    const float decay = 1.0f - lr * weight_decay;
    for (size_t i = 0; i < n; i++) {
        float mi = beta1 * m[i] + (1.0f - beta1) * g[i];
        float vi = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - lr * (mi * bc1) / (sqrtf(vi * bc2) + eps);
    }
}

void ms_train_unigram_logprobs(double *logp, const int64_t *counts, int V)
{
    double total = 0;
    for (int v = 0; v < V; v++) total += (double)counts[v] + 1.0;
    for (int v = 0; v < V; v++) logp[v] = log(((double)counts[v] + 1.0) / total);
}

/* ===================================================================== checkpoints */

ms_status ms_train_checkpoint_save(const char *path, const ms_model *m, const float *adam_m,
                                   const float *adam_v, const ms_train_ckpt_info *info,
                                   ms_err *err)
{
    const int n = m->n_tensors;
    ms_safetensors_item *items = calloc((size_t)3 * n, sizeof *items);
    char (*names)[MS_MODEL_MAX_NAME + 8] = calloc((size_t)3 * n, sizeof *names);
    if (!items || !names) {
        free(items);
        free(names);
        return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    }
    const float *src[3] = {m->params, adam_m, adam_v};
    static const char *const pre[3] = {"", "adam_m.", "adam_v."};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < n; i++) {
            const ms_model_tensor *t = &m->tensors[i];
            ms_safetensors_item *it = &items[k * n + i];
            snprintf(names[k * n + i], sizeof names[0], "%s%s", pre[k], t->name);
            it->name = names[k * n + i];
            it->dtype = MS_SAFETENSORS_F32;
            it->ndim = t->ndim;
            for (int d = 0; d < t->ndim; d++) it->shape[d] = t->shape[d];
            it->data = src[k] + t->offset;
        }
    char step[32], pos[32], ranks[16];
    snprintf(step, sizeof step, "%" PRId64, info->step);
    snprintf(pos, sizeof pos, "%" PRId64, info->data_pos);
    snprintf(ranks, sizeof ranks, "%d", info->n_ranks);
    char *cfgjson = ms_model_config_json(&m->cfg);
    const char *meta[] = {"format", "monosem-train-checkpoint-v1", "step", step, "data_position", pos,
                          "fingerprint", info->fingerprint, "n_ranks", ranks, "config",
                          cfgjson ? cfgjson : "{}", "job_keys", info->job_keys};
    /* the replaced checkpoint stays as .prev: the fallback if this one is found corrupt */
    ms_status st = ms_safetensors_write_rotate(path, items, 3 * n, meta, info->job_keys ? 7 : 6, err);
    free(cfgjson);
    free(items);
    free(names);
    return st;
}

ms_status ms_train_checkpoint_load(const char *path, ms_model *m, float *adam_m, float *adam_v,
                                   ms_train_ckpt_info *info, ms_err *err)
{
    ms_safetensors st;
    ms_status rc = ms_safetensors_open(&st, path, err);
    if (rc != MS_OK) return rc;
    const char *fmt = ms_safetensors_meta(&st, "format"), *step = ms_safetensors_meta(&st, "step"),
               *pos = ms_safetensors_meta(&st, "data_position"), *fp = ms_safetensors_meta(&st, "fingerprint"),
               *ranks = ms_safetensors_meta(&st, "n_ranks");
    if (!fmt || strcmp(fmt, "monosem-train-checkpoint-v1") != 0 || !step || !pos || !fp || !ranks) {
        rc = ms_err_set(err, MS_ERR_FORMAT,
                        "%s: expected a monosem training checkpoint (metadata format, step, "
                        "data_position, fingerprint, n_ranks)", path);
        goto done;
    }
    memset(info, 0, sizeof *info);
    /* strict: a negative or non-numeric step would send the data order into an endless walk */
    int64_t nr = 0;
    if (!ms_parse_i64(step, 0, INT64_MAX / 2, &info->step) || !ms_parse_i64(pos, 0, INT64_MAX / 2, &info->data_pos) ||
        !ms_parse_i64(ranks, 1, 1 << 24, &nr) || strlen(fp) != 16 || strspn(fp, "0123456789abcdef") != 16) {
        rc = ms_err_set(err, MS_ERR_FORMAT,
                        "%s: corrupt checkpoint state (step \"%.32s\", data_position \"%.32s\", n_ranks \"%.16s\", "
                        "fingerprint \"%.32s\"): expected non-negative integers and 16 hex digits", path, step, pos,
                        ranks, fp);
        goto done;
    }
    info->n_ranks = (int)nr;
    snprintf(info->fingerprint, sizeof info->fingerprint, "%s", fp);
    float *dst[3] = {m->params, adam_m, adam_v};
    static const char *const pre[3] = {"", "adam_m.", "adam_v."};
    for (int k = 0; k < 3 && rc == MS_OK; k++)
        for (int i = 0; i < m->n_tensors && rc == MS_OK; i++) {
            const ms_model_tensor *t = &m->tensors[i];
            char name[MS_MODEL_MAX_NAME + 8];
            snprintf(name, sizeof name, "%s%s", pre[k], t->name);
            rc = ms_safetensors_read_f32_shaped(&st, name, t->ndim, t->shape, dst[k] + t->offset, err);
        }
done:
    ms_safetensors_close(&st);
    return rc;
}
