/* monosem: thin main — MPI up, command line, job file read on rank 0 and parsed on every rank,
 * the stage, one agreed verdict, the run record, MPI down. */
#include <stdlib.h>
#include <string.h>

#include "app.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: monosem <stage> [job.yaml] [--section.key=value ...] [options]\n"
               "       monosem --help | --version\n\nstages:\n");
    for (int i = 0; i < app_n_stages; i++)
        fprintf(f, "  %-16s %s%s\n", app_stages[i].name, app_stages[i].summary,
                app_stages[i].run ? "" : "  [not built yet]");
    fprintf(f, "\nEvery stage runs under mpirun (monosem <stage> works as 1 rank). Job keys and\n"
               "their defaults (override any with --key=value):\n\n");
    ms_config_describe(f);
    fprintf(f, "  %-28s %-14s %s\n", "saes", "[]",
            "several SAEs: a list of {name, model: A|B, any sae key} over the sae section, "
            "outputs in <out_dir>/sae-<name> (docs/formats.md)");
}

/* Rank 0 reads the job file; every rank gets the bytes (or the read error) and parses them
 * identically, so a bad file fails on all ranks with the same message: no rank hangs. */
static ms_status load_job(app_ctx *app, const char *path, const char *const *ovr, int n_ovr, ms_err *err)
{
    char *text = NULL;
    size_t len = 0;
    ms_status st = MS_OK;
    if (app->comm.rank == 0) {
        ms_err rerr = {0};
        /* an unreadable job file is a job-file error like the others: exit code 2 */
        if (ms_file_read_all(path, &text, &len, &rerr)) st = ms_err_set(err, MS_ERR_CONFIG, "%s", rerr.msg);
    }
    st = ms_comm_agree(&app->comm, st, err);
    if (st) return st;
    uint64_t n = len;
    ms_comm_bcast(&app->comm, &n, sizeof n, 0, NULL);
    if (app->comm.rank != 0 && !(text = malloc(n + 1))) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if ((st = ms_comm_agree(&app->comm, st, err))) return st;
    st = ms_comm_bcast(&app->comm, text, n, 0, err);
    text[n] = '\0';
    if (!st) st = ms_config_parse(&app->cfg, path, text, n, ovr, n_ovr, NULL, err);
    /* an empty job (a truncated or wrong file) would run the stage on all defaults into
     * ./runs/monosem; only stages documented to run on defaults (config) accept one */
    if (!st && !app->def->job_optional && ms_config_n_set(&app->cfg) == 0) {
        ms_config_free(&app->cfg);
        st = ms_err_set(err, MS_ERR_CONFIG, "%s: the job file sets no key (%s): a stage does not run on all "
                        "defaults; give at least run.out_dir and the stage's inputs", path,
                        n == 0 ? "empty file" : "only comments or empty sections");
    }
    if (!st && (st = ms_config_check_required(&app->cfg, app->def->required, err))) ms_config_free(&app->cfg);
    if (!st && (st = app_job_check(&app->cfg, err))) ms_config_free(&app->cfg);
    free(text);
    st = ms_comm_agree(&app->comm, st, err);
    app->have_cfg = st == MS_OK;
    return st;
}

static bool is_override(const char *a)
{
    if (strncmp(a, "--", 2) != 0) return false;
    const char *eq = strchr(a, '='), *dot = strchr(a, '.');
    return eq && dot && dot < eq;
}

