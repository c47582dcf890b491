/* monosem/units.h: the one public header of libmsunits — the analysis of units (SAE features
 * and MLP neurons alike): top-activating contexts, interval samples, monosemanticity measures,
 * density, activation correlation, feature splitting, universality. */
#ifndef MONOSEM_UNITS_H
#define MONOSEM_UNITS_H

#include "monosem/io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================== conventions
 *
 * A "unit" is one coordinate of a dictionary: an SAE feature (its code f_j) or a neuron (the
 * identity dictionary over the hook's activations). Nothing here knows the model or the SAE:
 * every function takes plain arrays, so features and neurons go through the same code.
 *
 * Shapes are row-major. Activations come as (tokens, units), tokens in context order (context
 * c, position t is row c·T + t). Decoder directions are (units, d). Densities are fractions of
 * tokens on which a unit is > 0 (features: f ≠ 0, which for the ReLU-family codes is f > 0).
 *
 * Ownership: each *_init allocates what its struct points to and the matching *_free releases
 * it (safe on a zeroed struct); on an init error the struct is left freed. Every other function
 * writes into caller-owned arrays whose sizes the comments give, and allocates nothing it keeps.
 *
 * COLLECTIVE calls (every rank of the ms_comm, in the same order) are marked so: the two
 * analysis reduces. All else is rank-local; the correlation sums are reduced by the caller
 * (one ms_comm_allreduce_f64 of ms_corr.n_sums doubles).
 *
 * Threads: no threads of their own; correlation.c and splitting.c call OpenBLAS sgemm with its
 * thread count. Results depend only on the data and the options (rank-count independent for
 * the analysis: fixed-point sums and (key, pos) ordered merges).
 */

/* ===================================================================== top contexts, interval samples
 * What each unit responds to, from its activations alone: nothing here knows the model.
 * docs/analysis.md defines every quantity. top_contexts.c (bounded per-slot sets), unit_scan.c
 * (what a batch adds, and the collective merges), measures.c (monosemanticity measures),
 * analysis_file.c (the analysis.h5 file). */

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
    const int64_t *density_hist; /* (MS_DENSITY_HIST_BINS) ms_density.hist of the units; NULL: none */
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
 * Feature splitting and universality (correlation.c, splitting.c, universality.c): statistics over
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
/* Order statistics of best-match vectors (distribution.c). Median of the finite entries of x (NaN and ±inf skipped; NaN if none); scratch holds n. */
double ms_median_f32(const float *x, int64_t n, float *scratch);
/* counts (nbins) of the finite entries of x over [lo,hi) in equal bins (outside: clamped to
 * the end bins). Returns the number counted. */
int64_t ms_histogram_f32(int64_t *counts, int nbins, double lo, double hi, const float *x, int64_t n);

/* ===================================================================== density
 * density.c: how often units fire, and the one log10-density histogram every stage uses
 * (eval's eval.json, analyze's analysis.h5, the report's plot). */

/* Bins of the log10-density histogram: [-10, 0] in steps of 0.25 (dead units, density 0, are
 * counted apart, not binned; density 1 lands in the last bin). */
#define MS_DENSITY_HIST_LO (-10.0)
#define MS_DENSITY_HIST_STEP 0.25
#define MS_DENSITY_HIST_BINS 40

/* Density statistics of a set of units over N tokens. */
typedef struct ms_density {
    int64_t n_units, dead, ultralow, rare, dense; /* dead: never fired; ultralow: alive, density
                                                   * < ultralow; rare: alive, < rare; dense: > 1% */
    int64_t hist[MS_DENSITY_HIST_BINS];      /* alive units per log10-density bin */
    double min_detectable;                   /* 1/N: the smallest nonzero density seen */
} ms_density;
/* fires (n) firing counts over n_tokens tokens. Pure. */
void ms_density_stats(ms_density *out, const double *fires, int64_t n, double n_tokens, double ultralow,
                      double rare);
/* The histogram's bin edges (MS_DENSITY_HIST_BINS + 1), in log10 density. */
void ms_density_edges(float *edges);

/* ===================================================================== universality
 * universality.c: how well the units of one set are matched in another (the paper's
 * universality: for each unit of model A the best correlation with any unit of model B; the
 * same summary serves splitting's best matches by correlation and by decoder cosine). */

/* Summary of a best-match vector (one value per unit, NaN/±inf = undefined): median and mean
 * of the finite entries (NaN if none), their count, and their histogram over [lo, hi] =
 * [-1, 1] in MS_BEST_BINS equal bins. The median of a_best over model A's units is the paper's
 * universality number (0.72 for features, 0.46 for neurons). */
#define MS_BEST_BINS 20
typedef struct ms_best_summary {
    double median, mean;
    int64_t n, n_undefined;
    double lo, hi;
    int64_t hist[MS_BEST_BINS];
} ms_best_summary;
/* best (n); scratch holds n floats. Pure. */
void ms_best_summarize(ms_best_summary *out, const float *best, int64_t n, float *scratch);

/* Sizes of the split-feature families of ms_families: size (da) members per small feature;
 * n families (size ≥ 1), n_split (size ≥ 2), members in all, the largest, the large-dictionary
 * features in no family (db − members) and the mean family size (0 without families). */
typedef struct ms_family_stats {
    int64_t n, n_split, members, largest, b_unassigned;
    double mean_size;
} ms_family_stats;
void ms_family_stats_of(ms_family_stats *out, const int64_t *size, int64_t da, int64_t db);

#ifdef __cplusplus
}
#endif
#endif
