/* tok_pipe.c — tokenizer.json read in general, as Hugging Face's tokenizers
 * library runs it: added tokens split off the raw text, normalizer,
 * pre-tokenizer, BPE model (tok.c), and the decoder chain.
 *
 * Unicode normalization is utf8proc's; every regex (Split, Replace, the
 * ByteLevel pattern, Whitespace) runs on Oniguruma, the engine the reference
 * library uses, with the same search loop as its find_iter, so a published
 * pattern means the same thing here. Offsets are not tracked: only the ids
 * are wanted, and only one question needs the original position (Metaspace's
 * prepend_scheme "first": is the piece at the start of the text?).
 */
#include <oniguruma.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include <cJSON.h>

#include "tok/tok_impl.h"
#include "tok/unicode.h"

enum { N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWER, N_REPLACE, N_PREPEND, N_STRIP };
enum { P_SPLIT, P_BYTELEVEL, P_METASPACE, P_DIGITS, P_PUNCT, P_WHITESPACE, P_WSSPLIT };
enum { B_REMOVED, B_ISOLATED, B_PREV, B_NEXT, B_CONTIGUOUS };
enum { D_BYTELEVEL, D_METASPACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_REPLACE };

typedef struct {
    int type;
    regex_t *re; /* Replace with a Regex pattern; NULL for a literal one */
    char *a, *b; /* Replace: literal pattern, content; Prepend: text */
    int left, right;
} norm_step;

typedef struct {
    int type;
    regex_t *re;  /* Split (regex or escaped literal), ByteLevel with use_regex, Whitespace */
    char *src;    /* Split: the pattern as tokenizer.json wrote it (tok_pipe_get_step) */
    int literal;  /* Split: src is a String, not a Regex */
    int behavior, invert;
    int add_prefix_space;
    char rep[8]; /* Metaspace replacement */
    int rep_len, prepend, split; /* prepend: TOK_PREPEND_NEVER / _FIRST / _METASPACE_ALWAYS */
    int individual;               /* Digits individual_digits */
} pre_step;

typedef struct {
    int type;
    char *a, *b;     /* Strip content, Replace pattern / content, Metaspace replacement */
    int start, stop; /* Strip */
    int prepend;     /* Metaspace: strips the first token's leading space */
} dec_step;

struct tok_pipe {
    norm_step *norm;
    int n_norm;
    pre_step *pre;
    int n_pre;
    dec_step *dec;
    int n_dec;
    char desc[96];
};

/* ------------------------------------------------------------ Oniguruma */

static pthread_once_t onig_once = PTHREAD_ONCE_INIT;
static void pipe_onig_init(void) {
    OnigEncoding enc[1] = {ONIG_ENCODING_UTF8};
    onig_initialize(enc, 1);
}

static qs_status compile(const char *pat, size_t n, int literal, regex_t **out, const char *path) {
    pthread_once(&onig_once, pipe_onig_init);
    char *esc = NULL;
    if (literal) { /* escape every character outside [A-Za-z0-9] (regex::escape does the same job) */
        esc = malloc(2 * n + 1);
        if (!esc) return qs_fail(QS_ENOMEM, "%s: out of memory", path);
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)pat[i];
            if (ch < 0x80 && !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
                esc[o++] = '\\';
            esc[o++] = (char)ch;
        }
        pat = esc;
        n = o;
    }
    OnigErrorInfo ei;
    int r = onig_new(out, (const UChar *)pat, (const UChar *)pat + n, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                     ONIG_SYNTAX_DEFAULT, &ei);
    if (r != ONIG_NORMAL) {
        UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &ei);
        qs_status st = qs_fail(QS_EFORMAT, "%s: regex '%.*s': %s", path, (int)(n > 80 ? 80 : n), pat, (char *)msg);
        free(esc);
        *out = NULL;
        return st;
    }
    free(esc);
    return QS_OK;
}

/* A piece list: pieces are [off, off+len) of buf; orig0 marks the piece that
 * starts the original text (Metaspace "first"). */
typedef struct {
    char *buf;
    size_t n, cap;
    uint32_t *off, *len;
    uint8_t *first;
    size_t np, capp;
    int oom;
} plist;

static void pl_reset(plist *p) {
    p->n = 0;
    p->np = 0;
}

static void pl_free(plist *p) {
    free(p->buf);
    free(p->off);
    free(p->len);
    free(p->first);
}

/* Append a piece made of the concatenation a + b (either may be empty). */
static void pl_add2(plist *p, const char *a, size_t la, const char *b, size_t lb, int first) {
    if (!la && !lb) return; /* empty pieces are dropped, as the reference does */
    if (p->oom) return;
    size_t c1 = p->capp, c2 = p->capp, c3 = p->capp;
    if (!tok_grow((void **)&p->buf, &p->cap, p->n + la + lb, 1) ||
        !tok_grow((void **)&p->off, &c1, p->np + 1, sizeof *p->off) ||
        !tok_grow((void **)&p->len, &c2, p->np + 1, sizeof *p->len) ||
        !tok_grow((void **)&p->first, &c3, p->np + 1, 1)) {
        p->oom = 1;
        return;
    }
    p->capp = c1;
    if (la) memcpy(p->buf + p->n, a, la);
    if (lb) memcpy(p->buf + p->n + la, b, lb);
    p->off[p->np] = (uint32_t)p->n;
    p->len[p->np] = (uint32_t)(la + lb);
    p->first[p->np] = (uint8_t)first;
    p->np++;
    p->n += la + lb;
}

