/* Every model family in ../shared/models/arch against transformers: logits
 * of both 128-token sequences to 1e-4, the mean NLL, and the 24-token greedy
 * continuation of the 8-token prefix (with the KV cache, token by token). */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "model/model.h"
#include "run/run.h"
#include "harness.h"

static cJSON *load_json(const char *path) {
    char *s;
    if (!path || qs_io_read_all(path, &s, NULL)) return NULL;
    cJSON *j = cJSON_Parse(s);
    free(s);
    return j;
}

/* little-endian 4-byte words of a file (int32 or float32) */
static void *read_words(const char *path, size_t *n) {
    char *s;
    size_t len;
    if (!path || qs_io_read_all(path, &s, &len)) return NULL;
    *n = len / 4;
    uint32_t *w = malloc(len + 4);
    for (size_t i = 0; i < *n; i++)
        w[i] = (uint32_t)(uint8_t)s[4 * i] | (uint32_t)(uint8_t)s[4 * i + 1] << 8 |
               (uint32_t)(uint8_t)s[4 * i + 2] << 16 | (uint32_t)(uint8_t)s[4 * i + 3] << 24;
    free(s);
    return w;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void check_family(const char *dir, const char *family) {
    NEED_SHARED();
    char rel[256];
    qs_model *m = NULL;
    snprintf(rel, sizeof rel, "models/arch/%s", dir);
    REQUIRE(qs_model_load(th_path(rel), NULL, &m) == QS_OK, "load %s: %s", dir, qs_last_error());
    CHECK(!strcmp(m->cfg.family, family), "%s: family %s, want %s", dir, m->cfg.family, family);
    snprintf(rel, sizeof rel, "models/arch/%s/reference/reference.json", dir);
    cJSON *ref = load_json(th_path(rel));
    snprintf(rel, sizeof rel, "models/arch/%s/reference/greedy.json", dir);
    cJSON *greedy = load_json(th_path(rel));
    size_t n_ids = 0, n_logits = 0;
    snprintf(rel, sizeof rel, "models/arch/%s/reference/ids.i32", dir);
    int32_t *ids = read_words(th_path(rel), &n_ids);
    snprintf(rel, sizeof rel, "models/arch/%s/reference/logits.f32", dir);
    float *want = read_words(th_path(rel), &n_logits);
    int V = m->cfg.vocab, T = (int)(n_ids / 2);
    qs_ctx *c = NULL;
    if (!ref || !greedy || !ids || !want || n_logits != n_ids * (size_t)V ||
        qs_ctx_new(m, NULL, 0, &c) != QS_OK) {
        CHECK(0, "%s: references or context (%s)", dir, qs_last_error());
        goto out;
    }
    float *got = malloc((size_t)T * V * sizeof *got);
    const cJSON *nll = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "mean_nll"), "per_sequence");
    for (int s = 0; s < 2; s++) {
        qs_ctx_reset(c);
        CHECK(qs_forward(c, ids + (size_t)s * T, T, got, QS_LOGITS_ALL) == QS_OK, "forward: %s", qs_last_error());
        double worst = 0, sum = 0;
        size_t at = 0;
        for (size_t i = 0; i < (size_t)T * V; i++) {
            double e = fabs((double)got[i] - want[(size_t)s * T * V + i]);
            if (e > worst) worst = e, at = i;
        }
        CHECK(worst <= 1e-4, "%s seq %d: max |logit diff| %.3g at position %zu token %zu", dir, s, worst, at / V,
              at % V);
        for (int t = 0; t + 1 < T; t++)
            sum += qs_ops_logsumexp(got + (size_t)t * V, V) - got[(size_t)t * V + ids[s * T + t + 1]];
        double want_nll = cJSON_GetArrayItem(nll, s)->valuedouble;
        CHECK(fabs(sum / (T - 1) - want_nll) < 1e-5, "%s seq %d: mean NLL %.7f, want %.7f", dir, s, sum / (T - 1),
              want_nll);
    }
    free(got);
    /* greedy with the cache: the prompt, then one token at a time */
    const cJSON *g = cJSON_GetObjectItem(greedy, "prefix_8_use_cache");
    const cJSON *prompt = cJSON_GetObjectItem(g, "prompt_ids"), *gen = cJSON_GetObjectItem(g, "generated_ids");
    int32_t p[8];
    for (int i = 0; i < 8; i++) p[i] = cJSON_GetArrayItem(prompt, i)->valueint;
    float *last = malloc((size_t)V * sizeof *last);
    qs_ctx_reset(c);
    int ok = qs_forward(c, p, 8, last, QS_LOGITS_LAST) == QS_OK, same = 1, n_gen = cJSON_GetArraySize(gen);
    for (int i = 0; ok && i < n_gen; i++) {
        int32_t tok = argmax(last, V);
        if (tok != cJSON_GetArrayItem(gen, i)->valueint) {
            same = 0;
            CHECK(0, "%s: greedy token %d is %d, want %d", dir, i, tok, cJSON_GetArrayItem(gen, i)->valueint);
            break;
        }
        if (i + 1 < n_gen) ok = qs_forward(c, &tok, 1, last, QS_LOGITS_LAST) == QS_OK;
    }
    CHECK(ok && same && n_gen == 24, "%s: greedy continuation (%s)", dir, ok ? "tokens differ" : qs_last_error());
    free(last);
