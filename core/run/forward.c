/* The forward pass, top to bottom: embed, then per block
 *   attention:  a = o( attn( rope(qnorm(q(norm1 x))), rope(knorm(k(norm1 x))), v(norm1 x) ) )
 *   MLP:        f = down( act(up(norm2 x)) | act(gate(norm2 x)) * up(norm2 x) )
 * joined to the residual as the config says (qs_resid: sequential pre-norm,
 * parallel, or post-norm; optional norms on a and f), then the final norm,
 * the head and an optional logit soft-cap. Every family is a description
 * (model/fam_*.c) this one pass follows. Linear layers are GEMMs over all
 * rows of the batch (GEMV for a single row); attention works per head on
 * blocks of queries so the causal upper triangle is mostly skipped. */
#include "run/run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"


#define QBLOCK 128 /* query rows per attention block */

struct qs_ctx {
    const qs_model *m;
    qs_exec x;                  /* x.w is never NULL here */
    int capacity, pos;
    int d, qd, kvd, hd, dff;    /* widest residual, q, kv, head, MLP */
    int rd;                     /* rotated channels per head */
    float *kc, *vc;             /* (n_layers, capacity, kvd) */
    float *rope_cos, *rope_sin; /* (capacity, rd/2) */
    float *long_cos, *long_sin; /* longrope past orig_max: the long factors' table, or NULL */
    /* scratch, grown to the largest batch seen */
    int rows;
    float *res;    /* (rows, d) residual stream */
    float *res2;   /* (rows, d) residual after a SliceGPT shortcut */
    float *xn;     /* (rows, d) normed input / final hidden */
    float *q;      /* (rows, qd) */
    float *att;    /* (rows, qd) */
    float *tmp;    /* (rows, d) */
    float *tmp2;   /* (rows, d) the MLP's output in a parallel block */
    float *ff;     /* (rows, dff) */
    float *ff2;    /* (rows, dff) */
    float *scores;     /* (score_threads, QBLOCK, capacity) */
    int score_threads; /* the pool's threads when it was made */
    int last_n;    /* rows of the last call (xn holds their final hidden) */
    int last_d;    /* width of the final hidden */
    int *kcounts;     /* (n_layers, 4) the most a kernel counted in one call, or NULL */
    qs_status failed; /* a kernel's failure inside the pass (its scratch) */
    const qs_lin_kernel *kscratch_of[4]; /* the kernels with a scratch here */
    void *kscratch[4];                   /* one scratch per kernel, shared by its layers */
    qs_observe_fn obs;
    void *obs_ud;
};

static const char *const site_names[QS_SITE_COUNT] = {
    "attn_in", "q", "k", "v", "attn_out", "mlp_in", "mlp_mid", "head_in", "resid", "resid_mid", "embed",
};

const char *qs_site_name(qs_site s) { return (unsigned)s < QS_SITE_COUNT ? site_names[s] : "?"; }

int qs_site_parse(const char *s) {
    for (int i = 0; i < QS_SITE_COUNT; i++)
        if (strcmp(s, site_names[i]) == 0) return i;
    return -1;
}

long long qs_ctx_kv_bytes_per_token(const qs_model *m) {
    return 2LL * m->cfg.n_layers * m->cfg.n_kv_heads * m->cfg.head_dim * (long long)sizeof(float);
}

static void *xalloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

static int maxi(int a, int b) { return a > b ? a : b; }

/* cos and sin (capacity, rd/2) for a pass of seq_len positions, as
 * transformers computes them: the angle p * inv_freq in float32, then
 * cos/sin times the kind's attention factor. */
static void rope_table(const qs_config *cfg, int rd, int capacity, int seq_len, float *cs, float *sn) {
    int half = rd / 2;
    float inv[half > 0 ? half : 1];
    float k = qs_rope_inv_freq(cfg, seq_len, inv);
    for (int p = 0; p < capacity; p++)
        for (int i = 0; i < half; i++) {
            float a = (float)p * inv[i];
            cs[(size_t)p * half + i] = cosf(a) * k;
            sn[(size_t)p * half + i] = sinf(a) * k;
        }
}

