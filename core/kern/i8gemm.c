/* i8gemm.c — the int8 GEMM kernels and their driver.
 *
 * Blocking (as in the classic Goto/BLIS scheme, shrunk to int8): B is packed
 * once into panels of 16 columns of C (see i8gemm.h); A is packed per call
 * into micro-panels of MR rows whose 4-byte K groups are interleaved, so the
 * inner loop reads one contiguous stream of A and 1-2 streams of B. A task
 * of the pool owns a block of rows x a block of panels of C; inside it K is
 * cut into KC-byte slices so that the B micro-panel in use (2 panels x KC)
 * stays in L1 while the A rows of the task (MC x KC) stay in L2.
 */
#include "kern/kern.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define QS_X86 1
#else
#define QS_X86 0
#endif

#define PANEL 16 /* columns of C per packed panel */
#define MR_MAX 8 /* rows of C per micro-tile, at most */
#define VNNI_MR 8
#define AVX2_MR 2
#define KCG 128 /* K groups (of 4 bytes) per K slice */
#define MC 256  /* rows per task (a multiple of the micro-tile heights) */
#define PC 8    /* panels per task at most */

struct qs_i8mat {
    int n, k;       /* logical shape of B (N, K) */
    int np, kg;     /* panels = ceil(N/16), groups = ceil(K/4) */
    int8_t *data;   /* (np, kg, 16, 4), 64-byte aligned, zero padded */
    int32_t *corr;  /* (np*16) 128 x column sums of B: the VNNI shift's correction */
};

enum { K_REF = 0, K_AVX2 = 1, K_VNNI = 2 };
static const char *const kernel_names[] = {"ref", "avx2", "avx512vnni"};
static atomic_int active_kernel = -1;

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline int64_t load_i64(const void *p) {
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---- packed weights ---------------------------------------------------- */

qs_status qs_i8mat_pack(const int8_t *b, int N, int K, qs_i8mat **out) {
    *out = NULL;
    if (N < 1 || K < 1 || K > QS_I8_KMAX)
        return qs_fail(QS_EARG, "i8mat_pack: shape [%d,%d] out of range (N >= 1, 1 <= K <= %d)", N,
                       K, QS_I8_KMAX);
    qs_i8mat *m = calloc(1, sizeof *m);
    if (!m) return qs_fail(QS_ENOMEM, "i8mat_pack: out of memory");
    m->n = N;
    m->k = K;
    m->np = (N + PANEL - 1) / PANEL;
    m->kg = (K + 3) / 4;
    size_t bytes = (size_t)m->np * m->kg * 64;
    m->data = aligned_alloc(64, bytes);
    m->corr = calloc((size_t)m->np * PANEL, sizeof *m->corr);
    if (!m->data || !m->corr) {
        qs_i8mat_free(m);
        return qs_fail(QS_ENOMEM, "i8mat_pack: out of memory for [%d,%d]", N, K);
    }
    memset(m->data, 0, bytes);
    for (int n = 0; n < N; n++) {
        const int8_t *row = b + (size_t)n * K;
        int8_t *dst = m->data + (size_t)(n / PANEL) * m->kg * 64 + (n % PANEL) * 4;
        int32_t sum = 0;
        for (int k = 0; k < K; k++) {
            dst[(size_t)(k / 4) * 64 + k % 4] = row[k];
            sum += row[k];
        }
        m->corr[n] = 128 * sum;
    }
    *out = m;
    return QS_OK;
}

void qs_i8mat_free(qs_i8mat *m) {
    if (!m) return;
    free(m->data);
    free(m->corr);
    free(m);
}

size_t qs_i8mat_bytes(const qs_i8mat *m) {
    return (size_t)m->np * m->kg * 64 + (size_t)m->np * PANEL * sizeof *m->corr;
}
int qs_i8mat_n(const qs_i8mat *m) { return m->n; }
int qs_i8mat_k(const qs_i8mat *m) { return m->k; }

static inline int8_t mat_at(const qs_i8mat *m, int n, int k) {
    return m->data[((size_t)(n / PANEL) * m->kg + k / 4) * 64 + (n % PANEL) * 4 + k % 4];
}

void qs_i8mat_row(const qs_i8mat *m, int n, int8_t *dst) {
    for (int k = 0; k < m->k; k++) dst[k] = mat_at(m, n, k);
}

void qs_i8mat_col(const qs_i8mat *m, int k, int8_t *dst) {
    for (int n = 0; n < m->n; n++) dst[n] = mat_at(m, n, k);
}

/* ---- reference --------------------------------------------------------- */

/* |sum| <= 128 * 128 * K < 2^31 for K <= QS_I8_KMAX, so int32 is exact. */
void qs_i8_gemm_ref(const int8_t *a, int M, int lda, const int8_t *b, int N, int K, int ldb,
                    int32_t *c, int ldc) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            const int8_t *ar = a + (size_t)m * lda, *br = b + (size_t)n * ldb;
            int32_t s = 0;
            for (int k = 0; k < K; k++) s += (int32_t)ar[k] * br[k];
            c[(size_t)m * ldc + n] = s;
        }
}

