/* Drawing primitives: colour roles with 256-colour, 8-colour and no-colour
 * forms; UTF-8 text with ASCII fallbacks; bars, boxes and axis ticks. */
#include <curses.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "tui.h"

/* fg, bg for 256 colours; fg, bg for 8; attribute without colour */
typedef struct {
    short fg256, bg256, fg8, bg8;
    int attr256, attr8, mono;
} role_def;

static const role_def roles[TUI_C_HEAT0] = {
    [TUI_C_NORMAL] = {-1, -1, -1, -1, 0, 0, 0},
    [TUI_C_STATUS] = {231, 24, COLOR_WHITE, COLOR_BLUE, A_BOLD, A_BOLD, A_REVERSE},
    [TUI_C_TAB] = {250, 236, COLOR_WHITE, COLOR_BLACK, 0, 0, 0},
    [TUI_C_TAB_ON] = {16, 117, COLOR_BLACK, COLOR_CYAN, A_BOLD, 0, A_REVERSE | A_BOLD},
    [TUI_C_HELPLINE] = {252, 237, COLOR_BLACK, COLOR_WHITE, 0, 0, A_REVERSE},
    [TUI_C_TITLE] = {117, -1, COLOR_CYAN, -1, A_BOLD, A_BOLD, A_BOLD},
    [TUI_C_DIM] = {244, -1, COLOR_WHITE, -1, 0, A_DIM, A_DIM},
    [TUI_C_ERR] = {203, -1, COLOR_RED, -1, A_BOLD, A_BOLD, A_BOLD},
    [TUI_C_WARN] = {214, -1, COLOR_YELLOW, -1, 0, 0, A_BOLD},
    [TUI_C_OK] = {114, -1, COLOR_GREEN, -1, 0, 0, 0},
    [TUI_C_ACCENT] = {81, -1, COLOR_CYAN, -1, A_BOLD, A_BOLD, A_BOLD},
    [TUI_C_AXIS] = {245, -1, COLOR_WHITE, -1, 0, 0, 0},
    [TUI_C_CURSOR] = {16, 226, COLOR_BLACK, COLOR_YELLOW, A_BOLD, 0, A_REVERSE},
    [TUI_C_OUTLIER] = {196, -1, COLOR_RED, -1, A_BOLD, A_BOLD, A_BOLD},
    [TUI_C_BAR] = {39, -1, COLOR_BLUE, -1, 0, A_BOLD, 0},
    [TUI_C_BAR2] = {178, -1, COLOR_YELLOW, -1, 0, 0, 0},
    [TUI_C_SELECT] = {231, 238, COLOR_BLACK, COLOR_WHITE, A_BOLD, 0, A_REVERSE},
    [TUI_C_LUA] = {151, -1, COLOR_GREEN, -1, 0, 0, 0},
};

/* clusters: distinct hues, red left for the outliers */
static const short cluster256[16] = {39, 208, 41, 170, 226, 51, 141, 215, 148, 33, 219, 86, 180, 63, 122, 247};
static const short cluster8[6] = {COLOR_BLUE, COLOR_GREEN, COLOR_YELLOW, COLOR_MAGENTA, COLOR_CYAN, COLOR_WHITE};
/* heat: cold to hot */
static const short heat256[TUI_N_HEAT] = {236, 17, 19, 26, 31, 36, 106, 178, 208, 196};
static const short heat8[TUI_N_HEAT] = {COLOR_BLACK, COLOR_BLUE, COLOR_BLUE, COLOR_CYAN, COLOR_CYAN,
                                        COLOR_GREEN, COLOR_GREEN, COLOR_YELLOW, COLOR_RED, COLOR_RED};

static int attrs[TUI_C_COUNT];

