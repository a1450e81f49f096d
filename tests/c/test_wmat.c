/* Linear layers on weights as stored (kern/wmat.c): every fast kernel equals
 * the plain C reference, and qs_wlinear (the pool's GEMV for few rows, the
 * sgemm panels for many) equals a double-precision product of the decoded
 * weights, for F16, BF16, Q8_0, Q4_0 and (through the generic decoder) Q4_1. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "kern/kern.h"
#include "harness.h"

static uint64_t rs = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (float)((rs >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }

/* rows x n_in random weights stored as type */
static uint8_t *make(uint32_t type, int rows, int n_in) {
    size_t rb = qs_wtype_row_bytes(type, n_in);
    uint8_t *w = malloc(rb * rows), *p = w;
    for (int r = 0; r < rows; r++) {
        if (type == QS_WT_F32) {
            for (int i = 0; i < n_in; i++, p += 4) {
                float v = frand();
                memcpy(p, &v, 4);
            }
            continue;
        }
        if (type == QS_WT_F16 || type == QS_WT_BF16) {
            for (int i = 0; i < n_in; i++, p += 2)
                put16(p, type == QS_WT_F16 ? qs_f32_to_f16(frand()) : qs_f32_to_bf16(frand()));
            continue;
        }
        for (int b = 0; b < n_in / 32; b++) {
            put16(p, qs_f32_to_f16(0.01f + 0.02f * fabsf(frand())));
            if (type == QS_WT_Q8_0) {
                for (int j = 0; j < 32; j++) p[2 + j] = (uint8_t)(int8_t)(frand() * 127);
                p += 34;
            } else if (type == QS_WT_Q4_0) {
                for (int j = 0; j < 16; j++) p[2 + j] = (uint8_t)(rs >> (j % 8 * 8));
                frand();
                p += 18;
            } else { /* Q4_1: d, m, nibbles */
                put16(p + 2, qs_f32_to_f16(frand() * 0.1f));
                for (int j = 0; j < 16; j++) p[4 + j] = (uint8_t)(rs >> (j % 8 * 8));
                frand();
                p += 20;
            }
        }
    }
    return w;
}

static const uint32_t types[] = {QS_WT_F32, QS_WT_F16, QS_WT_BF16, QS_WT_Q8_0, QS_WT_Q4_0, QS_WT_Q4_1};
static const char *const names[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"};

TEST(wmat_fast_equals_ref) {
    const int n_in = 4096 + 96; /* a tail past the unrolled loop */
    float *x = malloc(n_in * sizeof *x), *dec = malloc(n_in * sizeof *dec);
    for (int i = 0; i < n_in; i++) x[i] = frand();
    int have_fast = qs_wmat_set_kernel("avx2");
    for (int k = 0; k < 2; k++) /* AVX2, then AVX-512 where it runs */
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        if (k && !qs_wmat_set_kernel("avx512")) break;
        uint8_t *w = make(types[t], 4, n_in);
        for (int r = 0; r < 4; r++) {
            const uint8_t *row = w + qs_wtype_row_bytes(types[t], n_in) * r;
            qs_wrows_f32(types[t], row, n_in, 0, 1, dec);
            double exact = 0, mag = 0;
            for (int i = 0; i < n_in; i++) exact += (double)dec[i] * x[i], mag += fabs((double)dec[i] * x[i]);
            float ref = qs_wdot_ref(types[t], row, x, n_in), fast = qs_wdot(types[t], row, x, n_in);
            CHECK(fabs(ref - exact) <= 1e-6 * mag && fabs(fast - exact) <= 1e-6 * mag,
                  "%s row %d, %s: ref %.7g fast %.7g exact %.7g (|w x| %.3g)", names[t], r, qs_wmat_kernel(), ref, fast,
                  exact, mag);
        }
        free(w);
    }
    CHECK(have_fast || !__builtin_cpu_supports("avx2"), "the avx2 kernels run on an AVX2 machine");
    qs_wmat_set_kernel("auto");
    free(x);
    free(dec);
}

/* F32/F16/BF16 data at an odd address (a safetensors file may place a tensor
 * at any byte offset; fuzzing found an F16 one read by a uint16_t load): every
 * kernel reads it, decode's dot and prefill's panels with their scalar tails,
 * and gives bit for bit what it gives on the same rows aligned. make sanitize
 * runs this under UBSan, which stops on a misaligned load. */
