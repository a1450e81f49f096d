#include "kern/kern.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

/* The lowest and highest integer level of a grid: RPTQ's [-L/2, L/2-1],
 * symmetric [-(L/2-1), L/2-1], asymmetric [0, L-1], with L = 2^bits. */
static inline void grid_levels(int bits, int sym, qs_grid grid, float *qlo, float *qhi) {
    float L = (float)(1 << bits);
    *qlo = grid == QS_GRID_RPTQ || (grid == QS_GRID_GGML && sym) ? -L / 2 : sym ? -(L / 2 - 1) : 0;
    *qhi = grid == QS_GRID_RPTQ || sym ? L / 2 - 1 : L - 1;
}

/* llama.cpp's block scales (QS_GRID_GGML, kern.h): zero is an offset there */
static void ggml_params(float lo, float hi, int bits, int sym, float *scale, float *zero) {
    if (!sym) {
        *scale = qs_quant_f16((hi - lo) / (float)((1 << bits) - 1));
        *zero = qs_quant_f16(lo);
        return;
    }
    if (bits == 8) {
        *scale = qs_quant_f16(fmaxf(fabsf(lo), fabsf(hi)) / 127.0f);
    } else {
        float m = -lo > hi ? lo : hi; /* the value of largest magnitude */
        *scale = qs_quant_f16(m / -(float)(1 << (bits - 1)));
    }
    *zero = 0;
}

void qs_quant_params(float lo, float hi, int bits, int sym, qs_grid grid, float *scale, float *zero) {
    float L = (float)(1 << bits);
    if (grid == QS_GRID_RPTQ) {
        float s = clampf((hi - lo) / L, 1e-4f, 1e4f);
        *scale = s;
        *zero = rintf(clampf((hi + lo) * (-0.5f / s), -1e4f, 1e4f)); /* the reference's order of operations */
        return;
    }
    if (grid == QS_GRID_GGML) {
        ggml_params(lo, hi, bits, sym, scale, zero);
        return;
    }
    if (sym) {
        float a = fmaxf(fabsf(lo), fabsf(hi));
        float qmax = L / 2 - 1;
        *scale = a > 0 ? a / qmax : 1.0f;
        *zero = 0;
        return;
    }
    lo = fminf(lo, 0.0f);
    hi = fmaxf(hi, 0.0f);
    float s = (hi - lo) / (L - 1);
    if (!(s > 0)) s = 1.0f;
    *scale = s;
    *zero = rintf(-lo / s);
}

float qs_quant_fq(float x, float scale, float zero, int bits, int sym, qs_grid grid) {
    float qlo, qhi;
    grid_levels(bits, sym, grid, &qlo, &qhi);
    if (grid == QS_GRID_GGML) { /* a scale of 0 decodes every code to the offset */
        float q = scale != 0 ? clampf(rintf((x - zero) / scale), qlo, qhi) : 0;
        return q * scale + zero;
    }
    float q = clampf(rintf(x / scale) + zero, qlo, qhi);
    return (q - zero) * scale;
}

static float h16(float x) { return qs_quant_f16(x); }

float qs_quant_fq16(float x, float scale, float zero, int bits, int sym, qs_grid grid) {
    float qlo, qhi;
    grid_levels(bits, sym, grid, &qlo, &qhi);
    float q = clampf(rintf(h16(h16(x) / scale)) + zero, qlo, qhi);
    return h16((q - zero) * scale);
}

static void row_range(const float *x, int dim, float *lo, float *hi) {
    float a = x[0], b = x[0];
    for (int i = 1; i < dim; i++) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *lo = a;
    *hi = b;
}

