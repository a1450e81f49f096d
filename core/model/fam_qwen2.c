/* fam_qwen2.c — Qwen2 and Qwen2.5 (Qwen2ForCausalLM): Llama's block with
 * biases on q, k and v (not o). Per-layer windows (use_sliding_window) are
 * refused. */
#include "model/family_impl.h"

static qs_status config(const qs_cfgr *r, qs_config *g, qs_fam_flags *f) {
    qs_status st;
    if ((st = qs_cfgr_llama_like(r, g, 0, 32768, 0, "hidden_act", "silu", "Qwen2")) ||
        (st = qs_cfgr_refuse(r, "use_sliding_window", "windows on the layers past max_window_layers")))
        return st;
    f->qkv_bias = 1;
    f->gated = 1;
    return QS_OK;
}

const qs_family qs_fam_qwen2 = {
    .name = "qwen2", .hf_arch = "Qwen2ForCausalLM", .model_type = "qwen2", .arch = QS_ARCH_LLAMA,
    .what = "Llama's block, biases on q/k/v",
    .config = config, QS_LLAMA_NAMES, QS_LLAMA_QKV, QS_LLAMA_MLP_NORM, QS_LLAMA_GATE_UP,
};
