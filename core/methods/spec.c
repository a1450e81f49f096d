#include "methods/methods.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"

static const char *const method_names[] = {"fp32", "rtn", "int8", "rptq", "slice"};

const char *qs_method_name(qs_method m) { return (unsigned)m <= QS_M_SLICE ? method_names[m] : "?"; }

static void step_defaults(qs_step *s, qs_method m) {
    memset(s, 0, sizeof *s);
    s->method = m;
    s->w_bits = 16;
    s->a_bits = 16;
    s->kv_bits = 0; /* 0: follow a */
    s->a_mode = QS_AQ_TOKEN;
    s->threshold = 6.0f;
    s->round = 8;
    s->reorder = 1;
    s->ratio = -1; /* unset: slice's default */
    if (m == QS_M_INT8) s->w_bits = 8;
    if (m == QS_M_RPTQ) {
        s->a_mode = QS_AQ_STATIC;
        s->g = 32;
        s->g_head = 4;
    }
}

/* Parse an integer value of key k in [lo, hi]; bits also accept 16. */
static qs_status get_int(const char *spec, const char *k, const char *v, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno)
        return qs_fail(QS_EARG, "%s: '%s' expects an integer, got '%s'", spec, k, v);
    if (x < lo || x > hi)
        return qs_fail(QS_EARG, "%s: '%s' = %ld is out of range [%d, %d]", spec, k, x, lo, hi);
    *out = (int)x;
    return QS_OK;
}

static qs_status get_bits(const char *spec, const char *k, const char *v, int *out) {
    int b = 0;
    qs_status st = get_int(spec, k, v, 2, 16, &b);
    if (st) return st;
    if (b > 8 && b != 16)
        return qs_fail(QS_EARG, "%s: '%s' = %d bits: use 2..8, or 16 for no quantization", spec, k, b);
    *out = b;
    return QS_OK;
}

static qs_status get_float(const char *spec, const char *k, const char *v, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno) return qs_fail(QS_EARG, "%s: '%s' expects a number, got '%s'", spec, k, v);
    if (!(x >= lo && x <= hi)) return qs_fail(QS_EARG, "%s: '%s' = %g is out of range [%g, %g]", spec, k, x, lo, hi);
    *out = (float)x;
    return QS_OK;
}

static qs_status get_bool(const char *spec, const char *k, const char *v, int *out) {
    if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes")) *out = 1;
    else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no")) *out = 0;
    else return qs_fail(QS_EARG, "%s: '%s' expects 0 or 1, got '%s'", spec, k, v);
    return QS_OK;
}

/* The paper's setting names: W4A16, W4A4KV, W16A8, ... */
static int parse_setting(const char *v, qs_step *s) {
    int w, a, n = 0;
    if (sscanf(v, "%*[Ww]%d%*[Aa]%d%n", &w, &a, &n) != 2) return 0;
    const char *rest = v + n;
    int kv_only = 0;
    if (!strcmp(rest, "KV") || !strcmp(rest, "kv")) kv_only = 1;
    else if (*rest) return 0;
    if (!((w >= 2 && w <= 8) || w == 16) || !((a >= 2 && a <= 8) || a == 16)) return 0;
    s->w_bits = w;
    if (kv_only) {
        s->a_bits = 16;
        s->kv_bits = a;
    } else {
        s->a_bits = a;
    }
    return 1;
}

