/* wfgemm.c — prefill on F16 and BF16 weights by AVX-512: many rows of x
 * times weight rows that are widened to fp32 as they are read, with no
 * panel and no sgemm in between.
 *
 * Each product is a dot product along K: a micro-tile is RN rows of x by
 * RM weight rows, 16 values of K a step, one fp32 register a product,
 * summed across its lanes at the end of a K slice. The products are those
 * of fp32 sgemm on the decoded weights (an f16 or bf16 widens to fp32
 * exactly), summed in another order. It serves where AVX-512 runs and
 * OpenBLAS's sgemm would run at half that width (OPENBLAS_CORETYPE held to
 * an AVX2 core), and beside that sgemm where both run at full width. The
 * plain C kernel is the reference the fast one is tested against. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "kern/kern.h"

enum {
    RN = 4,     /* x rows a micro-tile */
    RM = 6,     /* weight rows a micro-tile: RN x RM accumulators, RN + 1 operands in 32 registers */
    TROWS = 48, /* weight rows a task (a multiple of RM) */
    KC = 1024,  /* K a slice: the micro-tile's operands (4 x 4 KB + 6 x 2 KB) stay in L1 */
    MCX = 64,   /* x rows a slice: 256 KB of x for a K slice, in L2 */
};

typedef struct {
    const float *x;
    const uint8_t *w;
    size_t ldx, ldw; /* floats a row of x, bytes a weight row */
    int k0, k1;
    int kind; /* 0 F16, 1 BF16, 2 F32 */
} ftile;

typedef void (*fkern_fn)(const ftile *u, int rn, int rm, float out[RN][RM]);

static void fk_ref(const ftile *u, int rn, int rm, float out[RN][RM]) {
    for (int i = 0; i < rn; i++)
        for (int r = 0; r < rm; r++) {
            const float *x = u->x + u->ldx * (size_t)i;
            const uint8_t *w = u->w + u->ldw * (size_t)r;
            float acc = 0;
            for (int k = u->k0; k < u->k1; k++) {
                float v;
                if (u->kind == 2) memcpy(&v, w + 4 * (size_t)k, 4);
                else {
                    uint16_t h = (uint16_t)(w[2 * k] | w[2 * k + 1] << 8);
                    v = u->kind ? qs_bf16_to_f32(h) : qs_f16_to_f32(h);
                }
                acc += x[k] * v;
            }
            out[i][r] = acc;
        }
}

#define AVX512_TARGET __attribute__((target("avx2,fma,f16c,avx512f")))

/* 16 weights from row w at k, as fp32 */
AVX512_TARGET static inline __m512 widen(const uint8_t *w, int k, int kind) {
    if (kind == 2) return _mm512_loadu_ps((const float *)(const void *)w + k);
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(w + 2 * (size_t)k));
    return kind ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
}

/* a whole micro-tile (rn == RN, rm == RM, K a multiple of 16): fully unrolled */
AVX512_TARGET static void fk_avx512_full(const ftile *u, float out[RN][RM]) {
    __m512 acc[RN][RM];
    for (int i = 0; i < RN; i++)
        for (int r = 0; r < RM; r++) acc[i][r] = _mm512_setzero_ps();
    for (int k = u->k0; k < u->k1; k += 16) {
        __m512 X[RN];
        for (int i = 0; i < RN; i++) X[i] = _mm512_loadu_ps(u->x + u->ldx * (size_t)i + k);
        for (int r = 0; r < RM; r++) {
            __m512 W = widen(u->w + u->ldw * (size_t)r, k, u->kind);
            for (int i = 0; i < RN; i++) acc[i][r] = _mm512_fmadd_ps(X[i], W, acc[i][r]);
        }
    }
    for (int i = 0; i < RN; i++)
        for (int r = 0; r < RM; r++) out[i][r] = _mm512_reduce_add_ps(acc[i][r]);
}

/* a partial micro-tile at the edges: one product at a time */
AVX512_TARGET static void fk_avx512(const ftile *u, int rn, int rm, float out[RN][RM]) {
    if (rn == RN && rm == RM) {
        fk_avx512_full(u, out);
        return;
    }
    for (int i = 0; i < rn; i++)
        for (int r = 0; r < rm; r++) {
            __m512 acc = _mm512_setzero_ps();
            for (int k = u->k0; k < u->k1; k += 16)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(u->x + u->ldx * (size_t)i + k),
                                      widen(u->w + u->ldw * (size_t)r, k, u->kind), acc);
            out[i][r] = _mm512_reduce_add_ps(acc);
        }
}

