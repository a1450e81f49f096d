/* rptq_ref.c — RPTQ with the reference code's conventions (ref=1): its
 * grid, EMA ranges over the calibration windows in order, float16
 * arithmetic, layer-by-layer calibration. rptq.c is the default mode. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "stats/stats.h"
#include "methods/rptq_impl.h"

/* ---- the reference code's conventions (ref=1) ----
 *
 * The official RPTQ code (rptq.json in the fixtures lists what it does) runs
 * layer by layer over the calibration windows in their order:
 *   A. the layer as it was, fed with the outputs of the layers already
 *      quantized: the running max/min of every channel over all windows,
 *      for k-means; the permutations are folded in;
 *   B. a calibration pass of the reordered layer with no activation
 *      quantized (softmax probabilities are rounded to 1/255 all the same):
 *      each quantizer's range is an EMA over windows, in order, of the
 *      window's per-channel min/max (0.99 old + 0.01 new, the first window
 *      initialising), reduced to the cluster's min/max after every update;
 *      GPTQ's Hessians are summed here too;
 *   C. with GPTQ weights, the layer is run again fully quantized to give the
 *      next layer's inputs; otherwise B's outputs are the next inputs.
 * Activations are float16 there. Here the pass stays float32, but what the
 * quantizers compute is rounded to float16 as there: the ranges, the EMA,
 * scale and zero, x/scale and the result, and the probability rounding
 * (exec.prob_fp16). The grid is
 * QS_GRID_RPTQ; norm outputs keep max(8, a) bits; the q quantizer sees q
 * after the 1/sqrt(d) scaling while k-means sees it before; weights are
 * quantized per output row x input cluster (the clusters of the activation
 * that feeds them) and stored as float16. */

#ifndef RPTQ_REF_FP16
#define RPTQ_REF_FP16 1 /* 0: the quantizers' per-value arithmetic in float32 (for measuring) */
#endif

static float h16(float x) { return qs_quant_f16(x); }

qs_status rptq_plan_ref(const qs_variant *v, const qs_step *s, rptq_plan *p) {
    qs_status st = rptq_plan_default(v, s, p);
    if (st) return st;
    if (s->w_group)
        return qs_fail(QS_EARG, "%s: the reference mode (ref=1) quantizes weights per output row x input cluster, "
                       "not in groups of %d", v->spec.text, s->w_group);
    if (s->w_sym)
        return qs_fail(QS_EARG, "%s: the reference mode (ref=1) uses its asymmetric grid; sym=1 does not apply", v->spec.text);
    if (s->a_mode == QS_AQ_TOKEN)
        return qs_fail(QS_EARG, "%s: the reference mode (ref=1) calibrates static ranges; act=token does not apply",
                       v->spec.text);
    for (int i = 0; i < QS_SITE_COUNT; i++) p->bits[i] = 16;
    if (s->a_bits < 16) {
        int nb = s->norm_a ? s->norm_a : s->a_bits > 8 ? s->a_bits : 8;
        p->bits[QS_SITE_ATTN_IN] = p->bits[QS_SITE_MLP_IN] = nb;
        p->bits[QS_SITE_Q] = p->bits[QS_SITE_ATTN_OUT] = p->bits[QS_SITE_MLP_MID] = s->a_bits;
        p->prob_levels = 255;
    }
    p->bits[QS_SITE_K] = p->bits[QS_SITE_V] = s->kv_bits;
    p->grid = QS_GRID_RPTQ;
    p->w_cluster = 1;
    p->gptq = s->w_gptq && s->w_bits < 16;
    p->ref = 1;
    return QS_OK;
}

/* scale and zero point of [lo, hi] as the reference computes them in float16 */
static void ref_params16(float lo, float hi, int bits, float *scale, float *zero) {
    float s = h16(h16(hi - lo) * ldexpf(1.0f, -bits));
    s = h16(s < 1e-4f ? 1e-4f : s > 1e4f ? 1e4f : s);
    float z = h16(h16(hi + lo) * h16(-0.5f / s));
    z = z < -1e4f ? -1e4f : z > 1e4f ? 1e4f : z;
    *scale = s;
    *zero = rintf(h16(z));
}


/* Pass B's observer: EMA ranges per site, X^T X per linear input. */
typedef struct {
    int layer;
    float *lo[N_RPTQ_SITES], *hi[N_RPTQ_SITES]; /* (dim) range per channel, current order; NULL: not quantized */
    const int *lab[N_RPTQ_SITES];               /* (dim) cluster per channel, current order */
    int n_clu[N_RPTQ_SITES], dim[N_RPTQ_SITES], seen[N_RPTQ_SITES];
    float q_scale;                              /* the q quantizer sees q times this */
    float *wmin, *wmax;                         /* (widest) one window's range per channel */
    float *cmin, *cmax;                         /* (most clusters) */
    qs_hess *hess;                              /* GPTQ's Hessians, or NULL */
    qs_status err;
} ema_obs;

