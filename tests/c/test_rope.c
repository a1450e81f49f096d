/* RoPE's inverse frequencies for every scaling kind against the formulas of
 * transformers' modeling_rope_utils, written out here in double. */
#include <math.h>
#include <string.h>

#include "model/model.h"
#include "harness.h"

static qs_config base_cfg(qs_rope_kind kind, int dim) {
    qs_config c;
    memset(&c, 0, sizeof c);
    c.head_dim = 64;
    c.max_pos = 4096;
    c.rope_theta = 500000.0f;
    c.rope.kind = kind;
    c.rope.dim = dim;
    return c;
}

static double plain(const qs_config *c, int i) { return 1.0 / pow(c->rope_theta, 2.0 * i / c->rope.dim); }

/* the largest relative difference between the core's table and want[] */
static double worst(const qs_config *c, int seq_len, const double *want, float *attn) {
    float inv[256];
    *attn = qs_rope_inv_freq(c, seq_len, inv);
    double w = 0;
    for (int i = 0; i < c->rope.dim / 2; i++) {
        double e = fabs(inv[i] - want[i]) / want[i];
        if (e > w) w = e;
    }
    return w;
}

TEST(rope_default_linear_dynamic) {
    double want[128];
    float a;
    qs_config c = base_cfg(QS_ROPE_DEFAULT, 48); /* partial: 48 of 64 */
    for (int i = 0; i < 24; i++) want[i] = plain(&c, i);
    CHECK(worst(&c, 100, want, &a) < 2e-6 && a == 1.0f, "default: %g", worst(&c, 100, want, &a));
    c = base_cfg(QS_ROPE_LINEAR, 64);
    c.rope.factor = 4;
    for (int i = 0; i < 32; i++) want[i] = plain(&c, i) / 4;
    CHECK(worst(&c, 100, want, &a) < 2e-6, "linear: %g", worst(&c, 100, want, &a));
    /* dynamic NTK: the base grows only past max_pos */
    c = base_cfg(QS_ROPE_DYNAMIC, 64);
    c.rope.factor = 2;
    for (int i = 0; i < 32; i++) want[i] = plain(&c, i);
    CHECK(worst(&c, 4096, want, &a) < 2e-6, "dynamic within max_pos: %g", worst(&c, 4096, want, &a));
    double base = 500000.0 * pow(2.0 * 8192 / 4096 - 1, 64.0 / 62);
    for (int i = 0; i < 32; i++) want[i] = 1.0 / pow(base, 2.0 * i / 64);
    CHECK(worst(&c, 8192, want, &a) < 2e-6, "dynamic at twice max_pos: %g", worst(&c, 8192, want, &a));
}

TEST(rope_llama3) {
    qs_config c = base_cfg(QS_ROPE_LLAMA3, 64);
    c.rope.factor = 8;
    c.rope.low_freq = 1;
    c.rope.high_freq = 4;
    c.rope.orig_max = 8192;
    double want[32];
    int seen[3] = {0, 0, 0};
    for (int i = 0; i < 32; i++) {
        double f = plain(&c, i), wave = 2 * M_PI / f, lo = 8192.0 / 1, hi = 8192.0 / 4;
        if (wave < hi) want[i] = f, seen[0]++;
        else if (wave > lo) want[i] = f / 8, seen[2]++;
        else {
            double s = (8192.0 / wave - 1) / (4 - 1);
            want[i] = (1 - s) * f / 8 + s * f;
            seen[1]++;
        }
    }
    float a;
    CHECK(seen[0] && seen[1] && seen[2], "the test covers all three bands: %d %d %d", seen[0], seen[1], seen[2]);
    CHECK(worst(&c, 100, want, &a) < 2e-6 && a == 1.0f, "llama3: %g", worst(&c, 100, want, &a));
}

TEST(rope_yarn) {
    qs_config c = base_cfg(QS_ROPE_YARN, 64);
    c.rope_theta = 10000.0f;
    c.rope.factor = 4;
    c.rope.orig_max = 1024;
    c.rope.beta_fast = 32;
    c.rope.beta_slow = 1;
    double lo = floor(64 * log(1024 / (32 * 2 * M_PI)) / (2 * log(10000.0)));
    double hi = ceil(64 * log(1024 / (1 * 2 * M_PI)) / (2 * log(10000.0)));
    if (lo < 0) lo = 0;
    if (hi > 63) hi = 63;
    double want[32];
    for (int i = 0; i < 32; i++) {
        double f = plain(&c, i), ramp = (i - lo) / (hi - lo);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        double extra = 1 - ramp;
        want[i] = f / 4 * (1 - extra) + f * extra;
    }
    float a;
    CHECK(worst(&c, 100, want, &a) < 2e-6, "yarn: %g", worst(&c, 100, want, &a));
}

TEST(rope_longrope) {
    qs_config c = base_cfg(QS_ROPE_LONGROPE, 32);
    c.rope.orig_max = 4096;
    c.max_pos = 131072;
    for (int i = 0; i < 16; i++) {
        c.rope.short_factor[i] = 1.0f + 0.01f * i;
        c.rope.long_factor[i] = 1.0f + 0.5f * i;
    }
    double s[16], l[16];
    for (int i = 0; i < 16; i++) {
        s[i] = plain(&c, i) / c.rope.short_factor[i];
        l[i] = plain(&c, i) / c.rope.long_factor[i];
    }
    float a;
    CHECK(worst(&c, 4096, s, &a) < 2e-6, "longrope up to orig_max uses the short factors: %g", worst(&c, 4096, s, &a));
    CHECK(worst(&c, 4097, l, &a) < 2e-6, "longrope past orig_max uses the long factors: %g", worst(&c, 4097, l, &a));
}
