/* stats/stats.h — the public interface of core/stats/. Sections: calib, stats, kmeans. */
#ifndef QS_STATS_H
#define QS_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "tok/tok.h"
#include "run/run.h"

/* ---- calib.h — calibration sets: rows of token ids that statistics are
 * gathered over, each row run as its own window from an empty cache.
 *
 *     qs_calib cal;
 *     qs_calib_from_text(m->tok, text, len, 512, 32, &cal);  // 32 windows of 512
 *     ... qs_stats_collect(m, NULL, &cal, &opts, NULL, NULL, &st) ...
 *     qs_calib_free(&cal);
 *
 * Three ways to build one: consecutive windows of a text from its start;
 * windows at given token offsets of a text, in the order given; or rows
 * read from an int32 little-endian file (--calib-ids), which compares like
 * with like against another implementation's calibration.
 */
typedef struct {
    int32_t *ids; /* (n_rows, ctx), owned */
    int n_rows, ctx;
    char source[256]; /* what it was built from, for messages */
} qs_calib;

/* Tokenize text once (default specials) and take up to `windows` consecutive
 * non-overlapping windows of ctx tokens from the start (fewer if the text is
 * short; at least one, else an error naming the sizes). */
qs_status qs_calib_from_text(const qs_tok *t, const char *text, size_t len, int ctx, int windows,
                             qs_calib *out);

/* Windows of ctx tokens starting at the given token offsets, in that order. */
qs_status qs_calib_from_offsets(const qs_tok *t, const char *text, size_t len, int ctx,
                                const long *offsets, int n_offsets, qs_calib *out);

/* Rows of ctx ids from an int32 little-endian file (ctx 0: the whole file
 * is one row). The id count must be a multiple of ctx; vocab > 0 checks
 * every id against the vocabulary. */
qs_status qs_calib_from_ids_file(const char *path, int ctx, int vocab, qs_calib *out);

/* Token offsets, one per line (blank lines and # comments skipped). */
qs_status qs_calib_read_offsets(const char *path, long **offsets, int *n);

void qs_calib_free(qs_calib *c);

/* The calibration rules every front end follows (the CLI's --calib options,
 * Lua's m:calibrate{...}, the workbench): which text, how many windows, which
 * context. Start from qs_calib_opts_defaults() and set what the user gave.
 *
 *     qs_calib_opts o = qs_calib_opts_defaults();   // 32 windows of min(512, positions)
 *     o.windows = 8;
 *     if (qs_calib_load(m, &o, &cal)) ... qs_last_error() ...
 */
#define QS_CALIB_WINDOWS 32 /* the README's numbers are measured with these */
#define QS_CALIB_CTX 512

typedef struct {
    const char *ids_file;     /* rows of ctx int32 ids (every row), instead of text */
    const char *text;         /* the text itself (text_len bytes), or */
    size_t text_len;
    const char *file;         /* a text file; neither: calib.txt beside the model */
    const long *offsets;      /* (n_offsets) token offsets of the windows, in order, or */
    int n_offsets;
    const char *offsets_file; /* read from this file (qs_calib_read_offsets); neither:
                               * consecutive windows from the start */
    int windows;              /* consecutive windows wanted (fewer if the text is short) */
    int ctx;                  /* tokens per window; 0: min(QS_CALIB_CTX, the model's positions) */
    /* how the front end names its options, for messages (NULL: not named) */
    const char *how_text;     /* "--calib FILE (or --calib-ids FILE)": when there is no text */
    const char *how_ids;      /* "--calib-ids": when the model has no tokenizer */
} qs_calib_opts;

qs_calib_opts qs_calib_opts_defaults(void);

/* The context calibration windows get on model m under o. */
int qs_calib_opts_ctx(const qs_model *m, const qs_calib_opts *o);

/* Build the calibration set o describes for model m into *out (the caller
 * frees it with qs_calib_free). Fails with a message naming the file: no text
 * and no calib.txt beside the model, no tokenizer to read the text, a context
 * longer than the model's positions, or what reading or tokenizing reported. */
qs_status qs_calib_load(const qs_model *m, const qs_calib_opts *o, qs_calib *out);

/* H (dim, dim; the upper triangle accumulates) += X^T X for rows x (n, dim),
 * in float64, QS_XTX_ROWS rows at a time through buf (QS_XTX_ROWS x dim
 * doubles; NULL: allocated for the call). The one X^T X of the statistics'
 * covariance, GPTQ's and RPTQ's Hessians and SliceGPT's PCA. */
enum { QS_XTX_ROWS = 256 };
qs_status qs_xtx_add(double *H, const float *x, long n, int dim, double *buf);

/* ---- stats.h — activation statistics per layer, site and channel, gathered by
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

/* ---- kmeans.h — k-means clustering of small point sets (RPTQ groups the
 * channels of an activation by their calibrated (max, min)).
 *
 * Seeding is k-means++ (Arthur & Vassilvitskii 2007: the first
 * centre uniformly, each next one with probability proportional to D(x)^2,
 * the squared distance to the nearest centre chosen so far); then Lloyd
 * iterations until the labels stop changing (or QS_KMEANS_MAX_ITER); the
 * whole is restarted n_init times and the run with the lowest inertia (sum
 * of squared distances to the assigned centroid) is kept. The random numbers
 * come from the module's own generator (splitmix64) and every sum runs in a
 * fixed order, so a seed gives the same clusters on every run and platform.
 *
 *     double pts[6][2] = {{0, 0}, {0, 1}, {1, 0}, {9, 9}, {9, 8}, {8, 9}};
 *     int labels[6];
 *     double inertia;
 *     qs_kmeans(&pts[0][0], 6, 2, 2, 10, 0, labels, NULL, &inertia);
 *     // labels = {0, 0, 0, 1, 1, 1}, inertia = 4 * 2/3
 */
#define QS_KMEANS_N_INIT 10    /* restarts when n_init <= 0 */
#define QS_KMEANS_MAX_ITER 300 /* Lloyd iterations per restart */

/* Cluster n points of dim coordinates into k clusters.
 *   pts       (n, dim) row-major, finite (else QS_EARG)
 *   labels    (n) out: cluster of each point, in [0, min(k, n)); clusters are
 *             numbered in the order of their first point (point 0 is in
 *             cluster 0), and none is empty
 *   centroids (k, dim) out or NULL: the mean of each cluster (rows from
 *             min(k, n) on are zero)
 *   inertia   out or NULL: sum of squared distances to the centroids
 * k >= n puts every point in a cluster of its own. n_init <= 0: the default.
 * An empty cluster during the iterations takes the point farthest from its
 * centroid among the clusters with more than one point. */
qs_status qs_kmeans(const double *pts, int n, int dim, int k, int n_init, uint64_t seed, int *labels,
                    double *centroids, double *inertia);

/* The pieces, for tests and callers that seed their own way. */

/* The generator: advances *state and returns 64 random bits (splitmix64). */
uint64_t qs_kmeans_rand(uint64_t *state);

/* k-means++ seeding of k <= n centres into centroids (k, dim). */
qs_status qs_kmeans_seed(const double *pts, int n, int dim, int k, uint64_t *state, double *centroids);

/* Lloyd iterations from the given centroids (k, dim; updated in place) until
 * the labels stop changing or max_iter. labels (n) out. trace (max_iter) or
 * NULL: the inertia after each iteration (non-increasing). *iters: the
 * iterations run. Requires k <= n. */
qs_status qs_kmeans_lloyd(const double *pts, int n, int dim, int k, int max_iter, double *centroids,
                          int *labels, double *trace, int *iters);

#endif
