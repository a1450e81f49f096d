/* Sliding-window perplexity against a direct computation from qs_forward's
 * logits, and the sampler: seeds, top-k, top-p and temperature, all on the
 * bundled model models/opt-mini. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/model.h"
#include "run/run.h"
#include "tok/tok.h"
#include "harness.h"

/* the bundled model and the ids of its eval text */
static int load_mini(qs_model **m, int32_t **ids, size_t *n) {
    char *text;
    size_t len;
    *m = NULL;
    *ids = NULL;
    if (qs_model_load("models/opt-mini", NULL, m) != QS_OK) return 0;
    if (qs_io_read_all("models/opt-mini/eval.txt", &text, &len) != QS_OK) return 0;
    qs_status st = qs_tok_encode((*m)->tok, text, len, 1, ids, n);
    free(text);
    return st == QS_OK;
}

/* -log softmax(row)[target], in double */
static double nll_of(const float *row, int vocab, int target) {
    double mx = row[0], sum = 0;
    for (int i = 1; i < vocab; i++)
        if (row[i] > mx) mx = row[i];
    for (int i = 0; i < vocab; i++) sum += exp(row[i] - mx);
    return -(row[target] - mx - log(sum));
}

TEST(ppl_sliding_window_matches_direct_nll) {
    qs_model *m;
    int32_t *ids;
    size_t n;
    REQUIRE(load_mini(&m, &ids, &n), "%s", qs_last_error());
    const int ctx = 64, stride = 24;
    const long used = 160; /* windows start at 0, 24, ..., 96 (the last ends at 160) */
    REQUIRE(n >= (size_t)used, "%zu ids", n);
    int vocab = m->cfg.vocab;
    qs_ctx *c;
    REQUIRE(qs_ctx_new(m, NULL, ctx, &c) == QS_OK, "%s", qs_last_error());
    qs_ppl_opts po = {.ctx = ctx, .stride = stride};
    qs_ppl_result r;
    REQUIRE(qs_eval_ppl(c, ids, used, &po, &r) == QS_OK, "%s", qs_last_error());

    /* direct: each token t in [1, used) scored once, by the first window
     * [b, b+ctx) that holds t with a prediction row t-1 >= b the previous
     * windows did not score, from that window's full logits */
    float *logits = malloc((size_t)ctx * vocab * sizeof *logits);
    REQUIRE(logits, "out of memory");
    double nll = 0;
    long count = 0, scored_to = 0; /* tokens [1, scored_to] are scored */
    int windows = 0;
    for (long b = 0; scored_to < used - 1; b += stride) {
        long e = b + ctx < used ? b + ctx : used;
        qs_ctx_reset(c);
        REQUIRE(qs_forward(c, ids + b, (int)(e - b), logits, QS_LOGITS_ALL) == QS_OK, "%s", qs_last_error());
        windows++;
        for (long t = scored_to + 1; t < e; t++) {
            if (t - 1 < b) continue; /* not predictable inside this window */
            nll += nll_of(logits + (size_t)(t - 1 - b) * vocab, vocab, ids[t]);
            count++;
        }
        scored_to = e - 1;
    }
    free(logits);
    CHECK(r.tokens == used - 1 && count == used - 1, "eval scored %ld tokens, direct %ld, want %ld", r.tokens,
          count, used - 1);
    CHECK(r.windows == windows && windows == 5, "eval ran %d windows, direct %d, want 5", r.windows, windows);
    CHECK(fabs(r.nll - nll / count) < 1e-4, "mean NLL: eval %.6f, direct %.6f", r.nll, nll / count);
    CHECK(fabs(r.ppl - exp(nll / count)) < 1e-3 * r.ppl, "ppl: eval %.5f, direct %.5f", r.ppl, exp(nll / count));
    CHECK(r.ctx == ctx, "ctx %d", r.ctx);

    /* stride == ctx scores the same tokens as non-overlapping windows but
     * for the one each window's first token cannot predict */
    qs_ppl_opts full = {.ctx = ctx};
    qs_ppl_result rf;
    REQUIRE(qs_eval_ppl(c, ids, 2 * ctx, &full, &rf) == QS_OK, "%s", qs_last_error());
    CHECK(rf.tokens == 2 * (ctx - 1) && rf.windows == 2, "non-overlapping: %ld tokens, %d windows", rf.tokens,
          rf.windows);
    qs_ctx_free(c);
    free(ids);
    qs_model_free(m);
}

