"""The OpenAI API's request and response shapes (pydantic), LightLLM's native /generate body,
and their conversion to SamplingParams. SamplingParams validates in C; a ValueError becomes a
400 naming the parameter (ApiError). Structured-output fields: guided.py."""
import re
import time
import uuid
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from lightllm.sampling_params import SamplingParams
from lightllm.server.guided import GuidedFields, ResponseFormat, grammar_error

_FIRST_WORD = re.compile(r"^([a-z_]+)")


class ApiError(Exception):
    """An invalid request: the status, the OpenAI error type and the offending field."""

    def __init__(self, message, param=None, status=400, type="BadRequestError"):
        super().__init__(message)
        self.message, self.param, self.status, self.type = message, param, status, type


def engine_error(e: Exception, aliases=None, grammar_field=None) -> ApiError:
    """The engine's ValueError ("temperature must be >= 0, got -1") as a 400 naming the field;
    aliases maps engine names back to the API's (chat's logprobs -> top_logprobs); the grammar
    compiler's errors name grammar_field, the request field that carried the grammar."""
    m = _FIRST_WORD.match(str(e))
    param = m.group(1) if m else None
    message, field = grammar_error(str(e), param, grammar_field)
    if field:
        return ApiError(message, field)
    param = "prompt" if param == "prompt_token_ids" else (aliases or {}).get(param, param)
    return ApiError(str(e), param)


def sampling_params(aliases=None, grammar_field=None, **kwargs) -> SamplingParams:
    try:
        return SamplingParams(**kwargs)
    except (ValueError, TypeError) as e:
        raise engine_error(e, aliases, grammar_field) from None


# ---------------------------------------------------------------- requests
class StreamOptions(BaseModel):
    include_usage: bool = False


class _SamplingRequest(GuidedFields):
    """Fields the completions and chat endpoints share (OpenAI's + vLLM's extra sampling ones)."""
    model: Optional[str] = None
    n: int = 1
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    stop: Optional[Union[str, List[str]]] = None
    stop_token_ids: Optional[List[int]] = None
    seed: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    repetition_penalty: Optional[float] = None
    user: Optional[str] = None
    ignore_eos: bool = False
    min_tokens: int = 0
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    response_format: Optional[ResponseFormat] = None

    @property
    def grammar_field(self) -> Optional[str]:
        return self.guided_params(response_format=self.response_format)[1]

    def to_sampling_params(self, defaults: dict, max_tokens, logprobs, aliases=None) -> SamplingParams:
        """defaults: generation_config.json's, for the fields the request leaves out."""
        knobs = {k: v for k, v in defaults.items() if k != "max_tokens"}
        for k in ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
                  "repetition_penalty"):
            if getattr(self, k) is not None:
                knobs[k] = getattr(self, k)
        guided, field = self.guided_params(response_format=self.response_format)
        return sampling_params({**self.guided_aliases(field), **(aliases or {})}, field, n=self.n, seed=self.seed,
                               stop=self.stop, stop_token_ids=self.stop_token_ids, ignore_eos=self.ignore_eos,
                               min_tokens=self.min_tokens, max_tokens=max_tokens, logprobs=logprobs,
                               skip_special_tokens=self.skip_special_tokens,
                               include_stop_str_in_output=self.include_stop_str_in_output, **guided, **knobs)

    @property
    def include_usage(self):
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_SamplingRequest):
    prompt: Union[List[StrictInt], List[List[StrictInt]], str, List[str]]
    max_tokens: Optional[int] = 16
    logprobs: Optional[int] = None
    echo: bool = False


