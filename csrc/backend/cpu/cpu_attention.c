/* cpu_attention.c — causal attention over token-slot KV (page size 1), fp32, exact softmax.
 *
 * One task per (token, kv head): the task computes every query head of the group, reading the
 * sequence's K/V through kv_slots.  Scores for positions [0, p] go to per-thread scratch,
 * then max, exp-sum and the weighted V sum run in position order: the result for a token is
 * the same whether its sequence is prefilled in one chunk, in many, or decoded, and whatever
 * else is in the batch.
 */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "core/log.h"

typedef struct cpu_attention_ctx {
    cpu_backend *c;
    const float *q;
    const float *pool;
    const attention_shape *shape;
    const forward_batch *batch;
    float *out;
} cpu_attention_ctx;

static void cpu_attention_task(void *arg, int task, int thread)
{
    const cpu_attention_ctx *a = arg;
    const attention_shape *sh = a->shape;
    const forward_batch *bt = a->batch;
    const int32_t d = sh->head_dim, hk = sh->num_kv_heads, group = sh->num_heads / hk;
    const int32_t t = task / hk, g = task % hk;
    const int32_t pos = bt->positions[t];
    const int32_t *slots = bt->kv_slots + bt->kv_start[bt->token_seq[t]];
    float *scores = a->c->attn_scratch + (int64_t)thread * a->c->max_seq_len;
    const int64_t kv_stride = 2 * (int64_t)hk * d;

    for (int32_t hh = 0; hh < group; hh++) {
        const int32_t h = g * group + hh;
        const float *qv = a->q + ((int64_t)t * sh->num_heads + h) * d;
        float mx = -INFINITY;
        for (int32_t j = 0; j <= pos; j++) {
            const float *kv = a->pool + (int64_t)slots[j] * kv_stride + (int64_t)g * d;
            float dot = 0.0f;
            for (int32_t e = 0; e < d; e++) dot += qv[e] * kv[e];
            scores[j] = dot * sh->scale;
            if (scores[j] > mx) mx = scores[j];
        }
        double sum = 0.0;
        for (int32_t j = 0; j <= pos; j++) {
            scores[j] = expf(scores[j] - mx);
            sum += scores[j];
        }
        const float inv = (float)(1.0 / sum);
        float *o = a->out + ((int64_t)t * sh->num_heads + h) * d;
        memset(o, 0, (size_t)d * sizeof(float));
        for (int32_t j = 0; j <= pos; j++) {
            const float *vv = a->pool + (int64_t)slots[j] * kv_stride + (int64_t)(hk + g) * d;
            const float p = scores[j] * inv;
            for (int32_t e = 0; e < d; e++) o[e] += p * vv[e];
        }
    }
}

void cpu_attention(backend *b, const void *q, const void *kv_pool, const attention_shape *shape,
                   const forward_batch *batch, void *out)
{
    cpu_backend *c = cpu_backend_of(b);
    LL_ASSERT(batch->num_tokens <= c->max_tokens && batch->max_kv_len <= c->max_seq_len);
    cpu_attention_ctx a = {c, q, kv_pool, shape, batch, out};
    threadpool_run(c->tp, cpu_attention_task, &a, batch->num_tokens * shape->num_kv_heads);
}
