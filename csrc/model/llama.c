/* llama.c — the forward pass of the Llama family (Llama, Qwen2, Qwen3, Mistral), written once
 * against the backend op table.
 *
 *   h = embed(ids)
 *   per layer:  x = rmsnorm(h);  q|k|v = x·Wqkv (+bias);  [q/k per-head rmsnorm];  rope;
 *               store k,v in slots;  a = attention(q, KV);  h += a·Wo;
 *               x = rmsnorm(h);  g|u = x·Wgu;  h += (silu(g) * u)·Wd
 *   logits = rmsnorm(h)[logit rows]·Wlm
 * The residual add is fused into the next norm, and both into the projection before it
 * (linear_add_rmsnorm: o → post-attention norm, down → next layer's input norm); act_residual
 * carries h.  silu(g) * u is fused into the gate|up projection (linear_silu).
 */
#include "model/model.h"

#include <math.h>

#include "core/log.h"

/* The layers over the batch (uploaded): h in act_residual + act_hidden (the last layer's
 * residual add is left to the logits). */
static void llama_layers(model *m, const forward_batch *batch)
{
    const model_config *c = &m->cfg;
    backend *be = m->be;
    const backend_ops *ops = be->ops;
    const int32_t T = batch->num_tokens, H = c->hidden_size;
    const attention_shape shape = {
        .num_heads = c->num_heads, .num_kv_heads = c->num_kv_heads, .head_dim = c->head_dim,
        .scale = 1.0f / sqrtf((float)c->head_dim),
    };
    LL_ASSERT(T > 0 && T <= m->max_tokens);

    ops->embedding(be, &m->embed, batch->token_ids, T, m->act_residual);
    ops->rmsnorm(be, m->act_residual, &m->layers[0].input_norm, c->rms_norm_eps, T, H, m->act_hidden);
    for (int32_t l = 0; l < c->num_layers; l++) {
        const model_layer *ly = &m->layers[l];
        /* act_hidden = input_norm(h) (the previous layer's down projection did the add + norm) */
        ops->linear(be, m->act_hidden, &ly->qkv, &ly->qkv_bias, T, m->act_qkv);
        ops->qk_norm_rope_store(be, m->act_qkv, &ly->q_norm, &ly->k_norm, c->rms_norm_eps, m->rope_table, &shape, batch,
                                m->act_q, m->kv_pools[l]);
        ops->attention(be, m->act_q, m->kv_pools[l], &shape, batch, m->act_attn);
        ops->linear_add_rmsnorm(be, m->act_attn, &ly->o, T, m->act_residual, &ly->post_norm, c->rms_norm_eps, m->act_hidden);
        ops->linear_silu(be, m->act_hidden, &ly->gate_up, T, m->act_gate_up, m->act_mlp);
        if (l + 1 < c->num_layers)
            ops->linear_add_rmsnorm(be, m->act_mlp, &ly->down, T, m->act_residual, &m->layers[l + 1].input_norm,
                                    c->rms_norm_eps, m->act_hidden);
        else ops->linear(be, m->act_mlp, &ly->down, NULL, T, m->act_hidden);
    }
}

/* Final residual add, norm and lm_head for logit rows [done, done + n) into act_logits. */
static void llama_logits(model *m, const forward_batch *batch, int32_t done, int32_t n)
{
    const model_config *c = &m->cfg;
    backend *be = m->be;
    const backend_ops *ops = be->ops;
    const int32_t H = c->hidden_size;
    ops->gather_rows(be, m->act_residual, batch->logit_tokens + done, n, H, m->act_logits_in);
    ops->gather_rows(be, m->act_hidden, batch->logit_tokens + done, n, H, m->act_logits_delta);
    ops->add_rmsnorm(be, m->act_logits_in, m->act_logits_delta, &m->final_norm, c->rms_norm_eps, n, H, m->act_logits_in);
    ops->linear_logits(be, m->act_logits_in, &m->lm_head, n, m->act_logits);
}

void model_forward(model *m, const forward_batch *host_batch, float *logits)
{
    forward_batch hb = *host_batch, batch;
    hb.graph_key = 0; /* rows are copied out one by one: no padded graph batch */
    m->be->ops->upload_batch(m->be, &hb, &batch);
    llama_layers(m, &batch);
    const int64_t vocab = m->cfg.vocab_size;
    for (int32_t done = 0; done < batch.num_logits; done += m->max_logits) { /* max_logits rows at a time */
        int32_t n = batch.num_logits - done;
        if (n > m->max_logits) n = m->max_logits;
        llama_logits(m, &batch, done, n);
        m->be->ops->logits_to_host(m->be, m->act_logits, (int64_t)n * vocab, logits + (int64_t)done * vocab);
    }
}

float *model_forward_logits(model *m, const forward_batch *host_batch)
{
    backend *be = m->be;
    const backend_ops *ops = be->ops;
    LL_ASSERT(host_batch->num_logits <= m->max_logits);
    forward_batch hb = *host_batch, batch;
    hb.graph_key = ops->graph_key ? ops->graph_key(be, &hb) : 0;
    ops->upload_batch(be, &hb, &batch);
    if (hb.graph_key && ops->graph_run(be, hb.graph_key - 1)) return m->act_logits;
    const int capture = hb.graph_key && ops->graph_begin(be, hb.graph_key - 1);
    llama_layers(m, &batch);
    if (batch.num_logits > 0) llama_logits(m, &batch, 0, batch.num_logits);
    if (capture) ops->graph_end(be, hb.graph_key - 1);
    return m->act_logits;
}
