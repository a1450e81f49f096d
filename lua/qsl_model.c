/* Model: a loaded model (qs.load), and the operations a Model and a Variant
 * share — logits, perplexity, generation, calibration — which run the same
 * code with the variant's execution plan or the model's own (NULL). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run/run.h"
#include "base/base.h"
#include "qsl_impl.h"

/* ---- the shared model ---- */

qsl_shared *qsl_shared_retain(qsl_shared *sh) {
    sh->refs++;
    return sh;
}

void qsl_shared_release(qsl_shared *sh) {
    if (sh && --sh->refs == 0) {
        if (!sh->borrowed) qs_model_free(sh->m);
        free(sh);
    }
}

qsl_model *qsl_check_model(lua_State *L, int idx) {
    qsl_model *u = luaL_checkudata(L, idx, QSL_MODEL);
    if (!u->sh) luaL_error(L, "attempt to use a closed Model");
    return u;
}

/* ---- loading ---- */

/* An empty Model handle (closed until sh is set) with its cache table. */
static qsl_model *new_model(lua_State *L) {
    qsl_model *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->sh = NULL;
    luaL_setmetatable(L, QSL_MODEL);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    return u;
}

/* qs.load([path [, {tokenizer = FILE}]]) -> Model | nil, msg */
static int l_load(lua_State *L) {
    char buf[PATH_MAX + 64];
    lua_settop(L, 2);
    const char *path = luaL_optstring(L, 1, NULL);
    int opts = qsl_opt_table(L, 2);
    qsl_opt_known(L, opts, "tokenizer");
    qs_load_opts o = {.tokenizer = qsl_opt_str(L, opts, "tokenizer", NULL)};
    if (!path) path = qs_model_default_path(buf, sizeof buf);
    qsl_model *u = new_model(L);
    qsl_shared *sh = calloc(1, sizeof *sh);
    if (!sh) return qsl_failf(L, "out of memory");
    if (qs_model_load(path, &o, &sh->m) != QS_OK) {
        free(sh);
        return qsl_fail(L);
    }
    sh->refs = 1;
    u->sh = sh;
    return 1;
}

void qsl_push_model(lua_State *L, const qs_model *m) {
    qsl_model *u = new_model(L);
    qsl_shared *sh = calloc(1, sizeof *sh);
    if (!sh) luaL_error(L, "out of memory");
    sh->m = (qs_model *)m; /* never written through: the Lua side reads models */
    sh->refs = 1;
    sh->borrowed = 1;
    u->sh = sh;
}

/* ---- token ids of data ---- */

static void free_ids(void *p) { free(p); }

/* A tokenized file kept in the model's cache: a sweep over twenty variants
 * tokenizes the evaluation text once. */
typedef struct {
    long long size;
    long long mtime_ns;
    long n;
    int32_t ids[];
} cached_ids;

static int tok_needed(lua_State *L, const qs_model *m) {
    if (m->tok) return 0;
    return qsl_failf(L, "%s: the model has no tokenizer", m->path);
}

/* Tokenize text (with default specials) into a box pushed on the stack. */
static const int32_t *encode_boxed(lua_State *L, const qs_model *m, const char *text, size_t len, int special, long *n) {
    qsl_box *b = qsl_box_new(L, free_ids);
    int32_t *ids = NULL;
    size_t cnt = 0;
    if (qs_tok_encode(m->tok, text, len, special, &ids, &cnt) != QS_OK) return NULL;
    b->p = ids;
    *n = (long)cnt;
    return ids;
}

/* The ids of a Lua array (or a 1-D Tensor) of token ids, checked against the vocabulary. */
static const int32_t *ids_from_array(lua_State *L, int idx, int vocab, long *n, const char *what) {
    int cnt;
    double *d = qsl_numbers(L, idx, &cnt, what);
    int32_t *ids = qsl_scratch(L, (size_t)cnt * sizeof *ids);
    for (int i = 0; i < cnt; i++) {
        if (!(d[i] >= 0 && d[i] < vocab) || d[i] != (double)(int32_t)d[i]) {
            char buf[160];
            snprintf(buf, sizeof buf, "%.40s: element %d = %g is not a token id in [0, %d)", what, i + 1, d[i], vocab);
            luaL_argerror(L, idx, lua_pushstring(L, buf));
        }
        ids[i] = (int32_t)d[i];
    }
    *n = cnt;
    return ids;
}

