/* cuda_ok.h — the GPU test and benchmark programs' CUDA runtime check: CUDA_OK(call) prints the
 * failing call with its file, line and error string and exits 1.  For test harnesses only (the
 * core never exits: it records errors in the backend). */
#ifndef LIGHTLLM_TESTS_GPU_CUDA_OK_H
#define LIGHTLLM_TESTS_GPU_CUDA_OK_H

#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#define CUDA_OK(call)                                                                                 \
    do {                                                                                              \
        cudaError_t e_ = (call);                                                                      \
        if (e_ != cudaSuccess) {                                                                      \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                                  \
        }                                                                                             \
    } while (0)

#endif
