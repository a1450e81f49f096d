/* Variants: the machinery every method shares (owned buffers, quantizer
 * slots, statistics, accounting) and the driver that applies a spec's steps
 * through the method table. The methods themselves are one file each. */
#include "methods/methods_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods/methods.h"
#include "kern/kern.h"

float *qs_variant_floats(qs_variant *v, size_t n) { return qs_store_alloc(v->store, n * sizeof(float)); }
int32_t *qs_variant_ints(qs_variant *v, size_t n) { return qs_store_alloc(v->store, n * sizeof(int32_t)); }

qs_actq *qs_variant_site_q(qs_variant *v, int layer, qs_site site) {
    if (!v->aq) {
        v->aq = qs_store_calloc(v->store, (size_t)(v->m->cfg.n_layers + 1) * QS_SITE_COUNT * sizeof(qs_actq));
        if (!v->aq) return NULL;
        v->exec.aq = v->aq;
    }
    return &v->aq[(size_t)layer * QS_SITE_COUNT + site];
}

void qs_variant_note(qs_variant *v, const char *fmt, ...) {
    size_t n = strlen(v->desc);
    if (n + 3 >= sizeof v->desc) return;
    if (n) {
        memcpy(v->desc + n, "; ", 3);
        n += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->desc + n, sizeof v->desc - n, fmt, ap);
    va_end(ap);
}

static int **table(qs_variant *v, int ***slot, int rows) {
    if (!*slot) *slot = qs_store_calloc(v->store, (size_t)rows * sizeof(int *));
    return *slot;
}

qs_status qs_variant_set_clusters(qs_variant *v, int layer, qs_site site, const int *labels, int dim, int k) {
    int rows = (v->m->cfg.n_layers + 1) * QS_SITE_COUNT;
    if (!table(v, &v->clusters, rows)) return QS_ENOMEM;
    if (!v->n_clusters && !(v->n_clusters = qs_store_calloc(v->store, (size_t)rows * sizeof(int)))) return QS_ENOMEM;
    int *copy = qs_store_alloc(v->store, (size_t)dim * sizeof(int));
    if (!copy) return QS_ENOMEM;
    memcpy(copy, labels, (size_t)dim * sizeof(int));
    v->clusters[layer * QS_SITE_COUNT + site] = copy;
    v->n_clusters[layer * QS_SITE_COUNT + site] = k;
    return QS_OK;
}

qs_status qs_variant_set_eig(qs_variant *v, int layer, int which, const double *w, int n, int kept) {
    int rows = v->m->cfg.n_layers * 2;
    if (!v->eig && !(v->eig = qs_store_calloc(v->store, (size_t)rows * sizeof(double *)))) return QS_ENOMEM;
    if (!v->eig_n && !(v->eig_n = qs_store_calloc(v->store, (size_t)rows * 2 * sizeof(int)))) return QS_ENOMEM;
    v->eig_kept = v->eig_n + rows;
    double *copy = qs_store_alloc(v->store, (size_t)n * sizeof(double));
    if (!copy) return QS_ENOMEM;
    memcpy(copy, w, (size_t)n * sizeof(double));
    v->eig[layer * 2 + which] = copy;
    v->eig_n[layer * 2 + which] = n;
    v->eig_kept[layer * 2 + which] = kept;
    return QS_OK;
}

const int *qs_variant_clusters(const qs_variant *v, int layer, qs_site site, int *n_clusters) {
    if (n_clusters) *n_clusters = 0;
    if (!v->clusters || layer < 0 || layer > v->m->cfg.n_layers || (unsigned)site >= QS_SITE_COUNT) return NULL;
    if (n_clusters) *n_clusters = v->n_clusters[layer * QS_SITE_COUNT + site];
    return v->clusters[layer * QS_SITE_COUNT + site];
}

const double *qs_variant_eigenvalues(const qs_variant *v, int layer, int which, int *n, int *kept) {
    if (n) *n = 0;
    if (kept) *kept = 0;
    if (!v->eig || layer < 0 || layer >= v->m->cfg.n_layers || which < 0 || which > 1) return NULL;
    if (n) *n = v->eig_n[layer * 2 + which];
    if (kept) *kept = v->eig_kept[layer * 2 + which];
    return v->eig[layer * 2 + which];
}

