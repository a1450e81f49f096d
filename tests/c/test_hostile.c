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
#include <unistd.h>

#include "base/base.h"
#include "stats/stats.h"
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
