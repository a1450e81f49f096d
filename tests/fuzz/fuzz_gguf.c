/* fuzz_gguf — a GGUF file: the reader (every key/value, every tensor
 * decoded to fp32), then the loader with its vocabulary, and when it loads,
 * the tokenizer on a text and the model for three tokens. */
#include <stdlib.h>

#include "read/read.h"
#include "fuzz.h"
#include "fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const char *path = fz_write(0, "m.gguf", d, n);
    qs_gguf *g = NULL;
    if (qs_gguf_open(path, &g) == QS_OK) {
        for (size_t i = 0; i < qs_gguf_n_kv(g); i++) {
            const qs_gguf_kv *kv = qs_gguf_kv_at(g, i);
            int64_t v;
            qs_gguf_kv_int(kv, &v);
        }
        qs_store *s = qs_store_new();
        for (size_t i = 0; s && i < qs_gguf_n_tensors(g); i++) {
            const qs_gguf_tensor *t = qs_gguf_tensor_at(g, i);
            const float *w;
            if (qs_gguf_find(g, t->name) == t && t->numel <= (1 << 20)) qs_gguf_to_f32(g, t, s, &w);
        }
        qs_store_free(s);
        qs_gguf_close(g);
    }
    qs_model *m = NULL;
    if (qs_model_load(path, NULL, &m) == QS_OK) fz_use_model(m);
    qs_model_free(m);
    return 0;
}
