/* wmat.c — linear layers on weights kept as the file stores them: F16, BF16
 * and ggml's block formats (Q8_0, Q4_0, the k-quants, ...), never expanded
 * to a whole fp32 matrix.
 *
 * Few rows of x (decode): the pool's threads take chunks of weight rows;
 * each row is read once from memory and dotted with every x row while it is
 * in cache. F16, BF16, and (by activations rounded to 8-bit blocks) every
 * ggml block format have fused AVX2 kernels that decode as they multiply,
 * each with a plain C kernel of the same arithmetic, which the fast ones
 * are tested against; the reference of them all decodes the row, then dots.
 * Many rows (prefill): each thread decodes tiles of weight rows into its own
 * fp32 panel and multiplies x by it with a single-threaded sgemm. */
#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "kern/kern.h"

enum { GEMM_MIN_ROWS = 8, PANEL_BYTES = 8 << 20, TILE_ROWS = 256, CHUNK_BYTES = 512 << 10 };

int qs_wtype_block(uint32_t type, size_t *elems, size_t *bytes) {
    switch (type) {
    case QS_WT_F32: *elems = 1, *bytes = 4; return 1;
    case QS_WT_F16:
    case QS_WT_BF16: *elems = 1, *bytes = 2; return 1;
    }
    return qs_ggml_block(type, elems, bytes);
}

static int qg_group(uint32_t type, int n_in) {
    int lg = (int)(type & 0xFF);
    return lg ? 1 << lg : n_in;
}
static int qg_bits(uint32_t type) { return (int)(type >> 8 & 0xFF); }
static size_t qg_code_bytes(int bits, int gs) { return bits <= 4 ? (size_t)(gs + 1) / 2 : (size_t)gs; }

size_t qs_wtype_row_bytes(uint32_t type, int n_in) {
    if ((type & 0xFFFF0000u) == QS_WT_QG) {
        int gs = qg_group(type, n_in), bits = qg_bits(type);
        if (n_in <= 0 || gs <= 0 || n_in % gs || bits < 2 || bits > 8) return 0;
        return (size_t)(n_in / gs) * (8 + qg_code_bytes(bits, gs));
    }
    size_t e, b;
    if (!qs_wtype_block(type, &e, &b) || n_in <= 0 || (size_t)n_in % e) return 0;
    return (size_t)n_in / e * b;
}

static void qg_decode(uint32_t type, const uint8_t *src, int n_in, int rows, float *dst) {
    int gs = qg_group(type, n_in), bits = qg_bits(type);
    size_t cb = qg_code_bytes(bits, gs);
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < n_in / gs; g++, src += 8 + cb, dst += gs) {
            float s, z;
            memcpy(&s, src, 4);
            memcpy(&z, src + 4, 4);
            const uint8_t *u = src + 8;
            if (bits <= 4)
                for (int i = 0; i < gs; i++) dst[i] = ((float)(i & 1 ? u[i / 2] >> 4 : u[i / 2] & 0x0F) - z) * s;
            else
                for (int i = 0; i < gs; i++) dst[i] = ((float)u[i] - z) * s;
        }
}

void qs_wrows_f32(uint32_t type, const void *w, int n_in, int row0, int rows, float *dst) {
    size_t rb = qs_wtype_row_bytes(type, n_in);
    const uint8_t *src = (const uint8_t *)w + (size_t)row0 * rb;
    size_t n = (size_t)rows * n_in;
    if ((type & 0xFFFF0000u) == QS_WT_QG) qg_decode(type, src, n_in, rows, dst);
    else if (type == QS_WT_F32) memcpy(dst, src, n * sizeof(float));
    else if (type == QS_WT_F16) qs_f16_to_f32_n(dst, src, n);
    else if (type == QS_WT_BF16) qs_bf16_to_f32_n(dst, src, n);
    else qs_ggml_dequant(type, src, dst, n);
}

/* ---- one weight row dotted with x: plain C ---- */

static float dot_f32(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* the reference: decode the row into tmp (n_in floats), then dot */
static float dot_ref(uint32_t type, const uint8_t *row, const float *x, int n_in, float *tmp) {
    qs_wrows_f32(type, row, n_in, 0, 1, tmp);
    return dot_f32(tmp, x, n_in);
}

/* ---- fused AVX2 kernels ---- */

/* Software prefetch some way ahead of a row's stream (the hardware's
 * prefetchers stop at each 4 KiB page of a mapped file): n lines of 64
 * bytes, dist bytes ahead. Measured on the TinyLlama shape, one thread:
 * Q4_0 and Q8_0 decode 1.2-1.3x faster than without; F16 1.2x (7.5 -> 9.0
 * tok/s) and BF16 1.1x (8.5 -> 9.5) with one line 1 KiB ahead, slower
 * again from 1.5 KiB. */
enum { PF_Q4 = 2048, PF_Q8 = 2048, PF_F16 = 1024 };
#define PREFETCH_AT(p, dist, n)                                                                                  \
    do {                                                                                                         \
        for (int pf_ = 0; pf_ < (n); pf_++) _mm_prefetch((const char *)(p) + (dist) + 64 * pf_, _MM_HINT_T0); \
    } while (0)

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

/* qs_f16_at by F16C, for the AVX2 kernels (the same value) */
AVX2_TARGET static inline float f16at_hw(const uint8_t *p) { return _cvtsh_ss((unsigned short)(p[0] | p[1] << 8)); }

AVX2_TARGET static float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2_TARGET static inline __m256 bf16x8(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* eight weights from element i of a row of F32, F16 (by F16C) or BF16, as fp32; and one */
AVX2_TARGET static inline __m256 fp8(uint32_t type, const uint8_t *row, int i) {
    if (type == QS_WT_F32) return _mm256_loadu_ps((const float *)(const void *)row + i);
    const uint16_t *w = (const uint16_t *)(const void *)row + i;
    return type == QS_WT_F16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w)) : bf16x8(w);
}
/* one element (memcpy: a tensor's data need not be aligned to its elements, a safetensors file may put an F16
 * tensor at an odd offset) */
static inline float fp1(uint32_t type, const uint8_t *row, int i) {
    if (type == QS_WT_F32) {
        float v;
        memcpy(&v, row + 4 * (size_t)i, sizeof v);
        return v;
    }
    uint16_t h;
    memcpy(&h, row + 2 * (size_t)i, sizeof h);
    return type == QS_WT_F16 ? qs_f16_to_f32(h) : qs_bf16_to_f32(h);
}

/* a row of floats dotted with x: four fma chains; the 16-bit rows' stream prefetched ahead */
AVX2_TARGET static inline float dot_fp_avx2(uint32_t type, const uint8_t *row, const float *x, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        if (type != QS_WT_F32) PREFETCH_AT(row + 2 * (size_t)i, PF_F16, 1);
        a0 = _mm256_fmadd_ps(fp8(type, row, i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(fp8(type, row, i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(fp8(type, row, i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(fp8(type, row, i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(fp8(type, row, i), _mm256_loadu_ps(x + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += fp1(type, row, i) * x[i];
    return s;
}
AVX2_TARGET static float dot_f32_avx2(const uint8_t *row, const float *x, int n) { return dot_fp_avx2(QS_WT_F32, row, x, n); }
AVX2_TARGET static float dot_f16_avx2(const uint8_t *row, const float *x, int n) { return dot_fp_avx2(QS_WT_F16, row, x, n); }
AVX2_TARGET static float dot_bf16_avx2(const uint8_t *row, const float *x, int n) { return dot_fp_avx2(QS_WT_BF16, row, x, n); }

/* the same at AVX-512's width (16 lanes, four chains of them), without the prefetch: on a Zen 5, F16 decode of
 * TinyLlama ran at 9.6-11.9 tok/s without it and 8.1-8.2 with it on one thread, 16.7-17.2 and 15.3-16.1 on two */
#define AVX512_TARGET __attribute__((target("avx2,fma,f16c,avx512f")))
AVX512_TARGET static inline __m512 fp16x(uint32_t type, const uint8_t *row, int i) {
    if (type == QS_WT_F32) return _mm512_loadu_ps((const float *)(const void *)row + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(row + 2 * (size_t)i));
    return type == QS_WT_F16 ? _mm512_cvtph_ps(h) : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
AVX512_TARGET static inline float dot_fp_avx512(uint32_t type, const uint8_t *row, const float *x, int n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(fp16x(type, row, i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(fp16x(type, row, i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(fp16x(type, row, i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(fp16x(type, row, i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(fp16x(type, row, i), _mm512_loadu_ps(x + i), a0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < n; i++) s += fp1(type, row, i) * x[i];
    return s;
}
AVX512_TARGET static float dot_f32_avx512(const uint8_t *row, const float *x, int n) { return dot_fp_avx512(QS_WT_F32, row, x, n); }
AVX512_TARGET static float dot_f16_avx512(const uint8_t *row, const float *x, int n) { return dot_fp_avx512(QS_WT_F16, row, x, n); }
AVX512_TARGET static float dot_bf16_avx512(const uint8_t *row, const float *x, int n) { return dot_fp_avx512(QS_WT_BF16, row, x, n); }

AVX2_TARGET static __m256 i8x8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}

/* Q8_0 blocks: f16 d, 32 int8; row value q d */
AVX2_TARGET static float dot_q8_0_avx2(const uint8_t *row, const float *x, int n) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / 32; b++, row += 34, x += 32) {
        const int8_t *q = (const int8_t *)(row + 2);
        __m256 s = _mm256_mul_ps(i8x8(q), _mm256_loadu_ps(x));
        s = _mm256_fmadd_ps(i8x8(q + 8), _mm256_loadu_ps(x + 8), s);
        s = _mm256_fmadd_ps(i8x8(q + 16), _mm256_loadu_ps(x + 16), s);
        s = _mm256_fmadd_ps(i8x8(q + 24), _mm256_loadu_ps(x + 24), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row)), s, acc);
    }
    return hsum8(acc);
}

/* Q4_0 blocks: f16 d, 16 bytes of nibbles (low: values 0-15, high: 16-31); value (q - 8) d */
AVX2_TARGET static float dot_q4_0_avx2(const uint8_t *row, const float *x, int n) {
    __m256 acc = _mm256_setzero_ps();
    const __m128i lo_mask = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int b = 0; b < n / 32; b++, row += 18, x += 32) {
        __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)(row + 2));
        __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, lo_mask), eight);
        __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), lo_mask), eight);
        __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), _mm256_loadu_ps(x));
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(x + 8), s);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), _mm256_loadu_ps(x + 16), s);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(x + 24), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row)), s, acc);
    }
    return hsum8(acc);
}

/* ---- weights in ggml's 4- and 8-bit blocks times activations in 8-bit
 * blocks (as llama.cpp multiplies them): x is cut into blocks of 32 (of
 * 256 for the k-quants, llama.cpp's Q8_K), each rounded to int8 with the
 * scale max|x| / 127; a block's product is an exact integer sum, then
 * scaled in float. ---- */

/* one row of x so rounded (qx_make makes the fields beyond q, d and s only
 * where a kernel in use reads them, NULL otherwise): codes q, block scales d
 * and sums s = d sum(q)
 * (Q4_1's offset term); for the fast Q4_0 kernel also the codes of each
 * pair of blocks (A, B) laid out as Q4_0 packs its nibbles, a = [A 0-15,
 * B 0-15, A 16-31, B 16-31], and o: 8 times the sums of a's four-byte
 * groups of low and high halves together (Q4_0's -8, taken out after an
 * unsigned product) */
typedef struct {
    const int8_t *q, *a;
    const float *d, *s;
    const int32_t *o;
    /* for the k-quants, x rounded as llama.cpp's Q8_K rounds it: blocks of
     * 256 (codes k, scales dk = max|x| / 127), sums of k's groups of 16
     * (k16); NULL where no k-quant matrix takes this x */
    const int8_t *k;
    const float *dk;
    const int16_t *k16;
    /* for the AVX-512 VNNI kernels (NULL where they do not run): o8, -128
     * times the sum of each four codes of q (Q8_0's weights made unsigned
     * by adding 128); a4, each four blocks' codes as Q4_0's nibbles of
     * four blocks fall in a 512-bit register, [A 0-15, B 0-15, C 0-15,
     * D 0-15, A 16-31, ..., D 16-31] (whole groups of four only); o4, -8
     * times the sums of a4's four-byte groups of low and high halves
     * together */
    const int8_t *a4;
    const int32_t *o4, *o8;
    /* k4p: k with each super-block's blocks of 32 in the order the Q4_K
     * kernel's 512-bit code loads take them, 0 2 1 3 4 6 5 7; k2p: in the
     * Q2_K and Q3_K kernels' order, 0 4 1 5 2 6 3 7 (NULL without k or
     * VNNI) */
    const int8_t *k4p, *k2p;
} qx;

