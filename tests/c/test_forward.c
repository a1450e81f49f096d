/* Forward pass against the transformers reference outputs: prompt-0 logits,
 * top-5, 32 greedy tokens, WikiText-2 and heldout perplexity; stories260K
 * against an independent fp64 pass, from both the .bin and the .gguf. */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "run/run.h"
#include "base/base.h"
#include "model/model.h"
#include "harness.h"

static cJSON *load_json(const char *path) {
    char *s;
    if (qs_io_read_all(path, &s, NULL)) return NULL;
    cJSON *j = cJSON_Parse(s);
    free(s);
    return j;
}

static int json_ids(const cJSON *arr, int32_t *out, int cap) {
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) if (n < cap) out[n++] = (int32_t)e->valueint;
    return n;
}

/* prompt 0 logits, top-5 of every prompt, 32 greedy ids of every prompt */
static void check_hf_model(const char *name) {
    char dir[256], p[300];
    snprintf(dir, sizeof dir, "models/%s", name);
    qs_model *m = NULL;
    REQUIRE(qs_model_load(th_path(dir), NULL, &m) == QS_OK, "load %s: %s", name, qs_last_error());
    snprintf(p, sizeof p, "%s/reference/reference.json", dir);
    cJSON *ref = load_json(th_path(p));
    REQUIRE(ref, "reference.json of %s", name);
    int vocab = m->cfg.vocab;
    qs_ctx *c = NULL;
    REQUIRE(qs_ctx_new(m, NULL, 0, &c) == QS_OK, "ctx: %s", qs_last_error());
    const cJSON *prompts = cJSON_GetObjectItem(ref, "prompts");
    int pi = 0;
    const cJSON *pr;
    cJSON_ArrayForEach(pr, prompts) {
        int32_t ids[256], top5[5], greedy[32];
        int n = json_ids(cJSON_GetObjectItem(pr, "ids"), ids, 256);
        json_ids(cJSON_GetObjectItem(pr, "last_top5"), top5, 5);
        json_ids(cJSON_GetObjectItem(pr, "greedy32_ids"), greedy, 32);
        float *logits = malloc((size_t)n * vocab * sizeof(float));
        qs_ctx_reset(c);
        CHECK(qs_forward(c, ids, n, logits, QS_LOGITS_ALL) == QS_OK, "forward: %s", qs_last_error());
        if (pi == 0) {
            size_t nref;
            snprintf(p, sizeof p, "%s/reference/prompt0_logits.f32", dir);
            char *raw;
            REQUIRE(qs_io_read_all(th_path(p), &raw, &nref) == QS_OK, "%s", qs_last_error());
            CHECK(nref == (size_t)n * vocab * 4, "%s: prompt0 logits file has %zu floats, want %d x %d", name,
                  nref / 4, n, vocab);
            double maxd = 0;
            for (size_t i = 0; i < nref / 4 && i < (size_t)n * vocab; i++) {
                float r;
                memcpy(&r, raw + 4 * i, 4);
                double dd = fabs((double)r - logits[i]);
                if (dd > maxd) maxd = dd;
            }
            free(raw);
            printf("  %s prompt0 logits: max |diff| = %.3g\n", name, maxd);
            CHECK(maxd <= 1e-3, "%s: prompt0 logits max abs diff %.3g > 1e-3", name, maxd);
            /* top-5 logit values of the last row */
            const cJSON *tv = cJSON_GetObjectItem(pr, "last_top5_logits");
            for (int k = 0; k < 5; k++) {
                double want = cJSON_GetArrayItem(tv, k)->valuedouble;
                double got = logits[(size_t)(n - 1) * vocab + top5[k]];
                CHECK(fabs(want - got) < 1e-3, "%s: top-%d logit %.6f, want %.6f", name, k + 1, got, want);
            }
        }
        /* top-5 ids of the last position, in order */
        const float *last = logits + (size_t)(n - 1) * vocab;
        int got5[5];
        for (int k = 0; k < 5; k++) {
            int best = -1;
            for (int v = 0; v < vocab; v++) {
                int used = 0;
                for (int j = 0; j < k; j++) used |= got5[j] == v;
                if (!used && (best < 0 || last[v] > last[best])) best = v;
            }
            got5[k] = best;
            CHECK(got5[k] == top5[k], "%s prompt %d: top-%d id %d, want %d", name, pi, k + 1, got5[k], top5[k]);
        }
        free(logits);
        /* 32 greedy tokens through the KV cache */
        qs_gen_opts o = qs_gen_defaults();
        o.n_max = 32;
        o.stop_at_eos = 0;
        qs_gen_result r;
        CHECK(qs_gen_run(c, m->tok, ids, n, &o, &r) == QS_OK, "gen: %s", qs_last_error());
        int same = 0;
        while (same < r.n && same < 32 && r.ids[same] == greedy[same]) same++;
        CHECK(r.n == 32 && same == 32, "%s prompt %d: greedy ids agree for %d of 32", name, pi, same);
        const char *want_text = cJSON_GetObjectItem(pr, "greedy32_text")->valuestring;
        CHECK(r.text && strcmp(r.text, want_text) == 0, "%s prompt %d: greedy text '%s', want '%s'", name, pi,
              r.text ? r.text : "(null)", want_text);
        qs_gen_result_free(&r);
        pi++;
    }
    CHECK(pi == 3, "%d prompts", pi);
    qs_ctx_free(c);
    cJSON_Delete(ref);
    qs_model_free(m);
}

