/* `monosem compare job.yaml`: feature splitting (SAEs of different sizes on one model) and
 * universality (model A vs model B, features and neurons; the untrained control R vs the
 * trained reference, B or else A) over the same tokens. This file is
 * the driver: forward to the hook on shared contexts, encode with each SAE, feed the
 * correlation sums (libsae/correlate.c), reduce them once, write compare/. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "monosem/model.h"
#include "monosem/sae.h"

#define N_BINS 20 /* histogram bins over [-1, 1] (cosines) or [-1, 1] (correlations) */

typedef struct cmp_sae {
    const ms_job_sae *js;
    bool needed;
    ms_sae sae;
    float *f; /* (rows, d_sae) codes of the current batch */
} cmp_sae;

enum { PAIR_SPLIT = 0, PAIR_UNIV };
#define SRC_NEURONS_A (-1)
#define SRC_NEURONS_B (-2)
#define SRC_NEURONS_R (-3)
#define N_MODELS MS_JOB_MAX_MODELS

typedef struct pair {
    int kind;
    bool control;    /* universality of the control R with the reference model */
    int a, b;        /* sources: an SAE index or SRC_NEURONS_A/B/R */
    int64_t da, db;
    int64_t nb, n_blocks; /* columns per block, blocks */
    int64_t next_block;   /* the next block to accumulate */
    bool active;          /* corr holds a block in the current pass */
    ms_corr corr;
    float *row_max, *col_max;    /* by activation correlation (da), (db) */
    int64_t *row_arg, *col_arg;
    float *drow_max, *dcol_max;  /* by decoder cosine (splitting only) */
    int64_t *drow_arg, *dcol_arg;
    int64_t *fam_member, *fam_size; /* families (splitting only): (db), (da) */
} pair;

typedef struct cmp {
    ms_app *app;
    const ms_config *cfg;
    ms_config cfg_m[N_MODELS]; /* [1], [2]: B's and R's derived configs */
    bool have_m[N_MODELS];     /* the job has the model (A always) */
    int ref;                   /* the control's reference: B when the job has it, else A */
    ms_job_sae *jobs;
    int n_saes;
    cmp_sae *saes;
    pair *pairs;
    int n_pairs;
    ms_model model[N_MODELS];
    bool model_loaded[N_MODELS], model_needed[N_MODELS];
    ms_model_acts acts[N_MODELS];
    ms_hook hook;
    int d; /* hook width */
    float *h[N_MODELS]; /* (rows, d) hook activations of the batch, per model */
    int32_t *tokens;
    ms_tokset ts;
    int64_t T, B, n_ctx, ctx0, ctx1;
} cmp;

static const char *src_name(const cmp *c, int s)
{
    return s == SRC_NEURONS_A ? "neurons-A" : s == SRC_NEURONS_B ? "neurons-B" : s == SRC_NEURONS_R ? "neurons-R"
                                                                                                    : c->jobs[s].name;
}

static int src_model(const cmp *c, int s) { return s < 0 ? -1 - s : c->jobs[s].model; }

static const float *src_units(const cmp *c, int s)
{
    return s < 0 ? c->h[src_model(c, s)] : c->saes[s].f;
}

static ms_status add_pair(cmp *c, int kind, bool control, int a, int b, int64_t da, int64_t db, ms_err *err)
{
    pair *p = realloc(c->pairs, sizeof *p * (size_t)(c->n_pairs + 1));
    if (!p) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    c->pairs = p;
    p = &c->pairs[c->n_pairs++];
    memset(p, 0, sizeof *p);
    p->kind = kind, p->control = control, p->a = a, p->b = b, p->da = da, p->db = db;
    if (da > 0) { /* neurons: sized in prepare, once the hook width is known */
        p->nb = ms_corr_block_cols(da, db, (size_t)(c->cfg->compare.block_mb * 1048576.0));
        p->n_blocks = (db + p->nb - 1) / p->nb;
    }
    p->row_max = malloc((size_t)(da > 0 ? da : 1) * sizeof(float));
    p->row_arg = malloc((size_t)(da > 0 ? da : 1) * sizeof(int64_t));
    p->col_max = malloc((size_t)(db > 0 ? db : 1) * sizeof(float));
    p->col_arg = malloc((size_t)(db > 0 ? db : 1) * sizeof(int64_t));
    if (!p->row_max || !p->row_arg || !p->col_max || !p->col_arg) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < da; i++) p->row_max[i] = -INFINITY, p->row_arg[i] = -1;
    if (kind == PAIR_SPLIT) {
        p->drow_max = malloc((size_t)da * sizeof(float));
        p->drow_arg = malloc((size_t)da * sizeof(int64_t));
        p->dcol_max = malloc((size_t)db * sizeof(float));
        p->dcol_arg = malloc((size_t)db * sizeof(int64_t));
        if (!p->drow_max || !p->drow_arg || !p->dcol_max || !p->dcol_arg)
            return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    if (a >= 0) c->saes[a].needed = true;
    if (b >= 0) c->saes[b].needed = true;
    c->model_needed[src_model(c, a)] = c->model_needed[src_model(c, b)] = true;
    return MS_OK;
}

