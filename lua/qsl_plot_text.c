/* Plots as plain text, for `qscope run` and stock lua: braille dots (2x4
 * per character cell, U+2800..U+28FF) and block characters when the locale
 * is UTF-8, ASCII otherwise; ANSI colours only when asked (a terminal
 * without NO_COLOR). Without colour, several groups or series are told
 * apart by a glyph per group (1-9a-z... for groups, * + o x ... for series)
 * at one point per cell.
 *
 * Layout of every chart: a centred title, then `height` lines of body —
 * canvas rows, the x axis, the x tick labels — each at most `width`
 * columns, the y tick labels left of the axis; then the legend. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsl.h"

/* ---- a growing string ---- */

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1) cap *= 2;
        char *t = realloc(b->s, cap);
        if (!t) {
            b->oom = 1;
            return;
        }
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) sb_add(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

static void sb_rep(sbuf *b, const char *s, int times) {
    for (int i = 0; i < times; i++) sb_puts(b, s);
}

/* Drop trailing spaces of the line being built (from line_start). */
static void sb_trim(sbuf *b, size_t line_start) {
    while (b->n > line_start && b->s[b->n - 1] == ' ') b->s[--b->n] = 0;
}

/* Display columns of UTF-8 text (one per code point). */
static int cols_of(const char *s) {
    int c = 0;
    for (; *s; s++) c += ((unsigned char)*s & 0xC0) != 0x80;
    return c;
}

/* Add at most max columns of s. */
static int sb_cols(sbuf *b, const char *s, int max) {
    int c = 0;
    const char *p = s;
    while (*p && c < max) {
        p++;
        while (((unsigned char)*p & 0xC0) == 0x80) p++;
        c++;
    }
    sb_add(b, s, (size_t)(p - s));
    return c;
}

/* ---- glyphs and colours ---- */

typedef struct {
    int utf8, ansi;
    int glyph_mode; /* one glyph per cell instead of braille dots */
} style;

static const char group_glyphs[] = "123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
static const char series_glyphs[] = "*+ox#@%&=~";
static const int colours[] = {31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96};
#define N_COLOURS ((int)(sizeof colours / sizeof colours[0]))

static void colour_on(sbuf *b, const style *st, int c) {
    if (st->ansi && c >= 0) sb_printf(b, "\033[%dm", colours[c % N_COLOURS]);
}
static void colour_off(sbuf *b, const style *st, int c) {
    if (st->ansi && c >= 0) sb_puts(b, "\033[0m");
}

static void put_braille(sbuf *b, unsigned bits) {
    unsigned cp = 0x2800 + bits;
    char u[3] = {(char)(0xE0 | (cp >> 12)), (char)(0x80 | ((cp >> 6) & 0x3F)), (char)(0x80 | (cp & 0x3F))};
    sb_add(b, u, 3);
}

/* ---- numbers ---- */

static int nice_ticks(double lo, double hi, int target, double *t, int cap, double *step_out) {
    if (!(hi > lo) || target < 1) return 0;
    double raw = (hi - lo) / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
    double first = ceil(lo / step - 1e-9) * step;
    int n = 0;
    for (double v = first; v <= hi + step * 1e-9 && n < cap; v += step) t[n++] = fabs(v) < step * 1e-9 ? 0 : v;
    *step_out = step;
    return n;
}

static void fmt_num(char *buf, size_t cap, double v, double step, int logscale) {
    if (logscale) {
        snprintf(buf, cap, "%.3g", pow(10, v));
        return;
    }
    double a = fabs(v);
    if (a >= 1e6 || (a > 0 && a < 1e-4) || step < 1e-4) {
        snprintf(buf, cap, "%.3g", v);
        return;
    }
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, cap, "%.*f", dec, v);
}

static void fmt_value(char *buf, size_t cap, double v) { snprintf(buf, cap, "%.4g", v); }

/* ---- the xy canvas ---- */

