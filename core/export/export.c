/* export.c — what a format can hold of a variant, and the GGUF exporter:
 * llama.cpp's architecture keys, its tensor names and layouts (q/k rows
 * interleaved for llama, Phi-3's fused [q; k; v] and [gate; up]), the
 * tokenizer as tokenizer.ggml.*, and the weights as llama.cpp's own types.
 * Weight-only variants map onto its blocks: qscope's packed 4-bit and 8-bit
 * groups of 32 keep their codes (the group scale becomes the block's fp16
 * d), grid=ggml results and GGUF sources are copied as they are. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "export/export.h"
#include "export/export_impl.h"
#include "read/read.h"
#include "run/run.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

qs_status qs_export(const qs_model *m, const qs_variant *v, const char *path, const qs_export_opts *o) {
    return ends_with(path, ".gguf") ? qs_export_gguf(m, v, path, o) : qs_export_dir(m, v, path, o);
}

/* ---- what cannot be written ---- */

static void addf(char *buf, size_t cap, const char *fmt, const char *what, int n) {
    size_t len = strlen(buf);
    if (len >= cap) return;
    snprintf(buf + len, cap - len, "%s", len ? "; " : "");
    len = strlen(buf);
    snprintf(buf + len, cap - len, fmt, what, n);
}

/* whether SliceGPT changed the widths (shortcut matrices, a narrower stream) */
static int sliced(const qs_weights *w, const qs_config *c) {
    if (w->d_embed && w->d_embed != c->d_model) return 1;
    for (int l = 0; l < c->n_layers; l++)
        if (qs_linear_has(&w->layers[l].attn_skip) || qs_linear_has(&w->layers[l].mlp_skip)) return 1;
    return 0;
}

/* droppable: also list the activation, KV and attention-probability
 * quantizers (what weights_only leaves out); fixed: also what cannot be
 * left out */
static const char *unwritable(const qs_variant *v, int gguf, int droppable, int fixed, char *buf, size_t cap) {
    buf[0] = 0;
    if (!v) return NULL;
    const qs_exec *x = qs_variant_exec(v);
    const qs_model *m = qs_variant_model(v);
    const qs_config *c = &m->cfg;
    const qs_weights *w = x->w ? x->w : &m->w;
    if (droppable) {
        int act = 0, kv = 0, stat = 0, bits = 0;
        for (int l = 0; x->aq && l <= c->n_layers; l++)
            for (int s = 0; s < QS_SITE_COUNT; s++) {
                const qs_actq *q = &x->aq[(size_t)l * QS_SITE_COUNT + s];
                if (q->bits <= 0 || q->bits >= 16) continue;
                if (s == QS_SITE_K || s == QS_SITE_V) kv++;
                else act++, bits = q->bits;
                stat += q->mode == QS_AQ_STATIC;
            }
        if (act) {
            char what[96];
            snprintf(what, sizeof what, "A%d activation quantizers%s", bits,
                     stat ? " with calibrated per-channel scales (RPTQ's clusters, static scales)" : "");
            addf(buf, cap, "%s at %d sites", what, act);
        }
        if (kv) addf(buf, cap, "%s at %d sites", "KV-cache quantizers", kv);
        if (x->prob_levels) addf(buf, cap, "%s (%d levels)", "attention-probability quantization", x->prob_levels);
    }
    int kern = 0, perm = 0;
    for (int l = 0; fixed && l < c->n_layers; l++) {
        qs_layer *L = &w->layers[l];
        qs_linear *lin[QS_LAYER_LINEARS];
        int n = qs_layer_linears(L, 1, lin);
        for (int i = 0; i < n; i++) kern += lin[i]->kern != NULL;
        perm += L->attn_norm.perm || L->mlp_norm.perm;
    }
    if (kern)
        addf(buf, cap, "%s (int8 kernels in %d linears: int8 rows and fp32 outlier columns no file type holds)",
             "LLM.int8()'s outlier decomposition", kern);
    if (perm || (fixed && w->final_norm.perm))
        addf(buf, cap, "%s (%d layers permute their norm outputs)", "RPTQ's channel reordering", perm);
    if (fixed && gguf && sliced(w, c))
        addf(buf, cap, "%s%.0d", "SliceGPT's shortcut matrices and sliced widths (no llama.cpp architecture holds them; "
             "export to a directory)", 0);
    return buf[0] ? buf : NULL;
}

