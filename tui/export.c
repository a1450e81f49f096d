/* Export (key e): the Compare table as Markdown and JSON, and the Log as
 * text, into files of the current directory. A file is written whole under
 * a temporary name in the same directory and renamed over the old one, so a
 * reader (or a crash) never sees half a table, and an existing file is only
 * ever replaced by the rename. The JSON uses the field names of
 * `qscope compare --json`. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tui.h"

#ifndef QS_VERSION
#define QS_VERSION "0.0.0"
#endif

int tui_export_write(const char *path, const char *data, size_t len, char *err, size_t cap) {
    if (qs_io_write_atomic(path, data, len) == QS_OK) return 0;
    snprintf(err, cap, "%s", qs_last_error());
    return -1;
}

/* the directory the files go to, said in full */
static void where(const char *name, char *buf, size_t cap) {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd)) snprintf(buf, cap, "%s/%s", strcmp(cwd, "/") ? cwd : "", name);
    else tui_copy(buf, cap, name);
}

/* A growing text buffer; on out of memory it stops growing and says so. */
typedef struct {
    char *b;
    size_t n, cap;
    int oom;
} text_buf;

static void tb_add(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_add(text_buf *t, const char *fmt, ...) {
    if (t->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(t->b ? t->b + t->n : NULL, t->b ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            t->oom = 1;
            return;
        }
        if (t->b && t->n + (size_t)w < t->cap) {
            t->n += (size_t)w;
            return;
        }
        size_t cap = (t->cap + (size_t)w + 1) * 2;
        char *nb = realloc(t->b, cap);
        if (!nb) {
            t->oom = 1;
            return;
        }
        t->b = nb;
        t->cap = cap;
    }
}

/* The measured rows' reference: fp32 measured the same way (all the text or the quick windows). */
static double base_ppl(const tui_state *s, const tui_row *r) {
    const tui_row *b = tui_state_base_row_full(s, r->full);
    return b && b->status == 1 ? b->ppl : NAN;
}

static char *compare_json(const tui_state *s) {
    const tui_data *d = s->data_ready ? s->data : NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "qscope_version", QS_VERSION);
    cJSON_AddStringToObject(root, "model", s->m->path);
    if (d && d->eval_ids) {
        cJSON_AddStringToObject(root, "data", d->eval_path);
        cJSON_AddNumberToObject(root, "text_tokens", (double)d->n_eval);
    } else {
        cJSON_AddNullToObject(root, "data");
        cJSON_AddNullToObject(root, "text_tokens");
    }
    cJSON_AddNumberToObject(root, "ctx", d ? d->ctx : 0);
    const tui_row *b = tui_state_base_row(s);
    cJSON_AddNumberToObject(root, "windows", b && b->status == 1 ? b->windows : 0);
    /* quick rows are measured on the first windows, (all) rows on every one */
    cJSON_AddNumberToObject(root, "max_windows", TUI_QUICK_WINDOWS);
    cJSON_AddNumberToObject(root, "stride", 0);
    if (d && d->have_cal) cJSON_AddStringToObject(root, "calibration", d->calib_path);
    else cJSON_AddNullToObject(root, "calibration");
    cJSON *arr = cJSON_AddArrayToObject(root, "variants");
    for (int i = 0; i < s->n_rows; i++) {
        const tui_row *r = &s->rows[i];
        if (r->status == 0) continue; /* still running: nothing to say yet */
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "variant", r->spec);
        if (r->status < 0) {
            cJSON_AddStringToObject(o, "error", r->err);
        } else {
            cJSON_AddStringToObject(o, "description", r->desc);
            if (isnan(r->ppl)) {
                cJSON_AddNullToObject(o, "ppl");
                cJSON_AddNullToObject(o, "delta_ppl");
            } else {
                cJSON_AddNumberToObject(o, "ppl", r->ppl);
                double bp = base_ppl(s, r);
                if (isnan(bp)) cJSON_AddNullToObject(o, "delta_ppl");
                else cJSON_AddNumberToObject(o, "delta_ppl", r->ppl - bp);
            }
            cJSON_AddNumberToObject(o, "windows", r->windows);
            cJSON_AddNumberToObject(o, "ctx", d ? d->ctx : 0);
            cJSON_AddNumberToObject(o, "weight_bytes", (double)r->wbytes);
            cJSON_AddNumberToObject(o, "kv_bytes_per_token", (double)r->kvbytes);
            cJSON_AddNumberToObject(o, "params", (double)r->params);
            cJSON_AddNumberToObject(o, "tokens_per_second", r->tok_s);
        }
        cJSON_AddItemToArray(arr, o);
    }
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    return txt;
}

