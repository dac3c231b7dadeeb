/*
 * test_core.c -- plain-C unit tests for the qsketch native core (csrc/).
 *
 * Self-contained: no test framework, no Python.  Every answer of the sketch is
 * compared against an exact answer computed here by sorting a copy of the
 * input with qsort.  Meant to run under AddressSanitizer + UBSan and under
 * valgrind (see the Makefile next to this file):
 *
 *     make -C csrc/tests check        # ASan + UBSan
 *     make -C csrc/tests valgrind     # plain build under valgrind
 *
 * ./test_core [substring] runs only the tests whose name contains substring.
 * A watchdog ends the run if one test takes longer than QS_TEST_TIMEOUT
 * seconds (default 600), so a regression that loops forever fails instead
 * of hanging.
 * The last line of the output is "N passed, M failed" (N, M count test
 * functions); the exit status is non-zero when any test failed.  Under ASan a
 * memory leak fails the test that made it.
 *
 * Notes for maintainers:
 *  - Most tests drive the KLL compactors, so new_sketch() switches the exact
 *    low-cardinality table off when the core has one (QS_KLL_MAX_EXACT_LIMIT);
 *    the table, format 1 compatibility and the interpolating estimators have
 *    tests of their own, compiled only when the header declares them.
 *  - test_sort_adversarial runs McIlroy's adversary against comparator copies
 *    (aq_*) of qs_introsort_rec and qs_multiselect_rec: keep them in step with
 *    qs_sort.h, or the adversarial inputs lose their edge (the checks of the
 *    results stay valid either way).
 */
#define _POSIX_C_SOURCE 200809L /* alarm() for the per-test watchdog */
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h> /* per-test leak checks under ASan */
#define QS_TEST_LSAN 1
#endif

#include "../qs_kll.h"
#include "../qs_sort.h"
#include "../qs_kll_internal.h"
#include "../qs_crc32.h"

/* ======================================================================== */
/* Framework                                                                */
/* ======================================================================== */

static long g_failures;      /* failed checks over the whole run      */
static long g_test_failures; /* failed checks in the running test     */
static const char *g_test_name = "?";

/* Returns 1 when the failure was printed (the first 20 of a test are). */
static int check_failed(const char *file, int line, const char *expr)
{
    g_failures++;
    g_test_failures++;
    if (g_test_failures <= 20) {
        fprintf(stderr, "%s:%d: CHECK failed in %s: %s\n", file, line, g_test_name, expr);
        return 1;
    }
    if (g_test_failures == 21) fprintf(stderr, "    (further failures in %s not shown)\n", g_test_name);
    return 0;
}

#define CHECK(c)                                                    \
    do {                                                            \
        if (!(c)) (void)check_failed(__FILE__, __LINE__, #c);       \
    } while (0)

/* CHECK with a printf-style detail line. */
#define CHECKF(c, ...)                                              \
    do {                                                            \
        if (!(c) && check_failed(__FILE__, __LINE__, #c)) {         \
            fprintf(stderr, "    ");                                \
            fprintf(stderr, __VA_ARGS__);                           \
            fputc('\n', stderr);                                    \
        }                                                           \
    } while (0)

/* CHECK that ends the test function on failure (for NULL sketches etc.). */
#define REQUIRE(c)                                                  \
    do {                                                            \
        if (!(c)) {                                                 \
            (void)check_failed(__FILE__, __LINE__, #c);             \
            return;                                                 \
        }                                                           \
    } while (0)

#define CHECK_INV(sk)                                                               \
    do {                                                                            \
        const char *inv_msg_ = NULL;                                                \
        const int inv_rc_ = qs_kll_check_invariants((sk), &inv_msg_);               \
        CHECKF(inv_rc_ == 0, "invariants violated: %s", inv_msg_ ? inv_msg_ : "?"); \
    } while (0)

/* Same, but also reports whether it held (to stop a loop at the first break). */
static int inv_ok(const qs_kll *sk, const char *file, int line, const char *what, uint64_t step)
{
    const char *msg = NULL;
    if (qs_kll_check_invariants(sk, &msg) == 0) return 1;
    if (check_failed(file, line, "qs_kll_check_invariants(sk) == 0"))
        fprintf(stderr, "    %s, step %llu: %s\n", what, (unsigned long long)step, msg ? msg : "?");
    return 0;
}
#define INV_OK(sk, what, step) inv_ok((sk), __FILE__, __LINE__, (what), (uint64_t)(step))

static void info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("       ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_core: out of memory\n");
        exit(2);
    }
    return p;
}

/* ======================================================================== */
/* Helpers                                                                  */
/* ======================================================================== */

/* The test's own PRNG (splitmix64), independent of the core's. */
typedef struct {
    uint64_t s;
} rng_t;

static uint64_t rnext(rng_t *r)
{
    uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}
static double runit(rng_t *r) { return (double)(rnext(r) >> 11) * 0x1.0p-53; }
static uint64_t rbelow(rng_t *r, uint64_t n) { return rnext(r) % n; }

static uint64_t dbits(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static double bits_to_double(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static int cmp_dbl(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void shuffle(double *a, size_t n, rng_t *r)
{
    for (size_t i = n; i > 1; i--) {
        const size_t j = (size_t)rbelow(r, i);
        const double t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static const char *status_name(qs_status st)
{
    switch (st) {
    case QS_OK: return "QS_OK";
    case QS_ENOMEM: return "QS_ENOMEM";
    case QS_EINVAL: return "QS_EINVAL";
    case QS_ENAN: return "QS_ENAN";
    case QS_EOVERFLOW: return "QS_EOVERFLOW";
    case QS_EFORMAT: return "QS_EFORMAT";
    case QS_ECHECKSUM: return "QS_ECHECKSUM";
    case QS_EVERSION: return "QS_EVERSION";
    }
    return "(unknown status)";
}

#define CHECK_ST(expr, want)                                                               \
    do {                                                                                   \
        const qs_status st_got_ = (expr);                                                  \
        CHECKF(st_got_ == (want), "%s returned %s, expected %s", #expr, status_name(st_got_), \
               status_name(want));                                                         \
    } while (0)

/* A sketch as qs_kll_new makes it (with the core's default modes). */
static qs_kll *new_default_sketch(uint32_t k, uint64_t seed)
{
    qs_status st = QS_EINVAL;
    qs_kll *sk = qs_kll_new(k, seed, &st);
    CHECKF(sk != NULL && st == QS_OK, "qs_kll_new(%u) failed: %s", (unsigned)k, status_name(st));
    return sk;
}

/*
 * A sketch whose items go to the KLL compactors from the first one.  When the
 * core has the exact low-cardinality table (QS_KLL_MAX_EXACT_LIMIT defined;
 * on by default), it is switched off here: most tests below are about the
 * compactors, and the table has tests of its own (test_table_*).
 */
static qs_kll *new_sketch(uint32_t k, uint64_t seed)
{
    qs_kll *sk = new_default_sketch(k, seed);
#ifdef QS_KLL_MAX_EXACT_LIMIT
    if (sk) CHECK_ST(qs_kll_set_exact_limit(sk, 0), QS_OK);
#endif
    return sk;
}

static qs_kll *copy_sketch(const qs_kll *sk)
{
    qs_status st = QS_EINVAL;
    qs_kll *c = qs_kll_copy(sk, &st);
    CHECKF(c != NULL && st == QS_OK, "qs_kll_copy failed: %s", status_name(st));
    return c;
}

/* ---- serialization helpers ---- */

typedef struct {
    uint8_t *p;
    size_t len;
} bytes_t;

static bytes_t ser(const qs_kll *sk)
{
    const size_t sz = qs_kll_serialized_size(sk);
    bytes_t b;
    b.p = xmalloc(sz);
    b.len = 0;
    const qs_status st = qs_kll_serialize(sk, b.p, sz, &b.len);
    CHECKF(st == QS_OK, "qs_kll_serialize: %s", status_name(st));
    CHECKF(b.len == sz, "serialize wrote %zu bytes, serialized_size said %zu", b.len, sz);
    return b;
}

static int bytes_eq(bytes_t a, bytes_t b) { return a.len == b.len && memcmp(a.p, b.p, a.len) == 0; }

static int same_state(const qs_kll *a, const qs_kll *b)
{
    bytes_t x = ser(a), y = ser(b);
    const int eq = bytes_eq(x, y);
    free(x.p);
    free(y.p);
    return eq;
}

/* The state as bytes, to check that a failed call left it unchanged. */
static int unchanged_since(const qs_kll *sk, bytes_t before)
{
    bytes_t now = ser(sk);
    const int eq = bytes_eq(now, before);
    free(now.p);
    return eq;
}

static qs_kll *deser(const uint8_t *p, size_t len, qs_status *st, const char **msg)
{
    /* Decode from an exact-size heap copy, so ASan catches any over-read. */
    uint8_t *copy = xmalloc(len);
    if (len) memcpy(copy, p, len);
    *st = QS_OK;
    *msg = NULL;
    qs_kll *sk = qs_kll_deserialize(copy, len, st, msg);
    free(copy);
    return sk;
}

/* ---- exact reference ---- */

/*
 * The exact distribution of a (weighted) input: distinct values ascending,
 * with cumulative weights.  count_le / count_lt give exact ranks.
 */
typedef struct {
    double *v;    /* distinct values, ascending                    */
    uint64_t *cw; /* cw[i] = total weight of the items <= v[i]     */
    size_t len;
    uint64_t n;
} exact_t;

typedef struct {
    double x;
    uint64_t w;
} xw_t;

static int cmp_xw(const void *a, const void *b) { return cmp_dbl(&((const xw_t *)a)->x, &((const xw_t *)b)->x); }

/* w == NULL means every weight is 1.  NaN items are skipped. */
static void exact_build(exact_t *e, const double *x, const uint64_t *w, size_t len)
{
    xw_t *p = xmalloc(len * sizeof *p);
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        if (x[i] != x[i]) continue;
        p[m].x = x[i];
        p[m].w = w ? w[i] : 1;
        m++;
    }
    qsort(p, m, sizeof *p, cmp_xw);
    e->v = xmalloc(m * sizeof(double));
    e->cw = xmalloc(m * sizeof(uint64_t));
    e->len = 0;
    uint64_t cum = 0;
    for (size_t i = 0; i < m; i++) {
        cum += p[i].w;
        if (e->len > 0 && e->v[e->len - 1] == p[i].x) {
            e->cw[e->len - 1] = cum;
        } else {
            e->v[e->len] = p[i].x;
            e->cw[e->len] = cum;
            e->len++;
        }
    }
    e->n = cum;
    free(p);
}

static void exact_free(exact_t *e)
{
    free(e->v);
    free(e->cw);
}

/* weight of the items <= q (inclusive) or < q */
static uint64_t exact_count(const exact_t *e, double q, int inclusive)
{
    size_t lo = 0, hi = e->len; /* first index whose value is > q (or >= q) */
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int before = inclusive ? (e->v[mid] <= q) : (e->v[mid] < q);
        if (before) lo = mid + 1;
        else hi = mid;
    }
    return lo ? e->cw[lo - 1] : 0;
}

/* smallest value whose inclusive cumulative weight is >= c (c >= 1) */
static double exact_item_at(const exact_t *e, uint64_t c)
{
    size_t lo = 0, hi = e->len;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (e->cw[mid] < c) lo = mid + 1;
        else hi = mid;
    }
    return lo < e->len ? e->v[lo] : e->v[e->len - 1];
}

static double exact_rank(const exact_t *e, double q, int inclusive)
{
    return (double)exact_count(e, q, inclusive) / (double)e->n;
}

/*
 * Run qs_kll_rank / qs_kll_quantile over in[0..len) in one of three ways, so
 * that every search path is taken: 0 = one call (a sorted walk when the
 * queries ascend and are at least as many as the retained items), 1 = calls
 * of 1 to 9 queries (binary searches: the eight-lane loop and the remainder
 * loop), 2 = one call on a shuffled copy (binary searches).
 */
static qs_status query_mode(qs_kll *sk, int quantile, const double *in, size_t len, int inclusive, double *out,
                            int mode, rng_t *r)
{
    qs_status st = QS_OK;
    if (mode == 0) return quantile ? qs_kll_quantile(sk, in, len, inclusive, out) : qs_kll_rank(sk, in, len, inclusive, out);
    if (mode == 1) {
        for (size_t i = 0; i < len && st == QS_OK;) {
            size_t m = 1 + (size_t)rbelow(r, 9);
            if (m > len - i) m = len - i;
            st = quantile ? qs_kll_quantile(sk, in + i, m, inclusive, out + i) : qs_kll_rank(sk, in + i, m, inclusive, out + i);
            i += m;
        }
        return st;
    }
    size_t *perm = xmalloc(len * sizeof(size_t));
    double *q = xmalloc(len * sizeof(double)), *o = xmalloc(len * sizeof(double));
    for (size_t i = 0; i < len; i++) perm[i] = i;
    for (size_t i = len; i > 1; i--) {
        const size_t j = (size_t)rbelow(r, i), t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < len; i++) q[i] = in[perm[i]];
    st = quantile ? qs_kll_quantile(sk, q, len, inclusive, o) : qs_kll_rank(sk, q, len, inclusive, o);
    for (size_t i = 0; i < len; i++) out[perm[i]] = o[i];
    free(perm);
    free(q);
    free(o);
    return st;
}
static const char *const MODE_NAMES[3] = {"one call", "small calls", "shuffled"};

/*
 * Exact mode: every rank (at each distinct value, just below and just above
 * it, and beyond the ends; inclusive and exclusive; queries ascending and
 * shuffled) equals the exact rank, and quantiles follow the definition
 *   inclusive: the smallest x whose inclusive count is >= ceil(p n)
 *   exclusive: the smallest x whose inclusive count is >  p n
 * with p = c / n for every boundary c (when n is small) and random p.
 */
static void check_exact(qs_kll *sk, const exact_t *e, const char *label, rng_t *r)
{
    CHECKF(qs_kll_n(sk) == e->n, "%s: n = %llu, expected %llu", label,
           (unsigned long long)qs_kll_n(sk), (unsigned long long)e->n);
    CHECKF(qs_kll_is_estimation_mode(sk) == 0, "%s: estimation mode set", label);
    if (e->len == 0) return;
    CHECKF(qs_kll_min(sk) == e->v[0], "%s: min %.17g != %.17g", label, qs_kll_min(sk), e->v[0]);
    CHECKF(qs_kll_max(sk) == e->v[e->len - 1], "%s: max %.17g != %.17g", label, qs_kll_max(sk),
           e->v[e->len - 1]);

    /* ranks */
    const size_t nq = 3 * e->len + 4;
    double *q = xmalloc(nq * sizeof(double));
    double *out = xmalloc(nq * sizeof(double));
    size_t m = 0;
    q[m++] = -INFINITY;
    q[m++] = -DBL_MAX;
    for (size_t i = 0; i < e->len; i++) {
        q[m++] = nextafter(e->v[i], -INFINITY);
        q[m++] = e->v[i];
        q[m++] = nextafter(e->v[i], INFINITY);
    }
    q[m++] = DBL_MAX;
    q[m++] = INFINITY;
    qsort(q, m, sizeof(double), cmp_dbl);
    for (int pass = 0; pass < 3; pass++) {
        for (int inc = 0; inc <= 1; inc++) {
            CHECK_ST(query_mode(sk, 0, q, m, inc, out, pass, r), QS_OK);
            size_t bad = 0, first = 0;
            for (size_t i = 0; i < m; i++) {
                if (out[i] != exact_rank(e, q[i], inc)) {
                    if (!bad) first = i;
                    bad++;
                }
            }
            CHECKF(bad == 0, "%s: %zu of %zu %s ranks wrong (%s); first: rank(%.17g) = %.17g, exact %.17g",
                   label, bad, m, inc ? "inclusive" : "exclusive", MODE_NAMES[pass],
                   q[first], out[first], exact_rank(e, q[first], inc));
        }
    }
    free(q);
    free(out);

    /* quantiles at the boundaries p = c / n */
    const double n = (double)e->n;
    if (e->n <= 100000) {
        const size_t np = (size_t)e->n + 1;
        double *p = xmalloc(np * sizeof(double));
        double *qo = xmalloc(np * sizeof(double));
        for (size_t i = 0; i < np; i++) p[i] = (double)i / n;
        for (int pass = 0; pass < 3; pass++)
        for (int inc = 0; inc <= 1; inc++) {
            CHECK_ST(query_mode(sk, 1, p, np, inc, qo, pass, r), QS_OK);
            size_t bad = 0, first = 0;
            double firstexp = 0;
            for (size_t i = 0; i < np; i++) {
                double expect;
                if (inc) expect = exact_item_at(e, i == 0 ? 1 : (uint64_t)i);
                else expect = (i == np - 1) ? e->v[e->len - 1] : exact_item_at(e, (uint64_t)i + 1);
                if (qo[i] != expect) {
                    if (!bad) { first = i; firstexp = expect; }
                    bad++;
                }
            }
            CHECKF(bad == 0, "%s: %zu of %zu %s quantiles at p = i/n wrong (%s); first: quantile(%zu/%llu) = %.17g, expected %.17g",
                   label, bad, np, inc ? "inclusive" : "exclusive", MODE_NAMES[pass], first, (unsigned long long)e->n,
                   qo[first], firstexp);
        }
        free(p);
        free(qo);
    } else if (e->len <= 100000) {
        /* weighted: p = cw / n at each boundary (n < 2^31 keeps p * n within 2^-21 of cw) */
        if (e->n < (UINT64_C(1) << 31)) {
            double *p = xmalloc(e->len * sizeof(double));
            double *qo = xmalloc(e->len * sizeof(double));
            for (size_t i = 0; i < e->len; i++) p[i] = (double)e->cw[i] / n;
            for (int pass = 0; pass < 3; pass++) {
                CHECK_ST(query_mode(sk, 1, p, e->len, 1, qo, pass, r), QS_OK);
                size_t bad = 0;
                for (size_t i = 0; i < e->len; i++) bad += qo[i] != e->v[i];
                CHECKF(bad == 0, "%s: %zu of %zu inclusive quantiles at p = cw/n wrong (%s)", label, bad, e->len,
                       MODE_NAMES[pass]);
            }
            free(p);
            free(qo);
        }
    }

    /* quantiles at random p (skipping p n too close to a boundary to call) */
    enum { NP = 2000 };
    double p[NP], qo[NP];
    for (size_t i = 0; i < NP; i++) p[i] = runit(r);
    p[0] = 0.0;
    p[1] = 1.0;
    for (int pass = 0; pass < 2; pass++)
    for (int inc = 0; inc <= 1; inc++) {
        if (pass == 1) qsort(p, NP, sizeof(double), cmp_dbl); /* the walk, when NP >= retained */
        CHECK_ST(qs_kll_quantile(sk, p, NP, inc, qo), QS_OK);
        size_t bad = 0, checked = 0;
        for (size_t i = 0; i < NP; i++) {
            double expect;
            if (p[i] == 0.0) expect = e->v[0];
            else if (p[i] == 1.0) expect = e->v[e->len - 1];
            else {
                /* inclusive: the first count >= ceil(pn); exclusive: the first count > pn --
                 * the same item unless pn is (within rounding) an item boundary: skip those */
                const double pn = p[i] * n;
                const double tol = 1e-6 + n * 4e-16;
                const uint64_t c = (uint64_t)ceil(pn);
                size_t j = 0, hi = e->len;
                while (j < hi) {
                    const size_t mid = j + (hi - j) / 2;
                    if (e->cw[mid] < c) j = mid + 1;
                    else hi = mid;
                }
                if (j < e->len && fabs(pn - (double)e->cw[j]) <= tol) continue;
                if (j > 0 && fabs(pn - (double)e->cw[j - 1]) <= tol) continue;
                expect = exact_item_at(e, c);
            }
            checked++;
            if (qo[i] != expect) bad++;
        }
        CHECKF(bad == 0, "%s: %zu of %zu %s quantiles at random p wrong", label, bad, checked,
               inc ? "inclusive" : "exclusive");
    }
}

/*
 * Estimation mode: the largest rank error over 1000 queries (inclusive and
 * exclusive, ascending and shuffled) must stay within bound, and every
 * quantile x(p) must satisfy rank_lt(x) - bound <= p <= rank_le(x) + bound.
 * Returns the largest rank error seen.
 */
static double check_accuracy(qs_kll *sk, const exact_t *e, double bound, const char *label, rng_t *r)
{
    enum { NQ = 1000 };
    double q[NQ], out[NQ];
    const double lo = e->v[0], hi = e->v[e->len - 1];
    const int span_ok = isfinite(hi - lo);
    for (size_t i = 0; i < NQ; i++) {
        if ((i & 1) || !span_ok) q[i] = e->v[rbelow(r, e->len)];
        else q[i] = lo + runit(r) * (hi - lo);
    }
    double worst = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) qsort(q, NQ, sizeof(double), cmp_dbl); /* the merge-walk path */
        for (int inc = 0; inc <= 1; inc++) {
            CHECK_ST(qs_kll_rank(sk, q, NQ, inc, out), QS_OK);
            for (size_t i = 0; i < NQ; i++) {
                const double err = fabs(out[i] - exact_rank(e, q[i], inc));
                if (!(err <= worst)) worst = err; /* NaN propagates into a failure */
            }
        }
    }
    CHECKF(worst <= bound, "%s: max |rank error| %.6f exceeds bound %.6f", label, worst, bound);

    /* quantiles: a grid (ascending) and random p */
    enum { NP = 1001 };
    double p[NP], qo[NP];
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < NP; i++) p[i] = pass ? runit(r) : (double)i / (NP - 1);
        for (int inc = 0; inc <= 1; inc++) {
            CHECK_ST(qs_kll_quantile(sk, p, NP, inc, qo), QS_OK);
            size_t bad = 0, nonmono = 0;
            for (size_t i = 0; i < NP; i++) {
                const double x = qo[i];
                const double rlt = exact_rank(e, x, 0), rle = exact_rank(e, x, 1);
                if (!(x >= lo && x <= hi) || !(rlt - bound <= p[i] && p[i] <= rle + bound)) bad++;
                if (pass == 0 && i > 0 && qo[i] < qo[i - 1]) nonmono++;
            }
            CHECKF(bad == 0, "%s: %zu of %d %s quantiles off by more than the bound", label, bad, NP,
                   inc ? "inclusive" : "exclusive");
            CHECKF(nonmono == 0, "%s: quantiles not monotone in p (%zu inversions)", label, nonmono);
            if (pass == 0) {
                CHECKF(qo[0] == lo, "%s: quantile(0) = %.17g, min %.17g", label, qo[0], lo);
                CHECKF(qo[NP - 1] == hi, "%s: quantile(1) = %.17g, max %.17g", label, qo[NP - 1], hi);
            }
        }
    }
    return worst;
}

