/* tok_load.c — building tokenizers: Hugging Face tokenizer.json, vocab.json +
 * merges.txt, llama2.c tokenizer.bin, and vocabularies held in memory (GGUF).
 *
 * Every loader fills a struct qs_tok (tok_impl.h) the same way: pieces by id,
 * their attributes, the merge table, added tokens and default specials; then
 * tok_finish() builds the indexes. A failure frees everything built so far.
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tok/tok_impl.h"
#include "tok/unicode.h"

int tok_force_general; /* tests: run every tokenizer.json through the general pipeline */

#define TOK_MAX_VOCAB (1 << 24)
#define SPACE_MARK "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */

/* One id's piece while a vocabulary is assembled (points into the source). */
typedef struct {
    const char *s;
    uint32_t len;
    uint8_t attr;
} tok_pref;

static qs_tok *tok_alloc(qs_tok_kind kind) {
    qs_tok *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->kind = kind;
    t->bos = t->eos = t->unk = -1;
    for (int i = 0; i < 256; i++) t->byte_sym[i] = t->byte_tok[i] = -1;
    for (int i = 0; i < TOK_CP2BYTE_N; i++) t->cp2byte[i] = -1;
    t->use_regex = 1;
    memcpy(t->space, SPACE_MARK, 3);
    t->space_len = 3;
    return t;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Copy n pieces into one arena. refs[i].s == NULL marks an unused id. */
static qs_status tok_set_vocab(qs_tok *t, int n, const tok_pref *refs, const char *what) {
    if (n <= 0 || n > TOK_MAX_VOCAB) return qs_fail(QS_EFORMAT, "%s: %d pieces is out of range", what, n);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (refs[i].s ? refs[i].len : 0) + 1;
    t->n_vocab = n;
    t->arena = malloc(total ? total : 1);
    t->pieces = malloc((size_t)n * sizeof *t->pieces);
    t->plen = malloc((size_t)n * sizeof *t->plen);
    t->attr = calloc((size_t)n, 1);
    t->byte_val = calloc((size_t)n, 1);
    if (!t->arena || !t->pieces || !t->plen || !t->attr || !t->byte_val)
        return qs_fail(QS_ENOMEM, "%s: out of memory for %d pieces", what, n);
    char *p = t->arena;
    for (int i = 0; i < n; i++) {
        uint32_t l = refs[i].s ? refs[i].len : 0;
        if (l) memcpy(p, refs[i].s, l);
        p[l] = 0;
        t->pieces[i] = p;
        t->plen[i] = l;
        t->attr[i] = refs[i].s ? refs[i].attr : (TOK_UNUSED | TOK_NOMERGE);
        p += l + 1;
        /* <0xNN> pieces are bytes in the SentencePiece kinds (byte fallback) */
        if (t->kind != QS_TOK_BYTE_BPE && l == 6 && memcmp(t->pieces[i], "<0x", 3) == 0 &&
            t->pieces[i][5] == '>' && hexval(t->pieces[i][3]) >= 0 && hexval(t->pieces[i][4]) >= 0) {
            t->attr[i] |= TOK_BYTE | TOK_NOMERGE;
            t->byte_val[i] = (uint8_t)(hexval(t->pieces[i][3]) * 16 + hexval(t->pieces[i][4]));
        }
    }
    return QS_OK;
}

static int cmp_u64(const void *pa, const void *pb) {
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return a < b ? -1 : a > b;
}

/* Build the indexes once the pieces, attributes and added tokens are set.
 * Every id flagged TOK_ADDED is matched in raw text; lstrip/rstrip come from
 * t->added when the loader filled it, else they are off. */
static qs_status tok_finish(qs_tok *t, const char *what) {
    qs_status st;
    if (!t->vmap && (st = tok_build_vmap(t)) != QS_OK) return st;

    /* The added-token list: every id flagged TOK_ADDED, with the loader's
     * lstrip/rstrip, sorted by first byte and then longest first, so that the
     * scan finds the longest token at the leftmost position. */
    int n = 0;
    for (int i = 0; i < t->n_vocab; i++)
        if ((t->attr[i] & TOK_ADDED) && t->plen[i]) n++;
    tok_added *list = calloc((size_t)n + 1, sizeof *list);
    uint64_t *keys = calloc((size_t)n + 1, sizeof *keys);
    uint8_t *strip = calloc((size_t)t->n_vocab, 1);
    if (!list || !keys || !strip) {
        free(list);
        free(keys);
        free(strip);
        return qs_fail(QS_ENOMEM, "%s: out of memory", what);
    }
    for (int j = 0; j < t->n_added; j++)
        if (t->added[j].id < t->n_vocab)
            strip[t->added[j].id] = (uint8_t)(t->added[j].lstrip | t->added[j].rstrip << 1 |
                                              t->added[j].normalized << 2 | t->added[j].single_word << 3);
    int k = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        if (!(t->attr[i] & TOK_ADDED) || !t->plen[i]) continue;
        uint32_t l = t->plen[i] < 0xFFFFFF ? t->plen[i] : 0xFFFFFF;
        keys[k++] = (uint64_t)(unsigned char)t->pieces[i][0] << 56 | (uint64_t)(0xFFFFFF - l) << 24 | (uint32_t)i;
    }
    qsort(keys, (size_t)n, sizeof *keys, cmp_u64);
    for (int j = 0; j < n; j++) {
        int id = (int)(keys[j] & 0xFFFFFF);
        list[j] = (tok_added){id, (uint8_t)(strip[id] & 1), (uint8_t)(strip[id] >> 1 & 1), (uint8_t)(strip[id] >> 2 & 1),
                              (uint8_t)(strip[id] >> 3 & 1)};
    }
    free(keys);
    free(strip);
    free(t->added);
    t->added = list;
    t->n_added = n;
    int a = 0;
    for (int b = 0; b < 256; b++) {
        t->added_start[b] = a;
        while (a < n && (unsigned char)t->pieces[t->added[a].id][0] == b) a++;
    }
    t->added_start[256] = n;

    uint32_t map[256];
    tok_byte_to_cp(map);
    for (int b = 0; b < 256; b++) t->cp2byte[map[b]] = (int16_t)b; /* any pipeline may decode ByteLevel */
    if (t->kind == QS_TOK_BYTE_BPE) {
        for (int b = 0; b < 256; b++) {
            char u[4];
            size_t l = qs_unicode_put(map[b], u);
            t->byte_sym[b] = tok_lookup_n(t, u, l);
        }
    } else {
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            int id = tok_lookup_n(t, name, 6);
            if (id >= 0 && (t->attr[id] & TOK_BYTE)) t->byte_tok[b] = id;
        }
    }
    for (int b = 0; b < 128; b++) {
        char ch = (char)b;
        t->ascii_id[b] = tok_lookup_n(t, &ch, 1);
    }
    if (t->kind != QS_TOK_BYTE_BPE) {
        /* Can a token span the point in front of a space that follows some
         * other character? Only if a piece holds "x" + space. */
        size_t sl = (size_t)t->space_len;
        t->space_bounds = 1;
        for (int i = 0; i < t->n_vocab && t->space_bounds; i++) {
            const char *p = t->pieces[i];
            size_t l = t->plen[i];
            if (t->kind == QS_TOK_SPM_SCORE && (t->attr[i] & TOK_NOMERGE)) continue;
            for (size_t j = 1; j + sl <= l; j++)
                if (memcmp(p + j, t->space, sl) == 0 && !(j >= sl && memcmp(p + j - sl, t->space, sl) == 0)) {
                    t->space_bounds = 0;
                    break;
                }
        }
    }
    int nbytes = 0;
    for (int b = 0; b < 256; b++) nbytes += t->byte_tok[b] >= 0;
    switch (t->kind) {
    case QS_TOK_BYTE_BPE:
        snprintf(t->desc, sizeof t->desc, "byte-level BPE, %d tokens, %d merges", t->n_vocab, t->n_merges);
        break;
    case QS_TOK_SPM_RANK:
        snprintf(t->desc, sizeof t->desc, "SentencePiece BPE by merge rank%s, %d tokens, %d merges",
                 t->byte_fallback && nbytes ? " with byte fallback" : "", t->n_vocab, t->n_merges);
        break;
    case QS_TOK_SPM_SCORE:
        snprintf(t->desc, sizeof t->desc, "SentencePiece BPE by piece score%s, %d tokens",
                 nbytes ? " with byte fallback" : "", t->n_vocab);
        break;
    }
    return QS_OK;
}

