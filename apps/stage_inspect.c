/* `monosem inspect activations.h5`: shape, dtype, provenance, completeness, and per-dimension
 * statistics of a bounded sample of rows. Rank 0 does the work; other ranks wait. */
#include "app.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The sample: up to `rows` rows read in `blocks` evenly spaced runs, so memory is one run of
 * rows plus O(d) accumulators whatever N is. */
#define INSPECT_BLOCKS 64

typedef struct stats {
    int64_t d, n;
    double *sum, *sumsq, *max, *min;
    int64_t *pos, *nonfinite;
} stats;

static void stats_free(stats *s)
{
    free(s->sum);
    free(s->sumsq);
    free(s->max);
    free(s->min);
    free(s->pos);
    free(s->nonfinite);
}

static int stats_init(stats *s, int64_t d)
{
    memset(s, 0, sizeof *s);
    s->d = d;
    s->sum = calloc((size_t)d, sizeof *s->sum);
    s->sumsq = calloc((size_t)d, sizeof *s->sumsq);
    s->max = malloc((size_t)d * sizeof *s->max);
    s->min = malloc((size_t)d * sizeof *s->min);
    s->pos = calloc((size_t)d, sizeof *s->pos);
    s->nonfinite = calloc((size_t)d, sizeof *s->nonfinite);
    if (!s->sum || !s->sumsq || !s->max || !s->min || !s->pos || !s->nonfinite) return -1;
    for (int64_t j = 0; j < d; j++) s->max[j] = -INFINITY, s->min[j] = INFINITY;
    return 0;
}

static void stats_add(stats *s, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + i * s->d;
        for (int64_t j = 0; j < s->d; j++) {
            double v = r[j];
            if (!isfinite(v)) {
                s->nonfinite[j]++;
                continue;
            }
            s->sum[j] += v;
            s->sumsq[j] += v * v;
            if (v > s->max[j]) s->max[j] = v;
            if (v < s->min[j]) s->min[j] = v;
            s->pos[j] += v > 0;
        }
    }
    s->n += n;
}

static void print_attr(const char *k, const char *v)
{
    printf("  %-18s %s\n", k, v && v[0] ? v : "(not set)");
}

