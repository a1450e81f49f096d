/* export_dir.c — a model or a weight-only variant written out as a Hugging
 * Face directory: config.json and the tokenizer files copied, and one
 * model.safetensors holding every tensor under the name the source used.
 *
 * The tensor list is the source's: each source tensor is looked up among the
 * names the model's family reads (qs_hf_slot_name), so a tensor the variant
 * changed is written from the variant (a matrix through qs_linear_f32, which
 * decodes packed codes), and one it did not is copied as the source stores
 * it. A sharded source is written as one file. SliceGPT variants have no
 * transformers architecture; they are written in qscope's own layout (see
 * model/hf.c, build_sliced): the sliced matrices under the family's names,
 * each layer's shortcuts beside them, no norm tensors, and the widths in
 * config.json's "qscope_slicegpt".
 *
 * The directory is built under a temporary name beside dir and renamed into
 * place; memory stays about one matrix in fp32 (the safetensors data are
 * streamed a tensor at a time). */
#include <cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export/export.h"
#include "export/export_impl.h"
#include "read/read.h"
#include "run/run.h"

#define EX_PATH 1200

/* How an output tensor's bytes are made. */
typedef enum {
    SRC_COPY,   /* the source tensor (converted when the dtype changes) */
    SRC_LINEAR, /* a linear's weights as the variant holds them */
    SRC_EMBED,  /* the variant's token embedding */
    SRC_F32,    /* fp32 values the variant holds (biases, position embeddings) */
} src_kind;

typedef struct {
    char name[256];
    src_kind kind;
    qs_st_dtype dt; /* written as */
    int n_dims;
    int64_t shape[QS_ST_MAX_DIMS];
    const qs_st_file *f;   /* SRC_COPY: the tensor and its file */
    const qs_st_tensor *t;
    const qs_linear *lin;  /* SRC_LINEAR */
    const float *vals;     /* SRC_F32: (numel) */
} item;

typedef struct {
    const qs_model *m;
    const qs_weights *w; /* the variant's, or the model's */
    const qs_export_opts *o;
    int dt_forced;       /* o->dtype given */
    qs_st_dtype dt;      /* ... as a dtype */
    qs_st_file **files;  /* (n_files) the source's safetensors */
    int n_files;
    item *items;
    size_t n_items, cap_items;
    long done, total;    /* bytes, for progress */
} ex_ctx;

/* ---- small helpers ---- */

static int is_float(qs_st_dtype d) { return d == QS_ST_F32 || d == QS_ST_F16 || d == QS_ST_BF16; }

static int is_half(uint32_t wtype) { return wtype == QS_WT_F16 || wtype == QS_WT_BF16; }

/* The dtype of a 2-byte held type; F32 for anything else (decoded to fp32). */
static qs_st_dtype of_wtype(uint32_t t) {
    return t == QS_WT_F16 ? QS_ST_F16 : t == QS_WT_BF16 ? QS_ST_BF16 : QS_ST_F32;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

/* A directory and everything in it (no links followed). */
static void remove_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static item *add_item(ex_ctx *x, const char *name, src_kind kind, qs_st_dtype dt, int n_dims, const int64_t *shape) {
    if (x->n_items == x->cap_items) {
        size_t cap = x->cap_items ? 2 * x->cap_items : 256;
        item *ni = realloc(x->items, cap * sizeof *ni);
        if (!ni) {
            qs_fail(QS_ENOMEM, "out of memory");
            return NULL;
        }
        x->items = ni;
        x->cap_items = cap;
    }
    item *it = &x->items[x->n_items++];
    memset(it, 0, sizeof *it);
    snprintf(it->name, sizeof it->name, "%s", name);
    it->kind = kind;
    it->dt = dt;
    it->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) it->shape[i] = shape[i];
    return it;
}

/* ---- the source's tensors ---- */

