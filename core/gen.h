/* gen.h — sampling and streamed generation.
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
#ifndef QS_GEN_H
#define QS_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "tok.h"

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

#endif
