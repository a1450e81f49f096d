/* gguf_write.c — a GGUF v3 writer: metadata and tensors gathered in memory,
 * then written in one atomic replace (temp file + rename). The layout is the
 * one gguf.c reads and llama.cpp writes: header, key/values, tensor infos,
 * data aligned to general.alignment (32). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "read/read.h"

enum { ALIGN = 32 };

typedef struct {
    char *name;
    int n_dims;
    uint64_t ne[4]; /* GGUF order: fastest first */
    uint32_t type;
    void *data;
    size_t nbytes;
} wtensor;

struct qs_gguf_w {
    uint8_t *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    wtensor *t;
    size_t n_t, cap_t;
    int oom;
};

qs_gguf_w *qs_gguf_w_new(void) { return calloc(1, sizeof(qs_gguf_w)); }

void qs_gguf_w_free(qs_gguf_w *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    free(w->kv);
    free(w);
}

static void put(qs_gguf_w *w, const void *p, size_t n) {
    if (w->oom) return;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap * 2 : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        uint8_t *nk = realloc(w->kv, cap);
        if (!nk) {
            w->oom = 1;
            return;
        }
        w->kv = nk;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}

static void put_u32(qs_gguf_w *w, uint32_t v) { put(w, &v, 4); } /* little-endian hosts only (x86-64) */
static void put_u64(qs_gguf_w *w, uint64_t v) { put(w, &v, 8); }
static void put_str(qs_gguf_w *w, const char *s) {
    size_t n = strlen(s);
    put_u64(w, n);
    put(w, s, n);
}

static void key(qs_gguf_w *w, const char *k, uint32_t type) {
    put_str(w, k);
    put_u32(w, type);
    w->n_kv++;
}

void qs_gguf_w_str(qs_gguf_w *w, const char *k, const char *v) {
    key(w, k, QS_GGUF_STRING);
    put_str(w, v);
}
void qs_gguf_w_u32(qs_gguf_w *w, const char *k, uint32_t v) {
    key(w, k, QS_GGUF_U32);
    put_u32(w, v);
}
void qs_gguf_w_i32(qs_gguf_w *w, const char *k, int32_t v) {
    key(w, k, QS_GGUF_I32);
    put(w, &v, 4);
}
void qs_gguf_w_f32(qs_gguf_w *w, const char *k, float v) {
    key(w, k, QS_GGUF_F32);
    put(w, &v, 4);
}
void qs_gguf_w_bool(qs_gguf_w *w, const char *k, int v) {
    uint8_t b = v != 0;
    key(w, k, QS_GGUF_BOOL);
    put(w, &b, 1);
}
void qs_gguf_w_strs(qs_gguf_w *w, const char *k, size_t n, const char *const *v) {
    key(w, k, QS_GGUF_ARRAY);
    put_u32(w, QS_GGUF_STRING);
    put_u64(w, n);
    for (size_t i = 0; i < n; i++) put_str(w, v[i] ? v[i] : "");
}
void qs_gguf_w_f32s(qs_gguf_w *w, const char *k, size_t n, const float *v) {
    key(w, k, QS_GGUF_ARRAY);
    put_u32(w, QS_GGUF_F32);
    put_u64(w, n);
    put(w, v, n * 4);
}
void qs_gguf_w_i32s(qs_gguf_w *w, const char *k, size_t n, const int32_t *v) {
    key(w, k, QS_GGUF_ARRAY);
    put_u32(w, QS_GGUF_I32);
    put_u64(w, n);
    put(w, v, n * 4);
}

qs_status qs_gguf_w_tensor(qs_gguf_w *w, const char *name, int n_dims, const int64_t *shape, uint32_t type,
                           const void *data, size_t nbytes) {
    if (n_dims < 1 || n_dims > 4) return qs_fail(QS_EARG, "gguf writer: '%s' has %d dimensions (1 to 4)", name, n_dims);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return qs_fail(QS_ENOMEM, "gguf writer: out of memory");
        w->t = nt;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = malloc(nbytes ? nbytes : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return qs_fail(QS_ENOMEM, "gguf writer: out of memory for '%s'", name);
    }
    memcpy(t->data, data, nbytes);
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->ne[i] = (uint64_t)shape[n_dims - 1 - i]; /* row-major -> GGUF */
    t->type = type;
    t->nbytes = nbytes;
    w->n_t++;
    return QS_OK;
}

static size_t pad(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

qs_status qs_gguf_w_write(qs_gguf_w *w, const char *path) {
    if (w->oom) return qs_fail(QS_ENOMEM, "gguf writer: out of memory");
    /* header and infos into a second buffer, then the data */
    qs_gguf_w h = {0};
    put(&h, "GGUF", 4);
    put_u32(&h, 3);
    put_u64(&h, w->n_t);
    put_u64(&h, w->n_kv);
    put(&h, w->kv, w->kv_len);
    size_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&h, t->name);
        put_u32(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(&h, t->ne[d]);
        put_u32(&h, t->type);
        put_u64(&h, off);
        off += pad(t->nbytes);
    }
    size_t head = pad(h.kv_len), total = head + off;
    uint8_t *buf = h.oom ? NULL : calloc(1, total ? total : 1);
    if (!buf) {
        free(h.kv);
        return qs_fail(QS_ENOMEM, "gguf writer: out of memory for %zu bytes", total);
    }
    memcpy(buf, h.kv, h.kv_len);
    free(h.kv);
    off = head;
    for (size_t i = 0; i < w->n_t; i++) {
        memcpy(buf + off, w->t[i].data, w->t[i].nbytes);
        off += pad(w->t[i].nbytes);
    }
    qs_status st = qs_io_write_atomic(path, buf, total);
    free(buf);
    return st;
}