static size_t qx_bytes(int n) { /* n a multiple of 32 */
    return (size_t)n * 3 + (size_t)n / 32 * (2 * sizeof(float) + 4 * sizeof(int32_t)) +
           (size_t)n / 256 * sizeof(float) + (size_t)n / 16 * sizeof(int16_t) + 64 +
           (size_t)n + (size_t)n / 8 * sizeof(int32_t) + (size_t)n / 4 * sizeof(int32_t) + 2 * (size_t)n;
}

static int is_kquant(uint32_t type) {
    return type == QS_WT_Q2_K || type == QS_WT_Q3_K || type == QS_WT_Q4_K || type == QS_WT_Q5_K || type == QS_WT_Q6_K;
}

/* x rounded in blocks of 256 (n a multiple of 256) */
static void qx_round_k(const float *x, int n, int8_t *k, float *dk, int16_t *k16) {
    for (int b = 0; b < n / 256; b++) {
        const float *xb = x + (size_t)b * 256;
        float amax = 0;
        for (int i = 0; i < 256; i++) amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        int8_t *kb = k + (size_t)b * 256;
        for (int i = 0; i < 256; i++) kb[i] = (int8_t)nearbyintf(xb[i] * id);
        for (int j = 0; j < 16; j++) {
            int t = 0;
            for (int i = 0; i < 16; i++) t += kb[16 * j + i];
            k16[b * 16 + j] = (int16_t)t;
        }
        dk[b] = amax / 127.0f;
    }
}

static int use_fast = -1; /* -1: not decided; 0: plain C; 1: AVX2 */
static int fast_available(void);

/* the AVX-512 VNNI kernels (every ggml block format's decode dot, at 512 bits): where
 * the CPU has them and the "avx512" kernels are in use */
static int vnni_on(void) {
    if (use_fast < 0) use_fast = fast_available();
    return use_fast == 2 && qs_wmat_vnni_available();
}

/* qx's a4 and o4 from the codes q of nb blocks */
static void qx_layout_a4(const int8_t *q, int nb, int8_t *a4, int32_t *o4) {
    for (int G = 0; G < nb / 4; G++) {
        int8_t *d = a4 + (size_t)G * 128;
        for (int c = 0; c < 4; c++) {
            memcpy(d + 16 * c, q + (size_t)(4 * G + c) * 32, 16);
            memcpy(d + 64 + 16 * c, q + (size_t)(4 * G + c) * 32 + 16, 16);
        }
        for (int L = 0; L < 16; L++) {
            int t = 0;
            for (int k = 0; k < 4; k++) t += d[4 * L + k] + d[64 + 4 * L + k];
            o4[16 * G + L] = -8 * t;
        }
    }
}

/* max |x| over n values (AVX2) */
AVX2_TARGET static float amax_avx2(const float *x, int n) { /* n a multiple of 8 */
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), m); /* a NaN lane keeps m, as the plain C loop */
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

/* 32 values times id, rounded to int8 codes q, and the sums of their two halves */
AVX2_TARGET static void round32_avx2(const float *xb, float id, int8_t *q, int32_t *s0, int32_t *s1) {
    __m256i c[4];
    for (int k = 0; k < 4; k++)
        c[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + 8 * k), _mm256_set1_ps(id)),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    /* int32 lanes to bytes in order: pack 32 -> 16 -> 8 interleaves the halves, a permute restores them */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(void *)q, p);
    __m256i w = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), p), _mm256_set1_epi16(1));
    __m128i w4 = _mm_add_epi32(_mm256_castsi256_si128(w), _mm_shuffle_epi32(_mm256_castsi256_si128(w), 0x4E));
    __m128i w8 = _mm_add_epi32(_mm256_extracti128_si256(w, 1), _mm_shuffle_epi32(_mm256_extracti128_si256(w, 1), 0x4E));
    *s0 = _mm_cvtsi128_si32(w4) + _mm_extract_epi32(w4, 1);
    *s1 = _mm_cvtsi128_si32(w8) + _mm_extract_epi32(w8, 1);
}

/* the nb blocks of x rounded: codes q, scales d, d sum(q) s (the same
 * products and roundings as qx_make's plain C, eight lanes at a time) */
AVX2_TARGET static void qx_round_avx2(const float *x, int nb, int8_t *q, float *d, float *s) {
    for (int b = 0; b < nb; b++) {
        float amax = amax_avx2(x + (size_t)b * 32, 32);
        int32_t s0, s1;
        round32_avx2(x + (size_t)b * 32, amax > 0 ? 127.0f / amax : 0.0f, q + (size_t)b * 32, &s0, &s1);
        d[b] = amax / 127.0f;
        s[b] = d[b] * (float)(s0 + s1);
    }
}

/* qx_round_k's blocks of 256, as it rounds them */
AVX2_TARGET static void qx_round_k_avx2(const float *x, int n, int8_t *k, float *dk, int16_t *k16) {
    for (int b = 0; b < n / 256; b++) {
        const float *xb = x + (size_t)b * 256;
        float amax = amax_avx2(xb, 256), id = amax > 0 ? 127.0f / amax : 0.0f;
        for (int j = 0; j < 8; j++) {
            int32_t s0, s1;
            round32_avx2(xb + 32 * j, id, k + (size_t)b * 256 + 32 * j, &s0, &s1);
            k16[b * 16 + 2 * j] = (int16_t)s0, k16[b * 16 + 2 * j + 1] = (int16_t)s1;
        }
        dk[b] = amax / 127.0f;
    }
}

/* qx_round_avx2's blocks in plain C */
static void qx_round(const float *x, int nb, int8_t *q, float *d, float *s) {
    for (int b = 0; b < nb; b++) {
        const float *xb = x + (size_t)b * 32;
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int i = 0; i < 32; i++) q[b * 32 + i] = (int8_t)nearbyintf(xb[i] * id), sum += q[b * 32 + i];
        d[b] = amax / 127.0f;
        s[b] = d[b] * (float)sum;
    }
}

void qs_wq8_round(const float *x, int nb, int8_t *q, float *d, float *s) {
    if (use_fast < 0) use_fast = fast_available();
    (use_fast ? qx_round_avx2 : qx_round)(x, nb, q, d, s);
}

void qs_wq8_round_k(const float *x, int n, int8_t *k, float *dk, int16_t *k16) {
    if (use_fast < 0) use_fast = fast_available();
    (use_fast ? qx_round_k_avx2 : qx_round_k)(x, n, k, dk, k16);
}

/* what of qx a kernel reads beyond q, d and s (always made) */
enum {
    QX_A = 1,   /* a, o: the AVX2 Q4_0 kernel */
    QX_A4 = 2,  /* a4, o4: the VNNI Q4_0 kernel */
    QX_O8 = 4,  /* o8: the VNNI Q8_0 kernel */
    QX_K = 8,   /* k, dk, k16: the k-quants (n a multiple of 256) */
    QX_K4P = 16, /* k4p: the VNNI Q4_K and Q5_K kernels (with QX_K) */
    QX_K2P = 32  /* k2p: the VNNI Q2_K and Q3_K kernels (with QX_K) */
};

/* k (n values) with each super-block's blocks of 32 in the order from */
static void qx_k_order(const int8_t *k, int n, const int from[8], int8_t *out) {
    for (int sb = 0; sb < n / 256; sb++)
        for (int j = 0; j < 8; j++) memcpy(out + (size_t)sb * 256 + 32 * j, k + (size_t)sb * 256 + 32 * from[j], 32);
}

static qx qx_make(const float *x, int n, void *buf, unsigned need) {
    int nb = n / 32;
    int32_t *o = buf;
    float *d = (float *)(o + (size_t)nb / 2 * 8), *s = d + nb, *dk = s + nb;
    int16_t *k16 = (int16_t *)(dk + n / 256);
    int8_t *q = (int8_t *)(k16 + n / 16), *a = q + n, *kq = a + n;
    int8_t *a4 = kq + n;
    int32_t *o4 = (int32_t *)(a4 + n), *o8 = o4 + n / 8;
    int8_t *k4p = (int8_t *)(o8 + n / 4), *k2p = k4p + n;
    if (n % 256) need &= ~(unsigned)(QX_K | QX_K4P | QX_K2P);
    if (use_fast < 0) use_fast = fast_available();
    qx r = {.q = q, .d = d, .s = s};
    qs_wq8_round(x, nb, q, d, s);
    if (need & QX_K) {
        qs_wq8_round_k(x, n, kq, dk, k16);
        r.k = kq, r.dk = dk, r.k16 = k16;
    }
    if (need & QX_A) {
        for (int p = 0; p < nb / 2; p++) {
            int8_t *ap = a + (size_t)p * 64;
            const int8_t *qa = q + (size_t)p * 64, *qb = qa + 32;
            memcpy(ap, qa, 16), memcpy(ap + 16, qb, 16), memcpy(ap + 32, qa + 16, 16), memcpy(ap + 48, qb + 16, 16);
            for (int k = 0; k < 8; k++) {
                int t = 0;
                for (int i = 0; i < 4; i++) t += ap[4 * k + i] + ap[32 + 4 * k + i];
                o[p * 8 + k] = 8 * t;
            }
        }
        r.a = a, r.o = o;
    }
    if (need & QX_A4) qx_layout_a4(q, nb, a4, o4), r.a4 = a4, r.o4 = o4;
    if (need & QX_O8) {
        for (int g = 0; g < nb * 8; g++) o8[g] = -128 * (q[4 * g] + q[4 * g + 1] + q[4 * g + 2] + q[4 * g + 3]);
        r.o8 = o8;
    }
    static const int from4[8] = {0, 2, 1, 3, 4, 6, 5, 7}, from2[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    if (need & QX_K && need & QX_K4P) qx_k_order(kq, n, from4, k4p), r.k4p = k4p;
    if (need & QX_K && need & QX_K2P) qx_k_order(kq, n, from2, k2p), r.k2p = k2p;
    return r;
}

typedef float (*qdot_fn)(const uint8_t *row, const qx *x, int n);

/* the plain C kernels of the 32-value blocks: value i of a block as an
 * integer code (Q8_0's int8, Q4_0's q - 8, Q5_0's q - 16, IQ4_NL's level,
 * Q4_1's and Q5_1's q, whose offset m is taken apart as m s); Q5_x's fifth
 * bit of value i is bit i of the little-endian u32 before the nibbles */
static inline int blk32_code(uint32_t type, const uint8_t *b, int i) {
    const uint8_t *nib = b + (type == QS_WT_Q4_1 ? 4 : type == QS_WT_Q5_0 ? 6 : type == QS_WT_Q5_1 ? 8 : 2);
    int u = i < 16 ? nib[i] & 0x0F : nib[i - 16] >> 4;
    if (type == QS_WT_Q5_0 || type == QS_WT_Q5_1) u |= (nib[-4 + i / 8] >> (i % 8) & 1) << 4;
    switch (type) {
    case QS_WT_Q8_0: return (int8_t)b[2 + i];
    case QS_WT_Q4_0: return u - 8;
    case QS_WT_Q5_0: return u - 16;
    case QS_WT_IQ4_NL: return qs_iq4_nl_grid[u];
    }
    return u; /* Q4_1, Q5_1 */
}

/* Q4_K (q5 0, blocks of 144 bytes) and Q5_K (q5 1, of 176): value i of
 * sub-block j, 0..15 (0..31), a nibble of the last 128 bytes (low for even
 * j) with, for Q5_K, bit j of qh[i] as its fifth bit */
static inline int k45_code(const uint8_t *blk, int q5, int j, int i) {
    const uint8_t *q = blk + (q5 ? 176 : 144) - 128 + 32 * (j / 2), *qh = blk + 16;
    return (j & 1 ? q[i] >> 4 : q[i] & 0x0F) | (q5 ? (qh[i] >> j & 1) << 4 : 0);
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales, value d sc (q - 32), q 0..63
 * from 4 low bits in ql and 2 high in qh (ggml's layout) */
static int q6k_code(const uint8_t *blk, int i) {
    const uint8_t *ql = blk + 64 * (i / 128), *qh = blk + 128 + 32 * (i / 128);
    int l = i % 128, k = l / 32, c = l % 32;
    int lo = k & 1 ? ql[c + 32] : ql[c];
    return ((k & 2 ? lo >> 4 : lo & 0x0F) | (qh[c] >> (2 * k) & 3) << 4);
}

int qs_wq8_codes(uint32_t type, const void *w, int n_in, int row0, int rows, int8_t *codes, size_t ldc, float *d,
                 float *m, size_t ldd) {
    size_t e, bb, rb = qs_wtype_row_bytes(type, n_in);
    if (type == QS_WT_Q4_K || type == QS_WT_Q5_K) { /* sub-block j of 32: d sc_j q - dmin m_j */
        if (n_in % 256 || !m) return 0;
        int q5 = type == QS_WT_Q5_K;
        qs_wtype_block(type, &e, &bb);
        for (int r = 0; r < rows; r++) {
            const uint8_t *blk = (const uint8_t *)w + rb * (size_t)(row0 + r);
            int8_t *c = codes + ldc * (size_t)r;
            for (int sb = 0; sb < n_in / 256; sb++, blk += bb)
                for (int j = 0; j < 8; j++) {
                    int sc, mn;
                    qs_k4_scale_min(j, blk + 4, &sc, &mn);
                    size_t b = (size_t)sb * 8 + (size_t)j;
                    d[ldd * (size_t)r + b] = qs_f16_at(blk) * (float)sc;
                    m[ldd * (size_t)r + b] = qs_f16_at(blk + 2) * (float)mn;
                    for (int i = 0; i < 32; i++) c[32 * b + (size_t)i] = (int8_t)k45_code(blk, q5, j, i);
                }
        }
        return 1;
    }
    if (type == QS_WT_Q6_K) { /* blocks of 32, a scale d sc for each half: d[2 b + h] */
        if (n_in % 256) return 0;
        for (int r = 0; r < rows; r++) {
            const uint8_t *blk = (const uint8_t *)w + rb * (size_t)(row0 + r);
            int8_t *c = codes + ldc * (size_t)r;
            for (int sb = 0; sb < n_in / 256; sb++, blk += 210) {
                const int8_t *sc = (const int8_t *)(blk + 192);
                float dd = qs_f16_at(blk + 208);
                for (int h = 0; h < 16; h++) d[ldd * (size_t)r + 16 * (size_t)sb + (size_t)h] = dd * (float)sc[h];
                for (int i = 0; i < 256; i++) c[256 * (size_t)sb + (size_t)i] = (int8_t)(q6k_code(blk, i) - 32);
            }
        }
        return 1;
    }
    if (n_in % 32 || !(type == QS_WT_Q8_0 || type == QS_WT_Q4_0 || type == QS_WT_Q5_0 || type == QS_WT_IQ4_NL)) return 0;
    qs_wtype_block(type, &e, &bb);
    for (int r = 0; r < rows; r++) {
        const uint8_t *blk = (const uint8_t *)w + rb * (size_t)(row0 + r);
        int8_t *c = codes + ldc * (size_t)r;
        for (int b = 0; b < n_in / 32; b++, blk += bb, c += 32) {
            d[ldd * (size_t)r + (size_t)b] = qs_f16_at(blk);
            if (type == QS_WT_Q8_0) memcpy(c, blk + 2, 32);
            else if (type == QS_WT_Q4_0)
                for (int i = 0; i < 16; i++) c[i] = (int8_t)((blk[2 + i] & 0x0F) - 8), c[i + 16] = (int8_t)((blk[2 + i] >> 4) - 8);
            else
                for (int i = 0; i < 32; i++) c[i] = (int8_t)blk32_code(type, blk, i);
        }
    }
    return 1;
}

static inline float qdot_blk32_ref(uint32_t type, const uint8_t *row, const qx *x, int n) {
    size_t e, bb;
    qs_wtype_block(type, &e, &bb);
    int has_m = type == QS_WT_Q4_1 || type == QS_WT_Q5_1;
    float acc = 0;
    for (int b = 0; b < n / 32; b++, row += bb) {
        int isum = 0;
        for (int i = 0; i < 32; i++) isum += blk32_code(type, row, i) * x->q[(size_t)b * 32 + i];
        float t = qs_f16_at(row) * x->d[b] * (float)isum;
        if (has_m) t += qs_f16_at(row + 2) * x->s[b]; /* value dw u + m: dw dx sum(u q) + m s */
        acc += t;
    }
    return acc;
}
static float qdot_q8_0_ref(const uint8_t *row, const qx *x, int n) { return qdot_blk32_ref(QS_WT_Q8_0, row, x, n); }
static float qdot_q4_0_ref(const uint8_t *row, const qx *x, int n) { return qdot_blk32_ref(QS_WT_Q4_0, row, x, n); }
static float qdot_q4_1_ref(const uint8_t *row, const qx *x, int n) { return qdot_blk32_ref(QS_WT_Q4_1, row, x, n); }
static float qdot_q5_0_ref(const uint8_t *row, const qx *x, int n) { return qdot_blk32_ref(QS_WT_Q5_0, row, x, n); }
static float qdot_q5_1_ref(const uint8_t *row, const qx *x, int n) { return qdot_blk32_ref(QS_WT_Q5_1, row, x, n); }
static float qdot_iq4_nl_ref(const uint8_t *row, const qx *x, int n) { return qdot_blk32_ref(QS_WT_IQ4_NL, row, x, n); }

#define LOADU(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))

/* int32 lanes of four-byte sums: w (signed bytes) times q (|w| as
 * unsigned, q given w's sign: maddubs cannot saturate, |w| <= 128 and
 * |q| <= 127) */
AVX2_TARGET static __m256i i8dot(__m256i w, __m256i q) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w)), _mm256_set1_epi16(1));
}