/* Do the base statistics hold every site and covariance asked for? */
static int stats_cover(const qs_stats *st, const qs_stats_opts *o) {
    if (!st) return 0;
    if ((o->cov_sites & st->opts.cov_sites) != o->cov_sites) return 0;
    if (st->opts.sites && (!o->sites || (o->sites & st->opts.sites) != o->sites)) return 0;
    if (o->tau != st->tau) return 0;
    return 1;
}

qs_status qs_variant_stats(qs_variant *v, const qs_stats_opts *o, qs_stats **out, int *borrowed) {
    *out = NULL;
    *borrowed = 0;
    if (!v->modified && stats_cover(v->base_stats, o)) {
        *out = (qs_stats *)v->base_stats;
        *borrowed = 1;
        return QS_OK;
    }
    if (!v->calib)
        return qs_fail(QS_EARG, "%s needs calibration data (give --calib FILE or --calib-ids FILE)", v->spec.text);
    return qs_stats_collect(v->m, &v->exec, v->calib, o, v->progress, v->progress_ud, out);
}

int qs_variant_layer_has_kernel(qs_variant *v, int layer) {
    qs_linear *ls[QS_LAYER_LINEARS];
    int n = qs_layer_linears(&v->w.layers[layer], 0, ls);
    for (int j = 0; j < n; j++)
        if (ls[j]->kern) return 1;
    return 0;
}

/* ---- accounting ---- */

static long long lin_bytes(const qs_linear *l) {
    if (!qs_linear_has(l)) return 0;
    long long bias = l->b ? 4LL * l->n_out : 0;
    if (l->kern) /* int8 codes + fp32 row scales + fp32 bias (kept inside the int8 layer) */
        return (long long)l->n_out * l->n_in + 4LL * l->n_out + bias;
    size_t e, b;
    /* llama.cpp's blocks are what they store (k-quants' scales are not one fp16 per group) */
    if (l->wq && qs_ggml_block(l->wtype, &e, &b)) return qs_linear_stored_bytes(l) + bias;
    if (l->bits) return qs_quant_weight_bytes(l->n_out, l->n_in, l->bits, l->group, l->asym) + bias;
    return qs_linear_stored_bytes(l) + bias;
}

static long long lin_params(const qs_linear *l) {
    return qs_linear_has(l) ? (long long)l->n_out * l->n_in + (l->b ? l->n_out : 0) : 0;
}

static long long norm_n(const qs_norm *n) { return (n->w ? n->dim : 0) + (n->b ? n->dim : 0); }

/* bytes and parameters of the weights; *looked_up: the bytes of the embedding tables, of which a
 * token reads one row (the token table is read whole again when it is also the head) */
static void count(const qs_variant *v, long long *bytes, long long *params, long long *looked_up) {
    const qs_config *c = &v->m->cfg;
    const qs_weights *w = &v->w;
    int de = w->d_embed ? w->d_embed : c->d_model;
    long long p = (long long)c->vocab * de, b;
    if (w->pos_embed) p += (long long)(c->max_pos + c->pos_offset) * de;
    /* the token embedding as stored (fp32 unless embed_q) */
    long long tok = w->embed_q ? (long long)qs_wtype_row_bytes(w->embed_type, de) * c->vocab : 4LL * c->vocab * de;
    b = 4 * p - 4LL * c->vocab * de + tok;
    *looked_up = b;
    for (int i = 0; i < c->n_layers; i++) {
        const qs_layer *L = &w->layers[i];
        qs_linear *ls[QS_LAYER_LINEARS];
        int nl = qs_layer_linears((qs_layer *)L, 1, ls);
        for (int j = 0; j < nl; j++) {
            p += lin_params(ls[j]);
            b += lin_bytes(ls[j]);
        }
        p += norm_n(&L->attn_norm) + norm_n(&L->mlp_norm);
        b += 4 * (norm_n(&L->attn_norm) + norm_n(&L->mlp_norm));
    }
    p += norm_n(&w->final_norm);
    b += 4 * norm_n(&w->final_norm);
    if (qs_head_tied(w) && !w->head.kern) {
        *looked_up -= tok;
        if (w->head.b) {
            p += w->head.n_out;
            b += 4LL * w->head.n_out;
        }
    } else {
        p += lin_params(&w->head);
        b += lin_bytes(&w->head);
    }
    *bytes = b;
    *params = p;
}

