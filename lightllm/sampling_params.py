"""SamplingParams with vLLM's names and defaults; the C core validates (one set of rules).
Structured output: at most one of guided_json (a JSON Schema, dict or text), guided_regex,
guided_choice (strings) and guided_grammar (GBNF); guided_whitespace allows bounded whitespace
in JSON (compact otherwise). The engine compiles it when the request is added."""
import json
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Union

from lightllm import _C

MAX_TOKENS_UNBOUNDED = 2**31 - 1


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: Optional[int] = None
    stop: Optional[Union[str, List[str]]] = None
    stop_token_ids: Optional[List[int]] = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    max_tokens: Optional[int] = 16
    min_tokens: int = 0
    logprobs: Optional[int] = None
    skip_special_tokens: bool = True
    guided_json: Optional[Union[str, dict]] = None
    guided_regex: Optional[str] = None
    guided_choice: Optional[List[str]] = None
    guided_grammar: Optional[str] = None
    guided_whitespace: bool = False
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.stop is not None and not all(isinstance(s, str) for s in self.stop):
            raise ValueError("stop must be a string or a list of strings")
        if self.stop is not None and any(s == "" for s in self.stop):
            raise ValueError("stop strings must not be empty")
        guided = [k for k in GUIDED if getattr(self, k) is not None]
        if len(guided) > 1:
            raise ValueError(f"only one of {', '.join(GUIDED)} may be set, got {' and '.join(guided)}")
        if self.guided_choice is not None and (isinstance(self.guided_choice, str) or not self.guided_choice or
                                               not all(isinstance(c, str) for c in self.guided_choice)):
            raise ValueError("guided_choice must be a non-empty list of strings")
        for k in ("guided_regex", "guided_grammar"):
            if getattr(self, k) is not None and not isinstance(getattr(self, k), str):
                raise ValueError(f"{k} must be a string")
        if self.guided_json is not None and not isinstance(self.guided_json, (str, dict)):
            raise ValueError("guided_json must be a JSON Schema (an object or its JSON text)")
        _C.validate_sampling_params(self.engine_dict())

    def engine_dict(self):
        d = asdict(self)
        for k in ("extra", *GUIDED, "guided_whitespace"):
            d.pop(k)
        d["max_tokens"] = MAX_TOKENS_UNBOUNDED if self.max_tokens is None else self.max_tokens
        d["logprobs"] = -1 if self.logprobs is None else self.logprobs
        kind, src = self.grammar()
        if kind:
            d.update(grammar_kind=kind, grammar=src, grammar_whitespace=self.guided_whitespace)
        return d

    def grammar(self):
        """(kind, source text) of the structured-output constraint, or (None, None)."""
        if self.guided_json is not None:
            g = self.guided_json
            return "json_schema", g if isinstance(g, str) else json.dumps(g)
        if self.guided_regex is not None:
            return "regex", self.guided_regex
        if self.guided_choice is not None:
            return "choice", json.dumps(self.guided_choice)
        if self.guided_grammar is not None:
            return "ebnf", self.guided_grammar
        return None, None


GUIDED = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
