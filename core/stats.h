/* stats.h — activation statistics per layer, site and channel, gathered by
 * running calibration windows through a model (or a variant) with an
 * observer attached.
 *
 *     qs_stats_opts o = qs_stats_defaults();           // tau 6, every site
 *     o.cov_sites = 1u << QS_SITE_RESID;               // SliceGPT wants X^T X here
 *     qs_stats *st;
 *     qs_stats_collect(m, NULL, &cal, &o, progress, ud, &st);
 *     const qs_site_stats *s = qs_stats_site(st, 3, QS_SITE_MLP_IN);
 *     ... s->min[c], s->max[c], s->absmax[c], s->n_over[c] / (double)st->tokens ...
 *     qs_stats_free(st);
 *
 * Observers see a site before its quantizer, so statistics of a variant
 * describe what its quantizers receive.
 */
#ifndef QS_STATS_H
#define QS_STATS_H

#include <stdint.h>

#include "calib.h"
#include "forward.h"

typedef struct {
    int dim;
    long tokens;       /* rows observed */
    float *min;        /* (dim) */
    float *max;        /* (dim) */
    float *absmax;     /* (dim) */
    double *sum;       /* (dim) sum of x: mean = sum / tokens */
    double *sumsq;     /* (dim) sum of x^2 */
    long *n_over;      /* (dim) count of |x| >= tau */
    float *tok_absmax; /* (tokens) per-token absmax, in order, or NULL */
    long tok_cap;
    double *cov;       /* (dim, dim) sum of x x^T (uncentred, float64), or NULL */
} qs_site_stats;

typedef struct {
    float tau;          /* outlier magnitude (LLM.int8(): 6) */
    uint32_t sites;     /* bit per qs_site to record; 0: all */
    uint32_t cov_sites; /* bit per qs_site whose X^T X is accumulated */
    int per_token;      /* keep per-token absmax */
} qs_stats_opts;

typedef struct qs_stats {
    int n_layers;       /* site rows 0..n_layers (row n_layers: head_in) */
    float tau;
    long tokens;        /* calibration tokens seen (per site) */
    int windows, ctx;
    qs_stats_opts opts;
    qs_site_stats **site; /* (n_layers + 1) x QS_SITE_COUNT, NULL where not recorded */
    char source[256];
    qs_status err;      /* the first failure inside the observer */
    char err_msg[256];
} qs_stats;

qs_stats_opts qs_stats_defaults(void);

qs_status qs_stats_new(int n_layers, const qs_stats_opts *o, qs_stats **out);
void qs_stats_free(qs_stats *st);

/* The observer to attach with qs_ctx_observe(c, qs_stats_observe, st). Errors
 * (out of memory) are remembered and returned by qs_stats_status(). */
void qs_stats_observe(void *st, int layer, qs_site site, const float *x, int n, int dim, int pos0);
qs_status qs_stats_status(const qs_stats *st);

/* Run every calibration row through model m as x describes (NULL: fp32)
 * and gather statistics. progress(ud, row, rows) may cancel. */
qs_status qs_stats_collect(const qs_model *m, const qs_exec *x, const qs_calib *cal, const qs_stats_opts *o,
                           qs_progress_fn progress, void *ud, qs_stats **out);

/* The statistics of one layer and site, or NULL. */
const qs_site_stats *qs_stats_site(const qs_stats *st, int layer, qs_site site);

/* The LLM.int8() outlier analysis (Dettmers et al. 2022, section 4.1): a
 * feature dimension of the hidden states that feed the linear layers
 * (attn_in and mlp_in of every layer) is an outlier when |x| >= tau at
 * >= pos_frac of the sequence positions in >= layer_frac of those inputs. */
typedef struct {
    int dim;
    int n_inputs;       /* how many of the 2 x n_layers inputs it affects */
    int n_layers_hit;   /* distinct layers affected */
    double layer_frac;  /* n_inputs / (2 n_layers) */
    double pos_frac;    /* mean fraction of positions over the affected inputs */
    float absmax;       /* largest |x| seen in this dimension */
    uint64_t layer_mask;/* bit l set when layer l (< 64) is affected */
} qs_outlier;

qs_status qs_stats_outliers(const qs_stats *st, float tau, double layer_frac, double pos_frac,
                            qs_outlier **out, int *n);

#endif
