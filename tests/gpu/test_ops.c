/* test_ops.c — the CUDA backend's ops against the CPU backend (the reference), op by op.
 *
 * For each op and each shape: draw random inputs (never zeros), round them to bf16 so both
 * backends see the same values, poison every output (NaN bits) on both sides, run the CPU op
 * and the CUDA op, and compare by normalised error max|gpu - cpu| / max|cpu| (relative
 * Frobenius norm for the GEMMs).  Any NaN left in an output (an unwritten element) fails.
 * Sizes are odd on purpose: tokens 1, 7, 19, 99, 989; dims 64, 903, 4096; head_dim 64/128;
 * GQA ratios 1, 4, 8.
 *
 * usage: test_ops [group ...]   (no group: all).  Exit 0 = pass, 1 = failure, 77 = no GPU.
 * Built and run by tests/gpu/test_gpu_ops.py.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "cuda_ok.h"

static int g_failures, g_checks;
static backend *g_cpu, *g_gpu;
static uint64_t g_rng = 0x1234abcdull;

static const int32_t TOKENS[] = {1, 7, 19, 99, 989};
#define NUM_TOKENS_CASES ((int)(sizeof TOKENS / sizeof TOKENS[0]))
#define MAX_TOKENS 1024
#define MAX_SEQ_LEN 4096


static void backend_ok(const char *where)
{
    status_t s = g_gpu->ops->last_error(g_gpu);
    if (s != STATUS_OK) {
        fprintf(stderr, "%s: CUDA backend error %s: %s\n", where, status_name(s), status_message());
        exit(1);
    }
    CUDA_OK(cudaDeviceSynchronize());
}

static uint64_t rng_next(void)
{
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rng_uniform(void) { return (float)((rng_next() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
static int32_t rng_int(int32_t n) { return (int32_t)(rng_next() % (uint64_t)n); }

static float round_bf16(float f) { return dtype_bf16_to_f32(dtype_f32_to_bf16(f)); }

/* n floats: offset + scale * U(-1, 1), rounded to bf16 */
static float *rand_floats(int64_t n, float offset, float scale)
{
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = round_bf16(offset + scale * rng_uniform());
    return p;
}

static float *nan_floats(int64_t n)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

static void *gpu_alloc(size_t bytes)
{
    void *p = NULL;
    if (g_gpu->ops->alloc(g_gpu, bytes, &p) != STATUS_OK) {
        fprintf(stderr, "gpu alloc %zu: %s\n", bytes, status_message());
        exit(1);
    }
    return p;
}

static void gpu_poison(void *p, size_t bytes)
{
    CUDA_OK(cudaMemset(p, 0xff, bytes)); /* 0xffff bf16 and 0xffffffff fp32 are NaN */
    CUDA_OK(cudaDeviceSynchronize());
}

/* bf16 device copy of n floats */
static void *gpu_bf16(const float *h, int64_t n)
{
    uint16_t *tmp = malloc((size_t)(n ? n : 1) * 2);
    for (int64_t i = 0; i < n; i++) tmp[i] = dtype_f32_to_bf16(h[i]);
    void *d = gpu_alloc((size_t)n * 2);
    g_gpu->ops->copy_to_device(g_gpu, d, tmp, (size_t)n * 2);
    free(tmp);
    return d;
}

static void *gpu_raw(const void *h, size_t bytes)
{
    void *d = gpu_alloc(bytes);
    g_gpu->ops->copy_to_device(g_gpu, d, h, bytes);
    return d;
}

static float *host_from_bf16(const void *d, int64_t n)
{
    backend_ok("before readback");
    uint16_t *tmp = malloc((size_t)(n ? n : 1) * 2);
    CUDA_OK(cudaMemcpy(tmp, d, (size_t)n * 2, cudaMemcpyDeviceToHost));
    float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) h[i] = dtype_bf16_to_f32(tmp[i]);
    free(tmp);
    return h;
}

