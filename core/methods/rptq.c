/* RPTQ (Yuan et al. 2023, "RPTQ: Reorder-based Post-training Quantization
 * for Large Language Models"): the channels of every activation are grouped
 * by k-means on their calibrated (max, min), each group gets its own static
 * asymmetric scale and zero point, and the permutation that makes the groups
 * contiguous is folded into the neighbouring norm and linear weights, so the
 * pass moves no data at run time.
 *
 * The reorders (paper figure 3), per layer:
 *   R1 attn_in  (norm-1 output): perm in attn_norm, q/k/v columns
 *   R2 q, k     per head, on [q max, k max, q min, k min]: q and k rows
 *               permuted alike inside each head (q.k is unchanged); not with
 *               RoPE, whose rotate-half pairs would be broken: there the
 *               clusters only choose the scales
 *   R3 attn_out per head: v rows inside each head, o columns; v's quantizer
 *               uses the same clusters (attention mixes v head by head)
 *   R4 mlp_in   (norm-2 output): perm in mlp_norm, up/gate columns
 *   R5 mlp_mid  (input of down): up/gate rows, down columns
 * With grouped-query attention a kv head's channels are shared by its query
 * heads, so R2/R3 cluster the kv channels with the features of all of them.
 *
 * Counts: g clusters at attn_in, mlp_in, mlp_mid; g_head per head at q/k and
 * attn_out. An override g_<site> is that site's total: for q/k (shared) and
 * attn_out it clusters the whole site at once (the permutation still stays
 * inside each head, the clusters are then not contiguous), so g_q=1 or
 * g_attn_out=1 is per-tensor there. A count >= the channels is per channel.
 *
 * This is qscope's default mode: statistics of the variant as it stands in
 * one calibration pass, min/max over it, the standard grid (quant.h), every
 * activation site at the given bits; weights round to nearest, or by GPTQ
 * (wq=gptq) once the activations are set. The reference code's conventions
 * (ref=1, "the reference code's conventions" below) differ in grid, ranges,
 * bits per site and calibration order: they fill the same plan (rptq_plan)
 * differently and calibrate layer by layer.
 *
 * The k-means seed is the spec's seed= (default 0, the paper code's fixed
 * seed); k-means draws from its own generator in a fixed order, so a seed
 * gives the same clusters on every run and machine. A build-time switch
 * measures how much the reference mode's float16 moves its results:
 * RPTQ_REF_FP16=0 (quantizers and probability rounding in float32). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "methods/methods.h"
#include "base/base.h"
#include "stats/stats.h"
#include "methods/rptq_impl.h"

const qs_site rptq_sites[N_RPTQ_SITES] = {QS_SITE_ATTN_IN, QS_SITE_Q, QS_SITE_K, QS_SITE_V,
                                     QS_SITE_ATTN_OUT, QS_SITE_MLP_IN, QS_SITE_MLP_MID};




qs_status rptq_plan_default(const qs_variant *v, const qs_step *s, rptq_plan *p) {
    const qs_config *c = &v->m->cfg;
    memset(p, 0, sizeof *p);
    for (int i = 0; i < QS_SITE_COUNT; i++) p->bits[i] = 16;
    p->bits[QS_SITE_Q] = p->bits[QS_SITE_ATTN_OUT] = p->bits[QS_SITE_MLP_MID] = s->a_bits;
    p->bits[QS_SITE_ATTN_IN] = p->bits[QS_SITE_MLP_IN] = s->norm_a ? s->norm_a : s->a_bits;
    p->bits[QS_SITE_K] = p->bits[QS_SITE_V] = s->kv_bits;
    p->grid = QS_GRID_STD;
    p->k_in = s->g_site[QS_SITE_ATTN_IN] ? s->g_site[QS_SITE_ATTN_IN] : s->g;
    p->k_mlp_in = s->g_site[QS_SITE_MLP_IN] ? s->g_site[QS_SITE_MLP_IN] : s->g;
    p->k_mid = s->g_site[QS_SITE_MLP_MID] ? s->g_site[QS_SITE_MLP_MID] : s->g;
    int gq = s->g_site[QS_SITE_Q], gk = s->g_site[QS_SITE_K];
    if (gq && gk && gq != gk)
        return qs_fail(QS_EARG, "%s: q and k share their clusters, but g_q = %d and g_k = %d", v->spec.text, gq, gk);
    p->k_qk = gq ? gq : gk ? gk : s->g_head;
    p->qk_per_head = !gq && !gk;
    p->k_out = s->g_site[QS_SITE_ATTN_OUT] ? s->g_site[QS_SITE_ATTN_OUT] : s->g_head;
    p->out_per_head = !s->g_site[QS_SITE_ATTN_OUT];
    if (p->k_in < 1 || p->k_mlp_in < 1 || p->k_mid < 1 || p->k_qk < 1 || p->k_out < 1)
        return qs_fail(QS_EARG, "%s: cluster counts must be >= 1", v->spec.text);
    if (s->reorder && c->resid == QS_RESID_POST)
        return qs_fail(QS_EUNSUPPORTED, "%s: reorder=1 folds the channel order into the norms before attention "
                       "and the MLP; a post-norm model has none there (use reorder=0)", v->spec.text);
    p->reorder = s->reorder;
    p->seed = s->seed;
    p->reorder_qk = s->reorder && c->rope_theta <= 0;
    p->w_bits = s->w_bits;
    p->w_group = s->w_group;
    p->w_sym = s->w_sym;
    p->w_cluster = s->w_cluster;
    p->dynamic = s->a_mode == QS_AQ_TOKEN;
    return QS_OK;
}

/* ---- clusters and permutations ---- */