static double bound_for(uint32_t k) { return 3.0 * qs_kll_normalized_rank_error(k, 0); }

static void check_n_min_max(const qs_kll *sk, const exact_t *e, const char *label)
{
    CHECKF(qs_kll_n(sk) == e->n, "%s: n = %llu, expected %llu", label, (unsigned long long)qs_kll_n(sk),
           (unsigned long long)e->n);
    if (e->len) {
        CHECKF(qs_kll_min(sk) == e->v[0], "%s: min %.17g, expected %.17g", label, qs_kll_min(sk), e->v[0]);
        CHECKF(qs_kll_max(sk) == e->v[e->len - 1], "%s: max %.17g, expected %.17g", label, qs_kll_max(sk),
               e->v[e->len - 1]);
    }
}

static void fill_uniform(double *x, size_t n, rng_t *r)
{
    for (size_t i = 0; i < n; i++) x[i] = runit(r);
}

/* ======================================================================== */
/* 1. Sorting kernels                                                       */
/* ======================================================================== */

enum { NPATTERNS = 15 };
static const char *const PATTERN_NAMES[NPATTERNS] = {
    "uniform", "random-bits", "sorted", "reversed", "all-equal", "negatives", "signed-zeros",
    "infinities", "subnormals", "organ-pipe", "few-distinct", "sawtooth", "nearly-sorted",
    "inverted-pipe", "int-mixed"};

static void fill_pattern(double *a, size_t n, int pat, rng_t *r)
{
    for (size_t i = 0; i < n; i++) {
        double v = 0.0;
        switch (pat) {
        case 0: v = runit(r); break;
        case 1:
            do v = bits_to_double(rnext(r));
            while (v != v);
            break;
        case 2: v = (double)i - (double)n / 3.0; break;
        case 3: v = (double)(n - i) * 0.5; break;
        case 4: v = 3.25; break;
        case 5: v = -runit(r) * 1e6 - 1.0; break;
        case 6: {
            static const double c[4] = {-0.0, 0.0, -1e-300, 1e-300};
            v = c[rnext(r) & 3];
            break;
        }
        case 7: {
            static const double c[8] = {-INFINITY, INFINITY, -DBL_MAX, DBL_MAX, 0.0, -0.0, 1.0, -1.0};
            v = (rnext(r) & 1) ? c[rnext(r) & 7] : runit(r) * 2.0 - 1.0;
            break;
        }
        case 8: {
            const uint64_t u = rnext(r);
            const uint64_t mant = u & ((UINT64_C(1) << 52) - 1);
            const uint64_t sign = (u >> 63) << 63;
            switch ((u >> 52) & 7) {
            case 0: v = (sign ? -1.0 : 1.0) * DBL_MIN; break;
            case 1: v = (sign ? -1.0 : 1.0) * nextafter(0.0, 1.0); break;
            case 2: v = sign ? -0.0 : 0.0; break;
            default: v = bits_to_double(sign | (mant >> (u >> 60))); break; /* subnormal */
            }
            break;
        }
        case 9: v = (double)(i < n / 2 ? i : n - 1 - i); break;
        case 10: v = (double)(rnext(r) % 3); break;
        case 11: v = (double)(i % 17); break;
        case 12: v = (double)i; break;
        case 13: v = (double)(i < n / 2 ? n / 2 - i : i - n / 2); break;
        case 14: v = (double)((int64_t)(rnext(r) % 2001) - 1000); break;
        }
        a[i] = v;
    }
    if (pat == 12 && n > 1) {
        for (size_t s = 0; s < n / 20 + 1; s++) {
            const size_t i = (size_t)rbelow(r, n), j = (size_t)rbelow(r, n);
            const double t = a[i];
            a[i] = a[j];
            a[j] = t;
        }
    }
}

/* A total order on the bits of non-NaN doubles (-0.0 before +0.0), to check
 * that a kernel only permutes its input. */
static uint64_t tkey(double x)
{
    const uint64_t u = dbits(x);
    return (u >> 63) ? ~u : (u | (UINT64_C(1) << 63));
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Order-independent fingerprint of the multiset of bit patterns. */
static void multiset_hash(const double *a, size_t n, uint64_t h[2])
{
    h[0] = h[1] = 0;
    for (size_t i = 0; i < n; i++) {
        const uint64_t m = mix64(tkey(a[i]));
        h[0] += m;
        h[1] ^= mix64(m + 0x1234567);
    }
}

static int is_permutation_of(const double *a, const double *b, size_t n)
{
    uint64_t ha[2], hb[2];
    multiset_hash(a, n, ha);
    multiset_hash(b, n, hb);
    return ha[0] == hb[0] && ha[1] == hb[1];
}

/* Target sets for the selection kernels (strictly increasing, all < n). */
enum { NTARGETSETS = 6 };
static size_t make_targets(size_t *t, size_t n, int set, rng_t *r)
{
    size_t nt = 0;
    if (n == 0) return 0;
    switch (set) {
    case 0: /* every position: a full sort */
        for (size_t i = 0; i < n; i++) t[nt++] = i;
        break;
    case 1: { /* the bulk path's pattern: r, r + step, r + 2 step, ... */
        size_t step = (size_t)1 << rbelow(r, 8);
        const size_t off = (size_t)rbelow(r, step);
        for (size_t i = off; i < n; i += step) t[nt++] = i;
        break;
    }
    case 2: /* a random subset */
        for (size_t i = 0; i < n; i++)
            if (rbelow(r, 20) == 0) t[nt++] = i;
        break;
    case 3: t[nt++] = (size_t)rbelow(r, n); break;
    case 4: t[nt++] = 0; if (n > 1) t[nt++] = n - 1; break;
    case 5: t[nt++] = n / 2; break; /* the median */
    }
    return nt;
}

/*
 * qs_sort_doubles against qsort, and the selection kernels (qs_multiselect,
 * qs_select_many) against the qsorted copy for several target sets.
 * Scratch buffers get exactly the documented sizes, so ASan sees overruns.
 * Returns 1 if all fine.
 */
static int check_sort_case(const double *in, size_t n, const char *desc, rng_t *r)
{
    double *a = xmalloc(n * sizeof(double)), *ref = xmalloc(n * sizeof(double));
    size_t *t = xmalloc(n * sizeof(size_t));
    size_t bad_order = 0, bad_sel = 0, bad_many = 0;
    int perm_sort = 1, perm_sel = 1, perm_many = 1;
    if (n) {
        memcpy(a, in, n * sizeof(double));
        memcpy(ref, in, n * sizeof(double));
    }
    qs_sort_doubles(a, n);
    qsort(ref, n, sizeof(double), cmp_dbl);
    for (size_t i = 0; i < n; i++) bad_order += !(a[i] == ref[i]);
    perm_sort = is_permutation_of(a, in, n);

    for (int set = 0; set < NTARGETSETS; set++) {
        const size_t nt = make_targets(t, n, set, r);
        /* qs_multiselect: a[t[i]] is the order statistic t[i] */
        if (n) memcpy(a, in, n * sizeof(double));
        qs_multiselect(a, n, t, nt);
        for (size_t i = 0; i < nt; i++) bad_sel += !(a[t[i]] == ref[t[i]]);
        if (perm_sel) perm_sel = is_permutation_of(a, in, n);
        /* qs_select_many: out[i] is the order statistic t[i] */
        double *out = xmalloc(nt * sizeof(double)), *work = xmalloc(n * sizeof(double));
        uint8_t *ids = xmalloc(n);
        size_t *rel = xmalloc(nt * sizeof(size_t));
        if (n) memcpy(a, in, n * sizeof(double));
        qs_select_many(a, n, t, nt, out, work, ids, rel, NULL);
        for (size_t i = 0; i < nt; i++) bad_many += !(out[i] == ref[t[i]]);
        if (perm_many) perm_many = is_permutation_of(a, in, n);
        free(out);
        free(work);
        free(ids);
        free(rel);
    }
    CHECKF(bad_order == 0, "qs_sort_doubles %s n=%zu: %zu positions differ from qsort", desc, n, bad_order);
    CHECKF(perm_sort, "qs_sort_doubles %s n=%zu: output is not a permutation of the input", desc, n);
    CHECKF(bad_sel == 0, "qs_multiselect %s n=%zu: %zu wrong order statistics", desc, n, bad_sel);
    CHECKF(perm_sel, "qs_multiselect %s n=%zu: output is not a permutation of the input", desc, n);
    CHECKF(bad_many == 0, "qs_select_many %s n=%zu: %zu wrong order statistics", desc, n, bad_many);
    CHECKF(perm_many, "qs_select_many %s n=%zu: the input is no longer a permutation of itself", desc, n);
    free(a);
    free(ref);
    free(t);
    return bad_order == 0 && perm_sort && bad_sel == 0 && perm_sel && bad_many == 0 && perm_many;
}

static void test_sort_kernels_small(void)
{
    rng_t r = {1};
    double *in = xmalloc(200 * sizeof(double));
    for (int pat = 0; pat < NPATTERNS; pat++)
        for (size_t n = 0; n <= 100; n++)
            for (int rep = 0; rep < 3; rep++) {
                fill_pattern(in, n, pat, &r);
                if (!check_sort_case(in, n, PATTERN_NAMES[pat], &r)) goto done;
            }
done:
    free(in);
}

static void test_sort_kernels_large(void)
{
    rng_t r = {2};
    /* around qs_select_many's switch to sample-sort classification (16384),
     * non-multiples of 4 (its unrolled loop), and the bulk chunk sizes */
    const size_t sizes[] = {127, 1000, 4097, 16383, 16384, 16385, 16387, 32768, 65536, 100000};
    double *in = xmalloc(100000 * sizeof(double));
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int pat = 0; pat < NPATTERNS; pat++) {
            fill_pattern(in, sizes[s], pat, &r);
            if (!check_sort_case(in, sizes[s], PATTERN_NAMES[pat], &r)) break;
        }
    free(in);
}

/* The heapsort fallback and the insertion sort, reached directly. */
static void test_sort_fallbacks(void)
{
    rng_t r = {3};
    double *in = xmalloc(5000 * sizeof(double)), *a = xmalloc(5000 * sizeof(double));
    double *ref = xmalloc(5000 * sizeof(double));
    const size_t sizes[] = {0, 1, 2, 3, 16, 17, 100, 4999};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const size_t n = sizes[s];
        for (int pat = 0; pat < NPATTERNS; pat++) {
            fill_pattern(in, n, pat, &r);
            memcpy(ref, in, n * sizeof(double));
            qsort(ref, n, sizeof(double), cmp_dbl);
            for (int variant = 0; variant < 4; variant++) {
                memcpy(a, in, n * sizeof(double));
                switch (variant) {
                case 0: qs_heap_sort(a, n); break;
                case 1: qs_introsort_rec(a, n, 0); break; /* heapsort at once */
                case 2: qs_introsort_rec(a, n, 2); break; /* heapsort after two partitions */
                case 3: qs_insertion_sort(a, n); break;
                }
                size_t bad = 0;
                for (size_t i = 0; i < n; i++) bad += !(a[i] == ref[i]);
                CHECKF(bad == 0, "sort variant %d, %s n=%zu: %zu wrong", variant, PATTERN_NAMES[pat], n, bad);
            }
        }
    }
    free(in);
    free(a);
    free(ref);
}

/*
 * McIlroy's adversary ("A killer adversary for quicksort", 1999), run against
 * a comparator-driven copy of qs_introsort_rec's control flow.  The input it
 * builds drives that control flow (and hence qs_sort_doubles, which makes the
 * same comparisons) to its worst case; introsort must stay O(n log n) on it.
 */
static int *aq_val, aq_gas, aq_nsolid, aq_candidate;
static long long aq_ncmp;
static int aq_heap_used;

static int aq_cmp(int x, int y)
{
    aq_ncmp++;
    if (aq_val[x] == aq_gas && aq_val[y] == aq_gas) {
        if (x == aq_candidate) aq_val[x] = aq_nsolid++;
        else aq_val[y] = aq_nsolid++;
    }
    if (aq_val[x] == aq_gas) aq_candidate = x;
    else if (aq_val[y] == aq_gas) aq_candidate = y;
    return (aq_val[x] > aq_val[y]) - (aq_val[x] < aq_val[y]);
}

static void aq_sift_down(int *a, size_t start, size_t n)
{
    size_t root = start;
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n) return;
        if (child + 1 < n && aq_cmp(a[child], a[child + 1]) < 0) child++;
        if (!(aq_cmp(a[root], a[child]) < 0)) return;
        int t = a[root]; a[root] = a[child]; a[child] = t;
        root = child;
    }
}

static void aq_heap_sort(int *a, size_t n)
{
    aq_heap_used = 1;
    if (n < 2) return;
    for (size_t i = n / 2; i-- > 0;) aq_sift_down(a, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        int t = a[0]; a[0] = a[end]; a[end] = t;
        aq_sift_down(a, 0, end);
    }
}

static void aq_insertion_sort(int *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        int v = a[i];
        size_t j = i;
        while (j > 0 && aq_cmp(a[j - 1], v) > 0) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

static void aq_introsort_rec(int *a, size_t n, int depth)
{
    while (n > 16) {
        if (depth-- == 0) {
            aq_heap_sort(a, n);
            return;
        }
        size_t mid = n / 2;
        if (aq_cmp(a[mid], a[0]) < 0) { int t = a[mid]; a[mid] = a[0]; a[0] = t; }
        if (aq_cmp(a[n - 1], a[0]) < 0) { int t = a[n - 1]; a[n - 1] = a[0]; a[0] = t; }
        if (aq_cmp(a[n - 1], a[mid]) < 0) { int t = a[n - 1]; a[n - 1] = a[mid]; a[mid] = t; }
        int pivot = a[mid];
        size_t i = 0, j = n - 1;
        for (;;) {
            do { i++; } while (aq_cmp(a[i], pivot) < 0);
            do { j--; } while (aq_cmp(pivot, a[j]) < 0);
            if (i >= j) break;
            int t = a[i]; a[i] = a[j]; a[j] = t;
        }
        size_t left = j + 1;
        if (left < n - left) {
            aq_introsort_rec(a, left, depth);
            a += left;
            n -= left;
        } else {
            aq_introsort_rec(a + left, n - left, depth);
            n = left;
        }
    }
    aq_insertion_sort(a, n);
}

static double seconds(clock_t a, clock_t b) { return (double)(b - a) / CLOCKS_PER_SEC; }

/* The same adversary against a comparator copy of qs_multiselect_rec. */
static int aq_sel_fallback;

static void aq_sort(int *a, size_t n)
{
    int depth = 0;
    for (size_t m = n; m > 1; m >>= 1) depth += 2;
    aq_introsort_rec(a, n, depth);
}

static size_t aq_partition(int *a, size_t n, int pivot, int or_equal)
{
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        const int v = a[i];
        a[i] = a[p];
        a[p] = v;
        const int c = aq_cmp(v, pivot);
        p += or_equal ? (c <= 0) : (c < 0);
    }
    return p;
}

static void aq_multiselect_rec(int *a, size_t n, const size_t *t, size_t nt, size_t base, int depth)
{
    while (nt > 0) {
        if (n <= 32 || depth-- == 0) {
            if (n > 32) aq_sel_fallback = 1;
            aq_sort(a, n);
            return;
        }
        const int x = a[0], y = a[n / 2], z = a[n - 1];
        int pivot;
        if (aq_cmp(x, y) < 0) pivot = (aq_cmp(y, z) < 0) ? y : (aq_cmp(x, z) < 0 ? z : x);
        else pivot = (aq_cmp(x, z) < 0) ? x : (aq_cmp(y, z) < 0 ? z : y);
        size_t lo = aq_partition(a, n, pivot, 0), hi = lo;
        if (lo == 0) hi = aq_partition(a, n, pivot, 1);
        size_t nl = 0;
        while (nl < nt && t[nl] - base < lo) nl++;
        size_t nr = nl;
        while (nr < nt && t[nr] - base < hi) nr++;
        if (nl < nt - nr) {
            aq_multiselect_rec(a, lo, t, nl, base, depth);
            a += hi;
            n -= hi;
            t += nr;
            nt -= nr;
            base += hi;
        } else {
            aq_multiselect_rec(a + hi, n - hi, t + nr, nt - nr, base + hi, depth);
            n = lo;
            nt = nl;
        }
    }
}

/* Build the adversarial input for qs_multiselect(n, t) into out. */
static void aq_build_multiselect(double *out, size_t n, const size_t *t, size_t nt)
{
    int *ptr = xmalloc(n * sizeof(int));
    aq_val = xmalloc(n * sizeof(int));
    aq_gas = (int)n;
    aq_nsolid = 0;
    aq_candidate = 0;
    aq_ncmp = 0;
    aq_heap_used = 0;
    aq_sel_fallback = 0;
    for (size_t i = 0; i < n; i++) {
        ptr[i] = (int)i;
        aq_val[i] = aq_gas;
    }
    int depth = 0;
    for (size_t m = n; m > 1; m >>= 1) depth += 2;
    aq_multiselect_rec(ptr, n, t, nt, 0, depth);
    for (size_t i = 0; i < n; i++) out[i] = (double)aq_val[i];
    free(ptr);
    free(aq_val);
}

static void test_sort_adversarial(void)
{
    const size_t n = 100000;
    int *ptr = xmalloc(n * sizeof(int));
    aq_val = xmalloc(n * sizeof(int));
    aq_gas = (int)n;
    aq_nsolid = 0;
    aq_candidate = 0;
    aq_ncmp = 0;
    aq_heap_used = 0;
    for (size_t i = 0; i < n; i++) {
        ptr[i] = (int)i;
        aq_val[i] = aq_gas;
    }
    int depth = 0;
    for (size_t m = n; m > 1; m >>= 1) depth += 2;
    aq_introsort_rec(ptr, n, depth);
    double *adv = xmalloc(n * sizeof(double)), *pipe = xmalloc(n * sizeof(double));
    double *rnd = xmalloc(n * sizeof(double)), *dup = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) adv[i] = (double)aq_val[i];
    info("antiqsort: %lld comparisons in the copy, heapsort fallback %s", aq_ncmp,
         aq_heap_used ? "reached" : "not reached");
    rng_t r = {4};
    fill_pattern(pipe, n, 9, &r);
    fill_pattern(rnd, n, 0, &r);
    fill_pattern(dup, n, 10, &r);

    double t[4];
    double *inputs[4] = {rnd, adv, pipe, dup};
    const char *names[4] = {"uniform", "antiqsort", "organ-pipe", "few-distinct"};
    for (int c = 0; c < 4; c++) {
        CHECK(check_sort_case(inputs[c], n, names[c], &r));
        double *a = xmalloc(n * sizeof(double));
        memcpy(a, inputs[c], n * sizeof(double));
        const clock_t t0 = clock();
        qs_sort_doubles(a, n);
        t[c] = seconds(t0, clock());
        free(a);
    }
    info("qs_sort_doubles n=%zu: uniform %.4fs, antiqsort %.4fs, organ pipe %.4fs, few distinct %.4fs", n, t[0],
         t[1], t[2], t[3]);
    /* O(n log n): an adversarial input costs a small multiple of a random one
     * (quadratic behaviour at n = 1e5 would be ~1000 times slower). */
    for (int c = 1; c < 4; c++)
        CHECKF(t[c] <= 30.0 * t[0] + 0.05, "%s input took %.3fs against %.3fs for uniform", names[c], t[c], t[0]);
    free(ptr);
    free(aq_val);
    free(adv);
    free(pipe);
    free(rnd);
    free(dup);

    /* qs_multiselect against its own adversary: all positions (a full sort
     * by selection) and the bulk path's pattern (64 targets, step 1024) */
    const size_t cn = 65536;
    size_t *tg = xmalloc(cn * sizeof(size_t));
    double *in = xmalloc(cn * sizeof(double)), *a = xmalloc(cn * sizeof(double));
    double *ref = xmalloc(cn * sizeof(double));
    for (int set = 0; set < 2; set++) {
        size_t nt = 0;
        if (set == 0)
            for (size_t i = 0; i < cn; i++) tg[nt++] = i;
        else
            for (size_t i = 37; i < cn; i += 1024) tg[nt++] = i;
        double tm[2];
        for (int which = 0; which < 2; which++) {
            if (which == 0) fill_pattern(in, cn, 0, &r);
            else aq_build_multiselect(in, cn, tg, nt);
            if (which == 1)
                info("antiqsort vs qs_multiselect (%zu targets): %lld comparisons, depth fallback %s", nt, aq_ncmp,
                     aq_sel_fallback ? "reached" : "not reached");
            memcpy(a, in, cn * sizeof(double));
            memcpy(ref, in, cn * sizeof(double));
            qsort(ref, cn, sizeof(double), cmp_dbl);
            const clock_t t0 = clock();
            qs_multiselect(a, cn, tg, nt);
            tm[which] = seconds(t0, clock());
            size_t bad = 0;
            for (size_t i = 0; i < nt; i++) bad += !(a[tg[i]] == ref[tg[i]]);
            CHECKF(bad == 0, "qs_multiselect on %s input: %zu wrong", which ? "adversarial" : "uniform", bad);
        }
        info("qs_multiselect n=%zu, %zu targets: uniform %.4fs, adversarial %.4fs", cn, nt, tm[0], tm[1]);
        CHECKF(tm[1] <= 30.0 * tm[0] + 0.05, "adversarial multiselect took %.3fs against %.3fs", tm[1], tm[0]);
    }
    free(tg);
    free(in);
    free(a);
    free(ref);
}

/* ======================================================================== */
/* 2-3. Empty sketch, one item, NaN handling                                */
/* ======================================================================== */

static void test_construction(void)
{
    qs_status st = QS_OK;
    CHECK(qs_kll_new(QS_KLL_MIN_K - 1, 1, &st) == NULL && st == QS_EINVAL);
    st = QS_OK;
    CHECK(qs_kll_new(QS_KLL_MAX_K + 1, 1, &st) == NULL && st == QS_EINVAL);
    st = QS_OK;
    CHECK(qs_kll_new(0, 1, &st) == NULL && st == QS_EINVAL);
    qs_kll *a = new_sketch(QS_KLL_MIN_K, 1), *b = new_sketch(QS_KLL_MAX_K, 1);
    REQUIRE(a && b);
    CHECK(qs_kll_k(a) == QS_KLL_MIN_K && qs_kll_k(b) == QS_KLL_MAX_K);
    qs_kll_free(a);
    qs_kll_free(b);
    qs_kll_free(NULL);
    /* the published error curve */
    CHECK(fabs(qs_kll_normalized_rank_error(200, 0) - 2.296 / pow(200.0, 0.9723)) < 1e-15);
    CHECK(qs_kll_normalized_rank_error(200, 1) > qs_kll_normalized_rank_error(200, 0));
    CHECK(qs_kll_normalized_rank_error(8, 0) > qs_kll_normalized_rank_error(65535, 0));
}

