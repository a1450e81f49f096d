/* Variants: identity of fp32, round-to-nearest baselines, size accounting,
 * calibration requirements and chain errors. Uses the bundled model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "run/run.h"
#include "base/base.h"
#include "kern/kern.h"
#include "methods/methods.h"
#include "harness.h"

static qs_model *bundled(void) {
    qs_model *m = NULL;
    if (qs_model_load("models/opt-mini", NULL, &m) != QS_OK) return NULL;
    return m;
}

static double max_logit_diff(const qs_model *m, const qs_exec *a, const qs_exec *b, double *scale) {
    int32_t ids[64];
    for (int i = 0; i < 64; i++) ids[i] = (i * 37 + 5) % m->cfg.vocab;
    size_t nv = (size_t)64 * m->cfg.vocab;
    float *la = malloc(nv * sizeof(float)), *lb = malloc(nv * sizeof(float));
    qs_ctx *ca, *cb;
    qs_ctx_new(m, a, 64, &ca);
    qs_ctx_new(m, b, 64, &cb);
    qs_forward(ca, ids, 64, la, QS_LOGITS_ALL);
    qs_forward(cb, ids, 64, lb, QS_LOGITS_ALL);
    double d = 0, s = 0;
    for (size_t i = 0; i < nv; i++) {
        d = fmax(d, fabs(la[i] - lb[i]));
        s = fmax(s, fabs(la[i]));
    }
    qs_ctx_free(ca);
    qs_ctx_free(cb);
    free(la);
    free(lb);
    if (scale) *scale = s;
    return d;
}

TEST(variant_fp32_is_the_model) {
    qs_model *m = bundled();
    REQUIRE(m, "bundled model: %s", qs_last_error());
    qs_variant *v;
    REQUIRE(qs_variant_new(m, "fp32", NULL, &v) == QS_OK, "%s", qs_last_error());
    CHECK(max_logit_diff(m, NULL, qs_variant_exec(v), NULL) == 0, "fp32 variant changes logits");
    CHECK(qs_variant_weight_bytes(v) == qs_model_weight_bytes(m), "%lld vs %lld bytes", qs_variant_weight_bytes(v),
          qs_model_weight_bytes(m));
    CHECK(qs_variant_params(v) == qs_model_params(m), "params");
    CHECK(qs_variant_kv_bytes_per_token(v) == qs_ctx_kv_bytes_per_token(m), "kv bytes");
    qs_variant_free(v);
    qs_model_free(m);
}

/* The bytes a decoded token reads: every weight but the learned positions (OPT's token table is
 * its head, read whole each token); a variant changes both counts by the same bytes */
TEST(variant_token_bytes) {
    qs_model *m = bundled();
    REQUIRE(m, "bundled model: %s", qs_last_error());
    const qs_config *c = &m->cfg;
    REQUIRE(m->w.pos_embed && qs_head_tied(&m->w), "opt-mini has learned positions and a tied head");
    long long pos = 4LL * (c->max_pos + c->pos_offset) * c->d_model;
    const char *specs[2] = {"fp32", "rtn:w=4,group=64"};
    for (int i = 0; i < 2; i++) {
        qs_variant *v;
        REQUIRE(qs_variant_new(m, specs[i], NULL, &v) == QS_OK, "%s", qs_last_error());
        CHECK(qs_variant_weight_bytes(v) - qs_variant_token_bytes(v) == pos, "%s: %lld - %lld, want %lld", specs[i],
              qs_variant_weight_bytes(v), qs_variant_token_bytes(v), pos);
        qs_variant_free(v);
    }
    qs_model_free(m);
    /* the read probe, fast and plain kernels, on a length that ends inside a chunk and a vector */
    size_t n = (3u << 20) + 77;
    unsigned char *buf = malloc(n);
    REQUIRE(buf, "malloc");
    memset(buf, 3, n);
    const char *kernels[2] = {"ref", "auto"};
    for (int k = 0; k < 2; k++) {
        qs_wmat_set_kernel(kernels[k]);
        double r = qs_read_rate(buf, n, 2);
        CHECK(r > 0 && isfinite(r), "%s: read rate %g", kernels[k], r);
    }
    free(buf);
}

