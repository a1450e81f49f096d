#include "stats/stats.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"

qs_stats_opts qs_stats_defaults(void) {
    qs_stats_opts o = {.tau = 6.0f, .sites = 0, .cov_sites = 0, .per_token = 1};
    return o;
}

static void site_free(qs_site_stats *s) {
    if (!s) return;
    free(s->min);
    free(s->max);
    free(s->absmax);
    free(s->sum);
    free(s->sumsq);
    free(s->n_over);
    free(s->tok_absmax);
    free(s->cov);
    free(s);
}

qs_status qs_stats_new(int n_layers, const qs_stats_opts *o, qs_stats **out) {
    *out = NULL;
    qs_stats *st = calloc(1, sizeof *st);
    if (!st) return qs_fail(QS_ENOMEM, "out of memory");
    st->n_layers = n_layers;
    st->opts = o ? *o : qs_stats_defaults();
    st->tau = st->opts.tau;
    st->site = calloc((size_t)(n_layers + 1) * QS_SITE_COUNT, sizeof *st->site);
    if (!st->site) {
        free(st);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    *out = st;
    return QS_OK;
}

void qs_stats_free(qs_stats *st) {
    if (!st) return;
    for (int i = 0; i < (st->n_layers + 1) * QS_SITE_COUNT; i++) site_free(st->site[i]);
    free(st->site);
    free(st);
}

/* The observer cannot return an error: the first is kept in the stats. */
static void set_err(qs_stats *st, qs_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(qs_stats *st, qs_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err_msg, sizeof st->err_msg, fmt, ap);
    va_end(ap);
    st->err = s;
}

qs_status qs_stats_status(const qs_stats *st) {
    if (st->err) return qs_fail(st->err, "%s", st->err_msg);
    return QS_OK;
}

static qs_site_stats *site_new(int dim, int cov) {
    qs_site_stats *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->dim = dim;
    s->min = malloc(dim * sizeof(float));
    s->max = malloc(dim * sizeof(float));
    s->absmax = calloc(dim, sizeof(float));
    s->sum = calloc(dim, sizeof(double));
    s->sumsq = calloc(dim, sizeof(double));
    s->n_over = calloc(dim, sizeof(long));
    if (cov) s->cov = calloc((size_t)dim * dim, sizeof(double));
    if (!s->min || !s->max || !s->absmax || !s->sum || !s->sumsq || !s->n_over || (cov && !s->cov)) {
        site_free(s);
        return NULL;
    }
    for (int i = 0; i < dim; i++) {
        s->min[i] = INFINITY;
        s->max[i] = -INFINITY;
    }
    return s;
}

void qs_stats_observe(void *ud, int layer, qs_site site, const float *x, int n, int dim, int pos0) {
    (void)pos0;
    qs_stats *st = ud;
    if (st->err || layer < 0 || layer > st->n_layers) return;
    if (st->opts.sites && !(st->opts.sites & (1u << site))) return;
    qs_site_stats **slot = &st->site[(size_t)layer * QS_SITE_COUNT + site];
    int cov = (st->opts.cov_sites >> site) & 1;
    if (!*slot && !(*slot = site_new(dim, cov))) {
        set_err(st, QS_ENOMEM, "out of memory for statistics of layer %d %s", layer, qs_site_name(site));
        return;
    }
    qs_site_stats *s = *slot;
    if (s->dim != dim) {
        set_err(st, QS_ESHAPE, "layer %d %s: width changed from %d to %d", layer, qs_site_name(site),
                 s->dim, dim);
        return;
    }
    float tau = st->tau;
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * dim;
        float ta = 0;
        for (int i = 0; i < dim; i++) {
            float v = xr[i], a = fabsf(v);
            s->min[i] = v < s->min[i] ? v : s->min[i];
            s->max[i] = v > s->max[i] ? v : s->max[i];
            s->absmax[i] = a > s->absmax[i] ? a : s->absmax[i];
            s->sum[i] += v;
            s->sumsq[i] += (double)v * v;
            s->n_over[i] += a >= tau;
            ta = a > ta ? a : ta;
        }
        if (st->opts.per_token) {
            if (s->tokens >= s->tok_cap) {
                long nc = s->tok_cap ? 2 * s->tok_cap : 1024;
                float *nt = realloc(s->tok_absmax, (size_t)nc * sizeof *nt);
                if (!nt) {
                    set_err(st, QS_ENOMEM, "out of memory for per-token statistics");
                    return;
                }
                s->tok_absmax = nt;
                s->tok_cap = nc;
            }
            s->tok_absmax[s->tokens] = ta;
        }
        s->tokens++;
    }
    if (s->cov && qs_xtx_add(s->cov, x, n, dim, NULL)) set_err(st, QS_ENOMEM, "out of memory for a covariance block");
}

