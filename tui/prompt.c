/* The command line: GNU readline in its callback ("alternate") interface,
 * fed one byte at a time from the curses key loop and drawn by the frame in
 * the message line, so readline never touches the terminal. `:` runs Lua
 * (history in $XDG_STATE_HOME/qscope/history, Tab completes globals and
 * fields); in the Generate view the same line edits the prompt.
 *
 * Lua commands run as jobs on the worker thread, so a long `m:ppl()` leaves
 * the screen answering keys and Esc interrupts it (qsl_interrupt). The Lua
 * state is guarded by a mutex: completion, on the UI thread, only looks when
 * no command is running. print() and qs.plot.* reach the UI as events. */
#include <curses.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <readline/history.h>
#include <readline/readline.h>
#include <readline/tilde.h>

#include "base/base.h"
#include "tui.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "../lua/qsl.h"

static char lua_breaks[] = " \t\n\"\\'`@$><=;|&{(,+-*/%^~#[]", path_breaks[] = " \t\n";

/* readline's callbacks take no user pointer: one command line per process */
static tui_state *S;
static unsigned char feed[16];
static int feed_n, feed_i;
static char history_path[1100];
static FILE *devnull;

/* ---- readline hooks ---- */

static int rl_getc_cb(FILE *f) {
    (void)f;
    return feed_i < feed_n ? feed[feed_i++] : EOF;
}

static int rl_avail_cb(void) { return feed_i < feed_n; }

static void rl_redisplay_cb(void) {
    if (!S) return;
    tui_copy(S->line, sizeof S->line, rl_line_buffer ? rl_line_buffer : "");
    S->line_point = rl_point < 0 ? 0 : rl_point > (int)strlen(S->line) ? (int)strlen(S->line) : rl_point;
    tui_copy(S->line_prompt, sizeof S->line_prompt, rl_display_prompt ? rl_display_prompt : "");
}

static void rl_prep_noop(int meta) { (void)meta; }
static void rl_deprep_noop(void) {}

static void matches_hook(char **matches, int n, int max_len) {
    (void)max_len;
    size_t k = 0;
    S->hint[0] = 0;
    for (int i = 1; i <= n && k + 2 < sizeof S->hint; i++) {
        int w = snprintf(S->hint + k, sizeof S->hint - k, "%s%s", i > 1 ? "  " : "", matches[i]);
        if (w < 0) break;
        k += (size_t)w;
    }
    rl_forced_update_display();
}

/* ---- Lua ---- */

static lua_State *L;
static pthread_mutex_t lua_mu = PTHREAD_MUTEX_INITIALIZER;

static void post_text(int level, const char *str, size_t len) {
    if (S && S->jobs) tui_jobs_post_log(S->jobs, level, str, len);
}

static void lua_print(void *ud, const char *str, size_t len) {
    (void)ud;
    post_text(4, str, len);
}

/* ---- plots: copied out of the sink call (its pointers die with it) ---- */

static double *dup_d(const double *a, int n) {
    if (!a || n <= 0) return NULL;
    double *c = malloc((size_t)n * sizeof *c);
    if (c) memcpy(c, a, (size_t)n * sizeof *c);
    return c;
}

static void apply_plot(tui_state *s, void *data) {
    tui_plot *p = data;
    tui_plot_clear(&s->plot);
    s->plot = *p;
    free(p);
    s->view = TUI_V_PLOT;
    tui_state_log(s, QS_LOG_INFO, "plot: %s (view 7)", s->plot.title[0] ? s->plot.title : "untitled");
}