static int json_int(const cJSON *v, long lo, long hi, long *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != (double)(long)d) return 0;
    *out = (long)d;
    return 1;
}

static const char *json_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A special token named in tokenizer_config.json: "<s>" or {"content": "<s>", ...}. */
static const char *json_token_name(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) return json_str(v, "content");
    return NULL;
}

static int json_bool(const cJSON *obj, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

/* Parse a whole JSON file. A missing optional file gives *root = NULL, QS_OK. */
static qs_status read_json(const char *path, int optional, cJSON **root) {
    *root = NULL;
    if (optional && !qs_io_exists(path)) return QS_OK;
    char *data;
    size_t len;
    qs_status st = qs_io_read_file(path, QS_IO_TEXT_MAX, &data, &len);
    if (st != QS_OK) return st;
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!*root) {
        const char *ep = cJSON_GetErrorPtr();
        long at = ep && ep >= data && ep <= data + len ? (long)(ep - data) : -1;
        free(data);
        if (at >= (long)len)
            return qs_fail(QS_EFORMAT, "%s: malformed JSON: the text ends early (truncated at byte %ld)", path, at);
        return qs_fail(QS_EFORMAT, "%s: malformed JSON at byte %ld", path, at);
    }
    free(data);
    return QS_OK;
}

/* How far past its tokens a vocabulary's ids may run: twice the tokens
 * (vocabularies are dense, added tokens follow them) and 65536 to spare.
 * The tables are as long as the largest id, so without this a file of a
 * few bytes naming id 16777215 would cost hundreds of megabytes. */
static long sparse_id_limit(long tokens) { return 2 * tokens + 65536; }

/* Fill pref[] from a {"piece": id, ...} object (tokenizer.json model.vocab or
 * vocab.json). *n grows to cover the largest id; *count: the entries. */
static qs_status vocab_from_json(const cJSON *vocab, tok_pref **pref, int *n, long *count, const char *path) {
    long max_id = -1, cnt = 0;
    const char *max_piece = NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        long id;
        if (!it->string || !json_int(it, 0, TOK_MAX_VOCAB - 1, &id))
            return qs_fail(QS_EFORMAT, "%s: vocabulary entry '%s' has no valid id (0..%d)", path,
                           it->string ? it->string : "?", TOK_MAX_VOCAB - 1);
        if (id > max_id) max_id = id, max_piece = it->string;
        cnt++;
    }
    if (max_id >= sparse_id_limit(cnt))
        return qs_fail(QS_EFORMAT, "%s: vocabulary entry '%s' has id %ld, but there are only %ld entries (ids stop below %ld)",
                       path, max_piece, max_id, cnt, sparse_id_limit(cnt));
    *count = cnt;
    if (max_id + 1 > *n) {
        tok_pref *np = realloc(*pref, (size_t)(max_id + 1) * sizeof *np);
        if (!np) return qs_fail(QS_ENOMEM, "%s: out of memory", path);
        memset(np + *n, 0, (size_t)(max_id + 1 - *n) * sizeof *np);
        *pref = np;
        *n = (int)max_id + 1;
    }
    cJSON_ArrayForEach(it, vocab) {
        long id = 0;
        json_int(it, 0, TOK_MAX_VOCAB - 1, &id);
        if ((*pref)[id].s)
            return qs_fail(QS_EFORMAT, "%s: id %ld is given to both '%s' and '%s'", path, id, (*pref)[id].s,
                           it->string);
        (*pref)[id].s = it->string;
        (*pref)[id].len = (uint32_t)strlen(it->string);
    }
    return QS_OK;
}

/* Register an added token (from tokenizer.json added_tokens or
 * tokenizer_config.json added_tokens_decoder). */
static qs_status add_token(tok_pref **pref, int *n, tok_added **added, int *n_added, long id,
                           const char *content, int special, int lstrip, int rstrip, long vocab_count, const char *path) {
    if (id < 0 || id >= TOK_MAX_VOCAB || !content)
        return qs_fail(QS_EFORMAT, "%s: added token %ld has no valid id or content", path, id);
    long tokens = vocab_count + *n_added + 1;
    if (id >= sparse_id_limit(tokens))
        return qs_fail(QS_EFORMAT, "%s: added token '%s' has id %ld, but there are only %ld tokens (ids stop below %ld)",
                       path, content, id, tokens, sparse_id_limit(tokens));
    if (id >= *n) {
        tok_pref *np = realloc(*pref, (size_t)(id + 1) * sizeof *np);
        if (!np) return qs_fail(QS_ENOMEM, "%s: out of memory", path);
        memset(np + *n, 0, (size_t)(id + 1 - *n) * sizeof *np);
        *pref = np;
        *n = (int)id + 1;
    }
    tok_added *na = realloc(*added, (size_t)(*n_added + 1) * sizeof *na);
    if (!na) return qs_fail(QS_ENOMEM, "%s: out of memory", path);
    *added = na;
    na[(*n_added)++] = (tok_added){(int32_t)id, (uint8_t)lstrip, (uint8_t)rstrip, 0, 0};
    (*pref)[id].s = content; /* the added content is the token's text */
    (*pref)[id].len = (uint32_t)strlen(content);
    (*pref)[id].attr |= TOK_ADDED | (special ? TOK_SPECIAL | TOK_NOMERGE : 0);
    return QS_OK;
}

