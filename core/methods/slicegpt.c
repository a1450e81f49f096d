/* SliceGPT (Ashkboos et al. 2024): delete rows and columns of every weight
 * after rotating the residual stream into its principal axes, as the
 * paper's code does it (rotate_and_slice_sequential).
 *
 *     qs_variant_opts o = {.calib = &cal};          // 64 windows of 512 in the paper's setup
 *     qs_variant_new(m, "slice:ratio=0.25", &o, &v);
 *
 * 1. Fusion. The network becomes RMSNorm-connected: for LayerNorm models the
 *    embeddings and every linear that writes the residual (o, down) have
 *    their mean over the output dimension removed, so the residual stays
 *    zero-mean and LayerNorm reduces to RMSNorm; every norm's gain scales
 *    the input columns of the linears it feeds and its bias becomes theirs
 *    (the final norm's into a bias of an untied copy of the head). The norms
 *    keep no weights and divide by the original width D even after slicing.
 * 2. Rotation. Per layer, PCA of the residual signal (uncentred X^T X in
 *    float64 over all calibration tokens, 0.01 mean(diag) added to the
 *    diagonal, eigenvalues descending) gives an orthogonal Q; the weights
 *    reading the residual are multiplied by Q, those writing it by Q^T, and
 *    the residual path gets the shortcut Q_a^T Q_b where two bases meet.
 *    Keeping the first d = floor((1 - ratio) D / round) round columns of
 *    every Q deletes the rest. The order is the reference's: the embeddings
 *    by the first layer's input PCA; then per layer: attention inputs,
 *    PCA of the signal entering the MLP norm (from the layer with its
 *    attention inputs already sliced), attention output and shortcut, MLP
 *    inputs, PCA of the layer's output, MLP output and shortcut; the head
 *    last. The calibration inputs of each layer are the outputs of the
 *    layers transformed before it.
 *
 * It works layer by layer: a layer is fused, rotated and sliced in fp32
 * scratch, then kept in the model's type (bf16 in, bf16 out: F16/BF16
 * matrices stay 2-byte, others fp32), so the peak is the kept result plus
 * one layer in fp32 and the calibration activations. The reference code
 * keeps the weights in the model's dtype between steps as well. For fp32
 * models each product is formed in float64 from the fp32 values and rounded
 * once; for 2-byte models in fp32 (sgemm), whose rounding error is far
 * below the type's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "methods/methods_impl.h"

/* ---- small helpers ---- */

static float *floats(qs_variant *v, size_t n) {
    float *p = qs_variant_floats(v, n);
    if (!p) qs_fail(QS_ENOMEM, "%s: out of memory for %zu weights", v->spec.text, n);
    return p;
}

/* Buffers of the layer in work: fp32 matrices between fusion and the moment
 * they are kept. */
typedef struct {
    void *p[16];
    int n;
} scratch;

/* n floats from the scratch s, or from the variant's store when s is NULL */
static float *buf(qs_variant *v, scratch *s, size_t n) {
    if (!s) return floats(v, n);
    float *p = s->n < (int)(sizeof s->p / sizeof *s->p) ? malloc(n * sizeof *p) : NULL;
    if (!p) {
        qs_fail(QS_ENOMEM, "%s: out of memory for %zu weights of the layer in work", v->spec.text, n);
        return NULL;
    }
    s->p[s->n++] = p;
    return p;
}

static void scratch_free(scratch *s) {
    for (int i = 0; i < s->n; i++) free(s->p[i]);
    s->n = 0;
}

/* The type the results are kept in: the model's matrices' F16/BF16, else
 * fp32 (always with dtype=f32). */
static uint32_t kept_type(const qs_model *m, const qs_step *s) {
    const qs_linear *q = &m->w.layers[0].q;
    if (s->slice_f32) return QS_WT_F32;
    return !q->w && (q->wtype == QS_WT_F16 || q->wtype == QS_WT_BF16) ? q->wtype : QS_WT_F32;
}

/* n fp32 values into the variant's store in type t (F32, F16 or BF16). */
static const void *keep_values(qs_variant *v, const float *src, size_t n, uint32_t t) {
    if (t == QS_WT_F32) {
        float *dst = floats(v, n);
        if (dst) memcpy(dst, src, n * sizeof *dst);
        return dst;
    }
    uint16_t *dst = (void *)floats(v, (n + 1) / 2);
    if (dst)
        for (size_t i = 0; i < n; i++) dst[i] = t == QS_WT_F16 ? qs_f32_to_f16(src[i]) : qs_f32_to_bf16(src[i]);
    return dst;
}

/* A finished linear (fp32 in scratch) into the store in type t. */
static qs_status keep(qs_variant *v, qs_linear *l, uint32_t t) {
    if (!l->w) return QS_OK;
    const void *q = keep_values(v, l->w, (size_t)l->n_out * l->n_in, t);
    if (!q) return QS_ENOMEM;
    if (t == QS_WT_F32) {
        qs_linear_set_f32(l, q);
    } else {
        l->w = NULL;
        l->wq = q;
        l->wtype = t;
    }
    return QS_OK;
}

