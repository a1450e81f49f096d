/* Dequantization of ggml's block formats, as GGUF files store them.
 *
 * Every format cuts a row into blocks of 32 (the legacy formats, IQ4_NL) or
 * 256 values (the "K" formats, whose super-blocks hold 8–16 sub-blocks with
 * their own small scales). A block is self-contained: its scales (fp16),
 * then its packed codes. The layouts below are the storage formats of
 * llama.cpp's GGUF files; each decoder writes the values one block at a
 * time, in the same arithmetic order as ggml's own reference decoder, so a
 * dequantized tensor equals ggml's bit for bit (tests/c/test_gguf_quant.c
 * checks it against vectors ggml produced).
 */
#include <string.h>

#include "kern/kern.h"

/* ---- 32-value blocks ---- */

/* Q4_0: d, 16 bytes of 4-bit codes (low nibbles: values 0–15, high: 16–31), value (q − 8)·d */
static void q4_0(const uint8_t *b, float *y) {
    float d = qs_f16_at(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = ((qs[j] & 0x0F) - 8) * d;
        y[j + 16] = ((qs[j] >> 4) - 8) * d;
    }
}

/* Q4_1: d, m, codes as Q4_0; value q·d + m */
static void q4_1(const uint8_t *b, float *y) {
    float d = qs_f16_at(b), m = qs_f16_at(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (qs[j] & 0x0F) * d + m;
        y[j + 16] = (qs[j] >> 4) * d + m;
    }
}

/* the fifth bits of Q5_0/Q5_1: bit j of a little-endian u32 for value j */
static uint32_t u32le(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* Q5_0: d, 32 high bits, 16 bytes of low nibbles; value (q − 16)·d */
static void q5_0(const uint8_t *b, float *y) {
    float d = qs_f16_at(b);
    uint32_t qh = u32le(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0F) | (int)((qh >> j) << 4 & 0x10);
        int hi = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        y[j] = (lo - 16) * d;
        y[j + 16] = (hi - 16) * d;
    }
}

/* Q5_1: d, m, high bits, low nibbles; value q·d + m */
static void q5_1(const uint8_t *b, float *y) {
    float d = qs_f16_at(b), m = qs_f16_at(b + 2);
    uint32_t qh = u32le(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0F) | (int)((qh >> j) << 4 & 0x10);
        int hi = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        y[j] = lo * d + m;
        y[j + 16] = hi * d + m;
    }
}

/* Q8_0: d, 32 signed bytes; value q·d */
static void q8_0(const uint8_t *b, float *y) {
    float d = qs_f16_at(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = qs[j] * d;
}

/* IQ4_NL: d, 4-bit indices into a fixed non-uniform grid */
const int8_t qs_iq4_nl_grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void iq4_nl(const uint8_t *b, float *y) {
    const int8_t *grid = qs_iq4_nl_grid;
    float d = qs_f16_at(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * grid[qs[j] & 0x0F];
        y[j + 16] = d * grid[qs[j] >> 4];
    }
}

/* ---- 256-value super-blocks ---- */

/* Q2_K: 16 bytes of (4-bit scale, 4-bit min) per 16 values, 64 bytes of
 * 2-bit codes, d, dmin; value d·scale·q − dmin·min. Each 32 code bytes hold
 * four 2-bit planes: plane s of byte l is value 32·s + l of that half. */
static void q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *q = b + 16;
    float d = qs_f16_at(b + 80), dmin = qs_f16_at(b + 82);
    int is = 0;
    for (int half = 0; half < 2; half++, q += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int part = 0; part < 2; part++) {
                uint8_t s = sc[is++];
                float dl = d * (s & 0xF), ml = dmin * (s >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * ((q[l + 16 * part] >> shift) & 3) - ml;
            }
        }
    }
}

/* Q3_K: 32 bytes of high bits (bit k of byte l: value 32·k + l), 64 bytes
 * of 2-bit low codes as in Q2_K, 12 bytes of 6-bit signed scales, d;
 * value d·scale·(q − 4 when the high bit is clear). */
