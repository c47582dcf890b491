/* monosem/model.h: the one public header of libmsmodel — GPT-2 BPE tokenizer and trainer,
 * transformer config/weights, forward/backward with hooks, the model trainer.
 *
 * Conventions:
 * - Shapes: every array is dense row-major; comments give shapes as (B, T, d) with the last
 *   index fastest. B contexts of T tokens, d_model residual width, V = d_vocab. float32
 *   everywhere; token ids int32; losses and reductions that must not drift in double.
 * - Ownership: each object has an _init/_load and a _free (ms_tokenizer_load/_free,
 *   ms_bpe_counter_init/_free, ms_model_init/_load/_free, ms_model_acts_init/_free,
 *   ms_model_backbuf_init/_free, ms_model_params_bind/_unbind); _free accepts a zeroed or
 *   failed-to-init object (and NULL). Arrays handed back through a pointer-to-pointer (encode
 *   ids, ms_tokens_load_text tokens) and returned strings (ms_model_config_json) are malloc'd
 *   and the caller frees them. Views point into a slab they do not own: ms_model_acts_hook into
 *   the activations, ms_model_params_bind's into the slab the caller passes (it must outlive
 *   the views).
 * - Collective calls: none. libmsmodel does not know MPI; the apps reduce gradients and losses.
 * - Threads: the kernels split work over their own threads (ms_kernels_threads) and OpenBLAS's
 *   (ms_forward_opts.row_invariant makes forward rows independent of the thread count). A
 *   tokenizer, a model's activations and its backward buffers are used by one thread at a
 *   time; forward/backward are called from one thread at a time per process (see
 *   ms_model_forward). Errors: ms_status plus a one-line message in ms_err. */
#ifndef MONOSEM_MODEL_H
#define MONOSEM_MODEL_H

#include "monosem/io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================== tokenizer (GPT-2 BPE) */

/* A byte-level BPE tokenizer loaded from encoder.json/vocab.json (token -> id) and
 * vocab.bpe/merges.txt. Encoding never turns literal "<|endoftext|>" text into the special
 * token (as the reference GPT-2 encoder); callers insert ms_tokenizer_eot() between documents.
 * A tokenizer holds a cache: use one per thread. */
/* Behaviour (libmodel/bpe_pretok.c, tokenizer_encode.c): text is cut with the GPT-2 pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (PCRE2, Unicode properties; \s is the ECMAScript whitespace set of the reference npm
 * gpt-3-encoder, which includes U+FEFF and not U+0085 / U+001C-U+001F), then each piece's bytes are
 * merged by rank. Invalid UTF-8: each byte that is not part of a valid sequence is cut as one
 * "other" character (what the U+FFFD a UTF-8 decoder puts there is), so valid text around it is
 * cut exactly as the reference cuts the decoded string; the byte itself is kept and encoded with
 * byte-level tokens, so decode(encode(x)) == x for any bytes. Merging follows the reference loop
 * exactly (the lowest-ranked pair, all its occurrences left to right, repeat), also for long
 * pieces (O(n log n) there). Streaming callers may split text at a space that follows a printable
 * ASCII byte without changing the ids. */
typedef struct ms_tokenizer ms_tokenizer;

/* Loads; on error *tok is NULL and err names the file and the place. Caller frees. */
ms_status ms_tokenizer_load(ms_tokenizer **tok, const char *vocab_path, const char *merges_path,
                            ms_err *err);
void ms_tokenizer_free(ms_tokenizer *tok);
int32_t ms_tokenizer_vocab_size(const ms_tokenizer *tok);
/* Id of <|endoftext|>, or -1 if the vocabulary has none. */
int32_t ms_tokenizer_eot(const ms_tokenizer *tok);
/* Appends the ids of len bytes of text (any bytes) to *ids (grown with realloc; *n and *cap
 * updated; *ids may start NULL). */
