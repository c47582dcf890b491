/* Job-file parser: libyaml document → typed ms_config through one field table (types, ranges,
 * defaults), with file:line:col errors, --key=value overrides, canonical dump and hash. */
#include "monosem/io.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "config_emit.h"

typedef enum { F_STR, F_INT, F_REAL, F_BOOL, F_ENUM, F_STRLIST, F_INTLIST } ftype;

typedef struct field {
    const char *key; /* dotted, as in the job file */
    ftype type;
    size_t off;   /* offset of the value in ms_config */
    size_t off_n; /* lists: offset of the int element count */
    double min, max;
    const char *def; /* default as scalar text; lists: comma-separated items */
    const char *const *choices; /* enums: names, index = value */
    const char *help;
    bool harmless; /* cannot change a result: cadence, paths, threads (ms_config_result_keys) */
} field;

#define OFF(m) offsetof(ms_config, m)
/* last column: can the key change what a stage computes (a resume with it changed is refused)? */
#define RESULT false
#define HARMLESS true /* log cadence, checkpoint interval, threads, paths (inputs: by content) */
#define BIG 9.0e18
#define INF HUGE_VAL

static const char *const corpus_formats[] = {"text", "jsonl", "tokens", NULL};
static const char *const act_fns[] = {"relu", "gelu", "gelu_new", "solu_ln", NULL};
static const char *const norm_types[] = {"LN", "LNPre", "none", NULL};
static const char *const store_dtypes[] = {"float16", "float32", NULL};
static const char *const sae_archs[] = {"relu-l1", "topk", "batchtopk", "jumprelu", "april-2024",
                                        NULL};
static const char *const enc_inits[] = {"kaiming", "transpose", NULL};