static qs_status parse_kv(const char *spec, qs_step *s, char *key, char *val) {
    qs_method m = s->method;
    qs_status st = QS_OK;
    int site;
    if (!val) { /* a bare word: a setting name, or a flag */
        if ((m == QS_M_RTN || m == QS_M_RPTQ) && parse_setting(key, s)) return QS_OK;
        return qs_fail(QS_EARG, "%s: '%s' is not key=value%s", spec, key,
                       m == QS_M_RPTQ || m == QS_M_RTN ? " nor a setting name like W4A4KV" : "");
    }
    if (m == QS_M_RTN || m == QS_M_RPTQ) {
        if (!strcmp(key, "w")) return get_bits(spec, key, val, &s->w_bits);
        if (!strcmp(key, "a")) return get_bits(spec, key, val, &s->a_bits);
        if (!strcmp(key, "kv")) return get_bits(spec, key, val, &s->kv_bits);
        if (!strcmp(key, "sym")) return get_bool(spec, key, val, &s->w_sym);
        if (!strcmp(key, "group")) {
            if ((st = get_int(spec, key, val, 0, 1 << 20, &s->w_group))) return st;
            return QS_OK;
        }
        if (!strcmp(key, "wq")) {
            if (!strcmp(val, "rtn")) s->w_gptq = 0;
            else if (!strcmp(val, "gptq")) s->w_gptq = 1;
            else return qs_fail(QS_EARG, "%s: 'wq' is rtn or gptq, got '%s'", spec, val);
            return QS_OK;
        }
    }
    if (m == QS_M_RTN) {
        if (!strcmp(key, "act")) {
            if (!strcmp(val, "tensor")) s->a_mode = QS_AQ_STATIC;
            else if (!strcmp(val, "token")) s->a_mode = QS_AQ_TOKEN;
            else return qs_fail(QS_EARG, "%s: 'act' is tensor or token, got '%s'", spec, val);
            return QS_OK;
        }
    }
    if (m == QS_M_RPTQ) {
        if (!strcmp(key, "act")) {
            if (!strcmp(val, "static")) s->a_mode = QS_AQ_STATIC;
            else if (!strcmp(val, "token")) s->a_mode = QS_AQ_TOKEN;
            else return qs_fail(QS_EARG, "%s: 'act' is static (calibrated cluster ranges) or token (dynamic per token "
                                "and cluster), got '%s'", spec, val);
            return QS_OK;
        }
        if (!strcmp(key, "g")) return get_int(spec, key, val, 1, 4096, &s->g);
        if (!strcmp(key, "g_head")) return get_int(spec, key, val, 1, 1024, &s->g_head);
        if (!strcmp(key, "norm_a")) return get_bits(spec, key, val, &s->norm_a);
        if (!strcmp(key, "ref")) return get_bool(spec, key, val, &s->ref);
        if (!strcmp(key, "reorder")) return get_bool(spec, key, val, &s->reorder);
        if (!strcmp(key, "wgroups")) {
            if (!strcmp(val, "row")) s->w_cluster = 0;
            else if (!strcmp(val, "cluster")) s->w_cluster = 1;
            else return qs_fail(QS_EARG, "%s: 'wgroups' is row or cluster, got '%s'", spec, val);
            return QS_OK;
        }
        /* per-site cluster counts: g_attn_in=16, g_mlp_mid=8, ... */
        if (!strncmp(key, "g_", 2) && (site = qs_site_parse(key + 2)) >= 0) {
            if (site == QS_SITE_HEAD_IN || site == QS_SITE_RESID || site == QS_SITE_RESID_MID ||
                site == QS_SITE_EMBED || site == QS_SITE_V)
                return qs_fail(QS_EARG, "%s: RPTQ clusters sites attn_in, q, k, attn_out, mlp_in, mlp_mid; not '%s'",
                               spec, key + 2);
            return get_int(spec, key, val, 1, 4096, &s->g_site[site]);
        }
    }
    if (m == QS_M_INT8) {
        if (!strcmp(key, "threshold") || !strcmp(key, "tau")) return get_float(spec, key, val, 0, 1e6, &s->threshold);
        if (!strcmp(key, "act")) {
            if (!strcmp(val, "token")) s->int8_act = 0;
            else if (!strcmp(val, "tensor")) s->int8_act = 1;
            else return qs_fail(QS_EARG, "%s: 'act' is token or tensor, got '%s'", spec, val);
            return QS_OK;
        }
    }
    if (m == QS_M_SLICE) {
        if (!strcmp(key, "ratio") || !strcmp(key, "s")) return get_float(spec, key, val, 0, 0.95, &s->ratio);
        if (!strcmp(key, "round")) return get_int(spec, key, val, 1, 4096, &s->round);
        if (!strcmp(key, "head")) return get_bool(spec, key, val, &s->slice_head);
    }
    return qs_fail(QS_EARG, "%s: unknown key '%s' for %s", spec, key, qs_method_name(m));
}

void qs_spec_step_format(const qs_step *s, char *buf, size_t cap) {
    size_t n = 0;
#define ADD(...)                                                                    \
    do {                                                                            \
        int k_ = snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__);             \
        if (k_ > 0) n += (size_t)k_;                                                \
    } while (0)
    char sep = ':';