TEST(wmat_unaligned_rows) {
    const int n_out = 5, n_in = 100, ns[2] = {1, 20}; /* 100: a tail past every vector width */
    const uint32_t ft[3] = {QS_WT_F32, QS_WT_F16, QS_WT_BF16};
    const char *fn[3] = {"F32", "F16", "BF16"}, *kernels[3] = {"ref", "avx2", "avx512"};
    float x[20 * 100], ya[20 * 5], yu[20 * 5], da[5 * 100], du[5 * 100];
    for (int i = 0; i < 20 * n_in; i++) x[i] = frand();
    for (int t = 0; t < 3; t++) {
        uint8_t *w = make(ft[t], n_out, n_in);
        size_t bytes = qs_wtype_row_bytes(ft[t], n_in) * n_out;
        uint8_t *buf = malloc(bytes + 1);
        memcpy(buf + 1, w, bytes);
        qs_wrows_f32(ft[t], w, n_in, 0, n_out, da);
        qs_wrows_f32(ft[t], buf + 1, n_in, 0, n_out, du);
        CHECK(!memcmp(da, du, sizeof da), "%s: rows decoded at an odd address", fn[t]);
        for (int k = 0; k < 3; k++) {
            if (!qs_wmat_set_kernel(kernels[k])) continue;
            for (int c = 0; c < 2; c++) {
                CHECK(qs_wlinear(x, ns[c], ft[t], w, NULL, n_out, n_in, ya) == QS_OK &&
                          qs_wlinear(x, ns[c], ft[t], buf + 1, NULL, n_out, n_in, yu) == QS_OK,
                      "%s", qs_last_error());
                CHECK(!memcmp(ya, yu, (size_t)ns[c] * n_out * sizeof *ya), "%s, %s kernels, %d rows: odd address",
                      fn[t], kernels[k], ns[c]);
            }
        }
        free(buf);
        free(w);
    }
    qs_wmat_set_kernel("auto");
}

TEST(wmat_linear_few_and_many_rows) {
    const int n_out = 200, n_in = 256, ns[3] = {1, 3, 20};
    const char *kernels[4] = {"ref", "avx2", "avx512", "avx512"}; /* the last with the fused prefill off */
    float *x = malloc((size_t)20 * n_in * sizeof *x), *y = malloc((size_t)20 * n_out * sizeof *y);
    float *W = malloc((size_t)n_out * n_in * sizeof *W), b[200];
    for (int i = 0; i < 20 * n_in; i++) x[i] = frand();
    for (int i = 0; i < n_out; i++) b[i] = frand();
    qs_wmat_set_act("f32"); /* exact products here; 8-bit activations below */
    int fused = qs_wmat_set_fused_prefill(1);
    for (int k = 0; k < 4; k++) {
        if (!qs_wmat_set_kernel(kernels[k])) continue;
        qs_wmat_set_fused_prefill(k < 3);
        for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
            uint8_t *w = make(types[t], n_out, n_in);
            qs_wrows_f32(types[t], w, n_in, 0, n_out, W);
            for (int c = 0; c < 3; c++) {
                int n = ns[c];
                CHECK(qs_wlinear(x, n, types[t], w, b, n_out, n_in, y) == QS_OK, "%s", qs_last_error());
                double worst = 0;
                for (int i = 0; i < n; i++)
                    for (int r = 0; r < n_out; r++) {
                        double e = b[r], mag = fabs(b[r]);
                        for (int j = 0; j < n_in; j++)
                            e += (double)W[(size_t)r * n_in + j] * x[(size_t)i * n_in + j],
                                mag += fabs((double)W[(size_t)r * n_in + j] * x[(size_t)i * n_in + j]);
                        double d = fabs(y[(size_t)i * n_out + r] - e) / (mag + 1e-30);
                        if (d > worst) worst = d;
                    }
                CHECK(worst < 1e-6, "%s, %s kernels%s, %d rows: relative error %.3g", names[t], kernels[k],
                      k == 3 ? " (panels)" : "", n, worst);
            }
            free(w);
        }
    }
    qs_wmat_set_fused_prefill(fused);
    qs_wmat_set_kernel("auto");
    qs_wmat_set_act("q8");
    CHECK(qs_wlinear(x, 1, QS_WT_Q8_0, x, NULL, 1, 33, y) == QS_EARG, "a row of 33 is not whole Q8_0 blocks");
    free(x);
    free(y);
    free(W);
}

