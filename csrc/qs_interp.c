/*
 * qs_interp.c -- interpolating rank and quantile estimators over KLL levels.
 *
 * After Schiefer, Chen, Indyk, Narayanan, Silwal, Wagner (2023), "Learned
 * Interpolation for Better Streaming Quantile Approximation with Worst-Case
 * Guarantees".  KLL's step estimator counts each retained item of level h as
 * 2^h items sitting exactly at its value.  They are not: a compaction keeps
 * one item of each sorted pair, so a survivor stands for stream items on both
 * sides of it, and after h compactions for 2^h items spread between its
 * neighbours in the same level.  The interpolating estimators place that mass
 * where it belongs:
 *
 *  - an item of level h >= 1 that is not an atom keeps a point mass of 1 (it
 *    is a real stream item) and spreads (2^h - 1)/2 into the gap to its left
 *    neighbour in its level and as much into the gap to its right (the gaps
 *    at the ends reach min and max, which the sketch knows exactly);
 *  - an atom, a value retained more than once (ties, discrete scores), every
 *    item of level 0, and the items above the highest level any compaction
 *    has reached (weighted updates put exact items there) keep their whole
 *    weight as a point mass;
 *  - inside a gap (a, b) of a level, the gap's mass M is spread along a shape
 *    G: the mass below q is M (G(q) - G(a)) / (G(b) - G(a)).  "linear" takes
 *    G(q) = q.  "learned" takes for G a monotone cubic (PCHIP, Fritsch and
 *    Carlson 1980) through the sketch's own mid-rank CDF at every retained
 *    value: the wide gaps of the top levels are then filled in the shape that
 *    the finer lower levels see, which follows heavy tails and curved
 *    densities that a straight line cannot.
 *
 * Summing the levels, the estimated rank is piecewise in G between
 * consecutive distinct retained values (knots), so one pass builds, per knot
 * x[i], the estimated weights lo[i] (< x[i]) and hi[i] (<= x[i]); a query is
 * then a binary search and one evaluation of G.  quantile() inverts it.
 *
 * Guarantee: each level's share differs from its step count by at most
 * (2^h - 1)/2, so every estimate lies within the step estimator's interval
 * [exclusive, inclusive] widened by qs_kll_interp_slack() items: KLL's bound
 * plus at most half an item weight per level.  In exact mode, in the exact
 * low-cardinality mode and before any compaction the step estimator is exact,
 * and the interpolating estimators return its answers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qs_kll_internal.h"
#include "qs_sort.h"

void qs_est_view_free(qs_est_view *v)
{
    if (!v) return;
    free(v->x);
    free(v->lo);
    free(v->hi);
    free(v->sa);
    free(v->sb);
    free(v->logs);
    free(v);
}

qs_status qs_est_reserve(qs_est_view *v, uint32_t n)
{
    if (n <= v->cap) return QS_OK;
    double **arrays[5] = {&v->x, &v->lo, &v->hi, &v->sa, &v->sb};
    for (int a = 0; a < 5; a++) {
        double *p = realloc(*arrays[a], (size_t)n * sizeof(double));
        if (!p) return QS_ENOMEM;
        *arrays[a] = p;
    }
    uint8_t *logs = realloc(v->logs, n);
    if (!logs) return QS_ENOMEM;
    v->logs = logs;
    v->cap = n;
    return QS_OK;
}

static int interpolates(const qs_kll *sk) { return sk->compacted && !sk->tab_limit; }

double qs_kll_interp_slack(const qs_kll *sk)
{
    if (!interpolates(sk)) return 0.0;
    double slack = 0.0;
    for (uint32_t h = 1; h < sk->num_levels && h <= sk->compacted; h++)
        if (sk->levels[h + 1] > sk->levels[h]) slack += (ldexp(1.0, (int)h) - 1.0) / 2.0;
    return slack;
}

/* The t in [0, 1] with hermite(t) = g: Newton steps kept inside a shrinking bracket. */
static double hermite_inverse(double g, double sa, double sb)
{
    if (rational_shape(sa, sb)) { /* the rational quadratic's root, in its stable form */
        const double c = sa + sb - 2.0, A = 1.0 - sa + g * c, B = sa - g * c;
        const double t = 2.0 * g / (B + sqrt(B * B + 4.0 * A * g));
        return t == t ? (t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t)) : g;
    }
    double lo = 0.0, hi = 1.0, t = g;
    for (int it = 0; it < 60; it++) {
        const double f = hermite(t, sa, sb) - g;
        if (fabs(f) < 1e-12) break;
        if (f < 0.0) lo = t;
        else hi = t;
        const double u = 1.0 - t;
        const double d = 6.0 * t * u + sa * u * (u - 2.0 * t) + sb * t * (3.0 * t - 2.0);
        double next = d > 0.0 ? t - f / d : 0.5 * (lo + hi);
        if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
        if (hi - lo < 1e-12) break;
        t = next;
    }
    return t;
}

