/* `monosem run job.yaml`: every stage the job asks for, in pipeline order, in one launch — per
 * model and per SAE. A unit whose outputs are complete and were made from the same
 * configuration and inputs is skipped; a partial one resumes; one whose keys or inputs changed
 * is redone with a note saying why (records in <out_dir>/stages/, run_state.c). Ends with
 * <out_dir>/summary.json and the dashboard's path. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run_state.h"

static const char *const pipeline[] = {"tokenizer-train", "tokenize", "train-model", "generate", "train",
                                       "eval",            "analyze",  "compare",     "report"};
#define N_PIPELINE ((int)(sizeof pipeline / sizeof pipeline[0]))
#define MAX_UNITS 256

typedef struct plan_unit {
    app_unit u;
    const char *stage;
    char only[64];   /* --only value ("" = none) */
    int model;       /* 0/1/2 (A/B/R) for per-model units */
    int sae;         /* index into the job's SAEs for train units, -1 otherwise */
    bool own_record; /* the stage writes its own run record (model B and R units) */
} plan_unit;

typedef struct run_plan {
    plan_unit units[MAX_UNITS];
    int n;
    app_job_sae *saes;
    int n_saes;
    ms_config model_cfg[MS_JOB_MAX_MODELS]; /* zeroed for a model the job lacks */
    ms_config *sae_cfg; /* n_saes derived configs */
} run_plan;

static bool stage_wanted(const ms_config *cfg, const char *stage)
{
    if (cfg->run.n_stages == 0) return true;
    for (int i = 0; i < cfg->run.n_stages; i++)
        if (strcmp(cfg->run.stages[i], stage) == 0) return true;
    return false;
}

static const char *unit_hash_of(const run_plan *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->units[i].u.name, name) == 0) return p->units[i].u.hash;
    return NULL;
}

/* Adds a unit; keys from cfg by prefixes (minus exclude); inputs: the named earlier units. */
static ms_status add_unit(run_plan *p, const char *stage, const char *name, const ms_config *cfg,
                          const char *const *prefixes, const char *const *exclude, const char *const *inputs,
                          int n_inputs, ms_err *err)
{
    if (p->n >= MAX_UNITS) return ms_err_set(err, MS_ERR_UNSUPPORTED, "monosem run: more than %d units of work", MAX_UNITS);
    plan_unit *pu = &p->units[p->n];
    memset(pu, 0, sizeof *pu);
    snprintf(pu->u.name, sizeof pu->u.name, "%s", name);
    snprintf(pu->u.stage, sizeof pu->u.stage, "%s", stage);
    pu->stage = stage;
    pu->sae = -1;
    if (!(pu->u.keys = ms_config_subset(cfg, prefixes, exclude))) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_inputs; i++) {
        const char *h = unit_hash_of(p, inputs[i]);
        if (h) app_unit_input(&pu->u, inputs[i], h);
    }
    app_unit_hash(&pu->u);
    p->n++;
    return MS_OK;
}

static void plan_free(run_plan *p)
{
    for (int i = 0; i < p->n; i++) free(p->units[i].u.keys);
    for (int m = 0; m < MS_JOB_MAX_MODELS; m++) ms_config_free(&p->model_cfg[m]);
    for (int i = 0; p->sae_cfg && i < p->n_saes; i++) ms_config_free(&p->sae_cfg[i]);
    free(p->sae_cfg);
    app_job_saes_free(p->saes, p->n_saes);
}

