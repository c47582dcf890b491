/* Order statistics of a vector of per-unit values (best matches): the median and the histogram
 * of its finite entries. */
#include "monosem/units.h"

#include <math.h>
#include <stdlib.h>

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double ms_median_f32(const float *x, int64_t n, float *scratch)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(x[i])) scratch[m++] = x[i];
    if (m == 0) return NAN;
    qsort(scratch, (size_t)m, sizeof *scratch, cmp_float);
    return m % 2 ? scratch[m / 2] : 0.5 * ((double)scratch[m / 2 - 1] + scratch[m / 2]);
}

int64_t ms_histogram_f32(int64_t *counts, int nbins, double lo, double hi, const float *x, int64_t n)
{
    int64_t used = 0;
    for (int b = 0; b < nbins; b++) counts[b] = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) continue;
        int b = (int)floor(((double)x[i] - lo) / (hi - lo) * nbins);
        b = b < 0 ? 0 : b >= nbins ? nbins - 1 : b;
        counts[b]++, used++;
    }
    return used;
}
