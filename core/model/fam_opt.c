/* fam_opt.c — OPT (OPTForCausalLM): learned positions from row 2, ReLU MLP,
 * biases, LayerNorm before each sublayer, or after it when
 * do_layer_norm_before is false (opt-350m, which also projects narrower
 * embeddings in and out: word_embed_proj_dim). */
#include "model/family_impl.h"

static qs_status config(const qs_cfgr *r, qs_config *g, qs_fam_flags *f) {
    qs_status st;
    int pre_ln = 1, remove_final = 0, bias = 1, affine = 1, proj = 0;
    if ((st = qs_cfgr_int(r, "hidden_size", 1, 0, 1, &g->d_model)) ||
        (st = qs_cfgr_int(r, "num_hidden_layers", 1, 0, 1, &g->n_layers)) ||
        (st = qs_cfgr_int(r, "num_attention_heads", 1, 0, 1, &g->n_heads)) ||
        (st = qs_cfgr_int(r, "ffn_dim", 1, 0, 1, &g->d_ff)) ||
        (st = qs_cfgr_int(r, "vocab_size", 1, 0, 1, &g->vocab)) ||
        (st = qs_cfgr_int(r, "max_position_embeddings", 0, 2048, 1, &g->max_pos)) ||
        (st = qs_cfgr_int(r, "word_embed_proj_dim", 0, g->d_model, 1, &proj)) ||
        (st = qs_cfgr_bool(r, "do_layer_norm_before", 1, &pre_ln)) ||
        (st = qs_cfgr_bool(r, "_remove_final_layer_norm", 0, &remove_final)) ||
        (st = qs_cfgr_bool(r, "enable_bias", 1, &bias)) ||
        (st = qs_cfgr_bool(r, "layer_norm_elementwise_affine", 1, &affine)) ||
        (st = qs_cfgr_bool(r, "tie_word_embeddings", 1, &g->tied_head)) ||
        (st = qs_cfgr_act(r, "activation_function", "relu", &g->act)))
        return st;
    if (g->d_model % g->n_heads)
        return qs_fail(QS_EFORMAT, "%s: hidden size %d is not a multiple of %d heads", qs_cfgr_path(r), g->d_model,
                       g->n_heads);
    if (!affine) return qs_cfgr_refuse(r, "layer_norm_elementwise_affine", "LayerNorms without weights");
    g->n_kv_heads = g->n_heads;
    g->head_dim = g->d_model / g->n_heads;
    g->pos_offset = 2;
    g->norm = QS_NORM_LAYER;
    g->norm_eps = 1e-5f;
    g->resid = pre_ln ? QS_RESID_SEQ : QS_RESID_POST;
    f->qkv_bias = f->o_bias = f->mlp_bias = bias;
    f->norm_bias = 1;
    f->embed_dim = proj != g->d_model ? proj : 0;
    f->no_final_norm = !pre_ln || remove_final;
    return QS_OK;
}

const qs_family qs_fam_opt = {
    .name = "opt", .hf_arch = "OPTForCausalLM", .model_type = "opt", .arch = QS_ARCH_OPT,
    .what = "learned positions, ReLU, pre- or post-LayerNorm, project_in/out",
    .config = config,
    .prefixes = {"model.decoder.", "decoder."}, .embed = "embed_tokens", .pos_embed = "embed_positions",
    .proj_in = "project_in", .proj_out = "project_out", .final_norm = "final_layer_norm", .head = "lm_head",
    .attn_norm = "layers.%d.self_attn_layer_norm", .q = "layers.%d.self_attn.q_proj",
    .k = "layers.%d.self_attn.k_proj", .v = "layers.%d.self_attn.v_proj", .o = "layers.%d.self_attn.out_proj",
    .mlp_norm = "layers.%d.final_layer_norm", .up = "layers.%d.fc1", .down = "layers.%d.fc2",
};
