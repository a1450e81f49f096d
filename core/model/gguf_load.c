/* gguf_load.c — a model from a GGUF file: llama.cpp's metadata keys become
 * the config, its tensors the weights (read/gguf.c reads the file). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/loaders.h"
#include "read/read.h"

/* ---- the model loader ---- */

/* What llama.cpp's converter writes for each architecture qscope reads. */
typedef struct {
    const char *arch;    /* general.architecture, the prefix of its keys */
    const char *family;  /* the qscope family it is */
    const char *hf_arch;
    int permute_qk;      /* llama.cpp's interleaved RoPE: q/k rows were permuted by the converter */
    int qkv_bias;        /* attn_q/k/v.bias */
    int qk_norm;         /* attn_q_norm, attn_k_norm (per head) */
    int fused;           /* attn_qkv = [q; k; v] and ffn_up = [gate; up] (Phi-3) */
    int gemma2;          /* post-norms, soft-caps, alternating windows, embeddings x sqrt(d);
                          * the converter stored its norms as 1 + w */
} gg_arch;

static const gg_arch gg_archs[] = {
    {"llama", "llama", "LlamaForCausalLM", 1, 0, 0, 0, 0},
    {"qwen2", "qwen2", "Qwen2ForCausalLM", 0, 1, 0, 0, 0},
    {"qwen3", "qwen3", "Qwen3ForCausalLM", 0, 0, 1, 0, 0},
    {"gemma2", "gemma2", "Gemma2ForCausalLM", 0, 0, 0, 0, 1},
    {"phi3", "phi3", "Phi3ForCausalLM", 0, 0, 0, 1, 0},
};

typedef struct {
    qs_gguf *g;
    qs_model *m;
    const gg_arch *a;
    unsigned char *used;   /* per tensor: read */
    uint64_t per_type[32]; /* values loaded per ggml type, for the model's dtype */
} gg_ctx;

/* "<arch>.<suffix>" */
static const char *akey(const gg_arch *a, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", a->arch, suffix);
    return buf;
}

static qs_status cfg_int(const qs_gguf *g, const char *key, int required, int def, int lo, int *out) {
    const qs_gguf_kv *kv = qs_gguf_get(g, key);
    int64_t v;
    if (!kv) {
        if (required) return qs_fail(QS_EFORMAT, "%s: missing key '%s'", qs_gguf_path(g), key);
        *out = def;
        return QS_OK;
    }
    if (!qs_gguf_kv_int(kv, &v) || v < lo || v > (1 << 24))
        return qs_fail(QS_EFORMAT, "%s: key '%s' must be an integer from %d to %d", qs_gguf_path(g), key, lo, 1 << 24);
    *out = (int)v;
    return QS_OK;
}

static qs_status cfg_float(const qs_gguf *g, const char *key, double def, float *out) {
    const qs_gguf_kv *kv = qs_gguf_get(g, key);
    double v = def;
    if (kv && (!qs_gguf_kv_float(kv, &v) || !isfinite(v)))
        return qs_fail(QS_EFORMAT, "%s: key '%s' must be a number", qs_gguf_path(g), key);
    *out = (float)v;
    return QS_OK;
}

static const char *kv_str(const qs_gguf *g, const char *key) {
    const qs_gguf_kv *kv = qs_gguf_get(g, key);
    return kv && kv->type == QS_GGUF_STRING ? kv->str : NULL;
}

/* A token id key; absent, negative or beyond the vocabulary (GGUF writes
 * 0xffffffff for "none") gives -1. */
static int token_id(const qs_gguf *g, const char *key, int vocab) {
    const qs_gguf_kv *kv = qs_gguf_get(g, key);
    int64_t v;
    if (!kv || !qs_gguf_kv_int(kv, &v) || v < 0 || v >= vocab) return -1;
    return (int)v;
}

/* A per-frequency factor tensor (rope_freqs, rope_factors_*) of n floats. */
static qs_status rope_factors(gg_ctx *x, const char *name, int n, float *out, int *found) {
    const qs_gguf_tensor *t = qs_gguf_find(x->g, name);
    *found = t != NULL;
    if (!t) return QS_OK;
    if (t->n_dims != 1 || t->ne[0] != (uint64_t)n || n > QS_ROPE_FACTORS)
        return qs_fail(QS_ESHAPE, "%s: tensor '%s' must hold %d factors (rotary dims / 2)", qs_gguf_path(x->g), name, n);
    x->used[t - qs_gguf_tensor_at(x->g, 0)] = 1;
    return qs_gguf_read_f32(x->g, t, out);
}

