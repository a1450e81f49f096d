/* RPTQ on the fixture models: the reorder alone is exact, per-cluster static
 * A4 beats per-tensor and per-token A4, perplexity against the cluster count
 * (g = 1 is the per-tensor baseline), weight accounting, spec errors. Every
 * test calibrates on 16 windows of 512 tokens of calib.txt and scores 8
 * heldout windows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "run/run.h"
#include "base/base.h"
#include "kern/kern.h"
#include "methods/methods.h"
#include "harness.h"

typedef struct {
    qs_model *m;
    qs_calib cal;
    qs_stats *base; /* fp32 statistics over cal, shared by every variant */
    int32_t *held;
    size_t n_held;
} fixture;

static void fx_close(fixture *f) {
    qs_stats_free(f->base);
    qs_calib_free(&f->cal);
    free(f->held);
    qs_model_free(f->m);
    memset(f, 0, sizeof *f);
}

static int fx_open(fixture *f, const char *model, int windows) {
    memset(f, 0, sizeof *f);
    char p[256];
    snprintf(p, sizeof p, "models/%s", model);
    if (qs_model_load(th_path(p), NULL, &f->m) || qs_model_weights_f32(f->m)) return 0; /* weights compared as fp32 */
    char *text;
    size_t len;
    if (qs_io_read_all(th_path("data/calib.txt"), &text, &len)) return 0;
    qs_status st = qs_calib_from_text(f->m->tok, text, len, 512, windows, &f->cal);
    free(text);
    if (st) return 0;
    qs_stats_opts o = qs_stats_defaults();
    o.per_token = 0;
    if (qs_stats_collect(f->m, NULL, &f->cal, &o, NULL, NULL, &f->base)) return 0;
    if (qs_io_read_all(th_path("data/heldout.txt"), &text, &len)) return 0;
    st = qs_tok_encode(f->m->tok, text, len, 1, &f->held, &f->n_held);
    free(text);
    return st == QS_OK;
}

/* Open fixture f or fail the test and return. */
#define FX_OPEN(f, model, windows)                                                   \
    do {                                                                             \
        if (!fx_open(&(f), (model), (windows))) {                                     \
            th_fail_at(__FILE__, __LINE__, "%s fixture: %s", (model), qs_last_error()); \
            fx_close(&(f));                                                          \
            return;                                                                  \
        }                                                                            \
    } while (0)

static qs_status fx_variant(fixture *f, const char *spec, qs_variant **v) {
    qs_variant_opts o = {.calib = &f->cal, .base_stats = f->base};
    return qs_variant_new(f->m, spec, &o, v);
}

/* Heldout perplexity over 8 windows of 512 (NAN on failure, reported). */
static double fx_ppl_of(fixture *f, const qs_variant *v) {
    qs_ctx *c;
    if (qs_ctx_new(f->m, v ? qs_variant_exec(v) : NULL, 512, &c)) {
        th_fail_at(__FILE__, __LINE__, "context: %s", qs_last_error());
        return NAN;
    }
    qs_ppl_opts o = {.ctx = 512, .max_windows = 8};
    qs_ppl_result r;
    qs_status st = qs_eval_ppl(c, f->held, (long)f->n_held, &o, &r);
    qs_ctx_free(c);
    if (st) {
        th_fail_at(__FILE__, __LINE__, "ppl: %s", qs_last_error());
        return NAN;
    }
    return r.ppl;
}

