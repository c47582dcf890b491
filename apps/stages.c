/* The stage table: every stage monosem knows, built or not. One row per stage. */
#include <stddef.h>

#include "app.h"

static const char *const need_corpus[] = {"corpus.paths", NULL};
static const char *const forward_opts[] = {"hook", "out", "batch", NULL};

const ms_stage ms_stages[] = {
    {"config", "print the fully resolved job file", "config [job.yaml] [--key=value ...]", true, true, false, NULL, NULL,
     ms_stage_config},
    {"tokenizer-train", "learn BPE merges from the corpus (vocab.json + merges.txt)", "tokenizer-train job.yaml", true,
     false, true, need_corpus, NULL, ms_stage_tokenizer_train},
    {"encode", "print the token ids of a text file (or stdin), one per line", "encode VOCAB MERGES [FILE]", false, false,
     false, NULL, NULL, ms_stage_encode},
    {"decode", "turn token ids (whitespace separated) back into text", "decode VOCAB MERGES [FILE]", false, false, false,
     NULL, NULL, ms_stage_decode},
    {"tokenize", "tokenize the corpus once into train/heldout token shards", "tokenize job.yaml", true, false, true,
     need_corpus, NULL, ms_stage_tokenize},
    {"train-model", "train the transformer (data parallel)", "train-model job.yaml", true, false, true, NULL, NULL,
     ms_stage_train_model},
    {"forward", "run a model on token ids and write logits, loss and a hook to HDF5",
     "forward MODEL_DIR TOKENS --hook NAME --out out.h5 [--batch N]", false, false, false, NULL, forward_opts,
     ms_stage_forward},
    {"generate", "write MLP activations of the corpus into one parallel HDF5 file", "generate job.yaml", true, false, true,
     NULL, NULL, NULL},
    {"inspect", "describe an activations file (shape, provenance, statistics)", "inspect activations.h5", false, false,
     false, NULL, NULL, NULL},
    {"train", "train a sparse autoencoder on the activations (data parallel)", "train job.yaml", true, false, true, NULL,
     NULL, ms_stage_train},
    {"eval", "loss recovered, MSE/FVU, L0, dead and ultralow features, density histogram", "eval job.yaml", true, false,
     true, NULL, NULL, NULL},
    {"analyze", "top-activating contexts, logit effects, feature splitting, HTML dashboard", "analyze job.yaml", true,
     false, true, NULL, NULL, NULL},
    {"run", "every stage of the job in order", "run job.yaml", true, false, true, NULL, NULL, NULL},
};
const int ms_n_stages = (int)(sizeof ms_stages / sizeof ms_stages[0]);
