/* `monosem generate job.yaml`: hooked model activations of the corpus into one activations.h5,
 * rank 0 handing out context shards (dynamic queue), every rank computing and writing its own. */
#include "generate_stage.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static void gen_free(gen *g)
{
    ms_tokset_close(&g->ts);
    if (g->have_model) ms_model_free(&g->model);
    ms_model_acts_free(&g->acts);
    free(g->config_text);
    free(g->partial);
    free(g->done);
    free(g->tokens);
    free(g->rows);
    free(g->index);
    free(g->scratch);
}

/* The identity of the rows a job produces (and nothing else: not the batch, the rank count,
 * the output path or other stages' keys), stored as the file's config_hash: resuming or
 * reusing a file requires the same value. */
static void gen_fingerprint(const gen *g, const char *tokens_fp, char out[17])
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "monosem-generate v1|tokens %s|contexts %" PRId64 "|context %" PRId64
                     "|sample %" PRId64 "|shard %" PRId64 "|dtype %d|seed %" PRId64
                     "|hook %s|model %s|tokenizer %s",
                     tokens_fp, g->plan.n_contexts, g->plan.context, g->plan.sample,
                     g->plan.shard_contexts, g->meta.dtype, g->meta.seed, g->meta.hook,
                     g->meta.model_sha256, g->meta.tokenizer_sha256);
    snprintf(out, 17, "%016" PRIx64, ms_fnv1a64(buf, (size_t)n, 0xcbf29ce484222325ull));
}


/* Token shards, model and plan on every rank (local work; the caller agrees). */
static ms_status gen_prepare(gen *g, char model_sha[65], ms_err *err)
{
    const ms_config *cfg = g->cfg;
    ms_status st = ms_tokset_open(&g->ts, cfg->corpus.token_dir, "train", err);
    if (st) return st;
    st = ms_model_load(&g->model, cfg->model.dir, err);
    if (st) return st;
    g->have_model = true;
    const ms_model_config *mc = &g->model.cfg;
    st = ms_hook_parse(&g->hook, cfg->model.hook, mc, err);
    if (st) {
        ms_err e2 = {0};
        ms_err_set(&e2, MS_ERR_CONFIG, "%s: key 'model.hook': %s (model %s has %d layer(s))",
                   cfg->path ? cfg->path : "job", err->msg, cfg->model.dir, mc->n_layers);
        *err = e2;
        return MS_ERR_CONFIG;
    }
    if ((st = app_check_model_fit(cfg, cfg->model.dir, mc->n_ctx, mc->d_vocab, &g->ts, err))) return st;
    g->d = ms_hook_dim(mc, g->hook);
    int64_t T = cfg->corpus.context;
    app_gen_plan_init(&g->plan, ms_tokset_n_contexts(&g->ts, T, false), cfg->generate.tokens, T,
                     cfg->generate.sample_per_context, cfg->generate.shard_contexts);
    if (g->plan.n_contexts == 0)
        return ms_err_set(err, MS_ERR_STATE,
                          "%s: the corpus has no documents to run (train split of %s holds %" PRId64
                          " tokens in %" PRId64 " documents; one context needs %" PRId64 ")",
                          cfg->path, cfg->corpus.token_dir, g->ts.count, g->ts.n_docs, T);
    if (g->app->comm.rank == 0) {
        char *wp = ms_path_join(cfg->model.dir, "model.safetensors");
        st = wp ? ms_sha256_file(wp, model_sha, err) : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        free(wp);
        if (st) return st;
    }
    /* rank 0 serves the queue between forwards: keep its forwards short when there are workers */
    int64_t B = cfg->generate.batch;
    if (g->app->comm.size > 1) {
        int64_t cap = RANK0_SERVE_TOKENS / T;
        if (g->app->comm.rank == 0 && B > cap) B = cap > 0 ? cap : 1;
    }
    if (B > g->plan.shard_contexts) B = g->plan.shard_contexts;
    g->batch = (int)B;
    st = ms_model_acts_init(&g->acts, mc, g->batch, (int)T, MS_ACTS_NO_LOGITS, err);
    if (st) return st;
    size_t SC = (size_t)g->plan.shard_contexts, K = (size_t)g->plan.sample;
    g->tokens = malloc(SC * (size_t)T * sizeof *g->tokens);
    size_t esz = cfg->generate.dtype == MS_DTYPE_F16 ? 2 : 4;
    g->rows = malloc(SC * K * (size_t)g->d * esz);
    g->index = malloc(SC * K * 2 * sizeof *g->index);
    g->scratch = malloc((size_t)T * sizeof *g->scratch);
    g->done = calloc((size_t)g->plan.n_shards, 1);
    if (!g->tokens || !g->rows || !g->index || !g->scratch || !g->done)
        return ms_err_set(err, MS_ERR_NOMEM,
                          "generate: out of memory for a shard of %zu contexts (%.1f MiB); lower "
                          "generate.shard_contexts", SC,
                          (double)SC * (K * (size_t)g->d * esz + K * 8 + (size_t)T * 4) / 1048576.0);
    /* first touch here, not inside the loop */
    memset(g->rows, 0, SC * K * (size_t)g->d * esz);
    memset(g->index, 0, SC * K * 2 * sizeof *g->index);
    memset(g->tokens, 0, SC * (size_t)T * sizeof *g->tokens);
    return MS_OK;
}

