/* tok.c — the tokenizer engine: vocabulary tables, added-token splitting,
 * pre-tokenization, the two BPE merge loops, encode and decode.
 *
 * The loaders (tokenizer.json, vocab.json + merges.txt, tokenizer.bin, GGUF
 * vocabularies) live in tok_load.c and fill the struct declared in tok_impl.h.
 *
 * Both merge loops are O(n log n) in the number of characters of a word: the
 * symbols form a linked list over the original positions and a binary heap
 * holds candidate pairs, stale entries being dropped when popped. That matters
 * for SentencePiece tokenizers whose pre-tokenizer does not split: the whole
 * text (1.3 MB for WikiText-2) is a single word. When the vocabulary shows
 * that no merge can cross the point in front of a space (no piece has a space
 * after another character, true of Llama's and llama2.c's), the text is cut
 * there: the ids are the same, and repeated words come from a per-call cache.
 */
#include "tok/tok_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/unicode.h"

/* ---------------------------------------------------------------- hashing */

uint64_t tok_hash(const void *p, size_t n) {
    /* FNV-1a, then a final avalanche so the low bits used as slot are mixed */
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    h ^= h >> 31;
    h *= 0x7fb5d329728ea185ull;
    h ^= h >> 27;
    return h;
}

static uint32_t pair_slot(uint64_t key, uint32_t mask) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32 ^ h) & mask;
}

static uint32_t table_size_for(size_t n) {
    uint32_t cap = 16;
    while (cap < n * 2 + 1) cap <<= 1;
    return cap;
}

int tok_lookup_n(const qs_tok *t, const char *s, size_t n) {
    if (!t->vmap) return -1;
    uint32_t i = (uint32_t)tok_hash(s, n) & t->vmask;
    for (;;) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        if (t->plen[id] == n && memcmp(t->pieces[id], s, n) == 0) return id;
        i = (i + 1) & t->vmask;
    }
}

qs_status tok_build_vmap(qs_tok *t) {
    t->vmask = table_size_for((size_t)t->n_vocab) - 1;
    t->vmap = malloc(((size_t)t->vmask + 1) * sizeof *t->vmap);
    if (!t->vmap) return qs_fail(QS_ENOMEM, "tokenizer: out of memory for the vocabulary index");
    memset(t->vmap, 0xff, ((size_t)t->vmask + 1) * sizeof *t->vmap);
    /* The first id of a duplicated piece wins; holes (unused ids) are not indexed. */
    for (int id = 0; id < t->n_vocab; id++) {
        if (t->attr[id] & TOK_UNUSED) continue;
        uint32_t i = (uint32_t)tok_hash(t->pieces[id], t->plen[id]) & t->vmask;
        for (;;) {
            int32_t o = t->vmap[i];
            if (o < 0) {
                t->vmap[i] = id;
                break;
            }
            if (t->plen[o] == t->plen[id] && memcmp(t->pieces[o], t->pieces[id], t->plen[id]) == 0) {
                /* Added tokens take precedence over a model piece with the same text,
                 * as in the reference's token_to_id. */
                if ((t->attr[id] & TOK_ADDED) && !(t->attr[o] & TOK_ADDED)) t->vmap[i] = id;
                break;
            }
            i = (i + 1) & t->vmask;
        }
    }
    return QS_OK;
}

qs_status tok_merges_init(qs_tok *t, size_t n) {
    t->mmask = table_size_for(n) - 1;
    size_t cap = (size_t)t->mmask + 1;
    t->mkeys = malloc(cap * sizeof *t->mkeys);
    t->mval = malloc(cap * sizeof *t->mval);
    if (!t->mkeys || !t->mval) return qs_fail(QS_ENOMEM, "tokenizer: out of memory for %zu merges", n);
    memset(t->mkeys, 0xff, cap * sizeof *t->mkeys);
    return QS_OK;
}

void tok_merges_put(qs_tok *t, int32_t a, int32_t b, int32_t rank, int32_t new_id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t i = pair_slot(key, t->mmask);
    while (t->mkeys[i] != TOK_NO_KEY && t->mkeys[i] != key) i = (i + 1) & t->mmask;
    /* A pair listed twice keeps the later rank, as a map built in list order does. */
    if (t->mkeys[i] != key) t->n_merges++;
    t->mkeys[i] = key;
    t->mval[i].rank = rank;
    t->mval[i].id = new_id;
}

static inline const tok_merge *merge_get(const qs_tok *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t i = pair_slot(key, t->mmask);
    for (;;) {
        uint64_t k = t->mkeys[i];
        if (k == key) return &t->mval[i];
        if (k == TOK_NO_KEY) return NULL;
        i = (i + 1) & t->mmask;
    }
}

/* ------------------------------------------------------- byte-to-unicode */

/* GPT-2 maps each byte to a printable code point so that BPE pieces are text:
 * the printable Latin-1 bytes map to themselves, the other 68 to U+0100.. in
 * byte order. */