/* Tensors this file rewrites in place were made owned by fusion (see
 * make_owned): they are never the model's mapped memory. */
static float *mut(const float *p) { return (float *)p; }

static int norm_kind(const qs_model *m, const qs_norm *nm) { return nm->kind ? nm->kind : (int)m->cfg.norm; }

/* A weightless RMS norm over `dim` channels that divides by the original width. */
static qs_norm rms_norm(int dim, int D) { return (qs_norm){.dim = dim, .kind = QS_NORM_RMS, .div = D}; }

/* ---- 1. fusion ---- */

/* W' = W diag(g), b' = b + W beta (W as it was), always into an owned
 * buffer (the rotation rewrites it in place). A norm without bias leaves the
 * linear's bias as it is: the reference adds one only where the norm has one. */
static qs_status fold_norm(qs_variant *v, const qs_norm *nm, qs_linear *l, scratch *sc) {
    if (!qs_linear_readable(l)) return QS_OK;
    int no = l->n_out, ni = l->n_in;
    float *w = buf(v, sc, (size_t)no * ni), *tmp;
    if (!w) return QS_ENOMEM;
    float *b = NULL;
    if (nm->b && !(b = floats(v, (size_t)no))) return QS_ENOMEM;
    const float *all = qs_linear_f32(l, &tmp);
    if (!all) return QS_ENOMEM;
    for (int i = 0; i < no; i++) {
        const float *src = all + (size_t)i * ni;
        float *dst = w + (size_t)i * ni;
        double acc = l->b ? l->b[i] : 0.0;
        for (int j = 0; j < ni; j++) {
            dst[j] = nm->w ? (float)((double)src[j] * nm->w[j]) : src[j];
            if (b) acc += (double)src[j] * nm->b[j];
        }
        if (b) b[i] = (float)acc;
    }
    free(tmp);
    qs_linear_set_f32(l, w);
    if (b) l->b = b;
    return QS_OK;
}

/* W' = W - mean over the output dimension, b' = b - mean(b): the linear
 * then writes a zero-mean vector, which is what the next LayerNorm would
 * have subtracted. bake_mean 0: just an owned copy (RMSNorm models), for
 * the rotation to rewrite in place. */
static qs_status make_owned(qs_variant *v, qs_linear *l, int bake_mean, scratch *sc) {
    if (!qs_linear_readable(l)) return QS_OK;
    int no = l->n_out, ni = l->n_in;
    float *w = buf(v, sc, (size_t)no * ni), *tmp;
    float *b = l->b ? floats(v, (size_t)no) : NULL;
    if (!w || (l->b && !b)) return QS_ENOMEM;
    double *mean = calloc((size_t)ni, sizeof *mean);
    if (!mean) return qs_fail(QS_ENOMEM, "out of memory");
    const float *src = qs_linear_f32(l, &tmp);
    if (!src) {
        free(mean);
        return QS_ENOMEM;
    }
    if (bake_mean)
        for (int i = 0; i < no; i++)
            for (int j = 0; j < ni; j++) mean[j] += src[(size_t)i * ni + j];
    for (int j = 0; j < ni; j++) mean[j] /= no;
    for (int i = 0; i < no; i++)
        for (int j = 0; j < ni; j++) w[(size_t)i * ni + j] = (float)(src[(size_t)i * ni + j] - mean[j]);
    free(tmp);
    if (b) {
        double bm = 0;
        if (bake_mean) {
            for (int i = 0; i < no; i++) bm += l->b[i];
            bm /= no;
        }
        for (int i = 0; i < no; i++) b[i] = (float)(l->b[i] - bm);
    }
    free(mean);
    qs_linear_set_f32(l, w);
    l->b = b;
    return QS_OK;
}

/* the rows of src (fp32, or q of type when src is NULL) less their means
 * when center, into dst; *t = dst */
static qs_status center_rows(const float *src, const void *q, uint32_t type, long rows, int D, int center,
                             float *dst, const float **t) {
    float *row = src ? NULL : malloc((size_t)D * sizeof *row);
    if (!src && !row) return qs_fail(QS_ENOMEM, "out of memory");
    for (long r = 0; r < rows; r++) {
        const float *s = src ? src + (size_t)r * D : row;
        if (!src) qs_wrows_f32(type, q, D, (int)r, 1, row);
        double mu = 0;
        if (center) {
            for (int j = 0; j < D; j++) mu += s[j];
            mu /= D;
        }
        for (int j = 0; j < D; j++) dst[(size_t)r * D + j] = (float)(s[j] - mu);
    }
    free(row);
    *t = dst;
    return QS_OK;
}

