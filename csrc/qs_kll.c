/*
 * qs_kll.c -- KLL compactors: update, bulk update, weighted update, merge and
 * the sorted view behind every query.
 *
 * The compaction logic follows Apache DataSketches' kll_sketch (lazy
 * compaction, one buffer with level offsets); see qs_kll.h for the layout.
 *
 * Bulk path (qs_kll_update_batch).  Halving a sorted buffer j times, each
 * time keeping the odd or the even positions by a fair coin, keeps exactly the
 * items at positions r, r + 2^j, r + 2*2^j, ... with r uniform in [0, 2^j)
 * (r's binary digits are the coins).  So once the sketch is in estimation
 * mode, a batch is cut into chunks of c items (c a power of two) and from each
 * chunk the S = c / 2^j order statistics at those positions are selected
 * (O(c log S) work, no full sort) and merged into level j, each with weight
 * 2^j.  This is the same distribution as feeding the chunk to a level-0
 * buffer of size c and compacting it j times, so the usual KLL analysis
 * applies: the chunk moves any rank by less than 2^j, with mean zero.  Over
 * n/c chunks that adds a variance of about (n/c) 4^j / 6 = n c / (6 S^2)
 * rank units; standard lazy KLL compacts its low levels far more often (with
 * buffers of m = 8 items), so its own error at those levels is larger.  To
 * keep the chunk well below the levels that dominate the error, c is at most
 * n S / (16 k), which puts level j four levels or more under the top.
 * S grows with k (k/4 rounded up to a power of two, within [32, 4096]).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qs_kll_internal.h"
#include "qs_rng.h"
#include "qs_sort.h"

#define QS_CHUNK_MIN 1024u
#define QS_CHUNK_MAX 65536u /* 512 KiB: the chunk stays in L2 while it is partitioned */
#define QS_SURVIVORS_MAX 4096u
#define QS_WEIGHTED_BLOCK 2048u

/* ---- capacities ----------------------------------------------------------- */

static const uint64_t POWERS_OF_THREE[31] = {
    1ULL, 3ULL, 9ULL, 27ULL, 81ULL, 243ULL, 729ULL, 2187ULL, 6561ULL, 19683ULL,
    59049ULL, 177147ULL, 531441ULL, 1594323ULL, 4782969ULL, 14348907ULL,
    43046721ULL, 129140163ULL, 387420489ULL, 1162261467ULL, 3486784401ULL,
    10460353203ULL, 31381059609ULL, 94143178827ULL, 282429536481ULL,
    847288609443ULL, 2541865828329ULL, 7625597484987ULL, 22876792454961ULL,
    68630377364883ULL, 205891132094649ULL};

/* round(k * (2/3)^depth) for depth <= 30, in integer arithmetic */
static uint32_t cap_aux_aux(uint32_t k, uint32_t depth)
{
    const uint64_t twok = (uint64_t)k << 1;
    const uint64_t tmp = (twok << depth) / POWERS_OF_THREE[depth];
    return (uint32_t)((tmp + 1) >> 1);
}

static uint32_t cap_aux(uint32_t k, uint32_t depth)
{
    if (depth > 60) return 0;
    if (depth <= 30) return cap_aux_aux(k, depth);
    const uint32_t half = depth / 2;
    return cap_aux_aux(cap_aux_aux(k, half), depth - half);
}

uint32_t qs_kll_level_capacity(uint32_t k, uint32_t m, uint32_t num_levels, uint32_t height)
{
    const uint32_t cap = cap_aux(k, num_levels - height - 1);
    return cap > m ? cap : m;
}

uint32_t qs_kll_total_capacity(uint32_t k, uint32_t m, uint32_t num_levels)
{
    uint32_t total = 0;
    for (uint32_t h = 0; h < num_levels; h++) total += qs_kll_level_capacity(k, m, num_levels, h);
    return total;
}

uint32_t qs_kll_default_m(uint32_t k)
{
    return k < QS_KLL_SMALL_K ? QS_KLL_M_MIN : QS_KLL_M_MAX;
}

void qs_kll_set_k(qs_kll *sk, uint32_t k)
{
    sk->k = k;
    for (uint32_t d = 0; d <= QS_KLL_MAX_LEVELS; d++)
        sk->cap_by_depth[d] = qs_kll_level_capacity(k, sk->m, d + 1, 0);
}

/* Capacity of level h of the sketch as it is now. */
QS_INLINE uint32_t level_cap(const qs_kll *sk, uint32_t num_levels, uint32_t h)
{
    return sk->cap_by_depth[num_levels - h - 1];
}

/* ---- lifetime ------------------------------------------------------------- */

qs_kll *qs_kll_alloc_empty(uint32_t k, uint32_t m, uint64_t seed, qs_status *status)
{
    qs_kll *sk = calloc(1, sizeof *sk);
    if (!sk) {
        *status = QS_ENOMEM;
        return NULL;
    }
    sk->m = m;
    qs_kll_set_k(sk, k);
    sk->num_levels = 1;
    sk->min = sk->max = NAN;
    sk->rng = seed;
    sk->level0_sorted = 1;
    sk->tab_limit = qs_kll_default_exact_limit(k);
    *status = QS_OK;
    return sk;
}

qs_kll *qs_kll_new(uint32_t k, uint64_t seed, qs_status *status)
{
    if (k < QS_KLL_MIN_K || k > QS_KLL_MAX_K) {
        *status = QS_EINVAL;
        return NULL;
    }
    qs_kll *sk = qs_kll_alloc_empty(k, qs_kll_default_m(k), seed, status);
    if (!sk) return NULL;
    const uint32_t cap = k; /* one level: its capacity is k */
    sk->items = malloc((size_t)cap * sizeof(double));
    if (!sk->items) {
        free(sk);
        *status = QS_ENOMEM;
        return NULL;
    }
    sk->levels[0] = cap;
    sk->levels[1] = cap;
    return sk;
}

void qs_kll_free(qs_kll *sk)
{
    if (!sk) return;
    free(sk->items);
    free(sk->tab_values);
    free(sk->tab_counts);
    qs_est_view_free(sk->est[0]);
    qs_est_view_free(sk->est[1]);
    qs_est_view_free(sk->est[2]);
    qs_bk_free(&sk->bk);
    free(sk->view_items);
    free(sk->view_cum);
    free(sk);
}

qs_kll *qs_kll_copy(const qs_kll *src, qs_status *status)
{
    qs_kll *sk = malloc(sizeof *sk);
    if (!sk) {
        *status = QS_ENOMEM;
        return NULL;
    }
    *sk = *src;
    /* caches are not shared: the copy rebuilds its own */
    sk->view_valid = 0;
    sk->view_cap = sk->view_size = 0;
    sk->view_items = NULL;
    sk->view_cum = NULL;
    sk->est[0] = sk->est[1] = sk->est[2] = NULL;
    memset(&sk->bk, 0, sizeof sk->bk);
    sk->tab_values = NULL;
    sk->tab_counts = NULL;
    sk->tab_cap = src->tab_size;
    const size_t cap = src->levels[src->num_levels];
    sk->items = malloc((cap ? cap : 1) * sizeof(double));
    if (src->tab_size) {
        sk->tab_values = malloc((size_t)src->tab_size * sizeof(double));
        sk->tab_counts = malloc((size_t)src->tab_size * sizeof(uint64_t));
    }
    if (!sk->items || (src->tab_size && (!sk->tab_values || !sk->tab_counts)) ||
        qs_bk_copy(&sk->bk, &src->bk) != QS_OK) {
        qs_kll_free(sk);
        *status = QS_ENOMEM;
        return NULL;
    }
    memcpy(sk->items, src->items, cap * sizeof(double));
    if (src->tab_size) {
        memcpy(sk->tab_values, src->tab_values, (size_t)src->tab_size * sizeof(double));
        memcpy(sk->tab_counts, src->tab_counts, (size_t)src->tab_size * sizeof(uint64_t));
    }
    *status = QS_OK;
    return sk;
}

