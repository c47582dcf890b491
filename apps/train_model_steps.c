/* train-model's step loop: the seeded data order, one data-parallel step (forward, backward,
 * the allreduce, clip, AdamW), its log line, held-out evaluations and checkpoints. */
#include "train_model.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ data order */

void train_model_order_init(data_order *o, int64_t n, uint64_t seed)
{
    o->n = n;
    o->seed = seed;
    int bits = 2;
    while (bits < 62 && ((int64_t)1 << bits) < n) bits++;
    o->half = (bits + 1) / 2;
}

static uint64_t feistel(const data_order *o, uint64_t x, uint64_t key)
{
    const uint64_t mask = ((uint64_t)1 << o->half) - 1;
    uint64_t l = x >> o->half, r = x & mask;
    for (uint64_t round = 0; round < 4; round++) {
        uint64_t f = ms_rng_hash(r ^ ms_rng_hash(key + round)) & mask;
        uint64_t t = l ^ f;
        l = r;
        r = t;
    }
    return (l << o->half) | r;
}

static int64_t data_context(const data_order *o, int64_t g)
{
    uint64_t key = ms_rng_hash(o->seed ^ ms_rng_hash((uint64_t)(g / o->n) + 0x7472616eULL));
    uint64_t x = (uint64_t)(g % o->n);
    do x = feistel(o, x, key);
    while (x >= (uint64_t)o->n);
    return (int64_t)x;
}

/* ------------------------------------------------------------------ evaluation, replicas */

ms_status train_model_evaluate(trainer *t, double *loss, double *uni, int64_t *n_tok, ms_err *err)
{
    const ms_config *c = t->cfg;
    int64_t n_h = ms_tokset_n_contexts(&t->heldout, t->T, true);
    int64_t n_eval = c->train_model.eval_batches * t->Bg;
    if (n_eval > n_h) n_eval = n_h;
    int64_t lo, hi;
    ms_shard_range(n_eval, t->comm->rank, t->comm->size, &lo, &hi);
    double acc[3] = {0, 0, 0};
    ms_status st = MS_OK;
    for (int64_t i0 = lo; i0 < hi && st == MS_OK; i0 += t->Bcap) {
        int b = (int)(hi - i0 < t->Bcap ? hi - i0 : t->Bcap);
        for (int k = 0; k < b && st == MS_OK; k++) {
            int64_t ctx = (i0 + k) * n_h / n_eval; /* spread over the whole split */
            st = ms_tokset_context(&t->heldout, ctx, t->T, true, t->win, err);
            memcpy(t->x + (size_t)k * t->T, t->win, (size_t)t->T * sizeof(int32_t));
            memcpy(t->y + (size_t)k * t->T, t->win + 1, (size_t)t->T * sizeof(int32_t));
        }
        ms_forward_opts o = {.targets = t->y};
        if (st == MS_OK) st = ms_model_forward(&t->m, &t->acts, t->x, b, t->T, &o, err);
        if (st == MS_OK) {
            acc[0] += t->acts.mean_loss * (double)t->acts.n_loss;
            acc[2] += (double)t->acts.n_loss;
            for (int64_t k = 0; k < (int64_t)b * t->T; k++) acc[1] -= t->unigram[t->y[k]];
        }
    }
    st = ms_comm_agree(t->comm, st, err);
    if (st == MS_OK) st = ms_comm_allreduce_f64(t->comm, acc, 3, err);
    if (st != MS_OK) return st;
    *loss = acc[2] > 0 ? acc[0] / acc[2] : NAN;
    *uni = acc[2] > 0 ? acc[1] / acc[2] : NAN;
    *n_tok = (int64_t)acc[2];
    return MS_OK;
}

/* Every rank must hold the same parameters (identical updates from identical reduced
 * gradients): compares a hash of the slab over ranks. COLLECTIVE. */
static ms_status check_replicas(const trainer *t, int64_t step, ms_err *err)
{
    uint64_t h = ms_fnv1a64(t->m.params, t->m.n_params * sizeof(float), 0);
    double parts[2] = {(double)(h >> 32), (double)(h & 0xffffffffu)};
    for (int k = 0; k < 2; k++) {
        double mn, avg, mx;
        ms_comm_minavgmax(t->comm, parts[k], &mn, &avg, &mx);
        if (mn != mx)
            return ms_err_set(err, MS_ERR_STATE, "train-model: parameters differ between ranks at step %" PRId64, step);
    }
    return MS_OK;
}

/* ------------------------------------------------------------------ the steps */

