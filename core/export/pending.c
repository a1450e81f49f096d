/* placeholder until the tokenizer's GGUF form lands */
#include "export/export.h"
qs_status qs_tok_to_gguf(const qs_tok *t, const char *dir, qs_tok_gguf **out) {
    (void)t, (void)dir, *out = NULL;
    return QS_OK;
}
void qs_tok_gguf_free(qs_tok_gguf *g) { (void)g; }
