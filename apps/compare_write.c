/* `monosem compare`'s outputs (rank 0): splitting.json, universality.json and splitting.h5 from
 * the pairs' best matches, summarised by libunits (universality.c, splitting.c). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"

static cJSON *hist_json(const ms_best_summary *s)
{
    cJSON *o = cJSON_CreateObject(), *a = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "lo", s->lo);
    cJSON_AddNumberToObject(o, "hi", s->hi);
    for (int b = 0; b < MS_BEST_BINS; b++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)s->hist[b]));
    cJSON_AddItemToObject(o, "counts", a);
    return o;
}

static void add_num_or_null(cJSON *o, const char *k, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static cJSON *f32_array(const float *x, int64_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++) {
        /* 4 decimals keep the JSON small; the HDF5 file has the floats */
        if (isfinite(x[i]))
            cJSON_AddItemToArray(a, cJSON_CreateNumber(round((double)x[i] * 1e4) / 1e4));
        else
            cJSON_AddItemToArray(a, cJSON_CreateNull());
    }
    return a;
}

static cJSON *i64_array(const int64_t *x, int64_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)x[i]));
    return a;
}

/* {median, mean, n (finite), histogram} of a best-match summary. */
static cJSON *dist_json(const ms_best_summary *s)
{
    cJSON *o = cJSON_CreateObject();
    add_num_or_null(o, "median", s->median);
    add_num_or_null(o, "mean", s->mean);
    cJSON_AddNumberToObject(o, "n", (double)s->n);
    cJSON_AddNumberToObject(o, "n_undefined", (double)s->n_undefined);
    cJSON_AddItemToObject(o, "histogram", hist_json(s));
    return o;
}

static cJSON *best_json(const float *x, int64_t n, float *scratch, ms_best_summary *s)
{
    ms_best_summarize(s, x, n, scratch);
    return dist_json(s);
}

static ms_status write_json(cJSON *root, const char *path, ms_err *err)
{
    char *text = cJSON_Print(root);
    if (!text) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    size_t n = strlen(text);
    text[n] = '\n'; /* cJSON's buffer has the NUL there: replace it, write n+1 */
    ms_status st = ms_file_write_atomic(path, text, n + 1, err);
    cJSON_free(text);
    return st;
}

/* What write_outputs builds: the two JSON documents, their parts, and splitting.h5's items. */
typedef struct outs {
    cJSON *split, *univ, *spairs, *ufeat, *ctrl, *cfeat;
    ms_safetensors_item *items;
    char (*names)[192];
    int n_items;
    float *scratch;
    int64_t *size, *member;
    int64_t fam_total;
} outs;

static void add_item(outs *o, const cmp *c, const pair *p, const char *nm, ms_safetensors_dtype dt, int64_t n0,
                     const void *ptr)
{
    snprintf(o->names[o->n_items], sizeof o->names[o->n_items], "%.63s__%.63s__%.40s", src_name(c, p->a),
             src_name(c, p->b), nm);
    o->items[o->n_items] = (ms_safetensors_item){.name = o->names[o->n_items], .dtype = dt, .ndim = 1, .shape = {n0}, .data = ptr};
    o->n_items++;
}

