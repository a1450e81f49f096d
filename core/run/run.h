/* run/run.h — the public interface of core/run/. Sections: forward, gen, eval. */
#ifndef QS_RUN_H
#define QS_RUN_H

#include <stdint.h>
#include <stddef.h>

#include "kern/kern.h"
#include "tok/tok.h"
#include "model/model.h"

/* ---- forward.h — the forward pass: batched prefill, KV-cached decoding, and
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
    int prob_levels;         /* the attention probabilities' quantizer: softmax P rounded to
                                multiples of 1/levels; 0: off */
    int prob_fp16;           /* ... in float16 arithmetic */
    int q_scaled;            /* q's quantizer sees q after its 1/sqrt(head_dim) scaling */
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

/* What the linears' kernels counted (qs_lin_kernel: LLM.int8()'s fp32
 * feature columns) at layer l's linear inputs: the most seen in one call
 * since the context was made or last cleared, for attn_in (q/k/v share it),
 * attn_out, mlp_in, mlp_mid. NULL when the pass runs no such kernel. */
const int *qs_ctx_kernel_counts(const qs_ctx *c, int layer);
void qs_ctx_kernel_clear(qs_ctx *c);

/* Bytes of KV cache per token (all layers, k and v, fp32). */
long long qs_ctx_kv_bytes_per_token(const qs_model *m);

/* ---- gen.h — sampling and streamed generation.
 *
 *     qs_gen_opts o = qs_gen_defaults();     // greedy, 64 tokens, stop at EOS
 *     o.temp = 0.8f; o.top_p = 0.95f; o.seed = 7;
 *     o.on_text = print_piece;               // called with each new piece of text
 *     qs_gen_result r;
 *     qs_gen_run(ctx, tok, prompt_ids, n_prompt, &o, &r);
 *     ... r.ids (r.n), r.text ...
 *     qs_gen_result_free(&r);
 *
 * An empty prompt starts from the tokenizer's BOS.
 */
typedef struct {
    int n_max;          /* tokens to generate at most */
    float temp;         /* 0: greedy (argmax) */
    int top_k;          /* 0: off */
    float top_p;        /* 1 or 0: off */
    uint64_t seed;
    int stop_at_eos;    /* stop after the tokenizer's EOS */
    /* Called with each new piece of decoded text (complete UTF-8 only; a
     * token that ends mid-character is held back until the next one) and the
     * token id that completed it. Return non-zero to stop. */
    int (*on_text)(void *ud, int id, const char *text, size_t len);
    void *ud;
} qs_gen_opts;

typedef struct {
    int32_t *ids;    /* (n) generated ids, malloc'd */
    int n;
    char *text;      /* the generated text, NUL-terminated, malloc'd */
    double prefill_seconds, decode_seconds;
    int stopped_by;  /* 0: n_max, 1: EOS, 2: callback, 3: context full */
} qs_gen_result;

qs_gen_opts qs_gen_defaults(void);
void qs_gen_result_free(qs_gen_result *r);

/* Sampler state: a seeded generator. */
typedef struct {
    uint64_t s[4];
} qs_rng;
void qs_rng_seed(qs_rng *r, uint64_t seed);
uint64_t qs_rng_next(qs_rng *r);
double qs_rng_uniform(qs_rng *r); /* [0, 1) */

/* Pick the next token from logits (vocab). scratch: (2*vocab) floats. */
int qs_gen_sample(const float *logits, int vocab, const qs_gen_opts *o, qs_rng *rng, float *scratch);

/* Generate after the prompt; the context is reset first. */
qs_status qs_gen_run(qs_ctx *c, const qs_tok *tok, const int32_t *prompt, int n_prompt,
                     const qs_gen_opts *o, qs_gen_result *r);

/* ---- eval.h — perplexity by the papers' protocol.
 *
 * Standard protocol (stride 0): the ids of the whole text, cut into
 * non-overlapping windows of ctx tokens, the remainder dropped; every window
 * starts with an empty cache and scores its ctx-1 predictions;
 * ppl = exp(mean NLL). With stride s > 0: windows of ctx tokens starting
 * every s tokens, each scoring only the tokens the previous window did not
 * (the sliding-window method of the transformers documentation).
 *
 *     qs_ppl_opts o = {.ctx = 512, .max_windows = 8};
 *     qs_ppl_result r;
 *     qs_eval_ppl(ctx, ids, n, &o, &r);   // r.ppl, r.nll, r.tokens ...
 */
typedef struct {
    int ctx;                 /* window length; 0: the context's capacity */
    int stride;              /* 0: non-overlapping windows */
    int max_windows;         /* 0: all */
    int llama_cpp;           /* llama-perplexity's protocol: each window's first token is BOS
                                (bos >= 0), and only its second half is scored (predictions of
                                tokens ctx/2 + 1 .. ctx - 1); stride must be 0 */
    int bos;                 /* the BOS id for llama_cpp; -1: the window's own first token */
    qs_progress_fn progress; /* called after each window (done, total); may be NULL */
    void *progress_ud;
} qs_ppl_opts;

typedef struct {
    double ppl;      /* exp(nll) */
    double nll;      /* mean negative log-likelihood per scored token (nats) */
    long tokens;     /* tokens scored */
    int windows;     /* windows run */
    int ctx;         /* window length used */
    double seconds;  /* wall time of the forward passes */
} qs_ppl_result;

/* Perplexity of ids (n) through context c (reset before each window). */
qs_status qs_eval_ppl(qs_ctx *c, const int32_t *ids, long n, const qs_ppl_opts *o, qs_ppl_result *r);

/* Sum of -log p(ids[i+1] | ids[..i]) for i in [from, n-1) over one window
 * already run through c with qs_forward(..., QS_LOGITS_NONE); adds to *nll
 * and the count to *count. scratch: (QS_EVAL_CHUNK, vocab) floats. */
#define QS_EVAL_CHUNK 32
qs_status qs_eval_window_nll(qs_ctx *c, const int32_t *ids, int n, int from, float *scratch,
                             double *nll, long *count);

/* ---- perf.h — speed as llama-bench measures it (run/perf.c) ---- */
enum { QS_PERF_MAX_REPS = 16 };
typedef struct {
    int p;    /* prefill: one forward of p tokens (0: none) */
    int n;    /* decode: n single-token steps from an empty cache (0: none) */
    int reps; /* repetitions of each (1..16) */
    qs_progress_fn progress; /* after each prefill and each decoded token (done, total); may cancel; may be NULL */
    void *progress_ud;
} qs_perf_opts;
typedef struct {
    double pp_tok_s, pp_sd, tg_tok_s, tg_sd; /* mean and standard deviation over the repetitions */
    double pp_runs[QS_PERF_MAX_REPS], tg_runs[QS_PERF_MAX_REPS];
    int reps;
} qs_perf_result;
/* Measure m run through x (NULL: as loaded) on random token ids. */
qs_status qs_perf_run(const qs_model *m, const qs_exec *x, const qs_perf_opts *o, qs_perf_result *r);

#endif
