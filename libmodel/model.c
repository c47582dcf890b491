/* Transformer model: config.json, parameter slab with named views, safetensors load/save
 * (TransformerLens and HF GPT-2 names), activations slab, forward with hooks. */
#include "monosem/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* ===================================================================== config */

static const char *act_names[] = {"relu", "gelu", "gelu_new", "solu_ln"};

ms_status ms_model_config_check(const ms_model_config *c, const char *where, ms_err *err)
{
    const char *w = where ? where : "model config";
    if (c->n_layers < 1 || c->d_model < 1 || c->d_mlp < 1 || c->n_heads < 1 || c->d_head < 1 ||
        c->n_ctx < 1 || c->d_vocab < 1)
        return ms_err_set(err, MS_ERR_FORMAT,
                          "%s: n_layers, d_model, d_mlp, n_heads, d_head, n_ctx, d_vocab must all be positive "
                          "(got %d, %d, %d, %d, %d, %d, %d)",
                          w, c->n_layers, c->d_model, c->d_mlp, c->n_heads, c->d_head, c->n_ctx, c->d_vocab);
    if (c->act_fn < MS_ACT_RELU || c->act_fn > MS_ACT_SOLU_LN)
        return ms_err_set(err, MS_ERR_FORMAT, "%s: act_fn %d unknown", w, c->act_fn);
    if (c->normalization < MS_NORM_LN || c->normalization > MS_NORM_NONE)
        return ms_err_set(err, MS_ERR_FORMAT, "%s: normalization %d unknown", w, c->normalization);
    if (!(c->eps > 0) || !isfinite(c->eps))
        return ms_err_set(err, MS_ERR_FORMAT, "%s: eps must be positive", w);
    /* keep every buffer index within int arithmetic of BLAS calls */
    if ((int64_t)c->d_vocab * c->d_model > INT32_MAX || (int64_t)c->n_heads * c->d_head * 3 > INT32_MAX ||
        c->n_layers > 4096)
        return ms_err_set(err, MS_ERR_FORMAT, "%s: sizes too large", w);
    return MS_OK;
}

static int json_int(const cJSON *root, const char *a, const char *b, int dflt, bool *found)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, a);
    if (!j && b) j = cJSON_GetObjectItemCaseSensitive(root, b);
    if (!j || cJSON_IsNull(j)) {
        *found = false;
        return dflt;
    }
    *found = cJSON_IsNumber(j) && j->valuedouble == floor(j->valuedouble) && fabs(j->valuedouble) < 2e9;
    return *found ? (int)j->valuedouble : -1;
}

