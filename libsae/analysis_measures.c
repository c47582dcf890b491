/* Automatic monosemanticity measures of a unit from its top activations (the same function for
 * features and neurons), and the distribution summaries that compare them. */
#include "monosem/sae.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct tokmass {
    int32_t tok;
    double mass;
} tokmass;

static int tokmass_cmp(const void *x, const void *y)
{
    const tokmass *a = x, *b = y;
    return (a->tok > b->tok) - (a->tok < b->tok);
}

ms_status ms_analysis_measures(const ms_analysis *a, const int32_t *logit_top_ids, int n_logits,
                               int32_t *top_token, float *top_token_share, float *eff_tokens,
                               float *logit_agreement, ms_err *err)
{
    const ms_topk *t = &a->top;
    tokmass *tm = malloc(((size_t)t->k + 1) * sizeof *tm);
    if (!tm) return ms_err_set(err, MS_ERR_NOMEM, "analysis measures: out of memory");
    const int W = (int)a->o.window;
    for (int64_t u = 0; u < a->n_units; u++) {
        int n = t->n[u];
        top_token[u] = -1;
        top_token_share[u] = eff_tokens[u] = logit_agreement[u] = NAN;
        if (n == 0) continue;
        /* activation mass per activating token id (the window's centre) */
        double total = 0;
        for (int i = 0; i < n; i++) {
            ms_topk_entry *e = ms_topk_at(t, u, i);
            tm[i].tok = ms_topk_entry_tokens(t, e)[W];
            tm[i].mass = e->act;
            total += e->act;
        }
        qsort(tm, (size_t)n, sizeof *tm, tokmass_cmp);
        int m = 0; /* merge equal ids (sorted, so ties in mass go to the smaller id) */
        for (int i = 0; i < n; i++) {
            if (m > 0 && tm[m - 1].tok == tm[i].tok) tm[m - 1].mass += tm[i].mass;
            else tm[m++] = tm[i];
        }
        double best = -1, H = 0;
        for (int i = 0; i < m; i++) {
            if (tm[i].mass > best) {
                best = tm[i].mass;
                top_token[u] = tm[i].tok;
            }
            double p = tm[i].mass / total;
            if (p > 0) H -= p * log(p);
        }
        top_token_share[u] = (float)(best / total);
        eff_tokens[u] = (float)exp(H);
        if (logit_top_ids) {
            const int32_t *ids = logit_top_ids + u * (int64_t)n_logits;
            int with_next = 0, hit = 0;
            for (int i = 0; i < n; i++) {
                int32_t y = ms_topk_at(t, u, i)->next;
                if (y < 0) continue;
                with_next++;
                for (int j = 0; j < n_logits; j++)
                    if (ids[j] == y) {
                        hit++;
                        break;
                    }
            }
            if (with_next > 0) logit_agreement[u] = (float)hit / (float)with_next;
        }
    }
    free(tm);
    return MS_OK;
}

static int float_cmp(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

static double quantile(const float *s, int64_t n, double q)
{
    double x = q * (double)(n - 1);
    int64_t i = (int64_t)floor(x);
    if (i >= n - 1) return s[n - 1];
    double f = x - (double)i;
    return (double)s[i] + f * ((double)s[i + 1] - (double)s[i]);
}

ms_status ms_measure_summarize(const float *v, int64_t n, double lo, double hi, int n_bins,
                               int64_t *hist, ms_measure_summary *out, ms_err *err)
{
    float *s = malloc(((size_t)n + 1) * sizeof *s);
    if (!s) return ms_err_set(err, MS_ERR_NOMEM, "measure summary: out of memory");
    int64_t m = 0;
    memset(hist, 0, (size_t)n_bins * sizeof *hist);
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        s[m++] = v[i];
        int64_t b = (int64_t)floor(((double)v[i] - lo) / (hi - lo) * n_bins);
        if (b < 0) b = 0;
        if (b > n_bins - 1) b = n_bins - 1;
        hist[b]++;
    }
    qsort(s, (size_t)m, sizeof *s, float_cmp);
    out->n = m;
    out->median = m ? quantile(s, m, 0.5) : NAN;
    out->q25 = m ? quantile(s, m, 0.25) : NAN;
    out->q75 = m ? quantile(s, m, 0.75) : NAN;
    free(s);
    return MS_OK;
}
