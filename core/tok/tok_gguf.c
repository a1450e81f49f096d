/* tok_gguf.c — a loaded tokenizer described as GGUF holds it (tokenizer.ggml.*),
 * the way llama.cpp's convert_hf_to_gguf.py writes it, so that the GGUF
 * constructors (qs_tok_new_spm, qs_tok_new_byte_bpe) and llama.cpp rebuild
 * a tokenizer giving the same ids.
 *
 * Two GGUF models cover what qscope loads:
 *   - "llama": SentencePiece BPE driven by piece scores. A tokenizer.json
 *     that merges by rank (Llama's) gets SentencePiece's own scores from the
 *     directory's tokenizer.model when there is one; otherwise each piece
 *     scores minus the first merge rank that makes it, so that merging the
 *     best-scoring pair merges in rank order.
 *   - "gpt2": byte-level BPE with its merges in rank order and the name of a
 *     pre-tokenizer llama.cpp knows (its regexes are in tok_load.c).
 * What GGUF cannot say (a normalizer, a regex llama.cpp has no name for,
 * added tokens that strip spaces, default specials other than BOS/EOS) is
 * refused with QS_EUNSUPPORTED and one line naming it: a GGUF that tokenizes
 * differently from the model's own tokenizer is worse than none.
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tok/tok_impl.h"

#define SPACE_MARK "\xe2\x96\x81" /* U+2581 */
#define SCORE_ADDED -1000.0f      /* what the converter gives added tokens */

/* qs_tok_gguf and the storage its pointers point into. */
typedef struct {
    qs_tok_gguf g; /* first: a qs_tok_gguf * is a gguf_own * */
    char *arena;   /* pieces, NUL-terminated */
    char *marena;  /* merges, NUL-terminated */
} gguf_own;

void qs_tok_gguf_free(qs_tok_gguf *g) {
    if (!g) return;
    gguf_own *o = (gguf_own *)g;
    free((void *)g->pieces);
    free(g->scores);
    free(g->types);
    free((void *)g->merges);
    free(o->arena);
    free(o->marena);
    free(o);
}

/* ------------------------------------------------ SentencePiece's ModelProto */

/* A protobuf reader over [p, end): the file comes from the internet, so
 * every length is checked against what is left. */
typedef struct {
    const uint8_t *p, *end;
} pbuf;

static int pb_varint(pbuf *r, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return 0;
        uint8_t b = *r->p++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}

/* Skip one field's value of wire type wt (0 varint, 1 fixed64, 2 bytes,
 * 5 fixed32); groups (3, 4) are not used by sentencepiece_model.proto. */
static int pb_skip(pbuf *r, uint32_t wt) {
    uint64_t v;
    switch (wt) {
    case 0: return pb_varint(r, &v);
    case 1:
        if (r->end - r->p < 8) return 0;
        r->p += 8;
        return 1;
    case 5:
        if (r->end - r->p < 4) return 0;
        r->p += 4;
        return 1;
    case 2:
        if (!pb_varint(r, &v) || v > (uint64_t)(r->end - r->p)) return 0;
        r->p += v;
        return 1;
    default: return 0;
    }
}

/* The bytes of a length-delimited field whose tag has been read. */
static int pb_bytes(pbuf *r, pbuf *sub) {
    uint64_t v;
    if (!pb_varint(r, &v) || v > (uint64_t)(r->end - r->p)) return 0;
    sub->p = r->p;
    sub->end = r->p + v;
    r->p += v;
    return 1;
}

/* Read path's ModelProto (declared in tok_impl.h): field 1 is the repeated SentencePiece {1: piece,
 * 2: score (float), 3: type (enum, default NORMAL = 1)}, by id. Each piece
 * must be t's piece of that id (the file belongs to this tokenizer); the
 * added tokens are left to the caller, which types them as the converter
 * does. */
