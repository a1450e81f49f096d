/* tok_impl.h — private to core/tok*.c: the tokenizer struct shared by the
 * engine (tok.c) and the loaders (tok_load.c). Not part of the public API.
 */
#ifndef QS_TOK_IMPL_H
#define QS_TOK_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "tok/tok.h"

/* attr[] flags */
enum {
    TOK_SPECIAL = 1,  /* control / special: dropped by skip_special, is_special() */
    TOK_BYTE = 2,     /* a <0xNN> byte piece (SentencePiece kinds); byte_val[] holds NN */
    TOK_NOMERGE = 4,  /* never the result of a score merge (control, unknown, unused, byte) */
    TOK_ADDED = 8,    /* an added token, matched in the raw text */
    TOK_UNUSED = 16   /* an id with no piece (a hole in the vocabulary) */
};

/* where the SentencePiece kinds put a dummy-prefix U+2581 */
enum {
    TOK_PREPEND_NEVER = 0,
    TOK_PREPEND_FIRST = 1,            /* Metaspace "first": segment at offset 0 not already starting with one */
    TOK_PREPEND_METASPACE_ALWAYS = 2, /* Metaspace "always": any segment not starting with one */
    TOK_PREPEND_ALWAYS = 3,           /* legacy normalizer Prepend: every non-empty segment */
    TOK_PREPEND_FIRST_ANY = 4         /* SentencePiece / llama2.c: non-empty text, at its start */
};

#define TOK_NO_KEY UINT64_MAX
#define TOK_CP2BYTE_N 324 /* byte-to-unicode maps into U+0000..U+0143 */
#define TOK_MAX_DEFAULT 8

typedef struct {
    int32_t rank, id;
} tok_merge;

typedef struct {
    int32_t id;
    uint8_t lstrip, rstrip;
} tok_added;

struct qs_tok {
    qs_tok_kind kind;
    int n_vocab;
    int n_merges;
    char *arena;      /* all pieces, each NUL-terminated */
    char **pieces;    /* (n_vocab) into arena; "" for unused ids */
    uint32_t *plen;   /* (n_vocab) byte length of each piece */
    uint8_t *attr;    /* (n_vocab) TOK_* flags */
    uint8_t *byte_val; /* (n_vocab) the byte of a TOK_BYTE piece */
    float *scores;    /* (n_vocab) SPM_SCORE only, else NULL */

    int32_t *vmap;    /* (vmask+1) open-addressing index piece -> id, -1 empty */
    uint32_t vmask;
    uint64_t *mkeys;  /* (mmask+1) merge pair (a << 32 | b), TOK_NO_KEY empty */
    tok_merge *mval;  /* (mmask+1) */
    uint32_t mmask;

    tok_added *added; /* (n_added) sorted by first byte, then longest first */
    int n_added;
    int added_start[257]; /* added[added_start[b] .. added_start[b+1]) start with byte b */

    int bos, eos, unk;
    int32_t prefix[TOK_MAX_DEFAULT], suffix[TOK_MAX_DEFAULT]; /* default specials */
    int n_prefix, n_suffix;

    /* byte-level */
    int32_t byte_sym[256]; /* id of the character each byte maps to, -1 if none */
    int16_t cp2byte[TOK_CP2BYTE_N]; /* inverse mapping for decode, -1 if none */
    int add_prefix_space, use_regex;

    /* SentencePiece kinds */
    int32_t byte_tok[256]; /* id of <0xNN>, -1 if none */
    char space[4];         /* what a space becomes: U+2581, or " " (llama2.c vocabularies) */
    int space_len;
    int prepend;           /* TOK_PREPEND_* */
    int spm_split;         /* Metaspace split: each U+2581 starts a word */
    int byte_fallback, fuse_unk;
    int strip_start;       /* decoder strips one leading space of the text */
    int space_bounds;      /* no mergeable piece has a space after another character */
    int32_t ascii_id[128]; /* id of each one-byte piece, -1 if none */

    char desc[160];
};

uint64_t tok_hash(const void *p, size_t n);
int tok_lookup_n(const qs_tok *t, const char *s, size_t n);
qs_status tok_build_vmap(qs_tok *t);
qs_status tok_merges_init(qs_tok *t, size_t n);
void tok_merges_put(qs_tok *t, int32_t a, int32_t b, int32_t rank, int32_t new_id);
void tok_byte_to_cp(uint32_t map[256]);
size_t tok_gpt2_next(const char *s, size_t n, size_t i);

#endif