static void pl_add(plist *p, const char *a, size_t la, int first) { pl_add2(p, a, la, NULL, 0, first); }

/* ---------------------------------------------------- split by a pattern */

/* (start, end, is_match) spans covering s, as Pattern::find_matches gives. */
typedef struct {
    size_t s, e;
    int m;
} span;

typedef struct {
    span *v;
    size_t n, cap;
    int oom;
} spans;

static void sp_push(spans *a, size_t s, size_t e, int m) {
    if (!tok_grow((void **)&a->v, &a->cap, a->n + 1, sizeof *a->v)) {
        a->oom = 1;
        return;
    }
    a->v[a->n++] = (span){s, e, m};
}

static size_t utf8_len_at(const char *s, size_t n, size_t i) {
    uint32_t cp;
    return i < n ? qs_unicode_next(s + i, n - i, &cp) : 1;
}

/* onig's FindMatches: search from the end of the last match; an empty match
 * right where the last one ended is skipped by one character. */
static void regex_spans(regex_t *re, const char *s, size_t n, spans *out) {
    out->n = 0;
    if (!n) {
        sp_push(out, 0, 0, 0);
        return;
    }
    OnigRegion *rg = onig_region_new();
    if (!rg) {
        out->oom = 1;
        return;
    }
    const UChar *b = (const UChar *)s, *e = b + n;
    size_t prev = 0, last_end = 0;
    long last_match_end = -1;
    while (last_end <= n) {
        onig_region_clear(rg);
        int r = onig_search(re, b, e, b + last_end, e, rg, ONIG_OPTION_NONE);
        if (r < 0) break;
        size_t ms = (size_t)rg->beg[0], me = (size_t)rg->end[0];
        if (ms == me && last_match_end == (long)me) {
            last_end += utf8_len_at(s, n, last_end);
            continue;
        }
        last_end = me;
        last_match_end = (long)me;
        if (prev != ms) sp_push(out, prev, ms, 0);
        sp_push(out, ms, me, 1);
        prev = me;
    }
    onig_region_free(rg, 1);
    if (prev != n) sp_push(out, prev, n, 0);
}

typedef int (*char_pred)(uint32_t cp);

static void pred_spans(char_pred f, const char *s, size_t n, spans *out) {
    out->n = 0;
    if (!n) {
        sp_push(out, 0, 0, 0);
        return;
    }
    size_t last = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = qs_unicode_next(s + i, n - i, &cp);
        if (f(cp)) {
            if (last < i) sp_push(out, last, i, 0);
            sp_push(out, i, i + k, 1);
            last = i + k;
        }
        i += k;
    }
    if (n > last) sp_push(out, last, n, 0);
}

/* NormalizedString::split: fold the spans by behaviour, then keep the pieces
 * that are not removed (and not empty). */
static void split_apply(spans *a, int behavior, int invert, const char *s, int first, plist *out) {
    if (invert)
        for (size_t i = 0; i < a->n; i++) a->v[i].m = !a->v[i].m;
    span *v = a->v;
    size_t n = a->n, k = 0;
    int prev = 0;
    switch (behavior) {
    case B_ISOLATED:
        for (size_t i = 0; i < n; i++) v[i].m = 0;
        k = n;
        break;
    case B_REMOVED:
        k = n;
        break;
    case B_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            int m = v[i].m;
            if (m == prev && k) v[k - 1].e = v[i].e;
            else v[k++] = (span){v[i].s, v[i].e, 0};
            prev = m;
        }
        break;
    case B_PREV:
        for (size_t i = 0; i < n; i++) {
            int m = v[i].m;
            if (m && !prev && k) v[k - 1].e = v[i].e;
            else v[k++] = (span){v[i].s, v[i].e, 0};
            prev = m;
        }
        break;
    case B_NEXT: /* the same fold from the right */
        for (size_t i = n; i-- > 0;) {
            int m = v[i].m;
            span x = v[i];
            if (m && !prev && k) v[n - k].s = x.s; /* acc.last = the piece just to the right */
            else {
                k++;
                v[n - k] = (span){x.s, x.e, 0};
            }
            prev = m;
        }
        memmove(v, v + n - k, k * sizeof *v);
        break;
    }
    for (size_t i = 0; i < k; i++)
        if (!v[i].m) pl_add(out, s + v[i].s, v[i].e - v[i].s, first && v[i].s == 0);
}

/* ------------------------------------------------------- character tests */

static int is_ws(uint32_t cp) { return qs_unicode_class_of(cp) == QS_UNICODE_SPACE; }

