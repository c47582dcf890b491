/* A parsed job resolved: derived defaults (paths under run.out_dir, schedule keys), relations
 * between keys, the hash; and the configs derived from it: one SAE's, model B's, the control R's. */
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"

/* ------------------------------------------------------------------ resolve and validate */

static ms_status derive(char **dst, const char *a, const char *b, ms_err *err)
{
    if (*dst && **dst) return MS_OK;
    free(*dst);
    *dst = b ? ms_path_join(a, b) : strdup(a);
    return *dst ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
}

static where where_of(const ms_config *cfg, const char *key)
{
    where w = {cfg->path ? cfg->path : "job", 0, 0};
    ms_config_where(cfg, key, &w.line, &w.col);
    return w;
}

static ms_status resolve(ms_config *cfg, ms_err *err)
{
    ms_status st = MS_OK;
    if (!cfg->run.out_dir || !*cfg->run.out_dir) {
        char *d = ms_path_join("runs", cfg->run.name);
        if (!d) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        free(cfg->run.out_dir);
        cfg->run.out_dir = d;
    }
    const char *o = cfg->run.out_dir;
    if ((st = derive(&cfg->corpus.token_dir, o, "tokens", err))) return st;
    if ((st = derive(&cfg->tokenizer.vocab, o, "tokenizer/vocab.json", err))) return st;
    if ((st = derive(&cfg->tokenizer.merges, o, "tokenizer/merges.txt", err))) return st;
    if ((st = derive(&cfg->model.dir, o, "model", err))) return st;
    if ((st = derive(&cfg->generate.out, o, "activations.h5", err))) return st;
    if ((st = derive(&cfg->sae.activations, cfg->generate.out, NULL, err))) return st;
    if ((st = derive(&cfg->sae.out_dir, o, "sae", err))) return st;
    if ((st = derive(&cfg->train_model.dir, o, "train_model", err))) return st;
    if ((st = derive(&cfg->model_b.dir, o, "model-b", err))) return st;
    if ((st = derive(&cfg->model_b.activations, o, "activations-b.h5", err))) return st;
    if ((st = derive(&cfg->model_r.dir, o, "model-r", err))) return st;
    if ((st = derive(&cfg->model_r.activations, o, "activations-r.h5", err))) return st;
    for (int i = 0; i < cfg->n_saes && !cfg->derived; i++) {
        if (cfg->saes[i].model == 1 && cfg->model_b.seed == 0) {
            where w = {cfg->path, cfg->saes[i].line, cfg->saes[i].col};
            return cfg_where_err(err, &w, "saes entry '%s': model B needs key 'model_b.seed' (a seed other than model A's)",
                             cfg->saes[i].name);
        }
        if (cfg->saes[i].model == 2 && cfg->model_r.seed == 0) {
            where w = {cfg->path, cfg->saes[i].line, cfg->saes[i].col};
            return cfg_where_err(err, &w, "saes entry '%s': the control model R needs key 'model_r.seed' (its "
                             "initialisation seed)", cfg->saes[i].name);
        }
    }
    const int64_t seed_a = cfg->train_model.seed ? cfg->train_model.seed : cfg->run.seed;
    if (!cfg->derived && cfg->model_b.seed != 0 && cfg->model_b.seed == seed_a) {
        where w = where_of(cfg, "model_b.seed");
        return cfg_where_err(err, &w, "key 'model_b.seed': expected a seed other than model A's (%lld): model B is "
                         "model A's recipe with another seed", (long long)seed_a);
    }

    /* The schedule keys cfg_describe Anthropic's April 2024 recipe; every other recipe (the paper's
     * relu-l1 above all: constant lr, no clipping) runs without them unless they are set. */
    if (cfg->sae.arch != MS_SAE_APRIL_2024) {
        static const char *const sched[] = {"sae.lambda_warmup_frac", "sae.lr_decay_frac", "sae.grad_clip"};
        for (int i = 0; i < 3; i++) {
            const field *f = cfg_field_find(sched[i]);
            if (cfg->marks[2 * cfg_field_index(f)] == 0) *AT(cfg, f->off, double) = 0.0;
        }
    }

    /* a model for contexts longer than the default positions: n_ctx follows corpus.context
     * unless set (so the resolved dump, which sets every key, is itself a valid job) */
    if (cfg->marks[2 * cfg_field_index(cfg_field_find("model.n_ctx"))] == 0 && cfg->model.n_ctx < cfg->corpus.context)
        cfg->model.n_ctx = cfg->corpus.context;

    /* relations between keys, checked the same way on every rank */
    if (cfg->generate.sample_per_context > cfg->corpus.context) {
        where w = where_of(cfg, "generate.sample_per_context");
        return cfg_where_err(err, &w, "key 'generate.sample_per_context': expected at most corpus.context (%lld), got %lld",
                         (long long)cfg->corpus.context, (long long)cfg->generate.sample_per_context);
    }
    if (cfg->corpus.context > cfg->model.n_ctx && cfg->marks[2 * cfg_field_index(cfg_field_find("model.n_ctx"))] != 0) {
        where w = where_of(cfg, "corpus.context");
        return cfg_where_err(err, &w, "key 'corpus.context': expected at most model.n_ctx (%lld), got %lld",
                         (long long)cfg->model.n_ctx, (long long)cfg->corpus.context);
    }
    if ((cfg->sae.arch == MS_SAE_TOPK || cfg->sae.arch == MS_SAE_BATCHTOPK) && cfg->sae.k > cfg->sae.d_sae) {
        where w = where_of(cfg, "sae.k");
        return cfg_where_err(err, &w, "key 'sae.k': expected at most sae.d_sae (%lld), got %lld", (long long)cfg->sae.d_sae,
                         (long long)cfg->sae.k);
    }
    if (cfg->sae.reproducible && cfg->sae.batch % cfg->sae.micro_shards != 0) {
        where w = where_of(cfg, "sae.micro_shards");
        return cfg_where_err(err, &w, "key 'sae.micro_shards': expected a divisor of sae.batch (%lld) with "
                         "sae.reproducible, got %lld", (long long)cfg->sae.batch, (long long)cfg->sae.micro_shards);
    }
    for (int i = 1; i < cfg->sae.resample.n_at; i++)
        if (cfg->sae.resample.at[i] <= cfg->sae.resample.at[i - 1]) {
            where w = where_of(cfg, "sae.resample.at");
            return cfg_where_err(err, &w, "key 'sae.resample.at': expected increasing steps, got %lld after %lld",
                             (long long)cfg->sae.resample.at[i], (long long)cfg->sae.resample.at[i - 1]);
        }
    if (strncmp(cfg->model.hook, "blocks.", 7) != 0 && strncmp(cfg->model.hook, "hook_", 5) != 0 &&
        strncmp(cfg->model.hook, "ln_final.", 9) != 0) {
        where w = where_of(cfg, "model.hook");
        return cfg_where_err(err, &w, "key 'model.hook': expected a TransformerLens hook name such as blocks.0.mlp.hook_post, got \"%s\"",
                         cfg->model.hook);
    }
    return MS_OK;
}

