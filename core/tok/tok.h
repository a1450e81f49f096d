/* tok.h — tokenizers that reproduce the reference tokenizers id for id.
 *
 * Three families, one interface:
 *   - byte-level BPE (GPT-2, OPT): tokenizer.json, or vocab.json + merges.txt,
 *     with GPT-2's pre-tokenization pattern;
 *   - SentencePiece-style BPE from tokenizer.json (Llama: U+2581 for spaces,
 *     <0xNN> byte fallback, merges by rank, added tokens);
 *   - score-driven SentencePiece BPE (llama2.c tokenizer.bin, GGUF "llama"
 *     vocabularies).
 *
 *     qs_tok *t;
 *     if (qs_tok_load_hf("models/opt-mini", &t) != QS_OK) ...;
 *     int32_t *ids; size_t n;
 *     qs_tok_encode(t, text, strlen(text), 1, &ids, &n);   // with default specials
 *     char *s; size_t len;
 *     qs_tok_decode(t, ids, n, 1, &s, &len);
 *     free(ids); free(s); qs_tok_free(t);
 *
 * A tokenizer is immutable after loading: encode/decode may run on several
 * threads at once.
 */
#ifndef QS_TOK_H
#define QS_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

typedef struct qs_tok qs_tok;

typedef enum {
    QS_TOK_BYTE_BPE = 1, /* GPT-2 / OPT byte-level BPE, merges by rank */
    QS_TOK_SPM_RANK = 2, /* tokenizer.json Metaspace + BPE by rank + byte fallback */
    QS_TOK_SPM_SCORE = 3 /* llama2.c / GGUF: BPE by piece score + byte fallback */
} qs_tok_kind;

/* Load from a Hugging Face model directory: tokenizer.json when present,
 * else vocab.json + merges.txt; tokenizer_config.json and config.json give
 * the special tokens and whether a BOS is added by default. */
qs_status qs_tok_load_hf(const char *dir, qs_tok **out);

/* Load a llama2.c tokenizer.bin (max_token_length, then per token: float
 * score, int32 length, bytes). vocab_size comes from the checkpoint header. */
qs_status qs_tok_load_llama2c(const char *path, int vocab_size, qs_tok **out);

/* Build a score-driven SentencePiece tokenizer from a vocabulary held in
 * memory (GGUF tokenizer.ggml.model == "llama"). pieces[i] are UTF-8 strings
 * (copied); types[i] follow SentencePiece (1 normal, 2 unknown, 3 control,
 * 4 user-defined, 6 byte) and may be NULL. bos/eos/unk may be -1. */
qs_status qs_tok_new_spm(int n, const char *const *pieces, const float *scores,
                         const int32_t *types, int bos, int eos, int unk, qs_tok **out);

/* Build a byte-level BPE tokenizer from memory (GGUF tokenizer.ggml.model ==
 * "gpt2"): pieces in byte-to-unicode form, merges as "a b" strings in rank
 * order, types as GGUF's token_type (3 control and 4 user-defined are added
 * tokens matched in the text; NULL: all normal). add_bos: prepend bos by
 * default. pre: llama.cpp's pre-tokenizer name (tokenizer.ggml.pre:
 * "llama-bpe", "qwen2", "gpt-2", ...), mapped to the regexes it splits by;
 * NULL: GPT-2's. An unknown name is refused. */
qs_status qs_tok_new_byte_bpe(int n, const char *const *pieces, int n_merges,
                              const char *const *merges, const int32_t *types, int bos, int eos,
                              int add_bos, const char *pre, qs_tok **out);

void qs_tok_free(qs_tok *t);

/* 1 when dir is a tokenizer-only directory: tokenizer.json (or vocab.json)
 * and no config.json, so there is no model to load around it. */
int qs_tok_dir_only(const char *dir);