static qs_status open_sources(ex_ctx *x) {
    char p[EX_PATH];
    qs_io_join(p, sizeof p, x->m->path, "model.safetensors");
    if (qs_io_exists(p)) {
        if (!(x->files = calloc(1, sizeof *x->files))) return qs_fail(QS_ENOMEM, "out of memory");
        x->n_files = 1;
        return qs_st_open(p, &x->files[0]);
    }
    /* sharded: every distinct shard the index names, written back as one file */
    qs_io_join(p, sizeof p, x->m->path, "model.safetensors.index.json");
    char *text = NULL;
    size_t len = 0;
    qs_status st = qs_io_read_file(p, QS_IO_TEXT_MAX, &text, &len);
    if (st) return st;
    cJSON *idx = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map"), *e;
    if (!cJSON_IsObject(wm)) st = qs_fail(QS_EFORMAT, "%s: malformed index (no 'weight_map' object)", p);
    else if (!(x->files = calloc((size_t)cJSON_GetArraySize(wm) + 1, sizeof *x->files)))
        st = qs_fail(QS_ENOMEM, "out of memory");
    if (!st) cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/')) {
            st = qs_fail(QS_EFORMAT, "%s: tensor '%s' maps to an invalid shard name", p, e->string ? e->string : "?");
            break;
        }
        char sp[EX_PATH];
        qs_io_join(sp, sizeof sp, x->m->path, e->valuestring);
        int seen = 0;
        for (int i = 0; i < x->n_files && !seen; i++) seen = !strcmp(qs_st_path(x->files[i]), sp);
        if (seen) continue;
        if ((st = qs_st_open(sp, &x->files[x->n_files]))) break;
        x->n_files++;
    }
    cJSON_Delete(idx);
    return st;
}

static const qs_st_tensor *find_src(const ex_ctx *x, const char *name, const qs_st_file **f) {
    for (int i = 0; i < x->n_files; i++) {
        const qs_st_tensor *t = qs_st_find(x->files[i], name);
        if (t) {
            *f = x->files[i];
            return t;
        }
    }
    return NULL;
}

/* ---- what the variant changed ---- */

static int same_linear(const qs_linear *a, const qs_linear *b) {
    return a->w == b->w && a->wq == b->wq && a->wtype == b->wtype && a->n_out == b->n_out && a->n_in == b->n_in;
}

static int same_norm(const qs_norm *a, const qs_norm *b) {
    return a->dim == b->dim && a->w == b->w && a->b == b->b && a->kind == b->kind && a->div == b->div &&
           a->perm == b->perm;
}

/* The linear or norm a slot names in weights w (one is NULL; both for the embeddings). */
static void slot_of(qs_weights *w, qs_hf_slot s, int l, qs_linear **lin, qs_norm **nm) {
    *lin = NULL;
    *nm = NULL;
    qs_layer *L = l >= 0 ? &w->layers[l] : NULL;
    switch (s) {
    case QS_HF_PROJ_IN: *lin = &w->proj_in; break;
    case QS_HF_PROJ_OUT: *lin = &w->proj_out; break;
    case QS_HF_FINAL_NORM: *nm = &w->final_norm; break;
    case QS_HF_HEAD: *lin = &w->head; break;
    case QS_HF_ATTN_NORM: *nm = &L->attn_norm; break;
    case QS_HF_Q: *lin = &L->q; break;
    case QS_HF_K: *lin = &L->k; break;
    case QS_HF_V: *lin = &L->v; break;
    case QS_HF_O: *lin = &L->o; break;
    case QS_HF_Q_NORM: *nm = &L->q_norm; break;
    case QS_HF_K_NORM: *nm = &L->k_norm; break;
    case QS_HF_POST_ATTN_NORM: *nm = &L->post_attn_norm; break;
    case QS_HF_MLP_NORM: *nm = &L->mlp_norm; break;
    case QS_HF_POST_MLP_NORM: *nm = &L->post_mlp_norm; break;
    case QS_HF_GATE: *lin = &L->gate; break;
    case QS_HF_UP: *lin = &L->up; break;
    case QS_HF_DOWN: *lin = &L->down; break;
    default: break;
    }
}

/* ---- the tensor list ---- */