static float *host_from_f32(const void *d, int64_t n)
{
    backend_ok("before readback");
    float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
    CUDA_OK(cudaMemcpy(h, d, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
}

/* max|a-b| / max|b| (frobenius = 0) or ||a-b|| / ||b|| (frobenius = 1); NaN anywhere = inf */
static double rel_err(const float *gpu, const float *cpu, int64_t n, int frobenius)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(gpu[i]) || isnan(cpu[i])) return INFINITY;
        const double d = fabs((double)gpu[i] - cpu[i]);
        if (frobenius) {
            num += d * d;
            den += (double)cpu[i] * cpu[i];
        } else {
            if (d > num) num = d;
            if (fabs(cpu[i]) > den) den = fabs(cpu[i]);
        }
    }
    if (frobenius) {
        num = sqrt(num);
        den = sqrt(den);
    }
    return den > 0 ? num / den : num;
}

static void report(const char *op, const char *shape, double err, double tol)
{
    const int ok = err <= tol;
    g_checks++;
    if (!ok) g_failures++;
    printf("%-20s %-46s err=%.3e tol=%.0e %s\n", op, shape, err, tol, ok ? "ok" : "FAIL");
    fflush(stdout);
}

static tensor_t host_tensor2(float *f, int64_t rows, int64_t cols, uint16_t **bf16_out)
{
    uint16_t *b = malloc((size_t)(rows * cols) * 2);
    for (int64_t i = 0; i < rows * cols; i++) b[i] = dtype_f32_to_bf16(f[i]);
    *bf16_out = b;
    return (tensor_t){.data = b, .dtype = DTYPE_BF16, .ndim = 2, .shape = {rows, cols}};
}

static tensor_t host_tensor1(float *f, int64_t n) { return (tensor_t){.data = f, .dtype = DTYPE_F32, .ndim = 1, .shape = {n}}; }

static tensor_t upload(const tensor_t *h)
{
    tensor_t d;
    if (g_gpu->ops->upload_weight(g_gpu, h, 1, 0, &d) != STATUS_OK) {
        fprintf(stderr, "upload_weight: %s\n", status_message());
        exit(1);
    }
    return d;
}

/* A one-sequence batch of n tokens whose token_ids / logit_tokens are `ids` (device copy via upload_batch). */
static forward_batch make_batch(int32_t n, int32_t *ids, int32_t *positions, int32_t *slots, int32_t *token_seq,
                                int32_t *q_start, int32_t *kv_start, int32_t *kv_slots)
{
    for (int32_t i = 0; i < n; i++) token_seq[i] = 0;
    q_start[0] = 0;
    q_start[1] = n;
    kv_start[0] = 0;
    kv_start[1] = n;
    for (int32_t i = 0; i < n; i++) kv_slots[i] = slots[i];
    return (forward_batch){.num_tokens = n, .token_ids = ids, .positions = positions, .slots = slots, .token_seq = token_seq,
                           .num_seqs = 1, .q_start = q_start, .kv_start = kv_start, .kv_slots = kv_slots,
                           .max_q_len = n, .max_kv_len = n, .num_logits = n, .logit_tokens = ids};
}

/* ---- row copies: embedding, gather_rows (indices through upload_batch) ---- */

