/* GGUF export: each family qscope writes loads back with the same logits;
 * weight-only variants become llama.cpp's blocks (grid=ggml results byte for
 * byte, qscope's groups of 32 with their codes and an fp16 scale) and keep
 * their ppl; what GGUF cannot hold is refused, and an existing file is
 * replaced only with force. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "export/export.h"
#include "methods/methods.h"
#include "model/model.h"
#include "read/read.h"
#include "run/run.h"
#include "stats/stats.h"
#include "harness.h"

/* logits of the first T reference ids (or of ids 1..T) under x */
static float *logits_of(const qs_model *m, const qs_exec *x, const int32_t *ids, int T) {
    qs_ctx *c = NULL;
    float *lg = malloc((size_t)T * m->cfg.vocab * sizeof *lg);
    if (!lg || qs_ctx_new(m, x, T, &c) || qs_forward(c, ids, T, lg, QS_LOGITS_ALL)) {
        free(lg);
        lg = NULL;
    }
    qs_ctx_free(c);
    return lg;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) w = fmax(w, fabs((double)a[i] - b[i]));
    return a && b ? w : INFINITY;
}

static const int32_t probe_ids[16] = {1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203, 29889, 13, 1576, 29871, 2};

/* ids valid for vocab */
static void probe(int vocab, int32_t *ids, int T) {
    for (int i = 0; i < T; i++) ids[i] = probe_ids[i % 16] % vocab;
}

static char tmpdir[64];
static void remove_tmpdir(void) { rmdir(tmpdir); }
static const char *tmp_path(const char *name) {
    static char p[256];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/qs_export_XXXXXX");
        if (!mkdtemp(tmpdir)) return NULL;
        atexit(remove_tmpdir); /* a filtered run may end before the test that removes it */
    }
    mkdir(tmpdir, 0700); /* again after a test removed it */
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

/* export m (or v) to a file, load it back, compare logits; returns the
 * largest difference */
static double round_trip(const qs_model *m, const qs_variant *v, const char *name, qs_model **back) {
    const char *out = tmp_path(name);
    qs_export_opts o = {.force = 1};
    *back = NULL;
    if (qs_export_gguf(m, v, out, &o)) {
        th_fail_at(__FILE__, __LINE__, "export %s: %s", name, qs_last_error());
        return INFINITY;
    }
    if (qs_model_load(out, NULL, back)) {
        th_fail_at(__FILE__, __LINE__, "load %s: %s", name, qs_last_error());
        return INFINITY;
    }
    int T = 12;
    int32_t ids[12];
    probe(m->cfg.vocab, ids, T);
    float *a = logits_of(m, v ? qs_variant_exec(v) : NULL, ids, T), *b = logits_of(*back, NULL, ids, T);
    double d = max_diff(a, b, (size_t)T * m->cfg.vocab);
    free(a);
    free(b);
    return d;
}

static void check_family(const char *dir, const char *family) {
    NEED_SHARED();
    char rel[128];
    snprintf(rel, sizeof rel, "models/arch/%s", dir);
    qs_model *m = NULL, *back = NULL;
    REQUIRE(qs_model_load(th_path(rel), NULL, &m) == QS_OK, "%s: %s", dir, qs_last_error());
    char name[64];
    snprintf(name, sizeof name, "%s.gguf", dir);
    double d = round_trip(m, NULL, name, &back);
    printf("  %s: %s -> GGUF %s, max |logit diff| %.3g\n", dir, m->dtype, back ? back->dtype : "-", d);
    CHECK(d <= 1e-4, "%s: exported GGUF logits differ by %.3g", dir, d);
    if (back) {
        CHECK(!strcmp(back->cfg.family, family), "%s: loads back as %s, want %s", dir, back->cfg.family, family);
        CHECK(back->cfg.n_layers == m->cfg.n_layers && back->cfg.head_dim == m->cfg.head_dim &&
                  back->cfg.n_kv_heads == m->cfg.n_kv_heads &&
                  (back->cfg.rope.kind == m->cfg.rope.kind ||
                   (m->cfg.rope.kind == QS_ROPE_LLAMA3 && back->cfg.rope.kind == QS_ROPE_DIVISORS)),
              "%s: the config did not survive", dir);
    }
    qs_model_free(back);
    qs_model_free(m);
    unlink(tmp_path(name));
}

