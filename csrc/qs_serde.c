/*
 * qs_serde.c -- the qsketch binary format for KLL sketches.
 *
 * Format version 4 (version 3 is the same with m always 8, version 2 also
 * without the bucket section, version 1 also without the exact-table section;
 * all are still read), all integers and doubles little-endian; "varint" is
 * unsigned LEB128:
 *
 *   offset  size  field
 *        0     3  magic "QSK"
 *        3     1  format version (4; 1 to 3 are still read)
 *        4     1  sketch type (1 = KLL over float64)
 *        5     1  flags: bit 0 level 0 sorted, bit 1 estimation mode
 *        6     2  k
 *        8     1  m, the smallest level capacity: 2 to 8, at most k (8 before v4)
 *        9     1  number of levels L, 1..64
 *       10     1  binding flags (opaque to the core: nan policy, estimator)
 *       11     1  highest level written by a compaction (v2; 0 in v1)
 *       12     4  number of retained items R
 *       16     8  n, total weight of the non-NaN items
 *       24     8  nan_count
 *       32     8  min (NaN when n == 0)
 *       40     8  max (NaN when n == 0)
 *       48     8  PRNG state, so a decoded sketch continues the same random stream
 *       56   4*L  size of each level, level 0 first
 *    56+4L   8*R  retained items, level 0 first, each level in storage order
 *        .     4  exact-table limit (0: the compactors hold the stream)   [v2]
 *        .     4  exact-table size T                                      [v2]
 *        .   8*T  exact-table values, strictly increasing                 [v2]
 *        .   8*T  exact-table counts                                      [v2]
 *        .     2  bucket capacity C (0: no accuracy layer)                [v3]
 *        .     2  boundaries in use B <= C                                [v3]
 *        .   8*B  boundaries, strictly increasing, within [min, max]      [v3]
 *        .     v  varints: n at which the layer is next rebalanced,
 *                 B + 1 open-interval counts, B boundary counts (they
 *                 add up to n); nothing when C == 0                       [v3]
 *      end     4  CRC-32 (zlib's) of every byte before it
 *
 * The decoder checks the length before every read, then the checksum, then
 * every field and the sketch's invariants (sorted levels, weights adding up
 * to n, items within [min, max]) before it hands out a sketch: a corrupt
 * input gives an error with a reason, never a crash or a wrong sketch.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qs_crc32.h"
#include "qs_kll_internal.h"

#define QS_FORMAT_VERSION 4
#define QS_TYPE_KLL_F64 1
#define QS_HEADER_BYTES 56u
#define QS_FLAG_LEVEL0_SORTED 1u
#define QS_FLAG_ESTIMATION 2u

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_f64(uint8_t *p, double x)
{
    uint64_t v;
    memcpy(&v, &x, 8);
    put_u64(p, v);
}
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static double get_f64(const uint8_t *p)
{
    uint64_t v = get_u64(p);
    double x;
    memcpy(&x, &v, 8);
    return x;
}

/* Arrays of 8-byte words, float64 or uint64 (put_f64 writes a double's bits
 * as put_u64 writes an integer): on a little-endian machine the format's
 * byte order is the memory's, and one memcpy replaces a loop of shifts. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define QS_SERDE_LE 1
#else
#define QS_SERDE_LE 0
#endif

static uint8_t *put_words(uint8_t *p, const void *x, size_t n)
{
#if QS_SERDE_LE
    if (n) memcpy(p, x, n * 8u); /* x may be NULL when n is 0 */
#else
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        memcpy(&v, (const uint8_t *)x + 8u * i, 8);
        put_u64(p + 8u * i, v);
    }
#endif
    return p + n * 8u;
}