static qs_status add_merge(qs_tok *t, const char *a, size_t la, const char *b, size_t lb, int32_t rank,
                           const char *path, const char *where, const char *vocab_name) {
    int ia = tok_lookup_n(t, a, la), ib = tok_lookup_n(t, b, lb);
    if (ia < 0 || ib < 0) {
        const char *bad = ia < 0 ? a : b;
        int lbad = (int)(ia < 0 ? la : lb);
        return qs_fail(QS_EFORMAT, "%s: %s: merge '%.*s %.*s' uses '%.*s', which is not in %s", path, where,
                       (int)la, a, (int)lb, b, lbad, bad, vocab_name);
    }
    /* with a continuing_subword_prefix, "a ##b" makes "a" + "b" */
    size_t lp = t->cont_prefix ? strlen(t->cont_prefix) : 0;
    if (lp && lb >= lp && memcmp(b, t->cont_prefix, lp) == 0) {
        b += lp;
        lb -= lp;
    }
    char stackbuf[256], *cat = la + lb <= sizeof stackbuf ? stackbuf : malloc(la + lb);
    if (!cat) return qs_fail(QS_ENOMEM, "%s: out of memory", path);
    memcpy(cat, a, la);
    memcpy(cat + la, b, lb);
    int id = tok_lookup_n(t, cat, la + lb);
    if (cat != stackbuf) free(cat);
    if (id < 0)
        return qs_fail(QS_EFORMAT, "%s: %s: merge '%.*s %.*s' makes '%.*s%.*s', which is not in %s", path,
                       where, (int)la, a, (int)lb, b, (int)la, a, (int)lb, b, vocab_name);
    tok_merges_put(t, ia, ib, rank, id);
    return QS_OK;
}

/* Byte-level vocabularies without a list of added tokens (vocab.json +
 * merges.txt, GGUF "gpt2"): a piece that is neither a byte's character nor
 * the result of a merge can never come out of BPE, so it is a special token
 * (<s>, </s>, <pad>, <unk>, <|endoftext|>): it is matched in the text, as the
 * reference's added tokens are. */
static qs_status mark_unreachable(qs_tok *t, const char *what) {
    uint8_t *reach = calloc((size_t)t->n_vocab, 1);
    if (!reach) return qs_fail(QS_ENOMEM, "%s: out of memory", what);
    uint32_t map[256];
    tok_byte_to_cp(map);
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t l = qs_unicode_put(map[b], u);
        int id = tok_lookup_n(t, u, l);
        if (id >= 0) reach[id] = 1;
    }
    for (uint32_t i = 0; i <= t->mmask; i++)
        if (t->mkeys[i] != TOK_NO_KEY) reach[t->mval[i].id] = 1;
    for (int i = 0; i < t->n_vocab; i++)
        if (!reach[i] && t->plen[i] && !(t->attr[i] & TOK_UNUSED)) t->attr[i] |= TOK_ADDED | TOK_SPECIAL | TOK_NOMERGE;
    free(reach);
    return QS_OK;
}

/* tokenizer_config.json / config.json: BOS, EOS (and UNK) ids. */
static void find_specials(qs_tok *t, const cJSON *tcfg, const cJSON *cfg) {
    const char *bos = json_token_name(tcfg, "bos_token"), *eos = json_token_name(tcfg, "eos_token");
    if (bos) t->bos = tok_lookup_n(t, bos, strlen(bos));
    if (eos) t->eos = tok_lookup_n(t, eos, strlen(eos));
    long v;
    if (t->bos < 0 && json_int(cJSON_GetObjectItemCaseSensitive(cfg, "bos_token_id"), 0, t->n_vocab - 1, &v))
        t->bos = (int)v;
    if (t->eos < 0 && json_int(cJSON_GetObjectItemCaseSensitive(cfg, "eos_token_id"), 0, t->n_vocab - 1, &v))
        t->eos = (int)v;
}

/* transformers' Llama and Gemma tokenizers rebuild the post-processor from
 * tokenizer_config.json when they load (update_post_processor): BOS when
 * add_bos_token (default true), EOS when add_eos_token (default false). The
 * other classes keep what tokenizer.json's post_processor says. */
static void honour_add_bos_eos(qs_tok *t, const cJSON *tcfg) {
    static const char *const classes[] = {"LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer",
                                          "CodeLlamaTokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast"};
    const char *cls = json_str(tcfg, "tokenizer_class");
    int hit = 0;
    for (size_t i = 0; cls && i < sizeof classes / sizeof *classes; i++) hit |= !strcmp(cls, classes[i]);
    if (!hit) return;
    t->n_prefix = t->n_suffix = 0;
    if (json_bool(tcfg, "add_bos_token", 1) && t->bos >= 0) t->prefix[t->n_prefix++] = t->bos;
    if (json_bool(tcfg, "add_eos_token", 0) && t->eos >= 0) t->suffix[t->n_suffix++] = t->eos;
}

/* ---------------------------------------------------------- tokenizer.json */

static int json_type_is(const cJSON *obj, const char *type) {
    const char *s = json_str(obj, "type");
    return s && strcmp(s, type) == 0;
}

/* The default specials from post_processor (TemplateProcessing "single",
 * RobertaProcessing / BertProcessing cls+sep, Sequence of those). */