/* An owned copy of a table of rows (rows, D), each row's mean removed when asked. */
static qs_status own_rows(qs_variant *v, const float **t, long rows, int D, int center, scratch *sc) {
    if (!*t) return QS_OK;
    float *dst = buf(v, sc, (size_t)rows * D);
    if (!dst) return QS_ENOMEM;
    return center_rows(*t, NULL, 0, rows, D, center, dst, t);
}

static qs_status check_fresh(const qs_variant *v) {
    const qs_config *c = &v->m->cfg;
    if (v->modified || v->aq)
        return qs_fail(QS_EARG, "%s: slice rebuilds the model's own weights; put it first in the chain",
                       v->spec.text);
    for (int l = 0; l < c->n_layers; l++) {
        const qs_layer *L = &v->w.layers[l];
        if (L->attn_skip.w || L->mlp_skip.w || L->attn_norm.perm || L->mlp_norm.perm)
            return qs_fail(QS_EARG, "%s: layer %d is already sliced or reordered", v->spec.text, l);
    }
    return QS_OK;
}

/* The final norm into the head: an untied fp32 copy (vocab, D). */
static qs_status fuse_head(qs_variant *v, scratch *sc) {
    qs_linear head = v->w.head;
    qs_status st = fold_norm(v, &v->w.final_norm, &head, sc);
    if (st) return st;
    v->w.head = head;
    v->w.final_norm = rms_norm(v->m->cfg.d_model, v->m->cfg.d_model);
    return QS_OK;
}

/* The token and position embeddings as owned fp32 rows, centred for LayerNorm models. */
static qs_status fuse_embed(qs_variant *v, scratch *sc) {
    const qs_model *m = v->m;
    const qs_config *c = &m->cfg;
    qs_weights *w = &v->w;
    int D = c->d_model, layernorm = norm_kind(m, &m->w.final_norm) == QS_NORM_LAYER;
    qs_status st;
    long pos_rows = (long)c->max_pos + c->pos_offset;
    if (w->embed_q) { /* an owned fp32 embedding, decoded from the stored rows */
        float *dst = buf(v, sc, (size_t)c->vocab * D);
        if (!dst) return QS_ENOMEM;
        if ((st = center_rows(NULL, w->embed_q, w->embed_type, c->vocab, D, layernorm, dst, &w->tok_embed))) return st;
        w->embed_q = NULL;
    } else if ((st = own_rows(v, &w->tok_embed, c->vocab, D, layernorm, sc))) {
        return st;
    }
    if ((st = own_rows(v, &w->pos_embed, pos_rows, D, layernorm, NULL))) return st;
    w->d_embed = D;
    v->modified = 1;
    return QS_OK;
}

/* Layer l's norms into the linears they feed; o and down made owned (their
 * output mean removed for LayerNorm models). */
static qs_status fuse_layer(qs_variant *v, int l, scratch *sc) {
    const qs_model *m = v->m;
    int D = m->cfg.d_model, layernorm = norm_kind(m, &m->w.final_norm) == QS_NORM_LAYER;
    qs_layer *L = &v->w.layers[l];
    int ln1 = norm_kind(m, &L->attn_norm) == QS_NORM_LAYER, ln2 = norm_kind(m, &L->mlp_norm) == QS_NORM_LAYER;
    if (ln1 != layernorm || ln2 != layernorm)
        return qs_fail(QS_EUNSUPPORTED, "%s: layer %d mixes LayerNorm and RMSNorm", v->spec.text, l);
    qs_status st;
    if ((st = fold_norm(v, &L->attn_norm, &L->q, sc)) || (st = fold_norm(v, &L->attn_norm, &L->k, sc)) ||
        (st = fold_norm(v, &L->attn_norm, &L->v, sc)) || (st = fold_norm(v, &L->mlp_norm, &L->up, sc)) ||
        (st = fold_norm(v, &L->mlp_norm, &L->gate, sc)) || (st = make_owned(v, &L->o, layernorm, sc)) ||
        (st = make_owned(v, &L->down, layernorm, sc)))
        return st;
    L->attn_norm = rms_norm(D, D);
    L->mlp_norm = rms_norm(D, D);
    return QS_OK;
}

/* The whole model fused at once into the store (the rotation instead fuses
 * each layer when it reaches it). The head first, from the embedding as it
 * was when tied. */
qs_status qs_slice_fuse(qs_variant *v) {
    qs_status st = check_fresh(v);
    if (st || (st = fuse_head(v, NULL)) || (st = fuse_embed(v, NULL))) return st;
    for (int l = 0; l < v->m->cfg.n_layers; l++)
        if ((st = fuse_layer(v, l, NULL))) return st;
    return QS_OK;
}

/* ---- 2. rotation ---- */

/* rows (n, D) of t become (n, d) = t Q[:, :d], in place (row blocks: a
 * block's output never reaches rows not yet read). Qf: Q in fp32 for an
 * fp32 product; NULL: float64. */
