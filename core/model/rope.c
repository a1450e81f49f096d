/* rope.c — RoPE's inverse frequencies for each kind of rope scaling, in the
 * order and precision transformers' modeling_rope_utils computes them
 * (float32 tensors, python doubles for the scalars). */
#include <math.h>

#include "model/model.h"

const char *qs_rope_kind_str(qs_rope_kind k) {
    switch (k) {
    case QS_ROPE_NONE: return "none";
    case QS_ROPE_DEFAULT: return "default";
    case QS_ROPE_LINEAR: return "linear";
    case QS_ROPE_DYNAMIC: return "dynamic";
    case QS_ROPE_YARN: return "yarn";
    case QS_ROPE_LLAMA3: return "llama3";
    case QS_ROPE_LONGROPE: return "longrope";
    case QS_ROPE_DIVISORS: return "divisors";
    }
    return "?";
}

/* theta^(2i/dim) in float32, as base ** (arange(0, dim, 2).float() / dim) */
static float pos_freq(double theta, int i, int dim) {
    return powf((float)theta, (float)(2 * i) / (float)dim);
}

static double yarn_dim(double rotations, int dim, double base, int max_pos) {
    return dim * log(max_pos / (rotations * 2 * M_PI)) / (2 * log(base));
}

float qs_rope_inv_freq(const qs_config *c, int seq_len, float *inv) {
    const qs_rope *r = &c->rope;
    int dim = r->dim, half = dim / 2;
    double theta = c->rope_theta;
    float attn = 1.0f;
    switch (r->kind) {
    case QS_ROPE_NONE:
    case QS_ROPE_DEFAULT:
        for (int i = 0; i < half; i++) inv[i] = 1.0f / pos_freq(theta, i, dim);
        break;
    case QS_ROPE_LINEAR:
        for (int i = 0; i < half; i++) inv[i] = 1.0f / pos_freq(theta, i, dim) / r->factor;
        break;
    case QS_ROPE_DYNAMIC: {
        /* the base grows only once the sequence is longer than max_pos */
        double len = seq_len > c->max_pos ? seq_len : c->max_pos;
        double base = theta * pow(r->factor * len / c->max_pos - (r->factor - 1), (double)dim / (dim - 2));
        for (int i = 0; i < half; i++) inv[i] = 1.0f / pos_freq(base, i, dim);
        break;
    }
    case QS_ROPE_YARN: {
        double lo = floor(yarn_dim(r->beta_fast, dim, theta, r->orig_max));
        double hi = ceil(yarn_dim(r->beta_slow, dim, theta, r->orig_max));
        if (lo < 0) lo = 0;
        if (hi > dim - 1) hi = dim - 1;
        if (lo == hi) hi += 0.001;
        for (int i = 0; i < half; i++) {
            float p = pos_freq(theta, i, dim);
            float extra = 1.0f / p, inter = 1.0f / ((float)r->factor * p);
            float ramp = ((float)i - (float)lo) / (float)(hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float keep = 1.0f - ramp; /* weight of extrapolation */
            inv[i] = inter * (1.0f - keep) + extra * keep;
        }
        attn = r->attn_factor;
        break;
    }
    case QS_ROPE_LLAMA3: {
        float lo_wave = (float)(r->orig_max / (double)r->low_freq);
        float hi_wave = (float)(r->orig_max / (double)r->high_freq);
        for (int i = 0; i < half; i++) {
            float f = 1.0f / pos_freq(theta, i, dim);
            float wave = (1.0f / f) * (float)(2 * M_PI); /* torch: scalar / t is t.reciprocal() * scalar */
            float scaled = wave > lo_wave ? f / r->factor : f;
            if (!(wave < hi_wave) && !(wave > lo_wave)) {
                float smooth = ((1.0f / wave) * (float)r->orig_max - r->low_freq) / (r->high_freq - r->low_freq);
                scaled = (1.0f - smooth) * scaled / r->factor + smooth * scaled;
            }
            inv[i] = scaled;
        }
        break;
    }
    case QS_ROPE_DIVISORS:
        for (int i = 0; i < half; i++) inv[i] = 1.0f / pos_freq(theta, i, dim) / r->short_factor[i];
        break;
    case QS_ROPE_LONGROPE: {
        const float *ext = seq_len > r->orig_max ? r->long_factor : r->short_factor;
        for (int i = 0; i < half; i++) inv[i] = 1.0f / (ext[i] * pos_freq(theta, i, dim));
        attn = r->attn_factor;
        break;
    }
    }
    return attn;
}