const char *qs_export_unwritable(const qs_variant *v, int gguf, char *buf, size_t cap) {
    return unwritable(v, gguf, 1, 1, buf, cap);
}

qs_status qs_export_check(const qs_variant *v, int gguf, const qs_export_opts *o, const char *path) {
    char why[1024];
    const char *to = gguf ? " to GGUF" : "";
    if (unwritable(v, gguf, 0, 1, why, sizeof why))
        return qs_fail(QS_EUNSUPPORTED, "%s: %s cannot be written%s: %s", path, qs_variant_spec(v), to, why);
    if (unwritable(v, gguf, 1, 0, why, sizeof why)) {
        if (!o->weights_only)
            return qs_fail(QS_EUNSUPPORTED, "%s: %s cannot be written%s: %s would be lost (--weights-only writes its "
                           "weights without them)", path, qs_variant_spec(v), to, why);
        qs_log(QS_LOG_INFO, "%s: weights only: left out %s", path, why);
    }
    return QS_OK;
}

static qs_status check_target(const char *path, const qs_export_opts *o) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return QS_OK;
    if (S_ISDIR(sb.st_mode)) return qs_fail(QS_EARG, "%s is a directory; a .gguf output is a file", path);
    if (!o->force) return qs_fail(QS_EARG, "%s exists; give --force to replace it", path);
    return QS_OK;
}

/* ---- GGUF ---- */

/* What llama.cpp calls each qscope family it runs, and what differs. */
typedef struct {
    const char *family, *arch;
    int permute_qk; /* q/k rows interleaved (the converter's permute) */
    int qkv_bias, qk_norm, fused, gemma2;
} gg_out;

static const gg_out gg_outs[] = {
    {"llama", "llama", 1, 0, 0, 0, 0},   {"mistral", "llama", 1, 0, 0, 0, 0}, {"qwen2", "qwen2", 0, 1, 0, 0, 0},
    {"qwen3", "qwen3", 0, 0, 1, 0, 0},   {"gemma2", "gemma2", 0, 0, 0, 0, 1}, {"phi3", "phi3", 0, 0, 0, 1, 0},
};

static const gg_out *gg_out_of(const char *family) {
    for (size_t i = 0; i < sizeof gg_outs / sizeof *gg_outs; i++)
        if (!strcmp(family, gg_outs[i].family)) return &gg_outs[i];
    return NULL;
}

int qs_export_gguf_family(const char *family) { return gg_out_of(family) != NULL; }

/* One tensor to write: rows of up to 3 linears (fused), or a vector. */
typedef struct {
    const qs_linear *part[3];
    int n_parts;
    int heads, hd;        /* > 0: q/k rows into llama.cpp's interleaved order */
    uint32_t type;        /* ggml type written */
    const float *vec;     /* a 1-D fp32 tensor (norms, biases, rope factors) */
    float *owned;         /* vec when this job made it */
    int n;
    const char *name;
} gg_job;

static int is_ggml_block(uint32_t t) { return t == QS_WT_Q4_0 || t == QS_WT_Q4_1 || t == QS_WT_Q8_0 || (t >= 6 && t < 30 && t != 8); }

/* The type a linear is written in (*t), or a refusal naming why no type
 * holds it. dtype: unquantized matrices' override (-1: as held). */