out:
    qs_ctx_free(c);
    cJSON_Delete(ref);
    cJSON_Delete(greedy);
    free(ids);
    free(want);
    qs_model_free(m);
}

TEST(family_llama3_rope_scaling) { check_family("llama3", "llama"); }
TEST(family_llama_f16) { check_family("llama-f16", "llama"); }
TEST(family_llama_bf16) { check_family("llama-bf16", "llama"); }
TEST(family_mistral) { check_family("mistral", "mistral"); }
TEST(family_qwen2) { check_family("qwen2", "qwen2"); }
TEST(family_qwen3) { check_family("qwen3", "qwen3"); }
TEST(family_phi3) { check_family("phi3", "phi3"); }
TEST(family_phi2) { check_family("phi2", "phi"); }
TEST(family_gemma) { check_family("gemma", "gemma"); }
TEST(family_gemma2) { check_family("gemma2", "gemma2"); }
TEST(family_opt350_post_norm) { check_family("opt350", "opt"); }
TEST(family_neox) { check_family("neox", "neox"); }

#include "methods/methods.h"
#include "stats/stats.h"

/* mean NLL of the rows of cal under exec x */
static double mean_nll(const qs_model *m, const qs_exec *x, const qs_calib *cal) {
    qs_ctx *c = NULL;
    if (qs_ctx_new(m, x, cal->ctx, &c)) return NAN;
    int V = m->cfg.vocab, T = cal->ctx;
    float *lg = malloc((size_t)T * V * sizeof *lg);
    double sum = 0;
    for (int r = 0; r < cal->n_rows; r++) {
        qs_ctx_reset(c);
        const int32_t *ids = cal->ids + (size_t)r * T;
        if (qs_forward(c, ids, T, lg, QS_LOGITS_ALL)) sum = NAN;
        for (int t = 0; t + 1 < T; t++) sum += qs_ops_logsumexp(lg + (size_t)t * V, V) - lg[(size_t)t * V + ids[t + 1]];
    }
    free(lg);
    qs_ctx_free(c);
    return sum / ((double)cal->n_rows * (T - 1));
}

/* Every method on every family: 8-bit methods stay within 2% of the model's
 * NLL, 4-bit GPTQ within 30%, and SliceGPT at ratio 0 (a pure rotation)
 * keeps it where the family's blocks allow slicing; where they do not it
 * refuses, as RPTQ's reorder does on a post-norm model. */
