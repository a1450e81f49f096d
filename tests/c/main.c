/* The C test runner: runs every registered TEST (or those whose name contains
 * argv[1]) and ends with one line "N passed, N failed" (", N skipped" when
 * some skipped). A test that runs no CHECK/REQUIRE and does not skip fails. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/base.h"
#include "model/model.h"
#include "harness.h"

/* grows as tests register: none is dropped */
static struct test {
    const char *name;
    th_fn fn;
} *tests;
static int n_tests, cap_tests, cur_failures, cur_skipped;
static long cur_checks;
static const char *cur_name;

void th_register(const char *name, th_fn fn) {
    if (n_tests == cap_tests) {
        int cap = cap_tests ? 2 * cap_tests : 256;
        struct test *t = realloc(tests, (size_t)cap * sizeof *t);
        if (!t) {
            fprintf(stderr, "qs_tests: out of memory registering %s\n", name);
            exit(2);
        }
        tests = t;
        cap_tests = cap;
    }
    tests[n_tests].name = name;
    tests[n_tests].fn = fn;
    n_tests++;
}

void th_checked(void) { cur_checks++; }

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

int32_t *th_read_i32(const char *path, size_t *n) {
    char *d;
    size_t len;
    if (!path || qs_io_read_all(path, &d, &len) != QS_OK) return NULL;
    *n = len / 4;
    int32_t *v = malloc(*n * sizeof *v + 1);
    for (size_t i = 0; v && i < *n; i++) {
        const unsigned char *b = (const unsigned char *)d + 4 * i;
        v[i] = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
    }
    free(d);
    return v;
}

int32_t *th_text_ids(const qs_model *m, const char *rel, size_t *n) {
    char *txt;
    size_t len;
    const char *p = th_path(rel);
    if (!p || qs_io_read_all(p, &txt, &len)) return NULL;
    int32_t *ids = NULL;
    qs_status st = qs_tok_encode(m->tok, txt, len, 1, &ids, n);
    free(txt);
    return st ? NULL : ids;
}

/* QS_SKIP_TESTS: names (separated by spaces) not run here but by `make test` */
static int left_out(const char *name) {
    const char *list = getenv("QS_SKIP_TESTS");
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        while (*p == ' ') p++;
        size_t k = strcspn(p, " ");
        if (k == n && strncmp(p, name, n) == 0) return 1;
        p += k;
    }
    return 0;
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
        if (left_out(tests[i].name)) {
            printf("  skip %s: slow, run by make test\n", tests[i].name);
            skipped++;
            continue;
        }
        cur_name = tests[i].name;
        cur_failures = 0;
        cur_skipped = 0;
        cur_checks = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        tests[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (!cur_failures && !cur_skipped && cur_checks == 0) {
            fprintf(stderr, "  FAIL %s: ran no CHECK (a test that checks nothing cannot fail)\n", cur_name);
            cur_failures = 1;
        }
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
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    free(tests);
    return failed ? 1 : 0;
}
