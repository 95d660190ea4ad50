/* model.h — a loaded model: config, weights on the backend, KV pools, activation arenas.
 *
 * model_load reads weights from a safetensors checkpoint (mmap; the CPU backend uses the map
 * directly, other backends copy) or builds seeded random weights from the config alone
 * (load_format "dummy").  model_alloc_runtime then sizes the KV pools (num_slots tokens per
 * layer, [num_slots, 2, num_kv_heads, head_dim] in the backend's activation dtype) and the
 * activation arenas for at most max_tokens tokens per step; nothing allocates after that.
 * The q, k and v projections are loaded as one matrix, and so are gate and up (rows interleaved,
 * so a GEMV can emit silu(gate_j) * up_j from one warp's two rows): one GEMM each.
 * The forward pass for the Llama family (Llama, Qwen2, Qwen3, Mistral) is model/llama.c.
 */
#ifndef LIGHTLLM_MODEL_MODEL_H
#define LIGHTLLM_MODEL_MODEL_H

#include <stdint.h>

#include "backend/backend.h"
#include "model/config.h"
#include "model/safetensors.h"

typedef struct model_layer {
    tensor_t input_norm, post_norm;         /* [hidden] */
    tensor_t qkv, o;                        /* [(heads + 2 kv)*hd, hidden] (q_proj; k_proj; v_proj), [hidden, heads*hd] */
    tensor_t qkv_bias;                      /* fp32 [(heads + 2 kv)*hd] or data NULL */
    tensor_t q_norm, k_norm;                /* [head_dim] or data NULL */
    tensor_t gate_up, down;                 /* [2 inter, hidden] rows interleaved (gate_j, up_j), [hidden, inter] */
} model_layer;

typedef struct model {
    model_config cfg;
    backend *be;                            /* not owned */
    safetensors *st;                        /* owned, NULL for dummy */
    int32_t num_owned;
    void **owned;                           /* [num_owned] backend allocations (dummy weights, biases) */
    tensor_t embed, final_norm, lm_head;    /* [vocab, hidden], [hidden], [vocab, hidden] */
    model_layer *layers;                    /* [num_layers] */
    /* runtime (model_alloc_runtime) */
    int32_t max_tokens, max_seq_len, num_slots, max_logits;
    float *rope_table;                      /* [max_seq_len, head_dim] */
    void **kv_pools;                        /* [num_layers] -> [num_slots, 2, kv_heads, head_dim] */
    /* [T, hidden] x2, [T, (heads + 2 kv)*hd], [T, heads*hd] x2, [T, 2 inter] (interleaved), [T, inter],
     * [max_logits, hidden] x2, fp32 [max_logits, vocab] (T = max_tokens) */
    void *act_hidden, *act_residual, *act_qkv, *act_q, *act_attn, *act_gate_up, *act_mlp;
    void *act_logits_in, *act_logits_delta, *act_logits;
} model;

status_t model_load(const model_config *cfg, const char *dir, int dummy, uint64_t seed, backend *be, model **out);
/* max_logits: rows of logits computed at once (the forward loops when a batch wants more); also
 * the most sequences a batch holds. */
status_t model_alloc_runtime(model *m, int32_t max_tokens, int32_t max_seq_len, int32_t num_slots, int32_t max_logits);
void model_free(model *m);
/* Bytes model_alloc_runtime takes besides the KV pools (activations, rotary table). */
int64_t model_runtime_bytes(const model *m, int32_t max_tokens, int32_t max_seq_len, int32_t max_logits);
/* KV bytes one token takes over all layers. */
int64_t model_kv_bytes_per_token(const model *m);
int64_t model_weight_bytes(const model *m);

/* llama.c: runs the batch, writes fp32 logits[num_logits, vocab] to host memory. */
void model_forward(model *m, const forward_batch *batch, float *logits);
/* The same for a batch of at most max_logits logit rows, leaving the logits where the backend
 * computed them: returns m->act_logits ([num_logits, vocab] fp32, on the device; rows past
 * num_logits may hold a graph batch's padding) for backend_ops.sample.  A decode batch the
 * backend can run as a CUDA graph replays it (captured the second time its key is seen). */
float *model_forward_logits(model *m, const forward_batch *batch);

#endif
