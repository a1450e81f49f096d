/* methods/methods.h — the public interface of core/methods/. Sections: spec, variant, gptq. */
#ifndef QS_METHODS_H
#define QS_METHODS_H

#include <stddef.h>

#include "base/base.h"
#include "kern/kern.h"
#include "run/run.h"
#include "stats/stats.h"

/* ---- spec.h — variant spec strings: the one name a variant has everywhere
 * (command line, Lua, the workbench).
 *
 *   fp32
 *   rtn:w=4,group=128,sym=1,a=4,act=tensor|token,kv=8
 *   int8:threshold=6,act=token|tensor
 *   rptq:w=4,a=4,kv=4,g=32,act=static|token   rptq:W4A4KV (the paper's setting names)
 *   slice:ratio=0.25
 *   slice:ratio=0.25+int8             methods chain with '+'
 *
 *     qs_spec s;
 *     if (qs_spec_parse("rptq:w=4,a=4,g=8", &s) != QS_OK) puts(qs_last_error());
 *
 * Bits of 16 (the default) mean "not quantized". Unknown keys, malformed
 * values and out-of-range knobs are QS_EARG with a message naming the spec
 * and the problem.
 */
typedef enum { QS_M_FP32 = 0, QS_M_RTN, QS_M_INT8, QS_M_RPTQ, QS_M_SLICE } qs_method;

#define QS_SPEC_MAX_STEPS 8

typedef struct {
    qs_method method;
    /* weights (rtn, rptq) */
    int w_bits;       /* 2..8, 16: not quantized */
    int w_group;      /* 0: one scale per output row; else input channels per group */
    int w_sym;        /* symmetric grid */
    int w_cluster;    /* rptq: groups = output row x input-channel cluster */
    int w_gptq;       /* GPTQ instead of round-to-nearest */
    int w_grid;       /* rtn: QS_GRID_STD, QS_GRID_GGML (llama.cpp's Q4_0 / Q8_0 / Q4_1 blocks), or
                         QS_GRID_Q4_K / QS_GRID_Q6_K (its k-quant super-blocks of 256) */
    /* activations (rtn, rptq): a covers every activation site, kv the K/V cache */
    int a_bits;       /* 16: not quantized */
    int a_mode;       /* QS_AQ_STATIC (per tensor / per cluster, calibrated) or QS_AQ_TOKEN
                         (rtn: per token; rptq: per token and cluster, dynamic) */
    int a_sym;
    int kv_bits;      /* 16: as a */
    int norm_a;       /* rptq: bits of the norm outputs (attn_in, mlp_in); 0: as a */
    /* rptq */
    int g;            /* clusters for attn_in, mlp_in, mlp_mid */
    int g_head;       /* clusters per head for q/k and attn_out */
    int g_site[QS_SITE_COUNT]; /* per-site overrides, 0: default */
    int reorder;      /* fold the permutation into the weights (1) or only group scales (0) */
    int ref;          /* the reference code's conventions */
    int seed;         /* rptq: the k-means seed (the same seed, the same clusters on every machine) */
    /* int8 */
    float threshold;  /* outlier magnitude; 0: no decomposition */
    int int8_act;     /* 0: per token (vector-wise), 1: per tensor (absmax) */
    /* slice */
    float ratio;      /* fraction of the width deleted */
    int round;        /* widths rounded down to a multiple of this */
    int slice_head;   /* also slice the head's input */
    int slice_f32;    /* keep the sliced weights in fp32 rather than the model's F16/BF16 */
} qs_step;

typedef struct {
    qs_step steps[QS_SPEC_MAX_STEPS];
    int n;
    char text[512]; /* canonical form */
} qs_spec;

qs_status qs_spec_parse(const char *s, qs_spec *out);
/* Canonical text of one step ("rptq:w=4,a=4,kv=4,g=32"). */
void qs_spec_step_format(const qs_step *st, char *buf, size_t cap);
const char *qs_method_name(qs_method m);

/* ---- variant.h — a variant is the base model plus a chain of methods (a spec
 * string, see spec.h). It shares the base model's tensors and owns only what
 * it changed, so several fit in memory at once.
 *
 *     qs_variant_opts o = {.calib = &cal};      // calibration rows, when a method needs them
 *     qs_variant *v;
 *     if (qs_variant_new(m, "rptq:w=4,a=4,g=8", &o, &v) != QS_OK) die(qs_last_error());
 *     qs_ctx *c;
 *     qs_ctx_new(m, qs_variant_exec(v), 512, &c);   // run it like the model
 *     printf("%s: %.1f MB\n", qs_variant_describe(v), qs_variant_weight_bytes(v) / 1e6);
 *     qs_ctx_free(c);
 *     qs_variant_free(v);
 */
