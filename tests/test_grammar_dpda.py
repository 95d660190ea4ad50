"""The grammar compiler (csrc/grammar: regularize → LALR(1), LR(1) fallback → DPDA) and token masks through
lightllm._C.GrammarCompiler / GrammarMatcher: the matcher agrees with the Earley reference on
MaskBench instances (whole-text acceptance on a sample, byte-by-byte prefix acceptance on a
smaller one), the fast mask equals brute force with the real Qwen3 vocabulary, the content
cache hits, rollback works, and conflicts / unsupported keywords fail with clear errors."""
import json
import os
import random
import sys

import pytest

from lightllm import _C

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_grammar_frontends import MASKBENCH, dump, reorder  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QWEN3 = os.path.join(ROOT, "..", "shared", "tokenizers", "qwen3")


def test_compile_match_rollback():
    gc = _C.GrammarCompiler()
    g = gc.compile("regex", r"(a|ab)(c|bcd)(d*)")
    assert not g.cache_hit and gc.compile("regex", r"(a|ab)(c|bcd)(d*)").cache_hit and gc.num_cached == 1
    m = g.matcher()
    assert m.advance_bytes(b"abcd") and m.is_accepting() and m.num_bytes == 4
    assert not m.advance_bytes(b"dx") and m.num_bytes == 4          # all or nothing
    m.rollback_bytes(2)
    assert m.num_bytes == 2 and not m.is_accepting() and m.advance_bytes(b"c") and m.is_accepting()
    e = gc.compile("ebnf", 'root ::= "{" ("\\"k\\":" [0-9]+)? "}"').matcher()
    assert e.forced_bytes() == b"{" and e.advance_bytes(b'{"') and e.forced_bytes() == b'k":' and e.num_bytes == 2
    assert e.advance_bytes(b'k":12}') and e.is_accepting()
    c = gc.compile("choice", '["yes", "no", "n/a"]').matcher()
    assert c.advance_bytes(b"n") and not c.is_accepting() and c.advance_bytes(b"o") and c.is_accepting()
    with pytest.raises(ValueError, match=r"not LR\(1\): reduce/reduce conflict on '\(' after input '\(': "
                                         r"reduce [xy]@1 ::= '\(' vs reduce [xy]@1 ::= '\('"):
        gc.compile("ebnf", 'root ::= x | y\nx ::= "(" x ")" | "a"\ny ::= "(" y ")" | "a"\n')
    with pytest.raises(ValueError, match="unsupported JSON Schema keyword 'not'"):
        gc.compile("json_schema", '{"not": {"enum": [1]}}')


# LR(1) but not LALR(1): the textbook pairs (Aho, Sethi & Ullman, ch. 4: S → aAd | bBd | aBe | bAe,
# A → c, B → c; and S → Aa | bAc | Bc | bBa, A → d, B → d).  A and B are made recursive so that
# grammar_regularize keeps them as nonterminals (inlined they would be determinised away); the
# state after the shared body has the reductions A ::= c and B ::= c, which LALR(1) merges.
LR1_GRAMMARS = [
    ('root ::= "a" x "d" | "b" y "d" | "a" y "e" | "b" x "e"\nx ::= "c" | "(" x ")"\ny ::= "c" | "[" y "]"\n',
     "abcde()[]", [b"acd", b"bce", b"a((c))d", b"b[[c]]d", b"a[c]e", b"b(c)e"]),
    ('root ::= x "a" | "b" x "c" | y "c" | "b" y "a"\nx ::= "d" | "(" x ")"\ny ::= "d" | "[" y "]"\n',
     "abcd()[]", [b"da", b"bdc", b"dc", b"bda", b"((d))a", b"b[d]a"]),
]


