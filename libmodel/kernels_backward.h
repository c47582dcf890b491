/* libmodel/kernels_backward.h: private backward kernels, one beside each forward kernel of
 * kernels.h (same argument order: outputs, inputs, sizes). Gradients ACCUMULATE (+=) into their
 * outputs unless stated, so a tensor used twice (the residual stream) sums its gradients; the
 * caller zeroes the grad slab once per step. */
#ifndef MONOSEM_KERNELS_BACKWARD_H
#define MONOSEM_KERNELS_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

/* Backward of ms_matmul_forward: out (N,M) = inp (N,K) @ w (K,M) + bias.
 * dinp (N,K) stride lddi += dout @ w^T;  dw (K,M) stride lddw += inp^T @ dout;
 * dbias (M) += column sums of dout. Any of dinp, dw, dbias may be NULL (skipped). */
void ms_matmul_backward(float *dinp, int lddi, float *dw, int lddw, float *dbias,
                        const float *dout, int lddo, const float *inp, int ldi, const float *w,
                        int ldw, int N, int K, int M);
void ms_matmul_backward_naive(float *dinp, int lddi, float *dw, int lddw, float *dbias,
                              const float *dout, int lddo, const float *inp, int ldi,
                              const float *w, int ldw, int N, int K, int M);

/* Backward of ms_embed_forward: dW_E (V,C) rows of the tokens += dout; dW_pos (T,C) += dout
 * summed over the batch. dout (B,T,C). */
void ms_embed_backward(float *dW_E, float *dW_pos, const float *dout, const int32_t *tokens,
                       int B, int T, int C);

/* Backward of ms_layernorm_forward with the saved mean/rstd (N). dinp (N,C) +=; dw, db (C) +=
 * (NULL together with w for LNPre). */
void ms_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, const float *mean,
                           const float *rstd, int N, int C);

/* Backward of ms_attention_forward. dz (B,T,H,D), qkv (B,T,3,H,D), att (B,H,T,T) the saved
 * pattern -> dqkv (B,T,3,H,D) +=. scratch: B*H*T*T floats (dP per head, so the (b,h) pairs
 * can run on the kernel threads). */
void ms_attention_backward(float *dqkv, float *scratch, const float *dz, const float *qkv,
                           const float *att, int B, int T, int H, int D);
void ms_attention_backward_naive(float *dqkv, float *scratch, const float *dz,
                                 const float *qkv, const float *att, int B, int T, int H, int D);

/* Backward of ms_act_forward (relu, gelu, gelu_new) given its input: dinp (n) += dout * act'. */
void ms_act_backward(float *dinp, const float *inp, const float *dout, size_t n, int act);

/* Backward of the residual add: da += dout and db += dout (either may be NULL). */
void ms_residual_backward(float *da, float *db, const float *dout, size_t n);

/* Backward of ms_crossentropy_forward: dlogits (N,V) = scale * (softmax(logits) - onehot)
 * on rows with a target, 0 on others. OVERWRITES dlogits, which may alias logits. scale is
 * usually 1 / (positions with a target in the global batch). */
void ms_crossentropy_backward(float *dlogits, const float *logits, const float *lse,
                              const int32_t *targets, int N, int V, float scale);

#endif