static qs_status rotate_in(float *t, long n, int D, const double *Q, const float *Qf, int d) {
    enum { RB = 256 };
    size_t es = Qf ? sizeof(float) : sizeof(double);
    double *a = Qf ? NULL : malloc((size_t)RB * D * es), *r = malloc((size_t)RB * d * es);
    if ((!Qf && !a) || !r) {
        free(a);
        free(r);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    for (long r0 = 0; r0 < n; r0 += RB) {
        int nr = n - r0 < RB ? (int)(n - r0) : RB;
        if (Qf) {
            qs_blas_gemm_nn(nr, d, D, 1.0f, t + (size_t)r0 * D, D, Qf, D, 0.0f, (float *)r, d);
            memcpy(t + (size_t)r0 * d, r, (size_t)nr * d * sizeof(float));
            continue;
        }
        for (size_t i = 0; i < (size_t)nr * D; i++) a[i] = t[(size_t)r0 * D + i];
        qs_blas_dgemm(0, 0, nr, d, D, 1.0, a, D, Q, D, 0.0, r, d);
        for (size_t i = 0; i < (size_t)nr * d; i++) t[(size_t)r0 * d + i] = (float)r[i];
    }
    free(a);
    free(r);
    return QS_OK;
}

static qs_status rotate_linear_in(qs_linear *l, int D, const double *Q, const float *Qf, int d) {
    if (!l->w) return QS_OK;
    qs_status st = rotate_in(mut(l->w), l->n_out, D, Q, Qf, d);
    l->n_in = d;
    return st;
}

/* A writer of the residual: w (D, n_in) and b (D) become Q[:, :d]^T w and
 * Q[:, :d]^T b, in place. */
static qs_status rotate_linear_out(qs_linear *l, int D, const double *Q, const float *Qf, int d) {
    int ni = l->n_in;
    float *w = mut(l->w);
    double *a = malloc((Qf ? (size_t)D : (size_t)D * ni) * sizeof *a);
    void *r = malloc((size_t)d * ni * (Qf ? sizeof(float) : sizeof(double)));
    if (!a || !r) {
        free(a);
        free(r);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    if (Qf) {
        qs_blas_gemm_tn(d, ni, D, 1.0f, Qf, D, w, ni, 0.0f, r, ni);
        memcpy(w, r, (size_t)d * ni * sizeof(float));
    } else {
        for (size_t i = 0; i < (size_t)D * ni; i++) a[i] = w[i];
        qs_blas_dgemm(1, 0, d, ni, D, 1.0, Q, D, a, ni, 0.0, r, ni);
        for (size_t i = 0; i < (size_t)d * ni; i++) w[i] = (float)((double *)r)[i];
    }
    if (l->b) {
        float *b = mut(l->b);
        double *bb = a; /* reuse: D values */
        for (int i = 0; i < D; i++) bb[i] = l->b[i];
        for (int i = 0; i < d; i++) {
            double s = 0;
            for (int k = 0; k < D; k++) s += Q[(size_t)k * D + i] * bb[k];
            b[i] = (float)s;
        }
    }
    l->n_out = d;
    free(a);
    free(r);
    return QS_OK;
}

/* The residual-path matrix from basis A (its first da axes) to basis B (its
 * first db axes): A[:, :da]^T B[:, :db], stored as a linear (db, da) in the
 * buffer `unrotate` gave l (D x da, so it fits). A and B are the fp32
 * roundings of the two Q: the reference keeps shortcuts in the model's dtype. */
static qs_status shortcut(qs_linear *l, const double *A, int da, const double *B, int db, int D) {
    double *r = malloc((size_t)db * da * sizeof *r);
    if (!r) return qs_fail(QS_ENOMEM, "out of memory");
    qs_blas_dgemm(1, 0, db, da, D, 1.0, B, D, A, D, 0.0, r, da);
    float *w = mut(l->w);
    for (size_t i = 0; i < (size_t)db * da; i++) w[i] = (float)r[i];
    free(r);
    l->n_out = db;
    l->n_in = da;
    return QS_OK;
}

/* A residual-path matrix leaving basis A (first da axes) for the unrotated
 * residual: A[:, :da]^T as a linear (D, da), fp32 as in the reference. */
static qs_status unrotate(qs_variant *v, qs_linear *l, const double *A32, int da, int D, scratch *sc) {
    float *w = buf(v, sc, (size_t)D * da);
    if (!w) return QS_ENOMEM;
    for (int o = 0; o < D; o++)
        for (int i = 0; i < da; i++) w[(size_t)o * da + i] = (float)A32[(size_t)o * D + i];
    *l = (qs_linear){.n_out = D, .n_in = da, .w = w};
    return QS_OK;
}


/* H (upper triangle accumulated) -> Q in place (columns: principal axes,
 * eigenvalues descending in ev); Q32 gets Q rounded to fp32. */
static qs_status pca(double *H, int D, double *ev, double *Q32) {
    qs_blas_symmetrize(D, H);
    double tr = 0;
    for (int i = 0; i < D; i++) tr += H[(size_t)i * D + i];
    double damp = 0.01 * tr / D;
    for (int i = 0; i < D; i++) H[(size_t)i * D + i] += damp;
    qs_status st = qs_lapack_eigh_desc(D, H, ev);
    if (st) return st;
    for (size_t i = 0; i < (size_t)D * D; i++) Q32[i] = (float)H[i];
    return QS_OK;
}

/* PCA from n < D rows x (n, D): H = X^T X + damp I has rank n above the
 * damping, so its eigenvectors are the n right singular vectors of X (from
 * the n x n Gram matrix X X^T) and any orthonormal completion, all with the
 * eigenvalue damp; a QR completes them. Q (D, D), ev (D), Q32 as pca's. */
static qs_status pca_low_rank(const float *x, long n, int D, double *Q, double *ev, double *Q32) {
    double *xd = malloc((size_t)n * D * sizeof *xd), *g = malloc((size_t)n * n * sizeof *g),
           *s2 = malloc((size_t)n * sizeof *s2);
    qs_status st = QS_OK;
    if (!xd || !g || !s2) {
        st = qs_fail(QS_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < (size_t)n * D; i++) xd[i] = x[i];
    qs_blas_dgemm(0, 1, (int)n, (int)n, D, 1.0, xd, D, xd, D, 0.0, g, (int)n);
    double tr = 0;
    for (long i = 0; i < n; i++) tr += g[(size_t)i * n + i];
    double damp = 0.01 * tr / D;
    if ((st = qs_lapack_eigh_desc((int)n, g, s2))) goto done;
    int r = 0;
    while (r < n && s2[r] > 1e-10 * s2[0] && s2[r] > 0) r++;
    memset(Q, 0, (size_t)D * D * sizeof *Q);
    if (r == 0) { /* no signal: every direction is as good */
        for (int i = 0; i < D; i++) Q[(size_t)i * D + i] = 1;
    } else { /* u_i = X^T v_i / sigma_i in the first r columns */
        qs_blas_dgemm(1, 0, D, r, (int)n, 1.0, xd, D, g, (int)n, 0.0, Q, D);
        for (int i = 0; i < r; i++) {
            double inv = 1.0 / sqrt(s2[i]);
            for (int row = 0; row < D; row++) Q[(size_t)row * D + i] *= inv;
        }
        if ((st = qs_lapack_orth_complete(D, r, Q))) goto done;
    }
    for (int i = 0; i < D; i++) ev[i] = (i < r ? s2[i] : 0) + damp;
    for (size_t i = 0; i < (size_t)D * D; i++) Q32[i] = (float)Q[i];
done:
    free(xd);
    free(g);
    free(s2);
    return st;
}

typedef struct {
    int layer;
    int D;
    double *H;    /* accumulated X^T X; NULL: rows kept instead */
    float *rows;  /* (ntok, D) the rows, when H is NULL */
    long n;       /* rows kept */
    qs_status err;
} mid_obs;

/* The signal entering the MLP's norm for one layer: its X^T X accumulated,
 * or the rows kept (fewer calibration tokens than the width). */
static void observe_mid(void *ud, int layer, qs_site site, const float *x, int n, int dim, int pos0) {
    (void)pos0;
    mid_obs *o = ud;
    if (layer != o->layer || site != QS_SITE_RESID_MID || o->err) return;
    if (dim != o->D) {
        o->err = qs_fail(QS_ESHAPE, "slice: layer %d's residual has width %d, expected %d", layer, dim, o->D);
        return;
    }
    if (o->H) {
        o->err = qs_xtx_add(o->H, x, n, dim, NULL);
        return;
    }
    memcpy(o->rows + (size_t)o->n * dim, x, (size_t)n * dim * sizeof *x);
    o->n += n;
}

typedef struct {
    qs_variant *v;
    const qs_calib *cal;
    int D, L;
    long ntok;
    qs_ctx *c;
    float *X;    /* (ntok, D) inputs of the current layer in its (sliced) basis */
    float *out;  /* (ntok, D) outputs of the current layer, unrotated */
    float *junk; /* (ctx, D) */
    float *M;    /* (ntok, D) the MLP's inputs, when ntok < D (see pca_low_rank) */
    double *H;   /* (D, D) covariance, then Q */
    double *Qp, *Qm, *Qp32, *Qm32, *ev;
    float *Qf;   /* (D, D) Qp in fp32: the next layer's inputs, and fp32 products */
    float *Qmf;  /* (D, D) Qm in fp32 */
    uint32_t kept; /* the type results are kept in (kept_type) */
    scratch layer; /* the layer in work */
    scratch whole; /* the embedding and the head until kept */
    long done, total;
} job;

/* Qf for the products when they are formed in fp32 (2-byte kept types), else NULL. */
static const float *fp32_q(const job *j, const float *Qf) { return j->kept == QS_WT_F32 ? NULL : Qf; }

static qs_status tick(job *j) {
    j->done++;
    if (j->v->progress && j->v->progress(j->v->progress_ud, j->done, j->total))
        return qs_fail(QS_ECANCEL, "%s: cancelled after %ld of %ld calibration passes", j->v->spec.text, j->done,
                       j->total);
    return QS_OK;
}

/* Block k over every calibration window, inputs X (width din); outputs to
 * out (width D) or discarded. */
static qs_status run_block(job *j, int k, int din, float *out) {
    const qs_calib *cal = j->cal;
    for (int r = 0; r < cal->n_rows; r++) {
        qs_ctx_reset(j->c);
        float *y = out ? out + (size_t)r * cal->ctx * j->D : j->junk;
        qs_status st = qs_forward_blocks(j->c, k, k + 1, j->X + (size_t)r * cal->ctx * din, cal->ctx, y);
        if (st) return st;
    }
    return tick(j);
}

/* The PCA of the rows x (ntok, D) into Q, j->ev and Q32: of their X^T X
 * (pca), or from the rows themselves when there are fewer than D. */
static qs_status pca_rows(job *j, const float *x, double *Q, double *Q32) {
    int D = j->D;
    if (j->M) return pca_low_rank(x, j->ntok, D, Q, j->ev, Q32);
    memset(j->H, 0, (size_t)D * D * sizeof(double));
    qs_status st = qs_xtx_add(j->H, x, j->ntok, D, NULL);
    if (st || (st = pca(j->H, D, j->ev, Q32))) return st;
    memcpy(Q, j->H, (size_t)D * D * sizeof(double));
    return QS_OK;
}

static qs_status rotate_slice(job *j, int d, int slice_head) {
    qs_variant *v = j->v;
    const qs_model *m = v->m;
    const qs_config *c = &m->cfg;
    qs_weights *w = &v->w;
    int D = j->D, L = j->L, ctx = j->cal->ctx;
    qs_status st;

    /* the first layer's inputs: the fused embeddings, as the pass forms them */
    for (int r = 0; r < j->cal->n_rows; r++)
        for (int i = 0; i < ctx; i++) {
            float *x = j->out + ((size_t)r * ctx + i) * D;
            const float *te = w->tok_embed + (size_t)j->cal->ids[(size_t)r * ctx + i] * D;
            const float *pe = w->pos_embed ? w->pos_embed + (size_t)(i + c->pos_offset) * D : NULL;
            for (int t = 0; t < D; t++) x[t] = pe ? te[t] + pe[t] : te[t];
        }
    if ((st = pca_rows(j, j->out, j->Qp, j->Qp32))) return st;
    for (size_t i = 0; i < (size_t)D * D; i++) j->Qf[i] = (float)j->Qp[i];
    double *ev_in = malloc((size_t)D * sizeof(double));
    if (!ev_in) return qs_fail(QS_ENOMEM, "out of memory");
    memcpy(ev_in, j->ev, (size_t)D * sizeof(double));
    long pos_rows = (long)c->max_pos + c->pos_offset;
    if ((st = rotate_in(mut(w->tok_embed), c->vocab, D, j->Qp, fp32_q(j, j->Qf), d))) goto done;
    if (w->pos_embed && (st = rotate_in(mut(w->pos_embed), pos_rows, D, j->Qp, fp32_q(j, j->Qf), d))) goto done;
    w->d_embed = d;
    { /* the rotated embedding kept: as stored rows in a 2-byte type, or fp32 */
        const void *e = keep_values(v, w->tok_embed, (size_t)c->vocab * d, j->kept);
        if (!e) {
            st = QS_ENOMEM;
            goto done;
        }
        if (j->kept == QS_WT_F32) {
            w->tok_embed = e;
        } else {
            w->tok_embed = NULL;
            w->embed_q = e;
            w->embed_type = j->kept;
        }
        scratch_free(&j->whole);
    }

    int din = d;
    for (int k = 0; k < L; k++) {
        qs_layer *Lk = &w->layers[k];
        int dmid = d, dout = k == L - 1 && !slice_head ? D : d;
        if ((st = fuse_layer(v, k, &j->layer))) goto done;
        /* this layer's inputs in the basis just chosen (fp32, as the reference) */
        qs_blas_gemm_nn((int)j->ntok, din, D, 1.0f, j->out, D, j->Qf, D, 0.0f, j->X, din);

        /* attention inputs rotated, sliced and kept; the shortcut returns to
         * the unrotated residual until the next PCA is known */
        const float *qf = fp32_q(j, j->Qf);
        if ((st = rotate_linear_in(&Lk->q, D, j->Qp, qf, din)) || (st = rotate_linear_in(&Lk->k, D, j->Qp, qf, din)) ||
            (st = rotate_linear_in(&Lk->v, D, j->Qp, qf, din)) || (st = keep(v, &Lk->q, j->kept)) ||
            (st = keep(v, &Lk->k, j->kept)) || (st = keep(v, &Lk->v, j->kept)) ||
            (st = unrotate(v, &Lk->attn_skip, j->Qp32, din, D, &j->layer)))
            goto done;
        Lk->attn_norm = rms_norm(din, D);

        mid_obs mo = {.layer = k, .D = D, .H = j->M ? NULL : j->H, .rows = j->M};
        memset(j->H, 0, (size_t)D * D * sizeof(double));
        qs_ctx_observe(j->c, observe_mid, &mo);
        st = run_block(j, k, din, NULL);
        qs_ctx_observe(j->c, NULL, NULL);
        if (st || (st = mo.err)) goto done;
        if (j->M) {
            st = pca_low_rank(j->M, mo.n, D, j->Qm, j->ev, j->Qm32);
        } else if (!(st = pca(j->H, D, j->ev, j->Qm32))) {
            memcpy(j->Qm, j->H, (size_t)D * D * sizeof(double));
        }
        if (st) goto done;
        for (size_t i = 0; i < (size_t)D * D; i++) j->Qmf[i] = (float)j->Qm[i];
        const float *qmf = fp32_q(j, j->Qmf);
        if ((st = qs_variant_set_eig(v, k, 0, ev_in, D, din)) || (st = qs_variant_set_eig(v, k, 1, j->ev, D, dmid)))
            goto done;

        /* attention output, its shortcut, MLP inputs; the MLP shortcut
         * returns to the unrotated residual until the output PCA is known */
        if ((st = shortcut(&Lk->attn_skip, j->Qp32, din, j->Qm32, dmid, D)) ||
            (st = rotate_linear_out(&Lk->o, D, j->Qm, qmf, dmid)) ||
            (st = rotate_linear_in(&Lk->up, D, j->Qm, qmf, dmid)) ||
            (st = rotate_linear_in(&Lk->gate, D, j->Qm, qmf, dmid)) || (st = keep(v, &Lk->attn_skip, j->kept)) ||
            (st = keep(v, &Lk->o, j->kept)) || (st = keep(v, &Lk->up, j->kept)) ||
            (st = keep(v, &Lk->gate, j->kept)) || (st = unrotate(v, &Lk->mlp_skip, j->Qm32, dmid, D, &j->layer)))
            goto done;
        Lk->mlp_norm = rms_norm(dmid, D);

        if ((st = run_block(j, k, din, j->out)) || (st = pca_rows(j, j->out, j->Qp, j->Qp32))) goto done;
        for (size_t i = 0; i < (size_t)D * D; i++) j->Qf[i] = (float)j->Qp[i];
        memcpy(ev_in, j->ev, (size_t)D * sizeof(double));

        if ((st = shortcut(&Lk->mlp_skip, j->Qm32, dmid, j->Qp32, dout, D)) ||
            (st = rotate_linear_out(&Lk->down, D, j->Qp, fp32_q(j, j->Qf), dout)) ||
            (st = keep(v, &Lk->mlp_skip, j->kept)) || (st = keep(v, &Lk->down, j->kept)))
            goto done;
        scratch_free(&j->layer);
        din = dout;
    }
    /* the head reads the last basis; sliced only when asked */
    if ((st = fuse_head(v, &j->whole)) ||
        (st = rotate_linear_in(&w->head, D, j->Qp, fp32_q(j, j->Qf), slice_head ? d : D)) ||
        (st = keep(v, &w->head, j->kept)))
        goto done;
    w->final_norm = rms_norm(slice_head ? d : D, D);
done:
    free(ev_in);
    return st;
}

/* int((1 - ratio) D) rounded down to a multiple of `round`, with the ratio
 * read back as the decimal it was written as (0.1, not 0.1f). */
static int slice_width(float ratio, int D, int round) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)ratio);
    double s = strtod(buf, NULL);
    int d = (int)((1.0 - s) * D);
    return d - d % round;
}

