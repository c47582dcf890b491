/* IEEE binary16 <-> float32 conversion: exact scalar code, a table for bulk half -> float, and
 * the x86 F16C instructions when the CPU has them (MONOSEM_NO_F16C set forces the scalar path). */
#include "monosem/io.h"

#include <stdlib.h>
#include <string.h>

float ms_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: value = man * 2^-24, exact in float */
            float v = (float)man * 5.9604644775390625e-8f;
            memcpy(&bits, &v, 4);
            bits |= sign;
        }
    } else if (exp == 31) { /* inf, or NaN made quiet with its payload kept (as F16C does) */
        bits = sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0u);
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ms_half_from_float(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan (keep nan quiet and non-zero) */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504: inf */
    if (ax < 0x38800000u) {                                    /* below 2^-14: subnormal half */
        if (ax < 0x33000000u) return sign;                     /* below 2^-25: rounds to 0 */
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ax - 0x38000000u; /* rebias exponent 127 -> 15 (shifted by 13 below) */
    uint32_t lsb = (r >> 13) & 1u;
    r += 0xfffu + lsb; /* round to nearest even */
    return (uint16_t)(sign | (r >> 13));
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
/* The x86 F16C conversions (exact for half -> float; round to nearest even for float -> half,
 * as the scalar code): 8 values per instruction. Chosen at run time. */
__attribute__((target("avx,f16c"))) static void h2f_hw(float *out, const uint16_t *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
    for (; i < n; i++) out[i] = ms_half_to_float(in[i]);
}

__attribute__((target("avx,f16c"))) static void f2h_hw(uint16_t *out, const float *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) out[i] = ms_half_from_float(in[i]);
}

static bool have_f16c(void)
{
    static int have = -1; /* a benign race: every thread computes the same value */
    unsigned a, b, c, d; /* f16c through cpuid: clang's __builtin_cpu_supports lacks it */
    if (have < 0) have = __builtin_cpu_supports("avx") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    return have > 0 && !getenv("MONOSEM_NO_F16C");
}
#else
static bool have_f16c(void)
{
    return false;
}
static void h2f_hw(float *out, const uint16_t *in, size_t n)
{
    (void)out, (void)in, (void)n;
}
static void f2h_hw(uint16_t *out, const float *in, size_t n)
{
    (void)out, (void)in, (void)n;
}
#endif

void ms_half_to_float_n(float *out, const uint16_t *in, size_t n)
{
    if (have_f16c()) {
        h2f_hw(out, in, n);
        return;
    }
    /* a 64k-entry table is faster than branches in the reader's hot loop */
    static float *table;
    if (!table) {
        float *t = malloc(65536 * sizeof *t);
        if (t) {
            for (uint32_t i = 0; i < 65536; i++) t[i] = ms_half_to_float((uint16_t)i);
            float *expected = NULL;
            if (!__atomic_compare_exchange_n(&table, &expected, t, false, __ATOMIC_ACQ_REL,
                                              __ATOMIC_ACQUIRE))
                free(t);
        }
    }
    const float *t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
    if (t)
        for (size_t i = 0; i < n; i++) out[i] = t[in[i]];
    else
        for (size_t i = 0; i < n; i++) out[i] = ms_half_to_float(in[i]);
}

void ms_half_from_float_n(uint16_t *out, const float *in, size_t n)
{
    if (have_f16c()) {
        f2h_hw(out, in, n);
        return;
    }
    for (size_t i = 0; i < n; i++) out[i] = ms_half_from_float(in[i]);
}
