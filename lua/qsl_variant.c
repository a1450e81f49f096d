/* Variant: the model changed by a chain of methods (m:variant(spec)). It
 * shares the model's weights, so it keeps the model alive, and keeps the
 * Stats it was built from (v.stats). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export.h"
#include "qsl_impl.h"

qsl_variant *qsl_check_variant(lua_State *L, int idx) {
    qsl_variant *u = luaL_checkudata(L, idx, QSL_VARIANT);
    if (!u->v) luaL_error(L, "attempt to use a closed Variant");
    return u;
}

/* ---- spec tables ---- */

typedef struct {
    char s[1024];
    size_t n;
    int overflow;
} textbuf;

static void add(textbuf *b, const char *s) {
    size_t k = strlen(s);
    if (b->n + k >= sizeof b->s) {
        b->overflow = 1;
        return;
    }
    memcpy(b->s + b->n, s, k + 1);
    b->n += k;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* One step {method = "rptq", w = 4, a = 4, g = 8} as "rptq:a=4,g=8,w=4"
 * (keys sorted, so a table always gives the same text). */
static const char *step_text(lua_State *L, int t, textbuf *b) {
    t = lua_absindex(L, t);
    int top = lua_gettop(L);
    if (lua_getfield(L, t, "method") != LUA_TSTRING) {
        lua_settop(L, top);
        return "a table spec needs method = \"name\"";
    }
    add(b, lua_tostring(L, -1));
    lua_pop(L, 1);
    const char *keys[64];
    int nk = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_settop(L, top);
            return "a table spec has string keys only (method = ..., w = 4, ...)";
        }
        const char *k = lua_tostring(L, -1);
        if (strcmp(k, "method") && nk < 64) keys[nk++] = k; /* the table keeps the strings alive */
    }
    qsort(keys, (size_t)nk, sizeof *keys, cmp_str);
    for (int i = 0; i < nk; i++) {
        char val[64];
        int ty = lua_getfield(L, t, keys[i]);
        if (ty == LUA_TBOOLEAN) snprintf(val, sizeof val, "%d", lua_toboolean(L, -1));
        else if (ty == LUA_TNUMBER && lua_isinteger(L, -1)) snprintf(val, sizeof val, "%lld", (long long)lua_tointeger(L, -1));
        else if (ty == LUA_TNUMBER) snprintf(val, sizeof val, "%.9g", lua_tonumber(L, -1));
        else if (ty == LUA_TSTRING) snprintf(val, sizeof val, "%.60s", lua_tostring(L, -1));
        else {
            lua_settop(L, top);
            return "a table spec's values are numbers, strings or booleans";
        }
        lua_pop(L, 1);
        add(b, i ? "," : ":");
        add(b, keys[i]);
        add(b, "=");
        add(b, val);
    }
    return NULL;
}

const char *qsl_spec_text(lua_State *L, int idx, const char **err) {
    idx = lua_absindex(L, idx);
    *err = NULL;
    if (lua_type(L, idx) == LUA_TSTRING) {
        lua_pushvalue(L, idx);
        return lua_tostring(L, -1);
    }
    if (lua_type(L, idx) != LUA_TTABLE) {
        *err = "a spec string or table expected";
        return NULL;
    }
    textbuf b = {.n = 0};
    b.s[0] = 0;
    if (lua_getfield(L, idx, "method") != LUA_TNIL) {
        lua_pop(L, 1);
        *err = step_text(L, idx, &b);
    } else {
        lua_pop(L, 1);
        /* a chain: {{method = "slice", ratio = 0.25}, "int8"} */
        lua_Integer n = luaL_len(L, idx);
        if (n < 1) *err = "a table spec needs method = \"name\", or is an array of steps";
        for (lua_Integer i = 1; i <= n && !*err; i++) {
            if (i > 1) add(&b, "+");
            int tt = lua_geti(L, idx, i);
            if (tt == LUA_TSTRING) add(&b, lua_tostring(L, -1));
            else if (tt == LUA_TTABLE) *err = step_text(L, -1, &b);
            else *err = "each step of a spec chain is a string or a table";
            lua_pop(L, 1);
        }
    }
    if (!*err && b.overflow) *err = "the spec is too long";
    if (*err) return NULL;
    lua_pushstring(L, b.s);
    return lua_tostring(L, -1);
}