static qs_status parse_config(gg_ctx *x, qs_config *c) {
    const qs_gguf *g = x->g;
    qs_status st;
    const char *arch = kv_str(g, "general.architecture");
    if (!arch) return qs_fail(QS_EFORMAT, "%s: no general.architecture string", qs_gguf_path(g));
    const gg_arch *a = NULL;
    for (size_t i = 0; i < sizeof gg_archs / sizeof *gg_archs && !a; i++)
        if (!strcmp(arch, gg_archs[i].arch)) a = &gg_archs[i];
    if (!a)
        return qs_fail(QS_EUNSUPPORTED, "%s: general.architecture is '%.64s'; qscope reads GGUF llama, qwen2, qwen3, "
                       "gemma2 and phi3 models", qs_gguf_path(g), arch);
    x->a = a;
    memset(c, 0, sizeof *c);
    c->arch = QS_ARCH_LLAMA;
    snprintf(c->arch_name, sizeof c->arch_name, "%s", a->hf_arch);
    snprintf(c->family, sizeof c->family, "%s", a->family);
    char k[13][96];
    int rope_dims = 0, key_len = 0, val_len = 0, window = 0;
    if ((st = cfg_int(g, akey(a, "embedding_length", k[0], 96), 1, 0, 1, &c->d_model)) ||
        (st = cfg_int(g, akey(a, "block_count", k[1], 96), 1, 0, 1, &c->n_layers)) ||
        (st = cfg_int(g, akey(a, "feed_forward_length", k[2], 96), 1, 0, 1, &c->d_ff)) ||
        (st = cfg_int(g, akey(a, "attention.head_count", k[3], 96), 1, 0, 1, &c->n_heads)) ||
        (st = cfg_int(g, akey(a, "attention.head_count_kv", k[4], 96), 0, c->n_heads, 1, &c->n_kv_heads)) ||
        (st = cfg_int(g, akey(a, "context_length", k[5], 96), 1, 0, 1, &c->max_pos)) ||
        (st = cfg_int(g, akey(a, "attention.key_length", k[6], 96), 0, c->d_model / c->n_heads, 1, &key_len)) ||
        (st = cfg_int(g, akey(a, "attention.value_length", k[7], 96), 0, key_len, 1, &val_len)) ||
        (st = cfg_int(g, akey(a, "rope.dimension_count", k[8], 96), 0, key_len, 2, &rope_dims)) ||
        (st = cfg_float(g, akey(a, "attention.layer_norm_rms_epsilon", k[9], 96), 1e-5, &c->norm_eps)) ||
        (st = cfg_float(g, akey(a, "rope.freq_base", k[10], 96), 10000.0, &c->rope_theta)) ||
        (st = cfg_int(g, akey(a, "attention.sliding_window", k[11], 96), 0, 0, 0, &window)))
        return st;
    if (val_len != key_len)
        return qs_fail(QS_EUNSUPPORTED, "%s: key length %d differs from value length %d", qs_gguf_path(g), key_len,
                       val_len);
    if (rope_dims > key_len || rope_dims % 2)
        return qs_fail(QS_EFORMAT, "%s: %s is %d for heads of %d", qs_gguf_path(g), k[8], rope_dims, key_len);
    if (!(c->rope_theta > 0)) return qs_fail(QS_EFORMAT, "%s: %s must be positive", qs_gguf_path(g), k[10]);
    if (!(c->norm_eps > 0)) return qs_fail(QS_EFORMAT, "%s: %s must be positive", qs_gguf_path(g), k[9]);
    c->head_dim = key_len;
    c->act = a->gemma2 ? QS_ACT_GELU_TANH : QS_ACT_SILU;
    c->norm = QS_NORM_RMS;
    c->rope.kind = QS_ROPE_DEFAULT;
    c->rope.dim = rope_dims;
    c->sliding_window = window;
    const char *scaling = kv_str(g, akey(a, "rope.scaling.type", k[12], 96));
    double factor = 1;
    if (scaling && strcmp(scaling, "none") != 0) {
        const qs_gguf_kv *f = qs_gguf_get(g, akey(a, "rope.scaling.factor", k[12], 96));
        if (!f || !qs_gguf_kv_float(f, &factor) || !(factor >= 1))
            return qs_fail(QS_EFORMAT, "%s: rope scaling '%s' needs %s of at least 1", qs_gguf_path(g), scaling, k[12]);
        c->rope.factor = (float)factor;
        if (!strcmp(scaling, "linear")) {
            c->rope.kind = QS_ROPE_LINEAR;
        } else if (!strcmp(scaling, "yarn")) {
            c->rope.kind = QS_ROPE_YARN;
            if ((st = cfg_int(g, akey(a, "rope.scaling.original_context_length", k[12], 96), 1, 0, 1,
                              &c->rope.orig_max)))
                return st;
            c->rope.beta_fast = 32;
            c->rope.beta_slow = 1;
            c->rope.attn_factor = (float)(0.1 * log(factor) + 1.0);
        } else {
            return qs_fail(QS_EUNSUPPORTED, "%s: rope scaling '%.32s' is not supported (none, linear, yarn)",
                           qs_gguf_path(g), scaling);
        }
    }
    /* per-frequency factors: llama3's divisors, Phi-3's longrope */
    int found = 0, found_long = 0;
    if ((st = rope_factors(x, "rope_freqs.weight", rope_dims / 2, c->rope.short_factor, &found))) return st;
    if (found) {
        if (c->rope.kind != QS_ROPE_DEFAULT)
            return qs_fail(QS_EUNSUPPORTED, "%s: rope_freqs with rope scaling '%s'", qs_gguf_path(g), scaling);
        c->rope.kind = QS_ROPE_DIVISORS;
    }
    if ((st = rope_factors(x, "rope_factors_short.weight", rope_dims / 2, c->rope.short_factor, &found)) ||
        (st = rope_factors(x, "rope_factors_long.weight", rope_dims / 2, c->rope.long_factor, &found_long)))
        return st;
    if (found != found_long)
        return qs_fail(QS_EFORMAT, "%s: rope_factors_short and rope_factors_long come together", qs_gguf_path(g));
    if (found) {
        float af = 1;
        c->rope.kind = QS_ROPE_LONGROPE;
        if ((st = cfg_int(g, akey(a, "rope.scaling.original_context_length", k[12], 96), 1, 0, 1, &c->rope.orig_max)) ||
            (st = cfg_float(g, akey(a, "rope.scaling.attn_factor", k[12], 96), 1.0, &af)))
            return st;
        c->rope.attn_factor = af;
    }
    if (a->gemma2) {
        float acap = 0, lcap = 0;
        if ((st = cfg_float(g, akey(a, "attn_logit_softcapping", k[12], 96), 0, &acap)) ||
            (st = cfg_float(g, akey(a, "final_logit_softcapping", k[12], 96), 0, &lcap)))
            return st;
        c->attn_softcap = acap > 0 ? acap : 0;
        c->logit_softcap = lcap > 0 ? lcap : 0;
        c->window_every = 2;
        c->embed_scale = (float)sqrt((double)c->d_model);
        /* llama.cpp keeps no query_pre_attn_scalar: 1/sqrt(head_dim), but
         * 1/sqrt(d/heads) for the 27B model (46 layers of 4608) */
        if (c->n_layers == 46 && c->d_model == 4608) c->attn_scale = 1.0f / sqrtf((float)(c->d_model / c->n_heads));
    }
    const qs_gguf_tensor *emb = qs_gguf_find(g, "token_embd.weight");
    if (!emb) return qs_fail(QS_EFORMAT, "%s: tensor 'token_embd.weight' is missing", qs_gguf_path(g));
    if (emb->n_dims != 2 || emb->ne[1] > (1u << 30))
        return qs_fail(QS_ESHAPE, "%s: tensor 'token_embd.weight' must be a matrix", qs_gguf_path(g));
    c->vocab = (int)emb->ne[1];
    int vocab_key = 0;
    if ((st = cfg_int(g, akey(a, "vocab_size", k[12], 96), 0, c->vocab, 1, &vocab_key))) return st;
    if (vocab_key != c->vocab)
        return qs_fail(QS_ESHAPE, "%s: %s is %d but token_embd.weight has %d rows", qs_gguf_path(g), k[12], vocab_key,
                       c->vocab);
    c->bos_id = token_id(g, "tokenizer.ggml.bos_token_id", c->vocab);
    c->eos_id = token_id(g, "tokenizer.ggml.eos_token_id", c->vocab);
    c->pad_id = token_id(g, "tokenizer.ggml.padding_token_id", c->vocab);
    return QS_OK;
}