/* The source tensor t as the variant holds it. */
static qs_status plan_tensor(ex_ctx *x, const qs_st_file *f, const qs_st_tensor *t, qs_hf_slot s, int l,
                             int bias) {
    const qs_model *m = x->m;
    qs_st_dtype dt = x->dt_forced && is_float(t->dtype) ? x->dt : t->dtype;
    item *it = add_item(x, t->name, SRC_COPY, dt, t->n_dims, t->shape);
    if (!it) return QS_ENOMEM;
    it->f = f;
    it->t = t;
    if ((int)s < 0) return QS_OK; /* a tensor no slot reads (a buffer): as stored */
    if (s == QS_HF_EMBED || s == QS_HF_POS_EMBED) {
        const qs_weights *a = &m->w, *b = x->w;
        int changed = s == QS_HF_EMBED ? a->tok_embed != b->tok_embed || a->embed_q != b->embed_q
                                       : a->pos_embed != b->pos_embed;
        if (!changed) return QS_OK;
        if (b->d_embed && b->d_embed != t->shape[1])
            return qs_fail(QS_EUNSUPPORTED, "'%s': the variant changed its width", t->name);
        if (s == QS_HF_EMBED) it->kind = SRC_EMBED;
        else it->kind = SRC_F32, it->vals = b->pos_embed;
        return QS_OK;
    }
    qs_linear *ml, *vl;
    qs_norm *mn, *vn;
    slot_of((qs_weights *)&m->w, s, l, &ml, &mn);
    slot_of((qs_weights *)x->w, s, l, &vl, &vn);
    if (mn) {
        if (!same_norm(mn, vn))
            return qs_fail(QS_EUNSUPPORTED, "'%s': the variant changed a norm, which the %s layout cannot hold as "
                           "it does", t->name, m->cfg.arch_name);
        return QS_OK;
    }
    if (!ml) return QS_OK;
    if (bias) {
        if (ml->b != vl->b) it->kind = SRC_F32, it->vals = vl->b;
        return QS_OK;
    }
    if (s == QS_HF_HEAD && m->cfg.tied_head && !same_linear(ml, vl))
        return qs_fail(QS_EUNSUPPORTED, "'%s': the variant changed a head tied to the embedding", t->name);
    if (!same_linear(ml, vl)) {
        if (!qs_linear_readable(vl)) return qs_fail(QS_EUNSUPPORTED, "'%s': the variant holds no weights for it", t->name);
        if (vl->n_out != t->shape[0] || vl->n_in != t->shape[1])
            return qs_fail(QS_EUNSUPPORTED, "'%s': the variant changed its shape", t->name);
        it->kind = SRC_LINEAR;
        it->lin = vl;
    }
    return QS_OK;
}

/* Every source tensor, in the order of the files, each matched to the slot
 * that reads it. */
static qs_status plan_source(ex_ctx *x) {
    const qs_model *m = x->m;
    qs_status st = QS_OK;
    for (int f = 0; f < x->n_files && !st; f++) {
        size_t n = qs_st_count(x->files[f]);
        int *slot = malloc((n + 1) * sizeof *slot), *layer = malloc((n + 1) * sizeof *layer);
        char *isb = calloc(n + 1, 1);
        if (!slot || !layer || !isb) st = qs_fail(QS_ENOMEM, "out of memory");
        for (size_t i = 0; i < n && !st; i++) slot[i] = -1, layer[i] = -1;
        const qs_st_tensor *t0 = qs_st_tensor_at(x->files[f], 0);
        for (int l = -1; l < m->cfg.n_layers && !st; l++)
            for (int s = l < 0 ? 0 : QS_HF_LAYER_SLOTS; s < (l < 0 ? QS_HF_LAYER_SLOTS : QS_HF_N_SLOTS) && !st; s++) {
                char base[224], name[256];
                if ((st = qs_hf_slot_name(m, (qs_hf_slot)s, l, base, sizeof base)) || !base[0]) continue;
                for (int b = 0; b < 2; b++) {
                    snprintf(name, sizeof name, "%s.%s", base, b ? "bias" : "weight");
                    const qs_st_tensor *t = qs_st_find(x->files[f], name);
                    if (!t) continue;
                    slot[t - t0] = s;
                    layer[t - t0] = l;
                    isb[t - t0] = (char)b;
                }
            }
        for (size_t i = 0; i < n && !st; i++)
            st = plan_tensor(x, x->files[f], qs_st_tensor_at(x->files[f], i), (qs_hf_slot)slot[i], layer[i], isb[i]);
        free(slot);
        free(layer);
        free(isb);
    }
    return st;
}