const char *qsl_check_spec(lua_State *L, int idx, qs_spec *out) {
    const char *err;
    if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TTABLE) luaL_typeerror(L, idx, "spec string or table");
    const char *text = qsl_spec_text(L, idx, &err);
    if (!text) luaL_argerror(L, idx, err);
    if (qs_spec_parse(text, out) != QS_OK) luaL_argerror(L, idx, qs_last_error());
    return text;
}

/* ---- construction ---- */

static void free_calib(void *p) {
    qs_calib_free(p);
    free(p);
}

int qsl_variant_new(lua_State *L, int midx, int spec, int opts) {
    qsl_model *mu = qsl_check_model(L, midx);
    const qs_model *m = mu->sh->m;
    qs_spec sp;
    const char *text = qsl_check_spec(L, spec, &sp);
    opts = qsl_opt_table(L, opts);
    qsl_opt_known(L, opts, "stats, calib, progress");
    qsl_stats *su = NULL;
    int sidx = 0;
    if (lua_getfield(L, opts, "stats") != LUA_TNIL) {
        sidx = lua_gettop(L);
        if (!luaL_testudata(L, sidx, QSL_STATS))
            luaL_argerror(L, opts, lua_pushfstring(L, "'stats' expects a Stats, got %s", luaL_typename(L, sidx)));
        su = qsl_check_stats(L, sidx);
        if (su->sh != mu->sh) luaL_argerror(L, opts, "'stats' were gathered on another model");
    }
    int fn = qsl_opt_fn(L, opts, "progress");
    int calopts = 0;
    if (lua_getfield(L, opts, "calib") != LUA_TNIL) {
        calopts = lua_gettop(L);
        if (!lua_istable(L, calopts)) luaL_argerror(L, opts, "'calib' expects a table of calibration options");
        qsl_opt_known_in(L, calopts, opts, "calib.", QSL_CALIB_OPTS);
    }
    qsl_variant *u = lua_newuserdatauv(L, sizeof *u, 2);
    u->v = NULL;
    u->sh = NULL;
    luaL_setmetatable(L, QSL_VARIANT);
    int vidx = lua_gettop(L);
    lua_pushvalue(L, midx);
    lua_setiuservalue(L, vidx, 1);
    if (sidx) {
        lua_pushvalue(L, sidx);
        lua_setiuservalue(L, vidx, 2);
    }
    const qs_calib *cal = NULL;
    qsl_box *cbox = NULL;
    if (su) {
        cal = &su->cal;
    } else if (qs_variant_needs_calib(text) > 0) {
        cbox = qsl_box_new(L, free_calib);
        qs_calib *c = calloc(1, sizeof *c);
        if (!c) return qsl_failf(L, "out of memory");
        cbox->p = c;
        if (!calopts) {
            lua_newtable(L);
            calopts = lua_gettop(L);
        }
        int r = qsl_calib_build(L, m, calopts, c);
        if (r) return r;
        cal = c;
    }
    qsl_check_interrupt(L);
    qsl_cb cb;
    qsl_cb_init(&cb, L, fn);
    qs_variant_opts vo = {.calib = cal, .base_stats = su ? su->st : NULL, .progress = qsl_cb_progress, .progress_ud = &cb};
    qs_variant *v = NULL;
    qs_status st = qs_variant_new(m, text, &vo, &v);
    u->v = v;
    if (cbox) qsl_box_free(cbox);
    qsl_cb_finish(&cb);
    if (st) return qsl_fail(L);
    u->sh = qsl_shared_retain(mu->sh);
    lua_pushvalue(L, vidx);
    return 1;
}

