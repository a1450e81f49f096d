/* The module table, and what every binding file leans on: class tables,
 * boxes for C memory, option parsing, the callback bridge into Lua, the
 * interrupt, output redirection and the traceback pcall. */
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "qsl_impl.h"

#ifndef QS_VERSION
#define QS_VERSION "0.0.0"
#endif

/* ---- classes ---- */

/* __index: methods first, then the class's getter for fields and indices. */
static int index_dispatch(lua_State *L) {
    if (lua_type(L, 2) == LUA_TSTRING) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
        lua_pop(L, 1);
    }
    lua_CFunction getter = lua_tocfunction(L, lua_upvalueindex(2));
    lua_settop(L, 2);
    return getter(L);
}

void qsl_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta,
               lua_CFunction getter) {
    luaL_newmetatable(L, name);
    if (meta) luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    if (getter) {
        lua_pushcfunction(L, getter);
        lua_pushcclosure(L, index_dispatch, 2);
    }
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

/* ---- boxes and scratch ---- */

static int box_gc(lua_State *L) {
    qsl_box_free(luaL_checkudata(L, 1, QSL_BOX));
    return 0;
}

qsl_box *qsl_box_new(lua_State *L, void (*free_fn)(void *)) {
    qsl_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->p = NULL;
    b->free = free_fn;
    if (luaL_newmetatable(L, QSL_BOX)) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return b;
}

void qsl_box_free(qsl_box *b) {
    if (b->p && b->free) b->free(b->p);
    b->p = NULL;
}

void *qsl_scratch(lua_State *L, size_t bytes) { return lua_newuserdatauv(L, bytes ? bytes : 1, 0); }

/* ---- results ---- */

int qsl_fail(lua_State *L) {
    luaL_pushfail(L);
    lua_pushstring(L, qs_last_error());
    return 2;
}

int qsl_failf(lua_State *L, const char *fmt, ...) {
    va_list ap;
    luaL_pushfail(L);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return 2;
}

/* ---- options ---- */

int qsl_opt_table(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    if (lua_isnoneornil(L, idx)) {
        lua_newtable(L);
        return lua_gettop(L);
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    return idx;
}

/* 1 when word is one of the comma-separated names in list ("ctx, windows"). */
static int in_list(const char *list, const char *word, size_t n) {
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t k = strcspn(p, ", ");
        if (k == n && !memcmp(p, word, n)) return 1;
        p += k;
    }
    return 0;
}

const char *qsl_opt_unknown(lua_State *L, int idx, const char *prefix, const char *known) {
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1); /* the value; the key stays for lua_next */
        if (lua_type(L, -1) != LUA_TSTRING) {
            const char *k = luaL_tolstring(L, -1, NULL);
            lua_pushfstring(L, "options are named, got the key %s[%s] (options: %s)", prefix, k, known);
            lua_replace(L, -3); /* the message where the key was */
            lua_pop(L, 1);
            return lua_tostring(L, -1);
        }
        size_t n;
        const char *k = lua_tolstring(L, -1, &n);
        if (!in_list(known, k, n)) {
            lua_pushfstring(L, "unknown option '%s%s' (options: %s)", prefix, k, known);
            lua_replace(L, -2);
            return lua_tostring(L, -1);
        }
    }
    return NULL;
}

void qsl_opt_known(lua_State *L, int idx, const char *known) { qsl_opt_known_in(L, idx, idx, "", known); }

void qsl_opt_known_in(lua_State *L, int idx, int arg, const char *prefix, const char *known) {
    arg = lua_absindex(L, arg);
    const char *msg = qsl_opt_unknown(L, idx, prefix, known);
    if (msg) luaL_argerror(L, arg, msg);
}

