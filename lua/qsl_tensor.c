/* Tensor: a read-only 1-D or 2-D array of numbers (logits, per-channel
 * statistics, eigenvalues). Indexing is 1-based; a row of a 2-D tensor is a
 * 1-D Tensor viewing the parent's memory (the view keeps the parent alive).
 * qscope is not a tensor library: there is no arithmetic, only what a
 * script needs to look at the numbers. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qsl_impl.h"

static size_t elem_size(int dtype) { return dtype == QSL_F64 ? sizeof(double) : sizeof(float); }

size_t qsl_tensor_numel(const qsl_tensor *t) {
    return t->ndim == 1 ? (size_t)t->shape[0] : (size_t)t->shape[0] * (size_t)t->shape[1];
}

double qsl_tensor_get(const qsl_tensor *t, size_t i) {
    return t->dtype == QSL_F64 ? ((const double *)t->data)[i] : (double)((const float *)t->data)[i];
}

void *qsl_tensor_push(lua_State *L, int dtype, int ndim, int d0, int d1) {
    size_t n = ndim == 1 ? (size_t)d0 : (size_t)d0 * (size_t)d1;
    qsl_tensor *t = lua_newuserdatauv(L, sizeof *t + n * elem_size(dtype), 1);
    t->dtype = dtype;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 1 ? 1 : d1;
    t->data = t->storage;
    memset(t->storage, 0, n * elem_size(dtype));
    luaL_setmetatable(L, QSL_TENSOR);
    return t->data;
}

float *qsl_tensor_push_f32(lua_State *L, int n) { return qsl_tensor_push(L, QSL_F32, 1, n, 1); }
double *qsl_tensor_push_f64(lua_State *L, int n) { return qsl_tensor_push(L, QSL_F64, 1, n, 1); }

qsl_tensor *qsl_test_tensor(lua_State *L, int idx) { return luaL_testudata(L, idx, QSL_TENSOR); }
qsl_tensor *qsl_check_tensor(lua_State *L, int idx) { return luaL_checkudata(L, idx, QSL_TENSOR); }

double *qsl_numbers(lua_State *L, int idx, int *n, const char *what) {
    idx = lua_absindex(L, idx);
    qsl_tensor *t = qsl_test_tensor(L, idx);
    if (t) {
        if (t->ndim != 1)
            luaL_argerror(L, idx, lua_pushfstring(L, "%s: a 1-D Tensor expected, got [%d, %d]", what, t->shape[0], t->shape[1]));
        double *d = qsl_scratch(L, (size_t)t->shape[0] * sizeof(double));
        for (int i = 0; i < t->shape[0]; i++) d[i] = qsl_tensor_get(t, (size_t)i);
        *n = t->shape[0];
        return d;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_argerror(L, idx, lua_pushfstring(L, "%s: a Tensor or an array of numbers expected, got %s", what,
                                              luaL_typename(L, idx)));
    lua_Integer len = luaL_len(L, idx);
    if (len > 1 << 28) luaL_argerror(L, idx, lua_pushfstring(L, "%s: too many values", what));
    double *d = qsl_scratch(L, (size_t)len * sizeof(double));
    for (lua_Integer i = 1; i <= len; i++) {
        lua_geti(L, idx, i);
        int ok;
        d[i - 1] = lua_tonumberx(L, -1, &ok);
        if (!ok)
            luaL_argerror(L, idx, lua_pushfstring(L, "%s: element %I is %s, not a number", what, i, luaL_typename(L, -1)));
        lua_pop(L, 1);
    }
    *n = (int)len;
    return d;
}

/* ---- methods ---- */