ms_status ms_model_config_load(ms_model_config *c, const char *path, ms_err *err)
{
    memset(c, 0, sizeof *c);
    char *text = NULL;
    size_t len = 0;
    ms_status rc = ms_file_read_all(path, &text, &len, err);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ms_err_set(err, MS_ERR_FORMAT, "%s: expected a JSON object", path);
    }
    struct {
        const char *tl, *hf;
        int *dst;
        bool required;
    } keys[] = {
        {"n_layers", "n_layer", &c->n_layers, true},  {"d_model", "n_embd", &c->d_model, true},
        {"n_heads", "n_head", &c->n_heads, true},     {"n_ctx", "n_positions", &c->n_ctx, true},
        {"d_vocab", "vocab_size", &c->d_vocab, true}, {"d_head", NULL, &c->d_head, false},
        {"d_mlp", "n_inner", &c->d_mlp, false},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        bool found;
        *keys[i].dst = json_int(root, keys[i].tl, keys[i].hf, 0, &found);
        if (*keys[i].dst < 0 || (!found && keys[i].required)) {
            rc = ms_err_set(err, MS_ERR_FORMAT, "%s: key '%s': expected a positive integer", path, keys[i].tl);
            goto done;
        }
    }
    if (c->d_head == 0 && c->n_heads > 0) c->d_head = c->d_model / c->n_heads;
    if (c->d_mlp == 0) c->d_mlp = 4 * c->d_model;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "act_fn");
    if (!act) act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    c->act_fn = -1;
    for (int i = 0; i < 4; i++)
        if (cJSON_IsString(act) && strcmp(act->valuestring, act_names[i]) == 0) c->act_fn = i;
    if (cJSON_IsString(act) && strcmp(act->valuestring, "solu") == 0) c->act_fn = MS_ACT_SOLU_LN;
    if (c->act_fn < 0) {
        rc = ms_err_set(err, MS_ERR_FORMAT, "%s: key 'act_fn': expected relu, gelu, gelu_new or solu_ln", path);
        goto done;
    }
    const cJSON *nt = cJSON_GetObjectItemCaseSensitive(root, "normalization_type");
    if (!nt || (cJSON_IsString(nt) && strcmp(nt->valuestring, "LN") == 0)) {
        c->normalization = MS_NORM_LN;
    } else if (cJSON_IsString(nt) && strcmp(nt->valuestring, "LNPre") == 0) {
        c->normalization = MS_NORM_LNPRE;
    } else if (cJSON_IsNull(nt)) {
        c->normalization = MS_NORM_NONE;
    } else {
        rc = ms_err_set(err, MS_ERR_FORMAT, "%s: key 'normalization_type': expected \"LN\", \"LNPre\" or null", path);
        goto done;
    }
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "eps");
    if (!eps) eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    c->eps = 1e-5f;
    if (eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0 && eps->valuedouble <= 1)) {
            rc = ms_err_set(err, MS_ERR_FORMAT, "%s: key 'eps': expected a number in (0, 1]", path);
            goto done;
        }
        c->eps = (float)eps->valuedouble;
    }
    /* TransformerLens variants this forward does not implement */
    const char *bools[] = {"attn_only", "gated_mlp", "parallel_attn_mlp", "use_attn_scale_false"};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, bools[i]);
        if (cJSON_IsTrue(j)) {
            rc = ms_err_set(err, MS_ERR_UNSUPPORTED, "%s: key '%s': true is not supported", path, bools[i]);
            goto done;
        }
    }
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(root, "positional_embedding_type");
    if (pe && !(cJSON_IsString(pe) && strcmp(pe->valuestring, "standard") == 0)) {
        rc = ms_err_set(err, MS_ERR_UNSUPPORTED, "%s: key 'positional_embedding_type': only \"standard\" is supported", path);
        goto done;
    }
    rc = ms_model_config_check(c, path, err);
done:
    cJSON_Delete(root);
    return rc;
}

char *ms_model_config_json(const ms_model_config *c)
{
    const char *norm = c->normalization == MS_NORM_LN ? "\"LN\"" : c->normalization == MS_NORM_LNPRE ? "\"LNPre\"" : "null";
    char *s = NULL;
    if (asprintf(&s,
                 "{\n  \"n_layers\": %d,\n  \"d_model\": %d,\n  \"d_mlp\": %d,\n  \"n_heads\": %d,\n"
                 "  \"d_head\": %d,\n  \"n_ctx\": %d,\n  \"d_vocab\": %d,\n  \"act_fn\": \"%s\",\n"
                 "  \"normalization_type\": %s,\n  \"eps\": %.9g,\n  \"positional_embedding_type\": \"standard\"\n}\n",
                 c->n_layers, c->d_model, c->d_mlp, c->n_heads, c->d_head, c->n_ctx, c->d_vocab,
                 act_names[c->act_fn], norm, (double)c->eps) < 0)
        return NULL;
    return s;
}

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

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
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
                double u1 = ((splitmix64(&s) >> 11) + 1.0) * 0x1p-53, u2 = (splitmix64(&s) >> 11) * 0x1p-53;
                double r = sqrt(-2.0 * log(u1));
                p[k] = (float)(sd * r * cos(2 * M_PI * u2));
                if (k + 1 < t->numel) p[k + 1] = (float)(sd * r * sin(2 * M_PI * u2));
            }
        }
    }
}

/* ===================================================================== load / save */

static ms_status read_tl(ms_model *m, const ms_safetensors *st, ms_err *err)
{
    for (int i = 0; i < m->n_tensors; i++) {
        const ms_model_tensor *t = &m->tensors[i];
        ms_status rc = ms_st_read_f32_shaped(st, t->name, t->ndim, t->shape, m->params + t->offset, err);
        if (rc) return rc;
    }
    return MS_OK;
}

/* HF GPT-2 checkpoint: Conv1D weights are (in, out), so W_in/W_out/W_O need no transpose; the
 * fused c_attn (C, 3C) is split per head, and W_U is lm_head (V,C) or wte transposed. */
