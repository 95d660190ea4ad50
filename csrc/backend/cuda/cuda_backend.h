/* cuda_backend.h — internals shared by the CUDA backend's files (not part of the op table).
 *
 * One device, one stream, one cuBLASLt handle per backend.  Ops are asynchronous on the
 * stream; per step, sample_wait waits for that step's sampling (steps are launched ahead).  Errors are sticky: the first
 * failing CUDA/cuBLAS call records its text in the backend, every later op returns without
 * launching, and ops->last_error (= cuda_backend_status) reports it after the forward.
 */
#ifndef LIGHTLLM_BACKEND_CUDA_BACKEND_H
#define LIGHTLLM_BACKEND_CUDA_BACKEND_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "backend/backend.h"
#include "backend/host_sampler.h"

#define CUDA_GEMM_WORKSPACE_BYTES ((size_t)32 << 20)
#define CUDA_GRAPH_MAX_BUCKETS 32
/* kernels_gemv up to this many token rows by default: it beats cuBLASLt at 1-2 rows on every
 * Llama-3.1-8B layer and at 4 on the sum of a layer, but loses from 8 on (fp32 FMA bound;
 * benchmarks/RESULTS.md, bench_kernels) */
#define CUDA_GEMV_DEFAULT_ROWS 4
#define CUDA_WEIGHTS_STAGING_BUFFERS 2
#define CUDA_WEIGHTS_STAGING_BYTES ((size_t)32 << 20)
#define CUDA_WEIGHTS_FILL_THREADS 8 /* host threads filling a staging buffer (at most the CPUs) */

/* One cached GEMM plan: layouts and the heuristic's algorithm for a (m, n, k, out dtype,
 * alignment) shape.  Inline opaque descriptors: looking a plan up allocates nothing. */
typedef struct cuda_gemm_plan {
    int64_t m, n, k;            /* m = out features, n = tokens, k = in features */
    int out_f32;                /* D is fp32 (logits) instead of bf16 */
    int align_bytes;            /* min alignment of the A/B/D pointers, capped at 256 */
    int used;
    cublasLtMatrixLayoutOpaque_t a, b, d;
    cublasLtMatmulAlgo_t algo;
} cuda_gemm_plan;

typedef struct cuda_backend {
    backend base;
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulDescOpaque_t matmul_desc; /* bf16·bf16 → fp32 accumulate, A transposed */
    void *gemm_workspace;       /* CUDA_GEMM_WORKSPACE_BYTES */
    cuda_gemm_plan *plans;      /* open-addressing table, num_plan_slots (power of two) */
    int64_t num_plan_slots, num_plans;
    unsigned *gemv_counter;     /* device: kernels_gemv_add_rmsnorm's block count (0 between launches) */
    int gemv_fuse;              /* fused GEMV epilogues, LIGHTLLM_GEMV_FUSE: 0 none, 1 (default) SiLU,
                                 * 2 SiLU and add+RMSNorm (its one-block tail is slower than the
                                 * separate kernel so far: benchmarks/RESULTS.md) */
    int32_t gemv_max_rows;      /* linear layers of at most this many token rows use kernels_gemv
                                 * (LIGHTLLM_GEMV_MAX_ROWS, default CUDA_GEMV_DEFAULT_ROWS, at most
                                 * KERNELS_GEMV_MAX_ROWS; 0 = cuBLASLt only) */

    /* sticky first error */
    status_t error;
    char error_message[512];

    /* per-step buffers, sized by prepare */
    int32_t max_tokens, max_seqs, max_seq_len;
    int64_t max_total_kv;
    int64_t index_capacity;     /* int32 entries of index_dev / index_host */
    int32_t *index_dev;         /* device copies of the batch's index arrays */
    int32_t *index_host;        /* pinned staging */
    cudaEvent_t index_copied;   /* the staging buffer may be reused once this has fired */
    int index_copy_pending;
    int32_t num_heads, head_dim;
    void *attn_workspace;
    size_t attn_workspace_bytes;

    /* steps and sampling (cuda_sample.c), per step slot: the device sampler's inputs staged in
     * pinned memory and sent in one copy (params, penalty and banned CSR, masks, table
     * indices), its outputs back in one copy; events around the step.  The host sampler when
     * the vocabulary is too large for the kernel (logits to pinned memory). */
    void *sample_in_host[BACKEND_STEP_SLOTS], *sample_in_dev[BACKEND_STEP_SLOTS];
    size_t sample_in_capacity[BACKEND_STEP_SLOTS];
    void *sample_out_host[BACKEND_STEP_SLOTS], *sample_out_dev[BACKEND_STEP_SLOTS];
    size_t sample_out_capacity[BACKEND_STEP_SLOTS];
    sampling_result_t *slot_results[BACKEND_STEP_SLOTS]; /* [max_seqs] host path results */
    int slot_on_host[BACKEND_STEP_SLOTS];      /* the slot's step sampled on the host */
    cudaEvent_t step_start[BACKEND_STEP_SLOTS], step_fwd_end[BACKEND_STEP_SLOTS]; /* forward */
    cudaEvent_t sample_start[BACKEND_STEP_SLOTS], step_end[BACKEND_STEP_SLOTS];   /* sampling */
    int32_t *next_tokens_dev;                  /* [max_seqs] the next-token table */
    int32_t *next_tokens_host;                 /* [max_seqs] pinned mirror (host path) */
    int32_t *sample_pairs;                     /* [cap_sample_pairs] host scratch for penalty sets */
    int64_t cap_sample_pairs;
    int32_t sample_max_vocab;                  /* kernels_sampling_max_vocab(), 0 = host path */
    int32_t sample_blocks;                     /* kernels_sampling's blocks_per_row (LIGHTLLM_SAMPLE_BLOCKS; 0 = auto) */
    void *sample_ws;                           /* its split-path workspace, sized for max_seqs rows */
    size_t sample_ws_bytes;
    float *sample_host;                        /* host path: logits [sample_capacity floats] */
    int64_t sample_capacity;
    host_sampler sampler;

    /* CUDA graphs of decode batches (cuda_graph.c): key = batch bucket x KV-length bucket */
    int graphs_enabled;                        /* LIGHTLLM_CUDA_GRAPHS=0 turns them off */
    int32_t graph_batches[CUDA_GRAPH_MAX_BUCKETS], num_graph_batches;
    int32_t graph_kv[CUDA_GRAPH_MAX_BUCKETS], num_graph_kv;
    cudaGraphExec_t *graph_exec;               /* [num_graph_batches * num_graph_kv], NULL until captured */
    uint8_t *graph_seen;                       /* the key ran eagerly once (warm-up before capture) */
    int64_t num_graph_captures;

    /* allocations made by upload_weight, freed by destroy; its pinned staging (cuda_weights.c) */
    void **owned;
    int64_t num_owned, cap_owned;
    void *staging[CUDA_WEIGHTS_STAGING_BUFFERS];
    cudaEvent_t staging_done[CUDA_WEIGHTS_STAGING_BUFFERS];
    int staging_next;
    struct threadpool *staging_pool;           /* fills a staging buffer in parallel (NULL: one thread) */
} cuda_backend;

