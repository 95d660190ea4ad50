/* cpu_backend.c — the CPU backend: op table, aligned host allocations, threadpool, scratch.
 *
 * Activations and KV are fp32; weights stay in their checkpoint dtype (mmap aliases) and are
 * converted inside the ops.  This backend is the reference every GPU kernel is tested against,
 * so each op computes every output with an order of operations that does not depend on the
 * batch it is in.
 */
#include "backend/cpu/cpu_backend.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

static void cpu_backend_destroy(backend *b)
{
    cpu_backend *c = cpu_backend_of(b);
    threadpool_free(c->tp);
    free(c->attn_scratch);
    cpu_sample_free(c);
    free(c);
}

static status_t cpu_backend_prepare(backend *b, int32_t max_tokens, int32_t max_seqs, int64_t max_total_kv,
                                    int32_t max_seq_len, int32_t num_heads, int32_t head_dim)
{
    cpu_backend *c = cpu_backend_of(b);
    free(c->attn_scratch);
    c->attn_scratch = malloc((size_t)c->num_threads * (size_t)max_seq_len * sizeof(float));
    if (!c->attn_scratch)
        return status_set(STATUS_NO_MEMORY, "CPU backend: cannot allocate attention scratch for %d tokens", max_seq_len);
    c->max_tokens = max_tokens;
    c->max_seq_len = max_seq_len;
    return STATUS_OK;
}

static status_t cpu_backend_last_error(backend *b) { return STATUS_OK; }

static void cpu_backend_upload_batch(backend *b, const forward_batch *host, forward_batch *dev) { *dev = *host; }

static status_t cpu_backend_alloc(backend *b, size_t bytes, void **out)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? (bytes + 63) & ~(size_t)63 : 64) != 0)
        return status_set(STATUS_NO_MEMORY, "CPU backend: cannot allocate %zu bytes", bytes);
    *out = p;
    return STATUS_OK;
}

static void cpu_backend_release(backend *b, void *p) { free(p); }

static status_t cpu_backend_memory_info(backend *b, size_t *free_bytes, size_t *total_bytes)
{
    const long page = sysconf(_SC_PAGESIZE), avail = sysconf(_SC_AVPHYS_PAGES), phys = sysconf(_SC_PHYS_PAGES);
    if (page <= 0 || avail < 0 || phys <= 0) return status_set(STATUS_IO, "sysconf cannot report physical memory");
    *free_bytes = (size_t)avail * (size_t)page;
    *total_bytes = (size_t)phys * (size_t)page;
    return STATUS_OK;
}

static status_t cpu_backend_upload_weight(backend *b, const tensor_t *host, tensor_t *out)
{
    *out = *host;
    return STATUS_OK;
}

static void cpu_backend_copy_to_device(backend *b, void *dst, const void *src, size_t bytes)
{
    if (dst != src) memcpy(dst, src, bytes);
}

static void cpu_backend_logits_to_host(backend *b, const void *logits, int64_t count, float *host)
{
    if ((const void *)host != logits) memcpy(host, logits, (size_t)count * sizeof(float));
}

static const backend_ops cpu_backend_ops = {
    .name = "cpu",
    .destroy = cpu_backend_destroy,
    .prepare = cpu_backend_prepare,
    .upload_batch = cpu_backend_upload_batch,
    .last_error = cpu_backend_last_error,
    .memory_info = cpu_backend_memory_info,
    .alloc = cpu_backend_alloc,
    .release = cpu_backend_release,
    .upload_weight = cpu_backend_upload_weight,
    .copy_to_device = cpu_backend_copy_to_device,
    .embedding = cpu_ops_embedding,
    .rmsnorm = cpu_ops_rmsnorm,
    .add_rmsnorm = cpu_ops_add_rmsnorm,
    .linear = cpu_ops_linear,
    .linear_logits = cpu_ops_linear_logits,
    .qk_norm_rope_store = cpu_ops_qk_norm_rope_store,
    .attention = cpu_attention,
    .silu_mul = cpu_ops_silu_mul,
    .gather_rows = cpu_ops_gather_rows,
    .logits_to_host = cpu_backend_logits_to_host,
    .sample = cpu_sample,
};

status_t backend_cpu_create(int num_threads, backend **out)
{
    cpu_backend *c = log_xcalloc(1, sizeof *c);
    c->base.ops = &cpu_backend_ops;
    c->base.act_dtype = DTYPE_F32;
    c->tp = threadpool_create(num_threads);
    if (!c->tp) {
        free(c);
        return status_set(STATUS_NO_MEMORY, "CPU backend: cannot start worker threads");
    }
    c->num_threads = threadpool_num_threads(c->tp);
    *out = &c->base;
    return STATUS_OK;
}
