"""SamplingParams with vLLM's names and defaults; the C core validates (one set of rules)."""
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
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.stop is not None and not all(isinstance(s, str) for s in self.stop):
            raise ValueError("stop must be a string or a list of strings")
        if self.stop is not None and any(s == "" for s in self.stop):
            raise ValueError("stop strings must not be empty")
        _C.validate_sampling_params(self.engine_dict())

    def engine_dict(self):
        d = asdict(self)
        d.pop("extra")
        d["max_tokens"] = MAX_TOKENS_UNBOUNDED if self.max_tokens is None else self.max_tokens
        d["logprobs"] = -1 if self.logprobs is None else self.logprobs
        return d