TEST(family_methods_run_on_every_family) {
    NEED_SHARED();
    static const char *const dirs[] = {"llama3", "mistral", "qwen2", "qwen3", "phi3", "phi2",
                                       "gemma", "gemma2", "opt350", "neox"};
    static const struct {
        const char *spec;
        double tol; /* relative NLL change allowed */
    } specs[] = {{"rtn:w=8", 0.02}, {"int8", 0.02}, {"rptq:w=8,a=8,g=4", 0.02}, {"rptq:w=8,a=8,g=4,reorder=0", 0.02}, {"rtn:w=4,group=32,wq=gptq", 0.3},
                 {"slice:ratio=0", 1e-4}};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char rel[256];
        qs_model *m = NULL;
        snprintf(rel, sizeof rel, "models/arch/%s", dirs[i]);
        REQUIRE(qs_model_load(th_path(rel), NULL, &m) == QS_OK, "load %s: %s", dirs[i], qs_last_error());
        snprintf(rel, sizeof rel, "models/arch/%s/reference/ids.i32", dirs[i]);
        qs_calib cal;
        REQUIRE(qs_calib_from_ids_file(th_path(rel), 128, m->cfg.vocab, &cal) == QS_OK, "calib: %s", qs_last_error());
        double base = mean_nll(m, NULL, &cal);
        for (size_t k = 0; k < sizeof specs / sizeof *specs; k++) {
            qs_variant_opts o = {.calib = &cal};
            qs_variant *v = NULL;
            qs_status st = qs_variant_new(m, specs[k].spec, &o, &v);
            int sliceable = m->cfg.resid == QS_RESID_SEQ && !m->w.layers[0].post_attn_norm.dim;
            if (!strncmp(specs[k].spec, "slice", 5) && !sliceable) {
                CHECK(st == QS_EUNSUPPORTED && strstr(qs_last_error(), "SliceGPT"), "%s %s: %d %s", dirs[i],
                      specs[k].spec, st, qs_last_error());
                continue;
            }
            if (!strcmp(specs[k].spec, "rptq:w=8,a=8,g=4") && m->cfg.resid == QS_RESID_POST) {
                CHECK(st == QS_EUNSUPPORTED && strstr(qs_last_error(), "reorder=0"), "%s %s: %d %s", dirs[i],
                      specs[k].spec, st, qs_last_error());
                continue;
            }
            if (st) {
                CHECK(0, "%s %s: %s", dirs[i], specs[k].spec, qs_last_error());
                continue;
            }
            double nll = mean_nll(m, qs_variant_exec(v), &cal);
            CHECK(isfinite(nll) && fabs(nll - base) <= specs[k].tol * base, "%s %s: NLL %.5f vs %.5f", dirs[i],
                  specs[k].spec, nll, base);
            qs_variant_free(v);
        }
        qs_calib_free(&cal);
        qs_model_free(m);
    }
}

/* Phi-3.5's longrope on the phi3 model: with short factors of 1 and an
 * attention factor of 1, a pass up to original_max_position_embeddings is
 * plain RoPE (the reference logits); a longer pass switches every position
 * to the long factors, as transformers does; without an explicit
 * attention_factor it is sqrt(1 + ln(max/orig) / ln(orig)). */
static int copy_fixture(const char *from, const char *to, const char *name) {
    char a[512], b[512], *data;
    size_t len;
    snprintf(a, sizeof a, "%s/%s", from, name);
    snprintf(b, sizeof b, "%s/%s", to, name);
    if (qs_io_read_all(a, &data, &len)) return 0;
    int ok = qs_io_write_atomic(b, data, len) == QS_OK;
    free(data);
    return ok;
}

static qs_model *phi3_longrope(const char *dir, int explicit_attn) {
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", th_path("models/arch/phi3"));
    cJSON *cfg = load_json(p);
    if (!cfg) return NULL;
    cJSON_ReplaceItemInObject(cfg, "original_max_position_embeddings", cJSON_CreateNumber(128));
    cJSON *rs = cJSON_CreateObject();
    cJSON_AddStringToObject(rs, "type", "longrope");
    float s[8], l[8];
    for (int i = 0; i < 8; i++) s[i] = 1.0f, l[i] = 1.0f + 0.5f * i;
    cJSON_AddItemToObject(rs, "short_factor", cJSON_CreateFloatArray(s, 8));
    cJSON_AddItemToObject(rs, "long_factor", cJSON_CreateFloatArray(l, 8));
    if (explicit_attn) cJSON_AddNumberToObject(rs, "attention_factor", 1.0);
    cJSON_ReplaceItemInObject(cfg, "rope_scaling", rs);
    char *text = cJSON_Print(cfg);
    snprintf(p, sizeof p, "%s/config.json", dir);
    int ok = qs_io_write_atomic(p, text, strlen(text)) == QS_OK &&
             copy_fixture(th_path("models/arch/phi3"), dir, "model.safetensors");
    free(text);
    cJSON_Delete(cfg);
    qs_model *m = NULL;
    if (!ok || qs_model_load(dir, NULL, &m)) return NULL;
    return m;
}

