/*
 * qs_kll_internal.h -- the sketch struct, shared by qs_kll.c and qs_serde.c
 * only.  Everything outside csrc/ sees qs_kll as an opaque type.
 */
#ifndef QS_KLL_INTERNAL_H
#define QS_KLL_INTERNAL_H

#include <math.h>

#include "qs_kll.h"

/*
 * What an interpolating estimator needs, built from the levels once per
 * change (qs_interp.c).  Knots are the distinct retained values plus min and
 * max; between two knots the estimated rank moves from hi[i] to lo[i+1]
 * along the estimator's shape (linear in value, or the learned CDF model).
 */
typedef struct qs_est_view {
    uint8_t valid;
    uint32_t size, cap;
    double *x;       /* knots, ascending */
    double *lo;      /* estimated weight of the items < x[i]  */
    double *hi;      /* estimated weight of the items <= x[i] */
    double *sa, *sb; /* learned: normalized Hermite slopes at both ends of segment i */
    uint8_t *logs;   /* the layer's view: segment i is measured in log|x| */
} qs_est_view;

/*
 * The accuracy layer (qs_buckets.c): adaptive buckets with exact counts.
 * m ascending boundaries cut [min, max] into m + 1 open intervals; open[j]
 * counts the items strictly inside interval j (the first one includes min,
 * the last one max) and atom[i] the items equal to bound[i].  Every item is
 * counted exactly from the moment its interval exists; only a split of an
 * interval estimates how the items it already held divide.
 */
typedef struct qs_buckets {
    uint32_t cap;        /* most boundaries; 0: no accuracy layer */
    uint32_t m;          /* boundaries in use */
    double *bound;       /* [cap] ascending */
    uint64_t *open;      /* [cap + 1] */
    uint64_t *atom;      /* [cap] */
    uint64_t next_check; /* the layer is rebalanced when n reaches this */
} qs_buckets;

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
    uint8_t compacted;   /* highest level a compaction has written into; 0 while every
                            item is exact.  Items above it were put there by weighted
                            updates: they are exact, not samples. */
    uint8_t user_flags;  /* opaque to the core, serialized for the binding */
    /* max(m, round(k (2/3)^d)) by depth d = num_levels - 1 - level; depends on k only */
    uint32_t cap_by_depth[QS_KLL_MAX_LEVELS + 1];

    /* Exact low-cardinality mode.  While tab_limit > 0 the stream is held as
     * its distinct values (ascending) with exact counts and the compactors
     * are empty.  The first distinct value beyond tab_limit moves the table
     * into the compactors as weighted items (exact: an item of weight w goes
     * to the levels named by the bits of w), and tab_limit drops to 0 for
     * good. */
    uint32_t tab_limit;
    uint32_t tab_size, tab_cap;
    double *tab_values;
    uint64_t *tab_counts;

    qs_buckets bk;

    /* Caches of the interpolating estimators (qs_interp.c): linear, learned,
     * spline (the accuracy layer's). */
    qs_est_view *est[3];

    /* Cache of the sorted view, rebuilt lazily after any change. */
    uint8_t view_valid;
    uint32_t view_cap;
    uint32_t view_size;
    double *view_items;
    uint64_t *view_cum;  /* cumulative weights: view_cum[i] = weight of view_items[0..i] */
};

/* Every change to the items calls this: the cached views are stale. */
static inline void qs_invalidate(qs_kll *sk)
{
    sk->view_valid = 0;
    if (sk->est[0]) sk->est[0]->valid = 0;
    if (sk->est[1]) sk->est[1]->valid = 0;
    if (sk->est[2]) sk->est[2]->valid = 0;
}

uint32_t qs_kll_compactor_retained(const qs_kll *sk);

/* Where q lies between a and b, in [0, 1], without overflow; 1/2 when the
 * segment is not finite (no value can be placed inside it). */