static int is_numeric(uint32_t cp) { /* char::is_numeric: Nd, Nl, No */
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

static int is_punc(uint32_t cp) { /* is_ascii_punctuation || the P* categories */
    if (cp < 0x80 && ((cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
                      (cp >= 0x7B && cp <= 0x7E)))
        return 1;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

/* ---------------------------------------------------------- normalizers */

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sb;

static void sb_put(sb *b, const void *p, size_t n) {
    if (!tok_grow((void **)&b->s, &b->cap, b->n + n + 1, 1)) {
        b->oom = 1;
        return;
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
}

/* Replace every match of a step's pattern in s by its content. */
static void replace_all(const norm_step *st, const char *s, size_t n, sb *out, regex_t *re) {
    spans a = {0};
    regex_spans(re, s, n, &a);
    if (a.oom) out->oom = 1;
    size_t cl = strlen(st->b);
    for (size_t i = 0; i < a.n; i++) {
        if (a.v[i].m) sb_put(out, st->b, cl);
        else sb_put(out, s + a.v[i].s, a.v[i].e - a.v[i].s);
    }
    free(a.v);
}

/* Run the normalizer on s[0..n); the result is malloc'd into *out. */
static void normalize(const tok_pipe *p, const char *s, size_t n, sb *res) {
    sb cur = {0};
    sb_put(&cur, s, n);
    for (int i = 0; i < p->n_norm && !cur.oom; i++) {
        const norm_step *st = &p->norm[i];
        sb nx = {0};
        switch (st->type) {
        case N_NFC:
        case N_NFD:
        case N_NFKC:
        case N_NFKD: {
            int opt = UTF8PROC_STABLE;
            if (st->type == N_NFC || st->type == N_NFKC) opt |= UTF8PROC_COMPOSE;
            else opt |= UTF8PROC_DECOMPOSE;
            if (st->type == N_NFKC || st->type == N_NFKD) opt |= UTF8PROC_COMPAT;
            /* ASCII is left as it is by all four forms, has combining class 0
             * and is never the second character of a composition, so the text
             * can be cut in front of every ASCII character: only the pieces
             * "ASCII character + the non-ASCII run after it" go to utf8proc. */
            for (size_t q = 0; q < cur.n;) {
                size_t j = q;
                while (j < cur.n && (unsigned char)cur.s[j] < 0x80) j++;
                if (j == cur.n) {
                    sb_put(&nx, cur.s + q, j - q);
                    break;
                }
                size_t b = j > q ? j - 1 : j, e = j;
                sb_put(&nx, cur.s + q, b - q);
                while (e < cur.n && (unsigned char)cur.s[e] >= 0x80) e++;
                utf8proc_uint8_t *d = NULL;
                utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)cur.s + b, (utf8proc_ssize_t)(e - b), &d,
                                                  (utf8proc_option_t)opt);
                if (r >= 0 && d) sb_put(&nx, d, (size_t)r);
                else sb_put(&nx, cur.s + b, e - b); /* not UTF-8: left as it is */
                free(d);
                q = e;
            }
            break;
        }
        case N_LOWER: /* char::to_lowercase: the simple mapping, and U+0130 -> "i\u0307" */
            for (size_t j = 0; j < cur.n;) {
                uint32_t cp;
                size_t k = qs_unicode_next(cur.s + j, cur.n - j, &cp);
                char u[8];
                if (cp == 0x130) sb_put(&nx, "i\xcc\x87", 3);
                else sb_put(&nx, u, qs_unicode_put((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), u));
                j += k;
            }
            break;
        case N_REPLACE:
            replace_all(st, cur.s, cur.n, &nx, st->re);
            break;
        case N_PREPEND:
            if (cur.n) sb_put(&nx, st->a, strlen(st->a));
            sb_put(&nx, cur.s, cur.n);
            break;
        case N_STRIP: {
            size_t b = 0, e = cur.n;
            if (st->left)
                while (b < e) {
                    uint32_t cp;
                    size_t k = qs_unicode_next(cur.s + b, e - b, &cp);
                    if (!is_ws(cp)) break;
                    b += k;
                }
            if (st->right)
                while (e > b) {
                    size_t q = e - 1;
                    while (q > b && ((unsigned char)cur.s[q] & 0xC0) == 0x80) q--;
                    uint32_t cp;
                    qs_unicode_next(cur.s + q, e - q, &cp);
                    if (!is_ws(cp)) break;
                    e = q;
                }
            sb_put(&nx, cur.s + b, e - b);
            break;
        }
        }
        if (nx.oom) cur.oom = 1;
        free(cur.s);
        cur.s = nx.s;
        cur.n = nx.n;
        cur.cap = nx.cap;
        if (!cur.s) sb_put(&cur, "", 0);
    }
    *res = cur;
}

/* -------------------------------------------------------- pre-tokenizers */

static void pre_step_run(const pre_step *st, plist *in, plist *out, spans *a) {
    pl_reset(out);
    for (size_t i = 0; i < in->np && !out->oom && !a->oom; i++) {
        const char *s = in->buf + in->off[i];
        size_t n = in->len[i];
        int first = in->first[i];
        switch (st->type) {
        case P_SPLIT:
            regex_spans(st->re, s, n, a);
            split_apply(a, st->behavior, st->invert, s, first, out);
            break;
        case P_BYTELEVEL: {
            /* the mapping to characters is done by the model (byte_sym) */
            char *tmp = NULL;
            if (st->add_prefix_space && !(n && s[0] == ' ')) {
                tmp = malloc(n + 1);
                if (!tmp) {
                    out->oom = 1;
                    break;
                }
                tmp[0] = ' ';
                memcpy(tmp + 1, s, n);
                s = tmp;
                n++;
            }
            if (st->re) {
                regex_spans(st->re, s, n, a);
                split_apply(a, B_ISOLATED, 0, s, first, out);
            } else {
                pl_add(out, s, n, first);
            }
            free(tmp);
            break;
        }
        case P_METASPACE: {
            sb b = {0};
            int pre = st->prepend == TOK_PREPEND_METASPACE_ALWAYS || (st->prepend == TOK_PREPEND_FIRST && first);
            if (pre && !(n >= (size_t)st->rep_len && !memcmp(s, st->rep, (size_t)st->rep_len)) &&
                !(n && s[0] == ' '))
                sb_put(&b, st->rep, (size_t)st->rep_len);
            for (size_t j = 0; j < n; j++) {
                if (s[j] == ' ') sb_put(&b, st->rep, (size_t)st->rep_len);
                else sb_put(&b, s + j, 1);
            }
            if (b.oom) {
                out->oom = 1;
                free(b.s);
                break;
            }
            if (!st->split) {
                pl_add(out, b.s, b.n, first);
            } else {
                size_t beg = 0;
                for (size_t j = 1; j <= b.n; j++)
                    if (j == b.n || (j + (size_t)st->rep_len <= b.n && !memcmp(b.s + j, st->rep, (size_t)st->rep_len))) {
                        pl_add(out, b.s + beg, j - beg, first && beg == 0);
                        beg = j;
                    }
            }
            free(b.s);
            break;
        }
        case P_DIGITS:
            pred_spans(is_numeric, s, n, a);
            split_apply(a, st->individual ? B_ISOLATED : B_CONTIGUOUS, 0, s, first, out);
            break;
        case P_PUNCT:
            pred_spans(is_punc, s, n, a);
            split_apply(a, st->behavior, 0, s, first, out);
            break;
        case P_WHITESPACE:
            regex_spans(st->re, s, n, a);
            split_apply(a, B_REMOVED, 1, s, first, out);
            break;
        case P_WSSPLIT:
            pred_spans(is_ws, s, n, a);
            split_apply(a, B_REMOVED, 0, s, first, out);
            break;
        }
    }
    if (a->oom) out->oom = 1;
}

/* Normalize, pre-tokenize and run the model on one piece of raw text. */
static void encode_normalized(const qs_tok *t, enc_ctx *c, const char *s, size_t n, int first, plist pl[2],
                              spans *a) {
    const tok_pipe *p = t->pipe;
    pl_reset(&pl[0]);
    pl_add(&pl[0], s, n, first);
    int cur = 0;
    for (int i = 0; i < p->n_pre; i++) {
        const pre_step *st = &p->pre[i];
        if (st->type == P_BYTELEVEL && !st->re && !st->add_prefix_space) continue; /* splits nothing */
        pre_step_run(st, &pl[cur], &pl[!cur], a);
        cur = !cur;
    }
    if (pl[cur].oom) {
        c->oom = 1;
        return;
    }
    for (size_t i = 0; i < pl[cur].np && !c->oom; i++)
        tok_model_word(t, c, pl[cur].buf + pl[cur].off[i], pl[cur].len[i]);
}

static int is_word_char(uint32_t cp) { /* \w of the regex crate */
    if (cp == '_') return 1;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_MN && k <= UTF8PROC_CATEGORY_ME) || k == UTF8PROC_CATEGORY_ND ||
           k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_PC;
}

/* Added tokens of one kind (normalized or not) in s: the pieces between
 * them go to next(), the tokens are emitted. single_word, lstrip and rstrip
 * as AddedVocabulary::find_matches. */
typedef void (*seg_fn)(const qs_tok *t, enc_ctx *c, const char *s, size_t n, int first, plist pl[2], spans *a);

static void split_added(const qs_tok *t, enc_ctx *c, const char *s, size_t n, int first, int normalized,
                        seg_fn next, plist pl[2], spans *a) {
    size_t seg = 0, from = 0;
    while (!c->oom) {
        size_t at = n;
        int k = t->n_added ? tok_find_added(t, s, n, from, normalized, &at) : -1;
        if (k < 0) break;
        const tok_added *ad = &t->added[k];
        size_t start = at, stop = at + t->plen[ad->id];
        from = stop; /* matches do not overlap */
        if (ad->single_word) {
            int ok = 1;
            if (start > 0) {
                size_t q = start - 1;
                while (q > 0 && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
                uint32_t cp;
                qs_unicode_next(s + q, start - q, &cp);
                ok = !is_word_char(cp);
            }
            if (ok && stop < n) {
                uint32_t cp;
                qs_unicode_next(s + stop, n - stop, &cp);
                ok = !is_word_char(cp);
            }
            if (!ok) continue;
        }
        if (ad->lstrip)
            while (start > seg) {
                size_t q = start - 1;
                while (q > seg && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
                uint32_t cp;
                qs_unicode_next(s + q, start - q, &cp);
                if (!is_ws(cp)) break;
                start = q;
            }
        if (ad->rstrip)
            while (stop < n) {
                uint32_t cp;
                size_t kk = qs_unicode_next(s + stop, n - stop, &cp);
                if (!is_ws(cp)) break;
                stop += kk;
            }
        if (start > seg) next(t, c, s + seg, start - seg, first && seg == 0, pl, a);
        tok_emit(c, ad->id);
        seg = from = stop;
    }
    if (seg < n) next(t, c, s + seg, n - seg, first && seg == 0, pl, a);
}

static int has_added(const qs_tok *t, int normalized) {
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized) return 1;
    return 0;
}

static void encode_raw_piece(const qs_tok *t, enc_ctx *c, const char *s, size_t n, int first, plist pl[2],
                             spans *a) {
    if (!t->pipe->n_norm) { /* nothing to normalize: no copy */
        if (has_added(t, 1)) split_added(t, c, s, n, first, 1, encode_normalized, pl, a);
        else encode_normalized(t, c, s, n, first, pl, a);
        return;
    }
    sb norm;
    normalize(t->pipe, s, n, &norm);
    if (norm.oom) c->oom = 1;
    else if (has_added(t, 1)) split_added(t, c, norm.s, norm.n, first, 1, encode_normalized, pl, a);
    else encode_normalized(t, c, norm.s, norm.n, first, pl, a);
    free(norm.s);
}

void tok_pipe_encode(const qs_tok *t, enc_ctx *c, const char *text, size_t len) {
    plist pl[2];
    memset(pl, 0, sizeof pl);
    spans a = {0};
    if (has_added(t, 0)) split_added(t, c, text, len, 1, 0, encode_raw_piece, pl, &a);
    else encode_raw_piece(t, c, text, len, 1, pl, &a);
    pl_free(&pl[0]);
    pl_free(&pl[1]);
    free(a.v);
}

/* -------------------------------------------------------------- decoding */


/* Every pat in *x replaced by with; drop_first: a pat at the very start is
 * removed instead (Metaspace's prepended space). x stays a string ("" when empty). */
static void sb_replace(sb *x, const char *pat, const char *with, int drop_first) {
    sb o = {0};
    size_t pl = strlen(pat), wl = strlen(with);
    for (size_t j = 0; j < x->n;) {
        if (pl && j + pl <= x->n && !memcmp(x->s + j, pat, pl)) {
            if (!(drop_first && j == 0)) sb_put(&o, with, wl);
            j += pl;
        } else {
            sb_put(&o, x->s + j, 1);
            j++;
        }
    }
    free(x->s);
    *x = o;
    if (!x->s) sb_put(x, "", 0);
}

static int hexv(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

/* Token strings as a list (one sb each), transformed decoder by decoder as
 * decode_chain does, then joined. */
qs_status tok_pipe_decode(const qs_tok *t, const int32_t *ids, size_t n, int skip_special, char **text,
                          size_t *len) {
    const tok_pipe *p = t->pipe;
    sb *tk = calloc(n + 1, sizeof *tk);
    if (!tk) return qs_fail(QS_ENOMEM, "qs_tok_decode: out of memory");
    size_t m = 0;
    int oom = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && (t->attr[ids[i]] & TOK_SPECIAL)) continue;
        sb_put(&tk[m], t->pieces[ids[i]], t->plen[ids[i]]);
        if (!tk[m].s) sb_put(&tk[m], "", 0);
        m++;
    }
    for (int d = 0; d < p->n_dec; d++) {
        const dec_step *st = &p->dec[d];
        switch (st->type) {
        case D_BYTELEVEL: /* each token: characters back to bytes, or as it is if one is not a byte's */
            for (size_t i = 0; i < m; i++) {
                sb o = {0};
                int ok = 1;
                for (size_t j = 0; j < tk[i].n && ok;) {
                    uint32_t cp;
                    size_t k = qs_unicode_next(tk[i].s + j, tk[i].n - j, &cp);
                    int v = cp < TOK_CP2BYTE_N ? t->cp2byte[cp] : -1;
                    if (v < 0) ok = 0;
                    else {
                        char ch = (char)v;
                        sb_put(&o, &ch, 1);
                    }
                    j += k;
                }
                if (ok) {
                    free(tk[i].s);
                    tk[i] = o;
                    if (!tk[i].s) sb_put(&tk[i], "", 0);
                } else {
                    free(o.s);
                }
            }
            break;
        case D_METASPACE:
            for (size_t i = 0; i < m; i++) sb_replace(&tk[i], st->a, " ", i == 0 && st->prepend);
            break;
        case D_BYTEFALLBACK: { /* runs of <0xNN> become their bytes; not UTF-8: one U+FFFD per byte */
            size_t w = 0;
            for (size_t i = 0; i < m;) {
                size_t j = i;
                sb bytes = {0};
                while (j < m && tk[j].n == 6 && !memcmp(tk[j].s, "<0x", 3) && tk[j].s[5] == '>' &&
                       hexv(tk[j].s[3]) >= 0 && hexv(tk[j].s[4]) >= 0) {
                    char ch = (char)(hexv(tk[j].s[3]) * 16 + hexv(tk[j].s[4]));
                    sb_put(&bytes, &ch, 1);
                    j++;
                }
                if (j == i) {
                    tk[w++] = tk[i++];
                    continue;
                }
                utf8proc_int32_t cp;
                int valid = 1;
                for (size_t q = 0; q < bytes.n && valid;) {
                    utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)bytes.s + q,
                                                          (utf8proc_ssize_t)(bytes.n - q), &cp);
                    if (r <= 0) valid = 0;
                    else q += (size_t)r;
                }
                sb o = {0};
                if (valid) sb_put(&o, bytes.s, bytes.n);
                else
                    for (size_t q = 0; q < bytes.n; q++) sb_put(&o, "\xef\xbf\xbd", 3);
                free(bytes.s);
                for (size_t q = i; q < j; q++) free(tk[q].s);
                tk[w++] = o;
                i = j;
            }
            m = w;
            break;
        }
        case D_FUSE:
            for (size_t i = 1; i < m; i++) {
                sb_put(&tk[0], tk[i].s, tk[i].n);
                free(tk[i].s);
            }
            if (m > 1) m = 1;
            break;
        case D_STRIP: {
            size_t cl = strlen(st->a);
            for (size_t i = 0; i < m && cl; i++) {
                size_t b = 0, e = tk[i].n;
                for (int k = 0; k < st->start && b + cl <= e && !memcmp(tk[i].s + b, st->a, cl); k++) b += cl;
                for (int k = 0; k < st->stop && e >= b + cl && !memcmp(tk[i].s + e - cl, st->a, cl); k++) e -= cl;
                memmove(tk[i].s, tk[i].s + b, e - b);
                tk[i].n = e - b;
            }
            break;
        }
        case D_REPLACE:
            for (size_t i = 0; i < m; i++) sb_replace(&tk[i], st->a, st->b, 0);
            break;
        }
    }
    sb out = {0};
    for (size_t i = 0; i < m; i++) {
        sb_put(&out, tk[i].s, tk[i].n);
        oom |= tk[i].oom;
        free(tk[i].s);
    }
    free(tk);
    sb_put(&out, "", 0);
    if (oom || out.oom) {
        free(out.s);
        return qs_fail(QS_ENOMEM, "qs_tok_decode: out of memory decoding %zu ids", n);
    }
    out.s[out.n] = 0;
    *text = out.s;
    if (len) *len = out.n;
    return QS_OK;
}

