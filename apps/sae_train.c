/* The data-parallel SAE training loop: one step (resampling, read, forward_backward, one grads
 * allreduce, the identical update), the final densities, metrics lines, exact checkpoints
 * (setup: sae_train_setup.c; final outputs: sae_train_out.c). */
#include "sae_train.h"

#include "eval.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOWUP_FACTOR 1e3 /* loss above this x the first step's loss = divergence */

static bool contains(const int64_t *a, int n, int64_t v)
{
    for (int i = 0; i < n; i++)
        if (a[i] == v) return true;
    return false;
}

/* COLLECTIVE. The data-parallel invariant: params and Adam state bitwise equal on all ranks. */
static ms_status check_identical(const ms_sae *sae, const ms_comm *comm, ms_err *err)
{
    if (comm->size == 1) return MS_OK;
    size_t nb = sae->layout.n_params * sizeof(float);
    uint64_t h = ms_fnv1a64(sae->params, nb, 0xcbf29ce484222325ull);
    h = ms_fnv1a64(sae->adam_m, nb, h);
    h = ms_fnv1a64(sae->adam_v, nb, h);
    double mn, avg, mx;
    ms_comm_minavgmax(comm, (double)(h >> 11), &mn, &avg, &mx); /* 53 bits, exact in a double */
    if (mn != mx)
        return ms_err_set(err, MS_ERR_STATE,
                          "data-parallel invariant broken at step %lld: parameters differ "
                          "between ranks",
                          (long long)sae->step);
    return MS_OK;
}

/* ------------------------------------------------------------------ the loop */

/* One step: resampling if due, read, forward_backward, the two allreduces, divergence checks,
 * the identical update, firing counters. COLLECTIVE. *lr = the step's learning rate. */
