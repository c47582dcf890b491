/* Automatic monosemanticity measures of a unit from its top activations (the same function for
 * features and neurons), and the distribution summaries that compare them. */
#include "monosem/units.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct sample {
    int64_t pos;
    int32_t tok, next;
    double act;
} sample;

static int by_pos(const void *x, const void *y)
{
    const sample *a = x, *b = y;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

static int by_tok(const void *x, const void *y)
{
    const sample *a = x, *b = y;
    return (a->tok > b->tok) - (a->tok < b->tok);
}

/* The unit's sample: its top-k and its interval samples (all of its activation range: the top-k
 * alone is degenerate when the strongest token simply repeats), each position once. */
static int pool(const ms_analysis *a, int64_t u, sample *s)
{
    const int W = (int)a->o.window;
    int n = 0;
    const ms_topk *sets[2] = {&a->top, &a->iv};
    int64_t first[2] = {u, u * a->o.intervals}, count[2] = {1, a->o.intervals};
    for (int k = 0; k < 2; k++)
        for (int64_t slot = first[k]; slot < first[k] + count[k]; slot++)
            for (int i = 0; i < sets[k]->n[slot]; i++) {
                ms_topk_entry *e = ms_topk_at(sets[k], slot, i);
                s[n++] = (sample){e->pos, ms_topk_entry_tokens(sets[k], e)[W], e->next, e->act};
            }
    qsort(s, (size_t)n, sizeof *s, by_pos);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || s[m - 1].pos != s[i].pos) s[m++] = s[i];
    return m;
}

ms_status ms_analysis_measures(const ms_analysis *a, const int32_t *logit_top_ids, int n_logits,
                               int32_t *top_token, float *top_token_share, float *eff_tokens,
                               float *logit_agreement, ms_err *err)
{
    size_t cap = (size_t)a->o.top_k + (size_t)(a->o.intervals * a->o.interval_samples) + 1;
    sample *s = malloc(cap * sizeof *s);
    if (!s) return ms_err_set(err, MS_ERR_NOMEM, "analysis measures: out of memory");
    for (int64_t u = 0; u < a->n_units; u++) {
        top_token[u] = -1;
        top_token_share[u] = eff_tokens[u] = logit_agreement[u] = NAN;
        int n = pool(a, u, s);
        if (n == 0) continue;
        /* logit agreement first (needs the samples before they are merged by token) */
        if (logit_top_ids) {
            const int32_t *ids = logit_top_ids + u * (int64_t)n_logits;
            int with_next = 0, hit = 0;
            for (int i = 0; i < n; i++) {
                if (s[i].next < 0) continue;
                with_next++;
                for (int j = 0; j < n_logits; j++)
                    if (ids[j] == s[i].next) {
                        hit++;
                        break;
                    }
            }
            if (with_next > 0) logit_agreement[u] = (float)hit / (float)with_next;
        }
        /* activation mass per token id (sorted, so ties in mass go to the smaller id) */
        double total = 0;
        for (int i = 0; i < n; i++) total += s[i].act;
        qsort(s, (size_t)n, sizeof *s, by_tok);
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (m > 0 && s[m - 1].tok == s[i].tok) s[m - 1].act += s[i].act;
            else s[m++] = s[i];
        }
        double best = -1, H = 0;
        for (int i = 0; i < m; i++) {
            if (s[i].act > best) {
                best = s[i].act;
                top_token[u] = s[i].tok;
            }
            double p = s[i].act / total;
            if (p > 0) H -= p * log(p);
        }
        top_token_share[u] = (float)(best / total);
        eff_tokens[u] = (float)exp(H);
    }
    free(s);
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

void ms_measure_range(int m, const ms_analysis_opts *o, double *lo, double *hi)
{
    /* eff_tokens runs from 1 to the sample size; the other two are fractions */
    double n = (double)(o->top_k + o->intervals * o->interval_samples);
    *lo = m == 1 ? 1.0 : 0.0;
    *hi = m == 1 ? (n > 1 ? n : 2.0) : 1.0;
}

static int double_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ms_ultralow_cut(const int64_t *count, int64_t n, int64_t tokens)
{
    /* Otsu's threshold on log10(density) of the alive units over 128 bins between their min and
     * max: the cut maximising the between-class variance. A cluster only when the two classes'
     * mean log-densities are at least one decade apart and the cut is a decade below the
     * median alive density. */
    enum { NB = 128 };
    double lo = INFINITY, hi = -INFINITY;
    int64_t alive = 0;
    for (int64_t u = 0; u < n; u++)
        if (count[u] > 0) {
            double x = log10((double)count[u] / (double)tokens);
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
            alive++;
        }
    if (alive < 2 || hi - lo < 1.0) return 0.0;
    int64_t h[NB] = {0};
    double sx[NB] = {0};
    for (int64_t u = 0; u < n; u++)
        if (count[u] > 0) {
            double x = log10((double)count[u] / (double)tokens);
            int b = (int)floor((x - lo) / (hi - lo) * NB);
            b = b < 0 ? 0 : b > NB - 1 ? NB - 1 : b;
            h[b]++;
            sx[b] += x;
        }
    double total = 0;
    for (int b = 0; b < NB; b++) total += sx[b];
    double best = -1, cut = 0, w0 = 0, s0 = 0, m0b = 0, m1b = 0;
    for (int b = 0; b < NB - 1; b++) {
        w0 += (double)h[b];
        s0 += sx[b];
        double w1 = (double)alive - w0;
        if (w0 == 0 || w1 == 0) continue;
        double m0 = s0 / w0, m1 = (total - s0) / w1;
        double between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if (between > best) {
            best = between;
            cut = lo + (hi - lo) * (b + 1) / NB;
            m0b = m0;
            m1b = m1;
        }
    }
    if (best < 0 || m1b - m0b < 1.0) return 0.0;
    /* the paper's cluster is a low mode far below the dictionary's typical density: the cut must
     * lie a decade below the median alive density, else most units would be "ultralow" */
    double *ld = malloc((size_t)alive * sizeof *ld);
    if (!ld) return 0.0;
    int64_t k = 0;
    for (int64_t u = 0; u < n; u++)
        if (count[u] > 0) ld[k++] = log10((double)count[u] / (double)tokens);
    qsort(ld, (size_t)alive, sizeof *ld, double_cmp);
    double median = 0.5 * (ld[(alive - 1) / 2] + ld[alive / 2]);
    free(ld);
    if (cut > median - 1.0) return 0.0;
    return pow(10.0, cut);
}
