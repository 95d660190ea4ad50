/* bench_kernels.c — per-kernel achieved bandwidth / FLOP rate of the CUDA backend's ops on a
 * model's shapes, each beside the ceilings measured in the same run: device-to-device copy
 * bandwidth (cudaMemcpy of 1 GiB) and the bf16 GEMM rate (cuBLASLt, 8192^3); last, read-only
 * streams of 1 GiB (benchmarks/bench_stream.cu), the bandwidth a weight-streaming GEMV could reach.
 *
 * Built and run by benchmarks/bench_kernels.py (which prints the table).  Output: one line per
 * measurement, "name<TAB>shape<TAB>impl<TAB>us<TAB>bytes<TAB>flops".
 *
 *   bench_kernels hidden inter heads kv_heads head_dim vocab
 *
 * Linear layers run at token rows 1 … 256 through kernels_gemv and through cuBLASLt (the
 * backend's gemv_max_rows switched per call); weights rotate over enough copies (≥ 4x the L2
 * size) that every call reads them from HBM.  Decode attention runs batch x context with each
 * sequence's KV in its own slot range.  Times are medians of cudaEvent-timed runs after warm-up.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "kernels/kernels.h"
#include "../tests/gpu/cuda_ok.h"

#define BENCH_REPS 25

static backend *g_be;
static cuda_backend *g_c;
static cudaEvent_t g_ev[2];
static size_t g_l2_bytes;

static void *bench_alloc(size_t bytes)
{
    void *p = NULL;
    if (g_be->ops->alloc(g_be, bytes, &p) != STATUS_OK) {
        fprintf(stderr, "alloc %zu: %s\n", bytes, status_message());
        exit(1);
    }
    CUDA_OK(cudaMemset(p, 0, bytes));
    return p;
}

/* bf16 values in [-scale, scale] (a cheap LCG: the values do not matter for timing, only that
 * they are finite and not all zero) */
