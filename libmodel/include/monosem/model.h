/* monosem/model.h: the one public header of libmsmodel — GPT-2 BPE tokenizer and trainer,
 * transformer config/weights, forward/backward with hooks, the model trainer. */
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
/* (declared by the tokenizer work: ms_bpe_train ...) */

/* ===================================================================== model */
/* (config, weights, forward, hooks: libmodel/model.c, kernels.c) */

/* ===================================================================== model trainer */

#ifdef __cplusplus
}
#endif
#endif