/* The job file, key by key. Order = dump order; keys of one section stay contiguous. */
static const field ms_fields[] = {
    /* run */
    {"run.name", F_STR, OFF(run.name), 0, 0, 0, "monosem", NULL, "run name", HARMLESS},
    {"run.out_dir", F_STR, OFF(run.out_dir), 0, 0, 0, "", NULL, "output directory (default runs/<name>)", HARMLESS},
    {"run.seed", F_INT, OFF(run.seed), 0, 0, BIG, "1234", NULL, "seed of every random choice", RESULT},
    {"run.blas_threads", F_INT, OFF(run.blas_threads), 0, 0, 1024, "0", NULL, "OpenBLAS threads per rank (0 = the CPUs of the rank's affinity mask / ranks sharing it)", HARMLESS},
    {"run.log_every_s", F_REAL, OFF(run.log_every_s), 0, 0.01, 86400, "30", NULL, "seconds between progress lines in batch logs", HARMLESS},
    {"run.stages", F_STRLIST, OFF(run.stages), OFF(run.n_stages), 0, 0, "", NULL, "stages `monosem run` runs (empty = every stage of the pipeline)", HARMLESS},
    /* corpus */
    {"corpus.format", F_ENUM, OFF(corpus.format), 0, 0, 0, "text", corpus_formats, "text | jsonl | tokens", RESULT},
    {"corpus.paths", F_STRLIST, OFF(corpus.paths), OFF(corpus.n_paths), 0, 0, "", NULL, "files or globs", HARMLESS},
    {"corpus.delimiter", F_STR, OFF(corpus.delimiter), 0, 0, 0, "", NULL, "text: document separator line (empty: one document per file)", RESULT},
    {"corpus.text_field", F_STR, OFF(corpus.text_field), 0, 0, 0, "text", NULL, "jsonl: field holding the text", RESULT},
    {"corpus.context", F_INT, OFF(corpus.context), 0, 2, 1048576, "128", NULL, "tokens per context", RESULT},
    {"corpus.heldout_fraction", F_REAL, OFF(corpus.heldout_fraction), 0, 0, 0.5, "0.01", NULL, "documents held out for evaluation", RESULT},
    {"corpus.token_dir", F_STR, OFF(corpus.token_dir), 0, 0, 0, "", NULL, "token shards (default <out_dir>/tokens)", HARMLESS},
    {"corpus.shard_tokens", F_INT, OFF(corpus.shard_tokens), 0, 1024, BIG, "1048576", NULL, "tokens per token shard", RESULT},
    /* tokenizer */
    {"tokenizer.vocab", F_STR, OFF(tokenizer.vocab), 0, 0, 0, "", NULL, "encoder.json / vocab.json (default <out_dir>/tokenizer/vocab.json)", HARMLESS},
    {"tokenizer.merges", F_STR, OFF(tokenizer.merges), 0, 0, 0, "", NULL, "vocab.bpe / merges.txt (default <out_dir>/tokenizer/merges.txt)", HARMLESS},
    {"tokenizer.train_merges", F_INT, OFF(tokenizer.train_merges), 0, 1, 1000000, "4000", NULL, "merges the BPE trainer learns", RESULT},
    {"tokenizer.train_max_bytes", F_INT, OFF(tokenizer.train_max_bytes), 0, 0, BIG, "0", NULL, "corpus bytes the trainer reads (0 = all)", RESULT},
    /* model */
    {"model.dir", F_STR, OFF(model.dir), 0, 0, 0, "", NULL, "model directory: config.json + model.safetensors (default <out_dir>/model)", HARMLESS},
    {"model.hook", F_STR, OFF(model.hook), 0, 0, 0, "blocks.0.mlp.hook_post", NULL, "activation the SAE reads (TransformerLens name)", RESULT},
    {"model.n_layers", F_INT, OFF(model.n_layers), 0, 1, 1024, "1", NULL, "layers (for train-model)", RESULT},
    {"model.d_model", F_INT, OFF(model.d_model), 0, 1, 1048576, "128", NULL, "residual width", RESULT},
    {"model.d_mlp", F_INT, OFF(model.d_mlp), 0, 1, 1048576, "512", NULL, "MLP width", RESULT},
    {"model.n_heads", F_INT, OFF(model.n_heads), 0, 1, 4096, "4", NULL, "attention heads", RESULT},
    {"model.d_head", F_INT, OFF(model.d_head), 0, 1, 65536, "32", NULL, "head width", RESULT},
    {"model.n_ctx", F_INT, OFF(model.n_ctx), 0, 1, 1048576, "128", NULL, "positions (at least corpus.context unless set)", RESULT},
    {"model.act_fn", F_ENUM, OFF(model.act_fn), 0, 0, 0, "relu", act_fns, "relu | gelu | gelu_new | solu_ln", RESULT},
    {"model.normalization", F_ENUM, OFF(model.normalization), 0, 0, 0, "LN", norm_types, "LN | LNPre | none", RESULT},
    {"model.eps", F_REAL, OFF(model.eps), 0, 1e-30, 1, "1e-05", NULL, "LayerNorm epsilon", RESULT},
    /* train_model */
    {"train_model.steps", F_INT, OFF(train_model.steps), 0, 0, BIG, "3000", NULL, "optimizer steps (0 = write the initialised model, untrained)", RESULT},
    {"train_model.batch", F_INT, OFF(train_model.batch), 0, 1, 1048576, "32", NULL, "contexts per global step", RESULT},
    {"train_model.lr", F_REAL, OFF(train_model.lr), 0, 1e-30, 10, "0.001", NULL, "peak learning rate", RESULT},
    {"train_model.min_lr_frac", F_REAL, OFF(train_model.min_lr_frac), 0, 0, 1, "0.1", NULL, "cosine floor as a fraction of lr", RESULT},
    {"train_model.weight_decay", F_REAL, OFF(train_model.weight_decay), 0, 0, 10, "0.1", NULL, "AdamW decay (matrices only)", RESULT},
    {"train_model.grad_clip", F_REAL, OFF(train_model.grad_clip), 0, 0, INF, "1", NULL, "global-norm clip (0 = off)", RESULT},
    {"train_model.beta1", F_REAL, OFF(train_model.beta1), 0, 0, 0.999999, "0.9", NULL, "Adam beta1", RESULT},
    {"train_model.beta2", F_REAL, OFF(train_model.beta2), 0, 0, 0.999999999, "0.95", NULL, "Adam beta2", RESULT},
    {"train_model.warmup_steps", F_INT, OFF(train_model.warmup_steps), 0, 0, BIG, "100", NULL, "linear warm-up steps", RESULT},
    {"train_model.checkpoint_every", F_INT, OFF(train_model.checkpoint_every), 0, 0, BIG, "500", NULL, "steps between checkpoints (0 = end only)", HARMLESS},
    {"train_model.eval_every", F_INT, OFF(train_model.eval_every), 0, 0, BIG, "250", NULL, "steps between held-out evaluations (0 = end only)", HARMLESS},
    {"train_model.eval_batches", F_INT, OFF(train_model.eval_batches), 0, 1, BIG, "8", NULL, "held-out batches per evaluation", RESULT},
    {"train_model.log_every", F_INT, OFF(train_model.log_every), 0, 1, BIG, "10", NULL, "steps between metric lines", HARMLESS},
    {"train_model.dir", F_STR, OFF(train_model.dir), 0, 0, 0, "", NULL, "checkpoint and log (default <out_dir>/train_model)", HARMLESS},
    {"train_model.seed", F_INT, OFF(train_model.seed), 0, 0, BIG, "0", NULL, "initialisation and data-order seed (0 = run.seed)", RESULT},
    /* model_b: the paper's second model, trained exactly like A with another seed */
    {"model_b.seed", F_INT, OFF(model_b.seed), 0, 0, BIG, "0", NULL, "seed of model B (0 = no model B)", RESULT},
    {"model_b.dir", F_STR, OFF(model_b.dir), 0, 0, 0, "", NULL, "model B directory (default <out_dir>/model-b)", HARMLESS},
    {"model_b.activations", F_STR, OFF(model_b.activations), 0, 0, 0, "", NULL, "model B activations (default <out_dir>/activations-b.h5)", HARMLESS},
    /* model_r: the control, model A's shape randomly initialised and never trained */
    {"model_r.seed", F_INT, OFF(model_r.seed), 0, 0, BIG, "0", NULL, "initialisation seed of the control model R, model A's shape never trained (0 = no control)", RESULT},
    {"model_r.dir", F_STR, OFF(model_r.dir), 0, 0, 0, "", NULL, "control model R directory (default <out_dir>/model-r)", HARMLESS},
    {"model_r.activations", F_STR, OFF(model_r.activations), 0, 0, 0, "", NULL, "control model R activations (default <out_dir>/activations-r.h5)", HARMLESS},
    /* generate */
    {"generate.out", F_STR, OFF(generate.out), 0, 0, 0, "", NULL, "activations file (default <out_dir>/activations.h5)", HARMLESS},
    {"generate.tokens", F_INT, OFF(generate.tokens), 0, 0, BIG, "0", NULL, "corpus tokens to run (0 = all)", RESULT},
    {"generate.sample_per_context", F_INT, OFF(generate.sample_per_context), 0, 1, 1048576, "64", NULL, "positions sampled per context", RESULT},
    {"generate.dtype", F_ENUM, OFF(generate.dtype), 0, 0, 0, "float16", store_dtypes, "float16 | float32", RESULT},
    {"generate.shard_contexts", F_INT, OFF(generate.shard_contexts), 0, 1, BIG, "256", NULL, "contexts per work item", RESULT},
    {"generate.batch", F_INT, OFF(generate.batch), 0, 1, 65536, "32", NULL, "contexts per forward", RESULT},
    /* sae */
    {"sae.activations", F_STR, OFF(sae.activations), 0, 0, 0, "", NULL, "activations file (default generate.out)", HARMLESS},
    {"sae.out_dir", F_STR, OFF(sae.out_dir), 0, 0, 0, "", NULL, "SAE outputs (default <out_dir>/sae)", HARMLESS},
    {"sae.arch", F_ENUM, OFF(sae.arch), 0, 0, 0, "relu-l1", sae_archs, "relu-l1 | topk | batchtopk | jumprelu | april-2024", RESULT},
    {"sae.init_encoder", F_ENUM, OFF(sae.init_encoder), 0, 0, 0, "kaiming", enc_inits, "relu-l1's encoder init: kaiming (independent) | transpose (W_enc = W_decᵀ, as every successor recipe)", RESULT},
    {"sae.d_in", F_INT, OFF(sae.d_in), 0, 0, 1048576, "0", NULL, "input width (0 = from the activations file)", RESULT},
    {"sae.d_sae", F_INT, OFF(sae.d_sae), 0, 1, 1073741824, "4096", NULL, "dictionary size", RESULT},
    {"sae.batch", F_INT, OFF(sae.batch), 0, 1, 1073741824, "8192", NULL, "global batch (activations per step)", RESULT},
    {"sae.steps", F_INT, OFF(sae.steps), 0, 1, BIG, "20000", NULL, "optimizer steps", RESULT},
    {"sae.lr", F_REAL, OFF(sae.lr), 0, 1e-30, 10, "0.0001", NULL, "Adam learning rate", RESULT},
    {"sae.beta1", F_REAL, OFF(sae.beta1), 0, 0, 0.999999, "0.9", NULL, "Adam beta1", RESULT},
    {"sae.beta2", F_REAL, OFF(sae.beta2), 0, 0, 0.999999999, "0.999", NULL, "Adam beta2", RESULT},
    {"sae.adam_eps", F_REAL, OFF(sae.adam_eps), 0, 1e-30, 1, "1e-08", NULL, "Adam epsilon", RESULT},
    {"sae.l1_coeff", F_REAL, OFF(sae.l1_coeff), 0, 0, INF, "0.004", NULL, "sparsity coefficient (relu-l1, april-2024)", RESULT},
    {"sae.k", F_INT, OFF(sae.k), 0, 1, 1073741824, "32", NULL, "active latents (topk, batchtopk)", RESULT},
    {"sae.k_aux", F_INT, OFF(sae.k_aux), 0, 0, 1073741824, "256", NULL, "AuxK dead latents (topk)", RESULT},
    {"sae.aux_coeff", F_REAL, OFF(sae.aux_coeff), 0, 0, INF, "0.03125", NULL, "AuxK loss coefficient", RESULT},
    {"sae.dead_tokens", F_INT, OFF(sae.dead_tokens), 0, 1, BIG, "10000000", NULL, "tokens without firing before a latent is dead (topk)", RESULT},
    {"sae.threshold_init", F_REAL, OFF(sae.threshold_init), 0, 0, INF, "0.001", NULL, "initial threshold (jumprelu)", RESULT},
    {"sae.bandwidth", F_REAL, OFF(sae.bandwidth), 0, 1e-30, INF, "0.001", NULL, "straight-through kernel width (jumprelu)", RESULT},
    {"sae.l0_coeff", F_REAL, OFF(sae.l0_coeff), 0, 0, INF, "0.001", NULL, "L0 penalty (jumprelu)", RESULT},
    {"sae.lambda_warmup_frac", F_REAL, OFF(sae.lambda_warmup_frac), 0, 0, 1, "0.05", NULL, "sparsity warm-up share of steps (default 0 except for april-2024)", RESULT},
    {"sae.lr_decay_frac", F_REAL, OFF(sae.lr_decay_frac), 0, 0, 1, "0.2", NULL, "final share of steps with lr decaying to 0 (default 0 except for april-2024)", RESULT},
    {"sae.grad_clip", F_REAL, OFF(sae.grad_clip), 0, 0, INF, "1", NULL, "global-norm clip, 0 = off (default 0 except for april-2024)", RESULT},
    {"sae.resample.at", F_INTLIST, OFF(sae.resample.at), OFF(sae.resample.n_at), 1, BIG, "", NULL, "steps at which dead neurons are resampled (relu-l1)", RESULT},
    {"sae.resample.window", F_INT, OFF(sae.resample.window), 0, 1, BIG, "12500", NULL, "steps without firing that make a neuron dead", RESULT},
    {"sae.resample.max_density", F_REAL, OFF(sae.resample.max_density), 0, 0, 1, "0", NULL, "resample features firing on fewer than this share of the window's tokens (0: only those that never fired)", RESULT},
    {"sae.resample.inputs", F_INT, OFF(sae.resample.inputs), 0, 1, BIG, "819200", NULL, "inputs whose loss weights the resampling", RESULT},
    {"sae.checkpoint_every", F_INT, OFF(sae.checkpoint_every), 0, 0, BIG, "1000", NULL, "steps between checkpoints (0 = end only)", HARMLESS},
    {"sae.log_every", F_INT, OFF(sae.log_every), 0, 1, BIG, "100", NULL, "steps between metric lines", HARMLESS},
    {"sae.shuffle", F_BOOL, OFF(sae.shuffle), 0, 0, 0, "true", NULL, "shuffle rows (false: file order)", RESULT},
    {"sae.shuffle_buffer", F_INT, OFF(sae.shuffle_buffer), 0, 1, BIG, "262144", NULL, "rows in the shuffle window (global: each rank holds its 1/P share)", RESULT},
    {"sae.init", F_STR, OFF(sae.init), 0, 0, 0, "", NULL, "SAELens directory to start from", HARMLESS},
    {"sae.median_samples", F_INT, OFF(sae.median_samples), 0, 1, BIG, "16384", NULL, "rows for the geometric-median b_dec", RESULT},
    {"sae.ultralow_density", F_REAL, OFF(sae.ultralow_density), 0, 0, 1, "1e-06", NULL, "density below which a feature is ultralow", RESULT},
    {"sae.final_density_rows", F_INT, OFF(sae.final_density_rows), 0, 0, BIG, "1000000", NULL, "rows (the file's first, whole batches) on which the final weights' densities are counted as eval counts them (0 = only the training window's estimate)", RESULT},
    {"sae.rare_density", F_REAL, OFF(sae.rare_density), 0, 0, 1, "1e-04", NULL, "density below which an alive feature counts as rare (eval and training report it beside ultralow: one the demo's tokens resolve)", RESULT},
    {"sae.skip_nonfinite", F_BOOL, OFF(sae.skip_nonfinite), 0, 0, 0, "false", NULL, "skip NaN/Inf rows (counted) instead of failing", RESULT},
    {"sae.reproducible", F_BOOL, OFF(sae.reproducible), 0, 0, 0, "false", NULL, "bitwise identical results at any rank count: the batch runs as sae.micro_shards fixed shards whose gradients are summed in a fixed order (docs/clusters.md: what it costs)", RESULT},
    {"sae.micro_shards", F_INT, OFF(sae.micro_shards), 0, 1, 65536, "8", NULL, "sae.reproducible: shards of the global batch (must divide sae.batch; at least the rank count); the result depends on it, not on the ranks", RESULT},
    {"sae.repeat", F_BOOL, OFF(sae.repeat), 0, 0, 0, "false", NULL, "allow more than one pass over the rows (each epoch reshuffled)", RESULT},
    /* eval */
    {"eval.tokens", F_INT, OFF(eval.tokens), 0, 1, BIG, "200000", NULL, "held-out tokens for loss recovered", RESULT},
    {"eval.batch", F_INT, OFF(eval.batch), 0, 1, 65536, "32", NULL, "contexts per forward", RESULT},
    /* analyze */
    {"analyze.top_k", F_INT, OFF(analyze.top_k), 0, 1, 100000, "20", NULL, "top-activating contexts per feature", RESULT},
    {"analyze.context_window", F_INT, OFF(analyze.context_window), 0, 0, 4096, "8", NULL, "tokens of context each side", RESULT},
    {"analyze.intervals", F_INT, OFF(analyze.intervals), 0, 1, 1000, "11", NULL, "activation intervals sampled per feature", RESULT},
    {"analyze.n_features", F_INT, OFF(analyze.n_features), 0, 1, BIG, "256", NULL, "features in the dashboard", RESULT},
    {"analyze.tokens", F_INT, OFF(analyze.tokens), 0, 1, BIG, "1000000", NULL, "tokens scanned for top activations", RESULT},
    {"analyze.dashboard", F_BOOL, OFF(analyze.dashboard), 0, 0, 0, "true", NULL, "write the HTML dashboard", RESULT},
    {"analyze.compare", F_STRLIST, OFF(analyze.compare), OFF(analyze.n_compare), 0, 0, "", NULL, "other SAE directories (feature splitting)", HARMLESS},
    {"analyze.batch", F_INT, OFF(analyze.batch), 0, 1, 65536, "32", NULL, "contexts per forward", RESULT},
    {"analyze.interval_samples", F_INT, OFF(analyze.interval_samples), 0, 1, 1000, "5", NULL, "tokens sampled per activation interval", RESULT},
    {"analyze.hist_bins", F_INT, OFF(analyze.hist_bins), 0, 1, 100000, "40", NULL, "activation histogram bins over (0, max]", RESULT},
    {"analyze.n_logits", F_INT, OFF(analyze.n_logits), 0, 1, 1000, "10", NULL, "top and bottom logit-effect tokens kept", RESULT},
    {"analyze.scratch_dir", F_STR, OFF(analyze.scratch_dir), 0, 0, 0, "", NULL, "local scratch for pass 1's sparse SAE codes (default $TMPDIR, else /tmp)", HARMLESS},
    {"analyze.out_dir", F_STR, OFF(analyze.out_dir), 0, 0, 0, "", NULL, "analysis outputs (default: <sae dir>/analysis.h5 and <out_dir>/neurons/analysis.h5)", HARMLESS},
    /* compare: feature splitting and universality */
    {"compare.tokens", F_INT, OFF(compare.tokens), 0, 1, BIG, "65536", NULL, "train-split tokens over which activations are correlated", RESULT},
    {"compare.batch", F_INT, OFF(compare.batch), 0, 1, 65536, "16", NULL, "contexts per forward", HARMLESS},
    {"compare.block_mb", F_REAL, OFF(compare.block_mb), 0, 0.001, 1048576, "256", NULL, "MiB per rank for the correlation sums of one pass over the tokens (larger pairs: column blocks, more passes)", HARMLESS},
    {"compare.family_min", F_REAL, OFF(compare.family_min), 0, -1, 1, "0.5", NULL, "decoder cosine a large-SAE feature needs to join the family of its best small-SAE match", RESULT},
};
#define N_FIELDS ((int)(sizeof ms_fields / sizeof ms_fields[0]))

