/* methods_impl.h — the inside of a variant, for the methods (one file each:
 * rtn.c, int8.c, rptq.c and rptq_ref.c, gptq.c, slicegpt.c) and the driver
 * (variant.c). Private to core/methods. */
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
/* A linear's weights replaced by their round-to-nearest values from src (bits,
 * group 0: the row, sym), kept packed (kern's qs_wt_qg) when the groups are the
 * row or a power of two dividing it, else as fp32 values (rtn.c). */
qs_status qs_variant_store_rtn(qs_variant *v, qs_linear *l, const float *src, int bits, int group, int sym);
int32_t *qs_variant_ints(qs_variant *v, size_t n);
/* The quantizer slot of a site (the table is allocated on first use). */
qs_actq *qs_variant_site_q(qs_variant *v, int layer, qs_site site);
/* Statistics of the variant as it stands, over its calibration set (the
 * base model's statistics are reused when nothing changed yet and they hold
 * what is asked). Caller frees with qs_stats_free unless *borrowed. */
qs_status qs_variant_stats(qs_variant *v, const qs_stats_opts *o, qs_stats **out, int *borrowed);
/* Whether a linear of layer `layer` runs a kernel of its own (int8). */
int qs_variant_layer_has_kernel(qs_variant *v, int layer);
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

/* ---- GPTQ's Hessians (gptq.c): X^T X of the inputs of one layer's linears
 * over the calibration windows, gathered by an observer; GPTQ and RPTQ's
 * reference mode (rptq_ref.c) use them. */
enum { QS_HESS_IN, QS_HESS_OUT, QS_HESS_MLP, QS_HESS_MID, QS_N_HESS }; /* inputs of q/k/v, o, up/gate, down */
extern const int qs_hess_of_linear[7]; /* the Hessian each of q, k, v, o, up, gate, down reads */

typedef struct {
    const char *who;               /* names the method in messages */
    int layer;                     /* the layer being gathered */
    double *H[QS_N_HESS];          /* (dim[k], dim[k]) sums of x^T x, upper triangle */
    int dim[QS_N_HESS];
    double *work;                  /* (widest, widest) the solver's scratch */
    int widest;
    double *store, *buf;           /* behind H; xtx rows */
    size_t off[QS_N_HESS + 1];
    qs_status err;                 /* a width that did not fit */
} qs_hess;

/* Storage for the widest layer of v (h->store NULL on failure). */
qs_status qs_hess_new(const qs_variant *v, const char *who, qs_hess *h);
/* Start gathering layer `layer` (L): the sums set to zero. */
void qs_hess_layer(qs_hess *h, const qs_layer *L, int layer);
/* The observer's body: add x (n, dim) when site is one of the layer's linear inputs. */
void qs_hess_observe(qs_hess *h, int layer, qs_site site, const float *x, int n, int dim);
void qs_hess_free(qs_hess *h);

/* ---- the method table's helpers (spec.c) ---- */

/* An integer value of key k in [lo, hi], with the spec's error messages. */
qs_status qs_spec_get_int(const char *spec, const char *k, const char *v, int lo, int hi, int *out);
/* Append ",<printf>" to a format hook's buffer. */
void qs_spec_addf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The canonical text of QS_WEIGHT_KEYS (w, group, sym, wq) and a. */
void qs_spec_weight_keys_format(const qs_step *s, char *buf, size_t cap);
/* The papers' setting names (W4A16, W4A4KV, W16A8): 1 and the bits set, or 0. */
int qs_spec_setting(const char *word, qs_step *s);

/* Keys RTN and RPTQ share: weight, activation and KV bits, the weight grid
 * and groups, and the weight quantizer. */
extern const int qs_wq_values[2];
#define QS_WEIGHT_KEYS                                                                                      \
    {"w", NULL, QS_KEY_BITS, offsetof(qs_step, w_bits), 2, 16, 16, NULL, NULL, NULL,                      \
     "weight bits (16: not quantized)", 1},                                                               \
    {"a", NULL, QS_KEY_BITS, offsetof(qs_step, a_bits), 2, 16, 16, NULL, NULL, NULL,                      \
     "activation bits at every site (16: not quantized)", 1},                                             \
    {"kv", NULL, QS_KEY_BITS, offsetof(qs_step, kv_bits), 2, 16, 0, NULL, NULL, NULL,                     \
     "K/V cache bits (default: as a)", 1},                                                                \
    {"sym", NULL, QS_KEY_BOOL, offsetof(qs_step, w_sym), 0, 1, 0, NULL, NULL, NULL,                       \
     "symmetric weight grid", 0},                                                                         \
    {"group", NULL, QS_KEY_INT, offsetof(qs_step, w_group), 0, 1 << 20, 0, NULL, NULL, NULL,              \
     "input channels per weight scale (0: one per output row)", 0},                                       \
    {"wq", NULL, QS_KEY_WORD, offsetof(qs_step, w_gptq), 0, 0, 0, "rtn|gptq", qs_wq_values, "rtn or gptq", \
     "weight quantizer: round to nearest or GPTQ", 0}

/* A record's keys and their count. */
#define QS_METHOD_KEYS(k_) .keys = (k_), .n_keys = (int)(sizeof(k_) / sizeof((k_)[0]))

/* The method records (one file each); table.c lists them. */
extern const qs_method_def qs_method_fp32, qs_method_rtn, qs_method_int8, qs_method_rptq, qs_method_slice;

#endif
