#include "stats/stats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/model.h"

void qs_calib_free(qs_calib *c) {
    if (!c) return;
    free(c->ids);
    c->ids = NULL;
    c->n_rows = c->ctx = 0;
}

qs_status qs_calib_from_text(const qs_tok *t, const char *text, size_t len, int ctx, int windows,
                             qs_calib *out) {
    memset(out, 0, sizeof *out);
    if (ctx < 2 || windows < 1)
        return qs_fail(QS_EARG, "calibration needs windows >= 1 of >= 2 tokens (got %d of %d)", windows, ctx);
    int32_t *ids;
    size_t n;
    qs_status st = qs_tok_encode(t, text, len, 1, &ids, &n);
    if (st) return st;
    long avail = (long)(n / (size_t)ctx);
    if (avail < 1) {
        free(ids);
        return qs_fail(QS_EARG, "calibration text has %zu tokens, fewer than one window of %d", n, ctx);
    }
    if (avail < windows) {
        qs_log(QS_LOG_WARN, "calibration text has %zu tokens: %ld windows of %d instead of %d", n, avail, ctx,
               windows);
        windows = (int)avail;
    }
    out->ids = ids; /* the first windows*ctx ids are the rows */
    out->n_rows = windows;
    out->ctx = ctx;
    snprintf(out->source, sizeof out->source, "%d windows of %d tokens", windows, ctx);
    return QS_OK;
}

qs_status qs_calib_from_offsets(const qs_tok *t, const char *text, size_t len, int ctx,
                                const long *offsets, int n_offsets, qs_calib *out) {
    memset(out, 0, sizeof *out);
    if (ctx < 2 || n_offsets < 1) return qs_fail(QS_EARG, "calibration needs offsets and a context >= 2");
    int32_t *ids;
    size_t n;
    qs_status st = qs_tok_encode(t, text, len, 1, &ids, &n);
    if (st) return st;
    int32_t *rows = malloc((size_t)n_offsets * ctx * sizeof *rows);
    if (!rows) {
        free(ids);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n_offsets; i++) {
        if (offsets[i] < 0 || (size_t)offsets[i] + (size_t)ctx > n) {
            free(ids);
            free(rows);
            return qs_fail(QS_EARG, "calibration offset %ld (entry %d) plus %d tokens runs past the text's %zu tokens",
                           offsets[i], i + 1, ctx, n);
        }
        memcpy(rows + (size_t)i * ctx, ids + offsets[i], (size_t)ctx * sizeof *rows);
    }
    free(ids);
    out->ids = rows;
    out->n_rows = n_offsets;
    out->ctx = ctx;
    snprintf(out->source, sizeof out->source, "%d windows of %d tokens at given offsets", n_offsets, ctx);
    return QS_OK;
}

