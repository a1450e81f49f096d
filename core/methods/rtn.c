/* rtn.c — round-to-nearest baselines: weights per output row or per group of
 * input channels (or by GPTQ, gptq.c), activations per token (dynamic) or per
 * tensor (static, calibrated), and the K/V cache. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "methods/methods.h"
#include "methods/methods_impl.h"

/* ---- round to nearest ---- */

static const qs_site act_sites[] = {QS_SITE_ATTN_IN, QS_SITE_Q, QS_SITE_K, QS_SITE_V,
                                    QS_SITE_ATTN_OUT, QS_SITE_MLP_IN, QS_SITE_MLP_MID};

static int bits_of_site(const qs_step *s, qs_site site) {
    return site == QS_SITE_K || site == QS_SITE_V ? s->kv_bits : s->a_bits;
}

qs_status qs_variant_store_rtn(qs_variant *v, qs_linear *l, const float *src, int bits, int group, int sym) {
    /* kept packed (codes and a scale per group, read by the kernels) when the
     * groups are the row or a power of two dividing it, else as fp32 values */
    int g = group >= l->n_in ? 0 : group, lg = 0;
    while (g > 0 && (1 << lg) < g) lg++;
    if (g == 0 || (g >= 8 && (1 << lg) == g && l->n_in % g == 0)) {
        uint32_t type = qs_wt_qg(bits, g ? lg : 0);
        size_t bytes = qs_wtype_row_bytes(type, l->n_in) * (size_t)l->n_out;
        void *packed = qs_variant_floats(v, (bytes + 3) / 4);
        if (!packed) return QS_ENOMEM;
        qs_quant_pack_rtn(src, l->n_out, l->n_in, bits, g ? lg : 0, sym, packed);
        l->w = NULL;
        l->wq = packed;
        l->wtype = type;
        return QS_OK;
    }
    float *q = qs_variant_floats(v, (size_t)l->n_out * l->n_in);
    if (!q) return QS_ENOMEM;
    qs_status st = qs_quant_weight_rtn(src, l->n_out, l->n_in, bits, group, sym, q);
    if (!st) qs_linear_set_f32(l, q);
    return st;
}

/* The ggml type of a k-quant grid (0 for another grid), and its sub-block. */
static uint32_t kq_type(int grid) {
    return grid == QS_GRID_Q4_K ? QS_WT_Q4_K : grid == QS_GRID_Q6_K ? QS_WT_Q6_K : 0;
}
static int kq_sub(uint32_t type) { return type == QS_WT_Q4_K ? 32 : 16; }

/* Replace a linear's weights by their round-to-nearest values. */
static qs_status rtn_linear(qs_variant *v, qs_linear *l, const qs_step *s) {
    if (l->kern) return qs_fail(QS_EARG, "%s: weights already int8; put rtn before int8 in the chain", v->spec.text);
    if (!qs_linear_readable(l)) return QS_OK;
    if (s->w_bits < 2 || s->w_bits > 8) return qs_fail(QS_EARG, "weight bits must be 2..8, got %d", s->w_bits);
    if (s->w_grid == QS_GRID_GGML && l->n_in % 32)
        return qs_fail(QS_EARG, "%s: grid=ggml needs rows of whole blocks of 32; a linear has %d inputs", v->spec.text,
                       l->n_in);
    float *tmp;
    const float *src = qs_linear_f32(l, &tmp);
    if (!src) return QS_ENOMEM;
    qs_status st = QS_OK;
    uint32_t ktype = kq_type(s->w_grid);
    if (ktype) { /* k-quant super-blocks, run in place by kern/wmat.c (rtn_apply checked the widths) */
        size_t bytes = qs_wtype_row_bytes(ktype, l->n_in) * (size_t)l->n_out;
        void *packed = qs_variant_floats(v, (bytes + 3) / 4);
        if (packed) {
            qs_quant_pack_kq(src, l->n_out, l->n_in, ktype, packed, NULL);
            l->w = NULL;
            l->wq = packed;
            l->wtype = ktype;
        } else {
            st = QS_ENOMEM;
        }
    } else if (s->w_grid == QS_GRID_GGML) { /* llama.cpp's blocks themselves, run in place by kern/wmat.c */
        uint32_t type = qs_ggml_type_of(s->w_bits, s->w_sym);
        size_t bytes = qs_wtype_row_bytes(type, l->n_in) * (size_t)l->n_out;
        void *packed = qs_variant_floats(v, (bytes + 3) / 4);
        if (packed) {
            qs_quant_pack_ggml(src, l->n_out, l->n_in, type, packed);
            l->w = NULL;
            l->wq = packed;
            l->wtype = type;
        } else {
            st = QS_ENOMEM;
        }
    } else {
        st = qs_variant_store_rtn(v, l, src, s->w_bits, s->w_group, s->w_sym);
    }
    free(tmp);
    if (st) return st;
    l->bits = s->w_bits;
    l->group = ktype ? kq_sub(ktype) : s->w_group >= l->n_in ? 0 : s->w_group;
    l->asym = !s->w_sym;
    return QS_OK;
}

