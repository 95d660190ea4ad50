/* test_attention.cu — kernels_attention (csrc/kernels/attention.cu) against the CPU reference
 * (backend_cpu_create → ops->attention, fp32 on the same bf16-rounded data), and a timing mode.
 *
 * Checks: normalised error max|gpu - cpu| / max|cpu| < 2e-2 on odd sizes (1, 7, 19, 99, 989
 * tokens / contexts, a 4096-context decode), head_dim 64/128, GQA 1/4/7/8/20, decode batches,
 * prefill chunks with prefix context, mixed batches, small-q_len batches; kv_slots are a random
 * permutation of the pool, unreferenced pool slots hold NaN, outputs and workspace are
 * poisoned with NaN before every launch, every element must be written and finite.
 *
 * Build (tests/gpu/test_gpu_attention.py does this):
 *   gcc -std=c11 -D_GNU_SOURCE -O2 -Icsrc -c csrc/backend/cpu/*.c csrc/core/*.c
 *   nvcc -O3 -std=c++17 -Icsrc -gencode=arch=compute_90a,code=sm_90a tests/gpu/test_attention.cu \
 *        csrc/kernels/attention.cu *.o -o test_attention -lpthread -lm
 * Run: ./test_attention            (correctness; prints ALL PASSED)
 *      ./test_attention --bench    (decode GB/s beside a D2D copy; prefill TFLOP/s beside peak)
 */
#include <cuda_runtime.h>

#include <algorithm>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

extern "C" {
#include "backend/backend.h"
#include "kernels/kernels.h"
}
#include "kernels/pdl.cuh"

#include "cuda_ok.h"


static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng_u32()
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rng_uniform(float lo, float hi) { return lo + (hi - lo) * (rng_u32() / 4294967296.0f); }

struct seq_spec {
    int q_len, prefix;
};

/* A batch in host memory, the layout of backend.h's forward_batch. */
struct host_batch {
    std::vector<int32_t> positions, token_seq, q_start, kv_start, kv_slots;
    int num_tokens = 0, num_seqs = 0, max_q_len = 0, max_kv_len = 0;
    int64_t num_slots = 0;
};

static host_batch make_batch(const std::vector<seq_spec> &seqs, int64_t extra_slots)
{
    host_batch b;
    b.num_seqs = (int)seqs.size();
    int64_t total_kv = 0;
    for (const seq_spec &s : seqs) total_kv += s.prefix + s.q_len;
    b.num_slots = total_kv + extra_slots;
    std::vector<int32_t> perm(b.num_slots);
    for (int64_t i = 0; i < b.num_slots; i++) perm[i] = (int32_t)i;
    for (int64_t i = b.num_slots - 1; i > 0; i--) std::swap(perm[i], perm[rng_u32() % (i + 1)]);
    int64_t next = 0;
    b.q_start.push_back(0);
    b.kv_start.push_back(0);
    for (int s = 0; s < b.num_seqs; s++) {
        const int kv_len = seqs[s].prefix + seqs[s].q_len;
        for (int j = 0; j < kv_len; j++) b.kv_slots.push_back(perm[next++]);
        for (int i = 0; i < seqs[s].q_len; i++) {
            b.positions.push_back(seqs[s].prefix + i);
            b.token_seq.push_back(s);
        }
        b.q_start.push_back((int32_t)b.positions.size());
        b.kv_start.push_back((int32_t)b.kv_slots.size());
        b.max_q_len = std::max(b.max_q_len, seqs[s].q_len);
        b.max_kv_len = std::max(b.max_kv_len, kv_len);
    }
    b.num_tokens = (int)b.positions.size();
    return b;
}

/* Device copies of the batch's index arrays. */
struct dev_batch {
    int32_t *positions = nullptr, *token_seq = nullptr, *q_start = nullptr, *kv_start = nullptr, *kv_slots = nullptr;
};