static ms_status dirname_mkdirs(const char *path, ms_err *err)
{
    char *tmp = strdup(path);
    if (!tmp) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    ms_status st = ms_mkdirs(dirname(tmp), err);
    free(tmp);
    return st;
}

/* Rank 0: is <out> already complete with the same rows? */
static bool gen_up_to_date(const gen *g, const char *out)
{
    if (!ms_path_exists(out)) return false;
    ms_actfile *f = NULL;
    ms_actmeta m;
    ms_err e = {0};
    if (ms_actfile_open(&f, out, &m, &e)) return false;
    bool same = m.n_rows == g->meta.n_rows && m.d == g->meta.d && m.dtype == g->meta.dtype &&
                m.n_contexts == g->meta.n_contexts && strcmp(m.hook, g->meta.hook) == 0 &&
                strcmp(m.model_sha256, g->meta.model_sha256) == 0 &&
                strcmp(m.config_hash, g->meta.config_hash) == 0;
    ms_actfile_close(f);
    return same;
}

/* Rank 0, before creating the store: the file is allocated at full size up front, and a
 * parallel HDF5 create that fails part-way (disk full, file-size limit) can leave the ranks in
 * mismatched collectives, so a store that cannot fit is refused here with a clear message. */
static ms_status gen_space_check(const gen *g, ms_err *err)
{
    const ms_actmeta *m = &g->meta;
    double need = (double)m->n_rows * (double)m->d * (m->dtype == MS_DTYPE_F16 ? 2 : 4) +
                  (double)m->n_rows * 8 + (double)m->n_contexts * (double)m->context * 4 +
                  (double)m->n_shards + (1 << 20);
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && need > (double)rl.rlim_cur)
        return ms_err_set(err, MS_ERR_IO,
                          "%s: the activations store needs %.1f MB but the file size limit "
                          "(ulimit -f) is %.1f MB: lower generate.tokens or raise the limit",
                          g->partial, need / 1e6, (double)rl.rlim_cur / 1e6);
    char *tmp = strdup(g->partial);
    struct statvfs sv;
    int rc = tmp ? statvfs(dirname(tmp), &sv) : -1;
    /* a directory that cannot be written (read-only file system, permissions) is said so, not
     * reported as missing space */
    int werr = rc == 0 && (sv.f_flag & ST_RDONLY) ? EROFS : tmp && access(tmp, W_OK) != 0 ? errno : 0;
    if (werr) {
        ms_status st = ms_err_set(err, MS_ERR_IO, "%s: cannot write the activations file into %s: %s", g->partial,
                                  tmp, strerror(werr));
        free(tmp);
        return st;
    }
    free(tmp);
    double avail = rc == 0 ? (double)sv.f_bavail * (double)sv.f_frsize : 0;
    struct stat sb; /* an old .partial about to be truncated gives its blocks back */
    if (rc == 0 && stat(g->partial, &sb) == 0) avail += (double)sb.st_blocks * 512.0;
    if (rc == 0 && avail < need)
        return ms_err_set(err, MS_ERR_IO,
                          "%s: the activations store needs %.1f MB but its file system has %.1f "
                          "MB free: lower generate.tokens or free space",
                          g->partial, need / 1e6, avail / 1e6);
    return MS_OK;
}