/* The written type of something the variant holds as wtype: the forced one,
 * else as held (F16/BF16 stay, fp32 stays fp32). */
static qs_st_dtype held_dt(const ex_ctx *x, uint32_t wtype, int is_fp32) {
    if (x->dt_forced) return x->dt;
    return is_fp32 ? QS_ST_F32 : of_wtype(wtype);
}

static qs_status plan_linear(ex_ctx *x, const char *base, const qs_linear *l) {
    if (!qs_linear_has(l)) return QS_OK;
    if (!qs_linear_readable(l)) return qs_fail(QS_EUNSUPPORTED, "'%s': the variant holds no weights for it", base);
    char name[256];
    snprintf(name, sizeof name, "%s.weight", base);
    item *it = add_item(x, name, SRC_LINEAR, held_dt(x, l->wtype, l->w != NULL), 2, (int64_t[]){l->n_out, l->n_in});
    if (!it) return QS_ENOMEM;
    it->lin = l;
    if (!l->b) return QS_OK;
    snprintf(name, sizeof name, "%s.bias", base);
    /* biases are held in fp32: kept so, the forward reads them exactly */
    if (!(it = add_item(x, name, SRC_F32, QS_ST_F32, 1, (int64_t[]){l->n_out}))) return QS_ENOMEM;
    it->vals = l->b;
    return QS_OK;
}

/* A SliceGPT variant in qscope's layout (README "Export"). */
static qs_status plan_sliced(ex_ctx *x) {
    const qs_model *m = x->m;
    const qs_config *c = &m->cfg;
    const qs_weights *w = x->w;
    char base[224], name[256];
    int de = w->d_embed ? w->d_embed : c->d_model;
    qs_status st;
    if (qs_linear_has(&w->proj_in) || qs_linear_has(&w->proj_out))
        return qs_fail(QS_EUNSUPPORTED, "%s: a sliced model with project_in/out has no qscope layout", m->path);
    if ((st = qs_hf_slot_name(m, QS_HF_EMBED, -1, base, sizeof base))) return st;
    snprintf(name, sizeof name, "%s.weight", base);
    if (!add_item(x, name, SRC_EMBED, held_dt(x, w->embed_type, w->tok_embed != NULL), 2, (int64_t[]){c->vocab, de}))
        return QS_ENOMEM;
    if (w->pos_embed) {
        if ((st = qs_hf_slot_name(m, QS_HF_POS_EMBED, -1, base, sizeof base))) return st;
        snprintf(name, sizeof name, "%s.weight", base);
        item *it = add_item(x, name, SRC_F32, QS_ST_F32, 2, (int64_t[]){(int64_t)c->max_pos + c->pos_offset, de});
        if (!it) return QS_ENOMEM;
        it->vals = w->pos_embed;
    }
    static const qs_hf_slot lins[] = {QS_HF_Q, QS_HF_K, QS_HF_V, QS_HF_O, QS_HF_GATE, QS_HF_UP, QS_HF_DOWN};
    for (int l = 0; l < c->n_layers; l++) {
        const qs_layer *L = &w->layers[l];
        for (size_t i = 0; i < sizeof lins / sizeof *lins; i++) {
            qs_linear *vl;
            qs_norm *nm;
            slot_of((qs_weights *)w, lins[i], l, &vl, &nm);
            if ((st = qs_hf_slot_name(m, lins[i], l, base, sizeof base))) return st;
            if (base[0] && (st = plan_linear(x, base, vl))) return st;
        }
        snprintf(base, sizeof base, "%slayers.%d.attn_shortcut", m->hf_prefix, l);
        if ((st = plan_linear(x, base, &L->attn_skip))) return st;
        snprintf(base, sizeof base, "%slayers.%d.mlp_shortcut", m->hf_prefix, l);
        if ((st = plan_linear(x, base, &L->mlp_skip))) return st;
        /* q/k norms (Qwen3) act inside the heads, which SliceGPT leaves alone: as stored */
        for (int k = 0; k < 2; k++) {
            const qs_norm *vn = k ? &L->k_norm : &L->q_norm, *mn = k ? &m->w.layers[l].k_norm : &m->w.layers[l].q_norm;
            if (!vn->dim) continue;
            if ((st = qs_hf_slot_name(m, k ? QS_HF_K_NORM : QS_HF_Q_NORM, l, base, sizeof base))) return st;
            snprintf(name, sizeof name, "%s.weight", base);
            const qs_st_file *f = NULL;
            const qs_st_tensor *t = find_src(x, name, &f);
            if (!same_norm(vn, mn) || !t) return qs_fail(QS_EUNSUPPORTED, "'%s': not as the source stores it", name);
            item *it = add_item(x, name, SRC_COPY, x->dt_forced ? x->dt : t->dtype, t->n_dims, t->shape);
            if (!it) return QS_ENOMEM;
            it->f = f;
            it->t = t;
        }
    }
    if ((st = qs_hf_slot_name(m, QS_HF_HEAD, -1, base, sizeof base))) return st;
    return plan_linear(x, base, &w->head);
}