TEST(family_phi3_longrope) {
    NEED_SHARED();
    char dir[] = "/tmp/qs_longrope_XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    qs_model *m = phi3_longrope(dir, 1);
    REQUIRE(m, "load: %s", qs_last_error());
    const qs_rope *r = &m->cfg.rope;
    CHECK(r->kind == QS_ROPE_LONGROPE && r->orig_max == 128 && r->attn_factor == 1.0f && r->dim == 16 &&
              r->long_factor[7] == 4.5f, "longrope %s from %d, attention %g", qs_rope_kind_str(r->kind), r->orig_max,
          r->attn_factor);
    size_t n_ids = 0, n_lg = 0;
    int32_t *ids = read_words(th_path("models/arch/phi3/reference/ids.i32"), &n_ids);
    float *want = read_words(th_path("models/arch/phi3/reference/logits.f32"), &n_lg);
    int V = m->cfg.vocab;
    qs_ctx *c = NULL;
    float *got = malloc((size_t)130 * V * sizeof *got);
    REQUIRE(ids && want && qs_ctx_new(m, NULL, 0, &c) == QS_OK, "references: %s", qs_last_error());
    CHECK(qs_forward(c, ids, 128, got, QS_LOGITS_ALL) == QS_OK, "%s", qs_last_error());
    double worst = 0;
    for (size_t i = 0; i < (size_t)128 * V; i++) worst = fmax(worst, fabs(got[i] - want[i]));
    CHECK(worst <= 1e-4, "128 positions (= orig): plain RoPE, max |diff| %.3g", worst);
    int32_t longer[130];
    memcpy(longer, ids, 128 * sizeof *ids);
    longer[128] = ids[128], longer[129] = ids[129];
    qs_ctx_reset(c);
    CHECK(qs_forward(c, longer, 130, got, QS_LOGITS_ALL) == QS_OK, "%s", qs_last_error());
    worst = 0;
    for (size_t i = 0; i < (size_t)128 * V; i++) worst = fmax(worst, fabs(got[i] - want[i]));
    CHECK(worst > 1e-2, "130 positions: the long factors apply to every position (max |diff| %.3g)", worst);
    qs_ctx_free(c);
    free(got);
    free(ids);
    free(want);
    qs_model_free(m);
    m = phi3_longrope(dir, 0);
    REQUIRE(m, "load: %s", qs_last_error());
    CHECK(fabsf(m->cfg.rope.attn_factor - (float)sqrt(1 + log(2.0) / log(128.0))) < 1e-7f, "attention factor %.7f",
          m->cfg.rope.attn_factor);
    qs_model_free(m);
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    rmdir(dir);
}

/* A variant of a bf16 model owns only what it changed, in the smallest form
 * that holds it: RPTQ's reorder alone keeps the weights bf16 (a permutation
 * is exact, so the NLL is the model's), with 4-bit weights they are packed
 * codes, never an fp32 copy; SliceGPT keeps its rotated and sliced matrices
 * and shortcuts in bf16 (at ratio 0 the NLL moves by bf16 rounding only). */
static int layer_types_are(qs_variant *v, int n_layers, uint32_t want_mask, uint32_t want) {
    for (int l = 0; l < n_layers; l++) {
        qs_linear *ls[QS_LAYER_LINEARS];
        int n = qs_layer_linears(&((qs_weights *)qs_variant_exec(v)->w)->layers[l], 0, ls);
        for (int j = 0; j < n; j++)
            if (qs_linear_has(ls[j]) && (ls[j]->w || (ls[j]->wtype & want_mask) != want)) return 0;
    }
    return 1;
}

static long long layer_bytes(qs_variant *v, int n_layers) {
    long long b = 0;
    for (int l = 0; l < n_layers; l++) {
        qs_linear *ls[QS_LAYER_LINEARS];
        int n = qs_layer_linears(&((qs_weights *)qs_variant_exec(v)->w)->layers[l], 1, ls);
        for (int j = 0; j < n; j++) b += qs_linear_has(ls[j]) ? qs_linear_stored_bytes(ls[j]) : 0;
    }
    return b;
}

