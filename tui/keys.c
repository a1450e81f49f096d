/* The key table: every key the workbench answers, the views and pane where
 * it applies, the action it runs and the words the help line and the ?
 * overlay show for it. An action changes the state (and may submit jobs)
 * and returns what to redraw. */
#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "run/run.h"
#include "export/export.h"
#include "tui.h"

typedef int (*tui_action)(tui_state *s, int key);

typedef struct {
    int key;
    unsigned views;    /* bit per view; 0: every view */
    int focus;         /* -1 any pane, 0 the view, 1 the parameter panel */
    tui_action fn;
    const char *keys;  /* how the overlay names the key(s); NULL: an alias of the entry above */
    const char *what;
    const char *hint;  /* short help-line text, or NULL */
} tui_binding;

#define V(v) (1u << (v))
#define CTRL(c) ((c)&0x1f)

/* ---- actions ---- */

static int act_view(tui_state *s, int key) {
    s->view = key - '1';
    if (s->view == TUI_V_CHANNELS) tui_state_want_clusters(s);
    if (s->view == TUI_V_SPECTRUM) tui_state_want_spectrum(s);
    return TUI_R_DRAW;
}

static int act_focus(tui_state *s, int key) {
    (void)key;
    s->focus = !s->focus;
    return TUI_R_DRAW;
}

static int act_help(tui_state *s, int key) {
    (void)key;
    s->help = 1;
    s->help_top = 0;
    return TUI_R_DRAW;
}

static int act_lua(tui_state *s, int key) {
    (void)key;
    tui_prompt_open(s, 1);
    return TUI_R_DRAW;
}

static int act_quit(tui_state *s, int key) {
    (void)s;
    (void)key;
    return TUI_R_QUIT;
}

static int act_cancel(tui_state *s, int key) {
    (void)key;
    if (s->js.busy || s->js.queued) {
        tui_jobs_cancel_all(s->jobs);
        tui_state_log(s, QS_LOG_WARN, "cancelled");
    }
    return TUI_R_DRAW;
}

static int act_redraw(tui_state *s, int key) {
    (void)s;
    (void)key;
    clearok(curscr, TRUE);
    return TUI_R_DRAW;
}

static int act_rerun(tui_state *s, int key) {
    (void)key;
    if (!s->data_ready) {
        tui_work_calibrate(s->jobs, s->m, s->data, &s->src);
        tui_state_measure(s, "fp32", 0);
    }
    tui_state_retune(s, -1);
    return TUI_R_DRAW;
}

static int act_knob_select(tui_state *s, int key) {
    int dir = key == ']' || key == KEY_DOWN || key == 'j' ? 1 : -1;
    s->knob = (s->knob + dir + TUI_K_COUNT) % TUI_K_COUNT;
    return TUI_R_DRAW;
}

static int act_knob_change(tui_state *s, int key) {
    int dir = key == '+' || key == '=' || key == KEY_RIGHT || key == 'l' ? 1 : -1;
    if (tui_knobs_step(&s->knobs, s->knob, dir)) tui_state_retune(s, s->knob);
    return TUI_R_DRAW;
}

/* Channels */
static int channel_count(const tui_state *s) {
    const qs_site_stats *ss = s->data_ready && s->data->stats ? qs_stats_site(s->data->stats, s->ch_layer, s->ch_site) : NULL;
    return ss ? ss->dim : 0;
}

static int act_ch_move(tui_state *s, int key) {
    int n = channel_count(s);
    if (!n) return TUI_R_NONE;
    int step = key == KEY_RIGHT || key == 'l' ? 1 : key == KEY_LEFT || key == 'h' ? -1
             : key == KEY_NPAGE || key == 'L' ? 10 : key == KEY_PPAGE || key == 'H' ? -10 : 0;
    if (key == KEY_HOME) s->ch_cursor = 0;
    else if (key == KEY_END) s->ch_cursor = n - 1;
    else s->ch_cursor = ((s->ch_cursor + step) % n + n) % n;
    s->ch_user = 1;
    return TUI_R_DRAW;
}

static int act_ch_layer(tui_state *s, int key) {
    int L = s->m->cfg.n_layers, dir = key == KEY_DOWN || key == 'j' ? 1 : -1;
    s->ch_layer = (s->ch_layer + dir + L) % L;
    s->ch_user = 1;
    tui_state_want_clusters(s);
    return TUI_R_DRAW;
}

static int act_ch_site(tui_state *s, int key) {
    int i = 0;
    while (i < tui_n_channel_sites && tui_channel_sites[i] != s->ch_site) i++;
    int dir = key == 's' ? 1 : -1;
    s->ch_site = tui_channel_sites[(i + dir + tui_n_channel_sites) % tui_n_channel_sites];
    s->ch_user = 1;
    int n = channel_count(s);
    if (n && s->ch_cursor >= n) s->ch_cursor = n - 1;
    tui_state_want_clusters(s);
    return TUI_R_DRAW;
}

