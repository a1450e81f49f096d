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

/* ---- llama.cpp's k-quant super-blocks (Q4_K, Q6_K) ----
 * The encoder is the inverse of kern/ggml_quant.c's decoders; the scales are
 * chosen as llama.cpp's reference quantizers choose them (a weighted search
 * per sub-block, then the sub-scales rounded to 6 or 8 bits against one fp16
 * super-scale), in the same float operations, so the blocks are the ones
 * llama-quantize writes without an importance matrix (test_quant.c holds the
 * hashes of ggml's). Every code is rounded with the scale the block actually
 * stores, so the decoded value is the one the encoder returned. */

enum { QK_K = 256 };

static int nearest_int(float x) { return (int)lrintf(x); }

/* One Q4_K sub-block of n values (n <= 32): an offset grid min + scale * l,
 * l in 0..nmax, min <= 0. Trial inverse scales around nmax / (max - min)
 * each give levels; a weighted least-squares fit of (scale, min) to those
 * levels is kept when its error on them is the smallest (and the later
 * trials measure from its min). Returns the scale; *neg_min is -min (what
 * the block stores), L the levels of the fit kept. */
static float fit_scale_min(const float *x, const float *wt, int n, int nmax, float *neg_min, uint8_t *L) {
    float lo = x[0], hi = x[0], sw = 0, sx = 0;
    for (int i = 0; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        sw += wt[i];
        sx += wt[i] * x[i];
    }
    if (lo > 0) lo = 0; /* the grid reaches 0: mins are stored as non-negative offsets */
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *neg_min = -lo;
        return 0;
    }
    float is = nmax / (hi - lo), scale = 1 / is, best = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(is * (x[i] - lo));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float e = scale * L[i] + lo - x[i];
        best += wt[i] * (e * e);
    }
    uint8_t La[32];
    for (int step = 0; step <= 20; step++) {
        is = (-1.0f + 0.1f * step + nmax) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(is * (x[i] - lo));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            La[i] = (uint8_t)l;
            sl += wt[i] * l;
            sl2 += wt[i] * l * l;
            sxl += wt[i] * l * x[i];
        }
        float D = sw * sl2 - sl * sl;
        if (!(D > 0)) continue;
        float s = (sw * sxl - sx * sl) / D, m = (sl2 * sx - sl * sxl) / D;
        if (m > 0) { /* the offset must stay <= 0: refit the scale alone */
            m = 0;
            s = sxl / sl2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float e = s * La[i] + m - x[i];
            err += wt[i] * (e * e);
        }
        if (err < best) { /* the next trials start from this offset, as the reference's do */
            memcpy(L, La, (size_t)n);
            best = err;
            scale = s;
            lo = m;
        }
    }
    *neg_min = -lo;
    return scale;
}

/* One Q6_K sub-block: a symmetric grid scale * l, l in -nmax..nmax-1, its
 * sign that of the value of largest magnitude (which then takes -nmax), the
 * scale refitted by x^2-weighted least squares; trial inverse scales around
 * nmax / max replace it when their fit explains more. L: the codes l + nmax. */
static float fit_scale_sym(const float *x, int n, int nmax, uint8_t *L) {
    float amax = 0, m = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            m = x[i];
        }
    if (amax < 1e-15f) { /* nothing to scale: the reference's threshold */
        memset(L, 0, (size_t)n);
        return 0;
    }
    float scale = 0, best = 0;
    for (int t = 0; t <= 18; t++) {
        int k = t == 0 ? 0 : t <= 9 ? t - 10 : t - 9; /* 0 first, then -9..-1, 1..9 */
        float is = -(nmax + 0.1f * k) / m, sxl = 0, sl2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(is * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sxl += w * x[i] * l;
            sl2 += w * l * l;
        }
        /* the least-squares scale sxl/sl2 leaves an error of -sxl^2/sl2: keep the largest sxl^2/sl2 */
        if (k == 0 || (sl2 > 0 && sxl * sxl > best * sl2)) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(is * x[i]);
                L[i] = (uint8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = sl2 != 0 ? sxl / sl2 : 0;
            best = scale * sxl;
        }
    }
    return scale;
}

