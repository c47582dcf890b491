/* Training-time metrics of an SAE run: firing windows, densities, dead/ultralow counts, and
 * the metrics.jsonl log a resumed run truncates and a finished rerun reads back. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sae_train.h"

/* Training-time estimates (not the held-out numbers `monosem eval` measures). Feature j's
 * firing count runs over a window of `window` tokens (sae.dead_tokens) from fire_start[j]; when
 * the window is full it becomes fire_prev and a new one starts (resampling restarts it). The
 * density is that of the last complete window, or of the current partial one before the first
 * completes. dead = not fired in the last `window` tokens (since_fired); ultralow = alive with
 * density < ultralow. */
void app_train_window_roll(app_train_state *t, int64_t d_sae, int64_t window)
{
    for (int64_t j = 0; j < d_sae; j++)
        if (t->tokens - t->fire_start[j] >= window) {
            t->fire_prev[j] = t->fire_count[j];
            t->fire_prev[d_sae + j] = t->tokens - t->fire_start[j];
            t->fire_count[j] = 0;
            t->fire_start[j] = t->tokens;
        }
}

void app_train_densities(const ms_sae *sae, const app_train_state *t, double ultralow, double rare,
                         int64_t dead_tokens, float *log10_density, int64_t *n_dead, int64_t *n_ultralow,
                         int64_t *n_rare)
{
    int64_t dead = 0, low = 0, nrare = 0;
    const int64_t m = sae->hp.d_sae;
    for (int64_t j = 0; j < m; j++) {
        int64_t span = t->tokens - t->fire_start[j], cnt = t->fire_count[j];
        if (t->fire_prev[m + j] > 0) span = t->fire_prev[m + j], cnt = t->fire_prev[j];
        double dens = span > 0 ? (double)cnt / (double)span : 0.0;
        bool is_dead = sae->since_fired[j] >= dead_tokens;
        dead += is_dead;
        low += !is_dead && dens < ultralow;
        nrare += !is_dead && dens < rare;
        if (log10_density) log10_density[j] = (float)log10(dens + 1e-10);
    }
    *n_dead = dead;
    *n_ultralow = low;
    *n_rare = nrare;
}

/* Keeps the lines of metrics.jsonl with step <= last_step (a resumed run rewrites the rest). */
void app_train_metrics_truncate(const char *path, int64_t last_step)
{
    char *text = NULL;
    size_t len = 0;
    if (ms_file_read_all(path, &text, &len, NULL) != MS_OK) return;
    size_t keep = 0;
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl) break; /* a partial last line (killed mid-write) is dropped */
        long long step = -1;
        if (sscanf(line, "{\"step\": %lld", &step) != 1 || step > last_step) break;
        keep = (size_t)(nl + 1 - text);
        line = nl + 1;
    }
    ms_file_write_atomic(path, text, keep, NULL);
    free(text);
}

/* The metrics line of `step` (the last one of a finished run), for a rerun that has nothing to
 * train: its numbers are the run's, not zeros. false if metrics.jsonl lacks that line. */
bool app_train_metrics_at(const char *path, int64_t step, app_train_result *res)
{
    char *text = NULL;
    size_t len = 0;
    if (ms_file_read_all(path, &text, &len, NULL) != MS_OK) return false;
    bool found = false;
    for (char *line = text; line < text + len && !found;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl) break;
        *nl = '\0';
        long long st = -1, tok, dead, low, rare = -1;
        double v[5];
        int nf = sscanf(line, "{\"step\": %lld, \"tokens\": %lld, \"loss\": %lg, \"mse\": %lg, \"fvu\": %lg, "
                              "\"l0\": %lg, \"l1\": %lg, \"dead\": %lld, \"ultralow\": %lld, \"rare\": %lld",
                        &st, &tok, &v[0], &v[1], &v[2], &v[3], &v[4], &dead, &low, &rare);
        if (nf >= 9 && st == step) { /* a run from before "rare" existed reads -1 (unknown) */
            res->loss = v[0], res->mse = v[1], res->fvu = v[2], res->l0 = v[3], res->l1 = v[4];
            res->dead = dead, res->ultralow = low, res->rare = nf == 10 ? rare : -1;
            found = true;
        }
        line = nl + 1;
    }
    free(text);
    return found;
}