static int act_ch_outlier(tui_state *s, int key) {
    const qs_site_stats *ss = s->data_ready && s->data->stats ? qs_stats_site(s->data->stats, s->ch_layer, s->ch_site) : NULL;
    if (!ss) return TUI_R_NONE;
    if (s->knobs.tau <= 0) {
        tui_state_log(s, QS_LOG_INFO, "tau is 0: outlier decomposition is off, no channel is an outlier");
        return TUI_R_DRAW;
    }
    int dir = key == 'n' ? 1 : -1;
    for (int k = 1; k <= ss->dim; k++) {
        int c = ((s->ch_cursor + dir * k) % ss->dim + ss->dim) % ss->dim;
        if (ss->absmax[c] >= s->knobs.tau) {
            s->ch_cursor = c;
            s->ch_user = 1;
            return TUI_R_DRAW;
        }
    }
    tui_state_log(s, QS_LOG_INFO, "no channel of layer %d %s reaches tau %.1f", s->ch_layer, qs_site_name(s->ch_site),
                  s->knobs.tau);
    return TUI_R_DRAW;
}

/* Outliers: the channels of the cursor's row (sites differ in width) */
static int ol_dim(const tui_state *s) {
    int layer, site;
    tui_state_ol_row(s, s->ol_row, &layer, &site);
    const qs_site_stats *ss = s->data_ready && s->data->stats ? qs_stats_site(s->data->stats, layer, site) : NULL;
    return ss ? ss->dim : s->m->cfg.d_model;
}

static int act_ol_move(tui_state *s, int key) {
    int D = ol_dim(s), R = tui_state_ol_rows(s);
    switch (key) {
    case KEY_RIGHT: case 'l': s->ol_col = (s->ol_col + 1) % D; break;
    case KEY_LEFT: case 'h': s->ol_col = (s->ol_col + D - 1) % D; break;
    case 'L': case KEY_NPAGE: s->ol_col = (s->ol_col + 8) % D; break;
    case 'H': case KEY_PPAGE: s->ol_col = (s->ol_col + D - 8) % D; break;
    case KEY_DOWN: case 'j': s->ol_row = (s->ol_row + 1) % R; break;
    case KEY_UP: case 'k': s->ol_row = (s->ol_row + R - 1) % R; break;
    }
    if (s->ol_col >= ol_dim(s)) s->ol_col = ol_dim(s) - 1;
    return TUI_R_DRAW;
}

static int act_ol_site(tui_state *s, int key) {
    int i = 0, n = tui_n_outlier_sites;
    while (i < n && tui_outlier_sites[i] != s->ol_site) i++;
    /* the layer stays where it was */
    int layer, site;
    tui_state_ol_row(s, s->ol_row, &layer, &site);
    s->ol_site = tui_outlier_sites[(i + (key == 's' ? 1 : -1) + n) % n];
    int R = tui_state_ol_rows(s);
    s->ol_row = s->ol_site < 0 ? 2 * (layer < s->m->cfg.n_layers ? layer : s->m->cfg.n_layers - 1) : layer < R ? layer : R - 1;
    if (s->ol_col >= ol_dim(s)) s->ol_col = ol_dim(s) - 1;
    return TUI_R_DRAW;
}

static int act_ol_mode(tui_state *s, int key) {
    (void)key;
    s->ol_freq = !s->ol_freq;
    return TUI_R_DRAW;
}

static int act_ol_jump(tui_state *s, int key) {
    (void)key;
    if (s->knobs.tau <= 0) {
        tui_state_log(s, QS_LOG_INFO, "tau is 0: outlier decomposition is off, no dimension is an outlier");
        return TUI_R_DRAW;
    }
    if (s->ol_site >= 0) {
        /* one site: the next channel of the row that reaches tau */
        int layer, site;
        tui_state_ol_row(s, s->ol_row, &layer, &site);
        const qs_site_stats *ss = s->data_ready && s->data->stats ? qs_stats_site(s->data->stats, layer, site) : NULL;
        for (int k = 1; ss && k <= ss->dim; k++) {
            int c = (s->ol_col + k) % ss->dim;
            if (ss->absmax[c] >= s->knobs.tau) {
                s->ol_col = c;
                return TUI_R_DRAW;
            }
        }
        tui_state_log(s, QS_LOG_INFO, "no channel of layer %d %s reaches tau %.1f", layer, qs_site_name(site), s->knobs.tau);
        return TUI_R_DRAW;
    }
    if (!s->n_outl) return TUI_R_NONE;
    int i = 0;
    while (i < s->n_outl && s->outl[i].dim <= s->ol_col) i++;
    s->ol_col = s->outl[i < s->n_outl ? i : 0].dim;
    return TUI_R_DRAW;
}

/* Spectrum */
static int act_sp_layer(tui_state *s, int key) {
    int L = s->m->cfg.n_layers, dir = key == KEY_DOWN || key == 'j' ? 1 : -1;
    s->sp_layer = (s->sp_layer + dir + L) % L;
    return TUI_R_DRAW;
}

