/* The job file's field table (key, type, range, default, help, result/harmless) and typed access
 * to one field: defaults, scalar conversion, "file:line:col" messages, where a key was set. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_internal.h"

#define OFF(m) offsetof(ms_config, m)
/* last column: can the key change what a stage computes (a resume with it changed is refused)? */
#define RESULT false
#define HARMLESS true /* log cadence, checkpoint interval, threads, paths (inputs: by content) */
#define BIG 9.0e18
#define INF HUGE_VAL

/* enum names: io.h's lists (the libraries print them too); this one only the job file knows */
static const char *const enc_inits[] = {"kaiming", "transpose", NULL};

/* The job file, key by key. Order = dump order; keys of one section stay contiguous. */
const field cfg_fields[] = {
    /* run */
    {"run.name", F_STR, OFF(run.name), 0, 0, 0, "monosem", NULL, "run name", HARMLESS},
    {"run.out_dir", F_STR, OFF(run.out_dir), 0, 0, 0, "", NULL, "output directory (default runs/<name>)", HARMLESS},
    {"run.seed", F_INT, OFF(run.seed), 0, 0, BIG, "1234", NULL, "seed of every random choice", RESULT},
    {"run.blas_threads", F_INT, OFF(run.blas_threads), 0, 0, 1024, "0", NULL, "OpenBLAS threads per rank (0 = the CPUs of the rank's affinity mask / ranks sharing it)", HARMLESS},
    {"run.log_every_s", F_REAL, OFF(run.log_every_s), 0, 0.01, 86400, "30", NULL, "seconds between progress lines in batch logs", HARMLESS},
    {"run.stages", F_STRLIST, OFF(run.stages), OFF(run.n_stages), 0, 0, "", NULL, "stages `monosem run` runs (empty = every stage of the pipeline)", HARMLESS},
    /* corpus */
    {"corpus.format", F_ENUM, OFF(corpus.format), 0, 0, 0, "text", ms_corpus_format_names, "text | jsonl | tokens", RESULT},
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
    {"model.act_fn", F_ENUM, OFF(model.act_fn), 0, 0, 0, "relu", ms_act_fn_names, "relu | gelu | gelu_new | solu_ln", RESULT},
    {"model.normalization", F_ENUM, OFF(model.normalization), 0, 0, 0, "LN", ms_norm_type_names, "LN | LNPre | none", RESULT},
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
    {"generate.dtype", F_ENUM, OFF(generate.dtype), 0, 0, 0, "float16", ms_store_dtype_names, "float16 | float32", RESULT},
    {"generate.shard_contexts", F_INT, OFF(generate.shard_contexts), 0, 1, BIG, "256", NULL, "contexts per work item", RESULT},
    {"generate.batch", F_INT, OFF(generate.batch), 0, 1, 65536, "32", NULL, "contexts per forward", RESULT},
    /* sae */
    {"sae.activations", F_STR, OFF(sae.activations), 0, 0, 0, "", NULL, "activations file (default generate.out)", HARMLESS},
    {"sae.out_dir", F_STR, OFF(sae.out_dir), 0, 0, 0, "", NULL, "SAE outputs (default <out_dir>/sae)", HARMLESS},
    {"sae.arch", F_ENUM, OFF(sae.arch), 0, 0, 0, "relu-l1", ms_sae_arch_names, "relu-l1 | topk | batchtopk | jumprelu | april-2024", RESULT},
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
const int cfg_n_fields = (int)(sizeof cfg_fields / sizeof cfg_fields[0]);

/* ------------------------------------------------------------------ field access */

const field *cfg_field_find(const char *key)
{
    for (int i = 0; i < N_FIELDS; i++)
        if (strcmp(cfg_fields[i].key, key) == 0) return &cfg_fields[i];
    return NULL;
}

int cfg_field_index(const field *f) { return (int)(f - cfg_fields); }

/* True if some field key starts with prefix + "." (prefix names a section). */
bool cfg_is_section(const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < N_FIELDS; i++)
        if (strncmp(cfg_fields[i].key, prefix, n) == 0 && cfg_fields[i].key[n] == '.') return true;
    return false;
}

void cfg_field_clear(ms_config *cfg, const field *f)
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

void cfg_describe(const field *f, char *buf, size_t n) { describe_x(f, buf, n, false); }

bool cfg_parse_int(const char *s, int64_t *out)
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

