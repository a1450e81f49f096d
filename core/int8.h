/* int8.h — the LLM.int8() linear layer (Dettmers et al. 2022, section 3).
 *
 * Weights are stored as int8, one absmax scale per output row (eq. 1 with
 * vector-wise scaling, section 3.2). At run time the feature columns of the
 * batch that hold an outlier (any |x| >= threshold, section 3.3) go through
 * an fp32 product with the dequantized weights; the rest is quantized per
 * token (row) with absmax, multiplied exactly in int32 (i8gemm.h) and scaled
 * back with the outer product of the row and weight scales (eq. 4-6):
 *
 *     y = (C_i32 * s_x s_w^T) / 127^2  +  X[:, O] (W_q[:, O] s_w / 127)^T  +  b
 *
 * This is the inference path of bitsandbytes' Linear8bitLt: no fp32 copy of
 * the weights is kept; the outlier part uses the int8 codes dequantized.
 * Rounding everywhere is round-half-to-even (IEEE default), so a value that
 * is an exact multiple of half a step rounds to the even code.
 *
 *     qs_int8_linear *L;
 *     if (qs_int8_linear_new(w, b, n_out, n_in, &L) != QS_OK) ...;  // w (n_out, n_in)
 *     qs_int8_stats st = {0};
 *     qs_int8_linear_forward(L, x, n_tok, 6.0f, QS_INT8_ACT_TOKEN, y, &st);
 *     // y (n_tok, n_out); st.n_outliers feature columns went through fp32
 *     qs_int8_linear_free(L);
 */
#ifndef QS_INT8_H
#define QS_INT8_H

#include <stddef.h>
#include <stdint.h>

#include "i8gemm.h"
#include "status.h"

/* How activations are scaled: per token (row, the paper's vector-wise
 * quantization) or one absmax for the whole batch (the per-tensor baseline
 * of the paper's comparison). Outlier columns are left out of either. */
typedef enum { QS_INT8_ACT_TOKEN = 0, QS_INT8_ACT_TENSOR = 1 } qs_int8_act;

/* What a forward saw. cols is optional and the caller's: when non-NULL the
 * first min(n_outliers, cols_cap) outlier column indices are written to it in
 * ascending order. */
typedef struct {
    int n_outliers; /* feature columns that went through fp32 */
    int *cols;      /* (cols_cap) or NULL */
    int cols_cap;
} qs_int8_stats;

typedef struct qs_int8_linear qs_int8_linear;

/* Quantize w (N, K) (row-major, as qs_linear stores it) per output row:
 * s_w[n] = max_k |w[n,k]|, q = round(127 w / s_w) (a zero row gets s_w = 0,
 * q = 0). bias (N) is copied, or NULL. *out is the caller's (free with
 * qs_int8_linear_free). QS_EARG for a bad shape or a non-finite weight,
 * QS_ENOMEM. */
qs_status qs_int8_linear_new(const float *w, const float *bias, int N, int K, qs_int8_linear **out);
void qs_int8_linear_free(qs_int8_linear *L);

/* Bytes of the layer as stored: packed int8 codes (padding and the VNNI
 * column sums included), fp32 row scales, fp32 bias. Scratch not counted. */
size_t qs_int8_linear_bytes(const qs_int8_linear *L);
int qs_int8_linear_n_out(const qs_int8_linear *L);
int qs_int8_linear_n_in(const qs_int8_linear *L);
/* The packed codes (N, K) and the row scales s_w (N), owned by L. */
const qs_i8mat *qs_int8_linear_weights(const qs_int8_linear *L);
const float *qs_int8_linear_scales(const qs_int8_linear *L);

/* Scratch for forwards: grown to the largest call, reusable across layers.
 * A context keeps one, so a model's int8 layers share one set of buffers. */
typedef struct qs_int8_scratch qs_int8_scratch;
qs_int8_scratch *qs_int8_scratch_new(void);
void qs_int8_scratch_free(qs_int8_scratch *s);

/* y (M, N) = the LLM.int8() product of x (M, K) with L, plus bias.
 * threshold <= 0 turns the decomposition off (no outlier columns). st may be
 * NULL. Uses scratch inside L (grown as needed, kept for the next call);
 * concurrent callers of one layer take turns (a mutex). The _with form uses
 * the caller's scratch instead (one caller per scratch; the layer itself is
 * only read, so contexts with their own scratch run one layer at once). QS_EARG for M < 1, QS_ENOMEM. */
qs_status qs_int8_linear_forward(qs_int8_linear *L, const float *x, int M, float threshold,
                                 qs_int8_act act, float *y, qs_int8_stats *st);

qs_status qs_int8_linear_forward_with(qs_int8_linear *L, const float *x, int M, float threshold, qs_int8_act act,
                                      float *y, qs_int8_stats *st, qs_int8_scratch *scratch);

/* The activation side of the forward, exposed for tests and views. */

/* mask (K): 1 where some |x[m,k]| >= threshold (or is NaN), else 0; returns
 * how many.
 * threshold <= 0: all 0. */
int qs_int8_outlier_columns(const float *x, int M, int K, float threshold, uint8_t *mask);

/* a (M, K) int8 codes and scale (M) of x (M, K): with act = TOKEN, scale[m] =
 * max |x[m,k]| over the columns not in mask (mask NULL: all columns); with
 * TENSOR, every scale[m] is the max over the whole batch. a = round(127 x /
 * scale) computed as x * (127 / scale) in float; 0 in mask columns and in
 * rows whose scale is 0. */
void qs_int8_quantize_act(const float *x, int M, int K, const uint8_t *mask, qs_int8_act act,
                          int8_t *a, float *scale);

#endif
