/* cuda_sample.c — steps and sampling for the CUDA backend: kernels_sampling (csrc/kernels/
 * sampling.cu) picks every row's token on the device and writes it to the next-token table, so
 * the next step can be launched before this one's tokens reach the host, and only the tokens
 * and logprobs cross to the host, never the logits.
 *
 * Per step slot: the rows' parameters, penalty sets (CSR: a row's distinct prompt ∪ output ids,
 * ascending, each with its output count; only rows with a penalty), banned ids (CSR), allowed
 * masks ([m, ceil(vocab/32)] when any row has one) and table indices are packed into one pinned
 * buffer and sent with one copy; the outputs (token, logprob, rank, top ids, top logprobs) come
 * back with one async copy; events around the forward and around the sampling time the step's
 * device work and let sample_wait wait for it alone.  Buffers grow to the largest step and stay.  A vocabulary
 * larger than the kernel takes (shared memory), or LIGHTLLM_HOST_SAMPLING=1 (tests compare the
 * two), samples on the host instead: logits to pinned memory, the host sampler, the table's
 * entries sent back through a pinned mirror.  After a device failure no row is sampled from
 * stale memory: every token is 0 and the sticky error is reported by last_error.
 * Small batches split each row's passes over several blocks (the kernel's workspace, sized at
 * prepare for max_seqs rows); LIGHTLLM_SAMPLE_BLOCKS=N fixes the blocks per row (1: one block
 * per row, the workspace is not allocated; 0 or unset: automatic).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cuda/cuda_backend.h"
#include "core/log.h"
#include "kernels/kernels.h"

#define CUDA_SAMPLE_MAX_THREADS 8
#define CUDA_SAMPLE_ALIGN(x) (((x) + 15) & ~(size_t)15)
#define CUDA_SAMPLE_K KERNELS_SAMPLING_MAX_LOGPROBS

/* Byte offsets of the outputs of a step of n rows in its out buffers. */
typedef struct cuda_sample_out_layout {
    size_t tok, lp, rank, top_ids, top_lp, bytes;
} cuda_sample_out_layout;

static cuda_sample_out_layout cuda_sample_out_of(int32_t n)
{
    cuda_sample_out_layout o;
    o.tok = 0;
    o.lp = CUDA_SAMPLE_ALIGN((size_t)n * 4);
    o.rank = o.lp + CUDA_SAMPLE_ALIGN((size_t)n * 4);
    o.top_ids = o.rank + CUDA_SAMPLE_ALIGN((size_t)n * 4);
    o.top_lp = o.top_ids + CUDA_SAMPLE_ALIGN((size_t)n * CUDA_SAMPLE_K * 4);
    o.bytes = o.top_lp + (size_t)n * CUDA_SAMPLE_K * 4;
    return o;
}

status_t cuda_sample_init(cuda_backend *c)
{
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const int n = cpus < 1 ? 1 : cpus > CUDA_SAMPLE_MAX_THREADS ? CUDA_SAMPLE_MAX_THREADS : (int)cpus;
    const char *host = getenv("LIGHTLLM_HOST_SAMPLING");
    c->sample_max_vocab = host && strcmp(host, "1") == 0 ? 0 : kernels_sampling_max_vocab();
    const char *blocks = getenv("LIGHTLLM_SAMPLE_BLOCKS");
    c->sample_blocks = blocks ? atoi(blocks) : 0;
    for (int s = 0; s < BACKEND_STEP_SLOTS; s++) {
        cudaEvent_t *ev[] = {&c->step_start[s], &c->step_fwd_end[s], &c->sample_start[s], &c->step_end[s]};
        for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++)
            if (cuda_backend_check(c, cudaEventCreate(ev[i]), "cudaEventCreate(step timing)")) return cuda_backend_status(&c->base);
    }
    return host_sampler_init(&c->sampler, NULL, n);
}

