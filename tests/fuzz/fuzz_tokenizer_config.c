/* fuzz_tokenizer_config — tokenizer_config.json and config.json (input:
 * LEN + tokenizer_config.json + config.json; an empty second part: no
 * config.json) beside a fixed small byte-level tokenizer.json: the special
 * tokens, added tokens and BOS/EOS rules they declare, then a text. */
#include "fuzz.h"
#include "fuzz_tok.h"

static const char tokenizer_json[] =
    "{\"version\":\"1.0\",\"added_tokens\":["
    "{\"id\":12,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":13,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":14,\"content\":\"<|endoftext|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}],"
    "\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
    "\"post_processor\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":false,\"use_regex\":true},"
    "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":\"\","
    "\"end_of_word_suffix\":\"\",\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":false,"
    "\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"d\":3,\"e\":4,\"Ġ\":5,\"ab\":6,\"Ġa\":7,\"Ġab\":8,\"cd\":9,\"x\":10,\"!\":11},"
    "\"merges\":[\"a b\",\"Ġ a\",\"Ġa b\",\"c d\"]}}";

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    static int ready;
    if (!ready) {
        fz_write(0, "tokenizer.json", tokenizer_json, sizeof tokenizer_json - 1);
        ready = 1;
    }
    const uint8_t *a, *b;
    size_t na, nb;
    fz_split(d, n, &a, &na, &b, &nb);
    fz_write(1, "tokenizer_config.json", a, na);
    if (nb) fz_write(2, "config.json", b, nb);
    else fz_unlink(2, "config.json");
    qs_tok *t = NULL;
    if (qs_tok_load_hf(fz_path(3, ""), &t) == QS_OK) fz_use_tok(t);
    qs_tok_free(t);
    return 0;
}
