/*
 * qs_kll.h -- the KLL quantile sketch over float64 items: public C API.
 *
 * Guarantee (Karnin, Lang, Liberty 2016).  For a stream of n items, the
 * normalized rank of an item x is the fraction of the stream <= x (inclusive)
 * or < x (exclusive).  A sketch with parameter k estimates every normalized
 * rank r with |estimate - r| <= eps(k) with probability about 99% per query,
 * where eps(k) ~ 2.3 / k^0.97 (the empirical constants of Apache DataSketches,
 * qs_kll_normalized_rank_error()).  While nothing has been compacted
 * (qs_kll_is_estimation_mode() == 0) every answer is exact.
 *
 * Layout (the lazy compaction of Apache DataSketches): one buffer of
 * `capacity` doubles; level h occupies items[levels[h] .. levels[h+1]),
 * level 0 grows downward from levels[1] into the free space [0, levels[0]).
 * Level 0 is unsorted (until it is compacted), higher levels are sorted, and
 * an item at level h stands for 2^h stream items.  Level h may hold about
 * max(m, k * (2/3)^(H-1-h)) items before it must be compacted, H being the
 * number of levels and m the smallest capacity (qs_kll_default_m).
 *
 * Thread safety: none inside; the Python wrapper serializes access to one
 * sketch with a lock.  Distinct sketches are independent.
 *
 * Must match the declarations in src/qsketch/_core.pxd.
 */
#ifndef QS_KLL_H
#define QS_KLL_H

#include "qs_common.h"

#define QS_KLL_MIN_K 8
#define QS_KLL_MAX_K 65535
#define QS_KLL_DEFAULT_K 200
/* The smallest level capacity m: 8, Apache DataSketches' floor, from k =
 * QS_KLL_SMALL_K on; 2, the KLL paper's, below it (qs_kll_default_m).  At
 * small k the floor of 8 spends most of a sketch's bytes on its lowest
 * levels (k = 8 over a million items: 17 levels of 8 items); with 2 the same
 * bytes buy a larger k and more accuracy-layer boundaries, and the max error
 * at about 1 KB halves (k = 17 against k = 8; docs/algorithm.md).  From k =
 * 64 on the floor costs little, and the low levels' items sharpen the
 * layer's estimates of recent items (m = 2 at 4 KB: nested_clusters' max
 * error 0.29 -> 0.34% of n).  A decoded sketch keeps the m it was written
 * with (8 before format version 4, and from DataSketches). */
#define QS_KLL_M_MIN 2
#define QS_KLL_M_MAX 8
#define QS_KLL_SMALL_K 64
#define QS_KLL_MAX_LEVELS 64  /* n < 2^64 never needs more */
#define QS_KLL_MAX_EXACT_LIMIT (1u << 20)
#define QS_KLL_MAX_BUCKETS 65535

/* Rank and quantile estimators (qs_interp.c). */
typedef enum qs_estimator {
    QS_EST_STEP = 0,    /* KLL's step function over the retained items       */
    QS_EST_LINEAR = 1,  /* per-level interpolation, linear in value          */
    QS_EST_LEARNED = 2, /* per-level interpolation through a learned CDF     */
    QS_EST_SPLINE = 3   /* the accuracy layer's bucket counts (qs_buckets.c),
                           clipped to the compactors' guaranteed interval; the
                           learned estimator on a sketch without the layer   */
} qs_estimator;

typedef struct qs_kll qs_kll;

/* Construction.  k in [QS_KLL_MIN_K, QS_KLL_MAX_K]; NULL on failure (*status). */
qs_kll *qs_kll_new(uint32_t k, uint64_t seed, qs_status *status);
qs_kll *qs_kll_copy(const qs_kll *sk, qs_status *status);
void qs_kll_free(qs_kll *sk);

/* Updates.  NaN items are ignored and counted in nan_count, unless nan_raise
 * is set: then a batch holding a NaN is rejected whole with QS_ENAN and the
 * sketch is left unchanged.  +-inf are ordinary items. */
qs_status qs_kll_update(qs_kll *sk, double x, int nan_raise);
qs_status qs_kll_update_batch(qs_kll *sk, const double *x, size_t len, int nan_raise);
/* Each weights[i] >= 1 counts x[i] that many times.  Exact: an item of weight
 * w enters the levels named by the set bits of w. */
qs_status qs_kll_update_weighted(qs_kll *sk, const double *x, const uint64_t *weights,
                                 size_t len, int nan_raise);

/* dst absorbs src.  src keeps its items (only its cached sorted view may be
 * built: a small src's exact counts cut the merged layer).  If src->k <
 * dst->k, dst takes the smaller k.  On failure dst is unchanged. */
qs_status qs_kll_merge(qs_kll *dst, qs_kll *src);

/* Exact low-cardinality mode: while a sketch has seen at most `limit`
 * distinct values it keeps them with exact counts, and every answer is exact.
 * The default limit is max(256, 1.5 k); 0 disables the mode.  The limit can
 * only be set on an empty sketch (QS_EINVAL otherwise). */