/* ------------------------------------------------------------------ field access */

#define AT(cfg, off, T) ((T *)((char *)(cfg) + (off)))

static const field *field_find(const char *key)
{
    for (int i = 0; i < N_FIELDS; i++)
        if (strcmp(ms_fields[i].key, key) == 0) return &ms_fields[i];
    return NULL;
}

static int field_index(const field *f) { return (int)(f - ms_fields); }

/* True if some field key starts with prefix + "." (prefix names a section). */
static bool is_section(const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < N_FIELDS; i++)
        if (strncmp(ms_fields[i].key, prefix, n) == 0 && ms_fields[i].key[n] == '.') return true;
    return false;
}

static void field_clear(ms_config *cfg, const field *f)
{
    switch (f->type) {
    case F_STR:
        free(*AT(cfg, f->off, char *));
        *AT(cfg, f->off, char *) = NULL;
        break;
    case F_STRLIST: {
        char **v = *AT(cfg, f->off, char **);
        int n = *AT(cfg, f->off_n, int);
        for (int i = 0; i < n; i++) free(v[i]);
        free(v);
        *AT(cfg, f->off, char **) = NULL;
        *AT(cfg, f->off_n, int) = 0;
        break;
    }
    case F_INTLIST:
        free(*AT(cfg, f->off, int64_t *));
        *AT(cfg, f->off, int64_t *) = NULL;
        *AT(cfg, f->off_n, int) = 0;
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------ scalar conversion */

/* What a field expects, for messages: "a positive integer", "a number in [0, 0.5]", ... */
static void describe_x(const field *f, char *buf, size_t n, bool exact_range)
{
    switch (f->type) {
    case F_STR:
        snprintf(buf, n, "a string");
        break;
    case F_STRLIST:
        snprintf(buf, n, "a string or a list of strings");
        break;
    case F_BOOL:
        snprintf(buf, n, "true or false");
        break;
    case F_ENUM: {
        size_t k = (size_t)snprintf(buf, n, "one of");
        for (int i = 0; f->choices[i] && k < n; i++)
            k += (size_t)snprintf(buf + k, n - k, "%s %s", i ? "," : "", f->choices[i]);
        break;
    }
    case F_INT:
    case F_INTLIST: {
        const char *what = f->type == F_INT ? "integer" : "list of integers";
        bool open = f->max >= 1e9 && !exact_range; /* huge caps are sanity bounds, not advice */
        if (f->min == 1 && open)
            snprintf(buf, n, "a positive %s", what);
        else if (f->min == 0 && open)
            snprintf(buf, n, "a non-negative %s", what);
        else if (open)
            snprintf(buf, n, "an %s >= %.0f", what, f->min);
        else
            snprintf(buf, n, "an %s in [%.0f, %.0f]", what, f->min, f->max);
        if (f->type == F_INTLIST && f->min == 1) snprintf(buf, n, "a list of positive integers");
        break;
    }
    case F_REAL:
        if (f->max == INF && f->min == 0)
            snprintf(buf, n, "a non-negative number");
        else if (f->max == INF)
            snprintf(buf, n, "a number >= %g", f->min);
        else if (f->min > 0 && f->min < 1e-20)
            snprintf(buf, n, "a number in (0, %g]", f->max);
        else
            snprintf(buf, n, "a number in [%g, %g]", f->min, f->max);
        break;
    }
}

static void describe(const field *f, char *buf, size_t n) { describe_x(f, buf, n, false); }

static bool parse_int(const char *s, int64_t *out)
{
    char clean[64];
    size_t k = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '_') continue; /* YAML 1.1 digit separators: 1_000_000 */
        if (k + 1 >= sizeof clean) return false;
        clean[k++] = *p;
    }
    clean[k] = '\0';
    if (k == 0) return false;
    char *end;
    errno = 0;
    long long v = strtoll(clean, &end, 10);
    if (*end == '\0' && errno == 0) {
        *out = v;
        return true;
    }
    /* token budgets are often written 2e6: accept a float literal that is an exact integer */
    errno = 0;
    double d = strtod(clean, &end);
    if (*end != '\0' || errno != 0 || !isfinite(d) || d != floor(d) || fabs(d) > 9.0e18)
        return false;
    *out = (int64_t)d;
    return true;
}

static bool parse_real(const char *s, double *out)
{
    if (!*s) return false;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(d)) return false;
    *out = d;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", NULL}, *const no[] = {"false", "no", "off", NULL};
    for (int i = 0; yes[i]; i++)
        if (strcasecmp(s, yes[i]) == 0) return (*out = true), true;
    for (int i = 0; no[i]; i++)
        if (strcasecmp(s, no[i]) == 0) return (*out = false), true;
    return false;
}

typedef struct where {
    const char *name; /* file name, or "command line" */
    int line, col;    /* 1-based; 0 = no position */
} where;

static ms_status where_err(ms_err *err, const where *w, const char *fmt, ...) MS_PRINTF(3, 4);
static ms_status where_err(ms_err *err, const where *w, const char *fmt, ...)
{
    char body[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (w->line > 0) return ms_err_set(err, MS_ERR_CONFIG, "%s:%d:%d: %s", w->name, w->line, w->col, body);
    return ms_err_set(err, MS_ERR_CONFIG, "%s: %s", w->name, body);
}

static ms_status bad_value(ms_err *err, const where *w, const field *f, const char *got)
{
    char exp[256];
    int64_t v;
    describe_x(f, exp, sizeof exp, (f->type == F_INT || f->type == F_INTLIST) && parse_int(got, &v) && (double)v > f->max);
    return where_err(err, w, "key '%s': expected %s, got \"%s\"", f->key, exp, got);
}

/* Converts one scalar into field f (for lists: appends one element). */
static ms_status set_scalar(ms_config *cfg, const field *f, const char *s, const where *w,
                            ms_err *err)
{
    switch (f->type) {
    case F_STR: {
        char *d = strdup(s);
        if (!d) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        free(*AT(cfg, f->off, char *));
        *AT(cfg, f->off, char *) = d;
        return MS_OK;
    }
    case F_INT:
    case F_INTLIST: {
        int64_t v;
        if (!parse_int(s, &v) || (double)v < f->min || (double)v > f->max) return bad_value(err, w, f, s);
        if (f->type == F_INT) {
            *AT(cfg, f->off, int64_t) = v;
            return MS_OK;
        }
        int n = *AT(cfg, f->off_n, int);
        int64_t *a = realloc(*AT(cfg, f->off, int64_t *), sizeof(int64_t) * (size_t)(n + 1));
        if (!a) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        a[n] = v;
        *AT(cfg, f->off, int64_t *) = a;
        *AT(cfg, f->off_n, int) = n + 1;
        return MS_OK;
    }
    case F_REAL: {
        double v;
        if (!parse_real(s, &v) || v < f->min || v > f->max) return bad_value(err, w, f, s);
        *AT(cfg, f->off, double) = v;
        return MS_OK;
    }
    case F_BOOL: {
        bool v;
        if (!parse_bool(s, &v)) return bad_value(err, w, f, s);
        *AT(cfg, f->off, bool) = v;
        return MS_OK;
    }
    case F_ENUM:
        for (int i = 0; f->choices[i]; i++)
            if (strcmp(s, f->choices[i]) == 0) {
                *AT(cfg, f->off, int) = i;
                return MS_OK;
            }
        return bad_value(err, w, f, s);
    case F_STRLIST: {
        int n = *AT(cfg, f->off_n, int);
        char **a = realloc(*AT(cfg, f->off, char **), sizeof(char *) * (size_t)(n + 1));
        if (!a) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        *AT(cfg, f->off, char **) = a;
        if (!(a[n] = strdup(s))) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        *AT(cfg, f->off_n, int) = n + 1;
        return MS_OK;
    }
    }
    return MS_OK;
}

static ms_status set_default(ms_config *cfg, const field *f, ms_err *err)
{
    where w = {"defaults", 0, 0};
    field_clear(cfg, f);
    if (f->type != F_STRLIST && f->type != F_INTLIST) return set_scalar(cfg, f, f->def, &w, err);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", f->def);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        ms_status st = set_scalar(cfg, f, tok, &w, err);
        if (st) return st;
    }
    return MS_OK;
}

/* ------------------------------------------------------------------ YAML walk */

typedef struct walk {
    ms_config *cfg;
    yaml_document_t *doc;
    const char *name;
    ms_err *err;
    bool no_positions; /* command-line values: line:col would be meaningless */
} walk;

static const char *node_kind(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a sequence" : "a scalar";
}

