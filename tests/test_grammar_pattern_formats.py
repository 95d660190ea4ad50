"""A JSON Schema pattern (or format) beside minLength/maxLength (regex.c grammar_add_regex_bounded),
the formats uri, uri-reference (RFC 3986) and byte (base64), and patternProperties.

Oracles: Python's `re` (ASCII, as ECMA-262 has \\w \\d) with len() for pattern + bounds — the
compiled matcher must agree on every string, with the bounds expanded and as a counter;
`rfc3986_validator` (what jsonschema's format checker uses) for uri / uri-reference — equal on
every candidate except IP literals ("[...]" hosts), which are not generated; `base64` for byte;
`jsonschema` for patternProperties (objects written with the declared properties first, as the
grammar orders them)."""
import base64
import itertools
import json
import os
import random
import re
import sys
import zlib

import pytest

from lightllm import _C

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_grammar_dpda import QWEN3, _masks_along, _prefixes_agree, _qwen3_compiler  # noqa: E402


@pytest.fixture(params=["expanded", "counter"])
def mode(request):
    prev = _C.grammar_set_counter_threshold(3 if request.param == "counter" else 1000)
    yield request.param
    _C.grammar_set_counter_threshold(prev)


def accepted(g, text):
    m = g.matcher()
    return m.advance_bytes(json.dumps(text, ensure_ascii=False).encode()) and m.is_accepting()


# patterns of MaskBench schemas that carry minLength / maxLength beside them
PATTERNS = [r"^[A-Za-z0-9:_\-]+$", r"^([\w\/-]|[\w-][\w\/-]*[\w-])$", r"^$|^[a-z][a-z0-9A-Z]*$",
            r"^[0-9a-z-]*$", r"^[\+\w-]{5,96}$", r"^[0-9]{9}$", r"^(?:[a-z]{2}|x\d+y)$", r"^[^/].?$"]
BOUNDS = [(1, 4), (2, 6), (0, 3), (3, None), (None, 5), (6, 6)]
ALPHABET = "aZ09-_/: .é🙂xy"