/* ---- accessors ------------------------------------------------------------ */

uint32_t qs_kll_k(const qs_kll *sk) { return sk->k; }
uint64_t qs_kll_n(const qs_kll *sk) { return sk->n; }
uint64_t qs_kll_nan_count(const qs_kll *sk) { return sk->nan_count; }
double qs_kll_min(const qs_kll *sk) { return sk->min; }
double qs_kll_max(const qs_kll *sk) { return sk->max; }
uint32_t qs_kll_num_levels(const qs_kll *sk) { return sk->num_levels; }
int qs_kll_is_estimation_mode(const qs_kll *sk) { return sk->compacted; }
uint8_t qs_kll_user_flags(const qs_kll *sk) { return sk->user_flags; }
void qs_kll_set_user_flags(qs_kll *sk, uint8_t flags) { sk->user_flags = flags; }

uint32_t qs_kll_compactor_retained(const qs_kll *sk)
{
    return sk->levels[sk->num_levels] - sk->levels[0];
}

uint32_t qs_kll_num_retained(const qs_kll *sk)
{
    return qs_kll_compactor_retained(sk) + sk->tab_size;
}

qs_status qs_kll_level(const qs_kll *sk, uint32_t level, const double **items, uint32_t *size)
{
    if (level >= sk->num_levels) return QS_EINVAL;
    *items = sk->items + sk->levels[level];
    *size = sk->levels[level + 1] - sk->levels[level];
    return QS_OK;
}

/*
 * The a priori error of Apache DataSketches' KLL, fitted on their
 * characterization runs: the 99th percentile of the normalized rank error of
 * a single query (pmf == 0) or of a whole PMF/CDF (pmf != 0).
 */
uint32_t qs_kll_default_exact_limit(uint32_t k)
{
    const uint32_t scaled = (3u * k + 1u) / 2u; /* about the compactors' own footprint */
    return scaled > 256u ? scaled : 256u;
}

uint32_t qs_kll_exact_limit(const qs_kll *sk) { return sk->tab_limit; }

qs_status qs_kll_set_exact_limit(qs_kll *sk, uint32_t limit)
{
    if (sk->n != 0 || sk->nan_count != 0) return QS_EINVAL;
    if (limit > QS_KLL_MAX_EXACT_LIMIT) return QS_EINVAL;
    sk->tab_limit = limit;
    return QS_OK;
}

double qs_kll_normalized_rank_error(uint32_t k, int pmf)
{
    return pmf ? 2.446 / pow((double)k, 0.9433) : 2.296 / pow((double)k, 0.9723);
}

/* ---- compaction kernels --------------------------------------------------- */

/* Keep every other item of buf[start .. start+len) (len even), packed at the start. */
QS_INLINE void halve_down(double *buf, uint32_t start, uint32_t len, unsigned offset)
{
    const uint32_t half = len / 2;
    for (uint32_t i = 0, j = start + offset; i < half; i++, j += 2) buf[start + i] = buf[j];
}

/* Keep every other item of buf[start .. start+len) (len even), packed at the end. */
QS_INLINE void halve_up(double *buf, uint32_t start, uint32_t len, unsigned offset)
{
    const uint32_t half = len / 2;
    if (len == 0) return;
    uint32_t j = start + len - 1 - offset;
    for (uint32_t i = start + len - 1; i >= start + half; i--, j -= 2) {
        buf[i] = buf[j];
        if (i == start + half) break;
    }
}

/*
 * Merge sorted runs buf[a .. a+alen) and buf[b .. b+blen) into buf[dst ..),
 * in place.  Safe when dst >= a + alen and dst + alen <= b, the situation of a
 * compaction (the halved level sits just below the level above it).
 */
static void merge_in_place(double *buf, uint32_t a, uint32_t alen, uint32_t b, uint32_t blen,
                           uint32_t dst)
{
    const uint32_t alim = a + alen, blim = b + blen;
    while (a < alim && b < blim) buf[dst++] = (buf[b] < buf[a]) ? buf[b++] : buf[a++];
    while (a < alim) buf[dst++] = buf[a++];
    while (b < blim) buf[dst++] = buf[b++];
}

static void merge_runs(const double *a, uint32_t alen, const double *b, uint32_t blen, double *dst)
{
    uint32_t i = 0, j = 0, o = 0;
    while (i < alen && j < blen) dst[o++] = (b[j] < a[i]) ? b[j++] : a[i++];
    while (i < alen) dst[o++] = a[i++];
    while (j < blen) dst[o++] = b[j++];
}

/* ---- per-item path -------------------------------------------------------- */

static uint32_t find_level_to_compact(const qs_kll *sk)
{
    for (uint32_t h = 0; h < sk->num_levels; h++) {
        const uint32_t pop = sk->levels[h + 1] - sk->levels[h];
        if (pop >= level_cap(sk, sk->num_levels, h)) return h;
    }
    /* A full buffer whose capacity is at least the total capacity always has
     * a level at capacity (pigeonhole), so this is unreachable. */
    return sk->num_levels - 1;
}

static qs_status add_empty_top_level(qs_kll *sk)
{
    if (sk->num_levels >= QS_KLL_MAX_LEVELS) return QS_EOVERFLOW;
    const uint32_t cur = sk->levels[sk->num_levels];
    const uint32_t delta = level_cap(sk, sk->num_levels + 1, 0);
    double *buf = malloc((size_t)(cur + delta) * sizeof(double));
    if (!buf) return QS_ENOMEM;
    memcpy(buf + delta, sk->items, (size_t)cur * sizeof(double));
    free(sk->items);
    sk->items = buf;
    for (uint32_t i = 0; i <= sk->num_levels; i++) sk->levels[i] += delta;
    sk->levels[sk->num_levels + 1] = cur + delta;
    sk->num_levels++;
    return QS_OK;
}

/* Compact the lowest full level, freeing space at the bottom of the buffer. */
static qs_status compress_while_updating(qs_kll *sk)
{
    const uint32_t level = find_level_to_compact(sk);
    if (level == sk->num_levels - 1) {
        qs_status st = add_empty_top_level(sk);
        if (st != QS_OK) return st;
    }
    double *items = sk->items;
    const uint32_t raw_beg = sk->levels[level];
    const uint32_t raw_lim = sk->levels[level + 1];
    const uint32_t pop_above = sk->levels[level + 2] - raw_lim;
    const uint32_t raw_pop = raw_lim - raw_beg;
    const uint32_t odd = raw_pop & 1u;
    const uint32_t adj_beg = raw_beg + odd;
    const uint32_t adj_pop = raw_pop - odd;
    const uint32_t half = adj_pop / 2;

    if (level == 0 && !sk->level0_sorted) qs_sort_doubles(items + adj_beg, adj_pop);
    const unsigned offset = qs_rng_bit(&sk->rng);
    if (pop_above == 0) {
        halve_up(items, adj_beg, adj_pop, offset);
    } else {
        halve_down(items, adj_beg, adj_pop, offset);
        merge_in_place(items, adj_beg, half, raw_lim, pop_above, adj_beg + half);
    }
    sk->levels[level + 1] -= half;
    if (odd) {
        sk->levels[level] = sk->levels[level + 1] - 1;
        items[sk->levels[level]] = items[raw_beg]; /* the leftover item stays at this level */
    } else {
        sk->levels[level] = sk->levels[level + 1];
    }
    /* shift the levels below up, so the freed slots join level 0's free space */
    if (level > 0) {
        const uint32_t amount = raw_beg - sk->levels[0];
        memmove(items + sk->levels[0] + half, items + sk->levels[0], (size_t)amount * sizeof(double));
        for (uint32_t h = 0; h < level; h++) sk->levels[h] += half;
    }
    if (level + 1 > sk->compacted) sk->compacted = (uint8_t)(level + 1);
    return QS_OK;
}

