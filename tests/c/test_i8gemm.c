/* The int8 GEMM kernels against the plain C reference, bit for bit, and the
 * thread pool they run on. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kern/kern.h"
#include "base/base.h"
#include "harness.h"

static const char *const kernels[] = {"ref", "avx2", "avx512vnni"};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

enum { FILL_RANDOM, FILL_ZERO, FILL_MAX, FILL_MIN, FILL_EXTREMES };

static void fill(int8_t *p, size_t n, int mode) {
    for (size_t i = 0; i < n; i++) {
        switch (mode) {
        case FILL_ZERO: p[i] = 0; break;
        case FILL_MAX: p[i] = 127; break;
        case FILL_MIN: p[i] = -128; break;
        case FILL_EXTREMES: p[i] = (int8_t)((rnd() & 1) ? 127 : -128); break;
        default: p[i] = (int8_t)(rnd() & 0xFF); break;
        }
    }
}

#define SENTINEL 0x5A5A5A5A

/* Every available kernel on a (M, K) row stride lda, b (N, K) against the
 * reference; c has row stride ldc > N and the gap must stay untouched.
 * Returns the number of mismatching cases (0 = all equal). */
static int compare_all(const int8_t *a, int M, int lda, const int8_t *b, int N, int K) {
    int ldc = N + 3, bad = 0;
    int32_t *ref = malloc((size_t)M * N * sizeof *ref);
    int32_t *c = malloc((size_t)M * ldc * sizeof *c);
    qs_i8mat *w = NULL;
    if (!ref || !c || qs_i8mat_pack(b, N, K, &w) != QS_OK) {
        CHECK(0, "setup failed for %dx%dx%d", M, N, K);
        free(ref);
        free(c);
        return 1;
    }
    qs_i8_gemm_ref(a, M, lda, b, N, K, K, ref, N);
    for (int kk = 0; kk < 3; kk++) {
        if (!qs_i8_kernel_available(kernels[kk])) continue;
        qs_i8_set_kernel(kernels[kk]);
        for (size_t i = 0; i < (size_t)M * ldc; i++) c[i] = SENTINEL;
        qs_i8_gemm(a, M, lda, w, c, ldc);
        int first_bad = -1;
        for (int m = 0; m < M && first_bad < 0; m++) {
            for (int n = 0; n < N; n++)
                if (c[(size_t)m * ldc + n] != ref[(size_t)m * N + n]) {
                    first_bad = m * N + n;
                    break;
                }
            for (int n = N; n < ldc; n++)
                if (c[(size_t)m * ldc + n] != SENTINEL) first_bad = m * N;
        }
        if (first_bad >= 0) {
            int m = first_bad / N, n = first_bad % N;
            CHECK(0, "%s: M=%d N=%d K=%d: c[%d,%d] = %d, reference %d (or the ldc gap was written)",
                  kernels[kk], M, N, K, m, n, c[(size_t)m * ldc + n], ref[first_bad]);
            bad++;
        }
    }
    qs_i8_set_kernel(NULL);
    qs_i8mat_free(w);
    free(ref);
    free(c);
    return bad;
}

static int run_case(int M, int N, int K, int mode_a, int mode_b, int lda_pad) {
    int lda = K + lda_pad;
    int8_t *a = malloc((size_t)M * lda), *b = malloc((size_t)N * K);
    fill(a, (size_t)M * lda, mode_a);
    fill(b, (size_t)N * K, mode_b);
    int bad = compare_all(a, M, lda, b, N, K);
    free(a);
    free(b);
    return bad;
}

