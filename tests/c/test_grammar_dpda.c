/* test_grammar_dpda.c — csrc/grammar/{regularize,lr,dpda}: the DPDA matcher must agree with
 * the Earley reference byte by byte (prefix acceptance after every byte, full acceptance at
 * the end) on every front end's grammars, on hand-written strings and on random walks;
 * rollback restores earlier states; non-LR(1) grammars fail with a readable conflict; LR(1)-not-
 * LALR(1) grammars and grammars that compile only on a retry (expansion, larger budgets). */
#include <stdlib.h>
#include <string.h>

#include "grammar/dpda.h"
#include "grammar/ebnf.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "grammar/regex.h"
#include "test_util.h"

static uint64_t dpda_test_rng = 88172645463325252ull;
static uint32_t rnd(void)
{
    dpda_test_rng ^= dpda_test_rng << 13;
    dpda_test_rng ^= dpda_test_rng >> 7;
    dpda_test_rng ^= dpda_test_rng << 17;
    return (uint32_t)(dpda_test_rng >> 11);
}

/* Feeds s byte by byte; every step must agree with Earley.  Returns the number of mismatches. */
static int agree(const grammar *g, const dpda *d, const uint8_t *s, size_t len)
{
    dpda_matcher m;
    dpda_matcher_init(&m, d);
    int bad = 0;
    size_t i = 0;
    for (; i < len; i++) {
        int ok = dpda_matcher_advance(&m, s[i]);
        int ref = grammar_accepts_prefix(g, s, i + 1);
        if (ok != ref) {
            fprintf(stderr, "prefix mismatch at byte %zu of '%.*s': dpda %d earley %d\n", i, (int)len, (const char *)s, ok, ref);
            bad++;
        }
        if (!ok || !ref) break;
    }
    if (i == len) {
        int acc = dpda_matcher_is_accepting(&m), ref = grammar_accepts(g, s, len);
        if (acc != ref) {
            fprintf(stderr, "accept mismatch on '%.*s': dpda %d earley %d\n", (int)len, (const char *)s, acc, ref);
            bad++;
        }
    }
    dpda_matcher_free(&m);
    return bad;
}

/* Random walks: at each step pick an allowed byte (by trying a few random ones, then any);
 * stop at random when accepting.  Each walk is then checked with agree(), plus a mutation. */
static int random_walks(const grammar *g, const dpda *d, int walks, int max_len)
{
    int bad = 0;
    uint8_t *buf = malloc((size_t)max_len + 1);
    for (int w = 0; w < walks; w++) {
        dpda_matcher m;
        dpda_matcher_init(&m, d);
        int n = 0;
        while (n < max_len) {
            if (dpda_matcher_is_accepting(&m) && rnd() % 8 == 0) break;
            int got = 0;
            for (int t = 0; t < 24 && !got; t++) {
                uint8_t b = (uint8_t)(rnd() % 3 ? 0x20 + rnd() % 95 : rnd() % 256);
                if (dpda_matcher_advance(&m, b)) { buf[n++] = b; got = 1; }
            }
            for (int b0 = (int)(rnd() % 256), k = 0; k < 256 && !got; k++) {
                uint8_t b = (uint8_t)((b0 + k) % 256);
                if (dpda_matcher_advance(&m, b)) { buf[n++] = b; got = 1; }
            }
            if (!got) break;
        }
        dpda_matcher_free(&m);
        bad += agree(g, d, buf, (size_t)n);
        if (n) {
            buf[rnd() % (uint32_t)n] = (uint8_t)(0x20 + rnd() % 95);
            bad += agree(g, d, buf, (size_t)n);
        }
    }
    free(buf);
    return bad;
}

static dpda *compile_ok(const grammar *g)
{
    dpda *d = NULL;
    status_t st = dpda_compile(g, &d);
    if (st != STATUS_OK) fprintf(stderr, "dpda_compile: %s\n", status_message());
    CHECK_EQ_INT(st, STATUS_OK);
    return d;
}

