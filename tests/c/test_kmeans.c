/* k-means: blobs recovered, determinism, monotone Lloyd iterations, the
 * degenerate cases, and the optimum of tiny sets found by enumeration. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stats/stats.h"
#include "harness.h"

/* n points around each of nb centres (dim 2), radius r, in shuffled order;
 * truth[i] = the blob of point i. */
static void blobs(int nb, int per, double r, uint64_t seed, double *pts, int *truth) {
    uint64_t s = seed;
    int n = nb * per;
    for (int i = 0; i < n; i++) {
        int b = i % nb;
        double cx = 100.0 * (b % 3), cy = 100.0 * (b / 3);
        double u = (double)(qs_kmeans_rand(&s) >> 11) * 0x1.0p-53, w = (double)(qs_kmeans_rand(&s) >> 11) * 0x1.0p-53;
        pts[2 * i] = cx + r * (2 * u - 1);
        pts[2 * i + 1] = cy + r * (2 * w - 1);
        truth[i] = b;
    }
}

/* Do two labelings describe the same partition? */
static int same_partition(const int *a, const int *b, int n) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if ((a[i] == a[j]) != (b[i] == b[j])) return 0;
    return 1;
}

static double inertia_of(const double *pts, int n, int dim, const int *lab, int k) {
    double *c = calloc((size_t)k * dim, sizeof *c);
    int *cnt = calloc((size_t)k, sizeof *cnt);
    for (int i = 0; i < n; i++) {
        cnt[lab[i]]++;
        for (int j = 0; j < dim; j++) c[lab[i] * dim + j] += pts[i * dim + j];
    }
    for (int g = 0; g < k; g++)
        for (int j = 0; j < dim; j++)
            if (cnt[g]) c[g * dim + j] /= cnt[g];
    double s = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) {
            double d = pts[i * dim + j] - c[lab[i] * dim + j];
            s += d * d;
        }
    free(c);
    free(cnt);
    return s;
}

TEST(kmeans_blobs) {
    enum { NB = 6, PER = 40, N = NB * PER };
    double pts[2 * N], cen[2 * NB], in;
    int truth[N], lab[N];
    blobs(NB, PER, 10.0, 7, pts, truth);
    REQUIRE(qs_kmeans(pts, N, 2, NB, 10, 0, lab, cen, &in) == QS_OK, "%s", qs_last_error());
    CHECK(same_partition(lab, truth, N), "six separated blobs not recovered");
    CHECK(lab[0] == 0, "point 0 is in cluster %d, want 0 (clusters numbered by first point)", lab[0]);
    for (int i = 0, next = 0; i < N; i++) {
        CHECK(lab[i] >= 0 && lab[i] < NB, "label %d out of range", lab[i]);
        if (lab[i] == next) next++;
        CHECK(lab[i] < next, "cluster %d first appears after cluster %d's first point", lab[i], next);
    }
    double want = inertia_of(pts, N, 2, truth, NB);
    CHECK(fabs(in - want) <= 1e-9 * want, "inertia %.12g, the blobs' own %.12g", in, want);
    /* the centroids are the blobs' means */
    for (int c = 0; c < NB; c++) {
        double sx = 0, sy = 0;
        int cnt = 0;
        for (int i = 0; i < N; i++)
            if (lab[i] == c) {
                sx += pts[2 * i];
                sy += pts[2 * i + 1];
                cnt++;
            }
        CHECK(cnt == PER, "cluster %d has %d points, want %d", c, cnt, PER);
        CHECK(fabs(cen[2 * c] - sx / cnt) < 1e-9 && fabs(cen[2 * c + 1] - sy / cnt) < 1e-9,
              "centroid %d (%g, %g) is not its points' mean (%g, %g)", c, cen[2 * c], cen[2 * c + 1], sx / cnt,
              sy / cnt);
    }
}

