/*
 * qs_buckets.c -- the accuracy layer: adaptive buckets with exact counts.
 *
 * KLL's error is the randomness of its compactions: every compaction moves
 * ranks by +-2^h, and no interpolation of the survivors can undo it.  This
 * layer keeps, beside the compactors, up to `cap` boundaries and exact counts
 * of the items between them (and of the items equal to each boundary, so that
 * repeated values are point masses).  Every item is counted exactly from the
 * moment its interval exists, so a count can only be wrong by what was
 * estimated when an interval was split; and that error does not grow
 * afterwards: the count below a boundary is fixed at its creation plus exact
 * counting ever after.  On a stationary stream the splits happen while n is
 * small (while the compactors are still exact, they cost nothing), so the
 * relative error at the boundaries shrinks as n grows.
 *
 * Rebalancing (looked at after every chunk, batch or item, at most once per
 * n/512 items; an O(m) pass unless an interval is over its limit): an
 * interval holding more than its limit,
 * TAU (pi/2) n / (cap + 1) shrunk towards the tails by 2 sqrt(r (1 - r)) at
 * its rank r (t-digest's scale function), is split
 *   - with the chunk in hand: the batch path rebalances after the layer has
 *     counted a chunk and before the chunk enters the compactors, so the
 *     chunk's items divide exactly and only the items held before it are
 *     estimated, from compactors not yet blurred by the chunk's survivors;
 *   - where: at the edge of the chunk's items beyond everything before it
 *     in an end interval, when all of them or enough of them (1/16 of the
 *     chunk) lie there; at the edge of its range (a fence) when it is
 *     the larger part of an interval, or gathers there (1/16 of the chunk),
 *     but a tenth of the interval lies beyond it; else at the median of the
 *     chunk's items inside it when they are the larger part, else at the
 *     weighted median of the retained items inside it (a data value always,
 *     so that heavy values become boundaries and are counted exactly from
 *     then on);
 *   - how the older items divide: exactly while the compactors are exact;
 *     then by the monotone curve (the spline's, qs_pchip_segment) through
 *     the cumulative counts of the buckets, unless the compactors' own
 *     estimate refutes it by more than QS_BK_Z standard deviations
 *     (sqrt(sum of squared weights) / 2 of the retained items inside, at
 *     most QS_BK_SD_TOP top weights;
 *     QS_BK_CONFIRMED_Z when the chunk's own items there confirm the
 *     curve), or at all when the chunk brings a large part of the interval
 *     (the stream is not stationary there: sorted runs, a zoom-in attack
 *     fill an interval unlike its neighbours).  Either way the count below
 *     the split value is clipped to the compactors' guaranteed interval
 *     there, and the compactors' exact items equal to it start its point
 *     mass;
 *   - a chunk that lands beyond everything before it past an empty gap
 *     wider than the older items' part of the end interval (a distribution
 *     shift) is cut off just past the old extreme, over its limit or not
 *     (gap_cut): both sides exact, so that the regimes' tails never share
 *     an interval;
 *   - room: when all boundaries are in use, an adjacent pair is joined
 *     (exact): the one within its limit with the least load plus the error
 *     its joined cubic makes at the removed boundary (room_join);
 *   - spare boundaries: while some are in no use and the point masses hold
 *     most of the items (tied, integer-valued data), intervals are split
 *     down to a quarter of their limit, never making room (QS_BK_SPARE).
 *
 * Estimates (qs_interp.c, estimator "spline") follow the same curve through
 * the cumulative counts with the boundaries' point masses -- a Hermite cubic
 * or, past slope 3, a rational quadratic, in x or in log|x|
 * (segment_logs), following the compactors inside a segment where they
 * refute it and cut at zero where values close in on it (qs_bk_view) --
 * clipped to the compactors' guaranteed interval: they can never be further
 * from the truth than twice KLL's bound.
 *
 * Merging re-cuts each side's intervals at the union of the boundaries along
 * its own cubic (or by counting, for a side whose compactors hold every
 * item), adds the counts, and joins pairs back down to cap boundaries, the
 * cheapest first: load plus what the join forgets of the boundary's count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qs_kll_internal.h"
#include "qs_sort.h"

#define QS_BK_TAU 2.0
/* How many standard deviations of the compactors' estimate refute the cubic.
 * Measured (docs/algorithm.md): 1 keeps smooth data as accurate as 3 does and
 * divides the error of sorted runs by 1.5 and of file-ordered data by 3. */
#define QS_BK_Z 1.0
/* The same for the spline's shape inside a segment: the view follows the
 * cubic unless the compactors refute it by this many; 1 would let their noise
 * through on smooth data (measured: 4x the max error on log_uniform_squared).
 * A refuted segment follows the compactors throughout: clipping its cubic to
 * their count +- this many left it at the edge of what they allow (k = 8 with
 * 4 boundaries, shift: max error 14.7 -> 3.4% of n). */
#define QS_BK_VIEW_Z 3.0
/* ... and a segment whose curve misses the compactors somewhere by more than
 * this many standard deviations of their rank error (eps n / 2.576) follows
 * them throughout (measured: k = 200 with 4 or 16 boundaries, normal data,
 * max error 2.03% / 0.99% -> 0.53% / 0.54% of n against the step function's
 * 0.70%; the default 2k boundaries never reach it on the benchmark). */
#define QS_BK_SEGMENT_Z 2.0
/* The standard deviation of the compactors' count of a span is at most this
 * many weights of their heaviest items, however many items the span holds:
 * KLL's error at a point comes from the few compactions of the top levels,
 * not from every retained item (the sum of w^2 / 4 over the span's items,
 * which the error is otherwise taken as, grows with the span).  Measured with
 * k = 8 and 4-16 boundaries: sorted 9.1 -> 1.0% of n, zoom_in 9.8 -> 0.017%,
 * shift at 1 KB 3.36 -> 2.86%; the default 2k boundaries unchanged. */
#define QS_BK_SD_TOP 1.0
/* A chunk is fenced in when this much of the compactors' weight in the
 * interval lies beyond it on one side. */
#define QS_BK_FENCE 0.1
/* A split's cubic confirmed by at least QS_BK_CONFIRM_MIN of the chunk's
 * items (their share below the split within QS_BK_CONFIRM_SD binomial
 * standard deviations of the cubic's) needs QS_BK_CONFIRMED_Z standard
 * deviations of the compactors to be refuted (measured on shift, 6 seeds:
 * max error 0.48 -> 0.30% of n, no other stream moved; a band of 3 rather
 * than 2 sd: 20 sketch seeds 0.32 -> 0.29%, worst 0.73 -> 0.52%). */
#define QS_BK_CONFIRM_MIN 30.0
#define QS_BK_CONFIRM_SD 3.0
#define QS_BK_CONFIRMED_Z 3.0
/* A chunk gathers in an interval when at least 1/QS_BK_GATHER of it (and
 * QS_BK_GATHER_MIN items) falls there: it is fenced in even when the interval
 * holds more older items (measured, 6 seeds: zoom_in max 0.089 -> 0.021%,
 * nested_clusters 0.47 -> 0.35%; other streams unchanged). */
#define QS_BK_GATHER 16.0
#define QS_BK_GATHER_MIN 64.0
/* A segment spanning more than this ratio on one side of zero is measured in
 * log|x| when the densities around it say so (segment_logs; measured on
 * log_uniform_squared: max error 0.125 -> 0.018% of n). */
#define QS_BK_LOG_SPAN 2.0
/* A segment with less than 1/QS_BK_THIN of its neighbour's items gives a knot
 * density the pair's joint secant, not its own (measured on shift, k = 82, 20
 * sketch seeds: max error 0.30 +- 0.09 -> 0.28%, worst 0.57 -> 0.40%; 31
 * streams, 2 seeds: flights_air_time 0.158 -> 0.139, diamonds_carat 0.29 ->
 * 0.34, the rest within 0.005). */
#define QS_BK_THIN 8.0
/* The steepest normalized end slope of a segment: beyond 3 its shape is a
 * rational quadratic (hermite()), so that a cluster's edge inside a segment is
 * not smeared across it (measured, 6 seeds: mixture max 0.60 -> 0.50%, sorted
 * 0.045 -> 0.029%, diamonds_price 0.33 -> 0.37%; 64 was worse). */
#define QS_BK_SLOPE_MAX 10.0
/* A merge joins the union of two layers' boundaries down to cap: the cost of
 * a join is its load plus this many times how far the joined interval's cubic
 * misses the removed boundary's count (measured over 100 shards at 4 KB:
 * 8 takes zoom_in's max error from 0.99 to 0.38% of n for iid shards, 0.61
 * -> 0.21% for shards in stream order; 4 did half as well, 16 cost the small
 * streams more). */
#define QS_BK_JOIN_MISS 8.0
/* Spare boundaries: while the layer has boundaries in no use and its point
 * masses hold at least QS_BK_ATOM_SHARE of the items beyond one per boundary
 * (integer-valued, rounded or tied data: heavy values fill the point masses
 * and leave the open intervals small, so that few ever reach their limit),
 * intervals are split down to QS_BK_SPARE of their limit, and every split at
 * a data value makes one more value exact from then on.  Continuous data
 * never qualifies (its point masses hold about one item each), so its layer
 * is as before.  Measured, 31 streams at k = 17, 78, 200 and 368, 6 seeds:
 * geomean mean error 0.61x, max 0.74x; flights_dep_delay at k = 78 0.0068 ->
 * 0.0004% of n, births_daily at 200 0.0079 -> 0.0009%, eval_scores at 17
 * 0.041 -> 0.002%; no continuous stream moved; the max error rose at k = 17
 * on diamonds_carat (2.55 -> 3.26%) and flights_dep_delay (0.47 -> 0.60%,
 * its mean 0.059 -> 0.020%): 34 boundaries fill with lighter values first.
 * A half of the limit gained less (0.75x), an eighth cost flights_dep_delay
 * at k = 17 twice the max error; the spare splits counted before the point
 * masses' excess (atoms >= half of n) changed continuous streams too, whose
 * early layer is all boundaries of one item. */
