/* cpu_sample.c — backend_ops.sample on the CPU: sampling_sample_row for each row, the rows
 * spread over the backend's threads (each with its own scratch). */
#include <stdlib.h>

#include "backend/cpu/cpu_backend.h"
#include "core/log.h"

typedef struct cpu_sample_ctx {
    cpu_backend *c;
    float *logits;                  /* [n, vocab] */
    int32_t vocab;
    const backend_sample_row *rows; /* [n] */
    sampling_result_t *out;         /* [n] */
} cpu_sample_ctx;

static void cpu_sample_task(void *p, int task, int thread)
{
    const cpu_sample_ctx *x = p;
    const backend_sample_row *r = &x->rows[task];
    sampling_sample_row(r->sp, x->logits + (int64_t)task * x->vocab, x->vocab, r->prompt_ids, r->num_prompt,
                        r->output_ids, r->num_output, r->banned_ids, r->num_banned, r->allowed_mask, r->rng_key,
                        r->rng_counter, x->c->sample_scratch[thread], &x->out[task]);
}

void cpu_sample_free(cpu_backend *c)
{
    if (!c->sample_scratch) return;
    for (int i = 0; i < c->num_threads; i++) sampling_scratch_free(c->sample_scratch[i]);
    free(c->sample_scratch);
    c->sample_scratch = NULL;
}

void cpu_sample(backend *b, float *logits, int32_t n, int32_t vocab, const backend_sample_row *rows,
                sampling_result_t *out)
{
    cpu_backend *c = cpu_backend_of(b);
    if (vocab > c->sample_vocab) { /* once: the model's vocabulary */
        cpu_sample_free(c);
        c->sample_scratch = log_xcalloc((size_t)c->num_threads, sizeof *c->sample_scratch);
        for (int i = 0; i < c->num_threads; i++) {
            c->sample_scratch[i] = sampling_scratch_create(vocab);
            LL_ASSERT(c->sample_scratch[i]);
        }
        c->sample_vocab = vocab;
    }
    cpu_sample_ctx x = {.c = c, .logits = logits, .vocab = vocab, .rows = rows, .out = out};
    threadpool_run(c->tp, cpu_sample_task, &x, n);
}
