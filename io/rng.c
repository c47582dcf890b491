/* SplitMix64 in one place: the external definitions of the inline mixer and step (monosem/rng.h),
 * the counter-based stream that SAE init and resampling draw from, and the seeded permutation
 * behind the activation stream's shuffles and generate's sampled positions. */
#include "monosem/rng.h"

#include <math.h>

extern inline uint64_t ms_rng_mix(uint64_t z);
extern inline uint64_t ms_rng_hash(uint64_t x);
extern inline uint64_t ms_rng_next(uint64_t *state);

void ms_rng_init(ms_rng *r, uint64_t seed, uint64_t stream)
{
    r->key = ms_rng_mix(ms_rng_mix(seed) ^ (stream * MS_RNG_GAMMA + 0x632be59bd9b4e019ull));
    r->counter = 0;
}

uint64_t ms_rng_u64(ms_rng *r)
{
    uint64_t c = r->counter++;
    return ms_rng_mix(ms_rng_mix(r->key + c * MS_RNG_GAMMA) ^ r->key);
}

double ms_rng_uniform(ms_rng *r) { return (double)(ms_rng_u64(r) >> 11) * 0x1.0p-53; }

double ms_rng_normal(ms_rng *r)
{
    double u1 = 1.0 - ms_rng_uniform(r); /* (0,1] */
    double u2 = ms_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void ms_rng_perm(int64_t *perm, int64_t n, uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t st = seed;
    uint64_t k = ms_rng_next(&st);
    st = k ^ (a * 0xd1b54a32d192ed03ull);
    k = ms_rng_next(&st);
    st = k ^ (b * 0xabc98388fb8fac03ull);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        /* multiply-shift bounded draw: deterministic, bias < 2^-40 for any n we use */
        uint64_t r = ms_rng_next(&st);
        int64_t j = (int64_t)(((unsigned __int128)r * (uint64_t)(i + 1)) >> 64);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