qs_status qs_ctx_new(const qs_model *m, const qs_exec *x, int capacity, qs_ctx **out) {
    *out = NULL;
    const qs_config *cfg = &m->cfg;
    if (capacity <= 0) capacity = cfg->max_pos;
    if (capacity > cfg->max_pos)
        return qs_fail(QS_EARG, "context of %d tokens is longer than the model allows (%d)", capacity,
                       cfg->max_pos);
    qs_ctx *c = calloc(1, sizeof *c);
    if (!c) return qs_fail(QS_ENOMEM, "out of memory");
    c->m = m;
    if (x) c->x = *x;
    if (!c->x.w) c->x.w = &m->w;
    const qs_weights *w = c->x.w;
    c->capacity = capacity;
    c->hd = cfg->head_dim;
    c->qd = cfg->n_heads * cfg->head_dim;
    c->kvd = cfg->n_kv_heads * cfg->head_dim;
    /* a sliced model's widths vary per layer; size the scratch for the widest */
    c->d = maxi(cfg->d_model, w->d_embed);
    c->dff = cfg->d_ff;
    int any_kern = w->head.kern != NULL;
    for (int l = 0; l < cfg->n_layers; l++) {
        const qs_layer *L = &w->layers[l];
        c->d = maxi(c->d, maxi(L->attn_norm.dim, maxi(L->o.n_out, L->down.n_out)));
        c->dff = maxi(c->dff, L->up.n_out);
        qs_linear *ls[QS_LAYER_LINEARS];
        int nl = qs_layer_linears((qs_layer *)L, 0, ls);
        for (int j = 0; j < nl; j++) any_kern |= ls[j]->kern != NULL;
    }
    if (any_kern && !(c->kcounts = calloc((size_t)cfg->n_layers * 4, sizeof(int)))) goto oom;
    size_t kv = (size_t)cfg->n_layers * capacity * c->kvd;
    c->kc = xalloc(kv * sizeof(float));
    c->vc = xalloc(kv * sizeof(float));
    c->score_threads = qs_pool_threads();
    c->scores = xalloc((size_t)c->score_threads * QBLOCK * capacity * sizeof(float));
    if (!c->kc || !c->vc || !c->scores) goto oom;
    if (cfg->rope_theta > 0) {
        c->rd = cfg->rope.dim > 0 ? cfg->rope.dim : c->hd;
        size_t tab = (size_t)capacity * (c->rd / 2) * sizeof(float);
        c->rope_cos = xalloc(tab);
        c->rope_sin = xalloc(tab);
        if (!c->rope_cos || !c->rope_sin) goto oom;
        if (cfg->rope.kind == QS_ROPE_LONGROPE && capacity > cfg->rope.orig_max) {
            /* a pass reaching past orig_max switches to the long factors */
            c->long_cos = xalloc(tab);
            c->long_sin = xalloc(tab);
            if (!c->long_cos || !c->long_sin) goto oom;
            rope_table(cfg, c->rd, capacity, cfg->rope.orig_max + 1, c->long_cos, c->long_sin);
            rope_table(cfg, c->rd, capacity, cfg->rope.orig_max, c->rope_cos, c->rope_sin);
        } else {
            rope_table(cfg, c->rd, capacity, capacity, c->rope_cos, c->rope_sin);
        }
    }
    *out = c;
    return QS_OK;
oom:
    qs_ctx_free(c);
    return qs_fail(QS_ENOMEM, "out of memory for a context of %d tokens", capacity);
}

static void free_scratch(qs_ctx *c) {
    free(c->res);
    free(c->res2);
    free(c->xn);
    free(c->q);
    free(c->att);
    free(c->tmp);
    free(c->tmp2);
    free(c->ff);
    free(c->ff2);
    c->res = c->res2 = c->xn = c->q = c->att = c->tmp = c->tmp2 = c->ff = c->ff2 = NULL;
    c->rows = 0;
}

void qs_ctx_free(qs_ctx *c) {
    if (!c) return;
    free_scratch(c);
    free(c->kc);
    free(c->vc);
    free(c->scores);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c->long_cos);
    free(c->long_sin);
    free(c->kcounts);
    for (int i = 0; i < 4 && c->kscratch_of[i]; i++)
        if (c->kscratch_of[i]->scratch_free) c->kscratch_of[i]->scratch_free(c->kscratch[i]);
    free(c);
}

