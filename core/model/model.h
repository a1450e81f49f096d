/* model.h — a loaded causal language model: config, fp32 weights, tokenizer.
 *
 * Every supported file format is turned into the same canonical form:
 *   - linear weights are fp32 row-major (n_out, n_in), as torch.nn.Linear
 *     stores them (GPT-2's Conv1D [in, out] is transposed at load; its fused
 *     c_attn is split into q, k, v);
 *   - Llama q/k rows are in Hugging Face's rotate-half order (llama2.c and
 *     GGUF files store them interleaved; the loader permutes them);
 *   - F16/BF16 tensors are converted to fp32 once at load; F32 tensors are
 *     borrowed from the memory map when aligned.
 *
 *     qs_model *m;
 *     if (qs_model_load("models/opt-mini", NULL, &m) != QS_OK)
 *         die(qs_last_error());
 *     printf("%s, %lld parameters\n", m->cfg.arch_name, qs_model_params(m));
 *     qs_model_free(m);
 */
#ifndef QS_MODEL_H
#define QS_MODEL_H

#include <stdint.h>

#include "base/base.h"
#include "kern/kern.h"
#include "tok/tok.h"

typedef enum { QS_ARCH_OPT = 1, QS_ARCH_GPT2 = 2, QS_ARCH_LLAMA = 3 } qs_arch;
typedef enum { QS_ACT_RELU = 1, QS_ACT_GELU_TANH = 2, QS_ACT_GELU = 3, QS_ACT_SILU = 4 } qs_act;
typedef enum { QS_NORM_LAYER = 1, QS_NORM_RMS = 2 } qs_norm_kind;

/* Rotary position embeddings as transformers' modeling_rope_utils computes
 * them: the kind picks the inverse frequencies (model/rope.c). */
typedef enum {
    QS_ROPE_NONE = 0,  /* learned positions */
    QS_ROPE_DEFAULT,   /* theta^(-2i/dim) */
    QS_ROPE_LINEAR,    /* default / factor */
    QS_ROPE_DYNAMIC,   /* NTK: theta grows once the sequence passes max_pos */
    QS_ROPE_YARN,      /* ramp between interpolation and extrapolation, cos/sin scaled */
    QS_ROPE_LLAMA3,    /* Llama-3.1: long wavelengths / factor, a smooth band between */
    QS_ROPE_LONGROPE,  /* Phi-3.5/4: per-frequency short or long factors, cos/sin scaled */
    QS_ROPE_DIVISORS,  /* each frequency divided by a factor of its own (GGUF rope_freqs: llama3) */
} qs_rope_kind;

enum { QS_ROPE_FACTORS = 256 }; /* longrope: at most this many frequencies (rotary dims up to 512) */

typedef struct {
    qs_rope_kind kind;
    int dim;              /* rotated channels of each head (the first dim; partial rotary: < head_dim) */
    float factor;         /* linear, dynamic, yarn, llama3 */
    int orig_max;         /* original_max_position_embeddings (yarn, llama3, longrope) */
    float low_freq, high_freq;  /* llama3's low_freq_factor, high_freq_factor */
    float beta_fast, beta_slow; /* yarn */
    float attn_factor;    /* yarn, longrope: cos and sin are multiplied by it */
    float short_factor[QS_ROPE_FACTORS], long_factor[QS_ROPE_FACTORS]; /* longrope: dim/2 each; divisors: short */
} qs_rope;

/* How a block joins its two sublayers to the residual stream. */
typedef enum {
    QS_RESID_SEQ = 0,      /* x += attn(norm1 x); x += mlp(norm2 x)              (pre-norm) */
    QS_RESID_PARALLEL = 1, /* x += attn(norm1 x) + mlp(norm2 x)     (GPT-NeoX, Phi-2: norm2 = norm1) */
    QS_RESID_POST = 2,     /* x = norm1(x + attn(x)); x = norm2(x + mlp(x))   (post-norm OPT-350m) */
} qs_resid;