AVX2_TARGET static __m256i nibbles32(const uint8_t *p) { /* 16 bytes: low nibbles, then high */
    __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* eight blocks' f16 scales (stride bytes apart) times x's eight scales */
AVX2_TARGET static inline __attribute__((always_inline)) __m256 scales8(const uint8_t *p, size_t stride, const float *d) {
    __m128i h = _mm_cvtsi32_si128(p[0] | p[1] << 8);
    h = _mm_insert_epi16(h, p[stride] | p[stride + 1] << 8, 1);
    h = _mm_insert_epi16(h, p[2 * stride] | p[2 * stride + 1] << 8, 2);
    h = _mm_insert_epi16(h, p[3 * stride] | p[3 * stride + 1] << 8, 3);
    h = _mm_insert_epi16(h, p[4 * stride] | p[4 * stride + 1] << 8, 4);
    h = _mm_insert_epi16(h, p[5 * stride] | p[5 * stride + 1] << 8, 5);
    h = _mm_insert_epi16(h, p[6 * stride] | p[6 * stride + 1] << 8, 6);
    h = _mm_insert_epi16(h, p[7 * stride] | p[7 * stride + 1] << 8, 7);
    return _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(d));
}

/* lanes 0-3 of the result: lane i of v; lanes 4-7: lane j */
#define PAIR(v, i, j) _mm256_permutevar8x32_ps((v), _mm256_setr_epi32(i, i, i, i, j, j, j, j))
#define BCAST(v, i) _mm256_permutevar8x32_ps((v), _mm256_set1_epi32(i))

/* Q8_0: eight blocks a step, scales gathered once */
AVX2_TARGET static float qdot_q8_0_avx2(const uint8_t *row, const qx *x, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    const int8_t *q = x->q;
    int nb = n / 32, b = 0;
    for (; b + 8 <= nb; b += 8, row += 8 * 34, q += 256) {
        PREFETCH_AT(row, PF_Q8, 5);
        __m256 sc = scales8(row, 34, x->d + b);
        for (int k = 0; k < 8; k += 2) {
            __m256 p0 = _mm256_cvtepi32_ps(i8dot(LOADU(row + 34 * k + 2), LOADU(q + 32 * k)));
            __m256 p1 = _mm256_cvtepi32_ps(i8dot(LOADU(row + 34 * k + 36), LOADU(q + 32 * k + 32)));
            a0 = _mm256_fmadd_ps(BCAST(sc, k), p0, a0);
            a1 = _mm256_fmadd_ps(BCAST(sc, k + 1), p1, a1);
        }
    }
    for (; b < nb; b++, row += 34, q += 32) {
        __m256 p = _mm256_cvtepi32_ps(i8dot(LOADU(row + 2), LOADU(q)));
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row) * x->d[b]), p, a0);
    }
    return hsum8(_mm256_add_ps(a0, a1));
}

/* Q4_0: two blocks in one register (their low nibbles, then their high),
 * multiplied unsigned (0..15) by x's codes in the same layout, 8 sum(q)
 * taken out in int32; eight blocks a step */
AVX2_TARGET static float qdot_q4_0_avx2(const uint8_t *row, const qx *x, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    int nb = n / 32, b = 0;
    for (; b + 8 <= nb; b += 8, row += 8 * 18) {
        PREFETCH_AT(row, PF_Q4, 3);
        __m256 sc = scales8(row, 18, x->d + b);
        const int8_t *xa = x->a + (size_t)b * 32;
        const int32_t *xo = x->o + (size_t)b * 4;
        for (int k = 0; k < 8; k += 2) {
            const uint8_t *r = row + 18 * k;
            __m256i v = _mm256_loadu2_m128i((const __m128i *)(const void *)(r + 20), (const __m128i *)(const void *)(r + 2));
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, LOADU(xa + 32 * k)),
                                         _mm256_maddubs_epi16(hi, LOADU(xa + 32 * k + 32)));
            __m256i p32 = _mm256_sub_epi32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)), LOADU(xo + 4 * k));
            __m256 f = _mm256_cvtepi32_ps(p32);
            if (k & 2) a1 = _mm256_fmadd_ps(PAIR(sc, k, k + 1), f, a1);
            else a0 = _mm256_fmadd_ps(PAIR(sc, k, k + 1), f, a0);
        }
    }
    const __m256i eight = _mm256_set1_epi8(8);
    for (; b < nb; b++, row += 18) {
        __m256 p = _mm256_cvtepi32_ps(i8dot(_mm256_sub_epi8(nibbles32(row + 2), eight), LOADU(x->q + (size_t)b * 32)));
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row) * x->d[b]), p, a0);
    }
    return hsum8(_mm256_add_ps(a0, a1));
}

#define VNNI_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vnni")))

/* lanes 4c to 4c + 3: lane 4 g + c of an eight-scale register (four blocks' scales for the four 128-bit lanes) */
VNNI_TARGET static inline __m512 scales4x4(__m256 sc, int g) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_permutexvar_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(4 * g)), _mm512_castps256_ps512(sc));
}

/* Q8_0 at 512 bits: two blocks a register, the weights made unsigned by
 * adding 128 (x's o8 takes 128 sum(x) out as the sums start); eight
 * blocks a step, scales gathered once */
VNNI_TARGET static inline __attribute__((always_inline)) float q8_0_vnni_row(const uint8_t *row, const qx *x, int n) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i i01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int nb = n / 32, b = 0;
    for (; b + 8 <= nb; b += 8, row += 8 * 34) {
        PREFETCH_AT(row, PF_Q8, 5);
        __m512 sc = _mm512_castps256_ps512(scales8(row, 34, x->d + b));
        const int8_t *q = x->q + (size_t)b * 32;
        const int32_t *o = x->o8 + (size_t)b * 8;
        for (int k = 0; k < 8; k += 2) {
            __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(LOADU(row + 34 * k + 2)), LOADU(row + 34 * k + 36), 1);
            __m512i p = _mm512_dpbusd_epi32(_mm512_loadu_si512(o + 8 * k), _mm512_xor_si512(w, flip), _mm512_loadu_si512(q + 32 * k));
            __m512 s2 = _mm512_permutexvar_ps(_mm512_add_epi32(i01, _mm512_set1_epi32(k)), sc);
            if (k & 2) a1 = _mm512_fmadd_ps(s2, _mm512_cvtepi32_ps(p), a1);
            else a0 = _mm512_fmadd_ps(s2, _mm512_cvtepi32_ps(p), a0);
        }
    }
    float r = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; b < nb; b++, row += 34) {
        __m256 p = _mm256_cvtepi32_ps(i8dot(LOADU(row + 2), LOADU(x->q + (size_t)b * 32)));
        r += f16at_hw(row) * x->d[b] * hsum8(p);
    }
    return r;
}

AVX2_TARGET static float qdot_q4_1_avx2(const uint8_t *row, const qx *x, int n) {
    __m256 acc = _mm256_setzero_ps();
    float off = 0;
    for (int b = 0; b < n / 32; b++, row += 20) {
        __m256i m = _mm256_maddubs_epi16(nibbles32(row + 4), LOADU(x->q + (size_t)b * 32)); /* 0..15 unsigned */
        __m256 pf = _mm256_cvtepi32_ps(_mm256_madd_epi16(m, _mm256_set1_epi16(1)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row) * x->d[b]), pf, acc);
        off += f16at_hw(row + 2) * x->s[b];
    }
    return hsum8(acc) + off;
}

/* 32 bytes, byte j 0xFF where bit j of v is set */
AVX2_TARGET static __m256i bits32(uint32_t v) {
    const __m256i which = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)v), which), bit);
    return _mm256_cmpeq_epi8(b, bit);
}

/* Q5_0 and Q5_1: codes 0..31 unsigned times x's, Q5_0's 16 sum(x) and
 * Q5_1's offset m s taken out in float */