static ms_status trainer_step(app_trainer *tr, double *lr, ms_err *err)
{
    const ms_config *cfg = tr->cfg;
    const ms_comm *comm = tr->comm;
    app_train_result *res = tr->res;
    ms_sae *sae = &tr->sae;
    const int64_t step = sae->step;
    ms_status st;
    if (contains(cfg->sae.resample.at, cfg->sae.resample.n_at, step) && step > 0) {
        int64_t nr = 0;
        double t0 = ms_time_now();
        st = app_sae_resample(sae, &tr->t, tr->f, cfg, comm, &nr, err);
        st = ms_comm_agree(comm, st, err);
        if (st) return st;
        if (cfg->sae.resample.max_density > 0)
            ms_log("train: step %lld: resampled %lld feature(s) firing on < %g of the window's %lld tokens (%.2fs)",
                   (long long)step, (long long)nr, cfg->sae.resample.max_density,
                   (long long)tr->t.win_fired[sae->hp.d_sae], ms_time_now() - t0);
        else
            ms_log("train: step %lld: resampled %lld dead neuron(s) (%.2fs)", (long long)step,
                   (long long)nr, ms_time_now() - t0);
    }
    if (app_train_resample_window_start(cfg, step)) /* the next event's window starts here */
        memset(tr->t.win_fired, 0, (size_t)(sae->hp.d_sae + 1) * sizeof *tr->t.win_fired);
    double t0 = ms_time_now();
    ms_status local = ms_actstream_next(tr->stream, tr->x, err);
    double t1 = ms_time_now();
    double *stats = tr->stats, t2, t3;
    if (tr->repro) { /* the shards' forward_backward and their fixed-order sum */
        double t_red = 0.0;
        st = app_repro_grads(&tr->rp, sae, tr->x, tr->B, &local, stats, comm, &t_red, err);
        t3 = ms_time_now();
        t2 = t3 - t_red;
    } else {
        if (!local) local = ms_sae_forward_backward(sae, tr->x, tr->b, tr->B, stats, err);
        t2 = ms_time_now();
        stats[tr->n_stats] = local != MS_OK; /* travels with the stats: no extra collective */
        st = ms_comm_allreduce_f32(comm, sae->grads, sae->layout.n_params, err);
        if (!st) st = ms_comm_allreduce_f64(comm, stats, tr->n_stats + 1, err);
        t3 = ms_time_now();
    }
    res->t_read += t1 - t0;
    res->t_compute += t2 - t1;
    res->t_allreduce += t3 - t2;
    if (st) return st; /* MPI failure: nothing more can be agreed */
    if (stats[tr->n_stats] != 0.0) {
        st = ms_comm_agree(comm, local ? local : MS_OK, err);
        return st ? st : ms_err_set(err, MS_ERR_MPI, "a rank failed at step %lld", (long long)step);
    }
    const double loss = stats[MS_SAE_STAT_LOSS];
    if (step == 0 || tr->t.loss_ref == 0.0) tr->t.loss_ref = loss;
    if (!isfinite(loss) || (tr->t.loss_ref > 0 && loss > BLOWUP_FACTOR * tr->t.loss_ref))
        return ms_err_set(err, MS_ERR_NUMERIC,
                          "training diverged at step %lld: loss %g (first step %g); the last "
                          "good checkpoint (%s) is kept: lower sae.lr",
                          (long long)step, loss, tr->t.loss_ref, tr->last_ckpt >= 0 ? tr->ckpt_path : "none written yet");
    *lr = ms_sae_lr_at(&sae->hp, step);
    ms_sae_step_info info;
    st = ms_sae_step(sae, *lr, stats, &info, err);
    /* the step is deterministic, so ranks fail it together; agreeing anyway (two 4-byte
     * allreduces) means no rank can ever wait alone in the next step's allreduce */
    st = ms_comm_agree(comm, st, err);
    res->t_step += ms_time_now() - t3;
    if (st) {
        ms_err_clear(err);
        return ms_err_set(err, MS_ERR_NUMERIC,
                          "training diverged at step %lld: the update is not finite; the "
                          "last good checkpoint (%s) is kept: lower sae.lr",
                          (long long)step, tr->last_ckpt >= 0 ? tr->ckpt_path : "none written yet");
    }
    const double *fired = stats + MS_SAE_STAT_FIXED;
    for (int64_t j = 0; j < sae->hp.d_sae; j++) {
        tr->t.fire_count[j] += (int64_t)fired[j];
        tr->t.win_fired[j] += (int64_t)fired[j];
    }
    tr->t.tokens += (int64_t)stats[MS_SAE_STAT_ROWS];
    tr->t.win_fired[sae->hp.d_sae] += (int64_t)stats[MS_SAE_STAT_ROWS];
    app_train_window_roll(&tr->t, sae->hp.d_sae, cfg->sae.dead_tokens);
    tr->t.pos = ms_actstream_pos(tr->stream);
    res->loss = loss;
    res->mse = ms_sae_stats_mse(sae, stats);
    res->fvu = ms_sae_stats_fvu(sae, stats);
    res->l0 = ms_sae_stats_l0(stats);
    res->l1 = stats[MS_SAE_STAT_L1] / stats[MS_SAE_STAT_ROWS];
    return MS_OK;
}

/* After the last step: the final weights' densities over the file's first rows, in file order
 * (whole global batches, each rank its slice), counted as eval counts them
 * (ms_density_stats: dead = never fired, ultralow / rare = alive below the cut), so the
 * training-time numbers describe the dictionary training ends with, not a window of weights
 * that kept moving; log10d gets the densities. Integer counts, summed once: the same on any
 * rank count. COLLECTIVE. */