static void test_empty(void)
{
    qs_kll *sk = new_sketch(200, 42);
    REQUIRE(sk);
    CHECK(qs_kll_n(sk) == 0);
    CHECK(qs_kll_nan_count(sk) == 0);
    CHECK(isnan(qs_kll_min(sk)));
    CHECK(isnan(qs_kll_max(sk)));
    CHECK(qs_kll_num_retained(sk) == 0);
    CHECK(qs_kll_num_levels(sk) == 1);
    CHECK(qs_kll_is_estimation_mode(sk) == 0);
    CHECK(qs_kll_k(sk) == 200);
    CHECK_INV(sk);
    const double q[4] = {-INFINITY, 0.0, 1.0, INFINITY};
    double out[4] = {0, 0, 0, 0};
    for (int inc = 0; inc <= 1; inc++) {
        CHECK_ST(qs_kll_rank(sk, q, 4, inc, out), QS_OK);
        for (int i = 0; i < 4; i++) CHECK(isnan(out[i]));
        const double p[4] = {0.0, 0.25, 0.5, 1.0};
        for (int i = 0; i < 4; i++) out[i] = 0.0;
        CHECK_ST(qs_kll_quantile(sk, p, 4, inc, out), QS_OK);
        for (int i = 0; i < 4; i++) CHECK(isnan(out[i]));
    }
    const double *items = NULL;
    const uint64_t *cum = NULL;
    uint32_t size = 123;
    CHECK_ST(qs_kll_sorted_view(sk, &items, &cum, &size), QS_OK);
    CHECK(size == 0);
    CHECK_ST(qs_kll_level(sk, 0, &items, &size), QS_OK);
    CHECK(size == 0);
    CHECK_ST(qs_kll_level(sk, 1, &items, &size), QS_EINVAL);
    /* empty batches and weighted batches change nothing */
    bytes_t before = ser(sk);
    CHECK_ST(qs_kll_update_batch(sk, NULL, 0, 1), QS_OK);
    CHECK_ST(qs_kll_update_weighted(sk, NULL, NULL, 0, 1), QS_OK);
    CHECK(unchanged_since(sk, before));
    free(before.p);
    CHECK_INV(sk);
    qs_kll_free(sk);
}

static void test_one_item(void)
{
    qs_kll *sk = new_sketch(200, 7);
    REQUIRE(sk);
    CHECK_ST(qs_kll_update(sk, 2.5, 1), QS_OK);
    CHECK(qs_kll_n(sk) == 1);
    CHECK(qs_kll_min(sk) == 2.5 && qs_kll_max(sk) == 2.5);
    CHECK(qs_kll_num_retained(sk) == 1);
    CHECK(qs_kll_is_estimation_mode(sk) == 0);
    CHECK_INV(sk);
    const double q[5] = {-INFINITY, 2.4, 2.5, 2.6, INFINITY};
    const double want_inc[5] = {0, 0, 1, 1, 1}, want_exc[5] = {0, 0, 0, 1, 1};
    double out[5];
    CHECK_ST(qs_kll_rank(sk, q, 5, 1, out), QS_OK);
    for (int i = 0; i < 5; i++) CHECKF(out[i] == want_inc[i], "rank_incl(%g) = %g", q[i], out[i]);
    CHECK_ST(qs_kll_rank(sk, q, 5, 0, out), QS_OK);
    for (int i = 0; i < 5; i++) CHECKF(out[i] == want_exc[i], "rank_excl(%g) = %g", q[i], out[i]);
    const double p[5] = {0.0, 1e-300, 0.3, 0.999999, 1.0};
    for (int inc = 0; inc <= 1; inc++) {
        CHECK_ST(qs_kll_quantile(sk, p, 5, inc, out), QS_OK);
        for (int i = 0; i < 5; i++) CHECKF(out[i] == 2.5, "quantile(%g) = %g", p[i], out[i]);
    }
    /* p outside [0, 1] or NaN is rejected */
    const double badp[3] = {-0.1, 1.1, NAN};
    for (int i = 0; i < 3; i++) CHECK_ST(qs_kll_quantile(sk, &badp[i], 1, 1, out), QS_EINVAL);
    qs_kll_free(sk);
}

static void test_nan_handling(void)
{
    const double nan_neg = -NAN;
    const double nan_payload = bits_to_double(UINT64_C(0x7ff0000000000001)); /* signalling-NaN bits */
    qs_kll *sk = new_sketch(200, 7);
    REQUIRE(sk);

    /* ignore policy: counted, not inserted */
    CHECK_ST(qs_kll_update(sk, NAN, 0), QS_OK);
    CHECK_ST(qs_kll_update(sk, nan_neg, 0), QS_OK);
    CHECK_ST(qs_kll_update(sk, nan_payload, 0), QS_OK);
    CHECK(qs_kll_nan_count(sk) == 3);
    CHECK(qs_kll_n(sk) == 0);
    CHECK(isnan(qs_kll_min(sk)) && isnan(qs_kll_max(sk)));
    CHECK(qs_kll_num_retained(sk) == 0);
    CHECK_INV(sk);

    /* raise policy: rejected, nothing changes */
    CHECK_ST(qs_kll_update(sk, 1.0, 1), QS_OK);
    bytes_t before = ser(sk);
    CHECK_ST(qs_kll_update(sk, NAN, 1), QS_ENAN);
    CHECK_ST(qs_kll_update(sk, nan_payload, 1), QS_ENAN);
    CHECK(qs_kll_n(sk) == 1 && qs_kll_nan_count(sk) == 3);
    CHECK(unchanged_since(sk, before));
    free(before.p);

    /* a batch with one NaN under the raise policy is rejected whole */
    rng_t r = {5};
    enum { B = 1000 };
    double x[B];
    fill_uniform(x, B, &r);
    x[B / 2] = NAN;
    before = ser(sk);
    CHECK_ST(qs_kll_update_batch(sk, x, B, 1), QS_ENAN);
    CHECK(unchanged_since(sk, before));
    free(before.p);
    /* ... and under the ignore policy only the NaN is skipped */
    CHECK_ST(qs_kll_update_batch(sk, x, B, 0), QS_OK);
    CHECK(qs_kll_n(sk) == 1 + B - 1);
    CHECK(qs_kll_nan_count(sk) == 4);
    CHECK_INV(sk);
    qs_kll_free(sk);

    /* the same on a sketch already in estimation mode, on the bulk path */
    const size_t N = 300000;
    double *big = xmalloc(N * sizeof(double));
    fill_uniform(big, N, &r);
    sk = new_sketch(200, 9);
    REQUIRE(sk);
    CHECK_ST(qs_kll_update_batch(sk, big, 100000, 0), QS_OK);
    CHECK(qs_kll_is_estimation_mode(sk));
    big[200000 + 777] = NAN; /* one NaN deep in the second batch */
    before = ser(sk);
    CHECK_ST(qs_kll_update_batch(sk, big + 100000, 200000, 1), QS_ENAN);
    CHECK(unchanged_since(sk, before));
    free(before.p);
    /* ignore policy: NaNs scattered through chunks are counted exactly */
    for (size_t i = 100000; i < N; i += 97) big[i] = (i & 1) ? NAN : nan_neg;
    size_t nans = 0;
    for (size_t i = 100000; i < N; i++) nans += big[i] != big[i];
    CHECK_ST(qs_kll_update_batch(sk, big + 100000, 200000, 0), QS_OK);
    CHECK(qs_kll_nan_count(sk) == nans);
    CHECK(qs_kll_n(sk) == N - nans);
    CHECK_INV(sk);
    exact_t e;
    exact_build(&e, big, NULL, N);
    check_n_min_max(sk, &e, "NaN-laden bulk batch");
    check_accuracy(sk, &e, bound_for(200), "NaN-laden bulk batch", &r);
    exact_free(&e);
    /* a batch so NaN-heavy that it cannot fill a bulk chunk: the per-item fallback */
    size_t fin = 0;
    for (size_t i = 0; i < 40000; i++) {
        big[i] = (i % 3) ? NAN : (double)i;
        fin += (i % 3) == 0;
    }
    const uint64_t n0 = qs_kll_n(sk), nan0 = qs_kll_nan_count(sk);
    CHECK_ST(qs_kll_update_batch(sk, big, 40000, 0), QS_OK);
    CHECK(qs_kll_n(sk) == n0 + fin);
    CHECK(qs_kll_nan_count(sk) == nan0 + (40000 - fin));
    CHECK(qs_kll_max(sk) == 39999.0);
    CHECK_INV(sk);
    qs_kll_free(sk);
    free(big);
}

/* ======================================================================== */
/* 4. Exact mode                                                            */
/* ======================================================================== */

static void test_exact_mode(void)
{
    rng_t r = {6};
    enum { N = 150 };
    double x[N];
    for (int variant = 0; variant < 4; variant++) {
        for (int i = 0; i < N; i++) {
            switch (variant) {
            case 0: x[i] = runit(&r) * 100.0 - 50.0; break;                   /* distinct */
            case 1: x[i] = floor(runit(&r) * 40.0) / 4.0 - 5.0; break;         /* many duplicates */
            case 2: x[i] = (i % 3 == 0) ? -0.0 : ((i % 3 == 1) ? 0.0 : 1.0); break; /* signed zeros */
            case 3: x[i] = (double)(N - i); break;                             /* reversed */
            }
        }
        exact_t e;
        exact_build(&e, x, NULL, N);
        char label[64];

        /* per item */
        qs_kll *a = new_sketch(200, 1);
        REQUIRE(a);
        for (int i = 0; i < N; i++) {
            CHECK_ST(qs_kll_update(a, x[i], 1), QS_OK);
            if (!INV_OK(a, "exact per-item", i)) break;
        }
        snprintf(label, sizeof label, "exact per-item variant %d", variant);
        check_exact(a, &e, label, &r);
        /* a query in between must not disturb later updates (cache invalidation) */
        qs_kll *b = new_sketch(200, 1);
        REQUIRE(b);
        for (int i = 0; i < N; i++) {
            CHECK_ST(qs_kll_update_batch(b, x + i, 1, 1), QS_OK);
            double rk;
            CHECK_ST(qs_kll_rank(b, &x[i], 1, 1, &rk), QS_OK);
        }
        snprintf(label, sizeof label, "exact batch-of-one variant %d", variant);
        check_exact(b, &e, label, &r);
        qs_kll_free(b);

        /* one batch */
        b = new_sketch(200, 1);
        REQUIRE(b);
        CHECK_ST(qs_kll_update_batch(b, x, N, 1), QS_OK);
        CHECK_INV(b);
        snprintf(label, sizeof label, "exact one batch variant %d", variant);
        check_exact(b, &e, label, &r);
        qs_kll_free(b);

        /* weighted path with unit weights */
        uint64_t w[N];
        for (int i = 0; i < N; i++) w[i] = 1;
        b = new_sketch(200, 1);
        REQUIRE(b);
        CHECK_ST(qs_kll_update_weighted(b, x, w, N, 1), QS_OK);
        CHECK_INV(b);
        snprintf(label, sizeof label, "exact unit-weighted variant %d", variant);
        check_exact(b, &e, label, &r);
        qs_kll_free(b);

        qs_kll_free(a);
        exact_free(&e);
    }

    /* exactly k items is still exact; k + 1 triggers the first compaction */
    qs_kll *sk = new_sketch(200, 3);
    REQUIRE(sk);
    double y[201];
    for (int i = 0; i < 201; i++) y[i] = runit(&r);
    for (int i = 0; i < 200; i++) CHECK_ST(qs_kll_update(sk, y[i], 0), QS_OK);
    CHECK(qs_kll_is_estimation_mode(sk) == 0);
    exact_t e;
    exact_build(&e, y, NULL, 200);
    check_exact(sk, &e, "exact at n == k", &r);
    exact_free(&e);
    CHECK_ST(qs_kll_update(sk, y[200], 0), QS_OK);
    CHECK(qs_kll_is_estimation_mode(sk) != 0);
    CHECK(qs_kll_num_retained(sk) < 201);
    CHECK_INV(sk);
    qs_kll_free(sk);
}

/* ======================================================================== */
/* 5-6. Estimation mode                                                     */
/* ======================================================================== */

#define BIG_N 1000000u

static void test_estimation_per_item(void)
{
    rng_t r = {1234};
    double *x = xmalloc(BIG_N * sizeof(double));
    fill_uniform(x, BIG_N, &r);
    exact_t e;
    exact_build(&e, x, NULL, BIG_N);
    qs_kll *sk = new_sketch(200, 99);
    REQUIRE(sk);
    double mn = INFINITY, mx = -INFINITY;
    for (size_t i = 0; i < BIG_N; i++) {
        if (qs_kll_update(sk, x[i], 0) != QS_OK) {
            CHECK(!"qs_kll_update failed");
            break;
        }
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
        /* invariants after every item for the first 30000 (hundreds of
         * compactions), then every 101 items */
        if ((i < 30000 || i % 101 == 0) && !INV_OK(sk, "per-item uniform", i)) break;
        if ((i < 30000 || i % 101 == 0) &&
            (qs_kll_n(sk) != i + 1 || qs_kll_min(sk) != mn || qs_kll_max(sk) != mx)) {
            CHECKF(0, "n/min/max wrong after item %zu", i);
            break;
        }
    }
    CHECK_INV(sk);
    CHECK(qs_kll_is_estimation_mode(sk) != 0);
    CHECK(qs_kll_num_retained(sk) < 2000);
    check_n_min_max(sk, &e, "per-item uniform");
    const double err = check_accuracy(sk, &e, bound_for(200), "per-item uniform k=200", &r);
    info("per-item uniform, k=200, n=1e6: max rank error %.5f (bound %.5f), %u retained, %u levels", err,
         bound_for(200), qs_kll_num_retained(sk), qs_kll_num_levels(sk));
    qs_kll_free(sk);
    exact_free(&e);
    free(x);
}

static void test_estimation_batch(void)
{
    rng_t r = {4321};
    double *x = xmalloc(BIG_N * sizeof(double));
    fill_uniform(x, BIG_N, &r);
    exact_t e;
    exact_build(&e, x, NULL, BIG_N);

    /* one call */
    qs_kll *sk = new_sketch(200, 99);
    REQUIRE(sk);
    CHECK_ST(qs_kll_update_batch(sk, x, BIG_N, 1), QS_OK);
    CHECK_INV(sk);
    CHECK(qs_kll_is_estimation_mode(sk) != 0);
    CHECK(qs_kll_nan_count(sk) == 0);
    check_n_min_max(sk, &e, "one batch uniform");
    double err = check_accuracy(sk, &e, bound_for(200), "one batch uniform k=200", &r);
    info("one batch uniform, k=200, n=1e6: max rank error %.5f, %u retained", err, qs_kll_num_retained(sk));
    qs_kll_free(sk);

    /* batches of random sizes (log-uniform 1 .. 65536), invariants after each */
    sk = new_sketch(200, 98);
    REQUIRE(sk);
    size_t i = 0, calls = 0;
    double mn = INFINITY, mx = -INFINITY;
    while (i < BIG_N) {
        size_t len = (size_t)1 << rbelow(&r, 17);
        len = 1 + (size_t)rbelow(&r, len);
        if (len > BIG_N - i) len = BIG_N - i;
        CHECK_ST(qs_kll_update_batch(sk, x + i, len, 0), QS_OK);
        for (size_t j = i; j < i + len; j++) {
            mn = x[j] < mn ? x[j] : mn;
            mx = x[j] > mx ? x[j] : mx;
        }
        i += len;
        calls++;
        if (!INV_OK(sk, "random-size batches", calls)) break;
        if (qs_kll_n(sk) != i || qs_kll_min(sk) != mn || qs_kll_max(sk) != mx) {
            CHECKF(0, "n/min/max wrong after %zu batches (%zu items)", calls, i);
            break;
        }
    }
    check_n_min_max(sk, &e, "random-size batches");
    err = check_accuracy(sk, &e, bound_for(200), "random-size batches k=200", &r);
    info("%zu random-size batches, k=200, n=1e6: max rank error %.5f", calls, err);
    qs_kll_free(sk);

    /* per-item and batch interleaved */
    sk = new_sketch(200, 97);
    REQUIRE(sk);
    i = 0;
    calls = 0;
    while (i < BIG_N) {
        size_t len = 1 + (size_t)rbelow(&r, 40000);
        if (len > BIG_N - i) len = BIG_N - i;
        if (calls % 2) {
            for (size_t j = i; j < i + len; j++) CHECK_ST(qs_kll_update(sk, x[j], 0), QS_OK);
        } else {
            CHECK_ST(qs_kll_update_batch(sk, x + i, len, 0), QS_OK);
        }
        i += len;
        calls++;
        if (!INV_OK(sk, "interleaved", calls)) break;
    }
    check_n_min_max(sk, &e, "interleaved");
    err = check_accuracy(sk, &e, bound_for(200), "interleaved per-item/batch k=200", &r);
    info("interleaved per-item/batch, k=200, n=1e6: max rank error %.5f", err);
    qs_kll_free(sk);

    exact_free(&e);
    free(x);
}

static void test_estimation_sorted_streams(void)
{
    rng_t r = {77};
    double *x = xmalloc(BIG_N * sizeof(double));
    for (int dir = 0; dir < 2; dir++) {
        for (size_t i = 0; i < BIG_N; i++) x[i] = dir ? (double)(BIG_N - 1 - i) : (double)i;
        exact_t e;
        exact_build(&e, x, NULL, BIG_N);
        const char *name = dir ? "reversed" : "sorted";
        char label[64];

        qs_kll *sk = new_sketch(200, 5);
        REQUIRE(sk);
        CHECK_ST(qs_kll_update_batch(sk, x, BIG_N, 0), QS_OK);
        CHECK_INV(sk);
        snprintf(label, sizeof label, "%s stream, one batch", name);
        check_n_min_max(sk, &e, label);
        double err = check_accuracy(sk, &e, bound_for(200), label, &r);
        info("%s: max rank error %.5f", label, err);
        qs_kll_free(sk);

        sk = new_sketch(200, 6);
        REQUIRE(sk);
        for (size_t i = 0; i < BIG_N; i += 10000) {
            CHECK_ST(qs_kll_update_batch(sk, x + i, 10000, 0), QS_OK);
            if (!INV_OK(sk, label, i)) break;
        }
        snprintf(label, sizeof label, "%s stream, batches of 10000", name);
        check_n_min_max(sk, &e, label);
        err = check_accuracy(sk, &e, bound_for(200), label, &r);
        info("%s: max rank error %.5f", label, err);
        qs_kll_free(sk);

        sk = new_sketch(200, 7);
        REQUIRE(sk);
        for (size_t i = 0; i < BIG_N; i++) CHECK_ST(qs_kll_update(sk, x[i], 0), QS_OK);
        CHECK_INV(sk);
        snprintf(label, sizeof label, "%s stream, per item", name);
        check_n_min_max(sk, &e, label);
        err = check_accuracy(sk, &e, bound_for(200), label, &r);
        info("%s: max rank error %.5f", label, err);
        qs_kll_free(sk);
        exact_free(&e);
    }
    free(x);
}

/*
 * Unbiasedness.  Every compaction (and the bulk path's survivor selection)
 * moves a rank by a random amount of mean zero, so the signed rank error,
 * averaged over independent seeds, must be close to zero.  A fixed offset
 * (always keeping the same half) biases every estimate by about 1/(2 S) on
 * the bulk path, S = 64 survivors per chunk at k = 200: 0.008, below the
 * 3 eps accuracy bound (0.04) but far above the noise of this average.
 * Stream: a shuffled permutation of 0 .. n-1, so exact ranks are known.
 */
static void test_unbiased(void)
{
    enum { SEEDS = 12, NQ = 19 };
    const size_t N = 300000;
    double *x = xmalloc(N * sizeof(double));
    rng_t r = {90};
    double q[NQ], out[NQ];
    for (int j = 0; j < NQ; j++) q[j] = floor((double)(j + 1) * (double)N / (NQ + 1)) + 0.5;
    for (int path = 0; path < 3; path++) {
        double mean = 0.0, worst = 0.0;
        for (int s = 0; s < SEEDS; s++) {
            for (size_t i = 0; i < N; i++) x[i] = (double)i;
            shuffle(x, N, &r);
            qs_kll *sk = new_sketch(200, 7000 + (uint64_t)s * 31 + (uint64_t)path);
            REQUIRE(sk);
            if (path == 0) {
                for (size_t i = 0; i < N; i++) (void)qs_kll_update(sk, x[i], 0);
            } else if (path == 1) {
                CHECK_ST(qs_kll_update_batch(sk, x, N, 0), QS_OK);
            } else {
                /* shards merged */
                qs_kll *part = NULL;
                for (size_t i = 0; i < N; i += 30000) {
                    part = new_sketch(200, 100 + i + (uint64_t)s);
                    REQUIRE(part);
                    CHECK_ST(qs_kll_update_batch(part, x + i, 30000, 0), QS_OK);
                    CHECK_ST(qs_kll_merge(sk, part), QS_OK);
                    qs_kll_free(part);
                }
            }
            CHECK(qs_kll_n(sk) == N);
            CHECK_ST(qs_kll_rank(sk, q, NQ, 1, out), QS_OK);
            for (int j = 0; j < NQ; j++) {
                const double err = out[j] - (q[j] + 0.5) / (double)N;
                mean += err;
                if (fabs(err) > worst) worst = fabs(err);
            }
            qs_kll_free(sk);
        }
        mean /= (double)(SEEDS * NQ);
        static const char *const names[3] = {"per item", "one batch", "merged shards"};
        info("%s: mean signed rank error over %d seeds x %d queries %+.5f (max |error| %.5f)", names[path], SEEDS,
             NQ, mean, worst);
        CHECKF(fabs(mean) < 0.003, "%s: rank estimates are biased: mean signed error %+.5f", names[path], mean);
    }
    free(x);
}

