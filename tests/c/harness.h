/* harness.h — the C test harness.
 *
 *     TEST(tok_opt_wiki) {
 *         const char *shared = th_shared();
 *         if (!shared) { th_skip("../shared is absent"); return; }
 *         CHECK(n == 482087, "got %zu ids", n);
 *     }
 *
 * Tests register themselves; the runner (tests/c/main.c) runs them all, or
 * those whose name contains argv[1], and ends with "N passed, N failed". */
#ifndef TH_HARNESS_H
#define TH_HARNESS_H

#include <stdio.h>

typedef void (*th_fn)(void);
void th_register(const char *name, th_fn fn);
void th_fail_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void th_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int th_failed_now(void); /* failures so far in the current test */
/* Counts one check; a test that runs none (and does not skip) fails. */
void th_checked(void);

/* The shared fixtures directory ($QS_SHARED, else ../shared), or NULL. */
const char *th_shared(void);
/* "<shared>/<rel>" in a static rotating buffer, or NULL without shared. */
const char *th_path(const char *rel);
/* A file of int32 little-endian values (*n of them, malloc'd); NULL when
 * path is NULL or unreadable. */
#include <stddef.h>
#include <stdint.h>
int32_t *th_read_i32(const char *path, size_t *n);
/* The ids of the shared text rel under m's tokenizer (default specials);
 * NULL on failure. */
struct qs_model;
int32_t *th_text_ids(const struct qs_model *m, const char *rel, size_t *n);

#define TEST(name)                                                                    \
    static void name(void);                                                           \
    __attribute__((constructor)) static void th_reg_##name(void) { th_register(#name, name); } \
    static void name(void)

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        th_checked();                                                                 \
        if (!(cond)) th_fail_at(__FILE__, __LINE__, __VA_ARGS__);                      \
    } while (0)

/* Check and return from the test on failure (for preconditions). */
#define REQUIRE(cond, ...)                                                            \
    do {                                                                              \
        th_checked();                                                                 \
        if (!(cond)) {                                                                \
            th_fail_at(__FILE__, __LINE__, __VA_ARGS__);                               \
            return;                                                                   \
        }                                                                             \
    } while (0)

/* Skip the test when ../shared is absent. */
#define NEED_SHARED()                                                                 \
    do {                                                                              \
        if (!th_shared()) {                                                           \
            th_skip("../shared is absent (set QS_SHARED to the fixtures directory)"); \
            return;                                                                   \
        }                                                                             \
    } while (0)

#endif