void tui_draw_init(tui_state *s) {
    const char *nc = getenv("NO_COLOR");
    s->colors = 0;
    if (!(nc && *nc) && has_colors() && start_color() == OK) {
        use_default_colors();
        s->colors = COLORS >= 256 ? 256 : COLORS >= 8 ? 8 : 0;
    }
    for (int r = 0; r < TUI_C_COUNT; r++) {
        int a = 0;
        if (s->colors == 0) {
            if (r < TUI_C_HEAT0 && r < (int)(sizeof roles / sizeof roles[0])) a = roles[r].mono;
            if (r >= TUI_C_CLUSTER0 && r < TUI_C_HEAT0) a = 0;
        } else {
            short fg = -1, bg = -1;
            int extra = 0;
            if (r >= TUI_C_HEAT0) {
                int i = r - TUI_C_HEAT0;
                /* heat cells are drawn as blocks: the colour is the foreground */
                fg = s->colors == 256 ? heat256[i] : heat8[i];
                if (s->colors == 8 && (i == 2 || i == 4 || i == 6 || i == 9)) extra = A_BOLD;
            } else if (r >= TUI_C_CLUSTER0) {
                int i = r - TUI_C_CLUSTER0;
                fg = s->colors == 256 ? cluster256[i] : cluster8[i % 6];
                if (s->colors == 8 && i >= 6) extra = A_BOLD;
            } else {
                const role_def *d = &roles[r];
                fg = s->colors == 256 ? d->fg256 : d->fg8;
                bg = s->colors == 256 ? d->bg256 : d->bg8;
                extra = s->colors == 256 ? d->attr256 : d->attr8;
            }
            init_pair((short)(r + 1), fg, bg);
            a = COLOR_PAIR(r + 1) | extra;
        }
        attrs[r] = a;
    }
}

int tui_draw_n_cluster_colors(const tui_state *s) { return s->colors == 256 ? 16 : s->colors == 8 ? 6 : 0; }

int tui_attr(const tui_state *s, int role) {
    (void)s;
    return role >= 0 && role < TUI_C_COUNT ? attrs[role] : 0;
}

/* columns of one UTF-8 character starting at p (n bytes in *len) */
static int char_cols(const tui_state *s, const char *p, int *len) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x80) {
        *len = 1;
        return 1;
    }
    if (!s->utf8) {
        int n = 1;
        while ((((unsigned char)p[n]) & 0xC0) == 0x80 && n < 4) n++;
        *len = n;
        return 1;
    }
    mbstate_t st;
    memset(&st, 0, sizeof st);
    wchar_t wc;
    size_t n = mbrtowc(&wc, p, strnlen(p, 4), &st);
    if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
        *len = 1;
        return 1;
    }
    *len = (int)n;
    int w = wcwidth(wc);
    return w < 0 ? 1 : w;
}

int tui_text_width(const tui_state *s, const char *str) {
    int cols = 0, len;
    for (const char *p = str; *p; p += len) cols += char_cols(s, p, &len);
    return cols;
}

int tui_text(const tui_state *s, int y, int x, int w, int role, const char *str) {
    if (x < 0) x = 0;
    if (x + w > COLS) w = COLS - x;
    if (w <= 0 || y < 0 || y >= LINES) return 0;
    int a = tui_attr(s, role), cols = 0, len;
    attrset(a);
    move(y, x);
    for (const char *p = str; *p && cols < w; p += len) {
        unsigned char c = (unsigned char)*p;
        int cw = char_cols(s, p, &len);
        if (cols + cw > w) break;
        if (c < 0x20 || c == 0x7f) addch(' ');
        else if (c < 0x80) addch(c);
        else if (!s->utf8) addch('?');
        else if (cw == 0) continue; /* a combining mark: skip rather than misalign */
        else addnstr(p, len);
        cols += cw;
    }
    attrset(A_NORMAL);
    return cols;
}

int tui_textf(const tui_state *s, int y, int x, int w, int role, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return tui_text(s, y, x, w, role, buf);
}