static ms_status inspect(const char *path, int64_t want_rows, bool all_dims, ms_err *err)
{
    ms_actfile *f = NULL;
    ms_actmeta m;
    bool complete = false;
    int64_t done = -1;
    ms_status st = ms_actfile_open_any(&f, path, &m, &complete, &done, err);
    if (st) return st;
    const char *dt = m.dtype == MS_DTYPE_F16 ? "float16" : "float32";
    int64_t K = m.n_contexts > 0 ? m.n_rows / m.n_contexts : 0;
    printf("%s\n", path);
    printf("  %-18s (%" PRId64 ", %" PRId64 ") %s, chunks of %" PRId64 " rows (%.1f MB)\n", "acts",
           m.n_rows, m.d, dt, m.chunk_rows,
           (double)m.n_rows * (double)m.d * (m.dtype == MS_DTYPE_F16 ? 2 : 4) / 1e6);
    printf("  %-18s (%" PRId64 ", 2) int32 (context, position)\n", "index", m.n_rows);
    printf("  %-18s (%" PRId64 ", %" PRId64 ") int32: %" PRId64 " tokens, %" PRId64
           " sampled per context\n",
           "tokens", m.n_contexts, m.context, m.n_contexts * m.context, K);
    printf("  %-18s %s (%" PRId64 " of %" PRId64 " shards done)\n", "complete",
           complete ? "yes" : "NO: rerun `monosem generate` with the same job to finish it", done,
           m.n_shards);
    print_attr("hook", m.hook);
    print_attr("model_sha256", m.model_sha256);
    print_attr("tokenizer_sha256", m.tokenizer_sha256);
    print_attr("config_hash", m.config_hash);
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRId64, m.seed);
    print_attr("seed", seed);
    print_attr("version", m.version);
    if (m.config_text && m.config_text[0]) {
        const char *g = strstr(m.config_text, "\ngenerate:");
        printf("  %-18s %zu bytes of resolved YAML (`h5dump -a config` prints it)%s\n", "config",
               strlen(m.config_text), g ? "; its generate section:" : "");
        if (g) {
            /* the generate section: up to the next top-level key */
            const char *p = g + 1;
            const char *e = strchr(p, '\n');
            for (;;) {
                if (!e) break;
                const char *nx = e + 1;
                if (*nx == '\0' || (*nx != ' ' && *nx != '\n')) break;
                e = strchr(nx, '\n');
            }
            int len = e ? (int)(e - p) : (int)strlen(p);
            const char *q = p;
            while (q < p + len) {
                const char *nl = memchr(q, '\n', (size_t)(p + len - q));
                int l = nl ? (int)(nl - q) : (int)(p + len - q);
                printf("      %.*s\n", l, q);
                q += l + 1;
            }
        }
    }
    if (!complete || m.n_rows == 0) {
        if (!complete) printf("statistics: skipped (rows of unfinished shards are undefined)\n");
        ms_actfile_close(f);
        return MS_OK;
    }
    /* the sample: INSPECT_BLOCKS runs evenly spaced over the file */
    int64_t n = want_rows < m.n_rows ? want_rows : m.n_rows;
    int64_t blocks = n < INSPECT_BLOCKS ? 1 : INSPECT_BLOCKS;
    int64_t per = (n + blocks - 1) / blocks;
    float *buf = malloc((size_t)(per * m.d) * sizeof *buf);
    stats s;
    if (!buf || stats_init(&s, m.d)) {
        free(buf);
        stats_free(&s);
        ms_actfile_close(f);
        return ms_err_set(err, MS_ERR_NOMEM, "inspect: out of memory");
    }
    for (int64_t b = 0; b < blocks && !st; b++) {
        int64_t r0 = (int64_t)((double)b * (double)m.n_rows / (double)blocks);
        int64_t cnt = per;
        if (r0 + cnt > m.n_rows) cnt = m.n_rows - r0;
        if (cnt <= 0) continue;
        st = ms_actfile_read(f, r0, cnt, buf, err);
        if (!st) stats_add(&s, buf, cnt);
    }
    if (!st) {
        double gmean = 0, gstd = 0, gmax = -INFINITY;
        int64_t dead = 0, nonfin = 0;
        for (int64_t j = 0; j < m.d; j++) {
            int64_t c = s.n - s.nonfinite[j];
            double mean = c ? s.sum[j] / (double)c : 0;
            double var = c ? s.sumsq[j] / (double)c - mean * mean : 0;
            gmean += mean;
            gstd += sqrt(var > 0 ? var : 0);
            if (s.max[j] > gmax) gmax = s.max[j];
            dead += s.pos[j] == 0;
            nonfin += s.nonfinite[j];
        }
        printf("statistics over a sample of %" PRId64 " rows (%" PRId64 " runs of up to %" PRId64
               " rows, evenly spaced):\n",
               s.n, blocks, per);
        printf("  mean of per-dim means %.6g, mean per-dim std %.6g, max %.6g; %" PRId64
               " of %" PRId64 " dims never > 0; %" PRId64 " non-finite values\n",
               gmean / (double)m.d, gstd / (double)m.d, gmax, dead, m.d, nonfin);
        int64_t show = all_dims || m.d <= 64 ? m.d : 32;
        printf("  %6s %12s %12s %12s %12s %9s\n", "dim", "mean", "std", "min", "max", "frac>0");
        for (int64_t j = 0; j < show; j++) {
            int64_t c = s.n - s.nonfinite[j];
            double mean = c ? s.sum[j] / (double)c : 0;
            double var = c ? s.sumsq[j] / (double)c - mean * mean : 0;
            printf("  %6" PRId64 " %12.6g %12.6g %12.6g %12.6g %9.4f\n", j, mean,
                   sqrt(var > 0 ? var : 0), c ? s.min[j] : NAN, c ? s.max[j] : NAN,
                   c ? (double)s.pos[j] / (double)c : 0);
        }
        if (show < m.d) printf("  ... %" PRId64 " more dims (--all to list every one)\n", m.d - show);
    }
    free(buf);
    stats_free(&s);
    ms_actfile_close(f);
    return st;
}

ms_status app_stage_inspect(app_ctx *app, ms_err *err)
{
    const char *path = app_positional(app, 0);
    if (!path) return ms_err_set(err, MS_ERR_USAGE, "usage: monosem %s", app->def->usage);
    int64_t rows = 65536;
    const char *r = app_option(app, "rows");
    if (r) {
        char *end = NULL;
        long long v = strtoll(r, &end, 10);
        if (!end || *end || v < 1)
            return ms_err_set(err, MS_ERR_USAGE, "inspect: --rows: expected a positive integer, got \"%s\"", r);
        rows = v;
    }
    ms_status st = MS_OK;
    if (app->comm.rank == 0) {
        st = inspect(path, rows, app_flag(app, "all"), err);
        fflush(stdout);
    }
    return st;
}