/* ---- methods ---- */

static int v_close(lua_State *L) {
    qsl_variant *u = luaL_checkudata(L, 1, QSL_VARIANT);
    qs_variant_free(u->v);
    u->v = NULL;
    qsl_shared_release(u->sh);
    u->sh = NULL;
    return 0;
}

/* The variant at 1 and its Model userdata pushed (at the returned index). */
static qsl_variant *self(lua_State *L, int *midx) {
    qsl_variant *u = qsl_check_variant(L, 1);
    lua_getiuservalue(L, 1, 1);
    *midx = lua_gettop(L);
    return u;
}

static int v_ppl(lua_State *L) {
    lua_settop(L, 2);
    int midx;
    qsl_variant *u = self(L, &midx);
    return qsl_do_eval(L, midx, u->sh, qs_variant_exec(u->v), 2, 0);
}

static int v_eval(lua_State *L) {
    lua_settop(L, 2);
    int midx;
    qsl_variant *u = self(L, &midx);
    return qsl_do_eval(L, midx, u->sh, qs_variant_exec(u->v), 2, 1);
}

static int v_generate(lua_State *L) {
    lua_settop(L, 3);
    qsl_variant *u = qsl_check_variant(L, 1);
    return qsl_do_generate(L, u->sh, qs_variant_exec(u->v), 2, 3);
}

static int v_logits(lua_State *L) {
    lua_settop(L, 2);
    qsl_variant *u = qsl_check_variant(L, 1);
    return qsl_do_logits(L, u->sh, qs_variant_exec(u->v), 2);
}

static int v_calibrate(lua_State *L) {
    lua_settop(L, 2);
    int midx;
    qsl_variant *u = self(L, &midx);
    return qsl_do_calibrate(L, midx, u->sh, qs_variant_exec(u->v), 2);
}

/* v:memory() -> {weight_bytes = bytes, kv_bytes_per_token = bytes, params = n} */
static int v_memory(lua_State *L) {
    qsl_variant *u = qsl_check_variant(L, 1);
    lua_createtable(L, 0, 3);
    qsl_setint(L, "weight_bytes", qs_variant_weight_bytes(u->v));
    qsl_setint(L, "kv_bytes_per_token", qs_variant_kv_bytes_per_token(u->v));
    qsl_setint(L, "params", qs_variant_params(u->v));
    return 1;
}

/* v:export(path [, {force, weights_only, dtype}]) -> path | nil, msg:
 * a .gguf file llama.cpp runs, or a Hugging Face directory */
static int v_export(lua_State *L) {
    lua_settop(L, 3);
    qsl_variant *u = qsl_check_variant(L, 1);
    const char *path = luaL_checkstring(L, 2);
    int opts = qsl_opt_table(L, 3);
    qsl_opt_known(L, opts, "force, weights_only, dtype");
    qs_export_opts o = {.force = qsl_opt_bool(L, opts, "force", 0),
                        .weights_only = qsl_opt_bool(L, opts, "weights_only", 0),
                        .dtype = qsl_opt_str(L, opts, "dtype", NULL)};
    if (o.dtype && strcmp(o.dtype, "f32") && strcmp(o.dtype, "f16") && strcmp(o.dtype, "bf16"))
        return luaL_argerror(L, 3, "'dtype' is \"f32\", \"f16\" or \"bf16\"");
    if (qs_export(u->sh->m, u->v, path, &o)) return qsl_fail(L);
    lua_pushstring(L, path);
    return 1;
}

static int v_describe(lua_State *L) {
    lua_pushstring(L, qs_variant_describe(qsl_check_variant(L, 1)->v));
    return 1;
}