ms_status ms_tokenizer_encode(ms_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                              size_t *n, size_t *cap, ms_err *err);
/* Appends the bytes of ids to *out (grown with realloc, always NUL-terminated). */
ms_status ms_tokenizer_decode(const ms_tokenizer *tok, const int32_t *ids, size_t n, char **out,
                              size_t *len, size_t *cap, ms_err *err);
/* The raw bytes one token stands for (not NUL-terminated), for dashboards; NULL if id invalid. */
const char *ms_tokenizer_token_bytes(const ms_tokenizer *tok, int32_t id, size_t *len);

/* ===================================================================== BPE trainer */
/* Learns byte-level BPE merges GPT-2 style (libmodel/bpe_count.c, bpe_train.c, bpe_write.c).
 * Text is cut into pre-tokens
 * with the tokenizer's GPT-2 pattern and counted in a hash table (memory grows with distinct
 * pre-tokens, not with corpus size); merges never cross pre-tokens. Each step merges the most
 * frequent adjacent pair; ties go to the pair whose (first token bytes, second token bytes) is
 * lexicographically smallest, so results are deterministic. Nothing here is collective. */
typedef struct ms_bpe_counter ms_bpe_counter;

/* Empty counter; caller frees with ms_bpe_counter_free. */
ms_status ms_bpe_counter_init(ms_bpe_counter **c, ms_err *err);
void ms_bpe_counter_free(ms_bpe_counter *c);
/* Counts the pre-tokens of len bytes of text (any bytes; one document: pre-tokens never span
 * two calls). */
ms_status ms_bpe_counter_add(ms_bpe_counter *c, const char *text, size_t len, ms_err *err);
/* Distinct pre-tokens and total pre-tokens counted so far. */
size_t ms_bpe_counter_distinct(const ms_bpe_counter *c);
int64_t ms_bpe_counter_total(const ms_bpe_counter *c);

typedef struct ms_bpe_result {
    int64_t n_merges;  /* merges learned (fewer than asked when no pair is left) */
    int32_t vocab_size; /* 256 byte tokens + distinct merged tokens + <|endoftext|> */
    double seconds;
} ms_bpe_result;

/* Learns up to n_merges merges from the counted words and writes vocab_path (JSON token ->
 * id: the 256 byte tokens in GPT-2's order, then merged tokens in order of creation, then
 * <|endoftext|> last) and merges_path ("#version: 0.2" then one "a b" line per merge), each
 * atomically (temporary name, then rename). A merge whose result already exists as a token
 * (other split of the same bytes) adds no new id. res may be NULL. */
ms_status ms_bpe_train(const ms_bpe_counter *c, int64_t n_merges, const char *vocab_path,
                       const char *merges_path, ms_bpe_result *res, ms_err *err);

/* ===================================================================== model */
/* GPT-2 / TransformerLens style transformer (libmodel/model_*.c, kernels*.c). Shapes use
 * B batch, T positions, C d_model, H n_heads, D d_head, M d_mlp, V d_vocab, L n_layers.
 * Nothing here is collective; nothing allocates inside ms_model_forward. */

#define MS_MODEL_MAX_NAME 64

typedef struct ms_model_config {
    int n_layers, d_model, d_mlp, n_heads, d_head, n_ctx, d_vocab;
    int act_fn;        /* ms_act_fn (io.h): relu, gelu (erf), gelu_new (tanh), solu_ln */
    int normalization; /* ms_norm_type (io.h): LN (w,b), LNPre (no w,b), none */
    float eps;         /* LayerNorm eps, default 1e-5 */
} ms_model_config;

/* Reads config.json with TransformerLens keys (n_layers, d_model, d_mlp, n_heads, d_head,
 * n_ctx, d_vocab, act_fn, normalization_type, eps) or HF GPT-2 keys (n_layer, n_embd, n_head,
 * n_positions, vocab_size, activation_function, layer_norm_epsilon, n_inner). Validates. */