static void shape_str(char *buf, size_t cap, int n, const uint64_t *ne) {
    /* row-major order: slowest first, the reverse of GGUF's ne[] */
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = n - 1; i >= 0 && len < cap; i--)
        len += (size_t)snprintf(buf + len, cap - len, "%s%llu", i == n - 1 ? "" : ",", (unsigned long long)ne[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* Find a tensor of row-major shape (rows) or (rows, cols). */
static qs_status lookup(gg_ctx *x, const char *name, int rows, int cols, const qs_gguf_tensor **out) {
    const qs_gguf_tensor *t = qs_gguf_find(x->g, name);
    *out = NULL;
    if (!t) return qs_fail(QS_EFORMAT, "%s: tensor '%s' is missing", qs_gguf_path(x->g), name);
    uint64_t want[2] = {cols ? (uint64_t)cols : (uint64_t)rows, (uint64_t)rows};
    int nd = cols ? 2 : 1, have = t->n_dims;
    while (have > nd && t->ne[have - 1] == 1) have--; /* trailing unit dimensions */
    if (have != nd || t->ne[0] != want[0] || (nd == 2 && t->ne[1] != want[1])) {
        char found[96], expect[64];
        shape_str(found, sizeof found, t->n_dims, t->ne);
        shape_str(expect, sizeof expect, nd, want);
        return qs_fail(QS_ESHAPE, "%s: tensor '%s' has shape %s, config says %s", qs_gguf_path(x->g), name, found,
                       expect);
    }
    x->per_type[t->type < 32 ? t->type : 31] += t->numel;
    x->used[t - qs_gguf_tensor_at(x->g, 0)] = 1;
    *out = t;
    return QS_OK;
}

/* The types the weights came in, most values first: "F32", "Q4_K+Q6_K+F32"
 * (a llama.cpp Q4_K_M file), or "mixed" when the names do not fit. */
static void dtype_str(const gg_ctx *x, char *dst, size_t cap) {
    uint64_t left[32];
    memcpy(left, x->per_type, sizeof left);
    dst[0] = 0;
    for (size_t len = 0;;) {
        int best = -1;
        for (int i = 0; i < 32; i++)
            if (left[i] && (best < 0 || left[i] > left[best])) best = i;
        if (best < 0) return;
        left[best] = 0;
        int n = snprintf(dst + len, cap - len, "%s%s", len ? "+" : "", qs_gguf_type_name((uint32_t)best));
        if (n < 0 || (size_t)n >= cap - len) {
            snprintf(dst, cap, "mixed");
            return;
        }
        len += (size_t)n;
    }
}

static qs_status get(gg_ctx *x, const char *name, int rows, int cols, const float **out) {
    const qs_gguf_tensor *t;
    qs_status st = lookup(x, name, rows, cols, &t);
    return st ? st : qs_gguf_to_f32(x->g, t, x->m->store, out);
}

/* A weight matrix kept as the file stores it (F16, BF16, ggml blocks: the
 * kernels read it in place); F32 is borrowed from the map. */
static qs_status get_linear(gg_ctx *x, const char *name, int n_out, int n_in, qs_linear *l) {
    const qs_gguf_tensor *t;
    qs_status st = lookup(x, name, n_out, n_in, &t);
    if (st) return st;
    l->n_out = n_out;
    l->n_in = n_in;
    if (t->type != QS_GGML_F32 && qs_wtype_row_bytes(t->type, n_in)) {
        l->wtype = t->type;
        return qs_gguf_bytes(x->g, t, x->m->store, &l->wq);
    }
    return qs_gguf_to_f32(x->g, t, x->m->store, &l->w);
}

/* q/k: interleaved rotary rows in the file, rotate-half rows in the model
 * (rows of a stored type are moved as they are). */
static qs_status get_rope_linear(gg_ctx *x, const char *name, int heads, qs_linear *l) {
    int hd = x->m->cfg.head_dim, n_in = x->m->cfg.d_model;
    const qs_gguf_tensor *t;
    qs_status st = lookup(x, name, heads * hd, n_in, &t);
    if (st) return st;
    size_t rb = qs_wtype_row_bytes(t->type, n_in);
    if (t->type != QS_GGML_F32 && rb) {
        uint8_t *dst = qs_store_alloc(x->m->store, rb * (size_t)heads * hd);
        if (!dst) return QS_ENOMEM;
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < hd / 2; j++)
                for (int k = 0; k < 2; k++)
                    memcpy(dst + ((size_t)h * hd + (size_t)k * (hd / 2) + j) * rb, t->data + ((size_t)h * hd + 2 * j + k) * rb, rb);
        l->wq = dst;
        l->wtype = t->type;
        l->n_out = heads * hd;
        l->n_in = n_in;
        return QS_OK;
    }
    float *tmp = NULL, *dst = qs_store_alloc(x->m->store, (size_t)t->numel * sizeof *dst);
    if (!dst) return QS_ENOMEM;
    const float *src = (const float *)(const void *)t->data;
    if (t->type != QS_GGML_F32 || (uintptr_t)t->data % sizeof(float)) {
        if (!(tmp = malloc((size_t)t->numel * sizeof *tmp + 1)))
            return qs_fail(QS_ENOMEM, "%s: out of memory converting '%s'", qs_gguf_path(x->g), name);
        if ((st = qs_gguf_read_f32(x->g, t, tmp))) {
            free(tmp);
            return st;
        }
        src = tmp;
    }
    qs_gguf_rope_rows(dst, src, heads, hd, n_in);
    free(tmp);
    l->w = dst;
    l->n_out = heads * hd;
    l->n_in = n_in;
    return QS_OK;
}

static qs_status get_norm(gg_ctx *x, const char *name, int dim, qs_norm *n) {
    n->dim = dim;
    return get(x, name, dim, 0, &n->w);
}

/* rows [row0, row0 + n_out) of a fused (rows, n_in) tensor */
static void rows_of(qs_linear *l, const float *w, int row0, int n_out, int n_in) {
    l->w = w + (size_t)row0 * n_in;
    l->n_out = n_out;
    l->n_in = n_in;
}

static qs_status get_bias(gg_ctx *x, const char *name, qs_linear *l) {
    return get(x, name, l->n_out, 0, &l->b);
}

static qs_status load_layer(gg_ctx *x, int i) {
    const gg_arch *a = x->a;
    qs_model *m = x->m;
    const qs_config *c = &m->cfg;
    qs_layer *L = &m->w.layers[i];
    int d = c->d_model, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, ff = c->d_ff;
    char n[12][64];
    const char *names[12] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm",
                             "ffn_gate", "ffn_up", "ffn_down", "attn_qkv", "attn_q_norm", "attn_k_norm"};
    for (int j = 0; j < 12; j++) snprintf(n[j], sizeof n[j], "blk.%d.%s.weight", i, names[j]);
    qs_status st;
    if ((st = get_norm(x, n[0], d, &L->attn_norm)) || (st = get_linear(x, n[4], d, qd, &L->o)) ||
        (st = get_linear(x, n[8], d, ff, &L->down)))
        return st;
    if (a->fused) { /* [q; k; v] and [gate; up] */
        const float *w;
        if ((st = get(x, n[9], qd + 2 * kvd, d, &w))) return st;
        rows_of(&L->q, w, 0, qd, d);
        rows_of(&L->k, w, qd, kvd, d);
        rows_of(&L->v, w, qd + kvd, kvd, d);
        if ((st = get(x, n[7], 2 * ff, d, &w))) return st;
        rows_of(&L->gate, w, 0, ff, d);
        rows_of(&L->up, w, ff, ff, d);
    } else {
        if (a->permute_qk) {
            if ((st = get_rope_linear(x, n[1], c->n_heads, &L->q)) || (st = get_rope_linear(x, n[2], c->n_kv_heads, &L->k)))
                return st;
        } else if ((st = get_linear(x, n[1], qd, d, &L->q)) || (st = get_linear(x, n[2], kvd, d, &L->k))) {
            return st;
        }
        if ((st = get_linear(x, n[3], kvd, d, &L->v)) || (st = get_linear(x, n[6], ff, d, &L->gate)) ||
            (st = get_linear(x, n[7], ff, d, &L->up)))
            return st;
    }
    if (a->qkv_bias) {
        char b[3][64];
        for (int j = 0; j < 3; j++) snprintf(b[j], sizeof b[j], "blk.%d.%s.bias", i, names[1 + j]);
        if ((st = get_bias(x, b[0], &L->q)) || (st = get_bias(x, b[1], &L->k)) || (st = get_bias(x, b[2], &L->v)))
            return st;
    }
    if (a->qk_norm && ((st = get_norm(x, n[10], hd, &L->q_norm)) || (st = get_norm(x, n[11], hd, &L->k_norm))))
        return st;
    if ((st = get_norm(x, n[5], d, &L->mlp_norm))) return st;
    if (a->gemma2) {
        char p1[64], p2[64];
        snprintf(p1, sizeof p1, "blk.%d.post_attention_norm.weight", i);
        snprintf(p2, sizeof p2, "blk.%d.post_ffw_norm.weight", i);
        if ((st = get_norm(x, p1, d, &L->post_attn_norm)) || (st = get_norm(x, p2, d, &L->post_mlp_norm))) return st;
    }
    return QS_OK;
}

