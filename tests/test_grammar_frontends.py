"""Grammar front ends (csrc/grammar) through lightllm._C: GBNF, regex, choice, JSON Schema,
checked with the reference Earley recognizer — unit cases plus the real MaskBench schemas in
../shared/maskbench/data (skipped when absent).

The JSON Schema grammar fixes the property order to the schema's declaration order (that is
what the model will be forced to produce), so instances are re-serialised in schema order
(compactly, ensure_ascii=False) before they are checked."""
import collections
import json
import os
import re
import time

import pytest

from lightllm import _C

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASKBENCH = os.path.join(ROOT, "..", "shared", "maskbench", "data")


def accepts(kind, src, text, **kw):
    return _C.grammar_accepts(kind, src, text.encode() if isinstance(text, str) else text, **kw)


def test_ebnf():
    g = 'root ::= "a" b* ("x" | [0-9]){2,3}  # comment\nb ::= [^a-c]\n'
    assert accepts("ebnf", g, "ax0") and accepts("ebnf", g, "adé12x") and not accepts("ebnf", g, "ab12")
    assert not accepts("ebnf", g, "a1") and not accepts("ebnf", g, "a12b")
    assert "root ::=" in _C.grammar_from_ebnf(g)
    with pytest.raises(ValueError, match="undefined rule 'foo' at line 2"):
        _C.grammar_from_ebnf('root ::= x\nx ::= foo')
    with pytest.raises(ValueError, match="no 'root'"):
        _C.grammar_from_ebnf('x ::= "a"')


def test_regex_and_choice():
    assert accepts("regex", r"[a-z]+\d{2}", "abc12") and not accepts("regex", r"[a-z]+\d{2}", "abc1")
    assert accepts("regex", r"^(ab|c)*x?$", "ababcx") and accepts("regex", ".é", "xé")
    assert not accepts("regex", ".", "\n")
    for bad, what in [(r"(?=a)", "lookaround"), (r"(a)\1", "backreference"), (r"a\bb", "word boundary")]:
        with pytest.raises(ValueError, match=what):
            _C.grammar_from_regex(bad)
    assert accepts("choice", '["yes", "no"]', "no") and not accepts("choice", '["yes", "no"]', "n")


def test_json_schema_basics():
    s = json.dumps({"type": "object", "properties": {"a": {"type": "integer", "minimum": 3, "maximum": 120},
                                                      "b": {"type": "string", "maxLength": 3}}, "required": ["a"]})
    for text, ok in [('{"a":3}', 1), ('{"a":121}', 0), ('{"a":120,"b":"xyz"}', 1), ('{"b":"x"}', 0),
                     ('{"a":5,"b":"xyzw"}', 0), ('{"a":5,"zz":1}', 1), ('{"a":5, "b":"x"}', 0)]:
        assert accepts("json_schema", s, text) == bool(ok), text
    assert accepts("json_schema", s, '{"a":5, "b":"x"}', whitespace=True)
    with pytest.raises(ValueError, match="unsupported JSON Schema keyword 'if' at #/properties/x"):
        _C.grammar_from_json_schema('{"properties": {"x": {"if": {}, "then": {}}}}')


