"""The C detokenizer through lightllm._C: incremental UTF-8 output equals Python's incremental
decoder (errors="replace") piece by piece, with synthetic and real (Qwen3, DeepSeek-V3)
vocabularies; special tokens; find_stop."""
import os
import random

import pytest

from lightllm import _C
from lightllm.tokenizer import ByteTokenizer, Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZERS = os.path.join(ROOT, "..", "shared", "tokenizers")


def load(name):
    path = os.path.join(TOKENIZERS, name)
    if not os.path.exists(os.path.join(path, "tokenizer.json")):
        pytest.skip(f"real tokenizer files absent: {path} (see shared/tokenizers/README.md)")
    tok = Tokenizer.from_dir(path)
    return tok, tok.token_bytes(), _C.DetokVocab(tok.token_bytes(), tok.special_ids)


@pytest.fixture(scope="module", params=["qwen3", "deepseek_v3"])
def real(request):
    return load(request.param)


def held_tail(data):
    """Length of the valid but incomplete UTF-8 character that ends `data` (0..3 bytes).
    It starts at the last lead byte: a lead byte always breaks whatever was pending."""
    for k in range(1, min(3, len(data)) + 1):
        lead = data[-k]
        if 0xC2 <= lead <= 0xF4:
            n = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
            tail = data[-k:]
            seconds = [tail[1]] if k > 1 else range(0x80, 0xC0)
            ok = n > k and any(_is_utf8(bytes([lead, b]) + tail[2:] + b"\x80" * (n - max(k, 2))) for b in seconds)
            return k if ok else 0
        if lead < 0x80 or lead > 0xBF:
            return 0
    return 0


def _is_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def expected_pieces(table, ids, specials=(), skip_special=True):
    """The contract: after each token, all text decodable from the bytes so far except a held
    incomplete character; U+FFFD per maximal invalid subpart (errors="replace").  CPython's own
    incremental decoder is not the reference: it holds ED A0..BF (a surrogate prefix, never
    valid) until more bytes come, where we emit U+FFFD at once; the joined text is the same."""
    data, done, out = b"", "", []
    for i in ids:
        data += b"" if skip_special and i in specials else table[i]
        now = data[:len(data) - held_tail(data)].decode("utf-8", errors="replace")
        assert now.startswith(done)
        out.append(now[len(done):])
        done = now
    if out:
        out[-1] += data.decode("utf-8", errors="replace")[len(done):]
    return out


def check_stream(vocab, table, ids, specials=(), skip_special=True):
    pieces = _C.detokenize_stream(vocab, ids, skip_special=skip_special)
    assert pieces == expected_pieces(table, ids, specials, skip_special)
    kept = [table[i] for i in ids if not (skip_special and i in specials)]
    assert "".join(pieces) == b"".join(kept).decode("utf-8", errors="replace")
    return pieces


UTF8_PARTS = [b"a", b" ", b"\xe4", b"\xbd", b"\xa0", b"\xe4\xbd", b"\xbd\xa0", b"\xf0\x9f", b"\x98\x80", b"\xf0",
              b"\x9f\x98\x80", b"\xff", b"\xc0", b"\xed\xa0", b"\x80", b"\xf4\x90", b"\xe0\x80", b"\xc3\xa9", b""]


def test_synthetic_vocab_random_streams():
    rng = random.Random(0)
    table = [rng.choice(UTF8_PARTS) + rng.choice(UTF8_PARTS) for _ in range(300)]
    table += [bytes(rng.randrange(256) for _ in range(rng.randrange(6))) for _ in range(300)]
    table += [b"<|end|>"]
    specials = {len(table) - 1}
    vocab = _C.DetokVocab(table, specials)
    assert vocab.vocab_size == len(table) and vocab.token_bytes(len(table) - 1) == b"<|end|>"
    for _ in range(2000):
        ids = [rng.randrange(len(table)) for _ in range(rng.randrange(1, 12))]
        check_stream(vocab, table, ids, specials, skip_special=rng.random() < 0.5)


def test_pieces_hold_incomplete_characters():
    table = [b"\xe4", b"\xbd", b"\xa0", b"\xf0\x9f", b"\x98\x80", b"a"]
    vocab = _C.DetokVocab(table, [])
    assert _C.detokenize_stream(vocab, [0, 1, 2, 3, 4, 5]) == ["", "", "你", "", "😀", "a"]
    assert _C.detokenize_stream(vocab, [0, 1, 5]) == ["", "", "\ufffda"]  # E4 BD then 'a': one U+FFFD
    assert _C.detokenize_stream(vocab, [5, 3]) == ["a", "\ufffd"]         # flush joins the last piece
    assert _C.detokenize_stream(vocab, []) == []


def test_output_bound_covers_stray_bytes():
    vocab = _C.DetokVocab([b"\x80" * 50, b"abc"], [])
    assert vocab.max_token_bytes + 8 >= 3 * 50 + 3
    assert _C.detokenize_stream(vocab, [0, 0]) == ["\ufffd" * 50] * 2
    assert _C.DetokVocab([b"abcd", "é".encode()], []).max_token_bytes == 4