/* Spread mass M over the gap between knots a < b (see the top of the file). */
static void add_gap(const qs_est_view *v, const double *G, int learned, uint32_t a, uint32_t b,
                    double M, double *point, double *diff, double *partial)
{
    if (M <= 0.0) return;
    if (a == b) { /* no room: keep it at the knot */
        point[a] += M;
        diff[a + 1] += M;
        return;
    }
    diff[b] += M;
    /* a flat model (its knots' ranks equal at double precision, beyond 2^53
     * items) has no shape to offer: spread linearly in value instead */
    if (learned && G[b] - G[a] > 0.0) {
        const double base = G[a], span = G[b] - G[a];
        for (uint32_t i = a + 1; i < b; i++) partial[i] += M * ((G[i] - base) / span);
    } else {
        for (uint32_t i = a + 1; i < b; i++) partial[i] += M * value_fraction(v->x[a], v->x[b], v->x[i]);
    }
}

/* Points of the learned CDF model: enough to follow curvature and tails, few
 * enough that the granularity of the retained weights averages out. */
#define QS_MODEL_POINTS 65

/*
 * PCHIP (Fritsch-Carlson, as scipy's PchipInterpolator) derivatives d[] at
 * strictly increasing finite x[] of strictly increasing y[].  Widths are
 * halved (x[i+1]/2 - x[i]/2), which stays finite for any finite x; d[] is in
 * units of y per half-unit of x accordingly.
 */
static void pchip_derivatives(const double *x, const double *y, uint32_t m, double *d)
{
    if (m < 2) {
        if (m == 1) d[0] = 0.0;
        return;
    }
    if (m == 2) {
        d[0] = d[1] = (y[1] - y[0]) / (x[1] * 0.5 - x[0] * 0.5);
        return;
    }
    for (uint32_t i = 1; i + 1 < m; i++) {
        const double h0 = x[i] * 0.5 - x[i - 1] * 0.5, h1 = x[i + 1] * 0.5 - x[i] * 0.5;
        const double s0 = (y[i] - y[i - 1]) / h0, s1 = (y[i + 1] - y[i]) / h1;
        /* weighted harmonic mean, with weights normalized so that extreme
         * scales (slopes near 1e300) neither overflow nor underflow */
        const double a = (2.0 * h1 + h0) / (3.0 * (h0 + h1)), b = 1.0 - a;
        d[i] = 1.0 / (a / s0 + b / s1);
    }
    for (int end = 0; end < 2; end++) { /* one-sided three-point estimates, kept in [0, 3 s0] */
        const uint32_t i0 = end ? m - 1 : 0, i1 = end ? m - 2 : 1, i2 = end ? m - 3 : 2;
        const double h0 = fabs(x[i1] * 0.5 - x[i0] * 0.5), h1 = fabs(x[i2] * 0.5 - x[i1] * 0.5);
        const double s0 = fabs(y[i1] - y[i0]) / h0, s1 = fabs(y[i2] - y[i1]) / h1;
        double e = ((2.0 * h0 + h1) * s0 - h0 * s1) / (h0 + h1);
        if (!(e > 0.0)) e = 0.0;
        if (e > 3.0 * s0) e = 3.0 * s0;
        d[i0] = e;
    }
}