static const int32_t *file_ids(lua_State *L, int midx, const qs_model *m, const char *path, long *n) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        qsl_failf(L, "%s: %s", path, strerror(errno));
        return NULL;
    }
    long long mt = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    lua_getiuservalue(L, midx, 1);
    int cache = lua_gettop(L);
    lua_pushfstring(L, "ids:%s", path);
    int key = lua_gettop(L);
    lua_pushvalue(L, key);
    if (lua_rawget(L, cache) == LUA_TUSERDATA) {
        cached_ids *c = lua_touserdata(L, -1);
        if (c->size == (long long)sb.st_size && c->mtime_ns == mt) {
            *n = c->n;
            return c->ids;
        }
    }
    lua_pop(L, 1);
    char *text = NULL;
    size_t len = 0;
    qsl_box *tb = qsl_box_new(L, free);
    if (qs_io_read_all(path, &text, &len) != QS_OK) {
        qsl_fail(L);
        return NULL;
    }
    tb->p = text;
    long cnt;
    const int32_t *ids = encode_boxed(L, m, text, len, 1, &cnt);
    if (!ids) {
        qsl_failf(L, "%s: %s", path, qs_last_error());
        return NULL;
    }
    cached_ids *c = lua_newuserdatauv(L, sizeof *c + (size_t)cnt * sizeof(int32_t), 0);
    c->size = (long long)sb.st_size;
    c->mtime_ns = mt;
    c->n = cnt;
    memcpy(c->ids, ids, (size_t)cnt * sizeof(int32_t));
    lua_pushvalue(L, key);
    lua_pushvalue(L, -2);
    lua_rawset(L, cache);
    *n = cnt;
    return c->ids;
}

const int32_t *qsl_data_ids(lua_State *L, int midx, const qs_model *m, int opts, long *n) {
    midx = lua_absindex(L, midx);
    if (lua_getfield(L, opts, "ids") != LUA_TNIL) {
        int idx = lua_gettop(L);
        return ids_from_array(L, idx, m->cfg.vocab, n, "'ids'");
    }
    lua_pop(L, 1);
    const char *text = qsl_opt_str(L, opts, "text", NULL);
    const char *file = qsl_opt_str(L, opts, "file", NULL);
    if (text && file) luaL_argerror(L, opts, "give one of 'file', 'text' and 'ids'");
    if ((text || file) && tok_needed(L, m)) return NULL;
    if (text) {
        const int32_t *ids = encode_boxed(L, m, text, strlen(text), 1, n);
        if (!ids) qsl_fail(L);
        return ids;
    }
    if (!file) {
        char buf[1200];
        if (!qs_model_file_beside(m, "eval.txt", buf, sizeof buf))
            luaL_argerror(L, opts, "give 'file', 'text' or 'ids' (there is no eval.txt beside the model)");
        if (tok_needed(L, m)) return NULL;
        lua_pushstring(L, buf);
        file = lua_tostring(L, -1);
    }
    return file_ids(L, midx, m, file, n);
}

/* ---- calibration rows ---- */

static void free_offsets(void *p) { free(p); }