/* The documents' fixed parts: definitions, the paper's numbers, the control's section. */
static void outs_headers(outs *o, const cmp *c)
{
    const ms_config *cfg = c->cfg;
    o->split = cJSON_CreateObject(), o->univ = cJSON_CreateObject();
    o->spairs = cJSON_AddArrayToObject(o->split, "pairs"), o->ufeat = cJSON_AddArrayToObject(o->univ, "features");
    const double tokens = (double)(c->n_ctx * c->T);
    cJSON_AddNumberToObject(o->split, "tokens", tokens);
    cJSON_AddNumberToObject(o->split, "family_min", cfg->compare.family_min);
    cJSON_AddStringToObject(o->split, "definition",
                            "for each feature, its best match in the other SAE by decoder cosine and by Pearson "
                            "correlation of activations over the same tokens; a family is a small-SAE feature with "
                            "the large-SAE features whose best decoder-cosine match it is (cosine >= family_min)");
    cJSON_AddNumberToObject(o->univ, "tokens", tokens);
    cJSON_AddStringToObject(o->univ, "definition",
                            "for each unit of model A, the maximum Pearson correlation of its activations with any "
                            "unit of model B over the same tokens; units that never vary are undefined (null)");
    cJSON *paper = cJSON_AddObjectToObject(o->univ, "paper");
    cJSON_AddNumberToObject(paper, "features_median", 0.72);
    cJSON_AddNumberToObject(paper, "neurons_median", 0.46);
    cJSON_AddNullToObject(o->univ, "neurons");
    if (c->have_m[2]) {
        o->ctrl = cJSON_AddObjectToObject(o->univ, "control");
        cJSON_AddStringToObject(o->ctrl, "model", "R");
        cJSON_AddStringToObject(o->ctrl, "reference", app_job_model_name(c->ref));
        cJSON_AddStringToObject(o->ctrl, "definition",
                                "the same measure between the untrained control model R (model A's shape, randomly "
                                "initialised) and the trained reference model: features of R's SAE against the "
                                "reference's SAE of the same size, R's neurons against the reference's");
        o->cfeat = cJSON_AddArrayToObject(o->ctrl, "features");
        cJSON_AddNullToObject(o->ctrl, "neurons");
    }
}

/* A splitting pair: decoder-cosine matches and the families they form. */
static void split_pair(outs *o, const cmp *c, pair *p, cJSON *po, cJSON *act)
{
    ms_best_summary s;
    cJSON_AddStringToObject(po, "model", app_job_model_name(src_model(c, p->a)));
    cJSON *dec = cJSON_AddObjectToObject(po, "decoder_cos");
    cJSON_AddItemToObject(dec, "a_best", best_json(p->drow_max, p->da, o->scratch, &s));
    cJSON_AddItemToObject(dec, "b_best", best_json(p->dcol_max, p->db, o->scratch, &s));
    cJSON_AddItemToObject(dec, "a_max", f32_array(p->drow_max, p->da));
    cJSON_AddItemToObject(dec, "a_arg", i64_array(p->drow_arg, p->da));
    cJSON_AddItemToObject(dec, "b_max", f32_array(p->dcol_max, p->db));
    cJSON_AddItemToObject(dec, "b_arg", i64_array(p->dcol_arg, p->db));
    cJSON_AddItemToObject(act, "b_max", f32_array(p->col_max, p->db));
    cJSON_AddItemToObject(act, "b_arg", i64_array(p->col_arg, p->db));
    ms_families(o->member, o->size, p->dcol_max, p->dcol_arg, p->db, p->da, (float)c->cfg->compare.family_min);
    ms_family_stats fs;
    ms_family_stats_of(&fs, o->size, p->da, p->db);
    o->fam_total += fs.n;
    cJSON *fam = cJSON_AddObjectToObject(po, "families");
    cJSON_AddNumberToObject(fam, "n", (double)fs.n);
    cJSON_AddNumberToObject(fam, "n_split", (double)fs.n_split);
    cJSON_AddNumberToObject(fam, "mean_size", fs.mean_size);
    cJSON_AddNumberToObject(fam, "largest", (double)fs.largest);
    cJSON_AddNumberToObject(fam, "b_unassigned", (double)fs.b_unassigned);
    cJSON_AddItemToObject(fam, "member_of", i64_array(o->member, p->db));
    cJSON_AddItemToObject(fam, "size", i64_array(o->size, p->da));
    /* the HDF5 items must outlive this loop: the pair keeps its families */
    p->fam_member = malloc((size_t)p->db * sizeof *p->fam_member);
    p->fam_size = malloc((size_t)p->da * sizeof *p->fam_size);
    if (p->fam_member && p->fam_size) {
        memcpy(p->fam_member, o->member, (size_t)p->db * sizeof *o->member);
        memcpy(p->fam_size, o->size, (size_t)p->da * sizeof *o->size);
        add_item(o, c, p, "family_member", MS_SAFETENSORS_I64, p->db, p->fam_member);
        add_item(o, c, p, "family_size", MS_SAFETENSORS_I64, p->da, p->fam_size);
    }
    add_item(o, c, p, "cos_a_max", MS_SAFETENSORS_F32, p->da, p->drow_max);
    add_item(o, c, p, "cos_a_arg", MS_SAFETENSORS_I64, p->da, p->drow_arg);
    add_item(o, c, p, "cos_b_max", MS_SAFETENSORS_F32, p->db, p->dcol_max);
    add_item(o, c, p, "cos_b_arg", MS_SAFETENSORS_I64, p->db, p->dcol_arg);
    cJSON_AddItemToArray(o->spairs, po);
}