qs_status tok_spm_model_read(const char *path, const qs_tok *t, float *scores, int32_t *types) {
    qs_map map;
    qs_status st = qs_io_map(path, &map);
    if (st != QS_OK) return st;
    if (map.size == 0) {
        qs_io_unmap(&map);
        return qs_fail(QS_EFORMAT, "%s: empty file, not a SentencePiece model", path);
    }
    pbuf r = {map.data, (const uint8_t *)map.data + map.size};
    int id = 0;
    st = QS_OK;
    while (r.p < r.end && st == QS_OK) {
        uint64_t tag;
        if (!pb_varint(&r, &tag)) {
            st = qs_fail(QS_EFORMAT, "%s: malformed protobuf at byte %zu", path, (size_t)(r.p - map.data));
            break;
        }
        if (tag >> 3 != 1 || (tag & 7) != 2) { /* trainer_spec, normalizer_spec, ... */
            if (!pb_skip(&r, (uint32_t)(tag & 7)))
                st = qs_fail(QS_EFORMAT, "%s: field %llu of wire type %u is cut short or not protobuf's", path,
                             (unsigned long long)(tag >> 3), (unsigned)(tag & 7));
            continue;
        }
        pbuf sp;
        if (!pb_bytes(&r, &sp)) {
            st = qs_fail(QS_EFORMAT, "%s: piece %d runs past the end of the file", path, id);
            break;
        }
        if (id >= t->n_vocab) {
            st = qs_fail(QS_EFORMAT, "%s: more pieces than the tokenizer's %d", path, t->n_vocab);
            break;
        }
        const uint8_t *piece = NULL;
        size_t plen = 0;
        float score = 0;
        uint64_t type = 1;
        while (sp.p < sp.end) {
            uint64_t ft;
            pbuf val;
            int ok = pb_varint(&sp, &ft);
            if (ok && ft == (1 << 3 | 2) && (ok = pb_bytes(&sp, &val))) {
                piece = val.p;
                plen = (size_t)(val.end - val.p);
            } else if (ok && ft == (2 << 3 | 5)) {
                if ((ok = sp.end - sp.p >= 4)) {
                    memcpy(&score, sp.p, 4); /* little-endian, as protobuf stores it */
                    sp.p += 4;
                }
            } else if (ok && ft == (3 << 3 | 0)) {
                ok = pb_varint(&sp, &type);
            } else if (ok) {
                ok = pb_skip(&sp, (uint32_t)(ft & 7));
            }
            if (!ok) {
                st = qs_fail(QS_EFORMAT, "%s: piece %d is malformed", path, id);
                break;
            }
        }
        if (st != QS_OK) break;
        if (type < 1 || type > 6) {
            st = qs_fail(QS_EFORMAT, "%s: piece %d has type %llu (SentencePiece's are 1..6)", path, id,
                         (unsigned long long)type);
            break;
        }
        if (!(t->attr[id] & TOK_ADDED) &&
            (!piece || plen != t->plen[id] || memcmp(piece, t->pieces[id], plen) != 0)) {
            st = qs_fail(QS_EFORMAT, "%s: piece %d is '%.*s', the tokenizer's is '%.40s': not this tokenizer's model",
                         path, id, (int)(plen > 40 ? 40 : plen), piece ? (const char *)piece : "", t->pieces[id]);
            break;
        }
        scores[id] = score;
        types[id] = (int32_t)type;
        id++;
    }
    qs_io_unmap(&map);
    return st;
}

/* ---------------------------------------------------------- the pipelines */

/* Can llama.cpp's "llama" tokenizer run t as t runs? It escapes spaces to
 * U+2581, puts one in front of the text, merges by score over the whole
 * text and falls back to <0xNN> bytes. */
