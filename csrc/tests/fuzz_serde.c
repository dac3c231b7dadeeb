/*
 * fuzz_serde.c -- a coverage-guided mutation fuzzer for the qsketch decoder
 * (qs_kll_deserialize in csrc/qs_serde.c), in plain C: gcc has no libFuzzer.
 *
 * Built with AddressSanitizer + UndefinedBehaviorSanitizer and with the core's
 * sources compiled under -fsanitize-coverage=trace-pc (see the Makefile next
 * to this file):
 *
 *     make -C csrc/tests fuzz                       # the bounded CI run
 *     make -C csrc/tests fuzz FUZZ_SECONDS=600      # a longer run
 *     csrc/tests/build/fuzz_serde -h                # every option
 *
 * What it does.  Seed inputs are serialized sketches built here with the C API
 * (empty, one item, exact table, exact compactors, estimation at k = 8, 200
 * and 65535, large weights, +-inf, -0.0, subnormals, +-DBL_MAX, NaN counts,
 * merged sketches, format version 1) plus any corpus files named on the
 * command line (the .qsk golden files of tests/data and tests/data/fuzz_corpus/qsketch).  Each
 * execution takes an input from the in-memory corpus, applies 1 to 4 stacked
 * mutations (bit flips, interesting bytes and integers at the header's fields,
 * interesting doubles at item offsets, insertions, deletions, truncation,
 * splices, moving an item between two level sizes, ...), recomputes the
 * CRC-32 most of the time (otherwise the checksum rejects nearly everything
 * and the checks behind it are never reached), and decodes the result.  An
 * input that reaches new code (edges of the core, hashed from
 * __sanitizer_cov_trace_pc) joins the corpus.
 *
 * The contract checked on every input:
 *  - rejected: a NULL sketch, a non-OK status and a non-empty message;
 *  - accepted: the sketch passes qs_kll_check_invariants, answers rank and
 *    quantile queries with every estimator (ranks in [0, 1], monotone in the
 *    query, the step answers exact at the extremes, quantiles within
 *    [min, max], quantile(0) == min and quantile(1) == max), takes scalar,
 *    batch and weighted updates with an exact n, merges both ways with itself
 *    and with a fresh sketch, and re-encodes to bytes that decode to the same
 *    bytes again;
 *  - always: no sanitizer report, no leak, no execution longer than the
 *    watchdog (-w seconds).
 * On a violation the input is written to the output directory (-o) and the
 * run exits non-zero; under a sanitizer crash the death callback writes it.
 * -r replays the named files only (one execution each, no mutation).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../qs_kll.h"
#include "../qs_crc32.h"
#include "../qs_rng.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#define FUZZ_ASAN 1
#endif

#define MAX_INPUT (1u << 20)   /* mutated inputs never grow beyond 1 MiB */
#define MAX_CORPUS 4096
#define MAP_BITS 16
#define MAP_SIZE (1u << MAP_BITS)

/* ======================================================================== */
/* Coverage: the core is compiled with -fsanitize-coverage=trace-pc, which   */
/* calls this at every basic block.  Edges (previous block, this block) are  */
/* hashed into a 64 KiB map, with AFL's hit-count buckets.                   */
/* ======================================================================== */

static uint8_t g_trace[MAP_SIZE];    /* this execution */
static uint8_t g_seen[MAP_SIZE];     /* bucket bits seen over the run */
static uintptr_t g_prev_pc;

void __sanitizer_cov_trace_pc(void);
void __sanitizer_cov_trace_pc(void)
{
    const uintptr_t pc = (uintptr_t)__builtin_return_address(0);
    const uint64_t h = ((uint64_t)(pc ^ g_prev_pc) * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - MAP_BITS);
    if (g_trace[h] != 255) g_trace[h]++;
    g_prev_pc = pc >> 1;
}

static uint8_t bucket(uint8_t hits)
{
    if (hits == 0) return 0;
    if (hits <= 3) return (uint8_t)(1u << (hits - 1)); /* 1, 2, 4 */
    if (hits <= 7) return 8;
    if (hits <= 15) return 16;
    if (hits <= 31) return 32;
    if (hits <= 127) return 64;
    return 128;
}

/* Folds this execution's trace into the run's map; returns the number of new
 * (edge, bucket) pairs. */
static size_t fold_coverage(void)
{
    size_t fresh = 0;
    for (size_t i = 0; i < MAP_SIZE; i++) {
        if (!g_trace[i]) continue;
        const uint8_t b = bucket(g_trace[i]);
        if (!(g_seen[i] & b)) {
            g_seen[i] |= b;
            fresh++;
        }
    }
    return fresh;
}

static size_t edges_seen(void)
{
    size_t e = 0;
    for (size_t i = 0; i < MAP_SIZE; i++) e += g_seen[i] != 0;
    return e;
}

/* ======================================================================== */
/* Small helpers                                                            */
/* ======================================================================== */

typedef struct {
    uint64_t s;
} rng_t;

/* the core's splitmix64: the fuzzer needs a seeded stream, not an independent one */
static uint64_t rnext(rng_t *r) { return qs_rng_next(&r->s); }
static uint64_t rbelow(rng_t *r, uint64_t n) { return n ? rnext(r) % n : 0; }
static double runit(rng_t *r) { return (double)(rnext(r) >> 11) * 0x1.0p-53; }

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "fuzz_serde: out of memory\n");
        exit(2);
    }
    return p;
}

typedef struct {
    uint8_t *p;
    size_t len;
} bytes_t;

static bytes_t bytes_dup(const uint8_t *p, size_t len)
{
    bytes_t b;
    b.p = xmalloc(len);
    if (len) memcpy(b.p, p, len);
    b.len = len;
    return b;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_crc(uint8_t *p, size_t len)
{
    if (len < 4) return;
    put_u32(p + len - 4, qs_crc32(p, len - 4));
}

static uint64_t hash_bytes(const uint8_t *p, size_t len)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * UINT64_C(1099511628211);
    return h;
}