/* Insert one non-NaN item; min, max and n are the caller's business. */
QS_INLINE qs_status insert_item(qs_kll *sk, double x)
{
    while (QS_UNLIKELY(sk->levels[0] == 0)) {
        qs_status st = compress_while_updating(sk);
        if (st != QS_OK) return st;
    }
    sk->items[--sk->levels[0]] = x;
    sk->level0_sorted = 0;
    return QS_OK;
}

static qs_status table_add(qs_kll *sk, double x, uint64_t w);

QS_INLINE void note_range(qs_kll *sk, double lo, double hi)
{
    if (sk->n == 0) {
        sk->min = lo;
        sk->max = hi;
    } else {
        if (lo < sk->min) sk->min = lo;
        if (hi > sk->max) sk->max = hi;
    }
}

qs_status qs_kll_update(qs_kll *sk, double x, int nan_raise)
{
    if (QS_UNLIKELY(x != x)) {
        if (nan_raise) return QS_ENAN;
        if (sk->nan_count == UINT64_MAX) return QS_EOVERFLOW;
        sk->nan_count++;
        return QS_OK;
    }
    if (QS_UNLIKELY(sk->n == UINT64_MAX)) return QS_EOVERFLOW;
    qs_status st = sk->tab_limit ? table_add(sk, x, 1) : insert_item(sk, x);
    if (st != QS_OK) return st;
    note_range(sk, x, x);
    sk->n++;
    qs_invalidate(sk);
    if (sk->bk.cap) {
        qs_bk_count(&sk->bk, &x, 1);
        qs_bk_rebalance(sk, QS_BK_CHECK);
    }
    return QS_OK;
}

/* ---- general compression and merge --------------------------------------- */

typedef struct {
    uint32_t num_levels;
    uint32_t capacity;
    uint32_t count;
    uint32_t compacted; /* highest level a compaction wrote into, 0 for none */
} compress_result;

/*
 * Compact, bottom up, every level that is over capacity while the total is
 * over the total capacity (Apache DataSketches' general_compress).  Works in
 * place on buf, whose levels are in_levels[0..num_levels]; in_levels needs
 * two spare slots.  The result is packed from buf[0], bounded by out_levels.
 */
static compress_result general_compress(uint32_t k, uint32_t m, uint32_t num_levels, double *buf,
                                        uint32_t *in_levels, uint32_t *out_levels,
                                        int level0_sorted, uint64_t *rng)
{
    compress_result r;
    r.num_levels = num_levels;
    r.count = in_levels[num_levels] - in_levels[0];
    r.capacity = qs_kll_total_capacity(k, m, num_levels);
    r.compacted = 0;
    out_levels[0] = 0;
    for (uint32_t level = 0;; level++) {
        if (level == r.num_levels - 1) in_levels[level + 2] = in_levels[level + 1];
        const uint32_t raw_beg = in_levels[level];
        const uint32_t raw_lim = in_levels[level + 1];
        const uint32_t raw_pop = raw_lim - raw_beg;
        if (r.count < r.capacity ||
            raw_pop < qs_kll_level_capacity(k, m, r.num_levels, level)) {
            if (raw_beg != out_levels[level])
                memmove(buf + out_levels[level], buf + raw_beg, (size_t)raw_pop * sizeof(double));
            out_levels[level + 1] = out_levels[level] + raw_pop;
        } else {
            const uint32_t pop_above = in_levels[level + 2] - raw_lim;
            const uint32_t odd = raw_pop & 1u;
            const uint32_t adj_beg = raw_beg + odd;
            const uint32_t adj_pop = raw_pop - odd;
            const uint32_t half = adj_pop / 2;
            if (odd) {
                buf[out_levels[level]] = buf[raw_beg];
                out_levels[level + 1] = out_levels[level] + 1;
            } else {
                out_levels[level + 1] = out_levels[level];
            }
            if (level == 0 && !level0_sorted) qs_sort_doubles(buf + adj_beg, adj_pop);
            const unsigned offset = qs_rng_bit(rng);
            if (pop_above == 0) {
                halve_up(buf, adj_beg, adj_pop, offset);
            } else {
                halve_down(buf, adj_beg, adj_pop, offset);
                merge_in_place(buf, adj_beg, half, raw_lim, pop_above, adj_beg + half);
            }
            r.count -= half;
            in_levels[level + 1] -= half;
            if (level + 1 > r.compacted) r.compacted = level + 1;
            if (level == r.num_levels - 1) {
                r.num_levels++;
                r.capacity += qs_kll_level_capacity(k, m, r.num_levels, 0);
            }
        }
        if (level == r.num_levels - 1) break;
    }
    return r;
}

/*
 * Merge extra levels (other[h], of other_size[h] items, h < other_levels;
 * other[0] may be unsorted, higher levels sorted) into the sketch, with the
 * sketch's k lowered to new_k.  Transactional: on failure the sketch is
 * unchanged.
 */
static qs_status merge_levels(qs_kll *sk, const double *const *other, const uint32_t *other_size,
                              uint32_t other_levels, uint32_t new_k)
{
    const uint32_t L = sk->num_levels > other_levels ? sk->num_levels : other_levels;
    if (L > QS_KLL_MAX_LEVELS) return QS_EOVERFLOW;
    uint64_t total = qs_kll_compactor_retained(sk);
    for (uint32_t h = 0; h < other_levels; h++) total += other_size[h];
    if (total > UINT32_MAX / 2) return QS_EOVERFLOW;

    double *work = malloc((size_t)(total ? total : 1) * sizeof(double));
    if (!work) return QS_ENOMEM;
    uint32_t in_levels[QS_KLL_MAX_LEVELS + 3] = {0}, out_levels[QS_KLL_MAX_LEVELS + 3] = {0};
    uint32_t pos = 0;
    for (uint32_t h = 0; h < L; h++) {
        in_levels[h] = pos;
        const double *a = NULL, *b = NULL;
        uint32_t alen = 0, blen = 0;
        if (h < sk->num_levels) {
            a = sk->items + sk->levels[h];
            alen = sk->levels[h + 1] - sk->levels[h];
        }
        if (h < other_levels) {
            b = other[h];
            blen = other_size[h];
        }
        if (h == 0) { /* level 0 is unsorted: concatenate */
            if (alen) memcpy(work + pos, a, (size_t)alen * sizeof(double));
            if (blen) memcpy(work + pos + alen, b, (size_t)blen * sizeof(double));
        } else {
            merge_runs(a, alen, b, blen, work + pos);
        }
        pos += alen + blen;
    }
    in_levels[L] = pos;

    uint64_t rng = sk->rng;
    const int level0_sorted = (in_levels[1] - in_levels[0]) <= 1;
    compress_result r = general_compress(new_k, sk->m, L, work, in_levels, out_levels,
                                         level0_sorted, &rng);
    if (r.num_levels > QS_KLL_MAX_LEVELS) {
        free(work);
        return QS_EOVERFLOW;
    }
    const uint32_t cap = r.capacity > r.count ? r.capacity : r.count;
    double *items = malloc((size_t)(cap ? cap : 1) * sizeof(double));
    if (!items) {
        free(work);
        return QS_ENOMEM;
    }
    const uint32_t free_space = cap - r.count;
    memcpy(items + free_space, work, (size_t)r.count * sizeof(double));
    free(work);
    free(sk->items);
    sk->items = items;
    sk->num_levels = r.num_levels;
    for (uint32_t h = 0; h <= r.num_levels; h++) sk->levels[h] = out_levels[h] + free_space;
    if (new_k != sk->k) qs_kll_set_k(sk, new_k);
    sk->rng = rng;
    if (r.compacted > sk->compacted) sk->compacted = (uint8_t)r.compacted;
    sk->level0_sorted = (sk->levels[1] - sk->levels[0]) <= 1;
    qs_invalidate(sk);
    return QS_OK;
}