void tok_byte_to_cp(uint32_t map[256]) {
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        map[b] = keep ? (uint32_t)b : (uint32_t)next++;
    }
}

/* ------------------------------------------------------------- the heap */

int tok_grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return 0;
    *p = np;
    *cap = nc;
    return 1;
}

static void heap_push(enc_ctx *c, uint64_t key, int32_t a, int32_t b) {
    if (c->n_heap == c->cap_heap && !tok_grow((void **)&c->heap, &c->cap_heap, c->n_heap + 1, sizeof(hent))) {
        c->oom = 1;
        return;
    }
    size_t i = c->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (c->heap[p].key <= key) break;
        c->heap[i] = c->heap[p];
        i = p;
    }
    c->heap[i] = (hent){key, a, b};
}

static void sift_down(hent *h, size_t n, size_t i) {
    hent x = h[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        if (l + 1 < n && h[l + 1].key < h[l].key) l++;
        if (h[l].key >= x.key) break;
        h[i] = h[l];
        i = l;
    }
    h[i] = x;
}

/* Append without ordering, then heap_build(): O(n) for the initial pairs. */
static void heap_add(enc_ctx *c, uint64_t key, int32_t a, int32_t b) {
    if (c->n_heap == c->cap_heap && !tok_grow((void **)&c->heap, &c->cap_heap, c->n_heap + 1, sizeof(hent))) {
        c->oom = 1;
        return;
    }
    c->heap[c->n_heap++] = (hent){key, a, b};
}

static void heap_build(enc_ctx *c) {
    for (size_t i = c->n_heap / 2; i-- > 0;) sift_down(c->heap, c->n_heap, i);
}

static hent heap_pop(enc_ctx *c) {
    hent top = c->heap[0];
    if (--c->n_heap) {
        c->heap[0] = c->heap[c->n_heap];
        sift_down(c->heap, c->n_heap, 0);
    }
    return top;
}

void tok_emit(enc_ctx *c, int32_t id) {
    if (c->n_out == c->cap_out && !tok_grow((void **)&c->out, &c->cap_out, c->n_out + 1, sizeof(int32_t))) {
        c->oom = 1;
        return;
    }
    c->out[c->n_out++] = id;
}

static int syms_reserve(enc_ctx *c, size_t n) {
    if (n <= c->cap_sym) return 1;
    size_t cap = c->cap_sym;
    size_t nc = cap;
    int ok = tok_grow((void **)&c->ids, &nc, n, sizeof(int32_t));
    nc = cap;
    ok = ok && tok_grow((void **)&c->prev, &nc, n, sizeof(int32_t));
    nc = cap;
    ok = ok && tok_grow((void **)&c->next, &nc, n, sizeof(int32_t));
    nc = cap;
    ok = ok && tok_grow((void **)&c->start, &nc, n, sizeof(uint32_t));
    nc = cap;
    ok = ok && tok_grow((void **)&c->len, &nc, n, sizeof(uint32_t));
    if (!ok) {
        c->oom = 1;
        return 0;
    }
    c->cap_sym = nc;
    return 1;
}

/* ------------------------------------------------------------ word cache */

enum { CACHE_MAX_WORD = 96 };

static const int32_t *cache_get(const enc_ctx *c, const char *w, size_t n, uint64_t h, size_t *vn) {
    if (!c->cache) return NULL;
    uint32_t i = (uint32_t)h & c->cmask;
    for (;;) {
        const struct cent *e = &c->cache[i];
        if (!e->klen) return NULL;
        if (e->h == h && e->klen == n && memcmp(c->ckeys + e->koff, w, n) == 0) {
            static const int32_t none[1];
            *vn = e->vn;
            /* a word that encodes to no ids is a hit too; cvals may still be NULL */
            return e->vn ? c->cvals + e->voff : none;
        }
        i = (i + 1) & c->cmask;
    }
}

/* Remember that word w[0..n) encodes to the vn ids the output holds from
 * index `from` on (vn may be 0: the output may then be NULL). */