ms_status ms_model_config_load(ms_model_config *cfg, const char *path, ms_err *err);
/* Range checks (all sizes > 0, known act_fn/normalization). */
ms_status ms_model_config_check(const ms_model_config *cfg, const char *where, ms_err *err);
/* config.json text (TransformerLens keys), malloc'd, caller frees; NULL on OOM. */
char *ms_model_config_json(const ms_model_config *cfg);

/* One parameter tensor of the slab, by TransformerLens name, in slab order. */
typedef struct ms_model_tensor {
    char name[MS_MODEL_MAX_NAME]; /* e.g. "blocks.0.attn.W_Q" */
    int ndim;
    int64_t shape[3];
    size_t offset; /* floats from the start of the slab */
    size_t numel;
} ms_model_tensor;

/* Views of one layer's parameters into a slab (params, grads or Adam moments alike). */
typedef struct ms_layer_params {
    float *ln1_w, *ln1_b;     /* (C); NULL unless normalization is LN */
    float *W_Q, *W_K, *W_V;   /* (H,C,D) */
    float *b_Q, *b_K, *b_V;   /* (H,D) */
    float *W_O;               /* (H,D,C) */
    float *b_O;               /* (C) */
    float *ln2_w, *ln2_b;     /* (C); NULL unless LN */
    float *W_in;              /* (C,M) */
    float *b_in;              /* (M) */
    float *ln_mid_w, *ln_mid_b; /* (M); solu_ln with LN only (blocks.L.mlp.ln.w/b), else NULL */
    float *W_out;             /* (M,C) */
    float *b_out;             /* (C) */
} ms_layer_params;

typedef struct ms_model_params {
    float *W_E;               /* (V,C)  embed.W_E */
    float *W_pos;             /* (n_ctx,C) pos_embed.W_pos */
    ms_layer_params *blocks;  /* n_layers entries, malloc'd by ms_model_params_bind */
    float *lnf_w, *lnf_b;     /* (C); NULL unless LN */
    float *W_U;               /* (C,V)  unembed.W_U */
    float *b_U;               /* (V)    unembed.b_U */
} ms_model_params;

/* Number of floats in a parameter slab for cfg. */
size_t ms_model_params_numel(const ms_model_config *cfg);
/* The tensor table in slab order: *out malloc'd (caller frees), *n entries. */
ms_status ms_model_tensors(const ms_model_config *cfg, ms_model_tensor **out, int *n,
                           ms_err *err);
/* Points views into slab (ms_model_params_numel floats), e.g. a grads or Adam slab laid out
 * like the params. views->blocks is malloc'd: release with ms_model_params_unbind. */
ms_status ms_model_params_bind(const ms_model_config *cfg, float *slab, ms_model_params *views,
                               ms_err *err);
void ms_model_params_unbind(ms_model_params *views);

/* A model: config, one contiguous parameter slab, named views into it. */
typedef struct ms_model {
    ms_model_config cfg;
    float *params;      /* (n_params) one slab, 64-byte aligned, owned */
    size_t n_params;
    ms_model_params w;  /* views into params */
    ms_model_tensor *tensors; /* n_tensors entries, slab order */
    int n_tensors;
} ms_model;

/* Allocates a zeroed slab for cfg (the trainer then initialises or loads it). */
ms_status ms_model_init(ms_model *m, const ms_model_config *cfg, ms_err *err);
/* GPT-2 style init: weights N(0, std), W_out and W_O scaled by 1/sqrt(2 L), biases 0, LN
 * weights 1. Deterministic for a seed. */
void ms_model_init_random(ms_model *m, uint64_t seed, float std);
/* Loads dir/config.json + dir/model.safetensors. Tensor names: TransformerLens, or HF GPT-2
 * (wte/wpe/h.L.ln_1/attn.c_attn/attn.c_proj/ln_2/mlp.c_fc/mlp.c_proj/ln_f/lm_head, optional
 * "transformer." prefix; c_attn is split into W_Q/W_K/W_V; W_U = lm_head^T, or wte^T when
 * tied). dtypes F32/F16/BF16/F64. Errors name the file and the tensor. On error m is freed. */
