/* detokenizer.h — token ids → UTF-8 text in C, incremental and UTF-8 safe; stop strings.
 *
 * CONTRACT (implementation: engine/detokenizer.c)
 * The Python tokenizer layer builds a token → bytes table from tokenizer.json (byte-level BPE
 * via the GPT-2 byte↔unicode map; sentencepiece style with '▁' → ' ' and <0xNN> byte
 * fallback; added tokens as their UTF-8 content) and hands it to detok_vocab_create.
 *
 * detok_append(): appends one token to a sequence's state and writes to `out` the text that is
 * now complete: bytes of an unfinished UTF-8 character are held in the state until the
 * character completes; a byte sequence that can never become valid UTF-8 is emitted as U+FFFD
 * (one per maximal invalid subpart, as Python's bytes.decode(errors="replace") does).  Special
 * tokens emit nothing when skip_special is set.  out must have room for
 * detok_max_token_bytes(v) + 8 bytes.  Returns the number of bytes written.
 * detok_flush(): at the end of a sequence, emits held incomplete bytes as U+FFFD.
 * Never a partial character in the output: concatenating all outputs of a sequence equals
 * Python's b"".join(token_bytes).decode("utf-8", errors="replace") (skipping specials).
 *
 * detok_find_stop(): searches text[0..len) for the earliest occurrence of any stop string that
 * ends at or after byte new_start (text before new_start was already searched).  Returns the
 * index of the stop string found (earliest start position; ties: the longest) and writes its
 * start byte offset to *pos, or returns -1.
 */
#ifndef LIGHTLLM_ENGINE_DETOKENIZER_H
#define LIGHTLLM_ENGINE_DETOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct detok_vocab detok_vocab;

typedef struct detok_state {
    uint8_t pending[4];
    int32_t num_pending;
} detok_state;

/* tokens[i] points at lens[i] bytes (copied); is_special[i] != 0 marks special tokens
 * (is_special may be NULL). */
status_t detok_vocab_create(const uint8_t *const *tokens, const int32_t *lens,
                            const uint8_t *is_special, int32_t vocab_size, detok_vocab **out);
void detok_vocab_free(detok_vocab *v);
int32_t detok_vocab_size(const detok_vocab *v);
int32_t detok_max_token_bytes(const detok_vocab *v);
/* The raw bytes of a token (for grammar work later); *len receives the length. */
const uint8_t *detok_token_bytes(const detok_vocab *v, int32_t token, int32_t *len);

/* 1 when the token was marked special at creation. */
int detok_is_special(const detok_vocab *v, int32_t token);

size_t detok_append(const detok_vocab *v, detok_state *s, int32_t token, int skip_special,
                    char *out);
size_t detok_flush(detok_state *s, char *out);

int detok_find_stop(const char *text, size_t len, size_t new_start,
                    const char *const *stops, const size_t *stop_lens, int num_stops,
                    size_t *pos);

#endif