@pytest.mark.parametrize("source,alphabet,sentences", LR1_GRAMMARS)
def test_lr1_fallback_agrees_with_earley(source, alphabet, sentences):
    import itertools
    gc = _C.GrammarCompiler()
    g = gc.compile("ebnf", source)
    assert g.lr_kind == "LR(1)"          # LALR(1) had the merging conflict; the fallback built it
    assert gc.compile("regex", "a(b|c)*").lr_kind == "LALR(1)"
    texts = [bytes(t) for n in range(1, 6) for t in itertools.product(alphabet.encode(), repeat=n)]
    ref = _C.grammar_accepts_many("ebnf", source, texts)
    got = []
    for t in texts:
        m = g.matcher()
        got.append(m.advance_bytes(t) and m.is_accepting())
    assert got == ref and sum(ref) >= 8
    for t in (t for t in texts if len(t) <= 4):  # every text up to 4 bytes: the matcher moves iff Earley can extend it
        assert g.matcher().advance_bytes(t) == _C.grammar_accepts("ebnf", source, t, prefix=True), t
    for t in sentences:
        assert _C.grammar_accepts("ebnf", source, t)
        m = g.matcher()
        assert m.advance_bytes(t) and m.is_accepting()
    # masks over a small vocabulary (single bytes and pieces that span the conflicting reduction)
    toks = [bytes([b]) for b in alphabet.encode()] + [b"ac", b"cd", b"ce", b"c)", b"(c", b"c]", b"bd", b"da", b"dc",
                                                      b"))d", b"]]", b"c))e"]
    eos = len(toks)
    vocab = _C.DetokVocab(toks + [b""], [eos])
    mg = _C.GrammarCompiler(vocab, [eos]).compile("ebnf", source)
    for t in sentences:
        m = mg.matcher()
        for k in range(len(t) + 1):
            assert m.mask() == m.mask_brute(), (t, k)
            if k < len(t):
                assert m.advance_bytes(t[k:k + 1])


def _cases(step):
    files = sorted(os.listdir(MASKBENCH))
    for name in files[::step]:
        with open(os.path.join(MASKBENCH, name), encoding="utf-8") as f:
            case = json.load(f)
        yield name, case, json.dumps(case["schema"], ensure_ascii=False)


@pytest.mark.skipif(not os.path.isdir(MASKBENCH), reason="MaskBench data not present")
def test_maskbench_agrees_with_earley():
    gc = _C.GrammarCompiler()
    stats = dict(front_end=0, compiled=0, texts=0, prefix_texts=0)
    errors = {}
    for i, (name, case, schema) in enumerate(_cases(40)):
        try:
            _C.grammar_from_json_schema(schema)
        except ValueError:
            continue
        stats["front_end"] += 1
        try:
            g = gc.compile("json_schema", schema)
        except ValueError as e:
            errors[name] = str(e)[:160]
            continue
        stats["compiled"] += 1
        for t in case["tests"]:
            text = dump(reorder(t["data"], case["schema"], case["schema"]))
            if text is None or len(text) > 4000:
                continue
            m = g.matcher()
            ok = m.advance_bytes(text) and m.is_accepting()
            assert ok == _C.grammar_accepts("json_schema", schema, text), (name, text[:200])
            stats["texts"] += 1
            if i % 3 == 0 and len(text) <= 160:   # byte by byte (Earley per prefix is quadratic)
                m = g.matcher()
                for k in range(len(text)):
                    got = m.advance_bytes(text[k:k + 1])
                    assert got == _C.grammar_accepts("json_schema", schema, text[:k + 1], prefix=True), (name, k)
                    if not got:
                        break
                stats["prefix_texts"] += 1
    print(f"\nDPDA on a MaskBench sample: {stats}; conflict-free {100 * stats['compiled'] / stats['front_end']:.1f}% "
          f"of the schemas the front end accepts")
    for k, v in list(errors.items())[:5]:
        print("  ", k, v)
    assert stats["compiled"] >= 0.85 * stats["front_end"]


# MaskBench schemas that did not compile at 697f7d8 (LR conflict or "grammar too large") and do
# now: an anyOf option that allows any value (o2231, o39084), bodies that start alike expanded
# into their users (o69749, o69763, o58637, o6218), larger regularize budgets on retry (o6235,
# o48167, o6233, o6205, o9827, sp_43).
NEWLY_COMPILED = ["Github_easy---o2231.json", "Github_easy---o39084.json", "Github_medium---o69749.json",
                  "Github_medium---o69763.json", "Github_easy---o58637.json", "Github_easy---o6218.json",
                  "Github_easy---o6235.json", "Github_trivial---o48167.json", "Github_easy---o6233.json",
                  "Github_easy---o6205.json", "Github_trivial---o9827.json", "Snowplow---sp_43_Normalized.json"]