static qs_status spm_check(const qs_tok *t) {
    if (t->pipe)
        return qs_fail(QS_EUNSUPPORTED, "tokenizer: a SentencePiece-style tokenizer.json pipeline (%s) has no GGUF "
                       "form", tok_pipe_describe(t->pipe));
    if (t->kind == QS_TOK_SPM_SCORE) return QS_OK; /* llama2.c and GGUF vocabularies are this model already */
    if (t->space_len != 3 || memcmp(t->space, SPACE_MARK, 3))
        return qs_fail(QS_EUNSUPPORTED, "tokenizer: spaces become '%.*s', llama.cpp's SentencePiece uses U+2581",
                       t->space_len, t->space);
    if (t->prepend == TOK_PREPEND_NEVER)
        return qs_fail(QS_EUNSUPPORTED, "tokenizer: no U+2581 is put in front of the text, as llama.cpp's "
                       "SentencePiece always does");
    if (t->spm_split)
        return qs_fail(QS_EUNSUPPORTED, "tokenizer: Metaspace split (each U+2581 starts a word) is not how llama.cpp's "
                       "SentencePiece merges");
    if (!t->byte_fallback)
        return qs_fail(QS_EUNSUPPORTED, "tokenizer: SentencePiece BPE without byte_fallback; llama.cpp's falls back to "
                       "<0xNN> bytes");
    return QS_OK;
}

/* llama.cpp's pre-tokenizer name for a byte-level t, or a refusal naming
 * what it would not run. */
static qs_status byte_pre(const qs_tok *t, const char **pre) {
    *pre = NULL;
    if (t->cont_prefix || t->eow_suffix)
        return qs_fail(QS_EUNSUPPORTED, "tokenizer: BPE with a continuing_subword_prefix or end_of_word_suffix has no "
                       "GGUF form");
    if (!t->pipe) { /* the fixed kind: GPT-2's ByteLevel pre-tokenizer */
        if (t->add_prefix_space)
            return qs_fail(QS_EUNSUPPORTED, "tokenizer: ByteLevel add_prefix_space puts a space in front of the text; "
                           "llama.cpp's gpt2 tokenizer does not");
        if (!t->use_regex)
            return qs_fail(QS_EUNSUPPORTED, "tokenizer: ByteLevel without its regex (no pre-tokenizer split) has no "
                           "llama.cpp name");
        if (t->ignore_merges)
            return qs_fail(QS_EUNSUPPORTED, "tokenizer: GPT-2's regex with ignore_merges has no llama.cpp name");
        *pre = "gpt-2";
        return QS_OK;
    }
    tok_pipe_step s;
    if (tok_pipe_n_steps(t->pipe, 0) > 0) {
        tok_pipe_get_step(t->pipe, 0, 0, &s);
        return qs_fail(QS_EUNSUPPORTED, "tokenizer: normalizer %s, which llama.cpp does not run", s.type);
    }
    int n = tok_pipe_n_steps(t->pipe, 1);
    const char *re[8];
    int n_re = 0;
    for (int i = 0; i < n; i++) {
        tok_pipe_get_step(t->pipe, 1, i, &s);
        int last = i == n - 1;
        if (!strcmp(s.type, "Split") && !last) {
            if (s.literal || !s.isolated || s.invert || n_re == 8)
                return qs_fail(QS_EUNSUPPORTED, "tokenizer: pre-tokenizer Split of '%.60s' is not an isolating regex "
                               "split as llama.cpp's", s.pattern ? s.pattern : "");
            re[n_re++] = s.pattern;
        } else if (!strcmp(s.type, "ByteLevel") && last) {
            if (s.add_prefix_space)
                return qs_fail(QS_EUNSUPPORTED, "tokenizer: ByteLevel add_prefix_space puts a space in front of the "
                               "text; llama.cpp's gpt2 tokenizer does not");
            if (s.use_regex) {
                if (n_re)
                    return qs_fail(QS_EUNSUPPORTED, "tokenizer: Split regexes followed by ByteLevel's own regex have "
                                   "no llama.cpp name");
                if (t->ignore_merges)
                    return qs_fail(QS_EUNSUPPORTED, "tokenizer: GPT-2's regex with ignore_merges has no llama.cpp name");
                *pre = "gpt-2";
                return QS_OK;
            }
        } else {
            return qs_fail(QS_EUNSUPPORTED, "tokenizer: pre-tokenizer %s (step %d of %d) has no llama.cpp form", s.type,
                           i + 1, n);
        }
    }
    if (!n_re) return qs_fail(QS_EUNSUPPORTED, "tokenizer: a byte-level pipeline that never splits has no llama.cpp name");
    *pre = tok_gguf_pre_name(re, n_re, t->ignore_merges);
    if (!*pre)
        return qs_fail(QS_EUNSUPPORTED, "tokenizer: pre-tokenizer regex '%.80s'%s%s has no llama.cpp name", re[0],
                       n_re > 1 ? " (and more)" : "", t->ignore_merges ? " with ignore_merges" : "");
    return QS_OK;
}