static void plot_sink(void *ud, const qsl_plot *q) {
    (void)ud;
    tui_plot *p = calloc(1, sizeof *p);
    if (!p) return;
    p->kind = (int)q->kind;
    tui_copy(p->title, sizeof p->title, q->title ? q->title : "");
    tui_copy(p->xlabel, sizeof p->xlabel, q->xlabel ? q->xlabel : "");
    tui_copy(p->ylabel, sizeof p->ylabel, q->ylabel ? q->ylabel : "");
    p->n_series = q->n_series < TUI_PLOT_SERIES ? q->n_series : TUI_PLOT_SERIES;
    for (int i = 0; i < p->n_series; i++) {
        const qsl_series *src = &q->series[i];
        tui_copy(p->s[i].name, sizeof p->s[i].name, src->name ? src->name : "");
        p->s[i].n = src->n;
        p->s[i].x = dup_d(src->x, src->n);
        p->s[i].y = dup_d(src->y, src->n);
        if (src->group && src->n > 0 && (p->s[i].group = malloc((size_t)src->n * sizeof(int))))
            memcpy(p->s[i].group, src->group, (size_t)src->n * sizeof(int));
        if (!p->s[i].y) p->s[i].n = 0;
    }
    p->n_groups = q->n_groups < TUI_PLOT_GROUPS ? q->n_groups : TUI_PLOT_GROUPS;
    for (int i = 0; i < p->n_groups; i++)
        snprintf(p->group_names[i], sizeof p->group_names[i], "%s",
                 q->group_names && q->group_names[i] ? q->group_names[i] : "");
    if (q->labels && p->n_series > 0 && p->s[0].n > 0 && (p->labels = calloc((size_t)p->s[0].n, sizeof *p->labels)))
        for (int i = 0; i < p->s[0].n; i++) tui_copy(p->labels[i], sizeof p->labels[i], q->labels[i] ? q->labels[i] : "");
    if (q->z && q->rows > 0 && q->cols > 0) {
        p->rows = q->rows;
        p->cols = q->cols;
        p->z = dup_d(q->z, q->rows * q->cols);
        if (!p->z) p->rows = p->cols = 0;
        if (q->row_labels && (p->row_labels = calloc((size_t)q->rows, sizeof *p->row_labels)))
            for (int i = 0; i < q->rows; i++)
                tui_copy(p->row_labels[i], sizeof p->row_labels[i], q->row_labels[i] ? q->row_labels[i] : "");
    }
    p->x0 = q->x0;
    p->y0 = q->y0;
    p->logy = q->logy;
    p->xmin = q->xmin;
    p->xmax = q->xmax;
    p->ymin = q->ymin;
    p->ymax = q->ymax;
    p->vline = q->vline;
    p->hline = q->hline;
    if (S && S->jobs) {
        tui_jobs_post(S->jobs, apply_plot, p);
    } else {
        tui_plot_clear(p);
        free(p);
    }
}

/* A Lua chunk as a job: `return <line>` first (so `1+1` prints 2), as lua.c
 * does, else the line as a statement; or a whole file. */
typedef struct {
    char spec[160];
    int is_file;
    char text[];
} lua_in;

static qs_status lua_run(tui_job *j) {
    lua_in *in = j->in;
    pthread_mutex_lock(&lua_mu);
    lua_pushstring(L, in->spec);
    lua_setglobal(L, "spec");
    int base = lua_gettop(L), st;
    if (in->is_file) {
        st = luaL_loadfile(L, in->text);
    } else {
        lua_pushfstring(L, "return %s;", in->text);
        st = luaL_loadbuffer(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=lua");
        lua_remove(L, -2);
        if (st != LUA_OK) {
            lua_pop(L, 1);
            st = luaL_loadbuffer(L, in->text, strlen(in->text), "=lua");
        }
    }
    if (st == LUA_OK) st = qsl_pcall(L, 0, LUA_MULTRET);
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        tui_copy(j->err, sizeof j->err, msg ? msg : "(error object is not a string)");
        post_text(3, msg ? msg : "(error object is not a string)", strlen(msg ? msg : "(error object is not a string)"));
    } else if (lua_gettop(L) > base) {
        /* the results, as the interactive interpreter prints them */
        luaL_Buffer b;
        int top = lua_gettop(L);
        luaL_buffinit(L, &b);
        for (int i = base + 1; i <= top; i++) {
            if (i > base + 1) luaL_addchar(&b, '\t');
            luaL_tolstring(L, i, NULL);
            luaL_addvalue(&b);
        }
        luaL_pushresult(&b);
        size_t len;
        const char *r = lua_tolstring(L, -1, &len);
        post_text(4, r, len);
    }
    lua_settop(L, base);
    pthread_mutex_unlock(&lua_mu);
    return st == LUA_OK ? QS_OK : QS_EARG;
}

