"""minProperties / maxProperties on objects with declared properties (json_schema.c
js_counted_members): the declared-member chain is expanded by "members written so far", extra
members (additionalProperties) count too, and a prefix is accepted only when some completion meets
both bounds.  Bounds that cannot be met (maxProperties below the required count, minProperties above
maxProperties or above the members additionalProperties: false allows) are a compile-time error
naming the keyword; a count too large to expand is an "unsupported ... too large" error.

Oracles: `jsonschema` on whole instances (every subset of the declared members, in declared order,
with 0-3 extra members), the Earley recognizer on the front end's grammar (whole and byte by byte),
random walks of the matcher (what it accepts jsonschema accepts; it never reaches a dead end), and
the fast token mask against brute force on the real Qwen3 vocabulary."""
import itertools
import json
import os
import random
import sys

import jsonschema
import pytest

from lightllm import _C

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_grammar_dpda import QWEN3, _masks_along, _prefixes_agree, _qwen3_compiler  # noqa: E402
from test_grammar_frontends import MASKBENCH, dump, reorder  # noqa: E402

VALUES = {"a": 1, "b": "x", "c": True, "d": None}          # a value valid for each declared property
EXTRA_KEYS = ["x", "y", "z"]


def obj(required=("a",), optional=("b", "c"), extra=None, **bounds):
    """a: integer, b: string, c: boolean, d: null (declared in that order); extra is the
    additionalProperties value (None: absent); bounds are minProperties / maxProperties."""
    types = {"a": "integer", "b": "string", "c": "boolean", "d": "null"}
    names = [k for k in types if k in required or k in optional]
    d = {"type": "object", "properties": {k: {"type": types[k]} for k in names}, "required": list(required)}
    if extra is not None:
        d["additionalProperties"] = extra
    d.update({("minProperties" if k == "lo" else "maxProperties"): v for k, v in bounds.items()})
    return d


# (schema, value of an extra member); the bounds bind in all but the last two
SCHEMAS = [
    (obj(lo=2), "v"),                                              # extras allowed (absent)
    (obj(extra=True, lo=3), "v"),
    (obj(extra=False, lo=2, hi=2), None),
    (obj(extra={"type": "integer"}, hi=2), 7),
    (obj(required=(), optional=("a", "b", "c"), extra=False, lo=1), None),   # MaskBench's common case
    (obj(required=(), optional=("a", "b", "c"), extra=False, lo=3), None),   # minProperties = all
    (obj(required=(), optional=("a", "b", "c"), hi=0), "v"),                # only {}
    (obj(required=(), optional=("a", "b", "c"), hi=1), "v"),
    (obj(required=("a", "c"), optional=("b", "d"), lo=3, hi=4), "v"),
    (obj(required=("a", "b"), optional=("c",), extra={"type": "string"}, hi=2), "s"),   # max = required
    (obj(extra=False, lo=0, hi=5), None),                         # bounds that never bind: the plain chain
    (obj(lo=1), "v"),
]


def instances(schema, extra_value):
    """Every subset of the declared members (declared order) with 0-3 extra members after them."""
    names = list(schema["properties"])
    out = []
    for r in range(len(names) + 1):
        for subset in itertools.combinations(names, r):
            for e in range(4):
                d = {k: VALUES[k] for k in subset}
                d.update({k: extra_value if extra_value is not None else 1 for k in EXTRA_KEYS[:e]})
                out.append(d)
    return out


def walk(g, rng, limit=300):
    """A random walk of the matcher: any allowed byte (structural ones preferred, so strings end),
    stopping at an accepting state now and then; returns (bytes, accepting) or None if too long."""
    m, text = g.matcher(), bytearray()
    while len(text) < limit:
        if m.is_accepting() and rng.random() < 0.3:
            return bytes(text), True
        allowed = [b for b in range(256) if m.advance_bytes(bytes([b])) and (m.rollback_bytes(1) or True)]
        if not allowed:
            return bytes(text), m.is_accepting()
        pref = [b for b in allowed if b in b'{}[],:"0123456789tfn']
        b = rng.choice(pref if pref and rng.random() < 0.8 else allowed)
        assert m.advance_bytes(bytes([b]))
        text.append(b)
    return None


