/* eval.h — perplexity by the papers' protocol.
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
#ifndef QS_EVAL_H
#define QS_EVAL_H

#include <stdint.h>

#include "forward.h"

typedef struct {
    int ctx;                 /* window length; 0: the context's capacity */
    int stride;              /* 0: non-overlapping windows */
    int max_windows;         /* 0: all */
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

#endif