void qs_ctx_reset(qs_ctx *c) {
    c->pos = 0;
    c->last_n = 0;
}
int qs_ctx_pos(const qs_ctx *c) { return c->pos; }
int qs_ctx_capacity(const qs_ctx *c) { return c->capacity; }
const qs_model *qs_ctx_model(const qs_ctx *c) { return c->m; }

void qs_ctx_observe(qs_ctx *c, qs_observe_fn fn, void *ud) {
    c->obs = fn;
    c->obs_ud = ud;
}

static qs_status grow(qs_ctx *c, int n) {
    if (n <= c->rows) return QS_OK;
    free_scratch(c);
    size_t r = (size_t)n;
    int gated = 0;
    for (int l = 0; l < c->m->cfg.n_layers; l++) gated |= qs_linear_has(&c->x.w->layers[l].gate);
    c->res = xalloc(r * c->d * sizeof(float));
    c->res2 = xalloc(r * c->d * sizeof(float));
    c->xn = xalloc(r * c->d * sizeof(float));
    c->q = xalloc(r * c->qd * sizeof(float));
    c->att = xalloc(r * c->qd * sizeof(float));
    c->tmp = xalloc(r * c->d * sizeof(float));
    int par = c->m->cfg.resid == QS_RESID_PARALLEL;
    c->tmp2 = par ? xalloc(r * c->d * sizeof(float)) : NULL;
    c->ff = xalloc(r * c->dff * sizeof(float));
    c->ff2 = gated ? xalloc(r * c->dff * sizeof(float)) : NULL;
    if (!c->res || !c->res2 || !c->xn || !c->q || !c->att || !c->tmp || !c->ff || (gated && !c->ff2) ||
        (par && !c->tmp2)) {
        free_scratch(c);
        return qs_fail(QS_ENOMEM, "out of memory for a batch of %d tokens", n);
    }
    c->rows = n;
    return QS_OK;
}

/* Observers see a site's values before its quantizer: they calibrate it. */
#define SITE(layer, site, ptr, dim)                                                      \
    do {                                                                                 \
        if (c->obs) c->obs(c->obs_ud, (layer), (site), (ptr), n, (dim), pos0);           \
        if (c->x.aq) qs_quant_act(&c->x.aq[(size_t)(layer) * QS_SITE_COUNT + (site)], (ptr), n, (dim)); \
    } while (0)

/* y (n, nm->dim) = the norm of x (y may be x when nm has no perm). */
static void norm(const qs_ctx *c, const qs_norm *nm, const float *x, int n, float *y) {
    const qs_config *cfg = &c->m->cfg;
    int kind = nm->kind ? nm->kind : (int)cfg->norm;
    if (kind == QS_NORM_LAYER)
        qs_ops_layernorm(x, n, nm->dim, nm->w, nm->b, cfg->norm_eps, nm->perm, y);
    else
        qs_ops_rmsnorm(x, n, nm->dim, nm->div ? nm->div : nm->dim, nm->w, cfg->norm_eps, nm->perm, y);
}

/* The context's scratch for kernel k (made on first use; NULL when k needs
 * none or there is no memory, which the kernel then reports). */
static void *kernel_scratch(qs_ctx *c, const qs_lin_kernel *k) {
    if (!k->scratch_new) return NULL;
    int i = 0;
    while (i < 4 && c->kscratch_of[i] && c->kscratch_of[i] != k) i++;
    if (i == 4) return NULL;
    if (!c->kscratch_of[i]) {
        c->kscratch[i] = k->scratch_new();
        if (!c->kscratch[i]) return NULL;
        c->kscratch_of[i] = k;
    }
    return c->kscratch[i];
}

/* a linear without a kernel as qs_wlinear takes it: weights as stored, or fp32 weights held in
 * memory as QS_WT_F32, the way weights stored in fp32 go (so that a model written out in f32 and
 * read back gives the same logits bit for bit) */
static qs_wmat wmat_of(const qs_linear *l, float *y) {
    return l->w ? (qs_wmat){QS_WT_F32, l->w, l->b, l->n_out, y} : (qs_wmat){l->wtype, l->wq, l->b, l->n_out, y};
}