static inline cuda_backend *cuda_backend_of(backend *b) { return (cuda_backend *)b; }

/* The backend's first error (STATUS_OK if none); re-records its message on this thread. */
status_t cuda_backend_status(backend *b);
/* Records a CUDA failure of `what` unless one is recorded already; returns 1 if e != success. */
int cuda_backend_check(cuda_backend *c, cudaError_t e, const char *what);
/* Records a failure with a ready message (first one wins). */
void cuda_backend_fail(cuda_backend *c, status_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* cudaMalloc with the out-of-memory message the user needs (requested vs free bytes). */
status_t cuda_backend_malloc(cuda_backend *c, size_t bytes, const char *what, void **out);
/* Records a device allocation freed by destroy. */
void cuda_backend_own(cuda_backend *c, void *p);

/* cuda_weights.c: backend_ops.upload_weight (pinned, overlapped staging); staging freed by
 * cuda_weights_free (at destroy). */
status_t cuda_weights_upload(backend *b, const tensor_t *parts, int32_t num_parts, int interleave, tensor_t *out);
void cuda_weights_free(cuda_backend *c);

/* cuda_sample.c: backend_ops.step_begin / sample / sample_wait; state made at create, the
 * next-token table at prepare, all freed at destroy. */
status_t cuda_sample_init(cuda_backend *c);
status_t cuda_sample_prepare(cuda_backend *c, int32_t max_seqs);
void cuda_step_begin(backend *b, int slot);
void cuda_step_forward_end(backend *b, int slot);
void cuda_sample(backend *b, int slot, float *logits, int32_t n, int32_t vocab, const backend_sample_row *rows);
void cuda_sample_wait(backend *b, int slot, int32_t n, sampling_result_t *out, double *device_seconds);
void cuda_sample_free(cuda_backend *c);

/* cuda_graph.c: backend_ops.graph_*; buckets made at prepare, graphs freed at destroy. */
void cuda_graph_prepare(cuda_backend *c, int32_t max_seqs, int32_t max_seq_len);
void cuda_graph_free(cuda_backend *c);
void cuda_graph_key_sizes(const cuda_backend *c, int32_t key, int32_t *rows, int32_t *kv_len);
int32_t cuda_graph_key(backend *b, const forward_batch *host);
int cuda_graph_run(backend *b, int32_t key);
int cuda_graph_begin(backend *b, int32_t key);
void cuda_graph_end(backend *b, int32_t key);

/* cuda_gemm.c: D[n, m] = X[n, k] · W[m, k]^T (+ bias[m], fp32, or NULL) in row-major terms, bf16
 * inputs, fp32 compute, bf16 or fp32 output: kernels_gemv for at most gemv_max_rows token rows,
 * else cuBLASLt (plans cached per shape).  Failures are recorded in the backend. */
status_t cuda_gemm_init(cuda_backend *c);
void cuda_gemm_free(cuda_backend *c);
void cuda_gemm_linear(cuda_backend *c, const void *x, const void *w, int64_t n, int64_t k, int64_t m, const float *bias,
                      void *y, int out_f32);
/* Whether a linear of this shape runs a fused GEMV epilogue (level 1 kernels_gemv_silu, 2
 * kernels_gemv_add_rmsnorm) rather than the GEMM + the elementwise kernel. */
int cuda_gemm_use_fused(cuda_backend *c, int level, const void *x, const void *w, int64_t n, int64_t k, int64_t m);

#endif
