/* export/export.h — writing a model or a variant out, for the tools people
 * already run: a GGUF file llama.cpp loads (weight-only variants as its own
 * block types, the tokenizer as tokenizer.ggml.*), or a Hugging Face
 * directory transformers and qscope load (safetensors in the model's dtype,
 * config and tokenizer files copied; SliceGPT in qscope's own layout).
 *
 *     qs_export_opts o = {0};
 *     o.force = 1;
 *     if (qs_export(m, v, "out.gguf", &o) != QS_OK) die(qs_last_error());
 *
 * What a format cannot hold is refused, never approximated silently:
 * activation and KV quantizers, LLM.int8()'s outlier kernels, RPTQ's
 * per-cluster scales; with weights_only those are left out and the weights
 * written. Outputs are written under a temporary name and renamed; an
 * existing output is replaced only with force.
 */
#ifndef QS_EXPORT_H
#define QS_EXPORT_H

#include "base/base.h"
#include "methods/methods.h"
#include "model/model.h"

typedef struct {
    int force;                /* replace an existing output */
    int weights_only;         /* leave out what the format cannot hold (activation/KV quantizers, ...) */
    const char *dtype;        /* unquantized matrices: NULL = the model's; "f32", "f16", "bf16" */
    qs_progress_fn progress;  /* bytes written of the total; nonzero return cancels */
    void *progress_ud;
} qs_export_opts;

/* By the path: a name ending in .gguf is a GGUF file, anything else a
 * directory. v may be NULL (the model itself). */
qs_status qs_export(const qs_model *m, const qs_variant *v, const char *path, const qs_export_opts *o);
qs_status qs_export_gguf(const qs_model *m, const qs_variant *v, const char *path, const qs_export_opts *o);
qs_status qs_export_dir(const qs_model *m, const qs_variant *v, const char *dir, const qs_export_opts *o);

/* Whether models of family ("llama", "qwen2", ... as qs_config.family) can
 * be written to GGUF; the others go to a directory. */
int qs_export_gguf_family(const char *family);

/* What of variant v the format cannot hold ("activation quantizers at 28
 * sites (a=8)"), written into buf; NULL when everything can be written.
 * gguf: 1 for a GGUF file, 0 for a directory. */
const char *qs_export_unwritable(const qs_variant *v, int gguf, char *buf, size_t cap);

#endif
