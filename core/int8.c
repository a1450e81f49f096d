#include "int8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "pool.h"

/* The O(M K) and O(M N) loops around the GEMM are compiled for the CPU's
 * vector width too (the GEMM itself picks its kernel in i8gemm.c). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define QS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QS_CLONES
#endif

struct qs_int8_linear {
    int n, k;         /* N outputs, K inputs */
    qs_i8mat *w;      /* (N, K) int8 codes, packed */
    float *w_scale;   /* (N) s_w: absmax of each weight row */
    float *bias;      /* (N) or NULL */
    /* scratch, grown by forward */
    uint8_t *mask;    /* (K) 1 = outlier column */
    int *ocols;       /* (K) outlier column indices */
    int8_t *a;        /* (M, K) activation codes */
    float *sx;        /* (M) activation scales */
    int32_t *c;       /* (M, N) int32 product */
    float *xo, *wo;   /* (M, n_o) outlier activations, (N, n_o) their dequantized weights */
    int8_t *col;      /* (N) one weight column */
    size_t a_cap, sx_cap, c_cap, xo_cap, wo_cap;
};

/* Round half to even in the default rounding mode, exact for |v| < 2^22:
 * adding 1.5 x 2^23 leaves no fraction bits, so the FPU rounds for us, and
 * the loop stays vectorizable (unlike lrintf at baseline x86-64). */
static inline float round_even(float v) {
    const float magic = 12582912.0f;
    return (v + magic) - magic;
}

static inline int8_t to_code(float v) {
    v = v > 127.0f ? 127.0f : v;
    v = v < -127.0f ? -127.0f : v;
    return (int8_t)(int)round_even(v);
}

/* ---- layer ------------------------------------------------------------- */

qs_status qs_int8_linear_new(const float *w, const float *bias, int N, int K, qs_int8_linear **out) {
    *out = NULL;
    if (N < 1 || K < 1 || K > QS_I8_KMAX)
        return qs_fail(QS_EARG, "int8_linear: shape [%d,%d] out of range (1 <= K <= %d)", N, K,
                       QS_I8_KMAX);
    qs_int8_linear *L = calloc(1, sizeof *L);
    int8_t *q = malloc((size_t)N * K);
    if (!L || !q) {
        free(L);
        free(q);
        return qs_fail(QS_ENOMEM, "int8_linear: out of memory for [%d,%d]", N, K);
    }
    L->n = N;
    L->k = K;
    L->w_scale = malloc((size_t)N * sizeof *L->w_scale);
    L->mask = malloc((size_t)K);
    L->ocols = malloc((size_t)K * sizeof *L->ocols);
    L->col = malloc((size_t)N);
    if (bias) L->bias = malloc((size_t)N * sizeof *L->bias);
    qs_status st = QS_OK;
    if (!L->w_scale || !L->mask || !L->ocols || !L->col || (bias && !L->bias)) {
        st = qs_fail(QS_ENOMEM, "int8_linear: out of memory for [%d,%d]", N, K);
        goto fail;
    }
    if (bias) memcpy(L->bias, bias, (size_t)N * sizeof *bias);
    for (int n = 0; n < N; n++) {
        const float *row = w + (size_t)n * K;
        float s = 0;
        for (int k = 0; k < K; k++) {
            if (!isfinite(row[k])) {
                st = qs_fail(QS_EARG, "int8_linear: weight [%d,%d] is %g", n, k, (double)row[k]);
                goto fail;
            }
            s = fabsf(row[k]) > s ? fabsf(row[k]) : s;
        }
        L->w_scale[n] = s;
        /* eq. 1: q = round(127 / s * w); in double so the code is the
         * correctly rounded one (weights are quantized once) */
        double inv = s > 0 ? 127.0 / s : 0.0;
        for (int k = 0; k < K; k++) q[(size_t)n * K + k] = (int8_t)nearbyint(row[k] * inv);
    }
    st = qs_i8mat_pack(q, N, K, &L->w);
    if (st != QS_OK) goto fail;
    free(q);
    *out = L;
    return QS_OK;
fail:
    free(q);
    qs_int8_linear_free(L);
    return st;
}

void qs_int8_linear_free(qs_int8_linear *L) {
    if (!L) return;
    qs_i8mat_free(L->w);
    free(L->w_scale);
    free(L->bias);
    free(L->mask);
    free(L->ocols);
    free(L->a);
    free(L->sx);
    free(L->c);
    free(L->xo);
    free(L->wo);
    free(L->col);
    free(L);
}

size_t qs_int8_linear_bytes(const qs_int8_linear *L) {
    return qs_i8mat_bytes(L->w) + (size_t)L->n * sizeof(float) * (L->bias ? 2 : 1);
}
int qs_int8_linear_n_out(const qs_int8_linear *L) { return L->n; }
int qs_int8_linear_n_in(const qs_int8_linear *L) { return L->k; }
const qs_i8mat *qs_int8_linear_weights(const qs_int8_linear *L) { return L->w; }
const float *qs_int8_linear_scales(const qs_int8_linear *L) { return L->w_scale; }

/* ---- activation side ---------------------------------------------------- */