static void cache_put(enc_ctx *c, const char *w, size_t n, uint64_t h, size_t from) {
    size_t vn = c->n_out - from;
    if ((size_t)(c->cused + 1) * 2 > (size_t)c->cmask + 1 || !c->cache) {
        uint32_t ncap = c->cache ? (c->cmask + 1) * 2 : 4096;
        struct cent *nt = calloc(ncap, sizeof *nt);
        if (!nt) return; /* the cache is an optimisation: run without it */
        for (uint32_t j = 0; c->cache && j <= c->cmask; j++) {
            if (!c->cache[j].klen) continue;
            uint32_t k = (uint32_t)c->cache[j].h & (ncap - 1);
            while (nt[k].klen) k = (k + 1) & (ncap - 1);
            nt[k] = c->cache[j];
        }
        free(c->cache);
        c->cache = nt;
        c->cmask = ncap - 1;
    }
    if (!tok_grow((void **)&c->ckeys, &c->capkeys, c->nkeys + n, 1)) return;
    if (!tok_grow((void **)&c->cvals, &c->capvals, c->nvals + vn, sizeof(int32_t))) return;
    uint32_t i = (uint32_t)h & c->cmask;
    while (c->cache[i].klen) i = (i + 1) & c->cmask;
    memcpy(c->ckeys + c->nkeys, w, n);
    if (vn) memcpy(c->cvals + c->nvals, c->out + from, vn * sizeof(int32_t));
    c->cache[i] = (struct cent){h, (uint32_t)c->nkeys, (uint32_t)n, (uint32_t)c->nvals, (uint32_t)vn};
    c->nkeys += n;
    c->nvals += vn;
    c->cused++;
}

/* ------------------------------------------------- merges by rank (HF BPE) */

/* Merge the n symbols in c->ids (ids, -1 never appears) by merge rank: always
 * the pair with the lowest rank, the leftmost among equals, as the reference
 * BPE model does. Appends the result to the output. */
static void bpe_rank(const qs_tok *t, enc_ctx *c, size_t n) {
    int32_t *ids = c->ids, *prev = c->prev, *next = c->next;
    if (n > 1) {
        c->n_heap = 0;
        for (size_t i = 0; i < n; i++) {
            prev[i] = (int32_t)i - 1;
            next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        }
        for (size_t i = 0; i + 1 < n; i++) {
            const tok_merge *m = merge_get(t, ids[i], ids[i + 1]);
            if (m) heap_add(c, (uint64_t)(uint32_t)m->rank << 32 | i, m->id, 0);
        }
        heap_build(c);
        while (c->n_heap && !c->oom) {
            hent top = heap_pop(c);
            int32_t pos = (int32_t)(uint32_t)top.key;
            if (ids[pos] < 0) continue;
            int32_t nx = next[pos];
            if (nx < 0) continue;
            /* Entries go stale when a neighbour merged first: skip those whose
             * pair no longer produces the token they were pushed for. */
            const tok_merge *m = merge_get(t, ids[pos], ids[nx]);
            if (!m || m->id != top.a) continue;
            ids[pos] = m->id;
            ids[nx] = -1;
            int32_t nn = next[nx];
            next[pos] = nn;
            if (nn >= 0) prev[nn] = pos;
            int32_t pv = prev[pos];
            if (pv >= 0 && (m = merge_get(t, ids[pv], ids[pos])))
                heap_push(c, (uint64_t)(uint32_t)m->rank << 32 | (uint32_t)pv, m->id, 0);
            if (nn >= 0 && (m = merge_get(t, ids[pos], ids[nn])))
                heap_push(c, (uint64_t)(uint32_t)m->rank << 32 | (uint32_t)pos, m->id, 0);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0) tok_emit(c, ids[i]);
}

/* w[0..n) in GPT-2's byte-to-unicode characters, in c->wbuf; NULL when out
 * of memory. */
static const char *map_bytes(enc_ctx *c, const char *w, size_t n, size_t *out_len) {
    static const char *volatile table_ready;
    static char table[256][3];
    static uint8_t table_len[256];
    if (!table_ready) { /* idempotent: racing threads write the same bytes */
        uint32_t map[256];
        tok_byte_to_cp(map);
        for (int b = 0; b < 256; b++) table_len[b] = (uint8_t)qs_unicode_put(map[b], table[b]);
        table_ready = table[0];
    }
    if (!tok_grow((void **)&c->wbuf, &c->cap_wbuf, 2 * n + 1, 1)) {
        c->oom = 1;
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)w[i];
        memcpy(c->wbuf + o, table[b], table_len[b]);
        o += table_len[b];
    }
    *out_len = o;
    return c->wbuf;
}

/* A word the per-call cache holds: its ids emitted again, 1. Otherwise 0,
 * with *h the word's hash for cache_put (words too long for the cache: 0). */
static int cache_replay(enc_ctx *c, const char *w, size_t n, uint64_t *h) {
    *h = 0;
    if (n > CACHE_MAX_WORD) return 0;
    *h = tok_hash(w, n);
    size_t vn;
    const int32_t *hit = cache_get(c, w, n, *h, &vn);
    if (!hit) return 0;
    for (size_t i = 0; i < vn; i++) tok_emit(c, hit[i]);
    return 1;
}

