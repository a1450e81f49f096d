/* wq8gemm.c — prefill on 8-bit activations: many rows of x times a matrix
 * of ggml's (code, scale) blocks of 32 (Q8_0, Q4_0, Q5_0, IQ4_NL) or of
 * Q4_K and Q5_K (sub-blocks of 32 with a scale and an offset each) and
 * Q6_K (blocks of 32 with a scale each half), as llama.cpp multiplies
 * them.
 *
 * x is rounded once, as decode's 8-bit kernels round it (qs_wq8_round:
 * blocks of 32, scale max|x| / 127); each pool task decodes a tile of
 * weight rows into int8 codes and block scales, and multiplies every row
 * of x by it: each block's products summed exactly in integers, scaled by
 * the two blocks' scales in float. So y[i][r] is decode's qs_wdot_q8 of
 * the same row and x row, summed in another order.
 *
 * Kernels: AVX-512 VNNI (codes laid out in windows of 16 blocks, a block
 * to each 32-bit lane, so that a window's sums are scaled in float once;
 * the weight codes made unsigned by adding 128, taken out by starting each
 * sum at -128 times the activation block's sum), AVX2 (one block a
 * register, the sign of the weights moved onto the activations so that the
 * unsigned-times-signed byte product applies), and the plain C reference
 * they are tested against. A micro-tile is RN rows of x by RM rows of
 * weights; x and the tile are padded with zero rows and zero blocks so
 * that every micro-tile (and for VNNI every window) is whole. A task's
 * products over the K slices are summed in a tile of its own and written
 * to y once. The buffers are the calling thread's workspace (qs_scratch),
 * kept from call to call. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "kern/kern.h"

enum {
    RN = 4,    /* x rows a micro-tile */
    RM = 4,    /* weight rows a micro-tile */
    TROWS = 64, /* weight rows a task (a multiple of RM) */
    KCP = 32,  /* block pairs a K slice (2048 values): the micro-tile's x rows stay in L1 */
    MCX = 64,  /* x rows a slice: their codes for a K slice stay in L2 */
};

enum { WQ8_REF, WQ8_AVX2, WQ8_VNNI };

/* the operands of one micro-tile: codes (ld bytes a row), block scales (ldd
 * a row), and for x the VNNI start values (ldi a row); block pairs
 * [p0, p1) */
typedef struct {
    const int8_t *w, *a;
    const float *wd, *ad;
    const int32_t *init;
    size_t ld, ldd, ldi;
    int p0, p1;
    const float *wm, *as; /* offsets: the weights' per block (ldd a row), x's scaled block sums; NULL: none */
    int half; /* a scale for each half of a block (Q6_K): the per-block floats (wd, ad) and the VNNI start
               * values laid out a window of 16 blocks at a time, the 16 first halves' then the 16 second's */
} utile;

/* where the scale (and the start value) of half h of block b is: half is 0 or 1 (utile's) */
static inline size_t at_half(int half, int b, int h) { return half ? (size_t)(32 * (b / 16) + 16 * h + b % 16) : (size_t)b; }

typedef void (*ukern_fn)(const utile *u, float out[RN][RM]);

static void uk_ref(const utile *u, float out[RN][RM]) {
    for (int i = 0; i < RN; i++)
        for (int r = 0; r < RM; r++) {
            const int8_t *a = u->a + u->ld * (size_t)i, *w = u->w + u->ld * (size_t)r;
            const float *ad = u->ad + u->ldd * (size_t)i, *wd = u->wd + u->ldd * (size_t)r;
            float acc = 0;
            for (int b = 2 * u->p0; b < 2 * u->p1; b++) {
                for (int h = 0; h <= u->half; h++) {
                    int isum = 0, k0 = u->half ? 16 * h : 0, k1 = u->half ? k0 + 16 : 32;
                    for (int k = k0; k < k1; k++) isum += w[32 * b + k] * a[32 * b + k];
                    acc += wd[at_half(u->half, b, h)] * ad[at_half(u->half, b, h)] * (float)isum;
                }
                if (u->wm) acc -= u->wm[u->ldd * (size_t)r + (size_t)b] * u->as[u->ldd * (size_t)i + (size_t)b];
            }
            out[i][r] = acc;
        }
}