/* ---- kernel selection -------------------------------------------------- */

static int cpu_has(int kern) {
    if (kern == K_REF) return 1;
#if QS_X86
    __builtin_cpu_init();
    if (kern == K_AVX2) return __builtin_cpu_supports("avx2");
    if (kern == K_VNNI)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
    return 0;
}

static int best_kernel(void) {
    for (int k = K_VNNI; k > K_REF; k--)
        if (cpu_has(k)) return k;
    return K_REF;
}

static int kernel_by_name(const char *name) {
    for (int k = 0; k < 3; k++)
        if (strcmp(name, kernel_names[k]) == 0) return k;
    return -1;
}

static int current_kernel(void) {
    int k = atomic_load_explicit(&active_kernel, memory_order_relaxed);
    if (k < 0) {
        /* $QSCOPE_I8_KERNEL picks one for a whole run (benchmarks, bug hunts) */
        const char *env = getenv("QSCOPE_I8_KERNEL");
        k = env && *env ? kernel_by_name(env) : -1;
        if (k < 0 || !cpu_has(k)) k = best_kernel();
        atomic_store_explicit(&active_kernel, k, memory_order_relaxed);
    }
    return k;
}

const char *qs_i8_kernel_name(void) { return kernel_names[current_kernel()]; }

int qs_i8_kernel_available(const char *name) {
    int k = name ? kernel_by_name(name) : -1;
    return k >= 0 && cpu_has(k);
}

qs_status qs_i8_set_kernel(const char *name) {
    int k;
    if (!name || strcmp(name, "auto") == 0) {
        k = best_kernel();
    } else {
        k = kernel_by_name(name);
        if (k < 0)
            return qs_fail(QS_EARG, "i8 kernel '%s' unknown (expected auto, ref, avx2, avx512vnni)",
                           name);
        if (!cpu_has(k))
            return qs_fail(QS_EUNSUPPORTED, "i8 kernel '%s' needs CPU features this machine lacks",
                           name);
    }
    atomic_store_explicit(&active_kernel, k, memory_order_relaxed);
    return QS_OK;
}

/* ---- the job ----------------------------------------------------------- */

typedef struct {
    const int8_t *a;
    int M, lda;
    const qs_i8mat *b;
    int32_t *c;
    int ldc;
    /* packed A, NULL for ref: rows cut into micro-panels of mr rows (the last
     * one shorter); the panel of rows r.. starts at element r * kg * 4 and
     * holds, for each K group g, h rows x 4 elements (u8 A + 128 for VNNI,
     * int16 for AVX2) */
    void *ap;
    int mr;            /* micro-panel height of the packed A */
    int mt, nt;        /* task grid: row blocks x panel blocks */
    int mc, pc;        /* rows, panels per task */
    int kcg;           /* K groups per slice */
    int pack_rows;     /* rows per packing task */
    int16_t *bw;       /* AVX2: per thread, one B slice widened (kcg x 64) */
} job;

/* The plain C kernel over the packed B (so the packing is tested too);
 * reads A unpacked. */
static void task_ref(const job *J, int m0, int m1, int p0, int p1) {
    const qs_i8mat *B = J->b;
    for (int m = m0; m < m1; m++) {
        const int8_t *ar = J->a + (size_t)m * J->lda;
        for (int n = p0 * PANEL; n < p1 * PANEL && n < B->n; n++) {
            const int8_t *bp = B->data + (size_t)(n / PANEL) * B->kg * 64 + (n % PANEL) * 4;
            int32_t s = 0;
            for (int k = 0; k < B->k; k++) s += (int32_t)ar[k] * bp[(size_t)(k / 4) * 64 + k % 4];
            J->c[(size_t)m * J->ldc + n] = s;
        }
    }
}