static bool is_null_scalar(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static int lev(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

static ms_status unknown_key(walk *wk, const where *w, const char *key)
{
    /* suggest a known name with as many dotted parts as the unknown one */
    int parts = 1;
    for (const char *p = key; *p; p++) parts += *p == '.';
    const char *best = NULL;
    int best_len = 0, bd = 3;
    for (int i = 0; i < N_FIELDS; i++) {
        const char *k = ms_fields[i].key;
        int seen = 0, len = 0;
        while (k[len] && !(k[len] == '.' && ++seen == parts)) len++;
        char cand[128];
        snprintf(cand, sizeof cand, "%.*s", len, k);
        int d = lev(key, cand);
        if (d < bd) bd = d, best = k, best_len = len;
    }
    if (best) return where_err(wk->err, w, "unknown key '%s' (did you mean '%.*s'?)", key, best_len, best);
    return where_err(wk->err, w, "unknown key '%s'", key);
}

static ms_status set_node(walk *wk, const field *f, yaml_node_t *v, const where *kw)
{
    ms_config *cfg = wk->cfg;
    where w = {wk->name, (int)v->start_mark.line + 1, (int)v->start_mark.column + 1};
    if (wk->no_positions) w.line = w.col = 0;
    int idx = field_index(f);
    if (cfg->marks[2 * idx] != 0)
        return where_err(wk->err, kw, "duplicate key '%s' (first set at %d:%d)", f->key, cfg->marks[2 * idx],
                         cfg->marks[2 * idx + 1]);
    cfg->marks[2 * idx] = kw->line;
    cfg->marks[2 * idx + 1] = kw->col;
    bool list = f->type == F_STRLIST || f->type == F_INTLIST;
    if (list) field_clear(cfg, f);
    if (v->type == YAML_SCALAR_NODE) {
        if (is_null_scalar(v)) {
            if (f->type == F_STR) return set_scalar(cfg, f, "", &w, wk->err);
            if (list) return MS_OK; /* empty list */
            return bad_value(wk->err, &w, f, "null");
        }
        return set_scalar(cfg, f, (const char *)v->data.scalar.value, &w, wk->err);
    }
    if (v->type == YAML_SEQUENCE_NODE && list) {
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(wk->doc, *it);
            where ew = {wk->name, (int)e->start_mark.line + 1, (int)e->start_mark.column + 1};
            if (wk->no_positions) ew.line = ew.col = 0;
            if (e->type != YAML_SCALAR_NODE) {
                char exp[256];
                describe(f, exp, sizeof exp);
                return where_err(wk->err, &ew, "key '%s': expected %s, got %s inside the list", f->key, exp, node_kind(e));
            }
            ms_status st = set_scalar(cfg, f, (const char *)e->data.scalar.value, &ew, wk->err);
            if (st) return st;
        }
        return MS_OK;
    }
    char exp[256];
    describe(f, exp, sizeof exp);
    return where_err(wk->err, &w, "key '%s': expected %s, got %s", f->key, exp, node_kind(v));
}

static ms_status parse_saes(walk *wk, yaml_node_t *v, const where *kw);

static ms_status walk_mapping(walk *wk, yaml_node_t *map, const char *prefix)
{
    /* duplicate keys inside one mapping are caught here even for sections */
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(wk->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(wk->doc, p->value);
        where kw = {wk->name, (int)k->start_mark.line + 1, (int)k->start_mark.column + 1};
        if (k->type != YAML_SCALAR_NODE) return where_err(wk->err, &kw, "expected a key name, got %s", node_kind(k));
        const char *kname = (const char *)k->data.scalar.value;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = yaml_document_get_node(wk->doc, q->key);
            if (k2->type == YAML_SCALAR_NODE && strcmp((const char *)k2->data.scalar.value, kname) == 0)
                return where_err(wk->err, &kw, "duplicate key '%s%s%s' (first set at %d:%d)", prefix, *prefix ? "." : "",
                                 kname, (int)k2->start_mark.line + 1, (int)k2->start_mark.column + 1);
        }
        char full[256];
        snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", kname);
        const field *f = field_find(full);
        if (f) {
            ms_status st = set_node(wk, f, v, &kw);
            if (st) return st;
        } else if (strcmp(full, "saes") == 0) {
            ms_status st = parse_saes(wk, v, &kw);
            if (st) return st;
        } else if (is_section(full)) {
            if (is_null_scalar(v)) continue; /* "eval:" with nothing under it: all defaults */
            if (v->type != YAML_MAPPING_NODE)
                return where_err(wk->err, &kw, "key '%s': expected a mapping of its keys, got %s", full, node_kind(v));
            ms_status st = walk_mapping(wk, v, full);
            if (st) return st;
        } else {
            return unknown_key(wk, &kw, full);
        }
    }
    return MS_OK;
}

/* ------------------------------------------------------------------ the saes: list */

static ms_status config_start(ms_config *cfg, const char *name, ms_err *err);

/* Appends to a growing string; false on OOM. */
static bool sb_add(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t c = (*cap ? *cap * 2 : 64) + n;
        char *b = realloc(*buf, c);
        if (!b) return false;
        *buf = b, *cap = c;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
    return true;
}

/* A scalar as YAML flow text that reads back as the same value: strings single-quoted. */
static bool sb_scalar(char **buf, size_t *len, size_t *cap, const char *v, bool quote)
{
    if (!quote) return sb_add(buf, len, cap, v);
    bool ok = sb_add(buf, len, cap, "'");
    for (const char *p = v; *p && ok; p++) ok = sb_add(buf, len, cap, *p == '\'' ? "''" : (char[2]){*p, 0});
    return ok && sb_add(buf, len, cap, "'");
}

/* "key=value" override text of an (already validated) node for field f. */
static char *entry_override(const walk *wk, const field *f, yaml_node_t *v)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    bool str = f->type == F_STR || f->type == F_STRLIST;
    bool ok = sb_add(&buf, &len, &cap, f->key) && sb_add(&buf, &len, &cap, "=");
    if (v->type == YAML_SEQUENCE_NODE) {
        ok = ok && sb_add(&buf, &len, &cap, "[");
        for (yaml_node_item_t *it = v->data.sequence.items.start; ok && it < v->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(wk->doc, *it);
            if (it > v->data.sequence.items.start) ok = sb_add(&buf, &len, &cap, ", ");
            ok = ok && sb_scalar(&buf, &len, &cap, (const char *)e->data.scalar.value, str);
        }
        ok = ok && sb_add(&buf, &len, &cap, "]");
    } else if (is_null_scalar(v)) {
        ok = ok && sb_add(&buf, &len, &cap, f->type == F_STR ? "''" : (f->type == F_STRLIST || f->type == F_INTLIST) ? "[]" : "~");
    } else {
        ok = ok && sb_scalar(&buf, &len, &cap, (const char *)v->data.scalar.value, str);
    }
    if (!ok) free(buf);
    return ok ? buf : NULL;
}

/* The keys of one entry (a mapping under `prefix`, "sae" or "sae.resample"): each is checked
 * against the field table by setting it on a scratch config (types, ranges, duplicates with
 * file:line:col), then kept as an override. */
static ms_status entry_keys(walk *wk, ms_sae_entry *e, yaml_node_t *map, const char *prefix)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(wk->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(wk->doc, p->value);
        where kw = {wk->name, (int)k->start_mark.line + 1, (int)k->start_mark.column + 1};
        if (k->type != YAML_SCALAR_NODE) return where_err(wk->err, &kw, "expected a key name, got %s", node_kind(k));
        const char *kname = (const char *)k->data.scalar.value;
        if (strcmp(prefix, "sae") == 0 && (strcmp(kname, "name") == 0 || strcmp(kname, "model") == 0)) {
            if (v->type != YAML_SCALAR_NODE || is_null_scalar(v))
                return where_err(wk->err, &kw, "key 'saes.%s': expected %s, got %s", kname,
                                 kname[0] == 'n' ? "a name" : "A, B or R", is_null_scalar(v) ? "nothing" : node_kind(v));
            const char *val = (const char *)v->data.scalar.value;
            where vw = {wk->name, (int)v->start_mark.line + 1, (int)v->start_mark.column + 1};
            if (kname[0] == 'm') {
                if (strcasecmp(val, "A") != 0 && strcasecmp(val, "B") != 0 && strcasecmp(val, "R") != 0)
                    return where_err(wk->err, &vw, "key 'saes.model': expected A, B or R (the control), got \"%s\"",
                                     val);
                e->model = strcasecmp(val, "B") == 0 ? 1 : strcasecmp(val, "R") == 0 ? 2 : 0;
                continue;
            }
            bool good = *val && strlen(val) < 48;
            for (const char *c = val; *c && good; c++) good = isalnum((unsigned char)*c) || strchr("_.-", *c);
            if (!good || val[0] == '.')
                return where_err(wk->err, &vw, "key 'saes.name': expected a name of letters, digits, '_', '.', '-' "
                                 "(at most 47, used in directory names), got \"%s\"", val);
            if (e->name) return where_err(wk->err, &kw, "duplicate key 'saes.name' in one entry");
            if (!(e->name = strdup(val))) return ms_err_set(wk->err, MS_ERR_NOMEM, "out of memory");
            continue;
        }
        char full[256];
        snprintf(full, sizeof full, "%s.%s", prefix, kname);
        const field *f = field_find(full);
        if (f) {
            ms_status st = set_node(wk, f, v, &kw);
            if (st) return st;
            char *o = entry_override(wk, f, v);
            char **a = o ? realloc(e->set, sizeof *a * (size_t)(e->n_set + 1)) : NULL;
            if (!a) {
                free(o);
                return ms_err_set(wk->err, MS_ERR_NOMEM, "out of memory");
            }
            e->set = a;
            e->set[e->n_set++] = o;
        } else if (is_section(full) && v->type == YAML_MAPPING_NODE) {
            ms_status st = entry_keys(wk, e, v, full);
            if (st) return st;
        } else if (is_section(full)) {
            return where_err(wk->err, &kw, "key '%s': expected a mapping of its keys, got %s", full, node_kind(v));
        } else {
            return unknown_key(wk, &kw, full);
        }
    }
    return MS_OK;
}

static void entry_free(ms_sae_entry *e)
{
    free(e->name);
    for (int i = 0; i < e->n_set; i++) free(e->set[i]);
    free(e->set);
    memset(e, 0, sizeof *e);
}

/* saes: a list of mappings, each a name, an optional model (A | B) and keys of the sae
 * section that this SAE sets differently. */
