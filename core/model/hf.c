/* hf.c — Hugging Face model directories: config.json + safetensors. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/loaders.h"
#include "read/read.h"

#define HF_PATH 1200

typedef struct {
    const char *dir;
    char cfg_path[HF_PATH];
    char weights_path[HF_PATH]; /* model.safetensors or the index: what "missing" messages name */
    cJSON *cfg;
    qs_st_file **files; /* (n_files) */
    int n_files;
    qs_model *m;
    unsigned dtypes; /* bit per qs_st_dtype seen among loaded tensors */
    char prefix[32]; /* "model.decoder.", "transformer.", ... */
} hf_ctx;

/* ---- config.json ---- */

static const cJSON *cfg_item(const hf_ctx *c, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->cfg, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* An integer setting in [lo, 2^30]: absent or null gives def, or fails when
 * required. */
static qs_status cfg_int(const hf_ctx *c, const char *key, int required, int def, int lo, int *out) {
    const cJSON *v = cfg_item(c, key);
    if (!v) {
        if (required) return qs_fail(QS_EFORMAT, "%s: missing '%s'", c->cfg_path, key);
        *out = def;
        return QS_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    if (!cJSON_IsNumber(v) || floor(d) != d || d < lo || d > (double)(1 << 24))
        return qs_fail(QS_EFORMAT, "%s: '%s' must be an integer from %d to %d", c->cfg_path, key, lo, 1 << 24);
    *out = (int)d;
    return QS_OK;
}

static qs_status cfg_float(const hf_ctx *c, const char *key, double def, float *out) {
    const cJSON *v = cfg_item(c, key);
    if (!v) {
        *out = (float)def;
        return QS_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return qs_fail(QS_EFORMAT, "%s: '%s' must be a number", c->cfg_path, key);
    *out = (float)v->valuedouble;
    return QS_OK;
}

static qs_status cfg_bool(const hf_ctx *c, const char *key, int def, int *out) {
    const cJSON *v = cfg_item(c, key);
    if (!v) {
        *out = def;
        return QS_OK;
    }
    if (!cJSON_IsBool(v)) return qs_fail(QS_EFORMAT, "%s: '%s' must be true or false", c->cfg_path, key);
    *out = cJSON_IsTrue(v);
    return QS_OK;
}

static const char *cfg_str(const hf_ctx *c, const char *key) {
    const cJSON *v = cfg_item(c, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* bos/eos/pad: a number, null, or a list (the first entry counts). */
static int cfg_token(const hf_ctx *c, const char *key) {
    const cJSON *v = cfg_item(c, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > (double)(1 << 30)) return -1;
    return (int)v->valuedouble;
}

static qs_status cfg_act(const hf_ctx *c, const char *key, const char *def, qs_act *out) {
    const char *a = cfg_str(c, key);
    if (!a) a = def;
    if (!strcmp(a, "relu")) *out = QS_ACT_RELU;
    else if (!strcmp(a, "gelu")) *out = QS_ACT_GELU;
    else if (!strcmp(a, "gelu_new") || !strcmp(a, "gelu_pytorch_tanh") || !strcmp(a, "gelu_fast"))
        *out = QS_ACT_GELU_TANH;
    else if (!strcmp(a, "silu") || !strcmp(a, "swish")) *out = QS_ACT_SILU;
    else return qs_fail(QS_EUNSUPPORTED, "%s: %s '%s' is not supported", c->cfg_path, key, a);
    return QS_OK;
}

static qs_status heads_fit(const hf_ctx *c, const qs_config *g) {
    if (g->d_model % g->n_heads)
        return qs_fail(QS_EFORMAT, "%s: hidden size %d is not a multiple of %d heads", c->cfg_path,
                       g->d_model, g->n_heads);
    return QS_OK;
}

static qs_status config_opt(const hf_ctx *c, qs_config *g) {
    qs_status st;
    int pre_ln = 1, proj = 0, tie = 1, remove_final = 0, bias = 1, affine = 1;
    if ((st = cfg_int(c, "hidden_size", 1, 0, 1, &g->d_model)) ||
        (st = cfg_int(c, "num_hidden_layers", 1, 0, 1, &g->n_layers)) ||
        (st = cfg_int(c, "num_attention_heads", 1, 0, 1, &g->n_heads)) ||
        (st = cfg_int(c, "ffn_dim", 1, 0, 1, &g->d_ff)) ||
        (st = cfg_int(c, "vocab_size", 1, 0, 1, &g->vocab)) ||
        (st = cfg_int(c, "max_position_embeddings", 0, 2048, 1, &g->max_pos)) ||
        (st = cfg_int(c, "word_embed_proj_dim", 0, g->d_model, 1, &proj)) ||
        (st = cfg_bool(c, "do_layer_norm_before", 1, &pre_ln)) ||
        (st = cfg_bool(c, "_remove_final_layer_norm", 0, &remove_final)) ||
        (st = cfg_bool(c, "enable_bias", 1, &bias)) ||
        (st = cfg_bool(c, "layer_norm_elementwise_affine", 1, &affine)) ||
        (st = cfg_bool(c, "tie_word_embeddings", 1, &tie)) ||
        (st = cfg_act(c, "activation_function", "relu", &g->act)) || (st = heads_fit(c, g)))
        return st;
    if (!pre_ln)
        return qs_fail(QS_EUNSUPPORTED,
                       "%s: do_layer_norm_before is false (post-LayerNorm OPT such as opt-350m); "
                       "qscope runs pre-LayerNorm OPT only", c->cfg_path);
    if (proj != g->d_model)
        return qs_fail(QS_EUNSUPPORTED,
                       "%s: word_embed_proj_dim %d differs from hidden_size %d (projected embeddings "
                       "are not supported)", c->cfg_path, proj, g->d_model);
    if (remove_final || !bias || !affine)
        return qs_fail(QS_EUNSUPPORTED, "%s: OPT without %s is not supported", c->cfg_path,
                       remove_final ? "a final layer norm" : !bias ? "biases" : "LayerNorm weights");
    g->arch = QS_ARCH_OPT;
    g->n_kv_heads = g->n_heads;
    g->head_dim = g->d_model / g->n_heads;
    g->pos_offset = 2;
    g->norm = QS_NORM_LAYER;
    g->norm_eps = 1e-5f;
    g->tied_head = tie;
    return QS_OK;
}

static qs_status config_gpt2(const hf_ctx *c, qs_config *g) {
    qs_status st;
    int tie = 1, scale = 1, by_layer = 0;
    if ((st = cfg_int(c, "n_embd", 1, 0, 1, &g->d_model)) ||
        (st = cfg_int(c, "n_layer", 1, 0, 1, &g->n_layers)) ||
        (st = cfg_int(c, "n_head", 1, 0, 1, &g->n_heads)) ||
        (st = cfg_int(c, "vocab_size", 1, 0, 1, &g->vocab)) ||
        (st = cfg_int(c, "n_positions", 0, 1024, 1, &g->max_pos)) ||
        (st = cfg_int(c, "n_inner", 0, 4 * g->d_model, 1, &g->d_ff)) ||
        (st = cfg_float(c, "layer_norm_epsilon", 1e-5, &g->norm_eps)) ||
        (st = cfg_bool(c, "tie_word_embeddings", 1, &tie)) ||
        (st = cfg_bool(c, "scale_attn_weights", 1, &scale)) ||
        (st = cfg_bool(c, "scale_attn_by_inverse_layer_idx", 0, &by_layer)) ||
        (st = cfg_act(c, "activation_function", "gelu_new", &g->act)) || (st = heads_fit(c, g)))
        return st;
    if (!scale || by_layer)
        return qs_fail(QS_EUNSUPPORTED, "%s: %s is not supported", c->cfg_path,
                       !scale ? "scale_attn_weights = false" : "scale_attn_by_inverse_layer_idx = true");
    g->arch = QS_ARCH_GPT2;
    g->n_kv_heads = g->n_heads;
    g->head_dim = g->d_model / g->n_heads;
    g->norm = QS_NORM_LAYER;
    g->tied_head = tie;
    return QS_OK;
}

/* rope_scaling (older configs) or rope_parameters (newer): only plain RoPE. */
static qs_status check_rope(const hf_ctx *c, const char *key, float *theta) {
    const cJSON *r = cfg_item(c, key);
    if (!r) return QS_OK;
    if (!cJSON_IsObject(r)) return qs_fail(QS_EFORMAT, "%s: '%s' must be an object", c->cfg_path, key);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "rope_type");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(r, "type");
    if (cJSON_IsString(t) && strcmp(t->valuestring, "default") != 0)
        return qs_fail(QS_EUNSUPPORTED, "%s: %s type '%s' is not supported (qscope runs plain RoPE)",
                       c->cfg_path, key, t->valuestring);
    if (!t && strcmp(key, "rope_scaling") == 0)
        return qs_fail(QS_EUNSUPPORTED, "%s: rope_scaling without a type is not supported", c->cfg_path);
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(r, "rope_theta");
    if (th) {
        if (!cJSON_IsNumber(th) || !(th->valuedouble > 0))
            return qs_fail(QS_EFORMAT, "%s: %s.rope_theta must be a positive number", c->cfg_path, key);
        *theta = (float)th->valuedouble;
    }
    return QS_OK;
}

static qs_status config_llama(const hf_ctx *c, const char *arch, qs_config *g) {
    qs_status st;
    int tie = 0;
    if ((st = cfg_int(c, "hidden_size", 1, 0, 1, &g->d_model)) ||
        (st = cfg_int(c, "num_hidden_layers", 1, 0, 1, &g->n_layers)) ||
        (st = cfg_int(c, "num_attention_heads", 1, 0, 1, &g->n_heads)) ||
        (st = cfg_int(c, "intermediate_size", 1, 0, 1, &g->d_ff)) ||
        (st = cfg_int(c, "vocab_size", 1, 0, 1, &g->vocab)) ||
        (st = cfg_int(c, "num_key_value_heads", 0, g->n_heads, 1, &g->n_kv_heads)) ||
        (st = cfg_int(c, "head_dim", 0, g->d_model / g->n_heads, 1, &g->head_dim)) ||
        (st = cfg_int(c, "max_position_embeddings", 0, 2048, 1, &g->max_pos)) ||
        (st = cfg_float(c, "rms_norm_eps", 1e-6, &g->norm_eps)) ||
        (st = cfg_float(c, "rope_theta", 10000.0, &g->rope_theta)) ||
        (st = cfg_bool(c, "tie_word_embeddings", 0, &tie)) ||
        (st = cfg_act(c, "hidden_act", "silu", &g->act)))
        return st;
    if ((st = check_rope(c, "rope_scaling", &g->rope_theta)) ||
        (st = check_rope(c, "rope_parameters", &g->rope_theta)))
        return st;
    if (g->act != QS_ACT_SILU)
        return qs_fail(QS_EUNSUPPORTED, "%s: hidden_act '%s' is not supported for %s (qscope runs SwiGLU)",
                       c->cfg_path, cfg_str(c, "hidden_act"), arch);
    if (!(g->rope_theta > 0))
        return qs_fail(QS_EFORMAT, "%s: rope_theta must be positive", c->cfg_path);
    if (cfg_item(c, "partial_rotary_factor"))
        return qs_fail(QS_EUNSUPPORTED, "%s: partial_rotary_factor is not supported", c->cfg_path);
    if (!strcmp(arch, "MistralForCausalLM")) {
        if ((st = cfg_int(c, "sliding_window", 0, 0, 0, &g->sliding_window))) return st;
    } else if (!strcmp(arch, "Qwen2ForCausalLM")) {
        int sw = 0;
        if ((st = cfg_bool(c, "use_sliding_window", 0, &sw))) return st;
        if (sw)
            return qs_fail(QS_EUNSUPPORTED, "%s: use_sliding_window (per-layer windows) is not supported",
                           c->cfg_path);
    }
    g->arch = QS_ARCH_LLAMA;
    g->norm = QS_NORM_RMS;
    g->tied_head = tie;
    return QS_OK;
}

static const char *const known_archs[] = {"OPTForCausalLM", "GPT2LMHeadModel", "LlamaForCausalLM",
                                          "MistralForCausalLM", "Qwen2ForCausalLM"};

static qs_status parse_config(hf_ctx *c, qs_config *g) {
    char *text = NULL;
    size_t len = 0;
    qs_status st = qs_io_read_all(c->cfg_path, &text, &len);
    if (st) return st;
    const char *end = NULL;
    c->cfg = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t at = end ? (size_t)(end - text) : 0;
    free(text);
    if (!c->cfg) return qs_fail(QS_EFORMAT, "%s: malformed JSON (error at byte %zu)", c->cfg_path, at);
    if (!cJSON_IsObject(c->cfg)) return qs_fail(QS_EFORMAT, "%s: malformed JSON (not an object)", c->cfg_path);

    const char *arch = NULL;
    const cJSON *archs = cfg_item(c, "architectures");
    if (cJSON_IsArray(archs) && cJSON_IsString(cJSON_GetArrayItem(archs, 0)))
        arch = cJSON_GetArrayItem(archs, 0)->valuestring;
    if (!arch) { /* older configs name only the model type */
        const char *mt = cfg_str(c, "model_type");
        static const char *const types[] = {"opt", "gpt2", "llama", "mistral", "qwen2"};
        for (int i = 0; mt && i < 5; i++)
            if (!strcmp(mt, types[i])) arch = known_archs[i];
        if (!arch)
            return qs_fail(QS_EFORMAT, "%s: no 'architectures' list and no known 'model_type'", c->cfg_path);
    }
    memset(g, 0, sizeof *g);
    snprintf(g->arch_name, sizeof g->arch_name, "%s", arch);
    if (!strcmp(arch, "OPTForCausalLM")) st = config_opt(c, g);
    else if (!strcmp(arch, "GPT2LMHeadModel")) st = config_gpt2(c, g);
    else if (!strcmp(arch, "LlamaForCausalLM") || !strcmp(arch, "MistralForCausalLM") ||
             !strcmp(arch, "Qwen2ForCausalLM"))
        st = config_llama(c, arch, g);
    else
        return qs_fail(QS_EUNSUPPORTED,
                       "%s: unknown architecture '%.64s' (qscope runs OPTForCausalLM, "
                       "GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
                       c->cfg_path, arch);
    if (st) return st;
    g->bos_id = cfg_token(c, "bos_token_id");
    g->eos_id = cfg_token(c, "eos_token_id");
    g->pad_id = cfg_token(c, "pad_token_id");
    return QS_OK;
}

/* ---- weight files ---- */

static qs_status add_file(hf_ctx *c, const char *path) {
    qs_st_file **nf = realloc(c->files, (size_t)(c->n_files + 1) * sizeof *nf);
    if (!nf) return qs_fail(QS_ENOMEM, "out of memory");
    c->files = nf;
    qs_status st = qs_st_open(path, &c->files[c->n_files]);
    if (st) return st;
    c->n_files++;
    return QS_OK;
}

static qs_status open_index(hf_ctx *c) {
    char *text = NULL;
    size_t len = 0;
    qs_status st = qs_io_read_all(c->weights_path, &text, &len);
    if (st) return st;
    cJSON *idx = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(idx);
        return qs_fail(QS_EFORMAT, "%s: malformed index (no 'weight_map' object)", c->weights_path);
    }
    /* open each distinct shard once, in order of first mention */
    const char **seen = calloc((size_t)cJSON_GetArraySize(wm) + 1, sizeof *seen);
    int n_seen = 0;
    if (!seen) {
        cJSON_Delete(idx);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !*e->valuestring || strchr(e->valuestring, '/')) {
            st = qs_fail(QS_EFORMAT, "%s: tensor '%s' maps to an invalid shard name", c->weights_path,
                         e->string ? e->string : "?");
            break;
        }
        int dup = 0;
        for (int i = 0; i < n_seen && !dup; i++) dup = !strcmp(seen[i], e->valuestring);
        if (dup) continue;
        seen[n_seen++] = e->valuestring;
        char path[HF_PATH];
        qs_io_join(path, sizeof path, c->dir, e->valuestring);
        if (!qs_io_exists(path)) {
            st = qs_fail(QS_EIO, "%s: names shard '%s', which is missing", c->weights_path, e->valuestring);
            break;
        }
        if ((st = add_file(c, path))) break;
    }
    if (!st && n_seen == 0) st = qs_fail(QS_EFORMAT, "%s: weight_map is empty", c->weights_path);
    free(seen);
    cJSON_Delete(idx);
    return st;
}

static qs_status open_weights(hf_ctx *c) {
    qs_io_join(c->weights_path, sizeof c->weights_path, c->dir, "model.safetensors");
    if (qs_io_exists(c->weights_path)) return add_file(c, c->weights_path);
    qs_io_join(c->weights_path, sizeof c->weights_path, c->dir, "model.safetensors.index.json");
    if (qs_io_exists(c->weights_path)) return open_index(c);
    char other[HF_PATH];
    if (qs_io_exists(qs_io_join(other, sizeof other, c->dir, "pytorch_model.bin")) ||
        qs_io_exists(qs_io_join(other, sizeof other, c->dir, "pytorch_model.bin.index.json")))
        return qs_fail(QS_EUNSUPPORTED, "%s: only pickled PyTorch weights (pytorch_model.bin) found; "
                       "qscope reads safetensors (save with safe_serialization=True)", c->dir);
    return qs_fail(QS_EIO, "%s: no model.safetensors or model.safetensors.index.json", c->dir);
}

static const qs_st_tensor *find(const hf_ctx *c, const char *name, qs_st_file **file) {
    for (int i = 0; i < c->n_files; i++) {
        const qs_st_tensor *t = qs_st_find(c->files[i], name);
        if (t) {
            *file = c->files[i];
            return t;
        }
    }
    return NULL;
}

static void shape_of(char *buf, size_t cap, int n, const int64_t *dims) {
    qs_st_tensor t = {.n_dims = n};
    for (int i = 0; i < n; i++) t.shape[i] = dims[i];
    qs_st_shape_str(&t, buf, cap);
}

/* Find prefix+name, check its shape is (d0) or (d0, d1). required = 0: a
 * missing tensor gives QS_OK with *t NULL. */
static qs_status lookup(hf_ctx *c, const char *name, int required, int n_dims, int64_t d0, int64_t d1,
                        qs_st_file **file, const qs_st_tensor **t) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", c->prefix, name);
    *t = find(c, full, file);
    if (!*t) return required ? qs_fail(QS_EFORMAT, "%s: tensor '%s' is missing", c->weights_path, full) : QS_OK;
    int64_t want[2] = {d0, d1};
    int ok = (*t)->n_dims == n_dims && (*t)->shape[0] == d0 && (n_dims == 1 || (*t)->shape[1] == d1);
    if (!ok) {
        char found[128], expect[64];
        qs_st_shape_str(*t, found, sizeof found);
        shape_of(expect, sizeof expect, n_dims, want);
        return qs_fail(QS_ESHAPE, "%s: tensor '%s' has shape %s, config says %s", qs_st_path(*file), full,
                       found, expect);
    }
    c->dtypes |= 1u << (*t)->dtype;
    return QS_OK;
}

static qs_status get(hf_ctx *c, const char *name, int required, int n_dims, int64_t d0, int64_t d1,
                     const float **out) {
    qs_st_file *f;
    const qs_st_tensor *t;
    *out = NULL;
    qs_status st = lookup(c, name, required, n_dims, d0, d1, &f, &t);
    if (st || !t) return st;
    return qs_st_to_f32(f, t, c->m->store, out);
}

static qs_status get_linear(hf_ctx *c, const char *base, int n_out, int n_in, int bias, qs_linear *l) {
    char w[200], b[200];
    snprintf(w, sizeof w, "%s.weight", base);
    snprintf(b, sizeof b, "%s.bias", base);
    l->n_out = n_out;
    l->n_in = n_in;
    qs_status st = get(c, w, 1, 2, n_out, n_in, &l->w);
    if (!st && bias) st = get(c, b, 1, 1, n_out, 0, &l->b);
    return st;
}

static qs_status get_norm(hf_ctx *c, const char *base, int dim, int bias, qs_norm *n) {
    char w[200], b[200];
    snprintf(w, sizeof w, "%s.weight", base);
    snprintf(b, sizeof b, "%s.bias", base);
    n->dim = dim;
    qs_status st = get(c, w, 1, 1, dim, 0, &n->w);
    if (!st && bias) st = get(c, b, 1, 1, dim, 0, &n->b);
    return st;
}

/* Read-only fp32 view of a whole tensor: the map itself for aligned F32, else
 * a temporary conversion (*tmp, caller frees). */
static qs_status view_f32(qs_st_file *f, const qs_st_tensor *t, const float **src, float **tmp) {
    *tmp = NULL;
    if (t->dtype == QS_ST_F32 && (uintptr_t)t->data % sizeof(float) == 0) {
        *src = (const float *)(const void *)t->data;
        return QS_OK;
    }
    *tmp = malloc((size_t)t->numel * sizeof **tmp + 1);
    if (!*tmp) return qs_fail(QS_ENOMEM, "%s: out of memory converting '%s'", qs_st_path(f), t->name);
    qs_status st = qs_st_read_f32(f, t, *tmp);
    if (st) {
        free(*tmp);
        *tmp = NULL;
    }
    *src = *tmp;
    return st;
}

/* Columns [col0, col0 + n_out) of a Conv1D weight src [n_in, width],
 * transposed into a new (n_out, n_in) linear. */
static qs_status conv1d_slice(hf_ctx *c, const float *src, int n_in, int width, int col0, int n_out,
                              qs_linear *l) {
    float *dst = qs_store_alloc(c->m->store, (size_t)n_out * (size_t)n_in * sizeof *dst);
    if (!dst) return QS_ENOMEM;
    for (int i = 0; i < n_in; i++)
        for (int j = 0; j < n_out; j++) dst[(size_t)j * n_in + i] = src[(size_t)i * width + col0 + j];
    l->w = dst;
    l->n_out = n_out;
    l->n_in = n_in;
    return QS_OK;
}

/* GPT-2's Conv1D linears store the weight [n_in, n_out]. Its fused attention
 * input c_attn (parts = 3) holds q, k, v side by side in the columns of a
 * [d, 3d] weight and a [3d] bias. */
static qs_status get_conv1d(hf_ctx *c, const char *base, int n_in, int n_out, int parts, qs_linear **out) {
    char w[200], b[200];
    snprintf(w, sizeof w, "%s.weight", base);
    snprintf(b, sizeof b, "%s.bias", base);
    qs_st_file *f;
    const qs_st_tensor *t;
    const float *src = NULL, *bias;
    float *tmp;
    qs_status st = lookup(c, w, 1, 2, n_in, (int64_t)parts * n_out, &f, &t);
    if (st || (st = view_f32(f, t, &src, &tmp))) return st;
    for (int i = 0; i < parts && !st; i++) st = conv1d_slice(c, src, n_in, parts * n_out, i * n_out, n_out, out[i]);
    free(tmp);
    if (st || (st = get(c, b, 1, 1, (int64_t)parts * n_out, 0, &bias))) return st;
    for (int i = 0; i < parts; i++) out[i]->b = bias + (size_t)i * n_out;
    return QS_OK;
}

/* Pick the first prefix under which probe exists. */
static qs_status pick_prefix(hf_ctx *c, const char *probe, const char *const *prefixes, int n) {
    for (int i = 0; i < n; i++) {
        char full[256];
        qs_st_file *f;
        snprintf(full, sizeof full, "%s%s", prefixes[i], probe);
        if (find(c, full, &f)) {
            snprintf(c->prefix, sizeof c->prefix, "%s", prefixes[i]);
            return QS_OK;
        }
    }
    return qs_fail(QS_EFORMAT, "%s: tensor '%s%s' is missing", c->weights_path, prefixes[0], probe);
}

/* The LM head: tied to the embedding, or lm_head.weight (outside the prefix). */
static qs_status get_head(hf_ctx *c) {
    qs_model *m = c->m;
    m->w.head.n_out = m->cfg.vocab;
    m->w.head.n_in = m->cfg.d_model;
    if (m->cfg.tied_head) {
        m->w.head.w = m->w.tok_embed;
        return QS_OK;
    }
    char saved[sizeof c->prefix];
    memcpy(saved, c->prefix, sizeof saved);
    c->prefix[0] = 0;
    qs_status st = get(c, "lm_head.weight", 1, 2, m->cfg.vocab, m->cfg.d_model, &m->w.head.w);
    memcpy(c->prefix, saved, sizeof saved);
    return st;
}

static qs_status load_opt(hf_ctx *c) {
    static const char *const pre[] = {"model.decoder.", "decoder."};
    qs_model *m = c->m;
    const qs_config *g = &m->cfg;
    int d = g->d_model;
    qs_status st = pick_prefix(c, "embed_tokens.weight", pre, 2);
    if (st || (st = get(c, "embed_tokens.weight", 1, 2, g->vocab, d, &m->w.tok_embed)) ||
        (st = get(c, "embed_positions.weight", 1, 2, (int64_t)g->max_pos + g->pos_offset, d,
                  &m->w.pos_embed)) ||
        (st = get_norm(c, "final_layer_norm", d, 1, &m->w.final_norm)))
        return st;
    for (int i = 0; i < g->n_layers; i++) {
        qs_layer *L = &m->w.layers[i];
        char b[7][96];
        snprintf(b[0], sizeof b[0], "layers.%d.self_attn_layer_norm", i);
        snprintf(b[1], sizeof b[1], "layers.%d.self_attn.q_proj", i);
        snprintf(b[2], sizeof b[2], "layers.%d.self_attn.k_proj", i);
        snprintf(b[3], sizeof b[3], "layers.%d.self_attn.v_proj", i);
        snprintf(b[4], sizeof b[4], "layers.%d.self_attn.out_proj", i);
        snprintf(b[5], sizeof b[5], "layers.%d.final_layer_norm", i);
        snprintf(b[6], sizeof b[6], "layers.%d.fc", i);
        char fc1[100], fc2[100];
        snprintf(fc1, sizeof fc1, "%s1", b[6]);
        snprintf(fc2, sizeof fc2, "%s2", b[6]);
        if ((st = get_norm(c, b[0], d, 1, &L->attn_norm)) || (st = get_linear(c, b[1], d, d, 1, &L->q)) ||
            (st = get_linear(c, b[2], d, d, 1, &L->k)) || (st = get_linear(c, b[3], d, d, 1, &L->v)) ||
            (st = get_linear(c, b[4], d, d, 1, &L->o)) || (st = get_norm(c, b[5], d, 1, &L->mlp_norm)) ||
            (st = get_linear(c, fc1, g->d_ff, d, 1, &L->up)) ||
            (st = get_linear(c, fc2, d, g->d_ff, 1, &L->down)))
            return st;
    }
    return get_head(c);
}

static qs_status load_gpt2(hf_ctx *c) {
    static const char *const pre[] = {"transformer.", ""};
    qs_model *m = c->m;
    const qs_config *g = &m->cfg;
    int d = g->d_model;
    qs_status st = pick_prefix(c, "wte.weight", pre, 2);
    if (st || (st = get(c, "wte.weight", 1, 2, g->vocab, d, &m->w.tok_embed)) ||
        (st = get(c, "wpe.weight", 1, 2, g->max_pos, d, &m->w.pos_embed)) ||
        (st = get_norm(c, "ln_f", d, 1, &m->w.final_norm)))
        return st;
    /* h.N.attn.bias / h.N.attn.masked_bias are causal-mask buffers: never read */
    for (int i = 0; i < g->n_layers; i++) {
        qs_layer *L = &m->w.layers[i];
        char b[6][96];
        snprintf(b[0], sizeof b[0], "h.%d.ln_1", i);
        snprintf(b[1], sizeof b[1], "h.%d.attn.c_attn", i);
        snprintf(b[2], sizeof b[2], "h.%d.attn.c_proj", i);
        snprintf(b[3], sizeof b[3], "h.%d.ln_2", i);
        snprintf(b[4], sizeof b[4], "h.%d.mlp.c_fc", i);
        snprintf(b[5], sizeof b[5], "h.%d.mlp.c_proj", i);
        qs_linear *qkv[3] = {&L->q, &L->k, &L->v}, *o = &L->o, *up = &L->up, *down = &L->down;
        if ((st = get_norm(c, b[0], d, 1, &L->attn_norm)) || (st = get_conv1d(c, b[1], d, d, 3, qkv)) ||
            (st = get_conv1d(c, b[2], d, d, 1, &o)) || (st = get_norm(c, b[3], d, 1, &L->mlp_norm)) ||
            (st = get_conv1d(c, b[4], d, g->d_ff, 1, &up)) ||
            (st = get_conv1d(c, b[5], g->d_ff, d, 1, &down)))
            return st;
    }
    return get_head(c);
}

static qs_status load_llama(hf_ctx *c) {
    static const char *const pre[] = {"model.", ""};
    qs_model *m = c->m;
    const qs_config *g = &m->cfg;
    int d = g->d_model, qd = g->n_heads * g->head_dim, kvd = g->n_kv_heads * g->head_dim;
    int attn_bias = 0, mlp_bias = 0, qkv_bias = !strcmp(g->arch_name, "Qwen2ForCausalLM");
    qs_status st;
    if ((st = cfg_bool(c, "attention_bias", 0, &attn_bias)) || (st = cfg_bool(c, "mlp_bias", 0, &mlp_bias)))
        return st;
    qkv_bias |= attn_bias;
    if ((st = pick_prefix(c, "embed_tokens.weight", pre, 2)) ||
        (st = get(c, "embed_tokens.weight", 1, 2, g->vocab, d, &m->w.tok_embed)) ||
        (st = get_norm(c, "norm", d, 0, &m->w.final_norm)))
        return st;
    for (int i = 0; i < g->n_layers; i++) {
        qs_layer *L = &m->w.layers[i];
        char b[9][96];
        snprintf(b[0], sizeof b[0], "layers.%d.input_layernorm", i);
        snprintf(b[1], sizeof b[1], "layers.%d.self_attn.q_proj", i);
        snprintf(b[2], sizeof b[2], "layers.%d.self_attn.k_proj", i);
        snprintf(b[3], sizeof b[3], "layers.%d.self_attn.v_proj", i);
        snprintf(b[4], sizeof b[4], "layers.%d.self_attn.o_proj", i);
        snprintf(b[5], sizeof b[5], "layers.%d.post_attention_layernorm", i);
        snprintf(b[6], sizeof b[6], "layers.%d.mlp.gate_proj", i);
        snprintf(b[7], sizeof b[7], "layers.%d.mlp.up_proj", i);
        snprintf(b[8], sizeof b[8], "layers.%d.mlp.down_proj", i);
        if ((st = get_norm(c, b[0], d, 0, &L->attn_norm)) ||
            (st = get_linear(c, b[1], qd, d, qkv_bias, &L->q)) ||
            (st = get_linear(c, b[2], kvd, d, qkv_bias, &L->k)) ||
            (st = get_linear(c, b[3], kvd, d, qkv_bias, &L->v)) ||
            (st = get_linear(c, b[4], d, qd, attn_bias, &L->o)) ||
            (st = get_norm(c, b[5], d, 0, &L->mlp_norm)) ||
            (st = get_linear(c, b[6], g->d_ff, d, mlp_bias, &L->gate)) ||
            (st = get_linear(c, b[7], g->d_ff, d, mlp_bias, &L->up)) ||
            (st = get_linear(c, b[8], d, g->d_ff, mlp_bias, &L->down)))
            return st;
    }
    return get_head(c);
}

/* ---- tokenizer ---- */

static qs_status load_tokenizer(hf_ctx *c) {
    char a[HF_PATH], b[HF_PATH];
    int have = qs_io_exists(qs_io_join(a, sizeof a, c->dir, "tokenizer.json")) ||
               (qs_io_exists(qs_io_join(a, sizeof a, c->dir, "vocab.json")) &&
                qs_io_exists(qs_io_join(b, sizeof b, c->dir, "merges.txt")));
    if (!have) {
        qs_log(QS_LOG_WARN, "%s: no tokenizer.json (or vocab.json + merges.txt); the model loads "
               "without a tokenizer and takes token ids only", c->dir);
        return QS_OK;
    }
    qs_status st = qs_tok_load_hf(c->dir, &c->m->tok);
    if (st) return st;
    int n = qs_tok_vocab_size(c->m->tok);
    if (n > c->m->cfg.vocab)
        return qs_fail(QS_ESHAPE, "%s: the tokenizer has %d tokens but the model's vocabulary is %d",
                       c->dir, n, c->m->cfg.vocab);
    return QS_OK;
}

qs_status qs_hf_load(const char *dir, qs_model **out) {
    *out = NULL;
    hf_ctx c = {.dir = dir};
    qs_config g;
    qs_io_join(c.cfg_path, sizeof c.cfg_path, dir, "config.json");
    qs_status st;
    if (!qs_io_exists(c.cfg_path)) {
        st = qs_fail(QS_EIO, "%s: no config.json (not a Hugging Face model directory)", dir);
        goto done;
    }
    if ((st = parse_config(&c, &g)) || (st = open_weights(&c)) || (st = qs_model_alloc(&g, c.cfg_path, &c.m)))
        goto done;
    snprintf(c.m->format, sizeof c.m->format, "safetensors");
    snprintf(c.m->path, sizeof c.m->path, "%s", dir);
    if (g.arch == QS_ARCH_OPT) st = load_opt(&c);
    else if (g.arch == QS_ARCH_GPT2) st = load_gpt2(&c);
    else st = load_llama(&c);
    if (st) goto done;
    int kinds = 0, last = 0;
    for (int i = 0; i < QS_ST_N_DTYPES; i++)
        if (c.dtypes >> i & 1) kinds++, last = i;
    snprintf(c.m->dtype, sizeof c.m->dtype, "%s", kinds == 1 ? qs_st_dtype_str((qs_st_dtype)last) : "mixed");
    if ((st = load_tokenizer(&c)) || (st = qs_model_validate(c.m))) goto done;
    *out = c.m;
    c.m = NULL;
done:
    qs_model_free(c.m); /* before closing: borrowed maps belong to its store */
    for (int i = 0; i < c.n_files; i++) qs_st_close(c.files[i]);
    free(c.files);
    cJSON_Delete(c.cfg);
    return st;
}