#define QS_BK_SPARE 0.25
#define QS_BK_ATOM_SHARE 0.5

/*
 * The most items interval j may hold: like t-digest's scale function, the
 * intervals shrink towards the tails (by 2 sqrt(r (1 - r)) at rank r), where
 * densities change fastest and where relative accuracy matters most.  The
 * pi/2 keeps the number of intervals of a full layer about cap / TAU.
 */
static double layer_base(double n, uint32_t cap)
{
    return QS_BK_TAU * 1.5707963267948966 * n / (double)(cap + 1);
}

static double interval_limit(double base, double r)
{
    double f = 2.0 * sqrt(r * (1.0 - r));
    if (!(f > 1.0 / 256.0)) f = 1.0 / 256.0;
    const double limit = base * f;
    return limit > 1.0 ? limit : 1.0;
}

qs_status qs_bk_init(qs_buckets *bk, uint32_t cap)
{
    qs_bk_free(bk);
    if (cap == 0) return QS_OK;
    bk->bound = malloc((size_t)cap * sizeof(double));
    bk->open = calloc((size_t)cap + 1, sizeof(uint64_t));
    bk->atom = calloc((size_t)cap, sizeof(uint64_t));
    if (!bk->bound || !bk->open || !bk->atom) {
        qs_bk_free(bk);
        return QS_ENOMEM;
    }
    bk->cap = cap;
    bk->m = 0;
    bk->next_check = 0;
    return QS_OK;
}

void qs_bk_free(qs_buckets *bk)
{
    free(bk->bound);
    free(bk->open);
    free(bk->atom);
    memset(bk, 0, sizeof *bk);
}

qs_status qs_bk_copy(qs_buckets *dst, const qs_buckets *src)
{
    memset(dst, 0, sizeof *dst);
    if (!src->cap) return QS_OK;
    qs_status st = qs_bk_init(dst, src->cap);
    if (st != QS_OK) return st;
    dst->m = src->m;
    dst->next_check = src->next_check;
    memcpy(dst->bound, src->bound, (size_t)src->m * sizeof(double));
    memcpy(dst->open, src->open, ((size_t)src->m + 1) * sizeof(uint64_t));
    memcpy(dst->atom, src->atom, (size_t)src->m * sizeof(uint64_t));
    return QS_OK;
}

/* v rounded to a count in [0, cap] (llround stops at 2^63; counts do not). */
static uint64_t round_count(double v, uint64_t cap)
{
    if (!(v > 0.0)) return 0;
    v += 0.5;
    if (v >= 18446744073709551616.0) return cap;
    const uint64_t r = (uint64_t)v;
    return r > cap ? cap : r;
}

/* The number of boundaries < x (branch-free binary search). */
QS_INLINE uint32_t boundaries_below(const double *b, uint32_t m, double x)
{
    if (m == 0) return 0;
    const double *base = b;
    uint32_t len = m;
    while (len > 1) {
        const uint32_t half = len >> 1;
        base = base[half] < x ? base + half : base;
        len -= half;
    }
    return (uint32_t)(base - b) + (*base < x);
}

void qs_bk_count(qs_buckets *bk, const double *x, size_t len)
{
    const uint32_t m = bk->m;
    const double *b = bk->bound;
    size_t i = 0;
    if (m > 1) {
        /* eight searches in lockstep: their loads overlap instead of queueing */
        for (; i + 8 <= len; i += 8) {
            const double *base[8];
            for (int l = 0; l < 8; l++) base[l] = b;
            for (uint32_t n = m; n > 1; n -= n >> 1) {
                const uint32_t half = n >> 1;
                for (int l = 0; l < 8; l++) base[l] = base[l][half] < x[i + l] ? base[l] + half : base[l];
            }
            for (int l = 0; l < 8; l++) {
                const uint32_t j = (uint32_t)(base[l] - b) + (*base[l] < x[i + l]);
                if (j < m && b[j] == x[i + l]) bk->atom[j]++;
                else bk->open[j]++;
            }
        }
    }
    for (; i < len; i++) {
        const uint32_t j = boundaries_below(b, m, x[i]);
        if (j < m && b[j] == x[i]) bk->atom[j]++;
        else bk->open[j]++;
    }
}

/*
 * The bulk path's classification already placed each item between two of
 * 255 splitters; only the boundaries between those two remain to be searched.
 * A bucket's span (its boundaries between its splitters) sets the depth of a
 * branch-free search that starts at the bucket's first boundary: a few steps
 * where the layer is coarse, never more than the full search where it is
 * fine.  Eight items go at a time, at the deepest of their eight depths (the
 * extra steps read boundaries that are not below the item, or the +inf
 * padding), so that their chains of loads overlap instead of queueing.
 */
void qs_bk_count_classified(qs_buckets *bk, const double *x, size_t len, const uint8_t *ids,
                            const double *splitters)
{
    const uint32_t m = bk->m;
    const double *b = bk->bound;
    /* a search never moves past its bucket's last boundary (<= m), and its
     * first step, the longest, reaches 2^(d-1) - 1 <= m - 1 beyond that */
    double *padded = malloc(((size_t)2 * m + 1) * sizeof(double));
    if (!padded) { /* no room for the shortcut: the full search */
        qs_bk_count(bk, x, len);
        return;
    }
    memcpy(padded, b, (size_t)m * sizeof(double));
    for (uint32_t i = m; i < 2 * m + 1; i++) padded[i] = INFINITY;
    /* An item x of bucket k has s[k-1] <= x <= s[k] (the classification makes
     * the left end strict, the partition of a multiselect does not): the
     * first[k] = #(b < s[k-1]) boundaries are below x, and of the next ones
     * only those < s[k] can be; a search of depth[k] covers them.  Splitters
     * ascend, so one walk along the boundaries finds every count. */
    uint32_t first[256];
    uint8_t depth[256];
    uint32_t lt_prev = 0, lt = 0; /* #(b < s[k-1]), 0 for k = 0; #(b < s[k]) */
    for (uint32_t k = 0; k < 256; k++) {
        if (k < 255) {
            while (lt < m && b[lt] < splitters[k]) lt++;
        } else {
            lt = m;
        }
        first[k] = lt_prev;
        uint8_t d = 0;
        while ((1u << d) <= lt - lt_prev) d++; /* 2^d > span */
        depth[k] = d;
        lt_prev = lt;
    }
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint32_t j[8];
        uint8_t d = 0;
        for (int l = 0; l < 8; l++) {
            j[l] = first[ids[i + l]];
            d = depth[ids[i + l]] > d ? depth[ids[i + l]] : d;
        }
        for (uint32_t h = (1u << d) >> 1; h; h >>= 1)
            for (int l = 0; l < 8; l++) j[l] += padded[j[l] + h - 1] < x[i + l] ? h : 0;
        for (int l = 0; l < 8; l++) {
            uint64_t *count = j[l] < m && padded[j[l]] == x[i + l] ? bk->atom : bk->open;
            count[j[l]]++;
        }
    }
    for (; i < len; i++) {
        const double v = x[i];
        uint32_t j = first[ids[i]];
        for (uint32_t h = (1u << depth[ids[i]]) >> 1; h; h >>= 1) j += padded[j + h - 1] < v ? h : 0;
        if (j < m && padded[j] == v) bk->atom[j]++;
        else bk->open[j]++;
    }
    free(padded);
}

void qs_bk_count_weighted(qs_buckets *bk, const double *x, const uint64_t *w, size_t len)
{
    const uint32_t m = bk->m;
    const double *b = bk->bound;
    for (size_t i = 0; i < len; i++) {
        if (x[i] != x[i]) continue;
        const uint32_t j = boundaries_below(b, m, x[i]);
        if (j < m && b[j] == x[i]) bk->atom[j] += w[i];
        else bk->open[j] += w[i];
    }
}

/* Segment k's density in x (per unit of x, or of log|x| when `logs`); NaN
 * when it has no width there. */
static double secant(const double *x, const double *mass, uint32_t k, int logs)
{
    const double a = x[k], b = x[k + 1];
    if (logs) return mass[k] / fabs(log(b / a)); /* a and b on one side of zero */
    const double h = b * 0.5 - a * 0.5; /* halved: no overflow */
    return h > 0.0 ? 0.5 * (mass[k] / h) : NAN;
}

/* Whether a and b lie on one side of zero (neither is 0). */
static int one_side(double a, double b)
{
    return (a > 0.0 && b > 0.0) || (a < 0.0 && b < 0.0);
}

/*
 * The coordinate knot k's neighbouring secants are judged in, and those
 * secants in it (*s0 below, *s1 above): log|x| (1) when the two neighbouring
 * segments lie on one side of zero, span more than QS_BK_LOG_SPAN together
 * and their secants are more alike in log|x| than in x (a density like 1/x,
 * data spread over decades); x (0) otherwise; -1, with the secants in x,
 * when that cannot be judged (a neighbour missing or empty, or the two
 * across zero).
 */