TEST(variant_rtn_weights_and_accounting) {
    qs_model *m = bundled();
    REQUIRE(m, "bundled model: %s", qs_last_error());
    const qs_config *c = &m->cfg;
    qs_variant *v;
    REQUIRE(qs_variant_new(m, "rtn:w=4,group=64", NULL, &v) == QS_OK, "%s", qs_last_error());
    /* hand count: 4-bit codes + fp16 scale and zero per group of 64 for the
     * six linears of each layer; fp32 biases, norms, position embeddings;
     * the token embedding as the file stores it (F16: 2 bytes a value) */
    long long lin = 0, per_layer[6][2] = {{192, 192}, {192, 192}, {192, 192}, {192, 192}, {768, 192}, {192, 768}};
    for (int k = 0; k < 6; k++) {
        long long no = per_layer[k][0], ni = per_layer[k][1];
        lin += no * ni / 2 + no * (ni / 64) * 4 + 4 * no;
    }
    CHECK(m->w.embed_q && m->w.embed_type == QS_WT_F16, "the bundled model's embedding is kept as F16");
    long long want = c->n_layers * (lin + 4 * 4 * c->d_model) + 2LL * c->vocab * c->d_model +
                     4LL * (c->max_pos + c->pos_offset) * c->d_model + 4 * 2 * c->d_model;
    CHECK(qs_variant_weight_bytes(v) == want, "rtn:w=4,group=64 bytes %lld, hand count %lld", qs_variant_weight_bytes(v), want);
    /* the quantized q weights take at most 16 values per group of 64 */
    const qs_linear *q = &qs_variant_exec(v)->w->layers[2].q;
    CHECK(!q->w && q->wq && q->wtype == qs_wt_qg(4, 6) && q->bits == 4 && q->group == 64,
          "q kept packed: 4-bit codes and a scale per group of 64");
    /* the packed codes decode to exactly the round-to-nearest values */
    float *qtmp, *mtmp, *want_w = malloc((size_t)192 * 192 * sizeof *want_w);
    const float *qw = qs_linear_f32(q, &qtmp), *mw = qs_linear_f32(&m->w.layers[2].q, &mtmp);
    REQUIRE(qw && mw && want_w, "%s", qs_last_error());
    CHECK(qs_quant_weight_rtn(mw, 192, 192, 4, 64, 0, want_w) == QS_OK &&
              memcmp(want_w, qw, (size_t)192 * 192 * sizeof *qw) == 0,
          "packed codes decode to qs_quant_weight_rtn's values");
    free(want_w);
    free(mtmp);
    for (int g = 0; g < 3; g++) {
        float vals[64];
        int nv = 0;
        for (int i = 0; i < 64; i++) {
            float x = qw[5 * 192 + g * 64 + i];
            int seen = 0;
            for (int k = 0; k < nv; k++) seen |= vals[k] == x;
            if (!seen) vals[nv++] = x;
        }
        CHECK(nv <= 16, "group %d has %d levels", g, nv);
    }
    free(qtmp);
    /* the model's own tensors are untouched */
    CHECK(m->w.layers[2].q.bits == 0, "base model modified");
    qs_variant_free(v);
    qs_model_free(m);
}

TEST(variant_static_activations_need_calibration) {
    qs_model *m = bundled();
    REQUIRE(m, "bundled model: %s", qs_last_error());
    qs_variant *v = NULL;
    CHECK(qs_variant_needs_calib("rtn:a=8,act=tensor") == 1 && qs_variant_needs_calib("rtn:a=8,act=token") == 0 &&
              qs_variant_needs_calib("rptq:W4A4") == 1 && qs_variant_needs_calib("int8") == 0 &&
              qs_variant_needs_calib("rpqt") == -1,
          "needs_calib");
    CHECK(qs_variant_new(m, "rtn:a=8,act=tensor", NULL, &v) == QS_EARG, "static activations without calibration");
    CHECK(strstr(qs_last_error(), "calibration"), "message: %s", qs_last_error());
    /* with calibration: per-tensor quantizers whose scale covers every channel's range */
    char *text;
    size_t len;
    REQUIRE(qs_io_read_all("models/opt-mini/calib.txt", &text, &len) == QS_OK, "%s", qs_last_error());
    qs_calib cal;
    REQUIRE(qs_calib_from_text(m->tok, text, len, 256, 4, &cal) == QS_OK, "%s", qs_last_error());
    free(text);
    qs_variant_opts o = {.calib = &cal};
    REQUIRE(qs_variant_new(m, "rtn:a=8,act=tensor", &o, &v) == QS_OK, "%s", qs_last_error());
    const qs_exec *x = qs_variant_exec(v);
    const qs_actq *aq = &x->aq[3 * QS_SITE_COUNT + QS_SITE_MLP_IN];
    CHECK(aq->bits == 8 && aq->mode == QS_AQ_STATIC && aq->scale, "mlp_in quantizer");
    for (int i = 1; i < m->cfg.d_model; i++) CHECK(aq->scale[i] == aq->scale[0], "per-tensor scale differs at %d", i);
    qs_stats *st;
    REQUIRE(qs_stats_collect(m, NULL, &cal, NULL, NULL, NULL, &st) == QS_OK, "%s", qs_last_error());
    const qs_site_stats *s = qs_stats_site(st, 3, QS_SITE_MLP_IN);
    float lo = 0, hi = 0;
    for (int i = 0; i < s->dim; i++) {
        lo = fminf(lo, s->min[i]);
        hi = fmaxf(hi, s->max[i]);
    }
    CHECK(fabsf(aq->scale[0] - (hi - lo) / 255) < 1e-6f * (hi - lo), "scale %g for range [%g, %g]", aq->scale[0], lo, hi);
    CHECK(qs_variant_kv_bytes_per_token(v) == 2LL * 6 * 192, "KV bytes %lld", qs_variant_kv_bytes_per_token(v));
    qs_stats_free(st);
    qs_variant_free(v);
    qs_calib_free(&cal);
    qs_model_free(m);
}

