/* fuzz_tok.h — what the tokenizer targets do with a tokenizer that loaded:
 * encode fz_text with and without specials, decode the ids both ways, look
 * up each id's piece and the piece again. */
#ifndef QS_FUZZ_TOK_H
#define QS_FUZZ_TOK_H

#include <stdlib.h>
#include <string.h>

#include "tok/tok.h"
#include "fuzz.h"

static void fz_use_tok(qs_tok *t) {
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (qs_tok_encode(t, fz_text, fz_text_len, special, &ids, &n) == QS_OK) {
            char *s = NULL;
            size_t len = 0;
            if (qs_tok_decode(t, ids, n, special, &s, &len) == QS_OK) free(s);
            for (size_t i = 0; i < n && i < 64; i++) {
                const char *p = qs_tok_piece(t, ids[i]);
                if (p) qs_tok_lookup(t, p);
            }
        }
        free(ids);
    }
    qs_tok_describe(t);
    qs_tok_bos(t);
    qs_tok_eos(t);
}

#endif
