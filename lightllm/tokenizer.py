"""Tokenization, the token -> bytes table of the C detokenizer, and chat templates.

`Tokenizer.from_dir(model_dir)` wraps a Hugging Face `tokenizer.json` (the `tokenizers` library)
and `tokenizer_config.json` with the behaviour of transformers' fast tokenizers: BOS/EOS added
as the config says, special tokens, `apply_chat_template` rendered by the same sandboxed
jinja2 setup. `ByteTokenizer` is the byte-level tokenizer of the built-in demo model.
Both hand `token_bytes()` + `special_ids` to `lightllm._C.DetokVocab` for the C detokenizer.
"""
import json
import os
import re
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as HFTokenizer, processors

SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")


def _content(token):
    """A special token of tokenizer_config.json: a string, an AddedToken dict or None."""
    return token.get("content") if isinstance(token, dict) else token


def _byte_decoder():
    """Inverse of GPT-2's bytes_to_unicode: the printable stand-in char of each byte -> byte."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:] + [256 + n for n in range(256 - len(bs))]
    bs += [b for b in range(256) if b not in bs]
    return {chr(c): b for b, c in zip(bs, cs)}


_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


class _GenerationTag(Extension):
    """transformers' `{% generation %}...{% endgeneration %}` tag (assistant masks): rendered as-is."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


_TEMPLATES = {}


def _compile(template):
    """Compile a chat template the way transformers does (cached per template text)."""
    if template not in _TEMPLATES:
        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[_GenerationTag, loopcontrols])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        _TEMPLATES[template] = env.from_string(template)
    return _TEMPLATES[template]


class _TokenizerBase:
    """What Tokenizer and ByteTokenizer share: special-token ids and chat-template rendering."""

    chat_template = None  # str, or {name: str} for tokenizers that ship several

    def special_tokens_map(self):
        out = {name: getattr(self, name) for name in SPECIAL_NAMES if getattr(self, name, None) is not None}
        if self.additional_special_tokens:
            out["additional_special_tokens"] = list(self.additional_special_tokens)
        return out

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False, tools=None,
                            chat_template=None, **kwargs):
        """Render `messages` ([{"role", "content", ...}]) like transformers' apply_chat_template;
        tokenize=True returns ids (encoded without adding special tokens: the template has them)."""
        template = chat_template or self.chat_template
        if isinstance(template, dict):
            name = "tool_use" if tools and "tool_use" in template else "default"
            if name not in template:
                raise ValueError(f"the tokenizer has chat templates {sorted(template)} but no {name!r} one; "
                                 "pass chat_template= explicitly")
            template = template[name]
        if not template:
            raise ValueError("this tokenizer has no chat_template (tokenizer_config.json 'chat_template' or "
                             "chat_template.jinja); pass chat_template= or send plain prompts")
        text = _compile(template).render(messages=messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                         **{**self.special_tokens_map(), **kwargs})
        return self.encode(text, add_special_tokens=False) if tokenize else text

    def _token_id(self, name):
        token = getattr(self, name, None)
        return None if token is None else self.token_to_id(token)

    @property
    def bos_token_id(self):
        return self._token_id("bos_token")

    @property
    def eos_token_id(self):
        return self._token_id("eos_token")

    @property
    def pad_token_id(self):
        return self._token_id("pad_token")


