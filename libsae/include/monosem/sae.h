/* monosem/sae.h: the one public header of libmssae — SAE parameters as slabs, the five
 * architectures' forward/backward, Adam step, initialisation, resampling, schedules. */
#ifndef MONOSEM_SAE_H
#define MONOSEM_SAE_H

#include "monosem/io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================== conventions
 *
 * Shapes are row-major, SAELens names and shapes:
 *   W_enc (d_in,d_sae)  b_enc (d_sae)  W_dec (d_sae,d_in)  b_dec (d_in)  threshold (d_sae)
 * Row j of W_dec is feature j's direction ("decoder column" in the paper's notation);
 * column j of W_enc is feature j's encoder ("encoder row" in the paper).
 *
 *   x̄ = s·x − b_dec          s = input_scale (1 unless april-2024 scaling is set)
 *   z = x̄·W_enc + b_enc       (B,d_sae) pre-activations
 *   f = act(z)                relu | topk | batchtopk | jumprelu (see ms_sae_arch in io.h)
 *   x̂ = f·W_dec + b_dec      (B,d_in), reconstruction of s·x
 *
 * Losses (B = the GLOBAL batch, mean over it; "Σ_d" sums over d_in):
 *   relu-l1:    (1/(B·d_in))·Σ‖x̂−s·x‖²          + λ(t)/B·Σ|f|                (the paper, issue 5)
 *   topk:       (1/(B·d_in))·Σ‖x̂−s·x‖²          + aux_coeff·AuxK
 *   batchtopk:  as topk (top k·B_local over the local batch while training)
 *   jumprelu:   (1/(B·d_in))·Σ‖x̂−s·x‖²          + l0_coeff/B·Σ H(z−θ)
 *   april-2024: (1/B)·Σ‖x̂−s·x‖²  (sum over d_in, so λ≈5 means what Anthropic meant)
 *                                                + λ(t)/B·Σ_j f_j·‖W_dec,j‖
 *   AuxK = scale·(1/(B·d_in))·Σ‖ê − stopgrad(s·x − x̂)‖², ê = Σ_{top k_aux dead j} relu(z_j)·W_dec,j,
 *          scale = min(1, n_dead/k_aux); dead = not fired in the last dead_tokens tokens.
 *   jumprelu: f = z·H(z−θ), θ = exp(log θ) per feature; ∂/∂θ by the straight-through
 *          estimator with the rectangle kernel of width `bandwidth`. The params slab stores θ
 *          itself (so export is direct) but the grads/Adam slabs hold ∂L/∂(log θ) and the step
 *          updates log θ: θ ← θ·exp(−Δ).
 *   batchtopk: threshold (all entries equal) is the running inference threshold, not trained:
 *          θ ← (1−0.01)·θ + 0.01·mean over ranks of the batch's smallest selected activation
 *          (first step: θ := that value). Encoding at inference uses f = z·H(z−θ).
 * Statistics are raw sums (see ms_sae_stat) so they can be allreduced; the reported MSE is
 * always Σ‖x̂−s·x‖²/(B·d_in) whatever the loss normalisation.
 *
 * Arrays: every x, f, x̂ argument is row-major (rows, d_in) or (rows, d_sae) float, rows = the
 * call's B or n; the caller owns every array it passes and every output buffer (sized as the
 * declaration's comment says). Ownership: ms_sae_init allocates the slabs and the workspace
 * inside ms_sae and ms_sae_free releases them (safe on a zeroed struct, and after a failed
 * init); nothing returned by libsae's SAE calls needs freeing.
 * Collectives: none. libsae calls no MPI; ms_sae_forward_backward's grads and stats are this
 * rank's sums over B_global, which the caller allreduces before ms_sae_step.
 * Threads: kernels use OpenBLAS's thread count (openblas_set_num_threads) for BLAS calls and
 * the same count for their own loops (OpenMP). No allocation happens after ms_sae_init.
 * Results are deterministic for a given thread count (per-feature sums run in a fixed order).
 * One ms_sae is not safe to use from two threads at once (the step and encode share its
 * workspace); distinct ms_sae objects are independent.
 * Files: sae.c (hparams check, stats, export/import), sae_params.c (allocation, init),
 * sae_encode.c (encoder, encode/decode), sae_forward.c + sae_backward.c (forward_backward),
 * sae_adam.c (step, schedules), sae_resample.c, saelens.c; kernels sae_kernels.c.
 *
 * Paths: the dense path is 5 GEMMs + 1 GEMV (db_dec = Σ_b ∂L/∂x̂ − W_enc·db_enc replaces the
 * sixth GEMM autograd spends on ∂L/∂x̄). Once f is sparse (active fraction ≤ 12%, measured on
 * every batch; topk/batchtopk always) the decoder, ∂L/∂f, ∂W_dec and ∂W_enc/∂b_enc touch only
 * the active entries; only the encoder GEMM stays dense.
 * Memory: the workspace holds two (max_batch, d_sae) float buffers plus sparse lists sized for
 * 12% of them (topk: max_batch·k) — about 11·max_batch·d_sae bytes.
 */

