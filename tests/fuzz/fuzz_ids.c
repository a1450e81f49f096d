/* fuzz_ids — calibration files: the offsets reader (text, one offset a
 * line) and the int32 ids reader (rows of ctx ids checked against a
 * vocabulary), on the same bytes. */
#include <stdlib.h>

#include "stats/stats.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const char *p = fz_write(0, "calib", d, n);
    long *offs = NULL;
    int k = 0;
    if (qs_calib_read_offsets(p, &offs, &k) == QS_OK) free(offs);
    static const int ctx[] = {0, 1, 2, 3, 7, 512};
    qs_calib c;
    for (int i = 0; i < 6; i++)
        if (qs_calib_from_ids_file(p, ctx[i], i % 2 ? 512 : 0, &c) == QS_OK) qs_calib_free(&c);
    return 0;
}