static const uint8_t *get_words(const uint8_t *p, void *x, size_t n)
{
#if QS_SERDE_LE
    if (n) memcpy(x, p, n * 8u);
#else
    for (size_t i = 0; i < n; i++) {
        const uint64_t v = get_u64(p + 8u * i);
        memcpy((uint8_t *)x + 8u * i, &v, 8);
    }
#endif
    return p + n * 8u;
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Reads one varint from [*p, end); 0 if it runs past end or over 64 bits. */
static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    if (*p < end && **p < 0x80) { /* most counts fit one byte */
        *out = *(*p)++;
        return 1;
    }
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        const uint8_t b = *(*p)++;
        if (shift == 63 && b > 1) return 0;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

static size_t bucket_section_size(const qs_kll *sk)
{
    const qs_buckets *bk = &sk->bk;
    size_t size = 4;
    if (!bk->cap) return size;
    size += 8u * (size_t)bk->m + varint_size(bk->next_check);
    for (uint32_t i = 0; i <= bk->m; i++) size += varint_size(bk->open[i]);
    for (uint32_t i = 0; i < bk->m; i++) size += varint_size(bk->atom[i]);
    return size;
}

size_t qs_kll_serialized_size(const qs_kll *sk)
{
    return QS_HEADER_BYTES + 4u * (size_t)sk->num_levels +
           8u * (size_t)qs_kll_compactor_retained(sk) + 8u + 16u * (size_t)sk->tab_size +
           bucket_section_size(sk) + 4u;
}

qs_status qs_kll_serialize(const qs_kll *sk, uint8_t *buf, size_t cap, size_t *written)
{
    const size_t size = qs_kll_serialized_size(sk);
    if (cap < size) return QS_EINVAL;
    memcpy(buf, "QSK", 3);
    buf[3] = QS_FORMAT_VERSION;
    buf[4] = QS_TYPE_KLL_F64;
    buf[5] = (uint8_t)((sk->level0_sorted ? QS_FLAG_LEVEL0_SORTED : 0u) |
                       (sk->compacted ? QS_FLAG_ESTIMATION : 0u));
    put_u16(buf + 6, (uint16_t)sk->k);
    buf[8] = (uint8_t)sk->m;
    buf[9] = (uint8_t)sk->num_levels;
    buf[10] = sk->user_flags;
    buf[11] = sk->compacted;
    put_u32(buf + 12, qs_kll_compactor_retained(sk));
    put_u64(buf + 16, sk->n);
    put_u64(buf + 24, sk->nan_count);
    put_f64(buf + 32, sk->min);
    put_f64(buf + 40, sk->max);
    put_u64(buf + 48, sk->rng);
    uint8_t *p = buf + QS_HEADER_BYTES;
    for (uint32_t h = 0; h < sk->num_levels; h++, p += 4)
        put_u32(p, sk->levels[h + 1] - sk->levels[h]);
    p = put_words(p, sk->items + sk->levels[0], qs_kll_compactor_retained(sk));
    put_u32(p, sk->tab_limit);
    put_u32(p + 4, sk->tab_size);
    p += 8;
    p = put_words(p, sk->tab_values, sk->tab_size);
    p = put_words(p, sk->tab_counts, sk->tab_size);
    const qs_buckets *bk = &sk->bk;
    put_u16(p, (uint16_t)bk->cap);
    put_u16(p + 2, (uint16_t)bk->m);
    p += 4;
    if (bk->cap) {
        p = put_words(p, bk->bound, bk->m);
        p = put_varint(p, bk->next_check);
        for (uint32_t i = 0; i <= bk->m; i++) p = put_varint(p, bk->open[i]);
        for (uint32_t i = 0; i < bk->m; i++) p = put_varint(p, bk->atom[i]);
    }
    put_u32(p, qs_crc32(buf, size - 4));
    *written = size;
    return QS_OK;
}

qs_kll *qs_kll_deserialize(const uint8_t *buf, size_t len, qs_status *status, const char **message)
{
#define FAIL(st, msg) do { *status = (st); *message = (msg); return NULL; } while (0)
    if (len < 4) FAIL(QS_EFORMAT, "too short to be a qsketch sketch (fewer than 4 bytes)");
    if (memcmp(buf, "QSK", 3) != 0) FAIL(QS_EFORMAT, "not a qsketch sketch (bad magic bytes)");
    if (buf[3] == 0 || buf[3] > QS_FORMAT_VERSION)
        FAIL(QS_EVERSION, "unknown format version (written by a newer qsketch?)");
    if (len < QS_HEADER_BYTES + 4u) FAIL(QS_EFORMAT, "truncated: shorter than the header");
    const uint32_t num_levels = buf[9];
    const uint32_t retained = get_u32(buf + 12);
    if (num_levels < 1 || num_levels > QS_KLL_MAX_LEVELS)
        FAIL(QS_EFORMAT, "corrupt: level count out of range");
    const uint32_t version = buf[3];
    const uint64_t items_end = (uint64_t)QS_HEADER_BYTES + 4u * (uint64_t)num_levels + 8u * (uint64_t)retained;
    uint64_t expected = items_end + 4u;
    uint32_t tab_limit = 0, tab_size = 0;
    if (version >= 2) {
        if (len < items_end + 12u) FAIL(QS_EFORMAT, "truncated: fewer bytes than the header announces");
        tab_limit = get_u32(buf + items_end);
        tab_size = get_u32(buf + items_end + 4);
        expected = items_end + 8u + 16u * (uint64_t)tab_size + 4u;
    }
    uint32_t bk_cap = 0, bk_m = 0;
    if (version >= 3) { /* the bucket section: its length is known once its varints are walked */
        const uint64_t bk_start = expected - 4u;
        if (len < bk_start + 8u) FAIL(QS_EFORMAT, "truncated: fewer bytes than the header announces");
        bk_cap = get_u16(buf + bk_start);
        bk_m = get_u16(buf + bk_start + 2);
        if (bk_m > bk_cap) FAIL(QS_EFORMAT, "corrupt: more bucket boundaries than the layer holds");
        expected = bk_start + 4u;
        if (bk_cap) {
            expected += 8u * (uint64_t)bk_m;
            if (len < expected + 4u) FAIL(QS_EFORMAT, "truncated: fewer bytes than the header announces");
            const uint8_t *q = buf + expected, *end = buf + len - 4;
            uint64_t v;
            for (uint32_t i = 0; i < 2u * bk_m + 2u; i++)
                if (!get_varint(&q, end, &v)) FAIL(QS_EFORMAT, "truncated or corrupt bucket counts");
            expected = (uint64_t)(q - buf) + 4u;
        } else if (bk_m) {
            FAIL(QS_EFORMAT, "corrupt: bucket boundaries without a layer");
        } else {
            expected += 4u; /* the checksum */
        }
    }
    if (len < expected) FAIL(QS_EFORMAT, "truncated: fewer bytes than the header announces");
    if (len > expected) FAIL(QS_EFORMAT, "trailing bytes after the sketch");
    if (qs_crc32(buf, len - 4) != get_u32(buf + len - 4))
        FAIL(QS_ECHECKSUM, "checksum mismatch: the bytes are corrupt");
    if (buf[4] != QS_TYPE_KLL_F64) FAIL(QS_EFORMAT, "unknown sketch type");
    if (buf[5] & ~(QS_FLAG_LEVEL0_SORTED | QS_FLAG_ESTIMATION)) FAIL(QS_EFORMAT, "unknown flags set");
    const uint32_t k = get_u16(buf + 6);
    if (k < QS_KLL_MIN_K || k > QS_KLL_MAX_K) FAIL(QS_EFORMAT, "corrupt: k out of range");
    /* m: 8 before version 4; from 4, whatever a sketch carries (new ones:
     * qs_kll_default_m(k); 8 for those read from DataSketches or older formats) */
    const uint32_t m = buf[8];
    if (version < 4 ? m != QS_KLL_M_MAX : (m < QS_KLL_M_MIN || m > QS_KLL_M_MAX || m > k))
        FAIL(QS_EFORMAT, "corrupt: unsupported m");
    const int estimation = (buf[5] & QS_FLAG_ESTIMATION) != 0;
    if (buf[3] == 1 && buf[11] != 0) FAIL(QS_EFORMAT, "corrupt: reserved byte is not zero");
    if (buf[3] >= 2 && (buf[11] > num_levels || (buf[11] != 0) != estimation))
        FAIL(QS_EFORMAT, "corrupt: compaction level inconsistent with the flags");

    uint64_t sum = 0;
    for (uint32_t h = 0; h < num_levels; h++) sum += get_u32(buf + QS_HEADER_BYTES + 4u * h);
    if (sum != retained) FAIL(QS_EFORMAT, "corrupt: level sizes do not add up to the item count");

    if (tab_limit > QS_KLL_MAX_EXACT_LIMIT || tab_size > tab_limit)
        FAIL(QS_EFORMAT, "corrupt: exact table size or limit out of range");
    if (tab_size && retained) FAIL(QS_EFORMAT, "corrupt: exact table and compactors both hold items");

    qs_status st;
    qs_kll *sk = qs_kll_alloc_empty(k, m, get_u64(buf + 48), &st);
    if (!sk) FAIL(st, "out of memory");
    const uint32_t total = qs_kll_total_capacity(k, m, num_levels);
    const uint32_t cap = total > retained ? total : retained;
    sk->items = malloc((size_t)(cap ? cap : 1) * sizeof(double));
    if (!sk->items) {
        qs_kll_free(sk);
        FAIL(QS_ENOMEM, "out of memory");
    }
    sk->num_levels = num_levels;
    sk->level0_sorted = (buf[5] & QS_FLAG_LEVEL0_SORTED) != 0;
    /* version 1 did not record the level: any level may hold samples */
    sk->compacted = (uint8_t)(buf[3] >= 2 ? buf[11] : (estimation ? num_levels : 0));
    sk->user_flags = buf[10];
    sk->n = get_u64(buf + 16);
    sk->nan_count = get_u64(buf + 24);
    sk->min = get_f64(buf + 32);
    sk->max = get_f64(buf + 40);
    uint32_t offset = cap - retained;
    for (uint32_t h = 0; h < num_levels; h++) {
        sk->levels[h] = offset;
        offset += get_u32(buf + QS_HEADER_BYTES + 4u * h);
    }
    sk->levels[num_levels] = offset;
    const uint8_t *p = buf + QS_HEADER_BYTES + 4u * num_levels;
    p = get_words(p, sk->items + cap - retained, retained);
    sk->tab_limit = tab_limit; /* a version 1 sketch had no table: 0 */
    if (tab_size) {
        sk->tab_values = malloc((size_t)tab_size * sizeof(double));
        sk->tab_counts = malloc((size_t)tab_size * sizeof(uint64_t));
        if (!sk->tab_values || !sk->tab_counts) {
            qs_kll_free(sk);
            FAIL(QS_ENOMEM, "out of memory");
        }
        sk->tab_size = sk->tab_cap = tab_size;
        p += 8;
        p = get_words(p, sk->tab_values, tab_size);
        get_words(p, sk->tab_counts, tab_size);
    }
    if (bk_cap) {
        p = buf + items_end + 8u + 16u * (uint64_t)tab_size + 4u;
        if (qs_bk_init(&sk->bk, bk_cap) != QS_OK) {
            qs_kll_free(sk);
            FAIL(QS_ENOMEM, "out of memory");
        }
        sk->bk.m = bk_m;
        p = get_words(p, sk->bk.bound, bk_m);
        const uint8_t *end = buf + len - 4;
        get_varint(&p, end, &sk->bk.next_check); /* lengths were checked above */
        for (uint32_t i = 0; i <= bk_m; i++) get_varint(&p, end, &sk->bk.open[i]);
        for (uint32_t i = 0; i < bk_m; i++) get_varint(&p, end, &sk->bk.atom[i]);
    }

    const char *why;
    if (qs_kll_check_invariants(sk, &why)) {
        qs_kll_free(sk);
        FAIL(QS_EFORMAT, why);
    }
    *status = QS_OK;
    *message = NULL;
    return sk;
#undef FAIL
}