/*
 * The learned model G: the PCHIP through QS_MODEL_POINTS points of the
 * sketch's mid-rank CDF F (piecewise linear through the knots) at evenly
 * spaced ranks, evaluated with its derivative at every knot.  Smooth where F
 * is grainy (each retained item moves F by its weight), and it bends with
 * the distribution, which a straight line between distant items cannot.
 * Falls back to G = F when the knots are not all finite.
 */
static qs_status fit_model(const qs_est_view *v, const double *F, double *G, double *D)
{
    const uint32_t K = v->size;
    const double *x = v->x;
    int finite = 1;
    for (uint32_t i = 0; i < K && finite; i++) finite = isfinite(x[i]);
    if (!finite || K < 3) {
        for (uint32_t i = 0; i < K; i++) {
            G[i] = F[i];
            D[i] = NAN; /* no model derivative: segments stay linear in G */
        }
        return QS_OK;
    }
    double u[QS_MODEL_POINTS], t[QS_MODEL_POINTS], d[QS_MODEL_POINTS];
    uint32_t m = 0, i = 0;
    for (uint32_t j = 0; j < QS_MODEL_POINTS; j++) {
        const double target = F[0] + (F[K - 1] - F[0]) * ((double)j / (QS_MODEL_POINTS - 1));
        while (i + 2 < K && F[i + 1] < target) i++;
        double frac = (target - F[i]) / (F[i + 1] - F[i]);
        frac = frac < 0.0 ? 0.0 : (frac > 1.0 ? 1.0 : frac);
        const double uj = 2.0 * (x[i] * 0.5 + frac * (x[i + 1] * 0.5 - x[i] * 0.5));
        if (m == 0 || uj > u[m - 1]) { /* an atom can map several ranks to one value */
            u[m] = uj;
            t[m++] = target;
        }
    }
    if (m < 2) {
        for (uint32_t q = 0; q < K; q++) {
            G[q] = F[q];
            D[q] = NAN;
        }
        return QS_OK;
    }
    pchip_derivatives(u, t, m, d);
    uint32_t seg = 0;
    for (uint32_t q = 0; q < K; q++) {
        while (seg + 2 < m && u[seg + 1] < x[q]) seg++;
        const double hh = u[seg + 1] * 0.5 - u[seg] * 0.5;
        double s = (x[q] * 0.5 - u[seg] * 0.5) / hh;
        s = s < 0.0 ? 0.0 : (s > 1.0 ? 1.0 : s);
        const double dy = t[seg + 1] - t[seg];
        double sa = d[seg] * hh / dy, sb = d[seg + 1] * hh / dy;
        sa = sa >= 0.0 && sa <= 3.0 ? sa : (sa > 3.0 ? 3.0 : 1.0); /* NaN or inf: linear */
        sb = sb >= 0.0 && sb <= 3.0 ? sb : (sb > 3.0 ? 3.0 : 1.0);
        G[q] = t[seg] + dy * hermite(s, sa, sb);
        /* dG/d(half-unit of x), from the derivative of the normalized cubic */
        const double w = 1.0 - s;
        D[q] = dy / hh * (6.0 * s * w + sa * w * (w - 2.0 * s) + sb * s * (3.0 * s - 2.0));
    }
    /* the fractions need G strictly increasing over distinct knots: if
     * rounding broke that anywhere, use F itself */
    for (uint32_t q = 1; q < K; q++) {
        if (!(G[q] > G[q - 1]) || !isfinite(G[q])) {
            for (uint32_t r = 0; r < K; r++) {
                G[r] = F[r];
                D[r] = NAN;
            }
            break;
        }
    }
    return QS_OK;
}

/* Normalized Hermite slopes of each segment between knots, from G and D. */
static void segment_slopes(qs_est_view *v, const double *G, const double *D)
{
    for (uint32_t i = 0; i + 1 < v->size; i++) {
        double sa = 1.0, sb = 1.0;
        const double hh = v->x[i + 1] * 0.5 - v->x[i] * 0.5, dG = G[i + 1] - G[i];
        if (isfinite(hh) && hh > 0.0 && dG > 0.0 && D[i] == D[i] && D[i + 1] == D[i + 1]) {
            sa = D[i] * hh / dG;
            sb = D[i + 1] * hh / dG;
            /* Fritsch-Carlson: slopes within [0, 3] keep the cubic monotone */
            sa = sa < 0.0 ? 0.0 : (sa > 3.0 ? 3.0 : sa);
            sb = sb < 0.0 ? 0.0 : (sb > 3.0 ? 3.0 : sb);
        }
        v->sa[i] = sa;
        v->sb[i] = sb;
    }
}

