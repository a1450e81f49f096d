/* GGUF's block-quantized tensors: qscope's decoding of each ggml block
 * format against values ggml itself produced, and the reader's handling of
 * quantized tensors (sizes, bounds, row lengths, conversion).
 *
 * tests/data/ggml_blocks.bin holds, for each format, two rows of 256 random
 * values (one small-scale row, one with an outlier and a one-signed block)
 * quantized and dequantized by ggml (llama.cpp's tensor library, v0.5.0):
 * "QSGQ", u32 count, then per format u32 type, u32 values, u32 bytes, the
 * blocks, and the values as ggml decodes them (f32). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "read/read.h"
#include "base/base.h"
#include "harness.h"

typedef struct {
    uint32_t type, n, nbytes;
    const uint8_t *blocks;
    float *want;
} vec;

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* the vectors, or 0 (with a failure) when the file is unreadable */
static int load_vectors(char **buf, vec *v, int cap) {
    size_t len;
    if (qs_io_read_all("tests/data/ggml_blocks.bin", buf, &len)) {
        th_fail_at(__FILE__, __LINE__, "%s", qs_last_error());
        return 0;
    }
    const uint8_t *p = (const uint8_t *)*buf, *end = p + len;
    if (len < 8 || memcmp(p, "QSGQ", 4)) return 0;
    int n = (int)rd32(p + 4);
    p += 8;
    for (int i = 0; i < n && i < cap; i++) {
        if (end - p < 12) return 0;
        v[i].type = rd32(p), v[i].n = rd32(p + 4), v[i].nbytes = rd32(p + 8);
        p += 12;
        if ((size_t)(end - p) < v[i].nbytes + (size_t)v[i].n * 4) return 0;
        v[i].blocks = p;
        v[i].want = malloc((size_t)v[i].n * 4);
        memcpy(v[i].want, p + v[i].nbytes, (size_t)v[i].n * 4);
        p += v[i].nbytes + (size_t)v[i].n * 4;
    }
    return n;
}

static void free_vectors(char *buf, vec *v, int n) {
    for (int i = 0; i < n; i++) free(v[i].want);
    free(buf);
}

TEST(gguf_dequant_matches_ggml) {
    vec v[16];
    char *buf = NULL;
    int n = load_vectors(&buf, v, 16);
    REQUIRE(n == 11, "%d formats in tests/data/ggml_blocks.bin", n);
    for (int i = 0; i < n; i++) {
        size_t be, bb;
        const char *name = qs_gguf_type_name(v[i].type);
        CHECK(qs_ggml_block(v[i].type, &be, &bb) && v[i].n / be * bb == v[i].nbytes, "%s: block size", name);
        float *got = calloc(v[i].n, sizeof *got);
        CHECK(qs_ggml_dequant(v[i].type, v[i].blocks, got, v[i].n), "%s: not decoded", name);
        size_t bad = 0, first = 0;
        for (uint32_t j = 0; j < v[i].n; j++)
            if (memcmp(&got[j], &v[i].want[j], 4) && !bad++) first = j;
        CHECK(bad == 0, "%s: %zu of %u values differ from ggml's, first at %zu: %.9g, ggml %.9g", name, bad, v[i].n,
              first, got[first], v[i].want[first]);
        printf("  %-6s %3zu bytes per %3zu values: %u values equal ggml's\n", name, bb, be, v[i].n);
        free(got);
    }
    size_t be, bb;
    float y[32];
    CHECK(!qs_ggml_block(16, &be, &bb) && !qs_ggml_dequant(16, v[0].blocks, y, 32), "IQ2_XXS is not decoded");
    CHECK(!qs_ggml_dequant(2, v[0].blocks, y, 31), "a partial block is refused");
    free_vectors(buf, v, n);
}

/* a GGUF holding only tensors: no metadata, each (256, 2) in its format */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} gbuf;

static void put(gbuf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void put32(gbuf *b, uint32_t v) { put(b, &v, 4); }
static void put64(gbuf *b, uint64_t v) { put(b, &v, 8); }

static size_t write_tensors(const char *path, const vec *v, int n, uint64_t row0) {
    gbuf b = {0};
    put(&b, "GGUF", 4);
    put32(&b, 3);
    put64(&b, (uint64_t)n);
    put64(&b, 0);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", qs_gguf_type_name(v[i].type));
        put64(&b, strlen(name));
        put(&b, name, strlen(name));
        put32(&b, 2);
        put64(&b, i == 0 ? row0 : 256);
        put64(&b, v[i].n / 256);
        put32(&b, v[i].type);
        put64(&b, off);
        off += (v[i].nbytes + 31) / 32 * 32;
    }
    while (b.n % 32) put(&b, "", 1);
    for (int i = 0; i < n; i++) {
        put(&b, v[i].blocks, v[i].nbytes);
        while (b.n % 32) put(&b, "", 1);
    }
    FILE *f = fopen(path, "wb");
    size_t len = b.n;
    if (!f || fwrite(b.p, 1, b.n, f) != b.n) len = 0;
    if (f) fclose(f);
    free(b.p);
    return len;
}

TEST(gguf_quantized_tensors_read) {
    vec v[16];
    char *buf = NULL;
    int n = load_vectors(&buf, v, 16);
    REQUIRE(n == 11, "%d formats", n);
    char path[] = "/tmp/qs_gguf_quant_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0, "mkstemp");
    close(fd);
    size_t len = write_tensors(path, v, n, 256);
    REQUIRE(len > 0, "write %s", path);
    qs_gguf *g = NULL;
    REQUIRE(qs_gguf_open(path, &g) == QS_OK, "%s", qs_last_error());
    qs_store *store = qs_store_new();
    for (int i = 0; i < n; i++) {
        const qs_gguf_tensor *t = qs_gguf_tensor_at(g, (size_t)i);
        const float *w = NULL;
        CHECK(t->nbytes == v[i].nbytes, "%s: %zu bytes, want %u", t->name, t->nbytes, v[i].nbytes);
        CHECK(qs_gguf_to_f32(g, t, store, &w) == QS_OK, "%s: %s", t->name, qs_last_error());
        CHECK(w && !memcmp(w, v[i].want, (size_t)v[i].n * 4), "%s: values differ from ggml's", t->name);
    }
    qs_store_free(store);
    qs_gguf_close(g);

    /* a row that is not a whole number of blocks; a file cut inside the last tensor */
    write_tensors(path, v, n, 100);
    qs_status st = qs_gguf_open(path, &g);
    const char *msg = qs_last_error();
    CHECK(st == QS_EFORMAT && strstr(msg, "'t.Q4_0'") && strstr(msg, "rows of 100 values") && strstr(msg, "32-value block"),
          "%d %s", st, msg);
    qs_gguf_close(g);
    g = NULL;
    write_tensors(path, v, n, 256);
    REQUIRE(truncate(path, (off_t)(len - 40)) == 0, "truncate");
    st = qs_gguf_open(path, &g);
    msg = qs_last_error();
    CHECK(st == QS_EFORMAT && strstr(msg, "'t.IQ4_NL'") && strstr(msg, "past the end"), "%d %s", st, msg);
    qs_gguf_close(g);
    unlink(path);
    free_vectors(buf, v, n);
}
