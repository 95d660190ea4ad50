/* test_detokenizer.c — engine/detokenizer.c: UTF-8 held across tokens, maximal-subpart
 * U+FFFD for invalid bytes, flush, special tokens, the output bound, find_stop. */
#include <string.h>

#include "engine/detokenizer.h"
#include "test_util.h"

/* vocabulary of the tests: single bytes and a few multi-byte pieces */
static const char *const detok_test_tokens[] = {
    "a",              /* 0 */
    "\xe4",           /* 1: first byte of 你 (E4 BD A0) */
    "\xbd\xa0",       /* 2: rest of 你 */
    "<|end|>",        /* 3: special */
    "\xff",           /* 4: never valid */
    "\xf0\x9f",       /* 5: first half of 😀 (F0 9F 98 80) */
    "\x98\x80",       /* 6: second half of 😀 */
    "\xe4\xbd",       /* 7: 你 without its last byte */
    "\xa0\xa0\xa0\xa0", /* 8: four stray continuation bytes */
    "",               /* 9: an id with no bytes */
    "\xed\xa0\x80",   /* 10: a UTF-16 surrogate (invalid in UTF-8) */
};
#define DETOK_TEST_NUM_TOKENS ((int32_t)(sizeof(detok_test_tokens) / sizeof(detok_test_tokens[0])))

static detok_vocab *detok_test_vocab(void)
{
    const uint8_t *ptrs[DETOK_TEST_NUM_TOKENS];
    int32_t lens[DETOK_TEST_NUM_TOKENS];
    uint8_t special[DETOK_TEST_NUM_TOKENS] = {0};
    for (int32_t i = 0; i < DETOK_TEST_NUM_TOKENS; i++) {
        ptrs[i] = (const uint8_t *)detok_test_tokens[i];
        lens[i] = (int32_t)strlen(detok_test_tokens[i]);
    }
    special[3] = 1;
    detok_vocab *v = NULL;
    CHECK(detok_vocab_create(ptrs, lens, special, DETOK_TEST_NUM_TOKENS, &v) == STATUS_OK);
    return v;
}

/* Appends every id (then flushes); the joined text goes to out, piece lengths to piece_lens. */
static size_t detok_test_run(const detok_vocab *v, const int32_t *ids, int n, int skip_special, char *out,
                             size_t *piece_lens)
{
    detok_state s = {{0}, 0};
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t w = detok_append(v, &s, ids[i], skip_special, out + at);
        CHECK(w <= (size_t)detok_max_token_bytes(v) + 8);
        if (piece_lens) piece_lens[i] = w;
        at += w;
    }
    at += detok_flush(&s, out + at);
    CHECK_EQ_INT(s.num_pending, 0);
    return at;
}

#define FFFD "\xef\xbf\xbd"

#define EXPECT_TEXT(v, skip, expected, ...)                                                  \
    do {                                                                                     \
        const int32_t ids_[] = {__VA_ARGS__};                                                \
        char out_[512];                                                                      \
        size_t n_ = detok_test_run(v, ids_, (int)(sizeof(ids_) / sizeof(ids_[0])), skip, out_, NULL); \
        CHECK_EQ_INT(n_, strlen(expected));                                                  \
        CHECK(n_ == strlen(expected) && memcmp(out_, expected, n_) == 0);                    \
    } while (0)

TEST_CASE(detok_utf8_split_across_tokens)
{
    detok_vocab *v = detok_test_vocab();
    const int32_t ids[] = {0, 1, 2, 5, 6, 0};
    char out[256];
    size_t piece_lens[6];
    size_t n = detok_test_run(v, ids, 6, 1, out, piece_lens);
    CHECK(n == strlen("a\xe4\xbd\xa0\xf0\x9f\x98\x80" "a") && memcmp(out, "a\xe4\xbd\xa0\xf0\x9f\x98\x80" "a", n) == 0);
    /* nothing is emitted until a character completes */
    CHECK_EQ_INT(piece_lens[0], 1);
    CHECK_EQ_INT(piece_lens[1], 0);
    CHECK_EQ_INT(piece_lens[2], 3);
    CHECK_EQ_INT(piece_lens[3], 0);
    CHECK_EQ_INT(piece_lens[4], 4);
    EXPECT_TEXT(v, 1, "\xe4\xbd\xbd" FFFD, 7, 2);     /* E4 BD | BD A0: U+4F7D, then a stray A0 */
    detok_vocab_free(v);
}

TEST_CASE(detok_invalid_bytes_maximal_subparts)
{
    detok_vocab *v = detok_test_vocab();
    EXPECT_TEXT(v, 1, FFFD, 4);                        /* FF */
    EXPECT_TEXT(v, 1, FFFD FFFD FFFD FFFD, 8);         /* four stray continuation bytes */
    EXPECT_TEXT(v, 1, FFFD "a", 1, 0);                 /* E4 then 'a': one U+FFFD, 'a' kept */
    EXPECT_TEXT(v, 1, FFFD "a", 7, 0);                 /* E4 BD then 'a': ONE U+FFFD for both */
    EXPECT_TEXT(v, 1, FFFD FFFD, 1, 4);                /* E4 FF */
    EXPECT_TEXT(v, 1, FFFD "\xe4\xbd\xa0", 1, 1, 2);   /* E4 E4 BD A0: the second E4 restarts */
    EXPECT_TEXT(v, 1, FFFD FFFD FFFD, 10);             /* ED A0 80: surrogate, 3 subparts */
    EXPECT_TEXT(v, 1, FFFD "\xe4\xbd\xa0", 5, 1, 2);   /* F0 9F then 你 */
    detok_vocab_free(v);
}