/* Splitting: on each model, each SAE with the first SAE of the next larger size (consecutive
 * sizes: the family tree of a sweep, linear in its length). Universality: each model-A SAE
 * with the first model-B SAE of its size; model A's neurons with B's. The control: each
 * model-R SAE with the first SAE of its size on the reference model, and R's neurons with the
 * reference's (what universality looks like when one model learned nothing). */
static ms_status plan_pairs(cmp *c, ms_err *err)
{
    ms_status st = MS_OK;
    for (int i = 0; i < c->n_saes && !st; i++) {
        int next = -1;
        for (int j = 0; j < c->n_saes; j++)
            if (c->jobs[j].model == c->jobs[i].model && c->jobs[j].d_sae > c->jobs[i].d_sae &&
                (next < 0 || c->jobs[j].d_sae < c->jobs[next].d_sae))
                next = j;
        if (next >= 0) st = add_pair(c, PAIR_SPLIT, false, i, next, c->jobs[i].d_sae, c->jobs[next].d_sae, err);
    }
    for (int i = 0; i < c->n_saes && !st; i++) {
        const bool control = c->jobs[i].model == 2;
        if (c->jobs[i].model != 0 && !control) continue;
        const int other = control ? c->ref : 1;
        for (int j = 0; j < c->n_saes; j++)
            if (c->jobs[j].model == other && c->jobs[j].d_sae == c->jobs[i].d_sae) {
                st = add_pair(c, PAIR_UNIV, control, i, j, c->jobs[i].d_sae, c->jobs[j].d_sae, err);
                break;
            }
    }
    if (!st && c->have_m[1]) st = add_pair(c, PAIR_UNIV, false, SRC_NEURONS_A, SRC_NEURONS_B, 0, 0, err);
    if (!st && c->have_m[2]) st = add_pair(c, PAIR_UNIV, true, SRC_NEURONS_R, -1 - c->ref, 0, 0, err);
    return st;
}

