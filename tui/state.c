/* The workbench's state: the knobs, the compare table, the log, and what a
 * change of the knobs sets off. Changed only on the UI thread. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/run.h"
#include "base/base.h"
#include "methods/methods.h"
#include "tui.h"

const int tui_channel_sites[] = {QS_SITE_ATTN_IN, QS_SITE_Q,      QS_SITE_K,       QS_SITE_V,
                                 QS_SITE_ATTN_OUT, QS_SITE_MLP_IN, QS_SITE_MLP_MID, QS_SITE_RESID};
const int tui_n_channel_sites = sizeof tui_channel_sites / sizeof tui_channel_sites[0];
const int tui_outlier_sites[] = {-1,          QS_SITE_ATTN_IN, QS_SITE_Q,       QS_SITE_K,         QS_SITE_V,
                                 QS_SITE_ATTN_OUT, QS_SITE_MLP_IN, QS_SITE_MLP_MID, QS_SITE_HEAD_IN, QS_SITE_RESID,
                                 QS_SITE_RESID_MID, QS_SITE_EMBED};
const int tui_n_outlier_sites = sizeof tui_outlier_sites / sizeof tui_outlier_sites[0];

int tui_state_ol_rows(const tui_state *s) {
    int L = s->m->cfg.n_layers;
    if (s->ol_site < 0) return 2 * L;
    return s->ol_site == QS_SITE_HEAD_IN || s->ol_site == QS_SITE_EMBED ? 1 : L;
}

void tui_state_ol_row(const tui_state *s, int r, int *layer, int *site) {
    if (s->ol_site < 0) {
        *layer = r / 2;
        *site = r % 2 ? QS_SITE_MLP_IN : QS_SITE_ATTN_IN;
    } else {
        /* head_in is recorded as the row after the last block, embed as layer 0 */
        *layer = s->ol_site == QS_SITE_HEAD_IN ? s->m->cfg.n_layers : s->ol_site == QS_SITE_EMBED ? 0 : r;
        *site = s->ol_site;
    }
}

/* ---- knobs ---- */

static const int bit_steps[] = {2, 3, 4, 5, 6, 8, 16};
enum { N_BIT_STEPS = sizeof bit_steps / sizeof bit_steps[0] };
/* The knobs and the method keys they set. The methods the panel steps
 * through are those of the core's method table with knob keys (qs_method_key
 * .knob > 0), in its order; a knob applies to a method that has its key. */
static const struct {
    const char *name;
    const char *key; /* the method key it sets */
    int always;      /* shown whatever the method: g colours the Channels view, tau marks outliers */
} knob_table[TUI_K_COUNT] = {
    [TUI_K_METHOD] = {"method", NULL, 1},
    [TUI_K_G] = {"g", "g", 1},
    [TUI_K_TAU] = {"tau", "threshold", 1},
    [TUI_K_RATIO] = {"slice", "ratio", 0},
    [TUI_K_WBITS] = {"W bits", "w", 0},
    [TUI_K_ABITS] = {"A bits", "a", 0},
    [TUI_K_KVBITS] = {"KV bits", "kv", 0},
};

/* The knob key of method d named `key`, or NULL. */
static const qs_method_key *knob_key(const qs_method_def *d, const char *key) {
    for (int i = 0; d && key && i < d->n_keys; i++)
        if (d->keys[i].knob > 0 && !strcmp(d->keys[i].name, key)) return &d->keys[i];
    return NULL;
}

static int has_knobs(const qs_method_def *d) {
    for (int i = 0; i < d->n_keys; i++)
        if (d->keys[i].knob > 0) return 1;
    return 0;
}

static double knob_number(const tui_knobs *k, int which) {
    switch (which) {
    case TUI_K_G: return k->g;
    case TUI_K_TAU: return k->tau;
    case TUI_K_RATIO: return k->ratio;
    case TUI_K_WBITS: return k->w_bits;
    case TUI_K_ABITS: return k->a_bits;
    case TUI_K_KVBITS: return k->kv_bits;
    }
    return 0;
}

static int step_bits(int b, int dir) {
    int i = 0;
    while (i < N_BIT_STEPS - 1 && bit_steps[i] < b) i++;
    i += dir;
    if (i < 0) i = 0;
    if (i >= N_BIT_STEPS) i = N_BIT_STEPS - 1;
    return bit_steps[i];
}

