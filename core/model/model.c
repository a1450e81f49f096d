#include "model/model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "model/loaders.h"

const char *qs_arch_str(qs_arch a) {
    switch (a) {
    case QS_ARCH_OPT: return "opt";
    case QS_ARCH_GPT2: return "gpt2";
    case QS_ARCH_LLAMA: return "llama";
    }
    return "?";
}

const char *qs_act_str(qs_act a) {
    switch (a) {
    case QS_ACT_RELU: return "relu";
    case QS_ACT_GELU_TANH: return "gelu_tanh";
    case QS_ACT_GELU: return "gelu";
    case QS_ACT_SILU: return "silu";
    }
    return "?";
}

/* Sizes a loader may multiply in int: each at most 2^24, and so are the
 * attention widths, so no product of two of them overflows what a size_t
 * holds and no int product of a width and a count does. */
static qs_status check_sizes(const qs_config *c, const char *src) {
    const long long cap = 1LL << 24;
    struct {
        const char *name;
        long long v;
    } dims[] = {
        {"d_model", c->d_model},
        {"d_ff", c->d_ff},
        {"vocab", c->vocab},
        {"max_pos", c->max_pos},
        {"n_heads", c->n_heads},
        {"n_kv_heads", c->n_kv_heads},
        {"head_dim", c->head_dim},
        {"n_heads × head_dim", (long long)c->n_heads * c->head_dim},
        {"n_kv_heads × head_dim", (long long)c->n_kv_heads * c->head_dim},
    };
    if (c->n_layers <= 0 || c->n_layers > 4096)
        return qs_fail(QS_EFORMAT, "%s: the config gives %d layers (1 to 4096 expected)", src, c->n_layers);
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++)
        if (dims[i].v < 1 || dims[i].v > cap)
            return qs_fail(QS_EFORMAT, "%s: the config gives %s = %lld (1 to %lld expected)", src, dims[i].name,
                           dims[i].v, cap);
    return QS_OK;
}

const char *qs_model_default_path(char *buf, size_t cap) {
    const char *env = getenv("QSCOPE_MODEL");
    if (env && *env) return env;
    if (qs_io_is_dir("models/opt-mini")) return "models/opt-mini";
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, cap, "%s/models/opt-mini", exe);
            if (qs_io_is_dir(buf)) return buf;
            snprintf(buf, cap, "%s/../share/qscope/models/opt-mini", exe);
            if (qs_io_is_dir(buf)) return buf;
        }
    }
    return "models/opt-mini";
}

int qs_model_file_beside(const qs_model *m, const char *name, char *buf, size_t cap) {
    if (qs_io_is_dir(m->path)) {
        qs_io_join(buf, cap, m->path, name);
    } else {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", m->path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        qs_io_join(buf, cap, dir, name);
    }
    return qs_io_exists(buf);
}

qs_status qs_model_alloc(const qs_config *cfg, const char *src, qs_model **out) {
    *out = NULL;
    qs_status st = check_sizes(cfg, src ? src : "model");
    if (st) return st;
    qs_model *m = calloc(1, sizeof *m);
    if (!m) return qs_fail(QS_ENOMEM, "out of memory");
    m->cfg = *cfg;
    if (m->cfg.rope_theta > 0 && m->cfg.rope.dim == 0) { /* plain RoPE over the whole head */
        m->cfg.rope.kind = QS_ROPE_DEFAULT;
        m->cfg.rope.dim = m->cfg.head_dim;
    }
    if (!m->cfg.family[0]) snprintf(m->cfg.family, sizeof m->cfg.family, "%s", qs_arch_str(m->cfg.arch));
    m->store = qs_store_new();
    if (!m->store) {
        free(m);
        return QS_ENOMEM;
    }
    m->w.layers = qs_store_calloc(m->store, (size_t)cfg->n_layers * sizeof(qs_layer));
    if (!m->w.layers) {
        qs_model_free(m);
        return QS_ENOMEM;
    }
    *out = m;
    return QS_OK;
}

void qs_model_free(qs_model *m) {
    if (!m) return;
    qs_tok_free(m->tok);
    qs_store_free(m->store);
    free(m);
}

