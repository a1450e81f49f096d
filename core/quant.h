/* quant.h — uniform quantization: the grids, round-to-nearest weights, and
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
#ifndef QS_QUANT_H
#define QS_QUANT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "status.h"

typedef enum {
    QS_AQ_NONE = 0,
    QS_AQ_STATIC = 1, /* calibrated scale/zero per channel (per tensor and per cluster are special cases) */
    QS_AQ_TOKEN = 2,  /* dynamic: one scale/zero per row (token), or per row and channel group */
    QS_AQ_TENSOR = 3, /* dynamic: one scale/zero for the whole batch */
} qs_aq_mode;

typedef enum { QS_GRID_STD = 0, QS_GRID_RPTQ = 1 } qs_grid;

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

#endif
