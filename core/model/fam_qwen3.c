/* fam_qwen3.c — Qwen3 (Qwen3ForCausalLM): Llama's block with an RMSNorm on
 * each head of q and k before RoPE, and a head_dim of its own (128 unless
 * the config says). */
#include "model/family_impl.h"

static qs_status config(const qs_cfgr *r, qs_config *g, qs_fam_flags *f) {
    qs_status st;
    int ab = 0;
    if ((st = qs_cfgr_llama_like(r, g, 128, 32768, 0, "hidden_act", "silu", "Qwen3")) ||
        (st = qs_cfgr_bool(r, "attention_bias", 0, &ab)) ||
        (st = qs_cfgr_refuse(r, "use_sliding_window", "windows on the layers past max_window_layers")))
        return st;
    f->qkv_bias = f->o_bias = ab;
    f->qk_norm = 1;
    f->qk_norm_kind = QS_NORM_RMS;
    f->gated = 1;
    return QS_OK;
}

const qs_family qs_fam_qwen3 = {
    .name = "qwen3", .hf_arch = "Qwen3ForCausalLM", .model_type = "qwen3", .arch = QS_ARCH_LLAMA,
    .what = "Llama's block, per-head RMSNorm on q and k, own head_dim",
    .config = config, QS_LLAMA_NAMES, QS_LLAMA_QKV, QS_LLAMA_MLP_NORM, QS_LLAMA_GATE_UP,
    .q_norm = "layers.%d.self_attn.q_norm", .k_norm = "layers.%d.self_attn.k_norm",
};
