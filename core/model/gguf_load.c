/* gguf_load.c — a model from a GGUF file: llama.cpp's metadata keys become
 * the config, its tensors the weights (read/gguf.c reads the file). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/loaders.h"
#include "read/read.h"

/* ---- the model loader ---- */

typedef struct {
    qs_gguf *g;
    qs_model *m;
    uint64_t per_type[32]; /* values loaded per ggml type, for the model's dtype */
} gg_ctx;

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

static qs_status parse_config(const qs_gguf *g, qs_config *c) {
    qs_status st;
    const char *arch = kv_str(g, "general.architecture");
    if (!arch) return qs_fail(QS_EFORMAT, "%s: no general.architecture string", qs_gguf_path(g));
    if (strcmp(arch, "llama") != 0)
        return qs_fail(QS_EUNSUPPORTED, "%s: general.architecture is '%.64s'; qscope reads GGUF 'llama' models",
                       qs_gguf_path(g), arch);
    memset(c, 0, sizeof *c);
    c->arch = QS_ARCH_LLAMA;
    snprintf(c->arch_name, sizeof c->arch_name, "LlamaForCausalLM");
    int rope_dims = 0, key_len = 0, val_len = 0;
    if ((st = cfg_int(g, "llama.embedding_length", 1, 0, 1, &c->d_model)) ||
        (st = cfg_int(g, "llama.block_count", 1, 0, 1, &c->n_layers)) ||
        (st = cfg_int(g, "llama.feed_forward_length", 1, 0, 1, &c->d_ff)) ||
        (st = cfg_int(g, "llama.attention.head_count", 1, 0, 1, &c->n_heads)) ||
        (st = cfg_int(g, "llama.attention.head_count_kv", 0, c->n_heads, 1, &c->n_kv_heads)) ||
        (st = cfg_int(g, "llama.context_length", 1, 0, 1, &c->max_pos)) ||
        (st = cfg_int(g, "llama.attention.key_length", 0, c->d_model / c->n_heads, 1, &key_len)) ||
        (st = cfg_int(g, "llama.attention.value_length", 0, key_len, 1, &val_len)) ||
        (st = cfg_int(g, "llama.rope.dimension_count", 0, key_len, 1, &rope_dims)) ||
        (st = cfg_float(g, "llama.attention.layer_norm_rms_epsilon", 1e-5, &c->norm_eps)) ||
        (st = cfg_float(g, "llama.rope.freq_base", 10000.0, &c->rope_theta)))
        return st;
    if (val_len != key_len)
        return qs_fail(QS_EUNSUPPORTED, "%s: key length %d differs from value length %d", qs_gguf_path(g), key_len,
                       val_len);
    if (rope_dims != key_len)
        return qs_fail(QS_EUNSUPPORTED, "%s: llama.rope.dimension_count %d is not the head size %d (partial "
                       "rotary embeddings are not supported)", qs_gguf_path(g), rope_dims, key_len);
    const char *scaling = kv_str(g, "llama.rope.scaling.type");
    if (scaling && strcmp(scaling, "none") != 0)
        return qs_fail(QS_EUNSUPPORTED, "%s: llama.rope.scaling.type '%s' is not supported (plain RoPE only)",
                       qs_gguf_path(g), scaling);
    if (!(c->rope_theta > 0)) return qs_fail(QS_EFORMAT, "%s: llama.rope.freq_base must be positive", qs_gguf_path(g));
    c->head_dim = key_len;
    c->act = QS_ACT_SILU;
    c->norm = QS_NORM_RMS;
    const qs_gguf_tensor *emb = qs_gguf_find(g, "token_embd.weight");
    if (!emb) return qs_fail(QS_EFORMAT, "%s: tensor 'token_embd.weight' is missing", qs_gguf_path(g));
    if (emb->n_dims != 2 || emb->ne[1] > (1u << 30))
        return qs_fail(QS_ESHAPE, "%s: tensor 'token_embd.weight' must be a matrix", qs_gguf_path(g));
    c->vocab = (int)emb->ne[1];
    int vocab_key = 0;
    if ((st = cfg_int(g, "llama.vocab_size", 0, c->vocab, 1, &vocab_key))) return st;
    if (vocab_key != c->vocab)
        return qs_fail(QS_ESHAPE, "%s: llama.vocab_size is %d but token_embd.weight has %d rows", qs_gguf_path(g),
                       vocab_key, c->vocab);
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

static qs_status get_linear(gg_ctx *x, const char *name, int n_out, int n_in, qs_linear *l) {
    l->n_out = n_out;
    l->n_in = n_in;
    return get(x, name, n_out, n_in, &l->w);
}

/* q/k: interleaved rotary rows in the file, rotate-half rows in the model. */
static qs_status get_rope_linear(gg_ctx *x, const char *name, int heads, qs_linear *l) {
    int hd = x->m->cfg.head_dim, n_in = x->m->cfg.d_model;
    const qs_gguf_tensor *t;
    qs_status st = lookup(x, name, heads * hd, n_in, &t);
    if (st) return st;
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

static qs_status load_weights(gg_ctx *x) {
    qs_model *m = x->m;
    const qs_config *c = &m->cfg;
    int d = c->d_model, qd = c->n_heads * c->head_dim;
    qs_status st;
    if ((st = get(x, "token_embd.weight", c->vocab, d, &m->w.tok_embed)) ||
        (st = get(x, "output_norm.weight", d, 0, &m->w.final_norm.w)))
        return st;
    m->w.final_norm.dim = d;
    for (int i = 0; i < c->n_layers; i++) {
        qs_layer *L = &m->w.layers[i];
        char n[9][64];
        snprintf(n[0], sizeof n[0], "blk.%d.attn_norm.weight", i);
        snprintf(n[1], sizeof n[1], "blk.%d.attn_q.weight", i);
        snprintf(n[2], sizeof n[2], "blk.%d.attn_k.weight", i);
        snprintf(n[3], sizeof n[3], "blk.%d.attn_v.weight", i);
        snprintf(n[4], sizeof n[4], "blk.%d.attn_output.weight", i);
        snprintf(n[5], sizeof n[5], "blk.%d.ffn_norm.weight", i);
        snprintf(n[6], sizeof n[6], "blk.%d.ffn_gate.weight", i);
        snprintf(n[7], sizeof n[7], "blk.%d.ffn_up.weight", i);
        snprintf(n[8], sizeof n[8], "blk.%d.ffn_down.weight", i);
        L->attn_norm.dim = L->mlp_norm.dim = d;
        if ((st = get(x, n[0], d, 0, &L->attn_norm.w)) || (st = get_rope_linear(x, n[1], c->n_heads, &L->q)) ||
            (st = get_rope_linear(x, n[2], c->n_kv_heads, &L->k)) ||
            (st = get_linear(x, n[3], c->n_kv_heads * c->head_dim, d, &L->v)) ||
            (st = get_linear(x, n[4], d, qd, &L->o)) || (st = get(x, n[5], d, 0, &L->mlp_norm.w)) ||
            (st = get_linear(x, n[6], c->d_ff, d, &L->gate)) || (st = get_linear(x, n[7], c->d_ff, d, &L->up)) ||
            (st = get_linear(x, n[8], d, c->d_ff, &L->down)))
            return st;
    }
    m->w.head.n_out = c->vocab;
    m->w.head.n_in = d;
    const qs_gguf_tensor *out = qs_gguf_find(x->g, "output.weight");
    const qs_gguf_tensor *emb = qs_gguf_find(x->g, "token_embd.weight");
    /* Converters write output.weight even for a shared classifier (llama2.c's
     * stories models); a byte-identical copy is the tied head it came from. */
    if (!out || (out->type == emb->type && out->n_dims == emb->n_dims && out->nbytes == emb->nbytes &&
                 out->ne[0] == emb->ne[0] && memcmp(out->data, emb->data, emb->nbytes) == 0)) {
        m->cfg.tied_head = 1;
        m->w.head.w = m->w.tok_embed;
        return QS_OK;
    }
    return get(x, "output.weight", c->vocab, d, &m->w.head.w);
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
        return qs_tok_new_byte_bpe(n, pieces, (int)mg->arr_n, (const char *const *)mg->arr_str, c->bos_id,
                                   c->eos_id, add_bos, &x->m->tok);
    }
    return qs_fail(QS_EUNSUPPORTED, "%s: tokenizer.ggml.model '%.32s' is not supported (qscope reads 'llama' "
                   "and 'gpt2' vocabularies)", qs_gguf_path(g), model);
}

qs_status qs_gguf_load(const char *path, qs_model **out) {
    *out = NULL;
    gg_ctx x = {0};
    qs_config cfg;
    qs_status st;
    if ((st = qs_gguf_open(path, &x.g)) || (st = parse_config(x.g, &cfg)) || (st = qs_model_alloc(&cfg, path, &x.m)))
        goto done;
    snprintf(x.m->format, sizeof x.m->format, "gguf");
    snprintf(x.m->path, sizeof x.m->path, "%s", path);
    if ((st = load_weights(&x))) goto done;
    dtype_str(&x, x.m->dtype, sizeof x.m->dtype);
    if ((st = load_tokenizer(&x)) || (st = qs_model_validate(x.m))) goto done;
    *out = x.m;
    x.m = NULL;
done:
    qs_model_free(x.m); /* before closing: a borrowed map belongs to its store */
    qs_gguf_close(x.g);
    return st;
}
