/* The arch families from GGUF files: each ../shared/models/arch model is
 * converted here as llama.cpp's convert_hf_to_gguf.py converts it (tensor
 * names, metadata keys, q/k rows interleaved for llama, Gemma's norms stored
 * as 1 + w, llama3's rope_freqs divisors), loaded back by qs_model_load and
 * held to transformers' reference: logits to 1e-4, or for Gemma-2, whose
 * query_pre_attn_scalar GGUF does not carry (llama.cpp scales by
 * 1/sqrt(head_dim)), transformers' NLL with that scalar set to head_dim. */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "model/model.h"
#include "read/read.h"
#include "run/run.h"
#include "harness.h"

static cJSON *json_file(const char *path) {
    char *s;
    if (!path || qs_io_read_all(path, &s, NULL)) return NULL;
    cJSON *j = cJSON_Parse(s);
    free(s);
    return j;
}

static double num(const cJSON *o, const char *k, double def) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* HF rotate-half rows -> llama.cpp's interleaved rows (the converter's permute) */
static void interleave(float *dst, const float *src, int heads, int hd, int n_in) {
    for (int h = 0; h < heads; h++)
        for (int j = 0; j < hd / 2; j++)
            for (int k = 0; k < 2; k++)
                memcpy(dst + ((size_t)h * hd + 2 * j + k) * n_in, src + ((size_t)h * hd + k * (hd / 2) + j) * n_in,
                       (size_t)n_in * sizeof *dst);
}

/* the GGUF name of an HF tensor, or NULL to skip it */
static const char *gguf_name(const char *arch, const char *hf, char *buf, size_t cap) {
    static const char *const map[][2] = {
        {"input_layernorm", "attn_norm"},        {"self_attn.q_proj", "attn_q"},
        {"self_attn.k_proj", "attn_k"},          {"self_attn.v_proj", "attn_v"},
        {"self_attn.o_proj", "attn_output"},     {"self_attn.qkv_proj", "attn_qkv"},
        {"self_attn.q_norm", "attn_q_norm"},     {"self_attn.k_norm", "attn_k_norm"},
        {"pre_feedforward_layernorm", "ffn_norm"}, {"post_feedforward_layernorm", "post_ffw_norm"},
        {"mlp.gate_proj", "ffn_gate"},           {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"},           {"mlp.gate_up_proj", "ffn_up"},
    };
    if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(buf, cap, "token_embd.weight"), buf;
    if (!strcmp(hf, "model.norm.weight")) return snprintf(buf, cap, "output_norm.weight"), buf;
    if (!strcmp(hf, "lm_head.weight")) return strcmp(arch, "gemma2") ? (snprintf(buf, cap, "output.weight"), buf) : NULL;
    int layer, at = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &at) != 1 || !at) return NULL;
    const char *rest = hf + at, *dot = strrchr(rest, '.');
    size_t base = (size_t)(dot - rest);
    if (!strncmp(rest, "post_attention_layernorm", base) && base == strlen("post_attention_layernorm"))
        return snprintf(buf, cap, "blk.%d.%s%s", layer, strcmp(arch, "gemma2") ? "ffn_norm" : "post_attention_norm", dot),
               buf;
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strlen(map[i][0]) == base && !strncmp(rest, map[i][0], base))
            return snprintf(buf, cap, "blk.%d.%s%s", layer, map[i][1], dot), buf;
    return NULL;
}

static int convert(const char *dir, const char *arch, const char *out) {
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir);
    cJSON *cfg = json_file(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    qs_st_file *f = NULL;
    if (!cfg || qs_st_open(p, &f)) return 0;
    int d = (int)num(cfg, "hidden_size", 0), heads = (int)num(cfg, "num_attention_heads", 0);
    int kv = (int)num(cfg, "num_key_value_heads", heads), hd = (int)num(cfg, "head_dim", d / heads);
    qs_gguf_w *w = qs_gguf_w_new();
    char k[128];
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", arch, s), k)
    qs_gguf_w_str(w, "general.architecture", arch);
    qs_gguf_w_u32(w, KEY("block_count"), (uint32_t)num(cfg, "num_hidden_layers", 0));
    qs_gguf_w_u32(w, KEY("context_length"), (uint32_t)num(cfg, "max_position_embeddings", 0));
    qs_gguf_w_u32(w, KEY("embedding_length"), (uint32_t)d);
    qs_gguf_w_u32(w, KEY("feed_forward_length"), (uint32_t)num(cfg, "intermediate_size", 0));
    qs_gguf_w_u32(w, KEY("attention.head_count"), (uint32_t)heads);
    qs_gguf_w_u32(w, KEY("attention.head_count_kv"), (uint32_t)kv);
    qs_gguf_w_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)num(cfg, "rms_norm_eps", 1e-6));
    if (strcmp(arch, "gemma2")) qs_gguf_w_f32(w, KEY("rope.freq_base"), (float)num(cfg, "rope_theta", 10000));
    /* the converter's base class writes head_dim when the config has one (Phi-3's does not) */
    if (cJSON_GetObjectItem(cfg, "head_dim") && strcmp(arch, "phi3")) {
        qs_gguf_w_u32(w, KEY("attention.key_length"), (uint32_t)hd);
        qs_gguf_w_u32(w, KEY("attention.value_length"), (uint32_t)hd);
    }
    if (!strcmp(arch, "llama")) {
        qs_gguf_w_u32(w, KEY("vocab_size"), (uint32_t)num(cfg, "vocab_size", 0));
        qs_gguf_w_u32(w, KEY("rope.dimension_count"), (uint32_t)hd);
    }
    if (!strcmp(arch, "phi3")) {
        qs_gguf_w_u32(w, KEY("rope.dimension_count"), (uint32_t)(d / heads));
        qs_gguf_w_u32(w, KEY("rope.scaling.original_context_length"),
                      (uint32_t)num(cfg, "original_max_position_embeddings", 0));
        qs_gguf_w_u32(w, KEY("attention.sliding_window"), 0);
    }
    if (!strcmp(arch, "gemma2")) {
        qs_gguf_w_f32(w, KEY("attn_logit_softcapping"), (float)num(cfg, "attn_logit_softcapping", 0));
        qs_gguf_w_f32(w, KEY("final_logit_softcapping"), (float)num(cfg, "final_logit_softcapping", 0));
        qs_gguf_w_u32(w, KEY("attention.sliding_window"), (uint32_t)num(cfg, "sliding_window", 0));
    }
