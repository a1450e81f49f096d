/* The frame around the views: status line, view tabs, the parameter panel,
 * the message / command line, the help line and the ? overlay. Everything
 * here reads the state and draws; nothing is computed. */
#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "methods/methods.h"
#include "tui.h"

enum { PANEL_W = 26 };

static const tui_row *row_of(const tui_state *s, const char *spec) {
    for (int i = 0; i < s->n_rows; i++)
        if (!strcmp(s->rows[i].spec, spec) && !s->rows[i].full) return &s->rows[i];
    return NULL;
}

static void too_small(tui_state *s, int H, int W) {
    char msg[200];
    snprintf(msg, sizeof msg, "qscope needs a terminal of at least %dx%d; this one is %dx%d.", TUI_MIN_W,
             TUI_MIN_H, W, H);
    int y = H / 2 - 1 > 0 ? H / 2 - 1 : 0;
    int len = (int)strlen(msg);
    if (len <= W) tui_text(s, y, (W - len) / 2, W, TUI_C_WARN, msg);
    else {
        /* narrower than the message: wrap it */
        for (int i = 0, r = 0; i < len && r < H - 1; i += W, r++) {
            char part[200];
            snprintf(part, sizeof part, "%.*s", W, msg + i);
            tui_text(s, r, 0, W, TUI_C_WARN, part);
        }
        y = H - 2;
    }
    const char *hint = "Enlarge it, or press q to quit.";
    len = (int)strlen(hint);
    tui_text(s, y + 1 < H ? y + 1 : H - 1, len <= W ? (W - len) / 2 : 0, W, TUI_C_NORMAL, hint);
}

static void progress_text(const tui_state *s, char *buf, size_t cap) {
    const tui_jobs_status *j = &s->js;
    if (!j->busy) {
        snprintf(buf, cap, "%s", j->queued ? "starting" : "ready");
        return;
    }
    if (j->total > 0) snprintf(buf, cap, "%s %ld/%ld", j->label, j->done, j->total);
    else snprintf(buf, cap, "%s", j->label);
    if (j->queued) {
        size_t n = strlen(buf);
        snprintf(buf + n, cap - n, " (+%d)", j->queued);
    }
}

static void status_line(tui_state *s, int W) {
    tui_fill(s, 0, 0, 1, W, TUI_C_STATUS);
    const qs_config *c = &s->m->cfg;
    const char *sep = tui_glyph(s, "vline");
    char right[200];
    /* the job at the right: a small bar and the label; it wins the space */
    progress_text(s, right, sizeof right);
    int bw = s->js.busy && s->js.total > 0 ? 8 : 0;
    int rw = tui_text_width(s, right);
    if (rw > W / 2) rw = W / 2;
    int rx = W - rw - 1;
    tui_text(s, 0, rx, rw, TUI_C_STATUS, right);
    if (bw) tui_bar(s, 0, rx - bw - 1, bw, (double)s->js.done / s->js.total, TUI_C_STATUS);
    int avail = rx - (bw ? bw + 2 : 1);
    /* the model and the variant at the left, shortened until they fit */
    const tui_row *r = row_of(s, s->spec), *base = tui_state_base_row(s);
    char size[64] = "", fp[48] = "", left[640];
    if (r && r->status == 1) snprintf(size, sizeof size, " %.2f MB", r->wbytes / 1e6);
    else if (r && r->status == 0) snprintf(size, sizeof size, " (building)");
    else if (r && r->status < 0) snprintf(size, sizeof size, " (failed)");
    if (base && base->status == 1 && r && r->status == 1 && r != base) snprintf(fp, sizeof fp, " of %.2f", base->wbytes / 1e6);
    for (int form = 0; form < 3; form++) {
        if (form == 0)
            snprintf(left, sizeof left, " qscope %s %s (%s, %d layers, d %d) %s %s%s%s", sep, s->model_name,
                     qs_arch_str(c->arch), c->n_layers, c->d_model, sep, s->spec, size, fp);
        else if (form == 1)
            snprintf(left, sizeof left, " qscope %s %s %s %s%s%s", sep, s->model_name, sep, s->spec, size, fp);
        else
            snprintf(left, sizeof left, " %s %s %s%s", s->model_name, sep, s->spec, size);
        if (tui_text_width(s, left) <= avail) break;
    }
    tui_text(s, 0, 0, avail, TUI_C_STATUS, left);
}

