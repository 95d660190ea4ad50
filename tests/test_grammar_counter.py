"""Bounded repetitions kept as a counter on the DPDA stack (grammar.h grammar_counted, dpda.h
"Counters"): JSON Schema maxLength/minLength and maxItems/minItems, regex and EBNF {m,n}.

The counter threshold is lowered to 3 here so that small bounds take the counter path; the oracles
know the bounds independently of the counter: the Earley recognizer runs on the grammar with the
bounds expanded (grammar_expand_counted), `jsonschema` validates whole instances, and the fast
token mask is compared with brute force (every token's bytes fed to the matcher) on the real Qwen3
vocabulary, including the masks computed near a counter's bound (token_mask_fill_near_bound)."""
import json
import os
import sys

import pytest

from lightllm import _C

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_grammar_dpda import QWEN3, _masks_along, _prefixes_agree, _qwen3_compiler, _string_schema  # noqa: E402


@pytest.fixture
def low_threshold():
    prev = _C.grammar_set_counter_threshold(3)
    yield
    _C.grammar_set_counter_threshold(prev)


s = _string_schema


def arr(items, lo=None, hi=None):
    d = {"type": "array", "items": items}
    if lo is not None:
        d["minItems"] = lo
    if hi is not None:
        d["maxItems"] = hi
    return d


def obj(props):
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


TREE = {"$defs": {"node": {"type": "object", "properties": {"v": s(1, 4), "kids": arr({"$ref": "#/$defs/node"}, 0, 3)},
                           "required": ["v", "kids"], "additionalProperties": False}},
        "$ref": "#/$defs/node"}

# (schema, instances around the bounds) -- characters of several UTF-8 lengths and escapes, each one character
CHARS = ["a", "é", "日", "🙂", "\n", "\"", "\u00e9"]
JSON_CASES = [
    (s(3, 7), [c * n for c in CHARS for n in (2, 3, 7, 8)] + ["ab\ncd", "x🙂y日"]),
    (s(None, 5), ["", "abcde", "abcdef", "🙂🙂🙂🙂🙂", "🙂🙂🙂🙂🙂🙂"]),
    (s(4), ["abc", "abcd", "日本語のテキスト"]),
    (arr({"type": "integer"}, 3, 5), [[1, 2], [1, 22, 333], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6], []]),
    (arr(s(0, 3), None, 4), [[], ["", "abc"], ["a", "b", "c", "d"], ["a", "b", "c", "d", "e"], ["abcd"]]),
    (arr(obj({"name": s(3, 6)}), 1, 3), [[], [{"name": "abc"}], [{"name": "ab"}], [{"name": "abcdefg"}],
                                         [{"name": "日本語"}] * 3, [{"name": "abc"}] * 4]),
    (TREE, [{"v": "a", "kids": []}, {"v": "abcd", "kids": [{"v": "x", "kids": [{"v": "y", "kids": []}] * 3}]},
            {"v": "abcde", "kids": []}, {"v": "a", "kids": [{"v": "b", "kids": []}] * 4}, {"v": "", "kids": []}]),
]


@pytest.mark.parametrize("schema,values", JSON_CASES)
def test_counter_json_agrees_with_oracles(low_threshold, schema, values):
    import jsonschema
    src = json.dumps(schema)
    g = _C.GrammarCompiler().compile("json_schema", src)
    assert g.num_counters >= 1
    texts = [json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode() for v in values]
    ref = _C.grammar_accepts_many("json_schema", src, texts)
    for v, t, r in zip(values, texts, ref):
        m = g.matcher()
        got = m.advance_bytes(t) and m.is_accepting()
        assert got == r == jsonschema.Draft202012Validator(schema).is_valid(v), (schema, t)
    # byte by byte: the matcher moves exactly when Earley (bounds expanded) can extend the prefix
    for t in texts[:6]:
        _prefixes_agree(g, src, t)


@pytest.mark.parametrize("kind,source,texts", [
    ("regex", "[a-z]{3,7}", [b"ab", b"abc", b"abcdefg", b"abcdefgh"]),
    ("regex", "(ab|c){2,5}x", [b"abx", b"abcx", b"cccccx", b"ccccccx", b"ababababab" + b"x"]),
    ("regex", "[0-9]{4,}-", [b"123-", b"1234-", b"123456789-"]),
    ("ebnf", 'root ::= "<" [a-c]{2,4} ">"', [b"<a>", b"<ab>", b"<abcc>", b"<abcab>"]),
])
def test_counter_regex_ebnf_agree_with_earley(low_threshold, kind, source, texts):
    g = _C.GrammarCompiler().compile(kind, source)
    assert g.num_counters == 1
    ref = _C.grammar_accepts_many(kind, source, texts)
    assert any(ref) and not all(ref)
    for t, r in zip(texts, ref):
        m = g.matcher()
        assert (m.advance_bytes(t) and m.is_accepting()) == r, t


