#include "read/read.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "qscope reads little-endian tensor data in place and needs a little-endian host"
#endif

struct qs_st_file {
    char *path;
    qs_map map;
    qs_store *map_owner; /* store the map was moved into by a borrow; NULL while we own it */
    qs_st_tensor *t;     /* (n) sorted by name */
    size_t n;
};

static const struct {
    const char *name;
    size_t size;
} dtypes[QS_ST_N_DTYPES] = {
    [QS_ST_F32] = {"F32", 4},         [QS_ST_F16] = {"F16", 2},     [QS_ST_BF16] = {"BF16", 2},
    [QS_ST_F64] = {"F64", 8},         [QS_ST_I64] = {"I64", 8},     [QS_ST_U64] = {"U64", 8},
    [QS_ST_I32] = {"I32", 4},         [QS_ST_U32] = {"U32", 4},     [QS_ST_I16] = {"I16", 2},
    [QS_ST_U16] = {"U16", 2},         [QS_ST_I8] = {"I8", 1},       [QS_ST_U8] = {"U8", 1},
    [QS_ST_BOOL] = {"BOOL", 1},       [QS_ST_F8_E4M3] = {"F8_E4M3", 1},
    [QS_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *qs_st_dtype_str(qs_st_dtype d) {
    return (unsigned)d < QS_ST_N_DTYPES ? dtypes[d].name : "?";
}

size_t qs_st_dtype_size(qs_st_dtype d) { return (unsigned)d < QS_ST_N_DTYPES ? dtypes[d].size : 0; }

const char *qs_st_path(const qs_st_file *f) { return f->path; }
size_t qs_st_count(const qs_st_file *f) { return f->n; }
const qs_st_tensor *qs_st_tensor_at(const qs_st_file *f, size_t i) { return i < f->n ? &f->t[i] : NULL; }

char *qs_st_shape_str(const qs_st_tensor *t, char *buf, size_t cap) {
    size_t len = 0;
    if (cap == 0) return buf;
    buf[0] = 0;
    len += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->n_dims && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
    return buf;
}

void qs_st_close(qs_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    if (!f->map_owner) qs_io_unmap(&f->map);
    free(f->path);
    free(f);
}

/* A JSON number that is a non-negative integer below 2^53 (exact in a
 * double), else -1. */
static int64_t json_index(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || floor(d) != d) return -1;
    return (int64_t)d;
}

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const qs_st_tensor *)a)->name, ((const qs_st_tensor *)b)->name);
}

static qs_status parse_entry(qs_st_file *f, const cJSON *e, size_t data_start, qs_st_tensor *t) {
    const char *p = f->path, *name = e->string;
    if (!cJSON_IsObject(e))
        return qs_fail(QS_EFORMAT, "%s: header entry '%s' is not an object", p, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
        return qs_fail(QS_EFORMAT, "%s: tensor '%s' lacks a dtype string, a shape array or data_offsets",
                       p, name);
    int d = 0;
    while (d < QS_ST_N_DTYPES && strcmp(dtypes[d].name, dt->valuestring) != 0) d++;
    if (d == QS_ST_N_DTYPES)
        return qs_fail(QS_EFORMAT, "%s: tensor '%s' has unknown dtype '%.32s'", p, name, dt->valuestring);
    t->dtype = (qs_st_dtype)d;
    int nd = cJSON_GetArraySize(sh);
    if (nd > QS_ST_MAX_DIMS)
        return qs_fail(QS_EFORMAT, "%s: tensor '%s' has %d dimensions (at most %d)", p, name, nd,
                       QS_ST_MAX_DIMS);
    t->n_dims = nd;
    int64_t numel = 1;
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, sh) {
        int64_t v = json_index(x);
        /* 2^40 per dimension and 2^56 in all keep the byte count far from overflow */
        if (v < 0 || v > ((int64_t)1 << 40))
            return qs_fail(QS_EFORMAT, "%s: tensor '%s' has an invalid shape entry", p, name);
        t->shape[i++] = v;
        if (v && numel > ((int64_t)1 << 56) / v)
            return qs_fail(QS_EFORMAT, "%s: tensor '%s' is impossibly large", p, name);
        numel *= v;
    }
    t->numel = numel;
    int64_t b = cJSON_GetArraySize(off) == 2 ? json_index(cJSON_GetArrayItem(off, 0)) : -1;
    int64_t end = cJSON_GetArraySize(off) == 2 ? json_index(cJSON_GetArrayItem(off, 1)) : -1;
    if (b < 0 || end < b)
        return qs_fail(QS_EFORMAT, "%s: tensor '%s' has invalid data_offsets", p, name);
    size_t avail = f->map.size - data_start;
    if ((uint64_t)end > avail)
        return qs_fail(QS_EFORMAT,
                       "%s: tensor '%s' data_offsets [%lld,%lld] run past the end of the file "
                       "(%zu data bytes; file truncated?)",
                       p, name, (long long)b, (long long)end, avail);
    uint64_t want = (uint64_t)numel * dtypes[d].size;
    if ((uint64_t)(end - b) != want)
        return qs_fail(QS_EFORMAT, "%s: tensor '%s' has %lld data bytes, its dtype %s and shape need %llu",
                       p, name, (long long)(end - b), dtypes[d].name, (unsigned long long)want);
    t->data = f->map.data + data_start + b;
    t->nbytes = (size_t)want;
    return QS_OK;
}