typedef struct {
    int cw, ch, dx, dy, ng;
    uint8_t *bits; /* (ch, cw) braille dots */
    int *count;    /* (ch, cw, ng) points of each group in a cell */
    char *mark;    /* (ch, cw) 'v', 'h', '+' marker lines */
    int *fill8;    /* (ch, cw) vertical bars: eighths filled from the bottom (8 = full), -1 none */
} canvas;

static int canvas_init(canvas *c, int cw, int ch, int dx, int dy, int ng) {
    memset(c, 0, sizeof *c);
    c->cw = cw;
    c->ch = ch;
    c->dx = dx;
    c->dy = dy;
    c->ng = ng < 1 ? 1 : ng;
    size_t cells = (size_t)cw * ch;
    c->bits = calloc(cells, 1);
    c->count = calloc(cells * c->ng, sizeof *c->count);
    c->mark = calloc(cells, 1);
    c->fill8 = malloc(cells * sizeof *c->fill8);
    if (!c->bits || !c->count || !c->mark || !c->fill8) return -1;
    for (size_t i = 0; i < cells; i++) c->fill8[i] = -1;
    return 0;
}

static void canvas_free(canvas *c) {
    free(c->bits);
    free(c->count);
    free(c->mark);
    free(c->fill8);
}

static const uint8_t braille_bit[4][2] = {{0x01, 0x08}, {0x02, 0x10}, {0x04, 0x20}, {0x40, 0x80}};

static void dot(canvas *c, int px, int py, int g) {
    if (px < 0 || py < 0 || px >= c->cw * c->dx || py >= c->ch * c->dy) return;
    size_t cell = (size_t)(py / c->dy) * c->cw + px / c->dx;
    if (c->dx == 2) c->bits[cell] |= braille_bit[py % 4][px % 2];
    c->count[cell * c->ng + (g >= 0 && g < c->ng ? g : 0)]++;
}

