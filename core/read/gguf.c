#include "read/read.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


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
 * against max and the bytes left before anything is allocated. */
static qs_status rd_str(cursor *c, const char *what, uint64_t max, char **out) {
    uint64_t n = 0;
    *out = NULL;
    size_t at = c->pos;
    qs_status st = rd_u64(c, what, &n);
    if (st) return st;
    if (n > max)
        return qs_fail(QS_EFORMAT, "%s: %s at byte %zu has length %llu, over the limit of %llu bytes", c->g->path,
                       what, at, (unsigned long long)n, (unsigned long long)max);
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

/* A name, then a u32 that follows it (a key's type, a tensor's dimension
 * count); *count grows once the name is read, so freeing finds it. */
static qs_status rd_name_u32(cursor *c, const char *what, char **name, size_t *count, uint32_t *u) {
    qs_status st = rd_str(c, what, QS_GGUF_MAX_NAME, name);
    if (st) return st;
    (*count)++;
    return rd_u32(c, *name, u);
}

static size_t scalar_size(uint32_t type) {
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < sizeof sz / sizeof sz[0] ? sz[type] : 0;
}

static qs_status bad_type(const cursor *c, const char *key, uint32_t type) {
    return qs_fail(QS_EFORMAT, "%s: key '%s' has unknown value type %u", c->g->path, key, type);
}

static qs_status too_long(const cursor *c, const char *key, uint64_t n) {
    return qs_fail(QS_EFORMAT, "%s: array '%s' claims %llu elements, over the limit of %d", c->g->path, key,
                   (unsigned long long)n, QS_GGUF_MAX_ARRAY);
}

/* Skip a nested array (arrays of arrays are legal GGUF, unused by models). */
static qs_status skip_array(cursor *c, const char *key, int depth) {
    uint32_t type = 0;
    uint64_t n = 0;
    qs_status st;
    if (depth > 8) return qs_fail(QS_EFORMAT, "%s: key '%s' nests arrays too deeply", c->g->path, key);
    if ((st = rd_u32(c, key, &type)) || (st = rd_u64(c, key, &n))) return st;
    if (n > QS_GGUF_MAX_ARRAY) return too_long(c, key, n);
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
            if (len > QS_GGUF_MAX_STRING)
                return qs_fail(QS_EFORMAT, "%s: a string of array '%s' has length %llu, over the limit of %d bytes",
                               c->g->path, key, (unsigned long long)len, QS_GGUF_MAX_STRING);
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
    if (kv->type == QS_GGUF_STRING) return rd_str(c, kv->key, QS_GGUF_MAX_STRING, &kv->str);
    if (kv->type != QS_GGUF_ARRAY) return bad_type(c, kv->key, kv->type);
    uint32_t at = 0;
    uint64_t n = 0;
    if ((st = rd_u32(c, kv->key, &at)) || (st = rd_u64(c, kv->key, &n))) return st;
    kv->arr_type = (qs_gguf_type)at;
    if (n > QS_GGUF_MAX_ARRAY) return too_long(c, kv->key, n);
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
            if ((st = rd_str(c, kv->key, QS_GGUF_MAX_STRING, &kv->arr_str[i]))) return st;
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
    if (n_t > QS_GGUF_MAX_TENSORS || n_kv > QS_GGUF_MAX_KV)
        return qs_fail(QS_EFORMAT, "%s: %llu tensors and %llu key/values, over the limits of %d and %d", path,
                       (unsigned long long)n_t, (unsigned long long)n_kv, QS_GGUF_MAX_TENSORS, QS_GGUF_MAX_KV);
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
        if ((st = rd_name_u32(&c, "key", &kv->key, &g->n_kv, &type))) return st;
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
        if ((st = rd_name_u32(&c, "tensor name", &t->name, &g->n_t, &nd))) return st;
        if (nd < 1 || nd > 4)
            return qs_fail(QS_EFORMAT, "%s: tensor '%s' has %u dimensions (1 to 4)", path, t->name, nd);
        t->n_dims = (int)nd;
        t->numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            if ((st = rd_u64(&c, t->name, &t->ne[d]))) return st;
            if (t->ne[d] > ((uint64_t)1 << 40))
                return qs_fail(QS_EFORMAT, "%s: tensor '%s' dimension %u is %llu, over the limit of 2^40", path,
                               t->name, d, (unsigned long long)t->ne[d]);
            if (t->ne[d] && t->numel > ((uint64_t)1 << 56) / t->ne[d])
                return qs_fail(QS_EFORMAT, "%s: tensor '%s' has more than 2^56 elements (the limit)", path, t->name);
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

qs_status qs_gguf_bytes(qs_gguf *g, const qs_gguf_tensor *t, qs_store *store, const void **out) {
    qs_status st = qs_store_bytes_of(store, g->map, &g->map_owner, t->data, (size_t)t->nbytes, out);
    return st ? qs_fail_prefix(st, "%s: tensor '%s'", g->path, t->name) : QS_OK;
}

qs_status qs_gguf_to_f32(qs_gguf *g, const qs_gguf_tensor *t, qs_store *store, const float **out) {
    *out = NULL;
    qs_status st = check_float(g, t);
    if (st) return st;
    float *dst;
    st = qs_store_f32(store, g->map, &g->map_owner, t->data, (size_t)t->numel, t->type == QS_GGML_F32, out, &dst);
    if (st) return qs_fail_prefix(st, "%s: tensor '%s'", g->path, t->name);
    if (!dst) return QS_OK;
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