void qs_quant_act(const qs_actq *q, float *x, int n, int dim) {
    if (!qs_actq_on(q)) return;
    int bits = q->bits, sym = q->sym;
    qs_grid grid = (qs_grid)q->grid;
    if (q->mode == QS_AQ_STATIC && q->fp16) {
        float qlo, qhi;
        grid_levels(bits, sym, grid, &qlo, &qhi);
        for (int r = 0; r < n; r++) {
            float *xr = x + (size_t)r * dim;
            for (int i = 0; i < dim; i++) { /* as qs_quant_fq16, the level bounds hoisted */
                float s = q->scale[i], z = q->zero[i];
                float t = clampf(rintf(qs_quant_f16(qs_quant_f16(xr[i]) / s)) + z, qlo, qhi);
                xr[i] = qs_quant_f16((t - z) * s);
            }
        }
        return;
    }
    if (q->mode == QS_AQ_STATIC) {
        for (int r = 0; r < n; r++) {
            float *xr = x + (size_t)r * dim;
            for (int i = 0; i < dim; i++) xr[i] = qs_quant_fq(xr[i], q->scale[i], q->zero[i], bits, sym, grid);
        }
        return;
    }
    float s, z;
    if (q->mode == QS_AQ_TENSOR) {
        float lo = x[0], hi = x[0];
        for (int r = 0; r < n; r++) {
            float a, b;
            row_range(x + (size_t)r * dim, dim, &a, &b);
            lo = a < lo ? a : lo;
            hi = b > hi ? b : hi;
        }
        qs_quant_params(lo, hi, bits, sym, grid, &s, &z);
        for (size_t i = 0; i < (size_t)n * dim; i++) x[i] = qs_quant_fq(x[i], s, z, bits, sym, grid);
        return;
    }
    if (q->group && q->n_groups > 0) { /* QS_AQ_TOKEN, per row and channel group */
        int G = q->n_groups;
        float *lo = malloc(4 * (size_t)G * sizeof *lo);
        if (!lo) return; /* cannot happen in practice; leave x unquantized rather than crash */
        float *hi = lo + G, *sc = hi + G, *zp = sc + G;
        for (int r = 0; r < n; r++) {
            float *xr = x + (size_t)r * dim;
            for (int g = 0; g < G; g++) {
                lo[g] = INFINITY;
                hi[g] = -INFINITY;
            }
            for (int i = 0; i < dim; i++) {
                int g = q->group[i];
                lo[g] = xr[i] < lo[g] ? xr[i] : lo[g];
                hi[g] = xr[i] > hi[g] ? xr[i] : hi[g];
            }
            for (int g = 0; g < G; g++)
                if (lo[g] <= hi[g]) qs_quant_params(lo[g], hi[g], bits, sym, grid, &sc[g], &zp[g]);
            for (int i = 0; i < dim; i++) {
                int g = q->group[i];
                xr[i] = qs_quant_fq(xr[i], sc[g], zp[g], bits, sym, grid);
            }
        }
        free(lo);
        return;
    }
    for (int r = 0; r < n; r++) { /* QS_AQ_TOKEN */
        float *xr = x + (size_t)r * dim, lo, hi;
        row_range(xr, dim, &lo, &hi);
        qs_quant_params(lo, hi, bits, sym, grid, &s, &z);
        for (int i = 0; i < dim; i++) xr[i] = qs_quant_fq(xr[i], s, z, bits, sym, grid);
    }
}

void qs_quant_pack_rtn(const float *w, int n_out, int n_in, int bits, int lg, int sym, void *out) {
    int gs = lg ? 1 << lg : n_in;
    size_t cb = bits <= 4 ? (size_t)(gs + 1) / 2 : (size_t)gs;
    uint8_t *o = out;
    float qlo, qhi;
    grid_levels(bits, sym, QS_GRID_STD, &qlo, &qhi);
    for (int r = 0; r < n_out; r++) {
        const float *wr = w + (size_t)r * n_in;
        for (int g0 = 0; g0 < n_in; g0 += gs, o += 8 + cb) {
            float lo, hi, s, z;
            row_range(wr + g0, gs, &lo, &hi);
            qs_quant_params(lo, hi, bits, sym, QS_GRID_STD, &s, &z);
            float zoff = z - qlo; /* u = q - qlo, so (u - zoff) s = (q - z) s */
            memcpy(o, &s, 4);
            memcpy(o + 4, &zoff, 4);
            memset(o + 8, 0, cb);
            for (int i = 0; i < gs; i++) {
                int u = (int)(clampf(rintf(wr[g0 + i] / s) + z, qlo, qhi) - qlo);
                if (bits <= 4) o[8 + i / 2] |= (uint8_t)(i & 1 ? u << 4 : u);
                else o[8 + i] = (uint8_t)u;
            }
        }
    }
}

uint32_t qs_ggml_type_of(int bits, int sym) {
    return bits == 4 ? (sym ? QS_WT_Q4_0 : QS_WT_Q4_1) : bits == 8 && sym ? QS_WT_Q8_0 : 0;
}

/* One block of 32 as llama.cpp's reference quantizers write it: the codes
 * are rounded with the fp32 scale, the block keeps it as fp16. */
