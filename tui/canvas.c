/* A plotting surface: braille cells (U+2800 + 8 dot bits, 2 columns x 4 rows
 * of dots per character cell) when the locale is UTF-8, one ASCII glyph per
 * cell otherwise. A cell has one colour: that of its highest-priority dot. */
#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tui.h"

/* braille dot bits by (column, row) inside a cell */
static const uint8_t dot_bit[2][4] = {{0x01, 0x02, 0x04, 0x40}, {0x08, 0x10, 0x20, 0x80}};

void tui_canvas_init(tui_canvas *c, int w, int h, int braille, double x0, double x1, double y0, double y1, int logy) {
    if (w > TUI_CANVAS_MAX_W) w = TUI_CANVAS_MAX_W;
    if (h > TUI_CANVAS_MAX_H) h = TUI_CANVAS_MAX_H;
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    c->w = w;
    c->h = h;
    c->braille = braille;
    c->dw = braille ? 2 * w : w;
    c->dh = braille ? 4 * h : h;
    for (int r = 0; r < h; r++) {
        memset(c->bits[r], 0, (size_t)w);
        memset(c->role[r], 0, (size_t)w);
        memset(c->prio[r], 0, (size_t)w);
        memset(c->glyph[r], 0, (size_t)w);
    }
    if (logy) {
        y0 = log10(y0 > 0 ? y0 : 1e-12);
        y1 = log10(y1 > 0 ? y1 : 1e-12);
    }
    if (!(x1 > x0)) x1 = x0 + 1;
    if (!(y1 > y0)) y1 = y0 + 1;
    c->x0 = x0;
    c->x1 = x1;
    c->y0 = y0;
    c->y1 = y1;
    c->logy = logy;
}

int tui_canvas_map_x(const tui_canvas *c, double x) {
    double f = (x - c->x0) / (c->x1 - c->x0);
    if (!(f >= 0 && f <= 1)) return -1;
    int d = (int)floor(f * (c->dw - 1) + 0.5);
    return d;
}

int tui_canvas_map_y(const tui_canvas *c, double y) {
    if (c->logy) y = log10(y > 0 ? y : 1e-300);
    double f = (y - c->y0) / (c->y1 - c->y0);
    if (!(f >= 0 && f <= 1)) return -1;
    /* row 0 is the top */
    return (c->dh - 1) - (int)floor(f * (c->dh - 1) + 0.5);
}

void tui_canvas_dot(tui_canvas *c, int dx, int dy, int role, int prio, char ascii_glyph) {
    if (dx < 0 || dy < 0 || dx >= c->dw || dy >= c->dh) return;
    int cx = c->braille ? dx / 2 : dx, cy = c->braille ? dy / 4 : dy;
    if (c->braille) c->bits[cy][cx] |= dot_bit[dx % 2][dy % 4];
    else c->bits[cy][cx] = 1;
    if (prio >= c->prio[cy][cx] || !c->role[cy][cx]) {
        c->prio[cy][cx] = (uint8_t)prio;
        c->role[cy][cx] = (uint8_t)role;
        c->glyph[cy][cx] = ascii_glyph ? ascii_glyph : '.';
    }
}

void tui_canvas_point(tui_canvas *c, double x, double y, int role, int prio, char ascii_glyph) {
    tui_canvas_dot(c, tui_canvas_map_x(c, x), tui_canvas_map_y(c, y), role, prio, ascii_glyph);
}

void tui_canvas_line(tui_canvas *c, double x0, double y0, double x1, double y1, int role, int prio, char g) {
    int ax = tui_canvas_map_x(c, x0), ay = tui_canvas_map_y(c, y0);
    int bx = tui_canvas_map_x(c, x1), by = tui_canvas_map_y(c, y1);
    if (ax < 0 || ay < 0 || bx < 0 || by < 0) return;
    int dx = bx > ax ? bx - ax : ax - bx, dy = by > ay ? by - ay : ay - by;
    int n = dx > dy ? dx : dy;
    for (int i = 0; i <= n; i++) {
        double t = n ? (double)i / n : 0;
        tui_canvas_dot(c, (int)lround(ax + (bx - ax) * t), (int)lround(ay + (by - ay) * t), role, prio, g);
    }
}