QS_INLINE double value_fraction(double a, double b, double q)
{
    if (!(isfinite(a) && isfinite(b))) return 0.5;
    const double den = b * 0.5 - a * 0.5;
    if (!(den > 0.0)) return 0.5;
    const double f = (q * 0.5 - a * 0.5) / den;
    return f < 0.0 ? 0.0 : (f > 1.0 ? 1.0 : f);
}

/* Whether (a, b) lies on one side of zero and spans more than `ratio`. */
QS_INLINE int spans(double a, double b, double ratio)
{
    return (a > 0.0 && b > ratio * a) || (b < 0.0 && a < ratio * b);
}

/*
 * The accuracy layer's segments measure positions in log|x| when they span
 * more than three orders of magnitude on one side of zero: no density is
 * flat across such a span, and a cubic in x would put nearly all of the
 * segment's items near its far end (measured: zoom_in's max error 0.85% of n
 * in x, 0.60% in log|x|, every other stream unchanged).
 */
QS_INLINE int log_segment(double a, double b)
{
    return isfinite(a) && isfinite(b) && spans(a, b, 1e3);
}

/* Where q lies in segment (a, b), in [0, 1]: value_fraction, or in log|x|
 * when `logs` (a segment on one side of zero). */
QS_INLINE double coord_fraction(double a, double b, double q, int logs)
{
    if (!logs) return value_fraction(a, b, q);
    const double la = log(fabs(a)), f = (log(fabs(q)) - la) / (log(fabs(b)) - la);
    return f >= 0.0 ? (f > 1.0 ? 1.0 : f) : 0.0; /* also NaN (q = 0 cannot be inside) */
}

/* The inverse: the value at fraction t of segment (a, b). */
QS_INLINE double coord_value(double a, double b, double t, int logs)
{
    double x;
    if (logs) {
        const double la = log(fabs(a));
        x = copysign(exp(la + t * (log(fabs(b)) - la)), a);
    } else {
        x = 2.0 * (a * 0.5 + t * (b * 0.5 - a * 0.5));
    }
    return x < a ? a : (x > b ? b : x);
}

/* coord_fraction by the endpoints alone (no neighbours to judge by) */
QS_INLINE double layer_fraction(double a, double b, double q)
{
    return coord_fraction(a, b, q, log_segment(a, b));
}

/* The normalized shape of one segment: g(0) = 0, g(1) = 1, slopes sa and sb
 * at the ends.  The Hermite cubic, monotone for slopes in [0, 3]; beyond
 * (rational_shape), Gregory and Delbourgo's rational quadratic, monotone for
 * any slopes (a cluster's edge inside a segment needs a steeper end than a
 * cubic has). */
QS_INLINE int rational_shape(double sa, double sb) { return sa > 3.0 || sb > 3.0; }

QS_INLINE double hermite(double t, double sa, double sb)
{
    const double u = 1.0 - t;
    if (rational_shape(sa, sb)) /* rational quadratic: monotone for any slopes */
        return (t * t + sa * t * u) / (1.0 + (sa + sb - 2.0) * t * u);
    return t * t * (3.0 - 2.0 * t) + sa * t * u * u - sb * t * t * u;
}

/*
 * Normalized end slopes of segment j of a monotone piecewise curve through
 * knots x[0..K) whose segment masses are mass[0..K-1), and the coordinate it
 * is measured in (*logs: log|x|, see qs_buckets.c).  The density at a knot is
 * the derivative of the parabola through it and its neighbours, in x or in
 * log|x| (whichever makes the two secants more alike; 0 if either is 0); at
 * min and max scipy's one-sided three-point formula; slopes beyond 3 make the
 * segment a rational quadratic (hermite()).  Widths are halved so that any
 * finite x stays finite.
 */
void qs_pchip_segment(const double *x, const double *mass, uint32_t K, uint32_t j, double *sa,
                      double *sb, uint8_t *logs);

