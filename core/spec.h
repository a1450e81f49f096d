/* spec.h — variant spec strings: the one name a variant has everywhere
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
#ifndef QS_SPEC_H
#define QS_SPEC_H

#include <stddef.h>

#include "forward.h"
#include "status.h"

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
    /* int8 */
    float threshold;  /* outlier magnitude; 0: no decomposition */
    int int8_act;     /* 0: per token (vector-wise), 1: per tensor (absmax) */
    /* slice */
    float ratio;      /* fraction of the width deleted */
    int round;        /* widths rounded down to a multiple of this */
    int slice_head;   /* also slice the head's input */
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

#endif
