/* fam_phi3.c — Phi-3, Phi-3.5 and Phi-4-mini (Phi3ForCausalLM): Llama's
 * block with q, k, v in one qkv_proj and gate and up in one gate_up_proj;
 * longrope scaling, partial rotary, an optional sliding window. */
#include "model/family_impl.h"

static qs_status config(const qs_cfgr *r, qs_config *g, qs_fam_flags *f) {
    qs_status st;
    double win;
    if ((st = qs_cfgr_shape(r, g, 0, 4096, 0)) ||
        (st = qs_cfgr_positive(r, "rms_norm_eps", 1e-5, &g->norm_eps)) ||
        (st = qs_cfgr_act(r, "hidden_act", "silu", &g->act)) ||
        (st = qs_cfgr_rope(r, g, "rope_theta", 10000.0, "partial_rotary_factor", 1.0)) ||
        (st = qs_cfgr_optional(r, "sliding_window", 0, &win)))
        return st;
    if (win < 0 || win > (1 << 24)) return qs_fail(QS_EFORMAT, "%s: 'sliding_window' out of range", qs_cfgr_path(r));
    g->sliding_window = (int)win;
    f->gated = 1;
    return QS_OK;
}

const qs_family qs_fam_phi3 = {
    .name = "phi3", .hf_arch = "Phi3ForCausalLM", .model_type = "phi3", .arch = QS_ARCH_LLAMA,
    .what = "fused qkv_proj and gate_up_proj, longrope, partial rotary",
    .config = config, QS_LLAMA_NAMES, QS_LLAMA_MLP_NORM,
    .qkv = "layers.%d.self_attn.qkv_proj", .qkv_layout = QS_QKV_FUSED,
    .gate_up = "layers.%d.mlp.gate_up_proj",
};
