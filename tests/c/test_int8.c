/* The LLM.int8() linear layer: its quantizers, the outlier rule, and the
 * decomposition identity against double-precision sums. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "harness.h"

static const char *const kernels[] = {"ref", "avx2", "avx512vnni"};

static uint64_t rs = 0x243F6A8885A308D3ull;
static double urand(void) { /* [0, 1) */
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (rs >> 11) * (1.0 / 9007199254740992.0);
}
static float srand1(void) { return (float)(2 * urand() - 1); }

TEST(int8_weight_codes) {
    int N = 37, K = 53;
    float *w = malloc((size_t)N * K * sizeof *w), b[37];
    for (int i = 0; i < N * K; i++) w[i] = srand1() * (1 + (i % 7));
    for (int k = 0; k < K; k++) w[5 * K + k] = 0; /* a zero row */
    for (int n = 0; n < N; n++) b[n] = srand1();
    qs_int8_linear *L;
    REQUIRE(qs_int8_linear_new(w, b, N, K, &L) == QS_OK, "new: %s", qs_last_error());
    const float *sw = qs_int8_linear_scales(L);
    int8_t q[53];
    double worst = 0;
    int bad_scale = 0, no_max = 0;
    for (int n = 0; n < N; n++) {
        float s = 0;
        for (int k = 0; k < K; k++) s = fmaxf(s, fabsf(w[n * K + k]));
        bad_scale += sw[n] != s;
        qs_i8mat_row(qs_int8_linear_weights(L), n, q);
        int has_max = s == 0;
        for (int k = 0; k < K; k++) {
            double want = s > 0 ? 127.0 * w[n * K + k] / s : 0;
            worst = fmax(worst, fabs(q[k] - want));
            has_max |= abs(q[k]) == 127;
        }
        no_max += !has_max;
    }
    CHECK(bad_scale == 0, "%d row scales differ from max |w|", bad_scale);
    CHECK(worst <= 0.5 + 1e-9, "a code is %.6f from 127 w / s_w", worst);
    CHECK(no_max == 0, "%d rows have no code of magnitude 127", no_max);
    CHECK(qs_int8_linear_bytes(L) == qs_i8mat_bytes(qs_int8_linear_weights(L)) + 2 * 4 * N,
          "bytes %zu", qs_int8_linear_bytes(L));
    CHECK(qs_int8_linear_n_out(L) == N && qs_int8_linear_n_in(L) == K, "shape");
    qs_int8_linear_free(L);
    qs_int8_linear_free(NULL);

    /* s_w = 127 makes 127 w / s_w = w exactly: ties go to the even code */
    float tie[6] = {127, 0.5f, 1.5f, 2.5f, -2.5f, -0.5f};
    int8_t want[6] = {127, 0, 2, 2, -2, 0};
    REQUIRE(qs_int8_linear_new(tie, NULL, 1, 6, &L) == QS_OK, "new");
    qs_i8mat_row(qs_int8_linear_weights(L), 0, q);
    CHECK(memcmp(q, want, 6) == 0, "ties: %d %d %d %d %d %d", q[0], q[1], q[2], q[3], q[4], q[5]);
    CHECK(qs_int8_linear_bytes(L) == qs_i8mat_bytes(qs_int8_linear_weights(L)) + 4, "no bias: bytes");
    qs_int8_linear_free(L);

    w[3] = NAN;
    L = (qs_int8_linear *)&L;
    CHECK(qs_int8_linear_new(w, NULL, N, K, &L) == QS_EARG && L == NULL, "NaN weight accepted");
    CHECK(qs_int8_linear_new(w, NULL, N, 0, &L) == QS_EARG, "K = 0 accepted");
    free(w);
}

