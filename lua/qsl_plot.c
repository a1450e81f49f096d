/* qs.plot.scatter / line / bars / heatmap: the arguments become a qsl_plot,
 * which goes to the workbench's plot sink when one is installed, and is
 * otherwise rendered as text (qsl_plot_text.c) on the print sink or stdout. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qsl_impl.h"

static qsl_plot_fn plot_sink;
static void *plot_sink_ud;

void qsl_set_plot_sink(qsl_plot_fn fn, void *ud) {
    plot_sink = fn;
    plot_sink_ud = ud;
}

/* The options every plot takes. */
#define PLOT_OPTS                                                                                                   \
    "title, xlabel, ylabel, width, height, logy, xmin, xmax, ymin, ymax, vline, hline, x0, y0, charset, print"

/* Common options into p; returns whether to print (headless). */
static int common_opts(lua_State *L, int opts, qsl_plot *p) {
    static const char *const charsets[] = {"auto", "ascii", "braille", NULL};
    p->title = qsl_opt_str(L, opts, "title", NULL);
    p->xlabel = qsl_opt_str(L, opts, "xlabel", NULL);
    p->ylabel = qsl_opt_str(L, opts, "ylabel", NULL);
    p->width = (int)qsl_opt_int(L, opts, "width", 72, 16, 1000);
    p->height = (int)qsl_opt_int(L, opts, "height", 20, 4, 1000);
    p->logy = qsl_opt_bool(L, opts, "logy", 0);
    p->xmin = qsl_opt_num(L, opts, "xmin", NAN, -HUGE_VAL, HUGE_VAL);
    p->xmax = qsl_opt_num(L, opts, "xmax", NAN, -HUGE_VAL, HUGE_VAL);
    p->ymin = qsl_opt_num(L, opts, "ymin", NAN, -HUGE_VAL, HUGE_VAL);
    p->ymax = qsl_opt_num(L, opts, "ymax", NAN, -HUGE_VAL, HUGE_VAL);
    p->vline = qsl_opt_num(L, opts, "vline", NAN, -HUGE_VAL, HUGE_VAL);
    p->hline = qsl_opt_num(L, opts, "hline", NAN, -HUGE_VAL, HUGE_VAL);
    p->x0 = qsl_opt_num(L, opts, "x0", 1, -1e15, 1e15);
    p->y0 = qsl_opt_num(L, opts, "y0", 1, -1e15, 1e15);
    const char *cs = qsl_opt_str(L, opts, "charset", "auto");
    int k = 0;
    while (charsets[k] && strcmp(charsets[k], cs)) k++;
    if (!charsets[k]) luaL_argerror(L, opts, lua_pushfstring(L, "'charset' is auto, ascii or braille, not '%s'", cs));
    p->charset = k;
    return qsl_opt_bool(L, opts, "print", 1);
}

/* Send p on; push the rendered text (or nothing with a sink). */
static int emit(lua_State *L, const qsl_plot *p, int print) {
    if (plot_sink) {
        plot_sink(plot_sink_ud, p);
        return 0;
    }
    int utf8 = p->charset == 0 ? qsl_locale_utf8() : p->charset == 2;
    const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
    int ansi = print && !qsl_output_redirected(L) && isatty(1) && !(nc && *nc) && !(term && !strcmp(term, "dumb"));
    char *text = qsl_plot_text(p, utf8, ansi);
    if (!text) return luaL_error(L, "out of memory rendering a plot");
    lua_pushstring(L, text);
    free(text);
    if (print) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        qsl_write(L, s, len);
    }
    return 1;
}

/* Labels (strings or numbers) from the array field key, or NULL. The
 * strings are held by a table left on the stack. */