static void check_strings(const grammar *g, const char *const *strs, int n, int walks)
{
    dpda *d = compile_ok(g);
    if (!d) return;
    for (int i = 0; i < n; i++) CHECK_EQ_INT(agree(g, d, (const uint8_t *)strs[i], strlen(strs[i])), 0);
    CHECK_EQ_INT(random_walks(g, d, walks, 60), 0);
    dpda_free(d);
}

TEST_CASE(grammar_dpda_ebnf)
{
    const char *srcs[] = {
        "root ::= num (\",\" num)*\nnum ::= \"-\"? [0-9]+ | \"x\"{2,}\n  | \"\\u00e9\"\n",
        "root ::= \"a\"* \"a\"\n",                                  /* not LR(1) as written */
        "root ::= expr\nexpr ::= term | expr [-+] term\nterm ::= [0-9]+ | \"(\" expr \")\"\n",
        "root ::= \"\" | \"(\" root \")\" root\n",
        "root ::= x | y\nx ::= \"ab\" [c-e]* \"z\"\ny ::= \"a\" [a-c]+ \"y\"\n",
    };
    const char *strs[] = {"1,-23,xx,xxx,\xc3\xa9", "aaaa", "a", "", "1+(2-3)+45", "(()())()", "abcz", "abcccy", "1,,2", "(1+2"};
    for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++) {
        grammar g;
        CHECK_EQ_INT(grammar_from_ebnf(srcs[i], strlen(srcs[i]), &g), STATUS_OK);
        check_strings(&g, strs, (int)(sizeof strs / sizeof strs[0]), 40);
        grammar_free(&g);
    }
}

TEST_CASE(grammar_dpda_regex)
{
    const char *res[] = {"^(\\d{3}-)?[A-Za-z_]\\w*(\\.[a-z]+|x)*$", "a*a", "(a|ab)(c|bcd)(d*)", "[^\"\\\\]{2,5}x",
                         ".*foo.*", "(\\d+\\.)*\\d+", "\\p"};
    const char *strs[] = {"123-abc.de.f", "_x", "aaa", "abcd", "abcdd", "xyzxx", "afoob", "1.2.3", "\xc3\xa9\xe2\x82\xac"};
    for (size_t i = 0; i < sizeof res / sizeof res[0]; i++) {
        grammar g;
        status_t st = grammar_from_regex(res[i], strlen(res[i]), &g);
        if (st == STATUS_OK) check_strings(&g, strs, (int)(sizeof strs / sizeof strs[0]), 40);
        grammar_free(&g);
    }
}

TEST_CASE(grammar_dpda_json_schema)
{
    const char *schemas[] = {
        "{}",
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":-15,\"exclusiveMaximum\":1000},"
        "\"b\":{\"type\":\"boolean\"},\"c\":{\"type\":\"string\",\"maxLength\":4}},\"required\":[\"b\"]}",
        "{\"properties\":{\"ab\":{\"type\":\"integer\"}},\"additionalProperties\":{\"type\":\"string\"}}",
        "{\"type\":\"array\",\"prefixItems\":[{\"format\":\"date\",\"type\":\"string\"},{\"format\":\"uuid\"}],"
        "\"items\":{\"format\":\"ipv4\"},\"minItems\":1,\"maxItems\":3}",
        "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
        "\"next\":{\"anyOf\":[{\"$ref\":\"#/$defs/node\"},{\"type\":\"null\"}]}},\"required\":[\"v\",\"next\"],"
        "\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}",
        "{\"type\":\"string\",\"pattern\":\"^[a-z]+-\\\\d$\"}",
        "{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":1}",
    };
    const char *strs[] = {"{\"a\":[1,2.5e-3,\"x\\u00e9\\n\",null,true,{}]}", "{\"b\":true}", "{\"a\":1,\"b\":false,\"c\":\"ab\"}",
                          "{\"ab\":1,\"a\":\"x\",\"abc\":\"y\"}", "[\"2024-02-29\",\"123e4567-e89b-12d3-a456-426614174000\"]",
                          "{\"v\":1,\"next\":{\"v\":2,\"next\":null}}", "\"ab-1\"", "0.5", "1.000", "{\"a\":01}"};
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        grammar g;
        grammar_json_options opt = {(int)(i % 2)};
        CHECK_EQ_INT(grammar_from_json_schema(schemas[i], strlen(schemas[i]), &opt, &g), STATUS_OK);
        check_strings(&g, strs, (int)(sizeof strs / sizeof strs[0]), 30);
        grammar_free(&g);
    }
}

