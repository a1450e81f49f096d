/* GPTQ: the column-by-column quantizer, and the layer-by-layer driver that
 * gives it Hessians from a variant's calibration passes. */
#include "methods/methods.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "run/run.h"
#include "methods/methods_impl.h"

qs_gptq_opts qs_gptq_defaults(void) {
    return (qs_gptq_opts){.bits = 4, .grid = QS_GRID_STD, .damp = 0.01, .block = 128};
}

static void range_of(const float *x, int n, float *lo, float *hi) {
    float a = x[0], b = x[0];
    for (int i = 1; i < n; i++) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *lo = a;
    *hi = b;
}

/* The same from float64 working weights, read as float32 (the grid's type). */
static void range_of_d(const double *x, int n, float *lo, float *hi) {
    float a = (float)x[0], b = a;
    for (int i = 1; i < n; i++) {
        float t = (float)x[i];
        a = t < a ? t : a;
        b = t > b ? t : b;
    }
    *lo = a;
    *hi = b;
}

/* The row type a packed result is written in: llama.cpp's blocks for the
 * ggml grid, else qscope's qs_wt_qg. */
static uint32_t pack_type(const qs_gptq_opts *o) {
    return o->grid == QS_GRID_GGML ? qs_ggml_type_of(o->bits, o->sym) : qs_wt_qg(o->bits, o->pack_lg);
}

/* The packed row header of group g of row r: scale and offset (qs_wt_qg),
 * or a ggml block's fp16 scale (and Q4_1's fp16 offset). */
static void pack_group(const qs_gptq_opts *o, int n_in, int r, int g, float s, float z, float qlo) {
    size_t rb = qs_wtype_row_bytes(pack_type(o), n_in);
    int gs = o->pack_lg ? 1 << o->pack_lg : n_in;
    size_t gb = rb / (size_t)(n_in / gs);
    uint8_t *h = (uint8_t *)o->pack + (size_t)r * rb + (size_t)g * gb;
    if (o->grid == QS_GRID_GGML) {
        uint16_t hs = qs_f32_to_f16(s), hz = qs_f32_to_f16(z);
        memset(h, 0, gb);
        memcpy(h, &hs, 2);
        if (!o->sym) memcpy(h + 2, &hz, 2);
        return;
    }
    float zoff = z - qlo;
    memcpy(h, &s, 4);
    memcpy(h + 4, &zoff, 4);
    memset(h + 8, 0, gb - 8);
}

/* Code u (0-based level; Q8_0: the signed level q) of column col. */
static void pack_code(const qs_gptq_opts *o, int n_in, int r, int col, int u) {
    size_t rb = qs_wtype_row_bytes(pack_type(o), n_in);
    int gs = o->pack_lg ? 1 << o->pack_lg : n_in, i = col % gs;
    size_t gb = rb / (size_t)(n_in / gs);
    uint8_t *base = (uint8_t *)o->pack + (size_t)r * rb + (size_t)(col / gs) * gb;
    if (o->grid == QS_GRID_GGML) { /* Q4_0 / Q4_1: byte j holds values j and j + 16 */
        uint8_t *c = base + (o->sym ? 2 : 4);
        if (o->bits == 8) c[i] = (uint8_t)(int8_t)u;
        else c[i % 16] |= (uint8_t)(i < 16 ? u : u << 4);
        return;
    }
    uint8_t *c = base + 8;
    if (o->bits <= 4) c[i / 2] |= (uint8_t)(i & 1 ? u << 4 : u);
    else c[i] = (uint8_t)u;
}