static void tabs(tui_state *s, int W) {
    tui_fill(s, 1, 0, 1, W, TUI_C_TAB);
    const char *f = "[params]";
    int room = W - 1 - (s->focus == 1 ? (int)strlen(f) + 1 : 0);
    /* every tab shows: a space between tabs, else none, else the titles cut to 4 letters */
    int form = 0;
    for (; form < 2; form++) {
        int need = 1;
        for (int v = 0; v < TUI_V_COUNT; v++)
            need += (int)strlen(tui_view_title(v)) + 4 + (form == 0);
        if (need <= room) break;
    }
    int x = 1;
    for (int v = 0; v < TUI_V_COUNT; v++) {
        char t[48];
        snprintf(t, sizeof t, " %d %.*s ", v + 1, form == 2 ? 4 : 40, tui_view_title(v));
        int len = (int)strlen(t);
        if (x + len > room) break;
        tui_text(s, 1, x, len, v == s->view ? TUI_C_TAB_ON : TUI_C_TAB, t);
        x += len + (form == 0);
    }
    if (s->focus == 1) tui_text(s, 1, W - (int)strlen(f) - 1, (int)strlen(f), TUI_C_TAB, f);
}

static void params(tui_state *s, int y, int x, int h, int w) {
    tui_text(s, y, x + 1, w - 1, s->focus == 1 ? TUI_C_TAB_ON : TUI_C_TITLE, " Parameters ");
    int r = y + 2;
    for (int k = 0; k < TUI_K_COUNT && r < y + h; k++, r++) {
        char v[32];
        tui_knobs_value(&s->knobs, k, v, sizeof v);
        int sel = k == s->knob;
        int role = sel ? (s->focus == 1 ? TUI_C_CURSOR : TUI_C_SELECT) : tui_knobs_used(&s->knobs, k) ? TUI_C_NORMAL : TUI_C_DIM;
        char line[64];
        snprintf(line, sizeof line, "%s%-8s %s", sel ? tui_glyph(s, "cursor") : " ", tui_knobs_name(k, 0), v);
        if (k == TUI_K_TAU && s->utf8) snprintf(line, sizeof line, "%s%-8s %s", sel ? tui_glyph(s, "cursor") : " ", "\xcf\x84", v);
        if (sel) tui_fill(s, r, x + 1, 1, w - 2, role);
        tui_text(s, r, x + 1, w - 2, role, line);
    }
    r++;
    if (r < y + h) tui_text(s, r++, x + 1, w - 1, TUI_C_DIM, "variant");
    if (r < y + h) tui_text(s, r++, x + 2, w - 2, TUI_C_ACCENT, s->spec);
    const tui_row *row = row_of(s, s->spec), *base = tui_state_base_row(s);
    if (row && r < y + h) {
        if (row->status == 0) tui_text(s, r++, x + 2, w - 2, TUI_C_WARN, "building...");
        else if (row->status < 0) tui_text(s, r++, x + 2, w - 2, TUI_C_ERR, "failed (see Log)");
        else {
            if (!isnan(row->ppl)) {
                if (base && base->status == 1 && strcmp(row->spec, "fp32"))
                    tui_textf(s, r++, x + 2, w - 2, TUI_C_NORMAL, "ppl %.2f (%+.2f)", row->ppl, row->ppl - base->ppl);
                else
                    tui_textf(s, r++, x + 2, w - 2, TUI_C_NORMAL, "ppl %.2f", row->ppl);
            }
            if (r < y + h) tui_textf(s, r++, x + 2, w - 2, TUI_C_NORMAL, "%.2f MB, KV %lld B/t", row->wbytes / 1e6, row->kvbytes);
        }
    }
    r++;
    if (r < y + h) tui_text(s, r++, x + 1, w - 1, TUI_C_DIM, "job");
    if (s->js.busy && r < y + h) {
        tui_text(s, r++, x + 2, w - 2, TUI_C_NORMAL, s->js.label);
        if (r < y + h) {
            double f = s->js.total > 0 ? (double)s->js.done / s->js.total : 0;
            tui_bar(s, r, x + 2, w - 10, f, TUI_C_BAR);
            if (s->js.total > 0) tui_textf(s, r, x + w - 7, 7, TUI_C_NORMAL, "%3.0f%%", 100 * f);
            r++;
        }
        if (r < y + h) tui_text(s, r++, x + 2, w - 2, TUI_C_DIM, "Esc cancels");
    } else if (r < y + h) {
        tui_text(s, r++, x + 2, w - 2, TUI_C_DIM, s->js.queued ? "starting" : "idle");
    }
}