long long qs_variant_weight_bytes(const qs_variant *v) {
    long long b, p, e;
    count(v, &b, &p, &e);
    return b;
}

long long qs_variant_params(const qs_variant *v) {
    long long b, p, e;
    count(v, &b, &p, &e);
    return p;
}

long long qs_variant_token_bytes(const qs_variant *v) {
    long long b, p, e;
    count(v, &b, &p, &e);
    return b - e;
}

long long qs_variant_kv_bytes_per_token(const qs_variant *v) {
    const qs_config *c = &v->m->cfg;
    long long elems = 2LL * c->n_layers * c->n_kv_heads * c->head_dim;
    if (v->kv_bits >= 32 || v->kv_bits <= 0) return 4 * elems;
    long long b = (elems * v->kv_bits + 7) / 8;
    if (v->kv_dynamic) b += 2LL * c->n_layers * 2 * 2; /* an fp16 scale and zero per row of k and of v */
    return b;
}

const qs_exec *qs_variant_exec(const qs_variant *v) { return &v->exec; }
const qs_model *qs_variant_model(const qs_variant *v) { return v->m; }
const char *qs_variant_spec(const qs_variant *v) { return v->spec.text; }
const char *qs_variant_describe(const qs_variant *v) { return v->desc[0] ? v->desc : "fp32: the model as loaded"; }

void qs_variant_free(qs_variant *v) {
    if (!v) return;
    for (int i = 0; i < v->n_i8; i++) qs_int8_linear_free(v->i8s[i]);
    free(v->i8s);
    qs_store_free(v->store);
    free(v);
}

int qs_variant_needs_calib(const char *spec) {
    qs_spec s;
    if (qs_spec_parse(spec, &s)) return -1;
    for (int i = 0; i < s.n; i++) {
        const qs_method_def *d = qs_method_of(s.steps[i].method);
        if (d && d->needs_calib && d->needs_calib(&s.steps[i])) return 1;
    }
    return 0;
}


/* ---- driver ---- */

/* ---- memory, estimated before it is spent ---- */

long long qs_mem_available(void) {
    const char *env = getenv("QSCOPE_MAX_MEMORY_MB");
    if (env && *env) return atoll(env) * 1024LL * 1024;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "MemAvailable:", 13)) kb = atoll(line + 13);
    if (f) fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* Bytes a chain allocates at most, from the model's shapes: what a method
 * keeps (packed codes, int8 codes, weights in the model's 2-byte type or in
 * fp32) and what it holds on the way (a decoded matrix or layer; SliceGPT
 * also the calibration activations and its D x D matrices). */
long long qs_variant_estimate(const qs_model *m, const char *spec, const qs_calib *cal) {
    qs_spec sp;
    if (qs_spec_parse(spec, &sp)) return -1;
    const qs_config *c = &m->cfg;
    long long lin = 0, biggest = 0, layer = 0, D = c->d_model;
    int elt = 4; /* bytes a value of the model's matrices takes where a method keeps their type */
    for (int l = 0; l < c->n_layers; l++) {
        qs_linear *ls[QS_LAYER_LINEARS];
        int n = qs_layer_linears(&m->w.layers[l], 0, ls);
        long long here = 0;
        for (int j = 0; j < n; j++) {
            long long e = qs_linear_has(ls[j]) ? (long long)ls[j]->n_out * ls[j]->n_in : 0;
            if (e && !ls[j]->w && (ls[j]->wtype == QS_WT_F16 || ls[j]->wtype == QS_WT_BF16)) elt = 2;
            here += e;
            biggest = e > biggest ? e : biggest;
        }
        lin += here;
        layer = here > layer ? here : layer;
    }
    long long ntok = cal ? (long long)cal->n_rows * cal->ctx : 0, total = 0;
    for (int i = 0; i < sp.n; i++) {
        const qs_step *s = &sp.steps[i];
        switch (s->method) {
        case QS_M_FP32: break;
        case QS_M_RTN:
            if (s->w_bits < 16 || s->w_gptq) /* packed codes, a scale and offset per group, one decoded matrix */
                total += lin * s->w_bits / 8 + lin / (s->w_group > 0 ? s->w_group : D) * 8 + 4 * biggest;
            if (s->w_gptq) total += 8 * (long long)c->d_ff * c->d_ff * 2; /* Hessians, the widest input */
            break;
        case QS_M_INT8: total += lin + 4 * biggest; break;
        case QS_M_RPTQ:
            if (s->w_bits < 16 && !s->w_cluster && !s->ref) /* packed; one layer's permuted fp32 in passing */
                total += lin * s->w_bits / 8 + lin / (s->w_group > 0 ? s->w_group : D) * 8 + 4 * layer;
            else if (s->w_bits >= 16) /* reordered in their type */
                total += (s->reorder ? elt * lin : 0) + 4 * biggest;
            else /* fp32 values on per-cluster grids */
                total += 4 * lin + 4 * biggest;
            break;
        case QS_M_SLICE: { /* kept in the model's type; one layer, the embedding and the head in fp32 on the way */
            double keep = 1.0 - (s->ratio < 0 ? 0.25 : s->ratio);
            if (s->slice_f32) elt = 4;
            total += (long long)(elt * lin * keep) + 2LL * c->n_layers * (long long)(keep * D * keep * D) * elt +
                     (long long)(elt * c->vocab * D * (1 + keep)) + 4LL * c->vocab * D + 4 * layer +
                     (elt == 4 ? 16 * biggest : 0) + 2 * 4 * ntok * D + 5 * 8 * D * D + 2 * 4 * D * D;
            break;
        }
        }
    }
    return total;
}