/* y (n, l->n_out) = x l^T through the layer's kernel; which = 0..3 names the
 * input site for the kernels' counts (attn_in, attn_out, mlp_in, mlp_mid). */
static void linear(qs_ctx *c, int layer, int which, const qs_linear *l, const float *x, int n, float *y) {
    if (l->kern) {
        /* the context's scratch serves every layer of that kernel in the pass;
         * the layers themselves are only read, so contexts run them at once */
        int count = 0;
        qs_status s = l->kern->run(l->kdata, x, n, y, kernel_scratch(c, l->kern), &count);
        if (s) { /* only out of memory: leave zeros rather than garbage */
            memset(y, 0, (size_t)n * l->n_out * sizeof(float));
            c->failed = s;
        }
        if (c->kcounts && layer >= 0) {
            int *slot = &c->kcounts[layer * 4 + which];
            *slot = count > *slot ? count : *slot;
        }
        return;
    }
    qs_wmat m = wmat_of(l, y);
    qs_status s = qs_wlinear_multi(x, n, 1, &m, l->n_in);
    if (s) {
        memset(y, 0, (size_t)n * l->n_out * sizeof(float));
        c->failed = s;
    }
}

/* k linears on the same x (n rows): one pool run, x rounded once, when none
 * runs through a kernel (a layer's q, k and v; gate and up), else in turn. */
static void linears(qs_ctx *c, int layer, int which, int k, const qs_linear *const *ls, const float *x, int n,
                    float *const *ys) {
    qs_wmat m[QS_WMAT_MULTI];
    int batch = k <= QS_WMAT_MULTI;
    for (int i = 0; i < k && batch; i++) {
        batch = !ls[i]->kern && (ls[i]->w || ls[i]->wq) && ls[i]->n_in == ls[0]->n_in;
        m[i] = wmat_of(ls[i], ys[i]);
    }
    if (!batch) {
        for (int i = 0; i < k; i++) linear(c, i ? -1 : layer, which, ls[i], x, n, ys[i]);
        return;
    }
    qs_status s = qs_wlinear_multi(x, n, k, m, ls[0]->n_in);
    if (s) {
        for (int i = 0; i < k; i++) memset(ys[i], 0, (size_t)n * ls[i]->n_out * sizeof(float));
        c->failed = s;
    }
}

/* The attention scores' scale: the config's, or 1/sqrt(head_dim). */
static float attn_scale(const qs_ctx *c) {
    return c->m->cfg.attn_scale > 0 ? c->m->cfg.attn_scale : 1.0f / sqrtf((float)c->hd);
}

/* Causal attention of head h's n query rows (positions pos0..pos0+n-1)
 * over the cache rows 0..pos0+n-1 of one layer, into c->att; S holds
 * (QBLOCK, capacity) scores. */
