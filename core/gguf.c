#include "gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loaders.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "qscope reads little-endian tensor data in place and needs a little-endian host"
#endif

struct qs_gguf {
    char *path;
    qs_map map;
    qs_store *map_owner; /* set when a borrow moved the map into a store */
    uint32_t version;
    qs_gguf_kv *kv; /* (n_kv) */
    size_t n_kv;
    qs_gguf_tensor *t; /* (n_t) */
    size_t n_t;
    size_t data_start;
};

const char *qs_gguf_path(const qs_gguf *g) { return g->path; }
size_t qs_gguf_n_kv(const qs_gguf *g) { return g->n_kv; }
const qs_gguf_kv *qs_gguf_kv_at(const qs_gguf *g, size_t i) { return i < g->n_kv ? &g->kv[i] : NULL; }
size_t qs_gguf_n_tensors(const qs_gguf *g) { return g->n_t; }
const qs_gguf_tensor *qs_gguf_tensor_at(const qs_gguf *g, size_t i) { return i < g->n_t ? &g->t[i] : NULL; }

const char *qs_gguf_type_name(uint32_t type) {
    static const char *const names[] = {
        "F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
        "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
        "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
        "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16"};
    return type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

/* Bytes per element of the unquantized types; 0 for block-quantized ones. */
static size_t type_size(uint32_t type) {
    switch (type) {
    case 0: case 26: return 4; /* F32, I32 */
    case 1: case 25: case 30: return 2; /* F16, I16, BF16 */
    case 24: return 1; /* I8 */
    case 27: case 28: return 8; /* I64, F64 */
    }
    return 0;
}

/* ---- parsing ---- */

typedef struct {
    const qs_gguf *g;
    const uint8_t *p;
    size_t pos, size;
} cursor;

static qs_status short_read(const cursor *c, const char *what) {
    return qs_fail(QS_EFORMAT, "%s: truncated: %s at byte %zu runs past the end of the file (%zu bytes)",
                   c->g->path, what, c->pos, c->size);
}

/* n bytes at the cursor, or NULL (with the error set) when the file ends first. */
static const uint8_t *take(cursor *c, size_t n, const char *what) {
    if (n > c->size - c->pos) {
        short_read(c, what);
        return NULL;
    }
    const uint8_t *b = c->p + c->pos;
    c->pos += n;
    return b;
}

static uint64_t le(const uint8_t *b, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

static qs_status rd_u32(cursor *c, const char *what, uint32_t *out) {
    const uint8_t *b = take(c, 4, what);
    if (!b) return QS_EFORMAT;
    *out = (uint32_t)le(b, 4);
    return QS_OK;
}

static qs_status rd_u64(cursor *c, const char *what, uint64_t *out) {
    const uint8_t *b = take(c, 8, what);
    if (!b) return QS_EFORMAT;
    *out = le(b, 8);
    return QS_OK;
}

/* A length-prefixed string, copied and NUL-terminated. The length is checked
 * against the bytes left before anything is allocated. */
static qs_status rd_str(cursor *c, const char *what, char **out) {
    uint64_t n = 0;
    *out = NULL;
    size_t at = c->pos;
    qs_status st = rd_u64(c, what, &n);
    if (st) return st;
    if (n > c->size - c->pos)
        return qs_fail(QS_EFORMAT, "%s: %s at byte %zu has length %llu, past the end of the file (%zu bytes)",
                       c->g->path, what, at, (unsigned long long)n, c->size);
    const uint8_t *b = take(c, (size_t)n, what);
    if (!b) return QS_EFORMAT;
    char *s = malloc((size_t)n + 1);
    if (!s) return qs_fail(QS_ENOMEM, "%s: out of memory", c->g->path);
    memcpy(s, b, (size_t)n);
    s[n] = 0;
    *out = s;
    return QS_OK;
}

static size_t scalar_size(uint32_t type) {
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < sizeof sz / sizeof sz[0] ? sz[type] : 0;
}

static qs_status bad_type(const cursor *c, const char *key, uint32_t type) {
    return qs_fail(QS_EFORMAT, "%s: key '%s' has unknown value type %u", c->g->path, key, type);
}

/* Skip a nested array (arrays of arrays are legal GGUF, unused by models). */
static qs_status skip_array(cursor *c, const char *key, int depth) {
    uint32_t type = 0;
    uint64_t n = 0;
    qs_status st;
    if (depth > 8) return qs_fail(QS_EFORMAT, "%s: key '%s' nests arrays too deeply", c->g->path, key);
    if ((st = rd_u32(c, key, &type)) || (st = rd_u64(c, key, &n))) return st;
    size_t es = scalar_size(type);
    if (es) {
        if (n > (c->size - c->pos) / es) return short_read(c, key);
        c->pos += (size_t)(n * es);
        return QS_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (type == QS_GGUF_STRING) {
            uint64_t len = 0;
            if ((st = rd_u64(c, key, &len))) return st;
            if (len > c->size - c->pos) return short_read(c, key);
            c->pos += (size_t)len;
        } else if (type == QS_GGUF_ARRAY) {
            if ((st = skip_array(c, key, depth + 1))) return st;
        } else {
            return bad_type(c, key, type);
        }
    }
    return QS_OK;
}

static qs_status rd_value(cursor *c, qs_gguf_kv *kv) {
    qs_status st;
    size_t es = scalar_size(kv->type);
    if (es) {
        const uint8_t *b = take(c, es, kv->key);
        if (!b) return QS_EFORMAT;
        uint64_t v = le(b, (int)es);
        switch (kv->type) {
        case QS_GGUF_I8: kv->num.i = (int8_t)v; break;
        case QS_GGUF_I16: kv->num.i = (int16_t)v; break;
        case QS_GGUF_I32: kv->num.i = (int32_t)v; break;
        case QS_GGUF_I64: kv->num.i = (int64_t)v; break;
        case QS_GGUF_F32: {
            uint32_t u = (uint32_t)v;
            float f;
            memcpy(&f, &u, 4);
            kv->num.f = f;
            break;
        }
        case QS_GGUF_F64: memcpy(&kv->num.f, &v, 8); break;
        default: kv->num.u = v;
        }
        return QS_OK;
    }
    if (kv->type == QS_GGUF_STRING) return rd_str(c, kv->key, &kv->str);
    if (kv->type != QS_GGUF_ARRAY) return bad_type(c, kv->key, kv->type);
    uint32_t at = 0;
    uint64_t n = 0;
    if ((st = rd_u32(c, kv->key, &at)) || (st = rd_u64(c, kv->key, &n))) return st;
    kv->arr_type = (qs_gguf_type)at;
    es = scalar_size(at);
    if (es) {
        if (n > (c->size - c->pos) / es)
            return qs_fail(QS_EFORMAT, "%s: array '%s' claims %llu elements, past the end of the file",
                           c->g->path, kv->key, (unsigned long long)n);
        kv->arr_n = n;
        kv->arr_data = take(c, (size_t)(n * es), kv->key);
        return kv->arr_data ? QS_OK : QS_EFORMAT;
    }
    if (at == QS_GGUF_STRING) {
        /* every string takes at least its 8-byte length */
        if (n > (c->size - c->pos) / 8)
            return qs_fail(QS_EFORMAT, "%s: array '%s' claims %llu strings, past the end of the file",
                           c->g->path, kv->key, (unsigned long long)n);
        kv->arr_str = calloc(n ? (size_t)n : 1, sizeof *kv->arr_str);
        if (!kv->arr_str) return qs_fail(QS_ENOMEM, "%s: out of memory", c->g->path);
        for (uint64_t i = 0; i < n; i++) {
            if ((st = rd_str(c, kv->key, &kv->arr_str[i]))) return st;
            kv->arr_n = i + 1; /* what close must free */
        }
        return QS_OK;
    }
    if (at == QS_GGUF_ARRAY) {
        kv->arr_n = n;
        for (uint64_t i = 0; i < n; i++)
            if ((st = skip_array(c, kv->key, 1))) return st;
        return QS_OK;
    }
    return bad_type(c, kv->key, at);
}

void qs_gguf_close(qs_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) {
        qs_gguf_kv *kv = &g->kv[i];
        free(kv->key);
        free(kv->str);
        if (kv->arr_str)
            for (uint64_t j = 0; j < kv->arr_n; j++) free(kv->arr_str[j]);
        free(kv->arr_str);
    }
    free(g->kv);
    for (size_t i = 0; i < g->n_t; i++) free(g->t[i].name);
    free(g->t);
    if (!g->map_owner) qs_io_unmap(&g->map);
    free(g->path);
    free(g);
}

static qs_status parse(qs_gguf *g) {
    cursor c = {.g = g, .p = g->map.data, .size = g->map.size};
    const char *path = g->path;
    uint64_t n_t = 0, n_kv = 0;
    qs_status st;
    if (g->map.size < 4 || memcmp(g->map.data, "GGUF", 4) != 0)
        return qs_fail(QS_EFORMAT, "%s: not a GGUF file (bad magic; expected 'GGUF')", path);
    c.pos = 4;
    if ((st = rd_u32(&c, "version", &g->version))) return st;
    if (g->version != 3)
        return qs_fail(g->version == 1 || g->version == 2 ? QS_EUNSUPPORTED : QS_EFORMAT,
                       "%s: GGUF version %u is not supported (qscope reads version 3; re-convert the "
                       "model with a current llama.cpp)", path, g->version);
    if ((st = rd_u64(&c, "tensor count", &n_t)) || (st = rd_u64(&c, "key/value count", &n_kv))) return st;
    /* a key/value takes at least 8 + 4 bytes, a tensor info at least 8 + 4 + 8 + 4 + 8 */
    if (n_kv > (c.size - c.pos) / 12 || n_t > (c.size - c.pos) / 32)
        return qs_fail(QS_EFORMAT, "%s: %llu tensors and %llu key/values cannot fit in a %zu-byte file", path,
                       (unsigned long long)n_t, (unsigned long long)n_kv, c.size);
    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    g->t = calloc(n_t ? (size_t)n_t : 1, sizeof *g->t);
    if (!g->kv || !g->t) return qs_fail(QS_ENOMEM, "%s: out of memory", path);
    for (uint64_t i = 0; i < n_kv; i++) {
        qs_gguf_kv *kv = &g->kv[g->n_kv];
        uint32_t type = 0;
        if ((st = rd_str(&c, "key", &kv->key))) return st;
        g->n_kv++;
        if ((st = rd_u32(&c, kv->key, &type))) return st;
        kv->type = (qs_gguf_type)type;
        if ((st = rd_value(&c, kv))) return st;
    }
    uint64_t align = 32;
    const qs_gguf_kv *a = qs_gguf_get(g, "general.alignment");
    if (a) {
        int64_t v;
        if (!qs_gguf_kv_int(a, &v) || v <= 0 || v > (1 << 24) || (v & (v - 1)))
            return qs_fail(QS_EFORMAT, "%s: general.alignment must be a power of two", path);
        align = (uint64_t)v;
    }
    for (uint64_t i = 0; i < n_t; i++) {
        qs_gguf_tensor *t = &g->t[g->n_t];
        uint32_t nd = 0;
        if ((st = rd_str(&c, "tensor name", &t->name))) return st;
        g->n_t++;
        if ((st = rd_u32(&c, t->name, &nd))) return st;
        if (nd < 1 || nd > 4)
            return qs_fail(QS_EFORMAT, "%s: tensor '%s' has %u dimensions (1 to 4)", path, t->name, nd);
        t->n_dims = (int)nd;
        t->numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            if ((st = rd_u64(&c, t->name, &t->ne[d]))) return st;
            if (t->ne[d] > ((uint64_t)1 << 40) || (t->ne[d] && t->numel > ((uint64_t)1 << 56) / t->ne[d]))
                return qs_fail(QS_EFORMAT, "%s: tensor '%s' has an impossible size", path, t->name);
            t->numel *= t->ne[d];
        }
        if ((st = rd_u32(&c, t->name, &t->type)) || (st = rd_u64(&c, t->name, &t->offset))) return st;
        if (t->offset % align)
            return qs_fail(QS_EFORMAT, "%s: tensor '%s' offset %llu is not a multiple of the alignment %llu",
                           path, t->name, (unsigned long long)t->offset, (unsigned long long)align);
        for (size_t j = 0; j + 1 < g->n_t; j++)
            if (!strcmp(g->t[j].name, t->name))
                return qs_fail(QS_EFORMAT, "%s: tensor '%s' appears twice", path, t->name);
    }
    size_t start = c.pos + (size_t)((align - c.pos % align) % align);
    if (start > c.size) start = c.size;
    g->data_start = start;
    size_t avail = c.size - start;
    for (size_t i = 0; i < g->n_t; i++) {
        qs_gguf_tensor *t = &g->t[i];
        uint64_t off = t->offset;
        size_t es = type_size(t->type), be, bb;
        uint64_t need = es ? t->numel * es : 0;
        if (!es && qs_ggml_block(t->type, &be, &bb)) {
            if (t->n_dims < 1 || t->ne[0] % be)
                return qs_fail(QS_EFORMAT, "%s: tensor '%s' (%s) has rows of %llu values, not a multiple of its %zu-value block",
                               path, t->name, qs_gguf_type_name(t->type), (unsigned long long)(t->n_dims ? t->ne[0] : 0), be);
            need = t->numel / be * bb;
        }
        if (off > avail || need > avail - off)
            return qs_fail(QS_EFORMAT,
                           "%s: tensor '%s' (%llu bytes at data offset %llu) runs past the end of the file "
                           "(%zu data bytes; truncated?)",
                           path, t->name, (unsigned long long)need, (unsigned long long)off, avail);
        t->data = g->map.data + start + off;
        t->nbytes = (size_t)need;
    }
    return QS_OK;
}

