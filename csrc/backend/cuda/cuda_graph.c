/* cuda_graph.c — decode steps as CUDA graphs: a step of b sequences each decoding one token runs
 * as the graph captured for its key (the smallest batch bucket >= b, the smallest KV-length
 * bucket >= its longest sequence).  upload_batch pads the batch to the key's sizes (extra rows
 * write and attend only the pad KV slot) and always puts its index arrays at the same addresses,
 * so the graph's pointers and launch shapes hold for every step of the key: one launch replaces
 * the forward's ~400.  A key runs eagerly the first time (GEMM plans chosen, modules loaded),
 * is captured the second time, replayed after.  Capture is thread-local: the other inference
 * thread only waits on events meanwhile.  LIGHTLLM_CUDA_GRAPHS=0 turns graphs off.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_backend.h"
#include "core/log.h"

static const int32_t cuda_graph_batch_buckets[] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 384, 512};

void cuda_graph_free(cuda_backend *c)
{
    for (int32_t i = 0; c->graph_exec && i < c->num_graph_batches * c->num_graph_kv; i++)
        if (c->graph_exec[i]) cudaGraphExecDestroy(c->graph_exec[i]);
    free(c->graph_exec);
    free(c->graph_seen);
    c->graph_exec = NULL;
    c->graph_seen = NULL;
    c->num_graph_batches = c->num_graph_kv = 0;
}

void cuda_graph_prepare(cuda_backend *c, int32_t max_seqs, int32_t max_seq_len)
{
    cuda_graph_free(c);
    const char *env = getenv("LIGHTLLM_CUDA_GRAPHS");
    c->graphs_enabled = !(env && strcmp(env, "0") == 0);
    for (size_t i = 0; i < sizeof cuda_graph_batch_buckets / sizeof cuda_graph_batch_buckets[0]; i++)
        if (cuda_graph_batch_buckets[i] <= max_seqs) c->graph_batches[c->num_graph_batches++] = cuda_graph_batch_buckets[i];
    for (int32_t kv = 256; c->num_graph_kv < CUDA_GRAPH_MAX_BUCKETS; kv *= 2) {
        c->graph_kv[c->num_graph_kv++] = kv < max_seq_len ? kv : max_seq_len;
        if (kv >= max_seq_len) break;
    }
    const size_t n = (size_t)c->num_graph_batches * (size_t)c->num_graph_kv;
    c->graph_exec = log_xcalloc(n ? n : 1, sizeof *c->graph_exec);
    c->graph_seen = log_xcalloc(n ? n : 1, 1);
}

void cuda_graph_key_sizes(const cuda_backend *c, int32_t key, int32_t *rows, int32_t *kv_len)
{
    *rows = c->graph_batches[key / c->num_graph_kv];
    *kv_len = c->graph_kv[key % c->num_graph_kv];
}

int32_t cuda_graph_key(backend *b, const forward_batch *h)
{
    cuda_backend *c = cuda_backend_of(b);
    if (!c->graphs_enabled || c->error != STATUS_OK || h->num_tokens != h->num_seqs || h->max_q_len != 1 ||
        h->num_logits != h->num_tokens)
        return 0;
    int32_t bi = 0, ki = 0;
    while (bi < c->num_graph_batches && c->graph_batches[bi] < h->num_seqs) bi++;
    while (ki < c->num_graph_kv && c->graph_kv[ki] < h->max_kv_len) ki++;
    if (bi == c->num_graph_batches || ki == c->num_graph_kv) return 0;
    return 1 + bi * c->num_graph_kv + ki;
}

int cuda_graph_run(backend *b, int32_t key)
{
    cuda_backend *c = cuda_backend_of(b);
    if (c->error != STATUS_OK || !c->graph_exec[key]) return 0;
    cuda_backend_check(c, cudaGraphLaunch(c->graph_exec[key], c->stream), "cudaGraphLaunch");
    c->base.num_graph_replays++;
    return 1;
}

int cuda_graph_begin(backend *b, int32_t key)
{
    cuda_backend *c = cuda_backend_of(b);
    if (c->error != STATUS_OK) return 0;
    if (!c->graph_seen[key]) { /* warm-up: plans and modules before the capture */
        c->graph_seen[key] = 1;
        return 0;
    }
    return !cuda_backend_check(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal),
                               "cudaStreamBeginCapture");
}

void cuda_graph_end(backend *b, int32_t key)
{
    cuda_backend *c = cuda_backend_of(b);
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g); /* ends it even after a failed op */
    if (cuda_backend_check(c, e, "cudaStreamEndCapture") || c->error != STATUS_OK) {
        if (g) cudaGraphDestroy(g);
        return;
    }
    e = cudaGraphInstantiate(&c->graph_exec[key], g, 0);
    cudaGraphDestroy(g);
    if (cuda_backend_check(c, e, "cudaGraphInstantiate")) {
        c->graph_exec[key] = NULL;
        return;
    }
    c->num_graph_captures++;
    cuda_graph_run(b, key); /* the captured ops have not run yet */
}