#undef KEY
    int ok = 1;
    for (size_t i = 0; ok && i < qs_st_count(f); i++) {
        const qs_st_tensor *t = qs_st_tensor_at(f, i);
        char name[128];
        if (!gguf_name(arch, t->name, name, sizeof name)) continue;
        float *v = malloc((size_t)t->numel * sizeof *v), *tmp = malloc((size_t)t->numel * sizeof *v);
        ok = v && tmp && qs_st_read_f32(f, t, v) == QS_OK;
        if (ok && !strcmp(arch, "gemma2") && strstr(t->name, "norm.weight"))
            for (int64_t j = 0; j < t->numel; j++) v[j] += 1.0f;
        int n_in = t->n_dims == 2 ? (int)t->shape[1] : 1;
        if (ok && !strcmp(arch, "llama") && (strstr(t->name, "q_proj.") || strstr(t->name, "k_proj."))) {
            interleave(tmp, v, strstr(t->name, "q_proj.") ? heads : kv, hd, n_in);
            memcpy(v, tmp, (size_t)t->numel * sizeof *v);
        }
        if (ok) ok = qs_gguf_w_tensor(w, name, t->n_dims, t->shape, QS_GGML_F32, v, (size_t)t->numel * 4) == QS_OK;
        free(v);
        free(tmp);
    }
    /* llama3: per-frequency divisors, as the converter writes rope_freqs */
    const cJSON *rs = cJSON_GetObjectItem(cfg, "rope_scaling");
    const cJSON *rt = rs ? cJSON_GetObjectItem(rs, "rope_type") : NULL;
    if (ok && cJSON_IsString(rt) && !strcmp(rt->valuestring, "llama3")) {
        double base = num(cfg, "rope_theta", 10000), factor = num(rs, "factor", 8), lo = num(rs, "low_freq_factor", 1);
        double hi = num(rs, "high_freq_factor", 4), old = num(rs, "original_max_position_embeddings", 8192);
        float fr[256];
        for (int i = 0; i < hd / 2; i++) {
            float freq = 1.0f / powf((float)base, (float)(2 * i) / (float)hd);
            double wave = 2 * M_PI / freq;
            if (wave < old / hi) fr[i] = 1;
            else if (wave > old / lo) fr[i] = (float)factor;
            else {
                double s = (old / wave - lo) / (hi - lo);
                fr[i] = (float)(1 / ((1 - s) / factor + s));
            }
        }
        ok = qs_gguf_w_tensor(w, "rope_freqs.weight", 1, (int64_t[]){hd / 2}, QS_GGML_F32, fr, (size_t)hd / 2 * 4) ==
             QS_OK;
    }
    ok = ok && qs_gguf_w_write(w, out) == QS_OK;
    qs_gguf_w_free(w);
    qs_st_close(f);
    cJSON_Delete(cfg);
    return ok;
}

