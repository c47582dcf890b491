/* Activation correlation between two sets of units over the same rows: the sums that make
 * Pearson's r, accumulated by GEMM on row blocks and held in one slab so ranks reduce it once. */
#include "monosem/units.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t ms_corr_block_cols(int64_t da, int64_t db, size_t bytes)
{
    /* per column of b: Σab (da doubles), the GEMM tile (da floats), Σb and Σb² */
    size_t per = (size_t)da * (sizeof(double) + sizeof(float)) + 2 * sizeof(double);
    int64_t nb = (int64_t)(bytes / per);
    if (nb < 1) nb = 1;
    return nb < db ? nb : db;
}

ms_status ms_corr_init(ms_corr *c, int64_t da, int64_t db, int64_t b0, int64_t b1, ms_err *err)
{
    memset(c, 0, sizeof *c);
    if (da < 1 || db < 1 || b0 < 0 || b1 <= b0 || b1 > db)
        return ms_err_set(err, MS_ERR_USAGE, "ms_corr_init: bad shape (da %lld, db %lld, columns %lld..%lld)",
                          (long long)da, (long long)db, (long long)b0, (long long)b1);
    int64_t nb = b1 - b0;
    c->da = da, c->db = db, c->b0 = b0, c->b1 = b1;
    c->n_sums = 1 + 2 * (size_t)da + 2 * (size_t)nb + (size_t)da * (size_t)nb;
    c->sums = calloc(c->n_sums, sizeof *c->sums);
    c->tmp = malloc((size_t)da * (size_t)nb * sizeof *c->tmp);
    if (!c->sums || !c->tmp) {
        ms_corr_free(c);
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory for correlation sums of %lld x %lld units (%.1f MiB)",
                          (long long)da, (long long)nb, (double)da * (double)nb * 12 / 1048576.0);
    }
    /* first touch here, not in the accumulation */
    memset(c->sums, 0, c->n_sums * sizeof *c->sums);
    memset(c->tmp, 0, (size_t)da * (size_t)nb * sizeof *c->tmp);
    return MS_OK;
}

void ms_corr_free(ms_corr *c)
{
    if (!c) return;
    free(c->sums);
    free(c->tmp);
    memset(c, 0, sizeof *c);
}

void ms_corr_add(ms_corr *c, const float *xa, const float *xb, int64_t n)
{
    if (n <= 0) return;
    const int64_t da = c->da, db = c->db, nb = c->b1 - c->b0;
    double *s = c->sums;
    double *sa = s + 1, *saa = sa + da, *sb = saa + da, *sbb = sb + nb, *sab = sbb + nb;
    s[0] += (double)n;
    for (int64_t r = 0; r < n; r++) {
        const float *a = xa + r * da, *b = xb + r * db + c->b0;
        for (int64_t i = 0; i < da; i++) sa[i] += a[i], saa[i] += (double)a[i] * a[i];
        for (int64_t j = 0; j < nb; j++) sb[j] += b[j], sbb[j] += (double)b[j] * b[j];
    }
    /* tmp (da,nb) = xaᵀ (da,n) · xb[:, b0:b1] (n,nb); float within the block, double across */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)da, (int)nb, (int)n, 1.0f, xa, (int)da, xb + c->b0,
                (int)db, 0.0f, c->tmp, (int)nb);
    const size_t m = (size_t)da * (size_t)nb;
    for (size_t k = 0; k < m; k++) sab[k] += c->tmp[k];
}

/* r_ij from the sums; NaN when either unit has no variance over the rows. */
static inline double corr_of(double n, double sa, double saa, double sb, double sbb, double sab)
{
    double va = n * saa - sa * sa, vb = n * sbb - sb * sb;
    if (!(va > 0) || !(vb > 0)) return NAN;
    double r = (n * sab - sa * sb) / sqrt(va * vb);
    return r > 1 ? 1 : r < -1 ? -1 : r;
}

void ms_corr_best(const ms_corr *c, float *row_max, int64_t *row_arg, float *col_max, int64_t *col_arg)
{
    const int64_t da = c->da, nb = c->b1 - c->b0;
    const double *s = c->sums;
    const double n = s[0], *sa = s + 1, *saa = sa + da, *sb = saa + da, *sbb = sb + nb, *sab = sbb + nb;
    for (int64_t j = 0; j < nb; j++) col_max[c->b0 + j] = -INFINITY, col_arg[c->b0 + j] = -1;
    for (int64_t i = 0; i < da; i++) {
        for (int64_t j = 0; j < nb; j++) {
            double r = corr_of(n, sa[i], saa[i], sb[j], sbb[j], sab[(size_t)i * nb + j]);
            if (isnan(r)) continue;
            /* strict >: the lowest index wins a tie, whatever the block layout */
            if (r > row_max[i]) row_max[i] = (float)r, row_arg[i] = c->b0 + j;
            if (r > col_max[c->b0 + j]) col_max[c->b0 + j] = (float)r, col_arg[c->b0 + j] = i;
        }
    }
}