/* The k-quant grids need rows of whole super-blocks: refused before any
 * work, naming the first linear that has none. */
static qs_status kq_widths(const qs_variant *v, const qs_step *s) {
    static const char *const names[] = {"q", "k", "v", "o", "up", "gate", "down"};
    for (int l = 0; l < v->m->cfg.n_layers; l++) {
        qs_linear *ls[QS_LAYER_LINEARS];
        int nl = qs_layer_linears(&v->w.layers[l], 0, ls);
        for (int j = 0; j < nl && j < 7; j++)
            if (qs_linear_readable(ls[j]) && ls[j]->n_in % 256)
                return qs_fail(QS_EARG, "%s: grid=%s needs rows of whole super-blocks of 256; layer %d %s has %d inputs",
                               v->spec.text, s->w_grid == QS_GRID_Q4_K ? "q4_k" : "q6_k", l, names[j], ls[j]->n_in);
    }
    return QS_OK;
}

/* Per-tensor static quantizer from calibrated min/max over every channel. */
static qs_status static_tensor_q(qs_variant *v, qs_actq *q, const qs_site_stats *ss, int bits, int sym) {
    float lo = ss->min[0], hi = ss->max[0], s, z;
    for (int i = 1; i < ss->dim; i++) {
        lo = ss->min[i] < lo ? ss->min[i] : lo;
        hi = ss->max[i] > hi ? ss->max[i] : hi;
    }
    qs_quant_params(lo, hi, bits, sym, QS_GRID_STD, &s, &z);
    float *sc = qs_variant_floats(v, 2 * (size_t)ss->dim);
    if (!sc) return QS_ENOMEM;
    for (int i = 0; i < ss->dim; i++) {
        sc[i] = s;
        sc[ss->dim + i] = z;
    }
    *q = (qs_actq){.bits = bits, .mode = QS_AQ_STATIC, .sym = sym, .scale = sc, .zero = sc + ss->dim};
    return QS_OK;
}

