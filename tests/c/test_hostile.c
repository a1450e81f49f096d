/* Hostile input: the failures a fuzzing campaign found, each reproduced here
 * (a calibration offsets file the reader freed before quoting it, FIFOs and
 * devices in place of a model's files, NaN through the kernels, NULL
 * arithmetic on ordinary paths). These run without ../shared. Run them under
 * `make sanitize` too: some of the old failures were only visible there. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "base/base.h"
#include "kern/kern.h"
#include "model/model.h"
#include "read/read.h"
#include "stats/stats.h"
#include "tok/tok.h"
#include "harness.h"

static int new_dir(char *dir, size_t cap) {
    snprintf(dir, cap, "%s/qs_hostile_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(dir) != NULL;
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t n = strlen(text), w = fwrite(text, 1, n, f);
    return fclose(f) == 0 && w == n;
}

static int has(const char *msg, const char *part) { return strstr(msg, part) != NULL; }

/* The reader quoted the bad line from the file's text after freeing it: a
 * use after free (ASan), and a message with whatever free() left there. */
TEST(hostile_calib_offsets_quote) {
    char dir[256], p[600];
    REQUIRE(new_dir(dir, sizeof dir), "mkdtemp");
    qs_io_join(p, sizeof p, dir, "offsets.txt");
    static const struct {
        const char *text, *quoted;
        int line;
    } cases[] = {
        {"x", "'x'", 1}, {"0\n12\n  banana  \n", "'banana  '", 3}, {"# c\n-4\n", "'-4'", 2},
        {"99999999999999999999999", "'99999999999999999999999'", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        REQUIRE(write_text(p, cases[i].text), "write");
        long *offs = (long *)1;
        int n = -1;
        qs_status st = qs_calib_read_offsets(p, &offs, &n);
        char want[64];
        snprintf(want, sizeof want, "line %d: expected a token offset, got ", cases[i].line);
        CHECK(st == QS_EFORMAT && has(qs_last_error(), want) && has(qs_last_error(), cases[i].quoted),
              "case %zu: %d %s", i, st, qs_last_error());
        CHECK(!offs && n == 0, "case %zu: outputs cleared on failure", i);
    }
    REQUIRE(write_text(p, "# offsets\n0\n  7\n\n12\r\n"), "write");
    long *offs = NULL;
    int n = 0;
    REQUIRE(qs_calib_read_offsets(p, &offs, &n) == QS_OK, "%s", qs_last_error());
    CHECK(n == 3 && offs[0] == 0 && offs[1] == 7 && offs[2] == 12, "read %d offsets", n);
    free(offs);
    unlink(p);
    rmdir(dir);
}

/* ---- files that are not regular files ---- */

static void rm_tree(const char *dir) {
    static const char *const names[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                        "vocab.json", "merges.txt", "m.gguf", "m.bin", "z.gguf", NULL};
    char p[600];
    for (int i = 0; names[i]; i++) unlink(qs_io_join(p, sizeof p, dir, names[i]));
    rmdir(dir);
}

/* Load path with a 10 s alarm (a hang kills the run rather than stalling
 * it); the status, the message in msg and the seconds it took. */
static qs_status timed_load(const char *path, char *msg, size_t cap, double *secs) {
    qs_model *m = NULL;
    double t0 = qs_io_clock();
    alarm(10);
    qs_status st = qs_model_load(path, NULL, &m);
    alarm(0);
    *secs = qs_io_clock() - t0;
    snprintf(msg, cap, "%s", st ? qs_last_error() : "");
    qs_model_free(m);
    return st;
}

/* the model directory's files as links to the bundled model's, but `name`,
 * which is a FIFO (fifo) or a link to /dev/zero */
static int odd_dir(char *dir, size_t cap, const char *name, int fifo) {
    static const char *const names[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                        "vocab.json", "merges.txt", NULL};
    if (!new_dir(dir, cap)) return 0;
    char p[600], src[1200], cwd[512];
    if (!getcwd(cwd, sizeof cwd)) return 0;
    for (int i = 0; names[i]; i++) {
        qs_io_join(p, sizeof p, dir, names[i]);
        if (!strcmp(names[i], name)) {
            if (fifo ? mkfifo(p, 0600) : symlink("/dev/zero", p)) return 0;
        } else {
            snprintf(src, sizeof src, "%s/models/opt-mini/%s", cwd, names[i]);
            if (symlink(src, p)) return 0;
        }
    }
    return 1;
}

/* A FIFO or /dev/zero in place of any file of a model directory: one line
 * naming the file, within a second (it blocked in open or read forever, or
 * read /dev/zero without bound). */
TEST(hostile_model_dir_fifo_and_dev_zero) {
    if (!qs_io_is_dir("models/opt-mini")) {
        th_skip("models/opt-mini is absent (run from the repository root)");
        return;
    }
    static const char *const names[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                        "vocab.json", "merges.txt", NULL};
    for (int fifo = 0; fifo < 2; fifo++)
        for (int i = 0; names[i]; i++) {
            char dir[256], msg[1024];
            REQUIRE(odd_dir(dir, sizeof dir, names[i], fifo), "cannot build the directory for %s", names[i]);
            double secs;
            qs_status st = timed_load(dir, msg, sizeof msg, &secs);
            const char *kind = fifo ? "is a FIFO, not a regular file" : "is a character device, not a regular file";
            /* tokenizer.json replaces vocab.json + merges.txt: those two are
             * not read when it is there, so the model loads */
            if (!strcmp(names[i], "vocab.json") || !strcmp(names[i], "merges.txt"))
                CHECK(st == QS_OK, "%s %s: %s", names[i], fifo ? "FIFO" : "/dev/zero", msg);
            else
                CHECK(st == QS_EIO && has(msg, names[i]) && has(msg, kind) && !strchr(msg, '\n'),
                      "%s as %s: %d %s", names[i], fifo ? "a FIFO" : "/dev/zero", st, msg);
            CHECK(secs < 1.0, "%s: %.2f s", names[i], secs);
            rm_tree(dir);
        }
    /* without tokenizer.json, vocab.json and merges.txt are read */
    for (int k = 0; k < 2; k++) {
        char dir[256], msg[1024], p[600];
        REQUIRE(odd_dir(dir, sizeof dir, k ? "merges.txt" : "vocab.json", 1), "directory");
        unlink(qs_io_join(p, sizeof p, dir, "tokenizer.json"));
        double secs;
        qs_status st = timed_load(dir, msg, sizeof msg, &secs);
        CHECK(st == QS_EIO && has(msg, k ? "merges.txt" : "vocab.json") && has(msg, "is a FIFO"), "%d %s", st, msg);
        CHECK(secs < 1.0, "%.2f s", secs);
        rm_tree(dir);
    }
}

/* A FIFO or a device given as a .gguf or .bin file; a tokenizer-only
 * directory whose tokenizer.json is a FIFO. */
TEST(hostile_model_file_fifo) {
    char dir[256], p[600], msg[1024];
    REQUIRE(new_dir(dir, sizeof dir), "mkdtemp");
    static const char *const names[] = {"m.gguf", "m.bin", "z.gguf"};
    for (int i = 0; i < 3; i++) {
        qs_io_join(p, sizeof p, dir, names[i]);
        REQUIRE(i < 2 ? mkfifo(p, 0600) == 0 : symlink("/dev/zero", p) == 0, "mkfifo/symlink: %s", strerror(errno));
        double secs;
        qs_status st = timed_load(p, msg, sizeof msg, &secs);
        CHECK(st == QS_EIO && has(msg, names[i]) && has(msg, i < 2 ? "is a FIFO" : "is a character device"),
              "%s: %d %s", names[i], st, msg);
        CHECK(secs < 1.0, "%s: %.2f s", names[i], secs);
    }
    REQUIRE(mkfifo(qs_io_join(p, sizeof p, dir, "tokenizer.json"), 0600) == 0, "mkfifo");
    qs_tok *t = NULL;
    alarm(10);
    qs_status st = qs_tok_load_hf(dir, &t);
    alarm(0);
    CHECK(st == QS_EIO && has(qs_last_error(), "tokenizer.json: is a FIFO"), "%d %s", st, qs_last_error());
    qs_tok_free(t);
    /* the reader itself: regular files only, and a size limit */
    char *data = (char *)1;
    size_t len = 7;
    st = qs_io_read_file(p, QS_IO_TEXT_MAX, &data, &len);
    CHECK(st == QS_EIO && !data && len == 0, "FIFO: %d", st);
    st = qs_io_read_file("/dev/zero", QS_IO_TEXT_MAX, &data, &len);
    CHECK(st == QS_EIO && has(qs_last_error(), "/dev/zero: is a character device"), "%d %s", st, qs_last_error());
    st = qs_io_read_file(dir, QS_IO_TEXT_MAX, &data, &len);
    CHECK(st == QS_EIO && has(qs_last_error(), "is a directory"), "%d %s", st, qs_last_error());
    qs_io_join(p, sizeof p, dir, "config.json");
    REQUIRE(write_text(p, "{\"a\": 12345}"), "write");
    st = qs_io_read_file(p, 11, &data, &len);
    CHECK(st == QS_EFORMAT && has(qs_last_error(), "12 bytes, over the limit"), "%d %s", st, qs_last_error());
    st = qs_io_read_file(p, 12, &data, &len);
    CHECK(st == QS_OK && len == 12 && !strcmp(data, "{\"a\": 12345}"), "%d %zu", st, len);
    free(data);
    qs_map map;
    st = qs_io_map("/dev/zero", &map);
    CHECK(st == QS_EIO && !map.data, "map /dev/zero: %d", st);
    rm_tree(dir);
}

/* ---- words that encode to no ids ---- */

/* A byte-level BPE whose vocabulary lacks most bytes (and has no unknown
 * token): a word of such bytes encodes to no ids. The word cache stored
 * that with memcpy(NULL, NULL + 0, 0) and replayed it from NULL + 0 (UBSan);
 * the ids must be those of the words that have any. */
TEST(hostile_tok_word_without_ids) {
    const char *pieces[] = {"a", "b", "ab"};
    const char *merges[] = {"a b"};
    qs_tok *t = NULL;
    REQUIRE(qs_tok_new_byte_bpe(3, pieces, 1, merges, NULL, -1, -1, 0, NULL, &t) == QS_OK, "%s", qs_last_error());
    static const struct {
        const char *text;
        int n;
        int32_t ids[4];
    } cases[] = {
        {"x", 0, {0}},                /* the first word of the call has no ids */
        {"x x x", 0, {0}},            /* and again from the cache (the space, Ġ, is not in it either) */
        {"xy ab x ab", 2, {2, 2}},    /* " ab": the space dropped, a + b merged */
        {"ab b zz ba", 4, {2, 1, 1, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t *ids = NULL;
        size_t n = 99;
        qs_status st = qs_tok_encode(t, cases[i].text, strlen(cases[i].text), 0, &ids, &n);
        CHECK(st == QS_OK, "'%s': %s", cases[i].text, qs_last_error());
        int same = n == (size_t)cases[i].n;
        for (size_t k = 0; same && k < n; k++) same = ids[k] == cases[i].ids[k];
        CHECK(same, "'%s': %zu ids (%d %d ...), want %d", cases[i].text, n, n ? ids[0] : -1, n > 1 ? ids[1] : -1,
              cases[i].n);
        free(ids);
    }
    qs_tok_free(t);
}

/* ---- NaN through the kernels ---- */

/* The exponential converted its argument's integer part to int with NaN
 * passing its clamps: undefined (UBSan float-cast-overflow). NaN stays NaN,
 * and the clamps still hold for the infinities. */
TEST(hostile_exp_nan) {
    CHECK(isnan(qs_ops_expf(NAN)) && isnan(qs_ops_expf(-NAN)), "exp(nan) = %g", qs_ops_expf(NAN));
    CHECK(qs_ops_expf(-INFINITY) == 0.0f && qs_ops_expf(-1000.0f) == 0.0f, "exp(-inf) = %g", qs_ops_expf(-INFINITY));
    float big = qs_ops_expf(INFINITY);
    CHECK(isfinite(big) && big > 1e38f, "exp(inf) clamps to %g", big);
    CHECK(fabsf(qs_ops_expf(1.0f) - 2.7182817f) < 1e-6f, "exp(1) = %.8f", qs_ops_expf(1.0f));
    /* 40 values: the vector lanes and the tail both see a NaN */
    float x[40];
    for (int i = 0; i < 40; i++) x[i] = (float)i / 8;
    x[5] = NAN;
    x[37] = NAN;
    CHECK(isnan(qs_ops_logsumexp(x, 40)), "logsumexp with a NaN: %g", qs_ops_logsumexp(x, 40));
    qs_ops_softmax_row(x, 40);
    int nan = 0;
    for (int i = 0; i < 40; i++) nan += isnan(x[i]) != 0;
    CHECK(nan == 40, "softmax of a row with a NaN: %d of 40 NaN", nan);
    float g[19];
    for (int i = 0; i < 19; i++) g[i] = i == 11 ? NAN : (float)i - 9;
    qs_ops_silu(g, 19);
    CHECK(isnan(g[11]) && fabsf(g[10] - 1.0f / (1.0f + expf(-1.0f))) < 1e-6f, "silu: %g %g", g[11], g[10]);
}

/* ---- the readers' limits (README "Limits"): a crafted file past each is
 * refused with a message naming the limit, before anything is allocated ---- */

typedef struct {
    uint8_t b[512];
    size_t n;
} gbuf;

static void g_u32(gbuf *g, uint32_t v) {
    for (int i = 0; i < 4; i++) g->b[g->n++] = (uint8_t)(v >> 8 * i);
}
static void g_u64(gbuf *g, uint64_t v) {
    for (int i = 0; i < 8; i++) g->b[g->n++] = (uint8_t)(v >> 8 * i);
}
static void g_str(gbuf *g, const char *s) {
    g_u64(g, strlen(s));
    memcpy(g->b + g->n, s, strlen(s));
    g->n += strlen(s);
}
/* a GGUF v3 header with n_t tensors and n_kv key/values; 64 zero bytes of padding follow what
 * the caller adds, so that a count is refused for its limit, not for the file's end */
static void g_head(gbuf *g, uint64_t n_t, uint64_t n_kv) {
    g->n = 0;
    memcpy(g->b, "GGUF", 4);
    g->n = 4;
    g_u32(g, 3);
    g_u64(g, n_t);
    g_u64(g, n_kv);
}
static qs_status g_open(const char *dir, gbuf *g, char *msg, size_t cap) {
    char path[512];
    snprintf(path, sizeof path, "%s/l.gguf", dir);
    memset(g->b + g->n, 0, 64);
    FILE *f = fopen(path, "wb");
    if (!f) return QS_EIO;
    fwrite(g->b, 1, g->n + 64, f);
    fclose(f);
    qs_gguf *h = NULL;
    qs_status st = qs_gguf_open(path, &h);
    snprintf(msg, cap, "%s", st ? qs_last_error() : "");
    qs_gguf_close(h);
    unlink(path);
    return st;
}

TEST(hostile_gguf_limits) {
    char dir[256], msg[512];
    REQUIRE(new_dir(dir, sizeof dir), "mkdtemp");
    gbuf g;
    g_head(&g, QS_GGUF_MAX_TENSORS + 1, 0);
    CHECK(g_open(dir, &g, msg, sizeof msg) == QS_EFORMAT && has(msg, "1048577 tensors and 0 key/values, over the limits of 1048576 and 65536"),
          "tensor count: %s", msg);
    g_head(&g, 0, QS_GGUF_MAX_KV + 1);
    CHECK(g_open(dir, &g, msg, sizeof msg) == QS_EFORMAT && has(msg, "65537 key/values, over the limits"), "kv count: %s", msg);
    /* a key of 257 bytes (the file holds them) */
    g_head(&g, 0, 1);
    g_u64(&g, QS_GGUF_MAX_NAME + 1);
    memset(g.b + g.n, 'k', QS_GGUF_MAX_NAME + 1);
    g.n += QS_GGUF_MAX_NAME + 1;
    g_u32(&g, 8);
    CHECK(g_open(dir, &g, msg, sizeof msg) == QS_EFORMAT && has(msg, "key at byte 24 has length 257, over the limit of 256 bytes"),
          "key length: %s", msg);
    /* a string value, an array, a string in a nested array past their limits */
    g_head(&g, 0, 1);
    g_str(&g, "tokenizer.chat_template");
    g_u32(&g, 8); /* STRING */
    g_u64(&g, (uint64_t)QS_GGUF_MAX_STRING + 1);
    CHECK(g_open(dir, &g, msg, sizeof msg) == QS_EFORMAT &&
              has(msg, "tokenizer.chat_template at byte 59 has length 16777217, over the limit of 16777216 bytes"),
          "string length: %s", msg);
    g_head(&g, 0, 1);
    g_str(&g, "tokenizer.ggml.tokens");
    g_u32(&g, 9); /* ARRAY */
    g_u32(&g, 8); /* of STRING */
    g_u64(&g, (uint64_t)QS_GGUF_MAX_ARRAY + 1);
    CHECK(g_open(dir, &g, msg, sizeof msg) == QS_EFORMAT &&
              has(msg, "array 'tokenizer.ggml.tokens' claims 16777217 elements, over the limit of 16777216"),
          "array length: %s", msg);
    g_head(&g, 0, 1);
    g_str(&g, "x.nested");
    g_u32(&g, 9);
    g_u32(&g, 9); /* of ARRAY */
    g_u64(&g, 1);
    g_u32(&g, 8); /* one array of STRING */
    g_u64(&g, 1);
    g_u64(&g, (uint64_t)QS_GGUF_MAX_STRING + 1);
    CHECK(g_open(dir, &g, msg, sizeof msg) == QS_EFORMAT && has(msg, "a string of array 'x.nested' has length 16777217, over the limit"),
          "nested string: %s", msg);
    /* tensors: 5 dimensions; one dimension over 2^40; a product over 2^56 */
    static const struct {
        uint32_t nd;
        uint64_t ne[5];
        const char *want;
    } shapes[] = {
        {5, {1, 1, 1, 1, 1}, "tensor 'w' has 5 dimensions (1 to 4)"},
        {2, {4, ((uint64_t)1 << 40) + 1}, "tensor 'w' dimension 1 is 1099511627777, over the limit of 2^40"},
        {3, {(uint64_t)1 << 30, (uint64_t)1 << 20, 1 << 7}, "tensor 'w' has more than 2^56 elements (the limit)"},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        g_head(&g, 1, 0);
        g_str(&g, "w");
        g_u32(&g, shapes[i].nd);
        for (uint32_t d = 0; d < shapes[i].nd; d++) g_u64(&g, shapes[i].ne[d]);
        g_u32(&g, 0);
        g_u64(&g, 0);
        CHECK(g_open(dir, &g, msg, sizeof msg) == QS_EFORMAT && has(msg, shapes[i].want), "shape %zu: %s", i, msg);
    }
    rmdir(dir);
}
