/* Unit density: dead/ultralow/rare/dense counts and the one log10-density histogram (eval,
 * analyze and the report all use these bins). */
#include "monosem/units.h"

#include <math.h>
#include <string.h>

void ms_density_stats(ms_density *out, const double *fires, int64_t n, double n_tokens, double ultralow,
                      double rare)
{
    memset(out, 0, sizeof *out);
    out->n_units = n;
    out->min_detectable = n_tokens > 0 ? 1.0 / n_tokens : NAN;
    for (int64_t j = 0; j < n; j++) {
        double dens = n_tokens > 0 ? fires[j] / n_tokens : 0.0;
        if (fires[j] <= 0) {
            out->dead++;
            continue;
        }
        out->ultralow += dens < ultralow;
        out->rare += dens < rare;
        out->dense += dens > 0.01;
        int b = (int)floor((log10(dens) - MS_DENSITY_HIST_LO) / MS_DENSITY_HIST_STEP);
        if (b < 0) b = 0;
        if (b >= MS_DENSITY_HIST_BINS) b = MS_DENSITY_HIST_BINS - 1; /* density 1 lands in the last */
        out->hist[b]++;
    }
}

void ms_density_edges(float *edges)
{
    for (int b = 0; b <= MS_DENSITY_HIST_BINS; b++) edges[b] = (float)(MS_DENSITY_HIST_LO + MS_DENSITY_HIST_STEP * b);
}