class ChatMessageParam(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, tool_call_id ... go to the template
    role: str
    content: Optional[Union[str, List[Dict[str, Any]]]] = None


class ChatCompletionRequest(_SamplingRequest):
    messages: List[ChatMessageParam]
    max_tokens: Optional[int] = None
    max_completion_tokens: Optional[int] = None
    logprobs: bool = False
    top_logprobs: Optional[int] = None
    tools: Optional[List[Dict[str, Any]]] = None
    add_generation_prompt: bool = True
    chat_template: Optional[str] = None
    chat_template_kwargs: Optional[Dict[str, Any]] = None

    def conversation(self) -> List[dict]:
        """Messages as the chat template takes them; text content parts are joined."""
        out = []
        for i, m in enumerate(self.messages):
            d = m.model_dump()
            if isinstance(m.content, list):
                if any(p.get("type") != "text" or not isinstance(p.get("text"), str) for p in m.content):
                    raise ApiError("only text content parts ({'type': 'text', 'text': ...}) are supported",
                                   f"messages.{i}.content")
                d["content"] = "".join(p["text"] for p in m.content)
            out.append(d)
        return out


class GenerateParameters(GuidedFields):
    """LightLLM's native sampling parameters; do_sample=False is greedy."""
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False
    max_new_tokens: int = 16
    min_new_tokens: int = 0
    stop_sequences: Optional[Union[str, List[str]]] = None
    seed: Optional[int] = None
    n: int = 1
    skip_special_tokens: bool = True
    add_special_tokens: bool = True
    return_details: bool = False

    @property
    def grammar_field(self) -> Optional[str]:
        return self.guided_params("parameters.")[1]

    def to_sampling_params(self) -> SamplingParams:
        guided, field = self.guided_params("parameters.")
        aliases = {"max_tokens": "parameters.max_new_tokens", "min_tokens": "parameters.min_new_tokens",
                   "stop": "parameters.stop_sequences", **self.guided_aliases(field, "parameters.")}
        aliases.update({k: "parameters." + k for k in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                                                       "presence_penalty", "frequency_penalty", "seed", "n")})
        return sampling_params(aliases, field, n=self.n, temperature=self.temperature if self.do_sample else 0.0,
                               top_p=self.top_p, top_k=self.top_k, min_p=self.min_p, seed=self.seed,
                               repetition_penalty=self.repetition_penalty, presence_penalty=self.presence_penalty,
                               frequency_penalty=self.frequency_penalty, ignore_eos=self.ignore_eos,
                               max_tokens=self.max_new_tokens, min_tokens=self.min_new_tokens, stop=self.stop_sequences,
                               skip_special_tokens=self.skip_special_tokens, logprobs=0, **guided)


class GenerateRequest(BaseModel):
    inputs: str
    parameters: GenerateParameters = Field(default_factory=GenerateParameters)


# ---------------------------------------------------------------- responses
def new_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex}"


class _Response(BaseModel):
    id: str
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class CompletionLogprobs(BaseModel):
    tokens: List[str] = Field(default_factory=list)
    token_logprobs: List[Optional[float]] = Field(default_factory=list)
    top_logprobs: List[Optional[Dict[str, float]]] = Field(default_factory=list)
    text_offset: List[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: Optional[CompletionLogprobs] = None
    finish_reason: Optional[str] = None
    stop_reason: Union[int, str, None] = None


class CompletionResponse(_Response):
    object: Literal["text_completion"] = "text_completion"
    choices: List[CompletionChoice]
    usage: Optional[UsageInfo] = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: Optional[List[int]] = None


class ChatLogprobEntry(TopLogprob):
    top_logprobs: List[TopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: Optional[List[ChatLogprobEntry]] = None


class ChatMessage(BaseModel):
    role: str = "assistant"
    content: Optional[str] = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessage
    logprobs: Optional[ChatLogprobs] = None
    finish_reason: Optional[str] = None
    stop_reason: Union[int, str, None] = None


class ChatCompletionResponse(_Response):
    object: Literal["chat.completion"] = "chat.completion"
    choices: List[ChatChoice]
    usage: UsageInfo


class DeltaMessage(BaseModel):
    role: Optional[str] = None
    content: Optional[str] = None


class ChatStreamChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: Optional[ChatLogprobs] = None
    finish_reason: Optional[str] = None
    stop_reason: Union[int, str, None] = None


class ChatCompletionChunk(_Response):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: List[ChatStreamChoice]
    usage: Optional[UsageInfo] = None


class CompletionChunk(_Response):
    object: Literal["text_completion"] = "text_completion"
    choices: List[CompletionChoice]
    usage: Optional[UsageInfo] = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "lightllm"
    root: Optional[str] = None
    max_model_len: Optional[int] = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: List[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[int] = None


class ErrorResponse(BaseModel):
    error: ErrorInfo