typedef struct {
    qs_arch arch;        /* the broad layout (synthetic models are built from it) */
    char arch_name[64];  /* "OPTForCausalLM", "GPT2LMHeadModel", "LlamaForCausalLM", ... */
    char family[24];     /* the family description it was read by: "llama", "gemma2", "phi3", ... */
    int d_model;         /* residual width */
    int n_layers;
    int n_heads;         /* query heads */
    int n_kv_heads;      /* key/value heads (GQA); = n_heads without GQA */
    int head_dim;
    int d_ff;            /* MLP hidden width */
    int vocab;
    int max_pos;         /* maximum positions (context) */
    int pos_offset;      /* learned-position row of position 0 (OPT: 2) */
    qs_act act;
    qs_norm_kind norm;
    float norm_eps;
    float rope_theta;    /* RoPE base; 0 for learned positions */
    qs_rope rope;        /* the rest of RoPE (rope_theta > 0) */
    qs_resid resid;
    int sliding_window;  /* local attention: a query sees the last sliding_window keys; 0 = none */
    int window_every;    /* 0: every layer slides; k: layer l slides unless (l + 1) % k == 0 (Gemma-2: 2) */
    float embed_scale;   /* token embeddings are multiplied by it (Gemma: sqrt(d_model)); 0: 1 */
    float attn_scale;    /* attention scores' scale; 0: 1/sqrt(head_dim) */
    float attn_softcap;  /* scores become c tanh(s / c) before the mask; 0: none */
    float logit_softcap; /* logits likewise */
    int tied_head;       /* head weight is the token embedding */
    int bos_id, eos_id, pad_id; /* -1 when absent */
} qs_config;

/* A kernel a variant puts in a linear's place (LLM.int8()'s int8 GEMM with
 * fp32 outlier columns, in core/methods/int8.c): the forward pass runs it
 * without knowing what it is. */
typedef struct qs_lin_kernel {
    const char *name;
    /* y (n, n_out) = x (n, n_in) through the kernel, bias included. *count:
     * what the kernel counts per call (LLM.int8(): feature columns that went
     * through fp32). scratch: the context's, from scratch_new (NULL if none). */
    qs_status (*run)(const void *data, const float *x, int n, float *y, void *scratch, int *count);
    void *(*scratch_new)(void);
    void (*scratch_free)(void *scratch);
} qs_lin_kernel;

/* y = x W^T + b */
typedef struct {
    int n_out, n_in;
    const float *w;   /* (n_out, n_in) fp32, or NULL when the weights are kept as stored (wq) */
    const void *wq;   /* the rows as the file stores them (F16, BF16, ggml blocks), read in place by
                       * the kernels (kern/wmat.c); NULL when w holds them */
    uint32_t wtype;   /* wq's type (a ggml type code, QS_WT_*) */
    const float *b;   /* (n_out) or NULL */
    /* A variant may run the layer through a kernel of its own instead (w is
     * then NULL: the kernel's data is the only copy of the weights). */
    const qs_lin_kernel *kern;
    const void *kdata;
    /* How the weights are stored, for size accounting: bits 0 = fp32, else
     * the quantized width (w then holds the dequantized values); group 0 =
     * one scale per output row, else per `group` input channels; asym: a
     * zero point per group too. */
    int bits, group, asym;
} qs_linear;

/* LayerNorm (w, b) or RMSNorm (w, b = NULL). */
typedef struct {
    int dim;
    const float *w; /* (dim), NULL: no gain */
    const float *b; /* (dim) or NULL */
    int kind;       /* qs_norm_kind; 0: the model's (cfg.norm) */
    int div;        /* divisor of the mean square; 0: dim (SliceGPT keeps the original width) */
    const int32_t *perm; /* (dim) output j is normalised input channel perm[j] (RPTQ reorder), or NULL */
} qs_norm;

typedef struct {
    qs_norm attn_norm;      /* OPT self_attn_layer_norm, GPT-2 ln_1, Llama input_layernorm */
    qs_linear q, k, v, o;   /* q (n_heads*head_dim, d), k/v (n_kv_heads*head_dim, d), o (d, n_heads*head_dim) */
    qs_norm q_norm, k_norm; /* per-head norms of q and k before RoPE (Qwen3; dim = head_dim); dim 0: none */
    qs_norm post_attn_norm; /* on the attention output before the residual add (Gemma-2); dim 0: none */
    qs_norm mlp_norm;       /* OPT final_layer_norm, GPT-2 ln_2, Llama post_attention_layernorm */
    qs_norm post_mlp_norm;  /* on the MLP output before the residual add (Gemma-2); dim 0: none */
    qs_linear up;           /* (d_ff, d): OPT fc1, GPT-2 c_fc, Llama up_proj */
    qs_linear gate;         /* (d_ff, d): Llama gate_proj; w NULL otherwise. Gated MLP: act(gate) * up */
    qs_linear down;         /* (d, d_ff): OPT fc2, GPT-2 mlp.c_proj, Llama down_proj */
    /* SliceGPT: the residual path through a block whose input, middle and
     * output widths differ. x_mid = x_in attn_skip^T + o(...), x_out =
     * x_mid mlp_skip^T + down(...). w NULL: identity. */
    qs_linear attn_skip;    /* (d_mid, d_in) */
    qs_linear mlp_skip;     /* (d_out, d_mid) */
} qs_layer;