qs_status qs_variant_new(const qs_model *m, const char *spec, const qs_variant_opts *o, qs_variant **out) {
    *out = NULL;
    qs_variant *v = calloc(1, sizeof *v);
    if (!v) return qs_fail(QS_ENOMEM, "out of memory");
    qs_status st = qs_spec_parse(spec, &v->spec);
    if (st) {
        free(v);
        return st;
    }
    v->m = m;
    v->kv_bits = 32;
    long long need = qs_variant_estimate(m, spec, o ? o->calib : NULL), have = qs_mem_available();
    if (need > 0)
        qs_log(QS_LOG_INFO, "%s: building it needs about %.0f MB; %.0f MB available", spec, need / 1e6,
               have > 0 ? have / 1e6 : 0.0);
    if (need > 0 && have > 0 && need > have) {
        long long weights = qs_variant_estimate(m, spec, NULL);
        free(v);
        const char *src = getenv("QSCOPE_MAX_MEMORY_MB") && *getenv("QSCOPE_MAX_MEMORY_MB")
                              ? "the limit set (--max-memory or QSCOPE_MAX_MEMORY_MB)" : "MemAvailable";
        return qs_fail(QS_ENOMEM, "variant %s: building it needs about %.0f MB, more than the %.0f MB of %s; %s",
                       spec, need / 1e6, have / 1e6, src,
                       weights > have ? "the weights it rewrites do not fit as it keeps them: fewer weight bits "
                                        "(rtn/gptq/rptq w=4, packed), int8, a larger slice ratio, or a smaller model"
                                      : "fewer calibration windows (--calib-windows) or a shorter --calib-ctx lower it");
    }
    if (o) {
        v->calib = o->calib;
        v->base_stats = o->base_stats;
        v->progress = o->progress;
        v->progress_ud = o->progress_ud;
    }
    if (!(v->store = qs_store_new())) {
        free(v);
        return QS_ENOMEM;
    }
    /* start as the model: a copy of the layer table, tensors borrowed */
    v->w = m->w;
    v->w.layers = qs_store_alloc(v->store, (size_t)m->cfg.n_layers * sizeof(qs_layer));
    if (!v->w.layers) {
        qs_variant_free(v);
        return QS_ENOMEM;
    }
    memcpy(v->w.layers, m->w.layers, (size_t)m->cfg.n_layers * sizeof(qs_layer));
    v->exec.w = &v->w;
    for (int i = 0; i < v->spec.n && !st; i++) {
        const qs_step *s = &v->spec.steps[i];
        const qs_method_def *d = qs_method_of(s->method);
        if (d && d->apply) st = d->apply(v, s);
    }
    if (st) {
        qs_variant_free(v);
        return st;
    }
    *out = v;
    return QS_OK;
}
