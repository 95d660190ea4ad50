"""lightllm.tokenizer: real Qwen3 / DeepSeek-V3 tokenizer files (special tokens, BOS the way
transformers adds it, the token -> bytes table against tokenizers' decode, chat templates),
a sentencepiece-style vocabulary built in the test (▁ and <0xNN> byte fallback) and the
demo ByteTokenizer."""
import json
import os
import random

import jinja2
import pytest

from lightllm import _C
from lightllm.tokenizer import ByteTokenizer, Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZERS = os.path.join(ROOT, "..", "shared", "tokenizers")
_LOADED = {}


def load(name):
    path = os.path.join(TOKENIZERS, name)
    if not os.path.exists(os.path.join(path, "tokenizer.json")):
        pytest.skip(f"real tokenizer files absent: {path} (see shared/tokenizers/README.md)")
    if name not in _LOADED:
        _LOADED[name] = Tokenizer.from_dir(path)
    return _LOADED[name]


def test_qwen3_special_tokens_and_no_bos():
    tok = load("qwen3")
    assert tok.vocab_size == 151669
    assert tok.bos_token is None and tok.bos_token_id is None
    assert (tok.eos_token_id, tok.pad_token_id) == (151645, 151643)
    assert set(range(151643, 151657)) <= tok.special_ids  # <|endoftext|> .. <|video_pad|>
    assert 151667 not in tok.special_ids                  # <think> is added but not special
    ids = tok.encode("Hello 你好")
    assert ids == tok.encode("Hello 你好", add_special_tokens=False) and ids[0] != 151643  # add_bos_token: false
    assert tok.decode(ids) == "Hello 你好"
    assert tok.encode("a<|im_end|>b", add_special_tokens=False)[1] == 151645
    assert tok.decode([151644, 9707, 151645]) == "Hello"
    assert tok.decode([151644, 9707, 151645], skip_special_tokens=False) == "<|im_start|>Hello<|im_end|>"


def test_deepseek_v3_bos_like_transformers():
    tok = load("deepseek_v3")
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 1)
    assert tok.vocab_size == 128815 and 0 in tok.special_ids and 128803 not in tok.special_ids
    # tokenizer.json's post-processor is ByteLevel (no BOS); tokenizer_config says add_bos_token:
    # true and transformers' LlamaTokenizerFast rewrites the post-processor to prepend it.
    ids = tok.encode("Hello world")
    assert ids[0] == 0 and ids[1:] == tok.encode("Hello world", add_special_tokens=False)
    assert ids.count(0) == 1 and tok.decode(ids) == "Hello world"


@pytest.mark.parametrize("name", ["qwen3", "deepseek_v3"])
def test_token_bytes_reproduce_decode(name):
    tok = load(name)
    table = tok.token_bytes()
    assert len(table) == tok.vocab_size
    assert len(tok.token_bytes(vocab_size=tok.vocab_size + 100)) == tok.vocab_size + 100  # padded model vocab
    for i in range(tok.vocab_size):  # every id on its own
        assert table[i].decode("utf-8", errors="replace") == tok.decode([i], skip_special_tokens=False), i
    rng = random.Random(0)
    for _ in range(500):  # random sequences: byte-level tokens combine across boundaries
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randrange(1, 24))]
        expected = b"".join(table[i] for i in ids).decode("utf-8", errors="replace")
        assert expected == tok.decode(ids, skip_special_tokens=False), ids
        kept = b"".join(table[i] for i in ids if i not in tok.special_ids)
        assert kept.decode("utf-8", errors="replace") == tok.decode(ids), ids


def test_qwen3_chat_template():
    tok = load("qwen3")
    msgs = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "你好"}]
    expected = ("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
                "<|im_start|>assistant\n")
    assert tok.apply_chat_template(msgs) == expected
    assert tok.apply_chat_template(msgs, add_generation_prompt=False) == expected[:-len("<|im_start|>assistant\n")]
    assert tok.apply_chat_template(msgs, enable_thinking=False) == expected + "<think>\n\n</think>\n\n"
    assert tok.apply_chat_template(msgs, enable_thinking=True) == expected
    # an earlier assistant turn loses its reasoning
    history = msgs + [{"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHi!"}, {"role": "user", "content": "Again"}]
    assert tok.apply_chat_template(history) == (expected[:-len("<|im_start|>assistant\n")] +
                                                "<|im_start|>assistant\nHi!<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n"
                                                "<|im_start|>assistant\n")
    ids = tok.apply_chat_template(msgs, tokenize=True)
    assert ids[:3] == [151644, 8948, 198] and ids.count(151645) == 2 and tok.decode(ids) == "system\nYou are helpful.\nuser\n你好\nassistant\n"


