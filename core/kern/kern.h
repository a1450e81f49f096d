/* kern/kern.h — the public interface of core/kern/. Sections: quant, ops, blas, i8gemm, int8. */
#ifndef QS_KERN_H
#define QS_KERN_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stddef.h>

#include "base/base.h"

/* ---- quant.h — uniform quantization: the grids, round-to-nearest weights, and
 * fake-quant of activations (quantize then dequantize in fp32, so every bit
 * width runs through the same fp32 kernels and the error is exactly the
 * quantizer's).
 *
 *     // weights: 4 bits, asymmetric, groups of 128 input channels
 *     qs_quant_weight_rtn(w, n_out, n_in, 4, 128, 0, wq);
 *     // activations: 4 bits, one dynamic scale/zero per token
 *     qs_actq q = {.bits = 4, .mode = QS_AQ_TOKEN};
 *     qs_quant_act(&q, x, n, dim);
 *
 * Grids (b bits, levels L = 2^b):
 *   asymmetric: q in [0, L-1], scale = (max-min)/(L-1), zero = round(-min/scale)
 *   symmetric:  q in [-(L/2-1), L/2-1], scale = absmax/(L/2-1), zero = 0
 *   RPTQ reference code: q in [-L/2, L/2-1], scale = (max-min)/L clamped to
 *     [1e-4, 1e4], zero = round(clamp(-(max+min)/(2 scale), -1e4, 1e4))
 * Rounding is to nearest, ties to even (as torch.round).
 */
typedef enum {
    QS_AQ_NONE = 0,
    QS_AQ_STATIC = 1, /* calibrated scale/zero per channel (per tensor and per cluster are special cases) */
    QS_AQ_TOKEN = 2,  /* dynamic: one scale/zero per row (token), or per row and channel group */
    QS_AQ_TENSOR = 3, /* dynamic: one scale/zero for the whole batch */
} qs_aq_mode;

/* QS_GRID_GGML: llama.cpp's block grids for groups of 32 (the values its
 * Q4_0, Q8_0 and Q4_1 blocks decode to): sym 4 bits: scale d = fp16(m / -8)
 * with m the value of largest magnitude, levels -8..7; sym 8 bits: d =
 * fp16(absmax / 127), levels -127..127; asym: d = fp16((hi - lo) / 15) and
 * zero = fp16(lo) an offset (value = q d + lo), levels 0..15. */
/* QS_GRID_Q4_K / QS_GRID_Q6_K: llama.cpp's k-quant super-blocks of 256
 * (qs_kq_block_scales below), weights only. */
typedef enum { QS_GRID_STD = 0, QS_GRID_RPTQ = 1, QS_GRID_GGML = 2, QS_GRID_Q4_K = 3, QS_GRID_Q6_K = 4 } qs_grid;

/* An activation quantizer at one site. */
typedef struct {
    int bits;           /* 0 or >= 16: off */
    int mode;           /* qs_aq_mode */
    int sym;            /* symmetric grid (QS_GRID_STD only) */
    int grid;           /* qs_grid */
    const float *scale; /* (dim) for QS_AQ_STATIC */
    const float *zero;  /* (dim) for QS_AQ_STATIC */
    /* QS_AQ_TOKEN with groups: one dynamic scale/zero per token and group of
     * channels (group[c] in [0, n_groups)); NULL: the whole row. */
    const int32_t *group;
    int n_groups;
    int fp16;           /* QS_AQ_STATIC: in float16 as the RPTQ reference code's activations are
                           (the input, x/scale and the result rounded to float16) */
} qs_actq;

/* x rounded to the nearest float16 value (ties to even), as a float: the
 * rounding float16 arithmetic applies after every operation. */
static inline float qs_quant_f16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t a = u & 0x7fffffffu;
    if (a < 0x38800000u) return rintf(x * 0x1p24f) * 0x1p-24f; /* subnormal in float16: multiples of 2^-24 */
    if (a < 0x477ff000u) {                                      /* normal: 10 mantissa bits kept */
        a = (a + 0x0fffu + ((a >> 13) & 1u)) & ~0x1fffu;
        u = (u & 0x80000000u) | a;
        memcpy(&x, &u, 4);
        return x;
    }
    return a > 0x7f800000u ? x : copysignf(INFINITY, x); /* NaN stays, the rest overflows */
}