/* k-means of npts points (fdim features each) split into n_parts equal
 * consecutive parts, k clusters in each (at most the part's size). Labels
 * are global: part * kk + the label inside the part. *total = n_parts * kk. */
static qs_status cluster_parts(const double *feats, int npts, int fdim, int n_parts, int k, uint64_t seed, int *labels,
                               int *total) {
    int per = npts / n_parts, kk = k < per ? k : per;
    for (int p = 0; p < n_parts; p++) {
        qs_status st = qs_kmeans(feats + (size_t)p * per * fdim, per, fdim, kk, QS_KMEANS_N_INIT, seed,
                                 labels + (size_t)p * per, NULL, NULL);
        if (st) return st;
        for (int i = 0; i < per; i++) labels[p * per + i] += p * kk;
    }
    *total = n_parts * kk;
    return QS_OK;
}

/* (max, min) of every channel of a site as k-means points (dim, 2). */
static void maxmin_feats(const qs_site_stats *ss, double *f) {
    for (int i = 0; i < ss->dim; i++) {
        f[2 * i] = ss->max[i];
        f[2 * i + 1] = ss->min[i];
    }
}

/* Channels sorted by cluster inside each block of `block` channels (stable:
 * ascending channel order within a cluster): perm[j] = the channel at
 * position j. Returns 0 when that is the identity. */
static int block_perm(const int *lab, int dim, int block, int32_t *perm) {
    int ident = 1;
    for (int b0 = 0; b0 < dim; b0 += block) {
        int lo = lab[b0], hi = lab[b0], j = b0;
        for (int i = b0; i < b0 + block; i++) {
            lo = lab[i] < lo ? lab[i] : lo;
            hi = lab[i] > hi ? lab[i] : hi;
        }
        for (int c = lo; c <= hi; c++)
            for (int i = b0; i < b0 + block; i++)
                if (lab[i] == c) perm[j++] = i;
        for (int i = b0; i < b0 + block; i++) ident &= perm[i] == i;
    }
    return !ident;
}

/* ---- folding the permutations into the weights ---- */

/* W'[i][j] = W[rows[i]][cols[j]], b'[i] = b[rows[i]] (NULL: identity).
 * Where the weights go: with scratch, into a malloc'd buffer returned in
 * *scratch (the caller quantizes and packs them next, then frees it: no
 * fp32 copy stays); else F16/BF16 weights stay in their type (a permutation
 * is exact) and others become fp32, both in buffers the variant owns.
 * Returns through *own 1 when l->w is then a writable fp32 buffer of the
 * variant's, 2 when it is the scratch, 0 otherwise. */
static qs_status permute_linear(qs_variant *v, qs_linear *l, const int32_t *rows, const int32_t *cols,
                                float **scratch, int *own) {
    *own = 0;
    if (!qs_linear_readable(l) || (!rows && !cols)) return QS_OK;
    int no = l->n_out, ni = l->n_in;
    if (!scratch && !l->w && (l->wtype == QS_WT_F16 || l->wtype == QS_WT_BF16)) {
        uint16_t *w = (void *)qs_variant_floats(v, ((size_t)no * ni + 1) / 2);
        if (!w) return QS_ENOMEM;
        const uint16_t *q = l->wq;
        for (int i = 0; i < no; i++) {
            const uint16_t *src = q + (size_t)(rows ? rows[i] : i) * ni;
            uint16_t *dst = w + (size_t)i * ni;
            for (int j = 0; j < ni; j++) dst[j] = src[cols ? cols[j] : j];
        }
        l->wq = w;
    } else {
        float *w = scratch ? malloc((size_t)no * ni * sizeof *w) : qs_variant_floats(v, (size_t)no * ni), *tmp;
        if (!w) return scratch ? qs_fail(QS_ENOMEM, "out of memory for a %dx%d matrix", no, ni) : QS_ENOMEM;
        const float *all = qs_linear_f32(l, &tmp);
        if (!all) {
            if (scratch) free(w);
            return QS_ENOMEM;
        }
        for (int i = 0; i < no; i++) {
            const float *src = all + (size_t)(rows ? rows[i] : i) * ni;
            float *dst = w + (size_t)i * ni;
            if (cols)
                for (int j = 0; j < ni; j++) dst[j] = src[cols[j]];
            else
                memcpy(dst, src, (size_t)ni * sizeof(float));
        }
        free(tmp);
        qs_linear_set_f32(l, w);
        if (scratch) *scratch = w;
        *own = scratch ? 2 : 1;
    }
    if (l->b && rows) {
        float *b = qs_variant_floats(v, (size_t)no);
        if (!b) return QS_ENOMEM;
        for (int i = 0; i < no; i++) b[i] = l->b[rows[i]];
        l->b = b;
    }
    return QS_OK;
}

/* Output j of the norm becomes its former output p[j]: the gain and bias
 * follow, and the perm composes with one already there. */