TEST(forward_opt_reference) {
    NEED_SHARED();
    check_hf_model("opt-mini");
}
TEST(forward_gpt2_reference) {
    NEED_SHARED();
    check_hf_model("gpt2-mini");
}
TEST(forward_llama_reference) {
    NEED_SHARED();
    check_hf_model("llama-mini");
}

/* ppl_first_4_windows on WikiText-2 (the reference ids) and
 * heldout.ppl_first_8_windows (our tokenization of heldout.txt) to 0.01% */
static void check_ppl(const char *name) {
    char p[300];
    snprintf(p, sizeof p, "models/%s", name);
    qs_model *m = NULL;
    REQUIRE(qs_model_load(th_path(p), NULL, &m) == QS_OK, "load %s: %s", name, qs_last_error());
    snprintf(p, sizeof p, "models/%s/reference/reference.json", name);
    cJSON *ref = load_json(th_path(p));
    REQUIRE(ref, "reference.json");
    snprintf(p, sizeof p, "models/%s/reference/wiki_test_ids.i32", name);
    size_t n;
    int32_t *ids = th_read_i32(th_path(p), &n);
    REQUIRE(ids, "wiki ids");
    qs_ctx *c;
    REQUIRE(qs_ctx_new(m, NULL, 512, &c) == QS_OK, "%s", qs_last_error());
    qs_ppl_opts o = {.ctx = 512, .max_windows = 4};
    qs_ppl_result r;
    CHECK(qs_eval_ppl(c, ids, (long)n, &o, &r) == QS_OK, "%s", qs_last_error());
    double want = cJSON_GetObjectItem(ref, "ppl_first_4_windows")->valuedouble;
    printf("  %s wiki ppl(4 windows) %.6f, reference %.6f (rel %.2g)\n", name, r.ppl, want,
           fabs(r.ppl / want - 1));
    CHECK(fabs(r.ppl / want - 1) < 1e-4, "%s: wiki ppl %.6f, want %.6f", name, r.ppl, want);
    CHECK(r.tokens == 4 * 511 && r.windows == 4, "%ld tokens scored in %d windows", r.tokens, r.windows);
    free(ids);

    char *text;
    size_t len;
    REQUIRE(qs_io_read_all(th_path("data/heldout.txt"), &text, &len) == QS_OK, "heldout");
    REQUIRE(qs_tok_encode(m->tok, text, len, 1, &ids, &n) == QS_OK, "%s", qs_last_error());
    const cJSON *h = cJSON_GetObjectItem(ref, "heldout");
    CHECK((long)n == (long)cJSON_GetObjectItem(h, "n_tokens")->valuedouble, "heldout: %zu tokens", n);
    o.max_windows = 8;
    CHECK(qs_eval_ppl(c, ids, (long)n, &o, &r) == QS_OK, "%s", qs_last_error());
    want = cJSON_GetObjectItem(h, "ppl_first_8_windows")->valuedouble;
    printf("  %s heldout ppl(8 windows) %.6f, reference %.6f (rel %.2g)\n", name, r.ppl, want,
           fabs(r.ppl / want - 1));
    CHECK(fabs(r.ppl / want - 1) < 1e-4, "%s: heldout ppl %.6f, want %.6f", name, r.ppl, want);
    free(text);
    free(ids);
    qs_ctx_free(c);
    cJSON_Delete(ref);
    qs_model_free(m);
}

TEST(ppl_opt_reference) {
    NEED_SHARED();
    check_ppl("opt-mini");
}
TEST(ppl_gpt2_reference) {
    NEED_SHARED();
    check_ppl("gpt2-mini");
}
TEST(ppl_llama_reference) {
    NEED_SHARED();
    check_ppl("llama-mini");
}