/* The panels that many rows go through hold the weights bit for bit as
 * qs_wrows_f32 (ggml's decoders) gives them: x = I reads them back. */
TEST(wmat_panels_decode_exactly) {
    const int n_in = 64, n_out = 40;
    float *x = calloc((size_t)n_in * n_in, sizeof *x), *y = malloc((size_t)n_in * n_out * sizeof *y);
    float *dec = malloc((size_t)n_out * n_in * sizeof *dec);
    for (int i = 0; i < n_in; i++) x[(size_t)i * n_in + i] = 1.0f;
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        uint8_t *w = make(types[t], n_out, n_in);
        qs_wrows_f32(types[t], w, n_in, 0, n_out, dec);
        CHECK(qs_wlinear(x, n_in, types[t], w, NULL, n_out, n_in, y) == QS_OK, "%s", qs_last_error());
        int same = 1;
        for (int i = 0; i < n_in; i++)
            for (int r = 0; r < n_out; r++) same &= memcmp(&y[(size_t)i * n_out + r], &dec[(size_t)r * n_in + i], 4) == 0;
        CHECK(same, "%s: the panel's weights are the decoded ones, bit for bit", names[t]);
        free(w);
    }
    free(x);
    free(y);
    free(dec);
}

static uint8_t *make_kq(uint32_t type, int rows, int n_in);
static uint8_t *make_blocks(uint32_t type, int rows, int n_in);

/* The same for the k-quants with fast panel decoders (Q4_K, Q5_K, Q6_K):
 * rows of 256 through x = I, bit for bit ggml's decoding (Q6_K's zero codes
 * under a negative scale decode to -0, which comes out of sgemm as +0) */
TEST(wmat_panels_decode_kquants_exactly) {
    const int n_in = 256, n_out = 24;
    const uint32_t kt[3] = {QS_WT_Q4_K, QS_WT_Q5_K, QS_WT_Q6_K};
    const char *kn[3] = {"Q4_K", "Q5_K", "Q6_K"};
    float *x = calloc((size_t)n_in * n_in, sizeof *x), *y = malloc((size_t)n_in * n_out * sizeof *y);
    float *dec = malloc((size_t)n_out * n_in * sizeof *dec);
    for (int i = 0; i < n_in; i++) x[(size_t)i * n_in + i] = 1.0f;
    for (int t = 0; t < 3; t++) {
        uint8_t *w = kt[t] == QS_WT_Q5_K ? make_blocks(kt[t], n_out, n_in) : make_kq(kt[t], n_out, n_in);
        qs_wrows_f32(kt[t], w, n_in, 0, n_out, dec);
        CHECK(qs_wlinear(x, n_in, kt[t], w, NULL, n_out, n_in, y) == QS_OK, "%s", qs_last_error());
        int same = 1;
        for (int i = 0; i < n_in; i++)
            for (int r = 0; r < n_out; r++) same &= y[(size_t)i * n_out + r] == dec[(size_t)r * n_in + i];
        CHECK(same, "%s: the panel's weights are the decoded ones, bit for bit (but -0, which sgemm's sum makes +0)", kn[t]);
        free(w);
    }
    free(x);
    free(y);
    free(dec);
}

/* x rounded to 8-bit blocks of bs (32; 256 for the k-quants, as llama.cpp's
 * Q8_K) as the kernels round it, independently: scale max|x| / 127, codes
 * round(x / scale) with ties to even */
static void q8_blocks(const float *x, int n, double *xq, int bs) {
    for (int b = 0; b < n / bs; b++) {
        float amax = 0;
        for (int i = 0; i < bs; i++) amax = fmaxf(amax, fabsf(x[b * bs + i]));
        for (int i = 0; i < bs; i++)
            xq[b * bs + i] = amax > 0 ? (double)nearbyintf(x[b * bs + i] * (127.0f / amax)) * (amax / 127.0f) : 0.0;
    }
}

/* rows x n_in random weights as llama.cpp's k-quant encoder writes them */
static uint8_t *make_kq(uint32_t type, int rows, int n_in) {
    float *W = malloc((size_t)rows * n_in * sizeof *W);
    uint8_t *w = malloc(qs_wtype_row_bytes(type, n_in) * rows);
    for (int i = 0; i < rows * n_in; i++) W[i] = frand() * (i % 61 == 0 ? 4.0f : 1.0f);
    qs_quant_pack_kq(W, rows, n_in, type, w, NULL);
    free(W);
    return w;
}

