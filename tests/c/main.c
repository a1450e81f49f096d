/* The C test runner: runs every registered TEST (or those whose name contains
 * argv[1]) and ends with one line "N passed, N failed". */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "harness.h"

#define MAX_TESTS 1024
static struct {
    const char *name;
    th_fn fn;
} tests[MAX_TESTS];
static int n_tests, cur_failures, cur_skipped;
static const char *cur_name;

void th_register(const char *name, th_fn fn) {
    if (n_tests < MAX_TESTS) {
        tests[n_tests].name = name;
        tests[n_tests].fn = fn;
        n_tests++;
    }
}

void th_fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "  FAIL %s (%s:%d): ", cur_name, file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cur_failures++;
}

void th_skip(const char *fmt, ...) {
    va_list ap;
    printf("  skip %s: ", cur_name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    cur_skipped = 1;
}

int th_failed_now(void) { return cur_failures; }

const char *th_shared(void) {
    static int done;
    static char path[1024];
    if (!done) {
        done = 1;
        const char *env = getenv("QS_SHARED");
        snprintf(path, sizeof path, "%s", env && *env ? env : "../shared");
        struct stat st;
        char probe[1100];
        snprintf(probe, sizeof probe, "%s/models", path);
        if (stat(probe, &st) != 0 || !S_ISDIR(st.st_mode)) path[0] = 0;
    }
    return path[0] ? path : NULL;
}

const char *th_path(const char *rel) {
    static char bufs[8][1200];
    static int next;
    const char *s = th_shared();
    if (!s) return NULL;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", s, rel);
    return b;
}

static int cmp_tests(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0, skipped = 0;
    qsort(tests, (size_t)n_tests, sizeof tests[0], cmp_tests);
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < n_tests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        cur_name = tests[i].name;
        cur_failures = 0;
        cur_skipped = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        tests[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (cur_failures) {
            failed++;
            printf("FAIL %s\n", cur_name);
        } else if (cur_skipped) {
            skipped++;
        } else {
            passed++;
            printf("ok   %s (%.0f ms)\n", cur_name, ms);
        }
    }
    if (skipped) printf("%d skipped\n", skipped);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