/* ---- writing ---- */

enum { CHUNK = 1 << 16 }; /* values converted per write */

/* n fp32 values written as dt, a chunk at a time. */
static qs_status put_f32(qs_st_w *sw, const float *v, size_t n, qs_st_dtype dt) {
    if (dt == QS_ST_F32) return qs_st_w_data(sw, v, n * sizeof *v);
    uint16_t *buf = malloc(CHUNK * sizeof *buf);
    if (!buf) return qs_fail(QS_ENOMEM, "out of memory");
    qs_status st = QS_OK;
    for (size_t i = 0; i < n && !st; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        for (size_t j = 0; j < k; j++) buf[j] = dt == QS_ST_F16 ? qs_f32_to_f16(v[i + j]) : qs_f32_to_bf16(v[i + j]);
        st = qs_st_w_data(sw, buf, k * sizeof *buf);
    }
    free(buf);
    return st;
}

static size_t numel_of(const item *it) {
    size_t n = 1;
    for (int i = 0; i < it->n_dims; i++) n *= (size_t)it->shape[i];
    return n;
}

static qs_status put_item(const ex_ctx *x, qs_st_w *sw, const item *it) {
    size_t n = numel_of(it);
    float *tmp = NULL;
    const float *v = NULL;
    qs_status st = QS_OK;
    if (it->kind == SRC_COPY) {
        if (it->dt == it->t->dtype) return qs_st_w_data(sw, it->t->data, it->t->nbytes);
        if (!(tmp = malloc(n * sizeof *tmp + 1))) return qs_fail(QS_ENOMEM, "out of memory converting '%s'", it->name);
        st = qs_st_read_f32(it->f, it->t, tmp);
        v = tmp;
    } else if (it->kind == SRC_LINEAR) {
        const qs_linear *l = it->lin;
        if (l->wq && is_half(l->wtype) && of_wtype(l->wtype) == it->dt) /* as held: exact */
            return qs_st_w_data(sw, l->wq, n * qs_st_dtype_size(it->dt));
        if (!(v = qs_linear_f32(l, &tmp))) return qs_fail_prefix(QS_ENOMEM, "'%s'", it->name);
    } else if (it->kind == SRC_EMBED) {
        const qs_weights *w = x->w;
        int de = (int)it->shape[1];
        if (w->tok_embed) {
            v = w->tok_embed;
        } else if (is_half(w->embed_type) && of_wtype(w->embed_type) == it->dt) {
            return qs_st_w_data(sw, w->embed_q, n * qs_st_dtype_size(it->dt));
        } else {
            if (!(tmp = malloc(n * sizeof *tmp + 1))) return qs_fail(QS_ENOMEM, "out of memory decoding '%s'", it->name);
            qs_wrows_f32(w->embed_type, w->embed_q, de, 0, (int)it->shape[0], tmp);
            v = tmp;
        }
    } else {
        v = it->vals;
    }
    if (!st) st = put_f32(sw, v, n, it->dt);
    free(tmp);
    return st;
}