/* Byte-level word: each byte is a symbol (the id of its mapped character). */
static void encode_byte_word(const qs_tok *t, enc_ctx *c, const char *w, size_t n) {
    uint64_t h = 0;
    if (cache_replay(c, w, n, &h)) return;
    if (t->ignore_merges) {
        /* a pre-token that is itself in the vocabulary is that token, merges unrun */
        size_t ml;
        const char *ms = map_bytes(c, w, n, &ml);
        int id = ms ? tok_lookup_n(t, ms, ml) : -1;
        if (id >= 0) {
            size_t before = c->n_out;
            tok_emit(c, id);
            if (n <= CACHE_MAX_WORD && !c->oom) cache_put(c, w, n, h, before);
            return;
        }
    }
    if (!syms_reserve(c, n)) return;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_sym[(unsigned char)w[i]];
        /* A byte whose character is not in the vocabulary is dropped, as the
         * reference does when the model has no unknown token. */
        if (id >= 0) c->ids[m++] = id;
        else if (t->unk >= 0) c->ids[m++] = t->unk;
    }
    size_t before = c->n_out;
    bpe_rank(t, c, m);
    if (n <= CACHE_MAX_WORD && !c->oom) cache_put(c, w, n, h, before);
}

/* SentencePiece-style word (already normalized, U+2581 for spaces): each
 * character is a symbol; characters outside the vocabulary become their
 * <0xNN> byte pieces, or the unknown token. */
static void encode_spm_rank_word(const qs_tok *t, enc_ctx *c, const char *w, size_t n) {
    /* each byte gives at most one symbol (more only with an affix and byte fallback) */
    if (!syms_reserve(c, n + 1)) return;
    int affix = (t->cont_prefix && *t->cont_prefix) || (t->eow_suffix && *t->eow_suffix);
    size_t m = 0;
    int pending_unk = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        unsigned char b0 = (unsigned char)w[i];
        size_t k = b0 < 0x80 ? 1 : qs_unicode_next(w + i, n - i, &cp);
        const char *sym = w + i; /* the symbol as looked up: with the prefix / suffix the model adds */
        size_t kl = k;
        char key[96];
        int id;
        if ((affix && i > 0 && t->cont_prefix) || (affix && i + k == n && t->eow_suffix)) {
            const char *pre = i > 0 && t->cont_prefix ? t->cont_prefix : "";
            const char *suf = i + k == n && t->eow_suffix ? t->eow_suffix : "";
            size_t lp = strlen(pre), ls = strlen(suf);
            kl = lp + k + ls;
            if (kl > sizeof key) kl = sizeof key; /* an absurd affix: the lookup fails, as it would */
            memcpy(key, pre, lp < kl ? lp : kl);
            if (lp + k <= kl) memcpy(key + lp, w + i, k);
            if (lp + k + ls <= sizeof key) memcpy(key + lp + k, suf, ls);
            sym = key;
            id = tok_lookup_n(t, key, kl);
        } else {
            id = b0 < 0x80 ? t->ascii_id[b0] : tok_lookup_n(t, w + i, k);
        }
        if (id >= 0) {
            if (pending_unk) c->ids[m++] = t->unk, pending_unk = 0;
            c->ids[m++] = id;
        } else {
            int done = 0;
            if (t->byte_fallback) {
                size_t j;
                for (j = 0; j < kl && t->byte_tok[(unsigned char)sym[j]] >= 0; j++) {}
                if (j == kl) {
                    /* Like the reference, byte pieces do not flush a pending
                     * unknown token: it follows them. */
                    if (kl > k && !syms_reserve(c, n + 1 + (kl - k) * (n / k + 1))) return;
                    for (j = 0; j < kl; j++) c->ids[m++] = t->byte_tok[(unsigned char)sym[j]];
                    done = 1;
                }
            }
            if (!done && t->unk >= 0) {
                if (pending_unk && !t->fuse_unk) c->ids[m++] = t->unk;
                pending_unk = 1;
            }
        }
        i += k;
    }
    if (pending_unk) c->ids[m++] = t->unk;
    bpe_rank(t, c, m);
}

/* ---------------------------------------------- merges by score (SPM BPE) */

/* Ascending 32-bit key for a descending float: higher scores pop first. */
static uint32_t score_key(float f) {
    f += 0.0f; /* -0.0 and +0.0 tie, as a float comparison has them */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~u;
}

static int spm_piece(const qs_tok *t, const char *s, size_t n) {
    int id = tok_lookup_n(t, s, n);
    return id >= 0 && !(t->attr[id] & TOK_NOMERGE) ? id : -1;
}

/* Score-driven BPE over the characters of w: repeatedly merge the adjacent
 * pair whose concatenation is a piece with the highest score, the leftmost
 * among equals; then each symbol becomes its piece, or its bytes. */