/* ===================================================================== hyper-parameters */

typedef struct ms_sae_hparams {
    int arch;          /* ms_sae_arch (io.h) */
    int enc_transpose; /* relu-l1: initialise W_enc as W_decᵀ (1) instead of Kaiming uniform (0) */
    int64_t d_in, d_sae;
    int64_t max_batch; /* largest LOCAL batch passed to forward_backward (workspace size) */
    int64_t k, k_aux;  /* topk/batchtopk: active per row; AuxK dead latents per row */
    double l1_coeff;   /* λ (relu-l1, april-2024) */
    double aux_coeff;  /* AuxK coefficient (topk, batchtopk); 0 disables AuxK */
    int64_t dead_tokens; /* a latent not fired in this many tokens is dead (AuxK) */
    double threshold_init, bandwidth, l0_coeff; /* jumprelu (threshold_init also batchtopk's start) */
    double lr, beta1, beta2, adam_eps;
    int64_t steps;             /* total steps, for the schedules */
    double lambda_warmup_frac; /* λ rises linearly from 0 over this fraction of steps (0: none) */
    double lr_decay_frac;      /* lr falls linearly to 0 over this final fraction (0: none) */
    double grad_clip;          /* clip the global grad norm to this (0: no clipping) */
    double sparse_density;     /* use the sparse kernels when the active fraction of f is at most
                                * this; 0 = the built-in crossover, <0 = always dense */
} ms_sae_hparams;

/* Checks ranges (d_in, d_sae, k ≤ d_sae, ...); err names the offending key. */
ms_status ms_sae_hparams_check(const ms_sae_hparams *hp, ms_err *err);

/* Pure schedules of the step (0-based), so a resumed run is exact. lr_at: constant lr, then
 * linear decay to 0 over the last lr_decay_frac of `steps`. l1_at: λ warmed up linearly over
 * the first lambda_warmup_frac of `steps` (λ·(step+1)/warmup_steps, capped at λ); λ is
 * l1_coeff, or l0_coeff for jumprelu. */
double ms_sae_lr_at(const ms_sae_hparams *hp, int64_t step);
double ms_sae_l1_at(const ms_sae_hparams *hp, int64_t step);

/* ===================================================================== the SAE */

/* Pointers into one slab. Every slab (params, grads, adam_m, adam_v) has the same layout:
 * W_enc | b_enc | W_dec | b_dec | threshold, n_params floats in total. */
typedef struct ms_sae_tensors {
    float *W_enc;     /* (d_in,d_sae) */
    float *b_enc;     /* (d_sae) */
    float *W_dec;     /* (d_sae,d_in) */
    float *b_dec;     /* (d_in) */
    float *threshold; /* (d_sae) jumprelu θ, batchtopk inference threshold; unused otherwise */
} ms_sae_tensors;

/* Offsets (in floats) of each tensor inside a slab, and the total. */
typedef struct ms_sae_layout {
    size_t W_enc, b_enc, W_dec, b_dec, threshold, n_params;
} ms_sae_layout;

typedef struct ms_sae_ws ms_sae_ws; /* private workspace (sae_internal.h) */

