/* Builds <out_dir>/report/: the static page (embedded assets), run.js (every dictionary's eval
 * numbers, analysis attributes and globals), per dictionary units.js (one value per unit: the
 * sortable, searchable list) and block-NNNNN.js files (everything per unit, MS_REPORT_BLOCK
 * units each, loaded on demand), vocab.js (token strings). Rank 0 only. */
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "app.h"
#include "monosem/model.h"
#include "report.h"
#include "report_build.h"

/* Where analyze leaves its files: app_job_analysis_path (apps/job_saes.c), shared with analyze. */
/* Per-unit token id datasets that name a unit's top token for the list and search: a 1-D
 * column, else the centre token of the first top context (dims unit, context, position). */
static const char *const top_token_columns[] = {"top_token", NULL};
static const char *const top_context_tokens[] = {"top_tokens", NULL};
/* Every dataset of token ids the page turns into strings (docs/analysis.md) */
static const char *const token_id_datasets[] = {"top_token", "top_tokens", "interval_tokens", "logit_top_ids",
                                                "logit_bottom_ids", NULL};

/* The token ids an analysis file hands the page are inside the vocabulary it stores (analyze
 * always writes one; a file without it has no strings to index and is left as it is). */
static ms_status check_token_ids(const app_ranalysis *a, ms_err *err)
{
    const app_rds *o = app_ranalysis_find(a, "vocab_offsets");
    if (!o || o->rank != 1 || o->dims[0] < 1) return MS_OK;
    const int64_t n_vocab = o->dims[0] - 1;
    ms_status st = MS_OK;
    for (int i = 0; token_id_datasets[i] && !st; i++) {
        const app_rds *d = app_ranalysis_find(a, token_id_datasets[i]);
        if (d && d->is_int) st = app_ranalysis_check_ids(a, d, n_vocab, err);
    }
    return st;
}

