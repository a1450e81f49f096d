/* wq8gemm.c — prefill on 8-bit activations: many rows of x times a matrix
 * of ggml's (code, scale) blocks of 32 (Q8_0, Q4_0, Q5_0, IQ4_NL), as
 * llama.cpp multiplies them.
 *
 * x is rounded once, as decode's 8-bit kernels round it (qs_wq8_round:
 * blocks of 32, scale max|x| / 127); each pool task decodes a tile of
 * weight rows into int8 codes and block scales, and multiplies every row
 * of x by it: each block's products summed exactly in integers, scaled by
 * the two blocks' scales in float. So y[i][r] is decode's qs_wdot_q8 of
 * the same row and x row, summed in another order.
 *
 * Kernels: AVX-512 VNNI (two blocks a register: the weight codes made
 * unsigned by adding 128, taken out by starting each sum at -128 times the
 * activation codes' sums), AVX2 (one block a register, the sign of the
 * weights moved onto the activations so that the unsigned-times-signed
 * byte product applies), and the plain C reference they are tested
 * against. A micro-tile is RN rows of x by RM rows of weights; x and the
 * tile are padded with zero rows and a zero block so that every micro-tile
 * is whole. */
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
} utile;

typedef void (*ukern_fn)(const utile *u, float out[RN][RM]);

static void uk_ref(const utile *u, float out[RN][RM]) {
    for (int i = 0; i < RN; i++)
        for (int r = 0; r < RM; r++) {
            const int8_t *a = u->a + u->ld * (size_t)i, *w = u->w + u->ld * (size_t)r;
            const float *ad = u->ad + u->ldd * (size_t)i, *wd = u->wd + u->ldd * (size_t)r;
            float acc = 0;
            for (int b = 2 * u->p0; b < 2 * u->p1; b++) {
                int isum = 0;
                for (int k = 0; k < 32; k++) isum += w[32 * b + k] * a[32 * b + k];
                acc += wd[b] * ad[b] * (float)isum;
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
            __m256 dx = _mm256_set1_ps(ad[b]);
            for (int r = 0; r < RM; r++) {
                __m256i W = _mm256_loadu_si256((const __m256i *)(const void *)(u->w + u->ld * (size_t)r + 32 * b));
                __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(W), _mm256_sign_epi8(A, W));
                __m256 t = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                acc[r] = _mm256_fmadd_ps(t, _mm256_mul_ps(_mm256_set1_ps(u->wd[u->ldd * (size_t)r + b]), dx), acc[r]);
            }
        }
        for (int r = 0; r < RM; r++) out[i][r] = hsum256(acc[r]);
    }
}

/* the two block scales at p as a register: eight lanes of each */
VNNI_TARGET static inline __m512 two_scales(const float *p, __m512i idx) {
    __m128 v = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)p));
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

/* two blocks a register: lanes 0-7 hold block 2p's four-byte sums, 8-15
 * block 2p + 1's; w + 128 (unsigned) times x (signed), each sum started at
 * -128 times the sum of x's four bytes */
VNNI_TARGET static void uk_vnni(const utile *u, float out[RN][RM]) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512 acc[RN][RM];
    for (int i = 0; i < RN; i++)
        for (int r = 0; r < RM; r++) acc[i][r] = _mm512_setzero_ps();
    for (int p = u->p0; p < u->p1; p++) {
        __m512i W[RM];
        __m512 DW[RM];
        for (int r = 0; r < RM; r++) {
            W[r] = _mm512_xor_si512(_mm512_loadu_si512(u->w + u->ld * (size_t)r + 64 * (size_t)p), flip);
            DW[r] = two_scales(u->wd + u->ldd * (size_t)r + 2 * (size_t)p, idx);
        }
        for (int i = 0; i < RN; i++) {
            __m512i A = _mm512_loadu_si512(u->a + u->ld * (size_t)i + 64 * (size_t)p);
            __m512i I = _mm512_loadu_si512(u->init + u->ldi * (size_t)i + 16 * (size_t)p);
            __m512 DX = two_scales(u->ad + u->ldd * (size_t)i + 2 * (size_t)p, idx);
            for (int r = 0; r < RM; r++) {
                __m512 t = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(I, W[r], A));
                acc[i][r] = _mm512_fmadd_ps(t, _mm512_mul_ps(DW[r], DX), acc[i][r]);
            }
        }
    }
    for (int i = 0; i < RN; i++)
        for (int r = 0; r < RM; r++) out[i][r] = _mm512_reduce_add_ps(acc[i][r]);
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

int qs_wq8_supported(uint32_t type, int n_in) {
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
    int8_t *codes; /* TROWS x ld a thread */
    float *wd;     /* TROWS x ldd a thread */
    float *y;
    ukern_fn uk;
} gemm_job;