/* Push field key; 0 (nothing left pushed) when absent. */
static int field(lua_State *L, int idx, const char *key) {
    if (lua_getfield(L, idx, key) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

lua_Integer qsl_opt_int(lua_State *L, int idx, const char *key, lua_Integer def, lua_Integer lo, lua_Integer hi) {
    if (!field(L, idx, key)) return def;
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok) {
        const char *msg = lua_pushfstring(L, "'%s' expects an integer, got %s", key,
                                          lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
        luaL_argerror(L, idx, msg);
    }
    if (v < lo || v > hi)
        luaL_argerror(L, idx, lua_pushfstring(L, "'%s' = %I is out of range [%I, %I]", key, v, lo, hi));
    lua_pop(L, 1);
    return v;
}

double qsl_opt_num(lua_State *L, int idx, const char *key, double def, double lo, double hi) {
    if (!field(L, idx, key)) return def;
    int ok;
    double v = lua_tonumberx(L, -1, &ok);
    if (!ok) luaL_argerror(L, idx, lua_pushfstring(L, "'%s' expects a number, got %s", key, luaL_typename(L, -1)));
    if (!(v >= lo && v <= hi)) {
        char buf[160];
        snprintf(buf, sizeof buf, "'%.40s' = %g is out of range [%g, %g]", key, v, lo, hi);
        luaL_argerror(L, idx, lua_pushstring(L, buf));
    }
    lua_pop(L, 1);
    return v;
}

const char *qsl_opt_str(lua_State *L, int idx, const char *key, const char *def) {
    if (!field(L, idx, key)) return def;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, idx, lua_pushfstring(L, "'%s' expects a string, got %s", key, luaL_typename(L, -1)));
    /* the table holds the string, so the pointer stays valid while it does */
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1);
    return s;
}

