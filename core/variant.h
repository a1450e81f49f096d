/* variant.h — a variant is the base model plus a chain of methods (a spec
 * string, see spec.h). It shares the base model's tensors and owns only what
 * it changed, so several fit in memory at once.
 *
 *     qs_variant_opts o = {.calib = &cal};      // calibration rows, when a method needs them
 *     qs_variant *v;
 *     if (qs_variant_new(m, "rptq:w=4,a=4,g=8", &o, &v) != QS_OK) die(qs_last_error());
 *     qs_ctx *c;
 *     qs_ctx_new(m, qs_variant_exec(v), 512, &c);   // run it like the model
 *     printf("%s: %.1f MB\n", qs_variant_describe(v), qs_variant_weight_bytes(v) / 1e6);
 *     qs_ctx_free(c);
 *     qs_variant_free(v);
 */
#ifndef QS_VARIANT_H
#define QS_VARIANT_H

#include "calib.h"
#include "forward.h"
#include "spec.h"
#include "stats.h"

typedef struct qs_variant qs_variant;

typedef struct {
    const qs_calib *calib;      /* calibration rows (rtn act=tensor, rptq and slice need them) */
    const qs_stats *base_stats; /* statistics of the base model over calib, reused when they fit */
    qs_progress_fn progress;    /* calibration progress; may cancel */
    void *progress_ud;
} qs_variant_opts;

/* Build a variant of m. The model (and o->calib, o->base_stats) must outlive
 * the call; the variant keeps m borrowed. */
qs_status qs_variant_new(const qs_model *m, const char *spec, const qs_variant_opts *o, qs_variant **out);
void qs_variant_free(qs_variant *v);

/* Whether building this spec needs calibration data (-1: the spec is bad). */
int qs_variant_needs_calib(const char *spec);

const qs_exec *qs_variant_exec(const qs_variant *v);
const qs_model *qs_variant_model(const qs_variant *v);
const char *qs_variant_spec(const qs_variant *v);      /* canonical spec text */
const char *qs_variant_describe(const qs_variant *v);  /* one line: what was done */
long long qs_variant_weight_bytes(const qs_variant *v);/* as stored: int8 1 byte, 4-bit 1/2, + scales */
long long qs_variant_kv_bytes_per_token(const qs_variant *v);
long long qs_variant_params(const qs_variant *v);      /* parameters incl. SliceGPT shortcuts */

/* What a method found, for views and scripts (NULL / 0 when not applicable). */
/* RPTQ cluster of every channel at a site (length = the site's width). */
const int *qs_variant_clusters(const qs_variant *v, int layer, qs_site site, int *n_clusters);
/* SliceGPT: eigenvalues (descending, length *n) of layer l's PCA; which 0:
 * attention input, 1: MLP input; and the width kept. */
const double *qs_variant_eigenvalues(const qs_variant *v, int layer, int which, int *n, int *kept);

#endif