qs_status qs_gguf_open(const char *path, qs_gguf **out) {
    *out = NULL;
    qs_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        return qs_fail(QS_ENOMEM, "%s: out of memory", path);
    }
    qs_status st = qs_io_map(path, &g->map);
    if (!st) st = parse(g);
    if (st) {
        qs_gguf_close(g);
        return st;
    }
    *out = g;
    return QS_OK;
}

const qs_gguf_kv *qs_gguf_get(const qs_gguf *g, const char *key) {
    for (size_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const qs_gguf_tensor *qs_gguf_find(const qs_gguf *g, const char *name) {
    for (size_t i = 0; i < g->n_t; i++)
        if (!strcmp(g->t[i].name, name)) return &g->t[i];
    return NULL;
}

int qs_gguf_kv_int(const qs_gguf_kv *kv, int64_t *out) {
    switch (kv->type) {
    case QS_GGUF_U8: case QS_GGUF_U16: case QS_GGUF_U32:
        *out = (int64_t)kv->num.u;
        return 1;
    case QS_GGUF_U64:
        if (kv->num.u > INT64_MAX) return 0;
        *out = (int64_t)kv->num.u;
        return 1;
    case QS_GGUF_I8: case QS_GGUF_I16: case QS_GGUF_I32: case QS_GGUF_I64:
        *out = kv->num.i;
        return 1;
    default: return 0;
    }
}

int qs_gguf_kv_float(const qs_gguf_kv *kv, double *out) {
    int64_t i;
    if (kv->type == QS_GGUF_F32 || kv->type == QS_GGUF_F64) {
        *out = kv->num.f;
        return 1;
    }
    if (qs_gguf_kv_int(kv, &i)) {
        *out = (double)i;
        return 1;
    }
    return 0;
}

static qs_status check_float(const qs_gguf *g, const qs_gguf_tensor *t) {
    size_t be, bb;
    if (t->type == QS_GGML_F32 || t->type == QS_GGML_F16 || t->type == QS_GGML_BF16 || qs_ggml_block(t->type, &be, &bb))
        return QS_OK;
    return qs_fail(QS_EUNSUPPORTED,
                   "%s: tensor '%s' has type %s (%u); qscope reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, "
                   "Q2_K to Q6_K and IQ4_NL tensors",
                   g->path, t->name, qs_gguf_type_name(t->type), t->type);
}

qs_status qs_gguf_read_f32(const qs_gguf *g, const qs_gguf_tensor *t, float *dst) {
    qs_status st = check_float(g, t);
    if (st) return st;
    size_t n = (size_t)t->numel;
    if (t->type == QS_GGML_F32) memcpy(dst, t->data, n * 4);
    else if (t->type == QS_GGML_F16) qs_f16_to_f32_n(dst, t->data, n);
    else if (t->type == QS_GGML_BF16) qs_bf16_to_f32_n(dst, t->data, n);
    else qs_ggml_dequant(t->type, t->data, dst, n);
    return QS_OK;
}

qs_status qs_gguf_to_f32(qs_gguf *g, const qs_gguf_tensor *t, qs_store *store, const float **out) {
    *out = NULL;
    qs_status st = check_float(g, t);
    if (st) return st;
    if (t->type == QS_GGML_F32 && (uintptr_t)t->data % sizeof(float) == 0 &&
        (!g->map_owner || g->map_owner == store)) {
        if (!g->map_owner) {
            if ((st = qs_store_add_map(store, g->map))) return st;
            g->map_owner = store;
        }
        *out = (const float *)(const void *)t->data;
        return QS_OK;
    }
    float *dst = qs_store_alloc(store, (size_t)t->numel * sizeof *dst);
    if (!dst) return qs_fail(QS_ENOMEM, "%s: out of memory converting tensor '%s'", g->path, t->name);
    qs_gguf_read_f32(g, t, dst);
    *out = dst;
    return QS_OK;
}

void qs_gguf_rope_rows(float *dst, const float *src, int n_heads, int head_dim, int n_in) {
    int half = head_dim / 2;
    size_t row = (size_t)n_in * sizeof(float);
    for (int h = 0; h < n_heads; h++) {
        const float *s = src + (size_t)h * head_dim * n_in;
        float *d = dst + (size_t)h * head_dim * n_in;
        for (int j = 0; j < half; j++) {
            memcpy(d + (size_t)j * n_in, s + (size_t)(2 * j) * n_in, row);
            memcpy(d + (size_t)(half + j) * n_in, s + (size_t)(2 * j + 1) * n_in, row);
        }
    }
}

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
        if (required) return qs_fail(QS_EFORMAT, "%s: missing key '%s'", g->path, key);
        *out = def;
        return QS_OK;
    }
    if (!qs_gguf_kv_int(kv, &v) || v < lo || v > (1 << 24))
        return qs_fail(QS_EFORMAT, "%s: key '%s' must be an integer from %d to %d", g->path, key, lo, 1 << 24);
    *out = (int)v;
    return QS_OK;
}