/* -------------------------------------------------------------- loading */

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *k, int d) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : d;
}

/* member k as a whole number in [0, hi] (d when absent); 0 when it is something else */
static int jcount(const cJSON *o, const char *k, int d, int hi, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) return *out = d, 1;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= hi) || v->valuedouble != (int)v->valuedouble)
        return 0;
    return *out = (int)v->valuedouble, 1;
}

static char *dupstr(const char *s) {
    size_t n = strlen(s ? s : "");
    char *d = malloc(n + 1);
    if (d) memcpy(d, s ? s : "", n + 1);
    return d;
}

#define GROW(arr, cnt)                                                                     \
    do {                                                                                   \
        void *np_ = realloc((arr), ((size_t)(cnt) + 1) * sizeof *(arr));                   \
        if (!np_) return qs_fail(QS_ENOMEM, "%s: out of memory", path);                    \
        (arr) = np_;                                                                       \
        memset(&(arr)[(cnt)], 0, sizeof *(arr));                                           \
    } while (0)

/* A pattern {"String": s} or {"Regex": r}. */
static qs_status pattern(const cJSON *o, regex_t **re, char **lit, const char *path, const char *what) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *s = jstr(pat, "String"), *r = jstr(pat, "Regex");
    if (lit && s) {
        *lit = dupstr(s);
        return *lit ? QS_OK : qs_fail(QS_ENOMEM, "%s: out of memory", path);
    }
    if (s) return compile(s, strlen(s), 1, re, path);
    if (r) return compile(r, strlen(r), 0, re, path);
    return qs_fail(QS_EFORMAT, "%s: %s has no String or Regex pattern", path, what);
}

