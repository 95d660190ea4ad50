"""EngineClient: what the HTTP front end needs from an engine, whatever carries the requests.

generate() streams Updates for one request (its n samples), abort() stops it, stats() reads the
engine counters, is_healthy() says whether it can serve, shutdown() stops it. Listeners added
with on_request_finished() get each finished request's RequestStats (metrics).

InProcessEngineClient is the first transport: lightllm._C.Engine driven by one dedicated
thread. Only that thread touches the engine: new requests and aborts reach it through a
thread-safe queue (it sleeps on an Event when idle), updates go back to each request's
asyncio.Queue through loop.call_soon_threadsafe, one batch per request per step. Abort frees
the request's KV at once; the next step reports it. A later transport (shared-memory requests
read by the C router) implements the same interface.
"""
import abc
import asyncio
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, List, NamedTuple, Optional

from lightllm.llm import LLM
from lightllm.sampling_params import SamplingParams


class EngineError(RuntimeError):
    """The engine cannot serve (failed, or shutting down): not the client's fault."""


class Update(NamedTuple):
    """One step's news about one sample of a request. Concatenating `text` over a sample's
    updates gives its final text (stop strings cut, never sent)."""
    index: int                     # sample index, 0..n-1
    token_id: Optional[int]        # the new token; None for a finish-only update
    logprob: Optional[float]       # with logprobs: the token's log-probability,
    rank: Optional[int]            # its rank in the model's distribution,
    top_logprobs: Optional[list]   # and the top-N [(token_id, logprob)]
    text: str                      # new text, UTF-8 safe
    finish_reason: Optional[str]   # "stop" | "length" | "abort" once this sample is done
    stop_reason: object            # the stop string or stop token id that ended it
    num_cached_tokens: int         # prompt tokens served by the prefix cache


@dataclass
class RequestStats:
    request_id: str
    num_samples: int
    num_prompt_tokens: int
    arrival_s: float               # time.monotonic() at generate()
    first_token_s: Optional[float] = None
    finished_s: Optional[float] = None
    num_output_tokens: int = 0     # over all samples
    finish_reasons: List[str] = field(default_factory=list)

    @property
    def time_to_first_token_s(self):
        return None if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def time_per_output_token_s(self):
        """Decode time per token after the first (per sample)."""
        per_sample = self.num_output_tokens / self.num_samples
        if self.first_token_s is None or self.finished_s is None or per_sample <= 1:
            return None
        return (self.finished_s - self.first_token_s) / (per_sample - 1)


class EngineClient(abc.ABC):
    def __init__(self):
        self._listeners: List[Callable[[RequestStats], None]] = []

    def on_request_finished(self, callback: Callable[[RequestStats], None]):
        """callback(stats) once per finished request (called from the engine's thread)."""
        self._listeners.append(callback)

    def _notify(self, stats: RequestStats):
        for callback in self._listeners:
            try:
                callback(stats)
            except Exception:  # metrics must never break serving
                pass

    @abc.abstractmethod
    async def generate(self, request_id: str, prompt_ids: List[int], params: SamplingParams) -> AsyncIterator[Update]:
        """Updates of every sample until all are finished. A request the engine refuses raises
        ValueError (naming the field) at the first iteration; closing the iterator early aborts."""
        yield  # pragma: no cover

    @abc.abstractmethod
    async def abort(self, request_id: str): ...

    @abc.abstractmethod
    def stats(self) -> dict: ...

    @abc.abstractmethod
    def is_healthy(self) -> bool: ...

    @abc.abstractmethod
    async def shutdown(self): ...


class _Request:
    """One request as the engine thread sees it (its asyncio side is the queue). The engine's
    text deltas are final: it holds back a tail that a stop string could still cut."""

    def __init__(self, engine_id, loop, stats):
        self.engine_id, self.loop, self.stats, self.queue = engine_id, loop, stats, asyncio.Queue()

    def post(self, item):
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone
            pass