static int act_sp_which(tui_state *s, int key) {
    (void)key;
    s->sp_which = !s->sp_which;
    return TUI_R_DRAW;
}

/* Compare */
static int act_cmp_move(tui_state *s, int key) {
    if (!s->n_rows) return TUI_R_NONE;
    int dir = key == KEY_DOWN || key == 'j' ? 1 : -1;
    s->cmp_sel = (s->cmp_sel + dir + s->n_rows) % s->n_rows;
    return TUI_R_DRAW;
}

static int act_cmp_full(tui_state *s, int key) {
    (void)key;
    if (!s->n_rows) return TUI_R_NONE;
    char spec[160];
    tui_copy(spec, sizeof spec, s->rows[s->cmp_sel].spec);
    /* the change is taken against fp32 over the same (full) text: measure it first */
    const tui_row *b = tui_state_base_row_full(s, 1);
    if (strcmp(spec, "fp32") && (!b || b->status < 0)) tui_state_measure(s, "fp32", 1);
    tui_state_measure(s, spec, 1);
    return TUI_R_DRAW;
}

/* Compare and Log: export to files */
static int act_export(tui_state *s, int key) {
    (void)key;
    char msg[TUI_LOG_TEXT];
    int rc = s->view == TUI_V_LOG ? tui_export_log(s, msg, sizeof msg) : tui_export_compare(s, msg, sizeof msg);
    tui_state_log(s, rc ? 3 : QS_LOG_INFO, "%s", msg);
    return TUI_R_DRAW;
}

/* Compare: write the selected row's variant out, named after its spec:
 * qscope-<spec>.gguf for the families llama.cpp runs, else a directory */
static int act_cmp_export(tui_state *s, int key) {
    if (!s->n_rows || !s->jobs) return TUI_R_NONE;
    const char *spec = s->rows[s->cmp_sel].spec;
    char name[200] = "qscope-";
    size_t n = strlen(name);
    for (const char *p = spec; *p && n + 6 < sizeof name; p++)
        name[n++] = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ? *p : '_';
    name[n] = 0;
    if (qs_export_gguf_family(s->m->cfg.family)) snprintf(name + n, sizeof name - n, ".gguf");
    tui_work_export(s->jobs, s->m, s->data, spec, name, key == 'X');
    tui_state_log(s, QS_LOG_INFO, "exporting %s to %s%s", spec, name, key == 'X' ? " (replacing it)" : "");
    return TUI_R_DRAW;
}

/* Generate */
static int act_gen_edit(tui_state *s, int key) {
    (void)key;
    tui_prompt_open(s, 2);
    return TUI_R_DRAW;
}

static int act_gen_run(tui_state *s, int key) {
    (void)key;
    tui_state_generate(s);
    return TUI_R_DRAW;
}

static int act_gen_pick(tui_state *s, int key) {
    tui_state_gen_pick(s, key == 'b' || key == 'B', key == 'a' || key == 'b' ? 1 : -1);
    return TUI_R_DRAW;
}

static const int token_steps[] = {8, 16, 32, 48, 64, 128, 256, 512, 1024};
enum { N_TOKEN_STEPS = sizeof token_steps / sizeof token_steps[0] };

static int act_gen_setting(tui_state *s, int key) {
    tui_gen_opts *o = &s->gen_opts;
    switch (key) {
    case 'n': case 'N': {
        int i = 0;
        while (i < N_TOKEN_STEPS - 1 && token_steps[i] < o->n_tokens) i++;
        i += key == 'n' ? 1 : -1;
        o->n_tokens = token_steps[i < 0 ? 0 : i >= N_TOKEN_STEPS ? N_TOKEN_STEPS - 1 : i];
        break;
    }
    case 't': case 'T': {
        /* in tenths, so repeated steps stay exact */
        int t = (int)lroundf(o->temp * 10) + (key == 't' ? 1 : -1);
        o->temp = (t < 0 ? 0 : t > 20 ? 20 : t) / 10.0f;
        break;
    }
    case 'p': case 'P': {
        int p = (int)lroundf(o->top_p * 100) + (key == 'p' ? 5 : -5);
        o->top_p = (p < 5 ? 5 : p > 100 ? 100 : p) / 100.0f;
        break;
    }
    case 's': o->seed++; break;
    case 'S': if (o->seed > 0) o->seed--; break;
    }
    return TUI_R_DRAW;
}

/* Log */
static int act_log_scroll(tui_state *s, int key) {
    int page = s->rows_n > 8 ? s->rows_n - 8 : 1;
    switch (key) {
    case KEY_UP: case 'k': s->log_back++; break;
    case KEY_DOWN: case 'j': s->log_back--; break;
    case KEY_PPAGE: s->log_back += page; break;
    case KEY_NPAGE: s->log_back -= page; break;
    case KEY_HOME: s->log_back = s->log_n; break;
    case KEY_END: case 'G': s->log_back = 0; break;
    }
    if (s->log_back < 0) s->log_back = 0;
    return TUI_R_DRAW;
}