static void lua_cancel(tui_job *j) {
    (void)j;
    qsl_interrupt(L);
}

static void lua_done(tui_state *s, tui_job *j) {
    (void)s;
    (void)j;
}

static void lua_free(tui_job *j) { free(j->in); }

static void submit_lua(tui_state *s, const char *text, int is_file) {
    size_t n = strlen(text);
    lua_in *in = malloc(sizeof *in + n + 1);
    tui_job *j = calloc(1, sizeof *j);
    if (!in || !j) {
        free(in);
        free(j);
        return;
    }
    tui_copy(in->spec, sizeof in->spec, s->spec);
    in->is_file = is_file;
    memcpy(in->text, text, n + 1);
    j->kind = TUI_JOB_LUA;
    j->ordered = 1;
    snprintf(j->label, sizeof j->label, "lua %.60s", text);
    j->in = in;
    j->run = lua_run;
    j->on_cancel = lua_cancel;
    j->done = lua_done;
    j->free_fn = lua_free;
    tui_jobs_submit(s->jobs, j);
}

/* ---- completion ---- */

static char **cands;
static int n_cands, cap_cands, next_cand;

static void add_cand(const char *prefix, const char *key, char sep) {
    if (n_cands == cap_cands) {
        int cap = cap_cands ? cap_cands * 2 : 64;
        char **c = realloc(cands, (size_t)cap * sizeof *c);
        if (!c) return;
        cands = c;
        cap_cands = cap;
    }
    size_t n = strlen(prefix) + strlen(key) + 2;
    char *s = malloc(n);
    if (!s) return;
    snprintf(s, n, "%s%s", prefix, key);
    (void)sep;
    for (int i = 0; i < n_cands; i++)
        if (!strcmp(cands[i], s)) {
            free(s);
            return;
        }
    cands[n_cands++] = s;
}

/* string keys of the table at idx that start with part */
static void keys_of(int idx, const char *prefix, const char *part) {
    idx = lua_absindex(L, idx);
    size_t pl = strlen(part);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2);
            if (!strncmp(k, part, pl) && k[0] != '_') add_cand(prefix, k, 0);
        }
        lua_pop(L, 1);
    }
}

/* fields a value at idx offers: its own (a table), and its metatable's
 * __index table or the methods table a class's __index closes over */
static void fields_of(int idx, const char *prefix, const char *part) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TTABLE) keys_of(idx, prefix, part);
    if (!lua_getmetatable(L, idx)) return;
    lua_getfield(L, -1, "__index");
    if (lua_type(L, -1) == LUA_TTABLE) keys_of(-1, prefix, part);
    else if (lua_type(L, -1) == LUA_TFUNCTION && lua_getupvalue(L, -1, 1)) {
        if (lua_type(L, -1) == LUA_TTABLE) keys_of(-1, prefix, part);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
}

