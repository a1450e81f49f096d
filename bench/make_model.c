/* qs_make_model — random-weight Llama models of real shapes, written to disk
 * the way Hugging Face and llama.cpp store them, for `make bench` and for
 * trying qscope on a model too big to hold in fp32.
 *
 *     qs_make_model --shape tinyllama --format gguf-q8_0 --out /tmp/tl-q8_0.gguf
 *     qs_make_model --shape llama7b --format st-bf16 --out /tmp/llama7b-bf16
 *
 * Shapes: small (d 768, 12 layers), tinyllama (d 2048, 22 layers, 32/4
 * heads, ffn 5632), llama7b (d 4096, 32 layers, ffn 11008); vocab 32000.
 * Formats: st-f32, st-f16, st-bf16 (a directory: config.json +
 * model.safetensors), gguf-f32, gguf-f16, gguf-q8_0, gguf-q4_0 (one file;
 * norms F32, every matrix in the named type, and a stand-in SentencePiece
 * vocabulary so that llama.cpp's tools load it too). Matrices are N(0, 0.02^2),
 * norms 1. Tensors are generated and written one at a time (a 7B model
 * needs no more memory than its largest matrix), to a temporary name that is
 * renamed when complete. --tokenizer-from DIR copies DIR's tokenizer.json and
 * tokenizer_config.json into a safetensors directory (a Llama-2 tokenizer
 * of 32000 tokens fits these shapes), so text commands work on it. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"

typedef struct {
    const char *name;
    int d, layers, heads, kv_heads, ff, vocab, ctx;
} shape;

static const shape shapes[] = {
    {"small", 768, 12, 12, 12, 2048, 32000, 2048},
    {"tinyllama", 2048, 22, 32, 4, 5632, 32000, 2048},
    {"llama7b", 4096, 32, 32, 32, 11008, 32000, 4096},
};

enum { T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q8_0 = 8, T_BF16 = 30 };

typedef struct {
    char name[96];
    int64_t rows, cols; /* cols 0: a vector */
    int type;
    int norm;           /* values 1 */
    size_t bytes;
    size_t offset;
} tensor;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float gauss(void) { /* N(0, 1), Box-Muller on xorshift64* */
    static int have;
    static float spare;
    if (have) {
        have = 0;
        return spare;
    }
    double u, v;
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    u = ((rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0) + 1e-300;
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    v = ((rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
    double r = sqrt(-2 * log(u));
    spare = (float)(r * sin(2 * M_PI * v));
    have = 1;
    return (float)(r * cos(2 * M_PI * v));
}

static size_t row_bytes(int type, int64_t n) {
    switch (type) {
    case T_F32: return (size_t)n * 4;
    case T_F16:
    case T_BF16: return (size_t)n * 2;
    case T_Q8_0: return (size_t)n / 32 * 34;
    case T_Q4_0: return (size_t)n / 32 * 18;
    }
    return 0;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }

/* one row of n values into dst as type (ggml's reference quantizers for Q8_0 and Q4_0) */
static void encode_row(int type, const float *x, int64_t n, uint8_t *dst) {
    if (type == T_F32) {
        memcpy(dst, x, (size_t)n * 4);
    } else if (type == T_F16 || type == T_BF16) {
        for (int64_t i = 0; i < n; i++) put16(dst + 2 * i, type == T_F16 ? qs_f32_to_f16(x[i]) : qs_f32_to_bf16(x[i]));
    } else if (type == T_Q8_0) {
        for (int64_t b = 0; b < n / 32; b++, x += 32, dst += 34) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
            float d = amax / 127, id = d ? 1 / d : 0;
            put16(dst, qs_f32_to_f16(d));
            for (int j = 0; j < 32; j++) dst[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
        }
    } else { /* Q4_0 */
        for (int64_t b = 0; b < n / 32; b++, x += 32, dst += 18) {
            float amax = 0, max = 0;
            for (int j = 0; j < 32; j++)
                if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
            float d = max / -8, id = d ? 1 / d : 0;
            put16(dst, qs_f32_to_f16(d));
            for (int j = 0; j < 16; j++) {
                int a = (int)(x[j] * id + 8.5f), c = (int)(x[j + 16] * id + 8.5f);
                a = a > 15 ? 15 : a, c = c > 15 ? 15 : c;
                dst[2 + j] = (uint8_t)(a | c << 4);
            }
        }
    }
}

static int add(tensor *t, int *n, int type, int norm, int64_t rows, int64_t cols, const char *fmt, int layer) {
    tensor *x = &t[(*n)++];
    snprintf(x->name, sizeof x->name, fmt, layer);
    x->rows = rows;
    x->cols = cols;
    x->type = norm ? T_F32 : type;
    x->norm = norm;
    x->bytes = norm ? (size_t)rows * 4 : row_bytes(x->type, cols) * (size_t)rows;
    return 0;
}

/* the Llama tensors in HF (gguf = 0) or llama.cpp (gguf = 1) names */
static int tensors(const shape *s, int type, int gguf, tensor *t) {
    int n = 0, d = s->d, hd = d / s->heads, kvd = s->kv_heads * hd;
    add(t, &n, type, 0, s->vocab, d, gguf ? "token_embd.weight" : "model.embed_tokens.weight", 0);
    for (int l = 0; l < s->layers; l++) {
        add(t, &n, type, 1, d, 0, gguf ? "blk.%d.attn_norm.weight" : "model.layers.%d.input_layernorm.weight", l);
        add(t, &n, type, 0, d, d, gguf ? "blk.%d.attn_q.weight" : "model.layers.%d.self_attn.q_proj.weight", l);
        add(t, &n, type, 0, kvd, d, gguf ? "blk.%d.attn_k.weight" : "model.layers.%d.self_attn.k_proj.weight", l);
        add(t, &n, type, 0, kvd, d, gguf ? "blk.%d.attn_v.weight" : "model.layers.%d.self_attn.v_proj.weight", l);
        add(t, &n, type, 0, d, d, gguf ? "blk.%d.attn_output.weight" : "model.layers.%d.self_attn.o_proj.weight", l);
        add(t, &n, type, 1, d, 0, gguf ? "blk.%d.ffn_norm.weight" : "model.layers.%d.post_attention_layernorm.weight", l);
        add(t, &n, type, 0, s->ff, d, gguf ? "blk.%d.ffn_gate.weight" : "model.layers.%d.mlp.gate_proj.weight", l);
        add(t, &n, type, 0, s->ff, d, gguf ? "blk.%d.ffn_up.weight" : "model.layers.%d.mlp.up_proj.weight", l);
        add(t, &n, type, 0, d, s->ff, gguf ? "blk.%d.ffn_down.weight" : "model.layers.%d.mlp.down_proj.weight", l);
    }
    add(t, &n, type, 1, d, 0, gguf ? "output_norm.weight" : "model.norm.weight", 0);
    add(t, &n, type, 0, s->vocab, d, gguf ? "output.weight" : "lm_head.weight", 0);
    return n;
}

static int write_data(FILE *f, const tensor *t, int n, size_t align) {
    size_t maxc = 0;
    for (int i = 0; i < n; i++) maxc = (size_t)t[i].cols > maxc ? (size_t)t[i].cols : maxc;
    float *row = malloc(maxc * sizeof *row + 4);
    uint8_t *enc = malloc(maxc * 4 + 64), zero[64] = {0};
    size_t at = 0;
    for (int i = 0; i < n && row && enc; i++) {
        if (align && t[i].offset > at) fwrite(zero, 1, t[i].offset - at, f), at = t[i].offset;
        if (t[i].norm) {
            for (int64_t r = 0; r < t[i].rows; r++) {
                float one = 1.0f;
                fwrite(&one, 4, 1, f);
            }
        } else {
            size_t rb = row_bytes(t[i].type, t[i].cols);
            for (int64_t r = 0; r < t[i].rows; r++) {
                for (int64_t j = 0; j < t[i].cols; j++) row[j] = 0.02f * gauss();
                encode_row(t[i].type, row, t[i].cols, enc);
                if (fwrite(enc, 1, rb, f) != rb) break;
            }
        }
        at += t[i].bytes;
    }
    int ok = row && enc && !ferror(f);
    free(row);
    free(enc);
    return ok;
}

static void wstr(FILE *f, const char *s) {
    uint64_t n = strlen(s);
    fwrite(&n, 8, 1, f);
    fwrite(s, 1, n, f);
}
static void wkv_u32(FILE *f, const char *k, uint32_t v) {
    uint32_t ty = 4;
    wstr(f, k), fwrite(&ty, 4, 1, f), fwrite(&v, 4, 1, f);
}
static void wkv_f32(FILE *f, const char *k, float v) {
    uint32_t ty = 6;
    wstr(f, k), fwrite(&ty, 4, 1, f), fwrite(&v, 4, 1, f);
}
static void wkv_str(FILE *f, const char *k, const char *v) {
    uint32_t ty = 8;
    wstr(f, k), fwrite(&ty, 4, 1, f), wstr(f, v);
}

/* a stand-in SentencePiece vocabulary, so that llama.cpp loads the file:
 * <unk>, <s>, </s>, the 256 byte tokens, then "▁t<i>" pieces */
static void wkv_vocab(FILE *f, int vocab) {
    uint32_t arr = 9, ts = 8, tf = 6, ti = 5;
    uint64_t n = (uint64_t)vocab;
    char piece[32];
    wstr(f, "tokenizer.ggml.tokens"), fwrite(&arr, 4, 1, f), fwrite(&ts, 4, 1, f), fwrite(&n, 8, 1, f);
    for (int i = 0; i < vocab; i++) {
        if (i < 3) wstr(f, i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3), wstr(f, piece);
        else snprintf(piece, sizeof piece, "\xe2\x96\x81t%d", i), wstr(f, piece);
    }
    wstr(f, "tokenizer.ggml.scores"), fwrite(&arr, 4, 1, f), fwrite(&tf, 4, 1, f), fwrite(&n, 8, 1, f);
    for (int i = 0; i < vocab; i++) {
        float sc = i < 259 ? 0.0f : -(float)i;
        fwrite(&sc, 4, 1, f);
    }
    wstr(f, "tokenizer.ggml.token_type"), fwrite(&arr, 4, 1, f), fwrite(&ti, 4, 1, f), fwrite(&n, 8, 1, f);
    for (int i = 0; i < vocab; i++) {
        int32_t ty = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
        fwrite(&ty, 4, 1, f);
    }
}

static int write_gguf(const char *path, const shape *s, int type) {
    tensor *t = calloc(16 + 9 * (size_t)s->layers, sizeof *t);
    int n = tensors(s, type, 1, t);
    size_t off = 0;
    for (int i = 0; i < n; i++) t[i].offset = off, off += (t[i].bytes + 31) / 32 * 32;
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    uint32_t v = 3;
    uint64_t nt = (uint64_t)n, nkv = 17;
    fwrite("GGUF", 1, 4, f), fwrite(&v, 4, 1, f), fwrite(&nt, 8, 1, f), fwrite(&nkv, 8, 1, f);
    wkv_str(f, "general.architecture", "llama");
    wkv_str(f, "general.name", s->name);
    wkv_u32(f, "llama.context_length", (uint32_t)s->ctx);
    wkv_u32(f, "llama.embedding_length", (uint32_t)s->d);
    wkv_u32(f, "llama.block_count", (uint32_t)s->layers);
    wkv_u32(f, "llama.feed_forward_length", (uint32_t)s->ff);
    wkv_u32(f, "llama.attention.head_count", (uint32_t)s->heads);
    wkv_u32(f, "llama.attention.head_count_kv", (uint32_t)s->kv_heads);
    wkv_u32(f, "llama.rope.dimension_count", (uint32_t)(s->d / s->heads));
    wkv_f32(f, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    wkv_f32(f, "llama.rope.freq_base", 10000.0f);
    wkv_str(f, "tokenizer.ggml.model", "llama");
    wkv_vocab(f, s->vocab);
    wkv_u32(f, "tokenizer.ggml.bos_token_id", 1);
    wkv_u32(f, "tokenizer.ggml.eos_token_id", 2);
    for (int i = 0; i < n; i++) {
        wstr(f, t[i].name);
        uint32_t nd = t[i].cols ? 2 : 1, ty = (uint32_t)t[i].type;
        fwrite(&nd, 4, 1, f);
        uint64_t ne0 = (uint64_t)(t[i].cols ? t[i].cols : t[i].rows), ne1 = (uint64_t)t[i].rows;
        fwrite(&ne0, 8, 1, f);
        if (t[i].cols) fwrite(&ne1, 8, 1, f);
        fwrite(&ty, 4, 1, f);
        uint64_t o = t[i].offset;
        fwrite(&o, 8, 1, f);
    }
    long pos = ftell(f);
    static const uint8_t zero[32] = {0};
    if (pos % 32) fwrite(zero, 1, (size_t)(32 - pos % 32), f);
    int ok = write_data(f, t, n, 32);
    ok = fclose(f) == 0 && ok;
    free(t);
    return ok;
}

static int copy_file(const char *from_dir, const char *to_dir, const char *name) {
    char a[1200], b[1200];
    snprintf(a, sizeof a, "%.1100s/%s", from_dir, name);
    snprintf(b, sizeof b, "%.1100s/%s", to_dir, name);
    char *data;
    size_t len;
    if (qs_io_read_all(a, &data, &len)) return 0;
    int ok = qs_io_write_atomic(b, data, len) == QS_OK;
    free(data);
    return ok;
}

static int write_st(const char *dir, const shape *s, int type) {
    tensor *t = calloc(16 + 9 * (size_t)s->layers, sizeof *t);
    int n = tensors(s, type, 0, t);
    char path[1200];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%.1100s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
            "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
            "\"intermediate_size\": %d, \"vocab_size\": %d, \"max_position_embeddings\": %d, \"rms_norm_eps\": 1e-05, "
            "\"rope_theta\": 10000.0, \"hidden_act\": \"silu\", \"tie_word_embeddings\": false, \"torch_dtype\": \"%s\"}\n",
            s->d, s->layers, s->heads, s->kv_heads, s->ff, s->vocab, s->ctx,
            type == T_F32 ? "float32" : type == T_F16 ? "float16" : "bfloat16");
    fclose(f);
    /* header: names, dtypes, shapes, offsets; padded with spaces to 8 bytes */
    size_t cap = 256 + (size_t)n * 200, len = 0, off = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{");
    const char *dt = type == T_F32 ? "F32" : type == T_F16 ? "F16" : "BF16";
    for (int i = 0; i < n; i++) {
        t[i].offset = off;
        off += t[i].bytes;
        if (t[i].cols)
            len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}",
                                    i ? "," : "", t[i].name, t[i].norm ? "F32" : dt, (long long)t[i].rows,
                                    (long long)t[i].cols, t[i].offset, off);
        else
            len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
                                    i ? "," : "", t[i].name, (long long)t[i].rows, t[i].offset, off);
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    snprintf(path, sizeof path, "%.1100s/model.safetensors", dir);
    f = fopen(path, "wb");
    if (!f) return 0;
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(h, 1, len, f);
    int ok = write_data(f, t, n, 0);
    ok = fclose(f) == 0 && ok;
    free(h);
    free(t);
    return ok;
}

int main(int argc, char **argv) {
    const char *shape_name = "tinyllama", *format = "gguf-q8_0", *out = NULL, *tok = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--shape")) shape_name = argv[i + 1];
        else if (!strcmp(argv[i], "--format")) format = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else if (!strcmp(argv[i], "--tokenizer-from")) tok = argv[i + 1];
    }
    const shape *s = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        if (!strcmp(shapes[i].name, shape_name)) s = &shapes[i];
    static const struct {
        const char *name;
        int gguf, type;
    } formats[] = {{"st-f32", 0, T_F32},    {"st-f16", 0, T_F16},     {"st-bf16", 0, T_BF16},  {"gguf-f32", 1, T_F32},
                   {"gguf-f16", 1, T_F16}, {"gguf-q8_0", 1, T_Q8_0}, {"gguf-q4_0", 1, T_Q4_0}};
    int fi = -1;
    for (size_t i = 0; i < sizeof formats / sizeof *formats; i++)
        if (!strcmp(formats[i].name, format)) fi = (int)i;
    if (!s || fi < 0 || !out) {
        fprintf(stderr, "usage: qs_make_model --shape small|tinyllama|llama7b --format "
                        "st-f32|st-f16|st-bf16|gguf-f32|gguf-f16|gguf-q8_0|gguf-q4_0 --out PATH [--tokenizer-from DIR]\n");
        return 2;
    }
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.partial", out);
    int ok = formats[fi].gguf ? write_gguf(tmp, s, formats[fi].type) : write_st(tmp, s, formats[fi].type);
    if (ok && tok && !formats[fi].gguf)
        ok = copy_file(tok, tmp, "tokenizer.json") && copy_file(tok, tmp, "tokenizer_config.json");
    if (!ok || rename(tmp, out) != 0) {
        fprintf(stderr, "qs_make_model: cannot write %s\n", out);
        return 1;
    }
    printf("%s: %s %s\n", out, s->name, format);
    return 0;
}