/* o / O: open a calibration / evaluation text (the line completes paths) */
static int act_open(tui_state *s, int key) {
    tui_prompt_open(s, key == 'O' ? 5 : 4);
    return TUI_R_DRAW;
}

/* / : find a channel, a layer or (Compare) a variant */
static int act_find(tui_state *s, int key) {
    (void)key;
    tui_prompt_open(s, 3);
    return TUI_R_DRAW;
}

/* "L3", "layer 3", "l 3" set the layer; "33", "c33", "ch 33", "channel 33" the
 * channel; both may be given ("L3 33"). Returns 0, or -1 when text is neither. */
static int parse_find(const char *text, int *layer, int *channel) {
    *layer = *channel = -1;
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        int *into = channel;
        if (!strncasecmp(p, "layer", 5)) p += 5, into = layer;
        else if (!strncasecmp(p, "channel", 7)) p += 7;
        else if (!strncasecmp(p, "ch", 2)) p += 2;
        else if (*p == 'L' || *p == 'l') p++, into = layer;
        else if (*p == 'c' || *p == 'C') p++;
        while (*p == ' ') p++;
        if (*p < '0' || *p > '9') return -1;
        long v = 0;
        while (*p >= '0' && *p <= '9' && v < 1000000) v = v * 10 + (*p++ - '0');
        *into = (int)v;
    }
    return *layer < 0 && *channel < 0 ? -1 : 0;
}

void tui_keys_find(tui_state *s, const char *text) {
    while (*text == ' ') text++;
    if (!*text) return;
    int L = s->m->cfg.n_layers;
    if (s->view == TUI_V_COMPARE) {
        /* the next row (after the selected one) whose spec holds the text */
        for (int k = 1; k <= s->n_rows; k++) {
            int i = (s->cmp_sel + k) % s->n_rows;
            if (strstr(s->rows[i].spec, text)) {
                s->cmp_sel = i;
                return;
            }
        }
        tui_state_log(s, QS_LOG_WARN, "find: no variant in Compare holds '%s'", text);
        return;
    }
    if (s->view != TUI_V_CHANNELS && s->view != TUI_V_OUTLIERS && s->view != TUI_V_SPECTRUM) {
        tui_state_log(s, QS_LOG_WARN, "find: / looks for a channel or a layer in Channels, Outliers and Spectrum, a variant in Compare");
        return;
    }
    int layer, ch;
    if (parse_find(text, &layer, &ch)) {
        tui_state_log(s, QS_LOG_WARN, "find: '%s' is neither a channel (33, c33) nor a layer (L3, layer 3)", text);
        return;
    }
    if (layer >= L) {
        tui_state_log(s, QS_LOG_WARN, "find: layer %d: %s has layers 0 to %d", layer, s->model_name, L - 1);
        return;
    }
    if (s->view == TUI_V_SPECTRUM) {
        if (ch >= 0) tui_state_log(s, QS_LOG_WARN, "find: the Spectrum view has layers, not channels");
        if (layer >= 0) s->sp_layer = layer;
        return;
    }
    if (s->view == TUI_V_CHANNELS) {
        int n = channel_count(s);
        if (ch >= 0 && n && ch >= n) {
            tui_state_log(s, QS_LOG_WARN, "find: channel %d: layer %d %s has channels 0 to %d", ch, s->ch_layer,
                          qs_site_name(s->ch_site), n - 1);
            return;
        }
        if (layer >= 0) s->ch_layer = layer;
        if (ch >= 0) s->ch_cursor = ch;
        s->ch_user = 1;
        tui_state_want_clusters(s);
        return;
    }
    /* Outliers: the layer's row (the same input in the linear-inputs mode) */
    if (layer >= 0 && tui_state_ol_rows(s) > 1) s->ol_row = s->ol_site < 0 ? 2 * layer + s->ol_row % 2 : layer;
    if (ch >= 0) {
        int n = ol_dim(s);
        if (ch >= n) {
            tui_state_log(s, QS_LOG_WARN, "find: channel %d: this row has channels 0 to %d", ch, n - 1);
            return;
        }
        s->ol_col = ch;
    }
}

/* ---- the table ---- */

enum { P = 1 }; /* focus: the parameter panel */

