/* The views: each draws one kind of picture from the state into a rectangle
 * and explains itself for the ? overlay. They read statistics, labels and
 * eigenvalues the jobs produced; they never run the model or a method. */
#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/run.h"
#include "methods/methods.h"
#include "tui.h"

static tui_canvas canvas; /* one frame at a time: the UI thread's scratch */

/* Where the Channels scatter was last drawn, for a mouse click: its cells on
 * screen and the data range its dots map (UI thread scratch, as the canvas). */
static struct {
    int valid, y, x, rows, cols, braille, dw, dh, layer, site;
    double x0, x1, y0, y1;
} scatter;

static int dot_of(double v, double lo, double hi, int n) {
    double f = (v - lo) / (hi - lo);
    return f >= 0 && f <= 1 ? (int)floor(f * (n - 1) + 0.5) : -1;
}

int tui_view_channel_at(const tui_state *s, int y, int x) {
    if (!scatter.valid || s->view != TUI_V_CHANNELS || s->ch_layer != scatter.layer || s->ch_site != scatter.site) return -1;
    if (y < scatter.y || y >= scatter.y + scatter.rows || x < scatter.x || x >= scatter.x + scatter.cols) return -1;
    const qs_site_stats *ss = s->data_ready && s->data->stats ? qs_stats_site(s->data->stats, scatter.layer, scatter.site) : NULL;
    if (!ss) return -1;
    /* the channel whose point is nearest the cell's centre, in cells, within two of them */
    int bx = scatter.braille ? 2 : 1, by = scatter.braille ? 4 : 1;
    double cx = x - scatter.x + 0.5, cy = y - scatter.y + 0.5, best = 2.0 * 2.0;
    int pick = -1;
    for (int c = 0; c < ss->dim; c++) {
        int dx = dot_of(ss->max[c], scatter.x0, scatter.x1, scatter.dw);
        int dy = dot_of(ss->min[c], scatter.y0, scatter.y1, scatter.dh);
        if (dx < 0 || dy < 0) continue;
        dy = scatter.dh - 1 - dy; /* row 0 is the top */
        double ex = (dx + 0.5) / bx - cx, ey = (dy + 0.5) / by - cy, d = ex * ex + ey * ey;
        if (d < best) {
            best = d;
            pick = c;
        }
    }
    return pick;
}

static const char *const titles[TUI_V_COUNT] = {"Channels", "Outliers", "Spectrum", "Compare",
                                                "Generate", "Log",      "Plot"};

const char *tui_view_title(int v) { return (unsigned)v < TUI_V_COUNT ? titles[v] : "?"; }

static const char *const explain[TUI_V_COUNT] = {
    /* Channels */
    "Every channel (feature dimension) of the activation at one layer and site is drawn as one point: "
    "its largest value over the calibration tokens on the x axis and its smallest on the y axis. "
    "This is Figure 1 of RPTQ (Yuan et al. 2023): channels differ wildly in range, so one scale and "
    "zero point for the whole tensor wastes most of the grid on a few wide channels.\n\n"
    "RPTQ's answer is to cluster the channels by their (max, min) with k-means into g groups, reorder "
    "them so each cluster is contiguous, and give every cluster its own scale and zero point. The "
    "colours are the clusters k-means finds for the current g (the g knob): watch them split the "
    "cloud as g grows.\n\n"
    "The dashed lines mark the outlier threshold tau (the tau knob): a channel whose |x| reaches tau "
    "somewhere is drawn in red and listed. On the bundled opt-mini, channel 33 of attn_in (the first "
    "norm's output) reaches |x| of about 11 in layers 2 to 4: LLM.int8() keeps exactly such columns "
    "out of int8.\n\n"
    "/ jumps to a channel (33) or a layer (L3); with a mouse, a click on a point selects its channel.",
    /* Outliers */
    "A heatmap of the activations that feed the linear layers (attn_in, mlp_in) for every layer "
    "(rows) and channel (columns): the colour is the largest |x| seen in calibration, or, after m, "
    "the fraction of tokens where |x| >= tau. s and S switch to one site alone (attn_in, q, k, v, "
    "attn_out, mlp_in, mlp_mid, head_in, resid, resid_mid, embed) and back.\n\n"
    "LLM.int8() (Dettmers et al. 2022, section 4.1) calls a feature dimension an outlier when its "
    "magnitude reaches 6 in at least 25% of the layers and at least 6% of the sequence positions. "
    "Such dimensions are few, but they hold the largest values, and quantizing them with the rest "
    "to int8 destroys the model; LLM.int8() multiplies them in 16-bit and everything else in int8. "
    "The list beside the map is that analysis for the current tau. At tau 0 the decomposition is "
    "off (int8:threshold=0): no column is kept in fp32, and nothing counts as an outlier.",
    /* Spectrum */
    "SliceGPT (Ashkboos et al. 2024) rotates the residual stream of each layer into its principal "
    "components (PCA of the signal's covariance, gathered on calibration text) and deletes the "
    "directions with the least variance, so every weight matrix gets genuinely smaller.\n\n"
    "The plot shows the eigenvalues of that covariance for the selected layer, largest first, on a "
    "log scale. The vertical line is the cut for the current slice ratio: d = floor((1 - ratio) D / 8) "
    "* 8 directions are kept; the share of the total variance they carry is printed for every layer. "
    "A steep spectrum means little is lost. LayerNorm models are first made RMSNorm-connected by "
    "removing each token's mean, as SliceGPT does, so one eigenvalue is ~0.\n\n"
    "The source is the model itself (fp32, on the calibration text), built as slice:ratio=<the slice "
    "knob>: the spectrum stays whichever method the parameter panel selects, and only the slice ratio "
    "moves the cut.",
    /* Compare */
    "Every variant built in this session, measured the same way: perplexity on a few windows of "
    "the evaluation text (--data FILE, or eval.txt beside the model; exp of the mean negative log-likelihood; lower is better), the change against fp32, "
    "the weight size as stored (int8: 1 byte, 4-bit: half a byte, plus scales), the KV-cache bytes "
    "per token, and the evaluation speed in tokens per second.\n\n"
    "The bars compare perplexity and size at a glance: good compression moves the size bar a lot "
    "and the perplexity bar hardly at all. p runs the selected variant over the whole evaluation text; "
    "e writes the table to qscope-compare.md and qscope-compare.json (the fields of qscope compare --json) "
    "in the current directory.",
    /* Generate */
    "Two versions of the model continue the same prompt side by side, token by token as they are "
    "produced: by default the model in fp32 (side A) and the current variant (side B); a and b pick "
    "either from fp32 and the variants measured in Compare. Greedy decoding shows where the "
    "compressed model's most likely token first differs from the original's, and how quickly the "
    "texts then diverge; with a temperature, both sides sample with the same seed. A side stops at "
    "the model's context length and says so.",
    /* Log */
    "Messages from the workbench and the engine, results of finished jobs, and everything Lua "
    "prints or raises at the : prompt. A Lua error is reported here with its traceback; it never "
    "ends the program. e writes the Log to qscope-log.txt in the current directory.\n\n"
    "At the : prompt, qscope.ui (or ui) reaches the workbench: ui.open_calib(path), ui.open_data(path), "
    "ui.view(name) and ui.measure(spec).",
    /* Plot */
    ("What a Lua script drew with qs.plot.* (from the : prompt or qscope MODEL --script FILE.lua). "
     "Line and scatter plots use braille dots (2x4 per character cell), bars use block characters."),
};

