/* test_tok_gguf.c — tokenizers described for GGUF (qs_tok_to_gguf) and built
 * again from that description by the GGUF constructors (qs_tok_new_spm,
 * qs_tok_new_byte_bpe): every tokenizer in ../shared must give the reference
 * ids again, or the ids of the tokenizer it was described from where there
 * are no reference ids, or be refused with the reason GGUF cannot hold it.
 */
#include <cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "model/model.h"
#include "tok/tok.h"
#include "tok/tok_impl.h" /* white-box: the prepend scheme, the tokenizer.model reader */
#include "harness.h"

static char *slurp(const char *path, size_t *len) {
    char *d;
    if (!path || qs_io_read_all(path, &d, len) != QS_OK) return NULL;
    return d;
}

/* 1 when the ids are equal; else a failure naming the first difference. */
static int same_ids(const char *what, const int32_t *got, size_t n_got, const int32_t *want, size_t n_want) {
    size_t n = n_got < n_want ? n_got : n_want, i;
    for (i = 0; i < n && got[i] == want[i]; i++) {}
    CHECK(i == n && n_got == n_want, "%s: %zu ids, expected %zu; first difference at %zu (%d, expected %d)", what, n_got,
          n_want, i, i < n_got ? got[i] : -1, i < n_want ? want[i] : -1);
    return i == n && n_got == n_want;
}

/* The tokenizer GGUF's reader would build from g. */
static qs_tok *rebuild(const qs_tok_gguf *g, const char *what) {
    qs_tok *t = NULL;
    qs_status st;
    if (!strcmp(g->model, "llama"))
        st = qs_tok_new_spm(g->n, g->pieces, g->scores, g->types, g->bos, g->eos, g->unk, &t);
    else
        st = qs_tok_new_byte_bpe(g->n, g->pieces, g->n_merges, g->merges, g->types, g->bos, g->eos, g->add_bos,
                                 g->pre, &t);
    CHECK(st == QS_OK, "%s: rebuilding from the GGUF description: %s", what, qs_last_error());
    return t;
}

/* Can the rebuilt tokenizer add the default specials as g says? The GGUF
 * constructors always add the BOS of "llama" and never an EOS. */
static int rebuilt_adds_specials(const qs_tok_gguf *g) {
    if (g->add_eos) return 0;
    if (!strcmp(g->model, "llama")) return g->add_bos == (g->bos >= 0);
    return 1;
}

/* GGUF's "llama" (llama.cpp's SentencePiece, and qs_tok_new_spm) always puts
 * U+2581 in front of the text; Metaspace's prepend_scheme "first" does not
 * when the text already starts with a space. For such a tokenizer (lead set)
 * a text starting with a space is compared without its leading spaces
 * against the original, and against reference ids with that one known
 * difference allowed: the first piece after the specials is U+2581 + the
 * reference's. */
static int same_but_lead(const char *what, const qs_tok *r, const int32_t *got, size_t n_got, const int32_t *want,
                         size_t n_want, size_t at) {
    if (n_got == n_want && at < n_got && got[at] != want[at]) {
        char both[256];
        snprintf(both, sizeof both, "\xe2\x96\x81%s", qs_tok_piece(r, want[at]));
        CHECK(!strcmp(qs_tok_piece(r, got[at]), both), "%s: id %zu is '%s', want U+2581 + '%s'", what, at,
              qs_tok_piece(r, got[at]), qs_tok_piece(r, want[at]));
        int32_t *fixed = malloc(n_got * sizeof *fixed);
        memcpy(fixed, got, n_got * sizeof *fixed);
        fixed[at] = want[at];
        int ok = same_ids(what, fixed, n_got, want, n_want);
        free(fixed);
        return ok;
    }
    return same_ids(what, got, n_got, want, n_want);
}

/* What GGUF's "llama" cannot carry over, taken out of a text compared with
 * the original tokenizer: special-token strings that a tokenizer.json
 * matches in the text (qs_tok_new_spm matches no control token in the text,
 * as llama.cpp without parse_special), and, for a llama2.c vocabulary whose
 * spaces are ' ', a U+2581 in the text (the GGUF pieces use U+2581 for the
 * space, so it reads as one). */
enum { LEAD = 1, NO_SPECIALS = 2, NO_MARK = 4 };

