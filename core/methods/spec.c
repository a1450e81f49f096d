/* spec.c — variant spec strings, read and written through the method table:
 * "method:key=value,...+method:..." (methods.h). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "methods/methods.h"
#include "methods/methods_impl.h"

const char *qs_method_name(qs_method m) {
    const qs_method_def *d = qs_method_of(m);
    return d ? d->name : "?";
}

static int *ifield(qs_step *s, const qs_method_key *k) { return (int *)(void *)((char *)s + k->off); }
static float *ffield(qs_step *s, const qs_method_key *k) { return (float *)(void *)((char *)s + k->off); }


/* Word i of "a|b|c" into buf; 0 when there is no word i. */
static int word_at(const char *words, int i, char *buf, size_t cap) {
    const char *p = words;
    for (; i > 0 && p; i--) {
        p = strchr(p, '|');
        if (p) p++;
    }
    if (!p || !*p) return 0;
    size_t n = strcspn(p, "|");
    if (n >= cap) n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = 0;
    return 1;
}

double qs_method_key_get(const qs_method_key *k, const qs_step *s) {
    qs_step *w = (qs_step *)s;
    if (k->kind == QS_KEY_FLOAT) return *ffield(w, k);
    int v = *ifield(w, k);
    if (k->kind != QS_KEY_WORD) return v;
    char word[64];
    for (int i = 0; word_at(k->words, i, word, sizeof word); i++) /* values has one entry per word */
        if (k->values[i] == v) return i;
    return 0;
}

/* Defaults of a method: "not quantized" everywhere, then its keys', then its own. */
static void step_defaults(qs_step *s, const qs_method_def *d) {
    memset(s, 0, sizeof *s);
    s->method = d->id;
    s->w_bits = 16;
    s->a_bits = 16;
    s->kv_bits = 0; /* 0: follow a */
    s->a_mode = QS_AQ_TOKEN;
    s->threshold = 6.0f;
    s->round = 8;
    s->reorder = 1;
    for (int i = 0; i < d->n_keys; i++) {
        const qs_method_key *k = &d->keys[i];
        if (k->kind == QS_KEY_FLOAT) *ffield(s, k) = (float)k->def;
        else if (k->kind == QS_KEY_WORD) *ifield(s, k) = k->values[(int)k->def];
        else *ifield(s, k) = (int)k->def;
    }
    if (d->init) d->init(s);
}

qs_status qs_spec_get_int(const char *spec, const char *k, const char *v, int lo, int hi, int *out) {
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
    qs_status st = qs_spec_get_int(spec, k, v, 2, 16, &b);
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

static qs_status get_word(const char *spec, const qs_method_key *k, const char *key, const char *v, int *out) {
    char w[64];
    for (int i = 0; word_at(k->words, i, w, sizeof w); i++)
        if (!strcmp(v, w)) {
            *out = k->values[i];
            return QS_OK;
        }
    return qs_fail(QS_EARG, "%s: '%s' is %s, got '%s'", spec, key, k->choices, v);
}

static qs_status set_key(const char *spec, qs_step *s, const qs_method_key *k, const char *key, const char *val) {
    switch (k->kind) {
    case QS_KEY_INT: return qs_spec_get_int(spec, key, val, (int)k->lo, (int)k->hi, ifield(s, k));
    case QS_KEY_BITS: return get_bits(spec, key, val, ifield(s, k));
    case QS_KEY_FLOAT: return get_float(spec, key, val, k->lo, k->hi, ffield(s, k));
    case QS_KEY_BOOL: return get_bool(spec, key, val, ifield(s, k));
    case QS_KEY_WORD: return get_word(spec, k, key, val, ifield(s, k));
    }
    return qs_fail(QS_EARG, "%s: key '%s' has no type", spec, key);
}

/* Set key=val (val NULL: a bare word) on step s. On failure *at is where in
 * the item the fault is: 0 the key, 1 the value. */
static qs_status parse_kv(const char *spec, const qs_method_def *d, qs_step *s, const char *key, const char *val,
                          int *at) {
    qs_status st = QS_OK;
    *at = 0;
    if (!val) { /* a bare word: only a method's extra words (setting names) */
        if (d->extra && d->extra(spec, s, key, NULL, &st)) return st;
        return qs_fail(QS_EARG, "%s: '%s' is not key=value%s", spec, key, d->bare_hint ? d->bare_hint : "");
    }
    for (int i = 0; i < d->n_keys; i++) {
        const qs_method_key *k = &d->keys[i];
        if (!strcmp(key, k->name) || (k->alias && !strcmp(key, k->alias))) {
            *at = 1;
            return set_key(spec, s, k, key, val);
        }
    }
    if (d->extra && d->extra(spec, s, key, val, &st)) {
        *at = 1;
        return st;
    }
    return qs_fail(QS_EARG, "%s: unknown key '%s' for %s", spec, key, d->name);
}

/* The name a key is known by (its alias gives the key's own name), to find a
 * key given twice. */
static const char *key_name(const qs_method_def *d, const char *key) {
    for (int i = 0; i < d->n_keys; i++)
        if (d->keys[i].alias && !strcmp(key, d->keys[i].alias)) return d->keys[i].name;
    return key;
}

/* Add to the message the spec and, under it, a caret at byte `at`: the two
 * lines after the one that says what is wrong. */
static qs_status caret(qs_status st, const char *spec, size_t at) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", qs_last_error());
    return qs_fail(st, "%s\n  %s\n  %*s^", msg, spec, (int)at, "");
}