TEST(export_gguf_llama3) { check_family("llama3", "llama"); }
TEST(export_gguf_llama_bf16) { check_family("llama-bf16", "llama"); }
TEST(export_gguf_llama_f16) { check_family("llama-f16", "llama"); }
/* llama.cpp runs Mistral as llama, without a sliding window: refused while
 * the window is shorter than the context */
TEST(export_gguf_mistral_window_refused) {
    NEED_SHARED();
    qs_model *m = NULL;
    REQUIRE(qs_model_load(th_path("models/arch/mistral"), NULL, &m) == QS_OK, "%s", qs_last_error());
    qs_export_opts o = {.force = 1};
    CHECK(qs_export_gguf(m, NULL, tmp_path("m.gguf"), &o) == QS_EUNSUPPORTED &&
              strstr(qs_last_error(), "sliding window of 32 on every layer"),
          "%s", qs_last_error());
    CHECK(access(tmp_path("m.gguf"), F_OK) != 0, "a refused export left a file");
    qs_model_free(m);
    /* Gemma-2 whose query_pre_attn_scalar is not llama.cpp's 1/sqrt(head_dim) */
    REQUIRE(qs_model_load(th_path("models/arch/gemma2"), NULL, &m) == QS_OK, "%s", qs_last_error());
    CHECK(qs_export_gguf(m, NULL, tmp_path("m.gguf"), &o) == QS_EUNSUPPORTED &&
              strstr(qs_last_error(), "query_pre_attn_scalar gives an attention scale of 0.176777; llama.cpp's gemma2 uses 0.25"),
          "%s", qs_last_error());
    qs_model_free(m);
}
TEST(export_gguf_qwen2) { check_family("qwen2", "qwen2"); }
TEST(export_gguf_qwen3) { check_family("qwen3", "qwen3"); }
TEST(export_gguf_phi3) { check_family("phi3", "phi3"); }

/* heldout ppl of the first windows under x */
static double ppl_of(const qs_model *m, const qs_exec *x, const int32_t *ids, size_t n) {
    qs_ctx *c;
    if (qs_ctx_new(m, x, 256, &c)) return NAN;
    qs_ppl_opts o = {.ctx = 256, .max_windows = 6};
    qs_ppl_result r;
    qs_status st = qs_eval_ppl(c, ids, (long)n, &o, &r);
    qs_ctx_free(c);
    return st ? NAN : r.ppl;
}