int qsl_opt_bool(lua_State *L, int idx, const char *key, int def) {
    if (!field(L, idx, key)) return def;
    if (lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_argerror(L, idx, lua_pushfstring(L, "'%s' expects a boolean, got %s", key, luaL_typename(L, -1)));
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

int qsl_opt_fn(lua_State *L, int idx, const char *key) {
    if (!field(L, idx, key)) return 0;
    if (lua_type(L, -1) != LUA_TFUNCTION)
        luaL_argerror(L, idx, lua_pushfstring(L, "'%s' expects a function, got %s", key, luaL_typename(L, -1)));
    return lua_gettop(L);
}

/* ---- sites and layers ---- */

static const char site_list[] = "attn_in, q, k, v, attn_out, mlp_in, mlp_mid, head_in, resid, resid_mid, embed";

int qsl_check_site(lua_State *L, int idx) {
    const char *s = luaL_checkstring(L, idx);
    int site = qs_site_parse(s);
    if (site < 0) luaL_argerror(L, idx, lua_pushfstring(L, "unknown site '%s' (%s)", s, site_list));
    return site;
}

int qsl_check_layer(lua_State *L, int idx, int n_layers, int site) {
    lua_Integer l = luaL_checkinteger(L, idx);
    if (site == QS_SITE_HEAD_IN) {
        if (l != n_layers)
            luaL_argerror(L, idx, lua_pushfstring(L, "head_in is at layer %d (after the last block), not %I", n_layers, l));
    } else if (l < 0 || l >= n_layers) {
        luaL_argerror(L, idx, lua_pushfstring(L, "layer %I out of range [0, %d]", l, n_layers - 1));
    }
    return (int)l;
}

/* ---- the interrupt ---- */

static atomic_int pending;           /* an interrupt not yet turned into an error */
static lua_State *volatile hooked;   /* where the one-shot hook was set */

static void stop_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    atomic_store(&pending, 0);
    hooked = NULL;
    luaL_error(L, "interrupted");
}

void qsl_interrupt(lua_State *L) {
    atomic_store(&pending, 1);
    hooked = L;
    lua_sethook(L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* The interrupt became an error here: nothing more should fire. */
static void consume_interrupt(void) {
    atomic_store(&pending, 0);
    lua_State *h = hooked;
    hooked = NULL;
    if (h) lua_sethook(h, NULL, 0, 0);
}

int qsl_interrupt_pending(void) { return atomic_load(&pending); }

void qsl_check_interrupt(lua_State *L) {
    if (atomic_load(&pending)) {
        consume_interrupt();
        luaL_error(L, "interrupted");
    }
}

/* ---- callbacks ---- */

enum { CB_PROGRESS = 1, CB_TEXT = 2 };

void qsl_cb_init(qsl_cb *cb, lua_State *L, int fn) {
    memset(cb, 0, sizeof *cb);
    cb->L = L;
    cb->fn = fn;
}

/* Runs protected: the user's function with the call's arguments. Called even
 * without a user function, so that a pending interrupt hook fires here,
 * inside the pcall, rather than later in unprotected code. */
static int cb_trampoline(lua_State *L) {
    qsl_cb *cb = lua_touserdata(L, 1);
    if (!cb->fn) return 0;
    lua_pushvalue(L, 2); /* the function, passed from the caller's frame */
    int n = 2;
    if (cb->kind == CB_PROGRESS) {
        if (cb->s) lua_pushstring(L, cb->s), n++; /* what is in progress (qsl_cb_progress_of) */
        lua_pushinteger(L, cb->a);
        lua_pushinteger(L, cb->b);
    } else {
        lua_pushlstring(L, cb->s, cb->len);
        lua_pushinteger(L, cb->a);
    }
    lua_call(L, n, 1);
    return 1;
}

/* 1: stop the core operation. */
static int cb_call(qsl_cb *cb) {
    lua_State *L = cb->L;
    if (cb->err || cb->interrupted) return 1;
    if (atomic_load(&pending)) {
        cb->interrupted = 1;
        return 1;
    }
    if (!lua_checkstack(L, 8)) return 0;
    lua_pushcfunction(L, cb_trampoline);
    lua_pushlightuserdata(L, cb);
    if (cb->fn) lua_pushvalue(L, cb->fn);
    else lua_pushnil(L);
    /* no message handler: the error value is raised again as it is once the
     * core call has unwound, and the outer handler adds the traceback */
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        cb->err = lua_gettop(L);
        return 1;
    }
    int stop = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (stop) cb->stopped = 1;
    if (atomic_load(&pending)) cb->interrupted = 1;
    return stop || cb->interrupted;
}

int qsl_cb_progress(void *ud, long done, long total) {
    return qsl_cb_progress_of(ud, NULL, done, total);
}

int qsl_cb_progress_of(qsl_cb *cb, const char *what, long done, long total) {
    int fn = cb->fn;
    if (!what && cb->named) cb->fn = 0; /* an unnamed step: only interrupts are checked */
    cb->kind = CB_PROGRESS;
    cb->a = done;
    cb->b = total;
    cb->s = what;
    int r = cb_call(cb);
    cb->fn = fn;
    cb->s = NULL;
    return r;
}

int qsl_cb_text(void *ud, int id, const char *text, size_t len) {
    qsl_cb *cb = ud;
    cb->kind = CB_TEXT;
    cb->a = id;
    cb->s = text;
    cb->len = len;
    return cb_call(cb);
}

int qsl_cb_finish(qsl_cb *cb) {
    lua_State *L = cb->L;
    if (cb->err) {
        consume_interrupt();
        lua_pushvalue(L, cb->err);
        lua_error(L);
    }
    if (cb->interrupted || atomic_load(&pending)) {
        consume_interrupt();
        luaL_error(L, "interrupted");
    }
    return cb->stopped;
}

/* ---- output ---- */

typedef struct {
    qsl_write_fn fn;
    void *ud;
} sink;

static const char sink_key[] = "qscope.print";

static sink *get_sink(lua_State *L) {
    sink *s = NULL;
    if (lua_getfield(L, LUA_REGISTRYINDEX, sink_key) == LUA_TUSERDATA) s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return s && s->fn ? s : NULL;
}

int qsl_output_redirected(lua_State *L) { return get_sink(L) != NULL; }

void qsl_write(lua_State *L, const char *s, size_t len) {
    sink *k = get_sink(L);
    if (k) k->fn(k->ud, s, len);
    else {
        fwrite(s, 1, len, stdout);
        fflush(stdout);
    }
}

static int sink_print(lua_State *L) {
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    qsl_write(L, s, len);
    return 0;
}

static int sink_write(lua_State *L) {
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = luaL_checklstring(L, i, &len);
        qsl_write(L, s, len);
    }
    lua_getglobal(L, "io");
    if (lua_istable(L, -1)) lua_getfield(L, -1, "stdout");
    return 1;
}

void qsl_set_print(lua_State *L, qsl_write_fn fn, void *ud) {
    sink *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->fn = fn;
    s->ud = ud;
    lua_setfield(L, LUA_REGISTRYINDEX, sink_key);
    /* keep the originals to restore them */
    if (lua_getfield(L, LUA_REGISTRYINDEX, "qscope.print.orig") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_getglobal(L, "print");
        lua_setfield(L, -2, "print");
        if (lua_getglobal(L, "io") == LUA_TTABLE) {
            lua_getfield(L, -1, "write");
            lua_setfield(L, -3, "write");
        }
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "qscope.print.orig");
    }
    int orig = lua_gettop(L);
    if (fn) lua_pushcfunction(L, sink_print);
    else lua_getfield(L, orig, "print");
    lua_setglobal(L, "print");
    if (lua_getglobal(L, "io") == LUA_TTABLE) {
        if (fn) lua_pushcfunction(L, sink_write);
        else lua_getfield(L, orig, "write");
        lua_setfield(L, -2, "write");
    }
    lua_pop(L, 2);
}

