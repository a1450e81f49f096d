/* hf_config.c — reading config.json for the family descriptions: typed keys
 * with transformers' defaults, the shape keys most families share, and RoPE
 * with its scaling kinds. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/family_impl.h"
#include "model/hf_impl.h"

const char *qs_cfgr_path(const qs_cfgr *r) { return r->path; }

static const cJSON *item(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

int qs_cfgr_has(const qs_cfgr *r, const char *key) { return item(r->root, key) != NULL; }

qs_status qs_cfgr_int(const qs_cfgr *r, const char *key, int required, int def, int lo, int *out) {
    const cJSON *v = item(r->root, key);
    if (!v) {
        if (required) return qs_fail(QS_EFORMAT, "%s: missing '%s'", r->path, key);
        *out = def;
        return QS_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    if (!cJSON_IsNumber(v) || floor(d) != d || d < lo || d > (double)(1 << 24))
        return qs_fail(QS_EFORMAT, "%s: '%s' must be an integer from %d to %d", r->path, key, lo, 1 << 24);
    *out = (int)d;
    return QS_OK;
}

static qs_status num_in(const char *path, const cJSON *obj, const char *prefix, const char *key, double def,
                        double *out) {
    const cJSON *v = item(obj, key);
    if (!v) {
        *out = def;
        return QS_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return qs_fail(QS_EFORMAT, "%s: '%s%s' must be a number", path, prefix, key);
    *out = v->valuedouble;
    return QS_OK;
}

qs_status qs_cfgr_float(const qs_cfgr *r, const char *key, double def, double *out) {
    return num_in(r->path, r->root, "", key, def, out);
}

qs_status qs_cfgr_optional(const qs_cfgr *r, const char *key, double def, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (v && cJSON_IsNull(v)) {
        *out = 0;
        return QS_OK;
    }
    return qs_cfgr_float(r, key, def, out);
}

qs_status qs_cfgr_positive(const qs_cfgr *r, const char *key, double def, float *out) {
    double v;
    qs_status st = qs_cfgr_float(r, key, def, &v);
    if (st) return st;
    if (!(v > 0) || (float)v <= 0 || !isfinite((float)v))
        return qs_fail(QS_EFORMAT, "%s: '%s' must be a number above 0, got %g", r->path, key, v);
    *out = (float)v;
    return QS_OK;
}

qs_status qs_cfgr_bool(const qs_cfgr *r, const char *key, int def, int *out) {
    const cJSON *v = item(r->root, key);
    if (!v) {
        *out = def;
        return QS_OK;
    }
    if (!cJSON_IsBool(v)) return qs_fail(QS_EFORMAT, "%s: '%s' must be true or false", r->path, key);
    *out = cJSON_IsTrue(v);
    return QS_OK;
}

const char *qs_cfgr_str(const qs_cfgr *r, const char *key) {
    const cJSON *v = item(r->root, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

qs_status qs_cfgr_act(const qs_cfgr *r, const char *key, const char *def, qs_act *out) {
    const char *a = qs_cfgr_str(r, key);
    if (!a) a = def;
    if (!strcmp(a, "relu")) *out = QS_ACT_RELU;
    else if (!strcmp(a, "gelu")) *out = QS_ACT_GELU;
    else if (!strcmp(a, "gelu_new") || !strcmp(a, "gelu_pytorch_tanh") || !strcmp(a, "gelu_fast"))
        *out = QS_ACT_GELU_TANH;
    else if (!strcmp(a, "silu") || !strcmp(a, "swish")) *out = QS_ACT_SILU;
    else return qs_fail(QS_EUNSUPPORTED, "%s: %s '%.40s' is not supported (relu, gelu, gelu_new, "
                        "gelu_pytorch_tanh, silu)", r->path, key, a);
    return QS_OK;
}

qs_status qs_cfgr_refuse(const qs_cfgr *r, const char *key, const char *why) {
    const cJSON *v = item(r->root, key);
    if (!v || cJSON_IsFalse(v) || (cJSON_IsNumber(v) && v->valuedouble == 0)) return QS_OK;
    return qs_fail(QS_EUNSUPPORTED, "%s: '%s' is set; qscope does not implement it (%s)", r->path, key, why);
}

qs_status qs_cfgr_shape(const qs_cfgr *r, qs_config *g, int def_head_dim, int def_max_pos, int def_tie) {
    qs_status st;
    if ((st = qs_cfgr_int(r, "hidden_size", 1, 0, 1, &g->d_model)) ||
        (st = qs_cfgr_int(r, "num_hidden_layers", 1, 0, 1, &g->n_layers)) ||
        (st = qs_cfgr_int(r, "num_attention_heads", 1, 0, 1, &g->n_heads)) ||
        (st = qs_cfgr_int(r, "num_key_value_heads", 0, g->n_heads, 1, &g->n_kv_heads)) ||
        (st = qs_cfgr_int(r, "intermediate_size", 1, 0, 1, &g->d_ff)) ||
        (st = qs_cfgr_int(r, "vocab_size", 1, 0, 1, &g->vocab)) ||
        (st = qs_cfgr_int(r, "max_position_embeddings", 0, def_max_pos, 1, &g->max_pos)) ||
        (st = qs_cfgr_bool(r, "tie_word_embeddings", def_tie, &g->tied_head)))
        return st;
    int hd = def_head_dim ? def_head_dim : g->d_model / g->n_heads;
    if ((st = qs_cfgr_int(r, "head_dim", 0, hd, 1, &g->head_dim))) return st;
    if (!qs_cfgr_has(r, "head_dim") && !def_head_dim && g->d_model % g->n_heads)
        return qs_fail(QS_EFORMAT, "%s: hidden size %d is not a multiple of %d heads", r->path, g->d_model,
                       g->n_heads);
    return QS_OK;
}

/* A list of n finite numbers above 0 in rope_scaling. */
static qs_status factors(const qs_cfgr *r, const cJSON *rs, const char *key, int n, float *out) {
    const cJSON *a = item(rs, key);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return qs_fail(QS_EFORMAT, "%s: rope_scaling.%s must be a list of %d numbers (rotary dims / 2)", r->path,
                       key, n);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || !isfinite(e->valuedouble))
            return qs_fail(QS_EFORMAT, "%s: rope_scaling.%s[%d] must be a number above 0", r->path, key, i);
        out[i++] = (float)e->valuedouble;
    }
    return QS_OK;
}

