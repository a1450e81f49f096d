/* Stats: activation statistics gathered by m:calibrate{} (or v:calibrate{}).
 * Keeps its Model alive (uservalue) and the calibration rows, so variants
 * built with {stats = st} calibrate on the same text. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stats/stats.h"
#include "qsl_impl.h"

qsl_stats *qsl_check_stats(lua_State *L, int idx) {
    qsl_stats *u = luaL_checkudata(L, idx, QSL_STATS);
    if (!u->st) luaL_error(L, "attempt to use a closed Stats");
    return u;
}

static int s_close(lua_State *L) {
    qsl_stats *u = luaL_checkudata(L, 1, QSL_STATS);
    qs_stats_free(u->st);
    u->st = NULL;
    qs_calib_free(&u->cal);
    qsl_shared_release(u->sh);
    u->sh = NULL;
    return 0;
}

/* The statistics of (layer, site) at arguments 2 and 3, or NULL after
 * pushing nil, msg. */
static const qs_site_stats *site_arg(lua_State *L, qsl_stats *u, int *layer, int *site) {
    luaL_checkinteger(L, 2);
    *site = qsl_check_site(L, 3);
    *layer = qsl_check_layer(L, 2, u->st->n_layers, *site);
    const qs_site_stats *s = qs_stats_site(u->st, *layer, (qs_site)*site);
    if (!s || !s->tokens) {
        qsl_failf(L, "no statistics for layer %d %s (not recorded: see calibrate's 'sites')", *layer,
                  qs_site_name((qs_site)*site));
        return NULL;
    }
    return s;
}

static void push_f32(lua_State *L, const float *x, int n, const char *key) {
    float *d = qsl_tensor_push_f32(L, n);
    memcpy(d, x, (size_t)n * sizeof *d);
    lua_setfield(L, -2, key);
}

/* st:site(layer, site) -> {min, max, absmax, mean, std, frac, ...} | nil, msg */
static int s_site(lua_State *L) {
    lua_settop(L, 3);
    qsl_stats *u = qsl_check_stats(L, 1);
    int layer, site;
    const qs_site_stats *s = site_arg(L, u, &layer, &site);
    if (!s) return 2;
    int d = s->dim;
    lua_createtable(L, 0, 12);
    qsl_setint(L, "layer", layer);
    lua_pushstring(L, qs_site_name((qs_site)site));
    lua_setfield(L, -2, "site");
    qsl_setint(L, "dim", d);
    qsl_setint(L, "tokens", s->tokens);
    qsl_setnum(L, "tau", u->st->tau);
    push_f32(L, s->min, d, "min");
    push_f32(L, s->max, d, "max");
    push_f32(L, s->absmax, d, "absmax");
    double *mean = qsl_tensor_push_f64(L, d);
    lua_setfield(L, -2, "mean");
    double *sd = qsl_tensor_push_f64(L, d);
    lua_setfield(L, -2, "std");
    double *frac = qsl_tensor_push_f64(L, d);
    lua_setfield(L, -2, "frac_over_tau");
    for (int i = 0; i < d; i++) {
        mean[i] = s->sum[i] / (double)s->tokens;
        double var = s->sumsq[i] / (double)s->tokens - mean[i] * mean[i];
        sd[i] = var > 0 ? sqrt(var) : 0;
        frac[i] = (double)s->n_over[i] / (double)s->tokens;
    }
    if (s->tok_absmax) push_f32(L, s->tok_absmax, (int)s->tokens, "tok_absmax");
    if (s->cov) {
        double *c = qsl_tensor_push(L, QSL_F64, 2, d, d);
        memcpy(c, s->cov, (size_t)d * d * sizeof *c);
        lua_setfield(L, -2, "cov");
    }
    return 1;
}

/* st:clusters(layer, site, k [, seed = 0]) -> {cluster of each channel, 1..k}, inertia
 * k-means (k-means++, 10 restarts) of the channels' (max, min) points, as RPTQ clusters them. */