static qs_status lin_type(const qs_linear *l, int dtype, const char *what, uint32_t *t) {
    if (!qs_linear_readable(l)) return qs_fail(QS_EUNSUPPORTED, "%s: no weights a file can hold", what);
    if (l->wq && (l->wtype & 0xFFFF0000u) == QS_WT_QG) {
        int bits = (int)(l->wtype >> 8 & 0xFF), lg = (int)(l->wtype & 0xFF);
        if (lg == 5 && bits == 4) return *t = l->asym ? QS_WT_Q4_1 : QS_WT_Q4_0, QS_OK;
        if (lg == 5 && bits == 8 && !l->asym) return *t = QS_WT_Q8_0, QS_OK;
        return qs_fail(QS_EUNSUPPORTED, "%s: %d-bit %s weights in groups of %d: llama.cpp's blocks hold groups of 32 at "
                       "4 bits (Q4_0, asymmetric Q4_1) or 8 bits symmetric (Q8_0); use group=32", what, bits,
                       l->asym ? "asymmetric" : "symmetric", lg ? 1 << lg : l->n_in);
    }
    if (l->wq && is_ggml_block(l->wtype)) return *t = l->wtype, QS_OK; /* grid=ggml, or a GGUF source's blocks */
    if (l->bits > 0 && l->bits < 16)
        return qs_fail(QS_EUNSUPPORTED, "%s: %d-bit weights in groups of %d are held as fp32 values: llama.cpp's blocks "
                       "hold groups of 32 at 4 bits (Q4_0, Q4_1) or 8 bits (Q8_0); use group=32", what, l->bits,
                       l->group ? l->group : l->n_in);
    if (dtype >= 0) *t = (uint32_t)dtype;
    else if (l->wq && (l->wtype == QS_WT_F16 || l->wtype == QS_WT_BF16)) *t = l->wtype;
    else *t = QS_GGML_F32;
    return QS_OK;
}

/* One qscope packed group (qs_wt_qg: fp32 scale, fp32 zero offset, codes)
 * as a block of llama.cpp's type t, the same values up to the scale's fp16
 * rounding. */
static void qg_block(const uint8_t *g, int bits, uint32_t t, uint8_t *o) {
    float s, zoff;
    memcpy(&s, g, 4);
    memcpy(&zoff, g + 4, 4);
    const uint8_t *c = g + 8;
    int z = (int)zoff;
    uint16_t d = qs_f32_to_f16(s);
    memcpy(o, &d, 2);
    if (t == QS_WT_Q8_0) { /* level u - zoff, zoff = 127 */
        for (int i = 0; i < 32; i++) o[2 + i] = (uint8_t)(int8_t)(c[i] - z);
        return;
    }
    int hdr = 2, shift = 0;
    if (t == QS_WT_Q4_1) { /* value u s - zoff s */
        uint16_t m = qs_f32_to_f16(-zoff * s);
        memcpy(o + 2, &m, 2);
        hdr = 4;
    } else { /* level u - zoff, zoff = 7: nibble u - 7 + 8 */
        shift = 8 - z;
    }
    (void)bits;
    for (int j = 0; j < 16; j++) {
        int a = (c[j / 2] >> (j & 1 ? 4 : 0) & 15) + shift, b = (c[(j + 16) / 2] >> ((j + 16) & 1 ? 4 : 0) & 15) + shift;
        o[hdr + j] = (uint8_t)(a | b << 4);
    }
}

/* Row r of l in type t into dst (rb bytes); tmp: n_in floats. */
static void lin_row(const qs_linear *l, int r, uint32_t t, uint8_t *dst, float *tmp) {
    int n = l->n_in;
    if (l->wq && l->wtype == t) {
        size_t rb = qs_wtype_row_bytes(t, n);
        memcpy(dst, (const uint8_t *)l->wq + (size_t)r * rb, rb);
        return;
    }
    if (l->wq && (l->wtype & 0xFFFF0000u) == QS_WT_QG) {
        int bits = (int)(l->wtype >> 8 & 0xFF);
        size_t gb = qs_wtype_row_bytes(l->wtype, 32), ob = qs_wtype_row_bytes(t, 32);
        const uint8_t *src = (const uint8_t *)l->wq + (size_t)r * qs_wtype_row_bytes(l->wtype, n);
        for (int g = 0; g < n / 32; g++) qg_block(src + g * gb, bits, t, dst + g * ob);
        return;
    }
    const float *x = l->w ? l->w + (size_t)r * n : tmp;
    if (!l->w) qs_wrows_f32(l->wtype, l->wq, n, r, 1, tmp);
    if (t == QS_GGML_F32) {
        memcpy(dst, x, (size_t)n * 4);
        return;
    }
    uint16_t *h = (uint16_t *)(void *)dst;
    for (int i = 0; i < n; i++) h[i] = t == QS_GGML_F16 ? qs_f32_to_f16(x[i]) : qs_f32_to_bf16(x[i]);
}