/*
 * Add items with integer weights to the compactors (n, min and max are the
 * caller's business).  Block by block: an item of weight w joins level h for
 * every set bit h of w, each level is sorted, and the block is merged like a
 * sketch.  NaN items are skipped.
 */
static qs_status insert_weighted(qs_kll *sk, const double *x, const uint64_t *w, size_t len)
{
    const size_t block = len < QS_WEIGHTED_BLOCK ? (len ? len : 1) : QS_WEIGHTED_BLOCK;
    double *buf = malloc(block * 64u * sizeof(double));
    if (!buf) return QS_ENOMEM;
    qs_status st = QS_OK;
    for (size_t start = 0; start < len && st == QS_OK; start += QS_WEIGHTED_BLOCK) {
        const size_t end = len - start > QS_WEIGHTED_BLOCK ? start + QS_WEIGHTED_BLOCK : len;
        uint32_t count[64] = {0};
        uint32_t top = 0;
        for (size_t i = start; i < end; i++) {
            if (x[i] != x[i]) continue;
            for (uint64_t b = w[i]; b; b &= b - 1) {
                const uint32_t h = (uint32_t)__builtin_ctzll(b);
                count[h]++;
                if (h + 1 > top) top = h + 1;
            }
        }
        double *level_items[64];
        const double *levels[64];
        uint32_t fill[64], offset = 0;
        for (uint32_t h = 0; h < top; h++) {
            levels[h] = level_items[h] = buf + offset;
            fill[h] = 0;
            offset += count[h];
        }
        for (size_t i = start; i < end; i++) {
            if (x[i] != x[i]) continue;
            for (uint64_t b = w[i]; b; b &= b - 1) {
                const uint32_t h = (uint32_t)__builtin_ctzll(b);
                level_items[h][fill[h]++] = x[i];
            }
        }
        for (uint32_t h = 1; h < top; h++) qs_sort_doubles(level_items[h], count[h]);
        if (top > 0) st = merge_levels(sk, levels, count, top, sk->k);
    }
    free(buf);
    qs_invalidate(sk);
    return st;
}

/* ---- exact low-cardinality table ----------------------------------------- */

/* Index of the first table value >= x. */
static uint32_t table_lower_bound(const qs_kll *sk, double x)
{
    uint32_t lo = 0, len = sk->tab_size;
    while (len > 0) {
        const uint32_t half = len / 2;
        if (sk->tab_values[lo + half] < x) {
            lo += half + 1;
            len -= half + 1;
        } else {
            len = half;
        }
    }
    return lo;
}

/* Move the table into the compactors (exactly, as weighted items) and leave
 * the exact mode for good. */
static qs_status table_flush(qs_kll *sk)
{
    if (sk->tab_size) {
        qs_status st = insert_weighted(sk, sk->tab_values, sk->tab_counts, sk->tab_size);
        if (st != QS_OK) return st;
    }
    free(sk->tab_values);
    free(sk->tab_counts);
    sk->tab_values = NULL;
    sk->tab_counts = NULL;
    sk->tab_size = sk->tab_cap = 0;
    sk->tab_limit = 0;
    qs_invalidate(sk);
    return QS_OK;
}

/*
 * Count x (not NaN) with weight w in the table, or, once the table would
 * exceed its limit, flush it and add x to the compactors.  n, min and max are
 * the caller's business.
 */
static qs_status table_add(qs_kll *sk, double x, uint64_t w)
{
    const uint32_t i = table_lower_bound(sk, x);
    if (i < sk->tab_size && sk->tab_values[i] == x) {
        sk->tab_counts[i] += w;
        return QS_OK;
    }
    if (sk->tab_size >= sk->tab_limit) {
        qs_status st = table_flush(sk);
        if (st != QS_OK) return st;
        if (w == 1) return insert_item(sk, x);
        return insert_weighted(sk, &x, &w, 1);
    }
    if (sk->tab_size == sk->tab_cap) {
        uint32_t cap = sk->tab_cap ? 2 * sk->tab_cap : 16;
        if (cap > sk->tab_limit) cap = sk->tab_limit;
        double *v = realloc(sk->tab_values, (size_t)cap * sizeof(double));
        if (!v) return QS_ENOMEM;
        sk->tab_values = v;
        uint64_t *c = realloc(sk->tab_counts, (size_t)cap * sizeof(uint64_t));
        if (!c) return QS_ENOMEM;
        sk->tab_counts = c;
        sk->tab_cap = cap;
    }
    memmove(sk->tab_values + i + 1, sk->tab_values + i, (size_t)(sk->tab_size - i) * sizeof(double));
    memmove(sk->tab_counts + i + 1, sk->tab_counts + i, (size_t)(sk->tab_size - i) * sizeof(uint64_t));
    sk->tab_values[i] = x;
    sk->tab_counts[i] = w;
    sk->tab_size++;
    return QS_OK;
}

static qs_status merge_compactors(qs_kll *dst, const qs_kll *src)
{
    if (src->n == 0) {
        if (dst->nan_count > UINT64_MAX - src->nan_count) return QS_EOVERFLOW;
        dst->nan_count += src->nan_count;
        if (src->k < dst->k) {
            qs_status st = merge_levels(dst, NULL, NULL, 0, src->k);
            if (st != QS_OK) return st;
        }
        return QS_OK;
    }
    if (dst->n > UINT64_MAX - src->n || dst->nan_count > UINT64_MAX - src->nan_count)
        return QS_EOVERFLOW;
    qs_status st;
    if (src->tab_limit) { /* src holds a table: add its (value, count) pairs */
        if (dst->tab_limit && src->tab_limit < dst->tab_limit) dst->tab_limit = src->tab_limit;
        uint32_t i = 0;
        for (; i < src->tab_size && dst->tab_limit; i++) {
            st = table_add(dst, src->tab_values[i], src->tab_counts[i]);
            if (st != QS_OK) return st;
        }
        if (dst->tab_limit && dst->tab_size > dst->tab_limit) { /* the lowered limit is exceeded */
            st = table_flush(dst);
            if (st != QS_OK) return st;
        }
        if (i < src->tab_size) { /* dst holds compactors (now): the rest in one weighted pass */
            st = insert_weighted(dst, src->tab_values + i, src->tab_counts + i, src->tab_size - i);
            if (st != QS_OK) return st;
        }
        if (src->k < dst->k) {
            st = merge_levels(dst, NULL, NULL, 0, src->k);
            if (st != QS_OK) return st;
        }
        note_range(dst, src->min, src->max);
        dst->n += src->n;
        dst->nan_count += src->nan_count;
        qs_invalidate(dst);
        return QS_OK;
    }
    if (dst->tab_limit) { /* src has compactors: dst's table must join them first */
        st = table_flush(dst);
        if (st != QS_OK) return st;
    }
    const double *levels[QS_KLL_MAX_LEVELS];
    uint32_t sizes[QS_KLL_MAX_LEVELS];
    for (uint32_t h = 0; h < src->num_levels; h++) {
        levels[h] = src->items + src->levels[h];
        sizes[h] = src->levels[h + 1] - src->levels[h];
    }
    const uint32_t new_k = src->k < dst->k ? src->k : dst->k;
    st = merge_levels(dst, levels, sizes, src->num_levels, new_k);
    if (st != QS_OK) return st;
    note_range(dst, src->min, src->max);
    dst->n += src->n;
    dst->nan_count += src->nan_count;
    if (src->compacted > dst->compacted) dst->compacted = src->compacted;
    return QS_OK;
}