const char *tui_glyph(const tui_state *s, const char *name) {
    static const struct {
        const char *name, *utf8, *ascii;
    } g[] = {
        {"hline", "\xe2\x94\x80", "-"},    {"vline", "\xe2\x94\x82", "|"},     {"tl", "\xe2\x94\x8c", "+"},
        {"tr", "\xe2\x94\x90", "+"},       {"bl", "\xe2\x94\x94", "+"},        {"br", "\xe2\x94\x98", "+"},
        {"block", "\xe2\x96\x88", "#"},    {"shade", "\xe2\x96\x91", "."},     {"tick_x", "\xe2\x94\xac", "+"},
        {"tick_y", "\xe2\x94\xa4", "+"},   {"corner", "\xe2\x94\x94", "+"},    {"up", "\xe2\x86\x91", "^"},
        {"right", "\xe2\x86\x92", ">"},    {"bullet", "\xe2\x80\xa2", "*"},    {"tau", "\xcf\x84", "tau"},
        {"delta", "\xce\x94", "d"},        {"square", "\xe2\x96\xa0", "#"},    {"cursor", "\xe2\x96\xb6", ">"},
        {"ge", "\xe2\x89\xa5", ">="},      {"times", "\xc3\x97", "x"},         {"ellipsis", "\xe2\x80\xa6", "..."},
        {"vdash", "\xe2\x94\x8a", ":"},    {"hdash", "\xe2\x94\x88", "-"},     {"mid", "\xc2\xb7", "."},
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        if (!strcmp(g[i].name, name)) return s->utf8 ? g[i].utf8 : g[i].ascii;
    return "?";
}

void tui_bar(const tui_state *s, int y, int x, int w, double frac, int role) {
    static const char *const eighths[8] = {"", "\xe2\x96\x8f", "\xe2\x96\x8e", "\xe2\x96\x8d",
                                           "\xe2\x96\x8c", "\xe2\x96\x8b", "\xe2\x96\x8a", "\xe2\x96\x89"};
    if (w <= 0) return;
    if (!(frac > 0)) frac = 0;
    if (frac > 1) frac = 1;
    int units = (int)lround(frac * w * 8);
    int full = units / 8, part = units % 8;
    attrset(tui_attr(s, role));
    move(y, x);
    for (int i = 0; i < full; i++) addstr(tui_glyph(s, "block"));
    if (part && full < w) {
        if (s->utf8) addstr(eighths[part]);
        else if (part >= 4) addch('#');
    }
    attrset(A_NORMAL);
}

void tui_box(const tui_state *s, int y, int x, int h, int w, const char *title, int role) {
    if (h < 2 || w < 2) return;
    attrset(tui_attr(s, role));
    mvaddstr(y, x, tui_glyph(s, "tl"));
    mvaddstr(y, x + w - 1, tui_glyph(s, "tr"));
    mvaddstr(y + h - 1, x, tui_glyph(s, "bl"));
    mvaddstr(y + h - 1, x + w - 1, tui_glyph(s, "br"));
    for (int i = 1; i < w - 1; i++) {
        mvaddstr(y, x + i, tui_glyph(s, "hline"));
        mvaddstr(y + h - 1, x + i, tui_glyph(s, "hline"));
    }
    for (int i = 1; i < h - 1; i++) {
        mvaddstr(y + i, x, tui_glyph(s, "vline"));
        mvaddstr(y + i, x + w - 1, tui_glyph(s, "vline"));
    }
    attrset(A_NORMAL);
    if (title && *title) {
        char t[256];
        snprintf(t, sizeof t, " %s ", title);
        tui_text(s, y, x + 2, w - 4, TUI_C_TITLE, t);
    }
}

void tui_fill(const tui_state *s, int y, int x, int h, int w, int role) {
    attrset(tui_attr(s, role));
    for (int r = 0; r < h; r++) mvhline(y + r, x, ' ', w);
    attrset(A_NORMAL);
}

int tui_ticks(double lo, double hi, int max_ticks, double *ticks) {
    if (!(hi > lo) || max_ticks < 2) {
        ticks[0] = lo;
        return 1;
    }
    double raw = (hi - lo) / (max_ticks - 1), mag = pow(10, floor(log10(raw))), step;
    double f = raw / mag;
    step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    int n = 0;
    for (double v = ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9 && n < max_ticks; v += step) {
        ticks[n++] = fabs(v) < step * 1e-9 ? 0 : v;
    }
    return n;
}

void tui_fmt_num(double v, char *buf, size_t cap) {
    double a = fabs(v);
    if (v == 0) snprintf(buf, cap, "0");
    else if (a >= 1e5 || a < 1e-3) snprintf(buf, cap, "%.0e", v);
    else if (a >= 100) snprintf(buf, cap, "%.0f", v);
    else snprintf(buf, cap, "%.3g", v);
}

int tui_wrap(const char *str, int w, void (*line)(void *ud, const char *t, int len), void *ud) {
    int n = 0;
    const char *p = str;
    if (w < 1) w = 1;
    while (*p) {
        /* one paragraph line up to '\n' */
        const char *end = strchr(p, '\n');
        if (!end) end = p + strlen(p);
        if (end == p) {
            if (line) line(ud, p, 0);
            n++;
        }
        while (p < end) {
            const char *q = p, *brk = NULL;
            int cols = 0;
            while (q < end) {
                if (((unsigned char)*q & 0xC0) != 0x80) {
                    if (cols == w) break;
                    cols++;
                }
                if (*q == ' ') brk = q;
                q++;
            }
            const char *stop = q;
            if (q < end && brk && brk > p) stop = brk;
            if (line) line(ud, p, (int)(stop - p));
            n++;
            p = stop;
            while (p < end && *p == ' ') p++;
        }
        p = *end ? end + 1 : end;
    }
    return n;
}
