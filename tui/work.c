/* The jobs' bodies: what the workbench computes in the background. Each
 * tui_work_* builds a job, submits it, and later applies its result to the
 * state on the UI thread (the job's done()). Bodies run on the worker, read
 * the model (read-only after load) and tui_data (read-only once published),
 * and report progress through tui_jobs_progress so that Esc cancels them. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/run.h"
#include "base/base.h"
#include "stats/stats.h"
#include "export/export.h"
#include "tui.h"

enum { QUICK_WINDOWS = TUI_QUICK_WINDOWS, COV_MAX_DIM = 1024 };

tui_var *tui_var_ref(tui_var *v) {
    if (v) atomic_fetch_add(&v->refs, 1);
    return v;
}

void tui_var_unref(tui_var *v) {
    if (v && atomic_fetch_sub(&v->refs, 1) == 1) {
        qs_variant_free(v->v);
        free(v);
    }
}

/* Queue a job whose input `in` the caller has filled; run/done/free_fn as
 * in tui.h. On failure `in` is released through free_fn. */
static void submit(tui_jobs *q, int kind, const char *label, int urgent, void *in, qs_status (*run)(tui_job *),
                   void (*done)(tui_state *, tui_job *), void (*free_fn)(tui_job *)) {
    tui_job *j = calloc(1, sizeof *j);
    if (!j) {
        tui_job tmp = {.in = in};
        if (free_fn) free_fn(&tmp);
        else free(in);
        return;
    }
    j->kind = kind;
    tui_copy(j->label, sizeof j->label, label);
    j->urgent = urgent;
    j->in = in;
    j->run = run;
    j->done = done;
    j->free_fn = free_fn;
    tui_jobs_submit(q, j);
}

static qs_status fail(tui_job *j, qs_status st, const char *msg) {
    tui_copy(j->err, sizeof j->err, msg);
    return st;
}

static void free_in_out(tui_job *j) {
    free(j->in);
    free(j->out);
}