int main(int argc, char **argv)
{
    app_ctx app;
    memset(&app, 0, sizeof app);
    ms_err err = {0};
    /* a stage that stops cleanly on SIGTERM/SIGUSR1 records them from the very start: a
     * scheduler's signal during start-up stops it at its first step boundary (exit 75) */
    const app_stage *early = argc > 1 ? app_stage_find(argv[1]) : NULL;
    if (early && early->stops) ms_signals_install();
    if (ms_comm_init(&app.comm, &argc, &argv, &err) != MS_OK) {
        fprintf(stderr, "monosem: %s\n", err.msg);
        return 1;
    }
    ms_log_init(app.comm.rank);
    ms_h5_quiet(); /* one line per error, from monosem: never HDF5's own stack */
    ms_status st = MS_OK;
    const char *stage_name = argc > 1 ? argv[1] : NULL;
    char **ovr = NULL, **rest = NULL;
    int n_ovr = 0, n_rest = 0;

    if (!stage_name || strcmp(stage_name, "--help") == 0 || strcmp(stage_name, "-h") == 0 ||
        strcmp(stage_name, "help") == 0) {
        if (app.comm.rank == 0) usage(stdout);
        if (!stage_name) st = MS_ERR_USAGE;
        goto out;
    }
    if (strcmp(stage_name, "--version") == 0) {
        ms_log("monosem %s", MS_VERSION_STRING);
        goto out;
    }
    for (int i = 0; i < app_n_stages; i++)
        if (strcmp(app_stages[i].name, stage_name) == 0) app.def = &app_stages[i];
    if (!app.def) {
        st = ms_err_set(&err, MS_ERR_USAGE, "monosem: unknown stage '%s' (monosem --help lists them)", stage_name);
        goto out;
    }
    app.stage = app.def->name;
    if (!app.def->run) {
        st = ms_err_set(&err, MS_ERR_UNSUPPORTED, "monosem %s: this stage is not built yet in monosem %s", app.stage,
                        MS_VERSION_STRING);
        goto out;
    }
    /* split the remaining arguments: --section.key=value overrides vs the stage's own */
    ovr = calloc((size_t)argc, sizeof *ovr);
    rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!ovr || !rest) {
        st = ms_err_set(&err, MS_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            ms_log("usage: monosem %s\n%s", app.def->usage, app.def->summary);
            goto out;
        }
        if (app.def->needs_job && is_override(argv[i]))
            ovr[n_ovr++] = argv[i];
        else
            rest[n_rest++] = argv[i];
    }
    app.argc = n_rest;
    app.argv = rest;
    if (app.def->needs_job) {
        app.job_path = app_positional(&app, 0);
        if (app.job_path) {
            /* the stage sees its own positionals from index 0 */
            for (int i = 0; i < app.argc; i++)
                if (app.argv[i] == app.job_path) {
                    memmove(&app.argv[i], &app.argv[i + 1], sizeof *app.argv * (size_t)(app.argc - i));
                    app.argc--;
                    break;
                }
            st = load_job(&app, app.job_path, (const char *const *)ovr, n_ovr, &err);
        } else if (app.def->job_optional) {
            st = ms_config_init_defaults(&app.cfg, &err);
            if (!st) {
                const char *empty = "";
                ms_config_free(&app.cfg);
                st = ms_config_parse(&app.cfg, "defaults", empty, 0, (const char *const *)ovr, n_ovr, NULL, &err);
            }
            app.have_cfg = st == MS_OK;
        } else {
            st = ms_err_set(&err, MS_ERR_USAGE, "usage: monosem %s", app.def->usage);
        }
        if (st) goto out;
    }
    ms_blas_threads_set(&app.comm, app.have_cfg ? app.cfg.run.blas_threads : 0);
    ms_runrec_init(&app.rec, app.stage);
    ms_lock locks[MS_APP_MAX_LOCKS];
    int n_locks = 0;
    st = app_lock_outputs(&app, app.stage, locks, &n_locks, &err);
    if (st) goto out; /* another run owns the output: no run record either (it would clobber its) */
    st = app.def->run(&app, &err);
    st = ms_comm_agree(&app.comm, st, &err);
    if (app.have_cfg && app.def->record) {
        ms_err rerr = {0};
        ms_status rst = ms_runrec_write(&app.rec, &app.comm, &app.cfg, app.cfg.run.out_dir, st, &rerr);
        rst = ms_comm_agree(&app.comm, rst, &rerr);
        if (rst && !st) st = rst, err = rerr;
    }
    app_unlock(locks, n_locks);
out:
    if (st != MS_OK && app.comm.rank == 0) {
        if (err.msg[0])
            fprintf(stderr, "%s\n", err.msg);
        else if (st == MS_ERR_USAGE)
            usage(stderr);
        fflush(stderr);
    }
    int code = ms_status_exit_code(st);
    ms_config_free(&app.cfg);
    free(ovr);
    free(rest);
    ms_comm_finalize(&app.comm);
    return code;
}