static inline int qs_actq_on(const qs_actq *q) { return q && q->bits > 0 && q->bits < 16 && q->mode; }

/* scale and zero point of range [lo, hi] on the grid. The standard grid
 * widens the range to include 0 (so 0 is exact, as ReLU outputs need). */
void qs_quant_params(float lo, float hi, int bits, int sym, qs_grid grid, float *scale, float *zero);

/* Quantize-dequantize one value. */
float qs_quant_fq(float x, float scale, float zero, int bits, int sym, qs_grid grid);

/* The same with float16 arithmetic, as the RPTQ reference code runs it:
 * x rounded to float16, then x/scale, then the result. */
float qs_quant_fq16(float x, float scale, float zero, int bits, int sym, qs_grid grid);

/* Fake-quantize x (n, dim) in place. */
void qs_quant_act(const qs_actq *q, float *x, int n, int dim);

/* Round-to-nearest weights into out (n_out, n_in) (may equal w): one scale
 * (and zero) per output row (group 0) or per `group` consecutive input
 * channels. */
qs_status qs_quant_weight_rtn(const float *w, int n_out, int n_in, int bits, int group, int sym,
                              float *out);

/* Round-to-nearest per output row x input-channel group, the groups given
 * by a label per input channel (RPTQ reference: the activation clusters). */
qs_status qs_quant_weight_groups(const float *w, int n_out, int n_in, int bits, int sym, qs_grid grid,
                                 const int *group_of_col, int n_groups, float *out);

/* Bytes to store n_out x n_in weights at `bits` with scales (fp16 scale +
 * zero per group: 2 or 4 bytes) — the honest "as stored" size. */
long long qs_quant_weight_bytes(int n_out, int n_in, int bits, int group, int asym);

/* ---- ops.h — the element-wise and row-wise kernels of the forward pass:
 * norms, activations, softmax, RoPE. Each is a plain loop the compiler can
 * vectorise; the hot ones are compiled for AVX-512, AVX2 and baseline x86-64
 * and picked at load time (target_clones), so one binary runs everywhere.
 *
 *     qs_ops_layernorm(x, n, d, w, b, 1e-5f, y);   // y (n, d)
 *     qs_ops_softmax_row(s, len);                   // in place
 */
/* e^x with relative error below 3e-7 over [-87.3, 88.7]; 0 below. */
float qs_ops_expf(float x);

/* y (n, d) = LayerNorm(x) * w + b (w, b may be NULL: 1 and 0). With perm,
 * output channel j takes normalised input channel perm[j] (w, b are given
 * in output order): a reorder fused into the norm, no extra pass. */
void qs_ops_layernorm(const float *x, int n, int d, const float *w, const float *b, float eps,
                      const int32_t *perm, float *y);
/* y (n, d) = x / sqrt(sum(x^2) / div + eps) * w (w may be NULL). div is
 * normally d; SliceGPT keeps dividing by the original width. perm as above. */
void qs_ops_rmsnorm(const float *x, int n, int d, int div, const float *w, float eps,
                    const int32_t *perm, float *y);

/* In place over len values. */
void qs_ops_relu(float *x, size_t len);
void qs_ops_gelu_tanh(float *x, size_t len);
void qs_ops_gelu_erf(float *x, size_t len);
void qs_ops_silu(float *x, size_t len);
/* x[i] = silu(g[i]) * x[i]  (SwiGLU: x holds up, g holds gate) */
void qs_ops_swiglu(float *x, const float *g, size_t len);
/* x[i] *= g[i] */
void qs_ops_mul(float *x, const float *g, size_t len);
/* sum a[i] b[i] over len (eight partial sums) */
float qs_ops_dot(const float *a, const float *b, int len);
/* y[i] += a x[i] */
void qs_ops_axpy(float *y, float a, const float *x, int len);

/* In place: x[0..len) = softmax(x[0..len)); returns the normaliser. */
void qs_ops_softmax_row(float *x, int len);

/* y[i] += x[i] */
void qs_ops_add(float *y, const float *x, size_t len);

/* Rotate-half RoPE (Hugging Face order) on one vector of n_heads heads of
 * size hd: the first rd channels of each head rotate (partial rotary: rd <
 * hd), with cos/sin tables (rd/2) for its position. */