static void test_rows(int gather)
{
    const int32_t dims[] = {64, 903, 4096};
    const int32_t rows = 1000;
    for (size_t di = 0; di < 3; di++) {
        const int32_t dim = dims[di];
        float *table = rand_floats((int64_t)rows * dim, 0, 1);
        uint16_t *tb;
        tensor_t th = host_tensor2(table, rows, dim, &tb);
        tensor_t td = upload(&th);
        for (int ti = 0; ti < NUM_TOKENS_CASES; ti++) {
            const int32_t n = TOKENS[ti];
            int32_t ids[MAX_TOKENS], pos[MAX_TOKENS], slots[MAX_TOKENS], seq[MAX_TOKENS], qs[2], ks[2], kvs[MAX_TOKENS];
            for (int32_t i = 0; i < n; i++) ids[i] = rng_int(rows), pos[i] = i, slots[i] = i;
            forward_batch hb = make_batch(n, ids, pos, slots, seq, qs, ks, kvs), db;
            g_gpu->ops->upload_batch(g_gpu, &hb, &db);
            float *cpu_out = nan_floats((int64_t)n * dim);
            void *gpu_out = gpu_alloc((size_t)n * dim * 2);
            gpu_poison(gpu_out, (size_t)n * dim * 2);
            if (gather) {
                g_cpu->ops->gather_rows(g_cpu, table, ids, n, dim, cpu_out);
                g_gpu->ops->gather_rows(g_gpu, td.data, db.logit_tokens, n, dim, gpu_out);
            } else {
                g_cpu->ops->embedding(g_cpu, &th, ids, n, cpu_out);
                g_gpu->ops->embedding(g_gpu, &td, db.token_ids, n, gpu_out);
            }
            float *got = host_from_bf16(gpu_out, (int64_t)n * dim);
            char shape[96];
            snprintf(shape, sizeof shape, "n=%d dim=%d rows=%d", n, dim, rows);
            report(gather ? "gather_rows" : "embedding", shape, rel_err(got, cpu_out, (int64_t)n * dim, 0), 0.0);
            free(got);
            free(cpu_out);
            g_gpu->ops->release(g_gpu, gpu_out);
        }
        free(table);
        free(tb);
    }
}

/* ---- rmsnorm / add_rmsnorm ---- */

static void test_norm(int add)
{
    const int32_t dims[] = {64, 903, 4096};
    const float eps = 1e-6f;
    for (size_t di = 0; di < 3; di++) {
        const int32_t dim = dims[di];
        float *w = rand_floats(dim, 1.0f, 0.2f);
        tensor_t wh = host_tensor1(w, dim), wd = upload(&wh);
        for (int ti = 0; ti < NUM_TOKENS_CASES; ti++) {
            for (int alias = 0; alias <= add; alias++) { /* add_rmsnorm: out separate, then out == x (as llama.c) */
                const int32_t n = TOKENS[ti];
                const int64_t count = (int64_t)n * dim;
                float *x = rand_floats(count, 0.1f, 2.0f), *res = rand_floats(count, 0, 3.0f);
                void *gx = gpu_bf16(x, count), *gres = gpu_bf16(res, count);
                float *cpu_out = nan_floats(count);
                void *gout = alias ? gx : gpu_alloc((size_t)count * 2);
                if (!alias) gpu_poison(gout, (size_t)count * 2);
                char shape[96];
                snprintf(shape, sizeof shape, "n=%d dim=%d%s", n, dim, alias ? " out=x" : "");
                if (add) {
                    g_cpu->ops->add_rmsnorm(g_cpu, res, x, &wh, eps, n, dim, cpu_out);
                    g_gpu->ops->add_rmsnorm(g_gpu, gres, gx, &wd, eps, n, dim, gout);
                    float *got_res = host_from_bf16(gres, count);
                    report("add_rmsnorm.resid", shape, rel_err(got_res, res, count, 0), 8e-3);
                    free(got_res);
                } else {
                    g_cpu->ops->rmsnorm(g_cpu, x, &wh, eps, n, dim, cpu_out);
                    g_gpu->ops->rmsnorm(g_gpu, gx, &wd, eps, n, dim, gout);
                }
                float *got = host_from_bf16(gout, count);
                report(add ? "add_rmsnorm" : "rmsnorm", shape, rel_err(got, cpu_out, count, 0), 2e-2);
                free(got);
                free(cpu_out);
                free(x);
                free(res);
                if (!alias) g_gpu->ops->release(g_gpu, gout);
                g_gpu->ops->release(g_gpu, gx);
                g_gpu->ops->release(g_gpu, gres);
            }
        }
        free(w);
    }
}

/* ---- silu_mul ---- */