static void compare_markdown(const tui_state *s, text_buf *t) {
    /* the columns of `qscope compare --markdown` */
    tb_add(t, "| variant | ppl | \xce\x94ppl | weight MB | KV bytes/token | params | tokens/s |\n"
              "|---|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < s->n_rows; i++) {
        const tui_row *r = &s->rows[i];
        const char *all = r->full ? " (all)" : "";
        if (r->status == 0) continue;
        if (r->status < 0) {
            tb_add(t, "| `%s`%s | error: %s | | | | | |\n", r->spec, all, r->err);
            continue;
        }
        char ppl[32] = "-", dppl[32] = "-";
        if (!isnan(r->ppl)) {
            snprintf(ppl, sizeof ppl, "%.3f", r->ppl);
            double bp = base_ppl(s, r);
            if (!isnan(bp)) snprintf(dppl, sizeof dppl, "%+.3f", r->ppl - bp);
        }
        tb_add(t, "| `%s`%s | %s | %s | %.2f | %lld | %lld | %.0f |\n", r->spec, all, ppl, dppl, r->wbytes / 1e6, r->kvbytes,
               r->params, r->tok_s);
    }
}

int tui_export_compare(const tui_state *s, char *msg, size_t cap) {
    static const char *const md_name = "qscope-compare.md", *const js_name = "qscope-compare.json";
    text_buf t = {0};
    compare_markdown(s, &t);
    char *js = compare_json(s);
    char err[600];
    int rc = 0;
    if (t.oom || !js) {
        snprintf(msg, cap, "export: out of memory");
        rc = -1;
    } else if (tui_export_write(md_name, t.b, t.n, err, sizeof err) ||
               tui_export_write(js_name, js, strlen(js), err, sizeof err)) {
        snprintf(msg, cap, "export: %s", err);
        rc = -1;
    } else {
        char path[PATH_MAX + 64];
        where(md_name, path, sizeof path);
        snprintf(msg, cap, "wrote %s and %s (%d rows)", path, js_name, s->n_rows);
    }
    free(t.b);
    free(js);
    return rc;
}

int tui_export_log(const tui_state *s, char *msg, size_t cap) {
    static const char *const name = "qscope-log.txt";
    text_buf t = {0};
    long n = s->log_n < TUI_LOG_LINES ? s->log_n : TUI_LOG_LINES;
    for (long back = n - 1; back >= 0; back--) {
        const tui_logline *l = tui_state_log_line(s, back);
        if (l) tb_add(&t, "%s\n", l->text);
    }
    if (!t.b) tb_add(&t, "%s", "");
    char err[600];
    int rc = 0;
    if (t.oom) {
        snprintf(msg, cap, "export: out of memory");
        rc = -1;
    } else if (tui_export_write(name, t.b, t.n, err, sizeof err)) {
        snprintf(msg, cap, "export: %s", err);
        rc = -1;
    } else {
        char path[PATH_MAX + 64];
        where(name, path, sizeof path);
        snprintf(msg, cap, "wrote %s (%ld lines)", path, n);
    }
    free(t.b);
    return rc;
}