/* Rank 0: holds the store's space in a placeholder file until the store is created, so a disk
 * that fills after the space check fails here with its errno, agreed by every rank — a
 * parallel HDF5 create that runs out of space part-way hung the ranks or crashed HDF5's
 * clean-up. A file system without fallocate keeps the check alone. */
static ms_status gen_reserve(const gen *g, const char *reserve, ms_err *err)
{
    const ms_actmeta *m = &g->meta;
    const double need = (double)m->n_rows * (double)m->d * (m->dtype == MS_DTYPE_F16 ? 2 : 4) +
                        (double)m->n_rows * 8 + (double)m->n_contexts * (double)m->context * 4 + (1 << 20);
    int fd = open(reserve, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return ms_err_set(err, MS_ERR_IO, "%s: cannot create: %s", reserve, strerror(errno));
    int rc = fallocate(fd, 0, 0, (off_t)need);
    int e = rc != 0 ? errno : 0;
    close(fd);
    if (rc != 0) unlink(reserve);
    if (rc != 0 && e != EOPNOTSUPP && e != ENOSYS)
        return ms_err_set(err, MS_ERR_IO, "%s: cannot reserve the %.1f MB the activations store needs: %s: free "
                          "space and rerun", g->partial, need / 1e6, strerror(e));
    return MS_OK;
}

/* After a failed write: MPI-IO does not hand errno through HDF5, so say it when the output's
 * file system is full (the likely cause), and that the same command resumes. */
static void gen_full_disk_hint(const gen *g, ms_err *err)
{
    char *tmp = strdup(g->partial);
    struct statvfs sv;
    int rc = tmp ? statvfs(dirname(tmp), &sv) : -1;
    free(tmp);
    if (rc != 0 || (double)sv.f_bavail * (double)sv.f_frsize >= (double)(1 << 20)) return;
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n,
             ": No space left on device (%.1f MB free): free space and rerun the same command to resume",
             (double)sv.f_bavail * (double)sv.f_frsize / 1e6);
}

/* Creates <out>.partial, or reopens it to resume. COLLECTIVE. */
static ms_status gen_open(gen *g, ms_err *err)
{
    const ms_comm *comm = &g->app->comm;
    int32_t exists = 0;
    if (comm->rank == 0) exists = ms_path_exists(g->partial) && !app_flag(g->app, "force");
    ms_status st = ms_comm_bcast(comm, &exists, sizeof exists, 0, err);
    if (st) return st;
    if (exists) {
        ms_err rerr = {0};
        ms_status rst = ms_actwriter_resume(&g->w, g->partial, &g->meta, g->done, comm, &rerr);
        rst = ms_comm_agree(comm, rst, &rerr);
        if (rst == MS_OK) {
            g->n_done_before = 0;
            for (int64_t s = 0; s < g->plan.n_shards; s++) g->n_done_before += g->done[s] != 0;
            ms_log("generate: resuming %s: %" PRId64 " of %" PRId64 " shards already done",
                   g->partial, g->n_done_before, g->plan.n_shards);
            return MS_OK;
        }
        if (g->w) ms_actwriter_close(g->w);
        g->w = NULL;
        ms_log("generate: cannot resume (%s); starting over", rerr.msg);
        memset(g->done, 0, (size_t)g->plan.n_shards);
    }
    if (comm->rank == 0) st = dirname_mkdirs(g->partial, err);
    if (comm->rank == 0 && !st) st = gen_space_check(g, err);
    ms_testhook("create", 1); /* test hook: the space was checked, not yet reserved */
    char reserve[4200];
    snprintf(reserve, sizeof reserve, "%s.reserve.tmp.%ld", g->partial, (long)getpid());
    if (comm->rank == 0 && !st) st = gen_reserve(g, reserve, err);
    st = ms_comm_agree(comm, st, err);
    if (st) return st;
    if (comm->rank == 0) unlink(reserve); /* its blocks go to the store created next */
    st = ms_actwriter_create(&g->w, g->partial, &g->meta, comm, err);
    st = ms_comm_agree(comm, st, err);
    if (st && g->w) {
        ms_actwriter_close(g->w);
        g->w = NULL;
    }
    return st;
}