static void segment(canvas *c, int x0, int y0, int x1, int y1, int g) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
    for (int guard = 0; guard < 100000; guard++) {
        dot(c, x0, y0, g);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

/* ---- one xy chart (scatter, line, vertical bars) ---- */

typedef struct {
    double xmin, xmax, ymin, ymax;
    int logy;
} ranges;

static int point(const qsl_series *s, int i, int logy, double *x, double *y) {
    *x = s->x ? s->x[i] : i + 1;
    *y = s->y[i];
    if (!isfinite(*x) || !isfinite(*y)) return 0;
    if (logy) {
        if (*y <= 0) return 0;
        *y = log10(*y);
    }
    return 1;
}

static void widen(double *lo, double *hi) {
    if (*hi > *lo) return;
    double d = *lo == 0 ? 0.5 : fabs(*lo) * 0.05;
    *lo -= d;
    *hi += d;
}

static ranges data_ranges(const qsl_plot *p, int bars) {
    ranges r = {INFINITY, -INFINITY, INFINITY, -INFINITY, p->logy && !bars};
    for (int k = 0; k < p->n_series; k++)
        for (int i = 0; i < p->series[k].n; i++) {
            double x, y;
            if (!point(&p->series[k], i, r.logy, &x, &y)) continue;
            r.xmin = fmin(r.xmin, x);
            r.xmax = fmax(r.xmax, x);
            r.ymin = fmin(r.ymin, y);
            r.ymax = fmax(r.ymax, y);
        }
    if (r.xmin > r.xmax) r.xmin = 0, r.xmax = 1;
    if (r.ymin > r.ymax) r.ymin = 0, r.ymax = 1;
    if (bars) {
        r.ymin = fmin(r.ymin, 0);
        r.ymax = fmax(r.ymax, 0);
    }
    if (isfinite(p->xmin)) r.xmin = p->xmin;
    if (isfinite(p->xmax)) r.xmax = p->xmax;
    double ylo = p->ymin, yhi = p->ymax;
    if (r.logy) {
        ylo = ylo > 0 ? log10(ylo) : NAN;
        yhi = yhi > 0 ? log10(yhi) : NAN;
    }
    if (isfinite(ylo)) r.ymin = ylo;
    if (isfinite(yhi)) r.ymax = yhi;
    /* marker lines inside the frame, unless the range was given */
    double hl = r.logy ? (p->hline > 0 ? log10(p->hline) : NAN) : p->hline;
    if (isfinite(hl) && !isfinite(ylo) && hl < r.ymin) r.ymin = hl;
    if (isfinite(hl) && !isfinite(yhi) && hl > r.ymax) r.ymax = hl;
    if (isfinite(p->vline) && !isfinite(p->xmin) && p->vline < r.xmin) r.xmin = p->vline;
    if (isfinite(p->vline) && !isfinite(p->xmax) && p->vline > r.xmax) r.xmax = p->vline;
    widen(&r.xmin, &r.xmax);
    widen(&r.ymin, &r.ymax);
    return r;
}

typedef struct {
    int n;
    double v[32];
    int at[32]; /* row or column */
    char label[32][24];
} ticks;

static void legend_item(sbuf *b, const style *st, int colour, const char *glyph, const char *text, int W,
                        int *col, size_t *line_start) {
    int need = cols_of(glyph) + 1 + cols_of(text);
    if (*col > 0 && *col + 2 + need > W) {
        sb_trim(b, *line_start);
        sb_puts(b, "\n");
        *line_start = b->n;
        *col = 0;
    }
    if (*col > 0) {
        sb_puts(b, "  ");
        *col += 2;
    }
    colour_on(b, st, colour);
    sb_puts(b, glyph);
    colour_off(b, st, colour);
    sb_puts(b, " ");
    *col += 1 + cols_of(glyph) + sb_cols(b, text, W - *col - 1 - cols_of(glyph));
}

static void title_line(sbuf *b, const qsl_plot *p, int W) {
    if (!p->title || !*p->title) return;
    int tc = cols_of(p->title);
    int pad = tc < W ? (W - tc) / 2 : 0;
    sb_rep(b, " ", pad);
    sb_cols(b, p->title, W - pad);
    sb_puts(b, "\n");
}

static void axis_caption(sbuf *b, const qsl_plot *p, int W) {
    if (!(p->xlabel && *p->xlabel) && !(p->ylabel && *p->ylabel)) return;
    char line[512];
    snprintf(line, sizeof line, "%s%s%s%s%s", p->ylabel && *p->ylabel ? "y: " : "", p->ylabel ? p->ylabel : "",
             p->ylabel && *p->ylabel && p->xlabel && *p->xlabel ? "   " : "", p->xlabel && *p->xlabel ? "x: " : "",
             p->xlabel ? p->xlabel : "");
    sb_cols(b, line, W);
    sb_puts(b, "\n");
}

/* The x axis and its tick labels (two lines). */
static void x_axis(sbuf *b, const style *st, int ylw, int cw, const ticks *tx) {
    sb_rep(b, " ", ylw);
    sb_puts(b, st->utf8 ? "└" : "+");
    for (int c = 0; c < cw; c++) {
        int tick = 0;
        for (int i = 0; i < tx->n; i++) tick |= tx->at[i] == c;
        sb_puts(b, tick ? (st->utf8 ? "┬" : "+") : (st->utf8 ? "─" : "-"));
    }
    sb_puts(b, "\n");
    int W = ylw + 1 + cw;
    char *line = malloc((size_t)W + 1);
    if (!line) return;
    memset(line, ' ', (size_t)W);
    line[W] = 0;
    int last_end = -2;
    for (int i = 0; i < tx->n; i++) {
        int len = (int)strlen(tx->label[i]);
        int start = ylw + 1 + tx->at[i] - len / 2;
        if (start < 0) start = 0;
        if (start + len > W) start = W - len;
        if (start <= last_end + 1 || start < 0) continue;
        memcpy(line + start, tx->label[i], (size_t)len);
        last_end = start + len - 1;
    }
    size_t ls = b->n;
    sb_puts(b, line);
    sb_trim(b, ls);
    sb_puts(b, "\n");
    free(line);
}

/* Ticks for [lo, hi] mapped onto cells (flip: row 0 is hi, for the y axis). */
static int make_ticks(ticks *t, double lo, double hi, int target, int cells, int flip, int logscale) {
    double vals[32], step = 1;
    int n = 0;
    if (logscale) {
        /* powers of ten when there are at least two; else 1-2-5 steps, or
         * every digit, of the values in range (ticks stay round numbers) */
        for (double e = ceil(lo - 1e-9); e <= hi + 1e-9 && n < 32; e++) vals[n++] = e;
        static const int digits[3][9] = {{1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
        static const int nd[3] = {1, 3, 9};
        for (int set = 1; set < 3 && n < 2; set++) {
            n = 0;
            for (double e = floor(lo); e <= ceil(hi) && n < 32; e++)
                for (int d = 0; d < nd[set] && n < 32; d++) {
                    double v = log10(digits[set][d]) + e;
                    if (v >= lo - 1e-9 && v <= hi + 1e-9) vals[n++] = v;
                }
        }
        if (n > target + 1) { /* thin out */
            int every = (n + target) / (target + 1), k = 0;
            for (int i = 0; i < n; i += every) vals[k++] = vals[i];
            n = k;
        }
        if (n < 2) n = nice_ticks(lo, hi, target, vals, 32, &step);
    } else {
        n = nice_ticks(lo, hi, target, vals, 32, &step);
    }
    t->n = 0;
    for (int i = 0; i < n; i++) {
        double f = (vals[i] - lo) / (hi - lo);
        int at = (int)lround(f * (cells - 1));
        if (flip) at = cells - 1 - at;
        if (at < 0 || at >= cells) continue;
        t->v[t->n] = vals[i];
        t->at[t->n] = at;
        fmt_num(t->label[t->n], sizeof t->label[0], vals[i], step, logscale);
        t->n++;
    }
    return t->n;
}

static void render_xy(sbuf *b, const qsl_plot *p, const style *st0, int W, int H) {
    int bars = p->kind == QSL_PLOT_BARS;
    ranges r = data_ranges(p, bars);
    int ch = H - 2;
    /* groups: scatter colours, else one per series */
    int ng = p->n_groups > 0 ? p->n_groups : p->n_series > 1 ? p->n_series : 1;
    style st = *st0;
    /* bars draw blocks; points need a glyph per group when colour cannot tell them apart */
    st.glyph_mode = bars ? !st.utf8 : !st.utf8 || (ng > 1 && !st.ansi);
    ticks ty;
    make_ticks(&ty, r.ymin, r.ymax, ch / 4 + 1, ch, 1, r.logy);
    int ylw = 1;
    for (int i = 0; i < ty.n; i++) ylw = (int)strlen(ty.label[i]) > ylw ? (int)strlen(ty.label[i]) : ylw;
    if (ylw > W / 3) ylw = W / 3;
    int cw = W - ylw - 1;
    canvas c;
    int dx = st.glyph_mode || bars ? 1 : 2, dy = st.glyph_mode || bars ? 1 : 4;
    if (canvas_init(&c, cw, ch, dx, dy, ng) != 0) {
        canvas_free(&c);
        b->oom = 1;
        return;
    }
    double sx = (cw * dx - 1) / (r.xmax - r.xmin), sy = (ch * dy - 1) / (r.ymax - r.ymin);
    if (bars) {
        /* one column per value (or per bucket of values: the largest magnitude) */
        const qsl_series *s = &p->series[0];
        int z8 = (int)lround((r.ymax - 0) / (r.ymax - r.ymin) * ch) * 8;
        for (int col = 0; col < cw && s->n > 0; col++) {
            int i0 = (int)((long)col * s->n / cw), i1 = (int)((long)(col + 1) * s->n / cw);
            if (i1 <= i0) i1 = i0 + 1;
            double v = NAN;
            for (int i = i0; i < i1 && i < s->n; i++)
                if (isfinite(s->y[i]) && (!isfinite(v) || fabs(s->y[i]) > fabs(v))) v = s->y[i];
            if (!isfinite(v)) continue;
            int h8 = (int)lround(v / (r.ymax - r.ymin) * ch * 8);
            int lo8 = h8 >= 0 ? z8 - h8 : z8, hi8 = h8 >= 0 ? z8 : z8 - h8; /* [lo8, hi8) from the top */
            for (int row = 0; row < ch; row++) {
                int a = row * 8 > lo8 ? row * 8 : lo8, e = row * 8 + 8 < hi8 ? row * 8 + 8 : hi8;
                if (e > a) c.fill8[(size_t)row * cw + col] = h8 >= 0 ? e - a : 8;
            }
        }
    } else {
        for (int k = 0; k < p->n_series; k++) {
            const qsl_series *s = &p->series[k];
            int have = 0, px0 = 0, py0 = 0;
            for (int i = 0; i < s->n; i++) {
                double x, y;
                if (!point(s, i, r.logy, &x, &y)) {
                    have = 0;
                    continue;
                }
                if (x < r.xmin || x > r.xmax || y < r.ymin || y > r.ymax) {
                    have = 0;
                    continue;
                }
                int px = (int)lround((x - r.xmin) * sx), py = (int)lround((r.ymax - y) * sy);
                int g = p->n_groups > 0 ? (s->group ? s->group[i] : 0) : k;
                if (p->kind == QSL_PLOT_LINE && have) segment(&c, px0, py0, px, py, g);
                else dot(&c, px, py, g);
                have = 1;
                px0 = px;
                py0 = py;
            }
        }
    }
    /* marker lines */
    if (isfinite(p->vline) && p->vline >= r.xmin && p->vline <= r.xmax) {
        int col = (int)lround((p->vline - r.xmin) / (r.xmax - r.xmin) * (cw - 1));
        for (int row = 0; row < ch; row++) c.mark[(size_t)row * cw + col] = 'v';
    }
    double hl = r.logy ? (p->hline > 0 ? log10(p->hline) : NAN) : p->hline;
    if (isfinite(hl) && hl >= r.ymin && hl <= r.ymax) {
        int row = (int)lround((r.ymax - hl) / (r.ymax - r.ymin) * (ch - 1));
        for (int col = 0; col < cw; col++) {
            char *mk = &c.mark[(size_t)row * cw + col];
            *mk = *mk == 'v' ? '+' : 'h';
        }
    }
    /* rows */
    for (int row = 0; row < ch; row++) {
        size_t ls = b->n;
        int tick = -1;
        for (int i = 0; i < ty.n; i++)
            if (ty.at[i] == row) tick = i;
        char lab[32] = "";
        if (tick >= 0) snprintf(lab, sizeof lab, "%.*s", ylw, ty.label[tick]);
        sb_rep(b, " ", ylw - (int)strlen(lab));
        sb_puts(b, lab);
        sb_puts(b, tick >= 0 ? (st.utf8 ? "┤" : "+") : (st.utf8 ? "│" : "|"));
        for (int col = 0; col < cw; col++) {
            size_t cell = (size_t)row * cw + col;
            if (bars) {
                int f = c.fill8[cell];
                static const char *const eighths[9] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
                if (f > 0) sb_puts(b, st.utf8 ? eighths[f] : (f >= 4 ? "#" : "."));
                else if (c.mark[cell]) sb_puts(b, st.utf8 ? (c.mark[cell] == 'h' ? "─" : "│") : (c.mark[cell] == 'h' ? "-" : "|"));
                else sb_puts(b, " ");
                continue;
            }
            const int *cnt = c.count + cell * c.ng;
            int best = -1, total = 0;
            for (int g = 0; g < c.ng; g++) {
                total += cnt[g];
                if (cnt[g] > 0 && (best < 0 || cnt[g] > cnt[best])) best = g;
            }
            if (!total) {
                char mk = c.mark[cell];
                if (!mk) sb_puts(b, " ");
                else if (mk == 'v') sb_puts(b, st.utf8 ? "│" : "|");
                else if (mk == 'h') sb_puts(b, st.utf8 ? "─" : "-");
                else sb_puts(b, st.utf8 ? "┼" : "+");
                continue;
            }
            int colour = ng > 1 ? best : -1;
            colour_on(b, &st, colour);
            if (!st.glyph_mode) put_braille(b, c.bits[cell]);
            else {
                char gch[2] = {'*', 0};
                if (p->n_groups > 0) gch[0] = best < (int)sizeof group_glyphs - 1 ? group_glyphs[best] : '#';
                else if (ng > 1) gch[0] = series_glyphs[best % (int)(sizeof series_glyphs - 1)];
                sb_puts(b, gch);
            }
            colour_off(b, &st, colour);
        }
        sb_trim(b, ls);
        sb_puts(b, "\n");
    }
    ticks tx;
    make_ticks(&tx, r.xmin, r.xmax, cw / 12 > 1 ? cw / 12 : 2, cw, 0, 0);
    x_axis(b, &st, ylw, cw, &tx);
    /* legend */
    axis_caption(b, p, W);
    if (ng > 1 && !bars) {
        int col = 0;
        size_t ls = b->n;
        for (int g = 0; g < ng; g++) {
            char glyph[8], text[160];
            int n_pts = 0;
            if (p->n_groups > 0) {
                for (int i = 0; i < p->series[0].n; i++) n_pts += p->series[0].group && p->series[0].group[i] == g;
                snprintf(text, sizeof text, "%s (%d)", p->group_names && p->group_names[g] ? p->group_names[g] : "group",
                         n_pts);
            } else {
                snprintf(text, sizeof text, "%s",
                         p->series[g].name && *p->series[g].name ? p->series[g].name : "series");
                if (!p->series[g].name || !*p->series[g].name) snprintf(text, sizeof text, "series %d", g + 1);
            }
            if (!st.glyph_mode) snprintf(glyph, sizeof glyph, "%s", "⣿");
            else if (p->n_groups > 0) snprintf(glyph, sizeof glyph, "%c", g < (int)sizeof group_glyphs - 1 ? group_glyphs[g] : '#');
            else snprintf(glyph, sizeof glyph, "%c", series_glyphs[g % (int)(sizeof series_glyphs - 1)]);
            legend_item(b, &st, g, glyph, text, W, &col, &ls);
        }
        sb_trim(b, ls);
        sb_puts(b, "\n");
    } else if (p->n_series == 1 && p->series[0].name && *p->series[0].name && !bars) {
        sb_cols(b, p->series[0].name, W);
        sb_puts(b, "\n");
    }
    canvas_free(&c);
}

/* ---- horizontal bars: one labelled bar per line ---- */

static void render_hbars(sbuf *b, const qsl_plot *p, const style *st, int W) {
    const qsl_series *s = &p->series[0];
    int n = s->n, lw = 1, vw = 1;
    char (*labs)[48] = calloc((size_t)n + 1, sizeof *labs);
    char (*vals)[24] = calloc((size_t)n + 1, sizeof *vals);
    if (!labs || !vals) {
        free(labs);
        free(vals);
        b->oom = 1;
        return;
    }
    double lo = 0, hi = 0;
    for (int i = 0; i < n; i++) {
        if (p->labels && p->labels[i]) snprintf(labs[i], sizeof labs[i], "%s", p->labels[i]);
        else snprintf(labs[i], sizeof labs[i], "%g", p->x0 + i);
        int lc = cols_of(labs[i]);
        lw = lc > lw ? lc : lw;
        if (isfinite(s->y[i])) {
            fmt_value(vals[i], sizeof vals[i], s->y[i]);
            lo = fmin(lo, s->y[i]);
            hi = fmax(hi, s->y[i]);
        } else {
            snprintf(vals[i], sizeof vals[i], "%s", "n/a");
        }
        vw = (int)strlen(vals[i]) > vw ? (int)strlen(vals[i]) : vw;
    }
    if (lw > W / 3) lw = W / 3;
    int bw = W - lw - vw - 3;
    if (bw < 1) bw = 1;
    if (!(hi > lo)) hi = lo + 1;
    int z = (int)lround((0 - lo) / (hi - lo) * bw);
    for (int i = 0; i < n; i++) {
        size_t ls = b->n;
        int lc = cols_of(labs[i]);
        sb_rep(b, " ", lw - (lc < lw ? lc : lw));
        sb_cols(b, labs[i], lw);
        sb_puts(b, " ");
        sb_puts(b, st->utf8 ? "│" : "|");
        double v = s->y[i];
        int used = 0;
        if (isfinite(v)) {
            double len = fabs(v) / (hi - lo) * bw;
            if (v >= 0) {
                sb_rep(b, " ", z);
                int full = (int)len, part = (int)lround((len - full) * 8);
                if (part == 8) full++, part = 0;
                if (full > bw - z) full = bw - z, part = 0;
                sb_rep(b, st->utf8 ? "█" : "#", full);
                used = z + full;
                if (part > 0 && used < bw) {
                    static const char *const left8[8] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
                    sb_puts(b, st->utf8 ? left8[part] : (part >= 4 ? "#" : ""));
                    used += st->utf8 || part >= 4;
                }
            } else {
                int full = (int)lround(len);
                if (full > z) full = z;
                sb_rep(b, " ", z - full);
                sb_rep(b, st->utf8 ? "█" : "#", full);
                used = z;
            }
        }
        sb_rep(b, " ", bw - used + 1);
        sb_puts(b, vals[i]);
        sb_trim(b, ls);
        sb_puts(b, "\n");
    }
    free(labs);
    free(vals);
    axis_caption(b, p, W);
}

/* ---- heatmap ---- */

static void render_heatmap(sbuf *b, const qsl_plot *p, const style *st, int W, int H) {
    int R = p->rows, C = p->cols, ch = H - 2;
    if (R < 1 || C < 1 || !p->z) return;
    char (*rl)[32] = calloc((size_t)R, sizeof *rl);
    double *cell = malloc((size_t)ch * (W > 0 ? W : 1) * sizeof *cell);
    if (!rl || !cell) {
        free(rl);
        free(cell);
        b->oom = 1;
        return;
    }
    int lw = 1;
    for (int i = 0; i < R; i++) {
        if (p->row_labels && p->row_labels[i]) snprintf(rl[i], sizeof rl[i], "%s", p->row_labels[i]);
        else snprintf(rl[i], sizeof rl[i], "%g", p->y0 + i);
        int lc = cols_of(rl[i]);
        lw = lc > lw ? lc : lw;
    }
    if (lw > W / 3) lw = W / 3;
    int cw = W - lw - 1;
    double zmin = INFINITY, zmax = -INFINITY;
    for (int rr = 0; rr < ch; rr++)
        for (int cc = 0; cc < cw; cc++) {
            int r0 = (int)((long)rr * R / ch), r1 = (int)((long)(rr + 1) * R / ch);
            int c0 = (int)((long)cc * C / cw), c1 = (int)((long)(cc + 1) * C / cw);
            if (r1 <= r0) r1 = r0 + 1;
            if (c1 <= c0) c1 = c0 + 1;
            double v = NAN;
            for (int i = r0; i < r1 && i < R; i++)
                for (int j = c0; j < c1 && j < C; j++) {
                    double x = p->z[(size_t)i * C + j];
                    if (p->logy) x = x > 0 ? log10(x) : NAN;
                    if (isfinite(x) && (!isfinite(v) || x > v)) v = x;
                }
            cell[(size_t)rr * cw + cc] = v;
            if (isfinite(v)) {
                zmin = fmin(zmin, v);
                zmax = fmax(zmax, v);
            }
        }
    if (zmin > zmax) zmin = 0, zmax = 1;
    if (isfinite(p->ymin)) zmin = p->logy ? log10(p->ymin) : p->ymin;
    if (isfinite(p->ymax)) zmax = p->logy ? log10(p->ymax) : p->ymax;
    if (!(zmax > zmin)) zmax = zmin + 1;
    static const char *const shades_u[] = {" ", "░", "▒", "▓", "█"};
    static const char *const shades_a[] = {" ", ".", ":", "-", "=", "+", "*", "#", "%", "@"};
    static const int heat[] = {-1, 3, 5, 2, 0}; /* into colours[]: blue, cyan, yellow, red */
    int nlev = st->utf8 ? 5 : 10;
    int last_label_row = -100, last_label = -1;
    for (int rr = 0; rr < ch; rr++) {
        size_t ls = b->n;
        int ri = (int)((long)rr * R / ch);
        int gap = R > ch ? 3 : 1;
        if (ri != last_label && rr - last_label_row >= gap) {
            int lc = cols_of(rl[ri]);
            sb_rep(b, " ", lw - (lc < lw ? lc : lw));
            sb_cols(b, rl[ri], lw);
            last_label = ri;
            last_label_row = rr;
            sb_puts(b, st->utf8 ? "┤" : "+");
        } else {
            sb_rep(b, " ", lw);
            sb_puts(b, st->utf8 ? "│" : "|");
        }
        for (int cc = 0; cc < cw; cc++) {
            double v = cell[(size_t)rr * cw + cc];
            if (!isfinite(v)) {
                sb_puts(b, " ");
                continue;
            }
            int lev = (int)lround((v - zmin) / (zmax - zmin) * (nlev - 1));
            lev = lev < 0 ? 0 : lev >= nlev ? nlev - 1 : lev;
            int colour = st->ansi ? heat[lev * 5 / nlev] : -1;
            colour_on(b, st, colour);
            sb_puts(b, st->utf8 ? shades_u[lev] : shades_a[lev]);
            colour_off(b, st, colour);
        }
        sb_trim(b, ls);
        sb_puts(b, "\n");
    }
    /* x axis: column numbers from x0, each tick under the middle of its column */
    ticks tx;
    double x0 = p->x0, x1 = p->x0 + C - 1;
    if (C == 1) x1 = x0 + 1;
    make_ticks(&tx, x0, x1, cw / 12 > 1 ? cw / 12 : 2, cw, 0, 0);
    for (int i = 0; i < tx.n; i++) {
        double colf = (tx.v[i] - x0 + 0.5) * cw / C;
        tx.at[i] = (int)colf < cw ? (int)colf : cw - 1;
    }
    x_axis(b, st, lw, cw, &tx);
    axis_caption(b, p, W);
    /* the shade scale */
    int col = 0;
    size_t ls = b->n;
    for (int k = 1; k < nlev; k++) {
        char text[32];
        double v = zmin + (zmax - zmin) * k / (nlev - 1);
        fmt_value(text, sizeof text, p->logy ? pow(10, v) : v);
        legend_item(b, st, st->ansi ? heat[k * 5 / nlev] : -1, st->utf8 ? shades_u[k] : shades_a[k], text, W, &col, &ls);
    }
    sb_trim(b, ls);
    sb_puts(b, "\n");
    free(rl);
    free(cell);
}

/* ---- entry points ---- */

int qsl_locale_utf8(void) {
    const char *vars[] = {"LC_ALL", "LC_CTYPE", "LANG"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            for (const char *s = v; *s; s++)
                if ((s[0] == 'U' || s[0] == 'u') && (s[1] == 'T' || s[1] == 't') && (s[2] == 'F' || s[2] == 'f'))
                    return 1;
            return 0;
        }
    }
    return 0;
}

char *qsl_plot_text(const qsl_plot *p, int utf8, int ansi) {
    sbuf b = {0};
    style st = {.utf8 = utf8, .ansi = ansi};
    int W = p->width > 0 ? p->width : 72, H = p->height > 0 ? p->height : 20;
    if (W < 16) W = 16;
    if (H < 4) H = 4;
    title_line(&b, p, W);
    switch (p->kind) {
    case QSL_PLOT_SCATTER:
    case QSL_PLOT_LINE: render_xy(&b, p, &st, W, H); break;
    case QSL_PLOT_BARS:
        if (p->n_series < 1) break;
        if (p->series[0].n <= H) render_hbars(&b, p, &st, W);
        else render_xy(&b, p, &st, W, H);
        break;
    case QSL_PLOT_HEATMAP: render_heatmap(&b, p, &st, W, H); break;
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    if (!b.s) sb_puts(&b, "");
    return b.s;
}