status_t cuda_sample_prepare(cuda_backend *c, int32_t max_seqs)
{
    if (c->next_tokens_dev) cudaFree(c->next_tokens_dev);
    if (c->next_tokens_host) cudaFreeHost(c->next_tokens_host);
    if (c->sample_ws) cudaFree(c->sample_ws);
    c->next_tokens_dev = c->next_tokens_host = NULL;
    c->sample_ws = NULL;
    c->sample_ws_bytes = 0;
    const size_t ws_bytes = c->sample_blocks == 1 ? 0 : kernels_sampling_workspace_bytes(max_seqs);
    if (ws_bytes > 0) {
        STATUS_TRY(cuda_backend_malloc(c, ws_bytes, "the sampling workspace", &c->sample_ws));
        c->sample_ws_bytes = ws_bytes;
    }
    const size_t bytes = (size_t)max_seqs * sizeof(int32_t);
    if (cuda_backend_check(c, cudaMalloc((void **)&c->next_tokens_dev, bytes), "cudaMalloc(next-token table)") ||
        cuda_backend_check(c, cudaMemsetAsync(c->next_tokens_dev, 0, bytes, c->stream), "cudaMemset(next-token table)") ||
        cuda_backend_check(c, cudaMallocHost((void **)&c->next_tokens_host, bytes), "cudaMallocHost(next-token table)"))
        return cuda_backend_status(&c->base);
    memset(c->next_tokens_host, 0, bytes);
    for (int s = 0; s < BACKEND_STEP_SLOTS; s++) {
        free(c->slot_results[s]);
        c->slot_results[s] = log_xcalloc((size_t)max_seqs, sizeof(sampling_result_t));
    }
    return STATUS_OK;
}

void cuda_sample_free(cuda_backend *c)
{
    for (int s = 0; s < BACKEND_STEP_SLOTS; s++) {
        if (c->sample_in_host[s]) cudaFreeHost(c->sample_in_host[s]);
        if (c->sample_out_host[s]) cudaFreeHost(c->sample_out_host[s]);
        if (c->sample_in_dev[s]) cudaFree(c->sample_in_dev[s]);
        if (c->sample_out_dev[s]) cudaFree(c->sample_out_dev[s]);
        cudaEvent_t *ev[] = {&c->step_start[s], &c->step_fwd_end[s], &c->sample_start[s], &c->step_end[s]};
        for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) {
            if (*ev[i]) cudaEventDestroy(*ev[i]);
            *ev[i] = NULL;
        }
        free(c->slot_results[s]);
        c->sample_in_host[s] = c->sample_out_host[s] = c->sample_in_dev[s] = c->sample_out_dev[s] = NULL;
        c->sample_in_capacity[s] = c->sample_out_capacity[s] = 0;
        c->slot_results[s] = NULL;
    }
    if (c->next_tokens_dev) cudaFree(c->next_tokens_dev);
    if (c->next_tokens_host) cudaFreeHost(c->next_tokens_host);
    if (c->sample_ws) cudaFree(c->sample_ws);
    c->sample_ws = NULL;
    c->sample_ws_bytes = 0;
    if (c->sample_host) cudaFreeHost(c->sample_host);
    free(c->sample_pairs);
    c->next_tokens_dev = c->next_tokens_host = NULL;
    c->sample_host = NULL;
    c->sample_pairs = NULL;
    c->cap_sample_pairs = 0;
    c->sample_capacity = 0;
    host_sampler_free(&c->sampler);
}

/* A pinned host buffer and its device twin of at least `bytes`; 0 on failure (recorded). */
static int cuda_sample_reserve(cuda_backend *c, void **host, void **dev, size_t *cap, size_t bytes)
{
    if (bytes <= *cap) return 1;
    if (*host) cudaFreeHost(*host);
    if (*dev) cudaFree(*dev);
    *host = *dev = NULL;
    *cap = 0;
    size_t want = 4096;
    while (want < bytes) want *= 2;
    if (cuda_backend_check(c, cudaMallocHost(host, want), "cudaMallocHost(sampling buffers)") ||
        cuda_backend_check(c, cudaMalloc(dev, want), "cudaMalloc(sampling buffers)"))
        return 0;
    *cap = want;
    return 1;
}