static double yarn_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * log(scale) + 1.0; }

static qs_status rope_scaling(const qs_cfgr *r, qs_config *g, const cJSON *rs) {
    qs_rope *p = &g->rope;
    const char *path = r->path;
    const cJSON *t = item(rs, "rope_type");
    if (!t) t = item(rs, "type");
    if (!cJSON_IsString(t)) return qs_fail(QS_EFORMAT, "%s: rope_scaling has no rope_type", path);
    const char *type = t->valuestring;
    double factor = 0;
    qs_status st;
    if (strcmp(type, "default") && strcmp(type, "longrope")) {
        if ((st = num_in(path, rs, "rope_scaling.", "factor", 0, &factor))) return st;
        if (!(factor >= 1))
            return qs_fail(QS_EFORMAT, "%s: rope_scaling.factor must be a number of at least 1", path);
    }
    p->factor = (float)factor;
    if (!strcmp(type, "default")) {
        p->kind = QS_ROPE_DEFAULT;
    } else if (!strcmp(type, "linear")) {
        p->kind = QS_ROPE_LINEAR;
    } else if (!strcmp(type, "dynamic")) {
        p->kind = QS_ROPE_DYNAMIC;
        if (p->dim <= 2) return qs_fail(QS_EFORMAT, "%s: dynamic RoPE needs more than 2 rotary dims", path);
    } else if (!strcmp(type, "llama3")) {
        p->kind = QS_ROPE_LLAMA3;
        double lo = 0, hi = 0, om = 0;
        if ((st = num_in(path, rs, "rope_scaling.", "low_freq_factor", NAN, &lo)) ||
            (st = num_in(path, rs, "rope_scaling.", "high_freq_factor", NAN, &hi)) ||
            (st = num_in(path, rs, "rope_scaling.", "original_max_position_embeddings", NAN, &om)))
            return st;
        if (!(lo > 0) || !(hi > lo) || !(om >= 1) || om > (1 << 24))
            return qs_fail(QS_EFORMAT, "%s: rope_scaling llama3 needs low_freq_factor > 0, high_freq_factor "
                           "above it and original_max_position_embeddings", path);
        p->low_freq = (float)lo;
        p->high_freq = (float)hi;
        p->orig_max = (int)om;
    } else if (!strcmp(type, "yarn")) {
        p->kind = QS_ROPE_YARN;
        double om = g->max_pos, af = NAN, mscale = 0, mscale_all = 0, bf = 0, bs = 0;
        if (item(rs, "original_max_position_embeddings")) {
            /* the ratio of the two lengths replaces factor (transformers' rule) */
            if ((st = num_in(path, rs, "rope_scaling.", "original_max_position_embeddings", 0, &om))) return st;
            if (!(om >= 1) || om > (1 << 24))
                return qs_fail(QS_EFORMAT, "%s: rope_scaling.original_max_position_embeddings must be a "
                               "positive integer", path);
            factor = (double)g->max_pos / om;
            p->factor = (float)factor;
        }
        if ((st = num_in(path, rs, "rope_scaling.", "attention_factor", NAN, &af)) ||
            (st = num_in(path, rs, "rope_scaling.", "mscale", 0, &mscale)) ||
            (st = num_in(path, rs, "rope_scaling.", "mscale_all_dim", 0, &mscale_all)) ||
            (st = num_in(path, rs, "rope_scaling.", "beta_fast", 0, &bf)) ||
            (st = num_in(path, rs, "rope_scaling.", "beta_slow", 0, &bs)))
            return st;
        if (isnan(af))
            af = mscale != 0 && mscale_all != 0 ? yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all)
                                                : yarn_mscale(factor, 1);
        p->orig_max = (int)om;
        p->attn_factor = (float)af;
        p->beta_fast = (float)(bf != 0 ? bf : 32);
        p->beta_slow = (float)(bs != 0 ? bs : 1);
    } else if (!strcmp(type, "longrope")) {
        p->kind = QS_ROPE_LONGROPE;
        int half = p->dim / 2;
        if (half > QS_ROPE_FACTORS)
            return qs_fail(QS_EUNSUPPORTED, "%s: longrope over %d rotary dims (qscope holds up to %d)", path,
                           p->dim, 2 * QS_ROPE_FACTORS);
        if ((st = factors(r, rs, "short_factor", half, p->short_factor)) ||
            (st = factors(r, rs, "long_factor", half, p->long_factor)))
            return st;
        int om = g->max_pos;
        if ((st = qs_cfgr_int(r, "original_max_position_embeddings", 0, g->max_pos, 1, &om))) return st;
        double af = NAN;
        if ((st = num_in(path, rs, "rope_scaling.", "attention_factor", NAN, &af))) return st;
        factor = (double)g->max_pos / om;
        if (qs_cfgr_has(r, "original_max_position_embeddings")) p->factor = (float)factor;
        else if ((st = num_in(path, rs, "rope_scaling.", "factor", 1, &factor))) return st;
        if (isnan(af)) af = factor <= 1 ? 1.0 : sqrt(1 + log(factor) / log((double)om));
        p->orig_max = om;
        p->attn_factor = (float)af;
    } else {
        return qs_fail(QS_EUNSUPPORTED, "%s: rope_scaling type '%.40s' is not supported (default, linear, "
                       "dynamic, yarn, llama3, longrope)", path, type);
    }
    return QS_OK;
}