int qs_wf_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && qs_wmat_fast_available();
}

int qs_wf_supported(uint32_t type, int n_in) {
    return n_in % 16 == 0 && (type == QS_WT_F16 || type == QS_WT_BF16 || type == QS_WT_F32);
}

typedef struct {
    const float *x;
    int n, n_out, n_in, kind;
    const uint8_t *w;
    float *y;
    fkern_fn fk;
} fgemm_job;

/* y (n rows, ldy floats apart) columns [0, nr) += x W^T for nr weight rows of the kind at w, on this thread */
static void ftile_run(const float *x, int n, int n_in, int kind, const uint8_t *w, int nr, float *y, size_t ldy,
                      fkern_fn fk) {
    size_t ldw = (size_t)n_in * (kind == 2 ? 4 : 2);
    float out[RN][RM];
    for (int i0 = 0; i0 < n; i0 += MCX) {
        int i1 = i0 + MCX < n ? i0 + MCX : n;
        for (int k0 = 0; k0 < n_in; k0 += KC) {
            int k1 = k0 + KC < n_in ? k0 + KC : n_in;
            for (int r = 0; r < nr; r += RM)
                for (int i = i0; i < i1; i += RN) {
                    int rn = i1 - i < RN ? i1 - i : RN, rm = nr - r < RM ? nr - r : RM;
                    ftile u = {x + (size_t)n_in * i, w + ldw * (size_t)r, (size_t)n_in, ldw, k0, k1, kind};
                    fk(&u, rn, rm, out);
                    for (int ii = 0; ii < rn; ii++)
                        for (int rr = 0; rr < rm; rr++) y[(size_t)(i + ii) * ldy + r + rr] += out[ii][rr];
                }
        }
    }
}

static void ftile_task(void *ud, int task, int thread) {
    (void)thread;
    const fgemm_job *j = ud;
    int r0 = task * TROWS, nr = j->n_out - r0 < TROWS ? j->n_out - r0 : TROWS;
    size_t ldw = (size_t)j->n_in * (j->kind == 2 ? 4 : 2);
    ftile_run(j->x, j->n, j->n_in, j->kind, j->w + ldw * (size_t)r0, nr, j->y + r0, (size_t)j->n_out, j->fk);
}

int qs_wf_tile_rows(void) { return TROWS; }

void qs_wf_tile(const float *x, int n, const float *w, int nr, int n_in, float *y, size_t ldy) {
    for (int i = 0; i < n; i++) memset(y + ldy * (size_t)i, 0, (size_t)nr * sizeof *y);
    ftile_run(x, n, n_in, 2, (const uint8_t *)w, nr, y, ldy, qs_wf_available() ? fk_avx512 : fk_ref);
}

qs_status qs_wf_gemm(const float *x, int n, uint32_t type, const void *w, const float *b, int n_out, int n_in, float *y,
                     const char *kernel) {
    if (!qs_wf_supported(type, n_in)) return qs_fail(QS_EUNSUPPORTED, "fused prefill: type %u with rows of %d", type, n_in);
    int fast;
    if (!kernel || !strcmp(kernel, "avx512")) {
        fast = qs_wf_available();
        if (kernel && !fast) return qs_fail(QS_EARG, "fused prefill kernel 'avx512' cannot run here");
    } else if (!strcmp(kernel, "ref")) fast = 0;
    else return qs_fail(QS_EARG, "fused prefill kernel '%s' unknown (avx512 or ref)", kernel);
    memset(y, 0, (size_t)n * n_out * sizeof *y);
    fgemm_job j = {x, n, n_out, n_in, type == QS_WT_F32 ? 2 : type == QS_WT_BF16, w, y, fast ? fk_avx512 : fk_ref};
    qs_pool_run((n_out + TROWS - 1) / TROWS, ftile_task, &j);
    if (b)
        for (int i = 0; i < n; i++) qs_ops_add(y + (size_t)i * n_out, b, (size_t)n_out);
    return QS_OK;
}