void qs_ops_rope(float *x, int n_heads, int hd, int rd, const float *cos_t, const float *sin_t);

/* log(sum(exp(x))) over len values, in double. */
double qs_ops_logsumexp(const float *x, int len);

/* ---- blas.h — every BLAS and LAPACK call qscope makes goes through here, so the
 * choice of routine (GEMM for batches, GEMV for one row) lives in one place.
 *
 *     qs_blas_linear(x, n, w, b, n_out, n_in, y);   // y (n, n_out) = x (n, n_in) w^T + b, w (n_out, n_in)
 */
/* y (n, n_out) = x (n, n_in) . w^T + b (b may be NULL). One row goes through
 * sgemv: sgemm with M = 1 repacks the whole matrix on every call. */

void qs_blas_linear(const float *x, int n, const float *w, const float *b, int n_out, int n_in, float *y);

/* C (m, n) = alpha * A (m, k) . B^T + beta * C, with B stored (n, k); row
 * strides lda, ldb, ldc. */
void qs_blas_gemm_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc);
/* C (m, n) = alpha * A (m, k) . B + beta * C, with B stored (k, n). */
void qs_blas_gemm_nn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc);
/* C (m, n) = alpha * A^T . B + beta * C, with A stored (k, m), B (k, n). */
void qs_blas_gemm_tn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc);
/* y (m) = alpha * A (m, n) . x + beta * y  (trans = 0), or
 * y (n) = alpha * A^T x + beta * y (trans = 1); A row-major with stride lda. */
void qs_blas_gemv(int trans, int m, int n, float alpha, const float *a, int lda, const float *x,
                  float beta, float *y);

/* C (m, n) = alpha * op(A) . op(B) + beta * C in float64, row-major; op(X)
 * is X^T when its flag (ta, tb) is set; op(A) is (m, k), op(B) (k, n). */
void qs_blas_dgemm(int ta, int tb, int m, int n, int k, double alpha, const double *a, int lda,
                   const double *b, int ldb, double beta, double *c, int ldc);

/* C (dim, dim) += X^T X for X (n, dim) row-major, float64; upper triangle
 * only (mirror it with qs_blas_symmetrize). */
void qs_blas_dsyrk_acc(int n, int dim, const double *x, double *c);
void qs_blas_symmetrize(int dim, double *c);

/* Eigen-decomposition of a symmetric matrix a (dim, dim), float64, in place:
 * on return a's columns are the eigenvectors and w (dim) the eigenvalues,
 * both in descending order of eigenvalue (LAPACKE dsyevd). */
qs_status qs_lapack_eigh_desc(int dim, double *a, double *w);
/* a (dim, dim) row-major holds r orthonormal columns first (the rest is
 * ignored); on return all dim columns are an orthonormal basis whose first r
 * are those columns (re-orthonormalised by QR) and the others complete them. */
qs_status qs_lapack_orth_complete(int dim, int r, double *a);

/* GPTQ's inverse Hessian factor: a (dim, dim), symmetric positive definite,
 * float64, row-major, is replaced by the upper triangular U with
 * a^-1 = U^T U (dpotrf, dpotri, dpotrf, all on the upper triangle; the lower
 * triangle is zeroed). QS_EARG when a is not positive definite. */
qs_status qs_lapack_inv_chol_upper(int dim, double *a);

/* Threads OpenBLAS uses (and a setter; n <= 0 leaves it alone). */
int qs_blas_threads(void);
void qs_blas_set_threads(int n);
/* qs_pool_run with OpenBLAS held to one thread meanwhile, for tasks that call sgemm each on
 * their own part (OpenBLAS's threads would spin beside the pool's); its count restored after */
void qs_pool_run_blas1(int n_tasks, qs_pool_fn fn, void *ud);
/* "OpenBLAS 0.3.21 (Haswell, 2 threads)" */
const char *qs_blas_describe(void);
/* NULL, or a sentence saying that OPENBLAS_CORETYPE holds OpenBLAS to narrower kernels than
 * this CPU runs (an AVX-512 CPU given a core without AVX-512) */
const char *qs_blas_core_note(void);

