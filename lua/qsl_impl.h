/* qsl_impl.h — what the binding files share: the object layouts, argument
 * helpers, boxes for C memory, and the callback bridge. Not part of the
 * module's C API (that is qsl.h).
 *
 * Conventions (see ../shared/STYLE.md):
 *   - misuse raises (luaL_argerror names the argument); expected failures
 *     (a missing file, a bad model, a method that cannot be built) return
 *     nil, message;
 *   - a userdata is created before the C memory it owns, so an error at
 *     any point leaves nothing leaked (its __gc frees what was set);
 *   - core calls never see a Lua error: Lua callbacks run under lua_pcall
 *     and their error is raised again once the core call has returned.
 */
#ifndef QSL_IMPL_H
#define QSL_IMPL_H

#include <lauxlib.h>
#include <lua.h>

#include "stats/stats.h"
#include "run/run.h"
#include "model/model.h"
#include "methods/methods.h"
#include "qsl.h"

#define QSL_MODEL "qscope.Model"
#define QSL_STATS "qscope.Stats"
#define QSL_VARIANT "qscope.Variant"
#define QSL_TENSOR "qscope.Tensor"
#define QSL_BOX "qscope.box"

/* A loaded model, shared by its Model handle and every Stats and Variant
 * made from it: freed when the last of them lets go, so closing a Model
 * never leaves a Variant pointing at freed weights. */
typedef struct {
    qs_model *m;
    int refs;
    int borrowed; /* the host program owns m (qsl_push_model): never freed here */
} qsl_shared;

qsl_shared *qsl_shared_retain(qsl_shared *sh);
void qsl_shared_release(qsl_shared *sh);

/* Model userdata; uservalue 1: a table (info cache, tokenized files). */
typedef struct {
    qsl_shared *sh; /* NULL once closed */
} qsl_model;

/* Stats userdata; uservalue 1: the Model it was gathered on. */
typedef struct {
    qs_stats *st;   /* NULL once closed */
    qs_calib cal;   /* the calibration rows, kept for variants built from these stats */
    qsl_shared *sh;
} qsl_stats;

/* Variant userdata; uservalue 1: its Model, 2: the Stats it was built with (or nil). */
typedef struct {
    qs_variant *v;  /* NULL once closed */
    qsl_shared *sh;
} qsl_variant;

/* Tensor userdata: 1-D or 2-D, float32 or float64, read-only. A view (a row
 * of a 2-D tensor) points into its parent, held by uservalue 1. */
enum { QSL_F32 = 1, QSL_F64 = 2 };
typedef struct {
    int dtype, ndim;
    int shape[2];
    void *data;
    double storage[]; /* the elements, when not a view */
} qsl_tensor;

/* ---- checks (raise "attempt to use a closed X" on closed objects) ---- */
qsl_model *qsl_check_model(lua_State *L, int idx);
qsl_stats *qsl_check_stats(lua_State *L, int idx);
qsl_variant *qsl_check_variant(lua_State *L, int idx);
qsl_tensor *qsl_check_tensor(lua_State *L, int idx);
qsl_tensor *qsl_test_tensor(lua_State *L, int idx);

/* ---- class registration (one per binding file) ---- */
void qsl_model_register(lua_State *L);   /* also sets qs.load in the module table on top */
void qsl_stats_register(lua_State *L);
void qsl_variant_register(lua_State *L);
void qsl_tensor_register(lua_State *L);
void qsl_plot_register(lua_State *L);    /* sets qs.plot in the module table on top */

/* Create the metatable `name` with methods (and __index dispatching to them
 * and, for field names, to getter(L) with the object at 1 and the key at 2). */
void qsl_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta,
               lua_CFunction getter);

/* ---- tensors ---- */
/* Push a new tensor; returns its (zeroed) elements. d1 is ignored for ndim 1. */
void *qsl_tensor_push(lua_State *L, int dtype, int ndim, int d0, int d1);
float *qsl_tensor_push_f32(lua_State *L, int n);
double *qsl_tensor_push_f64(lua_State *L, int n);
double qsl_tensor_get(const qsl_tensor *t, size_t i);
size_t qsl_tensor_numel(const qsl_tensor *t);

/* Read numbers at idx (a 1-D Tensor, or an array of numbers) into a double
 * buffer owned by a userdata pushed on the stack. what names the argument
 * in errors. */
double *qsl_numbers(lua_State *L, int idx, int *n, const char *what);

/* ---- boxes: C memory owned by a userdata, freed by its __gc ---- */
typedef struct {
    void *p;
    void (*free)(void *);
} qsl_box;
qsl_box *qsl_box_new(lua_State *L, void (*free_fn)(void *)); /* pushes it */
void qsl_box_free(qsl_box *b);                               /* now, not at collection */

/* Scratch memory owned by Lua (a plain userdata pushed on the stack). */
void *qsl_scratch(lua_State *L, size_t bytes);

/* ---- results ---- */
/* Push nil and qs_last_error() (or the message) and return 2. */
int qsl_fail(lua_State *L);
int qsl_failf(lua_State *L, const char *fmt, ...);

/* ---- options tables ---- */
/* Field `key` of the table at idx (absent/nil: def). Type and range errors
 * raise "bad argument #idx ('key' ...)". */
lua_Integer qsl_opt_int(lua_State *L, int idx, const char *key, lua_Integer def, lua_Integer lo, lua_Integer hi);
double qsl_opt_num(lua_State *L, int idx, const char *key, double def, double lo, double hi);
const char *qsl_opt_str(lua_State *L, int idx, const char *key, const char *def);
int qsl_opt_bool(lua_State *L, int idx, const char *key, int def);
/* Absolute index of a function in field key (pushed; 0 and nothing pushed when absent). */
int qsl_opt_fn(lua_State *L, int idx, const char *key);
/* An optional options table at idx: nil/none -> pushes an empty table and
 * returns its index; a table -> idx; anything else raises. */