/* ------------------------------------------------------------------ lifecycle */

void ms_config_free(ms_config *cfg)
{
    if (!cfg) return;
    for (int i = 0; i < N_FIELDS; i++) cfg_field_clear(cfg, &cfg_fields[i]);
    for (int i = 0; i < cfg->n_saes; i++) cfg_entry_free(&cfg->saes[i]);
    free(cfg->saes);
    for (int i = 0; i < cfg->n_ovr; i++) free(cfg->ovr[i]);
    free(cfg->ovr);
    free(cfg->src);
    free(cfg->path);
    free(cfg->marks);
    memset(cfg, 0, sizeof *cfg);
}

ms_status cfg_start(ms_config *cfg, const char *name, ms_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->path = strdup(name ? name : "job");
    cfg->marks = calloc(2 * (size_t)N_FIELDS, sizeof(int32_t));
    if (!cfg->path || !cfg->marks) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int i = 0; i < N_FIELDS; i++) {
        ms_status st = cfg_set_default(cfg, &cfg_fields[i], err);
        if (st) return st;
    }
    return MS_OK;
}

ms_status cfg_finish(ms_config *cfg, ms_err *err)
{
    ms_status st = resolve(cfg, err);
    if (st) return st;
    char *dump = ms_config_dump_string(cfg);
    if (!dump) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    snprintf(cfg->hash, sizeof cfg->hash, "%016llx", (unsigned long long)ms_fnv1a64(dump, strlen(dump), 0));
    free(dump);
    return MS_OK;
}

