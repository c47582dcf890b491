/* <out_dir>/summary.json: the study's numbers in one file, gathered from the stages' outputs
 * (eval.json per SAE, analyze's features-vs-neurons medians, compare/, training logs). A number
 * whose producer has not run is null with a reason, never guessed. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "run_state.h"

static cJSON *read_json(const char *dir, const char *name)
{
    char *p = ms_path_join(dir, name), *text = NULL;
    cJSON *j = NULL;
    if (p && ms_file_read_all(p, &text, NULL, NULL) == MS_OK) j = cJSON_Parse(text);
    free(text);
    free(p);
    return j;
}

/* A number named key in j or in one of its objects one level down (eval.json's layout is the
 * eval stage's; both flat and grouped layouts are read). */
/* The number at `key` in j: "a.b" is member b of object a (eval.json nests its sections:
 * docs/eval.md), a plain key a top-level member. */
static const cJSON *find_number(const cJSON *j, const char *key)
{
    char head[64];
    const char *dot = strchr(key, '.');
    if (dot && (size_t)(dot - key) < sizeof head) {
        memcpy(head, key, (size_t)(dot - key));
        head[dot - key] = '\0';
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, head);
        return cJSON_IsObject(o) ? find_number(o, dot + 1) : NULL;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v : NULL;
}

/* Copies the numbers `keys` from src (may be NULL) into dst; missing ones are null and
 * listed under "missing" with `reason`. */
static void copy_numbers(cJSON *dst, const cJSON *src, const char *const *keys, const char *reason)
{
    cJSON *missing = NULL;
    for (int i = 0; keys[i]; i++) {
        /* "name=path": the summary's name for the number at path (find_number) */
        const char *eq = strchr(keys[i], '=');
        char name[64];
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - keys[i]) : (int)strlen(keys[i]), keys[i]);
        const cJSON *v = src ? find_number(src, eq ? eq + 1 : keys[i]) : NULL;
        if (v) {
            cJSON_AddNumberToObject(dst, name, v->valuedouble);
        } else {
            cJSON_AddNullToObject(dst, name);
            if (!missing) missing = cJSON_CreateArray();
            cJSON_AddItemToArray(missing, cJSON_CreateString(name));
        }
    }
    if (missing) {
        cJSON_AddItemToObject(dst, "null_fields", missing);
        cJSON_AddStringToObject(dst, "null_reason", reason);
    }
}

/* The last JSON line of a .jsonl file whose "split" (if any) is `split` (NULL: any). */
static cJSON *last_jsonl(const char *path, const char *split)
{
    char *text = NULL;
    if (ms_file_read_all(path, &text, NULL, NULL) != MS_OK) return NULL;
    cJSON *best = NULL;
    for (char *l = text, *nl; l && *l; l = nl ? nl + 1 : NULL) {
        nl = strchr(l, '\n');
        if (nl) *nl = '\0';
        cJSON *j = cJSON_Parse(l);
        if (!j) continue;
        const cJSON *s = cJSON_GetObjectItem(j, "split");
        if (split && (!cJSON_IsString(s) || strcmp(s->valuestring, split) != 0)) {
            cJSON_Delete(j);
            continue;
        }
        cJSON_Delete(best);
        best = j;
    }
    free(text);
    return best;
}

static cJSON *sae_entry(const app_job_sae *s)
{
    /* eval.json's layout: docs/eval.md */
    static const char *const eval_keys[] = {"l0=reconstruction.l0", "fvu=reconstruction.fvu",
                                            "mse=reconstruction.mse", "loss_recovered=loss.recovered",
                                            "kl=loss.kl", "dead=features.dead", "ultralow=features.ultralow",
                                            "rare=features.rare", "rare_density=features.rare_density", NULL};
    static const char *const train_keys[] = {"step", "l0", "fvu", "mse", "dead", "ultralow", "rare", "final_rows",
                                             "final_dead", "final_ultralow", "final_rare", NULL};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", s->name);
    cJSON_AddStringToObject(o, "model", app_job_model_name(s->model));
    cJSON_AddNumberToObject(o, "d_sae", (double)s->d_sae);
    cJSON_AddStringToObject(o, "dir", s->dir);
    cJSON *ev = read_json(s->dir, "eval.json");
    char reason[512];
    snprintf(reason, sizeof reason, "%s/eval.json is missing or lacks these: run `monosem eval`", s->dir);
    copy_numbers(o, ev, eval_keys, reason);
    cJSON_Delete(ev);
    /* training-time values: the last metrics line, on training batches (not held-out) */
    char *mp = ms_path_join(s->dir, "metrics.jsonl");
    cJSON *m = mp ? last_jsonl(mp, NULL) : NULL;
    free(mp);
    cJSON *t = cJSON_AddObjectToObject(o, "training_time");
    cJSON_AddStringToObject(t, "note", "last metrics.jsonl line: training batches, not held-out data; dead/ultralow/"
                                       "rare by the trainer's window (weights still moving), final_* by the final "
                                       "weights on the activation file's first final_rows rows, counted as eval counts");
    copy_numbers(t, m, train_keys, "no metrics.jsonl (SAE not trained)");
    cJSON_Delete(m);
    return o;
}

