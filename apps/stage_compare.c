/* `monosem compare job.yaml`: feature splitting (SAEs of different sizes on one model) and
 * universality (model A vs model B, features and neurons; the untrained control R vs the
 * trained reference, B or else A) over the same tokens. This file is
 * the driver: forward to the hook on shared contexts, encode with each SAE, feed the
 * correlation sums (libunits/correlation.c), reduce them once; compare_write.c writes compare/. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"

static ms_status add_pair(cmp *c, int kind, bool control, int a, int b, int64_t da, int64_t db, ms_err *err)
{
    pair *p = realloc(c->pairs, sizeof *p * (size_t)(c->n_pairs + 1));
    if (!p) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    c->pairs = p;
    p = &c->pairs[c->n_pairs++];
    memset(p, 0, sizeof *p);
    p->kind = kind, p->control = control, p->a = a, p->b = b, p->da = da, p->db = db;
    if (da > 0) { /* neurons: sized in prepare, once the hook width is known */
        p->nb = ms_corr_block_cols(da, db, (size_t)(c->cfg->compare.block_mb * 1048576.0));
        p->n_blocks = (db + p->nb - 1) / p->nb;
    }
    p->row_max = malloc((size_t)(da > 0 ? da : 1) * sizeof(float));
    p->row_arg = malloc((size_t)(da > 0 ? da : 1) * sizeof(int64_t));
    p->col_max = malloc((size_t)(db > 0 ? db : 1) * sizeof(float));
    p->col_arg = malloc((size_t)(db > 0 ? db : 1) * sizeof(int64_t));
    if (!p->row_max || !p->row_arg || !p->col_max || !p->col_arg) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < da; i++) p->row_max[i] = -INFINITY, p->row_arg[i] = -1;
    if (kind == PAIR_SPLIT) {
        p->drow_max = malloc((size_t)da * sizeof(float));
        p->drow_arg = malloc((size_t)da * sizeof(int64_t));
        p->dcol_max = malloc((size_t)db * sizeof(float));
        p->dcol_arg = malloc((size_t)db * sizeof(int64_t));
        if (!p->drow_max || !p->drow_arg || !p->dcol_max || !p->dcol_arg)
            return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    if (a >= 0) c->saes[a].needed = true;
    if (b >= 0) c->saes[b].needed = true;
    c->model_needed[src_model(c, a)] = c->model_needed[src_model(c, b)] = true;
    return MS_OK;
}

/* Splitting: on each model, each SAE with the first SAE of the next larger size (consecutive
 * sizes: the family tree of a sweep, linear in its length). Universality: each model-A SAE
 * with the first model-B SAE of its size; model A's neurons with B's. The control: each
 * model-R SAE with the first SAE of its size on the reference model, and R's neurons with the
 * reference's (what universality looks like when one model learned nothing). */
static ms_status plan_pairs(cmp *c, ms_err *err)
{
    ms_status st = MS_OK;
    for (int i = 0; i < c->n_saes && !st; i++) {
        int next = -1;
        for (int j = 0; j < c->n_saes; j++)
            if (c->jobs[j].model == c->jobs[i].model && c->jobs[j].d_sae > c->jobs[i].d_sae &&
                (next < 0 || c->jobs[j].d_sae < c->jobs[next].d_sae))
                next = j;
        if (next >= 0) st = add_pair(c, PAIR_SPLIT, false, i, next, c->jobs[i].d_sae, c->jobs[next].d_sae, err);
    }
    for (int i = 0; i < c->n_saes && !st; i++) {
        const bool control = c->jobs[i].model == 2;
        if (c->jobs[i].model != 0 && !control) continue;
        const int other = control ? c->ref : 1;
        for (int j = 0; j < c->n_saes; j++)
            if (c->jobs[j].model == other && c->jobs[j].d_sae == c->jobs[i].d_sae) {
                st = add_pair(c, PAIR_UNIV, control, i, j, c->jobs[i].d_sae, c->jobs[j].d_sae, err);
                break;
            }
    }
    if (!st && c->have_m[1]) st = add_pair(c, PAIR_UNIV, false, SRC_NEURONS_A, SRC_NEURONS_B, 0, 0, err);
    if (!st && c->have_m[2]) st = add_pair(c, PAIR_UNIV, true, SRC_NEURONS_R, -1 - c->ref, 0, 0, err);
    return st;
}