AVX2_TARGET static float qdot_q5_avx2(const uint8_t *row, const qx *x, int n, int q51) {
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    float off = 0;
    const __m256i fifth = _mm256_set1_epi8(0x10), ones = _mm256_set1_epi16(1);
    size_t bb = q51 ? 24 : 22;
    int nb = n / 32;
    for (int b = 0; b < nb; b += 2) {
        if (!(b & 3)) PREFETCH_AT(row + bb * (size_t)b, PF_Q4, 2);
        for (int k = 0; k < 2 && b + k < nb; k++) { /* two blocks a step, one sum each */
            const uint8_t *r = row + bb * (size_t)(b + k);
            uint32_t h;
            memcpy(&h, r + bb - 20, 4); /* little-endian, as stored */
            __m256i u = _mm256_or_si256(nibbles32(r + bb - 16), _mm256_and_si256(bits32(h), fifth));
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, LOADU(x->q + (size_t)(b + k) * 32)), ones);
            float dw = f16at_hw(r);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x->d[b + k]), _mm256_cvtepi32_ps(p), acc[k]);
            off += (q51 ? -f16at_hw(r + 2) : 16.0f * dw) * x->s[b + k];
        }
    }
    return hsum8(_mm256_add_ps(acc[0], acc[1])) - off;
}
AVX2_TARGET static float qdot_q5_0_avx2(const uint8_t *row, const qx *x, int n) { return qdot_q5_avx2(row, x, n, 0); }
AVX2_TARGET static float qdot_q5_1_avx2(const uint8_t *row, const qx *x, int n) { return qdot_q5_avx2(row, x, n, 1); }

/* IQ4_NL: the grid looked up by shuffle, then a signed product */
AVX2_TARGET static float qdot_iq4_nl_avx2(const uint8_t *row, const qx *x, int n) {
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)qs_iq4_nl_grid));
    int nb = n / 32;
    for (int b = 0; b < nb; b += 2) {
        if (!(b & 7)) PREFETCH_AT(row + 18 * (size_t)b, PF_Q4, 3);
        for (int k = 0; k < 2 && b + k < nb; k++) { /* two blocks a step, one sum each */
            const uint8_t *r = row + 18 * (size_t)(b + k);
            __m256i w = _mm256_shuffle_epi8(grid, nibbles32(r + 2));
            __m256 p = _mm256_cvtepi32_ps(i8dot(w, LOADU(x->q + (size_t)(b + k) * 32)));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(r) * x->d[b + k]), p, acc[k]);
        }
    }
    return hsum8(_mm256_add_ps(acc[0], acc[1]));
}

/* scales8 for blocks of 18 bytes (Q4_0, IQ4_NL): the eight scales lie in
 * the first 128 bytes of the eight blocks, two loads and one permute (eight
 * word inserts for scales8) */
VNNI_TARGET static inline __m256 scales8_18(const uint8_t *p, const float *d) {
    static const int16_t idx[32] = {0, 9, 18, 27, 32 + 4, 32 + 13, 32 + 22, 32 + 31};
    __m512i w = _mm512_permutex2var_epi16(_mm512_loadu_si512(p), _mm512_loadu_si512(idx), _mm512_loadu_si512(p + 64));
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm512_castsi512_si128(w)), _mm256_loadu_ps(d));
}

/* The 4- and 5-bit blocks of 32 at 512 bits (Q4_0, Q4_1, Q5_0, Q5_1,
 * IQ4_NL): four blocks' 16 code bytes in one register (a 128-bit lane
 * each, four 16-byte loads: a 64-byte load across the blocks, split over
 * two cache lines, read a row from memory at two thirds of the rate), their
 * low halves times x's a4 codes of values 0-15 and the high ones times
 * those of 16-31 into the same sums; eight blocks a step, their scales
 * gathered once (for blocks of 18 bytes by one permute). The codes are unsigned for the product: Q5's fifth bits
 * added by byte masks from qh (its low 16 bits for the low nibbles, the
 * high 16 for the high ones); IQ4_NL's levels looked up plus 128. What the
 * codes carry beyond the values is taken out as the sums start: o4 (-8
 * sum(x)) for Q4_0, twice that for Q5_0's -16, sixteen times for IQ4_NL's
 * 128; Q4_1's and Q5_1's offsets m times x's block sums s in float. Blocks
 * past the last step of eight go to the AVX2 kernel (Q4_0's one by one, its
 * AVX2 kernel reading a layout of x not made here). */
VNNI_TARGET static inline __attribute__((always_inline)) float blk32_vnni_row(const uint8_t *row, const qx *x, int n,
                                                                              const uint32_t type) {
    const int q5 = type == QS_WT_Q5_0 || type == QS_WT_Q5_1, has_m = type == QS_WT_Q4_1 || type == QS_WT_Q5_1;
    const size_t bb = type == QS_WT_Q4_1 ? 20 : type == QS_WT_Q5_0 ? 22 : type == QS_WT_Q5_1 ? 24 : 18; /* a block */
    const size_t qo = bb - 16, ho = has_m ? 4 : 2;                           /* its codes; its fifth bits */
    const int shift = type == QS_WT_Q5_0 ? 1 : type == QS_WT_IQ4_NL ? 4 : 0; /* of o4, the start */
    const __m512i m4 = _mm512_set1_epi8(0x0F), fifth = _mm512_set1_epi8(0x10);
    const __m512i grid = _mm512_broadcast_i32x4(
        _mm_xor_si128(_mm_loadu_si128((const __m128i *)(const void *)qs_iq4_nl_grid), _mm_set1_epi8((char)0x80)));
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    __m256 off = _mm256_setzero_ps();
    int nb = n / 32, b = 0;
    for (; b + 8 <= nb; b += 8, row += 8 * bb) {
        PREFETCH_AT(row, PF_Q4, 3);
        __m256 sc = bb == 18 ? scales8_18(row, x->d + b) : scales8(row, bb, x->d + b);
        if (has_m) off = _mm256_add_ps(off, scales8(row + 2, bb, x->s + b));
        for (int g = 0; g < 2; g++) {
            const uint8_t *r = row + 4 * bb * g;
            __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)(r + qo)));
            v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(r + bb + qo)), 1);
            v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(r + 2 * bb + qo)), 2);
            v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(r + 3 * bb + qo)), 3);
            __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            if (q5) {
                uint64_t kl = 0, kh = 0;
                for (int c = 0; c < 4; c++) {
                    uint32_t h;
                    memcpy(&h, r + bb * c + ho, 4); /* little-endian, as stored */
                    kl |= (uint64_t)(h & 0xFFFF) << 16 * c, kh |= (uint64_t)(h >> 16) << 16 * c;
                }
                lo = _mm512_mask_add_epi8(lo, kl, lo, fifth), hi = _mm512_mask_add_epi8(hi, kh, hi, fifth);
            }
            if (type == QS_WT_IQ4_NL) lo = _mm512_shuffle_epi8(grid, lo), hi = _mm512_shuffle_epi8(grid, hi);
            const int8_t *xa = x->a4 + (size_t)(b + 4 * g) * 32;
            __m512i p = has_m ? _mm512_setzero_si512()
                              : _mm512_slli_epi32(_mm512_loadu_si512(x->o4 + (size_t)(b + 4 * g) * 4), shift);
            p = _mm512_dpbusd_epi32(p, lo, _mm512_loadu_si512(xa));
            p = _mm512_dpbusd_epi32(p, hi, _mm512_loadu_si512(xa + 64));
            if (g) a1 = _mm512_fmadd_ps(scales4x4(sc, g), _mm512_cvtepi32_ps(p), a1);
            else a0 = _mm512_fmadd_ps(scales4x4(sc, g), _mm512_cvtepi32_ps(p), a0);
        }
    }
    float r = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + (has_m ? hsum8(off) : 0.0f);
    if (b == nb) return r;
    if (type == QS_WT_Q4_0) {
        const __m256i eight = _mm256_set1_epi8(8);
        for (; b < nb; b++, row += 18) {
            __m256 p = _mm256_cvtepi32_ps(i8dot(_mm256_sub_epi8(nibbles32(row + 2), eight), LOADU(x->q + (size_t)b * 32)));
            r += f16at_hw(row) * x->d[b] * hsum8(p);
        }
        return r;
    }
    qx t = *x; /* the AVX2 kernels read q, d and s from block 0 */
    t.q += (size_t)b * 32, t.d += b, t.s += b;
    int rest = (nb - b) * 32;
    return r + (type == QS_WT_Q4_1   ? qdot_q4_1_avx2(row, &t, rest)
                : type == QS_WT_Q5_0 ? qdot_q5_0_avx2(row, &t, rest)
                : type == QS_WT_Q5_1 ? qdot_q5_1_avx2(row, &t, rest)
                                     : qdot_iq4_nl_avx2(row, &t, rest));
}

typedef void (*qrows_fn)(const uint8_t *w, size_t rb, int rows, const qx *x, int n, float *y);

/* a VNNI kernel as a single dot, and over a range of rows (decode's GEMV:
 * the call and the constants once for all the rows) */
#define VNNI_ENTRIES(name)                                                                                     \
    VNNI_TARGET static float qdot_##name##_vnni(const uint8_t *row, const qx *x, int n) {                      \
        return name##_vnni_row(row, x, n);                                                                     \
    }                                                                                                          \
    VNNI_TARGET static void qrows_##name##_vnni(const uint8_t *w, size_t rb, int rows, const qx *x, int n,     \
                                                float *y) {                                                    \
        for (int r = 0; r < rows; r++) y[r] = name##_vnni_row(w + rb * (size_t)r, x, n);                       \
    }
/* the same, for one type of a kernel written for several: name_vnni_row is
 * fn with the type's constant */
#define VNNI_ENTRIES_OF(name, fn, which)                                                                         \
    VNNI_TARGET static inline __attribute__((always_inline)) float name##_vnni_row(const uint8_t *row, const qx *x, \
                                                                                   int n) {                          \
        return fn(row, x, n, which);                                                                                 \
    }                                                                                                                \
    VNNI_ENTRIES(name)
VNNI_ENTRIES(q8_0)
VNNI_ENTRIES_OF(q4_0, blk32_vnni_row, QS_WT_Q4_0)
VNNI_ENTRIES_OF(q4_1, blk32_vnni_row, QS_WT_Q4_1)
VNNI_ENTRIES_OF(q5_0, blk32_vnni_row, QS_WT_Q5_0)
VNNI_ENTRIES_OF(q5_1, blk32_vnni_row, QS_WT_Q5_1)
VNNI_ENTRIES_OF(iq4_nl, blk32_vnni_row, QS_WT_IQ4_NL)

/* ---- k-quants by x rounded in blocks of 256 (qx's k, dk, k16), as
 * llama.cpp multiplies them: a super-block's integer sums, scaled once in
 * float ---- */

/* Q4_K and Q5_K: sub-block j (32 values) is d sc_j q - dmin m_j, so the
 * super-block gives dk (d sum_j sc_j sum(q k) - dmin sum_j m_j sum(k)) */
static float qdot_k45_ref(const uint8_t *row, const qx *x, int n, int q5) {
    float acc = 0;
    size_t bb = q5 ? 176 : 144;
    for (int sb = 0; sb < n / 256; sb++, row += bb) {
        const int8_t *xk = x->k + (size_t)sb * 256;
        const int16_t *k16 = x->k16 + (size_t)sb * 16;
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m, t = 0;
            qs_k4_scale_min(j, row + 4, &sc, &m);
            for (int i = 0; i < 32; i++) t += k45_code(row, q5, j, i) * xk[32 * j + i];
            isum += sc * t;
            msum += m * (k16[2 * j] + k16[2 * j + 1]);
        }
        acc += x->dk[sb] * (qs_f16_at(row) * (float)isum - qs_f16_at(row + 2) * (float)msum);
    }
    return acc;
}
static float qdot_q4_k_ref(const uint8_t *row, const qx *x, int n) { return qdot_k45_ref(row, x, n, 0); }
/* Q5_K: Q4_K with a fifth bit per value: value l of sub-block j has it at
 * bit j of qh[l] (32 bytes) */
static float qdot_q5_k_ref(const uint8_t *row, const qx *x, int n) { return qdot_k45_ref(row, x, n, 1); }


static float qdot_q6_k_ref(const uint8_t *row, const qx *x, int n) {
    float acc = 0;
    for (int sb = 0; sb < n / 256; sb++, row += 210) {
        const int8_t *sc = (const int8_t *)(row + 192), *xk = x->k + (size_t)sb * 256;
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int t = 0;
            for (int i = 16 * j; i < 16 * j + 16; i++) t += (q6k_code(row, i) - 32) * xk[i];
            isum += sc[j] * t;
        }
        acc += qs_f16_at(row + 208) * x->dk[sb] * (float)isum;
    }
    return acc;
}

/* Q2_K and Q3_K: 2-bit codes, value i (0..255) of a super-block in bits
 * 2s.. of byte 32h + k, where i = 128h + 32s + k; sub-blocks of 16 */
