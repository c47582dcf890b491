/* Forward kernels for the MLP side: elementwise activations (relu, gelu, gelu_new), SoLU and
 * the residual add. */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kernels_simd.h"
#include "monosem/io.h"
#include "monosem/model.h"

/* ------------------------------------------------------------------ MLP activations */

/* erfc(|z|) by the Chebyshev-fitted form t exp(-z^2 + P(t)), t = 1/(1 + |z|/2) (Numerical
 * Recipes' erfcc; relative error < 1.2e-7 everywhere). */
MS_VINLINE v8f erfc8_abs(v8f z)
{
    z = sel8(z < 0.0f, -z, z);
    v8f t = 1.0f / (1.0f + 0.5f * z);
    v8f p = splat8(0.17087277f);
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    return t * exp8(p - z * z);
}

typedef struct ew_ctx {
    float *out;
    const float *a, *b;
    int act;
} ew_ctx;

MS_HOT
static void act_range(void *vctx, int64_t i0, int64_t i1)
{
    const ew_ctx *x = vctx;
    float *out = x->out;
    const float *in = x->a;
    int64_t i = i0;
    switch (x->act) {
    case MS_ACT_RELU:
        for (; i + 8 <= i1; i += 8) st8(out + i, max8(ld8(in + i), splat8(0.0f)));
        for (; i < i1; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
        break;
    case MS_ACT_GELU: /* exact: 0.5 x (1 + erf(x/sqrt2)), via erfc (below) for accuracy at x < 0 */
        for (; i < i1; i += 8) {
            /* the tail goes through the same 8-lane formula (padded), so an element's value
             * does not depend on where a thread's range or the batch ends */
            float tin[8] = {0}, tout[8];
            const bool full = i + 8 <= i1;
            const float *src = full ? in + i : tin;
            if (!full) memcpy(tin, in + i, (size_t)(i1 - i) * sizeof(float));
            v8f v = ld8(src);
            v8f c = erfc8_abs(v * 0.70710678118654752f);
            v8f r = sel8(v >= 0.0f, v - 0.5f * v * c, 0.5f * v * c);
            if (full) st8(out + i, r);
            else {
                st8(tout, r);
                memcpy(out + i, tout, (size_t)(i1 - i) * sizeof(float));
            }
        }
        break;
    default: { /* gelu_new: 0.5 x (1 + tanh u) = x / (1 + exp(-2u)), free of cancellation at x << 0 */
        const float k = 0.79788456080286536f; /* sqrt(2/pi) */
        for (; i < i1; i += 8) {
            float tin[8] = {0}, tout[8];
            const bool full = i + 8 <= i1;
            const float *src = full ? in + i : tin;
            if (!full) memcpy(tin, in + i, (size_t)(i1 - i) * sizeof(float));
            v8f v = ld8(src);
            v8f u = k * (v + 0.044715f * v * v * v);
            v8f r = v / (1.0f + exp8(-2.0f * u));
            if (full) st8(out + i, r);
            else {
                st8(tout, r);
                memcpy(out + i, tout, (size_t)(i1 - i) * sizeof(float));
            }
        }
    }
    }
}

void ms_act_forward(float *out, const float *inp, size_t n, int act)
{
    ew_ctx x = {out, inp, NULL, act};
    ms_parallel_for((int64_t)n, 1 << 16, act_range, &x);
}

typedef struct solu_ctx {
    float *out;
    const float *inp;
    int M;
} solu_ctx;

MS_HOT
static void solu_range(void *vctx, int64_t n0, int64_t n1)
{
    const solu_ctx *x = vctx;
    const int M = x->M;
    for (int64_t n = n0; n < n1; n++) {
        const float *in = x->inp + (size_t)n * M;
        float *o = x->out + (size_t)n * M;
        memcpy(o, in, (size_t)M * sizeof(float));
        softmax_prefix(o, M, M);
        for (int m = 0; m < M; m++) o[m] *= in[m];
    }
}

void ms_solu_forward(float *out, const float *inp, int N, int M)
{
    solu_ctx x = {out, inp, M};
    ms_parallel_for(N, 64, solu_range, &x);
}

MS_HOT
static void residual_range(void *vctx, int64_t i0, int64_t i1)
{
    const ew_ctx *x = vctx;
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) st8(x->out + i, ld8(x->a + i) + ld8(x->b + i));
    for (; i < i1; i++) x->out[i] = x->a[i] + x->b[i];
}

void ms_residual_forward(float *out, const float *a, const float *b, size_t n)
{
    ew_ctx x = {out, a, b, 0};
    ms_parallel_for((int64_t)n, 1 << 16, residual_range, &x);
}