static qs_status load_weights(gg_ctx *x) {
    qs_model *m = x->m;
    const qs_config *c = &m->cfg;
    int d = c->d_model;
    qs_status st;
    qs_linear te = {0};
    if ((st = get_linear(x, "token_embd.weight", c->vocab, d, &te)) ||
        (st = get_norm(x, "output_norm.weight", d, &m->w.final_norm)))
        return st;
    m->w.tok_embed = te.w; /* kept as stored, like the matrices */
    m->w.embed_q = te.wq;
    m->w.embed_type = te.wtype;
    for (int i = 0; i < c->n_layers; i++)
        if ((st = load_layer(x, i))) return st;
    m->w.head.n_out = c->vocab;
    m->w.head.n_in = d;
    const qs_gguf_tensor *out = qs_gguf_find(x->g, "output.weight");
    const qs_gguf_tensor *emb = qs_gguf_find(x->g, "token_embd.weight");
    /* Converters write output.weight even for a shared classifier (llama2.c's
     * stories models); a byte-identical copy is the tied head it came from. */
    if (!out || (out->type == emb->type && out->n_dims == emb->n_dims && out->nbytes == emb->nbytes &&
                 out->ne[0] == emb->ne[0] && memcmp(out->data, emb->data, emb->nbytes) == 0)) {
        if (out) x->used[out - qs_gguf_tensor_at(x->g, 0)] = 1;
        m->cfg.tied_head = 1;
        qs_head_tie(&m->w, c->vocab, d);
        return QS_OK;
    }
    return get_linear(x, "output.weight", c->vocab, d, &m->w.head); /* as stored, like the matrices */
}