/* heldout perplexity of ids through variant `spec` over max_windows windows
 * of 512; the variant and its context stay open for the caller (*v, *c,
 * freed by the caller; NULL on failure) */
static int spec_ppl(const qs_model *m, const char *spec, const int32_t *ids, size_t n, int max_windows,
                    qs_variant **v, qs_ctx **c, double *ppl) {
    *v = NULL;
    *c = NULL;
    if (qs_variant_new(m, spec, NULL, v) != QS_OK) return 0;
    if (qs_ctx_new(m, qs_variant_exec(*v), 512, c) != QS_OK) return 0;
    qs_ppl_opts o = {.ctx = 512, .max_windows = max_windows};
    qs_ppl_result r;
    if (qs_eval_ppl(*c, ids, (long)n, &o, &r) != QS_OK) return 0;
    *ppl = r.ppl;
    return 1;
}

TEST(variant_baselines_order_on_eval_text) {
    /* more bits, less damage: W8 ~ fp32 < W4 per-group < W4 per-row < W3 */
    qs_model *m = bundled();
    REQUIRE(m, "bundled model: %s", qs_last_error());
    char *text;
    size_t len;
    int32_t *ids;
    size_t n;
    REQUIRE(qs_io_read_all("models/opt-mini/eval.txt", &text, &len) == QS_OK, "%s", qs_last_error());
    REQUIRE(qs_tok_encode(m->tok, text, len, 1, &ids, &n) == QS_OK, "%s", qs_last_error());
    free(text);
    const char *specs[] = {"fp32", "rtn:w=8", "rtn:w=4,group=64", "rtn:w=4", "rtn:w=3"};
    double ppl[5];
    for (int i = 0; i < 5; i++) {
        qs_variant *v;
        qs_ctx *c;
        REQUIRE(spec_ppl(m, specs[i], ids, n, 4, &v, &c, &ppl[i]), "%s: %s", specs[i], qs_last_error());
        printf("  %-18s ppl %.4f\n", specs[i], ppl[i]);
        qs_ctx_free(c);
        qs_variant_free(v);
    }
    CHECK(fabs(ppl[1] / ppl[0] - 1) < 0.01, "W8 within 1%% of fp32");
    CHECK(ppl[2] < ppl[3] && ppl[3] < ppl[4] && ppl[1] < ppl[2], "ordering");
    free(ids);
    qs_model_free(m);
}

/* LLM.int8() at tau = 6 stays within 1% of fp32 on heldout text; the
 * tau = 0 (vector-wise) and per-tensor baselines are reported beside it. */
