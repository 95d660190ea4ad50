"""multipleOf with an integer divisor (json_schema.c js_int_multiple: the digits run through the
remainders mod k), alone, beside bounds (written out, or one bound near 0), and the refusals.

Oracle: `jsonschema` (integers divide exactly) on every canonical integer in a range and on other
number spellings, which the grammar never writes (it writes canonical integers only)."""
import json
import re

import jsonschema
import pytest

from lightllm import _C

CASES = [
    {"type": "integer", "multipleOf": 5},
    {"type": "integer", "multipleOf": 7},
    {"type": "number", "multipleOf": 3},
    {"type": "number", "multipleOf": 1.0},
    {"type": "integer", "multipleOf": 16, "minimum": 0},
    {"type": "integer", "multipleOf": 11, "exclusiveMinimum": 0},
    {"type": "integer", "multipleOf": 10, "maximum": 5},
    {"type": "integer", "multipleOf": 4, "minimum": -50, "maximum": 130},
    {"type": "integer", "multipleOf": 13, "exclusiveMinimum": 1, "exclusiveMaximum": 1000},
    {"type": "integer", "allOf": [{"multipleOf": 4}, {"multipleOf": 6}]},   # 12
    {"type": "integer", "multipleOf": 997},
]


def candidates():
    out = [str(i) for i in range(-1100, 1101)]
    out += ["-0", "00", "05", "5.0", "10.5", "1e1", "123456789", "-99990", "100000000000000000000", "9979979"]
    return out


@pytest.mark.parametrize("i", range(len(CASES)))
def test_multiple_of_matches_jsonschema(i):
    schema = CASES[i]
    g = _C.GrammarCompiler().compile("json_schema", json.dumps(schema))
    v = jsonschema.Draft202012Validator(schema)
    accepted = 0
    for s in candidates():
        m = g.matcher()
        got = m.advance_bytes(s.encode()) and m.is_accepting()
        canonical = re.fullmatch(r"0|-?[1-9][0-9]*", s) is not None   # "00", "05" are not JSON at all
        want = canonical and v.is_valid(json.loads(s))
        if s == "-0":   # valid; the plain integer grammar writes it, the multiples' does not
            assert not got or v.is_valid(0)
            continue
        assert got == want, (schema, s)
        accepted += got
    assert accepted >= 3   # at least 0 and ±k


def test_multiple_of_inside_objects_prefixes():
    schema = {"type": "object", "properties": {"m": {"type": "integer", "multipleOf": 15, "minimum": 0}}}
    g = _C.GrammarCompiler().compile("json_schema", json.dumps(schema))
    for text, want in (('{"m":0}', True), ('{"m":45}', True), ('{"m":-15}', False), ('{"m":40}', False)):
        m = g.matcher()
        assert (m.advance_bytes(text.encode()) and m.is_accepting()) == want, text


@pytest.mark.parametrize("schema,msg", [
    ({"type": "number", "multipleOf": 0.01}, "'multipleOf': a non-integer divisor"),
    ({"type": "integer", "multipleOf": 1001}, "'multipleOf': a divisor above 1000"),
    ({"type": "integer", "multipleOf": 5, "minimum": 100}, "'multipleOf': beside minimum/maximum"),
    ({"type": "integer", "multipleOf": 3, "minimum": 0, "maximum": 3000}, "'multipleOf': beside minimum/maximum"),
    ({"type": "integer", "multipleOf": 0}, "multipleOf must be a number above 0"),
])
def test_multiple_of_refused_with_the_keyword(schema, msg):
    with pytest.raises(ValueError, match=msg):
        _C.grammar_from_json_schema(json.dumps(schema))
