/* cuda_backend.c — the CUDA backend: op table, device memory, weight upload, batch upload,
 * sticky error state; the ops call the launchers of csrc/kernels and cuda_gemm.c.
 *
 * Activations and KV are bf16; 2-D weights are uploaded as bf16 (F16/F32 converted on the
 * host first), 1-D weights (norms, biases) as fp32, as kernels.h expects.  Everything runs on
 * one stream created at create; copy_to_device and logits_to_host synchronise it, sample_wait
 * waits for its step's event, nothing else waits.  upload_batch packs all index arrays of a step into one pinned staging buffer
 * and sends them with a single async copy.  The first failing CUDA or cuBLAS call is recorded
 * (code + text) and makes every later op a no-op; ops->last_error reports it.
 */
#include "backend/cuda/cuda_backend.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
/* kernels.h's opening comment holds a slash-star sequence, which gcc -Wcomment rejects */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcomment"
#include "kernels/kernels.h"
#pragma GCC diagnostic pop

/* ---- errors ---- */

void cuda_backend_fail(cuda_backend *c, status_t code, const char *fmt, ...)
{
    if (c->error != STATUS_OK) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error_message, sizeof c->error_message, fmt, ap);
    va_end(ap);
    c->error = code;
    status_set(code, "%s", c->error_message);
}