/* method:key=value for the method's knob keys, in the table's key order: the
 * first always, the others when they differ from their default (a bits key
 * whose default is 0 means "as a": written when it differs from a). */
void tui_knobs_spec(const tui_knobs *k, char *buf, size_t cap) {
    const qs_method_def *d = qs_method_of(k->method);
    size_t n = (size_t)snprintf(buf, cap, "%s", d ? d->name : "fp32");
    char sep = ':';
    for (int i = 0; d && i < d->n_keys && n < cap; i++) {
        const qs_method_key *key = &d->keys[i];
        int which = -1;
        for (int j = 1; j < TUI_K_COUNT && which < 0; j++)
            if (knob_table[j].key && !strcmp(knob_table[j].key, key->name) && key->knob > 0) which = j;
        if (which < 0) continue;
        double v = knob_number(k, which);
        double def = key->kind == QS_KEY_BITS && key->def == 0 ? k->a_bits : key->def;
        if (sep == ',' && v == def) continue;
        n += (size_t)snprintf(buf + n, cap - n, "%c%s=%g", sep, key->name, v);
        sep = ',';
    }
}

int tui_knobs_step(tui_knobs *k, int which, int dir) {
    tui_knobs old = *k;
    switch (which) {
    case TUI_K_METHOD: { /* the next method of the table with knob keys */
        int n = qs_method_count(), i = 0;
        while (i < n && qs_method_at(i)->id != (qs_method)k->method) i++;
        for (int step = 0; step < n; step++) {
            i = ((i + dir) % n + n) % n;
            if (has_knobs(qs_method_at(i))) break;
        }
        k->method = qs_method_at(i)->id;
        break;
    }
    case TUI_K_G: k->g = k->g + dir < 1 ? 1 : k->g + dir > 64 ? 64 : k->g + dir; break;
    case TUI_K_TAU: {
        /* 0 turns LLM.int8()'s decomposition off (int8:threshold=0): no column stays in fp32 */
        float t = k->tau + 0.5f * dir;
        k->tau = t < 0.25f ? 0 : t > 20 ? 20 : t;
        break;
    }
    case TUI_K_RATIO: {
        /* in hundredths, so repeated steps stay exact */
        int r = (int)lroundf(k->ratio * 100) + 5 * dir;
        r = r < 5 ? 5 : r > 90 ? 90 : r;
        k->ratio = r / 100.0f;
        break;
    }
    case TUI_K_WBITS: k->w_bits = step_bits(k->w_bits, dir); break;
    case TUI_K_ABITS: k->a_bits = step_bits(k->a_bits, dir); break;
    case TUI_K_KVBITS: k->kv_bits = step_bits(k->kv_bits, dir); break;
    default: return 0;
    }
    return memcmp(&old, k, sizeof old) != 0;
}

void tui_knobs_value(const tui_knobs *k, int which, char *buf, size_t cap) {
    switch (which) {
    case TUI_K_METHOD: snprintf(buf, cap, "%s", qs_method_name(k->method)); break;
    case TUI_K_G: snprintf(buf, cap, "%d", k->g); break;
    case TUI_K_TAU: snprintf(buf, cap, k->tau > 0 ? "%.1f" : "0 (off)", k->tau); break;
    case TUI_K_RATIO: snprintf(buf, cap, "%.2f", k->ratio); break;
    case TUI_K_WBITS: snprintf(buf, cap, k->w_bits >= 16 ? "16 (off)" : "%d", k->w_bits); break;
    case TUI_K_ABITS: snprintf(buf, cap, k->a_bits >= 16 ? "16 (off)" : "%d", k->a_bits); break;
    case TUI_K_KVBITS: snprintf(buf, cap, k->kv_bits >= 16 ? "16 (off)" : "%d", k->kv_bits); break;
    default: buf[0] = 0;
    }
}

const char *tui_knobs_name(int which, int utf8) {
    if (which == TUI_K_TAU && utf8) return "\xcf\x84 (tau)";
    return (unsigned)which < TUI_K_COUNT ? knob_table[which].name : "?";
}

