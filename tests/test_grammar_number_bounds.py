"""minimum / maximum / exclusiveMinimum / exclusiveMaximum with non-integer bounds on type number
(json_schema.c js_frac_cmp: the fraction compared digit by digit against the bound's).

Oracle: exact decimal comparison (Python's Decimal, the schema's bounds read as written) on every
candidate in the grammar's number form (-?(0|[1-9][0-9]*)(.[0-9]+)?, no "-0"), and `jsonschema`
on the candidates it accepts; candidates are built around each bound's digits (its prefixes, the
digit before and after at every position, trailing zeros) so every branch of the comparison is hit."""
import json
import os
import random
import re
import sys
import zlib
from decimal import Decimal

import jsonschema
import pytest

from lightllm import _C

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_grammar_dpda import _prefixes_agree  # noqa: E402

FORM = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")

SCHEMAS = [
    '{"minimum": 0.5}',
    '{"maximum": 2.75}',
    '{"exclusiveMinimum": 0.1, "exclusiveMaximum": 1.05}',
    '{"minimum": -3.25, "maximum": -0.125}',
    '{"exclusiveMinimum": -3.25, "exclusiveMaximum": 0.125}',
    '{"minimum": 1.25, "maximum": 1.5}',
    '{"exclusiveMinimum": 1.25, "maximum": 1.2500001}',
    '{"minimum": 1e-05, "exclusiveMaximum": 0.001}',
    '{"exclusiveMinimum": 0, "maximum": 99.99}',
    '{"minimum": -0.5, "exclusiveMaximum": 0}',
    '{"minimum": -1.5, "maximum": 1.5}',
    '{"minimum": 0.01, "maximum": 100}',
    '{"minimum": 3, "exclusiveMaximum": 17.25}',
    '{"exclusiveMinimum": 0.999, "exclusiveMaximum": 1.001}',
    '{"minimum": 12.5, "exclusiveMinimum": 12.5, "maximum": 20}',          # the exclusive one is tighter
    '{"minimum": 2.5, "exclusiveMinimum": true, "maximum": 3.5, "exclusiveMaximum": true}',   # draft 4
    '{"minimum": 0.3333333333333333, "maximum": 0.6666666666666666}',
]


def bound_strings(schema):
    return [str(v) for k, v in schema.items() if not isinstance(v, bool) and k != "type"]


def candidates(schema, seed):
    """Numbers in the grammar's form near each bound, and random ones."""
    rng = random.Random(seed)
    out = {"0", "-0", "-0.0", "0.0", "1", "-1", "0.5", "-0.5", "100", "100.0001", "-100"}
    for b in bound_strings(schema):
        d = Decimal(b)
        text = format(d, "f")
        ip, _, fp = text.lstrip("-").partition(".")
        for sign in ("", "-"):
            for i in {int(ip) - 1, int(ip), int(ip) + 1}:
                if i < 0:
                    continue
                out.add(f"{sign}{i}")
                for k in range(len(fp) + 2):
                    head = fp[:k]
                    out.add(f"{sign}{i}.{head}0" if not head else f"{sign}{i}.{head}")
                    here = int(fp[k]) if k < len(fp) else 0
                    for dd in {here - 1, here, here + 1, 0, 9}:
                        if 0 <= dd <= 9:
                            for tail in ("", "0", "00", "1", "9", "0001"):
                                out.add(f"{sign}{i}.{head}{dd}{tail}")
    while len(out) < 1500:
        ip = str(rng.choice([0, 1, 2, 3, 12, 17, 20, 99, 100, rng.randint(0, 10 ** 4)]))
        fp = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 9)))
        out.add(rng.choice(["", "-"]) + ip + ("." + fp if fp else ""))
    return sorted(out)


def within(schema, x):
    lo, hi = schema.get("minimum"), schema.get("maximum")
    emn, emx = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    ok = True
    if lo is not None and not isinstance(lo, bool):
        ok &= x > lo if emn is True else x >= lo
    if hi is not None and not isinstance(hi, bool):
        ok &= x < hi if emx is True else x <= hi
    if emn is not None and not isinstance(emn, bool):
        ok &= x > emn
    if emx is not None and not isinstance(emx, bool):
        ok &= x < emx
    return ok


@pytest.mark.parametrize("bounds", SCHEMAS)
def test_number_bounds_match_decimal_comparison(bounds):
    schema = json.loads(bounds, parse_float=Decimal)
    schema["type"] = "number"
    src = json.dumps({"type": "number", **json.loads(bounds)})
    g = _C.GrammarCompiler().compile("json_schema", src)
    draft4 = isinstance(schema.get("exclusiveMinimum"), bool)
    validator = (jsonschema.Draft4Validator if draft4 else jsonschema.Draft202012Validator)(json.loads(src))
    accepted = 0
    for s in candidates(schema, zlib.crc32(bounds.encode())):
        x = Decimal(s)
        want = FORM.fullmatch(s) is not None and not (s.startswith("-") and x == 0) and within(schema, x)
        m = g.matcher()
        got = m.advance_bytes(s.encode()) and m.is_accepting()
        assert got == want, (bounds, s)
        if got:
            accepted += 1
            assert validator.is_valid(json.loads(s)), (bounds, s)
    assert accepted > 0, bounds


def test_number_bounds_inside_objects_and_prefixes_agree_with_earley():
    schema = {"type": "object", "properties": {"p": {"type": "number", "exclusiveMinimum": 0.25, "maximum": 7.5},
                                               "q": {"type": ["number", "null"], "minimum": -2.5}},
              "required": ["p"]}
    src = json.dumps(schema)
    g = _C.GrammarCompiler().compile("json_schema", src)
    for text in ('{"p":0.26,"q":-2.5}', '{"p":7.50,"q":null}', '{"p":0.25}', '{"p":7.51}', '{"p":3,"q":-2.51}'):
        _prefixes_agree(g, src, text.encode())
        m = g.matcher()
        ok = m.advance_bytes(text.encode()) and m.is_accepting()
        assert ok == jsonschema.Draft202012Validator(schema).is_valid(json.loads(text)), text


def test_integer_type_rounds_non_integer_bounds():
    g = _C.GrammarCompiler().compile("json_schema", '{"type": "integer", "minimum": 1.5, "exclusiveMaximum": 4.0}')
    for s, want in (("1", False), ("2", True), ("3", True), ("4", False), ("2.0", False), ("2.5", False)):
        m = g.matcher()
        assert (m.advance_bytes(s.encode()) and m.is_accepting()) == want, s


@pytest.mark.parametrize("schema,msg", [
    ({"type": "number", "minimum": 2.5, "maximum": 1.5}, "language is empty"),
    ({"type": "number", "exclusiveMinimum": 1.5, "exclusiveMaximum": 1.5}, "language is empty"),
    ({"type": "number", "minimum": 1e-30}, "unsupported JSON Schema keyword 'minimum': bound with more than 24"),
    ({"type": "number", "exclusiveMaximum": -1e-30}, "unsupported JSON Schema keyword 'exclusiveMaximum'"),
])
def test_number_bounds_refused_with_the_keyword(schema, msg):
    with pytest.raises(ValueError, match=msg):
        _C.GrammarCompiler().compile("json_schema", json.dumps(schema))
