/* llama2c.c — llama2.c checkpoints (legacy version-0 export): the header
 * checked against the file's size, and its arrays found in the map. */
#include <stdio.h>
#include <string.h>

#include "read/read.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "qscope reads little-endian tensor data in place and needs a little-endian host"
#endif

enum { L2C_HEADER = 7 * 4 };

qs_status qs_l2c_open(const char *path, qs_l2c_file *f) {
    memset(f, 0, sizeof *f);
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
    *f = (qs_l2c_file){.dim = dim, .hidden = hidden, .layers = layers, .heads = heads, .kv_heads = kv_heads,
                       .vocab = (int)vocab, .seq = seq, .shared = shared, .map = map};
    /* every array starts at 28 + 4k bytes of a page-aligned map: aligned floats */
    const float *p = (const float *)(const void *)(map.data + L2C_HEADER);
    f->tok_embed = p, p += vocab * dim;
    f->rms_att = p, p += L * dim;
    f->wq = p, p += L * dim * dim;
    f->wk = p, p += L * dim * kvd;
    f->wv = p, p += L * dim * kvd;
    f->wo = p, p += L * dim * dim;
    f->rms_ffn = p, p += L * dim;
    f->w1 = p, p += L * dim * hidden;
    f->w2 = p, p += L * dim * hidden;
    f->w3 = p, p += L * dim * hidden;
    f->rms_final = p, p += dim;
    p += (int64_t)seq * hd; /* freq_cis tables: qscope computes RoPE itself */
    f->wcls = shared ? f->tok_embed : p;
    return QS_OK;
}