bool cfg_parse_real(const char *s, double *out)
{
    if (!*s) return false;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(d)) return false;
    *out = d;
    return true;
}

bool cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", NULL}, *const no[] = {"false", "no", "off", NULL};
    for (int i = 0; yes[i]; i++)
        if (strcasecmp(s, yes[i]) == 0) return (*out = true), true;
    for (int i = 0; no[i]; i++)
        if (strcasecmp(s, no[i]) == 0) return (*out = false), true;
    return false;
}

ms_status cfg_where_err(ms_err *err, const where *w, const char *fmt, ...)
{
    char body[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (w->line > 0) return ms_err_set(err, MS_ERR_CONFIG, "%s:%d:%d: %s", w->name, w->line, w->col, body);
    return ms_err_set(err, MS_ERR_CONFIG, "%s: %s", w->name, body);
}

ms_status cfg_bad_value(ms_err *err, const where *w, const field *f, const char *got)
{
    char exp[256];
    int64_t v;
    describe_x(f, exp, sizeof exp, (f->type == F_INT || f->type == F_INTLIST) && cfg_parse_int(got, &v) && (double)v > f->max);
    return cfg_where_err(err, w, "key '%s': expected %s, got \"%s\"", f->key, exp, got);
}

ms_status cfg_set_scalar(ms_config *cfg, const field *f, const char *s, const where *w,
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
        if (!cfg_parse_int(s, &v) || (double)v < f->min || (double)v > f->max) return cfg_bad_value(err, w, f, s);
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
        if (!cfg_parse_real(s, &v) || v < f->min || v > f->max) return cfg_bad_value(err, w, f, s);
        *AT(cfg, f->off, double) = v;
        return MS_OK;
    }
    case F_BOOL: {
        bool v;
        if (!cfg_parse_bool(s, &v)) return cfg_bad_value(err, w, f, s);
        *AT(cfg, f->off, bool) = v;
        return MS_OK;
    }
    case F_ENUM:
        for (int i = 0; f->choices[i]; i++)
            if (strcmp(s, f->choices[i]) == 0) {
                *AT(cfg, f->off, int) = i;
                return MS_OK;
            }
        return cfg_bad_value(err, w, f, s);
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

ms_status cfg_set_default(ms_config *cfg, const field *f, ms_err *err)
{
    where w = {"defaults", 0, 0};
    cfg_field_clear(cfg, f);
    if (f->type != F_STRLIST && f->type != F_INTLIST) return cfg_set_scalar(cfg, f, f->def, &w, err);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", f->def);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        ms_status st = cfg_set_scalar(cfg, f, tok, &w, err);
        if (st) return st;
    }
    return MS_OK;
}

/* ------------------------------------------------------------------ where keys were set */

ms_status ms_config_check_required(const ms_config *cfg, const char *const *required, ms_err *err)
{
    for (int i = 0; required && required[i]; i++) {
        const field *f = cfg_field_find(required[i]);
        if (!f) continue;
        bool empty = (f->type == F_STRLIST || f->type == F_INTLIST) ? *AT(cfg, f->off_n, int) == 0
                     : f->type == F_STR                            ? !**AT(cfg, f->off, char *const)
                                                                    : cfg->marks[2 * cfg_field_index(f)] == 0;
        if (empty) {
            where w = {cfg->path, 0, 0};
            return cfg_where_err(err, &w, "missing required key '%s' (%s)", f->key, f->help);
        }
    }
    return MS_OK;
}

void ms_config_where(const ms_config *cfg, const char *key, int *line, int *col)
{
    *line = *col = 0;
    const field *f = cfg_field_find(key);
    if (!f || !cfg->marks) return;
    int idx = cfg_field_index(f);
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

void ms_config_describe(FILE *f)
{
    for (int i = 0; i < N_FIELDS; i++) {
        const field *fl = &cfg_fields[i];
        char exp[256];
        cfg_describe(fl, exp, sizeof exp);
        const char *d = fl->def;
        fprintf(f, "  %-28s %-14s %s (%s)\n", fl->key, (fl->type == F_STRLIST || fl->type == F_INTLIST) ? (*d ? d : "[]") : (*d ? d : "\"\""), fl->help, exp);
    }
}

int ms_config_n_set(const ms_config *cfg)
{
    int n = 0;
    for (int i = 0; cfg->marks && i < N_FIELDS; i++) n += cfg->marks[2 * i] != 0;
    return n;
}