static qs_status permute_norm(qs_variant *v, qs_norm *nm, const int32_t *p) {
    int d = nm->dim;
    int32_t *np = qs_variant_ints(v, (size_t)d);
    if (!np) return QS_ENOMEM;
    for (int j = 0; j < d; j++) np[j] = nm->perm ? nm->perm[p[j]] : p[j];
    nm->perm = np;
    const float *src[2] = {nm->w, nm->b};
    float *dst[2] = {NULL, NULL};
    for (int t = 0; t < 2; t++) {
        if (!src[t]) continue;
        if (!(dst[t] = qs_variant_floats(v, (size_t)d))) return QS_ENOMEM;
        for (int j = 0; j < d; j++) dst[t][j] = src[t][p[j]];
    }
    if (dst[0]) nm->w = dst[0];
    if (dst[1]) nm->b = dst[1];
    return QS_OK;
}

/* A static quantizer an earlier step put at a site whose channels move. */
static qs_status permute_site_q(qs_variant *v, int layer, qs_site site, const int32_t *p, int dim) {
    if (!v->aq || !p) return QS_OK;
    qs_actq *q = &v->aq[(size_t)layer * QS_SITE_COUNT + site];
    if (!qs_actq_on(q)) return QS_OK;
    if (q->mode == QS_AQ_TOKEN && q->group) {
        int32_t *g = qs_variant_ints(v, (size_t)dim);
        if (!g) return QS_ENOMEM;
        for (int j = 0; j < dim; j++) g[j] = q->group[p[j]];
        q->group = g;
        return QS_OK;
    }
    if (q->mode != QS_AQ_STATIC) return QS_OK;
    float *sz = qs_variant_floats(v, 2 * (size_t)dim);
    if (!sz) return QS_ENOMEM;
    for (int j = 0; j < dim; j++) {
        sz[j] = q->scale[p[j]];
        sz[dim + j] = q->zero[p[j]];
    }
    q->scale = sz;
    q->zero = sz + dim;
    return QS_OK;
}

/* ---- quantizers ---- */

/* One scale/zero per cluster from its calibrated range (min of its channels'
 * mins, max of their maxes), written per position (position j holds channel
 * perm[j]; perm NULL: identity). */