static int s_clusters(lua_State *L) {
    lua_settop(L, 5);
    qsl_stats *u = qsl_check_stats(L, 1);
    int layer, site;
    lua_Integer k = luaL_checkinteger(L, 4);
    luaL_argcheck(L, k >= 1 && k <= 4096, 4, "k must be in [1, 4096]");
    lua_Integer seed = luaL_optinteger(L, 5, 0);
    const qs_site_stats *s = site_arg(L, u, &layer, &site);
    if (!s) return 2;
    double *pts = qsl_scratch(L, (size_t)s->dim * 2 * sizeof *pts);
    int *labels = qsl_scratch(L, (size_t)s->dim * sizeof *labels);
    for (int i = 0; i < s->dim; i++) {
        pts[2 * i] = s->max[i];
        pts[2 * i + 1] = s->min[i];
    }
    double inertia = 0;
    if (qs_kmeans(pts, s->dim, 2, (int)k, 0, (uint64_t)seed, labels, NULL, &inertia) != QS_OK) return qsl_fail(L);
    lua_createtable(L, s->dim, 0);
    for (int i = 0; i < s->dim; i++) {
        lua_pushinteger(L, labels[i] + 1);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushnumber(L, inertia);
    return 2;
}

/* st:outliers{threshold = tau, layer_frac = 0.25, pos_frac = 0.06} -> {{dim, index, layers, ...}, ...} */
static int s_outliers(lua_State *L) {
    lua_settop(L, 2);
    qsl_stats *u = qsl_check_stats(L, 1);
    int opts = qsl_opt_table(L, 2);
    qsl_opt_known(L, opts, "tau, threshold, layer_frac, pos_frac");
    double tau = qsl_opt_num(L, opts, "tau", u->st->tau, 0, 1e30);
    tau = qsl_opt_num(L, opts, "threshold", tau, 0, 1e30);
    double lf = qsl_opt_num(L, opts, "layer_frac", 0.25, 0, 1);
    double pf = qsl_opt_num(L, opts, "pos_frac", 0.06, 0, 1);
    qs_outlier *o = NULL;
    int n = 0;
    if (qs_stats_outliers(u->st, (float)tau, lf, pf, &o, &n) != QS_OK) {
        if (o) free(o);
        return luaL_argerror(L, 2, qs_last_error());
    }
    qsl_box *b = qsl_box_new(L, free);
    b->p = o;
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 9);
        qsl_setint(L, "dim", o[i].dim);
        qsl_setint(L, "index", o[i].dim + 1);
        qsl_setint(L, "inputs", o[i].n_inputs);
        qsl_setnum(L, "layer_frac", o[i].layer_frac);
        qsl_setnum(L, "pos_frac", o[i].pos_frac);
        qsl_setnum(L, "absmax", o[i].absmax);
        lua_newtable(L);
        int k = 0;
        for (int l = 0; l < u->st->n_layers && l < 64; l++)
            if (o[i].layer_mask >> l & 1) {
                lua_pushinteger(L, l);
                lua_rawseti(L, -2, ++k);
            }
        lua_setfield(L, -2, "layers");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int s_tostring(lua_State *L) {
    qsl_stats *u = luaL_checkudata(L, 1, QSL_STATS);
    if (!u->st) lua_pushliteral(L, "Stats (closed)");
    else
        lua_pushfstring(L, "Stats: %I tokens (%s), tau %f", (lua_Integer)u->st->tokens, u->st->source,
                        (lua_Number)u->st->tau);
    return 1;
}

/* fields: tokens, windows, ctx, tau, n_layers, source, model */
static int s_get(lua_State *L) {
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    if (!k) return 0;
    qsl_stats *u = qsl_check_stats(L, 1);
    const qs_stats *st = u->st;
    if (!strcmp(k, "tokens")) lua_pushinteger(L, st->tokens);
    else if (!strcmp(k, "windows")) lua_pushinteger(L, st->windows);
    else if (!strcmp(k, "ctx")) lua_pushinteger(L, st->ctx);
    else if (!strcmp(k, "tau")) lua_pushnumber(L, st->tau);
    else if (!strcmp(k, "n_layers")) lua_pushinteger(L, st->n_layers);
    else if (!strcmp(k, "source")) lua_pushstring(L, st->source);
    else if (!strcmp(k, "model")) lua_getiuservalue(L, 1, 1);
    else return 0;
    return 1;
}

static const luaL_Reg methods[] = {
    {"site", s_site}, {"clusters", s_clusters}, {"outliers", s_outliers}, {"close", s_close}, {NULL, NULL},
};

static const luaL_Reg meta[] = {
    {"__gc", s_close}, {"__close", s_close}, {"__tostring", s_tostring}, {NULL, NULL},
};

void qsl_stats_register(lua_State *L) { qsl_class(L, QSL_STATS, methods, meta, s_get); }
