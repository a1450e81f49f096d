/* fuzz.h — what the fuzz targets share. Each target is one file defining
 * LLVMFuzzerTestOneInput; `make fuzz` links it with libFuzzer (clang,
 * -fsanitize=fuzzer,address,undefined), and `make test` links it with
 * driver.c, which feeds it every file of the regression corpus once.
 *
 * The readers take paths, so an input is written to files in a scratch
 * directory made once per process (under /dev/shm when there is one).
 * Inputs of targets that read two files are LEN (u32 LE) + FILE1 + FILE2
 * (fz_split). */
#ifndef QS_FUZZ_H
#define QS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* "<scratch>/<name>" (a static buffer per call site is not needed: the
 * result lives until the next fz_path call with the same slot). */
const char *fz_path(int slot, const char *name);
/* Write size bytes to fz_path(slot, name); returns that path. */
const char *fz_write(int slot, const char *name, const void *data, size_t size);
/* Remove a file written by fz_write (so one input's files never meet the next's). */
void fz_unlink(int slot, const char *name);
/* Split LEN + A + B; a LEN past the end leaves B empty. */
void fz_split(const uint8_t *d, size_t n, const uint8_t **a, size_t *na, const uint8_t **b, size_t *nb);
/* A text that exercises a tokenizer: ASCII, digits, spaces, newlines,
 * accents, CJK, emoji, invalid UTF-8 and special-token spellings. */
extern const char fz_text[];
extern const size_t fz_text_len;

#endif
