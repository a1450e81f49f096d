/* fuzz_spm_model — a SentencePiece tokenizer.model (input: the file) beside a
 * fixed small Llama-style tokenizer.json: the tokenizer described for GGUF,
 * which reads the ModelProto for its scores and types, then rebuilt from the
 * description and run on a text. */
#include "fuzz.h"
#include "fuzz_tok.h"

static const char tokenizer_json[] =
    "{\"version\":\"1.0\",\"added_tokens\":["
    "{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":2,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}],"
    "\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":false},"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],"
    "\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xe2\x96\x81\"},"
    "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,"
    "\"stop\":0}]},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
    "\"end_of_word_suffix\":null,\"fuse_unk\":true,\"byte_fallback\":true,\"ignore_merges\":false,"
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"<0x0A>\":3,\"<0xE2>\":4,\"\xe2\x96\x81\":5,\"a\":6,\"b\":7,"
    "\"\xe2\x96\x81" "a\":8,\"ab\":9,\"\xe2\x96\x81" "ab\":10},"
    "\"merges\":[\"\xe2\x96\x81 a\",\"a b\",\"\xe2\x96\x81" "a b\"]}}";

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    static int ready;
    if (!ready) {
        fz_write(0, "tokenizer.json", tokenizer_json, sizeof tokenizer_json - 1);
        ready = 1;
    }
    fz_write(1, "tokenizer.model", d, n);
    const char *dir = fz_path(2, "");
    qs_tok *t = NULL;
    if (qs_tok_load_hf(dir, &t) == QS_OK) {
        qs_tok_gguf *g = NULL;
        if (qs_tok_to_gguf(t, dir, &g) == QS_OK) {
            qs_tok *r = NULL;
            if (qs_tok_new_spm(g->n, g->pieces, g->scores, g->types, g->bos, g->eos, g->unk, &r) == QS_OK)
                fz_use_tok(r);
            qs_tok_free(r);
        }
        qs_tok_gguf_free(g);
    }
    qs_tok_free(t);
    return 0;
}