static int k2_code(const uint8_t *q, int i) { return q[32 * (i / 128) + i % 32] >> (2 * (i % 128 / 32)) & 3; }

/* Q2_K: value d (sc & 15) q - dmin (sc >> 4) per 16 */
static float qdot_q2_k_ref(const uint8_t *row, const qx *x, int n) {
    float acc = 0;
    for (int sb = 0; sb < n / 256; sb++, row += 84) {
        const int8_t *xk = x->k + (size_t)sb * 256;
        int isum = 0, msum = 0;
        for (int j = 0; j < 16; j++) {
            int t = 0;
            for (int i = 16 * j; i < 16 * j + 16; i++) t += k2_code(row + 16, i) * xk[i];
            isum += (row[j] & 15) * t;
            msum += (row[j] >> 4) * x->k16[(size_t)sb * 16 + j];
        }
        acc += x->dk[sb] * (qs_f16_at(row + 80) * (float)isum - qs_f16_at(row + 82) * (float)msum);
    }
    return acc;
}

/* Q3_K: value d sc (q - 4), the code's third bit (4 when set) bit 4h + s
 * of hmask byte k */
static float qdot_q3_k_ref(const uint8_t *row, const qx *x, int n) {
    float acc = 0;
    for (int sb = 0; sb < n / 256; sb++, row += 110) {
        int8_t sc[16];
        qs_k3_scales(row + 96, sc);
        const int8_t *xk = x->k + (size_t)sb * 256;
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int t = 0;
            for (int i = 16 * j; i < 16 * j + 16; i++) t += ((k2_code(row + 32, i) | (row[i % 32] >> (i / 32) & 1) << 2) - 4) * xk[i];
            isum += sc[j] * t;
        }
        acc += qs_f16_at(row + 108) * x->dk[sb] * (float)isum;
    }
    return acc;
}

/* Q4_K's and Q5_K's eight 6-bit scales (bytes 0-7 of sc) and mins (of mn)
 * from their 12 bytes p, as qs_k4_scale_min unpacks them */
AVX2_TARGET static void k4_scales_avx2(const uint8_t *p, __m128i *sc, __m128i *mn) {
    uint32_t w[3];
    memcpy(w, p, 12);
    uint32_t s_lo = w[0] & 0x3f3f3f3f, s_hi = (w[2] & 0x0f0f0f0f) | ((w[0] >> 6) & 0x03030303) << 4;
    uint32_t m_lo = w[1] & 0x3f3f3f3f, m_hi = ((w[2] >> 4) & 0x0f0f0f0f) | ((w[1] >> 6) & 0x03030303) << 4;
    *sc = _mm_setr_epi32((int)s_lo, (int)s_hi, 0, 0);
    *mn = _mm_setr_epi32((int)m_lo, (int)m_hi, 0, 0);
}

/* int16 element j of v (the same eight in both lanes) in every lane */
#define WORD(v, j) _mm256_shuffle_epi8((v), _mm256_set1_epi16((short)((2 * (j) + 1) << 8 | 2 * (j))))
/* 16-value sub-block scales as int16 (v: the 16 scales): HALF_SCALES the
 * eight of half h in both lanes; PAIR_OF those for x's block s of the half,
 * sub-block 2s in the low lane and 2s + 1 in the high (one shuffle) */
#define HALF_SCALES(v, h) ((h) ? _mm256_permute2x128_si256((v), (v), 0x11) : _mm256_permute2x128_si256((v), (v), 0x00))
#define PAIR_OF(hs, s)                                                                                       \
    _mm256_shuffle_epi8((hs), _mm256_set_m128i(_mm_set1_epi16((short)((4 * (s) + 3) << 8 | (4 * (s) + 2))), \
                                               _mm_set1_epi16((short)((4 * (s) + 1) << 8 | 4 * (s)))))

/* x's sums of 16 (k16) times sixteen int16 weights w16, in float: eight
 * lanes of pairs */
AVX2_TARGET static __m256 k16_dot(const qx *x, int sb, __m256i w16) {
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(w16, LOADU(x->k16 + (size_t)sb * 16)));
}

/* the same in int32 for scales sc16, times 2^shift: what codes kept
 * unsigned by an offset of 2^shift carry beyond their values (Q6_K's 32,
 * Q3_K's 4), in lanes of pairs */
AVX2_TARGET static inline __m256i k16_offset(const qx *x, int sb, __m256i sc16, int shift) {
    return _mm256_slli_epi32(_mm256_madd_epi16(sc16, LOADU(x->k16 + (size_t)sb * 16)), shift);
}

/* Q4_K's and Q5_K's eight mins (bytes 0-7 of mn8) as sixteen int16, each
 * twice: one per 16 */
AVX2_TARGET static inline __m256i k4_mins16(__m128i mn8) {
    return _mm256_cvtepu8_epi16(_mm_shuffle_epi8(mn8, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)));
}

/* Q2_K's sixteen 4-bit scales (low nibbles of p's 16 bytes) and mins (high
 * nibbles) as int16 */
AVX2_TARGET static inline void k2_scales_avx2(const uint8_t *p, __m256i *sc, __m256i *mn) {
    __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)p), m4 = _mm_set1_epi8(15);
    *sc = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
    *mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
}

/* Q4_K's and Q5_K's codes of the k-th 32 code bytes of super-block blk:
 * c[0] sub-block 2k (low nibbles), c[1] sub-block 2k + 1 (high); for Q5_K
 * (q5) with the fifth bits from *hb (qh, shifted two bits a step) */
AVX2_TARGET static inline void k45_codes(const uint8_t *blk, int k, int q5, __m256i *hb, __m256i c[2]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256i v = LOADU(blk + (q5 ? 48 : 16) + 32 * k);
    c[0] = _mm256_and_si256(v, m4), c[1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    if (q5) {
        c[0] = _mm256_or_si256(c[0], _mm256_slli_epi16(_mm256_and_si256(*hb, one), 4));
        c[1] = _mm256_or_si256(c[1], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(*hb, 1), one), 4));
        *hb = _mm256_srli_epi16(*hb, 2);
    }
}

/* Q4_K and Q5_K (q5: the fifth bits from qh): each sub-block's int16
 * scale applied by madd, the super-block summed in int32 and scaled once;
 * the mins times x's sums of 32 (pairs of k16) likewise */
AVX2_TARGET static inline float qdot_k45_avx2(const uint8_t *row, const qx *x, int n, int q5) {
    __m256 acc = _mm256_setzero_ps(), off = acc;
    size_t bb = q5 ? 176 : 144;
    for (int sb = 0; sb < n / 256; sb++, row += bb) {
        PREFETCH_AT(row, PF_Q4, 3);
        __m128i sc8, mn8;
        k4_scales_avx2(row + 4, &sc8, &mn8);
        __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc8));
        const int8_t *xk = x->k + (size_t)sb * 256;
        __m256i hb = q5 ? LOADU(row + 16) : _mm256_setzero_si256(), isum = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            __m256i c[2];
            k45_codes(row, k, q5, &hb, c);
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(c[0], LOADU(xk + 64 * k)), WORD(sc, 2 * k));
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(c[1], LOADU(xk + 64 * k + 32)), WORD(sc, 2 * k + 1));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
        }
        float dk = x->dk[sb];
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row) * dk), _mm256_cvtepi32_ps(isum), acc);
        off = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row + 2) * dk), k16_dot(x, sb, k4_mins16(mn8)), off);
    }
    return hsum8(_mm256_sub_ps(acc, off));
}
AVX2_TARGET static float qdot_q4_k_avx2(const uint8_t *row, const qx *x, int n) { return qdot_k45_avx2(row, x, n, 0); }
AVX2_TARGET static float qdot_q5_k_avx2(const uint8_t *row, const qx *x, int n) { return qdot_k45_avx2(row, x, n, 1); }

/* Q4_K and Q5_K at 512 bits: a super-block's 128 code bytes in two loads,
 * each holding four blocks of 32 (low nibbles blocks 4h and 4h + 2, high
 * ones 4h + 1 and 4h + 3), times x's k4p in the same order; Q5_K's fifth
 * bits (bit j of qh's byte i for value i of block j) added by byte masks
 * that test the 32 qh bytes, twice over, for each half's two blocks; each
 * block's 6-bit scale applied to the pair sums by a 16-bit dot product
 * (VNNI) into the super-block's int32 sums; the mins as the AVX2 kernel
 * takes them */
VNNI_TARGET static inline __attribute__((always_inline)) float k45_vnni_row(const uint8_t *row, const qx *x, int n,
                                                                            const int q5) {
    /* word w of a scale vector: block (lo) 4h + 2 (w / 16), (hi) 4h + 1 + 2 (w / 16) */
    static const int16_t sidx[4][32] = {
        {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2},
        {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3},
        {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6},
        {5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}};
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc = _mm512_setzero_ps();
    __m256 off = _mm256_setzero_ps();
    const __m512i fifth = _mm512_set1_epi8(0x10);
    const size_t bb = q5 ? 176 : 144, co = q5 ? 48 : 16; /* a super-block; its codes */
    for (int sb = 0; sb < n / 256; sb++, row += bb) {
        PREFETCH_AT(row, PF_Q4, 3);
        __m128i sc8, mn8;
        k4_scales_avx2(row + 4, &sc8, &mn8);
        __m512i sc = _mm512_castsi128_si512(_mm_cvtepu8_epi16(sc8));
        const int8_t *xk = x->k4p + (size_t)sb * 256;
        __m512i isum = _mm512_setzero_si512(), qh = q5 ? _mm512_broadcast_i64x4(LOADU(row + 16)) : isum;
        for (int h = 0; h < 2; h++) {
            __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(LOADU(row + co + 64 * h)), LOADU(row + co + 32 + 64 * h), 1);
            __m512i cl = _mm512_and_si512(v, m4), ch = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            if (q5) { /* blocks 4h and 4h + 2 in cl, 4h + 1 and 4h + 3 in ch */
                __m512i bl = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << 4 * h)), _mm256_set1_epi8((char)(1 << (4 * h + 2))), 1);
                cl = _mm512_mask_add_epi8(cl, _mm512_test_epi8_mask(qh, bl), cl, fifth);
                ch = _mm512_mask_add_epi8(ch, _mm512_test_epi8_mask(qh, _mm512_add_epi8(bl, bl)), ch, fifth);
            }
            __m512i lo = _mm512_maddubs_epi16(cl, _mm512_loadu_si512(xk + 128 * h));
            __m512i hi = _mm512_maddubs_epi16(ch, _mm512_loadu_si512(xk + 128 * h + 64));
            isum = _mm512_dpwssd_epi32(isum, lo, _mm512_permutexvar_epi16(_mm512_loadu_si512(sidx[2 * h]), sc));
            isum = _mm512_dpwssd_epi32(isum, hi, _mm512_permutexvar_epi16(_mm512_loadu_si512(sidx[2 * h + 1]), sc));
        }
        float dk = x->dk[sb];
        acc = _mm512_fmadd_ps(_mm512_set1_ps(f16at_hw(row) * dk), _mm512_cvtepi32_ps(isum), acc);
        off = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row + 2) * dk), k16_dot(x, sb, k4_mins16(mn8)), off);
    }
    return _mm512_reduce_add_ps(acc) - hsum8(off);
}
VNNI_ENTRIES_OF(q4_k, k45_vnni_row, 0)
VNNI_ENTRIES_OF(q5_k, k45_vnni_row, 1)

/* Q6_K's codes (0..63) of half h of super-block blk: v[k] holds values
 * 128h + 32k .. + 31 (4 low bits from ql, 2 high from qh) */
AVX2_TARGET static inline void q6k_codes(const uint8_t *blk, int h, __m256i v[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    const uint8_t *ql = blk + 64 * h, *qh = blk + 128 + 32 * h;
    __m256i l0 = LOADU(ql), l1 = LOADU(ql + 32), hb = LOADU(qh);
    v[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
    v[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
    v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
    v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
}

/* Q6_K: codes 0..63 multiplied unsigned, each 16's int8 scale applied by
 * madd, the super-block summed in int32 less 32 scale sum(x) of each 16 (so
 * the codes less 32, -32..31, exactly) */
AVX2_TARGET static float qdot_q6_k_avx2(const uint8_t *row, const qx *x, int n) {
    __m256 acc = _mm256_setzero_ps();
    for (int sb = 0; sb < n / 256; sb++, row += 210) {
        PREFETCH_AT(row, PF_Q4, 4);
        const int8_t *xk = x->k + (size_t)sb * 256;
        __m256i isum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(row + 192)));
        for (int h = 0; h < 2; h++) {
            __m256i v[4], hs = HALF_SCALES(sc16, h);
            q6k_codes(row, h, v);
            for (int k = 0; k < 4; k++) {
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(v[k], LOADU(xk + 128 * h + 32 * k)), PAIR_OF(hs, k));
                isum[k & 1] = _mm256_add_epi32(isum[k & 1], p);
            }
        }
        __m256i less = k16_offset(x, sb, sc16, 5);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row + 208) * x->dk[sb]),
                              _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_add_epi32(isum[0], isum[1]), less)), acc);
    }
    return hsum8(acc);
}