/* Steps 0-1: the model's files readable (a missing model must not cost a rewritten token
 * directory), then the token shards, tokenizing the corpus first unless it is up to date (the
 * tokenize stage checks its fingerprint and is a no-op then); tokens_fp from rank 0. COLLECTIVE. */
static ms_status gen_inputs(app_ctx *app, char tokens_fp[17], ms_err *err)
{
    const ms_config *cfg = &app->cfg;
    const ms_comm *comm = &app->comm;
    ms_status st = MS_OK;
    if (comm->rank == 0) {
        static const char *const need[] = {"config.json", "model.safetensors"};
        for (int i = 0; i < 2 && !st; i++) {
            char *p = ms_path_join(cfg->model.dir, need[i]);
            if (!p) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
            else if (access(p, R_OK) != 0)
                st = ms_err_set(err, MS_ERR_IO, "%s: cannot read the model (model.dir): %s; run `monosem train-model` "
                                "first or set model.dir", p, strerror(errno));
            free(p);
        }
    }
    st = ms_comm_agree(comm, st, err);
    if (st) return st;

    /* Without corpus.paths the shards must exist. */
    if (cfg->corpus.n_paths > 0) {
        /* without this stage's options: `generate --force` redoes the activations, not the
         * tokenization */
        app_ctx sub = *app;
        sub.argc = 0;
        sub.argv = NULL;
        st = app_stage_tokenize(&sub, err);
        app->rec = sub.rec;
        if (st) return st;
    }
    if (comm->rank == 0 && !ms_corpus_manifest_fingerprint(cfg->corpus.token_dir, tokens_fp))
        st = ms_err_set(err, MS_ERR_IO,
                        "%s: no token shards in %s (no %s): set corpus.paths to tokenize a corpus",
                        cfg->path, cfg->corpus.token_dir, MS_TOKENS_MANIFEST);
    st = ms_comm_agree(comm, st, err);
    if (st) return st;
    ms_comm_bcast(comm, tokens_fp, 17, 0, NULL);
    return MS_OK;
}

/* Step 2: model, hook, plan (the model hash from rank 0), the store's metadata and the
 * <out>.partial name. COLLECTIVE. */
static ms_status gen_setup(gen *g, const char *tokens_fp, ms_err *err)
{
    const ms_config *cfg = g->cfg;
    const ms_comm *comm = &g->app->comm;
    char model_sha[65] = "";
    ms_status st = gen_prepare(g, model_sha, err);
    st = ms_comm_agree(comm, st, err);
    if (st) return st;
    ms_comm_bcast(comm, model_sha, sizeof model_sha, 0, NULL);

    ms_actmeta *m = &g->meta;
    m->n_rows = g->plan.n_rows;
    m->d = g->d;
    m->n_contexts = g->plan.n_contexts;
    m->context = g->plan.context;
    m->n_shards = g->plan.n_shards;
    m->dtype = cfg->generate.dtype;
    m->seed = cfg->run.seed;
    m->chunk_rows = 0;
    ms_hook_name(g->hook, m->hook, sizeof m->hook);
    snprintf(m->model_sha256, sizeof m->model_sha256, "%s", model_sha);
    snprintf(m->tokenizer_sha256, sizeof m->tokenizer_sha256, "%s", g->ts.tokenizer_sha256);
    snprintf(m->version, sizeof m->version, "%s", MS_VERSION_STRING);
    gen_fingerprint(g, tokens_fp, m->config_hash);
    g->config_text = ms_config_dump_string(cfg);
    m->config_text = g->config_text;

    const char *out = cfg->generate.out;
    size_t plen = strlen(out) + 16;
    g->partial = malloc(plen);
    if (!g->partial) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    st = ms_comm_agree(comm, st, err);
    if (st) return st;
    snprintf(g->partial, plen, "%s.partial", out);
    return MS_OK;
}

/* Step 4: the file created or reopened, the serve points; rank 0 sets up the queue over the
 * shards still to do and the progress line. COLLECTIVE. */
