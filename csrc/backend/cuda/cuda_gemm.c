/* cuda_gemm.c — the CUDA backend's linear layers: kernels_gemv (csrc/kernels/gemv.cu) for decode
 * batches of at most gemv_max_rows tokens, cuBLASLt for the rest.
 *
 * Row-major y[n, m] = x[n, k] · w[m, k]^T is, in cuBLAS's column-major terms, D(m×n) =
 * op(A)·B with A = w stored k×m (ld k, transposed: "TN"), B = x stored k×n (ld k), D = y
 * stored m×n (ld m).  bf16 A/B, fp32 compute and scale, D bf16 (activations) or fp32
 * (logits).  One matmul descriptor serves every shape; per (m, n, k, out dtype, alignment)
 * the layouts and the heuristic's first algorithm are cached in an open-addressing table of
 * inline opaque descriptors, so a repeated shape costs one hash probe and no allocation (a
 * new shape runs the heuristic once).
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_backend.h"
#include "core/log.h"
#include "kernels/kernels.h"

static int cuda_gemm_check(cuda_backend *c, cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    cuda_backend_fail(c, STATUS_DEVICE, "%s failed: %s", what, cublasLtGetStatusString(s));
    return 1;
}

status_t cuda_gemm_init(cuda_backend *c)
{
    if (cuda_gemm_check(c, cublasLtCreate(&c->lt), "cublasLtCreate")) return cuda_backend_status(&c->base);
    if (cuda_gemm_check(c, cublasLtMatmulPreferenceCreate(&c->pref), "cublasLtMatmulPreferenceCreate"))
        return cuda_backend_status(&c->base);
    const uint64_t ws = CUDA_GEMM_WORKSPACE_BYTES;
    const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
    cublasLtMatmulDesc_t desc = (cublasLtMatmulDesc_t)&c->matmul_desc;
    if (cuda_gemm_check(c, cublasLtMatmulPreferenceSetAttribute(c->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
                        "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)") ||
        cuda_gemm_check(c, cublasLtMatmulDescInit(desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescInit") ||
        cuda_gemm_check(c, cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a),
                        "cublasLtMatmulDescSetAttribute(TRANSA)") ||
        cuda_gemm_check(c, cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b),
                        "cublasLtMatmulDescSetAttribute(TRANSB)"))
        return cuda_backend_status(&c->base);
    const char *env = getenv("LIGHTLLM_GEMV_MAX_ROWS");
    c->gemv_max_rows = env && *env ? atoi(env) : CUDA_GEMV_DEFAULT_ROWS;
    if (c->gemv_max_rows < 0) c->gemv_max_rows = 0;
    if (c->gemv_max_rows > KERNELS_GEMV_MAX_ROWS) c->gemv_max_rows = KERNELS_GEMV_MAX_ROWS;
    const char *fuse = getenv("LIGHTLLM_GEMV_FUSE");
    c->gemv_fuse = fuse && *fuse ? atoi(fuse) : 1;
    const char *pdl = getenv("LIGHTLLM_PDL");
    kernels_set_pdl(pdl && *pdl ? atoi(pdl) : 1);
    if (cuda_backend_check(c, cudaMalloc((void **)&c->gemv_counter, 256), "cudaMalloc(gemv counter)") ||
        cuda_backend_check(c, cudaMemset(c->gemv_counter, 0, 256), "cudaMemset(gemv counter)"))
        return cuda_backend_status(&c->base);
    c->num_plan_slots = 256;
    c->plans = log_xcalloc((size_t)c->num_plan_slots, sizeof *c->plans);
    return STATUS_OK;
}

void cuda_gemm_free(cuda_backend *c)
{
    if (c->pref) cublasLtMatmulPreferenceDestroy(c->pref);
    if (c->lt) cublasLtDestroy(c->lt);
    free(c->plans);
    if (c->gemv_counter) cudaFree(c->gemv_counter);
    c->gemv_counter = NULL;
    c->pref = NULL;
    c->lt = NULL;
    c->plans = NULL;
}

static uint64_t cuda_gemm_hash(int64_t m, int64_t n, int64_t k, int out_f32, int align)
{
    uint64_t h = 1469598103934665603ull;
    const uint64_t parts[5] = {(uint64_t)m, (uint64_t)n, (uint64_t)k, (uint64_t)out_f32, (uint64_t)align};
    for (int i = 0; i < 5; i++) h = (h ^ parts[i]) * 1099511628211ull, h ^= h >> 29;
    return h;
}

static cuda_gemm_plan *cuda_gemm_slot(cuda_gemm_plan *table, int64_t num_slots, int64_t m, int64_t n, int64_t k,
                                      int out_f32, int align)
{
    for (uint64_t i = cuda_gemm_hash(m, n, k, out_f32, align);; i++) {
        cuda_gemm_plan *p = &table[i & (uint64_t)(num_slots - 1)];
        if (!p->used || (p->m == m && p->n == n && p->k == k && p->out_f32 == out_f32 && p->align_bytes == align)) return p;
    }
}

static void cuda_gemm_grow(cuda_backend *c)
{
    const int64_t slots = c->num_plan_slots * 2;
    cuda_gemm_plan *table = log_xcalloc((size_t)slots, sizeof *table);
    for (int64_t i = 0; i < c->num_plan_slots; i++) {
        const cuda_gemm_plan *p = &c->plans[i];
        if (p->used) *cuda_gemm_slot(table, slots, p->m, p->n, p->k, p->out_f32, p->align_bytes) = *p;
    }
    free(c->plans);
    c->plans = table;
    c->num_plan_slots = slots;
}

static int cuda_gemm_alignment(const void *p)
{
    const uintptr_t u = (uintptr_t)p;
    int a = 256;
    while (a > 1 && (u & (uintptr_t)(a - 1))) a >>= 1;
    return a;
}

/* Builds the plan for a new shape: layouts + the heuristic's best algorithm. */
static int cuda_gemm_plan_build(cuda_backend *c, cuda_gemm_plan *p)
{
    const uint32_t align = (uint32_t)p->align_bytes;
    static const cublasLtMatmulPreferenceAttributes_t attrs[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++)
        if (cuda_gemm_check(c, cublasLtMatmulPreferenceSetAttribute(c->pref, attrs[i], &align, sizeof align),
                            "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT)"))
            return 1;
    cublasLtMatrixLayout_t a = (cublasLtMatrixLayout_t)&p->a, b = (cublasLtMatrixLayout_t)&p->b,
                           d = (cublasLtMatrixLayout_t)&p->d;
    if (cuda_gemm_check(c, cublasLtMatrixLayoutInit(a, CUDA_R_16BF, (uint64_t)p->k, (uint64_t)p->m, p->k), "cublasLtMatrixLayoutInit(A)") ||
        cuda_gemm_check(c, cublasLtMatrixLayoutInit(b, CUDA_R_16BF, (uint64_t)p->k, (uint64_t)p->n, p->k), "cublasLtMatrixLayoutInit(B)") ||
        cuda_gemm_check(c, cublasLtMatrixLayoutInit(d, p->out_f32 ? CUDA_R_32F : CUDA_R_16BF, (uint64_t)p->m, (uint64_t)p->n, p->m),
                        "cublasLtMatrixLayoutInit(D)"))
        return 1;
    cublasLtMatmulHeuristicResult_t result;
    int returned = 0;
    if (cuda_gemm_check(c, cublasLtMatmulAlgoGetHeuristic(c->lt, (cublasLtMatmulDesc_t)&c->matmul_desc, a, b, d, d, c->pref,
                                                          1, &result, &returned),
                        "cublasLtMatmulAlgoGetHeuristic"))
        return 1;
    if (returned < 1) {
        cuda_backend_fail(c, STATUS_DEVICE, "cuBLASLt has no algorithm for a bf16 GEMM m=%lld n=%lld k=%lld (%s output, %u-byte alignment)",
                          (long long)p->m, (long long)p->n, (long long)p->k, p->out_f32 ? "fp32" : "bf16", align);
        return 1;
    }
    p->algo = result.algo;
    return 0;
}

