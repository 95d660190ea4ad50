"""minLength / maxLength count code points of the decoded string, as `jsonschema` does (len() after
json.loads): a surrogate pair written as two \\u escapes is ONE character, a raw 4-byte UTF-8
character is one, a \\u escape of a BMP character is one, a lone low-surrogate escape is one.  A lone
high-surrogate escape is rejected in a length-bounded string (json_schema.c js_counted_char: counting
it would need a lookahead); free strings accept any escape.

Each schema is compiled twice: with the bounds expanded (counter threshold 1,000) and with the
bounds as a counter (threshold lowered to 3).  Instances sit at min-1, min, max, max+1 characters;
the matcher must agree with jsonschema on every valid-JSON instance (lone high surrogates aside) and
with the Earley recognizer (bounds expanded) on every instance, whole and byte by byte."""
import json
import os
import sys

import pytest

from lightllm import _C

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_grammar_dpda import QWEN3, _masks_along, _prefixes_agree, _qwen3_compiler, _string_schema  # noqa: E402

PAIR, PAIR_UC = "\\ud83d\\ude00", "\\uD83D\\uDE00"       # U+1F600 as two escapes
RAW4 = "🙂"                                               # U+1F642, 4 bytes of UTF-8
BMP = "\\u00e9"                                           # é as an escape
LOW = "\\udc00"                                           # a lone low surrogate
HIGH = "\\ud83d"                                          # a lone high surrogate (rejected when bounded)
UNITS = [PAIR, PAIR_UC, RAW4, BMP, "\\u4E2D", "\\uD7FF", "\\uE000", LOW, "a", "\\n"]
BOUNDS = [(3, 5), (4, 4), (3, None), (None, 4)]


@pytest.fixture(params=["expanded", "counter"])
def mode(request):
    prev = _C.grammar_set_counter_threshold(3 if request.param == "counter" else 1000)
    yield request.param
    _C.grammar_set_counter_threshold(prev)


schema_of = _string_schema


def texts_at_bounds(lo, hi):
    """JSON texts of min-1, min, max, max+1 characters, each character one unit, and mixes."""
    ns = sorted({n for n in ((lo or 0) - 1, lo or 0, hi if hi is not None else 7, (hi if hi is not None else 7) + 1) if n >= 0})
    out = []
    for n in ns:
        for u in UNITS:
            out.append('"' + u * n + '"')
        mix = [PAIR, "x", RAW4, BMP, PAIR_UC, LOW, "\\t"]
        out.append('"' + "".join(mix[i % len(mix)] for i in range(n)) + '"')
        if n >= 1:   # a pair followed by a lone low surrogate: 2 characters from 3 escapes
            out.append('"' + PAIR + LOW + "y" * (n - 2) + '"' if n >= 2 else '"' + PAIR + '"')
    return out


def agree(schema, texts, expect_counter):
    import jsonschema
    src = json.dumps(schema)
    g = _C.GrammarCompiler().compile("json_schema", src)
    assert (g.num_counters >= 1) == expect_counter
    raw = [t.encode() for t in texts]
    ref = _C.grammar_accepts_many("json_schema", src, raw)
    v = jsonschema.Draft202012Validator(schema)
    for t, b, r in zip(texts, raw, ref):
        m = g.matcher()
        got = m.advance_bytes(b) and m.is_accepting()
        assert got == r, (schema, t)
        assert got == v.is_valid(json.loads(t)), (schema, t, len(json.loads(t)))
    return g, src, raw


@pytest.mark.parametrize("lo,hi", BOUNDS)
def test_length_counts_code_points_like_jsonschema(mode, lo, hi):
    texts = texts_at_bounds(lo, hi)
    g, src, raw = agree(schema_of(lo, hi), texts, mode == "counter")
    # byte by byte on the surrogate-pair texts: the matcher moves exactly when Earley can extend
    for b in [x for x in raw if PAIR.encode() in x][:4]:
        _prefixes_agree(g, src, b)


def test_pair_counts_one_not_two(mode):
    """The bug this file guards: n pairs passed minLength 2n and failed maxLength n."""
    g = _C.GrammarCompiler().compile("json_schema", json.dumps(schema_of(3, 4)))
    for n, ok in ((2, False), (3, True), (4, True), (5, False)):
        for u in (PAIR, PAIR_UC, "\\uD83d\\udE00"):
            m = g.matcher()
            assert (m.advance_bytes(('"' + u * n + '"').encode()) and m.is_accepting()) == ok, (u, n)


def test_lone_surrogates(mode):
    """Lone low surrogates count one (json.loads keeps them, jsonschema counts them); a lone high
    surrogate is rejected inside length bounds (documented subset) but accepted in a free string."""
    import jsonschema
    schema = schema_of(1, 3)
    g = _C.GrammarCompiler().compile("json_schema", json.dumps(schema))
    v = jsonschema.Draft202012Validator(schema)
    for t in ('"' + LOW + '"', '"' + LOW * 3 + '"', '"' + LOW + PAIR + '"', '"' + PAIR + LOW + LOW + '"'):
        m = g.matcher()
        assert m.advance_bytes(t.encode()) and m.is_accepting() and v.is_valid(json.loads(t)), t
    m = g.matcher()
    assert not m.advance_bytes(('"' + LOW * 4 + '"').encode())
    for t in ('"' + HIGH + '"', '"' + HIGH + 'a"', '"' + HIGH + HIGH + LOW + '"', '"' + LOW + HIGH + '"'):
        assert v.is_valid(json.loads(t))             # valid for jsonschema ...
        m = g.matcher()
        assert not (m.advance_bytes(t.encode()) and m.is_accepting()), t   # ... not generated here
    free = _C.GrammarCompiler().compile("json_schema", '{"type": "string"}')
    m = free.matcher()
    assert m.advance_bytes(('"' + HIGH + 'a' + HIGH + '"').encode()) and m.is_accepting()


def test_raw_surrogate_bytes_rejected(mode):
    """UTF-8-encoded surrogates (ED A0 80) are not valid UTF-8 (json.loads of the bytes fails)."""
    g = _C.GrammarCompiler().compile("json_schema", json.dumps(schema_of(0, 3)))
    m = g.matcher()
    assert not m.advance_bytes(b'"\xed\xa0\x80')


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer absent")
def test_surrogate_masks_equal_brute_force_qwen3(mode):
    tok, gc = _qwen3_compiler()
    for schema, value in ((schema_of(3, 5), PAIR + RAW4 + BMP + PAIR_UC + "z"),
                          (schema_of(4, 8), LOW + PAIR + "ab" + PAIR + "\\u00E9"),
                          (schema_of(None, 3), PAIR * 3)):
        g = gc.compile("json_schema", json.dumps(schema))
        assert (g.num_counters >= 1) == (mode == "counter")
        _masks_along(g, tok, '"' + value + '"', schema, byte_every=1)