static ms_status parse_saes(walk *wk, yaml_node_t *v, const where *kw)
{
    if (is_null_scalar(v)) return MS_OK;
    if (v->type != YAML_SEQUENCE_NODE)
        return where_err(wk->err, kw, "key 'saes': expected a list of mappings (- name: A0, d_sae: 512), got %s",
                         node_kind(v));
    ms_config *cfg = wk->cfg;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *m = yaml_document_get_node(wk->doc, *it);
        where ew = {wk->name, (int)m->start_mark.line + 1, (int)m->start_mark.column + 1};
        if (m->type != YAML_MAPPING_NODE)
            return where_err(wk->err, &ew, "key 'saes': expected each entry to be a mapping (name: ..., d_sae: ...), got %s",
                             node_kind(m));
        ms_sae_entry *a = realloc(cfg->saes, sizeof *a * (size_t)(cfg->n_saes + 1));
        if (!a) return ms_err_set(wk->err, MS_ERR_NOMEM, "out of memory");
        cfg->saes = a;
        ms_sae_entry *e = &cfg->saes[cfg->n_saes++];
        memset(e, 0, sizeof *e);
        e->line = ew.line, e->col = ew.col;
        /* duplicates inside the entry, and values checked by type, on a scratch config */
        ms_config scratch;
        ms_status st = config_start(&scratch, wk->name, wk->err);
        if (!st) {
            walk sw = *wk;
            sw.cfg = &scratch;
            st = entry_keys(&sw, e, m, "sae");
        }
        scratch.saes = NULL, scratch.n_saes = 0;
        ms_config_free(&scratch);
        if (st) return st;
        if (!e->name) return where_err(wk->err, &ew, "saes entry %d: missing key 'name'", cfg->n_saes);
        for (int j = 0; j + 1 < cfg->n_saes; j++)
            if (strcmp(cfg->saes[j].name, e->name) == 0)
                return where_err(wk->err, &ew, "saes entry %d: duplicate name '%s' (first at %d:%d)", cfg->n_saes,
                                 e->name, cfg->saes[j].line, cfg->saes[j].col);
    }
    return MS_OK;
}

static ms_status yaml_error(const yaml_parser_t *p, const char *name, ms_err *err)
{
    where w = {name, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1};
    const char *prob = p->problem ? p->problem : "cannot parse";
    if (p->context)
        return where_err(err, &w, "malformed YAML: %s %s", prob, p->context);
    return where_err(err, &w, "malformed YAML: %s", prob);
}

/* ------------------------------------------------------------------ resolve and validate */

static ms_status derive(char **dst, const char *a, const char *b, ms_err *err)
{
    if (*dst && **dst) return MS_OK;
    free(*dst);
    *dst = b ? ms_path_join(a, b) : strdup(a);
    return *dst ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
}

static where where_of(const ms_config *cfg, const char *key)
{
    where w = {cfg->path ? cfg->path : "job", 0, 0};
    ms_config_where(cfg, key, &w.line, &w.col);
    return w;
}

static ms_status resolve(ms_config *cfg, ms_err *err)
{
    ms_status st = MS_OK;
    if (!cfg->run.out_dir || !*cfg->run.out_dir) {
        char *d = ms_path_join("runs", cfg->run.name);
        if (!d) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        free(cfg->run.out_dir);
        cfg->run.out_dir = d;
    }
    const char *o = cfg->run.out_dir;
    if ((st = derive(&cfg->corpus.token_dir, o, "tokens", err))) return st;
    if ((st = derive(&cfg->tokenizer.vocab, o, "tokenizer/vocab.json", err))) return st;
    if ((st = derive(&cfg->tokenizer.merges, o, "tokenizer/merges.txt", err))) return st;
    if ((st = derive(&cfg->model.dir, o, "model", err))) return st;
    if ((st = derive(&cfg->generate.out, o, "activations.h5", err))) return st;
    if ((st = derive(&cfg->sae.activations, cfg->generate.out, NULL, err))) return st;
    if ((st = derive(&cfg->sae.out_dir, o, "sae", err))) return st;
    if ((st = derive(&cfg->train_model.dir, o, "train_model", err))) return st;
    if ((st = derive(&cfg->model_b.dir, o, "model-b", err))) return st;
    if ((st = derive(&cfg->model_b.activations, o, "activations-b.h5", err))) return st;
    if ((st = derive(&cfg->model_r.dir, o, "model-r", err))) return st;
    if ((st = derive(&cfg->model_r.activations, o, "activations-r.h5", err))) return st;
    for (int i = 0; i < cfg->n_saes && !cfg->derived; i++) {
        if (cfg->saes[i].model == 1 && cfg->model_b.seed == 0) {
            where w = {cfg->path, cfg->saes[i].line, cfg->saes[i].col};
            return where_err(err, &w, "saes entry '%s': model B needs key 'model_b.seed' (a seed other than model A's)",
                             cfg->saes[i].name);
        }
        if (cfg->saes[i].model == 2 && cfg->model_r.seed == 0) {
            where w = {cfg->path, cfg->saes[i].line, cfg->saes[i].col};
            return where_err(err, &w, "saes entry '%s': the control model R needs key 'model_r.seed' (its "
                             "initialisation seed)", cfg->saes[i].name);
        }
    }
    const int64_t seed_a = cfg->train_model.seed ? cfg->train_model.seed : cfg->run.seed;
    if (!cfg->derived && cfg->model_b.seed != 0 && cfg->model_b.seed == seed_a) {
        where w = where_of(cfg, "model_b.seed");
        return where_err(err, &w, "key 'model_b.seed': expected a seed other than model A's (%lld): model B is "
                         "model A's recipe with another seed", (long long)seed_a);
    }

    /* The schedule keys describe Anthropic's April 2024 recipe; every other recipe (the paper's
     * relu-l1 above all: constant lr, no clipping) runs without them unless they are set. */
    if (cfg->sae.arch != MS_SAE_APRIL_2024) {
        static const char *const sched[] = {"sae.lambda_warmup_frac", "sae.lr_decay_frac", "sae.grad_clip"};
        for (int i = 0; i < 3; i++) {
            const field *f = field_find(sched[i]);
            if (cfg->marks[2 * field_index(f)] == 0) *AT(cfg, f->off, double) = 0.0;
        }
    }

    /* a model for contexts longer than the default positions: n_ctx follows corpus.context
     * unless set (so the resolved dump, which sets every key, is itself a valid job) */
    if (cfg->marks[2 * field_index(field_find("model.n_ctx"))] == 0 && cfg->model.n_ctx < cfg->corpus.context)
        cfg->model.n_ctx = cfg->corpus.context;

    /* relations between keys, checked the same way on every rank */
    if (cfg->generate.sample_per_context > cfg->corpus.context) {
        where w = where_of(cfg, "generate.sample_per_context");
        return where_err(err, &w, "key 'generate.sample_per_context': expected at most corpus.context (%lld), got %lld",
                         (long long)cfg->corpus.context, (long long)cfg->generate.sample_per_context);
    }
    if (cfg->corpus.context > cfg->model.n_ctx && cfg->marks[2 * field_index(field_find("model.n_ctx"))] != 0) {
        where w = where_of(cfg, "corpus.context");
        return where_err(err, &w, "key 'corpus.context': expected at most model.n_ctx (%lld), got %lld",
                         (long long)cfg->model.n_ctx, (long long)cfg->corpus.context);
    }
    if ((cfg->sae.arch == MS_SAE_TOPK || cfg->sae.arch == MS_SAE_BATCHTOPK) && cfg->sae.k > cfg->sae.d_sae) {
        where w = where_of(cfg, "sae.k");
        return where_err(err, &w, "key 'sae.k': expected at most sae.d_sae (%lld), got %lld", (long long)cfg->sae.d_sae,
                         (long long)cfg->sae.k);
    }
    if (cfg->sae.reproducible && cfg->sae.batch % cfg->sae.micro_shards != 0) {
        where w = where_of(cfg, "sae.micro_shards");
        return where_err(err, &w, "key 'sae.micro_shards': expected a divisor of sae.batch (%lld) with "
                         "sae.reproducible, got %lld", (long long)cfg->sae.batch, (long long)cfg->sae.micro_shards);
    }
    for (int i = 1; i < cfg->sae.resample.n_at; i++)
        if (cfg->sae.resample.at[i] <= cfg->sae.resample.at[i - 1]) {
            where w = where_of(cfg, "sae.resample.at");
            return where_err(err, &w, "key 'sae.resample.at': expected increasing steps, got %lld after %lld",
                             (long long)cfg->sae.resample.at[i], (long long)cfg->sae.resample.at[i - 1]);
        }
    if (strncmp(cfg->model.hook, "blocks.", 7) != 0 && strncmp(cfg->model.hook, "hook_", 5) != 0 &&
        strncmp(cfg->model.hook, "ln_final.", 9) != 0) {
        where w = where_of(cfg, "model.hook");
        return where_err(err, &w, "key 'model.hook': expected a TransformerLens hook name such as blocks.0.mlp.hook_post, got \"%s\"",
                         cfg->model.hook);
    }
    return MS_OK;
}

/* ------------------------------------------------------------------ public API */

void ms_config_free(ms_config *cfg)
{
    if (!cfg) return;
    for (int i = 0; i < N_FIELDS; i++) field_clear(cfg, &ms_fields[i]);
    for (int i = 0; i < cfg->n_saes; i++) entry_free(&cfg->saes[i]);
    free(cfg->saes);
    for (int i = 0; i < cfg->n_ovr; i++) free(cfg->ovr[i]);
    free(cfg->ovr);
    free(cfg->src);
    free(cfg->path);
    free(cfg->marks);
    memset(cfg, 0, sizeof *cfg);
}

static ms_status config_start(ms_config *cfg, const char *name, ms_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->path = strdup(name ? name : "job");
    cfg->marks = calloc(2 * (size_t)N_FIELDS, sizeof(int32_t));
    if (!cfg->path || !cfg->marks) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int i = 0; i < N_FIELDS; i++) {
        ms_status st = set_default(cfg, &ms_fields[i], err);
        if (st) return st;
    }
    return MS_OK;
}

static ms_status finish(ms_config *cfg, ms_err *err)
{
    ms_status st = resolve(cfg, err);
    if (st) return st;
    char *dump = ms_config_dump_string(cfg);
    if (!dump) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    snprintf(cfg->hash, sizeof cfg->hash, "%016llx", (unsigned long long)ms_fnv1a64(dump, strlen(dump), 0));
    free(dump);
    return MS_OK;
}

ms_status ms_config_init_defaults(ms_config *cfg, ms_err *err)
{
    ms_status st = config_start(cfg, "defaults", err);
    if (!st) st = finish(cfg, err);
    if (st) ms_config_free(cfg);
    return st;
}

