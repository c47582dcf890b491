/* Universality: the summary of a best-match vector (median, mean, histogram of each unit's best
 * correlation with the other set); its median over model A's units is the paper's number. */
#include "monosem/units.h"

#include <math.h>

void ms_best_summarize(ms_best_summary *out, const float *best, int64_t n, float *scratch)
{
    double s = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(best[i])) s += best[i], k++;
    out->median = ms_median_f32(best, n, scratch);
    out->mean = k ? s / (double)k : NAN;
    out->n = k;
    out->n_undefined = n - k;
    out->lo = -1.0;
    out->hi = 1.0;
    ms_histogram_f32(out->hist, MS_BEST_BINS, out->lo, out->hi, best, n);
}