static ms_status trainer_final_densities(app_trainer *tr, ms_err *err)
{
    const ms_config *cfg = tr->cfg;
    app_train_result *res = tr->res;
    const int64_t m = tr->sae.hp.d_sae;
    int64_t want = cfg->sae.final_density_rows < tr->meta.n_rows ? cfg->sae.final_density_rows : tr->meta.n_rows;
    const int64_t n_batches = want / tr->B;
    res->final_rows = 0;
    if (n_batches == 0) return MS_OK;
    double t0 = ms_time_now();
    /* skipped non-finite rows make the file's finite rows fewer than n_rows: then the last batch
     * continues from the file's start (the rows counted are the first finite ones, wrapped) */
    ms_actstream_opts so = {.batch = tr->B, .window_rows = tr->B, .shuffle = false,
                            .skip_nonfinite = cfg->sae.skip_nonfinite, .repeat = cfg->sae.skip_nonfinite,
                            .limit = n_batches * tr->B, .granule = tr->repro ? tr->rp.rows : 0};
    ms_actstream *s = NULL;
    const int64_t chunk = tr->sae.hp.max_batch; /* reproducible: one micro-shard per encode */
    float *f = malloc((size_t)(chunk * m) * sizeof *f);          /* (chunk, d_sae) codes */
    double *fires = calloc((size_t)m + 1, sizeof *fires);        /* (d_sae) + rows */
    ms_status st = f && fires ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "out of memory for the final densities");
    if (!st) st = ms_actstream_open(&s, tr->f, &so, tr->comm->rank, tr->comm->size, NULL, err);
    for (int64_t k = 0; k < n_batches && !st; k++) {
        st = ms_actstream_next(s, tr->x, err);
        if (st) break;
        for (int64_t r0 = 0; r0 < tr->b; r0 += chunk) {
            const int64_t nr = tr->b - r0 < chunk ? tr->b - r0 : chunk;
            ms_sae_encode(&tr->sae, f, tr->x + r0 * tr->d, nr);
            for (int64_t r = 0; r < nr; r++)
                for (int64_t j = 0; j < m; j++) fires[j] += f[r * m + j] != 0.0f;
        }
        fires[m] += (double)tr->b;
    }
    ms_actstream_close(s);
    free(f);
    st = ms_comm_agree(tr->comm, st, err);
    if (!st) st = ms_comm_allreduce_f64(tr->comm, fires, (size_t)m + 1, err); /* counts < 2^53: exact */
    if (!st) {
        ms_density d;
        ms_density_stats(&d, fires, m, fires[m], cfg->sae.ultralow_density, cfg->sae.rare_density);
        res->final_rows = (int64_t)fires[m];
        res->final_dead = d.dead, res->final_ultralow = d.ultralow, res->final_rare = d.rare;
        for (int64_t j = 0; j < m; j++) tr->log10d[j] = (float)log10(fires[j] / fires[m] + 1e-10);
        if (tr->rec) ms_runrec_time(tr->rec, "final_densities", ms_time_now() - t0);
    }
    free(fires);
    return st;
}

/* Every sae.log_every steps and at the end: one metrics.jsonl line (rank 0). Local. */
static void trainer_log_metrics(app_trainer *tr, double lr)
{
    const ms_config *cfg = tr->cfg;
    app_train_result *res = tr->res;
    const int64_t step = tr->sae.step;
    if (step % cfg->sae.log_every != 0 && step != tr->steps) return;
    double now = ms_time_now();
    double tps = (double)(step - tr->step_last_log) * (double)tr->B / (now - tr->t_last_log);
    tr->t_last_log = now;
    tr->step_last_log = step;
    app_train_densities(&tr->sae, &tr->t, cfg->sae.ultralow_density, cfg->sae.rare_density, cfg->sae.dead_tokens,
                        NULL, &res->dead, &res->ultralow, &res->rare);
    if (!tr->metrics) return;
    fprintf(tr->metrics,
            "{\"step\": %lld, \"tokens\": %lld, \"loss\": %.9g, \"mse\": %.9g, "
            "\"fvu\": %.9g, \"l0\": %.6g, \"l1\": %.9g, \"dead\": %lld, "
            "\"ultralow\": %lld, \"rare\": %lld, \"density_window\": %lld, \"lr\": %.9g, "
            "\"tokens_per_s\": %.1f, \"skipped\": %lld, \"resampled\": %lld, \"resampled_total\": %lld",
            (long long)step, (long long)tr->t.tokens, res->loss, res->mse, res->fvu, res->l0, res->l1,
            (long long)res->dead, (long long)res->ultralow, (long long)res->rare, (long long)cfg->sae.dead_tokens, lr, tps,
            (long long)ms_actstream_skipped(tr->stream),
            /* events since the previous line of the log_every grid (exact on resume) */
            (long long)app_train_resampled_between(&tr->t, (step - 1) / cfg->sae.log_every * cfg->sae.log_every, step),
            (long long)app_train_resampled_between(&tr->t, 0, step));
    if (step == tr->steps && res->final_rows > 0) /* the final weights (trainer_final_densities) */
        fprintf(tr->metrics, ", \"final_rows\": %lld, \"final_dead\": %lld, \"final_ultralow\": %lld, \"final_rare\": %lld",
                (long long)res->final_rows, (long long)res->final_dead, (long long)res->final_ultralow,
                (long long)res->final_rare);
    fputs("}\n", tr->metrics);
    fflush(tr->metrics);
}