static void put_h(uint8_t *p, float x) {
    uint16_t h = qs_f32_to_f16(x);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* Q4_K's 6-bit (scale, min) of sub-block j, written as qs_k4_scale_min reads them */
static void q4k_set_scale_min(uint8_t *q, int j, int s, int m) {
    if (j < 4) {
        q[j] = (uint8_t)((q[j] & 0xC0) | s);
        q[j + 4] = (uint8_t)((q[j + 4] & 0xC0) | m);
    } else {
        q[j + 4] = (uint8_t)((s & 0xF) | (m & 0xF) << 4);
        q[j - 4] = (uint8_t)((q[j - 4] & 0x3F) | (s >> 4) << 6);
        q[j] = (uint8_t)((q[j] & 0x3F) | (m >> 4) << 6);
    }
}

static void q4k_scale_min(const uint8_t *q, int j, int *s, int *m) {
    if (j < 4) {
        *s = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *s = (q[j + 4] & 0x0F) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* Q6_K's code of value j: low 4 bits in ql, high 2 in qh (as ggml_quant.c's q6_k reads them) */
static void q6k_set(uint8_t *blk, int j, int code) {
    int half = j / 128, k = j % 128, quarter = k / 32, i = k % 32;
    uint8_t *ql = blk + 64 * half + i + (quarter & 1) * 32, *qh = blk + 128 + 32 * half + i;
    int sh = quarter >= 2 ? 4 : 0, hs = 2 * quarter;
    *ql = (uint8_t)((*ql & ~(0xF << sh)) | (code & 0xF) << sh);
    *qh = (uint8_t)((*qh & ~(3 << hs)) | (code >> 4) << hs);
}

static int q6k_get(const uint8_t *blk, int j) {
    int half = j / 128, k = j % 128, quarter = k / 32, i = k % 32;
    const uint8_t *ql = blk + 64 * half + i + (quarter & 1) * 32, *qh = blk + 128 + 32 * half + i;
    return (*ql >> (quarter >= 2 ? 4 : 0) & 0xF) | (*qh >> (2 * quarter) & 3) << 4;
}

void qs_kq_block_scales(uint32_t type, const float *x, uint8_t *blk) {
    uint8_t L[256];
    if (type == QS_WT_Q4_K) {
        float wt[32], sc[8], mn[8], smax = 0, mmax = 0;
        for (int j = 0; j < 8; j++) {
            /* the error weight favours large magnitudes, as the reference's: the sub-block's rms plus |x| */
            float sum2 = 0;
            for (int i = 0; i < 32; i++) sum2 += x[32 * j + i] * x[32 * j + i];
            float av = sqrtf(sum2 / 32);
            for (int i = 0; i < 32; i++) wt[i] = av + fabsf(x[32 * j + i]);
            sc[j] = fit_scale_min(x + 32 * j, wt, 32, 15, &mn[j], L + 32 * j);
            smax = sc[j] > smax ? sc[j] : smax;
            mmax = mn[j] > mmax ? mn[j] : mmax;
        }
        memset(blk, 0, 144);
        float is = smax > 0 ? 63.0f / smax : 0, im = mmax > 0 ? 63.0f / mmax : 0;
        for (int j = 0; j < 8; j++) {
            int ls = nearest_int(is * sc[j]), lm = nearest_int(im * mn[j]);
            q4k_set_scale_min(blk + 4, j, ls > 63 ? 63 : ls, lm > 63 ? 63 : lm);
        }
        put_h(blk, smax / 63.0f);
        put_h(blk + 2, mmax / 63.0f);
        /* the fit's levels as the codes: what a sub-block whose scale is 0 keeps (any code decodes alike there) */
        for (int j = 0; j < 256; j++) {
            int sub = j / 32;
            uint8_t *c = blk + 16 + 32 * (sub / 2) + j % 32;
            *c |= (uint8_t)(sub & 1 ? L[j] << 4 : L[j]);
        }
        return;
    }
    /* Q6_K: 16 sub-blocks of 16, int8 scales against d = the largest / -128 */
    float sc[16], smax = 0, amax = 0;
    for (int j = 0; j < 16; j++) {
        sc[j] = fit_scale_sym(x + 16 * j, 16, 32, L + 16 * j);
        if (fabsf(sc[j]) > amax) {
            amax = fabsf(sc[j]);
            smax = sc[j];
        }
    }
    memset(blk, 0, 210);
    if (amax < 1e-15f) return; /* d = 0: every value decodes to 0 */
    float is = -128.0f / smax;
    for (int j = 0; j < 16; j++) {
        int l = nearest_int(is * sc[j]);
        blk[192 + j] = (uint8_t)(int8_t)(l > 127 ? 127 : l);
    }
    put_h(blk + 208, 1 / is);
    for (int j = 0; j < 256; j++) q6k_set(blk, j, L[j]);
}

float qs_kq_block_put(uint32_t type, uint8_t *blk, int j, float x) {
    if (type == QS_WT_Q4_K) {
        int s, m, sub = j / 32;
        q4k_scale_min(blk + 4, sub, &s, &m);
        float d = qs_f16_at(blk) * s, dm = qs_f16_at(blk + 2) * m; /* the decoder's d1 and m1 */
        uint8_t *c = blk + 16 + 32 * (sub / 2) + j % 32;
        int l;
        if (d != 0) {
            l = nearest_int((x + dm) / d);
            l = l < 0 ? 0 : l > 15 ? 15 : l;
            *c = (uint8_t)(sub & 1 ? (*c & 0x0F) | l << 4 : (*c & 0xF0) | l);
        } else { /* every code decodes to -dm: the code the scales left */
            l = sub & 1 ? *c >> 4 : *c & 0xF;
        }
        return d * l - dm;
    }
    int sc = (int8_t)blk[192 + j / 16];
    float d = qs_f16_at(blk + 208);
    float ds = d * sc;
    int l;
    if (ds != 0) {
        l = nearest_int(x / ds);
        l = (l < -32 ? -32 : l > 31 ? 31 : l) + 32;
        q6k_set(blk, j, l);
    } else {
        l = q6k_get(blk, j);
    }
    return d * sc * (l - 32);
}

void qs_quant_pack_kq(const float *w, int n_out, int n_in, uint32_t type, void *out, float *vals) {
    size_t bb = type == QS_WT_Q4_K ? 144 : 210;
    uint8_t *o = out;
    for (size_t r = 0; r < (size_t)n_out; r++)
        for (int b = 0; b < n_in / QK_K; b++, o += bb) {
            const float *x = w + r * n_in + (size_t)b * QK_K;
            qs_kq_block_scales(type, x, o);
            for (int j = 0; j < QK_K; j++) {
                float y = qs_kq_block_put(type, o, j, x[j]);
                if (vals) vals[r * n_in + (size_t)b * QK_K + j] = y;
            }
        }
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