/* A pipeline step's "type"; NULL when o is absent or null, was a Sequence
 * (whose items, o[list], went through add) or had no type: *st says how that
 * went. */
typedef qs_status (*step_fn)(qs_tok *t, tok_pipe *p, const cJSON *o, const char *path);
static const char *step_type(qs_tok *t, tok_pipe *p, const cJSON *o, const char *path, const char *what,
                             const char *list, step_fn add, qs_status *st) {
    *st = QS_OK;
    if (!o || cJSON_IsNull(o)) return NULL; /* absent: nothing to add */
    const char *ty = jstr(o, "type");
    if (!ty) {
        *st = qs_fail(QS_EFORMAT, "%s: %s without a type", path, what);
        return NULL;
    }
    if (strcmp(ty, "Sequence")) return ty;
    const cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(o, list)) {
        if ((*st = add(t, p, x, path))) break;
    }
    return NULL;
}

static qs_status add_norm(qs_tok *t, tok_pipe *p, const cJSON *o, const char *path) {
    qs_status sq;
    const char *ty = step_type(t, p, o, path, "normalizer", "normalizers", add_norm, &sq);
    if (!ty) return sq;
    GROW(p->norm, p->n_norm);
    norm_step *st = &p->norm[p->n_norm];
    qs_status r = QS_OK;
    if (!strcmp(ty, "NFC")) st->type = N_NFC;
    else if (!strcmp(ty, "NFD")) st->type = N_NFD;
    else if (!strcmp(ty, "NFKC")) st->type = N_NFKC;
    else if (!strcmp(ty, "NFKD")) st->type = N_NFKD;
    else if (!strcmp(ty, "Lowercase")) st->type = N_LOWER;
    else if (!strcmp(ty, "Prepend")) {
        st->type = N_PREPEND;
        st->a = dupstr(jstr(o, "prepend"));
    } else if (!strcmp(ty, "Strip")) {
        st->type = N_STRIP;
        st->left = jbool(o, "strip_left", 1);
        st->right = jbool(o, "strip_right", 1);
    } else if (!strcmp(ty, "Replace")) {
        st->type = N_REPLACE;
        st->b = dupstr(jstr(o, "content"));
        r = pattern(o, &st->re, NULL, path, "normalizer Replace");
    } else {
        return qs_fail(QS_EUNSUPPORTED, "%s: normalizer '%s' is not supported", path, ty);
    }
    p->n_norm++;
    return r;
}

