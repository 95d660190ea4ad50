/* cuda_sample.c — backend_ops.sample for the CUDA backend.
 *
 * For now the logits come to pinned host memory (one copy, one synchronisation) and the rows
 * are sampled by the CPU sampler (engine/sampling.c, the reference) on a pool of host threads;
 * sampling on the device, with only the chosen tokens and logprobs coming back, is to replace
 * this.  After a device failure no row is sampled from stale memory: every token is 0 and the
 * sticky error is reported by last_error.
 */
#include <string.h>
#include <unistd.h>

#include "backend/cuda/cuda_backend.h"
#include "core/log.h"

#define CUDA_SAMPLE_MAX_THREADS 8

status_t cuda_sample_init(cuda_backend *c)
{
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const int n = cpus < 1 ? 1 : cpus > CUDA_SAMPLE_MAX_THREADS ? CUDA_SAMPLE_MAX_THREADS : (int)cpus;
    return host_sampler_init(&c->sampler, NULL, n);
}

void cuda_sample_free(cuda_backend *c)
{
    if (c->sample_host) cudaFreeHost(c->sample_host);
    c->sample_host = NULL;
    c->sample_capacity = 0;
    host_sampler_free(&c->sampler);
}

void cuda_sample(backend *b, float *logits, int32_t n, int32_t vocab, const backend_sample_row *rows,
                 sampling_result_t *out)
{
    cuda_backend *c = cuda_backend_of(b);
    memset(out, 0, (size_t)n * sizeof *out);
    if (n <= 0 || cuda_backend_status(b) != STATUS_OK) return;
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