static void tile_task(void *ud, int task, int thread) {
    const gemm_job *j = ud;
    int r0 = task * TROWS, nr = j->n_out - r0 < TROWS ? j->n_out - r0 : TROWS, nr4 = (nr + RM - 1) / RM * RM;
    int8_t *codes = j->codes + (size_t)thread * TROWS * j->ld;
    float *wd = j->wd + (size_t)thread * TROWS * j->ldd;
    if (nr4 > nr || (size_t)j->n_in < j->ld) { /* padding rows or a padding block: zeros */
        memset(codes, 0, (size_t)nr4 * j->ld);
        memset(wd, 0, (size_t)nr4 * j->ldd * sizeof *wd);
    }
    if (j->uk != uk_ref && (j->type == QS_WT_Q8_0 || j->type == QS_WT_Q4_0))
        codes_avx2(j->type, j->w, j->n_in, r0, nr, codes, j->ld, wd, j->ldd);
    else
        qs_wq8_codes(j->type, j->w, j->n_in, r0, nr, codes, j->ld, wd, j->ldd);
    float out[RN][RM];
    for (int i0 = 0; i0 < j->n4; i0 += MCX) {
        int i1 = i0 + MCX < j->n4 ? i0 + MCX : j->n4;
        for (int p0 = 0; p0 < j->nbp; p0 += KCP) {
            int p1 = p0 + KCP < j->nbp ? p0 + KCP : j->nbp;
            for (int r = 0; r < nr4; r += RM)
                for (int i = i0; i < i1; i += RN) {
                    utile u = {codes + j->ld * (size_t)r, j->a + j->ld * (size_t)i, wd + j->ldd * (size_t)r,
                               j->ad + j->ldd * (size_t)i, j->init + j->ldi * (size_t)i, j->ld, j->ldd, j->ldi, p0, p1};
                    j->uk(&u, out);
                    for (int ii = 0; ii < RN && i + ii < j->n; ii++)
                        for (int rr = 0; rr < RM && r + rr < nr; rr++) j->y[(size_t)(i + ii) * j->n_out + r0 + r + rr] += out[ii][rr];
                }
        }
    }
}

/* rows of x rounded as decode rounds them, with the VNNI start values, and
 * the same rows of y cleared: ROUND_ROWS rows a pool task */
enum { ROUND_ROWS = 8 };

typedef struct {
    const float *x;
    int n, n_in, nb, n_out;
    size_t ld, ldd, ldi;
    int8_t *a;
    float *ad;
    int32_t *init;
    float *y, *s; /* s: nb floats a thread */
} round_job;

static void round_task(void *ud, int task, int thread) {
    const round_job *j = ud;
    float *s = j->s + (size_t)thread * j->nb; /* the block sums, which the GEMM does not use */
    int i1 = (task + 1) * ROUND_ROWS < j->n ? (task + 1) * ROUND_ROWS : j->n;
    for (int i = task * ROUND_ROWS; i < i1; i++) {
        int8_t *q = j->a + j->ld * (size_t)i;
        qs_wq8_round(j->x + (size_t)j->n_in * i, j->nb, q, j->ad + j->ldd * (size_t)i, s);
        for (size_t g = 0; g < (size_t)j->nb * 8; g++)
            j->init[j->ldi * (size_t)i + g] = -128 * (q[4 * g] + q[4 * g + 1] + q[4 * g + 2] + q[4 * g + 3]);
        memset(j->y + (size_t)i * j->n_out, 0, (size_t)j->n_out * sizeof *j->y);
    }
}

qs_status qs_wq8_gemm(const float *x, int n, uint32_t type, const void *w, const float *b, int n_out, int n_in, float *y,
                      const char *kernel) {
    if (!qs_wq8_supported(type, n_in)) return qs_fail(QS_EUNSUPPORTED, "8-bit prefill: type %u with rows of %d", type, n_in);
    int k = kernel_of(kernel);
    if (k < 0) return qs_fail(QS_EARG, "8-bit prefill kernel '%s' unknown or not runnable here", kernel);
    int nb = n_in / 32, nbp = (nb + 1) / 2, n4 = (n + RN - 1) / RN * RN, threads = qs_pool_threads();
    size_t ld = (size_t)nbp * 64, ldd = (size_t)nbp * 2, ldi = (size_t)nbp * 16;
    int8_t *a = calloc((size_t)n4, ld);
    float *ad = calloc((size_t)n4 * ldd, sizeof *ad), *s = malloc((size_t)threads * nb * sizeof *s + 1);
    int32_t *init = calloc((size_t)n4 * ldi, sizeof *init);
    int8_t *codes = malloc((size_t)threads * TROWS * ld);
    float *wd = malloc((size_t)threads * TROWS * ldd * sizeof *wd);
    if (!a || !ad || !s || !init || !codes || !wd) {
        free(a), free(ad), free(s), free(init), free(codes), free(wd);
        return qs_fail(QS_ENOMEM, "8-bit prefill: out of memory for %d rows of %d", n, n_in);
    }
    round_job rj = {x, n, n_in, nb, n_out, ld, ldd, ldi, a, ad, init, y, s};
    qs_pool_run((n + ROUND_ROWS - 1) / ROUND_ROWS, round_task, &rj); /* x's rows rounded, y cleared: by the pool */
    static const ukern_fn uks[] = {uk_ref, uk_avx2, uk_vnni};
    gemm_job j = {n, n4, n_out, n_in, nbp, ld, ldd, ldi, type, w, a, ad, init, codes, wd, y, uks[k]};
    qs_pool_run((n_out + TROWS - 1) / TROWS, tile_task, &j);
    free(a), free(ad), free(s), free(init), free(codes), free(wd);
    if (b)
        for (int i = 0; i < n; i++) qs_ops_add(y + (size_t)i * n_out, b, (size_t)n_out);
    return QS_OK;
}