/* Models, hook, token contexts, SAEs and buffers; local work (the caller agrees). */
static ms_status prepare(cmp *c, ms_err *err)
{
    const ms_config *cfg = c->cfg;
    const char *dirs[N_MODELS];
    for (int m = 0; m < N_MODELS; m++) dirs[m] = m == 0 ? cfg->model.dir : c->have_m[m] ? c->cfg_m[m].model.dir : NULL;
    for (int m = 0; m < N_MODELS; m++) {
        if (!c->model_needed[m]) continue;
        ms_status st = ms_model_load(&c->model[m], dirs[m], err);
        if (st) return st;
        c->model_loaded[m] = true;
    }
    int m0 = 0;
    while (m0 < N_MODELS - 1 && !c->model_loaded[m0]) m0++;
    const ms_model_config *mc = &c->model[m0].cfg;
    ms_status st = ms_hook_parse(&c->hook, cfg->model.hook, mc, err);
    if (st) return st;
    c->d = ms_hook_dim(mc, c->hook);
    for (int m = m0 + 1; m < N_MODELS; m++)
        if (c->model_loaded[m] && ms_hook_dim(&c->model[m].cfg, c->hook) != c->d)
            return ms_err_set(err, MS_ERR_STATE, "compare: %s has width %d in %s but %d in %s", cfg->model.hook, c->d,
                              dirs[m0], ms_hook_dim(&c->model[m].cfg, c->hook), dirs[m]);
    /* neuron pairs are sized now that the hook width is known */
    for (int k = 0; k < c->n_pairs; k++) {
        pair *p = &c->pairs[k];
        if (p->a >= 0) continue;
        p->da = p->db = c->d;
        p->nb = ms_corr_block_cols(c->d, c->d, (size_t)(cfg->compare.block_mb * 1048576.0));
        p->n_blocks = (c->d + p->nb - 1) / p->nb;
        float *r = realloc(p->row_max, (size_t)c->d * sizeof(float)), *cm = realloc(p->col_max, (size_t)c->d * sizeof(float));
        if (r) p->row_max = r;
        if (cm) p->col_max = cm;
        int64_t *ra = realloc(p->row_arg, (size_t)c->d * sizeof(int64_t)), *ca = realloc(p->col_arg, (size_t)c->d * sizeof(int64_t));
        if (ra) p->row_arg = ra;
        if (ca) p->col_arg = ca;
        if (!r || !cm || !ra || !ca) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < c->d; i++) p->row_max[i] = -INFINITY, p->row_arg[i] = -1;
    }

    st = ms_tokset_open(&c->ts, cfg->corpus.token_dir, "train", err);
    if (st) return st;
    c->T = cfg->corpus.context;
    int64_t avail = ms_tokset_n_contexts(&c->ts, c->T, false);
    c->n_ctx = (cfg->compare.tokens + c->T - 1) / c->T;
    if (c->n_ctx > avail) c->n_ctx = avail;
    if (c->n_ctx < 1)
        return ms_err_set(err, MS_ERR_STATE, "compare: the train split of %s has no context of %lld tokens",
                          cfg->corpus.token_dir, (long long)c->T);
    ms_shard_range(c->n_ctx, c->app->comm.rank, c->app->comm.size, &c->ctx0, &c->ctx1);
    c->B = cfg->compare.batch;
    const size_t rows = (size_t)(c->B * c->T);
    c->tokens = malloc(rows * sizeof *c->tokens);
    if (!c->tokens) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int m = 0; m < N_MODELS; m++) {
        if (!c->model_loaded[m]) continue;
        if ((st = ms_app_check_model_fit(cfg, dirs[m], c->model[m].cfg.n_ctx, c->model[m].cfg.d_vocab, &c->ts, err)))
            return st;
        st = ms_model_acts_init(&c->acts[m], &c->model[m].cfg, (int)c->B, (int)c->T, MS_ACTS_NO_LOGITS, err);
        if (st) return st;
        if (!(c->h[m] = calloc(rows * (size_t)c->d, sizeof(float)))) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < c->n_saes; i++) {
        cmp_sae *s = &c->saes[i];
        if (!s->needed) continue;
        char *sl = ms_path_join(s->js->dir, "saelens");
        if (!sl) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        /* opened from what training saved (architecture, k, threshold), as eval does */
        ms_saelens_info info;
        st = ms_sae_open_saelens(&s->sae, sl, (int64_t)rows, &info, err);
        const int64_t d_in = st ? 0 : s->sae.hp.d_in, d_sae = st ? 0 : s->sae.hp.d_sae;
        if (!st && (d_in != c->d || d_sae != s->js->d_sae))
            st = ms_err_set(err, MS_ERR_STATE, "%s/cfg.json: d_in %lld, d_sae %lld; the job says d_in %d (%s), d_sae %lld",
                            sl, (long long)d_in, (long long)d_sae, c->d, cfg->model.hook, (long long)s->js->d_sae);
        free(sl);
        if (st) return st;
        if (!(s->f = calloc(rows * (size_t)d_sae, sizeof(float)))) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    return MS_OK;
}

/* One batch of nb contexts from c0: forward, encode, add to the active pairs' blocks. */
static ms_status pass_batch(cmp *c, int64_t c0, int nb, ms_err *err)
{
    for (int b = 0; b < nb; b++) {
        ms_status st = ms_tokset_context(&c->ts, c0 + b, c->T, false, c->tokens + (size_t)b * c->T, err);
        if (st) return st;
    }
    const int64_t rows = (int64_t)nb * c->T;
    for (int m = 0; m < N_MODELS; m++) {
        if (!c->model_loaded[m]) continue;
        ms_hook_capture cap = {c->hook, c->h[m]};
        ms_forward_opts o = {.stop_after = &c->hook, .captures = &cap, .n_captures = 1};
        ms_status st = ms_model_forward(&c->model[m], &c->acts[m], c->tokens, nb, (int)c->T, &o, err);
        if (st) return st;
    }
    for (int i = 0; i < c->n_saes; i++)
        if (c->saes[i].needed) ms_sae_encode(&c->saes[i].sae, c->saes[i].f, c->h[c->jobs[i].model], rows);
    for (int k = 0; k < c->n_pairs; k++) {
        pair *p = &c->pairs[k];
        if (p->active) ms_corr_add(&p->corr, src_units(c, p->a), src_units(c, p->b), rows);
    }
    return MS_OK;
}

/* COLLECTIVE. Pass ip of n_pass over this rank's contexts. Every rank runs the same number of
 * rounds (the largest share) and agrees on stop signals after each, so a SIGTERM on any rank
 * stops all at the same batch (MS_INTERRUPTED); a rank that failed keeps joining the rounds. */