/* The accuracy layer's view: its knots and counts (qs_bk_view), cached. */
static qs_status build_spline(qs_kll *sk, qs_est_view **out)
{
    if (!sk->est[2]) {
        sk->est[2] = calloc(1, sizeof(qs_est_view));
        if (!sk->est[2]) return QS_ENOMEM;
    }
    if (!sk->est[2]->valid) {
        qs_status st = qs_bk_view(sk, sk->est[2]);
        if (st != QS_OK) return st;
    }
    *out = sk->est[2];
    return QS_OK;
}

static qs_status build_est(qs_kll *sk, int learned, qs_est_view **out)
{
    const int slot = learned ? 1 : 0;
    if (sk->est[slot] && sk->est[slot]->valid) {
        *out = sk->est[slot];
        return QS_OK;
    }
    const double *items;
    const uint64_t *cum;
    uint32_t R;
    qs_status st = qs_kll_sorted_view(sk, &items, &cum, &R);
    if (st != QS_OK) return st;
    if (!sk->est[slot]) {
        sk->est[slot] = calloc(1, sizeof(qs_est_view));
        if (!sk->est[slot]) return QS_ENOMEM;
    }
    qs_est_view *v = sk->est[slot];
    const uint32_t K_max = R + 2;
    st = qs_est_reserve(v, K_max);
    if (st != QS_OK) return st;

    /* scratch: weight and multiplicity per knot, F, point/diff/partial, level-0 copy */
    const uint32_t L0 = sk->levels[1] - sk->levels[0];
    double *W = malloc((size_t)K_max * sizeof(double));
    uint32_t *mult = malloc((size_t)K_max * sizeof(uint32_t));
    double *F = malloc((size_t)K_max * sizeof(double));
    double *G = malloc((size_t)K_max * sizeof(double));
    double *D = malloc((size_t)K_max * sizeof(double));
    double *point = calloc(K_max, sizeof(double));
    double *diff = calloc((size_t)K_max + 1, sizeof(double));
    double *partial = calloc(K_max, sizeof(double));
    double *level0 = malloc((size_t)(L0 ? L0 : 1) * sizeof(double));
    if (!W || !mult || !F || !G || !D || !point || !diff || !partial || !level0) {
        st = QS_ENOMEM;
        goto done;
    }

    /* knots: min, the distinct retained values, max */
    uint32_t K = 0;
    if (sk->min < items[0]) {
        v->x[K] = sk->min;
        W[K] = 0.0;
        mult[K++] = 0;
    }
    for (uint32_t i = 0; i < R; i++) {
        const double wi = (double)(cum[i] - (i ? cum[i - 1] : 0));
        if (K > 0 && v->x[K - 1] == items[i] && mult[K - 1] > 0) {
            W[K - 1] += wi;
            mult[K - 1]++;
        } else {
            v->x[K] = items[i];
            W[K] = wi;
            mult[K++] = 1;
        }
    }
    if (sk->max > items[R - 1]) {
        v->x[K] = sk->max;
        W[K] = 0.0;
        mult[K++] = 0;
    }
    v->size = K;
    {
        double before = 0.0; /* mid-rank CDF of the retained items: the learned model's knots */
        for (uint32_t i = 0; i < K; i++) {
            F[i] = before + 0.5 * W[i];
            before += W[i];
        }
    }
    if (learned) {
        st = fit_model(v, F, G, D);
        if (st != QS_OK) goto done;
    }

    /* per level: point masses and gap masses */
    for (uint32_t h = 0; h < sk->num_levels; h++) {
        const uint32_t beg = sk->levels[h], size = sk->levels[h + 1] - beg;
        if (!size) continue;
        const double *y = sk->items + beg;
        if (h == 0 && !sk->level0_sorted) {
            memcpy(level0, y, (size_t)size * sizeof(double));
            qs_sort_doubles(level0, size);
            y = level0;
        }
        /* levels above the highest compaction hold exact weighted items */
        const double w = ldexp(1.0, (int)h), spread = h <= sk->compacted ? (w - 1.0) / 2.0 : 0.0;
        uint32_t knot = 0, prev = 0;
        double prev_right = 0.0;
        for (uint32_t j = 0; j < size; j++) {
            while (v->x[knot] < y[j]) knot++;
            const int atom = mult[knot] >= 2;
            /* a spread item keeps 1 (itself) at its value; an unspread one all of w */
            double pm = atom ? w : w - 2.0 * spread, sl = atom ? 0.0 : spread, sr = sl;
            if (knot == 0) { pm += sl; sl = 0.0; }
            if (knot == K - 1) { pm += sr; sr = 0.0; }
            add_gap(v, G, learned, prev, knot, prev_right + sl, point, diff, partial);
            point[knot] += pm;
            diff[knot + 1] += pm;
            prev = knot;
            prev_right = sr;
        }
        add_gap(v, G, learned, prev, K - 1, prev_right, point, diff, partial);
    }
    {
        double run = 0.0;
        for (uint32_t i = 0; i < K; i++) {
            run += diff[i];
            double lo = run + partial[i];
            /* rounding must not break monotonicity */
            if (i > 0 && lo < v->hi[i - 1]) lo = v->hi[i - 1];
            v->lo[i] = lo;
            v->hi[i] = lo + point[i];
        }
    }
    if (learned) segment_slopes(v, G, D);
    v->valid = 1;
    *out = v;
done:
    free(W);
    free(mult);
    free(F);
    free(G);
    free(D);
    free(point);
    free(diff);
    free(partial);
    free(level0);
    return st;
}