qs_status qs_gptq_quantize(float *w, int n_out, int n_in, double *H, const qs_gptq_opts *o, double *loss) {
    if (loss) *loss = 0;
    if (o->bits < 2 || o->bits > 8) return qs_fail(QS_EARG, "GPTQ: weight bits must be 2..8, got %d", o->bits);
    if (n_out < 1 || n_in < 1) return qs_fail(QS_EARG, "GPTQ: empty %dx%d weight", n_out, n_in);
    if (o->col_group && o->n_col_groups < 1) return qs_fail(QS_EARG, "GPTQ: column labels without a count");
    int bits = o->bits, sym = o->sym, B = o->block > 0 ? o->block : 128;
    int G = o->col_group ? 0 : (o->group > 0 && o->group < n_in ? o->group : 0);
    qs_grid grid = o->grid;
    /* k-quant super-blocks: the codes live in the blocks themselves (the value of a code depends on the block's
     * quantized sub-scales), so they are always packed */
    uint32_t ktype = grid == QS_GRID_Q4_K ? QS_WT_Q4_K : grid == QS_GRID_Q6_K ? QS_WT_Q6_K : 0;
    if (ktype && (!o->pack || o->col_group || n_in % 256))
        return qs_fail(QS_EARG, "GPTQ: grid %s needs packed rows of whole super-blocks of 256, got %d columns",
                       ktype == QS_WT_Q4_K ? "q4_k" : "q6_k", n_in);
    if (ktype) G = 256;
    size_t krb = ktype ? qs_wtype_row_bytes(ktype, n_in) : 0, kbb = ktype == QS_WT_Q4_K ? 144 : 210;
    float kx[256];
    int ng = o->col_group ? o->n_col_groups : 1;
    int pack = !ktype && o->pack && !o->col_group &&
               (grid == QS_GRID_STD ? (G ? G == 1 << o->pack_lg : o->pack_lg == 0)
                                    : grid == QS_GRID_GGML && G == 32 && o->pack_lg == 5 && pack_type(o));
    if (o->pack && !pack && !ktype) return qs_fail(QS_EARG, "GPTQ: these groups cannot be packed");
    float qlo = sym ? -(float)((1 << (bits - 1)) - 1) : 0, qhi = sym ? (float)((1 << (bits - 1)) - 1) : (float)((1 << bits) - 1);
    if (grid == QS_GRID_GGML && sym) qlo = -(float)(1 << (bits - 1));

    double *W = malloc((size_t)n_out * n_in * sizeof *W);
    double *W1 = malloc((size_t)B * sizeof *W1);
    double *Err = malloc((size_t)n_out * B * sizeof *Err);
    float *sc = malloc(2 * (size_t)n_out * ng * sizeof *sc);
    float *glo = malloc(2 * (size_t)ng * sizeof *glo);
    if (!W || !W1 || !Err || !sc || !glo) {
        free(W);
        free(W1);
        free(Err);
        free(sc);
        free(glo);
        return qs_fail(QS_ENOMEM, "GPTQ: out of memory for a %dx%d weight", n_out, n_in);
    }
    float *zp = sc + (size_t)n_out * ng, *ghi = glo + ng;
    qs_status st = QS_OK;

    /* ranges fixed before any update: per row, or per row and label */
    if (!G) {
        for (int r = 0; r < n_out; r++) {
            const float *wr = w + (size_t)r * n_in;
            if (!o->col_group) {
                float lo, hi;
                range_of(wr, n_in, &lo, &hi);
                qs_quant_params(lo, hi, bits, sym, grid, &sc[r], &zp[r]);
                if (pack) pack_group(o, n_in, r, 0, sc[r], zp[r], qlo);
                continue;
            }
            for (int g = 0; g < ng; g++) {
                glo[g] = INFINITY;
                ghi[g] = -INFINITY;
            }
            for (int i = 0; i < n_in; i++) {
                int g = o->col_group[i];
                glo[g] = wr[i] < glo[g] ? wr[i] : glo[g];
                ghi[g] = wr[i] > ghi[g] ? wr[i] : ghi[g];
            }
            for (int g = 0; g < ng; g++) {
                float *s = &sc[(size_t)r * ng + g], *z = &zp[(size_t)r * ng + g];
                if (glo[g] <= ghi[g]) qs_quant_params(glo[g], ghi[g], bits, sym, grid, s, z);
                else *s = 1, *z = 0;
            }
        }
    }
    for (size_t i = 0; i < (size_t)n_out * n_in; i++) W[i] = w[i];

    /* inputs never seen: their weights cannot matter, zero them */
    double tr = 0;
    for (int i = 0; i < n_in; i++) {
        double *hii = &H[(size_t)i * n_in + i];
        if (*hii == 0) {
            *hii = 1;
            for (int r = 0; r < n_out; r++) W[(size_t)r * n_in + i] = 0;
        }
        tr += *hii;
    }
    double damp = o->damp * tr / n_in;
    for (int i = 0; i < n_in; i++) H[(size_t)i * n_in + i] += damp;
    if ((st = qs_lapack_inv_chol_upper(n_in, H))) {
        st = qs_fail_prefix(st, "GPTQ of a %dx%d weight", n_out, n_in);
        goto done;
    }
    const double *U = H; /* H^-1 = U^T U, U upper */

    double total = 0;
    for (int i1 = 0; i1 < n_in; i1 += B) {
        int i2 = i1 + B < n_in ? i1 + B : n_in, cnt = i2 - i1;
        for (int r = 0; r < n_out; r++) {
            double *wr = W + (size_t)r * n_in; /* columns >= i1 as the block found them */
            float *qr = w + (size_t)r * n_in;
            double *er = Err + (size_t)r * cnt;
            memcpy(W1, wr + i1, (size_t)cnt * sizeof *W1);
            float s = 0, z = 0;
            for (int i = 0; i < cnt; i++) {
                int col = i1 + i;
                uint8_t *kblk = ktype ? (uint8_t *)o->pack + (size_t)r * krb + (size_t)(col / 256) * kbb : NULL;
                if (ktype && col % 256 == 0) { /* a super-block starts: its scales from the weights as found */
                    for (int j = 0; j < 256; j++) kx[j] = (float)wr[col + j];
                    qs_kq_block_scales(ktype, kx, kblk);
                } else if (G && col % G == 0) { /* a group starts: its range as the block found it */
                    float lo, hi;
                    range_of_d(wr + col, col + G < n_in ? G : n_in - col, &lo, &hi);
                    qs_quant_params(lo, hi, bits, sym, grid, &sc[r], &zp[r]);
                    if (pack) pack_group(o, n_in, r, col / G, sc[r], zp[r], qlo);
                }
                if (!ktype) { /* (a k-quant block holds its own scales) */
                    size_t gi = o->col_group ? (size_t)r * ng + o->col_group[col] : (size_t)r;
                    s = sc[gi];
                    z = zp[gi];
                }
                double x = W1[i];
                float q = ktype ? qs_kq_block_put(ktype, kblk, col % 256, (float)x)
                                : qs_quant_fq((float)x, s, z, bits, sym, grid);
                if (pack && grid == QS_GRID_GGML) { /* the level qs_quant_fq rounded to */
                    float qi = s != 0 ? rintf(((float)x - z) / s) : 0;
                    qi = qi < qlo ? qlo : qi > qhi ? qhi : qi;
                    pack_code(o, n_in, r, col, (int)qi - (bits == 4 && sym ? (int)qlo : 0));
                } else if (pack) { /* the code qs_quant_fq rounded to */
                    float qi = rintf((float)x / s) + z;
                    qi = qi < qlo ? qlo : qi > qhi ? qhi : qi;
                    pack_code(o, n_in, r, col, (int)(qi - qlo));
                }
                double d = U[(size_t)col * n_in + col];
                double e = (x - q) / d;
                total += e * e;
                const double *urow = U + (size_t)col * n_in + i1;
                for (int j = i + 1; j < cnt; j++) W1[j] -= e * urow[j];
                er[i] = e;
                qr[col] = q;
            }
        }
        /* the block's errors reach every later column at once */
        if (i2 < n_in)
            qs_blas_dgemm(0, 0, n_out, n_in - i2, cnt, -1.0, Err, cnt, U + (size_t)i1 * n_in + i2, n_in, 1.0,
                          W + i2, n_in);
    }
    if (loss) *loss = total / 2;
done:
    free(W);
    free(W1);
    free(Err);
    free(sc);
    free(glo);
    return st;
}