def test_bad_inputs_raise():
    with pytest.raises(TypeError, match=r"token_bytes\[1\]"):
        _C.DetokVocab([b"a", "b"], [])
    with pytest.raises(ValueError, match="special id 5"):
        _C.DetokVocab([b"a", b"b"], [5])
    with pytest.raises(ValueError):
        _C.DetokVocab([], [])
    vocab = _C.DetokVocab([b"a", b"b"], [])
    with pytest.raises(ValueError, match="token id 2"):
        _C.detokenize_stream(vocab, [0, 2])
    with pytest.raises(TypeError, match="DetokVocab"):
        _C.detokenize_stream(object(), [0])
    with pytest.raises(TypeError, match=r"stops\[0\]"):
        _C.find_stop(b"abc", 0, ["a"])
    with pytest.raises(ValueError, match="new_start"):
        _C.find_stop(b"abc", -1, [b"a"])


def test_real_cjk_emoji_round_trip(real):
    tok, table, vocab = real
    text = "Hello, 世界! 你好吗？こんにちは 😀🎉👨‍👩‍👧 naïve café — ∑ x² \U0001F9D1\u200d\U0001F4BB 한국어 Ωμέγα"
    ids = tok.encode(text, add_special_tokens=False)
    pieces = check_stream(vocab, table, ids)
    assert "".join(pieces) == text == tok.decode(ids)
    assert sum(p == "" for p in pieces) > 0  # some characters really were split across tokens


def test_real_random_sequences_match_python(real):
    tok, table, vocab = real
    rng = random.Random(1)
    multibyte = [i for i, b in enumerate(table) if b and b[0] >= 0x80]  # stress UTF-8 splits
    for _ in range(300):
        pool = multibyte if rng.random() < 0.5 else range(len(table))
        ids = [rng.choice(pool) for _ in range(rng.randrange(1, 16))]
        check_stream(vocab, table, ids, tok.special_ids, skip_special=rng.random() < 0.5)


def test_real_skip_special(real):
    tok, table, vocab = real
    eos = tok.eos_token_id
    ids = tok.encode("hi", add_special_tokens=False) + [eos] + tok.encode(" there", add_special_tokens=False)
    assert "".join(_C.detokenize_stream(vocab, ids)) == "hi there"
    assert "".join(_C.detokenize_stream(vocab, ids, skip_special=False)) == "hi" + tok.eos_token + " there"


def test_qwen3_specials_and_added_tokens():
    tok, table, vocab = load("qwen3")
    ids = tok.encode("<|im_start|>user\n<think>x</think><|im_end|>", add_special_tokens=False)
    assert ids[0] == 151644 and 151667 in ids and ids[-1] == 151645
    # <think> is an added token but not special: it is kept, like tokenizer.decode does
    assert "".join(_C.detokenize_stream(vocab, ids)) == "user\n<think>x</think>" == tok.decode(ids)


def test_byte_tokenizer_vocab():
    tok = ByteTokenizer()
    vocab = _C.DetokVocab(tok.token_bytes(), tok.special_ids)
    ids = tok.encode("héllo 😀") + [tok.eos_token_id]
    assert ids[0] == 256 and "".join(_C.detokenize_stream(vocab, ids)) == "héllo 😀"


def test_find_stop():
    assert _C.find_stop(b"abc STOP def", 0, [b"STOP"]) == (0, 4)
    assert _C.find_stop(b"abc STOP", 6, [b"STOP"]) == (0, 4)         # spans the old/new boundary
    assert _C.find_stop(b"abc STOP def", 8, [b"STOP"]) is None       # already searched
    assert _C.find_stop(b"abc STOP def", 0, [b"def", b"STOP", b"c S"]) == (2, 2)  # earliest wins
    assert _C.find_stop(b"abc STOP", 5, [b"ST", b"STOP", b"S"]) == (1, 4)       # tie: the longest
    assert _C.find_stop(b"abc", 0, [b"", b"zz"]) is None
    assert _C.find_stop(b"abc", 99, [b"c"]) is None
    assert _C.find_stop(b"", 0, [b"a"]) is None
    assert _C.find_stop(b"aaaaab", 5, [b"aab"]) == (0, 3)
    assert _C.find_stop("x你好".encode(), 4, ["你好".encode()]) == (0, 1)
    assert _C.find_stop(bytearray(b"xyz"), 0, (b"yz",)) == (0, 1)


def test_find_stop_matches_python_search():
    rng = random.Random(2)
    for _ in range(3000):
        text = bytes(rng.choice(b"abc") for _ in range(rng.randrange(0, 12)))
        stops = [bytes(rng.choice(b"abc") for _ in range(rng.randrange(1, 4))) for _ in range(rng.randrange(1, 4))]
        new_start = rng.randrange(0, len(text) + 2)
        best = None
        for i, s in enumerate(stops):
            p = text.find(s, max(0, new_start - len(s) + 1))
            if p >= 0 and (best is None or (p, -len(s)) < (best[1], -len(stops[best[0]]))):
                best = (i, p)
        assert _C.find_stop(text, new_start, stops) == best, (text, new_start, stops)
