/*
 * qs_kll_internal.h -- the sketch struct, shared by qs_kll.c and qs_serde.c
 * only.  Everything outside csrc/ sees qs_kll as an opaque type.
 */
#ifndef QS_KLL_INTERNAL_H
#define QS_KLL_INTERNAL_H

#include "qs_kll.h"

struct qs_kll {
    uint32_t k;
    uint32_t m;
    uint32_t num_levels;
    /* levels[h] .. levels[h+1] is level h; levels[num_levels] is the buffer
     * capacity.  Two spare slots let compaction code address level h+2. */
    uint32_t levels[QS_KLL_MAX_LEVELS + 3];
    double *items;
    uint64_t n;          /* total weight of the non-NaN items seen */
    uint64_t nan_count;  /* total weight of the NaN items ignored  */
    double min, max;     /* NaN while n == 0 */
    uint64_t rng;        /* splitmix64 state */
    uint8_t level0_sorted;
    uint8_t compacted;   /* set by the first compaction: answers are estimates from then on */
    uint8_t user_flags;  /* opaque to the core, serialized for the binding */
    /* max(m, round(k (2/3)^d)) by depth d = num_levels - 1 - level; depends on k only */
    uint32_t cap_by_depth[QS_KLL_MAX_LEVELS + 1];

    /* Cache of the sorted view, rebuilt lazily after any change. */
    uint8_t view_valid;
    uint32_t view_cap;
    uint32_t view_size;
    double *view_items;
    uint64_t *view_cum;  /* cumulative weights: view_cum[i] = weight of view_items[0..i] */
};

uint32_t qs_kll_level_capacity(uint32_t k, uint32_t m, uint32_t num_levels, uint32_t height);
uint32_t qs_kll_total_capacity(uint32_t k, uint32_t m, uint32_t num_levels);
qs_kll *qs_kll_alloc_empty(uint32_t k, uint64_t seed, qs_status *status);
void qs_kll_set_k(qs_kll *sk, uint32_t k);

#endif /* QS_KLL_INTERNAL_H */