/* ---- layer by layer through a variant ---- */

static const qs_site hess_site[QS_N_HESS] = {QS_SITE_ATTN_IN, QS_SITE_ATTN_OUT, QS_SITE_MLP_IN, QS_SITE_MLP_MID};
const int qs_hess_of_linear[7] = {QS_HESS_IN, QS_HESS_IN, QS_HESS_IN, QS_HESS_OUT, QS_HESS_MLP, QS_HESS_MLP, QS_HESS_MID};

static void layer_inputs(const qs_layer *L, int in[QS_N_HESS]) {
    in[QS_HESS_IN] = L->q.n_in;
    in[QS_HESS_OUT] = L->o.n_in;
    in[QS_HESS_MLP] = L->up.n_in;
    in[QS_HESS_MID] = L->down.n_in;
}

qs_status qs_hess_new(const qs_variant *v, const char *who, qs_hess *h) {
    memset(h, 0, sizeof *h);
    h->who = who;
    int hw[QS_N_HESS] = {0};
    for (int l = 0; l < v->m->cfg.n_layers; l++) {
        int in[QS_N_HESS];
        layer_inputs(&v->w.layers[l], in);
        for (int k = 0; k < QS_N_HESS; k++) hw[k] = in[k] > hw[k] ? in[k] : hw[k];
    }
    for (int k = 0; k < QS_N_HESS; k++) {
        h->off[k + 1] = h->off[k] + (size_t)hw[k] * hw[k];
        h->widest = hw[k] > h->widest ? hw[k] : h->widest;
    }
    h->store = calloc(h->off[QS_N_HESS], sizeof(double));
    h->work = malloc((size_t)h->widest * h->widest * sizeof(double));
    h->buf = malloc((size_t)QS_XTX_ROWS * h->widest * sizeof(double));
    if (!h->store || !h->work || !h->buf) {
        qs_hess_free(h);
        return qs_fail(QS_ENOMEM, "%s: out of memory for the Hessians", who);
    }
    return QS_OK;
}