const char *tui_view_explain(int v) { return (unsigned)v < TUI_V_COUNT ? explain[v] : ""; }

static int cluster_role(const tui_state *s, int label) {
    int n = tui_draw_n_cluster_colors(s);
    return n ? TUI_C_CLUSTER0 + label % n : TUI_C_NORMAL;
}

static char cluster_glyph(int label) {
    static const char g[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    return g[label % (int)(sizeof g - 1)];
}

/* change the attribute of cells already drawn, keeping their characters */
static void highlight(const tui_state *s, int y, int x, int n, int role) {
    int a = tui_attr(s, role);
    mvchgat(y, x, n, (attr_t)(a & ~A_COLOR), (short)PAIR_NUMBER(a), NULL);
}

static void centered(const tui_state *s, int y, int x, int w, int role, const char *msg) {
    int len = tui_text_width(s, msg);
    tui_text(s, y, x + (w > len ? (w - len) / 2 : 0), w, role, msg);
}

static const qs_stats *stats(const tui_state *s) { return s->data_ready && s->data ? s->data->stats : NULL; }

typedef struct {
    const tui_state *s;
    int y, x, w, role, row, max, center;
} para_ud;

static void para_line(void *ud, const char *t, int len) {
    para_ud *p = ud;
    if (p->row < p->max) {
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", len < 511 ? len : 511, t);
        if (p->center) centered(p->s, p->y + p->row, p->x, p->w, p->role, buf);
        else tui_text(p->s, p->y + p->row, p->x, p->w, p->role, buf);
    }
    p->row++;
}

/* text wrapped at w columns over at most max rows from y (centred or not) */
static void para(const tui_state *s, int y, int x, int w, int max, int role, int center, const char *text) {
    para_ud p = {s, y, x, w, role, 0, max, center};
    tui_wrap(text, w, para_line, &p);
}

static void waiting(const tui_state *s, int y, int x, int h, int w, const char *what) {
    char msg[300];
    if (s->data_ready && s->data && s->data->note[0] && !stats(s)) tui_copy(msg, sizeof msg, s->data->note);
    else tui_copy(msg, sizeof msg, what);
    /* a long note (what is missing and how to give it) wraps rather than being cut */
    int n = tui_wrap(msg, w - 4, NULL, NULL);
    para(s, y + h / 2 - n / 2, x + 2, w - 4, 4, TUI_C_DIM, 1, msg);
}

/* ---- 1 Channels ---- */

static void draw_channels(tui_state *s, int y, int x, int h, int w) {
    const qs_site_stats *ss = stats(s) ? qs_stats_site(stats(s), s->ch_layer, s->ch_site) : NULL;
    const char *site = qs_site_name(s->ch_site);
    if (!ss) {
        tui_textf(s, y, x + 1, w - 1, TUI_C_TITLE, "Layer %d %s %s", s->ch_layer, tui_glyph(s, "mid"), site);
        waiting(s, y, x, h, w, s->data_ready ? "no statistics for this site" : "calibrating...");
        return;
    }
    int D = ss->dim;
    float tau = s->knobs.tau;
    int have = s->labels && s->cl_layer == s->ch_layer && s->cl_site == s->ch_site && s->n_labels == D;
    /* the title, shortened until it fits (80 columns take the short form) */
    char head[200], next[32] = "";
    const char *mid = tui_glyph(s, "mid");
    if (have && s->cl_g != s->knobs.g) snprintf(next, sizeof next, " (g=%d next)", s->knobs.g);
    for (int form = 0; form < 2; form++) {
        if (have)
            snprintf(head, sizeof head, form ? "L%d %s %s %s %d ch %s g=%d %s %d clusters" : "Layer %d %s %s %s %d channels %s k-means g=%d %s %d clusters",
                     s->ch_layer, mid, site, mid, D, mid, s->cl_g, tui_glyph(s, "right"), s->n_clusters);
        else
            snprintf(head, sizeof head, form ? "L%d %s %s %s %d ch %s clustering (g=%d)..." : "Layer %d %s %s %s %d channels %s clustering (g=%d)...",
                     s->ch_layer, mid, site, mid, D, mid, s->knobs.g);
        if (tui_text_width(s, head) + (int)strlen(next) <= w - 1) break;
    }
    int hw = tui_text(s, y, x + 1, w - 1, TUI_C_TITLE, head);
    if (next[0]) tui_text(s, y, x + 1 + hw, w - 1 - hw, TUI_C_WARN, next);

    /* ranges: every channel, and the tau lines when they are near */
    double xlo = ss->max[0], xhi = ss->max[0], ylo = ss->min[0], yhi = ss->min[0];
    for (int c = 1; c < D; c++) {
        xlo = fmin(xlo, ss->max[c]);
        xhi = fmax(xhi, ss->max[c]);
        ylo = fmin(ylo, ss->min[c]);
        yhi = fmax(yhi, ss->min[c]);
    }
    if (tau < 2 * fmax(xhi, fabs(ylo))) {
        xhi = fmax(xhi, tau * 1.05);
        ylo = fmin(ylo, -tau * 1.05);
    }
    double px = (xhi - xlo) * 0.04 + 1e-6, py = (yhi - ylo) * 0.04 + 1e-6;
    int lw = 7, info = 4;
    int ch = h - 1 - 1 - 2 - info, cw = w - lw - 2;
    if (ch < 4) ch = 4;
    tui_canvas *cv = &canvas;
    /* without colours the clusters are told apart by their glyphs: one
     * character per point, as braille dots carry no glyph */
    tui_canvas_init(cv, cw, ch, s->utf8 && (s->colors || !have), xlo - px, xhi + px, ylo - py, yhi + py, 0);
    /* the tau lines, dashed (tau 0: no outliers, no lines) */
    for (int d = 0; tau > 0 && d < cv->dh; d += 3) tui_canvas_dot(cv, tui_canvas_map_x(cv, tau), d, TUI_C_DIM, 0, ':');
    for (int d = 0; tau > 0 && d < cv->dw; d += 3) tui_canvas_dot(cv, d, tui_canvas_map_y(cv, -tau), TUI_C_DIM, 0, '-');
    int n_out = 0;
    for (int c = 0; c < D; c++) {
        int out = tau > 0 && ss->absmax[c] >= tau;
        n_out += out;
        int lab = have ? s->labels[c] : 0;
        int role = out ? TUI_C_OUTLIER : have ? cluster_role(s, lab) : TUI_C_NORMAL;
        char g = out ? '*' : have ? cluster_glyph(lab) : 'o';
        int dx = tui_canvas_map_x(cv, ss->max[c]), dy = tui_canvas_map_y(cv, ss->min[c]);
        tui_canvas_dot(cv, dx, dy, role, out ? 3 : 1, g);
        if (out && cv->braille) {
            /* a cross, so an outlier stands out from the cloud */
            tui_canvas_dot(cv, dx - 1, dy, role, 3, g);
            tui_canvas_dot(cv, dx + 1, dy, role, 3, g);
            tui_canvas_dot(cv, dx, dy - 1, role, 3, g);
            tui_canvas_dot(cv, dx, dy + 1, role, 3, g);
        }
    }
    int py0 = y + 2, px0 = x + lw + 1;
    tui_canvas_render(s, cv, py0, px0);
    tui_canvas_axes(s, cv, py0, px0, lw, "max of channel", "min of channel");
    scatter.valid = 1;
    scatter.y = py0;
    scatter.x = px0;
    scatter.rows = cv->h;
    scatter.cols = cv->w;
    scatter.braille = cv->braille;
    scatter.dw = cv->dw;
    scatter.dh = cv->dh;
    scatter.x0 = cv->x0;
    scatter.x1 = cv->x1;
    scatter.y0 = cv->y0;
    scatter.y1 = cv->y1;
    scatter.layer = s->ch_layer;
    scatter.site = s->ch_site;
    /* the cursor's cell */
    int c = s->ch_cursor;
    int dx = tui_canvas_map_x(cv, ss->max[c]), dy = tui_canvas_map_y(cv, ss->min[c]);
    if (dx >= 0 && dy >= 0) highlight(s, py0 + (cv->braille ? dy / 4 : dy), px0 + (cv->braille ? dx / 2 : dx), 1, TUI_C_CURSOR);

    int iy = py0 + ch + 2;
    char line[300];
    int out = tau > 0 && ss->absmax[c] >= tau;
    tui_textf(s, iy, x + 1, w - 2, TUI_C_NORMAL, "%s channel %d: min %.3f  max %.3f  |x|max %.3f", tui_glyph(s, "cursor"),
              c, ss->min[c], ss->max[c], ss->absmax[c]);
    int used = 0;
    if (have) used = tui_textf(s, iy + 1, x + 3, w - 4, TUI_C_NORMAL, "cluster %d of %d%s", s->labels[c], s->n_clusters, out ? ", " : "");
    if (out) tui_textf(s, iy + 1, x + 3 + used, w - 4 - used, TUI_C_OUTLIER, "OUTLIER (|x| %s %.1f)", tui_glyph(s, "ge"), tau);
    iy++;
    /* which channels reach tau, strongest first */
    int list[12], nl = 0;
    for (int k = 0; k < D && tau > 0; k++) {
        if (ss->absmax[k] < tau) continue;
        if (nl == 12 && ss->absmax[list[11]] >= ss->absmax[k]) continue; /* the 12 strongest so far stay */
        int at = nl < 12 ? nl++ : 11;
        while (at > 0 && ss->absmax[list[at - 1]] < ss->absmax[k]) {
            list[at] = list[at - 1];
            at--;
        }
        list[at] = k;
    }
    int n = tau > 0 ? snprintf(line, sizeof line, "outliers (|x| %s %.1f): %d channel%s", tui_glyph(s, "ge"), tau, n_out, n_out == 1 ? "" : "s")
                    : snprintf(line, sizeof line, "%s 0: outlier decomposition off, no channel kept in fp32", tui_glyph(s, "tau"));
    for (int k = 0; k < nl && n > 0 && n < (int)sizeof line - 24; k++)
        n += snprintf(line + n, sizeof line - n, "%s %d (%.1f)", k ? "," : ":", list[k], ss->absmax[list[k]]);
    tui_text(s, iy + 1, x + 1, w - 2, n_out ? TUI_C_OUTLIER : TUI_C_DIM, line);

    /* the legend: one swatch per cluster with its size */
    if (!have) return;
    int lx = x + 1, ly = iy + 2;
    lx += tui_text(s, ly, lx, w - 1, TUI_C_DIM, "clusters (size) ");
    int counts[64] = {0};
    for (int k = 0; k < D; k++)
        if (s->labels[k] < 64) counts[s->labels[k]]++;
    for (int k = 0; k < s->n_clusters && k < 64; k++) {
        char sw[24];
        /* a coloured swatch, or without colours the glyph and a colon: "3:27" */
        if (s->colors) tui_copy(sw, sizeof sw, tui_glyph(s, "square"));
        else snprintf(sw, sizeof sw, "%c:", cluster_glyph(k));
        if (lx + 7 > x + w) {
            tui_text(s, ly, lx, 3, TUI_C_DIM, tui_glyph(s, "ellipsis"));
            break;
        }
        lx += tui_text(s, ly, lx, 2, cluster_role(s, k), sw);
        lx += tui_textf(s, ly, lx, 5, TUI_C_DIM, "%d ", counts[k]);
    }
}

/* ---- 2 Outliers ---- */

static int heat_level(double f) {
    int i = (int)floor(f * TUI_N_HEAT);
    return i < 0 ? 0 : i >= TUI_N_HEAT ? TUI_N_HEAT - 1 : i;
}

static void heat_cell(const tui_state *s, int y, int x, int level, int cursor) {
    static const char ramp[] = " .:-=+*#%@";
    /* density and colour both carry the level, so the map reads without colours too */
    static const char *const shades[5] = {"\xc2\xb7", "\xe2\x96\x91", "\xe2\x96\x92", "\xe2\x96\x93", "\xe2\x96\x88"};
    int role = cursor ? TUI_C_CURSOR : s->colors ? TUI_C_HEAT0 + level : TUI_C_NORMAL;
    char g[2] = {ramp[level], 0};
    tui_text(s, y, x, 1, role, s->utf8 ? shades[level * 5 / TUI_N_HEAT] : g);
}

static void draw_outliers(tui_state *s, int y, int x, int h, int w) {
    const qs_stats *st = s->tstats ? s->tstats : stats(s);
    float tau = s->knobs.tau;
    char what[64];
    if (s->ol_site < 0) tui_copy(what, sizeof what, "Linear-layer inputs");
    else snprintf(what, sizeof what, "Site %s", qs_site_name(s->ol_site));
    tui_textf(s, y, x + 1, w - 1, TUI_C_TITLE, "%s, layer %s channel: %s", what, tui_glyph(s, "times"),
              s->ol_freq ? "share of tokens with |x| >= tau" : "largest |x|");
    if (!st) {
        waiting(s, y, x, h, w, "calibrating...");
        return;
    }
    int L = s->m->cfg.n_layers, rows = tui_state_ol_rows(s), D = 0;
    for (int r = 0; r < rows && !D; r++) {
        int l, site;
        tui_state_ol_row(s, r, &l, &site);
        const qs_site_stats *ss = qs_stats_site(st, l, site);
        if (ss) D = ss->dim;
    }
    if (!D) {
        char msg[96];
        snprintf(msg, sizeof msg, "no statistics of %s (s: another site)", s->ol_site < 0 ? "attn_in" : qs_site_name(s->ol_site));
        waiting(s, y, x, h, w, msg);
        return;
    }
    int list_w = w >= 70 ? 26 : 21, lab_w = 13;
    int hw = w - lab_w - list_w - 2;
    if (hw < 8) hw = 8;
    int per = (D + hw - 1) / hw; /* channels per column */
    int cols = (D + per - 1) / per;
    int vis_rows = h - 7;
    int top = s->ol_row >= vis_rows ? s->ol_row - vis_rows + 1 : 0;
    /* tau 0 has no outliers: the share of tokens over it is not gathered */
    int freq_ok = !s->ol_freq || (tau > 0 && s->tstats_tau == tau);
    /* the scale: absmax against the largest, frequency against the largest share */
    double vmax = 0;
    for (int r = 0; r < rows; r++) {
        int l, site;
        tui_state_ol_row(s, r, &l, &site);
        const qs_site_stats *ss = qs_stats_site(st, l, site);
        for (int c = 0; ss && c < ss->dim; c++) {
            double v = s->ol_freq ? (ss->tokens ? (double)ss->n_over[c] / ss->tokens : 0) : ss->absmax[c];
            vmax = fmax(vmax, v);
        }
    }
    if (!(vmax > 0)) vmax = 1;
    int hy = y + 2;
    tui_textf(s, y + 1, x + 1 + lab_w, hw, TUI_C_DIM, "0%*s%d", cols - 1 - (D - 1 >= 1000 ? 4 : D - 1 >= 100 ? 3 : D - 1 >= 10 ? 2 : 1), "",
              D - 1);
    for (int i = 0; i < vis_rows && top + i < rows; i++) {
        int r = top + i, l, site;
        tui_state_ol_row(s, r, &l, &site);
        const qs_site_stats *ss = qs_stats_site(st, l, site);
        tui_textf(s, hy + i, x + 1, lab_w, r == s->ol_row ? TUI_C_ACCENT : TUI_C_DIM, "L%d %s", l, qs_site_name(site));
        for (int k = 0; ss && k < cols; k++) {
            double v = 0;
            for (int c = k * per; c < (k + 1) * per && c < ss->dim; c++)
                v = fmax(v, s->ol_freq ? (ss->tokens ? (double)ss->n_over[c] / ss->tokens : 0) : ss->absmax[c]);
            int cur = r == s->ol_row && s->ol_col / per == k;
            heat_cell(s, hy + i, x + 1 + lab_w + k, freq_ok ? heat_level(v / vmax) : 0, cur);
        }
    }
    /* the scale */
    int sy = hy + (vis_rows < rows ? vis_rows : rows) + 1;
    int sx = x + 1 + lab_w;
    sx += tui_text(s, sy, x + 1, lab_w, TUI_C_DIM, "scale");
    tui_text(s, sy, sx, 2, TUI_C_DIM, "0 ");
    for (int k = 0; k < TUI_N_HEAT; k++) heat_cell(s, sy, sx + 2 + k, k, 0);
    char vb[32];
    if (s->ol_freq) snprintf(vb, sizeof vb, " %.0f%%", 100 * vmax);
    else snprintf(vb, sizeof vb, " %.2f", vmax);
    tui_text(s, sy, sx + 2 + TUI_N_HEAT, 10, TUI_C_DIM, vb);
    /* up to the list's rule, not over it */
    if (!freq_ok && tau > 0) tui_textf(s, sy, sx + 20, x + w - list_w - 1 - (sx + 20), TUI_C_WARN, "(gathering tau %.1f)", tau);
    else if (!freq_ok) tui_text(s, sy, sx + 20, x + w - list_w - 1 - (sx + 20), TUI_C_WARN, "(tau 0: off)");

    /* the cursor's channel */
    {
        int l, site, c = s->ol_col;
        tui_state_ol_row(s, s->ol_row, &l, &site);
        const qs_site_stats *ss = qs_stats_site(st, l, site);
        int iw = w - 2;
        if (ss && c < ss->dim) {
            double f = ss->tokens ? (double)ss->n_over[c] / ss->tokens : 0;
            tui_textf(s, sy + 1, x + 1, iw, TUI_C_NORMAL, "%s L%d %s channel %d: |x|max %.2f", tui_glyph(s, "cursor"), l,
                      qs_site_name(site), c, ss->absmax[c]);
            if (tau > 0 && s->tstats_tau == tau)
                tui_textf(s, sy + 2, x + 3, iw - 2, TUI_C_NORMAL, "|x| %s %.1f at %.1f%% of the tokens", tui_glyph(s, "ge"),
                          tau, 100 * f);
            else if (tau <= 0)
                tui_textf(s, sy + 2, x + 3, iw - 2, TUI_C_DIM, "%s 0: no outliers (decomposition off)", tui_glyph(s, "tau"));
            if (per > 1)
                tui_textf(s, sy + 3, x + 3, iw - 2, TUI_C_DIM, "one column: %d channels, the largest shown", per);
        }
    }

    /* the LLM.int8() outlier dimensions */
    int lx = x + w - list_w, ly = y + 2;
    int list_end = sy + 1; /* the cursor's lines below use the whole width */
    attrset(tui_attr(s, TUI_C_AXIS));
    for (int r = y + 1; r < list_end; r++) mvaddstr(r, lx - 1, tui_glyph(s, "vline"));
    attrset(A_NORMAL);
    tui_text(s, ly++, lx + 1, list_w - 1, TUI_C_TITLE, "LLM.int8() outliers");
    tui_textf(s, ly++, lx + 1, list_w - 1, TUI_C_DIM, "|x| %s %.1f in %s 25%%", tui_glyph(s, "ge"), s->tstats_tau, tui_glyph(s, "ge"));
    tui_textf(s, ly++, lx + 1, list_w - 1, TUI_C_DIM, "of layers, %s 6%% of", tui_glyph(s, "ge"));
    tui_text(s, ly++, lx + 1, list_w - 1, TUI_C_DIM, "the positions");
    ly++;
    if (tau <= 0) {
        /* int8:threshold=0: every column goes through int8 */
        tui_textf(s, ly++, lx + 1, list_w - 1, TUI_C_WARN, "%s 0: decomposition", tui_glyph(s, "tau"));
        tui_text(s, ly++, lx + 1, list_w - 1, TUI_C_WARN, "off: none in fp32");
        return;
    }
    if (s->tstats_tau != tau) {
        tui_textf(s, ly++, lx + 1, list_w - 1, TUI_C_WARN, "gathering tau %.1f...", tau);
    }
    if (!s->n_outl) tui_text(s, ly++, lx + 1, list_w - 1, TUI_C_DIM, "none");
    for (int i = 0; i < s->n_outl && ly < list_end - 1; i++) {
        const qs_outlier *o = &s->outl[i];
        tui_textf(s, ly++, lx + 1, list_w - 1, TUI_C_OUTLIER, "dim %d  max %.2f", o->dim, o->absmax);
        if (ly < list_end)
            tui_textf(s, ly++, lx + 2, list_w - 2, TUI_C_NORMAL, "%d/%d inputs, %.0f%% pos", o->n_inputs, 2 * L,
                      100 * o->pos_frac);
        if (ly < list_end) {
            char lays[128] = "layers";
            int n = (int)strlen(lays);
            for (int l = 0; l < L && l < 64 && n < (int)sizeof lays - 5; l++)
                if (o->layer_mask >> l & 1) n += snprintf(lays + n, sizeof lays - n, " %d", l);
            tui_text(s, ly++, lx + 2, list_w - 2, TUI_C_DIM, lays);
        }
    }
}

/* ---- 3 Spectrum ---- */

static void draw_spectrum(tui_state *s, int y, int x, int h, int w) {
    int L = s->m->cfg.n_layers;
    const char *which = s->sp_which ? "MLP input" : "block input";
    const tui_spectrum *sp = &s->spectrum;
    int layer = s->sp_layer < L ? s->sp_layer : L - 1;
    tui_textf(s, y, x + 1, w - 1, TUI_C_TITLE, "SliceGPT PCA spectrum, layer %d (%s)", layer, which);
    int D = 0, kept = 0;
    const double *ev = sp->var ? qs_variant_eigenvalues(sp->var->v, layer, s->sp_which, &D, &kept) : NULL;
    if (!ev || D <= 0) {
        const char *why = !s->data_ready                      ? "calibrating..."
                          : !s->data || !s->data->have_cov    ? "no covariance was gathered (d_model > 1024)"
                          : sp->err[0]                        ? sp->err
                                                              : "SliceGPT's PCA is being computed...";
        waiting(s, y, x, h, w, why);
        return;
    }
    int table_w = w >= 70 ? 24 : 19, lw = 7;
    int cw = w - lw - 2 - table_w - 1, ch = h - 1 - 1 - 2 - 3;
    double lo = 1e300, hi = 0;
    for (int i = 0; i < D; i++)
        if (ev[i] > 0) {
            lo = fmin(lo, ev[i]);
            hi = fmax(hi, ev[i]);
        }
    if (!(hi > 0)) hi = 1, lo = 0.1;
    lo = fmax(lo, hi * 1e-8);
    tui_canvas *cv = &canvas;
    tui_canvas_init(cv, cw, ch, s->utf8, 0, D - 1, pow(10, floor(log10(lo))), pow(10, ceil(log10(hi))), 1);
    int prev_x = -1, prev_y = -1;
    for (int i = 0; i < D; i++) {
        double v = ev[i] > lo ? ev[i] : lo;
        int dx = tui_canvas_map_x(cv, i), dy = tui_canvas_map_y(cv, v);
        int role = i < kept ? TUI_C_BAR : TUI_C_DIM;
        if (prev_x >= 0) {
            int n = abs(dx - prev_x) > abs(dy - prev_y) ? abs(dx - prev_x) : abs(dy - prev_y);
            for (int k = 1; k <= n; k++)
                tui_canvas_dot(cv, prev_x + (dx - prev_x) * k / n, prev_y + (dy - prev_y) * k / n, role, 1,
                               i < kept ? '*' : '.');
        }
        tui_canvas_dot(cv, dx, dy, role, 1, i < kept ? '*' : '.');
        prev_x = dx;
        prev_y = dy;
    }
    int cut_x = tui_canvas_map_x(cv, kept - 0.5);
    for (int d = 0; d < cv->dh; d++) tui_canvas_dot(cv, cut_x, d, TUI_C_WARN, 2, '|');
    int py0 = y + 2, px0 = x + lw + 1;
    tui_canvas_render(s, cv, py0, px0);
    tui_canvas_axes(s, cv, py0, px0, lw, "component", "eigenvalue (log)");
    int cut_col = px0 + (cv->braille ? cut_x / 2 : cut_x);
    char cl[32];
    snprintf(cl, sizeof cl, "cut d=%d", kept);
    int cl_len = (int)strlen(cl);
    tui_text(s, py0, cut_col + 1 + cl_len < px0 + cw ? cut_col + 1 : cut_col - cl_len, cl_len, TUI_C_WARN, cl);

    int iy = py0 + ch + 2, iw = w - table_w - 2;
    tui_textf(s, iy, x + 1, iw, TUI_C_NORMAL, "ratio %.2f: keep d = %d of %d", sp->ratio, kept, D);
    tui_textf(s, iy + 1, x + 1, iw, TUI_C_ACCENT, "variance kept %.2f%% (layer %d)", 100 * sp->frac[s->sp_which][layer],
              layer);
    /* the source is the model itself, whatever method the panel holds: only the ratio moves the cut */
    tui_text(s, iy + 2, x + 1, iw, TUI_C_DIM, "source: fp32 model's PCA, any method");

    /* variance kept per layer */
    int tx = x + w - table_w;
    attrset(tui_attr(s, TUI_C_AXIS));
    for (int r = y + 1; r < y + h; r++) mvaddstr(r, tx - 1, tui_glyph(s, "vline"));
    attrset(A_NORMAL);
    tui_text(s, y + 2, tx + 1, table_w - 1, TUI_C_TITLE, "variance kept");
    int ty = y + 3;
    for (int l = 0; l < L && ty < y + h; l++, ty++) {
        double f = sp->frac[s->sp_which][l];
        int sel = l == layer;
        tui_textf(s, ty, tx + 1, 4, sel ? TUI_C_ACCENT : TUI_C_DIM, "L%-2d", l);
        tui_bar(s, ty, tx + 5, table_w - 13, f, sel ? TUI_C_ACCENT : TUI_C_BAR);
        tui_textf(s, ty, tx + table_w - 7, 7, sel ? TUI_C_ACCENT : TUI_C_NORMAL, "%5.1f%%", 100 * f);
    }
}

/* ---- 4 Compare ---- */

static void draw_compare(tui_state *s, int y, int x, int h, int w) {
    tui_text(s, y, x + 1, w - 1, TUI_C_TITLE, "Variants tried this session");
    const tui_row *base = tui_state_base_row(s);
    double pmax = 0, bmax = 0;
    for (int i = 0; i < s->n_rows; i++)
        if (s->rows[i].status == 1) {
            if (!isnan(s->rows[i].ppl)) pmax = fmax(pmax, s->rows[i].ppl);
            bmax = fmax(bmax, (double)s->rows[i].wbytes);
        }
    int sw = w - 1 - 44 > 14 ? w - 1 - 44 : 14;
    /* the header's columns end where the numbers' do: placed by display
     * width, as "\xce\x94ppl" is 5 bytes and 4 columns */
    static const char *const heads[5] = {"ppl", "dppl", "MB", "KV B/t", "tok/s"};
    static const int widths[5] = {8, 8, 7, 6, 6};
    tui_text(s, y + 2, x + 1, sw, TUI_C_DIM, "variant");
    for (int k = 0, cx = x + 1 + sw; k < 5; k++) {
        cx += 1 + widths[k];
        char hd[16];
        snprintf(hd, sizeof hd, "%s", k == 1 ? (s->utf8 ? "\xce\x94ppl" : "dppl") : heads[k]);
        int hw = tui_text_width(s, hd);
        tui_text(s, y + 2, cx - hw, hw, TUI_C_DIM, hd);
    }
    int per = 2, vis = (h - 7) / per;
    if (vis < 1) vis = 1;
    int top = s->cmp_sel >= vis ? s->cmp_sel - vis + 1 : 0;
    int ry = y + 3;
    for (int i = top; i < s->n_rows && i < top + vis; i++, ry += per) {
        const tui_row *r = &s->rows[i];
        int sel = i == s->cmp_sel;
        char name[200];
        snprintf(name, sizeof name, "%s%s", r->spec, r->full ? " (all)" : "");
        if (sel) tui_fill(s, ry, x, 1, w, TUI_C_SELECT);
        int role = sel ? TUI_C_SELECT : TUI_C_NORMAL;
        tui_textf(s, ry, x + 1, sw, sel ? TUI_C_SELECT : TUI_C_ACCENT, "%s", name);
        if (r->status == 0) {
            const char *lbl = s->js.busy && strstr(s->js.label, r->spec) ? s->js.label : "queued";
            char prog[200];
            if (s->js.busy && strstr(s->js.label, r->spec) && s->js.total > 0)
                snprintf(prog, sizeof prog, "running: %s %ld/%ld", lbl, s->js.done, s->js.total);
            else
                tui_copy(prog, sizeof prog, strstr(lbl, r->spec) ? "running" : "queued");
            tui_text(s, ry, x + 2 + sw, w - sw - 3, sel ? TUI_C_SELECT : TUI_C_WARN, prog);
            continue;
        }
        if (r->status < 0) {
            tui_textf(s, ry, x + 2 + sw, w - sw - 3, sel ? TUI_C_SELECT : TUI_C_ERR, "error: %s", r->err);
            continue;
        }
        char nums[160], ppl[16] = "-", dppl[16] = "-", tps[16] = "-";
        if (!isnan(r->ppl)) {
            snprintf(ppl, sizeof ppl, "%.3f", r->ppl);
            const tui_row *b = r->full ? tui_state_base_row_full(s, 1) : base;
            if (b && b->status == 1 && !isnan(b->ppl)) snprintf(dppl, sizeof dppl, "%+.3f", r->ppl - b->ppl);
            snprintf(tps, sizeof tps, "%.0f", r->tok_s);
        }
        snprintf(nums, sizeof nums, "%8s %8s %7.2f %6lld %6s", ppl, dppl, r->wbytes / 1e6, r->kvbytes, tps);
        tui_text(s, ry, x + 1 + sw + 1, w - sw - 2, role, nums);
        /* the bars: perplexity (lower is better) and size */
        int bw = (w - 12) / 2;
        if (!isnan(r->ppl) && pmax > 0) {
            tui_text(s, ry + 1, x + 3, 4, TUI_C_DIM, "ppl");
            tui_bar(s, ry + 1, x + 7, bw - 6, r->ppl / pmax, TUI_C_BAR2);
        }
        if (bmax > 0) {
            tui_text(s, ry + 1, x + 3 + bw, 3, TUI_C_DIM, "MB");
            tui_bar(s, ry + 1, x + 6 + bw, bw - 4, r->wbytes / bmax, TUI_C_BAR);
        }
    }
    if (s->n_rows > vis) {
        /* which row of how many: on the title's row, clear of the column heads */
        char cnt[32];
        int n = snprintf(cnt, sizeof cnt, "row %d/%d", s->cmp_sel + 1, s->n_rows);
        tui_text(s, y, x + w - n - 1, n, TUI_C_DIM, cnt);
    }
    /* the selected row in words */
    int dy = y + h - 4;
    if (s->n_rows && s->rows[s->cmp_sel].status == 1) {
        const tui_row *r = &s->rows[s->cmp_sel];
        tui_textf(s, dy, x + 1, w - 1, TUI_C_DIM, "%s", r->desc);
        if (r->windows && s->data) {
            const char *p = strrchr(s->data->eval_path, '/');
            tui_textf(s, dy + 1, x + 1, w - 1, TUI_C_DIM, "ppl over %d window%s (%d tokens) of %s; %lld parameters", r->windows,
                      r->windows == 1 ? "" : "s", s->data->ctx, p ? p + 1 : s->data->eval_path, r->params);
        }
    }
    if (s->data_ready && s->data && !s->data->eval_ids) {
        char note[320];
        snprintf(note, sizeof note, "sizes only: %s", s->data->eval_note[0] ? s->data->eval_note : "no evaluation text");
        para(s, dy + 2, x + 1, w - 2, 2, TUI_C_WARN, 0, note);
    }
}

/* ---- 5 Generate ---- */

typedef struct {
    const tui_state *s;
    int y, x, w, row, skip, max_rows;
} gen_wrap;

static void gen_line(void *ud, const char *t, int len) {
    gen_wrap *g = ud;
    if (g->row >= g->skip && g->row - g->skip < g->max_rows) {
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", len < 511 ? len : 511, t);
        tui_text(g->s, g->y + g->row - g->skip, g->x, g->w, TUI_C_NORMAL, buf);
    }
    g->row++;
}

static void count_line(void *ud, const char *t, int len) {
    (void)t;
    (void)len;
    (*(int *)ud)++;
}

static void draw_generate(tui_state *s, int y, int x, int h, int w) {
    tui_text(s, y, x + 1, w - 1, TUI_C_TITLE, "Generate: the same prompt, two variants, token by token");
    int used = tui_text(s, y + 2, x + 1, 8, TUI_C_DIM, "prompt ");
    tui_text(s, y + 2, x + 1 + used, w - used - 2, TUI_C_ACCENT, s->prompt_text[0] ? s->prompt_text : "(empty: from BOS)");
    const tui_gen_opts *go = &s->gen_opts;
    char set[160];
    if (go->temp > 0)
        snprintf(set, sizeof set, "%d tokens %s temp %.1f %s top-p %.2f %s seed %d", go->n_tokens, tui_glyph(s, "mid"),
                 go->temp, tui_glyph(s, "mid"), go->top_p, tui_glyph(s, "mid"), go->seed);
    else
        snprintf(set, sizeof set, "%d tokens %s greedy", go->n_tokens, tui_glyph(s, "mid"));
    tui_text(s, y + 3, x + 1, w - 2, TUI_C_DIM, set);
    int cw = (w - 3) / 2;
    for (int side = 0; side < 2; side++) {
        const tui_gen_side *g = &s->gen[side];
        int cx = x + 1 + side * (cw + 2);
        char head[240];
        if (!g->spec[0]) snprintf(head, sizeof head, "%c %s", 'A' + side, tui_state_gen_spec(s, side));
        else if (g->running) snprintf(head, sizeof head, "%c %s  %d tok...", 'A' + side, g->spec, g->tokens);
        else if (g->ctx_full) /* the speed gives way: the Log has the rest */
            snprintf(head, sizeof head, "%c %s  %d tok, context full", 'A' + side, g->spec, g->tokens);
        else if (g->seconds > 0)
            snprintf(head, sizeof head, "%c %s  %d tok, %.0f tok/s", 'A' + side, g->spec, g->tokens, g->tokens / g->seconds);
        else snprintf(head, sizeof head, "%c %s", 'A' + side, g->spec);
        tui_text(s, y + 4, cx, cw, side == 0 ? TUI_C_BAR : TUI_C_BAR2, head);
        attrset(tui_attr(s, TUI_C_AXIS));
        for (int k = 0; k < cw; k++) mvaddstr(y + 5, cx + k, tui_glyph(s, "hline"));
        attrset(A_NORMAL);
        if (g->err[0]) tui_text(s, y + 6, cx, cw, TUI_C_ERR, g->err);
        else if (g->text && g->len) {
            /* the prompt's text, then what was generated; the newest lines stay in view */
            char *all = malloc(strlen(s->prompt_text) + g->len + 1);
            if (!all) continue;
            sprintf(all, "%s%s", s->prompt_text, g->text);
            int total = 0;
            tui_wrap(all, cw, count_line, &total);
            int max_rows = h - 7;
            gen_wrap gw = {s, y + 6, cx, cw, 0, total > max_rows ? total - max_rows : 0, max_rows};
            tui_wrap(all, cw, gen_line, &gw);
            free(all);
        } else if (!g->spec[0] && side == 0) {
            tui_text(s, y + 6, cx, cw, TUI_C_DIM, "g generates, e edits the prompt");
        }
    }
    if (w > 2) {
        attrset(tui_attr(s, TUI_C_AXIS));
        for (int r = y + 4; r < y + h; r++) mvaddstr(r, x + 1 + cw, tui_glyph(s, "vline"));
        attrset(A_NORMAL);
    }
}

/* ---- 6 Log ---- */

typedef struct {
    const char *t[TUI_LOG_TEXT];
    int len[TUI_LOG_TEXT], n;
} log_wrap;

static void log_piece(void *ud, const char *t, int len) {
    log_wrap *lw = ud;
    if (lw->n < TUI_LOG_TEXT) {
        lw->t[lw->n] = t;
        lw->len[lw->n++] = len;
    }
}

int tui_view_log_rows(const char *text, int w) {
    if (!text[0]) return 1;
    return tui_wrap(text, w - 2, NULL, NULL);
}

static void draw_log(tui_state *s, int y, int x, int h, int w) {
    tui_textf(s, y, x + 1, w - 1, TUI_C_TITLE, "Log (%ld message%s)", s->log_n, s->log_n == 1 ? "" : "s");
    /* the entries from log_back up, newest at the bottom, each wrapped at the
     * pane's width; the oldest one shown may show only its last rows */
    static log_wrap lw;
    int bottom = y + h - 1, top = y + 2;
    for (long back = s->log_back; bottom >= top; back++) {
        const tui_logline *l = tui_state_log_line(s, back);
        if (!l) break;
        int role = l->level == 3 ? TUI_C_ERR : l->level == QS_LOG_WARN ? TUI_C_WARN : l->level == 4 ? TUI_C_LUA
                 : l->level == QS_LOG_DEBUG ? TUI_C_DIM : TUI_C_NORMAL;
        lw.n = 0;
        if (l->text[0]) tui_wrap(l->text, w - 2, log_piece, &lw);
        else log_piece(&lw, l->text, 0);
        for (int i = lw.n - 1; i >= 0 && bottom >= top; i--, bottom--) {
            char buf[TUI_LOG_TEXT + 1];
            snprintf(buf, sizeof buf, "%.*s", lw.len[i], lw.t[i]);
            tui_text(s, bottom, x + 1, w - 2, role, buf);
        }
    }
    if (s->log_back) tui_textf(s, y, x + w - 16, 16, TUI_C_DIM, "(%ld more below)", s->log_back);
}

/* ---- 7 Plot ---- */

static double pick(double given, double data) { return isnan(given) ? data : given; }

static void plot_bars(tui_state *s, const tui_plot *p, int y, int x, int h, int w, double ylo, double yhi) {
    static const char *const eighth[9] = {" ", "\xe2\x96\x81", "\xe2\x96\x82", "\xe2\x96\x83", "\xe2\x96\x84",
                                          "\xe2\x96\x85", "\xe2\x96\x86", "\xe2\x96\x87", "\xe2\x96\x88"};
    int n = p->s[0].n, lw = 8;
    int cw = w - lw - 2, ch = h;
    if (n <= 0 || cw < 1) return;
    int bw = cw / n >= 2 ? cw / n : 1, shown = cw / bw < n ? cw / bw : n;
    double base = ylo < 0 && yhi > 0 ? 0 : ylo;
    int base_row = (int)floor((yhi - base) / (yhi - ylo) * ch); /* rows above the baseline */
    attrset(tui_attr(s, TUI_C_AXIS));
    for (int r = 0; r < ch; r++) mvaddstr(y + r, x + lw, tui_glyph(s, "vline"));
    attrset(A_NORMAL);
    char buf[32];
    tui_fmt_num(yhi, buf, sizeof buf);
    tui_text(s, y, x + 1, lw - 2, TUI_C_AXIS, buf);
    tui_fmt_num(ylo, buf, sizeof buf);
    tui_text(s, y + ch - 1, x + 1, lw - 2, TUI_C_AXIS, buf);
    for (int i = 0; i < shown; i++) {
        double v = p->s[0].y[i];
        if (!isfinite(v)) continue;
        int role = cluster_role(s, p->s[0].group ? p->s[0].group[i] : 0);
        int bx = x + lw + 1 + i * bw, width = bw > 1 ? bw - 1 : 1;
        if (v >= base) {
            int units = (int)lround((v - base) / (yhi - ylo) * ch * 8);
            for (int r = 0; r < base_row && units > 0; r++, units -= 8) {
                const char *g = s->utf8 ? eighth[units >= 8 ? 8 : units] : units >= 4 ? "#" : ".";
                for (int k = 0; k < width; k++) tui_text(s, y + base_row - 1 - r, bx + k, 1, role, g);
            }
        } else {
            int rows = (int)lround((base - v) / (yhi - ylo) * ch);
            for (int r = 0; r < rows && base_row + r < ch; r++)
                for (int k = 0; k < width; k++) tui_text(s, y + base_row + r, bx + k, 1, role, tui_glyph(s, "block"));
        }
        /* a label (or the position) under each bar that has room */
        char lab[32];
        if (p->labels) tui_copy(lab, sizeof lab, p->labels[i]);
        else tui_fmt_num(p->s[0].x ? p->s[0].x[i] : p->x0 + i, lab, sizeof lab);
        if ((int)strlen(lab) <= width) tui_text(s, y + ch, bx, width, TUI_C_DIM, lab);
    }
    if (shown < n) tui_textf(s, y + ch + 1, x + lw + 1, cw, TUI_C_WARN, "%d of %d bars shown", shown, n);
}

static void plot_heatmap(tui_state *s, const tui_plot *p, int y, int x, int h, int w) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < p->rows * p->cols; i++) {
        double v = p->z[i];
        if (!isfinite(v) || (p->logy && v <= 0)) continue;
        v = p->logy ? log10(v) : v;
        lo = fmin(lo, v);
        hi = fmax(hi, v);
    }
    if (!isfinite(lo)) {
        centered(s, y + h / 2, x, w, TUI_C_DIM, "no finite values to plot");
        return;
    }
    int lw = 10, cw = w - lw - 2;
    int rows = p->rows < h - 2 ? p->rows : h - 2, cols = p->cols < cw ? p->cols : cw;
    for (int r = 0; r < rows; r++) {
        int r0 = r * p->rows / rows, r1 = (r + 1) * p->rows / rows;
        if (p->row_labels) tui_text(s, y + r, x + 1, lw - 1, TUI_C_DIM, p->row_labels[r0]);
        else tui_textf(s, y + r, x + 1, lw - 1, TUI_C_DIM, "%g", p->y0 + r0);
        for (int c = 0; c < cols; c++) {
            double v = -INFINITY;
            /* the largest value of the cells a character covers */
            for (int rr = r0; rr < r1; rr++)
                for (int cc = c * p->cols / cols; cc < (c + 1) * p->cols / cols; cc++) {
                    double z = p->z[(size_t)rr * p->cols + cc];
                    if (isfinite(z) && (!p->logy || z > 0)) v = fmax(v, p->logy ? log10(z) : z);
                }
            heat_cell(s, y + r, x + lw + c, isfinite(v) ? heat_level(hi > lo ? (v - lo) / (hi - lo) : 1) : 0, 0);
        }
    }
    int sy = y + rows + 1, sx = x + lw;
    tui_text(s, sy, x + 1, lw - 1, TUI_C_DIM, "scale");
    for (int k = 0; k < TUI_N_HEAT; k++) heat_cell(s, sy, sx + k, k, 0);
    tui_textf(s, sy, sx + TUI_N_HEAT + 1, cw - TUI_N_HEAT - 1, TUI_C_DIM, "%s%.4g .. %.4g  (%d x %d)", p->logy ? "log10 " : "",
              lo, hi, p->rows, p->cols);
}