/* The bulk path's survivor count and chunk size depend on k: try many. */
static void test_estimation_bulk_many_k(void)
{
    rng_t r = {88};
    const size_t N = 1500000;
    double *x = xmalloc(N * sizeof(double));
    for (size_t i = 0; i < N; i++) x[i] = runit(&r) * runit(&r); /* skewed */
    exact_t e;
    exact_build(&e, x, NULL, N);
    const uint32_t ks[] = {8, 9, 16, 50, 127, 128, 129, 333, 1000, 4096, 20000};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        char label[64];
        qs_kll *sk = new_sketch(ks[i], 1000 + i);
        REQUIRE(sk);
        size_t at = 0, calls = 0;
        while (at < N) {
            size_t len = (i % 2) ? N : 1 + (size_t)rbelow(&r, 150000);
            if (len > N - at) len = N - at;
            CHECK_ST(qs_kll_update_batch(sk, x + at, len, 0), QS_OK);
            at += len;
            calls++;
            if (!INV_OK(sk, "bulk, many k", calls)) break;
        }
        snprintf(label, sizeof label, "batches, k=%u", (unsigned)ks[i]);
        check_n_min_max(sk, &e, label);
        const double err = check_accuracy(sk, &e, bound_for(ks[i]), label, &r);
        info("%s, n=1.5e6 in %zu calls: max rank error %.5f (bound %.5f), %u retained", label, calls, err,
             bound_for(ks[i]), qs_kll_num_retained(sk));
        qs_kll_free(sk);
    }
    exact_free(&e);
    free(x);
}

/* ======================================================================== */
/* 7. Weighted updates                                                      */
/* ======================================================================== */

static void test_weighted_exact(void)
{
    rng_t r = {8};
    const uint64_t P40 = UINT64_C(1) << 40;
    const double x[] = {3.0, -1.0, 7.5, 3.0, 0.0, -0.0, 1e300, -1e-310, 2.0, 42.0, 3.0, -7.0};
    const uint64_t w[] = {1, 2, 3, 7, P40, P40 - 1, UINT64_C(0xFF00FF00FF), UINT64_C(12345678901), 5,
                          UINT64_C(0x5555555555), 1, P40 + 1};
    const size_t N = sizeof x / sizeof x[0];
    exact_t e;
    exact_build(&e, x, w, N);
    uint64_t total = 0;
    for (size_t i = 0; i < N; i++) total += w[i];

    for (int k_i = 0; k_i < 2; k_i++) {
        const uint32_t k = k_i ? 8 : 200;
        qs_kll *sk = new_sketch(k, 3);
        REQUIRE(sk);
        CHECK_ST(qs_kll_update_weighted(sk, x, w, N, 1), QS_OK);
        CHECK(qs_kll_n(sk) == total);
        CHECK_INV(sk);
        if (qs_kll_is_estimation_mode(sk) == 0) {
            check_exact(sk, &e, k_i ? "weighted exact k=8" : "weighted exact k=200", &r);
        } else {
            CHECKF(k == 8, "k=%u: a few weighted items should not compact", (unsigned)k);
            check_n_min_max(sk, &e, "weighted k=8");
        }
        /* the sorted view carries the weights */
        const double *vi;
        const uint64_t *vc;
        uint32_t vs;
        CHECK_ST(qs_kll_sorted_view(sk, &vi, &vc, &vs), QS_OK);
        CHECK(vs == qs_kll_num_retained(sk));
        CHECK(vs > 0 && vc[vs - 1] == total);
        for (uint32_t i = 1; i < vs; i++) CHECK(vi[i - 1] <= vi[i] && vc[i - 1] < vc[i]);
        qs_kll_free(sk);
    }

    /* moderate weights (total < 2^31), so quantiles at every p = cw / n are checked too */
    {
        enum { M = 30 };
        double mx[M];
        uint64_t mw[M];
        for (int i = 0; i < M; i++) {
            mx[i] = floor(runit(&r) * 20.0) - 10.0;
            mw[i] = 1 + rbelow(&r, UINT64_C(1) << 25);
        }
        exact_t em;
        exact_build(&em, mx, mw, M);
        qs_kll *sm = new_sketch(200, 9);
        REQUIRE(sm);
        CHECK_ST(qs_kll_update_weighted(sm, mx, mw, M, 1), QS_OK);
        CHECK_INV(sm);
        CHECK(qs_kll_is_estimation_mode(sm) == 0);
        check_exact(sm, &em, "weighted exact, total < 2^31", &r);
        exact_free(&em);
        qs_kll_free(sm);
    }

    /* weighted items one call at a time, mixed with plain updates */
    qs_kll *sk = new_sketch(200, 4);
    REQUIRE(sk);
    for (size_t i = 0; i < N; i++) {
        CHECK_ST(qs_kll_update_weighted(sk, &x[i], &w[i], 1, 0), QS_OK);
        CHECK_INV(sk);
    }
    check_exact(sk, &e, "weighted one at a time", &r);
    exact_free(&e);

    /* a full 64-level item: weight 2^64 - 1, then nothing more fits */
    qs_kll *big = new_sketch(200, 5);
    REQUIRE(big);
    const double bx = 1.5;
    const uint64_t bw = UINT64_MAX;
    CHECK_ST(qs_kll_update_weighted(big, &bx, &bw, 1, 0), QS_OK);
    CHECK(qs_kll_n(big) == UINT64_MAX);
    CHECK(qs_kll_num_retained(big) == 64);
    CHECK(qs_kll_num_levels(big) == 64);
    CHECK(qs_kll_is_estimation_mode(big) == 0);
    CHECK_INV(big);
    double out;
    const double qv = 1.5;
    CHECK_ST(qs_kll_rank(big, &qv, 1, 1, &out), QS_OK);
    CHECK(out == 1.0);
    CHECK_ST(qs_kll_rank(big, &qv, 1, 0, &out), QS_OK);
    CHECK(out == 0.0);
    const double ph = 0.5;
    CHECK_ST(qs_kll_quantile(big, &ph, 1, 1, &out), QS_OK);
    CHECK(out == 1.5);
    bytes_t before = ser(big);
    CHECK_ST(qs_kll_update(big, 2.0, 0), QS_EOVERFLOW);
    CHECK_ST(qs_kll_update_batch(big, &bx, 1, 0), QS_EOVERFLOW);
    const uint64_t one = 1;
    CHECK_ST(qs_kll_update_weighted(big, &bx, &one, 1, 0), QS_EOVERFLOW);
    CHECK_ST(qs_kll_merge(big, sk), QS_EOVERFLOW);
    CHECK(unchanged_since(big, before));
    free(before.p);
    /* its serialization round-trips */
    bytes_t b = ser(big);
    qs_status st;
    const char *msg;
    qs_kll *dec = deser(b.p, b.len, &st, &msg);
    CHECKF(dec != NULL, "decoding a 64-level sketch: %s", msg ? msg : "?");
    if (dec) CHECK(same_state(dec, big));
    qs_kll_free(dec);
    free(b.p);
    qs_kll_free(big);
    qs_kll_free(sk);
}

static void test_weighted_errors(void)
{
    qs_kll *sk = new_sketch(200, 1);
    REQUIRE(sk);
    const double x3[3] = {1.0, 2.0, 3.0};
    uint64_t w3[3] = {5, 0, 2};
    CHECK_ST(qs_kll_update_weighted(sk, x3, w3, 3, 0), QS_EINVAL);
    CHECK(qs_kll_n(sk) == 0 && qs_kll_nan_count(sk) == 0 && qs_kll_num_retained(sk) == 0);
    CHECK_ST(qs_kll_update(sk, 10.0, 0), QS_OK);

    /* weight 0 anywhere: QS_EINVAL, sketch unchanged */
    bytes_t before = ser(sk);
    CHECK_ST(qs_kll_update_weighted(sk, x3, w3, 3, 0), QS_EINVAL);
    w3[1] = 7;
    w3[2] = 0;
    CHECK_ST(qs_kll_update_weighted(sk, x3, w3, 3, 1), QS_EINVAL);
    CHECK(unchanged_since(sk, before));

    /* total weight overflow within one call */
    const uint64_t half = UINT64_C(1) << 63;
    uint64_t wo[3] = {half, 3, half};
    CHECK_ST(qs_kll_update_weighted(sk, x3, wo, 3, 0), QS_EOVERFLOW);
    CHECK(unchanged_since(sk, before));
    /* overflow against the sketch's n */
    uint64_t wmax[1] = {UINT64_MAX};
    CHECK_ST(qs_kll_update_weighted(sk, x3, wmax, 1, 0), QS_EOVERFLOW);
    CHECK(unchanged_since(sk, before));
    /* NaN weights overflow nan_count the same way */
    const double xn[2] = {NAN, NAN};
    uint64_t wn[2] = {half, half};
    CHECK_ST(qs_kll_update_weighted(sk, xn, wn, 2, 0), QS_EOVERFLOW);
    CHECK(unchanged_since(sk, before));
    /* NaN under the raise policy: QS_ENAN, unchanged */
    const double xm[3] = {1.0, NAN, 2.0};
    uint64_t wm[3] = {4, 4, 4};
    CHECK_ST(qs_kll_update_weighted(sk, xm, wm, 3, 1), QS_ENAN);
    CHECK(unchanged_since(sk, before));
    free(before.p);
    /* NaN under the ignore policy: its weight goes to nan_count */
    CHECK_ST(qs_kll_update_weighted(sk, xm, wm, 3, 0), QS_OK);
    CHECK(qs_kll_n(sk) == 9 && qs_kll_nan_count(sk) == 4);
    CHECK(qs_kll_min(sk) == 1.0 && qs_kll_max(sk) == 10.0);
    CHECK_INV(sk);
    /* the batch path near the edge: rejected whole, or filling n exactly */
    qs_kll *near = new_sketch(200, 3);
    REQUIRE(near);
    const uint64_t wbig[1] = {UINT64_MAX - 5};
    CHECK_ST(qs_kll_update_weighted(near, x3, wbig, 1, 0), QS_OK);
    double ten[10];
    for (int i = 0; i < 10; i++) ten[i] = i;
    bytes_t nb = ser(near);
    CHECK_ST(qs_kll_update_batch(near, ten, 10, 0), QS_EOVERFLOW);
    CHECK(unchanged_since(near, nb));
    free(nb.p);
    CHECK_ST(qs_kll_update_batch(near, ten, 4, 0), QS_OK);
    CHECK_ST(qs_kll_update(near, 0.5, 0), QS_OK);
    CHECK(qs_kll_n(near) == UINT64_MAX);
    CHECK_INV(near);
    CHECK_ST(qs_kll_update(near, 0.5, 0), QS_EOVERFLOW);
    CHECK(qs_kll_n(near) == UINT64_MAX);
    CHECK(qs_kll_min(near) == 0.0 && qs_kll_max(near) == 3.0);
    qs_kll_free(near);
    /* exact sums up to the edge */
    qs_kll *edge = new_sketch(200, 2);
    REQUIRE(edge);
    uint64_t we[2] = {UINT64_MAX - 10, 10};
    CHECK_ST(qs_kll_update_weighted(edge, x3, we, 2, 0), QS_OK);
    CHECK(qs_kll_n(edge) == UINT64_MAX);
    CHECK_INV(edge);
    qs_kll_free(edge);
    qs_kll_free(sk);
}

static void test_weighted_estimation(void)
{
    rng_t r = {10};
    const size_t N = 200000;
    double *x = xmalloc(N * sizeof(double));
    uint64_t *w = xmalloc(N * sizeof(uint64_t));
    for (size_t i = 0; i < N; i++) {
        x[i] = runit(&r);
        /* mostly small weights, some with many bits set */
        const uint64_t u = rnext(&r);
        w[i] = (u & 15) == 0 ? (UINT64_C(1) << 20) - 1 - (u >> 50) : 1 + (u >> 54);
    }
    exact_t e;
    exact_build(&e, x, w, N);
    qs_kll *sk = new_sketch(200, 11);
    REQUIRE(sk);
    /* in calls of random size, invariants after each */
    size_t i = 0;
    while (i < N) {
        size_t len = 1 + (size_t)rbelow(&r, 5000);
        if (len > N - i) len = N - i;
        CHECK_ST(qs_kll_update_weighted(sk, x + i, w + i, len, 1), QS_OK);
        i += len;
        if (!INV_OK(sk, "weighted estimation", i)) break;
    }
    CHECK(qs_kll_is_estimation_mode(sk) != 0);
    check_n_min_max(sk, &e, "weighted estimation");
    const double err = check_accuracy(sk, &e, bound_for(200), "weighted estimation k=200", &r);
    info("weighted, k=200, n=%zu items (total weight %llu): max rank error %.5f", N, (unsigned long long)e.n, err);
    qs_kll_free(sk);

    /* one call (crosses QS_WEIGHTED_BLOCK many times) */
    sk = new_sketch(200, 12);
    REQUIRE(sk);
    CHECK_ST(qs_kll_update_weighted(sk, x, w, N, 1), QS_OK);
    CHECK_INV(sk);
    check_n_min_max(sk, &e, "weighted one call");
    check_accuracy(sk, &e, bound_for(200), "weighted one call k=200", &r);
    qs_kll_free(sk);
    exact_free(&e);
    free(x);
    free(w);
}

/* ======================================================================== */
/* 8. Merge                                                                 */
/* ======================================================================== */

static void test_merge_exact(void)
{
    rng_t r = {20};
    double x[150];
    for (int i = 0; i < 150; i++) x[i] = floor(runit(&r) * 100.0) - 50.0;
    exact_t e;
    exact_build(&e, x, NULL, 150);
    qs_kll *a = new_sketch(200, 1), *b = new_sketch(200, 2);
    REQUIRE(a && b);
    CHECK_ST(qs_kll_update_batch(a, x, 70, 1), QS_OK);
    for (int i = 70; i < 150; i++) CHECK_ST(qs_kll_update(b, x[i], 1), QS_OK);
    bytes_t bb = ser(b);
    CHECK_ST(qs_kll_merge(a, b), QS_OK);
    CHECK(unchanged_since(b, bb));
    free(bb.p);
    CHECK_INV(a);
    check_exact(a, &e, "exact merge", &r);

    /* into an empty sketch */
    qs_kll *c = new_sketch(200, 3);
    REQUIRE(c);
    CHECK_ST(qs_kll_merge(c, a), QS_OK);
    CHECK_INV(c);
    check_exact(c, &e, "merge into empty", &r);

    /* an empty sketch (with some NaNs counted) into a non-empty one */
    qs_kll *empty = new_sketch(200, 4);
    REQUIRE(empty);
    CHECK_ST(qs_kll_update(empty, NAN, 0), QS_OK);
    CHECK_ST(qs_kll_merge(c, empty), QS_OK);
    CHECK(qs_kll_nan_count(c) == 1);
    CHECK_INV(c);
    check_exact(c, &e, "merge of an empty sketch", &r);
    /* empty into empty */
    qs_kll *empty2 = new_sketch(200, 5);
    REQUIRE(empty2);
    CHECK_ST(qs_kll_merge(empty2, empty), QS_OK);
    CHECK(qs_kll_n(empty2) == 0 && qs_kll_nan_count(empty2) == 1);
    CHECK(isnan(qs_kll_min(empty2)));
    CHECK_INV(empty2);
    /* an empty sketch with a smaller k lowers k */
    qs_kll *empty_small = new_sketch(50, 6);
    REQUIRE(empty_small);
    CHECK_ST(qs_kll_merge(c, empty_small), QS_OK);
    CHECK(qs_kll_k(c) == 50);
    CHECK_INV(c);
    /* 150 items do not fit k = 50: the sketch had to compact */
    CHECK(qs_kll_is_estimation_mode(c) != 0);
    check_n_min_max(c, &e, "after merging an empty k=50 sketch");
    check_accuracy(c, &e, bound_for(50), "after merging an empty k=50 sketch", &r);

    /* self merge doubles every count */
    qs_kll *d = copy_sketch(a);
    REQUIRE(d);
    CHECK_ST(qs_kll_merge(d, d), QS_OK);
    CHECK_INV(d);
    CHECK(qs_kll_n(d) == 300);
    uint64_t w2[150];
    for (int i = 0; i < 150; i++) w2[i] = 2;
    exact_t e2;
    exact_build(&e2, x, w2, 150);
    if (qs_kll_is_estimation_mode(d) == 0) check_exact(d, &e2, "self merge", &r);
    else check_accuracy(d, &e2, bound_for(200), "self merge", &r);
    exact_free(&e2);

    qs_kll_free(a);
    qs_kll_free(b);
    qs_kll_free(c);
    qs_kll_free(d);
    qs_kll_free(empty);
    qs_kll_free(empty2);
    qs_kll_free(empty_small);
    exact_free(&e);
}

static void test_merge_shards(void)
{
    rng_t r = {21};
    enum { SHARDS = 100, PER = 10000 };
    double *x = xmalloc((size_t)SHARDS * PER * sizeof(double));
    for (size_t i = 0; i < (size_t)SHARDS * PER; i++) x[i] = runit(&r) * 2e6 - 1e6;
    exact_t e;
    exact_build(&e, x, NULL, (size_t)SHARDS * PER);
    qs_kll *dst = new_sketch(200, 1000);
    REQUIRE(dst);
    for (int s = 0; s < SHARDS; s++) {
        qs_kll *src = new_sketch(200, (uint64_t)s + 1);
        REQUIRE(src);
        const double *xs = x + (size_t)s * PER;
        if (s % 2) {
            for (int i = 0; i < PER; i++) CHECK_ST(qs_kll_update(src, xs[i], 0), QS_OK);
        } else {
            CHECK_ST(qs_kll_update_batch(src, xs, PER, 0), QS_OK);
        }
        CHECK_INV(src);
        bytes_t before = ser(src);
        const uint64_t n_before = qs_kll_n(dst);
        CHECK_ST(qs_kll_merge(dst, src), QS_OK);
        CHECK(unchanged_since(src, before));
        CHECK(qs_kll_n(src) == PER);
        CHECK(qs_kll_n(dst) == n_before + PER);
        free(before.p);
        qs_kll_free(src);
        if (!INV_OK(dst, "shard merge", s)) break;
    }
    check_n_min_max(dst, &e, "100 shards");
    CHECK(qs_kll_is_estimation_mode(dst) != 0);
    const double err = check_accuracy(dst, &e, bound_for(200), "100 x 10000 shards merged", &r);
    info("100 x 10000 shards merged, k=200: max rank error %.5f, %u retained", err, qs_kll_num_retained(dst));

    /* the same shards merged as a balanced tree */
    qs_kll *tree[SHARDS];
    for (int s = 0; s < SHARDS; s++) {
        tree[s] = new_sketch(200, (uint64_t)s + 500);
        REQUIRE(tree[s]);
        CHECK_ST(qs_kll_update_batch(tree[s], x + (size_t)s * PER, PER, 0), QS_OK);
    }
    for (int step = 1; step < SHARDS; step *= 2)
        for (int s = 0; s + step < SHARDS; s += 2 * step) {
            CHECK_ST(qs_kll_merge(tree[s], tree[s + step]), QS_OK);
            CHECK_INV(tree[s]);
        }
    check_n_min_max(tree[0], &e, "tree merge");
    check_accuracy(tree[0], &e, bound_for(200), "100 shards tree-merged", &r);
    for (int s = 0; s < SHARDS; s++) qs_kll_free(tree[s]);

    qs_kll_free(dst);
    exact_free(&e);
    free(x);
}

static void test_merge_different_k(void)
{
    rng_t r = {22};
    const size_t N = 100000;
    double *x = xmalloc(N * sizeof(double));
    fill_uniform(x, N, &r);
    exact_t e;
    exact_build(&e, x, NULL, N);
    for (int order = 0; order < 2; order++) {
        qs_kll *big = new_sketch(200, 1), *small = new_sketch(100, 2);
        REQUIRE(big && small);
        CHECK_ST(qs_kll_update_batch(big, x, N / 2, 0), QS_OK);
        CHECK_ST(qs_kll_update_batch(small, x + N / 2, N - N / 2, 0), QS_OK);
        qs_kll *dst = order ? small : big, *src = order ? big : small;
        bytes_t before = ser(src);
        CHECK_ST(qs_kll_merge(dst, src), QS_OK);
        CHECK(unchanged_since(src, before));
        free(before.p);
        CHECK(qs_kll_k(dst) == 100);
        CHECK_INV(dst);
        check_n_min_max(dst, &e, "different k");
        check_accuracy(dst, &e, bound_for(100), order ? "k=200 into k=100" : "k=100 into k=200", &r);
        /* the merged sketch keeps working at the new k */
        CHECK_ST(qs_kll_update_batch(dst, x, N, 0), QS_OK);
        CHECK_INV(dst);
        CHECK(qs_kll_n(dst) == 2 * N);
        qs_kll_free(big);
        qs_kll_free(small);
    }
    /* an exact small-k sketch into an empty large-k one */
    qs_kll *dst = new_sketch(200, 3), *src = new_sketch(50, 4);
    REQUIRE(dst && src);
    CHECK_ST(qs_kll_update_batch(src, x, 40, 0), QS_OK);
    CHECK_ST(qs_kll_merge(dst, src), QS_OK);
    CHECK(qs_kll_k(dst) == 50);
    exact_t e40;
    exact_build(&e40, x, NULL, 40);
    check_exact(dst, &e40, "k=50 exact into empty k=200", &r);
    exact_free(&e40);
    qs_kll_free(dst);
    qs_kll_free(src);
    exact_free(&e);
    free(x);
}

static void test_merge_failure_is_transactional(void)
{
    /* total weight overflow: QS_EOVERFLOW, both sketches unchanged */
    qs_kll *a = new_sketch(200, 1), *b = new_sketch(200, 2);
    REQUIRE(a && b);
    const double xa[2] = {1.0, 2.0}, xb[2] = {3.0, 0.5};
    const uint64_t wa[2] = {UINT64_C(1) << 62, UINT64_C(1) << 62};
    const uint64_t wb[2] = {UINT64_C(1) << 62, (UINT64_C(1) << 62) + 1};
    CHECK_ST(qs_kll_update_weighted(a, xa, wa, 2, 0), QS_OK);
    CHECK_ST(qs_kll_update_weighted(b, xb, wb, 2, 0), QS_OK);
    bytes_t ba = ser(a), bb = ser(b);
    CHECK_ST(qs_kll_merge(a, b), QS_EOVERFLOW);
    CHECK(unchanged_since(a, ba));
    CHECK(unchanged_since(b, bb));
    free(ba.p);
    free(bb.p);
    /* nan_count overflow likewise */
    qs_kll *c = new_sketch(200, 3), *d = new_sketch(200, 4);
    REQUIRE(c && d);
    const double xn[1] = {NAN};
    const uint64_t wn[1] = {UINT64_MAX};
    CHECK_ST(qs_kll_update_weighted(c, xn, wn, 1, 0), QS_OK);
    CHECK_ST(qs_kll_update(d, NAN, 0), QS_OK);
    CHECK_ST(qs_kll_update(d, 1.0, 0), QS_OK);
    bytes_t bc = ser(c);
    CHECK_ST(qs_kll_merge(c, d), QS_EOVERFLOW);
    CHECK(unchanged_since(c, bc));
    free(bc.p);
    CHECK_ST(qs_kll_update(c, NAN, 0), QS_EOVERFLOW);
    qs_kll_free(a);
    qs_kll_free(b);
    qs_kll_free(c);
    qs_kll_free(d);
}

