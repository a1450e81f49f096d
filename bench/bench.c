/* qs_bench — the speed figures of `make bench`, printed and written to JSON.
 *
 * Every figure is measured in this run, beside cblas_sgemm measured in the
 * same run, so ratios stay meaningful on a noisy machine:
 *   - sgemm GFLOP/s at M=512, N=K=768 (X W^T, as a linear layer runs);
 *   - per model: prefill tokens/s (one batch of ctx tokens, logits of the
 *     last row only, as generation does), decode tokens/s over 128 tokens,
 *     the prefill's effective GFLOP/s (2 x multiply-adds of every GEMM:
 *     linear layers, causal attention, the head row) and its ratio to sgemm,
 *     and peak RSS against what the process must hold: the weights (for a
 *     variant, the fp32 model it shares plus its own tensors as stored) and
 *     the KV cache. Each model runs in its own child process so its peak RSS
 *     is its own.
 * Models: the fixtures in ../shared (when present) and synthetic models with
 * random weights: OPT-125m's shapes, and the two Llama shapes of PERF.md;
 * each as fp32 and as variants (LLM.int8(), SliceGPT at 10-30%, calibrated
 * on random ids). Also the int8 GEMM's GOP/s per kernel against sgemm at
 * M = 512 and (K, N) in {(768, 768), (768, 3072), (3072, 768)}, and each
 * tokenizer's speed on WikiText-2's test text (tokens/s: the first pass,
 * with an empty word cache, and the best of three).
 *
 * usage: qs_bench [--json FILE] [--quick] [--only NAME]
 */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kern/kern.h"
#include "stats/stats.h"
#include "run/run.h"
#include "methods/methods.h"
#include "base/base.h"
#include "model/model.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Seconds per call of fn(ud): the best of 5 runs of at least 0.2 s, after
 * one warm-up call. */
static double best_seconds(void (*fn)(void *), void *ud) {
    fn(ud);
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        int it = 0;
        do {
            fn(ud);
            it++;
        } while (now() - t0 < 0.2);
        double t = (now() - t0) / it;
        if (t < best) best = t;
    }
    return best;
}

typedef struct {
    const float *x, *w;
    float *y;
    const int8_t *a;
    const qs_i8mat *pb;
    int32_t *c;
    int M, N, K;
} gemm_args;

static void run_sgemm(void *ud) {
    gemm_args *g = ud;
    qs_blas_linear(g->x, g->M, g->w, NULL, g->N, g->K, g->y);
}

static void run_i8gemm(void *ud) {
    gemm_args *g = ud;
    qs_i8_gemm(g->a, g->M, g->K, g->pb, g->c, g->N);
}

static double bench_sgemm(int M, int N, int K) {
    float *x = malloc((size_t)M * K * 4), *w = malloc((size_t)N * K * 4), *y = malloc((size_t)M * N * 4);
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = (float)((i * 7 % 13) - 6) * 0.01f;
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = (float)((i * 5 % 11) - 5) * 0.01f;
    gemm_args g = {.x = x, .w = w, .y = y, .M = M, .N = N, .K = K};
    double best = best_seconds(run_sgemm, &g);
    free(x);
    free(w);
    free(y);
    return 2.0 * M * N * K / best / 1e9;
}

static double bench_i8gemm(int M, int N, int K) {
    int8_t *a = malloc((size_t)M * K), *b = malloc((size_t)N * K);
    int32_t *c = malloc((size_t)M * N * sizeof *c);
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (int8_t)((i * 7 % 255) - 127);
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (int8_t)((i * 5 % 251) - 125);
    qs_i8mat *pb;
    if (qs_i8mat_pack(b, N, K, &pb)) {
        free(a);
        free(b);
        free(c);
        return 0;
    }
    gemm_args g = {.a = a, .pb = pb, .c = c, .M = M, .N = N, .K = K};
    double best = best_seconds(run_i8gemm, &g);
    qs_i8mat_free(pb);
    free(a);
    free(b);
    free(c);
    return 2.0 * M * N * K / best / 1e9;
}

typedef struct {
    char name[64];
    char variant[64];
    int ctx;
    double prefill_tok_s, decode_tok_s, prefill_gflops, peak_rss_mb, weights_mb, base_mb, kv_mb;
    long long params;
} result;