qs_status qs_slice_apply(qs_variant *v, const qs_step *s) {
    const qs_model *m = v->m;
    const qs_config *c = &m->cfg;
    float ratio = s->ratio < 0 ? 0.25f : s->ratio;
    int D = c->d_model, round = s->round > 0 ? s->round : 1;
    int d = slice_width(ratio, D, round);
    if (d <= 0)
        return qs_fail(QS_EARG, "%s: ratio %g of width %d rounded to multiples of %d leaves nothing", v->spec.text,
                       (double)ratio, D, round);
    /* a chain it cannot stack on is the first thing to say */
    qs_status st = check_fresh(v);
    if (st) return st;
    const qs_layer *L0 = &m->w.layers[0];
    if (c->resid != QS_RESID_SEQ || L0->post_attn_norm.dim || L0->post_mlp_norm.dim || m->w.proj_in.w)
        return qs_fail(QS_EUNSUPPORTED,
                       "%s: SliceGPT rotates a residual stream that only pre-norms read; a %s model (%s%s) is "
                       "not of that form", v->spec.text, c->family,
                       c->resid != QS_RESID_SEQ ? qs_resid_str(c->resid) : "norms on the sublayer outputs",
                       c->resid != QS_RESID_SEQ ? " blocks" : "");
    if (!v->calib || v->calib->n_rows < 1)
        return qs_fail(QS_EARG, "%s needs calibration data (give --calib FILE or --calib-ids FILE)", v->spec.text);
    job j = {.v = v, .cal = v->calib, .D = D, .L = c->n_layers, .kept = kept_type(m, s)};
    if ((st = fuse_embed(v, &j.whole))) {
        scratch_free(&j.whole);
        return st;
    }
    j.ntok = (long)j.cal->n_rows * j.cal->ctx;
    j.total = 2L * c->n_layers;
    size_t dd = (size_t)D * D;
    j.X = malloc((size_t)j.ntok * D * sizeof(float));
    j.out = malloc((size_t)j.ntok * D * sizeof(float));
    j.junk = malloc((size_t)j.cal->ctx * D * sizeof(float));
    j.H = malloc(dd * sizeof(double));
    j.Qp = malloc(dd * sizeof(double));
    j.Qm = malloc(dd * sizeof(double));
    j.Qp32 = malloc(dd * sizeof(double));
    j.Qm32 = malloc(dd * sizeof(double));
    j.ev = malloc((size_t)D * sizeof(double));
    j.Qf = malloc(dd * sizeof(float));
    j.Qmf = malloc(dd * sizeof(float));
    if (j.ntok < D) j.M = malloc((size_t)j.ntok * D * sizeof(float));
    if (!j.X || !j.out || !j.junk || !j.H || !j.Qp || !j.Qm || !j.Qp32 || !j.Qm32 || !j.ev || !j.Qf || !j.Qmf || (j.ntok < D && !j.M))
        st = qs_fail(QS_ENOMEM, "%s: out of memory for %ld calibration tokens of width %d", v->spec.text, j.ntok, D);
    if (!st) st = qs_ctx_new(m, &v->exec, j.cal->ctx, &j.c);
    if (!st) st = rotate_slice(&j, d, s->slice_head);
    qs_ctx_free(j.c);
    free(j.X);
    free(j.out);
    free(j.junk);
    free(j.H);
    free(j.Qp);
    free(j.Qm);
    free(j.Qp32);
    free(j.Qm32);
    free(j.ev);
    free(j.Qf);
    free(j.Qmf);
    free(j.M);
    scratch_free(&j.layer);
    scratch_free(&j.whole);
    if (st) return st;
    qs_variant_note(v, "SliceGPT %g%%: width %d of %d%s, %.2fM params incl. shortcuts", 100.0 * ratio, d, D,
                    s->slice_head ? " (head sliced)" : "", qs_variant_params(v) / 1e6);
    return QS_OK;
}