# "too large" or an LR conflict while bounds below 1,000 were expanded; compile with the counter
# threshold at 255 (grammar.h GRAMMAR_COUNTER_THRESHOLD): maxLength 255/256/512 strings are counted
COUNTED_AT_DEFAULT = ["Github_hard---o61653.json", "Github_medium---o25805.json", "Github_medium---o26595.json",
                      "Github_medium---o42601.json", "Github_medium---o82372.json", "Github_medium---o9852.json",
                      "Github_medium---o9968.json", "Snowplow---sp_119_Normalized.json", "Snowplow---sp_120_Normalized.json",
                      "Snowplow---sp_173_Normalized.json", "Snowplow---sp_177_Normalized.json",
                      "Snowplow---sp_20_Normalized.json", "Snowplow---sp_21_Normalized.json",
                      "Snowplow---sp_23_Normalized.json", "Snowplow---sp_29_Normalized.json"]


@pytest.mark.skipif(not os.path.isdir(MASKBENCH), reason="MaskBench data not present")
@pytest.mark.parametrize("name", NEWLY_COMPILED + COUNTED_AT_DEFAULT)
def test_maskbench_newly_compiled_agree_with_earley(name):
    with open(os.path.join(MASKBENCH, name), encoding="utf-8") as f:
        case = json.load(f)
    schema = json.dumps(case["schema"], ensure_ascii=False)
    g = _C.GrammarCompiler().compile("json_schema", schema)
    assert name not in COUNTED_AT_DEFAULT or g.num_counters >= 1
    texts = [dump(reorder(t["data"], case["schema"], case["schema"])) for t in case["tests"]]
    texts = [t for t in texts if t is not None and len(t) <= 4000]
    # a few invalid variants too: each text cut short, and with a stray byte inside
    texts += [t[:len(t) // 2] for t in texts] + [t[:len(t) // 3] + b"#" + t[len(t) // 3:] for t in texts]
    texts.append(b"{}")
    ref = _C.grammar_accepts_many("json_schema", schema, texts)
    for t, want in zip(texts, ref):
        m = g.matcher()
        assert (m.advance_bytes(t) and m.is_accepting()) == want, (name, t[:200])
    # random walks of the matcher (any allowed byte; stop at an accepting state now and then):
    # what it accepts, Earley accepts; where it stops, Earley can still extend
    rng = random.Random(name)
    for _ in range(4):
        m, walk = g.matcher(), bytearray()
        while len(walk) < 120 and not (m.is_accepting() and rng.random() < 0.2):
            allowed = [b for b in range(256) if m.advance_bytes(bytes([b])) and (m.rollback_bytes(1) or True)]
            if not allowed:
                break
            b = rng.choice(allowed)
            assert m.advance_bytes(bytes([b]))
            walk.append(b)
        assert _C.grammar_accepts("json_schema", schema, bytes(walk), prefix=True), (name, bytes(walk))
        if m.is_accepting():
            assert _C.grammar_accepts("json_schema", schema, bytes(walk)), (name, bytes(walk))
    short = min(texts[:len(case["tests"])] or [b"{}"], key=len)[:200]
    m = g.matcher()
    for k in range(len(short)):   # byte by byte: the matcher moves iff Earley can extend the prefix
        got = m.advance_bytes(short[k:k + 1])
        assert got == _C.grammar_accepts("json_schema", schema, short[:k + 1], prefix=True), (name, k)
        if not got:
            break


def _prefixes_agree(g, src, text):
    """Byte by byte, the compiled matcher of JSON Schema src moves exactly when the Earley
    recognizer can extend the prefix (up to the first byte neither accepts)."""
    m = g.matcher()
    for i in range(len(text)):
        ok = _C.grammar_accepts("json_schema", src, text[:i + 1], prefix=True)
        assert m.advance_bytes(text[i:i + 1]) == ok, (src, text[:i + 1])
        if not ok:
            break


def _string_schema(lo=None, hi=None):
    """{"type": "string"} with minLength lo / maxLength hi where given."""
    d = {"type": "string"}
    if lo is not None:
        d["minLength"] = lo
    if hi is not None:
        d["maxLength"] = hi
    return d


def _qwen3_compiler():
    """The Qwen3 tokenizer and a grammar compiler over a fresh vocabulary of it (its own region
    caches: a test that wants first visits gets them)."""
    from lightllm.tokenizer import Tokenizer
    tok = Tokenizer.from_dir(QWEN3)
    vocab = _C.DetokVocab(tok.token_bytes(), sorted(tok.special_ids))
    return tok, _C.GrammarCompiler(vocab, [tok.eos_token_id])


def _masks_along(g, tok, text, where, token_every=1, byte_every=0, byte_at=0):
    """Walks text through a fresh matcher of g token by token (then EOS) and, with byte_every,
    again byte by byte, asserting the fast mask equals brute force at every token_every-th token
    and every byte_every-th byte prefix (from byte_at); returns (masks checked, tokens that end
    inside a UTF-8 character)."""
    token_bytes = tok.token_bytes()
    ids = tok.encode(text, add_special_tokens=False)
    checked = split = 0
    m = g.matcher()
    for i, tid in enumerate(ids + [tok.eos_token_id]):
        if i % token_every == 0:
            assert m.mask() == m.mask_brute(), (where, i, tok.decode(ids[:i]))
            checked += 1
        if tid != tok.eos_token_id:
            try:
                token_bytes[tid].decode("utf-8")
            except UnicodeDecodeError:
                split += 1
        assert m.advance_token(tid), (where, i, text)
    assert m.is_accepting(), (where, text)
    if byte_every:   # states between a token's bytes (inside strings, escapes, UTF-8 characters, numbers)
        m = g.matcher()
        raw = text.encode("utf-8")
        for b in range(len(raw)):
            if b % byte_every == byte_at:
                assert m.mask() == m.mask_brute(), (where, raw[:b])
                checked += 1
            assert m.advance_bytes(raw[b:b + 1])
    return checked, split


@pytest.mark.skipif(not (os.path.isdir(MASKBENCH) and os.path.isdir(QWEN3)), reason="MaskBench / Qwen3 tokenizer absent")
def test_masks_equal_brute_force_qwen3():
    tok, gc = _qwen3_compiler()
    rng = random.Random(0)
    checked = 0
    for name, case, schema in _cases(300):
        try:
            g = gc.compile("json_schema", schema)
        except ValueError:
            continue
        valid = [t for t in case["tests"] if t["valid"]]
        if not valid:
            continue
        text = dump(reorder(valid[0]["data"], case["schema"], case["schema"]))
        if text is None:
            continue
        ids = tok.encode(text.decode("utf-8"), add_special_tokens=False)
        m = g.matcher()
        picks = set(rng.sample(range(len(ids) + 1), min(3, len(ids) + 1)))
        for i, tid in enumerate(ids + [tok.eos_token_id]):
            if i in picks:
                assert m.mask() == m.mask_brute(), (name, i)
                checked += 1
            assert m.advance_token(tid), (name, i)
        m.rollback_tokens(len(ids) + 1)   # the EOS counts as a token of 0 bytes
        assert m.num_bytes == 0 and m.mask() == m.mask_brute()
    assert checked >= 20


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer absent")
def test_region_skips_equal_brute_force_qwen3():
    """Classification walks that settle whole trie subtrees from a string region's walk (keys of
    objects with additional properties, prefixes of declared keys, string values) give the
    brute-force mask at every token, including after tokens that end inside a UTF-8 character."""
    tok, gc = _qwen3_compiler()
    cases = [
        ({"type": "object", "properties": {"title": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["title"]},
         {"title": "Größe 🙂 ok", "tags": ["数据", "a\"b"], "titles": "x", "tit": "ç", "名前": "值🙂", "t": 1}),
        ({"type": "object", "additionalProperties": {"type": "string"}},
         {"𝄞key": "é\\n", "": "😀😀", "k\u00e9y": "\u4e2d\u6587"}),
        ({"type": "array", "items": {"type": "string"}}, ["🙂 日本語のテキスト", "\\u00e9", "plain"]),
    ]
    split_seen = checked = 0
    for k, (schema, value) in enumerate(cases):
        g = gc.compile("json_schema", json.dumps(schema))
        c, sp = _masks_along(g, tok, json.dumps(value, ensure_ascii=False, separators=(",", ":")), schema)
        checked += c
        split_seen += sp
        assert g.mask_cache_skips > 0 or k > 0   # the declared keys' prefixes settle by skips
    assert split_seen > 0 and checked > 40


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer absent")
def test_grouped_exits_equal_brute_force_qwen3():
    """First visits that step a region's leaving tokens grouped by (exit state, bytes from the
    exit), once per classification walk for all its skips (token_walk_groups), and region
    searches over cached rows: string and number values closed by every kind of follower
    (`,` `}` `]`, nested closings that pop below the partial stack), objects of one shape
    reached from many places (each its own states), declared keys beside any string and a
    minLength string after a declared key (no chain analysis from a state whose next position
    loops).  The fast mask equals brute force at every token, in a fresh grammar each time
    and again once the vocabulary's region cache is warm."""
    tok, gc = _qwen3_compiler()
    ev = {"type": "object", "properties": {k: {"type": "string"} for k in ("addListener", "addRules", "hasListener")}}
    cases = [
        ({"type": "object", "properties": {"on": ev, "off": ev, "mid": {"type": "array", "items": ev}},
          "required": ["on"]},
         {"on": {"addListener": "f() {}", "zz": "\"q\""}, "off": {"hasListener": ""},
          "mid": [{"addRules": "r\u00e9"}, {}]}),
        ({"type": "object", "properties": {"n": {"type": "number"}, "i": {"type": "integer"},
                                           "s": {"type": "string", "minLength": 2}, "a": {"type": "array", "items": {"type": "number"}}},
          "additionalProperties": False},
         {"n": -12.5e3, "i": 7, "s": "日本語", "a": [1, 2.25, -0.5e-2, 100]}),
        ({"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
         [["a\"b", "", "🙂"], [], ["x,y", "}]"]]),
        ({"type": "object", "properties": {"key": {"type": "string", "minLength": 3}}, "required": ["key"]},
         {"key": "abcdef", "keyring": "x"}),
    ]
    checked = 0
    for rep in range(2):   # fresh regions, then regions cached by the vocabulary
        for k, (schema, value) in enumerate(cases):
            sch = dict(schema, title="rep%d" % rep)   # a new grammar (and mask table) each time
            g = gc.compile("json_schema", json.dumps(sch))
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            checked += _masks_along(g, tok, text, (schema, rep), token_every=1 + rep,
                                    byte_every=5 if rep == 0 else 0, byte_at=2)[0]
    assert checked > 100


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer absent")
def test_key_walks_equal_brute_force_qwen3():
    """First visits whose walk rejects most first bytes (read from the top's row, only the
    others stepped), classifications small enough to be kept as a token list, states that
    cannot loop answered without a region search, END edges read off in the walk, and extra
    keys beside declared keys that share their prefixes (runs of "any string" settled from the
    region, inner UTF-8 states of the key region, keys after a number, a boolean, null, an enum
    and a nested object; inside a number the region is left by thousands of tokens and the state
    is classified by the trie walk instead).  The fast mask equals brute force at every token and every 3rd
    byte, in a fresh grammar and again with the vocabulary's regions cached."""
    tok, gc = _qwen3_compiler()
    inner = {"type": "object", "properties": {"description": {"type": "string"}, "descr": {"type": "integer"},
                                              "name": {"type": "string"}}}
    schema = {"type": "object", "properties": {
        "name": {"type": "string"}, "names": {"type": "array", "items": {"type": "string"}},
        "namespace": {"type": "string"}, "description": {"type": "string"}, "desc": {"type": "number"},
        "enabled": {"type": "boolean"}, "kind": {"enum": ["a", "b", "ab"]}, "nil": {"type": "null"},
        "inner": inner, "id": {"type": "integer"}}, "required": ["name"]}
    values = [
        {"name": "x", "names": ["a", "b"], "namespace": "ns", "description": "d\u00e9", "desc": 1.5,
         "enabled": True, "kind": "ab", "nil": None, "inner": {"descr": 3, "descriptions": "x", "名前": 1},
         "id": 42, "nam": "extra", "descriptionX": 2, "ключ": [1, {"a": None}], "n": False},
        {"name": "", "id": -7, "namespaces": {}, "enabledd": "q\"", "😀": "🙂", "d": 0},
    ]
    checked = 0
    for rep in range(2):   # fresh regions, then regions cached by the vocabulary
        for k, value in enumerate(values):
            g = gc.compile("json_schema", json.dumps(dict(schema, title="kw%d%d" % (rep, k))))
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            checked += _masks_along(g, tok, text, (k, rep), byte_every=3 if rep == 0 else 0, byte_at=1)[0]
    assert checked > 150


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer absent")
def test_key_walk_rows_equal_brute_force_qwen3():
    """A key walk steps the children of a node with many (the key's first byte, a declared
    prefix) from the state's row instead of one step each (grammars without counters); the
    walk may settle a subtree deeper on the stack midway (a declared key's string value entered
    by `":"`-like tokens), after which the row must still be the partial stack's.  Keys whose
    names share long prefixes with extra keys beside them, string values right after the key,
    and the same schema with a counter (maxItems over the threshold: the step per child) equal
    brute force at every token and every 2nd byte."""
    tok, gc = _qwen3_compiler()
    props = {k: {"type": "string"} for k in ["type", "types", "typeName", "text", "title", "t", "value", "values",
                                              "valueText", "url", "urls", "user", "username"]}
    values = [{"type": "a", "types": "", "typeName": "b\u00e9", "text": "x y", "title": "T", "t": "",
               "value": "v", "valueText": "1", "url": "http://x", "user": "u", "username": "n",
               "typo": "extra", "textual": 1, "us": "", "valuesX": [1], "\u540d": "z"},
              {"values": "q", "urls": "", "ty": "w", "": "e", "typeNames": "s"}]
    checked = 0
    for counted in (False, True):
        schema = {"type": "object", "properties": dict(props)}
        if counted:
            schema["properties"]["list"] = {"type": "array", "items": {"type": "integer"}, "maxItems": 1000}
        for k, value in enumerate(values):
            g = gc.compile("json_schema", json.dumps(dict(schema, title="kr%d%d" % (counted, k))))
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            checked += _masks_along(g, tok, text, (k, counted), byte_every=2)[0]
    assert checked > 200


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer absent")
def test_bounded_strings_equal_brute_force_qwen3():
    """Strings with minLength / maxLength: every position is its own state, answered from the
    string loop's region cut after the characters left (token_chain.c).  Every
    step's mask equals brute force with the real Qwen3 vocabulary: bounds 0 and 1, non-ASCII
    (2-, 3- and 4-byte UTF-8) characters, escapes (one character each), tokens that end inside a
    UTF-8 character, keys followed by bounded values, arrays of bounded strings, and texts that
    reach exactly maxLength and exactly minLength; the chain path must actually be taken."""
    tok, gc = _qwen3_compiler()
    s = _string_schema

    def obj(props, extra=False):
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": extra}

    cases = [
        (s(0, 0), ""),
        (s(None, 1), "é"),
        (s(1, 1), "🙂"),
        (s(0, 1), "\\n"),
        (s(2, 2), "ab"),
        (s(3, 8), "a\\n🙂é"),
        (s(None, 12), "hello wörld!"),                       # exactly maxLength
        (s(5, 40), "Größe 🙂 日本語のテキスト"),
        (s(4, 30), "\\u00e9\\t\\\"quoted\\\" \\/ end"),
        (s(6, 64), "数据" * 3),                               # exactly minLength
        (s(1, 100), "Introduction to Machine Learning with 𝄞 and ç"),
        (s(1), "日本"),                                       # minLength only: the bounded part
        (s(3), "é🙂\\n more text after the minimum"),         # merges into the loop
        (s(12), "Ωmega 数据 \\u00e9\\u4e2d 🙂🙂 long enough"),   # minLength past the first check
        (s(300), "x" * 150 + " 日本語 " * 30),                 # long: labels re-analysed
        (s(0, 200), "y" * 120 + "é" * 79 + "\\t"),              # long maxLength, exactly reached
        (s(0, 90), " " * 70 + "-" * 16 + "end"),               # long tokens (runs) move far at once
        (obj({"title": s(1, 40), "code": s(2, 5), "note": s(0, 3)}),
         {"title": "Introduction to Machine Learning", "code": "AB🙂", "note": ""}),
        (obj({"tags": {"type": "array", "items": s(1, 6)}, "name": s(None, 10)}, extra=True),
         {"tags": ["数据", "ok", "a\"b", "éééééé"], "name": "Ünïcödé", "x": "any"}),
        ({"type": "array", "items": s(0, 3)}, ["", "abc", "日本語", "🙂🙂"]),
    ]
    split_seen = checked = chains = groups = 0
    for schema, value in cases:
        g = gc.compile("json_schema", json.dumps(schema))
        # a string schema's value is its JSON body as written (escapes kept: \\u00e9 is 1 char)
        text = ('"' + value + '"' if schema.get("type") == "string"
                else json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        c, sp = _masks_along(g, tok, text, schema, byte_every=3)   # bytes: also inside escapes and UTF-8 characters
        checked += c
        split_seen += sp
        chains += g.mask_cache_chains
        groups += g.mask_cache_chain_groups   # exits stepped from the chain's known states
        # one character more than maxLength is rejected, and so is closing before minLength
        hi, lo = schema.get("maxLength"), schema.get("minLength")
        if hi is not None:
            assert not gc.compile("json_schema", json.dumps(schema)).matcher().advance_bytes(
                json.dumps("x" * (hi + 1)).encode())
        if lo:
            assert not gc.compile("json_schema", json.dumps(schema)).matcher().advance_bytes(
                json.dumps("x" * (lo - 1)).encode())
    assert split_seen > 0 and checked > 100 and chains > 20 and groups > 20


def test_long_run_keeps_matcher_memory_bounded():
    """The matcher's persistent-stack arena and rollback history are compacted between tokens:
    a long constrained run holds memory set by the rollback window, rollback inside the window
    still restores exact states, and without a window bound the same run grows."""
    g = _C.GrammarCompiler().compile(
        "json_schema", '{"type":"array","items":{"type":"object","properties":{"a":{"type":"array","items":{"type":"integer"}}}}}')
    chunk = b'{"a":[1,22,333]},'

    def run(window, n):
        m = g.matcher(max_rollback_bytes=window)
        assert m.advance_bytes(b"[")
        sizes = []
        for i in range(n):
            assert m.advance_bytes(chunk), i
            if i % 500 == 499:
                sizes.append(m.arena_bytes)
        return m, sizes

    m, sizes = run(256, 20000)
    assert max(sizes) <= 256 * 1024 and sizes[-1] == sizes[len(sizes) // 2], sizes
    total = 1 + 20000 * len(chunk)
    assert m.num_bytes == total
    # rollback inside the window, then beyond it (clamped), and the states are exact again
    text = b"[" + chunk * 20000
    m.rollback_bytes(len(chunk) + 3)   # inside '333': a '}' cannot come yet
    assert m.num_bytes == total - len(chunk) - 3 and not m.advance_bytes(b"}")
    assert m.advance_bytes(text[-len(chunk) - 3:]) and m.num_bytes == total
    m.rollback_bytes(10 ** 9)
    back = total - m.num_bytes
    assert 256 <= back < 16384   # the window, plus what came since the last compaction
    assert m.advance_bytes(text[m.num_bytes:]) and m.advance_bytes(b'{"a":[]}]') and m.is_accepting()
    _, grown = run(1 << 30, 20000)
    assert grown[-1] > 8 * max(sizes)


@pytest.mark.skipif(not os.path.isdir(QWEN3), reason="Qwen3 tokenizer absent")
def test_long_token_run_compacts_and_masks_stay_exact_qwen3():
    tok, gc = _qwen3_compiler()
    g = gc.compile(
        "json_schema", '{"type":"array","items":{"type":"object","properties":{"k":{"type":"string"},"v":{"type":"number"}}}}')
    items = [{"k": f"név {i} 🙂", "v": i * 1.5} for i in range(3000)]
    ids = tok.encode(json.dumps(items, ensure_ascii=False, separators=(",", ":")), add_special_tokens=False)
    m = g.matcher(max_rollback_bytes=128)
    sizes = []
    for i, tid in enumerate(ids):
        if i % 5000 == 2500:
            assert m.mask() == m.mask_brute(), i
            sizes.append(m.arena_bytes)
        assert m.advance_token(tid), i
    assert m.is_accepting() and max(sizes) <= 192 * 1024 and sizes[-1] == sizes[1], sizes   # 12-byte nodes (state, parent, count)
    with pytest.raises(ValueError, match="rolled back|rollback window"):
        m.rollback_tokens(500)
    m.rollback_tokens(3)
    assert m.mask() == m.mask_brute()
    for tid in ids[-3:]:
        assert m.advance_token(tid)
    assert m.is_accepting()


@pytest.mark.skipif(not (os.path.isdir(MASKBENCH) and os.path.isdir(QWEN3)), reason="MaskBench / Qwen3 tokenizer absent")
def test_newly_compiled_masks_equal_brute_force_qwen3():
    """Token masks of the retried compiles (expanded bodies, larger budgets) and of the schemas that
    compile with counters at the default threshold equal brute force."""
    tok, gc = _qwen3_compiler()
    rng = random.Random(1)
    checked = retried = 0
    for name in NEWLY_COMPILED + COUNTED_AT_DEFAULT:
        with open(os.path.join(MASKBENCH, name), encoding="utf-8") as f:
            case = json.load(f)
        g = gc.compile("json_schema", json.dumps(case["schema"], ensure_ascii=False))
        retried += g.compile_tries > 1 or g.num_counters > 0   # large bounds now take a counter at the first try
        valid = [t for t in case["tests"] if t["valid"]]
        text = dump(reorder(valid[0]["data"], case["schema"], case["schema"]))
        ids = tok.encode(text.decode("utf-8"), add_special_tokens=False)
        m = g.matcher()
        picks = set(rng.sample(range(len(ids) + 1), min(4, len(ids) + 1)))
        for i, tid in enumerate(ids + [tok.eos_token_id]):
            if i in picks:
                assert m.mask() == m.mask_brute(), (name, i)
                checked += 1
            assert m.advance_token(tid), (name, i)
    assert checked >= 100 and retried >= 21


def test_random_lr1_grammars_agree_with_earley():
    """Random grammars shaped like the textbook LR(1)-not-LALR(1) pair (two recursive
    nonterminals with the same base case, used in crossed contexts; ε bodies, a nested user):
    whatever compiles — by LALR(1), the LR(1) fallback or a retry — agrees with Earley on every
    text up to 6 bytes, and moves exactly on the prefixes Earley can extend."""
    import itertools
    rng = random.Random(5)
    alpha = "abcde"

    def lit():
        return " ".join('"%s"' % rng.choice(alpha) for _ in range(rng.randint(0, 2))) or '""'

    texts = [bytes(t) for n in range(7) for t in itertools.product(alpha.encode(), repeat=n)]
    kinds = {"LR(1)": 0, "retried": 0, "conflict": 0}
    for _ in range(400):
        core = rng.choice(['"c"', '""', '"c" "c"', "w"])
        p1, p2, s1, s2 = lit(), lit(), lit(), lit()
        alts = [f"{p1} x {s1}", f"{p2} y {s1}", f"{p1} y {s2}", f"{p2} x {s2}"] + ([f"{lit()} z"] if rng.random() < 0.3 else [])
        src = (f"root ::= {' | '.join(alts)}\nx ::= {core} | {lit()} x {lit()}\ny ::= {core} | {lit()} y {lit()}\n"
               f"z ::= x | y {lit()} | \"e\" z\nw ::= \"c\" | \"d\" w\n")
        try:
            g = _C.GrammarCompiler(capacity=1).compile("ebnf", src)
        except ValueError as e:
            assert "conflict" in str(e), str(e)
            kinds["conflict"] += 1
            continue
        kinds["LR(1)"] += g.lr_kind == "LR(1)"
        kinds["retried"] += g.compile_tries > 1
        ref = _C.grammar_accepts_many("ebnf", src, texts)
        for t, want in zip(texts, ref):
            m = g.matcher()
            assert (m.advance_bytes(t) and m.is_accepting()) == want, (src, t)
        for t in texts[:400]:
            assert g.matcher().advance_bytes(t) == _C.grammar_accepts("ebnf", src, t, prefix=True), (src, t)
    assert kinds["LR(1)"] >= 3 and kinds["retried"] >= 100 and kinds["conflict"] >= 30, kinds