template <typename T> static T *upload(const std::vector<T> &v)
{
    T *d = nullptr;
    CUDA_OK(cudaMalloc(&d, std::max<size_t>(1, v.size()) * sizeof(T)));
    if (!v.empty()) CUDA_OK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

static dev_batch upload_batch(const host_batch &b)
{
    dev_batch d;
    d.positions = upload(b.positions);
    d.token_seq = upload(b.token_seq);
    d.q_start = upload(b.q_start);
    d.kv_start = upload(b.kv_start);
    d.kv_slots = upload(b.kv_slots);
    return d;
}

static void free_batch(dev_batch &d)
{
    cudaFree(d.positions);
    cudaFree(d.token_seq);
    cudaFree(d.q_start);
    cudaFree(d.kv_start);
    cudaFree(d.kv_slots);
}

static cudaError_t launch(const void *q, const void *kv, int num_heads, int num_kv_heads, int d, const host_batch &hb,
                          const dev_batch &db, void *out, void *ws, size_t ws_bytes, cudaStream_t st)
{
    return kernels_attention(q, kv, num_heads, num_kv_heads, d, 1.0f / sqrtf((float)d), hb.num_tokens, hb.num_seqs,
                             db.positions, db.token_seq, db.q_start, db.kv_start, db.kv_slots, hb.max_q_len,
                             hb.max_kv_len, out, ws, ws_bytes, st);
}

/* ---- correctness ------------------------------------------------------------------------ */

static backend *cpu;
static int failures;

static double run_case(const char *name, int d, int num_kv_heads, int group, const std::vector<seq_spec> &seqs)
{
    const int num_heads = num_kv_heads * group;
    host_batch hb = make_batch(seqs, 17);
    const int64_t q_elems = (int64_t)hb.num_tokens * num_heads * d;
    const int64_t slot_elems = 2LL * num_kv_heads * d;
    const int64_t pool_elems = hb.num_slots * slot_elems;

    std::vector<uint16_t> q16(q_elems), pool16(pool_elems);
    std::vector<float> qf(q_elems), poolf(pool_elems), ref(q_elems);
    for (int64_t i = 0; i < q_elems; i++) {
        q16[i] = dtype_f32_to_bf16(rng_uniform(-2.0f, 2.0f));
        qf[i] = dtype_bf16_to_f32(q16[i]);
    }
    std::vector<char> used(hb.num_slots, 0);
    for (int32_t s : hb.kv_slots) used[s] = 1;
    for (int64_t slot = 0; slot < hb.num_slots; slot++)
        for (int64_t e = 0; e < slot_elems; e++) {
            const int64_t i = slot * slot_elems + e;
            pool16[i] = used[slot] ? dtype_f32_to_bf16(rng_uniform(-1.0f, 1.0f)) : (uint16_t)0x7fc0; /* NaN */
            poolf[i] = dtype_bf16_to_f32(pool16[i]);
        }

    /* CPU reference */
    forward_batch fb;
    memset(&fb, 0, sizeof(fb));
    fb.num_tokens = hb.num_tokens;
    fb.positions = hb.positions.data();
    fb.token_seq = hb.token_seq.data();
    fb.num_seqs = hb.num_seqs;
    fb.q_start = hb.q_start.data();
    fb.kv_start = hb.kv_start.data();
    fb.kv_slots = hb.kv_slots.data();
    fb.max_q_len = hb.max_q_len;
    fb.max_kv_len = hb.max_kv_len;
    attention_shape shape = {num_heads, num_kv_heads, d, 1.0f / sqrtf((float)d)};
    if (cpu->ops->prepare(cpu, hb.num_tokens, hb.num_seqs, (int64_t)hb.kv_slots.size(), hb.max_kv_len,
                          num_heads, d) != STATUS_OK) {
        fprintf(stderr, "cpu prepare failed\n");
        exit(2);
    }
    cpu->ops->attention(cpu, qf.data(), poolf.data(), &shape, &fb, ref.data());

    /* GPU */
    dev_batch db = upload_batch(hb);
    void *dq, *dkv, *dout, *dws;
    const size_t ws_bytes = kernels_attention_workspace_bytes(hb.num_tokens, num_heads, d, hb.max_kv_len);
    CUDA_OK(cudaMalloc(&dq, q_elems * 2));
    CUDA_OK(cudaMalloc(&dkv, pool_elems * 2));
    CUDA_OK(cudaMalloc(&dout, q_elems * 2));
    CUDA_OK(cudaMalloc(&dws, ws_bytes));
    CUDA_OK(cudaMemcpy(dq, q16.data(), q_elems * 2, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(dkv, pool16.data(), pool_elems * 2, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemset(dws, 0xff, ws_bytes));       /* fp32 NaN */
    /* three launches, the output poisoned before each */
    for (int rep = 0; rep < 3; rep++) {
        CUDA_OK(cudaMemset(dout, 0xff, q_elems * 2));
        CUDA_OK(launch(dq, dkv, num_heads, num_kv_heads, d, hb, db, dout, dws, ws_bytes, 0));
    }
    CUDA_OK(cudaGetLastError());
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<uint16_t> out16(q_elems);
    CUDA_OK(cudaMemcpy(out16.data(), dout, q_elems * 2, cudaMemcpyDeviceToHost));

    double max_diff = 0.0, max_ref = 0.0;
    int64_t bad = 0;
    for (int64_t i = 0; i < q_elems; i++) {
        const double a = dtype_bf16_to_f32(out16[i]), b = ref[i];
        if (!isfinite(a)) {
            bad++;
            continue;
        }
        max_diff = std::max(max_diff, fabs(a - b));
        max_ref = std::max(max_ref, fabs(b));
    }
    const double err = bad ? INFINITY : max_diff / std::max(max_ref, 1e-30);
    const bool ok = err < 2e-2;
    if (!ok) failures++;
    printf("%-4s d=%-3d kv=%d group=%-2d tokens=%-5d seqs=%-3d max_kv=%-5d err=%.3e%s %s\n", ok ? "ok" : "FAIL", d,
           num_kv_heads, group, hb.num_tokens, hb.num_seqs, hb.max_kv_len, err,
           bad ? " (non-finite outputs)" : "", name);
    fflush(stdout);
    cudaFree(dq);
    cudaFree(dkv);
    cudaFree(dout);
    cudaFree(dws);
    free_batch(db);
    return err;
}

static void run_tests()
{
    const int sizes[] = {1, 7, 19, 99, 989};
    const int groups[] = {1, 4, 8};
    const int dims[] = {16, 32, 64, 128};
    for (int d : dims)
        for (int g : groups) {
            std::vector<seq_spec> dec;
            for (int c : sizes) dec.push_back({1, c - 1});
            run_case("decode batch ctx 1,7,19,99,989", d, 2, g, dec);
            for (int n : sizes) {
                char name[64];
                snprintf(name, sizeof name, "prefill %d", n);
                run_case(name, d, 2, g, {{n, 0}});
            }
            run_case("mixed decode + prefill chunks with prefix", d, 2, g,
                     {{1, 0}, {1, 299}, {99, 200}, {19, 0}, {7, 989}, {1, 4}, {130, 70}});
            run_case("small q_len (decode path for every token)", d, 2, g, {{3, 50}, {1, 39}, {4, 0}, {2, 1000}});
        }
    run_case("decode ctx 4096 batch 1", 128, 8, 4, {{1, 4095}});
    run_case("decode ctx 4096 batch 3", 128, 2, 8, {{1, 4095}, {1, 4000}, {1, 17}});
    run_case("decode ctx 4096 batch 1", 64, 4, 8, {{1, 4095}});
    run_case("decode ctx 4096 batch 1 MHA", 128, 4, 1, {{1, 4095}});
    run_case("mixed group 7", 128, 2, 7, {{1, 77}, {33, 500}, {1, 1}, {65, 0}});
    run_case("mixed group 20 (two row groups)", 64, 1, 20, {{1, 300}, {70, 64}, {1, 5}});
    run_case("prefill 2x1000 + long prefix chunk", 128, 2, 4, {{1000, 0}, {257, 3000}});
    /* the shapes of the tiny Hugging Face fixtures (tests/fixtures): group 2, head_dim 16 / 32 */
    run_case("fixture llama shape", 16, 2, 2, {{1, 0}, {7, 0}, {19, 0}, {45, 0}});
    run_case("fixture qwen3 shape decode", 32, 2, 2, {{1, 45}, {1, 50}});
    run_case("fixture mqa shape", 16, 1, 4, {{45, 0}, {1, 30}});
    {
        std::vector<seq_spec> many;
        for (int i = 0; i < 300; i++) many.push_back({1, (int)(rng_u32() % 600)});
        run_case("300 decodes (one split)", 128, 2, 4, many);
        many.push_back({200, 100});
        run_case("300 decodes + one prefill chunk", 128, 2, 4, many);
    }
    /* explicit unsupported default */
    {
        host_batch hb = make_batch({{1, 3}}, 0);
        dev_batch db = upload_batch(hb);
        cudaError_t e = launch(nullptr, nullptr, 2, 1, 96, hb, db, nullptr, nullptr, 0, 0);
        const bool ok = e == cudaErrorInvalidValue;
        if (!ok) failures++;
        printf("%-4s head_dim 96 -> %s\n", ok ? "ok" : "FAIL", cudaGetErrorName(e));
        free_batch(db);
    }
}

/* ---- bench ------------------------------------------------------------------------------ */

__global__ void fill_random_bf16(uint16_t *p, int64_t n, uint32_t seed)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ seed;
        x ^= x >> 16;
        x *= 0x7feb352du;
        x ^= x >> 15;
        x *= 0x846ca68bu;
        x ^= x >> 16;
        const float f = (x >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
        uint32_t u;
        memcpy(&u, &f, 4);
        p[i] = (uint16_t)(u >> 16);
    }
}

static void fill_dev(void *p, int64_t n, uint32_t seed)
{
    fill_random_bf16<<<1024, 256>>>(static_cast<uint16_t *>(p), n, seed);
    CUDA_OK(cudaGetLastError());
}

static double median(std::vector<float> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

static double copy_bandwidth_gbs()
{
    const size_t bytes = 1ull << 30;
    void *a, *b;
    CUDA_OK(cudaMalloc(&a, bytes));
    CUDA_OK(cudaMalloc(&b, bytes));
    fill_dev(a, bytes / 2, 1);
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    std::vector<float> ms;
    for (int i = 0; i < 23; i++) {
        CUDA_OK(cudaEventRecord(e0));
        CUDA_OK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
        CUDA_OK(cudaEventRecord(e1));
        CUDA_OK(cudaEventSynchronize(e1));
        float t;
        CUDA_OK(cudaEventElapsedTime(&t, e0, e1));
        if (i >= 3) ms.push_back(t);
    }
    cudaFree(a);
    cudaFree(b);
    return 2.0 * bytes / (median(ms) * 1e-3) / 1e9;
}

/* Times `reps` launches, rotating among `rot` kv_start arrays; returns the median in ms. */
static double time_attention(const void *q, const void *kv, int num_heads, int num_kv_heads, int d,
                             const host_batch &hb, dev_batch &db, int rot, int64_t kv_start_stride, void *out, void *ws,
                             size_t ws_bytes, int reps)
{
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    std::vector<float> ms;
    int32_t *kv_start0 = db.kv_start;
    for (int i = 0; i < reps + 5; i++) {
        dev_batch b = db;
        b.kv_start = kv_start0 + (int64_t)(i % rot) * kv_start_stride;
        CUDA_OK(cudaEventRecord(e0));
        CUDA_OK(launch(q, kv, num_heads, num_kv_heads, d, hb, b, out, ws, ws_bytes, 0));
        CUDA_OK(cudaEventRecord(e1));
        CUDA_OK(cudaEventSynchronize(e1));
        float t;
        CUDA_OK(cudaEventElapsedTime(&t, e0, e1));
        if (i >= 5) ms.push_back(t);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return median(ms);
}

/* Median per-call time in ms of `per_graph` launches captured into one CUDA graph (rotating
 * kv_start as above), replayed `reps` times: device time without the host's launch overhead. */
static double time_attention_graph(const void *q, const void *kv, int num_heads, int num_kv_heads, int d,
                                   const host_batch &hb, dev_batch &db, int rot, int64_t kv_start_stride, void *out,
                                   void *ws, size_t ws_bytes, int per_graph, int reps)
{
    cudaStream_t st;
    CUDA_OK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    CUDA_OK(launch(q, kv, num_heads, num_kv_heads, d, hb, db, out, ws, ws_bytes, st));   /* one-time setup */
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < per_graph; i++) {
        dev_batch b = db;
        b.kv_start = db.kv_start + (int64_t)(i % rot) * kv_start_stride;
        CUDA_OK(launch(q, kv, num_heads, num_kv_heads, d, hb, b, out, ws, ws_bytes, st));
    }
    CUDA_OK(cudaStreamEndCapture(st, &graph));
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    std::vector<float> ms;
    for (int i = 0; i < reps + 2; i++) {
        CUDA_OK(cudaEventRecord(e0, st));
        CUDA_OK(cudaGraphLaunch(exec, st));
        CUDA_OK(cudaEventRecord(e1, st));
        CUDA_OK(cudaEventSynchronize(e1));
        float t;
        CUDA_OK(cudaEventElapsedTime(&t, e0, e1));
        if (i >= 2) ms.push_back(t / per_graph);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(st);
    return median(ms);
}

/* only_batch, only_ctx > 0: that one decode shape, no prefill (for profilers) */
static void run_bench(int only_batch, int only_ctx)
{
    int dev = 0;
    CUDA_OK(cudaGetDevice(&dev));
    cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, dev));
    int clock_khz = 0;
    CUDA_OK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev));
    const double copy_gbs = copy_bandwidth_gbs();
    printf("device: %s, %d SMs, L2 %d MiB, sm_%d%d\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20,
           prop.major, prop.minor);
    printf("device-to-device copy: %.0f GB/s (read + write)\n", copy_gbs);

    const int H = 32, KV = 8, D = 128;
    printf("\ndecode (q_len 1), %d heads / %d kv heads, head_dim %d, scattered slots, KV rotated past L2\n", H, KV, D);
    printf("(graph: median over graph replays of 64 captured calls, device time; stream: one launch between events,\n"
           " host launch overhead included)\n");
    printf("%6s %7s %10s %10s %8s %11s %10s\n", "batch", "ctx", "graph us", "GB/s", "vs copy", "stream us", "GB/s");
    const int batches[] = {1, 8, 64};
    const int ctxs[] = {1024, 4096, 16384};
    for (int b0 : batches)
        for (int c0 : ctxs) {
            int B = b0, ctx = c0;
            if (only_batch > 0) {
                if (b0 != batches[0] || c0 != ctxs[0]) continue;
                B = only_batch, ctx = only_ctx;
            }
            const int64_t slot_bytes = 2LL * KV * D * 2;
            const int64_t call_slots = (int64_t)B * ctx;
            const int rot = (int)std::max<int64_t>(1, std::min<int64_t>(256, (512LL << 20) / (call_slots * slot_bytes) + 1));
            /* one batch description, rot kv_start arrays over disjoint slot ranges */
            std::vector<seq_spec> seqs(B, seq_spec{1, ctx - 1});
            host_batch hb = make_batch(seqs, 0);
            const int64_t pool_slots = call_slots * rot;
            std::vector<int32_t> perm(pool_slots);
            for (int64_t i = 0; i < pool_slots; i++) perm[i] = (int32_t)i;
            for (int64_t i = pool_slots - 1; i > 0; i--) std::swap(perm[i], perm[rng_u32() % (i + 1)]);
            std::vector<int32_t> kv_start;
            for (int r = 0; r < rot; r++)
                for (int b = 0; b <= B; b++) kv_start.push_back((int32_t)(r * call_slots + (int64_t)b * ctx));
            hb.kv_slots = perm;
            dev_batch db = upload_batch(hb);
            cudaFree(db.kv_start);
            db.kv_start = upload(kv_start);
            void *q, *kv, *out, *ws;
            const size_t ws_bytes = kernels_attention_workspace_bytes(B, H, D, ctx);
            CUDA_OK(cudaMalloc(&q, (size_t)B * H * D * 2));
            CUDA_OK(cudaMalloc(&out, (size_t)B * H * D * 2));
            CUDA_OK(cudaMalloc(&kv, (size_t)pool_slots * slot_bytes));
            CUDA_OK(cudaMalloc(&ws, ws_bytes));
            fill_dev(q, (int64_t)B * H * D, 7);
            fill_dev(kv, pool_slots * slot_bytes / 2, 11);
            const double ms_stream = time_attention(q, kv, H, KV, D, hb, db, rot, B + 1, out, ws, ws_bytes, 100);
            const double ms = time_attention_graph(q, kv, H, KV, D, hb, db, rot, B + 1, out, ws, ws_bytes, 64, 15);
            const double bytes = (double)call_slots * slot_bytes + 2.0 * B * H * D * 2;
            const double gbs = bytes / (ms * 1e-3) / 1e9, gbs_stream = bytes / (ms_stream * 1e-3) / 1e9;
            printf("%6d %7d %10.2f %10.0f %7.0f%% %11.2f %10.0f\n", B, ctx, ms * 1e3, gbs, 100.0 * gbs / copy_gbs,
                   ms_stream * 1e3, gbs_stream);
            fflush(stdout);
            cudaFree(q);
            cudaFree(out);
            cudaFree(kv);
            cudaFree(ws);
            free_batch(db);
        }

    if (only_batch > 0) return;
    const double flops_per_clk = prop.major >= 9 ? 4096.0 : 2048.0;   /* dense bf16 per SM per clock */
    const double peak = flops_per_clk * prop.multiProcessorCount * clock_khz * 1e3 / 1e12;
    printf("\nprefill (causal, no prefix), %d heads / %d kv heads, head_dim %d; peak estimate %.0f TFLOP/s "
           "(dense bf16, %d SMs x %.2f GHz; mma.sync reaches about 2/3 of it)\n",
           H, KV, D, peak, prop.multiProcessorCount, clock_khz / 1e6);
    printf("%6s %7s %10s %10s %8s\n", "seqs", "q_len", "us", "TFLOP/s", "vs peak");
    const int shapes[][2] = {{1, 4096}, {8, 1024}};
    for (const auto &sh : shapes) {
        std::vector<seq_spec> seqs(sh[0], seq_spec{sh[1], 0});
        host_batch hb = make_batch(seqs, 0);
        dev_batch db = upload_batch(hb);
        void *q, *kv, *out, *ws;
        const size_t ws_bytes = kernels_attention_workspace_bytes(hb.num_tokens, H, D, sh[1]);
        CUDA_OK(cudaMalloc(&q, (size_t)hb.num_tokens * H * D * 2));
        CUDA_OK(cudaMalloc(&out, (size_t)hb.num_tokens * H * D * 2));
        CUDA_OK(cudaMalloc(&kv, (size_t)hb.num_slots * 2 * KV * D * 2));
        CUDA_OK(cudaMalloc(&ws, ws_bytes));
        fill_dev(q, (int64_t)hb.num_tokens * H * D, 3);
        fill_dev(kv, hb.num_slots * 2 * KV * D, 5);
        const double ms = time_attention(q, kv, H, KV, D, hb, db, 1, 0, out, ws, ws_bytes, 30);
        double pairs = 0;
        for (int p : hb.positions) pairs += p + 1;
        const double tflops = 4.0 * D * H * pairs / (ms * 1e-3) / 1e12;
        printf("%6d %7d %10.1f %10.1f %7.0f%%\n", sh[0], sh[1], ms * 1e3, tflops, 100.0 * tflops / peak);
        fflush(stdout);
        cudaFree(q);
        cudaFree(out);
        cudaFree(kv);
        cudaFree(ws);
        free_batch(db);
    }
}

int main(int argc, char **argv)
{
    const bool bench = argc > 1 && strcmp(argv[1], "--bench") == 0;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("SKIP: no CUDA device\n");
        return 0;
    }
    kernels_pdl::g_enabled.store(1);   /* as the engine runs (LIGHTLLM_PDL defaults on) */
    if (bench) {
        run_bench(argc > 3 ? atoi(argv[2]) : 0, argc > 3 ? atoi(argv[3]) : 0);
        return 0;
    }
    if (backend_cpu_create(0, &cpu) != STATUS_OK) {
        fprintf(stderr, "backend_cpu_create failed\n");
        return 2;
    }
    run_tests();
    cpu->ops->destroy(cpu);
    if (failures) {
        printf("%d FAILED\n", failures);
        return 1;
    }
    printf("ALL PASSED\n");
    return 0;
}