qs_status qs_kll_merge(qs_kll *dst, qs_kll *src)
{
    if (src->n == 0 && src->bk.cap) return merge_compactors(dst, src);
    qs_buckets merged;
    qs_status st = qs_bk_merged(dst, src, &merged);
    if (st != QS_OK) return st;
    st = merge_compactors(dst, src);
    if (st != QS_OK) {
        qs_bk_free(&merged);
        return st;
    }
    qs_bk_free(&dst->bk);
    dst->bk = merged;
    qs_invalidate(dst);
    qs_bk_rebalance(dst, QS_BK_FORCE);
    return QS_OK;
}

uint32_t qs_kll_buckets(const qs_kll *sk) { return sk->bk.cap; }

uint32_t qs_kll_default_buckets(uint32_t k)
{
    return 2 * k < QS_KLL_DEFAULT_BUCKETS_MAX ? 2 * k : QS_KLL_DEFAULT_BUCKETS_MAX;
}
uint32_t qs_kll_bucket_boundaries(const qs_kll *sk) { return sk->bk.m; }

void qs_kll_bucket_layer(const qs_kll *sk, const double **bound, const uint64_t **open,
                         const uint64_t **atom, uint32_t *m)
{
    *bound = sk->bk.bound;
    *open = sk->bk.open;
    *atom = sk->bk.atom;
    *m = sk->bk.m;
}

qs_status qs_kll_set_buckets(qs_kll *sk, uint32_t cap)
{
    if (sk->n || sk->nan_count || cap > QS_KLL_MAX_BUCKETS) return QS_EINVAL;
    qs_status st = qs_bk_init(&sk->bk, cap);
    qs_invalidate(sk);
    return st;
}

/* ---- batch paths ---------------------------------------------------------- */

static int contains_nan(const double *x, size_t len)
{
    int any = 0;
    for (size_t i = 0; i < len; i++) any |= (x[i] != x[i]);
    return any;
}

/* Items kept from one chunk: k/4 rounded up to a power of two, within [32, 4096]. */
static uint32_t bulk_survivors(uint32_t k)
{
    uint32_t s = 32;
    while (s < QS_SURVIVORS_MAX && s * 4u < k) s <<= 1;
    return s;
}

/* The bulk chunk size for the sketch as it is now and `remaining` items to
 * come, or 0 while it must go item by item (see the top of this file). */
static uint32_t bulk_chunk_size(const qs_kll *sk, size_t remaining)
{
    if (!sk->compacted) return 0;
    const uint32_t S = bulk_survivors(sk->k);
    const double limit = (double)sk->n * S / (16.0 * sk->k);
    uint32_t c = QS_CHUNK_MIN;
    if (c < 4 * S) c = 4 * S;
    if ((double)c > limit || c > remaining) return 0;
    while (c < QS_CHUNK_MAX && (double)(2 * c) <= limit && 2 * (size_t)c <= remaining) c <<= 1;
    return c;
}

/* Select the surviving order statistics of one chunk and merge them in. */
typedef struct {
    double *chunk;   /* QS_CHUNK_MAX items */
    double *work;    /* QS_CHUNK_MAX items + 1 dump slot */
    uint8_t *ids;    /* QS_CHUNK_MAX bucket ids */
    double *out;     /* QS_SURVIVORS_MAX */
    size_t *targets; /* QS_SURVIVORS_MAX */
    size_t *rel;     /* QS_SURVIVORS_MAX */
} bulk_scratch;

static void bulk_scratch_free(bulk_scratch *b)
{
    free(b->chunk);
    free(b->work);
    free(b->ids);
    free(b->out);
    free(b->targets);
    free(b->rel);
}

static int bulk_scratch_alloc(bulk_scratch *b)
{
    b->chunk = malloc((size_t)QS_CHUNK_MAX * sizeof(double));
    b->work = malloc(((size_t)QS_CHUNK_MAX + 1) * sizeof(double));
    b->ids = malloc((size_t)QS_CHUNK_MAX);
    b->out = malloc((size_t)QS_SURVIVORS_MAX * sizeof(double));
    b->targets = malloc((size_t)QS_SURVIVORS_MAX * sizeof(size_t));
    b->rel = malloc((size_t)QS_SURVIVORS_MAX * sizeof(size_t));
    return b->chunk && b->work && b->ids && b->out && b->targets && b->rel;
}

/*
 * The classification the layer's count needs, from a chunk too small to be
 * classified: the multiselect left it partitioned around every target (the
 * items before target position t are <= chunk[t], those after it >= chunk[t]),
 * so every g-th target is a splitter, with the positions up to it as its
 * bucket.  The unused splitters are +inf.
 */
static void partition_classes(bulk_scratch *b, uint32_t c, uint32_t S, double *splitters)
{
    uint32_t g = 1;
    while (S / g > QS_SELECT_BUCKETS - 1) g <<= 1;
    const uint32_t used = S / g;
    size_t pos = 0;
    for (uint32_t k = 0; k < used; k++) {
        const size_t t = b->targets[(k + 1) * g - 1];
        splitters[k] = b->chunk[t];
        memset(b->ids + pos, (int)k, t + 1 - pos);
        pos = t + 1;
    }
    memset(b->ids + pos, (int)used, c - pos);
    for (uint32_t k = used; k < QS_SELECT_BUCKETS - 1; k++) splitters[k] = INFINITY;
}

/* Ingest chunk b->chunk[0..c) with values in [lo, hi]: the layer counts it and
 * splits with it in hand (it is exact there), then its survivors enter the
 * compactors.  On failure the sketch is as it was. */
static qs_status ingest_chunk(qs_kll *sk, uint32_t c, bulk_scratch *b, double lo, double hi)
{
    const uint32_t S = bulk_survivors(sk->k);
    const uint32_t step = c / S;
    uint32_t level = 0;
    while ((1u << level) < step) level++;
    uint64_t rng = sk->rng;
    const size_t r = (size_t)(qs_rng_next(&rng) & (step - 1));
    for (uint32_t i = 0; i < S; i++) b->targets[i] = r + (size_t)i * step;
    double splitters[QS_SELECT_BUCKETS - 1];
    const int classified = qs_select_many(b->chunk, c, b->targets, S, b->out, b->work, b->ids,
                                          b->rel, sk->bk.cap ? splitters : NULL);

    const double saved_min = sk->min, saved_max = sk->max;
    note_range(sk, lo, hi);
    if (sk->bk.cap) { /* the chunk is a permutation of what it was */
        if (!classified) partition_classes(b, c, S, splitters);
        qs_bk_count_classified(&sk->bk, b->chunk, c, b->ids, splitters);
        qs_bk_rebalance_chunk(sk, b->chunk, c, saved_min, saved_max);
    }

    const double *levels[QS_KLL_MAX_LEVELS];
    uint32_t sizes[QS_KLL_MAX_LEVELS];
    for (uint32_t h = 0; h < level; h++) {
        levels[h] = NULL;
        sizes[h] = 0;
    }
    levels[level] = b->out;
    sizes[level] = S;
    const uint64_t saved = sk->rng;
    sk->rng = rng;
    qs_status st = merge_levels(sk, levels, sizes, level + 1, sk->k);
    if (st != QS_OK) {
        sk->rng = saved;
        if (sk->bk.cap) qs_bk_uncount(&sk->bk, b->chunk, c, saved_min, saved_max);
        sk->min = saved_min;
        sk->max = saved_max;
        qs_invalidate(sk);
        return st;
    }
    if (level > sk->compacted) sk->compacted = (uint8_t)level; /* the chunk was halved up to level */
    qs_invalidate(sk);
    return QS_OK;
}