typedef struct ms_sae {
    ms_sae_hparams hp;
    ms_sae_layout layout;
    float *params, *grads, *adam_m, *adam_v; /* each n_params floats, owned */
    ms_sae_tensors p, g, m, v;               /* views into the four slabs */
    float input_scale;  /* s above; 1 by default (april-2024: ms_sae_input_scale) */
    int64_t step;       /* completed optimizer steps (Adam's t = step + 1 during a step) */
    int64_t *since_fired; /* (d_sae) tokens since each latent last fired (global, updated in
                           * ms_sae_step from the allreduced counts); checkpoint it */
    bool threshold_set;   /* batchtopk: running threshold initialised */
    ms_sae_ws *ws;
} ms_sae;

/* Allocates and zeroes the four slabs, since_fired and the workspace for hp->max_batch rows
 * (every page touched here, none in the step). Params are zero: call ms_sae_init_params.
 * On error sae is left freed. ms_sae_free frees everything (safe on a zeroed struct). */
ms_status ms_sae_init(ms_sae *sae, const ms_sae_hparams *hp, ms_err *err);
void ms_sae_free(ms_sae *sae);

/* Fresh parameters, identical on every rank for the same rng state (ms_rng: monosem/rng.h):
 * - relu-l1: W_enc and W_dec independent Kaiming-uniform (bound √(6/fan_in), fan_in d_in
 *   resp. d_sae), then W_dec rows normalised to unit norm (the paper: untied).
 * - topk, batchtopk, jumprelu: W_dec Kaiming-uniform, rows normalised, W_enc = W_decᵀ.
 * - april-2024: W_dec rows random directions of norm 0.1, W_enc = W_decᵀ.
 * b_enc = 0, b_dec = 0 (set it with ms_sae_geometric_median), threshold = threshold_init
 * (jumprelu) or 0 (batchtopk: estimated in training). Adam moments, step, since_fired reset. */
void ms_sae_init_params(ms_sae *sae, ms_rng *rng);

/* Geometric median of n points (n,d) by Weiszfeld iterations, started at the mean; stops
 * after max_iter or when the step is below tol·(mean distance). out (d). Returns the number
 * of iterations. Pure and deterministic (double accumulation). */
int ms_sae_geometric_median(float *out, const float *x, int64_t n, int64_t d, int max_iter,
                            double tol);

/* april-2024 input scaling: s = √d / mean‖x‖. Data-parallel use: each rank sums norms with
 * ms_sae_norm_sum, allreduce (sum, count), then ms_sae_input_scale(sum, count, d). */
double ms_sae_norm_sum(const float *x, int64_t n, int64_t d);
double ms_sae_input_scale(double norm_sum, double count, int64_t d);

/* ===================================================================== training step */

/* Statistics of one forward_backward, as doubles in one contiguous array so ONE
 * ms_comm_allreduce_f64 over ms_sae_stats_len() entries makes them global. Sums over rows. */
enum ms_sae_stat {
    MS_SAE_STAT_ROWS = 0,   /* rows (B) */
    MS_SAE_STAT_LOSS,       /* total loss contribution (already divided by B_global) */
    MS_SAE_STAT_SSE,        /* Σ‖x̂ − s·x‖² (MSE = SSE/(ROWS·d_in)) */
    MS_SAE_STAT_X_SQ,       /* Σ‖s·x‖²  (FVU = SSE/(X_SQ − ‖X_SUM‖²/ROWS)) */
    MS_SAE_STAT_L1,         /* Σ|f| */
    MS_SAE_STAT_L0,         /* Σ #active (L0 = L0/ROWS) */
    MS_SAE_STAT_SPARSITY,   /* the sparsity term of the loss (÷B_global; λ, l0 or 0) */
    MS_SAE_STAT_AUX,        /* the AuxK term of the loss (÷B_global) */
    MS_SAE_STAT_THRESH_SUM, /* batchtopk: this rank's smallest selected activation */
    MS_SAE_STAT_THRESH_N,   /* batchtopk: 1 if this rank contributed a value */
    MS_SAE_STAT_SPARSE,     /* 1 if the sparse kernels were used on this rank */
    MS_SAE_STAT_FIXED       /* number of scalar stats; then: */
    /* [MS_SAE_STAT_FIXED, +d_sae): firing count per feature (rows where f_j > 0)
     * [MS_SAE_STAT_FIXED+d_sae, +d_in): X_SUM = Σ s·x per dimension (for FVU) */
};
size_t ms_sae_stats_len(const ms_sae *sae);
/* Derived metrics from (global) stats. */
double ms_sae_stats_mse(const ms_sae *sae, const double *stats);
double ms_sae_stats_fvu(const ms_sae *sae, const double *stats);
double ms_sae_stats_l0(const double *stats);