/* The units of the whole pipeline, from the configuration alone (identical on every rank). */
static ms_status plan_build(run_plan *p, const ms_config *cfg, ms_err *err)
{
    static const char *const tok_keys[] = {"tokenizer.", "corpus.paths", "corpus.format", "corpus.delimiter",
                                           "corpus.text_field", NULL};
    static const char *const corpus_keys[] = {"corpus.", NULL};
    static const char *const tm_keys[] = {"model.", "train_model.", "corpus.context", "run.seed", NULL};
    static const char *const tm_excl[] = {"model.hook", "train_model.log_every", "train_model.checkpoint_every",
                                          "train_model.eval_every", "train_model.eval_batches", NULL};
    static const char *const gen_keys[] = {"generate.", "model.hook", "model.dir", "run.seed", "corpus.context", NULL};
    static const char *const gen_excl[] = {"generate.batch", NULL};
    static const char *const sae_keys[] = {"sae.", "run.seed", NULL};
    static const char *const sae_excl[] = {"sae.log_every", "sae.checkpoint_every", NULL};
    static const char *const eval_keys[] = {"eval.", NULL};
    static const char *const analyze_keys[] = {"analyze.", NULL};
    static const char *const compare_keys[] = {"compare.", "model.hook", NULL};
    static const char *const none[] = {"-", NULL};
    ms_status st = app_job_saes(cfg, &p->saes, &p->n_saes, err);
    if (st) return st;
    bool several = false; /* per-model units say which model (--only) when the job has several */
    for (int m = 0; m < MS_JOB_MAX_MODELS && !st; m++) {
        if (!app_job_has_model(cfg, m)) continue;
        st = ms_config_derive_model(cfg, m, &p->model_cfg[m], err);
        several = several || m > 0;
    }
    if (!st && !(p->sae_cfg = calloc((size_t)p->n_saes, sizeof *p->sae_cfg)))
        st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int i = 0; i < p->n_saes && !st; i++) st = ms_config_derive_sae(cfg, p->saes[i].index, &p->sae_cfg[i], err);
    if (st) return st;

    const char *in_tok[] = {"tokenizer-train"}, *in_corpus[] = {"tokenize"};
    st = add_unit(p, "tokenizer-train", "tokenizer-train", cfg, tok_keys, NULL, NULL, 0, err);
    if (!st) st = add_unit(p, "tokenize", "tokenize", cfg, corpus_keys, NULL, in_tok, 1, err);
    for (int m = 0; m < MS_JOB_MAX_MODELS && !st; m++) {
        if (!app_job_has_model(cfg, m)) continue;
        char name[80];
        snprintf(name, sizeof name, "train-model%s", app_job_model_suffix(m));
        st = add_unit(p, "train-model", name, &p->model_cfg[m], tm_keys, tm_excl, in_corpus, 1, err);
        if (!st) p->units[p->n - 1].model = m, p->units[p->n - 1].own_record = m > 0;
        if (!st && several) snprintf(p->units[p->n - 1].only, sizeof p->units[0].only, "%s", app_job_model_name(m));
    }
    for (int m = 0; m < MS_JOB_MAX_MODELS && !st; m++) {
        if (!app_job_has_model(cfg, m)) continue;
        char name[80], tm[80];
        snprintf(name, sizeof name, "generate%s", app_job_model_suffix(m));
        snprintf(tm, sizeof tm, "train-model%s", app_job_model_suffix(m));
        const char *in[] = {"tokenize", tm};
        st = add_unit(p, "generate", name, &p->model_cfg[m], gen_keys, gen_excl, in, 2, err);
        if (!st) p->units[p->n - 1].model = m, p->units[p->n - 1].own_record = m > 0;
        if (!st && several) snprintf(p->units[p->n - 1].only, sizeof p->units[0].only, "%s", app_job_model_name(m));
    }
    const char *trained[MS_UNIT_MAX_INPUTS];
    int n_trained = 0;
    char names[MS_UNIT_MAX_INPUTS][80];
    for (int i = 0; i < p->n_saes && !st; i++) {
        char name[80], gen[80];
        snprintf(name, sizeof name, "train-%s", p->saes[i].name);
        snprintf(gen, sizeof gen, "generate%s", app_job_model_suffix(p->saes[i].model));
        const char *in[] = {gen};
        st = add_unit(p, "train", name, &p->sae_cfg[i], sae_keys, sae_excl, in, 1, err);
        if (st) break;
        plan_unit *pu = &p->units[p->n - 1];
        pu->sae = i, pu->model = p->saes[i].model;
        snprintf(pu->only, sizeof pu->only, "%s", p->saes[i].name);
        if (n_trained < MS_UNIT_MAX_INPUTS - 3) {
            snprintf(names[n_trained], sizeof names[0], "%s", name);
            trained[n_trained] = names[n_trained];
            n_trained++;
        }
    }
    if (st) return st;
    trained[n_trained++] = "train-model";
    if (app_job_has_model(cfg, 1)) trained[n_trained++] = "train-model-b";
    if (app_job_has_model(cfg, 2)) trained[n_trained++] = "train-model-r";
    trained[n_trained++] = "tokenize";
    st = add_unit(p, "eval", "eval", cfg, eval_keys, NULL, trained, n_trained, err);
    if (!st) st = add_unit(p, "analyze", "analyze", cfg, analyze_keys, NULL, trained, n_trained, err);
    if (!st) st = add_unit(p, "compare", "compare", cfg, compare_keys, NULL, trained, n_trained, err);
    const char *in_report[] = {"eval", "analyze", "compare"};
    if (!st) st = add_unit(p, "report", "report", cfg, none, NULL, in_report, 3, err);
    return st;
}