static ms_status gen_start(gen *g, ms_err *err)
{
    const ms_config *cfg = g->cfg;
    const ms_comm *comm = &g->app->comm;
    ms_status st = gen_open(g, err);
    if (st) return st;
    g->todo_shards = g->plan.n_shards - g->n_done_before;
    app_gen_serve_points(g);
    int64_t T = g->plan.context;
    if (comm->rank == 0) {
        ms_queue_init(&g->q, g->plan.n_shards, g->done, comm->size - 1);
        int64_t tok_todo = 0;
        for (int64_t s = 0; s < g->plan.n_shards; s++)
            if (!g->done[s]) {
                int64_t c0, c1;
                app_gen_shard_contexts(&g->plan, s, &c0, &c1);
                tok_todo += (c1 - c0) * T;
            }
        ms_log("generate: %" PRId64 " contexts x %" PRId64 " tokens, %" PRId64 " sampled each -> %"
               PRId64 " rows of %s (d %d, %s) in %" PRId64 " shard(s), %" PRId64
               " to do, on %d rank(s) -> %s",
               g->plan.n_contexts, T, g->plan.sample, g->plan.n_rows, g->meta.hook, g->d,
               g->meta.dtype == MS_DTYPE_F16 ? "float16" : "float32", g->plan.n_shards, g->todo_shards,
               comm->size, cfg->generate.out);
        ms_progress_init(&g->prog, "generate", "tokens", (double)tok_todo, cfg->run.log_every_s);
    }
    return MS_OK;
}

/* Steps 5-6: the queue phase (no collectives inside) and one verdict (a signal stops here,
 * resumable); then complete: the attribute last, the rename to the final name. *work_s: the
 * queue phase's wall time. COLLECTIVE. */
static ms_status gen_run(gen *g, double *work_s, ms_err *err)
{
    const ms_comm *comm = &g->app->comm;
    const char *out = g->cfg->generate.out;
    double t_work = ms_time_now();
    ms_status st = app_gen_work(g, err);
    st = ms_comm_agree(comm, st, err);
    *work_s = ms_time_now() - t_work;
    if (st == MS_ERR_IO) gen_full_disk_hint(g, err);
    const int stop_sig = st ? 0 : ms_comm_signal_agree(comm, 0); /* step 0: after the queue phase */
    if (stop_sig) {
        int64_t mine = g->shards_mine, all = 0;
        ms_comm_allreduce_i64(comm, &mine, 1, NULL);
        all = mine;
        st = ms_err_set(err, MS_INTERRUPTED,
                        "generate: %s: stopped after %" PRId64 " more of %" PRId64 " shards, recorded in %s; "
                        "rerun the same command to resume", ms_signal_name(stop_sig), all,
                        g->plan.n_shards, g->partial);
    }
    if (st) {
        ms_actwriter_close(g->w); /* COLLECTIVE; the file stays resumable */
        g->w = NULL;
        return st;
    }
    if (comm->rank == 0) {
        snprintf(g->prog.label, sizeof g->prog.label, "generate %" PRId64 "/%" PRId64 " shards", g->todo_shards,
                 g->todo_shards);
        g->prog.done = g->prog.total;
        ms_progress_finish(&g->prog);
    }

    double t = ms_time_now();
    st = ms_actwriter_finalize(g->w, err);
    g->w = NULL;
    st = ms_comm_agree(comm, st, err);
    if (st) return st;
    if (comm->rank == 0 && rename(g->partial, out) != 0)
        st = ms_err_set(err, MS_ERR_IO, "%s: cannot rename from %s: %s", out, g->partial, strerror(errno));
    st = ms_comm_agree(comm, st, err);
    g->t_write += ms_time_now() - t;
    return st;
}