/* Models, hook, token contexts, SAEs and buffers; local work (the caller agrees). */
static ms_status prepare(cmp *c, ms_err *err)
{
    const ms_config *cfg = c->cfg;
    const char *dirs[N_MODELS];
    for (int m = 0; m < N_MODELS; m++) dirs[m] = m == 0 ? cfg->model.dir : c->have_m[m] ? c->cfg_m[m].model.dir : NULL;
    for (int m = 0; m < N_MODELS; m++) {
        if (!c->model_needed[m]) continue;
        ms_status st = ms_model_load(&c->model[m], dirs[m], err);
        if (st) return st;
        c->model_loaded[m] = true;
    }
    int m0 = 0;
    while (m0 < N_MODELS - 1 && !c->model_loaded[m0]) m0++;
    const ms_model_config *mc = &c->model[m0].cfg;
    ms_status st = ms_hook_parse(&c->hook, cfg->model.hook, mc, err);
    if (st) return st;
    c->d = ms_hook_dim(mc, c->hook);
    for (int m = m0 + 1; m < N_MODELS; m++)
        if (c->model_loaded[m] && ms_hook_dim(&c->model[m].cfg, c->hook) != c->d)
            return ms_err_set(err, MS_ERR_STATE, "compare: %s has width %d in %s but %d in %s", cfg->model.hook, c->d,
                              dirs[m0], ms_hook_dim(&c->model[m].cfg, c->hook), dirs[m]);
    /* neuron pairs are sized now that the hook width is known */
    for (int k = 0; k < c->n_pairs; k++) {
        pair *p = &c->pairs[k];
        if (p->a >= 0) continue;
        p->da = p->db = c->d;
        p->nb = ms_corr_block_cols(c->d, c->d, (size_t)(cfg->compare.block_mb * 1048576.0));
        p->n_blocks = (c->d + p->nb - 1) / p->nb;
        float *r = realloc(p->row_max, (size_t)c->d * sizeof(float)), *cm = realloc(p->col_max, (size_t)c->d * sizeof(float));
        if (r) p->row_max = r;
        if (cm) p->col_max = cm;
        int64_t *ra = realloc(p->row_arg, (size_t)c->d * sizeof(int64_t)), *ca = realloc(p->col_arg, (size_t)c->d * sizeof(int64_t));
        if (ra) p->row_arg = ra;
        if (ca) p->col_arg = ca;
        if (!r || !cm || !ra || !ca) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < c->d; i++) p->row_max[i] = -INFINITY, p->row_arg[i] = -1;
    }

    st = ms_tokset_open(&c->ts, cfg->corpus.token_dir, "train", err);
    if (st) return st;
    c->T = cfg->corpus.context;
    int64_t avail = ms_tokset_n_contexts(&c->ts, c->T, false);
    c->n_ctx = (cfg->compare.tokens + c->T - 1) / c->T;
    if (c->n_ctx > avail) c->n_ctx = avail;
    if (c->n_ctx < 1)
        return ms_err_set(err, MS_ERR_STATE, "compare: the train split of %s has no context of %lld tokens",
                          cfg->corpus.token_dir, (long long)c->T);
    ms_shard_range(c->n_ctx, c->app->comm.rank, c->app->comm.size, &c->ctx0, &c->ctx1);
    c->B = cfg->compare.batch;
    const size_t rows = (size_t)(c->B * c->T);
    c->tokens = malloc(rows * sizeof *c->tokens);
    if (!c->tokens) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int m = 0; m < N_MODELS; m++) {
        if (!c->model_loaded[m]) continue;
        if ((st = app_check_model_fit(cfg, dirs[m], c->model[m].cfg.n_ctx, c->model[m].cfg.d_vocab, &c->ts, err)))
            return st;
        st = ms_model_acts_init(&c->acts[m], &c->model[m].cfg, (int)c->B, (int)c->T, MS_ACTS_NO_LOGITS, err);
        if (st) return st;
        if (!(c->h[m] = calloc(rows * (size_t)c->d, sizeof(float)))) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < c->n_saes; i++) {
        cmp_sae *s = &c->saes[i];
        if (!s->needed) continue;
        char *sl = ms_path_join(s->js->dir, "saelens");
        if (!sl) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        /* opened from what training saved (architecture, k, threshold), as eval does */
        ms_saelens_info info;
        st = ms_saelens_open(&s->sae, sl, (int64_t)rows, &info, err);
        const int64_t d_in = st ? 0 : s->sae.hp.d_in, d_sae = st ? 0 : s->sae.hp.d_sae;
        if (!st && (d_in != c->d || d_sae != s->js->d_sae))
            st = ms_err_set(err, MS_ERR_STATE, "%s/cfg.json: d_in %lld, d_sae %lld; the job says d_in %d (%s), d_sae %lld",
                            sl, (long long)d_in, (long long)d_sae, c->d, cfg->model.hook, (long long)s->js->d_sae);
        free(sl);
        if (st) return st;
        if (!(s->f = calloc(rows * (size_t)d_sae, sizeof(float)))) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    return MS_OK;
}