static qs_status fill_job(void *ud, void *dst, size_t nbytes) {
    const gg_job *j = ud;
    if (j->vec) {
        memcpy(dst, j->vec, nbytes);
        return QS_OK;
    }
    int n_in = j->part[0]->n_in;
    size_t rb = qs_wtype_row_bytes(j->type, n_in);
    float *tmp = malloc((size_t)n_in * sizeof *tmp + 1);
    if (!tmp) return qs_fail(QS_ENOMEM, "export: out of memory writing '%s'", j->name);
    uint8_t *o = dst;
    for (int p = 0; p < j->n_parts; p++) {
        const qs_linear *l = j->part[p];
        for (int r = 0; r < l->n_out; r++) {
            int src = r;
            if (j->heads) { /* file row h*hd + 2i + k holds rotate-half row h*hd + k*hd/2 + i */
                int h = r / j->hd, i = r % j->hd / 2, k = r % 2;
                src = h * j->hd + k * (j->hd / 2) + i;
            }
            lin_row(l, src, j->type, o, tmp);
            o += rb;
        }
    }
    free(tmp);
    (void)nbytes;
    return QS_OK;
}

typedef struct {
    qs_gguf_w *w;
    gg_job *jobs;
    int n_jobs, cap_jobs;
    int dtype; /* -1: as held */
    uint64_t per_type[40]; /* values per written type, for general.file_type */
    qs_status st;
} gg_ctx;

static gg_job *job_new(gg_ctx *x, const char *name) {
    if (x->st) return NULL;
    if (x->n_jobs == x->cap_jobs) {
        x->st = qs_fail(QS_EARG, "export: more tensors than planned");
        return NULL;
    }
    gg_job *j = &x->jobs[x->n_jobs++];
    memset(j, 0, sizeof *j);
    j->name = name;
    return j;
}

static void add_vec(gg_ctx *x, const char *name, const float *v, int n) {
    gg_job *j = job_new(x, name);
    if (!j) return;
    if (!v) {
        x->st = qs_fail(QS_EUNSUPPORTED, "%s: the model has no such weights (a norm without a gain?)", name);
        return;
    }
    j->vec = v;
    j->n = n;
    j->type = QS_GGML_F32;
    x->st = qs_gguf_w_tensor_fn(x->w, name, 1, (int64_t[]){n}, QS_GGML_F32, (size_t)n * 4, fill_job, j);
}

/* Linears parts[0..n) written as one (rows stacked) tensor. */
static void add_lin(gg_ctx *x, const char *name, const qs_linear *const *parts, int n, int heads, int hd) {
    gg_job *j = job_new(x, name);
    if (!j) return;
    int rows = 0;
    for (int p = 0; p < n; p++) {
        uint32_t t = 0;
        if ((x->st = lin_type(parts[p], x->dtype, name, &t))) return;
        if (p && t != j->type) {
            x->st = qs_fail(QS_EUNSUPPORTED, "%s: its fused parts are held in different types", name);
            return;
        }
        j->type = t;
        j->part[p] = parts[p];
        rows += parts[p]->n_out;
    }
    j->n_parts = n;
    j->heads = heads;
    j->hd = hd;
    int n_in = parts[0]->n_in;
    size_t rb = qs_wtype_row_bytes(j->type, n_in);
    if (!rb) {
        x->st = qs_fail(QS_EUNSUPPORTED, "%s: rows of %d values do not fill whole blocks of its type", name, n_in);
        return;
    }
    x->per_type[j->type < 40 ? j->type : 39] += (uint64_t)rows * n_in;
    x->st = qs_gguf_w_tensor_fn(x->w, name, 2, (int64_t[]){rows, n_in}, j->type, rb * (size_t)rows, fill_job, j);
}