/* model.safetensors in dir: the planned tensors, declared, then streamed. */
static qs_status write_weights(ex_ctx *x, const char *dir) {
    char p[EX_PATH];
    qs_io_join(p, sizeof p, dir, "model.safetensors");
    qs_st_w *sw = qs_st_w_new();
    if (!sw) return qs_fail(QS_ENOMEM, "out of memory");
    qs_status st = QS_OK;
    for (size_t i = 0; i < x->n_items && !st; i++)
        st = qs_st_w_add(sw, x->items[i].name, x->items[i].dt, x->items[i].n_dims, x->items[i].shape);
    x->total = (long)qs_st_w_total(sw);
    if (!st) st = qs_st_w_begin(sw, p);
    for (size_t i = 0; i < x->n_items && !st; i++) {
        if ((st = put_item(x, sw, &x->items[i]))) break;
        x->done += (long)(numel_of(&x->items[i]) * qs_st_dtype_size(x->items[i].dt));
        if (x->o->progress && x->o->progress(x->o->progress_ud, x->done, x->total))
            st = qs_fail(QS_ECANCEL, "export cancelled");
    }
    if (!st) st = qs_st_w_commit(sw);
    qs_st_w_free(sw);
    return st;
}

/* ---- the other files ---- */

static qs_status copy_file(const char *from, const char *to) {
    qs_map map;
    qs_status st = qs_io_map(from, &map);
    if (st) return st;
    st = qs_io_write_atomic(to, map.data ? map.data : (const void *)"", map.size);
    qs_io_unmap(&map);
    return st;
}

/* The files transformers reads beside the weights, whichever exist. */
static const char *const side_files[] = {
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "merges.txt",
    "special_tokens_map.json", "added_tokens.json", "generation_config.json", NULL,
};

/* config.json with qscope's SliceGPT section (and an untied head: SliceGPT
 * folds the final norm into a head of its own). */
static qs_status write_sliced_config(const ex_ctx *x, const qs_variant *v, const char *from, const char *to) {
    const qs_model *m = x->m;
    const qs_weights *w = x->w;
    char *text = NULL;
    size_t len = 0;
    qs_status st = qs_io_read_file(from, QS_IO_TEXT_MAX, &text, &len);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return qs_fail(QS_EFORMAT, "%s: malformed JSON", from);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(root, "tie_word_embeddings");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "qscope_slicegpt");
    /* each object attached as soon as it exists: deleting root frees them all */
    cJSON *sg = cJSON_AddObjectToObject(root, "qscope_slicegpt"), *widths = NULL;
    int ok = sg && cJSON_AddBoolToObject(root, "tie_word_embeddings", 0) && cJSON_AddNumberToObject(sg, "version", 1) &&
             cJSON_AddStringToObject(sg, "spec", qs_variant_spec(v)) &&
             cJSON_AddNumberToObject(sg, "norm_divisor", m->cfg.d_model) &&
             cJSON_AddNumberToObject(sg, "embed_width", w->d_embed ? w->d_embed : m->cfg.d_model) &&
             cJSON_AddNumberToObject(sg, "head_width", w->head.n_in) &&
             (widths = cJSON_AddArrayToObject(sg, "layer_widths"));
    for (int l = 0; l < m->cfg.n_layers && ok; l++) {
        const qs_layer *L = &w->layers[l];
        int wd[3] = {L->q.n_in, L->o.n_out, L->down.n_out};
        cJSON *row = cJSON_CreateIntArray(wd, 3);
        ok = row && cJSON_AddItemToArray(widths, row);
    }
    char *out = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!out) return qs_fail(QS_ENOMEM, "%s: out of memory", to);
    st = qs_io_write_atomic(to, out, strlen(out));
    free(out);
    return st;
}

static int is_sliced(const qs_weights *w, int n_layers) {
    for (int l = 0; l < n_layers; l++)
        if (qs_linear_has(&w->layers[l].attn_skip) || qs_linear_has(&w->layers[l].mlp_skip)) return 1;
    return 0;
}

/* ---- the directory ---- */

/* dir without trailing slashes into buf */
static qs_status clean_dir(const char *dir, char *buf, size_t cap) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n == 0 || n + 16 >= cap) return qs_fail(QS_EARG, "export: bad directory name '%s'", dir);
    memcpy(buf, dir, n);
    buf[n] = 0;
    return QS_OK;
}

