/* dtype.h — element types and the tensor view the loader, op table and kernels share.
 *
 * A tensor_t never owns its data: the safetensors mmap, a backend allocation or the
 * caller owns it.  Shapes are row-major, shape[0] outermost.  bf16/f16 → f32 conversion
 * helpers are inline so the CPU ops can convert in their inner loops.
 */
#ifndef LIGHTLLM_CORE_DTYPE_H
#define LIGHTLLM_CORE_DTYPE_H

#include <stdint.h>
#include <string.h>

typedef enum dtype_t {
    DTYPE_F32 = 0,
    DTYPE_F16,
    DTYPE_BF16,
    DTYPE_I32,
    DTYPE_I64,
} dtype_t;

#define TENSOR_MAX_DIMS 4

typedef struct tensor_t {
    void *data;                       /* not owned */
    dtype_t dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
} tensor_t;

static inline int dtype_size(dtype_t t)
{
    switch (t) {
    case DTYPE_F32: case DTYPE_I32: return 4;
    case DTYPE_F16: case DTYPE_BF16: return 2;
    case DTYPE_I64: return 8;
    }
    return 0;
}

const char *dtype_name(dtype_t t);

static inline int64_t tensor_numel(const tensor_t *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static inline float dtype_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round-to-nearest-even, NaN kept NaN. */
static inline uint16_t dtype_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float dtype_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) { man <<= 1; exp--; }
            man &= 0x3ffu;
            u = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp - 15 + 127) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Element i of a float-typed tensor (f32/f16/bf16) as f32. */
static inline float dtype_load_f32(const void *data, dtype_t t, int64_t i)
{
    switch (t) {
    case DTYPE_F32: return ((const float *)data)[i];
    case DTYPE_BF16: return dtype_bf16_to_f32(((const uint16_t *)data)[i]);
    case DTYPE_F16: return dtype_f16_to_f32(((const uint16_t *)data)[i]);
    default: return 0.0f;
    }
}

#endif
