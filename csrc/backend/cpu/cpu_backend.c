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
#include <time.h>
#include <unistd.h>

#include "core/log.h"

static void cpu_backend_destroy(backend *b)
{
    cpu_backend *c = cpu_backend_of(b);
    host_sampler_free(&c->sampler);
    threadpool_free(c->tp);
    free(c->attn_scratch);
    free(c->next_tokens);
    for (int i = 0; i < BACKEND_STEP_SLOTS; i++) free(c->slot_results[i]);
    for (int32_t i = 0; i < c->num_owned; i++) free(c->owned[i]);
    free(c->owned);
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
    c->max_seqs = max_seqs;
    free(c->next_tokens);
    c->next_tokens = log_xcalloc((size_t)max_seqs, sizeof(int32_t));
    for (int i = 0; i < BACKEND_STEP_SLOTS; i++) {
        free(c->slot_results[i]);
        c->slot_results[i] = log_xcalloc((size_t)max_seqs, sizeof(sampling_result_t));
    }
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

static status_t cpu_backend_upload_weight(backend *b, const tensor_t *parts, int32_t num_parts, int interleave, tensor_t *out)
{
    LL_ASSERT(num_parts >= 1);
    if (num_parts == 1) {
        *out = parts[0];
        return STATUS_OK;
    }
    cpu_backend *c = cpu_backend_of(b);
    tensor_t t = parts[0];
    int64_t total = 0;
    for (int32_t i = 0; i < num_parts; i++) {
        LL_ASSERT(parts[i].ndim == t.ndim && (t.ndim < 2 || parts[i].shape[1] == t.shape[1]));
        if (parts[i].dtype != t.dtype) t.dtype = DTYPE_F32;
        total += tensor_numel(&parts[i]);
    }
    t.shape[0] = 0;
    const size_t es = (size_t)dtype_size(t.dtype);
    char *dst = malloc((size_t)total * es + 1);
    if (!dst) return status_set(STATUS_NO_MEMORY, "CPU backend: cannot allocate %zu bytes for a fused weight", (size_t)total * es);
    const int64_t width = t.ndim >= 2 ? t.shape[1] : 1;
    int64_t at = 0; /* destination row of the next row (not interleaved) */
    for (int32_t i = 0; i < num_parts; i++) {
        LL_ASSERT(!interleave || parts[i].shape[0] == parts[0].shape[0]);
        for (int64_t r = 0; r < parts[i].shape[0]; r++) {
            const int64_t d = (interleave ? r * num_parts + i : at + r) * width;
            if (parts[i].dtype == t.dtype)
                memcpy(dst + (size_t)d * es, (const char *)parts[i].data + (size_t)(r * width) * es, (size_t)width * es);
            else
                for (int64_t j = 0; j < width; j++) ((float *)dst)[d + j] = dtype_load_f32(parts[i].data, parts[i].dtype, r * width + j);
        }
        at += parts[i].shape[0];
        t.shape[0] += parts[i].shape[0];
    }
    c->owned = realloc(c->owned, (size_t)(c->num_owned + 1) * sizeof *c->owned);
    LL_ASSERT(c->owned);
    c->owned[c->num_owned++] = dst;
    t.data = dst;
    *out = t;
    return STATUS_OK;
}

static void cpu_backend_copy_to_device(backend *b, void *dst, const void *src, size_t bytes)
{
    if (dst != src) memcpy(dst, src, bytes);
}

static double cpu_backend_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Steps run synchronously here: sample finishes the step; sample_wait hands its results over. */
static void cpu_backend_step_begin(backend *b, int slot) { cpu_backend_of(b)->slot_begin[slot] = cpu_backend_now(); }

static void cpu_backend_step_forward_end(backend *b, int slot)
{
    cpu_backend *c = cpu_backend_of(b);
    c->slot_seconds[slot] = cpu_backend_now() - c->slot_begin[slot];
}

static void cpu_backend_sample(backend *b, int slot, float *logits, int32_t n, int32_t vocab,
                               const backend_sample_row *rows)
{
    cpu_backend *c = cpu_backend_of(b);
    LL_ASSERT(slot >= 0 && slot < BACKEND_STEP_SLOTS && n <= c->max_seqs);
    const double t0 = cpu_backend_now();
    sampling_result_t *out = c->slot_results[slot];
    if (n > 0) host_sampler_run(&c->sampler, logits, n, vocab, rows, out);
    for (int32_t i = 0; i < n; i++) {
        if (rows[i].table_index < 0) continue;
        LL_ASSERT(rows[i].table_index < c->max_seqs);
        c->next_tokens[rows[i].table_index] = out[i].token;
    }
    c->slot_seconds[slot] += cpu_backend_now() - t0;
}

static void cpu_backend_sample_wait(backend *b, int slot, int32_t n, sampling_result_t *out, double *device_seconds)
{
    cpu_backend *c = cpu_backend_of(b);
    memcpy(out, c->slot_results[slot], (size_t)n * sizeof *out);
    *device_seconds = c->slot_seconds[slot];
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
    .linear_silu = cpu_ops_linear_silu,
    .linear_add_rmsnorm = cpu_ops_linear_add_rmsnorm,
    .gather_rows = cpu_ops_gather_rows,
    .logits_to_host = cpu_backend_logits_to_host,
    .step_begin = cpu_backend_step_begin,
    .step_forward_end = cpu_backend_step_forward_end,
    .sample = cpu_backend_sample,
    .sample_wait = cpu_backend_sample_wait,
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
    host_sampler_init(&c->sampler, c->tp, 0); /* borrows the pool: cannot fail */
    *out = &c->base;
    return STATUS_OK;
}