static const tui_binding table[] = {
    /* the parameter panel, when focused */
    {KEY_UP, 0, P, act_knob_select, "Up/Down j/k", "select a knob (parameter panel)", "\x01 knob"},
    {KEY_DOWN, 0, P, act_knob_select, NULL, NULL, NULL},
    {'k', 0, P, act_knob_select, NULL, NULL, NULL},
    {'j', 0, P, act_knob_select, NULL, NULL, NULL},
    {KEY_RIGHT, 0, P, act_knob_change, "Left/Right h/l", "change the selected knob (parameter panel)", "\x02 value"},
    {KEY_LEFT, 0, P, act_knob_change, NULL, NULL, NULL},
    {'l', 0, P, act_knob_change, NULL, NULL, NULL},
    {'h', 0, P, act_knob_change, NULL, NULL, NULL},

    /* 1 Channels */
    {KEY_RIGHT, V(TUI_V_CHANNELS), 0, act_ch_move, "Left/Right h/l", "step through the channels", "\x02 channel"},
    {KEY_LEFT, V(TUI_V_CHANNELS), 0, act_ch_move, NULL, NULL, NULL},
    {'l', V(TUI_V_CHANNELS), 0, act_ch_move, NULL, NULL, NULL},
    {'h', V(TUI_V_CHANNELS), 0, act_ch_move, NULL, NULL, NULL},
    {'L', V(TUI_V_CHANNELS), 0, act_ch_move, "H/L PgUp/PgDn", "ten channels back / on", NULL},
    {'H', V(TUI_V_CHANNELS), 0, act_ch_move, NULL, NULL, NULL},
    {KEY_NPAGE, V(TUI_V_CHANNELS), 0, act_ch_move, NULL, NULL, NULL},
    {KEY_PPAGE, V(TUI_V_CHANNELS), 0, act_ch_move, NULL, NULL, NULL},
    {KEY_HOME, V(TUI_V_CHANNELS), 0, act_ch_move, "Home/End", "first / last channel", NULL},
    {KEY_END, V(TUI_V_CHANNELS), 0, act_ch_move, NULL, NULL, NULL},
    {KEY_UP, V(TUI_V_CHANNELS), 0, act_ch_layer, "Up/Down k/j", "previous / next layer", "\x01 layer"},
    {KEY_DOWN, V(TUI_V_CHANNELS), 0, act_ch_layer, NULL, NULL, NULL},
    {'k', V(TUI_V_CHANNELS), 0, act_ch_layer, NULL, NULL, NULL},
    {'j', V(TUI_V_CHANNELS), 0, act_ch_layer, NULL, NULL, NULL},
    {'s', V(TUI_V_CHANNELS), 0, act_ch_site, "s/S", "next / previous activation site", "s site"},
    {'S', V(TUI_V_CHANNELS), 0, act_ch_site, NULL, NULL, NULL},
    {'n', V(TUI_V_CHANNELS), 0, act_ch_outlier, "n/N", "next / previous outlier channel (|x| >= tau)", "n outlier"},
    {'N', V(TUI_V_CHANNELS), 0, act_ch_outlier, NULL, NULL, NULL},

    /* 2 Outliers */
    {KEY_RIGHT, V(TUI_V_OUTLIERS), 0, act_ol_move, "Left/Right h/l", "step through the channels (H/L: 8)", "\x02 channel"},
    {KEY_LEFT, V(TUI_V_OUTLIERS), 0, act_ol_move, NULL, NULL, NULL},
    {'l', V(TUI_V_OUTLIERS), 0, act_ol_move, NULL, NULL, NULL},
    {'h', V(TUI_V_OUTLIERS), 0, act_ol_move, NULL, NULL, NULL},
    {'L', V(TUI_V_OUTLIERS), 0, act_ol_move, NULL, NULL, NULL},
    {'H', V(TUI_V_OUTLIERS), 0, act_ol_move, NULL, NULL, NULL},
    {KEY_NPAGE, V(TUI_V_OUTLIERS), 0, act_ol_move, NULL, NULL, NULL},
    {KEY_PPAGE, V(TUI_V_OUTLIERS), 0, act_ol_move, NULL, NULL, NULL},
    {KEY_UP, V(TUI_V_OUTLIERS), 0, act_ol_move, "Up/Down k/j", "previous / next layer input", "\x01 row"},
    {KEY_DOWN, V(TUI_V_OUTLIERS), 0, act_ol_move, NULL, NULL, NULL},
    {'k', V(TUI_V_OUTLIERS), 0, act_ol_move, NULL, NULL, NULL},
    {'j', V(TUI_V_OUTLIERS), 0, act_ol_move, NULL, NULL, NULL},
    {'s', V(TUI_V_OUTLIERS), 0, act_ol_site, "s/S", "next / previous site: the linear layers' inputs (attn_in, mlp_in), then attn_in q k v attn_out mlp_in mlp_mid head_in resid resid_mid embed alone", "s site"},
    {'S', V(TUI_V_OUTLIERS), 0, act_ol_site, NULL, NULL, NULL},
    {'m', V(TUI_V_OUTLIERS), 0, act_ol_mode, "m", "largest |x| / share of tokens with |x| >= tau", "m mode"},
    {'n', V(TUI_V_OUTLIERS), 0, act_ol_jump, "n", "jump to the next outlier dimension (one site: the next channel reaching tau)", "n outlier"},

    /* 3 Spectrum */
    {KEY_UP, V(TUI_V_SPECTRUM), 0, act_sp_layer, "Up/Down k/j", "previous / next layer", "\x01 layer"},
    {KEY_DOWN, V(TUI_V_SPECTRUM), 0, act_sp_layer, NULL, NULL, NULL},
    {'k', V(TUI_V_SPECTRUM), 0, act_sp_layer, NULL, NULL, NULL},
    {'j', V(TUI_V_SPECTRUM), 0, act_sp_layer, NULL, NULL, NULL},
    {'m', V(TUI_V_SPECTRUM), 0, act_sp_which, "m", "block input / MLP input", "m input"},

    /* 4 Compare */
    {KEY_UP, V(TUI_V_COMPARE), 0, act_cmp_move, "Up/Down k/j", "select a variant", "\x01 select"},
    {KEY_DOWN, V(TUI_V_COMPARE), 0, act_cmp_move, NULL, NULL, NULL},
    {'k', V(TUI_V_COMPARE), 0, act_cmp_move, NULL, NULL, NULL},
    {'j', V(TUI_V_COMPARE), 0, act_cmp_move, NULL, NULL, NULL},
    {'p', V(TUI_V_COMPARE), 0, act_cmp_full, "p", "perplexity of the selected variant over all of the evaluation text", "p full ppl"},
    {'e', V(TUI_V_COMPARE), 0, act_export, "e", "export the table to qscope-compare.md and .json in the current directory", "e export"},
    {'x', V(TUI_V_COMPARE), 0, act_cmp_export, "x/X", "write the selected variant out: qscope-SPEC.gguf (llama.cpp) or a directory; X replaces it", "x write"},
    {'X', V(TUI_V_COMPARE), 0, act_cmp_export, NULL, NULL, NULL},

    /* 5 Generate */
    {'e', V(TUI_V_GENERATE), 0, act_gen_edit, "e Enter", "edit the prompt (Enter starts generating)", "e prompt"},
    {'\n', V(TUI_V_GENERATE), 0, act_gen_edit, NULL, NULL, NULL},
    {'\r', V(TUI_V_GENERATE), 0, act_gen_edit, NULL, NULL, NULL},
    {KEY_ENTER, V(TUI_V_GENERATE), 0, act_gen_edit, NULL, NULL, NULL},
    {'g', V(TUI_V_GENERATE), 0, act_gen_run, "g", "generate with the two sides' variants", "g generate"},
    {'a', V(TUI_V_GENERATE), 0, act_gen_pick, "a/A b/B", "side A's / side B's variant: fp32, a measured row of Compare, (B) the knobs'", "ab variants"},
    {'A', V(TUI_V_GENERATE), 0, act_gen_pick, NULL, NULL, NULL},
    {'b', V(TUI_V_GENERATE), 0, act_gen_pick, NULL, NULL, NULL},
    {'B', V(TUI_V_GENERATE), 0, act_gen_pick, NULL, NULL, NULL},
    {'n', V(TUI_V_GENERATE), 0, act_gen_setting, "n/N", "more / fewer tokens (8 to 1024)", "nN tokens"},
    {'N', V(TUI_V_GENERATE), 0, act_gen_setting, NULL, NULL, NULL},
    {'t', V(TUI_V_GENERATE), 0, act_gen_setting, "t/T", "temperature up / down by 0.1 (0: greedy)", "tT temp"},
    {'T', V(TUI_V_GENERATE), 0, act_gen_setting, NULL, NULL, NULL},
    {'p', V(TUI_V_GENERATE), 0, act_gen_setting, "p/P", "top-p up / down by 0.05 (1: off)", NULL},
    {'P', V(TUI_V_GENERATE), 0, act_gen_setting, NULL, NULL, NULL},
    {'s', V(TUI_V_GENERATE), 0, act_gen_setting, "s/S", "the sampling seed (the same on both sides) up / down", NULL},
    {'S', V(TUI_V_GENERATE), 0, act_gen_setting, NULL, NULL, NULL},

    /* 6 Log */
    {KEY_UP, V(TUI_V_LOG), 0, act_log_scroll, "Up/Down k/j", "scroll (PgUp/PgDn a page, Home/End)", "\x01 scroll"},
    {KEY_DOWN, V(TUI_V_LOG), 0, act_log_scroll, NULL, NULL, NULL},
    {'k', V(TUI_V_LOG), 0, act_log_scroll, NULL, NULL, NULL},
    {'j', V(TUI_V_LOG), 0, act_log_scroll, NULL, NULL, NULL},
    {KEY_PPAGE, V(TUI_V_LOG), 0, act_log_scroll, NULL, NULL, NULL},
    {KEY_NPAGE, V(TUI_V_LOG), 0, act_log_scroll, NULL, NULL, NULL},
    {KEY_HOME, V(TUI_V_LOG), 0, act_log_scroll, NULL, NULL, NULL},
    {KEY_END, V(TUI_V_LOG), 0, act_log_scroll, NULL, NULL, NULL},
    {'G', V(TUI_V_LOG), 0, act_log_scroll, NULL, NULL, NULL},
    {'e', V(TUI_V_LOG), 0, act_export, "e", "export the Log to qscope-log.txt in the current directory", "e export"},

    /* everywhere */
    {'[', 0, -1, act_knob_select, "[ ]", "select the previous / next knob", "[] knob"},
    {']', 0, -1, act_knob_select, NULL, NULL, NULL},
    {'+', 0, -1, act_knob_change, "+ -", "raise / lower the selected knob (re-runs what depends on it)", "+- value"},
    {'=', 0, -1, act_knob_change, NULL, NULL, NULL},
    {'-', 0, -1, act_knob_change, NULL, NULL, NULL},
    {'1', 0, -1, act_view, "1-7", "views: Channels Outliers Spectrum Compare Generate Log Plot", "1-7 view"},
    {'2', 0, -1, act_view, NULL, NULL, NULL},
    {'3', 0, -1, act_view, NULL, NULL, NULL},
    {'4', 0, -1, act_view, NULL, NULL, NULL},
    {'5', 0, -1, act_view, NULL, NULL, NULL},
    {'6', 0, -1, act_view, NULL, NULL, NULL},
    {'7', 0, -1, act_view, NULL, NULL, NULL},
    {'\t', 0, -1, act_focus, "Tab", "move between the view and the parameter panel", NULL},
    {KEY_BTAB, 0, -1, act_focus, NULL, NULL, NULL},
    {':', 0, -1, act_lua, ":", "Lua prompt (Tab completes, Up/Down history, Esc leaves)", ": lua"},
    {'o', 0, -1, act_open, "o/O", "open a calibration text / an evaluation text (Tab completes the path)", "oO open"},
    {'O', 0, -1, act_open, NULL, NULL, NULL},
    {'/', V(TUI_V_CHANNELS) | V(TUI_V_OUTLIERS) | V(TUI_V_SPECTRUM) | V(TUI_V_COMPARE), -1, act_find, "/",
     "find: a channel (33) or a layer (L3, layer 3, L3 33); in Compare a variant by its text", "/ find"},
    {27, 0, -1, act_cancel, "Esc", "cancel the running and queued jobs", "Esc cancel"},
    {'r', 0, -1, act_rerun, "r", "run the current variant again (or the calibration, if cancelled)", NULL},
    {CTRL('l'), 0, -1, act_redraw, "Ctrl-L", "redraw the screen", NULL},
    {'?', 0, -1, act_help, "?", "this help: what the view shows, and its keys", "? help"},
    {'q', 0, -1, act_quit, "q", "quit", "q quit"},
};
enum { N_BINDINGS = sizeof table / sizeof table[0] };

