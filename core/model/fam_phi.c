/* fam_phi.c — Phi-1, Phi-1.5 and Phi-2 (PhiForCausalLM): attention and MLP
 * in parallel from one LayerNorm, partial rotary (half the head by
 * default), biases everywhere including the head, optional LayerNorms on
 * each head of q and k. */
#include "model/family_impl.h"

static qs_status config(const qs_cfgr *r, qs_config *g, qs_fam_flags *f) {
    qs_status st;
    int qkln = 0;
    if ((st = qs_cfgr_shape(r, g, 0, 2048, 0)) ||
        (st = qs_cfgr_positive(r, "layer_norm_eps", 1e-5, &g->norm_eps)) ||
        (st = qs_cfgr_act(r, "hidden_act", "gelu_new", &g->act)) ||
        (st = qs_cfgr_rope(r, g, "rope_theta", 10000.0, "partial_rotary_factor", 0.5)) ||
        (st = qs_cfgr_bool(r, "qk_layernorm", 0, &qkln)))
        return st;
    g->norm = QS_NORM_LAYER;
    g->resid = QS_RESID_PARALLEL;
    f->qkv_bias = f->o_bias = f->mlp_bias = f->head_bias = f->norm_bias = 1;
    f->shared_norm = 1;
    f->qk_norm = qkln;
    f->qk_norm_kind = QS_NORM_LAYER;
    return QS_OK;
}

const qs_family qs_fam_phi = {
    .name = "phi", .hf_arch = "PhiForCausalLM", .model_type = "phi", .arch = QS_ARCH_LLAMA,
    .what = "parallel block from one LayerNorm, partial rotary, biases incl. the head",
    .config = config,
    .prefixes = {"model.", ""}, .embed = "embed_tokens", .final_norm = "final_layernorm", .head = "lm_head",
    .attn_norm = "layers.%d.input_layernorm", .q = "layers.%d.self_attn.q_proj", .k = "layers.%d.self_attn.k_proj",
    .v = "layers.%d.self_attn.v_proj", .o = "layers.%d.self_attn.dense",
    .q_norm = "layers.%d.self_attn.q_layernorm", .k_norm = "layers.%d.self_attn.k_layernorm",
    .up = "layers.%d.mlp.fc1", .down = "layers.%d.mlp.fc2",
};
