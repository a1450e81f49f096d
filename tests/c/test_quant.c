/* Quantization grids, round-to-nearest weights, fake-quant of activations,
 * and the spec parser. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "methods/methods.h"
#include "harness.h"

TEST(quant_grid_roundtrip) {
    /* every representable level survives quantize-dequantize exactly, and
     * any value in range moves by at most half a step */
    for (int bits = 2; bits <= 8; bits++)
        for (int sym = 0; sym <= 1; sym++) {
            float lo = -1.3f, hi = 2.9f, s, z;
            qs_quant_params(lo, hi, bits, sym, QS_GRID_STD, &s, &z);
            int L = 1 << bits, qlo = sym ? -(L / 2 - 1) : 0, qhi = sym ? L / 2 - 1 : L - 1;
            for (int q = qlo; q <= qhi; q++) {
                float x = (q - z) * s;
                CHECK(qs_quant_fq(x, s, z, bits, sym, QS_GRID_STD) == x, "bits %d sym %d level %d", bits, sym, q);
            }
            double worst = 0;
            for (float x = lo; x <= hi; x += 0.001f) worst = fmax(worst, fabs(qs_quant_fq(x, s, z, bits, sym, QS_GRID_STD) - x));
            CHECK(worst <= s / 2 * (1 + 1e-5), "bits %d sym %d: error %.4g > half step %.4g", bits, sym, worst, s / 2);
            CHECK(qs_quant_fq(0.0f, s, z, bits, sym, QS_GRID_STD) == 0.0f, "zero not exact (bits %d sym %d)", bits, sym);
        }
}

TEST(quant_grid_rptq_reference) {
    /* the reference code's grid: scale (max-min)/2^b, signed levels, the
     * range maximum clipped one step down */
    float s, z;
    qs_quant_params(-1.0f, 3.0f, 4, 0, QS_GRID_RPTQ, &s, &z);
    CHECK(fabsf(s - 0.25f) < 1e-7f, "scale %g", s);
    CHECK(z == -4.0f, "zero %g", z);
    CHECK(qs_quant_fq(3.0f, s, z, 4, 0, QS_GRID_RPTQ) == 2.75f, "max maps to %g", qs_quant_fq(3.0f, s, z, 4, 0, QS_GRID_RPTQ));
    CHECK(qs_quant_fq(-1.0f, s, z, 4, 0, QS_GRID_RPTQ) == -1.0f, "min maps to %g", qs_quant_fq(-1.0f, s, z, 4, 0, QS_GRID_RPTQ));
    qs_quant_params(0.0f, 0.0f, 4, 0, QS_GRID_RPTQ, &s, &z);
    CHECK(s == 1e-4f, "scale clamped to 1e-4, got %g", s);
}

TEST(quant_weight_rtn_groups) {
    int n_out = 3, n_in = 70;
    float w[210], q[210];
    for (int i = 0; i < 210; i++) w[i] = (float)sin(i * 0.7) * (1 + (i % 70 == 5) * 9);
    REQUIRE(qs_quant_weight_rtn(w, n_out, n_in, 4, 32, 0, q) == QS_OK, "%s", qs_last_error());
    /* each group of 32 (and the tail of 6) has at most 16 distinct values,
     * and its own range: the outlier at column 5 does not widen group 2 */
    for (int r = 0; r < n_out; r++)
        for (int g0 = 0; g0 < n_in; g0 += 32) {
            int g1 = g0 + 32 < n_in ? g0 + 32 : n_in;
            float vals[32];
            int nv = 0;
            float lo = 1e9, hi = -1e9;
            for (int i = g0; i < g1; i++) {
                float x = q[r * n_in + i];
                int seen = 0;
                for (int k = 0; k < nv; k++) seen |= vals[k] == x;
                if (!seen && nv < 32) vals[nv++] = x;
                lo = fminf(lo, fminf(w[r * n_in + i], 0));
                hi = fmaxf(hi, fmaxf(w[r * n_in + i], 0));
            }
            CHECK(nv <= 16, "row %d group %d: %d levels", r, g0 / 32, nv);
            float step = (hi - lo) / 15;
            for (int i = g0; i < g1; i++)
                CHECK(fabsf(q[r * n_in + i] - w[r * n_in + i]) <= step / 2 * 1.0001f, "row %d col %d error", r, i);
        }
    REQUIRE(qs_quant_weight_rtn(w, n_out, n_in, 9, 0, 0, q) == QS_EARG, "9 bits accepted");
    CHECK(qs_quant_weight_bytes(4096, 4096, 4, 128, 1) == 4096LL * 4096 / 2 + 4096LL * 32 * 4, "bytes");
    CHECK(qs_quant_weight_bytes(10, 10, 16, 0, 0) == 400, "fp32 bytes");
}