static int applies(const tui_binding *b, const tui_state *s, int view) {
    if (b->views && !(b->views & V(view))) return 0;
    return b->focus < 0 || b->focus == s->focus || (b->focus == 0 && s->focus == 1 && b->views == 0);
}

static int find(const tui_state *s, int key) {
    for (int i = 0; i < N_BINDINGS; i++)
        if (table[i].key == key && applies(&table[i], s, s->view)) return i;
    /* a view key not taken by the focused panel still works */
    for (int i = 0; i < N_BINDINGS; i++)
        if (table[i].key == key && table[i].focus == 0 && (!table[i].views || table[i].views & V(s->view))) return i;
    return -1;
}

int tui_keys_handle(tui_state *s, int key) {
    s->keys++;
    if (s->help) {
        /* the overlay takes the keys while open */
        switch (key) {
        case KEY_DOWN: case 'j': s->help_top++; break;
        case KEY_UP: case 'k': if (s->help_top > 0) s->help_top--; break;
        case KEY_NPAGE: case ' ': s->help_top += 10; break;
        case KEY_PPAGE: s->help_top = s->help_top > 10 ? s->help_top - 10 : 0; break;
        default: s->help = 0;
        }
        return TUI_R_DRAW;
    }
    int i = find(s, key);
    return i < 0 ? TUI_R_NONE : table[i].fn(s, key);
}