TEST(i8gemm_kernels_listed) {
    CHECK(qs_i8_kernel_available("ref"), "the reference kernel is always there");
    CHECK(!qs_i8_kernel_available("sse9"), "unknown kernel reported available");
    CHECK(qs_i8_set_kernel("sse9") == QS_EARG, "unknown kernel accepted");
    CHECK(qs_i8_set_kernel("ref") == QS_OK && strcmp(qs_i8_kernel_name(), "ref") == 0,
          "active kernel %s after selecting ref", qs_i8_kernel_name());
    for (int k = 0; k < 3; k++) {
        qs_status st = qs_i8_set_kernel(kernels[k]);
        if (qs_i8_kernel_available(kernels[k]))
            CHECK(st == QS_OK && strcmp(qs_i8_kernel_name(), kernels[k]) == 0, "select %s: %d",
                  kernels[k], st);
        else
            CHECK(st == QS_EUNSUPPORTED, "select missing %s: %d", kernels[k], st);
    }
    qs_i8_set_kernel(NULL);
    printf("  i8 kernel: %s (avx2 %s, avx512vnni %s)\n", qs_i8_kernel_name(),
           qs_i8_kernel_available("avx2") ? "yes" : "no",
           qs_i8_kernel_available("avx512vnni") ? "yes" : "no");
}

TEST(i8gemm_pack_roundtrip) {
    int N = 37, K = 23;
    int8_t *b = malloc((size_t)N * K), row[23], col[37];
    fill(b, (size_t)N * K, FILL_RANDOM);
    qs_i8mat *w;
    REQUIRE(qs_i8mat_pack(b, N, K, &w) == QS_OK, "pack: %s", qs_last_error());
    CHECK(qs_i8mat_n(w) == N && qs_i8mat_k(w) == K, "shape %dx%d", qs_i8mat_n(w), qs_i8mat_k(w));
    /* 3 panels of 16 rows x 6 groups of 4 bytes, + 48 column sums */
    CHECK(qs_i8mat_bytes(w) == 3 * 16 * 24 + 48 * 4, "bytes %zu", qs_i8mat_bytes(w));
    for (int n = 0; n < N; n++) {
        qs_i8mat_row(w, n, row);
        CHECK(memcmp(row, b + (size_t)n * K, K) == 0, "row %d differs", n);
    }
    for (int k = 0; k < K; k++) {
        qs_i8mat_col(w, k, col);
        int same = 1;
        for (int n = 0; n < N; n++) same &= col[n] == b[(size_t)n * K + k];
        CHECK(same, "column %d differs", k);
    }
    qs_i8mat_free(w);
    qs_i8mat_free(NULL);
    free(b);
    qs_i8mat *bad = (qs_i8mat *)&bad;
    CHECK(qs_i8mat_pack(row, 0, 4, &bad) == QS_EARG && bad == NULL, "N = 0 accepted");
    CHECK(qs_i8mat_pack(row, 4, 0, &bad) == QS_EARG, "K = 0 accepted");
    CHECK(qs_i8mat_pack(row, 1, QS_I8_KMAX + 1, &bad) == QS_EARG, "K > KMAX accepted");
}

TEST(i8gemm_odd_sizes) {
    static const int sz[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 67};
    int ns = (int)(sizeof sz / sizeof sz[0]), bad = 0;
    for (int i = 0; i < ns && bad < 5; i++)
        for (int j = 0; j < ns && bad < 5; j++)
            for (int k = 0; k < ns && bad < 5; k++)
                bad += run_case(sz[i], sz[j], sz[k], FILL_RANDOM, FILL_RANDOM, (i + j + k) % 3);
    CHECK(bad == 0, "%d size combinations differ", bad);
}

TEST(i8gemm_adversarial) {
    static const int modes[] = {FILL_ZERO, FILL_MAX, FILL_MIN, FILL_EXTREMES, FILL_RANDOM};
    static const int shapes[][3] = {{1, 1, 1}, {1, 67, 1003}, {9, 33, 67}, {17, 50, 130}, {64, 48, 512}};
    int bad = 0;
    for (int s = 0; s < 5; s++)
        for (int ma = 0; ma < 5; ma++)
            for (int mb = 0; mb < 5; mb++)
                bad += run_case(shapes[s][0], shapes[s][1], shapes[s][2], modes[ma], modes[mb], 1);
    CHECK(bad == 0, "%d adversarial cases differ", bad);
}

/* The largest K with the worst signs: 127 x -128 x 65536 and -128 x -128 x
 * 65536 = 2^30, where a shifted u8 x s8 sum is closest to overflowing. */