/* Step 7: totals over ranks, the log line and the run record's facts. COLLECTIVE. */
static void gen_report(gen *g, double work_s)
{
    app_ctx *app = g->app;
    const ms_comm *comm = &app->comm;
    const ms_actmeta *m = &g->meta;
    int64_t tot[3] = {g->tokens_mine, g->shards_mine, g->bytes_written};
    ms_comm_allreduce_i64(comm, tot, 3, NULL);
    double rate = work_s > 0 ? (double)tot[0] / work_s : 0;
    ms_log("generate: %" PRId64 " tokens in %" PRId64 " shard(s) in %.2fs: %.0f tokens/s, %.1f MB "
           "written (%.0f MB/s); rank %d: forward %.2fs, write %.2fs (%.1f%% of forward)",
           tot[0], tot[1], work_s, rate, (double)tot[2] / 1e6,
           work_s > 0 ? (double)tot[2] / 1e6 / work_s : 0, comm->rank, g->t_fwd, g->t_write,
           g->t_fwd > 0 ? 100 * g->t_write / g->t_fwd : 0);
    ms_runrec_fact(&app->rec, "generate.out", "%s", g->cfg->generate.out);
    ms_runrec_fact(&app->rec, "generate.rows", "%" PRId64, g->plan.n_rows);
    ms_runrec_fact(&app->rec, "generate.d", "%d", g->d);
    ms_runrec_fact(&app->rec, "generate.hook", "%s", m->hook);
    ms_runrec_fact(&app->rec, "generate.contexts", "%" PRId64, g->plan.n_contexts);
    ms_runrec_fact(&app->rec, "generate.shards", "%" PRId64, g->plan.n_shards);
    ms_runrec_fact(&app->rec, "generate.shards_resumed", "%" PRId64, g->n_done_before);
    ms_runrec_fact(&app->rec, "generate.tokens_run", "%" PRId64, tot[0]);
    ms_runrec_fact(&app->rec, "generate.tokens_per_s", "%.0f", rate);
    ms_runrec_fact(&app->rec, "generate.fingerprint", "%s", m->config_hash);
    double smin, savg, smax;
    ms_comm_minavgmax(comm, (double)g->shards_mine, &smin, &savg, &smax);
    ms_runrec_fact(&app->rec, "generate.shards_per_rank", "min %.0f avg %.1f max %.0f", smin, savg, smax);
    ms_runrec_fact(&app->rec, "generate.model_sha256", "%s", m->model_sha256);
}

static ms_status generate_one(app_ctx *app, ms_err *err)
{
    const ms_config *cfg = &app->cfg;
    const ms_comm *comm = &app->comm;
    gen g;
    memset(&g, 0, sizeof g);
    g.app = app;
    g.cfg = cfg;
    double t_start = ms_time_now();
    /* a file-size limit (ulimit -f, quotas enforced that way) must fail a write with a clear
     * error on every rank, not kill one rank with SIGXFSZ */
    signal(SIGXFSZ, SIG_IGN);
    ms_signals_install(); /* SIGTERM/SIGINT/SIGUSR1: finish the shards in hand, exit 75 */

    char tokens_fp[17] = "";
    ms_status st = gen_inputs(app, tokens_fp, err);
    if (st) return st;
    st = gen_setup(&g, tokens_fp, err);
    if (st) goto done;

    /* 3. up to date? */
    const char *out = cfg->generate.out;
    int32_t skip = 0;
    if (comm->rank == 0 && !app_flag(app, "force")) skip = gen_up_to_date(&g, out);
    ms_comm_bcast(comm, &skip, sizeof skip, 0, NULL);
    if (skip) {
        ms_log("generate: %s is up to date (%" PRId64 " rows of %s, fingerprint %s); --force to redo",
               out, g.meta.n_rows, g.meta.hook, g.meta.config_hash);
        ms_runrec_fact(&app->rec, "generate.skipped", "up to date (fingerprint %s)", g.meta.config_hash);
        goto done;
    }
    st = gen_start(&g, err);
    if (st) goto done;
    double work_s = 0;
    st = gen_run(&g, &work_s, err);
    if (st) goto done;
    gen_report(&g, work_s);

done:
    ms_runrec_time(&app->rec, "generate.read_tokens", g.t_read);
    ms_runrec_time(&app->rec, "generate.forward", g.t_fwd);
    ms_runrec_time(&app->rec, "generate.gather", g.t_gather);
    ms_runrec_time(&app->rec, "generate.write", g.t_write);
    ms_runrec_time(&app->rec, "generate.queue_wait", g.t_wait);
    ms_runrec_time(&app->rec, "generate.total", ms_time_now() - t_start);
    if (g.w) ms_actwriter_close(g.w);
    gen_free(&g);
    return st;
}

/* Model A, then model B when the job has one (--only A|B picks one). */
ms_status app_stage_generate(app_ctx *app, ms_err *err) { return app_job_each_model(app, generate_one, err); }