static int knot_coord(const double *x, const double *mass, uint32_t K, uint32_t k, double *s0, double *s1)
{
    if (k == 0 || k + 1 >= K) return -1;
    const double x0 = secant(x, mass, k - 1, 0), x1 = secant(x, mass, k, 0);
    *s0 = x0;
    *s1 = x1;
    if (mass[k - 1] <= 0.0 || mass[k] <= 0.0) return -1;
    if (!one_side(x[k - 1], x[k + 1])) return -1;
    if (!spans(x[k - 1], x[k + 1], QS_BK_LOG_SPAN)) return 0;
    const double u0 = secant(x, mass, k - 1, 1), u1 = secant(x, mass, k, 1);
    double rx = x1 / x0, ru = u1 / u0; /* |log r| compared as max(r, 1 / r) */
    rx = rx < 1.0 ? 1.0 / rx : rx;
    ru = ru < 1.0 ? 1.0 / ru : ru;
    if (!(rx == rx && ru == ru)) return -1;
    if (!(ru < rx)) return 0;
    *s0 = u0;
    *s1 = u1;
    return 1;
}

/*
 * The coordinate segment j is interpolated in: log|x| when it spans more
 * than three decades on one side of zero (log_segment), or when it spans
 * more than QS_BK_LOG_SPAN times and the secants around its ends are judged
 * in log|x| at one end at least and not in x at the other.
 */
static int segment_logs(const double *x, const double *mass, uint32_t K, uint32_t j)
{
    const double a = x[j], b = x[j + 1];
    if (log_segment(a, b)) return 1;
    if (!spans(a, b, QS_BK_LOG_SPAN)) return 0;
    double s0, s1;
    const int l = knot_coord(x, mass, K, j, &s0, &s1), r = knot_coord(x, mass, K, j + 1, &s0, &s1);
    return (l != 0 && r != 0) && (l == 1 || r == 1);
}

/*
 * The density (per unit of x) at knot k, between segments k - 1 and k, from
 * their secants in the coordinate knot_coord judges them in: NaN when one of
 * them is missing or has no width, 0 when one holds nothing.
 */
static double knot_density(const double *x, const double *mass, uint32_t K, uint32_t k)
{
    if (k == 0 || k + 1 >= K) return NAN;
    if (mass[k - 1] <= 0.0 || mass[k] <= 0.0) return 0.0;
    double s0, s1;
    const int coord = knot_coord(x, mass, K, k, &s0, &s1), logs = coord == 1;
    /* a log segment's density in x says nothing of its neighbour's across zero */
    if (coord < 0 && (segment_logs(x, mass, K, k - 1) || segment_logs(x, mass, K, k))) return NAN;
    const double h0 = mass[k - 1] / s0, h1 = mass[k] / s1;
    /* a segment holding a small part of the pair's items has a count small
     * against the boundaries' errors, and the parabola would lean on its
     * secant most: the pair's joint secant stands in for it */
    if (mass[k] * QS_BK_THIN < mass[k - 1]) s1 = (mass[k - 1] + mass[k]) / (h0 + h1);
    else if (mass[k - 1] * QS_BK_THIN < mass[k]) s0 = (mass[k - 1] + mass[k]) / (h0 + h1);
    /* the derivative of the parabola through the three knots: PCHIP's
     * harmonic mean (scipy) runs low where the density climbs steeply, as at
     * a cluster's tail (measured: shift's max error 0.37 -> 0.26% of n) */
    const double d = (h1 * s0 + h0 * s1) / (h0 + h1);
    return logs ? d / fabs(x[k]) : d;
}


/*
 * The density (in the segment's coordinate) at end `end` of segment j, whose
 * secant is s, where no neighbour lies beyond: scipy's one-sided three-point
 * formula with the segment on the other side, not below 0 (a tail thins out
 * towards min or max; the lone secant drew it straight: zero_inflated's max
 * error 0.154 -> 0.052% of n at 4 KB).  The lone secant when there is no
 * such segment or it is across zero from a log segment.
 */
static double end_density(const double *x, const double *mass, uint32_t K, uint32_t j, int end, int logs,
                          double s)
{
    const uint32_t k = j + (uint32_t)end;
    const int64_t nb = end ? (int64_t)j - 1 : (int64_t)j + 1;
    if (!(k == 0 || k + 1 == K) || nb < 0 || nb + 1 >= (int64_t)K) return s;
    if (logs && !one_side(x[nb], x[nb + 1])) return s;
    const double s1 = secant(x, mass, (uint32_t)nb, logs);
    const double h0 = mass[j] / s, h1 = mass[nb] / s1;
    if (!(s1 >= 0.0 && h1 > 0.0 && isfinite(h1))) return s;
    const double d = ((2.0 * h0 + h1) * s - h0 * s1) / (h0 + h1);
    return d > 0.0 ? d : 0.0;
}

void qs_pchip_segment(const double *x, const double *mass, uint32_t K, uint32_t j, double *sa,
                      double *sb, uint8_t *logs_out)
{
    *sa = *sb = 1.0;
    /* the slopes are of the cubic in the segment's own coordinate */
    const int logs = segment_logs(x, mass, K, j);
    if (logs_out) *logs_out = (uint8_t)logs;
    const double s = secant(x, mass, j, logs);
    if (!(isfinite(s) && s > 0.0)) return;
    double d[2];
    for (int end = 0; end < 2; end++) {
        const uint32_t k = j + (uint32_t)end;
        const double dx = knot_density(x, mass, K, k);
        d[end] = dx != dx ? end_density(x, mass, K, j, end, logs, s) : (logs ? dx * fabs(x[k]) : dx);
    }
    /* infinite secants (widths near the smallest subnormal) give NaN: linear then */
    const double na = d[0] / s, nb2 = d[1] / s;
    *sa = na == na ? (na < 0.0 ? 0.0 : (na > QS_BK_SLOPE_MAX ? QS_BK_SLOPE_MAX : na)) : 1.0;
    *sb = nb2 == nb2 ? (nb2 < 0.0 ? 0.0 : (nb2 > QS_BK_SLOPE_MAX ? QS_BK_SLOPE_MAX : nb2)) : 1.0;
}

/* Knots of the layer: min, the boundaries, max; segment j is interval j. */
static void layer_knots(const qs_buckets *bk, double min, double max, double *x, double *mass)
{
    x[0] = min;
    for (uint32_t i = 0; i < bk->m; i++) x[i + 1] = bk->bound[i];
    x[bk->m + 1] = max;
    for (uint32_t j = 0; j <= bk->m; j++) mass[j] = (double)bk->open[j];
}

/* The fraction of interval j's open mass below s, along the cubic. */
static double open_fraction(const double *x, const double *mass, uint32_t K, uint32_t j, double s)
{
    double sa, sb;
    uint8_t logs;
    qs_pchip_segment(x, mass, K, j, &sa, &sb, &logs);
    return hermite(coord_fraction(x[j], x[j + 1], s, logs), sa, sb);
}

/* The first retained item of [ia, ib) (ia < ib) of a sorted view reaching
 * half of their weight. */
static double weighted_median(const double *items, const uint64_t *cum, uint32_t ia, uint32_t ib)
{
    const uint64_t base = ia ? cum[ia - 1] : 0, W = cum[ib - 1] - base;
    uint32_t lo = ia, hi = ib - 1;
    while (lo < hi) {
        const uint32_t mid = lo + (hi - lo) / 2;
        if (2 * (cum[mid] - base) < W) lo = mid + 1;
        else hi = mid;
    }
    return items[lo];
}

/* The retained weight below the run of equal items [f, e) of a sorted view,
 * plus half of the run's (the compactors' count below that value, read as a
 * mid-rank), counted from `base`. */
static double run_mid(const uint64_t *cum, uint64_t base, uint32_t f, uint32_t e)
{
    return 0.5 * ((double)((f ? cum[f - 1] : 0) - base) + (double)(cum[e - 1] - base));
}

/*
 * Over retained items [a, b) of a sorted view: the sum of the weights and of
 * their squares, of the sampled items only -- weight above 1 (level 0 is
 * exact) and at most 2^compacted (weighted items above every compaction are
 * exact).  Each sampled item of weight w stands for w items somewhere near
 * it: a variance of about w^2 / 4.
 */
static void sampled_weights(const qs_kll *sk, const uint64_t *cum, uint32_t a, uint32_t b, double *sum,
                            double *sum2)
{
    const double sampled = ldexp(1.0, sk->compacted);
    double s1 = 0.0, s2 = 0.0;
    for (uint32_t i = a; i < b; i++) {
        const double w = (double)(cum[i] - (i ? cum[i - 1] : 0));
        if (w > 1.0 && w <= sampled) {
            s1 += w;
            s2 += w * w;
        }
    }
    if (sum) *sum = s1;
    if (sum2) *sum2 = s2;
}

/* The standard deviation of the compactors' count of a span whose sampled
 * items' squared weights add up to w2 (QS_BK_SD_TOP). */
static double sampled_sd(const qs_kll *sk, double w2)
{
    return fmin(0.5 * sqrt(w2), QS_BK_SD_TOP * ldexp(1.0, sk->compacted));
}

/* Knot t of the layer, t = 0 .. m + 1: min, the boundaries, max. */
static double layer_knot(const qs_kll *sk, uint32_t t)
{
    return t == 0 ? sk->min : (t == sk->bk.m + 1 ? sk->max : sk->bk.bound[t - 1]);
}

/*
 * open_fraction from the layer itself, for the span between knots t0 < t1:
 * interval t0 when t1 = t0 + 1, else the intervals between joined into one
 * (the boundaries' own counts with them).  Only the knots t0 - 1 .. t1 + 1
 * matter.
 */
static double span_fraction(const qs_kll *sk, uint32_t t0, uint32_t t1, double s)
{
    const qs_buckets *bk = &sk->bk;
    double x[4], mass[3];
    uint32_t K = 0;
    if (t0 > 0) {
        x[K] = layer_knot(sk, t0 - 1);
        mass[K++] = (double)bk->open[t0 - 1];
    }
    const uint32_t span = K;
    x[K] = layer_knot(sk, t0);
    mass[K] = 0.0;
    for (uint32_t t = t0; t < t1; t++) mass[K] += (double)bk->open[t] + (t + 1 < t1 ? (double)bk->atom[t] : 0.0);
    x[++K] = layer_knot(sk, t1);
    if (t1 <= bk->m) {
        mass[K] = (double)bk->open[t1];
        x[++K] = layer_knot(sk, t1 + 1);
    }
    return open_fraction(x, mass, K + 1, span, s);
}

