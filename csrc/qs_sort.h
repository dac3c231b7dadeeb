/*
 * qs_sort.h -- sorting kernels for the KLL core.
 *
 * Two kernels, chosen by what the caller holds:
 *
 *  - qs_sort_doubles: in-place introsort (median-of-three quicksort, insertion
 *    sort for short runs, heapsort once the recursion is too deep), for level
 *    0 of the per-item path.  No allocation, O(n log n) worst case, so an
 *    adversarial order can never make a compaction quadratic.
 *
 *  - qs_multiselect: places the order statistics at a sorted list of target
 *    positions, without sorting the rest (the bulk path needs S evenly spaced
 *    order statistics of a chunk: O(c log S) work instead of O(c log c)).
 *    Partitions are branchless Lomuto passes around a median-of-three pivot;
 *    past a depth limit a range is sorted instead, so hostile orders cost
 *    O(c log c) at worst.
 *
 * NaN never reaches these kernels.
 */
#ifndef QS_SORT_H
#define QS_SORT_H

#include <string.h>
#include "qs_common.h"

/* ---- introsort on doubles ------------------------------------------------ */

static inline void qs_insertion_sort(double *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        double v = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

static inline void qs_sift_down(double *a, size_t start, size_t n)
{
    size_t root = start;
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n) return;
        if (child + 1 < n && a[child] < a[child + 1]) child++;
        if (!(a[root] < a[child])) return;
        double t = a[root]; a[root] = a[child]; a[child] = t;
        root = child;
    }
}

static inline void qs_heap_sort(double *a, size_t n)
{
    if (n < 2) return;
    for (size_t i = n / 2; i-- > 0;) qs_sift_down(a, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        double t = a[0]; a[0] = a[end]; a[end] = t;
        qs_sift_down(a, 0, end);
    }
}

static inline void qs_introsort_rec(double *a, size_t n, int depth)
{
    while (n > 16) {
        if (depth-- == 0) {
            qs_heap_sort(a, n);
            return;
        }
        /* median of three, placed so that a[0] <= pivot <= a[n-1] */
        size_t mid = n / 2;
        if (a[mid] < a[0]) { double t = a[mid]; a[mid] = a[0]; a[0] = t; }
        if (a[n - 1] < a[0]) { double t = a[n - 1]; a[n - 1] = a[0]; a[0] = t; }
        if (a[n - 1] < a[mid]) { double t = a[n - 1]; a[n - 1] = a[mid]; a[mid] = t; }
        double pivot = a[mid];
        size_t i = 0, j = n - 1;
        for (;;) {
            do { i++; } while (a[i] < pivot);
            do { j--; } while (pivot < a[j]);
            if (i >= j) break;
            double t = a[i]; a[i] = a[j]; a[j] = t;
        }
        /* recurse on the smaller side, loop on the larger: O(log n) stack */
        size_t left = j + 1;
        if (left < n - left) {
            qs_introsort_rec(a, left, depth);
            a += left;
            n -= left;
        } else {
            qs_introsort_rec(a + left, n - left, depth);
            n = left;
        }
    }
    qs_insertion_sort(a, n);
}

static inline void qs_sort_doubles(double *a, size_t n)
{
    int depth = 0;
    for (size_t m = n; m > 1; m >>= 1) depth += 2;
    qs_introsort_rec(a, n, depth);
}

/* ---- multi-select --------------------------------------------------------- */

/* Move the items < pivot (or <= pivot when or_equal) to the front of a[0..n);
 * return how many there are.  Branchless: one swap per item, no mispredicts. */
QS_INLINE size_t qs_partition(double *a, size_t n, double pivot, int or_equal)
{
    size_t p = 0;
    if (or_equal) {
        for (size_t i = 0; i < n; i++) {
            const double v = a[i];
            a[i] = a[p];
            a[p] = v;
            p += (v <= pivot);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            const double v = a[i];
            a[i] = a[p];
            a[p] = v;
            p += (v < pivot);
        }
    }
    return p;
}

