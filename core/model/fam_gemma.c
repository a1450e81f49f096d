/* fam_gemma.c — Gemma (GemmaForCausalLM): RMSNorm computing x (1 + w),
 * embeddings scaled by sqrt(hidden), GeGLU (tanh GELU on the gate), a tied
 * head, head_dim 256 unless the config says. */
#include <math.h>

#include "model/family_impl.h"

static qs_status config(const qs_cfgr *r, qs_config *g, qs_fam_flags *f) {
    qs_status st;
    int ab = 0;
    if ((st = qs_cfgr_llama_like(r, g, 256, 8192, 1, "hidden_act", "gelu_pytorch_tanh", "Gemma")) ||
        (st = qs_cfgr_bool(r, "attention_bias", 0, &ab)))
        return st;
    g->embed_scale = (float)sqrt((double)g->d_model);
    f->qkv_bias = f->o_bias = ab;
    f->norm_plus_one = 1;
    f->gated = 1;
    return QS_OK;
}

const qs_family qs_fam_gemma = {
    .name = "gemma", .hf_arch = "GemmaForCausalLM", .model_type = "gemma", .arch = QS_ARCH_LLAMA,
    .what = "RMSNorm x(1+w), embeddings x sqrt(d), GeGLU, tied head",
    .config = config, QS_LLAMA_NAMES, QS_LLAMA_QKV, QS_LLAMA_MLP_NORM, QS_LLAMA_GATE_UP,
};