typedef struct rdict {
    char name[64];
    const char *kind; /* "features" | "neurons" */
    int model;        /* 0 = A, 2 = the control R: units of different models share no basis */
    char *analysis_path;
    char *eval_path;   /* may not exist */
    char *decoder_path; /* sae.h5 (features) */
    char *saelens_path; /* saelens/sae_weights.safetensors: the decoder when sae.h5 is absent */
    app_ranalysis an;
    app_rdict dir;
    bool have_dir;
} rdict;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}
static void rm_tree(const char *path)
{
    if (ms_path_exists(path)) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* "msReport.<fn>(" + body + ");\n" */
static void js_open(app_rbuf *b, const char *fn)
{
    app_rbuf_clear(b);
    app_rbuf_printf(b, "msReport.%s(", fn);
}
static void js_close(app_rbuf *b) { app_rbuf_puts(b, ");\n"); }

static ms_status write_assets(const char *root, ms_err *err)
{
    for (int i = 0; i < app_report_n_assets; i++) {
        char *p = ms_path_join(root, app_report_assets[i].name);
        if (!p) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        app_rbuf b = {.p = (char *)app_report_assets[i].data, .len = app_report_assets[i].len};
        ms_status st = app_rbuf_write(&b, p, err);
        free(p);
        if (st) return st;
    }
    return MS_OK;
}

/* data/vocab.js: token strings, from the first analysis file that stores them (analyze copies
 * the tokenizer's), else from the job's tokenizer files; ids only when neither exists. */
static ms_status write_vocab(const ms_config *cfg, const rdict *ds, int nd, const char *root, app_rbuf *b,
                             ms_err *err)
{
    js_open(b, "vocab");
    app_rbuf_puts(b, "[");
    ms_status st = MS_OK;
    bool done = false;
    for (int i = 0; i < nd && !done && !st; i++) {
        int64_t *off, nv;
        unsigned char *raw;
        if ((st = app_ranalysis_vocab(&ds[i].an, &off, &nv, &raw, err)) || nv == 0) continue;
        for (int64_t v = 0; v < nv; v++) {
            if (v) app_rbuf_puts(b, ",");
            app_rbuf_str(b, (const char *)raw + off[v], (size_t)(off[v + 1] - off[v]));
        }
        free(off), free(raw);
        done = true;
    }
    ms_tokenizer *tok = NULL;
    ms_err terr = {0};
    if (!st && !done && ms_path_exists(cfg->tokenizer.vocab) && ms_path_exists(cfg->tokenizer.merges) &&
        ms_tokenizer_load(&tok, cfg->tokenizer.vocab, cfg->tokenizer.merges, &terr) == MS_OK) {
        int32_t n = ms_tokenizer_vocab_size(tok);
        for (int32_t i = 0; i < n; i++) {
            size_t len = 0;
            const char *s = ms_tokenizer_token_bytes(tok, i, &len);
            if (i) app_rbuf_puts(b, ",");
            if (s) app_rbuf_str(b, s, len);
            else app_rbuf_puts(b, "null");
        }
        ms_tokenizer_free(tok);
        done = true;
    }
    if (!st && !done) ms_log("report: no token strings (analysis vocab_bytes or tokenizer files): tokens are shown as ids");
    app_rbuf_puts(b, "]");
    js_close(b);
    char *p = ms_path_join(root, "data/vocab.js");
    if (!st) st = p ? app_rbuf_write(b, p, err) : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    free(p);
    return st;
}

/* The unit's top token per unit (-1 when unknown) for units [u0,u1). */
static ms_status top_tokens(const app_ranalysis *a, int64_t u0, int64_t u1, int32_t *out, ms_err *err)
{
    for (int i = 0; top_token_columns[i]; i++) {
        const app_rds *d = app_ranalysis_find(a, top_token_columns[i]);
        if (d && d->per_unit && d->rank == 1) return app_ranalysis_pick_i32(a, d, NULL, u0, u1, out, err);
    }
    for (int i = 0; top_context_tokens[i]; i++) {
        const app_rds *d = app_ranalysis_find(a, top_context_tokens[i]);
        if (d && d->per_unit && d->rank == 3 && d->dims[1] > 0 && d->dims[2] > 0) {
            const int64_t idx[2] = {0, (d->dims[2] - 1) / 2}; /* first context, centre token */
            return app_ranalysis_pick_i32(a, d, idx, u0, u1, out, err);
        }
    }
    for (int64_t u = u0; u < u1; u++) out[u - u0] = -1;
    return MS_OK;
}

/* data/<dict>/units.js: every 1-D per-unit column plus the top token. */
static ms_status write_units(const rdict *d, const char *dir, app_rbuf *b, ms_err *err)
{
    const app_ranalysis *a = &d->an;
    js_open(b, "units");
    app_rbuf_str(b, d->name, strlen(d->name));
    app_rbuf_puts(b, ",{");
    int nc = 0;
    ms_status st = MS_OK;
    for (int i = 0; i < a->n_ds && !st; i++) {
        const app_rds *ds = &a->ds[i];
        if (!ds->per_unit || ds->rank != 1) continue;
        app_rbuf_puts(b, nc++ ? "," : "");
        app_rbuf_str(b, ds->name, strlen(ds->name));
        app_rbuf_puts(b, ":");
        st = app_ranalysis_slab_json(a, ds, 0, a->n_units, b, err);
    }
    int32_t *tt = malloc((size_t)a->n_units * sizeof *tt);
    if (!st && !tt) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (!st) st = top_tokens(a, 0, a->n_units, tt, err);
    if (!st) {
        app_rbuf_puts(b, nc ? ",\"_top_token\":[" : "\"_top_token\":[");
        for (int64_t u = 0; u < a->n_units; u++) {
            if (u) app_rbuf_put(b, ",", 1);
            app_rbuf_int(b, tt[u]);
        }
        app_rbuf_puts(b, "]}");
        js_close(b);
        char *p = ms_path_join(dir, "units.js");
        st = p ? app_rbuf_write(b, p, err) : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        free(p);
    }
    free(tt);
    return st;
}

/* data/<dict>/block-NNNNN.js for units [u0,u1): every per-unit dataset of rank >= 2 and the
 * nearest units in each other dictionary with directions of the same width. */
static ms_status write_block(const rdict *ds, int nd, int di, int64_t blk, const char *dir, app_rbuf *b,
                             int32_t *ids, float *cos, float *work, ms_err *err)
{
    const rdict *d = &ds[di];
    const app_ranalysis *a = &d->an;
    int64_t u0 = blk * MS_REPORT_BLOCK, u1 = u0 + MS_REPORT_BLOCK;
    if (u1 > a->n_units) u1 = a->n_units;
    js_open(b, "block");
    app_rbuf_str(b, d->name, strlen(d->name));
    app_rbuf_printf(b, ",%lld,{\"u0\":%lld,\"n\":%lld,\"data\":{", (long long)blk, (long long)u0,
                   (long long)(u1 - u0));
    int nc = 0;
    for (int i = 0; i < a->n_ds; i++) {
        const app_rds *r = &a->ds[i];
        if (!r->per_unit || r->rank < 2) continue;
        app_rbuf_puts(b, nc++ ? "," : "");
        app_rbuf_str(b, r->name, strlen(r->name));
        app_rbuf_puts(b, ":");
        ms_status st = app_ranalysis_slab_json(a, r, u0, u1, b, err);
        if (st) return st;
    }
    app_rbuf_puts(b, "},\"nearest\":{");
    int nn = 0;
    for (int o = 0; o < nd && d->have_dir; o++) {
        const rdict *e = &ds[o];
        if (o == di || !e->have_dir || e->dir.d != d->dir.d || e->model != d->model) continue;
        app_rdict_nearest(ids, cos, &d->dir, u0, u1, &e->dir, MS_REPORT_NEAREST, work);
        app_rbuf_puts(b, nn++ ? "," : "");
        app_rbuf_str(b, e->name, strlen(e->name));
        app_rbuf_puts(b, ":{\"ids\":[");
        for (int64_t u = 0; u < u1 - u0; u++) {
            app_rbuf_puts(b, u ? ",[" : "[");
            for (int k = 0; k < MS_REPORT_NEAREST; k++) {
                if (k) app_rbuf_put(b, ",", 1);
                app_rbuf_int(b, ids[u * MS_REPORT_NEAREST + k]);
            }
            app_rbuf_puts(b, "]");
        }
        app_rbuf_puts(b, "],\"cos\":[");
        for (int64_t u = 0; u < u1 - u0; u++) {
            app_rbuf_puts(b, u ? ",[" : "[");
            for (int k = 0; k < MS_REPORT_NEAREST; k++) {
                if (k) app_rbuf_puts(b, ",");
                app_rbuf_num(b, cos[u * MS_REPORT_NEAREST + k]);
            }
            app_rbuf_puts(b, "]");
        }
        app_rbuf_puts(b, "]}");
    }
    app_rbuf_puts(b, "}}");
    js_close(b);
    char name[64];
    snprintf(name, sizeof name, "block-%05lld.js", (long long)blk);
    char *p = ms_path_join(dir, name);
    ms_status st = p ? app_rbuf_write(b, p, err) : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    free(p);
    return st;
}

/* One dictionary's entry in run.js. */
static ms_status run_entry(const rdict *d, app_rbuf *b, ms_err *err)
{
    const app_ranalysis *a = &d->an;
    app_rbuf_puts(b, "{\"name\":");
    app_rbuf_str(b, d->name, strlen(d->name));
    app_rbuf_printf(b, ",\"kind\":\"%s\",\"model\":\"%s\",\"n_units\":%lld,\"block\":%d,\"analysis\":", d->kind,
                   app_job_model_name(d->model), (long long)a->n_units, MS_REPORT_BLOCK);
    app_rbuf_str(b, a->path, strlen(a->path));
    app_rbuf_puts(b, ",\"eval\":");
    char *text = NULL;
    size_t len = 0;
    ms_err e2 = {0};
    if (d->eval_path && ms_path_exists(d->eval_path) && ms_file_read_all(d->eval_path, &text, &len, &e2) == MS_OK) {
        /* embedded as written (JSON is JavaScript); parsed only to refuse a broken file */
        cJSON *j = cJSON_ParseWithLength(text, len);
        if (!j) {
            free(text);
            return ms_err_set(err, MS_ERR_FORMAT, "report: %s: not valid JSON", d->eval_path);
        }
        cJSON_Delete(j);
        app_rbuf_put(b, text, len);
    } else {
        app_rbuf_puts(b, "null");
    }
    free(text);
    app_rbuf_puts(b, ",\"attrs\":{");
    ms_status st = app_ranalysis_attrs_json(a, b, err);
    if (st) return st;
    app_rbuf_puts(b, "},\"columns\":[");
    int nc = 0;
    for (int i = 0; i < a->n_ds; i++) {
        if (!a->ds[i].per_unit || a->ds[i].rank != 1) continue;
        app_rbuf_puts(b, nc++ ? "," : "");
        app_rbuf_str(b, a->ds[i].name, strlen(a->ds[i].name));
    }
    /* datasets that are not per unit (bin edges, summaries), when small enough to embed */
    app_rbuf_puts(b, "],\"globals\":{");
    int ng = 0;
    for (int i = 0; i < a->n_ds; i++) {
        const app_rds *r = &a->ds[i];
        int64_t n = 1;
        for (int k = 0; k < r->rank; k++) n *= r->dims[k];
        if (r->per_unit || n > 100000 || strncmp(r->name, "vocab_", 6) == 0) continue;
        app_rbuf_puts(b, ng++ ? "," : "");
        app_rbuf_str(b, r->name, strlen(r->name));
        app_rbuf_puts(b, ":");
        if ((st = app_ranalysis_slab_json(a, r, 0, 0, b, err))) return st;
    }
    app_rbuf_puts(b, "}}");
    return MS_OK;
}

/* compare/universality.json's medians (trained pair and the control), without the per-unit
 * arrays; null when compare has not run. */
static ms_status universality_entry(const ms_config *cfg, app_rbuf *b, ms_err *err)
{
    char *p = ms_path_join(cfg->run.out_dir, "compare/universality.json"), *text = NULL;
    if (!p) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    size_t len = 0;
    ms_err e2 = {0};
    cJSON *u = NULL;
    if (ms_path_exists(p) && ms_file_read_all(p, &text, &len, &e2) == MS_OK) {
        u = cJSON_ParseWithLength(text, len);
        if (!u) {
            ms_status st = ms_err_set(err, MS_ERR_FORMAT, "report: %s: not valid JSON", p);
            free(text), free(p);
            return st;
        }
    }
    free(text);
    free(p);
    if (!u) {
        app_rbuf_puts(b, "null");
        return MS_OK;
    }
    cJSON *o = cJSON_CreateObject();
    static const char *const keys[] = {"features_median", "neurons_median", "tokens", "reason", NULL};
    const cJSON *ctl = cJSON_GetObjectItem(u, "control");
    for (int i = 0; keys[i]; i++) {
        const cJSON *v = cJSON_GetObjectItem(u, keys[i]);
        if (v) cJSON_AddItemToObject(o, keys[i], cJSON_Duplicate(v, 0));
    }
    const cJSON *paper = cJSON_GetObjectItem(u, "paper");
    if (paper) cJSON_AddItemToObject(o, "paper", cJSON_Duplicate(paper, 1));
    if (cJSON_IsObject(ctl)) {
        cJSON *c = cJSON_AddObjectToObject(o, "control");
        static const char *const ck[] = {"features_median", "neurons_median", "reference", "reason", NULL};
        for (int i = 0; ck[i]; i++) {
            const cJSON *v = cJSON_GetObjectItem(ctl, ck[i]);
            if (v) cJSON_AddItemToObject(c, ck[i], cJSON_Duplicate(v, 0));
        }
    }
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    cJSON_Delete(u);
    if (!out) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    app_rbuf_puts(b, out);
    cJSON_free(out);
    return MS_OK;
}

static void rdict_free(rdict *d)
{
    app_ranalysis_close(&d->an);
    free(d->analysis_path);
    free(d->eval_path);
    free(d->decoder_path);
    free(d->saelens_path);
    free(d->dir.dirs);
}

/* An SAE's decoder rows W_dec (d_sae, d_in) from sae.h5, else from its SAELens export; none
 * (have_dir false) when neither exists. */
static ms_status read_decoder(rdict *d, ms_err *err)
{
    if (ms_path_exists(d->decoder_path)) {
        ms_status st = app_report_read_matrix(d->decoder_path, "W_dec", &d->dir.dirs, &d->dir.n, &d->dir.d, err);
        d->have_dir = st == MS_OK;
        return st;
    }
    if (!ms_path_exists(d->saelens_path)) return MS_OK;
    ms_safetensors stf = {0};
    ms_status st = ms_safetensors_open(&stf, d->saelens_path, err);
    const ms_safetensors_tensor *t = st ? NULL : ms_safetensors_find(&stf, "W_dec");
    if (!st && (!t || t->ndim != 2))
        st = ms_err_set(err, MS_ERR_FORMAT, "report: %s: expected a 2-D tensor W_dec", d->saelens_path);
    if (!st && !(d->dir.dirs = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *d->dir.dirs)))
        st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (!st) st = ms_safetensors_read_f32(&stf, t, d->dir.dirs, err);
    if (!st) {
        d->dir.n = t->shape[0], d->dir.d = t->shape[1];
        d->have_dir = true;
        free(d->decoder_path);
        d->decoder_path = strdup(d->saelens_path); /* for messages */
    }
    ms_safetensors_close(&stf);
    return st;
}