qs_status qs_st_open(const char *path, qs_st_file **out) {
    *out = NULL;
    qs_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return qs_fail(QS_ENOMEM, "%s: out of memory", path);
    }
    qs_status st = qs_io_map(path, &f->map);
    if (st) {
        qs_st_close(f);
        return st;
    }
    cJSON *root = NULL;
    size_t size = f->map.size;
    if (size < 8) {
        st = qs_fail(QS_EFORMAT, "%s: file is %zu bytes, too short for a safetensors header", path, size);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->map.data[i];
    if (hlen > size - 8) {
        st = qs_fail(QS_EFORMAT,
                     "%s: header length %llu points past the end of the file (%zu bytes; truncated or "
                     "not a safetensors file)",
                     path, (unsigned long long)hlen, size);
        goto fail;
    }
    if (hlen > QS_ST_MAX_HEADER) {
        st = qs_fail(QS_EFORMAT, "%s: header length %llu is over the limit of %d bytes (not a safetensors file?)",
                     path, (unsigned long long)hlen, QS_ST_MAX_HEADER);
        goto fail;
    }
    root = cJSON_ParseWithLength((const char *)f->map.data + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        st = qs_fail(QS_EFORMAT, "%s: the %llu-byte header is not a JSON object", path,
                     (unsigned long long)hlen);
        goto fail;
    }
    size_t data_start = 8 + (size_t)hlen, n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) n++;
    f->t = calloc(n ? n : 1, sizeof *f->t);
    if (!f->t) {
        st = qs_fail(QS_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    cJSON_ArrayForEach(e, root) {
        if (!e->string) continue;
        if (strcmp(e->string, "__metadata__") == 0) continue;
        qs_st_tensor *t = &f->t[f->n];
        if (!(t->name = strdup(e->string))) {
            st = qs_fail(QS_ENOMEM, "%s: out of memory", path);
            goto fail;
        }
        f->n++;
        if ((st = parse_entry(f, e, data_start, t))) goto fail;
    }
    qsort(f->t, f->n, sizeof *f->t, cmp_tensor);
    for (size_t i = 1; i < f->n; i++)
        if (strcmp(f->t[i - 1].name, f->t[i].name) == 0) {
            st = qs_fail(QS_EFORMAT, "%s: tensor '%s' appears twice in the header", path, f->t[i].name);
            goto fail;
        }
    cJSON_Delete(root);
    *out = f;
    return QS_OK;
fail:
    cJSON_Delete(root);
    qs_st_close(f);
    return st;
}

const qs_st_tensor *qs_st_find(const qs_st_file *f, const char *name) {
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->t[mid].name, name);
        if (c == 0) return &f->t[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static qs_status check_float(const qs_st_file *f, const qs_st_tensor *t) {
    if (t->dtype == QS_ST_F32 || t->dtype == QS_ST_F16 || t->dtype == QS_ST_BF16) return QS_OK;
    return qs_fail(QS_EUNSUPPORTED, "%s: tensor '%s' has unsupported dtype %s (qscope reads F32, F16 and BF16)",
                   f->path, t->name, qs_st_dtype_str(t->dtype));
}

qs_status qs_st_read_f32(const qs_st_file *f, const qs_st_tensor *t, float *dst) {
    qs_status st = check_float(f, t);
    if (st) return st;
    size_t n = (size_t)t->numel;
    if (t->dtype == QS_ST_F32) memcpy(dst, t->data, n * 4);
    else if (t->dtype == QS_ST_F16) qs_f16_to_f32_n(dst, t->data, n);
    else qs_bf16_to_f32_n(dst, t->data, n);
    return QS_OK;
}

qs_status qs_st_bytes(qs_st_file *f, const qs_st_tensor *t, qs_store *store, const void **out) {
    qs_status st = qs_store_bytes_of(store, f->map, &f->map_owner, t->data, (size_t)t->nbytes, out);
    return st ? qs_fail_prefix(st, "%s: tensor '%s'", f->path, t->name) : QS_OK;
}

qs_status qs_st_to_f32(qs_st_file *f, const qs_st_tensor *t, qs_store *store, const float **out) {
    *out = NULL;
    qs_status st = check_float(f, t);
    if (st) return st;
    float *dst;
    st = qs_store_f32(store, f->map, &f->map_owner, t->data, (size_t)t->numel, t->dtype == QS_ST_F32, out, &dst);
    if (st) return qs_fail_prefix(st, "%s: tensor '%s'", f->path, t->name);
    if (!dst) return QS_OK;
    qs_st_read_f32(f, t, dst);
    *out = dst;
    return QS_OK;
}
