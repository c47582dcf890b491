/* monosem/half.h: IEEE binary16 <-> float32 conversions, scalar and bulk (io/half.c).
 * Conventions: halves are uint16_t bit patterns; the _n forms write n values into the caller's
 * out from in (no overlap, nothing allocated). Pure and thread-safe. */
#ifndef MONOSEM_HALF_H
#define MONOSEM_HALF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- half floats (io/half.c). IEEE binary16 as uint16_t bit patterns <-> float32: half ->
 * float is exact (NaN made quiet, payload kept), float -> half rounds to nearest even and
 * overflows to inf. The _n forms convert n values out <- in (caller's buffers, no overlap) with
 * the x86 F16C instructions when the CPU has them, bit-identical to the scalar code. Thread-safe
 * (the bulk table is built once, atomically). Environment: MONOSEM_NO_F16C set (any value)
 * forces the scalar path, read on every _n call: how tests and benchmarks compare the two
 * paths (not a test hook of ms_testhook's kind: it changes no behaviour, only the route). */
float ms_half_to_float(uint16_t h);
uint16_t ms_half_from_float(float f);
void ms_half_to_float_n(float *out, const uint16_t *in, size_t n);
void ms_half_from_float_n(uint16_t *out, const float *in, size_t n);

#ifdef __cplusplus
}
#endif
#endif
