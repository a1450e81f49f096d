/* fuzz_vocab_merges — vocab.json + merges.txt without tokenizer.json
 * (input: LEN + vocab.json + merges.txt), loaded and used on a text. */
#include "fuzz.h"
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const uint8_t *a, *b;
    size_t na, nb;
    fz_split(d, n, &a, &na, &b, &nb);
    fz_write(0, "vocab.json", a, na);
    fz_write(1, "merges.txt", b, nb);
    qs_tok *t = NULL;
    if (qs_tok_load_hf(fz_path(2, ""), &t) == QS_OK) fz_use_tok(t);
    qs_tok_free(t);
    return 0;
}