#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define VNNI_TARGET __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vnni")))

AVX2_TARGET static float hsum256(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

/* one x row at a time against the RM weight rows (16 ymm registers hold no
 * more): per block, |w| times x with w's sign, pairs of bytes to int16
 * (at most 2 * 128 * 127: no saturation), then to int32 */
AVX2_TARGET static void uk_avx2(const utile *u, float out[RN][RM]) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int i = 0; i < RN; i++) {
        const int8_t *a = u->a + u->ld * (size_t)i;
        const float *ad = u->ad + u->ldd * (size_t)i;
        __m256 acc[RM];
        for (int r = 0; r < RM; r++) acc[r] = _mm256_setzero_ps();
        for (int b = 2 * u->p0; b < 2 * u->p1; b++) {
            __m256i A = _mm256_loadu_si256((const __m256i *)(const void *)(a + 32 * b));
            size_t b0 = at_half(u->half, b, 0), b1 = at_half(u->half, b, 1); /* lanes 0-3: values 0-15, 4-7: 16-31 */
            __m256 dx = _mm256_set_m128(_mm_set1_ps(ad[b1]), _mm_set1_ps(ad[b0]));
            for (int r = 0; r < RM; r++) {
                __m256i W = _mm256_loadu_si256((const __m256i *)(const void *)(u->w + u->ld * (size_t)r + 32 * b));
                __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(W), _mm256_sign_epi8(A, W));
                __m256 t = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                const float *wd = u->wd + u->ldd * (size_t)r;
                acc[r] = _mm256_fmadd_ps(t, _mm256_mul_ps(_mm256_set_m128(_mm_set1_ps(wd[b1]), _mm_set1_ps(wd[b0])), dx), acc[r]);
            }
        }
        for (int r = 0; r < RM; r++) {
            out[i][r] = hsum256(acc[r]);
            for (int b = 2 * u->p0; u->wm && b < 2 * u->p1; b++)
                out[i][r] -= u->wm[u->ldd * (size_t)r + (size_t)b] * u->as[u->ldd * (size_t)i + (size_t)b];
        }
    }
}

/* The VNNI kernel's layout: windows of 16 blocks (512 codes), each as 8
 * steps of 64 bytes; step k holds, in its four-byte lane j, codes 4k to
 * 4k + 3 of block j. Eight byte products into the same lanes sum each
 * block in its own int32 lane, so a window is scaled in float once: one
 * conversion and one fused multiply-add per 16 blocks and pair of rows.
 * A row's blocks (a multiple of 16) so laid out from its natural order,
 * the weights made unsigned (xor 128) on the way. */
VNNI_TARGET static void to_windows(const int8_t *src, int nblocks, int8_t *dst, int flip) {
    const __m256i f = _mm256_set1_epi8(flip ? (char)0x80 : 0);
    for (int w = 0; w < nblocks / 16; w++)
        for (int h = 0; h < 2; h++) { /* blocks 8h to 8h + 7: an 8 x 8 transpose of four-byte groups */
            const int8_t *b = src + 512 * (size_t)w + 256 * h;
            __m256i r[8], t[8], u[8];
            for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_si256((const __m256i *)(const void *)(b + 32 * j));
            for (int j = 0; j < 8; j += 2) t[j] = _mm256_unpacklo_epi32(r[j], r[j + 1]), t[j + 1] = _mm256_unpackhi_epi32(r[j], r[j + 1]);
            for (int j = 0; j < 8; j += 4) {
                u[j] = _mm256_unpacklo_epi64(t[j], t[j + 2]), u[j + 1] = _mm256_unpackhi_epi64(t[j], t[j + 2]);
                u[j + 2] = _mm256_unpacklo_epi64(t[j + 1], t[j + 3]), u[j + 3] = _mm256_unpackhi_epi64(t[j + 1], t[j + 3]);
            }
            int8_t *d = dst + 512 * (size_t)w + 32 * h;
            for (int k = 0; k < 4; k++) {
                _mm256_storeu_si256((__m256i *)(void *)(d + 64 * k), _mm256_xor_si256(_mm256_permute2x128_si256(u[k], u[k + 4], 0x20), f));
                _mm256_storeu_si256((__m256i *)(void *)(d + 64 * (k + 4)), _mm256_xor_si256(_mm256_permute2x128_si256(u[k], u[k + 4], 0x31), f));
            }
        }
}

