/* libmodel/kernels.h: private forward kernels of the transformer (llm.c style: outputs, inputs,
 * sizes). The model trainer adds the matching *_backward kernels beside them. */
#ifndef MONOSEM_KERNELS_H
#define MONOSEM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Switch every kernel with a BLAS path to its naive loop version (tests compare the two).
 * Process-wide; not thread-safe to flip during a forward. */
void ms_kernels_set_naive(int on);
int ms_kernels_naive(void);

/* Threads for the non-BLAS kernels: n > 0 fixes it, 0 (default) follows OpenBLAS's count. */
void ms_kernels_set_threads(int n);
int ms_kernels_threads(void);
/* Runs fn(ctx, begin, end) over [0,n) split into contiguous ranges of at least `grain` items,
 * one per thread (the caller's thread takes the first). */
typedef void (*ms_par_fn)(void *ctx, int64_t begin, int64_t end);
void ms_parallel_for(int64_t n, int64_t grain, ms_par_fn fn, void *ctx);
/* Same with an explicit thread count. */
void ms_parallel_for_nt(int nt, int64_t n, int64_t grain, ms_par_fn fn, void *ctx);
/* For bodies that call BLAS (per-head GEMMs): OpenBLAS is held to one thread while our nt
 * threads (nt < 1: ms_kernels_threads()) run, then restored. GEMMs past OpenBLAS's size cut
 * (m*n*k > ~262k, e.g. T x T x D per head at T=128, D=32) would otherwise enter its pool from
 * every thread at once: measured 6x slower than a single thread at T=1024. Call from one
 * thread only (it changes OpenBLAS's process-wide count). */
void ms_parallel_for_blas(int nt, int64_t n, int64_t grain, ms_par_fn fn, void *ctx);

/* exp(x) for x in float range, ~2 ulp, vectorisable (no libm call). */
float ms_expf(float x);

/* dst (n) = src, split over threads (memory-bound copies of big activations). */
void ms_copy_forward(float *dst, const float *src, size_t n);

/* out (N,M) row stride ldo = inp (N,K) stride ldi @ w (K,M) stride ldw + bias (M, may be NULL). */
void ms_matmul_forward(float *out, int ldo, const float *inp, int ldi, const float *w, int ldw,
                       const float *bias, int N, int K, int M);
/* Same, row-invariant: every BLAS call covers exactly `tile` rows (N a multiple of tile; the
 * forward uses tile = T, one context), single-threaded in BLAS with our threads over tiles, so
 * an output row does not depend on N, on the thread count or on OpenBLAS's shape-dependent
 * kernel choice. Call from one thread (it holds OpenBLAS's process-wide thread count at 1). */
void ms_matmul_forward_tiled(float *out, int ldo, const float *inp, int ldi, const float *w, int ldw,
                             const float *bias, int N, int K, int M, int tile);
void ms_matmul_forward_naive(float *out, int ldo, const float *inp, int ldi, const float *w,
                             int ldw, const float *bias, int N, int K, int M);

/* out (B,T,C) = W_E[tokens[b,t]] + W_pos[t]. Tokens must be validated by the caller. */
void ms_embed_forward(float *out, const int32_t *tokens, const float *W_E, const float *W_pos,
                      int B, int T, int C);

/* out (N,C) = (inp - mean) * rstd [* w + b]; mean, rstd (N) kept for the backward.
 * w, b may be NULL (LNPre). */
void ms_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C, float eps);

/* Causal multi-head attention. qkv (B,T,3,H,D) -> att (B,H,T,T) softmax pattern (upper
 * triangle zero), z (B,T,H,D). Scale 1/sqrt(D). */
void ms_attention_forward(float *z, float *att, const float *qkv, int B, int T, int H, int D);
void ms_attention_forward_naive(float *z, float *att, const float *qkv, int B, int T, int H,
                                int D);

/* out (N) = act(inp): act is MS_ACT_RELU, MS_ACT_GELU or MS_ACT_GELU_NEW. out may equal inp. */
void ms_act_forward(float *out, const float *inp, size_t n, int act);
/* SoLU core: out (N,M) = x * softmax(x) per row. */
void ms_solu_forward(float *out, const float *inp, int N, int M);

/* out (n) = a + b. */
void ms_residual_forward(float *out, const float *a, const float *b, size_t n);

/* logits (N,V) += bias (V, may be NULL) and, if lse is non-NULL, lse (N) = logsumexp of each
 * row, in one pass over the logits. */
void ms_logits_bias_lse_forward(float *logits, float *lse, const float *bias, int N, int V);
/* Same, and per row kl (N) = KL(softmax(ref) ‖ softmax(logits after the bias)) with ref (N,V)
 * and its row logsumexps ref_lse (N), in the same pass (the row is still in cache). */
void ms_logits_bias_lse_kl_forward(float *kl, float *logits, float *lse, const float *bias,
                                   const float *ref, const float *ref_lse, int N, int V);
/* Same with the reference in probability form (ms_kl_ref): no exp of the reference per row. */
struct ms_kl_ref;
void ms_logits_bias_lse_klref_forward(float *kl, float *logits, float *lse, const float *bias,
                                      const struct ms_kl_ref *ref, int N, int V);

/* Per-row logsumexp of logits (N,V) into lse (N); losses (N) = lse - logits[target], 0 where
 * targets is NULL or target < 0. Returns the sum of the losses over rows with a target and
 * their count in *n_loss. */
double ms_crossentropy_forward(float *losses, float *lse, const float *logits,
                               const int32_t *targets, int N, int V, int64_t *n_loss);

#endif