void qs_hess_layer(qs_hess *h, const qs_layer *L, int layer) {
    h->layer = layer;
    layer_inputs(L, h->dim);
    for (int k = 0; k < QS_N_HESS; k++) {
        h->H[k] = h->store + h->off[k];
        memset(h->H[k], 0, (size_t)h->dim[k] * h->dim[k] * sizeof(double));
    }
}

void qs_hess_observe(qs_hess *h, int layer, qs_site site, const float *x, int n, int dim) {
    if (layer != h->layer || h->err || !h->store) return;
    for (int k = 0; k < QS_N_HESS; k++) {
        if (site != hess_site[k]) continue;
        if (dim != h->dim[k]) {
            h->err = qs_fail(QS_ESHAPE, "%s: layer %d %s has width %d, its linear reads %d", h->who, layer,
                             qs_site_name(site), dim, h->dim[k]);
            return;
        }
        qs_xtx_add(h->H[k], x, n, dim, h->buf);
    }
}

void qs_hess_free(qs_hess *h) {
    free(h->store);
    free(h->work);
    free(h->buf);
    h->store = h->work = h->buf = NULL;
}

static void observe_hess(void *ud, int layer, qs_site site, const float *x, int n, int dim, int pos0) {
    (void)pos0;
    qs_hess_observe(ud, layer, site, x, n, dim);
}

/* The embedding output of every calibration window, rows of X. */
typedef struct {
    float *X;
    int d, ctx;
    long row;
} embed_obs;

static void observe_embed(void *ud, int layer, qs_site site, const float *x, int n, int dim, int pos0) {
    (void)layer;
    embed_obs *o = ud;
    if (site != QS_SITE_EMBED) return;
    memcpy(o->X + ((size_t)o->row * o->ctx + pos0) * o->d, x, (size_t)n * dim * sizeof(float));
}

qs_status qs_gptq_calib_inputs(qs_variant *v, float *X) {
    const qs_calib *cal = v->calib;
    qs_exec x = v->exec;
    x.stop_layer = 1;
    qs_ctx *c;
    qs_status st = qs_ctx_new(v->m, &x, cal->ctx, &c);
    if (st) return st;
    embed_obs eo = {.X = X, .d = v->w.d_embed ? v->w.d_embed : v->m->cfg.d_model, .ctx = cal->ctx};
    qs_ctx_observe(c, observe_embed, &eo);
    for (int r = 0; r < cal->n_rows && !st; r++, eo.row++) {
        qs_ctx_reset(c);
        st = qs_forward(c, cal->ids + (size_t)r * cal->ctx, cal->ctx, NULL, QS_LOGITS_NONE);
    }
    qs_ctx_free(c);
    return st;
}