/* rows x n_in random blocks of type (Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q5_K):
 * every code and scale byte random, the f16 scales small and finite */
static uint8_t *make_blocks(uint32_t type, int rows, int n_in) {
    size_t e, bb, rb = qs_wtype_row_bytes(type, n_in);
    qs_wtype_block(type, &e, &bb);
    uint8_t *w = malloc(rb * rows);
    for (size_t i = 0; i < rb * rows; i++) w[i] = (uint8_t)(frand() * 128 + 128);
    int at[2] = {-1, -1}; /* where a block's f16 scales are */
    switch (type) {
    case QS_WT_Q5_0: case QS_WT_IQ4_NL: at[0] = 0; break;
    case QS_WT_Q5_1: case QS_WT_Q5_K: at[0] = 0, at[1] = 2; break;
    case QS_WT_Q2_K: at[0] = 80, at[1] = 82; break;
    case QS_WT_Q3_K: at[0] = 108; break;
    }
    for (uint8_t *p = w; p < w + rb * rows; p += bb)
        for (int k = 0; k < 2 && at[k] >= 0; k++)
            put16(p + at[k], qs_f32_to_f16((k ? 0.05f * frand() : 0.01f + 0.02f * fabsf(frand())) / (e == 256 ? 16 : 1)));
    return w;
}

/* 8-bit activations (decode of Q8_0, Q4_0, Q4_1, Q4_K, Q6_K; Q5_0, Q5_1,
 * IQ4_NL, Q2_K, Q3_K, Q5_K): the fast kernels (AVX2, and AVX-512 where
 * the CPU has it: VNNI for every type here) and the plain C ones equal the
 * decoded weights times x rounded to 8-bit blocks (of 256 for the
 * k-quants), one row and through qs_wlinear (one row of x, and three); other types give
 * NaN. Widths of
 * 131 blocks (past the eight-block steps, an odd pair), 8 and 32 (one and
 * four k-quant super-blocks). */
