/* fuzz_tokenizer_json — a tokenizer-only directory holding tokenizer.json:
 * loaded (normalizers, pre-tokenizers and their regexes, the model, added
 * tokens, post-processor), then used on a text. */
#include "fuzz.h"
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    fz_write(0, "tokenizer.json", d, n);
    qs_tok *t = NULL;
    if (qs_tok_load_hf(fz_path(1, ""), &t) == QS_OK) fz_use_tok(t);
    qs_tok_free(t);
    return 0;
}