/* Step t->step: this rank's rows, forward, backward, then the one collective of a step
 * (gradients, loss and error flag together), the clip and AdamW. COLLECTIVE. */
static ms_status train_step(trainer *t, double *loss_out, double *lr_out, double *norm_out, ms_err *err)
{
    const ms_config *cfg = t->cfg;
    const ms_comm *comm = t->comm;
    const size_t np = t->m.n_params;
    const int64_t steps = cfg->train_model.steps;
    const int64_t tok_per_step = (int64_t)t->Bg * t->T;
    const float scale = 1.0f / (float)tok_per_step;
    const int bl = (int)(t->hi - t->lo);
    const int64_t step = t->step;
    double t0 = ms_time_now();
    ms_status local = MS_OK;
    /* this rank's rows of global step `step` */
    for (int k = 0; k < bl && local == MS_OK; k++) {
        int64_t g = step * t->Bg + t->lo + k;
        int64_t ctx = data_context(&t->order, g);
        local = ms_tokset_context(&t->train, ctx, t->T, true, t->win, err);
        memcpy(t->x + (size_t)k * t->T, t->win, (size_t)t->T * sizeof(int32_t));
        memcpy(t->y + (size_t)k * t->T, t->win + 1, (size_t)t->T * sizeof(int32_t));
    }
    memset(t->grads, 0, (np + 2) * sizeof(float));
    ms_forward_opts o = {.targets = t->y};
    if (local == MS_OK && bl > 0) local = ms_model_forward(&t->m, &t->acts, t->x, bl, t->T, &o, err);
    if (local == MS_OK && bl > 0)
        local = ms_model_backward(&t->m, &t->acts, &t->bb, &t->gv, t->x, t->y, scale, err);
    if (local == MS_OK && bl > 0) t->grads[np] = (float)(t->acts.mean_loss * (double)t->acts.n_loss);
    if (local != MS_OK) t->grads[np + 1] = 1.0f;
    double t1 = ms_time_now();
    ms_status st = ms_comm_allreduce_f32(comm, t->grads, np + 2, err);
    double t2 = ms_time_now();
    if (st != MS_OK) return st;
    if (t->grads[np + 1] != 0.0f) {
        st = ms_comm_agree(comm, local != MS_OK ? local : MS_OK, err);
        if (st == MS_OK) st = ms_err_set(err, MS_ERR_STATE, "train-model: a rank failed at step %" PRId64, step);
        return st;
    }
    double loss = (double)t->grads[np] / (double)tok_per_step;
    if (!isfinite(loss))
        return ms_err_set(err, MS_ERR_NUMERIC, "train-model: loss is %g at step %" PRId64 " (lower train_model.lr?)",
                          loss, step);
    double norm = ms_train_grad_norm(t->grads, np);
    if (cfg->train_model.grad_clip > 0 && norm > cfg->train_model.grad_clip) {
        float f = (float)(cfg->train_model.grad_clip / norm);
        for (size_t i = 0; i < np; i++) t->grads[i] *= f;
    }
    double lr = ms_train_lr_schedule(step, cfg->train_model.warmup_steps, steps, cfg->train_model.lr,
                               cfg->train_model.min_lr_frac);
    for (int i = 0; i < t->m.n_tensors; i++) {
        const ms_model_tensor *tt = &t->m.tensors[i];
        float wd = ms_model_tensor_decays(tt) ? (float)cfg->train_model.weight_decay : 0.0f;
        ms_train_adamw_update(t->m.params + tt->offset, t->grads + tt->offset, t->adam_m + tt->offset,
                        t->adam_v + tt->offset, tt->numel, (float)lr, (float)cfg->train_model.beta1,
                        (float)cfg->train_model.beta2, 1e-8f, wd, step + 1);
    }
    t->step++;
    t->steps_run++;
    t->last_loss = loss;
    t->t_step += (t1 - t0) + (ms_time_now() - t2);
    t->t_comm += t2 - t1;
    *loss_out = loss;
    *lr_out = lr;
    *norm_out = norm;
    return MS_OK;
}