int cuda_backend_check(cuda_backend *c, cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return 0;
    cuda_backend_fail(c, STATUS_DEVICE, "%s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    return 1;
}

status_t cuda_backend_status(backend *b)
{
    cuda_backend *c = cuda_backend_of(b);
    if (c->error == STATUS_OK) return STATUS_OK;
    return status_set(c->error, "CUDA backend (device %d): %s", c->device, c->error_message);
}

/* A failed backend launches nothing more. */
static int cuda_backend_failed(cuda_backend *c) { return c->error != STATUS_OK; }

/* ---- lifetime ---- */

static void cuda_backend_free_step_buffers(cuda_backend *c)
{
    if (c->index_dev) cudaFree(c->index_dev);
    if (c->index_host) cudaFreeHost(c->index_host);
    if (c->attn_workspace) cudaFree(c->attn_workspace);
    c->index_dev = NULL;
    c->index_host = NULL;
    c->attn_workspace = NULL;
    c->index_capacity = 0;
    c->attn_workspace_bytes = 0;
}

static void cuda_backend_destroy(backend *b)
{
    cuda_backend *c = cuda_backend_of(b);
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    cuda_backend_free_step_buffers(c);
    cuda_sample_free(c);
    cuda_graph_free(c);
    cuda_weights_free(c);
    for (int64_t i = 0; i < c->num_owned; i++) cudaFree(c->owned[i]);
    free(c->owned);
    cuda_gemm_free(c);
    if (c->gemm_workspace) cudaFree(c->gemm_workspace);
    if (c->index_copied) cudaEventDestroy(c->index_copied);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

static status_t cuda_backend_last_error(backend *b) { return cuda_backend_status(b); }

static status_t cuda_backend_memory_info(backend *b, size_t *free_bytes, size_t *total_bytes)
{
    cuda_backend *c = cuda_backend_of(b);
    cudaError_t e = cudaSetDevice(c->device);
    if (e == cudaSuccess) e = cudaMemGetInfo(free_bytes, total_bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return status_set(STATUS_DEVICE, "cudaMemGetInfo failed on device %d: %s", c->device, cudaGetErrorString(e));
    }
    return STATUS_OK;
}

/* cudaMalloc with the out-of-memory message the user needs (requested vs free bytes). */
status_t cuda_backend_malloc(cuda_backend *c, size_t bytes, const char *what, void **out)
{
    *out = NULL;
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 1);
    if (e == cudaSuccess) return STATUS_OK;
    *out = NULL;
    (void)cudaGetLastError(); /* an allocation failure is not sticky: clear it */
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    (void)cudaGetLastError();
    if (e == cudaErrorMemoryAllocation)
        return status_set(STATUS_NO_MEMORY, "CUDA device %d: cannot allocate %zu bytes for %s (%zu of %zu bytes free)",
                          c->device, bytes, what, free_bytes, total_bytes);
    return status_set(STATUS_DEVICE, "cudaMalloc(%zu bytes for %s) failed on device %d: %s", bytes, what, c->device,
                      cudaGetErrorString(e));
}

static status_t cuda_backend_prepare(backend *b, int32_t max_tokens, int32_t max_seqs, int64_t max_total_kv,
                                     int32_t max_seq_len, int32_t num_heads, int32_t head_dim)
{
    cuda_backend *c = cuda_backend_of(b);
    STATUS_TRY(cuda_backend_status(b));
    if (cuda_backend_check(c, cudaSetDevice(c->device), "cudaSetDevice") ||
        cuda_backend_check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize"))
        return cuda_backend_status(b);
    cuda_backend_free_step_buffers(c);
    /* token_ids, positions, slots, token_seq, logit_tokens: max_tokens each; q_start, kv_start:
     * max_seqs + 1 each; kv_slots: max_total_kv; + 4 entries of 16-byte alignment padding per array */
    const int64_t cap = 5 * (int64_t)max_tokens + 2 * ((int64_t)max_seqs + 1) + max_total_kv + 8 * 4;
    STATUS_TRY(cuda_backend_malloc(c, (size_t)cap * sizeof(int32_t), "the batch index arrays", (void **)&c->index_dev));
    cudaError_t e = cudaMallocHost((void **)&c->index_host, (size_t)cap * sizeof(int32_t));
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        c->index_host = NULL;
        return status_set(STATUS_NO_MEMORY, "cudaMallocHost(%zu bytes for the batch staging buffer) failed: %s",
                          (size_t)cap * sizeof(int32_t), cudaGetErrorString(e));
    }
    c->index_capacity = cap;
    c->index_copy_pending = 0;
    c->attn_workspace_bytes = kernels_attention_workspace_bytes(max_tokens, num_heads, head_dim, max_seq_len);
    if (c->attn_workspace_bytes)
        STATUS_TRY(cuda_backend_malloc(c, c->attn_workspace_bytes, "the attention workspace", &c->attn_workspace));
    c->max_tokens = max_tokens;
    c->max_seqs = max_seqs;
    c->max_total_kv = max_total_kv;
    c->max_seq_len = max_seq_len;
    c->num_heads = num_heads;
    c->head_dim = head_dim;
    cuda_graph_prepare(c, max_seqs, max_seq_len);
    return cuda_sample_prepare(c, max_seqs);
}

/* ---- memory ---- */

static status_t cuda_backend_alloc(backend *b, size_t bytes, void **out)
{
    cuda_backend *c = cuda_backend_of(b);
    STATUS_TRY(cuda_backend_status(b));
    if (cuda_backend_check(c, cudaSetDevice(c->device), "cudaSetDevice")) return cuda_backend_status(b);
    return cuda_backend_malloc(c, bytes, "a model buffer", out);
}

static void cuda_backend_release(backend *b, void *p)
{
    cuda_backend *c = cuda_backend_of(b);
    if (!p) return;
    cudaSetDevice(c->device);
    cuda_backend_check(c, cudaFree(p), "cudaFree");
}

static void cuda_backend_copy_to_device(backend *b, void *dst, const void *src, size_t bytes)
{
    cuda_backend *c = cuda_backend_of(b);
    if (cuda_backend_failed(c) || bytes == 0) return;
    if (cuda_backend_check(c, cudaSetDevice(c->device), "cudaSetDevice")) return;
    if (cuda_backend_check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, c->stream), "cudaMemcpyAsync(copy_to_device)"))
        return;
    cuda_backend_check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize(copy_to_device)");
}

void cuda_backend_own(cuda_backend *c, void *p)
{
    if (c->num_owned == c->cap_owned) {
        c->cap_owned = c->cap_owned ? 2 * c->cap_owned : 64;
        c->owned = realloc(c->owned, (size_t)c->cap_owned * sizeof *c->owned);
        LL_ASSERT(c->owned);
    }
    c->owned[c->num_owned++] = p;
}