static void *bench_bf16(int64_t n, float scale)
{
    uint16_t *h = malloc((size_t)n * 2);
    uint32_t s = 12345u;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        h[i] = dtype_f32_to_bf16(scale * ((float)(s >> 8) / 8388608.0f - 1.0f));
    }
    void *d = bench_alloc((size_t)n * 2);
    CUDA_OK(cudaMemcpy(d, h, (size_t)n * 2, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

static int bench_cmp(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef void (*bench_fn)(void *ctx, int rep);

/* Median microseconds of fn over BENCH_REPS timed calls (3 warm-up calls first). */
static double bench_time(bench_fn fn, void *ctx)
{
    float t[BENCH_REPS];
    for (int i = 0; i < 3; i++) fn(ctx, i);
    for (int i = 0; i < BENCH_REPS; i++) {
        CUDA_OK(cudaEventRecord(g_ev[0], g_c->stream));
        fn(ctx, i);
        CUDA_OK(cudaEventRecord(g_ev[1], g_c->stream));
        CUDA_OK(cudaEventSynchronize(g_ev[1]));
        CUDA_OK(cudaEventElapsedTime(&t[i], g_ev[0], g_ev[1]));
    }
    if (g_be->ops->last_error(g_be) != STATUS_OK) {
        fprintf(stderr, "backend error: %s\n", status_message());
        exit(1);
    }
    qsort(t, BENCH_REPS, sizeof t[0], bench_cmp);
    return 1e3 * t[BENCH_REPS / 2];
}

static void bench_emit(const char *name, const char *shape, const char *impl, double us, double bytes, double flops)
{
    printf("%s\t%s\t%s\t%.3f\t%.0f\t%.0f\n", name, shape, impl, us, bytes, flops);
    fflush(stdout);
}

/* ---- ceilings ---- */

typedef struct { void *a, *b; size_t bytes; } bench_copy_ctx;
static void bench_copy(void *ctx, int rep)
{
    bench_copy_ctx *c = ctx;
    CUDA_OK(cudaMemcpyAsync(c->b, c->a, c->bytes, cudaMemcpyDeviceToDevice, g_c->stream));
}

typedef struct { void *x, *w, *y; int64_t n, k, m; int copies; int out_f32; const float *bias; } bench_linear_ctx;
static void bench_linear(void *ctx, int rep)
{
    bench_linear_ctx *l = ctx;
    const size_t wbytes = (size_t)l->m * l->k * 2;
    cuda_gemm_linear(g_c, l->x, (char *)l->w + (size_t)(rep % l->copies) * wbytes, l->n, l->k, l->m, l->bias, l->y, l->out_f32);
}

/* the fused ops: linear_silu (gate|up) and linear_add_rmsnorm (o, down) through the backend */
typedef struct { bench_linear_ctx l; int norm; void *scratch, *residual; tensor_t norm_w; } bench_fused_ctx;
static void bench_fused(void *ctx, int rep)
{
    bench_fused_ctx *f = ctx;
    const size_t wbytes = (size_t)f->l.m * f->l.k * 2;
    tensor_t w = {.data = (char *)f->l.w + (size_t)(rep % f->l.copies) * wbytes, .dtype = DTYPE_BF16, .ndim = 2,
                  .shape = {f->l.m, f->l.k}};
    if (f->norm) g_be->ops->linear_add_rmsnorm(g_be, f->l.x, &w, (int32_t)f->l.n, f->residual, &f->norm_w, 1e-6f, f->l.y);
    else g_be->ops->linear_silu(g_be, f->l.x, &w, (int32_t)f->l.n, f->scratch, f->l.y);
}

static tensor_t bench_f32_weight(int64_t n);

static void bench_fused_ops(int64_t hidden, int64_t inter, int64_t q_dim)
{
    struct { const char *name; int64_t m, k; int norm; } ops[] = {
        {"linear_silu.gate_up", 2 * inter, hidden, 0}, {"linear_add_rmsnorm.o", hidden, q_dim, 1},
        {"linear_add_rmsnorm.down", hidden, inter, 1},
    };
    for (size_t oi = 0; oi < sizeof ops / sizeof ops[0]; oi++) {
        const int64_t m = ops[oi].m, k = ops[oi].k;
        const size_t wbytes = (size_t)m * k * 2;
        int copies = (int)((4 * g_l2_bytes + wbytes - 1) / wbytes);
        if (copies < 2) copies = 2;
        bench_fused_ctx f = {.l = {.k = k, .m = m, .copies = copies}, .norm = ops[oi].norm};
        f.l.w = bench_bf16((int64_t)(wbytes / 2) * copies, 0.05f);
        f.l.x = bench_bf16(8 * k, 1.0f);
        f.l.y = bench_alloc((size_t)8 * m * 2);
        f.scratch = bench_alloc((size_t)8 * m * 2);
        f.residual = bench_bf16(8 * m, 1.0f);
        f.norm_w = bench_f32_weight(m);
        for (int32_t n = 1; n <= CUDA_GEMV_DEFAULT_ROWS; n *= 2) {
            f.l.n = n;
            char shape[96];
            snprintf(shape, sizeof shape, "n=%d m=%lld k=%lld", n, (long long)m, (long long)k);
            const double bytes = (double)wbytes + 2.0 * n * k + 2.0 * n * m * (ops[oi].norm ? 3 : 0.5);
            for (int fused = 1; fused >= 0; fused--) {
                g_c->gemv_fuse = fused ? 2 : 0;
                bench_emit(ops[oi].name, shape, fused ? "fused" : "gemv+kernel", bench_time(bench_fused, &f), bytes,
                           2.0 * n * m * k);
            }
        }
        g_c->gemv_fuse = 1; /* the backend's default */
        void *bufs[] = {f.l.w, f.l.x, f.l.y, f.scratch, f.residual, f.norm_w.data};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) g_be->ops->release(g_be, bufs[i]);
    }
}

/* benchmarks/bench_stream.cu */
cudaError_t bench_stream_read(const void *p, size_t bytes, int variant, unsigned *sink, cudaStream_t st);
typedef struct { void *p; size_t bytes; int variant; unsigned *sink; } bench_read_ctx;
static void bench_read(void *ctx, int rep)
{
    bench_read_ctx *r = ctx;
    CUDA_OK(bench_stream_read(r->p, r->bytes, r->variant, r->sink, g_c->stream));
}

/* read-only streams of 1 GiB (last: the bulk-copy variant is the riskiest) */
static void bench_read_ceilings(void)
{
    bench_read_ctx rd = {.bytes = (size_t)1 << 30};
    rd.p = bench_alloc(rd.bytes);
    rd.sink = bench_alloc(256);
    for (rd.variant = 0; rd.variant < 2; rd.variant++)
        bench_emit("ceiling.read", "1GiB", rd.variant ? "bulk-tma" : "ld.nc", bench_time(bench_read, &rd), (double)rd.bytes, 0);
    g_be->ops->release(g_be, rd.p);
    g_be->ops->release(g_be, rd.sink);
}

static void bench_ceilings(void)
{
    bench_copy_ctx c = {.bytes = (size_t)1 << 30};
    c.a = bench_alloc(c.bytes);
    c.b = bench_alloc(c.bytes);
    bench_emit("ceiling.copy", "1GiB d2d", "cudaMemcpy", bench_time(bench_copy, &c), 2.0 * c.bytes, 0);
    g_be->ops->release(g_be, c.a);
    g_be->ops->release(g_be, c.b);
    const int64_t s = 8192;
    bench_linear_ctx l = {.n = s, .k = s, .m = s, .copies = 1};
    l.x = bench_bf16(s * s, 1.0f);
    l.w = bench_bf16(s * s, 1.0f);
    l.y = bench_alloc((size_t)s * s * 2);
    bench_emit("ceiling.gemm", "8192^3 bf16", "cuBLASLt", bench_time(bench_linear, &l), 0, 2.0 * s * s * s);
    g_be->ops->release(g_be, l.x);
    g_be->ops->release(g_be, l.w);
    g_be->ops->release(g_be, l.y);
}

/* ---- linear layers ---- */

static void bench_linears(int64_t hidden, int64_t inter, int64_t q_dim, int64_t kv_dim, int64_t vocab)
{
    struct { const char *name; int64_t m, k; int out_f32; } layers[] = {
        {"linear.qkv", q_dim + 2 * kv_dim, hidden, 0}, {"linear.o", hidden, q_dim, 0},
        {"linear.gate_up", 2 * inter, hidden, 0},     {"linear.down", hidden, inter, 0},
        {"linear.lm_head", vocab, hidden, 1},
    };
    static const int32_t rows[] = {1, 2, 4, 8, 16, 64, 256};
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        const int64_t m = layers[li].m, k = layers[li].k;
        const size_t wbytes = (size_t)m * k * 2;
        int copies = (int)((4 * g_l2_bytes + wbytes - 1) / wbytes);
        if (copies < 2) copies = 2;
        bench_linear_ctx l = {.k = k, .m = m, .copies = copies, .out_f32 = layers[li].out_f32};
        l.w = bench_bf16((int64_t)(wbytes / 2) * copies, 0.05f);
        l.x = bench_bf16(256 * k, 1.0f);
        l.y = bench_alloc((size_t)256 * m * 4);
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
            l.n = rows[ri];
            char shape[96];
            snprintf(shape, sizeof shape, "n=%lld m=%lld k=%lld", (long long)l.n, (long long)m, (long long)k);
            const double bytes = (double)wbytes + 2.0 * l.n * k + (layers[li].out_f32 ? 4.0 : 2.0) * l.n * m;
            const double flops = 2.0 * l.n * m * k;
            for (int impl = 0; impl < 2; impl++) {
                if (impl == 0 && l.n > KERNELS_GEMV_MAX_ROWS) continue;
                g_c->gemv_max_rows = impl == 0 ? KERNELS_GEMV_MAX_ROWS : 0;
                bench_emit(layers[li].name, shape, impl == 0 ? "gemv" : "cuBLASLt", bench_time(bench_linear, &l), bytes, flops);
            }
        }
        g_c->gemv_max_rows = CUDA_GEMV_DEFAULT_ROWS;
        g_be->ops->release(g_be, l.w);
        g_be->ops->release(g_be, l.x);
        g_be->ops->release(g_be, l.y);
    }
}