static qs_status rtn_apply(qs_variant *v, const qs_step *s) {
    const qs_config *c = &v->m->cfg;
    qs_status st = QS_OK; /* the site loop reads it first when a_mode is per token */
    int any_act = s->a_bits < 16 || s->kv_bits < 16;
    if (any_act) {
        qs_stats *stats = NULL;
        int borrowed = 0;
        if (s->a_mode == QS_AQ_STATIC) {
            qs_stats_opts o = qs_stats_defaults();
            o.per_token = 0;
            if ((st = qs_variant_stats(v, &o, &stats, &borrowed))) return st;
        }
        for (int l = 0; l < c->n_layers && !st; l++)
            for (size_t k = 0; k < sizeof act_sites / sizeof act_sites[0]; k++) {
                int bits = bits_of_site(s, act_sites[k]);
                if (bits >= 16) continue;
                qs_actq *q = qs_variant_site_q(v, l, act_sites[k]);
                if (!q) {
                    st = QS_ENOMEM;
                    break;
                }
                if (s->a_mode == QS_AQ_STATIC) {
                    const qs_site_stats *ss = qs_stats_site(stats, l, act_sites[k]);
                    if (!ss) {
                        st = qs_fail(QS_EARG, "%s: no statistics for layer %d %s", v->spec.text, l, qs_site_name(act_sites[k]));
                        break;
                    }
                    if ((st = static_tensor_q(v, q, ss, bits, 0))) break;
                } else {
                    *q = (qs_actq){.bits = bits, .mode = QS_AQ_TOKEN};
                }
            }
        if (!borrowed) qs_stats_free(stats);
        if (st) return st;
        if (s->kv_bits < 16) {
            v->kv_bits = s->kv_bits;
            v->kv_dynamic = s->a_mode == QS_AQ_TOKEN;
        }
    }
    if (s->w_bits < 16 && kq_type(s->w_grid) && (st = kq_widths(v, s))) return st;
    if (s->w_bits < 16 && s->w_gptq) {
        if ((st = qs_gptq_variant(v, s))) return st;
    } else if (s->w_bits < 16) {
        for (int l = 0; l < c->n_layers; l++) {
            qs_layer *L = &v->w.layers[l];
            qs_linear *ls[QS_LAYER_LINEARS];
            int nl = qs_layer_linears(L, 0, ls);
            for (int j = 0; j < nl; j++)
                if ((st = rtn_linear(v, ls[j], s))) return st;
        }
    }
    char wdesc[160] = "", adesc[96] = "";
    if (s->w_bits < 16)
        snprintf(wdesc, sizeof wdesc, "weights W%d %s%s%s", s->w_bits, s->w_sym ? "sym" : "asym",
                 s->w_group || kq_type(s->w_grid) ? "" : " per output row",
                 s->w_grid == QS_GRID_GGML  ? " (llama.cpp blocks)"
                 : s->w_grid == QS_GRID_Q4_K ? " (llama.cpp Q4_K super-blocks of 256, scale and min per 32)"
                 : s->w_grid == QS_GRID_Q6_K ? " (llama.cpp Q6_K super-blocks of 256, scale per 16)"
                                             : "");
    if (s->w_group && s->w_bits < 16) snprintf(wdesc + strlen(wdesc), sizeof wdesc - strlen(wdesc), " groups of %d", s->w_group);
    if (any_act)
        snprintf(adesc, sizeof adesc, "activations A%d KV%d %s", s->a_bits, s->kv_bits,
                 s->a_mode == QS_AQ_STATIC ? "per tensor (static, calibrated)" : "per token (dynamic)");
    const char *how = s->w_gptq && s->w_bits < 16 ? (any_act ? "GPTQ weights, round-to-nearest activations" : "GPTQ")
                                                  : "round-to-nearest";
    qs_variant_note(v, "%s: %s%s%s", how, wdesc, *wdesc && *adesc ? ", " : "", adesc);
    v->modified = 1;
    return QS_OK;
}

/* ---- the record ---- */

const int qs_wq_values[2] = {0, 1};
static const int act_values[2] = {QS_AQ_STATIC, QS_AQ_TOKEN};
static const int grid_values[4] = {QS_GRID_STD, QS_GRID_GGML, QS_GRID_Q4_K, QS_GRID_Q6_K};

static const qs_method_key rtn_keys[] = {
    QS_WEIGHT_KEYS,
    {"act", NULL, QS_KEY_WORD, offsetof(qs_step, a_mode), 0, 0, 1, "tensor|token", act_values, "tensor or token",
     "activation scales: per tensor (static, calibrated) or per token (dynamic)", 0},
    {"grid", NULL, QS_KEY_WORD, offsetof(qs_step, w_grid), 0, 0, 0, "std|ggml|q4_k|q6_k", grid_values,
     "std, ggml, q4_k or q6_k",
     "weight grid: qscope's, llama.cpp's blocks (group=32: w=4 sym=1 Q4_0, w=8 sym=1 Q8_0, w=4 Q4_1), or its "
     "k-quant super-blocks of 256 (q4_k: w=4 asymmetric, q6_k: w=6 symmetric; group and sym implied)", 0},
};

static int rtn_extra(const char *spec, qs_step *s, const char *key, const char *val, qs_status *st) {
    *st = QS_OK;
    return !val && qs_spec_setting(key, s);
}

