/* calib.h — calibration sets: rows of token ids that statistics are
 * gathered over, each row run as its own window from an empty cache.
 *
 *     qs_calib cal;
 *     qs_calib_from_text(m->tok, text, len, 512, 32, &cal);  // 32 windows of 512
 *     ... qs_stats_collect(m, NULL, &cal, &opts, NULL, NULL, &st) ...
 *     qs_calib_free(&cal);
 *
 * Three ways to build one: consecutive windows of a text from its start;
 * windows at given token offsets of a text, in the order given; or rows
 * read from an int32 little-endian file (--calib-ids), which compares like
 * with like against another implementation's calibration.
 */
#ifndef QS_CALIB_H
#define QS_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tok.h"

typedef struct {
    int32_t *ids; /* (n_rows, ctx), owned */
    int n_rows, ctx;
    char source[256]; /* what it was built from, for messages */
} qs_calib;

/* Tokenize text once (default specials) and take up to `windows` consecutive
 * non-overlapping windows of ctx tokens from the start (fewer if the text is
 * short; at least one, else an error naming the sizes). */
qs_status qs_calib_from_text(const qs_tok *t, const char *text, size_t len, int ctx, int windows,
                             qs_calib *out);

/* Windows of ctx tokens starting at the given token offsets, in that order. */
qs_status qs_calib_from_offsets(const qs_tok *t, const char *text, size_t len, int ctx,
                                const long *offsets, int n_offsets, qs_calib *out);

/* Rows of ctx ids from an int32 little-endian file (ctx 0: the whole file
 * is one row). The id count must be a multiple of ctx; vocab > 0 checks
 * every id against the vocabulary. */
qs_status qs_calib_from_ids_file(const char *path, int ctx, int vocab, qs_calib *out);

/* Token offsets, one per line (blank lines and # comments skipped). */
qs_status qs_calib_read_offsets(const char *path, long **offsets, int *n);

void qs_calib_free(qs_calib *c);

#endif
