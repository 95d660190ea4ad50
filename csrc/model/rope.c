/* rope.c — rotary frequencies (transformers' modeling_rope_utils, re-derived) and the table. */
#include "model/rope.h"

#include <math.h>

static double rope_yarn_mscale(double scale, double mscale)
{
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

static double rope_yarn_correction_dim(double rotations, int dim, double base, double max_pos)
{
    return (dim * log(max_pos / (rotations * 2.0 * M_PI))) / (2.0 * log(base));
}

double rope_inv_freq(const model_config *c, float *inv_freq)
{
    const rope_config *r = &c->rope;
    const int dim = c->head_dim, half = dim / 2;
    double attn = 1.0;
    for (int i = 0; i < half; i++) {
        float expo = (float)(2 * i) / (float)dim;
        inv_freq[i] = 1.0f / powf((float)r->theta, expo);
    }
    if (r->type == ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv_freq[i] = inv_freq[i] / (float)r->factor;
    } else if (r->type == ROPE_LLAMA3) {
        double old_ctx = r->original_max_position > 0 ? r->original_max_position : c->max_position_embeddings;
        double low_wavelen = old_ctx / r->low_freq_factor, high_wavelen = old_ctx / r->high_freq_factor;
        for (int i = 0; i < half; i++) {
            float f = inv_freq[i];
            float wavelen = 2.0f * (float)M_PI / f;
            float scaled = wavelen > (float)low_wavelen ? f / (float)r->factor : f;
            if (!(wavelen < (float)high_wavelen) && !(wavelen > (float)low_wavelen)) {
                float smooth = ((float)old_ctx / wavelen - (float)r->low_freq_factor) /
                               (float)(r->high_freq_factor - r->low_freq_factor);
                scaled = (1.0f - smooth) * scaled / (float)r->factor + smooth * scaled;
            }
            inv_freq[i] = scaled;
        }
    } else if (r->type == ROPE_YARN) {
        double factor = r->factor;
        double orig = r->original_max_position > 0 ? r->original_max_position : c->max_position_embeddings;
        attn = r->attention_factor;
        if (!(attn > 0.0)) {
            if (r->mscale > 0.0 && r->mscale_all_dim > 0.0)
                attn = rope_yarn_mscale(factor, r->mscale) / rope_yarn_mscale(factor, r->mscale_all_dim);
            else
                attn = rope_yarn_mscale(factor, 1.0);
        }
        double beta_fast = r->beta_fast > 0.0 ? r->beta_fast : 32.0;
        double beta_slow = r->beta_slow > 0.0 ? r->beta_slow : 1.0;
        double low = rope_yarn_correction_dim(beta_fast, dim, r->theta, orig);
        double high = rope_yarn_correction_dim(beta_slow, dim, r->theta, orig);
        if (r->truncate) {
            low = floor(low);
            high = ceil(high);
        }
        if (low < 0.0) low = 0.0;
        if (high > dim - 1) high = dim - 1;
        if (low == high) high += 0.001;
        for (int i = 0; i < half; i++) {
            float pos_freq = powf((float)r->theta, (float)(2 * i) / (float)dim);
            float extrap = 1.0f / pos_freq;
            float interp = 1.0f / ((float)factor * pos_freq);
            float ramp = ((float)i - (float)low) / ((float)high - (float)low);
            ramp = ramp < 0.0f ? 0.0f : (ramp > 1.0f ? 1.0f : ramp);
            float extrap_factor = 1.0f - ramp;
            inv_freq[i] = interp * (1.0f - extrap_factor) + extrap * extrap_factor;
        }
    }
    return attn;
}

void rope_build_table(const model_config *c, int32_t max_positions, float *table)
{
    const int dim = c->head_dim, half = dim / 2;
    float inv_freq[1024];
    double attn = rope_inv_freq(c, inv_freq);
    for (int32_t p = 0; p < max_positions; p++) {
        float *row = table + (int64_t)p * dim;
        for (int i = 0; i < half; i++) {
            float angle = (float)p * inv_freq[i];
            row[i] = (float)(cosf(angle) * attn);
            row[half + i] = (float)(sinf(angle) * attn);
        }
    }
}