TEST(export_gguf_weight_only_variants) {
    NEED_SHARED();
    qs_model *m = NULL;
    REQUIRE(qs_model_load(th_path("models/llama-mini"), NULL, &m) == QS_OK, "%s", qs_last_error());
    char *text;
    size_t len, n = 0;
    int32_t *ids = NULL;
    REQUIRE(qs_io_read_all(th_path("data/heldout.txt"), &text, &len) == QS_OK, "%s", qs_last_error());
    qs_status st = qs_tok_encode(m->tok, text, len, 1, &ids, &n);
    free(text);
    REQUIRE(st == QS_OK, "%s", qs_last_error());
    /* spec, the type its matrices are written in, whether the values are the variant's bit for bit */
    const struct {
        const char *spec;
        uint32_t type;
        int exact;
    } cases[] = {
        {"rtn:w=4,group=32,sym=1", QS_WT_Q4_0, 0},
        {"rtn:w=8,group=32,sym=1", QS_WT_Q8_0, 0},
        {"rtn:w=4,group=32,sym=0", QS_WT_Q4_1, 0},
        {"rtn:w=4,group=32,sym=1,grid=ggml", QS_WT_Q4_0, 1},
        {"rtn:w=8,group=32,sym=1,grid=ggml", QS_WT_Q8_0, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        qs_variant *v = NULL;
        REQUIRE(qs_variant_new(m, cases[k].spec, NULL, &v) == QS_OK, "%s: %s", cases[k].spec, qs_last_error());
        qs_model *back = NULL;
        double d = round_trip(m, v, "v.gguf", &back);
        if (back) {
            CHECK(back->w.layers[1].down.wtype == cases[k].type, "%s: written as type %u, want %u", cases[k].spec,
                  back->w.layers[1].down.wtype, cases[k].type);
            double pv = ppl_of(m, qs_variant_exec(v), ids, n), pb = ppl_of(back, NULL, ids, n);
            printf("  %s: max |logit diff| %.3g, ppl %.5f variant, %.5f exported (rel %.2g)\n", cases[k].spec, d, pv, pb,
                   fabs(pb - pv) / pv);
            CHECK(fabs(pb - pv) <= 1e-4 * pv, "%s: ppl %.6f exported, %.6f the variant", cases[k].spec, pb, pv);
            if (cases[k].exact) CHECK(d == 0, "%s: llama.cpp's blocks copied, yet logits differ by %.3g", cases[k].spec, d);
        }
        qs_model_free(back);
        qs_variant_free(v);
    }
    unlink(tmp_path("v.gguf"));
    free(ids);
    qs_model_free(m);
}

/* rms of the logits of n ids under x against ref's (m's own) */
static double rms_diff(const float *ref, const qs_model *m, const qs_exec *x, const int32_t *ids, int n) {
    float *lg = logits_of(m, x, ids, n);
    double s = 0;
    size_t N = (size_t)n * m->cfg.vocab;
    if (!lg) return INFINITY;
    for (size_t i = 0; i < N; i++) s += ((double)lg[i] - ref[i]) * ((double)lg[i] - ref[i]);
    free(lg);
    return sqrt(s / N);
}

/* A llama-shaped random model whose widths are whole super-blocks of 256
 * (the fixtures' are not), for llama.cpp's k-quants. */
static qs_model *kq_model(int d_ff) {
    qs_config c = {.arch = QS_ARCH_LLAMA, .norm = QS_NORM_RMS, .act = QS_ACT_SILU, .d_model = 256, .n_layers = 2,
                   .n_heads = 4, .n_kv_heads = 2, .head_dim = 64, .d_ff = d_ff, .vocab = 320, .max_pos = 64,
                   .rope_theta = 10000, .norm_eps = 1e-5f};
    c.rope.dim = 64;
    snprintf(c.family, sizeof c.family, "llama");
    snprintf(c.arch_name, sizeof c.arch_name, "LlamaForCausalLM");
    qs_model *m = NULL;
    if (qs_model_synth(&c, 5, 0.05f, &m)) th_fail_at(__FILE__, __LINE__, "synth: %s", qs_last_error());
    return m;
}

TEST(rtn_kquant_variants) {
    /* rtn:grid=q4_k / q6_k (and with wq=gptq) hold every layer linear as
     * llama.cpp's Q4_K / Q6_K blocks (counted at their size), stay as close
     * to fp32 as qscope's own grid of the same groups (GPTQ: closer than
     * round to nearest), and export to GGUF byte for byte: loaded back, the
     * same logits exactly. */
    qs_model *m = kq_model(512);
    REQUIRE(m, "model");
    const struct {
        const char *spec, *canon, *std;
        uint32_t type;
        size_t block_bytes;
    } cases[] = {
        {"rtn:w=4,grid=q4_k", "rtn:w=4,grid=q4_k", "rtn:w=4,group=32", QS_WT_Q4_K, 144},
        {"rtn:grid=q6_k,sym=1", "rtn:w=6,grid=q6_k", "rtn:w=6,group=16,sym=1", QS_WT_Q6_K, 210},
        {"rtn:w=4,grid=q4_k,wq=gptq", "rtn:w=4,wq=gptq,grid=q4_k", "rtn:w=4,grid=q4_k", QS_WT_Q4_K, 144},
        {"rtn:w=6,grid=q6_k,wq=gptq", "rtn:w=6,wq=gptq,grid=q6_k", "rtn:w=6,grid=q6_k", QS_WT_Q6_K, 210},
    };
    /* calibration for GPTQ: random ids, as the model is random; the probe below is of the same kind */
    qs_calib cal = {.n_rows = 32, .ctx = 32};
    REQUIRE((cal.ids = malloc(sizeof(int32_t) * 32 * 32)), "alloc");
    for (int i = 0; i < 32 * 32; i++) cal.ids[i] = (int32_t)(((uint32_t)i * 2654435761u) >> 7) % m->cfg.vocab;
    int32_t held[48]; /* rms logit differences over other random ids */
    for (int i = 0; i < 48; i++) held[i] = (int32_t)(((uint32_t)(i + 7919) * 40503u) >> 3) % m->cfg.vocab;
    float *href = logits_of(m, NULL, held, 48);
    REQUIRE(href, "%s", qs_last_error());
    qs_variant_opts vo = {.calib = &cal};
    int T = 12;
    int32_t ids[12];
    probe(m->cfg.vocab, ids, T);
    float *ref = logits_of(m, NULL, ids, T);
    double ref_max = 0;
    for (size_t i = 0; ref && i < (size_t)T * m->cfg.vocab; i++) ref_max = fmax(ref_max, fabs(ref[i]));
    qs_variant *base = NULL;
    REQUIRE(ref && qs_variant_new(m, "fp32", NULL, &base) == QS_OK, "%s", qs_last_error());
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        qs_variant *v = NULL;
        REQUIRE(qs_variant_new(m, cases[k].spec, &vo, &v) == QS_OK, "%s: %s", cases[k].spec, qs_last_error());
        CHECK(!strcmp(qs_variant_spec(v), cases[k].canon), "%s: canonical '%s'", cases[k].spec,
              qs_variant_spec(v));
        const qs_weights *w = qs_variant_exec(v)->w;
        long long fp = 0, kq = 0;
        for (int l = 0; l < m->cfg.n_layers; l++) {
            qs_linear *ls[QS_LAYER_LINEARS];
            int nl = qs_layer_linears((qs_layer *)&w->layers[l], 0, ls);
            for (int j = 0; j < nl; j++) {
                if (!qs_linear_has(ls[j])) continue;
                CHECK(ls[j]->wq && !ls[j]->w && ls[j]->wtype == cases[k].type, "%s: layer %d linear %d held as %u",
                      cases[k].spec, l, j, ls[j]->wtype);
                fp += 4LL * ls[j]->n_out * ls[j]->n_in;
                kq += (long long)ls[j]->n_out * ls[j]->n_in / 256 * (long long)cases[k].block_bytes;
            }
        }
        CHECK(qs_variant_weight_bytes(v) == qs_variant_weight_bytes(base) - fp + kq, "%s: %lld bytes, want %lld",
              cases[k].spec, qs_variant_weight_bytes(v), qs_variant_weight_bytes(base) - fp + kq);
        double d = rms_diff(href, m, qs_variant_exec(v), held, 48);
        qs_variant *sv = NULL; /* qscope's own grid of the same groups (GPTQ: round to nearest), for scale */
        REQUIRE(qs_variant_new(m, cases[k].std, NULL, &sv) == QS_OK, "%s: %s", cases[k].std, qs_last_error());
        double ds = rms_diff(href, m, qs_variant_exec(sv), held, 48);
        qs_variant_free(sv);
        qs_model *back = NULL;
        char name[32];
        snprintf(name, sizeof name, "kq%zu.gguf", k);
        double e = round_trip(m, v, name, &back);
        printf("  %s: rms logit diff %.4g against fp32 (%s: %.4g; logits up to %.3g); GGUF round trip %.3g\n",
               cases[k].spec, d, cases[k].std, ds, ref_max, e);
        CHECK(d <= (k < 2 ? 1.25 : 1.0) * ds, "%s: logits %.4g from fp32's, %s's %.4g", cases[k].spec, d,
              cases[k].std, ds);
        CHECK(e == 0, "%s: exported blocks give logits %.3g away", cases[k].spec, e);
        if (back)
            CHECK(back->w.layers[1].down.wtype == cases[k].type && back->w.layers[0].q.wtype == cases[k].type,
                  "%s: written as type %u", cases[k].spec, back->w.layers[1].down.wtype);
        qs_model_free(back);
        unlink(tmp_path(name));
        qs_variant_free(v);
    }
    qs_variant_free(base);
    qs_calib_free(&cal);
    free(href);
    free(ref);
    qs_model_free(m);
}

