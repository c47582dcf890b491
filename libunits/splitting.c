/* Feature splitting: decoder-direction cosine best matches across dictionaries and the
 * families of split features they form. */
#include "monosem/units.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DECODER_TILE_ROWS 256 /* rows of a per cosine tile: memory 256·db floats */

/* Unit-norm copy of the rows of W (n,d); zero rows stay zero. */
static void normalise_rows(float *out, const float *W, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t k = 0; k < d; k++) s += (double)W[i * d + k] * W[i * d + k];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int64_t k = 0; k < d; k++) out[i * d + k] = W[i * d + k] * inv;
    }
}

static bool row_is_zero(const float *w, int64_t d)
{
    for (int64_t k = 0; k < d; k++)
        if (w[k] != 0.0f) return false;
    return true;
}

ms_status ms_decoder_best(float *row_max, int64_t *row_arg, float *col_max, int64_t *col_arg, const float *Wa,
                          const float *Wb, int64_t da, int64_t db, int64_t d, ms_err *err)
{
    int64_t tile = da < DECODER_TILE_ROWS ? da : DECODER_TILE_ROWS;
    float *na = malloc((size_t)da * d * sizeof *na), *nbm = malloc((size_t)db * d * sizeof *nbm);
    float *cos = malloc((size_t)tile * db * sizeof *cos);
    uint8_t *zb = malloc((size_t)db);
    if (!na || !nbm || !cos || !zb) {
        free(na), free(nbm), free(cos), free(zb);
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory for decoder cosines of %lld x %lld features",
                          (long long)da, (long long)db);
    }
    normalise_rows(na, Wa, da, d);
    normalise_rows(nbm, Wb, db, d);
    for (int64_t j = 0; j < db; j++) col_max[j] = -INFINITY, col_arg[j] = -1, zb[j] = row_is_zero(nbm + j * d, d);
    for (int64_t i0 = 0; i0 < da; i0 += tile) {
        int64_t m = da - i0 < tile ? da - i0 : tile;
        /* cos (m,db) = na[i0:i0+m] (m,d) · nbᵀ (d,db) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)db, (int)d, 1.0f, na + i0 * d, (int)d, nbm,
                    (int)d, 0.0f, cos, (int)db);
        for (int64_t r = 0; r < m; r++) {
            int64_t i = i0 + r;
            row_max[i] = -INFINITY, row_arg[i] = -1;
            if (row_is_zero(na + i * d, d)) continue;
            for (int64_t j = 0; j < db; j++) {
                if (zb[j]) continue;
                float v = cos[r * db + j];
                if (v > row_max[i]) row_max[i] = v, row_arg[i] = j;
                if (v > col_max[j]) col_max[j] = v, col_arg[j] = i;
            }
        }
    }
    free(na), free(nbm), free(cos), free(zb);
    return MS_OK;
}

int64_t ms_families(int64_t *member, int64_t *size, const float *col_max, const int64_t *col_arg, int64_t db,
                    int64_t da, float min)
{
    for (int64_t i = 0; i < da; i++) size[i] = 0;
    for (int64_t j = 0; j < db; j++) {
        bool in = col_arg[j] >= 0 && col_arg[j] < da && col_max[j] >= min;
        member[j] = in ? col_arg[j] : -1;
        if (in) size[col_arg[j]]++;
    }
    int64_t n = 0;
    for (int64_t i = 0; i < da; i++) n += size[i] > 0;
    return n;
}

void ms_family_stats_of(ms_family_stats *out, const int64_t *size, int64_t da, int64_t db)
{
    int64_t n = 0, in = 0, big = 0, largest = 0;
    for (int64_t i = 0; i < da; i++) {
        n += size[i] > 0;
        in += size[i];
        big += size[i] >= 2;
        largest = size[i] > largest ? size[i] : largest;
    }
    out->n = n;
    out->n_split = big;
    out->members = in;
    out->largest = largest;
    out->b_unassigned = db - in;
    out->mean_size = n ? (double)in / (double)n : 0.0;
}
