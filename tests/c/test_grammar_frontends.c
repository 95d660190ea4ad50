/* test_grammar_frontends.c — csrc/grammar: the IR helpers (UTF-8 classes, repetition), the
 * GBNF, regex, JSON Schema and choice front ends, checked with the Earley recognizer, and
 * their error messages. */
#include <stdlib.h>
#include <string.h>

#include "grammar/ebnf.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "grammar/regex.h"
#include "test_util.h"

static int acc(const grammar *g, const char *s) { return grammar_accepts(g, (const uint8_t *)s, strlen(s)); }
static int pre(const grammar *g, const char *s) { return grammar_accepts_prefix(g, (const uint8_t *)s, strlen(s)); }

TEST_CASE(grammar_class_utf8)
{
    grammar g;
    grammar_init(&g);
    int32_t root = grammar_add_nonterminal(&g, "root");
    grammar_range r[] = {{'"', '"'}, {'\\', '\\'}};
    grammar_sym c = grammar_add_class(&g, "c", r, 2, 1);
    grammar_sym star = grammar_add_star(&g, "s", c);
    grammar_add_rule(&g, root, &star, 1);
    g.start = root;
    CHECK(acc(&g, "abc\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
    CHECK(!acc(&g, "a\"b"));
    CHECK(!acc(&g, "\xed\xa0\x80"));  /* surrogate */
    CHECK(!acc(&g, "\xc3"));
    CHECK(pre(&g, "\xc3"));
    char *text = grammar_print(&g);
    CHECK(strstr(text, "root ::=") == text);
    free(text);
    grammar_free(&g);
}

TEST_CASE(grammar_repeat_bounds)
{
    grammar g;
    grammar_init(&g);
    int32_t root = grammar_add_nonterminal(&g, "root");
    grammar_sym r = grammar_add_repeat(&g, "r", grammar_term('a', 'a'), 2, 4, grammar_term(',', ','), 1);
    grammar_add_rule(&g, root, &r, 1);
    g.start = root;
    CHECK(!acc(&g, "a"));
    CHECK(acc(&g, "a,a"));
    CHECK(acc(&g, "a,a,a,a"));
    CHECK(!acc(&g, "a,a,a,a,a"));
    CHECK(!acc(&g, "aa"));
    grammar_free(&g);
}

TEST_CASE(grammar_ebnf_parse)
{
    grammar g;
    const char *src = "# numbers\nroot ::= num (\",\" num)*\nnum ::= \"-\"? [0-9]+ | \"x\"{2,}\n  | \"\\u00e9\"\n";
    CHECK_EQ_INT(grammar_from_ebnf(src, strlen(src), &g), STATUS_OK);
    CHECK(acc(&g, "1,-23,xx,xxx,\xc3\xa9"));
    CHECK(!acc(&g, "1,,2"));
    CHECK(!acc(&g, "x"));
    CHECK(pre(&g, "1,-"));
    CHECK(!pre(&g, "1,a"));
    grammar_free(&g);
    const char *bad = "root ::= \"a\"\nx ::= (\"b\"\n";
    CHECK_EQ_INT(grammar_from_ebnf(bad, strlen(bad), &g), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "expected ')' at line 3") != NULL);
    grammar_free(&g);
    const char *undef = "root ::= foo";
    CHECK_EQ_INT(grammar_from_ebnf(undef, strlen(undef), &g), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "undefined rule 'foo' at line 1 column 10") != NULL);
    grammar_free(&g);
}

TEST_CASE(grammar_regex_parse)
{
    grammar g;
    const char *re = "^(\\d{3}-)?[A-Za-z_]\\w*(\\.[a-z]+|x)*$";
    CHECK_EQ_INT(grammar_from_regex(re, strlen(re), &g), STATUS_OK);
    CHECK(acc(&g, "123-abc.de.f"));
    CHECK(acc(&g, "_x"));
    CHECK(!acc(&g, "12-abc"));
    CHECK(!acc(&g, "abc."));
    grammar_free(&g);
    const char *bads[] = {"a(?=b)", "(a)\\1", "a\\bc", "a^b", "(ab", "a{3,1}"};
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        CHECK_EQ_INT(grammar_from_regex(bads[i], strlen(bads[i]), &g), STATUS_INVALID_ARG);
        grammar_free(&g);
    }
}