/* The files a unit made: paths malloc'd into v (the run records their sizes and hashes). */
typedef struct out_list {
    char **v;
    int n, cap;
    bool missing; /* a file the unit always makes is absent */
    bool nomem;
} out_list;

static void out_add(out_list *o, char *path, bool required) /* takes path */
{
    if (!path) {
        o->nomem = true;
        return;
    }
    if (!ms_path_exists(path)) {
        o->missing = o->missing || required;
        free(path);
        return;
    }
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 16;
        char **v = realloc(o->v, (size_t)cap * sizeof *v);
        if (!v) {
            o->nomem = true;
            free(path);
            return;
        }
        o->v = v, o->cap = cap;
    }
    o->v[o->n++] = path;
}

static void out_join(out_list *o, const char *dir, const char *name, bool required)
{
    out_add(o, dir ? ms_path_join(dir, name) : NULL, required);
}

/* Every regular file in dir (not dot files: locks), recursively, in name order. */
static void out_dir(out_list *o, const char *dir)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        char *p = names[i]->d_name[0] != '.' ? ms_path_join(dir, names[i]->d_name) : NULL;
        struct stat sb;
        if (p && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            out_dir(o, p);
            free(p);
        } else if (p && S_ISREG(sb.st_mode)) {
            out_add(o, p, true);
        } else {
            free(p);
        }
        free(names[i]);
    }
    free(names);
}

/* dir/name exists; else o->missing */
static bool exists_join(out_list *o, const char *dir, const char *name)
{
    char *p = dir ? ms_path_join(dir, name) : NULL;
    bool e = p && ms_path_exists(p);
    o->missing = o->missing || !e;
    free(p);
    return e;
}

static void out_list_free(out_list *o)
{
    for (int i = 0; i < o->n; i++) free(o->v[i]);
    free(o->v);
    memset(o, 0, sizeof *o);
}

