/* fam_neox.c — GPT-NeoX and Pythia (GPTNeoXForCausalLM): parallel residual
 * (two LayerNorms) or sequential, q, k, v fused per head in
 * query_key_value, rotary on a fraction of each head (rotary_pct). */
#include "model/family_impl.h"

static qs_status config(const qs_cfgr *r, qs_config *g, qs_fam_flags *f) {
    qs_status st;
    int par = 1, ab = 1;
    if ((st = qs_cfgr_shape(r, g, 0, 2048, 0)) ||
        (st = qs_cfgr_positive(r, "layer_norm_eps", 1e-5, &g->norm_eps)) ||
        (st = qs_cfgr_act(r, "hidden_act", "gelu", &g->act)) ||
        (st = qs_cfgr_rope(r, g, "rotary_emb_base", 10000.0, "rotary_pct", 0.25)) ||
        (st = qs_cfgr_bool(r, "use_parallel_residual", 1, &par)) ||
        (st = qs_cfgr_bool(r, "attention_bias", 1, &ab)))
        return st;
    g->norm = QS_NORM_LAYER;
    g->resid = par ? QS_RESID_PARALLEL : QS_RESID_SEQ;
    f->qkv_bias = f->o_bias = ab;
    f->mlp_bias = f->norm_bias = 1;
    return QS_OK;
}

const qs_family qs_fam_neox = {
    .name = "neox", .hf_arch = "GPTNeoXForCausalLM", .model_type = "gpt_neox", .arch = QS_ARCH_LLAMA,
    .what = "parallel residual, per-head fused query_key_value, partial rotary",
    .config = config,
    .prefixes = {"gpt_neox.", ""}, .embed = "embed_in", .final_norm = "final_layer_norm", .head = "embed_out",
    .attn_norm = "layers.%d.input_layernorm", .qkv = "layers.%d.attention.query_key_value",
    .qkv_layout = QS_QKV_HEADS, .o = "layers.%d.attention.dense", .mlp_norm = "layers.%d.post_attention_layernorm",
    .up = "layers.%d.mlp.dense_h_to_4h", .down = "layers.%d.mlp.dense_4h_to_h",
    .ignore = {"attention.bias", "attention.masked_bias", "rotary_emb.inv_freq"},
};
