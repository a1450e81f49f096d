/* gguf_write.c — a GGUF v3 writer: metadata and tensor infos gathered in
 * memory, then the file streamed under a temporary name and renamed into
 * place. A tensor's bytes are copied when added, or made by a callback as
 * the file is written (one tensor in memory at a time). The layout is the
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
    void *data;           /* a copy, or NULL when fill makes the bytes */
    qs_gguf_w_fill fill;
    void *fill_ud;
    size_t nbytes;
} wtensor;

struct qs_gguf_w {
    uint8_t *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    wtensor *t;
    size_t n_t, cap_t;
    int oom;
    qs_progress_fn progress;
    void *progress_ud;
};

void qs_gguf_w_progress(qs_gguf_w *w, qs_progress_fn fn, void *ud) {
    w->progress = fn;
    w->progress_ud = ud;
}

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

static qs_status add_tensor(qs_gguf_w *w, const char *name, int n_dims, const int64_t *shape, uint32_t type,
                            size_t nbytes, wtensor **out) {
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
    if (!(t->name = strdup(name))) return qs_fail(QS_ENOMEM, "gguf writer: out of memory for '%s'", name);
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->ne[i] = (uint64_t)shape[n_dims - 1 - i]; /* row-major -> GGUF */
    t->type = type;
    t->nbytes = nbytes;
    w->n_t++;
    *out = t;
    return QS_OK;
}

qs_status qs_gguf_w_tensor(qs_gguf_w *w, const char *name, int n_dims, const int64_t *shape, uint32_t type,
                           const void *data, size_t nbytes) {
    void *copy = malloc(nbytes ? nbytes : 1);
    if (!copy) return qs_fail(QS_ENOMEM, "gguf writer: out of memory for '%s'", name);
    memcpy(copy, data, nbytes);
    wtensor *t = NULL;
    qs_status st = add_tensor(w, name, n_dims, shape, type, nbytes, &t);
    if (st) free(copy);
    else t->data = copy;
    return st;
}

qs_status qs_gguf_w_tensor_fn(qs_gguf_w *w, const char *name, int n_dims, const int64_t *shape, uint32_t type,
                              size_t nbytes, qs_gguf_w_fill fill, void *ud) {
    wtensor *t = NULL;
    qs_status st = add_tensor(w, name, n_dims, shape, type, nbytes, &t);
    if (!st) {
        t->fill = fill;
        t->fill_ud = ud;
    }
    return st;
}

static size_t pad(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

qs_status qs_gguf_w_write(qs_gguf_w *w, const char *path) {
    if (w->oom) return qs_fail(QS_ENOMEM, "gguf writer: out of memory");
    /* header, key/values and tensor infos, then each tensor's bytes */
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
    size_t head = pad(h.kv_len), total = head + off, done = head;
    static const uint8_t zeros[ALIGN];
    qs_wfile *f = NULL;
    qs_status st = h.oom ? qs_fail(QS_ENOMEM, "gguf writer: out of memory") : qs_wfile_open(path, &f);
    if (!st && !(st = qs_wfile_write(f, h.kv, h.kv_len))) st = qs_wfile_write(f, zeros, head - h.kv_len);
    free(h.kv);
    for (size_t i = 0; i < w->n_t && !st; i++) {
        wtensor *t = &w->t[i];
        void *buf = t->data;
        if (!buf) {
            if (!(buf = malloc(t->nbytes ? t->nbytes : 1))) {
                st = qs_fail(QS_ENOMEM, "gguf writer: out of memory for '%s' (%zu bytes)", t->name, t->nbytes);
                break;
            }
            st = t->fill(t->fill_ud, buf, t->nbytes);
        }
        if (!st && !(st = qs_wfile_write(f, buf, t->nbytes))) st = qs_wfile_write(f, zeros, pad(t->nbytes) - t->nbytes);
        if (buf != t->data) free(buf);
        done += pad(t->nbytes);
        if (!st && w->progress && w->progress(w->progress_ud, (long)(done >> 10), (long)(total >> 10)))
            st = qs_fail(QS_ECANCEL, "%s: cancelled; nothing was written", path);
    }
    if (st) {
        qs_wfile_abort(f);
        return st;
    }
    return qs_wfile_commit(f);
}