#if QS_X86

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define AVX2_TARGET __attribute__((target("avx2")))
#define INLINE static inline __attribute__((always_inline))

/* ---- AVX-512 VNNI ------------------------------------------------------ */

/* One micro-tile: C[MR, 16*NV] (+)= A_u8[MR, slice] . B[16*NV, slice]^T.
 * ap: the slice of an MR-row micro-panel (groups x MR x 4 bytes, A + 128);
 * bp: the slice of the first panel, panels pstride bytes apart. On the first
 * slice (first = 1) the shift's correction 128 x colsum is taken off and C
 * overwritten; later slices add to C. ncols <= 16*NV limits the store.
 * The accumulators are named variables, not an array: GCC keeps those in
 * registers, where an array of them gets copied around every iteration. */
INLINE VNNI_TARGET void vnni_store(__m512i v, int32_t *cp, __mmask16 mk, __m512i cv, int first) {
    v = _mm512_sub_epi32(v, cv);
    if (!first) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(mk, cp));
    _mm512_mask_storeu_epi32(cp, mk, v);
}

static inline __mmask16 cols_mask(int nc) {
    return nc >= 16 ? (__mmask16)0xFFFF : nc <= 0 ? 0 : (__mmask16)((1u << nc) - 1);
}

INLINE VNNI_TARGET void vnni_tile(const int MR, const int NV, const uint8_t *ap, const int8_t *bp,
                                  size_t pstride, int ng, int32_t *c, int ldc, const int32_t *corr,
                                  int ncols, int first) {
    const __m512i z = _mm512_setzero_si512();
    __m512i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z;
    __m512i c40 = z, c41 = z, c50 = z, c51 = z, c60 = z, c61 = z, c70 = z, c71 = z;
    for (int g = 0; g < ng; g++) {
        const uint8_t *ag = ap + (size_t)g * MR * 4;
        __m512i b0 = _mm512_load_si512((const void *)(bp + (size_t)g * 64));
        __m512i b1 = NV > 1 ? _mm512_load_si512((const void *)(bp + pstride + (size_t)g * 64)) : z;
#define ROW(i)                                                                                   \
    if (MR > i) {                                                                                \
        __m512i a = _mm512_set1_epi32(load_i32(ag + 4 * i));                                     \
        c##i##0 = _mm512_dpbusd_epi32(c##i##0, a, b0);                                           \
        if (NV > 1) c##i##1 = _mm512_dpbusd_epi32(c##i##1, a, b1);                               \
    }
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
#undef ROW
    }
    __mmask16 mk0 = cols_mask(ncols), mk1 = cols_mask(ncols - 16);
    __m512i cv0 = first ? _mm512_maskz_loadu_epi32(mk0, corr) : z;
    __m512i cv1 = first && NV > 1 ? _mm512_maskz_loadu_epi32(mk1, corr + 16) : z;
#define ST(i)                                                                                    \
    if (MR > i) {                                                                                \
        vnni_store(c##i##0, c + (size_t)i * ldc, mk0, cv0, first);                               \
        if (NV > 1 && mk1) vnni_store(c##i##1, c + (size_t)i * ldc + 16, mk1, cv1, first);       \
    }
    ST(0) ST(1) ST(2) ST(3) ST(4) ST(5) ST(6) ST(7)
#undef ST
}

/* GEMV (one row of A) over four panels: eight independent sums (4 panels x
 * 2 groups) cover vpdpbusd's latency; B streams through once. */
static VNNI_TARGET void vnni_1x4(const uint8_t *ap, const int8_t *bp, size_t ps, int ng, int32_t *c,
                                 int ldc, const int32_t *corr, int ncols, int first) {
    const __m512i z = _mm512_setzero_si512();
    __m512i s0 = z, s1 = z, s2 = z, s3 = z, t0 = z, t1 = z, t2 = z, t3 = z;
    const int8_t *b0 = bp, *b1 = bp + ps, *b2 = bp + 2 * ps, *b3 = bp + 3 * ps;
    int g = 0;
    for (; g + 2 <= ng; g += 2) {
        __m512i a = _mm512_set1_epi32(load_i32(ap + 4 * g));
        __m512i e = _mm512_set1_epi32(load_i32(ap + 4 * g + 4));
        size_t o = (size_t)g * 64;
        s0 = _mm512_dpbusd_epi32(s0, a, _mm512_load_si512((const void *)(b0 + o)));
        s1 = _mm512_dpbusd_epi32(s1, a, _mm512_load_si512((const void *)(b1 + o)));
        s2 = _mm512_dpbusd_epi32(s2, a, _mm512_load_si512((const void *)(b2 + o)));
        s3 = _mm512_dpbusd_epi32(s3, a, _mm512_load_si512((const void *)(b3 + o)));
        t0 = _mm512_dpbusd_epi32(t0, e, _mm512_load_si512((const void *)(b0 + o + 64)));
        t1 = _mm512_dpbusd_epi32(t1, e, _mm512_load_si512((const void *)(b1 + o + 64)));
        t2 = _mm512_dpbusd_epi32(t2, e, _mm512_load_si512((const void *)(b2 + o + 64)));
        t3 = _mm512_dpbusd_epi32(t3, e, _mm512_load_si512((const void *)(b3 + o + 64)));
    }
    if (g < ng) {
        __m512i a = _mm512_set1_epi32(load_i32(ap + 4 * g));
        size_t o = (size_t)g * 64;
        s0 = _mm512_dpbusd_epi32(s0, a, _mm512_load_si512((const void *)(b0 + o)));
        s1 = _mm512_dpbusd_epi32(s1, a, _mm512_load_si512((const void *)(b1 + o)));
        s2 = _mm512_dpbusd_epi32(s2, a, _mm512_load_si512((const void *)(b2 + o)));
        s3 = _mm512_dpbusd_epi32(s3, a, _mm512_load_si512((const void *)(b3 + o)));
    }
    __m512i v[4] = {_mm512_add_epi32(s0, t0), _mm512_add_epi32(s1, t1), _mm512_add_epi32(s2, t2),
                    _mm512_add_epi32(s3, t3)};
    for (int j = 0; j < 4; j++) {
        __mmask16 mk = cols_mask(ncols - 16 * j);
        if (!mk) break;
        __m512i cv = first ? _mm512_maskz_loadu_epi32(mk, corr + 16 * j) : z;
        vnni_store(v[j], c + 16 * j, mk, cv, first);
    }
}

typedef void (*vnni_fn)(const uint8_t *, const int8_t *, size_t, int, int32_t *, int, const int32_t *,
                        int, int);
#define VNNI_INST(MR, NV)                                                                        \
    static VNNI_TARGET void vnni_##MR##x##NV(const uint8_t *ap, const int8_t *bp, size_t ps,     \
                                             int ng, int32_t *c, int ldc, const int32_t *corr,   \
                                             int ncols, int first) {                             \
        vnni_tile(MR, NV, ap, bp, ps, ng, c, ldc, corr, ncols, first);                           \
    }
VNNI_INST(1, 1) VNNI_INST(2, 1) VNNI_INST(3, 1) VNNI_INST(4, 1)
VNNI_INST(5, 1) VNNI_INST(6, 1) VNNI_INST(7, 1) VNNI_INST(8, 1)
VNNI_INST(1, 2) VNNI_INST(2, 2) VNNI_INST(3, 2) VNNI_INST(4, 2)
VNNI_INST(5, 2) VNNI_INST(6, 2) VNNI_INST(7, 2) VNNI_INST(8, 2)
static const vnni_fn vnni_tiles[MR_MAX + 1][3] = {
    {0, 0, 0},
    {0, vnni_1x1, vnni_1x2}, {0, vnni_2x1, vnni_2x2}, {0, vnni_3x1, vnni_3x2},
    {0, vnni_4x1, vnni_4x2}, {0, vnni_5x1, vnni_5x2}, {0, vnni_6x1, vnni_6x2},
    {0, vnni_7x1, vnni_7x2}, {0, vnni_8x1, vnni_8x2},
};

static VNNI_TARGET void task_vnni(const job *J, int m0, int m1, int p0, int p1) {
    const qs_i8mat *B = J->b;
    const uint8_t *A = J->ap;
    size_t pstride = (size_t)B->kg * 64;
    int mr = J->mr;
    for (int g0 = 0; g0 < B->kg; g0 += J->kcg) {
        int ng = B->kg - g0 < J->kcg ? B->kg - g0 : J->kcg, first = g0 == 0;
        if (m1 - m0 == 1) {
            /* GEMV: four panels per pass give four independent sums to hide
             * vpdpbusd's latency, and B streams through once */
            int p = p0;
            const uint8_t *ap = A + (size_t)m0 * B->kg * 4 + (size_t)g0 * 4;
            int32_t *c = J->c + (size_t)m0 * J->ldc;
            for (; p + 4 <= p1; p += 4)
                vnni_1x4(ap, B->data + (size_t)p * pstride + (size_t)g0 * 64, pstride, ng,
                         c + p * PANEL, J->ldc, B->corr + p * PANEL, B->n - p * PANEL, first);
            for (; p < p1; p += 2) {
                int nv = p1 - p >= 2 ? 2 : 1;
                vnni_tiles[1][nv](ap, B->data + (size_t)p * pstride + (size_t)g0 * 64, pstride, ng,
                                  c + p * PANEL, J->ldc, B->corr + p * PANEL, B->n - p * PANEL, first);
            }
            continue;
        }
        for (int p = p0; p < p1; p += 2) {
            int nv = p1 - p >= 2 ? 2 : 1;
            const int8_t *bp = B->data + (size_t)p * pstride + (size_t)g0 * 64;
            for (int r = m0; r < m1; r += mr) {
                int h = m1 - r < mr ? m1 - r : mr;
                const uint8_t *ap = A + (size_t)r * B->kg * 4 + (size_t)g0 * h * 4;
                vnni_tiles[h][nv](ap, bp, pstride, ng, J->c + (size_t)r * J->ldc + p * PANEL, J->ldc,
                                  B->corr + p * PANEL, B->n - p * PANEL, first);
            }
        }
    }
}

/* Pack rows [m0, m1) of A (a whole number of micro-panels) as A + 128. */
static void pack_a_u8(const job *J, int m0, int m1) {
    int kg = J->b->kg, K = J->b->k, mr = J->mr;
    uint8_t *dst0 = J->ap;
    for (int r = m0; r < m1; r += mr) {
        int h = J->M - r < mr ? J->M - r : mr;
        uint8_t *dst = dst0 + (size_t)r * kg * 4;
        for (int i = 0; i < h; i++) {
            const int8_t *src = J->a + (size_t)(r + i) * J->lda;
            uint32_t *d = (uint32_t *)(void *)(dst + (size_t)i * 4);
            int g = 0;
            for (; g < K / 4; g++) d[(size_t)g * h] = (uint32_t)load_i32(src + 4 * g) ^ 0x80808080u;
            if (g < kg) {
                uint8_t t[4] = {0x80, 0x80, 0x80, 0x80};
                for (int j = 0; j < K - 4 * g; j++) t[j] = (uint8_t)(src[4 * g + j] ^ 0x80);
                memcpy(&d[(size_t)g * h], t, 4);
            }
        }
    }
}

/* ---- AVX2 -------------------------------------------------------------- */

/* One micro-tile (MR <= 2 rows x 16 columns; with 16 ymm registers, 8 of
 * them accumulators) with int16 arithmetic. ap: MR-row micro-panel slice of A as
 * int16 (groups x MR x 4). Each 16-byte quarter of a packed 64-byte group is
 * 4 columns x 4 k; widened to int16 and multiplied by the row's 4 values
 * broadcast, vpmaddwd leaves per column two int32 partial sums (k0+k1,
 * k2+k3), which are added pairwise at the end. vpmaddwd cannot overflow:
 * 2 x 128 x 128 < 2^31. With WIDE the panel slice has been widened to int16
 * beforehand (bw, groups x 64), so the loop is loads, multiplies and adds
 * only; otherwise (a task of a few rows) it widens B as it goes (b8). */
INLINE AVX2_TARGET void avx2_store_row(__m256i q0, __m256i q1, __m256i q2, __m256i q3, int32_t *cp,
                                       int ncols, int first) {
    __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(q0, q1), 0xD8);
    __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(q2, q3), 0xD8);
    if (ncols >= 16) {
        if (!first) {
            lo = _mm256_add_epi32(lo, _mm256_loadu_si256((const __m256i *)(const void *)cp));
            hi = _mm256_add_epi32(hi, _mm256_loadu_si256((const __m256i *)(const void *)(cp + 8)));
        }
        _mm256_storeu_si256((__m256i *)(void *)cp, lo);
        _mm256_storeu_si256((__m256i *)(void *)(cp + 8), hi);
    } else {
        int32_t t[16];
        _mm256_storeu_si256((__m256i *)(void *)t, lo);
        _mm256_storeu_si256((__m256i *)(void *)(t + 8), hi);
        for (int n = 0; n < ncols; n++) cp[n] = first ? t[n] : cp[n] + t[n];
    }
}

