/* The SAE trainer's final outputs: a finished run's own numbers on rerun, sae.h5 and the
 * SAELens directory, the run record's facts and times. */
#include "sae_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A rerun of a finished run trains nothing: report the run's own last numbers (rank 0's
 * metrics.jsonl, to every rank), not the zeros of a loop that did not run. COLLECTIVE. */
ms_status app_trainer_rerun_numbers(app_trainer *tr, ms_err *err)
{
    app_train_result *res = tr->res;
    const long long steps = (long long)tr->steps;
    double v[8] = {NAN, NAN, NAN, NAN, NAN, 0, 0, 0};
    if (tr->comm->rank == 0 && app_train_metrics_at(tr->metrics_path, tr->steps, res)) {
        double got[8] = {res->loss, res->mse, res->fvu, res->l0, res->l1, (double)res->dead,
                         (double)res->ultralow, 1};
        memcpy(v, got, sizeof v);
    }
    ms_status st = ms_comm_bcast(tr->comm, v, sizeof v, 0, err);
    if (st) return st;
    res->loss = v[0], res->mse = v[1], res->fvu = v[2], res->l0 = v[3], res->l1 = v[4];
    res->dead = (int64_t)v[5], res->ultralow = (int64_t)v[6];
    if (v[7] != 0)
        ms_log("train: already complete at step %lld (nothing to train): loss %.6g, MSE %.6g, FVU %.4f, "
               "L0 %.2f, dead %lld, ultralow %lld; remove %s to train again",
               steps, res->loss, res->mse, res->fvu, res->l0, (long long)res->dead, (long long)res->ultralow,
               tr->ckpt_path);
    else
        ms_log("train: already complete at step %lld (nothing to train; %s has no line for that "
               "step, so no final numbers); remove %s to train again",
               steps, tr->metrics_path, tr->ckpt_path);
    return MS_OK;
}

/* Final outputs, rank 0: sae.h5 (weights, densities, resampling history) and the SAELens
 * directory. Local; the caller agrees. */
ms_status app_trainer_write_outputs(app_trainer *tr, ms_err *err)
{
    const ms_config *cfg = tr->cfg;
    const ms_sae *sae = &tr->sae;
    const int64_t d = tr->d, ds = sae->hp.d_sae;
    float *buf = malloc(sae->layout.n_params * sizeof *buf);
    ms_status st = buf ? MS_OK : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (!st) {
        float *We = buf, *be = We + d * ds, *Wd = be + ds, *bd = Wd + ds * d, *th = bd + d;
        ms_sae_export(sae, We, be, Wd, bd, th);
        char steps_s[32], dsae_s[32], scale_s[32];
        snprintf(steps_s, sizeof steps_s, "%lld", (long long)sae->step);
        snprintf(dsae_s, sizeof dsae_s, "%lld", (long long)ds);
        snprintf(scale_s, sizeof scale_s, "%.9g", (double)sae->input_scale);
        ms_safetensors_item items[] = {
            {"W_enc", MS_SAFETENSORS_F32, 2, {d, ds}, We},     {"b_enc", MS_SAFETENSORS_F32, 1, {ds}, be},
            {"W_dec", MS_SAFETENSORS_F32, 2, {ds, d}, Wd},     {"b_dec", MS_SAFETENSORS_F32, 1, {d}, bd},
            {"threshold", MS_SAFETENSORS_F32, 1, {ds}, th},    {"log10_density", MS_SAFETENSORS_F32, 1, {ds}, tr->log10d},
            {"resample_history", MS_SAFETENSORS_I64, 2, {tr->t.n_hist, 2}, tr->t.history ? tr->t.history : (int64_t *)buf},
        };
        const char *attrs[] = {"arch", ms_enum_name("sae.arch", sae->hp.arch), "hook", tr->meta.hook,
                               "activations", cfg->sae.activations, "config_hash", cfg->hash,
                               "steps", steps_s, "d_sae", dsae_s, "input_scale", scale_s,
                               "version", MS_VERSION_STRING};
        st = ms_h5_write_tensors(tr->h5_path, items, 7, attrs, 8, err);
    }
    free(buf);
    if (st) return st;
    char src[192];
    if (tr->res->final_rows > 0)
        snprintf(src, sizeof src, "final weights on the first %lld rows of the activation file (sae.final_density_rows)",
                 (long long)tr->res->final_rows);
    else
        snprintf(src, sizeof src, "training window of %lld tokens (sae.dead_tokens)", (long long)cfg->sae.dead_tokens);
    /* monosem models have no public name: the run's name identifies them */
    ms_saelens_meta lm = {.hook_name = tr->meta.hook,
                          .model_name = cfg->run.name && *cfg->run.name ? cfg->run.name : "monosem",
                          .dataset_path = cfg->sae.activations,
                          .context_size = tr->meta.context,
                          .l1_coefficient = cfg->sae.l1_coeff,
                          .training_tokens = tr->t.tokens,
                          .density_source = src};
    return ms_saelens_save(sae, tr->lens_dir, tr->log10d, &lm, err);
}