/* ---- i8gemm.h — exact int8 matrix multiply: C (M, N) int32 = A (M, K) int8 . B^T,
 * with B (N, K) int8 the weights of a linear layer, packed once.
 *
 * The kernel is chosen at run time from the CPU: AVX-512 VNNI (vpdpbusd,
 * unsigned x signed bytes: A is shifted by +128 and 128 x the column sums of
 * B, kept with the packed matrix, are taken off again), AVX2 (bytes widened to
 * int16 and multiplied with vpmaddwd, which cannot saturate), or plain C.
 * All of them read the same packed layout and give the same, exact result.
 *
 *     qs_i8mat *w;
 *     if (qs_i8mat_pack(wq, N, K, &w) != QS_OK) return ...;  // wq (N, K) int8
 *     qs_i8_gemm(a, M, K, w, c, N);                          // a (M, K), c (M, N)
 *     qs_i8mat_free(w);
 *
 * qs_i8_gemm runs on the thread pool (pool.h); like the pool it serves one
 * caller at a time. Exactness: every kernel accumulates in int32; with
 * K <= QS_I8_KMAX = 65536 no sum can leave int32 (|C| <= 128 x 128 x K =
 * 2^30, and the VNNI kernel's shifted sum stays below 255 x 128 x K < 2^31),
 * so every result is exact for any input.
 */
/* Packed weights (opaque). Layout: panels of 16 output rows of B; inside a
 * panel, K in groups of 4 bytes, each group 16 rows x 4 bytes (64 bytes, the
 * operand of one vpdpbusd); N and K are zero-padded to whole panels/groups. */
typedef struct qs_i8mat qs_i8mat;

enum { QS_I8_KMAX = 65536 };

/* Pack b (N, K) int8, row stride K. *out is the caller's, freed with
 * qs_i8mat_free. QS_EARG for N, K < 1 or K > QS_I8_KMAX; QS_ENOMEM. */
qs_status qs_i8mat_pack(const int8_t *b, int N, int K, qs_i8mat **out);
void qs_i8mat_free(qs_i8mat *m);
/* Bytes the packed matrix holds (padded codes + column sums). */
size_t qs_i8mat_bytes(const qs_i8mat *m);
int qs_i8mat_n(const qs_i8mat *m);
int qs_i8mat_k(const qs_i8mat *m);
/* Row n of B back: dst (K). */
void qs_i8mat_row(const qs_i8mat *m, int n, int8_t *dst);
/* Column k of B back: dst (N) = B[:, k] (the outlier path reads these). */
void qs_i8mat_col(const qs_i8mat *m, int k, int8_t *dst);

/* c (M, N) row stride ldc = a (M, K) row stride lda . b^T, with the active
 * kernel, threaded over the pool. M >= 1; overwrites c. */
void qs_i8_gemm(const int8_t *a, int M, int lda, const qs_i8mat *b, int32_t *c, int ldc);

/* The reference: the same product in plain C from an unpacked b (N, K) row
 * stride ldb. Single-threaded; every kernel is tested against it. */
void qs_i8_gemm_ref(const int8_t *a, int M, int lda, const int8_t *b, int N, int K, int ldb,
                    int32_t *c, int ldc);

/* The active kernel: "avx512vnni", "avx2" or "ref". */
const char *qs_i8_kernel_name(void);
/* Select a kernel by name ("auto" or NULL: the best this CPU has). QS_EARG for
 * an unknown name, QS_EUNSUPPORTED when the CPU lacks it (the active kernel is
 * then unchanged). Not to be called while a qs_i8_gemm runs. */
qs_status qs_i8_set_kernel(const char *name);
/* Whether this CPU (and build) can run the named kernel. */
int qs_i8_kernel_available(const char *name);

/* ---- int8.h — the LLM.int8() linear layer (Dettmers et al. 2022, section 3).
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

/* ---- wmat.h — linear layers on weights as stored (kern/wmat.c): F16, BF16
 * and ggml's block formats, read by the kernels, never expanded to a whole
 * fp32 matrix. A type is a ggml type code. Row r of a weight matrix starts
 * qs_wtype_row_bytes(type, n_in) * r bytes in.
 *
 *     qs_wlinear(x, n, QS_WT_Q8_0, w, b, n_out, n_in, y);   // y (n, n_out) = x W^T + b
 */