/* ======================================================================== */
/* 9-10. Copy and determinism                                               */
/* ======================================================================== */

static void test_copy(void)
{
    rng_t r = {30};
    const size_t N = 300000;
    double *x = xmalloc(N * sizeof(double));
    fill_uniform(x, N, &r);
    const size_t sizes[] = {0, 1, 150, 5000, N};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        qs_kll *sk = new_sketch(200, 17);
        REQUIRE(sk);
        CHECK_ST(qs_kll_update_batch(sk, x, sizes[s], 0), QS_OK);
        CHECK_ST(qs_kll_update(sk, NAN, 0), QS_OK);
        qs_kll_set_user_flags(sk, 0xA5);
        double tmp;
        const double q = 0.5;
        CHECK_ST(qs_kll_rank(sk, &q, 1, 1, &tmp), QS_OK); /* a built view must not confuse the copy */
        qs_kll *c = copy_sketch(sk);
        REQUIRE(c);
        CHECK(same_state(sk, c));
        CHECK(qs_kll_user_flags(c) == 0xA5);
        CHECK_INV(c);
        double r1, r2;
        CHECK_ST(qs_kll_rank(sk, &q, 1, 1, &r1), QS_OK);
        CHECK_ST(qs_kll_rank(c, &q, 1, 1, &r2), QS_OK);
        CHECK((isnan(r1) && isnan(r2)) || r1 == r2);
        /* independent afterwards, and the same random stream */
        bytes_t before = ser(sk);
        CHECK_ST(qs_kll_update_batch(c, x, N, 0), QS_OK);
        CHECK(unchanged_since(sk, before));
        free(before.p);
        CHECK_ST(qs_kll_update_batch(sk, x, N, 0), QS_OK);
        CHECKF(same_state(sk, c), "copy of a %zu-item sketch diverged from its original under the same updates",
               sizes[s]);
        qs_kll_free(sk);
        qs_kll_free(c);
    }
    free(x);
}

static void build_mixed(qs_kll *sk, const double *x, size_t n, rng_t *r)
{
    /* per item, batches and weighted calls, all driven by r */
    size_t i = 0;
    uint64_t w[64];
    while (i < n) {
        size_t len = 1 + (size_t)rbelow(r, 20000);
        if (len > n - i) len = n - i;
        switch (rbelow(r, 3)) {
        case 0:
            for (size_t j = i; j < i + len && j < i + 500; j++) (void)qs_kll_update(sk, x[j], 0);
            if (len > 500) len = 500;
            break;
        case 1: (void)qs_kll_update_batch(sk, x + i, len, 0); break;
        default:
            if (len > 64) len = 64;
            for (size_t j = 0; j < len; j++) w[j] = 1 + rbelow(r, 100);
            (void)qs_kll_update_weighted(sk, x + i, w, len, 0);
            break;
        }
        i += len;
    }
}

static void test_determinism(void)
{
    rng_t r = {40};
    const size_t N = 400000;
    double *x = xmalloc(N * sizeof(double));
    fill_uniform(x, N, &r);
    rng_t r1 = {5}, r2 = {5}, r3 = {5};
    qs_kll *a = new_sketch(200, 123), *b = new_sketch(200, 123), *c = new_sketch(200, 124);
    REQUIRE(a && b && c);
    build_mixed(a, x, N, &r1);
    build_mixed(b, x, N, &r2);
    build_mixed(c, x, N, &r3);
    CHECK_INV(a);
    CHECK(qs_kll_is_estimation_mode(a));
    CHECK(same_state(a, b));
    /* different seeds: the retained items differ, not just the stored seed */
    bytes_t ba = ser(a), bc = ser(c);
    const size_t item_start = 56 + 4 * (size_t)qs_kll_num_levels(a);
    const int items_equal = ba.len == bc.len &&
                            memcmp(ba.p + item_start, bc.p + item_start, ba.len - item_start - 4) == 0;
    CHECK(!items_equal);
    free(ba.p);
    free(bc.p);
    /* merges too */
    qs_kll *m1 = new_sketch(200, 9), *m2 = new_sketch(200, 9);
    REQUIRE(m1 && m2);
    CHECK_ST(qs_kll_merge(m1, a), QS_OK);
    CHECK_ST(qs_kll_merge(m1, c), QS_OK);
    CHECK_ST(qs_kll_merge(m2, b), QS_OK);
    CHECK_ST(qs_kll_merge(m2, c), QS_OK);
    CHECK(same_state(m1, m2));
    qs_kll_free(m1);
    qs_kll_free(m2);
    /* per-item path alone with different seeds */
    qs_kll *p = new_sketch(200, 1), *q = new_sketch(200, 2);
    REQUIRE(p && q);
    for (size_t i = 0; i < 100000; i++) {
        (void)qs_kll_update(p, x[i], 0);
        (void)qs_kll_update(q, x[i], 0);
    }
    const double *ip, *iq;
    const uint64_t *cp, *cq;
    uint32_t sp, sq;
    CHECK_ST(qs_kll_sorted_view(p, &ip, &cp, &sp), QS_OK);
    CHECK_ST(qs_kll_sorted_view(q, &iq, &cq, &sq), QS_OK);
    CHECK(sp > 100 && sq > 100);
    CHECK(!(sp == sq && memcmp(ip, iq, sp * sizeof(double)) == 0));
    qs_kll_free(p);
    qs_kll_free(q);
    qs_kll_free(a);
    qs_kll_free(b);
    qs_kll_free(c);
    free(x);
}

/* ======================================================================== */
/* 11. Serialization                                                        */
/* ======================================================================== */

static void roundtrip(qs_kll *sk, const char *label, rng_t *r)
{
    bytes_t b = ser(sk);
    qs_status st;
    const char *msg;
    qs_kll *d = deser(b.p, b.len, &st, &msg);
    CHECKF(d != NULL && st == QS_OK, "%s: decode failed: %s (%s)", label, status_name(st), msg ? msg : "?");
    if (!d) {
        free(b.p);
        return;
    }
    CHECK_INV(d);
    bytes_t b2 = ser(d);
    CHECKF(bytes_eq(b, b2), "%s: bytes differ after a round trip", label);
    CHECK(qs_kll_n(d) == qs_kll_n(sk) && qs_kll_nan_count(d) == qs_kll_nan_count(sk));
    CHECK(qs_kll_k(d) == qs_kll_k(sk) && qs_kll_user_flags(d) == qs_kll_user_flags(sk));
    CHECK(qs_kll_is_estimation_mode(d) == qs_kll_is_estimation_mode(sk));
    /* same answers */
    enum { NQ = 200 };
    double q[NQ], o1[NQ], o2[NQ];
    for (int i = 0; i < NQ; i++) q[i] = runit(r);
    for (int inc = 0; inc <= 1; inc++) {
        CHECK_ST(qs_kll_rank(sk, q, NQ, inc, o1), QS_OK);
        CHECK_ST(qs_kll_rank(d, q, NQ, inc, o2), QS_OK);
        for (int i = 0; i < NQ; i++) CHECK((isnan(o1[i]) && isnan(o2[i])) || o1[i] == o2[i]);
        CHECK_ST(qs_kll_quantile(sk, q, NQ, inc, o1), QS_OK);
        CHECK_ST(qs_kll_quantile(d, q, NQ, inc, o2), QS_OK);
        for (int i = 0; i < NQ; i++) CHECK((isnan(o1[i]) && isnan(o2[i])) || dbits(o1[i]) == dbits(o2[i]));
    }
    /* the decoded sketch continues the same random stream as the original */
    qs_kll *orig = copy_sketch(sk);
    REQUIRE(orig);
    rng_t r1 = *r, r2 = *r;
    double *more = xmalloc(60000 * sizeof(double));
    fill_uniform(more, 60000, r);
    build_mixed(orig, more, 60000, &r1);
    build_mixed(d, more, 60000, &r2);
    CHECK_INV(d);
    CHECKF(same_state(orig, d), "%s: a decoded sketch and the original diverge under the same updates", label);
    free(more);
    qs_kll_free(orig);
    free(b2.p);
    free(b.p);
    qs_kll_free(d);
}

static void test_serde_roundtrip(void)
{
    rng_t r = {50};
    const size_t N = 200000;
    double *x = xmalloc(N * sizeof(double));
    fill_uniform(x, N, &r);

    qs_kll *sk = new_sketch(200, 1);
    REQUIRE(sk);
    roundtrip(sk, "empty", &r);
    CHECK_ST(qs_kll_update(sk, NAN, 0), QS_OK);
    roundtrip(sk, "empty with a NaN counted", &r);
    CHECK_ST(qs_kll_update(sk, -3.5, 0), QS_OK);
    roundtrip(sk, "one item", &r);
    CHECK_ST(qs_kll_update_batch(sk, x, 150, 0), QS_OK);
    qs_kll_set_user_flags(sk, 0x3C);
    roundtrip(sk, "exact mode", &r);
    /* level 0 sorted (a view was built, or level 0 holds <= 1 item) */
    qs_kll_free(sk);

    sk = new_sketch(200, 2);
    REQUIRE(sk);
    CHECK_ST(qs_kll_update_batch(sk, x, N, 0), QS_OK);
    roundtrip(sk, "estimation mode (batch)", &r);
    qs_kll_free(sk);

    sk = new_sketch(200, 3);
    REQUIRE(sk);
    for (size_t i = 0; i < 50000; i++) CHECK_ST(qs_kll_update(sk, x[i], 0), QS_OK);
    roundtrip(sk, "estimation mode (per item)", &r);
    qs_kll_free(sk);

    sk = new_sketch(200, 4);
    REQUIRE(sk);
    const double wx[4] = {1.0, 2.0, 3.0, -1.0};
    const uint64_t ww[4] = {UINT64_C(1) << 40, (UINT64_C(1) << 40) - 1, 3, 12345};
    CHECK_ST(qs_kll_update_weighted(sk, wx, ww, 4, 0), QS_OK);
    roundtrip(sk, "weighted exact", &r);
    uint64_t *w = xmalloc(20000 * sizeof(uint64_t));
    for (size_t i = 0; i < 20000; i++) w[i] = 1 + rbelow(&r, 1000);
    CHECK_ST(qs_kll_update_weighted(sk, x, w, 20000, 0), QS_OK);
    roundtrip(sk, "weighted estimation", &r);
    free(w);
    qs_kll_free(sk);

    /* after a merge (buffer capacity can exceed the nominal one) and k changes */
    qs_kll *a = new_sketch(300, 5), *b = new_sketch(40, 6);
    REQUIRE(a && b);
    CHECK_ST(qs_kll_update_batch(a, x, 100000, 0), QS_OK);
    CHECK_ST(qs_kll_update_batch(b, x + 100000, 3000, 0), QS_OK);
    CHECK_ST(qs_kll_merge(a, b), QS_OK);
    roundtrip(a, "merged, k lowered", &r);
    qs_kll_free(a);
    qs_kll_free(b);

    /* extreme k */
    sk = new_sketch(QS_KLL_MAX_K, 7);
    REQUIRE(sk);
    CHECK_ST(qs_kll_update_batch(sk, x, N, 0), QS_OK);
    roundtrip(sk, "k = 65535", &r);
    qs_kll_free(sk);
    sk = new_sketch(QS_KLL_MIN_K, 8);
    REQUIRE(sk);
    CHECK_ST(qs_kll_update_batch(sk, x, N, 0), QS_OK);
    roundtrip(sk, "k = 8", &r);
    qs_kll_free(sk);
    free(x);

    /* serialize into a too-small buffer */
    sk = new_sketch(200, 9);
    REQUIRE(sk);
    CHECK_ST(qs_kll_update(sk, 1.0, 0), QS_OK);
    const size_t sz = qs_kll_serialized_size(sk);
    uint8_t *buf = xmalloc(sz);
    size_t written = 12345;
    CHECK_ST(qs_kll_serialize(sk, buf, sz - 1, &written), QS_EINVAL);
    CHECK_ST(qs_kll_serialize(sk, buf, sz, &written), QS_OK);
    CHECK(written == sz);
    /* the checksum is zlib's CRC-32 of everything before it */
    const uint32_t crc = (uint32_t)buf[sz - 4] | ((uint32_t)buf[sz - 3] << 8) | ((uint32_t)buf[sz - 2] << 16) |
                         ((uint32_t)buf[sz - 1] << 24);
    CHECK(crc == qs_crc32(buf, sz - 4));
    CHECK(qs_crc32((const uint8_t *)"123456789", 9) == 0xCBF43926u);
    CHECK(memcmp(buf, "QSK", 3) == 0 && buf[3] >= 1);
    free(buf);
    qs_kll_free(sk);
}

/* A small estimation-mode sketch's bytes, for the corruption tests. */
static bytes_t small_estimation_bytes(void)
{
    qs_kll *sk = new_sketch(8, 77);
    rng_t r = {60};
    for (int i = 0; i < 200; i++) (void)qs_kll_update(sk, runit(&r) * 10.0 - 5.0, 0);
    (void)qs_kll_update(sk, NAN, 0);
    CHECK(qs_kll_is_estimation_mode(sk));
    CHECK(qs_kll_num_levels(sk) >= 3);
    bytes_t b = ser(sk);
    qs_kll_free(sk);
    return b;
}

static void put_crc(uint8_t *p, size_t len)
{
    const uint32_t c = qs_crc32(p, len - 4);
    for (int i = 0; i < 4; i++) p[len - 4 + i] = (uint8_t)(c >> (8 * i));
}

/* Decoded from damaged bytes, a sketch must still be fully usable. */
static void exercise_decoded(qs_kll *d, const char *what, size_t where)
{
    const char *m = NULL;
    if (qs_kll_check_invariants(d, &m) != 0) {
        CHECKF(0, "%s at %zu: decoded sketch violates invariants: %s", what, where, m ? m : "?");
        return;
    }
    rng_t r = {where};
    double q[16], out[16];
    for (int i = 0; i < 16; i++) q[i] = runit(&r) * 12.0 - 6.0;
    CHECK_ST(qs_kll_rank(d, q, 16, 1, out), QS_OK);
    for (int i = 0; i < 16; i++) q[i] = runit(&r);
    CHECK_ST(qs_kll_quantile(d, q, 16, 0, out), QS_OK);
    const uint64_t n0 = qs_kll_n(d);
    for (int i = 0; i < 300; i++) (void)qs_kll_update(d, runit(&r), 0);
    if (n0 <= UINT64_MAX - 300) CHECK(qs_kll_n(d) == n0 + 300);
    if (qs_kll_check_invariants(d, &m) != 0)
        CHECKF(0, "%s at %zu: invariants broken after updating a decoded sketch: %s", what, where, m ? m : "?");
    qs_kll *c = copy_sketch(d);
    if (c) {
        (void)qs_kll_merge(c, d);
        if (qs_kll_check_invariants(c, &m) != 0)
            CHECKF(0, "%s at %zu: invariants broken after a merge: %s", what, where, m ? m : "?");
        qs_kll_free(c);
    }
    bytes_t b = ser(d);
    qs_status st;
    qs_kll *again = deser(b.p, b.len, &st, &m);
    CHECKF(again != NULL, "%s at %zu: re-encoded sketch does not decode: %s", what, where, m ? m : "?");
    qs_kll_free(again);
    free(b.p);
}

static void test_serde_truncation(void)
{
    bytes_t good = small_estimation_bytes();
    qs_status st;
    const char *msg;
    qs_kll *d = deser(good.p, good.len, &st, &msg);
    CHECK(d != NULL);
    qs_kll_free(d);
    size_t bad = 0;
    for (size_t len = 0; len < good.len; len++) {
        d = deser(good.p, len, &st, &msg);
        if (d != NULL || msg == NULL || st == QS_OK) {
            bad++;
            CHECKF(0, "truncated to %zu of %zu bytes: sketch %p, status %s, message %s", len, good.len, (void *)d,
                   status_name(st), msg ? msg : "NULL");
            qs_kll_free(d);
        }
    }
    CHECK(bad == 0);
    /* also a few larger sketches, every truncation */
    for (int kind = 0; kind < 2; kind++) {
        qs_kll *sk = new_sketch(kind ? 200 : 16, 3);
        REQUIRE(sk);
        rng_t r = {61};
        for (int i = 0; i < (kind ? 20000 : 0); i++) (void)qs_kll_update(sk, runit(&r), 0);
        bytes_t b = ser(sk);
        for (size_t len = 0; len < b.len; len++) {
            d = deser(b.p, len, &st, &msg);
            CHECK(d == NULL && msg != NULL && st != QS_OK);
            qs_kll_free(d);
        }
        free(b.p);
        qs_kll_free(sk);
    }
    free(good.p);
}

static void test_serde_bitflips(void)
{
    bytes_t good = small_estimation_bytes();
    uint8_t *p = xmalloc(good.len);
    size_t rejected = 0, accepted = 0;
    qs_status st;
    const char *msg;
    /* raw flips: the CRC (or an earlier length/magic/version check) catches them */
    for (size_t bit = 0; bit < good.len * 8; bit++) {
        memcpy(p, good.p, good.len);
        p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        qs_kll *d = deser(p, good.len, &st, &msg);
        if (d) {
            accepted++;
            exercise_decoded(d, "raw bit flip", bit);
            qs_kll_free(d);
        } else {
            rejected++;
            CHECKF(msg != NULL && st != QS_OK, "bit %zu: NULL without a message or status", bit);
        }
    }
    info("raw bit flips of a %zu-byte sketch: %zu rejected, %zu accepted", good.len, rejected, accepted);
    /* flips with the CRC recomputed: exercises the field checks behind it */
    size_t by_reason[8] = {0};
    rejected = accepted = 0;
    for (size_t bit = 0; bit < (good.len - 4) * 8; bit++) {
        memcpy(p, good.p, good.len);
        p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        put_crc(p, good.len);
        qs_kll *d = deser(p, good.len, &st, &msg);
        if (d) {
            accepted++;
            exercise_decoded(d, "bit flip with valid CRC", bit);
            qs_kll_free(d);
        } else {
            rejected++;
            by_reason[st & 7]++;
            CHECKF(msg != NULL && st != QS_OK, "bit %zu (CRC fixed): NULL without a message or status", bit);
        }
    }
    info("bit flips with valid CRC: %zu rejected (%zu format, %zu version), %zu accepted and usable", rejected,
         by_reason[QS_EFORMAT], by_reason[QS_EVERSION], accepted);
    /* random multi-byte garbage with a valid CRC */
    rng_t r = {62};
    for (int t = 0; t < 20000; t++) {
        memcpy(p, good.p, good.len);
        const int nb = 1 + (int)rbelow(&r, 4);
        for (int j = 0; j < nb; j++) {
            const size_t at = 4 + (size_t)rbelow(&r, good.len - 8);
            p[at] = (uint8_t)rnext(&r);
        }
        put_crc(p, good.len);
        qs_kll *d = deser(p, good.len, &st, &msg);
        if (d) {
            exercise_decoded(d, "random bytes with valid CRC", (size_t)t);
            qs_kll_free(d);
        } else {
            CHECK(msg != NULL && st != QS_OK);
        }
    }
    free(p);
    free(good.p);
}