static int js_acc(const char *schema, const char *text, int ws)
{
    grammar g;
    grammar_json_options opt = {ws};
    status_t st = grammar_from_json_schema(schema, strlen(schema), &opt, &g);
    int ok = st == STATUS_OK && acc(&g, text);
    if (st != STATUS_OK) fprintf(stderr, "schema failed: %s\n", status_message());
    grammar_free(&g);
    return ok;
}

TEST_CASE(grammar_json_schema_types)
{
    CHECK(js_acc("{}", "{\"a\":[1,2.5e-3,\"x\\u00e9\\n\",null,true,{}]}", 0));
    CHECK(!js_acc("{}", "{\"a\":01}", 0));
    CHECK(js_acc("{\"type\":[\"string\",\"null\"]}", "null", 0));
    CHECK(!js_acc("{\"type\":[\"string\",\"null\"]}", "1", 0));
    const char *obj = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"boolean\"},"
                      "\"c\":{\"type\":\"string\"}},\"required\":[\"b\"],\"additionalProperties\":false}";
    CHECK(js_acc(obj, "{\"b\":true}", 0));
    CHECK(js_acc(obj, "{\"a\":1,\"b\":false,\"c\":\"\"}", 0));
    CHECK(js_acc(obj, "{\"a\": 1, \"b\": false}", 1));
    CHECK(!js_acc(obj, "{\"a\": 1, \"b\": false}", 0));
    CHECK(!js_acc(obj, "{\"a\":1}", 0));
    CHECK(!js_acc(obj, "{\"b\":true,\"d\":1}", 0));
    CHECK(!js_acc(obj, "{\"b\":true,\"a\":1}", 0));   /* declared order */
    const char *extra = "{\"properties\":{\"ab\":{\"type\":\"integer\"}},\"additionalProperties\":{\"type\":\"string\"}}";
    CHECK(js_acc(extra, "{\"ab\":1,\"a\":\"x\",\"abc\":\"y\"}", 0));
    CHECK(!js_acc(extra, "{\"ab\":1,\"ab\":\"x\"}", 0));   /* extra keys exclude declared names */
    CHECK(!js_acc(extra, "{\"a\":1}", 0));
}

