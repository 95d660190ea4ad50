/* host_sampler.h — backend_ops.sample on the host: sampling_sample_row for each row of fp32
 * logits in host memory, the rows spread over a threadpool, each thread with its own scratch
 * (made at the first call, for that vocabulary).  The CPU backend samples with it on its own
 * pool; the CUDA backend, until sampling runs on the device, on a pool of its own. */
#ifndef LIGHTLLM_BACKEND_HOST_SAMPLER_H
#define LIGHTLLM_BACKEND_HOST_SAMPLER_H

#include "backend/backend.h"
#include "core/threadpool.h"

typedef struct host_sampler {
    threadpool *tp;                 /* borrowed or owned */
    int owns_tp;
    int num_threads;
    sampling_scratch_t **scratch;   /* [num_threads] */
    int32_t vocab;
} host_sampler;

/* tp: a pool to borrow, or NULL to start one of num_threads threads.  STATUS_NO_MEMORY when the
 * threads cannot start. */
status_t host_sampler_init(host_sampler *h, threadpool *tp, int num_threads);
void host_sampler_free(host_sampler *h);
/* logits[n, vocab] (host, modified), rows[n] → out[n] */
void host_sampler_run(host_sampler *h, float *logits, int32_t n, int32_t vocab, const backend_sample_row *rows,
                      sampling_result_t *out);

#endif