/* ======================================================================== */
/* Failure reporting: the input that broke the contract goes to a file.      */
/* ======================================================================== */

static const char *g_out_dir = NULL;
static const uint8_t *g_cur = NULL; /* the input under test */
static size_t g_cur_len = 0;
static unsigned long long g_exec = 0;
static int g_failed = 0;
static const char *g_stage = ""; /* what exercise() was doing */
static const qs_kll *g_state = NULL; /* the sketch under query, saved beside a failing input */

static void save_input(const char *tag)
{
    if (!g_out_dir || !g_cur) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-%016llx.bin", g_out_dir, tag,
             (unsigned long long)hash_bytes(g_cur, g_cur_len));
    FILE *f = fopen(path, "wb");
    if (!f) return;
    if (g_cur_len) fwrite(g_cur, 1, g_cur_len, f);
    fclose(f);
    fprintf(stderr, "fuzz_serde: input written to %s (%zu bytes)\n", path, g_cur_len);
}

static void hexdump_input(void)
{
    if (!g_cur) return;
    const size_t show = g_cur_len < 512 ? g_cur_len : 512;
    fprintf(stderr, "input (%zu bytes%s):\n", g_cur_len, show < g_cur_len ? ", first 512 shown" : "");
    for (size_t i = 0; i < show; i++) fprintf(stderr, "%02x%s", g_cur[i], (i + 1) % 32 ? "" : "\n");
    fprintf(stderr, "\n");
}

static void fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fuzz_serde: CONTRACT VIOLATION at execution %llu (%s): ", g_exec, g_stage);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    hexdump_input();
    save_input("fail");
    if (g_state && g_out_dir) { /* the sketch that answered wrongly, as bytes */
        const size_t sz = qs_kll_serialized_size(g_state);
        uint8_t *b = xmalloc(sz);
        size_t got = 0;
        if (qs_kll_serialize(g_state, b, sz, &got) == QS_OK) {
            const uint8_t *saved = g_cur;
            const size_t saved_len = g_cur_len;
            g_cur = b;
            g_cur_len = got;
            save_input("state");
            g_cur = saved;
            g_cur_len = saved_len;
        }
        free(b);
    }
    g_failed = 1;
}

static void on_death(void)
{
    fprintf(stderr, "fuzz_serde: sanitizer report at execution %llu\n", g_exec);
    hexdump_input();
    save_input("crash");
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "fuzz_serde: watchdog: one execution took too long (hang)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    save_input("hang"); /* not async-signal-safe, but the process ends here anyway */
    _exit(3);
}

/* ======================================================================== */
/* Seeds                                                                    */
/* ======================================================================== */

static bytes_t g_corpus[MAX_CORPUS];
static size_t g_ncorpus = 0;

static void corpus_add(const uint8_t *p, size_t len)
{
    if (g_ncorpus < MAX_CORPUS) {
        g_corpus[g_ncorpus++] = bytes_dup(p, len);
    } else { /* full: replace a random non-seed entry */
        static rng_t r = {77};
        const size_t at = 64 + (size_t)rbelow(&r, MAX_CORPUS - 64);
        free(g_corpus[at].p);
        g_corpus[at] = bytes_dup(p, len);
    }
}

static bytes_t serialize(const qs_kll *sk)
{
    const size_t sz = qs_kll_serialized_size(sk);
    bytes_t b;
    b.p = xmalloc(sz);
    b.len = 0;
    if (qs_kll_serialize(sk, b.p, sz, &b.len) != QS_OK || b.len != sz) {
        fprintf(stderr, "fuzz_serde: qs_kll_serialize failed on a seed\n");
        exit(2);
    }
    return b;
}

static uint32_t g_seed_buckets = 0; /* accuracy layer of the seed sketches (build_seeds runs per value) */

static qs_kll *new_sketch(uint32_t k, uint64_t seed, int table)
{
    qs_status st;
    qs_kll *sk = qs_kll_new(k, seed, &st);
    if (!sk) {
        fprintf(stderr, "fuzz_serde: qs_kll_new failed\n");
        exit(2);
    }
    if (!table) (void)qs_kll_set_exact_limit(sk, 0);
    (void)qs_kll_set_buckets(sk, g_seed_buckets);
    return sk;
}

static void seed_from(qs_kll *sk)
{
    bytes_t b = serialize(sk);
    corpus_add(b.p, b.len);
    /* the same sketch in format version 1 (header, level sizes, items, CRC),
     * when it holds no exact table */
    const size_t items_end = 56 + 4 * (size_t)b.p[9] + 8 * (size_t)get_u32(b.p + 12);
    if (qs_kll_exact_limit(sk) == 0 && items_end + 4 <= b.len) {
        const size_t v1len = items_end + 4;
        uint8_t *v1 = xmalloc(v1len);
        memcpy(v1, b.p, items_end);
        v1[3] = 1;
        v1[8] = 8; /* version 1's m (a larger m only enlarges the capacities) */
        v1[11] = 0;
        put_crc(v1, v1len);
        corpus_add(v1, v1len);
        free(v1);
    }
    free(b.p);
    qs_kll_free(sk);
}