static void test_silu_mul(void)
{
    const int32_t dims[] = {64, 903, 4864};
    for (size_t di = 0; di < 3; di++) {
        for (int ti = 0; ti < NUM_TOKENS_CASES; ti++) {
            const int32_t n = TOKENS[ti], dim = dims[di];
            const int64_t count = (int64_t)n * dim;
            float *gu = malloc((size_t)count * 2 * sizeof(float)), *cpu_out = nan_floats(count);
            for (int64_t i = 0; i < count; i++) { /* (gate, up) pairs: gate in [-6, 6], up in [-2, 2] */
                gu[2 * i] = round_bf16(6.0f * rng_uniform());
                gu[2 * i + 1] = round_bf16(2.0f * rng_uniform());
            }
            void *ggu = gpu_bf16(gu, 2 * count), *gout = gpu_alloc((size_t)count * 2);
            gpu_poison(gout, (size_t)count * 2);
            g_cpu->ops->silu_mul(g_cpu, gu, n, dim, cpu_out);
            g_gpu->ops->silu_mul(g_gpu, ggu, n, dim, gout);
            float *got = host_from_bf16(gout, count);
            char shape[96];
            snprintf(shape, sizeof shape, "n=%d dim=%d", n, dim);
            report("silu_mul", shape, rel_err(got, cpu_out, count, 0), 2e-2);
            free(got);
            free(gu);
            free(cpu_out);
            g_gpu->ops->release(g_gpu, gout);
            g_gpu->ops->release(g_gpu, ggu);
        }
    }
}

/* ---- linear / linear_logits (kernels_gemv for 1..8 token rows, cuBLASLt above; in = 903 is not a
 * multiple of 8: cuBLASLt at every n).  The {896, 136} weight is uploaded in two parts (rows 100 +
 * 36, as q|k|v are) on both backends. ---- */

static const int32_t LINEAR_TOKENS[] = {1, 2, 3, 4, 5, 7, 8, 9, 19, 99, 989};