/* One batch of nb contexts from c0: forward, encode, add to the active pairs' blocks. */
static ms_status pass_batch(cmp *c, int64_t c0, int nb, ms_err *err)
{
    for (int b = 0; b < nb; b++) {
        ms_status st = ms_tokset_context(&c->ts, c0 + b, c->T, false, c->tokens + (size_t)b * c->T, err);
        if (st) return st;
    }
    const int64_t rows = (int64_t)nb * c->T;
    for (int m = 0; m < N_MODELS; m++) {
        if (!c->model_loaded[m]) continue;
        ms_hook_capture cap = {c->hook, c->h[m]};
        ms_forward_opts o = {.stop_after = &c->hook, .captures = &cap, .n_captures = 1};
        ms_status st = ms_model_forward(&c->model[m], &c->acts[m], c->tokens, nb, (int)c->T, &o, err);
        if (st) return st;
    }
    for (int i = 0; i < c->n_saes; i++)
        if (c->saes[i].needed) ms_sae_encode(&c->saes[i].sae, c->saes[i].f, c->h[c->jobs[i].model], rows);
    for (int k = 0; k < c->n_pairs; k++) {
        pair *p = &c->pairs[k];
        if (p->active) ms_corr_add(&p->corr, src_units(c, p->a), src_units(c, p->b), rows);
    }
    return MS_OK;
}

/* COLLECTIVE. Pass ip of n_pass over this rank's contexts. Every rank runs the same number of
 * rounds (the largest share) and agrees on stop signals after each, so a SIGTERM on any rank
 * stops all at the same batch (MS_INTERRUPTED); a rank that failed keeps joining the rounds. */
static ms_status pass(cmp *c, ms_progress *prog, int64_t ip, int64_t n_pass, ms_err *err)
{
    const ms_comm *comm = &c->app->comm;
    const double done0 = (double)(ip * c->n_ctx * c->T);
    const int64_t per_rank = (c->n_ctx + comm->size - 1) / comm->size, rounds = (per_rank + c->B - 1) / c->B;
    ms_status st = MS_OK;
    for (int64_t k = 0; k < rounds; k++) {
        const int64_t c0 = c->ctx0 + k * c->B;
        if (!st && c0 < c->ctx1) {
            int nb = (int)(c->ctx1 - c0 < c->B ? c->ctx1 - c0 : c->B);
            st = pass_batch(c, c0, nb, err);
            ms_progress_update(prog, done0 + (double)(c0 + nb - c->ctx0) * (double)c->T * comm->size);
        }
        int sig = ms_comm_signal_agree(comm, ip * rounds + k + 1); /* rounds over all passes */
        if (sig && !st)
            st = ms_err_set(err, MS_INTERRUPTED,
                            "compare: %s: stopped in pass %lld of %lld after %lld of %lld batches per rank, nothing "
                            "written; compare keeps no checkpoint: rerun to start over",
                            ms_signal_name(sig), (long long)(ip + 1), (long long)n_pass, (long long)(k + 1),
                            (long long)rounds);
        if (sig) break;
    }
    return st;
}