#define KV(fmt, ...)                                                                \
    do {                                                                            \
        ADD("%c" fmt, sep, __VA_ARGS__);                                            \
        sep = ',';                                                                  \
    } while (0)
    ADD("%s", qs_method_name(s->method));
    switch (s->method) {
    case QS_M_FP32: break;
    case QS_M_RTN:
    case QS_M_RPTQ:
        if (s->w_bits != 16) KV("w=%d", s->w_bits);
        if (s->w_group) KV("group=%d", s->w_group);
        if (s->w_sym) KV("sym=%d", 1);
        if (s->w_gptq) KV("wq=%s", "gptq");
        if (s->a_bits != 16) KV("a=%d", s->a_bits);
        if (s->method == QS_M_RTN && s->a_bits != 16) KV("act=%s", s->a_mode == QS_AQ_STATIC ? "tensor" : "token");
        if (s->kv_bits && s->kv_bits != s->a_bits) KV("kv=%d", s->kv_bits);
        if (s->method == QS_M_RPTQ) {
            KV("g=%d", s->g);
            if (s->g_head != 4) KV("g_head=%d", s->g_head);
            for (int i = 0; i < QS_SITE_COUNT; i++)
                if (s->g_site[i]) KV("g_%s=%d", qs_site_name(i), s->g_site[i]);
            if (s->norm_a) KV("norm_a=%d", s->norm_a);
            if (s->w_cluster) KV("wgroups=%s", "cluster");
            if (s->a_mode == QS_AQ_TOKEN) KV("act=%s", "token");
            if (!s->reorder) KV("reorder=%d", 0);
            if (s->ref) KV("ref=%d", 1);
        }
        break;
    case QS_M_INT8:
        KV("threshold=%g", s->threshold);
        if (s->int8_act) KV("act=%s", "tensor");
        break;
    case QS_M_SLICE:
        KV("ratio=%g", s->ratio);
        if (s->round != 8) KV("round=%d", s->round);
        if (s->slice_head) KV("head=%d", 1);
        break;
    }
#undef KV
#undef ADD
}

qs_status qs_spec_parse(const char *spec, qs_spec *out) {
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) return qs_fail(QS_EARG, "empty variant spec");
    size_t len = strlen(spec);
    if (len >= 480) return qs_fail(QS_EARG, "variant spec is too long (%zu characters)", len);
    char buf[512];
    memcpy(buf, spec, len + 1);
    char *save = NULL;
    for (char *part = strtok_r(buf, "+", &save); part; part = strtok_r(NULL, "+", &save)) {
        if (out->n == QS_SPEC_MAX_STEPS) return qs_fail(QS_EARG, "%s: more than %d methods chained", spec, QS_SPEC_MAX_STEPS);
        while (isspace((unsigned char)*part)) part++;
        char *colon = strchr(part, ':'), *args = NULL;
        if (colon) {
            *colon = 0;
            args = colon + 1;
        }
        for (char *e = part + strlen(part); e > part && isspace((unsigned char)e[-1]);) *--e = 0;
        int m = -1;
        for (int i = 0; i <= QS_M_SLICE; i++)
            if (!strcmp(part, method_names[i])) m = i;
        if (m < 0)
            return qs_fail(QS_EARG, "%s: unknown method '%s' (fp32, rtn, int8, rptq, slice)", spec, part);
        qs_step *s = &out->steps[out->n++];
        step_defaults(s, (qs_method)m);
        if (args && *args) {
            if (m == QS_M_FP32) return qs_fail(QS_EARG, "%s: fp32 takes no options", spec);
            char *save2 = NULL;
            for (char *kv = strtok_r(args, ",", &save2); kv; kv = strtok_r(NULL, ",", &save2)) {
                while (isspace((unsigned char)*kv)) kv++;
                char *eq = strchr(kv, '=');
                if (eq) *eq = 0;
                qs_status st = parse_kv(spec, s, kv, eq ? eq + 1 : NULL);
                if (st) return st;
            }
        } else if (colon && m != QS_M_FP32) {
            return qs_fail(QS_EARG, "%s: nothing after ':'", spec);
        }
        if (s->kv_bits == 0) s->kv_bits = s->a_bits;
        if (s->ratio < 0) s->ratio = m == QS_M_SLICE ? 0.25f : 0; /* the paper's headline ratio */
        if (m == QS_M_RTN && s->w_bits == 16 && s->a_bits == 16 && s->kv_bits == 16)
            return qs_fail(QS_EARG, "%s: rtn quantizes nothing (give w, a or kv bits)", spec);
        if (s->w_group && s->w_bits == 16) return qs_fail(QS_EARG, "%s: group needs weight bits (w)", spec);
    }
    if (!out->n) return qs_fail(QS_EARG, "empty variant spec");
    /* canonical text */
    size_t n = 0;
    for (int i = 0; i < out->n; i++) {
        char one[256];
        qs_spec_step_format(&out->steps[i], one, sizeof one);
        if (out->steps[i].method == QS_M_FP32 && out->n > 1) continue;
        n += (size_t)snprintf(out->text + n, sizeof out->text - n, "%s%s", n ? "+" : "", one);
        if (n >= sizeof out->text) break;
    }
    if (!n) snprintf(out->text, sizeof out->text, "fp32");
    return QS_OK;
}
