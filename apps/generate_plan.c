/* Pure layout of an activations run: shard ranges, row offsets, seeded sample positions. */
#include "generate_plan.h"

#include <stdlib.h>
#include <string.h>

void app_gen_plan_init(app_gen_plan *p, int64_t available, int64_t tokens_wanted, int64_t context,
                      int64_t sample, int64_t shard_contexts)
{
    memset(p, 0, sizeof *p);
    int64_t n = available < 0 ? 0 : available;
    if (tokens_wanted > 0 && context > 0) {
        int64_t want = (tokens_wanted + context - 1) / context;
        if (want < n) n = want;
    }
    p->n_contexts = n;
    p->context = context;
    p->sample = sample;
    p->shard_contexts = shard_contexts > 0 ? shard_contexts : 1;
    p->n_shards = (n + p->shard_contexts - 1) / p->shard_contexts;
    p->n_rows = n * sample;
}

void app_gen_shard_contexts(const app_gen_plan *p, int64_t s, int64_t *c0, int64_t *c1)
{
    *c0 = s * p->shard_contexts;
    *c1 = *c0 + p->shard_contexts;
    if (*c1 > p->n_contexts) *c1 = p->n_contexts;
    if (*c0 > *c1) *c0 = *c1;
}

/* A Fisher-Yates permutation keyed by (seed, context) via ms_rng_perm; its first K entries,
 * sorted. Sorting makes the rows of a context follow the text order (readable dashboards). */
void app_gen_sample_positions(int32_t *pos, int64_t T, int64_t K, uint64_t seed, int64_t ctx,
                             int64_t *scratch)
{
    if (K > T) K = T;
    if (K == T) { /* every position: no draw needed */
        for (int64_t i = 0; i < T; i++) pos[i] = (int32_t)i;
        return;
    }
    /* "b" = 0x67656e ("gen") keeps this stream apart from other users of the same seed */
    ms_rng_perm(scratch, T, seed, (uint64_t)ctx, 0x67656eu);
    /* insertion sort of K values: K <= T <= a few thousand, cheap next to the forward */
    for (int64_t i = 0; i < K; i++) {
        int32_t v = (int32_t)scratch[i];
        int64_t j = i;
        while (j > 0 && pos[j - 1] > v) {
            pos[j] = pos[j - 1];
            j--;
        }
        pos[j] = v;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx,f16c"))) static void f2h_f16c(uint16_t *out, const float *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(void *)(out + i), h);
    }
    for (; i < n; i++) out[i] = ms_half_from_float(in[i]);
}
#endif

void app_gen_f2h(uint16_t *out, const float *in, size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    static int have = -1;
    if (have < 0) have = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
    if (have) {
        f2h_f16c(out, in, n);
        return;
    }
#endif
    ms_half_from_float_n(out, in, n);
}

void app_gen_gather(void *out, int dtype, int32_t *index, const float *act, int64_t nb, int64_t T,
                   int64_t d, int64_t K, uint64_t seed, int64_t ctx0, int64_t *scratch)
{
    int32_t pos[4096];
    int32_t *pp = K <= 4096 ? pos : NULL;
    for (int64_t b = 0; b < nb; b++) {
        int64_t ctx = ctx0 + b;
        if (pp) {
            app_gen_sample_positions(pp, T, K, seed, ctx, scratch);
        } else {
            /* K > 4096: positions go into the index buffer first, then are spread out */
            int32_t *tmp = index + 2 * b * K;
            app_gen_sample_positions(tmp, T, K, seed, ctx, scratch);
            for (int64_t k = K - 1; k >= 0; k--) index[2 * (b * K + k) + 1] = tmp[k];
        }
        for (int64_t k = 0; k < K; k++) {
            int32_t t = pp ? pp[k] : index[2 * (b * K + k) + 1];
            const float *src = act + (b * T + t) * d;
            size_t r = (size_t)(b * K + k);
            if (dtype == MS_DTYPE_F16)
                app_gen_f2h((uint16_t *)out + r * (size_t)d, src, (size_t)d);
            else
                memcpy((float *)out + r * (size_t)d, src, (size_t)d * sizeof(float));
            index[2 * r] = (int32_t)ctx;
            index[2 * r + 1] = t;
        }
    }
}