TEST_CASE(grammar_json_schema_keywords)
{
    const char *ints = "{\"type\":\"integer\",\"minimum\":-15,\"exclusiveMaximum\":1000}";
    CHECK(js_acc(ints, "-15", 0) && js_acc(ints, "0", 0) && js_acc(ints, "999", 0) && js_acc(ints, "37", 0));
    CHECK(!js_acc(ints, "-16", 0) && !js_acc(ints, "1000", 0) && !js_acc(ints, "-0", 0) && !js_acc(ints, "007", 0));
    const char *nums = "{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":1}";
    CHECK(js_acc(nums, "0.5", 0) && js_acc(nums, "1", 0) && js_acc(nums, "1.000", 0) && js_acc(nums, "0.001", 0));
    CHECK(!js_acc(nums, "0", 0) && !js_acc(nums, "0.0", 0) && !js_acc(nums, "1.01", 0) && !js_acc(nums, "-0.5", 0));
    const char *str = "{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}";
    CHECK(js_acc(str, "\"ab\"", 0) && js_acc(str, "\"a\\nb\"", 0) && !js_acc(str, "\"a\"", 0) && !js_acc(str, "\"abcd\"", 0));
    const char *pat = "{\"type\":\"string\",\"pattern\":\"^[a-z]+-\\\\d$\"}";
    CHECK(js_acc(pat, "\"ab-1\"", 0) && !js_acc(pat, "\"ab-\"", 0));
    const char *search = "{\"type\":\"string\",\"pattern\":\"q\\\"\"}";
    CHECK(js_acc(search, "\"xxq\\\"yy\"", 0) && !js_acc(search, "\"xxq\"", 0));
    const char *fmt = "{\"type\":\"array\",\"prefixItems\":[{\"format\":\"date\",\"type\":\"string\"},{\"format\":\"uuid\"}],"
                      "\"items\":{\"format\":\"ipv4\"},\"minItems\":1,\"maxItems\":3}";
    CHECK(js_acc(fmt, "[\"2024-02-29\"]", 0));
    CHECK(js_acc(fmt, "[\"2024-02-29\",\"123e4567-e89b-12d3-a456-426614174000\",\"10.0.0.255\"]", 0));
    CHECK(!js_acc(fmt, "[]", 0) && !js_acc(fmt, "[\"2024-13-01\"]", 0));
    CHECK(!js_acc(fmt, "[\"2024-02-29\",\"123e4567-e89b-12d3-a456-426614174000\",\"10.0.0.256\"]", 0));
    const char *en = "{\"enum\":[\"a\\\"b\",1,null,{\"x\":[1]}],\"type\":[\"string\",\"object\",\"null\"]}";
    CHECK(js_acc(en, "\"a\\\"b\"", 0) && js_acc(en, "{\"x\":[1]}", 0) && js_acc(en, "null", 0) && !js_acc(en, "1", 0));
    const char *refs = "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                       "\"next\":{\"anyOf\":[{\"$ref\":\"#/$defs/node\"},{\"type\":\"null\"}]}},\"required\":[\"v\",\"next\"],"
                       "\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}";
    CHECK(js_acc(refs, "{\"v\":1,\"next\":{\"v\":2,\"next\":null}}", 0));
    CHECK(!js_acc(refs, "{\"v\":1,\"next\":{\"v\":2}}", 0));
    const char *all = "{\"allOf\":[{\"properties\":{\"a\":{\"type\":\"string\"}},\"required\":[\"a\"]},"
                      "{\"properties\":{\"b\":{\"const\":3}}}],\"type\":\"object\",\"additionalProperties\":false}";
    CHECK(js_acc(all, "{\"a\":\"x\",\"b\":3}", 0) && !js_acc(all, "{\"b\":3}", 0) && !js_acc(all, "{\"a\":\"x\",\"b\":4}", 0));
    const char *one = "{\"type\":\"object\",\"oneOf\":[{\"required\":[\"x\"]},{\"required\":[\"y\"]}],"
                      "\"properties\":{\"x\":{},\"y\":{}},\"additionalProperties\":false}";
    CHECK(js_acc(one, "{\"x\":1}", 0) && js_acc(one, "{\"y\":1}", 0) && !js_acc(one, "{}", 0));
}

TEST_CASE(grammar_json_schema_errors)
{
    grammar g;
    const char *cases[][2] = {
        {"{\"properties\":{\"x\":{\"propertyNames\":{}}}}", "unsupported JSON Schema keyword 'propertyNames' at #/properties/x"},
        {"{\"type\":\"string\",\"format\":\"hostname\"}", "format 'hostname'"},
        {"{\"type\":\"string\",\"pattern\":\"^a+b+$\",\"maxLength\":3}", "'pattern': beside minLength/maxLength only"},
        {"{\"type\":\"number\",\"minimum\":1e-30}", "'minimum': bound with more than 24 fraction digits"},
        {"{\"type\":\"string\",\"pattern\":\"(?=a)\"}", "lookaround"},
        {"{\"$ref\":\"#/$defs/missing\"}", "unresolved $ref"},
        {"{\"type\":", "invalid JSON Schema"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_EQ_INT(grammar_from_json_schema(cases[i][0], strlen(cases[i][0]), NULL, &g), STATUS_INVALID_ARG);
        if (!strstr(status_message(), cases[i][1])) fprintf(stderr, "case %zu: %s\n", i, status_message());
        CHECK(strstr(status_message(), cases[i][1]) != NULL);
        grammar_free(&g);
    }
    const char *ann = "{\"title\":\"t\",\"description\":\"d\",\"x-foo\":1,\"examples\":[1],\"type\":\"integer\"}";
    CHECK_EQ_INT(grammar_from_json_schema(ann, strlen(ann), NULL, &g), STATUS_OK);
    grammar_free(&g);
    const char *ch = "[\"yes\",\"no\",\"n/a\"]";
    CHECK_EQ_INT(grammar_from_choices(ch, strlen(ch), &g), STATUS_OK);
    CHECK(acc(&g, "n/a") && acc(&g, "no") && !acc(&g, "\"no\"") && pre(&g, "ye"));
    grammar_free(&g);
}