class InProcessEngineClient(EngineClient):
    """InProcessEngineClient(model=None, tokenizer=None, max_grammar_bytes=65536, **engine_args):
    LLM's loading (config, tokenizer, engine), served by one engine thread.  A grammar spec of
    max_grammar_bytes or more is refused, as the multi-process server's request slots refuse it."""

    def __init__(self, model: Optional[str] = None, tokenizer: Optional[str] = None, max_grammar_bytes: int = 65536,
                 **engine_args):
        super().__init__()
        self._max_grammar_bytes = max_grammar_bytes
        llm = LLM(model, tokenizer, **engine_args)
        self.tokenizer, self.config, self.default_params = llm.tokenizer, llm.config, dict(llm._defaults)
        self._engine = llm._engine
        self._commands = queue.SimpleQueue()      # ("add", req, prompt_ids, params) | ("abort", req)
        self._wake = threading.Event()
        self._live = {}                           # engine id -> _Request (engine thread only)
        self._by_name = {}                        # request_id -> _Request (event loop only)
        self._ids = itertools.count(1)
        self._stats = self._engine.stats()
        self._error: Optional[BaseException] = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="lightllm-engine", daemon=True)
        self._thread.start()

    # ---- event loop side ----
    async def generate(self, request_id, prompt_ids, params):
        if not self.is_healthy():
            raise EngineError(f"the engine failed: {self._error}" if self._error else "the engine is not running")
        if request_id in self._by_name:
            raise ValueError(f"request id {request_id!r} is already running")
        engine_params = params.engine_dict()
        grammar = engine_params.get("grammar")
        if grammar is not None and len(grammar.encode()) >= self._max_grammar_bytes:
            limit = self._max_grammar_bytes
            raise ValueError(f"grammar spec is {len(grammar.encode())} bytes, more than the {max(limit - 1, 0)} bytes "
                             f"the server takes (--max-grammar-bytes {limit})")
        stats = RequestStats(request_id, params.n, len(prompt_ids), time.monotonic())
        req = _Request(next(self._ids), asyncio.get_running_loop(), stats)
        self._by_name[request_id] = req
        self._submit(("add", req, list(prompt_ids), engine_params))
        num_finished = 0
        try:
            while num_finished < params.n:
                batch = await req.queue.get()
                if isinstance(batch, BaseException):
                    num_finished = params.n  # nothing left to abort
                    raise batch
                for update in batch:
                    num_finished += update.finish_reason is not None
                    yield update
        finally:
            self._by_name.pop(request_id, None)
            if num_finished < params.n:
                self._submit(("abort", req))

    async def abort(self, request_id):
        req = self._by_name.get(request_id)
        if req is not None:
            self._submit(("abort", req))

    def stats(self) -> dict:
        return self._stats

    def is_healthy(self) -> bool:
        return self._error is None and not self._stopping and self._thread.is_alive()

    async def shutdown(self):
        self._stopping = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join, 10.0)

    def _submit(self, command):
        self._commands.put(command)
        self._wake.set()

    # ---- engine thread ----
    def _run(self):
        report = False  # aborted sequences are reported (and freed) by the next step
        try:
            while not self._stopping:
                self._wake.clear()
                report |= self._take_commands()
                if report or self._engine.has_unfinished():
                    report = False
                    self._dispatch(self._engine.step(), time.monotonic())
                    self._stats = self._engine.stats()
                else:
                    self._stats = self._engine.stats()
                    self._wake.wait()
            error = EngineError("the server is shutting down")
        except BaseException as e:  # an engine failure (device error): report it, serve no more
            self._error = error = e
        for req in self._live.values():
            req.post(EngineError(str(error)))
        self._live.clear()
        while not self._commands.empty():
            command, req, *_ = self._commands.get_nowait()
            if command == "add":
                req.post(EngineError(str(error)))

    def _take_commands(self):
        aborted = False
        while True:
            try:
                command, req, *args = self._commands.get_nowait()
            except queue.Empty:
                return aborted
            if command == "add":
                try:
                    self._engine.add_request(req.engine_id, *args)
                except (ValueError, TypeError) as e:
                    req.post(ValueError(str(e)))
                    continue
                self._live[req.engine_id] = req
            elif req.engine_id in self._live:
                aborted |= self._engine.abort(req.engine_id)

    def _dispatch(self, updates, now):
        batches = {}
        for rid, index, token, lp, top, delta, finish, stop, _full, cached, _times in updates:
            req = self._live.get(rid)
            if req is None:
                continue
            s = req.stats
            if token is not None:
                s.num_output_tokens += 1
                if s.first_token_s is None:
                    s.first_token_s = now
            update = Update(index, token, lp and lp[0], lp and lp[1], top, delta, finish, stop, cached)
            batches.setdefault(req, []).append(update)
            if finish is not None:
                s.finish_reasons.append(finish)
                if len(s.finish_reasons) == s.num_samples:
                    s.finished_s = now
                    del self._live[rid]
                    self._notify(s)
        for req, batch in batches.items():
            req.post(batch)