/* ---- row-wise ops ---- */

typedef struct {
    void *x, *res, *out, *gu, *qkv, *q, *pool;
    tensor_t norm_w, qn, kn;
    float *rope;
    int32_t n, hidden, inter;
    attention_shape shape;
    forward_batch batch;
} bench_rows_ctx;

static void bench_add_rmsnorm(void *ctx, int rep)
{
    bench_rows_ctx *r = ctx;
    g_be->ops->add_rmsnorm(g_be, r->res, r->x, &r->norm_w, 1e-6f, r->n, r->hidden, r->out);
}
static void bench_silu(void *ctx, int rep)
{
    bench_rows_ctx *r = ctx;
    g_be->ops->silu_mul(g_be, r->gu, r->n, r->inter, r->out);
}
static void bench_rope(void *ctx, int rep)
{
    bench_rows_ctx *r = ctx;
    g_be->ops->qk_norm_rope_store(g_be, r->qkv, &r->qn, &r->kn, 1e-6f, r->rope, &r->shape, &r->batch, r->q, r->pool);
}

static tensor_t bench_f32_weight(int64_t n)
{
    float *h = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) h[i] = 1.0f + 0.01f * (float)(i % 7);
    tensor_t t = {.data = h, .dtype = DTYPE_F32, .ndim = 1, .shape = {n}}, d;
    if (g_be->ops->upload_weight(g_be, &t, 1, 0, &d) != STATUS_OK) exit(1);
    free(h);
    return d;
}