/* Deepest nesting of mappings/sequences a job file may have (it needs 4: sae: resample: at: [..]).
 * Checked on the event stream before a document is built: libyaml's cost grows with the square
 * of the depth (100k nested maps took 37 s to be refused) and the walk recurses per level. */
#define MAX_DEPTH 32

static ms_status yaml_error(const yaml_parser_t *p, const char *name, ms_err *err);

static ms_status check_depth(const char *name, const char *text, size_t len, ms_err *err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    ms_status st = MS_OK;
    int depth = 0;
    for (bool done = false; !done && !st;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            st = yaml_error(&parser, name, err);
            break;
        }
        if (ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT) {
            if (++depth > MAX_DEPTH) {
                where w = {name, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1};
                st = where_err(err, &w, "nesting deeper than %d levels (a job file needs at most 4)", MAX_DEPTH);
            }
        } else if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            depth--;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return st;
}

/* Parses one YAML text into a document; the caller deletes it. */
static ms_status load_doc(yaml_document_t *doc, const char *name, const char *text, size_t len, ms_err *err)
{
    ms_status dst = check_depth(name, text, len, err);
    if (dst) return dst;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    ms_status st = MS_OK;
    if (!yaml_parser_load(&parser, doc)) {
        st = yaml_error(&parser, name, err);
        yaml_parser_delete(&parser);
        return st;
    }
    /* a second document would be silently ignored: refuse it */
    yaml_document_t extra;
    if (yaml_parser_load(&parser, &extra)) {
        if (yaml_document_get_root_node(&extra)) {
            where w = {name, (int)extra.start_mark.line + 1, (int)extra.start_mark.column + 1};
            st = where_err(err, &w, "expected a single YAML document, found another");
        }
        yaml_document_delete(&extra);
    } else {
        st = yaml_error(&parser, name, err);
    }
    yaml_parser_delete(&parser);
    if (st) yaml_document_delete(doc);
    return st;
}

static ms_status apply_override(ms_config *cfg, const char *ov, ms_err *err)
{
    const char *s = ov;
    while (*s == '-') s++;
    const char *eq = strchr(s, '=');
    where w = {"command line", 0, 0};
    if (!eq || eq == s) return where_err(err, &w, "override '%s': expected --key=value", ov);
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(eq - s), s);
    const field *f = field_find(key);
    if (!f) {
        walk wk = {cfg, NULL, "command line", err, true};
        return unknown_key(&wk, &w, key);
    }
    const char *val = eq + 1;
    yaml_document_t doc;
    char name[300];
    snprintf(name, sizeof name, "command line (--%s)", key);
    ms_status st = load_doc(&doc, name, val, strlen(val), err);
    if (st) return st;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int idx = field_index(f);
    int32_t saved[2] = {cfg->marks[2 * idx], cfg->marks[2 * idx + 1]};
    cfg->marks[2 * idx] = 0; /* an override replaces the file's value: not a duplicate */
    walk wk = {cfg, &doc, "command line", err, true};
    if (!root) {
        yaml_node_t empty = {.type = YAML_SCALAR_NODE};
        empty.data.scalar.value = (yaml_char_t *)"";
        empty.data.scalar.style = YAML_PLAIN_SCALAR_STYLE;
        st = set_node(&wk, f, &empty, &w);
    } else {
        st = set_node(&wk, f, root, &w);
    }
    /* keep the file position if there was one; -1 marks "set on the command line" */
    cfg->marks[2 * idx] = saved[0] ? saved[0] : -1;
    cfg->marks[2 * idx + 1] = saved[1];
    yaml_document_delete(&doc);
    return st;
}

static ms_status check_entries(const ms_config *cfg, ms_err *err);

/* derived: parsing for ms_config_derive_* (the entries were checked by the base parse). */
static ms_status config_parse(ms_config *cfg, const char *name, const char *text, size_t len,
                              const char *const *overrides, int n_overrides, const char *const *required,
                              bool derived, ms_err *err)
{
    ms_status st = config_start(cfg, name, err);
    if (st) goto fail;
    /* keep the job as given: an entry's config is re-derived from it */
    if (!(cfg->src = malloc(len + 1)) || (n_overrides && !(cfg->ovr = calloc((size_t)n_overrides, sizeof *cfg->ovr)))) {
        st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (len) memcpy(cfg->src, text, len);
    cfg->src[len] = '\0';
    cfg->src_len = len;
    for (int i = 0; i < n_overrides; i++, cfg->n_ovr++)
        if (!(cfg->ovr[i] = strdup(overrides[i]))) {
            st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
            goto fail;
        }
    yaml_document_t doc;
    if ((st = load_doc(&doc, cfg->path, text, len, err))) goto fail;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !is_null_scalar(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            where w = {cfg->path, (int)root->start_mark.line + 1, (int)root->start_mark.column + 1};
            st = where_err(err, &w, "expected a mapping of sections (run:, corpus:, sae:, ...), got %s", node_kind(root));
        } else {
            walk wk = {cfg, &doc, cfg->path, err, false};
            st = walk_mapping(&wk, root, "");
        }
    }
    yaml_document_delete(&doc);
    if (st) goto fail;
    for (int i = 0; i < n_overrides; i++)
        if ((st = apply_override(cfg, overrides[i], err))) goto fail;
    if ((st = ms_config_check_required(cfg, required, err))) goto fail;
    cfg->derived = derived;
    if ((st = finish(cfg, err))) goto fail;
    if (!derived && (st = check_entries(cfg, err))) goto fail;
    return MS_OK;
fail:
    ms_config_free(cfg);
    return st;
}

ms_status ms_config_parse(ms_config *cfg, const char *name, const char *text, size_t len,
                          const char *const *overrides, int n_overrides, const char *const *required,
                          ms_err *err)
{
    return config_parse(cfg, name, text, len, overrides, n_overrides, required, false, err);
}

/* ------------------------------------------------------------------ derived configs */

static void fmt_real(double v, char *buf, size_t n);


/* "key='text'" with the text single-quoted for YAML. */
static char *quoted_override(const char *key, const char *v)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    bool ok = sb_add(&buf, &len, &cap, key) && sb_add(&buf, &len, &cap, "=") && sb_scalar(&buf, &len, &cap, v, true);
    if (!ok) free(buf);
    return ok ? buf : NULL;
}

/* The job re-parsed with the base's overrides, then `extra`, then `set` (later wins); the
 * result describes one pipeline: no saes list, no model_b, no model_r. */
static ms_status derive_with(const ms_config *base, char **extra, int n_extra, char *const *set, int n_set,
                             ms_config *out, ms_err *err)
{
    int n = base->n_ovr + n_extra + n_set;
    const char **ov = calloc((size_t)n + 1, sizeof *ov);
    if (!ov) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < base->n_ovr; i++) ov[k++] = base->ovr[i];
    for (int i = 0; i < n_extra; i++) ov[k++] = extra[i];
    for (int i = 0; i < n_set; i++) ov[k++] = set[i];
    ms_status st = config_parse(out, base->path, base->src ? base->src : "", base->src ? base->src_len : 0, ov, k,
                                NULL, true, err);
    free(ov);
    if (st) return st;
    for (int i = 0; i < out->n_saes; i++) entry_free(&out->saes[i]);
    free(out->saes);
    out->saes = NULL;
    out->n_saes = 0;
    out->model_b.seed = 0;
    out->model_r.seed = 0;
    free(out->model_b.dir);
    free(out->model_b.activations);
    free(out->model_r.dir);
    free(out->model_r.activations);
    out->model_b.dir = strdup("");
    out->model_b.activations = strdup("");
    out->model_r.dir = strdup("");
    out->model_r.activations = strdup("");
    if (!out->model_b.dir || !out->model_b.activations || !out->model_r.dir || !out->model_r.activations) {
        ms_config_free(out);
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    /* a derived config is one pipeline's identity (the SAE checkpoint's): keys that only pick
     * stages, pace logs or configure later stages do not change it */
    static const char *const all[] = {"run.", "corpus.", "tokenizer.", "model.", "train_model.", "generate.", "sae.",
                                      NULL};
    static const char *const not_identity[] = {"run.stages", "run.log_every_s", "run.blas_threads", NULL};
    char *keys = ms_config_subset(out, all, not_identity);
    if (!keys) {
        ms_config_free(out);
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    snprintf(out->hash, sizeof out->hash, "%016llx", (unsigned long long)ms_fnv1a64(keys, strlen(keys), 0));
    free(keys);
    return MS_OK;
}

/* Overrides that turn the job into model B's (model 1) or the control R's (model 2) pipeline
 * (appended to ex, *n updated). R is model A's recipe stopped before its first step. */
static bool model_overrides(const ms_config *base, int model, char **ex, int *n)
{
    if (model == 0) return true;
    const bool b = model == 1;
    char seed[48], tdir[4096];
    snprintf(seed, sizeof seed, "train_model.seed=%lld", (long long)(b ? base->model_b.seed : base->model_r.seed));
    snprintf(tdir, sizeof tdir, "%s-%s", base->train_model.dir, b ? "b" : "r");
    const char *dir = b ? base->model_b.dir : base->model_r.dir;
    const char *acts = b ? base->model_b.activations : base->model_r.activations;
    ex[(*n)++] = strdup(seed);
    ex[(*n)++] = quoted_override("model.dir", dir);
    ex[(*n)++] = quoted_override("generate.out", acts);
    ex[(*n)++] = quoted_override("sae.activations", acts);
    ex[(*n)++] = quoted_override("train_model.dir", tdir);
    if (!b) ex[(*n)++] = strdup("train_model.steps=0");
    for (int i = 0; i < *n; i++)
        if (!ex[i]) return false;
    return true;
}

ms_status ms_config_derive_model(const ms_config *base, int model, ms_config *out, ms_err *err)
{
    memset(out, 0, sizeof *out);
    char *ex[8] = {0};
    int n = 0;
    ms_status st = MS_OK;
    if (model < 0 || model > 2)
        st = ms_err_set(err, MS_ERR_USAGE, "%s: no model %d (0 = A, 1 = B, 2 = the control R)", base->path, model);
    else if (model == 1 && base->model_b.seed == 0)
        st = ms_err_set(err, MS_ERR_CONFIG, "%s: the job has no model B (model_b.seed is 0)", base->path);
    else if (model == 2 && base->model_r.seed == 0)
        st = ms_err_set(err, MS_ERR_CONFIG, "%s: the job has no control model R (model_r.seed is 0)", base->path);
    else if (!model_overrides(base, model, ex, &n))
        st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (!st) st = derive_with(base, ex, n, NULL, 0, out, err);
    for (int i = 0; i < 8; i++) free(ex[i]);
    return st;
}

ms_status ms_config_derive_sae(const ms_config *base, int i, ms_config *out, ms_err *err)
{
    memset(out, 0, sizeof *out);
    if (i < 0) return ms_config_derive_model(base, 0, out, err);
    if (i >= base->n_saes) return ms_err_set(err, MS_ERR_USAGE, "%s: no SAE entry %d", base->path, i);
    const ms_sae_entry *e = &base->saes[i];
    char *ex[8] = {0};
    int n = 0;
    ms_status st = MS_OK;
    if (!model_overrides(base, e->model, ex, &n)) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    char dir[64];
    snprintf(dir, sizeof dir, "sae-%s", e->name);
    char *d = ms_path_join(base->run.out_dir, dir);
    if (!st && (!d || !(ex[n++] = quoted_override("sae.out_dir", d)))) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    free(d);
    if (!st) st = derive_with(base, ex, n, e->set, e->n_set, out, err);
    for (int k = 0; k < 8; k++) free(ex[k]);
    return st;
}

/* Every entry must derive into a valid job (relations such as sae.k <= sae.d_sae hold per
 * entry): checked once at parse time, with the entry's position. */
static ms_status check_entries(const ms_config *cfg, ms_err *err)
{
    for (int i = 0; i < cfg->n_saes; i++) {
        ms_config d;
        ms_err e2 = {0};
        ms_status st = ms_config_derive_sae(cfg, i, &d, &e2);
        if (!st) {
            ms_config_free(&d);
            continue;
        }
        const char *msg = e2.msg;
        size_t pl = strlen(cfg->path);
        if (strncmp(msg, cfg->path, pl) == 0 && msg[pl] == ':') msg += pl + 1 + (msg[pl + 1] == ' ');
        where w = {cfg->path, cfg->saes[i].line, cfg->saes[i].col};
        if (st != MS_ERR_CONFIG) return ms_err_set(err, st, "%s", e2.msg);
        return where_err(err, &w, "saes entry '%s': %s", cfg->saes[i].name, msg);
    }
    return MS_OK;
}

/* A field's value as one line of text (lists comma-separated). */
static void field_text(const ms_config *cfg, const field *f, char **buf, size_t *len, size_t *cap, bool *ok)
{
    char tmp[64];
    switch (f->type) {
    case F_STR:
        *ok = *ok && sb_add(buf, len, cap, *AT(cfg, f->off, char *const));
        break;
    case F_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)*AT(cfg, f->off, const int64_t));
        *ok = *ok && sb_add(buf, len, cap, tmp);
        break;
    case F_REAL:
        fmt_real(*AT(cfg, f->off, const double), tmp, sizeof tmp);
        *ok = *ok && sb_add(buf, len, cap, tmp);
        break;
    case F_BOOL:
        *ok = *ok && sb_add(buf, len, cap, *AT(cfg, f->off, const bool) ? "true" : "false");
        break;
    case F_ENUM:
        *ok = *ok && sb_add(buf, len, cap, f->choices[*AT(cfg, f->off, const int)]);
        break;
    case F_STRLIST:
    case F_INTLIST: {
        int n = *AT(cfg, f->off_n, const int);
        for (int i = 0; i < n; i++) {
            if (i) *ok = *ok && sb_add(buf, len, cap, ",");
            if (f->type == F_STRLIST) {
                *ok = *ok && sb_add(buf, len, cap, (*AT(cfg, f->off, char **const))[i]);
            } else {
                snprintf(tmp, sizeof tmp, "%lld", (long long)(*AT(cfg, f->off, int64_t *const))[i]);
                *ok = *ok && sb_add(buf, len, cap, tmp);
            }
        }
        break;
    }
    }
}