def test_qwen3_chat_template_tools_tojson():
    tok = load("qwen3")
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "天气",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tools=tools)
    assert text.startswith("<|im_start|>system\n# Tools\n\nYou may call one or more functions")
    assert "\n<tools>\n" + json.dumps(tools[0], ensure_ascii=False) + "\n</tools>" in text  # no \\u escapes
    assert text.endswith("</tool_call><|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_deepseek_v3_chat_template_single_bos():
    tok = load("deepseek_v3")
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(msgs) == "<｜begin▁of▁sentence｜>S<｜User｜>Hi<｜Assistant｜>"
    ids = tok.apply_chat_template(msgs, tokenize=True)
    assert ids[0] == 0 and ids.count(0) == 1 and 128803 in ids and ids[-1] == 128804  # <｜User｜>, <｜Assistant｜>


def test_template_environment_like_transformers():
    tok = ByteTokenizer()
    render = lambda t, **kw: tok.apply_chat_template([], chat_template=t, **kw)  # noqa: E731
    assert render("{{ x | tojson }}", x={"a": "é", "b": [1, 2]}) == '{"a": "é", "b": [1, 2]}'
    assert render("{{ x | tojson(indent=2) }}", x={"a": 1}) == '{\n  "a": 1\n}'
    assert render("{{ x | tojson(separators=(',', ':'), sort_keys=true) }}", x={"b": 1, "a": "<>"}) == '{"a":"<>","b":1}'
    assert render("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}") == "012"
    assert render("  {% if true %}\nA{% endif %}\nB") == "AB"  # lstrip_blocks + trim_blocks
    assert render("{{ bos_token }}|{{ eos_token }}|{{ unk_token is defined }}") == "<|bos|>|<|eos|>|False"
    assert len(render("{{ strftime_now('%Y-%m-%d') }}")) == 10
    assert render("{% generation %}G{% endgeneration %}") == "G"
    with pytest.raises(jinja2.exceptions.TemplateError, match="no system"):
        render("{{ raise_exception('no system') }}")
    with pytest.raises(jinja2.exceptions.SecurityError):
        render("{{ x.append(1) }}", x=[])  # immutable sandbox


def test_missing_chat_template_is_a_clear_error(tmp_path):
    tok = load("qwen3")
    bare = Tokenizer(tok.tok, {k: v for k, v in tok.config.items() if k != "chat_template"})
    with pytest.raises(ValueError, match="no chat_template"):
        bare.apply_chat_template([{"role": "user", "content": "hi"}])
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Tokenizer.from_dir(str(tmp_path))


def sentencepiece_dir(path):
    """A Llama-2-style vocabulary: ▁ for spaces, <0xNN> byte fallback, BOS from the config."""
    from tokenizers import Tokenizer as HFTokenizer, decoders, models, normalizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece in ["▁", "h", "e", "l", "o", "▁h", "▁he", "ll", "▁hell", "▁hello", "é"]:
        vocab[piece] = len(vocab)
    merges = [("▁", "h"), ("▁h", "e"), ("l", "l"), ("▁he", "ll"), ("▁hell", "o")]
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.save(os.path.join(path, "tokenizer.json"))
    config = {"add_bos_token": True, "add_eos_token": False, "bos_token": {"__type": "AddedToken", "content": "<s>"},
              "eos_token": "</s>", "unk_token": "<unk>", "tokenizer_class": "LlamaTokenizerFast",
              "chat_template": [{"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}"},
                                {"name": "tool_use", "template": "T{{ tools | length }}"}]}
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)
    return vocab


def test_sentencepiece_style_table(tmp_path):
    vocab = sentencepiece_dir(str(tmp_path))
    tok = Tokenizer.from_dir(str(tmp_path))
    table = tok.token_bytes()
    assert table[vocab["<0xE4>"]] == b"\xe4" and table[vocab["<0x41>"]] == b"A"
    assert table[vocab["▁hello"]] == b" hello" and table[vocab["▁"]] == b" " and table[vocab["é"]] == "é".encode()
    assert table[1] == b"<s>" and tok.special_ids == {0, 1, 2} and tok.bos_token_id == 1
    ids = tok.encode("hello 你é")
    assert ids[:3] == [1, vocab["▁hello"], vocab["▁"]]  # BOS from add_bos_token, 你 by byte fallback
    assert ids[3:6] == [vocab["<0xE4>"], vocab["<0xBD>"], vocab["<0xA0>"]] and ids[6] == vocab["é"]
    assert tok.decode(ids) == "hello 你é"
    # the table keeps the leading ▁ space that tokenizers' Strip decoder removes from a whole sequence
    pieces = _C.detokenize_stream(_C.DetokVocab(table, tok.special_ids), ids)
    assert "".join(pieces) == " hello 你é" and pieces[3:6] == ["", "", "你"]
    # tokenizer_config may carry several named templates
    assert tok.apply_chat_template([{"role": "user", "content": "x"}]) == "<s>x"
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tools=[{}, {}]) == "T2"


def test_byte_tokenizer():
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.bos_token_id, tok.eos_token_id, tok.special_ids) == (258, 256, 257, {256, 257})
    ids = tok.encode("héllo 😀")
    assert ids == [256] + list("héllo 😀".encode()) and tok.decode(ids) == "héllo 😀"
    assert tok.encode("a<|eos|>b", add_special_tokens=False) == [97, 257, 98]
    assert tok.decode([97, 257, 98], skip_special_tokens=False) == "a<|eos|>b"
    assert tok.token_bytes()[256:] == [b"<|bos|>", b"<|eos|>"] and len(tok.token_bytes(300)) == 300
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Yo"}, {"role": "user", "content": "Again"}]
    text = tok.apply_chat_template(msgs)
    assert text == "<|bos|><|system|>\nS\n<|user|>\nHi\n<|assistant|>\nYo<|eos|>\n<|user|>\nAgain\n<|assistant|>\n"
    ids = tok.apply_chat_template(msgs, tokenize=True)
    assert ids[0] == 256 and ids.count(256) == 1 and ids.count(257) == 1