TEST(wmat_q8_activations) {
    const int widths[3] = {4096 + 96, 256, 1024}, n_out = 40;
    enum { NT = 11 };
    const uint32_t q8types[NT] = {QS_WT_Q8_0, QS_WT_Q4_0, QS_WT_Q4_1, QS_WT_Q4_K, QS_WT_Q6_K, QS_WT_Q5_0,
                                  QS_WT_Q5_1, QS_WT_IQ4_NL, QS_WT_Q2_K, QS_WT_Q3_K, QS_WT_Q5_K};
    const char *q8names[NT] = {"Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K", "Q5_0", "Q5_1", "IQ4_NL", "Q2_K", "Q3_K", "Q5_K"};
    int have_fast = qs_wmat_set_kernel("avx2");
    qs_wmat_set_act("q8");
    for (int kw = 0; kw < 6; kw++) { /* AVX2, then AVX-512 (VNNI for every type here) where the CPU has it */
        int wi = kw % 3, n_in = widths[wi];
        if (kw == 3 && !qs_wmat_set_kernel("avx512")) break;
        float *x = malloc((size_t)3 * n_in * sizeof *x), *dec = malloc((size_t)n_out * n_in * sizeof *dec), y[3 * 40];
        double *xq32 = malloc((size_t)3 * n_in * sizeof *xq32), *xq256 = malloc((size_t)3 * n_in * sizeof *xq256);
        for (int i = 0; i < 3 * n_in; i++) x[i] = frand() * (i % 97 == 0 ? 20.0f : 1.0f); /* a few large ones */
        for (int i = 0; i < 3; i++) {
            q8_blocks(x + (size_t)i * n_in, n_in, xq32 + (size_t)i * n_in, 32);
            if (n_in % 256 == 0) q8_blocks(x + (size_t)i * n_in, n_in, xq256 + (size_t)i * n_in, 256);
        }
        for (int t = 0; t < NT; t++) {
            size_t be, bb;
            qs_wtype_block(q8types[t], &be, &bb);
            if (n_in % be) continue; /* super-blocks of 256: the widths of 256 and 1024 */
            int kq = q8types[t] == QS_WT_Q4_K || q8types[t] == QS_WT_Q6_K;
            uint8_t *w = kq ? make_kq(q8types[t], n_out, n_in) : t >= 5 ? make_blocks(q8types[t], n_out, n_in)
                                                                       : make(q8types[t], n_out, n_in);
            size_t rb = qs_wtype_row_bytes(q8types[t], n_in);
            const double *xq = be == 256 ? xq256 : xq32;
            qs_wrows_f32(q8types[t], w, n_in, 0, n_out, dec);
            CHECK(qs_wlinear(x, 3, q8types[t], w, NULL, n_out, n_in, y) == QS_OK, "%s", qs_last_error());
            float y1[40]; /* one row of x: decode's GEMV (a range of rows a call where the type has such a kernel) */
            CHECK(qs_wlinear(x, 1, q8types[t], w, NULL, n_out, n_in, y1) == QS_OK, "%s", qs_last_error());
            double worst = 0;
            for (int r = 0; r < n_out; r++)
                for (int i = 0; i < 3; i++) {
                    double e = 0, mag = 0;
                    for (int j = 0; j < n_in; j++)
                        e += (double)dec[(size_t)r * n_in + j] * xq[(size_t)i * n_in + j],
                            mag += fabs((double)dec[(size_t)r * n_in + j] * xq[(size_t)i * n_in + j]);
                    float ref = qs_wdot_q8(q8types[t], w + rb * r, x + (size_t)i * n_in, n_in, 1);
                    float fast = qs_wdot_q8(q8types[t], w + rb * r, x + (size_t)i * n_in, n_in, 0);
                    worst = fmax(worst, fmax(fabs(ref - e), fmax(fabs(fast - e), fabs(y[i * n_out + r] - e))) / (mag + 1e-30));
                    if (i == 0) worst = fmax(worst, fabs(y1[r] - e) / (mag + 1e-30));
                }
            CHECK(worst < 2e-6, "%s, width %d, %s: the 8-bit-activation products differ from the exact one by %.3g (relative)",
                  q8names[t], n_in, qs_wmat_kernel(), worst);
            free(w);
        }
        free(x);
        free(dec);
        free(xq32);
        free(xq256);
    }
    /* the AVX2 rounding of x equals the plain C one, code for code: the same
     * plain C Q8_0 kernel on x rounded both ways gives the same bits (ties
     * in the second block: 127 at its largest, so halves round to even) */
    {
        enum { W = 4096 + 96 };
        float *xr = malloc(W * sizeof *xr);
        for (int i = 0; i < W; i++) xr[i] = frand() * (i % 97 == 0 ? 20.0f : 1.0f);
        for (int i = 0; i < 32; i++) xr[32 + i] = i == 0 ? 127.0f : (float)(i - 16) + 0.5f;
        for (int i = 0; i < 32; i++) xr[64 + i] = 0.0f; /* an all-zero block */
        xr[511] = -50.0f, xr[767] = 50.0f; /* the largest last in their blocks of 256 */
        uint8_t *w = make(QS_WT_Q8_0, 8, W);
        size_t rb = qs_wtype_row_bytes(QS_WT_Q8_0, W);
        int same = 1;
        for (int r = 0; r < 8; r++) {
            qs_wmat_set_kernel("ref");
            float a = qs_wdot_q8(QS_WT_Q8_0, w + rb * r, xr, W, 1);
            qs_wmat_set_kernel("auto");
            float b = qs_wdot_q8(QS_WT_Q8_0, w + rb * r, xr, W, 1);
            same &= memcmp(&a, &b, sizeof a) == 0;
        }
        CHECK(same, "x rounded to 8-bit blocks by the fast path and by plain C give different products");
        free(w);
        w = make_kq(QS_WT_Q4_K, 8, 4096); /* and in blocks of 256, for the k-quants */
        rb = qs_wtype_row_bytes(QS_WT_Q4_K, 4096);
        same = 1;
        for (int r = 0; r < 8; r++) {
            qs_wmat_set_kernel("ref");
            float a = qs_wdot_q8(QS_WT_Q4_K, w + rb * r, xr, 4096, 1);
            qs_wmat_set_kernel("auto");
            float b = qs_wdot_q8(QS_WT_Q4_K, w + rb * r, xr, 4096, 1);
            same &= memcmp(&a, &b, sizeof a) == 0;
        }
        CHECK(same, "x rounded to 8-bit blocks of 256 by the fast path and by plain C give different products");
        free(w);
        free(xr);
    }
    float z[32] = {0};
    CHECK(isnan(qs_wdot_q8(QS_WT_F16, z, z, 32, 0)), "F16 has no 8-bit-activation kernel");
    CHECK(have_fast || !__builtin_cpu_supports("avx2"), "the avx2 kernels run on an AVX2 machine");
    qs_wmat_set_kernel("auto");
}

