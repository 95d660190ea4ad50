/* config.c — architecture names and config validation (see config.h). */
#include "model/config.h"

#include <string.h>

static const char *const model_config_names[MODEL_ARCH_COUNT] = {
    "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM",
};

status_t model_config_arch_from_name(const char *name, model_arch *out)
{
    for (int i = 0; i < MODEL_ARCH_COUNT; i++) {
        if (strcmp(name, model_config_names[i]) == 0) {
            *out = (model_arch)i;
            return STATUS_OK;
        }
    }
    return status_set(STATUS_UNSUPPORTED,
                      "unsupported architecture %s; supported: LlamaForCausalLM, Qwen2ForCausalLM, "
                      "Qwen3ForCausalLM, MistralForCausalLM", name);
}

const char *model_config_arch_name(model_arch arch)
{
    return (arch >= 0 && arch < MODEL_ARCH_COUNT) ? model_config_names[arch] : "?";
}

void model_config_arch_defaults(model_config *c)
{
    c->qkv_bias = c->arch == MODEL_ARCH_QWEN2;
    c->qk_norm = c->arch == MODEL_ARCH_QWEN3;
}

#define CONFIG_POSITIVE(field)                                                                   \
    if (c->field <= 0) return status_set(STATUS_INVALID_ARG, "config.json: " #field " must be > 0, got %lld", (long long)c->field)

status_t model_config_validate(const model_config *c)
{
    CONFIG_POSITIVE(vocab_size);
    CONFIG_POSITIVE(hidden_size);
    CONFIG_POSITIVE(intermediate_size);
    CONFIG_POSITIVE(num_layers);
    CONFIG_POSITIVE(num_heads);
    CONFIG_POSITIVE(num_kv_heads);
    CONFIG_POSITIVE(head_dim);
    CONFIG_POSITIVE(max_position_embeddings);
    if (c->num_heads % c->num_kv_heads != 0)
        return status_set(STATUS_INVALID_ARG, "config.json: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)",
                          c->num_heads, c->num_kv_heads);
    if (c->head_dim > 1024)
        return status_set(STATUS_UNSUPPORTED, "config.json: head_dim %d is larger than the supported 1024", c->head_dim);
    if (c->head_dim % 2 != 0)
        return status_set(STATUS_INVALID_ARG, "config.json: head_dim must be even for rotary embeddings, got %d", c->head_dim);
    if (!(c->rms_norm_eps > 0.0f))
        return status_set(STATUS_INVALID_ARG, "config.json: rms_norm_eps must be > 0, got %g", (double)c->rms_norm_eps);
    if (!(c->rope.theta > 0.0))
        return status_set(STATUS_INVALID_ARG, "config.json: rope_theta must be > 0, got %g", c->rope.theta);
    if (c->rope.type != ROPE_DEFAULT && !(c->rope.factor > 0.0))
        return status_set(STATUS_INVALID_ARG, "config.json: rope scaling factor must be > 0, got %g", c->rope.factor);
    if (c->rope.type == ROPE_LLAMA3 && !(c->rope.high_freq_factor > c->rope.low_freq_factor))
        return status_set(STATUS_INVALID_ARG, "config.json: llama3 rope scaling needs high_freq_factor > low_freq_factor");
    if (c->sliding_window > 0 && c->sliding_window < c->max_position_embeddings)
        return status_set(STATUS_UNSUPPORTED,
                          "config.json: sliding_window=%d is smaller than max_position_embeddings=%d; sliding-window "
                          "attention is not supported yet", c->sliding_window, c->max_position_embeddings);
    return STATUS_OK;
}