static ms_status pass(cmp *c, ms_progress *prog, int64_t ip, int64_t n_pass, ms_err *err)
{
    const ms_comm *comm = &c->app->comm;
    const double done0 = (double)(ip * c->n_ctx * c->T);
    const int64_t per_rank = (c->n_ctx + comm->size - 1) / comm->size, rounds = (per_rank + c->B - 1) / c->B;
    ms_status st = MS_OK;
    for (int64_t k = 0; k < rounds; k++) {
        const int64_t c0 = c->ctx0 + k * c->B;
        if (!st && c0 < c->ctx1) {
            int nb = (int)(c->ctx1 - c0 < c->B ? c->ctx1 - c0 : c->B);
            st = pass_batch(c, c0, nb, err);
            ms_progress_update(prog, done0 + (double)(c0 + nb - c->ctx0) * (double)c->T * comm->size);
        }
        int sig = ms_comm_signal_agree(comm, ip * rounds + k + 1); /* rounds over all passes */
        if (sig && !st)
            st = ms_err_set(err, MS_INTERRUPTED,
                            "compare: %s: stopped in pass %lld of %lld after %lld of %lld batches per rank, nothing "
                            "written; compare keeps no checkpoint: rerun to start over",
                            ms_signal_name(sig), (long long)(ip + 1), (long long)n_pass, (long long)(k + 1),
                            (long long)rounds);
        if (sig) break;
    }
    return st;
}

/* ------------------------------------------------------------------ outputs */

static cJSON *hist_json(const float *x, int64_t n, double lo, double hi)
{
    int64_t counts[N_BINS];
    ms_histogram_f32(counts, N_BINS, lo, hi, x, n);
    cJSON *o = cJSON_CreateObject(), *a = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "lo", lo);
    cJSON_AddNumberToObject(o, "hi", hi);
    for (int b = 0; b < N_BINS; b++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)counts[b]));
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

/* {median, mean, n (finite), histogram} of a best-match vector. */
static cJSON *dist_json(const float *x, int64_t n, float *scratch)
{
    cJSON *o = cJSON_CreateObject();
    double s = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(x[i])) s += x[i], k++;
    add_num_or_null(o, "median", ms_median_f32(x, n, scratch));
    add_num_or_null(o, "mean", k ? s / (double)k : NAN);
    cJSON_AddNumberToObject(o, "n", (double)k);
    cJSON_AddNumberToObject(o, "n_undefined", (double)(n - k));
    cJSON_AddItemToObject(o, "histogram", hist_json(x, n, -1.0, 1.0));
    return o;
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