qs_status qs_calib_from_ids_file(const char *path, int ctx, int vocab, qs_calib *out) {
    memset(out, 0, sizeof *out);
    char *raw;
    size_t len;
    qs_status st = qs_io_read_all(path, &raw, &len);
    if (st) return st;
    size_t n = len / 4;
    if (len % 4 || n == 0) {
        free(raw);
        return qs_fail(QS_EFORMAT, "%s: %zu bytes is not a whole number of int32 ids", path, len);
    }
    if (ctx <= 0) ctx = (int)n;
    if (n % (size_t)ctx) {
        free(raw);
        return qs_fail(QS_EFORMAT, "%s: %zu ids do not form rows of %d (the calibration context)", path, n, ctx);
    }
    int32_t *ids = malloc(n * sizeof *ids);
    if (!ids) {
        free(raw);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    const uint8_t *b = (const uint8_t *)raw;
    for (size_t i = 0; i < n; i++) {
        ids[i] = (int32_t)((uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
                           (uint32_t)b[4 * i + 3] << 24);
        if (vocab > 0 && (ids[i] < 0 || ids[i] >= vocab)) {
            qs_status e = qs_fail(QS_EFORMAT, "%s: id %d at index %zu is outside the vocabulary (%d)", path,
                                  ids[i], i, vocab);
            free(raw);
            free(ids);
            return e;
        }
    }
    free(raw);
    out->ids = ids;
    out->n_rows = (int)(n / (size_t)ctx);
    out->ctx = ctx;
    snprintf(out->source, sizeof out->source, "%d rows of %d ids from %.200s", out->n_rows, ctx, path);
    return QS_OK;
}

qs_status qs_calib_read_offsets(const char *path, long **offsets, int *n) {
    *offsets = NULL;
    *n = 0;
    char *text;
    qs_status st = qs_io_read_all(path, &text, NULL);
    if (st) return st;
    long *v = NULL;
    int cnt = 0, cap = 0, line = 0;
    for (char *p = text; *p;) {
        char *eol = strchr(p, '\n');
        if (eol) *eol = 0;
        line++;
        char *s = p;
        while (*s == ' ' || *s == '\t' || *s == '\r') s++;
        if (*s && *s != '#') {
            char *end;
            errno = 0;
            long x = strtol(s, &end, 10);
            while (*end == ' ' || *end == '\t' || *end == '\r') end++;
            if (errno || end == s || *end || x < 0) {
                /* the message quotes the text: format it before the text is freed */
                qs_status e = qs_fail(QS_EFORMAT, "%s: line %d: expected a token offset, got '%.40s'", path, line, s);
                free(v);
                free(text);
                return e;
            }
            if (cnt == cap) {
                cap = cap ? 2 * cap : 64;
                long *nv = realloc(v, (size_t)cap * sizeof *nv);
                if (!nv) {
                    free(v);
                    free(text);
                    return qs_fail(QS_ENOMEM, "out of memory");
                }
                v = nv;
            }
            v[cnt++] = x;
        }
        if (!eol) break;
        p = eol + 1;
    }
    free(text);
    if (!cnt) {
        free(v);
        return qs_fail(QS_EFORMAT, "%s: no offsets", path);
    }
    *offsets = v;
    *n = cnt;
    return QS_OK;
}

qs_calib_opts qs_calib_opts_defaults(void) {
    return (qs_calib_opts){.windows = QS_CALIB_WINDOWS};
}

int qs_calib_opts_ctx(const qs_model *m, const qs_calib_opts *o) {
    if (o->ctx) return o->ctx;
    return m->cfg.max_pos < QS_CALIB_CTX ? m->cfg.max_pos : QS_CALIB_CTX;
}

qs_status qs_calib_load(const qs_model *m, const qs_calib_opts *o, qs_calib *out) {
    memset(out, 0, sizeof *out);
    int ctx = qs_calib_opts_ctx(m, o);
    if (ctx > m->cfg.max_pos)
        return qs_fail(QS_EARG, "calibration context %d is longer than %s allows (%d positions)", ctx, m->path,
                       m->cfg.max_pos);
    if (o->ids_file) return qs_calib_from_ids_file(o->ids_file, ctx, m->cfg.vocab, out);
    char path[1100];
    const char *file = o->file;
    if (!o->text && !file) {
        if (!qs_model_file_beside(m, "calib.txt", path, sizeof path))
            return qs_fail(QS_EIO, "%s: calibration text needed and there is no calib.txt beside the model%s%s",
                           m->path, o->how_text ? ": give " : "", o->how_text ? o->how_text : "");
        file = path;
    }
    const char *name = file ? file : "text";
    if (!m->tok)
        return qs_fail(QS_EARG, "%s: the model has no tokenizer to read %s%s%s%s", m->path, name,
                       o->how_ids ? " (use " : "", o->how_ids ? o->how_ids : "", o->how_ids ? ")" : "");
    char *buf = NULL;
    const char *text = o->text;
    size_t len = o->text_len;
    if (file) {
        qs_status st = qs_io_read_all(file, &buf, &len);
        if (st) return st;
        text = buf;
    }
    qs_status st = QS_OK;
    long *offs = NULL;
    const long *use = o->offsets;
    int n = o->n_offsets;
    if (!use && o->offsets_file && (st = qs_calib_read_offsets(o->offsets_file, &offs, &n)) == QS_OK) use = offs;
    if (!st)
        st = use ? qs_calib_from_offsets(m->tok, text, len, ctx, use, n, out)
                 : qs_calib_from_text(m->tok, text, len, ctx, o->windows, out);
    free(offs);
    free(buf);
    if (st) return qs_fail_prefix(st, "%s", name);
    /* the file too: a result records where its calibration came from */
    if (file) {
        size_t k = strlen(out->source);
        snprintf(out->source + k, sizeof out->source - k, " of %.200s", file);
    }
    /* what a pass over it holds: the widest activations of a window, a few times */
    qs_log(QS_LOG_INFO, "calibration: %s; a pass holds about %.0f MB of activations", out->source,
           8.0 * out->ctx * (m->cfg.d_ff > m->cfg.d_model ? m->cfg.d_ff : m->cfg.d_model) * 4 / 1e6);
    return QS_OK;
}