class Tokenizer(_TokenizerBase):
    """A Hugging Face tokenizer directory (tokenizer.json + tokenizer_config.json)."""

    def __init__(self, tok, config, chat_template=None):
        self.tok, self.config = tok, config
        for name in SPECIAL_NAMES:
            setattr(self, name, _content(config.get(name)))
        self.additional_special_tokens = [_content(t) for t in config.get("additional_special_tokens") or []]
        self.chat_template = chat_template if chat_template is not None else config.get("chat_template")
        if isinstance(self.chat_template, list):  # [{"name": ..., "template": ...}]
            self.chat_template = {t["name"]: t["template"] for t in self.chat_template}
        self.clean_up_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        added = tok.get_added_tokens_decoder()
        self.vocab_size = max([tok.get_vocab_size(with_added_tokens=True) - 1, *added, *map(int, config.get(
            "added_tokens_decoder", {}))]) + 1
        specials = {i for i, t in added.items() if t.special}
        specials |= {int(i) for i, t in config.get("added_tokens_decoder", {}).items() if t.get("special")}
        for token in [getattr(self, n) for n in SPECIAL_NAMES] + self.additional_special_tokens:
            if token is not None and tok.token_to_id(token) is not None:
                specials.add(tok.token_to_id(token))
        self.special_ids = specials
        # transformers' LlamaTokenizerFast (and kin) rewrite the post-processor from add_bos_token /
        # add_eos_token; do the same when tokenizer.json's own post-processor does not add them.
        add_bos = config.get("add_bos_token") and self.bos_token_id is not None
        add_eos = config.get("add_eos_token") and self.eos_token_id is not None
        probe = tok.encode("a").ids
        if (add_bos and probe[:1] != [self.bos_token_id]) or (add_eos and probe[-1:] != [self.eos_token_id]):
            bos, eos = self.bos_token, self.eos_token
            single = f"{bos + ':0 ' if add_bos else ''}$A:0{' ' + eos + ':0' if add_eos else ''}"
            pair = f"{single}{' ' + bos + ':1' if add_bos else ''} $B:1{' ' + eos + ':1' if add_eos else ''}"
            tok.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=[
                (t, i) for t, i, on in ((bos, self.bos_token_id, add_bos), (eos, self.eos_token_id, add_eos)) if on])

    @classmethod
    def from_dir(cls, model_dir):
        path = os.path.join(model_dir, "tokenizer.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: lightllm needs a Hugging Face tokenizer.json")
        config_path = os.path.join(model_dir, "tokenizer_config.json")
        config = json.load(open(config_path, encoding="utf-8")) if os.path.exists(config_path) else {}
        jinja_path = os.path.join(model_dir, "chat_template.jinja")
        template = open(jinja_path, encoding="utf-8").read() if os.path.exists(jinja_path) else None
        return cls(HFTokenizer.from_file(path), config, template)

    def token_to_id(self, token):
        return self.tok.token_to_id(token)

    def encode(self, text, add_special_tokens=True):
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens=True):
        text = self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)
        if self.clean_up_spaces:  # transformers' clean_up_tokenization
            for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(a, b)
        return text

    def token_bytes(self, vocab_size=None):
        """bytes of every id, as the tokenizer.json decoder turns one token into bytes; padded with
        b"" up to vocab_size (a model's embedding table is often larger than its vocabulary)."""
        decoders = json.loads(self.tok.decoder.__getstate__()) if self.tok.decoder is not None else {}
        kinds = {d["type"] for d in decoders.get("decoders", [decoders])}
        byte_level = "ByteLevel" in kinds
        byte_fallback = "ByteFallback" in kinds
        space = "Metaspace" in kinds or any(d.get("type") == "Replace" and d.get("pattern", {}).get("String") == "▁"
                                            for d in decoders.get("decoders", [decoders]))
        inv = _byte_decoder() if byte_level else None
        out = []
        for i in range(max(self.vocab_size, vocab_size or 0)):
            token = self.tok.id_to_token(i)
            if token is None:
                out.append(b"")
            elif byte_fallback and (m := _BYTE_FALLBACK.match(token)):
                out.append(bytes([int(m.group(1), 16)]))
            elif byte_level and all(c in inv for c in token):
                out.append(bytes(inv[c] for c in token))
            else:
                out.append((token.replace("▁", " ") if space else token).encode("utf-8"))
        return out


class ByteTokenizer(_TokenizerBase):
    """The demo model's tokenizer: ids 0..255 are raw bytes, 256 = <|bos|>, 257 = <|eos|>."""

    bos_token, eos_token, unk_token, pad_token = "<|bos|>", "<|eos|>", None, "<|eos|>"
    additional_special_tokens = []
    vocab_size = 258
    special_ids = {256, 257}
    # trim_blocks drops a newline right after a block tag, so the newlines follow {{ }} expressions
    chat_template = ("{{ bos_token }}{% for message in messages %}<|{{ message.role }}|>\n{{ message.content }}"
                     "{{ eos_token if message.role == 'assistant' else '' }}\n{% endfor %}"
                     "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    _SPLIT = re.compile(r"(<\|bos\|>|<\|eos\|>)")
    TOKEN_BYTES = [bytes([i]) for i in range(256)] + [b"<|bos|>", b"<|eos|>"]

    def token_to_id(self, token):
        return {"<|bos|>": 256, "<|eos|>": 257}.get(token)

    def encode(self, text, add_special_tokens=True):
        ids = [256] if add_special_tokens else []
        for part in self._SPLIT.split(text):
            ids += [self.token_to_id(part)] if self.token_to_id(part) is not None else list(part.encode("utf-8"))
        return ids

    def decode(self, ids, skip_special_tokens=True):
        table = self.TOKEN_BYTES
        return b"".join(table[i] for i in ids if not (skip_special_tokens and i in self.special_ids)).decode(
            "utf-8", errors="replace")

    def token_bytes(self, vocab_size=None):
        return self.TOKEN_BYTES + [b""] * max(0, (vocab_size or 0) - len(self.TOKEN_BYTES))
