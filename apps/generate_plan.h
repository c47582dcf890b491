/* apps/generate_plan.h: the pure layout of an activations run (contexts, shards, rows, sampled
 * positions), kept apart from MPI and files so it is unit-tested. Nothing here allocates. */
#ifndef MONOSEM_GENERATE_PLAN_H
#define MONOSEM_GENERATE_PLAN_H

#include <stdint.h>

#include "monosem/io.h"

/* Contexts are the corpus windows [i*context, (i+1)*context) of the train split; shard s is
 * contexts [s*shard_contexts, min((s+1)*shard_contexts, n_contexts)); context c owns rows
 * [c*sample, (c+1)*sample) of /acts and /index. So every row's place depends only on the job,
 * never on the rank count or the order shards finish in. */
typedef struct app_gen_plan {
    int64_t n_contexts;
    int64_t context;        /* T */
    int64_t sample;         /* K positions sampled per context */
    int64_t shard_contexts;
    int64_t n_shards;
    int64_t n_rows;         /* n_contexts * sample */
} app_gen_plan;

/* available: contexts in the corpus; tokens_wanted: generate.tokens (0 = all), rounded up to
 * whole contexts and capped at available. n_contexts may come out 0 (caller reports it). */
void app_gen_plan_init(app_gen_plan *p, int64_t available, int64_t tokens_wanted, int64_t context,
                      int64_t sample, int64_t shard_contexts);
/* Contexts [*c0, *c1) of shard s. */
void app_gen_shard_contexts(const app_gen_plan *p, int64_t s, int64_t *c0, int64_t *c1);

/* The sample positions of context ctx: K distinct positions of [0,T), ascending, a pure
 * function of (seed, ctx). scratch holds T entries. */
void app_gen_sample_positions(int32_t *pos, int64_t T, int64_t K, uint64_t seed, int64_t ctx,
                             int64_t *scratch);

/* Gathers the sampled rows of nb contexts (first context id ctx0) from a hooked activation
 * act (nb,T,d) into out (nb*K, d) in the store's dtype (MS_DTYPE_F32: float; MS_DTYPE_F16: IEEE
 * half as uint16, converted on the way), and (context, position) pairs into index (nb*K, 2).
 * scratch holds T entries. */
void app_gen_gather(void *out, int dtype, int32_t *index, const float *act, int64_t nb, int64_t T,
                   int64_t d, int64_t K, uint64_t seed, int64_t ctx0, int64_t *scratch);

/* float -> IEEE half, round to nearest even: bit-identical to ms_half_from_float_n (io.h), with
 * the x86 F16C instruction when the CPU has it. */
void app_gen_f2h(uint16_t *out, const float *in, size_t n);

#endif