const char *qs_resid_str(qs_resid r) {
    switch (r) {
    case QS_RESID_SEQ: return "pre-norm";
    case QS_RESID_PARALLEL: return "parallel";
    case QS_RESID_POST: return "post-norm";
    }
    return "?";
}

int qs_layer_window(const qs_config *c, int layer) {
    if (c->sliding_window <= 0) return 0;
    if (c->window_every > 0 && (layer + 1) % c->window_every == 0) return 0;
    return c->sliding_window;
}

/* appends to buf (cap) "sep text" */
static void feature(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void feature(char *buf, size_t cap, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 3 >= cap) return;
    if (len) {
        memcpy(buf + len, ", ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

void qs_model_features(const qs_model *m, char *buf, size_t cap) {
    const qs_config *c = &m->cfg;
    const qs_layer *L0 = &m->w.layers[0];
    if (!cap) return;
    buf[0] = 0;
    if (c->rope_theta > 0) {
        char what[64] = "";
        if (c->rope.kind == QS_ROPE_LINEAR || c->rope.kind == QS_ROPE_DYNAMIC || c->rope.kind == QS_ROPE_YARN ||
            c->rope.kind == QS_ROPE_LLAMA3)
            snprintf(what, sizeof what, " %s x%g", qs_rope_kind_str(c->rope.kind), c->rope.factor);
        else if (c->rope.kind == QS_ROPE_LONGROPE)
            snprintf(what, sizeof what, " longrope from %d", c->rope.orig_max);
        else if (c->rope.kind == QS_ROPE_DIVISORS)
            snprintf(what, sizeof what, " with per-frequency divisors");
        feature(buf, cap, "RoPE%s theta %g", what, c->rope_theta);
        if (c->rope.dim < c->head_dim) feature(buf, cap, "rotary %d of %d channels", c->rope.dim, c->head_dim);
    } else {
        feature(buf, cap, "learned positions");
    }
    feature(buf, cap, "%s %s", qs_resid_str(c->resid), c->norm == QS_NORM_LAYER ? "LayerNorm" : "RMSNorm");
    if (qs_linear_has(&L0->gate)) feature(buf, cap, "gated %s MLP", qs_act_str(c->act));
    else feature(buf, cap, "%s MLP", qs_act_str(c->act));
    if (c->n_kv_heads < c->n_heads) feature(buf, cap, "%s %d/%d", c->n_kv_heads == 1 ? "MQA" : "GQA", c->n_heads, c->n_kv_heads);
    if (c->head_dim * c->n_heads != c->d_model) feature(buf, cap, "head_dim %d", c->head_dim);
    if (L0->q_norm.dim) feature(buf, cap, "q/k norm");
    if (L0->post_attn_norm.dim || L0->post_mlp_norm.dim) feature(buf, cap, "post-norms");
    if (c->sliding_window > 0)
        feature(buf, cap, "sliding window %d%s", c->sliding_window,
                c->window_every == 2 ? " on alternate layers" : c->window_every ? " on most layers" : "");
    if (c->attn_softcap > 0) feature(buf, cap, "attention soft-cap %g", c->attn_softcap);
    if (c->logit_softcap > 0) feature(buf, cap, "logit soft-cap %g", c->logit_softcap);
    if (c->attn_scale > 0) feature(buf, cap, "attention scale %g", c->attn_scale);
    if (c->embed_scale > 0) feature(buf, cap, "embeddings x%g", c->embed_scale);
    if (m->w.proj_in.w) feature(buf, cap, "embeddings %d wide, projected", m->w.proj_in.n_in);
    if (m->w.head.b) feature(buf, cap, "head bias");
    if (c->tied_head) feature(buf, cap, "tied head");
}

const float *qs_linear_f32(const qs_linear *l, float **tmp) {
    *tmp = NULL;
    if (l->w) return l->w;
    if (!l->wq) {
        qs_fail(QS_EARG, "this linear's weights are held by a kernel and cannot be read as fp32");
        return NULL;
    }
    float *d = malloc((size_t)l->n_out * l->n_in * sizeof *d + 1);
    if (!d) {
        qs_fail(QS_ENOMEM, "out of memory decoding a %d x %d weight matrix", l->n_out, l->n_in);
        return NULL;
    }
    qs_wrows_f32(l->wtype, l->wq, l->n_in, 0, l->n_out, d);
    *tmp = d;
    return d;
}

void qs_embed_row(const qs_weights *w, int id, int de, float *dst) {
    if (w->tok_embed) memcpy(dst, w->tok_embed + (size_t)id * de, (size_t)de * sizeof(float));
    else qs_wrows_f32(w->embed_type, w->embed_q, de, id, 1, dst);
}

void qs_head_tie(qs_weights *w, int vocab, int de) {
    w->head.n_out = vocab;
    w->head.n_in = de;
    w->head.w = w->tok_embed;
    w->head.wq = w->tok_embed ? NULL : w->embed_q;
    w->head.wtype = w->tok_embed ? 0 : w->embed_type;
}

static qs_status expand(qs_model *m, qs_linear *l) {
    if (l->w || !l->wq) return QS_OK;
    float *d = qs_store_alloc(m->store, (size_t)l->n_out * l->n_in * sizeof *d);
    if (!d) return qs_fail(QS_ENOMEM, "out of memory expanding a %d x %d matrix to fp32", l->n_out, l->n_in);
    qs_wrows_f32(l->wtype, l->wq, l->n_in, 0, l->n_out, d);
    qs_linear_set_f32(l, d);
    return QS_OK;
}

qs_status qs_model_weights_f32(qs_model *m) {
    qs_status st = QS_OK;
    for (int i = 0; i < m->cfg.n_layers && !st; i++) {
        qs_linear *ls[QS_LAYER_LINEARS];
        int n = qs_layer_linears(&m->w.layers[i], 1, ls);
        for (int j = 0; j < n && !st; j++) st = expand(m, ls[j]);
    }
    if (!st && m->w.embed_q) { /* the embedding, and the head when tied to it */
        int tied = qs_head_tied(&m->w), de = m->w.head.n_in;
        if (qs_linear_has(&m->w.proj_in)) de = m->w.proj_in.n_in;
        qs_linear e = {.n_out = m->cfg.vocab, .n_in = de, .wq = m->w.embed_q, .wtype = m->w.embed_type};
        if (!(st = expand(m, &e))) {
            m->w.tok_embed = e.w;
            m->w.embed_q = NULL;
            m->w.embed_type = 0;
            if (tied) qs_head_tie(&m->w, m->cfg.vocab, de);
        }
    }
    if (!st) st = expand(m, &m->w.head);
    if (!st) st = expand(m, &m->w.proj_in);
    if (!st) st = expand(m, &m->w.proj_out);
    return st;
}

long long qs_linear_stored_bytes(const qs_linear *l) {
    if (l->w) return 4LL * l->n_out * l->n_in;
    if (l->wq) return (long long)qs_wtype_row_bytes(l->wtype, l->n_in) * l->n_out;
    return 0;
}

int qs_layer_linears(qs_layer *L, int with_skips, qs_linear **out) {
    qs_linear *ls[QS_LAYER_LINEARS] = {&L->q, &L->k, &L->v, &L->o, &L->up, &L->gate, &L->down, &L->attn_skip, &L->mlp_skip};
    memcpy(out, ls, sizeof ls);
    return with_skips ? QS_LAYER_LINEARS : QS_LAYER_LINEARS - 2;
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

qs_status qs_model_load(const char *path, const qs_load_opts *opts, qs_model **out) {
    *out = NULL;
    if (!path || !*path) return qs_fail(QS_EARG, "no model path given");
    if (!qs_io_exists(path)) return qs_fail(QS_EIO, "%s: no such file or directory", path);
    qs_status st;
    if (qs_io_is_dir(path)) {
        st = qs_hf_load(path, out);
    } else {
        uint8_t magic[4] = {0};
        size_t got;
        if ((st = qs_io_read_head(path, magic, 4, &got))) return st;
        if (got == 4 && memcmp(magic, "GGUF", 4) == 0)
            st = qs_gguf_load(path, out);
        else if (has_suffix(path, ".bin"))
            st = qs_l2c_load(path, opts ? opts->tokenizer : NULL, out);
        else if (has_suffix(path, ".gguf"))
            return qs_fail(QS_EFORMAT, "%s: not a GGUF file (magic is not 'GGUF')", path);
        else if (has_suffix(path, ".safetensors") || has_suffix(path, "config.json"))
            return qs_fail(QS_EARG, "%s: pass the model's directory, not one of its files", path);
        else
            return qs_fail(QS_EUNSUPPORTED,
                           "%s: unknown model format (expected a Hugging Face directory, "
                           "a .gguf file or a llama2.c .bin)", path);
    }
    if (st != QS_OK) return st;
    snprintf((*out)->path, sizeof (*out)->path, "%s", path);
    qs_log(QS_LOG_INFO, "%s: %.1f MB held in memory (norms, biases, tensors converted at load); the weights "
           "stay mapped as stored", path, qs_store_bytes((*out)->store) / 1e6);
    return QS_OK;
}

static qs_status check_linear(const qs_linear *l, int n_out, int n_in, int need_bias,
                              const char *what, int layer) {
    if (!qs_linear_readable(l)) return qs_fail(QS_EFORMAT, "layer %d: %s weight missing", layer, what);
    if (l->wq && !qs_wtype_row_bytes(l->wtype, l->n_in))
        return qs_fail(QS_EFORMAT, "layer %d: %s is stored as type %u, which cannot hold rows of %d", layer, what,
                       l->wtype, l->n_in);
    if (l->n_out != n_out || l->n_in != n_in)
        return qs_fail(QS_ESHAPE, "layer %d: %s has shape [%d,%d], config says [%d,%d]", layer,
                       what, l->n_out, l->n_in, n_out, n_in);
    if (need_bias && !l->b) return qs_fail(QS_EFORMAT, "layer %d: %s bias missing", layer, what);
    return QS_OK;
}

static qs_status check_norm(const qs_norm *n, int dim, int layer_norm, const char *what, int layer) {
    if (!n->w) return qs_fail(QS_EFORMAT, "layer %d: %s weight missing", layer, what);
    if (n->kind) layer_norm = n->kind == QS_NORM_LAYER;
    if (n->dim != dim)
        return qs_fail(QS_ESHAPE, "layer %d: %s has %d channels, config says %d", layer, what, n->dim, dim);
    if (layer_norm && !n->b) return qs_fail(QS_EFORMAT, "layer %d: %s bias missing", layer, what);
    return QS_OK;
}

/* ---- non-finite values ---- */

static long long nonfinite_at(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return (long long)i;
    return -1;
}

static qs_status finite_vec(const float *x, size_t n, int layer, const char *what, const char *part) {
    long long i = x ? nonfinite_at(x, n) : -1;
    if (i < 0) return QS_OK;
    char where[32] = "";
    if (layer >= 0) snprintf(where, sizeof where, "layer %d: ", layer);
    return qs_fail(QS_EFORMAT, "%s%s%s%s holds a non-finite value (%g at index %lld)", where, what, *part ? " " : "",
                   part, x[i], i);
}

static qs_status finite_norm(const qs_norm *n, int layer, const char *what) {
    qs_status st;
    if (!n->dim) return QS_OK;
    if ((st = finite_vec(n->w, (size_t)n->dim, layer, what, "weight"))) return st;
    return finite_vec(n->b, (size_t)n->dim, layer, what, "bias");
}

static qs_status finite_linear(const qs_linear *l, int layer, const char *what, int matrix) {
    qs_status st = finite_vec(l->b, (size_t)l->n_out, layer, what, "bias");
    if (st || !matrix || !qs_linear_readable(l)) return st;
    if (l->w) return finite_vec(l->w, (size_t)l->n_out * l->n_in, layer, what, "weight");
    float *row = malloc((size_t)l->n_in * sizeof *row + 1);
    if (!row) return qs_fail(QS_ENOMEM, "out of memory checking a row of %d values", l->n_in);
    for (int r = 0; r < l->n_out && !st; r++) {
        qs_wrows_f32(l->wtype, l->wq, l->n_in, r, 1, row);
        long long i = nonfinite_at(row, (size_t)l->n_in);
        if (i < 0) continue;
        char where[32] = "";
        if (layer >= 0) snprintf(where, sizeof where, "layer %d: ", layer);
        st = qs_fail(QS_EFORMAT, "%s%s weight holds a non-finite value (%g at row %d, column %lld)", where, what,
                     row[i], r, i);
    }
    free(row);
    return st;
}

qs_status qs_model_check_finite(const qs_model *m, int matrices) {
    static const char *const lin_names[QS_LAYER_LINEARS] = {
        "q projection", "k projection", "v projection", "output projection", "MLP up projection",
        "MLP gate projection", "MLP down projection", "attention shortcut", "MLP shortcut"};
    const qs_config *c = &m->cfg;
    const qs_weights *w = &m->w;
    qs_status st;
    int de = qs_linear_has(&w->proj_in) ? w->proj_in.n_in : w->d_embed ? w->d_embed : c->d_model;
    qs_linear emb = {.n_out = c->vocab, .n_in = de, .w = w->tok_embed, .wq = w->embed_q, .wtype = w->embed_type};
    if (matrices && ((st = w->tok_embed ? finite_vec(w->tok_embed, (size_t)c->vocab * de, -1, "token embedding", "")
                                        : finite_linear(&emb, -1, "token embedding", 1)) ||
                     (st = finite_vec(w->pos_embed, (size_t)(c->max_pos + c->pos_offset) * c->d_model, -1,
                                      "position embedding", ""))))
        return st;
    for (int i = 0; i < c->n_layers; i++) {
        qs_layer *L = &w->layers[i];
        if ((st = finite_norm(&L->attn_norm, i, "attention norm")) || (st = finite_norm(&L->mlp_norm, i, "MLP norm")) ||
            (st = finite_norm(&L->q_norm, i, "q norm")) || (st = finite_norm(&L->k_norm, i, "k norm")) ||
            (st = finite_norm(&L->post_attn_norm, i, "post-attention norm")) ||
            (st = finite_norm(&L->post_mlp_norm, i, "post-MLP norm")))
            return st;
        qs_linear *ls[QS_LAYER_LINEARS];
        int n = qs_layer_linears(L, 1, ls);
        for (int j = 0; j < n; j++)
            if ((st = finite_linear(ls[j], i, lin_names[j], matrices))) return st;
    }
    if ((st = finite_norm(&w->final_norm, -1, "final norm")) || (st = finite_linear(&w->proj_in, -1, "project_in", matrices)) ||
        (st = finite_linear(&w->proj_out, -1, "project_out", matrices)))
        return st;
    return finite_linear(&w->head, -1, "LM head", matrices && !qs_head_tied(w));
}

/* A sliced model (SliceGPT, read back from qscope's layout): the widths are
 * each layer's own, chained from the embedding to the head; the norms are
 * weightless RMS norms dividing by d_model. */
static qs_status check_wnorm(const qs_norm *n, int dim, const char *what, int layer) {
    if (n->dim != dim || n->w || n->b || n->kind != QS_NORM_RMS)
        return qs_fail(QS_ESHAPE, "layer %d: %s is not a weightless RMS norm of %d channels", layer, what, dim);
    return QS_OK;
}

static qs_status validate_sliced(const qs_model *m) {
    const qs_config *c = &m->cfg;
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, din = m->w.d_embed;
    qs_status st;
    if (din <= 0 || din > c->d_model) return qs_fail(QS_ESHAPE, "sliced model: embedding width %d", din);
    for (int i = 0; i < c->n_layers; i++) {
        const qs_layer *L = &m->w.layers[i];
        int dmid = L->o.n_out, dout = L->down.n_out;
        if ((st = check_wnorm(&L->attn_norm, din, "attention norm", i)) ||
            (st = check_wnorm(&L->mlp_norm, dmid, "MLP norm", i)) ||
            (st = check_linear(&L->q, qd, din, 0, "q projection", i)) ||
            (st = check_linear(&L->k, kvd, din, 0, "k projection", i)) ||
            (st = check_linear(&L->v, kvd, din, 0, "v projection", i)) ||
            (st = check_linear(&L->o, dmid, qd, 0, "output projection", i)) ||
            (st = check_linear(&L->attn_skip, dmid, din, 0, "attention shortcut", i)) ||
            (st = check_linear(&L->up, c->d_ff, dmid, 0, "MLP up projection", i)) ||
            (st = check_linear(&L->down, dout, c->d_ff, 0, "MLP down projection", i)) ||
            (st = check_linear(&L->mlp_skip, dout, dmid, 0, "MLP shortcut", i)))
            return st;
        if (qs_linear_has(&L->gate) && (st = check_linear(&L->gate, c->d_ff, dmid, 0, "MLP gate projection", i)))
            return st;
        if ((L->q_norm.dim && (st = check_norm(&L->q_norm, c->head_dim, 0, "q norm", i))) ||
            (L->k_norm.dim && (st = check_norm(&L->k_norm, c->head_dim, 0, "k norm", i))))
            return st;
        din = dout;
    }
    if ((st = check_wnorm(&m->w.final_norm, din, "final norm", -1)) ||
        (st = check_linear(&m->w.head, c->vocab, din, 0, "LM head", -1)))
        return st;
    return qs_model_check_finite(m, 0);
}

qs_status qs_model_validate(const qs_model *m) {
    const qs_config *c = &m->cfg;
    /* every family's reader refuses these already; this covers any loader */
    if (!(c->norm_eps > 0) || !isfinite(c->norm_eps))
        return qs_fail(QS_EFORMAT, "config: the norm epsilon must be a number above 0, got %g", (double)c->norm_eps);
    if (c->d_model <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 ||
        c->d_ff <= 0 || c->vocab <= 0 || c->max_pos <= 0)
        return qs_fail(QS_EFORMAT, "config has a non-positive size (d_model %d, heads %d/%d, head_dim %d, "
                       "ffn %d, vocab %d, positions %d)", c->d_model, c->n_heads, c->n_kv_heads,
                       c->head_dim, c->d_ff, c->vocab, c->max_pos);
    if (c->n_heads % c->n_kv_heads)
        return qs_fail(QS_EFORMAT, "config: %d query heads is not a multiple of %d key/value heads",
                       c->n_heads, c->n_kv_heads);
    if (c->rope_theta > 0 && c->head_dim % 2)
        return qs_fail(QS_EFORMAT, "config: RoPE needs an even head_dim, got %d", c->head_dim);
    if (c->rope_theta > 0) {
        if (c->rope.dim < 2 || c->rope.dim > c->head_dim || c->rope.dim % 2)
            return qs_fail(QS_EFORMAT, "config: %d rotary channels for a head of %d (an even number up to it expected)",
                           c->rope.dim, c->head_dim);
    }
    int d = c->d_model, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    int ln = c->norm == QS_NORM_LAYER;
    if (!m->w.tok_embed && !m->w.embed_q) return qs_fail(QS_EFORMAT, "token embedding missing");
    if (c->rope_theta <= 0 && !m->w.pos_embed) return qs_fail(QS_EFORMAT, "position embedding missing");
    qs_status st;
    if (qs_linear_has(&m->w.layers[0].attn_skip)) return validate_sliced(m);
    for (int i = 0; i < c->n_layers; i++) {
        const qs_layer *L = &m->w.layers[i];
        int bias = c->arch == QS_ARCH_OPT || c->arch == QS_ARCH_GPT2;
        if ((L->q_norm.dim && (st = check_norm(&L->q_norm, c->head_dim, 0, "q norm", i))) ||
            (L->k_norm.dim && (st = check_norm(&L->k_norm, c->head_dim, 0, "k norm", i))) ||
            (L->post_attn_norm.dim && (st = check_norm(&L->post_attn_norm, d, 0, "post-attention norm", i))) ||
            (L->post_mlp_norm.dim && (st = check_norm(&L->post_mlp_norm, d, 0, "post-MLP norm", i))))
            return st;
        if ((st = check_norm(&L->attn_norm, d, ln, "attention norm", i)) ||
            (st = check_norm(&L->mlp_norm, d, ln, "MLP norm", i)) ||
            (st = check_linear(&L->q, qd, d, bias, "q projection", i)) ||
            (st = check_linear(&L->k, kvd, d, bias, "k projection", i)) ||
            (st = check_linear(&L->v, kvd, d, bias, "v projection", i)) ||
            (st = check_linear(&L->o, d, qd, bias, "output projection", i)) ||
            (st = check_linear(&L->up, c->d_ff, d, bias, "MLP up projection", i)) ||
            (st = check_linear(&L->down, d, c->d_ff, bias, "MLP down projection", i)))
            return st;
        if (qs_linear_has(&L->gate) && (st = check_linear(&L->gate, c->d_ff, d, 0, "MLP gate projection", i)))
            return st;
    }
    if (c->resid != QS_RESID_POST && (st = check_norm(&m->w.final_norm, d, ln, "final norm", -1))) return st;
    int dh = d;
    if (m->w.proj_in.w && (st = check_linear(&m->w.proj_in, d, m->w.proj_in.n_in, 0, "project_in", -1))) return st;
    if (m->w.proj_out.w) {
        if ((st = check_linear(&m->w.proj_out, m->w.proj_out.n_out, d, 0, "project_out", -1))) return st;
        dh = m->w.proj_out.n_out;
    }
    if ((st = check_linear(&m->w.head, c->vocab, dh, 0, "LM head", -1))) return st;
    return qs_model_check_finite(m, 0);
}

static long long norm_params(const qs_norm *n) { return (n->w ? n->dim : 0) + (n->b ? n->dim : 0); }
static long long lin_params(const qs_linear *l) {
    return qs_linear_has(l) ? (long long)l->n_out * l->n_in + (l->b ? l->n_out : 0) : 0;
}

long long qs_model_params(const qs_model *m) {
    const qs_config *c = &m->cfg;
    int de = m->w.d_embed ? m->w.d_embed : c->d_model; /* a sliced model's embeddings are narrower */
    long long p = (long long)c->vocab * (m->w.proj_in.w ? m->w.proj_in.n_in : de);
    if (m->w.pos_embed) p += (long long)(c->max_pos + c->pos_offset) * de;
    p += lin_params(&m->w.proj_in) + lin_params(&m->w.proj_out);
    for (int i = 0; i < c->n_layers; i++) {
        const qs_layer *L = &m->w.layers[i];
        p += norm_params(&L->attn_norm) + norm_params(&L->mlp_norm);
        p += norm_params(&L->q_norm) + norm_params(&L->k_norm);
        p += norm_params(&L->post_attn_norm) + norm_params(&L->post_mlp_norm);
        p += lin_params(&L->q) + lin_params(&L->k) + lin_params(&L->v) + lin_params(&L->o);
        p += lin_params(&L->up) + lin_params(&L->gate) + lin_params(&L->down);
        p += lin_params(&L->attn_skip) + lin_params(&L->mlp_skip);
    }
    p += norm_params(&m->w.final_norm);
    if (!qs_head_tied(&m->w)) p += lin_params(&m->w.head);
    else if (m->w.head.b) p += m->w.head.n_out;
    return p;
}

long long qs_model_weight_bytes(const qs_model *m) {
    /* linears as held (fp32, or as the file stores them), everything else fp32 */
    long long b = 4 * qs_model_params(m);
    for (int i = 0; i < m->cfg.n_layers; i++) {
        qs_linear *ls[QS_LAYER_LINEARS];
        int n = qs_layer_linears(&m->w.layers[i], 0, ls);
        for (int j = 0; j < n; j++) b += qs_linear_stored_bytes(ls[j]) - 4LL * ls[j]->n_out * ls[j]->n_in * (qs_linear_readable(ls[j]) != 0);
    }
    const qs_linear *h = &m->w.head;
    if (!qs_head_tied(&m->w)) b += qs_linear_stored_bytes(h) - 4LL * h->n_out * h->n_in * (qs_linear_readable(h) != 0);
    if (m->w.embed_q) { /* the embedding as stored */
        int de = m->w.proj_in.w || m->w.proj_in.wq ? m->w.proj_in.n_in : m->cfg.d_model;
        b += (long long)qs_wtype_row_bytes(m->w.embed_type, de) * m->cfg.vocab - 4LL * m->cfg.vocab * de;
    }
    return b;
}

/* ---- synthetic models for the bench ---- */

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_normal(uint64_t *s) { /* Box-Muller, one value per call */
    double u1 = ((rng_next(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (rng_next(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static float *synth_fill(qs_model *m, size_t n, uint64_t *seed, float std, float constant) {
    float *p = qs_store_alloc(m->store, n * sizeof(float));
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) p[i] = std > 0 ? std * rng_normal(seed) : constant;
    return p;
}

static qs_status synth_linear(qs_model *m, qs_linear *l, int n_out, int n_in, int bias,
                              uint64_t *seed, float std) {
    l->n_out = n_out;
    l->n_in = n_in;
    l->w = synth_fill(m, (size_t)n_out * n_in, seed, std, 0);
    l->b = bias ? synth_fill(m, (size_t)n_out, seed, 0, 0) : NULL;
    return l->w && (!bias || l->b) ? QS_OK : QS_ENOMEM;
}

static qs_status synth_norm(qs_model *m, qs_norm *n, int dim, int bias, uint64_t *seed) {
    n->dim = dim;
    n->w = synth_fill(m, (size_t)dim, seed, 0, 1.0f);
    n->b = bias ? synth_fill(m, (size_t)dim, seed, 0, 0) : NULL;
    return n->w && (!bias || n->b) ? QS_OK : QS_ENOMEM;
}

qs_status qs_model_synth(const qs_config *cfg, uint64_t seed, float std, qs_model **out) {
    qs_model *m;
    qs_status st = qs_model_alloc(cfg, "synthetic model", &m);
    if (st) return st;
    const qs_config *c = &m->cfg;
    int d = c->d_model, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    int bias = c->arch != QS_ARCH_LLAMA, ln = c->norm == QS_NORM_LAYER;
    snprintf(m->format, sizeof m->format, "synthetic");
    snprintf(m->dtype, sizeof m->dtype, "F32");
    m->w.tok_embed = synth_fill(m, (size_t)c->vocab * d, &seed, std, 0);
    if (!m->w.tok_embed) goto oom;
    if (c->rope_theta <= 0) {
        m->w.pos_embed = synth_fill(m, (size_t)(c->max_pos + c->pos_offset) * d, &seed, std, 0);
        if (!m->w.pos_embed) goto oom;
    }
    for (int i = 0; i < c->n_layers; i++) {
        qs_layer *L = &m->w.layers[i];
        if (synth_norm(m, &L->attn_norm, d, ln, &seed) || synth_norm(m, &L->mlp_norm, d, ln, &seed) ||
            synth_linear(m, &L->q, qd, d, bias, &seed, std) || synth_linear(m, &L->k, kvd, d, bias, &seed, std) ||
            synth_linear(m, &L->v, kvd, d, bias, &seed, std) || synth_linear(m, &L->o, d, qd, bias, &seed, std) ||
            synth_linear(m, &L->up, c->d_ff, d, bias, &seed, std) ||
            synth_linear(m, &L->down, d, c->d_ff, bias, &seed, std))
            goto oom;
        if (c->arch == QS_ARCH_LLAMA && synth_linear(m, &L->gate, c->d_ff, d, 0, &seed, std)) goto oom;
    }
    if (synth_norm(m, &m->w.final_norm, d, ln, &seed)) goto oom;
    m->w.head.n_out = c->vocab;
    m->w.head.n_in = d;
    if (c->tied_head) {
        m->w.head.w = m->w.tok_embed;
    } else if (!(m->w.head.w = synth_fill(m, (size_t)c->vocab * d, &seed, std, 0))) {
        goto oom;
    }
    if ((st = qs_model_validate(m))) {
        qs_model_free(m);
        return st;
    }
    *out = m;
    return QS_OK;
oom:
    qs_model_free(m);
    return qs_fail(QS_ENOMEM, "out of memory building a synthetic model");
}
