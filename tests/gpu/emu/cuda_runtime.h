/* cuda_runtime.h (emulation stub): see cuda_runtime_api.h. */
#include "cuda_runtime_api.h"