TEST(quant_act_modes) {
    int n = 4, dim = 9;
    float x[36], y[36];
    for (int i = 0; i < 36; i++) x[i] = (float)cos(i * 1.3) * (i / 9 + 1);
    /* per token: each row's own range */
    memcpy(y, x, sizeof x);
    qs_actq qt = {.bits = 3, .mode = QS_AQ_TOKEN};
    qs_quant_act(&qt, y, n, dim);
    for (int r = 0; r < n; r++) {
        float lo = 0, hi = 0, s, z;
        for (int i = 0; i < dim; i++) {
            lo = fminf(lo, x[r * dim + i]);
            hi = fmaxf(hi, x[r * dim + i]);
        }
        qs_quant_params(lo, hi, 3, 0, QS_GRID_STD, &s, &z);
        for (int i = 0; i < dim; i++)
            CHECK(y[r * dim + i] == qs_quant_fq(x[r * dim + i], s, z, 3, 0, QS_GRID_STD), "token mode row %d", r);
    }
    /* static per channel equals per token when given the same numbers */
    float sc[9], zp[9];
    for (int i = 0; i < dim; i++) qs_quant_params(-2, 2, 4, 0, QS_GRID_STD, &sc[i], &zp[i]);
    qs_actq qs = {.bits = 4, .mode = QS_AQ_STATIC, .scale = sc, .zero = zp};
    memcpy(y, x, sizeof x);
    qs_quant_act(&qs, y, n, dim);
    for (int i = 0; i < 36; i++) CHECK(y[i] == qs_quant_fq(x[i], sc[0], zp[0], 4, 0, QS_GRID_STD), "static %d", i);
    /* 16 bits and mode 0 are off */
    qs_actq off = {.bits = 16, .mode = QS_AQ_TOKEN};
    memcpy(y, x, sizeof x);
    qs_quant_act(&off, y, n, dim);
    CHECK(!memcmp(x, y, sizeof x), "16 bits changed values");
}