typedef struct {
    const tui_state *s;
    int y, x, w, row, shown, total;
} hint_ud;

static void hint_row(void *ud, const char *t, int len) {
    hint_ud *h = ud;
    if (h->row < h->shown) {
        char buf[512];
        /* the last row of a list that does not fit says how much is left */
        if (h->row == h->shown - 1 && h->shown < h->total)
            snprintf(buf, sizeof buf, "... %d more rows: type more of the name", h->total - h->shown + 1);
        else snprintf(buf, sizeof buf, "%.*s", len < 511 ? len : 511, t);
        tui_fill(h->s, h->y + h->row, 0, 1, h->w + 2, TUI_C_SELECT);
        tui_text(h->s, h->y + h->row, h->x, h->w, TUI_C_SELECT, buf);
    }
    h->row++;
}

/* The completions above the command line: wrapped over as many rows as they
 * take, up to half the view's height. */
static void hint_rows(const tui_state *s, int y, int W) {
    int total = tui_wrap(s->hint, W - 2, NULL, NULL), max = (s->rows_n - 4) / 2;
    int shown = total < max ? total : max;
    hint_ud h = {s, y - shown, 1, W - 2, 0, shown, total};
    if (shown > 0) tui_wrap(s->hint, W - 2, hint_row, &h);
}

static void message_line(tui_state *s, int y, int W) {
    if (s->prompting) {
        int pl = tui_text(s, y, 0, W, TUI_C_ACCENT, s->line_prompt);
        /* keep the cursor in view on a long line */
        int avail = W - pl - 1, start = 0;
        int point_cols = s->line_point;
        if (point_cols > avail) start = point_cols - avail;
        tui_text(s, y, pl, W - pl, TUI_C_NORMAL, s->line + start);
        if (s->hint[0]) hint_rows(s, y, W);
        return;
    }
    if (!s->last_msg[0]) return;
    int role = s->last_level == 3 ? TUI_C_ERR : s->last_level == QS_LOG_WARN ? TUI_C_WARN
             : s->last_level == 4 ? TUI_C_LUA : TUI_C_DIM;
    tui_text(s, y, 1, W - 2, role, s->last_msg);
}

static void help_line(tui_state *s, int y, int W) {
    char hints[512];
    tui_keys_hints(s, hints, sizeof hints, W - 2);
    tui_fill(s, y, 0, 1, W, TUI_C_HELPLINE);
    tui_text(s, y, 1, W - 2, TUI_C_HELPLINE, hints);
}

/* ---- the ? overlay ---- */

typedef struct {
    char (*lines)[160];
    int *roles;
    int n, cap;
} overlay_buf;

static void ov_add(overlay_buf *b, int role, const char *t, int len) {
    if (b->n >= b->cap) return;
    snprintf(b->lines[b->n], sizeof b->lines[0], "%.*s", len, t);
    b->roles[b->n++] = role;
}

typedef struct {
    overlay_buf *b;
    int role;
} wrap_ud;

static void ov_wrap_line(void *ud, const char *t, int len) {
    wrap_ud *w = ud;
    ov_add(w->b, w->role, t, len);
}

static void ov_key(void *ud, const char *keys, const char *what) {
    overlay_buf *b = ud;
    char line[160];
    snprintf(line, sizeof line, "  %-14s %s", keys, what);
    ov_add(b, TUI_C_NORMAL, line, (int)strlen(line));
}

static char help_text[400][160];
static int help_roles[400];

/* The help overlay's lines for the current view at width W (into
 * help_text/help_roles); returns how many. */