/* the sums of sixteen registers' lanes: lane 4 L + e of the result is the
 * sum of v[4 e + L] */
VNNI_TARGET static inline __m512 sum16(const __m512 *v) {
    __m512 t[8], q[4];
    for (int k = 0; k < 8; k++)
        t[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44), _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xEE));
    for (int k = 0; k < 4; k++)
        q[k] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * k], t[2 * k + 1], 0x88), _mm512_shuffle_f32x4(t[2 * k], t[2 * k + 1], 0xDD));
    __m512 y0 = _mm512_add_ps(_mm512_unpacklo_ps(q[0], q[1]), _mm512_unpackhi_ps(q[0], q[1]));
    __m512 y1 = _mm512_add_ps(_mm512_unpacklo_ps(q[2], q[3]), _mm512_unpackhi_ps(q[2], q[3]));
    return _mm512_add_ps(_mm512_shuffle_ps(y0, y1, 0x44), _mm512_shuffle_ps(y0, y1, 0xEE));
}

/* a window at a time (block pairs p0 to p1, multiples of 8; with half,
 * each half of it, its four steps, scaled by the halves' scales): each of the
 * RN x RM int32 sums starts at -128 times x's block sums (init: one int32 a
 * block) and takes the window's eight steps; the float sums live in memory,
 * touched once a window, so the integer ones keep the registers */
VNNI_TARGET static inline __attribute__((always_inline)) void uk_vnni_of(const utile *u, float out[RN][RM], const int half) {
    _Alignas(64) float acc[RN][RM][16];
    for (int p = u->p0; p < u->p1; p += 8)
        for (int h = 0; h <= half; h++) { /* the window, or each half of it: steps 0-3 hold values 0-15 */
            size_t f = half ? 4 * (size_t)p + 16 * (size_t)h : 2 * (size_t)p; /* its scales and start values */
            __m512i s[RN][RM];
            for (int i = 0; i < RN; i++) {
                __m512i init = _mm512_loadu_si512(u->init + u->ldi * (size_t)i + f);
                for (int r = 0; r < RM; r++) s[i][r] = init;
            }
            for (int k = half ? 4 * h : 0; k < (half ? 4 * h + 4 : 8); k++) {
                __m512i W[RM];
                for (int r = 0; r < RM; r++) W[r] = _mm512_loadu_si512(u->w + u->ld * (size_t)r + 64 * (size_t)(p + k));
                for (int i = 0; i < RN; i++) {
                    __m512i A = _mm512_loadu_si512(u->a + u->ld * (size_t)i + 64 * (size_t)(p + k));
                    for (int r = 0; r < RM; r++) s[i][r] = _mm512_dpbusd_epi32(s[i][r], W[r], A);
                }
            }
            for (int r = 0; r < RM; r++) {
                __m512 dw = _mm512_loadu_ps(u->wd + u->ldd * (size_t)r + f);
                for (int i = 0; i < RN; i++) {
                    __m512 sc = _mm512_mul_ps(dw, _mm512_loadu_ps(u->ad + u->ldd * (size_t)i + f));
                    __m512 prev = p == u->p0 && h == 0 ? _mm512_setzero_ps() : _mm512_load_ps(acc[i][r]);
                    if (u->wm)
                        prev = _mm512_fnmadd_ps(_mm512_loadu_ps(u->wm + u->ldd * (size_t)r + 2 * (size_t)p),
                                                _mm512_loadu_ps(u->as + u->ldd * (size_t)i + 2 * (size_t)p), prev);
                    _mm512_store_ps(acc[i][r], _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i][r]), sc, prev));
                }
            }
        }
    __m512 v[16];
    for (int k = 0; k < 16; k++) v[k] = _mm512_load_ps(acc[k / RM][k % RM]);
    _Alignas(64) float o[16];
    _mm512_store_ps(o, sum16(v));
    for (int k = 0; k < 16; k++) out[k / RM][k % RM] = o[4 * (k % 4) + k / 4];
}