TEST(spec_parse_and_canonical) {
    qs_spec s;
    REQUIRE(qs_spec_parse("fp32", &s) == QS_OK && s.n == 1 && !strcmp(s.text, "fp32"), "fp32: %s", qs_last_error());
    REQUIRE(qs_spec_parse("rtn:w=4,group=128", &s) == QS_OK, "%s", qs_last_error());
    CHECK(s.steps[0].w_bits == 4 && s.steps[0].w_group == 128 && s.steps[0].a_bits == 16, "rtn fields");
    CHECK(!strcmp(s.text, "rtn:w=4,group=128"), "canonical '%s'", s.text);
    REQUIRE(qs_spec_parse("rptq:W4A4KV", &s) == QS_OK, "%s", qs_last_error());
    CHECK(s.steps[0].w_bits == 4 && s.steps[0].a_bits == 16 && s.steps[0].kv_bits == 4, "W4A4KV is weights 4 + KV 4");
    REQUIRE(qs_spec_parse("rptq:W4A8", &s) == QS_OK, "%s", qs_last_error());
    CHECK(s.steps[0].a_bits == 8 && s.steps[0].kv_bits == 8, "W4A8 quantizes the KV cache too");
    REQUIRE(qs_spec_parse("slice:ratio=0.25+int8", &s) == QS_OK, "%s", qs_last_error());
    CHECK(s.n == 2 && s.steps[0].method == QS_M_SLICE && s.steps[1].method == QS_M_INT8, "chain");
    CHECK(fabsf(s.steps[0].ratio - 0.25f) < 1e-7f && s.steps[1].threshold == 6.0f, "chain values");
    CHECK(!strcmp(s.text, "slice:ratio=0.25+int8:threshold=6"), "canonical '%s'", s.text);
    REQUIRE(qs_spec_parse("int8:threshold=0", &s) == QS_OK && s.steps[0].threshold == 0, "threshold 0");
    REQUIRE(qs_spec_parse("rptq:g=8,g_mlp_mid=16,norm_a=8", &s) == QS_OK, "%s", qs_last_error());
    CHECK(s.steps[0].g == 8 && s.steps[0].g_site[QS_SITE_MLP_MID] == 16 && s.steps[0].norm_a == 8, "rptq knobs");
    /* act= is part of a KV-only spec: per-tensor K/V scales are not the per-token default */
    REQUIRE(qs_spec_parse("rtn:kv=8,act=tensor", &s) == QS_OK, "%s", qs_last_error());
    CHECK(!strcmp(s.text, "rtn:act=tensor,kv=8"), "canonical '%s' drops act=tensor", s.text);
    /* canonical text parses back to the same canonical text */
    const char *specs[] = {"rtn:w=3,group=32,sym=1,a=4,act=tensor,kv=8", "rptq:w=4,a=4,kv=4,g=32", "slice",
                           "int8:act=tensor", "rptq:W3A3KV"};
    for (int i = 0; i < 5; i++) {
        qs_spec a, b;
        REQUIRE(qs_spec_parse(specs[i], &a) == QS_OK, "%s: %s", specs[i], qs_last_error());
        REQUIRE(qs_spec_parse(a.text, &b) == QS_OK, "%s: %s", a.text, qs_last_error());
        CHECK(!strcmp(a.text, b.text), "'%s' -> '%s' -> '%s'", specs[i], a.text, b.text);
    }
}

/* The method table: every key's default is what a spec without it gets, and
 * every key set to a value other than its default is written back in the
 * canonical text and parses to the same step. */