/* Decode batch: num_seqs sequences of kv_len positions each, one new token each; sequence s owns
 * slots [s * kv_len, (s + 1) * kv_len). */
static forward_batch bench_decode_batch(int32_t num_seqs, int32_t kv_len, int32_t **host_arrays)
{
    int32_t *a = malloc(((size_t)6 * num_seqs + 2 + (size_t)num_seqs * kv_len) * sizeof(int32_t));
    *host_arrays = a;
    int32_t *ids = a, *pos = ids + num_seqs, *slots = pos + num_seqs, *seq = slots + num_seqs, *qs = seq + num_seqs,
            *ks = qs + num_seqs + 1, *kvs = ks + num_seqs + 1;
    for (int32_t s = 0; s < num_seqs; s++) {
        ids[s] = s, pos[s] = kv_len - 1, slots[s] = s * kv_len + kv_len - 1, seq[s] = s, qs[s] = s, ks[s] = s * kv_len;
        for (int32_t p = 0; p < kv_len; p++) kvs[(int64_t)s * kv_len + p] = s * kv_len + p;
    }
    qs[num_seqs] = num_seqs;
    ks[num_seqs] = num_seqs * kv_len;
    forward_batch hb = {.num_tokens = num_seqs, .token_ids = ids, .positions = pos, .slots = slots, .token_seq = seq,
                        .num_seqs = num_seqs, .q_start = qs, .kv_start = ks, .kv_slots = kvs, .max_q_len = 1,
                        .max_kv_len = kv_len, .num_logits = num_seqs, .logit_tokens = ids},
                  db;
    g_be->ops->upload_batch(g_be, &hb, &db);
    CUDA_OK(cudaStreamSynchronize(g_c->stream));
    return db;
}

typedef struct { void *q, *pool, *out; attention_shape shape; forward_batch batch; } bench_attn_ctx;
static void bench_attention(void *ctx, int rep)
{
    bench_attn_ctx *a = ctx;
    g_be->ops->attention(g_be, a->q, a->pool, &a->shape, &a->batch, a->out);
}