static void test_serde_bad_headers(void)
{
    bytes_t good = small_estimation_bytes();
    const size_t L = good.len;
    uint8_t *p = xmalloc(L + 16);
    qs_status st;
    const char *msg;
    qs_kll *d;

#define EXPECT_REJECT(len, want)                                                                       \
    do {                                                                                               \
        d = deser(p, (len), &st, &msg);                                                                \
        CHECKF(d == NULL && st == (want) && msg != NULL, "got sketch %p, status %s (want %s), msg %s", \
               (void *)d, status_name(st), status_name(want), msg ? msg : "NULL");                    \
        qs_kll_free(d);                                                                                \
    } while (0)

    /* bad magic */
    memcpy(p, good.p, L);
    p[0] = 'X';
    EXPECT_REJECT(L, QS_EFORMAT);
    memcpy(p, good.p, L);
    p[2] = 'L';
    put_crc(p, L);
    EXPECT_REJECT(L, QS_EFORMAT);
    /* bad version (0, the next one, 255), with and without a fixed CRC */
    const uint8_t versions[3] = {0, (uint8_t)(good.p[3] + 1), 255};
    for (int i = 0; i < 3; i++) {
        memcpy(p, good.p, L);
        p[3] = versions[i];
        EXPECT_REJECT(L, QS_EVERSION);
        put_crc(p, L);
        EXPECT_REJECT(L, QS_EVERSION);
        EXPECT_REJECT(10, QS_EVERSION); /* even when truncated: the version comes first */
    }
    /* trailing bytes */
    memcpy(p, good.p, L);
    p[L] = 0;
    EXPECT_REJECT(L + 1, QS_EFORMAT);
    memcpy(p + L, good.p, 8);
    EXPECT_REJECT(L + 8, QS_EFORMAT);
    /* checksum */
    memcpy(p, good.p, L);
    p[L - 1] ^= 0x80;
    EXPECT_REJECT(L, QS_ECHECKSUM);

    /* field checks behind a valid CRC */
    struct {
        size_t off;
        uint8_t val;
        qs_status want;
    } cases[] = {
        {4, 2, QS_EFORMAT},    /* sketch type */
        {5, 0x04, QS_EFORMAT}, /* unknown flag */
        {5, 0x80, QS_EFORMAT},
        {6, 7, QS_EFORMAT}, /* k = 7 */
        {8, 0, QS_EFORMAT}, /* m below 2 or above 8 */
        {8, 1, QS_EFORMAT},
        {8, 9, QS_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(p, good.p, L);
        p[cases[i].off] = cases[i].val;
        if (cases[i].off == 6) p[7] = 0;
        put_crc(p, L);
        EXPECT_REJECT(L, cases[i].want);
    }
    /* m: any of 2..8 from format 4 (a larger m only enlarges the capacities:
     * still a valid sketch), only 8 before (m = 2 bytes relabelled format 3) */
    for (uint8_t m = 2; m <= 8; m += 2) {
        memcpy(p, good.p, L);
        p[8] = m;
        put_crc(p, L);
        d = deser(p, L, &st, &msg);
        CHECKF(d != NULL, "m = %u rejected: %s", (unsigned)m, msg ? msg : "?");
        if (d) CHECK_INV(d);
        qs_kll_free(d);
    }
    memcpy(p, good.p, L);
    CHECK(good.p[3] == 4 && good.p[8] == 2);
    p[3] = 3;
    put_crc(p, L);
    EXPECT_REJECT(L, QS_EFORMAT);
    /* byte 11: reserved (0) in format 1; in format 2 the highest compacted
     * level, at most L and non-zero exactly when the estimation flag is set */
    memcpy(p, good.p, L);
    if (good.p[3] == 1) {
        p[11] = 1;
        put_crc(p, L);
        EXPECT_REJECT(L, QS_EFORMAT);
    } else {
        CHECK(good.p[5] & 2u); /* an estimation-mode sketch */
        p[11] = (uint8_t)(good.p[9] + 1);
        put_crc(p, L);
        EXPECT_REJECT(L, QS_EFORMAT);
        p[11] = 0;
        put_crc(p, L);
        EXPECT_REJECT(L, QS_EFORMAT);
        memcpy(p, good.p, L);
        p[5] &= (uint8_t)~2u; /* estimation flag off, level still set */
        put_crc(p, L);
        EXPECT_REJECT(L, QS_EFORMAT);
    }
    /* num_levels 0 and 65 */
    memcpy(p, good.p, L);
    p[9] = 0;
    put_crc(p, L);
    EXPECT_REJECT(L, QS_EFORMAT);
    p[9] = 65;
    put_crc(p, L);
    EXPECT_REJECT(L, QS_EFORMAT);
    /* level sizes not adding up to R: move one item between the length words */
    memcpy(p, good.p, L);
    p[56] ^= 1;
    put_crc(p, L);
    EXPECT_REJECT(L, QS_EFORMAT);
    /* n off by one (weights no longer add up) */
    memcpy(p, good.p, L);
    p[16] ^= 1;
    put_crc(p, L);
    EXPECT_REJECT(L, QS_EFORMAT);
    /* min above the smallest item, max below the largest, min NaN */
    const double bad_vals[3] = {4.99, -4.99, NAN};
    const size_t bad_offs[3] = {32, 40, 32};
    for (int i = 0; i < 3; i++) {
        memcpy(p, good.p, L);
        const uint64_t u = dbits(bad_vals[i]);
        for (int j = 0; j < 8; j++) p[bad_offs[i] + (size_t)j] = (uint8_t)(u >> (8 * j));
        put_crc(p, L);
        EXPECT_REJECT(L, QS_EFORMAT);
    }
    /* a NaN item */
    const size_t nlev = good.p[9];
    const size_t items_at = 56 + 4 * nlev;
    memcpy(p, good.p, L);
    const uint64_t nanbits = dbits(NAN);
    for (int j = 0; j < 8; j++) p[items_at + (size_t)j] = (uint8_t)(nanbits >> (8 * j));
    put_crc(p, L);
    EXPECT_REJECT(L, QS_EFORMAT);
    /* an unsorted level above 0: swap the first two (distinct) items of one */
    size_t at = items_at, swapped = 0;
    for (size_t h = 0; h < nlev; h++) {
        const size_t sz = (size_t)good.p[56 + 4 * h] | ((size_t)good.p[57 + 4 * h] << 8);
        if (h > 0 && sz >= 2 && memcmp(good.p + at, good.p + at + 8, 8) != 0) {
            memcpy(p, good.p, L);
            memcpy(p + at, good.p + at + 8, 8);
            memcpy(p + at + 8, good.p + at, 8);
            put_crc(p, L);
            EXPECT_REJECT(L, QS_EFORMAT);
            swapped++;
        }
        at += 8 * sz;
    }
    CHECK(swapped > 0);
    if (good.p[3] >= 2) { /* format 2: exact-table limit, size T, 16 T bytes */
        const size_t T = (size_t)good.p[at + 4] | ((size_t)good.p[at + 5] << 8);
        /* format 3: then the bucket section, 4 bytes without a layer */
        const size_t bk = good.p[3] >= 3 ? 4 : 0;
        CHECK(at + 8 + 16 * T + bk + 4 == L);
    } else {
        CHECK(at + 4 == L);
    }
    /* an empty sketch claiming a min */
    qs_kll *e = new_sketch(200, 1);
    REQUIRE(e);
    bytes_t eb = ser(e);
    const uint64_t one = dbits(1.0);
    for (int j = 0; j < 8; j++) eb.p[32 + (size_t)j] = (uint8_t)(one >> (8 * j));
    put_crc(eb.p, eb.len);
    d = deser(eb.p, eb.len, &st, &msg);
    CHECK(d == NULL && st == QS_EFORMAT && msg != NULL);
    qs_kll_free(d);
    free(eb.p);
    qs_kll_free(e);
    /* a huge announced item count does not allocate or read past the end */
    memcpy(p, good.p, L);
    p[12] = p[13] = p[14] = p[15] = 0xFF;
    put_crc(p, L);
    EXPECT_REJECT(L, QS_EFORMAT);
#undef EXPECT_REJECT
    free(p);
    free(good.p);
}

/* qs_crc32 (slice-by-8) against a bitwise reference: every length 0..300,
 * unaligned starts, and the standard check values. */
static uint32_t crc32_bitwise(const uint8_t *p, size_t len)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        c ^= p[i];
        for (int b = 0; b < 8; b++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static void test_crc32(void)
{
    CHECK(qs_crc32((const uint8_t *)"", 0) == 0u);
    CHECK(qs_crc32((const uint8_t *)"a", 1) == 0xE8B7BE43u);
    CHECK(qs_crc32((const uint8_t *)"123456789", 9) == 0xCBF43926u);
    CHECK(qs_crc32((const uint8_t *)"The quick brown fox jumps over the lazy dog", 43) == 0x414FA339u);
    rng_t r = {95};
    enum { CAP = 320 };
    uint8_t *buf = xmalloc(CAP + 8);
    size_t bad = 0;
    for (int rep = 0; rep < 6; rep++)
        for (size_t len = 0; len <= 300; len++) {
            const size_t off = (size_t)rbelow(&r, 8);
            uint8_t *p = xmalloc(len + off); /* exact size: ASan sees any over-read */
            for (size_t i = 0; i < len + off; i++) p[i] = (uint8_t)(rep == 0 ? 0xFF : rep == 1 ? 0 : rnext(&r));
            bad += qs_crc32(p + off, len) != crc32_bitwise(p + off, len);
            free(p);
        }
    CHECKF(bad == 0, "%zu CRC-32 mismatches against the bitwise reference", bad);
    /* every byte value in every slice position */
    for (size_t pos = 0; pos < 16; pos++)
        for (int v = 0; v < 256; v++) {
            memset(buf, 0xA5, 16);
            buf[pos] = (uint8_t)v;
            if (qs_crc32(buf, 16) != crc32_bitwise(buf, 16)) bad++;
        }
    CHECKF(bad == 0, "%zu CRC-32 mismatches for single-byte patterns", bad);
    free(buf);
}

/* ======================================================================== */
/* 12. Extremes                                                             */
/* ======================================================================== */

static void test_extreme_k(void)
{
    rng_t r = {70};
    double *x = xmalloc(BIG_N * sizeof(double));
    fill_uniform(x, BIG_N, &r);
    exact_t e;
    exact_build(&e, x, NULL, BIG_N);
    const uint32_t ks[2] = {QS_KLL_MIN_K, QS_KLL_MAX_K};
    for (int i = 0; i < 2; i++) {
        char label[64];
        qs_kll *sk = new_sketch(ks[i], 3);
        REQUIRE(sk);
        for (size_t j = 0; j < BIG_N; j++) {
            CHECK_ST(qs_kll_update(sk, x[j], 0), QS_OK);
            if (j < 5000 && !INV_OK(sk, "extreme k per item", j)) break;
        }
        CHECK_INV(sk);
        CHECK(qs_kll_is_estimation_mode(sk));
        snprintf(label, sizeof label, "per item, k=%u", (unsigned)ks[i]);
        check_n_min_max(sk, &e, label);
        double err = check_accuracy(sk, &e, bound_for(ks[i]), label, &r);
        info("%s, n=1e6: max rank error %.5f (bound %.5f), %u levels, %u retained", label, err, bound_for(ks[i]),
             qs_kll_num_levels(sk), qs_kll_num_retained(sk));
        qs_kll_free(sk);

        sk = new_sketch(ks[i], 4);
        REQUIRE(sk);
        CHECK_ST(qs_kll_update_batch(sk, x, BIG_N, 0), QS_OK);
        CHECK_INV(sk);
        snprintf(label, sizeof label, "one batch, k=%u", (unsigned)ks[i]);
        check_n_min_max(sk, &e, label);
        err = check_accuracy(sk, &e, bound_for(ks[i]), label, &r);
        info("%s, n=1e6: max rank error %.5f", label, err);
        qs_kll_free(sk);
    }
    exact_free(&e);

    /* k = 65535 is exact up to 65535 items */
    qs_kll *sk = new_sketch(QS_KLL_MAX_K, 5);
    REQUIRE(sk);
    CHECK_ST(qs_kll_update_batch(sk, x, 65535, 0), QS_OK);
    exact_build(&e, x, NULL, 65535);
    check_exact(sk, &e, "k = 65535, n = 65535", &r);
    exact_free(&e);
    qs_kll_free(sk);
    free(x);
}

static void test_extreme_values(void)
{
    rng_t r = {71};
    const double tiny = nextafter(0.0, 1.0);
    const double special[] = {DBL_MAX, -DBL_MAX, INFINITY, -INFINITY, tiny, -tiny, DBL_MIN, -DBL_MIN,
                              nextafter(DBL_MIN, 0.0), -nextafter(DBL_MIN, 0.0), 0.0, -0.0, 1.0, -1.0,
                              DBL_MAX, INFINITY, tiny, 3 * tiny};
    const size_t S = sizeof special / sizeof special[0];
    exact_t e;
    exact_build(&e, special, NULL, S);
    qs_kll *sk = new_sketch(8, 1); /* k = 8: 18 items compact, so also check the batch of 8 */
    REQUIRE(sk);
    CHECK_ST(qs_kll_update_batch(sk, special, 8, 1), QS_OK);
    exact_t e8;
    exact_build(&e8, special, NULL, 8);
    check_exact(sk, &e8, "8 extreme values, k=8", &r);
    exact_free(&e8);
    qs_kll_free(sk);
    for (int path = 0; path < 3; path++) {
        sk = new_sketch(200, 2);
        REQUIRE(sk);
        if (path == 0) {
            for (size_t i = 0; i < S; i++) CHECK_ST(qs_kll_update(sk, special[i], 1), QS_OK);
        } else if (path == 1) {
            CHECK_ST(qs_kll_update_batch(sk, special, S, 1), QS_OK);
        } else {
            uint64_t w[sizeof special / sizeof special[0]];
            for (size_t i = 0; i < S; i++) w[i] = 1;
            CHECK_ST(qs_kll_update_weighted(sk, special, w, S, 1), QS_OK);
        }
        CHECK_INV(sk);
        CHECK(qs_kll_min(sk) == -INFINITY && qs_kll_max(sk) == INFINITY);
        check_exact(sk, &e, "extreme values", &r);
        qs_kll_free(sk);
    }
    exact_free(&e);

    /* extreme values in an estimation-mode stream: min/max stay exact */
    const size_t N = 300000;
    double *x = xmalloc(N * sizeof(double));
    for (size_t i = 0; i < N; i++) {
        const uint64_t u = rnext(&r);
        x[i] = (u & 1023) == 0 ? special[(u >> 10) % S] : ((u & 1) ? tiny * (double)(u >> 40) : runit(&r) - 0.5);
    }
    x[N / 3] = -INFINITY;
    x[N / 2] = INFINITY;
    exact_build(&e, x, NULL, N);
    for (int path = 0; path < 2; path++) {
        sk = new_sketch(200, 3);
        REQUIRE(sk);
        if (path) CHECK_ST(qs_kll_update_batch(sk, x, N, 1), QS_OK);
        else
            for (size_t i = 0; i < N; i++) CHECK_ST(qs_kll_update(sk, x[i], 1), QS_OK);
        CHECK_INV(sk);
        check_n_min_max(sk, &e, "extremes in a stream");
        check_accuracy(sk, &e, bound_for(200), path ? "extremes, batch" : "extremes, per item", &r);
        double out[2];
        const double p[2] = {0.0, 1.0};
        CHECK_ST(qs_kll_quantile(sk, p, 2, 1, out), QS_OK);
        CHECK(out[0] == -INFINITY && out[1] == INFINITY);
        /* (the few infinite items themselves may be compacted away) */
        const double q[2] = {-INFINITY, INFINITY};
        CHECK_ST(qs_kll_rank(sk, q, 2, 0, out), QS_OK);
        CHECK(out[0] == 0.0);
        CHECK_ST(qs_kll_rank(sk, q, 2, 1, out), QS_OK);
        CHECK(out[1] == 1.0);
        qs_kll_free(sk);
    }
    exact_free(&e);
    free(x);
}

static void test_all_equal_stream(void)
{
    const double vals[3] = {0.1, -0.0, 5e-324};
    double *x = xmalloc(BIG_N * sizeof(double));
    for (int vi = 0; vi < 3; vi++) {
        const double v = vals[vi];
        for (size_t i = 0; i < BIG_N; i++) x[i] = v;
        for (int path = 0; path < 3; path++) {
            qs_kll *sk = new_sketch(path == 2 ? 8 : 200, 1);
            REQUIRE(sk);
            if (path == 1) CHECK_ST(qs_kll_update_batch(sk, x, BIG_N, 1), QS_OK);
            else
                for (size_t i = 0; i < BIG_N; i++) CHECK_ST(qs_kll_update(sk, v, 1), QS_OK);
            CHECK_INV(sk);
            CHECK(qs_kll_n(sk) == BIG_N);
            CHECK(qs_kll_min(sk) == v && qs_kll_max(sk) == v);
            CHECK(qs_kll_is_estimation_mode(sk));
            double p[101], out[101];
            for (int i = 0; i <= 100; i++) p[i] = i / 100.0;
            for (int inc = 0; inc <= 1; inc++) {
                CHECK_ST(qs_kll_quantile(sk, p, 101, inc, out), QS_OK);
                size_t bad = 0;
                for (int i = 0; i <= 100; i++) bad += out[i] != v;
                CHECKF(bad == 0, "all-equal %g path %d: %zu quantiles differ", v, path, bad);
            }
            const double q[3] = {nextafter(v, -INFINITY), v, nextafter(v, INFINITY)};
            CHECK_ST(qs_kll_rank(sk, q, 3, 1, out), QS_OK);
            CHECKF(out[0] == 0.0 && out[1] == 1.0 && out[2] == 1.0, "all-equal %g path %d incl: %g %g %g", v, path,
                   out[0], out[1], out[2]);
            CHECK_ST(qs_kll_rank(sk, q, 3, 0, out), QS_OK);
            CHECKF(out[0] == 0.0 && out[1] == 0.0 && out[2] == 1.0, "all-equal %g path %d excl: %g %g %g", v, path,
                   out[0], out[1], out[2]);
            qs_kll_free(sk);
        }
    }
    free(x);
}

/* ======================================================================== */
/* Sorted view, levels and the query cache                                  */
/* ======================================================================== */

static void check_view_and_levels(qs_kll *sk, const char *label)
{
    const double *vi;
    const uint64_t *vc;
    uint32_t vs;
    CHECK_ST(qs_kll_sorted_view(sk, &vi, &vc, &vs), QS_OK);
    CHECKF(vs == qs_kll_num_retained(sk), "%s: view size %u, retained %u", label, vs, qs_kll_num_retained(sk));
    size_t bad = 0;
    for (uint32_t i = 1; i < vs; i++) bad += !(vi[i - 1] <= vi[i]) || !(vc[i - 1] < vc[i]);
    CHECKF(bad == 0, "%s: sorted view not ascending (%zu)", label, bad);
    if (vs) CHECKF(vc[vs - 1] == qs_kll_n(sk), "%s: view total %llu, n %llu", label,
                   (unsigned long long)vc[vs - 1], (unsigned long long)qs_kll_n(sk));
    uint64_t total = 0, retained = 0;
    for (uint32_t h = 0; h < qs_kll_num_levels(sk); h++) {
        const double *li;
        uint32_t ls;
        CHECK_ST(qs_kll_level(sk, h, &li, &ls), QS_OK);
        total += (uint64_t)ls << h;
        retained += ls;
        if (h > 0)
            for (uint32_t i = 1; i < ls; i++) bad += li[i - 1] > li[i];
    }
    CHECKF(bad == 0, "%s: a level above 0 is not sorted", label);
#ifdef QS_KLL_MAX_EXACT_LIMIT
    if (qs_kll_exact_limit(sk) > 0) { /* table mode: the compactors are empty */
        CHECK(total == 0 && retained == 0);
    } else
#endif
    {
        CHECK(total == qs_kll_n(sk));
        CHECK(retained == qs_kll_num_retained(sk));
    }
    const double *li;
    uint32_t ls;
    CHECK_ST(qs_kll_level(sk, qs_kll_num_levels(sk), &li, &ls), QS_EINVAL);
}

static void test_view_and_cache(void)
{
    rng_t r = {80};
    const size_t N = 100000;
    double *x = xmalloc(N * sizeof(double));
    fill_uniform(x, N, &r);
    qs_kll *sk = new_sketch(200, 1), *other = new_sketch(100, 2);
    REQUIRE(sk && other);
    CHECK_ST(qs_kll_update_batch(other, x, 5000, 0), QS_OK);
    enum { NQ = 64 };
    double q[NQ], o1[NQ], o2[NQ];
    for (int i = 0; i < NQ; i++) q[i] = runit(&r);
    size_t i = 0;
    for (int step = 0; step < 60; step++) {
        /* a mutation of some kind ... */
        switch (step % 6) {
        case 0: CHECK_ST(qs_kll_update(sk, x[i++ % N], 0), QS_OK); break;
        case 1: CHECK_ST(qs_kll_update_batch(sk, x + (i % N) / 2, 3000, 0), QS_OK); i += 3000; break;
        case 2: {
            const uint64_t w[3] = {3, 1000, 1};
            CHECK_ST(qs_kll_update_weighted(sk, x + (i % N) / 2, w, 3, 0), QS_OK);
            i += 3;
            break;
        }
        case 3: CHECK_ST(qs_kll_merge(sk, other), QS_OK); break;
        case 4: for (int j = 0; j < 500; j++) CHECK_ST(qs_kll_update(sk, x[i++ % N], 0), QS_OK); break;
        case 5: CHECK_ST(qs_kll_update_batch(sk, x, 20000, 0), QS_OK); break;
        }
        /* ... then the cached answers must equal a fresh copy's */
        qs_kll *fresh = copy_sketch(sk);
        REQUIRE(fresh);
        for (int inc = 0; inc <= 1; inc++) {
            CHECK_ST(qs_kll_rank(sk, q, NQ, inc, o1), QS_OK);
            CHECK_ST(qs_kll_rank(fresh, q, NQ, inc, o2), QS_OK);
            size_t bad = 0;
            for (int j = 0; j < NQ; j++) bad += o1[j] != o2[j];
            CHECKF(bad == 0, "step %d (mutation %d): stale cached ranks", step, step % 6);
            CHECK_ST(qs_kll_quantile(sk, q, NQ, inc, o1), QS_OK);
            CHECK_ST(qs_kll_quantile(fresh, q, NQ, inc, o2), QS_OK);
            bad = 0;
            for (int j = 0; j < NQ; j++) bad += o1[j] != o2[j];
            CHECKF(bad == 0, "step %d (mutation %d): stale cached quantiles", step, step % 6);
        }
        qs_kll_free(fresh);
        check_view_and_levels(sk, "view/cache");
        CHECK_INV(sk);
    }
    CHECK(qs_kll_k(sk) == 100);
    qs_kll_free(sk);
    qs_kll_free(other);
    free(x);
}

/* ======================================================================== */
/* Exact low-cardinality table and interpolating estimators (when present)  */
/* ======================================================================== */

#ifdef QS_KLL_MAX_EXACT_LIMIT

/* A stream over `distinct` values (with -0.0 and +0.0 counted as one). */
static void fill_low_cardinality(double *x, size_t n, uint32_t distinct, rng_t *r)
{
    for (size_t i = 0; i < n; i++) {
        const uint64_t v = rbelow(r, distinct);
        x[i] = v == 0 ? ((i & 1) ? -0.0 : 0.0) : (double)v * 0.5 - 37.25; /* never 0 */
    }
}

static void test_table_basics(void)
{
    rng_t r = {100};
    CHECK(qs_kll_default_exact_limit(200) == 300);
    CHECK(qs_kll_default_exact_limit(8) == 256);
    CHECK(qs_kll_default_exact_limit(QS_KLL_MAX_K) == (3u * QS_KLL_MAX_K + 1u) / 2u);
    qs_kll *sk = new_default_sketch(200, 1);
    REQUIRE(sk);
    CHECK(qs_kll_exact_limit(sk) == 300);
    CHECK_ST(qs_kll_set_exact_limit(sk, QS_KLL_MAX_EXACT_LIMIT + 1), QS_EINVAL);
    CHECK_ST(qs_kll_set_exact_limit(sk, QS_KLL_MAX_EXACT_LIMIT), QS_OK);
    CHECK_ST(qs_kll_set_exact_limit(sk, 300), QS_OK);
    CHECK(qs_kll_exact_limit(sk) == 300);
    /* empty in table mode */
    const double q = 1.0;
    double out = 0.0;
    CHECK_ST(qs_kll_rank(sk, &q, 1, 1, &out), QS_OK);
    CHECK(isnan(out));
    CHECK_INV(sk);

    /* 1e6 items over 300 distinct values, per item, in batches and weighted: all exact */
    const size_t N = 1000000;
    double *x = xmalloc(N * sizeof(double));
    fill_low_cardinality(x, N, 300, &r);
    exact_t e;
    exact_build(&e, x, NULL, N);
    CHECK(e.len == 300);
    for (size_t i = 0; i < 100000; i++) CHECK_ST(qs_kll_update(sk, x[i], 1), QS_OK);
    size_t at = 100000;
    while (at < N) {
        size_t len = 1 + (size_t)rbelow(&r, 100000);
        if (len > N - at) len = N - at;
        CHECK_ST(qs_kll_update_batch(sk, x + at, len, 1), QS_OK);
        at += len;
        if (!INV_OK(sk, "table batches", at)) break;
    }
    CHECK(qs_kll_exact_limit(sk) == 300);
    CHECK(qs_kll_num_retained(sk) == 300);
    CHECK(qs_kll_is_estimation_mode(sk) == 0);
    check_exact(sk, &e, "table mode, 1e6 items, 300 values", &r);
    check_view_and_levels(sk, "table mode");
    CHECK_ST(qs_kll_set_exact_limit(sk, 10), QS_EINVAL); /* not empty any more */

    /* one more distinct value: the table moves into the compactors, exactly */
    bytes_t before = ser(sk);
    CHECK_ST(qs_kll_update(sk, 1e9, 1), QS_OK);
    CHECK(qs_kll_exact_limit(sk) == 0);
    CHECK(qs_kll_n(sk) == N + 1);
    CHECK(qs_kll_max(sk) == 1e9);
    CHECK_INV(sk);
    exact_free(&e);
    {
        double *z = xmalloc((N + 1) * sizeof(double));
        memcpy(z, x, N * sizeof(double));
        z[N] = 1e9;
        exact_build(&e, z, NULL, N + 1);
        free(z);
    }
    if (qs_kll_is_estimation_mode(sk) == 0) check_exact(sk, &e, "table flushed into the compactors", &r);
    else check_accuracy(sk, &e, bound_for(200), "table flushed into the compactors", &r);
    /* and it keeps working as a sketch */
    CHECK_ST(qs_kll_update_batch(sk, x, N, 0), QS_OK);
    CHECK_INV(sk);
    free(before.p);
    exact_free(&e);
    qs_kll_free(sk);

    /* NaN counted first: the limit can no longer be changed */
    sk = new_default_sketch(50, 2);
    REQUIRE(sk);
    CHECK_ST(qs_kll_update(sk, NAN, 0), QS_OK);
    CHECK_ST(qs_kll_set_exact_limit(sk, 0), QS_EINVAL);
    CHECK_ST(qs_kll_update(sk, NAN, 1), QS_ENAN);
    const double xb[3] = {1.0, NAN, 2.0};
    CHECK_ST(qs_kll_update_batch(sk, xb, 3, 1), QS_ENAN);
    CHECK(qs_kll_n(sk) == 0 && qs_kll_nan_count(sk) == 1);
    CHECK_ST(qs_kll_update_batch(sk, xb, 3, 0), QS_OK);
    CHECK(qs_kll_n(sk) == 2 && qs_kll_nan_count(sk) == 2);
    CHECK_INV(sk);
    qs_kll_free(sk);

    /* all-equal stream of 1e6 in the default mode: exact */
    sk = new_default_sketch(200, 3);
    REQUIRE(sk);
    for (size_t i = 0; i < N; i++) x[i] = 0.1;
    CHECK_ST(qs_kll_update_batch(sk, x, N, 1), QS_OK);
    CHECK(qs_kll_num_retained(sk) == 1 && qs_kll_n(sk) == N);
    const double qq[3] = {nextafter(0.1, 0.0), 0.1, 0.2};
    double oo[3];
    CHECK_ST(qs_kll_rank(sk, qq, 3, 1, oo), QS_OK);
    CHECK(oo[0] == 0.0 && oo[1] == 1.0 && oo[2] == 1.0);
    CHECK_ST(qs_kll_rank(sk, qq, 3, 0, oo), QS_OK);
    CHECK(oo[0] == 0.0 && oo[1] == 0.0 && oo[2] == 1.0);
    qs_kll_free(sk);
    free(x);
}

static void test_table_weighted(void)
{
    rng_t r = {101};
    const uint64_t P40 = UINT64_C(1) << 40;
    const double x[6] = {3.0, -1.0, 3.0, 0.0, -0.0, 2.5};
    const uint64_t w[6] = {P40, 7, P40 - 1, UINT64_C(0xFF00FF00FF), 1, 12345};
    exact_t e;
    exact_build(&e, x, w, 6);
    qs_kll *sk = new_default_sketch(200, 1);
    REQUIRE(sk);
    CHECK_ST(qs_kll_update_weighted(sk, x, w, 6, 1), QS_OK);
    CHECK(qs_kll_exact_limit(sk) > 0);
    CHECK(qs_kll_num_retained(sk) == 4); /* -0.0 and 0.0 are one value */
    CHECK_INV(sk);
    check_exact(sk, &e, "table, weighted", &r);
    /* weight 0, overflow: rejected, unchanged */
    bytes_t before = ser(sk);
    const uint64_t w0[1] = {0}, wmax[1] = {UINT64_MAX};
    CHECK_ST(qs_kll_update_weighted(sk, x, w0, 1, 0), QS_EINVAL);
    CHECK_ST(qs_kll_update_weighted(sk, x, wmax, 1, 0), QS_EOVERFLOW);
    CHECK(unchanged_since(sk, before));
    free(before.p);
    /* the flush of huge weights into the compactors stays exact */
    CHECK_ST(qs_kll_set_exact_limit(sk, 1), QS_EINVAL);
    qs_kll *small = new_default_sketch(200, 2);
    REQUIRE(small);
    CHECK_ST(qs_kll_set_exact_limit(small, 3), QS_OK);
    CHECK_ST(qs_kll_update_weighted(small, x, w, 6, 1), QS_OK); /* 4 distinct > 3: flushed */
    CHECK(qs_kll_exact_limit(small) == 0);
    CHECK(qs_kll_n(small) == e.n);
    CHECK_INV(small);
    if (!qs_kll_is_estimation_mode(small)) check_exact(small, &e, "table flushed with huge weights", &r);
    qs_kll_free(small);
    exact_free(&e);
    qs_kll_free(sk);
}

static void test_table_merge_copy_serde(void)
{
    rng_t r = {102};
    const size_t N = 20000;
    double *x = xmalloc(2 * N * sizeof(double));
    fill_low_cardinality(x, 2 * N, 250, &r);
    exact_t e;
    exact_build(&e, x, NULL, 2 * N);

    /* copy: identical bytes, independent afterwards, freed separately */
    qs_kll *a = new_default_sketch(200, 1);
    REQUIRE(a);
    CHECK_ST(qs_kll_update_batch(a, x, N, 0), QS_OK);
    qs_kll *c = copy_sketch(a);
    REQUIRE(c);
    CHECK(same_state(a, c));
    bytes_t ba = ser(a);
    CHECK_ST(qs_kll_update_batch(c, x + N, N, 0), QS_OK);
    CHECK(unchanged_since(a, ba));
    free(ba.p);
    qs_kll_free(c);
    CHECK_INV(a);

    /* table + table */
    qs_kll *b = new_default_sketch(200, 2);
    REQUIRE(b);
    CHECK_ST(qs_kll_update_batch(b, x + N, N, 0), QS_OK);
    qs_kll *ab = copy_sketch(a);
    REQUIRE(ab);
    bytes_t bb = ser(b);
    CHECK_ST(qs_kll_merge(ab, b), QS_OK);
    CHECK(unchanged_since(b, bb));
    free(bb.p);
    CHECK_INV(ab);
    check_exact(ab, &e, "table + table merge", &r);

    /* table into compactors, compactors into table */
    for (int dir = 0; dir < 2; dir++) {
        qs_kll *t = new_default_sketch(200, 3), *k = new_sketch(200, 4);
        REQUIRE(t && k);
        CHECK_ST(qs_kll_update_batch(dir ? k : t, x, N, 0), QS_OK);
        CHECK_ST(qs_kll_update_batch(dir ? t : k, x + N, N, 0), QS_OK);
        CHECK_ST(qs_kll_merge(dir ? t : k, dir ? k : t), QS_OK);
        qs_kll *m = dir ? t : k;
        CHECK_INV(m);
        check_n_min_max(m, &e, dir ? "compactors into table" : "table into compactors");
        check_accuracy(m, &e, bound_for(200), dir ? "compactors into table" : "table into compactors", &r);
        qs_kll_free(t);
        qs_kll_free(k);
    }

    /* self merge of a table */
    qs_kll *d = copy_sketch(a);
    REQUIRE(d);
    CHECK_ST(qs_kll_merge(d, d), QS_OK);
    CHECK(qs_kll_n(d) == 2 * N);
    CHECK_INV(d);
    qs_kll_free(d);

    /* a source with a smaller limit whose values the destination already
     * holds: the destination must stay consistent (and serializable) */
    qs_kll *big = new_default_sketch(200, 5), *lim = new_default_sketch(200, 6);
    REQUIRE(big && lim);
    for (int i = 0; i < 250; i++) CHECK_ST(qs_kll_update(big, (double)i, 0), QS_OK);
    CHECK_ST(qs_kll_set_exact_limit(lim, 16), QS_OK);
    CHECK_ST(qs_kll_update(lim, 5.0, 0), QS_OK);
    CHECK_ST(qs_kll_merge(big, lim), QS_OK);
    CHECK(qs_kll_n(big) == 251);
    CHECK_INV(big);
    {
        bytes_t bs = ser(big);
        qs_status st;
        const char *msg;
        qs_kll *dec = deser(bs.p, bs.len, &st, &msg);
        CHECKF(dec != NULL, "a merged table sketch does not decode: %s (%s)", status_name(st), msg ? msg : "?");
        qs_kll_free(dec);
        free(bs.p);
    }
    qs_kll_free(big);
    qs_kll_free(lim);

    /* serde round trips in table mode */
    roundtrip(a, "table mode", &r);
    roundtrip(ab, "table mode after a merge", &r);
    qs_kll_free(a);
    qs_kll_free(b);
    qs_kll_free(ab);
    exact_free(&e);
    free(x);
}

/* Corrupt table-mode bytes: every truncation, every bit flip (raw and with a
 * valid CRC) must give NULL with a message, or a sketch passing its checks. */
static void test_table_serde_corruption(void)
{
    qs_kll *sk = new_default_sketch(8, 5);
    REQUIRE(sk);
    rng_t r = {103};
    for (int i = 0; i < 300; i++) CHECK_ST(qs_kll_update(sk, (double)rbelow(&r, 20), 0), QS_OK);
    CHECK(qs_kll_exact_limit(sk) > 0);
    bytes_t good = ser(sk);
    qs_kll_free(sk);
    qs_status st;
    const char *msg;
    for (size_t len = 0; len < good.len; len++) {
        qs_kll *d = deser(good.p, len, &st, &msg);
        CHECKF(d == NULL && msg != NULL && st != QS_OK, "table bytes truncated to %zu: accepted", len);
        qs_kll_free(d);
    }
    uint8_t *p = xmalloc(good.len);
    size_t accepted = 0;
    for (int fixcrc = 0; fixcrc < 2; fixcrc++)
        for (size_t bit = 0; bit < (good.len - (fixcrc ? 4 : 0)) * 8; bit++) {
            memcpy(p, good.p, good.len);
            p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            if (fixcrc) put_crc(p, good.len);
            qs_kll *d = deser(p, good.len, &st, &msg);
            if (d) {
                accepted++;
                exercise_decoded(d, "table-mode bit flip", bit);
                qs_kll_free(d);
            } else {
                CHECKF(msg != NULL && st != QS_OK, "table bit %zu: NULL without a message", bit);
            }
        }
    info("table-mode bytes (%zu): %zu of %zu flips decoded to valid sketches", good.len, accepted,
         good.len * 16 - 32);
    free(p);
    free(good.p);
}

/* Format 1 (no table section, no bucket section) is still read. */
static void test_serde_format1(void)
{
    rng_t r = {104};
    qs_kll *sk = new_sketch(200, 9);
    REQUIRE(sk);
    double *x = xmalloc(50000 * sizeof(double));
    fill_uniform(x, 50000, &r);
    CHECK_ST(qs_kll_update_batch(sk, x, 50000, 0), QS_OK);
    bytes_t b = ser(sk);
    REQUIRE(b.p[3] >= 3);
    /* drop the (empty) table section, limit 0 and size 0, and the bucket
     * section of a sketch without the layer, capacity 0 and size 0 */
    const size_t tail = b.len - 4 - 4 - 8;
    CHECK(b.p[tail] == 0 && b.p[tail + 4] == 0 && b.p[tail + 8] == 0 && b.p[tail + 10] == 0);
    uint8_t *v1 = xmalloc(b.len - 12);
    memcpy(v1, b.p, tail);
    v1[3] = 1;
    v1[8] = 8;  /* format 1 wrote m = 8 (a larger m only enlarges the capacities) */
    v1[11] = 0; /* reserved in format 1 (format 2 keeps the compacted level there) */
    put_crc(v1, b.len - 12);
    qs_status st;
    const char *msg;
    qs_kll *d = deser(v1, b.len - 12, &st, &msg);
    CHECKF(d != NULL, "format 1 bytes rejected: %s (%s)", status_name(st), msg ? msg : "?");
    if (d) {
        /* re-encoded in the current format: the original bytes, except byte 11
         * (format 1 did not record the compacted level) and the CRC */
        bytes_t b2 = ser(d);
        CHECK(b2.len == b.len);
        if (b2.len == b.len) {
            size_t diff = 0;
            for (size_t i = 0; i < b.len - 4; i++) diff += i != 8 && i != 11 && b.p[i] != b2.p[i];
            CHECKF(diff == 0, "format 1 decode: %zu bytes differ after re-encoding", diff);
            CHECK(b2.p[8] == 8); /* the decoded sketch keeps its m */
        }
        CHECK(qs_kll_is_estimation_mode(d) != 0);
        CHECK(qs_kll_n(d) == qs_kll_n(sk));
        double qv[64], o1[64], o2[64];
        for (int i = 0; i < 64; i++) qv[i] = runit(&r);
        CHECK_ST(qs_kll_rank(d, qv, 64, 1, o1), QS_OK);
        CHECK_ST(qs_kll_rank(sk, qv, 64, 1, o2), QS_OK);
        for (int i = 0; i < 64; i++) CHECK(o1[i] == o2[i]);
        CHECK_INV(d);
        free(b2.p);
        qs_kll_free(d);
    }
    /* format 1 with trailing table bytes is not format 2 */
    uint8_t *v1t = xmalloc(b.len);
    memcpy(v1t, b.p, b.len);
    v1t[3] = 1;
    v1t[8] = 8;
    v1t[11] = 0;
    put_crc(v1t, b.len);
    d = deser(v1t, b.len, &st, &msg);
    CHECK(d == NULL && st == QS_EFORMAT);
    qs_kll_free(d);
    free(v1t);
    free(v1);
    free(b.p);
    free(x);
    qs_kll_free(sk);
}

/* The interpolating estimators' documented contract. */
static void test_estimators(void)
{
    rng_t r = {105};
    const size_t N = 300000;
    double *x = xmalloc(N * sizeof(double));
    for (size_t i = 0; i < N; i++) x[i] = runit(&r) * runit(&r) * 100.0; /* skewed */
    exact_t e;
    exact_build(&e, x, NULL, N);
    qs_kll *sk = new_sketch(200, 1);
    REQUIRE(sk);
    CHECK_ST(qs_kll_update_batch(sk, x, N, 0), QS_OK);
    CHECK(qs_kll_is_estimation_mode(sk));
    const double slack = qs_kll_interp_slack(sk);
    CHECK(slack > 0.0);
    enum { NQ = 2000 };
    double q[NQ], lo[NQ], hi[NQ], est[NQ];
    for (int i = 0; i < NQ; i++) q[i] = (i & 1) ? e.v[rbelow(&r, e.len)] : runit(&r) * 110.0 - 5.0;
    CHECK_ST(qs_kll_rank(sk, q, NQ, 0, lo), QS_OK);
    CHECK_ST(qs_kll_rank(sk, q, NQ, 1, hi), QS_OK);
    const double tol = slack / (double)N + 1e-12;
    const int ests[2] = {QS_EST_LINEAR, QS_EST_LEARNED};
    for (int ei = 0; ei < 2; ei++) {
        double worst = 0.0;
        for (int inc = 0; inc <= 1; inc++) {
            CHECK_ST(qs_kll_rank_est(sk, q, NQ, inc, ests[ei], est), QS_OK);
            size_t bad = 0;
            for (int i = 0; i < NQ; i++) {
                if (!(est[i] >= lo[i] - tol && est[i] <= hi[i] + tol)) bad++;
                const double err = fabs(est[i] - exact_rank(&e, q[i], inc));
                if (err > worst) worst = err;
            }
            CHECKF(bad == 0, "estimator %d: %zu ranks outside the step interval widened by the slack", ests[ei], bad);
        }
        CHECKF(worst <= bound_for(200) + tol, "estimator %d: rank error %.5f", ests[ei], worst);
        /* quantiles: within [min, max], monotone, exact ends */
        double p[1001], qo[1001];
        for (int i = 0; i <= 1000; i++) p[i] = i / 1000.0;
        for (int inc = 0; inc <= 1; inc++) {
            CHECK_ST(qs_kll_quantile_est(sk, p, 1001, inc, ests[ei], qo), QS_OK);
            size_t bad = 0;
            for (int i = 0; i <= 1000; i++) {
                if (!(qo[i] >= e.v[0] && qo[i] <= e.v[e.len - 1])) bad++;
                if (i && qo[i] < qo[i - 1]) bad++;
                const double rl = exact_rank(&e, qo[i], 0), rh = exact_rank(&e, qo[i], 1);
                if (!(rl - bound_for(200) - tol <= p[i] && p[i] <= rh + bound_for(200) + tol)) bad++;
            }
            CHECKF(bad == 0, "estimator %d: %zu bad quantiles", ests[ei], bad);
            CHECK(qo[0] == e.v[0] && qo[1000] == e.v[e.len - 1]);
        }
        info("estimator %d: max rank error %.5f (step bound %.5f, slack %.1f items)", ests[ei], worst,
             bound_for(200), slack);
    }
    /* the step estimator through the _est entry points is the plain one */
    CHECK_ST(qs_kll_rank_est(sk, q, NQ, 1, QS_EST_STEP, est), QS_OK);
    size_t diff = 0;
    for (int i = 0; i < NQ; i++) diff += est[i] != hi[i];
    CHECK(diff == 0);
    CHECK_ST(qs_kll_rank_est(sk, q, 1, 1, 99, est), QS_EINVAL);
    const double badp = 1.5;
    CHECK_ST(qs_kll_quantile_est(sk, &badp, 1, 1, QS_EST_LINEAR, est), QS_EINVAL);
    qs_kll_free(sk);
    exact_free(&e);

    /* exact mode (compactors, nothing compacted) and table mode: exact answers */
    for (int mode = 0; mode < 2; mode++) {
        qs_kll *s2 = mode ? new_default_sketch(200, 2) : new_sketch(200, 2);
        REQUIRE(s2);
        CHECK_ST(qs_kll_update_batch(s2, x, 150, 0), QS_OK);
        CHECK(!qs_kll_is_estimation_mode(s2));
        CHECK(qs_kll_interp_slack(s2) == 0.0);
        exact_build(&e, x, NULL, 150);
        double qq[450], oo[450];
        for (size_t i = 0; i < 150; i++) {
            qq[3 * i] = x[i];
            qq[3 * i + 1] = nextafter(x[i], 0.0);
            qq[3 * i + 2] = x[i] + 0.01;
        }
        for (int ei = 0; ei < 2; ei++)
            for (int inc = 0; inc <= 1; inc++) {
                CHECK_ST(qs_kll_rank_est(s2, qq, 450, inc, ests[ei], oo), QS_OK);
                size_t bad = 0;
                for (int i = 0; i < 450; i++) bad += oo[i] != exact_rank(&e, qq[i], inc);
                CHECKF(bad == 0, "%s mode, estimator %d: %zu inexact ranks", mode ? "table" : "exact", ests[ei], bad);
            }
        exact_free(&e);
        qs_kll_free(s2);
    }

    /* atoms: few distinct values in estimation mode, every item an atom */
    qs_kll *s3 = new_sketch(200, 3);
    REQUIRE(s3);
    for (size_t i = 0; i < N; i++) x[i] = (double)rbelow(&r, 10);
    CHECK_ST(qs_kll_update_batch(s3, x, N, 0), QS_OK);
    CHECK(qs_kll_is_estimation_mode(s3));
    double qa[10], step[10], oa[10];
    for (int i = 0; i < 10; i++) qa[i] = i;
    for (int ei = 0; ei < 2; ei++)
        for (int inc = 0; inc <= 1; inc++) {
            CHECK_ST(qs_kll_rank(s3, qa, 10, inc, step), QS_OK);
            CHECK_ST(qs_kll_rank_est(s3, qa, 10, inc, ests[ei], oa), QS_OK);
            size_t bad = 0;
            for (int i = 0; i < 10; i++) bad += fabs(oa[i] - step[i]) > 1e-12;
            CHECKF(bad == 0, "estimator %d at atoms: %zu ranks differ from the step estimator", ests[ei], bad);
        }
    qs_kll_free(s3);
    free(x);
}

#endif /* QS_KLL_MAX_EXACT_LIMIT */

/* ======================================================================== */
/* Runner                                                                   */
/* ======================================================================== */

static void on_timeout(int sig)
{
    static const char msg[] = "\nTIMEOUT: a test ran longer than the watchdog allows (QS_TEST_TIMEOUT)\n";
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(3);
}

/* The accuracy layer: every update path, merge (also with a sketch without
 * the layer), copy and serde keep its counts adding up to n; spline ranks stay
 * within the step estimate +- eps; a truncated bucket section is rejected. */
static void test_buckets(void)
{
    rng_t r = {303};
    const size_t N = 200000;
    double *x = xmalloc(N * sizeof(double));
    uint64_t *w = xmalloc(N * sizeof(uint64_t));
    for (size_t i = 0; i < N; i++) {
        x[i] = (i % 7 == 0) ? 0.25 : (runit(&r) - 0.5) * (1.0 + (double)(i % 1000));
        w[i] = 1 + rbelow(&r, 9);
    }
    qs_kll *a = new_default_sketch(64, 1);
    REQUIRE(a);
    CHECK_ST(qs_kll_set_buckets(a, 48), QS_OK);
    CHECK(qs_kll_buckets(a) == 48);
    CHECK_ST(qs_kll_update_batch(a, x, N / 2, 0), QS_OK);
    CHECK_INV(a);
    for (size_t i = N / 2; i < N / 2 + 5000; i++) CHECK_ST(qs_kll_update(a, x[i], 0), QS_OK);
    CHECK_ST(qs_kll_update_weighted(a, x + N / 2 + 5000, w, 3000, 0), QS_OK);
    CHECK_INV(a);
    CHECK(qs_kll_bucket_boundaries(a) > 8 && qs_kll_bucket_boundaries(a) <= 48);
    CHECK_ST(qs_kll_set_buckets(a, 10), QS_EINVAL); /* only on an empty sketch */

    /* spline ranks within the step estimate +- eps */
    const double eps = qs_kll_normalized_rank_error(64, 0);
    double q[64], spline[64], step[64];
    for (int i = 0; i < 64; i++) q[i] = x[i * 97];
    for (int inclusive = 0; inclusive < 2; inclusive++) {
        CHECK_ST(qs_kll_rank_est(a, q, 64, inclusive, QS_EST_SPLINE, spline), QS_OK);
        CHECK_ST(qs_kll_rank(a, q, 64, inclusive, step), QS_OK);
        for (int i = 0; i < 64; i++) CHECK(fabs(spline[i] - step[i]) <= eps + 1e-12);
    }
    double p[5] = {0.0, 0.1, 0.5, 0.9, 1.0}, qq[5];
    CHECK_ST(qs_kll_quantile_est(a, p, 5, 1, QS_EST_SPLINE, qq), QS_OK);
    for (int i = 1; i < 5; i++) CHECK(qq[i - 1] <= qq[i]);

    /* merge with a layered sketch, then with one without a layer */
    qs_kll *b = new_default_sketch(64, 2);
    REQUIRE(b);
    CHECK_ST(qs_kll_set_buckets(b, 32), QS_OK);
    CHECK_ST(qs_kll_update_batch(b, x + N / 2, N / 2, 0), QS_OK);
    qs_kll *ab = copy_sketch(a);
    REQUIRE(ab);
    CHECK_ST(qs_kll_merge(ab, b), QS_OK);
    CHECK_INV(ab);
    CHECK(qs_kll_buckets(ab) == 32 && qs_kll_n(ab) == qs_kll_n(a) + qs_kll_n(b));

    /* serde round trip, and every truncation of the bucket section fails */
    bytes_t bytes = ser(ab);
    qs_status st;
    const char *msg;
    qs_kll *d = deser(bytes.p, bytes.len, &st, &msg);
    REQUIRE(d);
    CHECK(same_state(ab, d));
    CHECK_INV(d);
    for (size_t cut = bytes.len - 40; cut < bytes.len; cut++) {
        qs_kll *t = deser(bytes.p, cut, &st, &msg);
        CHECK(t == NULL && st != QS_OK);
        qs_kll_free(t);
    }
    free(bytes.p);

    qs_kll *plain = new_default_sketch(64, 3);
    REQUIRE(plain);
    CHECK_ST(qs_kll_update_batch(plain, x, 1000, 0), QS_OK);
    CHECK_ST(qs_kll_merge(ab, plain), QS_OK);
    CHECK(qs_kll_buckets(ab) == 0);
    CHECK_INV(ab);

    qs_kll_free(a);
    qs_kll_free(b);
    qs_kll_free(ab);
    qs_kll_free(d);
    qs_kll_free(plain);
    free(x);
    free(w);
}


/* Counting a classified chunk (qs_bk_count_classified, the bulk path's) gives
 * exactly the counts of the full search (qs_bk_count), for layers from empty
 * to dense, items equal to boundaries and to splitters, and ties. */
static void test_bucket_count_classified(void)
{
    rng_t r = {404};
    const size_t N = 40000;
    double *x = xmalloc(N * sizeof(double)), *work = xmalloc((N + 1) * sizeof(double));
    uint8_t *ids = xmalloc(N);
    size_t t[4] = {0, 100, 20000, N - 1}, rel[4];
    double out[4], splitters[QS_SELECT_BUCKETS - 1];
    const uint32_t sizes[] = {0, 1, 2, 5, 64, 300, 1000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const uint32_t m = sizes[si];
        for (int kind = 0; kind < 3; kind++) {
            for (size_t i = 0; i < N; i++) {
                const double u = runit(&r);
                x[i] = kind == 0 ? u : (kind == 1 ? (double)rbelow(&r, 50) : u * u * u);
            }
            qs_buckets a, b;
            memset(&a, 0, sizeof a);
            memset(&b, 0, sizeof b);
            REQUIRE(qs_bk_init(&a, m ? m : 1) == QS_OK && qs_bk_init(&b, m ? m : 1) == QS_OK);
            /* boundaries: some of them data values (ties), strictly increasing */
            for (uint32_t i = 0; i < m; i++)
                a.bound[i] = b.bound[i] = kind == 1 ? (double)i * 50.0 / m : (double)(i + 1) / (m + 1);
            if (kind == 1) { /* dedupe the integer boundaries */
                uint32_t u = 0;
                for (uint32_t i = 0; i < m; i++)
                    if (u == 0 || a.bound[u - 1] < a.bound[i]) a.bound[u] = b.bound[u] = a.bound[i], u++;
                a.m = b.m = u;
            } else {
                a.m = b.m = m;
            }
            if (m > 0) x[7] = a.bound[0], x[8] = a.bound[a.m - 1];
            x[9] = INFINITY; /* +inf items beside the +inf padding of the window */
            x[10] = -INFINITY;
            x[N - 1] = INFINITY;
            const int classified = qs_select_many(x, N, t, 4, out, work, ids, rel, splitters);
            CHECK(classified == 1);
            qs_bk_count(&a, x, N);
            qs_bk_count_classified(&b, x, N, ids, splitters);
            size_t diff = 0;
            for (uint32_t i = 0; i <= a.m; i++) diff += a.open[i] != b.open[i];
            for (uint32_t i = 0; i < a.m; i++) diff += a.atom[i] != b.atom[i];
            CHECKF(diff == 0, "m=%u kind=%d: %zu counts differ", a.m, kind, diff);
            qs_bk_free(&a);
            qs_bk_free(&b);
        }
    }
    free(x);
    free(work);
    free(ids);
}


/* The small-chunk path classifies by the partition a multiselect leaves: its
 * buckets are closed at both ends (an item may equal the splitter below it).
 * Counting with those classes gives exactly the counts of the full search,
 * for layers from empty to dense, ties with boundaries and splitters, unused
 * +inf splitters and +-inf items. */
static void test_bucket_count_partitioned(void)
{
    rng_t r = {505};
    const size_t N = 4096;
    double *x = xmalloc(N * sizeof(double));
    uint8_t *ids = xmalloc(N);
    size_t t[512];
    double splitters[QS_SELECT_BUCKETS - 1];
    const uint32_t sizes[] = {0, 1, 3, 17, 400, 1500};
    const size_t targets[] = {1, 8, 64, 255, 512};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        for (size_t ti = 0; ti < sizeof targets / sizeof targets[0]; ti++) {
            for (int kind = 0; kind < 3; kind++) {
                const uint32_t m = sizes[si];
                const size_t S = targets[ti], step = N / S;
                for (size_t i = 0; i < N; i++) {
                    const double u = runit(&r);
                    x[i] = kind == 0 ? u : (kind == 1 ? (double)rbelow(&r, 20) : u * u * u);
                }
                x[5] = INFINITY;
                x[6] = -INFINITY;
                qs_buckets a, b;
                memset(&a, 0, sizeof a);
                memset(&b, 0, sizeof b);
                REQUIRE(qs_bk_init(&a, m ? m : 1) == QS_OK && qs_bk_init(&b, m ? m : 1) == QS_OK);
                uint32_t u = 0; /* strictly increasing; for kind 1 mostly data values (ties) */
                for (uint32_t i = 0; i < m; i++) {
                    const double v = kind == 1 ? (double)(i % 20) + (i >= 20 ? 0.5 * runit(&r) : 0.0)
                                               : (double)(i + 1) / (m + 1);
                    a.bound[u++] = v;
                }
                qs_sort_doubles(a.bound, u);
                uint32_t w = 0;
                for (uint32_t i = 0; i < u; i++)
                    if (w == 0 || a.bound[w - 1] < a.bound[i]) a.bound[w++] = a.bound[i];
                memcpy(b.bound, a.bound, (size_t)w * sizeof(double));
                a.m = b.m = w;
                for (size_t i = 0; i < S; i++) t[i] = rbelow(&r, step) + i * step;
                qs_multiselect(x, N, t, S);
                /* every g-th target a splitter, as ingest_chunk does it */
                size_t g = 1;
                while (S / g > QS_SELECT_BUCKETS - 1) g <<= 1;
                const size_t used = S / g;
                size_t pos = 0;
                for (size_t k = 0; k < used; k++) {
                    const size_t at = t[(k + 1) * g - 1];
                    splitters[k] = x[at];
                    memset(ids + pos, (int)k, at + 1 - pos);
                    pos = at + 1;
                }
                memset(ids + pos, (int)used, N - pos);
                for (size_t k = used; k < QS_SELECT_BUCKETS - 1; k++) splitters[k] = INFINITY;
                qs_bk_count(&a, x, N);
                qs_bk_count_classified(&b, x, N, ids, splitters);
                size_t diff = 0;
                for (uint32_t i = 0; i <= a.m; i++) diff += a.open[i] != b.open[i];
                for (uint32_t i = 0; i < a.m; i++) diff += a.atom[i] != b.atom[i];
                CHECKF(diff == 0, "m=%u S=%zu kind=%d: %zu counts differ", a.m, S, kind, diff);
                qs_bk_free(&a);
                qs_bk_free(&b);
            }
        }
    }
    free(x);
    free(ids);
}

/* Merging layered sketches: the joins bring the layer down to the smaller cap
 * and keep every count (the layer adds up to n; invariants hold), for shards
 * of one stream, sorted shards, discrete data and caps down to 1. */
static void test_bucket_merge_joins(void)
{
    rng_t r = {606};
    const size_t N = 30000;
    double *x = xmalloc(N * sizeof(double));
    const uint32_t caps[] = {1, 2, 7, 64, 400};
    for (int kind = 0; kind < 3; kind++) {
        for (size_t i = 0; i < N; i++) {
            const double u = runit(&r);
            x[i] = kind == 2 ? (double)rbelow(&r, 30) : (kind == 1 ? (double)i : u * u);
        }
        for (size_t ci = 0; ci < sizeof caps / sizeof caps[0]; ci++) {
            qs_kll *acc = new_default_sketch(64, 7);
            REQUIRE(acc);
            CHECK_ST(qs_kll_set_buckets(acc, 400), QS_OK);
            for (int part = 0; part < 10; part++) {
                qs_kll *s = new_default_sketch(64, 100 + (uint64_t)part);
                REQUIRE(s);
                CHECK_ST(qs_kll_set_buckets(s, part == 5 ? caps[ci] : 400), QS_OK);
                CHECK_ST(qs_kll_update_batch(s, x + (size_t)part * (N / 10), N / 10, 0), QS_OK);
                const uint64_t n_before = qs_kll_n(acc);
                const uint32_t cap = qs_kll_buckets(acc) < qs_kll_buckets(s) ? qs_kll_buckets(acc)
                                                                               : qs_kll_buckets(s);
                CHECK_ST(qs_kll_merge(acc, s), QS_OK);
                CHECK_INV(acc);
                CHECK(qs_kll_n(acc) == n_before + N / 10);
                CHECK(qs_kll_buckets(acc) == cap && qs_kll_bucket_boundaries(acc) <= cap);
                qs_kll_free(s);
            }
            CHECK(qs_kll_bucket_boundaries(acc) >= (caps[ci] < 4 ? caps[ci] : 4));
            qs_kll_free(acc);
        }
    }
    free(x);
}


/* ======================================================================== */
/* Allocation failures                                                      */
/* ======================================================================== */

/*
 * The test binaries link with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc
 * (QS_TEST_WRAP_ALLOC, set by the Makefile): every allocation of the core goes
 * through these, and g_fail_at makes the allocation of that index (counted
 * from when it was armed) fail, once.  Without the wrap the test is skipped.
 */
#ifdef QS_TEST_WRAP_ALLOC
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
static long g_fail_at = -1; /* -1: never */
static long g_alloc_count = 0;

static int alloc_fails(void)
{
    if (g_fail_at < 0) return 0;
    return g_alloc_count++ == g_fail_at;
}
void *__wrap_malloc(size_t n) { return alloc_fails() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return alloc_fails() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return alloc_fails() ? NULL : __real_realloc(p, n); }

static void arm_failure(long at)
{
    g_alloc_count = 0;
    g_fail_at = at;
}
/* Disarm; whether the armed failure happened. */
static int disarm_failure(void)
{
    const int failed = g_fail_at >= 0 && g_alloc_count > g_fail_at;
    g_fail_at = -1;
    return failed;
}

typedef enum { OP_BATCH, OP_ITEMS, OP_WEIGHTED, OP_MERGE, OP_QUERY, OP_COPY, OP_DESERIALIZE } alloc_op;
static const char *const OP_NAMES[] = {"batch", "items", "weighted", "merge", "query", "copy", "deserialize"};

/* A layered sketch (k, 2k boundaries, no exact table) that has seen x[0..n0). */
static qs_kll *layered_sketch(uint32_t k, uint64_t seed, const double *x, size_t n0)
{
    qs_kll *sk = new_sketch(k, seed);
    if (!sk) return NULL;
    CHECK_ST(qs_kll_set_buckets(sk, 2 * k), QS_OK);
    if (n0) CHECK_ST(qs_kll_update_batch(sk, x, n0, 0), QS_OK);
    return sk;
}

/*
 * Fail each allocation of one operation in turn (the first, the second, ...,
 * until the operation runs through without reaching the armed index): the
 * operation returns QS_OK (an allocation it can do without, such as a
 * rebalance's sorted view, only postpones work) or QS_ENOMEM; either way the
 * sketch keeps its invariants, a failed merge, query or copy leaves it
 * unchanged, a failed update keeps a prefix of the items, nothing leaks
 * (LeakSanitizer, per test), and the sketch goes on working.
 */
static void alloc_failure_case(alloc_op op, uint32_t k, size_t n0, size_t len, const double *x)
{
    const uint64_t w[4] = {1, 3, 1000, 7};
    long failures = 0, at = 0;
    for (;; at++) {
        qs_kll *sk = layered_sketch(k, 11, x, n0);
        qs_kll *other = op == OP_MERGE ? layered_sketch(k, 12, x + n0, len) : NULL;
        REQUIRE(sk && (op != OP_MERGE || other));
        bytes_t before = ser(sk);
        const uint64_t n_before = qs_kll_n(sk);
        qs_kll *made = NULL;
        qs_status st = QS_OK;
        double out[64];
        arm_failure(at);
        switch (op) {
        case OP_BATCH: st = qs_kll_update_batch(sk, x + n0, len, 0); break;
        case OP_ITEMS:
            for (size_t i = 0; i < len && st == QS_OK; i++) st = qs_kll_update(sk, x[n0 + i], 0);
            break;
        case OP_WEIGHTED: st = qs_kll_update_weighted(sk, x + n0, w, 4, 0); break;
        case OP_MERGE: st = qs_kll_merge(sk, other); break;
        case OP_QUERY: st = qs_kll_quantile_est(sk, x, 64, 1, QS_EST_SPLINE, out); break;
        case OP_COPY: made = qs_kll_copy(sk, &st); break;
        case OP_DESERIALIZE: {
            const char *msg = NULL;
            made = qs_kll_deserialize(before.p, before.len, &st, &msg);
            break;
        }
        }
        const int failed = disarm_failure();
        if (!failed) { /* every allocation of the operation went through */
            CHECKF(st == QS_OK, "%s, k=%u: %s without a failed allocation", OP_NAMES[op], (unsigned)k,
                   status_name(st));
        } else {
            CHECKF(st == QS_OK || st == QS_ENOMEM, "%s, k=%u, allocation %ld failed: %s", OP_NAMES[op],
                   (unsigned)k, at, status_name(st));
            failures += st == QS_ENOMEM;
            if (st == QS_ENOMEM && (op == OP_MERGE || op == OP_QUERY || op == OP_COPY || op == OP_DESERIALIZE))
                CHECKF(unchanged_since(sk, before), "%s, allocation %ld: a failed call changed the sketch",
                       OP_NAMES[op], at);
            if (st == QS_ENOMEM && (op == OP_COPY || op == OP_DESERIALIZE)) CHECK(made == NULL);
            if (st == QS_ENOMEM && (op == OP_BATCH || op == OP_ITEMS))
                CHECKF(qs_kll_n(sk) >= n_before && qs_kll_n(sk) <= n_before + len,
                       "%s, allocation %ld: n %llu outside [%llu, %llu]", OP_NAMES[op], at,
                       (unsigned long long)qs_kll_n(sk), (unsigned long long)n_before,
                       (unsigned long long)(n_before + len));
        }
        const int ok = INV_OK(sk, OP_NAMES[op], at);
        /* and it goes on working */
        CHECK_ST(qs_kll_update_batch(sk, x, 20000, 0), QS_OK);
        CHECK_ST(qs_kll_quantile_est(sk, x, 64, 1, QS_EST_SPLINE, out), QS_OK);
        const int ok_after = INV_OK(sk, OP_NAMES[op], at);
        if (made) qs_kll_free(made);
        qs_kll_free(other);
        qs_kll_free(sk);
        free(before.p);
        if (!failed || !ok || !ok_after || at > 100000) break;
    }
    info("%s, k=%u, n=%zu + %zu: %ld allocations failed in turn, %ld of them QS_ENOMEM", OP_NAMES[op],
         (unsigned)k, n0, len, at, failures);
}

static void test_alloc_failures(void)
{
    rng_t r = {4242};
    const size_t N = 400000;
    double *x = xmalloc(N * sizeof(double));
    fill_uniform(x, N, &r);
    /* the group path (n from 16,384 until the bulk path starts at k = 368) */
    alloc_failure_case(OP_BATCH, 368, 20000, 5000, x);
    /* a shift: the gap cut's split, then the groups */
    for (size_t i = 30000; i < 35000; i++) x[i] += 10.0;
    alloc_failure_case(OP_BATCH, 368, 30000, 5000, x);
    fill_uniform(x, N, &r);
    /* the bulk path: chunks counted, rebalanced and merged in */
    alloc_failure_case(OP_BATCH, 64, 100000, 200000, x);
    /* the item path, from the first item: the compactors' first levels */
    alloc_failure_case(OP_ITEMS, 32, 0, 3000, x);
    alloc_failure_case(OP_WEIGHTED, 32, 5000, 4, x);
    alloc_failure_case(OP_MERGE, 64, 50000, 50000, x);
    alloc_failure_case(OP_QUERY, 64, 50000, 0, x);
    alloc_failure_case(OP_COPY, 64, 50000, 0, x);
    alloc_failure_case(OP_DESERIALIZE, 64, 50000, 0, x);
    free(x);
}
#else
static void test_alloc_failures(void)
{
    info("skipped: built without QS_TEST_WRAP_ALLOC (-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc)");
}
#endif

typedef void (*test_fn)(void);
static const struct {
    const char *name;
    test_fn fn;
} TESTS[] = {
    {"buckets", test_buckets},
    {"bucket_count_classified", test_bucket_count_classified},
    {"bucket_count_partitioned", test_bucket_count_partitioned},
    {"bucket_merge_joins", test_bucket_merge_joins},
    {"sort_kernels_small", test_sort_kernels_small},
    {"sort_kernels_large", test_sort_kernels_large},
    {"sort_fallbacks", test_sort_fallbacks},
    {"sort_adversarial", test_sort_adversarial},
    {"construction", test_construction},
    {"empty", test_empty},
    {"one_item", test_one_item},
    {"nan_handling", test_nan_handling},
    {"exact_mode", test_exact_mode},
    {"estimation_per_item", test_estimation_per_item},
    {"estimation_batch", test_estimation_batch},
    {"estimation_sorted_streams", test_estimation_sorted_streams},
    {"estimation_bulk_many_k", test_estimation_bulk_many_k},
    {"unbiased", test_unbiased},
    {"weighted_exact", test_weighted_exact},
    {"weighted_errors", test_weighted_errors},
    {"weighted_estimation", test_weighted_estimation},
    {"merge_exact", test_merge_exact},
    {"merge_shards", test_merge_shards},
    {"merge_different_k", test_merge_different_k},
    {"merge_failure_is_transactional", test_merge_failure_is_transactional},
    {"alloc_failures", test_alloc_failures},
    {"copy", test_copy},
    {"determinism", test_determinism},
    {"crc32", test_crc32},
    {"serde_roundtrip", test_serde_roundtrip},
    {"serde_truncation", test_serde_truncation},
    {"serde_bitflips", test_serde_bitflips},
    {"serde_bad_headers", test_serde_bad_headers},
    {"extreme_k", test_extreme_k},
    {"extreme_values", test_extreme_values},
    {"all_equal_stream", test_all_equal_stream},
    {"view_and_cache", test_view_and_cache},
#ifdef QS_KLL_MAX_EXACT_LIMIT
    {"table_basics", test_table_basics},
    {"table_weighted", test_table_weighted},
    {"table_merge_copy_serde", test_table_merge_copy_serde},
    {"table_serde_corruption", test_table_serde_corruption},
    {"serde_format1", test_serde_format1},
    {"estimators", test_estimators},
#endif
};

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0;
    const clock_t start = clock();
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *tmo = getenv("QS_TEST_TIMEOUT");
    const unsigned timeout = tmo && atoi(tmo) > 0 ? (unsigned)atoi(tmo) : 600u;
    signal(SIGALRM, on_timeout);
    for (size_t i = 0; i < sizeof TESTS / sizeof TESTS[0]; i++) {
        if (filter && !strstr(TESTS[i].name, filter)) continue;
        g_test_name = TESTS[i].name;
        g_test_failures = 0;
        printf("[ RUN  ] %s\n", TESTS[i].name);
        const clock_t t0 = clock();
        alarm(timeout);
        TESTS[i].fn();
        alarm(0);
#ifdef QS_TEST_LSAN
        /* A leak fails the test that made it.  LeakSanitizer reports every
         * leak seen so far, so stop checking after the first one (the report
         * at exit still lists them all). */
        static int leak_seen = 0;
        if (!leak_seen && __lsan_do_recoverable_leak_check() != 0) {
            leak_seen = 1;
            (void)check_failed(__FILE__, __LINE__, "no memory leaked during this test (see the LeakSanitizer report)");
        }
#endif
        const double dt = seconds(t0, clock());
        if (g_test_failures == 0) {
            passed++;
            printf("[ PASS ] %s (%.2fs)\n", TESTS[i].name, dt);
        } else {
            failed++;
            printf("[ FAIL ] %s (%.2fs, %ld failed checks)\n", TESTS[i].name, dt, g_test_failures);
        }
    }
    printf("total %.1fs, %ld failed checks\n", seconds(start, clock()), g_failures);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