static const char **labels_opt(lua_State *L, int opts, const char *key, int n) {
    if (lua_getfield(L, opts, key) == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    int t = lua_gettop(L);
    if (!lua_istable(L, t)) luaL_argerror(L, opts, lua_pushfstring(L, "'%s' expects an array of strings", key));
    const char **out = qsl_scratch(L, (size_t)(n + 1) * sizeof *out);
    lua_createtable(L, n, 0);
    int holder = lua_gettop(L);
    for (int i = 0; i < n; i++) {
        if (lua_geti(L, t, i + 1) == LUA_TNIL) out[i] = NULL;
        else {
            luaL_tolstring(L, -1, NULL);
            out[i] = lua_tostring(L, -1);
            lua_rawseti(L, holder, i + 1);
        }
        lua_pop(L, 1);
    }
    out[n] = NULL;
    return out;
}

/* qs.plot.scatter(x, y [, opts]) */
static int l_scatter(lua_State *L) {
    lua_settop(L, 3);
    int nx, ny;
    double *x = qsl_numbers(L, 1, &nx, "x");
    double *y = qsl_numbers(L, 2, &ny, "y");
    if (nx != ny) luaL_argerror(L, 2, lua_pushfstring(L, "x has %d values, y has %d", nx, ny));
    int opts = qsl_opt_table(L, 3);
    qsl_plot p;
    memset(&p, 0, sizeof p);
    p.kind = QSL_PLOT_SCATTER;
    qsl_opt_known(L, opts, PLOT_OPTS ", color, names, group");
    int print = common_opts(L, opts, &p);
    qsl_series s = {.name = NULL, .n = nx, .x = x, .y = y};
    /* colour groups: the distinct values of `color`, in ascending order */
    if (lua_getfield(L, opts, "color") != LUA_TNIL) {
        int nc;
        double *cv = qsl_numbers(L, lua_gettop(L), &nc, "'color'");
        if (nc != nx) luaL_argerror(L, opts, lua_pushfstring(L, "'color' has %d values for %d points", nc, nx));
        double *sorted = qsl_scratch(L, (size_t)(nc + 1) * sizeof *sorted);
        memcpy(sorted, cv, (size_t)nc * sizeof *sorted);
        for (int i = 1; i < nc; i++) { /* insertion sort: a few hundred channels */
            double v = sorted[i];
            int j = i - 1;
            while (j >= 0 && sorted[j] > v) {
                sorted[j + 1] = sorted[j];
                j--;
            }
            sorted[j + 1] = v;
        }
        int ng = 0;
        for (int i = 0; i < nc; i++)
            if (i == 0 || sorted[i] != sorted[i - 1]) sorted[ng++] = sorted[i];
        int *group = qsl_scratch(L, (size_t)(nc + 1) * sizeof *group);
        for (int i = 0; i < nc; i++) {
            int lo = 0, hi = ng - 1;
            while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (sorted[mid] < cv[i]) lo = mid + 1;
                else hi = mid;
            }
            group[i] = lo;
        }
        s.group = group;
        p.n_groups = ng;
        const char **names = labels_opt(L, opts, "names", ng);
        if (!names) {
            const char *prefix = qsl_opt_str(L, opts, "group", "group");
            names = qsl_scratch(L, (size_t)(ng + 1) * sizeof *names);
            lua_createtable(L, ng, 0); /* holds the strings */
            for (int g = 0; g < ng; g++) {
                if (sorted[g] == floor(sorted[g]) && fabs(sorted[g]) < 1e15)
                    lua_pushfstring(L, "%s %I", prefix, (lua_Integer)sorted[g]);
                else
                    lua_pushfstring(L, "%s %f", prefix, sorted[g]);
                names[g] = lua_tostring(L, -1);
                lua_rawseti(L, -2, g + 1);
            }
        }
        p.group_names = names;
    } else {
        lua_pop(L, 1);
    }
    p.n_series = 1;
    p.series = &s;
    return emit(L, &p, print);
}

static int is_numeric_array(lua_State *L, int idx) {
    if (qsl_test_tensor(L, idx)) return qsl_test_tensor(L, idx)->ndim == 1;
    if (!lua_istable(L, idx)) return 0;
    int t = lua_geti(L, idx, 1);
    lua_pop(L, 1);
    return t == LUA_TNUMBER;
}