TEST(rtn_kquant_refusals) {
    /* what the grid implies cannot be set otherwise, and rows that are not
     * whole super-blocks are refused naming the layer and width */
    qs_model *m = kq_model(320);
    REQUIRE(m, "model");
    const struct {
        const char *spec, *says;
    } cases[] = {
        {"rtn:w=4,grid=q4_k", "layer 0 down has 320 inputs"},
        {"rtn:w=6,grid=q6_k", "layer 0 down has 320 inputs"},
        {"rtn:w=3,grid=q4_k", "4-bit asymmetric (w=4), a scale and a min per 32; got w=3"},
        {"rtn:w=4,group=32,grid=q4_k", "its groups fixed; drop group=32"},
        {"rtn:w=4,sym=1,grid=q4_k", "drop sym=1"},
        {"rtn:w=4,grid=q6_k", "6-bit symmetric (w=6), a scale per 16; got w=4"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        qs_variant *v = NULL;
        qs_status st = qs_variant_new(m, cases[k].spec, NULL, &v);
        CHECK(st == QS_EARG && strstr(qs_last_error(), cases[k].says), "%s: %d %s", cases[k].spec, st,
              st ? qs_last_error() : "accepted");
        qs_variant_free(v);
    }
    qs_model_free(m);
}

TEST(export_gguf_refusals) {
    NEED_SHARED();
    qs_model *m = NULL;
    REQUIRE(qs_model_load(th_path("models/llama-mini"), NULL, &m) == QS_OK, "%s", qs_last_error());
    const char *out = tmp_path("r.gguf");
    /* an existing file is kept without force */
    REQUIRE(qs_io_write_atomic(out, "keep", 4) == QS_OK, "%s", qs_last_error());
    qs_export_opts o = {0};
    CHECK(qs_export_gguf(m, NULL, out, &o) == QS_EARG && strstr(qs_last_error(), "exists; give --force"), "%s",
          qs_last_error());
    char *s = NULL;
    size_t len = 0;
    qs_io_read_all(out, &s, &len);
    CHECK(s && len == 4 && !memcmp(s, "keep", 4), "the existing file was changed");
    free(s);
    unlink(out);
    /* what GGUF cannot hold: activation quantizers (unless weights only), groups not of 32 */
    const struct {
        const char *spec, *why;
        int weights_only_ok;
    } cases[] = {
        {"rtn:w=4,group=32,sym=1,a=8", "A8 activation quantizers", 1},
        {"rtn:w=4,group=32,sym=1,kv=4", "KV-cache quantizers", 1},
        {"rtn:w=4,group=128", "groups of 32", 0},
        {"rtn:w=3,group=32", "groups of 32", 0},
        {"int8", "LLM.int8()", 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        qs_variant *v = NULL;
        REQUIRE(qs_variant_new(m, cases[k].spec, NULL, &v) == QS_OK, "%s: %s", cases[k].spec, qs_last_error());
        qs_status st = qs_export_gguf(m, v, out, &o);
        CHECK(st == QS_EUNSUPPORTED && strstr(qs_last_error(), cases[k].why), "%s: %d %s", cases[k].spec, st,
              qs_last_error());
        CHECK(access(out, F_OK) != 0, "%s: a refused export left a file", cases[k].spec);
        qs_export_opts wo = {.weights_only = 1};
        st = qs_export_gguf(m, v, out, &wo);
        CHECK((st == QS_OK) == cases[k].weights_only_ok, "%s with weights_only: %d %s", cases[k].spec, st, qs_last_error());
        unlink(out);
        qs_variant_free(v);
    }
    qs_model_free(m);
    /* a family llama.cpp's GGUF reader in qscope has no name for */
    REQUIRE(qs_model_load(th_path("models/opt-mini"), NULL, &m) == QS_OK, "%s", qs_last_error());
    CHECK(qs_export_gguf(m, NULL, out, &o) == QS_EUNSUPPORTED && strstr(qs_last_error(), "export to a directory"), "%s",
          qs_last_error());
    qs_model_free(m);
    rmdir(tmpdir);
}
