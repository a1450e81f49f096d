#include "run/run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "kern/kern.h"


qs_status qs_eval_window_nll(qs_ctx *c, const int32_t *ids, int n, int from, float *scratch,
                             double *nll, long *count) {
    int vocab = qs_ctx_model(c)->cfg.vocab;
    /* the head runs in chunks of rows so a 50k vocabulary never needs a
     * (ctx, vocab) logits matrix */
    for (int r0 = from; r0 < n - 1; r0 += QS_EVAL_CHUNK) {
        int cnt = n - 1 - r0 < QS_EVAL_CHUNK ? n - 1 - r0 : QS_EVAL_CHUNK;
        qs_status st = qs_ctx_head_rows(c, r0, cnt, scratch);
        if (st) return st;
        for (int i = 0; i < cnt; i++) {
            const float *row = scratch + (size_t)i * vocab;
            *nll += qs_ops_logsumexp(row, vocab) - row[ids[r0 + i + 1]];
        }
        *count += cnt;
    }
    return QS_OK;
}

qs_status qs_eval_ppl(qs_ctx *c, const int32_t *ids, long n, const qs_ppl_opts *o, qs_ppl_result *r) {
    const qs_model *m = qs_ctx_model(c);
    int ctx = o->ctx > 0 ? o->ctx : qs_ctx_capacity(c);
    if (ctx > qs_ctx_capacity(c))
        return qs_fail(QS_EARG, "ppl: window of %d tokens is longer than the context (%d; the model allows %d)",
                       ctx, qs_ctx_capacity(c), m->cfg.max_pos);
    if (ctx < 2) return qs_fail(QS_EARG, "ppl: window of %d tokens is too short", ctx);
    if (o->stride < 0 || o->stride > ctx)
        return qs_fail(QS_EARG, "ppl: stride %d must be between 1 and the window (%d)", o->stride, ctx);
    if (n < ctx && o->stride == 0)
        return qs_fail(QS_EARG, "ppl: the text has %ld tokens, fewer than one window of %d", n, ctx);
    if (n < 2) return qs_fail(QS_EARG, "ppl: the text has %ld tokens, nothing to predict", n);
    if (o->llama_cpp && o->stride) return qs_fail(QS_EARG, "ppl: llama-perplexity's protocol has no stride");

    /* window starts */
    long total = o->stride ? (n > ctx ? (n - ctx + o->stride - 1) / o->stride + 1 : 1) : n / ctx;
    if (o->max_windows > 0 && total > o->max_windows) total = o->max_windows;

    float *scratch = malloc((size_t)QS_EVAL_CHUNK * m->cfg.vocab * sizeof(float));
    int32_t *win = o->llama_cpp ? malloc((size_t)ctx * sizeof *win) : NULL;
    if (!scratch || (o->llama_cpp && !win)) {
        free(scratch);
        free(win);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    double nll = 0, t0 = qs_io_clock();
    long count = 0, prev_end = 0;
    qs_status st = QS_OK;
    for (long wi = 0; wi < total; wi++) {
        long begin = o->stride ? wi * o->stride : wi * ctx;
        long end = begin + ctx < n ? begin + ctx : n;
        int len = (int)(end - begin);
        /* with a stride, score only tokens past the previous window's end */
        int from = o->stride ? (int)((prev_end > begin ? prev_end - begin : 0)) : 0;
        if (from > 0) from -= 1; /* row from-1 predicts token from */
        const int32_t *w = ids + begin;
        if (o->llama_cpp) { /* the window starts at BOS; its first half is context only */
            memcpy(win, w, (size_t)len * sizeof *win);
            if (o->bos >= 0) win[0] = o->bos;
            w = win;
            from = len / 2;
        }
        qs_ctx_reset(c);
        if ((st = qs_forward(c, w, len, NULL, QS_LOGITS_NONE))) break;
        if ((st = qs_eval_window_nll(c, w, len, from, scratch, &nll, &count))) break;
        prev_end = end;
        if (o->progress && o->progress(o->progress_ud, wi + 1, total)) {
            st = qs_fail(QS_ECANCEL, "ppl: cancelled after %ld of %ld windows", wi + 1, total);
            break;
        }
        if (end == n) {
            total = wi + 1;
            break;
        }
    }
    free(scratch);
    free(win);
    if (st) return st;
    /* a NaN or an infinity in a weight makes the whole result NaN: name it
     * (the loader checked the norms and biases; this is the matrices' pass) */
    if (!isfinite(nll) && (st = qs_model_check_finite(m, 1))) return qs_fail_prefix(st, "ppl is not finite");
    r->nll = count ? nll / count : 0;
    r->ppl = exp(r->nll);
    r->tokens = count;
    r->windows = (int)total;
    r->ctx = ctx;
    r->seconds = qs_io_clock() - t0;
    return QS_OK;
}