/* stories260K: ' Once' at 17.0235 after BOS, then the reference sentence */
static void check_stories(const char *file) {
    qs_model *m = NULL;
    REQUIRE(qs_model_load(th_path(file), NULL, &m) == QS_OK, "load %s: %s", file, qs_last_error());
    cJSON *ref = load_json(th_path("models/stories260K/reference.json"));
    REQUIRE(ref, "reference.json");
    qs_ctx *c;
    REQUIRE(qs_ctx_new(m, NULL, 0, &c) == QS_OK, "%s", qs_last_error());
    float *logits = malloc((size_t)m->cfg.vocab * sizeof(float));
    int32_t bos = 1;
    CHECK(qs_forward(c, &bos, 1, logits, QS_LOGITS_LAST) == QS_OK, "%s", qs_last_error());
    const cJSON *b = cJSON_GetObjectItem(ref, "bos_logits");
    int top = 0;
    for (int v = 1; v < m->cfg.vocab; v++)
        if (logits[v] > logits[top]) top = v;
    CHECK(top == cJSON_GetObjectItem(b, "top1_id")->valueint, "%s: top id %d", file, top);
    CHECK(fabs(logits[top] - cJSON_GetObjectItem(b, "top1_logit")->valuedouble) < 1e-3,
          "%s: top logit %.5f", file, logits[top]);
    /* tok512.bin stores the space itself, GGUF vocabularies store U+2581 */
    const char *piece = qs_tok_piece(m->tok, top);
    CHECK(!strcmp(piece, "▁Once") || !strcmp(piece, " Once"), "piece '%s'", piece);
    free(logits);

    const char *want = cJSON_GetObjectItem(ref, "greedy_from_bos")->valuestring;
    qs_gen_opts o = qs_gen_defaults();
    o.n_max = 200;
    o.stop_at_eos = 1;
    qs_gen_result r;
    CHECK(qs_gen_run(c, m->tok, NULL, 0, &o, &r) == QS_OK, "%s", qs_last_error());
    CHECK(r.text && strncmp(r.text, want, strlen(want)) == 0, "%s: greedy text '%s'", file, r.text);
    qs_gen_result_free(&r);

    /* mean NLL of the Lily sentence (45 ids) and of the wiki head (first 256 predictions) */
    const cJSON *lily = cJSON_GetObjectItem(ref, "lily_sentence");
    const char *lt = cJSON_GetObjectItem(lily, "text")->valuestring;
    int32_t *ids;
    size_t n;
    CHECK(qs_tok_encode(m->tok, lt, strlen(lt), 1, &ids, &n) == QS_OK, "%s", qs_last_error());
    CHECK(n == 45, "lily: %zu ids", n);
    float *scratch = malloc((size_t)QS_EVAL_CHUNK * m->cfg.vocab * sizeof(float));
    double nll = 0;
    long cnt = 0;
    qs_ctx_reset(c);
    CHECK(qs_forward(c, ids, (int)n, NULL, QS_LOGITS_NONE) == QS_OK, "%s", qs_last_error());
    CHECK(qs_eval_window_nll(c, ids, (int)n, 0, scratch, &nll, &cnt) == QS_OK, "%s", qs_last_error());
    double wantnll = cJSON_GetObjectItem(lily, "mean_nll")->valuedouble;
    CHECK(fabs(nll / cnt - wantnll) < 1e-4, "lily mean nll %.5f, want %.5f", nll / cnt, wantnll);
    free(ids);

    char *text;
    size_t len;
    REQUIRE(qs_io_read_all(th_path("data/wiki.test.raw"), &text, &len) == QS_OK, "wiki");
    /* the first 1200 characters (code points) */
    size_t bytes = 0;
    for (int chars = 0; chars < 1200 && bytes < len; chars++) {
        bytes++;
        while (bytes < len && ((unsigned char)text[bytes] & 0xC0) == 0x80) bytes++;
    }
    CHECK(qs_tok_encode(m->tok, text, bytes, 1, &ids, &n) == QS_OK, "%s", qs_last_error());
    const cJSON *wh = cJSON_GetObjectItem(ref, "wiki_head");
    CHECK(n == 759, "wiki head: %zu ids, want 759", n);
    qs_ctx_reset(c);
    nll = 0;
    cnt = 0;
    CHECK(qs_forward(c, ids, 257, NULL, QS_LOGITS_NONE) == QS_OK, "%s", qs_last_error());
    CHECK(qs_eval_window_nll(c, ids, 257, 0, scratch, &nll, &cnt) == QS_OK, "%s", qs_last_error());
    wantnll = cJSON_GetObjectItem(wh, "mean_nll_first_256_predictions")->valuedouble;
    CHECK(cnt == 256 && fabs(nll / cnt - wantnll) < 1e-4, "wiki head mean nll %.5f over %ld, want %.5f",
          nll / cnt, cnt, wantnll);
    free(ids);
    free(text);
    free(scratch);
    qs_ctx_free(c);
    cJSON_Delete(ref);
    qs_model_free(m);
}

