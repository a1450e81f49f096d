/* The row kernels against double-precision references. */
#include <math.h>
#include <stdlib.h>

#include "kern/kern.h"
#include "harness.h"

TEST(ops_expf_accuracy) {
    double worst = 0;
    for (double x = -87.0; x < 88.7; x += 0.000731) {
        float xf = (float)x;
        double rel = fabs(qs_ops_expf(xf) / exp((double)xf) - 1);
        if (rel > worst) worst = rel;
    }
    CHECK(worst < 3e-7, "worst relative error %.3g", worst);
    CHECK(qs_ops_expf(-100.0f) == 0.0f, "e^-100 underflows to 0");
    CHECK(qs_ops_expf(0.0f) == 1.0f, "e^0 = %.9g", qs_ops_expf(0.0f));
}

TEST(ops_softmax_matches_double) {
    /* odd lengths cover the vector tails */
    int lens[] = {1, 3, 15, 16, 17, 100, 2049};
    for (int k = 0; k < 7; k++) {
        int n = lens[k];
        float *x = malloc(n * sizeof *x);
        double *ref = malloc(n * sizeof *ref), mx = -1e30, s = 0;
        for (int i = 0; i < n; i++) {
            x[i] = (float)(20 * sin(i * 1.7) + (i == n / 2 ? 40 : 0));
            mx = fmax(mx, x[i]);
        }
        for (int i = 0; i < n; i++) s += ref[i] = exp(x[i] - mx);
        qs_ops_softmax_row(x, n);
        double worst = 0, total = 0;
        for (int i = 0; i < n; i++) {
            worst = fmax(worst, fabs(x[i] - ref[i] / s));
            total += x[i];
        }
        CHECK(worst < 1e-6, "len %d: max diff %.3g", n, worst);
        CHECK(fabs(total - 1) < 1e-5, "len %d: sums to %.9g", n, total);
        free(x);
        free(ref);
    }
}

TEST(ops_norms_match_double) {
    int d = 77, n = 3;
    float x[231], w[77], b[77], y[231];
    for (int i = 0; i < n * d; i++) x[i] = (float)(cos(i * 0.37) * 3 + (i % d == 5 ? 30 : 0));
    for (int i = 0; i < d; i++) {
        w[i] = 0.5f + i * 0.01f;
        b[i] = -0.1f * i;
    }
    qs_ops_layernorm(x, n, d, w, b, 1e-5f, NULL, y);
    double worst = 0;
    for (int r = 0; r < n; r++) {
        double mean = 0, var = 0;
        for (int i = 0; i < d; i++) mean += x[r * d + i];
        mean /= d;
        for (int i = 0; i < d; i++) var += (x[r * d + i] - mean) * (x[r * d + i] - mean);
        var /= d;
        for (int i = 0; i < d; i++) {
            double want = (x[r * d + i] - mean) / sqrt(var + 1e-5) * w[i] + b[i];
            worst = fmax(worst, fabs(want - y[r * d + i]));
        }
    }
    CHECK(worst < 2e-5, "layernorm max diff %.3g", worst);
    qs_ops_rmsnorm(x, n, d, d, w, 1e-6f, NULL, y);
    worst = 0;
    for (int r = 0; r < n; r++) {
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)x[r * d + i] * x[r * d + i];
        for (int i = 0; i < d; i++) {
            double want = x[r * d + i] / sqrt(ss / d + 1e-6) * w[i];
            worst = fmax(worst, fabs(want - y[r * d + i]));
        }
    }
    CHECK(worst < 2e-5, "rmsnorm max diff %.3g", worst);
}

TEST(ops_activations_match_double) {
    float x[1000], g[1000];
    double worst[4] = {0};
    for (int i = 0; i < 1000; i++) x[i] = (i - 500) * 0.02f;
    for (int i = 0; i < 1000; i++) g[i] = x[i];
    qs_ops_gelu_tanh(g, 1000);
    for (int i = 0; i < 1000; i++) {
        double v = x[i], want = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        worst[0] = fmax(worst[0], fabs(want - g[i]));
    }
    for (int i = 0; i < 1000; i++) g[i] = x[i];
    qs_ops_silu(g, 1000);
    for (int i = 0; i < 1000; i++) worst[1] = fmax(worst[1], fabs(x[i] / (1 + exp(-(double)x[i])) - g[i]));
    for (int i = 0; i < 1000; i++) g[i] = x[i];
    qs_ops_gelu_erf(g, 1000);
    for (int i = 0; i < 1000; i++) worst[2] = fmax(worst[2], fabs(0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0))) - g[i]));
    double lse = qs_ops_logsumexp(x, 1000), s = 0;
    for (int i = 0; i < 1000; i++) s += exp((double)x[i]);
    worst[3] = fabs(lse - log(s));
    CHECK(worst[0] < 1e-5, "gelu_tanh max diff %.3g", worst[0]);
    CHECK(worst[1] < 1e-5, "silu max diff %.3g", worst[1]);
    CHECK(worst[2] < 1e-5, "gelu_erf max diff %.3g", worst[2]);
    CHECK(worst[3] < 1e-6, "logsumexp diff %.3g", worst[3]);
}

/* An orthonormal completion keeps the given columns and makes the whole an
 * orthonormal basis. */
TEST(lapack_orth_complete) {
    enum { D = 40, R = 7 };
    static double a[D * D], u[D * D];
    uint64_t seed = 11;
    for (int i = 0; i < D * D; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        u[i] = (double)(seed >> 11) / 9007199254740992.0 - 0.5;
    }
    /* R orthonormal columns from a full QR of random ones */
    REQUIRE(qs_lapack_orth_complete(D, D, u) == QS_OK, "%s", qs_last_error());
    for (int i = 0; i < D * D; i++) a[i] = (i % D) < R ? u[i] : 99.0;
    REQUIRE(qs_lapack_orth_complete(D, R, a) == QS_OK, "%s", qs_last_error());
    double worst = 0, moved = 0;
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double s = 0;
            for (int k = 0; k < D; k++) s += a[k * D + i] * a[k * D + j];
            worst = fmax(worst, fabs(s - (i == j)));
        }
    for (int k = 0; k < D; k++)
        for (int i = 0; i < R; i++) moved = fmax(moved, fabs(a[k * D + i] - u[k * D + i]));
    CHECK(worst < 1e-12 && moved < 1e-12, "Q^T Q - I up to %g, given columns moved by %g", worst, moved);
    CHECK(qs_lapack_orth_complete(D, 0, a) == QS_EARG, "no columns accepted");
}
