/* `monosem eval`'s outputs (rank 0): eval.json, eval_density.h5 and SAELens's sparsity for one
 * SAE, from the derived numbers (eval_metrics.c; densities by libunits/density.c). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"

static ms_status oom(ms_err *err, const char *what)
{
    return ms_err_set(err, MS_ERR_NOMEM, "eval: out of memory for %s (lower eval.batch)", what);
}

static cJSON *density_json(const ms_density *d, double ultralow, double rare)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", (double)d->n_units);
    cJSON_AddNumberToObject(o, "dead", (double)d->dead);
    cJSON_AddNumberToObject(o, "ultralow", (double)d->ultralow);
    cJSON_AddNumberToObject(o, "dense", (double)d->dense);
    cJSON_AddNumberToObject(o, "ultralow_density", ultralow);
    cJSON_AddNumberToObject(o, "min_detectable_density", d->min_detectable);
    cJSON_AddBoolToObject(o, "ultralow_detectable", d->min_detectable < ultralow);
    cJSON_AddNumberToObject(o, "rare", (double)d->rare);
    cJSON_AddNumberToObject(o, "rare_density", rare);
    cJSON_AddBoolToObject(o, "rare_detectable", d->min_detectable < rare);
    cJSON *h = cJSON_AddObjectToObject(o, "log10_density_histogram");
    cJSON_AddNumberToObject(h, "lo", MS_DENSITY_HIST_LO);
    cJSON_AddNumberToObject(h, "step", MS_DENSITY_HIST_STEP);
    cJSON *c = cJSON_AddArrayToObject(h, "counts");
    for (int b = 0; b < MS_DENSITY_HIST_BINS; b++)
        cJSON_AddItemToArray(c, cJSON_CreateNumber((double)d->hist[b]));
    return o;
}

/* Per-unit densities: <sae dir>/eval_density.h5 (counts exact) and SAELens's sparsity. */
static ms_status write_densities(const evaluator *e, const eval_sae *s, const char *hn, double N, ms_err *err)
{
    const ms_config *cfg = e->cfg;
    const double *acc = s->splice.acc;
    const eval_hook *h = &e->hooks[s->hook];
    const int64_t m = s->sae.hp.d_sae, d = s->sae.hp.d_in;
    int64_t *ffire = malloc((size_t)(m + d) * sizeof *ffire);
    float *fd = malloc((size_t)(2 * m + 2 * d) * sizeof *fd);
    if (!ffire || !fd) {
        free(ffire), free(fd);
        return oom(err, "the densities");
    }
    int64_t *nfire = ffire + m;
    float *flog = fd + m, *nd = fd + 2 * m, *nlog = nd + d;
    for (int64_t j = 0; j < m; j++) {
        ffire[j] = (int64_t)acc[EVAL_SAE_FIXED + j];
        fd[j] = (float)(acc[EVAL_SAE_FIXED + j] / N);
        flog[j] = (float)log10(acc[EVAL_SAE_FIXED + j] / N + 1e-10);
    }
    for (int64_t i = 0; i < d; i++) {
        nfire[i] = (int64_t)h->acc[EVAL_HOOK_FIXED + i];
        nd[i] = (float)(h->acc[EVAL_HOOK_FIXED + i] / N);
        nlog[i] = (float)log10(h->acc[EVAL_HOOK_FIXED + i] / N + 1e-10);
    }
    char ntok[32];
    snprintf(ntok, sizeof ntok, "%.0f", N);
    ms_safetensors_item items[] = {
        {"feature_fires", MS_SAFETENSORS_I64, 1, {m}, ffire},
        {"feature_density", MS_SAFETENSORS_F32, 1, {m}, fd},
        {"feature_log10_density", MS_SAFETENSORS_F32, 1, {m}, flog},
        {"neuron_fires", MS_SAFETENSORS_I64, 1, {d}, nfire},
        {"neuron_density", MS_SAFETENSORS_F32, 1, {d}, nd},
        {"neuron_log10_density", MS_SAFETENSORS_F32, 1, {d}, nlog},
    };
    const char *attrs[] = {"tokens", ntok, "hook", hn, "sae", s->lens_dir, "rule", EVAL_RULE,
                           "fires", "feature: f != 0; neuron: activation > 0",
                           "log10_density", "log10(density + 1e-10)",
                           "config_hash", cfg->hash, "version", MS_VERSION_STRING};
    char *h5 = ms_path_join(s->job->dir, "eval_density.h5");
    ms_status st = h5 ? ms_h5_write_tensors(h5, items, 6, attrs, 8, err) : oom(err, "a path");
    char src[160];
    snprintf(src, sizeof src, "monosem eval on %.0f held-out tokens", N);
    if (!st) st = ms_saelens_write_sparsity(s->lens_dir, flog, m, src, err);
    free(ffire), free(fd);
    free(h5);
    return st;
}