static int cuda_sample_cmp_int(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Row r's penalty set written at ids/counts (capacity >= num_prompt + num_output); returns its
 * size.  Keys id * 2 + (is output) sorted, then runs of one id collapse to (id, outputs). */
static int32_t cuda_sample_penalty_set(cuda_backend *c, const backend_sample_row *r, int32_t *ids, int32_t *counts)
{
    const int64_t n = (int64_t)r->num_prompt + r->num_output;
    if (n > c->cap_sample_pairs) {
        free(c->sample_pairs);
        c->cap_sample_pairs = n * 2;
        c->sample_pairs = log_xmalloc((size_t)c->cap_sample_pairs * sizeof(int32_t));
    }
    int32_t *keys = c->sample_pairs;
    for (int32_t i = 0; i < r->num_prompt; i++) keys[i] = r->prompt_ids[i] * 2;
    for (int32_t i = 0; i < r->num_output; i++) keys[r->num_prompt + i] = r->output_ids[i] * 2 + 1;
    qsort(keys, (size_t)n, sizeof *keys, cuda_sample_cmp_int);
    int32_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t id = keys[i] >> 1;
        if (m == 0 || ids[m - 1] != id) { ids[m] = id; counts[m] = 0; m++; }
        counts[m - 1] += keys[i] & 1;
    }
    return m;
}

void cuda_step_begin(backend *b, int slot)
{
    cuda_backend *c = cuda_backend_of(b);
    if (c->error == STATUS_OK) cuda_backend_check(c, cudaEventRecord(c->step_start[slot], c->stream), "cudaEventRecord(step start)");
}

void cuda_step_forward_end(backend *b, int slot)
{
    cuda_backend *c = cuda_backend_of(b);
    if (c->error == STATUS_OK) cuda_backend_check(c, cudaEventRecord(c->step_fwd_end[slot], c->stream), "cudaEventRecord(forward end)");
}