ms_status ms_model_load(ms_model *m, const char *dir, ms_err *err);
/* Same with explicit paths. */
ms_status ms_model_load_files(ms_model *m, const char *config_path, const char *weights_path,
                              ms_err *err);
/* Writes dir/config.json and dir/model.safetensors (F32, TransformerLens names), each to a
 * temporary name then renamed. Creates dir. */
ms_status ms_model_save(const ms_model *m, const char *dir, ms_err *err);
void ms_model_free(ms_model *m);

/* ---- hooks (TransformerLens names) */
typedef enum ms_hook_kind {
    MS_HOOK_RESID_PRE = 0, /* blocks.L.hook_resid_pre   (B,T,C) */
    MS_HOOK_ATTN_OUT,      /* blocks.L.hook_attn_out    (B,T,C) */
    MS_HOOK_RESID_MID,     /* blocks.L.hook_resid_mid   (B,T,C) */
    MS_HOOK_MLP_PRE,       /* blocks.L.mlp.hook_pre     (B,T,M) */
    MS_HOOK_MLP_MID,       /* blocks.L.mlp.hook_mid     (B,T,M) solu_ln only: x*softmax(x) */
    MS_HOOK_MLP_POST,      /* blocks.L.mlp.hook_post    (B,T,M) the neurons */
    MS_HOOK_MLP_OUT,       /* blocks.L.hook_mlp_out     (B,T,C) */
    MS_HOOK_RESID_POST,    /* blocks.L.hook_resid_post  (B,T,C) */
    MS_HOOK_KIND_COUNT
} ms_hook_kind;

typedef struct ms_hook {
    int layer;
    ms_hook_kind kind;
} ms_hook;

/* Parses "blocks.L.<...>" for cfg (layer in range, hook_mid only for solu_ln). */
ms_status ms_hook_parse(ms_hook *h, const char *name, const ms_model_config *cfg, ms_err *err);
/* Writes the TransformerLens name of h into buf. */
void ms_hook_name(ms_hook h, char *buf, size_t n);
/* Width of the activation at h (C or M). */
int ms_hook_dim(const ms_model_config *cfg, ms_hook h);

/* A replace callback: act (B,T,d) holds the activation at `hook`; the callback overwrites it
 * in place with what the rest of the forward should see (an SAE reconstruction, zeros, ...).
 * Return MS_OK, or an error (with err set) to abort the forward. */
typedef ms_status (*ms_hook_fn)(void *user, ms_hook hook, float *act, int B, int T, int d,
                                ms_err *err);
/* Ready-made callback: zero-ablation. */
ms_status ms_hook_fn_zero(void *user, ms_hook hook, float *act, int B, int T, int d,
                          ms_err *err);

typedef struct ms_hook_capture {
    ms_hook hook;
    float *dst; /* (B,T,d) caller-owned, contiguous */
} ms_hook_capture;

typedef struct ms_hook_replace {
    ms_hook hook;
    ms_hook_fn fn;
    void *user;
} ms_hook_replace;

typedef struct ms_forward_opts {
    /* (B,T) next-token targets or NULL; a negative target means "no loss here" (loss 0).
     * With targets the forward fills acts->losses and acts->mean_loss. */
    const int32_t *targets;
    /* Stop right after this hook (its replaces and captures run; nothing after: no later
     * layers, no unembed). NULL runs to the logits. */
    const ms_hook *stop_after;
    /* Resume at this hook: everything before it is taken as the previous forward on the same
     * acts left it (same tokens, B and T: the caller's promise; B and T are checked). The
     * replaces and captures at the hook run on its buffer, then the rest of the forward is
     * recomputed. Evaluations use it to splice several replacements into one clean forward
     * at the cost of the tail only. NULL runs from the embedding. Resuming at an earlier hook
     * after a resume at a later one is fine; the reverse reads buffers the earlier resume
     * changed, so order resumes from the latest hook to the earliest. */
    const ms_hook *start_at;
    const ms_hook_capture *captures; /* copies taken after any replace at the same hook */
    int n_captures;
    const ms_hook_replace *replaces; /* run in order at their hook */
    int n_replaces;
    /* Every output row bitwise independent of B, of the thread count and of OpenBLAS's
     * shape-dependent kernel choice (each GEMM covers one context; a little slower). Up to the
     * unembedding (the logits GEMM is not tiled). Used by generate, whose rows must not depend
     * on which rank or batch computed them. */
    bool row_invariant;
} ms_forward_opts;

