/* fuzz_l2c — a llama2.c checkpoint and its tokenizer.bin (input: LEN +
 * tokenizer.bin + checkpoint): the tokenizer alone, then the model with
 * it, and when it loads, the tokenizer on a text and three tokens. */
#include "fuzz.h"
#include "fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const uint8_t *a, *b;
    size_t na, nb;
    fz_split(d, n, &a, &na, &b, &nb);
    const char *tok = fz_write(0, "tokenizer.bin", a, na);
    const char *bin = fz_write(1, "m.bin", b, nb);
    qs_tok *t = NULL;
    if (qs_tok_load_llama2c(tok, 512, &t) == QS_OK) {
        int32_t *ids = NULL;
        size_t k = 0;
        qs_tok_encode(t, fz_text, fz_text_len, 1, &ids, &k);
        free(ids);
    }
    qs_tok_free(t);
    qs_load_opts o = {.tokenizer = tok};
    qs_model *m = NULL;
    if (qs_model_load(bin, &o, &m) == QS_OK) fz_use_model(m);
    qs_model_free(m);
    return 0;
}