typedef struct qs_variant qs_variant;

typedef struct {
    const qs_calib *calib;      /* calibration rows (rtn act=tensor, rptq and slice need them) */
    const qs_stats *base_stats; /* statistics of the base model over calib, reused when they fit */
    qs_progress_fn progress;    /* calibration progress; may cancel */
    void *progress_ud;
} qs_variant_opts;

/* Build a variant of m. The model (and o->calib, o->base_stats) must outlive
 * the call; the variant keeps m borrowed. */
qs_status qs_variant_new(const qs_model *m, const char *spec, const qs_variant_opts *o, qs_variant **out);
void qs_variant_free(qs_variant *v);

/* Bytes building spec on m will allocate at most (from the shapes; -1: a
 * bad spec), and the bytes the machine has for it: MemAvailable, or
 * $QSCOPE_MAX_MEMORY_MB. qs_variant_new refuses, naming both, a chain that
 * would not fit, before it allocates anything. */
long long qs_variant_estimate(const qs_model *m, const char *spec, const qs_calib *cal);
long long qs_mem_available(void);

/* Whether building this spec needs calibration data (-1: the spec is bad). */
int qs_variant_needs_calib(const char *spec);

const qs_exec *qs_variant_exec(const qs_variant *v);
const qs_model *qs_variant_model(const qs_variant *v);
const char *qs_variant_spec(const qs_variant *v);      /* canonical spec text */
const char *qs_variant_describe(const qs_variant *v);  /* one line: what was done */
long long qs_variant_weight_bytes(const qs_variant *v);/* as stored: int8 1 byte, 4-bit 1/2, + scales */
long long qs_variant_kv_bytes_per_token(const qs_variant *v);
long long qs_variant_params(const qs_variant *v);      /* parameters incl. SliceGPT shortcuts */
/* bytes of weights a decoded token reads: all but the embedding tables, of which it reads one
 * row (the token table counts when it is also the head) */
long long qs_variant_token_bytes(const qs_variant *v);

/* What a method found, for views and scripts (NULL / 0 when not applicable). */
/* RPTQ cluster of every channel at a site (length = the site's width). */
const int *qs_variant_clusters(const qs_variant *v, int layer, qs_site site, int *n_clusters);
/* SliceGPT: eigenvalues (descending, length *n) of layer l's PCA; which 0:
 * attention input, 1: MLP input; and the width kept. */
const double *qs_variant_eigenvalues(const qs_variant *v, int layer, int which, int *n, int *kept);

/* ---- gptq.h — GPTQ weight quantization (Frantar et al. 2023, "GPTQ: Accurate
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
typedef struct {
    int bits;             /* 2..8 */
    int group;            /* 0: per output row; G: per G consecutive input columns */
    int sym;              /* symmetric grid (QS_GRID_STD) */
    qs_grid grid;
    const int *col_group; /* (n_in) label of each column, or NULL (then `group` applies) */
    int n_col_groups;     /* labels in [0, n_col_groups) */
    double damp;          /* fraction of mean(diag H) added to the diagonal (GPTQ: 0.01) */
    int block;            /* columns per lazy update (GPTQ: 128) */
    void *pack;           /* when not NULL (QS_GRID_STD, no col_group, group 0 or 2^pack_lg): the codes
                           * also written packed as kern's qs_wt_qg(bits, pack_lg) rows; QS_GRID_Q4_K /
                           * QS_GRID_Q6_K (group implied: 256) need it: llama.cpp's super-blocks, each
                           * one's scales taken at its first column as `group` says */
    int pack_lg;
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

/* ---- the method table — every method is one record: its name, its keys
 * (type, range, default, the words an enum key takes), whether it needs
 * calibration, how it is applied and how its options are written back. The
 * spec parser, `--help`'s method list, Lua's qs.methods and the workbench's
 * knobs all read it. Adding a method is one file (its record and apply) and
 * one line in table.c.
 *
 *     for (int i = 0; i < qs_method_count(); i++)
 *         printf("%s: %s\n", qs_method_at(i)->name, qs_method_at(i)->summary);
 */
typedef enum { QS_KEY_INT, QS_KEY_BITS, QS_KEY_FLOAT, QS_KEY_BOOL, QS_KEY_WORD } qs_key_kind;

