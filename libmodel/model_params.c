/* Model parameters: the tensor table in slab order, named views bound into the slab, model
 * lifetime and the seeded random init. */
#include "monosem/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== parameter table */

/* Tensor table in slab order; offsets rounded up to 16 floats (64 bytes). */
static int build_table(const ms_model_config *c, ms_model_tensor *t)
{
    int n = 0;
    size_t off = 0;
    const int64_t C = c->d_model, M = c->d_mlp, H = c->n_heads, D = c->d_head, V = c->d_vocab;
    const bool ln = c->normalization == MS_NORM_LN;
#define ADD(nm, nd, s0, s1, s2)                                                                   \
    do {                                                                                          \
        if (t) {                                                                                  \
            snprintf(t[n].name, sizeof t[n].name, "%s", nm);                                      \
            t[n].ndim = nd;                                                                       \
            t[n].shape[0] = s0;                                                                   \
            t[n].shape[1] = s1;                                                                   \
            t[n].shape[2] = s2;                                                                   \
            t[n].numel = (size_t)(s0) * (nd > 1 ? (size_t)(s1) : 1) * (nd > 2 ? (size_t)(s2) : 1); \
            t[n].offset = off;                                                                    \
            off += (t[n].numel + 15) & ~(size_t)15;                                               \
        }                                                                                         \
        n++;                                                                                      \
    } while (0)
    char nm[MS_MODEL_MAX_NAME];
    ADD("embed.W_E", 2, V, C, 0);
    ADD("pos_embed.W_pos", 2, (int64_t)c->n_ctx, C, 0);
    for (int l = 0; l < c->n_layers; l++) {
#define ADDL(suffix, nd, s0, s1, s2)                                  \
    do {                                                              \
        snprintf(nm, sizeof nm, "blocks.%d.%s", l, suffix);           \
        ADD(nm, nd, s0, s1, s2);                                      \
    } while (0)
        if (ln) {
            ADDL("ln1.w", 1, C, 0, 0);
            ADDL("ln1.b", 1, C, 0, 0);
        }
        ADDL("attn.W_Q", 3, H, C, D);
        ADDL("attn.W_K", 3, H, C, D);
        ADDL("attn.W_V", 3, H, C, D);
        ADDL("attn.W_O", 3, H, D, C);
        ADDL("attn.b_Q", 2, H, D, 0);
        ADDL("attn.b_K", 2, H, D, 0);
        ADDL("attn.b_V", 2, H, D, 0);
        ADDL("attn.b_O", 1, C, 0, 0);
        if (ln) {
            ADDL("ln2.w", 1, C, 0, 0);
            ADDL("ln2.b", 1, C, 0, 0);
        }
        ADDL("mlp.W_in", 2, C, M, 0);
        ADDL("mlp.b_in", 1, M, 0, 0);
        if (ln && c->act_fn == MS_ACT_SOLU_LN) {
            ADDL("mlp.ln.w", 1, M, 0, 0);
            ADDL("mlp.ln.b", 1, M, 0, 0);
        }
        ADDL("mlp.W_out", 2, M, C, 0);
        ADDL("mlp.b_out", 1, C, 0, 0);
#undef ADDL
    }
    if (ln) {
        ADD("ln_final.w", 1, C, 0, 0);
        ADD("ln_final.b", 1, C, 0, 0);
    }
    ADD("unembed.W_U", 2, C, V, 0);
    ADD("unembed.b_U", 1, V, 0, 0);
#undef ADD
    return n;
}

static size_t table_numel(const ms_model_tensor *t, int n)
{
    return n ? (t[n - 1].offset + ((t[n - 1].numel + 15) & ~(size_t)15)) : 0;
}

ms_status ms_model_tensors(const ms_model_config *cfg, ms_model_tensor **out, int *n, ms_err *err)
{
    int cnt = build_table(cfg, NULL);
    *n = 0;
    *out = calloc((size_t)cnt, sizeof **out);
    if (!*out) return ms_err_set(err, MS_ERR_NOMEM, "model: out of memory for the tensor table");
    *n = build_table(cfg, *out);
    return MS_OK;
}

size_t ms_model_params_numel(const ms_model_config *cfg)
{
    ms_model_tensor *t = NULL;
    int n = 0;
    if (ms_model_tensors(cfg, &t, &n, NULL) != MS_OK) return 0;
    size_t s = table_numel(t, n);
    free(t);
    return s;
}

static float *find_view(float *slab, const ms_model_tensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) return slab + t[i].offset;
    return NULL;
}