/* The dictionaries of the job: every SAE of the models analyze covers (A and the control R; its
 * analysis file must exist) and those models' neurons (when analyze wrote them). */
static ms_status list_dicts(const ms_config *cfg, rdict **out, int *nd, ms_err *err)
{
    app_job_sae *saes = NULL;
    int ns = 0;
    ms_status st = app_job_saes(cfg, &saes, &ns, err);
    if (st) return st;
    rdict *d = calloc((size_t)ns + MS_JOB_MAX_MODELS, sizeof *d);
    if (!d) {
        app_job_saes_free(saes, ns);
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    int n = 0;
    for (int i = 0; i < ns && !st; i++) {
        if (!app_job_analyzes_model(cfg, saes[i].model)) { /* B's numbers: universality, summary.json */
            ms_log("report: %s (model %s) not shown: analyze covers model A's and the control's SAEs (its eval "
                   "and universality numbers are in summary.json)", saes[i].name, app_job_model_name(saes[i].model));
            continue;
        }
        rdict *r = &d[n++];
        snprintf(r->name, sizeof r->name, "%s", saes[i].name);
        r->kind = "features";
        r->model = saes[i].model;
        r->analysis_path = app_job_analysis_path(cfg, saes[i].name, saes[i].dir);
        r->eval_path = ms_path_join(saes[i].dir, "eval.json");
        r->decoder_path = ms_path_join(saes[i].dir, "sae.h5");
        r->saelens_path = ms_path_join(saes[i].dir, "saelens/sae_weights.safetensors");
        if (!r->analysis_path || !r->eval_path || !r->decoder_path || !r->saelens_path)
            st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        else if (!ms_path_exists(r->analysis_path))
            st = ms_err_set(err, MS_ERR_STATE, "report: %s: no analysis file %s; run `monosem analyze` first",
                            saes[i].name, r->analysis_path);
    }
    for (int m = 0; m < MS_JOB_MAX_MODELS && !st; m++) {
        if (!app_job_analyzes_model(cfg, m)) continue;
        char *p = app_job_neurons_analysis_path(cfg, m);
        if (p && ms_path_exists(p)) {
            rdict *r = &d[n++];
            snprintf(r->name, sizeof r->name, "%s", app_job_neurons_name(m));
            r->kind = "neurons";
            r->model = m;
            r->analysis_path = p;
            /* no eval file of its own: the page reads the neurons section of its model's SAEs' eval.json */
        } else {
            ms_log("report: no neuron analysis for model %s (%s): the report shows its features only",
                   app_job_model_name(m), p ? p : "?");
            free(p);
        }
    }
    app_job_saes_free(saes, ns);
    *out = d;
    *nd = n;
    return st;
}

ms_status app_report_build(const ms_config *cfg, ms_runrec *rec, ms_err *err)
{
    rdict *ds = NULL;
    int nd = 0;
    app_rbuf b = {0};
    int32_t *ids = NULL;
    float *cos = NULL, *work = NULL;
    char *final = ms_path_join(cfg->run.out_dir, "report");
    char tmpname[64];
    snprintf(tmpname, sizeof tmpname, "report.tmp.%ld", (long)getpid());
    char *root = ms_path_join(cfg->run.out_dir, tmpname);
    char *data = root ? ms_path_join(root, "data") : NULL;
    ms_status st = (final && root && data) ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (!st) st = list_dicts(cfg, &ds, &nd, err);
    int64_t total_units = 0, max_n = 0;
    for (int i = 0; i < nd && !st; i++) {
        rdict *d = &ds[i];
        if ((st = app_ranalysis_open(&d->an, d->analysis_path, err))) break;
        if ((st = check_token_ids(&d->an, err))) break;
        total_units += d->an.n_units;
        if (d->kind[0] == 'n') { /* identity dictionary */
            d->dir = (app_rdict){.dirs = NULL, .n = d->an.n_units, .d = d->an.n_units};
            d->have_dir = true;
        } else {
            if ((st = read_decoder(d, err))) break;
            if (d->have_dir && d->dir.n != d->an.n_units) {
                st = ms_err_set(err, MS_ERR_FORMAT, "report: %s: W_dec has %lld rows, the analysis %s has %lld units",
                                d->decoder_path, (long long)d->dir.n, d->analysis_path, (long long)d->an.n_units);
                break;
            }
            if (d->have_dir) app_rdict_normalize(&d->dir);
            else ms_log("report: %s: no sae.h5 or SAELens weights: no nearest units for it", d->name);
        }
        if (d->dir.n > max_n) max_n = d->dir.n;
    }
    if (!st) {
        ids = malloc(MS_REPORT_BLOCK * MS_REPORT_NEAREST * sizeof *ids);
        cos = malloc(MS_REPORT_BLOCK * MS_REPORT_NEAREST * sizeof *cos);
        work = malloc((size_t)MS_REPORT_BLOCK * (size_t)(max_n ? max_n : 1) * sizeof *work);
        if (!ids || !cos || !work) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    if (!st) {
        rm_tree(root);
        st = ms_mkdirs(data, err);
    }
    if (!st) st = write_assets(root, err);
    if (!st) st = write_vocab(cfg, ds, nd, root, &b, err);
    /* run.js */
    if (!st) {
        js_open(&b, "run");
        app_rbuf_puts(&b, "{\"name\":");
        app_rbuf_str(&b, cfg->run.name, strlen(cfg->run.name));
        app_rbuf_printf(&b, ",\"config_hash\":\"%s\",\"version\":\"%s\",\"dicts\":[", cfg->hash, MS_VERSION_STRING);
        for (int i = 0; i < nd && !st; i++) {
            if (i) app_rbuf_puts(&b, ",");
            st = run_entry(&ds[i], &b, err);
        }
        app_rbuf_puts(&b, "],\"universality\":");
        if (!st) st = universality_entry(cfg, &b, err);
        app_rbuf_puts(&b, "}");
        js_close(&b);
        char *p = ms_path_join(data, "run.js");
        if (!st) st = p ? app_rbuf_write(&b, p, err) : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        free(p);
    }
    ms_progress prog;
    ms_progress_init(&prog, "report", "units", (double)total_units, cfg->run.log_every_s);
    int64_t done = 0, n_blocks = 0;
    for (int i = 0; i < nd && !st; i++) {
        char *dir = ms_path_join(data, ds[i].name);
        if (!dir) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        if (!st) st = ms_mkdirs(dir, err);
        if (!st) st = write_units(&ds[i], dir, &b, err);
        int64_t nb = (ds[i].an.n_units + MS_REPORT_BLOCK - 1) / MS_REPORT_BLOCK;
        for (int64_t k = 0; k < nb && !st; k++) {
            st = write_block(ds, nd, i, k, dir, &b, ids, cos, work, err);
            int64_t u1 = (k + 1) * MS_REPORT_BLOCK;
            done += (u1 < ds[i].an.n_units ? u1 : ds[i].an.n_units) - k * MS_REPORT_BLOCK;
            n_blocks++;
            ms_progress_update(&prog, (double)done);
        }
        free(dir);
    }
    if (!st) {
        ms_progress_finish(&prog);
        /* swap in the finished directory: the old report (if any) goes only once the new one is whole */
        char old[80];
        snprintf(old, sizeof old, "report.old.%ld", (long)getpid());
        char *oldp = ms_path_join(cfg->run.out_dir, old);
        bool had = ms_path_exists(final);
        if (!oldp) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        else if (had && rename(final, oldp) != 0)
            st = ms_err_set(err, MS_ERR_IO, "report: cannot move the old report %s aside", final);
        else if (rename(root, final) != 0)
            st = ms_err_set(err, MS_ERR_IO, "report: cannot rename %s to %s", root, final);
        if (!st && had) rm_tree(oldp);
        free(oldp);
    }
    if (!st) {
        ms_log("report: %s/index.html (%d dictionaries, %lld units, %lld data blocks)", final, nd,
               (long long)total_units, (long long)n_blocks);
        ms_runrec_fact(rec, "report.path", "%s/index.html", final);
        ms_runrec_fact(rec, "report.dictionaries", "%d", nd);
        ms_runrec_fact(rec, "report.units", "%lld", (long long)total_units);
        ms_runrec_fact(rec, "report.blocks", "%lld", (long long)n_blocks);
    } else if (root) {
        rm_tree(root);
    }
    for (int i = 0; i < nd; i++) rdict_free(&ds[i]);
    free(ds);
    app_rbuf_free(&b);
    free(ids), free(cos), free(work);
    free(final), free(root), free(data);
    return st;
}
