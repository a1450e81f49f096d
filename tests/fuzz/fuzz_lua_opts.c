/* fuzz_lua_opts — the Lua API's option tables: an input decodes to a Lua
 * table (string and integer keys, integer, float, boolean, string, function
 * and nested table values), which goes through the option checker of every
 * option list the module uses (qsl_opt_unknown, then qsl_opt_int/num/str/
 * bool/fn on each option as its function reads it), and through qs.spec as
 * a table spec (a step or a chain). Each check runs under lua_pcall: a
 * refusal is a Lua error, never a crash. No model is loaded.
 *
 * Input: a sequence of entries; an entry is a tag byte (low 3 bits: the value
 * kind, 0 ends the table; bit 3: an integer key; bit 4: a key from the option
 * names, else a key of the input's bytes) followed by its key and value. */
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "../../lua/qsl.h"
#include "../../lua/qsl_impl.h"
#include "fuzz.h"

static const char *const names[] = {
    "method", "w", "a", "g", "group", "act", "threshold", "ratio", "ref", "wq", "kv", "reorder", "file", "text",
    "ids", "ctx", "windows", "stride", "progress", "n", "temp", "top_k", "top_p", "seed", "stop", "on_token",
    "tau", "per_token", "sites", "cov", "layer_frac", "pos_frac", "stats", "calib", "ids_file", "offsets",
    "tokenizer", "rtn", "int8", "rptq", "slice", "fp32", "gptq", "token", "tensor", "W4A4KV", "color", "names",
};
#define N_NAMES (sizeof names / sizeof *names)

/* the option lists of the module's functions (lua/qsl_*.c) */
static const char *const lists[] = {
    "tokenizer", QSL_DATA_OPTS ", windows, stride, progress", "n, temp, top_k, top_p, seed, stop, on_token",
    QSL_CALIB_OPTS ", tau, per_token, sites, cov, progress", "tau, threshold, layer_frac, pos_frac",
    "stats, calib, progress", QSL_CALIB_OPTS, QSL_DATA_OPTS,
};

typedef struct {
    const uint8_t *d;
    size_t n, pos;
} src;

static int byte(src *s) { return s->pos < s->n ? s->d[s->pos++] : 0; }

static uint64_t u64(src *s) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | (uint64_t)byte(s);
    return v;
}

static void push_bytes(lua_State *L, src *s) {
    size_t k = (size_t)byte(s) % 48;
    if (k > s->n - s->pos) k = s->n - s->pos;
    lua_pushlstring(L, (const char *)s->d + s->pos, k);
    s->pos += k;
}

static int no(lua_State *L) {
    lua_pushboolean(L, 0);
    return 1;
}

static void push_table(lua_State *L, src *s, int depth) {
    lua_newtable(L);
    for (int entries = 0; s->pos < s->n && entries < 64; entries++) {
        int tag = byte(s), kind = tag & 7;
        if (!kind) break;
        if (tag & 8) lua_pushinteger(L, (lua_Integer)(byte(s) % 8) - 1);
        else if (tag & 16) lua_pushstring(L, names[(size_t)byte(s) % N_NAMES]);
        else push_bytes(L, s);
        switch (kind) {
        case 1: lua_pushinteger(L, (lua_Integer)u64(s)); break;
        case 2: {
            uint64_t u = u64(s);
            double x;
            memcpy(&x, &u, sizeof x);
            lua_pushnumber(L, x);
            break;
        }
        case 3: lua_pushboolean(L, byte(s) & 1); break;
        case 4: push_bytes(L, s); break;
        case 5:
            if (depth < 3) push_table(L, s, depth + 1);
            else lua_pushinteger(L, byte(s));
            break;
        case 6: lua_pushcfunction(L, no); break;
        default: lua_pushstring(L, names[(size_t)byte(s) % N_NAMES]); break;
        }
        if (lua_isnil(L, -2)) lua_pop(L, 2); /* cannot happen: keys are never nil */
        else lua_rawset(L, -3);
    }
}

/* one getter on (table, key): kind 0 int, 1 number, 2 string, 3 boolean, 4 function */
static int get_one(lua_State *L) {
    const char *key = lua_tostring(L, 2);
    switch ((int)lua_tointeger(L, 3)) {
    case 0: qsl_opt_int(L, 1, key, 0, -8, 1 << 20); break;
    case 1: qsl_opt_num(L, 1, key, 0, -1e9, 1e9); break;
    case 2: qsl_opt_str(L, 1, key, NULL); break;
    case 3: qsl_opt_bool(L, 1, key, 0); break;
    default: qsl_opt_fn(L, 1, key); break;
    }
    return 0;
}

static int known(lua_State *L) {
    qsl_opt_known(L, 1, lua_tostring(L, 2));
    return 0;
}

static lua_State *state(void) {
    static lua_State *L;
    if (L) return L;
    L = luaL_newstate();
    luaL_requiref(L, "_G", luaopen_base, 1);
    luaL_requiref(L, "string", luaopen_string, 1);
    lua_pop(L, 2);
    luaL_requiref(L, "qscope", luaopen_qscope, 0);
    lua_setglobal(L, "qs");
    return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    lua_State *L = state();
    int top = lua_gettop(L);
    src s = {d, n, 0};
    push_table(L, &s, 0);
    int t = lua_gettop(L);
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
        if (qsl_opt_unknown(L, t, "", lists[i])) lua_pop(L, 1);
        lua_pushcfunction(L, known);
        lua_pushvalue(L, t);
        lua_pushstring(L, lists[i]);
        lua_pcall(L, 2, 0, 0) == LUA_OK ? (void)0 : lua_pop(L, 1);
    }
    for (size_t k = 0; k < N_NAMES; k++)
        for (int kind = 0; kind < 5; kind++) {
            lua_pushcfunction(L, get_one);
            lua_pushvalue(L, t);
            lua_pushstring(L, names[k]);
            lua_pushinteger(L, kind);
            lua_pcall(L, 3, 0, 0) == LUA_OK ? (void)0 : lua_pop(L, 1);
        }
    lua_getglobal(L, "qs");
    lua_getfield(L, -1, "spec");
    lua_pushvalue(L, t);
    lua_pcall(L, 1, 2, 0) == LUA_OK ? lua_pop(L, 2) : lua_pop(L, 1);
    lua_settop(L, top);
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