static qs_status hf_post_processor(qs_tok *t, const cJSON *pp, const char *path) {
    if (!pp || cJSON_IsNull(pp)) return QS_OK;
    const char *type = json_str(pp, "type");
    if (!type) return qs_fail(QS_EFORMAT, "%s: post_processor has no type", path);
    if (!strcmp(type, "ByteLevel")) return QS_OK;
    if (!strcmp(type, "Sequence")) {
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(pp, "processors")) {
            qs_status st = hf_post_processor(t, p, path);
            if (st != QS_OK) return st;
        }
        return QS_OK;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(pp, "cls");
        const cJSON *sep = cJSON_GetObjectItemCaseSensitive(pp, "sep");
        long c, s;
        if (!json_int(cJSON_GetArrayItem(cls, 1), 0, t->n_vocab - 1, &c) ||
            !json_int(cJSON_GetArrayItem(sep, 1), 0, t->n_vocab - 1, &s))
            return qs_fail(QS_EFORMAT, "%s: %s needs cls and sep as [token, id]", path, type);
        if (t->n_prefix >= TOK_MAX_DEFAULT || t->n_suffix >= TOK_MAX_DEFAULT)
            return qs_fail(QS_EUNSUPPORTED, "%s: too many default special tokens", path);
        t->prefix[t->n_prefix++] = (int32_t)c;
        t->suffix[t->n_suffix++] = (int32_t)s;
        return QS_OK;
    }
    if (strcmp(type, "TemplateProcessing"))
        return qs_fail(QS_EUNSUPPORTED, "%s: post_processor '%s' is not supported", path, type);
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(pp, "special_tokens");
    const cJSON *item;
    int after = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(pp, "single")) {
        if (cJSON_GetObjectItemCaseSensitive(item, "Sequence")) {
            after = 1;
            continue;
        }
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        const char *name = json_str(sp, "id");
        if (!name) return qs_fail(QS_EFORMAT, "%s: post_processor template item has no id", path);
        const cJSON *def = cJSON_GetObjectItemCaseSensitive(specials, name);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(def, "ids");
        const cJSON *idv;
        if (cJSON_IsArray(ids)) {
            cJSON_ArrayForEach(idv, ids) {
                long id;
                if (!json_int(idv, 0, t->n_vocab - 1, &id))
                    return qs_fail(QS_EFORMAT, "%s: post_processor special '%s' has an id outside [0, %d)", path,
                                   name, t->n_vocab);
                int32_t *dst = after ? t->suffix : t->prefix;
                int *cnt = after ? &t->n_suffix : &t->n_prefix;
                if (*cnt >= TOK_MAX_DEFAULT)
                    return qs_fail(QS_EUNSUPPORTED, "%s: too many default special tokens", path);
                dst[(*cnt)++] = (int32_t)id;
            }
        } else {
            int id = tok_lookup_n(t, name, strlen(name));
            if (id < 0) return qs_fail(QS_EFORMAT, "%s: post_processor names '%s', which is not a token", path, name);
            int32_t *dst = after ? t->suffix : t->prefix;
            int *cnt = after ? &t->n_suffix : &t->n_prefix;
            if (*cnt >= TOK_MAX_DEFAULT) return qs_fail(QS_EUNSUPPORTED, "%s: too many default special tokens", path);
            dst[(*cnt)++] = id;
        }
    }
    return QS_OK;
}

/* normalizer + pre_tokenizer + decoder: which kind, and its options. */
static qs_status hf_pipeline(qs_tok *t, const cJSON *root, const cJSON *model, const char *path) {
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const char *pre_type = cJSON_IsObject(pre) ? json_str(pre, "type") : NULL;
    int has_norm = norm && !cJSON_IsNull(norm);

    if (pre_type && !strcmp(pre_type, "ByteLevel")) {
        if (has_norm)
            return qs_fail(QS_EUNSUPPORTED, "%s: a normalizer ('%s') before a byte-level pre-tokenizer is not supported",
                           path, json_str(norm, "type") ? json_str(norm, "type") : "?");
        t->kind = QS_TOK_BYTE_BPE;
        t->add_prefix_space = json_bool(pre, "add_prefix_space", 0);
        t->use_regex = json_bool(pre, "use_regex", 1);
        return QS_OK;
    }
    t->kind = QS_TOK_SPM_RANK;
    t->byte_fallback = json_bool(model, "byte_fallback", 0);
    t->fuse_unk = json_bool(model, "fuse_unk", 0);
    if (pre_type && !strcmp(pre_type, "Metaspace")) {
        if (has_norm)
            return qs_fail(QS_EUNSUPPORTED, "%s: a normalizer before the Metaspace pre-tokenizer is not supported", path);
        const char *rep = json_str(pre, "replacement");
        if (!rep || !*rep || strlen(rep) > 4)
            return qs_fail(QS_EFORMAT, "%s: Metaspace pre-tokenizer has no valid replacement", path);
        t->space_len = (int)strlen(rep);
        memcpy(t->space, rep, (size_t)t->space_len);
        const char *scheme = json_str(pre, "prepend_scheme");
        if (scheme) {
            if (!strcmp(scheme, "first")) t->prepend = TOK_PREPEND_FIRST;
            else if (!strcmp(scheme, "always")) t->prepend = TOK_PREPEND_METASPACE_ALWAYS;
            else if (!strcmp(scheme, "never")) t->prepend = TOK_PREPEND_NEVER;
            else return qs_fail(QS_EUNSUPPORTED, "%s: Metaspace prepend_scheme '%s' is not supported", path, scheme);
        } else {
            t->prepend = json_bool(pre, "add_prefix_space", 1) ? TOK_PREPEND_METASPACE_ALWAYS : TOK_PREPEND_NEVER;
        }
        t->spm_split = json_bool(pre, "split", 1);
    } else if (!pre_type && has_norm) {
        /* the older Llama form: normalizer Sequence[Prepend("▁"), Replace(" ", "▁")] */
        const cJSON *steps = json_type_is(norm, "Sequence") ? cJSON_GetObjectItemCaseSensitive(norm, "normalizers") : NULL;
        const cJSON *one = steps ? NULL : norm, *step;
        int replace = 0;
        t->prepend = TOK_PREPEND_NEVER;
        for (step = steps ? steps->child : one; step; step = steps ? step->next : NULL) {
            if (json_type_is(step, "Prepend")) {
                const char *p = json_str(step, "prepend");
                if (!p || strcmp(p, SPACE_MARK))
                    return qs_fail(QS_EUNSUPPORTED, "%s: normalizer Prepend of '%s' is not supported", path, p ? p : "?");
                t->prepend = TOK_PREPEND_ALWAYS;
            } else if (json_type_is(step, "Replace")) {
                const char *from = json_str(cJSON_GetObjectItemCaseSensitive(step, "pattern"), "String");
                const char *to = json_str(step, "content");
                if (!from || !to || strcmp(from, " ") || strcmp(to, SPACE_MARK))
                    return qs_fail(QS_EUNSUPPORTED, "%s: normalizer Replace other than ' ' -> U+2581 is not supported", path);
                replace = 1;
            } else {
                const char *ty = json_str(step, "type");
                return qs_fail(QS_EUNSUPPORTED, "%s: normalizer '%s' is not supported", path, ty ? ty : "?");
            }
        }
        if (!replace)
            return qs_fail(QS_EUNSUPPORTED, "%s: a SentencePiece normalizer without Replace(' ', U+2581) is not supported", path);
        if (t->prepend == TOK_PREPEND_ALWAYS && steps && json_type_is(steps->child, "Replace"))
            return qs_fail(QS_EUNSUPPORTED, "%s: normalizer Replace before Prepend is not supported", path);
        t->spm_split = 0;
    } else {
        return qs_fail(QS_EUNSUPPORTED, "%s: pre_tokenizer '%s' is not supported (ByteLevel and Metaspace are)", path,
                       pre_type ? pre_type : "null");
    }
    /* decoder: does it strip one leading space (Strip start >= 1, or Metaspace)? */
    const cJSON *dsteps = json_type_is(dec, "Sequence") ? cJSON_GetObjectItemCaseSensitive(dec, "decoders") : NULL;
    for (const cJSON *d = dsteps ? dsteps->child : dec; d; d = dsteps ? d->next : NULL) {
        long start;
        const char *content = json_str(d, "content");
        if (json_type_is(d, "Strip") && content && !strcmp(content, " ") &&
            json_int(cJSON_GetObjectItemCaseSensitive(d, "start"), 1, 1 << 20, &start))
            t->strip_start = 1;
        if (json_type_is(d, "Metaspace") && t->prepend != TOK_PREPEND_NEVER) t->strip_start = 1;
    }
    return QS_OK;
}