TEST(i8gemm_kmax_extremes) {
    int K = QS_I8_KMAX;
    CHECK(run_case(2, 17, K, FILL_MAX, FILL_MIN, 0) == 0, "127 x -128 at K = %d", K);
    CHECK(run_case(2, 17, K, FILL_MIN, FILL_MIN, 0) == 0, "-128 x -128 at K = %d", K);
    CHECK(run_case(3, 5, K, FILL_EXTREMES, FILL_EXTREMES, 0) == 0, "mixed extremes at K = %d", K);
    /* and an exact value, independent of the reference */
    int8_t *a = malloc(K), *b = malloc(K);
    fill(a, K, FILL_MIN);
    fill(b, K, FILL_MIN);
    qs_i8mat *w;
    REQUIRE(qs_i8mat_pack(b, 1, K, &w) == QS_OK, "pack");
    int32_t c = 0;
    qs_i8_gemm(a, 1, K, w, &c, 1);
    CHECK(c == (1 << 30), "(-128)^2 x 65536 = %d", c);
    qs_i8mat_free(w);
    free(a);
    free(b);
}

/* Shapes of real layers: several K slices, M across the task blocks, M = 1
 * (the GEMV path), K not a multiple of 4, 16 or 64. */
TEST(i8gemm_layer_shapes) {
    static const int shapes[][3] = {
        {1, 768, 768},  {1, 3072, 768}, {1, 771, 1001}, {2, 768, 3072}, {7, 100, 1001},
        {8, 96, 514},   {9, 130, 2050}, {255, 64, 770}, {257, 300, 768}, {600, 40, 515},
    };
    int bad = 0;
    for (int s = 0; s < 10; s++)
        bad += run_case(shapes[s][0], shapes[s][1], shapes[s][2], FILL_RANDOM, FILL_RANDOM, s & 1);
    CHECK(bad == 0, "%d layer shapes differ", bad);
}

/* ---- the pool ---------------------------------------------------------- */

typedef struct {
    atomic_int *count;
    atomic_int bad_thread;
    int threads;
} count_ud;

static void count_task(void *ud, int task, int thread) {
    count_ud *u = ud;
    atomic_fetch_add(&u->count[task], 1);
    if (thread < 0 || thread >= u->threads) atomic_store(&u->bad_thread, 1);
}

TEST(i8_pool_runs_each_task_once) {
    int T = qs_pool_threads();
    CHECK(T >= 1 && T <= QS_POOL_MAX, "threads %d", T);
    int sizes[] = {1, 2, T > 1 ? T - 1 : 1, T, T + 1, 3 * T + 1, 1000};
    for (int s = 0; s < 7; s++) {
        int n = sizes[s], reps = 200;
        count_ud u = {.count = calloc(n, sizeof(atomic_int)), .threads = T};
        for (int r = 0; r < reps; r++) qs_pool_run(n, count_task, &u);
        int wrong = 0;
        for (int t = 0; t < n; t++) wrong += atomic_load(&u.count[t]) != reps;
        CHECK(wrong == 0, "%d tasks: %d did not run exactly %d times", n, wrong, reps);
        CHECK(!atomic_load(&u.bad_thread), "thread index out of range");
        free(u.count);
    }
    qs_pool_run(0, count_task, NULL); /* no tasks: fn never called */

    /* more tasks than one job of the pool takes (65535) */
    int n = 70001;
    count_ud u = {.count = calloc(n, sizeof(atomic_int)), .threads = T};
    qs_pool_run(n, count_task, &u);
    qs_pool_run(n, count_task, &u);
    int wrong = 0;
    for (int t = 0; t < n; t++) wrong += atomic_load(&u.count[t]) != 2;
    CHECK(wrong == 0, "%d of %d tasks did not run exactly twice", wrong, n);
    free(u.count);
}

/* qs_scratch: 64-byte aligned, at least the size asked, the same buffer
 * while it fits (its bytes kept), a larger one when it does not, one per
 * slot, another thread's its own; a slot out of range is refused. */
static void *scratch_other(void *arg) {
    (void)arg;
    unsigned char *p = qs_scratch(0, 1000);
    if (p) memset(p, 0x5A, 1000);
    return p;
}