static void attend_head(qs_ctx *c, int layer, int h, int n, int pos0, float *S) {
    const qs_config *cfg = &c->m->cfg;
    int hd = c->hd, group = cfg->n_heads / cfg->n_kv_heads, win = qs_layer_window(cfg, layer);
    float scale = c->x.q_scaled ? 1.0f : attn_scale(c), cap = cfg->attn_softcap;
    float levels = (float)c->x.prob_levels;
    const float *kc = c->kc + (size_t)layer * c->capacity * c->kvd;
    const float *vc = c->vc + (size_t)layer * c->capacity * c->kvd;
    int g = h / group;
    for (int b0 = 0; b0 < n; b0 += QBLOCK) {
        int nb = n - b0 < QBLOCK ? n - b0 : QBLOCK;
        int T = pos0 + b0 + nb; /* keys visible to the block's last row */
        const float *qh = c->q + (size_t)b0 * c->qd + h * hd;
        if (nb == 1) { /* one query (decode): its window only, no BLAS call */
            int end = T, start = win > 0 && end > win ? end - win : 0;
            for (int j = start; j < end; j++) S[j] = scale * qs_ops_dot(qh, kc + (size_t)j * c->kvd + g * hd, hd);
        } else {
            qs_blas_gemm_nt(nb, T, hd, scale, qh, c->qd, kc + g * hd, c->kvd, 0.0f, S, T);
        }
        for (int i = 0; i < nb; i++) {
            float *row = S + (size_t)i * T;
            int end = pos0 + b0 + i + 1; /* causal: keys [start, end) */
            int start = win > 0 && end > win ? end - win : 0;
            if (cap > 0) /* soft-cap: c tanh(s / c), before the mask */
                for (int j = start; j < end; j++) row[j] = tanhf(row[j] / cap) * cap;
            qs_ops_softmax_row(row + start, end - start);
            if (levels > 0 && c->x.prob_fp16) { /* float16 P, rounded to the grid in float16 arithmetic */
                float tiny = 0.499f / levels; /* below it the float16 steps cannot reach half a level */
                for (int j = start; j < end; j++)
                    row[j] = row[j] < tiny ? 0.0f : qs_quant_f16(rintf(qs_quant_f16(qs_quant_f16(row[j]) * levels)) / levels);
            } else if (levels > 0) /* P on a grid of 1/levels */
                for (int j = start; j < end; j++) row[j] = rintf(row[j] * levels) / levels;
            if (start) memset(row, 0, (size_t)start * sizeof(float));
            if (end < T) memset(row + end, 0, (size_t)(T - end) * sizeof(float));
        }
        float *out = c->att + (size_t)b0 * c->qd + h * hd;
        if (nb == 1) {
            int start = win > 0 && T > win ? T - win : 0;
            memset(out, 0, (size_t)hd * sizeof(float));
            for (int j = start; j < T; j++) qs_ops_axpy(out, S[j], vc + (size_t)j * c->kvd + g * hd, hd);
        } else {
            qs_blas_gemm_nn(nb, hd, T, 1.0f, S, T, vc + g * hd, c->kvd, 0.0f, out, c->qd);
        }
    }
}

typedef struct {
    qs_ctx *c;
    int layer, n, pos0;
} attn_job;

static void attn_task(void *ud, int h, int thread) {
    const attn_job *j = ud;
    attend_head(j->c, j->layer, h, j->n, j->pos0, j->c->scores + (size_t)thread * QBLOCK * j->c->capacity);
}

/* Causal attention of n query rows (positions pos0..pos0+n-1) over the cache
 * rows 0..pos0+n-1 of one layer; result (n, qd) into c->att. Many rows: the
 * heads on the pool's threads (each its own scores; the BLAS held to one
 * thread meanwhile), one row: in turn. */
static void attention(qs_ctx *c, int layer, int n, int pos0) {
    int heads = c->m->cfg.n_heads, threads = qs_pool_threads();
    if (n > 1 && threads > 1 && c->score_threads >= threads) {
        attn_job j = {c, layer, n, pos0};
        qs_pool_run_blas1(heads, attn_task, &j);
        return;
    }
    for (int h = 0; h < heads; h++) attend_head(c, layer, h, n, pos0, c->scores);
}

/* The residual after a sublayer: *x += sub (n rows of d), through SliceGPT's
 * shortcut first when the block has one (the residual changes basis and
 * width: *x2 receives it and the two buffers swap), then through `after`
 * (a post-norm block's norm) when given; observers see the result. */
static void residual(qs_ctx *c, const qs_linear *skip, float **x, float **x2, const float *sub, int n, int d,
                     int layer, qs_site site, int pos0, const qs_norm *after) {
    if (qs_linear_has(skip)) {
        linear(c, -1, 0, skip, *x, n, *x2);
        float *t = *x;
        *x = *x2;
        *x2 = t;
    }
    qs_ops_add(*x, sub, (size_t)n * d);
    if (after) norm(c, after, *x, n, *x);
    if (c->obs) c->obs(c->obs_ud, layer, site, *x, n, d, pos0);
}

static void activation(qs_act act, float *x, size_t len) {
    switch (act) {
    case QS_ACT_RELU: qs_ops_relu(x, len); break;
    case QS_ACT_GELU_TANH: qs_ops_gelu_tanh(x, len); break;
    case QS_ACT_GELU: qs_ops_gelu_erf(x, len); break;
    case QS_ACT_SILU: qs_ops_silu(x, len); break;
    }
}

/* SwiGLU over many rows on the pool's threads, in slices of SWIGLU_TASK */
enum { SWIGLU_TASK = 1 << 15 };
typedef struct {
    float *a;
    const float *g;
    size_t len;
} swiglu_job;

