/* fam_gpt2.c — GPT-2 (GPT2LMHeadModel): learned positions, pre-LayerNorm,
 * tanh GELU; its Conv1D linears store [in, out] and its c_attn holds q, k
 * and v side by side. */
#include "model/family_impl.h"

static qs_status config(const qs_cfgr *r, qs_config *g, qs_fam_flags *f) {
    qs_status st;
    int scale = 1;
    double eps;
    if ((st = qs_cfgr_int(r, "n_embd", 1, 0, 1, &g->d_model)) ||
        (st = qs_cfgr_int(r, "n_layer", 1, 0, 1, &g->n_layers)) ||
        (st = qs_cfgr_int(r, "n_head", 1, 0, 1, &g->n_heads)) ||
        (st = qs_cfgr_int(r, "vocab_size", 1, 0, 1, &g->vocab)) ||
        (st = qs_cfgr_int(r, "n_positions", 0, 1024, 1, &g->max_pos)) ||
        (st = qs_cfgr_int(r, "n_inner", 0, 4 * g->d_model, 1, &g->d_ff)) ||
        (st = qs_cfgr_float(r, "layer_norm_epsilon", 1e-5, &eps)) ||
        (st = qs_cfgr_bool(r, "tie_word_embeddings", 1, &g->tied_head)) ||
        (st = qs_cfgr_bool(r, "scale_attn_weights", 1, &scale)) ||
        (st = qs_cfgr_refuse(r, "scale_attn_by_inverse_layer_idx", "scores scaled by 1/(layer+1)")) ||
        (st = qs_cfgr_act(r, "activation_function", "gelu_new", &g->act)))
        return st;
    if (!scale) return qs_fail(QS_EUNSUPPORTED, "%s: scale_attn_weights = false is not supported", qs_cfgr_path(r));
    if (!(eps > 0)) return qs_fail(QS_EFORMAT, "%s: 'layer_norm_epsilon' must be above 0", qs_cfgr_path(r));
    if (g->d_model % g->n_heads)
        return qs_fail(QS_EFORMAT, "%s: hidden size %d is not a multiple of %d heads", qs_cfgr_path(r), g->d_model,
                       g->n_heads);
    g->norm_eps = (float)eps;
    g->n_kv_heads = g->n_heads;
    g->head_dim = g->d_model / g->n_heads;
    g->norm = QS_NORM_LAYER;
    f->qkv_bias = f->o_bias = f->mlp_bias = f->norm_bias = 1;
    return QS_OK;
}

const qs_family qs_fam_gpt2 = {
    .name = "gpt2", .hf_arch = "GPT2LMHeadModel", .model_type = "gpt2", .arch = QS_ARCH_GPT2,
    .what = "learned positions, pre-LayerNorm, Conv1D weights, fused c_attn",
    .config = config,
    .prefixes = {"transformer.", ""}, .embed = "wte", .pos_embed = "wpe", .final_norm = "ln_f", .head = "lm_head",
    .attn_norm = "h.%d.ln_1", .qkv = "h.%d.attn.c_attn", .qkv_layout = QS_QKV_FUSED, .o = "h.%d.attn.c_proj",
    .mlp_norm = "h.%d.ln_2", .up = "h.%d.mlp.c_fc", .down = "h.%d.mlp.c_proj", .conv1d = 1,
    .ignore = {"attn.bias", "attn.masked_bias"},
};
