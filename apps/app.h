/* apps/app.h: what a stage of the monosem command receives, and the stage table. */
#ifndef MONOSEM_APP_H
#define MONOSEM_APP_H

#include "monosem/io.h"
#include "monosem/job.h"

/* Everything a stage gets. main owns it: it initialises MPI, parses the command line, loads
 * the job file on every rank (rank 0 reads it and broadcasts the bytes), and after the stage
 * returns agrees on the verdict over all ranks, prints the error once (rank 0) and exits. */
typedef struct app_stage app_stage;

typedef struct app_ctx {
    const app_stage *def; /* the stage being run */
    ms_comm comm;
    ms_config cfg; /* resolved job (valid when the stage needs_job) */
    bool have_cfg;
    const char *stage;
    const char *job_path;
    /* positional arguments after the stage name (the job file and --key=value overrides
     * removed for job stages), and options not consumed by main (e.g. --hook NAME) */
    int argc;
    char **argv;
    ms_runrec rec; /* run record; main writes it after the stage when have_cfg */
} app_ctx;

/* A stage returns MS_OK or an error with err set. It must return on every rank (main agrees
 * on the verdict collectively); errors raised on a subset of ranks must not leave other ranks
 * blocked in a collective: agree (ms_comm_agree) before and after collective sections. */
typedef ms_status (*app_stage_fn)(app_ctx *app, ms_err *err);

struct app_stage {
    const char *name;
    const char *summary;
    const char *usage;             /* after "monosem " */
    bool needs_job;                /* first positional argument is a job file */
    bool job_optional;             /* ... which may be absent (defaults are used) */
    bool record;                   /* main writes <run.out_dir>/run-<stage>.yaml afterwards */
    bool stops;                    /* agrees on stop signals (exit 75): handlers from before MPI_Init */
    const char *const *required;   /* keys the job must set (NULL-terminated), or NULL */
    const char *const *options;    /* options that take a value ("--hook NAME"), or NULL */
    app_stage_fn run;               /* NULL: not built yet in this version */
};

extern const app_stage app_stages[];
extern const int app_n_stages;
/* The table row of a stage, or NULL. */
const app_stage *app_stage_find(const char *name);

/* Finds an option "--name VALUE" or "--name=VALUE" in app->argv; NULL if absent. */
const char *app_option(const app_ctx *app, const char *name);
/* True if flag "--name" is present. */
bool app_flag(const app_ctx *app, const char *name);
/* The i-th positional argument (not an option or an option's value), or NULL. */
const char *app_positional(const app_ctx *app, int i);

/* One SAE of the job: where it lives and what it was trained from. */
typedef struct app_job_sae {
    char name[64];     /* label in tables and reports ("sae" for the job's sae section) */
    char *dir;         /* the SAE's out_dir: sae.h5, saelens/, metrics.jsonl */
    char *model_dir;   /* the model whose hook it reads */
    char *activations; /* the activations file it was trained on */
    int model;         /* 0 = model A, 1 = model B */
    int64_t d_sae;
    int index;         /* entry of cfg->saes, -1 for the sae section (ms_config_derive_sae) */
} app_job_sae;
/* Every SAE the job describes, in job order (the saes: list, or else the sae section); *out
 * malloc'd, free with app_job_saes_free. Not collective (a pure function of the config). The
 * full config of one SAE: ms_config_derive_sae(cfg, s->index, ...). */
ms_status app_job_saes(const ms_config *cfg, app_job_sae **out, int *n, ms_err *err);
void app_job_saes_free(app_job_sae *s, int n);
/* The whole job is valid before any stage starts (apps/job_check.c): every model's shape and
 * every SAE entry's hyper-parameters as training will check them, errors naming the entry's
 * file:line:col. Not collective (a pure function of the config). */
ms_status app_job_check(const ms_config *cfg, ms_err *err);
/* Where `monosem analyze` writes (and report reads) a dictionary's analysis.h5: under
 * analyze.out_dir/<name>/ when that is set, else in `beside` (an SAE's dir, or
 * <out_dir>/neurons for the neurons). malloc'd; NULL on OOM. */
char *app_job_analysis_path(const ms_config *cfg, const char *name, const char *beside);