/* BOS / EOS and whether they are added: GGUF says only "add BOS" and "add
 * EOS", so a tokenizer adding anything else cannot be described. */
static qs_status default_specials(const qs_tok *t, qs_tok_gguf *g) {
    g->bos = t->bos;
    g->eos = t->eos;
    if (t->n_prefix > 1 || t->n_suffix > 1)
        return qs_fail(QS_EUNSUPPORTED, "tokenizer: adds %d tokens in front and %d behind by default; GGUF can say only "
                       "BOS and EOS", t->n_prefix, t->n_suffix);
    if (t->n_prefix) {
        /* OPT adds </s>: its tokenizer_config.json calls </s> the BOS, and
         * it is the BOS that is added. One the config does not name becomes
         * the BOS, since that is what is put in front. */
        if (g->bos < 0) g->bos = t->prefix[0];
        if (t->prefix[0] != g->bos)
            return qs_fail(QS_EUNSUPPORTED, "tokenizer: adds '%.40s' in front by default, not its BOS '%.40s'",
                           t->pieces[t->prefix[0]], t->pieces[g->bos]);
        g->add_bos = 1;
    }
    if (t->n_suffix) {
        if (g->eos < 0) g->eos = t->suffix[0];
        if (t->suffix[0] != g->eos)
            return qs_fail(QS_EUNSUPPORTED, "tokenizer: adds '%.40s' behind by default, not its EOS '%.40s'",
                           t->pieces[t->suffix[0]], t->pieces[g->eos]);
        g->add_eos = 1;
    }
    return QS_OK;
}

/* unk and pad as tokenizer_config.json names them (the converter reads them
 * there too), when t itself has no unk. */
static qs_status config_specials(const qs_tok *t, const char *dir, qs_tok_gguf *g) {
    char path[1024];
    if (!dir || !qs_io_exists(qs_io_join(path, sizeof path, dir, "tokenizer_config.json"))) return QS_OK;
    char *data;
    size_t len;
    qs_status st = qs_io_read_file(path, QS_IO_TEXT_MAX, &data, &len);
    if (st != QS_OK) return st;
    cJSON *root = cJSON_ParseWithLength(data, len);
    free(data);
    if (!root) return qs_fail(QS_EFORMAT, "%s: malformed JSON", path);
    static const char *const keys[] = {"unk_token", "pad_token"};
    int *dst[] = {&g->unk, &g->pad};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[k]);
        if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (*dst[k] < 0 && cJSON_IsString(v)) *dst[k] = qs_tok_lookup(t, v->valuestring);
    }
    cJSON_Delete(root);
    return QS_OK;
}

/* ------------------------------------------------------------- the pieces */

/* The piece of id i as GGUF stores it: unused ids get the converter's
 * "[PAD<i>]"; a llama2.c vocabulary's spaces become U+2581, which is what
 * llama.cpp's SentencePiece looks up. Writes at most cap bytes plus a NUL
 * into dst (when not NULL); returns the length. */