/*
 * Items x[*i ..) up to QS_CHUNK_MIN non-NaN ones, item by item into the
 * compactors; but the layer counts them as a group first and splits with the
 * group in hand, as it does with a bulk chunk, so that splits divide the
 * group's items exactly and estimate only the older ones, from compactors that
 * do not hold the group yet.  (Without it, the splits before the bulk path
 * starts -- n < 47,104 at k = 368 -- estimate every item.  Measured, 6 sketch
 * seeds: diamonds_price's mean error at k = 368 0.0241 -> 0.0187% of n, and
 * lower at 9 of 10 k in 300-420; 31 streams at k = 17, 78, 200 and 368:
 * geomean max error 0.94-1.00x, mean 0.97-1.01x.)  On failure the items
 * before the failing one stay in, as on the plain item path.
 */
static qs_status ingest_group(qs_kll *sk, const double *x, size_t len, size_t *i)
{
    double group[QS_CHUNK_MIN];
    uint32_t got = 0;
    double lo = INFINITY, hi = -INFINITY;
    size_t j = *i;
    for (; j < len && got < QS_CHUNK_MIN; j++) {
        const double v = x[j];
        if (QS_UNLIKELY(v != v)) {
            sk->nan_count++;
            continue;
        }
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        group[got++] = v;
    }
    *i = j;
    if (!got) return QS_OK;
    const double saved_min = sk->min, saved_max = sk->max;
    note_range(sk, lo, hi);
    qs_bk_count(&sk->bk, group, got);
    qs_invalidate(sk);
    qs_bk_rebalance_chunk(sk, group, got, saved_min, saved_max);
    for (uint32_t g = 0; g < got; g++) {
        const qs_status st = insert_item(sk, group[g]);
        if (QS_UNLIKELY(st != QS_OK)) {
            sk->min = saved_min;
            sk->max = saved_max;
            for (uint32_t h = 0; h < g; h++) note_range(sk, group[h], group[h]);
            qs_bk_uncount(&sk->bk, group + g, got - g, sk->min, sk->max);
            qs_invalidate(sk);
            return st;
        }
        sk->n++;
    }
    qs_invalidate(sk);
    return QS_OK;
}

qs_status qs_kll_update_batch(qs_kll *sk, const double *x, size_t len, int nan_raise)
{
    if (nan_raise && contains_nan(x, len)) return QS_ENAN;
    if ((uint64_t)len > UINT64_MAX - sk->n || (uint64_t)len > UINT64_MAX - sk->nan_count) {
        /* near the limits only: count exactly what goes where */
        uint64_t nans = 0;
        for (size_t i = 0; i < len; i++) nans += (x[i] != x[i]);
        if ((uint64_t)len - nans > UINT64_MAX - sk->n || nans > UINT64_MAX - sk->nan_count)
            return QS_EOVERFLOW;
    }
    qs_invalidate(sk);
    bulk_scratch scratch = {NULL, NULL, NULL, NULL, NULL, NULL};
    double *chunk = NULL;
    qs_status st = QS_OK;
    size_t i = 0;
    /* exact low-cardinality mode, until the table overflows into the compactors */
    for (; i < len && sk->tab_limit; i++) {
        const double v = x[i];
        if (QS_UNLIKELY(v != v)) {
            sk->nan_count++;
            continue;
        }
        st = table_add(sk, v, 1);
        if (st != QS_OK) return st;
        note_range(sk, v, v);
        sk->n++;
        if (sk->bk.cap) {
            qs_bk_count(&sk->bk, &v, 1);
            qs_invalidate(sk);
            qs_bk_rebalance(sk, QS_BK_CHECK);
        }
    }
    while (i < len) {
        const uint32_t c = bulk_chunk_size(sk, len - i);
        if (c) {
            if (!chunk) {
                if (!bulk_scratch_alloc(&scratch)) {
                    st = QS_ENOMEM;
                    break;
                }
                chunk = scratch.chunk;
            }
            uint32_t got = 0;
            uint64_t nans = 0;
            size_t j = i;
            double lo = INFINITY, hi = -INFINITY;
            while (got < c && j < len) {
                const double v = x[j++];
                if (QS_UNLIKELY(v != v)) {
                    nans++;
                    continue;
                }
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
                chunk[got++] = v;
            }
            if (got < c) { /* NaNs left too few items for a chunk: go item by item */
                for (; i < len; i++) {
                    st = qs_kll_update(sk, x[i], 0);
                    if (st != QS_OK) break;
                }
                break;
            }
            st = ingest_chunk(sk, c, &scratch, lo, hi);
            if (st != QS_OK) break;
            sk->n += c;
            sk->nan_count += nans;
            i = j;
        } else if (sk->bk.cap && sk->n >= 16 * (uint64_t)QS_CHUNK_MIN) {
            /* a group is at most 1/16 of the items before it (measured: from
             * the first item, or groups of n/16, cost shift at k = 17 and
             * diamonds_price's steadiness) */
            st = ingest_group(sk, x, len, &i);
            if (st != QS_OK) break;
        } else {
            /* item by item, re-checking for the bulk path every QS_CHUNK_MIN items */
            const size_t stop = len - i > QS_CHUNK_MIN ? i + QS_CHUNK_MIN : len;
            size_t run = i; /* inserted, not yet counted by the layer: x[run..i), counted
                               together so that their searches overlap */
            for (; i < stop; i++) {
                const double v = x[i];
                if (QS_UNLIKELY(v != v)) {
                    if (sk->bk.cap) qs_bk_count(&sk->bk, x + run, i - run);
                    run = i + 1;
                    sk->nan_count++;
                    continue;
                }
                st = insert_item(sk, v);
                if (st != QS_OK) break;
                note_range(sk, v, v);
                sk->n++;
            }
            if (sk->bk.cap) qs_bk_count(&sk->bk, x + run, i - run);
            if (st != QS_OK) break;
            if (sk->bk.cap) {
                qs_invalidate(sk);
                qs_bk_rebalance(sk, QS_BK_CHECK);
            }
        }
    }
    bulk_scratch_free(&scratch);
    qs_invalidate(sk);
    if (st == QS_OK && sk->bk.cap) qs_bk_rebalance(sk, QS_BK_CHECK); /* no interval left over its limit */
    return st;
}

qs_status qs_kll_update_weighted(qs_kll *sk, const double *x, const uint64_t *w, size_t len,
                                 int nan_raise)
{
    /* Validate everything before touching the sketch. */
    uint64_t add_n = 0, add_nan = 0, max_w = 0;
    for (size_t i = 0; i < len; i++) {
        if (w[i] == 0) return QS_EINVAL;
        if (x[i] != x[i]) {
            if (nan_raise) return QS_ENAN;
            if (add_nan > UINT64_MAX - w[i]) return QS_EOVERFLOW;
            add_nan += w[i];
        } else {
            if (add_n > UINT64_MAX - w[i]) return QS_EOVERFLOW;
            add_n += w[i];
        }
        if (w[i] > max_w) max_w = w[i];
    }
    if (add_n > UINT64_MAX - sk->n || add_nan > UINT64_MAX - sk->nan_count) return QS_EOVERFLOW;
    if (max_w <= 1) return qs_kll_update_batch(sk, x, len, nan_raise);

    qs_status st = QS_OK;
    size_t i = 0;
    for (; i < len && sk->tab_limit; i++) { /* exact low-cardinality mode first */
        if (x[i] != x[i]) {
            sk->nan_count += w[i];
            continue;
        }
        st = table_add(sk, x[i], w[i]);
        if (st != QS_OK) return st;
        note_range(sk, x[i], x[i]);
        sk->n += w[i];
        if (sk->bk.cap) {
            qs_bk_count_weighted(&sk->bk, x + i, w + i, 1);
            qs_invalidate(sk);
            qs_bk_rebalance(sk, QS_BK_CHECK);
        }
    }
    for (size_t start = i; start < len && st == QS_OK; start += QS_WEIGHTED_BLOCK) {
        const size_t end = len - start > QS_WEIGHTED_BLOCK ? start + QS_WEIGHTED_BLOCK : len;
        uint64_t blk_n = 0, blk_nan = 0;
        double lo = INFINITY, hi = -INFINITY;
        for (size_t j = start; j < end; j++) {
            if (x[j] != x[j]) {
                blk_nan += w[j];
                continue;
            }
            blk_n += w[j];
            lo = x[j] < lo ? x[j] : lo;
            hi = x[j] > hi ? x[j] : hi;
        }
        st = insert_weighted(sk, x + start, w + start, end - start);
        if (st != QS_OK) break;
        if (blk_n) note_range(sk, lo, hi);
        sk->n += blk_n;
        sk->nan_count += blk_nan;
        if (sk->bk.cap) {
            qs_bk_count_weighted(&sk->bk, x + start, w + start, end - start);
            qs_invalidate(sk);
            qs_bk_rebalance(sk, QS_BK_CHECK);
        }
    }
    qs_invalidate(sk);
    return st;
}

