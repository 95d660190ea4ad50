/* config.h — the model's shape and options as a C struct.
 *
 * lightllm/config.py reads config.json (both spellings: rope_theta/rope_scaling as published
 * checkpoints have it, rope_parameters as transformers >= 5 writes it) into a flat dict that
 * csrc/py copies into this struct; model_config_validate checks it and names what is wrong.
 */
#ifndef LIGHTLLM_MODEL_CONFIG_H
#define LIGHTLLM_MODEL_CONFIG_H

#include <stdint.h>

#include "core/status.h"

typedef enum model_arch {
    MODEL_ARCH_LLAMA = 0,     /* LlamaForCausalLM */
    MODEL_ARCH_QWEN2,         /* Qwen2ForCausalLM: qkv bias */
    MODEL_ARCH_QWEN3,         /* Qwen3ForCausalLM: per-head q/k RMSNorm */
    MODEL_ARCH_MISTRAL,       /* MistralForCausalLM */
    MODEL_ARCH_COUNT,
} model_arch;

typedef enum rope_type {
    ROPE_DEFAULT = 0,
    ROPE_LINEAR,
    ROPE_LLAMA3,
    ROPE_YARN,
} rope_type;

typedef struct rope_config {
    rope_type type;
    double theta;
    double factor;                      /* linear, llama3, yarn */
    double low_freq_factor;             /* llama3 */
    double high_freq_factor;            /* llama3 */
    int32_t original_max_position;      /* llama3, yarn (0 = max_position_embeddings) */
    double beta_fast, beta_slow;        /* yarn (0 = defaults 32 / 1) */
    double attention_factor;            /* yarn (0 = derived from factor / mscale) */
    double mscale, mscale_all_dim;      /* yarn (0 = unset) */
    int32_t truncate;                   /* yarn: floor/ceil the correction range (default 1) */
} rope_config;

typedef struct model_config {
    model_arch arch;
    int32_t vocab_size;
    int32_t hidden_size;
    int32_t intermediate_size;
    int32_t num_layers;
    int32_t num_heads;
    int32_t num_kv_heads;
    int32_t head_dim;
    int32_t max_position_embeddings;
    int32_t sliding_window;             /* 0 = none */
    float rms_norm_eps;
    int32_t tie_word_embeddings;
    int32_t qkv_bias;                   /* Qwen2 (and Llama with attention_bias) */
    int32_t qk_norm;                    /* Qwen3 */
    rope_config rope;
} model_config;

/* "LlamaForCausalLM" → MODEL_ARCH_LLAMA; STATUS_UNSUPPORTED listing the supported names. */
status_t model_config_arch_from_name(const char *name, model_arch *out);
const char *model_config_arch_name(model_arch arch);
/* Sets qkv_bias/qk_norm defaults of the architecture (callers may override after). */
void model_config_arch_defaults(model_config *c);
status_t model_config_validate(const model_config *c);

#endif
