/* Model config: config.json (TransformerLens and HF GPT-2 keys) parsed, checked and written. */
#include "monosem/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