void tui_canvas_render(const tui_state *s, const tui_canvas *c, int y, int x) {
    for (int r = 0; r < c->h; r++) {
        move(y + r, x);
        for (int k = 0; k < c->w; k++) {
            if (!c->bits[r][k]) {
                attrset(A_NORMAL);
                addch(' ');
                continue;
            }
            attrset(tui_attr(s, c->role[r][k]));
            if (c->braille) {
                unsigned cp = 0x2800u + c->bits[r][k];
                char u[4] = {(char)(0xE0 | (cp >> 12)), (char)(0x80 | ((cp >> 6) & 0x3F)), (char)(0x80 | (cp & 0x3F)), 0};
                addstr(u);
            } else {
                addch((unsigned char)c->glyph[r][k]);
            }
        }
    }
    attrset(A_NORMAL);
}

void tui_canvas_axes(const tui_state *s, const tui_canvas *c, int y, int x, int lw, const char *xlabel,
                     const char *ylabel) {
    double t[16];
    char buf[32];
    int ax = tui_attr(s, TUI_C_AXIS);
    /* the y axis: a line left of the canvas with tick labels */
    attrset(ax);
    for (int r = 0; r < c->h; r++) mvaddstr(y + r, x - 1, tui_glyph(s, "vline"));
    mvaddstr(y + c->h, x - 1, tui_glyph(s, "corner"));
    for (int k = 0; k < c->w; k++) mvaddstr(y + c->h, x + k, tui_glyph(s, "hline"));
    attrset(A_NORMAL);
    int ny = c->h >= 12 ? 6 : c->h >= 6 ? 4 : 2;
    int n = tui_ticks(c->y0, c->y1, ny, t);
    for (int i = 0; i < n; i++) {
        double v = c->logy ? pow(10, t[i]) : t[i];
        if (c->logy && fabs(t[i] - round(t[i])) > 1e-9) continue;
        int dy = tui_canvas_map_y(c, v);
        if (dy < 0) continue;
        int row = c->braille ? dy / 4 : dy;
        if (c->logy) snprintf(buf, sizeof buf, "1e%d", (int)lround(t[i]));
        else tui_fmt_num(v, buf, sizeof buf);
        int len = (int)strlen(buf);
        tui_text(s, y + row, x - 1 - (len < lw - 1 ? len : lw - 1) - 1, lw - 1, TUI_C_AXIS, buf);
        attrset(ax);
        mvaddstr(y + row, x - 1, tui_glyph(s, "tick_y"));
        attrset(A_NORMAL);
    }
    /* the x axis: ticks below, labels centred on them, the axis name at the right */
    int xl = xlabel && *xlabel ? tui_text_width(s, xlabel) : 0;
    int label_at = xl && xl < c->w / 2 ? x + c->w - xl : x + c->w + 1;
    int nx = c->w >= 60 ? 8 : c->w >= 30 ? 5 : 3;
    n = tui_ticks(c->x0, c->x1, nx, t);
    int next_free = x - lw;
    for (int i = 0; i < n; i++) {
        int dx = tui_canvas_map_x(c, t[i]);
        if (dx < 0) continue;
        int col = x + (c->braille ? dx / 2 : dx);
        tui_fmt_num(t[i], buf, sizeof buf);
        int len = (int)strlen(buf), at = col - len / 2;
        if (at < next_free || at + len >= label_at) continue;
        attrset(ax);
        mvaddstr(y + c->h, col, tui_glyph(s, "tick_x"));
        attrset(A_NORMAL);
        tui_text(s, y + c->h + 1, at, len, TUI_C_AXIS, buf);
        next_free = at + len + 1;
    }
    if (label_at <= x + c->w - xl) tui_text(s, y + c->h + 1, label_at, xl, TUI_C_DIM, xlabel);
    if (ylabel && *ylabel) tui_text(s, y - 1, x - lw, lw + c->w, TUI_C_DIM, ylabel);
}
