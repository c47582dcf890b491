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
 * Files: sae.c (RNG, hparams check, stats, export/import), sae_params.c (allocation, init),
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

/* ===================================================================== RNG */

/* Counter-based RNG: output i is a pure function of (key, i). State is two integers: save
 * them to checkpoint; the same seed gives the same stream on every rank. */
typedef struct ms_rng {
    uint64_t key;
    uint64_t counter;
} ms_rng;

/* key derived from (seed, stream) so independent purposes get independent streams. */
void ms_rng_init(ms_rng *r, uint64_t seed, uint64_t stream);
uint64_t ms_rng_u64(ms_rng *r);
/* Uniform in [0,1) with 53 random bits. */
double ms_rng_uniform(ms_rng *r);
/* Standard normal (Box-Muller, consumes two outputs). */
double ms_rng_normal(ms_rng *r);

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

/* Fresh parameters, identical on every rank for the same rng state:
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
ms_status ms_sae_save_saelens(const ms_sae *sae, const char *dir, const float *log10_density,
                              const ms_saelens_meta *meta, ms_err *err);
/* Writes (replaces) dir/sparsity.safetensors: log10_density (d_sae) and its source. */
ms_status ms_sae_write_sparsity(const char *dir, const float *log10_density, int64_t d_sae,
                                const char *source, ms_err *err);
/* Reads DIR/cfg.json's d_in and d_sae into *d_in, *d_sae (either may be NULL). */
ms_status ms_sae_saelens_dims(const char *dir, int64_t *d_in, int64_t *d_sae, ms_err *err);
/* Loads DIR/sae_weights.safetensors into an initialised sae of matching shapes (import). */
ms_status ms_sae_load_saelens(ms_sae *sae, const char *dir, ms_err *err);

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
ms_status ms_sae_open_saelens(ms_sae *sae, const char *dir, int64_t max_batch,
                              ms_saelens_info *info, ms_err *err);

/* ===================================================================== analysis */
/* What each unit (an SAE feature, or a neuron: the identity dictionary) responds to, from its
 * activations alone: nothing here knows the model. docs/analysis.md defines every quantity.
 * libsae/analysis_topk.c (bounded per-slot sets), analysis_scan.c (what a batch adds, and the
 * collective merges), analysis_measures.c (monosemanticity measures), analysis_write.c (the
 * analysis.h5 file). Activations come as (tokens, units) row-major, tokens in context order. */

/* Per-slot bounded sets keeping the k entries with the smallest (key, pos). An entry is an
 * ms_topk_entry header followed by w floats (the unit's activations on the window) and w int32
 * (the window's token ids). While pushing, a slot is a max-heap (root = the entry to evict);
 * after ms_topk_sort (or a merge) its entries are in ascending order, empty ones (pos -1) last. */
typedef struct ms_topk_entry {
    uint64_t key; /* smaller is better */
    int64_t pos;  /* global token position ctx*T + t (ties: smaller wins); -1 = empty */
    float act;    /* the unit's activation at pos */
    int32_t next; /* token after pos in its context; -1 at the context's last position */
} ms_topk_entry;

typedef struct ms_topk {
    int64_t n_slots;
    int k;              /* capacity per slot */
    int w;              /* window tokens per entry */
    size_t entry_bytes; /* sizeof(ms_topk_entry) + 8*w */
    unsigned char *mem; /* (n_slots, k) entries, owned */
    int32_t *n;         /* (n_slots) entries held */
    unsigned char *scratch; /* 2k+1 entries (merges, sorting) */
} ms_topk;

ms_status ms_topk_init(ms_topk *t, int64_t n_slots, int k, int w, ms_err *err);
void ms_topk_free(ms_topk *t); /* safe on a zeroed struct */
ms_topk_entry *ms_topk_at(const ms_topk *t, int64_t slot, int i);
float *ms_topk_entry_acts(const ms_topk *t, ms_topk_entry *e);     /* (w) */
int32_t *ms_topk_entry_tokens(const ms_topk *t, ms_topk_entry *e); /* (w) */
/* Key of the worst entry held when the slot is full, UINT64_MAX otherwise: an entry with a
 * larger key can never enter. */
uint64_t ms_topk_bar(const ms_topk *t, int64_t slot);
/* Offers (key, pos): returns the entry to fill (header set; window payload left to the
 * caller) if it enters the slot, NULL otherwise. */
ms_topk_entry *ms_topk_push(ms_topk *t, int64_t slot, uint64_t key, int64_t pos);
/* Sorts every slot ascending by (key, pos); n unchanged. No pushes afterwards. */
void ms_topk_sort(ms_topk *t);
/* Merge of two slot arrays (n slots each, laid out like t->mem): inout := the k best of the
 * union, sorted, empties last. Associative and commutative. ctx is the ms_topk. */
void ms_topk_merge(void *ctx, void *inout, const void *in, size_t n, size_t item_bytes);
/* Order key of an activation a > 0 for top-k: larger activations get smaller keys. */
uint64_t ms_topk_key_act(float a);
/* The interval-sampling hash h(seed, unit, pos) of docs/analysis.md. */
uint64_t ms_analysis_hash(uint64_t seed, int64_t unit, int64_t pos);

