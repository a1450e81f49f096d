#include "variant_impl.h"
qs_status qs_rptq_apply(qs_variant *v, const qs_step *s) {
    (void)s;
    return qs_fail(QS_EUNSUPPORTED, "%s: RPTQ is not available yet", v->spec.text);
}