TEST(kmeans_deterministic) {
    /* overlapping blobs: the answer depends on the seeding, so equal labels
     * across calls mean the generator and the restarts are reproducible */
    enum { N = 300 };
    double pts[2 * N], in1, in2, in3;
    int truth[N], a[N], b[N], c[N];
    blobs(3, N / 3, 120.0, 11, pts, truth);
    REQUIRE(qs_kmeans(pts, N, 2, 7, 10, 42, a, NULL, &in1) == QS_OK, "%s", qs_last_error());
    REQUIRE(qs_kmeans(pts, N, 2, 7, 10, 42, b, NULL, &in2) == QS_OK, "%s", qs_last_error());
    CHECK(memcmp(a, b, sizeof a) == 0 && in1 == in2, "same seed, different clusters (%.17g vs %.17g)", in1, in2);
    REQUIRE(qs_kmeans(pts, N, 2, 7, 1, 42, c, NULL, &in3) == QS_OK, "%s", qs_last_error());
    CHECK(in1 <= in3, "10 restarts (%.9g) worse than the first alone (%.9g)", in1, in3);
    /* the generator's stream depends on the seed only */
    uint64_t s1 = 5, s2 = 5, s3 = 6;
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = qs_kmeans_rand(&s1);
        CHECK(x == qs_kmeans_rand(&s2), "generator diverged at draw %d", i);
        differ += x != qs_kmeans_rand(&s3);
    }
    CHECK(differ == 100, "seeds 5 and 6 gave %d equal draws of 100", 100 - differ);
}

TEST(kmeans_lloyd_monotone) {
    enum { N = 400, K = 9, IT = 300 };
    double *pts = malloc(2 * N * sizeof *pts), cen[2 * K], trace[IT];
    int truth[N], lab[N];
    blobs(4, N / 4, 150.0, 3, pts, truth); /* heavy overlap: many iterations */
    int longest = 0;
    for (uint64_t seed = 0; seed < 20; seed++) {
        uint64_t s = seed;
        REQUIRE(qs_kmeans_seed(pts, N, 2, K, &s, cen) == QS_OK, "%s", qs_last_error());
        int it = 0;
        REQUIRE(qs_kmeans_lloyd(pts, N, 2, K, IT, cen, lab, trace, &it) == QS_OK, "%s", qs_last_error());
        CHECK(it >= 1 && it <= IT, "iterations %d", it);
        longest = it > longest ? it : longest;
        for (int t = 1; t < it; t++)
            CHECK(trace[t] <= trace[t - 1] * (1 + 1e-12), "seed %llu: inertia rose at iteration %d: %.15g -> %.15g",
                  (unsigned long long)seed, t, trace[t - 1], trace[t]);
        /* converged: the last two iterations agree and the inertia is that of the labels */
        if (it < IT) CHECK(it < 2 || trace[it - 1] == trace[it - 2], "seed %llu: not converged", (unsigned long long)seed);
        double want = inertia_of(pts, N, 2, lab, K);
        CHECK(fabs(trace[it - 1] - want) <= 1e-9 * want, "final inertia %.12g, labels give %.12g", trace[it - 1], want);
    }
    CHECK(longest >= 5, "the overlapping blobs converged in %d iterations: the test exercises nothing", longest);
    free(pts);
}

