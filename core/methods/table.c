/* table.c — the methods qscope knows, in the order help texts list them.
 * A new method is one file with its record and one line here. */
#include <string.h>

#include "methods/methods.h"
#include "methods/methods_impl.h"

static const qs_method_def *const methods[] = {
    &qs_method_fp32,  /* the model as loaded */
    &qs_method_rtn,   /* rtn.c: round-to-nearest baselines (and GPTQ weights, gptq.c) */
    &qs_method_int8,  /* int8.c: LLM.int8() */
    &qs_method_rptq,  /* rptq.c, rptq_ref.c: RPTQ */
    &qs_method_slice, /* slicegpt.c: SliceGPT */
};

int qs_method_count(void) { return (int)(sizeof methods / sizeof methods[0]); }

const qs_method_def *qs_method_at(int i) { return i >= 0 && i < qs_method_count() ? methods[i] : NULL; }

/* name is one of the ','-separated words of list */
static int listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, name, n) && (p[n] == ',' || !p[n])) return 1;
    return 0;
}

const qs_method_def *qs_method_find(const char *name) {
    for (int i = 0; i < qs_method_count(); i++)
        if (!strcmp(methods[i]->name, name) || listed(methods[i]->aliases, name)) return methods[i];
    return NULL;
}

const qs_method_def *qs_method_of(qs_method id) {
    for (int i = 0; i < qs_method_count(); i++)
        if (methods[i]->id == id) return methods[i];
    return NULL;
}

/* fp32: no keys, nothing to apply. */
const qs_method_def qs_method_fp32 = {
    .id = QS_M_FP32,
    .name = "fp32",
    .summary = "the model as loaded",
};
