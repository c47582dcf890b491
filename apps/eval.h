/* apps/eval.h: `monosem eval` — the paper's numbers for every SAE of a job on held-out text.
 * eval_metrics.c: the partial sums and what is derived from them (pure, unit-tested; densities
 * by libunits/density.c); eval_splice.c: the replace hook that runs an SAE inside the model's
 * forward; eval_run.c: the distributed pass over the held-out contexts; eval_write.c: the
 * outputs. */
#ifndef MONOSEM_EVAL_H
#define MONOSEM_EVAL_H

#include "app.h"
#include "monosem/model.h"
#include "monosem/sae.h"
#include "monosem/units.h"

/* ---------------------------------------------------------------- partial sums (doubles, so
 * one ms_comm_allreduce_f64 over all of them makes them global) */

/* Per hook the SAEs read: the zero-ablated forward and the model's own neurons there. */
enum {
    EVAL_HOOK_LOSS_ZERO = 0, /* Σ per-token loss with the hook's activation zeroed */
    EVAL_HOOK_KL_ZERO,       /* Σ KL(clean ‖ zero-ablated) */
    EVAL_HOOK_L0,            /* Σ #units > 0 at the hook (neurons firing) */
    EVAL_HOOK_FIXED          /* then d firing counts, one per unit (activation > 0) */
};
/* Per SAE. */
enum {
    EVAL_SAE_LOSS = 0, /* Σ per-token loss with the reconstruction spliced in */
    EVAL_SAE_KL,       /* Σ KL(clean ‖ spliced) */
    EVAL_SAE_SSE,      /* Σ ‖x̂ − x‖² */
    EVAL_SAE_X_SQ,     /* Σ ‖x‖² */
    EVAL_SAE_XHAT_SQ,  /* Σ ‖x̂‖² */
    EVAL_SAE_COS,      /* Σ cos(x, x̂) over rows with x ≠ 0 and x̂ ≠ 0 */
    EVAL_SAE_RATIO,    /* Σ ‖x̂‖/‖x‖ over rows with x ≠ 0 */
    EVAL_SAE_NZ_ROWS,  /* rows with x ≠ 0 */
    EVAL_SAE_COS_ROWS, /* rows with x ≠ 0 and x̂ ≠ 0 */
    EVAL_SAE_L0,       /* Σ #features with f ≠ 0 */
    EVAL_SAE_L1,       /* Σ |f| */
    EVAL_SAE_FIXED     /* then d_sae firing counts (f ≠ 0), then d_in sums of x (for FVU) */
};
/* Global. */
enum {
    EVAL_GLOB_TOKENS = 0, /* predicted tokens (= rows at every hook) */
    EVAL_GLOB_LOSS_CLEAN, /* Σ per-token clean loss */
    EVAL_GLOB_FIXED
};

static inline size_t ms_eval_hook_len(int64_t d) { return EVAL_HOOK_FIXED + (size_t)d; }
static inline size_t ms_eval_sae_len(int64_t d_sae, int64_t d_in)
{
    return EVAL_SAE_FIXED + (size_t)d_sae + (size_t)d_in;
}

/* The derived numbers of one SAE (the paper's definitions; docs/eval.md). */
typedef struct app_eval_result {
    double tokens;
    double loss_clean, loss_sae, loss_zero, loss_recovered; /* nats/token */
    double kl, kl_zero;                                    /* mean KL(clean ‖ ·), nats */
    double mse;      /* Σ‖x̂−x‖² / (N·d) */
    double fvu;      /* Σ‖x̂−x‖² / Σ‖x − mean(x)‖²; explained variance = 1 − fvu */
    double cos;      /* mean over rows of cos(x, x̂) */
    double l2_ratio; /* mean over rows of ‖x̂‖/‖x‖ */
    double l0, l1;   /* mean #active features, mean Σ|f| per token */
    double neuron_l0; /* mean #neurons ≠ 0 at the hook */
    ms_density features, neurons;
} app_eval_result;
/* From global sums: glob (EVAL_GLOB_*), hook (EVAL_HOOK_* + d), sae (EVAL_SAE_* + d_sae + d_in). Pure. */
void app_eval_derive(app_eval_result *r, const double *glob, const double *hook, const double *sae,
                    int64_t d_in, int64_t d_sae, double ultralow, double rare);

/* ---------------------------------------------------------------- the splice */