INLINE AVX2_TARGET void avx2_tile(const int MR, const int WIDE, const int16_t *ap, const int8_t *b8,
                                  const int16_t *bw, int ng, int32_t *c, int ldc, int ncols,
                                  int first) {
    const __m256i z = _mm256_setzero_si256();
    __m256i c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
    for (int g = 0; g < ng; g++) {
        const int16_t *ag = ap + (size_t)g * MR * 4;
        __m256i a0 = _mm256_set1_epi64x(load_i64(ag));
        __m256i a1 = MR > 1 ? _mm256_set1_epi64x(load_i64(ag + 4)) : z;
#define Q(q)                                                                                     \
    {                                                                                            \
        __m256i b = WIDE ? _mm256_load_si256((const __m256i *)(const void *)(bw + (size_t)g * 64 + 16 * q)) \
                         : _mm256_cvtepi8_epi16(_mm_load_si128(                                  \
                               (const __m128i *)(const void *)(b8 + (size_t)g * 64 + 16 * q))); \
        c0##q = _mm256_add_epi32(_mm256_madd_epi16(a0, b), c0##q);                               \
        if (MR > 1) c1##q = _mm256_add_epi32(_mm256_madd_epi16(a1, b), c1##q);                   \
    }
        Q(0) Q(1) Q(2) Q(3)
#undef Q
    }
    avx2_store_row(c00, c01, c02, c03, c, ncols, first);
    if (MR > 1) avx2_store_row(c10, c11, c12, c13, c + ldc, ncols, first);
}