/* t:shape() -> {d0} or {d0, d1} */
static int t_shape(lua_State *L) {
    qsl_tensor *t = qsl_check_tensor(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static void push_row_table(lua_State *L, const qsl_tensor *t, size_t off, int n) {
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushnumber(L, qsl_tensor_get(t, off + (size_t)i));
        lua_rawseti(L, -2, i + 1);
    }
}

/* t:totable() -> array of numbers (1-D) or array of arrays (2-D) */
static int t_totable(lua_State *L) {
    qsl_tensor *t = qsl_check_tensor(L, 1);
    if (t->ndim == 1) {
        push_row_table(L, t, 0, t->shape[0]);
        return 1;
    }
    lua_createtable(L, t->shape[0], 0);
    for (int r = 0; r < t->shape[0]; r++) {
        push_row_table(L, t, (size_t)r * t->shape[1], t->shape[1]);
        lua_rawseti(L, -2, r + 1);
    }
    return 1;
}

/* Index of the extreme element (NaN never wins); -1 when empty or all NaN. */
static long extreme(const qsl_tensor *t, int want_max) {
    size_t n = qsl_tensor_numel(t);
    long best = -1;
    double bv = 0;
    for (size_t i = 0; i < n; i++) {
        double v = qsl_tensor_get(t, i);
        if (isnan(v)) continue;
        if (best < 0 || (want_max ? v > bv : v < bv)) {
            best = (long)i;
            bv = v;
        }
    }
    return best;
}

/* t:min() / t:max(): the extreme value, nil when empty */
static int push_extreme(lua_State *L, int want_max) {
    qsl_tensor *t = qsl_check_tensor(L, 1);
    long i = extreme(t, want_max);
    if (i < 0) lua_pushnil(L);
    else lua_pushnumber(L, qsl_tensor_get(t, (size_t)i));
    return 1;
}
static int t_min(lua_State *L) { return push_extreme(L, 0); }
static int t_max(lua_State *L) { return push_extreme(L, 1); }

/* t:argmax() -> i (1-D) or i, j (2-D), 1-based; the first of equal maxima */
static int t_argmax(lua_State *L) {
    qsl_tensor *t = qsl_check_tensor(L, 1);
    long i = extreme(t, 1);
    if (i < 0) {
        lua_pushnil(L);
        return 1;
    }
    if (t->ndim == 1) {
        lua_pushinteger(L, i + 1);
        return 1;
    }
    lua_pushinteger(L, i / t->shape[1] + 1);
    lua_pushinteger(L, i % t->shape[1] + 1);
    return 2;
}

/* ---- metamethods ---- */

/* t[i]: a number (1-D) or a row view (2-D); nil outside 1..#t, as a table */
static int t_index(lua_State *L) {
    qsl_tensor *t = qsl_check_tensor(L, 1);
    int ok;
    lua_Integer i = lua_tointegerx(L, 2, &ok);
    if (!ok || i < 1 || i > t->shape[0]) {
        lua_pushnil(L);
        return 1;
    }
    if (t->ndim == 1) {
        lua_pushnumber(L, qsl_tensor_get(t, (size_t)(i - 1)));
        return 1;
    }
    qsl_tensor *v = lua_newuserdatauv(L, sizeof *v, 1);
    v->dtype = t->dtype;
    v->ndim = 1;
    v->shape[0] = t->shape[1];
    v->shape[1] = 1;
    v->data = (char *)t->data + (size_t)(i - 1) * t->shape[1] * elem_size(t->dtype);
    luaL_setmetatable(L, QSL_TENSOR);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

static int t_newindex(lua_State *L) { return luaL_error(L, "Tensor is read-only"); }

static int t_len(lua_State *L) {
    lua_pushinteger(L, qsl_check_tensor(L, 1)->shape[0]);
    return 1;
}

static int t_tostring(lua_State *L) {
    qsl_tensor *t = qsl_check_tensor(L, 1);
    char shape[48];
    if (t->ndim == 1) snprintf(shape, sizeof shape, "%d", t->shape[0]);
    else snprintf(shape, sizeof shape, "%d, %d", t->shape[0], t->shape[1]);
    long lo = extreme(t, 0), hi = extreme(t, 1);
    if (lo < 0)
        lua_pushfstring(L, "Tensor[%s] %s", shape, t->dtype == QSL_F64 ? "f64" : "f32");
    else {
        char buf[160];
        snprintf(buf, sizeof buf, "Tensor[%s] %s (min %.6g, max %.6g)", shape, t->dtype == QSL_F64 ? "f64" : "f32",
                 qsl_tensor_get(t, (size_t)lo), qsl_tensor_get(t, (size_t)hi));
        lua_pushstring(L, buf);
    }
    return 1;
}

static const luaL_Reg methods[] = {
    {"shape", t_shape}, {"totable", t_totable}, {"min", t_min}, {"max", t_max}, {"argmax", t_argmax}, {NULL, NULL},
};

static const luaL_Reg meta[] = {
    {"__newindex", t_newindex}, {"__len", t_len}, {"__tostring", t_tostring}, {NULL, NULL},
};

void qsl_tensor_register(lua_State *L) { qsl_class(L, QSL_TENSOR, methods, meta, t_index); }