static size_t gguf_piece(const qs_tok *t, int i, char *dst, size_t cap) {
    char pad[24];
    const char *s = t->pieces[i];
    size_t n = t->plen[i];
    if (t->attr[i] & TOK_UNUSED) {
        n = (size_t)snprintf(pad, sizeof pad, "[PAD%d]", i);
        s = pad;
    }
    int spaces = t->kind != QS_TOK_BYTE_BPE && t->space_len == 1 && !(t->attr[i] & TOK_ADDED);
    size_t o = 0;
    for (size_t k = 0; k < n; k++) {
        if (spaces && s[k] == t->space[0]) {
            if (dst && o + 3 <= cap) memcpy(dst + o, SPACE_MARK, 3);
            o += 3;
        } else {
            if (dst && o < cap) dst[o] = s[k];
            o++;
        }
    }
    if (dst) dst[o < cap ? o : cap] = 0;
    return o;
}

static qs_status fill_pieces(const qs_tok *t, gguf_own *o) {
    size_t total = 0;
    for (int i = 0; i < t->n_vocab; i++) total += gguf_piece(t, i, NULL, 0) + 1;
    o->arena = malloc(total);
    o->g.pieces = malloc((size_t)t->n_vocab * sizeof *o->g.pieces);
    if (!o->arena || !o->g.pieces) return qs_fail(QS_ENOMEM, "tokenizer: out of memory for %d pieces", t->n_vocab);
    char *p = o->arena;
    for (int i = 0; i < t->n_vocab; i++) {
        size_t n = gguf_piece(t, i, p, total - (size_t)(p - o->arena) - 1);
        o->g.pieces[i] = p;
        /* U+2581 for ' ' must not make a second copy of another piece */
        if (n != t->plen[i] && !(t->attr[i] & TOK_UNUSED)) {
            int other = tok_lookup_n(t, p, n);
            if (other >= 0 && other != i)
                return qs_fail(QS_EUNSUPPORTED, "tokenizer: piece %d '%.40s' with U+2581 for its spaces is piece %d",
                               i, t->pieces[i], other);
        }
        p += n + 1;
    }
    return QS_OK;
}

/* SentencePiece's token type of id i from what t knows about it. */
static int32_t spm_type(const qs_tok *t, int i, int unk) {
    uint8_t a = t->attr[i];
    if (a & TOK_UNUSED) return 5;
    if (a & TOK_ADDED) return (a & TOK_SPECIAL) ? 3 : 4; /* as the converter types added tokens */
    if (i == unk) return 2;
    if (a & TOK_BYTE) return 6;
    if (a & TOK_SPECIAL) return 3;
    if (a & TOK_NOMERGE) return 5; /* never merged: what qs_tok_new_spm makes of "unused" */
    return 1;
}

/* Scores for a tokenizer that merges by rank: minus the first rank that
 * makes each piece, so that the best-scoring pair is the lowest-ranked merge;
 * pieces no merge makes (characters, bytes, specials) score below all. */
static qs_status derive_scores(const qs_tok *t, float *scores) {
    int32_t *first = malloc((size_t)t->n_vocab * sizeof *first);
    if (!first) return qs_fail(QS_ENOMEM, "tokenizer: out of memory for %d scores", t->n_vocab);
    for (int i = 0; i < t->n_vocab; i++) scores[i] = -(float)t->n_merges - (float)i;
    for (int i = 0; i < t->n_vocab; i++) first[i] = INT32_MAX;
    for (uint32_t k = 0; t->mkeys && k <= t->mmask; k++)
        if (t->mkeys[k] != TOK_NO_KEY && t->mval[k].rank < first[t->mval[k].id])
            first[t->mval[k].id] = t->mval[k].rank;
    for (int i = 0; i < t->n_vocab; i++)
        if (first[i] != INT32_MAX) scores[i] = -(float)first[i];
    free(first);
    return QS_OK;
}

static int cmp_u64(const void *pa, const void *pb) {
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return a < b ? -1 : a > b;
}

