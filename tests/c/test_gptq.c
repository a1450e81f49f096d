/* GPTQ: the column-by-column quantizer on small random problems (exact
 * identities and the reconstruction error against round-to-nearest), and
 * rtn:...,wq=gptq against rtn on the three fixture models. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/run.h"
#include "methods/methods.h"
#include "base/base.h"
#include "kern/kern.h"
#include "harness.h"

static uint64_t rng_state;
static double urand(void) { /* splitmix64 -> [0, 1) */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}
static double nrand(void) { /* Box-Muller */
    double u = urand() + 1e-300, v = urand();
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* A layer problem: weights (n_out, n_in), inputs (N, n_in) with correlated
 * channels of unequal scale (as activations are), H = X^T X. */
typedef struct {
    int n_out, n_in, N;
    float *w;
    double *x, *H;
} problem;

static void problem_free(problem *p) {
    free(p->w);
    free(p->x);
    free(p->H);
}

static int problem_new(problem *p, int n_out, int n_in, int N, uint64_t seed, int dead_col) {
    rng_state = seed;
    p->n_out = n_out, p->n_in = n_in, p->N = N;
    p->w = malloc((size_t)n_out * n_in * sizeof(float));
    p->x = malloc((size_t)N * n_in * sizeof(double));
    p->H = calloc((size_t)n_in * n_in, sizeof(double));
    double *mix = malloc((size_t)n_in * n_in * sizeof(double)), *z = malloc((size_t)n_in * sizeof(double));
    if (!p->w || !p->x || !p->H || !mix || !z) {
        free(mix);
        free(z);
        return 0;
    }
    for (size_t i = 0; i < (size_t)n_out * n_in; i++) p->w[i] = (float)(0.1 * nrand());
    for (int i = 0; i < n_in; i++)
        for (int j = 0; j < n_in; j++) mix[i * n_in + j] = (i == j) + 0.4 * nrand() / sqrt(n_in);
    for (int t = 0; t < N; t++) {
        for (int j = 0; j < n_in; j++) z[j] = nrand() * (1 + 4 * (j % 17 == 3));
        for (int i = 0; i < n_in; i++) {
            double s = 0;
            for (int j = 0; j < n_in; j++) s += mix[i * n_in + j] * z[j];
            p->x[(size_t)t * n_in + i] = i == dead_col ? 0 : s;
        }
    }
    for (int t = 0; t < N; t++)
        for (int i = 0; i < n_in; i++)
            for (int j = 0; j < n_in; j++) p->H[(size_t)i * n_in + j] += p->x[(size_t)t * n_in + i] * p->x[(size_t)t * n_in + j];
    free(mix);
    free(z);
    return 1;
}

/* ||(W - Q) X^T||_F: how far the layer's outputs move on its inputs. */
static double out_err(const problem *p, const float *q) {
    double e = 0;
    for (int r = 0; r < p->n_out; r++)
        for (int t = 0; t < p->N; t++) {
            double s = 0;
            for (int i = 0; i < p->n_in; i++)
                s += ((double)p->w[(size_t)r * p->n_in + i] - q[(size_t)r * p->n_in + i]) * p->x[(size_t)t * p->n_in + i];
            e += s * s;
        }
    return sqrt(e);
}

static float *gptq_of(const problem *p, const qs_gptq_opts *o, double *loss) {
    float *q = malloc((size_t)p->n_out * p->n_in * sizeof(float));
    double *H = malloc((size_t)p->n_in * p->n_in * sizeof(double));
    if (!q || !H) {
        free(q);
        free(H);
        return NULL;
    }
    memcpy(q, p->w, (size_t)p->n_out * p->n_in * sizeof(float));
    memcpy(H, p->H, (size_t)p->n_in * p->n_in * sizeof(double));
    qs_status st = qs_gptq_quantize(q, p->n_out, p->n_in, H, o, loss);
    free(H);
    if (st) {
        th_fail_at(__FILE__, __LINE__, "gptq: %s", qs_last_error());
        free(q);
        return NULL;
    }
    return q;
}

TEST(gptq_diagonal_hessian_is_rtn) {
    /* with uncorrelated inputs there is no error to spread: GPTQ rounds to
     * nearest, value for value, per row, per group and per column label */
    int n_out = 7, n_in = 200; /* two blocks of columns, a partial last group */
    float *w = malloc(sizeof(float) * n_out * n_in), *q = malloc(sizeof(float) * n_out * n_in),
          *r = malloc(sizeof(float) * n_out * n_in);
    double *H = malloc(sizeof(double) * n_in * n_in);
    int *lab = malloc(sizeof(int) * n_in);
    REQUIRE(w && q && r && H && lab, "out of memory");
    rng_state = 7;
    for (int i = 0; i < n_out * n_in; i++) w[i] = (float)nrand();
    for (int i = 0; i < n_in; i++) lab[i] = (i * 7) % 5;
    const int groups[] = {0, 48, 64};
    for (int gi = 0; gi < 3; gi++)
        for (int sym = 0; sym <= 1; sym++)
            for (int bits = 3; bits <= 4; bits++) {
                for (int i = 0; i < n_in * n_in; i++) H[i] = 0;
                for (int i = 0; i < n_in; i++) H[i * n_in + i] = 0.5 + urand();
                memcpy(q, w, sizeof(float) * n_out * n_in);
                qs_gptq_opts o = qs_gptq_defaults();
                o.bits = bits, o.group = groups[gi], o.sym = sym;
                REQUIRE(qs_gptq_quantize(q, n_out, n_in, H, &o, NULL) == QS_OK, "%s", qs_last_error());
                REQUIRE(qs_quant_weight_rtn(w, n_out, n_in, bits, groups[gi], sym, r) == QS_OK, "%s", qs_last_error());
                int diff = 0;
                for (int i = 0; i < n_out * n_in; i++) diff += q[i] != r[i];
                CHECK(diff == 0, "bits %d group %d sym %d: %d weights differ from round-to-nearest", bits, groups[gi], sym, diff);
            }
    /* labels: the RPTQ reference's output row x input cluster, on its grid */
    for (int i = 0; i < n_in * n_in; i++) H[i] = 0;
    for (int i = 0; i < n_in; i++) H[i * n_in + i] = 1;
    memcpy(q, w, sizeof(float) * n_out * n_in);
    qs_gptq_opts o = qs_gptq_defaults();
    o.bits = 4, o.grid = QS_GRID_RPTQ, o.col_group = lab, o.n_col_groups = 5;
    REQUIRE(qs_gptq_quantize(q, n_out, n_in, H, &o, NULL) == QS_OK, "%s", qs_last_error());
    REQUIRE(qs_quant_weight_groups(w, n_out, n_in, 4, 0, QS_GRID_RPTQ, lab, 5, r) == QS_OK, "%s", qs_last_error());
    int diff = 0;
    for (int i = 0; i < n_out * n_in; i++) diff += q[i] != r[i];
    CHECK(diff == 0, "labelled groups: %d weights differ from round-to-nearest", diff);
    free(w);
    free(q);
    free(r);
    free(H);
    free(lab);
}

TEST(gptq_beats_rtn_on_random_layers) {
    problem p;
    REQUIRE(problem_new(&p, 40, 160, 640, 11, -1), "out of memory");
    float *r = malloc(sizeof(float) * p.n_out * p.n_in);
    REQUIRE(r, "out of memory");
    const int groups[] = {0, 32};
    for (int bits = 3; bits <= 4; bits++)
        for (int gi = 0; gi < 2; gi++) {
            qs_gptq_opts o = qs_gptq_defaults();
            o.bits = bits, o.group = groups[gi];
            double loss;
            float *q = gptq_of(&p, &o, &loss);
            if (!q) break;
            REQUIRE(qs_quant_weight_rtn(p.w, p.n_out, p.n_in, bits, groups[gi], 0, r) == QS_OK, "%s", qs_last_error());
            double eg = out_err(&p, q), er = out_err(&p, r);
            printf("  W%d group %d: ||(W-Q)X^T|| GPTQ %.4g, RTN %.4g (ratio %.3f)\n", bits, groups[gi], eg, er, eg / er);
            CHECK(eg < 0.8 * er, "W%d group %d: GPTQ error %.4g is not well below RTN's %.4g", bits, groups[gi], eg, er);

            /* GPTQ's loss is exactly half the quadratic error under the damped H */
            double tr = 0, quad = 0;
            for (int i = 0; i < p.n_in; i++) tr += p.H[(size_t)i * p.n_in + i];
            double damp = 0.01 * tr / p.n_in;
            for (int rr = 0; rr < p.n_out; rr++)
                for (int i = 0; i < p.n_in; i++) {
                    double di = (double)q[rr * p.n_in + i] - p.w[rr * p.n_in + i], s = damp * di;
                    for (int j = 0; j < p.n_in; j++)
                        s += p.H[(size_t)i * p.n_in + j] * ((double)q[rr * p.n_in + j] - p.w[rr * p.n_in + j]);
                    quad += di * s;
                }
            CHECK(fabs(2 * loss - quad) <= 1e-8 * quad, "W%d group %d: loss %.10g, half the quadratic error %.10g",
                  bits, groups[gi], loss, quad / 2);
            free(q);
        }
    free(r);
    problem_free(&p);
}

TEST(gptq_dead_inputs) {
    /* an input that is always zero makes H singular; GPTQ sets its weights
     * to zero and the other columns do not notice it */
    problem p;
    REQUIRE(problem_new(&p, 12, 40, 200, 5, 9), "out of memory");
    qs_gptq_opts o = qs_gptq_defaults();
    o.bits = 4;
    float *q = gptq_of(&p, &o, NULL);
    REQUIRE(q, "gptq failed");
    int bad = 0, finite = 1;
    for (int r = 0; r < p.n_out; r++) {
        bad += q[r * p.n_in + 9] != 0;
        for (int i = 0; i < p.n_in; i++) finite &= isfinite(q[r * p.n_in + i]);
    }
    CHECK(bad == 0, "%d weights of the dead input are not zero", bad);
    CHECK(finite, "non-finite weights");
    free(q);
    qs_gptq_opts e = qs_gptq_defaults();
    e.bits = 9;
    double H[4] = {1, 0, 0, 1};
    float w[2] = {1, 2};
    CHECK(qs_gptq_quantize(w, 1, 2, H, &e, NULL) == QS_EARG, "9 bits accepted");
    problem_free(&p);
}

/* ---- on the fixtures ---- */

static double ppl_of(const qs_model *m, const qs_variant *v, const int32_t *ids, size_t n) {
    qs_ctx *c;
    if (qs_ctx_new(m, qs_variant_exec(v), 512, &c)) return NAN;
    qs_ppl_opts o = {.ctx = 512, .max_windows = 8};
    qs_ppl_result r;
    qs_status st = qs_eval_ppl(c, ids, (long)n, &o, &r);
    qs_ctx_free(c);
    return st ? NAN : r.ppl;
}

static void check_model(const char *name) {
    char p[128];
    snprintf(p, sizeof p, "models/%s", name);
    qs_model *m = NULL;
    REQUIRE(qs_model_load(th_path(p), NULL, &m) == QS_OK, "%s: %s", name, qs_last_error());
    char *text;
    size_t len;
    qs_calib cal;
    int32_t *held = NULL;
    size_t n_held = 0;
    REQUIRE(qs_io_read_all(th_path("data/calib.txt"), &text, &len) == QS_OK, "%s", qs_last_error());
    qs_status st = qs_calib_from_text(m->tok, text, len, 512, 16, &cal);
    free(text);
    REQUIRE(st == QS_OK, "%s", qs_last_error());
    REQUIRE(qs_io_read_all(th_path("data/heldout.txt"), &text, &len) == QS_OK, "%s", qs_last_error());
    st = qs_tok_encode(m->tok, text, len, 1, &held, &n_held);
    free(text);
    REQUIRE(st == QS_OK, "%s", qs_last_error());
    const char *pairs[][2] = {{"rtn:w=4", "rtn:w=4,wq=gptq"},
                              {"rtn:w=3,group=64", "rtn:w=3,group=64,wq=gptq"},
                              {"rtn:w=4,group=32,sym=1,grid=ggml", "rtn:w=4,group=32,sym=1,grid=ggml,wq=gptq"}};
    for (int k = 0; k < 3; k++) {
        double ppl[2] = {NAN, NAN};
        for (int j = 0; j < 2; j++) {
            qs_variant_opts o = {.calib = &cal};
            qs_variant *v;
            if (qs_variant_new(m, pairs[k][j], &o, &v)) {
                th_fail_at(__FILE__, __LINE__, "%s %s: %s", name, pairs[k][j], qs_last_error());
                continue;
            }
            ppl[j] = ppl_of(m, v, held, n_held);
            qs_variant_free(v);
        }
        printf("  %s: %s %.4f, %s %.4f\n", name, pairs[k][0], ppl[0], pairs[k][1], ppl[1]);
        CHECK(ppl[1] < ppl[0], "%s: %s gives %.4f, not below %s's %.4f", name, pairs[k][1], ppl[1], pairs[k][0], ppl[0]);
    }
    free(held);
    qs_calib_free(&cal);
    qs_model_free(m);
}

TEST(gptq_beats_rtn_opt) {
    NEED_SHARED();
    check_model("opt-mini");
}
TEST(gptq_beats_rtn_gpt2) {
    NEED_SHARED();
    check_model("gpt2-mini");
}
TEST(gptq_beats_rtn_llama) {
    NEED_SHARED();
    check_model("llama-mini");
}

/* GPTQ's codes written packed decode to exactly the values it returns, with
 * a full (correlated) Hessian, per row and per group of 32. */
TEST(gptq_packed_codes_decode_to_its_values) {
    int n_out = 9, n_in = 128;
    float *w = malloc(sizeof(float) * n_out * n_in), *q = malloc(sizeof(float) * n_out * n_in),
          *d = malloc(sizeof(float) * n_out * n_in);
    double *H = malloc(sizeof(double) * n_in * n_in), *X = malloc(sizeof(double) * 256 * n_in);
    REQUIRE(w && q && d && H && X, "out of memory");
    rng_state = 11;
    for (int i = 0; i < n_out * n_in; i++) w[i] = (float)nrand();
    for (int i = 0; i < 256 * n_in; i++) X[i] = nrand() + (i % n_in ? 0.5 * X[i - 1] : 0);
    const int lgs[3] = {0, 5, 5}; /* k = 2: llama.cpp's blocks of 32 (grid=ggml) */
    for (int k = 0; k < 3; k++)
        for (int bits = 4; bits <= 8; bits += 4) {
            for (int i = 0; i < n_in; i++)
                for (int j = 0; j < n_in; j++) {
                    double s = 0;
                    for (int t = 0; t < 256; t++) s += X[t * n_in + i] * X[t * n_in + j];
                    H[i * n_in + j] = s;
                }
            uint32_t type = k == 2 ? qs_ggml_type_of(bits, 1) : qs_wt_qg(bits, lgs[k]);
            uint8_t *p = malloc(qs_wtype_row_bytes(type, n_in) * n_out);
            memcpy(q, w, sizeof(float) * n_out * n_in);
            qs_gptq_opts o = qs_gptq_defaults();
            o.bits = bits, o.group = lgs[k] ? 1 << lgs[k] : 0, o.pack = p, o.pack_lg = lgs[k];
            if (k == 2) o.grid = QS_GRID_GGML, o.sym = 1;
            REQUIRE(qs_gptq_quantize(q, n_out, n_in, H, &o, NULL) == QS_OK, "%s", qs_last_error());
            qs_wrows_f32(type, p, n_in, 0, n_out, d);
            int diff = 0;
            for (int i = 0; i < n_out * n_in; i++) diff += d[i] != q[i];
            CHECK(diff == 0, "%d-bit, group %d: %d packed values differ from GPTQ's", bits, o.group, diff);
            free(p);
        }
    free(w);
    free(q);
    free(d);
    free(H);
    free(X);
}

TEST(gptq_kquant_super_blocks) {
    /* grid=q4_k / q6_k: llama.cpp's super-blocks of 256, each one's scales
     * taken at its first column from the weights as updated so far. The
     * values GPTQ returns are what its blocks decode to; with a diagonal H
     * nothing moves and the blocks are round-to-nearest's byte for byte; on
     * correlated inputs the layer's output error falls well below RTN's. */
    problem p;
    REQUIRE(problem_new(&p, 24, 512, 1024, 5, -1), "out of memory");
    size_t n = (size_t)p.n_out * p.n_in;
    float *r = malloc(sizeof(float) * n), *d = malloc(sizeof(float) * n);
    double *Hd = calloc((size_t)p.n_in * p.n_in, sizeof(double));
    REQUIRE(r && d && Hd, "out of memory");
    const qs_grid grids[2] = {QS_GRID_Q4_K, QS_GRID_Q6_K};
    for (int k = 0; k < 2; k++) {
        uint32_t type = k ? QS_WT_Q6_K : QS_WT_Q4_K;
        size_t bytes = qs_wtype_row_bytes(type, p.n_in) * p.n_out;
        uint8_t *pk = malloc(bytes), *pr = malloc(bytes);
        REQUIRE(pk && pr, "out of memory");
        qs_gptq_opts o = qs_gptq_defaults();
        o.bits = k ? 6 : 4, o.sym = k, o.grid = grids[k], o.pack = pk;
        qs_quant_pack_kq(p.w, p.n_out, p.n_in, type, pr, r);
        /* a diagonal H: round to nearest */
        for (int i = 0; i < p.n_in; i++) Hd[(size_t)i * p.n_in + i] = 0.5 + urand();
        float *q = malloc(sizeof(float) * n);
        REQUIRE(q, "out of memory");
        memcpy(q, p.w, sizeof(float) * n);
        REQUIRE(qs_gptq_quantize(q, p.n_out, p.n_in, Hd, &o, NULL) == QS_OK, "%s", qs_last_error());
        CHECK(!memcmp(pk, pr, bytes) && !memcmp(q, r, sizeof(float) * n), "%s: diagonal H is not round-to-nearest",
              k ? "q6_k" : "q4_k");
        free(q);
        /* correlated inputs */
        memset(pk, 0xAB, bytes); /* every byte is written */
        q = gptq_of(&p, &o, NULL);
        REQUIRE(q, "gptq");
        qs_wrows_f32(type, pk, p.n_in, 0, p.n_out, d);
        int diff = 0;
        for (size_t i = 0; i < n; i++) diff += d[i] != q[i];
        CHECK(diff == 0, "%s: %d packed values differ from GPTQ's", k ? "q6_k" : "q4_k", diff);
        double eg = out_err(&p, q), er = out_err(&p, r);
        printf("  %s: ||(W-Q)X^T|| GPTQ %.4g, RTN %.4g (ratio %.3f)\n", k ? "Q6_K" : "Q4_K", eg, er, eg / er);
        CHECK(eg < 0.8 * er, "%s: GPTQ error %.4g is not well below RTN's %.4g", k ? "q6_k" : "q4_k", eg, er);
        free(q);
        free(pk);
        free(pr);
    }
    /* no packed rows, or rows that are not whole super-blocks: refused */
    qs_gptq_opts o = qs_gptq_defaults();
    o.grid = QS_GRID_Q4_K;
    CHECK(qs_gptq_quantize(r, p.n_out, p.n_in, Hd, &o, NULL) == QS_EARG &&
              strstr(qs_last_error(), "super-blocks of 256"),
          "unpacked q4_k: %s", qs_last_error());
    o.pack = d;
    CHECK(qs_gptq_quantize(r, p.n_out, 320, Hd, &o, NULL) == QS_EARG && strstr(qs_last_error(), "320 columns"),
          "320 columns: %s", qs_last_error());
    free(r);
    free(d);
    free(Hd);
    problem_free(&p);
}
