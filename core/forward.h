/* forward.h — the forward pass: batched prefill, KV-cached decoding, and
 * observers at the activation sites.
 *
 *     qs_ctx *c;
 *     qs_ctx_new(m, NULL, 512, &c);            // KV cache for 512 positions
 *     qs_forward(c, ids, n, logits, QS_LOGITS_ALL);   // logits (n, vocab)
 *     qs_forward(c, &next, 1, last, QS_LOGITS_LAST);  // one more token
 *     qs_ctx_reset(c);                         // empty the cache
 *     qs_ctx_free(c);
 *
 * A context borrows its model and weights; they must outlive it. One context
 * is used by one thread at a time.
 */
#ifndef QS_FORWARD_H
#define QS_FORWARD_H

#include <stdint.h>

#include "model.h"
#include "quant.h"

/* Activation sites, shared by every architecture (DESIGN.md). */
typedef enum {
    QS_SITE_ATTN_IN = 0, /* norm-1 output, input of q/k/v          (n, d) */
    QS_SITE_Q,           /* q projection (after RoPE), unscaled    (n, n_heads*hd) */
    QS_SITE_K,           /* k as cached (after RoPE)               (n, n_kv*hd) */
    QS_SITE_V,           /* v as cached                            (n, n_kv*hd) */
    QS_SITE_ATTN_OUT,    /* input of the output projection         (n, n_heads*hd) */
    QS_SITE_MLP_IN,      /* norm-2 output                          (n, d) */
    QS_SITE_MLP_MID,     /* input of the down projection           (n, d_ff) */
    QS_SITE_HEAD_IN,     /* final norm output (layer = n_layers)   (n, d) */
    QS_SITE_RESID,       /* residual stream after block l          (n, d) */
    QS_SITE_RESID_MID,   /* residual between attention and MLP     (n, d) */
    QS_SITE_EMBED,       /* embedding output, input of block 0     (n, d) */
    QS_SITE_COUNT
} qs_site;

const char *qs_site_name(qs_site s);
/* The site named s ("mlp_in"), or -1. */
int qs_site_parse(const char *s);

/* Called with each site's activations (n rows of dim values, row-major) as
 * the pass produces them; pos0 is the position of row 0. x is only valid
 * during the call. */
typedef void (*qs_observe_fn)(void *ud, int layer, qs_site site, const float *x, int n, int dim,
                              int pos0);

typedef enum { QS_LOGITS_NONE = 0, QS_LOGITS_LAST = 1, QS_LOGITS_ALL = 2 } qs_logits_mode;

/* How a pass runs: the weights, and what a variant changes at run time.
 * A zeroed qs_exec (or NULL) runs the model's own weights in fp32. */
typedef struct {
    const qs_weights *w;     /* NULL: the model's */
    const qs_actq *aq;       /* (n_layers + 1) x QS_SITE_COUNT quantizers, row l for layer l
                                (row n_layers: head_in); NULL: none */
    int prob_levels;         /* softmax probabilities rounded to multiples of 1/levels; 0: off */
    int prob_fp16;           /* ... in float16 arithmetic, as the RPTQ reference code does it */
    int q_prescale;          /* apply 1/sqrt(head_dim) to q before its quantizer (RPTQ reference) */
    float int8_threshold;    /* LLM.int8() outlier threshold for linears with an int8 kernel */
    int int8_act;            /* 0: int8 activation scales per token, 1: per tensor */
    int stop_layer;          /* run blocks [0, stop_layer) only and stop (no head): a calibration
                                pass that needs one layer's inputs; 0: the whole model */
} qs_exec;

typedef struct qs_ctx qs_ctx;

/* A context for model m run as `x` describes (NULL: fp32, the model's own
 * weights) with a KV cache of `capacity` positions (0: the model's maximum).
 * x and what it points to are borrowed. */
qs_status qs_ctx_new(const qs_model *m, const qs_exec *x, int capacity, qs_ctx **out);
void qs_ctx_free(qs_ctx *c);
void qs_ctx_reset(qs_ctx *c);
int qs_ctx_pos(const qs_ctx *c);      /* tokens in the cache */
int qs_ctx_capacity(const qs_ctx *c);
const qs_model *qs_ctx_model(const qs_ctx *c);

/* Attach an observer (NULL detaches). */
void qs_ctx_observe(qs_ctx *c, qs_observe_fn fn, void *ud);

/* Run n tokens starting at the cache's current position, appending their
 * keys and values. logits: (n, vocab) for QS_LOGITS_ALL, (vocab) for
 * QS_LOGITS_LAST, unused for QS_LOGITS_NONE. The final normed hidden states
 * stay available through qs_ctx_head_rows() until the next call. */
qs_status qs_forward(qs_ctx *c, const int32_t *ids, int n, float *logits, qs_logits_mode mode);

/* Run blocks [first, last) on residual rows x (n, the input width of block
 * first) at the cache's current position, appending their keys and values;
 * observers fire as in qs_forward. y (n, the output width of block last-1)
 * receives the result. For methods that rebuild a model block by block from
 * cached block inputs (SliceGPT's calibration). */
qs_status qs_forward_blocks(qs_ctx *c, int first, int last, const float *x, int n, float *y);

/* logits (count, vocab) for rows [row0, row0+count) of the last call. */
qs_status qs_ctx_head_rows(qs_ctx *c, int row0, int count, float *logits);

/* LLM.int8() outlier columns of layer l's linear inputs: the most seen in
 * one call since the context was made or last cleared, for attn_in (q/k/v
 * share it), attn_out, mlp_in, mlp_mid. NULL when the pass runs no int8
 * kernel. */
const int *qs_ctx_int8_outliers(const qs_ctx *c, int layer);
void qs_ctx_int8_clear(qs_ctx *c);

/* Bytes of KV cache per token (all layers, k and v, fp32). */
long long qs_ctx_kv_bytes_per_token(const qs_model *m);

#endif