static qs_status hf_merges(qs_tok *t, const cJSON *merges, const char *path) {
    int n = cJSON_GetArraySize(merges);
    qs_status st = tok_merges_init(t, (size_t)n);
    if (st != QS_OK) return st;
    const cJSON *m;
    int rank = 0;
    char where[48];
    cJSON_ArrayForEach(m, merges) {
        const char *a, *b;
        size_t la, lb;
        snprintf(where, sizeof where, "model.merges[%d]", rank);
        if (cJSON_IsString(m)) {
            const char *sp = strchr(m->valuestring, ' ');
            if (!sp) return qs_fail(QS_EFORMAT, "%s: %s: '%s' is not two tokens separated by a space", path, where,
                                    m->valuestring);
            a = m->valuestring;
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            a = m->child->valuestring;
            b = m->child->next->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            return qs_fail(QS_EFORMAT, "%s: %s is neither \"a b\" nor [\"a\", \"b\"]", path, where);
        }
        st = add_merge(t, a, la, b, lb, rank, path, where, "the vocabulary");
        if (st != QS_OK) return st;
        rank++;
    }
    return QS_OK;
}

static qs_status load_tokenizer_json(const char *dir, const char *path, qs_tok **out) {
    char p2[1024];
    cJSON *root = NULL, *tcfg = NULL, *cfg = NULL;
    tok_pref *pref = NULL;
    tok_added *added = NULL;
    int n = 0, n_added = 0;
    qs_tok *t = tok_alloc(QS_TOK_BYTE_BPE);
    qs_status st = t ? QS_OK : qs_fail(QS_ENOMEM, "%s: out of memory", path);
    if (st == QS_OK) st = read_json(path, 0, &root);
    if (st == QS_OK) st = read_json(qs_io_join(p2, sizeof p2, dir, "tokenizer_config.json"), 1, &tcfg);
    if (st == QS_OK) st = read_json(qs_io_join(p2, sizeof p2, dir, "config.json"), 1, &cfg);
    if (st != QS_OK) goto done;

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *mtype = json_str(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(model)) {
        st = qs_fail(QS_EFORMAT, "%s: no \"model\" object", path);
        goto done;
    }
    if (mtype && strcmp(mtype, "BPE")) {
        st = qs_fail(QS_EUNSUPPORTED, "%s: model type '%s' is not supported (BPE is)", path, mtype);
        goto done;
    }
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        st = qs_fail(QS_EFORMAT, "%s: model needs a \"vocab\" object and a \"merges\" list", path);
        goto done;
    }
    const char *cont = json_str(model, "continuing_subword_prefix"), *eow = json_str(model, "end_of_word_suffix");
    t->ignore_merges = json_bool(model, "ignore_merges", 0);
    if ((cont && *cont && !(t->cont_prefix = strdup(cont))) || (eow && *eow && !(t->eow_suffix = strdup(eow)))) {
        st = qs_fail(QS_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    long n_entries = 0;
    if ((st = vocab_from_json(vocab, &pref, &n, &n_entries, path)) != QS_OK) goto done;
    const cJSON *at;
    cJSON_ArrayForEach(at, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) {
        long id = -1;
        json_int(cJSON_GetObjectItemCaseSensitive(at, "id"), 0, TOK_MAX_VOCAB - 1, &id);
        int special = json_bool(at, "special", 0);
        st = add_token(&pref, &n, &added, &n_added, id, json_str(at, "content"), special,
                       json_bool(at, "lstrip", 0), json_bool(at, "rstrip", 0), n_entries, path);
        if (st != QS_OK) goto done;
        added[n_added - 1].normalized = (uint8_t)json_bool(at, "normalized", !special);
        added[n_added - 1].single_word = (uint8_t)json_bool(at, "single_word", 0);
    }
    /* The fixed kinds (GPT-2's byte-level, Llama's SentencePiece forms) when
     * they describe the file; anything else runs the general pipeline. */
    int general = t->ignore_merges || t->cont_prefix || t->eow_suffix || tok_force_general;
    if (!general && (st = hf_pipeline(t, root, model, path)) != QS_OK) {
        if (st != QS_EUNSUPPORTED) goto done;
        general = 1;
    }
    if (general) {
        t->byte_fallback = json_bool(model, "byte_fallback", 0);
        t->fuse_unk = json_bool(model, "fuse_unk", 0);
        if ((st = tok_pipe_build(t, root, path)) != QS_OK) goto done;
    }
    if ((st = tok_set_vocab(t, n, pref, path)) != QS_OK) goto done;
    t->added = added;
    t->n_added = n_added;
    added = NULL;
    if ((st = tok_build_vmap(t)) != QS_OK) goto done;
    if ((st = hf_merges(t, merges, path)) != QS_OK) goto done;
    if ((st = hf_post_processor(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), path)) != QS_OK)
        goto done;
    /* only the model's own unk_token stands in for unknown characters */
    const char *unk = json_str(model, "unk_token");
    t->unk = unk ? tok_lookup_n(t, unk, strlen(unk)) : -1;
    find_specials(t, tcfg, cfg);
    honour_add_bos_eos(t, tcfg);
    st = tok_finish(t, path);
done:
    cJSON_Delete(root);
    cJSON_Delete(tcfg);
    cJSON_Delete(cfg);
    free(pref);
    free(added);
    if (st != QS_OK) {
        qs_tok_free(t);
        return st;
    }
    *out = t;
    return QS_OK;
}

/* ---------------------------------------------------- vocab.json + merges */