static void collect(const char *text) {
    for (int i = 0; i < n_cands; i++) free(cands[i]);
    n_cands = 0;
    if (pthread_mutex_trylock(&lua_mu)) {
        snprintf(S->hint, sizeof S->hint, "Lua is busy: completion waits for the running command");
        return;
    }
    int top = lua_gettop(L);
    const char *cut = NULL;
    for (const char *p = text; *p; p++)
        if (*p == '.' || *p == ':') cut = p;
    if (!cut) {
        lua_pushglobaltable(L);
        fields_of(-1, "", text);
        static const char *const kw[] = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function",
                                         "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return",
                                         "then", "true", "until", "while"};
        for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
            if (!strncmp(kw[i], text, strlen(text))) add_cand("", kw[i], 0);
    } else {
        /* walk a.b.c from the globals; only tables and objects with metatables */
        char path[512];
        snprintf(path, sizeof path, "%.*s", (int)(cut - text), text);
        lua_pushglobaltable(L);
        char *save = NULL;
        int ok = 1;
        for (char *name = strtok_r(path, ".:", &save); name && ok; name = strtok_r(NULL, ".:", &save)) {
            int t = lua_type(L, -1);
            if (t != LUA_TTABLE && t != LUA_TUSERDATA) {
                ok = 0;
                break;
            }
            lua_pushstring(L, name);
            if (t == LUA_TTABLE) lua_rawget(L, -2);
            else {
                /* an object: look its name up among the methods, never call a getter */
                lua_pop(L, 1);
                lua_pushnil(L);
            }
            lua_remove(L, -2);
        }
        char prefix[512];
        snprintf(prefix, sizeof prefix, "%.*s", (int)(cut - text + 1), text);
        if (ok) fields_of(-1, prefix, cut + 1);
    }
    lua_settop(L, top);
    pthread_mutex_unlock(&lua_mu);
}

static char *generator(const char *text, int state) {
    if (!state) {
        collect(text);
        next_cand = 0;
    }
    while (next_cand < n_cands) {
        char *c = cands[next_cand++];
        return strdup(c);
    }
    return NULL;
}

static char **complete(const char *text, int start, int end) {
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1;
    rl_completion_append_character = '\0'; /* readline resets it to a space before every attempt */
    if (S && S->prompting == 1 && L) return rl_completion_matches(text, generator);
    if (S && (S->prompting == 4 || S->prompting == 5)) {
        /* a path: readline's own file names (directories end in '/') */
        rl_filename_completion_desired = 1;
        return rl_completion_matches(text, rl_filename_completion_function);
    }
    return NULL;
}

/* ---- qscope.ui: the workbench from the : prompt ----
 *
 * Lua runs on the job thread; these functions check their arguments there and
 * hand the change to the UI thread as an event, so they return at once and the
 * screen shows the effect after the command. */

typedef struct {
    int what; /* 0 open calibration, 1 open evaluation text, 2 view, 3 measure */
    int view;
    char arg[];
} ui_req;

static void ui_apply(tui_state *s, void *data) {
    ui_req *r = data;
    switch (r->what) {
    case 0:
    case 1: tui_state_open(s, r->what, r->arg); break;
    case 2:
        s->view = r->view;
        if (s->view == TUI_V_CHANNELS) tui_state_want_clusters(s);
        if (s->view == TUI_V_SPECTRUM) tui_state_want_spectrum(s);
        break;
    case 3: tui_state_measure(s, r->arg, 0); break;
    }
    free(r);
}

static int ui_post(lua_State *Ls, int what, int view, const char *arg) {
    size_t n = strlen(arg);
    ui_req *r = malloc(sizeof *r + n + 1);
    if (!r || !S || !S->jobs) {
        free(r);
        lua_pushnil(Ls);
        lua_pushstring(Ls, "the workbench is not running");
        return 2;
    }
    r->what = what;
    r->view = view;
    memcpy(r->arg, arg, n + 1);
    tui_jobs_post(S->jobs, ui_apply, r);
    lua_pushboolean(Ls, 1);
    return 1;
}

static int ui_open(lua_State *Ls, int what) {
    const char *path = luaL_checkstring(Ls, 1);
    FILE *f = fopen(path, "rb");
    if (!f || qs_io_is_dir(path)) {
        if (f) fclose(f);
        lua_pushnil(Ls);
        lua_pushfstring(Ls, "%s: cannot read: %s", path, f ? "a directory" : strerror(errno));
        return 2;
    }
    fclose(f);
    return ui_post(Ls, what, 0, path);
}

static int ui_open_calib(lua_State *Ls) { return ui_open(Ls, 0); }
static int ui_open_data(lua_State *Ls) { return ui_open(Ls, 1); }

