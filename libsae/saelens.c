/* SAELens directory I/O: cfg.json in the SAELens v6 layout, sae_weights.safetensors and
 * sparsity.safetensors, written by `monosem train` and read back by `sae.init` and `eval`. */
#include "monosem/sae.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What SAELens calls the architecture. BatchTopK is a training procedure: at inference it is a
 * JumpReLU with one threshold (as SAELens saves it). april-2024 encodes as a ReLU SAE. */
static const char *arch_saelens(int arch)
{
    switch (arch) {
    case MS_SAE_TOPK: return "topk";
    case MS_SAE_BATCHTOPK:
    case MS_SAE_JUMPRELU: return "jumprelu";
    default: return "standard";
    }
}

static bool has_threshold(int arch) { return arch == MS_SAE_JUMPRELU || arch == MS_SAE_BATCHTOPK; }

ms_status ms_saelens_write_sparsity(const char *dir, const float *log10_density, int64_t d_sae,
                                const char *source, ms_err *err)
{
    ms_safetensors_item sp = {"sparsity", MS_SAFETENSORS_F32, 1, {d_sae}, log10_density};
    const char *meta[] = {"format", "pt", "density_source", source ? source : "unknown"};
    char *p = ms_path_join(dir, "sparsity.safetensors");
    ms_status st = p ? ms_safetensors_write(p, &sp, 1, meta, 2, err)
                     : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    free(p);
    return st;
}

/* cfg.json, v6 layout: architecture-level fields at the top (SAELens v6 drops unknown top-level
 * keys), provenance in `metadata` (kept whole by SAELens, so monosem's own keys survive there).
 * metadata.sae_lens_version marks the file as v6 so SAELens does not run its pre-6 conversion. */
static char *cfg_json(const ms_sae *sae, const ms_saelens_meta *m)
{
    cJSON *j = cJSON_CreateObject(), *md = NULL;
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "architecture", arch_saelens(sae->hp.arch));
    cJSON_AddNumberToObject(j, "d_in", (double)sae->hp.d_in);
    cJSON_AddNumberToObject(j, "d_sae", (double)sae->hp.d_sae);
    cJSON_AddStringToObject(j, "dtype", "float32");
    cJSON_AddStringToObject(j, "device", "cpu");
    cJSON_AddBoolToObject(j, "apply_b_dec_to_input", 1);
    cJSON_AddStringToObject(j, "normalize_activations", "none");
    cJSON_AddStringToObject(j, "reshape_activations", "none");
    if (sae->hp.arch == MS_SAE_TOPK) { /* v6 reads k here; activation_fn_kwargs is ignored */
        cJSON_AddNumberToObject(j, "k", (double)sae->hp.k);
        cJSON_AddBoolToObject(j, "rescale_acts_by_decoder_norm", 0);
    }
    md = cJSON_AddObjectToObject(j, "metadata");
    if (md) {
        cJSON_AddStringToObject(md, "sae_lens_version", MS_SAELENS_VERSION);
        cJSON_AddStringToObject(md, "sae_lens_training_version", "monosem " MS_VERSION_STRING);
        cJSON_AddStringToObject(md, "model_name", m && m->model_name ? m->model_name : "monosem");
        cJSON_AddStringToObject(md, "model_class_name", "HookedTransformer");
        cJSON_AddStringToObject(md, "hook_name", m && m->hook_name ? m->hook_name : "");
        cJSON_AddNullToObject(md, "hook_head_index");
        if (m && m->context_size > 0) cJSON_AddNumberToObject(md, "context_size", (double)m->context_size);
        cJSON_AddStringToObject(md, "dataset_path", m && m->dataset_path ? m->dataset_path : "");
        /* the truth: monosem contexts are plain windows of the token stream, no BOS added
         * (SAELens defaults this to true, which changes what its activation store feeds) */
        cJSON_AddBoolToObject(md, "prepend_bos", 0);
        cJSON_AddStringToObject(md, "monosem_arch", ms_enum_name("sae.arch", sae->hp.arch));
        cJSON_AddStringToObject(md, "monosem_version", MS_VERSION_STRING);
        if (m) {
            cJSON_AddNumberToObject(md, "l1_coefficient", m->l1_coefficient);
            cJSON_AddNumberToObject(md, "training_tokens", (double)m->training_tokens);
            if (m->density_source)
                cJSON_AddStringToObject(md, "sparsity_source", m->density_source);
        }
    }
    char *text = md ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    return text;
}