/* the kernel for whole blocks, and for blocks scaled by halves (Q6_K), each compiled with its loops fixed */
VNNI_TARGET static void uk_vnni(const utile *u, float out[RN][RM]) { uk_vnni_of(u, out, 0); }
VNNI_TARGET static void uk_vnni_h(const utile *u, float out[RN][RM]) { uk_vnni_of(u, out, 1); }

/* qs_wq8_codes for Q4_K and Q5_K, a pair of sub-blocks (32 bytes of
 * nibbles, and for Q5_K their fifth bits) a step */
__attribute__((target("avx2,f16c"))) static void codes_k_avx2(uint32_t type, const void *w, int n_in, int row0, int rows,
                                                             int8_t *codes, size_t ldc, float *d, float *m, size_t ldd) {
    int q5 = type == QS_WT_Q5_K;
    size_t rb = qs_wtype_row_bytes(type, n_in), bb = q5 ? 176 : 144;
    const __m256i lo = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int r = 0; r < rows; r++) {
        const uint8_t *blk = (const uint8_t *)w + rb * (size_t)(row0 + r);
        int8_t *c = codes + ldc * (size_t)r;
        float *dr = d + ldd * (size_t)r, *mr = m + ldd * (size_t)r;
        for (int sb = 0; sb < n_in / 256; sb++, blk += bb, c += 256, dr += 8, mr += 8) {
            float dd = _cvtsh_ss((unsigned short)(blk[0] | blk[1] << 8)), dm = _cvtsh_ss((unsigned short)(blk[2] | blk[3] << 8));
            for (int j = 0; j < 8; j++) {
                int sc, mn;
                qs_k4_scale_min(j, blk + 4, &sc, &mn);
                dr[j] = dd * (float)sc, mr[j] = dm * (float)mn;
            }
            __m256i qh = q5 ? _mm256_loadu_si256((const __m256i *)(const void *)(blk + 16)) : _mm256_setzero_si256();
            for (int p = 0; p < 4; p++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(blk + bb - 128 + 32 * p));
                __m256i a = _mm256_and_si256(v, lo), b = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo);
                if (q5) { /* value i of sub-block j: bit j of qh[i], as bit 4 */
                    a = _mm256_or_si256(a, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * p), one), 4));
                    b = _mm256_or_si256(b, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * p + 1), one), 4));
                }
                _mm256_storeu_si256((__m256i *)(void *)(c + 64 * p), a);
                _mm256_storeu_si256((__m256i *)(void *)(c + 64 * p + 32), b);
            }
        }
    }
}

/* qs_wq8_codes for Q6_K, a half super-block (32 bytes of low bits twice,
 * 32 of high bits) a step: value 32 k + c of the half is nibble k / 2 of
 * ql[c + 32 (k % 2)] with bits 2k, 2k + 1 of qh[c] above it, less 32 */