static void swiglu_task(void *ud, int task, int thread) {
    (void)thread;
    const swiglu_job *j = ud;
    size_t i0 = (size_t)task * SWIGLU_TASK, n = j->len - i0 < SWIGLU_TASK ? j->len - i0 : SWIGLU_TASK;
    qs_ops_swiglu(j->a + i0, j->g + i0, n);
}

static void swiglu(float *a, const float *g, size_t len) {
    if (len < 4 * SWIGLU_TASK || qs_pool_threads() < 2) {
        qs_ops_swiglu(a, g, len);
        return;
    }
    swiglu_job j = {a, g, len};
    qs_pool_run((int)((len + SWIGLU_TASK - 1) / SWIGLU_TASK), swiglu_task, &j);
}

/* out (n, down.n_out) = the MLP of c->xn (n, its input width). */
static void mlp(qs_ctx *c, int l, const qs_layer *L, int n, float *out, int pos0) {
    const qs_config *cfg = &c->m->cfg;
    int dff = L->up.n_out;
    size_t nf = (size_t)n * dff;
    const qs_linear *up_gate[2] = {&L->up, &L->gate};
    float *const up_gate_out[2] = {c->ff, c->ff2};
    linears(c, l, 2, qs_linear_has(&L->gate) ? 2 : 1, up_gate, c->xn, n, up_gate_out);
    if (qs_linear_has(&L->gate)) { /* gated: act(gate) * up */
        if (cfg->act == QS_ACT_SILU) {
            swiglu(c->ff, c->ff2, nf);
        } else {
            activation(cfg->act, c->ff2, nf);
            qs_ops_mul(c->ff, c->ff2, nf);
        }
    } else {
        activation(cfg->act, c->ff, nf);
    }
    SITE(l, QS_SITE_MLP_MID, c->ff, dff);
    linear(c, l, 3, &L->down, c->ff, n, out);
}

/* Norm each head's slice of rows (n, heads * hd) in place. */
static void head_norm(const qs_ctx *c, const qs_norm *nm, float *x, int n, int heads) {
    if (nm->dim) norm(c, nm, x, n * heads, x);
}

/* Block l on the residual rows *x (n, the block's input width) at positions
 * pos0..: its keys and values go to the cache, *x ends as the block's output.
 * A SliceGPT shortcut writes into *x2 and swaps the two buffers. */