/* The host path: synchronous; results in slot_results, table entries through the mirror. */
static void cuda_sample_on_host(cuda_backend *c, int slot, float *logits, int32_t n, int32_t vocab,
                                const backend_sample_row *rows)
{
    const int64_t count = (int64_t)n * vocab;
    if (count > c->sample_capacity) { /* grows to the largest batch, then stays */
        if (c->sample_host) cudaFreeHost(c->sample_host);
        c->sample_host = NULL;
        c->sample_capacity = 0;
        void *p = NULL;
        if (cuda_backend_check(c, cudaMallocHost(&p, (size_t)count * sizeof(float)), "cudaMallocHost(sample logits)")) return;
        c->sample_host = p;
        c->sample_capacity = count;
    }
    if (cuda_backend_check(c, cudaMemcpyAsync(c->sample_host, logits, (size_t)count * sizeof(float), cudaMemcpyDeviceToHost,
                                              c->stream), "cudaMemcpyAsync(sample logits)") ||
        cuda_backend_check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize(sample logits)"))
        return;
    sampling_result_t *out = c->slot_results[slot];
    host_sampler_run(&c->sampler, c->sample_host, n, vocab, rows, out);
    for (int32_t i = 0; i < n; i++)
        if (rows[i].table_index >= 0) {
            LL_ASSERT(rows[i].table_index < c->max_seqs);
            c->next_tokens_host[rows[i].table_index] = out[i].token;
        }
    /* synchronous copy: the mirror may change again before an async one would have run */
    cuda_backend_check(c, cudaMemcpy(c->next_tokens_dev, c->next_tokens_host, (size_t)c->max_seqs * sizeof(int32_t),
                                     cudaMemcpyHostToDevice), "cudaMemcpy(next-token table)");
}

/* The device path: the kernel, the outputs' copy back. */
static void cuda_sample_on_device(cuda_backend *c, int slot, float *logits, int32_t n, int32_t vocab,
                                  const backend_sample_row *rows)
{
    /* sizes: penalty entries, banned ids, masks */
    int64_t num_pen = 0, num_banned = 0;
    int any_mask = 0;
    for (int32_t i = 0; i < n; i++) {
        if (sampling_params_has_penalty(rows[i].sp)) num_pen += (int64_t)rows[i].num_prompt + rows[i].num_output;
        num_banned += rows[i].num_banned;
        any_mask |= rows[i].allowed_mask != NULL;
    }
    const int64_t words = (vocab + 31) / 32;
    const size_t off_params = 0;
    const size_t off_table = CUDA_SAMPLE_ALIGN(off_params + (size_t)n * sizeof(kernels_sampling_params_t));
    const size_t off_pen_off = CUDA_SAMPLE_ALIGN(off_table + (size_t)n * sizeof(int32_t));
    const size_t off_pen_ids = CUDA_SAMPLE_ALIGN(off_pen_off + (size_t)(n + 1) * sizeof(int32_t));
    const size_t off_pen_cnt = CUDA_SAMPLE_ALIGN(off_pen_ids + (size_t)num_pen * sizeof(int32_t));
    const size_t off_ban_off = CUDA_SAMPLE_ALIGN(off_pen_cnt + (size_t)num_pen * sizeof(int32_t));
    const size_t off_ban_ids = CUDA_SAMPLE_ALIGN(off_ban_off + (size_t)(n + 1) * sizeof(int32_t));
    const size_t off_mask = CUDA_SAMPLE_ALIGN(off_ban_ids + (size_t)num_banned * sizeof(int32_t));
    const size_t in_bytes = off_mask + (any_mask ? (size_t)n * (size_t)words * sizeof(uint32_t) : 0);
    const cuda_sample_out_layout o = cuda_sample_out_of(n);
    if (!cuda_sample_reserve(c, &c->sample_in_host[slot], &c->sample_in_dev[slot], &c->sample_in_capacity[slot], in_bytes) ||
        !cuda_sample_reserve(c, &c->sample_out_host[slot], &c->sample_out_dev[slot], &c->sample_out_capacity[slot], o.bytes))
        return;

    uint8_t *h = c->sample_in_host[slot];
    kernels_sampling_params_t *params = (kernels_sampling_params_t *)(h + off_params);
    int32_t *table = (int32_t *)(h + off_table);
    int32_t *pen_off = (int32_t *)(h + off_pen_off), *pen_ids = (int32_t *)(h + off_pen_ids);
    int32_t *pen_cnt = (int32_t *)(h + off_pen_cnt), *ban_off = (int32_t *)(h + off_ban_off);
    int32_t *ban_ids = (int32_t *)(h + off_ban_ids);
    uint32_t *mask = (uint32_t *)(h + off_mask);
    pen_off[0] = ban_off[0] = 0;
    for (int32_t i = 0; i < n; i++) {
        const backend_sample_row *r = &rows[i];
        const sampling_params_t *p = r->sp;
        params[i] = (kernels_sampling_params_t){
            .temperature = p->temperature, .top_p = p->top_p, .top_k = p->top_k, .min_p = p->min_p,
            .repetition_penalty = p->repetition_penalty, .presence_penalty = p->presence_penalty,
            .frequency_penalty = p->frequency_penalty, .num_logprobs = p->logprobs, .rng_key = r->rng_key,
            .rng_counter = r->rng_counter, .flags = 0, .reserved = 0,
        };
        LL_ASSERT(r->table_index < c->max_seqs);
        table[i] = r->table_index;
        int32_t np = 0;
        if (sampling_params_has_penalty(p)) np = cuda_sample_penalty_set(c, r, pen_ids + pen_off[i], pen_cnt + pen_off[i]);
        pen_off[i + 1] = pen_off[i] + np;
        memcpy(ban_ids + ban_off[i], r->banned_ids, (size_t)r->num_banned * sizeof(int32_t));
        ban_off[i + 1] = ban_off[i] + r->num_banned;
        if (any_mask) {
            uint32_t *row_mask = mask + (int64_t)i * words;
            if (r->allowed_mask) memcpy(row_mask, r->allowed_mask, (size_t)words * sizeof(uint32_t));
            else memset(row_mask, 0xFF, (size_t)words * sizeof(uint32_t));
        }
    }
    uint8_t *d = c->sample_in_dev[slot], *od = c->sample_out_dev[slot];
    if (cuda_backend_check(c, cudaMemcpyAsync(d, h, in_bytes, cudaMemcpyHostToDevice, c->stream), "cudaMemcpyAsync(sampling inputs)") ||
        cuda_backend_check(c, kernels_sampling(logits, n, vocab, (const kernels_sampling_params_t *)(d + off_params),
                                               num_pen ? (const int32_t *)(d + off_pen_off) : NULL,
                                               (const int32_t *)(d + off_pen_ids), (const int32_t *)(d + off_pen_cnt),
                                               num_banned ? (const int32_t *)(d + off_ban_off) : NULL,
                                               (const int32_t *)(d + off_ban_ids), any_mask ? (const uint32_t *)(d + off_mask) : NULL,
                                               (int32_t *)(od + o.tok), (float *)(od + o.lp), (int32_t *)(od + o.rank),
                                               (int32_t *)(od + o.top_ids), (float *)(od + o.top_lp), c->next_tokens_dev,
                                               (const int32_t *)(d + off_table), NULL, c->sample_ws, c->sample_ws_bytes,
                                               c->sample_blocks, c->stream),
                           "kernels_sampling") ||
        cuda_backend_check(c, cudaMemcpyAsync(c->sample_out_host[slot], od, o.bytes, cudaMemcpyDeviceToHost, c->stream),
                           "cudaMemcpyAsync(sampled tokens)"))
        return;
}

void cuda_sample(backend *b, int slot, float *logits, int32_t n, int32_t vocab, const backend_sample_row *rows)
{
    cuda_backend *c = cuda_backend_of(b);
    LL_ASSERT(slot >= 0 && slot < BACKEND_STEP_SLOTS && n <= c->max_seqs);
    c->slot_on_host[slot] = vocab > c->sample_max_vocab;
    if (c->error != STATUS_OK) return;
    if (cuda_backend_check(c, cudaEventRecord(c->sample_start[slot], c->stream), "cudaEventRecord(sample start)")) return;
    if (n > 0 && c->slot_on_host[slot]) cuda_sample_on_host(c, slot, logits, n, vocab, rows);
    else if (n > 0) cuda_sample_on_device(c, slot, logits, n, vocab, rows);
    if (c->error == STATUS_OK) cuda_backend_check(c, cudaEventRecord(c->step_end[slot], c->stream), "cudaEventRecord(step end)");
}

void cuda_sample_wait(backend *b, int slot, int32_t n, sampling_result_t *out, double *device_seconds)
{
    cuda_backend *c = cuda_backend_of(b);
    memset(out, 0, (size_t)n * sizeof *out);
    *device_seconds = 0.0;
    if (c->error != STATUS_OK) return;
    float fwd_ms = 0.0f, sample_ms = 0.0f;
    if (cuda_backend_check(c, cudaEventSynchronize(c->step_end[slot]), "cudaEventSynchronize(step end)") ||
        cuda_backend_check(c, cudaEventElapsedTime(&fwd_ms, c->step_start[slot], c->step_fwd_end[slot]), "cudaEventElapsedTime(forward)") ||
        cuda_backend_check(c, cudaEventElapsedTime(&sample_ms, c->sample_start[slot], c->step_end[slot]), "cudaEventElapsedTime(sampling)"))
        return;
    *device_seconds = ((double)fwd_ms + (double)sample_ms) * 1e-3;
    if (n <= 0) return;
    if (c->slot_on_host[slot]) {
        memcpy(out, c->slot_results[slot], (size_t)n * sizeof *out);
        return;
    }
    const cuda_sample_out_layout o = cuda_sample_out_of(n);
    const uint8_t *oh = c->sample_out_host[slot];
    const int32_t *tok = (const int32_t *)(oh + o.tok), *rank = (const int32_t *)(oh + o.rank);
    const int32_t *tid = (const int32_t *)(oh + o.top_ids);
    const float *lp = (const float *)(oh + o.lp), *tlp = (const float *)(oh + o.top_lp);
    for (int32_t i = 0; i < n; i++) {
        sampling_result_t *r = &out[i];
        r->token = tok[i];
        /* logprobs are -1 (off) unless asked; the kernel leaves them 0 then */
        r->logprob = lp[i];
        r->rank = rank[i];
        r->num_top = 0;
        for (int32_t k = 0; k < CUDA_SAMPLE_K && tid[(size_t)i * CUDA_SAMPLE_K + (size_t)k] >= 0; k++) {
            r->top_ids[k] = tid[(size_t)i * CUDA_SAMPLE_K + (size_t)k];
            r->top_logprobs[k] = tlp[(size_t)i * CUDA_SAMPLE_K + (size_t)k];
            r->num_top = k + 1;
        }
    }
}