/* v:clusters(layer, site) -> {cluster of each channel, 1..k}, k | nil, msg */
static int v_clusters(lua_State *L) {
    qsl_variant *u = qsl_check_variant(L, 1);
    luaL_checkinteger(L, 2);
    int site = qsl_check_site(L, 3);
    int layer = qsl_check_layer(L, 2, u->sh->m->cfg.n_layers, site);
    int k = 0;
    const int *lab = qs_variant_clusters(u->v, layer, (qs_site)site, &k);
    if (!lab) return qsl_failf(L, "%s: no clusters at layer %d %s", qs_variant_spec(u->v), layer, qs_site_name((qs_site)site));
    /* the width of the site: the activation the labels describe */
    const qs_config *c = &u->sh->m->cfg;
    const qs_layer *Lw = &qs_variant_exec(u->v)->w->layers[layer < c->n_layers ? layer : 0];
    int dim;
    switch (site) {
    case QS_SITE_ATTN_IN: dim = Lw->q.n_in; break;
    case QS_SITE_Q: dim = Lw->q.n_out; break;
    case QS_SITE_K: dim = Lw->k.n_out; break;
    case QS_SITE_V: dim = Lw->v.n_out; break;
    case QS_SITE_ATTN_OUT: dim = Lw->o.n_in; break;
    case QS_SITE_MLP_IN: dim = Lw->up.n_in; break;
    case QS_SITE_MLP_MID: dim = Lw->down.n_in; break;
    default: dim = Lw->down.n_out; break;
    }
    lua_createtable(L, dim, 0);
    for (int i = 0; i < dim; i++) {
        lua_pushinteger(L, lab[i] + 1);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushinteger(L, k);
    return 2;
}

/* v:eigenvalues(layer [, "attn" | "mlp"]) -> Tensor (descending), kept width | nil, msg */
static int v_eigenvalues(lua_State *L) {
    static const char *const which_names[] = {"attn", "mlp", NULL};
    qsl_variant *u = qsl_check_variant(L, 1);
    int nl = u->sh->m->cfg.n_layers;
    lua_Integer layer = luaL_checkinteger(L, 2);
    if (layer < 0 || layer >= nl) luaL_argerror(L, 2, lua_pushfstring(L, "layer %I out of range [0, %d]", layer, nl - 1));
    int which = luaL_checkoption(L, 3, "attn", which_names);
    int n = 0, kept = 0;
    const double *w = qs_variant_eigenvalues(u->v, (int)layer, which, &n, &kept);
    if (!w || n <= 0)
        return qsl_failf(L, "%s: no eigenvalues for layer %d %s (not a SliceGPT variant)", qs_variant_spec(u->v),
                         (int)layer, which_names[which]);
    double *d = qsl_tensor_push_f64(L, n);
    memcpy(d, w, (size_t)n * sizeof *d);
    lua_pushinteger(L, kept);
    return 2;
}

static void free_ctx(void *p) { qs_ctx_free(p); }

/* v:int8_columns{file =, text =, ids =, ctx =} -> per layer {attn_in =, attn_out =, mlp_in =, mlp_mid =}
 * (layer l at index l + 1): the feature columns LLM.int8() sent through fp32
 * for one window of the data. nil, msg when the variant runs no int8 kernel. */
static int v_int8_columns(lua_State *L) {
    lua_settop(L, 2);
    int midx;
    qsl_variant *u = self(L, &midx);
    const qs_model *m = u->sh->m;
    int opts = qsl_opt_table(L, 2);
    qsl_opt_known(L, opts, QSL_DATA_OPTS);
    int ctx = (int)qsl_opt_int(L, opts, "ctx", m->cfg.max_pos, 2, m->cfg.max_pos);
    long n;
    const int32_t *ids = qsl_data_ids(L, midx, m, opts, &n);
    if (!ids) return 2;
    if (n > ctx) n = ctx;
    if (n < 1) return qsl_failf(L, "no tokens");
    qsl_box *b = qsl_box_new(L, free_ctx);
    qs_ctx *c;
    if (qs_ctx_new(m, qs_variant_exec(u->v), (int)n, &c) != QS_OK) return qsl_fail(L);
    b->p = c;
    if (qs_forward(c, ids, (int)n, NULL, QS_LOGITS_NONE) != QS_OK) return qsl_fail(L);
    if (!qs_ctx_kernel_counts(c, 0))
        return qsl_failf(L, "%s runs no LLM.int8() kernel", qs_variant_spec(u->v));
    static const char *const names[4] = {"attn_in", "attn_out", "mlp_in", "mlp_mid"};
    lua_createtable(L, m->cfg.n_layers, 0);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const int *o = qs_ctx_kernel_counts(c, l);
        lua_createtable(L, 0, 4);
        for (int k = 0; k < 4; k++) {
            lua_pushinteger(L, o[k]);
            lua_setfield(L, -2, names[k]);
        }
        lua_rawseti(L, -2, l + 1);
    }
    lua_pushinteger(L, n);
    qsl_box_free(b);
    return 2;
}