int qsl_calib_build(lua_State *L, const qs_model *m, int opts, qs_calib *cal) {
    qs_calib_opts o = qs_calib_opts_defaults();
    o.how_text = "file=";
    o.how_ids = "ids_file=";
    o.ctx = (int)qsl_opt_int(L, opts, "ctx", qs_calib_opts_ctx(m, &o), 2, m->cfg.max_pos);
    o.windows = (int)qsl_opt_int(L, opts, "windows", o.windows, 1, 1 << 20);
    o.ids_file = qsl_opt_str(L, opts, "ids_file", NULL);
    o.file = qsl_opt_str(L, opts, "file", NULL);
    o.text = qsl_opt_str(L, opts, "text", NULL);
    if ((o.ids_file != NULL) + (o.file != NULL) + (o.text != NULL) > 1)
        luaL_argerror(L, opts, "give one of 'file', 'text' and 'ids_file'");
    if (o.text) o.text_len = strlen(o.text);
    if (o.ids_file) {
        if (qs_calib_load(m, &o, cal) != QS_OK) return qsl_fail(L);
        /* every row of the file, unless windows= asks for fewer */
        lua_getfield(L, opts, "windows");
        int given = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (given && o.windows < cal->n_rows) {
            cal->n_rows = o.windows;
            snprintf(cal->source, sizeof cal->source, "first %d rows of %d ids from %.200s", o.windows, o.ctx,
                     o.ids_file);
        }
        return 0;
    }
    /* offsets: token offsets of the windows, in order */
    if (lua_getfield(L, opts, "offsets") != LUA_TNIL) {
        int oi = lua_gettop(L);
        int cnt;
        double *d = qsl_numbers(L, oi, &cnt, "'offsets'");
        if (cnt < 1) luaL_argerror(L, opts, "'offsets' is empty");
        qsl_box *b = qsl_box_new(L, free_offsets);
        long *offs;
        if (!(b->p = offs = malloc((size_t)cnt * sizeof *offs))) return qsl_failf(L, "out of memory");
        for (int i = 0; i < cnt; i++) {
            if (d[i] < 0 || d[i] != (double)(long)d[i])
                luaL_argerror(L, opts, lua_pushfstring(L, "'offsets': element %d is not a token offset", i + 1));
            offs[i] = (long)d[i];
        }
        o.offsets = offs;
        o.n_offsets = cnt;
    } else {
        lua_pop(L, 1);
    }
    if (qs_calib_load(m, &o, cal) != QS_OK) return qsl_fail(L);
    return 0;
}

/* ---- operations shared with Variant ---- */

static void free_ctx(void *p) { qs_ctx_free(p); }

int qsl_do_eval(lua_State *L, int midx, qsl_shared *sh, const qs_exec *x, int opts, int full) {
    const qs_model *m = sh->m;
    opts = qsl_opt_table(L, opts);
    qsl_opt_known(L, opts, QSL_DATA_OPTS ", windows, stride, progress");
    int ctx = (int)qsl_opt_int(L, opts, "ctx", m->cfg.max_pos, 2, m->cfg.max_pos);
    int windows = (int)qsl_opt_int(L, opts, "windows", 0, 1, INT_MAX); /* absent: all */
    int stride = (int)qsl_opt_int(L, opts, "stride", 0, 0, ctx);
    int fn = qsl_opt_fn(L, opts, "progress");
    long n;
    const int32_t *ids = qsl_data_ids(L, midx, m, opts, &n);
    if (!ids) return 2;
    qsl_check_interrupt(L);
    qsl_box *cb_box = qsl_box_new(L, free_ctx);
    qs_ctx *c;
    if (qs_ctx_new(m, x, ctx, &c) != QS_OK) return qsl_fail(L);
    cb_box->p = c;
    qsl_cb cb;
    qsl_cb_init(&cb, L, fn);
    qs_ppl_opts o = {.ctx = ctx, .stride = stride, .max_windows = windows, .progress = qsl_cb_progress, .progress_ud = &cb};
    qs_ppl_result r;
    qs_status st = qs_eval_ppl(c, ids, n, &o, &r);
    qsl_box_free(cb_box);
    qsl_cb_finish(&cb);
    if (st) return qsl_fail(L);
    if (!full) {
        lua_pushnumber(L, r.ppl);
        return 1;
    }
    lua_createtable(L, 0, 8);
    qsl_setnum(L, "ppl", r.ppl);
    qsl_setnum(L, "nll", r.nll);
    qsl_setint(L, "tokens", r.tokens);
    qsl_setint(L, "windows", r.windows);
    qsl_setint(L, "ctx", r.ctx);
    qsl_setnum(L, "seconds", r.seconds);
    qsl_setnum(L, "tokens_per_second", r.seconds > 0 ? r.windows * (double)r.ctx / r.seconds : 0);
    qsl_setint(L, "text_tokens", n);
    return 1;
}

static void free_gen(void *p) {
    qs_gen_result_free(p);
    free(p);
}