/* Activations of one forward, one slab allocated once for (B,T) (llm.c style): everything a
 * backward needs. Tensors are packed for the (B,T) of the last forward call (B*T rows). */
typedef struct ms_layer_acts {
    float *resid_pre;            /* (B,T,C) hook_resid_pre (aliases the previous resid_post) */
    float *ln1;                  /* (B,T,C) LayerNorm output (after w,b) */
    float *ln1_mean, *ln1_rstd;  /* (B,T) */
    float *qkv;                  /* (B,T,3,H,D) q, k, v with biases */
    float *att;                  /* (B,H,T,T) softmax pattern; upper triangle is zero */
    float *z;                    /* (B,T,H,D) attention-weighted values (hook_z) */
    float *attn_out;             /* (B,T,C) hook_attn_out (z W_O + b_O) */
    float *resid_mid;            /* (B,T,C) */
    float *ln2;                  /* (B,T,C) */
    float *ln2_mean, *ln2_rstd;  /* (B,T) */
    float *mlp_pre;              /* (B,T,M) hook_pre */
    float *mlp_mid;              /* (B,T,M) solu_ln: x*softmax(x); NULL otherwise */
    float *mid_mean, *mid_rstd;  /* (B,T) solu_ln LayerNorm stats; NULL otherwise */
    float *mlp_post;             /* (B,T,M) hook_post */
    float *mlp_out;              /* (B,T,C) hook_mlp_out */
    float *resid_post;           /* (B,T,C) hook_resid_post */
} ms_layer_acts;

#define MS_ACTS_NO_LOGITS 1u /* do not allocate lnf/logits/lse/losses (forward must stop early) */

typedef struct ms_model_acts {
    int B, T;                    /* capacity */
    int b, t;                    /* shape of the last forward */
    unsigned flags;
    float *mem;                  /* the slab, owned */
    size_t n_floats;
    ms_layer_acts *layers;       /* n_layers entries */
    int n_layers;
    ms_model_config cfg;         /* the config the buffers were sized for (checked by forward) */
    float *lnf;                  /* (B,T,C) final LayerNorm output */
    float *lnf_mean, *lnf_rstd;  /* (B,T) */
    float *logits;               /* (B,T,V) */
    float *lse;                  /* (B,T) logsumexp of each logits row (filled with targets) */
    float *losses;               /* (B,T) per-token cross-entropy (0 where target < 0) */
    double mean_loss;            /* over positions with a target; NaN if none */
    float *wqkv, *bqkv;          /* scratch: W_Q|W_K|W_V packed (C,3,H,D) and biases (3,H,D) */
    float *lnf1;                 /* scratch (B,T,C+1): lnf and a ones column (bias inside the GEMM) */
    int64_t n_loss;              /* positions with a target */
} ms_model_acts;

/* Allocates and first-touches activations for up to B contexts of T <= n_ctx positions. */
ms_status ms_model_acts_init(ms_model_acts *a, const ms_model_config *cfg, int B, int T,
                             unsigned flags, ms_err *err);
void ms_model_acts_free(ms_model_acts *a);

/* targets[b,t] = tokens[b,t+1], and -1 at t = T-1: the usual next-token loss. */
void ms_model_next_targets(int32_t *targets, const int32_t *tokens, int B, int T);

