/* llama2c.c — llama2.c checkpoints (legacy version-0 export). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "read/read.h"
#include "model/loaders.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "qscope reads little-endian tensor data in place and needs a little-endian host"
#endif

enum { L2C_HEADER = 7 * 4 };

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
    qs_map map;
    qs_status st = qs_io_map(path, &map);
    if (st) return st;
    if (map.size < L2C_HEADER) {
        st = qs_fail(QS_EFORMAT, "%s: file is %zu bytes, shorter than the %d-byte llama2.c header", path,
                     map.size, L2C_HEADER);
        qs_io_unmap(&map);
        return st;
    }
    int32_t h[7];
    memcpy(h, map.data, sizeof h);
    if ((uint32_t)h[0] == 0x616b3432u) { /* "ak42": llama2.c's versioned exports */
        st = qs_fail(QS_EUNSUPPORTED, "%s: llama2.c export version %d is not supported (qscope reads the "
                     "legacy version-0 .bin)", path, h[1]);
        qs_io_unmap(&map);
        return st;
    }
    int dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv_heads = h[4], seq = h[6];
    int shared = h[5] > 0;
    int64_t vocab = h[5] < 0 ? -(int64_t)h[5] : h[5];
    /* these limits keep every size below 2^63 */
    if (dim <= 0 || dim > (1 << 20) || hidden <= 0 || hidden > (1 << 22) || layers <= 0 || layers > 4096 ||
        heads <= 0 || kv_heads <= 0 || heads > dim || vocab == 0 || vocab > (1 << 24) || seq <= 0 ||
        seq > (1 << 24) || dim % heads || heads % kv_heads || (dim / heads) % 2) {
        st = qs_fail(QS_EFORMAT, "%s: not a llama2.c checkpoint (header dim %d, hidden_dim %d, n_layers %d, "
                     "n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d)",
                     path, h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
        qs_io_unmap(&map);
        return st;
    }
    int64_t hd = dim / heads, kvd = kv_heads * hd, L = layers;
    int64_t floats = vocab * dim                  /* token_embedding_table */
                     + L * dim                    /* rms_att_weight */
                     + L * dim * dim              /* wq */
                     + 2 * L * dim * kvd          /* wk, wv */
                     + L * dim * dim              /* wo */
                     + L * dim                    /* rms_ffn_weight */
                     + 3 * L * dim * (int64_t)hidden /* w1, w2, w3 */
                     + dim                        /* rms_final_weight */
                     + (int64_t)seq * hd          /* freq_cis_real + freq_cis_imag, seq * hd/2 each */
                     + (shared ? 0 : vocab * dim); /* wcls */
    uint64_t want = L2C_HEADER + 4 * (uint64_t)floats;
    if (map.size != want) {
        st = qs_fail(QS_EFORMAT, "%s: the header (dim %d, %d layers, vocab %lld%s) needs exactly %llu bytes, "
                     "found %zu (%s)", path, dim, layers, (long long)vocab, shared ? ", shared classifier" : "",
                     (unsigned long long)want, map.size, map.size < want ? "truncated" : "trailing bytes");
        qs_io_unmap(&map);
        return st;
    }

    qs_config c = {0};
    c.arch = QS_ARCH_LLAMA;
    snprintf(c.arch_name, sizeof c.arch_name, "LlamaForCausalLM");
    c.d_model = dim;
    c.n_layers = layers;
    c.n_heads = heads;
    c.n_kv_heads = kv_heads;
    c.head_dim = (int)hd;
    c.d_ff = hidden;
    c.vocab = (int)vocab;
    c.max_pos = seq;
    c.act = QS_ACT_SILU;
    c.norm = QS_NORM_RMS;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.tied_head = shared;
    c.bos_id = 1;
    c.eos_id = 2;
    c.pad_id = -1;
    qs_model *m;
    if ((st = qs_model_alloc(&c, path, &m))) {
        qs_io_unmap(&map);
        return st;
    }
    if ((st = qs_store_add_map(m->store, map))) {
        qs_io_unmap(&map);
        qs_model_free(m);
        return st;
    }
    snprintf(m->format, sizeof m->format, "llama2.c");
    snprintf(m->dtype, sizeof m->dtype, "F32");
    snprintf(m->path, sizeof m->path, "%s", path);

    /* every array starts at 28 + 4k bytes of a page-aligned map: aligned floats */
    const float *p = (const float *)(const void *)(map.data + L2C_HEADER);
    const float *emb = p, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final;
    p += vocab * dim;
    rms_att = p, p += L * dim;
    wq = p, p += L * dim * dim;
    wk = p, p += L * dim * kvd;
    wv = p, p += L * dim * kvd;
    wo = p, p += L * dim * dim;
    rms_ffn = p, p += L * dim;
    w1 = p, p += L * dim * hidden;
    w2 = p, p += L * dim * hidden;
    w3 = p, p += L * dim * hidden;
    rms_final = p, p += dim;
    p += (int64_t)seq * hd; /* freq_cis tables: qscope computes RoPE itself */
    m->w.tok_embed = emb;
    m->w.final_norm = (qs_norm){.dim = dim, .w = rms_final};
    m->w.head = (qs_linear){.n_out = (int)vocab, .n_in = dim, .w = shared ? emb : p};
    for (int i = 0; i < layers; i++) {
        qs_layer *Y = &m->w.layers[i];
        Y->attn_norm = (qs_norm){.dim = dim, .w = rms_att + (size_t)i * dim};
        Y->mlp_norm = (qs_norm){.dim = dim, .w = rms_ffn + (size_t)i * dim};
        Y->q = (qs_linear){.n_out = dim, .n_in = dim, .w = unpermute(m, wq + (size_t)i * dim * dim, heads)};
        Y->k = (qs_linear){.n_out = (int)kvd, .n_in = dim, .w = unpermute(m, wk + (size_t)i * dim * kvd, kv_heads)};
        Y->v = (qs_linear){.n_out = (int)kvd, .n_in = dim, .w = wv + (size_t)i * dim * kvd};
        Y->o = (qs_linear){.n_out = dim, .n_in = dim, .w = wo + (size_t)i * dim * dim};
        Y->gate = (qs_linear){.n_out = hidden, .n_in = dim, .w = w1 + (size_t)i * dim * hidden};
        Y->down = (qs_linear){.n_out = dim, .n_in = hidden, .w = w2 + (size_t)i * dim * hidden};
        Y->up = (qs_linear){.n_out = hidden, .n_in = dim, .w = w3 + (size_t)i * dim * hidden};
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
