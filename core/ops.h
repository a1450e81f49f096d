/* ops.h — the element-wise and row-wise kernels of the forward pass:
 * norms, activations, softmax, RoPE. Each is a plain loop the compiler can
 * vectorise; the hot ones are compiled for AVX-512, AVX2 and baseline x86-64
 * and picked at load time (target_clones), so one binary runs everywhere.
 *
 *     qs_ops_layernorm(x, n, d, w, b, 1e-5f, y);   // y (n, d)
 *     qs_ops_softmax_row(s, len);                   // in place
 */
#ifndef QS_OPS_H
#define QS_OPS_H

#include <stddef.h>
#include <stdint.h>

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

/* In place: x[0..len) = softmax(x[0..len)); returns the normaliser. */
void qs_ops_softmax_row(float *x, int len);

/* y[i] += x[i] */
void qs_ops_add(float *y, const float *x, size_t len);

/* Rotate-half RoPE (Hugging Face order) on one vector of n_heads heads of
 * size hd, with cos/sin tables (hd/2) for its position. */
void qs_ops_rope(float *x, int n_heads, int hd, const float *cos_t, const float *sin_t);

/* log(sum(exp(x))) over len values, in double. */
double qs_ops_logsumexp(const float *x, int len);

#endif