QS_CLONES static void colmax_rows(const float *x, int K, int m0, int m1, int k0, int k1, float *mx) {
    for (int k = k0; k < k1; k++) mx[k - k0] = 0;
    for (int m = m0; m < m1; m++) {
        const float *r = x + (size_t)m * K;
        for (int k = k0; k < k1; k++) {
            float v = fabsf(r[k]);
            mx[k - k0] = v > mx[k - k0] ? v : mx[k - k0];
        }
    }
}

QS_CLONES static float row_absmax(const float *r, int K, const uint8_t *mask) {
    float s = 0;
    if (mask) {
        for (int k = 0; k < K; k++) {
            float v = mask[k] ? 0.0f : fabsf(r[k]);
            s = v > s ? v : s;
        }
    } else {
        for (int k = 0; k < K; k++) {
            float v = fabsf(r[k]);
            s = v > s ? v : s;
        }
    }
    return s;
}

QS_CLONES static void quant_row(const float *r, int K, const uint8_t *mask, float s, int8_t *a) {
    float inv = s > 0 ? 127.0f / s : 0.0f;
    if (isinf(inv)) inv = 0; /* s subnormal: the row is zero to int8 precision anyway */
    if (mask) {
        for (int k = 0; k < K; k++) a[k] = mask[k] ? 0 : to_code(r[k] * inv);
    } else {
        for (int k = 0; k < K; k++) a[k] = to_code(r[k] * inv);
    }
}

/* Work split for the pool: blocks of rows (or columns), a few per thread. */
typedef struct {
    const float *x;
    int M, K, N;
    const uint8_t *mask;
    int8_t *a;
    float *sx;
    int rows; /* per task */
    int cols; /* per task, colmax */
    float *colmax;
    int tensor;
    /* dequantize */
    const int32_t *c;
    const float *w_scale, *bias;
    float *y;
    int add; /* y already holds the outlier product */
} act_job;

static int rows_per_task(int M, int per_row_cost) {
    /* aim for >= ~16k elements per task and ~4 tasks per thread */
    int t = qs_pool_threads();
    int rows = (M + 4 * t - 1) / (4 * t);
    int min_rows = (16384 + per_row_cost - 1) / (per_row_cost > 0 ? per_row_cost : 1);
    if (rows < min_rows) rows = min_rows;
    return rows < 1 ? 1 : rows;
}

static void colmax_task(void *ud, int t, int thread) {
    act_job *J = ud;
    int k0 = t * J->cols, k1 = k0 + J->cols < J->K ? k0 + J->cols : J->K;
    colmax_rows(J->x, J->K, 0, J->M, k0, k1, J->colmax + k0);
}

static int find_outliers(const float *x, int M, int K, float threshold, uint8_t *mask, float *colmax) {
    memset(mask, 0, (size_t)K);
    if (!(threshold > 0)) return 0;
    act_job J = {.x = x, .M = M, .K = K, .colmax = colmax};
    J.cols = 256;
    if ((size_t)M * K < 65536) J.cols = K;
    qs_pool_run((K + J.cols - 1) / J.cols, colmax_task, &J);
    int n = 0;
    for (int k = 0; k < K; k++)
        if (colmax[k] >= threshold) {
            mask[k] = 1;
            n++;
        }
    return n;
}

int qs_int8_outlier_columns(const float *x, int M, int K, float threshold, uint8_t *mask) {
    float *colmax = malloc((size_t)K * sizeof *colmax);
    if (!colmax) {
        /* one column at a time needs no scratch */
        int n = 0;
        for (int k = 0; k < K; k++) {
            float m = 0;
            for (int r = 0; r < M; r++) m = fmaxf(m, fabsf(x[(size_t)r * K + k]));
            mask[k] = threshold > 0 && m >= threshold;
            n += mask[k];
        }
        return n;
    }
    int n = find_outliers(x, M, K, threshold, mask, colmax);
    free(colmax);
    return n;
}

static void scale_task(void *ud, int t, int thread) {
    act_job *J = ud;
    int m0 = t * J->rows, m1 = m0 + J->rows < J->M ? m0 + J->rows : J->M;
    for (int m = m0; m < m1; m++) {
        const float *r = J->x + (size_t)m * J->K;
        J->sx[m] = row_absmax(r, J->K, J->mask);
        /* per token: quantize the row while it is in L1 */
        if (!J->tensor) quant_row(r, J->K, J->mask, J->sx[m], J->a + (size_t)m * J->K);
    }
}

static void quant_task(void *ud, int t, int thread) {
    act_job *J = ud;
    int m0 = t * J->rows, m1 = m0 + J->rows < J->M ? m0 + J->rows : J->M;
    for (int m = m0; m < m1; m++)
        quant_row(J->x + (size_t)m * J->K, J->K, J->mask, J->sx[m], J->a + (size_t)m * J->K);
}