/* multiply-add FLOPs of a prefill of n tokens (last-row head) */
static double prefill_flops(const qs_model *m, int n) {
    const qs_config *c = &m->cfg;
    double lin = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const qs_layer *L = &m->w.layers[i];
        qs_linear *ls[QS_LAYER_LINEARS];
        int nl = qs_layer_linears((qs_layer *)L, 0, ls);
        for (int j = 0; j < nl; j++)
            if (ls[j]->w) lin += (double)ls[j]->n_out * ls[j]->n_in;
    }
    double attn = 2.0 * c->n_layers * c->n_heads * c->head_dim * (double)n * (n + 1) / 2;
    return 2.0 * (lin * n + attn + (double)c->vocab * c->d_model);
}

/* multiply-add FLOPs of a prefill of n tokens through a variant's weights */
static double variant_flops(const qs_weights *w, const qs_config *c, int n) {
    double lin = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const qs_layer *L = &w->layers[i];
        qs_linear *ls[QS_LAYER_LINEARS];
        int nl = qs_layer_linears((qs_layer *)L, 1, ls);
        for (int j = 0; j < nl; j++)
            if (ls[j]->w || ls[j]->kern) lin += (double)ls[j]->n_out * ls[j]->n_in;
    }
    double attn = 2.0 * c->n_layers * c->n_heads * c->head_dim * (double)n * (n + 1) / 2;
    return 2.0 * (lin * n + attn + (double)w->head.n_out * w->head.n_in);
}

static int run_model(qs_model *m, const char *name, const char *spec, int ctx, int n_decode, result *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->variant, sizeof r->variant, "%s", spec);
    r->ctx = ctx;
    qs_variant *v = NULL;
    qs_calib cal = {0};
    if (strcmp(spec, "fp32")) {
        /* calibration on random ids: SliceGPT needs a signal, any will do for speed */
        int rows = 4, cctx = ctx < 512 ? ctx : 512;
        cal.ids = malloc((size_t)rows * cctx * sizeof *cal.ids);
        cal.n_rows = rows;
        cal.ctx = cctx;
        uint64_t z = 12345;
        for (int i = 0; i < rows * cctx; i++) {
            z = z * 6364136223846793005ull + 1442695040888963407ull;
            cal.ids[i] = (int32_t)((z >> 33) % (uint64_t)m->cfg.vocab);
        }
        qs_variant_opts vo = {.calib = &cal};
        if (qs_variant_new(m, spec, &vo, &v)) {
            fprintf(stderr, "bench: %s %s: %s\n", name, spec, qs_last_error());
            qs_calib_free(&cal);
            return 1;
        }
    }
    r->params = v ? qs_variant_params(v) : qs_model_params(m);
    r->weights_mb = (v ? qs_variant_weight_bytes(v) : qs_model_weight_bytes(m)) / 1e6;
    /* a variant shares the model it was built from: the process holds both */
    r->base_mb = v ? qs_model_weight_bytes(m) / 1e6 : 0;
    r->kv_mb = (double)qs_ctx_kv_bytes_per_token(m) * ctx / 1e6;
    qs_ctx *c;
    if (qs_ctx_new(m, v ? qs_variant_exec(v) : NULL, ctx, &c)) {
        fprintf(stderr, "bench: %s\n", qs_last_error());
        return 1;
    }
    int V = m->cfg.vocab;
    int32_t *ids = malloc((size_t)ctx * sizeof *ids);
    for (int i = 0; i < ctx; i++) ids[i] = (int32_t)((i * 7919u + 17) % (unsigned)V);
    float *logits = malloc((size_t)V * sizeof(float));
    /* prefill: best of a few runs (the first also warms caches and threads) */
    int reps = ctx >= 2048 || r->params > 500000000 ? 2 : 3;
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        qs_ctx_reset(c);
        double t0 = now();
        if (qs_forward(c, ids, ctx, logits, QS_LOGITS_LAST)) {
            fprintf(stderr, "bench: %s\n", qs_last_error());
            return 1;
        }
        double t = now() - t0;
        if (t < best) best = t;
    }
    r->prefill_tok_s = ctx / best;
    r->prefill_gflops = (v ? variant_flops(qs_variant_exec(v)->w, &m->cfg, ctx) : prefill_flops(m, ctx)) / best / 1e9;
    /* decode: n_decode single tokens after a short prompt */
    if (n_decode > 0) {
        int p = 16;
        qs_ctx_reset(c);
        qs_forward(c, ids, p, logits, QS_LOGITS_LAST);
        if (p + n_decode > ctx) n_decode = ctx - p;
        double t0 = now();
        for (int i = 0; i < n_decode; i++) qs_forward(c, &ids[p + i], 1, logits, QS_LOGITS_LAST);
        r->decode_tok_s = n_decode / (now() - t0);
    }
    free(ids);
    free(logits);
    qs_ctx_free(c);
    qs_variant_free(v);
    qs_calib_free(&cal);
    return 0;
}

