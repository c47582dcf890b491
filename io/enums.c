/* Names of the job file's enums (io.h): one list per enum, read by the job layer's field table
 * and by the libraries that write a value's name (SAELens cfg.json, progress lines). */
#include "monosem/io.h"

#include <string.h>

const char *const ms_corpus_format_names[] = {"text", "jsonl", "tokens", NULL};
const char *const ms_act_fn_names[] = {"relu", "gelu", "gelu_new", "solu_ln", NULL};
const char *const ms_norm_type_names[] = {"LN", "LNPre", "none", NULL};
const char *const ms_store_dtype_names[] = {"float16", "float32", NULL};
const char *const ms_sae_arch_names[] = {"relu-l1", "topk", "batchtopk", "jumprelu", "april-2024", NULL};

const char *ms_enum_name(const char *key, int value)
{
    static const struct {
        const char *key;
        const char *const *names;
    } keys[] = {{"corpus.format", ms_corpus_format_names}, {"model.act_fn", ms_act_fn_names},
                {"model.normalization", ms_norm_type_names}, {"generate.dtype", ms_store_dtype_names},
                {"sae.arch", ms_sae_arch_names}};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        if (strcmp(keys[k].key, key) != 0) continue;
        if (value < 0) return "?";
        for (int i = 0; keys[k].names[i]; i++)
            if (i == value) return keys[k].names[i];
        return "?";
    }
    return "?";
}