static qs_status site_quantizer(qs_variant *v, int layer, qs_site site, const qs_site_stats *ss, const int *lab,
                                int n_clu, const int32_t *perm, int bits, qs_grid grid, int dynamic) {
    qs_actq *q = qs_variant_site_q(v, layer, site);
    if (q && dynamic) { /* the clusters only group channels; ranges come from each token */
        int32_t *g = qs_variant_ints(v, (size_t)ss->dim);
        if (!g) return QS_ENOMEM;
        for (int j = 0; j < ss->dim; j++) g[j] = lab[perm ? perm[j] : j];
        *q = (qs_actq){.bits = bits, .mode = QS_AQ_TOKEN, .grid = grid, .group = g, .n_groups = n_clu};
        return QS_OK;
    }
    float *sz = qs_variant_floats(v, 2 * (size_t)ss->dim);
    float *lo = malloc(4 * (size_t)n_clu * sizeof *lo);
    if (!q || !sz || !lo) {
        free(lo);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    float *hi = lo + n_clu, *sc = hi + n_clu, *zp = sc + n_clu;
    for (int c = 0; c < n_clu; c++) { /* every cluster has a channel (k-means leaves none empty) */
        lo[c] = INFINITY;
        hi[c] = -INFINITY;
    }
    for (int i = 0; i < ss->dim; i++) {
        int c = lab[i];
        lo[c] = ss->min[i] < lo[c] ? ss->min[i] : lo[c];
        hi[c] = ss->max[i] > hi[c] ? ss->max[i] : hi[c];
    }
    for (int c = 0; c < n_clu; c++) qs_quant_params(lo[c], hi[c], bits, 0, grid, &sc[c], &zp[c]);
    for (int j = 0; j < ss->dim; j++) {
        int c = lab[perm ? perm[j] : j];
        sz[j] = sc[c];
        sz[ss->dim + j] = zp[c];
    }
    free(lo);
    *q = (qs_actq){.bits = bits, .mode = QS_AQ_STATIC, .sym = 0, .grid = grid, .scale = sz, .zero = sz + ss->dim};
    return QS_OK;
}

/* ---- weights ---- */

/* Round-to-nearest on the (permuted) weights: per output row, per `group`
 * input channels, or per output row x input cluster (col_group: the cluster
 * of each column in the current column order). */
static qs_status quant_linear(qs_variant *v, qs_linear *l, const rptq_plan *p, int owned, const int *col_group,
                              int n_groups) {
    if (!qs_linear_readable(l)) return QS_OK;
    float *tmp;
    const float *src = qs_linear_f32(l, &tmp);
    if (!src) return QS_ENOMEM;
    float *out = NULL;
    qs_status st;
    if (p->w_cluster) {
        out = owned == 1 ? (float *)l->w : qs_variant_floats(v, (size_t)l->n_out * l->n_in);
        if (!out) {
            free(tmp);
            return QS_ENOMEM;
        }
        st = qs_quant_weight_groups(src, l->n_out, l->n_in, p->w_bits, p->w_sym, QS_GRID_STD, col_group, n_groups, out);
        /* accounting knows groups of equal width only: n_groups groups per row
         * when the clusters' count divides the width (the default counts do) */
        l->group = n_groups <= 1 ? 0 : (l->n_in + n_groups - 1) / n_groups;
    } else { /* as rtn stores them: packed where the groups allow */
        st = qs_variant_store_rtn(v, l, src, p->w_bits, p->w_group, p->w_sym);
        l->group = p->w_group >= l->n_in ? 0 : p->w_group;
        free(tmp);
        if (st) return st;
        l->bits = p->w_bits;
        l->asym = !p->w_sym;
        return QS_OK;
    }
    free(tmp);
    if (st) return st;
    qs_linear_set_f32(l, out);
    l->bits = p->w_bits;
    l->asym = !p->w_sym;
    return QS_OK;
}

/* ---- one layer ---- */



void rptq_work_sites(const rptq_work *wk, rptq_site_work out[N_RPTQ_SITES]) {
    const rptq_site_work t[N_RPTQ_SITES] = {
        {wk->lab_in, wk->n_in, wk->p_in},  {wk->lab_q, wk->n_qk, wk->p_q},   {wk->lab_k, wk->n_qk, wk->p_k},
        {wk->lab_v, wk->n_out, wk->p_v},   {wk->lab_o, wk->n_out, wk->p_o},  {wk->lab_mi, wk->n_mi, wk->p_mi},
        {wk->lab_mm, wk->n_mm, wk->p_mm}};
    memcpy(out, t, sizeof t);
}

static const qs_site_stats *site_stats(const qs_variant *v, const qs_stats *st, int l, qs_site site, int dim,
                                       qs_status *err) {
    const qs_site_stats *ss = qs_stats_site(st, l, site);
    if (!ss || ss->dim != dim || !ss->tokens) {
        *err = qs_fail(QS_ESHAPE, "%s: layer %d %s: statistics %s (width %d expected)", v->spec.text, l,
                       qs_site_name(site), !ss ? "missing" : ss->dim != dim ? "of another width" : "empty", dim);
        return NULL;
    }
    return ss;
}

/* The widths of layer l, checked against each other. */
static qs_status layer_dims(const qs_variant *v, int l, int *d_in, int *qd, int *kvd, int *d_mid, int *dff) {
    const qs_config *c = &v->m->cfg;
    const qs_layer *L = &v->w.layers[l];
    int hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
    *d_in = L->attn_norm.dim, *qd = L->q.n_out, *kvd = L->k.n_out, *d_mid = L->mlp_norm.dim, *dff = L->up.n_out;
    if (*qd != nh * hd || *kvd != nkv * hd || L->v.n_out != *kvd || L->o.n_in != *qd || L->q.n_in != *d_in ||
        L->up.n_in != *d_mid || L->down.n_in != *dff)
        return qs_fail(QS_ESHAPE, "%s: layer %d: widths disagree (q %dx%d, k %d, o in %d, up %dx%d, down in %d; heads %d x %d)",
                       v->spec.text, l, *qd, L->q.n_in, *kvd, L->o.n_in, *dff, L->up.n_in, L->down.n_in, nh, hd);
    return QS_OK;
}

/* The statistics of the 7 sites of layer l (rptq_sites order), or an error. */
qs_status rptq_layer_site_stats(const qs_variant *v, const qs_stats *stats, int l, const qs_site_stats *ss[N_RPTQ_SITES]) {
    int d_in, qd, kvd, d_mid, dff;
    qs_status st = layer_dims(v, l, &d_in, &qd, &kvd, &d_mid, &dff);
    if (st) return st;
    const int dims[N_RPTQ_SITES] = {d_in, qd, kvd, kvd, qd, d_mid, dff};
    for (int i = 0; i < N_RPTQ_SITES; i++)
        if (!(ss[i] = site_stats(v, stats, l, rptq_sites[i], dims[i], &st))) return st;
    return QS_OK;
}

qs_status rptq_work_new(rptq_work *wk, const qs_variant *v, int l) {
    const qs_config *c = &v->m->cfg;
    int grp = c->n_heads / c->n_kv_heads, d_in, qd, kvd, d_mid, dff;
    memset(wk, 0, sizeof *wk);
    qs_status st = layer_dims(v, l, &d_in, &qd, &kvd, &d_mid, &dff);
    if (st) return st;
    size_t nint = 2 * ((size_t)d_in + 2 * qd + 2 * kvd + d_mid + dff);
    size_t fdim_qk = 2 * ((size_t)grp + 1), nfeat = 2 * (size_t)(d_in > d_mid ? d_in : d_mid);
    if (nfeat < 2 * (size_t)dff) nfeat = 2 * (size_t)dff;
    if (nfeat < fdim_qk * kvd) nfeat = fdim_qk * kvd;
    size_t ncol = (size_t)(d_in > d_mid ? d_in : d_mid);
    if (ncol < (size_t)qd) ncol = qd;
    if (ncol < (size_t)dff) ncol = dff;
    wk->block = malloc(nfeat * sizeof(double) + (nint + ncol) * sizeof(int32_t));
    if (!wk->block) return qs_fail(QS_ENOMEM, "out of memory for RPTQ of layer %d", l);
    wk->feats = wk->block;
    int *ip = (int *)(wk->feats + nfeat);
    wk->lab_in = ip, ip += d_in;
    wk->lab_q = ip, ip += qd;
    wk->lab_k = ip, ip += kvd;
    wk->lab_v = ip, ip += kvd;
    wk->lab_o = ip, ip += qd;
    wk->lab_mi = ip, ip += d_mid;
    wk->lab_mm = ip, ip += dff;
    wk->colg = ip, ip += ncol;
    wk->pbuf = (int32_t *)ip;
    return QS_OK;
}

void rptq_work_free(rptq_work *wk) {
    for (int i = 0; i < 7; i++) free(wk->scratch[i]);
    free(wk->block);
    memset(wk, 0, sizeof *wk);
}

/* k-means of every site of layer l from its statistics ss (rptq_sites
 * order), the labels recorded for the views, and (with p->reorder) the
 * permutations folded into the layer's norms and linears and into the
 * quantizers an earlier step put there. */
qs_status rptq_layer_clusters(qs_variant *v, const rptq_plan *p, const qs_site_stats *const ss[N_RPTQ_SITES], int l,
                                rptq_work *wk, int *changed) {
    const qs_config *c = &v->m->cfg;
    qs_layer *L = &v->w.layers[l];
    int hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads, grp = nh / nkv;
    int d_in = L->attn_norm.dim, qd = L->q.n_out, kvd = L->k.n_out, d_mid = L->mlp_norm.dim, dff = L->up.n_out;
    size_t fdim_qk = 2 * ((size_t)grp + 1);
    const qs_site_stats *s_in = ss[0], *s_q = ss[1], *s_k = ss[2], *s_o = ss[4], *s_mi = ss[5], *s_mm = ss[6];
    int32_t *p_in = wk->pbuf, *p_q = p_in + d_in, *p_k = p_q + qd, *p_v = p_k + kvd, *p_o = p_v + kvd,
            *p_mi = p_o + qd, *p_mm = p_mi + d_mid;
    qs_status st;

    /* R1, R4, R5: k-means on each channel's (max, min) */
    maxmin_feats(s_in, wk->feats);
    if ((st = cluster_parts(wk->feats, d_in, 2, 1, p->k_in, (uint64_t)p->seed, wk->lab_in, &wk->n_in))) return st;
    maxmin_feats(s_mi, wk->feats);
    if ((st = cluster_parts(wk->feats, d_mid, 2, 1, p->k_mlp_in, (uint64_t)p->seed, wk->lab_mi, &wk->n_mi))) return st;
    maxmin_feats(s_mm, wk->feats);
    if ((st = cluster_parts(wk->feats, dff, 2, 1, p->k_mid, (uint64_t)p->seed, wk->lab_mm, &wk->n_mm))) return st;

    /* R2: the kv channels, each with the (max, min) of k and of the q
     * channel of every query head that reads it: [q max.., k max, q min.., k min] */
    for (int g = 0; g < nkv; g++)
        for (int ch = 0; ch < hd; ch++) {
            double *f = wk->feats + ((size_t)g * hd + ch) * fdim_qk;
            for (int t = 0; t < grp; t++) {
                int qc = (g * grp + t) * hd + ch;
                f[t] = s_q->max[qc];
                f[grp + 1 + t] = s_q->min[qc];
            }
            f[grp] = s_k->max[g * hd + ch];
            f[2 * grp + 1] = s_k->min[g * hd + ch];
        }
    if ((st = cluster_parts(wk->feats, kvd, (int)fdim_qk, p->qk_per_head ? nkv : 1, p->k_qk, (uint64_t)p->seed, wk->lab_k, &wk->n_qk)))
        return st;
    for (int h = 0; h < nh; h++)
        for (int ch = 0; ch < hd; ch++) wk->lab_q[h * hd + ch] = wk->lab_k[(h / grp) * hd + ch];

    /* R3: the v channels, with the attention output's (max, min) of every
     * query head that reads them: [out max.., out min..] */
    for (int g = 0; g < nkv; g++)
        for (int ch = 0; ch < hd; ch++) {
            double *f = wk->feats + ((size_t)g * hd + ch) * 2 * grp;
            for (int t = 0; t < grp; t++) {
                int oc = (g * grp + t) * hd + ch;
                f[t] = s_o->max[oc];
                f[grp + t] = s_o->min[oc];
            }
        }
    if ((st = cluster_parts(wk->feats, kvd, 2 * grp, p->out_per_head ? nkv : 1, p->k_out, (uint64_t)p->seed, wk->lab_v, &wk->n_out)))
        return st;
    for (int h = 0; h < nh; h++)
        for (int ch = 0; ch < hd; ch++) wk->lab_o[h * hd + ch] = wk->lab_v[(h / grp) * hd + ch];

    /* labels for the views, in the original channel order */
    const struct {
        qs_site site;
        const int *lab;
        int dim, n;
    } rec[] = {{QS_SITE_ATTN_IN, wk->lab_in, d_in, wk->n_in}, {QS_SITE_Q, wk->lab_q, qd, wk->n_qk},
               {QS_SITE_K, wk->lab_k, kvd, wk->n_qk},         {QS_SITE_V, wk->lab_v, kvd, wk->n_out},
               {QS_SITE_ATTN_OUT, wk->lab_o, qd, wk->n_out},  {QS_SITE_MLP_IN, wk->lab_mi, d_mid, wk->n_mi},
               {QS_SITE_MLP_MID, wk->lab_mm, dff, wk->n_mm}};
    for (int i = 0; i < (int)(sizeof rec / sizeof rec[0]); i++)
        if ((st = qs_variant_set_clusters(v, l, rec[i].site, rec[i].lab, rec[i].dim, rec[i].n)))
            return qs_fail(st, "out of memory");
    if (!p->reorder) return QS_OK;

    /* permutations: channels sorted by cluster (inside each head for R2/R3) */
    wk->p_in = block_perm(wk->lab_in, d_in, d_in, p_in) ? p_in : NULL;
    wk->p_mi = block_perm(wk->lab_mi, d_mid, d_mid, p_mi) ? p_mi : NULL;
    wk->p_mm = block_perm(wk->lab_mm, dff, dff, p_mm) ? p_mm : NULL;
    wk->p_v = block_perm(wk->lab_v, kvd, hd, p_v) ? p_v : NULL;
    if (wk->p_v) { /* every query head of a group moves as its kv head */
        for (int h = 0; h < nh; h++)
            for (int j = 0; j < hd; j++) p_o[h * hd + j] = h * hd + (p_v[(h / grp) * hd + j] - (h / grp) * hd);
        wk->p_o = p_o;
    }
    if (p->reorder_qk && block_perm(wk->lab_k, kvd, hd, p_k)) {
        wk->p_k = p_k;
        for (int h = 0; h < nh; h++)
            for (int j = 0; j < hd; j++) p_q[h * hd + j] = h * hd + (p_k[(h / grp) * hd + j] - (h / grp) * hd);
        wk->p_q = p_q;
    }
    /* fold: norms and columns (inputs), rows (outputs) */
    qs_linear *lin[7] = {&L->q, &L->k, &L->v, &L->o, &L->up, &L->gate, &L->down};
    const int32_t *rows[7] = {wk->p_q, wk->p_k, wk->p_v, NULL, wk->p_mm, wk->p_mm, NULL};
    const int32_t *cols[7] = {wk->p_in, wk->p_in, wk->p_in, wk->p_o, wk->p_mi, wk->p_mi, wk->p_mm};
    if (wk->p_in && (st = permute_norm(v, &L->attn_norm, wk->p_in))) return st;
    if (wk->p_mi && (st = permute_norm(v, &L->mlp_norm, wk->p_mi))) return st;
    /* weights packed right after (rtn per row or group) pass through scratch */
    int packs = !p->ref && p->w_bits < 16 && !p->w_cluster;
    for (int i = 0; i < 7; i++)
        if ((st = permute_linear(v, lin[i], rows[i], cols[i], packs ? &wk->scratch[i] : NULL, &wk->own[i])))
            return st;
    const struct {
        qs_site site;
        const int32_t *perm;
        int dim;
    } moved[] = {{QS_SITE_ATTN_IN, wk->p_in, d_in}, {QS_SITE_Q, wk->p_q, qd},       {QS_SITE_K, wk->p_k, kvd},
                 {QS_SITE_V, wk->p_v, kvd},         {QS_SITE_ATTN_OUT, wk->p_o, qd}, {QS_SITE_MLP_IN, wk->p_mi, d_mid},
                 {QS_SITE_MLP_MID, wk->p_mm, dff}};
    for (int i = 0; i < N_RPTQ_SITES; i++) {
        if (moved[i].perm) *changed = 1;
        if ((st = permute_site_q(v, l, moved[i].site, moved[i].perm, moved[i].dim))) return st;
    }
    return QS_OK;
}

/* The default mode's layer: clusters from the variant's statistics, then
 * round-to-nearest weights and static (or per-token) cluster quantizers. */
static qs_status rptq_layer(qs_variant *v, const rptq_plan *p, const qs_stats *stats, int l, int *changed) {
    qs_layer *L = &v->w.layers[l];
    const qs_site_stats *ss[N_RPTQ_SITES];
    qs_status st = rptq_layer_site_stats(v, stats, l, ss);
    if (st) return st;
    rptq_work wk;
    if ((st = rptq_work_new(&wk, v, l))) return st;
    if ((st = rptq_layer_clusters(v, p, ss, l, &wk, changed))) goto done;

    qs_linear *lin[7] = {&L->q, &L->k, &L->v, &L->o, &L->up, &L->gate, &L->down};
    const int *glab[7] = {wk.lab_in, wk.lab_in, wk.lab_in, wk.lab_o, wk.lab_mi, wk.lab_mi, wk.lab_mm};
    const int ng[7] = {wk.n_in, wk.n_in, wk.n_in, wk.n_out, wk.n_mi, wk.n_mi, wk.n_mm};
    if (p->reorder && p->w_bits < 16) { /* weights quantized after the moves */
        const int32_t *cols[7] = {wk.p_in, wk.p_in, wk.p_in, wk.p_o, wk.p_mi, wk.p_mi, wk.p_mm};
        for (int i = 0; i < 7; i++) {
            if (!qs_linear_readable(lin[i])) continue;
            for (int j = 0; j < lin[i]->n_in; j++) wk.colg[j] = glab[i][cols[i] ? cols[i][j] : j];
            if ((st = quant_linear(v, lin[i], p, wk.own[i], wk.colg, ng[i]))) goto done;
        }
        *changed = 1;
    } else if (p->w_bits < 16) {
        for (int i = 0; i < 7; i++)
            if ((st = quant_linear(v, lin[i], p, 0, glab[i], ng[i]))) goto done;
        *changed = 1;
    }

    /* activation quantizers, in the permuted channel order */
    rptq_site_work qz[N_RPTQ_SITES];
    rptq_work_sites(&wk, qz);
    for (int i = 0; i < N_RPTQ_SITES; i++) {
        int bits = p->bits[rptq_sites[i]];
        if (bits >= 16) continue;
        if ((st = site_quantizer(v, l, rptq_sites[i], ss[i], qz[i].lab, qz[i].n, qz[i].perm, bits, p->grid, p->dynamic)))
            goto done;
        *changed = 1;
    }
done:
    rptq_work_free(&wk);
    return st;
}

/* ---- the step ---- */

static void describe(qs_variant *v, const qs_step *s, const rptq_plan *p) {
    char bits[64], norms[32] = "", clus[160], wq[64] = "", fold[96];
    snprintf(bits, sizeof bits, "W%dA%d KV%d", s->w_bits, s->a_bits, s->kv_bits);
    if (s->norm_a || (p->ref && s->a_bits < 16))
        snprintf(norms, sizeof norms, " (norm outputs A%d)", p->bits[QS_SITE_ATTN_IN]);
    int n = 0;
    if (p->k_in == p->k_mlp_in && p->k_in == p->k_mid)
        n = snprintf(clus, sizeof clus, "%d clusters for attn_in/mlp_in/mlp_mid", p->k_in);
    else
        n = snprintf(clus, sizeof clus, "clusters attn_in %d, mlp_in %d, mlp_mid %d", p->k_in, p->k_mlp_in, p->k_mid);
    if (p->qk_per_head && p->out_per_head && p->k_qk == p->k_out)
        snprintf(clus + n, sizeof clus - n, ", %d per head for q/k and attn_out", p->k_qk);
    else
        snprintf(clus + n, sizeof clus - n, ", q/k %d%s, attn_out %d%s", p->k_qk, p->qk_per_head ? " per head" : "",
                 p->k_out, p->out_per_head ? " per head" : "");
    if (s->w_bits < 16)
        snprintf(wq, sizeof wq, "; weights %s %s per output row%s", s->w_gptq ? "GPTQ" : "RTN",
                 s->w_sym ? "sym" : "asym", p->w_cluster ? " x input cluster" : "");
    if (s->w_bits < 16 && !p->w_cluster && p->w_group)
        snprintf(wq + strlen(wq), sizeof wq - strlen(wq), " x groups of %d", p->w_group);
    if (!p->reorder)
        snprintf(fold, sizeof fold, "no reorder (clusters choose the scales only)");
    else if (!p->reorder_qk)
        snprintf(fold, sizeof fold, "permutations folded into norms and linears (not q/k: RoPE)");
    else
        snprintf(fold, sizeof fold, "permutations folded into norms and linears");
    qs_variant_note(v, "RPTQ %s%s: %s; %s%s", bits, norms, clus, fold, wq);
    if (p->ref)
        qs_variant_note(v, "the reference code's conventions: its grid, EMA ranges over the windows in order, "
                           "float16 scales%s%s", p->prob_levels ? ", softmax P on a 1/255 grid" : "",
                        p->w_bits < 16 ? ", float16 weights" : "");
}

qs_status qs_rptq_apply(qs_variant *v, const qs_step *s) {
    const qs_config *c = &v->m->cfg;
    if (s->w_gptq && s->w_cluster && !s->ref)
        return qs_fail(QS_EUNSUPPORTED, "%s: GPTQ per output row x input cluster is the reference mode's: add ref=1",
                       v->spec.text);
    if (s->w_cluster && s->w_group)
        return qs_fail(QS_EARG, "%s: weight groups are either input clusters (wgroups=cluster) or group=%d, not both",
                       v->spec.text, s->w_group);
    if (s->w_cluster && s->w_bits >= 16)
        return qs_fail(QS_EARG, "%s: wgroups=cluster needs weight bits (w)", v->spec.text);
    if (c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads)
        return qs_fail(QS_EUNSUPPORTED, "%s: %d query heads do not share %d kv heads evenly", v->spec.text,
                       c->n_heads, c->n_kv_heads);
    for (int l = 0; l < c->n_layers; l++) {
        if (qs_variant_layer_has_kernel(v, l))
            return qs_fail(QS_EARG, "%s: layer %d already runs int8 kernels; put rptq before int8 in the chain",
                           v->spec.text, l);
    }
    rptq_plan p;
    qs_status st = s->ref ? rptq_plan_ref(v, s, &p) : rptq_plan_default(v, s, &p);
    if (st) return st;
    int changed = 0;
    if (s->ref) {
        if ((st = rptq_ref_run(v, &p, &changed))) return st;
        goto finish;
    }
    if (s->w_gptq) p.w_bits = 16; /* weights by GPTQ below, once the activations are set */

    qs_stats_opts o = qs_stats_defaults();
    o.per_token = 0;
    o.sites = 0;
    for (int i = 0; i < N_RPTQ_SITES; i++) o.sites |= 1u << rptq_sites[i];
    qs_stats *stats = NULL;
    int borrowed = 0;
    if ((st = qs_variant_stats(v, &o, &stats, &borrowed))) return st;
    for (int l = 0; l < c->n_layers && !st; l++) st = rptq_layer(v, &p, stats, l, &changed);
    if (!borrowed) qs_stats_free(stats);
    if (st) return st;
    if (s->w_gptq && s->w_bits < 16) {
        if ((st = qs_gptq_variant(v, s))) return st;
        changed = 1;
    }
finish:
    if (s->kv_bits < 16) {
        v->kv_bits = s->kv_bits;
        v->kv_dynamic = 0; /* static: the scales are per channel, not stored per row */
    }
    describe(v, s, &p);
    if (changed) v->modified = 1;
    return QS_OK;
}

/* ---- the record ---- */

static const int rptq_act_values[2] = {QS_AQ_STATIC, QS_AQ_TOKEN};
static const int wgroups_values[2] = {0, 1};

static const qs_method_key rptq_keys[] = {
    QS_WEIGHT_KEYS,
    {"act", NULL, QS_KEY_WORD, offsetof(qs_step, a_mode), 0, 0, 0, "static|token", rptq_act_values,
     "static (calibrated cluster ranges) or token (dynamic per token and cluster)",
     "activation scales: calibrated per cluster, or dynamic per token and cluster", 0},
    {"g", NULL, QS_KEY_INT, offsetof(qs_step, g), 1, 4096, 32, NULL, NULL, NULL,
     "clusters at attn_in, mlp_in and mlp_mid", 1},
    {"g_head", NULL, QS_KEY_INT, offsetof(qs_step, g_head), 1, 1024, 4, NULL, NULL, NULL,
     "clusters per head at q/k and attn_out", 0},
    {"norm_a", NULL, QS_KEY_BITS, offsetof(qs_step, norm_a), 2, 16, 0, NULL, NULL, NULL,
     "bits of the norm outputs attn_in and mlp_in (default: as a)", 0},
    {"ref", NULL, QS_KEY_BOOL, offsetof(qs_step, ref), 0, 1, 0, NULL, NULL, NULL,
     "the official code's conventions: its grid, EMA ranges, float16", 0},
    {"reorder", NULL, QS_KEY_BOOL, offsetof(qs_step, reorder), 0, 1, 1, NULL, NULL, NULL,
     "fold the permutations into the weights (0: clusters choose scales only)", 0},
    {"wgroups", NULL, QS_KEY_WORD, offsetof(qs_step, w_cluster), 0, 0, 0, "row|cluster", wgroups_values,
     "row or cluster", "weight scales per output row, or per row and input cluster", 0},
    {"seed", NULL, QS_KEY_INT, offsetof(qs_step, seed), 0, 2147483647, 0, NULL, NULL, NULL,
     "the k-means seed: the same seed gives the same clusters on every run and machine", 0},
};

/* Setting names (W4A4KV) and per-site cluster counts g_<site>. */
static int rptq_extra(const char *spec, qs_step *s, const char *key, const char *val, qs_status *st) {
    *st = QS_OK;
    if (!val) return qs_spec_setting(key, s);
    int site;
    if (strncmp(key, "g_", 2) || (site = qs_site_parse(key + 2)) < 0) return 0;
    if (site == QS_SITE_HEAD_IN || site == QS_SITE_RESID || site == QS_SITE_RESID_MID || site == QS_SITE_EMBED ||
        site == QS_SITE_V)
        *st = qs_fail(QS_EARG, "%s: RPTQ clusters sites attn_in, q, k, attn_out, mlp_in, mlp_mid; not '%s'", spec,
                      key + 2);
    else
        *st = qs_spec_get_int(spec, key, val, 1, 4096, &s->g_site[site]);
    return 1;
}

static void rptq_format(const qs_step *s, char *b, size_t cap) {
    qs_spec_weight_keys_format(s, b, cap);
    if (s->kv_bits && s->kv_bits != s->a_bits) qs_spec_addf(b, cap, "kv=%d", s->kv_bits);
    qs_spec_addf(b, cap, "g=%d", s->g);
    if (s->g_head != 4) qs_spec_addf(b, cap, "g_head=%d", s->g_head);
    for (int i = 0; i < QS_SITE_COUNT; i++)
        if (s->g_site[i]) qs_spec_addf(b, cap, "g_%s=%d", qs_site_name(i), s->g_site[i]);
    if (s->norm_a) qs_spec_addf(b, cap, "norm_a=%d", s->norm_a);
    if (s->w_cluster) qs_spec_addf(b, cap, "wgroups=%s", "cluster");
    if (s->a_mode == QS_AQ_TOKEN) qs_spec_addf(b, cap, "act=%s", "token");
    if (!s->reorder) qs_spec_addf(b, cap, "reorder=%d", 0);
    if (s->ref) qs_spec_addf(b, cap, "ref=%d", 1);
    if (s->seed) qs_spec_addf(b, cap, "seed=%d", s->seed);
}

static int rptq_needs_calib(const qs_step *s) { return 1; }

const qs_method_def qs_method_rptq = {
    .id = QS_M_RPTQ, .name = "rptq",
    .summary = "RPTQ: channels reordered by k-means on their ranges, a scale per cluster",
    QS_METHOD_KEYS(rptq_keys), .bare_hint = " nor a setting name like W4A4KV", .extra = rptq_extra,
    .format = rptq_format, .needs_calib = rptq_needs_calib, .apply = qs_rptq_apply,
};