int tui_knobs_used(const tui_knobs *k, int which) {
    if ((unsigned)which >= TUI_K_COUNT) return 0;
    return knob_table[which].always || knob_key(qs_method_of(k->method), knob_table[which].key) != NULL;
}

/* ---- state ---- */

void tui_copy(char *dst, size_t cap, const char *src) {
    if (!cap) return;
    size_t n = src ? strnlen(src, cap - 1) : 0;
    if (n) memcpy(dst, src, n);
    dst[n] = 0;
}

void tui_state_init(tui_state *s, const qs_model *m) {
    memset(s, 0, sizeof *s);
    s->m = m;
    const char *slash = strrchr(m->path, '/');
    const char *name = slash && slash[1] ? slash + 1 : m->path;
    tui_copy(s->model_name, sizeof s->model_name, name);
    s->knobs = (tui_knobs){.method = QS_M_RTN, .g = 8, .tau = 6.0f, .ratio = 0.25f, .w_bits = 4, .a_bits = 16,
                           .kv_bits = 16};
    tui_knobs_spec(&s->knobs, s->spec, sizeof s->spec);
    s->log = calloc(TUI_LOG_LINES, sizeof *s->log);
    s->ch_site = QS_SITE_MLP_IN;
    s->ol_site = -1;
    s->ch_layer = m->cfg.n_layers > 3 ? 3 : 0;
    s->cl_layer = s->cl_site = s->cl_g = -1;
    s->cl_req_layer = s->cl_req_site = s->cl_req_g = -1;
    s->gen_opts = (tui_gen_opts){.n_tokens = 48, .temp = 0, .top_p = 1, .seed = 0};
    snprintf(s->prompt_text, sizeof s->prompt_text, "The kernel");
}

void tui_state_free(tui_state *s) {
    if (s->data) {
        if (s->tstats != s->data->stats) qs_stats_free(s->tstats);
        if (s->outl != s->data->outl) free(s->outl);
    }
    free(s->labels);
    free(s->retired); /* the data themselves are the caller's (tui_app_run frees them after the jobs) */
    tui_var_unref(s->cur);
    tui_spectrum_free(&s->spectrum);
    for (int i = 0; i < 2; i++) free(s->gen[i].text);
    tui_plot_clear(&s->plot);
    free(s->log);
    memset(s, 0, sizeof *s);
}