/* COLLECTIVE. Output locks (apps/stage_lock.c, io/lock.c): a second run into the same output
 * stops at once naming the first one's host and pid. app_lock_outputs takes what the stage
 * shares across models (tokenize and generate: `.<dir>.lock` beside the token directory);
 * app_lock_model_outputs one model's outputs (generate: `.<file>.lock` beside generate.out;
 * train-model: train_model.dir), called by app_job_each_model per model; app_lock_dir one
 * directory (train: each SAE's out_dir). The directory is created. locks has room for
 * MS_APP_MAX_LOCKS; *n are held on return (none on error). */
#define MS_APP_MAX_LOCKS 4
ms_status app_lock_outputs(const app_ctx *app, const char *stage, ms_lock *locks, int *n, ms_err *err);
ms_status app_lock_model_outputs(const app_ctx *app, const char *stage, ms_lock *l, int *n, ms_err *err);
ms_status app_lock_dir(const app_ctx *app, const char *dir, ms_lock *l, ms_err *err);
void app_unlock(ms_lock *locks, int n);

/* The job's models: 0 = A (always), 1 = B (model_b.seed set: the paper's second model),
 * 2 = R (model_r.seed set: the control, A's shape never trained). Model m's config:
 * ms_config_derive_model. */
#define MS_JOB_MAX_MODELS 3
bool app_job_has_model(const ms_config *cfg, int model);
/* "A" / "B" / "R"; the suffix of its units, records and outputs: "" / "-b" / "-r". */
const char *app_job_model_name(int model);
const char *app_job_model_suffix(int model);
/* The model named "A", "B" or "R", or -1. */
int app_job_model_parse(const char *name);
/* analyze covers model A and the control R (their SAEs and neurons: features vs neurons);
 * model B's SAEs are compared with A's by compare (universality) instead. */
bool app_job_analyzes_model(const ms_config *cfg, int model);
/* Model m's neurons as a dictionary: its name ("neurons", "neurons-R") and analysis.h5
 * (<out_dir>/neurons/ or neurons-r/, or under analyze.out_dir); path malloc'd, caller frees. */
const char *app_job_neurons_name(int model);
char *app_job_neurons_analysis_path(const ms_config *cfg, int model);
/* Runs a stage body for model A (app as is) and for each other model of the job on its
 * derived config with its own run record (<out_dir>/run-<stage>-b.yaml, -r.yaml). `--only
 * A|B|R` picks one. COLLECTIVE (the body is). */
ms_status app_job_each_model(app_ctx *app, app_stage_fn one, ms_err *err);

/* The job's contexts and token shards fit the model at model_dir (n_ctx, d_vocab from its
 * config): corpus.context <= n_ctx (MS_ERR_CONFIG naming the key), the shards' vocabulary <=
 * d_vocab (MS_ERR_STATE naming both). ts may be NULL (the context alone). Not collective.
 * (apps/model_fit.c) */
ms_status app_check_model_fit(const ms_config *cfg, const char *model_dir, int n_ctx, int d_vocab,
                                 const ms_tokset *ts, ms_err *err);

/* Stage entry points (one file each under apps/). */
ms_status app_stage_config(app_ctx *app, ms_err *err);
ms_status app_stage_forward(app_ctx *app, ms_err *err);
ms_status app_stage_tokenize(app_ctx *app, ms_err *err);
ms_status app_stage_generate(app_ctx *app, ms_err *err);
ms_status app_stage_inspect(app_ctx *app, ms_err *err);
ms_status app_stage_tokenizer_train(app_ctx *app, ms_err *err);
ms_status app_stage_encode(app_ctx *app, ms_err *err);
ms_status app_stage_decode(app_ctx *app, ms_err *err);
ms_status app_stage_train_model(app_ctx *app, ms_err *err);
ms_status app_stage_train(app_ctx *app, ms_err *err);
ms_status app_stage_eval(app_ctx *app, ms_err *err);
ms_status app_stage_run(app_ctx *app, ms_err *err);
ms_status app_stage_report(app_ctx *app, ms_err *err);
ms_status app_stage_analyze(app_ctx *app, ms_err *err);
ms_status app_stage_compare(app_ctx *app, ms_err *err);

#endif