/* ---- sorted view and queries --------------------------------------------- */

/* Room for R entries in the cached sorted view. */
static qs_status view_reserve(qs_kll *sk, uint32_t R)
{
    if (R <= sk->view_cap) return QS_OK;
    double *vi = realloc(sk->view_items, (size_t)R * sizeof(double));
    if (!vi) return QS_ENOMEM;
    sk->view_items = vi;
    uint64_t *vc = realloc(sk->view_cum, (size_t)R * sizeof(uint64_t));
    if (!vc) return QS_ENOMEM;
    sk->view_cum = vc;
    sk->view_cap = R;
    return QS_OK;
}

static qs_status build_view(qs_kll *sk)
{
    if (sk->view_valid) return QS_OK;
    const uint32_t R = qs_kll_num_retained(sk);
    qs_status st = view_reserve(sk, R);
    if (st != QS_OK) return st;
    if (sk->tab_limit) { /* exact mode: the table is the view */
        uint64_t cum = 0;
        for (uint32_t i = 0; i < R; i++) {
            sk->view_items[i] = sk->tab_values[i];
            cum += sk->tab_counts[i];
            sk->view_cum[i] = cum;
        }
        sk->view_size = R;
        sk->view_valid = 1;
        return QS_OK;
    }
    double *tmp_items = malloc((size_t)(R ? R : 1) * sizeof(double));
    uint64_t *tmp_w = malloc((size_t)(R ? R : 1) * sizeof(uint64_t));
    if (!tmp_items || !tmp_w) {
        free(tmp_items);
        free(tmp_w);
        return QS_ENOMEM;
    }
    /* runs: one per non-empty level, merged pairwise in rounds (O(R log H)) */
    uint32_t run_start[QS_KLL_MAX_LEVELS + 1], nruns = 0;
    double *ai = sk->view_items, *bi = tmp_items;
    uint64_t *aw = sk->view_cum, *bw = tmp_w;
    uint32_t pos = 0;
    for (uint32_t h = 0; h < sk->num_levels; h++) {
        const uint32_t beg = sk->levels[h], size = sk->levels[h + 1] - beg;
        if (!size) continue;
        memcpy(ai + pos, sk->items + beg, (size_t)size * sizeof(double));
        if (h == 0 && !sk->level0_sorted) qs_sort_doubles(ai + pos, size);
        for (uint32_t i = 0; i < size; i++) aw[pos + i] = UINT64_C(1) << h;
        run_start[nruns++] = pos;
        pos += size;
    }
    run_start[nruns] = pos;
    while (nruns > 1) {
        uint32_t out = 0;
        for (uint32_t r = 0; r < nruns; r += 2) {
            const uint32_t s = run_start[r], mid = run_start[r + 1];
            if (r + 1 == nruns) { /* the odd run out is copied as it is */
                memcpy(bi + s, ai + s, (size_t)(mid - s) * sizeof(double));
                memcpy(bw + s, aw + s, (size_t)(mid - s) * sizeof(uint64_t));
            } else {
                const uint32_t e = run_start[r + 2];
                uint32_t i = s, j = mid, o = s;
                while (i < mid && j < e) {
                    if (ai[j] < ai[i]) { bi[o] = ai[j]; bw[o++] = aw[j++]; }
                    else { bi[o] = ai[i]; bw[o++] = aw[i++]; }
                }
                while (i < mid) { bi[o] = ai[i]; bw[o++] = aw[i++]; }
                while (j < e) { bi[o] = ai[j]; bw[o++] = aw[j++]; }
            }
            run_start[out++] = s;
        }
        run_start[out] = pos;
        nruns = out;
        double *ti = ai; ai = bi; bi = ti;
        uint64_t *tw = aw; aw = bw; bw = tw;
    }
    if (ai != sk->view_items) {
        memcpy(sk->view_items, ai, (size_t)R * sizeof(double));
        memcpy(sk->view_cum, aw, (size_t)R * sizeof(uint64_t));
    }
    uint64_t cum = 0;
    for (uint32_t i = 0; i < R; i++) {
        cum += sk->view_cum[i];
        sk->view_cum[i] = cum;
    }
    free(tmp_items);
    free(tmp_w);
    sk->view_size = R;
    sk->view_valid = 1;
    return QS_OK;
}

qs_status qs_kll_sorted_view(qs_kll *sk, const double **items, const uint64_t **cum_weights,
                             uint32_t *size)
{
    qs_status st = build_view(sk);
    if (st != QS_OK) return st;
    *items = sk->view_items;
    *cum_weights = sk->view_cum;
    *size = sk->view_size;
    return QS_OK;
}

/*
 * Rank searches.  For each q, the number of a[0..n) that are <= q (inclusive)
 * or < q.  Branchless binary searches, eight queries at a time so that their
 * load latencies overlap; sorted query batches (as long as the sorted view or
 * longer) take one merge-like walk instead.
 */
#define QS_SEARCH_LANES 8

void qs_count_below_many(const double *a, size_t n, const double *q, size_t len, int inclusive,
                         size_t *out)
{
    size_t i = 0;
    for (; i + QS_SEARCH_LANES <= len; i += QS_SEARCH_LANES) {
        const double *base[QS_SEARCH_LANES];
        for (int u = 0; u < QS_SEARCH_LANES; u++) base[u] = a;
        size_t m = n;
        if (inclusive) {
            while (m > 1) {
                const size_t half = m / 2;
                for (int u = 0; u < QS_SEARCH_LANES; u++)
                    base[u] += (size_t)(base[u][half] <= q[i + u]) * half;
                m -= half;
            }
            for (int u = 0; u < QS_SEARCH_LANES; u++)
                out[i + u] = (size_t)(base[u] - a) + (*base[u] <= q[i + u]);
        } else {
            while (m > 1) {
                const size_t half = m / 2;
                for (int u = 0; u < QS_SEARCH_LANES; u++)
                    base[u] += (size_t)(base[u][half] < q[i + u]) * half;
                m -= half;
            }
            for (int u = 0; u < QS_SEARCH_LANES; u++)
                out[i + u] = (size_t)(base[u] - a) + (*base[u] < q[i + u]);
        }
    }
    for (; i < len; i++) {
        const double *base = a;
        size_t m = n;
        while (m > 1) {
            const size_t half = m / 2;
            const double v = base[half];
            base = (inclusive ? v <= q[i] : v < q[i]) ? base + half : base;
            m -= half;
        }
        out[i] = (size_t)(base - a) + (inclusive ? *base <= q[i] : *base < q[i]);
    }
}

static int is_ascending(const double *q, size_t len)
{
    for (size_t i = 1; i < len; i++)
        if (q[i] < q[i - 1]) return 0;
    return 1;
}

