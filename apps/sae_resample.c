/* Dead-feature resampling for SAE training (the paper's recipe), data parallel and bounded
 * by one batch of inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sae_train.h"

/* The features to resample: never fired in the window (the paper's rule), or, with
 * sae.resample.max_density > 0, fired on fewer than that share of the window's rows. */
static int64_t resample_mask(const ms_sae *sae, const app_train_state *t, const ms_config *cfg, uint8_t *mask)
{
    const int64_t m = sae->hp.d_sae, rows = t->win_fired[m];
    const double maxd = cfg->sae.resample.max_density;
    if (!(maxd > 0.0) || rows <= 0) return ms_sae_dead_mask(sae, cfg->sae.resample.window * cfg->sae.batch, mask);
    int64_t n = 0;
    for (int64_t j = 0; j < m; j++) {
        mask[j] = (double)t->win_fired[j] < maxd * (double)rows;
        n += mask[j];
    }
    return n;
}

bool app_train_resample_window_start(const ms_config *cfg, int64_t step)
{
    const int64_t *at = cfg->sae.resample.at;
    for (int i = 0; i < cfg->sae.resample.n_at; i++) {
        int64_t start = at[i] - cfg->sae.resample.window, prev = i > 0 ? at[i - 1] : 0;
        if (step == (start > prev ? start : prev)) return true;
    }
    return false;
}

int64_t app_train_resampled_between(const app_train_state *t, int64_t from, int64_t to)
{
    int64_t n = 0;
    for (int64_t i = 0; i < t->n_hist; i++)
        if (t->history[2 * i] >= from && t->history[2 * i] < to) n += t->history[2 * i + 1];
    return n;
}

/* Resampling at this step, in memory bounded by one batch of inputs: the ranks
 * stream the `inputs` sample (same rows for any rank count) in batches of sae.batch, each
 * computing the loss of its slice; one allreduce gives every rank all losses; every rank then
 * draws, with the shared rng, one input per dead neuron with probability ∝ loss²; a second
 * pass over the same sample collects those rows (one allreduce), and ms_sae_resample assigns
 * them (uniformly among the drawn rows, so each neuron's input stays distributed ∝ loss²). */
ms_status app_sae_resample(ms_sae *sae, app_train_state *t, ms_actfile *f, const ms_config *cfg,
                          const ms_comm *comm, int64_t *n_done, ms_err *err)
{
    const int64_t d = sae->hp.d_in, m = sae->hp.d_sae, N = ms_actfile_meta(f)->n_rows;
    const int64_t c = cfg->sae.batch;
    int64_t n = cfg->sae.resample.inputs < N ? cfg->sae.resample.inputs : N;
    n = n / c * c;
    if (n < c) n = c < N ? c : N;
    const uint64_t seed = (uint64_t)cfg->run.seed ^ (0x7e5a3b1eull * (uint64_t)(sae->step + 1));
    ms_actstream_opts o = {.batch = c,
                           .window_rows = cfg->sae.shuffle_buffer,
                           .shuffle = true,
                           .skip_nonfinite = cfg->sae.skip_nonfinite,
                           .repeat = true,
                           .seed = seed,
                           .limit = n};
    int64_t lo, hi; /* the trainer's slices (reproducible: whole micro-shards, one per loss call) */
    o.granule = app_sae_slice(cfg, comm, &lo, &hi);
    uint8_t *dead = malloc((size_t)m);
    int64_t n_dead = dead ? resample_mask(sae, t, cfg, dead) : 0;
    float *x = malloc((size_t)((hi - lo) * d + 1) * sizeof *x);
    float *loss = calloc((size_t)n, sizeof *loss);
    float *sel = calloc((size_t)(n_dead * d + 1), sizeof *sel);
    float *ones = malloc((size_t)(n_dead + 1) * sizeof *ones);
    int64_t *pick = malloc((size_t)(n_dead + 1) * sizeof *pick);
    double *cum = malloc((size_t)n * sizeof *cum);
    ms_actstream *s = NULL;
    ms_status st = (!dead || !x || !loss || !sel || !ones || !pick || !cum)
                       ? ms_err_set(err, MS_ERR_NOMEM, "resampling: out of memory")
                       : MS_OK;
    /* pass 1: losses of this rank's slices */
    if (!st) st = ms_actstream_open(&s, f, &o, comm->rank, comm->size, NULL, err);
    for (int64_t k = 0; !st && k < n / c; k++) {
        st = ms_actstream_next(s, x, err);
        if (!st) ms_sae_loss_per_input(sae, x, hi - lo, loss + k * c + lo);
    }
    ms_actstream_close(s);
    s = NULL;
    st = ms_comm_agree(comm, st, err);
    if (!st) st = ms_comm_allreduce_f32(comm, loss, (size_t)n, err);
    if (st || n_dead == 0) goto out;
    /* the draw, identical on every rank */
    double tot = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double l = loss[i];
        tot += isfinite(l) ? l * l : 0.0;
        cum[i] = tot;
    }
    for (int64_t j = 0; j < n_dead; j++) {
        double u = ms_rng_uniform(&t->rng) * (tot > 0.0 && isfinite(tot) ? tot : (double)n);
        int64_t a = 0, b = n - 1;
        if (tot > 0.0 && isfinite(tot)) {
            while (a < b) {
                int64_t mid = a + (b - a) / 2;
                if (cum[mid] > u) b = mid;
                else a = mid + 1;
            }
        } else {
            a = (int64_t)u < n ? (int64_t)u : n - 1;
        }
        pick[j] = a;
        ones[j] = 1.0f;
    }
    /* pass 2: the owner of each drawn row copies it; one allreduce shares them */
    st = ms_actstream_open(&s, f, &o, comm->rank, comm->size, NULL, err);
    for (int64_t k = 0; !st && k < n / c; k++) {
        st = ms_actstream_next(s, x, err);
        for (int64_t j = 0; !st && j < n_dead; j++) {
            int64_t i = pick[j] - k * c - lo;
            if (i >= 0 && i < hi - lo)
                memcpy(sel + j * d, x + i * d, (size_t)d * sizeof(float));
        }
    }
    ms_actstream_close(s);
    st = ms_comm_agree(comm, st, err);
    if (!st) st = ms_comm_allreduce_f32(comm, sel, (size_t)(n_dead * d), err);
    if (!st) {
        *n_done = ms_sae_resample(sae, dead, sel, ones, n_dead, &t->rng);
        if (*n_done < 0) st = ms_err_set(err, MS_ERR_NOMEM, "resampling: out of memory");
    }
    if (!st)
        for (int64_t j = 0; j < m; j++)
            if (dead[j]) t->fire_count[j] = 0, t->fire_start[j] = t->tokens, t->fire_prev[m + j] = 0;
out:
    if (!st) st = app_train_state_history_add(t, sae->step, *n_done, err);
    free(dead);
    free(x);
    free(loss);
    free(sel);
    free(ones);
    free(pick);
    free(cum);
    return st;
}
