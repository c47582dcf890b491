/* apps/analyze.h: `monosem analyze`'s private state, shared by the driver (stage_analyze.c)
 * and its rank-0 outputs (analyze_write.c): the dictionaries analysed and their results. */
#ifndef MONOSEM_ANALYZE_H
#define MONOSEM_ANALYZE_H

#include "analyze_spill.h"
#include "app.h"
#include "monosem/model.h"
#include "monosem/sae.h"
#include "monosem/units.h"

#define N_MEASURES 3

/* One dictionary: an SAE of the job, or the neurons (the identity dictionary). */
typedef struct dict {
    char name[64];
    bool is_sae;
    char *source;   /* SAE directory or model directory */
    char *out_path; /* its analysis.h5 */
    ms_sae sae;
    bool have_sae;
    int64_t U;
    ms_analysis an;
    bool have_an;
    float *f;         /* (enc_ctx*T, U) codes of one encode (SAE only) */
    float *dirs;      /* (U, d) decoder rows for the logit path (SAE only; rank-local copy) */
    app_spill spill;   /* pass 1's sparse codes, read back by pass 2 (SAE only) */
    bool have_spill;
    double t_encode, t_scan;
    /* rank 0, after the analysis: measures and their medians */
    int32_t *top_token;
    float *measure[N_MEASURES];
    ms_measure_summary summary[N_MEASURES];     /* alive units outside the ultralow cluster */
    ms_measure_summary summary_all[N_MEASURES]; /* every alive unit */
    ms_measure_summary density;
    ms_density density_stats; /* dead / ultralow / rare counts and the log10-density histogram */
    int64_t alive, ultralow;
    double ultralow_cut;
    uint8_t *is_ultralow; /* (U) */
} dict;


typedef struct analyzer {
    app_ctx *app;
    const ms_config *cfg; /* the job (analyze.*, corpus, the saes list) */
    int which;            /* the model analysed: 0 = A, 2 = the control R */
    const char *model_dir;
    ms_tokset ts;
    ms_model model;
    bool have_model;
    ms_model_acts acts;
    ms_hook hook, last_resid;
    int d;
    bool ln_needed, logits_ok;
    app_job_sae *saes;
    int n_saes;     /* the SAEs analysed (this model's), first in saes */
    int n_saes_all; /* entries of saes (freed) */
    dict *dicts;
    int n_dicts;
    int64_t T, n_ctx, n_blocks, blk0, blk1, enc_ctx;
    int B;
    int32_t *tokens; /* (B, T) */
    int64_t ln_fx;   /* Σ σ_t of the final LayerNorm in 2^-24 fixed point (exact) */
    int64_t ln_n;
    double ln_scale;
    double t_read, t_fwd;
    ms_progress prog;
    double done_tokens;
} analyzer;

/* Rank 0: the token bytes table for the dashboards. */
ms_status app_analyze_vocab_table(const analyzer *a, int64_t **offsets, uint8_t **bytes, int64_t *n_vocab, ms_err *err);
/* Rank 0: measures, distributions, density histogram and the analysis.h5 of dictionary di. */
ms_status app_analyze_finish_dict(analyzer *a, int di, const int64_t *top_ids64, const float *top,
                                  const int64_t *bot_ids64, const float *bot, const int64_t *voff,
                                  const uint8_t *vbytes, int64_t nv, ms_err *err);
/* Rank 0: the features-vs-neurons table in the log and the run record. */
void app_analyze_report(analyzer *a);

#endif