uint32_t qs_kll_default_exact_limit(uint32_t k);
qs_status qs_kll_set_exact_limit(qs_kll *sk, uint32_t limit);
uint32_t qs_kll_exact_limit(const qs_kll *sk); /* 0 once the compactors took over */

/* Accuracy layer (qs_buckets.c): up to `buckets` boundaries with exact
 * counts between them; 0 (the default) disables it.  Only on an empty sketch
 * (QS_EINVAL otherwise).  A merge keeps the layer only if both sides have it,
 * with the smaller number of boundaries. */
qs_status qs_kll_set_buckets(qs_kll *sk, uint32_t buckets);
/* The binding's default: 2 k, the split of a sketch's bytes between
 * compactors and buckets that measured best across smooth, real and
 * adversarial streams (docs/algorithm.md); at most 4096, where the layer's
 * error is already far below the compactors' and its O(boundaries) checks
 * would start to cost. */
#define QS_KLL_DEFAULT_BUCKETS_MAX 4096
uint32_t qs_kll_default_buckets(uint32_t k);
uint32_t qs_kll_buckets(const qs_kll *sk);
uint32_t qs_kll_bucket_boundaries(const qs_kll *sk); /* boundaries in use */
/* The layer itself (for tests): *m boundaries, *m + 1 open counts, *m atom
 * counts, pointing into the sketch until its next change. */
void qs_kll_bucket_layer(const qs_kll *sk, const double **bound, const uint64_t **open,
                         const uint64_t **atom, uint32_t *m);

/* Accessors. */
uint32_t qs_kll_k(const qs_kll *sk);
uint64_t qs_kll_n(const qs_kll *sk);
uint64_t qs_kll_nan_count(const qs_kll *sk);
double qs_kll_min(const qs_kll *sk);          /* NaN when empty */
double qs_kll_max(const qs_kll *sk);          /* NaN when empty */
uint32_t qs_kll_num_retained(const qs_kll *sk);
uint32_t qs_kll_num_levels(const qs_kll *sk);
int qs_kll_is_estimation_mode(const qs_kll *sk);
uint8_t qs_kll_user_flags(const qs_kll *sk);  /* opaque byte kept for the binding */
void qs_kll_set_user_flags(qs_kll *sk, uint8_t flags);
double qs_kll_normalized_rank_error(uint32_t k, int pmf);

/* Queries.  They build (and cache until the next update) the sorted view of
 * the retained items, hence the non-const sketch.  On an empty sketch every
 * answer is NaN.  Query values must not be NaN (the binding checks). */
qs_status qs_kll_rank(qs_kll *sk, const double *q, size_t len, int inclusive, double *out);
/* p in [0, 1]; quantile(0) is the minimum and quantile(1) the maximum seen. */
qs_status qs_kll_quantile(qs_kll *sk, const double *p, size_t len, int inclusive, double *out);
/* The same queries with a chosen estimator (QS_EST_STEP gives the functions
 * above).  The interpolating estimators are exact wherever the step one is
 * (exact mode, exact low-cardinality mode, and at atoms: values retained more
 * than once), and every rank they give lies within the step estimate's
 * interval [exclusive, inclusive] widened by (2^h - 1)/2 for each level h
 * that holds items. */
qs_status qs_kll_rank_est(qs_kll *sk, const double *q, size_t len, int inclusive, int estimator,
                          double *out);
qs_status qs_kll_quantile_est(qs_kll *sk, const double *p, size_t len, int inclusive,
                              int estimator, double *out);
/* That widening, in items: sum over non-empty levels h of (2^h - 1)/2 (0 in
 * exact mode). */
double qs_kll_interp_slack(const qs_kll *sk);

/* The sorted view: retained items ascending with their weights (2^level).
 * *items and *weights point into the sketch's cache, valid until the next
 * update or merge. */
qs_status qs_kll_sorted_view(qs_kll *sk, const double **items, const uint64_t **cum_weights,
                             uint32_t *size);
/* Retained items of one level, in storage order (for tests and serde). */
qs_status qs_kll_level(const qs_kll *sk, uint32_t level, const double **items, uint32_t *size);

/* Serialization (qs_serde.c).  The format is described there. */
size_t qs_kll_serialized_size(const qs_kll *sk);
qs_status qs_kll_serialize(const qs_kll *sk, uint8_t *buf, size_t cap, size_t *written);
/* On failure returns NULL, sets *status and points *message at a static
 * English sentence naming the problem. */
qs_kll *qs_kll_deserialize(const uint8_t *buf, size_t len, qs_status *status,
                           const char **message);

/* Internal consistency check (levels ordered, higher levels sorted, weights
 * summing to n, items within [min, max]); 0 when consistent.  Used by tests
 * and by the decoder. */
int qs_kll_check_invariants(const qs_kll *sk, const char **message);

#endif /* QS_KLL_H */
