/* placeholder until the directory exporter lands */
#include "export/export.h"
qs_status qs_export_dir(const qs_model *m, const qs_variant *v, const char *dir, const qs_export_opts *o) {
    (void)m, (void)v, (void)o;
    return qs_fail(QS_EUNSUPPORTED, "%s: directory export is not built yet", dir);
}
qs_status qs_tok_to_gguf(const qs_tok *t, const char *dir, qs_tok_gguf **out) {
    (void)t, (void)dir, *out = NULL;
    return QS_OK;
}
void qs_tok_gguf_free(qs_tok_gguf *g) { (void)g; }
