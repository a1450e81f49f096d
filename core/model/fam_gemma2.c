/* fam_gemma2.c — Gemma 2 (Gemma2ForCausalLM): Gemma, plus norms on the
 * attention and MLP outputs (four per block), soft-capped attention scores
 * and logits, a sliding window on every other layer (the even ones), and
 * scores scaled by query_pre_attn_scalar^-1/2. */
#include <math.h>

#include "model/family_impl.h"

static qs_status config(const qs_cfgr *r, qs_config *g, qs_fam_flags *f) {
    qs_status st;
    int ab = 0;
    double win, acap, lcap, qpas;
    if ((st = qs_cfgr_llama_like(r, g, 256, 8192, 1, "hidden_activation", "gelu_pytorch_tanh", "Gemma 2")) ||
        (st = qs_cfgr_bool(r, "attention_bias", 0, &ab)) ||
        (st = qs_cfgr_optional(r, "sliding_window", 4096, &win)) ||
        (st = qs_cfgr_optional(r, "attn_logit_softcapping", 50.0, &acap)) ||
        (st = qs_cfgr_optional(r, "final_logit_softcapping", 30.0, &lcap)) ||
        (st = qs_cfgr_float(r, "query_pre_attn_scalar", 256, &qpas)))
        return st;
    if (win < 0 || win > (1 << 24) || acap < 0 || lcap < 0 || !(qpas > 0))
        return qs_fail(QS_EFORMAT, "%s: sliding_window, the soft-caps and query_pre_attn_scalar must be positive",
                       qs_cfgr_path(r));
    g->sliding_window = (int)win;
    g->window_every = 2;
    g->attn_softcap = (float)acap;
    g->logit_softcap = (float)lcap;
    g->attn_scale = (float)pow(qpas, -0.5);
    g->embed_scale = (float)sqrt((double)g->d_model);
    f->qkv_bias = f->o_bias = ab;
    f->norm_plus_one = 1;
    f->gated = 1;
    return QS_OK;
}

const qs_family qs_fam_gemma2 = {
    .name = "gemma2", .hf_arch = "Gemma2ForCausalLM", .model_type = "gemma2", .arch = QS_ARCH_LLAMA,
    .what = "Gemma + post-norms, soft-caps, alternating sliding window, query_pre_attn_scalar",
    .config = config, QS_LLAMA_NAMES, QS_LLAMA_QKV, QS_LLAMA_GATE_UP,
    .post_attn_norm = "layers.%d.post_attention_layernorm", .mlp_norm = "layers.%d.pre_feedforward_layernorm",
    .post_mlp_norm = "layers.%d.post_feedforward_layernorm",
};
