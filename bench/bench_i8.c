/* qs_bench_i8 — int8 GEMM and the LLM.int8() linear layer against sgemm.
 *
 * For each shape (M rows of activations, K inputs, N outputs, weights N x K
 * used as X W^T) it prints cblas_sgemm GFLOP/s and, for every int8 kernel
 * this CPU has, qs_i8_gemm GOP/s (2 x M x N x K operations per call) and the
 * ratio to sgemm measured in the same run. M = 1 rows compare with sgemv.
 * Then the whole int8 linear (quantize + GEMM + dequantize + outliers) is
 * timed against the fp32 linear it replaces.
 *
 * usage: qs_bench_i8 [--quick] [--ref]   (--ref also times the plain C kernel:
 * slow). Per-core figures: QSCOPE_THREADS=1 OPENBLAS_NUM_THREADS=1 qs_bench_i8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kern/kern.h"
#include "model/model.h"
#include "base/base.h"

static double min_time = 0.1;
static int reps = 7;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Seconds per call of fn over one timed batch of at least min_time. */
typedef void (*call_fn)(void *ud);
static double batch_time(call_fn fn, void *ud) {
    double t0 = now(), t;
    int it = 0;
    do {
        fn(ud);
        it++;
    } while ((t = now() - t0) < min_time);
    return t / it;
}

typedef struct {
    int M, N, K;
    float *x, *w, *y;
    int8_t *a, *b;
    int32_t *c;
    qs_i8mat *pb;
    qs_int8_linear *lin;
    float threshold;
} bench_case;

static void call_sgemm(void *ud) {
    bench_case *b = ud;
    qs_linear l = {.n_out = b->N, .n_in = b->K, .w = b->w};
    qs_blas_linear(b->x, b->M, l.w, l.b, l.n_out, l.n_in, b->y);
}
static void call_i8(void *ud) {
    bench_case *b = ud;
    qs_i8_gemm(b->a, b->M, b->K, b->pb, b->c, b->N);
}
static void call_int8_linear(void *ud) {
    bench_case *b = ud;
    qs_int8_linear_forward(b->lin, b->x, b->M, b->threshold, QS_INT8_ACT_TOKEN, b->y, NULL);
}

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (rng >> 11) * (1.0 / 9007199254740992.0);
}

int main(int argc, char **argv) {
    int quick = 0, with_ref = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--ref") == 0) with_ref = 1;
        else {
            fprintf(stderr, "usage: qs_bench_i8 [--quick] [--ref]\n");
            return 2;
        }
    }
    if (quick) {
        min_time = 0.03;
        reps = 3;
    }
    static const int shapes[][3] = {
        {512, 768, 768}, {512, 768, 3072}, {512, 3072, 768}, /* M, K, N */
        {128, 768, 768}, {2048, 768, 768}, {1, 768, 768},    {1, 768, 3072},
        {1, 3072, 768},  {1, 2048, 5632},  {512, 2048, 5632},
    };
    int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    const char *kern[] = {"avx512vnni", "avx2", "ref"};
    printf("qscope int8 bench — %s; pool %d threads\n", qs_blas_describe(), qs_pool_threads());
    printf("%-18s %10s", "shape M x K -> N", "sgemm GF/s");
    for (int k = 0; k < 3; k++)
        if (qs_i8_kernel_available(kern[k]) && (k < 2 || with_ref)) printf(" %18s", kern[k]);
    printf(" %16s %16s\n", "int8 linear ms", "fp32 linear ms");

    for (int s = 0; s < nshapes; s++) {
        bench_case b = {.M = shapes[s][0], .K = shapes[s][1], .N = shapes[s][2], .threshold = 6.0f};
        size_t mk = (size_t)b.M * b.K, nk = (size_t)b.N * b.K, mn = (size_t)b.M * b.N;
        b.x = malloc(mk * 4);
        b.w = malloc(nk * 4);
        b.y = malloc(mn * 4);
        b.a = malloc(mk);
        b.b = malloc(nk);
        b.c = malloc(mn * 4);
        if (!b.x || !b.w || !b.y || !b.a || !b.b || !b.c) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < mk; i++) {
            b.x[i] = (float)(urand() * 2 - 1);
            b.a[i] = (int8_t)(urand() * 256 - 128);
        }
        /* a few outlier feature columns, as in a real activation */
        for (int k = 7; k < b.K; k += b.K / 4)
            for (int m = 0; m < b.M; m++) b.x[(size_t)m * b.K + k] *= 20.0f;
        for (size_t i = 0; i < nk; i++) {
            b.w[i] = (float)((urand() * 2 - 1) * 0.05);
            b.b[i] = (int8_t)(urand() * 256 - 128);
        }
        if (qs_i8mat_pack(b.b, b.N, b.K, &b.pb) != QS_OK ||
            qs_int8_linear_new(b.w, NULL, b.N, b.K, &b.lin) != QS_OK) {
            fprintf(stderr, "%s\n", qs_last_error());
            return 1;
        }
        /* Rounds of (sgemm, each int8 kernel, int8 linear), best of each:
         * interleaving keeps a burst of load on a shared machine from
         * landing on one side of a ratio only. */
        const char *items[4];
        int n_items = 0;
        for (int k = 0; k < 3; k++)
            if (qs_i8_kernel_available(kern[k]) && (k < 2 || with_ref)) items[n_items++] = kern[k];
        double ts = 1e30, tl = 1e30, ti[4] = {1e30, 1e30, 1e30, 1e30};
        call_sgemm(&b); /* warm up caches and threads */
        call_int8_linear(&b);
        for (int r = 0; r < reps; r++) {
            double t = batch_time(call_sgemm, &b);
            ts = t < ts ? t : ts;
            for (int k = 0; k < n_items; k++) {
                qs_i8_set_kernel(items[k]);
                call_i8(&b);
                t = batch_time(call_i8, &b);
                ti[k] = t < ti[k] ? t : ti[k];
            }
            qs_i8_set_kernel(NULL);
            t = batch_time(call_int8_linear, &b);
            tl = t < tl ? t : tl;
        }
        double ops = 2.0 * b.M * b.N * b.K;
        char name[40];
        snprintf(name, sizeof name, "%d x %d -> %d", b.M, b.K, b.N);
        printf("%-18s %10.1f", name, ops / ts / 1e9);
        for (int k = 0; k < n_items; k++) {
            char cell[40];
            snprintf(cell, sizeof cell, "%.1f (%.2fx)", ops / ti[k] / 1e9, ts / ti[k]);
            printf(" %18s", cell);
        }
        printf(" %16.3f %16.3f\n", tl * 1e3, ts * 1e3);
        fflush(stdout);
        qs_int8_linear_free(b.lin);
        qs_i8mat_free(b.pb);
        free(b.x);
        free(b.w);
        free(b.y);
        free(b.a);
        free(b.b);
        free(b.c);
    }
    printf("\nGF/s = 2*M*N*K / time / 1e9; (r.rrx) = int8 GOP/s / sgemm GFLOP/s of the same shape, same run.\n"
           "M = 1 rows: the fp32 column is cblas_sgemv (qs_blas_linear's decode path).\n"
           "int8 linear: threshold 6, per-token scales, 4 outlier feature columns (every K/4-th\n"
           "column x 20), kernel %s; fp32 linear = qs_blas_linear, the sgemm column.\n",
           qs_i8_kernel_name());
    return 0;
}
