"""ShmEngineClient: the API server's transport to the multi-process engine (LightLLM v1.1).

Each sample of a request is one ShmReq slot in shared memory (lightllm._C.ShmClient): submit()
writes the prompt and parameters and marks it SUBMITTED; the C Router process admits it to the
C ModelBackend process, which streams token records and UTF-8 text into the slot's ring and
finishes it (stop strings are held back there, so streamed text is final). One poller task reads
every live slot's ring and feeds each request's asyncio.Queue; closing a stream early sets the
slot's abort flag (the router forwards it, the backend frees the KV within a step). When every
slot is taken a request waits for one (up to queue_wait_s), then raises EngineBusy (the server
answers 503 with Retry-After)."""
import asyncio
import itertools
import time
from typing import Callable, Optional

from lightllm import _C
from lightllm.server.engine_client import EngineClient, EngineError, RequestStats, Update

POLL_INTERVAL_S = 0.0005


class EngineBusy(EngineError):
    """Every request slot is in use: try again shortly."""


class ShmEngineClient(EngineClient):
    def __init__(self, server_id: str, vocab_size: int, max_model_len: int, alive: Callable[[], bool],
                 queue_wait_s: float = 30.0):
        super().__init__()
        self._queue_wait_s = queue_wait_s
        self._c = _C.ShmClient(server_id)
        self._alive, self._vocab_size, self._max_model_len = alive, vocab_size, max_model_len
        self._live = {}                     # slot -> (queue, sample index, request stats)
        self._by_name = {}                  # request_id -> [slots]
        self._ids = itertools.count(1)
        self._wake: Optional[asyncio.Event] = None
        self._poller: Optional[asyncio.Task] = None
        self._prompt_tokens = self._cached_tokens = 0

    async def generate(self, request_id, prompt_ids, params):
        if not self.is_healthy():
            raise EngineError("the engine is not running")
        self._start_poller()
        rid = next(self._ids)
        stats = RequestStats(request_id, params.n, len(prompt_ids), time.monotonic())
        queue, slots, d = asyncio.Queue(), [], params.engine_dict()
        try:
            deadline = time.monotonic() + self._queue_wait_s
            for i in range(params.n):
                while (slot := self._c.submit(rid, rid, i, prompt_ids, d)) < 0:   # ValueError names a bad field
                    if time.monotonic() >= deadline:
                        raise EngineBusy("all request slots are in use (--running-max-req-size); retry shortly")
                    await asyncio.sleep(0.005)
                slots.append(slot)
                self._live[slot] = (queue, i, stats)
        except BaseException:
            for slot in slots:
                self._drop(slot, abort=True)
            raise
        self._by_name[request_id] = (slots, queue)
        self._wake.set()
        finished = 0
        try:
            while finished < params.n:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                finished += item.finish_reason is not None
                yield item
        finally:
            self._by_name.pop(request_id, None)
            # slots still ours: a finished slot may already be free and claimed by another request
            left = [slot for slot in slots if self._live.get(slot, (None,))[0] is queue]
            for slot in left:
                self._drop(slot, abort=True)
            if left:  # the client went away: the request ends as aborted
                stats.finish_reasons += ["abort"] * len(left)
                stats.finished_s = time.monotonic()
                self._notify(stats)

    async def abort(self, request_id):
        slots, queue = self._by_name.get(request_id, ((), None))
        for slot in slots:
            if self._live.get(slot, (None,))[0] is queue:  # not a finished slot another request reuses
                self._c.abort(slot)

    def stats(self) -> dict:
        st = self._c.status()
        return {"num_kv_slots": st["kv_slots_total"], "num_free_slots": st["kv_slots_free"],   # cached counts as used
                "num_cached_slots": st["kv_slots_cached"], "num_running": st["num_running"],
                "num_waiting": max(0, st["num_in_use"] - st["num_running"]),   # submitted, not yet running
                "num_prompt_tokens": self._prompt_tokens, "num_cached_prompt_tokens": self._cached_tokens,
                "num_steps": st["step"], "vocab_size": self._vocab_size, "max_model_len": self._max_model_len,
                "forward_s": st["forward_us"] / 1e6, "active_s": st["active_us"] / 1e6,
                "num_preemptions": st["num_preemptions"]}

    def is_healthy(self) -> bool:
        return self._alive() and self._c.status()["healthy"]

    async def shutdown(self):
        if self._poller:
            self._poller.cancel()
        for slot in list(self._live):
            self._drop(slot, abort=True)

    # ---- internals ----
    def _start_poller(self):
        if self._poller is None or self._poller.done():
            self._wake = asyncio.Event()
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    def _drop(self, slot, abort):
        if abort:
            self._c.abort(slot)
        self._live.pop(slot, None)
        self._c.release(slot)

    async def _poll_forever(self):
        while True:
            if not self._live:
                self._wake.clear()
                await self._wake.wait()
            if not self._alive():
                for slot, (queue, _, _) in list(self._live.items()):
                    queue.put_nowait(EngineError("the engine process died"))
                    self._drop(slot, abort=False)
                continue
            now = time.monotonic()
            for slot, (queue, index, stats) in list(self._live.items()):
                records, text, finish, stop, cached, error = self._c.poll(slot)
                if error is not None:
                    queue.put_nowait(ValueError(error))
                    self._drop(slot, abort=False)
                    continue
                for k, (token, logprob, rank, top) in enumerate(records):
                    last = k == len(records) - 1
                    stats.num_output_tokens += 1
                    stats.first_token_s = stats.first_token_s or now
                    queue.put_nowait(Update(index, token, logprob if rank else None, rank or None, top if rank else None,
                                            text if last else "", finish if last else None,
                                            stop if last else None, cached))
                if not records and (text or finish is not None):
                    queue.put_nowait(Update(index, None, None, None, None, text, finish, stop, cached))
                if finish is not None:
                    self._drop(slot, abort=False)
                    stats.finish_reasons.append(finish)
                    if index == 0:
                        self._prompt_tokens += stats.num_prompt_tokens
                        self._cached_tokens += cached
                    if len(stats.finish_reasons) == stats.num_samples:
                        stats.finished_s = now
                        self._notify(stats)
            await asyncio.sleep(POLL_INTERVAL_S)