void qs_int8_quantize_act(const float *x, int M, int K, const uint8_t *mask, qs_int8_act act,
                          int8_t *a, float *scale) {
    act_job J = {.x = x, .M = M, .K = K, .mask = mask, .a = a, .sx = scale,
                 .tensor = act == QS_INT8_ACT_TENSOR};
    J.rows = rows_per_task(M, K);
    int tasks = (M + J.rows - 1) / J.rows;
    qs_pool_run(tasks, scale_task, &J);
    if (J.tensor) {
        float s = 0;
        for (int m = 0; m < M; m++) s = scale[m] > s ? scale[m] : s;
        for (int m = 0; m < M; m++) scale[m] = s;
        qs_pool_run(tasks, quant_task, &J);
    }
}

/* ---- forward ------------------------------------------------------------ */

/* y[m,n] (+)= C[m,n] s_x[m] s_w[n] / 127^2 + b[n]  (eq. 5-6) */
QS_CLONES static void dequant_row(const int32_t *c, int N, float sxm, const float *sw,
                                  const float *bias, int add, float *y) {
    float f = sxm * (1.0f / 16129.0f);
    if (add) {
        if (bias)
            for (int n = 0; n < N; n++) y[n] += (float)c[n] * (f * sw[n]) + bias[n];
        else
            for (int n = 0; n < N; n++) y[n] += (float)c[n] * (f * sw[n]);
    } else {
        if (bias)
            for (int n = 0; n < N; n++) y[n] = (float)c[n] * (f * sw[n]) + bias[n];
        else
            for (int n = 0; n < N; n++) y[n] = (float)c[n] * (f * sw[n]);
    }
}

static void dequant_task(void *ud, int t, int thread) {
    act_job *J = ud;
    int m0 = t * J->rows, m1 = m0 + J->rows < J->M ? m0 + J->rows : J->M;
    for (int m = m0; m < m1; m++)
        dequant_row(J->c + (size_t)m * J->N, J->N, J->sx[m], J->w_scale, J->bias, J->add,
                    J->y + (size_t)m * J->N);
}

static int grow(void **p, size_t *cap, size_t bytes) {
    if (bytes <= *cap) return 1;
    void *q = realloc(*p, bytes);
    if (!q) return 0;
    *p = q;
    *cap = bytes;
    return 1;
}

qs_status qs_int8_linear_forward(qs_int8_linear *L, const float *x, int M, float threshold,
                                 qs_int8_act act, float *y, qs_int8_stats *st) {
    if (M < 1) return qs_fail(QS_EARG, "int8_linear_forward: %d rows", M);
    int N = L->n, K = L->k;
    size_t mk = (size_t)M * K, mn = (size_t)M * N;
    if (!grow((void **)&L->a, &L->a_cap, mk) || !grow((void **)&L->c, &L->c_cap, mn * 4) ||
        !grow((void **)&L->sx, &L->sx_cap, (size_t)M * 4) ||
        !grow((void **)&L->xo, &L->xo_cap, (size_t)K * 4)) /* colmax scratch before outliers */
        return qs_fail(QS_ENOMEM, "int8_linear_forward: out of memory for %d rows", M);

    /* section 3.3: feature columns with an outlier in this batch */
    int n_o = find_outliers(x, M, K, threshold, L->mask, L->xo);
    if (st) st->n_outliers = n_o;
    if (n_o) {
        int j = 0;
        for (int k = 0; k < K; k++)
            if (L->mask[k]) L->ocols[j++] = k;
        if (st && st->cols)
            memcpy(st->cols, L->ocols, (size_t)(n_o < st->cols_cap ? n_o : st->cols_cap) * sizeof(int));
        if (!grow((void **)&L->xo, &L->xo_cap, (size_t)M * n_o * 4) ||
            !grow((void **)&L->wo, &L->wo_cap, (size_t)N * n_o * 4))
            return qs_fail(QS_ENOMEM, "int8_linear_forward: out of memory for %d outlier columns", n_o);
        /* the fp32 part: X[:, O] . (W_q[:, O] s_w / 127)^T, weights
         * dequantized from the codes as bitsandbytes does */
        for (int m = 0; m < M; m++)
            for (j = 0; j < n_o; j++) L->xo[(size_t)m * n_o + j] = x[(size_t)m * K + L->ocols[j]];
        for (j = 0; j < n_o; j++) {
            qs_i8mat_col(L->w, L->ocols[j], L->col);
            for (int n = 0; n < N; n++)
                L->wo[(size_t)n * n_o + j] = (float)L->col[n] * (L->w_scale[n] / 127.0f);
        }
        qs_blas_gemm_nt(M, N, n_o, 1.0f, L->xo, n_o, L->wo, n_o, 0.0f, y, N);
    }

    /* section 3.2: vector-wise int8 for the rest, exact int32 product */
    qs_int8_quantize_act(x, M, K, n_o ? L->mask : NULL, act, L->a, L->sx);
    qs_i8_gemm(L->a, M, K, L->w, L->c, N);

    act_job J = {.M = M, .N = N, .sx = L->sx, .c = L->c, .w_scale = L->w_scale, .bias = L->bias,
                 .y = y, .add = n_o > 0};
    J.rows = rows_per_task(M, N);
    qs_pool_run((M + J.rows - 1) / J.rows, dequant_task, &J);
    return QS_OK;
}