typedef void (*avx2_fn)(const int16_t *, const int8_t *, const int16_t *, int, int32_t *, int, int,
                        int);
#define AVX2_INST(MR, WIDE)                                                                      \
    static AVX2_TARGET void avx2_##MR##_##WIDE(const int16_t *ap, const int8_t *b8,              \
                                               const int16_t *bw, int ng, int32_t *c, int ldc,   \
                                               int ncols, int first) {                           \
        avx2_tile(MR, WIDE, ap, b8, bw, ng, c, ldc, ncols, first);                               \
    }
AVX2_INST(1, 0) AVX2_INST(2, 0) AVX2_INST(1, 1) AVX2_INST(2, 1)
static const avx2_fn avx2_tiles[2][AVX2_MR + 1] = {{0, avx2_1_0, avx2_2_0}, {0, avx2_1_1, avx2_2_1}};

static AVX2_TARGET void widen_slice(const int8_t *bp, int ng, int16_t *bw) {
    for (int g = 0; g < ng * 4; g++)
        _mm256_store_si256((__m256i *)(void *)(bw + 16 * g),
                           _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(const void *)(bp + 16 * g))));
}

static AVX2_TARGET void task_avx2(const job *J, int m0, int m1, int p0, int p1, int thread) {
    const qs_i8mat *B = J->b;
    const int16_t *A = J->ap;
    size_t pstride = (size_t)B->kg * 64;
    int mr = J->mr;
    /* widening a B slice once pays off when several row tiles reuse it */
    int wide = m1 - m0 > mr && J->bw;
    int16_t *bw = wide ? J->bw + (size_t)thread * J->kcg * 64 : NULL;
    for (int g0 = 0; g0 < B->kg; g0 += J->kcg) {
        int ng = B->kg - g0 < J->kcg ? B->kg - g0 : J->kcg, first = g0 == 0;
        for (int p = p0; p < p1; p++) {
            const int8_t *bp = B->data + (size_t)p * pstride + (size_t)g0 * 64;
            int ncols = B->n - p * PANEL < PANEL ? B->n - p * PANEL : PANEL;
            if (wide) widen_slice(bp, ng, bw);
            for (int r = m0; r < m1; r += mr) {
                int h = m1 - r < mr ? m1 - r : mr;
                const int16_t *ap = A + (size_t)r * B->kg * 4 + (size_t)g0 * h * 4;
                avx2_tiles[wide][h](ap, bp, bw, ng, J->c + (size_t)r * J->ldc + p * PANEL, J->ldc,
                                    ncols, first);
            }
        }
    }
}