static void block(qs_ctx *c, int l, float **xp, float **x2p, int n, int pos0) {
    const qs_config *cfg = &c->m->cfg;
    const qs_weights *w = c->x.w;
    float *x = *xp, *x2 = *x2p;
    const qs_layer *L = &w->layers[l];
    float *kdst = c->kc + ((size_t)l * c->capacity + pos0) * c->kvd;
    float *vdst = c->vc + ((size_t)l * c->capacity + pos0) * c->kvd;
    int d_in = L->attn_norm.dim, d_mid = L->o.n_out, d_out = L->down.n_out;
    int post = cfg->resid == QS_RESID_POST;

    /* attention */
    if (post) memcpy(c->xn, x, (size_t)n * d_in * sizeof(float));
    else norm(c, &L->attn_norm, x, n, c->xn);
    SITE(l, QS_SITE_ATTN_IN, c->xn, d_in);
    const qs_linear *qkv[3] = {&L->q, &L->k, &L->v};
    float *const qkv_out[3] = {c->q, kdst, vdst};
    linears(c, l, 0, 3, qkv, c->xn, n, qkv_out);
    head_norm(c, &L->q_norm, c->q, n, cfg->n_heads);
    head_norm(c, &L->k_norm, kdst, n, cfg->n_kv_heads);
    if (c->rope_cos) {
        int half = c->rd / 2, far = c->long_cos && pos0 + n > cfg->rope.orig_max;
        const float *ct = far ? c->long_cos : c->rope_cos, *st = far ? c->long_sin : c->rope_sin;
        for (int i = 0; i < n; i++) {
            const float *cs = ct + (size_t)(pos0 + i) * half;
            const float *sn = st + (size_t)(pos0 + i) * half;
            qs_ops_rope(c->q + (size_t)i * c->qd, cfg->n_heads, c->hd, c->rd, cs, sn);
            qs_ops_rope(kdst + (size_t)i * c->kvd, cfg->n_kv_heads, c->hd, c->rd, cs, sn);
        }
    }
    if (c->obs) c->obs(c->obs_ud, l, QS_SITE_Q, c->q, n, c->qd, pos0);
    if (c->x.q_scaled) {
        float sc = attn_scale(c);
        for (size_t i = 0; i < (size_t)n * c->qd; i++) c->q[i] *= sc;
    }
    if (c->x.aq) qs_quant_act(&c->x.aq[(size_t)l * QS_SITE_COUNT + QS_SITE_Q], c->q, n, c->qd);
    SITE(l, QS_SITE_K, kdst, c->kvd); /* quantized in the cache: the KV cache's precision */
    SITE(l, QS_SITE_V, vdst, c->kvd);
    attention(c, l, n, pos0);
    SITE(l, QS_SITE_ATTN_OUT, c->att, c->qd);
    linear(c, l, 1, &L->o, c->att, n, c->tmp);
    if (L->post_attn_norm.dim) norm(c, &L->post_attn_norm, c->tmp, n, c->tmp);

    if (cfg->resid == QS_RESID_PARALLEL) { /* x += attn(norm1 x) + mlp(norm2 x) */
        norm(c, &L->mlp_norm, x, n, c->xn);
        SITE(l, QS_SITE_MLP_IN, c->xn, d_in);
        mlp(c, l, L, n, c->tmp2, pos0);
        qs_ops_add(c->tmp, c->tmp2, (size_t)n * d_out);
        residual(c, &L->mlp_skip, &x, &x2, c->tmp, n, d_out, l, QS_SITE_RESID, pos0, NULL);
        *xp = x;
        *x2p = x2;
        return;
    }
    residual(c, &L->attn_skip, &x, &x2, c->tmp, n, d_mid, l, QS_SITE_RESID_MID, pos0, post ? &L->attn_norm : NULL);

    /* MLP */
    if (post) memcpy(c->xn, x, (size_t)n * d_mid * sizeof(float));
    else norm(c, &L->mlp_norm, x, n, c->xn);
    SITE(l, QS_SITE_MLP_IN, c->xn, d_mid);
    mlp(c, l, L, n, c->tmp, pos0);
    if (L->post_mlp_norm.dim) norm(c, &L->post_mlp_norm, c->tmp, n, c->tmp);
    residual(c, &L->mlp_skip, &x, &x2, c->tmp, n, d_out, l, QS_SITE_RESID, pos0, post ? &L->mlp_norm : NULL);
    *xp = x;
    *x2p = x2;
}

