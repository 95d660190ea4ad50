/* detokenizer.c — token ids → UTF-8 text, incremental and UTF-8 safe; stop-string search.
 *
 * Design: the vocabulary is one byte blob plus an offsets table (token i is
 * bytes[offsets[i] .. offsets[i+1])), and a per-token special flag.  Decoding is a byte-level
 * UTF-8 state machine that follows the Unicode "maximal subpart" rule, the same one CPython's
 * bytes.decode("utf-8", errors="replace") uses: a lead byte followed by valid continuation
 * bytes that is then broken becomes ONE U+FFFD, the breaking byte is decoded afresh; a byte
 * that can never start a character (80..BF, C0, C1, F5..FF) is one U+FFFD.
 *
 * Invariants: detok_state.pending holds 0..3 bytes that form a valid, incomplete prefix of a
 * UTF-8 character (never a complete or an invalid one); every byte written to `out` is part
 * of a complete, valid character.  Nothing allocates after detok_vocab_create.
 *
 * Output bound: the contract promises an append writes at most detok_max_token_bytes(v) + 8
 * bytes.  A token of valid UTF-8 writes at most its length + 3 (a broken pending prefix
 * becomes one U+FFFD), but a token made of stray bytes writes up to 3 bytes per byte.  So
 * detok_max_token_bytes() reports max(longest token, worst single-append output - 8), which
 * equals the longest token for every vocabulary whose tokens decode cleanly on their own.
 */
#include "engine/detokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct detok_vocab {
    int32_t vocab_size;
    int32_t max_token_bytes; /* see "Output bound" above */
    int64_t *offsets;        /* [vocab_size + 1] into bytes */
    uint8_t *bytes;          /* [offsets[vocab_size]] concatenated token bytes */
    uint8_t *is_special;     /* [vocab_size] 0/1 */
};

static const char detok_replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

/* Total length of the character a lead byte starts (2..4), or 0 if b cannot start one
 * (ASCII is handled by the caller). */
static int detok_utf8_char_len(uint8_t b)
{
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* Whether b may follow the valid prefix pending[0..num) (num >= 1). Only the second byte has
 * lead-dependent bounds (no overlongs, no surrogates, nothing past U+10FFFF). */
static int detok_utf8_is_next(const uint8_t *pending, int32_t num, uint8_t b)
{
    uint8_t lo = 0x80, hi = 0xBF;
    if (num == 1) {
        switch (pending[0]) {
        case 0xE0: lo = 0xA0; break;
        case 0xED: hi = 0x9F; break;
        case 0xF0: lo = 0x90; break;
        case 0xF4: hi = 0x8F; break;
        default: break;
        }
    }
    return b >= lo && b <= hi;
}

/* Feeds n bytes through the state machine, writing complete characters to out (may be NULL:
 * then only counts).  Returns the bytes written. */
static size_t detok_feed(detok_state *s, const uint8_t *bytes, size_t n, char *out)
{
    size_t num_written = 0;
    size_t i = 0;
    while (i < n) {
        uint8_t b = bytes[i];
        if (s->num_pending == 0) {
            i++;
            if (b < 0x80) {
                if (out) out[num_written] = (char)b;
                num_written++;
            } else if (detok_utf8_char_len(b) == 0) {
                if (out) memcpy(out + num_written, detok_replacement, 3);
                num_written += 3;
            } else {
                s->pending[0] = b;
                s->num_pending = 1;
            }
            continue;
        }
        if (!detok_utf8_is_next(s->pending, s->num_pending, b)) {
            /* the pending prefix is a maximal invalid subpart; b is decoded afresh */
            if (out) memcpy(out + num_written, detok_replacement, 3);
            num_written += 3;
            s->num_pending = 0;
            continue;
        }
        s->pending[s->num_pending++] = b;
        i++;
        if (s->num_pending == detok_utf8_char_len(s->pending[0])) {
            if (out) memcpy(out + num_written, s->pending, (size_t)s->num_pending);
            num_written += (size_t)s->num_pending;
            s->num_pending = 0;
        }
    }
    return num_written;
}

/* Upper bound on what appending these bytes can write, over every possible pending state:
 * either the first byte breaks the pending prefix (one U+FFFD, then the bytes from a fresh
 * state) or it continues it (at most 3 bytes consumed, at most 4 written), then the rest
 * from a fresh state. */
static size_t detok_worst_output(const uint8_t *bytes, size_t n)
{
    detok_state fresh = {{0}, 0};
    size_t worst = 3 + detok_feed(&fresh, bytes, n, NULL);
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        detok_state rest = {{0}, 0};
        size_t w = 4 + detok_feed(&rest, bytes + k, n - k, NULL);
        if (w > worst) worst = w;
    }
    return worst;
}