TEST(method_table_keys_round_trip) {
    int n_keys = 0;
    for (int i = 0; i < qs_method_count(); i++) {
        const qs_method_def *d = qs_method_at(i);
        REQUIRE(d && qs_method_find(d->name) == d && qs_method_of(d->id) == d, "method %d: lookups disagree", i);
        /* the least a spec of the method needs (rtn must quantize something;
         * its act= scales activations only when there are some) */
        const char *base = d->id == QS_M_RTN ? "w=4,a=8" : "";
        for (int j = 0; j < d->n_keys; j++) {
            const qs_method_key *k = &d->keys[j];
            char spec[128];
            qs_spec a, b;
            snprintf(spec, sizeof spec, "%s%s%s", d->name, *base ? ":" : "", base);
            REQUIRE(qs_spec_parse(spec, &a) == QS_OK, "%s: %s", spec, qs_last_error());
            double got = qs_method_key_get(k, &a.steps[0]);
            char given[40], listed[64];
            snprintf(given, sizeof given, ",%s=", k->name);
            snprintf(listed, sizeof listed, ",%s", base);
            if (!(k->kind == QS_KEY_BITS && k->def == 0) && !strstr(listed, given))
                CHECK(got == k->def, "%s: key %s is %g without it, its default is %g", spec, k->name, got, k->def);
            /* another value: the next word, a bit width of 3, or a number inside the range */
            char val[32];
            if (k->kind == QS_KEY_WORD) {
                const char *bar = strchr(k->words, '|');
                REQUIRE(bar, "%s.%s: one word", d->name, k->name);
                snprintf(val, sizeof val, "%s", k->def == 0 ? bar + 1 : k->words);
                if (k->def != 0) val[bar - k->words] = 0;
            } else if (k->kind == QS_KEY_BITS) snprintf(val, sizeof val, "3");
            else if (k->kind == QS_KEY_BOOL) snprintf(val, sizeof val, "%d", k->def == 0);
            else snprintf(val, sizeof val, "%g", k->def == k->hi ? k->lo : k->kind == QS_KEY_INT ? k->def + 1 : (k->def + k->hi) / 2);
            snprintf(spec, sizeof spec, "%s:%s%s%s=%s", d->name, base, *base ? "," : "", k->name, val);
            if (qs_spec_parse(spec, &a) != QS_OK) continue; /* a rule between keys (wgroups=cluster needs w) */
            CHECK(qs_method_key_get(k, &a.steps[0]) != k->def, "%s: the value did not take", spec);
            REQUIRE(qs_spec_parse(a.text, &b) == QS_OK, "%s -> %s: %s", spec, a.text, qs_last_error());
            CHECK(!memcmp(&a.steps[0], &b.steps[0], sizeof a.steps[0]), "%s -> %s parses to another step", spec, a.text);
            n_keys++;
        }
    }
    CHECK(n_keys >= 20, "only %d keys checked", n_keys);
    /* a method's alias names it; the canonical text uses its name */
    qs_spec s;
    REQUIRE(qs_spec_parse("slicegpt:ratio=0.2+llm.int8", &s) == QS_OK, "%s", qs_last_error());
    CHECK(!strcmp(s.text, "slice:ratio=0.2+int8:threshold=6"), "aliases: '%s'", s.text);
    CHECK(!qs_method_find("slice:") && !qs_method_find("slicegp") && !qs_method_find("llm"), "a prefix is no alias");
    char help[8192];
    size_t len = qs_methods_help(help, sizeof help);
    CHECK(len < sizeof help && strstr(help, "threshold|tau") && strstr(help, "ratio|s"), "help lists keys and aliases");
}