static cJSON *model_entry(const ms_config *cfg, int model, const app_job_sae *saes, int n)
{
    static const char *const loss_keys[] = {"loss_clean=loss.clean", "loss_zero=loss.zero", NULL};
    ms_config mc;
    ms_err e = {0};
    cJSON *o = cJSON_CreateObject();
    if (ms_config_derive_model(cfg, model, &mc, &e) != MS_OK) return o;
    cJSON_AddStringToObject(o, "dir", mc.model.dir);
    cJSON_AddNumberToObject(o, "seed", (double)(mc.train_model.seed ? mc.train_model.seed : mc.run.seed));
    /* loss_clean / loss_zero: measured by eval, the same for every SAE of the model */
    cJSON *ev = NULL;
    for (int i = 0; i < n && !ev; i++)
        if (saes[i].model == model) ev = read_json(saes[i].dir, "eval.json");
    char reason[256];
    snprintf(reason, sizeof reason, "no eval.json for an SAE of model %s: run `monosem eval`", app_job_model_name(model));
    copy_numbers(o, ev, loss_keys, reason);
    cJSON_Delete(ev);
    char *lp = ms_path_join(mc.train_model.dir, "log.jsonl");
    cJSON *h = lp ? last_jsonl(lp, "heldout") : NULL;
    free(lp);
    const cJSON *hl = h ? cJSON_GetObjectItem(h, "loss") : NULL, *ul = h ? cJSON_GetObjectItem(h, "unigram_loss") : NULL;
    if (cJSON_IsNumber(hl)) cJSON_AddNumberToObject(o, "train_model_heldout_loss", hl->valuedouble);
    if (cJSON_IsNumber(ul)) cJSON_AddNumberToObject(o, "unigram_loss", ul->valuedouble);
    cJSON_Delete(h);
    ms_config_free(&mc);
    return o;
}

/* splitting.json without the per-feature arrays: medians, histograms, families' sizes. */
static void strip_arrays(cJSON *j)
{
    static const char *const big[] = {"a_max", "a_arg", "b_max", "b_arg", "member_of", "size", NULL};
    cJSON *c;
    cJSON_ArrayForEach(c, j)
    {
        if (cJSON_IsObject(c) || cJSON_IsArray(c)) strip_arrays(c);
    }
    if (!cJSON_IsObject(j)) return;
    for (int i = 0; big[i]; i++)
        if (cJSON_IsArray(cJSON_GetObjectItem(j, big[i]))) cJSON_DeleteItemFromObject(j, big[i]);
}

/* A numeric string attribute of an HDF5 file's root (analyze writes its medians so), or NAN. */
static double h5_attr_number(ms_h5id f, const char *name)
{
    double v = NAN;
    int64_t np = 0;
    ms_h5_kind k = ms_h5_attr_info(f, name, &np, NULL);
    if (k == MS_H5_STRING) {
        char buf[128] = "", *s = ms_h5_attr_read_str(f, name);
        if (s) snprintf(buf, sizeof buf, "%s", s);
        free(s);
        char *end;
        double d = strtod(buf, &end);
        if (end != buf) v = d;
    } else if (k == MS_H5_FLOAT && np == 1) {
        ms_h5_attr_read_f64(f, name, &v);
    }
    return v;
}

/* The analyze stage's medians of one analysis file (docs/analysis.md), or NULL if absent. */
static cJSON *analysis_medians(const char *path)
{
    /* headline: over every alive unit; beside it the same outside the ultralow cluster (if any) */
    static const char *const keys[] = {"median_all_top_token_share", "median_all_eff_tokens",
                                       "median_all_logit_agreement", "median_top_token_share", "median_eff_tokens",
                                       "median_logit_agreement", "ultralow_cut", "dead", NULL};
    if (!ms_path_exists(path)) return NULL;
    cJSON *o = NULL;
    ms_h5id f = ms_h5_file_open(path); /* a file that is not HDF5 reads as absent, silently */
    if (f >= 0) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", path);
        for (int i = 0; keys[i]; i++) {
            double v = h5_attr_number(f, keys[i]);
            if (isfinite(v))
                cJSON_AddNumberToObject(o, keys[i], v);
            else
                cJSON_AddNullToObject(o, keys[i]);
        }
        ms_h5_file_close(f);
    }
    return o;
}

/* Features vs neurons: the analyze stage's measure medians per SAE and for the neurons of model
 * A (and of the control R),
 * from the analysis.h5 files where analyze writes them (app_job_analysis_path) by
 * default; read when present. */