static void bench_row_ops(int32_t hidden, int32_t inter, int32_t heads, int32_t kv_heads, int32_t head_dim)
{
    static const int32_t rows[] = {1, 64, 256};
    bench_rows_ctx r = {.hidden = hidden, .inter = inter,
                        .shape = {.num_heads = heads, .num_kv_heads = kv_heads, .head_dim = head_dim,
                                  .scale = 1.0f / sqrtf((float)head_dim)}};
    const int64_t width = (int64_t)(heads + 2 * kv_heads) * head_dim;
    r.x = bench_bf16(256 * (int64_t)hidden, 1.0f);
    r.res = bench_bf16(256 * (int64_t)hidden, 1.0f);
    r.out = bench_alloc((size_t)256 * inter * 2);
    r.gu = bench_bf16(256 * 2 * (int64_t)inter, 1.0f);
    r.qkv = bench_bf16(256 * width, 1.0f);
    r.q = bench_alloc((size_t)256 * heads * head_dim * 2);
    r.pool = bench_alloc((size_t)256 * 2 * kv_heads * head_dim * 2);
    r.norm_w = bench_f32_weight(hidden);
    r.qn = bench_f32_weight(head_dim);
    r.kn = bench_f32_weight(head_dim);
    r.rope = bench_alloc((size_t)256 * head_dim * 4);
    for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
        r.n = rows[ri];
        char shape[96];
        snprintf(shape, sizeof shape, "n=%d dim=%d", r.n, hidden);
        bench_emit("add_rmsnorm", shape, "kernel", bench_time(bench_add_rmsnorm, &r), 2.0 * r.n * hidden * 4 + 4.0 * hidden, 0);
        snprintf(shape, sizeof shape, "n=%d dim=%d", r.n, inter);
        bench_emit("silu_mul", shape, "kernel", bench_time(bench_silu, &r), 2.0 * r.n * inter * 3, 0);
        int32_t *host;
        r.batch = bench_decode_batch(r.n, 1, &host);
        snprintf(shape, sizeof shape, "n=%d heads=%d/%d d=%d", r.n, heads, kv_heads, head_dim);
        bench_emit("qk_norm_rope_store", shape, "kernel", bench_time(bench_rope, &r),
                   2.0 * r.n * (width + (double)(heads + 2 * kv_heads) * head_dim) + 4.0 * r.n * head_dim, 0);
        free(host);
    }
    void *bufs[] = {r.x, r.res, r.out, r.gu, r.qkv, r.q, r.pool, r.norm_w.data, r.qn.data, r.kn.data, r.rope};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) g_be->ops->release(g_be, bufs[i]);

    /* decode attention: batch x context */
    static const struct { int32_t batch, ctx; } att[] = {{1, 1024}, {1, 4096}, {16, 4096}, {64, 1024}, {64, 4096}, {256, 1024}};
    for (size_t ai = 0; ai < sizeof att / sizeof att[0]; ai++) {
        bench_attn_ctx a = {.shape = r.shape};
        const int64_t slots = (int64_t)att[ai].batch * att[ai].ctx;
        a.q = bench_bf16((int64_t)att[ai].batch * heads * head_dim, 1.0f);
        a.pool = bench_bf16(slots * 2 * kv_heads * head_dim, 1.0f);
        a.out = bench_alloc((size_t)att[ai].batch * heads * head_dim * 2);
        int32_t *host;
        a.batch = bench_decode_batch(att[ai].batch, att[ai].ctx, &host);
        char shape[96];
        snprintf(shape, sizeof shape, "batch=%d ctx=%d heads=%d/%d d=%d", att[ai].batch, att[ai].ctx, heads, kv_heads, head_dim);
        const double bytes = (double)slots * 2 * kv_heads * head_dim * 2 + 4.0 * att[ai].batch * heads * head_dim + 4.0 * slots;
        bench_emit("attention.decode", shape, "kernel", bench_time(bench_attention, &a), bytes,
                   4.0 * slots * heads * head_dim);
        free(host);
        g_be->ops->release(g_be, a.q);
        g_be->ops->release(g_be, a.pool);
        g_be->ops->release(g_be, a.out);
    }
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s hidden inter heads kv_heads head_dim vocab\n", argv[0]);
        return 2;
    }
    const int32_t hidden = atoi(argv[1]), inter = atoi(argv[2]), heads = atoi(argv[3]), kv_heads = atoi(argv[4]),
                  head_dim = atoi(argv[5]), vocab = atoi(argv[6]);
    if (backend_cuda_device_count() <= 0 || backend_cuda_create(0, &g_be) != STATUS_OK) {
        fprintf(stderr, "no CUDA backend: %s\n", status_message());
        return 77;
    }
    g_c = cuda_backend_of(g_be);
    if (g_be->ops->prepare(g_be, 256, 256, (int64_t)256 * 4096, 4096, heads, head_dim) != STATUS_OK) {
        fprintf(stderr, "prepare: %s\n", status_message());
        return 1;
    }
    int l2 = 0;
    CUDA_OK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    g_l2_bytes = (size_t)l2;
    CUDA_OK(cudaEventCreate(&g_ev[0]));
    CUDA_OK(cudaEventCreate(&g_ev[1]));
    bench_ceilings();
    bench_linears(hidden, inter, (int64_t)heads * head_dim, (int64_t)kv_heads * head_dim, vocab);
    bench_fused_ops(hidden, inter, (int64_t)heads * head_dim);
    bench_row_ops(hidden, inter, heads, kv_heads, head_dim);
    bench_read_ceilings();
    g_be->ops->destroy(g_be);
    return 0;
}