@pytest.mark.skipif(not os.path.isdir(MASKBENCH), reason="MaskBench data not present")
def test_maskbench_sample():
    files = sorted(os.listdir(MASKBENCH))
    sample = files[::max(1, len(files) // 300)]
    stats = collections.Counter()
    unsupported = collections.Counter()
    failures = []
    t0 = time.time()
    for name in sample:
        with open(os.path.join(MASKBENCH, name), encoding="utf-8") as f:
            case = json.load(f)
        schema = json.dumps(case["schema"], ensure_ascii=False)
        stats["schemas"] += 1
        try:
            _C.grammar_from_json_schema(schema)
        except ValueError as e:
            msg = str(e)
            m = re.search(r"unsupported JSON Schema keyword '([^']+)'", msg)
            if m:
                unsupported[m.group(1) + (" " + msg.split("format '")[1].split("'")[0] if "format '" in msg else "")] += 1
                stats["unsupported"] += 1
            else:
                stats["invalid"] += 1
                failures.append((name, msg[:200]))
            continue
        stats["compiled"] += 1
        valid, invalid = [], []
        for t in case["tests"]:
            text = dump(reorder(t["data"], case["schema"], case["schema"]))
            if text is not None:
                (valid if t["valid"] else invalid).append(text)
        if valid:
            res = _C.grammar_accepts_many("json_schema", schema, valid)
            stats["valid"] += len(valid)
            stats["valid_ok"] += sum(res)
            for v, r in zip(valid, res):
                if not r:
                    failures.append((name, "valid rejected: " + v[:200].decode("utf-8", "replace")))
        if invalid:
            res = _C.grammar_accepts_many("json_schema", schema, invalid)
            stats["invalid_inst"] += len(invalid)
            stats["invalid_rejected"] += sum(not r for r in res)
    dt = time.time() - t0
    n = stats["schemas"]
    print(f"\nMaskBench sample: {n} schemas in {dt:.1f}s; compiled {stats['compiled']} ({100 * stats['compiled'] / n:.1f}%), "
          f"unsupported {stats['unsupported']}, other errors {stats['invalid']}")
    print(f"valid instances accepted: {stats['valid_ok']}/{stats['valid']} "
          f"({100 * stats['valid_ok'] / max(1, stats['valid']):.2f}%)")
    print(f"invalid instances rejected: {stats['invalid_rejected']}/{stats['invalid_inst']} "
          f"({100 * stats['invalid_rejected'] / max(1, stats['invalid_inst']):.1f}%)")
    print("top unsupported:", unsupported.most_common(12))
    for f in failures[:15]:
        print("  ", f)
    assert stats["invalid"] <= 0.02 * n, failures[:10]
    assert stats["valid_ok"] >= 0.99 * stats["valid"]


def dump(value):
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        return None   # lone surrogates


def resolve(schema, root, depth=0):
    """Follows $ref (local JSON pointers); returns the list of conjunct schemas (allOf flattened)."""
    if not isinstance(schema, dict) or depth > 20:
        return []
    out = [schema]
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        node = root
        for seg in ref[1:].split("/")[1:]:
            seg = seg.replace("~1", "/").replace("~0", "~")
            node = node[int(seg)] if isinstance(node, list) else (node or {}).get(seg) if isinstance(node, dict) else None
        out += resolve(node, root, depth + 1)
    for sub in schema.get("allOf", []) if isinstance(schema.get("allOf"), list) else []:
        out += resolve(sub, root, depth + 1)
    return out


def reorder(data, schema, root, depth=0):
    """Orders object keys as the grammar emits them: declared properties (allOf parts in order),
    then required-only names, then the rest; anyOf/oneOf options are consulted in order, and a
    member's schema is its declared one with those of the patternProperties matching its key."""
    if depth > 50:
        return data
    parts = resolve(schema, root)
    for p in list(parts):
        for kw in ("anyOf", "oneOf"):
            if isinstance(p.get(kw), list):
                for opt in p[kw]:
                    parts += resolve(opt, root)
    if isinstance(data, dict):
        order, sub = [], collections.defaultdict(list)
        for p in parts:
            for k, v in (p.get("properties") or {}).items() if isinstance(p.get("properties"), dict) else []:
                if k not in order:
                    order.append(k)
                sub[k].append(v)
        for p in parts:
            for k in p.get("required", []) if isinstance(p.get("required"), list) else []:
                if k not in order:
                    order.append(k)
        extra = [p.get("additionalProperties") for p in parts if isinstance(p.get("additionalProperties"), dict)]
        pats = []
        for p in parts:
            for pat, v in (p.get("patternProperties") or {}).items() if isinstance(p.get("patternProperties"), dict) else []:
                try:
                    pats.append((re.compile(pat), v))
                except re.error:
                    pass
        keys = [k for k in order if k in data] + [k for k in data if k not in order]
        return {k: reorder(data[k], {"allOf": sub[k] + [v for rx, v in pats if rx.search(k)] or extra or [{}]},
                           root, depth + 1) for k in keys}
    if isinstance(data, list):
        out = []
        for i, x in enumerate(data):
            subs = []
            for p in parts:
                pre = p.get("prefixItems") if isinstance(p.get("prefixItems"), list) else \
                    p.get("items") if isinstance(p.get("items"), list) else None
                if pre is not None and i < len(pre):
                    subs.append(pre[i])
                elif isinstance(p.get("items"), dict):
                    subs.append(p["items"])
            out.append(reorder(x, {"allOf": subs}, root, depth + 1))
        return out
    return data


def test_extra_keys_exclude_declared_names_with_escapes():
    """An additional property may not reuse a declared name, also when json.dumps writes that name
    with short escapes (\\" \\\\ \\n \\t ...): both the Earley reference and the compiled DPDA agree with
    the jsonschema package on compact texts in declared order (MaskBench o74592 had a name with a
    backslash that the extra keys did not exclude)."""
    import jsonschema
    schema = {"type": "object", "properties": {"a\\b": {"type": "integer"}, 'q"x': {"type": "integer"},
                                               "n\nl\t": {"type": "integer"}, "ab": {"type": "boolean"}}}
    src = json.dumps(schema)
    g = _C.GrammarCompiler().compile("json_schema", src)
    objs = [{"a\\b": 1}, {"a\\b": "x"}, {"a\\c": "x"}, {"a\\\\b": "x"}, {'q"x': 2}, {'q"x': "s"}, {'q"y': "s"},
            {"n\nl\t": 3}, {"n\nl\t": "s"}, {"n\nl": "s"}, {"n\nl\t\t": "s"}, {"ab": True}, {"ab": "s"}, {"a": "s"},
            {"a\\b": 1, "x\\y": "z"}, {"\\": 1}, {'"': "s"}, {"\n": "s"}, {"a/b": "s"}, {"a\u00e9\\b": "s"}]
    checked = 0
    for obj in objs:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        want = jsonschema.Draft202012Validator(schema).is_valid(obj)
        assert _C.grammar_accepts("json_schema", src, text) == want, text
        m = g.matcher()
        assert (m.advance_bytes(text) and m.is_accepting()) == want, text
        checked += 1
    assert checked == len(objs)


def test_extra_keys_exclude_other_spellings_of_declared_names():
    """Up to its first character that differs from every declared name, an extra key writes each
    character one way, so "\\u0061" (an "a") or "x\\/y" (for "x/y") cannot bring a declared name in
    as an extra property with the wrong value; keys that differ still take any escape after that
    point, and control characters without a short escape still take \\u00XX."""
    schema = {"type": "object", "properties": {"ab": {"type": "boolean"}, "x/y": {"type": "integer"}},
              "additionalProperties": {"type": "string"}}
    src = json.dumps(schema)
    g = _C.GrammarCompiler().compile("json_schema", src)
    cases = {b'{"\\u0061b":"s"}': False, b'{"a\\u0062":"s"}': False, b'{"\\u0041b":"s"}': False,
             b'{"x\\/y":"s"}': False, b'{"x/y":"s"}': False, b'{"x/y":3}': True, b'{"x\\/z":"s"}': True,
             b'{"ab":true}': True, b'{"ac":"s"}': True, b'{"ac\\u0041":"s"}': True, b'{"\\u0001":"s"}': True,
             b'{"\\u001F":"s"}': True, b'{"\\n":"s"}': True, b'{"\\u000a":"s"}': False, b'{"b":"s"}': True}
    for text, want in cases.items():
        assert _C.grammar_accepts("json_schema", src, text) == want, text
        m = g.matcher()
        assert (m.advance_bytes(text) and m.is_accepting()) == want, text