static size_t scrub(const qs_tok *orig, char *s, size_t n, int flags) {
    int specials[64], n_sp = 0;
    for (int id = 0; (flags & NO_SPECIALS) && id < orig->n_vocab && n_sp < 64; id++)
        if ((orig->attr[id] & TOK_ADDED) && (orig->attr[id] & TOK_SPECIAL) && orig->plen[id]) specials[n_sp++] = id;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t drop = 0;
        if ((flags & NO_MARK) && n - i >= 3 && !memcmp(s + i, "\xe2\x96\x81", 3)) drop = 3;
        for (int k = 0; !drop && k < n_sp; k++) {
            size_t l = orig->plen[specials[k]];
            if (l <= n - i && !memcmp(s + i, orig->pieces[specials[k]], l)) drop = l;
        }
        if (drop) {
            i += drop;
            continue;
        }
        s[o++] = s[i++];
    }
    return o;
}

/* Encode text (a path under ../shared) with t and compare with the ids in
 * ref_rel, or, when ref_rel is NULL, with what orig gives on the text less
 * what flags take out of it. */
static void check_text(const char *what, const qs_tok *t, const qs_tok *orig, const char *text_rel, const char *ref_rel,
                       int special, int flags) {
    size_t len, n_ref = 0, n;
    char *text = slurp(th_path(text_rel), &len);
    int32_t *ref = NULL, *ids = NULL;
    size_t skip = 0, full = len;
    if (!ref_rel && text) {
        len = scrub(orig, text, len, flags);
        while ((flags & LEAD) && skip < len && text[skip] == ' ') skip++;
    }
    if (ref_rel) ref = th_read_i32(th_path(ref_rel), &n_ref);
    else if (text && qs_tok_encode(orig, text + skip, len - skip, special, &ref, &n_ref) != QS_OK) ref = NULL;
    if (!text || (ref_rel && !ref)) {
        CHECK(0, "%s: cannot read %s or %s", what, text_rel, ref_rel ? ref_rel : "");
    } else if (ref || !n_ref) {
        char label[256];
        snprintf(label, sizeof label, "%s on %s%s%s%s%s", what, text_rel, special ? "" : " (no specials)",
                 ref_rel ? "" : " vs the original", skip ? ", leading spaces off" : "",
                 len < full ? ", special strings or U+2581 off" : "");
        qs_status st = qs_tok_encode(t, text + skip, len - skip, special, &ids, &n);
        CHECK(st == QS_OK, "%s: %s", label, qs_last_error());
        int lead_diff = (flags & LEAD) && ref_rel && len && text[0] == ' ';
        if (st == QS_OK && (lead_diff ? same_but_lead(label, t, ids, n, ref, n_ref, special ? 1 : 0)
                                      : same_ids(label, ids, n, ref, n_ref)))
            printf("  %s: %zu ids equal%s\n", label, n, lead_diff ? " (but the known leading U+2581)" : "");
    }
    free(ids);
    free(ref);
    free(text);
}

/* The flags for comparing g's rebuild with orig. */
static int llama_flags(const qs_tok *orig, const qs_tok_gguf *g) {
    if (strcmp(g->model, "llama")) return 0;
    int f = orig->kind == QS_TOK_SPM_RANK && orig->prepend == TOK_PREPEND_FIRST ? LEAD : 0;
    for (int id = 0; id < orig->n_vocab && !(f & NO_SPECIALS); id++)
        if ((orig->attr[id] & TOK_ADDED) && (orig->attr[id] & TOK_SPECIAL)) f |= NO_SPECIALS;
    if (orig->space_len == 1) f |= NO_MARK;
    return f;
}

/* What the shared tokenizers are expected to do: refused with a reason, or
 * round-tripped with the pre-tokenizer named. */
static const struct {
    const char *dir, *model, *pre, *refused;
} expect[] = {
    {"tokenizers/llama3", "gpt2", "llama-bpe", NULL},
    {"tokenizers/qwen3", NULL, NULL, "normalizer NFC, which llama.cpp does not run"},
    {"models/gpt2-mini", "gpt2", "gpt-2", NULL},
    {"models/opt-mini", "gpt2", "gpt-2", NULL},
    {"models/llama-mini", "llama", "default", NULL},
};