/* ---- pcall with a traceback ---- */

/* A usage error of qs.args: a table {usage = message} (the prelude's). */
static int is_usage_error(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    int t = lua_getfield(L, idx, "usage");
    lua_pop(L, 1);
    return t == LUA_TSTRING;
}

static int msgh(lua_State *L) {
    if (is_usage_error(L, 1)) return 1; /* no traceback: qsl_pcall turns it into its message */
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int qsl_pcall(lua_State *L, int nargs, int nres) {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msgh);
    lua_insert(L, base);
    int st = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    if (st != LUA_OK && is_usage_error(L, -1)) {
        lua_getfield(L, -1, "usage");
        lua_remove(L, -2);
        st = QSL_ERRUSAGE;
    }
    return st;
}

/* ---- module functions ---- */

/* qs.spec(s) -> canonical text, needs calibration | nil, msg */
static int l_spec(lua_State *L) {
    const char *err = NULL;
    if (lua_type(L, 1) != LUA_TSTRING && lua_type(L, 1) != LUA_TTABLE) luaL_typeerror(L, 1, "spec string or table");
    const char *text = qsl_spec_text(L, 1, &err);
    if (!text) return qsl_failf(L, "%s", err);
    qs_spec sp;
    if (qs_spec_parse(text, &sp) != QS_OK) return qsl_fail(L);
    lua_pushstring(L, sp.text);
    lua_pushboolean(L, qs_variant_needs_calib(sp.text) > 0);
    return 2;
}

/* qs.interrupt(): what Ctrl-C does (for tests and hosts) */
static int l_interrupt(lua_State *L) {
    qsl_interrupt(L);
    return 0;
}

static const luaL_Reg module_fns[] = {
    {"spec", l_spec},
    {"interrupt", l_interrupt},
    {NULL, NULL},
};

static int run_prelude(lua_State *L, int mod) {
    if (luaL_loadbuffer(L, qsl_prelude, strlen(qsl_prelude), "=qscope.prelude") != LUA_OK) return lua_error(L);
    lua_pushvalue(L, mod);
    lua_pushcfunction(L, qsl_compare_rows);
    lua_pushcfunction(L, qsl_compare_unknown);
    lua_call(L, 3, 0);
    return 0;
}

int luaopen_qscope(lua_State *L) {
    luaL_checkversion(L);
    lua_newtable(L);
    int mod = lua_gettop(L);
    luaL_setfuncs(L, module_fns, 0);
    lua_pushstring(L, QS_VERSION);
    lua_setfield(L, mod, "version");
    lua_pushstring(L, qs_blas_describe());
    lua_setfield(L, mod, "blas");
    lua_createtable(L, QS_SITE_COUNT, 0);
    for (int i = 0; i < QS_SITE_COUNT; i++) {
        lua_pushstring(L, qs_site_name((qs_site)i));
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, mod, "sites");
    lua_createtable(L, qs_method_count(), 0); /* the method table's names, in its order */
    for (int i = 0; i < qs_method_count(); i++) {
        lua_pushstring(L, qs_method_at(i)->name);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, mod, "methods");
    qsl_tensor_register(L);
    qsl_stats_register(L);
    qsl_variant_register(L);
    qsl_model_register(L);
    qsl_plot_register(L);
    run_prelude(L, mod);
    lua_settop(L, mod);
    return 1;
}

int qsl_open(lua_State *L) { return luaopen_qscope(L); }

static int preload(lua_State *L) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_qscope);
    lua_setfield(L, -2, "qscope");
    lua_pop(L, 1);
    luaL_requiref(L, "qscope", luaopen_qscope, 1);
    return 0;
}

int qsl_preload(lua_State *L) {
    lua_pushcfunction(L, preload);
    return qsl_pcall(L, 0, 0) == LUA_OK ? 0 : -1;
}