static void test_linear(int logits)
{
    struct { int32_t in, out; int bias; dtype_t src; } shapes[] = {
        {64, 64, 0, DTYPE_BF16}, {896, 136, 1, DTYPE_BF16}, {903, 1031, 1, DTYPE_F32}, {4096, 1024, 0, DTYPE_F16},
        {1024, 4096, 0, DTYPE_BF16}, {4096, 6144, 1, DTYPE_BF16},
    };
    struct { int32_t in, out; } logit_shapes[] = {{64, 1000}, {896, 5003}, {2048, 32000}};
    const int num = logits ? 3 : 6;
    for (int si = 0; si < num; si++) {
        const int32_t in = logits ? logit_shapes[si].in : shapes[si].in, out = logits ? logit_shapes[si].out : shapes[si].out;
        const int has_bias = logits ? 0 : shapes[si].bias;
        const dtype_t src = logits ? DTYPE_BF16 : shapes[si].src;
        float *w = rand_floats((int64_t)out * in, 0, 0.05f);
        /* the host weight in its checkpoint dtype: both backends read the same values */
        void *wsrc = NULL;
        if (src == DTYPE_F32) {
            wsrc = w;
        } else {
            uint16_t *p = malloc((size_t)out * in * 2);
            for (int64_t i = 0; i < (int64_t)out * in; i++) {
                if (src == DTYPE_BF16) {
                    p[i] = dtype_f32_to_bf16(w[i]);
                } else { /* f16: w is a bf16 value, exactly representable in f16 when |w| in range */
                    const float f = w[i];
                    uint32_t u;
                    memcpy(&u, &f, 4);
                    const uint32_t sign = (u >> 16) & 0x8000u;
                    const int exp = (int)((u >> 23) & 0xff) - 127 + 15;
                    uint16_t h;
                    if (f == 0.0f || exp <= 0) h = (uint16_t)sign; /* flush tiny values to zero */
                    else h = (uint16_t)(sign | ((uint32_t)exp << 10) | ((u >> 13) & 0x3ffu));
                    p[i] = h;
                    w[i] = dtype_f16_to_f32(h);
                }
            }
            wsrc = p;
        }
        tensor_t wh = {.data = wsrc, .dtype = src, .ndim = 2, .shape = {out, in}}, wd;
        if (!logits && si == 1) { /* two parts: rows [0, 100) and [100, 136) */
            tensor_t parts[2] = {wh, wh};
            parts[0].shape[0] = 100;
            parts[1].shape[0] = out - 100;
            parts[1].data = (char *)wsrc + (size_t)100 * in * dtype_size(src);
            if (g_cpu->ops->upload_weight(g_cpu, parts, 2, 0, &wh) != STATUS_OK ||
                g_gpu->ops->upload_weight(g_gpu, parts, 2, 0, &wd) != STATUS_OK) {
                fprintf(stderr, "upload_weight (2 parts): %s\n", status_message());
                exit(1);
            }
            if (wh.shape[0] != out || wd.shape[0] != out) {
                fprintf(stderr, "upload_weight (2 parts): %lld / %lld rows, want %d\n", (long long)wh.shape[0],
                        (long long)wd.shape[0], out);
                exit(1);
            }
        } else {
            wd = upload(&wh);
        }
        float *bias = rand_floats(out, 0, 0.5f);
        tensor_t bh = host_tensor1(bias, out), bd = upload(&bh), none = {0};
        for (size_t ti = 0; ti < sizeof LINEAR_TOKENS / sizeof LINEAR_TOKENS[0]; ti++) {
            const int32_t n = LINEAR_TOKENS[ti];
            if (logits && n > 99) continue;
            float *x = rand_floats((int64_t)n * in, 0, 1.0f), *cpu_out = nan_floats((int64_t)n * out);
            void *gx = gpu_bf16(x, (int64_t)n * in);
            const size_t ybytes = (size_t)n * out * (logits ? 4 : 2);
            void *gy = gpu_alloc(ybytes);
            gpu_poison(gy, ybytes);
            float *got;
            if (logits) {
                g_cpu->ops->linear_logits(g_cpu, x, &wh, n, cpu_out);
                g_gpu->ops->linear_logits(g_gpu, gx, &wd, n, gy);
                got = host_from_f32(gy, (int64_t)n * out);
            } else {
                g_cpu->ops->linear(g_cpu, x, &wh, has_bias ? &bh : &none, n, cpu_out);
                g_gpu->ops->linear(g_gpu, gx, &wd, has_bias ? &bd : &none, n, gy);
                got = host_from_bf16(gy, (int64_t)n * out);
            }
            char shape[96];
            snprintf(shape, sizeof shape, "n=%d in=%d out=%d%s w=%s", n, in, out, has_bias ? " +bias" : "", dtype_name(src));
            report(logits ? "linear_logits" : "linear", shape, rel_err(got, cpu_out, (int64_t)n * out, 1), logits ? 2e-3 : 1e-2);
            free(got);
            free(x);
            free(cpu_out);
            g_gpu->ops->release(g_gpu, gx);
            g_gpu->ops->release(g_gpu, gy);
        }
        if (wsrc != w) free(wsrc);
        free(w);
        free(bias);
    }
}

/* ---- linear_silu / linear_add_rmsnorm (fused GEMV epilogues at <= 4 rows, GEMM + kernel above;
 * in = 903: never the GEMV).  The gate|up weight is uploaded as two row-interleaved parts on both
 * backends. ---- */