/* One pair's entry: the activation-correlation matches, then its kind's part. */
static void pair_out(outs *o, const cmp *c, pair *p)
{
    cJSON *po = cJSON_CreateObject();
    cJSON_AddStringToObject(po, "a", src_name(c, p->a));
    cJSON_AddStringToObject(po, "b", src_name(c, p->b));
    cJSON_AddNumberToObject(po, "d_a", (double)p->da);
    cJSON_AddNumberToObject(po, "d_b", (double)p->db);
    cJSON *act = cJSON_AddObjectToObject(po, "activation_corr");
    ms_best_summary a_best, b_best; /* a_best.median over model A's units: the universality number */
    cJSON_AddItemToObject(act, "a_best", best_json(p->row_max, p->da, o->scratch, &a_best));
    cJSON_AddItemToObject(act, "b_best", best_json(p->col_max, p->db, o->scratch, &b_best));
    cJSON_AddItemToObject(act, "a_max", f32_array(p->row_max, p->da));
    cJSON_AddItemToObject(act, "a_arg", i64_array(p->row_arg, p->da));
    add_item(o, c, p, "corr_a_max", MS_SAFETENSORS_F32, p->da, p->row_max);
    add_item(o, c, p, "corr_a_arg", MS_SAFETENSORS_I64, p->da, p->row_arg);
    add_item(o, c, p, "corr_b_max", MS_SAFETENSORS_F32, p->db, p->col_max);
    add_item(o, c, p, "corr_b_arg", MS_SAFETENSORS_I64, p->db, p->col_arg);
    if (p->kind == PAIR_SPLIT) {
        split_pair(o, c, p, po, act);
        return;
    }
    cJSON *u = p->control ? o->ctrl : o->univ;
    if (p->a < 0) {
        cJSON_DeleteItemFromObject(u, "neurons");
        cJSON_AddItemToObject(u, "neurons", po);
        add_num_or_null(u, "neurons_median", a_best.median);
    } else {
        cJSON_AddItemToArray(p->control ? o->cfeat : o->ufeat, po);
        if (!cJSON_GetObjectItem(u, "features_median")) add_num_or_null(u, "features_median", a_best.median);
    }
}

/* The documents' closing parts: nulls and the reasons for what was not compared. */
static void outs_reasons(outs *o, const cmp *c, double seconds)
{
    cJSON *univ = o->univ, *ctrl = o->ctrl;
    if (!cJSON_GetObjectItem(univ, "features_median")) cJSON_AddNullToObject(univ, "features_median");
    if (!cJSON_GetObjectItem(univ, "neurons_median")) cJSON_AddNullToObject(univ, "neurons_median");
    if (ctrl && !cJSON_GetObjectItem(ctrl, "features_median")) {
        cJSON_AddNullToObject(ctrl, "features_median");
        cJSON_AddStringToObject(ctrl, "reason", "no model-R SAE has the size of a reference-model SAE: features not "
                                                "compared");
    }
    if (!c->have_m[1])
        cJSON_AddStringToObject(univ, "reason", "the job has no model B (set model_b.seed and a saes entry with model: B)");
    else if (cJSON_GetArraySize(o->ufeat) == 0)
        cJSON_AddStringToObject(univ, "reason", "no model-B SAE has the size of a model-A SAE: features not compared");
    if (cJSON_GetArraySize(o->spairs) == 0)
        cJSON_AddStringToObject(o->split, "reason", "no two SAEs of different sizes on one model");
    cJSON_AddNumberToObject(o->split, "seconds", seconds);
    cJSON_AddNumberToObject(univ, "seconds", seconds);
}