static char *nm(gg_ctx *x, char (*names)[64], int *k, const char *fmt, int layer) {
    (void)x;
    snprintf(names[*k], 64, fmt, layer);
    return names[(*k)++];
}

/* llama.cpp's general.file_type: the type most of the blocks' values are held in */
static uint32_t file_type(const uint64_t *per) {
    int best = 0;
    for (int i = 1; i < 40; i++)
        if (per[i] > per[best]) best = i;
    switch (best) {
    case QS_WT_F16: return 1;
    case QS_WT_Q4_0: return 2;
    case QS_WT_Q4_1: return 3;
    case QS_WT_Q8_0: return 7;
    case QS_WT_Q4_K: return 14; /* LLAMA_FTYPE_MOSTLY_Q4_K_S: Q4_K throughout */
    case QS_WT_Q6_K: return 18;
    case QS_WT_BF16: return 32;
    default: return 0;
    }
}

static qs_status write_tokenizer(qs_gguf_w *w, const qs_model *m) {
    if (!m->tok) return QS_OK;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", m->path);
    if (!qs_io_is_dir(dir)) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    qs_tok_gguf *g;
    qs_status st = qs_tok_to_gguf(m->tok, dir, &g);
    if (st) return st;
    qs_gguf_w_str(w, "tokenizer.ggml.model", g->model);
    if (g->pre) qs_gguf_w_str(w, "tokenizer.ggml.pre", g->pre);
    qs_gguf_w_strs(w, "tokenizer.ggml.tokens", (size_t)g->n, g->pieces);
    if (g->scores) qs_gguf_w_f32s(w, "tokenizer.ggml.scores", (size_t)g->n, g->scores);
    if (g->types) qs_gguf_w_i32s(w, "tokenizer.ggml.token_type", (size_t)g->n, g->types);
    if (g->n_merges) qs_gguf_w_strs(w, "tokenizer.ggml.merges", (size_t)g->n_merges, g->merges);
    if (g->bos >= 0) qs_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)g->bos);
    if (g->eos >= 0) qs_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)g->eos);
    if (g->unk >= 0) qs_gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)g->unk);
    if (g->pad >= 0) qs_gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)g->pad);
    qs_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", g->add_bos);
    qs_gguf_w_bool(w, "tokenizer.ggml.add_eos_token", g->add_eos);
    qs_tok_gguf_free(g);
    return QS_OK;
}

/* The architecture keys, as llama.cpp's converter writes them; rope
 * settings llama.cpp cannot express are refused. */
