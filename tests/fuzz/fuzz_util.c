/* fuzz_util.c — the scratch files of the fuzz targets (see fuzz.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

static char scratch[256];

static void rm_scratch(void) {
    char cmd[300];
    if (!scratch[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd)) { /* nothing more to do */ }
}

static const char *dir(void) {
    if (!scratch[0]) {
        struct stat st;
        const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
        if (getenv("TMPDIR")) base = getenv("TMPDIR");
        snprintf(scratch, sizeof scratch, "%s/qs_fuzz_XXXXXX", base);
        if (!mkdtemp(scratch)) {
            perror("qs fuzz: mkdtemp");
            abort();
        }
        atexit(rm_scratch);
    }
    return scratch;
}

const char *fz_path(int slot, const char *name) {
    static char paths[4][512];
    snprintf(paths[slot & 3], sizeof paths[0], "%s/%s", dir(), name);
    return paths[slot & 3];
}

const char *fz_write(int slot, const char *name, const void *data, size_t size) {
    const char *p = fz_path(slot, name);
    FILE *f = fopen(p, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        perror(p);
        abort();
    }
    return p;
}

void fz_unlink(int slot, const char *name) { unlink(fz_path(slot, name)); }

void fz_split(const uint8_t *d, size_t n, const uint8_t **a, size_t *na, const uint8_t **b, size_t *nb) {
    size_t len = n >= 4 ? (size_t)d[0] | (size_t)d[1] << 8 | (size_t)d[2] << 16 | (size_t)d[3] << 24 : 0;
    size_t rest = n >= 4 ? n - 4 : 0;
    if (len > rest) len = rest;
    *a = d + (n >= 4 ? 4 : n);
    *na = len;
    *b = *a + len;
    *nb = rest - len;
}

const char fz_text[] = "Hello world! The 2 quick brown foxes   jumped over 1234567 lazy dogs.\n\n"
                       "  Tabs\tand  spaces;   café naïve Ünïcödé — “quotes” ‘x’ ½ ① ﬁ\n"
                       "日本語のテキスト 中文 한국어 ελληνικά русский עברית العربية\n"
                       "emoji 😀👍🏽 👨‍👩‍👧 \xff\xfe invalid \xc3 bytes\n"
                       "<s></s><unk><pad><|endoftext|><|begin_of_text|><|im_start|>user<|im_end|> [INST] x [/INST]\n"
                       "don't I'm we'll they've 's 're\r\nend";
const size_t fz_text_len = sizeof fz_text - 1;