qs_status qs_kll_rank(qs_kll *sk, const double *q, size_t len, int inclusive, double *out)
{
    if (sk->n == 0) {
        for (size_t i = 0; i < len; i++) out[i] = NAN;
        return QS_OK;
    }
    qs_status st = build_view(sk);
    if (st != QS_OK) return st;
    const double *items = sk->view_items;
    const uint64_t *cum = sk->view_cum;
    const size_t R = sk->view_size;
    const double n = (double)sk->n;
    if (len >= R && is_ascending(q, len)) {
        size_t idx = 0;
        for (size_t i = 0; i < len; i++) {
            if (inclusive)
                while (idx < R && items[idx] <= q[i]) idx++;
            else
                while (idx < R && items[idx] < q[i]) idx++;
            out[i] = idx ? (double)cum[idx - 1] / n : 0.0;
        }
        return QS_OK;
    }
    size_t idx[256];
    for (size_t start = 0; start < len; start += 256) {
        const size_t m = len - start < 256 ? len - start : 256;
        qs_count_below_many(items, R, q + start, m, inclusive, idx);
        for (size_t i = 0; i < m; i++) out[start + i] = idx[i] ? (double)cum[idx[i] - 1] / n : 0.0;
    }
    return QS_OK;
}

/* For each target t[i], the first index whose cumulative weight is >= t[i]:
 * branchless lower bounds, eight at a time (as count_below_many). */
static void first_cum_at_least_many(const uint64_t *cum, size_t n, const uint64_t *t, size_t len,
                                    size_t *out)
{
    size_t i = 0;
    for (; i + QS_SEARCH_LANES <= len; i += QS_SEARCH_LANES) {
        const uint64_t *base[QS_SEARCH_LANES];
        for (int u = 0; u < QS_SEARCH_LANES; u++) base[u] = cum;
        size_t m = n;
        while (m > 1) {
            const size_t half = m / 2;
            for (int u = 0; u < QS_SEARCH_LANES; u++) /* arithmetic, not a branch */
                base[u] += (size_t)(base[u][half - 1] < t[i + u]) * half;
            m -= half;
        }
        for (int u = 0; u < QS_SEARCH_LANES; u++)
            out[i + u] = (size_t)(base[u] - cum) + (*base[u] < t[i + u]);
    }
    for (; i < len; i++) {
        const uint64_t *base = cum;
        size_t m = n;
        while (m > 1) {
            const size_t half = m / 2;
            base = (base[half - 1] < t[i]) ? base + half : base;
            m -= half;
        }
        out[i] = (size_t)(base - cum) + (*base < t[i]);
    }
}

/* The cumulative weight quantile(p) must reach with the step estimator: the
 * first item whose cumulative weight reaches ceil(p n) (inclusive) or
 * exceeds p n (exclusive), p n rounded by qs_quantile_weight. */
QS_INLINE uint64_t quantile_target(double p, double n, int inclusive)
{
    const double t = qs_quantile_weight(p, n);
    if (t >= 18446744073709551616.0) return UINT64_MAX;
    const uint64_t fl = (uint64_t)t; /* floor: t >= 0 */
    if (inclusive) return fl + (t > (double)fl);
    return fl == UINT64_MAX ? UINT64_MAX : fl + 1u;
}

qs_status qs_kll_quantile(qs_kll *sk, const double *p, size_t len, int inclusive, double *out)
{
    for (size_t i = 0; i < len; i++)
        if (!(p[i] >= 0.0 && p[i] <= 1.0)) return QS_EINVAL;
    if (sk->n == 0) {
        for (size_t i = 0; i < len; i++) out[i] = NAN;
        return QS_OK;
    }
    qs_status st = build_view(sk);
    if (st != QS_OK) return st;
    const size_t R = sk->view_size;
    const uint64_t *cum = sk->view_cum;
    const double *items = sk->view_items;
    const double n = (double)sk->n;
    uint64_t target[256];
    size_t idx[256];
    const int walk = len >= R && is_ascending(p, len);
    size_t w = 0; /* position of the walk over sorted probabilities */
    for (size_t start = 0; start < len; start += 256) {
        const size_t m = len - start < 256 ? len - start : 256;
        for (size_t i = 0; i < m; i++) target[i] = quantile_target(p[start + i], n, inclusive);
        if (walk) {
            for (size_t i = 0; i < m; i++) {
                while (w < R && cum[w] < target[i]) w++;
                idx[i] = w;
            }
        } else {
            first_cum_at_least_many(cum, R, target, m, idx);
        }
        for (size_t i = 0; i < m; i++) {
            const double pi = p[start + i];
            /* quantile(0) and quantile(1) are the exact extremes */
            out[start + i] = pi == 0.0 ? sk->min : pi == 1.0 ? sk->max : items[idx[i] < R ? idx[i] : R - 1];
        }
    }
    return QS_OK;
}

/* ---- invariants ----------------------------------------------------------- */

int qs_kll_check_invariants(const qs_kll *sk, const char **message)
{
#define FAIL(msg) do { *message = (msg); return 1; } while (0)
    if (sk->k < QS_KLL_MIN_K || sk->k > QS_KLL_MAX_K) FAIL("k is out of range");
    if (sk->m < 2 || sk->m > sk->k) FAIL("m is out of range");
    if (sk->num_levels < 1 || sk->num_levels > QS_KLL_MAX_LEVELS) FAIL("level count is out of range");
    for (uint32_t h = 0; h < sk->num_levels; h++)
        if (sk->levels[h] > sk->levels[h + 1]) FAIL("level offsets are not ordered");
    uint64_t weight = 0;
    for (uint32_t h = 0; h < sk->num_levels; h++) {
        const double *a = sk->items + sk->levels[h];
        const uint32_t size = sk->levels[h + 1] - sk->levels[h];
        for (uint32_t i = 0; i < size; i++) {
            if (a[i] != a[i]) FAIL("a retained item is NaN");
            if (a[i] < sk->min || a[i] > sk->max) FAIL("a retained item lies outside [min, max]");
            if ((h > 0 || sk->level0_sorted) && i > 0 && a[i] < a[i - 1])
                FAIL("a sorted level is not sorted");
        }
        if (size) {
            if (h >= 64 || (uint64_t)size > (UINT64_MAX >> h)) FAIL("level weights overflow");
            const uint64_t lw = (uint64_t)size << h;
            if (weight > UINT64_MAX - lw) FAIL("level weights overflow");
            weight += lw;
        }
    }
    if (sk->tab_limit) {
        if (sk->compacted) FAIL("an exact table in a sketch that has compacted");
        if (sk->tab_size > sk->tab_limit) FAIL("the exact table is over its limit");
        if (sk->levels[sk->num_levels] != sk->levels[0]) FAIL("exact table and compactors both hold items");
        for (uint32_t i = 0; i < sk->tab_size; i++) {
            const double v = sk->tab_values[i];
            if (v != v) FAIL("an exact table value is NaN");
            if (v < sk->min || v > sk->max) FAIL("an exact table value lies outside [min, max]");
            if (i > 0 && !(sk->tab_values[i - 1] < v)) FAIL("exact table values are not strictly increasing");
            if (sk->tab_counts[i] == 0) FAIL("an exact table count is zero");
            if (weight > UINT64_MAX - sk->tab_counts[i]) FAIL("exact table counts overflow");
            weight += sk->tab_counts[i];
        }
    } else if (sk->tab_size) {
        FAIL("an exact table without a limit");
    }
    if (weight != sk->n) FAIL("retained weights do not add up to n");
    if (sk->n > 0 && !(sk->min <= sk->max)) FAIL("min is not <= max");
    if (sk->n == 0 && (sk->min == sk->min || sk->max == sk->max)) FAIL("an empty sketch has a min or max");
    if (qs_bk_check(sk, message)) return 1;
    *message = NULL;
    return 0;
#undef FAIL
}