/* Forward of tokens (B,T) with B <= acts->B, T <= acts->T. Token ids must lie in [0,V).
 * opts may be NULL (full forward, no loss). Threads: OpenBLAS's count — its pool runs the big
 * GEMMs; the other kernels (attention per head, LayerNorm, activations, logsumexp) split rows
 * over as many short-lived threads of their own. Call from one thread at a time per process
 * (the attention briefly sets OpenBLAS's process-wide thread count). */
ms_status ms_model_forward(const ms_model *m, ms_model_acts *acts, const int32_t *tokens,
                           int B, int T, const ms_forward_opts *opts, ms_err *err);

/* Reads a text file of whitespace-separated token ids, one context per line (blank lines
 * skipped, every line the same length). *tokens (B,T) malloc'd, caller frees. Errors name the
 * file and line. */
ms_status ms_tokens_load_text(const char *path, int32_t **tokens, int *B, int *T, ms_err *err);

/* The buffer holding activation h in acts after a forward ((b,t,d) packed); NULL if h is not
 * stored (hook_mid outside solu_ln). */
float *ms_model_acts_hook(const ms_model_acts *acts, ms_hook h);

/* The final LayerNorm and unembedding of n rows of the last layer's residual stream (e.g.
 * captured at blocks.{L-1}.hook_resid_post by forwards that stop there), so evaluations can
 * unembed in row chunks that stay in cache instead of holding (B,T,V) logits:
 * logits (n,V); lse (n) their logsumexps; losses (n) = lse − logit[target] (0 where the target
 * is negative); with kl (n) non-NULL and a reference — the logits (n,V) and lse (n) of another
 * unembedding of the same rows — per-row KL(ref ‖ this), computed in the logsumexp's pass
 * (identical logits give exactly 0). kl, kl_ref_* may be NULL. scratch holds
 * ms_model_unembed_scratch(cfg, n) floats. Results equal the forward's for the same rows.
 * Threads as the forward. */
ms_status ms_model_unembed(const ms_model *m, float *logits, float *lse, float *losses, float *kl,
                           const float *resid, const int32_t *targets, const float *kl_ref_logits,
                           const float *kl_ref_lse, float *scratch, int n, ms_err *err);
/* A KL reference in probability form, for unembedding many variants against one reference:
 * probs (n,V) = softmax of its logits, lse (n) their logsumexps, pdot (n) = Σ_v p_v·logit_v,
 * psum (n) = Σ_v p_v (≈ 1). The KL of a row x is then (pdot − Σ p·x) + (lse_x − lse)·psum: one
 * multiply-add per logit instead of an exp (float products in blocks of 64 summed into
 * doubles, in the same order for the reference and every row, so identical logits still give
 * exactly 0). */
typedef struct ms_kl_ref {
    const float *probs;
    const float *lse;
    const double *pdot, *psum;
} ms_kl_ref;
/* Fills probs (may be logits itself: in place), pdot and psum from logits (n,V) and lse (n). */
void ms_logits_kl_ref_fill(float *probs, double *pdot, double *psum, const float *logits, const float *lse,
                    int n, int V);
/* ms_model_unembed with the KL against a reference in probability form (ref non-NULL: kl (n)). */
ms_status ms_model_unembed_kl(const ms_model *m, float *logits, float *lse, float *losses, float *kl,
                              const float *resid, const int32_t *targets, const ms_kl_ref *ref,
                              float *scratch, int n, ms_err *err);
size_t ms_model_unembed_scratch(const ms_model_config *cfg, int n);

/* Per-position KL(p ‖ q) in nats: kl (N) = Σ_v p_v (log p_v − log q_v), p = softmax of
 * logits_p (N,V) with row logsumexps lse_p (N), q likewise (the forward fills acts->lse when
 * it has targets). Identical rows give exactly 0. Threads as the forward's kernels. */
void ms_logits_kl(float *kl, const float *logits_p, const float *lse_p, const float *logits_q,
                  const float *lse_q, int N, int V);