/* mean NLL of each reference sequence, and the largest logit difference */
static void run_refs(qs_model *m, const char *ref_dir, double nll[2], double *worst) {
    char p[1024];
    char *ids_s = NULL, *lg_s = NULL;
    size_t n_ids = 0, n_lg = 0;
    snprintf(p, sizeof p, "%s/ids.i32", ref_dir);
    qs_io_read_all(p, &ids_s, &n_ids);
    snprintf(p, sizeof p, "%s/logits.f32", ref_dir);
    qs_io_read_all(p, &lg_s, &n_lg);
    int V = m->cfg.vocab, T = (int)(n_ids / 8);
    qs_ctx *c = NULL;
    float *got = malloc((size_t)T * V * sizeof *got);
    *worst = INFINITY;
    nll[0] = nll[1] = NAN;
    if (ids_s && lg_s && n_lg == n_ids * V && qs_ctx_new(m, NULL, 0, &c) == QS_OK) {
        *worst = 0;
        for (int s = 0; s < 2; s++) {
            const int32_t *ids = (const int32_t *)(const void *)ids_s + (size_t)s * T;
            const float *want = (const float *)(const void *)lg_s + (size_t)s * T * V;
            qs_ctx_reset(c);
            if (qs_forward(c, ids, T, got, QS_LOGITS_ALL)) {
                *worst = INFINITY;
                break;
            }
            double sum = 0;
            for (size_t i = 0; i < (size_t)T * V; i++)
                if (fabs(got[i] - want[i]) > *worst) *worst = fabs(got[i] - want[i]);
            for (int t = 0; t + 1 < T; t++) sum += qs_ops_logsumexp(got + (size_t)t * V, V) - got[(size_t)t * V + ids[t + 1]];
            nll[s] = sum / (T - 1);
        }
    }
    qs_ctx_free(c);
    free(got);
    free(ids_s);
    free(lg_s);
}

static void check_gguf_family(const char *dir, const char *arch) {
    NEED_SHARED();
    char rel[256], tmp[] = "/tmp/qs_gguf_fam_XXXXXX", out[300];
    snprintf(rel, sizeof rel, "models/arch/%s", dir);
    REQUIRE(mkdtemp(tmp), "mkdtemp");
    snprintf(out, sizeof out, "%s/%s.gguf", tmp, dir);
    REQUIRE(convert(th_path(rel), arch, out), "convert %s: %s", dir, qs_last_error());
    qs_model *m = NULL;
    qs_status st = qs_model_load(out, NULL, &m);
    CHECK(st == QS_OK, "load %s.gguf: %s", dir, qs_last_error());
    if (m) {
        CHECK(!strcmp(m->cfg.family, arch) && !strcmp(m->format, "gguf"), "family %s (%s)", m->cfg.family, m->format);
        double nll[2], worst;
        snprintf(rel, sizeof rel, "models/arch/%s/reference", dir);
        run_refs(m, th_path(rel), nll, &worst);
        snprintf(rel, sizeof rel, "models/arch/%s/reference/reference.json", dir);
        cJSON *ref = json_file(th_path(rel));
        const cJSON *want = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "mean_nll"), "per_sequence");
        if (!strcmp(arch, "gemma2")) {
            /* transformers with query_pre_attn_scalar = head_dim, as llama.cpp runs it */
            const cJSON *ab = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "feature_ablations"), "query_pre_attn_scalar");
            const cJSON *ov = cJSON_GetObjectItem(ab, "override");
            CHECK(num(ov, "query_pre_attn_scalar", 0) == m->cfg.head_dim, "ablation scalar %g, head_dim %d",
                  num(ov, "query_pre_attn_scalar", 0), m->cfg.head_dim);
            want = cJSON_GetObjectItem(ab, "nll_without_feature");
        } else {
            CHECK(worst <= 1e-4, "%s.gguf: max |logit diff| %.3g", dir, worst);
        }
        for (int s = 0; s < 2; s++)
            CHECK(fabs(nll[s] - cJSON_GetArrayItem(want, s)->valuedouble) < 1e-5, "%s.gguf seq %d: NLL %.7f, want %.7f",
                  dir, s, nll[s], cJSON_GetArrayItem(want, s)->valuedouble);
        cJSON_Delete(ref);
    }
    qs_model_free(m);
    unlink(out);
    rmdir(tmp);
}

TEST(gguf_family_llama3) { check_gguf_family("llama3", "llama"); }
TEST(gguf_family_qwen2) { check_gguf_family("qwen2", "qwen2"); }
TEST(gguf_family_qwen3) { check_gguf_family("qwen3", "qwen3"); }
TEST(gguf_family_gemma2) { check_gguf_family("gemma2", "gemma2"); }
TEST(gguf_family_phi3) { check_gguf_family("phi3", "phi3"); }

/* A Qwen3 file labelled llama must not run without its q/k norms. */
TEST(gguf_unread_tensor_refused) {
    NEED_SHARED();
    char tmp[] = "/tmp/qs_gguf_fam_XXXXXX", out[300];
    REQUIRE(mkdtemp(tmp), "mkdtemp");
    snprintf(out, sizeof out, "%s/relabelled.gguf", tmp);
    REQUIRE(convert(th_path("models/arch/qwen3"), "llama", out), "convert: %s", qs_last_error());
    qs_model *m = NULL;
    qs_status st = qs_model_load(out, NULL, &m);
    CHECK(st == QS_EFORMAT && strstr(qs_last_error(), "'blk.0.attn_k_norm.weight' is not part of a GGUF llama model"),
          "%d: %s", st, qs_last_error());
    qs_model_free(m);
    unlink(out);
    rmdir(tmp);
}