enum {
    QS_WT_F32 = 0, QS_WT_F16 = 1, QS_WT_Q4_0 = 2, QS_WT_Q4_1 = 3, QS_WT_Q5_0 = 6, QS_WT_Q5_1 = 7,
    QS_WT_Q8_0 = 8, QS_WT_Q2_K = 10, QS_WT_Q3_K = 11, QS_WT_Q4_K = 12, QS_WT_Q5_K = 13, QS_WT_Q6_K = 14,
    QS_WT_IQ4_NL = 20, QS_WT_BF16 = 30,
};
/* qscope's own packed round-to-nearest rows (what rtn stores): per group of
 * 2^lg values (lg 0: the whole row), a float scale and a float offset z,
 * then the codes u (2 per byte for bits <= 4, low nibble first; else 1 per
 * byte); value = (u - z) * scale, equal to the fake-quantized value. */
enum { QS_WT_QG = 0x10000 };
static inline uint32_t qs_wt_qg(int bits, int lg) { return QS_WT_QG | (uint32_t)bits << 8 | (uint32_t)lg; }
/* Pack n_out rows of w as qs_wt_qg(bits, lg) (the values qs_quant_weight_rtn
 * gives); out holds qs_wtype_row_bytes(type, n_in) * n_out bytes. */
void qs_quant_pack_rtn(const float *w, int n_out, int n_in, int bits, int lg, int sym, void *out);
/* The ggml block type that holds grid QS_GRID_GGML at (bits, sym): Q4_0,
 * Q8_0 or Q4_1; 0 for another. */
uint32_t qs_ggml_type_of(int bits, int sym);
/* n_out rows of w as llama.cpp's reference quantizers write them
 * (quantize_row_q4_0_ref and its twins: the same blocks, bit for bit);
 * type QS_WT_Q4_0, QS_WT_Q8_0 or QS_WT_Q4_1, n_in a multiple of 32; out
 * holds qs_wtype_row_bytes(type, n_in) * n_out bytes. */
void qs_quant_pack_ggml(const float *w, int n_out, int n_in, uint32_t type, void *out);

/* llama.cpp's k-quant super-blocks of 256 values (QS_WT_Q4_K: 144 bytes, 8
 * sub-blocks of 32 with 6-bit scales and mins, value d*sc*q - dmin*m;
 * QS_WT_Q6_K: 210 bytes, 16 sub-blocks of 16 with int8 scales, value
 * d*sc*(q-32)), the blocks kern/ggml_quant.c decodes.
 * qs_kq_block_scales: the block's scales from x (256 values), chosen as
 * llama.cpp's reference quantizers (quantize_row_q4_K_ref / _q6_K_ref)
 * choose them, and their fits' codes.
 * qs_kq_block_put: value j (0..255) rounded onto that grid; stores its code
 * (where the sub-block's step is 0 the code stays: all decode alike) and
 * returns the value it decodes to, bit for bit. Scales, then every value
 * put: llama.cpp's blocks, byte for byte.
 * qs_quant_pack_kq: n_out rows (n_in a multiple of 256) so encoded; out
 * holds qs_wtype_row_bytes(type, n_in) * n_out bytes; vals (or NULL) gets
 * the decoded values. */
void qs_kq_block_scales(uint32_t type, const float *x, uint8_t *blk);
float qs_kq_block_put(uint32_t type, uint8_t *blk, int j, float x);
void qs_quant_pack_kq(const float *w, int n_out, int n_in, uint32_t type, void *out, float *vals);

/* Values and bytes per block of a type (F16/BF16: 1 and 2); 0 if unknown. */
int qs_wtype_block(uint32_t type, size_t *elems, size_t *bytes);
/* Bytes of one row of n_in values; 0 when n_in is not a whole number of blocks. */
size_t qs_wtype_row_bytes(uint32_t type, int n_in);
/* rows [row0, row0 + rows) decoded to fp32 (rows x n_in) */
void qs_wrows_f32(uint32_t type, const void *w, int n_in, int row0, int rows, float *dst);
/* One row dotted with x: the fast kernel when there is one, and the plain C
 * reference (decode, then dot) that it must equal. */