static int v_tostring(lua_State *L) {
    qsl_variant *u = luaL_checkudata(L, 1, QSL_VARIANT);
    if (!u->v) lua_pushliteral(L, "Variant (closed)");
    else lua_pushfstring(L, "Variant: %s (%s)", qs_variant_spec(u->v), qs_variant_describe(u->v));
    return 1;
}

/* fields: spec, description, model, stats */
static int v_get(lua_State *L) {
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    if (!k) return 0;
    qsl_variant *u = qsl_check_variant(L, 1);
    if (!strcmp(k, "spec")) lua_pushstring(L, qs_variant_spec(u->v));
    else if (!strcmp(k, "description")) lua_pushstring(L, qs_variant_describe(u->v));
    else if (!strcmp(k, "model")) lua_getiuservalue(L, 1, 1);
    else if (!strcmp(k, "stats")) lua_getiuservalue(L, 1, 2);
    else return 0;
    return 1;
}

static const luaL_Reg methods[] = {
    {"ppl", v_ppl},           {"eval", v_eval},       {"generate", v_generate},       {"logits", v_logits},
    {"calibrate", v_calibrate}, {"memory", v_memory}, {"describe", v_describe},       {"clusters", v_clusters},
    {"eigenvalues", v_eigenvalues}, {"int8_columns", v_int8_columns}, {"export", v_export},
    {"close", v_close}, {NULL, NULL},
};

static const luaL_Reg meta[] = {
    {"__gc", v_close}, {"__close", v_close}, {"__tostring", v_tostring}, {NULL, NULL},
};

void qsl_variant_register(lua_State *L) { qsl_class(L, QSL_VARIANT, methods, meta, v_get); }

/* ---- qs.compare's measuring half ---- */

static int compare_progress(void *ud, const char *what, long done, long total) {
    return qsl_cb_progress_of(ud, what, done, total);
}

static int compare_stop(void *ud) {
    qsl_cb *cb = ud;
    return cb->err || cb->interrupted;
}

/* compare(model, specs, opts, stats|nil) -> rows | nil, msg
 * specs: canonical spec texts; opts: file=, text=, ids=, ctx=, windows=,
 * stride= as Variant:eval, and progress(spec, done, total) while each is
 * scored. rows[i] = {spec, description, ppl, delta_ppl, nll, tokens, seconds,
 * tokens_per_s, weights, kv_per_token, params} or {spec, error};
 * rows.reference: the fp32 ppl; nil, msg when fp32 cannot be measured. */
/* The options qs.compare takes, and those of its calib table. */
#define COMPARE_OPTS QSL_DATA_OPTS ", windows, stride, progress, stats, calib"
#define COMPARE_CALIB_OPTS QSL_CALIB_OPTS ", tau, per_token, sites, cov"

/* unknown(opts) -> nil, or the message for an option qs.compare does not
 * take (checked before it calibrates, so a misspelling costs nothing). */