/* One directory: load, describe, rebuild, compare. */
static void check_dir(const char *rel, int *n_done) {
    const char *dir = th_path(rel);
    char p[1024];
    if (!qs_io_exists(qs_io_join(p, sizeof p, dir, "tokenizer.json")) &&
        !qs_io_exists(qs_io_join(p, sizeof p, dir, "vocab.json")))
        return; /* a model driven by ids alone (models/arch/...) */
    int e = -1;
    for (size_t i = 0; i < sizeof expect / sizeof *expect; i++)
        if (!strcmp(expect[i].dir, rel)) e = (int)i;
    qs_tok *t = NULL;
    qs_status st = qs_tok_load_hf(dir, &t);
    CHECK(st == QS_OK, "%s: %s", rel, qs_last_error());
    if (st != QS_OK) return;
    (*n_done)++;
    qs_tok_gguf *g = NULL;
    st = qs_tok_to_gguf(t, dir, &g);
    if (e >= 0 && expect[e].refused) {
        CHECK(st == QS_EUNSUPPORTED && strstr(qs_last_error(), expect[e].refused),
              "%s: expected a refusal saying '%s', got %d: %s", rel, expect[e].refused, st,
              st ? qs_last_error() : "accepted");
        printf("  %s: refused: %s\n", rel, qs_last_error());
        qs_tok_gguf_free(g);
        qs_tok_free(t);
        return;
    }
    CHECK(st == QS_OK, "%s: %s", rel, qs_last_error());
    CHECK(e >= 0, "%s: a tokenizer this test does not know yet: add its expectation", rel);
    if (st != QS_OK) {
        qs_tok_free(t);
        return;
    }
    if (e >= 0)
        CHECK(!strcmp(g->model, expect[e].model) && g->pre && !strcmp(g->pre, expect[e].pre),
              "%s: described as %s / %s, expected %s / %s", rel, g->model, g->pre ? g->pre : "(none)", expect[e].model,
              expect[e].pre);
    printf("  %s: %s, pre %s, %d tokens, %d merges, bos %d (add %d), eos %d (add %d), unk %d, pad %d\n", rel, g->model,
           g->pre ? g->pre : "-", g->n, g->n_merges, g->bos, g->add_bos, g->eos, g->add_eos, g->unk, g->pad);
    qs_tok *r = rebuild(g, rel);
    if (r) {
        int sp = rebuilt_adds_specials(g);
        int lead = llama_flags(t, g);
        char ref[1024];
        /* reference ids where ../shared has them */
        static const struct {
            const char *text, *ids;
        } refs[] = {{"data/wiki.test.raw", "wiki_test"},
                    {"data/heldout.txt", "heldout"},
                    {"%s/reference/torture_dev.txt", "torture_dev"}};
        for (size_t i = 0; i < sizeof refs / sizeof *refs; i++)
            for (int special = 0; special < 2; special++) {
                if (special && !sp) continue;
                snprintf(ref, sizeof ref, "%s/reference/%s_%sids.i32", rel, refs[i].ids, special ? "" : "nospecial_");
                if (!qs_io_exists(th_path(ref))) continue;
                char text[1024];
                snprintf(text, sizeof text, refs[i].text, rel);
                check_text(rel, r, t, text, ref, special, lead);
            }
        /* and the tokenizer it came from, on a text written to break tokenizers */
        check_text(rel, r, t, "tokenizers/llama3/reference/torture_dev.txt", NULL, sp, lead);
        check_text(rel, r, t, "data/calib.txt", NULL, sp, lead);
    }
    qs_tok_free(r);
    qs_tok_gguf_free(g);
    qs_tok_free(t);
}

/* Every tokenizer directory under ../shared/<top>, in name order. */
static void check_all_under(const char *top, int *n_done) {
    const char *base = th_path(top);
    DIR *d = base ? opendir(base) : NULL;
    CHECK(d, "cannot list %s", top);
    if (!d) return;
    char *names[64];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 64)
        if (de->d_name[0] != '.') names[n++] = strdup(de->d_name);
    closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *x = names[i];
                names[i] = names[j];
                names[j] = x;
            }
    for (int i = 0; i < n; i++) {
        char rel[512];
        snprintf(rel, sizeof rel, "%s/%s", top, names[i]);
        if (qs_io_is_dir(th_path(rel))) check_dir(rel, n_done);
        free(names[i]);
    }
}

TEST(tok_to_gguf_shared) {
    NEED_SHARED();
    int n = 0;
    check_all_under("tokenizers", &n);
    check_all_under("models", &n);
    check_all_under("models/arch", &n);
    CHECK(n >= 5, "only %d tokenizer directories found under ../shared", n);
}

/* Llama's tokenizer.json merges by rank; without tokenizer.model the
 * scores are derived from the ranks, and must merge the same way. */
