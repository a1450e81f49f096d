/* fuzz_model.h — what the model targets do with a model that loaded: a
 * forward pass over a few tokens (every weight read, the non-finite checks
 * run), and the tokenizer, when there is one, on fz_text. */
#ifndef QS_FUZZ_MODEL_H
#define QS_FUZZ_MODEL_H

#include <stdlib.h>

#include "model/model.h"
#include "run/run.h"
#include "tok/tok.h"

static void fz_use_model(qs_model *m) {
    /* a model whose matrices alone exceed 64 MB is read no further: the
     * fuzzer's memory limit is the point then, not the forward pass */
    if (qs_model_weight_bytes(m) > (64 << 20)) return;
    if (m->tok) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (qs_tok_encode(m->tok, fz_text, fz_text_len, 1, &ids, &n) == QS_OK) {
            char *s = NULL;
            size_t len = 0;
            if (qs_tok_decode(m->tok, ids, n, 0, &s, &len) == QS_OK) free(s);
        }
        free(ids);
    }
    qs_ctx *c = NULL;
    if (qs_ctx_new(m, NULL, 4, &c) != QS_OK) return;
    int v = m->cfg.vocab;
    int32_t ids[3] = {0, (int32_t)(v > 1 ? v - 1 : 0), (int32_t)(v / 2)};
    float *logits = malloc((size_t)3 * (size_t)v * sizeof *logits);
    if (logits) qs_forward(c, ids, 3, logits, QS_LOGITS_ALL);
    free(logits);
    qs_ctx_free(c);
}

#endif
