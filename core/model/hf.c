/* hf.c — Hugging Face model directories: config.json + safetensors. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/family_impl.h"
#include "model/hf_impl.h"
#include "model/loaders.h"
#include "read/read.h"

#define HF_PATH 1200

typedef struct {
    const char *dir;
    char cfg_path[HF_PATH];
    char weights_path[HF_PATH]; /* model.safetensors or the index: what "missing" messages name */
    cJSON *cfg;
    qs_cfgr r;
    const qs_family *fam;
    qs_fam_flags flags;
    qs_st_file **files;   /* (n_files) */
    unsigned char **used; /* (n_files) per tensor: read by the family */
    int n_files;
    qs_model *m;
    unsigned dtypes; /* bit per qs_st_dtype seen among loaded tensors */
    char prefix[32]; /* "model.decoder.", "transformer.", ... */
} hf_ctx;

/* bos/eos/pad: a number, null, or a list (the first entry counts). */
static int cfg_token(const hf_ctx *c, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->cfg, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > (double)(1 << 30)) return -1;
    return (int)v->valuedouble;
}

/* ---- config.json ---- */

static void list_archs(char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; qs_family_list[i] && len + 2 < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", qs_family_list[i]->hf_arch);
}

static qs_status parse_config(hf_ctx *c, qs_config *g) {
    char *text = NULL;
    size_t len = 0;
    qs_status st = qs_io_read_file(c->cfg_path, QS_IO_TEXT_MAX, &text, &len);
    if (st) return st;
    const char *end = NULL;
    c->cfg = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t at = end ? (size_t)(end - text) : 0;
    free(text);
    if (!c->cfg) return qs_fail(QS_EFORMAT, "%s: malformed JSON (error at byte %zu)", c->cfg_path, at);
    if (!cJSON_IsObject(c->cfg)) return qs_fail(QS_EFORMAT, "%s: malformed JSON (not an object)", c->cfg_path);
    c->r.root = c->cfg;
    c->r.path = c->cfg_path;

    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(c->cfg, "quantization_config");
    if (qc && !cJSON_IsNull(qc)) {
        const cJSON *qm = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
        return qs_fail(QS_EUNSUPPORTED,
                       "%s: a pre-quantized checkpoint (quantization_config%s%s); qscope does not read those: "
                       "give it the original weights and quantize them here", c->cfg_path,
                       cJSON_IsString(qm) ? ", quant_method " : "", cJSON_IsString(qm) ? qm->valuestring : "");
    }
    const char *arch = NULL;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(c->cfg, "architectures");
    if (cJSON_IsArray(archs) && cJSON_IsString(cJSON_GetArrayItem(archs, 0)))
        arch = cJSON_GetArrayItem(archs, 0)->valuestring;
    const qs_family *fam = arch ? qs_family_by_arch(arch) : NULL;
    if (!arch) { /* older configs name only the model type */
        const char *mt = qs_cfgr_str(&c->r, "model_type");
        fam = mt ? qs_family_by_type(mt) : NULL;
        if (!fam) return qs_fail(QS_EFORMAT, "%s: no 'architectures' list and no known 'model_type'", c->cfg_path);
    }
    if (!fam) {
        char known[512];
        list_archs(known, sizeof known);
        return qs_fail(QS_EUNSUPPORTED, "%s: unknown architecture '%.64s' (qscope runs %s)", c->cfg_path, arch,
                       known);
    }
    memset(g, 0, sizeof *g);
    snprintf(g->arch_name, sizeof g->arch_name, "%s", fam->hf_arch);
    snprintf(g->family, sizeof g->family, "%s", fam->name);
    g->arch = fam->arch;
    g->norm = QS_NORM_RMS;
    c->fam = fam;
    if ((st = fam->config(&c->r, g, &c->flags))) return st;
    if (g->n_heads > 0 && g->n_kv_heads > 0 && g->n_heads % g->n_kv_heads)
        return qs_fail(QS_EFORMAT, "%s: %d attention heads is not a multiple of %d key/value heads", c->cfg_path,
                       g->n_heads, g->n_kv_heads);
    if (c->flags.qk_norm && (!fam->q_norm || !fam->k_norm))
        return qs_fail(QS_EUNSUPPORTED, "%s: q/k norms are not described for %s", c->cfg_path, fam->name);
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
    unsigned char **nu = realloc(c->used, (size_t)(c->n_files + 1) * sizeof *nu);
    if (!nu) return qs_fail(QS_ENOMEM, "out of memory");
    c->used = nu;
    qs_status st = qs_st_open(path, &c->files[c->n_files]);
    if (st) return st;
    c->used[c->n_files] = calloc(qs_st_count(c->files[c->n_files]) + 1, 1);
    if (!c->used[c->n_files]) {
        qs_st_close(c->files[c->n_files]);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    c->n_files++;
    return QS_OK;
}

static qs_status open_index(hf_ctx *c) {
    char *text = NULL;
    size_t len = 0;
    qs_status st = qs_io_read_file(c->weights_path, QS_IO_TEXT_MAX, &text, &len);
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

/* Find a tensor by full name in any file; mark: it counts as read. */
static const qs_st_tensor *find(hf_ctx *c, const char *name, qs_st_file **file, int mark) {
    for (int i = 0; i < c->n_files; i++) {
        const qs_st_tensor *t = qs_st_find(c->files[i], name);
        if (t) {
            *file = c->files[i];
            if (mark) c->used[i][t - qs_st_tensor_at(c->files[i], 0)] = 1;
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
    *t = find(c, full, file, 1);
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

/* A weight matrix (rows, cols) into l: F16 and BF16 stay as the file stores
 * them (the kernels read them in place), other dtypes become fp32 (F32
 * borrowed from the map). */
static qs_status get_matrix(hf_ctx *c, const char *name, int rows, int cols, qs_linear *l) {
    qs_st_file *f;
    const qs_st_tensor *t;
    qs_status st = lookup(c, name, 1, 2, rows, cols, &f, &t);
    if (st) return st;
    l->n_out = rows;
    l->n_in = cols;
    if (t->dtype == QS_ST_F16 || t->dtype == QS_ST_BF16) {
        l->wtype = t->dtype == QS_ST_F16 ? QS_WT_F16 : QS_WT_BF16;
        return qs_st_bytes(f, t, c->m->store, &l->wq);
    }
    return qs_st_to_f32(f, t, c->m->store, &l->w);
}

static qs_status get_linear(hf_ctx *c, const char *base, int n_out, int n_in, int bias, qs_linear *l) {
    char w[256], b[256];
    snprintf(w, sizeof w, "%s.weight", base);
    snprintf(b, sizeof b, "%s.bias", base);
    qs_status st = get_matrix(c, w, n_out, n_in, l);
    if (!st && bias) st = get(c, b, 1, 1, n_out, 0, &l->b);
    return st;
}

static qs_status get_norm(hf_ctx *c, const char *base, int dim, int bias, qs_norm *n) {
    char w[256], b[256];
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
    char w[256], b[256];
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
static qs_status pick_prefix(hf_ctx *c, const char *probe, const char *const *prefixes) {
    int n = 0;
    while (n < 3 && prefixes[n]) n++;
    for (int i = 0; i < n; i++) {
        char full[256];
        qs_st_file *f;
        snprintf(full, sizeof full, "%s%s", prefixes[i], probe);
        if (find(c, full, &f, 0)) {
            snprintf(c->prefix, sizeof c->prefix, "%s", prefixes[i]);
            return QS_OK;
        }
    }
    return qs_fail(QS_EFORMAT, "%s: tensor '%s%s' is missing", c->weights_path, n ? prefixes[0] : "", probe);
}

/* A description's name with "%d" replaced by the layer. */
static const char *tname(char *buf, size_t cap, const char *tmpl, int layer) {
    const char *p = strstr(tmpl, "%d");
    if (!p) snprintf(buf, cap, "%s", tmpl);
    else snprintf(buf, cap, "%.*s%d%s", (int)(p - tmpl), tmpl, layer, p + 2);
    return buf;
}

static qs_status lin(hf_ctx *c, const char *tmpl, int layer, int n_out, int n_in, int bias, qs_linear *l) {
    char base[200];
    tname(base, sizeof base, tmpl, layer);
    if (c->fam->conv1d) return get_conv1d(c, base, n_in, n_out, 1, &l);
    return get_linear(c, base, n_out, n_in, bias, l);
}

/* A norm (kind 0: the model's); Gemma's store w and compute x (1 + w). */
static qs_status nrm(hf_ctx *c, const char *tmpl, int layer, int dim, qs_norm_kind kind, qs_norm *n) {
    char base[200];
    tname(base, sizeof base, tmpl, layer);
    qs_norm_kind k = kind ? kind : c->m->cfg.norm;
    qs_status st = get_norm(c, base, dim, k == QS_NORM_LAYER && c->flags.norm_bias, n);
    if (st) return st;
    n->kind = kind;
    if (c->flags.norm_plus_one) {
        float *w = qs_store_alloc(c->m->store, (size_t)dim * sizeof *w);
        if (!w) return qs_fail(QS_ENOMEM, "out of memory");
        for (int i = 0; i < dim; i++) w[i] = 1.0f + n->w[i];
        n->w = w;
    }
    return QS_OK;
}

/* One tensor of (rows, n_in) rows (and its bias) read whole: the caller
 * points linears at row ranges of it. */
static qs_status fused(hf_ctx *c, const char *tmpl, int layer, int rows, int n_in, int bias, qs_linear *w,
                       const float **b) {
    char base[200], name[256];
    tname(base, sizeof base, tmpl, layer);
    snprintf(name, sizeof name, "%s.weight", base);
    qs_status st = get_matrix(c, name, rows, n_in, w);
    *b = NULL;
    if (!st && bias) {
        snprintf(name, sizeof name, "%s.bias", base);
        st = get(c, name, 1, 1, rows, 0, b);
    }
    return st;
}

static void rows_of(qs_linear *l, const qs_linear *w, const float *b, int row0, int n_out, int n_in) {
    l->w = w->w ? w->w + (size_t)row0 * n_in : NULL;
    l->wq = w->wq ? (const uint8_t *)w->wq + qs_wtype_row_bytes(w->wtype, n_in) * row0 : NULL;
    l->wtype = w->wtype;
    l->b = b ? b + row0 : NULL;
    l->n_out = n_out;
    l->n_in = n_in;
}

/* q, k and v as the family stores them. */
static qs_status get_qkv(hf_ctx *c, int i, qs_layer *L) {
    const qs_family *F = c->fam;
    const qs_config *g = &c->m->cfg;
    int d = g->d_model, hd = g->head_dim, qd = g->n_heads * hd, kvd = g->n_kv_heads * hd, bias = c->flags.qkv_bias;
    char base[200];
    if (!F->qkv) {
        qs_status st = lin(c, F->q, i, qd, d, bias, &L->q);
        if (!st) st = lin(c, F->k, i, kvd, d, bias, &L->k);
        if (!st) st = lin(c, F->v, i, kvd, d, bias, &L->v);
        return st;
    }
    if (F->conv1d) {
        qs_linear *qkv[3] = {&L->q, &L->k, &L->v};
        return get_conv1d(c, tname(base, sizeof base, F->qkv, i), d, d, 3, qkv);
    }
    qs_linear w = {0};
    const float *b;
    qs_status st = fused(c, F->qkv, i, qd + 2 * kvd, d, bias, &w, &b);
    if (st) return st;
    if (F->qkv_layout == QS_QKV_FUSED) { /* [q; k; v]: views of the one tensor */
        rows_of(&L->q, &w, b, 0, qd, d);
        rows_of(&L->k, &w, b, qd, kvd, d);
        rows_of(&L->v, &w, b, qd + kvd, kvd, d);
        return QS_OK;
    }
    /* per head [q k v] (GPT-NeoX): gathered into q, k, v */
    if (g->n_kv_heads != g->n_heads)
        return qs_fail(QS_EFORMAT, "%s: a per-head fused query_key_value needs as many key/value heads as heads",
                       c->cfg_path);
    qs_linear *dst[3] = {&L->q, &L->k, &L->v};
    size_t rb = w.w ? (size_t)d * sizeof(float) : qs_wtype_row_bytes(w.wtype, d);
    const uint8_t *src_rows = w.w ? (const uint8_t *)w.w : w.wq;
    for (int part = 0; part < 3; part++) { /* rows copied as stored */
        uint8_t *pw = qs_store_alloc(c->m->store, (size_t)qd * rb);
        float *pb = b ? qs_store_alloc(c->m->store, (size_t)qd * sizeof *pb) : NULL;
        if (!pw || (b && !pb)) return qs_fail(QS_ENOMEM, "out of memory");
        for (int h = 0; h < g->n_heads; h++) {
            size_t src = (size_t)(h * 3 + part) * hd;
            memcpy(pw + (size_t)h * hd * rb, src_rows + src * rb, (size_t)hd * rb);
            if (pb) memcpy(pb + (size_t)h * hd, b + src, (size_t)hd * sizeof *pb);
        }
        qs_linear part_w = {.w = w.w ? (const float *)(const void *)pw : NULL, .wq = w.w ? NULL : pw, .wtype = w.wtype};
        rows_of(dst[part], &part_w, pb, 0, qd, d);
    }
    return QS_OK;
}

static qs_status get_mlp(hf_ctx *c, int i, qs_layer *L) {
    const qs_family *F = c->fam;
    const qs_config *g = &c->m->cfg;
    int d = g->d_model, ff = g->d_ff, bias = c->flags.mlp_bias;
    qs_status st;
    if (F->gate_up) { /* [gate; up] */
        qs_linear w = {0};
        const float *b;
        if ((st = fused(c, F->gate_up, i, 2 * ff, d, bias, &w, &b))) return st;
        rows_of(&L->gate, &w, b, 0, ff, d);
        rows_of(&L->up, &w, b, ff, ff, d);
    } else {
        if (c->flags.gated && (st = lin(c, F->gate, i, ff, d, bias, &L->gate))) return st;
        if ((st = lin(c, F->up, i, ff, d, bias, &L->up))) return st;
    }
    return lin(c, F->down, i, d, ff, bias, &L->down);
}

/* The LM head: tied to the embedding (a stored copy must equal it), or its
 * own tensor (outside the prefix). */
static qs_status get_head(hf_ctx *c, int de) {
    qs_model *m = c->m;
    const qs_config *g = &m->cfg;
    char w[256], b[256];
    snprintf(w, sizeof w, "%s.weight", c->fam->head);
    snprintf(b, sizeof b, "%s.bias", c->fam->head);
    char saved[sizeof c->prefix];
    memcpy(saved, c->prefix, sizeof saved);
    c->prefix[0] = 0;
    m->w.head.n_out = g->vocab;
    m->w.head.n_in = de;
    qs_status st = QS_OK;
    if (g->tied_head) {
        qs_head_tie(&m->w, g->vocab, de);
        qs_st_file *f;
        const qs_st_tensor *t;
        if ((st = lookup(c, w, 0, 2, g->vocab, de, &f, &t)) == QS_OK && t) { /* a stored copy must equal it */
            qs_st_file *ef;
            char en[256];
            snprintf(en, sizeof en, "%s%s.weight", saved, c->fam->embed);
            const qs_st_tensor *et = find(c, en, &ef, 0);
            if (!et || et->dtype != t->dtype || et->nbytes != t->nbytes || memcmp(et->data, t->data, t->nbytes) != 0)
                st = qs_fail(QS_EFORMAT, "%s: '%s' differs from the token embedding, but tie_word_embeddings is true",
                             c->weights_path, w);
        }
    } else {
        st = get_matrix(c, w, g->vocab, de, &m->w.head);
    }
    if (!st && c->flags.head_bias) st = get(c, b, 1, 1, g->vocab, 0, &m->w.head.b);
    memcpy(c->prefix, saved, sizeof saved);
    return st;
}

/* The model as its family describes it. */
static qs_status build(hf_ctx *c) {
    const qs_family *F = c->fam;
    const qs_fam_flags *f = &c->flags;
    qs_model *m = c->m;
    const qs_config *g = &m->cfg;
    int d = g->d_model, hd = g->head_dim, qd = g->n_heads * hd, de = f->embed_dim ? f->embed_dim : d;
    char name[200];
    snprintf(name, sizeof name, "%s.weight", F->embed);
    qs_status st = pick_prefix(c, name, F->prefixes);
    qs_linear emb = {0};
    if (st || (st = get_matrix(c, name, g->vocab, de, &emb))) return st;
    m->w.tok_embed = emb.w;
    m->w.embed_q = emb.wq;
    m->w.embed_type = emb.wtype;
    if (F->pos_embed && g->rope_theta <= 0) {
        snprintf(name, sizeof name, "%s.weight", F->pos_embed);
        if ((st = get(c, name, 1, 2, (int64_t)g->max_pos + g->pos_offset, d, &m->w.pos_embed))) return st;
    }
    if (f->embed_dim && ((st = lin(c, F->proj_in, -1, d, de, 0, &m->w.proj_in)) ||
                         (st = lin(c, F->proj_out, -1, de, d, 0, &m->w.proj_out))))
        return st;
    if (!f->no_final_norm && (st = nrm(c, F->final_norm, -1, d, 0, &m->w.final_norm))) return st;
    for (int i = 0; i < g->n_layers; i++) {
        qs_layer *L = &m->w.layers[i];
        if ((st = nrm(c, F->attn_norm, i, d, 0, &L->attn_norm)) || (st = get_qkv(c, i, L)) ||
            (st = lin(c, F->o, i, d, qd, f->o_bias, &L->o)))
            return st;
        if (f->qk_norm && ((st = nrm(c, F->q_norm, i, hd, f->qk_norm_kind, &L->q_norm)) ||
                           (st = nrm(c, F->k_norm, i, hd, f->qk_norm_kind, &L->k_norm))))
            return st;
        if (F->post_attn_norm && (st = nrm(c, F->post_attn_norm, i, d, 0, &L->post_attn_norm))) return st;
        if (f->shared_norm) L->mlp_norm = L->attn_norm;
        else if ((st = nrm(c, F->mlp_norm, i, d, 0, &L->mlp_norm))) return st;
        if (F->post_mlp_norm && (st = nrm(c, F->post_mlp_norm, i, d, 0, &L->post_mlp_norm))) return st;
        if ((st = get_mlp(c, i, L))) return st;
    }
    return get_head(c, de);
}

/* ---- SliceGPT in qscope's layout ----
 *
 * A directory qscope exported from a SliceGPT variant (export/export_dir.c):
 * config.json's "qscope_slicegpt" object gives the widths, the safetensors
 * the sliced matrices under the family's names plus each layer's residual
 * shortcuts ("<prefix>layers.N.attn_shortcut.weight" (d_mid, d_in),
 * "...mlp_shortcut.weight" (d_out, d_mid)). Every norm is a weightless
 * RMSNorm dividing by the original width (SliceGPT folded the gains and
 * biases into the linears), so the directory holds no norm tensors; biases
 * are read wherever they are stored (folded LayerNorm biases land on
 * linears whose family has none), and the head is its own tensor. */

static qs_status sg_int(hf_ctx *c, const cJSON *o, const char *key, int lo, int hi, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi || v->valuedouble != (int)v->valuedouble)
        return qs_fail(QS_EFORMAT, "%s: qscope_slicegpt.%s must be an integer in [%d, %d]", c->cfg_path, key, lo, hi);
    *out = (int)v->valuedouble;
    return QS_OK;
}

/* A linear (n_out, n_in) and its bias when the file has one. */
static qs_status sg_lin(hf_ctx *c, const char *tmpl, int layer, int n_out, int n_in, qs_linear *l) {
    char base[200], w[256], b[256];
    tname(base, sizeof base, tmpl, layer);
    snprintf(w, sizeof w, "%s.weight", base);
    snprintf(b, sizeof b, "%s.bias", base);
    qs_status st = get_matrix(c, w, n_out, n_in, l);
    return st ? st : get(c, b, 0, 1, n_out, 0, &l->b);
}

static qs_norm sg_norm(int dim, int D) { return (qs_norm){.dim = dim, .kind = QS_NORM_RMS, .div = D}; }

static qs_status build_sliced(hf_ctx *c, const cJSON *sg) {
    const qs_family *F = c->fam;
    qs_model *m = c->m;
    const qs_config *g = &m->cfg;
    int D = g->d_model, hd = g->head_dim, qd = g->n_heads * hd, kvd = g->n_kv_heads * hd, ff = g->d_ff;
    int de = 0, dh = 0, ver = 0;
    qs_status st;
    if ((st = sg_int(c, sg, "version", 1, 1, &ver)) || (st = sg_int(c, sg, "norm_divisor", D, D, &D)) ||
        (st = sg_int(c, sg, "embed_width", 1, D, &de)) || (st = sg_int(c, sg, "head_width", 1, D, &dh)))
        return st;
    const cJSON *widths = cJSON_GetObjectItemCaseSensitive(sg, "layer_widths");
    if (!cJSON_IsArray(widths) || cJSON_GetArraySize(widths) != g->n_layers)
        return qs_fail(QS_EFORMAT, "%s: qscope_slicegpt.layer_widths must list %d layers", c->cfg_path, g->n_layers);
    if (c->flags.embed_dim || F->qkv || F->gate_up || F->conv1d || F->post_attn_norm || F->post_mlp_norm ||
        g->resid != QS_RESID_SEQ)
        return qs_fail(QS_EUNSUPPORTED, "%s: a sliced %s model is not a layout qscope writes", c->cfg_path, F->name);
    char name[200];
    snprintf(name, sizeof name, "%s.weight", F->embed);
    qs_linear emb = {0};
    if ((st = pick_prefix(c, name, F->prefixes)) || (st = get_matrix(c, name, g->vocab, de, &emb))) return st;
    m->w.tok_embed = emb.w;
    m->w.embed_q = emb.wq;
    m->w.embed_type = emb.wtype;
    m->w.d_embed = de;
    if (F->pos_embed && g->rope_theta <= 0) {
        snprintf(name, sizeof name, "%s.weight", F->pos_embed);
        if ((st = get(c, name, 1, 2, (int64_t)g->max_pos + g->pos_offset, de, &m->w.pos_embed))) return st;
    }
    int din = de;
    for (int i = 0; i < g->n_layers; i++) {
        qs_layer *L = &m->w.layers[i];
        const cJSON *row = cJSON_GetArrayItem(widths, i);
        int wd[3];
        for (int k = 0; k < 3; k++) {
            const cJSON *e = cJSON_IsArray(row) && cJSON_GetArraySize(row) == 3 ? cJSON_GetArrayItem(row, k) : NULL;
            if (!cJSON_IsNumber(e) || e->valuedouble < 1 || e->valuedouble > D)
                return qs_fail(QS_EFORMAT, "%s: qscope_slicegpt.layer_widths[%d] must be 3 widths in [1, %d]",
                               c->cfg_path, i, D);
            wd[k] = (int)e->valuedouble;
        }
        if (wd[0] != din)
            return qs_fail(QS_EFORMAT, "%s: layer %d reads width %d, the one before writes %d", c->cfg_path, i, wd[0], din);
        int dmid = wd[1], dout = wd[2];
        L->attn_norm = sg_norm(din, D);
        L->mlp_norm = sg_norm(dmid, D);
        if ((st = sg_lin(c, F->q, i, qd, din, &L->q)) || (st = sg_lin(c, F->k, i, kvd, din, &L->k)) ||
            (st = sg_lin(c, F->v, i, kvd, din, &L->v)) || (st = sg_lin(c, F->o, i, dmid, qd, &L->o)) ||
            (st = sg_lin(c, "layers.%d.attn_shortcut", i, dmid, din, &L->attn_skip)) ||
            (st = sg_lin(c, F->up, i, ff, dmid, &L->up)) ||
            (c->flags.gated && (st = sg_lin(c, F->gate, i, ff, dmid, &L->gate))) ||
            (st = sg_lin(c, F->down, i, dout, ff, &L->down)) ||
            (st = sg_lin(c, "layers.%d.mlp_shortcut", i, dout, dmid, &L->mlp_skip)))
            return st;
        if (c->flags.qk_norm && ((st = nrm(c, F->q_norm, i, hd, c->flags.qk_norm_kind, &L->q_norm)) ||
                                 (st = nrm(c, F->k_norm, i, hd, c->flags.qk_norm_kind, &L->k_norm))))
            return st;
        din = dout;
    }
    if (din != dh)
        return qs_fail(QS_EFORMAT, "%s: the head reads width %d, the last layer writes %d", c->cfg_path, dh, din);
    m->w.final_norm = sg_norm(dh, D);
    char saved[sizeof c->prefix];
    memcpy(saved, c->prefix, sizeof saved);
    c->prefix[0] = 0; /* the head is outside the prefix */
    st = sg_lin(c, F->head, -1, g->vocab, dh, &m->w.head);
    memcpy(c->prefix, saved, sizeof saved);
    m->cfg.tied_head = 0;
    return st;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Every tensor in the files is one the family read, or a buffer it never
 * reads: anything else means a checkpoint of another kind (a relabelled
 * Qwen3's q/k norms, say), which must not run without it. */
static qs_status check_unused(hf_ctx *c) {
    for (int i = 0; i < c->n_files; i++)
        for (size_t j = 0; j < qs_st_count(c->files[i]); j++) {
            if (c->used[i][j]) continue;
            const char *name = qs_st_tensor_at(c->files[i], j)->name;
            int skip = ends_with(name, "rotary_emb.inv_freq");
            for (int k = 0; k < 4 && c->fam->ignore[k] && !skip; k++) skip = ends_with(name, c->fam->ignore[k]);
            if (!skip)
                return qs_fail(QS_EFORMAT,
                               "%s: tensor '%s' is not part of a %s model as its config describes it (another "
                               "architecture's checkpoint, or a feature qscope does not read)",
                               qs_st_path(c->files[i]), name, c->fam->hf_arch);
        }
    return QS_OK;
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
    const cJSON *sg = cJSON_GetObjectItemCaseSensitive(c.cfg, "qscope_slicegpt");
    if ((st = sg ? build_sliced(&c, sg) : build(&c)) || (st = check_unused(&c))) goto done;
    snprintf(c.m->hf_prefix, sizeof c.m->hf_prefix, "%s", c.prefix);
    int kinds = 0, last = 0;
    for (int i = 0; i < QS_ST_N_DTYPES; i++)
        if (c.dtypes >> i & 1) kinds++, last = i;
    snprintf(c.m->dtype, sizeof c.m->dtype, "%s", kinds == 1 ? qs_st_dtype_str((qs_st_dtype)last) : "mixed");
    if ((st = load_tokenizer(&c)) || (st = qs_model_validate(c.m))) goto done;
    *out = c.m;
    c.m = NULL;
done:
    qs_model_free(c.m); /* before closing: borrowed maps belong to its store */
    for (int i = 0; i < c.n_files; i++) {
        qs_st_close(c.files[i]);
        free(c.used[i]);
    }
    free(c.files);
    free(c.used);
    cJSON_Delete(c.cfg);
    return st;
}

/* ---- names, for writers ---- */

static const qs_family *family_named(const char *name) {
    for (int i = 0; qs_family_list[i]; i++)
        if (!strcmp(qs_family_list[i]->name, name)) return qs_family_list[i];
    return NULL;
}

qs_status qs_hf_slot_name(const qs_model *m, qs_hf_slot s, int layer, char *buf, size_t cap) {
    buf[0] = 0;
    const qs_family *F = strcmp(m->format, "safetensors") ? NULL : family_named(m->cfg.family);
    if (!F) return qs_fail(QS_EUNSUPPORTED, "%s: not read from a Hugging Face directory", m->path);
    if (F->conv1d || F->qkv || F->gate_up)
        return qs_fail(QS_EUNSUPPORTED, "%s: %s stores %s; only unfused layouts (llama, mistral, qwen2, qwen3, "
                       "gemma, gemma2, opt, phi) are written back", m->path, F->hf_arch,
                       F->conv1d ? "its linears transposed (Conv1D) and q, k, v fused"
                                 : F->qkv ? "q, k and v fused in one tensor" : "gate and up fused in one tensor");
    const char *t = NULL;
    switch (s) {
    case QS_HF_EMBED: t = F->embed; break;
    case QS_HF_POS_EMBED: t = F->pos_embed; break;
    case QS_HF_PROJ_IN: t = F->proj_in; break;
    case QS_HF_PROJ_OUT: t = F->proj_out; break;
    case QS_HF_FINAL_NORM: t = F->final_norm; break;
    case QS_HF_HEAD: t = F->head; break;
    case QS_HF_ATTN_NORM: t = F->attn_norm; break;
    case QS_HF_Q: t = F->q; break;
    case QS_HF_K: t = F->k; break;
    case QS_HF_V: t = F->v; break;
    case QS_HF_O: t = F->o; break;
    case QS_HF_Q_NORM: t = F->q_norm; break;
    case QS_HF_K_NORM: t = F->k_norm; break;
    case QS_HF_POST_ATTN_NORM: t = F->post_attn_norm; break;
    case QS_HF_MLP_NORM: t = F->mlp_norm; break;
    case QS_HF_POST_MLP_NORM: t = F->post_mlp_norm; break;
    case QS_HF_GATE: t = F->gate; break;
    case QS_HF_UP: t = F->up; break;
    case QS_HF_DOWN: t = F->down; break;
    default: return qs_fail(QS_EARG, "weight slot %d is not one of a model's", (int)s);
    }
    if (!t) return QS_OK;
    char base[200];
    tname(base, sizeof base, t, layer);
    snprintf(buf, cap, "%s%s", s == QS_HF_HEAD ? "" : m->hf_prefix, base);
    return QS_OK;
}
