/* k-means: k-means++ seeding, Lloyd iterations, restarts (see kmeans.h). */
#include "stats/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t qs_kmeans_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) from the top 53 bits */
static double rand01(uint64_t *state) { return (double)(qs_kmeans_rand(state) >> 11) * 0x1.0p-53; }

/* uniform in [0, n) with integer arithmetic only, so every platform agrees */
static int rand_below(uint64_t *state, int n) {
    return (int)(((qs_kmeans_rand(state) >> 32) * (uint64_t)n) >> 32);
}

static double dist2(const double *a, const double *b, int dim) {
    double s = 0;
    for (int i = 0; i < dim; i++) {
        double d = a[i] - b[i];
        s += d * d;
    }
    return s;
}

static qs_status check_args(const double *pts, int n, int dim, int k) {
    if (n < 1 || dim < 1 || k < 1)
        return qs_fail(QS_EARG, "k-means needs n >= 1 points, dim >= 1, k >= 1 (got n %d, dim %d, k %d)", n, dim, k);
    for (size_t i = 0; i < (size_t)n * dim; i++)
        if (!isfinite(pts[i]))
            return qs_fail(QS_EARG, "k-means: coordinate %zu of point %zu is not finite (%g)", i % (size_t)dim,
                           i / (size_t)dim, pts[i]);
    return QS_OK;
}

qs_status qs_kmeans_seed(const double *pts, int n, int dim, int k, uint64_t *state, double *centroids) {
    qs_status st = check_args(pts, n, dim, k);
    if (st) return st;
    if (k > n) return qs_fail(QS_EARG, "k-means++: %d centres from %d points", k, n);
    double *d2 = malloc((size_t)n * sizeof *d2);
    if (!d2) return qs_fail(QS_ENOMEM, "out of memory for k-means of %d points", n);
    int first = rand_below(state, n);
    memcpy(centroids, pts + (size_t)first * dim, (size_t)dim * sizeof(double));
    for (int i = 0; i < n; i++) d2[i] = dist2(pts + (size_t)i * dim, centroids, dim);
    for (int c = 1; c < k; c++) {
        double total = 0;
        for (int i = 0; i < n; i++) total += d2[i];
        int pick = -1;
        if (total > 0) {
            /* D^2 sampling: the first point whose running sum passes u; a
             * point already chosen (D = 0) can never be the one */
            double u = rand01(state) * total, run = 0;
            for (int i = 0; i < n && pick < 0; i++) {
                run += d2[i];
                if (run > u && d2[i] > 0) pick = i;
            }
            for (int i = n - 1; pick < 0 && i >= 0; i--) /* rounding left u past the end */
                if (d2[i] > 0) pick = i;
        } else {
            /* every point coincides with a centre: fewer distinct points
             * than k; a duplicate centre, which Lloyd's re-seeding resolves */
            pick = rand_below(state, n);
        }
        double *cen = centroids + (size_t)c * dim;
        memcpy(cen, pts + (size_t)pick * dim, (size_t)dim * sizeof(double));
        for (int i = 0; i < n; i++) {
            double d = dist2(pts + (size_t)i * dim, cen, dim);
            if (d < d2[i]) d2[i] = d;
        }
    }
    free(d2);
    return QS_OK;
}

