/* cuda_sample.c — backend_ops.sample for the CUDA backend.
 *
 * For now the logits come to pinned host memory (one copy, one synchronisation) and each row is
 * sampled by the CPU sampler (engine/sampling.c), the reference; sampling on the device, with
 * only the chosen tokens and logprobs coming back, is to replace this.  After a device failure
 * no row is sampled from stale memory: every token is 0 and the sticky error is reported by
 * last_error.
 */
#include <string.h>

#include "backend/cuda/cuda_backend.h"
#include "core/log.h"

void cuda_sample_free(cuda_backend *c)
{
    if (c->sample_host) cudaFreeHost(c->sample_host);
    sampling_scratch_free(c->sample_scratch);
    c->sample_host = NULL;
    c->sample_scratch = NULL;
    c->sample_capacity = 0;
    c->sample_vocab = 0;
}

void cuda_sample(backend *b, float *logits, int32_t n, int32_t vocab, const backend_sample_row *rows,
                 sampling_result_t *out)
{
    cuda_backend *c = cuda_backend_of(b);
    memset(out, 0, (size_t)n * sizeof *out);
    if (n <= 0 || cuda_backend_status(b) != STATUS_OK) return;
    const int64_t count = (int64_t)n * vocab;
    if (count > c->sample_capacity || vocab != c->sample_vocab) { /* grows to the largest batch, then stays */
        cuda_sample_free(c);
        void *p = NULL;
        if (cuda_backend_check(c, cudaMallocHost(&p, (size_t)count * sizeof(float)), "cudaMallocHost(sample logits)")) return;
        c->sample_host = p;
        c->sample_capacity = count;
        c->sample_scratch = sampling_scratch_create(vocab);
        LL_ASSERT(c->sample_scratch);
        c->sample_vocab = vocab;
    }
    if (cuda_backend_check(c, cudaMemcpyAsync(c->sample_host, logits, (size_t)count * sizeof(float), cudaMemcpyDeviceToHost,
                                              c->stream), "cudaMemcpyAsync(sample logits)") ||
        cuda_backend_check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize(sample logits)"))
        return;
    for (int32_t i = 0; i < n; i++) {
        const backend_sample_row *r = &rows[i];
        sampling_sample_row(r->sp, c->sample_host + (int64_t)i * vocab, vocab, r->prompt_ids, r->num_prompt, r->output_ids,
                            r->num_output, r->banned_ids, r->num_banned, r->allowed_mask, r->rng_key, r->rng_counter,
                            c->sample_scratch, &out[i]);
    }
}
