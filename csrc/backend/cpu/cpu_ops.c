/* cpu_ops.c — the CPU backend's row-wise ops: embedding, RMSNorm (+ residual add), linear
 * (through cpu_gemm), per-head q/k RMSNorm + rotary embedding + KV store (from the fused qkv
 * projection), SiLU·mul (of the row-interleaved gate/up projection), and those two fused with the
 * linear before them (linear_silu, linear_add_rmsnorm: plain compositions here), gather.
 *
 * Every output row depends only on its own input row (and the weights), computed in a fixed
 * order: batch composition never changes a bit of the result.  Reductions use double
 * accumulators where transformers' fp32 reductions would otherwise drift with dim.
 */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_gemm.h"
#include "core/log.h"

void cpu_ops_embedding(backend *b, const tensor_t *table, const int32_t *ids, int32_t n, void *out)
{
    const cpu_backend *c = cpu_backend_of(b);
    const int64_t dim = table->shape[1];
    float *y = out;
    for (int32_t i = 0; i < n; i++) {
        const int32_t id = ids[i] >= 0 ? ids[i] : c->next_tokens[-1 - ids[i]];
        const int64_t base = (int64_t)id * dim;
        for (int64_t j = 0; j < dim; j++) y[i * dim + j] = dtype_load_f32(table->data, table->dtype, base + j);
    }
}

static void cpu_ops_rmsnorm_row(const float *x, const tensor_t *w, float eps, int32_t dim, float *out)
{
    double ss = 0.0;
    for (int32_t j = 0; j < dim; j++) ss += (double)x[j] * x[j];
    const float inv = (float)(1.0 / sqrt(ss / dim + eps));
    for (int32_t j = 0; j < dim; j++) out[j] = (x[j] * inv) * dtype_load_f32(w->data, w->dtype, j);
}

void cpu_ops_rmsnorm(backend *b, const void *x, const tensor_t *w, float eps, int32_t n, int32_t dim, void *out)
{
    for (int32_t i = 0; i < n; i++)
        cpu_ops_rmsnorm_row((const float *)x + (int64_t)i * dim, w, eps, dim, (float *)out + (int64_t)i * dim);
}

void cpu_ops_add_rmsnorm(backend *b, void *residual, const void *x, const tensor_t *w, float eps,
                         int32_t n, int32_t dim, void *out)
{
    float *r = residual;
    const float *xx = x;
    for (int64_t i = 0; i < (int64_t)n * dim; i++) r[i] += xx[i];
    cpu_ops_rmsnorm(b, residual, w, eps, n, dim, out);
}

void cpu_ops_linear(backend *b, const void *x, const tensor_t *w, const tensor_t *bias, int32_t n, void *y)
{
    const float *bp = NULL;
    if (bias && bias->data) {
        LL_ASSERT(bias->dtype == DTYPE_F32); /* the loader keeps biases in fp32 */
        bp = bias->data;
    }
    cpu_gemm_linear(cpu_backend_of(b)->tp, x, w->shape[1], w, bp, y, w->shape[0], n);
}

void cpu_ops_linear_logits(backend *b, const void *x, const tensor_t *w, int32_t n, float *logits)
{
    cpu_ops_linear(b, x, w, NULL, n, logits);
}

/* One head vector: src[dim] → dst[dim], optional RMSNorm with weight w, then rotation by table row. */
static void cpu_ops_head_norm_rope(const float *src, const tensor_t *w, float eps, const float *rope_row, int32_t dim,
                                   float *dst)
{
    if (w && w->data) cpu_ops_rmsnorm_row(src, w, eps, dim, dst);
    else if (dst != src) memcpy(dst, src, (size_t)dim * sizeof(float));
    const int32_t half = dim / 2;
    for (int32_t i = 0; i < half; i++) {
        const float c = rope_row[i], s = rope_row[half + i];
        const float x1 = dst[i], x2 = dst[half + i];
        dst[i] = x1 * c - x2 * s;
        dst[half + i] = x2 * c + x1 * s;
    }
}

void cpu_ops_qk_norm_rope_store(backend *b, const void *qkv, const tensor_t *q_norm, const tensor_t *k_norm, float eps,
                                const float *rope_table, const attention_shape *shape, const forward_batch *batch,
                                void *q_out, void *kv_pool)
{
    const int32_t d = shape->head_dim, hq = shape->num_heads, hk = shape->num_kv_heads;
    const int64_t stride = (int64_t)(hq + 2 * hk) * d;
    float *qo = q_out, *pool = kv_pool;
    for (int32_t t = 0; t < batch->num_tokens; t++) {
        const float *row = (const float *)qkv + t * stride, *rope_row = rope_table + (int64_t)batch->positions[t] * d;
        float *dst = pool + (int64_t)batch->slots[t] * 2 * hk * d;
        for (int32_t h = 0; h < hq; h++)
            cpu_ops_head_norm_rope(row + (int64_t)h * d, q_norm, eps, rope_row, d, qo + ((int64_t)t * hq + h) * d);
        for (int32_t h = 0; h < hk; h++)
            cpu_ops_head_norm_rope(row + (int64_t)(hq + h) * d, k_norm, eps, rope_row, d, dst + (int64_t)h * d);
        memcpy(dst + (int64_t)hk * d, row + (int64_t)(hq + hk) * d, (size_t)hk * d * sizeof(float));
    }
}

void cpu_ops_silu_mul(backend *b, const void *gate_up, int32_t n, int32_t dim, void *out)
{
    float *y = out;
    for (int64_t t = 0; t < n; t++) {
        const float *gu = (const float *)gate_up + t * 2 * dim;
        for (int32_t j = 0; j < dim; j++) {
            const float g = gu[2 * j], u = gu[2 * j + 1];
            y[t * dim + j] = g / (1.0f + expf(-g)) * u;
        }
    }
}

void cpu_ops_linear_silu(backend *b, const void *x, const tensor_t *w, int32_t n, void *scratch, void *out)
{
    cpu_ops_linear(b, x, w, NULL, n, scratch);
    cpu_ops_silu_mul(b, scratch, n, (int32_t)(w->shape[0] / 2), out);
}

void cpu_ops_linear_add_rmsnorm(backend *b, const void *x, const tensor_t *w, int32_t n, void *residual,
                                const tensor_t *norm_w, float eps, void *out)
{
    cpu_ops_linear(b, x, w, NULL, n, out);
    cpu_ops_add_rmsnorm(b, residual, out, norm_w, eps, n, (int32_t)w->shape[0], out);
}
void cpu_ops_gather_rows(backend *b, const void *x, const int32_t *rows, int32_t m, int32_t dim, void *out)
{
    for (int32_t i = 0; i < m; i++)
        memcpy((float *)out + (int64_t)i * dim, (const float *)x + (int64_t)rows[i] * dim, (size_t)dim * sizeof(float));
}