qs_status qs_forward(qs_ctx *c, const int32_t *ids, int n, float *logits, qs_logits_mode mode) {
    const qs_config *cfg = &c->m->cfg;
    const qs_weights *w = c->x.w;
    if (n <= 0) return qs_fail(QS_EARG, "forward: no tokens");
    int pos0 = c->pos;
    if (pos0 + n > c->capacity)
        return qs_fail(QS_EARG, "forward: %d tokens after %d cached exceed the context of %d", n, pos0,
                       c->capacity);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cfg->vocab)
            return qs_fail(QS_EARG, "forward: token id %d at position %d is outside the vocabulary (%d)",
                           ids[i], pos0 + i, cfg->vocab);
    qs_status st = grow(c, n);
    if (st) return st;
    c->failed = QS_OK;

    /* embeddings: token rows (through project_in when narrower), scaled, plus positions */
    int d = w->d_embed ? w->d_embed : cfg->d_model;
    int proj = qs_linear_has(&w->proj_in), de = proj ? w->proj_in.n_in : d;
    float *x = c->res, *x2 = c->res2, *e = proj ? c->tmp : x;
    for (int i = 0; i < n; i++) qs_embed_row(w, ids[i], de, e + (size_t)i * de);
    if (proj) linear(c, -1, 0, &w->proj_in, e, n, x);
    if (cfg->embed_scale > 0)
        for (size_t i = 0; i < (size_t)n * d; i++) x[i] *= cfg->embed_scale;
    if (w->pos_embed)
        for (int i = 0; i < n; i++)
            qs_ops_add(x + (size_t)i * d, w->pos_embed + (size_t)(pos0 + i + cfg->pos_offset) * d, (size_t)d);
    if (c->obs) c->obs(c->obs_ud, 0, QS_SITE_EMBED, x, n, d, pos0);

    int n_run = c->x.stop_layer > 0 && c->x.stop_layer < cfg->n_layers ? c->x.stop_layer : cfg->n_layers;
    for (int l = 0; l < n_run; l++) block(c, l, &x, &x2, n, pos0);

    if (c->failed) return c->failed; /* the kernel set the message */
    if (n_run < cfg->n_layers) {
        c->pos = pos0 + n;
        c->last_n = 0; /* no head rows */
        return mode == QS_LOGITS_NONE ? QS_OK : qs_fail(QS_EARG, "forward: no logits from a pass stopped at layer %d", n_run);
    }

    int dh = w->layers[cfg->n_layers - 1].down.n_out;
    if (w->final_norm.dim) norm(c, &w->final_norm, x, n, c->xn);
    else memcpy(c->xn, x, (size_t)n * dh * sizeof(float));
    if (qs_linear_has(&w->proj_out)) { /* OPT-350m: back to the embedding width */
        linear(c, -1, 0, &w->proj_out, c->xn, n, c->tmp);
        dh = w->proj_out.n_out;
        memcpy(c->xn, c->tmp, (size_t)n * dh * sizeof(float));
    }
    SITE(cfg->n_layers, QS_SITE_HEAD_IN, c->xn, dh);
    c->pos = pos0 + n;
    c->last_n = n;
    c->last_d = dh;

    if (mode == QS_LOGITS_ALL) return qs_ctx_head_rows(c, 0, n, logits);
    if (mode == QS_LOGITS_LAST) return qs_ctx_head_rows(c, n - 1, 1, logits);
    return QS_OK;
}

qs_status qs_forward_blocks(qs_ctx *c, int first, int last, const float *x, int n, float *y) {
    const qs_config *cfg = &c->m->cfg;
    const qs_weights *w = c->x.w;
    if (first < 0 || last > cfg->n_layers || first >= last)
        return qs_fail(QS_EARG, "forward: blocks [%d, %d) outside the model's %d", first, last, cfg->n_layers);
    if (n <= 0) return qs_fail(QS_EARG, "forward: no rows");
    int pos0 = c->pos;
    if (pos0 + n > c->capacity)
        return qs_fail(QS_EARG, "forward: %d rows after %d cached exceed the context of %d", n, pos0, c->capacity);
    qs_status st = grow(c, n);
    if (st) return st;
    c->failed = QS_OK;
    float *a = c->res, *b = c->res2;
    memcpy(a, x, (size_t)n * w->layers[first].attn_norm.dim * sizeof(float));
    for (int l = first; l < last; l++) block(c, l, &a, &b, n, pos0);
    if (c->failed) return c->failed;
    memcpy(y, a, (size_t)n * w->layers[last - 1].down.n_out * sizeof(float));
    c->pos = pos0 + n;
    c->last_n = 0;
    return QS_OK;
}

qs_status qs_ctx_head_rows(qs_ctx *c, int row0, int count, float *logits) {
    if (row0 < 0 || count <= 0 || row0 + count > c->last_n)
        return qs_fail(QS_EARG, "head rows [%d, %d) outside the last batch of %d", row0, row0 + count,
                       c->last_n);
    c->failed = QS_OK;
    const qs_linear *h = &c->x.w->head;
    linear(c, -1, 0, h, c->xn + (size_t)row0 * c->last_d, count, logits);
    float cap = c->m->cfg.logit_softcap;
    if (cap > 0)
        for (size_t i = 0; i < (size_t)count * h->n_out; i++) logits[i] = tanhf(logits[i] / cap) * cap;
    return c->failed;
}

void qs_ctx_kernel_clear(qs_ctx *c) {
    if (c->kcounts) memset(c->kcounts, 0, (size_t)c->m->cfg.n_layers * 4 * sizeof(int));
}

const int *qs_ctx_kernel_counts(const qs_ctx *c, int layer) {
    return c->kcounts ? c->kcounts + (size_t)layer * 4 : NULL;
}