static void test_linear_fused(int norm)
{
    struct { int32_t in, out; } shapes[] = {{896, 2048}, {4096, 6000}, {903, 512}, {4096, 4096}};
    const float eps = 1e-6f;
    for (int si = 0; si < 4; si++) {
        const int32_t in = shapes[si].in, out = shapes[si].out, dim = norm ? out : out / 2;
        float *w = rand_floats((int64_t)out * in, 0, 0.05f);
        uint16_t *wb;
        tensor_t wh = host_tensor2(w, out, in, &wb), wc, wd;
        if (norm) {
            wc = wh;
            wd = upload(&wh);
        } else { /* parts: gate rows [0, dim), up rows [dim, out) of wb, interleaved on upload */
            tensor_t parts[2] = {wh, wh};
            parts[0].shape[0] = parts[1].shape[0] = dim;
            parts[1].data = wb + (size_t)dim * in;
            if (g_cpu->ops->upload_weight(g_cpu, parts, 2, 1, &wc) != STATUS_OK ||
                g_gpu->ops->upload_weight(g_gpu, parts, 2, 1, &wd) != STATUS_OK) {
                fprintf(stderr, "upload_weight (interleaved): %s\n", status_message());
                exit(1);
            }
        }
        float *nw = rand_floats(out, 1.0f, 0.2f);
        tensor_t nwh = host_tensor1(nw, out), nwd = upload(&nwh);
        for (size_t ti = 0; ti < sizeof LINEAR_TOKENS / sizeof LINEAR_TOKENS[0]; ti++) {
            const int32_t n = LINEAR_TOKENS[ti];
            if (n > 99) continue;
            float *x = rand_floats((int64_t)n * in, 0, 1.0f), *res = rand_floats((int64_t)n * out, 0, 2.0f);
            float *scratch = nan_floats((int64_t)n * out), *cpu_out = nan_floats((int64_t)n * dim);
            void *gx = gpu_bf16(x, (int64_t)n * in), *gres = gpu_bf16(res, (int64_t)n * out);
            void *gscratch = gpu_alloc((size_t)n * out * 2), *gout = gpu_alloc((size_t)n * dim * 2);
            gpu_poison(gscratch, (size_t)n * out * 2);
            gpu_poison(gout, (size_t)n * dim * 2);
            char shape[96];
            snprintf(shape, sizeof shape, "n=%d in=%d out=%d", n, in, out);
            if (norm) {
                cuda_backend_of(g_gpu)->gemv_fuse = 2; /* the fused tail is opt-in: test it */
                g_cpu->ops->linear_add_rmsnorm(g_cpu, x, &wc, n, res, &nwh, eps, cpu_out);
                g_gpu->ops->linear_add_rmsnorm(g_gpu, gx, &wd, n, gres, &nwd, eps, gout);
                float *got_res = host_from_bf16(gres, (int64_t)n * out);
                report("linear_add_rmsnorm.resid", shape, rel_err(got_res, res, (int64_t)n * out, 0), 1.5e-2);
                free(got_res);
            } else {
                g_cpu->ops->linear_silu(g_cpu, x, &wc, n, scratch, cpu_out);
                g_gpu->ops->linear_silu(g_gpu, gx, &wd, n, gscratch, gout);
            }
            float *got = host_from_bf16(gout, (int64_t)n * dim);
            report(norm ? "linear_add_rmsnorm" : "linear_silu", shape, rel_err(got, cpu_out, (int64_t)n * dim, 1), 2e-2);
            free(got);
            free(x);
            free(res);
            free(scratch);
            free(cpu_out);
            g_gpu->ops->release(g_gpu, gx);
            g_gpu->ops->release(g_gpu, gres);
            g_gpu->ops->release(g_gpu, gscratch);
            g_gpu->ops->release(g_gpu, gout);
        }
        free(w);
        free(wb);
        free(nw);
    }
}

/* ---- qk_norm_rope_store ---- */