/* Forward and backward on B_local rows x (B_local,d_in) (B_local ≤ hp.max_batch):
 * writes grads (the whole grads slab is overwritten) scaled by 1/B_global so that summing the
 * slab over ranks gives the gradient of the global-batch mean loss; writes stats
 * (ms_sae_stats_len doubles, overwritten). Uses λ = ms_sae_l1_at(step) and the dead mask from
 * since_fired. Not collective. MS_ERR_USAGE if B_local is out of range; MS_ERR_NUMERIC if the
 * loss is not finite (grads then undefined). */
ms_status ms_sae_forward_backward(ms_sae *sae, const float *x, int64_t B_local,
                                  int64_t B_global, double *stats, ms_err *err);

/* What a step did. */
typedef struct ms_sae_step_info {
    double lr;
    double grad_norm; /* global grad norm before clipping (computed when clipping is on) */
} ms_sae_step_info;

/* After the grads slab and stats were allreduced (identical on every rank): relu-l1 removes
 * from each W_dec row's gradient its component along the row; clipping by global norm when
 * grad_clip > 0; Adam (bias-corrected, t = step+1) with learning rate lr; relu-l1 then
 * renormalises W_dec rows; jumprelu updates log θ; batchtopk updates the running threshold;
 * since_fired is updated from the firing counts; step += 1. Deterministic: identical on every
 * rank given identical inputs. info may be NULL. MS_ERR_NUMERIC if the update is not finite. */
ms_status ms_sae_step(ms_sae *sae, double lr, const double *stats, ms_sae_step_info *info,
                      ms_err *err);

/* ===================================================================== dead latents, resampling */

/* mask[j] = 1 if latent j has not fired for at least `tokens` tokens (since_fired). Returns
 * the count. */
int64_t ms_sae_dead_mask(const ms_sae *sae, int64_t tokens, uint8_t *mask);

/* Per-input loss of n rows x (n,d_in) with the current params (the arch's loss for one row,
 * without AuxK), for resampling: out (n). Chunked by max_batch; uses the workspace, so not
 * during a forward_backward. */
void ms_sae_loss_per_input(ms_sae *sae, const float *x, int64_t n, float *out);

/* The paper's resampling, a pure function of its inputs (identical on all ranks when the
 * inputs and rng are): for each dead latent j (ascending j) draw an input i with probability
 * ∝ loss[i]²; W_dec row j := (s·x_i − b_dec)/‖s·x_i − b_dec‖ (the paper: the input,
 * normalised; here as the encoder sees it, centred on b_dec); W_enc
 * column j := that unit vector × 0.2 × mean norm of the alive W_enc columns (1 if none alive);
 * b_enc_j := 0; Adam m and v zeroed for those entries; since_fired_j := 0. If every loss is 0,
 * inputs are drawn uniformly; a zero input leaves its latent as it was. One rng draw per dead
 * latent. Returns the number resampled, -1 if out of memory (nothing changed then). */
int64_t ms_sae_resample(ms_sae *sae, const uint8_t *dead, const float *x, const float *loss,
                        int64_t n, ms_rng *rng);

/* ===================================================================== inference */

/* f (B,d_sae) dense codes for x (B,d_in), B ≤ max_batch (uses the workspace): relu-l1 and
 * april-2024 ReLU; topk top-k; batchtopk and jumprelu z·H(z−θ) with the stored threshold. */
void ms_sae_encode(ms_sae *sae, float *f, const float *x, int64_t B);
/* xhat (B,d_in) = f·W_dec + b_dec, in scaled units (divide by input_scale for x units). */
void ms_sae_decode(const ms_sae *sae, float *xhat, const float *f, int64_t B);
/* The same for f with few nonzeros (inference after a sparse encode): x̂ row = b_dec + Σ over
 * f_j ≠ 0 of f_j·W_dec row j, in ascending j (threads over rows). Equal to ms_sae_decode up to
 * summation order; cheaper when the active fraction is below a few percent. */
void ms_sae_decode_sparse(const ms_sae *sae, float *xhat, const float *f, int64_t B);

