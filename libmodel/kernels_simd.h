/* kernels_simd.h: private helpers shared by the forward kernel files: 8-lane GCC vectors, the
 * MS_HOT target-clone marker, the inline exp (one definition, so every kernel rounds alike) and
 * the causal-prefix softmax the attention and SoLU share. */
#ifndef MONOSEM_KERNELS_SIMD_H
#define MONOSEM_KERNELS_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ 8-lane vectors */
/* GCC/clang vector extensions: AVX registers in the x86-64-v3 clones, SSE pairs otherwise.
 * The helpers are static inline, so the psabi note about passing 32-byte vectors is moot. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* Always inlined: a non-inlined helper (-O0) compiled for the default target would pass
 * 32-byte vectors by a different ABI than the AVX clone calling it. */
#define MS_VINLINE static inline __attribute__((always_inline))

MS_VINLINE v8f ld8(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}
MS_VINLINE void st8(float *p, v8f v) { memcpy(p, &v, sizeof v); }
MS_VINLINE v8f splat8(float x) { return (v8f){x, x, x, x, x, x, x, x}; }
MS_VINLINE v8f sel8(v8i m, v8f a, v8f b) { return (v8f)((m & (v8i)a) | (~m & (v8i)b)); }
MS_VINLINE v8f max8(v8f a, v8f b) { return sel8(a > b, a, b); }
MS_VINLINE float hsum8(v8f v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }
MS_VINLINE float hmax8(v8f v)
{
    float m = v[0];
    for (int k = 1; k < 8; k++) m = v[k] > m ? v[k] : m;
    return m;
}

/* 8-lane exp, same method and constants as expf_inl below. */
MS_VINLINE v8f exp8(v8f x)
{
    x = max8(x, splat8(-87.3f));
    x = sel8(x > splat8(88.7f), splat8(88.7f), x);
    v8f r = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    v8f f = (x - r * 0.693145751953125f) - r * 1.428606765330187045e-06f;
    v8f p = splat8(1.9841269841269841e-4f);
    p = p * f + 1.3888888888888889e-3f;
    p = p * f + 8.3333333333333333e-3f;
    p = p * f + 4.1666666666666667e-2f;
    p = p * f + 1.6666666666666667e-1f;
    p = p * f + 0.5f;
    p = p * f + 1.0f;
    p = p * f + 1.0f;
    v8i n = __builtin_convertvector(r, v8i);
    return p * (v8f)((n + 127) << 23);
}

/* Hot elementwise loops get an AVX2+FMA clone picked at load time (ifunc); the default clone
 * keeps the binary portable. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MS_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MS_HOT
#endif

/* exp as 2^n e^f: n = round(x log2 e), f = x - n ln2 by Cody-Waite (ln2 split in a 12-bit head,
 * so n*head is exact), e^f by its Taylor series to degree 7 on |f| <= 0.35 (error < 1e-8).
 * Plain float ops, so loops calling it vectorise. */
static inline float expf_inl(float x)
{
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.7f ? 88.7f : x;
    float r = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float f = (x - r * 0.693145751953125f) - r * 1.428606765330187045e-06f;
    float p = 1.9841269841269841e-4f;
    p = p * f + 1.3888888888888889e-3f;
    p = p * f + 8.3333333333333333e-3f;
    p = p * f + 4.1666666666666667e-2f;
    p = p * f + 1.6666666666666667e-1f;
    p = p * f + 0.5f;
    p = p * f + 1.0f;
    p = p * f + 1.0f;
    int32_t n = (int32_t)r;
    union {
        uint32_t u;
        float f;
    } s;
    s.u = (uint32_t)(n + 127) << 23;
    return p * s.f;
}

/* Softmax of one row's first n entries (the causal prefix) in place; the rest up to T zeroed. */
static inline void softmax_prefix(float *p, int n, int T)
{
    const int n8 = n & ~7;
    v8f mv = splat8(-INFINITY);
    for (int j = 0; j < n8; j += 8) mv = max8(mv, ld8(p + j));
    float mx = hmax8(mv);
    for (int j = n8; j < n; j++) mx = p[j] > mx ? p[j] : mx;
    v8f sv = splat8(0.0f);
    for (int j = 0; j < n8; j += 8) {
        v8f e = exp8(ld8(p + j) - mx);
        st8(p + j, e);
        sv += e;
    }
    float sum = hsum8(sv);
    for (int j = n8; j < n; j++) {
        p[j] = expf_inl(p[j] - mx);
        sum += p[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < n8; j += 8) st8(p + j, ld8(p + j) * inv);
    for (int j = n8; j < n; j++) p[j] *= inv;
    for (int j = n; j < T; j++) p[j] = 0.0f;
}

#endif