static ms_status bind_table(const ms_model_config *cfg, const ms_model_tensor *t, int n, float *slab,
                            ms_model_params *v, ms_err *err)
{
    memset(v, 0, sizeof *v);
    v->blocks = calloc((size_t)cfg->n_layers, sizeof *v->blocks);
    if (!v->blocks) return ms_err_set(err, MS_ERR_NOMEM, "model: out of memory");
    v->W_E = find_view(slab, t, n, "embed.W_E");
    v->W_pos = find_view(slab, t, n, "pos_embed.W_pos");
    v->lnf_w = find_view(slab, t, n, "ln_final.w");
    v->lnf_b = find_view(slab, t, n, "ln_final.b");
    v->W_U = find_view(slab, t, n, "unembed.W_U");
    v->b_U = find_view(slab, t, n, "unembed.b_U");
    char nm[MS_MODEL_MAX_NAME];
    for (int l = 0; l < cfg->n_layers; l++) {
        ms_layer_params *p = &v->blocks[l];
#define V(field, suffix)                                         \
    do {                                                         \
        snprintf(nm, sizeof nm, "blocks.%d.%s", l, suffix);      \
        p->field = find_view(slab, t, n, nm);                    \
    } while (0)
        V(ln1_w, "ln1.w");
        V(ln1_b, "ln1.b");
        V(W_Q, "attn.W_Q");
        V(W_K, "attn.W_K");
        V(W_V, "attn.W_V");
        V(W_O, "attn.W_O");
        V(b_Q, "attn.b_Q");
        V(b_K, "attn.b_K");
        V(b_V, "attn.b_V");
        V(b_O, "attn.b_O");
        V(ln2_w, "ln2.w");
        V(ln2_b, "ln2.b");
        V(W_in, "mlp.W_in");
        V(b_in, "mlp.b_in");
        V(ln_mid_w, "mlp.ln.w");
        V(ln_mid_b, "mlp.ln.b");
        V(W_out, "mlp.W_out");
        V(b_out, "mlp.b_out");
#undef V
    }
    return MS_OK;
}

ms_status ms_model_params_bind(const ms_model_config *cfg, float *slab, ms_model_params *views,
                               ms_err *err)
{
    ms_model_tensor *t = NULL;
    int n = 0;
    ms_status rc = ms_model_tensors(cfg, &t, &n, err);
    if (rc) return rc;
    rc = bind_table(cfg, t, n, slab, views, err);
    free(t);
    return rc;
}

void ms_model_params_unbind(ms_model_params *views)
{
    if (!views) return;
    free(views->blocks);
    memset(views, 0, sizeof *views);
}

/* ===================================================================== model lifetime */

void ms_model_free(ms_model *m)
{
    if (!m) return;
    free(m->params);
    free(m->tensors);
    ms_model_params_unbind(&m->w);
    memset(m, 0, sizeof *m);
}

ms_status ms_model_init(ms_model *m, const ms_model_config *cfg, ms_err *err)
{
    memset(m, 0, sizeof *m);
    ms_status rc = ms_model_config_check(cfg, "model config", err);
    if (rc) return rc;
    m->cfg = *cfg;
    rc = ms_model_tensors(cfg, &m->tensors, &m->n_tensors, err);
    if (rc) return rc;
    m->n_params = table_numel(m->tensors, m->n_tensors);
    m->params = aligned_alloc(64, ((m->n_params * sizeof(float)) + 63) & ~(size_t)63);
    if (!m->params) {
        ms_model_free(m);
        return ms_err_set(err, MS_ERR_NOMEM, "model: out of memory for %zu parameters", m->n_params);
    }
    memset(m->params, 0, m->n_params * sizeof(float));
    rc = bind_table(cfg, m->tensors, m->n_tensors, m->params, &m->w, err);
    if (rc) ms_model_free(m);
    return rc;
}

void ms_model_init_random(ms_model *m, uint64_t seed, float std)
{
    uint64_t s = seed;
    const float resid_scale = 1.0f / sqrtf(2.0f * (float)m->cfg.n_layers);
    for (int i = 0; i < m->n_tensors; i++) {
        const ms_model_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        const char *leaf = strrchr(t->name, '.');
        leaf = leaf ? leaf + 1 : t->name;
        if (strcmp(leaf, "w") == 0) {
            for (size_t k = 0; k < t->numel; k++) p[k] = 1.0f;
        } else if (leaf[0] == 'b') {
            memset(p, 0, t->numel * sizeof(float));
        } else {
            float sd = std;
            if (strstr(t->name, "W_O") || strstr(t->name, "W_out")) sd *= resid_scale;
            for (size_t k = 0; k < t->numel; k += 2) { /* Box-Muller */
                double u1 = ((ms_rng_next(&s) >> 11) + 1.0) * 0x1p-53, u2 = (ms_rng_next(&s) >> 11) * 0x1p-53;
                double r = sqrt(-2.0 * log(u1));
                p[k] = (float)(sd * r * cos(2 * M_PI * u2));
                if (k + 1 < t->numel) p[k + 1] = (float)(sd * r * sin(2 * M_PI * u2));
            }
        }
    }
}