/* The fraction of interval j's open mass below s, along the cubic. */
static double local_fraction(const qs_kll *sk, uint32_t j, double s)
{
    return span_fraction(sk, j, j + 1, s);
}

/* Join boundary i into one interval with its neighbours (exact). */
static void join_at(qs_buckets *bk, uint32_t i)
{
    bk->open[i] += bk->atom[i] + bk->open[i + 1];
    memmove(bk->bound + i, bk->bound + i + 1, (size_t)(bk->m - i - 1) * sizeof(double));
    memmove(bk->atom + i, bk->atom + i + 1, (size_t)(bk->m - i - 1) * sizeof(uint64_t));
    memmove(bk->open + i + 1, bk->open + i + 2, (size_t)(bk->m - i - 1) * sizeof(uint64_t));
    bk->m--;
}

/* A merge's cost of joining the two intervals beside a boundary: their mass
 * (with `before` items below them) plus QS_BK_JOIN_MISS times how far the
 * joined interval's cubic misses the boundary's count, relative to the joined
 * interval's limit (join_down). */
static double join_cost(double mass, double miss, double before, double base, double n)
{
    return (mass + QS_BK_JOIN_MISS * miss) / interval_limit(base, (before + 0.5 * mass) / n);
}


/*
 * What a rebalance works from: the compactors' sorted view, the layer's
 * total n, KLL's bound there, and the chunk being ingested, if any: items
 * already counted by the layer but not yet in the compactors.  Those are
 * known exactly, so a split divides them exactly; only the items counted
 * before them are estimated (from compactors that do not hold the chunk yet,
 * so the chunk's coarse survivors never blur them).  The chunk's items inside
 * the interval being split are gathered and sorted once, and serve every
 * split inside that range.
 */
typedef struct {
    const double *items; /* the compactors' sorted view */
    const uint64_t *cum;
    uint32_t R;
    double n;     /* items in the layer */
    double base;  /* layer_base(n, cap) */
    double eps_n; /* KLL's bound on the compactors' rank error, in items */
    const double *chunk; /* exact items counted by the layer, not in the compactors */
    size_t chunk_len;
    double old_min, old_max; /* the range of the items counted before the chunk */
    double *fresh; /* the chunk's items in (fresh_lo, fresh_hi), ascending */
    size_t fresh_len;
    double fresh_lo, fresh_hi; /* -inf / +inf: open ends */
    size_t fresh_le_lo;        /* chunk items <= fresh_lo */
    int has_fresh;
    double force; /* the value to split at, or NaN: split_interval chooses */
} split_ctx;

/* Gather the chunk's items of the open range (lo, hi), sorted; 0 on ENOMEM. */
static int gather_fresh(split_ctx *cx, double lo, double hi)
{
    if (!cx->fresh) {
        cx->fresh = malloc((cx->chunk_len ? cx->chunk_len : 1) * sizeof(double));
        if (!cx->fresh) return 0;
    }
    size_t g = 0, le = 0;
    for (size_t i = 0; i < cx->chunk_len; i++) {
        const double v = cx->chunk[i];
        cx->fresh[g] = v;
        g += (v > lo) & (v < hi);
        le += v <= lo;
    }
    qs_sort_doubles(cx->fresh, g);
    cx->fresh_len = g;
    cx->fresh_lo = lo;
    cx->fresh_hi = hi;
    cx->fresh_le_lo = le;
    cx->has_fresh = 1;
    return 1;
}

/*
 * The boundary to remove to make room for a split: among the adjacent pairs
 * whose joined interval stays within its limit (other than interval keep's
 * own boundaries), the one with the least load plus the error the join makes:
 * how far the joined interval's cubic misses the removed boundary's count,
 * relative to the limit.  Joining across a gap between clusters would leave
 * one cubic to span it; the lightest pair alone does not see that.  -1 if no
 * pair fits or every fitting join would miss by more than a quarter of its
 * limit (the split then waits).
 */
static int64_t room_join(const qs_kll *sk, double base, double n, int64_t keep)
{
    const qs_buckets *bk = &sk->bk;
    const uint32_t m = bk->m;
    int64_t best = -1;
    double best_score = INFINITY, before = 0.0;
    for (uint32_t i = 0; i < m; i++) {
        const double a = (double)bk->open[i], at = (double)bk->atom[i], b = (double)bk->open[i + 1];
        const double mass = a + at + b, limit = interval_limit(base, (before + 0.5 * mass) / n);
        before += a + at;
        if (mass > limit || (int64_t)i == keep || (int64_t)i == keep - 1) continue;
        /* the joined interval runs from knot i to knot i + 2 (boundary i is knot i + 1) */
        const double err = fabs(mass * span_fraction(sk, i, i + 2, bk->bound[i]) - (a + 0.5 * at));
        const double score = (mass + err) / limit;
        /* a join that costs a quarter of a limit is worse than a split waiting */
        if (score < best_score && err <= 0.25 * limit) {
            best_score = score;
            best = i;
        }
    }
    return best;
}

