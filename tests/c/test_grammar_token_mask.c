/* test_grammar_token_mask.c — csrc/grammar/token_mask: the trie + cache mask equals brute
 * force (each token's bytes fed to the matcher) along random walks of JSON Schema / regex
 * grammars, over a synthetic vocabulary (all bytes, random JSON-ish strings, specials, EOS). */
#include <stdlib.h>
#include <string.h>

#include "grammar/dpda.h"
#include "grammar/json_schema.h"
#include "grammar/regex.h"
#include "grammar/token_mask.h"
#include "test_util.h"

static uint64_t tm_rng = 0x9E3779B97F4A7C15ull;
static uint32_t tm_rnd(void)
{
    tm_rng ^= tm_rng << 13;
    tm_rng ^= tm_rng >> 7;
    tm_rng ^= tm_rng << 17;
    return (uint32_t)(tm_rng >> 11);
}

static detok_vocab *tm_vocab(int32_t n, int32_t *eos)
{
    static const char alpha[] = "{}[]\":,.-+0123456789eEabcdefnrstulxyz \\_/";
    uint8_t **toks = malloc((size_t)n * sizeof *toks);
    int32_t *lens = malloc((size_t)n * sizeof *lens);
    uint8_t *special = calloc((size_t)n, 1);
    for (int32_t i = 0; i < n; i++) {
        toks[i] = malloc(16);
        if (i < 256) { toks[i][0] = (uint8_t)i; lens[i] = 1; continue; }
        int32_t len = 2 + (int32_t)(tm_rnd() % 6);
        for (int32_t k = 0; k < len; k++) toks[i][k] = (uint8_t)alpha[tm_rnd() % (sizeof alpha - 1)];
        if (i % 97 == 0) { toks[i][0] = 0xC3; toks[i][1] = 0xA9; }   /* é, also split across tokens */
        lens[i] = len;
    }
    lens[n - 1] = 0;                                /* padding */
    memcpy(toks[n - 2], "<|e|>", 5); lens[n - 2] = 5; special[n - 2] = 1;
    memcpy(toks[n - 3], "\"}", 2); lens[n - 3] = 2;
    *eos = n - 2;
    detok_vocab *v = NULL;
    CHECK_EQ_INT(detok_vocab_create((const uint8_t *const *)toks, lens, special, n, &v), STATUS_OK);
    for (int32_t i = 0; i < n; i++) free(toks[i]);
    free(toks); free(lens); free(special);
    return v;
}

static int tm_compare(const dpda *d, const token_vocab *tv, int walks)
{
    token_mask_table *t = token_mask_table_create(d, tv);
    int32_t words = token_vocab_mask_words(tv);
    uint32_t *a = malloc((size_t)words * 4), *b = malloc((size_t)words * 4);
    int bad = 0;
    for (int w = 0; w < walks; w++) {
        dpda_matcher m;
        dpda_matcher_init(&m, d);
        for (int step = 0; step < 40; step++) {
            int32_t na = token_mask_fill(t, &m, a);
            int32_t nb = token_mask_fill_brute(tv, &m, b);
            if (na != nb || memcmp(a, b, (size_t)words * 4) != 0) {
                fprintf(stderr, "mask mismatch at step %d: fast %d brute %d\n", step, na, nb);
                bad++;
                break;
            }
            /* pick a random allowed non-EOS token */
            int32_t pick = -1, seen = 0;
            for (int32_t tok = 0; tok < token_vocab_size(tv); tok++)
                if ((a[tok >> 5] >> (tok & 31) & 1) && !token_vocab_is_eos(tv, tok) && tm_rnd() % (uint32_t)++seen == 0) pick = tok;
            if (pick < 0) break;
            CHECK(token_mask_advance_token(tv, &m, pick));
        }
        dpda_matcher_free(&m);
    }
    CHECK(token_mask_table_num_entries(t) > 0);
    free(a);
    free(b);
    token_mask_table_free(t);
    return bad;
}

TEST_CASE(grammar_token_mask_brute)
{
    int32_t eos;
    detok_vocab *v = tm_vocab(3000, &eos);
    token_vocab *tv = NULL;
    CHECK_EQ_INT(token_vocab_create(v, &eos, 1, &tv), STATUS_OK);
    CHECK(token_vocab_num_nodes(tv) > 3000);
    const char *schemas[] = {
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\",\"maxLength\":5},"
        "\"c\":{\"type\":\"array\",\"items\":{\"type\":\"number\"}}},\"required\":[\"a\"]}",
        "{}",
        "{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"v\":{\"enum\":[\"x\",\"y\\\"z\",1]},"
        "\"next\":{\"anyOf\":[{\"$ref\":\"#/$defs/n\"},{\"type\":\"null\"}]}},\"required\":[\"v\",\"next\"],"
        "\"additionalProperties\":false}},\"$ref\":\"#/$defs/n\"}",
    };
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        grammar g;
        grammar_json_options opt = {(int)(i % 2)};
        CHECK_EQ_INT(grammar_from_json_schema(schemas[i], strlen(schemas[i]), &opt, &g), STATUS_OK);
        dpda *d = NULL;
        CHECK_EQ_INT(dpda_compile(&g, &d), STATUS_OK);
        if (d) CHECK_EQ_INT(tm_compare(d, tv, 6), 0);
        dpda_free(d);
        grammar_free(&g);
    }
    grammar g;
    const char *re = "(\\d+\\.)*\\d+é?x*";
    CHECK_EQ_INT(grammar_from_regex(re, strlen(re), &g), STATUS_OK);
    dpda *d = NULL;
    CHECK_EQ_INT(dpda_compile(&g, &d), STATUS_OK);
    if (d) CHECK_EQ_INT(tm_compare(d, tv, 6), 0);
    dpda_free(d);
    grammar_free(&g);
    /* EOS only when accepting; specials / padding never */
    dpda_matcher m;
    const char *num = "\\d+";
    CHECK_EQ_INT(grammar_from_regex(num, strlen(num), &g), STATUS_OK);
    CHECK_EQ_INT(dpda_compile(&g, &d), STATUS_OK);
    dpda_matcher_init(&m, d);
    CHECK(!token_mask_advance_token(tv, &m, eos));
    CHECK(token_mask_advance_token(tv, &m, '7'));
    CHECK(token_mask_advance_token(tv, &m, eos));
    CHECK(!token_mask_advance_token(tv, &m, 2999));
    dpda_matcher_free(&m);
    dpda_free(d);
    grammar_free(&g);
    token_vocab_free(tv);
    detok_vocab_free(v);
}