/* A layer's linears, q, k, v, o, up, gate, down, and with with_skips also
 * SliceGPT's attn_skip and mlp_skip (the slots; a missing one, such as gate
 * without SwiGLU, has neither w nor kern): the one list every loop over them
 * uses. out: QS_LAYER_LINEARS (with skips) pointers; returns the count. */
enum { QS_LAYER_LINEARS = 9 };
int qs_layer_linears(qs_layer *L, int with_skips, qs_linear **out);

/* Whether the slot holds a linear (fp32, as stored, or a kernel's). */
static inline int qs_linear_has(const qs_linear *l) { return l->w || l->wq || l->kern; }
/* Whether its weights can be read (fp32 or as stored; not a kernel's own). */
static inline int qs_linear_readable(const qs_linear *l) { return l->w || l->wq; }
/* The weights as fp32 (n_out, n_in): l->w itself, or wq decoded into a new
 * buffer *tmp (malloc'd; the caller frees it, NULL when none was needed).
 * NULL when l has no readable weights or there is no memory (message set).
 * Methods work one matrix at a time through it. */
const float *qs_linear_f32(const qs_linear *l, float **tmp);
/* Point l at fp32 weights (a method's result): w set, wq cleared. */
static inline void qs_linear_set_f32(qs_linear *l, const float *w) {
    l->w = w;
    l->wq = NULL;
    l->wtype = 0;
}
/* Bytes its weights take as held (fp32 4 per value; as stored: the type's). */
long long qs_linear_stored_bytes(const qs_linear *l);

typedef struct {
    const float *tok_embed; /* (vocab, d) fp32, or NULL when kept as stored (embed_q) */
    const void *embed_q;    /* (vocab, d) rows as the file stores them (F16, BF16, ggml blocks) */
    uint32_t embed_type;    /* embed_q's type (QS_WT_*) */
    const float *pos_embed; /* (max_pos + pos_offset, d), NULL for RoPE models */
    qs_layer *layers;       /* (n_layers) */
    qs_norm final_norm;     /* (d); dim 0: none (post-norm OPT) */
    qs_linear proj_in;      /* (d, d_embed) after the token embedding (OPT-350m project_in); w NULL: none */
    qs_linear proj_out;     /* (d_embed, d) before the head (OPT-350m project_out); w NULL: none */
    qs_linear head;         /* (vocab, d or d_embed); head.w == tok_embed when tied */
    int d_embed;            /* width of the token embeddings; 0: cfg.d_model (SliceGPT slices it; OPT-350m's are narrower) */
} qs_weights;

typedef struct qs_model {
    qs_config cfg;
    qs_weights w;
    qs_tok *tok;          /* owned; NULL for a synthetic model */
    qs_store *store;      /* owns converted tensors and file maps */
    char path[1024];      /* what it was loaded from */
    char format[24];      /* "safetensors", "gguf", "llama2.c", "synthetic" */
    char dtype[16];       /* storage dtype on disk ("F16", "BF16", "F32", "mixed") */
    char hf_prefix[32];   /* Hugging Face directories: the prefix of the names ("model.", "model.decoder.") */
} qs_model;

typedef struct {
    const char *tokenizer; /* llama2.c: tokenizer.bin path (default: beside the checkpoint) */
} qs_load_opts;

/* Load a model: a Hugging Face directory (config.json + model.safetensors or
 * a sharded index), a .gguf file, or a llama2.c .bin checkpoint. opts may be
 * NULL. On failure *out is NULL and nothing is leaked. */
qs_status qs_model_load(const char *path, const qs_load_opts *opts, qs_model **out);
void qs_model_free(qs_model *m);

/* The bundled model's directory: $QSCOPE_MODEL, ./models/opt-mini,
 * models/opt-mini beside the executable, or the installed copy under
 * ../share/qscope; "models/opt-mini" when none exists (so loading it names
 * that path). The result may point into buf (cap bytes). */
const char *qs_model_default_path(char *buf, size_t cap);

/* The path of a file that travels with model m (calib.txt, eval.txt): in its
 * directory, or beside its file; written into buf (cap bytes). Returns 1 when
 * that file exists. */
int qs_model_file_beside(const qs_model *m, const char *name, char *buf, size_t cap);

/* The weights of a model loaded from a Hugging Face directory, by where its
 * family stores them: the names a writer uses to put a variant back under
 * the names the source file used (export/). */