TEST(forward_stories_bin) {
    NEED_SHARED();
    check_stories("models/stories260K/stories260K.bin");
}
TEST(forward_stories_gguf) {
    NEED_SHARED();
    check_stories("models/stories260K/stories260K.gguf");
}

/* Incremental decoding through the cache equals one batched pass. */
TEST(forward_kv_cache_matches_batch) {
    /* the bundled model always; the other fixtures when ../shared is there */
    const char *names[] = {"models/opt-mini", "models/gpt2-mini", "models/llama-mini"};
    for (int k = 0; k < 3; k++) {
        const char *path = k == 0 ? names[0] : th_path(names[k]);
        if (!path) continue;
        qs_model *m;
        REQUIRE(qs_model_load(path, NULL, &m) == QS_OK, "%s", qs_last_error());
        int n = 200, V = m->cfg.vocab;
        int32_t ids[200];
        for (int i = 0; i < n; i++) ids[i] = (i * 7919 + 13) % V;
        float *all = malloc((size_t)n * V * sizeof(float)), *one = malloc((size_t)V * sizeof(float));
        qs_ctx *c;
        REQUIRE(qs_ctx_new(m, NULL, 256, &c) == QS_OK, "%s", qs_last_error());
        CHECK(qs_forward(c, ids, n, all, QS_LOGITS_ALL) == QS_OK, "%s", qs_last_error());
        qs_ctx_reset(c);
        double maxd = 0, maxv = 0;
        /* 130 tokens in one batch (crosses a query block), then one at a time */
        float *part = malloc((size_t)130 * V * sizeof(float));
        CHECK(qs_forward(c, ids, 130, part, QS_LOGITS_ALL) == QS_OK, "%s", qs_last_error());
        for (size_t i = 0; i < (size_t)130 * V; i++) maxd = fmax(maxd, fabs(part[i] - all[i]));
        for (int i = 130; i < n; i++) {
            CHECK(qs_forward(c, &ids[i], 1, one, QS_LOGITS_LAST) == QS_OK, "%s", qs_last_error());
            for (int v = 0; v < V; v++) {
                maxd = fmax(maxd, fabs(one[v] - all[(size_t)i * V + v]));
                maxv = fmax(maxv, fabs(all[(size_t)i * V + v]));
            }
        }
        CHECK(maxd < 1e-4 * fmax(1, maxv), "%s: cached vs batched logits differ by %.3g", names[k], maxd);
        free(part);
        free(all);
        free(one);
        qs_ctx_free(c);
        qs_model_free(m);
    }
}

/* A context past the model's positions is refused with a clear message. */
TEST(forward_rejects_long_context) {
    qs_config cfg = {.arch = QS_ARCH_OPT, .d_model = 16, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2,
                     .head_dim = 8, .d_ff = 32, .vocab = 50, .max_pos = 32, .pos_offset = 2,
                     .act = QS_ACT_RELU, .norm = QS_NORM_LAYER, .norm_eps = 1e-5f, .tied_head = 1};
    qs_model *m;
    REQUIRE(qs_model_synth(&cfg, 1, 0.02f, &m) == QS_OK, "%s", qs_last_error());
    qs_ctx *c = NULL;
    CHECK(qs_ctx_new(m, NULL, 64, &c) == QS_EARG, "capacity past max_pos accepted");
    CHECK(strstr(qs_last_error(), "64") && strstr(qs_last_error(), "32"), "message: %s", qs_last_error());
    REQUIRE(qs_ctx_new(m, NULL, 0, &c) == QS_OK, "%s", qs_last_error());
    int32_t ids[40] = {0};
    CHECK(qs_forward(c, ids, 40, NULL, QS_LOGITS_NONE) == QS_EARG, "40 tokens into 32 accepted");
    ids[3] = 50;
    CHECK(qs_forward(c, ids, 4, NULL, QS_LOGITS_NONE) == QS_EARG, "id past the vocabulary accepted");
    CHECK(strstr(qs_last_error(), "50"), "message: %s", qs_last_error());
    qs_ppl_opts o = {.ctx = 16};
    qs_ppl_result r;
    CHECK(qs_eval_ppl(c, ids, 3, &o, &r) == QS_EARG, "3 tokens scored in a 16-token window");
    qs_ctx_free(c);
    qs_model_free(m);
}
