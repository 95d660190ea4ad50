"""The HTTP front end: a FastAPI app over an EngineClient (build_app).

OpenAI's POST /v1/completions, /v1/chat/completions (SSE streams ending in "data: [DONE]"),
GET /v1/models; LightLLM's native POST /generate and /generate_stream; GET /health and
GET /metrics (Prometheus, one registry per app). Every invalid request is a 400 (unknown model:
404) with an OpenAI error body naming the field, decided before any byte is streamed: a request
starts only after the engine accepted it. A client that disconnects aborts its request.
"""
import json
from contextlib import aclosing, asynccontextmanager
from typing import List

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from lightllm.server.engine_client import EngineClient, EngineError
from lightllm.server.metrics import Metrics
from lightllm.server.streams import Choice, chunks, collect, merge, sse, unless_disconnected, usage_info
from lightllm.server.protocol import (ApiError, ChatChoice, ChatCompletionChunk, ChatCompletionRequest,
                                      ChatCompletionResponse, ChatLogprobEntry, ChatLogprobs, ChatMessage,
                                      ChatStreamChoice, CompletionChoice, CompletionChunk, CompletionLogprobs,
                                      CompletionRequest, CompletionResponse, DeltaMessage, ErrorInfo, ErrorResponse,
                                      GenerateRequest, ModelCard, ModelList, TopLogprob, engine_error,
                                      new_id)

_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 405: "MethodNotAllowedError",
                499: "ClientDisconnected", 500: "InternalServerError", 503: "ServiceUnavailableError"}


def _error(status, message, param=None, type=None):
    body = ErrorResponse(error=ErrorInfo(message=message, type=type or _ERROR_TYPES.get(status, "APIError"),
                                         param=param, code=status))
    headers = {"Retry-After": "1"} if status == 503 else None  # busy or restarting: retry shortly
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _validation_error(exc: RequestValidationError):
    """FastAPI's 422 as OpenAI's 400: the first error, its field path as "param"."""
    err = (exc.errors() or [{}])[0]
    loc = [str(p) for p in err.get("loc", ())[1:]]
    path = [p for p in loc if not any(c in p for c in "[]-") and p not in ("str", "int", "float", "bool")]
    param = ".".join(path) or None
    if path[:1] == ["prompt"]:
        return _error(400, "prompt must be a string, a list of strings, a list of token ids or a list of "
                           "lists of token ids", "prompt")
    if err.get("type") == "json_invalid":
        return _error(400, f"malformed JSON body: {err.get('ctx', {}).get('error', err.get('msg'))}")
    if param is None:
        return _error(400, "the request body must be a JSON object, sent with Content-Type: application/json")
    return _error(400, f"{param}: {err.get('msg', 'invalid request')}", param)


class _Server:
    def __init__(self, client, tokenizer, served_model_name, max_model_len, default_params):
        self.client, self.tokenizer, self.name, self.max_model_len = client, tokenizer, served_model_name, max_model_len
        self.defaults, self.vocab_size = default_params, client.stats().get("vocab_size")
        self.metrics, self._token_bytes = Metrics(client), None

    def check_model(self, model):
        if model is not None and model != self.name:
            raise ApiError(f"The model `{model}` does not exist.", "model", 404, "NotFoundError")

    def encode(self, text, field, add_special_tokens=True) -> List[int]:
        if self.tokenizer is None:
            raise ApiError("this model has no tokenizer: send token ids", field)
        if not text:
            raise ApiError(f"{field} must not be empty", field)
        try:
            return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)
        except (TypeError, ValueError) as e:  # e.g. lone surrogates ("\ud800") the tokenizer cannot take
            raise ApiError(f"{field} is not valid Unicode text: {e}", field) from None

    def check_prompt(self, ids, params, field, max_tokens_field="max_tokens"):
        if not ids:
            raise ApiError(f"{field} must not be empty", field)
        if self.vocab_size and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i, t in enumerate(ids) if not 0 <= t < self.vocab_size)
            raise ApiError(f"{field} token id {ids[bad]} at index {bad} is outside the vocabulary "
                           f"[0, {self.vocab_size})", field)
        if len(ids) >= self.max_model_len:
            raise ApiError(f"{field} has {len(ids)} tokens; this model's context limit (max_model_len) is "
                           f"{self.max_model_len}, which leaves no room for output", field)
        if params.max_tokens is not None and len(ids) + params.max_tokens > self.max_model_len:
            raise ApiError(f"max_tokens {params.max_tokens} + {len(ids)} prompt tokens exceed this model's context "
                           f"limit (max_model_len) of {self.max_model_len}", max_tokens_field)

    async def start(self, request_id, prompts, params, grammar_field=None):
        """Submit every prompt; wait until the engine took each (its first update), so a refused
        request is a 400 before anything is sent (a refused grammar names grammar_field)."""
        gens = [self.client.generate(f"{request_id}-{i}", ids, params) for i, ids in enumerate(prompts)]
        firsts = []
        try:
            for g in gens:
                firsts.append(await g.__anext__())
        except BaseException as e:
            for g in gens:
                await g.aclose()
            if isinstance(e, ValueError):
                raise engine_error(e, grammar_field=grammar_field) from None
            raise
        return merge(gens, firsts, params.n)

    def token_bytes(self, token_id) -> bytes:
        if self._token_bytes is None:
            self._token_bytes = self.tokenizer.token_bytes(self.vocab_size) if self.tokenizer else []
        table = self._token_bytes
        return table[token_id] if token_id < len(table) else f"token_id:{token_id}".encode()

    def token_text(self, token_id) -> str:
        return self.token_bytes(token_id).decode("utf-8", errors="replace")

    def completion_logprobs(self, tokens):
        out = CompletionLogprobs()
        for tok, lp, top, offset in tokens:
            text = self.token_text(tok)
            out.tokens.append(text)
            out.token_logprobs.append(lp)
            out.top_logprobs.append({**{self.token_text(i): l for i, l in top}, text: lp})
            out.text_offset.append(offset)
        return out

    def chat_logprobs(self, tokens):
        def entry(cls, tok, lp, **kw):
            return cls(token=self.token_text(tok), logprob=max(lp, -9999.0), bytes=list(self.token_bytes(tok)), **kw)
        return ChatLogprobs(content=[entry(ChatLogprobEntry, tok, lp, top_logprobs=[entry(TopLogprob, i, l)
                                                                                   for i, l in top])
                                     for tok, lp, top, _ in tokens])