TEST(kmeans_degenerate) {
    double pts[10] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3}, cen[12], in;
    int lab[5];
    /* k = 1: one cluster, centroid the mean */
    REQUIRE(qs_kmeans(pts, 5, 2, 1, 10, 0, lab, cen, &in) == QS_OK, "%s", qs_last_error());
    for (int i = 0; i < 5; i++) CHECK(lab[i] == 0, "k=1: point %d in cluster %d", i, lab[i]);
    CHECK(fabs(cen[0] - 3.8) < 1e-12 && fabs(cen[1] - 4.0) < 1e-12, "k=1 centroid (%g, %g)", cen[0], cen[1]);
    CHECK(fabs(in - inertia_of(pts, 5, 2, lab, 1)) < 1e-9, "k=1 inertia %g", in);
    /* k = n and k > n: every point alone */
    for (int k = 5; k <= 6; k++) {
        REQUIRE(qs_kmeans(pts, 5, 2, k, 10, 0, lab, cen, &in) == QS_OK, "%s", qs_last_error());
        for (int i = 0; i < 5; i++) CHECK(lab[i] == i, "k=%d: point %d in cluster %d", k, i, lab[i]);
        CHECK(in == 0, "k=%d inertia %g", k, in);
        CHECK(memcmp(cen, pts, sizeof pts) == 0, "k=%d: centroids are not the points", k);
    }
    /* duplicates: 3 distinct points, 12 copies; k = 3 finds them exactly */
    double dup[24];
    int dl[12], dt[12];
    for (int i = 0; i < 12; i++) {
        dup[2 * i] = (i % 3) * 2.0;
        dup[2 * i + 1] = -(double)(i % 3);
        dt[i] = i % 3;
    }
    REQUIRE(qs_kmeans(dup, 12, 2, 3, 10, 0, dl, NULL, &in) == QS_OK, "%s", qs_last_error());
    CHECK(same_partition(dl, dt, 12) && in == 0, "duplicates: partition wrong or inertia %g", in);
    /* more clusters than distinct points: none empty, inertia 0 */
    REQUIRE(qs_kmeans(dup, 12, 2, 5, 10, 0, dl, NULL, &in) == QS_OK, "%s", qs_last_error());
    int cnt[5] = {0};
    for (int i = 0; i < 12; i++) {
        CHECK(dl[i] >= 0 && dl[i] < 5, "label %d", dl[i]);
        if (dl[i] >= 0 && dl[i] < 5) cnt[dl[i]]++;
    }
    for (int c = 0; c < 5; c++) CHECK(cnt[c] > 0, "k=5 on 3 distinct points: cluster %d empty", c);
    CHECK(in == 0, "k=5 on 3 distinct points: inertia %g", in);
    /* all points identical */
    double same[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int sl[4];
    REQUIRE(qs_kmeans(same, 4, 2, 2, 3, 9, sl, NULL, &in) == QS_OK, "%s", qs_last_error());
    CHECK(in == 0 && sl[0] == 0, "identical points: inertia %g", in);
    /* bad input */
    CHECK(qs_kmeans(pts, 5, 2, 0, 10, 0, lab, NULL, NULL) == QS_EARG, "k = 0 accepted");
    double bad[4] = {0, NAN, 1, 1};
    CHECK(qs_kmeans(bad, 2, 2, 1, 10, 0, lab, NULL, NULL) == QS_EARG, "NaN accepted");
}

/* Every labeling of n points into k clusters: the true optimum. */
static double brute_force(const double *pts, int n, int dim, int k) {
    int lab[16] = {0};
    double best = INFINITY;
    long total = 1;
    for (int i = 0; i < n; i++) total *= k;
    for (long code = 0; code < total; code++) {
        long c = code;
        for (int i = 0; i < n; i++) {
            lab[i] = (int)(c % k);
            c /= k;
        }
        double in = inertia_of(pts, n, dim, lab, k);
        if (in < best) best = in;
    }
    return best;
}

TEST(kmeans_brute_force) {
    uint64_t s = 2024;
    for (int trial = 0; trial < 6; trial++) {
        int n = 8 + trial % 2, k = 2 + trial % 3, dim = 1 + trial % 3;
        double pts[3 * 9];
        for (int i = 0; i < n * dim; i++) pts[i] = (double)(qs_kmeans_rand(&s) >> 11) * 0x1.0p-53 * 10 - 5;
        int lab[9];
        double in;
        REQUIRE(qs_kmeans(pts, n, dim, k, 10, 0, lab, NULL, &in) == QS_OK, "%s", qs_last_error());
        double opt = brute_force(pts, n, dim, k);
        CHECK(in >= opt * (1 - 1e-12), "trial %d: inertia %.15g below the optimum %.15g", trial, in, opt);
        CHECK(in <= opt * (1 + 1e-9), "trial %d (n %d, k %d, dim %d): inertia %.12g, optimum %.12g", trial, n, k,
              dim, in, opt);
        CHECK(fabs(in - inertia_of(pts, n, dim, lab, k)) <= 1e-9 * (opt + 1), "trial %d: inertia disagrees with labels",
              trial);
    }
}