/* Pack rows [m0, m1) of A widened to int16. */
static AVX2_TARGET void pack_a_i16(const job *J, int m0, int m1) {
    int kg = J->b->kg, K = J->b->k, mr = J->mr;
    int16_t *dst0 = J->ap;
    for (int r = m0; r < m1; r += mr) {
        int h = J->M - r < mr ? J->M - r : mr;
        int16_t *dst = dst0 + (size_t)r * kg * 4;
        for (int i = 0; i < h; i++) {
            const int8_t *src = J->a + (size_t)(r + i) * J->lda;
            int16_t *d = dst + (size_t)i * 4;
            for (int k = 0; k < kg * 4; k++) d[(size_t)(k / 4) * h * 4 + k % 4] = k < K ? src[k] : 0;
        }
    }
}

#endif /* QS_X86 */

/* ---- driver ------------------------------------------------------------ */

typedef struct {
    const job *J;
    int kern;
} run_ctx;

static void gemm_task(void *ud, int t, int thread) {
    const run_ctx *R = ud;
    const job *J = R->J;
    int ti = t / J->nt, tj = t % J->nt;
    int m0 = ti * J->mc, m1 = m0 + J->mc < J->M ? m0 + J->mc : J->M;
    int p0 = tj * J->pc, p1 = p0 + J->pc < J->b->np ? p0 + J->pc : J->b->np;
    switch (R->kern) {
#if QS_X86
    case K_VNNI: task_vnni(J, m0, m1, p0, p1); break;
    case K_AVX2: task_avx2(J, m0, m1, p0, p1, thread); break;
#endif
    default: task_ref(J, m0, m1, p0, p1); break;
    }
}