static char *trim(char *p) {
    while (isspace((unsigned char)*p)) p++;
    for (char *e = p + strlen(p); e > p && isspace((unsigned char)e[-1]);) *--e = 0;
    return p;
}

/* The options of one step: "key=value,..." in args (a part of buf, a copy of
 * spec, so that a pointer's offset in buf is its column in spec). */
static qs_status parse_args(const char *spec, const char *buf, const qs_method_def *d, qs_step *s, char *args) {
    const char *seen[64];
    int n_seen = 0;
    for (char *item = args;;) {
        char *comma = strchr(item, ',');
        if (comma) *comma = 0;
        char *kv = trim(item);
        if (!*kv) {
            if (comma) return caret(qs_fail(QS_EARG, "%s: an empty option before ','", spec), spec, (size_t)(comma - buf));
            return caret(qs_fail(QS_EARG, "%s: nothing after ','", spec), spec, (size_t)(item - 1 - buf));
        }
        char *eq = strchr(kv, '='), *val = NULL;
        if (eq) {
            *eq = 0;
            val = eq + 1;
            trim(kv);
        }
        const char *name = key_name(d, kv);
        for (int i = 0; i < n_seen; i++)
            if (!strcmp(seen[i], name))
                return caret(qs_fail(QS_EARG, "%s: '%s' is given twice", spec, name), spec, (size_t)(kv - buf));
        if (n_seen < 64) seen[n_seen++] = name;
        int at;
        qs_status st = parse_kv(spec, d, s, kv, val, &at);
        if (st) return caret(st, spec, (size_t)((at && val ? val : kv) - buf));
        if (!comma) return QS_OK;
        item = comma + 1;
    }
}

void qs_spec_step_format(const qs_step *s, char *buf, size_t cap) {
    const qs_method_def *d = qs_method_of(s->method);
    int n = snprintf(buf, cap, "%s", d ? d->name : "?");
    if (d && d->format && n >= 0 && (size_t)n < cap) {
        char opts[256] = "";
        d->format(s, opts, sizeof opts);
        if (*opts) snprintf(buf + n, cap - (size_t)n, ":%s", opts + 1); /* opts starts with ',' */
    }
}

void qs_spec_addf(char *buf, size_t cap, const char *fmt, ...) {
    size_t n = strlen(buf);
    if (n + 1 >= cap) return;
    buf[n] = ',';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n + 1, cap - n - 1, fmt, ap);
    va_end(ap);
}

static char *method_list(char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < qs_method_count() && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", qs_method_at(i)->name);
    return buf;
}