/* Checkpoint at t->step (rank 0 writes, after the replicas are compared). COLLECTIVE. */
static ms_status step_checkpoint(trainer *t, ms_err *err)
{
    const ms_comm *comm = t->comm;
    const int64_t step = t->step;
    ms_train_ckpt_info info = {.step = step, .data_pos = step * t->Bg, .n_ranks = comm->size};
    memcpy(info.fingerprint, t->fp, sizeof t->fp);
    info.job_keys = t->job_keys;
    ms_status st = check_replicas(t, step, err);
    if (st != MS_OK) return st;
    ms_status cs = MS_OK;
    if (comm->rank == 0) cs = ms_train_checkpoint_save(t->ckpt_path, &t->m, t->adam_m, t->adam_v, &info, err);
    st = ms_comm_agree(comm, cs, err);
    if (st != MS_OK) return st;
    if (ms_testhook("checkpoint", step)) /* test hook: fail right after this checkpoint */
        return ms_err_set(err, MS_ERR_STATE, "train-model: stopped after the checkpoint at step %" PRId64
                          " (test hook)", step);
    return MS_OK;
}

/* After a step: the train log line, a held-out evaluation and a checkpoint when due (their
 * time kept out of the window's tokens/s). COLLECTIVE. */
static ms_status step_record(trainer *t, double loss, double lr, double norm, bool last, bool ckpt,
                             double *t_window, int64_t *window_steps, ms_err *err)
{
    const ms_config *cfg = t->cfg;
    const ms_comm *comm = t->comm;
    const int64_t step = t->step;
    const int64_t tok_per_step = (int64_t)t->Bg * t->T;
    if (comm->rank == 0 && (step % cfg->train_model.log_every == 0 || last)) {
        double now = ms_time_now();
        double tps = (double)(*window_steps * tok_per_step) / (now - *t_window);
        fprintf(t->log, "{\"step\":%" PRId64 ",\"split\":\"train\",\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.5g,"
                        "\"tokens\":%" PRId64 ",\"tokens_per_s\":%.1f}\n",
                step, loss, lr, norm, step * tok_per_step, tps);
        fflush(t->log);
        *t_window = now;
        *window_steps = 0;
    }
    if ((cfg->train_model.eval_every > 0 && step % cfg->train_model.eval_every == 0) || last) {
        double te = ms_time_now();
        int64_t n_tok = 0;
        ms_status st = train_model_evaluate(t, &t->last_eval, &t->last_uni, &n_tok, err);
        if (st != MS_OK) return st;
        if (comm->rank == 0 && n_tok > 0) {
            fprintf(t->log, "{\"step\":%" PRId64 ",\"split\":\"heldout\",\"loss\":%.6f,\"unigram_loss\":%.6f,"
                            "\"tokens\":%" PRId64 "}\n", step, t->last_eval, t->last_uni, n_tok);
            fflush(t->log);
            ms_log("train-model: step %" PRId64 " train %.4f  heldout %.4f nats/token (unigram %.4f)", step,
                   loss, t->last_eval, t->last_uni);
        }
        t->t_eval += ms_time_now() - te;
        *t_window += ms_time_now() - te; /* keep eval out of the tokens/s */
    }
    if ((cfg->train_model.checkpoint_every > 0 && step % cfg->train_model.checkpoint_every == 0) || ckpt) {
        double tc = ms_time_now();
        ms_status st = step_checkpoint(t, err);
        if (st != MS_OK) return st;
        t->t_ckpt += ms_time_now() - tc;
        *t_window += ms_time_now() - tc;
    }
    return MS_OK;
}

ms_status train_model_loop(trainer *t, ms_err *err)
{
    const ms_config *cfg = t->cfg;
    const int64_t steps = cfg->train_model.steps;
    ms_progress prog;
    ms_progress_init(&prog, "train-model", "steps", (double)steps, cfg->run.log_every_s);
    prog.done = prog.done0 = (double)t->step;
    double t_window = ms_time_now();
    int64_t window_steps = 0;
    while (t->step < steps) {
        double loss = 0, lr = 0, norm = 0;
        ms_status st = train_step(t, &loss, &lr, &norm, err);
        if (st != MS_OK) return st;
        window_steps++;
        bool last = t->step == steps;
        const int stop_sig = last ? 0 : ms_comm_signal_agree(t->comm, t->step); /* any rank signalled */
        st = step_record(t, loss, lr, norm, last, last || stop_sig, &t_window, &window_steps, err);
        if (st != MS_OK) return st;
        ms_progress_update(&prog, (double)t->step);
        if (stop_sig)
            return ms_err_set(err, MS_INTERRUPTED,
                              "train-model: %s: stopped at step %" PRId64 " of %" PRId64 " after writing %s; "
                              "rerun the same command to resume", ms_signal_name(stop_sig), t->step, steps,
                              t->ckpt_path);
    }
    ms_progress_finish(&prog);
    return MS_OK;
}
