"""patternProperties (json_schema.c js_pattern_members; regex.c grammar_add_regex_keys: a Thompson
NFA of the patterns and the declared names, determinised): an extra key takes the schemas of the
patterns it matches, a key none matches additionalProperties' (any value when absent; not written
beside additionalProperties: false), declared names the patterns match take theirs too.

Oracle: `jsonschema` on objects built from candidate keys (matching the pattern or not, near the
declared names, with escapes-worthy characters) and values of several types, written in the
grammar's order (declared properties first); masks against brute force with Qwen3."""
import itertools
import json
import os
import random
import re
import sys
import zlib

import jsonschema
import pytest

from lightllm import _C

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_grammar_dpda import QWEN3, _masks_along, _prefixes_agree, _qwen3_compiler  # noqa: E402

PATTERNS = ["^[a-z_]+$", "^.+$", ".+", ".", "a", "^[a-zA-Z0-9-_]+$", r"^\d+$", "^[a-zA-Z][a-zA-Z0-9_]*$",
            "^x-", "sdkrel:.*", "^[a-z]{1,2}$", r"\w{2}", "^$", "^a|b$", "[^a-z]", "^a*b*$", "^(?:ab|c)$",
            "^(x-|X-)", "^([a-z][0-9])+$", "^(?:a(?:b|_)?)*$", "^(name_(a|bc){0,2})$", "(ab){2,}"]
KEYS = ["", "a", "ab", "abc", "a_b", "A", "Ab", "1", "12", "x-", "x-y", "x_y", "sdkrel:1", "a b", "é", "a\nb",
        "\"", "q\"", "\\", "a-1", "name", "nam", "names", "Name", "id", "ID"]
VALUES = [1, "s", None, [1]]


def schemas(pattern):
    props = {"name": {"type": "string"}, "id": {"type": "integer"}}
    yield {"type": "object", "properties": props, "patternProperties": {pattern: {"type": "integer"}}}
    yield {"type": "object", "properties": props, "patternProperties": {pattern: {"type": "string"}},
           "additionalProperties": {"type": "integer"}}
    yield {"type": "object", "patternProperties": {pattern: {"type": "null"}}, "additionalProperties": True,
           "required": ["id"]}
    # beside additionalProperties: false (declared names the pattern matches take both schemas)
    yield {"type": "object", "properties": props, "patternProperties": {pattern: {"type": ["integer", "string"]}},
           "additionalProperties": False}
    # several patterns: a key takes every matching one's schema
    yield {"type": "object", "properties": props, "patternProperties": {pattern: {"type": ["integer", "null"]},
                                                                        "^[a-c]": {"type": ["integer", "string"]}}}
    yield {"type": "object", "patternProperties": {pattern: {"type": "integer"}, "b": {"minimum": 1},
                                                   "^$": {"type": "array"}}, "additionalProperties": False}


def objects(schema, seed):
    rng = random.Random(seed)
    declared = list(schema.get("properties", {})) + [r for r in schema.get("required", [])
                                                     if r not in schema.get("properties", {})]
    out = []
    for k in KEYS:
        for v in VALUES:
            out.append({k: v})
            if declared:
                out.append({declared[0]: "s" if declared[0] == "name" else 1, **({k: v} if k != declared[0] else {})})
    for _ in range(300):
        obj = {}
        for d in declared:
            if rng.random() < 0.5:
                obj[d] = rng.choice(VALUES + ["s"])
        for k in rng.sample(KEYS, rng.randint(0, 3)):
            if k not in obj:
                obj[k] = rng.choice(VALUES)
        out.append(obj)
    return out


def ordered_text(obj, schema):
    declared = list(schema.get("properties", {})) + [r for r in schema.get("required", [])
                                                     if r not in schema.get("properties", {})]
    keys = [k for k in declared if k in obj] + [k for k in obj if k not in declared]
    return json.dumps({k: obj[k] for k in keys}, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_keys_beside_open_objects_match_jsonschema(pattern):
    for j, schema in enumerate(schemas(pattern)):
        validator = jsonschema.Draft202012Validator(schema)
        try:
            g = _C.GrammarCompiler().compile("json_schema", json.dumps(schema))
        except ValueError as e:
            assert "language is empty" in str(e), (pattern, j, e)
            g = None
        seen = accepted = 0
        for obj in objects(schema, zlib.crc32(f"{pattern}{j}".encode())):
            text = ordered_text(obj, schema)
            want = validator.is_valid(obj)
            m = g.matcher() if g else None
            got = bool(m and m.advance_bytes(text) and m.is_accepting())
            assert got == want, (pattern, j, text)
            seen += 1
            accepted += got
        assert seen > 100


def test_pattern_keys_prefixes_agree_with_earley():
    schema = {"type": "object", "properties": {"name": {"type": "string"}},
              "patternProperties": {"^[a-z_]+$": {"type": "integer"}}}
    src = json.dumps(schema)
    g = _C.GrammarCompiler().compile("json_schema", src)
    for text in ('{"name":"x","abc":1,"A-1":[]}', '{"nam":2,"Name":"s"}', '{"name":"x","abc":"s"}'):
        _prefixes_agree(g, src, text.encode())


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer not present")
def test_pattern_keys_masks_equal_brute_force():
    tok, comp = _qwen3_compiler()
    schema = {"type": "object", "properties": {"Title": {"type": "string"}},
              "patternProperties": {"^[a-z_]+$": {"type": "integer"}}, "additionalProperties": {"type": "string"}}
    g = comp.compile("json_schema", json.dumps(schema))
    for text in ('{"Title":"Ann","age_years":41,"City":"Paris","zip":7}', '{"Name-2":"x","n":1}'):
        checked, _ = _masks_along(g, tok, text, text)
        assert checked > 5


@pytest.mark.parametrize("pattern,msg", [
    ("^a{2000}$", "too large"),
    ("^(?:[a-z]{1,40}-){1,40}$", "too large"),
    ("a(?=b)", "lookaround"),
    ("^a$b", "anchor '$' inside the pattern"),
])
def test_pattern_keys_outside_the_subset_are_named(pattern, msg):
    schema = {"type": "object", "patternProperties": {pattern: {"type": "integer"}}}
    with pytest.raises(ValueError, match=r"unsupported JSON Schema keyword 'patternProperties': .*" + re.escape(msg)):
        _C.grammar_from_json_schema(json.dumps(schema))
