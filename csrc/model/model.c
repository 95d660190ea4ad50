/* model.c — weight table for the Llama family from safetensors or seeded dummy weights,
 * shape/dtype checks with errors that name the tensor and file, and runtime allocation.
 */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "model/rope.h"

typedef struct model_loader {
    model *m;
    int dummy;
    uint64_t seed;
} model_loader;

static uint64_t model_splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t model_hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static status_t model_own(model *m, size_t bytes, void **out)
{
    STATUS_TRY(m->be->ops->alloc(m->be, bytes, out));
    m->owned = realloc(m->owned, (size_t)(m->num_owned + 1) * sizeof *m->owned);
    LL_ASSERT(m->owned);
    m->owned[m->num_owned++] = *out;
    return STATUS_OK;
}

/* kind: 0 = matrix (uniform, std 0.02; bf16), 1 = norm weight (1 + small noise), 2 = bias (both fp32, as
 * every backend keeps 1-D weights) */
static status_t model_dummy_tensor(model_loader *L, const char *name, int ndim, const int64_t *shape, int kind, tensor_t *out)
{
    tensor_t host = {.dtype = kind == 0 ? DTYPE_BF16 : DTYPE_F32, .ndim = ndim};
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (host.shape[i] = shape[i]);
    const size_t bytes = (size_t)n * (size_t)dtype_size(host.dtype);
    void *buf = malloc(bytes);
    if (!buf) return status_set(STATUS_NO_MEMORY, "dummy weights: cannot allocate %zu bytes for %s", bytes, name);
    uint64_t state = L->seed ^ model_hash_name(name);
    const float scale = kind == 0 ? 0.02f * sqrtf(3.0f) : (kind == 1 ? 0.05f : 0.02f);
    for (int64_t i = 0; i < n; i++) {
        float u = (float)((model_splitmix(&state) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
        float v = kind == 1 ? 1.0f + scale * u : scale * u;
        if (kind == 0) ((uint16_t *)buf)[i] = dtype_f32_to_bf16(v);
        else ((float *)buf)[i] = v;
    }
    void *dev;
    status_t s = model_own(L->m, bytes, &dev);
    if (s == STATUS_OK) {
        L->m->be->ops->copy_to_device(L->m->be, dev, buf, bytes);
        host.data = dev;
        *out = host;
    }
    free(buf);
    return s;
}

/* Loads `name` with the expected shape; bias = 1 converts to an fp32 owned copy. */
static status_t model_get(model_loader *L, const char *name, int ndim, int64_t d0, int64_t d1, int kind, tensor_t *out)
{
    const int64_t shape[2] = {d0, d1};
    if (L->dummy) {
        STATUS_TRY(model_dummy_tensor(L, name, ndim, shape, kind, out));
    } else {
        tensor_t host;
        STATUS_TRY(safetensors_get(L->m->st, name, &host));
        const char *file = safetensors_file_of(L->m->st, name);
        if (host.dtype != DTYPE_F32 && host.dtype != DTYPE_F16 && host.dtype != DTYPE_BF16)
            return status_set(STATUS_UNSUPPORTED, "tensor %s in %s has dtype %s; supported: F32, F16, BF16", name, file, dtype_name(host.dtype));
        int ok = host.ndim == ndim;
        for (int i = 0; ok && i < ndim; i++) ok = host.shape[i] == shape[i];
        if (!ok) {
            char got[96] = "", want[64];
            for (int i = 0; i < host.ndim; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)host.shape[i]);
            if (ndim == 1) snprintf(want, sizeof want, "%lld", (long long)d0);
            else snprintf(want, sizeof want, "%lld, %lld", (long long)d0, (long long)d1);
            return status_set(STATUS_FORMAT, "tensor %s in %s has shape [%s]; config.json implies [%s]", name, file, got, want);
        }
        STATUS_TRY(L->m->be->ops->upload_weight(L->m->be, &host, out));
    }
    if (kind == 2 && out->dtype != DTYPE_F32) { /* biases: fp32 copy, tiny */
        const int64_t n = out->shape[0];
        float *f = log_xmalloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) f[i] = dtype_load_f32(out->data, out->dtype, i);
        void *dev;
        status_t s = model_own(L->m, (size_t)n * sizeof(float), &dev);
        if (s == STATUS_OK) L->m->be->ops->copy_to_device(L->m->be, dev, f, (size_t)n * sizeof(float));
        free(f);
        STATUS_TRY(s);
        out->data = dev;
        out->dtype = DTYPE_F32;
    }
    return STATUS_OK;
}

