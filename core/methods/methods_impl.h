/* variant_impl.h — the inside of a variant, for the method implementations
 * (variant.c: fp32, rtn, int8; rptq.c; slicegpt.c). Not part of the API. */
#ifndef QS_VARIANT_IMPL_H
#define QS_VARIANT_IMPL_H

#include "base/base.h"
#include "methods/methods.h"

struct qs_variant {
    const qs_model *m;
    qs_spec spec;
    qs_weights w;       /* the current weights; w.layers is owned (from store) */
    qs_actq *aq;        /* (n_layers + 1) x QS_SITE_COUNT, or NULL */
    qs_exec exec;       /* points at w and aq */
    qs_store *store;    /* owns everything the variant changed */
    int modified;       /* any step changed weights or execution */
    char desc[512];
    const qs_calib *calib;
    const qs_stats *base_stats;
    qs_progress_fn progress;
    void *progress_ud;
    int kv_bits;        /* KV cache element width for accounting (32: fp32) */
    int kv_dynamic;     /* per-token scale/zero stored with the cache */
    int **clusters;     /* (n_layers + 1) x QS_SITE_COUNT labels, or NULL */
    int *n_clusters;
    void **i8s;         /* LLM.int8() layers the variant owns (qs_int8_linear) */
    int n_i8, cap_i8;
    double **eig;       /* (n_layers, 2) eigenvalue arrays, or NULL */
    int *eig_n, *eig_kept;
};

/* Owned fp32 / int buffers (NULL with the error set on failure). */
float *qs_variant_floats(qs_variant *v, size_t n);
int32_t *qs_variant_ints(qs_variant *v, size_t n);
/* The quantizer slot of a site (the table is allocated on first use). */
qs_actq *qs_variant_site_q(qs_variant *v, int layer, qs_site site);
/* Statistics of the variant as it stands, over its calibration set (the
 * base model's statistics are reused when nothing changed yet and they hold
 * what is asked). Caller frees with qs_stats_free unless *borrowed. */
qs_status qs_variant_stats(qs_variant *v, const qs_stats_opts *o, qs_stats **out, int *borrowed);
/* Append "; ..." to the one-line description. */
void qs_variant_note(qs_variant *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Record RPTQ labels / SliceGPT eigenvalues for views (copied). */
qs_status qs_variant_set_clusters(qs_variant *v, int layer, qs_site site, const int *labels, int dim, int k);
qs_status qs_variant_set_eig(qs_variant *v, int layer, int which, const double *w, int n, int kept);

/* The method steps. */
qs_status qs_rptq_apply(qs_variant *v, const qs_step *s);
qs_status qs_slice_apply(qs_variant *v, const qs_step *s);
/* SliceGPT's norm fusion alone (slicegpt.c): every norm's gain and bias go
 * into its neighbours and the norms become weightless RMS norms; the
 * variant computes what it did before. The first half of qs_slice_apply. */
qs_status qs_slice_fuse(qs_variant *v);

#endif