static int behavior_of(const char *b) {
    if (!b) return B_ISOLATED;
    if (!strcmp(b, "Removed")) return B_REMOVED;
    if (!strcmp(b, "MergedWithPrevious")) return B_PREV;
    if (!strcmp(b, "MergedWithNext")) return B_NEXT;
    if (!strcmp(b, "Contiguous")) return B_CONTIGUOUS;
    if (!strcmp(b, "Isolated")) return B_ISOLATED;
    return -1;
}

static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static qs_status add_pre(qs_tok *t, tok_pipe *p, const cJSON *o, const char *path) {
    qs_status sq;
    const char *ty = step_type(t, p, o, path, "pre_tokenizer", "pretokenizers", add_pre, &sq);
    if (!ty) return sq;
    if (p->n_pre && p->pre[p->n_pre - 1].type == P_BYTELEVEL)
        return qs_fail(QS_EUNSUPPORTED, "%s: a pre-tokenizer ('%s') after ByteLevel is not supported", path, ty);
    GROW(p->pre, p->n_pre);
    pre_step *st = &p->pre[p->n_pre];
    qs_status r = QS_OK;
    if (!strcmp(ty, "Split")) {
        st->type = P_SPLIT;
        st->behavior = behavior_of(jstr(o, "behavior"));
        st->invert = jbool(o, "invert", 0);
        if (st->behavior < 0) return qs_fail(QS_EUNSUPPORTED, "%s: Split behavior '%s'", path, jstr(o, "behavior"));
        r = pattern(o, &st->re, NULL, path, "pre-tokenizer Split");
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
        const char *lit = jstr(pat, "String");
        st->literal = lit != NULL; /* pattern() takes a String before a Regex */
        if (r == QS_OK && !(st->src = dupstr(lit ? lit : jstr(pat, "Regex"))))
            r = qs_fail(QS_ENOMEM, "%s: out of memory", path);
    } else if (!strcmp(ty, "ByteLevel")) {
        st->type = P_BYTELEVEL;
        st->add_prefix_space = jbool(o, "add_prefix_space", 1);
        if (jbool(o, "use_regex", 1)) r = compile(GPT2_PATTERN, strlen(GPT2_PATTERN), 0, &st->re, path);
        t->kind = QS_TOK_BYTE_BPE;
    } else if (!strcmp(ty, "Metaspace")) {
        st->type = P_METASPACE;
        const char *rep = jstr(o, "replacement");
        if (!rep || !*rep || strlen(rep) > 4) return qs_fail(QS_EFORMAT, "%s: Metaspace has no valid replacement", path);
        st->rep_len = (int)strlen(rep);
        memcpy(st->rep, rep, (size_t)st->rep_len);
        const char *sc = jstr(o, "prepend_scheme");
        if (sc && !strcmp(sc, "first")) st->prepend = TOK_PREPEND_FIRST;
        else if (sc && !strcmp(sc, "never")) st->prepend = TOK_PREPEND_NEVER;
        else if (sc) st->prepend = TOK_PREPEND_METASPACE_ALWAYS;
        else st->prepend = jbool(o, "add_prefix_space", 1) ? TOK_PREPEND_METASPACE_ALWAYS : TOK_PREPEND_NEVER;
        st->split = jbool(o, "split", 1);
    } else if (!strcmp(ty, "Digits")) {
        st->type = P_DIGITS;
        st->individual = jbool(o, "individual_digits", 0);
    } else if (!strcmp(ty, "Punctuation")) {
        st->type = P_PUNCT;
        st->behavior = behavior_of(jstr(o, "behavior"));
        if (st->behavior < 0) return qs_fail(QS_EUNSUPPORTED, "%s: Punctuation behavior '%s'", path, jstr(o, "behavior"));
    } else if (!strcmp(ty, "Whitespace")) {
        st->type = P_WHITESPACE;
        static const char ws[] = "\\w+|[^\\w\\s]+";
        r = compile(ws, strlen(ws), 0, &st->re, path);
    } else if (!strcmp(ty, "WhitespaceSplit")) {
        st->type = P_WSSPLIT;
    } else {
        return qs_fail(QS_EUNSUPPORTED, "%s: pre_tokenizer '%s' is not supported", path, ty);
    }
    p->n_pre++;
    return r;
}