/* After a step: a checkpoint when due, at the end or on an agreed stop signal (then the run
 * stops: MS_INTERRUPTED); the crash-after-checkpoint test hook. COLLECTIVE. */
static ms_status trainer_checkpoint(app_trainer *tr, ms_err *err)
{
    const ms_config *cfg = tr->cfg;
    const ms_comm *comm = tr->comm;
    const int64_t step = tr->sae.step;
    const bool last = step == tr->steps;
    const int stop_sig = last ? 0 : ms_comm_signal_agree(comm, step); /* any rank signalled */
    if (!last && !stop_sig && !(cfg->sae.checkpoint_every > 0 && step % cfg->sae.checkpoint_every == 0))
        return MS_OK;
    double c0 = ms_time_now();
    ms_status cs = check_identical(&tr->sae, comm, err);
    tr->n_checked += cs == MS_OK;
    if (!cs && comm->rank == 0) cs = app_sae_ckpt_write(tr->ckpt_path, &tr->sae, &tr->t, cfg, &tr->meta, comm->size, err);
    ms_status st = ms_comm_agree(comm, cs, err);
    if (tr->rec) ms_runrec_time(tr->rec, "checkpoint", ms_time_now() - c0);
    if (st) return st;
    tr->last_ckpt = step;
    if (stop_sig)
        return ms_err_set(err, MS_INTERRUPTED, "train: %s: stopped at step %lld of %lld after "
                          "writing %s; rerun the same command to resume",
                          ms_signal_name(stop_sig), (long long)step, (long long)tr->steps, tr->ckpt_path);
    /* test hook: stop like a crash right after this checkpoint (resume tests) */
    if (ms_testhook("checkpoint", step))
        return ms_err_set(err, MS_ERR_STATE, "train: stopped after the checkpoint at step %lld "
                          "(test hook)", (long long)step);
    return MS_OK;
}

static void trainer_free(app_trainer *tr)
{
    if (tr->metrics) fclose(tr->metrics);
    ms_actstream_close(tr->stream);
    ms_actfile_close(tr->f);
    ms_sae_free(&tr->sae);
    app_repro_free(&tr->rp);
    app_train_state_free(&tr->t);
    free(tr->x);
    free(tr->stats);
    free(tr->log10d);
    free(tr->ckpt_path);
    free(tr->metrics_path);
    free(tr->h5_path);
    free(tr->lens_dir);
}