/* logits of the eval text's first 16 tokens, the last row's */
static float *mini_logits(qs_model *m, const int32_t *ids, int *vocab) {
    qs_ctx *c;
    *vocab = m->cfg.vocab;
    float *l = malloc((size_t)*vocab * sizeof *l);
    if (!l || qs_ctx_new(m, NULL, 32, &c) != QS_OK) {
        free(l);
        return NULL;
    }
    if (qs_forward(c, ids, 16, l, QS_LOGITS_LAST) != QS_OK) {
        free(l);
        l = NULL;
    }
    qs_ctx_free(c);
    return l;
}

/* tokens with a larger logit than id's (0: id is an argmax) */
static int rank_of(const float *l, int vocab, int id) {
    int r = 0;
    for (int i = 0; i < vocab; i++) r += l[i] > l[id];
    return r;
}

TEST(sample_seed_top_k_top_p_temperature) {
    qs_model *m;
    int32_t *ids;
    size_t n;
    REQUIRE(load_mini(&m, &ids, &n), "%s", qs_last_error());
    int vocab;
    float *l = mini_logits(m, ids, &vocab);
    REQUIRE(l, "forward: %s", qs_last_error());
    float *scratch = malloc((size_t)2 * vocab * sizeof *scratch);
    REQUIRE(scratch, "out of memory");
    int greedy = 0;
    for (int i = 1; i < vocab; i++)
        if (l[i] > l[greedy]) greedy = i;

    /* temperature 0 is argmax; a temperature near 0 picks it too */
    qs_gen_opts o = qs_gen_defaults();
    qs_rng rng;
    qs_rng_seed(&rng, 1);
    o.temp = 0;
    CHECK(qs_gen_sample(l, vocab, &o, &rng, scratch) == greedy, "temp 0 is not the argmax %d", greedy);
    o.temp = 1e-4f;
    for (int k = 0; k < 50; k++) {
        int id = qs_gen_sample(l, vocab, &o, &rng, scratch);
        CHECK(id == greedy, "temp 1e-4 draw %d: %d, greedy %d", k, id, greedy);
    }

    /* top-k: only the k largest logits */
    o.temp = 1.5f;
    o.top_k = 5;
    o.top_p = 0;
    for (int k = 0; k < 300; k++) {
        int id = qs_gen_sample(l, vocab, &o, &rng, scratch);
        CHECK(id >= 0 && id < vocab && rank_of(l, vocab, id) < 5, "top-5 picked %d of rank %d", id,
              rank_of(l, vocab, id));
    }

    /* top-p: only the smallest prefix (by logit) whose probability reaches p */
    o.top_k = 0;
    o.top_p = 0.6f;
    o.temp = 1.0f;
    double mx = l[greedy], sum = 0;
    for (int i = 0; i < vocab; i++) sum += exp(l[i] - mx);
    for (int k = 0; k < 300; k++) {
        int id = qs_gen_sample(l, vocab, &o, &rng, scratch);
        REQUIRE(id >= 0 && id < vocab, "top-p picked %d", id);
        /* mass of the tokens with larger logits: below p, or id is outside the set */
        double above = 0;
        for (int i = 0; i < vocab; i++)
            if (l[i] > l[id]) above += exp(l[i] - mx) / sum;
        CHECK(above < 0.6 + 1e-4, "top-p 0.6 picked %d with %.4f of the mass above it", id, above);
    }

    /* the same seed gives the same draws; another seed other ones */
    o.top_p = 0;
    o.temp = 1.0f;
    int a[64], b[64], differ = 0;
    qs_rng_seed(&rng, 42);
    for (int k = 0; k < 64; k++) a[k] = qs_gen_sample(l, vocab, &o, &rng, scratch);
    qs_rng_seed(&rng, 42);
    for (int k = 0; k < 64; k++) b[k] = qs_gen_sample(l, vocab, &o, &rng, scratch);
    CHECK(!memcmp(a, b, sizeof a), "seed 42 twice gave different draws");
    qs_rng_seed(&rng, 43);
    for (int k = 0; k < 64; k++) differ += qs_gen_sample(l, vocab, &o, &rng, scratch) != a[k];
    CHECK(differ > 0, "seeds 42 and 43 gave the same 64 draws");
    free(scratch);
    free(l);
    free(ids);
    qs_model_free(m);
}