static bool key_matches(const char *key, const char *const *list)
{
    for (int i = 0; list && list[i]; i++) {
        size_t n = strlen(list[i]);
        if (strncmp(key, list[i], n) == 0 && (key[n] == '\0' || key[n] == '.' || list[i][n - 1] == '.')) return true;
    }
    return false;
}

char *ms_config_subset(const ms_config *cfg, const char *const *prefixes, const char *const *exclude)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    bool ok = sb_add(&buf, &len, &cap, "");
    for (int i = 0; i < N_FIELDS && ok; i++) {
        const field *f = &ms_fields[i];
        if (!key_matches(f->key, prefixes) || key_matches(f->key, exclude)) continue;
        ok = sb_add(&buf, &len, &cap, f->key) && sb_add(&buf, &len, &cap, "=");
        field_text(cfg, f, &buf, &len, &cap, &ok);
        ok = ok && sb_add(&buf, &len, &cap, "\n");
    }
    if (!ok) free(buf);
    return ok ? buf : NULL;
}

ms_status ms_config_check_required(const ms_config *cfg, const char *const *required, ms_err *err)
{
    for (int i = 0; required && required[i]; i++) {
        const field *f = field_find(required[i]);
        if (!f) continue;
        bool empty = (f->type == F_STRLIST || f->type == F_INTLIST) ? *AT(cfg, f->off_n, int) == 0
                     : f->type == F_STR                            ? !**AT(cfg, f->off, char *const)
                                                                    : cfg->marks[2 * field_index(f)] == 0;
        if (empty) {
            where w = {cfg->path, 0, 0};
            return where_err(err, &w, "missing required key '%s' (%s)", f->key, f->help);
        }
    }
    return MS_OK;
}

void ms_config_where(const ms_config *cfg, const char *key, int *line, int *col)
{
    *line = *col = 0;
    const field *f = field_find(key);
    if (!f || !cfg->marks) return;
    int idx = field_index(f);
    if (cfg->marks[2 * idx] > 0) {
        *line = cfg->marks[2 * idx];
        *col = cfg->marks[2 * idx + 1];
    }
}

void ms_config_key_where(const ms_config *cfg, const char *key, char *buf, size_t n)
{
    int line, col;
    ms_config_where(cfg, key, &line, &col);
    if (line > 0)
        snprintf(buf, n, "%s:%d:%d", cfg->path, line, col);
    else
        snprintf(buf, n, "%s (--%s on the command line or its default)", cfg->path, key);
}

const char *ms_enum_name(const char *key, int value)
{
    const field *f = field_find(key);
    if (!f || f->type != F_ENUM || value < 0) return "?";
    for (int i = 0; f->choices[i]; i++)
        if (i == value) return f->choices[i];
    return "?";
}

/* ------------------------------------------------------------------ dump */

/* Shortest decimal text that reads back as the same double. */
static void fmt_real(double v, char *buf, size_t n)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* 30 prints as "3e+01" above; people write 30.0 */
    if (strchr(buf, 'e') && fabs(v) >= 1e-4 && fabs(v) < 1e15)
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, n, "%.*f", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
    /* keep it a float in YAML's eyes */
    if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", n - strlen(buf) - 1);
}

typedef struct emit_ctx {
    yaml_emitter_t *em;
    bool ok;
} emit_ctx;

static void ev_scalar(emit_ctx *e, const char *s, bool plain)
{
    yaml_event_t ev;
    if (!e->ok) return;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), plain, 1,
                                 plain ? YAML_ANY_SCALAR_STYLE : YAML_SINGLE_QUOTED_SCALAR_STYLE);
    e->ok = yaml_emitter_emit(e->em, &ev) != 0;
}

static void ev_simple(emit_ctx *e, int kind)
{
    yaml_event_t ev;
    if (!e->ok) return;
    switch (kind) {
    case 0: yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE); break;
    case 1: yaml_mapping_end_event_initialize(&ev); break;
    case 2: yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_FLOW_SEQUENCE_STYLE); break;
    case 4: yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE); break;
    default: yaml_sequence_end_event_initialize(&ev); break;
    }
    e->ok = yaml_emitter_emit(e->em, &ev) != 0;
}

/* A string that a YAML reader would take for a non-string must be quoted. */
static bool needs_quotes(const char *s)
{
    if (!*s) return true;
    int64_t i;
    double d;
    bool b;
    return parse_int(s, &i) || parse_real(s, &d) || parse_bool(s, &b) || strcmp(s, "~") == 0 ||
           strcasecmp(s, "null") == 0;
}

static void emit_value(emit_ctx *e, const ms_config *cfg, const field *f)
{
    char buf[64];
    switch (f->type) {
    case F_STR: {
        const char *s = *AT(cfg, f->off, char *const);
        ev_scalar(e, s, !needs_quotes(s));
        break;
    }
    case F_INT:
        snprintf(buf, sizeof buf, "%lld", (long long)*AT(cfg, f->off, const int64_t));
        ev_scalar(e, buf, true);
        break;
    case F_REAL:
        fmt_real(*AT(cfg, f->off, const double), buf, sizeof buf);
        ev_scalar(e, buf, true);
        break;
    case F_BOOL:
        ev_scalar(e, *AT(cfg, f->off, const bool) ? "true" : "false", true);
        break;
    case F_ENUM:
        ev_scalar(e, f->choices[*AT(cfg, f->off, const int)], true);
        break;
    case F_STRLIST: {
        char *const *v = *AT(cfg, f->off, char **const);
        int n = *AT(cfg, f->off_n, const int);
        ev_simple(e, 2);
        for (int i = 0; i < n; i++) ev_scalar(e, v[i], !needs_quotes(v[i]));
        ev_simple(e, 3);
        break;
    }
    case F_INTLIST: {
        const int64_t *v = *AT(cfg, f->off, int64_t *const);
        int n = *AT(cfg, f->off_n, const int);
        ev_simple(e, 2);
        for (int i = 0; i < n; i++) {
            snprintf(buf, sizeof buf, "%lld", (long long)v[i]);
            ev_scalar(e, buf, true);
        }
        ev_simple(e, 3);
        break;
    }
    }
}

static int write_handler(void *data, unsigned char *buf, size_t size)
{
    FILE *f = data;
    return fwrite(buf, 1, size, f) == size;
}