__attribute__((target("avx2,f16c"))) static void codes_q6k_avx2(const void *w, int n_in, int row0, int rows, int8_t *codes,
                                                               size_t ldc, float *d, size_t ldd) {
    size_t rb = qs_wtype_row_bytes(QS_WT_Q6_K, n_in);
    const __m256i lo = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
    for (int r = 0; r < rows; r++) {
        const uint8_t *blk = (const uint8_t *)w + rb * (size_t)(row0 + r);
        int8_t *c = codes + ldc * (size_t)r;
        float *dr = d + ldd * (size_t)r;
        for (int sb = 0; sb < n_in / 256; sb++, blk += 210, c += 256, dr += 16) {
            float dd = _cvtsh_ss((unsigned short)(blk[208] | blk[209] << 8));
            for (int h = 0; h < 16; h++) dr[h] = dd * (float)(int8_t)blk[192 + h];
            for (int n = 0; n < 2; n++) {
                __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 64 * n));
                __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 64 * n + 32));
                __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 128 + 32 * n));
                for (int k = 0; k < 4; k++) {
                    __m256i l = k & 1 ? l1 : l0;
                    __m256i nib = _mm256_and_si256(k & 2 ? _mm256_srli_epi16(l, 4) : l, lo);
                    __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), three), 4);
                    _mm256_storeu_si256((__m256i *)(void *)(c + 128 * n + 32 * k), _mm256_sub_epi8(_mm256_or_si256(nib, hi), off));
                }
            }
        }
    }
}

/* qs_wq8_codes for Q8_0 and Q4_0, 32 codes a step (F16C for the scales:
 * exact, as every f16 is a float) */
__attribute__((target("avx2,f16c"))) static void codes_avx2(uint32_t type, const void *w, int n_in, int row0, int rows,
                                                           int8_t *codes, size_t ldc, float *d, size_t ldd) {
    size_t rb = qs_wtype_row_bytes(type, n_in), bb = type == QS_WT_Q8_0 ? 34 : 18;
    const __m128i lo = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int r = 0; r < rows; r++) {
        const uint8_t *blk = (const uint8_t *)w + rb * (size_t)(row0 + r);
        int8_t *c = codes + ldc * (size_t)r;
        float *dr = d + ldd * (size_t)r;
        for (int b = 0; b < n_in / 32; b++, blk += bb, c += 32) {
            dr[b] = _cvtsh_ss((unsigned short)(blk[0] | blk[1] << 8));
            if (type == QS_WT_Q8_0) {
                _mm256_storeu_si256((__m256i *)(void *)c, _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2)));
            } else {
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2));
                _mm_storeu_si128((__m128i *)(void *)c, _mm_sub_epi8(_mm_and_si128(v, lo), eight));
                _mm_storeu_si128((__m128i *)(void *)(c + 16), _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), lo), eight));
            }
        }
    }
}

static int avx2_available(void) { return qs_wmat_fast_available(); /* AVX2, FMA and F16C (codes_avx2's scales) */ }

static int vnni_available(void) { return qs_wmat_vnni_available(); }


static const char *const names[] = {"ref", "avx2", "avx512vnni"};

/* the kernel a name asks for (NULL: the fastest this CPU runs, the plain
 * C one when qs_wmat_kernel() is "ref"); -1 when unknown or not runnable */
static int kernel_of(const char *name) {
    if (!name) {
        if (!strcmp(qs_wmat_kernel(), "ref")) return WQ8_REF;
        return vnni_available() ? WQ8_VNNI : avx2_available() ? WQ8_AVX2 : WQ8_REF;
    }
    for (int k = 0; k < 3; k++)
        if (!strcmp(name, names[k]))
            return k == WQ8_REF || (k == WQ8_AVX2 && avx2_available()) || (k == WQ8_VNNI && vnni_available()) ? k : -1;
    return -1;
}

const char *qs_wq8_kernel(void) { return names[kernel_of(NULL)]; }

/* Q4_K and Q5_K: their sub-blocks of 32 as blocks (scale d sc, offset
 * dmin m: the offset's products taken apart, m times the scaled sum of
 * x's block), x rounded in blocks of 256 as decode rounds it for them */
static int has_offset(uint32_t type) { return type == QS_WT_Q4_K || type == QS_WT_Q5_K; }

/* Q6_K: blocks of 32 with a scale for each half (its sub-blocks of 16) */
static int has_halves(uint32_t type) { return type == QS_WT_Q6_K; }