static void encode_spm_score(const qs_tok *t, enc_ctx *c, const char *w, size_t n) {
    if (!syms_reserve(c, n + 1)) return;
    uint32_t *st = c->start, *ln = c->len;
    int32_t *prev = c->prev, *next = c->next;
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = qs_unicode_next(w + i, n - i, &cp);
        st[m] = (uint32_t)i;
        ln[m] = (uint32_t)k;
        prev[m] = (int32_t)m - 1;
        next[m] = (int32_t)m + 1;
        m++;
        i += k;
    }
    if (m) next[m - 1] = -1;
    c->n_heap = 0;
    for (size_t i = 0; i + 1 < m; i++) {
        int id = spm_piece(t, w + st[i], ln[i] + ln[i + 1]);
        if (id >= 0) heap_add(c, (uint64_t)score_key(t->scores[id]) << 32 | i, (int32_t)ln[i], (int32_t)ln[i + 1]);
    }
    heap_build(c);
    while (c->n_heap && !c->oom) {
        hent top = heap_pop(c);
        int32_t pos = (int32_t)(uint32_t)top.key;
        int32_t nx = next[pos];
        /* the pair is still the one pushed iff both lengths are unchanged */
        if (ln[pos] != (uint32_t)top.a || nx < 0 || ln[nx] != (uint32_t)top.b) continue;
        ln[pos] += ln[nx];
        ln[nx] = 0;
        int32_t nn = next[nx];
        next[pos] = nn;
        if (nn >= 0) prev[nn] = pos;
        int32_t pv = prev[pos];
        int id;
        if (pv >= 0 && (id = spm_piece(t, w + st[pv], ln[pv] + ln[pos])) >= 0)
            heap_push(c, (uint64_t)score_key(t->scores[id]) << 32 | (uint32_t)pv, (int32_t)ln[pv], (int32_t)ln[pos]);
        if (nn >= 0 && (id = spm_piece(t, w + st[pos], ln[pos] + ln[nn])) >= 0)
            heap_push(c, (uint64_t)score_key(t->scores[id]) << 32 | (uint32_t)pos, (int32_t)ln[pos], (int32_t)ln[nn]);
    }
    for (int32_t i = m ? 0 : -1; i >= 0; i = next[i]) {
        int id = spm_piece(t, w + st[i], ln[i]);
        if (id >= 0) {
            tok_emit(c, id);
            continue;
        }
        /* not a piece: its bytes as <0xNN> pieces, or one unknown token when
         * the vocabulary lacks some of them */
        uint32_t j;
        for (j = 0; j < ln[i] && t->byte_tok[(unsigned char)w[st[i] + j]] >= 0; j++) {}
        if (j == ln[i]) {
            for (j = 0; j < ln[i]; j++) tok_emit(c, t->byte_tok[(unsigned char)w[st[i] + j]]);
        } else if (t->unk >= 0) {
            tok_emit(c, t->unk);
        }
    }
}

/* ------------------------------------------------------- pre-tokenization */

static inline int uclass(const char *s, size_t n, size_t i, size_t *k) {
    unsigned char b = (unsigned char)s[i];
    uint32_t cp;
    if (b < 0x80) {
        *k = 1;
        cp = b;
    } else {
        *k = qs_unicode_next(s + i, n - i, &cp);
    }
    return (int)qs_unicode_class_of(cp);
}

