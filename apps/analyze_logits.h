/* apps/analyze_logits.h: logit effects of dictionary units by path expansion (unit direction →
 * W_out → final LayerNorm linearised around its mean scale → W_U), where model and SAE meet. */
#ifndef MONOSEM_ANALYZE_LOGITS_H
#define MONOSEM_ANALYZE_LOGITS_H

#include "monosem/model.h"

/* Units per GEMM chunk: chunk c is units [c*CHUNK, (c+1)*CHUNK), whichever rank computes it. */
#define MS_LOGIT_CHUNK 256

/* True if units at hook h have a direct path to the logits (mlp.hook_post through W_out, or a
 * residual-stream-sized hook as is). */
bool app_logit_path_supported(ms_hook h);

/* Top and bottom L logit effects of U units whose hook-space directions are dirs (U, d) row-major
 * (NULL: the identity dictionary, unit u = e_u). ln_scale: the mean final-LayerNorm scale σ̄.
 * This rank fills the chunks c with c % size == rank of top_ids/top (U, L, descending) and
 * bot_ids/bot (U, L, ascending) and leaves the other rows zero, so a sum over ranks completes
 * them; ties go to the smaller token id. Allocates one chunk's scratch. Not collective. */
ms_status app_logit_effects(const ms_model *m, ms_hook h, const float *dirs, int64_t U,
                           double ln_scale, int L, int rank, int size, int64_t *top_ids,
                           float *top, int64_t *bot_ids, float *bot, ms_err *err);

#endif