ms_status ms_saelens_save(const ms_sae *sae, const char *dir, const float *log10_density,
                              const ms_saelens_meta *meta, ms_err *err)
{
    ms_status st = ms_mkdirs(dir, err);
    if (st) return st;
    const int64_t din = sae->hp.d_in, dsae = sae->hp.d_sae;
    float *buf = malloc(sae->layout.n_params * sizeof *buf);
    if (!buf) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", dir);
    float *We = buf, *be = We + din * dsae, *Wd = be + dsae, *bd = Wd + dsae * din,
          *th = bd + din;
    bool has_th = has_threshold(sae->hp.arch);
    ms_sae_export(sae, We, be, Wd, bd, has_th ? th : NULL);
    ms_safetensors_item items[5] = {
        {"W_enc", MS_SAFETENSORS_F32, 2, {din, dsae}, We},
        {"b_enc", MS_SAFETENSORS_F32, 1, {dsae}, be},
        {"W_dec", MS_SAFETENSORS_F32, 2, {dsae, din}, Wd},
        {"b_dec", MS_SAFETENSORS_F32, 1, {din}, bd},
        {"threshold", MS_SAFETENSORS_F32, 1, {dsae}, th},
    };
    char *p = ms_path_join(dir, "sae_weights.safetensors");
    const char *stmeta[] = {"format", "pt"};
    st = p ? ms_safetensors_write(p, items, has_th ? 5 : 4, stmeta, 1, err)
           : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    free(p);
    free(buf);
    if (!st && log10_density)
        st = ms_saelens_write_sparsity(dir, log10_density, dsae, meta ? meta->density_source : NULL, err);
    if (st) return st;
    char *json = cfg_json(sae, meta);
    if (!json) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory for cfg.json", dir);
    p = ms_path_join(dir, "cfg.json");
    st = p ? ms_file_write_atomic(p, json, strlen(json), err)
           : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    free(p);
    free(json);
    return st;
}

/* ------------------------------------------------------------------ reading */

static const cJSON *member(const cJSON *o, const char *key)
{
    return o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

/* Provenance key: v6 metadata first, the older flat layout second. */
static const cJSON *meta_member(const cJSON *j, const char *key)
{
    const cJSON *v = member(member(j, "metadata"), key);
    return v ? v : member(j, key);
}

static ms_status read_cfg(const char *dir, cJSON **out, ms_err *err)
{
    char *p = ms_path_join(dir, "cfg.json"), *text = NULL;
    if (!p) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    ms_status st = ms_file_read_all(p, &text, NULL, err);
    if (!st) {
        *out = cJSON_Parse(text);
        if (!*out || !cJSON_IsObject(*out))
            st = ms_err_set(err, MS_ERR_FORMAT, "%s: not a JSON object", p);
    }
    if (st && *out) cJSON_Delete(*out), *out = NULL;
    free(text);
    free(p);
    return st;
}

static int64_t int_member(const cJSON *o, const char *key)
{
    const cJSON *v = member(o, key);
    return cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble == floor(v->valuedouble)
               ? (int64_t)v->valuedouble
               : -1;
}

ms_status ms_saelens_dims(const char *dir, int64_t *d_in, int64_t *d_sae, ms_err *err)
{
    cJSON *j = NULL;
    ms_status st = read_cfg(dir, &j, err);
    if (st) return st;
    int64_t a = int_member(j, "d_in"), b = int_member(j, "d_sae");
    if (a < 1 || b < 1)
        st = ms_err_set(err, MS_ERR_FORMAT, "%s/cfg.json: expected positive integers d_in and d_sae",
                        dir);
    if (d_in) *d_in = a;
    if (d_sae) *d_sae = b;
    cJSON_Delete(j);
    return st;
}

/* Weights that are NaN or infinite behind a valid checksum (a diverged run, a buggy writer)
 * would make every statistic built on them garbage: refused, naming the file and tensor. */
static ms_status check_finite(const char *path, const char *name, const float *x, int64_t n, ms_err *err)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return ms_err_set(err, MS_ERR_FORMAT, "%s: tensor %s: element %lld is %g: expected finite weights",
                              path, name, (long long)i, (double)x[i]);
    return MS_OK;
}

ms_status ms_saelens_load(ms_sae *sae, const char *dir, ms_err *err)
{
    char *p = ms_path_join(dir, "sae_weights.safetensors");
    if (!p) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    ms_safetensors st_file;
    memset(&st_file, 0, sizeof st_file);
    ms_status st = ms_safetensors_open(&st_file, p, err);
    const int64_t din = sae->hp.d_in, dsae = sae->hp.d_sae;
    float *buf = malloc(sae->layout.n_params * sizeof *buf + sizeof(float));
    if (!st && !buf) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (!st) {
        float *We = buf, *be = We + din * dsae, *Wd = be + dsae, *bd = Wd + dsae * din,
              *th = bd + din;
        int64_t s_we[2] = {din, dsae}, s_wd[2] = {dsae, din}, s_be[1] = {dsae}, s_bd[1] = {din};
        st = ms_safetensors_read_f32_shaped(&st_file, "W_enc", 2, s_we, We, err);
        if (!st) st = ms_safetensors_read_f32_shaped(&st_file, "b_enc", 1, s_be, be, err);
        if (!st) st = ms_safetensors_read_f32_shaped(&st_file, "W_dec", 2, s_wd, Wd, err);
        if (!st) st = ms_safetensors_read_f32_shaped(&st_file, "b_dec", 1, s_bd, bd, err);
        bool th_ok = false;
        if (!st && ms_safetensors_find(&st_file, "threshold")) {
            st = ms_safetensors_read_f32_shaped(&st_file, "threshold", 1, s_be, th, err);
            th_ok = !st;
        }
        if (!st) st = check_finite(p, "W_enc", We, din * dsae, err);
        if (!st) st = check_finite(p, "b_enc", be, dsae, err);
        if (!st) st = check_finite(p, "W_dec", Wd, dsae * din, err);
        if (!st) st = check_finite(p, "b_dec", bd, din, err);
        if (!st && th_ok) st = check_finite(p, "threshold", th, dsae, err);
        if (!st) ms_sae_import(sae, We, be, Wd, bd, th_ok ? th : NULL);
    }
    ms_safetensors_close(&st_file);
    free(buf);
    free(p);
    return st;
}