static qs_status add_dec(qs_tok *t, tok_pipe *p, const cJSON *o, const char *path) {
    qs_status sq;
    const char *ty = step_type(t, p, o, path, "decoder", "decoders", add_dec, &sq);
    if (!ty) return sq;
    GROW(p->dec, p->n_dec);
    dec_step *st = &p->dec[p->n_dec];
    if (!strcmp(ty, "ByteLevel")) st->type = D_BYTELEVEL;
    else if (!strcmp(ty, "ByteFallback")) st->type = D_BYTEFALLBACK;
    else if (!strcmp(ty, "Fuse")) st->type = D_FUSE;
    else if (!strcmp(ty, "Metaspace")) {
        st->type = D_METASPACE;
        st->a = dupstr(jstr(o, "replacement") ? jstr(o, "replacement") : "\xe2\x96\x81");
        const char *sc = jstr(o, "prepend_scheme");
        st->prepend = sc ? strcmp(sc, "never") != 0 : jbool(o, "add_prefix_space", 1);
    } else if (!strcmp(ty, "Strip")) {
        st->type = D_STRIP;
        if (!jcount(o, "start", 0, 1 << 20, &st->start) || !jcount(o, "stop", 0, 1 << 20, &st->stop))
            return qs_fail(QS_EFORMAT, "%s: decoder Strip's start and stop must be whole numbers from 0 to %d", path, 1 << 20);
        st->a = dupstr(jstr(o, "content"));
    } else if (!strcmp(ty, "Replace")) {
        st->type = D_REPLACE;
        const char *s = jstr(cJSON_GetObjectItemCaseSensitive(o, "pattern"), "String");
        if (!s) return qs_fail(QS_EUNSUPPORTED, "%s: decoder Replace needs a String pattern", path);
        st->a = dupstr(s);
        st->b = dupstr(jstr(o, "content"));
    } else {
        return qs_fail(QS_EUNSUPPORTED, "%s: decoder '%s' is not supported", path, ty);
    }
    p->n_dec++;
    return QS_OK;
}

