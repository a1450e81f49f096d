/* llama2c.c — a model from a llama2.c checkpoint: read/llama2c.c finds the
 * arrays, this builds the Llama model and finds its tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "read/read.h"
#include "model/loaders.h"

/* The tokenizer beside the checkpoint: tokenizer.bin, else tok<vocab>.bin
 * (the tinyllamas models ship tok512.bin and friends). */
static qs_status load_tokenizer(const char *path, const char *explicit_path, qs_model *m) {
    if (explicit_path) {
        if (!qs_io_exists(explicit_path))
            return qs_fail(QS_EIO, "%s: tokenizer file not found", explicit_path);
        return qs_tok_load_llama2c(explicit_path, m->cfg.vocab, &m->tok);
    }
    char dir[1024], cand[1200], name[32] = "tokenizer.bin";
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    else snprintf(dir, sizeof dir, ".");
    qs_io_join(cand, sizeof cand, dir, "tokenizer.bin");
    if (!qs_io_exists(cand)) {
        snprintf(name, sizeof name, "tok%d.bin", m->cfg.vocab);
        qs_io_join(cand, sizeof cand, dir, name);
    }
    if (!qs_io_exists(cand)) {
        qs_log(QS_LOG_WARN, "%s: no tokenizer.bin or %s beside the checkpoint; the model loads without a "
               "tokenizer", path, name);
        return QS_OK;
    }
    return qs_tok_load_llama2c(cand, m->cfg.vocab, &m->tok);
}

/* q/k rows of one layer, from Meta's interleaved order to rotate-half. */
static const float *unpermute(qs_model *m, const float *src, int heads) {
    int hd = m->cfg.head_dim, d = m->cfg.d_model;
    float *dst = qs_store_alloc(m->store, (size_t)heads * hd * d * sizeof *dst);
    if (dst) qs_gguf_rope_rows(dst, src, heads, hd, d);
    return dst;
}

qs_status qs_l2c_load(const char *path, const char *tokenizer, qs_model **out) {
    *out = NULL;
    qs_l2c_file f;
    qs_status st = qs_l2c_open(path, &f);
    if (st) return st;
    int dim = f.dim, hidden = f.hidden;
    int64_t kvd = (int64_t)f.kv_heads * (dim / f.heads);
    qs_config c = {0};
    c.arch = QS_ARCH_LLAMA;
    snprintf(c.arch_name, sizeof c.arch_name, "LlamaForCausalLM");
    c.d_model = dim;
    c.n_layers = f.layers;
    c.n_heads = f.heads;
    c.n_kv_heads = f.kv_heads;
    c.head_dim = dim / f.heads;
    c.d_ff = hidden;
    c.vocab = f.vocab;
    c.max_pos = f.seq;
    c.act = QS_ACT_SILU;
    c.norm = QS_NORM_RMS;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.tied_head = f.shared;
    c.bos_id = 1;
    c.eos_id = 2;
    c.pad_id = -1;
    qs_model *m;
    if ((st = qs_model_alloc(&c, path, &m))) {
        qs_io_unmap(&f.map);
        return st;
    }
    if ((st = qs_store_add_map(m->store, f.map))) {
        qs_io_unmap(&f.map);
        qs_model_free(m);
        return st;
    }
    snprintf(m->format, sizeof m->format, "llama2.c");
    snprintf(m->dtype, sizeof m->dtype, "F32");
    snprintf(m->path, sizeof m->path, "%s", path);
    m->w.tok_embed = f.tok_embed;
    m->w.final_norm = (qs_norm){.dim = dim, .w = f.rms_final};
    m->w.head = (qs_linear){.n_out = f.vocab, .n_in = dim, .w = f.wcls};
    for (int i = 0; i < f.layers; i++) {
        qs_layer *Y = &m->w.layers[i];
        Y->attn_norm = (qs_norm){.dim = dim, .w = f.rms_att + (size_t)i * dim};
        Y->mlp_norm = (qs_norm){.dim = dim, .w = f.rms_ffn + (size_t)i * dim};
        Y->q = (qs_linear){.n_out = dim, .n_in = dim, .w = unpermute(m, f.wq + (size_t)i * dim * dim, f.heads)};
        Y->k = (qs_linear){.n_out = (int)kvd, .n_in = dim, .w = unpermute(m, f.wk + (size_t)i * dim * kvd, f.kv_heads)};
        Y->v = (qs_linear){.n_out = (int)kvd, .n_in = dim, .w = f.wv + (size_t)i * dim * kvd};
        Y->o = (qs_linear){.n_out = dim, .n_in = dim, .w = f.wo + (size_t)i * dim * dim};
        Y->gate = (qs_linear){.n_out = hidden, .n_in = dim, .w = f.w1 + (size_t)i * dim * hidden};
        Y->down = (qs_linear){.n_out = dim, .n_in = hidden, .w = f.w2 + (size_t)i * dim * hidden};
        Y->up = (qs_linear){.n_out = hidden, .n_in = dim, .w = f.w3 + (size_t)i * dim * hidden};
        if (!Y->q.w || !Y->k.w) {
            qs_model_free(m);
            return qs_fail(QS_ENOMEM, "%s: out of memory", path);
        }
    }
    if ((st = load_tokenizer(path, tokenizer, m)) || (st = qs_model_validate(m))) {
        qs_model_free(m);
        return st;
    }
    *out = m;
    return QS_OK;
}