static void draw_plot(tui_state *s, int y, int x, int h, int w) {
    const tui_plot *p = &s->plot;
    if (!p->kind) {
        tui_text(s, y, x + 1, w - 1, TUI_C_TITLE, "Plot");
        centered(s, y + h / 2 - 1, x, w, TUI_C_DIM, "nothing plotted yet");
        centered(s, y + h / 2, x, w, TUI_C_DIM,
                 "try  :qs.plot.line({1, 4, 9, 16, 25})");
        return;
    }
    tui_text(s, y, x + 1, w - 1, TUI_C_TITLE, p->title[0] ? p->title : "Plot");
    if (p->kind == TUI_PLOT_HEATMAP) {
        if (p->z && p->rows > 0 && p->cols > 0) plot_heatmap(s, p, y + 2, x, h - 2, w);
        return;
    }
    /* the data's ranges, unless the plot fixes them */
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int k = 0; k < p->n_series; k++)
        for (int i = 0; i < p->s[k].n; i++) {
            double xv = p->s[k].x ? p->s[k].x[i] : p->x0 + i, yv = p->s[k].y[i];
            if (!isfinite(xv) || !isfinite(yv) || (p->logy && yv <= 0)) continue;
            xlo = fmin(xlo, xv);
            xhi = fmax(xhi, xv);
            ylo = fmin(ylo, yv);
            yhi = fmax(yhi, yv);
        }
    if (!isfinite(xlo)) {
        centered(s, y + h / 2, x, w, TUI_C_DIM, "no finite values to plot");
        return;
    }
    if (p->kind == TUI_PLOT_BARS) ylo = fmin(ylo, 0);
    if (!p->logy && p->kind != TUI_PLOT_BARS) {
        double pad = (yhi - ylo) * 0.05;
        ylo -= pad;
        yhi += pad;
    }
    xlo = pick(p->xmin, xlo);
    xhi = pick(p->xmax, xhi);
    ylo = pick(p->ymin, ylo);
    yhi = pick(p->ymax, yhi);
    if (!(yhi > ylo)) yhi = ylo + 1;
    int legend = p->n_groups > 0 || p->n_series > 1;
    if (p->kind == TUI_PLOT_BARS) {
        plot_bars(s, p, y + 2, x, h - 4 - legend, w, ylo, yhi);
        return;
    }
    int lw = 8, cw = w - lw - 2, ch = h - 2 - 2 - legend;
    tui_canvas *cv = &canvas;
    /* several groups and no colours: glyphs tell them apart, so no braille */
    tui_canvas_init(cv, cw, ch, s->utf8 && (s->colors || !legend), xlo, xhi, ylo, yhi, p->logy);
    /* marker lines first, so the data draws over them */
    if (!isnan(p->vline))
        for (int d = 0; d < cv->dh; d += 2) tui_canvas_dot(cv, tui_canvas_map_x(cv, p->vline), d, TUI_C_WARN, 0, ':');
    if (!isnan(p->hline))
        for (int d = 0; d < cv->dw; d += 2) tui_canvas_dot(cv, d, tui_canvas_map_y(cv, p->hline), TUI_C_WARN, 0, '-');
    for (int k = 0; k < p->n_series; k++) {
        int px = -1, py = -1;
        for (int i = 0; i < p->s[k].n; i++) {
            double xv = p->s[k].x ? p->s[k].x[i] : p->x0 + i, yv = p->s[k].y[i];
            int grp = p->s[k].group ? p->s[k].group[i] : k;
            int role = cluster_role(s, grp);
            char g = cluster_glyph(grp);
            if (!isfinite(xv) || !isfinite(yv)) {
                px = -1;
                continue;
            }
            int dx = tui_canvas_map_x(cv, xv), dy = tui_canvas_map_y(cv, yv);
            if (dx < 0 || dy < 0) {
                px = -1;
                continue;
            }
            if (p->kind == TUI_PLOT_LINE && px >= 0) {
                int n = abs(dx - px) > abs(dy - py) ? abs(dx - px) : abs(dy - py);
                for (int t = 1; t < n; t++) tui_canvas_dot(cv, px + (dx - px) * t / n, py + (dy - py) * t / n, role, 1, g);
            }
            tui_canvas_dot(cv, dx, dy, role, 1, g);
            px = dx;
            py = dy;
        }
    }
    tui_canvas_render(s, cv, y + 2, x + lw + 1);
    tui_canvas_axes(s, cv, y + 2, x + lw + 1, lw, p->xlabel, p->ylabel);
    if (legend) {
        int lx = x + lw + 1, ly = y + 2 + ch + 2;
        int n = p->n_groups > 0 ? p->n_groups : p->n_series;
        for (int k = 0; k < n && lx < x + w - 4; k++) {
            const char *name = p->n_groups > 0 ? p->group_names[k] : p->s[k].name;
            char sw[8] = {cluster_glyph(k), 0};
            if (s->colors) tui_copy(sw, sizeof sw, tui_glyph(s, "square"));
            lx += tui_text(s, ly, lx, 2, cluster_role(s, k), sw);
            lx += tui_textf(s, ly, lx + 1, x + w - lx - 1, TUI_C_DIM, "%s", name[0] ? name : "series") + 2;
        }
    }
}

void tui_view_draw(tui_state *s, int v, int y, int x, int h, int w) {
    scatter.valid = 0;
    switch (v) {
    case TUI_V_CHANNELS: draw_channels(s, y, x, h, w); break;
    case TUI_V_OUTLIERS: draw_outliers(s, y, x, h, w); break;
    case TUI_V_SPECTRUM: draw_spectrum(s, y, x, h, w); break;
    case TUI_V_COMPARE: draw_compare(s, y, x, h, w); break;
    case TUI_V_GENERATE: draw_generate(s, y, x, h, w); break;
    case TUI_V_LOG: draw_log(s, y, x, h, w); break;
    case TUI_V_PLOT: draw_plot(s, y, x, h, w); break;
    }
}