static status_t model_load_weights(model_loader *L)
{
    model *m = L->m;
    const model_config *c = &m->cfg;
    const int64_t H = c->hidden_size, D = c->head_dim, Q = (int64_t)c->num_heads * D, KV = (int64_t)c->num_kv_heads * D;
    const int64_t I = c->intermediate_size, V = c->vocab_size;
    char name[256];
    STATUS_TRY(model_get(L, "model.embed_tokens.weight", 2, V, H, 0, &m->embed));
    STATUS_TRY(model_get(L, "model.norm.weight", 1, H, 0, 1, &m->final_norm));
    int tied = c->tie_word_embeddings;
    if (!L->dummy && tied == 0 && !safetensors_has(m->st, "lm_head.weight"))
        return status_set(STATUS_NOT_FOUND, "tensor lm_head.weight is missing from the checkpoint (tie_word_embeddings is false)");
    if (tied) m->lm_head = m->embed;
    else STATUS_TRY(model_get(L, "lm_head.weight", 2, V, H, 0, &m->lm_head));
    m->layers = log_xcalloc((size_t)c->num_layers, sizeof *m->layers);
    for (int32_t i = 0; i < c->num_layers; i++) {
        model_layer *ly = &m->layers[i];
        static const struct { const char *suffix; size_t off; int kind; int which; } specs[] = {
            {"input_layernorm.weight", offsetof(model_layer, input_norm), 1, 0},
            {"post_attention_layernorm.weight", offsetof(model_layer, post_norm), 1, 0},
            {"self_attn.q_proj.weight", offsetof(model_layer, q), 0, 1},
            {"self_attn.k_proj.weight", offsetof(model_layer, k), 0, 2},
            {"self_attn.v_proj.weight", offsetof(model_layer, v), 0, 2},
            {"self_attn.o_proj.weight", offsetof(model_layer, o), 0, 3},
            {"mlp.gate_proj.weight", offsetof(model_layer, gate), 0, 4},
            {"mlp.up_proj.weight", offsetof(model_layer, up), 0, 4},
            {"mlp.down_proj.weight", offsetof(model_layer, down), 0, 5},
        };
        for (size_t j = 0; j < sizeof specs / sizeof specs[0]; j++) {
            int64_t d0 = H, d1 = 0;
            int nd = 1;
            switch (specs[j].which) {
            case 1: nd = 2; d0 = Q; d1 = H; break;
            case 2: nd = 2; d0 = KV; d1 = H; break;
            case 3: nd = 2; d0 = H; d1 = Q; break;
            case 4: nd = 2; d0 = I; d1 = H; break;
            case 5: nd = 2; d0 = H; d1 = I; break;
            default: break;
            }
            snprintf(name, sizeof name, "model.layers.%d.%s", i, specs[j].suffix);
            STATUS_TRY(model_get(L, name, nd, d0, d1, specs[j].kind, (tensor_t *)((char *)ly + specs[j].off)));
        }
        if (c->qkv_bias) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.q_proj.bias", i);
            STATUS_TRY(model_get(L, name, 1, Q, 0, 2, &ly->q_bias));
            snprintf(name, sizeof name, "model.layers.%d.self_attn.k_proj.bias", i);
            STATUS_TRY(model_get(L, name, 1, KV, 0, 2, &ly->k_bias));
            snprintf(name, sizeof name, "model.layers.%d.self_attn.v_proj.bias", i);
            STATUS_TRY(model_get(L, name, 1, KV, 0, 2, &ly->v_bias));
        }
        if (c->qk_norm) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", i);
            STATUS_TRY(model_get(L, name, 1, D, 0, 1, &ly->q_norm));
            snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", i);
            STATUS_TRY(model_get(L, name, 1, D, 0, 1, &ly->k_norm));
        }
    }
    return STATUS_OK;
}

status_t model_load(const model_config *cfg, const char *dir, int dummy, uint64_t seed, backend *be, model **out)
{
    STATUS_TRY(model_config_validate(cfg));
    model *m = log_xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->be = be;
    status_t s = STATUS_OK;
    if (!dummy) s = safetensors_open(dir, &m->st);
    if (s == STATUS_OK) {
        model_loader L = {.m = m, .dummy = dummy, .seed = seed};
        s = model_load_weights(&L);
    }
    if (s != STATUS_OK) {
        model_free(m);
        return s;
    }
    *out = m;
    return STATUS_OK;
}

