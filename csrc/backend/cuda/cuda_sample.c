/* cuda_sample.c — backend_ops.sample for the CUDA backend: kernels_sampling (csrc/kernels/
 * sampling.cu) picks every row's token on the device, so only the tokens and logprobs cross to
 * the host, not the logits.
 *
 * Per call: the rows' parameters, penalty sets (CSR: a row's distinct prompt ∪ output ids,
 * ascending, each with its output count; only rows with a penalty), banned ids (CSR) and
 * allowed masks ([m, ceil(vocab/32)] when any row has one) are packed into one pinned buffer and
 * sent with one copy; the outputs (token, logprob, rank, top ids, top logprobs) come back with
 * one copy and one synchronisation.  Buffers grow to the largest call and stay.  A vocabulary
 * larger than the kernel takes (shared memory) falls back to the host sampler over a pinned
 * copy of the logits; LIGHTLLM_HOST_SAMPLING=1 forces that path (tests compare the two).  After a device failure no row is sampled from stale memory: every token
 * is 0 and the sticky error is reported by last_error.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cuda/cuda_backend.h"
#include "core/log.h"
#include "kernels/kernels.h"

#define CUDA_SAMPLE_MAX_THREADS 8
#define CUDA_SAMPLE_ALIGN(x) (((x) + 15) & ~(size_t)15)

status_t cuda_sample_init(cuda_backend *c)
{
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const int n = cpus < 1 ? 1 : cpus > CUDA_SAMPLE_MAX_THREADS ? CUDA_SAMPLE_MAX_THREADS : (int)cpus;
    const char *host = getenv("LIGHTLLM_HOST_SAMPLING");
    c->sample_max_vocab = host && strcmp(host, "1") == 0 ? 0 : kernels_sampling_max_vocab();
    return host_sampler_init(&c->sampler, NULL, n);
}

void cuda_sample_free(cuda_backend *c)
{
    void *host[] = {c->sample_in_host, c->sample_out_host, c->sample_host};
    void *dev[] = {c->sample_in_dev, c->sample_out_dev};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) if (host[i]) cudaFreeHost(host[i]);
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) if (dev[i]) cudaFree(dev[i]);
    free(c->sample_pairs);
    c->sample_in_host = c->sample_in_dev = c->sample_out_host = c->sample_out_dev = NULL;
    c->sample_host = NULL;
    c->sample_pairs = NULL;
    c->sample_in_capacity = c->sample_out_capacity = 0;
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
    if (cuda_backend_check(c, cudaMallocHost(host, want), "cudaMallocHost(sampling inputs)") ||
        cuda_backend_check(c, cudaMalloc(dev, want), "cudaMalloc(sampling buffers)"))
        return 0;
    *cap = want;
    return 1;
}

static int cuda_sample_has_penalty(const sampling_params_t *p)
{
    return p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
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

static void cuda_sample_on_host(cuda_backend *c, float *logits, int32_t n, int32_t vocab, const backend_sample_row *rows,
                                sampling_result_t *out)
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
    host_sampler_run(&c->sampler, c->sample_host, n, vocab, rows, out);
}

void cuda_sample(backend *b, float *logits, int32_t n, int32_t vocab, const backend_sample_row *rows,
                 sampling_result_t *out)
{
    cuda_backend *c = cuda_backend_of(b);
    memset(out, 0, (size_t)n * sizeof *out);
    if (n <= 0 || cuda_backend_status(b) != STATUS_OK) return;
    if (vocab > c->sample_max_vocab) {
        cuda_sample_on_host(c, logits, n, vocab, rows, out);
        return;
    }
    /* sizes: penalty entries, banned ids, masks */
    int64_t num_pen = 0, num_banned = 0;
    int any_mask = 0;
    for (int32_t i = 0; i < n; i++) {
        if (cuda_sample_has_penalty(rows[i].sp)) num_pen += (int64_t)rows[i].num_prompt + rows[i].num_output;
        num_banned += rows[i].num_banned;
        any_mask |= rows[i].allowed_mask != NULL;
    }
    const int64_t words = (vocab + 31) / 32;
    const size_t off_params = 0;
    const size_t off_pen_off = CUDA_SAMPLE_ALIGN(off_params + (size_t)n * sizeof(kernels_sampling_params_t));
    const size_t off_pen_ids = CUDA_SAMPLE_ALIGN(off_pen_off + (size_t)(n + 1) * sizeof(int32_t));
    const size_t off_pen_cnt = CUDA_SAMPLE_ALIGN(off_pen_ids + (size_t)num_pen * sizeof(int32_t));
    const size_t off_ban_off = CUDA_SAMPLE_ALIGN(off_pen_cnt + (size_t)num_pen * sizeof(int32_t));
    const size_t off_ban_ids = CUDA_SAMPLE_ALIGN(off_ban_off + (size_t)(n + 1) * sizeof(int32_t));
    const size_t off_mask = CUDA_SAMPLE_ALIGN(off_ban_ids + (size_t)num_banned * sizeof(int32_t));
    const size_t in_bytes = off_mask + (any_mask ? (size_t)n * (size_t)words * sizeof(uint32_t) : 0);
    const size_t K = KERNELS_SAMPLING_MAX_LOGPROBS;
    const size_t o_tok = 0, o_lp = CUDA_SAMPLE_ALIGN((size_t)n * 4), o_rank = o_lp + CUDA_SAMPLE_ALIGN((size_t)n * 4),
                 o_tid = o_rank + CUDA_SAMPLE_ALIGN((size_t)n * 4), o_tlp = o_tid + CUDA_SAMPLE_ALIGN((size_t)n * K * 4),
                 out_bytes = o_tlp + (size_t)n * K * 4;
    if (!cuda_sample_reserve(c, &c->sample_in_host, &c->sample_in_dev, &c->sample_in_capacity, in_bytes) ||
        !cuda_sample_reserve(c, &c->sample_out_host, &c->sample_out_dev, &c->sample_out_capacity, out_bytes))
        return;

    uint8_t *h = c->sample_in_host;
    kernels_sampling_params_t *params = (kernels_sampling_params_t *)(h + off_params);
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
            .rng_counter = r->rng_counter, .flags = KERNELS_SAMPLING_NO_TABLE, .reserved = 0,
        };
        int32_t np = 0;
        if (cuda_sample_has_penalty(p)) np = cuda_sample_penalty_set(c, r, pen_ids + pen_off[i], pen_cnt + pen_off[i]);
        pen_off[i + 1] = pen_off[i] + np;
        memcpy(ban_ids + ban_off[i], r->banned_ids, (size_t)r->num_banned * sizeof(int32_t));
        ban_off[i + 1] = ban_off[i] + r->num_banned;
        if (any_mask) {
            uint32_t *row_mask = mask + (int64_t)i * words;
            if (r->allowed_mask) memcpy(row_mask, r->allowed_mask, (size_t)words * sizeof(uint32_t));
            else memset(row_mask, 0xFF, (size_t)words * sizeof(uint32_t));
        }
    }
    uint8_t *d = c->sample_in_dev, *od = c->sample_out_dev, *oh = c->sample_out_host;
    if (cuda_backend_check(c, cudaMemcpyAsync(d, h, in_bytes, cudaMemcpyHostToDevice, c->stream), "cudaMemcpyAsync(sampling inputs)") ||
        cuda_backend_check(c, kernels_sampling(logits, n, vocab, (const kernels_sampling_params_t *)(d + off_params),
                                               num_pen ? (const int32_t *)(d + off_pen_off) : NULL,
                                               (const int32_t *)(d + off_pen_ids), (const int32_t *)(d + off_pen_cnt),
                                               num_banned ? (const int32_t *)(d + off_ban_off) : NULL,
                                               (const int32_t *)(d + off_ban_ids), any_mask ? (const uint32_t *)(d + off_mask) : NULL,
                                               (int32_t *)(od + o_tok), (float *)(od + o_lp), (int32_t *)(od + o_rank),
                                               (int32_t *)(od + o_tid), (float *)(od + o_tlp), NULL, NULL, NULL, c->stream),
                           "kernels_sampling") ||
        cuda_backend_check(c, cudaMemcpyAsync(oh, od, out_bytes, cudaMemcpyDeviceToHost, c->stream), "cudaMemcpyAsync(sampled tokens)") ||
        cuda_backend_check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize(sampled tokens)"))
        return;
    const int32_t *tok = (const int32_t *)(oh + o_tok), *rank = (const int32_t *)(oh + o_rank), *tid = (const int32_t *)(oh + o_tid);
    const float *lp = (const float *)(oh + o_lp), *tlp = (const float *)(oh + o_tlp);
    for (int32_t i = 0; i < n; i++) {
        sampling_result_t *o = &out[i];
        o->token = tok[i];
        if (rows[i].sp->logprobs < 0) continue;
        o->logprob = lp[i];
        o->rank = rank[i];
        o->num_top = rows[i].sp->logprobs;
        for (int32_t k = 0; k < o->num_top; k++) {
            o->top_ids[k] = tid[(size_t)i * K + (size_t)k];
            o->top_logprobs[k] = tlp[(size_t)i * K + (size_t)k];
        }
    }
}