/* Every tensor in the file is one the architecture reads. */
static qs_status check_unused(gg_ctx *x) {
    for (size_t i = 0; i < qs_gguf_n_tensors(x->g); i++)
        if (!x->used[i])
            return qs_fail(QS_EFORMAT, "%s: tensor '%s' is not part of a GGUF %s model as qscope reads it",
                           qs_gguf_path(x->g), qs_gguf_tensor_at(x->g, i)->name, x->a->arch);
    return QS_OK;
}

/* A numeric array kv of n elements as a fresh float or int32 array. */
static qs_status array_copy(const qs_gguf *g, const char *key, int n, int want_float, void **out) {
    const qs_gguf_kv *kv = qs_gguf_get(g, key);
    *out = NULL;
    if (!kv) return QS_OK;
    int ok = kv->type == QS_GGUF_ARRAY && kv->arr_n == (uint64_t)n && kv->arr_data &&
             (want_float ? kv->arr_type == QS_GGUF_F32 : (kv->arr_type == QS_GGUF_I32 || kv->arr_type == QS_GGUF_U32));
    if (!ok) return qs_fail(QS_EFORMAT, "%s: '%s' must be an array of %d %s", qs_gguf_path(g), key, n,
                            want_float ? "float32" : "int32");
    void *a = malloc((size_t)n * 4 + 1);
    if (!a) return qs_fail(QS_ENOMEM, "%s: out of memory", qs_gguf_path(g));
    memcpy(a, kv->arr_data, (size_t)n * 4);
    *out = a;
    return QS_OK;
}