static void check_int8(const char *name) {
    char p[256];
    snprintf(p, sizeof p, "models/%s", name);
    qs_model *m;
    REQUIRE(qs_model_load(th_path(p), NULL, &m) == QS_OK, "%s", qs_last_error());
    char *text;
    size_t len;
    int32_t *ids;
    size_t n;
    REQUIRE(qs_io_read_all(th_path("data/heldout.txt"), &text, &len) == QS_OK, "%s", qs_last_error());
    REQUIRE(qs_tok_encode(m->tok, text, len, 1, &ids, &n) == QS_OK, "%s", qs_last_error());
    free(text);
    const char *specs[] = {"fp32", "int8:threshold=6", "int8:threshold=0", "int8:threshold=0,act=tensor"};
    double ppl[4];
    int outl_total = 0, outl_layers = 0;
    for (int i = 0; i < 4; i++) {
        qs_variant *v;
        qs_ctx *c;
        REQUIRE(spec_ppl(m, specs[i], ids, n, 8, &v, &c, &ppl[i]), "%s: %s", specs[i], qs_last_error());
        if (i == 1)
            for (int l = 0; l < m->cfg.n_layers; l++) {
                const int *ol = qs_ctx_kernel_counts(c, l);
                REQUIRE(ol, "no outlier counts for an int8 variant");
                int t = ol[0] + ol[1] + ol[2] + ol[3];
                outl_total += t;
                outl_layers += t > 0;
            }
        if (i == 0) CHECK(qs_ctx_kernel_counts(c, 0) == NULL, "fp32 reports int8 outliers");
        if (i > 0) {
            CHECK(qs_variant_weight_bytes(v) < qs_model_weight_bytes(m) / 2 + 4LL * m->cfg.vocab * m->cfg.d_model,
                  "int8 bytes %lld", qs_variant_weight_bytes(v));
            CHECK(qs_variant_params(v) == qs_model_params(m), "int8 changes the parameter count: %lld vs %lld",
                  qs_variant_params(v), qs_model_params(m));
        }
        qs_ctx_free(c);
        qs_variant_free(v);
    }
    printf("  %s heldout ppl (8 x 512): fp32 %.4f | int8 tau=6 %.4f (%+.2f%%) | tau=0 %.4f | per-tensor %.4f; "
           "outlier columns in %d layers (%d in all)\n", name, ppl[0], ppl[1], 100 * (ppl[1] / ppl[0] - 1), ppl[2], ppl[3],
           outl_layers, outl_total);
    CHECK(fabs(ppl[1] / ppl[0] - 1) < 0.01, "%s: int8 at tau 6 is %.3f%% from fp32", name, 100 * (ppl[1] / ppl[0] - 1));
    CHECK(ppl[1] <= ppl[2] * 1.0001, "%s: decomposition %.4f worse than none %.4f", name, ppl[1], ppl[2]);
    free(ids);
    qs_model_free(m);
}

TEST(variant_int8_opt) {
    NEED_SHARED();
    check_int8("opt-mini");
}
TEST(variant_int8_gpt2) {
    NEED_SHARED();
    check_int8("gpt2-mini");
}
TEST(variant_int8_llama) {
    NEED_SHARED();
    check_int8("llama-mini");
}

TEST(variant_chains_that_cannot_stack) {
    qs_model *m = bundled();
    REQUIRE(m, "bundled model: %s", qs_last_error());
    struct {
        const char *spec, *says;
    } bad[] = {
        {"int8+rtn:w=4", "already int8"},
        {"int8+slice:ratio=0.25", "put it first"},
        {"rtn:w=4+int8", "already 4-bit"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qs_variant *v = NULL;
        CHECK(qs_variant_new(m, bad[i].spec, NULL, &v) == QS_EARG && !v, "%s accepted", bad[i].spec);
        CHECK(strstr(qs_last_error(), bad[i].says), "%s: message '%s'", bad[i].spec, qs_last_error());
    }
    qs_model_free(m);
}

/* A chain that would not fit in the memory there is, is refused before it
 * allocates, naming the estimate and what to lower. */
TEST(variant_refuses_what_would_not_fit) {
    qs_model *m = bundled();
    REQUIRE(m, "bundled model: %s", qs_last_error());
    long long lin = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        qs_linear *ls[QS_LAYER_LINEARS];
        int n = qs_layer_linears(&m->w.layers[l], 0, ls);
        for (int j = 0; j < n; j++) lin += qs_linear_has(ls[j]) ? (long long)ls[j]->n_out * ls[j]->n_in : 0;
    }
    CHECK(qs_variant_estimate(m, "rptq:w=4,a=16,wgroups=cluster", NULL) >= 4 * lin,
          "rptq's per-cluster weight grids are held as fp32 values");
    CHECK(qs_variant_estimate(m, "rptq:w=4,a=16", NULL) < 2 * lin, "rptq:w=4 holds packed 4-bit codes and one layer");
    CHECK(qs_variant_estimate(m, "rtn:w=4", NULL) < lin, "rtn:w=4 holds packed 4-bit codes");
    CHECK(qs_variant_estimate(m, "rtn:a=8", NULL) == 0 && qs_variant_estimate(m, "fp32", NULL) == 0, "nothing copied");
    CHECK(qs_variant_estimate(m, "bogus", NULL) == -1, "a bad spec");
    setenv("QSCOPE_MAX_MEMORY_MB", "1", 1);
    qs_variant *v = NULL;
    qs_status st = qs_variant_new(m, "rtn:w=4,wq=gptq", NULL, &v);
    CHECK(st == QS_ENOMEM && v == NULL && strstr(qs_last_error(), "needs about") &&
              strstr(qs_last_error(), "fewer weight bits"), "%d: %s", st, qs_last_error());
    CHECK(qs_variant_new(m, "rtn:a=8", NULL, &v) == QS_OK, "an activation-only chain allocates nothing: %s",
          qs_last_error());
    qs_variant_free(v);
    unsetenv("QSCOPE_MAX_MEMORY_MB");
    qs_model_free(m);
}