TEST_CASE(detok_flush_incomplete_tail)
{
    detok_vocab *v = detok_test_vocab();
    EXPECT_TEXT(v, 1, "a" FFFD, 0, 1);                 /* held E4 becomes U+FFFD at the end */
    EXPECT_TEXT(v, 1, FFFD, 5);                        /* F0 9F: one U+FFFD for the prefix */
    EXPECT_TEXT(v, 1, FFFD, 5, 9);                     /* an empty token changes nothing */
    detok_state s = {{0}, 0};
    char out[16];
    CHECK_EQ_INT(detok_flush(&s, out), 0);             /* nothing held: nothing written */
    detok_vocab_free(v);
}

TEST_CASE(detok_special_tokens)
{
    detok_vocab *v = detok_test_vocab();
    EXPECT_TEXT(v, 1, "aa", 0, 3, 0);
    EXPECT_TEXT(v, 0, "a<|end|>a", 0, 3, 0);
    /* a skipped special leaves a held prefix held: the character still completes */
    EXPECT_TEXT(v, 1, "\xe4\xbd\xa0", 1, 3, 2);
    /* not skipped, it breaks the prefix */
    EXPECT_TEXT(v, 0, FFFD "<|end|>" FFFD FFFD, 1, 3, 2);
    int32_t len = -1;
    const uint8_t *b = detok_token_bytes(v, 3, &len);
    CHECK(len == 7 && memcmp(b, "<|end|>", 7) == 0);
    CHECK_EQ_INT(detok_vocab_size(v), DETOK_TEST_NUM_TOKENS);
    detok_vocab_free(v);
}

TEST_CASE(detok_output_bound)
{
    /* 4 stray bytes write 12 bytes: the reported bound must cover it */
    detok_vocab *v = detok_test_vocab();
    CHECK(detok_max_token_bytes(v) + 8 >= 3 + 12);
    CHECK(detok_max_token_bytes(v) >= 7);
    detok_vocab_free(v);
    /* a clean vocabulary reports its longest token */
    const uint8_t *ptrs[2] = {(const uint8_t *)"hello", (const uint8_t *)"\xe4\xbd\xa0"};
    int32_t lens[2] = {5, 3};
    CHECK(detok_vocab_create(ptrs, lens, NULL, 2, &v) == STATUS_OK);
    CHECK_EQ_INT(detok_max_token_bytes(v), 5);
    detok_vocab_free(v);
    CHECK(detok_vocab_create(ptrs, lens, NULL, 0, &v) == STATUS_INVALID_ARG);
    lens[1] = -1;
    CHECK(detok_vocab_create(ptrs, lens, NULL, 2, &v) == STATUS_INVALID_ARG);
    CHECK(v == NULL);
}

static int detok_test_stop(const char *text, size_t new_start, const char *const *stops, int num_stops,
                           size_t *pos)
{
    size_t lens[8];
    for (int i = 0; i < num_stops; i++) lens[i] = strlen(stops[i]);
    return detok_find_stop(text, strlen(text), new_start, stops, lens, num_stops, pos);
}

TEST_CASE(detok_find_stop_cases)
{
    size_t pos = 999;
    const char *one[] = {"STOP"};
    CHECK_EQ_INT(detok_test_stop("abc STOP def", 0, one, 1, &pos), 0);
    CHECK_EQ_INT(pos, 4);
    /* spanning the old/new boundary: "ST" old, "OP" new */
    CHECK_EQ_INT(detok_test_stop("abc STOP", 6, one, 1, &pos), 0);
    CHECK_EQ_INT(pos, 4);
    /* wholly inside the already searched text: not reported again */
    CHECK_EQ_INT(detok_test_stop("abc STOP def", 8, one, 1, &pos), -1);
    CHECK_EQ_INT(detok_test_stop("abc STOP def", 7, one, 1, &pos), 0);
    /* several stops: the earliest start wins, whatever the order */
    const char *several[] = {"def", "STOP", "c S"};
    CHECK_EQ_INT(detok_test_stop("abc STOP def", 0, several, 3, &pos), 2);
    CHECK_EQ_INT(pos, 2);
    /* same start: the longest wins */
    const char *nested[] = {"ST", "STOP", "S"};
    CHECK_EQ_INT(detok_test_stop("abc STOP", 5, nested, 3, &pos), 1);
    CHECK_EQ_INT(pos, 4);
    /* empty stops never match; no match; stop longer than text; new_start past the end */
    const char *empty[] = {"", "zz"};
    CHECK_EQ_INT(detok_test_stop("abc", 0, empty, 2, &pos), -1);
    const char *longer[] = {"abcd"};
    CHECK_EQ_INT(detok_test_stop("abc", 0, longer, 1, &pos), -1);
    CHECK_EQ_INT(detok_test_stop("abc", 10, one, 1, &pos), -1);
    CHECK_EQ_INT(detok_test_stop("", 0, one, 1, &pos), -1);
    /* repeated first byte (memchr restarts) and a match at the very end */
    const char *aab[] = {"aab"};
    CHECK_EQ_INT(detok_test_stop("aaaaab", 5, aab, 1, &pos), 0);
    CHECK_EQ_INT(pos, 3);
    /* multi-byte stop strings are plain bytes */
    const char *cjk[] = {"\xe4\xbd\xa0\xe5\xa5\xbd"};
    CHECK_EQ_INT(detok_test_stop("x\xe4\xbd\xa0\xe5\xa5\xbd", 4, cjk, 1, &pos), 0);
    CHECK_EQ_INT(pos, 1);
}
