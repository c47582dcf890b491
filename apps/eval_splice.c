/* The eval splice: a model replace hook that runs an SAE (encode, decode) on the clean
 * activation and hands the reconstruction to the rest of the forward, summing what the
 * reconstruction metrics need on the way. Apps is where the model and an SAE meet. */
#include <math.h>
#include <string.h>

#include "eval.h"

/* Active fraction of f at or below which the row-wise sparse decode is used: its d_in
 * multiply-adds per active entry beat the dense GEMM's d_sae·d_in per row by far at the
 * paper's L0 (≈ 1% of d_sae); 5% keeps a margin for the GEMM's better arithmetic rate. */
#define EVAL_SPARSE_DECODE 0.05

ms_status app_eval_splice_fn(void *user, ms_hook hook, float *act, int B, int T, int d,
                            ms_err *err)
{
    app_eval_splice *s = user;
    ms_sae *sae = s->sae;
    const int64_t rows = (int64_t)B * T, m = sae->hp.d_sae;
    if (d != sae->hp.d_in) {
        char nm[96];
        ms_hook_name(hook, nm, sizeof nm);
        return ms_err_set(err, MS_ERR_STATE, "eval: %s has width %d, the SAE's d_in is %lld", nm,
                          d, (long long)sae->hp.d_in);
    }
    double t0 = ms_time_now();
    const float inv_s = 1.0f / sae->input_scale;
    double *acc = s->acc, *fires = acc + EVAL_SAE_FIXED, *xsum = fires + m;
    for (int64_t r0 = 0; r0 < rows; r0 += s->chunk) {
        const int64_t nr = rows - r0 < s->chunk ? rows - r0 : s->chunk;
        const float *x = s->clean + r0 * d; /* (nr, d) clean activation */
        ms_sae_encode(sae, s->f, x, nr); /* f (nr, d_sae); encode applies the input scale */
        int64_t nnz = 0;
        for (int64_t b = 0; b < nr; b++) { /* feature sums, and how sparse f is */
            const float *f = s->f + b * m;
            int64_t l0 = 0;
            double l1 = 0;
            for (int64_t j = 0; j < m; j++)
                if (f[j] != 0.0f) {
                    l0++;
                    l1 += fabsf(f[j]);
                    fires[j] += 1;
                }
            acc[EVAL_SAE_L0] += (double)l0;
            acc[EVAL_SAE_L1] += l1;
            nnz += l0;
        }
        /* x̂ (nr, d) in scaled units; the row-wise sparse decode wins below a few % active */
        if ((double)nnz <= EVAL_SPARSE_DECODE * (double)nr * (double)m)
            ms_sae_decode_sparse(sae, s->xhat, s->f, nr);
        else
            ms_sae_decode(sae, s->xhat, s->f, nr);
        for (int64_t b = 0; b < nr; b++) {
            const float *xr = x + b * d;
            float *xh = s->xhat + b * d, *out = act + (r0 + b) * d;
            double sse = 0, xx = 0, hh = 0, xh_dot = 0;
            for (int i = 0; i < d; i++) {
                float v = xh[i] * inv_s;
                out[i] = v;
                double e = (double)v - xr[i];
                sse += e * e;
                xx += (double)xr[i] * xr[i];
                hh += (double)v * v;
                xh_dot += (double)v * xr[i];
                xsum[i] += xr[i];
            }
            acc[EVAL_SAE_SSE] += sse;
            acc[EVAL_SAE_X_SQ] += xx;
            acc[EVAL_SAE_XHAT_SQ] += hh;
            if (xx > 0) {
                acc[EVAL_SAE_NZ_ROWS] += 1;
                acc[EVAL_SAE_RATIO] += sqrt(hh / xx);
                if (hh > 0) {
                    acc[EVAL_SAE_COS_ROWS] += 1;
                    acc[EVAL_SAE_COS] += xh_dot / sqrt(xx * hh);
                }
            }
        }
    }
    s->t_sae += ms_time_now() - t0;
    return MS_OK;
}

void app_eval_neuron_sums(double *acc, const float *x, int64_t n, int64_t d)
{
    double *fires = acc + EVAL_HOOK_FIXED;
    for (int64_t b = 0; b < n; b++) {
        const float *xr = x + b * d;
        int64_t l0 = 0;
        for (int64_t i = 0; i < d; i++)
            if (xr[i] > 0.0f) {
                l0++;
                fires[i] += 1;
            }
        acc[EVAL_HOOK_L0] += (double)l0;
    }
}