int qsl_compare_unknown(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (qsl_opt_unknown(L, 1, "", COMPARE_OPTS)) return 1;
    if (lua_getfield(L, 1, "calib") == LUA_TTABLE && qsl_opt_unknown(L, -1, "calib.", COMPARE_CALIB_OPTS)) return 1;
    lua_pushnil(L);
    return 1;
}

int qsl_compare_rows(lua_State *L) {
    lua_settop(L, 4);
    qsl_model *mu = qsl_check_model(L, 1);
    const qs_model *m = mu->sh->m;
    luaL_checktype(L, 2, LUA_TTABLE);
    int data = qsl_opt_table(L, 3);
    qsl_opt_known(L, data, COMPARE_OPTS);
    qsl_stats *su = NULL;
    if (!lua_isnil(L, 4)) {
        su = qsl_check_stats(L, 4);
        if (su->sh != mu->sh) luaL_argerror(L, data, "'stats' were gathered on another model");
    }
    int fn = qsl_opt_fn(L, data, "progress");
    int n_specs = (int)luaL_len(L, 2);
    const char **specs = qsl_scratch(L, ((size_t)n_specs + 1) * sizeof *specs);
    for (int i = 0; i < n_specs; i++) {
        lua_geti(L, 2, i + 1);
        specs[i] = luaL_checkstring(L, -1); /* the table keeps it alive */
        lua_pop(L, 1);
    }
    qs_compare_opts o = {0};
    o.ctx = (int)qsl_opt_int(L, data, "ctx", m->cfg.max_pos, 2, m->cfg.max_pos);
    o.max_windows = (int)qsl_opt_int(L, data, "windows", 0, 1, INT_MAX); /* absent: all */
    o.stride = (int)qsl_opt_int(L, data, "stride", 0, 0, o.ctx);
    long n;
    const int32_t *ids = qsl_data_ids(L, 1, m, data, &n);
    if (!ids) return 2;
    qsl_check_interrupt(L);
    qs_compare_row *rows = qsl_scratch(L, ((size_t)n_specs + 1) * sizeof *rows);
    qsl_cb cb;
    qsl_cb_init(&cb, L, fn);
    cb.named = 1;
    o.calib = su ? &su->cal : NULL;
    o.base_stats = su ? su->st : NULL;
    o.progress = compare_progress;
    o.ud = &cb;
    o.stop = compare_stop;
    qs_compare_run(m, specs, n_specs, ids, n, &o, rows);
    qsl_cb_finish(&cb);
    if (!rows[0].ok) return qsl_failf(L, "%s", rows[0].err);
    lua_createtable(L, n_specs, 1);
    qsl_setnum(L, "reference", rows[0].ppl);
    for (int i = 1; i <= n_specs; i++) {
        const qs_compare_row *r = &rows[i];
        lua_createtable(L, 0, 12);
        lua_pushstring(L, r->spec);
        lua_setfield(L, -2, "variant");
        if (!r->ok) {
            lua_pushstring(L, r->err);
            lua_setfield(L, -2, "error");
        } else {
            lua_pushstring(L, r->desc);
            lua_setfield(L, -2, "description");
            qsl_setnum(L, "ppl", r->ppl);
            qsl_setnum(L, "delta_ppl", r->ppl - rows[0].ppl);
            qsl_setnum(L, "nll", r->nll);
            qsl_setint(L, "tokens", r->tokens);
            qsl_setint(L, "windows", r->windows);
            qsl_setint(L, "ctx", r->ctx);
            qsl_setnum(L, "seconds", r->seconds);
            qsl_setnum(L, "tokens_per_second", r->tokens_per_s);
            qsl_setint(L, "weight_bytes", r->weight_bytes);
            qsl_setint(L, "kv_bytes_per_token", r->kv_bytes_per_token);
            qsl_setint(L, "params", r->params);
        }
        lua_rawseti(L, -2, i);
    }
    return 1;
}