float qs_wdot(uint32_t type, const void *row, const float *x, int n_in);
float qs_wdot_ref(uint32_t type, const void *row, const float *x, int n_in);
/* Rows of a ggml block format (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K..Q6_K)
 * dotted with x rounded to 8-bit blocks of 32, of 256 for the k-quants
 * (scale max|x| / 127, codes round(x / scale), ties to even), as llama.cpp
 * multiplies them: each block an exact integer sum, scaled in float. The
 * fast kernel (ref 0) or the plain C one (ref 1); NaN for another type. */
float qs_wdot_q8(uint32_t type, const void *row, const float *x, int n_in, int ref);
/* y (n, n_out) = x (n, n_in) W^T + b. Few rows: the pool's threads take
 * chunks of weight rows, each read once (ggml's block formats: by
 * 8-bit activations, unless qs_wmat_set_act("f32")); many rows: each thread
 * decodes tiles of rows into its own fp32 panel for a single-threaded sgemm.
 * Fails only for a type or width it cannot read, or out of memory. */
qs_status qs_wlinear(const float *x, int n, uint32_t type, const void *w, const float *b, int n_out, int n_in,
                     float *y);
/* Up to QS_WMAT_MULTI matrices on the same x (n, n_in) at once, m[i].y
 * (n, m[i].n_out) = x W_i^T + b_i: few rows in one pool run with x rounded
 * once (a layer's q, k and v, or gate and up), many rows one after another. */
enum { QS_WMAT_MULTI = 4 };
typedef struct {
    uint32_t type;
    const void *w;
    const float *b;
    int n_out;
    float *y;
} qs_wmat;
qs_status qs_wlinear_multi(const float *x, int n, int k, const qs_wmat *m, int n_in);
/* The fused kernels in use: "avx512", "avx2" or "ref"; set one of them or
 * "auto" (returns 0 when that one cannot run here). */
const char *qs_wmat_kernel(void);
int qs_wmat_set_kernel(const char *name);
/* 1 when this CPU runs the "avx2" kernels (AVX2, FMA and F16C) */
int qs_wmat_fast_available(void);
/* 1 when it runs the 8-bit kernels at 512 bits as well (AVX-512F, BW and VNNI) */
int qs_wmat_vnni_available(void);
/* Bytes a second the pool's threads read from p (n bytes, 32-byte aligned
 * chunks summed, as a decode kernel streams weights): the best of reps
 * passes. What decode can reach on this machine, measured beside it. */
double qs_read_rate(const void *p, size_t n, int reps);
/* Activations for few-row products of 4- and 8-bit ggml blocks: "q8"
 * (the default, llama.cpp's arithmetic) or "f32" (exact products of the
 * stored weights); QSCOPE_DECODE_ACT sets the default. 0 for another name. */
const char *qs_wmat_act(void);
int qs_wmat_set_act(const char *name);
/* Activations for many-row products (prefill) of Q8_0, Q4_0, Q5_0,
 * IQ4_NL, Q4_K, Q5_K and Q6_K: "f32" (the default: decoded fp32 panels through sgemm, exact
 * products of the stored weights) or "q8" (x rounded as decode's 8-bit
 * kernels round it, multiplied by qs_wq8_gemm, as llama.cpp does);
 * QSCOPE_PREFILL_ACT sets the default. 0 for another name. */
const char *qs_wmat_prefill_act(void);
int qs_wmat_set_prefill_act(const char *name);
/* Whether many-row products on F32/F16/BF16 rows and decoded tiles go
 * through the fused AVX-512 kernel (kern/wfgemm.c) when the "avx512"
 * kernels are in use (1, the default; QSCOPE_FUSED_PREFILL=0 sets 0) or
 * through fp32 panels and sgemm (0). Returns the setting it replaced. */
int qs_wmat_set_fused_prefill(int on);

