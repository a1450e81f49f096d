/* loaders.h — the format-specific loaders behind qs_model_load().
 * Each fills a qs_model in canonical form (see model.h) or fails leaving
 * nothing allocated.
 *
 * Tokenizers: a model whose files carry no tokenizer at all (a directory
 * without tokenizer.json or vocab.json + merges.txt, a .bin with no
 * tokenizer.bin / tok<vocab>.bin beside it, a GGUF without
 * tokenizer.ggml.model) still loads, with m->tok = NULL and a QS_LOG_WARN
 * message: it runs on token ids. A tokenizer that is present but broken
 * fails the whole load with the tokenizer's error, as does an explicit
 * tokenizer path that does not exist. A tokenizer larger than the model's
 * vocabulary is QS_ESHAPE (its ids would index past the embedding). */
#ifndef QS_LOADERS_H
#define QS_LOADERS_H

#include "model/model.h"

/* Hugging Face directory: config.json, model.safetensors or
 * model.safetensors.index.json + shards, tokenizer files. The architecture
 * picks a family description (model/family.c); every tensor in the files
 * must be one the family reads. (model/hf.c) */
qs_status qs_hf_load(const char *dir, qs_model **out);

/* GGUF v3 file (llama, qwen2, qwen3, gemma2, phi3 as llama.cpp's converter
 * writes them), vocabulary inside. llama's q/k rows are permuted from GGUF's
 * interleaved RoPE order. Every tensor must be read. An
 * output.weight byte-identical to token_embd.weight is treated as a tied
 * head (converters write a copy for shared classifiers). (model/gguf_load.c, reading through read/gguf.c) */
qs_status qs_gguf_load(const char *path, qs_model **out);

/* llama2.c checkpoint (.bin, legacy version-0 header) and its tokenizer.bin
 * (tokenizer NULL: tokenizer.bin or tok<vocab>.bin beside the checkpoint).
 * The file size must match the header exactly; q/k rows are permuted from
 * Meta's interleaved RoPE order. (model/llama2c.c, reading through read/llama2c.c) */
qs_status qs_l2c_load(const char *path, const char *tokenizer, qs_model **out);

#endif