/* the largest error of y (n, n_out) against x (n, n_in, in double) times
 * the decoded weights dec (n_out, n_in) plus b, relative to the sum of the
 * products' magnitudes */
static double worst_rel(const float *y, const float *dec, const double *x, const float *b, int n, int n_out, int n_in) {
    double worst = 0;
    for (int i = 0; i < n; i++)
        for (int r = 0; r < n_out; r++) {
            double e = b[r], mag = fabs(b[r]);
            for (int j = 0; j < n_in; j++)
                e += (double)dec[(size_t)r * n_in + j] * x[(size_t)i * n_in + j],
                    mag += fabs((double)dec[(size_t)r * n_in + j] * x[(size_t)i * n_in + j]);
            worst = fmax(worst, fabs(y[(size_t)i * n_out + r] - e) / (mag + 1e-30));
        }
    return worst;
}

/* Prefill on 8-bit activations (kern/wq8gemm.c): each kernel this CPU runs
 * (plain C, AVX2, AVX-512 VNNI) equals the decoded weights times x rounded
 * to 8-bit blocks of 32, for Q8_0, Q4_0, Q5_0 and IQ4_NL, and to blocks of
 * 256 for Q4_K, Q5_K (whose offsets are taken apart) and Q6_K (a scale
 * each half block), at shapes that
 * need the padding (rows of x and weights not a multiple of 4, an odd
 * block count, blocks short of the VNNI kernel's windows of 16) and more
 * than one slice of x rows, K and weight rows;
 * qs_wlinear takes that path when the prefill activations are "q8", and
 * keeps the exact fp32 panels for the types it does not cover. */