@pytest.mark.parametrize("whitespace", [False, True])
@pytest.mark.parametrize("schema,extra_value", SCHEMAS)
def test_count_agrees_with_jsonschema(schema, extra_value, whitespace):
    src = json.dumps(schema)
    g = _C.GrammarCompiler().compile("json_schema", src, whitespace)
    v = jsonschema.Draft202012Validator(schema)
    values = instances(schema, extra_value)
    seps = (", ", ": ") if whitespace else (",", ":")
    texts = [json.dumps(d, separators=seps).encode() for d in values]
    ref = _C.grammar_accepts_many("json_schema", src, texts, whitespace)
    for d, t, r in zip(values, texts, ref):
        m = g.matcher()
        got = m.advance_bytes(t) and m.is_accepting()
        assert got == r == v.is_valid(d), (schema, t)
    assert any(ref) or schema.get("maxProperties") == 0
    # byte by byte: the matcher moves exactly when Earley can extend the prefix (a few accepted and
    # a few rejected instances: the rejections happen at the byte that breaks a bound)
    if not whitespace:
        picks = [t for t, r in zip(texts, ref) if r][:3] + [t for t, r in zip(texts, ref) if not r][:5]
        for t in picks:
            _prefixes_agree(g, src, t)


@pytest.mark.parametrize("schema,extra_value", SCHEMAS)
def test_random_walks_are_valid_and_never_stuck(schema, extra_value):
    """What the matcher lets through is valid for jsonschema, and every prefix it allows can still be
    completed (no dead end where a bound can no longer be met)."""
    g = _C.GrammarCompiler().compile("json_schema", json.dumps(schema))
    v = jsonschema.Draft202012Validator(schema)
    rng = random.Random(json.dumps(schema))
    done = 0
    for _ in range(30):
        r = walk(g, rng)
        if r is None:
            continue
        text, accepting = r
        assert accepting, (schema, text)            # stopped only where nothing may follow: must be complete
        assert v.is_valid(json.loads(text)), (schema, text)
        done += 1
    assert done >= 10


def test_count_inside_arrays_and_allof():
    """The bounds merge across allOf parts (max of minProperties, min of maxProperties) and work on
    objects nested in arrays and properties."""
    inner = obj(required=(), optional=("a", "b"), extra=False, lo=1)
    schema = {"type": "object", "properties": {"list": {"type": "array", "items": inner}, "one": inner},
              "required": ["list"], "additionalProperties": False,
              "allOf": [{"minProperties": 1}, {"maxProperties": 1}]}
    src = json.dumps(schema)
    g = _C.GrammarCompiler().compile("json_schema", src)
    v = jsonschema.Draft202012Validator(schema)
    cases = [{"list": []}, {"list": [{}]}, {"list": [{"a": 1}, {"b": "x"}, {"a": 1, "b": "x"}]},
             {"list": [{"a": 1}], "one": {"a": 1}}, {"one": {"b": "x"}}, {"list": [{"a": 1}, {}]}]
    for d in cases:
        t = dump(d)
        m = g.matcher()
        assert (m.advance_bytes(t) and m.is_accepting()) == v.is_valid(d), t
        _prefixes_agree(g, src, t)
    merged = {"allOf": [obj(extra=False, lo=1), obj(extra=False, lo=2), {"maxProperties": 2}]}
    g = _C.GrammarCompiler().compile("json_schema", json.dumps(merged))
    v = jsonschema.Draft202012Validator(merged)
    for d in instances(obj(extra=False), None):
        m = g.matcher()
        assert (m.advance_bytes(dump(d)) and m.is_accepting()) == v.is_valid(d), d


UNSATISFIABLE = [obj(required=("a", "b"), hi=1), obj(lo=3, hi=2), obj(extra=False, lo=4),
                 obj(required=("a", "b", "c"), hi=0), {"type": "object", "additionalProperties": False, "minProperties": 1}]


