/* safetensors.h — read Hugging Face safetensors checkpoints by mmap, no copies.
 *
 * A checkpoint directory holds either model.safetensors.index.json (sharded: its weight_map
 * names the file of each tensor) or one or more *.safetensors files.  Every file is mapped
 * read-only; tensor views point into the maps and stay valid until safetensors_close.
 * Headers are validated when opened: offsets inside the file, byte size == numel × dtype
 * size, so a truncated file is reported (file + tensor) before any weight is read.
 */
#ifndef LIGHTLLM_MODEL_SAFETENSORS_H
#define LIGHTLLM_MODEL_SAFETENSORS_H

#include <stddef.h>

#include "core/dtype.h"
#include "core/status.h"

typedef struct safetensors safetensors;

status_t safetensors_open(const char *dir, safetensors **out);
void safetensors_close(safetensors *st);
/* View of tensor `name`: STATUS_NOT_FOUND naming the tensor and the directory if absent;
 * STATUS_UNSUPPORTED if its dtype is not F32/F16/BF16/I32/I64. */
status_t safetensors_get(const safetensors *st, const char *name, tensor_t *out);
int safetensors_has(const safetensors *st, const char *name);
/* The file that holds `name` (for error messages), or "?" */
const char *safetensors_file_of(const safetensors *st, const char *name);
int safetensors_num_tensors(const safetensors *st);

#endif