qs_status tok_pipe_build(qs_tok *t, const void *root_, const char *path) {
    const cJSON *root = root_;
    tok_pipe *p = calloc(1, sizeof *p);
    if (!p) return qs_fail(QS_ENOMEM, "%s: out of memory", path);
    t->pipe = p;
    t->kind = QS_TOK_SPM_RANK; /* BYTE_BPE once a ByteLevel pre-tokenizer is seen */
    qs_status st;
    if ((st = add_norm(t, p, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), path))) return st;
    if ((st = add_pre(t, p, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), path))) return st;
    if ((st = add_dec(t, p, cJSON_GetObjectItemCaseSensitive(root, "decoder"), path))) return st;
    snprintf(p->desc, sizeof p->desc, "tokenizer.json: %d normalizer, %d pre-tokenizer, %d decoder steps", p->n_norm,
             p->n_pre, p->n_dec);
    return QS_OK;
}

const char *tok_pipe_describe(const tok_pipe *p) { return p ? p->desc : ""; }

int tok_pipe_n_steps(const tok_pipe *p, int pre) { return !p ? 0 : pre ? p->n_pre : p->n_norm; }

int tok_pipe_get_step(const tok_pipe *p, int pre, int i, tok_pipe_step *out) {
    static const char *const norm_names[] = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Replace", "Prepend", "Strip"};
    static const char *const pre_names[] = {"Split", "ByteLevel", "Metaspace", "Digits", "Punctuation", "Whitespace",
                                            "WhitespaceSplit"};
    memset(out, 0, sizeof *out);
    if (i < 0 || i >= tok_pipe_n_steps(p, pre)) return 0;
    if (!pre) {
        out->type = norm_names[p->norm[i].type];
        return 1;
    }
    const pre_step *st = &p->pre[i];
    out->type = pre_names[st->type];
    out->pattern = st->type == P_SPLIT ? st->src : NULL;
    out->literal = st->literal;
    out->isolated = st->behavior == B_ISOLATED;
    out->invert = st->invert;
    out->add_prefix_space = st->add_prefix_space;
    out->use_regex = st->type == P_BYTELEVEL && st->re != NULL;
    return 1;
}

void tok_pipe_free(tok_pipe *p) {
    if (!p) return;
    for (int i = 0; i < p->n_norm; i++) {
        if (p->norm[i].re) onig_free(p->norm[i].re);
        free(p->norm[i].a);
        free(p->norm[i].b);
    }
    for (int i = 0; i < p->n_pre; i++) {
        if (p->pre[i].re) onig_free(p->pre[i].re);
        free(p->pre[i].src);
    }
    for (int i = 0; i < p->n_dec; i++) {
        free(p->dec[i].a);
        free(p->dec[i].b);
    }
    free(p->norm);
    free(p->pre);
    free(p->dec);
    free(p);
}