/* Targets t[0..nt) are sorted; target i is at a[t[i] - base]. */
static inline void qs_multiselect_rec(double *a, size_t n, const size_t *t, size_t nt, size_t base,
                               int depth)
{
    while (nt > 0) {
        if (n <= 32 || depth-- == 0) {
            qs_sort_doubles(a, n);
            return;
        }
        const double x = a[0], y = a[n / 2], z = a[n - 1];
        double pivot;
        if (x < y) pivot = (y < z) ? y : (x < z ? z : x);
        else pivot = (x < z) ? x : (y < z ? z : y);
        /* [0, lo) < pivot <= [lo, n).  When nothing is smaller, the pivot is
         * the minimum: split off the run equal to it instead, [0, hi). */
        size_t lo = qs_partition(a, n, pivot, 0), hi = lo;
        if (lo == 0) hi = qs_partition(a, n, pivot, 1);
        size_t nl = 0; /* targets left of lo */
        while (nl < nt && t[nl] - base < lo) nl++;
        size_t nr = nl; /* targets inside [lo, hi) are already in place */
        while (nr < nt && t[nr] - base < hi) nr++;
        /* recurse on the side with fewer targets, loop on the other */
        if (nl < nt - nr) {
            qs_multiselect_rec(a, lo, t, nl, base, depth);
            a += hi;
            n -= hi;
            t += nr;
            nt -= nr;
            base += hi;
        } else {
            qs_multiselect_rec(a + hi, n - hi, t + nr, nt - nr, base + hi, depth);
            n = lo;
            nt = nl;
        }
    }
}

/*
 * After the call, a[t[i]] holds the order statistic of rank t[i] (0-based)
 * for every i; the other items are permuted.  t must be strictly increasing
 * and every t[i] < n.
 */
static inline void qs_multiselect(double *a, size_t n, const size_t *t, size_t nt)
{
    int depth = 0;
    for (size_t m = n; m > 1; m >>= 1) depth += 2;
    qs_multiselect_rec(a, n, t, nt, 0, depth);
}

/* ---- many order statistics of a large chunk --------------------------------- */

#define QS_SELECT_BUCKETS 256
#define QS_SELECT_SAMPLE 1024
#define QS_SELECT_MIN_N 16384

static inline void qs_eytzinger_fill(const double *sorted, double *tree, size_t *next, size_t node,
                              size_t size)
{
    if (node >= size) return;
    qs_eytzinger_fill(sorted, tree, next, 2 * node, size);
    tree[node] = sorted[(*next)++];
    qs_eytzinger_fill(sorted, tree, next, 2 * node + 1, size);
}

/*
 * out[i] = the order statistic of rank t[i] of a[0..n), for t strictly
 * increasing.  a is permuted.  For large n this is one classification pass
 * (super-scalar sample sort, Sanders & Winkel 2004: 255 splitters from a
 * sample, a branchless descent of their implicit search tree, eight items at
 * a time), then only the buckets that hold a target are gathered and searched
 * with qs_multiselect.  Scratch: work[n] doubles, ids[n] bytes, rel[nt].
 * Duplicates and skewed data only make some buckets larger; qs_multiselect's
 * depth limit bounds the worst case.
 *
 * Returns 1 when it classified (then a is left as it was, ids[i] is the
 * bucket of a[i], and splitters_out, if not NULL, receives the
 * QS_SELECT_BUCKETS - 1 splitters: bucket b holds splitters[b-1] < x <=
 * splitters[b]), 0 for a small n.
 */