static qs_status write_config(gg_ctx *x, const qs_model *m, const gg_out *a, const char *path, float **owned, int *n_owned,
                              const char **rope_names, const float **rope_vals, int *n_rope) {
    const qs_config *c = &m->cfg;
    qs_gguf_w *w = x->w;
    char k[128];
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", a->arch, s), k)
    const char *base = strrchr(m->path, '/');
    base = base && base[1] ? base + 1 : m->path;
    qs_gguf_w_str(w, "general.architecture", a->arch);
    qs_gguf_w_str(w, "general.name", base);
    qs_gguf_w_u32(w, KEY("block_count"), (uint32_t)c->n_layers);
    qs_gguf_w_u32(w, KEY("context_length"), (uint32_t)c->max_pos);
    qs_gguf_w_u32(w, KEY("embedding_length"), (uint32_t)c->d_model);
    qs_gguf_w_u32(w, KEY("feed_forward_length"), (uint32_t)c->d_ff);
    qs_gguf_w_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads);
    qs_gguf_w_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads);
    qs_gguf_w_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps);
    qs_gguf_w_f32(w, KEY("rope.freq_base"), c->rope_theta);
    if (c->head_dim != c->d_model / c->n_heads) {
        qs_gguf_w_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim);
        qs_gguf_w_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim);
    }
    qs_gguf_w_u32(w, KEY("rope.dimension_count"), (uint32_t)c->rope.dim);
    if (!strcmp(a->arch, "llama")) qs_gguf_w_u32(w, KEY("vocab_size"), (uint32_t)c->vocab);
    if (c->sliding_window && c->sliding_window < c->max_pos) { /* a window as long as the context changes nothing */
        if (!a->gemma2 && strcmp(a->arch, "phi3"))
            return qs_fail(QS_EUNSUPPORTED, "%s: a sliding window of %d on every layer: GGUF %s has none", path,
                           c->sliding_window, a->arch);
        qs_gguf_w_u32(w, KEY("attention.sliding_window"), (uint32_t)c->sliding_window);
    }
    if (a->gemma2) {
        qs_gguf_w_f32(w, KEY("attn_logit_softcapping"), c->attn_softcap);
        qs_gguf_w_f32(w, KEY("final_logit_softcapping"), c->logit_softcap);
        float want = c->n_layers == 46 && c->d_model == 4608 ? 1.0f / sqrtf((float)(c->d_model / c->n_heads))
                                                              : 1.0f / sqrtf((float)c->head_dim);
        if (c->attn_scale && fabsf(c->attn_scale - want) > 1e-6f * want)
            return qs_fail(QS_EUNSUPPORTED, "%s: query_pre_attn_scalar gives an attention scale of %g; llama.cpp's gemma2 "
                           "uses %g", path, c->attn_scale, want);
    }
    const qs_rope *r = &c->rope;
    int half = r->dim / 2;
    *n_rope = 0;
    switch (r->kind) {
    case QS_ROPE_NONE:
    case QS_ROPE_DEFAULT: break;
    case QS_ROPE_LINEAR:
        qs_gguf_w_str(w, KEY("rope.scaling.type"), "linear");
        qs_gguf_w_f32(w, KEY("rope.scaling.factor"), r->factor);
        break;
    case QS_ROPE_YARN:
        qs_gguf_w_str(w, KEY("rope.scaling.type"), "yarn");
        qs_gguf_w_f32(w, KEY("rope.scaling.factor"), r->factor);
        qs_gguf_w_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)r->orig_max);
        break;
    case QS_ROPE_LLAMA3:
    case QS_ROPE_DIVISORS: { /* each frequency's divisor, as the converter writes rope_freqs */
        float *f = malloc((size_t)half * sizeof *f + 1), *inv = malloc((size_t)half * sizeof *inv + 1);
        if (!f || !inv) {
            free(f);
            free(inv);
            return qs_fail(QS_ENOMEM, "export: out of memory");
        }
        if (r->kind == QS_ROPE_DIVISORS) memcpy(f, r->short_factor, (size_t)half * sizeof *f);
        else {
            qs_rope_inv_freq(c, 1, inv);
            for (int i = 0; i < half; i++)
                f[i] = (float)(pow((double)c->rope_theta, -(double)(2 * i) / r->dim) / inv[i]);
        }
        free(inv);
        owned[(*n_owned)++] = f;
        rope_names[*n_rope] = "rope_freqs.weight";
        rope_vals[(*n_rope)++] = f;
        break;
    }
    case QS_ROPE_LONGROPE:
        qs_gguf_w_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)r->orig_max);
        qs_gguf_w_f32(w, KEY("rope.scaling.attn_factor"), r->attn_factor);
        rope_names[*n_rope] = "rope_factors_short.weight";
        rope_vals[(*n_rope)++] = r->short_factor;
        rope_names[*n_rope] = "rope_factors_long.weight";
        rope_vals[(*n_rope)++] = r->long_factor;
        break;
    default:
        return qs_fail(QS_EUNSUPPORTED, "%s: this model's RoPE scaling (dynamic NTK) has no llama.cpp equivalent", path);
    }