/* ---- per step ---- */

/* Stages src[count] and then pad entries (fill + step * j for j = 1..pad) in the staging buffer. */
static const int32_t *cuda_backend_stage_padded(cuda_backend *c, int64_t *used, const int32_t *src, int64_t count,
                                                int64_t pad, int32_t fill, int32_t step)
{
    if (!src) return NULL;
    int32_t *dst = c->index_host + *used;
    if (count > 0) memcpy(dst, src, (size_t)count * sizeof(int32_t));
    for (int64_t j = 0; j < pad; j++) dst[count + j] = fill + step * (int32_t)(j + 1);
    const int32_t *dev = c->index_dev + *used;
    *used += (count + pad + 3) & ~(int64_t)3; /* keep every array 16-byte aligned */
    return dev;
}

static void cuda_backend_upload_batch(backend *b, const forward_batch *host, forward_batch *dev)
{
    cuda_backend *c = cuda_backend_of(b);
    *dev = *host;
    if (cuda_backend_failed(c)) return;
    if (cuda_backend_check(c, cudaSetDevice(c->device), "cudaSetDevice")) return;
    LL_ASSERT(c->index_host); /* prepare ran */
    const int64_t num_kv = host->num_seqs > 0 && host->kv_start ? host->kv_start[host->num_seqs] : 0;
    LL_ASSERT(host->num_tokens <= c->max_tokens && host->num_seqs <= c->max_seqs && num_kv <= c->max_total_kv &&
              host->num_logits <= c->max_tokens);
    /* the previous step's copy must have read the staging buffer before it is overwritten */
    if (c->index_copy_pending && cuda_backend_check(c, cudaEventSynchronize(c->index_copied), "cudaEventSynchronize"))
        return;
    c->index_copy_pending = 0;
    int64_t used = 0;
    const int64_t nt = host->num_tokens, ns = host->num_seqs;
    /* a graph batch is padded to its key's size (rows write and read only the pad slot) */
    int32_t rows = (int32_t)nt, kv_bucket = host->max_kv_len;
    if (host->graph_key) cuda_graph_key_sizes(c, host->graph_key - 1, &rows, &kv_bucket);
    const int64_t pad = rows - nt, slot = b->kv_pad_slot;
    LL_ASSERT(pad == 0 || (nt == ns && host->num_logits == nt));
    /* sizes fixed per graph key come first, the kv_slots array (its length varies) last, so a
     * key's arrays sit at the same addresses every step */
    dev->token_ids = cuda_backend_stage_padded(c, &used, host->token_ids, nt, pad, 0, 0);
    dev->positions = cuda_backend_stage_padded(c, &used, host->positions, nt, pad, 0, 0);
    dev->slots = cuda_backend_stage_padded(c, &used, host->slots, nt, pad, (int32_t)slot, 0);
    dev->token_seq = cuda_backend_stage_padded(c, &used, host->token_seq, nt, pad, (int32_t)ns - 1, 1);
    dev->q_start = cuda_backend_stage_padded(c, &used, host->q_start, ns + 1, pad, (int32_t)nt, 1);
    dev->kv_start = cuda_backend_stage_padded(c, &used, host->kv_start, ns + 1, pad, (int32_t)num_kv, 1);
    dev->logit_tokens = cuda_backend_stage_padded(c, &used, host->logit_tokens, host->num_logits, pad,
                                                  (int32_t)host->num_logits - 1, 1);
    dev->kv_slots = cuda_backend_stage_padded(c, &used, host->kv_slots, num_kv, pad, (int32_t)slot, 0);
    if (pad > 0 || host->graph_key) {
        dev->num_tokens = dev->num_seqs = dev->num_logits = rows;
        dev->max_kv_len = kv_bucket;
    }
    LL_ASSERT(used <= c->index_capacity);
    if (used == 0) return;
    if (cuda_backend_check(c, cudaMemcpyAsync(c->index_dev, c->index_host, (size_t)used * sizeof(int32_t),
                                              cudaMemcpyHostToDevice, c->stream),
                           "cudaMemcpyAsync(batch)") ||
        cuda_backend_check(c, cudaEventRecord(c->index_copied, c->stream), "cudaEventRecord"))
        return;
    c->index_copy_pending = 1;
}