/* The unit's outputs as they are now (rank 0's view); o->missing if one it always makes is absent. */
static void unit_outputs(const run_plan *p, const plan_unit *pu, const ms_config *cfg, out_list *o)
{
    const char *s = pu->stage;
    const ms_config *mc = &p->model_cfg[pu->model];
    memset(o, 0, sizeof *o);
    if (!strcmp(s, "tokenizer-train")) {
        out_add(o, strdup(cfg->tokenizer.vocab), true);
        out_add(o, strdup(cfg->tokenizer.merges), true);
    } else if (!strcmp(s, "tokenize")) {
        if (exists_join(o, cfg->corpus.token_dir, MS_TOKENS_MANIFEST)) out_dir(o, cfg->corpus.token_dir);
    } else if (!strcmp(s, "train-model")) {
        out_join(o, mc->model.dir, "model.safetensors", true);
        out_join(o, mc->model.dir, "config.json", true);
    } else if (!strcmp(s, "generate")) {
        out_add(o, strdup(mc->generate.out), true);
    } else if (!strcmp(s, "train")) {
        const char *d = p->saes[pu->sae].dir;
        out_join(o, d, "sae.h5", true);
        out_join(o, d, "saelens/sae_weights.safetensors", true);
        out_join(o, d, "saelens/cfg.json", true); /* sparsity.safetensors: eval rewrites it (held out) */
    } else if (!strcmp(s, "eval")) {
        for (int i = 0; i < p->n_saes; i++) {
            out_join(o, p->saes[i].dir, "eval.json", true);
            out_join(o, p->saes[i].dir, "eval_density.h5", false);
            out_join(o, p->saes[i].dir, "saelens/sparsity.safetensors", false);
        }
    } else if (!strcmp(s, "compare")) {
        out_join(o, cfg->run.out_dir, "compare/splitting.json", true);
        out_join(o, cfg->run.out_dir, "compare/universality.json", true);
        out_join(o, cfg->run.out_dir, "compare/splitting.h5", false);
    } else if (!strcmp(s, "report")) {
        char *d = ms_path_join(cfg->run.out_dir, "report");
        if (exists_join(o, d, "index.html")) out_dir(o, d);
        free(d);
    } else if (!strcmp(s, "analyze")) { /* every dictionary's analysis.h5 */
        for (int i = 0; i < p->n_saes; i++)
            if (app_job_analyzes_model(cfg, p->saes[i].model))
                out_add(o, app_job_analysis_path(cfg, p->saes[i].name, p->saes[i].dir), true);
        for (int m = 0; m < MS_JOB_MAX_MODELS; m++)
            if (app_job_analyzes_model(cfg, m)) out_add(o, app_job_neurons_analysis_path(cfg, m), true);
    }
}

/* Clears state that would make a stage resume a run of another configuration (rank 0);
 * returns true if the stage must be told --force instead. */
static bool clear_for_redo(const run_plan *p, const plan_unit *pu)
{
    const char *s = pu->stage;
    char *ck = NULL;
    if (!strcmp(s, "train-model")) ck = ms_path_join(p->model_cfg[pu->model].train_model.dir, "checkpoint.safetensors");
    if (!strcmp(s, "train")) ck = ms_path_join(p->saes[pu->sae].dir, "checkpoint.safetensors");
    if (ck) { /* and the rotated ones, or the checkpoint fallback would resume the old run */
        static const char *const sfx[] = {"", ".prev", ".corrupt"};
        for (int i = 0; i < 3; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s%s", ck, sfx[i]);
            unlink(path);
        }
    }
    free(ck);
    /* never tokenizer-train: its files may be GPT-2's; it keeps existing ones and says so */
    return !strcmp(s, "generate");
}

enum { DO_SKIP = 0, DO_RUN, DO_RESUME, DO_REDO };