static qs_status cfg_float(const qs_gguf *g, const char *key, double def, float *out) {
    const qs_gguf_kv *kv = qs_gguf_get(g, key);
    double v = def;
    if (kv && (!qs_gguf_kv_float(kv, &v) || !isfinite(v)))
        return qs_fail(QS_EFORMAT, "%s: key '%s' must be a number", g->path, key);
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
    if (!arch) return qs_fail(QS_EFORMAT, "%s: no general.architecture string", g->path);
    if (strcmp(arch, "llama") != 0)
        return qs_fail(QS_EUNSUPPORTED, "%s: general.architecture is '%.64s'; qscope reads GGUF 'llama' models",
                       g->path, arch);
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
        return qs_fail(QS_EUNSUPPORTED, "%s: key length %d differs from value length %d", g->path, key_len,
                       val_len);
    if (rope_dims != key_len)
        return qs_fail(QS_EUNSUPPORTED, "%s: llama.rope.dimension_count %d is not the head size %d (partial "
                       "rotary embeddings are not supported)", g->path, rope_dims, key_len);
    const char *scaling = kv_str(g, "llama.rope.scaling.type");
    if (scaling && strcmp(scaling, "none") != 0)
        return qs_fail(QS_EUNSUPPORTED, "%s: llama.rope.scaling.type '%s' is not supported (plain RoPE only)",
                       g->path, scaling);
    if (!(c->rope_theta > 0)) return qs_fail(QS_EFORMAT, "%s: llama.rope.freq_base must be positive", g->path);
    c->head_dim = key_len;
    c->act = QS_ACT_SILU;
    c->norm = QS_NORM_RMS;
    const qs_gguf_tensor *emb = qs_gguf_find(g, "token_embd.weight");
    if (!emb) return qs_fail(QS_EFORMAT, "%s: tensor 'token_embd.weight' is missing", g->path);
    if (emb->n_dims != 2 || emb->ne[1] > (1u << 30))
        return qs_fail(QS_ESHAPE, "%s: tensor 'token_embd.weight' must be a matrix", g->path);
    c->vocab = (int)emb->ne[1];
    int vocab_key = 0;
    if ((st = cfg_int(g, "llama.vocab_size", 0, c->vocab, 1, &vocab_key))) return st;
    if (vocab_key != c->vocab)
        return qs_fail(QS_ESHAPE, "%s: llama.vocab_size is %d but token_embd.weight has %d rows", g->path,
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
    if (!t) return qs_fail(QS_EFORMAT, "%s: tensor '%s' is missing", x->g->path, name);
    uint64_t want[2] = {cols ? (uint64_t)cols : (uint64_t)rows, (uint64_t)rows};
    int nd = cols ? 2 : 1, have = t->n_dims;
    while (have > nd && t->ne[have - 1] == 1) have--; /* trailing unit dimensions */
    if (have != nd || t->ne[0] != want[0] || (nd == 2 && t->ne[1] != want[1])) {
        char found[96], expect[64];
        shape_str(found, sizeof found, t->n_dims, t->ne);
        shape_str(expect, sizeof expect, nd, want);
        return qs_fail(QS_ESHAPE, "%s: tensor '%s' has shape %s, config says %s", x->g->path, name, found,
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
            return qs_fail(QS_ENOMEM, "%s: out of memory converting '%s'", x->g->path, name);
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
    if (!ok) return qs_fail(QS_EFORMAT, "%s: '%s' must be an array of %d %s", g->path, key, n,
                            want_float ? "float32" : "int32");
    void *a = malloc((size_t)n * 4 + 1);
    if (!a) return qs_fail(QS_ENOMEM, "%s: out of memory", g->path);
    memcpy(a, kv->arr_data, (size_t)n * 4);
    *out = a;
    return QS_OK;
}

static qs_status load_tokenizer(gg_ctx *x) {
    const qs_gguf *g = x->g;
    const qs_config *c = &x->m->cfg;
    const char *model = kv_str(g, "tokenizer.ggml.model");
    if (!model) {
        qs_log(QS_LOG_WARN, "%s: no tokenizer.ggml.model; the model loads without a tokenizer", g->path);
        return QS_OK;
    }
    const qs_gguf_kv *toks = qs_gguf_get(g, "tokenizer.ggml.tokens");
    if (!toks || toks->type != QS_GGUF_ARRAY || toks->arr_type != QS_GGUF_STRING || toks->arr_n == 0)
        return qs_fail(QS_EFORMAT, "%s: tokenizer.ggml.tokens must be a non-empty array of strings", g->path);
    if (toks->arr_n > (uint64_t)c->vocab)
        return qs_fail(QS_ESHAPE, "%s: the vocabulary has %llu tokens but token_embd.weight has %d rows",
                       g->path, (unsigned long long)toks->arr_n, c->vocab);
    int n = (int)toks->arr_n;
    const char *const *pieces = (const char *const *)toks->arr_str;
    int unk = token_id(g, "tokenizer.ggml.unknown_token_id", n);
    qs_status st;
    if (!strcmp(model, "llama")) {
        void *scores = NULL, *types = NULL;
        if (!(st = array_copy(g, "tokenizer.ggml.scores", n, 1, &scores)) &&
            !(st = array_copy(g, "tokenizer.ggml.token_type", n, 0, &types))) {
            if (!scores) st = qs_fail(QS_EFORMAT, "%s: a 'llama' vocabulary needs tokenizer.ggml.scores", g->path);
            else st = qs_tok_new_spm(n, pieces, scores, types, c->bos_id, c->eos_id, unk, &x->m->tok);
        }
        free(scores);
        free(types);
        return st;
    }
    if (!strcmp(model, "gpt2")) {
        const qs_gguf_kv *mg = qs_gguf_get(g, "tokenizer.ggml.merges");
        if (!mg || mg->type != QS_GGUF_ARRAY || mg->arr_type != QS_GGUF_STRING || mg->arr_n > (1u << 30))
            return qs_fail(QS_EFORMAT, "%s: a 'gpt2' vocabulary needs tokenizer.ggml.merges strings", g->path);
        const qs_gguf_kv *ab = qs_gguf_get(g, "tokenizer.ggml.add_bos_token");
        int add_bos = ab && ab->type == QS_GGUF_BOOL && ab->num.u;
        return qs_tok_new_byte_bpe(n, pieces, (int)mg->arr_n, (const char *const *)mg->arr_str, c->bos_id,
                                   c->eos_id, add_bos, &x->m->tok);
    }
    return qs_fail(QS_EUNSUPPORTED, "%s: tokenizer.ggml.model '%.32s' is not supported (qscope reads 'llama' "
                   "and 'gpt2' vocabularies)", g->path, model);
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