qs_status qs_xtx_add(double *H, const float *x, long n, int dim, double *buf) {
    double *b = buf ? buf : malloc((size_t)QS_XTX_ROWS * dim * sizeof *b);
    if (!b) return qs_fail(QS_ENOMEM, "out of memory for a covariance block");
    for (long r0 = 0; r0 < n; r0 += QS_XTX_ROWS) {
        int nr = n - r0 < QS_XTX_ROWS ? (int)(n - r0) : QS_XTX_ROWS;
        for (size_t i = 0; i < (size_t)nr * dim; i++) b[i] = x[(size_t)r0 * dim + i];
        qs_blas_dsyrk_acc(nr, dim, b, H);
    }
    if (!buf) free(b);
    return QS_OK;
}

qs_status qs_stats_collect(const qs_model *m, const qs_exec *x, const qs_calib *cal, const qs_stats_opts *o,
                           qs_progress_fn progress, void *ud, qs_stats **out) {
    *out = NULL;
    if (!cal || cal->n_rows < 1) return qs_fail(QS_EARG, "calibration set is empty");
    qs_stats *st;
    qs_status s = qs_stats_new(m->cfg.n_layers, o, &st);
    if (s) return s;
    qs_ctx *c;
    if ((s = qs_ctx_new(m, x, cal->ctx, &c))) {
        qs_stats_free(st);
        return s;
    }
    qs_ctx_observe(c, qs_stats_observe, st);
    for (int r = 0; r < cal->n_rows && !s; r++) {
        qs_ctx_reset(c);
        s = qs_forward(c, cal->ids + (size_t)r * cal->ctx, cal->ctx, NULL, QS_LOGITS_NONE);
        if (!s) s = qs_stats_status(st);
        if (!s && progress && progress(ud, r + 1, cal->n_rows))
            s = qs_fail(QS_ECANCEL, "calibration cancelled after %d of %d windows", r + 1, cal->n_rows);
    }
    qs_ctx_free(c);
    if (s) {
        qs_stats_free(st);
        return s;
    }
    for (int i = 0; i < (st->n_layers + 1) * QS_SITE_COUNT; i++)
        if (st->site[i] && st->site[i]->cov) qs_blas_symmetrize(st->site[i]->dim, st->site[i]->cov);
    st->tokens = (long)cal->n_rows * cal->ctx;
    st->windows = cal->n_rows;
    st->ctx = cal->ctx;
    snprintf(st->source, sizeof st->source, "%s", cal->source);
    *out = st;
    return QS_OK;
}

const qs_site_stats *qs_stats_site(const qs_stats *st, int layer, qs_site site) {
    if (!st || layer < 0 || layer > st->n_layers || (unsigned)site >= QS_SITE_COUNT) return NULL;
    return st->site[(size_t)layer * QS_SITE_COUNT + site];
}

qs_status qs_stats_outliers(const qs_stats *st, float tau, double layer_frac, double pos_frac,
                            qs_outlier **out, int *n) {
    *out = NULL;
    *n = 0;
    if (tau != st->tau)
        return qs_fail(QS_EARG, "statistics count |x| >= %g, not %g: recalibrate with that threshold", st->tau, tau);
    const qs_site_stats *first = qs_stats_site(st, 0, QS_SITE_ATTN_IN);
    if (!first) return qs_fail(QS_EARG, "outlier analysis needs attn_in and mlp_in statistics");
    int dim = first->dim, inputs = 2 * st->n_layers;
    qs_outlier *res = calloc((size_t)dim, sizeof *res);
    if (!res) return qs_fail(QS_ENOMEM, "out of memory");
    int cnt = 0;
    for (int j = 0; j < dim; j++) {
        qs_outlier o = {.dim = j};
        double fsum = 0;
        for (int l = 0; l < st->n_layers; l++) {
            int hit = 0;
            for (int k = 0; k < 2; k++) {
                const qs_site_stats *s = qs_stats_site(st, l, k ? QS_SITE_MLP_IN : QS_SITE_ATTN_IN);
                if (!s || s->dim != dim || !s->tokens) continue;
                double f = (double)s->n_over[j] / (double)s->tokens;
                o.absmax = s->absmax[j] > o.absmax ? s->absmax[j] : o.absmax;
                if (f >= pos_frac) {
                    o.n_inputs++;
                    fsum += f;
                    hit = 1;
                }
            }
            if (hit) {
                o.n_layers_hit++;
                if (l < 64) o.layer_mask |= 1ull << l;
            }
        }
        o.layer_frac = (double)o.n_inputs / inputs;
        o.pos_frac = o.n_inputs ? fsum / o.n_inputs : 0;
        if (o.n_inputs && o.layer_frac >= layer_frac) res[cnt++] = o;
    }
    if (!cnt) {
        free(res);
        return QS_OK;
    }
    *out = res;
    *n = cnt;
    return QS_OK;
}