static ms_status read_hf(ms_model *m, const ms_safetensors *st, const char *pre, ms_err *err)
{
    const ms_model_config *c = &m->cfg;
    const int C = c->d_model, H = c->n_heads, D = c->d_head, M = c->d_mlp, V = c->d_vocab;
    if (H * D != C)
        return ms_err_set(err, MS_ERR_FORMAT, "%s: HF GPT-2 layout needs n_heads*d_head == d_model", st->path);
    size_t tmpn = (size_t)3 * C * C > (size_t)V * C ? (size_t)3 * C * C : (size_t)V * C;
    float *tmp = malloc(tmpn * sizeof(float));
    if (!tmp) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", st->path);
    ms_status rc = MS_OK;
    char nm[256];
    const ms_model_params *w = &m->w;
#define RD(dst, nd, s0, s1, fmt, ...)                                                  \
    do {                                                                              \
        int64_t sh_[2] = {s0, s1};                                                    \
        snprintf(nm, sizeof nm, "%s" fmt, pre, __VA_ARGS__);                          \
        rc = ms_st_read_f32_shaped(st, nm, nd, sh_, dst, err);                        \
        if (rc) goto done;                                                            \
    } while (0)
    RD(w->W_E, 2, V, C, "%s", "wte.weight");
    RD(w->W_pos, 2, c->n_ctx, C, "%s", "wpe.weight");
    for (int l = 0; l < c->n_layers; l++) {
        const ms_layer_params *p = &w->blocks[l];
        if (p->ln1_w) {
            RD(p->ln1_w, 1, C, 0, "h.%d.ln_1.weight", l);
            RD(p->ln1_b, 1, C, 0, "h.%d.ln_1.bias", l);
            RD(p->ln2_w, 1, C, 0, "h.%d.ln_2.weight", l);
            RD(p->ln2_b, 1, C, 0, "h.%d.ln_2.bias", l);
        }
        RD(tmp, 2, C, 3 * C, "h.%d.attn.c_attn.weight", l);
        float *dst[3] = {p->W_Q, p->W_K, p->W_V};
        for (int which = 0; which < 3; which++)
            for (int h = 0; h < H; h++)
                for (int r = 0; r < C; r++)
                    memcpy(dst[which] + ((size_t)h * C + r) * D, tmp + (size_t)r * 3 * C + which * C + h * D,
                           (size_t)D * sizeof(float));
        RD(tmp, 1, 3 * C, 0, "h.%d.attn.c_attn.bias", l);
        memcpy(p->b_Q, tmp, (size_t)C * sizeof(float));
        memcpy(p->b_K, tmp + C, (size_t)C * sizeof(float));
        memcpy(p->b_V, tmp + 2 * C, (size_t)C * sizeof(float));
        RD(p->W_O, 2, C, C, "h.%d.attn.c_proj.weight", l);
        RD(p->b_O, 1, C, 0, "h.%d.attn.c_proj.bias", l);
        RD(p->W_in, 2, C, M, "h.%d.mlp.c_fc.weight", l);
        RD(p->b_in, 1, M, 0, "h.%d.mlp.c_fc.bias", l);
        RD(p->W_out, 2, M, C, "h.%d.mlp.c_proj.weight", l);
        RD(p->b_out, 1, C, 0, "h.%d.mlp.c_proj.bias", l);
    }
    if (w->lnf_w) {
        RD(w->lnf_w, 1, C, 0, "%s", "ln_f.weight");
        RD(w->lnf_b, 1, C, 0, "%s", "ln_f.bias");
    }
    if (ms_st_find(st, "lm_head.weight")) {
        int64_t sh[2] = {V, C};
        rc = ms_st_read_f32_shaped(st, "lm_head.weight", 2, sh, tmp, err);
        if (rc) goto done;
    } else {
        memcpy(tmp, w->W_E, (size_t)V * C * sizeof(float)); /* tied embeddings */
    }
    for (int v = 0; v < V; v++)
        for (int k = 0; k < C; k++) w->W_U[(size_t)k * V + v] = tmp[(size_t)v * C + k];
    memset(w->b_U, 0, (size_t)V * sizeof(float));
#undef RD
done:
    free(tmp);
    return rc;
}