int64_t model_kv_bytes_per_token(const model *m)
{
    return (int64_t)m->cfg.num_layers * 2 * m->cfg.num_kv_heads * m->cfg.head_dim * dtype_size(m->be->act_dtype);
}

int64_t model_weight_bytes(const model *m)
{
    int64_t total = tensor_numel(&m->embed) * dtype_size(m->embed.dtype);
    if (m->lm_head.data != m->embed.data) total += tensor_numel(&m->lm_head) * dtype_size(m->lm_head.dtype);
    for (int32_t i = 0; i < m->cfg.num_layers; i++) {
        const tensor_t *ts[] = {&m->layers[i].q, &m->layers[i].k, &m->layers[i].v, &m->layers[i].o,
                                &m->layers[i].gate, &m->layers[i].up, &m->layers[i].down};
        for (size_t j = 0; j < sizeof ts / sizeof ts[0]; j++) total += tensor_numel(ts[j]) * dtype_size(ts[j]->dtype);
    }
    return total;
}

int64_t model_runtime_bytes(const model *m, int32_t max_tokens, int32_t max_seq_len, int32_t max_logits)
{
    const model_config *c = &m->cfg;
    const int64_t es = dtype_size(m->be->act_dtype), T = max_tokens, H = c->hidden_size, D = c->head_dim;
    const int64_t act = T * (2 * H + 2 * c->num_heads * D + 2 * c->num_kv_heads * D + 2 * c->intermediate_size) +
                        2 * (int64_t)max_logits * H;
    return act * es + (int64_t)max_logits * c->vocab_size * 4 + (int64_t)max_seq_len * D * 4;
}

status_t model_alloc_runtime(model *m, int32_t max_tokens, int32_t max_seq_len, int32_t num_slots, int32_t max_logits)
{
    const model_config *c = &m->cfg;
    const int es = dtype_size(m->be->act_dtype);
    const int64_t T = max_tokens, H = c->hidden_size, D = c->head_dim;
    m->max_tokens = max_tokens;
    m->max_seq_len = max_seq_len;
    m->num_slots = num_slots;
    m->max_logits = max_logits;
    STATUS_TRY(model_own(m, (size_t)max_seq_len * D * sizeof(float), (void **)&m->rope_table));
    float *table = malloc((size_t)max_seq_len * D * sizeof(float));
    if (!table) return status_set(STATUS_NO_MEMORY, "cannot allocate the rotary table for %d positions", max_seq_len);
    rope_build_table(c, max_seq_len, table);
    m->be->ops->copy_to_device(m->be, m->rope_table, table, (size_t)max_seq_len * D * sizeof(float));
    free(table);
    m->kv_pools = log_xcalloc((size_t)c->num_layers, sizeof *m->kv_pools);
    const size_t pool_bytes = (size_t)(num_slots + 1) * 2 * c->num_kv_heads * D * es; /* + the pad slot */
    m->be->kv_pad_slot = num_slots;
    for (int32_t i = 0; i < c->num_layers; i++) {
        status_t s = model_own(m, pool_bytes, &m->kv_pools[i]);
        if (s != STATUS_OK)
            return status_set(STATUS_NO_MEMORY, "cannot allocate the KV cache: %d layers x %zu bytes (%d token slots)",
                              c->num_layers, pool_bytes, num_slots);
    }
    struct { void **p; int64_t elems; } acts[] = {
        {&m->act_hidden, T * H}, {&m->act_residual, T * H},
        {&m->act_q, T * c->num_heads * D}, {&m->act_k, T * c->num_kv_heads * D}, {&m->act_v, T * c->num_kv_heads * D},
        {&m->act_attn, T * c->num_heads * D}, {&m->act_gate, T * c->intermediate_size},
        {&m->act_up, T * c->intermediate_size}, {&m->act_logits_in, (int64_t)max_logits * H}, {&m->act_logits_delta, (int64_t)max_logits * H}, {&m->act_logits, (int64_t)max_logits * c->vocab_size},
    };
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        const int esz = acts[i].p == &m->act_logits ? 4 : es;
        STATUS_TRY(model_own(m, (size_t)acts[i].elems * esz, acts[i].p));
    }
    return m->be->ops->prepare(m->be, max_tokens, max_logits, (int64_t)max_logits * max_seq_len, max_seq_len, c->num_heads,
                               c->head_dim);
}

void model_free(model *m)
{
    if (!m) return;
    for (int32_t i = 0; i < m->num_owned; i++) m->be->ops->release(m->be, m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->kv_pools);
    safetensors_close(m->st);
    free(m);
}