TEST(tok_to_gguf_llama_derived_scores) {
    NEED_SHARED();
    qs_tok *t = NULL;
    REQUIRE(qs_tok_load_hf(th_path("models/llama-mini"), &t) == QS_OK, "%s", qs_last_error());
    qs_tok_gguf *g = NULL;
    qs_status st = qs_tok_to_gguf(t, NULL, &g);
    CHECK(st == QS_OK, "%s", qs_last_error());
    qs_tok *r = g ? rebuild(g, "llama-mini (scores from ranks)") : NULL;
    if (r) {
        check_text("llama-mini (no tokenizer.model)", r, t, "data/wiki.test.raw",
                   "models/llama-mini/reference/wiki_test_ids.i32", 1, llama_flags(t, g));
        check_text("llama-mini (no tokenizer.model)", r, t, "tokenizers/llama3/reference/torture_dev.txt", NULL, 1,
                   llama_flags(t, g));
    }
    qs_tok_free(r);
    qs_tok_gguf_free(g);
    qs_tok_free(t);
}

/* The scores read from llama-mini's tokenizer.model are SentencePiece's:
 * Llama-2's pieces after the 3 controls and 256 bytes score minus their
 * rank, -(id - 259), but for the 16 runs of U+2581, which score -1e9. This
 * tokenizer.json (written by transformers 5) ranks the merge "▁ ▁" first,
 * so those scores would merge runs of spaces otherwise than its ranks do:
 * the description keeps SentencePiece's types and derives the scores from
 * the ranks. */
TEST(tok_to_gguf_spm_model_scores) {
    NEED_SHARED();
    qs_tok *t = NULL;
    REQUIRE(qs_tok_load_hf(th_path("models/llama-mini"), &t) == QS_OK, "%s", qs_last_error());
    int n = qs_tok_vocab_size(t);
    float *sc = malloc((size_t)n * sizeof *sc);
    int32_t *ty = malloc((size_t)n * sizeof *ty);
    for (int i = 0; i < n; i++) {
        sc[i] = NAN;
        ty[i] = -1;
    }
    qs_status st = tok_spm_model_read(th_path("models/llama-mini/tokenizer.model"), t, sc, ty);
    CHECK(st == QS_OK, "%s", qs_last_error());
    if (st == QS_OK) {
        CHECK(ty[0] == 2 && ty[1] == 3 && ty[2] == 3 && sc[0] == 0.0f && sc[1] == 0.0f, "<unk> <s> </s>: types %d %d %d",
              ty[0], ty[1], ty[2]);
        CHECK(sc[260] == -1.0f && sc[1000] == -741.0f && sc[31999] == -31740.0f, "pieces 260, 1000, 31999 score %g %g %g",
              sc[260], sc[1000], sc[31999]);
        CHECK(sc[259] == -1e9f && sc[29871] == -1e9f, "'▁▁' and '▁' score %g, %g", sc[259], sc[29871]);
        int runs = 0, other = 0, bytes = 0;
        for (int i = 3; i < n; i++) {
            if (i < 259) {
                bytes += ty[i] == 6 && sc[i] == 0.0f;
                continue;
            }
            if (sc[i] == -1e9f) runs++;
            else other += sc[i] != -(float)(i - 259) || ty[i] != 1;
        }
        CHECK(bytes == 256 && runs == 16 && other == 0, "bytes %d (256), -1e9 runs %d (16), others off the pattern %d",
              bytes, runs, other);
    }
    qs_tok_gguf *g = NULL;
    st = qs_tok_to_gguf(t, th_path("models/llama-mini"), &g);
    CHECK(st == QS_OK, "%s", qs_last_error());
    if (g) {
        CHECK(g->n == 32000 && !strcmp(g->model, "llama") && g->scores && g->types, "llama-mini described as llama");
        /* "▁ ▁" is merge 0 and "▁ t" merge 1 */
        CHECK(g->scores[259] == 0.0f && g->scores[260] == -1.0f, "'▁▁' and '▁t' score %g %g (from the ranks)",
              g->scores[259], g->scores[260]);
        int same = 0;
        for (int i = 3; i < n; i++) same += g->types[i] == ty[i];
        CHECK(same == n - 3, "%d of %d types are tokenizer.model's", same, n - 3);
        /* the added tokens are typed and scored as the converter does */
        CHECK(g->types[0] == 3 && g->types[1] == 3 && g->types[2] == 3 && g->scores[1] == -1000.0f,
              "<unk> <s> </s> types %d %d %d", g->types[0], g->types[1], g->types[2]);
        CHECK(g->bos == 1 && g->add_bos && g->eos == 2 && !g->add_eos && g->unk == 0, "llama-mini bos/eos/unk");
    }
    qs_tok_gguf_free(g);
    free(sc);
    free(ty);
    qs_tok_free(t);
}