static void q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32;
    int8_t sc[16];
    qs_k3_scales(b + 96, sc);
    float d = qs_f16_at(b + 108);
    int is = 0;
    unsigned m = 1;
    for (int half = 0; half < 2; half++, q += 32) {
        for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
            for (int part = 0; part < 2; part++) {
                float dl = d * sc[is++];
                for (int l = 0; l < 16; l++) {
                    int k = l + 16 * part;
                    *y++ = dl * (((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4));
                }
            }
        }
    }
}

/* The 6-bit (scale, min) pairs of Q4_K and Q5_K, 8 of each in 12 bytes:
 * pairs 0–3 in the low 6 bits of bytes 0–3 / 4–7; pairs 4–7 take their low
 * 4 bits from bytes 8–11 and their high 2 bits from the tops of bytes 0–7. */
/* Q4_K: d, dmin, 12 bytes of scales/mins, 128 bytes of nibbles (each 32
 * bytes: the low nibbles are one 32-value sub-block, the high the next);
 * value d·scale·q − dmin·min. */
static void q4_k(const uint8_t *b, float *y) {
    float d = qs_f16_at(b), dmin = qs_f16_at(b + 2);
    const uint8_t *sc = b + 4, *q = b + 16;
    for (int is = 0; is < 8; is += 2, q += 32) {
        int s, m;
        qs_k4_scale_min(is, sc, &s, &m);
        float d1 = d * s, m1 = dmin * m;
        qs_k4_scale_min(is + 1, sc, &s, &m);
        float d2 = d * s, m2 = dmin * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
    }
}

/* Q5_K: Q4_K plus 32 bytes of fifth bits (bit 2k / 2k+1 of byte l for the
 * low / high nibble of the k-th group of 32 code bytes). */
static void q5_k(const uint8_t *b, float *y) {
    float d = qs_f16_at(b), dmin = qs_f16_at(b + 2);
    const uint8_t *sc = b + 4, *qh = b + 16, *q = b + 48;
    unsigned u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, q += 32, u1 <<= 2, u2 <<= 2) {
        int s, m;
        qs_k4_scale_min(is, sc, &s, &m);
        float d1 = d * s, m1 = dmin * m;
        qs_k4_scale_min(is + 1, sc, &s, &m);
        float d2 = d * s, m2 = dmin * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * ((q[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * ((q[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
}

/* Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 signed
 * 8-bit scales (one per 16 values), d; value d·scale·(q − 32). Per half of
 * 128 values: low nibbles ql[l], ql[l+32] (low) and again (high) give values
 * l, l+32, l+64, l+96 with the high parts at bits 0, 2, 4, 6 of qh[l]. */
static void q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = qs_f16_at(b + 208);
    for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
    }
}

typedef struct {
    uint32_t type;
    int elems, bytes;
    void (*decode)(const uint8_t *, float *);
} fmt;

static const fmt fmts[] = {
    {2, 32, 18, q4_0},      {3, 32, 20, q4_1},     {6, 32, 22, q5_0},    {7, 32, 24, q5_1},
    {8, 32, 34, q8_0},      {10, 256, 84, q2_k},   {11, 256, 110, q3_k}, {12, 256, 144, q4_k},
    {13, 256, 176, q5_k},   {14, 256, 210, q6_k},  {20, 32, 18, iq4_nl},
};

static const fmt *find(uint32_t type) {
    for (size_t i = 0; i < sizeof fmts / sizeof *fmts; i++)
        if (fmts[i].type == type) return &fmts[i];
    return NULL;
}

int qs_ggml_block(uint32_t type, size_t *elems, size_t *bytes) {
    const fmt *f = find(type);
    if (!f) return 0;
    *elems = (size_t)f->elems;
    *bytes = (size_t)f->bytes;
    return 1;
}

int qs_ggml_dequant(uint32_t type, const void *src, float *dst, size_t n) {
    const fmt *f = find(type);
    if (!f || n % (size_t)f->elems) return 0;
    const uint8_t *b = src;
    for (size_t i = 0; i < n; i += (size_t)f->elems, b += f->bytes) f->decode(b, dst + i);
    return 1;
}