static inline int qs_select_many(double *a, size_t n, const size_t *t, size_t nt, double *out,
                                 double *work, uint8_t *ids, size_t *rel, double *splitters_out)
{
    if (n < QS_SELECT_MIN_N) {
        qs_multiselect(a, n, t, nt);
        for (size_t i = 0; i < nt; i++) out[i] = a[t[i]];
        return 0;
    }
    double sample[QS_SELECT_SAMPLE];
    const size_t stride = n / QS_SELECT_SAMPLE;
    for (size_t i = 0; i < QS_SELECT_SAMPLE; i++) sample[i] = a[i * stride + stride / 2];
    qs_sort_doubles(sample, QS_SELECT_SAMPLE);
    double splitters[QS_SELECT_BUCKETS - 1], tree[QS_SELECT_BUCKETS];
    for (size_t i = 0; i < QS_SELECT_BUCKETS - 1; i++)
        splitters[i] = sample[(i + 1) * (QS_SELECT_SAMPLE / QS_SELECT_BUCKETS) - 1];
    if (splitters_out) memcpy(splitters_out, splitters, sizeof splitters);
    size_t next = 0;
    tree[0] = 0.0;
    qs_eytzinger_fill(splitters, tree, &next, 1, QS_SELECT_BUCKETS);

    /* classify: bucket b holds splitters[b-1] < x <= splitters[b] */
    uint32_t count[QS_SELECT_BUCKETS];
    memset(count, 0, sizeof count);
    size_t i = 0;
    /* eight independent descents at a time hide the latency of each step */
    for (; i + 8 <= n; i += 8) {
        size_t j[8];
        double x[8];
        for (int u = 0; u < 8; u++) {
            j[u] = 1;
            x[u] = a[i + u];
        }
        for (int d = 0; d < 8; d++)
            for (int u = 0; u < 8; u++) j[u] = 2 * j[u] + (x[u] > tree[j[u]]);
        for (int u = 0; u < 8; u++) {
            ids[i + u] = (uint8_t)(j[u] - QS_SELECT_BUCKETS);
            count[j[u] - QS_SELECT_BUCKETS]++;
        }
    }
    for (; i < n; i++) {
        const double x0 = a[i];
        uint32_t j = 1;
        while (j < QS_SELECT_BUCKETS) j = 2 * j + (x0 > tree[j]);
        ids[i] = (uint8_t)(j - QS_SELECT_BUCKETS);
        count[j - QS_SELECT_BUCKETS]++;
    }

    /* lay out only the buckets that hold a target; the others write to a
     * dump slot that never advances */
    size_t start[QS_SELECT_BUCKETS], pos[QS_SELECT_BUCKETS], inc[QS_SELECT_BUCKETS];
    size_t first_rank[QS_SELECT_BUCKETS];
    uint8_t marked[QS_SELECT_BUCKETS];
    memset(marked, 0, sizeof marked);
    size_t rank = 0, ti = 0;
    for (size_t b = 0; b < QS_SELECT_BUCKETS; b++) {
        first_rank[b] = rank;
        rank += count[b];
        while (ti < nt && t[ti] < rank) {
            marked[b] = 1;
            ti++;
        }
    }
    size_t used = 0;
    for (size_t b = 0; b < QS_SELECT_BUCKETS; b++) {
        start[b] = used;
        if (marked[b]) used += count[b];
    }
    for (size_t b = 0; b < QS_SELECT_BUCKETS; b++) {
        pos[b] = marked[b] ? start[b] : used;
        inc[b] = marked[b];
    }
    for (i = 0; i < n; i++) {
        const uint8_t b = ids[i];
        work[pos[b]] = a[i];
        pos[b] += inc[b];
    }

    /* exact selection inside each marked bucket */
    ti = 0;
    for (size_t b = 0; b < QS_SELECT_BUCKETS && ti < nt; b++) {
        if (!marked[b]) continue;
        size_t m = 0;
        const size_t lim = first_rank[b] + count[b];
        while (ti + m < nt && t[ti + m] < lim) {
            rel[m] = t[ti + m] - first_rank[b];
            m++;
        }
        double *bucket = work + start[b];
        qs_multiselect(bucket, count[b], rel, m);
        for (size_t q = 0; q < m; q++) out[ti + q] = bucket[rel[q]];
        ti += m;
    }
    return 1;
}

#endif /* QS_SORT_H */