static void test_rope(void)
{
    struct { int32_t d, hq, hk; } shapes[] = {{64, 8, 8}, {64, 16, 4}, {128, 32, 4}, {128, 8, 1}, {128, 16, 16}};
    const float eps = 1e-6f;
    const int32_t max_pos = 2048;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int32_t d = shapes[si].d, hq = shapes[si].hq, hk = shapes[si].hk, half = d / 2;
        float *table = malloc((size_t)max_pos * d * sizeof(float));
        for (int32_t p = 0; p < max_pos; p++)
            for (int32_t i = 0; i < half; i++) {
                const double ang = p * pow(1000000.0, -2.0 * i / d);
                table[(int64_t)p * d + i] = (float)cos(ang);
                table[(int64_t)p * d + half + i] = (float)sin(ang);
            }
        float *gtable = gpu_raw(table, (size_t)max_pos * d * sizeof(float));
        float *qw = rand_floats(d, 1.0f, 0.3f), *kw = rand_floats(d, 1.0f, 0.3f);
        tensor_t qwh = host_tensor1(qw, d), kwh = host_tensor1(kw, d), qwd = upload(&qwh), kwd = upload(&kwh), none = {0};
        for (int ti = 0; ti < NUM_TOKENS_CASES; ti++) {
            for (int norm = 0; norm <= 1; norm++) {
                const int32_t n = TOKENS[ti], num_slots = n + 37;
                const attention_shape shape = {.num_heads = hq, .num_kv_heads = hk, .head_dim = d, .scale = 1.0f / sqrtf((float)d)};
                int32_t ids[MAX_TOKENS], pos[MAX_TOKENS], slots[MAX_TOKENS], seq[MAX_TOKENS], qs[2], ks[2], kvs[MAX_TOKENS];
                int32_t perm[MAX_TOKENS + 64];
                for (int32_t i = 0; i < num_slots; i++) perm[i] = i;
                for (int32_t i = num_slots - 1; i > 0; i--) {
                    const int32_t j = rng_int(i + 1), t = perm[i];
                    perm[i] = perm[j];
                    perm[j] = t;
                }
                for (int32_t i = 0; i < n; i++) ids[i] = 0, pos[i] = rng_int(max_pos), slots[i] = perm[i];
                forward_batch hb = make_batch(n, ids, pos, slots, seq, qs, ks, kvs), db;
                g_gpu->ops->upload_batch(g_gpu, &hb, &db);
                const int64_t nq = (int64_t)n * hq * d, npool = (int64_t)num_slots * 2 * hk * d;
                /* qkv rows: q heads (values in [-3, 3]), k heads ([-3, 3]), v heads ([-1, 1]) */
                const int64_t width = (int64_t)(hq + 2 * hk) * d, nqkv = (int64_t)n * width;
                float *qkv = malloc((size_t)nqkv * sizeof(float));
                for (int64_t i = 0; i < nqkv; i++) qkv[i] = round_bf16((i % width < (int64_t)(hq + hk) * d ? 3.0f : 1.0f) * rng_uniform());
                void *gqkv = gpu_bf16(qkv, nqkv), *gq = gpu_alloc((size_t)nq * 2);
                gpu_poison(gq, (size_t)nq * 2);
                float *q = nan_floats(nq), *pool = nan_floats(npool);
                void *gpool = gpu_alloc((size_t)npool * 2);
                gpu_poison(gpool, (size_t)npool * 2);
                g_cpu->ops->qk_norm_rope_store(g_cpu, qkv, norm ? &qwh : &none, norm ? &kwh : &none, eps, table, &shape, &hb, q,
                                               pool);
                g_gpu->ops->qk_norm_rope_store(g_gpu, gqkv, norm ? &qwd : &none, norm ? &kwd : &none, eps, gtable, &shape, &db,
                                               gq, gpool);
                float *got_q = host_from_bf16(gq, nq), *got_pool = host_from_bf16(gpool, npool);
                /* slots not written must still be poison on both sides: compare NaN-ness, then values */
                int64_t stray = 0;
                for (int64_t i = 0; i < npool; i++)
                    if (isnan(pool[i]) != isnan(got_pool[i])) stray++;
                    else if (isnan(pool[i])) pool[i] = got_pool[i] = 0.0f;
                char sh[96];
                snprintf(sh, sizeof sh, "n=%d d=%d hq=%d hk=%d%s", n, d, hq, hk, norm ? " qk_norm" : "");
                report("rope.q", sh, rel_err(got_q, q, nq, 0), 2e-2);
                report("rope.kv_pool", sh, stray ? INFINITY : rel_err(got_pool, pool, npool, 0), 2e-2);
                free(got_q);
                free(got_pool);
                free(q);
                free(qkv);
                free(pool);
                g_gpu->ops->release(g_gpu, gq);
                g_gpu->ops->release(g_gpu, gqkv);
                g_gpu->ops->release(g_gpu, gpool);
            }
        }
        g_gpu->ops->release(g_gpu, gtable);
        free(table);
        free(qw);
        free(kw);
    }
}

/* ---- error handling: OOM is a clean status; a bad weight poisons only its own backend ---- */

