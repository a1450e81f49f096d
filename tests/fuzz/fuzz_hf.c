/* fuzz_hf — a Hugging Face directory: config.json + model.safetensors
 * (input: LEN + config.json + model.safetensors), loaded, and when it
 * loads, run for three tokens. Also the safetensors reader alone on the
 * second file: every tensor converted to fp32. */
#include <stdlib.h>

#include "read/read.h"
#include "fuzz.h"
#include "fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const uint8_t *a, *b;
    size_t na, nb;
    fz_split(d, n, &a, &na, &b, &nb);
    fz_write(0, "config.json", a, na);
    const char *st_path = fz_write(1, "model.safetensors", b, nb);
    qs_st_file *f = NULL;
    if (qs_st_open(st_path, &f) == QS_OK) {
        for (size_t i = 0; i < qs_st_count(f); i++) {
            const qs_st_tensor *t = qs_st_tensor_at(f, i);
            char shape[256];
            qs_st_shape_str(t, shape, sizeof shape);
            if (t->numel > (1 << 20) || qs_st_find(f, t->name) != t) continue;
            float *x = malloc((size_t)t->numel * sizeof *x + 1);
            if (x) qs_st_read_f32(f, t, x);
            free(x);
        }
        qs_st_close(f);
    }
    qs_model *m = NULL;
    if (qs_model_load(fz_path(2, ""), NULL, &m) == QS_OK) fz_use_model(m);
    qs_model_free(m);
    return 0;
}
