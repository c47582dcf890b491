/* The stage table: every stage monosem knows, built or not. One row per stage. */
#include <stddef.h>
#include <string.h>

#include "app.h"

static const char *const need_corpus[] = {"corpus.paths", NULL};
static const char *const forward_opts[] = {"hook", "out", "batch", NULL};
static const char *const inspect_opts[] = {"rows", NULL};
static const char *const only_opts[] = {"only", NULL};

const app_stage app_stages[] = {
    {.name = "config", .summary = "print the fully resolved job file",
     .usage = "config [job.yaml] [--key=value ...]", .needs_job = true, .job_optional = true,
     .run = app_stage_config},
    {.name = "tokenizer-train", .summary = "learn BPE merges from the corpus (vocab.json + merges.txt)",
     .usage = "tokenizer-train job.yaml [--force]", .needs_job = true, .record = true, .required = need_corpus,
     .run = app_stage_tokenizer_train},
    {.name = "encode", .summary = "print the token ids of a text file (or stdin), one per line",
     .usage = "encode VOCAB MERGES [FILE]", .run = app_stage_encode},
    {.name = "decode", .summary = "turn token ids (whitespace separated) back into text",
     .usage = "decode VOCAB MERGES [FILE]", .run = app_stage_decode},
    {.name = "tokenize", .summary = "tokenize the corpus once into train/heldout token shards",
     .usage = "tokenize job.yaml", .needs_job = true, .record = true, .required = need_corpus,
     .run = app_stage_tokenize},
    {.name = "train-model", .summary = "train the transformer (data parallel); model B too if the job has one",
     .usage = "train-model job.yaml [--only A|B]", .needs_job = true, .record = true, .options = only_opts,
     .stops = true,
     .run = app_stage_train_model},
    {.name = "forward", .summary = "run a model on token ids and write logits, loss and a hook to HDF5",
     .usage = "forward MODEL_DIR TOKENS --hook NAME --out out.h5 [--batch N]", .options = forward_opts,
     .run = app_stage_forward},
    {.name = "generate", .summary = "write MLP activations of the corpus into one parallel HDF5 file (per model)",
     .usage = "generate job.yaml [--only A|B] [--force]", .needs_job = true, .record = true, .options = only_opts,
     .stops = true,
     .run = app_stage_generate},
    {.name = "inspect", .summary = "describe an activations file (shape, provenance, statistics)",
     .usage = "inspect activations.h5 [--rows N] [--all]", .options = inspect_opts, .run = app_stage_inspect},
    {.name = "train", .summary = "train the job's sparse autoencoders in sequence (data parallel)",
     .usage = "train job.yaml [--only NAME]", .needs_job = true, .record = true, .options = only_opts,
     .stops = true,
     .run = app_stage_train},
    {.name = "eval", .summary = "loss recovered, MSE/FVU, L0, dead and ultralow features, density histogram",
     .usage = "eval job.yaml", .needs_job = true, .record = true, .stops = true, .run = app_stage_eval},
    {.name = "analyze", .summary = "what every feature and neuron responds to: top/interval contexts, logit effects, measures",
     .usage = "analyze job.yaml", .needs_job = true, .record = true, .stops = true,
     .run = app_stage_analyze},
    {.name = "compare", .summary = "feature splitting across SAE sizes, universality of model A vs model B",
     .usage = "compare job.yaml", .needs_job = true, .record = true, .stops = true, .run = app_stage_compare},
    {.name = "report", .summary = "static HTML feature dashboard from the eval and analyze outputs",
     .usage = "report job.yaml", .needs_job = true, .record = true, .run = app_stage_report},
    {.name = "run", .summary = "every pipeline stage of the job in order (skips finished ones)",
     .usage = "run job.yaml", .needs_job = true, .stops = true, .run = app_stage_run},
};
const int app_n_stages = (int)(sizeof app_stages / sizeof app_stages[0]);

const app_stage *app_stage_find(const char *name)
{
    for (int i = 0; i < app_n_stages; i++)
        if (strcmp(app_stages[i].name, name) == 0) return &app_stages[i];
    return NULL;
}