TEST(wmat_q8_prefill) {
    const int widths[3] = {4096 + 96, 256, 4096 + 1280}, n_out = 70, n = 69;
    enum { NPT = 7 };
    const uint32_t pt[NPT] = {QS_WT_Q8_0, QS_WT_Q4_0, QS_WT_Q5_0, QS_WT_IQ4_NL, QS_WT_Q4_K, QS_WT_Q5_K, QS_WT_Q6_K};
    const char *pn[NPT] = {"Q8_0", "Q4_0", "Q5_0", "IQ4_NL", "Q4_K", "Q5_K", "Q6_K"}, *kernels[3] = {"ref", "avx2", "avx512vnni"};
    float *b = malloc(n_out * sizeof *b);
    for (int r = 0; r < n_out; r++) b[r] = frand();
    int ran[3] = {0};
    for (int wi = 0; wi < 3; wi++) {
        int n_in = widths[wi];
        float *x = malloc((size_t)n * n_in * sizeof *x), *dec = malloc((size_t)n_out * n_in * sizeof *dec);
        float *y = malloc((size_t)n * n_out * sizeof *y);
        double *xq = malloc((size_t)n * n_in * sizeof *xq), *xq256 = malloc((size_t)n * n_in * sizeof *xq256);
        for (int i = 0; i < n * n_in; i++) x[i] = frand() * (i % 97 == 0 ? 20.0f : 1.0f);
        for (int i = 0; i < n; i++) q8_blocks(x + (size_t)i * n_in, n_in, xq + (size_t)i * n_in, 32);
        for (int i = 0; i < n && n_in % 256 == 0; i++) q8_blocks(x + (size_t)i * n_in, n_in, xq256 + (size_t)i * n_in, 256);
        for (int t = 0; t < NPT; t++) {
            int kq = pt[t] == QS_WT_Q4_K || pt[t] == QS_WT_Q5_K || pt[t] == QS_WT_Q6_K;
            if (kq && n_in % 256) continue; /* super-blocks of 256 */
            uint8_t *w = t < 2                                             ? make(pt[t], n_out, n_in)
                         : pt[t] == QS_WT_Q4_K || pt[t] == QS_WT_Q6_K ? make_kq(pt[t], n_out, n_in)
                                                                       : make_blocks(pt[t], n_out, n_in);
            qs_wrows_f32(pt[t], w, n_in, 0, n_out, dec);
            for (int k = 0; k < 4; k++) { /* the three kernels, then qs_wlinear */
                qs_status st;
                if (k < 3) {
                    st = qs_wq8_gemm(x, n, pt[t], w, b, n_out, n_in, y, kernels[k]);
                    if (st == QS_EARG) continue; /* not runnable on this CPU */
                    ran[k] = 1;
                } else {
                    qs_wmat_set_prefill_act("q8");
                    st = qs_wlinear(x, n, pt[t], w, b, n_out, n_in, y);
                    qs_wmat_set_prefill_act("f32");
                }
                CHECK(st == QS_OK, "%s: %s", pn[t], qs_last_error());
                double worst = worst_rel(y, dec, kq ? xq256 : xq, b, n, n_out, n_in);
                CHECK(worst < 2e-6, "%s, width %d, %s: relative error %.3g against the rounded product", pn[t], n_in,
                      k < 3 ? kernels[k] : "qs_wlinear", worst);
            }
            free(w);
        }
        free(x), free(dec), free(y), free(xq), free(xq256);
    }
    CHECK(ran[0] && (ran[1] || !__builtin_cpu_supports("avx2")), "the plain C and AVX2 kernels ran");
    CHECK(ran[2] || !__builtin_cpu_supports("avx512vnni"), "the VNNI kernel ran on a VNNI machine");
    /* a type without (code, scale) blocks: refused by the kernel, exact fp32 panels through qs_wlinear */
    enum { N = 9, NI = 64, NO = 5 };
    float x[N * NI], y[N * NO], dec[NO * NI];
    for (int i = 0; i < N * NI; i++) x[i] = frand();
    uint8_t *w = make(QS_WT_Q4_1, NO, NI);
    CHECK(qs_wq8_gemm(x, N, QS_WT_Q4_1, w, NULL, NO, NI, y, NULL) == QS_EUNSUPPORTED, "Q4_1 has no 8-bit prefill");
    CHECK(qs_wq8_gemm(x, N, QS_WT_Q8_0, w, NULL, NO, NI, y, "sse") == QS_EARG, "an unknown kernel name");
    qs_wmat_set_prefill_act("q8");
    CHECK(qs_wlinear(x, N, QS_WT_Q4_1, w, NULL, NO, NI, y) == QS_OK, "%s", qs_last_error());
    qs_wmat_set_prefill_act("f32");
    qs_wrows_f32(QS_WT_Q4_1, w, NI, 0, NO, dec);
    double worst = 0;
    for (int i = 0; i < N; i++)
        for (int r = 0; r < NO; r++) {
            double e = 0, mag = 0;
            for (int j = 0; j < NI; j++) e += (double)dec[r * NI + j] * x[i * NI + j], mag += fabs((double)dec[r * NI + j] * x[i * NI + j]);
            worst = fmax(worst, fabs(y[i * NO + r] - e) / (mag + 1e-30));
        }
    CHECK(worst < 1e-6, "Q4_1 with q8 prefill: relative error %.3g against the exact product", worst);
    CHECK(!qs_wmat_set_prefill_act("q4") && !strcmp(qs_wmat_prefill_act(), "f32"), "prefill activations q8 or f32");
    free(w);
    free(b);
}

/* Prefill on F16, BF16 and F32 by the fused AVX-512 kernel (kern/wfgemm.c): it
 * and its plain C reference equal the double-precision product of the
 * decoded weights, at shapes with partial micro-tiles, more than one slice
 * of x rows, K and weight rows; qs_wlinear's many-row path equals it too,
 * and widths that are not a multiple of 16 go through the panels. */