/* Accuracy layer (qs_buckets.c). */
qs_status qs_bk_init(qs_buckets *bk, uint32_t cap);
void qs_bk_free(qs_buckets *bk);
qs_status qs_bk_copy(qs_buckets *dst, const qs_buckets *src);
void qs_bk_count(qs_buckets *bk, const double *x, size_t len);  /* no NaN in x */
void qs_bk_count_weighted(qs_buckets *bk, const double *x, const uint64_t *w, size_t len);
/* The same count for a chunk the bulk path has already classified: ids[i] is
 * the bucket of x[i] among 255 ascending splitters (qs_select_many's sample
 * sort, or for a small chunk partition_classes' selected order statistics,
 * padded with +inf). */
void qs_bk_count_classified(qs_buckets *bk, const double *x, size_t len, const uint8_t *ids,
                            const double *splitters);
/* Rebalance the layer (best effort: no error leaves it broken): QS_BK_CHECK
 * splits the intervals over their limits, looking at most once per n/512
 * items (an O(m) pass); QS_BK_FORCE looks now. */
enum { QS_BK_CHECK = 1, QS_BK_FORCE = 2 };
void qs_bk_rebalance(qs_kll *sk, int mode);
/* The same check after chunk[0..len) was counted by the layer and before it
 * enters the compactors (sk->n does not include it yet; the items before it
 * lay in [old_min, old_max]): splits divide the chunk's items exactly. */
void qs_bk_rebalance_chunk(qs_kll *sk, const double *chunk, size_t len, double old_min,
                           double old_max);
/* Take back qs_bk_count(bk, x, len) (when the compactors could not take x),
 * and the boundaries outside [min, max], the range without x (splits made
 * with x in hand may have put some there). */
void qs_bk_uncount(qs_buckets *bk, const double *x, size_t len, double min, double max);
/* The merged layer of dst and src into out (cap = the smaller cap); dst and
 * src unchanged but for their cached sorted views. */
qs_status qs_bk_merged(qs_kll *dst, qs_kll *src, qs_buckets *out);
int qs_bk_check(const qs_kll *sk, const char **message);
/* The knots, masses and slopes of the layer's CDF (for the spline estimator). */
qs_status qs_bk_view(qs_kll *sk, qs_est_view *v);
qs_status qs_est_reserve(qs_est_view *v, uint32_t n);

/*
 * The weight quantile(p) must reach, p n, rounded to the nearest 2^-20 of an
 * item so that, say, 0.3 * 10 = 3.0000000000000004 means the third item, not
 * the fourth.  Fixed point while p n 2^20 fits 63 bits (no libm call on the
 * hot path); beyond that a 2^-20 item is below double precision anyway.
 * Shared by every estimator, so they agree on which item p names.
 */
static inline double qs_quantile_weight(double p, double n)
{
    if (n < 8796093022208.0) /* 2^43 */
        return (double)(uint64_t)(p * n * 1048576.0 + 0.5) / 1048576.0;
    return p * n;
}
/* out[i] = number of a[0..n) that are <= q[i] (inclusive) or < q[i]. */
void qs_count_below_many(const double *a, size_t n, const double *q, size_t len, int inclusive,
                         size_t *out);
void qs_est_view_free(qs_est_view *v);
uint32_t qs_kll_level_capacity(uint32_t k, uint32_t m, uint32_t num_levels, uint32_t height);
uint32_t qs_kll_total_capacity(uint32_t k, uint32_t m, uint32_t num_levels);
/* The smallest level capacity of a new sketch of parameter k (QS_KLL_SMALL_K). */
uint32_t qs_kll_default_m(uint32_t k);
qs_kll *qs_kll_alloc_empty(uint32_t k, uint32_t m, uint64_t seed, qs_status *status);
void qs_kll_set_k(qs_kll *sk, uint32_t k);

#endif /* QS_KLL_INTERNAL_H */
