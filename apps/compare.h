/* apps/compare.h: `monosem compare`'s private state, shared by the driver (stage_compare.c) and
 * its outputs (compare_write.c): the pairs of unit sets compared and their best matches. */
#ifndef MONOSEM_COMPARE_H
#define MONOSEM_COMPARE_H

#include "app.h"
#include "monosem/model.h"
#include "monosem/sae.h"
#include "monosem/units.h"


typedef struct cmp_sae {
    const app_job_sae *js;
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
    app_ctx *app;
    const ms_config *cfg;
    ms_config cfg_m[N_MODELS]; /* [1], [2]: B's and R's derived configs */
    bool have_m[N_MODELS];     /* the job has the model (A always) */
    int ref;                   /* the control's reference: B when the job has it, else A */
    app_job_sae *jobs;
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

static inline const char *src_name(const cmp *c, int s)
{
    return s == SRC_NEURONS_A ? "neurons-A" : s == SRC_NEURONS_B ? "neurons-B" : s == SRC_NEURONS_R ? "neurons-R"
                                                                                                    : c->jobs[s].name;
}

static inline int src_model(const cmp *c, int s) { return s < 0 ? -1 - s : c->jobs[s].model; }

static inline const float *src_units(const cmp *c, int s)
{
    return s < 0 ? c->h[src_model(c, s)] : c->saes[s].f;
}

/* Rank 0: compare/splitting.json, universality.json, splitting.h5, log lines and facts. */
ms_status app_compare_write(cmp *c, const char *dir, double seconds, ms_err *err);

#endif