static const float *cuda_backend_weight_f32(cuda_backend *c, const tensor_t *w, const char *what)
{
    if (!w || !w->data) return NULL;
    if (w->dtype != DTYPE_F32) {
        cuda_backend_fail(c, STATUS_UNSUPPORTED, "CUDA backend: the %s weight is %s; 1-D weights must be fp32 (made by upload_weight)",
                          what, dtype_name(w->dtype));
        return NULL;
    }
    return w->data;
}

static void cuda_ops_embedding(backend *b, const tensor_t *table, const int32_t *ids, int32_t n, void *out)
{
    cuda_backend *c = cuda_backend_of(b);
    if (cuda_backend_failed(c)) return;
    LL_ASSERT(table->dtype == DTYPE_BF16 && table->ndim == 2);
    cuda_backend_check(c, kernels_embedding(table->data, ids, c->next_tokens_dev, n, (int32_t)table->shape[1], out, c->stream),
                       "kernels_embedding");
}

static void cuda_ops_rmsnorm(backend *b, const void *x, const tensor_t *w, float eps, int32_t n, int32_t dim, void *out)
{
    cuda_backend *c = cuda_backend_of(b);
    if (cuda_backend_failed(c)) return;
    const float *wf = cuda_backend_weight_f32(c, w, "rmsnorm");
    if (cuda_backend_failed(c)) return;
    cuda_backend_check(c, kernels_rmsnorm(x, wf, eps, n, dim, out, c->stream), "kernels_rmsnorm");
}

static void cuda_ops_add_rmsnorm(backend *b, void *residual, const void *x, const tensor_t *w, float eps, int32_t n,
                                 int32_t dim, void *out)
{
    cuda_backend *c = cuda_backend_of(b);
    if (cuda_backend_failed(c)) return;
    const float *wf = cuda_backend_weight_f32(c, w, "rmsnorm");
    if (cuda_backend_failed(c)) return;
    cuda_backend_check(c, kernels_add_rmsnorm(residual, x, wf, eps, n, dim, out, c->stream), "kernels_add_rmsnorm");
}

static void cuda_ops_linear(backend *b, const void *x, const tensor_t *w, const tensor_t *bias, int32_t n, void *y)
{
    cuda_backend *c = cuda_backend_of(b);
    if (cuda_backend_failed(c)) return;
    LL_ASSERT(w->dtype == DTYPE_BF16 && w->ndim == 2);
    const float *bf = cuda_backend_weight_f32(c, bias, "bias");
    if (cuda_backend_failed(c)) return;
    cuda_gemm_linear(c, x, w->data, n, w->shape[1], w->shape[0], bf, y, 0);
}

static void cuda_ops_linear_logits(backend *b, const void *x, const tensor_t *w, int32_t n, float *logits)
{
    cuda_backend *c = cuda_backend_of(b);
    if (cuda_backend_failed(c)) return;
    LL_ASSERT(w->dtype == DTYPE_BF16 && w->ndim == 2);
    cuda_gemm_linear(c, x, w->data, n, w->shape[1], w->shape[0], NULL, logits, 1);
}

static void cuda_ops_qk_norm_rope_store(backend *b, const void *qkv, const tensor_t *q_norm, const tensor_t *k_norm,
                                        float eps, const float *rope_table, const attention_shape *shape,
                                        const forward_batch *batch, void *q_out, void *kv_pool)
{
    cuda_backend *c = cuda_backend_of(b);
    if (cuda_backend_failed(c)) return;
    const float *qn = cuda_backend_weight_f32(c, q_norm, "q_norm");
    const float *kn = cuda_backend_weight_f32(c, k_norm, "k_norm");
    if (cuda_backend_failed(c)) return;
    cuda_backend_check(c, kernels_qk_norm_rope_store(qkv, qn, kn, eps, rope_table, shape->num_heads, shape->num_kv_heads,
                                                     shape->head_dim, batch->num_tokens, batch->positions, batch->slots,
                                                     q_out, kv_pool, c->stream),
                       "kernels_qk_norm_rope_store");
}