static int help_lines(const tui_state *s, int W) {
    overlay_buf b = {help_text, help_roles, 0, 400};
    int w = W - 6 < 90 ? W - 6 : 90;
    wrap_ud wu = {&b, TUI_C_NORMAL};
    tui_wrap(tui_view_explain(s->view), w - 4, ov_wrap_line, &wu);
    ov_add(&b, TUI_C_NORMAL, "", 0);
    ov_add(&b, TUI_C_TITLE, "Keys", 4);
    tui_keys_list(s, s->view, ov_key, &b);
    ov_add(&b, TUI_C_NORMAL, "", 0);
    wu.role = TUI_C_DIM;
    tui_wrap("The parameter panel (Tab to focus it, or [ and ] from anywhere) holds the knobs; + and - change "
             "the selected one, and every change re-runs what depends on it in the background: the clusters, "
             "the variant and a quick perplexity check. The screen keeps answering keys meanwhile; Esc cancels.",
             w - 4, ov_wrap_line, &wu);
    return b.n;
}

static void help_overlay(const tui_state *s, int H, int W) {
    int n = help_lines(s, W);
    int w = W - 6 < 90 ? W - 6 : 90, h = H - 4;
    int x = (W - w) / 2, y = 2;
    char title[96];
    snprintf(title, sizeof title, "%d %s: what it shows", s->view + 1, tui_view_title(s->view));
    tui_fill(s, y, x, h, w, TUI_C_NORMAL);
    tui_box(s, y, x, h, w, title, TUI_C_ACCENT);
    int body = h - 3;
    for (int i = 0; i < body && s->help_top + i < n; i++)
        tui_text(s, y + 1 + i, x + 2, w - 4, help_roles[s->help_top + i], help_text[s->help_top + i]);
    const char *foot = n > body ? " Esc or ? closes  j/k scroll " : " Esc or ? closes ";
    tui_text(s, y + h - 1, x + w - 2 - (int)strlen(foot), (int)strlen(foot), TUI_C_DIM, foot);
}

/* The view's width: the parameter panel gives up columns first on a narrow terminal. */
static int panel_width(int W) { return W >= 110 ? PANEL_W + 2 : W >= 90 ? PANEL_W - 2 : PANEL_W - 6; }

void tui_panel_fit(tui_state *s) {
    int H, W;
    getmaxyx(stdscr, H, W);
    s->rows_n = H;
    s->cols_n = W;
    /* the Log pane shows H - 6 rows of wrapped entries: scrolled back at most
     * so far that the oldest entries still fill it; the help overlay H - 7 */
    long max_back = s->log_n < TUI_LOG_LINES ? s->log_n : TUI_LOG_LINES, rows = H - 6, acc = 0, limit = 0;
    int lw = W - panel_width(W) - 1;
    for (long b = max_back - 1; s->log_back > 0 && b >= 0; b--) {
        acc += tui_view_log_rows(tui_state_log_line(s, b)->text, lw);
        if (acc >= rows) {
            limit = b;
            break;
        }
    }
    if (s->log_back > limit) s->log_back = limit;
    if (s->help) {
        int n = help_lines(s, W), body = H - 7;
        if (s->help_top > n - body) s->help_top = n - body > 0 ? n - body : 0;
    }
}

void tui_panel_frame(tui_state *s) {
    int H = s->rows_n, W = s->cols_n;
    erase();
    if (H < TUI_MIN_H || W < TUI_MIN_W) {
        too_small(s, H, W);
        curs_set(0);
        return;
    }
    status_line(s, W);
    tabs(s, W);
    /* the panel gives up columns first on a narrow terminal */
    int pw = panel_width(W), bw = W - pw - 1, by = 2, bh = H - 4;
    tui_view_draw(s, s->view, by, 0, bh, bw);
    attrset(tui_attr(s, TUI_C_AXIS));
    for (int r = by; r < by + bh; r++) mvaddstr(r, bw, tui_glyph(s, "vline"));
    attrset(A_NORMAL);
    params(s, by, bw + 1, bh, pw);
    message_line(s, H - 2, W);
    help_line(s, H - 1, W);
    if (s->help) help_overlay(s, H, W);
    if (s->prompting && !s->help) {
        int pl = tui_text_width(s, s->line_prompt), avail = W - pl - 1;
        int col = s->line_point > avail ? avail : s->line_point;
        /* the point is a byte offset: count the columns before it */
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%.*s", s->line_point, s->line);
        col = tui_text_width(s, tmp);
        if (col > avail) col = avail;
        move(H - 2, pl + col);
        curs_set(1);
    } else {
        curs_set(0);
    }
}