/* ---- the record ---- */

static const int slice_dtype_values[2] = {0, 1};

static const qs_method_key slice_keys[] = {
    {"ratio", "s", QS_KEY_FLOAT, offsetof(qs_step, ratio), 0, 0.95, 0.25, NULL, NULL, NULL,
     "fraction of the width deleted (the paper's headline: 0.25)", 0.05},
    {"round", NULL, QS_KEY_INT, offsetof(qs_step, round), 1, 4096, 8, NULL, NULL, NULL,
     "widths rounded down to a multiple of this", 0},
    {"head", NULL, QS_KEY_BOOL, offsetof(qs_step, slice_head), 0, 1, 0, NULL, NULL, NULL,
     "also slice the head's input", 0},
    {"dtype", NULL, QS_KEY_WORD, offsetof(qs_step, slice_f32), 0, 0, 0, "model|f32", slice_dtype_values,
     "model or f32", "the sliced weights in the model's F16/BF16, or in fp32 (as the official code runs)", 0},
};

static void slice_format(const qs_step *s, char *b, size_t cap) {
    qs_spec_addf(b, cap, "ratio=%g", s->ratio);
    if (s->round != 8) qs_spec_addf(b, cap, "round=%d", s->round);
    if (s->slice_head) qs_spec_addf(b, cap, "head=%d", 1);
    if (s->slice_f32) qs_spec_addf(b, cap, "dtype=%s", "f32");
}

static int slice_needs_calib(const qs_step *s) { return 1; }

const qs_method_def qs_method_slice = {
    .id = QS_M_SLICE, .name = "slice", .aliases = "slicegpt",
    .summary = "SliceGPT: rotate by per-layer PCA, delete rows and columns", QS_METHOD_KEYS(slice_keys),
    .format = slice_format, .needs_calib = slice_needs_calib, .apply = qs_slice_apply,
};