/* Read the UTF-8 file at path ("-" for standard input) and encode it whole,
 * as qs_tok_encode (an empty file gives what the tokenizer gives for "":
 * nothing, or the default BOS). *ids is malloc'd, or NULL when *n is 0. */
qs_status qs_tok_encode_file(const qs_tok *t, const char *path, int add_special, int32_t **ids, size_t *n);

/* Encode len bytes of UTF-8 text. add_special: add the default special
 * tokens as the reference tokenizer does (OPT: leading </s>; Llama: <s>;
 * GPT-2: none). Special-token strings that appear in the text are matched as
 * the reference does. *ids is malloc'd (caller frees); empty text gives
 * n = 0 (or just the BOS when add_special asks for one). */
qs_status qs_tok_encode(const qs_tok *t, const char *text, size_t len, int add_special,
                        int32_t **ids, size_t *n);

/* Decode ids to UTF-8 text as the reference decoder does (byte-level
 * mapping, U+2581 to space, byte fallback, leading-space strip).
 * skip_special drops control/special tokens. *text is malloc'd and
 * NUL-terminated. Ids out of range are an error. */
qs_status qs_tok_decode(const qs_tok *t, const int32_t *ids, size_t n, int skip_special,
                        char **text, size_t *len);

/* The vocabulary string of one id as stored (e.g. "Ġthe", "▁the",
 * "<0x0A>"); NULL when out of range. */
const char *qs_tok_piece(const qs_tok *t, int id);
/* The id of a vocabulary string, or -1. */
int qs_tok_lookup(const qs_tok *t, const char *piece);

int qs_tok_vocab_size(const qs_tok *t);
int qs_tok_bos(const qs_tok *t); /* -1 when none */
int qs_tok_eos(const qs_tok *t);
int qs_tok_is_special(const qs_tok *t, int id);
qs_tok_kind qs_tok_kind_of(const qs_tok *t);
const char *qs_tok_describe(const qs_tok *t); /* "byte-level BPE, 4096 tokens, 3836 merges" */

/* A tokenizer as GGUF holds it (tokenizer.ggml.*), as llama.cpp's converter
 * writes it: what qs_tok_new_spm / qs_tok_new_byte_bpe rebuild into a
 * tokenizer giving the same ids. */
typedef struct {
    const char *model;    /* tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (byte-level BPE) */
    const char *pre;      /* tokenizer.ggml.pre ("llama-bpe", "qwen2", "gpt-2", ...; "default" for "llama", as the converter writes) */
    int n;                /* tokens */
    const char **pieces;  /* (n) tokenizer.ggml.tokens */
    float *scores;        /* (n) tokenizer.ggml.scores; NULL for "gpt2" */
    int32_t *types;       /* (n) tokenizer.ggml.token_type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte */
    int n_merges;
    const char **merges;  /* (n_merges) "a b", "gpt2" only */
    int bos, eos, unk, pad; /* -1 when none */
    int add_bos, add_eos; /* tokenizer.ggml.add_bos_token / add_eos_token */
} qs_tok_gguf;

/* Describe t for GGUF. dir: the model directory t came from, or NULL: its
 * tokenizer_config.json names unk and pad, and its tokenizer.model gives
 * SentencePiece's types, and its scores when they merge as tokenizer.json's
 * ranks do (else each piece scores minus the first rank that makes it).
 * A tokenizer GGUF cannot express (a pre-tokenizer llama.cpp has no name
 * for, a normalizer it does not run, added tokens that strip spaces, default
 * specials other than BOS/EOS) is refused with QS_EUNSUPPORTED naming what.
 * Known differences that remain: a "llama" GGUF always puts U+2581 in front
 * of the text, where Metaspace "first" does not when the text starts with a
 * space. Free with qs_tok_gguf_free. */
qs_status qs_tok_to_gguf(const qs_tok *t, const char *dir, qs_tok_gguf **out);
void qs_tok_gguf_free(qs_tok_gguf *g);

#endif