static void observe_ema(void *ud, int layer, qs_site site, const float *x, int n, int dim, int pos0) {
    (void)pos0;
    ema_obs *o = ud;
    if (layer != o->layer || o->err) return;
    if (o->hess) {
        qs_hess_observe(o->hess, layer, site, x, n, dim);
        if ((o->err = o->hess->err)) return;
    }
    int i = 0;
    while (i < N_RPTQ_SITES && rptq_sites[i] != site) i++;
    if (i == N_RPTQ_SITES || !o->lo[i]) return;
    if (dim != o->dim[i]) {
        o->err = qs_fail(QS_ESHAPE, "rptq: layer %d %s has width %d, expected %d", layer, qs_site_name(site), dim, o->dim[i]);
        return;
    }
    /* this window's range per channel, as float16 activations have it */
    float *mn = o->wmin, *mx = o->wmax;
    memcpy(mn, x, (size_t)dim * sizeof(float));
    memcpy(mx, x, (size_t)dim * sizeof(float));
    for (int r = 1; r < n; r++) {
        const float *xr = x + (size_t)r * dim;
        for (int c = 0; c < dim; c++) {
            mn[c] = xr[c] < mn[c] ? xr[c] : mn[c];
            mx[c] = xr[c] > mx[c] ? xr[c] : mx[c];
        }
    }
    float qs = site == QS_SITE_Q ? o->q_scale : 1.0f;
    float *lo = o->lo[i], *hi = o->hi[i];
    for (int c = 0; c < dim; c++) {
        float a = h16(h16(mn[c]) * qs), b = h16(h16(mx[c]) * qs);
        if (o->seen[i]) {
            a = h16(h16(lo[c] * 0.99f) + h16(a * 0.01f));
            b = h16(h16(hi[c] * 0.99f) + h16(b * 0.01f));
        }
        lo[c] = a;
        hi[c] = b;
    }
    o->seen[i]++;
    /* reduced to the cluster's range, in place: the next update starts from it */
    int K = o->n_clu[i];
    for (int k = 0; k < K; k++) {
        o->cmin[k] = INFINITY;
        o->cmax[k] = -INFINITY;
    }
    for (int c = 0; c < dim; c++) {
        int k = o->lab[i][c];
        o->cmin[k] = lo[c] < o->cmin[k] ? lo[c] : o->cmin[k];
        o->cmax[k] = hi[c] > o->cmax[k] ? hi[c] : o->cmax[k];
    }
    for (int c = 0; c < dim; c++) {
        lo[c] = o->cmin[o->lab[i][c]];
        hi[c] = o->cmax[o->lab[i][c]];
    }
}

/* Every calibration window of X (rows, ctx, din) through block l of ctx
 * into Y (rows, ctx, dout). */
static qs_status run_layer(qs_variant *v, qs_ctx *c, int l, const float *X, int din, float *Y, int dout, long *tick,
                           long total) {
    const qs_calib *cal = v->calib;
    qs_status st = QS_OK;
    for (int r = 0; r < cal->n_rows && !st; r++) {
        qs_ctx_reset(c);
        st = qs_forward_blocks(c, l, l + 1, X + (size_t)r * cal->ctx * din, cal->ctx, Y + (size_t)r * cal->ctx * dout);
    }
    if (!st && v->progress && v->progress(v->progress_ud, ++*tick, total))
        st = qs_fail(QS_ECANCEL, "%s: cancelled at layer %d", v->spec.text, l);
    return st;
}

/* Weights of one linear per output row x input cluster: GPTQ with the
 * Hessian sum Hs (or round to nearest), stored as float16 values. */
static qs_status ref_weights(qs_variant *v, const rptq_plan *p, qs_linear *l, int owned, const int *colg, int n_groups,
                             const double *Hs, double *Hw, long windows, int layer, const char *name) {
    if (!qs_linear_readable(l)) return QS_OK;
    float *out = owned ? (float *)l->w : qs_variant_floats(v, (size_t)l->n_out * l->n_in), *tmp;
    if (!out) return qs_fail(QS_ENOMEM, "out of memory");
    const float *src = qs_linear_f32(l, &tmp);
    if (!src) return QS_ENOMEM;
    int n = l->n_in;
    qs_status st;
    if (p->gptq) {
        double f = 2.0 / (double)windows; /* H = mean over windows of 2 X^T X, as the reference */
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++) Hw[(size_t)i * n + j] = Hw[(size_t)j * n + i] = f * Hs[(size_t)i * n + j];
        if (out != src) memcpy(out, src, (size_t)l->n_out * n * sizeof(float));
        qs_gptq_opts o = qs_gptq_defaults();
        o.bits = p->w_bits;
        o.grid = QS_GRID_RPTQ;
        o.col_group = colg;
        o.n_col_groups = n_groups;
        st = qs_gptq_quantize(out, l->n_out, n, Hw, &o, NULL);
    } else {
        st = qs_quant_weight_groups(src, l->n_out, n, p->w_bits, 0, QS_GRID_RPTQ, colg, n_groups, out);
    }
    free(tmp);
    if (st) return qs_fail_prefix(st, "%s: layer %d %s", v->spec.text, layer, name);
    for (size_t i = 0; i < (size_t)l->n_out * n; i++) out[i] = h16(out[i]);
    qs_linear_set_f32(l, out);
    l->bits = p->w_bits;
    l->group = n_groups <= 1 ? 0 : (n + n_groups - 1) / n_groups;
    l->asym = 1;
    return QS_OK;
}