/* End of the pre-token that starts at s[i], under GPT-2's pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * The alternatives are tried in order (first match wins, not longest). */
size_t tok_gpt2_next(const char *s, size_t n, size_t i) {
    size_t k;
    int cls = uclass(s, n, i, &k);
    if (s[i] == '\'' && i + 1 < n) {
        char a = s[i + 1]; /* the contractions are lowercase only */
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (i + 2 < n) {
            char b = s[i + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        }
    }
    size_t j;
    if (s[i] == ' ' && i + 1 < n) {
        size_t k2;
        int c2 = uclass(s, n, i + 1, &k2);
        if (c2 != QS_UNICODE_SPACE) {
            cls = c2;
            j = i + 1 + k2;
            goto run;
        }
    }
    if (cls != QS_UNICODE_SPACE) {
        j = i + k;
        goto run;
    }
    /* A whitespace run: \s+(?!\S) backtracks so that, when a non-space
     * follows, the run's last character is left for the next pre-token; a
     * lone whitespace character before a non-space falls to \s+. */
    size_t last = i, e = i, count = 0;
    while (e < n) {
        size_t kk;
        if (uclass(s, n, e, &kk) != QS_UNICODE_SPACE) break;
        last = e;
        e += kk;
        count++;
    }
    if (e == n) return n;
    return count >= 2 ? last : e;
run:
    while (j < n) {
        size_t kk;
        if (uclass(s, n, j, &kk) != cls) break;
        j += kk;
    }
    return j;
}

static void encode_byte_segment(const qs_tok *t, enc_ctx *c, const char *s, size_t n) {
    if (t->add_prefix_space && n && s[0] != ' ') {
        /* the pre-tokenizer adds a space in front of a segment that lacks one */
        if (!tok_grow((void **)&c->buf, &c->cap_buf, n + 1, 1)) {
            c->oom = 1;
            return;
        }
        c->buf[0] = ' ';
        memcpy(c->buf + 1, s, n);
        s = c->buf;
        n++;
    }
    if (!t->use_regex) {
        if (n) encode_byte_word(t, c, s, n);
        return;
    }
    for (size_t i = 0; i < n && !c->oom;) {
        size_t e = tok_gpt2_next(s, n, i);
        encode_byte_word(t, c, s + i, e - i);
        i = e;
    }
}

/* Normalize a segment for the SentencePiece kinds into c->buf: spaces become
 * t->space, and the dummy prefix is put in front when the scheme asks. */
static size_t spm_normalize(const qs_tok *t, enc_ctx *c, const char *s, size_t n, size_t off) {
    size_t sl = t->space_len;
    size_t need = (n + 1) * (sl > 1 ? sl : 1) + 1;
    if (!tok_grow((void **)&c->buf, &c->cap_buf, need, 1)) {
        c->oom = 1;
        return 0;
    }
    int prepend;
    switch (t->prepend) {
    case TOK_PREPEND_ALWAYS: /* legacy normalizer: Prepend then Replace */
        prepend = n > 0;
        break;
    case TOK_PREPEND_FIRST: /* Metaspace: only the segment at the start of the text, only if it
                               does not already start with a space */
        prepend = off == 0 && n > 0 && s[0] != ' ' &&
                  !(n >= sl && memcmp(s, t->space, sl) == 0);
        break;
    case TOK_PREPEND_FIRST_ANY: /* SentencePiece's dummy prefix: at the start of non-empty text */
        prepend = off == 0 && n > 0;
        break;
    case TOK_PREPEND_METASPACE_ALWAYS:
        prepend = n > 0 && s[0] != ' ' && !(n >= sl && memcmp(s, t->space, sl) == 0);
        break;
    default:
        prepend = 0;
    }
    size_t o = 0;
    if (prepend) {
        memcpy(c->buf, t->space, sl);
        o = sl;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(c->buf + o, t->space, sl);
            o += sl;
        } else {
            c->buf[o++] = s[i];
        }
    }
    return o;
}

/* Encode one SentencePiece word through the per-call cache. */
static void encode_spm_word(const qs_tok *t, enc_ctx *c, const char *w, size_t n) {
    uint64_t h = 0;
    if (cache_replay(c, w, n, &h)) return;
    size_t before = c->n_out;
    if (t->kind == QS_TOK_SPM_SCORE) encode_spm_score(t, c, w, n);
    else encode_spm_rank_word(t, c, w, n);
    if (n <= CACHE_MAX_WORD && !c->oom) cache_put(c, w, n, h, before);
}

void tok_model_word(const qs_tok *t, enc_ctx *c, const char *w, size_t n) {
    if (!n) return;
    int affix = (t->cont_prefix && *t->cont_prefix) || (t->eow_suffix && *t->eow_suffix);
    if (t->kind == QS_TOK_BYTE_BPE && !affix) {
        encode_byte_word(t, c, w, n);
        return;
    }
    uint64_t h = 0;
    if (cache_replay(c, w, n, &h)) return;
    size_t before = c->n_out, m = n;
    const char *s = w;
    if (t->kind == QS_TOK_BYTE_BPE && !(s = map_bytes(c, w, n, &m))) return;
    int id = t->ignore_merges ? tok_lookup_n(t, s, m) : -1;
    if (id >= 0) tok_emit(c, id);
    else encode_spm_rank_word(t, c, s, m);
    if (n <= CACHE_MAX_WORD && !c->oom) cache_put(c, w, n, h, before);
}

static void encode_spm_segment(const qs_tok *t, enc_ctx *c, const char *s, size_t n, size_t off) {
    if (!n) return;
    size_t m = spm_normalize(t, c, s, n, off);
    if (c->oom || !m) return;
    const char *w = c->buf;
    size_t sl = t->space_len, b = 0;
    if (!t->spm_split && !t->space_bounds) {
        /* one word: the merge loop runs over the whole segment */
        if (t->kind == QS_TOK_SPM_SCORE) encode_spm_score(t, c, w, m);
        else encode_spm_rank_word(t, c, w, m);
        return;
    }
    /* Metaspace split: every U+2581 starts a word. Without split, when no
     * piece holds a U+2581 after another character (space_bounds), no merge
     * can cross the point in front of a U+2581 that follows a non-space, so
     * cutting the text there gives the ids of the whole: the merge loop then
     * runs word by word, and repeated words come from the cache. */
    for (size_t i = 1; i <= m; i++) {
        if (i == m || (i + sl <= m && memcmp(w + i, t->space, sl) == 0 &&
                       (t->spm_split || !(i >= sl && memcmp(w + i - sl, t->space, sl) == 0)))) {
            encode_spm_word(t, c, w + b, i - b);
            b = i;
        }
    }
}

/* -------------------------------------------------------- added tokens */