/* One SAE spliced at its hook. The callback ignores the activation it is handed and
 * reconstructs the CLEAN activation (`clean`, captured in the clean forward), so several
 * splices can resume from one clean forward in any order of hooks that ms_forward_opts'
 * start_at allows. It writes x̂ in the model's units (an SAE with input scale s works on s·x
 * and its x̂ is divided by s) and adds EVAL_SAE_* sums into acc. */
typedef struct app_eval_splice {
    ms_sae *sae;
    const float *clean; /* (rows, d_in) the clean activation at the hook, this batch */
    double *acc;        /* EVAL_SAE_* sums */
    float *f;           /* (chunk, d_sae) scratch */
    float *xhat;        /* (chunk, d_in) scratch */
    int64_t chunk;      /* rows per encode/decode (≤ sae->hp.max_batch) */
    double t_sae;       /* seconds in the SAE (encode, decode, sums) */
} app_eval_splice;
ms_status app_eval_splice_fn(void *user, ms_hook hook, float *act, int B, int T, int d,
                            ms_err *err);
/* Adds the neurons' firing counts (activation > 0) and EVAL_HOOK_L0 of rows (n,d) into acc. */
void app_eval_neuron_sums(double *acc, const float *x, int64_t n, int64_t d);

/* ---------------------------------------------------------------- the stage */

/* The stage's state, shared by the pass (eval_run.c) and its outputs (eval_write.c). */
#define EVAL_RULE                                                                              \
    "held-out split (tokenize's heldout shards concatenated in manifest order) cut into "      \
    "non-overlapping windows of corpus.context tokens: context i is tokens [i*T, i*T+T) and "  \
    "its targets are tokens [i*T+1, i*T+T+1); contexts 0..n-1 are used, n = min(floor("      \
    "eval.tokens/T) (at least 1), floor((split tokens - 1)/T)); every position of every "     \
    "context is predicted (T per context) and reconstructed; no BOS is added and contexts may " \
    "span document boundaries (<|endoftext|> is an ordinary token)"

typedef struct eval_hook {
    ms_hook hook;
    int d;
    float *clean;  /* (B*T, d) clean activation of the current batch */
    float *resid;  /* (B*T, C) last residual stream with the hook zero-ablated */
    double *acc;   /* EVAL_HOOK_* + d, inside the one sums array */
} eval_hook;

typedef struct eval_sae {
    app_job_sae *job;
    char *lens_dir;
    ms_sae sae;
    ms_saelens_info info;
    int hook; /* index into the hooks */
    app_eval_splice splice;
    float *resid; /* (B*T, C) last residual stream with this SAE spliced in */
    double t_tail;
} eval_sae;

typedef struct evaluator {
    const ms_config *cfg;
    const ms_comm *comm;
    ms_model m;
    ms_model_acts a;
    ms_tokset ts;
    int T, B;
    int64_t n_ctx, lo, hi;
    app_job_sae *jobs;
    int n_jobs;
    eval_sae *saes;
    eval_hook hooks[MS_HOOK_KIND_COUNT * 8];
    int n_hooks;
    int *order; /* hook indices, latest hook first (the order resumes must run in) */
    int32_t *win, *tokens, *targets; /* (T+1), (B,T), (B,T) */
    /* Forwards stop at the last residual stream (last_hook); each variant's (B*T, C) copy of it
     * is unembedded in chunks of R rows: the clean chunk first, then each variant against it. */
    ms_hook last_hook;
    float *resid_clean;              /* (B*T, C) */
    int R;                           /* rows per unembedding chunk */
    float *logits_c, *logits_x;      /* (R, V) clean, variant */
    float *lse_c, *lse_x, *loss, *kl; /* (R) each */
    double *pdot, *psum;              /* (R) the clean chunk as a KL reference (ms_kl_ref) */
    float *scratch;                  /* ms_model_unembed_scratch(R) */
    double *sums;
    size_t n_sums;
    double t_clean, t_zero, t_read;
} evaluator;

/* Rank 0: <sae dir>/eval.json, eval_density.h5 and saelens/sparsity.safetensors of SAE s. */
ms_status app_eval_write(const evaluator *e, const eval_sae *s, const app_eval_result *r, double seconds,
                         ms_err *err);


/* COLLECTIVE. Evaluates the SAEs (the job's: app_job_saes; the same list on every rank; they
 * must share one model) on the held-out contexts in one pass; writes <sae dir>/eval.json,
 * <sae dir>/eval_density.h5 and <sae dir>/saelens/sparsity.safetensors (rank 0), run-record
 * facts, and the comparison table. saes stays owned by the caller. */
ms_status app_eval_run(app_ctx *app, app_job_sae *saes, int n_saes, ms_err *err);

#endif