static void test_errors(void)
{
    void *p = NULL;
    status_t s = g_gpu->ops->alloc(g_gpu, (size_t)1 << 50, &p);
    printf("errors: 1 PiB alloc -> %s: %s\n", status_name(s), status_message());
    report("errors.oom", "alloc 1 PiB", s == STATUS_NO_MEMORY && p == NULL ? 0.0 : 1.0, 0.0);
    report("errors.oom_not_sticky", "last_error after OOM", g_gpu->ops->last_error(g_gpu) == STATUS_OK ? 0.0 : 1.0, 0.0);

    backend *b2;
    if (backend_cuda_create(0, &b2) != STATUS_OK) {
        fprintf(stderr, "second backend: %s\n", status_message());
        exit(1);
    }
    float w[64];
    for (int i = 0; i < 64; i++) w[i] = 1.0f;
    uint16_t wb[64];
    for (int i = 0; i < 64; i++) wb[i] = dtype_f32_to_bf16(w[i]);
    void *dev_w = NULL, *x = NULL;
    b2->ops->alloc(b2, sizeof wb, &dev_w);
    b2->ops->alloc(b2, 64 * 2, &x);
    b2->ops->copy_to_device(b2, dev_w, wb, sizeof wb);
    tensor_t bad = {.data = dev_w, .dtype = DTYPE_BF16, .ndim = 1, .shape = {64}};
    b2->ops->rmsnorm(b2, x, &bad, 1e-6f, 1, 64, x);
    s = b2->ops->last_error(b2);
    printf("errors: bf16 norm weight -> %s: %s\n", status_name(s), status_message());
    report("errors.sticky", "bf16 1-D norm weight", s == STATUS_UNSUPPORTED ? 0.0 : 1.0, 0.0);
    float host[4] = {1, 2, 3, 4};
    b2->ops->logits_to_host(b2, x, 4, host);
    report("errors.no_stale_logits", "logits_to_host after failure", isnan(host[0]) && isnan(host[3]) ? 0.0 : 1.0, 0.0);
    b2->ops->release(b2, dev_w);
    b2->ops->release(b2, x);
    b2->ops->destroy(b2);
    s = backend_cuda_create(1 << 20, &b2);
    report("errors.bad_device", "create(device=2^20)", s == STATUS_INVALID_ARG ? 0.0 : 1.0, 0.0);
}

static int want(int argc, char **argv, const char *name)
{
    if (argc < 2) return 1;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], name)) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    const int count = backend_cuda_device_count();
    if (count <= 0) {
        printf("no CUDA device (backend_cuda_device_count() = %d)\n", count);
        backend *b = NULL;
        status_t s = backend_cuda_create(0, &b);
        printf("backend_cuda_create(0) -> %s: %s\n", status_name(s), status_message());
        return s == STATUS_OK ? 1 : 77;
    }
    if (backend_cpu_create(0, &g_cpu) != STATUS_OK || backend_cuda_create(0, &g_gpu) != STATUS_OK) {
        fprintf(stderr, "backend create: %s\n", status_message());
        return 1;
    }
    if (g_gpu->ops->prepare(g_gpu, MAX_TOKENS, 4, MAX_TOKENS, MAX_SEQ_LEN, 32, 128) != STATUS_OK) {
        fprintf(stderr, "prepare: %s\n", status_message());
        return 1;
    }
    if (want(argc, argv, "embedding")) test_rows(0);
    if (want(argc, argv, "gather_rows")) test_rows(1);
    if (want(argc, argv, "rmsnorm")) test_norm(0);
    if (want(argc, argv, "add_rmsnorm")) test_norm(1);
    if (want(argc, argv, "silu_mul")) test_silu_mul();
    if (want(argc, argv, "linear")) test_linear(0);
    if (want(argc, argv, "linear_silu")) test_linear_fused(0);
    if (want(argc, argv, "linear_add_rmsnorm")) test_linear_fused(1);
    if (want(argc, argv, "linear_logits")) test_linear(1);
    if (want(argc, argv, "qk_norm_rope_store")) test_rope();
    if (want(argc, argv, "errors")) test_errors();
    backend_ok("end");
    g_gpu->ops->destroy(g_gpu);
    g_cpu->ops->destroy(g_cpu);
    printf("%d checks, %d failures\n", g_checks, g_failures);
    return g_failures ? 1 : 0;
}