static cJSON *features_vs_neurons(const ms_config *cfg, const app_job_sae *saes, int n)
{
    cJSON *o = cJSON_CreateObject();
    bool any = false;
    for (int m = 0; m < MS_JOB_MAX_MODELS; m++) {
        if (!app_job_analyzes_model(cfg, m)) continue;
        char *np = app_job_neurons_analysis_path(cfg, m);
        cJSON *nm = np ? analysis_medians(np) : NULL;
        free(np);
        any = any || nm;
        if (nm)
            cJSON_AddItemToObject(o, app_job_neurons_name(m), nm);
        else
            cJSON_AddNullToObject(o, app_job_neurons_name(m));
    }
    for (int i = 0; i < n; i++) {
        char *p = app_job_analysis_path(cfg, saes[i].name, saes[i].dir);
        cJSON *m = p ? analysis_medians(p) : NULL;
        free(p);
        any = any || m;
        if (m)
            cJSON_AddItemToObject(o, saes[i].name, m);
        else
            cJSON_AddNullToObject(o, saes[i].name);
    }
    if (!any)
        cJSON_AddStringToObject(o, "null_reason", "no analysis.h5 (<sae dir>/analysis.h5, <out_dir>/neurons/analysis.h5): "
                                                  "the analyze stage has not run (not built in this monosem)");
    return o;
}

ms_status app_run_summary_write(const ms_config *cfg, const app_unit_outcome *outcomes, int n_outcomes, double seconds,
                               ms_err *err)
{
    app_job_sae *saes = NULL;
    int n = 0;
    ms_status st = app_job_saes(cfg, &saes, &n, err);
    if (st) return st;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "job", cfg->path);
    cJSON_AddStringToObject(root, "name", cfg->run.name);
    cJSON_AddStringToObject(root, "config_hash", cfg->hash);
    cJSON_AddStringToObject(root, "version", MS_VERSION_STRING);
    cJSON *models = cJSON_AddObjectToObject(root, "models");
    for (int m = 0; m < MS_JOB_MAX_MODELS; m++)
        if (app_job_has_model(cfg, m)) cJSON_AddItemToObject(models, app_job_model_name(m), model_entry(cfg, m, saes, n));
    cJSON *arr = cJSON_AddArrayToObject(root, "saes");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(arr, sae_entry(&saes[i]));
    cJSON_AddItemToObject(root, "features_vs_neurons", features_vs_neurons(cfg, saes, n));

    char *cdir = ms_path_join(cfg->run.out_dir, "compare");
    cJSON *split = cdir ? read_json(cdir, "splitting.json") : NULL, *univ = cdir ? read_json(cdir, "universality.json") : NULL;
    if (split) {
        strip_arrays(split);
        cJSON_AddItemToObject(root, "splitting", split);
    } else {
        cJSON *s = cJSON_AddObjectToObject(root, "splitting");
        cJSON_AddStringToObject(s, "null_reason", "no compare/splitting.json: the compare stage has not run");
    }
    if (univ) {
        strip_arrays(univ);
        cJSON_AddItemToObject(root, "universality", univ);
    } else {
        cJSON *u = cJSON_AddObjectToObject(root, "universality");
        cJSON_AddNullToObject(u, "features_median");
        cJSON_AddNullToObject(u, "neurons_median");
        cJSON_AddStringToObject(u, "null_reason", "no compare/universality.json: the compare stage has not run");
    }
    free(cdir);

    cJSON *paper = cJSON_AddObjectToObject(root, "paper");
    cJSON_AddStringToObject(paper, "source", "Bricken et al. 2023, Towards Monosemanticity (A/1 = 4096 features)");
    cJSON_AddNumberToObject(paper, "loss_recovered_A1", 0.79);
    cJSON_AddNumberToObject(paper, "loss_recovered_A5", 0.945);
    cJSON_AddNumberToObject(paper, "dead_A1", 168);
    cJSON_AddNumberToObject(paper, "ultralow_A1", 292);
    cJSON_AddNumberToObject(paper, "universality_features_median", 0.72);
    cJSON_AddNumberToObject(paper, "universality_neurons_median", 0.46);
    cJSON_AddNumberToObject(paper, "interpretability_median_feature", 12);
    cJSON_AddNumberToObject(paper, "interpretability_median_neuron", 0);

    cJSON *stages = cJSON_AddArrayToObject(root, "stages");
    for (int i = 0; i < n_outcomes; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "unit", outcomes[i].unit);
        cJSON_AddStringToObject(o, "status", outcomes[i].status);
        cJSON_AddNumberToObject(o, "seconds", round(outcomes[i].seconds * 10) / 10);
        if (outcomes[i].note[0]) cJSON_AddStringToObject(o, "note", outcomes[i].note);
        cJSON_AddItemToArray(stages, o);
    }
    cJSON_AddNumberToObject(root, "seconds", round(seconds * 10) / 10);
    char *dash = ms_path_join(cfg->run.out_dir, "report/index.html");
    cJSON_AddStringToObject(root, "dashboard", dash ? dash : "");
    cJSON_AddBoolToObject(root, "dashboard_written", dash && ms_path_exists(dash));
    free(dash);

    char *text = cJSON_Print(root);
    char *path = ms_path_join(cfg->run.out_dir, "summary.json");
    if (!text || !path)
        st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    else
        st = ms_file_write_atomic(path, text, strlen(text), err);
    cJSON_free(text);
    free(path);
    cJSON_Delete(root);
    app_job_saes_free(saes, n);
    return st;
}
