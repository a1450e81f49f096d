/* export_impl.h — private to core/export: what the GGUF and directory
 * writers share. */
#ifndef QS_EXPORT_IMPL_H
#define QS_EXPORT_IMPL_H

#include "export/export.h"

/* The refusal of o's export of v to path (gguf: a GGUF file, else a
 * directory), naming what would be lost, or QS_OK; with o->weights_only the
 * activation, KV and attention-probability quantizers are left out (said at
 * INFO) and only what no file holds is refused. */
qs_status qs_export_check(const qs_variant *v, int gguf, const qs_export_opts *o, const char *path);

#endif