/* SAELens-space tensors with the input scale folded in (W_enc·s, W_dec/s, b_dec/s; threshold
 * as θ). Any output may be NULL. Shapes as above. */
void ms_sae_export(const ms_sae *sae, float *W_enc, float *b_enc, float *W_dec, float *b_dec,
                   float *threshold);
/* Inverse of ms_sae_export with input_scale = 1: loads SAELens tensors (threshold may be NULL:
 * 0/threshold_init). Resets Adam state, step and since_fired. */
void ms_sae_import(ms_sae *sae, const float *W_enc, const float *b_enc, const float *W_dec,
                   const float *b_dec, const float *threshold);

/* ===================================================================== SAELens directory (libsae/saelens.c) */
/* Not collective. Layout (SAELens v6, as its loader reads a local directory): cfg.json with
 * architecture ("standard" | "topk" | "jumprelu"; batchtopk is saved as jumprelu with its
 * threshold, april-2024 as standard), d_in, d_sae, dtype, device, apply_b_dec_to_input true,
 * normalize_activations and reshape_activations "none", k (topk only, top level), and a
 * `metadata` object (sae_lens_version, model_name, hook_name, context_size, dataset_path,
 * prepend_bos = false, monosem_arch, ...); sae_weights.safetensors (W_enc, b_enc, W_dec, b_dec
 * [, threshold], F32, any input scale folded in); sparsity.safetensors ("sparsity" (d_sae) =
 * log10(density + 1e-10), its source in the safetensors metadata). */
#define MS_SAELENS_VERSION "6.0.0"

/* Provenance written into cfg.json's metadata. Strings may be NULL. */
typedef struct ms_saelens_meta {
    const char *hook_name;
    const char *model_name;
    const char *dataset_path;
    int64_t context_size;       /* tokens per context; 0 = omitted */
    double l1_coefficient;
    int64_t training_tokens;
    const char *density_source; /* what the sparsity densities were measured on */
} ms_saelens_meta;

/* Writes cfg.json, sae_weights.safetensors and, if log10_density is non-NULL,
 * sparsity.safetensors into dir (created), each atomically. meta may be NULL. */
ms_status ms_saelens_save(const ms_sae *sae, const char *dir, const float *log10_density,
                              const ms_saelens_meta *meta, ms_err *err);
/* Writes (replaces) dir/sparsity.safetensors: log10_density (d_sae) and its source. */
ms_status ms_saelens_write_sparsity(const char *dir, const float *log10_density, int64_t d_sae,
                                const char *source, ms_err *err);
/* Reads DIR/cfg.json's d_in and d_sae into *d_in, *d_sae (either may be NULL). */
ms_status ms_saelens_dims(const char *dir, int64_t *d_in, int64_t *d_sae, ms_err *err);
/* Loads DIR/sae_weights.safetensors into an initialised sae of matching shapes (import). */
ms_status ms_saelens_load(ms_sae *sae, const char *dir, ms_err *err);

/* What cfg.json says about an SAE (v6 metadata, or the older flat layout). */
typedef struct ms_saelens_info {
    char architecture[16]; /* standard | topk | jumprelu */
    char monosem_arch[32]; /* the recipe it was trained with, "" if not monosem's */
    char hook_name[128];
    char model_name[128];
    int64_t context_size;  /* 0 if absent */
    int64_t k;             /* topk */
    bool prepend_bos;      /* as SAELens reads it (true when absent) */
} ms_saelens_info;
/* Opens a SAELens directory for inference: reads cfg.json, initialises sae (ms_sae_init for
 * max_batch rows; caller frees with ms_sae_free) with the encoder SAELens would use —
 * standard: ReLU (relu-l1), topk: top-k with cfg's k (v6: top level; 100 when absent, as
 * SAELens), jumprelu: z·[z > θ] — and loads the weights with input_scale 1 (the export folds
 * any scale in). apply_b_dec_to_input false or a normalize_activations other than "none" are
 * MS_ERR_UNSUPPORTED. On error sae is left freed. */
ms_status ms_saelens_open(ms_sae *sae, const char *dir, int64_t max_batch,
                              ms_saelens_info *info, ms_err *err);

#ifdef __cplusplus
}
#endif
#endif