int qs_wq8_supported(uint32_t type, int n_in) {
    if (has_offset(type) || has_halves(type)) return n_in % 256 == 0;
    return n_in % 32 == 0 && (type == QS_WT_Q8_0 || type == QS_WT_Q4_0 || type == QS_WT_Q5_0 || type == QS_WT_IQ4_NL);
}

typedef struct {
    int n, n4, n_out, n_in, nbp;
    size_t ld, ldd, ldi;
    uint32_t type;
    const void *w;
    const int8_t *a;
    const float *ad;
    const int32_t *init;
    const float *as; /* x's scaled block sums (Q4_K, Q5_K; else NULL) */
    int8_t *codes; /* TROWS x ld a thread */
    int8_t *nat;   /* the VNNI kernel's: TROWS x ld a thread, the codes in their natural order first */
    float *wd;     /* TROWS x ldd a thread */
    float *wm;     /* the same for the offsets (Q4_K, Q5_K; else NULL) */
    int half;      /* Q6_K: utile's half */
    float *y;
    ukern_fn uk;
} gemm_job;

static void tile_task(void *ud, int task, int thread) {
    const gemm_job *j = ud;
    int r0 = task * TROWS, nr = j->n_out - r0 < TROWS ? j->n_out - r0 : TROWS, nr4 = (nr + RM - 1) / RM * RM;
    int8_t *codes = j->codes + (size_t)thread * TROWS * j->ld, *nat = j->nat ? j->nat + (size_t)thread * TROWS * j->ld : codes;
    float *wd = j->wd + (size_t)thread * TROWS * j->ldd, *wm = j->wm ? j->wm + (size_t)thread * TROWS * j->ldd : NULL;
    if (nr4 > nr || (size_t)j->n_in < j->ld) { /* padding rows or padding blocks: zeros */
        memset(nat, 0, (size_t)nr4 * j->ld);
        memset(wd, 0, (size_t)nr4 * j->ldd * sizeof *wd);
        if (wm) memset(wm, 0, (size_t)nr4 * j->ldd * sizeof *wm);
    }
    if (j->uk != uk_ref && (j->type == QS_WT_Q8_0 || j->type == QS_WT_Q4_0))
        codes_avx2(j->type, j->w, j->n_in, r0, nr, nat, j->ld, wd, j->ldd);
    else if (j->uk != uk_ref && has_offset(j->type))
        codes_k_avx2(j->type, j->w, j->n_in, r0, nr, nat, j->ld, wd, wm, j->ldd);
    else if (j->uk != uk_ref && has_halves(j->type))
        codes_q6k_avx2(j->w, j->n_in, r0, nr, nat, j->ld, wd, j->ldd);
    else
        qs_wq8_codes(j->type, j->w, j->n_in, r0, nr, nat, j->ld, wd, wm, j->ldd);
    for (int r = 0; j->nat && r < nr4; r++) to_windows(nat + j->ld * (size_t)r, (int)(j->ld / 32), codes + j->ld * (size_t)r, 1);
    for (int r = 0; j->half && r < nr; r++) /* each window's pairs of half scales as the 16 first halves', then the second's */
        for (float *f = wd + j->ldd * (size_t)r; f < wd + j->ldd * (size_t)(r + 1); f += 32) {
            float t[32];
            memcpy(t, f, sizeof t);
            for (int b = 0; b < 16; b++) f[b] = t[2 * b], f[16 + b] = t[2 * b + 1];
        }
    float out[RN][RM], acc[MCX][TROWS]; /* the x slice's products with the tile, summed over the K slices here */
    for (int i0 = 0; i0 < j->n4; i0 += MCX) {
        int i1 = i0 + MCX < j->n4 ? i0 + MCX : j->n4;
        for (int p0 = 0; p0 < j->nbp; p0 += KCP) {
            int p1 = p0 + KCP < j->nbp ? p0 + KCP : j->nbp;
            for (int r = 0; r < nr4; r += RM)
                for (int i = i0; i < i1; i += RN) {
                    utile u = {codes + j->ld * (size_t)r, j->a + j->ld * (size_t)i, wd + j->ldd * (size_t)r,
                               j->ad + j->ldd * (size_t)i, j->init + j->ldi * (size_t)i, j->ld, j->ldd, j->ldi, p0, p1,
                               wm ? wm + j->ldd * (size_t)r : NULL, wm ? j->as + j->ldd * (size_t)i : NULL, j->half};
                    j->uk(&u, out);
                    for (int ii = 0; ii < RN; ii++)
                        for (int rr = 0; rr < RM; rr++)
                            acc[i - i0 + ii][r + rr] = p0 ? acc[i - i0 + ii][r + rr] + out[ii][rr] : out[ii][rr];
                }
        }
        for (int i = i0; i < i1 && i < j->n; i++) memcpy(j->y + (size_t)i * j->n_out + r0, acc[i - i0], (size_t)nr * sizeof(float));
    }
}