TEST_CASE(grammar_dpda_choice)
{
    const char *ch = "[\"yes\",\"no\",\"n/a\",\"nope\",\"\"]";
    const char *strs[] = {"yes", "no", "n/a", "nope", "", "nop", "yesno"};
    grammar g;
    CHECK_EQ_INT(grammar_from_choices(ch, strlen(ch), &g), STATUS_OK);
    check_strings(&g, strs, (int)(sizeof strs / sizeof strs[0]), 20);
    grammar_free(&g);
}

TEST_CASE(grammar_dpda_rollback_and_conflict)
{
    grammar g;
    const char *src = "root ::= \"{\" (\"\\\"k\\\":\" [0-9]+)? \"}\"\n";
    CHECK_EQ_INT(grammar_from_ebnf(src, strlen(src), &g), STATUS_OK);
    dpda *d = compile_ok(&g);
    if (d) {
        dpda_matcher m;
        dpda_matcher_init(&m, d);
        CHECK(dpda_matcher_advance_bytes(&m, (const uint8_t *)"{\"k\":12", 7));
        CHECK(!dpda_matcher_is_accepting(&m));
        CHECK(!dpda_matcher_advance_bytes(&m, (const uint8_t *)"3x", 2));   /* all or nothing */
        CHECK_EQ_INT(m.num_bytes, 7);
        CHECK(dpda_matcher_advance(&m, '}') && dpda_matcher_is_accepting(&m));
        dpda_matcher_rollback(&m, 4);   /* back to {"k */
        CHECK(!dpda_matcher_advance(&m, '}'));
        CHECK(dpda_matcher_advance_bytes(&m, (const uint8_t *)":7}", 3) && dpda_matcher_is_accepting(&m));
        dpda_matcher_rollback(&m, 100);
        CHECK_EQ_INT(m.num_bytes, 0);
        uint8_t fw[16];
        CHECK_EQ_INT(dpda_matcher_forced_bytes(&m, fw, 16), 1);   /* '{' then a choice */
        CHECK(fw[0] == '{' && m.num_bytes == 0);
        CHECK(dpda_matcher_advance_bytes(&m, (const uint8_t *)"{\"", 2));
        CHECK_EQ_INT(dpda_matcher_forced_bytes(&m, fw, 16), 3);   /* k": */
        CHECK(memcmp(fw, "k\":", 3) == 0);
        dpda_matcher_rollback(&m, 2);
        CHECK(dpda_matcher_advance_bytes(&m, (const uint8_t *)"{}", 2) && dpda_matcher_is_accepting(&m));
        dpda_matcher_free(&m);
        dpda_free(d);
    }
    grammar_free(&g);
    /* inherently ambiguous / not LR(1): a conflict naming the byte and the rules */
    const char *amb = "root ::= x | y\nx ::= \"(\" x \")\" | \"a\"\ny ::= \"(\" y \")\" | \"a\"\n";
    CHECK_EQ_INT(grammar_from_ebnf(amb, strlen(amb), &g), STATUS_OK);
    dpda *bad = NULL;
    CHECK_EQ_INT(dpda_compile(&g, &bad), STATUS_INVALID_ARG);
    CHECK(bad == NULL);
    CHECK(strstr(status_message(), "conflict on") != NULL);
    fprintf(stderr, "conflict message: %s\n", status_message());
    grammar_free(&g);
    /* a shift/reduce conflict whose reducing item is complete (the report once read past the sets) */
    const char *pal = "root ::= s\ns ::= \"a\" s \"a\" | \"b\" s \"b\" | \"\"\n";
    CHECK_EQ_INT(grammar_from_ebnf(pal, strlen(pal), &g), STATUS_OK);
    CHECK_EQ_INT(dpda_compile(&g, &bad), STATUS_INVALID_ARG);
    CHECK(bad == NULL);
    CHECK(strstr(status_message(), "shift/reduce conflict on 'a'") != NULL);
    grammar_free(&g);
}

