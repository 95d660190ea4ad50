/* cuda_weights.c — the CUDA backend's upload_weight: host tensors (the safetensors mmap) to
 * device memory through pinned staging, with the host's reads overlapping the copies.
 *
 * Matrices are stored bf16, 1-D weights fp32 (converted on the host when the checkpoint differs).
 * Several parts land in one allocation, concatenated along dim 0 (q|k|v) or row-interleaved
 * (gate|up).  The bytes
 * go through CUDA_WEIGHTS_STAGING_BUFFERS pinned buffers of CUDA_WEIGHTS_STAGING_BYTES: while
 * the device copies buffer i (cudaMemcpyAsync on the backend's stream, DMA at full PCIe rate),
 * the host fills the next one (reading the mmap — page faults from disk happen here — and
 * converting), split over CUDA_WEIGHTS_FILL_THREADS threads: one thread's memcpy out of the page
 * cache (~5 GB/s) and not the DMA (~55 GB/s pinned) bounds a load.  A buffer is refilled only
 * after the event of its last copy.  The staging buffers and the fill threads are made at the
 * first upload and freed by cuda_weights_free.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cuda/cuda_backend.h"
#include "core/log.h"
#include "core/threadpool.h"

/* Converts `count` elements from src (dtype `from`, starting at element `first`) into dst
 * (bf16 if to_bf16 else fp32). */
static void cuda_weights_convert(const void *src, dtype_t from, int64_t first, int64_t count, void *dst, int to_bf16)
{
    for (int64_t i = 0; i < count; i++) {
        const float f = dtype_load_f32(src, from, first + i);
        if (to_bf16) ((uint16_t *)dst)[i] = dtype_f32_to_bf16(f);
        else ((float *)dst)[i] = f;
    }
}

/* One staging fill: rows [first, first + count) of width elements each, taken from parts (row r
 * of the result is row r / num_parts of part r % num_parts when interleaved, else of the one
 * part), converted to the device dtype (element size es) into dst (its row 0 = row `first`). */
typedef struct cuda_weights_fill {
    const tensor_t *parts;
    int32_t num_parts;
    int to_bf16;
    size_t es;
    int64_t first, count, width;
    char *dst;
    int num_tasks;
} cuda_weights_fill;

static void cuda_weights_fill_task(void *ctx, int task, int thread)
{
    const cuda_weights_fill *f = ctx;
    (void)thread;
    const int64_t lo = f->count * task / f->num_tasks, hi = f->count * (task + 1) / f->num_tasks;
    for (int64_t r = lo; r < hi;) {
        const int64_t row = f->first + r;
        const tensor_t *src = &f->parts[row % f->num_parts];
        /* rows of one part are contiguous in it (and in dst) when not interleaved: one run */
        const int64_t run = f->num_parts == 1 ? hi - r : 1;
        const int64_t from = (row / f->num_parts) * f->width, n = run * f->width;
        char *to = f->dst + (size_t)(r * f->width) * f->es;
        if (src->dtype == (f->to_bf16 ? DTYPE_BF16 : DTYPE_F32)) memcpy(to, (const char *)src->data + (size_t)from * f->es, (size_t)n * f->es);
        else cuda_weights_convert(src->data, src->dtype, from, n, to, f->to_bf16);
        r += run;
    }
}

static void cuda_weights_fill_run(cuda_backend *c, cuda_weights_fill *f)
{
    const int64_t bytes = f->count * f->width * (int64_t)f->es;
    f->num_tasks = c->staging_pool && bytes >= ((int64_t)1 << 20) ? threadpool_num_threads(c->staging_pool) : 1;
    if (f->num_tasks > f->count) f->num_tasks = (int)f->count;
    if (f->num_tasks <= 1) {
        f->num_tasks = 1;
        cuda_weights_fill_task(f, 0, 0);
    } else {
        threadpool_run(c->staging_pool, cuda_weights_fill_task, f, f->num_tasks);
    }
}

static status_t cuda_weights_staging(cuda_backend *c)
{
    if (c->staging[0]) return STATUS_OK;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const int threads = cpus < 1 ? 1 : cpus > CUDA_WEIGHTS_FILL_THREADS ? CUDA_WEIGHTS_FILL_THREADS : (int)cpus;
    if (threads > 1 && !c->staging_pool) c->staging_pool = threadpool_create(threads);
    for (int i = 0; i < CUDA_WEIGHTS_STAGING_BUFFERS; i++) {
        cudaError_t e = cudaMallocHost(&c->staging[i], CUDA_WEIGHTS_STAGING_BYTES);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            c->staging[i] = NULL;
            cuda_weights_free(c);
            return status_set(STATUS_NO_MEMORY, "cudaMallocHost(%zu bytes of weight staging) failed: %s",
                              (size_t)CUDA_WEIGHTS_STAGING_BYTES, cudaGetErrorString(e));
        }
        if (cuda_backend_check(c, cudaEventCreateWithFlags(&c->staging_done[i], cudaEventDisableTiming), "cudaEventCreate")) {
            cuda_weights_free(c);
            return cuda_backend_status(&c->base);
        }
    }
    return STATUS_OK;
}

void cuda_weights_free(cuda_backend *c)
{
    for (int i = 0; i < CUDA_WEIGHTS_STAGING_BUFFERS; i++) {
        if (c->staging_done[i]) {
            cudaEventSynchronize(c->staging_done[i]);
            cudaEventDestroy(c->staging_done[i]);
        }
        if (c->staging[i]) cudaFreeHost(c->staging[i]);
        c->staging[i] = NULL;
        c->staging_done[i] = NULL;
    }
    if (c->staging_pool) threadpool_free(c->staging_pool);
    c->staging_pool = NULL;
}