/* Q6_K at 512 bits: a half's 64 ql bytes in one load, its 32 qh bytes
 * widened to [qh, qh >> 2]; two registers of codes 0..63 (values 0-63 and
 * 64-127 of the half), times x unsigned, each 16's int8 scale applied to
 * the pair sums by a 16-bit dot product (VNNI); 32 scale sum(x) of each
 * 16 taken out once a super-block, as the AVX2 kernel does */
VNNI_TARGET static inline __attribute__((always_inline)) float q6_k_vnni_row(const uint8_t *row, const qx *x, int n) {
    /* word w of scale vector 2h + k: the scale of 16 number 8h + 4k + w / 8 */
    static const int16_t sidx[4][32] = {
        {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
        {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
        {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
        {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13,
         14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    __m512 acc = _mm512_setzero_ps();
    for (int sb = 0; sb < n / 256; sb++, row += 210) {
        PREFETCH_AT(row, PF_Q4, 4);
        const int8_t *xk = x->k + (size_t)sb * 256;
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(row + 192)));
        __m512i sc = _mm512_castsi256_si512(sc16), isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512i l = _mm512_inserti64x4(_mm512_castsi256_si512(LOADU(row + 64 * h)), LOADU(row + 32 + 64 * h), 1);
            __m256i q = LOADU(row + 128 + 32 * h);
            __m512i hb = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 2), 1);
            __m512i v01 = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_slli_epi16(_mm512_and_si512(hb, m2), 4));
            __m512i v23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hb, 4), m2), 4));
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(v01, _mm512_loadu_si512(xk + 128 * h)),
                                       _mm512_permutexvar_epi16(_mm512_loadu_si512(sidx[2 * h]), sc));
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(v23, _mm512_loadu_si512(xk + 128 * h + 64)),
                                       _mm512_permutexvar_epi16(_mm512_loadu_si512(sidx[2 * h + 1]), sc));
        }
        __m256i less = k16_offset(x, sb, sc16, 5);
        isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(less));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(f16at_hw(row + 208) * x->dk[sb]), _mm512_cvtepi32_ps(isum), acc);
    }
    return _mm512_reduce_add_ps(acc);
}
VNNI_ENTRIES(q6_k)

/* Q2_K and Q3_K: per half of 128 values, 32 code bytes hold four planes
 * (x's blocks of 32 4h .. 4h + 3); each 16's scale applied by madd, the
 * super-block summed in int32. Q2_K: 4-bit scales, dmin (sc >> 4) times
 * x's sums of 16 taken out in float; Q3_K: codes with their third bit
 * (0..7) multiplied unsigned, 4 scale sum(x) of each 16 taken out in int32
 * (so the codes less 4, -4..3, exactly), signed 6-bit scales */
AVX2_TARGET static float qdot_q2_k_avx2(const uint8_t *row, const qx *x, int n) {
    __m256 acc = _mm256_setzero_ps(), off = acc;
    const __m256i m2 = _mm256_set1_epi8(3);
    for (int sb = 0; sb < n / 256; sb++, row += 84) {
        PREFETCH_AT(row, PF_Q4, 2);
        const int8_t *xk = x->k + (size_t)sb * 256;
        __m256i sc16, mn16;
        k2_scales_avx2(row, &sc16, &mn16);
        __m256i isum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int h = 0; h < 2; h++) {
            __m256i v = LOADU(row + 16 + 32 * h), hs = HALF_SCALES(sc16, h);
            for (int s = 0; s < 4; s++, v = _mm256_srli_epi16(v, 2)) {
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_and_si256(v, m2), LOADU(xk + 128 * h + 32 * s)),
                                              PAIR_OF(hs, s));
                isum[s & 1] = _mm256_add_epi32(isum[s & 1], p);
            }
        }
        float dk = x->dk[sb];
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row + 80) * dk), _mm256_cvtepi32_ps(_mm256_add_epi32(isum[0], isum[1])), acc);
        off = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row + 82) * dk), k16_dot(x, sb, mn16), off);
    }
    return hsum8(_mm256_sub_ps(acc, off));
}

/* Q3_K's 16 scales (qs_k3_scales) in one register */
AVX2_TARGET static __m128i k3_scales_avx2(const uint8_t *p) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m128i lo8 = _mm_loadl_epi64((const __m128i *)(const void *)p);
    __m128i lo = _mm_and_si128(_mm_unpacklo_epi64(lo8, _mm_srli_epi16(lo8, 4)), m4);
    uint32_t hb;
    memcpy(&hb, p + 8, 4);
    __m128i h = _mm_set1_epi32((int)hb); /* byte j: p[8 + j % 4], to be shifted by 2 (j / 4) */
    __m128i hs = _mm_blend_epi32(h, _mm_srli_epi16(h, 2), 2);
    hs = _mm_blend_epi32(hs, _mm_srli_epi16(h, 4), 4);
    hs = _mm_blend_epi32(hs, _mm_srli_epi16(h, 6), 8);
    hs = _mm_and_si128(hs, _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hs, 4)), _mm_set1_epi8(32));
}

AVX2_TARGET static float qdot_q3_k_avx2(const uint8_t *row, const qx *x, int n) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (int sb = 0; sb < n / 256; sb++, row += 110) {
        PREFETCH_AT(row, PF_Q4, 2);
        const int8_t *xk = x->k + (size_t)sb * 256;
        __m256i sc16 = _mm256_cvtepi8_epi16(k3_scales_avx2(row + 96));
        __m256i hm = LOADU(row), isum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int h = 0; h < 2; h++) {
            __m256i v = LOADU(row + 32 + 32 * h), hs = HALF_SCALES(sc16, h);
            for (int s = 0; s < 4; s++, v = _mm256_srli_epi16(v, 2), hm = _mm256_srli_epi16(hm, 1)) {
                __m256i u = _mm256_or_si256(_mm256_and_si256(v, m2), _mm256_slli_epi16(_mm256_and_si256(hm, one), 2));
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, LOADU(xk + 128 * h + 32 * s)), PAIR_OF(hs, s));
                isum[s & 1] = _mm256_add_epi32(isum[s & 1], p);
            }
        }
        /* the codes were taken 0..7: less 4 scale sum(x) of each 16, exactly in int32 */
        __m256i less = k16_offset(x, sb, sc16, 2);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row + 108) * x->dk[sb]),
                              _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_add_epi32(isum[0], isum[1]), less)), acc);
    }
    return hsum8(acc);
}

/* Q2_K and Q3_K at 512 bits: both halves' 32 code bytes in one register,
 * so plane s holds x's blocks s and 4 + s (k2p's order) for one maddubs;
 * each 16's scale applied by a 16-bit dot product (VNNI) into the
 * super-block's int32 sums; Q3_K's third bits added by byte masks testing
 * hmask's bits s and 4 + s. Q2_K's mins and Q3_K's 4 scale sum(x) as the
 * AVX2 kernels take them out, in float at 256 bits. */
VNNI_TARGET static inline __attribute__((always_inline)) float k23_vnni_row(const uint8_t *row, const qx *x, int n,
                                                                            const int q3) {
    /* word w of plane s's scales: scale 8 (w / 16) + 2 s + w / 8 % 2 */
    static const int16_t sbase[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                      8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9};
    const __m512i m2 = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4), base = _mm512_loadu_si512(sbase);
    const size_t bb = q3 ? 110 : 84, co = q3 ? 32 : 16; /* a super-block; its codes */
    __m512 acc = _mm512_setzero_ps();
    __m256 off = _mm256_setzero_ps();
    for (int sb = 0; sb < n / 256; sb++, row += bb) {
        PREFETCH_AT(row, PF_Q4, 2);
        const int8_t *xk = x->k2p + (size_t)sb * 256;
        __m256i sc16, mn16;
        if (q3) sc16 = _mm256_cvtepi8_epi16(k3_scales_avx2(row + 96));
        else k2_scales_avx2(row, &sc16, &mn16);
        __m512i sc = _mm512_castsi256_si512(sc16), v = _mm512_loadu_si512(row + co), isum = _mm512_setzero_si512();
        __m512i hm = q3 ? _mm512_broadcast_i64x4(LOADU(row)) : isum;
        for (int s = 0; s < 4; s++, v = _mm512_srli_epi16(v, 2)) {
            __m512i c = _mm512_and_si512(v, m2);
            if (q3) {
                __m512i bl = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << s)), _mm256_set1_epi8((char)(1 << (4 + s))), 1);
                c = _mm512_mask_add_epi8(c, _mm512_test_epi8_mask(hm, bl), c, four);
            }
            __m512i p = _mm512_maddubs_epi16(c, _mm512_loadu_si512(xk + 64 * s));
            isum = _mm512_dpwssd_epi32(isum, p, _mm512_permutexvar_epi16(_mm512_add_epi16(base, _mm512_set1_epi16((short)(2 * s))), sc));
        }
        float dk = x->dk[sb], dd = f16at_hw(row + (q3 ? 108 : 80)) * dk;
        acc = _mm512_fmadd_ps(_mm512_set1_ps(dd), _mm512_cvtepi32_ps(isum), acc);
        if (q3) /* the codes were taken 0..7: less 4 scale sum(x) of each 16 */
            off = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(k16_offset(x, sb, sc16, 2)), off);
        else
            off = _mm256_fmadd_ps(_mm256_set1_ps(f16at_hw(row + 82) * dk), k16_dot(x, sb, mn16), off);
    }
    return _mm512_reduce_add_ps(acc) - hsum8(off);
}
VNNI_ENTRIES_OF(q2_k, k23_vnni_row, 0)
VNNI_ENTRIES_OF(q3_k, k23_vnni_row, 1)

/* ---- fast row decoders (panels for sgemm) ---- */

AVX2_TARGET static void dec_f16_avx2(const uint8_t *src, float *dst, size_t n) {
    const uint16_t *w = (const uint16_t *)(const void *)src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))));
    for (; i < n; i++) dst[i] = fp1(QS_WT_F16, src, (int)i);
}

AVX2_TARGET static void dec_bf16_avx2(const uint8_t *src, float *dst, size_t n) {
    const uint16_t *w = (const uint16_t *)(const void *)src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16x8(w + i));
    for (; i < n; i++) dst[i] = fp1(QS_WT_BF16, src, (int)i);
}

AVX2_TARGET static void dec_q8_0_avx2(const uint8_t *src, float *dst, size_t n) {
    for (size_t b = 0; b < n / 32; b++, src += 34, dst += 32) {
        __m256 d = _mm256_set1_ps(f16at_hw(src));
        const int8_t *q = (const int8_t *)(src + 2);
        for (int k = 0; k < 4; k++) _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(i8x8(q + 8 * k), d));
    }
}

/* Q4_0 and Q4_1 blocks (low nibbles are values 0-15, high 16-31), bit for
 * bit as ggml decodes them: Q4_0 (q - 8) d, one rounding as the fma's
 * q d + (-8 d); Q4_1 q d + m, two roundings */
AVX2_TARGET static __m256 q4val(__m128i q, __m256 d, __m256 m, int q41) {
    __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q));
    return q41 ? _mm256_add_ps(_mm256_mul_ps(f, d), m) : _mm256_fmadd_ps(f, d, m);
}

AVX2_TARGET static void dec_q4_avx2(const uint8_t *src, float *dst, size_t n, int q41) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    size_t bb = q41 ? 20 : 18;
    for (size_t b = 0; b < n / 32; b++, src += bb, dst += 32) {
        __m256 d = _mm256_set1_ps(f16at_hw(src));
        __m256 m = q41 ? _mm256_set1_ps(f16at_hw(src + 2))
                       : _mm256_mul_ps(d, _mm256_set1_ps(-8.0f));
        __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)(src + bb - 16));
        __m128i lo = _mm_and_si128(raw, m4), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
        _mm256_storeu_ps(dst, q4val(lo, d, m, q41));
        _mm256_storeu_ps(dst + 8, q4val(_mm_srli_si128(lo, 8), d, m, q41));
        _mm256_storeu_ps(dst + 16, q4val(hi, d, m, q41));
        _mm256_storeu_ps(dst + 24, q4val(_mm_srli_si128(hi, 8), d, m, q41));
    }
}
AVX2_TARGET static void dec_q4_0_avx2(const uint8_t *src, float *dst, size_t n) { dec_q4_avx2(src, dst, n, 0); }
AVX2_TARGET static void dec_q4_1_avx2(const uint8_t *src, float *dst, size_t n) { dec_q4_avx2(src, dst, n, 1); }

/* Q4_K and Q5_K super-blocks, as ggml decodes them: (d sc) q - dmin m,
 * a product and a difference */