static void cuda_ops_attention(backend *b, const void *q, const void *kv_pool, const attention_shape *shape,
                               const forward_batch *batch, void *out)
{
    cuda_backend *c = cuda_backend_of(b);
    if (cuda_backend_failed(c)) return;
    if (shape->num_heads > c->num_heads || shape->head_dim != c->head_dim) {
        cuda_backend_fail(c, STATUS_INVALID_ARG, "CUDA attention: %d heads of %d, but prepare sized the workspace for %d heads of %d",
                          shape->num_heads, shape->head_dim, c->num_heads, c->head_dim);
        return;
    }
    cuda_backend_check(c, kernels_attention(q, kv_pool, shape->num_heads, shape->num_kv_heads, shape->head_dim, shape->scale,
                                            batch->num_tokens, batch->num_seqs, batch->positions, batch->token_seq,
                                            batch->q_start, batch->kv_start, batch->kv_slots, batch->max_q_len,
                                            batch->max_kv_len, out, c->attn_workspace, c->attn_workspace_bytes, c->stream),
                       "kernels_attention");
}

static void cuda_ops_silu_mul(backend *b, const void *gate_up, int32_t n, int32_t dim, void *out)
{
    cuda_backend *c = cuda_backend_of(b);
    if (cuda_backend_failed(c)) return;
    cuda_backend_check(c, kernels_silu_mul(gate_up, n, dim, out, c->stream), "kernels_silu_mul");
}

static void cuda_ops_linear_silu(backend *b, const void *x, const tensor_t *w, int32_t n, void *scratch, void *out)
{
    cuda_backend *c = cuda_backend_of(b);
    if (cuda_backend_failed(c)) return;
    LL_ASSERT(w->dtype == DTYPE_BF16 && w->ndim == 2 && w->shape[0] % 2 == 0);
    const int64_t m = w->shape[0], k = w->shape[1];
    if (cuda_gemm_use_fused(c, 1, x, w->data, n, k, m)) {
        cuda_backend_check(c, kernels_gemv_silu(x, w->data, n, m, k, out, c->stream), "kernels_gemv_silu");
        return;
    }
    cuda_gemm_linear(c, x, w->data, n, k, m, NULL, scratch, 0);
    if (!cuda_backend_failed(c))
        cuda_backend_check(c, kernels_silu_mul(scratch, n, (int32_t)(m / 2), out, c->stream), "kernels_silu_mul");
}

static void cuda_ops_linear_add_rmsnorm(backend *b, const void *x, const tensor_t *w, int32_t n, void *residual,
                                        const tensor_t *norm_w, float eps, void *out)
{
    cuda_backend *c = cuda_backend_of(b);
    if (cuda_backend_failed(c)) return;
    LL_ASSERT(w->dtype == DTYPE_BF16 && w->ndim == 2);
    const float *nw = cuda_backend_weight_f32(c, norm_w, "rmsnorm");
    if (cuda_backend_failed(c)) return;
    const int64_t m = w->shape[0], k = w->shape[1];
    if (cuda_gemm_use_fused(c, 2, x, w->data, n, k, m)) {
        cuda_backend_check(c, kernels_gemv_add_rmsnorm(x, w->data, n, m, k, residual, nw, eps, out, c->gemv_counter, c->stream),
                           "kernels_gemv_add_rmsnorm");
        return;
    }
    cuda_gemm_linear(c, x, w->data, n, k, m, NULL, out, 0);
    if (!cuda_backend_failed(c))
        cuda_backend_check(c, kernels_add_rmsnorm(residual, out, nw, eps, n, (int32_t)m, out, c->stream), "kernels_add_rmsnorm");
}