typedef struct {
    const char *name;    /* "w" */
    const char *alias;   /* another name for it ("tau"), or NULL */
    qs_key_kind kind;
    size_t off;          /* offsetof(qs_step, its field): an int, a float for QS_KEY_FLOAT */
    double lo, hi;       /* INT, FLOAT: accepted range (BITS: 2..8, or 16 for "not quantized") */
    double def;          /* the default (WORD: index of the default word) */
    const char *words;   /* WORD: the accepted words, '|' between them */
    const int *values;   /* WORD: what each word stores */
    const char *choices; /* WORD: how an error message names the choices */
    const char *help;    /* one line */
    double knob;         /* > 0: the workbench shows it as a knob moving by this step */
} qs_method_key;

typedef struct qs_method_def {
    qs_method id;
    const char *name;
    const char *aliases;        /* other names a spec may use, ',' between them ("slicegpt"), or NULL */
    const char *summary;        /* one line for help texts */
    const qs_method_key *keys;  /* (n_keys) */
    int n_keys;
    const char *bare_hint;      /* what else a bare word may be (" nor a setting name like W4A4KV"), or NULL */
    /* Defaults the keys do not give; NULL: none. */
    void (*init)(qs_step *s);
    /* A key or bare word (val NULL) the keys do not hold: 1 handled (*st
     * says how), 0 unknown; NULL: none. */
    int (*extra)(const char *spec, qs_step *s, const char *key, const char *val, qs_status *st);
    /* Rules between keys, after all are read; NULL: none. */
    qs_status (*check)(const char *spec, qs_step *s);
    /* The step's options for the canonical text (",k=v" pairs after the name). */
    void (*format)(const qs_step *s, char *buf, size_t cap);
    int (*needs_calib)(const qs_step *s);           /* NULL: never */
    qs_status (*apply)(qs_variant *v, const qs_step *s); /* NULL: changes nothing (fp32) */
} qs_method_def;

int qs_method_count(void);
const qs_method_def *qs_method_at(int i);            /* NULL past the end */
const qs_method_def *qs_method_find(const char *name); /* NULL when unknown */
const qs_method_def *qs_method_of(qs_method id);

/* The value of key k in step s, as a number (WORD: the index of its word). */
double qs_method_key_get(const qs_method_key *k, const qs_step *s);

/* The method list with every key, its range and default, as help text
 * (about 30 lines); returns the length it needed (snprintf's rule). */
size_t qs_methods_help(char *buf, size_t cap);

/* ---- compare.h — several variants of one model measured the same way: the
 * results table of `qscope compare`, qs.compare and the workbench.
 *
 *     const char *specs[] = {"int8", "rptq:W4A4"};
 *     qs_compare_row rows[3];                      // fp32 first, then each spec
 *     qs_compare_opts o = {.calib = &cal, .max_windows = 8};
 *     qs_compare_run(m, specs, 2, ids, n, &o, rows);
 *     ... rows[i].ok ? rows[i].ppl - rows[0].ppl : rows[i].err ...
 */
typedef struct {
    char spec[512];     /* canonical when measured; as given when it failed */
    char desc[512];     /* qs_variant_describe */
    int ok;             /* 0: err says why (the other fields are 0) */
    char err[512];
    double ppl, nll;
    long tokens;        /* tokens scored */
    int windows, ctx;
    double seconds;     /* of the forward passes */
    double tokens_per_s;/* windows * ctx / seconds */
    long long weight_bytes, kv_bytes_per_token, params;
} qs_compare_row;

/* what: the spec (as given) whose perplexity is being measured, or NULL
 * while calibrating or building a variant. Nonzero cancels that step: the
 * row gets the error "cancelled" and the next spec runs. */
typedef int (*qs_compare_progress_fn)(void *ud, const char *what, long done, long total);

typedef struct {
    const qs_calib *calib;      /* for the specs that calibrate; NULL: they fail */
    const qs_stats *base_stats; /* fp32 statistics over calib; NULL: gathered here once
                                 * (without per-token maxima) when a spec needs calib */
    int ctx, stride, max_windows; /* the perplexity windows, as qs_ppl_opts */
    qs_compare_progress_fn progress;
    void *ud;
    int (*stop)(void *ud);      /* asked between rows; nonzero ends the run (QS_ECANCEL) */
} qs_compare_opts;

/* Build and measure fp32 (rows[0], the reference) and every spec (rows[1 +
 * i]) on the same ids (n tokens); a spec that is "fp32" again copies rows[0].
 * A row that fails says why and the others still run; the call fails only
 * when o->stop ends it (the rows not reached are zero) or the base
 * statistics cannot be gathered (then every row has that error).
 * rows: n_specs + 1, the caller's. */
qs_status qs_compare_run(const qs_model *m, const char *const *specs, int n_specs, const int32_t *ids, long n,
                         const qs_compare_opts *o, qs_compare_row *rows);

#endif