TEST(gen_run_same_seed_same_tokens_and_cold_is_greedy) {
    qs_model *m;
    int32_t *ids;
    size_t n;
    REQUIRE(load_mini(&m, &ids, &n), "%s", qs_last_error());
    qs_ctx *c;
    REQUIRE(qs_ctx_new(m, NULL, 64, &c) == QS_OK, "%s", qs_last_error());
    qs_gen_opts o = qs_gen_defaults();
    o.n_max = 12;
    o.stop_at_eos = 0;
    qs_gen_result g, s1, s2, cold;
    REQUIRE(qs_gen_run(c, m->tok, ids, 8, &o, &g) == QS_OK, "%s", qs_last_error());
    o.temp = 0.9f;
    o.top_k = 40;
    o.seed = 7;
    REQUIRE(qs_gen_run(c, m->tok, ids, 8, &o, &s1) == QS_OK, "%s", qs_last_error());
    REQUIRE(qs_gen_run(c, m->tok, ids, 8, &o, &s2) == QS_OK, "%s", qs_last_error());
    o.temp = 1e-4f;
    o.top_k = 0;
    REQUIRE(qs_gen_run(c, m->tok, ids, 8, &o, &cold) == QS_OK, "%s", qs_last_error());
    CHECK(g.n == 12 && s1.n == 12 && s2.n == 12 && cold.n == 12, "lengths %d %d %d %d", g.n, s1.n, s2.n, cold.n);
    CHECK(!memcmp(s1.ids, s2.ids, 12 * sizeof *s1.ids) && !strcmp(s1.text, s2.text),
          "seed 7 twice: '%s' vs '%s'", s1.text, s2.text);
    CHECK(!memcmp(g.ids, cold.ids, 12 * sizeof *g.ids), "temp 1e-4 '%s' vs greedy '%s'", cold.text, g.text);

    /* greedy is the argmax of qs_forward's logits, token by token */
    int vocab = m->cfg.vocab;
    float *l = malloc((size_t)vocab * sizeof *l);
    REQUIRE(l, "out of memory");
    qs_ctx_reset(c);
    REQUIRE(qs_forward(c, ids, 8, l, QS_LOGITS_LAST) == QS_OK, "%s", qs_last_error());
    for (int k = 0; k < 12; k++) {
        int best = 0;
        for (int i = 1; i < vocab; i++)
            if (l[i] > l[best]) best = i;
        CHECK(g.ids[k] == best, "greedy token %d: %d, argmax %d", k, g.ids[k], best);
        REQUIRE(qs_forward(c, &g.ids[k], 1, l, QS_LOGITS_LAST) == QS_OK, "%s", qs_last_error());
    }
    free(l);
    qs_gen_result_free(&g);
    qs_gen_result_free(&s1);
    qs_gen_result_free(&s2);
    qs_gen_result_free(&cold);
    qs_ctx_free(c);
    free(ids);
    qs_model_free(m);
}