/* calib.txt / eval.txt in the model's directory, or beside its file */
static int beside_model(const qs_model *m, const char *name, char *buf, size_t cap) {
    if (qs_io_is_dir(m->path)) {
        qs_io_join(buf, cap, m->path, name);
    } else {
        char dir[1024];
        tui_copy(dir, sizeof dir, m->path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        qs_io_join(buf, cap, dir, name);
    }
    return qs_io_exists(buf);
}

static int ppl_ctx(const qs_model *m) { return m->cfg.max_pos < 512 ? m->cfg.max_pos : 512; }

tui_sources tui_sources_defaults(void) {
    tui_sources s = {.calib = qs_calib_opts_defaults()};
    s.calib.how_text = "--calib FILE (or --calib-ids FILE)";
    s.calib.how_ids = "--calib-ids";
    return s;
}

/* ---- calibration: statistics, outliers, spectra, the evaluation ids ---- */

typedef struct {
    const qs_model *m;
    tui_data *d;
    tui_sources src;
} calib_in;

void tui_data_clear(tui_data *d) {
    qs_calib_free(&d->cal);
    qs_stats_free(d->stats);
    free(d->outl);
    free(d->eval_ids);
    memset(d, 0, sizeof *d);
}

static qs_status calib_run(tui_job *j) {
    calib_in *in = j->in;
    const qs_model *m = in->m;
    tui_data *d = in->d;
    tui_data_clear(d);
    d->ctx = in->src.ctx ? in->src.ctx : ppl_ctx(m);
    char *text = NULL;
    size_t len;
    qs_status st;
    int D = m->cfg.d_model;
    int have_eval = 0;
    if (in->src.data) {
        tui_copy(d->eval_path, sizeof d->eval_path, in->src.data);
        have_eval = 1;
    } else {
        have_eval = beside_model(m, "eval.txt", d->eval_path, sizeof d->eval_path);
    }

    /* the evaluation text first: it is cheap and the ppl jobs need it */
    if (!m->tok) {
        snprintf(d->note, sizeof d->note, "%.180s has no tokenizer: no calibration or perplexity", m->path);
    } else if (have_eval) {
        size_t n = 0;
        if ((st = qs_io_read_all(d->eval_path, &text, &len)) ||
            (st = qs_tok_encode(m->tok, text, len, 1, &d->eval_ids, &n))) {
            tui_copy(d->eval_note, sizeof d->eval_note, qs_last_error());
            d->eval_ids = NULL;
            n = 0;
        }
        d->n_eval = (long)n;
        free(text);
        text = NULL;
    } else {
        snprintf(d->eval_note, sizeof d->eval_note, "no evaluation text: give --data FILE, or press O to open one");
        d->missing = 1;
        d->eval_path[0] = 0;
    }

    if (!m->tok && !in->src.calib.ids_file) return fail(j, QS_EARG, d->note);
    qs_calib_opts co = in->src.calib;
    if (co.ids_file) {
        tui_copy(d->calib_path, sizeof d->calib_path, co.ids_file);
    } else if (co.file) {
        tui_copy(d->calib_path, sizeof d->calib_path, co.file);
    } else if (!beside_model(m, "calib.txt", d->calib_path, sizeof d->calib_path)) {
        /* the views say why they are empty, and how to fill them */
        snprintf(d->note, sizeof d->note, "no calibration text: give --calib FILE or --calib-ids FILE, or press o to open one");
        d->missing = 1;
        return fail(j, QS_EIO, d->note);
    } else {
        co.file = d->calib_path;
    }
    if ((st = qs_calib_load(m, &co, &d->cal))) {
        tui_copy(d->note, sizeof d->note, qs_last_error());
        return fail(j, st, d->note);
    }
    d->have_cal = 1;

    qs_stats_opts o = qs_stats_defaults();
    if (D <= COV_MAX_DIM)
        o.cov_sites = (1u << QS_SITE_EMBED) | (1u << QS_SITE_RESID) | (1u << QS_SITE_RESID_MID);
    tui_jobs_set_label(j, "calibrating (%d windows of %d)", d->cal.n_rows, d->cal.ctx);
    if ((st = qs_stats_collect(m, NULL, &d->cal, &o, tui_jobs_progress, j, &d->stats))) {
        d->stats = NULL;
        return fail(j, st, qs_last_error());
    }
    if ((st = qs_stats_outliers(d->stats, d->stats->tau, 0.25, 0.06, &d->outl, &d->n_outl)))
        return fail(j, st, qs_last_error());

    d->have_cov = o.cov_sites != 0;
    return QS_OK;
}

static void calib_done(tui_state *s, tui_job *j) {
    calib_in *in = j->in;
    tui_data *d = in->d;
    int other = d != s->data; /* a calibration on files opened later (o, O, qscope.ui) */
    if (j->st == QS_ECANCEL) {
        if (other) {
            if (s->data_next == d) s->data_next = NULL;
            tui_state_retire(s, d);
        }
        tui_state_log(s, QS_LOG_WARN, "calibration cancelled: press r to run it again");
        return;
    }
    if (other) tui_state_adopt(s, d);
    /* published even when part failed: the views then say what is missing */
    s->data_ready = 1;
    if (j->st) tui_state_log(s, 3, "calibration: %s", j->err);
    if (d->note[0] && strcmp(d->note, j->err)) tui_state_log(s, QS_LOG_WARN, "%s", d->note);
    if (d->eval_note[0]) tui_state_log(s, QS_LOG_WARN, "%s", d->eval_note);
    if (d->missing)
        tui_state_log(s, QS_LOG_INFO, "without --calib and --data the workbench reads calib.txt and eval.txt beside the model");
    if (d->stats) {
        s->tstats = d->stats;
        s->tstats_tau = d->stats->tau;
        s->outl = d->outl;
        s->n_outl = d->n_outl;
        tui_state_log(s, QS_LOG_INFO, "calibrated on %s: %ld tokens (%d windows of %d), %d outlier dimension%s",
                      d->calib_path, d->stats->tokens, d->stats->windows, d->stats->ctx, d->n_outl,
                      d->n_outl == 1 ? "" : "s");
    }
    if (d->eval_ids)
        tui_state_log(s, QS_LOG_INFO, "evaluation text %s: %ld tokens", d->eval_path, d->n_eval);
    /* open on the strongest channel of the linear layers' inputs: where the outliers are */
    if (d->stats && !s->ch_user) {
        float best = -1;
        for (int l = 0; l < s->m->cfg.n_layers; l++)
            for (int k = 0; k < 2; k++) {
                qs_site site = k ? QS_SITE_MLP_IN : QS_SITE_ATTN_IN;
                const qs_site_stats *ss = qs_stats_site(d->stats, l, site);
                for (int c = 0; ss && c < ss->dim; c++)
                    if (ss->absmax[c] > best) {
                        best = ss->absmax[c];
                        s->ch_layer = l;
                        s->ch_site = site;
                        s->ch_cursor = c;
                    }
            }
        s->sp_layer = s->ch_layer;
        /* the site the user chose in Outliers stays; its row is the layer's */
        if (s->ol_site < 0) s->ol_row = 2 * s->ch_layer + (s->ch_site == QS_SITE_MLP_IN);
        else s->ol_row = tui_state_ol_rows(s) > 1 ? s->ch_layer : 0;
        s->ol_col = s->ch_cursor;
    }
    tui_state_want_clusters(s);
    tui_state_want_spectrum(s);
    if (other) {
        /* Compare again from fp32, on the new texts */
        tui_state_measure(s, "fp32", 0);
        tui_state_retune(s, -1);
    } else if (s->tstats && s->tstats_tau != s->knobs.tau) {
        tui_state_retune(s, TUI_K_TAU);
    }
}

void tui_work_calibrate(tui_jobs *q, const qs_model *m, tui_data *d, const tui_sources *src) {
    calib_in *in = calloc(1, sizeof *in);
    if (!in) return;
    in->m = m;
    in->d = d;
    in->src = src ? *src : tui_sources_defaults();
    submit(q, TUI_JOB_CALIB, "calibrating", 0, in, calib_run, calib_done, free_in_out);
}

/* ---- k-means of one layer x site (RPTQ section 3.2: cluster the channels
 * by their calibrated (max, min)) ---- */

typedef struct {
    tui_data *d;
    int layer, site, g;
} clusters_in;

typedef struct {
    int *labels;
    int n, k;
} clusters_out;

static qs_status clusters_run(tui_job *j) {
    clusters_in *in = j->in;
    const qs_site_stats *ss = in->d->stats ? qs_stats_site(in->d->stats, in->layer, in->site) : NULL;
    if (!ss) return fail(j, QS_EARG, "no statistics for this layer and site");
    clusters_out *o = calloc(1, sizeof *o);
    double *pts = malloc((size_t)ss->dim * 2 * sizeof *pts);
    if (o) o->labels = malloc((size_t)ss->dim * sizeof(int));
    j->out = o;
    if (!o || !pts || !o->labels) {
        free(pts);
        return fail(j, QS_ENOMEM, "out of memory");
    }
    for (int c = 0; c < ss->dim; c++) {
        pts[2 * c] = ss->max[c];
        pts[2 * c + 1] = ss->min[c];
    }
    o->n = ss->dim;
    o->k = in->g < ss->dim ? in->g : ss->dim;
    qs_status st = qs_kmeans(pts, ss->dim, 2, o->k, 0, 0, o->labels, NULL, NULL);
    free(pts);
    return st ? fail(j, st, qs_last_error()) : QS_OK;
}

static void clusters_free(tui_job *j) {
    clusters_out *o = j->out;
    if (o) free(o->labels);
    free_in_out(j);
}

static void clusters_done(tui_state *s, tui_job *j) {
    clusters_in *in = j->in;
    clusters_out *o = j->out;
    if (j->st == QS_ECANCEL || in->d != s->data) return; /* cancelled, or of data replaced since */
    if (j->st) {
        tui_state_log(s, 3, "clustering layer %d %s: %s", in->layer, qs_site_name(in->site), j->err);
        return;
    }
    free(s->labels);
    s->labels = o->labels;
    o->labels = NULL;
    s->n_labels = o->n;
    s->n_clusters = o->k;
    s->cl_layer = in->layer;
    s->cl_site = in->site;
    s->cl_g = in->g;
}

void tui_work_clusters(tui_jobs *q, tui_data *d, int layer, int site, int g) {
    char label[96];
    snprintf(label, sizeof label, "k-means g=%d layer %d %s", g, layer, qs_site_name(site));
    clusters_in *in = calloc(1, sizeof *in);
    if (!in) return;
    *in = (clusters_in){d, layer, site, g};
    submit(q, TUI_JOB_CLUSTERS, label, 1, in, clusters_run, clusters_done, clusters_free);
}

/* ---- statistics at another tau (frequency of |x| >= tau, outlier dims) ---- */

typedef struct {
    const qs_model *m;
    tui_data *d;
    float tau;
} restat_in;

typedef struct {
    qs_stats *st;
    qs_outlier *outl;
    int n_outl;
} restat_out;

static qs_status restat_run(tui_job *j) {
    restat_in *in = j->in;
    if (!in->d->have_cal) return fail(j, QS_EARG, "no calibration data");
    restat_out *o = calloc(1, sizeof *o);
    j->out = o;
    if (!o) return fail(j, QS_ENOMEM, "out of memory");
    qs_stats_opts so = qs_stats_defaults();
    so.tau = in->tau;
    so.per_token = 0;
    so.sites = 0; /* every site: the Outliers view shows any of them at this tau */
    qs_status st = qs_stats_collect(in->m, NULL, &in->d->cal, &so, tui_jobs_progress, j, &o->st);
    if (!st) st = qs_stats_outliers(o->st, in->tau, 0.25, 0.06, &o->outl, &o->n_outl);
    return st ? fail(j, st, st == QS_ECANCEL ? "cancelled" : qs_last_error()) : QS_OK;
}

static void restat_free(tui_job *j) {
    restat_out *o = j->out;
    if (o) {
        qs_stats_free(o->st);
        free(o->outl);
    }
    free_in_out(j);
}

static void restat_done(tui_state *s, tui_job *j) {
    restat_in *in = j->in;
    restat_out *o = j->out;
    if (j->st == QS_ECANCEL || in->d != s->data) return;
    if (j->st) {
        tui_state_log(s, 3, "statistics at tau %.1f: %s", in->tau, j->err);
        return;
    }
    if (s->tstats != s->data->stats) qs_stats_free(s->tstats);
    if (s->outl != s->data->outl) free(s->outl);
    s->tstats = o->st;
    s->tstats_tau = in->tau;
    s->outl = o->outl;
    s->n_outl = o->n_outl;
    o->st = NULL;
    o->outl = NULL;
    tui_state_log(s, QS_LOG_INFO, "tau %.1f: %d outlier dimension%s", in->tau, s->n_outl, s->n_outl == 1 ? "" : "s");
}

void tui_work_restat(tui_jobs *q, const qs_model *m, tui_data *d, float tau) {
    char label[96];
    snprintf(label, sizeof label, "statistics at tau %.1f", tau);
    restat_in *in = calloc(1, sizeof *in);
    if (!in) return;
    *in = (restat_in){m, d, tau};
    submit(q, TUI_JOB_RESTAT, label, 0, in, restat_run, restat_done, restat_free);
}

/* ---- the Spectrum view's numbers: SliceGPT's own PCA (section 4), read from
 * the slice variant built at the knobs' ratio, so the view shows the
 * eigenvalues (damped, LayerNorm models made RMSNorm-connected) that
 * SliceGPT slices by ---- */

typedef struct {
    const qs_model *m;
    tui_data *d;
    float ratio;
} spectrum_in;

static void spectrum_clear(tui_spectrum *sp) {
    tui_var_unref(sp->var);
    for (int w = 0; w < 2; w++) free(sp->frac[w]);
    memset(sp, 0, sizeof *sp);
}

static qs_status spectrum_run(tui_job *j) {
    spectrum_in *in = j->in;
    int L = in->m->cfg.n_layers;
    tui_spectrum *o = calloc(1, sizeof *o);
    j->out = o;
    if (!o) return fail(j, QS_ENOMEM, "out of memory");
    o->ratio = in->ratio;
    snprintf(o->spec, sizeof o->spec, "slice:ratio=%g", in->ratio);
    qs_variant_opts vo = {.calib = &in->d->cal, .base_stats = in->d->stats, .progress = tui_jobs_progress,
                          .progress_ud = j};
    qs_variant *v = NULL;
    qs_status st = qs_variant_new(in->m, o->spec, &vo, &v);
    if (st) return fail(j, st, st == QS_ECANCEL ? "cancelled" : qs_last_error());
    o->var = calloc(1, sizeof *o->var);
    for (int w = 0; w < 2; w++) o->frac[w] = calloc((size_t)L, sizeof(double));
    if (!o->var || !o->frac[0] || !o->frac[1]) {
        if (!o->var) qs_variant_free(v);
        return fail(j, QS_ENOMEM, "out of memory");
    }
    o->var->v = v;
    atomic_init(&o->var->refs, 1);
    for (int w = 0; w < 2; w++)
        for (int l = 0; l < L; l++) {
            int n = 0, kept = 0;
            const double *e = qs_variant_eigenvalues(v, l, w, &n, &kept);
            if (!e || n <= 0) return fail(j, QS_EARG, "the slice variant has no eigenvalues");
            double t = 0, k = 0;
            for (int i = 0; i < n; i++) {
                t += e[i];
                if (i < kept) k += e[i];
            }
            o->frac[w][l] = t > 0 ? k / t : 0;
            o->dim = n;
            o->kept = kept;
        }
    return QS_OK;
}

static void spectrum_free(tui_job *j) {
    tui_spectrum *o = j->out;
    if (o) spectrum_clear(o);
    free_in_out(j);
}

static void spectrum_done(tui_state *s, tui_job *j) {
    spectrum_in *in = j->in;
    if (j->st == QS_ECANCEL || in->d != s->data) return;
    if (j->st) {
        snprintf(s->spectrum.err, sizeof s->spectrum.err, "slice:ratio=%g: %.200s", in->ratio, j->err);
        tui_state_log(s, 3, "%s", s->spectrum.err);
        return;
    }
    spectrum_clear(&s->spectrum);
    s->spectrum = *(tui_spectrum *)j->out;
    memset(j->out, 0, sizeof s->spectrum);
}

void tui_work_spectrum(tui_jobs *q, const qs_model *m, tui_data *d, float ratio) {
    char label[96];
    snprintf(label, sizeof label, "SliceGPT PCA, ratio %.2f", ratio);
    spectrum_in *in = calloc(1, sizeof *in);
    if (!in) return;
    *in = (spectrum_in){m, d, ratio};
    submit(q, TUI_JOB_SPECTRUM, label, 0, in, spectrum_run, spectrum_done, spectrum_free);
}

void tui_spectrum_free(tui_spectrum *sp) { spectrum_clear(sp); }

/* ---- a variant and its perplexity ---- */

typedef struct {
    const qs_model *m;
    tui_data *d;
    char spec[160];
    int full;
} variant_in;

typedef struct {
    tui_var *var;
    qs_ppl_result r;
    int have_ppl;
    long long wbytes, kvbytes, params;
    char desc[256];
} variant_out;

static qs_status variant_run(tui_job *j) {
    variant_in *in = j->in;
    tui_data *d = in->d;
    variant_out *o = calloc(1, sizeof *o);
    j->out = o;
    if (!o) return fail(j, QS_ENOMEM, "out of memory");
    int need = qs_variant_needs_calib(in->spec);
    if (need < 0) return fail(j, QS_EARG, qs_last_error());
    if (need && !d->have_cal)
        return fail(j, QS_EARG, "this method needs calibration data: give --calib FILE or --calib-ids FILE");
    qs_variant_opts vo = {.calib = d->have_cal ? &d->cal : NULL,
                          .base_stats = d->stats,
                          .progress = tui_jobs_progress,
                          .progress_ud = j};
    if (need) tui_jobs_set_label(j, "building %s", in->spec);
    qs_variant *v = NULL;
    qs_status st = qs_variant_new(in->m, in->spec, &vo, &v);
    if (st) return fail(j, st, st == QS_ECANCEL ? "cancelled" : qs_last_error());
    o->var = calloc(1, sizeof *o->var);
    if (!o->var) {
        qs_variant_free(v);
        return fail(j, QS_ENOMEM, "out of memory");
    }
    o->var->v = v;
    atomic_init(&o->var->refs, 1);
    o->wbytes = qs_variant_weight_bytes(v);
    o->kvbytes = qs_variant_kv_bytes_per_token(v);
    o->params = qs_variant_params(v);
    tui_copy(o->desc, sizeof o->desc, qs_variant_describe(v));
    if (!d->eval_ids) return QS_OK;
    tui_jobs_set_label(j, "%s %s", in->full ? "full ppl" : "ppl", in->spec);
    qs_ctx *c = NULL;
    qs_ppl_opts po = {.ctx = d->ctx ? d->ctx : ppl_ctx(in->m), .max_windows = in->full ? 0 : QUICK_WINDOWS,
                      .progress = tui_jobs_progress, .progress_ud = j};
    if (!(st = qs_ctx_new(in->m, qs_variant_exec(v), po.ctx, &c))) st = qs_eval_ppl(c, d->eval_ids, d->n_eval, &po, &o->r);
    qs_ctx_free(c);
    if (st) return fail(j, st, st == QS_ECANCEL ? "cancelled" : qs_last_error());
    o->have_ppl = 1;
    return QS_OK;
}

static void variant_free(tui_job *j) {
    variant_out *o = j->out;
    if (o) tui_var_unref(o->var);
    free_in_out(j);
}

static void variant_done(tui_state *s, tui_job *j) {
    variant_in *in = j->in;
    variant_out *o = j->out;
    /* cancelled: a row that never finished goes unless another job fills it;
     * a finished one keeps its numbers */
    int stale = in->d != s->data; /* measured on texts replaced since */
    tui_row *r = tui_state_row_reported(s, in->spec, in->full, j->st == QS_ECANCEL || stale);
    if (j->st == QS_ECANCEL || stale) return;
    if (j->st) {
        if (r) {
            r->status = -1;
            tui_copy(r->err, sizeof r->err, j->err);
        }
        tui_state_log(s, 3, "%s: %s", in->spec, j->err);
        return;
    }
    if (r) {
        r->status = 1;
        r->err[0] = 0;
        tui_copy(r->desc, sizeof r->desc, o->desc);
        r->wbytes = o->wbytes;
        r->kvbytes = o->kvbytes;
        r->params = o->params;
        r->ppl = o->have_ppl ? o->r.ppl : NAN;
        r->windows = o->have_ppl ? o->r.windows : 0;
        r->tok_s = o->have_ppl && o->r.seconds > 0 ? o->r.windows * (double)o->r.ctx / o->r.seconds : 0;
    }
    const tui_row *base = tui_state_base_row_full(s, in->full);
    if (o->have_ppl && base && base->status == 1 && strcmp(in->spec, "fp32"))
        tui_state_log(s, QS_LOG_INFO, "%s: ppl %.3f (%+.3f vs fp32) over %d window%s, %.2f MB", in->spec, o->r.ppl,
                      o->r.ppl - base->ppl, o->r.windows, o->r.windows == 1 ? "" : "s", o->wbytes / 1e6);
    else if (o->have_ppl)
        tui_state_log(s, QS_LOG_INFO, "%s: ppl %.3f over %d window%s, %.2f MB", in->spec, o->r.ppl, o->r.windows,
                      o->r.windows == 1 ? "" : "s", o->wbytes / 1e6);
    if (!strcmp(in->spec, s->spec) || (!s->cur && !strcmp(in->spec, "fp32"))) {
        tui_var_unref(s->cur);
        s->cur = o->var;
        o->var = NULL;
    }
}

void tui_work_variant(tui_jobs *q, const qs_model *m, tui_data *d, const char *spec, int full) {
    int base = !strcmp(spec, "fp32");
    char label[96];
    snprintf(label, sizeof label, "%s %.80s", full ? "full ppl" : "ppl", spec);
    variant_in *in = calloc(1, sizeof *in);
    if (!in) return;
    in->m = m;
    in->d = d;
    tui_copy(in->spec, sizeof in->spec, spec);
    in->full = full;
    int kind = full ? (base ? TUI_JOB_FULLBASE : TUI_JOB_FULLPPL) : base ? TUI_JOB_BASE : TUI_JOB_VARIANT;
    submit(q, kind, label, 0, in, variant_run, variant_done, variant_free);
}


/* ---- export: a Compare row's variant written out ---- */

typedef struct {
    const qs_model *m;
    tui_data *d;
    char spec[160];
    char path[512];
    int force;
} export_in;

static qs_status export_run(tui_job *j) {
    export_in *in = j->in;
    tui_data *d = in->d;
    int need = qs_variant_needs_calib(in->spec);
    if (need < 0) return fail(j, QS_EARG, qs_last_error());
    if (need && !d->have_cal)
        return fail(j, QS_EARG, "this method needs calibration data: give --calib FILE or --calib-ids FILE");
    qs_variant_opts vo = {.calib = d->have_cal ? &d->cal : NULL, .base_stats = d->stats,
                          .progress = tui_jobs_progress, .progress_ud = j};
    qs_variant *v = NULL;
    qs_status st = qs_variant_new(in->m, in->spec, &vo, &v);
    if (!st) {
        tui_jobs_set_label(j, "writing %s", in->path);
        qs_export_opts eo = {.force = in->force, .progress = tui_jobs_progress, .progress_ud = j};
        st = qs_export(in->m, v, in->path, &eo);
    }
    qs_variant_free(v);
    return st ? fail(j, st, st == QS_ECANCEL ? "cancelled" : qs_last_error()) : QS_OK;
}

static void export_done(tui_state *s, tui_job *j) {
    export_in *in = j->in;
    if (j->st == QS_ECANCEL) tui_state_log(s, QS_LOG_INFO, "export of %s cancelled; nothing written", in->spec);
    else if (j->st) tui_state_log(s, 3, "export %s: %s", in->spec, j->err);
    else tui_state_log(s, QS_LOG_INFO, "wrote %s: %s", in->path, in->spec);
}

void tui_work_export(tui_jobs *q, const qs_model *m, tui_data *d, const char *spec, const char *path, int force) {
    export_in *in = calloc(1, sizeof *in);
    if (!in) return;
    in->m = m;
    in->d = d;
    tui_copy(in->spec, sizeof in->spec, spec);
    tui_copy(in->path, sizeof in->path, path);
    in->force = force;
    char label[96];
    snprintf(label, sizeof label, "export %.80s", spec);
    submit(q, TUI_JOB_EXPORT, label, 0, in, export_run, export_done, free_in_out);
}

/* ---- generation: two variants, token by token, side by side ----
 *
 * Each side runs qs_gen_run on a thread of its own; a baton lets only one
 * compute at a time and is handed over after every piece of text, so the two
 * streams advance in turn and never compete for the BLAS threads. */

typedef struct {
    const qs_model *m;
    tui_data *d;
    char prompt[512];
    tui_var *v[2]; /* the sides' variants; NULL: fp32 or not built yet */
    tui_gen_opts o;
    char spec[2][160];
} gen_in;

typedef struct gen_shared {
    tui_job *j;
    gen_in *in;
    const int32_t *ids;
    int n_ids;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int turn, finished[2];
    qs_status st[2];
    char err[2][256];
} gen_shared;

typedef struct {
    int side, kind; /* kind 0 text, 1 start, 2 end */
    int tokens;
    double seconds;
    int ctx_full, ctx; /* end: stopped at the context length of ctx positions */
    char err[200];
    size_t len;
    char text[];
} gen_event;

static void gen_apply(tui_state *s, void *data) {
    gen_event *e = data;
    tui_gen_side *g = &s->gen[e->side];
    if (e->kind == 1) {
        g->len = 0;
        g->tokens = 0;
        g->seconds = 0;
        g->err[0] = 0;
        g->running = 1;
        tui_copy(g->spec, sizeof g->spec, e->text);
    } else if (e->kind == 2) {
        g->running = 0;
        g->tokens = e->tokens;
        g->seconds = e->seconds;
        g->ctx_full = e->ctx_full;
        g->ctx = e->ctx;
        tui_copy(g->err, sizeof g->err, e->err);
        if (e->ctx_full)
            tui_state_log(s, QS_LOG_WARN, "%s: stopped at the context length (%d positions) after %d tokens", g->spec,
                          e->ctx, e->tokens);
    } else {
        if (g->len + e->len + 1 > g->cap) {
            size_t cap = (g->len + e->len + 1) * 2;
            char *t = realloc(g->text, cap);
            if (!t) {
                free(e);
                return;
            }
            g->text = t;
            g->cap = cap;
        }
        memcpy(g->text + g->len, e->text, e->len);
        g->len += e->len;
        g->text[g->len] = 0;
        g->tokens++;
    }
    free(e);
}

static gen_event *gen_post(gen_shared *sh, int side, int kind, const char *text, size_t len, int tokens, double secs,
                          const char *err, int ctx_full, int ctx) {
    gen_event *e = calloc(1, sizeof *e + len + 1);
    if (!e) return NULL;
    e->ctx_full = ctx_full;
    e->ctx = ctx;
    e->side = side;
    e->kind = kind;
    e->tokens = tokens;
    e->seconds = secs;
    if (err) tui_copy(e->err, sizeof e->err, err);
    memcpy(e->text, text, len);
    e->len = len;
    tui_jobs_post(sh->j->q, gen_apply, e);
    return e;
}

static void baton_take(gen_shared *sh, int side) {
    pthread_mutex_lock(&sh->mu);
    while (sh->turn != side && !sh->finished[1 - side]) pthread_cond_wait(&sh->cv, &sh->mu);
    pthread_mutex_unlock(&sh->mu);
}

static void baton_pass(gen_shared *sh, int side, int finished) {
    pthread_mutex_lock(&sh->mu);
    if (finished) sh->finished[side] = 1;
    sh->turn = 1 - side;
    pthread_cond_broadcast(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

typedef struct {
    gen_shared *sh;
    int side;
    double waited; /* seconds spent waiting for the other side's tokens */
} gen_side_arg;

static int gen_on_text(void *ud, int id, const char *text, size_t len) {
    gen_side_arg *a = ud;
    (void)id;
    gen_post(a->sh, a->side, 0, text, len, 0, 0, NULL, 0, 0);
    double t0 = qs_io_clock();
    baton_pass(a->sh, a->side, 0);
    baton_take(a->sh, a->side);
    a->waited += qs_io_clock() - t0;
    return atomic_load(&a->sh->j->cancel);
}

static void *gen_side(void *arg) {
    gen_side_arg *a = arg;
    gen_shared *sh = a->sh;
    int side = a->side;
    const qs_model *m = sh->in->m;
    const qs_exec *x = sh->in->v[side] ? qs_variant_exec(sh->in->v[side]->v) : NULL;
    baton_take(sh, side);
    qs_ctx *c = NULL;
    qs_gen_result r = {0};
    int cap = sh->n_ids + sh->in->o.n_tokens + 1;
    if (cap > m->cfg.max_pos) cap = m->cfg.max_pos;
    qs_gen_opts o = qs_gen_defaults();
    o.n_max = sh->in->o.n_tokens;
    o.temp = sh->in->o.temp;
    o.top_p = sh->in->o.top_p;
    o.seed = (uint64_t)sh->in->o.seed;
    o.on_text = gen_on_text;
    o.ud = a;
    qs_status st = qs_ctx_new(m, x, cap, &c);
    if (!st) st = qs_gen_run(c, m->tok, sh->ids, sh->n_ids, &o, &r);
    qs_ctx_free(c);
    sh->st[side] = st;
    if (st) tui_copy(sh->err[side], sizeof sh->err[side], qs_last_error());
    /* the sides take turns: a side's speed is its own time, not the turns it waited */
    double secs = r.decode_seconds + r.prefill_seconds - a->waited;
    gen_post(sh, side, 2, "", 0, st ? 0 : r.n, st || secs <= 0 ? 0 : secs, st ? sh->err[side] : NULL,
             !st && r.stopped_by == 3, cap);
    qs_gen_result_free(&r);
    baton_pass(sh, side, 1);
    return NULL;
}

/* Build side i's variant when it was not handed over (fp32 needs none). */
static qs_status gen_build(tui_job *j, gen_in *in, int i) {
    if (in->v[i] || !strcmp(in->spec[i], "fp32")) return QS_OK;
    tui_data *d = in->d;
    int need = qs_variant_needs_calib(in->spec[i]);
    if (need < 0) return fail(j, QS_EARG, qs_last_error());
    if (need && (!d || !d->have_cal))
        return fail(j, QS_EARG, "this method needs calibration data: give --calib FILE or --calib-ids FILE");
    tui_jobs_set_label(j, "building %s", in->spec[i]);
    qs_variant_opts vo = {.calib = need ? &d->cal : NULL, .base_stats = d ? d->stats : NULL,
                          .progress = tui_jobs_progress, .progress_ud = j};
    qs_variant *v = NULL;
    qs_status st = qs_variant_new(in->m, in->spec[i], &vo, &v);
    if (st) return fail(j, st, st == QS_ECANCEL ? "cancelled" : qs_last_error());
    in->v[i] = calloc(1, sizeof *in->v[i]);
    if (!in->v[i]) {
        qs_variant_free(v);
        return fail(j, QS_ENOMEM, "out of memory");
    }
    in->v[i]->v = v;
    atomic_init(&in->v[i]->refs, 1);
    return QS_OK;
}

static qs_status gen_run(tui_job *j) {
    gen_in *in = j->in;
    const qs_model *m = in->m;
    if (!m->tok) return fail(j, QS_EARG, "the model has no tokenizer");
    for (int i = 0; i < 2; i++) {
        qs_status bst = gen_build(j, in, i);
        if (bst) {
            char msg[sizeof j->err + 200];
            snprintf(msg, sizeof msg, "%s: %s", in->spec[i], j->err);
            tui_copy(j->err, sizeof j->err, msg);
            return bst;
        }
    }
    tui_jobs_set_label(j, "generating");
    int32_t *ids = NULL;
    size_t n = 0;
    qs_status st = qs_tok_encode(m->tok, in->prompt, strlen(in->prompt), 1, &ids, &n);
    if (st) return fail(j, st, qs_last_error());
    if ((long)n >= m->cfg.max_pos) {
        free(ids);
        return fail(j, QS_EARG, "the prompt is longer than the model's context");
    }
    gen_shared sh = {.j = j, .in = in, .ids = ids, .n_ids = (int)n};
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    int sides = 2;
    for (int i = 0; i < sides; i++) gen_post(&sh, i, 1, in->spec[i], strlen(in->spec[i]), 0, 0, NULL, 0, 0);
    gen_side_arg args[2] = {{&sh, 0, 0}, {&sh, 1, 0}};
    pthread_t t;
    int threaded = 0;
    if (sides == 2) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        threaded = pthread_create(&t, NULL, gen_side, &args[1]) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (sides == 2 && !threaded) sh.finished[1] = 1; /* no thread: one after the other */
    gen_side(&args[0]);
    if (threaded) pthread_join(t, NULL);
    else if (sides == 2) {
        sh.finished[1] = 0;
        gen_side(&args[1]);
    }
    pthread_mutex_destroy(&sh.mu);
    pthread_cond_destroy(&sh.cv);
    free(ids);
    for (int i = 0; i < sides; i++)
        if (sh.st[i] && sh.st[i] != QS_ECANCEL) return fail(j, sh.st[i], sh.err[i]);
    return QS_OK;
}

static void gen_free(tui_job *j) {
    gen_in *in = j->in;
    if (in)
        for (int i = 0; i < 2; i++) tui_var_unref(in->v[i]);
    free_in_out(j);
}

static void gen_done(tui_state *s, tui_job *j) {
    for (int i = 0; i < 2; i++) s->gen[i].running = 0;
    if (j->st && j->st != QS_ECANCEL) tui_state_log(s, 3, "generation: %s", j->err);
}

void tui_work_generate(tui_jobs *q, const qs_model *m, tui_data *d, const char *prompt, const char *const spec[2],
                       tui_var *const v[2], const tui_gen_opts *o) {
    gen_in *in = calloc(1, sizeof *in);
    if (!in) return;
    in->m = m;
    in->d = d;
    tui_copy(in->prompt, sizeof in->prompt, prompt);
    in->o = *o;
    for (int i = 0; i < 2; i++) {
        in->v[i] = tui_var_ref(v[i]);
        tui_copy(in->spec[i], sizeof in->spec[i], spec[i]);
    }
    submit(q, TUI_JOB_GEN, "generating", 0, in, gen_run, gen_done, gen_free);
}
