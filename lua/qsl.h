/* qsl.h — the `qscope` Lua module, seen from C: open it in a lua_State,
 * run a script headless, and (for the workbench) receive its plots and its
 * printed output instead of stdout.
 *
 * The module itself is documented in qscope-lua(7). A host embeds it so:
 *
 *     lua_State *L = luaL_newstate();
 *     luaL_openlibs(L);
 *     qsl_preload(L);                          // require "qscope", global `qscope`
 *     qsl_set_print(L, log_write, log);        // print / io.write -> the log pane
 *     qsl_set_plot_sink(draw_plot, pane);      // qs.plot.* -> the plot pane
 *     if (luaL_loadstring(L, line) == LUA_OK && qsl_pcall(L, 0, LUA_MULTRET) != LUA_OK)
 *         show_error(lua_tostring(L, -1));     // message + traceback
 *
 * and from another thread (Esc) or a signal handler asks a running call to
 * stop with qsl_interrupt(L): the long operation (calibration, perplexity,
 * generation) returns within one window or token and the Lua call raises
 * "interrupted".
 *
 * `qscope run FILE.lua [args...]` is qsl_run(); `make` also builds qscope.so,
 * whose luaopen_qscope is qsl_open, for stock lua5.4.
 */
#ifndef QSL_H
#define QSL_H

#include <stddef.h>

#include <lua.h>

/* luaopen_qscope: push the module table. */
int qsl_open(lua_State *L);
int luaopen_qscope(lua_State *L);

/* Register the module in package.preload and set the global `qscope` to it
 * (what `qscope run` does before running a script). Returns 0, or -1 with
 * an error message left on the stack. */
int qsl_preload(lua_State *L);

/* Push a Model handle on a model the host has loaded and keeps (the
 * workbench's own): Lua uses it without a second copy of the weights and
 * never frees it, so the host must keep m alive until lua_close(L). The
 * model must not change while L can reach it. */
struct qs_model;
void qsl_push_model(lua_State *L, const struct qs_model *m);

/* lua_pcall with a message handler that appends a traceback to string
 * errors (non-strings with __tostring are converted first). Same contract
 * as lua_pcall: the function and nargs arguments are on the stack; on error
 * the message is left on top. A usage error (a bad option given to qs.args)
 * returns QSL_ERRUSAGE with its one-line message and no traceback. */
#define QSL_ERRUSAGE 100
int qsl_pcall(lua_State *L, int nargs, int nres);

/* Ask the operation running in L to stop. Safe from a signal handler or
 * another thread: it sets a flag the progress/streaming callbacks check and
 * a one-shot hook (as lua.c does on Ctrl-C), so plain Lua code stops too. */
void qsl_interrupt(lua_State *L);

/* The headless runner: argv[0] is the script ("-" reads stdin), the rest its
 * arguments (the global `arg` as in lua(1), and `...`). Ctrl-C interrupts.
 * Returns the exit status: 0, 1 after an error (message and traceback on
 * stderr), 2 for a usage error, 130 when interrupted. */
int qsl_run(int argc, char **argv);

/* ---- output redirection (the workbench) ---- */

/* Where text goes: s is not NUL-terminated. */
typedef void (*qsl_write_fn)(void *ud, const char *s, size_t len);

/* Route print() and io.write() of L, and the text of headless plots, to fn
 * (NULL restores stdout). print adds its usual tabs and newline. */
void qsl_set_print(lua_State *L, qsl_write_fn fn, void *ud);

/* ---- plots ---- */

typedef enum {
    QSL_PLOT_SCATTER = 1, /* points (x, y), optionally coloured by group */
    QSL_PLOT_LINE = 2,    /* one or more series joined point to point */
    QSL_PLOT_BARS = 3,    /* one value per bar, optional labels */
    QSL_PLOT_HEATMAP = 4  /* a matrix of values, rows top to bottom */
} qsl_plot_kind;

typedef struct {
    const char *name;   /* legend label, or NULL */
    int n;              /* points */
    const double *x;    /* (n) */
    const double *y;    /* (n); non-finite points are skipped */
    const int *group;   /* (n) colour group of each point in [0, n_groups), or NULL */
} qsl_series;

/* Everything a plot shows; all pointers are valid only during the sink call
 * (copy what you keep). */
typedef struct {
    qsl_plot_kind kind;
    const char *title, *xlabel, *ylabel; /* NULL: none */
    int width, height;     /* characters asked for (default 72 x 20) */
    int n_series;
    const qsl_series *series; /* scatter, line: n_series; bars: one, y = values, x = positions */
    int n_groups;             /* colour groups of series[].group (scatter), 0: none */
    const char *const *group_names; /* (n_groups) legend labels */
    const char *const *labels;      /* bars: (series[0].n) labels, or NULL */
    int rows, cols;           /* heatmap */
    const double *z;          /* heatmap (rows, cols) row-major */
    const char *const *row_labels;  /* heatmap: (rows), or NULL: rows numbered from y0 */
    double x0, y0;            /* the number of the first bar / heatmap column (x0) and heatmap row (y0) */
    int logy;                 /* y (heatmap: values) on a log10 scale; values <= 0 are skipped */
    double xmin, xmax, ymin, ymax; /* NaN: from the data */
    double vline, hline;      /* a marker line at x = vline / y = hline; NaN: none */
    int charset;              /* 0: from the locale, 1: ASCII, 2: braille/Unicode blocks */
} qsl_plot;

typedef void (*qsl_plot_fn)(void *ud, const qsl_plot *p);

/* Send every qs.plot.* call to fn instead of rendering text (NULL: text on
 * the print sink or stdout). Process-wide: the workbench has one plot pane. */
void qsl_set_plot_sink(qsl_plot_fn fn, void *ud);

/* Render p as plain text: braille (2x4 dots per cell) and block characters
 * when utf8, ASCII otherwise; ANSI colours when ansi. Lines are at most
 * p->width columns; the chart body (canvas, axis, tick labels) is p->height
 * lines, with the title above and the legend below. Returns a malloc'd
 * NUL-terminated string (caller frees), NULL when out of memory. */
char *qsl_plot_text(const qsl_plot *p, int utf8, int ansi);

/* Whether the environment asks for UTF-8 (LC_ALL, LC_CTYPE, LANG). */
int qsl_locale_utf8(void);

#endif