/* tmp (a complete directory) renamed to dir; an old dir (force) moved aside
 * first, and removed only once the new one is in place. */
static qs_status put_in_place(const char *tmp, const char *dir) {
    struct stat sb;
    if (lstat(dir, &sb) != 0) {
        if (rename(tmp, dir) != 0) return qs_fail(QS_EIO, "%s: cannot rename into place: %s", dir, strerror(errno));
        return QS_OK;
    }
    char old[EX_PATH];
    snprintf(old, sizeof old, "%s.old-XXXXXX", dir);
    if (!mkdtemp(old)) return qs_fail(QS_EIO, "%s: cannot make a name to move it aside: %s", dir, strerror(errno));
    if (rename(dir, old) != 0) {
        int e = errno;
        rmdir(old);
        return qs_fail(QS_EIO, "%s: cannot move it aside: %s", dir, strerror(e));
    }
    if (rename(tmp, dir) != 0) {
        int e = errno;
        rename(old, dir);
        return qs_fail(QS_EIO, "%s: cannot rename into place: %s", dir, strerror(e));
    }
    remove_tree(old);
    return QS_OK;
}

qs_status qs_export_dir(const qs_model *m, const qs_variant *v, const char *dir_in, const qs_export_opts *o) {
    static const qs_export_opts none = {0};
    if (!o) o = &none;
    char dir[EX_PATH - 32], tmp[EX_PATH];
    qs_status st = clean_dir(dir_in, dir, sizeof dir);
    if (st) return st;
    if (strcmp(m->format, "safetensors"))
        return qs_fail(QS_EUNSUPPORTED, "%s: a %s model cannot be written as a Hugging Face directory yet (only one "
                       "read from a directory of safetensors)", m->path, m->format);
    struct stat sb;
    if (lstat(dir, &sb) == 0) {
        if (!o->force) return qs_fail(QS_EARG, "%s exists; give --force to replace it", dir);
        if (!S_ISDIR(sb.st_mode)) return qs_fail(QS_EARG, "%s exists and is not a directory", dir);
    }
    const qs_exec *e = v ? qs_variant_exec(v) : NULL;
    if (v && (st = qs_export_check(v, 0, o, dir))) return st;
    ex_ctx x = {.m = m, .w = e && e->w ? e->w : &m->w, .o = o};
    if (o->dtype) {
        x.dt_forced = 1;
        if (!strcmp(o->dtype, "f32")) x.dt = QS_ST_F32;
        else if (!strcmp(o->dtype, "f16")) x.dt = QS_ST_F16;
        else if (!strcmp(o->dtype, "bf16")) x.dt = QS_ST_BF16;
        else return qs_fail(QS_EARG, "export: dtype '%s' (f32, f16 or bf16)", o->dtype);
    }
    int sliced = is_sliced(x.w, m->cfg.n_layers);
    if ((st = open_sources(&x)) || (st = sliced ? plan_sliced(&x) : plan_source(&x))) goto done;

    snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", dir);
    if (!mkdtemp(tmp)) {
        st = qs_fail(QS_EIO, "%s: cannot make a directory beside it: %s", dir, strerror(errno));
        goto done;
    }
    chmod(tmp, 0755);
    char from[EX_PATH], to[EX_PATH];
    qs_io_join(from, sizeof from, m->path, "config.json");
    qs_io_join(to, sizeof to, tmp, "config.json");
    st = sliced ? write_sliced_config(&x, v, from, to) : copy_file(from, to);
    for (int i = 0; side_files[i] && !st; i++)
        if (qs_io_exists(qs_io_join(from, sizeof from, m->path, side_files[i])))
            st = copy_file(from, qs_io_join(to, sizeof to, tmp, side_files[i]));
    if (!st) st = write_weights(&x, tmp);
    if (!st) st = put_in_place(tmp, dir);
    if (st) remove_tree(tmp);
done:
    for (int i = 0; i < x.n_files; i++) qs_st_close(x.files[i]);
    free(x.files);
    free(x.items);
    return st;
}