/* First index in [lo, hi) of a with a[i] > x (strict) or >= x. */
static size_t first_above(const double *a, size_t lo, size_t hi, double x, int strict)
{
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (strict ? a[mid] <= x : a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/*
 * Split interval j (with `before` items below it) at the median of its
 * items: of the chunk's, when they are the larger part, else of the
 * compactors' (weighted).  Returns the index of its left part (j, or j - 1
 * when room was made below it), -1 when it cannot (no item to split at, no
 * room, no memory).
 */
static int64_t split_interval(qs_kll *sk, uint32_t j, split_ctx *cx, double before)
{
    qs_buckets *bk = &sk->bk;
    const uint32_t m = bk->m;
    const double lo = j == 0 ? sk->min : bk->bound[j - 1], hi = j == m ? sk->max : bk->bound[j];
    /* the open range of the interval: the first one from -inf, the last one to +inf */
    const double olo = j == 0 ? -INFINITY : lo, ohi = j == m ? INFINITY : hi;
    /* the chunk's items inside, and below */
    size_t fa = 0, fb = 0;
    double fresh_below = 0.0;
    if (cx->chunk) {
        if (!(cx->has_fresh && cx->fresh_lo <= olo && ohi <= cx->fresh_hi) && !gather_fresh(cx, olo, ohi))
            return -1;
        fa = first_above(cx->fresh, 0, cx->fresh_len, olo, 1);
        fb = first_above(cx->fresh, fa, cx->fresh_len, ohi, 0);
        fresh_below = (double)(cx->fresh_le_lo + fa);
    }
    const double c = (double)bk->open[j], c_fresh = (double)(fb - fa), c_old = c - c_fresh;
    /* the compactors' items in the interval: (lo, hi), the first one from min, the last one to max */
    const double *items = cx->items;
    const uint64_t *cum = cx->cum;
    const uint32_t ia = (uint32_t)first_above(items, 0, cx->R, lo, j > 0);
    const uint32_t ib = (uint32_t)first_above(items, ia, cx->R, hi, j == m);
    const uint64_t base = ia ? cum[ia - 1] : 0, W = ib > ia ? cum[ib - 1] - base : 0;
    /* the chunk gathers here, far beyond a stationary stream's share (a full
     * layer's intervals each hold at most about 2% of the items) */
    const double gathers = fmax(QS_BK_GATHER_MIN, (double)cx->chunk_len / QS_BK_GATHER);
    const int concentrated = c_fresh >= gathers;
    /* the chunk's items are the larger part (or all the compactors show) */
    const int fresh_major = c_fresh >= c_old || W == 0;
    /* in an end interval, the chunk's items beyond everything counted before
     * it: fresh[up .. fb) above the old max, fresh[fa .. down) below the old
     * min (a shift, a sorted run) */
    size_t up = fb, down = fa;
    if (fb > fa && c_old > 0.0 && j == m) up = first_above(cx->fresh, fa, fb, cx->old_max, 1);
    if (fb > fa && c_old > 0.0 && j == 0) down = first_above(cx->fresh, fa, fb, cx->old_min, 0);
    double s;
    if (cx->force == cx->force) {
        s = cx->force;
    } else if (up < fb && (up == fa || (double)(fb - up) >= gathers)) {
        /* the boundary goes between them, and both sides are exact: all of
         * the chunk lies beyond, or enough of it that the interval would
         * otherwise mix the new regime with the old one's tail, whose share
         * of later splits only the coarse compactors could tell (a shift
         * inside a chunk, k = 8: max error 3.0 -> 2.7% of n) */
        s = cx->fresh[up];
    } else if (down > fa && (down == fb || (double)(down - fa) >= gathers)) {
        s = cx->fresh[down - 1];
    } else if (fb > fa && (fresh_major || concentrated)) {
        s = fresh_major ? cx->fresh[fa + (fb - fa) / 2] : weighted_median(items, cum, ia, ib);
        /* the chunk falls inside a narrower range than the items before it
         * (a zoom-in, a cluster inside a cluster): fence it in first, so that
         * neither side mixes a dense new cluster with the old items around it
         * (a cubic cannot follow that) */
        const double f_lo = cx->fresh[fa], f_hi = cx->fresh[fb - 1];
        const uint32_t i_lo = (uint32_t)first_above(items, ia, ib, f_lo, 0);
        const uint32_t i_hi = (uint32_t)first_above(items, ia, ib, f_hi, 1);
        const double w_below = (double)((i_lo ? cum[i_lo - 1] : 0) - base);
        const double w_above = (double)(ib > i_hi ? cum[ib - 1] - (i_hi ? cum[i_hi - 1] : 0) : 0);
        /* beyond it: by the compactors' weights, or by the interval's width
         * (they may hold no item of a few old ones) */
        const double g_lo = layer_fraction(lo, hi, f_lo), g_hi = layer_fraction(lo, hi, f_hi);
        if (c_old > 0.0 && f_lo > sk->min && (w_below >= QS_BK_FENCE * (double)W || g_lo >= QS_BK_FENCE))
            s = f_lo;
        else if (c_old > 0.0 && f_hi < sk->max &&
                 (w_above >= QS_BK_FENCE * (double)W || g_hi <= 1.0 - QS_BK_FENCE))
            s = f_hi;
    } else if (W > 0) {
        s = weighted_median(items, cum, ia, ib);
    } else {
        return -1;
    }
    /* the chunk's items: exact */
    const size_t f_lt = first_above(cx->fresh ? cx->fresh : items, fa, fb, s, 0);
    const size_t f_le = first_above(cx->fresh ? cx->fresh : items, f_lt, fb, s, 1);
    uint64_t a = (uint64_t)(f_le - f_lt), l = (uint64_t)(f_lt - fa);
    const uint64_t old = bk->open[j] - (uint64_t)(fb - fa); /* counts beyond 2^53: in integers */
    /* the items counted before the chunk: estimated */
    if (old > 0) {
        const uint32_t s_beg = (uint32_t)first_above(items, ia, ib, s, 0);
        const uint32_t s_end = (uint32_t)first_above(items, s_beg, ib, s, 1);
        const double w_left = (double)((s_beg ? cum[s_beg - 1] : 0) - base);
        const double w_at = (double)((s_end ? cum[s_end - 1] : 0) - (s_beg ? cum[s_beg - 1] : 0));
        double at_old = 0.0, left_old;
        if (!sk->compacted && W > 0) { /* the compactors are exact: so is the split */
            at_old = c_old * (w_at / (double)W);
            left_old = c_old * (w_left / (double)W);
        } else {
            /* the items already held go to the open parts, but for the exact
             * retained items equal to s (a compactor weight says little about
             * how many equal s); s is counted exactly from now on.
             * The cubic divides them, unless the compactors refute it: each
             * retained item of weight w stands for w items somewhere near it, a
             * variance of about w^2 / 4 (items of level 0 and weighted items
             * above every compaction are exact) */
            left_old = c_old * local_fraction(sk, j, s);
            if (W > 0) {
                double w2, w_at_sampled;
                sampled_weights(sk, cum, ia, ib, NULL, &w2);
                sampled_weights(sk, cum, s_beg, s_end, &w_at_sampled, NULL);
                /* a sampled item at s stands for items on both sides of it (an
                 * exact one is all at s) */
                const double scale = c_old / (double)W;
                const double kll_left = (w_left + 0.5 * w_at_sampled) * scale;
                const double spread = sampled_sd(sk, w2) * scale;
                /* when the chunk brings much of the interval, the stream is not
                 * stationary here, and a cubic through counts that mostly hold
                 * the chunk says nothing of the items before it */
                double z = c_fresh > 0.25 * c_old ? 0.0 : QS_BK_Z;
                /* the chunk's own items in the interval are a sample of its
                 * distribution where the stream is stationary: when enough of
                 * them fall below s as the cubic says (within 3 binomial sd),
                 * the compactors' coarse weights must refute it more firmly */
                if (z > 0.0 && c_fresh >= QS_BK_CONFIRM_MIN) {
                    const double g = left_old / c_old, f = ((double)l + 0.5 * (double)a) / c_fresh;
                    if (fabs(f - g) <= QS_BK_CONFIRM_SD * sqrt(g * (1.0 - g) / c_fresh) + 1.0 / c_fresh)
                        z = QS_BK_CONFIRMED_Z;
                }
                if (!(fabs(left_old - kll_left) <= z * spread)) left_old = kll_left;
                /* the exact retained items at s (level 0: not compacted yet)
                 * are older items equal to s: the point mass's, not the open
                 * parts' (measured: on diamonds_price, file order, k = 368,
                 * the final boundaries' counts below them were off by 7.1 items
                 * on average, 4.3 too low, and are now off by 3.8, 0.9 too low;
                 * mean error 0.0188 -> 0.0121% of n over 6 sketch seeds, but
                 * 0.64-1.13x at k from 200 to 500, geomean 0.93x; 31 streams
                 * at four k: geomean 0.99x mean, 1.00x max.  Unscaled: scaled
                 * by the interval's count over the compactors' weight they
                 * overfilled point masses by up to 25 items) */
                at_old = fmin(w_at - w_at_sampled, c_old); /* counts, not estimates: unscaled */
            }
            /* clip the count below s to the compactors' guaranteed interval there */
            const double step_below = (double)(s_beg ? cum[s_beg - 1] : 0);
            const double before_old = before - fresh_below;
            const double lo_left = step_below - cx->eps_n - before_old;
            const double hi_left = step_below + w_at + cx->eps_n - before_old;
            if (left_old < lo_left) left_old = lo_left;
            if (left_old > hi_left) left_old = hi_left;
        }
        /* the older items lie within the range they had before the chunk */
        if (s > cx->old_max) left_old = c_old, at_old = 0.0;
        if (s <= cx->old_min) left_old = 0.0;
        if (s < cx->old_min) at_old = 0.0;
        const uint64_t a_old = round_count(at_old, old);
        a += a_old;
        l += round_count(left_old, old - a_old);
    }
    /* [min, s) is empty when s = min, and (s, max] when s = max: what an
     * estimate put there equals s (an all-equal stream is one point mass) */
    if (j == 0 && s == sk->min) {
        a += l;
        l = 0;
    }
    if (j == m && s == sk->max) a = bk->open[j] - l;
    if (m == bk->cap) { /* make room (never by joining j's own boundaries) */
        const int64_t i = room_join(sk, cx->base, cx->n, j);
        if (i < 0) return -1;
        join_at(bk, (uint32_t)i);
        if ((uint32_t)i < j) j--;
    }
    const uint64_t total = bk->open[j];
    memmove(bk->bound + j + 1, bk->bound + j, (size_t)(bk->m - j) * sizeof(double));
    memmove(bk->atom + j + 1, bk->atom + j, (size_t)(bk->m - j) * sizeof(uint64_t));
    memmove(bk->open + j + 2, bk->open + j + 1, (size_t)(bk->m - j) * sizeof(uint64_t));
    bk->bound[j] = s;
    bk->atom[j] = a;
    bk->open[j] = l;
    bk->open[j + 1] = total - a - l;
    bk->m++;
    return j; /* the left part's index */
}

/* Whether the layer has spare boundaries to spend on point masses (see
 * QS_BK_SPARE): the limits then shrink to QS_BK_SPARE of themselves. */
static int spare_boundaries(const qs_buckets *bk, double n)
{
    if (bk->m >= bk->cap) return 0;
    double atoms = 0.0;
    for (uint32_t j = 0; j < bk->m; j++) atoms += (double)bk->atom[j];
    return atoms - (double)bk->m >= QS_BK_ATOM_SHARE * n;
}

/* Whether some interval holds more than its limit (an O(m) pass). */
static int over_limit(const qs_buckets *bk, double n)
{
    const double base = layer_base(n, bk->cap) * (spare_boundaries(bk, n) ? QS_BK_SPARE : 1.0);
    double before = 0.0;
    for (uint32_t j = 0; j <= bk->m; j++) {
        const double c = (double)bk->open[j];
        if (c > interval_limit(base, (before + 0.5 * c) / n)) return 1;
        before += c + (j < bk->m ? (double)bk->atom[j] : 0.0);
    }
    return 0;
}

/* One pass over the intervals, splitting each one over its limit (from
 * `base`) until it is within it or cannot split; without `make_room`, only
 * while boundaries are free.  Each split takes one of *budget.  Whether any
 * split was made. */
static int split_pass(qs_kll *sk, split_ctx *cx, double base, int make_room, uint32_t *budget)
{
    qs_buckets *bk = &sk->bk;
    int changed = 0;
    double before = 0.0; /* items below interval j */
    for (uint32_t j = 0; j <= bk->m && (make_room || bk->m < bk->cap);) {
        const double c = (double)bk->open[j];
        if (*budget && c > interval_limit(base, (before + 0.5 * c) / cx->n)) {
            const int64_t left = split_interval(sk, j, cx, before);
            if (left >= 0) { /* the items below its left part are the same: check that part again */
                j = (uint32_t)left;
                (*budget)--;
                changed = 1;
                continue;
            }
        }
        before += c + (j < bk->m ? (double)bk->atom[j] : 0.0);
        j++;
    }
    return changed;
}

/* Split at the gap cuts (NaN: none), then every interval over its limit,
 * then, while boundaries are spare, every interval over QS_BK_SPARE of its
 * limit, with n items in the layer and chunk[0..len) of them not yet in the
 * compactors. */
static void rebalance(qs_kll *sk, uint64_t n_items, const double *chunk, size_t len, double old_min,
                      double old_max, double cut_low, double cut_high)
{
    qs_buckets *bk = &sk->bk;
    split_ctx cx;
    memset(&cx, 0, sizeof cx);
    cx.force = NAN;
    if (qs_kll_sorted_view(sk, &cx.items, &cx.cum, &cx.R) != QS_OK) return;
    if (cx.R == 0 && len == 0) return;
    cx.n = (double)n_items;
    cx.base = layer_base(cx.n, bk->cap);
    cx.eps_n = qs_kll_normalized_rank_error(sk->k, 0) * (double)(sk->n);
    cx.chunk = len ? chunk : NULL;
    cx.chunk_len = len;
    cx.old_min = old_min;
    cx.old_max = old_max;
    int changed = 0;
    if (cut_low == cut_low) {
        cx.force = cut_low;
        changed |= split_interval(sk, 0, &cx, 0.0) >= 0;
        cx.force = NAN;
    }
    if (cut_high == cut_high) {
        cx.force = cut_high;
        changed |= split_interval(sk, bk->m, &cx, cx.n - (double)bk->open[bk->m]) >= 0;
        cx.force = NAN;
    }
    uint32_t budget = 4 * bk->cap + 16; /* splits per rebalance */
    changed |= split_pass(sk, &cx, cx.base, 1, &budget);
    /* spare boundaries: never makes room, it stops when the layer is full */
    if (spare_boundaries(bk, cx.n)) changed |= split_pass(sk, &cx, QS_BK_SPARE * cx.base, 0, &budget);
    free(cx.fresh);
    if (changed) qs_invalidate(sk);
}

/* Checked again after n/512 more items: an interval that cannot be split yet
 * (no item inside to split at, no room) costs one O(m) pass per check.
 * QS_BK_FORCE looks now, but a rebalance splits only the intervals over their
 * limits, so it runs only when there is one (a merge's joins seldom leave any,
 * and the pass is much cheaper than the sorted view a rebalance builds). */
static int due(qs_buckets *bk, uint64_t n, int mode)
{
    if (mode != QS_BK_FORCE && n < bk->next_check) return 0;
    bk->next_check = n + (n / 512 > 64 ? n / 512 : 64);
    return over_limit(bk, (double)n);
}

void qs_bk_rebalance(qs_kll *sk, int mode)
{
    if (!sk->bk.cap || sk->n == 0 || !due(&sk->bk, sk->n, mode)) return;
    rebalance(sk, sk->n, NULL, 0, sk->min, sk->max, NAN, NAN);
}

/*
 * Where to cut off a chunk that lands beyond everything counted before it,
 * past an empty gap wider than the older items' part of the end interval (a
 * distribution shift): just past the old extreme.  Both sides of that cut are
 * exact (the older items all lie on one side), and the old regime's tail never
 * shares a cubic with the new regime's, which later chunks fill in towards
 * the gap.  Without it the cut goes at the chunk's nearest item, and the
 * interval below it ends up holding the old tail, the gap and the new tail
 * (measured, shift at k = 368, 4 seeds: max error 0.106 -> 0.032% of n; k =
 * 200: 0.155 -> 0.113%; pareto at k = 17: 0.199 -> 0.124%; no other stream
 * of the 31 moved at 4 sizes; a gap of a quarter or 4x the span did no
 * better).  NaN when there is no such gap on that side.
 */
static double gap_cut(const qs_kll *sk, const double *chunk, size_t len, double old_min, double old_max,
                      int high)
{
    const qs_buckets *bk = &sk->bk;
    if (high ? !(sk->max > old_max) : !(sk->min < old_min)) return NAN;
    double near = high ? INFINITY : -INFINITY; /* the chunk's item nearest the old range, beyond it */
    for (size_t i = 0; i < len; i++) {
        const double v = chunk[i];
        if (high ? (v > old_max && v < near) : (v < old_min && v > near)) near = v;
    }
    if (high) {
        const double lo = bk->m ? bk->bound[bk->m - 1] : old_min;
        return old_max > lo && near - old_max > old_max - lo ? nextafter(old_max, INFINITY) : NAN;
    }
    const double hi = bk->m ? bk->bound[0] : old_max;
    return hi > old_min && old_min - near > hi - old_min ? nextafter(old_min, -INFINITY) : NAN;
}

void qs_bk_rebalance_chunk(qs_kll *sk, const double *chunk, size_t len, double old_min, double old_max)
{
    const uint64_t n = sk->n + len;
    if (!sk->bk.cap || n == 0) return;
    /* (the first chunk has no older items to cut off) */
    const double cut_low = sk->n ? gap_cut(sk, chunk, len, old_min, old_max, 0) : NAN;
    const double cut_high = sk->n ? gap_cut(sk, chunk, len, old_min, old_max, 1) : NAN;
    if (!due(&sk->bk, n, QS_BK_CHECK) && cut_low != cut_low && cut_high != cut_high) return;
    rebalance(sk, n, chunk, len, old_min, old_max, cut_low, cut_high);
}

void qs_bk_uncount(qs_buckets *bk, const double *x, size_t len, double min, double max)
{
    for (size_t i = 0; i < len; i++) {
        const uint32_t j = boundaries_below(bk->bound, bk->m, x[i]);
        if (j < bk->m && bk->bound[j] == x[i]) bk->atom[j]--;
        else bk->open[j]--;
    }
    /* what lies beyond them held only x's items: their counts are zero now */
    while (bk->m && bk->bound[bk->m - 1] > max) join_at(bk, bk->m - 1);
    while (bk->m && bk->bound[0] < min) join_at(bk, 0);
}

/*
 * One side of a merge, re-cut at the sorted union U[0..u) of the boundaries:
 * open_out[0..u] and atom_out[0..u) are added to.  Inside an interval the
 * open mass is divided along the side's cubic -- or counted, when the side's
 * compactors still hold every item (a small shard: its ties then land on
 * the other side's boundaries as the atoms they are); rounding is
 * cumulative, so the side's total is kept exactly.
 */
static qs_status recut_add(qs_kll *sk, const double *U, uint32_t u, double *x, double *mass,
                           uint64_t *open_out, uint64_t *atom_out)
{
    const qs_buckets *bk = &sk->bk;
    if (sk->n == 0) return QS_OK;
    const uint32_t m = bk->m, K = m + 2;
    layer_knots(bk, sk->min, sk->max, x, mass);
    const double *items = NULL;
    const uint64_t *cum = NULL;
    uint32_t R = 0;
    if (!sk->compacted) {
        qs_status st = qs_kll_sorted_view(sk, &items, &cum, &R);
        if (st != QS_OK) return st;
    }
    uint64_t below_prev = 0; /* items <= U[t - 1] */
    uint64_t before_j = 0;   /* items before interval j's open part */
    uint32_t j = 0;          /* interval of the side holding the current point */
    for (uint32_t t = 0; t <= u; t++) {
        uint64_t lt, le; /* items < U[t], items <= U[t] */
        if (t == u) {
            lt = le = sk->n;
        } else {
            const double q = U[t];
            while (j < m && bk->bound[j] < q) {
                before_j += bk->open[j] + bk->atom[j];
                j++;
            }
            if (j < m && bk->bound[j] == q) {
                lt = before_j + bk->open[j];
                le = lt + bk->atom[j];
            } else if (q < sk->min) {
                lt = le = 0;
            } else if (q > sk->max) {
                lt = le = sk->n;
            } else if (items) {
                const size_t a = first_above(items, 0, R, q, 0), b = first_above(items, a, R, q, 1);
                lt = a ? cum[a - 1] : 0;
                le = b ? cum[b - 1] : 0;
                /* the layer counted the same items: stay inside interval j all the same */
                const uint64_t top = before_j + bk->open[j];
                lt = lt < before_j ? before_j : (lt > top ? top : lt);
                le = le < lt ? lt : (le > top ? top : le);
            } else if (q == sk->min && sk->min < sk->max) {
                lt = le = 0; /* nothing below min (items equal to it: above the cut) */
            } else if (q == sk->max && sk->min < sk->max) {
                lt = le = sk->n; /* nothing above max */
            } else if (x[j] == x[j + 1]) { /* a one-value interval: its items all equal q */
                lt = before_j;
                le = before_j + bk->open[j];
            } else {
                const double c = (double)bk->open[j];
                lt = le = before_j + round_count(c * open_fraction(x, mass, K, j, q), bk->open[j]);
            }
        }
        if (lt < below_prev) lt = below_prev; /* rounding never runs backwards */
        if (le < lt) le = lt;
        open_out[t] += lt - below_prev;
        if (t < u) atom_out[t] += le - lt;
        below_prev = le;
    }
    return QS_OK;
}

/*
 * How far the cubic of the interval that joining at boundary i would make
 * misses the count below U[i] (plus half its atom) inside it -- what the join
 * forgets.  The layer in merge: boundaries U[0..u) linked by prev/next,
 * interval counts at the index of the boundary to their right, [min, max] its
 * range.  0 where no cubic fits (knots that coincide).
 */
static double join_miss(const double *U, const uint64_t *open, const uint64_t *atom, const uint32_t *prev,
                        const uint32_t *next, uint32_t u, uint32_t i, double min, double max)
{
    const uint32_t NONE = UINT32_MAX, p = prev[i], r = next[i];
    double x[4], mass[3];
    uint32_t K = 0;
    if (p != NONE) {
        x[K] = prev[p] != NONE ? U[prev[p]] : min;
        mass[K++] = (double)open[p];
    }
    const uint32_t span = K;
    x[K] = p != NONE ? U[p] : min;
    mass[K] = (double)open[i] + (double)atom[i] + (double)open[r];
    x[++K] = r < u ? U[r] : max;
    if (r < u) {
        mass[K] = (double)open[next[r]];
        x[++K] = next[r] < u ? U[next[r]] : max;
    }
    for (uint32_t t = 0; t < K; t++)
        if (!(x[t] < x[t + 1])) return 0.0;
    const double f = open_fraction(x, mass, K + 1, span, U[i]);
    const double miss = fabs(mass[span] * f - ((double)open[i] + 0.5 * (double)atom[i]));
    return isfinite(miss) ? miss : 0.0;
}

/* A boundary and the load of joining at it. */
typedef struct {
    double load; /* +inf: joined, or padding */
    uint32_t i;
} join_entry;

/* Of two boundaries, the one to join first: the lighter; of equal loads the
 * one to the right (as the scan this replaced did, so merges stay as they
 * were).  Without branches: the outcomes are as good as random. */
QS_INLINE join_entry first_join(join_entry a, join_entry b)
{
    const int take_b = (b.load < a.load) | ((b.load == a.load) & (b.i > a.i));
    join_entry w;
    w.load = take_b ? b.load : a.load;
    w.i = take_b ? b.i : a.i;
    return w;
}

/* Leaf e.i of the tournament tree node[1..2P) is now e: replay its matches
 * until one ends as it did (the ones above it are then unchanged).  The
 * winner climbs in a register and each match loads only the sibling, which
 * does not depend on the match below, so a step waits on a compare alone. */
QS_INLINE void replay(join_entry *node, uint32_t P, join_entry e)
{
    uint32_t v = P + e.i;
    node[v] = e;
    for (; v > 1; v >>= 1) {
        e = first_join(e, node[v ^ 1]);
        join_entry *up = &node[v >> 1];
        if (up->i == e.i && up->load == e.load) return;
        *up = e;
    }
}

/*
 * Join pairs of intervals of the merged layer (boundaries U[0..u), counts
 * open[0..u], atom[0..u), range [min, max]) until cap boundaries are left:
 * the cheapest join, one after the other.  A join's cost is its load plus
 * QS_BK_JOIN_MISS times what it forgets (join_miss): a boundary the cubic
 * across it would place well costs little to drop, one at a cluster's edge a
 * lot.  (By load alone, a merge of zoom_in shards dropped the edges of the
 * clusters the shards had fenced in.)  A join changes the costs of the two
 * nearest boundaries on each side of it only, so a tournament tree over the costs
 * finds the next one in O(log u) instead of a scan of the layer.  While
 * joining, an interval is kept in open[] at the index of the boundary to its
 * right (u for the last one).  Returns the boundaries left, moved to the
 * front of the arrays; -1 on ENOMEM.
 */
static int64_t join_down(double *U, uint64_t *open, uint64_t *atom, uint32_t u, uint32_t cap,
                         double base, double n, double min, double max)
{
    if (u <= cap) return u;
    uint32_t P = 1;
    while (P < u) P <<= 1;
    const uint32_t NONE = UINT32_MAX;
    uint32_t *prev = malloc((size_t)u * sizeof(uint32_t));
    uint32_t *next = malloc((size_t)u * sizeof(uint32_t));
    double *before = malloc((size_t)u * sizeof(double)); /* items below boundary i's left interval */
    join_entry *node = malloc((size_t)2 * P * sizeof(join_entry));
    uint8_t *costed = calloc(u, 1);
    int64_t left = -1;
    if (!prev || !next || !before || !node || !costed) goto done;
    double below = 0.0;
    for (uint32_t i = 0; i < P; i++) {
        node[P + i].i = i;
        node[P + i].load = INFINITY;
        if (i >= u) continue;
        prev[i] = i ? i - 1 : NONE;
        next[i] = i + 1;
        before[i] = below;
        below += (double)open[i] + (double)atom[i];
    }
    /* a boundary's cost is computed only when its load alone (a lower bound
     * of the cost) would make it the next join: most never get there */
#define JOIN_LOAD(k) join_cost((double)open[k] + (double)atom[k] + (double)open[next[k]], 0.0, before[k], base, n)
#define JOIN_COST(k)                                                                               \
    join_cost((double)open[k] + (double)atom[k] + (double)open[next[k]],                          \
              join_miss(U, open, atom, prev, next, u, k, min, max), before[k], base, n)
    for (uint32_t i = 0; i < u; i++) node[P + i].load = JOIN_LOAD(i);
    for (uint32_t v = P - 1; v; v--) node[v] = first_join(node[2 * v], node[2 * v + 1]);
    for (uint32_t m = u; m > cap;) {
        const uint32_t i = node[1].i, p = prev[i], r = next[i];
        if (!costed[i]) {
            costed[i] = 1;
            replay(node, P, (join_entry){JOIN_COST(i), i});
            continue;
        }
        open[r] += open[i] + atom[i];
        replay(node, P, (join_entry){INFINITY, i});
        m--;
        if (p != NONE) next[p] = r;
        if (r < u) {
            prev[r] = p;
            before[r] = before[i];
        }
        /* the boundaries beside the join now border the joined interval, and
         * the next ones out see it as their neighbour */
        const uint32_t near[4] = {r, r < u ? next[r] : u, p, p != NONE ? prev[p] : NONE};
        for (int t = 0; t < 4; t++) {
            const uint32_t k = near[t];
            if (k == NONE || k >= u) continue;
            costed[k] = 0;
            replay(node, P, (join_entry){JOIN_LOAD(k), k});
        }
    }
#undef JOIN_COST
#undef JOIN_LOAD
    uint32_t t = 0;
    for (uint32_t i = 0; i < u; i++) {
        if (node[P + i].load == INFINITY) continue;
        U[t] = U[i];
        open[t] = open[i];
        atom[t] = atom[i];
        t++;
    }
    open[t] = open[u];
    left = t;
done:
    free(prev);
    free(next);
    free(before);
    free(node);
    free(costed);
    return left;
}

qs_status qs_bk_merged(qs_kll *dst, qs_kll *src, qs_buckets *out)
{
    memset(out, 0, sizeof *out);
    const qs_buckets *a = &dst->bk, *b = &src->bk;
    if (!a->cap || !b->cap) return QS_OK; /* one side has no layer: neither has the result */
    const uint32_t cap = a->cap < b->cap ? a->cap : b->cap;
    const uint32_t umax = a->m + b->m;
    double *U = malloc(((size_t)umax + 1) * sizeof(double));
    uint64_t *open = calloc((size_t)umax + 1, sizeof(uint64_t));
    uint64_t *atom = calloc((size_t)umax + 1, sizeof(uint64_t));
    const uint32_t kmax = (a->m > b->m ? a->m : b->m) + 2;
    double *x = malloc((size_t)kmax * sizeof(double));
    double *mass = malloc((size_t)kmax * sizeof(double));
    qs_status st = QS_ENOMEM;
    if (!U || !open || !atom || !x || !mass) goto fail;
    uint32_t u = 0, i = 0, k = 0;
    while (i < a->m || k < b->m) { /* sorted union */
        double v;
        if (k >= b->m || (i < a->m && a->bound[i] < b->bound[k])) v = a->bound[i++];
        else if (i >= a->m || b->bound[k] < a->bound[i]) v = b->bound[k++];
        else { v = a->bound[i++]; k++; }
        U[u++] = v;
    }
    st = recut_add(dst, U, u, x, mass, open, atom);
    if (st == QS_OK) st = recut_add(src, U, u, x, mass, open, atom);
    if (st != QS_OK) goto fail;
    const double n = (double)dst->n + (double)src->n;
    const int64_t m = join_down(U, open, atom, u, cap, layer_base(n, cap), n, fmin(dst->min, src->min),
                                fmax(dst->max, src->max));
    if (m < 0) {
        st = QS_ENOMEM;
        goto fail;
    }
    st = qs_bk_init(out, cap);
    if (st != QS_OK) goto fail;
    out->m = (uint32_t)m;
    memcpy(out->bound, U, (size_t)m * sizeof(double));
    memcpy(out->open, open, ((size_t)m + 1) * sizeof(uint64_t));
    memcpy(out->atom, atom, (size_t)m * sizeof(uint64_t));
    st = QS_OK;
fail:
    free(U);
    free(open);
    free(atom);
    free(x);
    free(mass);
    return st;
}

int qs_bk_check(const qs_kll *sk, const char **message)
{
    const qs_buckets *bk = &sk->bk;
    if (!bk->cap) return 0;
    if (bk->m > bk->cap) {
        *message = "corrupt: more bucket boundaries than the layer holds";
        return 1;
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i <= bk->m; i++) {
        if (i < bk->m) {
            const double b = bk->bound[i];
            if (b != b || (i > 0 && !(bk->bound[i - 1] < b))) {
                *message = "corrupt: bucket boundaries not strictly increasing";
                return 1;
            }
            if (!(b >= sk->min && b <= sk->max)) {
                *message = "corrupt: a bucket boundary outside [min, max]";
                return 1;
            }
            if (total > UINT64_MAX - bk->atom[i]) goto overflow;
            total += bk->atom[i];
        }
        if (total > UINT64_MAX - bk->open[i]) goto overflow;
        total += bk->open[i];
    }
    if (total != sk->n) {
        *message = "corrupt: bucket counts do not add up to n";
        return 1;
    }
    /* [min, b_0) is empty when b_0 = min, and (b_last, max] when b_last = max */
    if (bk->m && ((bk->bound[0] == sk->min && bk->open[0]) ||
                  (bk->bound[bk->m - 1] == sk->max && bk->open[bk->m]))) {
        *message = "corrupt: bucket counts beyond min or max";
        return 1;
    }
    return 0;
overflow:
    *message = "corrupt: bucket counts overflow";
    return 1;
}

/*
 * The layer's knots before refinement: min (unless it is a boundary), the
 * boundaries, max (likewise), each with the counts below and at it.  Returns
 * how many.
 */
static uint32_t coarse_knots(const qs_kll *sk, double *x, double *lo, double *hi)
{
    const qs_buckets *bk = &sk->bk;
    const uint32_t m = bk->m;
    uint32_t K = 0;
    double below = 0.0;
    if (m == 0 && !(sk->min < sk->max)) { /* every item is one value */
        x[0] = sk->min;
        lo[0] = 0.0;
        hi[0] = (double)sk->n;
        return 1;
    }
    if (m == 0 || sk->min < bk->bound[0]) {
        x[K] = sk->min;
        lo[K] = hi[K] = 0.0;
        K++;
    }
    for (uint32_t i = 0; i < m; i++) {
        below += (double)bk->open[i];
        x[K] = bk->bound[i];
        lo[K] = below;
        below += (double)bk->atom[i];
        hi[K] = below;
        K++;
    }
    if (m == 0 || sk->max > bk->bound[m - 1]) {
        below += (double)bk->open[m];
        x[K] = sk->max;
        lo[K] = hi[K] = below;
        K++;
    }
    return K;
}

/*
 * Whether the retained items [i0, i1), on one side of zero between a and b,
 * are spread over the decades between: their weighted median lies in the
 * middle half of (a, b) measured in log|x|.  (Normal data around zero have
 * theirs near the outer end however close to zero the nearest item lies.)
 */
static int log_spread(const double *items, const uint64_t *cum, uint32_t i0, uint32_t i1, double a, double b)
{
    const double f = coord_fraction(a, b, weighted_median(items, cum, i0, i1), 1);
    return f >= 0.25 && f <= 0.75;
}

/*
 * A segment across zero whose ends lie decades further out than the retained
 * items nearest zero (values closing in on zero from both sides) fits no
 * cubic, in x or in log|x|.  Its knots become the retained values nearest
 * zero on each side, at the compactors' count below them scaled to the
 * segment's exact mass: the pieces out to the ends are then log segments.
 * Only when the retained items on such a side are spread over its decades
 * (log_spread).
 * Appends the knots to v after v->size and returns 1, or returns 0 when the
 * segment is not such.
 */
static int zero_knots(qs_est_view *v, const double *cx, double M, double scale, double start,
                      const double *items, const uint64_t *cum, uint64_t base, uint32_t ia, uint32_t ib)
{
    const double a = cx[0], b = cx[1];
    if (!(a < 0.0 && b > 0.0)) return 0;
    uint32_t neg = ia, pos;
    while (neg < ib && items[neg] < 0.0) neg++;
    pos = neg;
    while (pos < ib && items[pos] == 0.0) pos++;
    /* neg: one past the last negative; pos: the first positive */
    const int left = neg > ia && log_segment(a, items[neg - 1]) && log_spread(items, cum, ia, neg, a, items[neg - 1]);
    const int right = pos < ib && log_segment(items[pos], b) && log_spread(items, cum, pos, ib, items[pos], b);
    if (!left && !right) return 0;
    uint32_t K = v->size;
    double last = 0.0;
    if (neg > ia) {
        const uint32_t i = neg - 1;
        uint32_t f = i;
        while (f > ia && items[f - 1] == items[i]) f--;
        last = fmin(M, run_mid(cum, base, f, i + 1) * scale);
        v->x[K] = items[i];
        v->lo[K] = v->hi[K] = start + last;
        K++;
    }
    if (pos < ib) {
        uint32_t e = pos + 1;
        while (e < ib && items[e] == items[pos]) e++;
        const double r = fmin(M, fmax(last, run_mid(cum, base, pos, e) * scale));
        v->x[K] = items[pos];
        v->lo[K] = v->hi[K] = start + r;
        K++;
    }
    v->size = K;
    return 1;
}

/*
 * Refine segment s of the coarse view (knots cx, masses mass, slopes sa, sb,
 * coordinate logs) with the retained items strictly inside it,
 * items[ia..ib): a segment across zero gets zero_knots (returns 2); else,
 * when the curve misses the compactors' count below some distinct retained
 * value by more than QS_BK_VIEW_Z standard deviations of their error -- or
 * by more than QS_BK_SEGMENT_Z of their rank error -- the segment follows
 * them: each distinct value y becomes a knot at their count below y, scaled
 * to the segment's exact count.  Appends the knots to v after v->size (lo =
 * hi: no point mass) and returns 1; returns 0 and appends nothing when the
 * curve stands.
 */
static int refine_segment(const qs_kll *sk, qs_est_view *v, const double *cx, const double *mass,
                          uint32_t s, double sa, double sb, int logs, double start, const double *items,
                          const uint64_t *cum, uint32_t ia, uint32_t ib)
{
    const double M = mass[s];
    const uint64_t base = ia ? cum[ia - 1] : 0, W = cum[ib - 1] - base;
    if (!(M > 0.0) || W == 0) return 0;
    double w2;
    sampled_weights(sk, cum, ia, ib, NULL, &w2);
    /* the retained items must account for the segment's count (else they
     * stand for items outside it, or it holds items they do not show) */
    if (2.0 * (double)W < M || (double)W > 2.0 * M) return 0;
    const double scale = M / (double)W;
    if (zero_knots(v, cx + s, M, scale, start, items, cum, base, ia, ib)) return 2;
    const double tol = fmin(QS_BK_VIEW_Z * (sampled_sd(sk, w2) * scale + 0.5 * fabs(M - (double)W)),
                            QS_BK_SEGMENT_Z * qs_kll_normalized_rank_error(sk->k, 0) * (double)sk->n / 2.576);
    /* the compactors' count below each distinct retained value, and whether
     * the curve misses one by more than tol (a wide segment, few boundaries,
     * a gap or a tail the curve cannot follow) */
    const uint32_t K0 = v->size;
    uint32_t K = K0;
    int refuted = 0;
    for (uint32_t i = ia; i < ib;) {
        const double y = items[i];
        uint32_t e = i + 1;
        while (e < ib && items[e] == y) e++;
        const double kll = run_mid(cum, base, i, e) * scale;
        refuted |= fabs(M * hermite(coord_fraction(cx[s], cx[s + 1], y, logs), sa, sb) - kll) > tol;
        v->x[K] = y;
        v->lo[K] = v->hi[K] = start + kll;
        K++;
        i = e;
    }
    if (refuted) v->size = K;
    return refuted;
}

qs_status qs_bk_view(qs_kll *sk, qs_est_view *v)
{
    const uint32_t m = sk->bk.m;
    const double *items = NULL;
    const uint64_t *cum = NULL;
    uint32_t R = 0;
    /* the compactors refine the cubic only once they sample (else the layer is exact) */
    if (sk->compacted) {
        qs_status st = qs_kll_sorted_view(sk, &items, &cum, &R);
        if (st != QS_OK) return st;
    }
    qs_status st = qs_est_reserve(v, m + 2 + R);
    if (st != QS_OK) return st;
    double *buf = malloc(((size_t)m + 2) * (6 * sizeof(double) + 1));
    if (!buf) return QS_ENOMEM;
    double *cx = buf, *clo = cx + m + 2, *chi = clo + m + 2, *mass = chi + m + 2, *csa = mass + m + 2,
           *csb = csa + m + 2;
    uint8_t *clogs = (uint8_t *)(csb + m + 2);
    const uint32_t K0 = coarse_knots(sk, cx, clo, chi);
    for (uint32_t s = 0; s + 1 < K0; s++) mass[s] = clo[s + 1] - chi[s];
    for (uint32_t s = 0; s + 1 < K0; s++) qs_pchip_segment(cx, mass, K0, s, &csa[s], &csb[s], &clogs[s]);
    /* coarse knots with the refined ones of each segment between them; an
     * unrefined segment keeps its coarse slopes (its refined neighbours'
     * short secants would otherwise bend it: sorted data with 4 boundaries,
     * 1.52% -> 0.38% of n before end_density), unless a neighbour was cut at
     * zero (zero_knots): its slope there then comes from the log piece
     * beyond, which the coarse view did not have */
    uint8_t *coarse = calloc((size_t)m + 2 + R, 1), *kind = calloc((size_t)m + 2, 1);
    uint32_t *first = malloc(((size_t)m + 2) * sizeof(uint32_t));
    if (!coarse || !kind || !first) {
        free(buf);
        free(coarse);
        free(kind);
        free(first);
        return QS_ENOMEM;
    }
    v->size = 0;
    uint32_t i = 0; /* the first retained item not below the current knot */
    for (uint32_t s = 0; s < K0; s++) {
        const uint32_t t = v->size;
        first[s] = t;
        v->x[t] = cx[s];
        v->lo[t] = clo[s];
        v->hi[t] = chi[s];
        v->size++;
        if (s + 1 == K0) continue;
        while (i < R && items[i] <= cx[s]) i++;
        uint32_t e = i;
        while (e < R && items[e] < cx[s + 1]) e++;
        if (e > i) kind[s] = (uint8_t)refine_segment(sk, v, cx, mass, s, csa[s], csb[s], clogs[s], chi[s], items, cum, i, e);
        i = e;
    }
    for (uint32_t s = 0; s + 1 < K0; s++) {
        if (kind[s] || (s > 0 && kind[s - 1] == 2) || (s + 2 < K0 && kind[s + 1] == 2)) continue;
        const uint32_t t = first[s];
        coarse[t] = 1;
        v->sa[t] = csa[s];
        v->sb[t] = csb[s];
        v->logs[t] = clogs[s];
    }
    free(kind);
    free(first);
    free(buf);
    /* slopes of the refined segments' knots: segment masses between them */
    const uint32_t K = v->size;
    double *seg = malloc(((size_t)K + 1) * sizeof(double));
    if (!seg) {
        free(coarse);
        return QS_ENOMEM;
    }
    for (uint32_t s = 0; s + 1 < K; s++) seg[s] = v->lo[s + 1] - v->hi[s];
    for (uint32_t s = 0; s + 1 < K; s++)
        if (!coarse[s]) qs_pchip_segment(v->x, seg, K, s, &v->sa[s], &v->sb[s], &v->logs[s]);
    free(seg);
    free(coarse);
    v->valid = 1;
    return QS_OK;
}