TEST(i8_scratch_kept_per_thread) {
    unsigned char *a = qs_scratch(0, 1000), *b = qs_scratch(1, 3000);
    CHECK(a && b && a != b, "two slots, two buffers");
    CHECK(((uintptr_t)a & 63) == 0 && ((uintptr_t)b & 63) == 0, "64-byte aligned");
    memset(a, 7, 1000), memset(b, 9, 3000);
    CHECK(qs_scratch(0, 500) == a && qs_scratch(0, 1000) == a, "a size that fits keeps the buffer");
    pthread_t t;
    void *other = NULL;
    CHECK(pthread_create(&t, NULL, scratch_other, NULL) == 0, "thread");
    pthread_join(t, &other);
    CHECK(other && other != a, "another thread gets a buffer of its own");
    int kept = 1;
    for (int i = 0; i < 1000; i++) kept &= a[i] == 7;
    CHECK(kept, "another thread's use leaves this one's bytes");
    unsigned char *c = qs_scratch(0, 1 << 20);
    CHECK(c && ((uintptr_t)c & 63) == 0, "grown");
    memset(c, 1, 1 << 20); /* all of it writable (ASan checks the size) */
    CHECK(qs_scratch(1, 3000) == b && b[2999] == 9, "growing one slot leaves the others");
    CHECK(qs_scratch(QS_SCRATCH_SLOTS, 8) == NULL && qs_scratch(-1, 8) == NULL, "a slot out of range is refused");
}

/* Many short jobs back to back: a worker that wakes late must not take a
 * task of the next job (or count one twice); each job is checked at once. */
TEST(i8_pool_back_to_back) {
    int T = qs_pool_threads(), bad = 0, r = 0, n = 0;
    count_ud u = {.count = calloc(8, sizeof(atomic_int)), .threads = T};
    for (; r < 50000 && !bad; r++) {
        n = 2 + r % 6;
        qs_pool_run(n, count_task, &u);
        for (int t = 0; t < 8; t++) {
            bad += atomic_load(&u.count[t]) != (t < n);
            atomic_store(&u.count[t], 0);
        }
    }
    CHECK(!bad, "job %d (%d tasks): wrong counts", r - 1, n);
    free(u.count);
}

typedef struct {
    count_ud inner;
    atomic_int outer;
} nest_ud;

static void nest_task(void *ud, int task, int thread) {
    nest_ud *u = ud;
    atomic_fetch_add(&u->outer, 1);
    qs_pool_run(4, count_task, &u->inner); /* nested: runs inline */
}

TEST(i8_pool_nested_and_restart) {
    int T = qs_pool_threads();
    nest_ud u = {.inner = {.count = calloc(4, sizeof(atomic_int)), .threads = T}};
    qs_pool_run(10, nest_task, &u);
    CHECK(atomic_load(&u.outer) == 10, "outer ran %d times", atomic_load(&u.outer));
    for (int t = 0; t < 4; t++)
        CHECK(atomic_load(&u.inner.count[t]) == 10, "inner task %d ran %d times", t,
              atomic_load(&u.inner.count[t]));
    free(u.inner.count);

    /* after a shutdown the next call starts the workers again */
    qs_pool_shutdown();
    count_ud c = {.count = calloc(50, sizeof(atomic_int)), .threads = T};
    qs_pool_run(50, count_task, &c);
    qs_pool_run(50, count_task, &c);
    int wrong = 0;
    for (int t = 0; t < 50; t++) wrong += atomic_load(&c.count[t]) != 2;
    CHECK(wrong == 0, "%d tasks wrong after restart", wrong);
    free(c.count);
}

/* A child forked after the workers started has none of them; its jobs must
 * still run (bench forks one child per model). */
TEST(i8_pool_after_fork) {
    int T = qs_pool_threads();
    count_ud u = {.count = calloc(64, sizeof(atomic_int)), .threads = T};
    qs_pool_run(64, count_task, &u); /* the workers are up now */
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork failed");
    if (pid == 0) {
        for (int r = 0; r < 100; r++) qs_pool_run(64, count_task, &u);
        int wrong = 0;
        for (int t = 0; t < 64; t++) wrong += atomic_load(&u.count[t]) != 101;
        _exit(wrong ? 1 : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %d", status);
    free(u.count);
}