/* The next free staging buffer (its previous copy done), or -1 on a recorded error. */
static int cuda_weights_next_buffer(cuda_backend *c)
{
    const int k = c->staging_next;
    c->staging_next = (k + 1) % CUDA_WEIGHTS_STAGING_BUFFERS;
    if (cuda_backend_check(c, cudaEventSynchronize(c->staging_done[k]), "cudaEventSynchronize(weight staging)")) return -1;
    return k;
}

/* Sends staging buffer k's first `bytes` to dst and marks the buffer busy until the copy is done. */
static int cuda_weights_send(cuda_backend *c, int k, char *dst, size_t bytes)
{
    return cuda_backend_check(c, cudaMemcpyAsync(dst, c->staging[k], bytes, cudaMemcpyHostToDevice, c->stream),
                              "cudaMemcpyAsync(weight)") ||
           cuda_backend_check(c, cudaEventRecord(c->staging_done[k], c->stream), "cudaEventRecord(weight staging)");
}

/* Copies all of src, converted to the device dtype (element size es), to dst. */
static int cuda_weights_copy(cuda_backend *c, const tensor_t *src, int to_bf16, size_t es, char *dst)
{
    const int64_t n = tensor_numel(src), per_buffer = (int64_t)(CUDA_WEIGHTS_STAGING_BYTES / es);
    for (int64_t i = 0; i < n; i += per_buffer) {
        const int64_t cnt = n - i < per_buffer ? n - i : per_buffer;
        const int k = cuda_weights_next_buffer(c);
        if (k < 0) return 1;
        cuda_weights_fill f = {.parts = src, .num_parts = 1, .to_bf16 = to_bf16, .es = es, .first = i, .count = cnt,
                               .width = 1, .dst = c->staging[k]};
        cuda_weights_fill_run(c, &f);
        if (cuda_weights_send(c, k, dst + (size_t)i * es, (size_t)cnt * es)) return 1;
    }
    return 0;
}

/* Copies the 2-D parts row-interleaved (part i's row r to row r * num_parts + i) to dst. */
static int cuda_weights_copy_interleaved(cuda_backend *c, const tensor_t *parts, int32_t num_parts, int to_bf16,
                                         size_t es, char *dst)
{
    const int64_t width = parts[0].shape[1], rows = parts[0].shape[0] * num_parts;
    int64_t per_buffer = (int64_t)(CUDA_WEIGHTS_STAGING_BYTES / ((size_t)width * es));
    LL_ASSERT(per_buffer >= 1);
    for (int64_t r0 = 0; r0 < rows; r0 += per_buffer) {
        const int64_t cnt = rows - r0 < per_buffer ? rows - r0 : per_buffer;
        const int k = cuda_weights_next_buffer(c);
        if (k < 0) return 1;
        cuda_weights_fill f = {.parts = parts, .num_parts = num_parts, .to_bf16 = to_bf16, .es = es, .first = r0,
                               .count = cnt, .width = width, .dst = c->staging[k]};
        cuda_weights_fill_run(c, &f);
        if (cuda_weights_send(c, k, dst + (size_t)(r0 * width) * es, (size_t)(cnt * width) * es)) return 1;
    }
    return 0;
}

status_t cuda_weights_upload(backend *b, const tensor_t *parts, int32_t num_parts, int interleave, tensor_t *out)
{
    cuda_backend *c = cuda_backend_of(b);
    STATUS_TRY(cuda_backend_status(b));
    LL_ASSERT(num_parts >= 1);
    const int to_bf16 = parts[0].ndim >= 2;
    int64_t total = 0, rows = 0;
    for (int32_t i = 0; i < num_parts; i++) {
        const tensor_t *p = &parts[i];
        if (p->dtype != DTYPE_F32 && p->dtype != DTYPE_F16 && p->dtype != DTYPE_BF16)
            return status_set(STATUS_UNSUPPORTED, "CUDA backend: cannot upload a %s weight (F32, F16, BF16 only)", dtype_name(p->dtype));
        LL_ASSERT(p->ndim == parts[0].ndim && (p->ndim < 2 || p->shape[1] == parts[0].shape[1]));
        LL_ASSERT(!interleave || (p->ndim == 2 && p->shape[0] == parts[0].shape[0]));
        total += tensor_numel(p);
        rows += p->shape[0];
    }
    const dtype_t dst_dtype = to_bf16 ? DTYPE_BF16 : DTYPE_F32;
    const size_t es = (size_t)dtype_size(dst_dtype);
    if (cuda_backend_check(c, cudaSetDevice(c->device), "cudaSetDevice")) return cuda_backend_status(b);
    STATUS_TRY(cuda_weights_staging(c));
    void *dev = NULL;
    STATUS_TRY(cuda_backend_malloc(c, (size_t)total * es, "a weight", &dev));
    int failed = 0;
    if (interleave && num_parts > 1) {
        failed = cuda_weights_copy_interleaved(c, parts, num_parts, to_bf16, es, dev);
    } else {
        char *at = dev;
        for (int32_t i = 0; i < num_parts && !failed; i++) {
            failed = cuda_weights_copy(c, &parts[i], to_bf16, es, at);
            at += (size_t)tensor_numel(&parts[i]) * es;
        }
    }
    if (failed) {
        cudaStreamSynchronize(c->stream);
        cudaFree(dev);
        return cuda_backend_status(b);
    }
    cuda_backend_own(c, dev);
    *out = parts[0];
    out->shape[0] = rows;
    out->data = dev;
    out->dtype = dst_dtype;
    return STATUS_OK;
}
