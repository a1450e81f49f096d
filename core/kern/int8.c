#include "kern/kern.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

/* The O(M K) and O(M N) loops around the GEMM are compiled for the CPU's
 * vector width too (the GEMM itself picks its kernel in i8gemm.c). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define QS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QS_CLONES
#endif

/* Buffers a forward needs, grown to the largest call; one per caller (a
 * context), so a model's many int8 layers share one set. */
struct qs_int8_scratch {
    uint8_t *mask;    /* (K) 1 = outlier column */
    uint32_t *colmax; /* (K) column maxima of |x| (bit patterns) */
    int *ocols;       /* (K) outlier column indices */
    int8_t *a;        /* (M, K) activation codes */
    float *sx;        /* (M) activation scales */
    int32_t *c;       /* (M, N) int32 product */
    float *xo, *wo;   /* (M, n_o) outlier activations, (n_o, N) their dequantized weights */
    int8_t *col;      /* (N) one weight column */
    size_t mask_cap, colmax_cap, ocols_cap, a_cap, sx_cap, c_cap, xo_cap, wo_cap, col_cap;
};

struct qs_int8_linear {
    int n, k;         /* N outputs, K inputs */
    qs_i8mat *w;      /* (N, K) int8 codes, packed */
    float *w_scale;   /* (N) s_w: absmax of each weight row */
    float *bias;      /* (N) or NULL */
    pthread_mutex_t lock;  /* guards own */
    qs_int8_scratch *own;  /* scratch of callers that bring none */
};

/* Round half to even in the default rounding mode, exact for |v| < 2^22:
 * adding 1.5 x 2^23 leaves no fraction bits, so the FPU rounds for us, and
 * the loop stays vectorizable (unlike lrintf at baseline x86-64). */
static inline float round_even(float v) {
    const float magic = 12582912.0f;
    return (v + magic) - magic;
}

/* Clamped so that no float-to-int conversion is ever out of range; written
 * so that a NaN (from an inf or NaN activation) lands on a bound too. */