static int ui_view(lua_State *Ls) {
    int v = -1;
    if (lua_type(Ls, 1) == LUA_TNUMBER) {
        lua_Integer n = luaL_checkinteger(Ls, 1);
        if (n >= 1 && n <= TUI_V_COUNT) v = (int)n - 1;
    } else {
        const char *name = luaL_checkstring(Ls, 1);
        for (int i = 0; i < TUI_V_COUNT; i++)
            if (!strcasecmp(name, tui_view_title(i))) v = i;
    }
    if (v < 0)
        return luaL_argerror(Ls, 1, "a view: 1-7 or channels, outliers, spectrum, compare, generate, log, plot");
    return ui_post(Ls, 2, v, "");
}

static int ui_measure(lua_State *Ls) {
    const char *spec = luaL_checkstring(Ls, 1);
    if (qs_variant_needs_calib(spec) < 0) {
        lua_pushnil(Ls);
        lua_pushstring(Ls, qs_last_error());
        return 2;
    }
    return ui_post(Ls, 3, 0, spec);
}

static const luaL_Reg ui_funcs[] = {
    {"open_calib", ui_open_calib}, {"open_data", ui_open_data}, {"view", ui_view}, {"measure", ui_measure}, {NULL, NULL}};

/* ---- the line ---- */

static void close_line(void) {
    rl_callback_handler_remove();
    S->prompting = 0;
    S->hint[0] = 0;
    S->line[0] = 0;
    S->line_point = 0;
}

static void on_line(char *line) {
    int mode = S->prompting;
    close_line();
    if (!line) return;
    if (mode == 1) {
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p) {
            add_history(line);
            if (history_path[0]) append_history(1, history_path);
            tui_state_log(S, 4, "> %s", line);
            if (L) submit_lua(S, line, 0);
        }
    } else if (mode == 2) {
        tui_copy(S->prompt_text, sizeof S->prompt_text, line);
        tui_state_generate(S);
    } else if (mode == 3) {
        tui_keys_find(S, line);
    } else if (mode == 4 || mode == 5) {
        char *path = tilde_expand(line);
        size_t n = path ? strlen(path) : 0;
        while (n > 0 && path[n - 1] == ' ') path[--n] = 0; /* completion may leave a space */
        if (path && n) tui_state_open(S, mode - 4, path);
        free(path);
    }
    free(line);
}

static void make_dirs(const char *path) {
    char tmp[1100];
    tui_copy(tmp, sizeof tmp, path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0700) && errno != EEXIST) return;
            *p = '/';
        }
}

void tui_prompt_init(tui_state *s) {
    S = s;
    devnull = fopen("/dev/null", "w");
    rl_readline_name = "qscope";
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_change_environment = 0;
    rl_getc_function = rl_getc_cb;
    rl_input_available_hook = rl_avail_cb;
    rl_redisplay_function = rl_redisplay_cb;
    rl_prep_term_function = rl_prep_noop;
    rl_deprep_term_function = rl_deprep_noop;
    rl_outstream = devnull;
    rl_instream = NULL;
    rl_attempted_completion_function = complete;
    rl_completion_display_matches_hook = matches_hook;
    rl_completer_word_break_characters = lua_breaks;
    rl_completion_append_character = '\0';
    rl_bind_key('\t', rl_complete);
    using_history();
    stifle_history(1000);
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) snprintf(history_path, sizeof history_path, "%s/qscope/history", xdg);
    else if (home && *home) snprintf(history_path, sizeof history_path, "%s/.local/state/qscope/history", home);
    if (history_path[0]) {
        make_dirs(history_path);
        FILE *f = fopen(history_path, "a"); /* created as needed, so append_history can add to it */
        if (f) fclose(f);
        else history_path[0] = 0;
        if (history_path[0]) read_history(history_path);
    }
    L = luaL_newstate();
    if (!L) {
        tui_state_log(s, 3, "cannot create a Lua state (out of memory)");
        return;
    }
    luaL_openlibs(L);
    if (qsl_preload(L) != 0) {
        tui_state_log(s, 3, "the qscope Lua module failed to load: %s", lua_tostring(L, -1));
        lua_close(L);
        L = NULL;
        return;
    }
    lua_getglobal(L, "qscope");
    /* qscope.ui (also the global ui): the workbench itself */
    luaL_newlib(L, ui_funcs);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "ui");
    lua_setfield(L, -2, "ui");
    lua_setglobal(L, "qs");
    qsl_set_print(L, lua_print, NULL);
    qsl_set_plot_sink(plot_sink, NULL);
    /* `model` is the workbench's own model: the same weights, not a copy */
    qsl_push_model(L, s->m);
    lua_setglobal(L, "model");
    lua_pushstring(L, s->spec);
    lua_setglobal(L, "spec");
}