@pytest.mark.parametrize("bad", UNSATISFIABLE)
def test_unsatisfiable_bounds_match_nothing(bad):
    """Bounds no instance meets give the empty language, as in jsonschema: at the root the compile
    fails naming it; as an anyOf option or an optional member it never matches and the rest does."""
    with pytest.raises(ValueError, match=r"language is empty"):
        _C.GrammarCompiler().compile("json_schema", json.dumps(bad))
    for schema, cases in [({"anyOf": [bad, {"type": "integer"}]}, [7, {}, {"a": 1}, {"a": 1, "b": "x"}]),
                          ({"type": "object", "properties": {"p": bad}}, [{}, {"p": {}}, {"p": {"a": 1}}])]:
        g = _C.GrammarCompiler().compile("json_schema", json.dumps(schema))
        v = jsonschema.Draft202012Validator(schema)
        for d in cases:
            m = g.matcher()
            assert (m.advance_bytes(dump(d)) and m.is_accepting()) == v.is_valid(d), (schema, d)
        assert v.is_valid(cases[0])


def test_too_large_count_is_unsupported():
    with pytest.raises(ValueError, match=r"unsupported JSON Schema keyword 'maxProperties': count of 5000 .*too large"):
        _C.grammar_from_json_schema(json.dumps(obj(hi=5000)))
    with pytest.raises(ValueError, match=r"'minProperties': count of 1000000 .*too large"):
        _C.grammar_from_json_schema(json.dumps(obj(lo=10 ** 6)))
    _C.grammar_from_json_schema(json.dumps(obj(hi=500)))   # 4 x 501 states: within the budget
    # without declared properties the count stays on the extra members' repetition (a counter)
    _C.grammar_from_json_schema(json.dumps({"type": "object", "minProperties": 5000}))


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer absent")
def test_count_masks_equal_brute_force_qwen3():
    tok, gc = _qwen3_compiler()
    for schema, value in ((obj(lo=2), {"a": 12, "x": "v", "yy": [1, {"k": None}]}),
                          (obj(required=(), optional=("a", "b", "c"), extra=False, lo=1), {"b": "hello", "c": False}),
                          (obj(extra={"type": "integer"}, hi=2), {"a": 1, "b": "x"})):
        g = gc.compile("json_schema", json.dumps(schema))
        _masks_along(g, tok, dump(value).decode(), schema, byte_every=1)


# MaskBench schemas that failed only for minProperties / maxProperties with declared properties
# (benchmarks/RESULTS.md 2026-11-28 survey) and compile now; the other 5 of the 24 fail on other
# keywords (format 'uri', pattern with another string constraint, uniqueItems).
MASKBENCH_COUNTED = [
    "Github_easy---o58906.json", "Github_easy---o58910.json", "Github_easy---o66294.json", "Github_easy---o70012.json",
    "Github_easy---o80293.json", "Github_hard---o20272.json", "Github_hard---o33426.json", "Github_hard---o4249.json",
    "Github_hard---o54559.json", "Github_hard---o64686.json", "Github_hard---o70296.json", "Github_hard---o89629.json",
    "Github_medium---o38619.json", "Github_medium---o48619.json", "Github_medium---o58917.json",
    "Github_medium---o71300.json", "JsonSchemaStore---bozr.json", "JsonSchemaStore---settings.job.json",
    "Snowplow---sp_347_Normalized.json"]


@pytest.mark.skipif(not os.path.isdir(MASKBENCH), reason="MaskBench data not present")
@pytest.mark.parametrize("name", MASKBENCH_COUNTED)
def test_maskbench_counted_objects(name):
    """Valid instances are accepted, invalid ones rejected (in particular those jsonschema rejects
    for a property count); random walks produce instances jsonschema accepts."""
    with open(os.path.join(MASKBENCH, name), encoding="utf-8") as f:
        case = json.load(f)
    schema = json.dumps(case["schema"], ensure_ascii=False)
    g = _C.GrammarCompiler().compile("json_schema", schema)
    v = jsonschema.validators.validator_for(case["schema"])(case["schema"])
    for t in case["tests"]:
        text = dump(reorder(t["data"], case["schema"], case["schema"]))
        if text is None:
            continue
        m = g.matcher()
        got = m.advance_bytes(text) and m.is_accepting()
        errors = list(v.iter_errors(t["data"]))
        by_count = any(e.validator in ("minProperties", "maxProperties") for err in errors
                       for e in [err] + list(err.context or []))
        assert got == t["valid"], (name, text[:200], by_count)
        assert not (by_count and got), (name, text[:200])
    rng = random.Random(name)
    for _ in range(6):
        r = walk(g, rng, limit=400)
        if r is not None and r[1]:
            assert v.is_valid(json.loads(r[0])), (name, r[0][:300])
