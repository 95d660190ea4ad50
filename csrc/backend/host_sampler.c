/* host_sampler.c — see host_sampler.h. */
#include "backend/host_sampler.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

typedef struct host_sampler_job {
    host_sampler *h;
    float *logits;                  /* [n, vocab] */
    int32_t vocab;
    const backend_sample_row *rows; /* [n] */
    sampling_result_t *out;         /* [n] */
} host_sampler_job;

status_t host_sampler_init(host_sampler *h, threadpool *tp, int num_threads)
{
    memset(h, 0, sizeof *h);
    h->tp = tp ? tp : threadpool_create(num_threads);
    if (!h->tp) return status_set(STATUS_NO_MEMORY, "cannot start %d sampling threads", num_threads);
    h->owns_tp = tp == NULL;
    h->num_threads = threadpool_num_threads(h->tp);
    return STATUS_OK;
}

static void host_sampler_free_scratch(host_sampler *h)
{
    if (!h->scratch) return;
    for (int i = 0; i < h->num_threads; i++) sampling_scratch_free(h->scratch[i]);
    free(h->scratch);
    h->scratch = NULL;
    h->vocab = 0;
}

void host_sampler_free(host_sampler *h)
{
    host_sampler_free_scratch(h);
    if (h->owns_tp) threadpool_free(h->tp);
    memset(h, 0, sizeof *h);
}

static void host_sampler_task(void *p, int task, int thread)
{
    const host_sampler_job *j = p;
    const backend_sample_row *r = &j->rows[task];
    sampling_sample_row(r->sp, j->logits + (int64_t)task * j->vocab, j->vocab, r->prompt_ids, r->num_prompt,
                        r->output_ids, r->num_output, r->banned_ids, r->num_banned, r->allowed_mask, r->rng_key,
                        r->rng_counter, j->h->scratch[thread], &j->out[task]);
}

void host_sampler_run(host_sampler *h, float *logits, int32_t n, int32_t vocab, const backend_sample_row *rows,
                      sampling_result_t *out)
{
    if (vocab != h->vocab) { /* once: the model's vocabulary */
        host_sampler_free_scratch(h);
        h->scratch = log_xcalloc((size_t)h->num_threads, sizeof *h->scratch);
        for (int i = 0; i < h->num_threads; i++) {
            h->scratch[i] = sampling_scratch_create(vocab);
            LL_ASSERT(h->scratch[i]);
        }
        h->vocab = vocab;
    }
    host_sampler_job j = {.h = h, .logits = logits, .vocab = vocab, .rows = rows, .out = out};
    threadpool_run(h->tp, host_sampler_task, &j, n);
}