/* Run one model bench in a child process; the child reports through a pipe. */
typedef int (*bench_fn)(const void *arg, result *r);

static int in_child(bench_fn fn, const void *arg, result *out) {
    int fd[2];
    if (pipe(fd)) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        result r;
        int rc = fn(arg, &r);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        r.peak_rss_mb = ru.ru_maxrss / 1024.0;
        if (!rc && write(fd[1], &r, sizeof r) != (ssize_t)sizeof r) rc = 1;
        _exit(rc);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], out, sizeof *out);
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    return got == (ssize_t)sizeof *out && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

typedef struct {
    const char *name;
    const char *path; /* fixture, or NULL for synthetic */
    qs_config cfg;
    int ctx, n_decode;
    const char *variant;
} spec;

static int bench_spec(const void *arg, result *r) {
    const spec *s = arg;
    qs_model *m;
    qs_status st = s->path ? qs_model_load(s->path, NULL, &m) : qs_model_synth(&s->cfg, 42, 0.02f, &m);
    if (st) {
        fprintf(stderr, "bench: %s: %s\n", s->name, qs_last_error());
        return 1;
    }
    int rc = run_model(m, s->name, s->variant ? s->variant : "fp32", s->ctx, s->n_decode, r);
    qs_model_free(m);
    return rc;
}

static qs_config opt_cfg(int d, int layers, int heads, int ffn, int vocab, int maxpos) {
    qs_config c = {.arch = QS_ARCH_OPT, .d_model = d, .n_layers = layers, .n_heads = heads,
                   .n_kv_heads = heads, .head_dim = d / heads, .d_ff = ffn, .vocab = vocab,
                   .max_pos = maxpos, .pos_offset = 2, .act = QS_ACT_RELU, .norm = QS_NORM_LAYER,
                   .norm_eps = 1e-5f, .tied_head = 1, .bos_id = 2, .eos_id = 2, .pad_id = 1};
    snprintf(c.arch_name, sizeof c.arch_name, "OPTForCausalLM");
    return c;
}

static qs_config llama_cfg(int d, int layers, int heads, int kv, int ffn, int vocab, int maxpos) {
    qs_config c = {.arch = QS_ARCH_LLAMA, .d_model = d, .n_layers = layers, .n_heads = heads,
                   .n_kv_heads = kv, .head_dim = d / heads, .d_ff = ffn, .vocab = vocab,
                   .max_pos = maxpos, .act = QS_ACT_SILU, .norm = QS_NORM_RMS, .norm_eps = 1e-5f,
                   .rope_theta = 10000, .tied_head = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1};
    snprintf(c.arch_name, sizeof c.arch_name, "LlamaForCausalLM");
    return c;
}

/* Tokenizer speed on a text: tokens/s of the first pass (cold word cache)
 * and the best of three; 0 when the tokenizer or text is missing. */
static int bench_tokenizer(const char *dir, const char *text, size_t len, double *cold, double *best, size_t *n_ids) {
    qs_tok *t = NULL;
    if (qs_tok_load_hf(dir, &t) != QS_OK) return 0;
    *cold = *best = 0;
    for (int r = 0; r < 3; r++) {
        int32_t *ids = NULL;
        size_t n = 0;
        double t0 = now();
        qs_status st = qs_tok_encode(t, text, len, 0, &ids, &n);
        double dt = now() - t0;
        free(ids);
        if (st) {
            qs_tok_free(t);
            return 0;
        }
        double rate = n / dt;
        if (r == 0) *cold = rate;
        if (rate > *best) *best = rate;
        *n_ids = n;
    }
    qs_tok_free(t);
    return 1;
}