static inline int8_t to_code(float v) {
    v = v > -127.0f ? v : -127.0f;
    v = v < 127.0f ? v : 127.0f;
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
    pthread_mutex_init(&L->lock, NULL);
    L->n = N;
    L->k = K;
    L->w_scale = malloc((size_t)N * sizeof *L->w_scale);
    if (bias) L->bias = malloc((size_t)N * sizeof *L->bias);
    qs_status st = QS_OK;
    if (!L->w_scale || (bias && !L->bias)) {
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
    qs_int8_scratch_free(L->own);
    pthread_mutex_destroy(&L->lock);
    free(L);
}

qs_int8_scratch *qs_int8_scratch_new(void) {
    qs_int8_scratch *s = calloc(1, sizeof *s);
    if (!s) qs_fail(QS_ENOMEM, "out of memory");
    return s;
}

void qs_int8_scratch_free(qs_int8_scratch *s) {
    if (!s) return;
    free(s->mask);
    free(s->colmax);
    free(s->ocols);
    free(s->a);
    free(s->sx);
    free(s->c);
    free(s->xo);
    free(s->wo);
    free(s->col);
    free(s);
}

size_t qs_int8_linear_bytes(const qs_int8_linear *L) {
    return qs_i8mat_bytes(L->w) + (size_t)L->n * sizeof(float) * (L->bias ? 2 : 1);
}
int qs_int8_linear_n_out(const qs_int8_linear *L) { return L->n; }
int qs_int8_linear_n_in(const qs_int8_linear *L) { return L->k; }
const qs_i8mat *qs_int8_linear_weights(const qs_int8_linear *L) { return L->w; }
const float *qs_int8_linear_scales(const qs_int8_linear *L) { return L->w_scale; }

/* ---- activation side ---------------------------------------------------- */

/* mx[k - k0] = max over rows m0..m1 of |x[m,k]|, as the bit pattern of the
 * float (see row_absmax for why integers). */
QS_CLONES static void colmax_rows(const float *x, int K, int m0, int m1, int k0, int k1,
                                  uint32_t *mx) {
    for (int k = k0; k < k1; k++) mx[k - k0] = 0;
    for (int m = m0; m < m1; m++) {
        const float *r = x + (size_t)m * K;
        for (int k = k0; k < k1; k++) {
            uint32_t u;
            memcpy(&u, r + k, 4);
            u &= 0x7FFFFFFFu;
            mx[k - k0] = u > mx[k - k0] ? u : mx[k - k0];
        }
    }
}

/* max |r[k]| over the columns not in mask. On the bit patterns with the
 * sign cleared, unsigned order is the order of |x| (for non-NaN x), and an
 * integer max reduction vectorizes where a float one (NaN rules) does not. */
QS_CLONES static float row_absmax(const float *r, int K, const uint8_t *mask) {
    uint32_t s = 0;
    if (mask) {
        for (int k = 0; k < K; k++) {
            uint32_t u;
            memcpy(&u, r + k, 4);
            u &= ((uint32_t)mask[k] - 1u) & 0x7FFFFFFFu; /* mask 1: all bits off */
            s = u > s ? u : s;
        }
    } else {
        for (int k = 0; k < K; k++) {
            uint32_t u;
            memcpy(&u, r + k, 4);
            u &= 0x7FFFFFFFu;
            s = u > s ? u : s;
        }
    }
    float f;
    memcpy(&f, &s, 4);
    return f;
}

QS_CLONES static void quant_row(const float *r, int K, const uint8_t *mask, float s, int8_t *a) {
    float inv = s > 0 ? 127.0f / s : 0.0f;
    if (isinf(inv)) inv = 0; /* s subnormal: the row is zero to int8 precision anyway */
    if (mask) {
        for (int k = 0; k < K; k++) a[k] = (int8_t)(to_code(r[k] * inv) & ((int)mask[k] - 1));
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
    uint32_t *colmax; /* (K) bit patterns of the column maxima */
    int tensor;
    /* dequantize, add the outlier product and the bias */
    const int32_t *c;
    const float *w_scale, *bias;
    const float *xo, *wo;
    int n_o;
    float *y;
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

static int find_outliers(const float *x, int M, int K, float threshold, uint8_t *mask,
                         uint32_t *colmax) {
    memset(mask, 0, (size_t)K);
    if (!(threshold > 0)) return 0;
    act_job J = {.x = x, .M = M, .K = K, .colmax = colmax};
    J.cols = 256;
    if ((size_t)M * K < 65536) J.cols = K;
    qs_pool_run((K + J.cols - 1) / J.cols, colmax_task, &J);
    uint32_t thr_bits; /* threshold > 0, so bit order is value order */
    memcpy(&thr_bits, &threshold, 4);
    int n = 0;
    for (int k = 0; k < K; k++)
        if (colmax[k] >= thr_bits) { /* a NaN column counts: it goes through fp32 */
            mask[k] = 1;
            n++;
        }
    return n;
}

int qs_int8_outlier_columns(const float *x, int M, int K, float threshold, uint8_t *mask) {
    uint32_t *colmax = malloc((size_t)K * sizeof *colmax);
    if (!colmax) {
        /* no scratch: one column at a time, slower, same rule */
        int n = 0;
        for (int k = 0; k < K; k++) {
            uint32_t one;
            colmax_rows(x + k, K, 0, M, 0, 1, &one);
            float m;
            memcpy(&m, &one, 4);
            mask[k] = threshold > 0 && (m >= threshold || isnan(m));
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

/* One output row: y[n] = C[n] s_x s_w[n] / 127^2 + b[n] (eq. 5-6), then
 * + sum_j x_o[j] w_o[j][n], the fp32 outlier part (eq. 7's first term), with
 * y in L1 throughout. The outlier part is done here rather than by BLAS: its
 * inner dimension is a handful of columns, where sgemm spends its time on
 * setup, and BLAS threads left spinning afterwards slow down the next GEMM. */
QS_CLONES static void finish_row(const int32_t *c, int N, float sxm, const float *sw,
                                 const float *bias, const float *xo, const float *wo, int n_o,
                                 float *y) {
    float f = sxm * (1.0f / 16129.0f);
    if (bias)
        for (int n = 0; n < N; n++) y[n] = (float)c[n] * (f * sw[n]) + bias[n];
    else
        for (int n = 0; n < N; n++) y[n] = (float)c[n] * (f * sw[n]);
    int j = 0;
    for (; j + 4 <= n_o; j += 4) {
        float x0 = xo[j], x1 = xo[j + 1], x2 = xo[j + 2], x3 = xo[j + 3];
        const float *w0 = wo + (size_t)j * N, *w1 = w0 + N, *w2 = w1 + N, *w3 = w2 + N;
        for (int n = 0; n < N; n++) y[n] += (x0 * w0[n] + x1 * w1[n]) + (x2 * w2[n] + x3 * w3[n]);
    }
    for (; j < n_o; j++) {
        float x0 = xo[j];
        const float *w0 = wo + (size_t)j * N;
        for (int n = 0; n < N; n++) y[n] += x0 * w0[n];
    }
}

static void finish_task(void *ud, int t, int thread) {
    act_job *J = ud;
    int m0 = t * J->rows, m1 = m0 + J->rows < J->M ? m0 + J->rows : J->M;
    for (int m = m0; m < m1; m++) /* no outlier columns: xo is NULL, and NULL + 0 is undefined */
        finish_row(J->c + (size_t)m * J->N, J->N, J->sx[m], J->w_scale, J->bias,
                   J->n_o ? J->xo + (size_t)m * J->n_o : NULL, J->wo, J->n_o, J->y + (size_t)m * J->N);
}

static int grow(void **p, size_t *cap, size_t bytes) {
    if (bytes <= *cap) return 1;
    void *q = realloc(*p, bytes);
    if (!q) return 0;
    *p = q;
    *cap = bytes;
    return 1;
}

static qs_status forward_with(qs_int8_linear *L, const float *x, int M, float threshold, qs_int8_act act,
                              float *y, qs_int8_stats *st, qs_int8_scratch *S) {
    int N = L->n, K = L->k;
    size_t mk = (size_t)M * K, mn = (size_t)M * N;
    if (!grow((void **)&S->a, &S->a_cap, mk) || !grow((void **)&S->c, &S->c_cap, mn * 4) ||
        !grow((void **)&S->sx, &S->sx_cap, (size_t)M * 4) || !grow((void **)&S->mask, &S->mask_cap, (size_t)K) ||
        !grow((void **)&S->colmax, &S->colmax_cap, (size_t)K * 4) ||
        !grow((void **)&S->ocols, &S->ocols_cap, (size_t)K * sizeof(int)) || !grow((void **)&S->col, &S->col_cap, (size_t)N))
        return qs_fail(QS_ENOMEM, "int8_linear_forward: out of memory for %d rows", M);

    /* section 3.3: feature columns with an outlier in this batch */
    int n_o = find_outliers(x, M, K, threshold, S->mask, S->colmax);
    if (st) st->n_outliers = n_o;
    if (n_o) {
        int j = 0;
        for (int k = 0; k < K; k++)
            if (S->mask[k]) S->ocols[j++] = k;
        if (st && st->cols)
            memcpy(st->cols, S->ocols, (size_t)(n_o < st->cols_cap ? n_o : st->cols_cap) * sizeof(int));
        if (!grow((void **)&S->xo, &S->xo_cap, (size_t)M * n_o * 4) ||
            !grow((void **)&S->wo, &S->wo_cap, (size_t)N * n_o * 4))
            return qs_fail(QS_ENOMEM, "int8_linear_forward: out of memory for %d outlier columns", n_o);
        /* the fp32 part's operands: X[:, O], and W_q[:, O] s_w / 127, the
         * weights dequantized from the codes as bitsandbytes does */
        for (int m = 0; m < M; m++)
            for (j = 0; j < n_o; j++) S->xo[(size_t)m * n_o + j] = x[(size_t)m * K + S->ocols[j]];
        for (j = 0; j < n_o; j++) {
            qs_i8mat_col(L->w, S->ocols[j], S->col);
            float *wj = S->wo + (size_t)j * N;
            for (int n = 0; n < N; n++) wj[n] = (float)S->col[n] * (L->w_scale[n] / 127.0f);
        }
    }

    /* section 3.2: vector-wise int8 for the rest, exact int32 product */
    qs_int8_quantize_act(x, M, K, n_o ? S->mask : NULL, act, S->a, S->sx);
    qs_i8_gemm(S->a, M, K, L->w, S->c, N);

    act_job J = {.M = M, .N = N, .sx = S->sx, .c = S->c, .w_scale = L->w_scale, .bias = L->bias,
                 .xo = S->xo, .wo = S->wo, .n_o = n_o, .y = y};
    J.rows = rows_per_task(M, N * (1 + n_o));
    qs_pool_run((M + J.rows - 1) / J.rows, finish_task, &J);
    return QS_OK;
}

qs_status qs_int8_linear_forward_with(qs_int8_linear *L, const float *x, int M, float threshold, qs_int8_act act,
                                      float *y, qs_int8_stats *st, qs_int8_scratch *scratch) {
    if (M < 1) return qs_fail(QS_EARG, "int8_linear_forward: %d rows", M);
    if (scratch) return forward_with(L, x, M, threshold, act, y, st, scratch);
    /* no scratch of the caller's: the layer's own, one caller at a time */
    pthread_mutex_lock(&L->lock);
    qs_status r = QS_OK;
    if (!L->own && !(L->own = qs_int8_scratch_new())) r = QS_ENOMEM;
    if (!r) r = forward_with(L, x, M, threshold, act, y, st, L->own);
    pthread_mutex_unlock(&L->lock);
    return r;
}

qs_status qs_int8_linear_forward(qs_int8_linear *L, const float *x, int M, float threshold,
                                 qs_int8_act act, float *y, qs_int8_stats *st) {
    return qs_int8_linear_forward_with(L, x, M, threshold, act, y, st, NULL);
}
