#include "variant_impl.h"
qs_status qs_slice_apply(qs_variant *v, const qs_step *s) {
    (void)s;
    return qs_fail(QS_EUNSUPPORTED, "%s: SliceGPT is not available yet", v->spec.text);
}