qs_status rptq_ref_run(qs_variant *v, const rptq_plan *p, int *changed) {
    const qs_model *m = v->m;
    const qs_config *c = &m->cfg;
    const qs_calib *cal = v->calib;
    if (!cal || cal->n_rows < 1)
        return qs_fail(QS_EARG, "%s needs calibration data (give --calib FILE or --calib-ids FILE)", v->spec.text);
    /* rmax: residual widths (layer inputs kept for every window); dmax: the
     * widest site */
    int rmax = v->w.d_embed ? v->w.d_embed : c->d_model, dmax = rmax;
    for (int l = 0; l < c->n_layers; l++) {
        const qs_layer *L = &v->w.layers[l];
        int res[] = {L->attn_norm.dim, L->o.n_out, L->down.n_out};
        for (int k = 0; k < 3; k++) rmax = res[k] > rmax ? res[k] : rmax;
        int dims[] = {rmax, L->q.n_out, L->k.n_out, L->o.n_in, L->up.n_in, L->up.n_out};
        for (int k = 0; k < (int)(sizeof dims / sizeof dims[0]); k++) dmax = dims[k] > dmax ? dims[k] : dmax;
    }
    size_t ntok = (size_t)cal->n_rows * cal->ctx;
    float *X = malloc(ntok * rmax * sizeof(float)), *Y = malloc(ntok * rmax * sizeof(float));
    float *rng = malloc((2 * (size_t)N_RPTQ_SITES * dmax + 4 * (size_t)dmax) * sizeof(float));
    int *labpos = malloc(((size_t)N_RPTQ_SITES + 1) * dmax * sizeof(int));
    qs_hess hs = {0};
    qs_ctx *ca = NULL, *cb = NULL, *cc = NULL;
    qs_stats *sa = NULL;
    rptq_work wk = {0};
    qs_status st = p->gptq ? qs_hess_new(v, "rptq", &hs) : QS_OK;
    if (st) goto done;
    if (!X || !Y || !rng || !labpos) {
        st = qs_fail(QS_ENOMEM, "%s: out of memory for %zu calibration tokens", v->spec.text, ntok);
        goto done;
    }
    if ((st = qs_gptq_calib_inputs(v, X))) goto done;

    /* the run-time conventions, set before the contexts copy the exec */
    if (!qs_variant_site_q(v, 0, QS_SITE_ATTN_IN)) {
        st = qs_fail(QS_ENOMEM, "out of memory");
        goto done;
    }
    v->exec.prob_levels = p->prob_levels;
    v->exec.prob_fp16 = RPTQ_REF_FP16;
    v->exec.q_scaled = 1;
    qs_exec xa = v->exec, xb, xc = v->exec;
    xa.aq = NULL;
    xa.prob_levels = 0;
    xa.q_scaled = 0;
    xa.stop_layer = 0;
    xb = xa;
    xb.prob_levels = p->prob_levels;
    xc.stop_layer = 0;
    if ((st = qs_ctx_new(m, &xa, cal->ctx, &ca)) || (st = qs_ctx_new(m, &xb, cal->ctx, &cb)) ||
        (st = qs_ctx_new(m, &xc, cal->ctx, &cc)))
        goto done;

    long tick = 0, total = (long)c->n_layers * (p->gptq ? 3 : 2);
    for (int l = 0; l < c->n_layers && !st; l++) {
        qs_layer *L = &v->w.layers[l];
        int din = L->attn_norm.dim, dout = L->down.n_out;

        /* A: ranges over all windows of the layer as it was, for k-means */
        qs_stats_opts so = qs_stats_defaults();
        so.per_token = 0;
        so.sites = 0;
        for (int i = 0; i < N_RPTQ_SITES; i++) so.sites |= 1u << rptq_sites[i];
        if ((st = qs_stats_new(c->n_layers, &so, &sa))) break;
        qs_ctx_observe(ca, qs_stats_observe, sa);
        st = run_layer(v, ca, l, X, din, Y, dout, &tick, total);
        qs_ctx_observe(ca, NULL, NULL);
        if (st || (st = qs_stats_status(sa))) break;
        const qs_site_stats *ss[N_RPTQ_SITES];
        if ((st = rptq_layer_site_stats(v, sa, l, ss))) break;
        for (int i = 0; i < N_RPTQ_SITES; i++) { /* float16 statistics, as k-means gets them there */
            qs_site_stats *s = (qs_site_stats *)ss[i];
            for (int ch = 0; ch < s->dim; ch++) {
                s->min[ch] = h16(s->min[ch]);
                s->max[ch] = h16(s->max[ch]);
            }
        }
        if ((st = rptq_work_new(&wk, v, l)) || (st = rptq_layer_clusters(v, p, ss, l, &wk, changed))) break;

        /* B: the calibration pass of the reordered layer */
        rptq_site_work site[N_RPTQ_SITES];
        rptq_work_sites(&wk, site);
        ema_obs eo = {.layer = l, .q_scale = 1.0f / sqrtf((float)c->head_dim), .hess = p->gptq ? &hs : NULL};
        float *rp = rng + 4 * (size_t)dmax;
        eo.wmin = rng, eo.wmax = rng + dmax, eo.cmin = rng + 2 * (size_t)dmax, eo.cmax = rng + 3 * (size_t)dmax;
        for (int i = 0; i < N_RPTQ_SITES; i++) {
            int *lp = labpos + (size_t)i * dmax;
            eo.dim[i] = ss[i]->dim;
            eo.n_clu[i] = site[i].n;
            for (int j = 0; j < ss[i]->dim; j++) lp[j] = site[i].lab[site[i].perm ? site[i].perm[j] : j];
            eo.lab[i] = lp;
            if (p->bits[rptq_sites[i]] < 16) {
                eo.lo[i] = rp + 2 * (size_t)i * dmax;
                eo.hi[i] = eo.lo[i] + dmax;
            }
        }
        if (p->gptq) qs_hess_layer(&hs, L, l);
        qs_ctx_observe(cb, observe_ema, &eo);
        st = run_layer(v, cb, l, X, din, Y, dout, &tick, total);
        qs_ctx_observe(cb, NULL, NULL);
        if (st || (st = eo.err)) break;

        /* static quantizers from the EMA ranges */
        for (int i = 0; i < N_RPTQ_SITES && !st; i++) {
            int bits = p->bits[rptq_sites[i]], dim = eo.dim[i];
            if (bits >= 16) continue;
            qs_actq *q = qs_variant_site_q(v, l, rptq_sites[i]);
            float *sz = qs_variant_floats(v, 2 * (size_t)dim);
            if (!q || !sz) {
                st = qs_fail(QS_ENOMEM, "out of memory");
                break;
            }
            for (int j = 0; j < dim; j++) ref_params16(eo.lo[i][j], eo.hi[i][j], bits, &sz[j], &sz[dim + j]);
            *q = (qs_actq){.bits = bits, .mode = QS_AQ_STATIC, .grid = QS_GRID_RPTQ, .scale = sz, .zero = sz + dim,
                           .fp16 = RPTQ_REF_FP16};
            *changed = 1;
        }
        if (st) break;

        /* weights per output row x input cluster (the clusters of their input) */
        if (p->w_bits < 16) {
            qs_linear *lin[7] = {&L->q, &L->k, &L->v, &L->o, &L->up, &L->gate, &L->down};
            static const char *const names[7] = {"q", "k", "v", "o", "up", "gate", "down"};
            static const int src[7] = {0, 0, 0, 4, 5, 5, 6}; /* input site, rptq_sites order */
            for (int i = 0; i < 7 && !st; i++)
                st = ref_weights(v, p, lin[i], wk.own[i], eo.lab[src[i]], eo.n_clu[src[i]],
                                 p->gptq ? hs.H[qs_hess_of_linear[i]] : NULL, hs.work, cal->n_rows, l, names[i]);
            if (st) break;
            *changed = 1;
        }
        /* C: with GPTQ weights the quantized layer makes the next inputs */
        if (p->gptq && (st = run_layer(v, cc, l, X, din, Y, dout, &tick, total))) break;
        float *t = X;
        X = Y;
        Y = t;
        rptq_work_free(&wk);
        qs_stats_free(sa);
        sa = NULL;
    }
done:
    rptq_work_free(&wk);
    qs_stats_free(sa);
    qs_ctx_free(ca);
    qs_ctx_free(cb);
    qs_ctx_free(cc);
    free(X);
    free(Y);
    free(rng);
    free(labpos);
    qs_hess_free(&hs);
    return st;
}