/* The mouse (where the terminal reports it): a click picks the channel under
 * it in the Channels scatter or a row of Compare; the wheel scrolls the Log,
 * Compare's rows, Outliers' rows, Spectrum's layers and the help overlay. */
int tui_keys_mouse(tui_state *s, int y, int x, unsigned long bstate) {
    int up = (bstate & BUTTON4_PRESSED) != 0;
#ifdef BUTTON5_PRESSED
    int down = (bstate & BUTTON5_PRESSED) != 0;
#else
    int down = 0;
#endif
    int click = (bstate & (BUTTON1_PRESSED | BUTTON1_CLICKED)) != 0;
    if (s->help) {
        if (up) s->help_top = s->help_top > 3 ? s->help_top - 3 : 0;
        if (down) s->help_top += 3; /* tui_panel_fit keeps it within the text */
        return TUI_R_DRAW;
    }
    if (up || down) {
        int dir = down ? 1 : -1;
        switch (s->view) {
        case TUI_V_LOG:
            s->log_back -= 3 * dir;
            if (s->log_back < 0) s->log_back = 0;
            break;
        case TUI_V_COMPARE:
            if (s->n_rows) s->cmp_sel = s->cmp_sel + dir < 0 ? 0 : s->cmp_sel + dir >= s->n_rows ? s->n_rows - 1 : s->cmp_sel + dir;
            break;
        case TUI_V_OUTLIERS: {
            int R = tui_state_ol_rows(s);
            s->ol_row = s->ol_row + dir < 0 ? 0 : s->ol_row + dir >= R ? R - 1 : s->ol_row + dir;
            break;
        }
        case TUI_V_SPECTRUM: {
            int L = s->m->cfg.n_layers;
            s->sp_layer = s->sp_layer + dir < 0 ? 0 : s->sp_layer + dir >= L ? L - 1 : s->sp_layer + dir;
            break;
        }
        default: return TUI_R_NONE;
        }
        return TUI_R_DRAW;
    }
    if (!click) return TUI_R_NONE;
    if (s->view == TUI_V_CHANNELS) {
        int c = tui_view_channel_at(s, y, x);
        if (c < 0) return TUI_R_NONE;
        s->ch_cursor = c;
        s->ch_user = 1;
        return TUI_R_DRAW;
    }
    if (s->view == TUI_V_COMPARE && s->n_rows) {
        /* the rows as draw_compare lays them out: two lines each from the view's fourth line */
        int h = s->rows_n - 4, vis = (h - 7) / 2 < 1 ? 1 : (h - 7) / 2;
        int top = s->cmp_sel >= vis ? s->cmp_sel - vis + 1 : 0, i = top + (y - (2 + 3)) / 2;
        if (y >= 5 && i < s->n_rows && i < top + vis) {
            s->cmp_sel = i;
            return TUI_R_DRAW;
        }
    }
    return TUI_R_NONE;
}