/* llama2.c's tokenizer.bin (spaces as ' ') and the GGUF vocabulary of the
 * same model: both describe as "llama" with U+2581 and rebuild alike. */
TEST(tok_to_gguf_stories) {
    NEED_SHARED();
    qs_tok *t = NULL;
    REQUIRE(qs_tok_load_llama2c(th_path("models/stories260K/tok512.bin"), 512, &t) == QS_OK, "%s", qs_last_error());
    qs_tok_gguf *g = NULL;
    qs_status st = qs_tok_to_gguf(t, NULL, &g);
    CHECK(st == QS_OK, "%s", qs_last_error());
    if (g) {
        CHECK(!strcmp(g->model, "llama") && g->n == 512 && g->add_bos && g->bos == 1 && g->eos == 2 && g->unk == 0,
              "tok512.bin described as llama, bos 1 added, eos 2, unk 0");
        CHECK(!strcmp(g->pieces[403], "\xe2\x96\x81Once"), "piece 403 is '%s', want U+2581 + Once", g->pieces[403]);
        CHECK(g->types[0] == 2 && g->types[1] == 3 && g->types[3] == 6, "types %d %d %d", g->types[0], g->types[1],
              g->types[3]);
        qs_tok *r = rebuild(g, "tok512.bin");
        if (r) {
            check_text("tok512.bin", r, t, "data/heldout.txt", NULL, 1, llama_flags(t, g));
            check_text("tok512.bin", r, t, "tokenizers/llama3/reference/torture_dev.txt", NULL, 1, llama_flags(t, g));
        }
        qs_tok_free(r);
    }
    qs_tok_gguf_free(g);
    qs_tok_free(t);

    /* the GGUF file's own vocabulary, described again */
    qs_model *m = NULL;
    st = qs_model_load(th_path("models/stories260K/stories260K.gguf"), NULL, &m);
    CHECK(st == QS_OK, "stories260K.gguf: %s", qs_last_error());
    if (st == QS_OK && m->tok) {
        st = qs_tok_to_gguf(m->tok, NULL, &g);
        CHECK(st == QS_OK, "%s", qs_last_error());
        qs_tok *r = g ? rebuild(g, "stories260K.gguf") : NULL;
        if (r) {
            check_text("stories260K.gguf", r, m->tok, "data/heldout.txt", NULL, 1, llama_flags(m->tok, g));
            check_text("stories260K.gguf", r, m->tok, "tokenizers/llama3/reference/torture_dev.txt", NULL, 1,
                       llama_flags(m->tok, g));
        }
        qs_tok_free(r);
        qs_tok_gguf_free(g);
    }
    qs_model_free(m);
}

/* A byte-level tokenizer.json whose pipeline GGUF cannot name is refused
 * with the reason: an unknown Split regex, a normalizer, add_prefix_space. */
TEST(tok_to_gguf_refusals) {
    static const struct {
        const char *norm, *pre, *why;
    } cases[] = {
        {"null",
         "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{L}+\"},"
         "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
         "\"use_regex\":false}]}",
         "pre-tokenizer regex '\\p{L}+' has no llama.cpp name"},
        {"{\"type\":\"NFKC\"}",
         "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"ByteLevel\",\"add_prefix_space\":false}]}",
         "normalizer NFKC, which llama.cpp does not run"},
        {"null", "{\"type\":\"ByteLevel\",\"add_prefix_space\":true}", "add_prefix_space"},
    };
    char dir[] = "/tmp/qs_tok_gguf_XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[2048];
        snprintf(json, sizeof json,
                 "{\"normalizer\":%s,\"pre_tokenizer\":%s,\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":"
                 "\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}}",
                 cases[i].norm, cases[i].pre);
        REQUIRE(qs_io_write_atomic(path, json, strlen(json)) == QS_OK, "%s", qs_last_error());
        qs_tok *t = NULL;
        qs_status st = qs_tok_load_hf(dir, &t);
        CHECK(st == QS_OK, "case %zu: %s", i, qs_last_error());
        if (st != QS_OK) continue;
        qs_tok_gguf *g = NULL;
        st = qs_tok_to_gguf(t, dir, &g);
        CHECK(st == QS_EUNSUPPORTED && !g && strstr(qs_last_error(), cases[i].why), "case %zu: want '%s', got %d: %s",
              i, cases[i].why, st, st ? qs_last_error() : "accepted");
        qs_tok_gguf_free(g);
        qs_tok_free(t);
    }
    remove(path);
    rmdir(dir);
}