static void pack_task(void *ud, int t, int thread) {
    const run_ctx *R = ud;
    const job *J = R->J;
    int m0 = t * J->pack_rows, m1 = m0 + J->pack_rows < J->M ? m0 + J->pack_rows : J->M;
#if QS_X86
    if (R->kern == K_VNNI) pack_a_u8(J, m0, m1);
    else if (R->kern == K_AVX2) pack_a_i16(J, m0, m1);
#else
    (void)m1;
#endif
}

void qs_i8_gemm(const int8_t *a, int M, int lda, const qs_i8mat *b, int32_t *c, int ldc) {
    if (M < 1) return;
    job J = {.a = a, .M = M, .lda = lda, .b = b, .c = c, .ldc = ldc};
    run_ctx R = {.J = &J, .kern = current_kernel()};
    int threads = qs_pool_threads();

    J.mr = R.kern == K_VNNI ? VNNI_MR : R.kern == K_AVX2 ? AVX2_MR : 1;

    /* rows per task: a whole number of micro-panels; panels per task: enough
     * tasks for every thread to get several (load balance), but wide enough
     * that the A rows of a task are reused across many panels */
    int mr = J.mr;
    J.mc = M <= MC ? M : MC / mr * mr;
    J.mt = (M + J.mc - 1) / J.mc;
    J.pc = PC;
    while (J.pc > 1 && J.mt * ((b->np + J.pc - 1) / J.pc) < 4 * threads) J.pc /= 2;
    if (M == 1 && J.pc < 4 && b->np >= 4 * threads) J.pc = 4;
    J.nt = (b->np + J.pc - 1) / J.pc;
    J.kcg = M <= mr ? b->kg : KCG;

    if (R.kern != K_REF) {
        /* one block: packed A, then (AVX2) the per-thread widened B slices */
        size_t ap_bytes = ((size_t)M * b->kg * 4 * (R.kern == K_AVX2 ? 2 : 1) + 63) / 64 * 64;
        size_t bw_bytes = R.kern == K_AVX2 && M > mr ? (size_t)threads * J.kcg * 64 * 2 : 0;
        J.ap = aligned_alloc(64, ap_bytes + bw_bytes);
        if (!J.ap) R.kern = K_REF; /* no memory for packing: the slow path needs none */
        else if (bw_bytes) J.bw = (int16_t *)(void *)((char *)J.ap + ap_bytes);
    }

    if (J.ap) {
        int panels = (M + mr - 1) / mr;
        int per = (panels + 4 * threads - 1) / (4 * threads);
        if (per < 1) per = 1;
        J.pack_rows = per * mr;
        qs_pool_run((M + J.pack_rows - 1) / J.pack_rows, pack_task, &R);
    }
    qs_pool_run(J.mt * J.nt, gemm_task, &R);
    free(J.ap);
}