/* LR(1) but not LALR(1) (the textbook pairs, with the two nonterminals recursive so that
 * regularize keeps them): built by the LR(1) fallback at the first try */
TEST_CASE(grammar_dpda_lr1_fallback)
{
    const char *srcs[] = {
        "root ::= \"a\" x \"d\" | \"b\" y \"d\" | \"a\" y \"e\" | \"b\" x \"e\"\nx ::= \"c\" | \"(\" x \")\"\n"
        "y ::= \"c\" | \"[\" y \"]\"\n",
        "root ::= x \"a\" | \"b\" x \"c\" | y \"c\" | \"b\" y \"a\"\nx ::= \"d\" | \"(\" x \")\"\ny ::= \"d\" | \"[\" y \"]\"\n",
    };
    const char *strs[] = {"acd", "bce", "ace", "bcd", "a((c))d", "b[c]d", "a(c)e", "b[c]e", "da", "bdc", "dc", "bda",
                          "((d))a", "b[d]a", "(d)c", "b(d)a", "ac", ""};
    for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++) {
        grammar g;
        CHECK_EQ_INT(grammar_from_ebnf(srcs[i], strlen(srcs[i]), &g), STATUS_OK);
        dpda *d = compile_ok(&g);
        if (d) {
            CHECK_EQ_INT(d->lr.is_lr1, 1);
            CHECK_EQ_INT(d->num_tries, 1);
            dpda_free(d);
        }
        check_strings(&g, strs, (int)(sizeof strs / sizeof strs[0]), 60);
        grammar_free(&g);
    }
}

/* grammars that compile only on a retry: two recursive bodies that start alike (expanded into
 * their user), and a bounded repetition over the first budget (larger budgets) */
TEST_CASE(grammar_dpda_compile_retries)
{
    const char *src = "root ::= u\nu ::= a | b\na ::= \"{k:\" [0-9]+ (\",\" u)? \"}\"\nb ::= \"{k:\" [a-z]+ (\",\" u)? \"}\"\n";
    const char *strs[] = {"{k:1}", "{k:ab}", "{k:12,{k:x}}", "{k:x,{k:1,{k:2}}}", "{k:1x}", "{k:}", "{k:1,}"};
    grammar g;
    CHECK_EQ_INT(grammar_from_ebnf(src, strlen(src), &g), STATUS_OK);
    dpda *d = compile_ok(&g);
    if (d) {
        CHECK(d->num_tries > 1);
        dpda_free(d);
    }
    check_strings(&g, strs, (int)(sizeof strs / sizeof strs[0]), 60);
    grammar_free(&g);
    const char *schema = "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"maxLength\":800}},"
                         "\"required\":[\"s\"],\"additionalProperties\":false}";
    grammar_json_options opt = {0};
    grammar_set_counter_threshold(1000);   /* expanded (the default, 255, would count it) */
    CHECK_EQ_INT(grammar_from_json_schema(schema, strlen(schema), &opt, &g), STATUS_OK);
    grammar_set_counter_threshold(0);
    CHECK_EQ_INT(g.num_counted, 0);
    d = compile_ok(&g);
    if (d) {
        CHECK(d->num_tries > 1);
        char *s = malloc(820);
        memcpy(s, "{\"s\":\"", 6);
        for (int n = 799; n <= 801; n++) {   /* the bound is exact: 800 characters, not 801 */
            memset(s + 6, 'x', (size_t)n);
            memcpy(s + 6 + n, "\"}", 2);
            dpda_matcher m;
            dpda_matcher_init(&m, d);
            int ok = dpda_matcher_advance_bytes(&m, (const uint8_t *)s, (size_t)n + 8) && dpda_matcher_is_accepting(&m);
            CHECK_EQ_INT(ok, n <= 800);
            CHECK_EQ_INT(ok, grammar_accepts(&g, (const uint8_t *)s, (size_t)n + 8));
            dpda_matcher_free(&m);
        }
        free(s);
        CHECK_EQ_INT(random_walks(&g, d, 20, 60), 0);
        dpda_free(d);
    }
    grammar_free(&g);
}
