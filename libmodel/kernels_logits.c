/* Forward kernels for the logits: fused bias + log-sum-exp, KL against reference logits and
 * cross-entropy. */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kernels_simd.h"
#include "monosem/io.h"
#include "monosem/model.h"

/* ------------------------------------------------------------------ logits, loss */

/* Adds bias (if any) to the row x (V) and returns the row's max, in one pass. Always inlined, so
 * it is compiled for each MS_HOT caller's target. */
static inline __attribute__((always_inline)) float row_bias_max(float *x, const float *bias, int V)
{
    const int V8 = V & ~7;
    v8f mv = splat8(-INFINITY);
    if (bias) {
        for (int v = 0; v < V8; v += 8) {
            v8f y = ld8(x + v) + ld8(bias + v);
            st8(x + v, y);
            mv = max8(mv, y);
        }
        for (int v = V8; v < V; v++) x[v] += bias[v];
    } else {
        for (int v = 0; v < V8; v += 8) mv = max8(mv, ld8(x + v));
    }
    float mx = hmax8(mv);
    for (int v = V8; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    return mx;
}

/* logsumexp of one row; if bias, adds it to the row first (same pass). */
MS_HOT
static float row_bias_lse(float *x, const float *bias, int V)
{
    const int V8 = V & ~7;
    const float mx = row_bias_max(x, bias, V);
    v8f sv = splat8(0.0f);
    for (int v = 0; v < V8; v += 8) sv += exp8(ld8(x + v) - mx);
    double s = hsum8(sv);
    for (int v = V8; v < V; v++) s += expf_inl(x[v] - mx);
    return mx + (float)log(s);
}

/* KL(p ‖ q) of one row from logits and logsumexps: Σ_v p_v (lp_v − lq_v) written as
 * Σ p_v (a_v − b_v) + (lse_b − lse_a)·Σ p_v, so identical rows give exactly 0 and nothing large
 * cancels; float lanes are flushed into a double every 256 entries. */
MS_HOT
static float row_kl(const float *a, float lse_a, const float *b, float lse_b, int V)
{
    const int V8 = V & ~7;
    double kl = 0, sp = 0;
    int v = 0;
    while (v < V8) {
        v8f acc = splat8(0.0f), ps = splat8(0.0f);
        const int end = v + 256 < V8 ? v + 256 : V8;
        for (; v < end; v += 8) {
            v8f av = ld8(a + v), p = exp8(av - lse_a);
            acc += p * (av - ld8(b + v));
            ps += p;
        }
        kl += hsum8(acc);
        sp += hsum8(ps);
    }
    for (; v < V; v++) {
        float p = expf_inl(a[v] - lse_a);
        kl += (double)(p * (a[v] - b[v]));
        sp += p;
    }
    return (float)(kl + ((double)lse_b - (double)lse_a) * sp);
}

/* Σ_v p_v·x_v for the KL: float products summed in 8 float lanes over blocks of 64 entries,
 * each block's lanes added into two double accumulators. Every caller (the reference pass and
 * the fused logsumexp pass below) runs this same sequence, so the same p and x give the same
 * bits and identical logits a KL of exactly 0. */
typedef double v4d __attribute__((vector_size(32)));
#define PDOT_BLOCK 64
MS_VINLINE void pdot_flush(v4d *a0, v4d *a1, v8f acc)
{
    *a0 += __builtin_convertvector(__builtin_shufflevector(acc, acc, 0, 1, 2, 3), v4d);
    *a1 += __builtin_convertvector(__builtin_shufflevector(acc, acc, 4, 5, 6, 7), v4d);
}
MS_VINLINE double pdot_sum(v4d a0, v4d a1) { return ((a0[0] + a0[1]) + (a0[2] + a0[3])) + ((a1[0] + a1[1]) + (a1[2] + a1[3])); }

/* Reference row: probs = exp(logits − lse) (in place allowed), pdot = Σ p·logit, psum = Σ p. */
MS_HOT
static void row_kl_ref(float *probs, double *pdot, double *psum, const float *x, float lse, int V)
{
    const int V8 = V & ~7;
    v4d a0 = {0, 0, 0, 0}, a1 = {0, 0, 0, 0}, s0 = {0, 0, 0, 0}, s1 = {0, 0, 0, 0};
    for (int v = 0; v < V8;) {
        const int end = v + PDOT_BLOCK < V8 ? v + PDOT_BLOCK : V8;
        v8f acc = splat8(0.0f), ps = splat8(0.0f);
        for (; v < end; v += 8) {
            v8f xv = ld8(x + v), p = exp8(xv - lse);
            acc += p * xv;
            ps += p;
            st8(probs + v, p);
        }
        pdot_flush(&a0, &a1, acc);
        pdot_flush(&s0, &s1, ps);
    }
    double d = pdot_sum(a0, a1), sp = pdot_sum(s0, s1);
    for (int v = V8; v < V; v++) {
        float p = expf_inl(x[v] - lse);
        d += (double)(p * x[v]);
        sp += p;
        probs[v] = p;
    }
    *pdot = d;
    *psum = sp;
}

/* Logsumexp of a row (bias added first when given) and, in the same exp pass, Σ ref_p·x for the
 * KL against a reference: KL(ref ‖ row) = (ref_pdot − Σ ref_p·x) + (lse − ref_lse)·ref_psum. */
MS_HOT
static float row_bias_lse_kl(float *x, const float *bias, const float *rp, double rdot, double rsum,
                             float rlse, float *kl, int V)
{
    const int V8 = V & ~7;
    const float mx = row_bias_max(x, bias, V);
    v8f sv = splat8(0.0f);
    v4d a0 = {0, 0, 0, 0}, a1 = {0, 0, 0, 0};
    for (int v = 0; v < V8;) {
        const int end = v + PDOT_BLOCK < V8 ? v + PDOT_BLOCK : V8;
        v8f acc = splat8(0.0f);
        for (; v < end; v += 8) {
            v8f xv = ld8(x + v);
            sv += exp8(xv - mx);
            acc += ld8(rp + v) * xv;
        }
        pdot_flush(&a0, &a1, acc);
    }
    double s = hsum8(sv), d = pdot_sum(a0, a1);
    for (int v = V8; v < V; v++) {
        s += expf_inl(x[v] - mx);
        d += (double)(rp[v] * x[v]);
    }
    float lse = mx + (float)log(s);
    *kl = (float)((rdot - d) + ((double)lse - (double)rlse) * rsum);
    return lse;
}

typedef struct lse_ctx {
    float *logits, *lse;
    const float *bias;
    int V;
    const float *ref, *ref_lse; /* optional: KL(ref ‖ logits) per row into kl */
    float *kl;
    const ms_kl_ref *kref; /* optional, instead of ref: the reference in probability form */
} lse_ctx;

MS_HOT
static void bias_lse_range(void *vctx, int64_t n0, int64_t n1)
{
    const lse_ctx *x = vctx;
    const int V = x->V;
    for (int64_t n = n0; n < n1; n++) {
        float *row = x->logits + (size_t)n * V;
        if (x->lse && x->kref) {
            const ms_kl_ref *r = x->kref;
            x->lse[n] = row_bias_lse_kl(row, x->bias, r->probs + (size_t)n * V, r->pdot[n], r->psum[n], r->lse[n],
                                        &x->kl[n], V);
        } else if (x->lse) {
            x->lse[n] = row_bias_lse(row, x->bias, V);
            if (x->kl) x->kl[n] = row_kl(x->ref + (size_t)n * V, x->ref_lse[n], row, x->lse[n], V);
        } else if (x->bias) {
            int v = 0;
            for (; v + 8 <= V; v += 8) st8(row + v, ld8(row + v) + ld8(x->bias + v));
            for (; v < V; v++) row[v] += x->bias[v];
        }
    }
}

void ms_logits_bias_lse_forward(float *logits, float *lse, const float *bias, int N, int V)
{
    lse_ctx x = {logits, lse, bias, V, NULL, NULL, NULL, NULL};
    ms_parallel_for(N, 8, bias_lse_range, &x);
}

void ms_logits_bias_lse_klref_forward(float *kl, float *logits, float *lse, const float *bias,
                                      const ms_kl_ref *ref, int N, int V)
{
    lse_ctx x = {logits, lse, bias, V, NULL, NULL, kl, ref};
    ms_parallel_for(N, 8, bias_lse_range, &x);
}

typedef struct klref_ctx {
    float *probs;
    double *pdot, *psum;
    const float *logits, *lse;
    int V;
} klref_ctx;

static void klref_range(void *vctx, int64_t n0, int64_t n1)
{
    const klref_ctx *x = vctx;
    for (int64_t n = n0; n < n1; n++)
        row_kl_ref(x->probs + (size_t)n * x->V, &x->pdot[n], &x->psum[n], x->logits + (size_t)n * x->V, x->lse[n],
                   x->V);
}

void ms_logits_kl_ref_fill(float *probs, double *pdot, double *psum, const float *logits, const float *lse, int N,
                    int V)
{
    klref_ctx x = {probs, pdot, psum, logits, lse, V};
    ms_parallel_for(N, 8, klref_range, &x);
}

void ms_logits_bias_lse_kl_forward(float *kl, float *logits, float *lse, const float *bias,
                                   const float *ref, const float *ref_lse, int N, int V)
{
    lse_ctx x = {logits, lse, bias, V, ref, ref_lse, kl, NULL};
    ms_parallel_for(N, 8, bias_lse_range, &x);
}

typedef struct kl_ctx {
    float *kl;
    const float *lp, *lse_p, *lq, *lse_q;
    int V;
} kl_ctx;

static void kl_range(void *vctx, int64_t n0, int64_t n1)
{
    const kl_ctx *x = vctx;
    for (int64_t n = n0; n < n1; n++)
        x->kl[n] = row_kl(x->lp + (size_t)n * x->V, x->lse_p[n], x->lq + (size_t)n * x->V, x->lse_q[n], x->V);
}

void ms_logits_kl(float *kl, const float *logits_p, const float *lse_p, const float *logits_q,
                  const float *lse_q, int N, int V)
{
    kl_ctx x = {kl, logits_p, lse_p, logits_q, lse_q, V};
    ms_parallel_for(N, 8, kl_range, &x);
}

double ms_crossentropy_forward(float *losses, float *lse, const float *logits,
                               const int32_t *targets, int N, int V, int64_t *n_loss)
{
    ms_logits_bias_lse_forward((float *)logits, lse, NULL, N, V); /* bias NULL: logits untouched */
    double total = 0;
    int64_t cnt = 0;
    for (int n = 0; n < N; n++) {
        if (targets && targets[n] >= 0) {
            losses[n] = lse[n] - logits[(size_t)n * V + targets[n]];
            total += losses[n];
            cnt++;
        } else {
            losses[n] = 0.0f;
        }
    }
    if (n_loss) *n_loss = cnt;
    return total;
}
