/*
 * qs_rng.h -- the per-sketch pseudo-random generator.
 *
 * splitmix64 (Steele, Lea, Flood 2014): one 64-bit word of state, passes
 * BigCrush, and is trivially serializable.  A KLL compaction needs one fair
 * bit, and compactions are rare next to item insertions, so a full 64-bit
 * draw per bit costs nothing measurable and keeps the state to one word.
 */
#ifndef QS_RNG_H
#define QS_RNG_H

#include "qs_common.h"

QS_INLINE uint64_t qs_rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

QS_INLINE unsigned qs_rng_bit(uint64_t *state)
{
    return (unsigned)(qs_rng_next(state) >> 63);
}

#endif /* QS_RNG_H */
