"""Structured output on the API: OpenAI's `response_format` ({"type": "text" | "json_object" |
"json_schema"}) and vLLM's `guided_json` / `guided_regex` / `guided_choice` / `guided_grammar` /
`guided_whitespace` request fields (the same names in LightLLM's native /generate `parameters`)
become SamplingParams' guided_* arguments. At most one constraint per request; the grammar
compiler runs in the engine (C), and its refusal (an unsupported keyword, a bad regex, a grammar
that is not LR(1), a spec larger than --max-grammar-bytes) comes back as a 400 naming the request
field that carried the grammar, with the compiler's message."""
from dataclasses import fields
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from lightllm.sampling_params import SamplingParams

GUIDED_FIELDS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
# first words of engine messages that are about something other than the grammar
_OTHER_FIELDS = ({f.name for f in fields(SamplingParams)} - set(GUIDED_FIELDS) - {"guided_whitespace"}) | {
    "prompt", "prompt_token_ids", "request", "sample_index", "all"}


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    name: Optional[str] = None
    description: Optional[str] = None
    schema_: Optional[Dict[str, Any]] = Field(default=None, alias="schema")
    strict: Optional[bool] = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchemaFormat] = None


class GuidedFields(BaseModel):
    """The guided_* fields (vLLM's names); a mixin of the request bodies."""
    guided_json: Optional[Union[str, Dict[str, Any]]] = None
    guided_regex: Optional[str] = None
    guided_choice: Optional[List[str]] = None
    guided_grammar: Optional[str] = None
    guided_whitespace: bool = False

    def guided_params(self, prefix="", response_format: Optional[ResponseFormat] = None):
        """(SamplingParams keyword arguments, the API field that carries the constraint or None);
        ApiError for two constraints at once or a json_schema without its schema."""
        from lightllm.server.protocol import ApiError
        given = [(prefix + k, k, getattr(self, k)) for k in GUIDED_FIELDS if getattr(self, k) is not None]
        rf = response_format
        if rf is not None and rf.type == "json_object":
            given.insert(0, ("response_format", "guided_json", {"type": "object"}))
        elif rf is not None and rf.type == "json_schema":
            if rf.json_schema is None:
                raise ApiError("response_format of type json_schema needs a json_schema object: "
                               "{\"name\": ..., \"schema\": {...}}", "response_format.json_schema")
            if rf.json_schema.schema_ is None:
                raise ApiError("response_format.json_schema.schema is required (a JSON Schema object)",
                               "response_format.json_schema.schema")
            given.insert(0, ("response_format", "guided_json", rf.json_schema.schema_))
        if len(given) > 1:
            raise ApiError(f"{given[0][0]} and {given[1][0]} are both set; a request takes at most one output "
                           "constraint", given[1][0])
        kwargs = {"guided_whitespace": self.guided_whitespace} if self.guided_whitespace else {}
        if not given:
            return kwargs, None
        field, name, value = given[0]
        return {**kwargs, name: value}, field

    @staticmethod
    def guided_aliases(field: Optional[str], prefix="") -> dict:
        """Engine/SamplingParams names → the API's, for engine_error."""
        out = {"guided_whitespace": prefix + "guided_whitespace"}
        if field:
            out.update({k: field for k in (*GUIDED_FIELDS, "grammar", "grammar_kind", "grammar_whitespace")})
        return out


def grammar_error(message: str, first_word: Optional[str], field: Optional[str]):
    """The API field an engine error names: the grammar's field when the request has one and the
    message is not about another field (the compiler's messages name no request field)."""
    if not field or first_word in _OTHER_FIELDS:
        return message, None
    if first_word in GUIDED_FIELDS:  # SamplingParams' own check, already naming a guided_* field
        return message, field
    return f"{field}: {message}", field
