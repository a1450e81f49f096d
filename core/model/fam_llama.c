/* fam_llama.c — Llama (LlamaForCausalLM): pre-RMSNorm blocks, SwiGLU, RoPE
 * with any of transformers' scalings (Llama-3.1's llama3, linear, dynamic,
 * yarn), grouped-query attention, optional attention and MLP biases. */
#include "model/family_impl.h"

static qs_status config(const qs_cfgr *r, qs_config *g, qs_fam_flags *f) {
    qs_status st;
    int ab = 0, mb = 0;
    if ((st = qs_cfgr_llama_like(r, g, 0, 2048, 0, "hidden_act", "silu", "Llama")) ||
        (st = qs_cfgr_bool(r, "attention_bias", 0, &ab)) || (st = qs_cfgr_bool(r, "mlp_bias", 0, &mb)))
        return st;
    f->qkv_bias = f->o_bias = ab;
    f->mlp_bias = mb;
    f->gated = 1;
    return QS_OK;
}

const qs_family qs_fam_llama = {
    .name = "llama", .hf_arch = "LlamaForCausalLM", .model_type = "llama", .arch = QS_ARCH_LLAMA,
    .what = "pre-RMSNorm, SwiGLU, RoPE (default, linear, dynamic, yarn, llama3), GQA",
    .config = config, QS_LLAMA_NAMES, QS_LLAMA_QKV, QS_LLAMA_MLP_NORM, QS_LLAMA_GATE_UP,
};