static int is_ws_at(const char *s, size_t n, size_t i, size_t *k) {
    return uclass(s, n, i, k) == QS_UNICODE_SPACE;
}

/* Find the leftmost added token in s[from..n), the longest among those that
 * start at the same byte. normalized: -1 any token, 0 only those matched in
 * the raw text, 1 only those matched after normalization. Returns its index
 * in t->added or -1. */
int tok_find_added(const qs_tok *t, const char *s, size_t n, size_t from, int normalized, size_t *at) {
    for (size_t i = from; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        int lo = t->added_start[b], hi = t->added_start[b + 1];
        for (int a = lo; a < hi; a++) { /* sorted longest first */
            if (normalized >= 0 && t->added[a].normalized != normalized) continue;
            int id = t->added[a].id;
            size_t l = t->plen[id];
            if (l <= n - i && memcmp(s + i, t->pieces[id], l) == 0) {
                *at = i;
                return a;
            }
        }
    }
    return -1;
}

static void encode_segment(const qs_tok *t, enc_ctx *c, const char *s, size_t n, size_t off) {
    if (t->kind == QS_TOK_BYTE_BPE) encode_byte_segment(t, c, s, n);
    else encode_spm_segment(t, c, s, n, off);
}

void tok_encode_free(enc_ctx *c) {
    free(c->buf);
    free(c->ids);
    free(c->prev);
    free(c->next);
    free(c->start);
    free(c->len);
    free(c->heap);
    free(c->cache);
    free(c->ckeys);
    free(c->cvals);
    free(c->wbuf);
}

qs_status qs_tok_encode(const qs_tok *t, const char *text, size_t len, int add_special, int32_t **ids,
                        size_t *n) {
    *ids = NULL;
    *n = 0;
    if (!t || (!text && len)) return qs_fail(QS_EARG, "qs_tok_encode: NULL tokenizer or text");
    enc_ctx c;
    memset(&c, 0, sizeof c);
    if (add_special)
        for (int i = 0; i < t->n_prefix; i++) tok_emit(&c, t->prefix[i]);
    /* Added tokens are matched in the raw text first; the text between them
     * goes through pre-tokenization and BPE separately. */
    size_t seg = 0;
    if (t->pipe) {
        tok_pipe_encode(t, &c, text, len);
        seg = len + 1;
    }
    while (seg <= len && !c.oom) {
        size_t at = len, end = len;
        int a = t->n_added ? tok_find_added(t, text, len, seg, -1, &at) : -1;
        if (a >= 0) {
            end = at + t->plen[t->added[a].id];
            size_t k;
            if (t->added[a].lstrip)
                while (at > seg) {
                    size_t p = at - 1; /* step back over one (possibly multibyte) char */
                    while (p > seg && ((unsigned char)text[p] & 0xC0) == 0x80) p--;
                    if (!is_ws_at(text, len, p, &k) || p + k != at) break;
                    at = p;
                }
            if (t->added[a].rstrip)
                while (end < len && is_ws_at(text, len, end, &k)) end += k;
        }
        if (at > seg) encode_segment(t, &c, text + seg, at - seg, seg);
        if (a < 0) break;
        tok_emit(&c, t->added[a].id);
        seg = end;
    }
    if (add_special)
        for (int i = 0; i < t->n_suffix; i++) tok_emit(&c, t->suffix[i]);

    tok_encode_free(&c);
    if (c.oom) {
        free(c.out);
        return qs_fail(QS_ENOMEM, "qs_tok_encode: out of memory tokenizing %zu bytes", len);
    }
    if (!c.out) { /* n = 0: still hand back a freeable pointer */
        c.out = malloc(sizeof(int32_t));
        if (!c.out) return qs_fail(QS_ENOMEM, "qs_tok_encode: out of memory");
    }
    *ids = c.out;
    *n = c.n_out;
    return QS_OK;
}

int qs_tok_dir_only(const char *dir) {
    char a[1024], b[1024], c[1024];
    if (!dir) return 0;
    return (qs_io_exists(qs_io_join(a, sizeof a, dir, "tokenizer.json")) ||
            qs_io_exists(qs_io_join(b, sizeof b, dir, "vocab.json"))) &&
           !qs_io_exists(qs_io_join(c, sizeof c, dir, "config.json"));
}

qs_status qs_tok_encode_file(const qs_tok *t, const char *path, int add_special, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    if (!t || !path) return qs_fail(QS_EARG, "qs_tok_encode_file: NULL tokenizer or path");
    char *text;
    size_t len;
    qs_status st = qs_io_read_all(strcmp(path, "-") ? path : "/dev/stdin", &text, &len);
    if (st != QS_OK) return st;
    st = qs_tok_encode(t, text ? text : "", len, add_special, ids, n);
    free(text);
    return st;
}