static void ggml_block(const float *x, uint32_t type, uint8_t *o) {
    enum { QK = 32 };
    float lo = x[0], hi = x[0], amax = 0, m = 0;
    for (int j = 0; j < QK; j++) {
        lo = x[j] < lo ? x[j] : lo;
        hi = x[j] > hi ? x[j] : hi;
        if (amax < fabsf(x[j])) { /* first of equal magnitudes, as the reference */
            amax = fabsf(x[j]);
            m = x[j];
        }
    }
    if (type == QS_WT_Q8_0) {
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        uint16_t h = qs_f32_to_f16(d);
        memcpy(o, &h, 2);
        for (int j = 0; j < QK; j++) o[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
        return;
    }
    float d, id, base, add;
    size_t hdr;
    if (type == QS_WT_Q4_0) {
        d = m / -8.0f;
        base = 0;
        add = 8.5f;
        hdr = 2;
    } else {
        d = (hi - lo) / 15.0f;
        base = lo;
        add = 0.5f;
        hdr = 4;
        uint16_t hm = qs_f32_to_f16(lo);
        memcpy(o + 2, &hm, 2);
    }
    id = d != 0 ? 1.0f / d : 0.0f;
    uint16_t h = qs_f32_to_f16(d);
    memcpy(o, &h, 2);
    for (int j = 0; j < QK / 2; j++) {
        int a = (int8_t)((x[j] - base) * id + add), b = (int8_t)((x[j + QK / 2] - base) * id + add);
        o[hdr + j] = (uint8_t)((a < 15 ? a : 15) | (b < 15 ? b : 15) << 4);
    }
}

void qs_quant_pack_ggml(const float *w, int n_out, int n_in, uint32_t type, void *out) {
    size_t bb = type == QS_WT_Q8_0 ? 34 : type == QS_WT_Q4_0 ? 18 : 20;
    uint8_t *o = out;
    for (size_t r = 0; r < (size_t)n_out; r++)
        for (int b = 0; b < n_in / 32; b++, o += bb) ggml_block(w + r * n_in + (size_t)b * 32, type, o);
}

qs_status qs_quant_weight_rtn(const float *w, int n_out, int n_in, int bits, int group, int sym, float *out) {
    if (bits < 2 || bits > 8) return qs_fail(QS_EARG, "weight bits must be 2..8, got %d", bits);
    if (group <= 0 || group > n_in) group = n_in;
    for (int r = 0; r < n_out; r++) {
        const float *wr = w + (size_t)r * n_in;
        float *orow = out + (size_t)r * n_in;
        for (int g0 = 0; g0 < n_in; g0 += group) {
            int g1 = g0 + group < n_in ? g0 + group : n_in;
            float lo, hi, s, z;
            row_range(wr + g0, g1 - g0, &lo, &hi);
            qs_quant_params(lo, hi, bits, sym, QS_GRID_STD, &s, &z);
            for (int i = g0; i < g1; i++) orow[i] = qs_quant_fq(wr[i], s, z, bits, sym, QS_GRID_STD);
        }
    }
    return QS_OK;
}

qs_status qs_quant_weight_groups(const float *w, int n_out, int n_in, int bits, int sym, qs_grid grid,
                                 const int *group_of_col, int n_groups, float *out) {
    if (bits < 2 || bits > 8) return qs_fail(QS_EARG, "weight bits must be 2..8, got %d", bits);
    float *lo = malloc(4 * (size_t)n_groups * sizeof(float));
    if (!lo) return qs_fail(QS_ENOMEM, "out of memory");
    float *hi = lo + n_groups, *sc = hi + n_groups, *zp = sc + n_groups;
    for (int r = 0; r < n_out; r++) {
        const float *wr = w + (size_t)r * n_in;
        float *orow = out + (size_t)r * n_in;
        for (int g = 0; g < n_groups; g++) {
            lo[g] = INFINITY;
            hi[g] = -INFINITY;
        }
        for (int i = 0; i < n_in; i++) {
            int g = group_of_col[i];
            lo[g] = wr[i] < lo[g] ? wr[i] : lo[g];
            hi[g] = wr[i] > hi[g] ? wr[i] : hi[g];
        }
        for (int g = 0; g < n_groups; g++)
            if (lo[g] <= hi[g]) qs_quant_params(lo[g], hi[g], bits, sym, grid, &sc[g], &zp[g]);
        for (int i = 0; i < n_in; i++) {
            int g = group_of_col[i];
            orow[i] = qs_quant_fq(wr[i], sc[g], zp[g], bits, sym, grid);
        }
    }
    free(lo);
    return QS_OK;
}

long long qs_quant_weight_bytes(int n_out, int n_in, int bits, int group, int asym) {
    if (bits <= 0 || bits >= 16) return 4LL * n_out * n_in;
    long long groups_per_row = group > 0 ? (n_in + group - 1) / group : 1;
    long long codes = ((long long)n_out * n_in * bits + 7) / 8;
    return codes + (long long)n_out * groups_per_row * (asym ? 4 : 2);
}