int qsl_do_generate(lua_State *L, qsl_shared *sh, const qs_exec *x, int prompt_idx, int opts) {
    const qs_model *m = sh->m;
    size_t plen;
    const char *prompt = luaL_optlstring(L, prompt_idx, "", &plen);
    opts = qsl_opt_table(L, opts);
    qsl_opt_known(L, opts, "n, temp, top_k, top_p, seed, stop, on_token");
    qs_gen_opts o = qs_gen_defaults();
    o.n_max = (int)qsl_opt_int(L, opts, "n", o.n_max, 1, 1 << 20);
    o.temp = (float)qsl_opt_num(L, opts, "temp", 0, 0, 100);
    o.top_k = (int)qsl_opt_int(L, opts, "top_k", 0, 0, INT_MAX);
    o.top_p = (float)qsl_opt_num(L, opts, "top_p", 1, 0, 1);
    o.seed = (uint64_t)qsl_opt_int(L, opts, "seed", 0, 0, LUA_MAXINTEGER);
    o.stop_at_eos = qsl_opt_bool(L, opts, "stop", 1);
    int fn = qsl_opt_fn(L, opts, "on_token");
    if (tok_needed(L, m)) return 2;
    long n = 0;
    const int32_t *ids = NULL;
    if (plen) {
        if (!(ids = encode_boxed(L, m, prompt, plen, 1, &n))) return qsl_fail(L);
    }
    qsl_check_interrupt(L);
    qsl_box *cbox = qsl_box_new(L, free_ctx);
    qs_ctx *c;
    if (qs_ctx_new(m, x, 0, &c) != QS_OK) return qsl_fail(L);
    cbox->p = c;
    qsl_box *rbox = qsl_box_new(L, free_gen);
    qs_gen_result *r = calloc(1, sizeof *r);
    if (!r) return qsl_failf(L, "out of memory");
    rbox->p = r;
    qsl_cb cb;
    qsl_cb_init(&cb, L, fn);
    o.on_text = qsl_cb_text;
    o.ud = &cb;
    qs_status st = qs_gen_run(c, m->tok, ids, (int)n, &o, r);
    qsl_box_free(cbox);
    qsl_cb_finish(&cb);
    if (st) return qsl_fail(L);
    lua_pushstring(L, r->text ? r->text : "");
    qsl_box_free(rbox);
    return 1;
}

int qsl_do_logits(lua_State *L, qsl_shared *sh, const qs_exec *x, int arg) {
    const qs_model *m = sh->m;
    long n;
    const int32_t *ids;
    if (lua_type(L, arg) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, arg, &len);
        if (tok_needed(L, m)) return 2;
        if (!(ids = encode_boxed(L, m, s, len, 1, &n))) return qsl_fail(L);
    } else {
        ids = ids_from_array(L, arg, m->cfg.vocab, &n, "ids");
    }
    if (n < 1) luaL_argerror(L, arg, "no tokens");
    if (n > m->cfg.max_pos)
        luaL_argerror(L, arg, lua_pushfstring(L, "%d tokens, the model allows %d", (int)n, m->cfg.max_pos));
    float *out = qsl_tensor_push(L, QSL_F32, 2, (int)n, m->cfg.vocab);
    int tidx = lua_gettop(L);
    qsl_box *cbox = qsl_box_new(L, free_ctx);
    qs_ctx *c;
    if (qs_ctx_new(m, x, (int)n, &c) != QS_OK) return qsl_fail(L);
    cbox->p = c;
    qs_status st = qs_forward(c, ids, (int)n, out, QS_LOGITS_ALL);
    qsl_box_free(cbox);
    if (st) return qsl_fail(L);
    qsl_check_interrupt(L);
    lua_pushvalue(L, tidx);
    return 1;
}

/* Sites named in the array field key as a bit mask (0 when absent). */
static uint32_t site_mask(lua_State *L, int opts, const char *key) {
    if (lua_getfield(L, opts, key) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) luaL_argerror(L, opts, lua_pushfstring(L, "'%s' expects an array of site names", key));
    uint32_t mask = 0;
    lua_Integer len = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= len; i++) {
        lua_geti(L, -1, i);
        const char *s = lua_tostring(L, -1);
        int site = s ? qs_site_parse(s) : -1;
        if (site < 0)
            luaL_argerror(L, opts, lua_pushfstring(L, "'%s': element %I is not a site name (%s)", key, i,
                                                   s ? s : luaL_typename(L, -1)));
        mask |= 1u << site;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return mask;
}