static qs_status gptq_linear(qs_variant *v, qs_linear *l, const double *Hsum, double *Hw, long windows,
                             const qs_gptq_opts *o, int layer, const char *name) {
    if (!qs_linear_readable(l)) return QS_OK;
    int n = l->n_in;
    /* H = 2/N sum over windows of X^T X, the GPTQ code's scale (it does not change the result) */
    double f = 2.0 / (double)windows;
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) Hw[(size_t)i * n + j] = Hw[(size_t)j * n + i] = f * Hsum[(size_t)i * n + j];
    /* kept packed (codes, a scale and offset per group) when the groups are
     * the row or a power of two dividing it, else as fp32 values */
    int g = o->group >= n ? 0 : o->group, lg = 0;
    while (g > 0 && (1 << lg) < g) lg++;
    uint32_t ktype = o->grid == QS_GRID_Q4_K ? QS_WT_Q4_K : o->grid == QS_GRID_Q6_K ? QS_WT_Q6_K : 0;
    int packable = ktype                       ? n % 256 == 0
                   : o->grid == QS_GRID_STD ? g == 0 || (g >= 8 && (1 << lg) == g && n % g == 0)
                                            : o->grid == QS_GRID_GGML && g == 32 && n % 32 == 0;
    if (ktype && !packable)
        return qs_fail(QS_EARG, "%s: grid=%s needs rows of whole super-blocks of 256; layer %d %s has %d inputs",
                       v->spec.text, ktype == QS_WT_Q4_K ? "q4_k" : "q6_k", layer, name, n);
    if (o->grid == QS_GRID_GGML && !packable)
        return qs_fail(QS_EARG, "%s: grid=ggml needs rows of whole blocks of 32; layer %d %s has %d inputs", v->spec.text,
                       layer, name, n);
    uint32_t type = ktype                      ? ktype
                    : o->grid == QS_GRID_GGML ? qs_ggml_type_of(o->bits, o->sym)
                                              : qs_wt_qg(o->bits, g ? lg : 0);
    size_t pbytes = packable ? qs_wtype_row_bytes(type, n) * (size_t)l->n_out : 0;
    void *packed = packable ? qs_variant_floats(v, (pbytes + 3) / 4) : NULL;
    float *q = packable ? malloc((size_t)l->n_out * n * sizeof *q + 1) : qs_variant_floats(v, (size_t)l->n_out * n);
    if (!q || (packable && !packed)) {
        if (packable) free(q);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    float *tmp;
    const float *src = qs_linear_f32(l, &tmp);
    if (!src) {
        if (packable) free(q);
        return qs_fail_prefix(QS_ENOMEM, "%s: layer %d %s", v->spec.text, layer, name);
    }
    memcpy(q, src, (size_t)l->n_out * n * sizeof(float));
    free(tmp);
    qs_gptq_opts po = *o;
    po.pack = packed;
    po.pack_lg = g ? lg : 0;
    qs_status st = qs_gptq_quantize(q, l->n_out, n, Hw, &po, NULL);
    if (st) {
        if (packable) free(q);
        return qs_fail_prefix(st, "%s: layer %d %s", v->spec.text, layer, name);
    }
    if (packable) {
        free(q);
        l->w = NULL;
        l->wq = packed;
        l->wtype = type;
    } else {
        qs_linear_set_f32(l, q);
    }
    l->bits = o->bits;
    l->group = ktype ? (ktype == QS_WT_Q4_K ? 32 : 16) : o->group >= n ? 0 : o->group;
    l->asym = !o->sym;
    return QS_OK;
}

