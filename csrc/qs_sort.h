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
 *  - qs_radix_sort_keys: LSD radix sort on order-preserving 64-bit keys, for
 *    the bulk path, where chunks of up to QS_CHUNK_MAX items are sorted at
 *    once.  Passes in which every key has the same byte are skipped, so
 *    data of one sign and magnitude, or of low precision (integers stored as
 *    floats), sorts in fewer than eight passes.
 *
 * Keys: for IEEE-754 doubles, flipping the sign bit of non-negative values
 * and all bits of negative values maps the order of doubles onto the order of
 * unsigned integers (-0.0 sorts just before +0.0, which compare equal anyway).
 * NaN never reaches these kernels.
 */
#ifndef QS_SORT_H
#define QS_SORT_H

#include <string.h>
#include "qs_common.h"

QS_INLINE uint64_t qs_double_to_key(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u ^ ((uint64_t)(-(int64_t)(u >> 63)) | UINT64_C(0x8000000000000000));
}

QS_INLINE double qs_key_to_double(uint64_t k)
{
    uint64_t u = k ^ (((k >> 63) - 1) | UINT64_C(0x8000000000000000));
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* ---- introsort on doubles ------------------------------------------------ */

static void qs_insertion_sort(double *a, size_t n)
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

static void qs_sift_down(double *a, size_t start, size_t n)
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

static void qs_heap_sort(double *a, size_t n)
{
    if (n < 2) return;
    for (size_t i = n / 2; i-- > 0;) qs_sift_down(a, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        double t = a[0]; a[0] = a[end]; a[end] = t;
        qs_sift_down(a, 0, end);
    }
}

static void qs_introsort_rec(double *a, size_t n, int depth)
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

static void qs_sort_doubles(double *a, size_t n)
{
    int depth = 0;
    for (size_t m = n; m > 1; m >>= 1) depth += 2;
    qs_introsort_rec(a, n, depth);
}

/* ---- LSD radix sort on keys ---------------------------------------------- */

/*
 * Sorts keys[0..n) using tmp[0..n) as scratch.  Returns the buffer that holds
 * the sorted keys (keys or tmp, depending on how many passes ran).
 */
static uint64_t *qs_radix_sort_keys(uint64_t *keys, uint64_t *tmp, size_t n)
{
    uint32_t hist[8][256];
    memset(hist, 0, sizeof hist);
    for (size_t i = 0; i < n; i++) {
        uint64_t k = keys[i];
        hist[0][k & 0xff]++;
        hist[1][(k >> 8) & 0xff]++;
        hist[2][(k >> 16) & 0xff]++;
        hist[3][(k >> 24) & 0xff]++;
        hist[4][(k >> 32) & 0xff]++;
        hist[5][(k >> 40) & 0xff]++;
        hist[6][(k >> 48) & 0xff]++;
        hist[7][k >> 56]++;
    }
    uint64_t *src = keys, *dst = tmp;
    for (int pass = 0; pass < 8 && n > 0; pass++) {
        const unsigned shift = 8u * (unsigned)pass;
        uint32_t *h = hist[pass];
        if (h[(src[0] >> shift) & 0xff] == n) continue; /* one digit: nothing to do */
        uint32_t sum = 0;
        for (int b = 0; b < 256; b++) {
            uint32_t c = h[b];
            h[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t k = src[i];
            dst[h[(k >> shift) & 0xff]++] = k;
        }
        uint64_t *t = src; src = dst; dst = t;
    }
    return src;
}

#endif /* QS_SORT_H */