/* ---- prefill on 8-bit activations (kern/wq8gemm.c) ----
 * qs_wq8_round: nb blocks of 32 values of x rounded as qs_wdot_q8 rounds
 * them: codes q, scales d (max|x| / 127), d * sum(q) s.
 * qs_wq8_round_k: n values (a multiple of 256) rounded as qs_wdot_q8
 * rounds them for the k-quants: codes k, a scale dk a block of 256, the
 * sums of k's groups of 16 (k16).
 * qs_wq8_codes: rows [row0, row0 + rows) of a (code, scale) block format
 * (Q8_0, Q4_0, Q5_0, IQ4_NL; n_in a multiple of 32) or of Q4_K, Q5_K and
 * Q6_K (n_in a multiple of 256; their sub-blocks of 32 as blocks, with an
 * offset each for Q4_K and Q5_K, a scale for each half for Q6_K) as int8
 * codes (ldc a row), block scales and, for Q4_K and Q5_K, block offsets m
 * (ldd a row; NULL for the other types): value = d[b] * code - m[b], for
 * Q6_K d[2 b + h] * code in half h; 0 for another type or a missing m.
 * qs_wq8_gemm: y (n, n_out) = x W^T + b with x so rounded, each block's
 * products an exact integer sum (qs_wdot_q8's arithmetic, summed in
 * another order); kernel "ref", "avx2", "avx512vnni" or NULL (the fastest
 * here; "ref" when qs_wmat_kernel() is). qs_wq8_kernel: the one NULL picks. */
void qs_wq8_round(const float *x, int nb, int8_t *q, float *d, float *s);
void qs_wq8_round_k(const float *x, int n, int8_t *k, float *dk, int16_t *k16);
int qs_wq8_codes(uint32_t type, const void *w, int n_in, int row0, int rows, int8_t *codes, size_t ldc, float *d,
                 float *m, size_t ldd);
int qs_wq8_supported(uint32_t type, int n_in);
qs_status qs_wq8_gemm(const float *x, int n, uint32_t type, const void *w, const float *b, int n_out, int n_in, float *y,
                      const char *kernel);
const char *qs_wq8_kernel(void);

/* ---- prefill on F16/BF16 weights by AVX-512 (kern/wfgemm.c) ----
 * y (n, n_out) = x W^T + b, each weight row widened to fp32 as it is read
 * (the products of sgemm on the decoded weights, summed in another order);
 * kernel "avx512", "ref" (plain C) or NULL (avx512 where it runs). For
 * F16 and BF16 with n_in a multiple of 16 (qs_wf_supported). */
int qs_wf_available(void);
int qs_wf_supported(uint32_t type, int n_in);
qs_status qs_wf_gemm(const float *x, int n, uint32_t type, const void *w, const float *b, int n_out, int n_in, float *y,
                     const char *kernel);
/* One thread's share: y (n rows, ldy floats apart) columns [0, nr) = x W^T
 * for an fp32 panel W (nr x n_in, n_in a multiple of 16), by the same
 * kernel (plain C where AVX-512 does not run); qs_wf_tile_rows: the rows a
 * tile of it is best given. */
void qs_wf_tile(const float *x, int n, const float *w, int nr, int n_in, float *y, size_t ldy);
int qs_wf_tile_rows(void);

/* ---- ggml block formats ---- */
/* ggml's block formats that qscope dequantizes at load (kern/ggml_quant.c):
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL.
 * qs_ggml_block: 1 and the values / bytes per block for those, else 0.
 * qs_ggml_dequant: n values (a multiple of the block) from src into dst,
 * equal to ggml's own decoding bit for bit; 0 for another type. */
int qs_ggml_block(uint32_t ggml_type, size_t *elems, size_t *bytes);
/* Q4_K's (and Q5_K's) 6-bit scale and min of sub-block j (0..7) from the
 * block's 12 packed bytes q, as ggml unpacks them */
static inline void qs_k4_scale_min(int j, const uint8_t *q, int *s, int *m) {
    if (j < 4) *s = q[j] & 63, *m = q[j + 4] & 63;
    else *s = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
}
/* Q3_K's 16 signed 6-bit scales from its 12 packed bytes p: the low 4 bits
 * in bytes 0-7 (two a byte), the high 2 in bytes 8-11, less 32 */
static inline void qs_k3_scales(const uint8_t *p, int8_t out[16]) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? p[j] & 0x0F : p[j - 8] >> 4;
        int hi = (p[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | hi << 4) - 32);
    }
}
/* IQ4_NL's 16 levels (its 4-bit codes index them) */
extern const int8_t qs_iq4_nl_grid[16];
int qs_ggml_dequant(uint32_t ggml_type, const void *src, float *dst, size_t n);

#endif