qs_status qs_gptq_variant(qs_variant *v, const qs_step *s) {
    const qs_model *m = v->m;
    const qs_config *c = &m->cfg;
    const qs_calib *cal = v->calib;
    if (!cal || cal->n_rows < 1)
        return qs_fail(QS_EARG, "%s: GPTQ needs calibration data (give --calib FILE or --calib-ids FILE)", v->spec.text);
    for (int l = 0; l < c->n_layers; l++) {
        if (qs_variant_layer_has_kernel(v, l))
            return qs_fail(QS_EARG, "%s: layer %d's weights are already int8; put GPTQ before int8 in the chain",
                           v->spec.text, l);
    }
    /* residual widths: the layer inputs kept for every window */
    int dmax = v->w.d_embed ? v->w.d_embed : c->d_model;
    for (int l = 0; l < c->n_layers; l++) {
        const qs_layer *L = &v->w.layers[l];
        int res[3] = {L->attn_norm.dim, L->o.n_out, L->down.n_out};
        for (int k = 0; k < 3; k++) dmax = res[k] > dmax ? res[k] : dmax;
    }
    size_t ntok = (size_t)cal->n_rows * cal->ctx;
    float *X = malloc(ntok * dmax * sizeof(float)), *Y = malloc(ntok * dmax * sizeof(float));
    qs_hess hs;
    qs_ctx *ctx = NULL;
    qs_status st = qs_hess_new(v, "GPTQ", &hs);
    if (st) goto done;
    if (!X || !Y) {
        st = qs_fail(QS_ENOMEM, "%s: out of memory for GPTQ over %zu calibration tokens", v->spec.text, ntok);
        goto done;
    }
    if ((st = qs_gptq_calib_inputs(v, X))) goto done;
    qs_exec x = v->exec;
    x.stop_layer = 0;
    if ((st = qs_ctx_new(m, &x, cal->ctx, &ctx))) goto done;

    qs_gptq_opts o = qs_gptq_defaults();
    o.bits = s->w_bits;
    o.group = s->w_group;
    o.sym = s->w_sym;
    o.grid = (qs_grid)s->w_grid;
    long done_n = 0, total = 2L * c->n_layers;
    for (int l = 0; l < c->n_layers && !st; l++) {
        qs_layer *L = &v->w.layers[l];
        int din = L->attn_norm.dim, dout = L->down.n_out;
        qs_hess_layer(&hs, L, l);
        /* pass 1: the layer as it is, inputs from the quantized layers before */
        qs_ctx_observe(ctx, observe_hess, &hs);
        for (int r = 0; r < cal->n_rows && !st && !hs.err; r++) {
            qs_ctx_reset(ctx);
            st = qs_forward_blocks(ctx, l, l + 1, X + (size_t)r * cal->ctx * din, cal->ctx, Y + (size_t)r * cal->ctx * dout);
        }
        qs_ctx_observe(ctx, NULL, NULL);
        if (!st) st = hs.err;
        if (!st && v->progress && v->progress(v->progress_ud, ++done_n, total))
            st = qs_fail(QS_ECANCEL, "%s: cancelled in GPTQ of layer %d", v->spec.text, l);
        if (st) break;
        qs_linear *lin[7] = {&L->q, &L->k, &L->v, &L->o, &L->up, &L->gate, &L->down};
        static const char *const names[7] = {"q", "k", "v", "o", "up", "gate", "down"};
        for (int k = 0; k < 7 && !st; k++)
            st = gptq_linear(v, lin[k], hs.H[qs_hess_of_linear[k]], hs.work, cal->n_rows, &o, l, names[k]);
        if (st || l == c->n_layers - 1) break;
        /* pass 2: the quantized layer gives the next layer's inputs */
        for (int r = 0; r < cal->n_rows && !st; r++) {
            qs_ctx_reset(ctx);
            st = qs_forward_blocks(ctx, l, l + 1, X + (size_t)r * cal->ctx * din, cal->ctx, Y + (size_t)r * cal->ctx * dout);
        }
        if (!st && v->progress && v->progress(v->progress_ud, ++done_n, total))
            st = qs_fail(QS_ECANCEL, "%s: cancelled in GPTQ of layer %d", v->spec.text, l);
        float *t = X;
        X = Y;
        Y = t;
    }
done:
    qs_ctx_free(ctx);
    free(X);
    free(Y);
    qs_hess_free(&hs);
    return st;
}