/* qs.plot.line(y [, opts]) | line(x, y [, opts]) | line({y1, y2, ...} [, opts]) */
static int l_line(lua_State *L) {
    lua_settop(L, 3);
    int xarg = 0, yarg = 1, opt_idx = 2, multi = 0;
    if (is_numeric_array(L, 1) && is_numeric_array(L, 2)) {
        xarg = 1;
        yarg = 2;
        opt_idx = 3;
    } else if (!is_numeric_array(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        multi = 1;
    }
    int opts = qsl_opt_table(L, opt_idx);
    qsl_plot p;
    memset(&p, 0, sizeof p);
    p.kind = QSL_PLOT_LINE;
    qsl_opt_known(L, opts, PLOT_OPTS ", x, names");
    int print = common_opts(L, opts, &p);
    int ns = multi ? (int)luaL_len(L, 1) : 1;
    if (ns < 1) luaL_argerror(L, 1, "no series");
    if (ns > 64) luaL_argerror(L, 1, "more than 64 series");
    qsl_series *ss = qsl_scratch(L, (size_t)ns * sizeof *ss);
    double *xs = NULL;
    int nx = -1;
    if (xarg) xs = qsl_numbers(L, xarg, &nx, "x");
    else if (lua_getfield(L, opts, "x") != LUA_TNIL) xs = qsl_numbers(L, lua_gettop(L), &nx, "'x'");
    const char **names = labels_opt(L, opts, "names", ns);
    for (int k = 0; k < ns; k++) {
        int n;
        double *y;
        if (multi) {
            lua_geti(L, 1, k + 1);
            y = qsl_numbers(L, lua_gettop(L), &n, "series");
        } else {
            y = qsl_numbers(L, yarg, &n, "y");
        }
        if (xs && nx != n) luaL_argerror(L, xarg ? yarg : opts, lua_pushfstring(L, "x has %d values, y has %d", nx, n));
        double *x = xs;
        if (!x) {
            x = qsl_scratch(L, (size_t)(n + 1) * sizeof *x);
            for (int i = 0; i < n; i++) x[i] = p.x0 + i;
        }
        ss[k] = (qsl_series){.name = names ? names[k] : NULL, .n = n, .x = x, .y = y};
    }
    p.n_series = ns;
    p.series = ss;
    return emit(L, &p, print);
}

/* qs.plot.bars(values [, opts]) */
static int l_bars(lua_State *L) {
    lua_settop(L, 2);
    int n;
    double *y = qsl_numbers(L, 1, &n, "values");
    int opts = qsl_opt_table(L, 2);
    qsl_plot p;
    memset(&p, 0, sizeof p);
    p.kind = QSL_PLOT_BARS;
    qsl_opt_known(L, opts, PLOT_OPTS ", labels");
    int print = common_opts(L, opts, &p);
    double *x = qsl_scratch(L, (size_t)(n + 1) * sizeof *x);
    for (int i = 0; i < n; i++) x[i] = p.x0 + i;
    qsl_series s = {.n = n, .x = x, .y = y};
    p.labels = labels_opt(L, opts, "labels", n);
    p.n_series = 1;
    p.series = &s;
    return emit(L, &p, print);
}

/* qs.plot.heatmap(matrix [, opts]): a 2-D Tensor or an array of rows */
static int l_heatmap(lua_State *L) {
    lua_settop(L, 2);
    int rows, cols;
    double *z;
    qsl_tensor *t = qsl_test_tensor(L, 1);
    if (t) {
        rows = t->shape[0];
        cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
        if (t->ndim == 1) rows = 1;
        z = qsl_scratch(L, (size_t)rows * cols * sizeof *z);
        for (size_t i = 0; i < (size_t)rows * cols; i++) z[i] = qsl_tensor_get(t, i);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        rows = (int)luaL_len(L, 1);
        if (rows < 1) luaL_argerror(L, 1, "no rows");
        lua_geti(L, 1, 1);
        qsl_numbers(L, -1, &cols, "row");
        lua_pop(L, 2);
        if (cols < 1) luaL_argerror(L, 1, "empty rows");
        z = qsl_scratch(L, (size_t)rows * cols * sizeof *z);
        for (int r = 0; r < rows; r++) {
            lua_geti(L, 1, r + 1);
            int n;
            double *row = qsl_numbers(L, lua_gettop(L), &n, "row");
            if (n != cols) luaL_argerror(L, 1, lua_pushfstring(L, "row %d has %d values, row 1 has %d", r + 1, n, cols));
            memcpy(z + (size_t)r * cols, row, (size_t)cols * sizeof *z);
            lua_pop(L, 2); /* the row and its numbers */
        }
    }
    int opts = qsl_opt_table(L, 2);
    qsl_plot p;
    memset(&p, 0, sizeof p);
    p.kind = QSL_PLOT_HEATMAP;
    qsl_opt_known(L, opts, PLOT_OPTS ", log, row_labels");
    int print = common_opts(L, opts, &p);
    p.logy = p.logy || qsl_opt_bool(L, opts, "log", 0);
    p.rows = rows;
    p.cols = cols;
    p.z = z;
    p.row_labels = labels_opt(L, opts, "row_labels", rows);
    return emit(L, &p, print);
}

static const luaL_Reg plot_fns[] = {
    {"scatter", l_scatter}, {"line", l_line}, {"bars", l_bars}, {"heatmap", l_heatmap}, {NULL, NULL},
};

void qsl_plot_register(lua_State *L) {
    lua_newtable(L);
    luaL_setfuncs(L, plot_fns, 0);
    lua_setfield(L, -2, "plot");
}