int qsl_do_calibrate(lua_State *L, int midx, qsl_shared *sh, const qs_exec *x, int opts) {
    const qs_model *m = sh->m;
    midx = lua_absindex(L, midx);
    opts = qsl_opt_table(L, opts);
    qsl_opt_known(L, opts, QSL_CALIB_OPTS ", tau, per_token, sites, cov, progress");
    qs_stats_opts so = qs_stats_defaults();
    so.tau = (float)qsl_opt_num(L, opts, "tau", so.tau, 0, 1e30);
    so.per_token = qsl_opt_bool(L, opts, "per_token", so.per_token);
    so.sites = site_mask(L, opts, "sites");
    so.cov_sites = site_mask(L, opts, "cov");
    int fn = qsl_opt_fn(L, opts, "progress");
    qsl_stats *u = lua_newuserdatauv(L, sizeof *u, 1);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, QSL_STATS);
    int sidx = lua_gettop(L);
    lua_pushvalue(L, midx);
    lua_setiuservalue(L, sidx, 1);
    int r = qsl_calib_build(L, m, opts, &u->cal);
    if (r) return r;
    u->sh = qsl_shared_retain(sh);
    qsl_check_interrupt(L);
    qsl_cb cb;
    qsl_cb_init(&cb, L, fn);
    qs_status st = qs_stats_collect(m, x, &u->cal, &so, qsl_cb_progress, &cb, &u->st);
    qsl_cb_finish(&cb);
    if (st) return qsl_fail(L);
    lua_pushvalue(L, sidx);
    return 1;
}

/* ---- Model methods ---- */