static qs_status load_tokenizer(gg_ctx *x) {
    const qs_gguf *g = x->g;
    const qs_config *c = &x->m->cfg;
    const char *model = kv_str(g, "tokenizer.ggml.model");
    if (!model) {
        qs_log(QS_LOG_WARN, "%s: no tokenizer.ggml.model; the model loads without a tokenizer", qs_gguf_path(g));
        return QS_OK;
    }
    const qs_gguf_kv *toks = qs_gguf_get(g, "tokenizer.ggml.tokens");
    if (!toks || toks->type != QS_GGUF_ARRAY || toks->arr_type != QS_GGUF_STRING || toks->arr_n == 0)
        return qs_fail(QS_EFORMAT, "%s: tokenizer.ggml.tokens must be a non-empty array of strings", qs_gguf_path(g));
    if (toks->arr_n > (uint64_t)c->vocab)
        return qs_fail(QS_ESHAPE, "%s: the vocabulary has %llu tokens but token_embd.weight has %d rows",
                       qs_gguf_path(g), (unsigned long long)toks->arr_n, c->vocab);
    int n = (int)toks->arr_n;
    const char *const *pieces = (const char *const *)toks->arr_str;
    int unk = token_id(g, "tokenizer.ggml.unknown_token_id", n);
    qs_status st;
    if (!strcmp(model, "llama")) {
        void *scores = NULL, *types = NULL;
        if (!(st = array_copy(g, "tokenizer.ggml.scores", n, 1, &scores)) &&
            !(st = array_copy(g, "tokenizer.ggml.token_type", n, 0, &types))) {
            if (!scores) st = qs_fail(QS_EFORMAT, "%s: a 'llama' vocabulary needs tokenizer.ggml.scores", qs_gguf_path(g));
            else st = qs_tok_new_spm(n, pieces, scores, types, c->bos_id, c->eos_id, unk, &x->m->tok);
        }
        free(scores);
        free(types);
        return st;
    }
    if (!strcmp(model, "gpt2")) {
        const qs_gguf_kv *mg = qs_gguf_get(g, "tokenizer.ggml.merges");
        if (!mg || mg->type != QS_GGUF_ARRAY || mg->arr_type != QS_GGUF_STRING || mg->arr_n > (1u << 30))
            return qs_fail(QS_EFORMAT, "%s: a 'gpt2' vocabulary needs tokenizer.ggml.merges strings", qs_gguf_path(g));
        const qs_gguf_kv *ab = qs_gguf_get(g, "tokenizer.ggml.add_bos_token");
        int add_bos = ab && ab->type == QS_GGUF_BOOL && ab->num.u;
        void *types = NULL;
        if ((st = array_copy(g, "tokenizer.ggml.token_type", n, 0, &types))) return st;
        st = qs_tok_new_byte_bpe(n, pieces, (int)mg->arr_n, (const char *const *)mg->arr_str, types, c->bos_id,
                                 c->eos_id, add_bos, kv_str(g, "tokenizer.ggml.pre"), &x->m->tok);
        free(types);
        return st;
    }
    return qs_fail(QS_EUNSUPPORTED, "%s: tokenizer.ggml.model '%.32s' is not supported (qscope reads 'llama' "
                   "and 'gpt2' vocabularies)", qs_gguf_path(g), model);
}

qs_status qs_gguf_load(const char *path, qs_model **out) {
    *out = NULL;
    gg_ctx x = {0};
    qs_config cfg;
    qs_status st;
    if ((st = qs_gguf_open(path, &x.g))) goto done;
    if (!(x.used = calloc(qs_gguf_n_tensors(x.g) + 1, 1))) {
        st = qs_fail(QS_ENOMEM, "out of memory");
        goto done;
    }
    if ((st = parse_config(&x, &cfg)) || (st = qs_model_alloc(&cfg, path, &x.m))) goto done;
    snprintf(x.m->format, sizeof x.m->format, "gguf");
    snprintf(x.m->path, sizeof x.m->path, "%s", path);
    if ((st = load_weights(&x)) || (st = check_unused(&x))) goto done;
    dtype_str(&x, x.m->dtype, sizeof x.m->dtype);
    if ((st = load_tokenizer(&x)) || (st = qs_model_validate(x.m))) goto done;
    *out = x.m;
    x.m = NULL;
done:
    qs_model_free(x.m); /* before closing: a borrowed map belongs to its store */
    qs_gguf_close(x.g);
    free(x.used);
    return st;
}