/* ===================================================================== model trainer */
/* (libmodel/train.c, libmodel/kernels_backward.c) Backward pass, AdamW with warm-up + cosine
 * decay, global-norm clipping, and a data-parallel trainer with exact checkpoint/resume. The
 * backward supports LN / LNPre / none and relu / gelu / gelu_new (not solu_ln). */

/* Scratch for one backward of up to (B,T) (allocated and first-touched once). */
typedef struct ms_model_backbuf {
    int B, T;
    float *mem;
    size_t n_floats;
    float *dresid;      /* (B,T,C) gradient of the residual stream */
    float *dtmp;        /* (B,T,C) gradient of a LayerNorm output / the attention's z input */
    float *dqkv;        /* (B,T,3,H,D) */
    float *dz;          /* (B,T,H,D) */
    float *datt;        /* (B,H,T,T) each head's dP / dS */
    float *dpost, *dpre; /* (B,T,M) */
    float *wqkv, *dwqkv; /* (C,3,H,D) one layer's W_Q|W_K|W_V packed, and its gradient */
} ms_model_backbuf;
ms_status ms_model_backbuf_init(ms_model_backbuf *b, const ms_model_config *cfg, int B, int T,
                                ms_err *err);
void ms_model_backbuf_free(ms_model_backbuf *b);

/* Backward of the last ms_model_forward on acts (run to the logits with opts->targets).
 * ACCUMULATES into grads (views of a slab laid out like the params: zero it first).
 * The loss differentiated is loss_scale * sum of per-token losses (loss_scale = 1 / tokens
 * with a target in the global batch gives the mean). Overwrites acts->logits with dlogits. */
ms_status ms_model_backward(const ms_model *m, ms_model_acts *acts, ms_model_backbuf *buf,
                            const ms_model_params *grads, const int32_t *tokens,
                            const int32_t *targets, float loss_scale, ms_err *err);

/* Learning rate at step (0-based): linear warm-up to lr over `warmup` steps, then cosine decay
 * to lr * min_frac at step `total`. */
double ms_train_lr_schedule(int64_t step, int64_t warmup, int64_t total, double lr, double min_frac);
/* Global L2 norm of n floats (accumulated in double). */
double ms_train_grad_norm(const float *g, size_t n);
/* True for tensors that get weight decay: the matrices (TransformerLens leaf W_*), not
 * biases or LayerNorm weights. */
bool ms_model_tensor_decays(const ms_model_tensor *t);
/* One AdamW step (PyTorch semantics, decoupled decay) over n entries; t is the 1-based step
 * count for bias correction. */
void ms_train_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int64_t t);

/* Unigram baseline: log-probabilities (V) from token counts with add-one smoothing. */
void ms_train_unigram_logprobs(double *logp, const int64_t *counts, int V);

/* Checkpoint of a training run: one safetensors file with the weights under their
 * TransformerLens names, the Adam moments as "adam_m.<name>" / "adam_v.<name>", and metadata
 * (step, data position, fingerprint of the settings, rank count). Written atomically. */
typedef struct ms_train_ckpt_info {
    int64_t step;     /* optimizer steps done */
    int64_t data_pos; /* training contexts consumed (global) */
    char fingerprint[17];
    int n_ranks;
    const char *job_keys; /* save: the job keys that affect the result (ms_config_result_keys),
                           * stored as metadata "job_keys" when not NULL; borrowed. load: NULL */
} ms_train_ckpt_info;
ms_status ms_train_checkpoint_save(const char *path, const ms_model *m, const float *adam_m,
                                   const float *adam_v, const ms_train_ckpt_info *info,
                                   ms_err *err);
/* m must be initialised (ms_model_init) with the run's config; adam_m/adam_v have
 * m->n_params floats. Shapes are checked against m. */
ms_status ms_train_checkpoint_load(const char *path, ms_model *m, float *adam_m, float *adam_v,
                                   ms_train_ckpt_info *info, ms_err *err);

#ifdef __cplusplus
}
#endif
#endif