/* The view behind an interpolating estimator; *learned: its segments are
 * Hermite cubics; *clip: its answers are clipped to the compactors' interval. */
static qs_status view_for(qs_kll *sk, int estimator, qs_est_view **v, int *learned, int *clip)
{
    *clip = 0;
    if (estimator == QS_EST_SPLINE) {
        if (sk->bk.cap) {
            *learned = *clip = 1;
            return build_spline(sk, v);
        }
        estimator = QS_EST_LEARNED;
    }
    if (estimator != QS_EST_LINEAR && estimator != QS_EST_LEARNED) return QS_EINVAL;
    *learned = estimator == QS_EST_LEARNED;
    return build_est(sk, *learned, v);
}

qs_status qs_kll_rank_est(qs_kll *sk, const double *q, size_t len, int inclusive, int estimator,
                          double *out)
{
    if (estimator == QS_EST_STEP || sk->n == 0 || !interpolates(sk))
        return qs_kll_rank(sk, q, len, inclusive, out);
    qs_est_view *v;
    int learned, clip;
    qs_status st = view_for(sk, estimator, &v, &learned, &clip);
    if (st != QS_OK) return st;
    const uint32_t K = v->size;
    const double n = (double)sk->n, eps = qs_kll_normalized_rank_error(sk->k, 0);
    size_t idx[256];
    double step[256];
    for (size_t start = 0; start < len; start += 256) {
        const size_t m = len - start < 256 ? len - start : 256;
        qs_count_below_many(v->x, K, q + start, m, 1, idx);
        if (clip) {
            st = qs_kll_rank(sk, q + start, m, inclusive, step);
            if (st != QS_OK) return st;
        }
        for (size_t i = 0; i < m; i++) {
            const double qi = q[start + i];
            const size_t c = idx[i]; /* knots <= q */
            double r;
            if (c == 0) {
                r = 0.0;
            } else if (v->x[c - 1] == qi) {
                r = inclusive ? v->hi[c - 1] : v->lo[c - 1];
            } else if (c == K) {
                r = n;
            } else {
                const size_t j = c - 1;
                double g = clip ? coord_fraction(v->x[j], v->x[j + 1], qi, v->logs[j])
                                : value_fraction(v->x[j], v->x[j + 1], qi);
                if (learned) g = hermite(g, v->sa[j], v->sb[j]);
                r = v->hi[j] + (v->lo[j + 1] - v->hi[j]) * g;
            }
            r /= n;
            if (clip) { /* never outside the compactors' guaranteed interval */
                if (r < step[i] - eps) r = step[i] - eps;
                if (r > step[i] + eps) r = step[i] + eps;
            }
            out[start + i] = r < 0.0 ? 0.0 : (r > 1.0 ? 1.0 : r);
        }
    }
    return QS_OK;
}

