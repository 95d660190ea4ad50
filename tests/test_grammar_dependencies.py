"""dependencies / dependentRequired / dependentSchemas (json_schema.c js_get_deps, js_members):
when a member is present, others must be present ({required}, a list of names) or absent
({"not": {"required": [name]}}), along the declared-member chain with the presence bits the
dependencies still need.

Oracle: `jsonschema` on every subset of the members (written in the grammar's order: declared,
then required-only, then names only dependencies give), with and without an extra member, beside
min/maxProperties and additionalProperties false; masks against brute force with Qwen3."""
import itertools
import json
import os
import sys

import jsonschema
import pytest

from lightllm import _C

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_grammar_dpda import QWEN3, _masks_along, _prefixes_agree, _qwen3_compiler  # noqa: E402

P = {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}, "d": {"type": "null"}}
VALUES = {"a": 1, "b": "x", "c": True, "d": None, "zz": 0, "e": [1], "f": 2}

CASES = [
    {"properties": P, "dependencies": {"a": ["c"]}},                         # target after the trigger
    {"properties": P, "dependencies": {"c": ["a", "b"]}},                    # targets before it
    {"properties": P, "dependentRequired": {"b": ["d"], "d": ["a"]}},        # a chain
    {"properties": P, "dependencies": {"a": {"required": ["d"]}, "d": {"not": {"required": ["b"]}}}},
    {"properties": P, "dependentSchemas": {"c": {"not": {"required": ["a"]}}}, "required": ["b"]},
    {"properties": P, "dependencies": {"a": ["b"], "b": ["a"]}},             # both or neither
    {"properties": P, "dependencies": {"b": {"not": {"required": ["b"]}}}},  # b never
    {"properties": P, "dependencies": {"c": False, "a": True, "b": {"description": "no constraint"}}},
    {"properties": P, "dependencies": {"a": ["e"]}},                         # a name not declared
    {"properties": P, "dependencies": {"a": ["e"]}, "additionalProperties": False},   # so a never appears
    {"properties": P, "dependencies": {"e": ["a"], "f": {"not": {"required": ["c"]}}},
     "additionalProperties": {"type": "integer"}},
    {"properties": P, "dependencies": {"a": ["c"], "d": ["b"]}, "minProperties": 3},
    {"properties": P, "dependencies": {"a": ["b", "c"]}, "maxProperties": 2, "additionalProperties": False},
    {"properties": P, "required": ["a"], "dependencies": {"a": ["b"], "c": {"not": {"required": ["d"]}}}},
]


def order(schema):
    names = list(schema["properties"])
    for k in ("dependencies", "dependentRequired", "dependentSchemas"):
        for trig, v in schema.get(k, {}).items():
            targets = v if isinstance(v, list) else v.get("required", []) if isinstance(v, dict) else []
            targets = targets or (v.get("not", {}).get("required", []) if isinstance(v, dict) else [])
            for nm in [trig] + list(targets):
                if nm not in names:
                    names.append(nm)
    return names


def instances(schema):
    names = order(schema)
    for r in range(len(names) + 1):
        for sub in itertools.combinations(names, r):
            obj = {k: VALUES[k] for k in sub}
            yield obj
            yield {**obj, "zz": 0}


@pytest.mark.parametrize("i", range(len(CASES)))
def test_dependencies_match_jsonschema(i):
    schema = {"type": "object", **CASES[i]}
    src = json.dumps(schema)
    validator = jsonschema.Draft7Validator(schema) if "dependencies" in schema else \
        jsonschema.Draft202012Validator(schema)
    try:
        g = _C.GrammarCompiler().compile("json_schema", src)
    except ValueError as e:   # no instance meets it: refused at the root as the empty language
        assert "language is empty" in str(e)
        g = None
    accepted = 0
    for obj in instances(schema):
        text = json.dumps(obj, separators=(",", ":")).encode()
        if g is None:
            got = False
        else:
            m = g.matcher()
            got = m.advance_bytes(text) and m.is_accepting()
        assert got == validator.is_valid(obj), (schema, obj)
        accepted += got
    assert accepted > 0 or g is None


def test_dependencies_prefixes_agree_with_earley():
    schema = {"type": "object", "properties": P, "dependencies": {"a": ["c"], "c": {"not": {"required": ["b"]}}}}
    src = json.dumps(schema)
    g = _C.GrammarCompiler().compile("json_schema", src)
    for text in ('{"a":1,"c":true}', '{"a":1,"b":"x","c":true}', '{"a":1,"d":null}', '{"b":"x","d":null,"zz":1}'):
        _prefixes_agree(g, src, text.encode())


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer not present")
def test_dependencies_masks_equal_brute_force():
    tok, comp = _qwen3_compiler()
    schema = {"type": "object", "properties": P, "dependencies": {"a": ["c"], "d": {"not": {"required": ["a"]}}}}
    g = comp.compile("json_schema", json.dumps(schema))
    for text in ('{"a": 1, "b": "hello", "c": false}', '{"b": "x", "d": null}'):
        checked, _ = _masks_along(g, tok, text.replace(" ", ""), text)
        assert checked > 3


@pytest.mark.parametrize("schema,msg", [
    ({"type": "object", "dependencies": {"a": {"properties": {"b": {"type": "string"}}}}},
     "'dependencies': a dependent schema other than"),
    ({"type": "object", "dependentSchemas": {"a": {"not": {"required": ["b", "c"]}}}},
     "'dependentSchemas': a dependent schema other than"),
    ({"type": "object", "patternProperties": {"^x": {}}, "additionalProperties": False,
      "dependencies": {"a": ["x1"]}}, "'dependencies': a name not declared beside patternProperties"),
    ({"type": "object", "dependencies": {"a": 3}}, "a dependency must be a list of names or a schema"),
])
def test_dependencies_refused_with_the_keyword(schema, msg):
    with pytest.raises(ValueError, match=msg):
        _C.grammar_from_json_schema(json.dumps(schema))
