/* kmeans.h — k-means clustering of small point sets (RPTQ groups the
 * channels of an activation by their calibrated (max, min)).
 *
 * Seeding is k-means++ (Arthur & Vassilvitskii 2007: the first
 * centre uniformly, each next one with probability proportional to D(x)^2,
 * the squared distance to the nearest centre chosen so far); then Lloyd
 * iterations until the labels stop changing (or QS_KMEANS_MAX_ITER); the
 * whole is restarted n_init times and the run with the lowest inertia (sum
 * of squared distances to the assigned centroid) is kept. The random numbers
 * come from the module's own generator (splitmix64) and every sum runs in a
 * fixed order, so a seed gives the same clusters on every run and platform.
 *
 *     double pts[6][2] = {{0, 0}, {0, 1}, {1, 0}, {9, 9}, {9, 8}, {8, 9}};
 *     int labels[6];
 *     double inertia;
 *     qs_kmeans(&pts[0][0], 6, 2, 2, 10, 0, labels, NULL, &inertia);
 *     // labels = {0, 0, 0, 1, 1, 1}, inertia = 4 * 2/3
 */
#ifndef QS_KMEANS_H
#define QS_KMEANS_H

#include <stdint.h>

#include "status.h"

#define QS_KMEANS_N_INIT 10    /* restarts when n_init <= 0 */
#define QS_KMEANS_MAX_ITER 300 /* Lloyd iterations per restart */

/* Cluster n points of dim coordinates into k clusters.
 *   pts       (n, dim) row-major, finite (else QS_EARG)
 *   labels    (n) out: cluster of each point, in [0, min(k, n)); clusters are
 *             numbered in the order of their first point (point 0 is in
 *             cluster 0), and none is empty
 *   centroids (k, dim) out or NULL: the mean of each cluster (rows from
 *             min(k, n) on are zero)
 *   inertia   out or NULL: sum of squared distances to the centroids
 * k >= n puts every point in a cluster of its own. n_init <= 0: the default.
 * An empty cluster during the iterations takes the point farthest from its
 * centroid among the clusters with more than one point. */
qs_status qs_kmeans(const double *pts, int n, int dim, int k, int n_init, uint64_t seed, int *labels,
                    double *centroids, double *inertia);

/* The pieces, for tests and callers that seed their own way. */

/* The generator: advances *state and returns 64 random bits (splitmix64). */
uint64_t qs_kmeans_rand(uint64_t *state);

/* k-means++ seeding of k <= n centres into centroids (k, dim). */
qs_status qs_kmeans_seed(const double *pts, int n, int dim, int k, uint64_t *state, double *centroids);

/* Lloyd iterations from the given centroids (k, dim; updated in place) until
 * the labels stop changing or max_iter. labels (n) out. trace (max_iter) or
 * NULL: the inertia after each iteration (non-increasing). *iters: the
 * iterations run. Requires k <= n. */
qs_status qs_kmeans_lloyd(const double *pts, int n, int dim, int k, int max_iter, double *centroids,
                          int *labels, double *trace, int *iters);

#endif