int qsl_opt_table(lua_State *L, int idx);
/* Check that every key of the option table at idx is one of known, a
 * comma-separated list ("ctx, windows, stride"); else raise an argument error
 * naming the key and the known ones ("unknown option 'windowz' (options:
 * ctx, windows, stride)"). A misspelled option is never silently ignored. */
void qsl_opt_known(lua_State *L, int idx, const char *known);
/* The same for a table inside the options (calib = {...}): the error names
 * argument arg and the key with prefix ("unknown option 'calib.windowz'"). */
void qsl_opt_known_in(lua_State *L, int idx, int arg, const char *prefix, const char *known);
/* As qsl_opt_known without raising: the message (pushed) for the first key
 * that is not known, or NULL and nothing pushed. */
const char *qsl_opt_unknown(lua_State *L, int idx, const char *prefix, const char *known);
/* The options that name the data a function reads (qsl_data_ids) and the
 * calibration rows (qsl_calib_build). */
#define QSL_DATA_OPTS "file, text, ids, ctx"
#define QSL_CALIB_OPTS "file, text, ids_file, offsets, ctx, windows"

/* ---- sites and layers ---- */
int qsl_check_site(lua_State *L, int idx);
/* A layer number for (layer, site): 0..n_layers-1, or n_layers for head_in. */
int qsl_check_layer(lua_State *L, int idx, int n_layers, int site);

/* ---- callbacks into Lua during a core call ---- */
typedef struct {
    lua_State *L;
    int fn;          /* stack index of the Lua function, 0: none */
    int err;         /* stack index of the error a call raised, 0: none */
    int stopped;     /* the function returned false */
    int interrupted; /* qsl_interrupt() arrived */
    int named;       /* fn takes (what, done, total) and hears only named steps */
    /* arguments of the call in progress */
    int kind;
    long a, b;
    const char *s;
    size_t len;
} qsl_cb;

void qsl_cb_init(qsl_cb *cb, lua_State *L, int fn);
int qsl_cb_progress(void *ud, long done, long total); /* qs_progress_fn */
/* Progress of the step `what` (cb->named: fn(what, done, total), and steps
 * with a NULL name only check for interrupts). */
int qsl_cb_progress_of(qsl_cb *cb, const char *what, long done, long total);
int qsl_cb_text(void *ud, int id, const char *text, size_t len); /* qs_gen_opts.on_text */
/* After the core call returned: raise the callback's error or "interrupted"
 * (does not return then); else 1 when the function asked to stop, 0 if not. */
int qsl_cb_finish(qsl_cb *cb);
/* Raise "interrupted" if an interrupt is pending (between core calls). */
void qsl_check_interrupt(lua_State *L);
/* Whether qsl_interrupt() was called and not yet turned into an error. */
int qsl_interrupt_pending(void);

/* ---- output ---- */
void qsl_write(lua_State *L, const char *s, size_t len);
int qsl_output_redirected(lua_State *L);

/* ---- shared by Model and Variant (qsl_model.c) ---- */
/* Token ids of the data options in the table at opts (file=, text=, ids=;
 * default: eval.txt beside the model). The model userdata is at midx.
 * Returns the ids (valid while the value pushed stays on the stack), or
 * NULL after pushing nil, msg (2 values) for an expected failure. */
const int32_t *qsl_data_ids(lua_State *L, int midx, const qs_model *m, int opts, long *n);
/* Build calibration rows from the options at opts (file=, text=, ids_file=,
 * offsets=, windows=, ctx=). 0 on success; else nil, msg pushed, returns 2. */
int qsl_calib_build(lua_State *L, const qs_model *m, int opts, qs_calib *cal);
/* midx: the Model userdata (its cache; it may be closed, sh keeps the
 * weights); x: the execution plan (NULL: the model's own fp32). */
int qsl_do_eval(lua_State *L, int midx, qsl_shared *sh, const qs_exec *x, int opts, int full);
int qsl_do_generate(lua_State *L, qsl_shared *sh, const qs_exec *x, int prompt, int opts);
int qsl_do_logits(lua_State *L, qsl_shared *sh, const qs_exec *x, int arg);
int qsl_do_calibrate(lua_State *L, int midx, qsl_shared *sh, const qs_exec *x, int opts);
/* A spec string from a string or table argument (pushed), raising a Lua
 * argument error with the parser's message when it is malformed. */
const char *qsl_check_spec(lua_State *L, int idx, qs_spec *out);
/* The spec text of a string or table, pushed; NULL (and nothing pushed)
 * with *err set when a table is malformed. */
const char *qsl_spec_text(lua_State *L, int idx, const char **err);
int qsl_variant_new(lua_State *L, int midx, int spec, int opts);
/* compare(model, specs, opts, stats|nil): qs.compare's measuring half
 * (qs_compare_run), handed to the prelude. */
int qsl_compare_rows(lua_State *L);
int qsl_compare_unknown(lua_State *L);

/* Prelude: the parts of the module written in Lua (qsl_prelude.c). */
extern const char qsl_prelude[];

/* t[name] = v on the table at the top of the stack: the fields of result rows. */
static inline void qsl_setnum(lua_State *L, const char *name, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, name);
}
static inline void qsl_setint(lua_State *L, const char *name, long long v) {
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, name);
}

#endif