status_t detok_vocab_create(const uint8_t *const *tokens, const int32_t *lens,
                            const uint8_t *is_special, int32_t vocab_size, detok_vocab **out)
{
    *out = NULL;
    if (vocab_size <= 0) return status_set(STATUS_INVALID_ARG, "vocab_size must be > 0, got %d", vocab_size);
    int64_t num_bytes = 0;
    for (int32_t i = 0; i < vocab_size; i++) {
        if (lens[i] < 0 || (lens[i] > 0 && tokens[i] == NULL))
            return status_set(STATUS_INVALID_ARG, "token %d: invalid bytes (length %d)", i, lens[i]);
        num_bytes += lens[i];
    }
    detok_vocab *v = calloc(1, sizeof(*v));
    if (!v) return status_set(STATUS_NO_MEMORY, "detokenizer: out of host memory");
    v->vocab_size = vocab_size;
    v->offsets = malloc(sizeof(int64_t) * ((size_t)vocab_size + 1));
    v->bytes = malloc((size_t)num_bytes + 1);
    v->is_special = calloc((size_t)vocab_size, 1);
    if (!v->offsets || !v->bytes || !v->is_special) {
        detok_vocab_free(v);
        return status_set(STATUS_NO_MEMORY, "detokenizer: out of host memory for %d tokens", vocab_size);
    }
    int64_t at = 0;
    size_t worst = 0;
    int32_t max_len = 0;
    for (int32_t i = 0; i < vocab_size; i++) {
        v->offsets[i] = at;
        if (lens[i] > 0) memcpy(v->bytes + at, tokens[i], (size_t)lens[i]);
        at += lens[i];
        v->is_special[i] = is_special && is_special[i] ? 1 : 0;
        if (lens[i] > max_len) max_len = lens[i];
        size_t w = detok_worst_output(tokens[i], (size_t)lens[i]);
        if (w > worst) worst = w;
    }
    v->offsets[vocab_size] = at;
    v->max_token_bytes = max_len;
    if (worst > (size_t)max_len + 8) v->max_token_bytes = (int32_t)(worst - 8);
    *out = v;
    return STATUS_OK;
}

void detok_vocab_free(detok_vocab *v)
{
    if (!v) return;
    free(v->offsets);
    free(v->bytes);
    free(v->is_special);
    free(v);
}

int32_t detok_vocab_size(const detok_vocab *v) { return v->vocab_size; }

int32_t detok_max_token_bytes(const detok_vocab *v) { return v->max_token_bytes; }

int detok_is_special(const detok_vocab *v, int32_t token) { return v->is_special[token]; }

const uint8_t *detok_token_bytes(const detok_vocab *v, int32_t token, int32_t *len)
{
    LL_ASSERT(token >= 0 && token < v->vocab_size);
    *len = (int32_t)(v->offsets[token + 1] - v->offsets[token]);
    return v->bytes + v->offsets[token];
}

size_t detok_append(const detok_vocab *v, detok_state *s, int32_t token, int skip_special,
                    char *out)
{
    LL_ASSERT(token >= 0 && token < v->vocab_size);
    LL_ASSERT(s->num_pending >= 0 && s->num_pending < 4);
    if (skip_special && v->is_special[token]) return 0;
    int64_t start = v->offsets[token];
    return detok_feed(s, v->bytes + start, (size_t)(v->offsets[token + 1] - start), out);
}

size_t detok_flush(detok_state *s, char *out)
{
    if (s->num_pending == 0) return 0;
    s->num_pending = 0;
    memcpy(out, detok_replacement, 3);
    return 3;
}

int detok_find_stop(const char *text, size_t len, size_t new_start,
                    const char *const *stops, const size_t *stop_lens, int num_stops,
                    size_t *pos)
{
    int best = -1;
    size_t best_pos = 0, best_len = 0;
    if (new_start > len) new_start = len;
    for (int i = 0; i < num_stops; i++) {
        size_t n = stop_lens[i];
        if (n == 0 || n > len) continue; /* an empty stop string never matches */
        /* a new match must end at or after new_start: start + n - 1 >= new_start */
        size_t from = new_start + 1 > n ? new_start + 1 - n : 0;
        size_t last = len - n; /* last possible start */
        if (best >= 0 && best_pos < last) last = best_pos; /* cannot beat an earlier match */
        for (size_t p = from; p <= last;) {
            const char *hit = memchr(text + p, stops[i][0], last - p + 1);
            if (!hit) break;
            p = (size_t)(hit - text);
            if (memcmp(hit, stops[i], n) == 0) {
                if (best < 0 || p < best_pos || (p == best_pos && n > best_len)) {
                    best = i;
                    best_pos = p;
                    best_len = n;
                }
                break;
            }
            p++;
        }
    }
    if (best >= 0) *pos = best_pos;
    return best;
}