static ms_status run_unit(app_ctx *app, const run_plan *p, const plan_unit *pu, app_unit_outcome *out, ms_err *err)
{
    const ms_config *cfg = &app->cfg;
    const app_stage *def = app_stage_find(pu->stage);
    char label[128];
    snprintf(label, sizeof label, "%s%s%s", pu->stage, pu->only[0] ? " " : "", pu->only);
    snprintf(out->unit, sizeof out->unit, "%s", pu->u.name);
    if (!def || !def->run) {
        snprintf(out->status, sizeof out->status, "not-built");
        snprintf(out->note, sizeof out->note, "stage '%s' is not built in monosem %s", pu->stage, MS_VERSION_STRING);
        ms_log("== %s: not built in monosem %s: skipped (summary.json says what is missing)", label, MS_VERSION_STRING);
        return MS_OK;
    }
    /* rank 0 decides from its records; every rank follows */
    int32_t dec[2] = {DO_RUN, 0}; /* action, force */
    if (app->comm.rank == 0) {
        app_unit_record r;
        bool have = app_unit_read(cfg->run.out_dir, pu->u.name, &r);
        bool same = have && strcmp(r.hash, pu->u.hash) == 0;
        out_list now;
        unit_outputs(p, pu, cfg, &now);
        bool present = !now.missing && !now.nomem;
        out_list_free(&now);
        char why[600] = "";
        /* a record says what the unit made; the files must still be that (size, sha256) */
        bool whole = present && (!have || !r.has_outputs || app_unit_outputs_whole(&r, why, sizeof why));
        if (have && same && r.complete && whole) {
            dec[0] = DO_SKIP;
            snprintf(out->note, sizeof out->note, "up to date (hash %s)", pu->u.hash);
        } else if (have && same && r.complete && present) {
            dec[0] = DO_REDO; /* same configuration: its checkpoints stay valid and are reused */
            snprintf(out->note, sizeof out->note, "%.380s", why);
            dec[1] = !strcmp(pu->stage, "generate");
        } else if (have && !same) {
            dec[0] = DO_REDO;
            app_unit_why(&pu->u, &r, out->note, sizeof out->note);
            dec[1] = clear_for_redo(p, pu);
        } else if (have && !r.complete) {
            dec[0] = DO_RESUME;
            snprintf(out->note, sizeof out->note, "a run of the same configuration was interrupted: resuming");
        } else if (have) {
            snprintf(out->note, sizeof out->note, "outputs missing: running again");
        }
        if (have) app_unit_record_free(&r);
    }
    ms_status st = ms_comm_bcast(&app->comm, dec, sizeof dec, 0, err);
    if (st) return st;
    static const char *const what[] = {"skipped", "ran", "resumed", "redone"};
    snprintf(out->status, sizeof out->status, "%s", what[dec[0]]);
    if (dec[0] == DO_SKIP) {
        ms_log("== %s: skipped, %s", label, out->note);
        return MS_OK;
    }
    if (dec[0] == DO_REDO)
        ms_log("== %s: redone: %s", label, out->note);
    else
        ms_log("== %s%s%s", label, out->note[0] ? ": " : "", out->note);
    if ((st = ms_config_check_required(cfg, def->required, err))) { /* identical on every rank */
        if (strcmp(pu->stage, "tokenizer-train") != 0 && strcmp(pu->stage, "tokenize") != 0) return st;
        /* no corpus.paths: the job brings its tokenizer files and token shards */
        ms_log("== %s: skipped, %s (the job uses existing tokenizer files and token shards)", label, err->msg);
        snprintf(out->status, sizeof out->status, "skipped");
        snprintf(out->note, sizeof out->note, "%.380s", err->msg);
        ms_err_clear(err);
        return MS_OK;
    }

    ms_err werr = {0};
    ms_status wst = app->comm.rank == 0 ? app_unit_write(cfg->run.out_dir, &pu->u, false, 0, NULL, 0, &werr) : MS_OK;
    if ((wst = ms_comm_agree(&app->comm, wst, &werr))) return ms_err_set(err, wst, "%s", werr.msg);

    char *argv[4] = {0};
    int argc = 0;
    if (pu->only[0]) argv[argc++] = "--only", argv[argc++] = (char *)pu->only;
    if (dec[1]) argv[argc++] = "--force";
    app_ctx sub = *app;
    sub.def = def;
    sub.stage = def->name;
    sub.argc = argc;
    sub.argv = argv;
    char rec_label[96];
    snprintf(rec_label, sizeof rec_label, "%s", pu->stage);
    if (pu->sae >= 0) snprintf(rec_label, sizeof rec_label, "%s", pu->u.name);
    ms_runrec_init(&sub.rec, rec_label);
    double t0 = ms_time_now();
    ms_lock locks[MS_APP_MAX_LOCKS];
    int n_locks = 0;
    st = app_lock_outputs(&sub, def->name, locks, &n_locks, err);
    if (!st) st = def->run(&sub, err);
    st = ms_comm_agree(&app->comm, st, err);
    app_unlock(locks, n_locks);
    out->seconds = ms_time_now() - t0;
    ms_err rerr = {0};
    ms_status rst = MS_OK;
    if (!pu->own_record) rst = ms_runrec_write(&sub.rec, &app->comm, cfg, cfg->run.out_dir, st, &rerr);
    if (st) return st;
    if ((rst = ms_comm_agree(&app->comm, rst, &rerr))) return ms_err_set(err, rerr.status, "%s", rerr.msg);
    if (app->comm.rank == 0) {
        out_list made;
        unit_outputs(p, pu, cfg, &made);
        wst = made.nomem ? ms_err_set(&werr, MS_ERR_NOMEM, "out of memory")
                         : app_unit_write(cfg->run.out_dir, &pu->u, true, out->seconds, made.v, made.n, &werr);
        out_list_free(&made);
    }
    if ((wst = ms_comm_agree(&app->comm, wst, &werr))) return ms_err_set(err, wst, "%s", werr.msg);
    return MS_OK;
}