/* rows of x rounded as decode rounds them, with the start values of the
 * sums: ROUND_ROWS rows a pool task */
enum { ROUND_ROWS = 8 };

typedef struct {
    const float *x;
    int n, n_in, nb;
    size_t ld, ldd, ldi;
    int8_t *a;
    float *ad;
    int32_t *init;
    float *as; /* Q4_K, Q5_K: x's scaled block sums; else NULL */
    int kq, half; /* x rounded in blocks of 256 (the k-quants); Q6_K's scales and start values by halves */
    float *s; /* 2 nb floats a thread */
    int8_t *nat;  /* the VNNI kernel's: ld bytes a thread, a row's codes in their natural order first */
} round_job;

static void round_task(void *ud, int task, int thread) {
    const round_job *j = ud;
    float *s = j->s + (size_t)thread * 2 * (size_t)j->nb; /* the block sums, which the GEMM does not use; for the
                                                          * k-quants the scales of 256 and the sums of 16 */
    int i1 = (task + 1) * ROUND_ROWS < j->n ? (task + 1) * ROUND_ROWS : j->n;
    for (int i = task * ROUND_ROWS; i < i1; i++) {
        int8_t *q = j->nat ? j->nat + (size_t)thread * j->ld : j->a + j->ld * (size_t)i;
        float *ad = j->ad + j->ldd * (size_t)i;
        memset(ad, 0, j->ldd * sizeof *ad); /* the padding blocks' scales: zeros */
        if (j->kq) { /* in blocks of 256, as decode rounds x for the k-quants: each block of 32 its block's scale */
            int16_t *k16 = (int16_t *)(void *)(s + j->nb);
            qs_wq8_round_k(j->x + (size_t)j->n_in * i, j->n_in, q, s, k16);
            for (int b = 0; b < j->nb; b++)
                for (int h = 0; h <= j->half; h++) ad[at_half(j->half, b, h)] = s[b / 8];
            float *as = j->as ? j->as + j->ldd * (size_t)i : NULL;
            for (int b = 0; as && b < j->nb; b++) as[b] = s[b / 8] * (float)(k16[2 * b] + k16[2 * b + 1]);
            if (as) memset(as + j->nb, 0, (j->ldd - (size_t)j->nb) * sizeof *as);
        } else
            qs_wq8_round(j->x + (size_t)j->n_in * i, j->nb, q, ad, s);
        memset(q + (size_t)j->nb * 32, 0, j->ld - (size_t)j->nb * 32); /* the padding blocks' codes */
        if (j->nat) { /* the VNNI kernel's: one start value a block (or half block); the codes into windows */
            int32_t *init = j->init + j->ldi * (size_t)i;
            memset(init, 0, j->ldi * sizeof *init);
            for (int b = 0; b < j->nb; b++)
                for (int h = 0; h <= j->half; h++) {
                    int t = 0;
                    for (int k = j->half ? 16 * h : 0; k < (j->half ? 16 * h + 16 : 32); k++) t += q[32 * b + k];
                    init[at_half(j->half, b, h)] = -128 * t;
                }
            to_windows(q, (int)(j->ld / 32), j->a + j->ld * (size_t)i, 0);
        }
    }
}