AVX2_TARGET static void dec_k45_avx2(const uint8_t *src, float *dst, size_t n, int q5) {
    size_t bb = q5 ? 176 : 144;
    for (size_t sb = 0; sb < n / 256; sb++, src += bb) {
        float d = f16at_hw(src), dmin = f16at_hw(src + 2);
        __m256i hb = q5 ? LOADU(src + 16) : _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            __m256i c[2];
            k45_codes(src, k, q5, &hb, c);
            for (int j = 0; j < 2; j++, dst += 32) {
                int sc, m;
                qs_k4_scale_min(2 * k + j, src + 4, &sc, &m);
                __m256 dl = _mm256_set1_ps(d * (float)sc), ml = _mm256_set1_ps(dmin * (float)m);
                __m128i lo = _mm256_castsi256_si128(c[j]), hi = _mm256_extracti128_si256(c[j], 1);
                __m128i q8[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
                for (int i = 0; i < 4; i++)
                    _mm256_storeu_ps(dst + 8 * i, _mm256_sub_ps(_mm256_mul_ps(dl, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q8[i]))), ml));
            }
        }
    }
}
AVX2_TARGET static void dec_q4_k_avx2(const uint8_t *src, float *dst, size_t n) { dec_k45_avx2(src, dst, n, 0); }
AVX2_TARGET static void dec_q5_k_avx2(const uint8_t *src, float *dst, size_t n) { dec_k45_avx2(src, dst, n, 1); }

/* Q6_K super-blocks, as ggml decodes them: (d sc) (q - 32) */
AVX2_TARGET static void dec_q6_k_avx2(const uint8_t *src, float *dst, size_t n) {
    const __m256i c32 = _mm256_set1_epi8(32);
    for (size_t sb = 0; sb < n / 256; sb++, src += 210) {
        float d = f16at_hw(src + 208);
        const int8_t *sc = (const int8_t *)(src + 192);
        for (int h = 0; h < 2; h++, dst += 128) {
            __m256i v[4];
            q6k_codes(src, h, v);
            for (int k = 0; k < 4; k++) {
                __m256i w = _mm256_sub_epi8(v[k], c32);
                __m128i lo = _mm256_castsi256_si128(w), hi = _mm256_extracti128_si256(w, 1);
                __m256 s0 = _mm256_set1_ps(d * (float)sc[8 * h + 2 * k]), s1 = _mm256_set1_ps(d * (float)sc[8 * h + 2 * k + 1]);
                float *o = dst + 32 * k;
                _mm256_storeu_ps(o, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
                _mm256_storeu_ps(o + 8, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
                _mm256_storeu_ps(o + 16, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
                _mm256_storeu_ps(o + 24, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
            }
        }
    }
}

typedef void (*dec_fn)(const uint8_t *src, float *dst, size_t n);

static dec_fn fast_decoder(uint32_t type, int n_in);

/* rows [row0, row0 + rows) to fp32, through the fast decoder when there is one */
static void decode_rows(uint32_t type, const void *w, int n_in, int row0, int rows, float *dst) {
    dec_fn f = fast_decoder(type, n_in);
    if (!f) {
        qs_wrows_f32(type, w, n_in, row0, rows, dst);
        return;
    }
    size_t rb = qs_wtype_row_bytes(type, n_in);
    f((const uint8_t *)w + rb * (size_t)row0, dst, (size_t)rows * n_in);
}

typedef float (*dot_fn)(const uint8_t *row, const float *x, int n);

/* F16C from CPUID leaf 1 (ECX bit 29): clang before 15 does not know the
 * name "f16c" in __builtin_cpu_supports. */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
}

/* 0: plain C only; 1: AVX2, FMA and F16C; 2: AVX-512F as well (the F32/F16/BF16 rows' dots at its width);
 * 3: and AVX-512BW and VNNI (the 8-bit kernels at 512 bits); found once (CPUID, which a virtual machine
 * may trap, is not asked again for every tile) */
static int cpu_level(void) {
    static int level = -1;
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) {
        l = !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c()) ? 0
            : !__builtin_cpu_supports("avx512f")                                              ? 1
            : __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni")      ? 3
                                                                                              : 2;
        __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    }
    return l;
}

static int fast_available(void) { return cpu_level() < 2 ? cpu_level() : 2; }

int qs_wmat_fast_available(void) { return fast_available() > 0; }

int qs_wmat_vnni_available(void) { return cpu_level() == 3; }

int qs_wmat_set_kernel(const char *name) {
    if (!strcmp(name, "ref")) use_fast = 0;
    else if (!strcmp(name, "avx2") || !strcmp(name, "avx512")) {
        int want = name[3] == '5' ? 2 : 1;
        if (fast_available() < want) return 0;
        use_fast = want;
    } else if (!strcmp(name, "auto")) use_fast = fast_available();
    else return 0;
    return 1;
}

const char *qs_wmat_kernel(void) {
    if (use_fast < 0) use_fast = fast_available();
    return use_fast == 2 ? "avx512" : use_fast ? "avx2" : "ref";
}

static dot_fn fused(uint32_t type, int n_in) {
    if (use_fast < 0) use_fast = fast_available();
    if (!use_fast) return NULL;
    switch (type) {
    case QS_WT_F32: return use_fast == 2 ? dot_f32_avx512 : dot_f32_avx2;
    case QS_WT_F16: return use_fast == 2 ? dot_f16_avx512 : dot_f16_avx2;
    case QS_WT_BF16: return use_fast == 2 ? dot_bf16_avx512 : dot_bf16_avx2;
    case QS_WT_Q8_0: return n_in % 32 ? NULL : dot_q8_0_avx2;
    case QS_WT_Q4_0: return n_in % 32 ? NULL : dot_q4_0_avx2;
    }
    return NULL;
}

static int act_q8 = -1; /* -1: not decided (QSCOPE_DECODE_ACT, else q8) */

int qs_wmat_set_act(const char *name) {
    if (!strcmp(name, "q8")) act_q8 = 1;
    else if (!strcmp(name, "f32")) act_q8 = 0;
    else return 0;
    return 1;
}

const char *qs_wmat_act(void) {
    if (act_q8 < 0) {
        const char *e = getenv("QSCOPE_DECODE_ACT");
        act_q8 = !(e && !strcmp(e, "f32"));
    }
    return act_q8 ? "q8" : "f32";
}

static int prefill_q8 = -1; /* -1: not decided (QSCOPE_PREFILL_ACT, else f32) */

int qs_wmat_set_prefill_act(const char *name) {
    if (!strcmp(name, "q8")) prefill_q8 = 1;
    else if (!strcmp(name, "f32")) prefill_q8 = 0;
    else return 0;
    return 1;
}

const char *qs_wmat_prefill_act(void) {
    if (prefill_q8 < 0) {
        const char *e = getenv("QSCOPE_PREFILL_ACT");
        prefill_q8 = e && !strcmp(e, "q8");
    }
    return prefill_q8 ? "q8" : "f32";
}

/* the 8-bit-activation kernel of a type (fast or reference): a dot (NULL
 * for types multiplied by fp32 activations), a range of rows where the
 * kernel has one, and what of qx it reads */
typedef struct {
    qdot_fn dot;
    qrows_fn rows;
    unsigned need;
} qkern;

static qkern qkern_of(uint32_t type, int n_in, int fast) {
    qkern none = {0};
    if (n_in % 32 || (is_kquant(type) && n_in % 256)) return none;
    if (use_fast < 0) use_fast = fast_available();
    fast = fast && use_fast;
    int v = fast && vnni_on();
    switch (type) {
    case QS_WT_Q8_0: return v ? (qkern){qdot_q8_0_vnni, qrows_q8_0_vnni, QX_O8} : (qkern){.dot = fast ? qdot_q8_0_avx2 : qdot_q8_0_ref};
    case QS_WT_Q4_0:
        return v ? (qkern){qdot_q4_0_vnni, qrows_q4_0_vnni, QX_A4} : fast ? (qkern){.dot = qdot_q4_0_avx2, .need = QX_A} : (qkern){.dot = qdot_q4_0_ref};
    case QS_WT_Q4_K:
        return v ? (qkern){qdot_q4_k_vnni, qrows_q4_k_vnni, QX_K | QX_K4P} : (qkern){.dot = fast ? qdot_q4_k_avx2 : qdot_q4_k_ref, .need = QX_K};
    case QS_WT_Q6_K: return v ? (qkern){qdot_q6_k_vnni, qrows_q6_k_vnni, QX_K} : (qkern){.dot = fast ? qdot_q6_k_avx2 : qdot_q6_k_ref, .need = QX_K};
    case QS_WT_Q4_1: return v ? (qkern){qdot_q4_1_vnni, qrows_q4_1_vnni, QX_A4} : (qkern){.dot = fast ? qdot_q4_1_avx2 : qdot_q4_1_ref};
    case QS_WT_Q5_0: return v ? (qkern){qdot_q5_0_vnni, qrows_q5_0_vnni, QX_A4} : (qkern){.dot = fast ? qdot_q5_0_avx2 : qdot_q5_0_ref};
    case QS_WT_Q5_1: return v ? (qkern){qdot_q5_1_vnni, qrows_q5_1_vnni, QX_A4} : (qkern){.dot = fast ? qdot_q5_1_avx2 : qdot_q5_1_ref};
    case QS_WT_IQ4_NL:
        return v ? (qkern){qdot_iq4_nl_vnni, qrows_iq4_nl_vnni, QX_A4} : (qkern){.dot = fast ? qdot_iq4_nl_avx2 : qdot_iq4_nl_ref};
    case QS_WT_Q2_K:
        return v ? (qkern){qdot_q2_k_vnni, qrows_q2_k_vnni, QX_K | QX_K2P} : (qkern){.dot = fast ? qdot_q2_k_avx2 : qdot_q2_k_ref, .need = QX_K};
    case QS_WT_Q3_K:
        return v ? (qkern){qdot_q3_k_vnni, qrows_q3_k_vnni, QX_K | QX_K2P} : (qkern){.dot = fast ? qdot_q3_k_avx2 : qdot_q3_k_ref, .need = QX_K};
    case QS_WT_Q5_K:
        return v ? (qkern){qdot_q5_k_vnni, qrows_q5_k_vnni, QX_K | QX_K4P} : (qkern){.dot = fast ? qdot_q5_k_avx2 : qdot_q5_k_ref, .need = QX_K};
    }
    return none;
}

static dec_fn fast_decoder(uint32_t type, int n_in) {
    if (use_fast < 0) use_fast = fast_available();
    if (!use_fast) return NULL;
    switch (type) {
    case QS_WT_F16: return dec_f16_avx2;
    case QS_WT_BF16: return dec_bf16_avx2;
    case QS_WT_Q8_0: return n_in % 32 ? NULL : dec_q8_0_avx2;
    case QS_WT_Q4_0: return n_in % 32 ? NULL : dec_q4_0_avx2;
    case QS_WT_Q4_1: return n_in % 32 ? NULL : dec_q4_1_avx2;
    case QS_WT_Q4_K: return n_in % 256 ? NULL : dec_q4_k_avx2;
    case QS_WT_Q5_K: return n_in % 256 ? NULL : dec_q5_k_avx2;
    case QS_WT_Q6_K: return n_in % 256 ? NULL : dec_q6_k_avx2;
    }
    return NULL;
}

/* ---- few rows: chunks of weight rows on the pool ---- */

typedef struct {
    const float *x;
    int n, n_out, n_in;
    uint32_t type;
    const uint8_t *w;
    size_t rb;
    const float *b;
    float *y;
    int chunk; /* rows a task */
    dot_fn dot;
    float **tmp; /* per thread, n_in floats (reference path) */
    qdot_fn qdot; /* 8-bit activations: x's rows so rounded */
    qrows_fn qrows; /* the same over a range of rows, for one row of x (NULL: by qdot) */
    const qx *xq;
} gemv_job;

static void gemv_task(void *ud, int task, int thread) {
    const gemv_job *j = ud;
    int r0 = task * j->chunk, r1 = r0 + j->chunk < j->n_out ? r0 + j->chunk : j->n_out;
    if (j->qrows && j->n == 1) {
        j->qrows(j->w + (size_t)r0 * j->rb, j->rb, r1 - r0, j->xq, j->n_in, j->y + r0);
        for (int r = r0; j->b && r < r1; r++) j->y[r] += j->b[r];
        return;
    }
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = j->w + (size_t)r * j->rb;
        float bias = j->b ? j->b[r] : 0.0f;
        if (j->qdot) {
            for (int i = 0; i < j->n; i++)
                j->y[(size_t)i * j->n_out + r] = j->qdot(row, &j->xq[i], j->n_in) + bias;
        } else if (j->dot) {
            for (int i = 0; i < j->n; i++) j->y[(size_t)i * j->n_out + r] = j->dot(row, j->x + (size_t)i * j->n_in, j->n_in) + bias;
        } else {
            float *t = j->tmp[thread];
            qs_wrows_f32(j->type, row, j->n_in, 0, 1, t);
            for (int i = 0; i < j->n; i++) j->y[(size_t)i * j->n_out + r] = qs_ops_dot(t, j->x + (size_t)i * j->n_in, (size_t)j->n_in) + bias;
        }
    }
}

