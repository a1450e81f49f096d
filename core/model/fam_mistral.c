/* fam_mistral.c — Mistral (MistralForCausalLM): Llama's block with a sliding
 * attention window on every layer (4096 unless the config says). */
#include "model/family_impl.h"

static qs_status config(const qs_cfgr *r, qs_config *g, qs_fam_flags *f) {
    qs_status st;
    double win;
    if ((st = qs_cfgr_llama_like(r, g, 0, 4096 * 32, 0, "hidden_act", "silu", "Mistral")) ||
        (st = qs_cfgr_optional(r, "sliding_window", 4096, &win)))
        return st;
    if (win < 0 || win > (1 << 24)) return qs_fail(QS_EFORMAT, "%s: 'sliding_window' out of range", qs_cfgr_path(r));
    g->sliding_window = (int)win;
    f->gated = 1;
    return QS_OK;
}

const qs_family qs_fam_mistral = {
    .name = "mistral", .hf_arch = "MistralForCausalLM", .model_type = "mistral", .arch = QS_ARCH_LLAMA,
    .what = "Llama's block, sliding-window attention",
    .config = config, QS_LLAMA_NAMES, QS_LLAMA_QKV, QS_LLAMA_MLP_NORM, QS_LLAMA_GATE_UP,
};
