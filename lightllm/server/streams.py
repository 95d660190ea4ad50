"""Streams of engine updates as the API needs them: merging the prompts x samples of one API
request (merge), accumulating a choice's text/tokens (Choice), JSON chunks for SSE (chunks,
sse), whole responses (collect), usage, and cancelling work when the client goes away
(unless_disconnected)."""
import asyncio
import time
from contextlib import aclosing

from fastapi import Request
from fastapi.responses import StreamingResponse

from lightllm.server.engine_client import EngineError
from lightllm.server.protocol import ApiError, ErrorInfo, ErrorResponse, UsageInfo


class Choice:
    """One output (prompt i, sample j) as it accumulates."""

    def __init__(self, index):
        self.index, self.pieces, self.num_tokens, self.finish_reason, self.stop_reason = index, [], 0, None, None
        self.text_len, self.tokens = 0, []  # with logprobs: (token_id, logprob, top, text offset)

    def add(self, u):
        if u.logprob is not None:
            self.tokens.append((u.token_id, u.logprob, u.top_logprobs, self.text_len))
        self.pieces.append(u.text)
        self.text_len += len(u.text)
        self.num_tokens += u.token_id is not None
        if u.finish_reason is not None:
            self.finish_reason, self.stop_reason = u.finish_reason, u.stop_reason

    @property
    def text(self):
        return "".join(self.pieces)


async def merge(gens, firsts, n):
    """(choice index, Update) from every prompt's stream as they come; closing aborts them all."""
    queue, tasks = asyncio.Queue(), []

    async def pump(i, gen):
        try:
            async for u in gen:
                queue.put_nowait((i * n + u.index, u))
            queue.put_nowait(None)
        except Exception as e:
            queue.put_nowait(e)
    try:
        for i, u in enumerate(firsts):
            yield i * n + u.index, u
        if len(gens) == 1:
            async for u in gens[0]:
                yield u.index, u
            return
        tasks = [asyncio.ensure_future(pump(i, g)) for i, g in enumerate(gens)]
        for _ in gens:
            while (item := await queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for g in gens:
            await g.aclose()


async def unless_disconnected(request: Request, coro):
    """Run coro; cancel it (aborting its requests) when the client goes away."""
    task = asyncio.ensure_future(coro)
    try:
        while not (await asyncio.wait({task}, timeout=0.25))[0]:
            if await request.is_disconnected():
                task.cancel()
                raise ApiError("client disconnected", status=499, type="ClientDisconnected")
        return task.result()
    finally:
        task.cancel()


def sse(request: Request, events, prefix="data: ", done=True):
    """An SSE response of the JSON strings `events` yields; stops (and aborts) when the client
    goes away; an engine failure mid-stream becomes an error event."""
    async def body():
        checked = time.monotonic()
        async with aclosing(events):
            try:
                async for data in events:
                    yield f"{prefix}{data}\n\n"
                    if time.monotonic() - checked > 1.0:
                        checked = time.monotonic()
                        if await request.is_disconnected():
                            return
            except (ApiError, EngineError) as e:
                info = ErrorInfo(message=str(e), type="ServiceUnavailableError", code=503)
                yield f"{prefix}{ErrorResponse(error=info).model_dump_json()}\n\n"
        if done:
            yield "data: [DONE]\n\n"
    return StreamingResponse(body(), media_type="text/event-stream")


def usage_info(num_prompt_tokens, choices):
    completion = sum(c.num_tokens for c in choices)
    return UsageInfo(prompt_tokens=num_prompt_tokens, completion_tokens=completion,
                     total_tokens=num_prompt_tokens + completion)


async def chunks(stream, num_choices, chunk, usage=None, preamble=()):
    """A stream's JSON chunks: the preamble, chunk(choice, update) for each update that carries
    text, a finish or logprobs, then usage(choices) when asked for."""
    for first in preamble:
        yield first.model_dump_json()
    choices = [Choice(i) for i in range(num_choices)]
    async with aclosing(stream):
        async for ci, u in stream:
            choices[ci].add(u)
            if u.text or u.finish_reason or u.logprob is not None:
                yield chunk(choices[ci], u).model_dump_json()
    if usage:
        yield usage(choices).model_dump_json()


async def collect(stream, num_choices):
    choices = [Choice(i) for i in range(num_choices)]
    async with aclosing(stream):
        async for ci, u in stream:
            choices[ci].add(u)
    return choices
