/* family_impl.h — a model family as a description, private to model/.
 *
 * A family says how its config.json reads into qs_config (a function over
 * the helpers below) and where each weight lives in its safetensors (tensor
 * names and layouts). The one builder (hf.c) follows the description and
 * the one forward pass (run/forward.c) runs what qs_config and the weights
 * say; no family has a forward pass of its own. Each family is one file,
 * fam_<name>.c, and one line in family.c's list.
 *
 * Tensor names are relative to the family's prefix ("model.", ...), with
 * "%d" standing for the layer number; NULL means the family has no such
 * tensor. */
#ifndef QS_FAMILY_IMPL_H
#define QS_FAMILY_IMPL_H

#include "model/model.h"

/* ---- reading config.json (hf_config.c) ---- */

typedef struct qs_cfgr qs_cfgr;

const char *qs_cfgr_path(const qs_cfgr *r);
/* present and not null */
int qs_cfgr_has(const qs_cfgr *r, const char *key);
/* An integer in [lo, 2^24]: absent or null gives def, or fails when required. */
qs_status qs_cfgr_int(const qs_cfgr *r, const char *key, int required, int def, int lo, int *out);
/* A finite number: absent or null gives def. */
qs_status qs_cfgr_float(const qs_cfgr *r, const char *key, double def, double *out);
/* A finite number above 0 (norm epsilons, rope bases, scales). */
qs_status qs_cfgr_positive(const qs_cfgr *r, const char *key, double def, float *out);
qs_status qs_cfgr_bool(const qs_cfgr *r, const char *key, int def, int *out);
const char *qs_cfgr_str(const qs_cfgr *r, const char *key);
/* A number that may be switched off: absent gives def, null gives 0. */
qs_status qs_cfgr_optional(const qs_cfgr *r, const char *key, double def, double *out);
qs_status qs_cfgr_act(const qs_cfgr *r, const char *key, const char *def, qs_act *out);
/* A key transformers reads for this family and qscope does not implement:
 * refused, naming it, when it is set to anything but null, false or 0. */
qs_status qs_cfgr_refuse(const qs_cfgr *r, const char *key, const char *why);

/* The shape keys most families share: hidden_size, num_hidden_layers,
 * num_attention_heads, num_key_value_heads (default: heads), head_dim
 * (default def_head_dim, or hidden/heads when 0), intermediate_size,
 * vocab_size, max_position_embeddings (default def_max_pos),
 * tie_word_embeddings (default def_tie). */
qs_status qs_cfgr_shape(const qs_cfgr *r, qs_config *g, int def_head_dim, int def_max_pos, int def_tie);
/* RoPE: rope_theta (or theta_key; default def_theta), the rotated fraction
 * (fraction_key, default def_fraction: dim = int(head_dim * fraction)), and
 * rope_scaling: default, linear, dynamic, yarn, llama3, longrope (others
 * are refused). */
qs_status qs_cfgr_rope(const qs_cfgr *r, qs_config *g, const char *theta_key, double def_theta,
                       const char *fraction_key, double def_fraction);

/* The keys of a Llama-like block: the shape (as qs_cfgr_shape),
 * rms_norm_eps (1e-6), the activation under act_key (default act_def), RoPE
 * over whole heads (partial_rotary_factor is refused naming family). */
qs_status qs_cfgr_llama_like(const qs_cfgr *r, qs_config *g, int def_head_dim, int def_max_pos, int def_tie,
                             const char *act_key, const char *act_def, const char *family);

/* ---- the description ---- */

typedef enum {
    QS_QKV_SPLIT = 0, /* q, k, v tensors */
    QS_QKV_FUSED,     /* one tensor: q rows, then k rows, then v rows (Phi-3, GPT-2's c_attn) */
    QS_QKV_HEADS,     /* one tensor, per head [q k v] (GPT-NeoX) */
} qs_qkv_layout;

/* What the config decides about the tensors (the family's config function
 * fills it). */
typedef struct {
    int qkv_bias, o_bias, mlp_bias, head_bias;
    int norm_bias;       /* LayerNorms with a bias */
    int qk_norm;         /* q_norm/k_norm tensors (kind qk_norm_kind) */
    qs_norm_kind qk_norm_kind;
    int norm_plus_one;   /* Gemma: the norms compute x (1 + w) */
    int shared_norm;     /* Phi-2: the MLP reads the attention's norm */
    int gated;           /* gate and up (or gate_up) */
    int embed_dim;       /* token embedding width when projected (OPT-350m), else 0 */
    int no_final_norm;   /* post-norm OPT */
} qs_fam_flags;

typedef struct qs_family {
    const char *name;       /* "llama": qs_config.family */
    const char *hf_arch;    /* architectures[0] in config.json */
    const char *model_type; /* config.json model_type */
    const char *what;       /* one line for listings: what the family does differently */
    qs_arch arch;           /* the broad layout */
    qs_status (*config)(const qs_cfgr *r, qs_config *g, qs_fam_flags *f);
    const char *prefixes[3]; /* tried in order until `embed` is found */
    const char *embed, *pos_embed, *proj_in, *proj_out, *final_norm;
    const char *head;       /* outside the prefix */
    const char *attn_norm, *q, *k, *v, *qkv, *o, *q_norm, *k_norm, *post_attn_norm;
    const char *mlp_norm, *post_mlp_norm, *gate, *up, *gate_up, *down;
    qs_qkv_layout qkv_layout;
    int conv1d;             /* GPT-2: linear weights stored [in, out] */
    const char *ignore[4];  /* name suffixes of tensors the family never reads (causal-mask buffers) */
} qs_family;

/* The tensor names of the Llama layout, which many families share, in
 * parts a family can leave out and replace. */
#define QS_LLAMA_NAMES                                                                                     \
    .prefixes = {"model.", ""}, .embed = "embed_tokens", .final_norm = "norm", .head = "lm_head",         \
    .attn_norm = "layers.%d.input_layernorm", .o = "layers.%d.self_attn.o_proj",                          \
    .down = "layers.%d.mlp.down_proj"
#define QS_LLAMA_QKV                                                                                       \
    .q = "layers.%d.self_attn.q_proj", .k = "layers.%d.self_attn.k_proj", .v = "layers.%d.self_attn.v_proj"
#define QS_LLAMA_MLP_NORM .mlp_norm = "layers.%d.post_attention_layernorm"
#define QS_LLAMA_GATE_UP .gate = "layers.%d.mlp.gate_proj", .up = "layers.%d.mlp.up_proj"

/* Every family, NULL-terminated (family.c). */
extern const qs_family *const qs_family_list[];
const qs_family *qs_family_by_arch(const char *hf_arch);
const qs_family *qs_family_by_type(const char *model_type);

#endif