TEST(spec_errors_name_the_problem) {
    struct {
        const char *spec, *needle;
    } bad[] = {
        {"rptq:w=5x", "'w' expects an integer, got '5x'"},
        {"rptq:w=9", "9 bits"},
        {"rptq:g=0", "out of range"},
        {"rpqt", "unknown method 'rpqt'"},
        {"int8:threshold=-1", "out of range"},
        {"slice:ratio=1.5", "out of range"},
        {"rtn", "quantizes nothing"},
        {"rtn:w=4,act=channel", "'act' is tensor or token"},
        {"fp32:w=4", "takes no options"},
        {"int8:w=4", "unknown key 'w'"},
        {"", "empty"},
        {"rptq:", "nothing after"},
        {"rptq:g_head_in=4", "not 'head_in'"},
        /* malformed: the spec again and a caret under the fault */
        {"slice:ratio=0.25+", "nothing after '+'\n  slice:ratio=0.25+\n                  ^"},
        {"+rtn:w=4", "nothing before '+'\n  +rtn:w=4\n  ^"},
        {"rtn:w=4,,a=8", "an empty option before ','\n  rtn:w=4,,a=8\n          ^"},
        {"int8:threshold=6,", "nothing after ','\n  int8:threshold=6,\n                  ^"},
        {"rtn:w=4,a=8,w=8", "'w' is given twice\n  rtn:w=4,a=8,w=8\n              ^"},
        {"int8:tau=3,threshold=6", "'threshold' is given twice"},
        {"rptq:g_q=4,g_q=8", "'g_q' is given twice"},
        {"rtn:w=4,zz=3", "unknown key 'zz' for rtn\n  rtn:w=4,zz=3\n          ^"},
        {"rtn:w=4,a=99", "out of range [2, 16]\n  rtn:w=4,a=99\n            ^"},
        {"slice:ratio=0.2+rpqt", "unknown method 'rpqt' (fp32, rtn, int8, rptq, slice)\n  slice:ratio=0.2+rpqt\n                  ^"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qs_spec s;
        CHECK(qs_spec_parse(bad[i].spec, &s) == QS_EARG, "'%s' accepted", bad[i].spec);
        CHECK(strstr(qs_last_error(), bad[i].needle), "'%s': message '%s' lacks '%s'", bad[i].spec, qs_last_error(),
              bad[i].needle);
    }
}

TEST(quant_act_token_groups) {
    /* per token and group: each (row, group) gets the range of its own values */
    int n = 3, dim = 10, G = 3;
    int32_t grp[10] = {0, 1, 2, 0, 1, 2, 2, 2, 0, 1};
    float x[30], y[30];
    for (int i = 0; i < 30; i++) x[i] = (float)sin(i * 0.9) * (i % 10 == 4 ? 40 : 1);
    memcpy(y, x, sizeof x);
    qs_actq q = {.bits = 4, .mode = QS_AQ_TOKEN, .group = grp, .n_groups = G};
    qs_quant_act(&q, y, n, dim);
    for (int r = 0; r < n; r++)
        for (int g = 0; g < G; g++) {
            float lo = INFINITY, hi = -INFINITY, s, z;
            for (int i = 0; i < dim; i++)
                if (grp[i] == g) {
                    lo = fminf(lo, x[r * dim + i]);
                    hi = fmaxf(hi, x[r * dim + i]);
                }
            qs_quant_params(lo, hi, 4, 0, QS_GRID_STD, &s, &z);
            for (int i = 0; i < dim; i++)
                if (grp[i] == g)
                    CHECK(y[r * dim + i] == qs_quant_fq(x[r * dim + i], s, z, 4, 0, QS_GRID_STD), "row %d channel %d", r, i);
        }
    /* the outlier channel (4, group 1) does not coarsen groups 0 and 2 */
    double err0 = 0;
    for (int r = 0; r < n; r++)
        for (int i = 0; i < dim; i++)
            if (grp[i] != 1) err0 = fmax(err0, fabs(y[r * dim + i] - x[r * dim + i]));
    CHECK(err0 < 0.1, "groups without the outlier have error %.3g", err0);
}

TEST(quant_pack_ggml_blocks) {
    /* llama.cpp's block grids, checked value by value against their
     * definitions: Q8_0 d = fp16(absmax/127), code round(x/d) with the fp32 d;
     * Q4_0 d = fp16(m/-8) for m the value of largest magnitude (which lands on
     * level -8), codes 0..15 for levels -8..7; Q4_1 d = fp16((hi-lo)/15), the
     * offset fp16(lo); every block decodes within half a step of its input (Q4_0: one step on
     * the side it clips) */
    enum { ROWS = 3, N = 96 };
    float w[ROWS * N];
    uint64_t seed = 7;
    for (int i = 0; i < ROWS * N; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        w[i] = (float)((double)(seed >> 11) / 9007199254740992.0 - 0.5) * (i % 7 ? 1.0f : 6.0f);
    }
    w[5] = 0; /* one block with a zero among its values; a constant block below */
    for (int i = 0; i < 32; i++) w[N + 32 + i] = 0.25f;
    const uint32_t types[3] = {QS_WT_Q8_0, QS_WT_Q4_0, QS_WT_Q4_1};
    for (int t = 0; t < 3; t++) {
        uint32_t type = types[t];
        size_t rb = qs_wtype_row_bytes(type, N);
        uint8_t *p = malloc(rb * ROWS);
        float *dq = malloc(sizeof(float) * ROWS * N);
        REQUIRE(p && dq, "alloc");
        qs_quant_pack_ggml(w, ROWS, N, type, p);
        for (int r = 0; r < ROWS; r++) REQUIRE(qs_ggml_dequant(type, p + r * rb, dq + r * N, N) == 1, "decode");
        for (int b = 0; b < ROWS * N / 32; b++) {
            const float *x = w + b * 32;
            float lo = x[0], hi = x[0], amax = 0, m = 0;
            for (int j = 0; j < 32; j++) {
                lo = fminf(lo, x[j]);
                hi = fmaxf(hi, x[j]);
                if (fabsf(x[j]) > amax) amax = fabsf(x[j]), m = x[j];
            }
            float d = type == QS_WT_Q8_0 ? amax / 127 : type == QS_WT_Q4_0 ? m / -8 : (hi - lo) / 15;
            float dh = qs_quant_f16(d), step = fabsf(dh);
            for (int j = 0; j < 32; j++) {
                float got = dq[b * 32 + j], want;
                if (type == QS_WT_Q8_0) want = dh * roundf(x[j] * (d ? 1 / d : 0));
                else if (type == QS_WT_Q4_0) want = dh * (fminf(15, (float)(int)(x[j] * (d ? 1 / d : 0) + 8.5f)) - 8);
                else want = dh * fminf(15, (float)(int)((x[j] - lo) * (d ? 1 / d : 0) + 0.5f)) + qs_quant_f16(lo);
                CHECK(got == want, "type %u block %d value %d: %.9g decodes to %.9g, want %.9g", type, b, j, x[j], got, want);
                /* Q4_0 clips the side opposite m by up to one step (level 7 against -8) */
                float bound = (type == QS_WT_Q4_0 ? 1.0f : 0.5f) * step * 1.01f + fabsf(x[j]) * 2e-3f;
                CHECK(fabsf(got - x[j]) <= bound, "type %u block %d value %d: %.6g -> %.6g",
                      type, b, j, x[j], got);
            }
            for (int j = 0; type == QS_WT_Q4_0 && j < 32; j++) /* the largest magnitude is level -8 */
                if (x[j] == m && m != 0) CHECK(dq[b * 32 + j] == -8 * dh, "block %d: %g -> %g", b, m, dq[b * 32 + j]);
        }
        free(p);
        free(dq);
    }
    CHECK(qs_ggml_type_of(4, 1) == QS_WT_Q4_0 && qs_ggml_type_of(8, 1) == QS_WT_Q8_0 && qs_ggml_type_of(4, 0) == QS_WT_Q4_1 &&
              qs_ggml_type_of(8, 0) == 0 && qs_ggml_type_of(3, 1) == 0,
          "ggml types of (bits, sym)");
}

/* the largest |x| of n values */
static float amax_of(const float *x, int n) {
    float a = 0;
    for (int i = 0; i < n; i++) a = fmaxf(a, fabsf(x[i]));
    return a;
}

TEST(quant_pack_kquant_blocks) {
    /* llama.cpp's Q4_K and Q6_K super-blocks: what the encoder says it stores
     * is what ggml's decoding (kern/ggml_quant.c) reads, bit for bit; each
     * value decodes to the nearest level of its sub-block's stored grid (the
     * end level when the fitted grid clips it, by at most two steps). Rows of
     * Gaussian-like values whose spread changes by sub-block, a few outliers,
     * a zero super-block, a constant one and a constant negative sub-block. */
    enum { ROWS = 3, N = 512 };
    float *w = malloc(sizeof(float) * ROWS * N), *vals = malloc(sizeof(float) * ROWS * N),
          *dq = malloc(sizeof(float) * ROWS * N);
    REQUIRE(w && vals && dq, "alloc");
    uint64_t seed = 11;
    for (int i = 0; i < ROWS * N; i++) {
        double u = 0;
        for (int k = 0; k < 4; k++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            u += (double)(seed >> 11) / 9007199254740992.0 - 0.5;
        }
        float spread = 0.02f * (float)(1 + (i / 32) % 5);
        w[i] = (float)u * spread * (i % 97 == 3 ? 8.0f : 1.0f) + (i / 64 % 3 == 1 ? 0.01f : 0);
    }
    for (int i = 0; i < 256; i++) w[N + i] = 0;            /* row 1, super-block 0: zeros */
    for (int i = 0; i < 256; i++) w[N + 256 + i] = 0.125f; /* row 1, super-block 1: a constant */
    for (int i = 0; i < 32; i++) w[2 * N + 64 + i] = -0.05f; /* row 2: a constant negative sub-block */
    const uint32_t types[2] = {QS_WT_Q4_K, QS_WT_Q6_K};
    for (int t = 0; t < 2; t++) {
        uint32_t type = types[t];
        size_t rb = qs_wtype_row_bytes(type, N), bb = rb / (N / 256);
        CHECK(rb == (type == QS_WT_Q4_K ? 288u : 420u), "type %u: %zu bytes a row", type, rb);
        uint8_t *p = calloc(rb, ROWS);
        REQUIRE(p, "alloc");
        qs_quant_pack_kq(w, ROWS, N, type, p, vals);
        for (int r = 0; r < ROWS; r++) REQUIRE(qs_ggml_dequant(type, p + r * rb, dq + r * N, N) == 1, "decode");
        double se = 0, sx = 0, worst = 0;
        int bad = 0;
        for (int b = 0; b < ROWS * N / 256; b++) {
            const uint8_t *blk = p + b * bb;
            float d = qs_f16_to_f32((uint16_t)(type == QS_WT_Q4_K ? blk[0] | blk[1] << 8 : blk[208] | blk[209] << 8));
            float dmin = type == QS_WT_Q4_K ? qs_f16_to_f32((uint16_t)(blk[2] | blk[3] << 8)) : 0;
            for (int j = 0; j < 256; j++) {
                int i = b * 256 + j;
                if (memcmp(&vals[i], &dq[i], sizeof(float)) && bad++ < 5)
                    CHECK(0, "type %u value %d: the encoder says %.9g, ggml decodes %.9g", type, i, vals[i], dq[i]);
                int s, mn = 0;
                if (type == QS_WT_Q4_K) { /* the sub-block's 6-bit scale and min, as k4_scale_min reads them */
                    int sb = j / 32;
                    const uint8_t *q = blk + 4;
                    s = sb < 4 ? q[sb] & 63 : (q[sb + 4] & 0x0F) | (q[sb - 4] >> 6) << 4;
                    mn = sb < 4 ? q[sb + 4] & 63 : (q[sb + 4] >> 4) | (q[sb] >> 6) << 4;
                } else {
                    s = (int8_t)blk[192 + j / 16];
                }
                /* the sub-block's grid: its step and the values of its lowest and highest codes */
                float step = fabsf(d * s), off = type == QS_WT_Q4_K ? dmin * mn : 0;
                float ends[2] = {type == QS_WT_Q4_K ? -off : d * s * -32, type == QS_WT_Q4_K ? d * s * 15 - off : d * s * 31};
                float lo = fminf(ends[0], ends[1]), hi = fmaxf(ends[0], ends[1]), e = fabsf(dq[i] - w[i]);
                int ok;
                if (step == 0) ok = dq[i] == ends[0];
                else if (w[i] < lo || w[i] > hi) ok = fabsf(dq[i] - (w[i] < lo ? lo : hi)) <= step * 1e-4f; /* clipped */
                else ok = e <= step * (0.5f + 1e-4f);
                worst = fmax(worst, e / (step + dmin / 2 + 1e-12));
                if (!ok && bad++ < 5)
                    CHECK(0, "type %u value %d: %.6g decodes to %.6g, not the nearest level of [%.6g, %.6g] by %.3g",
                          type, i, w[i], dq[i], lo, hi, step);
                /* and the grid spans the values: clipping costs at most two steps (plus half the min's grid) */
                if (e > 2 * step + dmin / 2 + fabsf(w[i]) * 1e-3f + 1e-7f && bad++ < 5)
                    CHECK(0, "type %u value %d: %.6g decodes to %.6g, a step %.3g (dmin %.3g)", type, i, w[i], dq[i],
                          step, dmin);
                se += (double)e * e;
                sx += (double)w[i] * w[i];
            }
        }
        CHECK(!bad, "type %u: %d values wrong", type, bad);
        for (int i = 0; i < 256; i++) CHECK(dq[N + i] == 0, "type %u: the zero super-block decodes %g", type, dq[N + i]);
        CHECK(fabsf(dq[N + 256] - 0.125f) <= 0.125f * 2e-3f, "type %u: 0.125 decodes to %g", type, dq[N + 256]);
        printf("  %s: relative rms error %.4f, worst error %.2f steps (Q4_K: step + dmin/2), |w| max %.3g\n",
               type == QS_WT_Q4_K ? "Q4_K" : "Q6_K", sqrt(se / sx), worst, amax_of(w, ROWS * N));
        /* a block put value by value decodes as the packed row does */
        uint8_t blk[210];
        qs_kq_block_scales(type, w, blk);
        for (int j = 255; j >= 0; j--) CHECK(qs_kq_block_put(type, blk, j, w[j]) == vals[j], "put %d", j);
        CHECK(!memcmp(blk, p, bb), "type %u: the block put in reverse order differs", type);
        free(p);
    }
    free(w);
    free(vals);
    free(dq);
}

TEST(quant_pack_kquant_as_llama_cpp) {
    /* The blocks are llama.cpp's reference quantizers' (quantize_row_q4_K_ref,
     * quantize_row_q6_K_ref, which llama-quantize runs without an importance
     * matrix), byte for byte: the hashes of 64 super-blocks as ggml wrote them
     * from these values (a zero super-block and a zero sub-block among them).
     * Contracted multiply-adds would change the roundings, so only where the
     * build has none. */
#if defined(__x86_64__) && !defined(__FMA__)
    enum { NB = 64 };
    float *x = malloc(sizeof(float) * 256 * NB);
    uint8_t *p = malloc(210 * NB);
    REQUIRE(x && p, "alloc");
    uint64_t s = 3;
    for (int i = 0; i < 256 * NB; i++) {
        double u = 0;
        for (int k = 0; k < 4; k++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            u += (double)(s >> 11) / 9007199254740992.0 - 0.5;
        }
        x[i] = (float)u * 0.03f * (float)(1 + (i / 16) % 7) * (i % 61 == 7 ? 9.0f : 1.0f) + (i / 256 % 2 ? 0.01f : 0);
    }
    for (int i = 0; i < 256; i++) x[256 * 5 + i] = 0;
    for (int i = 0; i < 32; i++) x[256 * 6 + 64 + i] = 0;
    const uint64_t want[2] = {0xe2e8d34d93a07d9eULL, 0x916a84af56580987ULL};
    for (int t = 0; t < 2; t++) {
        uint32_t type = t ? QS_WT_Q6_K : QS_WT_Q4_K;
        size_t n = qs_wtype_row_bytes(type, 256) * NB;
        qs_quant_pack_kq(x, NB, 256, type, p, NULL);
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
        CHECK(h == want[t], "%s: blocks hash to %016llx, llama.cpp's to %016llx", t ? "Q6_K" : "Q4_K",
              (unsigned long long)h, (unsigned long long)want[t]);
    }
    free(x);
    free(p);
#else
    printf("  skipped: contracted multiply-adds may round otherwise here\n");
#endif
}