qs_status qs_cfgr_rope(const qs_cfgr *r, qs_config *g, const char *theta_key, double def_theta,
                       const char *fraction_key, double def_fraction) {
    qs_status st;
    double frac;
    if ((st = qs_cfgr_positive(r, theta_key, def_theta, &g->rope_theta)) ||
        (st = qs_cfgr_float(r, fraction_key, def_fraction, &frac)))
        return st;
    if (!(frac > 0) || frac > 1)
        return qs_fail(QS_EFORMAT, "%s: '%s' must be in (0, 1]", r->path, fraction_key);
    g->rope.kind = QS_ROPE_DEFAULT;
    g->rope.dim = (int)(g->head_dim * frac);
    if (g->rope.dim < 2 || g->rope.dim % 2)
        return qs_fail(QS_EFORMAT, "%s: %s %g of head_dim %d gives %d rotary dims (an even number from 2 expected)",
                       r->path, fraction_key, frac, g->head_dim, g->rope.dim);
    const cJSON *rs = item(r->root, "rope_scaling");
    if (!rs) rs = item(r->root, "rope_parameters");
    if (!rs) return QS_OK;
    if (!cJSON_IsObject(rs)) return qs_fail(QS_EFORMAT, "%s: 'rope_scaling' must be an object", r->path);
    const cJSON *th = item(rs, "rope_theta");
    if (th) {
        if (!cJSON_IsNumber(th) || !(th->valuedouble > 0))
            return qs_fail(QS_EFORMAT, "%s: rope_parameters.rope_theta must be a number above 0", r->path);
        g->rope_theta = (float)th->valuedouble;
    }
    return rope_scaling(r, g, rs);
}

qs_status qs_cfgr_llama_like(const qs_cfgr *r, qs_config *g, int def_head_dim, int def_max_pos, int def_tie,
                             const char *act_key, const char *act_def, const char *family) {
    qs_status st;
    if ((st = qs_cfgr_shape(r, g, def_head_dim, def_max_pos, def_tie)) ||
        (st = qs_cfgr_positive(r, "rms_norm_eps", 1e-6, &g->norm_eps)) || (st = qs_cfgr_act(r, act_key, act_def, &g->act)) ||
        (st = qs_cfgr_rope(r, g, "rope_theta", 10000.0, "partial_rotary_factor", 1.0)))
        return st;
    if (g->rope.dim != g->head_dim) {
        char why[64];
        snprintf(why, sizeof why, "%s rotates whole heads", family);
        return qs_cfgr_refuse(r, "partial_rotary_factor", why);
    }
    return QS_OK;
}
