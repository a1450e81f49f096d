/* The minimal full-screen view: a model summary and a per-layer table.
 * Arrows/jk scroll, q quits. The workbench (plots, tuning, Lua prompt)
 * grows from here. */
#include <curses.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/forward.h"
#include "cli.h"

static void draw(const qs_model *m, int top) {
    const qs_config *c = &m->cfg;
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    erase();
    if (rows < 24 || cols < 80) {
        mvprintw(0, 0, "qscope needs at least 80x24; this terminal is %dx%d.", cols, rows);
        mvprintw(1, 0, "Enlarge it, or press q to quit.");
        refresh();
        return;
    }
    attron(A_REVERSE);
    mvhline(0, 0, ' ', cols);
    mvprintw(0, 1, "qscope  %s  %s  %.1f MB fp32", m->path, c->arch_name, qs_model_weight_bytes(m) / 1e6);
    attroff(A_REVERSE);
    int y = 2;
    mvprintw(y++, 2, "architecture  %s (%s), %s, %s", c->arch_name, qs_arch_str(c->arch),
             c->norm == QS_NORM_LAYER ? "LayerNorm" : "RMSNorm", qs_act_str(c->act));
    mvprintw(y++, 2, "shape         %d layers, d_model %d, %d heads (%d kv) of %d, ffn %d", c->n_layers,
             c->d_model, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff);
    mvprintw(y++, 2, "vocabulary    %d  %s", c->vocab, m->tok ? qs_tok_describe(m->tok) : "(no tokenizer)");
    mvprintw(y++, 2, "parameters    %lld   file: %s, %s", qs_model_params(m), m->format, m->dtype);
    mvprintw(y++, 2, "positions     %d   kv cache %lld bytes/token", c->max_pos, qs_ctx_kv_bytes_per_token(m));
    y++;
    attron(A_BOLD);
    mvprintw(y++, 2, "%5s  %-12s %-12s %-12s %-12s %-12s %-12s", "layer", "q", "k", "v", "o", "up", "down");
    attroff(A_BOLD);
    int avail = rows - y - 1;
    for (int i = top; i < c->n_layers && i - top < avail; i++) {
        const qs_layer *L = &m->w.layers[i];
        const qs_linear *ls[6] = {&L->q, &L->k, &L->v, &L->o, &L->up, &L->down};
        move(y++, 2);
        printw("%5d ", i);
        for (int j = 0; j < 6; j++) printw(" %-12s", "");
        for (int j = 0; j < 6; j++) mvprintw(y - 1, 9 + 13 * j, "%dx%d", ls[j]->n_out, ls[j]->n_in);
    }
    attron(A_REVERSE);
    mvhline(rows - 1, 0, ' ', cols);
    mvprintw(rows - 1, 1, "q quit   j/k or arrows scroll");
    attroff(A_REVERSE);
    refresh();
}

int tui_view_run(qs_model *m) {
    setlocale(LC_ALL, "");
    if (!initscr()) {
        cli_error("cannot initialise the terminal (TERM=%s)", getenv("TERM") ? getenv("TERM") : "");
        return EXIT_RUNTIME;
    }
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    int top = 0, n = m->cfg.n_layers;
    draw(m, top);
    for (;;) {
        int ch = getch();
        if (ch == 'q' || ch == 'Q' || ch == 27) break;
        if ((ch == KEY_DOWN || ch == 'j') && top < n - 1) top++;
        if ((ch == KEY_UP || ch == 'k') && top > 0) top--;
        draw(m, top);
    }
    endwin();
    return EXIT_OK;
}