/* The run record's facts and times. Local (rank 0's record is the one written). */
void app_trainer_record(const app_trainer *tr, ms_runrec *rec)
{
    const app_train_result *res = tr->res;
    const ms_config *cfg = tr->cfg;
    ms_runrec_time(rec, "read", res->t_read);
    ms_runrec_time(rec, "forward_backward", res->t_compute);
    ms_runrec_time(rec, "allreduce", res->t_allreduce);
    ms_runrec_time(rec, "step", res->t_step);
    ms_runrec_fact(rec, "sae.final_loss", "%.9g", res->loss);
    ms_runrec_fact(rec, "sae.final_mse", "%.9g", res->mse);
    ms_runrec_fact(rec, "sae.final_fvu", "%.9g", res->fvu);
    ms_runrec_fact(rec, "sae.final_l0", "%.6g", res->l0);
    ms_runrec_fact(rec, "sae.dead", "%lld (training-time estimate: not fired in the last %lld "
                   "tokens)", (long long)res->dead, (long long)cfg->sae.dead_tokens);
    ms_runrec_fact(rec, "sae.ultralow", "%lld (training-time estimate over a %lld-token "
                   "window)", (long long)res->ultralow, (long long)cfg->sae.dead_tokens);
    ms_runrec_fact(rec, "sae.rare", "%lld (alive, density < %g over the same window)", (long long)res->rare,
                   cfg->sae.rare_density);
    if (res->final_rows > 0) {
        ms_runrec_fact(rec, "sae.final_rows", "%lld (the activation file's first rows, final weights)",
                       (long long)res->final_rows);
        ms_runrec_fact(rec, "sae.final_dead", "%lld (never fired on those rows)", (long long)res->final_dead);
        ms_runrec_fact(rec, "sae.final_ultralow", "%lld (alive, density < %g)", (long long)res->final_ultralow,
                       cfg->sae.ultralow_density);
        ms_runrec_fact(rec, "sae.final_rare", "%lld (alive, density < %g)", (long long)res->final_rare,
                       cfg->sae.rare_density);
    }
    if (tr->was_complete)
        ms_runrec_fact(rec, "sae.already_complete", "true (rerun at step %lld: numbers from metrics.jsonl)",
                       (long long)tr->steps);
    else
        ms_runrec_fact(rec, "sae.tokens_per_s", "%.1f", res->tokens_per_s);
    ms_runrec_fact(rec, "sae.skipped_rows", "%lld", (long long)res->skipped_rows);
    ms_runrec_fact(rec, "sae.resumed_from", "%lld", (long long)res->resumed_from);
    ms_runrec_fact(rec, "sae.invariant.params_identical_across_ranks",
                   "%s (checked at %lld checkpoints over %d ranks)",
                   tr->comm->size > 1 ? "yes" : "trivially (1 rank)", (long long)tr->n_checked, tr->comm->size);
    ms_runrec_fact(rec, "sae.out", "%s", tr->h5_path);
    ms_runrec_fact(rec, "sae.saelens", "%s", tr->lens_dir);
}