static ms_status write_outputs(cmp *c, const char *dir, double seconds, ms_err *err)
{
    const ms_config *cfg = c->cfg;
    int64_t maxd = c->d;
    for (int k = 0; k < c->n_pairs; k++) maxd = c->pairs[k].db > maxd ? c->pairs[k].db : maxd;
    float *scratch = malloc((size_t)maxd * sizeof *scratch);
    int64_t *size = malloc((size_t)maxd * sizeof *size), *member = malloc((size_t)maxd * sizeof *member);
    ms_st_item *items = calloc((size_t)c->n_pairs * 12 + 1, sizeof *items);
    char (*names)[192] = calloc((size_t)c->n_pairs * 12 + 1, sizeof *names);
    if (!scratch || !size || !member || !items || !names) {
        free(scratch), free(size), free(member), free(items), free(names);
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    int n_items = 0;
    cJSON *split = cJSON_CreateObject(), *univ = cJSON_CreateObject();
    cJSON *spairs = cJSON_AddArrayToObject(split, "pairs"), *ufeat = cJSON_AddArrayToObject(univ, "features");
    const double tokens = (double)(c->n_ctx * c->T);
    cJSON_AddNumberToObject(split, "tokens", tokens);
    cJSON_AddNumberToObject(split, "family_min", cfg->compare.family_min);
    cJSON_AddStringToObject(split, "definition",
                            "for each feature, its best match in the other SAE by decoder cosine and by Pearson "
                            "correlation of activations over the same tokens; a family is a small-SAE feature with "
                            "the large-SAE features whose best decoder-cosine match it is (cosine >= family_min)");
    cJSON_AddNumberToObject(univ, "tokens", tokens);
    cJSON_AddStringToObject(univ, "definition",
                            "for each unit of model A, the maximum Pearson correlation of its activations with any "
                            "unit of model B over the same tokens; units that never vary are undefined (null)");
    cJSON *paper = cJSON_AddObjectToObject(univ, "paper");
    cJSON_AddNumberToObject(paper, "features_median", 0.72);
    cJSON_AddNumberToObject(paper, "neurons_median", 0.46);
    cJSON_AddNullToObject(univ, "neurons");
    cJSON *ctrl = NULL, *cfeat = NULL;
    if (c->have_m[2]) {
        ctrl = cJSON_AddObjectToObject(univ, "control");
        cJSON_AddStringToObject(ctrl, "model", "R");
        cJSON_AddStringToObject(ctrl, "reference", ms_job_model_name(c->ref));
        cJSON_AddStringToObject(ctrl, "definition",
                                "the same measure between the untrained control model R (model A's shape, randomly "
                                "initialised) and the trained reference model: features of R's SAE against the "
                                "reference's SAE of the same size, R's neurons against the reference's");
        cfeat = cJSON_AddArrayToObject(ctrl, "features");
        cJSON_AddNullToObject(ctrl, "neurons");
    }
    int64_t fam_total = 0;

#define ITEM(nm, dt, n0, ptr)                                                                          \
    do {                                                                                               \
        snprintf(names[n_items], sizeof names[n_items], "%.63s__%.63s__%.40s", src_name(c, p->a), src_name(c, p->b), nm); \
        items[n_items] = (ms_st_item){.name = names[n_items], .dtype = dt, .ndim = 1, .shape = {n0}, .data = ptr}; \
        n_items++;                                                                                     \
    } while (0)

    for (int k = 0; k < c->n_pairs; k++) {
        pair *p = &c->pairs[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "a", src_name(c, p->a));
        cJSON_AddStringToObject(o, "b", src_name(c, p->b));
        cJSON_AddNumberToObject(o, "d_a", (double)p->da);
        cJSON_AddNumberToObject(o, "d_b", (double)p->db);
        cJSON *act = cJSON_AddObjectToObject(o, "activation_corr");
        cJSON_AddItemToObject(act, "a_best", dist_json(p->row_max, p->da, scratch));
        cJSON_AddItemToObject(act, "b_best", dist_json(p->col_max, p->db, scratch));
        cJSON_AddItemToObject(act, "a_max", f32_array(p->row_max, p->da));
        cJSON_AddItemToObject(act, "a_arg", i64_array(p->row_arg, p->da));
        ITEM("corr_a_max", MS_ST_F32, p->da, p->row_max);
        ITEM("corr_a_arg", MS_ST_I64, p->da, p->row_arg);
        ITEM("corr_b_max", MS_ST_F32, p->db, p->col_max);
        ITEM("corr_b_arg", MS_ST_I64, p->db, p->col_arg);
        if (p->kind == PAIR_SPLIT) {
            cJSON_AddStringToObject(o, "model", ms_job_model_name(src_model(c, p->a)));
            cJSON *dec = cJSON_AddObjectToObject(o, "decoder_cos");
            cJSON_AddItemToObject(dec, "a_best", dist_json(p->drow_max, p->da, scratch));
            cJSON_AddItemToObject(dec, "b_best", dist_json(p->dcol_max, p->db, scratch));
            cJSON_AddItemToObject(dec, "a_max", f32_array(p->drow_max, p->da));
            cJSON_AddItemToObject(dec, "a_arg", i64_array(p->drow_arg, p->da));
            cJSON_AddItemToObject(dec, "b_max", f32_array(p->dcol_max, p->db));
            cJSON_AddItemToObject(dec, "b_arg", i64_array(p->dcol_arg, p->db));
            cJSON_AddItemToObject(act, "b_max", f32_array(p->col_max, p->db));
            cJSON_AddItemToObject(act, "b_arg", i64_array(p->col_arg, p->db));
            int64_t nf = ms_families(member, size, p->dcol_max, p->dcol_arg, p->db, p->da, (float)cfg->compare.family_min);
            int64_t in = 0, big = 0, largest = 0;
            for (int64_t i = 0; i < p->da; i++) {
                in += size[i];
                big += size[i] >= 2;
                largest = size[i] > largest ? size[i] : largest;
            }
            fam_total += nf;
            cJSON *fam = cJSON_AddObjectToObject(o, "families");
            cJSON_AddNumberToObject(fam, "n", (double)nf);
            cJSON_AddNumberToObject(fam, "n_split", (double)big);
            cJSON_AddNumberToObject(fam, "mean_size", nf ? (double)in / (double)nf : 0.0);
            cJSON_AddNumberToObject(fam, "largest", (double)largest);
            cJSON_AddNumberToObject(fam, "b_unassigned", (double)(p->db - in));
            cJSON_AddItemToObject(fam, "member_of", i64_array(member, p->db));
            cJSON_AddItemToObject(fam, "size", i64_array(size, p->da));
            /* the HDF5 items must outlive this loop: the pair keeps its families */
            p->fam_member = malloc((size_t)p->db * sizeof *p->fam_member);
            p->fam_size = malloc((size_t)p->da * sizeof *p->fam_size);
            if (p->fam_member && p->fam_size) {
                memcpy(p->fam_member, member, (size_t)p->db * sizeof *member);
                memcpy(p->fam_size, size, (size_t)p->da * sizeof *size);
                ITEM("family_member", MS_ST_I64, p->db, p->fam_member);
                ITEM("family_size", MS_ST_I64, p->da, p->fam_size);
            }
            ITEM("cos_a_max", MS_ST_F32, p->da, p->drow_max);
            ITEM("cos_a_arg", MS_ST_I64, p->da, p->drow_arg);
            ITEM("cos_b_max", MS_ST_F32, p->db, p->dcol_max);
            ITEM("cos_b_arg", MS_ST_I64, p->db, p->dcol_arg);
            cJSON_AddItemToArray(spairs, o);
        } else {
            cJSON *u = p->control ? ctrl : univ;
            if (p->a < 0) {
                cJSON_DeleteItemFromObject(u, "neurons");
                cJSON_AddItemToObject(u, "neurons", o);
                add_num_or_null(u, "neurons_median", ms_median_f32(p->row_max, p->da, scratch));
            } else {
                cJSON_AddItemToArray(p->control ? cfeat : ufeat, o);
                if (!cJSON_GetObjectItem(u, "features_median"))
                    add_num_or_null(u, "features_median", ms_median_f32(p->row_max, p->da, scratch));
            }
        }
    }
#undef ITEM
    if (!cJSON_GetObjectItem(univ, "features_median")) cJSON_AddNullToObject(univ, "features_median");
    if (!cJSON_GetObjectItem(univ, "neurons_median")) cJSON_AddNullToObject(univ, "neurons_median");
    if (ctrl && !cJSON_GetObjectItem(ctrl, "features_median")) {
        cJSON_AddNullToObject(ctrl, "features_median");
        cJSON_AddStringToObject(ctrl, "reason", "no model-R SAE has the size of a reference-model SAE: features not "
                                                "compared");
    }
    if (!c->have_m[1])
        cJSON_AddStringToObject(univ, "reason", "the job has no model B (set model_b.seed and a saes entry with model: B)");
    else if (cJSON_GetArraySize(ufeat) == 0)
        cJSON_AddStringToObject(univ, "reason", "no model-B SAE has the size of a model-A SAE: features not compared");
    if (cJSON_GetArraySize(spairs) == 0)
        cJSON_AddStringToObject(split, "reason", "no two SAEs of different sizes on one model");
    cJSON_AddNumberToObject(split, "seconds", seconds);
    cJSON_AddNumberToObject(univ, "seconds", seconds);

    ms_status st = ms_mkdirs(dir, err);
    char *ps = ms_path_join(dir, "splitting.json"), *pu = ms_path_join(dir, "universality.json"),
         *ph = ms_path_join(dir, "splitting.h5");
    if (!st && (!ps || !pu || !ph)) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (!st) st = write_json(split, ps, err);
    if (!st) st = write_json(univ, pu, err);
    const char *attrs[] = {"tokens", NULL, "config_hash", cfg->hash, "version", MS_VERSION_STRING};
    char tok[32];
    snprintf(tok, sizeof tok, "%.0f", tokens);
    attrs[1] = tok;
    if (!st && n_items > 0) st = ms_h5_write_tensors(ph, items, n_items, attrs, 3, err);
    if (!st) {
        double fm = cJSON_GetObjectItem(univ, "features_median") && cJSON_IsNumber(cJSON_GetObjectItem(univ, "features_median"))
                        ? cJSON_GetObjectItem(univ, "features_median")->valuedouble : NAN;
        double nm = cJSON_IsNumber(cJSON_GetObjectItem(univ, "neurons_median"))
                        ? cJSON_GetObjectItem(univ, "neurons_median")->valuedouble : NAN;
        ms_log("compare: %d splitting pair(s), %lld families; universality median max-corr: features %.3f, neurons %.3f "
               "(paper 0.72, 0.46) over %.0f tokens -> %s", cJSON_GetArraySize(spairs), (long long)fam_total, fm, nm,
               tokens, dir);
        ms_runrec_fact(&c->app->rec, "compare.universality_features_median", "%.4f", fm);
        ms_runrec_fact(&c->app->rec, "compare.universality_neurons_median", "%.4f", nm);
        if (ctrl) {
            const cJSON *cf = cJSON_GetObjectItem(ctrl, "features_median"), *cn = cJSON_GetObjectItem(ctrl, "neurons_median");
            double cfm = cJSON_IsNumber(cf) ? cf->valuedouble : NAN, cnm = cJSON_IsNumber(cn) ? cn->valuedouble : NAN;
            ms_log("compare: control (untrained R vs %s): features %.3f, neurons %.3f", ms_job_model_name(c->ref), cfm,
                   cnm);
            ms_runrec_fact(&c->app->rec, "compare.control_features_median", "%.4f", cfm);
            ms_runrec_fact(&c->app->rec, "compare.control_neurons_median", "%.4f", cnm);
        }
        ms_runrec_fact(&c->app->rec, "compare.families", "%lld", (long long)fam_total);
        ms_runrec_fact(&c->app->rec, "compare.out", "%s", dir);
    }
    free(ps), free(pu), free(ph);
    cJSON_Delete(split);
    cJSON_Delete(univ);
    free(scratch), free(size), free(member), free(items), free(names);
    return st;
}

/* Bytes of one block of a pair (ms_corr_block_cols's accounting). */
static size_t block_bytes(const pair *p)
{
    return (size_t)p->da * (size_t)p->nb * (sizeof(double) + sizeof(float)) + 2 * sizeof(double) * (size_t)p->nb;
}

/* Picks the blocks of the next pass: at most one per pair, as many pairs as fit in
 * compare.block_mb together (at least one). False when every block is done. */
/* More passes than this over the tokens is a block size set by mistake, not a plan: refused
 * with the figure that fits (a pass packs whole column blocks, hence the factor 2 of slack). */
#define MAX_PASSES 64

static bool next_pass(cmp *c, bool dry)
{
    size_t budget = (size_t)(c->cfg->compare.block_mb * 1048576.0), used = 0;
    bool any = false;
    for (int k = 0; k < c->n_pairs; k++) {
        pair *p = &c->pairs[k];
        p->active = false;
        if (p->next_block >= p->n_blocks || (any && used + block_bytes(p) > budget)) continue;
        p->active = true, any = true;
        used += block_bytes(p);
        if (dry) p->next_block++;
    }
    return any;
}

static void cmp_free(cmp *c)
{
    for (int k = 0; k < c->n_pairs; k++) {
        pair *p = &c->pairs[k];
        ms_corr_free(&p->corr);
        free(p->row_max), free(p->row_arg), free(p->col_max), free(p->col_arg);
        free(p->drow_max), free(p->drow_arg), free(p->dcol_max), free(p->dcol_arg);
        free(p->fam_member), free(p->fam_size);
    }
    free(c->pairs);
    for (int i = 0; c->saes && i < c->n_saes; i++) {
        ms_sae_free(&c->saes[i].sae);
        free(c->saes[i].f);
    }
    free(c->saes);
    for (int m = 0; m < N_MODELS; m++) {
        ms_model_acts_free(&c->acts[m]);
        if (c->model_loaded[m]) ms_model_free(&c->model[m]);
        free(c->h[m]);
        if (m > 0 && c->have_m[m]) ms_config_free(&c->cfg_m[m]);
    }
    free(c->tokens);
    ms_tokset_close(&c->ts);
    ms_job_saes_free(c->jobs, c->n_saes);
}

ms_status ms_stage_compare(ms_app *app, ms_err *err)
{
    cmp c;
    memset(&c, 0, sizeof c);
    c.app = app;
    c.cfg = &app->cfg;
    const ms_comm *comm = &app->comm;
    double t0 = ms_time_now();
    ms_signals_install(); /* SIGTERM/SIGINT/SIGUSR1: all ranks stop at the same batch, exit 75 */
    ms_status st = ms_job_saes(c.cfg, &c.jobs, &c.n_saes, err);
    c.have_m[0] = true;
    for (int m = 1; m < N_MODELS && !st; m++)
        if (ms_job_has_model(c.cfg, m)) {
            st = ms_config_derive_model(c.cfg, m, &c.cfg_m[m], err);
            c.have_m[m] = st == MS_OK;
        }
    c.ref = c.have_m[1] ? 1 : 0;
    if (!st && !(c.saes = calloc((size_t)c.n_saes, sizeof *c.saes))) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int i = 0; !st && i < c.n_saes; i++) c.saes[i].js = &c.jobs[i];
    if (!st) st = plan_pairs(&c, err);
    if (st) goto done; /* pure functions of the config: the same on every rank */
    char *dir = ms_path_join(c.cfg->run.out_dir, "compare");
    if (!dir) {
        st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (c.n_pairs == 0) {
        ms_log("compare: nothing to compare (one SAE size per model and no model B); writing empty results");
        if (comm->rank == 0) st = write_outputs(&c, dir, 0, err);
        st = ms_comm_agree(comm, st, err);
        free(dir);
        goto done;
    }
    st = prepare(&c, err);
    st = ms_comm_agree(comm, st, err);
    if (st) {
        free(dir);
        goto done;
    }
    /* decoder cosines: weights only, the same on every rank */
    for (int k = 0; k < c.n_pairs && !st; k++) {
        pair *p = &c.pairs[k];
        if (p->kind == PAIR_SPLIT)
            st = ms_decoder_best(p->drow_max, p->drow_arg, p->dcol_max, p->dcol_arg, c.saes[p->a].sae.p.W_dec,
                                 c.saes[p->b].sae.p.W_dec, p->da, p->db, c.d, err);
    }
    /* passes: the pairs' column blocks packed under compare.block_mb (counted dry first) */
    int64_t n_pass = 0;
    while (next_pass(&c, true)) n_pass++;
    for (int k = 0; k < c.n_pairs; k++) c.pairs[k].next_block = 0;
    if (n_pass > MAX_PASSES) { /* each pass is a forward of every model over compare.tokens */
        double all = 0; /* every pair's sums at once, bytes */
        for (int k = 0; k < c.n_pairs; k++) {
            const pair *p = &c.pairs[k];
            all += (double)p->da * (double)p->db * (sizeof(double) + sizeof(float)) + 2.0 * sizeof(double) * (double)p->db;
        }
        char at[4200];
        ms_config_key_where(c.cfg, "compare.block_mb", at, sizeof at);
        st = ms_err_set(err, MS_ERR_CONFIG, "%s: key 'compare.block_mb': %g MiB makes %lld passes over the "
                        "%lld tokens (each a forward of every model), expected at most %d: the correlation sums need "
                        "%.1f MiB per rank in all, so compare.block_mb >= %.3g gives at most %d", at,
                        c.cfg->compare.block_mb, (long long)n_pass, (long long)(c.n_ctx * c.T), MAX_PASSES,
                        all / 1048576.0, all / 1048576.0 / (MAX_PASSES / 2), MAX_PASSES);
        free(dir);
        goto done;
    }
    ms_log("compare: %d pair(s) (%s) over %lld contexts x %lld tokens on %d rank(s), %lld pass(es)", c.n_pairs,
           c.have_m[1] && c.have_m[2] ? "splitting + universality + control" : c.have_m[1] ? "splitting + universality"
           : c.have_m[2] ? "splitting + control" : "splitting", (long long)c.n_ctx, (long long)c.T, comm->size,
           (long long)n_pass);
    ms_progress prog;
    ms_progress_init(&prog, "compare", "tokens", (double)(c.n_ctx * c.T * n_pass), c.cfg->run.log_every_s);
    double t_reduce = 0;
    for (int64_t ip = 0; ip < n_pass && !st; ip++) {
        next_pass(&c, false);
        for (int k = 0; k < c.n_pairs && !st; k++) {
            pair *p = &c.pairs[k];
            if (!p->active) continue;
            int64_t b0 = p->next_block * p->nb, b1 = b0 + p->nb < p->db ? b0 + p->nb : p->db;
            st = ms_corr_init(&p->corr, p->da, p->db, b0, b1, err);
        }
        st = ms_comm_agree(comm, st, err);
        if (!st) st = pass(&c, &prog, ip, n_pass, err);
        st = ms_comm_agree(comm, st, err);
        /* each active block's sums in ONE reduction; then the best matches everywhere */
        double tr = ms_time_now();
        for (int k = 0; k < c.n_pairs && !st; k++) {
            pair *p = &c.pairs[k];
            if (!p->active) continue;
            st = ms_comm_allreduce_f64(comm, p->corr.sums, p->corr.n_sums, err);
            if (!st) ms_corr_best(&p->corr, p->row_max, p->row_arg, p->col_max, p->col_arg);
            ms_corr_free(&p->corr);
            p->next_block++;
        }
        t_reduce += ms_time_now() - tr;
        st = ms_comm_agree(comm, st, err);
    }
    ms_progress_finish(&prog);
    if (!st && comm->rank == 0) st = write_outputs(&c, dir, ms_time_now() - t0, err);
    st = ms_comm_agree(comm, st, err);
    ms_runrec_time(&app->rec, "compare.allreduce", t_reduce);
    ms_runrec_fact(&app->rec, "compare.tokens", "%lld", (long long)(c.n_ctx * c.T));
    free(dir);
done:
    cmp_free(&c);
    return st;
}
