"""The server's processes (LightLLM v1.1): this one (HTTP), the C Router, the C ModelBackend.

start() reclaims shared-memory segments of crashed runs, creates this run's segments (named by
a unique server id), spawns the backend (loads the model, then lightllm._C.backend_main) and the
router (lightllm._C.router_main), and waits until the backend publishes that it is ready. The
children die with this process (PR_SET_PDEATHSIG). A monitor thread calls on_death when a child
exits unexpectedly; stop() terminates them and unlinks the segments."""
import ctypes
import logging
import multiprocessing as mp
import os
import secrets
import signal
import threading
import time

from lightllm import _C

RING_RECORDS, RING_TEXT_BYTES, IO_CAPACITY = 128, 8192, 1024


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _backend_main(server_id, model, tokenizer, engine_args, overlap):
    _die_with_parent()
    from lightllm.llm import LLM
    llm = LLM(model, tokenizer, **engine_args)
    _C.backend_main(llm._engine, server_id, overlap)


def _router_main(server_id, interval_ms, max_num_seqs, max_model_len, estimate_cap):
    _die_with_parent()
    _C.router_main(server_id, float(interval_ms), max_num_seqs, max_model_len, estimate_cap)


class ServerProcesses:
    def __init__(self, model, tokenizer, engine_args: dict, max_model_len: int, router_interval_ms: float,
                 overlap: bool = True, max_grammar_bytes: int = 65536):
        self.server_id = f"{os.getpid()}x{secrets.token_hex(4)}"
        self.model, self.tokenizer, self.engine_args, self.overlap = model, tokenizer, engine_args, overlap
        self.max_model_len, self.interval_ms = max_model_len, router_interval_ms
        self.max_grammar_bytes = max_grammar_bytes   # per-slot grammar spec region (shm_req.h GRAMMAR)
        self.children, self.stopping, self.died = [], False, None

    def start(self, timeout_s: float = 600.0):
        _C.shm_reclaim_stale()
        max_seqs = self.engine_args.get("max_num_seqs", 256)
        # the ShmReq pool holds --running-max-req-size requests (LightLLM's meaning of the flag)
        _C.shm_server_create(self.server_id, max_seqs, self.max_model_len, RING_RECORDS, RING_TEXT_BYTES,
                             self.max_grammar_bytes, IO_CAPACITY)
        ctx = mp.get_context("spawn")
        backend = ctx.Process(target=_backend_main, name="lightllm-backend", daemon=True,
                              args=(self.server_id, self.model, self.tokenizer, self.engine_args, self.overlap))
        router = ctx.Process(target=_router_main, name="lightllm-router", daemon=True,
                             args=(self.server_id, self.interval_ms, max_seqs, self.max_model_len,
                                   self.engine_args.get("router_max_new_token_len", 0)))
        self.children = [backend, router]
        for p in self.children:
            p.start()
        logging.getLogger("lightllm").warning("lightllm.server %s: backend pid %d, router pid %d", self.server_id,
                                              backend.pid, router.pid)
        probe = _C.ShmClient(self.server_id)
        deadline = time.monotonic() + timeout_s
        while not probe.status()["healthy"]:
            dead = [p for p in self.children if not p.is_alive()]
            if dead or time.monotonic() > deadline:
                self.stop()
                what = f"{dead[0].name} exited with {dead[0].exitcode}" if dead else "timed out waiting for the backend"
                raise RuntimeError(f"the server could not start: {what}")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.died is None and all(p.is_alive() for p in self.children)

    def monitor(self, on_death):
        """Calls on_death(message) once, from a thread, if a child exits while serving."""
        def watch():
            while not self.stopping:
                for p in self.children:
                    if not p.is_alive() and not self.stopping:
                        self.died = f"{p.name} (pid {p.pid}) exited with {p.exitcode}"
                        on_death(self.died)
                        return
                time.sleep(0.2)
        threading.Thread(target=watch, name="lightllm-monitor", daemon=True).start()

    def stop(self):
        self.stopping = True
        for p in self.children:
            if p.is_alive():
                p.terminate()
        for p in self.children:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        _C.shm_server_destroy(self.server_id)