TEST(family_variants_keep_weights_as_stored) {
    NEED_SHARED();
    qs_model *m = NULL;
    REQUIRE(qs_model_load(th_path("models/arch/llama-bf16"), NULL, &m) == QS_OK, "%s", qs_last_error());
    qs_calib cal;
    REQUIRE(qs_calib_from_ids_file(th_path("models/arch/llama-bf16/reference/ids.i32"), 128, m->cfg.vocab, &cal) ==
                QS_OK, "%s", qs_last_error());
    double base = mean_nll(m, NULL, &cal);
    qs_variant_opts o = {.calib = &cal};
    qs_variant *dense = NULL, *perm = NULL, *w4 = NULL, *sl0 = NULL, *sl = NULL;
    REQUIRE(qs_variant_new(m, "fp32", &o, &dense) == QS_OK, "%s", qs_last_error());
    CHECK(qs_variant_new(m, "rptq:g=4", &o, &perm) == QS_OK, "%s", qs_last_error());
    CHECK(qs_variant_new(m, "rptq:w=4,a=8,g=4", &o, &w4) == QS_OK, "%s", qs_last_error());
    CHECK(qs_variant_new(m, "slice:ratio=0", &o, &sl0) == QS_OK, "%s", qs_last_error());
    CHECK(qs_variant_new(m, "slice:ratio=0.25", &o, &sl) == QS_OK, "%s", qs_last_error());
    if (perm) {
        double nll = mean_nll(m, qs_variant_exec(perm), &cal);
        printf("  llama-bf16: NLL %.6f, reordered %.6f; weights %lld bytes, reordered %lld\n", base, nll,
               qs_variant_weight_bytes(dense), qs_variant_weight_bytes(perm));
        CHECK(fabs(nll - base) <= 1e-5 * base, "reorder alone changed the NLL: %.6f vs %.6f", nll, base);
        CHECK(layer_types_are(perm, m->cfg.n_layers, ~0u, QS_WT_BF16), "a reordered linear left bf16");
        CHECK(qs_variant_weight_bytes(perm) == qs_variant_weight_bytes(dense), "%lld vs %lld bytes",
              qs_variant_weight_bytes(perm), qs_variant_weight_bytes(dense));
    }
    if (w4) {
        CHECK(layer_types_are(w4, m->cfg.n_layers, QS_WT_QG, QS_WT_QG), "a 4-bit linear is not packed");
        long long a = layer_bytes(w4, m->cfg.n_layers), b = layer_bytes(dense, m->cfg.n_layers);
        CHECK(3 * a < b, "4-bit linears take %lld bytes, bf16 %lld", a, b); /* 1/4, and a scale per row */
    }
    if (sl0) {
        double nll = mean_nll(m, qs_variant_exec(sl0), &cal);
        printf("  llama-bf16: slice:ratio=0 NLL %.6f (model %.6f)\n", nll, base);
        CHECK(fabs(nll - base) <= 2e-3 * base, "slice at ratio 0 moved the NLL: %.6f vs %.6f", nll, base);
        CHECK(layer_types_are(sl0, m->cfg.n_layers, ~0u, QS_WT_BF16), "a sliced linear left bf16");
    }
    if (sl) {
        const qs_weights *w = qs_variant_exec(sl)->w;
        int ok = w->embed_q && w->embed_type == QS_WT_BF16 && !w->head.w && w->head.wtype == QS_WT_BF16;
        for (int l = 0; l < m->cfg.n_layers; l++)
            ok &= w->layers[l].attn_skip.wtype == QS_WT_BF16 && !w->layers[l].attn_skip.w &&
                  w->layers[l].mlp_skip.wtype == QS_WT_BF16 && !w->layers[l].mlp_skip.w;
        CHECK(ok && layer_types_are(sl, m->cfg.n_layers, ~0u, QS_WT_BF16), "slice:ratio=0.25 left bf16");
        double nll = mean_nll(m, qs_variant_exec(sl), &cal);
        CHECK(isfinite(nll) && fabs(nll - base) < 0.2 * base, "slice:ratio=0.25 NLL %.6f (model %.6f)", nll, base);
    }
    qs_variant_free(dense);
    qs_variant_free(perm);
    qs_variant_free(w4);
    qs_variant_free(sl0);
    qs_variant_free(sl);
    qs_calib_free(&cal);
    qs_model_free(m);
}