/* ----------------------------------------------------------------- decode */

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const void *p, size_t n) {
    if (b->n + n + 1 > b->cap && !tok_grow((void **)&b->s, &b->cap, b->n + n + 1, 1)) {
        b->oom = 1;
        return;
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
}

/* Append one token's text. SentencePiece kinds: U+2581 to space, <0xNN>
 * pieces to their byte. Byte-level: each character back to its byte; a piece
 * with a character outside the mapping (an added token) is copied as it is. */
static void put_piece(const qs_tok *t, sbuf *b, int id) {
    const char *p = t->pieces[id];
    size_t n = t->plen[id];
    if (t->attr[id] & TOK_BYTE) {
        char byte = (char)t->byte_val[id];
        put(b, &byte, 1);
        return;
    }
    if (t->kind == QS_TOK_BYTE_BPE) {
        size_t start = b->n;
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t k = qs_unicode_next(p + i, n - i, &cp);
            int v = cp < TOK_CP2BYTE_N ? t->cp2byte[cp] : -1;
            if (v < 0) {
                b->n = start;
                put(b, p, n);
                return;
            }
            char byte = (char)v;
            put(b, &byte, 1);
            i += k;
        }
        return;
    }
    size_t sl = t->space_len;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && !(j + sl <= n && memcmp(p + j, t->space, sl) == 0)) j++;
        put(b, p + i, j - i);
        if (j < n) {
            put(b, " ", 1);
            j += sl;
        }
        i = j;
    }
}

qs_status qs_tok_decode(const qs_tok *t, const int32_t *ids, size_t n, int skip_special, char **text,
                        size_t *len) {
    *text = NULL;
    if (len) *len = 0;
    if (!t || (!ids && n)) return qs_fail(QS_EARG, "qs_tok_decode: NULL tokenizer or ids");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return qs_fail(QS_EARG, "qs_tok_decode: id %d at position %zu is outside the vocabulary [0, %d)",
                           (int)ids[i], i, t->n_vocab);
    if (t->pipe) return tok_pipe_decode(t, ids, n, skip_special, text, len);
    sbuf b = {0};
    for (size_t i = 0; i < n; i++) {
        int id = ids[i];
        if (skip_special && (t->attr[id] & TOK_SPECIAL)) continue;
        size_t before = b.n;
        put_piece(t, &b, id);
        /* llama2.c / SentencePiece: the dummy-prefix space of the first piece,
         * at the start or right after BOS, is not part of the text. */
        if (t->kind == QS_TOK_SPM_SCORE && (i == 0 || ids[i - 1] == t->bos) && b.n > before &&
            b.s[before] == ' ') {
            memmove(b.s + before, b.s + before + 1, b.n - before - 1);
            b.n--;
        }
    }
    /* tokenizer.json SentencePiece decoders end with Strip(" ", 1, 0): one
     * leading space of the whole text goes */
    if (t->kind == QS_TOK_SPM_RANK && t->strip_start && b.n && b.s[0] == ' ') {
        memmove(b.s, b.s + 1, b.n - 1);
        b.n--;
    }
    put(&b, "", 0);
    if (b.oom) {
        free(b.s);
        return qs_fail(QS_ENOMEM, "qs_tok_decode: out of memory decoding %zu ids", n);
    }
    if (!b.s) {
        b.s = malloc(1);
        if (!b.s) return qs_fail(QS_ENOMEM, "qs_tok_decode: out of memory");
    }
    b.s[b.n] = 0;
    *text = b.s;
    if (len) *len = b.n;
    return QS_OK;
}

/* ------------------------------------------------------------- accessors */

const char *qs_tok_piece(const qs_tok *t, int id) {
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    return t->pieces[id];
}

int qs_tok_lookup(const qs_tok *t, const char *piece) {
    if (!t || !piece) return -1;
    return tok_lookup_n(t, piece, strlen(piece));
}

int qs_tok_vocab_size(const qs_tok *t) { return t ? t->n_vocab : 0; }
int qs_tok_bos(const qs_tok *t) { return t ? t->bos : -1; }
int qs_tok_eos(const qs_tok *t) { return t ? t->eos : -1; }

int qs_tok_is_special(const qs_tok *t, int id) {
    if (!t || id < 0 || id >= t->n_vocab) return 0;
    return (t->attr[id] & TOK_SPECIAL) != 0;
}

qs_tok_kind qs_tok_kind_of(const qs_tok *t) { return t ? t->kind : (qs_tok_kind)0; }
const char *qs_tok_describe(const qs_tok *t) { return t ? t->desc : ""; }

void qs_tok_free(qs_tok *t) {
    if (!t) return;
    free(t->arena);
    free(t->pieces);
    free(t->plen);
    free(t->attr);
    free(t->byte_val);
    free(t->scores);
    free(t->vmap);
    free(t->mkeys);
    free(t->mval);
    free(t->added);
    tok_pipe_free(t->pipe);
    free(t->cont_prefix);
    free(t->eow_suffix);
    free(t);
}
