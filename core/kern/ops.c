#include "kern/kern.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define QS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QS_CLONES
#endif

/* Cody-Waite range reduction x = k ln2 + r, |r| <= ln2/2, then a degree-6
 * Taylor/minimax polynomial for e^r and 2^k assembled in the exponent bits.
 * Written branch-free so loops over it vectorise. */
static inline float expf_inline(float x) {
    /* clamped so that NaN goes to the bound: k below is converted to int, and
     * NaN to int is undefined; a NaN input still gives NaN (the last line) */
    float nan_in = x;
    x = x > -87.33654f ? x : -87.33654f;
    x = x < 88.7228f ? x : 88.7228f;
    /* round to nearest by the 1.5 * 2^23 trick: vectorises, unlike roundf */
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - k * 0.693145751953125f;
    r = r - k * 1.428606765330187e-06f;
    float p = 1.3888889e-3f;
    p = p * r + 8.3333333e-3f;
    p = p * r + 4.1666667e-2f;
    p = p * r + 1.6666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* 2^k as two factors so k = 128 and k = -126 stay in the normal range */
    int32_t ki = (int32_t)k, k1 = ki >> 1, k2 = ki - k1;
    uint32_t b1 = (uint32_t)(k1 + 127) << 23, b2 = (uint32_t)(k2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    return nan_in == nan_in ? p * s1 * s2 : nan_in;
}

/* Reductions written over 16 independent lanes: the compiler may not
 * reorder a float sum by itself, but lanes it can keep in one vector. */
#define LANES 16

static inline float lane_sum(const float *acc) {
    float s = 0;
    for (int j = 0; j < LANES; j++) s += acc[j];
    return s;
}

static inline float sum_f(const float *x, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += x[i + j];
    float s = lane_sum(acc);
    for (; i < n; i++) s += x[i];
    return s;
}

static inline float sumsq_f(const float *x, int n, float center) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float t = x[i + j] - center;
            acc[j] += t * t;
        }
    float s = lane_sum(acc);
    for (; i < n; i++) s += (x[i] - center) * (x[i] - center);
    return s;
}

static inline float max_f(const float *x, int n) {
    float acc[LANES];
    for (int j = 0; j < LANES; j++) acc[j] = -INFINITY;
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    float m = -INFINITY;
    for (int j = 0; j < LANES; j++) m = acc[j] > m ? acc[j] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* x[i] = e^(x[i] - m); returns the sum */
static inline float exp_sub_sum(float *x, int n, float m) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float e = expf_inline(x[i + j] - m);
            x[i + j] = e;
            acc[j] += e;
        }
    float s = lane_sum(acc);
    for (; i < n; i++) {
        x[i] = expf_inline(x[i] - m);
        s += x[i];
    }
    return s;
}

float qs_ops_expf(float x) {
    if (x < -87.33654f) return 0.0f;
    return expf_inline(x);
}

QS_CLONES
void qs_ops_layernorm(const float *x, int n, int d, const float *w, const float *b, float eps,
                      const int32_t *perm, float *y) {
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * d;
        float *yr = y + (size_t)r * d;
        float mean = sum_f(xr, d) / d;
        float var = sumsq_f(xr, d, mean);
        float inv = 1.0f / sqrtf(var / d + eps);
        if (perm) {
            for (int i = 0; i < d; i++) {
                float t = (xr[perm[i]] - mean) * inv;
                yr[i] = (w ? t * w[i] : t) + (b ? b[i] : 0.0f);
            }
            continue;
        }
        for (int i = 0; i < d; i++) {
            float t = (xr[i] - mean) * inv;
            if (w) t *= w[i];
            if (b) t += b[i];
            yr[i] = t;
        }
    }
}

QS_CLONES
void qs_ops_rmsnorm(const float *x, int n, int d, int div, const float *w, float eps,
                    const int32_t *perm, float *y) {
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * d;
        float *yr = y + (size_t)r * d;
        float ss = sumsq_f(xr, d, 0.0f);
        float inv = 1.0f / sqrtf(ss / div + eps);
        if (perm)
            for (int i = 0; i < d; i++) yr[i] = w ? w[i] * (xr[perm[i]] * inv) : xr[perm[i]] * inv;
        else if (w)
            for (int i = 0; i < d; i++) yr[i] = w[i] * (xr[i] * inv);
        else
            for (int i = 0; i < d; i++) yr[i] = xr[i] * inv;
    }
}

QS_CLONES
void qs_ops_relu(float *x, size_t len) {
    for (size_t i = 0; i < len; i++) x[i] = x[i] > 0 ? x[i] : 0;
}

QS_CLONES
void qs_ops_gelu_tanh(float *x, size_t len) {
    /* 0.5 x (1 + tanh(u)) = x * sigmoid(2u) = x / (1 + e^(-2u)) */
    for (size_t i = 0; i < len; i++) {
        float v = x[i];
        float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        x[i] = v / (1.0f + expf_inline(-2.0f * u));
    }
}

void qs_ops_gelu_erf(float *x, size_t len) {
    for (size_t i = 0; i < len; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

QS_CLONES
void qs_ops_silu(float *x, size_t len) {
    for (size_t i = 0; i < len; i++) x[i] = x[i] / (1.0f + expf_inline(-x[i]));
}

QS_CLONES
void qs_ops_swiglu(float *x, const float *g, size_t len) {
    for (size_t i = 0; i < len; i++) x[i] *= g[i] / (1.0f + expf_inline(-g[i]));
}

QS_CLONES
float qs_ops_dot(const float *a, const float *b, int len) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= len; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; i < len; i++) t += a[i] * b[i];
    return t;
}

QS_CLONES
void qs_ops_axpy(float *y, float a, const float *x, int len) {
    for (int i = 0; i < len; i++) y[i] += a * x[i];
}

QS_CLONES
void qs_ops_mul(float *x, const float *g, size_t len) {
    for (size_t i = 0; i < len; i++) x[i] *= g[i];
}

QS_CLONES
void qs_ops_softmax_row(float *x, int len) {
    float m = max_f(x, len);
    float inv = 1.0f / exp_sub_sum(x, len, m);
    for (int i = 0; i < len; i++) x[i] *= inv;
}

QS_CLONES
void qs_ops_add(float *y, const float *x, size_t len) {
    for (size_t i = 0; i < len; i++) y[i] += x[i];
}

void qs_ops_rope(float *x, int n_heads, int hd, int rd, const float *cos_t, const float *sin_t) {
    int half = rd / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            float a = v[i], b = v[i + half];
            v[i] = a * cos_t[i] - b * sin_t[i];
            v[i + half] = b * cos_t[i] + a * sin_t[i];
        }
    }
}

QS_CLONES
double qs_ops_logsumexp(const float *x, int len) {
    float m = max_f(x, len);
    /* float partial sums over short blocks keep the loop vectorised; the
     * blocks are added in double so a 50k-entry vocabulary loses nothing */
    double s = 0;
    for (int i0 = 0; i0 < len; i0 += 256) {
        int i1 = i0 + 256 < len ? i0 + 256 : len;
        float b = 0;
        for (int i = i0; i < i1; i++) b += expf_inline(x[i] - m);
        s += b;
    }
    return m + log(s);
}
