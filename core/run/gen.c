#include "run/run.h"
#include "base/base.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

qs_gen_opts qs_gen_defaults(void) {
    qs_gen_opts o = {.n_max = 64, .temp = 0, .top_k = 0, .top_p = 1, .seed = 0, .stop_at_eos = 1};
    return o;
}

void qs_gen_result_free(qs_gen_result *r) {
    free(r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void qs_rng_seed(qs_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) { /* splitmix64 fills xoshiro256** */
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        r->s[i] = z ^ (z >> 31);
    }
}

uint64_t qs_rng_next(qs_rng *r) {
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

double qs_rng_uniform(qs_rng *r) { return (qs_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

typedef struct {
    float v;
    int i;
} cand;

static int by_logit_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? 1 : -1;
    return x->i - y->i;
}

int qs_gen_sample(const float *logits, int vocab, const qs_gen_opts *o, qs_rng *rng, float *scratch) {
    if (o->temp <= 0) return argmax(logits, vocab);
    /* candidates sorted by logit; top-k then top-p cut the list */
    cand *cd = (cand *)scratch; /* (vocab) pairs fill the 2*vocab floats */
    for (int i = 0; i < vocab; i++) cd[i] = (cand){logits[i], i};
    qsort(cd, (size_t)vocab, sizeof *cd, by_logit_desc);
    int n = o->top_k > 0 && o->top_k < vocab ? o->top_k : vocab;
    double mx = cd[0].v, sum = 0;
    for (int i = 0; i < n; i++) {
        cd[i].v = (float)exp((cd[i].v - mx) / o->temp);
        sum += cd[i].v;
    }
    if (o->top_p > 0 && o->top_p < 1) {
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += cd[i].v / sum;
            if (cum >= o->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0;
        for (int i = 0; i < n; i++) sum += cd[i].v;
    }
    double u = qs_rng_uniform(rng) * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += cd[i].v;
        if (u < acc) return cd[i].i;
    }
    return cd[n - 1].i;
}


/* Length of the longest prefix of s (len) that ends on a UTF-8 character
 * boundary, so a token that stops mid-character is held back. */
static size_t complete_utf8(const char *s, size_t len) {
    size_t i = len, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0) return len;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (lead < 0x80 || lead >= 0xF8) return len;
    return back + 1 >= need ? len : i - 1;
}

qs_status qs_gen_run(qs_ctx *c, const qs_tok *tok, const int32_t *prompt, int n_prompt,
                     const qs_gen_opts *o, qs_gen_result *r) {
    memset(r, 0, sizeof *r);
    const qs_model *m = qs_ctx_model(c);
    int vocab = m->cfg.vocab, bos = tok ? qs_tok_bos(tok) : m->cfg.bos_id;
    int eos = tok ? qs_tok_eos(tok) : m->cfg.eos_id;
    if (n_prompt == 0) {
        if (bos < 0) return qs_fail(QS_EARG, "generate: empty prompt and the tokenizer has no BOS");
        prompt = (const int32_t *)&bos;
        n_prompt = 1;
    }
    int room = qs_ctx_capacity(c) - n_prompt;
    if (room <= 0)
        return qs_fail(QS_EARG, "generate: the prompt has %d tokens, the context holds %d", n_prompt,
                       qs_ctx_capacity(c));
    int n_max = o->n_max < room ? o->n_max : room;
    int32_t *all = malloc(((size_t)n_prompt + n_max + 1) * sizeof *all);
    float *logits = malloc((size_t)vocab * 3 * sizeof(float));
    if (!all || !logits) {
        free(all);
        free(logits);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    memcpy(all, prompt, (size_t)n_prompt * sizeof *all);
    float *scratch = logits + vocab;
    qs_rng rng;
    qs_rng_seed(&rng, o->seed);

    char *prefix_text = NULL, *text = NULL;
    size_t prefix_len = 0, emitted = 0;
    qs_status st = QS_OK;
    if (tok && (st = qs_tok_decode(tok, all, (size_t)n_prompt, 1, &prefix_text, &prefix_len))) goto done;

    qs_ctx_reset(c);
    double t0 = qs_io_clock();
    if ((st = qs_forward(c, all, n_prompt, logits, QS_LOGITS_LAST))) goto done;
    r->prefill_seconds = qs_io_clock() - t0;
    t0 = qs_io_clock();
    int n = 0;
    r->stopped_by = n_max < o->n_max ? 3 : 0;
    while (n < n_max) {
        int id = qs_gen_sample(logits, vocab, o, &rng, scratch);
        all[n_prompt + n++] = id;
        int stop = o->stop_at_eos && id == eos;
        if (tok && o->on_text) {
            size_t len;
            free(text);
            text = NULL;
            if ((st = qs_tok_decode(tok, all, (size_t)(n_prompt + n), 1, &text, &len))) goto done;
            /* the prompt's own text is a prefix of the whole; stream the rest */
            size_t start = prefix_len <= len && memcmp(text, prefix_text, prefix_len) == 0 ? prefix_len : 0;
            size_t upto = stop || n == n_max ? len : complete_utf8(text, len);
            if (upto > start + emitted) {
                if (o->on_text(o->ud, id, text + start + emitted, upto - start - emitted)) {
                    r->stopped_by = 2;
                    emitted = upto - start;
                    break;
                }
                emitted = upto - start;
            }
        } else if (o->on_text && o->on_text(o->ud, id, "", 0)) {
            r->stopped_by = 2;
            break;
        }
        if (stop) {
            r->stopped_by = 1;
            break;
        }
        if (n == n_max) break;
        if ((st = qs_forward(c, &all[n_prompt + n - 1], 1, logits, QS_LOGITS_LAST))) goto done;
    }
    r->decode_seconds = qs_io_clock() - t0;
    r->n = n;
    r->ids = malloc(((size_t)n + 1) * sizeof *r->ids);
    if (!r->ids) {
        st = qs_fail(QS_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(r->ids, all + n_prompt, (size_t)n * sizeof *r->ids);
    if (tok) {
        /* the text the prompt's text is followed by, as streamed */
        size_t len;
        if ((st = qs_tok_decode(tok, all, (size_t)(n_prompt + n), 1, &r->text, &len))) goto done;
        if (prefix_len <= len && memcmp(r->text, prefix_text, prefix_len) == 0)
            memmove(r->text, r->text + prefix_len, len - prefix_len + 1);
    } else {
        r->text = calloc(1, 1);
    }
done:
    free(all);
    free(logits);
    free(prefix_text);
    free(text);
    if (st) qs_gen_result_free(r);
    return st;
}
