/* Several variants of one model measured the same way (methods.h, compare). */
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "methods/methods.h"
#include "run/run.h"
#include "stats/stats.h"

typedef struct {
    const qs_compare_opts *o;
    const char *what;
} step;

static int step_progress(void *ud, long done, long total) {
    step *s = ud;
    return s->o->progress ? s->o->progress(s->o->ud, s->what, done, total) : 0;
}

/* One row: build the variant, run the perplexity windows, read its sizes. */
static void measure(const qs_model *m, const char *spec, const int32_t *ids, long n, const qs_compare_opts *o,
                    const qs_stats *base, qs_compare_row *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->spec, sizeof r->spec, "%s", spec);
    step building = {o, NULL}, scoring = {o, spec};
    qs_variant_opts vo = {.calib = o->calib, .base_stats = base, .progress = step_progress, .progress_ud = &building};
    qs_ppl_opts po = {.ctx = o->ctx, .stride = o->stride, .max_windows = o->max_windows, .progress = step_progress,
                      .progress_ud = &scoring};
    qs_variant *var = NULL;
    qs_ctx *c = NULL;
    qs_ppl_result pr;
    if (qs_variant_new(m, spec, &vo, &var) || qs_ctx_new(m, qs_variant_exec(var), o->ctx, &c) ||
        qs_eval_ppl(c, ids, n, &po, &pr)) {
        snprintf(r->err, sizeof r->err, "%s", qs_last_error());
    } else {
        r->ok = 1;
        r->ppl = pr.ppl;
        r->nll = pr.nll;
        r->tokens = pr.tokens;
        r->windows = pr.windows;
        r->ctx = pr.ctx;
        r->seconds = pr.seconds;
        r->tokens_per_s = pr.seconds > 0 ? pr.windows * (double)pr.ctx / pr.seconds : 0;
        r->weight_bytes = qs_variant_weight_bytes(var);
        r->kv_bytes_per_token = qs_variant_kv_bytes_per_token(var);
        r->params = qs_variant_params(var);
        snprintf(r->spec, sizeof r->spec, "%s", qs_variant_spec(var));
        snprintf(r->desc, sizeof r->desc, "%s", qs_variant_describe(var));
    }
    qs_ctx_free(c);
    qs_variant_free(var);
}

static int is_fp32(const char *spec) {
    qs_spec sp;
    return qs_spec_parse(spec, &sp) == QS_OK && !strcmp(sp.text, "fp32");
}

qs_status qs_compare_run(const qs_model *m, const char *const *specs, int n_specs, const int32_t *ids, long n,
                         const qs_compare_opts *o, qs_compare_row *rows) {
    memset(rows, 0, ((size_t)n_specs + 1) * sizeof *rows);
    qs_stats *own = NULL;
    const qs_stats *base = o->base_stats;
    int need = 0;
    for (int i = 0; i < n_specs; i++) need |= qs_variant_needs_calib(specs[i]) > 0;
    if (need && o->calib && !base) {
        qs_stats_opts so = qs_stats_defaults();
        so.per_token = 0;
        step calibrating = {o, NULL};
        qs_status st = qs_stats_collect(m, NULL, o->calib, &so, step_progress, &calibrating, &own);
        if (st) {
            for (int i = 0; i <= n_specs; i++) {
                snprintf(rows[i].spec, sizeof rows[i].spec, "%s", i ? specs[i - 1] : "fp32");
                snprintf(rows[i].err, sizeof rows[i].err, "%s", qs_last_error());
            }
            return st;
        }
        base = own;
    }
    qs_status st = QS_OK;
    for (int i = 0; i <= n_specs && !st; i++) {
        if (i > 0 && is_fp32(specs[i - 1])) rows[i] = rows[0];
        else measure(m, i ? specs[i - 1] : "fp32", ids, n, o, base, &rows[i]);
        if (o->stop && o->stop(o->ud)) st = qs_fail(QS_ECANCEL, "cancelled");
    }
    qs_stats_free(own);
    return st;
}