/* SentencePiece's own scores and types from tokenizer.model, as the
 * converter reads them, when they merge as tokenizer.json's ranks do: the
 * piece each merge makes scores no higher than the one the merge before it
 * makes. A tokenizer.json converted otherwise (transformers 5 ranks the
 * merges of U+2581 runs first, which SentencePiece scores -1e9) keeps the
 * scores derived from its ranks: tokenizer.json is what the model's ids
 * came from. The types are SentencePiece's either way. */
static qs_status spm_model_scores(const qs_tok *t, const char *path, qs_tok_gguf *g) {
    size_t n = (size_t)t->n_vocab;
    float *sc = malloc(n * sizeof *sc);
    int32_t *ty = malloc(n * sizeof *ty);
    uint64_t *order = NULL;
    size_t m = 0;
    qs_status st = sc && ty ? QS_OK : qs_fail(QS_ENOMEM, "%s: out of memory", path);
    if (st == QS_OK) {
        memcpy(sc, g->scores, n * sizeof *sc);
        memcpy(ty, g->types, n * sizeof *ty);
        st = tok_spm_model_read(path, t, sc, ty);
    }
    for (uint32_t k = 0; st == QS_OK && t->mkeys && k <= t->mmask; k++) m += t->mkeys[k] != TOK_NO_KEY;
    if (st == QS_OK && !(order = malloc((m ? m : 1) * sizeof *order))) st = qs_fail(QS_ENOMEM, "%s: out of memory", path);
    int agree = 1;
    if (st == QS_OK) {
        size_t j = 0;
        for (uint32_t k = 0; t->mkeys && k <= t->mmask; k++)
            if (t->mkeys[k] != TOK_NO_KEY) order[j++] = (uint64_t)(uint32_t)t->mval[k].rank << 32 | t->mval[k].id;
        qsort(order, m, sizeof *order, cmp_u64);
        for (size_t i = 1; i < m && agree; i++)
            agree = sc[(uint32_t)order[i]] <= sc[(uint32_t)order[i - 1]];
    }
    if (st == QS_OK) {
        for (size_t i = 0; i < n; i++) {
            if (t->attr[i] & TOK_ADDED) { /* typed and scored as the converter does */
                ty[i] = spm_type(t, (int)i, g->unk);
                sc[i] = SCORE_ADDED;
            }
            g->types[i] = ty[i];
            if (agree) g->scores[i] = sc[i];
        }
    }
    free(order);
    free(sc);
    free(ty);
    return st;
}

static qs_status describe_spm(const qs_tok *t, const char *dir, gguf_own *o) {
    qs_tok_gguf *g = &o->g;
    qs_status st = spm_check(t);
    if (st != QS_OK) return st;
    g->model = "llama";
    g->pre = "default"; /* what the converter writes; llama.cpp's SentencePiece reads no pre-tokenizer */
    g->scores = malloc((size_t)t->n_vocab * sizeof *g->scores);
    g->types = malloc((size_t)t->n_vocab * sizeof *g->types);
    if (!g->scores || !g->types)
        return qs_fail(QS_ENOMEM, "tokenizer: out of memory for %d scores", t->n_vocab);
    int unk = g->unk;
    for (int i = 0; i < t->n_vocab; i++) g->types[i] = spm_type(t, i, unk);
    if (t->kind == QS_TOK_SPM_SCORE) {
        memcpy(g->scores, t->scores, (size_t)t->n_vocab * sizeof *g->scores);
    } else {
        char path[1024];
        if ((st = derive_scores(t, g->scores)) != QS_OK) return st;
        for (int i = 0; i < t->n_vocab; i++)
            if (t->attr[i] & TOK_ADDED) g->scores[i] = SCORE_ADDED; /* as the converter scores them */
        if (dir && qs_io_exists(qs_io_join(path, sizeof path, dir, "tokenizer.model")))
            st = spm_model_scores(t, path, g);
    }
    return st;
}

