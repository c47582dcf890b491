/* monosem/enums.h: the enums the job file and the libraries share, and their names (io/enums.c).
 * Conventions: an enum's value is the index of its name in the NULL-terminated name table; the
 * tables are static constant data (thread-safe, never freed). */
#ifndef MONOSEM_ENUMS_H
#define MONOSEM_ENUMS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Shared by the job layer (apps/job: the job file's keys) and the libraries that take these
 * values (the model's activation and normalisation, the store's dtype, the SAE's recipe). */
typedef enum { MS_CORPUS_TEXT = 0, MS_CORPUS_JSONL, MS_CORPUS_TOKENS } ms_corpus_format;
typedef enum { MS_ACT_RELU = 0, MS_ACT_GELU, MS_ACT_GELU_NEW, MS_ACT_SOLU_LN } ms_act_fn;
typedef enum { MS_NORM_LN = 0, MS_NORM_LNPRE, MS_NORM_NONE } ms_norm_type;
typedef enum { MS_DTYPE_F16 = 0, MS_DTYPE_F32 } ms_store_dtype;
typedef enum {
    MS_SAE_RELU_L1 = 0,
    MS_SAE_TOPK,
    MS_SAE_BATCHTOPK,
    MS_SAE_JUMPRELU,
    MS_SAE_APRIL_2024
} ms_sae_arch;

/* Their names as job files spell them (index = value, NULL-terminated; io/enums.c). */
extern const char *const ms_corpus_format_names[];
extern const char *const ms_act_fn_names[];
extern const char *const ms_norm_type_names[];
extern const char *const ms_store_dtype_names[];
extern const char *const ms_sae_arch_names[];
/* The name of value of the enum the job key holds: ("sae.arch", 0) -> "relu-l1"; "?" for a key
 * that holds none of these enums or a value out of range. */
const char *ms_enum_name(const char *key, int value);

#ifdef __cplusplus
}
#endif
#endif