qs_status qs_spec_parse(const char *spec, qs_spec *out) {
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) return qs_fail(QS_EARG, "empty variant spec");
    size_t len = strlen(spec);
    if (len >= 480) return qs_fail(QS_EARG, "variant spec is too long (%zu characters)", len);
    char buf[512];
    memcpy(buf, spec, len + 1);
    for (char *item = buf;;) {
        char *plus = strchr(item, '+');
        if (plus) *plus = 0;
        char *part = trim(item);
        if (!*part) {
            if (item > buf) return caret(qs_fail(QS_EARG, "%s: nothing after '+'", spec), spec, (size_t)(item - 1 - buf));
            return caret(qs_fail(QS_EARG, "%s: nothing before '+'", spec), spec, (size_t)(plus ? plus - buf : 0));
        }
        if (out->n == QS_SPEC_MAX_STEPS)
            return caret(qs_fail(QS_EARG, "%s: more than %d methods chained", spec, QS_SPEC_MAX_STEPS), spec,
                         (size_t)(part - buf));
        char *colon = strchr(part, ':'), *args = NULL;
        if (colon) {
            *colon = 0;
            args = colon + 1;
        }
        trim(part);
        const qs_method_def *d = qs_method_find(part);
        if (!d) {
            char names[128];
            return caret(qs_fail(QS_EARG, "%s: unknown method '%s' (%s)", spec, part, method_list(names, sizeof names)),
                         spec, (size_t)(part - buf));
        }
        qs_step *s = &out->steps[out->n++];
        step_defaults(s, d);
        if (args && *trim(args)) {
            if (!d->n_keys && !d->extra)
                return caret(qs_fail(QS_EARG, "%s: %s takes no options", spec, d->name), spec, (size_t)(args - buf));
            qs_status st = parse_args(spec, buf, d, s, args);
            if (st) return st;
        } else if (colon && (d->n_keys || d->extra)) {
            return caret(qs_fail(QS_EARG, "%s: nothing after ':'", spec), spec, (size_t)(colon - buf));
        }
        if (s->kv_bits == 0) s->kv_bits = s->a_bits;
        if (d->check) {
            qs_status st = d->check(spec, s);
            if (st) return caret(st, spec, (size_t)(part - buf));
        }
        if (s->w_group && s->w_bits == 16)
            return caret(qs_fail(QS_EARG, "%s: group needs weight bits (w)", spec), spec, (size_t)(part - buf));
        if (!plus) break;
        item = plus + 1;
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

/* ---- help ---- */

static int fmt_num(char *b, size_t cap, double x) { return snprintf(b, cap, "%.10g", x); }

size_t qs_methods_help(char *buf, size_t cap) {
    size_t n = 0;
#define PUT(...)                                                             \
    do {                                                                     \
        int k_ = snprintf(buf + (n < cap ? n : cap), n < cap ? cap - n : 0, __VA_ARGS__); \
        if (k_ > 0) n += (size_t)k_;                                         \
    } while (0)
    for (int i = 0; i < qs_method_count(); i++) {
        const qs_method_def *d = qs_method_at(i);
        PUT("  %-6s %s%s%s%s\n", d->name, d->summary, d->aliases ? " (also: " : "", d->aliases ? d->aliases : "",
            d->aliases ? ")" : "");
        for (int j = 0; j < d->n_keys; j++) {
            const qs_method_key *k = &d->keys[j];
            char range[96], def[48];
            switch (k->kind) {
            case QS_KEY_BITS: snprintf(range, sizeof range, "2..8 or 16"); break;
            case QS_KEY_BOOL: snprintf(range, sizeof range, "0|1"); break;
            case QS_KEY_WORD: snprintf(range, sizeof range, "%s", k->words); break;
            default: {
                int m = fmt_num(range, sizeof range, k->lo);
                snprintf(range + m, sizeof range - m, "..");
                fmt_num(range + m + 2, sizeof range - m - 2, k->hi);
            }
            }
            if (k->kind == QS_KEY_WORD) word_at(k->words, (int)k->def, def, sizeof def);
            else if (k->kind == QS_KEY_BITS && k->def == 0) snprintf(def, sizeof def, "as a");
            else fmt_num(def, sizeof def, k->def);
            char name[32];
            snprintf(name, sizeof name, "%s%s%s", k->name, k->alias ? "|" : "", k->alias ? k->alias : "");
            PUT("    %-13s %-16s default %-7s %s\n", name, range, def, k->help);
        }
    }
#undef PUT
    return n;
}

void qs_spec_weight_keys_format(const qs_step *s, char *b, size_t cap) {
    if (s->w_bits != 16) qs_spec_addf(b, cap, "w=%d", s->w_bits);
    if (s->w_group) qs_spec_addf(b, cap, "group=%d", s->w_group);
    if (s->w_sym) qs_spec_addf(b, cap, "sym=%d", 1);
    if (s->w_gptq) qs_spec_addf(b, cap, "wq=%s", "gptq");
    if (s->a_bits != 16) qs_spec_addf(b, cap, "a=%d", s->a_bits);
}

/* ---- the papers' setting names: W4A16, W4A4KV, W16A8, ... ---- */

int qs_spec_setting(const char *v, qs_step *s) {
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