/* One override value ("[a, b]" or a scalar, as entry_override wrote it) re-read and emitted. */
static void emit_override_value(emit_ctx *e, const char *text)
{
    yaml_document_t doc;
    if (load_doc(&doc, "saes", text, strlen(text), NULL)) {
        e->ok = false;
        return;
    }
    yaml_node_t *r = yaml_document_get_root_node(&doc);
    if (r && r->type == YAML_SEQUENCE_NODE) {
        ev_simple(e, 2);
        for (yaml_node_item_t *it = r->data.sequence.items.start; it < r->data.sequence.items.top; it++) {
            const yaml_node_t *item = yaml_document_get_node(&doc, *it);
            const char *v = (const char *)item->data.scalar.value;
            ev_scalar(e, v, item->data.scalar.style == YAML_PLAIN_SCALAR_STYLE || !needs_quotes(v));
        }
        ev_simple(e, 3);
    } else {
        const char *v = r && r->type == YAML_SCALAR_NODE ? (const char *)r->data.scalar.value : "";
        bool plain = r && r->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        ev_scalar(e, v, plain || !needs_quotes(v));
    }
    yaml_document_delete(&doc);
}

/* saes: one block mapping per entry (name, model, its keys; sae.resample.* nested). */
static void emit_saes(emit_ctx *e, const ms_config *cfg)
{
    ev_scalar(e, "saes", true);
    ev_simple(e, 4);
    for (int i = 0; i < cfg->n_saes; i++) {
        const ms_sae_entry *en = &cfg->saes[i];
        ev_simple(e, 0);
        ev_scalar(e, "name", true);
        ev_scalar(e, en->name, !needs_quotes(en->name));
        ev_scalar(e, "model", true);
        ev_scalar(e, en->model == 1 ? "B" : en->model == 2 ? "R" : "A", true);
        char open[64] = "";
        for (int k = 0; k < en->n_set; k++) {
            const char *kv = en->set[k] + 4; /* after "sae." */
            const char *eq = strchr(kv, '='), *dot = strchr(kv, '.');
            char sect[64] = "";
            if (dot && dot < eq) snprintf(sect, sizeof sect, "%.*s", (int)(dot - kv), kv);
            if (strcmp(sect, open) != 0) {
                if (open[0]) ev_simple(e, 1);
                if (sect[0]) ev_scalar(e, sect, true), ev_simple(e, 0);
                snprintf(open, sizeof open, "%s", sect);
            }
            const char *leaf = sect[0] ? dot + 1 : kv;
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(eq - leaf), leaf);
            ev_scalar(e, name, true);
            emit_override_value(e, eq + 1);
        }
        if (open[0]) ev_simple(e, 1);
        ev_simple(e, 1);
    }
    ev_simple(e, 3);
}

/* Emits the fields as nested block mappings, opening/closing levels as the dotted prefix
 * changes between consecutive keys. */
bool ms_config_emit_mapping(const ms_config *cfg, yaml_emitter_t *em)
{
    emit_ctx e = {.em = em, .ok = true};
    ev_simple(&e, 0);
    char open[8][64];
    int depth = 0;
    for (int i = 0; i < N_FIELDS && e.ok; i++) {
        char parts[8][64];
        int np = 0;
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", ms_fields[i].key);
        for (char *save = NULL, *t = strtok_r(tmp, ".", &save); t && np < 8; t = strtok_r(NULL, ".", &save))
            snprintf(parts[np++], 64, "%s", t);
        int common = 0;
        while (common < depth && common < np - 1 && strcmp(open[common], parts[common]) == 0) common++;
        while (depth > common) ev_simple(&e, 1), depth--;
        while (depth < np - 1) {
            ev_scalar(&e, parts[depth], true);
            ev_simple(&e, 0);
            snprintf(open[depth], 64, "%s", parts[depth]);
            depth++;
        }
        ev_scalar(&e, parts[np - 1], true);
        emit_value(&e, cfg, &ms_fields[i]);
    }
    while (depth > 0) ev_simple(&e, 1), depth--;
    if (cfg->n_saes > 0) emit_saes(&e, cfg);
    ev_simple(&e, 1);
    return e.ok;
}

static bool emit_config(const ms_config *cfg, yaml_emitter_t *em)
{
    emit_ctx e = {.em = em, .ok = true};
    yaml_event_t ev;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    e.ok = yaml_emitter_emit(e.em, &ev) != 0;
    if (e.ok) {
        yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
        e.ok = yaml_emitter_emit(e.em, &ev) != 0;
    }
    e.ok = e.ok && ms_config_emit_mapping(cfg, em);
    if (e.ok) {
        yaml_document_end_event_initialize(&ev, 1);
        e.ok = yaml_emitter_emit(e.em, &ev) != 0;
    }
    if (e.ok) {
        yaml_stream_end_event_initialize(&ev);
        e.ok = yaml_emitter_emit(e.em, &ev) != 0;
    }
    return e.ok;
}

ms_status ms_config_dump(const ms_config *cfg, FILE *f, ms_err *err)
{
    yaml_emitter_t em;
    if (!yaml_emitter_initialize(&em)) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    yaml_emitter_set_output(&em, write_handler, f);
    yaml_emitter_set_width(&em, 1000);
    yaml_emitter_set_unicode(&em, 1);
    bool ok = emit_config(cfg, &em);
    yaml_emitter_delete(&em);
    return ok ? MS_OK : ms_err_set(err, MS_ERR_IO, "cannot write the resolved config");
}

char *ms_config_dump_string(const ms_config *cfg)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return NULL;
    ms_status st = ms_config_dump(cfg, f, NULL);
    if (fclose(f) != 0 || st != MS_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

void ms_config_describe(FILE *f)
{
    for (int i = 0; i < N_FIELDS; i++) {
        const field *fl = &ms_fields[i];
        char exp[256];
        describe(fl, exp, sizeof exp);
        const char *d = fl->def;
        fprintf(f, "  %-28s %-14s %s (%s)\n", fl->key, (fl->type == F_STRLIST || fl->type == F_INTLIST) ? (*d ? d : "[]") : (*d ? d : "\"\""), fl->help, exp);
    }
}

/* ------------------------------------------------------------------ resume checks */

int ms_config_n_set(const ms_config *cfg)
{
    int n = 0;
    for (int i = 0; cfg->marks && i < N_FIELDS; i++) n += cfg->marks[2 * i] != 0;
    return n;
}

static bool in_scopes(const char *key, const char *const *scopes)
{
    for (int i = 0; scopes && scopes[i]; i++) {
        size_t n = strlen(scopes[i]);
        if (n && scopes[i][n - 1] == '.' ? strncmp(key, scopes[i], n) == 0 : strcmp(key, scopes[i]) == 0)
            return true;
    }
    return false;
}

/* One field's value as canonical one-line text (lists comma-separated in brackets). */
static void value_text(const ms_config *cfg, const field *f, FILE *o)
{
    char buf[64];
    switch (f->type) {
    case F_STR:
        for (const char *p = *AT(cfg, f->off, char *const); *p; p++)
            fputs(*p == '\n' ? "\\n" : *p == '\\' ? "\\\\" : (char[2]){*p, 0}, o);
        break;
    case F_INT:
        fprintf(o, "%lld", (long long)*AT(cfg, f->off, const int64_t));
        break;
    case F_REAL:
        fmt_real(*AT(cfg, f->off, const double), buf, sizeof buf);
        fputs(buf, o);
        break;
    case F_BOOL:
        fputs(*AT(cfg, f->off, const bool) ? "true" : "false", o);
        break;
    case F_ENUM:
        fputs(f->choices[*AT(cfg, f->off, const int)], o);
        break;
    case F_STRLIST:
    case F_INTLIST: {
        int n = *AT(cfg, f->off_n, const int);
        fputc('[', o);
        for (int i = 0; i < n; i++) {
            if (i) fputs(", ", o);
            if (f->type == F_STRLIST)
                fputs((*AT(cfg, f->off, char **const))[i], o);
            else
                fprintf(o, "%lld", (long long)(*AT(cfg, f->off, int64_t *const))[i]);
        }
        fputc(']', o);
        break;
    }
    }
}

char *ms_config_result_keys(const ms_config *cfg, const char *const *scopes)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *o = open_memstream(&buf, &n);
    if (!o) return NULL;
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &ms_fields[i];
        if (f->harmless || !in_scopes(f->key, scopes)) continue;
        fprintf(o, "%s=", f->key);
        value_text(cfg, f, o);
        fputc('\n', o);
    }
    if (fclose(o) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

ms_status ms_config_result_diff(const ms_config *cfg, const char *const *scopes, const char *saved,
                                const char *what, const char *hint, ms_err *err)
{
    char *now = ms_config_result_keys(cfg, scopes);
    if (!now) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    char list[900];
    size_t k = 0;
    int n_changed = 0;
    list[0] = '\0';
    /* every key selected now, looked up in the saved text (a key absent there was added to
     * the table since: it counts as changed only if this job sets it to a non-default value) */
    for (char *line = now, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        *nl = '\0';
        char *eq = strchr(line, '=');
        size_t klen = (size_t)(eq - line);
        const char *old = NULL;
        size_t olen = 0;
        for (const char *p = saved; p && *p;) {
            const char *e = strchr(p, '\n');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            if (len > klen && strncmp(p, line, klen) == 0 && p[klen] == '=') {
                old = p + klen + 1;
                olen = len - klen - 1;
                break;
            }
            p = e ? e + 1 : p + len;
        }
        if (!old) {
            *eq = '\0';
            const field *f = field_find(line);
            *eq = '=';
            if (!f || cfg->marks[2 * field_index(f)] == 0) continue; /* not set: default behaviour */
            /* the default's text, through the same formatter */
            char *dbuf = NULL;
            size_t dn = 0;
            FILE *o = open_memstream(&dbuf, &dn);
            ms_config tmp;
            memset(&tmp, 0, sizeof tmp);
            bool same = false;
            if (o && set_default(&tmp, f, NULL) == MS_OK) {
                value_text(&tmp, f, o);
                fclose(o);
                o = NULL;
                same = strcmp(dbuf, eq + 1) == 0;
            }
            if (o) fclose(o);
            field_clear(&tmp, f);
            free(dbuf);
            if (same) continue;
            old = "(unset)";
            olen = strlen(old);
        } else if (strlen(eq + 1) == olen && strncmp(old, eq + 1, olen) == 0) {
            continue;
        }
        n_changed++;
        if (k < sizeof list)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%.*s %.*s -> %s", n_changed > 1 ? ", " : "",
                                  (int)klen, line, (int)(olen > 60 ? 60 : olen), old, eq + 1);
    }
    free(now);
    if (n_changed == 0) return MS_OK;
    return ms_err_set(err, MS_ERR_STATE, "%s: changed since the checkpoint: %s%s (%s)", what, list,
                      k >= sizeof list ? "..." : "", hint);
}
