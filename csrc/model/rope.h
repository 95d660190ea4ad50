/* rope.h — rotary embedding frequencies for every scaling type Hugging Face defines that we
 * support (default, linear, llama3, yarn), and the cos/sin table the rope op reads.
 *
 * rope_build_table writes table[pos, 0:half] = cos(pos·inv_freq)·attn and
 * table[pos, half:2·half] = sin(pos·inv_freq)·attn for pos in [0, max_positions), where attn is
 * the yarn attention factor (1 otherwise), computed as transformers does (inv_freq in fp32,
 * angle in fp32), so our positions match the reference to the last bits that matter.
 */
#ifndef LIGHTLLM_MODEL_ROPE_H
#define LIGHTLLM_MODEL_ROPE_H

#include <stdint.h>

#include "model/config.h"

/* inv_freq[head_dim / 2]; returns the attention factor. */
double rope_inv_freq(const model_config *c, float *inv_freq);
/* table[max_positions, head_dim] fp32 as described above. */
void rope_build_table(const model_config *c, int32_t max_positions, float *table);

#endif