TEST(int8_activation_codes) {
    int M = 9, K = 41;
    float *x = malloc((size_t)M * K * sizeof *x), s[9], st[9];
    int8_t *a = malloc((size_t)M * K), *at = malloc((size_t)M * K);
    uint8_t mask[41] = {0};
    for (int i = 0; i < M * K; i++) x[i] = srand1() * (float)(1 + i % 5);
    mask[3] = mask[17] = mask[40] = 1;
    for (int m = 0; m < M; m++) x[m * K + 17] = 50; /* masked: must not set the scale */
    for (int k = 0; k < K; k++) x[4 * K + k] = 0;   /* a zero row */
    qs_int8_quantize_act(x, M, K, mask, QS_INT8_ACT_TOKEN, a, s);
    qs_int8_quantize_act(x, M, K, mask, QS_INT8_ACT_TENSOR, at, st);
    float global = 0;
    double worst = 0, worst_t = 0;
    int bad = 0;
    for (int m = 0; m < M; m++) {
        float mx = 0;
        for (int k = 0; k < K; k++)
            if (!mask[k]) mx = fmaxf(mx, fabsf(x[m * K + k]));
        global = fmaxf(global, mx);
        CHECK(s[m] == mx, "row %d: scale %g, max |x| over kept columns %g", m, s[m], mx);
        for (int k = 0; k < K; k++) {
            int8_t c = a[m * K + k];
            if (mask[k] || mx == 0) {
                bad += c != 0;
                continue;
            }
            worst = fmax(worst, fabs(c - 127.0 * x[m * K + k] / mx));
        }
    }
    for (int m = 0; m < M; m++) {
        CHECK(st[m] == global, "tensor scale of row %d: %g, want %g", m, st[m], global);
        for (int k = 0; k < K; k++) {
            if (mask[k]) {
                bad += at[m * K + k] != 0;
                continue;
            }
            worst_t = fmax(worst_t, fabs(at[m * K + k] - 127.0 * x[m * K + k] / global));
        }
    }
    CHECK(bad == 0, "%d codes in masked columns or zero rows are not 0", bad);
    /* float 127/s then x * that: off the exact value by a few ulps of 127 */
    CHECK(worst <= 0.5 + 1e-4, "per-token code %.6f from 127 x / s", worst);
    CHECK(worst_t <= 0.5 + 1e-4, "per-tensor code %.6f from 127 x / s", worst_t);

    float tie[6] = {127, 0.5f, 1.5f, 2.5f, -2.5f, -1.5f};
    int8_t want[6] = {127, 0, 2, 2, -2, -2}, got[6];
    float sc;
    qs_int8_quantize_act(tie, 1, 6, NULL, QS_INT8_ACT_TOKEN, got, &sc);
    CHECK(sc == 127 && memcmp(got, want, 6) == 0, "ties: %d %d %d %d %d %d", got[0], got[1], got[2],
          got[3], got[4], got[5]);
    free(x);
    free(a);
    free(at);
}

TEST(int8_outlier_rule) {
    int M = 4, K = 10;
    float x[40];
    uint8_t mask[10];
    for (int i = 0; i < 40; i++) x[i] = 0.25f * (float)((i % 9) - 4) / 4;
    x[2 * K + 3] = -6.0f;    /* exactly at the threshold: an outlier */
    x[1 * K + 7] = 5.9999995f; /* just below: not */
    x[3 * K + 9] = 1e6f;
    CHECK(qs_int8_outlier_columns(x, M, K, 6.0f, mask) == 2, "count at threshold 6");
    CHECK(mask[3] == 1 && mask[9] == 1 && mask[7] == 0, "mask %d %d %d", mask[3], mask[9], mask[7]);
    CHECK(qs_int8_outlier_columns(x, M, K, 0.0f, mask) == 0, "threshold 0 finds outliers");
    for (int k = 0; k < K; k++) CHECK(mask[k] == 0, "threshold 0: column %d marked", k);

    /* the same through the layer, with the column list */
    float w[30], y[12];
    for (int i = 0; i < 30; i++) w[i] = srand1();
    qs_int8_linear *L;
    REQUIRE(qs_int8_linear_new(w, NULL, 3, K, &L) == QS_OK, "new");
    int cols[1] = {-1};
    qs_int8_stats st = {.cols = cols, .cols_cap = 1};
    REQUIRE(qs_int8_linear_forward(L, x, M, 6.0f, QS_INT8_ACT_TOKEN, y, &st) == QS_OK, "forward");
    CHECK(st.n_outliers == 2 && cols[0] == 3, "%d outliers, first %d", st.n_outliers, cols[0]);
    REQUIRE(qs_int8_linear_forward(L, x, M, 0.0f, QS_INT8_ACT_TOKEN, y, &st) == QS_OK, "forward");
    CHECK(st.n_outliers == 0, "threshold 0: %d outliers", st.n_outliers);
    CHECK(qs_int8_linear_forward(L, x, 0, 6.0f, QS_INT8_ACT_TOKEN, y, NULL) == QS_EARG, "M = 0");
    qs_int8_linear_free(L);
}

typedef struct {
    double max_ratio;  /* max over (m,n) of |y - ref| / bound */
    double mean_err;   /* mean |y - fp32 product| */
} cmp_result;

/* Check y from the layer against (1) the decomposition evaluated in double
 * from the layer's own codes and scales and (2) the exact product x w^T + b
 * within the rounding bound. Returns how close (2) came to its bound. */