static void copy_str(char *dst, size_t n, const cJSON *v)
{
    snprintf(dst, n, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

ms_status ms_saelens_open(ms_sae *sae, const char *dir, int64_t max_batch,
                              ms_saelens_info *info, ms_err *err)
{
    memset(sae, 0, sizeof *sae);
    memset(info, 0, sizeof *info);
    cJSON *j = NULL;
    ms_status st = read_cfg(dir, &j, err);
    if (st) return st;
    const cJSON *arch = member(j, "architecture");
    const char *a = cJSON_IsString(arch) ? arch->valuestring : "standard";
    snprintf(info->architecture, sizeof info->architecture, "%s", a);
    copy_str(info->hook_name, sizeof info->hook_name, meta_member(j, "hook_name"));
    copy_str(info->model_name, sizeof info->model_name, meta_member(j, "model_name"));
    copy_str(info->monosem_arch, sizeof info->monosem_arch, meta_member(j, "monosem_arch"));
    const cJSON *cs = meta_member(j, "context_size");
    info->context_size = cJSON_IsNumber(cs) ? (int64_t)cs->valuedouble : 0;
    const cJSON *pb = meta_member(j, "prepend_bos");
    info->prepend_bos = pb ? cJSON_IsTrue(pb) : true; /* SAELens's default */
    ms_sae_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.d_in = int_member(j, "d_in");
    hp.d_sae = int_member(j, "d_sae");
    hp.max_batch = max_batch;
    hp.lr = 1e-4, hp.beta1 = 0.9, hp.beta2 = 0.999, hp.adam_eps = 1e-8, hp.steps = 1;
    if (!strcmp(a, "standard")) {
        hp.arch = MS_SAE_RELU_L1;
    } else if (!strcmp(a, "jumprelu")) {
        hp.arch = MS_SAE_JUMPRELU;
        hp.bandwidth = 1e-3, hp.threshold_init = 1e-3; /* training-only; θ is loaded */
    } else if (!strcmp(a, "topk")) {
        hp.arch = MS_SAE_TOPK;
        hp.k = int_member(j, "k"); /* v6; older files: activation_fn_kwargs.k */
        if (hp.k < 1 && !member(member(j, "metadata"), "sae_lens_version"))
            hp.k = int_member(member(j, "activation_fn_kwargs"), "k");
        if (hp.k < 1) hp.k = 100; /* SAELens v6's default when k is absent */
        hp.k_aux = 0;
    } else {
        st = ms_err_set(err, MS_ERR_UNSUPPORTED,
                        "%s/cfg.json: architecture \"%s\": expected standard, topk or jumprelu",
                        dir, a);
    }
    const cJSON *abd = member(j, "apply_b_dec_to_input"), *na = member(j, "normalize_activations");
    if (!st && abd && !cJSON_IsTrue(abd))
        st = ms_err_set(err, MS_ERR_UNSUPPORTED,
                        "%s/cfg.json: apply_b_dec_to_input false is not supported (expected true)",
                        dir);
    if (!st && na && !(cJSON_IsString(na) && (!strcmp(na->valuestring, "none") ||
                                               !strcmp(na->valuestring, ""))))
        st = ms_err_set(err, MS_ERR_UNSUPPORTED,
                        "%s/cfg.json: normalize_activations must be \"none\" (the scale is folded "
                        "into the weights)",
                        dir);
    if (!st && (hp.d_in < 1 || hp.d_sae < 1))
        st = ms_err_set(err, MS_ERR_FORMAT, "%s/cfg.json: expected positive integers d_in and d_sae",
                        dir);
    if (!st && hp.arch == MS_SAE_TOPK && hp.k > hp.d_sae)
        st = ms_err_set(err, MS_ERR_FORMAT, "%s/cfg.json: k %lld exceeds d_sae %lld", dir,
                        (long long)hp.k, (long long)hp.d_sae);
    info->k = hp.k;
    cJSON_Delete(j);
    if (!st) st = ms_sae_init(sae, &hp, err);
    if (!st) {
        st = ms_saelens_load(sae, dir, err);
        if (st) ms_sae_free(sae);
    }
    return st;
}