static double num_or_nan(const cJSON *v) { return cJSON_IsNumber(v) ? v->valuedouble : NAN; }

/* The log lines and run-record facts of the written outputs. */
static void outs_log(const outs *o, cmp *c, const char *dir, double tokens)
{
    double fm = num_or_nan(cJSON_GetObjectItem(o->univ, "features_median"));
    double nm = num_or_nan(cJSON_GetObjectItem(o->univ, "neurons_median"));
    ms_log("compare: %d splitting pair(s), %lld families; universality median max-corr: features %.3f, neurons %.3f "
           "(paper 0.72, 0.46) over %.0f tokens -> %s", cJSON_GetArraySize(o->spairs), (long long)o->fam_total, fm, nm,
           tokens, dir);
    ms_runrec_fact(&c->app->rec, "compare.universality_features_median", "%.4f", fm);
    ms_runrec_fact(&c->app->rec, "compare.universality_neurons_median", "%.4f", nm);
    if (o->ctrl) {
        double cfm = num_or_nan(cJSON_GetObjectItem(o->ctrl, "features_median"));
        double cnm = num_or_nan(cJSON_GetObjectItem(o->ctrl, "neurons_median"));
        ms_log("compare: control (untrained R vs %s): features %.3f, neurons %.3f", app_job_model_name(c->ref), cfm,
               cnm);
        ms_runrec_fact(&c->app->rec, "compare.control_features_median", "%.4f", cfm);
        ms_runrec_fact(&c->app->rec, "compare.control_neurons_median", "%.4f", cnm);
    }
    ms_runrec_fact(&c->app->rec, "compare.families", "%lld", (long long)o->fam_total);
    ms_runrec_fact(&c->app->rec, "compare.out", "%s", dir);
}

ms_status app_compare_write(cmp *c, const char *dir, double seconds, ms_err *err)
{
    const ms_config *cfg = c->cfg;
    int64_t maxd = c->d;
    for (int k = 0; k < c->n_pairs; k++) maxd = c->pairs[k].db > maxd ? c->pairs[k].db : maxd;
    outs o;
    memset(&o, 0, sizeof o);
    o.scratch = malloc((size_t)maxd * sizeof *o.scratch);
    o.size = malloc((size_t)maxd * sizeof *o.size), o.member = malloc((size_t)maxd * sizeof *o.member);
    o.items = calloc((size_t)c->n_pairs * 12 + 1, sizeof *o.items);
    o.names = calloc((size_t)c->n_pairs * 12 + 1, sizeof *o.names);
    if (!o.scratch || !o.size || !o.member || !o.items || !o.names) {
        free(o.scratch), free(o.size), free(o.member), free(o.items), free(o.names);
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    outs_headers(&o, c);
    for (int k = 0; k < c->n_pairs; k++) pair_out(&o, c, &c->pairs[k]);
    outs_reasons(&o, c, seconds);

    const double tokens = (double)(c->n_ctx * c->T);
    ms_status st = ms_mkdirs(dir, err);
    char *ps = ms_path_join(dir, "splitting.json"), *pu = ms_path_join(dir, "universality.json"),
         *ph = ms_path_join(dir, "splitting.h5");
    if (!st && (!ps || !pu || !ph)) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (!st) st = write_json(o.split, ps, err);
    if (!st) st = write_json(o.univ, pu, err);
    const char *attrs[] = {"tokens", NULL, "config_hash", cfg->hash, "version", MS_VERSION_STRING};
    char tok[32];
    snprintf(tok, sizeof tok, "%.0f", tokens);
    attrs[1] = tok;
    if (!st && o.n_items > 0) st = ms_h5_write_tensors(ph, o.items, o.n_items, attrs, 3, err);
    if (!st) outs_log(&o, c, dir, tokens);
    free(ps), free(pu), free(ph);
    cJSON_Delete(o.split);
    cJSON_Delete(o.univ);
    free(o.scratch), free(o.size), free(o.member), free(o.items), free(o.names);
    return st;
}