static void build_seeds(void)
{
    rng_t r = {2024};
    qs_kll *sk;
    /* empty, with and without the exact table; NaNs only */
    seed_from(new_sketch(200, 1, 1));
    seed_from(new_sketch(8, 2, 0));
    sk = new_sketch(200, 3, 1);
    (void)qs_kll_update(sk, NAN, 0);
    seed_from(sk);
    /* one item; a few items in the compactors (exact mode) */
    sk = new_sketch(200, 4, 0);
    (void)qs_kll_update(sk, 1.5, 0);
    seed_from(sk);
    sk = new_sketch(16, 5, 0);
    for (int i = 0; i < 12; i++) (void)qs_kll_update(sk, runit(&r), 0);
    seed_from(sk);
    /* the exact table: few distinct values, many items */
    sk = new_sketch(64, 6, 1);
    for (int i = 0; i < 3000; i++) (void)qs_kll_update(sk, (double)(rnext(&r) % 17), 0);
    seed_from(sk);
    /* estimation mode at several k */
    static const uint32_t ks[] = {8, 9, 50, 200, 1000};
    for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++) {
        sk = new_sketch(ks[j], 7 + j, 0);
        for (int i = 0; i < 3000; i++) (void)qs_kll_update(sk, runit(&r) * 100.0 - 50.0, 0);
        (void)qs_kll_update(sk, NAN, 0);
        seed_from(sk);
    }
    /* the bulk path */
    {
        const size_t n = 60000;
        double *x = xmalloc(n * sizeof(double));
        for (size_t i = 0; i < n; i++) x[i] = runit(&r);
        sk = new_sketch(32, 20, 0);
        (void)qs_kll_update_batch(sk, x, n, 0);
        seed_from(sk);
        free(x);
    }
    /* k at its limits */
    sk = new_sketch(QS_KLL_MAX_K, 21, 0);
    for (int i = 0; i < 100; i++) (void)qs_kll_update(sk, runit(&r), 0);
    seed_from(sk);
    sk = new_sketch(QS_KLL_MIN_K, 22, 0);
    for (int i = 0; i < 500; i++) (void)qs_kll_update(sk, (double)i, 0);
    seed_from(sk);
    /* heavy weights: items high up the levels, n near 2^64 */
    {
        const double x[4] = {1.0, 2.0, 3.0, -4.0};
        const uint64_t w[4] = {UINT64_C(1) << 40, 3, (UINT64_C(1) << 62) + 5, 7};
        sk = new_sketch(200, 23, 0);
        (void)qs_kll_update_weighted(sk, x, w, 4, 0);
        seed_from(sk);
        const uint64_t w2[1] = {UINT64_MAX};
        sk = new_sketch(200, 24, 0);
        (void)qs_kll_update_weighted(sk, x, w2, 1, 0);
        seed_from(sk);
        sk = new_sketch(200, 25, 1);
        (void)qs_kll_update_weighted(sk, x, w, 4, 0);
        seed_from(sk);
    }
    /* extremes: +-inf, -0.0, subnormals, +-DBL_MAX */
    {
        const double ext[] = {INFINITY, -INFINITY, -0.0, 0.0, 4.9406564584124654e-324, -4.9406564584124654e-324,
                              DBL_MIN, DBL_MAX, -DBL_MAX, 1.0};
        const size_t ne = sizeof ext / sizeof ext[0];
        sk = new_sketch(8, 26, 0);
        for (int i = 0; i < 400; i++) (void)qs_kll_update(sk, ext[rnext(&r) % ne], 0);
        seed_from(sk);
        sk = new_sketch(200, 27, 1);
        for (int i = 0; i < 400; i++) (void)qs_kll_update(sk, ext[rnext(&r) % ne], 0);
        seed_from(sk);
        sk = new_sketch(8, 28, 0);
        for (int i = 0; i < 100; i++) (void)qs_kll_update(sk, INFINITY, 0);
        seed_from(sk);
    }
    /* all equal; a merge of different k; binding flags set */
    sk = new_sketch(20, 29, 0);
    for (int i = 0; i < 5000; i++) (void)qs_kll_update(sk, 7.0, 0);
    seed_from(sk);
    {
        qs_kll *a = new_sketch(300, 30, 0), *b = new_sketch(40, 31, 0);
        for (int i = 0; i < 2000; i++) (void)qs_kll_update(a, runit(&r), 0);
        for (int i = 0; i < 700; i++) (void)qs_kll_update(b, runit(&r) + 0.5, 0);
        (void)qs_kll_merge(a, b);
        qs_kll_set_user_flags(a, 0xff);
        qs_kll_free(b);
        seed_from(a);
    }
}

/* ======================================================================== */
/* Corpus files                                                             */
/* ======================================================================== */

static int read_file(const char *path, bytes_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 4096, len = 0;
    uint8_t *p = xmalloc(cap);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            uint8_t *q = realloc(p, cap);
            if (!q) {
                free(p);
                fclose(f);
                return -1;
            }
            p = q;
        }
        const size_t got = fread(p + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    fclose(f);
    out->p = p;
    out->len = len;
    return 0;
}

typedef void (*file_fn)(const char *path, const bytes_t *b);

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Calls fn on the named file, or on every regular file of the named directory
 * (sorted by name, so runs are deterministic). */
static void for_each_file(const char *path, file_fn fn)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "fuzz_serde: cannot read %s: %s\n", path, strerror(errno));
        exit(2);
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return;
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                names = realloc(names, cap * sizeof *names);
                if (!names) exit(2);
            }
            const size_t len = strlen(path) + strlen(e->d_name) + 2;
            names[n] = xmalloc(len);
            snprintf(names[n], len, "%s/%s", path, e->d_name);
            n++;
        }
        closedir(d);
        if (n) qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++) {
            struct stat fs;
            if (stat(names[i], &fs) == 0 && S_ISREG(fs.st_mode)) for_each_file(names[i], fn);
            free(names[i]);
        }
        free(names);
        return;
    }
    bytes_t b;
    if (read_file(path, &b) != 0) {
        fprintf(stderr, "fuzz_serde: cannot read %s\n", path);
        exit(2);
    }
    fn(path, &b);
    free(b.p);
}

/* ======================================================================== */
/* One execution: decode, then hold an accepted sketch to its contract.      */
/* ======================================================================== */

static qs_kll *g_partner; /* a fresh sketch to merge with */

#define EXPECT(c, ...)              \
    do {                            \
        if (!(c)) {                 \
            fail(__VA_ARGS__);      \
            goto done;              \
        }                           \
    } while (0)

static int invariants_ok(const qs_kll *sk, const char *when)
{
    const char *m = NULL;
    if (qs_kll_check_invariants(sk, &m) == 0) return 1;
    fail("invariants broken %s: %s", when, m ? m : "?");
    return 0;
}