qs_status qs_wq8_gemm(const float *x, int n, uint32_t type, const void *w, const float *b, int n_out, int n_in, float *y,
                      const char *kernel) {
    if (!qs_wq8_supported(type, n_in)) return qs_fail(QS_EUNSUPPORTED, "8-bit prefill: type %u with rows of %d", type, n_in);
    int k = kernel_of(kernel);
    if (k < 0) return qs_fail(QS_EARG, "8-bit prefill kernel '%s' unknown or not runnable here", kernel);
    int nb = n_in / 32, nbp = (nb + 1) / 2, n4 = (n + RN - 1) / RN * RN, threads = qs_pool_threads(), win = k == WQ8_VNNI;
    int half = has_halves(type);
    if (win || half) nbp = (nbp + 7) / 8 * 8; /* whole windows of 16 blocks */
    size_t ld = (size_t)nbp * 64, ldd = (size_t)nbp * (half ? 4 : 2), ldi = ldd; /* init: read by the VNNI kernel only */
    /* the workspace, kept by the calling thread from call to call: x's codes (a), scales (ad), start values
     * (init); block sums (s); and per thread the tile's codes, in windows and before (nat), and scales (wd) */
    int off = has_offset(type);
    size_t sz[9] = {(size_t)n4 * ld, (size_t)n4 * ldd * sizeof(float), (size_t)n4 * ldi * sizeof(int32_t),
                    (size_t)threads * 2 * nb * sizeof(float), (size_t)threads * TROWS * ld, win ? (size_t)threads * TROWS * ld : 0,
                    (size_t)threads * TROWS * ldd * sizeof(float), off ? (size_t)n4 * ldd * sizeof(float) : 0,
                    off ? (size_t)threads * TROWS * ldd * sizeof(float) : 0}, total = 0;
    for (int i = 0; i < 9; i++) total += (sz[i] + 63) / 64 * 64;
    char *ws = qs_scratch(0, total), *at = ws;
    if (!ws) return qs_fail(QS_ENOMEM, "8-bit prefill: out of memory for %d rows of %d", n, n_in);
    void *part[9];
    for (int i = 0; i < 9; i++) part[i] = sz[i] ? at : NULL, at += (sz[i] + 63) / 64 * 64;
    int8_t *a = part[0], *codes = part[4], *nat = part[5];
    float *ad = part[1], *s = part[3], *wd = part[6], *as = part[7], *wm = part[8];
    int32_t *init = part[2];
    /* x's padding rows: zeros (round_task clears the padding of the others) */
    memset(a + ld * (size_t)n, 0, ld * (size_t)(n4 - n));
    memset(ad + ldd * (size_t)n, 0, ldd * (size_t)(n4 - n) * sizeof *ad);
    memset(init + ldi * (size_t)n, 0, ldi * (size_t)(n4 - n) * sizeof *init);
    if (as) memset(as + ldd * (size_t)n, 0, ldd * (size_t)(n4 - n) * sizeof *as);
    round_job rj = {x, n, n_in, nb, ld, ldd, ldi, a, ad, init, as, off || half, half, s, nat};
    qs_pool_run((n + ROUND_ROWS - 1) / ROUND_ROWS, round_task, &rj); /* x's rows rounded by the pool */
    static const ukern_fn uks[] = {uk_ref, uk_avx2, uk_vnni};
    gemm_job j = {n, n4, n_out, n_in, nbp, ld, ldd, ldi, type, w, a, ad, init, as, codes, nat, wd, wm, half, y,
                  k == WQ8_VNNI && half ? uk_vnni_h : uks[k]};
    qs_pool_run((n_out + TROWS - 1) / TROWS, tile_task, &j);
    if (b)
        for (int i = 0; i < n; i++) qs_ops_add(y + (size_t)i * n_out, b, (size_t)n_out);
    return QS_OK;
}
