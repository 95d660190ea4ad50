"""JSON Schema `not` (json_schema.c js_expand): of {type} (those types dropped), of {not X} (X),
of {} or true (nothing passes), of false (no constraint) — checked against `jsonschema` on values
of every type; any other `not` is refused naming it, and an unsupported keyword under it is named
at its own path."""
import json

import pytest

from lightllm import _C

VALUES = [None, True, False, 0, 7, -3, 1.5, "", "s", "null", [], [1], {}, {"a": 1}, {"b": "x"}]

SCHEMAS = [
    {"not": {"type": "null"}},
    {"not": {"type": ["string", "number"]}},
    {"type": ["string", "null", "integer"], "not": {"type": "null"}},
    {"not": {"type": "integer"}, "type": ["string", "array"]},
    {"not": {"not": {"type": "string", "maxLength": 3}}},
    {"not": {"not": {"not": {"type": "object"}}}},
    {"properties": {"a": {"not": {}}}},
    {"properties": {"a": {"not": True}}},
    {"properties": {"a": {"not": False}}},
    {"anyOf": [{"type": "integer", "minimum": 5}, {"not": {"type": ["integer", "number", "object"]}}]},
    {"allOf": [{"not": {"type": "boolean"}}, {"not": {"type": "array"}}]},
    {"type": "array", "items": {"not": {"type": "string"}}},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_not_agrees_with_jsonschema(schema):
    import jsonschema
    v = jsonschema.Draft202012Validator(schema)
    try:
        g = _C.GrammarCompiler().compile("json_schema", json.dumps(schema))
    except ValueError as e:   # a root nothing passes
        assert "language is empty" in str(e) and not any(v.is_valid(x) for x in VALUES)
        return
    for x in VALUES + [[x] for x in VALUES] + [{"a": x} for x in VALUES]:
        text = json.dumps(x, separators=(",", ":"))
        m = g.matcher()
        assert (m.advance_bytes(text.encode()) and m.is_accepting()) == v.is_valid(x), (schema, text)


@pytest.mark.parametrize("schema,msg", [
    ({"not": {"required": ["a"]}}, "keyword 'not': only not of .* at #/not"),
    ({"not": {"enum": [1, 2]}}, "keyword 'not': only not of .* at #/not"),
    ({"type": "number", "not": {"type": "integer"}}, "keyword 'not': numbers that are not integers at #"),
    ({"allOf": [{"enum": [7]}, {"not": {"multipleOf": 2}}]}, "keyword 'not': only not of .* at #/allOf/1/not"),
    ({"properties": {"x": {"not": {"not": {"propertyNames": {}}}}}}, "keyword 'propertyNames' at #/properties/x/not/not"),
])
def test_other_not_is_named(schema, msg):
    with pytest.raises(ValueError, match="unsupported JSON Schema " + msg):
        _C.grammar_from_json_schema(json.dumps(schema))