def test_counter_ambiguous_repetition_falls_back_to_expansion(low_threshold):
    """A repetition whose iteration boundaries a counter cannot see ([a-z]{3,5} followed by [a-z])
    compiles with the bounds expanded, and still agrees with Earley."""
    g = _C.GrammarCompiler().compile("regex", "[a-z]{3,5}[a-z]")
    assert g.num_counters == 0
    for t in (b"abc", b"abcd", b"abcdef", b"abcdefg"):
        m = g.matcher()
        assert (m.advance_bytes(t) and m.is_accepting()) == _C.grammar_accepts("regex", "[a-z]{3,5}[a-z]", t)


def test_counter_rollback_and_forced_bytes(low_threshold):
    """Rollback restores counts (they live in the persistent stack nodes); jump-forward sees the bound."""
    g = _C.GrammarCompiler().compile("json_schema", json.dumps(s(None, 4)))
    m = g.matcher()
    assert m.advance_bytes('"ab日🙂'.encode()) and m.forced_bytes() == b'"' and not m.advance_bytes(b"x")
    m.rollback_bytes(4)                                   # back to '"ab日': one more character allowed
    assert m.forced_bytes() == b"" and m.advance_bytes(b"y") and m.forced_bytes() == b'"'
    m.rollback_bytes(4)                                   # '"ab' (y and the 3 bytes of 日)
    assert m.advance_bytes(b'cd"') and m.is_accepting()
    a = _C.GrammarCompiler().compile("json_schema", json.dumps(arr({"type": "integer"}, 2, 3))).matcher()
    assert a.advance_bytes(b"[1,22,3") and not a.advance_bytes(b",") and a.advance_bytes(b"]") and a.is_accepting()
    a.rollback_bytes(4)                                   # '[1,22': a third item allowed again
    assert a.advance_bytes(b",4,") is False and a.advance_bytes(b",4]") and a.is_accepting()


def test_counter_large_bounds_compile_small():
    """At the default threshold an 8192-character string and a 5000-item array compile to a few
    states (they were "grammar too large"), and the bounds hold at max and max + 1."""
    gc = _C.GrammarCompiler()
    g = gc.compile("json_schema", json.dumps(obj({"s": s(2, 8192), "xs": arr({"type": "integer"}, None, 5000)})))
    assert g.num_counters == 2 and g.num_states < 200
    for n, items, ok in ((8192, 5000, True), (8193, 1, False), (1, 1, False), (2, 5001, False)):
        text = json.dumps({"s": "é" * n, "xs": list(range(items))}, ensure_ascii=False, separators=(",", ":")).encode()
        m = g.matcher()
        assert (m.advance_bytes(text) and m.is_accepting()) == ok, (n, items)


def test_counter_default_threshold():
    """The default threshold (grammar.h GRAMMAR_COUNTER_THRESHOLD, 255): a bound of 254 is expanded,
    255 is a counter (maxLength, maxItems and regex {m,n} alike); both keep their bounds."""
    assert _C.grammar_set_counter_threshold(0) == 255
    gc = _C.GrammarCompiler()
    for n, counted in ((254, False), (255, True)):
        for schema in (s(2, n), arr({"type": "integer"}, 2, n), {"type": "string", "pattern": "^[a-z]{2,%d}$" % n}):
            g = gc.compile("json_schema", json.dumps(schema))
            assert (g.num_counters >= 1) == counted, (n, schema)
            for k, ok in ((1, False), (2, True), (n, True), (n + 1, False)):
                v = "a" * k if schema["type"] == "string" else list(range(k))
                m = g.matcher()
                text = json.dumps(v, separators=(",", ":")).encode()
                assert (m.advance_bytes(text) and m.is_accepting()) == ok, (n, schema, k)


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer absent")
def test_counter_masks_equal_brute_force_qwen3(low_threshold):
    """Fast masks equal brute force at every token (and every other byte) of texts that reach the
    bounds exactly, with multi-character tokens crossing them; the near-bound path is taken."""
    tok, gc = _qwen3_compiler()
    cases = [
        (s(3, 8), "a\\n🙂é"),
        (s(None, 12), "hello wörld!"),
        (s(5, 40), "Größe 🙂 日本語のテキスト"),
        (s(6, 64), "数据" * 3),
        (s(300), "x" * 150 + " 日本語 " * 30),
        (s(0, 200), "y" * 120 + "é" * 79 + "\\t"),
        (s(4, 30), "\\u00e9\\t\\\"quoted\\\" \\/ end"),
        (arr(s(0, 3), 3, 5), ["", "abc", "日本語", "🙂🙂"]),
        (arr({"type": "integer"}, 4, 6), [1, 22, 333, 4444, 5]),
        (arr(obj({"a": s(3, 10)}), None, 4), [{"a": "xyz"}, {"a": "0123456789"}]),
    ]
    near = 0
    for schema, value in cases:
        g = gc.compile("json_schema", json.dumps(schema))
        assert g.num_counters >= 1
        text = ('"' + value + '"' if schema.get("type") == "string"
                else json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        _masks_along(g, tok, text, schema, byte_every=2)
        near += g.mask_near_bound
    assert near > 100
