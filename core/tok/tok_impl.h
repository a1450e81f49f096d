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
    uint8_t normalized;  /* matched in the normalized text (tokenizer.json pipeline only) */
    uint8_t single_word; /* only between non-word characters */
} tok_added;

/* The general tokenizer.json pipeline (tok_pipe.c): normalizer steps,
 * pre-tokenizer steps and decoder steps, Sequences flattened. NULL in the
 * tokenizers the fixed kinds describe. */
typedef struct tok_pipe tok_pipe;

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

    /* general pipeline (tok_pipe.c) and BPE model flags */
    tok_pipe *pipe;
    int ignore_merges;
    char *cont_prefix, *eow_suffix; /* continuing_subword_prefix, end_of_word_suffix; NULL or "" = none */

    char desc[160];
};

/* A candidate pair: key orders the heap (primary << 32 | left position, so
 * ties go to the leftmost pair), a and b say what the pair was when pushed. */
typedef struct {
    uint64_t key;
    int32_t a, b;
} hent;

/* Per-call scratch, so that a tokenizer stays immutable and encode may run on
 * several threads at once. */
typedef struct {
    int32_t *out; /* (n_out) ids produced so far */
    size_t n_out, cap_out;
    char *buf; /* (cap_buf) normalized text of one segment */
    size_t cap_buf;
    int32_t *ids, *prev, *next; /* (cap_sym) symbols of one word */
    uint32_t *start, *len;      /* (cap_sym) byte span of each symbol (score loop) */
    size_t cap_sym;
    hent *heap; /* (n_heap) */
    size_t n_heap, cap_heap;
    /* word cache: repeated words (most of them in running text) cost a lookup */
    struct cent {
        uint64_t h;
        uint32_t koff, klen, voff, vn;
    } *cache;
    uint32_t cmask, cused;
    char *ckeys;
    size_t nkeys, capkeys;
    int32_t *cvals;
    size_t nvals, capvals;
    char *wbuf; /* (cap_wbuf) one word mapped to byte-level characters */
    size_t cap_wbuf;
    int oom;
} enc_ctx;

int tok_grow(void **p, size_t *cap, size_t need, size_t elem);
void tok_emit(enc_ctx *c, int32_t id);
/* The model on one pre-token through the per-call word cache: raw bytes when
 * the pipeline is byte-level, else text. */
void tok_model_word(const qs_tok *t, enc_ctx *c, const char *w, size_t n);
int tok_find_added(const qs_tok *t, const char *s, size_t n, size_t from, int normalized, size_t *at);
void tok_encode_free(enc_ctx *c);

uint64_t tok_hash(const void *p, size_t n);
int tok_lookup_n(const qs_tok *t, const char *s, size_t n);
qs_status tok_build_vmap(qs_tok *t);
qs_status tok_merges_init(qs_tok *t, size_t n);
void tok_merges_put(qs_tok *t, int32_t a, int32_t b, int32_t rank, int32_t new_id);
void tok_byte_to_cp(uint32_t map[256]);
size_t tok_gpt2_next(const char *s, size_t n, size_t i);

/* tok_load.c: when set, every tokenizer.json loads into the general pipeline
 * (tests compare it with the fixed kinds). */
extern int tok_force_general;

/* tok_pipe.c */
void tok_pipe_free(tok_pipe *p);
void tok_pipe_encode(const qs_tok *t, enc_ctx *c, const char *text, size_t len);
/* Build t->pipe from tokenizer.json's normalizer, pre_tokenizer and decoder
 * (root is the parsed file). */
qs_status tok_pipe_build(qs_tok *t, const void *root, const char *path);
/* Decode through the decoder chain; NULL-terminated malloc'd text. */
qs_status tok_pipe_decode(const qs_tok *t, const int32_t *ids, size_t n, int skip_special, char **text,
                          size_t *len);
const char *tok_pipe_describe(const tok_pipe *p);

/* One step of the pipeline as tokenizer.json named it, so that tok_gguf.c
 * can tell whether llama.cpp runs the same thing. */
typedef struct {
    const char *type;    /* "NFC", "Replace", ..., "Split", "ByteLevel", "Metaspace", ... */
    const char *pattern; /* Split: the pattern as written; NULL for the other steps */
    int literal;         /* Split: pattern is a String, not a Regex */
    int isolated, invert; /* Split: behavior Isolated; invert */
    int add_prefix_space, use_regex; /* ByteLevel */
} tok_pipe_step;
/* Steps of the normalizer (pre 0) or the pre-tokenizer (pre 1); 0 for p NULL. */
int tok_pipe_n_steps(const tok_pipe *p, int pre);
/* Fill *out with step i; 0 when out of range. */
int tok_pipe_get_step(const tok_pipe *p, int pre, int i, tok_pipe_step *out);

/* tok_load.c: llama.cpp's pre-tokenizer name (GGUF tokenizer.ggml.pre) for a
 * byte-level pipeline that splits by re[0..n) in order and then maps bytes
 * (ByteLevel without its own regex), with the model's ignore_merges; NULL
 * when llama.cpp has no such pre-tokenizer. */
const char *tok_gguf_pre_name(const char *const *re, int n, int ignore_merges);

/* tok_gguf.c: read a SentencePiece tokenizer.model (ModelProto) into
 * scores[id] and types[id] for the ids it holds; each piece must be t's of
 * the same id (added tokens aside). */
qs_status tok_spm_model_read(const char *path, const qs_tok *t, float *scores, int32_t *types);

#endif