TEST(wmat_fused_prefill) {
    const int widths[3] = {2048 + 48, 80, 40}, n_out = 70, n = 69;
    const uint32_t ft[3] = {QS_WT_F16, QS_WT_BF16, QS_WT_F32};
    const char *fn[3] = {"F16", "BF16", "F32"}, *kernels[2] = {"ref", "avx512"};
    float b[70];
    for (int r = 0; r < n_out; r++) b[r] = frand();
    int ran = 0;
    for (int wi = 0; wi < 3; wi++) {
        int n_in = widths[wi];
        float *x = malloc((size_t)n * n_in * sizeof *x), *dec = malloc((size_t)n_out * n_in * sizeof *dec);
        float *y = malloc((size_t)n * n_out * sizeof *y);
        double *xd = malloc((size_t)n * n_in * sizeof *xd);
        for (int i = 0; i < n * n_in; i++) x[i] = frand(), xd[i] = x[i];
        for (int t = 0; t < 3; t++) {
            uint8_t *w = make(ft[t], n_out, n_in);
            qs_wrows_f32(ft[t], w, n_in, 0, n_out, dec);
            for (int k = 0; k < 3; k++) { /* the two kernels, then qs_wlinear */
                qs_status st;
                if (k < 2) {
                    st = qs_wf_gemm(x, n, ft[t], w, b, n_out, n_in, y, kernels[k]);
                    if (n_in % 16) {
                        CHECK(st == QS_EUNSUPPORTED, "%s, width %d: %d", fn[t], n_in, st);
                        continue;
                    }
                    if (st == QS_EARG) continue; /* no AVX-512 here */
                    ran |= k == 1;
                } else { /* fused whatever QSCOPE_FUSED_PREFILL says (make sanitize turns it off elsewhere) */
                    int was = qs_wmat_set_fused_prefill(1);
                    st = qs_wlinear(x, n, ft[t], w, b, n_out, n_in, y);
                    qs_wmat_set_fused_prefill(was);
                }
                CHECK(st == QS_OK, "%s: %s", fn[t], qs_last_error());
                double worst = worst_rel(y, dec, xd, b, n, n_out, n_in);
                CHECK(worst < 1e-6, "%s, width %d, %s: relative error %.3g", fn[t], n_in, k < 2 ? kernels[k] : "qs_wlinear", worst);
            }
            free(w);
        }
        free(x), free(dec), free(y), free(xd);
    }
    CHECK(ran || !__builtin_cpu_supports("avx512f"), "the AVX-512 kernel ran on an AVX-512 machine");
    float z[16 * 9] = {0};
    CHECK(qs_wf_gemm(z, 9, QS_WT_Q8_0, z, NULL, 1, 32, z, NULL) == QS_EUNSUPPORTED, "block formats go elsewhere");
    CHECK(qs_wf_gemm(z, 9, QS_WT_F16, z, NULL, 1, 16, z, "sse") == QS_EARG, "an unknown kernel name");
}

/* qscope's packed round-to-nearest rows: decoded values equal the fake-
 * quantized ones, and qs_wlinear on them equals the product with those. */
TEST(wmat_packed_rtn) {
    const int n_out = 64, n_in = 256;
    float *W = malloc((size_t)n_out * n_in * sizeof *W), *fq = malloc((size_t)n_out * n_in * sizeof *fq);
    float *dec = malloc((size_t)n_out * n_in * sizeof *dec), x[3 * 256], y[3 * 64];
    for (int i = 0; i < n_out * n_in; i++) W[i] = frand();
    for (int i = 0; i < 3 * n_in; i++) x[i] = frand();
    const int cases[4][3] = {{4, 5, 0}, {4, 0, 1}, {8, 6, 0}, {3, 7, 1}}; /* bits, lg, sym */
    for (int k = 0; k < 4; k++) {
        int bits = cases[k][0], lg = cases[k][1], sym = cases[k][2];
        uint32_t type = qs_wt_qg(bits, lg);
        size_t rb = qs_wtype_row_bytes(type, n_in);
        uint8_t *p = malloc(rb * n_out);
        qs_quant_pack_rtn(W, n_out, n_in, bits, lg, sym, p);
        qs_wrows_f32(type, p, n_in, 0, n_out, dec);
        CHECK(qs_quant_weight_rtn(W, n_out, n_in, bits, lg ? 1 << lg : 0, sym, fq) == QS_OK &&
                  memcmp(dec, fq, (size_t)n_out * n_in * sizeof *fq) == 0,
              "%d-bit, group %d, sym %d: decoded values equal the fake-quantized ones", bits, lg ? 1 << lg : n_in, sym);
        CHECK(qs_wlinear(x, 3, type, p, NULL, n_out, n_in, y) == QS_OK, "%s", qs_last_error());
        double worst = 0;
        for (int i = 0; i < 3; i++)
            for (int r = 0; r < n_out; r++) {
                double e = 0, mag = 0;
                for (int j = 0; j < n_in; j++)
                    e += (double)fq[(size_t)r * n_in + j] * x[i * n_in + j], mag += fabs((double)fq[(size_t)r * n_in + j] * x[i * n_in + j]);
                worst = fmax(worst, fabs(y[i * n_out + r] - e) / (mag + 1e-30));
            }
        CHECK(worst < 1e-6, "%d-bit: relative error %.3g", bits, worst);
        free(p);
    }
    CHECK(qs_wtype_row_bytes(qs_wt_qg(4, 5), 48) == 0, "a row of 48 is not whole groups of 32");
    free(W);
    free(fq);
    free(dec);
}