/* Bytes of one block of a pair (ms_corr_block_cols's accounting). */
static size_t block_bytes(const pair *p)
{
    return (size_t)p->da * (size_t)p->nb * (sizeof(double) + sizeof(float)) + 2 * sizeof(double) * (size_t)p->nb;
}

/* Picks the blocks of the next pass: at most one per pair, as many pairs as fit in
 * compare.block_mb together (at least one). False when every block is done. */
/* More passes than this over the tokens is a block size set by mistake, not a plan: refused
 * with the figure that fits (a pass packs whole column blocks, hence the factor 2 of slack). */
#define MAX_PASSES 64

static bool next_pass(cmp *c, bool dry)
{
    size_t budget = (size_t)(c->cfg->compare.block_mb * 1048576.0), used = 0;
    bool any = false;
    for (int k = 0; k < c->n_pairs; k++) {
        pair *p = &c->pairs[k];
        p->active = false;
        if (p->next_block >= p->n_blocks || (any && used + block_bytes(p) > budget)) continue;
        p->active = true, any = true;
        used += block_bytes(p);
        if (dry) p->next_block++;
    }
    return any;
}

static void cmp_free(cmp *c)
{
    for (int k = 0; k < c->n_pairs; k++) {
        pair *p = &c->pairs[k];
        ms_corr_free(&p->corr);
        free(p->row_max), free(p->row_arg), free(p->col_max), free(p->col_arg);
        free(p->drow_max), free(p->drow_arg), free(p->dcol_max), free(p->dcol_arg);
        free(p->fam_member), free(p->fam_size);
    }
    free(c->pairs);
    for (int i = 0; c->saes && i < c->n_saes; i++) {
        ms_sae_free(&c->saes[i].sae);
        free(c->saes[i].f);
    }
    free(c->saes);
    for (int m = 0; m < N_MODELS; m++) {
        ms_model_acts_free(&c->acts[m]);
        if (c->model_loaded[m]) ms_model_free(&c->model[m]);
        free(c->h[m]);
        if (m > 0 && c->have_m[m]) ms_config_free(&c->cfg_m[m]);
    }
    free(c->tokens);
    ms_tokset_close(&c->ts);
    app_job_saes_free(c->jobs, c->n_saes);
}