ms_status ms_config_init_defaults(ms_config *cfg, ms_err *err)
{
    ms_status st = cfg_start(cfg, "defaults", err);
    if (!st) st = cfg_finish(cfg, err);
    if (st) ms_config_free(cfg);
    return st;
}

/* ------------------------------------------------------------------ derived configs */

/* "key='text'" with the text single-quoted for YAML. */
static char *quoted_override(const char *key, const char *v)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    bool ok = cfg_sb_add(&buf, &len, &cap, key) && cfg_sb_add(&buf, &len, &cap, "=") && cfg_sb_scalar(&buf, &len, &cap, v, true);
    if (!ok) free(buf);
    return ok ? buf : NULL;
}

/* The job re-parsed with the base's overrides, then `extra`, then `set` (later wins); the
 * result describes one pipeline: no saes list, no model_b, no model_r. */
static ms_status derive_with(const ms_config *base, char **extra, int n_extra, char *const *set, int n_set,
                             ms_config *out, ms_err *err)
{
    int n = base->n_ovr + n_extra + n_set;
    const char **ov = calloc((size_t)n + 1, sizeof *ov);
    if (!ov) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < base->n_ovr; i++) ov[k++] = base->ovr[i];
    for (int i = 0; i < n_extra; i++) ov[k++] = extra[i];
    for (int i = 0; i < n_set; i++) ov[k++] = set[i];
    ms_status st = cfg_parse(out, base->path, base->src ? base->src : "", base->src ? base->src_len : 0, ov, k,
                                NULL, true, err);
    free(ov);
    if (st) return st;
    for (int i = 0; i < out->n_saes; i++) cfg_entry_free(&out->saes[i]);
    free(out->saes);
    out->saes = NULL;
    out->n_saes = 0;
    out->model_b.seed = 0;
    out->model_r.seed = 0;
    free(out->model_b.dir);
    free(out->model_b.activations);
    free(out->model_r.dir);
    free(out->model_r.activations);
    out->model_b.dir = strdup("");
    out->model_b.activations = strdup("");
    out->model_r.dir = strdup("");
    out->model_r.activations = strdup("");
    if (!out->model_b.dir || !out->model_b.activations || !out->model_r.dir || !out->model_r.activations) {
        ms_config_free(out);
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    /* a derived config is one pipeline's identity (the SAE checkpoint's): keys that only pick
     * stages, pace logs or configure later stages do not change it */
    static const char *const all[] = {"run.", "corpus.", "tokenizer.", "model.", "train_model.", "generate.", "sae.",
                                      NULL};
    static const char *const not_identity[] = {"run.stages", "run.log_every_s", "run.blas_threads", NULL};
    char *keys = ms_config_subset(out, all, not_identity);
    if (!keys) {
        ms_config_free(out);
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    snprintf(out->hash, sizeof out->hash, "%016llx", (unsigned long long)ms_fnv1a64(keys, strlen(keys), 0));
    free(keys);
    return MS_OK;
}

/* Overrides that turn the job into model B's (model 1) or the control R's (model 2) pipeline
 * (appended to ex, *n updated). R is model A's recipe stopped before its first step. */
static bool model_overrides(const ms_config *base, int model, char **ex, int *n)
{
    if (model == 0) return true;
    const bool b = model == 1;
    char seed[48], tdir[4096];
    snprintf(seed, sizeof seed, "train_model.seed=%lld", (long long)(b ? base->model_b.seed : base->model_r.seed));
    snprintf(tdir, sizeof tdir, "%s-%s", base->train_model.dir, b ? "b" : "r");
    const char *dir = b ? base->model_b.dir : base->model_r.dir;
    const char *acts = b ? base->model_b.activations : base->model_r.activations;
    ex[(*n)++] = strdup(seed);
    ex[(*n)++] = quoted_override("model.dir", dir);
    ex[(*n)++] = quoted_override("generate.out", acts);
    ex[(*n)++] = quoted_override("sae.activations", acts);
    ex[(*n)++] = quoted_override("train_model.dir", tdir);
    if (!b) ex[(*n)++] = strdup("train_model.steps=0");
    for (int i = 0; i < *n; i++)
        if (!ex[i]) return false;
    return true;
}

ms_status ms_config_derive_model(const ms_config *base, int model, ms_config *out, ms_err *err)
{
    memset(out, 0, sizeof *out);
    char *ex[8] = {0};
    int n = 0;
    ms_status st = MS_OK;
    if (model < 0 || model > 2)
        st = ms_err_set(err, MS_ERR_USAGE, "%s: no model %d (0 = A, 1 = B, 2 = the control R)", base->path, model);
    else if (model == 1 && base->model_b.seed == 0)
        st = ms_err_set(err, MS_ERR_CONFIG, "%s: the job has no model B (model_b.seed is 0)", base->path);
    else if (model == 2 && base->model_r.seed == 0)
        st = ms_err_set(err, MS_ERR_CONFIG, "%s: the job has no control model R (model_r.seed is 0)", base->path);
    else if (!model_overrides(base, model, ex, &n))
        st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (!st) st = derive_with(base, ex, n, NULL, 0, out, err);
    for (int i = 0; i < 8; i++) free(ex[i]);
    return st;
}

ms_status ms_config_derive_sae(const ms_config *base, int i, ms_config *out, ms_err *err)
{
    memset(out, 0, sizeof *out);
    if (i < 0) return ms_config_derive_model(base, 0, out, err);
    if (i >= base->n_saes) return ms_err_set(err, MS_ERR_USAGE, "%s: no SAE entry %d", base->path, i);
    const ms_sae_entry *e = &base->saes[i];
    char *ex[8] = {0};
    int n = 0;
    ms_status st = MS_OK;
    if (!model_overrides(base, e->model, ex, &n)) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    char dir[64];
    snprintf(dir, sizeof dir, "sae-%s", e->name);
    char *d = ms_path_join(base->run.out_dir, dir);
    if (!st && (!d || !(ex[n++] = quoted_override("sae.out_dir", d)))) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    free(d);
    if (!st) st = derive_with(base, ex, n, e->set, e->n_set, out, err);
    for (int k = 0; k < 8; k++) free(ex[k]);
    return st;
}

/* Every entry must derive into a valid job (relations such as sae.k <= sae.d_sae hold per
 * entry): checked once at parse time, with the entry's position. */
ms_status cfg_check_entries(const ms_config *cfg, ms_err *err)
{
    for (int i = 0; i < cfg->n_saes; i++) {
        ms_config d;
        ms_err e2 = {0};
        ms_status st = ms_config_derive_sae(cfg, i, &d, &e2);
        if (!st) {
            ms_config_free(&d);
            continue;
        }
        const char *msg = e2.msg;
        size_t pl = strlen(cfg->path);
        if (strncmp(msg, cfg->path, pl) == 0 && msg[pl] == ':') msg += pl + 1 + (msg[pl + 1] == ' ');
        where w = {cfg->path, cfg->saes[i].line, cfg->saes[i].col};
        if (st != MS_ERR_CONFIG) return ms_err_set(err, st, "%s", e2.msg);
        return cfg_where_err(err, &w, "saes entry '%s': %s", cfg->saes[i].name, msg);
    }
    return MS_OK;
}