int main(int argc, char **argv) {
    const char *json_path = NULL, *only = NULL;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: qs_bench [--json FILE] [--quick] [--only NAME]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("qscope bench — %s\n", qs_blas_describe());
    double sg = bench_sgemm(512, 768, 768);
    printf("cblas_sgemm 512x768x768: %.1f GFLOP/s\n\n", sg);

    const char *shared = getenv("QS_SHARED") ? getenv("QS_SHARED") : "../shared";
    char p[4][1024];
    snprintf(p[0], sizeof p[0], "%s/models/opt-mini", shared);
    snprintf(p[1], sizeof p[1], "%s/models/gpt2-mini", shared);
    snprintf(p[2], sizeof p[2], "%s/models/llama-mini", shared);
    snprintf(p[3], sizeof p[3], "%s/models/stories260K/stories260K.bin", shared);
    spec specs[64];
    int ns = 0;
    const char *fx[4] = {"opt-mini", "gpt2-mini", "llama-mini", "stories260K"};
    for (int i = 0; i < 4; i++)
        if (qs_io_exists(p[i])) {
            specs[ns++] = (spec){fx[i], p[i], {0}, 512, 128, "fp32"};
            if (i < 3) specs[ns++] = (spec){fx[i], p[i], {0}, 512, 128, "int8"};
        }
    if (!qs_io_exists(p[0]) && qs_io_is_dir("models/opt-mini")) {
        specs[ns++] = (spec){"opt-mini", "models/opt-mini", {0}, 512, 128, "fp32"};
        specs[ns++] = (spec){"opt-mini", "models/opt-mini", {0}, 512, 128, "int8"};
    }
    qs_config opt125 = opt_cfg(768, 12, 12, 3072, 50272, 2048);
    specs[ns++] = (spec){"opt-125m-shape", NULL, opt125, 512, 128, "fp32"};
    specs[ns++] = (spec){"opt-125m-shape", NULL, opt125, 512, 128, "int8"};
    specs[ns++] = (spec){"opt-125m-shape", NULL, opt125, 2048, 0, "fp32"};
    specs[ns++] = (spec){"opt-125m-shape", NULL, opt125, 2048, 0, "int8"};
    const char *slices[] = {"slice:ratio=0.1", "slice:ratio=0.2", "slice:ratio=0.25", "slice:ratio=0.3"};
    for (int i = 0; i < 4; i++) specs[ns++] = (spec){"opt-125m-shape", NULL, opt125, 512, 128, slices[i]};
    if (!quick) {
        qs_config small = llama_cfg(768, 12, 12, 12, 2048, 32000, 2048);
        qs_config tiny = llama_cfg(2048, 22, 32, 4, 5632, 32000, 2048);
        specs[ns++] = (spec){"llama-small-shape", NULL, small, 512, 128, "fp32"};
        specs[ns++] = (spec){"llama-small-shape", NULL, small, 512, 128, "int8"};
        specs[ns++] = (spec){"tinyllama-shape", NULL, tiny, 512, 128, "fp32"};
        specs[ns++] = (spec){"tinyllama-shape", NULL, tiny, 512, 128, "int8"};
    }

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "blas", qs_blas_describe());
    cJSON_AddNumberToObject(root, "sgemm_512x768x768_gflops", sg);

    /* int8 GEMM against sgemm at the shapes of OPT-125m's layers */
    cJSON *gem = cJSON_AddArrayToObject(root, "int8_gemm");
    const int shapes[3][2] = {{768, 768}, {768, 3072}, {3072, 768}};
    const char *kernels[3] = {"avx512vnni", "avx2", "ref"};
    printf("int8 GEMM, M = 512 (GOP/s; ratio to cblas_sgemm GFLOP/s at the same shape, same run)\n");
    printf("%-12s %10s", "K x N", "sgemm");
    for (int k = 0; k < 2; k++) printf(" %18s", kernels[k]);
    putchar('\n');
    for (int i = 0; i < 3; i++) {
        int K = shapes[i][0], N = shapes[i][1];
        double sgs = bench_sgemm(512, N, K);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "M", 512);
        cJSON_AddNumberToObject(o, "K", K);
        cJSON_AddNumberToObject(o, "N", N);
        cJSON_AddNumberToObject(o, "sgemm_gflops", sgs);
        printf("%5d x %-5d %10.1f", K, N, sgs);
        for (int k = 0; k < 2; k++) {
            if (!qs_i8_kernel_available(kernels[k])) {
                printf(" %18s", "n/a");
                continue;
            }
            qs_i8_set_kernel(kernels[k]);
            double g = bench_i8gemm(512, N, K);
            printf(" %9.1f (%4.2fx)", g, g / sgs);
            char key[64];
            snprintf(key, sizeof key, "%s_gops", kernels[k]);
            cJSON_AddNumberToObject(o, key, g);
            snprintf(key, sizeof key, "%s_vs_sgemm", kernels[k]);
            cJSON_AddNumberToObject(o, key, g / sgs);
        }
        putchar('\n');
        cJSON_AddItemToArray(gem, o);
    }
    qs_i8_set_kernel("auto");
    printf("(the forward pass uses %s)\n\n", qs_i8_kernel_name());
    cJSON_AddStringToObject(root, "int8_kernel", qs_i8_kernel_name());

    /* tokenizers on WikiText-2's test text */
    char wiki[1024];
    snprintf(wiki, sizeof wiki, "%s/data/wiki.test.raw", shared);
    char *text = NULL;
    size_t tlen = 0;
    if (qs_io_read_all(wiki, &text, &tlen) == QS_OK) {
        cJSON *tk = cJSON_AddArrayToObject(root, "tokenizers");
        const char *names[5] = {"opt-mini", "gpt2-mini", "llama-mini", "llama3", "qwen3"};
        const char *rels[5] = {"models/opt-mini", "models/gpt2-mini", "models/llama-mini", "tokenizers/llama3",
                               "tokenizers/qwen3"};
        printf("tokenizers on %s (%.1f MB; tokens/s, first pass with an empty word cache, best of 3)\n", wiki,
               tlen / 1e6);
        for (int i = 0; i < 5; i++) {
            char dir[1024];
            double cold, best;
            size_t n = 0;
            snprintf(dir, sizeof dir, "%s/%s", shared, rels[i]);
            if (!bench_tokenizer(dir, text, tlen, &cold, &best, &n)) continue;
            printf("  %-12s %9zu ids %8.2f M/s first %8.2f M/s best\n", names[i], n, cold / 1e6, best / 1e6);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "tokenizer", names[i]);
            cJSON_AddNumberToObject(o, "ids", (double)n);
            cJSON_AddNumberToObject(o, "first_tokens_per_second", cold);
            cJSON_AddNumberToObject(o, "best_tokens_per_second", best);
            cJSON_AddItemToArray(tk, o);
        }
        putchar('\n');
        free(text);
    }

    cJSON *arr = cJSON_AddArrayToObject(root, "models");
    printf("%-18s %-17s %5s %10s %10s %9s %7s %8s %8s %8s %6s\n", "model", "variant", "ctx", "prefill/s", "decode/s",
           "GFLOP/s", "/sgemm", "w MB", "peak MB", "held MB", "ratio");
    int failures = 0;
    for (int i = 0; i < ns; i++) {
        if (only && !strstr(specs[i].name, only)) continue;
        result r;
        if (in_child(bench_spec, &specs[i], &r)) {
            printf("%-18s %-17s failed\n", specs[i].name, specs[i].variant);
            failures++;
            continue;
        }
        double base = r.base_mb + r.weights_mb + r.kv_mb;
        printf("%-18s %-17s %5d %10.1f %10.1f %9.1f %6.0f%% %8.1f %8.1f %8.1f %6.2f\n", r.name, r.variant, r.ctx,
               r.prefill_tok_s, r.decode_tok_s, r.prefill_gflops, 100 * r.prefill_gflops / sg, r.weights_mb,
               r.peak_rss_mb, base, r.peak_rss_mb / base);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", r.name);
        cJSON_AddStringToObject(o, "variant", r.variant);
        cJSON_AddNumberToObject(o, "ctx", r.ctx);
        cJSON_AddNumberToObject(o, "params", (double)r.params);
        cJSON_AddNumberToObject(o, "prefill_tokens_per_second", r.prefill_tok_s);
        if (r.decode_tok_s > 0) cJSON_AddNumberToObject(o, "decode_tokens_per_second", r.decode_tok_s);
        cJSON_AddNumberToObject(o, "prefill_gflops", r.prefill_gflops);
        cJSON_AddNumberToObject(o, "prefill_vs_sgemm", r.prefill_gflops / sg);
        cJSON_AddNumberToObject(o, "peak_rss_mb", r.peak_rss_mb);
        cJSON_AddNumberToObject(o, "weights_mb", r.weights_mb);
        if (r.base_mb > 0) cJSON_AddNumberToObject(o, "base_fp32_weights_mb", r.base_mb);
        cJSON_AddNumberToObject(o, "kv_cache_mb", r.kv_mb);
        cJSON_AddNumberToObject(o, "held_mb", base);
        cJSON_AddNumberToObject(o, "peak_rss_vs_held", r.peak_rss_mb / base);
        cJSON_AddItemToArray(arr, o);
    }
    if (json_path) {
        char *s = cJSON_Print(root);
        if (qs_io_write_atomic(json_path, s, strlen(s))) fprintf(stderr, "bench: %s\n", qs_last_error());
        else printf("\nwrote %s\n", json_path);
        free(s);
    }
    cJSON_Delete(root);
    return failures ? 1 : 0;
}