ms_status ms_model_load_files(ms_model *m, const char *config_path, const char *weights_path,
                              ms_err *err)
{
    memset(m, 0, sizeof *m);
    ms_model_config cfg;
    ms_status rc = ms_model_config_load(&cfg, config_path, err);
    if (rc) return rc;
    rc = ms_model_init(m, &cfg, err);
    if (rc) return rc;
    ms_safetensors st;
    rc = ms_st_open(&st, weights_path, err);
    if (rc) {
        ms_model_free(m);
        return rc;
    }
    if (ms_st_find(&st, "wte.weight"))
        rc = read_hf(m, &st, "", err);
    else if (ms_st_find(&st, "transformer.wte.weight"))
        rc = read_hf(m, &st, "transformer.", err);
    else
        rc = read_tl(m, &st, err);
    ms_st_close(&st);
    if (rc == MS_OK) {
        for (size_t i = 0; i < m->n_params; i++)
            if (!isfinite(m->params[i])) {
                rc = ms_err_set(err, MS_ERR_NUMERIC, "%s: non-finite weight value", weights_path);
                break;
            }
    }
    if (rc) ms_model_free(m);
    return rc;
}

ms_status ms_model_load(ms_model *m, const char *dir, ms_err *err)
{
    char *cp = ms_path_join(dir, "config.json"), *wp = ms_path_join(dir, "model.safetensors");
    ms_status rc = (cp && wp) ? ms_model_load_files(m, cp, wp, err)
                              : ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", dir);
    free(cp);
    free(wp);
    return rc;
}

ms_status ms_model_save(const ms_model *m, const char *dir, ms_err *err)
{
    ms_status rc = ms_mkdirs(dir, err);
    if (rc) return rc;
    char *cp = ms_path_join(dir, "config.json"), *wp = ms_path_join(dir, "model.safetensors");
    char *json = ms_model_config_json(&m->cfg);
    ms_st_item *items = calloc((size_t)m->n_tensors, sizeof *items);
    if (!cp || !wp || !json || !items) {
        rc = ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const ms_model_tensor *t = &m->tensors[i];
        items[i].name = t->name;
        items[i].dtype = MS_ST_F32;
        items[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) items[i].shape[d] = t->shape[d];
        items[i].data = m->params + t->offset;
    }
    const char *meta[] = {"format", "pt", "producer", ("monosem " MS_VERSION_STRING)};
    rc = ms_st_write(wp, items, m->n_tensors, meta, 2, err);
    if (rc == MS_OK) rc = ms_file_write_atomic(cp, json, strlen(json), err);
done:
    free(items);
    free(json);
    free(cp);
    free(wp);
    return rc;
}

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

/* ===================================================================== token text files */

ms_status ms_tokens_load_text(const char *path, int32_t **tokens, int *B, int *T, ms_err *err)
{
    *tokens = NULL;
    *B = *T = 0;
    char *text = NULL;
    size_t len = 0;
    ms_status rc = ms_file_read_all(path, &text, &len, err);
    if (rc) return rc;
    size_t n = 0, cap = 0;
    int32_t *ids = NULL;
    int rows = 0, width = -1, line = 1;
    char *p = text, *end = text + len;
    while (p < end && rc == MS_OK) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        int cnt = 0;
        char *q = p;
        while (q < eol) {
            while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r' || *q == ',')) q++;
            if (q >= eol) break;
            char *e;
            long long v = strtoll(q, &e, 10);
            if (e == q || (e < eol && !(*e == ' ' || *e == '\t' || *e == '\r' || *e == ',')) || v < 0 ||
                v > INT32_MAX) {
                rc = ms_err_set(err, MS_ERR_FORMAT, "%s:%d: expected non-negative integer token ids", path, line);
                break;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 4096;
                int32_t *ni = realloc(ids, cap * sizeof *ids);
                if (!ni) {
                    rc = ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
                    break;
                }
                ids = ni;
            }
            ids[n++] = (int32_t)v;
            cnt++;
            q = e;
        }
        if (rc == MS_OK && cnt > 0) {
            if (width >= 0 && cnt != width)
                rc = ms_err_set(err, MS_ERR_FORMAT, "%s:%d: %d tokens, expected %d like the first context", path,
                                line, cnt, width);
            width = cnt;
            rows++;
        }
        p = eol + 1;
        line++;
    }
    free(text);
    if (rc == MS_OK && rows == 0) rc = ms_err_set(err, MS_ERR_FORMAT, "%s: no token ids", path);
    if (rc) {
        free(ids);
        return rc;
    }
    *tokens = ids;
    *B = rows;
    *T = width;
    return MS_OK;
}