/* A tokenizer.model that is not protobuf, or not this tokenizer's, is an
 * error naming the file, never a crash. */
TEST(tok_to_gguf_bad_spm_model) {
    NEED_SHARED();
    qs_tok *t = NULL;
    REQUIRE(qs_tok_load_hf(th_path("models/llama-mini"), &t) == QS_OK, "%s", qs_last_error());
    char dir[] = "/tmp/qs_tok_gguf_XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    size_t len = 0;
    char *good = slurp(th_path("models/llama-mini/tokenizer.model"), &len);
    REQUIRE(good && len > 1000, "tokenizer.model");
    const struct {
        const void *data;
        size_t n;
        const char *why;
    } cases[] = {
        {good, len / 2, "past the end"},                       /* truncated inside a piece */
        {"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11, "piece 0 runs past"}, /* a length that never ends */
        {"\x0a\x07\x0a\x05<unk>\x0a\x05\x0a\x03<s>\x0a\x06\x0a\x04</s>\x0a\x05\x0a\x03xyz", 31,
         "piece 3 is 'xyz'"}, /* piece 3 is <0x00> */
        {"\x0b", 1, "field 1 of wire type 3"},                /* a group, which the format does not use */
        {"", 0, "empty file"}, /* once a null pointer plus zero (found by fuzz_spm_model) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        REQUIRE(qs_io_write_atomic(path, cases[i].data, cases[i].n) == QS_OK, "%s", qs_last_error());
        qs_tok_gguf *g = NULL;
        qs_status st = qs_tok_to_gguf(t, dir, &g);
        CHECK(st == QS_EFORMAT && !g && strstr(qs_last_error(), cases[i].why) && strstr(qs_last_error(), path),
              "case %zu: want '%s', got %d: %s", i, cases[i].why, st, st ? qs_last_error() : "accepted");
        qs_tok_gguf_free(g);
    }
    free(good);
    remove(path);
    rmdir(dir);
    qs_tok_free(t);
}

/* Qwen3's tokenizer.json less its NFC normalizer is what llama.cpp's "qwen2"
 * runs: described so, it gives Hugging Face's ids again where NFC changes
 * nothing (WikiText-2, heldout.txt; the torture text, which has NFD
 * sequences, is why the real file is refused). */
TEST(tok_to_gguf_qwen2_without_nfc) {
    NEED_SHARED();
    size_t len;
    char *data = slurp(th_path("tokenizers/qwen3/tokenizer.json"), &len);
    REQUIRE(data, "tokenizers/qwen3/tokenizer.json");
    cJSON *root = cJSON_ParseWithLength(data, len);
    free(data);
    REQUIRE(root, "qwen3 tokenizer.json parses");
    cJSON_ReplaceItemInObjectCaseSensitive(root, "normalizer", cJSON_CreateNull());
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char dir[] = "/tmp/qs_tok_gguf_XXXXXX";
    REQUIRE(text && mkdtemp(dir), "mkdtemp");
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    qs_status st = qs_io_write_atomic(path, text, strlen(text));
    free(text);
    CHECK(st == QS_OK, "%s", qs_last_error());
    qs_tok *t = NULL, *r = NULL;
    qs_tok_gguf *g = NULL;
    if (st == QS_OK && (st = qs_tok_load_hf(dir, &t)) == QS_OK && (st = qs_tok_to_gguf(t, dir, &g)) == QS_OK) {
        CHECK(!strcmp(g->model, "gpt2") && !strcmp(g->pre, "qwen2") && !g->add_bos,
              "qwen3 without NFC: %s / %s, add_bos %d", g->model, g->pre, g->add_bos);
        r = rebuild(g, "qwen3 without NFC");
    }
    CHECK(st == QS_OK, "qwen3 without NFC: %s", qs_last_error());
    if (r) {
        check_text("qwen3 without NFC", r, t, "data/wiki.test.raw", "tokenizers/qwen3/reference/wiki_test_ids.i32", 1, 0);
        check_text("qwen3 without NFC", r, t, "data/heldout.txt", "tokenizers/qwen3/reference/heldout_ids.i32", 1, 0);
    }
    qs_tok_free(r);
    qs_tok_gguf_free(g);
    qs_tok_free(t);
    remove(path);
    rmdir(dir);
}
