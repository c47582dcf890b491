/* Nearest units across dictionaries by decoder cosine (the report's "similar features in the
 * other SAEs" links). The model's neurons are the identity dictionary (neuron i = e_i), so a
 * feature's nearest neurons are its decoder's largest normalised components. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "report.h"

void app_rdict_normalize(app_rdict *dict)
{
    if (!dict->dirs) return;
    for (int64_t i = 0; i < dict->n; i++) {
        float *r = dict->dirs + i * dict->d; /* (d) */
        double s = 0;
        for (int64_t j = 0; j < dict->d; j++) s += (double)r[j] * r[j];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int64_t j = 0; j < dict->d; j++) r[j] *= inv;
    }
}

/* Inserts (id, c) into the descending list ids/cos of length k (ties: lower id first; ids
 * arrive in increasing order so an equal value never displaces an earlier one). */
static void insert(int32_t *ids, float *cos, int k, int32_t id, float c)
{
    if (ids[k - 1] >= 0 && !(c > cos[k - 1])) return;
    int i = k - 1;
    while (i > 0 && (ids[i - 1] < 0 || c > cos[i - 1])) {
        ids[i] = ids[i - 1];
        cos[i] = cos[i - 1];
        i--;
    }
    ids[i] = id;
    cos[i] = c;
}

void app_rdict_nearest(int32_t *ids, float *cos, const app_rdict *a, int64_t r0, int64_t r1, const app_rdict *b, int k,
                      float *work)
{
    int64_t m = r1 - r0, n = b->n, d = a->d;
    /* work (m, n) = A[r0:r1] (m, d) . B^T (d, n); identity dictionaries are a copy/transpose */
    if (a->dirs && b->dirs) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)d, 1.0f, a->dirs + r0 * d, (int)d,
                    b->dirs, (int)d, 0.0f, work, (int)n);
    } else if (a->dirs) { /* b = identity: cos = A's row */
        memcpy(work, a->dirs + r0 * d, (size_t)(m * n) * sizeof *work);
    } else if (b->dirs) { /* a = identity: cos(e_i, b_j) = b_j[i] */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) work[i * n + j] = b->dirs[j * d + r0 + i];
    } else {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) work[i * n + j] = (r0 + i == j) ? 1.0f : 0.0f;
    }
    for (int64_t i = 0; i < m; i++) {
        int32_t *ri = ids + i * k;
        float *rc = cos + i * k;
        for (int j = 0; j < k; j++) ri[j] = -1, rc[j] = NAN;
        const float *w = work + i * n;
        for (int64_t j = 0; j < n; j++)
            if (isfinite(w[j])) insert(ri, rc, k, (int32_t)j, w[j]);
    }
}