ms_status app_sae_train(const ms_config *cfg, const ms_comm *comm, ms_runrec *rec,
                        app_train_result *res, ms_err *err)
{
    memset(res, 0, sizeof *res);
    res->resumed_from = -1;
    app_trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.cfg = cfg, tr.comm = comm, tr.rec = rec, tr.res = res;
    tr.B = cfg->sae.batch, tr.steps = cfg->sae.steps;
    ms_status st = app_trainer_open(&tr, err);
    if (!st) st = app_trainer_init(&tr, err);
    if (st) goto done;
    app_trainer_log_start(&tr);

    ms_progress prog;
    ms_progress_init(&prog, "train", "steps", (double)tr.steps, cfg->run.log_every_s);
    prog.done = prog.done0 = (double)tr.sae.step; /* a resumed run starts where its checkpoint is */
    tr.start_step = tr.sae.step;
    tr.t_begin = tr.t_last_log = ms_time_now();
    tr.step_last_log = tr.sae.step;
    tr.last_ckpt = tr.resumed ? tr.sae.step : -1;
    while (tr.sae.step < tr.steps) {
        double lr = 0.0;
        if ((st = trainer_step(&tr, &lr, err))) break;
        if (tr.sae.step == tr.steps && (st = trainer_final_densities(&tr, err))) break;
        trainer_log_metrics(&tr, lr);
        ms_progress_update(&prog, (double)tr.sae.step);
        if ((st = trainer_checkpoint(&tr, err))) break;
    }
    if (st) goto done;
    if (tr.start_step < tr.steps) ms_progress_finish(&prog);
    tr.was_complete = tr.resumed && tr.start_step == tr.steps;
    if (tr.was_complete && (st = app_trainer_rerun_numbers(&tr, err))) goto done;
    double t_total = ms_time_now() - tr.t_begin;
    res->steps = tr.sae.step;
    res->skipped_rows = ms_actstream_skipped(tr.stream);
    res->tokens_per_s = tr.sae.step > tr.start_step ? (double)(tr.sae.step - tr.start_step) * (double)tr.B / t_total : 0.0;

    int64_t n_dead = 0, n_low = 0, n_rare = 0;
    /* the window's densities go to sae.h5 / sparsity only when the final ones were not counted */
    if (tr.was_complete && cfg->sae.final_density_rows > 0 && (st = trainer_final_densities(&tr, err))) goto done;
    float *window_log10d = res->final_rows > 0 ? NULL : tr.log10d;
    app_train_densities(&tr.sae, &tr.t, cfg->sae.ultralow_density, cfg->sae.rare_density, cfg->sae.dead_tokens,
                        window_log10d, &n_dead, &n_low, &n_rare);
    if (!tr.was_complete) res->dead = n_dead, res->ultralow = n_low, res->rare = n_rare;
    if (comm->rank == 0) st = app_trainer_write_outputs(&tr, err);
    st = ms_comm_agree(comm, st, err);
    if (!st && rec) app_trainer_record(&tr, rec);
    if (!st && !tr.was_complete && res->final_rows > 0)
        ms_log("train: done, %lld steps, loss %.6g, MSE %.6g, FVU %.4f, L0 %.2f; the final weights on the "
               "first %lld rows: dead %lld, ultralow (< %g) %lld, rare (< %g) %lld (the last %lld-token window, "
               "weights still moving: dead %lld, ultralow %lld, rare %lld; held-out numbers: monosem eval); %s, %s",
               (long long)tr.sae.step, res->loss, res->mse, res->fvu, res->l0, (long long)res->final_rows,
               (long long)res->final_dead, cfg->sae.ultralow_density, (long long)res->final_ultralow,
               cfg->sae.rare_density, (long long)res->final_rare, (long long)cfg->sae.dead_tokens,
               (long long)res->dead, (long long)res->ultralow, (long long)res->rare, tr.h5_path, tr.lens_dir);
    else if (!st && !tr.was_complete)
        ms_log("train: done, %lld steps, loss %.6g, MSE %.6g, FVU %.4f, L0 %.2f; training-time "
               "estimates over the last %lld tokens: dead %lld, ultralow %lld, rare (< %g) %lld "
               "(held-out numbers: monosem eval); %s, %s",
               (long long)tr.sae.step, res->loss, res->mse, res->fvu, res->l0, (long long)cfg->sae.dead_tokens,
               (long long)res->dead, (long long)res->ultralow, cfg->sae.rare_density, (long long)res->rare,
               tr.h5_path, tr.lens_dir);
done:
    if (tr.repro) ms_blas_threads_set(comm, cfg->run.blas_threads); /* the process's own count again */
    trainer_free(&tr);
    return st;
}