void tui_state_log(tui_state *s, int level, const char *fmt, ...) {
    char buf[4 * TUI_LOG_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* one Log line per text line */
    char *p = buf;
    for (;;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        if (s->log) {
            tui_logline *l = &s->log[s->log_n % TUI_LOG_LINES];
            l->level = level;
            tui_copy(l->text, sizeof l->text, p);
            s->log_n++;
            if (s->log_back) s->log_back++; /* keep a scrolled-back Log where it is */
        }
        if (!nl) break;
        p = nl + 1;
    }
    if (level != QS_LOG_DEBUG) {
        tui_copy(s->last_msg, sizeof s->last_msg, buf);
        for (char *c = s->last_msg; *c; c++)
            if (*c == '\n') *c = ' ';
        s->last_level = level;
    }
}

const tui_logline *tui_state_log_line(const tui_state *s, long back) {
    if (back < 0 || back >= s->log_n || back >= TUI_LOG_LINES) return NULL;
    return &s->log[(s->log_n - 1 - back) % TUI_LOG_LINES];
}

tui_row *tui_state_row(tui_state *s, const char *spec, int full) {
    for (int i = 0; i < s->n_rows; i++)
        if (!strcmp(s->rows[i].spec, spec) && s->rows[i].full == full) return &s->rows[i];
    if (s->n_rows == TUI_MAX_ROWS) {
        /* forget the oldest row after fp32 */
        memmove(&s->rows[1], &s->rows[2], (TUI_MAX_ROWS - 2) * sizeof s->rows[0]);
        s->n_rows--;
    }
    tui_row *r = &s->rows[s->n_rows++];
    memset(r, 0, sizeof *r);
    tui_copy(r->spec, sizeof r->spec, spec);
    r->full = full;
    r->ppl = NAN;
    return r;
}

void tui_state_measure(tui_state *s, const char *spec, int full) {
    tui_row *r = tui_state_row(s, spec, full);
    if (r) {
        if (r->status != 1) r->status = 0;
        r->err[0] = 0;
        r->pending++;
    }
    /* while other files are being calibrated, the variant waits for them (the same lane, after) */
    if (s->jobs) tui_work_variant(s->jobs, s->m, s->data_next ? s->data_next : s->data, spec, full);
}

tui_row *tui_state_row_reported(tui_state *s, const char *spec, int full, int cancelled) {
    tui_row *r = NULL;
    for (int i = 0; i < s->n_rows && !r; i++)
        if (!strcmp(s->rows[i].spec, spec) && s->rows[i].full == full) r = &s->rows[i];
    if (r && r->pending > 0) r->pending--;
    if (!cancelled) return r ? r : tui_state_row(s, spec, full);
    if (r && r->status == 0 && r->pending == 0) {
        /* nothing will fill it: it goes */
        int i = (int)(r - s->rows);
        memmove(&s->rows[i], &s->rows[i + 1], (size_t)(s->n_rows - i - 1) * sizeof *r);
        s->n_rows--;
        if (s->cmp_sel >= s->n_rows) s->cmp_sel = s->n_rows ? s->n_rows - 1 : 0;
        return NULL;
    }
    return r;
}

const tui_row *tui_state_base_row(const tui_state *s) { return tui_state_base_row_full(s, 0); }

const tui_row *tui_state_base_row_full(const tui_state *s, int full) {
    for (int i = 0; i < s->n_rows; i++)
        if (!strcmp(s->rows[i].spec, "fp32") && s->rows[i].full == full) return &s->rows[i];
    return NULL;
}

void tui_state_want_clusters(tui_state *s) {
    if (!s->data_ready || !s->data->stats || !s->jobs) return;
    int layer = s->ch_layer, site = s->ch_site, g = s->knobs.g;
    if (layer == s->cl_req_layer && site == s->cl_req_site && g == s->cl_req_g) return;
    s->cl_req_layer = layer;
    s->cl_req_site = site;
    s->cl_req_g = g;
    tui_work_clusters(s->jobs, s->data, layer, site, g);
}

void tui_state_want_spectrum(tui_state *s) {
    /* built when the Spectrum view is on screen: a slice variant costs a PCA per layer */
    if (!s->data_ready || !s->data->have_cov || !s->jobs || s->view != TUI_V_SPECTRUM) return;
    if (s->knobs.ratio == s->spectrum_req) return;
    s->spectrum_req = s->knobs.ratio;
    tui_work_spectrum(s->jobs, s->m, s->data, s->knobs.ratio);
}

void tui_state_retire(tui_state *s, tui_data *d) {
    if (!d) return;
    tui_data **r = realloc(s->retired, (size_t)(s->n_retired + 1) * sizeof *r);
    if (!r) return; /* kept nowhere: leaked rather than freed under a job */
    s->retired = r;
    s->retired[s->n_retired++] = d;
}

int tui_state_open(tui_state *s, int which, const char *path) {
    if (!path || !*path) return -1;
    if (!qs_io_exists(path) || qs_io_is_dir(path)) {
        tui_state_log(s, 3, "%s: no such file", path);
        return -1;
    }
    if (!s->jobs) return -1;
    tui_copy(s->open_path[which], sizeof s->open_path[which], path);
    if (which == 0) {
        s->src.calib.file = s->open_path[0];
        s->src.calib.ids_file = NULL;
    } else {
        s->src.data = s->open_path[1];
    }
    tui_data *d = calloc(1, sizeof *d);
    if (!d) return -1;
    /* nothing measured on the old data may land in the new table */
    tui_jobs_cancel_all(s->jobs); /* a calibration still on its way retires its data when it reports */
    s->data_next = d;
    tui_state_log(s, QS_LOG_INFO, "%s text: %s (calibrating again)", which ? "evaluation" : "calibration", path);
    tui_work_calibrate(s->jobs, s->m, d, &s->src);
    return 0;
}

void tui_state_adopt(tui_state *s, tui_data *d) {
    if (s->data == d) return;
    tui_data *old = s->data;
    if (old) {
        if (s->tstats != old->stats) qs_stats_free(s->tstats);
        if (s->outl != old->outl) free(s->outl);
    }
    s->tstats = NULL;
    s->tstats_tau = 0;
    s->outl = NULL;
    s->n_outl = 0;
    free(s->labels);
    s->labels = NULL;
    s->n_labels = s->n_clusters = 0;
    s->cl_layer = s->cl_site = s->cl_g = -1;
    s->cl_req_layer = s->cl_req_site = s->cl_req_g = -1;
    tui_spectrum_free(&s->spectrum);
    s->spectrum_req = 0;
    /* the rows were measured on the old texts */
    s->n_rows = 0;
    s->cmp_sel = 0;
    tui_var_unref(s->cur);
    s->cur = NULL;
    tui_state_retire(s, old);
    s->data = d;
    if (s->data_next == d) s->data_next = NULL;
}

void tui_state_retune(tui_state *s, int which) {
    if (!s->jobs) return;
    if (which < 0 || which == TUI_K_G) tui_state_want_clusters(s);
    if (which < 0 || which == TUI_K_RATIO) tui_state_want_spectrum(s);
    if ((which < 0 || which == TUI_K_TAU) && s->data_ready && s->data->stats && s->knobs.tau > 0) {
        /* tau 0 is "no outliers": nothing to gather, the views say so */
        if (s->knobs.tau == s->data->stats->tau) {
            /* back to the base statistics: nothing to compute */
            if (s->tstats != s->data->stats) qs_stats_free(s->tstats);
            if (s->outl != s->data->outl) free(s->outl);
            s->tstats = s->data->stats;
            s->tstats_tau = s->data->stats->tau;
            s->outl = s->data->outl;
            s->n_outl = s->data->n_outl;
        } else if (s->knobs.tau != s->tstats_tau) {
            tui_work_restat(s->jobs, s->m, s->data, s->knobs.tau);
        }
    }
    char spec[160];
    tui_knobs_spec(&s->knobs, spec, sizeof spec);
    if (which >= 0 && !strcmp(spec, s->spec)) return;
    tui_copy(s->spec, sizeof s->spec, spec);
    tui_state_measure(s, spec, 0);
}

const char *tui_state_gen_spec(const tui_state *s, int side) {
    if (s->gen_pick[side][0]) return s->gen_pick[side];
    return side == 0 ? "fp32" : s->spec;
}

void tui_state_gen_pick(tui_state *s, int side, int dir) {
    /* the choices: "" (the default) first, then fp32 and each measured spec once */
    const char *list[TUI_MAX_ROWS + 2];
    int n = 0;
    list[n++] = "";
    if (side == 1) list[n++] = "fp32";
    for (int i = 0; i < s->n_rows; i++) {
        const tui_row *r = &s->rows[i];
        if (r->status != 1 || (side == 1 && !strcmp(r->spec, "fp32")) || (side == 0 && !strcmp(r->spec, "fp32"))) continue;
        int dup = 0;
        for (int k = 0; k < n; k++) dup |= !strcmp(list[k], r->spec);
        if (!dup) list[n++] = r->spec;
    }
    int at = 0;
    while (at < n && strcmp(list[at], s->gen_pick[side])) at++;
    if (at == n) at = 0;
    at = ((at + dir) % n + n) % n;
    tui_copy(s->gen_pick[side], sizeof s->gen_pick[side], list[at]);
}

void tui_state_generate(tui_state *s) {
    if (!s->jobs) return;
    const char *spec[2];
    tui_var *v[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        s->gen[i].len = 0;
        s->gen[i].tokens = 0;
        s->gen[i].err[0] = 0;
        s->gen[i].ctx_full = 0;
        if (s->gen[i].text) s->gen[i].text[0] = 0;
        s->gen[i].spec[0] = 0;
        spec[i] = tui_state_gen_spec(s, i);
        /* the knobs' variant is built already: borrowed, not built again */
        if (s->cur && !strcmp(qs_variant_spec(s->cur->v), spec[i])) v[i] = s->cur;
    }
    tui_work_generate(s->jobs, s->m, s->data, s->prompt_text, spec, v, &s->gen_opts);
}

void tui_plot_clear(tui_plot *p) {
    for (int i = 0; i < p->n_series && i < TUI_PLOT_SERIES; i++) {
        free(p->s[i].x);
        free(p->s[i].y);
        free(p->s[i].group);
    }
    free(p->labels);
    free(p->z);
    free(p->row_labels);
    memset(p, 0, sizeof *p);
}
