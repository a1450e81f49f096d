/* st_write.c — a streaming safetensors writer. The header must hold every
 * tensor's byte range before the first data byte, so the tensors are
 * declared first (name, dtype, shape); the data then follows one tensor at a
 * time in declaration order, through qs_wfile (temporary name, rename on
 * commit). Nothing but the header is held in memory, so a model of any size
 * is written with one tensor's bytes in hand at a time. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "read/read.h"

typedef struct {
    char *name;
    qs_st_dtype dtype;
    int n_dims;
    int64_t shape[QS_ST_MAX_DIMS];
    uint64_t nbytes;
} decl;

struct qs_st_w {
    decl *t;
    size_t n, cap;
    size_t cur;        /* the tensor being written */
    uint64_t cur_done; /* its bytes written so far */
    qs_wfile *f;       /* open between begin and commit */
    char path[1024];
};

qs_st_w *qs_st_w_new(void) { return calloc(1, sizeof(qs_st_w)); }

void qs_st_w_free(qs_st_w *w) {
    if (!w) return;
    if (w->f) qs_wfile_abort(w->f);
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

qs_status qs_st_w_add(qs_st_w *w, const char *name, qs_st_dtype dtype, int n_dims, const int64_t *shape) {
    if (w->f) return qs_fail(QS_EARG, "safetensors writer: '%s' declared after the data began", name);
    if (n_dims < 0 || n_dims > QS_ST_MAX_DIMS || dtype < 0 || dtype >= QS_ST_N_DTYPES)
        return qs_fail(QS_EARG, "safetensors writer: '%s' has %d dimensions or an unknown dtype", name, n_dims);
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name)) return qs_fail(QS_EARG, "safetensors writer: '%s' declared twice", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        decl *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return qs_fail(QS_ENOMEM, "safetensors writer: out of memory");
        w->t = nt;
        w->cap = cap;
    }
    decl *d = &w->t[w->n];
    memset(d, 0, sizeof *d);
    if (!(d->name = strdup(name))) return qs_fail(QS_ENOMEM, "safetensors writer: out of memory");
    d->dtype = dtype;
    d->n_dims = n_dims;
    uint64_t numel = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0 || shape[i] > ((int64_t)1 << 40)) {
            free(d->name);
            return qs_fail(QS_EARG, "safetensors writer: '%s' has dimension %lld", name, (long long)shape[i]);
        }
        d->shape[i] = shape[i];
        numel *= (uint64_t)shape[i];
    }
    d->nbytes = numel * qs_st_dtype_size(dtype);
    w->n++;
    return QS_OK;
}

uint64_t qs_st_w_total(const qs_st_w *w) {
    uint64_t s = 0;
    for (size_t i = 0; i < w->n; i++) s += w->t[i].nbytes;
    return s;
}

/* The JSON header, padded with spaces to a multiple of 8 so the data that
 * follows the 8-byte length starts 8-aligned (readers borrow F32 in place). */
static char *header_json(const qs_st_w *w, size_t *len) {
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    if (!meta || !cJSON_AddStringToObject(meta, "format", "pt")) goto oom;
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const decl *d = &w->t[i];
        cJSON *e = cJSON_AddObjectToObject(root, d->name), *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL,
              *offs = NULL;
        if (!shape || !cJSON_AddStringToObject(e, "dtype", qs_st_dtype_str(d->dtype))) goto oom;
        for (int k = 0; k < d->n_dims; k++)
            if (!cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)d->shape[k]))) goto oom;
        if (!(offs = cJSON_AddArrayToObject(e, "data_offsets")) ||
            !cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off)) ||
            !cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + d->nbytes))))
            goto oom;
        off += d->nbytes;
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return NULL;
    size_t n = strlen(text), padded = (n + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    if (!out) {
        free(text);
        return NULL;
    }
    memset(out + n, ' ', padded - n);
    out[padded] = 0;
    *len = padded;
    return out;
oom:
    cJSON_Delete(root);
    return NULL;
}

qs_status qs_st_w_begin(qs_st_w *w, const char *path) {
    if (w->f) return qs_fail(QS_EARG, "safetensors writer: %s already begun", w->path);
    size_t len = 0;
    char *json = header_json(w, &len);
    if (!json) return qs_fail(QS_ENOMEM, "%s: out of memory for the safetensors header", path);
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)len >> (8 * i));
    qs_status st = qs_wfile_open(path, &w->f);
    if (!st) st = qs_wfile_write(w->f, lenb, sizeof lenb);
    if (!st) st = qs_wfile_write(w->f, json, len);
    free(json);
    snprintf(w->path, sizeof w->path, "%s", path);
    w->cur = 0;
    w->cur_done = 0;
    return st;
}

qs_status qs_st_w_data(qs_st_w *w, const void *data, size_t n) {
    if (!w->f) return qs_fail(QS_EARG, "safetensors writer: data before begin");
    if (w->cur >= w->n || w->cur_done + n > w->t[w->cur].nbytes)
        return qs_fail(QS_EARG, "%s: more data than tensor '%s' holds", w->path,
                       w->cur < w->n ? w->t[w->cur].name : "(past the last)");
    qs_status st = n ? qs_wfile_write(w->f, data, n) : QS_OK;
    if (st) return st;
    w->cur_done += n;
    while (w->cur < w->n && w->cur_done == w->t[w->cur].nbytes) { /* next tensor (empty ones skip by) */
        w->cur++;
        w->cur_done = 0;
    }
    return QS_OK;
}

qs_status qs_st_w_commit(qs_st_w *w) {
    if (!w->f) return qs_fail(QS_EARG, "safetensors writer: commit before begin");
    while (w->cur < w->n && w->t[w->cur].nbytes == 0) w->cur++;
    if (w->cur < w->n) {
        qs_fail(QS_EARG, "%s: tensor '%s' got %llu of its %llu bytes", w->path, w->t[w->cur].name,
                (unsigned long long)w->cur_done, (unsigned long long)w->t[w->cur].nbytes);
        qs_wfile_abort(w->f);
        w->f = NULL;
        return QS_EARG;
    }
    qs_status st = qs_wfile_commit(w->f);
    w->f = NULL;
    return st;
}