typedef enum {
    QS_HF_EMBED, QS_HF_POS_EMBED, QS_HF_PROJ_IN, QS_HF_PROJ_OUT, QS_HF_FINAL_NORM, QS_HF_HEAD, /* global */
    QS_HF_ATTN_NORM, QS_HF_Q, QS_HF_K, QS_HF_V, QS_HF_O, QS_HF_Q_NORM, QS_HF_K_NORM, /* per layer */
    QS_HF_POST_ATTN_NORM, QS_HF_MLP_NORM, QS_HF_POST_MLP_NORM, QS_HF_GATE, QS_HF_UP, QS_HF_DOWN,
    QS_HF_N_SLOTS
} qs_hf_slot;
enum { QS_HF_LAYER_SLOTS = QS_HF_ATTN_NORM }; /* slots from this one on are per layer */

/* The full base name (prefix included, no ".weight" or ".bias") slot s of
 * layer `layer` (-1 for the global slots) is stored under, into buf; "" when
 * m's family has no such tensor. QS_EUNSUPPORTED, naming the family, when m
 * was not read from a Hugging Face directory, or its family stores the slot
 * fused with others (GPT-2's c_attn, Phi-3's qkv_proj and gate_up_proj,
 * GPT-NeoX's query_key_value) or transposed (GPT-2's Conv1D). */
qs_status qs_hf_slot_name(const qs_model *m, qs_hf_slot s, int layer, char *buf, size_t cap);

/* Check every tensor's shape against the config, the norm epsilon, and that
 * norms and biases are finite (loaders call it last). */
qs_status qs_model_validate(const qs_model *m);

/* Row id of the token embedding as fp32 (de values). */
void qs_embed_row(const qs_weights *w, int id, int de, float *dst);
/* Whether the head is the token embedding (tied), as held. */
static inline int qs_head_tied(const qs_weights *w) {
    return (w->tok_embed && w->head.w == w->tok_embed) || (w->embed_q && w->head.wq == w->embed_q);
}
/* Point the head at the token embedding, however it is held. */
void qs_head_tie(qs_weights *w, int vocab, int de);
/* QS_EFORMAT naming the first tensor that holds a NaN or an infinity
 * ("layer 3: MLP norm weight holds a non-finite value (nan at index 17)"),
 * else QS_OK. Norms and biases always (cheap: the loaders check them);
 * with matrices also the embeddings and every readable linear, decoded a row
 * at a time when kept as stored: a pass over all the weights, which ppl
 * makes only when its result is not finite, to say why. */
qs_status qs_model_check_finite(const qs_model *m, int matrices);

/* Decode every linear held as stored (F16, BF16, ggml blocks) into fp32 in
 * the model's store, as qscope held all weights before keeping them as
 * stored: the numbers do not change, the memory grows to 4 bytes a weight.
 * For comparisons and tests that read weights directly. */
qs_status qs_model_weights_f32(qs_model *m);

/* Number of distinct parameters (a tied head counted once). */
long long qs_model_params(const qs_model *m);
/* Bytes of the weights as held: linears as stored (F16, BF16, ggml blocks or
 * fp32), everything else fp32. */
long long qs_model_weight_bytes(const qs_model *m);

/* A model with the given shapes and random weights (norm gains 1, biases 0,
 * matrices N(0, std^2)), for benchmarks. No tokenizer. */
qs_status qs_model_synth(const qs_config *cfg, uint64_t seed, float std, qs_model **out);

/* An empty model shell: store allocated, layers array allocated from it
 * (n_layers from cfg). Loaders fill cfg first, then call this; it refuses
 * sizes no model has (over 2^24, or over 4096 layers) naming src. */
qs_status qs_model_alloc(const qs_config *cfg, const char *src, qs_model **out);

const char *qs_arch_str(qs_arch a);
const char *qs_rope_kind_str(qs_rope_kind k);
const char *qs_resid_str(qs_resid r);

/* The sliding window of layer l (0: none). */
int qs_layer_window(const qs_config *c, int layer);

/* RoPE's inverse frequencies (rope.dim / 2 of them) for a pass whose last
 * position is seq_len - 1, as transformers computes them in float32 (the
 * dynamic kind and longrope depend on seq_len); returns the factor cos and
 * sin are multiplied by. (model/rope.c) */
float qs_rope_inv_freq(const qs_config *c, int seq_len, float *inv);

/* One line naming what the model exercises beyond a plain pre-norm block:
 * "RoPE llama3 (factor 8), sliding window 32 on alternate layers, ...". */
void qs_model_features(const qs_model *m, char *buf, size_t cap);
const char *qs_act_str(qs_act a);

#endif