/* "\x01" and "\x02" in a hint stand for the up/down and left/right arrows */
static void hint_text(const tui_state *s, const char *h, char *out, size_t cap) {
    if (h[0] == 1) snprintf(out, cap, "%s%s", s->utf8 ? "\xe2\x86\x91\xe2\x86\x93" : "jk", h + 1);
    else if (h[0] == 2) snprintf(out, cap, "%s%s", s->utf8 ? "\xe2\x86\x90\xe2\x86\x92" : "hl", h + 1);
    else snprintf(out, cap, "%s", h);
}

void tui_keys_hints(const tui_state *s, char *buf, size_t cap, int width) {
    size_t n = 0;
    buf[0] = 0;
    if (s->prompting) {
        tui_copy(buf, cap, s->prompting == 1   ? "Enter run  Tab complete  Up/Down history  Esc leave"
                           : s->prompting == 3 ? "Enter find  Esc leave"
                           : s->prompting >= 4 ? "Enter open  Tab complete the path  Esc leave"
                                               : "Enter generate  Esc leave");
        return;
    }
    if (s->help) {
        tui_copy(buf, cap, "Esc or ? close  j/k scroll");
        return;
    }
    /* the view's own keys, then the global ones; a hint that does not fit is
     * left out whole, and room is kept for the ones that must show */
    static const char *const must[] = {"Esc cancel", "? help", "q quit"};
    int reserve = 0;
    for (int i = 0; i < 3; i++)
        if (i || s->js.busy || s->js.queued) reserve += (int)strlen(must[i]) + 2;
    int cols = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < N_BINDINGS; i++) {
            const tui_binding *b = &table[i];
            if (!b->hint || !applies(b, s, s->view)) continue;
            int global = b->views == 0 && b->focus != P;
            if (global != pass) continue;
            int is_must = 0;
            for (int k = 0; k < 3; k++) is_must |= !strcmp(b->hint, must[k]);
            if (!strcmp(b->hint, "Esc cancel") && !s->js.busy && !s->js.queued) continue;
            /* in the panel the arrows already say it */
            if (s->focus == P && b->focus != P && (!strcmp(b->hint, "[] knob") || !strcmp(b->hint, "+- value"))) continue;
            char h[64];
            hint_text(s, b->hint, h, sizeof h);
            int hw = tui_text_width(s, h) + (n ? 2 : 0);
            if (cols + hw > width - (is_must ? 0 : reserve)) continue;
            if (is_must) reserve -= (int)strlen(b->hint) + 2;
            int w = snprintf(buf + n, cap - n, "%s%s", n ? "  " : "", h);
            if (w < 0 || (size_t)w >= cap - n) return;
            n += (size_t)w;
            cols += hw;
        }
}

void tui_keys_list(const tui_state *s, int v, void (*fn)(void *ud, const char *keys, const char *what), void *ud) {
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < N_BINDINGS; i++) {
            const tui_binding *b = &table[i];
            if (!b->keys || !b->what) continue;
            if (b->views && !(b->views & V(v))) continue;
            int global = b->views == 0;
            if (global != pass) continue;
            fn(ud, b->keys, b->what);
        }
    (void)s;
}