def build_app(client: EngineClient, tokenizer, served_model_name: str, max_model_len: int,
              default_params: dict = None, model_root: str = None) -> FastAPI:
    """The app; default_params: generation_config.json's sampling defaults (temperature, top_p,
    top_k, min_p, repetition_penalty, max_tokens) for fields a request leaves out."""
    s = _Server(client, tokenizer, served_model_name, max_model_len, default_params or {})

    @asynccontextmanager
    async def lifespan(app):
        yield
        await client.shutdown()

    app = FastAPI(title="lightllm", lifespan=lifespan)
    app.state.server = s
    app.add_exception_handler(ApiError, lambda req, e: _error(e.status, e.message, e.param, e.type))
    app.add_exception_handler(RequestValidationError, lambda req, e: _validation_error(e))
    app.add_exception_handler(HTTPException, lambda req, e: _error(e.status_code, str(e.detail)))
    app.add_exception_handler(EngineError, lambda req, e: _error(503, str(e)))
    app.add_exception_handler(Exception, lambda req, e: _error(500, f"internal error: {type(e).__name__}: {e}"))

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        s.check_model(body.model)
        if body.echo:
            raise ApiError("echo=true is not supported", "echo")
        p = body.prompt
        prompts = [p] if isinstance(p, str) or (p and isinstance(p[0], int)) else list(p)
        if not prompts:
            raise ApiError("prompt must not be empty", "prompt")
        prompts = [s.encode(x, "prompt") if isinstance(x, str) else x for x in prompts]
        params = body.to_sampling_params(s.defaults, body.max_tokens, body.logprobs)
        for ids in prompts:
            s.check_prompt(ids, params, "prompt")
        rid, n = new_id("cmpl"), params.n
        stream = await s.start(rid, prompts, params, body.grammar_field)
        head = {"id": rid, "model": s.name}
        num_prompt_tokens = sum(map(len, prompts))
        if body.stream:
            def chunk(c, u):
                lps = s.completion_logprobs(c.tokens[-1:]) if u.logprob is not None else None
                return CompletionChunk(**head, choices=[CompletionChoice(
                    index=c.index, text=u.text, logprobs=lps, finish_reason=u.finish_reason, stop_reason=u.stop_reason)])
            usage = body.include_usage and (lambda cs: CompletionChunk(**head, choices=[],
                                                                        usage=usage_info(num_prompt_tokens, cs)))
            return sse(request, chunks(stream, len(prompts) * n, chunk, usage))
        choices = await unless_disconnected(request, collect(stream, len(prompts) * n))
        return CompletionResponse(**head, usage=usage_info(num_prompt_tokens, choices), choices=[CompletionChoice(
            index=c.index, text=c.text, finish_reason=c.finish_reason, stop_reason=c.stop_reason,
            logprobs=s.completion_logprobs(c.tokens) if body.logprobs is not None else None) for c in choices])

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        s.check_model(body.model)
        if s.tokenizer is None:
            raise ApiError("this model has no tokenizer (and no chat template): use /v1/completions with token ids")
        if not body.messages:
            raise ApiError("messages must not be empty", "messages")
        if body.top_logprobs is not None and not body.logprobs:
            raise ApiError("top_logprobs needs logprobs=true", "top_logprobs")
        try:
            text = s.tokenizer.apply_chat_template(
                body.conversation(), add_generation_prompt=body.add_generation_prompt, tokenize=False, tools=body.tools,
                chat_template=body.chat_template, **(body.chat_template_kwargs or {}))
        except ApiError:
            raise
        except Exception as e:  # the template rejects the conversation (raise_exception, bad fields)
            raise ApiError(f"the chat template cannot render these messages: {e}", "messages") from None
        ids = s.encode(text, "messages", add_special_tokens=False)
        max_tokens = next((v for v in (body.max_completion_tokens, body.max_tokens) if v is not None),
                          s.defaults.get("max_tokens"))
        aliases = {"logprobs": "top_logprobs",
                   "max_tokens": "max_tokens" if body.max_completion_tokens is None else "max_completion_tokens"}
        params = body.to_sampling_params(s.defaults, max_tokens, (body.top_logprobs or 0) if body.logprobs else None,
                                         aliases)
        s.check_prompt(ids, params, "messages", aliases["max_tokens"])
        rid, n = new_id("chatcmpl"), params.n
        stream = await s.start(rid, [ids], params, body.grammar_field)
        head = {"id": rid, "model": s.name}
        if body.stream:
            def chunk(c, u):
                lps = s.chat_logprobs(c.tokens[-1:]) if u.logprob is not None else None
                return ChatCompletionChunk(**head, choices=[ChatStreamChoice(
                    index=c.index, delta=DeltaMessage(content=u.text or None), logprobs=lps,
                    finish_reason=u.finish_reason, stop_reason=u.stop_reason)])
            roles = [ChatCompletionChunk(**head, choices=[ChatStreamChoice(
                index=i, delta=DeltaMessage(role="assistant", content=""))]) for i in range(n)]
            usage = body.include_usage and (lambda cs: ChatCompletionChunk(**head, choices=[],
                                                                            usage=usage_info(len(ids), cs)))
            return sse(request, chunks(stream, n, chunk, usage, roles))
        choices = await unless_disconnected(request, collect(stream, n))
        return ChatCompletionResponse(**head, usage=usage_info(len(ids), choices), choices=[ChatChoice(
            index=c.index, message=ChatMessage(content=c.text), finish_reason=c.finish_reason,
            stop_reason=c.stop_reason, logprobs=s.chat_logprobs(c.tokens) if body.logprobs else None) for c in choices])

    @app.get("/v1/models")
    async def models():
        return ModelList(data=[ModelCard(id=s.name, root=model_root, max_model_len=s.max_model_len)])

    async def native(body: GenerateRequest):
        ids = s.encode(body.inputs, "inputs", add_special_tokens=body.parameters.add_special_tokens)
        params = body.parameters.to_sampling_params()
        s.check_prompt(ids, params, "inputs", "parameters.max_new_tokens")
        return ids, params, await s.start(new_id("generate"), [ids], params, body.parameters.grammar_field)

    @app.post("/generate")
    async def generate(body: GenerateRequest, request: Request):
        ids, params, stream = await native(body)
        choices = await unless_disconnected(request, collect(stream, params.n))
        out = {"generated_text": [c.text for c in choices], "count_output_tokens": sum(c.num_tokens for c in choices),
               "finish_reason": choices[0].finish_reason, "prompt_tokens": len(ids)}
        if body.parameters.return_details:
            out["tokens"] = [{"id": t, "text": s.token_text(t), "logprob": lp, "special": _is_special(s, t)}
                             for t, lp, _, _ in choices[0].tokens]
        return out

    @app.post("/generate_stream")
    async def generate_stream(body: GenerateRequest, request: Request):
        if body.parameters.n != 1:
            raise ApiError("/generate_stream streams one sample: parameters.n must be 1", "parameters.n")
        ids, params, stream = await native(body)

        async def events():
            c = Choice(0)
            async with aclosing(stream):
                async for _, u in stream:
                    c.add(u)
                    done = u.finish_reason is not None
                    yield json.dumps({"token": {"id": u.token_id, "text": u.text, "logprob": u.logprob,
                                                "special": _is_special(s, u.token_id),
                                                "count_output_tokens": c.num_tokens, "prompt_tokens": len(ids)},
                                      "generated_text": c.text if done else None, "finished": done,
                                      "finish_reason": u.finish_reason, "details": None}, ensure_ascii=False)
        return sse(request, events(), prefix="data:", done=False)

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health():
        ok = client.is_healthy()
        return JSONResponse({"status": "ok" if ok else "unhealthy"}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics():
        return Response(s.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def _is_special(s: _Server, token_id):
    return bool(s.tokenizer is not None and token_id in s.tokenizer.special_ids)