float qs_wdot_ref(uint32_t type, const void *row, const float *x, int n_in) {
    float *tmp = malloc((size_t)n_in * sizeof *tmp + 1);
    if (!tmp) return 0;
    float s = dot_ref(type, row, x, n_in, tmp);
    free(tmp);
    return s;
}

float qs_wdot(uint32_t type, const void *row, const float *x, int n_in) {
    dot_fn f = fused(type, n_in);
    return f ? f(row, x, n_in) : qs_wdot_ref(type, row, x, n_in);
}

float qs_wdot_q8(uint32_t type, const void *row, const float *x, int n_in, int ref) {
    qkern f = qkern_of(type, n_in, !ref);
    if (!f.dot) return NAN;
    void *buf = malloc(qx_bytes(n_in));
    if (!buf) return NAN;
    qx q = qx_make(x, n_in, buf, f.need);
    float r = f.dot(row, &q, n_in);
    free(buf);
    return r;
}

/* several matrices' GEMVs on the same x in one pool run: task t is chunk
 * t - off[m] of matrix m */
typedef struct {
    gemv_job *jobs;
    const int *off;
    int k;
} multi_job;

static void multi_task(void *ud, int task, int thread) {
    const multi_job *mj = ud;
    int m = 0;
    while (m + 1 < mj->k && task >= mj->off[m + 1]) m++;
    gemv_task(&mj->jobs[m], task - mj->off[m], thread);
}

/* Prefill: each task decodes a tile of weight rows into its thread's panel and multiplies x by it
 * in one single-threaded sgemm, while the rows are still in cache; no thread waits for another
 * between tiles, and OpenBLAS's own threads (which would spin beside the pool's) are held to one. */
typedef struct {
    const float *x;
    int n, n_in, n_out, rows;
    uint32_t type;
    const void *w;
    float *panels; /* rows x n_in floats a thread */
    float *y;
    int fused; /* the panel multiplied by the AVX-512 kernel (qs_wf_tile), not sgemm */
} tile_job;

static void tile_task(void *ud, int task, int thread) {
    const tile_job *j = ud;
    int r0 = task * j->rows, nr = j->n_out - r0 < j->rows ? j->n_out - r0 : j->rows;
    const float *panel;
    if (j->type == QS_WT_F32) { /* nothing to decode (and no panels) */
        panel = (const float *)j->w + (size_t)r0 * j->n_in;
    } else {
        float *own = j->panels + (size_t)thread * j->rows * j->n_in;
        decode_rows(j->type, j->w, j->n_in, r0, nr, own);
        panel = own;
    }
    if (j->fused) qs_wf_tile(j->x, j->n, panel, nr, j->n_in, j->y + r0, (size_t)j->n_out);
    else qs_blas_gemm_nt(j->n, nr, j->n_in, 1.0f, j->x, j->n_in, panel, j->n_in, 0.0f, j->y + r0, j->n_out);
}

/* prefill by the fused AVX-512 kernel (F32/F16/BF16 rows, or panels decoded to fp32) while the "avx512" kernels are
 * in use: not under qs_wmat_set_kernel("avx2") or ("ref") */
static int fused_on = -1; /* -1: QSCOPE_FUSED_PREFILL not read yet */

static int fused_setting(void) {
    if (fused_on < 0) {
        const char *e = getenv("QSCOPE_FUSED_PREFILL");
        fused_on = !(e && !strcmp(e, "0"));
    }
    return fused_on;
}

int qs_wmat_set_fused_prefill(int on) {
    int was = fused_setting();
    fused_on = on != 0;
    return was;
}

static int fused_prefill(uint32_t type, int n_in) {
    if (use_fast < 0) use_fast = fast_available();
    return fused_setting() && use_fast == 2 && qs_wf_supported(type, n_in); /* 2: AVX-512 runs and its kernels are in use */
}

static qs_status panels(const float *x, int n, uint32_t type, const void *w, const float *b, int n_out, int n_in,
                        float *y) {
    int threads = qs_pool_threads(), rows, fused = fused_prefill(QS_WT_F32, n_in);
    if (fused) { /* small tiles: the kernel's slices of them stay in L2 */
        rows = qs_wf_tile_rows();
    } else if (threads == 1) { /* one thread: the largest panel, so that sgemm packs x the fewest times */
        rows = (int)(PANEL_BYTES / ((size_t)n_in * sizeof(float)));
        rows = rows < 16 ? 16 : rows;
    } else { /* at most TILE_ROWS, in a multiple of threads tiles, so that no thread waits idle at the end */
        int tiles = (n_out + TILE_ROWS - 1) / TILE_ROWS;
        tiles = (tiles + threads - 1) / threads * threads;
        rows = ((n_out + tiles - 1) / tiles + 15) / 16 * 16;
    }
    rows = rows > n_out ? n_out : rows;
    /* the panels: the calling thread's workspace, kept from call to call (a buffer this size, freshly mapped, would
     * be faulted in page by page at every call) */
    float *pan = type == QS_WT_F32 ? NULL : qs_scratch(1, (size_t)threads * rows * n_in * sizeof *pan);
    if (!pan && type != QS_WT_F32) return qs_fail(QS_ENOMEM, "out of memory for %d weight panels of %d x %d", threads, rows, n_in);
    tile_job tj = {x, n, n_in, n_out, rows, type, w, pan, y, fused};
    qs_pool_run_blas1((n_out + rows - 1) / rows, tile_task, &tj);
    if (b)
        for (int i = 0; i < n; i++) qs_ops_add(y + (size_t)i * n_out, b, (size_t)n_out);
    return QS_OK;
}

qs_status qs_wlinear_multi(const float *x, int n, int k, const qs_wmat *m, int n_in) {
    if (k < 1 || k > QS_WMAT_MULTI) return qs_fail(QS_EARG, "%d matrices at once (1 to %d)", k, QS_WMAT_MULTI);
    gemv_job jobs[QS_WMAT_MULTI];
    int threads = qs_pool_threads();
    int off[QS_WMAT_MULTI + 1] = {0}, q8 = !strcmp(qs_wmat_act(), "q8"), any_q = 0, any_ref = 0;
    unsigned need = 0; /* of the x rows, what the kernels read */
    int q8_prefill = n >= GEMM_MIN_ROWS && !strcmp(qs_wmat_prefill_act(), "q8");
    for (int i = 0; i < k; i++) {
        size_t rb = qs_wtype_row_bytes(m[i].type, n_in);
        if (!rb) return qs_fail(QS_EARG, "weights of type %u cannot hold rows of %d", m[i].type, n_in);
        if (n >= GEMM_MIN_ROWS) { /* panels of decoded rows through sgemm, one matrix after another */
            qs_status st = q8_prefill && qs_wq8_supported(m[i].type, n_in)
                               ? qs_wq8_gemm(x, n, m[i].type, m[i].w, m[i].b, m[i].n_out, n_in, m[i].y, NULL)
                           : fused_prefill(m[i].type, n_in)
                               ? qs_wf_gemm(x, n, m[i].type, m[i].w, m[i].b, m[i].n_out, n_in, m[i].y, NULL)
                               : panels(x, n, m[i].type, m[i].w, m[i].b, m[i].n_out, n_in, m[i].y);
            if (st) return st;
            continue;
        }
        if (n == 1 && m[i].type == QS_WT_F32) { /* OpenBLAS's sgemv reads fp32 rows the fastest */
            qs_blas_linear(x, 1, m[i].w, m[i].b, m[i].n_out, n_in, m[i].y);
            jobs[i] = (gemv_job){.n_out = 0};
            off[i + 1] = off[i];
            continue;
        }
        /* a task reads up to CHUNK_BYTES of weights, in a multiple of threads tasks of equal rows: each thread's
         * stream from memory runs on that long (32-row tasks, 36 KB of Q4_0, made two-thread decode of TinyLlama
         * Q4_0 1.3x slower on a Zen 5; 128 KB to 1 MB measured, 512 KB the best there for Q4_0, Q8_0 and F16) */
        size_t bytes = rb * (size_t)m[i].n_out;
        int tasks = (int)((bytes + CHUNK_BYTES - 1) / CHUNK_BYTES);
        tasks = (tasks + threads - 1) / threads * threads;
        int chunk = (m[i].n_out + tasks - 1) / tasks;
        jobs[i] = (gemv_job){.x = x, .n = n, .n_out = m[i].n_out, .n_in = n_in, .type = m[i].type, .w = m[i].w, .rb = rb,
                             .b = m[i].b, .y = m[i].y, .chunk = chunk, .dot = fused(m[i].type, n_in)};
        if (q8) {
            qkern qk = qkern_of(m[i].type, n_in, 1);
            jobs[i].qdot = qk.dot, jobs[i].qrows = qk.rows, need |= qk.need;
        }
        any_q |= jobs[i].qdot != NULL;
        any_ref |= !jobs[i].qdot && !jobs[i].dot;
        off[i + 1] = off[i] + (m[i].n_out + chunk - 1) / chunk;
    }
    if (n >= GEMM_MIN_ROWS) return QS_OK;
    size_t xb = any_q ? qx_bytes(n_in) : 0;
    char *buf = any_q ? malloc(xb * n + 1) : NULL;
    qx *xs = any_q ? malloc((size_t)n * sizeof *xs) : NULL;
    float *block = any_ref ? malloc((size_t)threads * n_in * sizeof(float) + 1) : NULL;
    float **tmp = any_ref ? malloc((size_t)threads * sizeof *tmp) : NULL;
    if ((any_q && (!buf || !xs)) || (any_ref && (!block || !tmp))) {
        free(buf), free(xs), free(block), free(tmp);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    for (int i = 0; any_q && i < n; i++) xs[i] = qx_make(x + (size_t)i * n_in, n_in, buf + xb * i, need); /* once, for all */
    for (int t = 0; any_ref && t < threads; t++) tmp[t] = block + (size_t)t * n_in; /* one decoded row per thread */
    for (int i = 0; i < k; i++) jobs[i].xq = xs, jobs[i].tmp = tmp;
    multi_job mj = {jobs, off, k};
    qs_pool_run(off[k], multi_task, &mj);
    free(buf), free(xs), free(block), free(tmp);
    return QS_OK;
}

qs_status qs_wlinear(const float *x, int n, uint32_t type, const void *w, const float *b, int n_out, int n_in,
                     float *y) {
    qs_wmat m = {type, w, b, n_out, y};
    return qs_wlinear_multi(x, n, 1, &m, n_in);
}

/* ---- the read rate decode is held against ---- */

enum { READ_CHUNK = 1 << 20 };

typedef struct {
    const uint8_t *p;
    size_t n;
    uint64_t sink[QS_POOL_MAX];
} read_job;

AVX2_TARGET static uint64_t read_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        a0 = _mm256_add_epi64(a0, LOADU(p + i));
        a1 = _mm256_add_epi64(a1, LOADU(p + i + 32));
        a2 = _mm256_add_epi64(a2, LOADU(p + i + 64));
        a3 = _mm256_add_epi64(a3, LOADU(p + i + 96));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)(void *)v, s);
    for (; i < n; i++) v[0] += p[i];
    return v[0] + v[1] + v[2] + v[3];
}

static uint64_t read_ref(const uint8_t *p, size_t n) {
    uint64_t s[4] = {0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) {
            uint64_t v;
            memcpy(&v, p + i + 8 * k, 8);
            s[k] += v;
        }
    for (; i < n; i++) s[0] += p[i];
    return s[0] + s[1] + s[2] + s[3];
}

static void read_task(void *ud, int task, int thread) {
    read_job *j = ud;
    size_t off = (size_t)task * READ_CHUNK, len = j->n - off < READ_CHUNK ? j->n - off : READ_CHUNK;
    if (use_fast < 0) use_fast = fast_available();
    j->sink[thread] += use_fast ? read_avx2(j->p + off, len) : read_ref(j->p + off, len);
}

double qs_read_rate(const void *p, size_t n, int reps) {
    read_job j = {p, n, {0}};
    double best = 0;
    for (int r = 0; r < (reps < 1 ? 1 : reps); r++) {
        double t0 = qs_io_clock();
        qs_pool_run((int)((n + READ_CHUNK - 1) / READ_CHUNK), read_task, &j);
        double t = qs_io_clock() - t0;
        if (t > 0 && n / t > best) best = (double)n / t;
    }
    volatile uint64_t keep = 0;
    for (int t = 0; t < QS_POOL_MAX; t++) keep += j.sink[t];
    (void)keep;
    return best;
}
