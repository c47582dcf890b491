/* Model I/O: safetensors load (TransformerLens or HF GPT-2 names) and save, and token-id text files. */
#include "monosem/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== load / save */

static ms_status read_tl(ms_model *m, const ms_safetensors *st, ms_err *err)
{
    for (int i = 0; i < m->n_tensors; i++) {
        const ms_model_tensor *t = &m->tensors[i];
        ms_status rc = ms_safetensors_read_f32_shaped(st, t->name, t->ndim, t->shape, m->params + t->offset, err);
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
        rc = ms_safetensors_read_f32_shaped(st, nm, nd, sh_, dst, err);                        \
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
    if (ms_safetensors_find(st, "lm_head.weight")) {
        int64_t sh[2] = {V, C};
        rc = ms_safetensors_read_f32_shaped(st, "lm_head.weight", 2, sh, tmp, err);
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
    rc = ms_safetensors_open(&st, weights_path, err);
    if (rc) {
        ms_model_free(m);
        return rc;
    }
    if (ms_safetensors_find(&st, "wte.weight"))
        rc = read_hf(m, &st, "", err);
    else if (ms_safetensors_find(&st, "transformer.wte.weight"))
        rc = read_hf(m, &st, "transformer.", err);
    else
        rc = read_tl(m, &st, err);
    ms_safetensors_close(&st);
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
    ms_safetensors_item *items = calloc((size_t)m->n_tensors, sizeof *items);
    if (!cp || !wp || !json || !items) {
        rc = ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const ms_model_tensor *t = &m->tensors[i];
        items[i].name = t->name;
        items[i].dtype = MS_SAFETENSORS_F32;
        items[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) items[i].shape[d] = t->shape[d];
        items[i].data = m->params + t->offset;
    }
    const char *meta[] = {"format", "pt", "producer", ("monosem " MS_VERSION_STRING)};
    rc = ms_safetensors_write(wp, items, m->n_tensors, meta, 2, err);
    if (rc == MS_OK) rc = ms_file_write_atomic(cp, json, strlen(json), err);
done:
    free(items);
    free(json);
    free(cp);
    free(wp);
    return rc;
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