typedef struct ms_analysis_opts {
    int64_t top_k, window, intervals, interval_samples, hist_bins;
    int64_t context; /* T: tokens per context */
    uint64_t seed;
} ms_analysis_opts;

/* The statistics of one dictionary (n_units units) on one rank; after the reduces, complete on
 * rank 0 (top and iv sorted there). */
typedef struct ms_analysis {
    ms_analysis_opts o;
    int64_t n_units;
    ms_topk top;       /* n_units slots of top_k */
    ms_topk iv;        /* n_units*intervals slots of interval_samples (slot u*I + i) */
    int64_t *count;    /* (U) active tokens */
    int64_t *sum_fx;   /* (U) Σ activations in 2^-24 fixed point (exact, order independent) */
    int64_t *hist;     /* (U, hist_bins) */
    int64_t *iv_count; /* (U, intervals) */
    float *max;        /* (U) known on every rank after ms_analysis_reduce_top */
    float *bar_act;    /* (U) pass-1 admission: entries need act >= bar_act[u] */
    uint64_t *unit_hash; /* (U) the per-unit half of the hash */
    int64_t tokens;    /* tokens scanned (this rank; global after the reduce) */
} ms_analysis;

/* Allocates everything for n_units (bounded by units × (top_k + intervals × samples) entries
 * plus units × (hist_bins + intervals) counters). ms_analysis_free is safe on a zeroed struct. */
ms_status ms_analysis_init(ms_analysis *a, int64_t n_units, const ms_analysis_opts *o, ms_err *err);
void ms_analysis_free(ms_analysis *a);
/* The bytes ms_analysis_init allocates for n_units (an up-front estimate for a job's check). */
double ms_analysis_bytes(int64_t n_units, const ms_analysis_opts *o);
/* Pass 1: acts (nb*T, U) of contexts ctx0 … ctx0+nb−1 and their tokens (nb, T): top-k, count,
 * sum. Contexts must come in increasing order on a rank. */
void ms_analysis_scan_top(ms_analysis *a, const float *acts, const int32_t *tokens, int64_t nb,
                          int64_t ctx0);
/* COLLECTIVE. Sums counts, sums and tokens over ranks; merges top-k onto rank 0 (sorted there);
 * broadcasts the per-unit max (top activation, 0 for a dead unit) to every rank. */
ms_status ms_analysis_reduce_top(ms_analysis *a, const ms_comm *comm, ms_err *err);
/* Pass 2 (after reduce_top): interval samples, interval counts and the histogram. */
void ms_analysis_scan_intervals(ms_analysis *a, const float *acts, const int32_t *tokens,
                                int64_t nb, int64_t ctx0);
/* COLLECTIVE. Sums histograms and interval counts; merges interval samples onto rank 0. */
ms_status ms_analysis_reduce_intervals(ms_analysis *a, const ms_comm *comm, ms_err *err);

/* Monosemanticity measures of every unit from its sample = its top-k and interval samples, each
 * position once (rank 0 after both reduces; docs/analysis.md):
 * top_token (U), top_token_share (U), eff_tokens (U), and, when logit_top_ids (U, n_logits) is
 * non-NULL, logit_agreement (U) (NaN otherwise). Dead units: NaN, top_token -1. */
ms_status ms_analysis_measures(const ms_analysis *a, const int32_t *logit_top_ids, int n_logits,
                               int32_t *top_token, float *top_token_share, float *eff_tokens,
                               float *logit_agreement, ms_err *err);

/* Distribution of a measure over the units where it is finite: median and quartiles (linear
 * interpolation, as NumPy's default), n_finite, and hist (n_bins) over [lo, hi] (values
 * outside clamp to the end bins). */
typedef struct ms_measure_summary {
    int64_t n;
    double median, q25, q75;
} ms_measure_summary;
ms_status ms_measure_summarize(const float *v, int64_t n, double lo, double hi, int n_bins,
                               int64_t *hist, ms_measure_summary *out, ms_err *err);

/* The measures in order, and the fixed histogram range of measure m: top_token_share and
 * logit_agreement [0, 1], eff_tokens [1, top_k + intervals * interval_samples]. */
#define MS_N_MEASURES 3
#define MS_MEASURE_BINS 20
void ms_measure_range(int m, const ms_analysis_opts *o, double *lo, double *hi);

/* The density below which units form an "ultralow" cluster (the paper sets its ultralow-density
 * features apart: a separate mode of the log-density histogram, not real features): Otsu's
 * threshold on the log10 densities of the units with count > 0 (tokens analysed), kept only
 * when the two classes' mean log-densities are at least one decade apart; 0 = no cluster. The
 * same rule for features and neurons. */
double ms_ultralow_cut(const int64_t *count, int64_t n, int64_t tokens);

/* Everything analysis.h5 holds besides the ms_analysis (docs/analysis.md). NULL logit arrays:
 * no logit datasets. attr_kv: n_attr string pairs added to the root. */