static cmp_result check_forward(qs_int8_linear *L, const float *x, const float *w, const float *b,
                                int M, int N, int K, float thr, qs_int8_act act, const float *y,
                                const char *what) {
    cmp_result r = {0, 0};
    uint8_t *mask = malloc(K);
    int8_t *a = malloc((size_t)M * K), *q = malloc((size_t)N * K);
    float *sx = malloc(M * sizeof *sx);
    const float *sw = qs_int8_linear_scales(L);
    qs_int8_outlier_columns(x, M, K, thr, mask);
    qs_int8_quantize_act(x, M, K, mask, act, a, sx);
    for (int n = 0; n < N; n++) qs_i8mat_row(qs_int8_linear_weights(L), n, q + (size_t)n * K);
    int bad_id = 0, bad_bound = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double i8 = 0, out = 0, mag = fabs(b ? b[n] : 0), exact = b ? b[n] : 0, bound = 0, absxw = 0;
            for (int k = 0; k < K; k++) {
                double xv = x[m * K + k], wv = w[n * K + k], qk = q[(size_t)n * K + k];
                exact += xv * wv;
                absxw += fabs(xv * wv);
                if (mask[k]) {
                    double t = xv * qk * sw[n] / 127.0;
                    out += t;
                    mag += fabs(t);
                    bound += fabs(xv) * sw[n] / 254.0;
                } else {
                    double t = (double)a[m * K + k] * qk * sx[m] * sw[n] / (127.0 * 127.0);
                    i8 += t;
                    mag += fabs(t);
                    bound += fabs(xv) * sw[n] / 254.0 + fabs(wv) * sx[m] / 254.0 +
                             (sx[m] / 254.0) * (sw[n] / 254.0);
                }
            }
            double ident = i8 + out + (b ? b[n] : 0), got = y[m * N + n];
            /* (1) only float rounding separates y from the double sum */
            if (fabs(got - ident) > 2e-6 * mag + 1e-30) {
                if (bad_id++ < 3)
                    CHECK(0, "%s: y[%d,%d] = %.9g, decomposition in double %.9g", what, m, n, got, ident);
            }
            /* (2) the int8 rounding bound (plus float slack) */
            double lim = bound + 2e-6 * (absxw + mag) + 1e-30;
            double err = fabs(got - exact);
            if (err > lim && bad_bound++ < 3)
                CHECK(0, "%s: |y - xw^T - b| at [%d,%d] = %.6g exceeds the bound %.6g", what, m, n, err, lim);
            r.max_ratio = fmax(r.max_ratio, err / lim);
            r.mean_err += err / ((double)M * N);
        }
    CHECK(bad_id == 0, "%s: %d outputs differ from the decomposition", what, bad_id);
    CHECK(bad_bound == 0, "%s: %d outputs outside the rounding bound", what, bad_bound);
    free(mask);
    free(a);
    free(q);
    free(sx);
    return r;
}

TEST(int8_decomposition) {
    int M = 13, N = 45, K = 70;
    float *x = malloc((size_t)M * K * 4), *w = malloc((size_t)N * K * 4), b[45];
    float *y = malloc((size_t)M * N * 4), *y0 = malloc((size_t)M * N * 4);
    for (int i = 0; i < M * K; i++) x[i] = srand1();
    for (int i = 0; i < N * K; i++) w[i] = srand1() * 0.1f;
    for (int n = 0; n < N; n++) b[n] = srand1();
    /* three feature columns carry outliers in every token, as in the paper */
    int oc[3] = {4, 33, 69};
    for (int m = 0; m < M; m++)
        for (int j = 0; j < 3; j++) x[m * K + oc[j]] = (m % 2 ? -1 : 1) * (7.0f + 6 * (float)urand());
    qs_int8_linear *L;
    REQUIRE(qs_int8_linear_new(w, b, N, K, &L) == QS_OK, "new: %s", qs_last_error());
    int have = 0;
    for (int kk = 0; kk < 3; kk++) {
        if (!qs_i8_kernel_available(kernels[kk])) continue;
        qs_i8_set_kernel(kernels[kk]);
        int cols[8];
        qs_int8_stats st = {.cols = cols, .cols_cap = 8};
        REQUIRE(qs_int8_linear_forward(L, x, M, 6.0f, QS_INT8_ACT_TOKEN, y, &st) == QS_OK, "forward");
        CHECK(st.n_outliers == 3 && cols[0] == 4 && cols[1] == 33 && cols[2] == 69,
              "%s: %d outliers", kernels[kk], st.n_outliers);
        cmp_result dec = check_forward(L, x, w, b, M, N, K, 6.0f, QS_INT8_ACT_TOKEN, y, kernels[kk]);
        /* every kernel gives the same int32 product, hence the same y */
        if (have) CHECK(memcmp(y, y0, (size_t)M * N * 4) == 0, "%s: y differs from ref's", kernels[kk]);
        memcpy(y0, y, (size_t)M * N * 4);
        have = 1;

        /* without the decomposition the outliers set every row's scale and
         * the error grows: the paper's reason for the fp32 part */
        REQUIRE(qs_int8_linear_forward(L, x, M, 0.0f, QS_INT8_ACT_TOKEN, y, &st) == QS_OK, "forward");
        CHECK(st.n_outliers == 0, "threshold 0: %d outliers", st.n_outliers);
        cmp_result flat = check_forward(L, x, w, b, M, N, K, 0.0f, QS_INT8_ACT_TOKEN, y, "no-decomp");
        CHECK(flat.mean_err > 3 * dec.mean_err, "%s: error without decomposition %.3g, with %.3g",
              kernels[kk], flat.mean_err, dec.mean_err);

        /* per-tensor scaling obeys the same identity and bound */
        REQUIRE(qs_int8_linear_forward(L, x, M, 6.0f, QS_INT8_ACT_TENSOR, y, &st) == QS_OK, "forward");
        check_forward(L, x, w, b, M, N, K, 6.0f, QS_INT8_ACT_TENSOR, y, "tensor");
    }
    qs_i8_set_kernel(NULL);
    qs_int8_linear_free(L);
    free(x);
    free(w);
    free(y);
    free(y0);
}