ms_status app_eval_write(const evaluator *e, const eval_sae *s, const app_eval_result *r, double seconds,
                         ms_err *err)
{
    const ms_config *cfg = e->cfg;
    const eval_hook *h = &e->hooks[s->hook];
    const int64_t m = s->sae.hp.d_sae, d = s->sae.hp.d_in;
    char hn[96];
    ms_hook_name(h->hook, hn, sizeof hn);
    const double N = r->tokens;
    ms_status st = write_densities(e, s, hn, N, err);

    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "sae", s->job->name);
    cJSON_AddStringToObject(j, "dir", s->job->dir);
    cJSON_AddStringToObject(j, "saelens_dir", s->lens_dir);
    cJSON_AddStringToObject(j, "architecture", s->info.architecture);
    cJSON_AddStringToObject(j, "monosem_arch", s->info.monosem_arch);
    if (!strcmp(s->info.architecture, "topk")) cJSON_AddNumberToObject(j, "k", (double)s->info.k);
    cJSON_AddStringToObject(j, "hook", hn);
    cJSON_AddNumberToObject(j, "d_in", (double)d);
    cJSON_AddNumberToObject(j, "d_sae", (double)m);
    cJSON_AddStringToObject(j, "model_dir", s->job->model_dir);
    cJSON *ho = cJSON_AddObjectToObject(j, "heldout");
    cJSON_AddStringToObject(ho, "token_dir", cfg->corpus.token_dir);
    cJSON_AddStringToObject(ho, "split", "heldout");
    cJSON_AddNumberToObject(ho, "split_tokens", (double)e->ts.count);
    cJSON_AddNumberToObject(ho, "context", e->T);
    cJSON_AddNumberToObject(ho, "n_contexts", (double)e->n_ctx);
    cJSON_AddNumberToObject(ho, "first_token", 0);
    cJSON_AddNumberToObject(ho, "end_token", (double)(e->n_ctx * e->T + 1));
    cJSON_AddNumberToObject(ho, "predicted_per_context", e->T);
    cJSON_AddNumberToObject(ho, "tokens", N);
    cJSON_AddStringToObject(ho, "rule", EVAL_RULE);
    cJSON *lo = cJSON_AddObjectToObject(j, "loss");
    cJSON_AddNumberToObject(lo, "clean", r->loss_clean);
    cJSON_AddNumberToObject(lo, "sae", r->loss_sae);
    cJSON_AddNumberToObject(lo, "zero", r->loss_zero);
    cJSON_AddNumberToObject(lo, "recovered", r->loss_recovered);
    cJSON_AddNumberToObject(lo, "kl", r->kl);
    cJSON_AddNumberToObject(lo, "kl_zero", r->kl_zero);
    cJSON *re = cJSON_AddObjectToObject(j, "reconstruction");
    cJSON_AddNumberToObject(re, "mse", r->mse);
    cJSON_AddNumberToObject(re, "fvu", r->fvu);
    cJSON_AddNumberToObject(re, "explained_variance", 1.0 - r->fvu);
    cJSON_AddNumberToObject(re, "cos", r->cos);
    cJSON_AddNumberToObject(re, "l2_ratio", r->l2_ratio);
    cJSON_AddNumberToObject(re, "l0", r->l0);
    cJSON_AddNumberToObject(re, "l1", r->l1);
    cJSON *fe = density_json(&r->features, cfg->sae.ultralow_density, cfg->sae.rare_density);
    cJSON_AddStringToObject(fe, "densities", "eval_density.h5");
    cJSON_AddItemToObject(j, "features", fe);
    cJSON *ne = density_json(&r->neurons, cfg->sae.ultralow_density, cfg->sae.rare_density);
    cJSON_AddNumberToObject(ne, "l0", r->neuron_l0);
    cJSON_AddItemToObject(j, "neurons", ne);
    cJSON *df = cJSON_AddObjectToObject(j, "definitions");
    cJSON_AddStringToObject(df, "loss", "mean next-token cross-entropy over the predicted tokens, nats");
    cJSON_AddStringToObject(df, "recovered", "(zero - sae) / (zero - clean)");
    cJSON_AddStringToObject(df, "kl", "mean over predicted tokens of KL(clean || spliced), nats");
    cJSON_AddStringToObject(df, "mse", "sum ||xhat - x||^2 / (tokens * d_in)");
    cJSON_AddStringToObject(df, "fvu", "sum ||xhat - x||^2 / sum ||x - mean(x)||^2 (mean over the eval tokens); explained_variance = 1 - fvu");
    cJSON_AddStringToObject(df, "cos", "mean over tokens with x != 0 and xhat != 0 of cos(x, xhat)");
    cJSON_AddStringToObject(df, "l2_ratio", "mean over tokens with x != 0 of ||xhat|| / ||x||");
    cJSON_AddStringToObject(df, "l0", "mean number of features with f != 0 per token");
    cJSON_AddStringToObject(df, "density", "fraction of eval tokens on which a feature fires (f != 0) / a neuron is > 0; dead: never; ultralow: alive and below ultralow_density; rare: alive and below rare_density (the cut these tokens resolve when ultralow's is not); dense: above 0.01");
    cJSON *run = cJSON_AddObjectToObject(j, "run");
    cJSON_AddNumberToObject(run, "ranks", e->comm->size);
    cJSON_AddNumberToObject(run, "seconds", seconds);
    cJSON_AddNumberToObject(run, "tokens_per_s", seconds > 0 ? N / seconds : 0);
    cJSON_AddStringToObject(run, "config_hash", cfg->hash);
    cJSON_AddStringToObject(run, "version", MS_VERSION_STRING);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    char *jp = ms_path_join(s->job->dir, "eval.json");
    if (!st && (!text || !jp)) st = oom(err, "eval.json");
    if (!st) {
        size_t n = strlen(text);
        text[n] = '\n'; /* cJSON_Print leaves no final newline: replace the NUL... */
        st = ms_file_write_atomic(jp, text, n + 1, err);
        text[n] = '\0';
    }
    free(text);
    free(jp);
    return st;
}