typedef struct ms_analysis_extra {
    const int32_t *logit_top_ids, *logit_bottom_ids; /* (U, n_logits) */
    const float *logit_top, *logit_bottom;           /* (U, n_logits) */
    int n_logits;
    const int32_t *top_token;                       /* (U) */
    const uint8_t *ultralow;                        /* (U) 1: in the ultralow cluster */
    double ultralow_cut;                            /* its density threshold (0: none) */
    const float *top_token_share, *eff_tokens, *logit_agreement; /* (U) */
    const int64_t *vocab_offsets; /* (n_vocab+1) */
    const uint8_t *vocab_bytes;   /* (vocab_offsets[n_vocab]) */
    int64_t n_vocab;
    const char *const *attr_kv;
    int n_attr;
} ms_analysis_extra;
/* Rank 0 after both reduces: writes path (temporary name, then rename). Not collective. */
ms_status ms_analysis_write(const ms_analysis *a, const ms_analysis_extra *x, const char *path,
                            ms_err *err);

/* ===================================================================== comparing units
 * Feature splitting and universality (libsae/correlate.c, libsae/splitting.c): statistics over
 * the activations of two sets of units (features of two SAEs, or two models' neurons) on the
 * same rows, and over decoder directions. No model knowledge; not collective — the caller
 * sums ms_corr.sums over ranks (ONE ms_comm_allreduce_f64 of n_sums doubles) before
 * ms_corr_best. */

/* Pearson correlation sums between units a (da) and the columns [b0,b1) of units b (db):
 *   r_ij = (n·Σa_i b_j − Σa_i·Σb_j) / √((n·Σa_i² − (Σa_i)²)(n·Σb_j² − (Σb_j)²)).
 * Memory: da·(b1−b0) doubles + as many floats (the GEMM tile): bounded by the unit counts,
 * never by the rows; a large pair is covered by several column blocks (one pass each). */
typedef struct ms_corr {
    int64_t da, db; /* units of a; units of b (all of them) */
    int64_t b0, b1; /* the columns of b this block holds */
    double *sums;   /* one slab: [n | Σa (da) | Σa² (da) | Σb (nb) | Σb² (nb) | Σab (da,nb)] */
    size_t n_sums;
    float *tmp;     /* (da,nb) GEMM output of one ms_corr_add */
} ms_corr;
/* Columns of b per block so that one block takes at most `bytes` (at least 1, at most db). */
int64_t ms_corr_block_cols(int64_t da, int64_t db, size_t bytes);
/* Allocates (and touches) the sums, zeroed. Caller frees with ms_corr_free (zeroed-safe). */
ms_status ms_corr_init(ms_corr *c, int64_t da, int64_t db, int64_t b0, int64_t b1, ms_err *err);
void ms_corr_free(ms_corr *c);
/* Adds n rows: xa (n,da), xb (n,db) (only columns [b0,b1) are read). One sgemm (float within
 * the call, accumulated in double across calls) plus O(n·(da+nb)) sums. */
void ms_corr_add(ms_corr *c, const float *xa, const float *xb, int64_t n);
/* Best matches by r within this block. row_max/row_arg (da) are MERGED (initialise them to
 * -INFINITY / -1 before the first block); col_max/col_arg (db): entries [b0,b1) written. A
 * unit with no variance over the rows (never fires, or constant) has r = NaN with everything
 * and never wins; a unit whose every r is NaN ends at -INFINITY / -1. Ties: lowest index. */
void ms_corr_best(const ms_corr *c, float *row_max, int64_t *row_arg, float *col_max, int64_t *col_arg);

/* Cosine similarity between the rows of Wa (da,d) and Wb (db,d) (decoder directions): for each
 * row of a its best row of b (row_max/row_arg (da)) and for each row of b its best row of a
 * (col_max/col_arg (db)); zero rows match nothing (-INFINITY / -1). Ties: lowest index.
 * Memory: unit-norm copies of both plus a 256·db tile. */
ms_status ms_decoder_best(float *row_max, int64_t *row_arg, float *col_max, int64_t *col_arg, const float *Wa,
                          const float *Wb, int64_t da, int64_t db, int64_t d, ms_err *err);
/* Families of split features: feature j of the large dictionary (db) joins the family of its
 * best match col_arg[j] in the small one (da) when col_max[j] >= min: member[j] = that index
 * or -1; size[i] (da) = members of small feature i. Returns the small features with at least
 * one member. */
int64_t ms_families(int64_t *member, int64_t *size, const float *col_max, const int64_t *col_arg, int64_t db,
                    int64_t da, float min);
/* Median of the finite entries of x (NaN and ±inf skipped; NaN if none); scratch holds n. */
double ms_median_f32(const float *x, int64_t n, float *scratch);
/* counts (nbins) of the finite entries of x over [lo,hi) in equal bins (outside: clamped to
 * the end bins). Returns the number counted. */
int64_t ms_histogram_f32(int64_t *counts, int nbins, double lo, double hi, const float *x, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