static int cmp_dbl(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const double INTERESTING_DOUBLES[] = {
    0.0, -0.0, 1.0, -1.0, 0.5, INFINITY, -INFINITY, NAN, DBL_MAX, -DBL_MAX, DBL_MIN, -DBL_MIN,
    4.9406564584124654e-324, -4.9406564584124654e-324, 1e300, -1e300, 9007199254740993.0, 2.0, 3.0, 7.0};
#define N_INTERESTING_DOUBLES (sizeof INTERESTING_DOUBLES / sizeof INTERESTING_DOUBLES[0])

/* Queries: every estimator, ranks and quantiles, against what must hold for
 * any valid sketch. */
static int check_queries_(qs_kll *sk, rng_t *r);
static int check_queries(qs_kll *sk, rng_t *r)
{
    g_state = sk;
    const int ok = check_queries_(sk, r);
    g_state = NULL;
    return ok;
}

static int check_queries_(qs_kll *sk, rng_t *r)
{
    const uint64_t n = qs_kll_n(sk);
    const double lo = qs_kll_min(sk), hi = qs_kll_max(sk);
    enum { NQ = 40 };
    double q[NQ], incl[NQ], excl[NQ], out[NQ];
    const double *items;
    const uint64_t *cum;
    uint32_t size;
    if (qs_kll_sorted_view(sk, &items, &cum, &size) != QS_OK) {
        fail("sorted_view failed");
        return 0;
    }
    if (n > 0 && (size == 0 || cum[size - 1] != n)) {
        fail("sorted view weights add up to %llu, n is %llu", size ? (unsigned long long)cum[size - 1] : 0ULL,
             (unsigned long long)n);
        return 0;
    }
    /* queries: retained items, the extremes, infinities, random values */
    for (int i = 0; i < NQ; i++) {
        const uint64_t pick = rnext(r) % 4;
        if (pick == 0 && size) q[i] = items[rnext(r) % size];
        else if (pick == 1) q[i] = INTERESTING_DOUBLES[rnext(r) % N_INTERESTING_DOUBLES];
        else if (pick == 2 && n) q[i] = (rnext(r) & 1) ? lo : hi;
        else q[i] = runit(r) * 20.0 - 10.0;
        if (q[i] != q[i]) q[i] = 0.0; /* the binding refuses NaN queries */
    }
    qsort(q, NQ, sizeof q[0], cmp_dbl);
    static const int ests[4] = {QS_EST_STEP, QS_EST_LINEAR, QS_EST_LEARNED, QS_EST_SPLINE};
    const double slack = n ? qs_kll_interp_slack(sk) / (double)n : 0.0;
    for (int e = 0; e < 4; e++) {
        if (qs_kll_rank_est(sk, q, NQ, 1, ests[e], incl) != QS_OK ||
            qs_kll_rank_est(sk, q, NQ, 0, ests[e], excl) != QS_OK) {
            fail("rank failed (estimator %d)", ests[e]);
            return 0;
        }
        for (int i = 0; i < NQ; i++) {
            if (n == 0) {
                if (incl[i] == incl[i] || excl[i] == excl[i]) {
                    fail("an empty sketch answered rank(%g) = %g, %g", q[i], incl[i], excl[i]);
                    return 0;
                }
                continue;
            }
            if (!(incl[i] >= 0.0 && incl[i] <= 1.0 && excl[i] >= 0.0 && excl[i] <= 1.0)) {
                fail("estimator %d: rank(%.17g) = %.17g / %.17g (inclusive / exclusive) outside [0, 1]", ests[e],
                     q[i], incl[i], excl[i]);
                return 0;
            }
            if (excl[i] > incl[i] + 1e-12) {
                fail("estimator %d: exclusive rank %.17g > inclusive rank %.17g at %.17g", ests[e], excl[i],
                     incl[i], q[i]);
                return 0;
            }
            if (i > 0 && (incl[i] + 1e-12 < incl[i - 1] || excl[i] + 1e-12 < excl[i - 1])) {
                fail("estimator %d: rank decreases from %.17g to %.17g", ests[e], q[i - 1], q[i]);
                return 0;
            }
        }
        if (n == 0) continue;
        /* exact at the extremes, whatever the estimator */
        const double ext[4] = {lo, hi, -INFINITY, INFINITY};
        double ri[4], rx[4];
        if (qs_kll_rank_est(sk, ext, 4, 1, ests[e], ri) != QS_OK ||
            qs_kll_rank_est(sk, ext, 4, 0, ests[e], rx) != QS_OK) {
            fail("rank of the extremes failed");
            return 0;
        }
        /* the step estimator exactly; the others exactly below 2^52 items,
         * beyond up to rounding (their ranks are sums of doubles) */
        const double tol = (e == 0 || (double)n < 0x1p52) ? 0.0 : 1e-12;
        if (rx[0] > tol || ri[1] < 1.0 - tol || ri[3] < 1.0 - tol || (lo > -INFINITY && ri[2] > tol)) {
            fail("estimator %d: rank(min) excl %.17g, rank(max) incl %.17g, rank(+inf) %.17g, rank(-inf) %.17g "
                 "(n %llu, min %.17g, max %.17g)",
                 ests[e], rx[0], ri[1], ri[3], ri[2], (unsigned long long)n, lo, hi);
            return 0;
        }
        if (e > 0) {
            /* linear, learned: within the step interval [exclusive, inclusive]
             * widened by the documented slack (qs_kll.h); spline: clipped into
             * the step estimate of the same rule +- normalized_rank_error(), or
             * the learned estimator's interval when the sketch has no layer */
            double si[NQ], sx[NQ];
            (void)qs_kll_rank_est(sk, q, NQ, 1, QS_EST_STEP, si);
            (void)qs_kll_rank_est(sk, q, NQ, 0, QS_EST_STEP, sx);
            double tol = slack;
            if (ests[e] == QS_EST_SPLINE) {
                const double eps = qs_kll_normalized_rank_error(qs_kll_k(sk), 0);
                if (eps > tol) tol = eps;
            }
            tol += 1e-9;
            for (int i = 0; i < NQ; i++) {
                if (incl[i] < sx[i] - tol || incl[i] > si[i] + tol || excl[i] < sx[i] - tol || excl[i] > si[i] + tol) {
                    fail("estimator %d: rank(%.17g) = %.17g / %.17g outside the step interval [%.17g, %.17g] +- %.3g",
                         ests[e], q[i], incl[i], excl[i], sx[i], si[i], tol);
                    return 0;
                }
            }
        }
        /* quantiles */
        double p[NQ];
        for (int i = 0; i < NQ; i++) p[i] = (i == 0) ? 0.0 : (i == 1) ? 1.0 : runit(r);
        for (int inclusive = 0; inclusive < 2; inclusive++) {
            if (qs_kll_quantile_est(sk, p, NQ, inclusive, ests[e], out) != QS_OK) {
                fail("quantile failed (estimator %d)", ests[e]);
                return 0;
            }
            for (int i = 0; i < NQ; i++) {
                if (!(out[i] >= lo && out[i] <= hi)) {
                    fail("estimator %d: quantile(%.17g) = %.17g outside [min, max] = [%.17g, %.17g]", ests[e], p[i],
                         out[i], lo, hi);
                    return 0;
                }
            }
            if (!(out[0] == lo && out[1] == hi)) {
                fail("estimator %d: quantile(0), quantile(1) = %.17g, %.17g; min, max = %.17g, %.17g", ests[e],
                     out[0], out[1], lo, hi);
                return 0;
            }
        }
    }
    return 1;
}

static int check_roundtrip(const qs_kll *sk, const char *when)
{
    bytes_t b = serialize(sk);
    qs_status st;
    const char *m = NULL;
    qs_kll *again = qs_kll_deserialize(b.p, b.len, &st, &m);
    int ok = 1;
    if (!again) {
        fail("%s: re-encoded bytes do not decode: %s", when, m ? m : "?");
        ok = 0;
    } else {
        bytes_t b2 = serialize(again);
        if (b2.len != b.len || memcmp(b2.p, b.p, b.len) != 0) {
            fail("%s: decode(encode(sketch)) encodes to other bytes", when);
            ok = 0;
        }
        free(b2.p);
        qs_kll_free(again);
    }
    free(b.p);
    return ok;
}

/* Everything a caller may do with an accepted sketch. */
static void exercise(qs_kll *sk, uint64_t seed)
{
    rng_t r = {seed};
    qs_status st;
    qs_kll *c = NULL, *p2 = NULL;
    double x[300];
    uint64_t w[8];
    g_stage = "the decoded sketch";
    if (!invariants_ok(sk, "after decoding")) goto done;
    if (!check_roundtrip(sk, "decoded sketch")) goto done;
    if (!check_queries(sk, &r)) goto done;
    g_stage = "merged with itself";

    /* merges: with itself (a copy), into a fresh sketch, and a fresh one into it */
    c = qs_kll_copy(sk, &st);
    EXPECT(c != NULL, "copy failed");
    {
        const uint64_t n0 = qs_kll_n(c);
        st = qs_kll_merge(c, sk);
        EXPECT(st == QS_OK || st == QS_EOVERFLOW, "merge with itself: status %d", (int)st);
        if (st == QS_OK) EXPECT(qs_kll_n(c) == 2 * n0, "merge with itself: n %llu, want %llu",
                                (unsigned long long)qs_kll_n(c), (unsigned long long)(2 * n0));
        else EXPECT(qs_kll_n(c) == n0, "a failed merge changed n");
        if (!invariants_ok(c, "after merging a decoded sketch with itself")) goto done;
        if (!check_queries(c, &r)) goto done;
    }
    g_stage = "merged into a fresh sketch";
    p2 = qs_kll_copy(g_partner, &st);
    EXPECT(p2 != NULL, "copy failed");
    st = qs_kll_merge(p2, sk);
    EXPECT(st == QS_OK || st == QS_EOVERFLOW, "merge into a fresh sketch: status %d", (int)st);
    if (st == QS_OK)
        EXPECT(qs_kll_n(p2) == qs_kll_n(g_partner) + qs_kll_n(sk), "merge into a fresh sketch: n is off");
    if (!invariants_ok(p2, "after merging a decoded sketch into a fresh one")) goto done;
    if (!check_queries(p2, &r)) goto done;
    qs_kll_free(c);
    g_stage = "a fresh sketch merged into it";
    c = qs_kll_copy(sk, &st);
    EXPECT(c != NULL, "copy failed");
    {
        const uint64_t n0 = qs_kll_n(c);
        st = qs_kll_merge(c, g_partner);
        EXPECT(st == QS_OK || st == QS_EOVERFLOW, "merge of a fresh sketch into a decoded one: status %d", (int)st);
        if (st == QS_OK) EXPECT(qs_kll_n(c) == n0 + qs_kll_n(g_partner), "merge of a fresh sketch: n is off");
        if (!invariants_ok(c, "after merging a fresh sketch into a decoded one")) goto done;
    }

    /* updates: scalar, batch (long enough for the bulk path), weighted */
    g_stage = "updated";
    {
        uint64_t n0 = qs_kll_n(sk);
        const double span = (qs_kll_n(sk) && isfinite(qs_kll_max(sk) - qs_kll_min(sk)))
                                ? qs_kll_max(sk) - qs_kll_min(sk) + 1.0 : 10.0;
        const double base = (qs_kll_n(sk) && isfinite(qs_kll_min(sk))) ? qs_kll_min(sk) : 0.0;
        for (int i = 0; i < 300; i++) {
            x[i] = (rnext(&r) % 8 == 0) ? INTERESTING_DOUBLES[rnext(&r) % N_INTERESTING_DOUBLES]
                                         : base + runit(&r) * span;
        }
        uint64_t added = 0;
        for (int i = 0; i < 100; i++) {
            st = qs_kll_update(sk, x[i], 0);
            EXPECT(st == QS_OK || st == QS_EOVERFLOW, "update: status %d", (int)st);
            if (st == QS_OK && x[i] == x[i]) added++;
        }
        EXPECT(qs_kll_n(sk) == n0 + added, "scalar updates: n %llu, want %llu", (unsigned long long)qs_kll_n(sk),
               (unsigned long long)(n0 + added));
        if (!invariants_ok(sk, "after scalar updates of a decoded sketch")) goto done;
        n0 = qs_kll_n(sk);
        st = qs_kll_update_batch(sk, x + 100, 200, 0);
        if (st == QS_OK) {
            uint64_t nn = 0;
            for (int i = 100; i < 300; i++) nn += x[i] == x[i];
            EXPECT(qs_kll_n(sk) == n0 + nn, "batch update: n is off");
        } else {
            EXPECT(st == QS_EOVERFLOW, "batch update: status %d", (int)st);
        }
        if (!invariants_ok(sk, "after a batch update of a decoded sketch")) goto done;
        n0 = qs_kll_n(sk);
        for (int i = 0; i < 8; i++) w[i] = 1 + (rnext(&r) >> (rnext(&r) % 64));
        st = qs_kll_update_weighted(sk, x, w, 8, 0);
        if (st == QS_OK) {
            uint64_t nn = 0;
            for (int i = 0; i < 8; i++) nn += (x[i] == x[i]) ? w[i] : 0;
            EXPECT(qs_kll_n(sk) == n0 + nn, "weighted update: n is off");
        } else {
            EXPECT(st == QS_EOVERFLOW, "weighted update: status %d", (int)st);
            EXPECT(qs_kll_n(sk) == n0, "a refused weighted update changed n");
        }
        if (!invariants_ok(sk, "after a weighted update of a decoded sketch")) goto done;
        if (!check_queries(sk, &r)) goto done;
        if (!check_roundtrip(sk, "updated sketch")) goto done;
    }
done:
    g_stage = "";
    qs_kll_free(c);
    qs_kll_free(p2);
}

/* Decode one input and hold the result to the contract.  Returns 1 when the
 * input was accepted. */
static int run_one(const uint8_t *data, size_t len)
{
    /* an exact-size heap copy, so that ASan sees any read past the end */
    uint8_t *copy = xmalloc(len);
    if (len) memcpy(copy, data, len);
    g_cur = copy;
    g_cur_len = len;
    qs_status st = QS_OK;
    const char *msg = NULL;
    qs_kll *sk = qs_kll_deserialize(copy, len, &st, &msg);
    int accepted = 0;
    if (!sk) {
        if (st == QS_OK || msg == NULL || msg[0] == '\0')
            fail("refused without a status or a message (status %d)", (int)st);
    } else {
        accepted = 1;
        if (st != QS_OK || msg != NULL) fail("accepted, but the status is %d", (int)st);
        exercise(sk, hash_bytes(copy, len));
        qs_kll_free(sk);
    }
    g_cur = NULL;
    free(copy);
    return accepted;
}

/* ======================================================================== */
/* Mutations                                                                */
/* ======================================================================== */

static const uint64_t INTERESTING_INTS[] = {
    0, 1, 2, 3, 7, 8, 9, 15, 16, 31, 32, 63, 64, 65, 127, 128, 200, 255, 256, 1000, 0x7fff, 0x8000, 0xffff,
    0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, UINT64_C(0x100000000), UINT64_C(0x8000000000000000),
    UINT64_C(0x7fffffffffffffff), UINT64_C(0xffffffffffffffff), UINT64_C(0xfffffffffffffffe)};
#define N_INTERESTING_INTS (sizeof INTERESTING_INTS / sizeof INTERESTING_INTS[0])

/* offsets of the header's fields, and their widths */
static const uint8_t FIELD_OFF[] = {3, 4, 5, 6, 8, 9, 10, 11, 12, 16, 24, 32, 40, 48};
static const uint8_t FIELD_LEN[] = {1, 1, 1, 2, 1, 1, 1, 1, 4, 8, 8, 8, 8, 8};
#define N_FIELDS (sizeof FIELD_OFF / sizeof FIELD_OFF[0])

static void put_le(uint8_t *p, uint64_t v, size_t width)
{
    for (size_t i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Where the item area of a well-formed input starts and how many items it
 * has (0 when the header does not look right). */
static size_t item_area(const uint8_t *p, size_t len, size_t *count)
{
    *count = 0;
    if (len < 60) return 0;
    const size_t L = p[9];
    const size_t start = 56 + 4 * L;
    if (start > len) return 0;
    *count = (len - start) / 8;
    return start;
}

static size_t mutate(uint8_t *p, size_t len, size_t cap, rng_t *r)
{
    const unsigned op = (unsigned)rbelow(r, 17);
    switch (op) {
    case 0: /* flip a bit */
        if (len) p[rbelow(r, len)] ^= (uint8_t)(1u << rbelow(r, 8));
        break;
    case 1: /* a random byte */
        if (len) p[rbelow(r, len)] = (uint8_t)rnext(r);
        break;
    case 2: { /* an interesting value in a header field */
        const size_t f = (size_t)rbelow(r, N_FIELDS);
        if (FIELD_OFF[f] + FIELD_LEN[f] <= len) {
            uint64_t v = INTERESTING_INTS[rbelow(r, N_INTERESTING_INTS)];
            if (rnext(r) & 1) v += (rnext(r) & 1) ? 1 : (uint64_t)-1;
            if (FIELD_LEN[f] == 8 && FIELD_OFF[f] >= 32 && FIELD_OFF[f] < 48 && (rnext(r) & 1)) {
                const double d = INTERESTING_DOUBLES[rbelow(r, N_INTERESTING_DOUBLES)];
                memcpy(&v, &d, 8);
            }
            put_le(p + FIELD_OFF[f], v, FIELD_LEN[f]);
        }
        break;
    }
    case 3: { /* an interesting integer anywhere */
        const size_t width = (size_t)1 << rbelow(r, 4);
        if (len >= width) put_le(p + rbelow(r, len - width + 1), INTERESTING_INTS[rbelow(r, N_INTERESTING_INTS)], width);
        break;
    }
    case 4:
    case 5: { /* an interesting double at an item */
        size_t count;
        const size_t start = item_area(p, len, &count);
        if (count) {
            const double d = INTERESTING_DOUBLES[rbelow(r, N_INTERESTING_DOUBLES)];
            memcpy(p + start + 8 * rbelow(r, count), &d, 8);
        }
        break;
    }
    case 6: { /* swap two items */
        size_t count;
        const size_t start = item_area(p, len, &count);
        if (count >= 2) {
            uint8_t t[8];
            uint8_t *a = p + start + 8 * rbelow(r, count), *b = p + start + 8 * rbelow(r, count);
            memcpy(t, a, 8);
            memcpy(a, b, 8);
            memcpy(b, t, 8);
        }
        break;
    }
    case 7: { /* move one item from one level size to another */
        if (len >= 60 && p[9] >= 1 && 56 + 4 * (size_t)p[9] <= len) {
            const size_t L = p[9];
            uint8_t *a = p + 56 + 4 * rbelow(r, L), *b = p + 56 + 4 * rbelow(r, L);
            const uint32_t va = get_u32(a);
            if (va > 0) {
                put_u32(a, va - 1);
                put_u32(b, get_u32(b) + 1);
            }
        }
        break;
    }
    case 8: { /* insert bytes */
        const size_t k = 1 + (size_t)rbelow(r, (rnext(r) & 1) ? 8 : 64);
        if (len + k <= cap) {
            const size_t at = (size_t)rbelow(r, len + 1);
            memmove(p + at + k, p + at, len - at);
            for (size_t i = 0; i < k; i++) p[at + i] = (rnext(r) & 1) ? 0 : (uint8_t)rnext(r);
            len += k;
        }
        break;
    }
    case 9: { /* delete bytes */
        if (len) {
            const size_t at = (size_t)rbelow(r, len);
            size_t k = 1 + (size_t)rbelow(r, (rnext(r) & 1) ? 8 : 64);
            if (k > len - at) k = len - at;
            memmove(p + at, p + at + k, len - at - k);
            len -= k;
        }
        break;
    }
    case 10: /* truncate */
        if (len) len = (size_t)rbelow(r, len);
        break;
    case 11: { /* copy a chunk over another place */
        if (len >= 2) {
            const size_t k = 1 + (size_t)rbelow(r, len / 2);
            const size_t from = (size_t)rbelow(r, len - k + 1), to = (size_t)rbelow(r, len - k + 1);
            memmove(p + to, p + from, k);
        }
        break;
    }
    case 12: { /* splice: our head, another corpus entry's tail */
        const bytes_t *o = &g_corpus[rbelow(r, g_ncorpus)];
        const size_t head = (size_t)rbelow(r, len + 1);
        const size_t from = (size_t)rbelow(r, o->len + 1);
        size_t tail = o->len - from;
        if (head + tail > cap) tail = cap - head;
        memcpy(p + head, o->p + from, tail);
        len = head + tail;
        break;
    }
    case 13: { /* the level count byte and the retained count, together */
        if (len >= 16) {
            p[9] = (uint8_t)rbelow(r, 70);
            if (rnext(r) & 1) put_u32(p + 12, (uint32_t)rbelow(r, 4096));
        }
        break;
    }
    case 14: { /* a sorted level made unsorted, or an unsorted one sorted */
        size_t count;
        const size_t start = item_area(p, len, &count);
        if (count >= 2) {
            const size_t a = (size_t)rbelow(r, count), b = (size_t)rbelow(r, count);
            const size_t lo = a < b ? a : b, hi = a < b ? b : a;
            double *tmp = xmalloc((hi - lo + 1) * sizeof(double));
            memcpy(tmp, p + start + 8 * lo, (hi - lo + 1) * 8);
            for (size_t i = 0; i <= hi - lo; i++) if (tmp[i] != tmp[i]) tmp[i] = 0.0;
            qsort(tmp, hi - lo + 1, sizeof(double), cmp_dbl);
            if (rnext(r) & 1) /* reversed */
                for (size_t i = 0, j = hi - lo; i < j; i++, j--) { double t = tmp[i]; tmp[i] = tmp[j]; tmp[j] = t; }
            memcpy(p + start + 8 * lo, tmp, (hi - lo + 1) * 8);
            free(tmp);
        }
        break;
    }
    case 15: { /* the tail before the CRC (the exact table and the bucket section, varints) */
        if (len >= 8) {
            const size_t span = len - 4 < 48 ? len - 4 : 48;
            uint8_t *at = p + len - 4 - 1 - (size_t)rbelow(r, span);
            const unsigned pick = (unsigned)rbelow(r, 4);
            *at = pick == 0 ? 0x80 : pick == 1 ? 0x00 : pick == 2 ? 0xff : (uint8_t)rnext(r);
        }
        break;
    }
    default: { /* n, nan_count: small steps, so the weight check is just missed or just met */
        if (len >= 32) {
            uint8_t *f = p + ((rnext(r) & 1) ? 16 : 24);
            uint64_t v = 0;
            for (int i = 7; i >= 0; i--) v = (v << 8) | f[i];
            v += (uint64_t)(int64_t)((int64_t)rbelow(r, 17) - 8) << rbelow(r, 64);
            put_u64(f, v);
        }
        break;
    }
    }
    return len;
}

/* ======================================================================== */
/* Driver                                                                   */
/* ======================================================================== */

static unsigned long long g_replayed = 0, g_replay_accepted = 0;
static int g_replay_only = 0;

static void load_file(const char *path, const bytes_t *b)
{
    (void)path;
    g_exec++;
    memset(g_trace, 0, sizeof g_trace);
    g_prev_pc = 0;
    g_replay_accepted += (unsigned long long)run_one(b->p, b->len);
    g_replayed++;
    fold_coverage();
    if (g_failed) fprintf(stderr, "fuzz_serde: the failing corpus file is %s\n", path);
    if (!g_replay_only && b->len <= MAX_INPUT) corpus_add(b->p, b->len);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: fuzz_serde [-t seconds] [-n executions] [-s seed] [-w watchdog seconds]\n"
            "                  [-o output dir] [-r] [corpus files or directories...]\n"
            "  -t  stop after this many seconds (default 5)\n"
            "  -n  stop after this many mutated executions (default: no limit)\n"
            "  -s  seed of the mutation generator (default 1): the same seed and -n replay a run\n"
            "  -w  watchdog: fail if one execution takes longer (default 10 s)\n"
            "  -o  write failing inputs, and with -k new-coverage inputs, to this directory\n"
            "  -k  keep: write every input that reached new code to the -o directory\n"
            "  -r  replay the named files only, no mutation\n");
}

int main(int argc, char **argv)
{
    double seconds = 5.0;
    unsigned long long max_execs = 0, seed = 1;
    unsigned watchdog = 10;
    int keep = 0;
    int opt;
    while ((opt = getopt(argc, argv, "t:n:s:w:o:krh")) != -1) {
        switch (opt) {
        case 't': seconds = atof(optarg); break;
        case 'n': max_execs = strtoull(optarg, NULL, 10); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'w': watchdog = (unsigned)atoi(optarg); break;
        case 'o': g_out_dir = optarg; break;
        case 'k': keep = 1; break;
        case 'r': g_replay_only = 1; break;
        default: usage(); return opt == 'h' ? 0 : 2;
        }
    }
    if (g_out_dir) mkdir(g_out_dir, 0777);
    setvbuf(stdout, NULL, _IOLBF, 0);
#ifdef FUZZ_ASAN
    __sanitizer_set_death_callback(on_death);
#endif
    signal(SIGALRM, on_alarm);

    {
        qs_status st;
        g_partner = qs_kll_new(64, 99, &st);
        (void)qs_kll_set_buckets(g_partner, 16);
        rng_t r = {5};
        for (int i = 0; i < 2000; i++) (void)qs_kll_update(g_partner, runit(&r) * 4.0 - 2.0, 0);
    }
    if (!g_replay_only) {
        static const uint32_t layer[3] = {0, 128, 5}; /* no accuracy layer, the binding's default, a tiny one */
        for (int i = 0; i < 3; i++) {
            g_seed_buckets = layer[i];
            build_seeds();
        }
        /* the seeds themselves must decode and pass */
        const size_t nseeds = g_ncorpus;
        for (size_t i = 0; i < nseeds && !g_failed; i++) {
            memset(g_trace, 0, sizeof g_trace);
            g_prev_pc = 0;
            alarm(watchdog);
            if (!run_one(g_corpus[i].p, g_corpus[i].len)) fail("seed %zu does not decode", i);
            alarm(0);
            fold_coverage();
        }
    }
    const double t0 = now_seconds();
    for (int i = optind; i < argc && !g_failed; i++) {
        alarm(watchdog);
        for_each_file(argv[i], load_file);
        alarm(0);
    }
    if (g_replay_only) {
        printf("fuzz_serde: replayed %llu files, %llu decoded to sketches; %s\n", g_replayed, g_replay_accepted,
               g_failed ? "FAILED" : "all within the contract");
        qs_kll_free(g_partner);
        return g_failed ? 1 : 0;
    }

    rng_t r = {seed};
    uint8_t *buf = xmalloc(MAX_INPUT);
    unsigned long long execs = 0, accepted = 0, crc_fixed = 0, added = 0;
    double last_report = t0;
    while (!g_failed) {
        if (max_execs && execs >= max_execs) break;
        if ((execs & 63) == 0) {
            const double t = now_seconds();
            if (t - t0 >= seconds) break;
            if (t - last_report >= 10.0) {
                printf("fuzz_serde: %llu executions, %.0f/s, corpus %zu, edges %zu\n", execs, execs / (t - t0),
                       g_ncorpus, edges_seen());
                last_report = t;
            }
        }
        /* recently found entries are picked more often */
        const size_t pick = (rnext(&r) & 1) && g_ncorpus > 8 ? g_ncorpus - 1 - (size_t)rbelow(&r, 8)
                                                             : (size_t)rbelow(&r, g_ncorpus);
        const bytes_t *src = &g_corpus[pick];
        size_t len = src->len < MAX_INPUT ? src->len : MAX_INPUT;
        memcpy(buf, src->p, len);
        const int rounds = 1 + (int)rbelow(&r, 4);
        for (int i = 0; i < rounds; i++) len = mutate(buf, len, MAX_INPUT, &r);
        if (rbelow(&r, 8) != 0) {
            put_crc(buf, len);
            crc_fixed++;
        }
        g_exec = ++execs;
        memset(g_trace, 0, sizeof g_trace);
        g_prev_pc = 0;
        alarm(watchdog);
        accepted += (unsigned long long)run_one(buf, len);
        alarm(0);
        if (fold_coverage()) {
            corpus_add(buf, len);
            added++;
            if (keep && g_out_dir) {
                g_cur = buf;
                g_cur_len = len;
                save_input("cov");
                g_cur = NULL;
            }
        }
    }
    const double dt = now_seconds() - t0;
    printf("fuzz_serde: %llu executions in %.1f s (%.0f/s), seed %llu: %llu decoded to sketches, "
           "%llu with a recomputed CRC; corpus %zu (+%llu new), %zu edges; %s\n",
           execs, dt, dt > 0 ? execs / dt : 0.0, seed, accepted, crc_fixed, g_ncorpus, added, edges_seen(),
           g_failed ? "FAILED" : "no contract violation");
    free(buf);
    for (size_t i = 0; i < g_ncorpus; i++) free(g_corpus[i].p);
    qs_kll_free(g_partner);
    return g_failed ? 1 : 0;
}