static qs_status load_vocab_merges(const char *dir, qs_tok **out) {
    char vpath[1024], mpath[1024], tcpath[1024], p2[1024];
    qs_io_join(vpath, sizeof vpath, dir, "vocab.json");
    qs_io_join(mpath, sizeof mpath, dir, "merges.txt");
    cJSON *vroot = NULL, *tcfg = NULL, *cfg = NULL;
    tok_pref *pref = NULL;
    tok_added *added = NULL;
    char *mtext = NULL;
    size_t mlen = 0;
    int n = 0, n_added = 0;
    qs_tok *t = tok_alloc(QS_TOK_BYTE_BPE);
    qs_status st = t ? QS_OK : qs_fail(QS_ENOMEM, "%s: out of memory", vpath);
    if (st == QS_OK) st = read_json(vpath, 0, &vroot);
    if (st == QS_OK) st = read_json(qs_io_join(tcpath, sizeof tcpath, dir, "tokenizer_config.json"), 1, &tcfg);
    if (st == QS_OK) st = read_json(qs_io_join(p2, sizeof p2, dir, "config.json"), 1, &cfg);
    if (st == QS_OK) st = qs_io_read_file(mpath, QS_IO_TEXT_MAX, &mtext, &mlen);
    if (st != QS_OK) goto done;
    if (!cJSON_IsObject(vroot)) {
        st = qs_fail(QS_EFORMAT, "%s: expected a {\"token\": id} object", vpath);
        goto done;
    }
    long n_entries = 0;
    if ((st = vocab_from_json(vroot, &pref, &n, &n_entries, vpath)) != QS_OK) goto done;

    /* added tokens declared in tokenizer_config.json */
    const cJSON *at;
    cJSON_ArrayForEach(at, cJSON_GetObjectItemCaseSensitive(tcfg, "added_tokens_decoder")) {
        char *endp;
        long id = at->string ? strtol(at->string, &endp, 10) : -1;
        if (!at->string || *endp) id = -1;
        st = add_token(&pref, &n, &added, &n_added, id, json_str(at, "content"), json_bool(at, "special", 0),
                       json_bool(at, "lstrip", 0), json_bool(at, "rstrip", 0), n_entries, tcpath);
        if (st != QS_OK) goto done;
    }
    t->add_prefix_space = json_bool(tcfg, "add_prefix_space", 0);
    if ((st = tok_set_vocab(t, n, pref, vpath)) != QS_OK) goto done;
    t->added = added;
    t->n_added = n_added;
    added = NULL;
    if ((st = tok_build_vmap(t)) != QS_OK) goto done;

    /* the special tokens the config names are matched in text, like added tokens */
    static const char *const names[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    for (int i = 0; i < 4; i++) {
        const char *nm = json_token_name(tcfg, names[i]);
        int id = nm ? tok_lookup_n(t, nm, strlen(nm)) : -1;
        if (id >= 0) t->attr[id] |= TOK_ADDED | TOK_SPECIAL | TOK_NOMERGE;
    }

    /* merges.txt: an optional "#version" line, then "a b" per line in rank order */
    size_t lines = 1;
    for (size_t i = 0; i < mlen; i++) lines += mtext[i] == '\n';
    if ((st = tok_merges_init(t, lines)) != QS_OK) goto done;
    int rank = 0, lineno = 0;
    char where[32];
    for (char *line = mtext; line < mtext + mlen;) {
        char *nl = memchr(line, '\n', (size_t)(mtext + mlen - line));
        char *end = nl ? nl : mtext + mlen;
        lineno++;
        size_t ll = (size_t)(end - line);
        if (ll && line[ll - 1] == '\r') ll--;
        if (ll && !(lineno == 1 && line[0] == '#')) {
            char *sp = memchr(line, ' ', ll);
            if (!sp || memchr(sp + 1, ' ', ll - (size_t)(sp + 1 - line))) {
                st = qs_fail(QS_EFORMAT, "%s: line %d: expected two tokens separated by one space, found '%.*s'",
                             mpath, lineno, (int)(ll > 60 ? 60 : ll), line);
                goto done;
            }
            snprintf(where, sizeof where, "line %d", lineno);
            st = add_merge(t, line, (size_t)(sp - line), sp + 1, ll - (size_t)(sp + 1 - line), rank, mpath, where,
                           "vocab.json");
            if (st != QS_OK) goto done;
            rank++;
        }
        line = nl ? nl + 1 : mtext + mlen;
    }

    if ((st = mark_unreachable(t, vpath)) != QS_OK) goto done;
    find_specials(t, tcfg, cfg);
    /* Default specials: tokenizer_config.json's add_bos_token / add_eos_token
     * when it says; otherwise OPT's tokenizer adds its BOS (</s>) and GPT-2's
     * adds nothing. */
    const char *mt = json_str(cfg, "model_type");
    int add_bos = json_bool(tcfg, "add_bos_token", mt && !strcmp(mt, "opt"));
    if (add_bos && t->bos >= 0) t->prefix[t->n_prefix++] = t->bos;
    if (json_bool(tcfg, "add_eos_token", 0) && t->eos >= 0) t->suffix[t->n_suffix++] = t->eos;
    st = tok_finish(t, vpath);
done:
    cJSON_Delete(vroot);
    cJSON_Delete(tcfg);
    cJSON_Delete(cfg);
    free(pref);
    free(added);
    free(mtext);
    if (st != QS_OK) {
        qs_tok_free(t);
        return st;
    }
    *out = t;
    return QS_OK;
}

qs_status qs_tok_load_hf(const char *dir, qs_tok **out) {
    *out = NULL;
    if (!dir) return qs_fail(QS_EARG, "qs_tok_load_hf: NULL directory");
    char p[1024], q[1024];
    if (qs_io_exists(qs_io_join(p, sizeof p, dir, "tokenizer.json"))) return load_tokenizer_json(dir, p, out);
    if (qs_io_exists(qs_io_join(p, sizeof p, dir, "vocab.json")) &&
        qs_io_exists(qs_io_join(q, sizeof q, dir, "merges.txt")))
        return load_vocab_merges(dir, out);
    if (qs_io_exists(qs_io_join(p, sizeof p, dir, "tokenizer.model")))
        return qs_fail(QS_EUNSUPPORTED, "%s: a SentencePiece tokenizer.model without tokenizer.json is not supported",
                       dir);
    return qs_fail(QS_EIO, "%s: no tokenizer.json, nor vocab.json + merges.txt", dir);
}

/* ------------------------------------------------------------- llama2.c */

qs_status qs_tok_load_llama2c(const char *path, int vocab_size, qs_tok **out) {
    *out = NULL;
    if (!path) return qs_fail(QS_EARG, "qs_tok_load_llama2c: NULL path");
    qs_map map;
    qs_status st = qs_io_map(path, &map);
    if (st != QS_OK) return st;
    const uint8_t *d = map.data;
    size_t size = map.size, off = 4;
    tok_pref *pref = NULL;
    float *scores = NULL;
    qs_tok *t = NULL;
    int n = vocab_size;
    if (size < 4) {
        st = qs_fail(QS_EFORMAT, "%s: %zu bytes is too short for a tokenizer.bin header", path, size);
        goto done;
    }
    if (n <= 0) { /* no count from a checkpoint: take every token the file holds */
        n = 0;
        for (size_t o = 4; o + 8 <= size && n < TOK_MAX_VOCAB; n++) {
            int32_t l;
            memcpy(&l, d + o + 4, 4);
            if (l < 0 || (size_t)l > size - o - 8) break;
            o += 8 + (size_t)l;
        }
    }
    if (n <= 0 || n > TOK_MAX_VOCAB) {
        st = qs_fail(QS_EFORMAT, "%s: vocabulary size %d is out of range", path, n);
        goto done;
    }
    int32_t max_len;
    memcpy(&max_len, d, 4);
    pref = calloc((size_t)n, sizeof *pref);
    scores = malloc((size_t)n * sizeof *scores);
    t = tok_alloc(QS_TOK_SPM_SCORE);
    if (!pref || !scores || !t) {
        st = qs_fail(QS_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        int32_t l;
        if (size - off < 8) {
            st = qs_fail(QS_EFORMAT, "%s: truncated: token %d of %d starts at byte %zu, the file has %zu", path, i, n,
                         off, size);
            goto done;
        }
        memcpy(&scores[i], d + off, 4);
        memcpy(&l, d + off + 4, 4);
        off += 8;
        if (l < 0 || (size_t)l > size - off) {
            st = qs_fail(QS_EFORMAT, "%s: truncated: token %d of %d has length %d at byte %zu, the file has %zu", path,
                         i, n, (int)l, off, size);
            goto done;
        }
        if (max_len > 0 && l > max_len) {
            st = qs_fail(QS_EFORMAT, "%s: token %d has length %d, the header says at most %d", path, i, (int)l,
                         (int)max_len);
            goto done;
        }
        pref[i].s = (const char *)d + off;
        pref[i].len = (uint32_t)l;
        off += (size_t)l;
    }
    /* llama2.c's convention: 0 <unk>, 1 BOS, 2 EOS, bytes from 3 */
    for (int i = 0; i < n && i < 3; i++) pref[i].attr = TOK_SPECIAL | TOK_NOMERGE;
    if ((st = tok_set_vocab(t, n, pref, path)) != QS_OK) goto done;
    t->scores = scores;
    scores = NULL;
    t->unk = 0;
    t->bos = n > 1 ? 1 : -1;
    t->eos = n > 2 ? 2 : -1;
    if (t->bos >= 0) t->prefix[t->n_prefix++] = t->bos;
    /* llama2.c's export writes spaces as ' '; a vocabulary that kept U+2581
     * (no piece starts with a space) is read with U+2581 */
    int with_space = 0, with_mark = 0;
    for (int i = 0; i < n; i++) {
        with_space += t->plen[i] && t->pieces[i][0] == ' ';
        with_mark += t->plen[i] >= 3 && memcmp(t->pieces[i], SPACE_MARK, 3) == 0;
    }
    if (with_space >= with_mark) {
        t->space[0] = ' ';
        t->space_len = 1;
    }
    t->prepend = TOK_PREPEND_FIRST_ANY;
    st = tok_finish(t, path);
done:
    qs_io_unmap(&map);
    free(pref);
    free(scores);
    if (st != QS_OK) {
        qs_tok_free(t);
        return st;
    }
    *out = t;
    return QS_OK;
}

/* ----------------------------------------------------- GGUF vocabularies */

/* The start of a vocabulary built from pieces (GGUF, llama2.c): the
 * tokenizer of `kind` and a pref per piece (string and length; the caller
 * sets attributes). */
static qs_status vocab_begin(int kind, int n, const char *const *pieces, const char *who, qs_tok **t,
                             tok_pref **pref) {
    *t = tok_alloc(kind);
    *pref = calloc((size_t)n, sizeof **pref);
    if (!*t || !*pref) return qs_fail(QS_ENOMEM, "%s: out of memory", who);
    for (int i = 0; i < n; i++) {
        (*pref)[i].s = pieces[i] ? pieces[i] : "";
        (*pref)[i].len = (uint32_t)strlen((*pref)[i].s);
    }
    return QS_OK;
}

/* The end: the prefs freed, and t handed out on success or freed. */
static qs_status vocab_end(qs_status st, qs_tok *t, tok_pref *pref, qs_tok **out) {
    free(pref);
    if (st != QS_OK) {
        qs_tok_free(t);
        return st;
    }
    *out = t;
    return QS_OK;
}

qs_status qs_tok_new_spm(int n, const char *const *pieces, const float *scores, const int32_t *types, int bos,
                         int eos, int unk, qs_tok **out) {
    *out = NULL;
    if (n <= 0 || n > TOK_MAX_VOCAB || !pieces || !scores)
        return qs_fail(QS_EARG, "qs_tok_new_spm: need 1..%d pieces with scores, got %d", TOK_MAX_VOCAB, n);
    if (bos >= n || eos >= n || unk >= n)
        return qs_fail(QS_EARG, "qs_tok_new_spm: bos %d / eos %d / unk %d outside the %d pieces", bos, eos, unk, n);
    qs_tok *t;
    tok_pref *pref;
    qs_status st = vocab_begin(QS_TOK_SPM_SCORE, n, pieces, "qs_tok_new_spm", &t, &pref);
    if (st) goto done;
    for (int i = 0; i < n; i++) {
        int ty = types ? types[i] : 1;
        switch (ty) {
        case 2: /* unknown */
        case 3: /* control */
            pref[i].attr = TOK_SPECIAL | TOK_NOMERGE;
            break;
        case 4: /* user-defined: matched in the text as a whole */
            pref[i].attr = TOK_ADDED;
            break;
        case 5: /* unused */
            pref[i].attr = TOK_NOMERGE;
            break;
        default:
            break;
        }
        if (!types && (i == bos || i == eos || i == unk)) pref[i].attr = TOK_SPECIAL | TOK_NOMERGE;
    }
    if ((st = tok_set_vocab(t, n, pref, "qs_tok_new_spm")) != QS_OK) goto done;
    t->scores = malloc((size_t)n * sizeof *t->scores);
    if (!t->scores) {
        st = qs_fail(QS_ENOMEM, "qs_tok_new_spm: out of memory");
        goto done;
    }
    memcpy(t->scores, scores, (size_t)n * sizeof *scores);
    t->bos = bos;
    t->eos = eos;
    t->unk = unk;
    if (bos >= 0) t->prefix[t->n_prefix++] = bos;
    t->prepend = TOK_PREPEND_FIRST_ANY;
    st = tok_finish(t, "qs_tok_new_spm");
done:
    return vocab_end(st, t, pref, out);
}

/* llama.cpp's pre-tokenizer names (GGUF tokenizer.ggml.pre) and the regexes
 * their tokenizers split by, in order (each splits the pieces of the last,
 * matches kept apart), written as the published tokenizer.json files have
 * them: Oniguruma runs them as Hugging Face's library does. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
static const struct {
    const char *name;  /* the one convert_hf_to_gguf.py writes for such a tokenizer */
    const char *names; /* every name llama.cpp reads as this pre-tokenizer, space-separated */
    const char *re[4];
    int ignore_merges;
} gguf_pres[] = {
    {"llama-bpe", "llama3 llama-v3 llama-bpe falcon3", {RE_LLAMA3}, 1},
    {"dbrx", "dbrx smaug-bpe chatglm-bpe", {RE_LLAMA3}, 0},
    {"qwen2", "qwen2 deepseek-r1-qwen stablelm2 megrez", {RE_QWEN2}, 0},
    {"starcoder", "starcoder refact command-r smollm codeshell exaone minerva-7b", {"\\p{N}", RE_GPT2}, 0},
    {"falcon", "falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}, 0},
    {"default", "default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, 0},
};

const char *tok_gguf_pre_name(const char *const *re, int n, int ignore_merges) {
    /* GPT-2's own pattern, with or without the trailing \s+ that the
     * ByteLevel pre-tokenizer adds (a whitespace run the alternatives before
     * it leave behind is split off whole either way) */
    if (n == 1 && !ignore_merges &&
        (!strcmp(re[0], RE_GPT2) || !strcmp(re[0], RE_GPT2 "|\\s+")))
        return "gpt-2";
    for (size_t k = 0; k < sizeof gguf_pres / sizeof *gguf_pres; k++) {
        int m = 0;
        while (m < 4 && gguf_pres[k].re[m]) m++;
        if (m != n || gguf_pres[k].ignore_merges != !!ignore_merges) continue;
        int same = 1;
        for (int i = 0; i < n && same; i++) same = !strcmp(re[i], gguf_pres[k].re[i]);
        if (!same) continue;
        return gguf_pres[k].name;
    }
    return NULL;
}

static int name_in(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *sp = strchr(p, ' ');
        size_t len = sp ? (size_t)(sp - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        if (!sp) break;
        p = sp + 1;
    }
    return 0;
}

/* The pipeline of a llama.cpp pre-tokenizer name: Split(regex, Isolated)...
 * then ByteLevel without its own regex. GPT-2's names keep the fixed
 * byte-level kind. */
static qs_status gguf_pre_pipe(qs_tok *t, const char *pre, const char *who) {
    if (!pre || name_in("gpt-2 phi-2 roberta-bpe mpt olmo jais gigachat", pre)) return QS_OK;
    int k = -1;
    for (size_t i = 0; i < sizeof gguf_pres / sizeof *gguf_pres && k < 0; i++)
        if (name_in(gguf_pres[i].names, pre)) k = (int)i;
    if (k < 0)
        return qs_fail(QS_EUNSUPPORTED, "%s: pre-tokenizer '%.40s' is not one qscope knows (llama-bpe, qwen2, gpt-2, "
                       "starcoder, falcon, default, ...)", who, pre);
    cJSON *root = cJSON_CreateObject(), *seq = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON *list = cJSON_AddArrayToObject(seq, "pretokenizers");
    for (int i = 0; i < 4 && gguf_pres[k].re[i]; i++) {
        cJSON *sp = cJSON_CreateObject();
        cJSON_AddStringToObject(sp, "type", "Split");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(sp, "pattern"), "Regex", gguf_pres[k].re[i]);
        cJSON_AddStringToObject(sp, "behavior", "Isolated");
        cJSON_AddBoolToObject(sp, "invert", 0);
        cJSON_AddItemToArray(list, sp);
    }
    cJSON *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
    cJSON_AddBoolToObject(bl, "use_regex", 0);
    cJSON_AddItemToArray(list, bl);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "decoder"), "type", "ByteLevel");
    qs_status st = tok_pipe_build(t, root, who);
    cJSON_Delete(root);
    t->ignore_merges = gguf_pres[k].ignore_merges;
    return st;
}