static void cuda_ops_gather_rows(backend *b, const void *x, const int32_t *rows, int32_t m, int32_t dim, void *out)
{
    cuda_backend *c = cuda_backend_of(b);
    if (cuda_backend_failed(c)) return;
    cuda_backend_check(c, kernels_gather_rows(x, rows, m, dim, out, c->stream), "kernels_gather_rows");
}

static void cuda_backend_logits_to_host(backend *b, const void *logits, int64_t count, float *host)
{
    cuda_backend *c = cuda_backend_of(b);
    if (count <= 0) return;
    if (!cuda_backend_failed(c) &&
        !cuda_backend_check(c, cudaMemcpyAsync(host, logits, (size_t)count * sizeof(float), cudaMemcpyDeviceToHost, c->stream),
                            "cudaMemcpyAsync(logits)") &&
        !cuda_backend_check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize(logits)"))
        return;
    for (int64_t i = 0; i < count; i++) host[i] = NAN; /* never hand back stale logits */
}

static const backend_ops cuda_backend_ops = {
    .name = "cuda",
    .weights_in_device_memory = 1,
    .destroy = cuda_backend_destroy,
    .prepare = cuda_backend_prepare,
    .last_error = cuda_backend_last_error,
    .upload_batch = cuda_backend_upload_batch,
    .graph_key = cuda_graph_key,
    .graph_run = cuda_graph_run,
    .graph_begin = cuda_graph_begin,
    .graph_end = cuda_graph_end,
    .memory_info = cuda_backend_memory_info,
    .alloc = cuda_backend_alloc,
    .release = cuda_backend_release,
    .upload_weight = cuda_weights_upload,
    .copy_to_device = cuda_backend_copy_to_device,
    .embedding = cuda_ops_embedding,
    .rmsnorm = cuda_ops_rmsnorm,
    .add_rmsnorm = cuda_ops_add_rmsnorm,
    .linear = cuda_ops_linear,
    .linear_logits = cuda_ops_linear_logits,
    .qk_norm_rope_store = cuda_ops_qk_norm_rope_store,
    .attention = cuda_ops_attention,
    .silu_mul = cuda_ops_silu_mul,
    .linear_silu = cuda_ops_linear_silu,
    .linear_add_rmsnorm = cuda_ops_linear_add_rmsnorm,
    .gather_rows = cuda_ops_gather_rows,
    .logits_to_host = cuda_backend_logits_to_host,
    .step_begin = cuda_step_begin,
    .step_forward_end = cuda_step_forward_end,
    .sample = cuda_sample,
    .sample_wait = cuda_sample_wait,
};

int backend_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

status_t backend_cuda_create(int device, backend **out)
{
    *out = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return status_set(STATUS_DEVICE, "no usable CUDA device: cudaGetDeviceCount failed: %s", cudaGetErrorString(e));
    }
    if (device < 0 || device >= count)
        return status_set(STATUS_INVALID_ARG, "CUDA device %d does not exist (%d device%s found)", device, count, count == 1 ? "" : "s");
    cuda_backend *c = log_xcalloc(1, sizeof *c);
    c->base.ops = &cuda_backend_ops;
    c->base.act_dtype = DTYPE_BF16;
    c->device = device;
    status_t s = STATUS_OK;
    if (cuda_backend_check(c, cudaSetDevice(device), "cudaSetDevice") ||
        cuda_backend_check(c, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "cudaStreamCreate") ||
        cuda_backend_check(c, cudaEventCreateWithFlags(&c->index_copied, cudaEventDisableTiming), "cudaEventCreate"))
        s = cuda_backend_status(&c->base);
    if (s == STATUS_OK) s = cuda_backend_malloc(c, CUDA_GEMM_WORKSPACE_BYTES, "the cuBLASLt workspace", &c->gemm_workspace);
    if (s == STATUS_OK) s = cuda_gemm_init(c);
    if (s == STATUS_OK) s = cuda_sample_init(c);
    if (s != STATUS_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", status_message());
        cuda_backend_destroy(&c->base);
        return status_set(s, "%s", msg);
    }
    *out = &c->base;
    return STATUS_OK;
}