/* Whether this linear runs kernels_gemv rather than cuBLASLt. */
static int cuda_gemm_use_gemv(const cuda_backend *c, const void *x, const void *w, int64_t n, int64_t k, int64_t m)
{
    return n <= c->gemv_max_rows && kernels_gemv_supported(x, w, (int32_t)n, m, k);
}

void cuda_gemm_linear(cuda_backend *c, const void *x, const void *w, int64_t n, int64_t k, int64_t m, const float *bias,
                      void *y, int out_f32)
{
    LL_ASSERT(!bias || !out_f32); /* the cuBLASLt path adds biases to bf16 outputs only */
    if (c->error != STATUS_OK || n <= 0) return;
    if (cuda_gemm_use_gemv(c, x, w, n, k, m)) {
        cuda_backend_check(c, kernels_gemv(x, w, (int32_t)n, m, k, bias, y, out_f32, c->stream), "kernels_gemv");
        return;
    }
    int align = cuda_gemm_alignment(x);
    const int aw = cuda_gemm_alignment(w), ay = cuda_gemm_alignment(y);
    if (aw < align) align = aw;
    if (ay < align) align = ay;
    cuda_gemm_plan *p = cuda_gemm_slot(c->plans, c->num_plan_slots, m, n, k, out_f32, align);
    if (!p->used) {
        if ((c->num_plans + 1) * 2 > c->num_plan_slots) {
            cuda_gemm_grow(c);
            p = cuda_gemm_slot(c->plans, c->num_plan_slots, m, n, k, out_f32, align);
        }
        cuda_gemm_plan fresh = {.m = m, .n = n, .k = k, .out_f32 = out_f32, .align_bytes = align};
        if (cuda_gemm_plan_build(c, &fresh)) return;
        fresh.used = 1;
        *p = fresh;
        c->num_plans++;
    }
    const float alpha = 1.0f, beta = 0.0f;
    cublasLtMatrixLayout_t a = (cublasLtMatrixLayout_t)&p->a, b = (cublasLtMatrixLayout_t)&p->b,
                           d = (cublasLtMatrixLayout_t)&p->d;
    cuda_gemm_check(c, cublasLtMatmul(c->lt, (cublasLtMatmulDesc_t)&c->matmul_desc, &alpha, w, a, x, b, &beta, y, d, y, d,
                                      &p->algo, c->gemm_workspace, CUDA_GEMM_WORKSPACE_BYTES, c->stream),
                    "cublasLtMatmul");
    /* A successful cublasLtMatmul may leave a non-sticky runtime error behind (from its own
     * internal probing); our launchers read cudaGetLastError after each launch, so clear it here
     * rather than let the next kernel report it as its own.  Sticky (device) errors persist. */
    (void)cudaGetLastError();
    if (bias && !out_f32) cuda_backend_check(c, kernels_add_bias(y, bias, (int32_t)n, (int32_t)m, c->stream), "kernels_add_bias");
}

int cuda_gemm_use_fused(cuda_backend *c, int level, const void *x, const void *w, int64_t n, int64_t k, int64_t m)
{
    return c->error == STATUS_OK && c->gemv_fuse >= level && cuda_gemm_use_gemv(c, x, w, n, k, m);
}