static qs_status describe_byte_bpe(const qs_tok *t, gguf_own *o) {
    qs_tok_gguf *g = &o->g;
    qs_status st = byte_pre(t, &g->pre);
    if (st != QS_OK) return st;
    g->model = "gpt2";
    for (int j = 0; j < t->n_added; j++) {
        const tok_added *a = &t->added[j];
        if (a->lstrip || a->rstrip || a->single_word)
            return qs_fail(QS_EUNSUPPORTED, "tokenizer: added token '%.40s' has lstrip/rstrip/single_word, which GGUF "
                           "cannot say", t->pieces[a->id]);
    }
    g->types = malloc((size_t)t->n_vocab * sizeof *g->types);
    if (!g->types) return qs_fail(QS_ENOMEM, "tokenizer: out of memory for %d types", t->n_vocab);
    for (int i = 0; i < t->n_vocab; i++) {
        uint8_t a = t->attr[i];
        g->types[i] = (a & TOK_UNUSED) ? 5 : (a & TOK_SPECIAL) ? 3 : (a & TOK_ADDED) ? 4 : 1;
    }
    /* merges "a b" in rank order (a pair listed twice kept its later rank) */
    size_t n = 0, bytes = 0;
    for (uint32_t k = 0; t->mkeys && k <= t->mmask; k++) n += t->mkeys[k] != TOK_NO_KEY;
    uint64_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return qs_fail(QS_ENOMEM, "tokenizer: out of memory for %zu merges", n);
    size_t m = 0;
    for (uint32_t k = 0; t->mkeys && k <= t->mmask; k++)
        if (t->mkeys[k] != TOK_NO_KEY) {
            int32_t a = (int32_t)(t->mkeys[k] >> 32), b = (int32_t)(uint32_t)t->mkeys[k];
            order[m++] = (uint64_t)(uint32_t)t->mval[k].rank << 32 | k;
            bytes += t->plen[a] + t->plen[b] + 2;
        }
    qsort(order, n, sizeof *order, cmp_u64);
    o->marena = malloc(bytes ? bytes : 1);
    g->merges = malloc((n ? n : 1) * sizeof *g->merges);
    if (!o->marena || !g->merges) {
        free(order);
        return qs_fail(QS_ENOMEM, "tokenizer: out of memory for %zu merges", n);
    }
    char *p = o->marena;
    for (size_t j = 0; j < n; j++) {
        uint32_t k = (uint32_t)order[j];
        int32_t a = (int32_t)(t->mkeys[k] >> 32), b = (int32_t)(uint32_t)t->mkeys[k];
        g->merges[j] = p;
        memcpy(p, t->pieces[a], t->plen[a]);
        p += t->plen[a];
        *p++ = ' ';
        memcpy(p, t->pieces[b], t->plen[b]);
        p += t->plen[b];
        *p++ = 0;
    }
    g->n_merges = (int)n;
    free(order);
    return QS_OK;
}

qs_status qs_tok_to_gguf(const qs_tok *t, const char *dir, qs_tok_gguf **out) {
    *out = NULL;
    if (!t) return qs_fail(QS_EARG, "qs_tok_to_gguf: NULL tokenizer");
    gguf_own *o = calloc(1, sizeof *o);
    if (!o) return qs_fail(QS_ENOMEM, "tokenizer: out of memory");
    qs_tok_gguf *g = &o->g;
    g->n = t->n_vocab;
    g->unk = t->unk;
    g->pad = -1;
    qs_status st = default_specials(t, g);
    if (st == QS_OK) st = config_specials(t, dir, g);
    if (st == QS_OK) st = t->kind == QS_TOK_BYTE_BPE ? describe_byte_bpe(t, o) : describe_spm(t, dir, o);
    if (st == QS_OK) st = fill_pieces(t, o);
    if (st != QS_OK) {
        qs_tok_gguf_free(g);
        return st;
    }
    *out = g;
    return QS_OK;
}