/* The value at fraction g of the way through segment j (inverse of the rank;
 * layer: the accuracy layer's view, whose wide segments are in log|x|). */
static double segment_value(const qs_est_view *v, size_t j, double g, int learned, int layer)
{
    const double a = v->x[j], b = v->x[j + 1];
    if (!isfinite(a) || !isfinite(b)) return isfinite(a) ? a : b;
    const double t = learned ? hermite_inverse(g, v->sa[j], v->sb[j]) : g;
    if (layer) return coord_value(a, b, t, v->logs[j]);
    const double x = 2.0 * (a * 0.5 + t * (b * 0.5 - a * 0.5));
    return x < a ? a : (x > b ? b : x);
}

qs_status qs_kll_quantile_est(qs_kll *sk, const double *p, size_t len, int inclusive,
                              int estimator, double *out)
{
    if (estimator == QS_EST_STEP || sk->n == 0 || !interpolates(sk))
        return qs_kll_quantile(sk, p, len, inclusive, out);
    for (size_t i = 0; i < len; i++)
        if (!(p[i] >= 0.0 && p[i] <= 1.0)) return QS_EINVAL;
    qs_est_view *v;
    int learned, clip;
    qs_status st = view_for(sk, estimator, &v, &learned, &clip);
    if (st != QS_OK) return st;
    const size_t K = v->size;
    const double n = (double)sk->n, eps = qs_kll_normalized_rank_error(sk->k, 0);
    double t[256], plo[256], phi[256], xlo[256], xhi[256];
    size_t idx[256];
    for (size_t start = 0; start < len; start += 256) {
        const size_t m = len - start < 256 ? len - start : 256;
        for (size_t i = 0; i < m; i++) t[i] = qs_quantile_weight(p[start + i], n);
        if (clip) { /* the compactors' answers at p -+ eps bracket the truth */
            for (size_t i = 0; i < m; i++) {
                plo[i] = p[start + i] - eps < 0.0 ? 0.0 : p[start + i] - eps;
                phi[i] = p[start + i] + eps > 1.0 ? 1.0 : p[start + i] + eps;
            }
            st = qs_kll_quantile(sk, plo, m, inclusive, xlo);
            if (st == QS_OK) st = qs_kll_quantile(sk, phi, m, inclusive, xhi);
            if (st != QS_OK) return st;
        }
        /* inclusive: the first knot with hi >= t, i.e. the count of hi < t;
         * exclusive: the first with hi > t, the count of hi <= t */
        qs_count_below_many(v->hi, K, t, m, !inclusive, idx);
        for (size_t i = 0; i < m; i++) {
            const double pi = p[start + i], ti = t[i];
            const size_t k = idx[i];
            double x;
            if (pi == 0.0) {
                x = sk->min;
            } else if (pi == 1.0 || k >= K) {
                x = sk->max;
            } else if ((inclusive ? v->lo[k] < ti : v->lo[k] <= ti) || k == 0) {
                x = v->x[k]; /* the rank jumps over t at this knot */
            } else {
                const double den = v->lo[k] - v->hi[k - 1];
                if (!(den > 0.0)) {
                    x = v->x[k];
                } else {
                    double g = (ti - v->hi[k - 1]) / den;
                    g = g < 0.0 ? 0.0 : (g > 1.0 ? 1.0 : g);
                    x = segment_value(v, k - 1, g, learned, clip);
                }
            }
            if (clip && pi > 0.0 && pi < 1.0) x = x < xlo[i] ? xlo[i] : (x > xhi[i] ? xhi[i] : x);
            out[start + i] = x;
        }
    }
    return QS_OK;
}