def strings(n, longest, seed):
    rng = random.Random(seed)
    out = {""}
    for length in range(1, longest + 1):
        out.update("".join(p) for p in itertools.islice(itertools.product("a/-", repeat=length), 20))
    while len(out) < n:
        out.add("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, longest))))
    return sorted(out)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_with_length_bounds_matches_python_re(mode, pattern):
    py = re.compile(pattern, re.ASCII)
    for lo, hi in BOUNDS:
        schema = {"type": "string", "pattern": pattern}
        if lo is not None:
            schema["minLength"] = lo
        if hi is not None:
            schema["maxLength"] = hi
        try:
            g = _C.GrammarCompiler().compile("json_schema", json.dumps(schema))
        except ValueError as e:   # bounds the pattern never meets: the empty language, refused at the root
            assert "language is empty" in str(e)
            g = None
        for s in strings(300, (hi or 7) + 2, zlib.crc32(f'{pattern}{lo}{hi}'.encode())):
            want = py.search(s) is not None and len(s) >= (lo or 0) and (hi is None or len(s) <= hi)
            assert (g is not None and accepted(g, s)) == want, (pattern, lo, hi, s)


def test_pattern_with_length_bounds_prefixes_agree_with_earley(mode):
    schema = {"type": "string", "pattern": r"^([\w\/-]|[\w-][\w\/-]*[\w-])$", "minLength": 2, "maxLength": 5}
    src = json.dumps(schema)
    g = _C.GrammarCompiler().compile("json_schema", src)
    for text in ('"ab/c"', '"a//b"', '"abcdef"', '"a/"', '"-_/x"'):
        _prefixes_agree(g, src, text.encode())


def test_format_with_length_bounds():
    uuid = "123e4567-e89b-12d3-a456-426614174000"
    g = _C.GrammarCompiler().compile("json_schema", json.dumps({"type": "string", "format": "uuid", "minLength": 36}))
    assert accepted(g, uuid) and not accepted(g, uuid[:-1])
    # bounds the format can never meet: the empty language
    assert not _C.grammar_accepts("json_schema", json.dumps({"type": "string", "format": "uuid", "maxLength": 10}),
                                  json.dumps(uuid).encode())


@pytest.mark.parametrize("schema,where", [
    ({"type": "string", "pattern": "[a-z]+", "maxLength": 4}, "#/pattern"),                 # unanchored
    ({"type": "string", "pattern": "^[a-z]+:[a-z]+$", "maxLength": 4}, "#/pattern"),        # two variable pieces
    ({"type": "string", "pattern": "^(ab)+$", "minLength": 2}, "#/pattern"),                # a repeated group
    ({"properties": {"d": {"type": "string", "format": "date", "maxLength": 12}}}, "#/properties/d/format"),
])
def test_pattern_with_length_bounds_outside_the_subset_is_named(schema, where):
    kw = "format" if "format" in json.dumps(schema) else "pattern"
    with pytest.raises(ValueError, match=rf"unsupported JSON Schema keyword '{kw}': beside minLength/maxLength only "
                                         rf".* at {re.escape(where)}"):
        _C.grammar_from_json_schema(json.dumps(schema))


def uri_candidates(seed, n=3000):
    """Strings built from URI pieces, valid and invalid ones mixed (bad escapes, spaces, brackets,
    doubled '@', non-numeric ports, non-ASCII)."""
    rng = random.Random(seed)
    schemes = ["http", "https", "urn", "mailto", "a+b.c-d", "x", "1http", "", "ht tp"]
    auths = ["", "example.com", "user:pw@host", "h:8080", "h:", "a@b@c", "h:x", "[::1]", "%41b.c", "%4", "é.com",
             "u%20@h", "!$&'()*+,;=", "h o"]
    paths = ["", "/", "/a/b", "/a//b", "a/b", "a:b", "/%7e", "/%zz", "/é", "/a b", "/@:", "//", "./x", "../y"]
    queries = ["", "?", "?a=1&b=2", "?/?:@", "?a b", "?%41", "?#"]
    frags = ["", "#", "#f", "#a/b?c", "#a#b", "#%"]
    out = set()
    while len(out) < n:
        s = rng.choice(schemes)
        head = (s + ":" if s or rng.random() < 0.3 else "") + ("//" + rng.choice(auths) if rng.random() < 0.6 else "")
        out.add(head + rng.choice(paths) + rng.choice(queries) + rng.choice(frags))
    return sorted(out)


@pytest.mark.parametrize("fmt,rule", [("uri", "URI"), ("uri-reference", "URI_reference")])
def test_uri_formats_agree_with_rfc3986(fmt, rule):
    rfc3986_validator = pytest.importorskip("rfc3986_validator")
    g = _C.GrammarCompiler().compile("json_schema", json.dumps({"type": "string", "format": fmt}))
    agreed = 0
    for s in uri_candidates(7 if fmt == "uri" else 11):
        want = rfc3986_validator.validate_rfc3986(s, rule=rule) is not None and "[" not in s
        assert accepted(g, s) == want, (fmt, s)
        agreed += want
    assert agreed > 300   # the candidates exercise the accepting side too


def test_byte_format_is_base64():
    g = _C.GrammarCompiler().compile("json_schema", json.dumps({"type": "string", "format": "byte"}))
    rng = random.Random(5)
    for _ in range(2000):
        s = "".join(rng.choice("QUJDab+/=9 -_") for _ in range(rng.randint(0, 9)))
        try:
            want = len(s) % 4 == 0 and base64.b64decode(s, validate=True) is not None
        except ValueError:
            want = False
        assert accepted(g, s) == want, s
    for raw in (b"", b"a", b"ab", b"abc", bytes(range(256))):
        assert accepted(g, base64.b64encode(raw).decode())


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer absent")
def test_uri_and_bounded_pattern_masks_equal_brute_force_qwen3(mode):
    tok, gc = _qwen3_compiler()
    for schema, value in (({"type": "string", "format": "uri"}, "https://user:pw@example.com:8080/a/%7Eb?q=1&r=/x#top"),
                          ({"type": "string", "pattern": r"^[A-Za-z0-9:_\-]+$", "minLength": 2, "maxLength": 40},
                           "node-pool_7:us-east1:group_12")):
        g = gc.compile("json_schema", json.dumps(schema))
        _masks_along(g, tok, json.dumps(value), schema, byte_every=3)


PATTERN_PROPS = [
    {"type": "object", "patternProperties": {"^[a-z_]+$": {"type": "integer"}}, "additionalProperties": False},
    {"type": "object", "properties": {"a": {"minimum": 3}, "b": {"type": "string"}},
     "patternProperties": {".*": {"type": "integer"}}},
    {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
     "patternProperties": {"^x-": {}}, "additionalProperties": False},
    {"type": "object", "patternProperties": {".+": {"type": "array", "maxItems": 1}}, "additionalProperties": False,
     "maxProperties": 2},
]


def objects(schema, seed, n=400):
    rng = random.Random(seed)
    declared = list(schema.get("properties", {}))
    keys = ["ab", "c_d", "aB", "", "x-", "x-foo", "y", "a b", "é", "zz", "1"]
    values = [0, 7, -3, 2.5, "s", [], [1], [1, 2], None, True, {}]
    for _ in range(n):
        d = {k: rng.choice(values) for k in declared if rng.random() < 0.7}
        for k in rng.sample(keys, rng.randint(0, 3)):
            if k not in d:
                d[k] = rng.choice(values)
        yield d


@pytest.mark.parametrize("schema", PATTERN_PROPS)
def test_pattern_properties_agree_with_jsonschema(mode, schema):
    import jsonschema
    g = _C.GrammarCompiler().compile("json_schema", json.dumps(schema))
    v = jsonschema.Draft202012Validator(schema)
    seen = set()
    for d in objects(schema, zlib.crc32(json.dumps(schema).encode())):
        text = json.dumps(d, separators=(",", ":"), ensure_ascii=False)
        m = g.matcher()
        got = m.advance_bytes(text.encode()) and m.is_accepting()
        assert got == v.is_valid(d), (schema, text)
        seen.add(got)
    assert seen == {True, False}


@pytest.mark.parametrize("schema,msg", [
    ({"patternProperties": {"^(?=a)": {}}}, "regex: unsupported regex feature: lookaround"),
    ({"patternProperties": {f"^{c}": {} for c in "abcdefghi"}, "additionalProperties": False}, "more than 8 patterns"),
    ({"properties": {"abab": {}}, "patternProperties": {"^(ab){1,3000}$": {}}, "additionalProperties": False},
     "a declared property matches the pattern"),   # past the key automaton's size: the general pattern
])
def test_pattern_properties_outside_the_subset_is_named(schema, msg):
    with pytest.raises(ValueError, match=f"unsupported JSON Schema keyword 'patternProperties': {msg}"):
        _C.grammar_from_json_schema(json.dumps(schema))


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer absent")
def test_pattern_properties_masks_equal_brute_force_qwen3():
    tok, gc = _qwen3_compiler()
    schema = PATTERN_PROPS[2]
    g = gc.compile("json_schema", json.dumps(schema))
    _masks_along(g, tok, '{"name":"api","x-rate-limit":{"per":"minute","n":[1,2]},"x-id":7}', schema, byte_every=2)
