/* rptq_impl.h — what RPTQ's default mode (rptq.c) and its reference-code
 * mode (rptq_ref.c) share: the plan of a step, the per-layer clusters and
 * permutations, and the steps both modes run. Private to core/methods. */
#ifndef QS_RPTQ_IMPL_H
#define QS_RPTQ_IMPL_H

#include "methods/methods_impl.h"

/* What one step does, decided before any work. */
typedef struct {
    int bits[QS_SITE_COUNT]; /* activation bits per site; >= 16: not quantized */
    qs_grid grid;            /* activation grid */
    int k_in, k_mlp_in, k_mid; /* clusters at attn_in, mlp_in, mlp_mid */
    int k_qk, qk_per_head;     /* R2: clusters per head (qk_per_head) or for the site */
    int k_out, out_per_head;   /* R3: likewise */
    int reorder;             /* fold the permutations */
    int seed;                /* of every k-means (seed= in the spec) */
    int reorder_qk;          /* fold R2 (not with RoPE) */
    int w_bits, w_group, w_sym, w_cluster;
    int dynamic;             /* per token and cluster scales instead of calibrated ones */
    int ref;                 /* the reference code's conventions */
    int prob_levels;         /* softmax probabilities rounded to 1/levels (ref) */
    int gptq;                /* GPTQ weights (ref) */
} rptq_plan;

/* The activation sites RPTQ quantizes, in the order of the per-site arrays. */
#define N_RPTQ_SITES 7
extern const qs_site rptq_sites[N_RPTQ_SITES];

typedef struct {
    /* labels in the original channel order, and totals */
    int *lab_in, *lab_q, *lab_k, *lab_v, *lab_o, *lab_mi, *lab_mm; /* (d_in) (qd) (kvd) (kvd) (qd) (d_mid) (dff) */
    int n_in, n_qk, n_out, n_mi, n_mm;
    /* permutations (NULL: identity) */
    int32_t *p_in, *p_q, *p_k, *p_v, *p_o, *p_mi, *p_mm;
    int32_t *pbuf;   /* storage of the permutations */
    int own[7];      /* q, k, v, o, up, gate, down: 1 fp32 weights in a buffer of the variant's, 2 in scratch */
    float *scratch[7]; /* permuted fp32 weights about to be packed (malloc'd; rptq_work_free frees them) */
    double *feats;
    int *colg;
    void *block;     /* the one allocation behind all of the above */
} rptq_work;

/* A site's clusters and permutation, in the order of rptq_sites. */
typedef struct {
    const int *lab;
    int n;
    const int32_t *perm;
} rptq_site_work;

qs_status rptq_plan_default(const qs_variant *v, const qs_step *s, rptq_plan *p);
void rptq_work_sites(const rptq_work *wk, rptq_site_work out[N_RPTQ_SITES]);
qs_status rptq_layer_site_stats(const qs_variant *v, const qs_stats *stats, int l, const qs_site_stats *ss[N_RPTQ_SITES]);
qs_status rptq_work_new(rptq_work *wk, const qs_variant *v, int l);
void rptq_work_free(rptq_work *wk);
qs_status rptq_layer_clusters(qs_variant *v, const rptq_plan *p, const qs_site_stats *const ss[N_RPTQ_SITES], int l, rptq_work *wk, int *changed);

/* The reference code's conventions (rptq_ref.c): the plan, and the layer-by-
 * layer calibration and quantization. */
qs_status rptq_plan_ref(const qs_variant *v, const qs_step *s, rptq_plan *p);
qs_status rptq_ref_run(qs_variant *v, const rptq_plan *p, int *changed);

#endif