ms_status app_stage_run(app_ctx *app, ms_err *err)
{
    const ms_config *cfg = &app->cfg;
    for (int i = 0; i < cfg->run.n_stages; i++) {
        bool known = false;
        for (int k = 0; k < N_PIPELINE; k++) known = known || !strcmp(cfg->run.stages[i], pipeline[k]);
        if (!known) {
            int line, col;
            ms_config_where(cfg, "run.stages", &line, &col);
            return ms_err_set(err, MS_ERR_CONFIG,
                              "%s:%d:%d: key 'run.stages': unknown stage '%s' (the pipeline: tokenizer-train, tokenize, "
                              "train-model, generate, train, eval, analyze, compare, report)",
                              cfg->path, line, col, cfg->run.stages[i]);
        }
    }
    run_plan *p = calloc(1, sizeof *p);
    if (!p) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    ms_status st = plan_build(p, cfg, err);
    app_unit_outcome *outc = st ? NULL : calloc((size_t)p->n, sizeof *outc);
    if (!st && !outc) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    int n_out = 0;
    double t0 = ms_time_now();
    for (int k = 0; k < N_PIPELINE && !st; k++) {
        if (!stage_wanted(cfg, pipeline[k])) continue;
        for (int i = 0; i < p->n && !st; i++)
            if (!strcmp(p->units[i].stage, pipeline[k])) {
                st = run_unit(app, p, &p->units[i], &outc[n_out++], err);
                /* a signal during a stage that does not stop itself (tokenize, report): stop once
                 * its unit is recorded complete (step 0: no test hook counts these) */
                int sig = st ? 0 : ms_comm_signal_agree(&app->comm, 0);
                if (sig)
                    st = ms_err_set(err, MS_INTERRUPTED, "run: %s: stopped after unit %s (complete); rerun the same "
                                    "command to continue", ms_signal_name(sig), p->units[i].u.name);
            }
    }
    if (!st) {
        double secs = ms_time_now() - t0;
        ms_err serr = {0};
        ms_status sst = app->comm.rank == 0 ? app_run_summary_write(cfg, outc, n_out, secs, &serr) : MS_OK;
        if ((sst = ms_comm_agree(&app->comm, sst, &serr))) st = ms_err_set(err, sst, "%s", serr.msg);
        char *dash = ms_path_join(cfg->run.out_dir, "report/index.html");
        int have_dash = app->comm.rank == 0 && dash && ms_path_exists(dash);
        ms_comm_bcast(&app->comm, &have_dash, sizeof have_dash, 0, NULL);
        if (!st) {
            char dur[32];
            ms_format_duration(secs, dur, sizeof dur);
            ms_log("monosem run: done in %s; numbers in %s/summary.json", dur, cfg->run.out_dir);
            if (have_dash)
                ms_log("dashboard: %s", dash ? dash : "");
            else if (!stage_wanted(cfg, "report"))
                ms_log("dashboard: %s (not written: run.stages leaves out report)", dash ? dash : "");
            else
                ms_log("dashboard: %s (not written: the report stage is not built in monosem %s)", dash ? dash : "",
                       MS_VERSION_STRING);
        }
        free(dash);
    }
    free(outc);
    plan_free(p);
    free(p);
    return st;
}