/* Layer shapes through the threaded paths (several row blocks, the GEMV at
 * M = 1, many outlier columns), against the same identity and bound. */
TEST(int8_layer_shapes) {
    static const int shapes[][3] = {{1, 96, 200}, {2, 33, 130}, {300, 70, 97}};
    for (int s = 0; s < 3; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *x = malloc((size_t)M * K * 4), *w = malloc((size_t)N * K * 4);
        float *y = malloc((size_t)M * N * 4);
        for (int i = 0; i < M * K; i++) x[i] = srand1() * 2;
        for (int i = 0; i < N * K; i++) w[i] = srand1();
        for (int k = 5; k < K; k += 11) x[(k % M) * K + k] = 9.5f; /* one token each */
        qs_int8_linear *L;
        REQUIRE(qs_int8_linear_new(w, NULL, N, K, &L) == QS_OK, "new");
        qs_int8_stats st = {0};
        REQUIRE(qs_int8_linear_forward(L, x, M, 6.0f, QS_INT8_ACT_TOKEN, y, &st) == QS_OK, "fwd");
        CHECK(st.n_outliers == (K - 5 + 10) / 11, "%dx%dx%d: %d outliers", M, N, K, st.n_outliers);
        char what[32];
        snprintf(what, sizeof what, "%dx%dx%d", M, N, K);
        check_forward(L, x, w, NULL, M, N, K, 6.0f, QS_INT8_ACT_TOKEN, y, what);
        /* a second call reuses the scratch, a smaller M too */
        REQUIRE(qs_int8_linear_forward(L, x, 1, 6.0f, QS_INT8_ACT_TOKEN, y, &st) == QS_OK, "fwd");
        check_forward(L, x, w, NULL, 1, N, K, 6.0f, QS_INT8_ACT_TOKEN, y, what);
        qs_int8_linear_free(L);
        free(x);
        free(w);
        free(y);
    }
}

/* Per-token scaling keeps rows independent: an inf or NaN activation (with
 * the decomposition off) spoils its own row and leaves the others exactly
 * as they were. */
TEST(int8_nonfinite_row) {
    int M = 4, N = 7, K = 20;
    float x[80], w[140], y0[28], y1[28];
    for (int i = 0; i < M * K; i++) x[i] = srand1();
    for (int i = 0; i < N * K; i++) w[i] = srand1();
    qs_int8_linear *L;
    REQUIRE(qs_int8_linear_new(w, NULL, N, K, &L) == QS_OK, "new");
    REQUIRE(qs_int8_linear_forward(L, x, M, 0.0f, QS_INT8_ACT_TOKEN, y0, NULL) == QS_OK, "fwd");
    float bad[2] = {INFINITY, NAN};
    for (int b = 0; b < 2; b++) {
        x[2 * K + 5] = bad[b];
        REQUIRE(qs_int8_linear_forward(L, x, M, 0.0f, QS_INT8_ACT_TOKEN, y1, NULL) == QS_OK, "fwd");
        CHECK(memcmp(y1, y0, 2 * N * 4) == 0 && memcmp(y1 + 3 * N, y0 + 3 * N, N * 4) == 0,
              "%g in row 2 changed another row", (double)bad[b]);
        int finite = 1;
        for (int n = 0; n < N; n++) finite &= isfinite(y1[2 * N + n]) != 0;
        CHECK(!finite, "row 2 with %g came out finite", (double)bad[b]);
    }
    qs_int8_linear_free(L);
}
