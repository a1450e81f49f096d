/* fuzz_spec — variant spec strings: parsed; a spec that parses has a
 * canonical text that parses again to the same canonical text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods/methods.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n > 4096) return 0;
    char s[4097];
    memcpy(s, d, n);
    s[n] = 0;
    qs_spec a, b;
    if (qs_spec_parse(s, &a) != QS_OK) return 0;
    for (int i = 0; i < a.n; i++) {
        char one[512];
        qs_spec_step_format(&a.steps[i], one, sizeof one);
    }
    if (qs_spec_parse(a.text, &b) != QS_OK || strcmp(a.text, b.text) != 0) {
        fprintf(stderr, "spec '%s': canonical '%s' does not parse back (%s)\n", s, a.text, qs_last_error());
        abort();
    }
    return 0;
}