ms_status app_stage_compare(app_ctx *app, ms_err *err)
{
    cmp c;
    memset(&c, 0, sizeof c);
    c.app = app;
    c.cfg = &app->cfg;
    const ms_comm *comm = &app->comm;
    double t0 = ms_time_now();
    ms_signals_install(); /* SIGTERM/SIGINT/SIGUSR1: all ranks stop at the same batch, exit 75 */
    ms_status st = app_job_saes(c.cfg, &c.jobs, &c.n_saes, err);
    c.have_m[0] = true;
    for (int m = 1; m < N_MODELS && !st; m++)
        if (app_job_has_model(c.cfg, m)) {
            st = ms_config_derive_model(c.cfg, m, &c.cfg_m[m], err);
            c.have_m[m] = st == MS_OK;
        }
    c.ref = c.have_m[1] ? 1 : 0;
    if (!st && !(c.saes = calloc((size_t)c.n_saes, sizeof *c.saes))) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (int i = 0; !st && i < c.n_saes; i++) c.saes[i].js = &c.jobs[i];
    if (!st) st = plan_pairs(&c, err);
    if (st) goto done; /* pure functions of the config: the same on every rank */
    char *dir = ms_path_join(c.cfg->run.out_dir, "compare");
    if (!dir) {
        st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (c.n_pairs == 0) {
        ms_log("compare: nothing to compare (one SAE size per model and no model B); writing empty results");
        if (comm->rank == 0) st = app_compare_write(&c, dir, 0, err);
        st = ms_comm_agree(comm, st, err);
        free(dir);
        goto done;
    }
    st = prepare(&c, err);
    st = ms_comm_agree(comm, st, err);
    if (st) {
        free(dir);
        goto done;
    }
    /* decoder cosines: weights only, the same on every rank */
    for (int k = 0; k < c.n_pairs && !st; k++) {
        pair *p = &c.pairs[k];
        if (p->kind == PAIR_SPLIT)
            st = ms_decoder_best(p->drow_max, p->drow_arg, p->dcol_max, p->dcol_arg, c.saes[p->a].sae.p.W_dec,
                                 c.saes[p->b].sae.p.W_dec, p->da, p->db, c.d, err);
    }
    /* passes: the pairs' column blocks packed under compare.block_mb (counted dry first) */
    int64_t n_pass = 0;
    while (next_pass(&c, true)) n_pass++;
    for (int k = 0; k < c.n_pairs; k++) c.pairs[k].next_block = 0;
    if (n_pass > MAX_PASSES) { /* each pass is a forward of every model over compare.tokens */
        double all = 0; /* every pair's sums at once, bytes */
        for (int k = 0; k < c.n_pairs; k++) {
            const pair *p = &c.pairs[k];
            all += (double)p->da * (double)p->db * (sizeof(double) + sizeof(float)) + 2.0 * sizeof(double) * (double)p->db;
        }
        char at[4200];
        ms_config_key_where(c.cfg, "compare.block_mb", at, sizeof at);
        st = ms_err_set(err, MS_ERR_CONFIG, "%s: key 'compare.block_mb': %g MiB makes %lld passes over the "
                        "%lld tokens (each a forward of every model), expected at most %d: the correlation sums need "
                        "%.1f MiB per rank in all, so compare.block_mb >= %.3g gives at most %d", at,
                        c.cfg->compare.block_mb, (long long)n_pass, (long long)(c.n_ctx * c.T), MAX_PASSES,
                        all / 1048576.0, all / 1048576.0 / (MAX_PASSES / 2), MAX_PASSES);
        free(dir);
        goto done;
    }
    ms_log("compare: %d pair(s) (%s) over %lld contexts x %lld tokens on %d rank(s), %lld pass(es)", c.n_pairs,
           c.have_m[1] && c.have_m[2] ? "splitting + universality + control" : c.have_m[1] ? "splitting + universality"
           : c.have_m[2] ? "splitting + control" : "splitting", (long long)c.n_ctx, (long long)c.T, comm->size,
           (long long)n_pass);
    ms_progress prog;
    ms_progress_init(&prog, "compare", "tokens", (double)(c.n_ctx * c.T * n_pass), c.cfg->run.log_every_s);
    double t_reduce = 0;
    for (int64_t ip = 0; ip < n_pass && !st; ip++) {
        next_pass(&c, false);
        for (int k = 0; k < c.n_pairs && !st; k++) {
            pair *p = &c.pairs[k];
            if (!p->active) continue;
            int64_t b0 = p->next_block * p->nb, b1 = b0 + p->nb < p->db ? b0 + p->nb : p->db;
            st = ms_corr_init(&p->corr, p->da, p->db, b0, b1, err);
        }
        st = ms_comm_agree(comm, st, err);
        if (!st) st = pass(&c, &prog, ip, n_pass, err);
        st = ms_comm_agree(comm, st, err);
        /* each active block's sums in ONE reduction; then the best matches everywhere */
        double tr = ms_time_now();
        for (int k = 0; k < c.n_pairs && !st; k++) {
            pair *p = &c.pairs[k];
            if (!p->active) continue;
            st = ms_comm_allreduce_f64(comm, p->corr.sums, p->corr.n_sums, err);
            if (!st) ms_corr_best(&p->corr, p->row_max, p->row_arg, p->col_max, p->col_arg);
            ms_corr_free(&p->corr);
            p->next_block++;
        }
        t_reduce += ms_time_now() - tr;
        st = ms_comm_agree(comm, st, err);
    }
    ms_progress_finish(&prog);
    if (!st && comm->rank == 0) st = app_compare_write(&c, dir, ms_time_now() - t0, err);
    st = ms_comm_agree(comm, st, err);
    ms_runrec_time(&app->rec, "compare.allreduce", t_reduce);
    ms_runrec_fact(&app->rec, "compare.tokens", "%lld", (long long)(c.n_ctx * c.T));
    free(dir);
done:
    cmp_free(&c);
    return st;
}