#undef KEY
    return QS_OK;
}

/* What of the model GGUF's architecture a holds: refusals for the rest. */
static qs_status check_shape(const qs_model *m, const qs_weights *w, const gg_out *a, const char *path) {
    const qs_config *c = &m->cfg;
    if (c->norm != QS_NORM_RMS || c->resid != QS_RESID_SEQ || c->pos_offset || w->pos_embed || w->proj_in.w)
        return qs_fail(QS_EUNSUPPORTED, "%s: this %s model's block does not match GGUF %s", path, c->family, a->arch);
    for (int l = 0; l < c->n_layers; l++) {
        const qs_layer *L = &w->layers[l];
        int qkv_b = L->q.b || L->k.b || L->v.b;
        if ((qkv_b && !a->qkv_bias) || L->o.b || L->up.b || L->down.b || L->gate.b || L->attn_norm.b || L->mlp_norm.b)
            return qs_fail(QS_EUNSUPPORTED, "%s: layer %d has biases GGUF %s does not hold", path, l, a->arch);
        if (!qs_linear_has(&L->gate))
            return qs_fail(QS_EUNSUPPORTED, "%s: layer %d has no gated MLP, which GGUF %s expects", path, l, a->arch);
    }
    return QS_OK;
}

qs_status qs_export_gguf(const qs_model *m, const qs_variant *v, const char *path, const qs_export_opts *opt) {
    qs_export_opts def = {0};
    const qs_export_opts *o = opt ? opt : &def;
    const qs_config *c = &m->cfg;
    const qs_weights *wt = v ? (qs_variant_exec(v)->w ? qs_variant_exec(v)->w : &m->w) : &m->w;
    qs_status st;
    const gg_out *a = gg_out_of(c->family);
    if (!a)
        return qs_fail(QS_EUNSUPPORTED, "%s: qscope writes GGUF for llama, mistral, qwen2, qwen3, gemma2 and phi3 models; "
                       "this one is %s (export to a directory instead)", path, c->family);
    if ((st = check_target(path, o)) || (v && (st = qs_export_check(v, 1, o, path))) || (st = check_shape(m, wt, a, path)))
        return st;
    gg_ctx x = {.dtype = -1};
    if (o->dtype) {
        if (!strcmp(o->dtype, "f32")) x.dtype = QS_GGML_F32;
        else if (!strcmp(o->dtype, "f16")) x.dtype = QS_GGML_F16;
        else if (!strcmp(o->dtype, "bf16")) x.dtype = QS_GGML_BF16;
        else return qs_fail(QS_EARG, "export: dtype '%s' (f32, f16 or bf16)", o->dtype);
    }
    x.cap_jobs = 16 * c->n_layers + 16;
    x.jobs = calloc((size_t)x.cap_jobs, sizeof *x.jobs);
    char (*names)[64] = calloc((size_t)x.cap_jobs, 64);
    x.w = qs_gguf_w_new();
    float *owned[4] = {0};
    int n_owned = 0, n_rope = 0, k = 0;
    const char *rope_names[2];
    const float *rope_vals[2];
    if (!x.jobs || !names || !x.w) {
        st = qs_fail(QS_ENOMEM, "export: out of memory");
        goto done;
    }
    if ((st = write_config(&x, m, a, path, owned, &n_owned, rope_names, rope_vals, &n_rope))) goto done;
    /* the token embedding as held */
    qs_linear emb = {.n_out = c->vocab, .n_in = c->d_model, .w = wt->tok_embed, .wq = wt->embed_q, .wtype = wt->embed_type};
    const qs_linear *p1[3] = {&emb};
    add_lin(&x, "token_embd.weight", p1, 1, 0, 0);
    memset(x.per_type, 0, sizeof x.per_type); /* general.file_type follows the blocks' matrices, as llama-quantize's */
    for (int i = 0; i < n_rope; i++) add_vec(&x, rope_names[i], rope_vals[i], c->rope.dim / 2);
    int hd = c->head_dim, d = c->d_model;
    for (int l = 0; l < c->n_layers && !x.st; l++) {
        const qs_layer *L = &wt->layers[l];
        add_vec(&x, nm(&x, names, &k, "blk.%d.attn_norm.weight", l), L->attn_norm.w, d);
        if (a->fused) {
            const qs_linear *qkv[3] = {&L->q, &L->k, &L->v}, *gu[3] = {&L->gate, &L->up};
            add_lin(&x, nm(&x, names, &k, "blk.%d.attn_qkv.weight", l), qkv, 3, 0, 0);
            add_lin(&x, nm(&x, names, &k, "blk.%d.ffn_up.weight", l), gu, 2, 0, 0);
        } else {
            const qs_linear *q[1] = {&L->q}, *kk[1] = {&L->k}, *vv[1] = {&L->v}, *g[1] = {&L->gate}, *u[1] = {&L->up};
            add_lin(&x, nm(&x, names, &k, "blk.%d.attn_q.weight", l), q, 1, a->permute_qk ? c->n_heads : 0, hd);
            add_lin(&x, nm(&x, names, &k, "blk.%d.attn_k.weight", l), kk, 1, a->permute_qk ? c->n_kv_heads : 0, hd);
            add_lin(&x, nm(&x, names, &k, "blk.%d.attn_v.weight", l), vv, 1, 0, 0);
            add_lin(&x, nm(&x, names, &k, "blk.%d.ffn_gate.weight", l), g, 1, 0, 0);
            add_lin(&x, nm(&x, names, &k, "blk.%d.ffn_up.weight", l), u, 1, 0, 0);
        }
        if (a->qkv_bias) {
            add_vec(&x, nm(&x, names, &k, "blk.%d.attn_q.bias", l), L->q.b, L->q.n_out);
            add_vec(&x, nm(&x, names, &k, "blk.%d.attn_k.bias", l), L->k.b, L->k.n_out);
            add_vec(&x, nm(&x, names, &k, "blk.%d.attn_v.bias", l), L->v.b, L->v.n_out);
        }
        if (a->qk_norm) {
            add_vec(&x, nm(&x, names, &k, "blk.%d.attn_q_norm.weight", l), L->q_norm.w, hd);
            add_vec(&x, nm(&x, names, &k, "blk.%d.attn_k_norm.weight", l), L->k_norm.w, hd);
        }
        const qs_linear *ov[1] = {&L->o}, *dn[1] = {&L->down};
        add_lin(&x, nm(&x, names, &k, "blk.%d.attn_output.weight", l), ov, 1, 0, 0);
        add_vec(&x, nm(&x, names, &k, "blk.%d.ffn_norm.weight", l), L->mlp_norm.w, d);
        add_lin(&x, nm(&x, names, &k, "blk.%d.ffn_down.weight", l), dn, 1, 0, 0);
        if (a->gemma2) {
            add_vec(&x, nm(&x, names, &k, "blk.%d.post_attention_norm.weight", l), L->post_attn_norm.w, d);
            add_vec(&x, nm(&x, names, &k, "blk.%d.post_ffw_norm.weight", l), L->post_mlp_norm.w, d);
        }
    }
    add_vec(&x, "output_norm.weight", wt->final_norm.w, d);
    if (!qs_head_tied(wt)) {
        const qs_linear *h[1] = {&wt->head};
        add_lin(&x, "output.weight", h, 1, 0, 0);
    }
    if ((st = x.st)) goto done;
    qs_gguf_w_u32(x.w, "general.file_type", file_type(x.per_type));
    qs_gguf_w_u32(x.w, "general.quantization_version", 2);
    if ((st = write_tokenizer(x.w, m))) goto done;
    qs_gguf_w_progress(x.w, o->progress, o->progress_ud);
    st = qs_gguf_w_write(x.w, path);
done:
    qs_gguf_w_free(x.w);
    free(x.jobs);
    free(names);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    return st;
}
