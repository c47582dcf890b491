/* monosem/rng.h: SplitMix64, the one generator behind every seeded choice in monosem (io/rng.c):
 * its mixer, its step, a counter-based stream (ms_rng) and a seeded permutation.
 * Conventions: pure functions of their arguments and of state the caller owns as plain integers
 * (saved by value in checkpoints), so thread-safe and the same on every rank; nothing is
 * allocated (ms_rng_perm fills the caller's perm). The values are part of the results (held-out
 * split, model init, data order, sampled activation rows, shuffles, SAE init and resampling,
 * analysis samples): changing one output changes every file downstream. */
#ifndef MONOSEM_RNG_H
#define MONOSEM_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* SplitMix64's increment (2^64 / golden ratio, odd); also the multiplier that spreads small
 * integers (unit ids, stream numbers) before they are mixed. */
#define MS_RNG_GAMMA 0x9e3779b97f4a7c15ull

/* The three forms below are inline (the analyzer mixes once per active unit and position);
 * io/rng.c holds their one external definition. */

/* SplitMix64's output function (Stafford's Mix13), a bijection of 64 bits: a hash of z with no
 * increment. */
inline uint64_t ms_rng_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The SplitMix64 output for state x, without keeping the state: ms_rng_mix(x + MS_RNG_GAMMA).
 * A pure hash of a value (the held-out split, train-model's data order). */
inline uint64_t ms_rng_hash(uint64_t x) { return ms_rng_mix(x + MS_RNG_GAMMA); }

/* One SplitMix64 step: advances *state by MS_RNG_GAMMA and returns the mix of the new state
 * (the reference generator: state 0 gives 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, ...). */
inline uint64_t ms_rng_next(uint64_t *state) { return ms_rng_mix(*state += MS_RNG_GAMMA); }

/* Counter-based stream: output i is a pure function of (key, i), so a stream is resumed from
 * its two integers and the same seed gives the same stream on every rank. */
typedef struct ms_rng {
    uint64_t key;
    uint64_t counter;
} ms_rng;

/* key derived from (seed, stream) so independent purposes get independent streams. */
void ms_rng_init(ms_rng *r, uint64_t seed, uint64_t stream);
uint64_t ms_rng_u64(ms_rng *r);
/* Uniform in [0,1) with 53 random bits. */
double ms_rng_uniform(ms_rng *r);
/* Standard normal (Box-Muller, consumes two outputs). */
double ms_rng_normal(ms_rng *r);

/* perm (n) := a Fisher-Yates permutation of [0,n) drawn from ms_rng_next, its state keyed by
 * (seed, a, b): the activation stream's block and window orders, generate's positions. */
void ms_rng_perm(int64_t *perm, int64_t n, uint64_t seed, uint64_t a, uint64_t b);

#ifdef __cplusplus
}
#endif
#endif