/* m:tokenize(text [, special = true]) -> {ids...} */
static int m_tokenize(lua_State *L) {
    lua_settop(L, 3);
    const qs_model *m = qsl_check_model(L, 1)->sh->m;
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    int special = lua_isnoneornil(L, 3) ? 1 : (luaL_checktype(L, 3, LUA_TBOOLEAN), lua_toboolean(L, 3));
    if (tok_needed(L, m)) return 2;
    long n;
    const int32_t *ids = encode_boxed(L, m, s, len, special, &n);
    if (!ids) return qsl_fail(L);
    lua_createtable(L, (int)n, 0);
    for (long i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* m:detokenize(ids [, skip_special = true]) -> text */
static int m_detokenize(lua_State *L) {
    const qs_model *m = qsl_check_model(L, 1)->sh->m;
    int skip = lua_isnoneornil(L, 3) ? 1 : (luaL_checktype(L, 3, LUA_TBOOLEAN), lua_toboolean(L, 3));
    lua_settop(L, 3);
    long n;
    const int32_t *ids = ids_from_array(L, 2, m->cfg.vocab, &n, "ids");
    if (tok_needed(L, m)) return 2;
    qsl_box *b = qsl_box_new(L, free);
    char *text = NULL;
    size_t len = 0;
    if (qs_tok_decode(m->tok, ids, (size_t)n, skip, &text, &len) != QS_OK) return qsl_fail(L);
    b->p = text;
    lua_pushlstring(L, text, len);
    qsl_box_free(b);
    return 1;
}

static int m_logits(lua_State *L) { lua_settop(L, 2); return qsl_do_logits(L, qsl_check_model(L, 1)->sh, NULL, 2); }
static int m_ppl(lua_State *L) { lua_settop(L, 2); return qsl_do_eval(L, 1, qsl_check_model(L, 1)->sh, NULL, 2, 0); }
static int m_eval(lua_State *L) { lua_settop(L, 2); return qsl_do_eval(L, 1, qsl_check_model(L, 1)->sh, NULL, 2, 1); }
static int m_generate(lua_State *L) { lua_settop(L, 3); return qsl_do_generate(L, qsl_check_model(L, 1)->sh, NULL, 2, 3); }
static int m_calibrate(lua_State *L) { lua_settop(L, 2); return qsl_do_calibrate(L, 1, qsl_check_model(L, 1)->sh, NULL, 2); }
static int m_variant(lua_State *L) {
    lua_settop(L, 3);
    qsl_check_model(L, 1);
    return qsl_variant_new(L, 1, 2, 3);
}

/* m:memory() -> {weight_bytes =, kv_bytes_per_token =, params =} (as loaded) */
static int m_memory(lua_State *L) {
    const qs_model *m = qsl_check_model(L, 1)->sh->m;
    lua_createtable(L, 0, 3);
    qsl_setint(L, "weight_bytes", qs_model_weight_bytes(m));
    qsl_setint(L, "kv_bytes_per_token", qs_ctx_kv_bytes_per_token(m));
    qsl_setint(L, "params", qs_model_params(m));
    return 1;
}

static int m_close(lua_State *L) {
    qsl_model *u = luaL_checkudata(L, 1, QSL_MODEL);
    qsl_shared *sh = u->sh;
    u->sh = NULL;
    qsl_shared_release(sh);
    return 0;
}

static int m_tostring(lua_State *L) {
    qsl_model *u = luaL_checkudata(L, 1, QSL_MODEL);
    if (!u->sh) {
        lua_pushliteral(L, "Model (closed)");
        return 1;
    }
    const qs_model *m = u->sh->m;
    lua_pushfstring(L, "Model: %s (%s, %I params)", m->path, m->cfg.arch_name, (lua_Integer)qs_model_params(m));
    return 1;
}

#define SETI(k, v)                                                                                                   \
    do {                                                                                                             \
        lua_pushinteger(L, (v));                                                                                     \
        lua_setfield(L, -2, k);                                                                                      \
    } while (0)
#define SETS(k, v)                                                                                                   \
    do {                                                                                                             \
        lua_pushstring(L, (v));                                                                                      \
        lua_setfield(L, -2, k);                                                                                      \
    } while (0)

static void push_info(lua_State *L, const qs_model *m) {
    const qs_config *c = &m->cfg;
    lua_createtable(L, 0, 24);
    SETS("path", m->path);
    SETS("format", m->format);
    SETS("dtype", m->dtype);
    SETS("arch", qs_arch_str(c->arch));
    SETS("architecture", c->arch_name);
    SETI("n_layers", c->n_layers);
    SETI("d_model", c->d_model);
    SETI("n_heads", c->n_heads);
    SETI("n_kv_heads", c->n_kv_heads);
    SETI("head_dim", c->head_dim);
    SETI("d_ff", c->d_ff);
    SETI("vocab", c->vocab);
    SETI("max_pos", c->max_pos);
    SETS("act", qs_act_str(c->act));
    SETS("norm", c->norm == QS_NORM_LAYER ? "layernorm" : "rmsnorm");
    qsl_setnum(L, "norm_eps", c->norm_eps);
    if (c->rope_theta > 0) {
        qsl_setnum(L, "rope_theta", c->rope_theta);
    }
    lua_pushboolean(L, c->tied_head);
    lua_setfield(L, -2, "tied_head");
    SETI("bos_id", c->bos_id);
    SETI("eos_id", c->eos_id);
    SETI("params", qs_model_params(m));
    SETI("weight_bytes", qs_model_weight_bytes(m));
    SETI("kv_bytes_per_token", qs_ctx_kv_bytes_per_token(m));
    if (m->tok) SETS("tokenizer", qs_tok_describe(m->tok));
}

/* fields: m.info (a table, built once), m.path */
static int m_get(lua_State *L) {
    qsl_model *u = luaL_checkudata(L, 1, QSL_MODEL);
    const char *k = lua_tostring(L, 2);
    if (!k || lua_type(L, 2) != LUA_TSTRING) return 0;
    if (!strcmp(k, "info") || !strcmp(k, "path")) {
        if (!u->sh) return luaL_error(L, "attempt to use a closed Model");
        if (k[0] == 'p') {
            lua_pushstring(L, u->sh->m->path);
            return 1;
        }
        lua_getiuservalue(L, 1, 1);
        if (lua_getfield(L, -1, "info") == LUA_TTABLE) return 1;
        lua_pop(L, 1);
        push_info(L, u->sh->m);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "info");
        return 1;
    }
    return 0;
}

static const luaL_Reg methods[] = {
    {"tokenize", m_tokenize}, {"detokenize", m_detokenize}, {"logits", m_logits},
    {"ppl", m_ppl},           {"eval", m_eval},             {"generate", m_generate},
    {"calibrate", m_calibrate}, {"variant", m_variant},     {"memory", m_memory},
    {"close", m_close},       {NULL, NULL},
};

static const luaL_Reg meta[] = {
    {"__gc", m_close}, {"__close", m_close}, {"__tostring", m_tostring}, {NULL, NULL},
};

void qsl_model_register(lua_State *L) {
    qsl_class(L, QSL_MODEL, methods, meta, m_get);
    lua_pushcfunction(L, l_load);
    lua_setfield(L, -2, "load");
}