qs_status qs_tok_new_byte_bpe(int n, const char *const *pieces, int n_merges, const char *const *merges,
                              const int32_t *types, int bos, int eos, int add_bos, const char *pre, qs_tok **out) {
    *out = NULL;
    if (n <= 0 || n > TOK_MAX_VOCAB || !pieces || n_merges < 0 || (n_merges && !merges))
        return qs_fail(QS_EARG, "qs_tok_new_byte_bpe: need 1..%d pieces and a merge list, got %d pieces",
                       TOK_MAX_VOCAB, n);
    if (bos >= n || eos >= n)
        return qs_fail(QS_EARG, "qs_tok_new_byte_bpe: bos %d / eos %d outside the %d pieces", bos, eos, n);
    qs_tok *t;
    tok_pref *pref;
    qs_status st = vocab_begin(QS_TOK_BYTE_BPE, n, pieces, "qs_tok_new_byte_bpe", &t, &pref);
    if (st) goto done;
    for (int i = 0; i < n; i++) {
        /* BOS/EOS, and tokens typed control (3) or user-defined (4), are
         * added tokens matched in the text, as GPT-2's <|endoftext|> is */
        int ty = types ? types[i] : 1;
        if (i == bos || i == eos || ty == 3) pref[i].attr = TOK_SPECIAL | TOK_ADDED | TOK_NOMERGE;
        else if (ty == 4) pref[i].attr = TOK_ADDED | TOK_NOMERGE;
    }
    if ((st = gguf_pre_pipe(t, pre, "tokenizer.ggml.pre")) != QS_OK) goto done;
    if ((st = tok_set_vocab(t, n, pref, "qs_tok_new_byte_bpe")) != QS_OK) goto done;
    if ((st = tok_build_vmap(t)) != QS_OK) goto done;
    if ((st = tok_merges_init(t, (size_t)n_merges)) != QS_OK) goto done;
    for (int i = 0; i < n_merges; i++) {
        const char *m = merges[i] ? merges[i] : "";
        const char *sp = strchr(m, ' ');
        char where[32];
        snprintf(where, sizeof where, "merge %d", i);
        if (!sp) {
            st = qs_fail(QS_EFORMAT, "qs_tok_new_byte_bpe: %s: '%s' is not two tokens separated by a space", where, m);
            goto done;
        }
        st = add_merge(t, m, (size_t)(sp - m), sp + 1, strlen(sp + 1), i, "qs_tok_new_byte_bpe", where,
                       "the vocabulary");
        if (st != QS_OK) goto done;
    }
    if ((st = mark_unreachable(t, "qs_tok_new_byte_bpe")) != QS_OK) goto done;
    t->bos = bos;
    t->eos = eos;
    if (add_bos && bos >= 0) t->prefix[t->n_prefix++] = bos;
    st = tok_finish(t, "qs_tok_new_byte_bpe");
done:
    return vocab_end(st, t, pref, out);
}