qs_status qs_kmeans_lloyd(const double *pts, int n, int dim, int k, int max_iter, double *centroids,
                          int *labels, double *trace, int *iters) {
    if (iters) *iters = 0;
    qs_status st = check_args(pts, n, dim, k);
    if (st) return st;
    if (k > n) return qs_fail(QS_EARG, "k-means: %d clusters of %d points", k, n);
    if (max_iter < 1) max_iter = QS_KMEANS_MAX_ITER;
    int *prev = malloc((size_t)n * sizeof *prev), *count = malloc((size_t)k * sizeof *count);
    double *dmin = malloc((size_t)n * sizeof *dmin);
    if (!prev || !count || !dmin) {
        free(prev);
        free(count);
        free(dmin);
        return qs_fail(QS_ENOMEM, "out of memory for k-means of %d points", n);
    }
    for (int i = 0; i < n; i++) prev[i] = -1;
    int it = 0;
    while (it < max_iter) {
        /* assignment: nearest centroid, ties to the lower index */
        memset(count, 0, (size_t)k * sizeof *count);
        for (int i = 0; i < n; i++) {
            const double *p = pts + (size_t)i * dim;
            int best = 0;
            double bd = dist2(p, centroids, dim);
            for (int c = 1; c < k; c++) {
                double d = dist2(p, centroids + (size_t)c * dim, dim);
                if (d < bd) {
                    bd = d;
                    best = c;
                }
            }
            labels[i] = best;
            dmin[i] = bd;
            count[best]++;
        }
        /* an empty cluster takes the point farthest from its centroid (from
         * a cluster that keeps at least one): that point's cost drops to 0
         * and the means below only lower the rest, so inertia never rises */
        for (int c = 0; c < k; c++) {
            if (count[c]) continue;
            int far = -1;
            for (int i = 0; i < n; i++)
                if (count[labels[i]] > 1 && (far < 0 || dmin[i] > dmin[far])) far = i;
            if (far < 0) break; /* cannot happen with k <= n */
            count[labels[far]]--;
            labels[far] = c;
            count[c] = 1;
            dmin[far] = 0;
        }
        int changed = 0;
        for (int i = 0; i < n; i++) {
            changed |= labels[i] != prev[i];
            prev[i] = labels[i];
        }
        /* update: every centroid the mean of its points */
        memset(centroids, 0, (size_t)k * dim * sizeof(double));
        for (int i = 0; i < n; i++) {
            double *cen = centroids + (size_t)labels[i] * dim;
            const double *p = pts + (size_t)i * dim;
            for (int j = 0; j < dim; j++) cen[j] += p[j];
        }
        for (int c = 0; c < k; c++)
            for (int j = 0; j < dim; j++) centroids[(size_t)c * dim + j] /= count[c];
        it++;
        if (trace) {
            double in = 0;
            for (int i = 0; i < n; i++) in += dist2(pts + (size_t)i * dim, centroids + (size_t)labels[i] * dim, dim);
            trace[it - 1] = in;
        }
        if (!changed) break;
    }
    if (iters) *iters = it;
    free(prev);
    free(count);
    free(dmin);
    return QS_OK;
}

/* Number clusters by their first point and reorder the centroids to match. */
static void canonical(int n, int dim, int k, int *labels, double *centroids, int *map, double *tmp) {
    for (int c = 0; c < k; c++) map[c] = -1;
    int next = 0;
    for (int i = 0; i < n; i++) {
        if (map[labels[i]] < 0) map[labels[i]] = next++;
        labels[i] = map[labels[i]];
    }
    memcpy(tmp, centroids, (size_t)k * dim * sizeof(double));
    for (int c = 0; c < k; c++)
        if (map[c] >= 0) memcpy(centroids + (size_t)map[c] * dim, tmp + (size_t)c * dim, (size_t)dim * sizeof(double));
}

qs_status qs_kmeans(const double *pts, int n, int dim, int k, int n_init, uint64_t seed, int *labels,
                    double *centroids, double *inertia) {
    qs_status st = check_args(pts, n, dim, k);
    if (st) return st;
    if (n_init <= 0) n_init = QS_KMEANS_N_INIT;
    if (centroids) memset(centroids, 0, (size_t)k * dim * sizeof(double));
    if (k >= n) {
        for (int i = 0; i < n; i++) labels[i] = i;
        if (centroids) memcpy(centroids, pts, (size_t)n * dim * sizeof(double));
        if (inertia) *inertia = 0;
        return QS_OK;
    }
    double *cen = malloc(2 * (size_t)k * dim * sizeof *cen);
    int *lab = malloc((size_t)n * sizeof *lab), *map = malloc((size_t)k * sizeof *map);
    if (!cen || !lab || !map) {
        free(cen);
        free(lab);
        free(map);
        return qs_fail(QS_ENOMEM, "out of memory for k-means of %d points", n);
    }
    double *best_cen = cen + (size_t)k * dim, best = INFINITY;
    uint64_t state = seed;
    for (int r = 0; r < n_init && !st; r++) {
        if ((st = qs_kmeans_seed(pts, n, dim, k, &state, cen))) break;
        if ((st = qs_kmeans_lloyd(pts, n, dim, k, QS_KMEANS_MAX_ITER, cen, lab, NULL, NULL))) break;
        double in = 0;
        for (int i = 0; i < n; i++) in += dist2(pts + (size_t)i * dim, cen + (size_t)lab[i] * dim, dim);
        if (in < best) { /* strictly lower: ties keep the earlier restart */
            best = in;
            memcpy(labels, lab, (size_t)n * sizeof *lab);
            memcpy(best_cen, cen, (size_t)k * dim * sizeof *cen);
        }
    }
    if (!st) {
        canonical(n, dim, k, labels, best_cen, map, cen);
        if (centroids) memcpy(centroids, best_cen, (size_t)k * dim * sizeof *cen);
        if (inertia) *inertia = best;
    }
    free(cen);
    free(lab);
    free(map);
    return st;
}
