/* gptq.h — GPTQ weight quantization (Frantar et al. 2023, "GPTQ: Accurate
 * Post-Training Quantization for Generative Pre-trained Transformers").
 *
 * A linear's weights are quantized one input column at a time, left to
 * right; the rounding error of each column is spread over the columns not
 * yet quantized so that the layer's output on the calibration inputs X moves
 * as little as possible. The weighting is the Hessian of that error,
 * H = 2 X^T X (mean over calibration windows), through the upper Cholesky
 * factor of its inverse. As the GPTQ code does it: inputs never seen
 * (diag H = 0) get H_ii = 1 and zero weights; 1% of mean(diag H) is added to
 * the diagonal; columns go in blocks of 128 whose errors reach the later
 * columns in one product at the end of each block.
 *
 *     double *H = ...;                      // (n_in, n_in): sum of x^T x over inputs (any scale)
 *     qs_gptq_opts o = qs_gptq_defaults(); // 1% damping, blocks of 128
 *     o.bits = 4;
 *     o.group = 128;                        // or 0: one scale per output row
 *     double loss;
 *     qs_gptq_quantize(w, n_out, n_in, H, &o, &loss);   // w (n_out, n_in) now on the grid
 *
 * Where the scales come from:
 *   group 0      one range per output row, from the weights as given;
 *   group G      one range per row and G columns, taken when the pass reaches
 *                the group's first column, from the weights as updated by the
 *                blocks before it (not by the columns of its own block, as
 *                in the GPTQ code);
 *   col_group    one range per row and column label, from the weights as
 *                given (the RPTQ reference: output row x input cluster).
 *
 * For a whole model, qs_gptq_variant() runs it layer by layer: each layer's
 * Hessians come from its inputs as the layers before it, already quantized,
 * produce them (one calibration pass with the layer unquantized), then the
 * layer is quantized and run again to give the next layer's inputs.
 */
#ifndef QS_GPTQ_H
#define QS_GPTQ_H

#include "quant.h"
#include "spec.h"
#include "status.h"
#include "variant.h"

typedef struct {
    int bits;             /* 2..8 */
    int group;            /* 0: per output row; G: per G consecutive input columns */
    int sym;              /* symmetric grid (QS_GRID_STD) */
    qs_grid grid;
    const int *col_group; /* (n_in) label of each column, or NULL (then `group` applies) */
    int n_col_groups;     /* labels in [0, n_col_groups) */
    double damp;          /* fraction of mean(diag H) added to the diagonal (GPTQ: 0.01) */
    int block;            /* columns per lazy update (GPTQ: 128) */
} qs_gptq_opts;

qs_gptq_opts qs_gptq_defaults(void);

/* Quantize w (n_out, n_in, row-major, in place) against H (n_in, n_in,
 * float64, symmetric; overwritten). loss (may be NULL): GPTQ's error
 * estimate, sum over rows and columns of (w - q)^2 / (2 d^2), which equals
 * half the sum over rows of (q - w)^T H' (q - w) for the damped H'. */
qs_status qs_gptq_quantize(float *w, int n_out, int n_in, double *H, const qs_gptq_opts *o, double *loss);

/* The weights of every linear of variant v (q, k, v, o, up, gate, down) by
 * GPTQ with the step's bits, group and grid, over v's calibration set,
 * layer by layer through v as it stands (its activation quantizers run in
 * the passes). For `rtn:...,wq=gptq`. */
qs_status qs_gptq_variant(qs_variant *v, const qs_step *s);

/* Layer 0's inputs (the embedding output) of every calibration window of v,
 * into X (n_rows * ctx, the embedding width): where a layer-by-layer pass
 * over v's calibration set starts. */
qs_status qs_gptq_calib_inputs(qs_variant *v, float *X);

#endif