static qs_status rtn_check(const char *spec, qs_step *s) {
    if (s->w_grid == QS_GRID_Q4_K || s->w_grid == QS_GRID_Q6_K) {
        /* the grid is one llama.cpp type: bits, groups and symmetry follow from it */
        int q4 = s->w_grid == QS_GRID_Q4_K, bits = q4 ? 4 : 6;
        const char *g = q4 ? "q4_k" : "q6_k";
        /* what the grid is, for the refusals: "grid=q4_k is llama.cpp's Q4_K: ..." */
        const char *what = q4 ? "llama.cpp's Q4_K: super-blocks of 256, 4-bit asymmetric (w=4), a scale and a min per 32"
                              : "llama.cpp's Q6_K: super-blocks of 256, 6-bit symmetric (w=6), a scale per 16";
        if (s->w_bits == 16 && s->a_bits == 16 && s->kv_bits == 16) s->w_bits = bits;
        if (s->w_bits != bits) return qs_fail(QS_EARG, "%s: grid=%s is %s; got w=%d", spec, g, what, s->w_bits);
        if (s->w_group)
            return qs_fail(QS_EARG, "%s: grid=%s is %s, its groups fixed; drop group=%d", spec, g, what, s->w_group);
        if (q4 && s->w_sym) return qs_fail(QS_EARG, "%s: grid=q4_k is %s; drop sym=1", spec, what);
        s->w_sym = !q4;
    }
    if (s->w_bits == 16 && s->a_bits == 16 && s->kv_bits == 16)
        return qs_fail(QS_EARG, "%s: rtn quantizes nothing (give w, a or kv bits)", spec);
    if (s->a_bits == 16 && s->kv_bits == 16) s->a_mode = QS_AQ_TOKEN; /* act= has nothing to scale */
    if (s->w_grid == QS_GRID_GGML && (s->w_group != 32 || !qs_ggml_type_of(s->w_bits, s->w_sym)))
        return qs_fail(QS_EARG,
                       "%s: grid=ggml is llama.cpp's blocks of 32: group=32 with w=4,sym=1 (Q4_0), w=8,sym=1 (Q8_0) "
                       "or w=4,sym=0 (Q4_1); got w=%d, group=%d, sym=%d",
                       spec, s->w_bits, s->w_group, s->w_sym);
    return QS_OK;
}

static void rtn_format(const qs_step *s, char *b, size_t cap) {
    qs_step t = *s;
    if (t.w_grid == QS_GRID_Q6_K) t.w_sym = 0; /* implied by the grid */
    qs_spec_weight_keys_format(&t, b, cap);
    /* act= scales the activations and the K/V cache: written when either is quantized */
    if (s->a_bits != 16 || s->kv_bits != 16) qs_spec_addf(b, cap, "act=%s", s->a_mode == QS_AQ_STATIC ? "tensor" : "token");
    if (s->kv_bits && s->kv_bits != s->a_bits) qs_spec_addf(b, cap, "kv=%d", s->kv_bits);
    if (s->w_grid == QS_GRID_GGML) qs_spec_addf(b, cap, "grid=ggml");
    if (s->w_grid == QS_GRID_Q4_K) qs_spec_addf(b, cap, "grid=q4_k");
    if (s->w_grid == QS_GRID_Q6_K) qs_spec_addf(b, cap, "grid=q6_k");
}

/* GPTQ weights and static activation scales calibrate. */
static int rtn_needs_calib(const qs_step *s) {
    return s->w_gptq || (s->a_mode == QS_AQ_STATIC && (s->a_bits < 16 || s->kv_bits < 16));
}

const qs_method_def qs_method_rtn = {
    .id = QS_M_RTN, .name = "rtn",
    .summary = "round-to-nearest baselines: weights (per row or group, or GPTQ), activations, K/V cache",
    QS_METHOD_KEYS(rtn_keys), .bare_hint = " nor a setting name like W4A4KV", .extra = rtn_extra,
    .check = rtn_check, .format = rtn_format, .needs_calib = rtn_needs_calib, .apply = rtn_apply,
};