void tui_prompt_shutdown(tui_state *s) {
    (void)s;
    if (S && S->prompting) close_line();
    if (history_path[0]) history_truncate_file(history_path, 1000);
    qsl_set_plot_sink(NULL, NULL);
    if (L) {
        pthread_mutex_lock(&lua_mu);
        lua_close(L);
        L = NULL;
        pthread_mutex_unlock(&lua_mu);
    }
    for (int i = 0; i < n_cands; i++) free(cands[i]);
    free(cands);
    cands = NULL;
    n_cands = cap_cands = 0;
    clear_history();
    if (devnull) fclose(devnull);
    devnull = NULL;
    rl_outstream = NULL;
    S = NULL;
}

void tui_prompt_open(tui_state *s, int mode) {
    s->prompting = mode;
    s->hint[0] = 0;
    static const char *const prompts[] = {"", ":", "prompt> ", "find (33, L3): ", "calibration text: ", "evaluation text: "};
    /* a path breaks only at blanks; Lua at its operators */
    rl_completer_word_break_characters = mode >= 4 ? path_breaks : lua_breaks;
    rl_callback_handler_install(prompts[mode], on_line);
    if (mode == 2) {
        rl_insert_text(s->prompt_text);
        rl_point = rl_end;
    }
    rl_redisplay_cb();
}

static void feed_bytes(const char *b, int n) {
    for (int i = 0; i < n && S && S->prompting; i++) {
        feed[0] = (unsigned char)b[i];
        feed_n = 1;
        feed_i = 0;
        rl_callback_read_char();
        feed_n = feed_i = 0;
    }
}

int tui_prompt_key(tui_state *s, int key, int alt) {
    s->keys++;
    if (key == 27 && !alt) {
        /* Esc alone leaves the line: readline would wait for a meta key */
        rl_replace_line("", 0);
        close_line();
        return TUI_R_DRAW;
    }
    if (key != '\t') s->hint[0] = 0;
    char b[8];
    int n = 0;
    if (alt) b[n++] = 27;
    switch (key) {
    case KEY_LEFT: b[n++] = 2; break;   /* C-b */
    case KEY_RIGHT: b[n++] = 6; break;  /* C-f */
    case KEY_UP: b[n++] = 16; break;    /* C-p */
    case KEY_DOWN: b[n++] = 14; break;  /* C-n */
    case KEY_HOME: b[n++] = 1; break;   /* C-a */
    case KEY_END: b[n++] = 5; break;    /* C-e */
    case KEY_BACKSPACE: b[n++] = 127; break;
    case KEY_DC:
        if (rl_point < rl_end) b[n++] = 4; /* C-d deletes; on an empty line it would end input */
        break;
    case KEY_ENTER: b[n++] = '\r'; break;
    case 4:
        if (rl_end == 0) { /* C-d on an empty line leaves it */
            close_line();
            return TUI_R_DRAW;
        }
        b[n++] = 4;
        break;
    default:
        if (key >= 0 && key < 256) b[n++] = (char)key;
    }
    feed_bytes(b, n);
    return TUI_R_DRAW;
}

void tui_prompt_run_file(tui_state *s, const char *path) {
    if (L) {
        tui_state_log(s, QS_LOG_INFO, "running %s", path);
        submit_lua(s, path, 1);
        return;
    }
    tui_state_log(s, 3, "%s: no Lua state (see the Log for why)", path);
}