static double fx_ppl(fixture *f, const char *spec) {
    qs_variant *v;
    if (fx_variant(f, spec, &v)) {
        th_fail_at(__FILE__, __LINE__, "%s: %s", spec, qs_last_error());
        return NAN;
    }
    double p = fx_ppl_of(f, v);
    qs_variant_free(v);
    return p;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* ---- the reorder alone changes nothing ---- */

static int is_identity(const int32_t *p, int n) {
    for (int i = 0; i < n; i++)
        if (p[i] != i) return 0;
    return 1;
}

static void check_reorder_exact(const char *model) {
    fixture f;
    FX_OPEN(f, model, 4);
    const qs_config *cfg = &f.m->cfg;
    qs_variant *v = NULL;
    /* all bits 16: clusters and permutations only */
    if (fx_variant(&f, "rptq:g=8", &v)) {
        th_fail_at(__FILE__, __LINE__, "%s: %s", model, qs_last_error());
        fx_close(&f);
        return;
    }
    int n = 128, vocab = cfg->vocab;
    float *a = malloc((size_t)n * vocab * sizeof(float)), *b = malloc((size_t)n * vocab * sizeof(float));
    qs_ctx *c0, *c1;
    REQUIRE(qs_ctx_new(f.m, NULL, n, &c0) == QS_OK && qs_ctx_new(f.m, qs_variant_exec(v), n, &c1) == QS_OK, "%s",
            qs_last_error());
    CHECK(qs_forward(c0, f.held, n, a, QS_LOGITS_ALL) == QS_OK, "%s", qs_last_error());
    CHECK(qs_forward(c1, f.held, n, b, QS_LOGITS_ALL) == QS_OK, "%s", qs_last_error());
    double scale = 0, diff = 0;
    for (size_t i = 0; i < (size_t)n * vocab; i++) {
        scale = fmax(scale, fabs(a[i]));
        diff = fmax(diff, fabs((double)a[i] - b[i]));
    }
    /* the model's own float noise: the same logits with the sums in another
     * order (the batch cut into chunks through the KV cache) */
    double noise = 0;
    for (int chunk = 1; chunk <= 16; chunk *= 16) {
        qs_ctx_reset(c0);
        for (int i = 0; i < n; i += chunk)
            CHECK(qs_forward(c0, f.held + i, chunk, b + (size_t)i * vocab, QS_LOGITS_ALL) == QS_OK, "%s", qs_last_error());
        for (size_t i = 0; i < (size_t)n * vocab; i++) noise = fmax(noise, fabs((double)a[i] - b[i]));
    }
    double tol = fmax(1e-5 * scale, 2 * noise);
    printf("  %s: reorder only (g=8): max |logit diff| %.3g = %.2g of the logit scale %.3g; re-batching the "
           "model itself: %.3g\n", model, diff, diff / scale, scale, noise);
    CHECK(diff <= tol, "%s: reordered logits differ by %.3g (scale %.3g, float noise %.3g)", model, diff, scale, noise);

    /* the permutations happened, where they may */
    const qs_weights *w = qs_variant_exec(v)->w;
    int moved_norms = 0, moved_qrows = 0, moved_vrows = 0, hd = cfg->head_dim, qd = cfg->n_heads * hd;
    for (int l = 0; l < cfg->n_layers; l++) {
        const qs_layer *L = &w->layers[l], *M = &f.m->w.layers[l];
        const qs_norm *norms[2] = {&L->attn_norm, &L->mlp_norm};
        const qs_site sites[2] = {QS_SITE_ATTN_IN, QS_SITE_MLP_IN};
        for (int k = 0; k < 2; k++) {
            const qs_norm *nm = norms[k];
            if (!nm->perm) continue;
            moved_norms += !is_identity(nm->perm, nm->dim);
            /* channels sorted by cluster: labels (original order) non-decreasing along the perm */
            int ncl;
            const int *lab = qs_variant_clusters(v, l, sites[k], &ncl);
            CHECK(lab && ncl == 8, "%s layer %d: %s has %d clusters, want 8", model, l, qs_site_name(sites[k]), ncl);
            for (int j = 1; lab && j < nm->dim; j++)
                CHECK(lab[nm->perm[j - 1]] <= lab[nm->perm[j]], "%s layer %d %s: position %d breaks the cluster order",
                      model, l, qs_site_name(sites[k]), j);
        }
        /* q rows: the same set of rows inside every head (within-head moves only) */
        const int32_t *p_in = L->attn_norm.perm;
        int n_in = L->q.n_in;
        for (int r = 0; r < qd; r++) {
            /* find the model's row that became row r */
            int src = -1;
            for (int s = (r / hd) * hd; s < (r / hd + 1) * hd && src < 0; s++) {
                int same = 1;
                for (int j = 0; j < n_in && same; j++)
                    same = L->q.w[(size_t)r * n_in + j] == M->q.w[(size_t)s * n_in + (p_in ? p_in[j] : j)];
                if (same) src = s;
            }
            CHECK(src >= 0, "%s layer %d: q row %d is no row of its head", model, l, r);
            moved_qrows += src >= 0 && src != r;
        }
        for (int r = 0; r < L->v.n_out; r++) {
            int same = 1;
            for (int j = 0; j < n_in && same; j++)
                same = L->v.w[(size_t)r * n_in + j] == M->v.w[(size_t)r * n_in + (p_in ? p_in[j] : j)];
            moved_vrows += !same;
        }
    }
    /* q and k share clusters: a query head takes its kv head's labels, 4 per kv head */
    int grp = cfg->n_heads / cfg->n_kv_heads, nq, nk;
    for (int l = 0; l < cfg->n_layers; l++) {
        const int *lq = qs_variant_clusters(v, l, QS_SITE_Q, &nq), *lk = qs_variant_clusters(v, l, QS_SITE_K, &nk);
        REQUIRE(lq && lk, "%s layer %d: no q/k clusters", model, l);
        CHECK(nq == 4 * cfg->n_kv_heads && nk == nq, "%s layer %d: %d q and %d k clusters, want %d", model, l, nq, nk,
              4 * cfg->n_kv_heads);
        for (int h = 0; h < cfg->n_heads; h++)
            for (int ch = 0; ch < hd; ch++) {
                int g = h / grp, a_ = lq[h * hd + ch], b_ = lk[g * hd + ch];
                CHECK(a_ == b_ && b_ >= 4 * g && b_ < 4 * g + 4, "%s layer %d head %d channel %d: q cluster %d, k %d", model,
                      l, h, ch, a_, b_);
            }
    }
    printf("  %s: %d of %d norms permuted, %d q rows and %d v rows moved\n", model, moved_norms, 2 * cfg->n_layers,
           moved_qrows, moved_vrows);
    CHECK(moved_norms > 0, "%s: no norm carries a non-identity permutation", model);
    CHECK(moved_vrows > 0, "%s: R3 moved no v row", model);
    if (cfg->rope_theta > 0)
        CHECK(moved_qrows == 0, "%s: %d q rows moved under RoPE", model, moved_qrows);
    else
        CHECK(moved_qrows > 0, "%s: R2 moved no q row", model);
    CHECK(strstr(qs_variant_describe(v), "RPTQ") != NULL, "%s: description '%s'", model, qs_variant_describe(v));
    printf("  %s: %s\n", model, qs_variant_describe(v));
    free(a);
    free(b);
    qs_ctx_free(c0);
    qs_ctx_free(c1);
    qs_variant_free(v);
    fx_close(&f);
}

TEST(rptq_reorder_exact_opt) {
    NEED_SHARED();
    check_reorder_exact("opt-mini");
}
TEST(rptq_reorder_exact_gpt2) {
    NEED_SHARED();
    check_reorder_exact("gpt2-mini");
}
TEST(rptq_reorder_exact_llama) {
    NEED_SHARED();
    check_reorder_exact("llama-mini");
}

/* ---- A4: per cluster against per tensor and per token ---- */

static void check_a4(const char *model, int assert_token) {
    fixture f;
    FX_OPEN(f, model, 16);
    double t0 = now();
    double fp = fx_ppl_of(&f, NULL);
    double t1 = now();
    qs_variant *on = NULL, *off = NULL;
    REQUIRE(fx_variant(&f, "rptq:a=4,g=8", &on) == QS_OK, "%s", qs_last_error());
    double rptq = fx_ppl_of(&f, on);
    double t2 = now();
    REQUIRE(fx_variant(&f, "rptq:a=4,g=8,reorder=0", &off) == QS_OK, "%s", qs_last_error());
    double fixed = fx_ppl_of(&f, off);
    double tensor = fx_ppl(&f, "rtn:a=4,act=tensor");
    double token = fx_ppl(&f, "rtn:a=4,act=token");
    double dyn = fx_ppl(&f, "rptq:a=4,g=8,act=token");
    printf("  %s heldout ppl (8 x 512): fp32 %.4f | rptq:a=4,g=8 %.4f (reorder=0: %.4f) | rptq:a=4,g=8,act=token %.4f | "
           "rtn:a=4,act=tensor %.4f | rtn:a=4,act=token %.4f\n",
           model, fp, rptq, fixed, dyn, tensor, token);
    /* RPTQ's clusters with per-token ranges: finer than per-token (each
     * cluster's range is inside the token's), so it must beat both baselines
     * on every model */
    CHECK(dyn < token && dyn < tensor, "%s: rptq A4 per token and cluster %.4f does not beat per-token %.4f / "
          "per-tensor %.4f", model, dyn, token, tensor);
    CHECK(dyn > fp, "%s: rptq A4 per token and cluster %.4f is below fp32 %.4f", model, dyn, fp);
    printf("  %s timing: fp32 ppl %.2f s, rptq build (k-means, 16 windows reused) + ppl %.2f s\n", model, t1 - t0,
           t2 - t1);
    CHECK(rptq < tensor, "%s: rptq A4 %.4f does not beat per-tensor A4 %.4f", model, rptq, tensor);
    if (assert_token)
        CHECK(rptq < token, "%s: rptq A4 %.4f does not beat per-token A4 %.4f", model, rptq, token);
    else if (rptq >= token)
        printf("  %s: per-token dynamic A4 beats static per-cluster A4 here (not asserted)\n", model);
    CHECK(rptq > fp, "%s: rptq A4 %.4f is below fp32 %.4f", model, rptq, fp);
    /* reorder on and off run the same quantizers at other positions (see
     * rptq_quantizers_follow_reorder); end to end they differ only where
     * float noise moves a value across a rounding boundary, which at 4 bits
     * then spreads through the rest of its window */
    CHECK(fabs(rptq - fixed) <= 0.03 * fixed, "%s: reorder on %.4f vs off %.4f", model, rptq, fixed);
    qs_variant_free(on);
    qs_variant_free(off);
    fx_close(&f);
}

TEST(rptq_a4_opt) {
    NEED_SHARED();
    check_a4("opt-mini", 1);
}
TEST(rptq_a4_llama) {
    NEED_SHARED();
    /* static RPTQ is not asserted against per token here: SwiGLU's mlp_mid is
     * heavy-tailed, and static ranges (even per channel) lose to per-token
     * scales at 4 bits; the per-token-and-cluster mode is asserted instead */
    check_a4("llama-mini", 0);
}

/* ---- the quantizers move with the channels ---- */

/* The row of b (rows [lo, hi), columns read through cp) that equals row r of
 * a, or -1. */
static int row_source(const float *a, const float *b, int cols, const int32_t *cp, int r, int lo, int hi) {
    const float *ar = a + (size_t)r * cols;
    for (int s = lo; s < hi; s++) {
        const float *bs = b + (size_t)s * cols;
        int j = 0;
        while (j < cols && ar[j] == bs[cp ? cp[j] : j]) j++;
        if (j == cols) return s;
    }
    return -1;
}

/* Read every site's permutation back from the folded weights and check that
 * the reordered variant's scale/zero at position j are the unreordered
 * variant's at channel perm[j]: the same quantizers, moved. */
static void check_quantizers_follow(const char *model) {
    fixture f;
    FX_OPEN(f, model, 4);
    const qs_config *cfg = &f.m->cfg;
    qs_variant *on = NULL, *off = NULL;
    REQUIRE(fx_variant(&f, "rptq:a=4,g=8", &on) == QS_OK, "%s", qs_last_error());
    REQUIRE(fx_variant(&f, "rptq:a=4,g=8,reorder=0", &off) == QS_OK, "%s", qs_last_error());
    const qs_exec *xo = qs_variant_exec(on), *xf = qs_variant_exec(off);
    int hd = cfg->head_dim, grp = cfg->n_heads / cfg->n_kv_heads, moved = 0, checked = 0;
    for (int l = 0; l < cfg->n_layers; l++) {
        const qs_layer *L = &xo->w->layers[l], *M = &f.m->w.layers[l];
        int d = L->attn_norm.dim, qd = L->q.n_out, kvd = L->k.n_out, dff = L->up.n_out;
        int32_t *perm[QS_SITE_COUNT] = {0};
        int dims[QS_SITE_COUNT] = {0};
        dims[QS_SITE_ATTN_IN] = d, dims[QS_SITE_Q] = qd, dims[QS_SITE_K] = kvd, dims[QS_SITE_V] = kvd;
        dims[QS_SITE_ATTN_OUT] = qd, dims[QS_SITE_MLP_IN] = L->mlp_norm.dim, dims[QS_SITE_MLP_MID] = dff;
        for (int s = 0; s < QS_SITE_COUNT; s++)
            if (dims[s]) perm[s] = malloc((size_t)dims[s] * sizeof(int32_t));
        const int32_t *p_in = L->attn_norm.perm, *p_mi = L->mlp_norm.perm;
        for (int j = 0; j < d; j++) perm[QS_SITE_ATTN_IN][j] = p_in ? p_in[j] : j;
        for (int j = 0; j < dims[QS_SITE_MLP_IN]; j++) perm[QS_SITE_MLP_IN][j] = p_mi ? p_mi[j] : j;
        /* rows: q and k inside their head, v inside its kv head, up over all */
        for (int r = 0; r < qd; r++) perm[QS_SITE_Q][r] = row_source(L->q.w, M->q.w, d, p_in, r, r / hd * hd, r / hd * hd + hd);
        for (int r = 0; r < kvd; r++) perm[QS_SITE_K][r] = row_source(L->k.w, M->k.w, d, p_in, r, r / hd * hd, r / hd * hd + hd);
        for (int r = 0; r < kvd; r++) perm[QS_SITE_V][r] = row_source(L->v.w, M->v.w, d, p_in, r, r / hd * hd, r / hd * hd + hd);
        for (int r = 0; r < dff; r++) perm[QS_SITE_MLP_MID][r] = row_source(L->up.w, M->up.w, L->up.n_in, p_mi, r, 0, dff);
        /* o's columns: each query head moves as its kv head's v rows */
        for (int h = 0; h < cfg->n_heads; h++)
            for (int j = 0; j < hd; j++)
                perm[QS_SITE_ATTN_OUT][h * hd + j] = h * hd + perm[QS_SITE_V][(h / grp) * hd + j] - (h / grp) * hd;
        for (int i = 0; i < L->o.n_out; i++)
            for (int j = 0; j < qd; j++) {
                int src = perm[QS_SITE_ATTN_OUT][j];
                if (src < 0 || L->o.w[(size_t)i * qd + j] != M->o.w[(size_t)i * qd + src]) {
                    CHECK(0, "%s layer %d: o column %d is not the model's column %d", model, l, j, src);
                    i = L->o.n_out;
                    break;
                }
            }
        for (int s = 0; s < QS_SITE_COUNT; s++) {
            if (!dims[s]) continue;
            const qs_actq *qo = &xo->aq[(size_t)l * QS_SITE_COUNT + s], *qf = &xf->aq[(size_t)l * QS_SITE_COUNT + s];
            REQUIRE(qo->mode == QS_AQ_STATIC && qf->mode == QS_AQ_STATIC && qo->bits == 4 && qf->bits == 4,
                    "%s layer %d %s: quantizers missing", model, l, qs_site_name(s));
            int bad = 0, nmoved = 0;
            for (int j = 0; j < dims[s]; j++) {
                int src = perm[s][j];
                if (src < 0) {
                    bad++;
                    continue;
                }
                nmoved += src != j;
                bad += qo->scale[j] != qf->scale[src] || qo->zero[j] != qf->zero[src];
            }
            CHECK(bad == 0, "%s layer %d %s: %d of %d positions hold another channel's scale/zero (or no source)", model,
                  l, qs_site_name(s), bad, dims[s]);
            moved += nmoved;
            checked += dims[s];
            if (cfg->rope_theta > 0 && (s == QS_SITE_Q || s == QS_SITE_K))
                CHECK(nmoved == 0, "%s layer %d: %s moved under RoPE", model, l, qs_site_name(s));
        }
        for (int s = 0; s < QS_SITE_COUNT; s++) free(perm[s]);
    }
    printf("  %s: %d of %d quantized channels moved, every scale/zero with its channel\n", model, moved, checked);
    CHECK(moved > checked / 2, "%s: only %d of %d channels moved", model, moved, checked);
    qs_variant_free(on);
    qs_variant_free(off);
    fx_close(&f);
}

TEST(rptq_quantizers_follow_reorder) {
    NEED_SHARED();
    check_quantizers_follow("opt-mini");
    check_quantizers_follow("llama-mini");
}

/* ---- perplexity against the cluster count ---- */

/* ppl (G_SWEEP_N) of the spec made from fmt with g (every %d) = 1, 2, ..., 32 */
enum { G_SWEEP_N = 6 };
static void g_sweep(fixture *f, const char *fmt, double *ppl) {
    static const int gs[G_SWEEP_N] = {1, 2, 4, 8, 16, 32};
    for (int i = 0; i < G_SWEEP_N; i++) {
        char spec[96];
        snprintf(spec, sizeof spec, fmt, gs[i], gs[i], gs[i]);
        ppl[i] = fx_ppl(f, spec);
        printf("    g = %2d: %.4f\n", gs[i], ppl[i]);
    }
}

TEST(rptq_g_sweep_opt) {
    NEED_SHARED();
    fixture f;
    FX_OPEN(f, "opt-mini", 16);
    double ppl[G_SWEEP_N];
    double tensor = fx_ppl(&f, "rtn:a=4,act=tensor");
    printf("  opt-mini A4 heldout ppl, g clusters at every site (per-tensor static baseline %.4f)\n", tensor);
    /* g_q / g_attn_out are those sites' totals: g = 1 is per tensor everywhere */
    g_sweep(&f, "rptq:a=4,g=%d,g_q=%d,g_attn_out=%d", ppl);
    CHECK(fabs(ppl[0] - tensor) <= 1e-9 * tensor, "g=1 at every site %.9f is not the per-tensor baseline %.9f", ppl[0],
          tensor);
    CHECK(ppl[G_SWEEP_N - 1] <= ppl[0], "g=32 %.4f worse than g=1 %.4f", ppl[G_SWEEP_N - 1], ppl[0]);

    /* the quantizer of a cluster is its channels' calibrated range, at the
     * channel's permuted position */
    qs_variant *v;
    REQUIRE(fx_variant(&f, "rptq:a=4,g=8", &v) == QS_OK, "%s", qs_last_error());
    const qs_exec *x = qs_variant_exec(v);
    for (int l = 0; l < f.m->cfg.n_layers; l++) {
        const qs_site sites[2] = {QS_SITE_ATTN_IN, QS_SITE_MLP_IN};
        const qs_norm *norms[2] = {&x->w->layers[l].attn_norm, &x->w->layers[l].mlp_norm};
        for (int k = 0; k < 2; k++) {
            int ncl;
            const int *lab = qs_variant_clusters(v, l, sites[k], &ncl);
            const qs_site_stats *ss = qs_stats_site(f.base, l, sites[k]);
            const qs_actq *q = &x->aq[(size_t)l * QS_SITE_COUNT + sites[k]];
            REQUIRE(lab && ss && q->mode == QS_AQ_STATIC && q->bits == 4, "layer %d %s: no clusters or quantizer", l,
                    qs_site_name(sites[k]));
            for (int cl = 0; cl < ncl; cl++) {
                float lo = INFINITY, hi = -INFINITY, sc, zp;
                for (int i = 0; i < ss->dim; i++)
                    if (lab[i] == cl) {
                        lo = fminf(lo, ss->min[i]);
                        hi = fmaxf(hi, ss->max[i]);
                    }
                qs_quant_params(lo, hi, 4, 0, QS_GRID_STD, &sc, &zp);
                for (int j = 0; j < ss->dim; j++) {
                    int ch = norms[k]->perm ? norms[k]->perm[j] : j;
                    if (lab[ch] == cl)
                        CHECK(q->scale[j] == sc && q->zero[j] == zp, "layer %d %s position %d: scale %g zero %g, want %g %g",
                              l, qs_site_name(sites[k]), j, q->scale[j], q->zero[j], sc, zp);
                }
            }
        }
    }
    qs_variant_free(v);

    /* g >= the width: one cluster per channel, nothing to move */
    REQUIRE(fx_variant(&f, "rptq:a=4,g=4096,g_head=1024", &v) == QS_OK, "%s", qs_last_error());
    int ncl;
    const int *lab = qs_variant_clusters(v, 0, QS_SITE_MLP_MID, &ncl);
    REQUIRE(lab && ncl == f.m->cfg.d_ff, "per channel: %d clusters at mlp_mid, want %d", ncl, f.m->cfg.d_ff);
    for (int i = 0; i < ncl; i++) CHECK(lab[i] == i, "per channel: channel %d in cluster %d", i, lab[i]);
    CHECK(!qs_variant_exec(v)->w->layers[0].attn_norm.perm, "per channel: attn_norm was permuted");
    qs_variant_free(v);
    fx_close(&f);
}

/* The default layout: g at attn_in/mlp_in/mlp_mid, 4 clusters per head at
 * q/k and attn_out (g = 1 is then per tensor only at the g sites). */
TEST(rptq_g_sweep_per_head_opt) {
    NEED_SHARED();
    fixture f;
    FX_OPEN(f, "opt-mini", 16);
    double ppl[G_SWEEP_N];
    printf("  opt-mini A4 heldout ppl, g clusters at attn_in/mlp_in/mlp_mid, 4 per head at q/k/attn_out\n");
    g_sweep(&f, "rptq:a=4,g=%d", ppl);
    CHECK(ppl[G_SWEEP_N - 1] <= ppl[0], "g=32 %.4f worse than g=1 %.4f", ppl[G_SWEEP_N - 1], ppl[0]);
    fx_close(&f);
}

/* ---- accounting ---- */

TEST(rptq_weight_bytes_opt) {
    NEED_SHARED();
    fixture f;
    FX_OPEN(f, "opt-mini", 2);
    const qs_config *c = &f.m->cfg;
    long long d = c->d_model, ff = c->d_ff;
    /* q, k, v, o (d x d), fc1 (ff x d), fc2 (d x ff): 4-bit codes and an
     * fp16 scale + zero per output row; biases, norms, embeddings fp32 */
    long long rows = 4 * d + ff + d, weights = 4 * d * d + 2 * ff * d;
    long long per_layer = weights / 2 + rows * 4 + 4 * (4 * d + ff + d) + 4 * 4 * d;
    long long want = c->n_layers * per_layer + 4LL * c->vocab * d + 4LL * (c->max_pos + c->pos_offset) * d + 4 * 2 * d;
    qs_variant *v;
    REQUIRE(fx_variant(&f, "rptq:w=4,a=4", &v) == QS_OK, "%s", qs_last_error());
    long long got = qs_variant_weight_bytes(v);
    printf("  opt-mini rptq:w=4,a=4: %lld weight bytes (hand count %lld), KV %lld bytes/token\n", got, want,
           qs_variant_kv_bytes_per_token(v));
    CHECK(got == want, "weight bytes %lld, hand count %lld", got, want);
    CHECK(qs_variant_kv_bytes_per_token(v) == 2LL * c->n_layers * d * 4 / 8, "KV bytes/token %lld",
          qs_variant_kv_bytes_per_token(v));
    const qs_layer *L = &qs_variant_exec(v)->w->layers[0];
    CHECK(L->q.bits == 4 && L->q.group == 0 && L->q.asym && L->down.bits == 4, "layer 0: bits %d group %d asym %d",
          L->q.bits, L->q.group, L->q.asym);
    qs_variant_free(v);

    /* per output row x input cluster: 32 clusters of the 192 / 768 inputs, 16 (4 per head) at o */
    REQUIRE(fx_variant(&f, "rptq:w=4,wgroups=cluster", &v) == QS_OK, "%s", qs_last_error());
    long long groups = 3 * d * 32 + d * 16 + ff * 32 + d * 32;
    long long want_c = want - c->n_layers * rows * 4 + c->n_layers * groups * 4;
    got = qs_variant_weight_bytes(v);
    CHECK(got == want_c, "wgroups=cluster: weight bytes %lld, hand count %lld", got, want_c);
    CHECK(qs_variant_kv_bytes_per_token(v) == 2LL * c->n_layers * d * 4, "W4A16: KV stays fp32 (%lld)",
          qs_variant_kv_bytes_per_token(v));
    qs_variant_free(v);
    fx_close(&f);
}

/* ---- errors ---- */

TEST(rptq_spec_errors) {
    NEED_SHARED();
    fixture f;
    FX_OPEN(f, "opt-mini", 1);
    static const struct {
        const char *spec;
        qs_status st;
        const char *says;
    } bad[] = {
        {"rptq:w=5x", QS_EARG, "integer"},
        {"rptq:g=0", QS_EARG, "out of range"},
        {"rptq:g_head=0", QS_EARG, "out of range"},
        {"rptq:g_v=4", QS_EARG, "not 'v'"},
        {"rptq:a=9", QS_EARG, "bits"},
        {"rptq:w=4,wgroups=cluster,group=64", QS_EARG, "not both"},
        {"rptq:wgroups=cluster", QS_EARG, "weight bits"},
        {"rptq:a=4,g_q=4,g_k=8", QS_EARG, "share"},
        {"rptq:w=4,group=64,ref=1", QS_EARG, "reference"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qs_variant *v = NULL;
        qs_status st = fx_variant(&f, bad[i].spec, &v);
        CHECK(st == bad[i].st && !v, "%s: status %d, want %d", bad[i].spec, st, bad[i].st);
        CHECK(strstr(qs_last_error(), bad[i].says) && strstr(qs_last_error(), "rptq"),
              "%s: message '%s' should say '%s' and name the spec", bad[i].spec, qs_last_error(), bad[i].says);
        qs_variant_free(v);
    }
    /* without calibration data */
    qs_variant *v = NULL;
    CHECK(qs_variant_new(f.m, "rptq:a=4", NULL, &v) == QS_EARG && !v, "rptq without calibration accepted");
    CHECK(strstr(qs_last_error(), "calibration") != NULL, "message '%s'", qs_last_error());
    fx_close(&f);
}
