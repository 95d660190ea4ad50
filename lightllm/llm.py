"""LLM: the offline front end (vLLM's habits) over the C engine: tokenize, add requests,
step until done, collect RequestOutputs. No math here: the C core does the work."""
import itertools
import os
from typing import List, Optional, Sequence, Union

from lightllm import _C
from lightllm.config import DEMO_CONFIG, load_generation_config, load_model_config
from lightllm.outputs import CompletionOutput, Logprob, RequestMetrics, RequestOutput
from lightllm.sampling_params import SamplingParams
from lightllm.tokenizer import ByteTokenizer, Tokenizer

PromptType = Union[str, List[int], dict]


def load_model_info(model: Optional[str], tokenizer: Optional[str] = None):
    """(C config dict, tokenizer or None, eos ids, generation defaults) of a checkpoint directory,
    without its weights; model None → the built-in demo model."""
    if model is None:
        return dict(DEMO_CONFIG), ByteTokenizer(), [257], {}
    if not os.path.isdir(model):
        raise FileNotFoundError(f"model directory {model!r} does not exist")
    config = load_model_config(model)
    tok_dir = tokenizer or model
    tok = Tokenizer.from_dir(tok_dir) if os.path.exists(os.path.join(tok_dir, "tokenizer.json")) else None
    eos, defaults = load_generation_config(model)
    if tok is not None and tok.eos_token_id is not None and not eos:
        eos = [tok.eos_token_id]
    return config, tok, eos, defaults


class LLM:
    """LLM(model=None, **engine_args). No model → the built-in tiny demo model.

    Engine args: load_format ("auto" | "dummy"), seed, max_model_len, max_num_seqs,
    max_num_batched_tokens, chunked_prefill_size, max_total_token_num (KV slots),
    kv_cache_memory_bytes (KV budget when max_total_token_num is not given; default 1 GiB on the
    CPU, 0 = size by mem_fraction), mem_fraction (on the GPU without either: the KV pool takes what is free after weights
    and activations, keeping 1 - mem_fraction of the device's memory back; LightLLM's flag),
    enable_prefix_caching, router_max_new_token_len (cap on the output length the admission
    estimate assumes; 0 = each request's max_tokens), num_threads (CPU backend), device ("auto":
    the first GPU when this build has CUDA and one is present, else "cpu"; "cpu"; "cuda[:N]")."""

    def __init__(self, model: Optional[str] = None, tokenizer: Optional[str] = None, *, load_format: str = "auto",
                 seed: int = 0, max_model_len: Optional[int] = None, max_num_seqs: int = 256,
                 max_num_batched_tokens: int = 4096, chunked_prefill_size: Optional[int] = None,
                 max_total_token_num: Optional[int] = None, kv_cache_memory_bytes: Optional[int] = None,
                 mem_fraction: float = 0.9,
                 enable_prefix_caching: bool = True, router_max_new_token_len: int = 0, num_threads: int = 0,
                 device: str = "auto"):
        if device == "auto":
            device = "cuda" if _C.cuda_device_count() > 0 else "cpu"
        if device != "cpu" and not device.startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        self.device = device
        if load_format not in ("auto", "safetensors", "dummy"):
            raise ValueError(f"load_format must be 'auto', 'safetensors' or 'dummy', got {load_format!r}")
        self.model = model
        config, self.tokenizer, eos, self._defaults = load_model_info(model, tokenizer)
        vocab = None
        if self.tokenizer is not None:
            vocab = _C.DetokVocab(self.tokenizer.token_bytes(config["vocab_size"]), sorted(self.tokenizer.special_ids))
        args = {"max_num_seqs": max_num_seqs, "max_batch_tokens": max_num_batched_tokens,
                "chunked_prefill_size": chunked_prefill_size or 0, "max_model_len": max_model_len or 0,
                "num_kv_slots": max_total_token_num or 0, "mem_fraction": mem_fraction,
                "kv_memory_bytes": kv_cache_memory_bytes if kv_cache_memory_bytes is not None
                else (1 << 30 if device == "cpu" else 0),
                "enable_prefix_caching": int(enable_prefix_caching), "estimate_max_new_tokens": router_max_new_token_len}
        dummy = model is None or load_format == "dummy"
        self.config = config
        self._engine = _C.Engine(config, None if dummy else model, args, vocab, eos, dummy=dummy, seed=seed,
                                 num_threads=num_threads, device=device)
        self._ids = itertools.count()

    # ---- public API ----
    def get_tokenizer(self):
        return self.tokenizer

    def get_default_sampling_params(self) -> SamplingParams:
        return SamplingParams(**self._defaults)

    def generate(self, prompts: Union[PromptType, Sequence[PromptType]],
                 sampling_params: Union[SamplingParams, Sequence[SamplingParams], None] = None,
                 use_tqdm: bool = True) -> List[RequestOutput]:
        if not isinstance(prompts, (list, tuple)) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        if sampling_params is None:
            sampling_params = self.get_default_sampling_params()
        if isinstance(sampling_params, SamplingParams):
            sampling_params = [sampling_params] * len(prompts)
        if len(sampling_params) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(sampling_params)} sampling_params")
        requests = [self._prompt(p) for p in prompts]
        return self._run(requests, sampling_params, use_tqdm)

    def chat(self, messages, sampling_params=None, use_tqdm: bool = True, chat_template: Optional[str] = None,
             add_generation_prompt: bool = True, chat_template_kwargs: Optional[dict] = None,
             tools: Optional[list] = None) -> List[RequestOutput]:
        """messages: one conversation (list of {"role", "content"}) or a list of them."""
        if self.tokenizer is None:
            raise ValueError("chat() needs a tokenizer with a chat template; this model has no tokenizer.json")
        convs = [messages] if messages and isinstance(messages[0], dict) else list(messages)
        prompts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=add_generation_prompt, tokenize=False,
                                                      tools=tools, chat_template=chat_template, **(chat_template_kwargs or {}))
                   for c in convs]
        reqs = [(text, self.tokenizer.encode(text, add_special_tokens=False)) for text in prompts]
        params = sampling_params or self.get_default_sampling_params()
        return self._run(reqs, [params] * len(reqs) if isinstance(params, SamplingParams) else params, use_tqdm)

    def prompt_logits(self, prompt_token_ids: List[int]):
        """Full-prompt logits, numpy float32 [len, vocab] (the oracle tests compare these)."""
        import numpy as np
        raw = self._engine.score(list(prompt_token_ids))
        return np.frombuffer(raw, dtype=np.float32).reshape(len(prompt_token_ids), self.config["vocab_size"])

    def stats(self) -> dict:
        return self._engine.stats()

    # ---- internals ----
    def _prompt(self, p):
        if isinstance(p, str):
            if self.tokenizer is None:
                raise ValueError("text prompts need a tokenizer; pass {'prompt_token_ids': [...]} instead")
            return p, self.tokenizer.encode(p)
        if isinstance(p, dict):
            if "prompt_token_ids" in p:
                return p.get("prompt"), list(p["prompt_token_ids"])
            if "prompt" in p:
                return self._prompt(p["prompt"])
            raise ValueError("a prompt dict needs 'prompt_token_ids' or 'prompt'")
        if isinstance(p, (list, tuple)):
            return None, list(p)
        raise ValueError(f"a prompt must be a str, a list of token ids or a dict, got {type(p).__name__}")

    def _run(self, requests, params, use_tqdm):
        outputs, live = {}, []
        try:
            for (text, ids), sp in zip(requests, params):
                rid = next(self._ids)
                self._engine.add_request(rid, ids, sp.engine_dict())
                live.append(rid)
                outputs[rid] = RequestOutput(str(rid), text, ids, [CompletionOutput(i) for i in range(sp.n)])
                if sp.logprobs is not None:
                    for co in outputs[rid].outputs:
                        co.logprobs, co.cumulative_logprob = [], 0.0
            self._drain(outputs, len(requests), use_tqdm)
        except BaseException:
            for rid in live:
                if not outputs[rid].finished:
                    self._engine.abort(rid)
            while self._engine.has_unfinished():
                self._engine.step()
            self._engine.step()  # report and free the aborted sequences
            raise
        return [outputs[rid] for rid in live]

    def _drain(self, outputs, total, use_tqdm):
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc="Processed prompts", disable=not use_tqdm)
        while self._engine.has_unfinished():
            for rid, idx, tok, lp, top, delta, finish, stop, full, cached, times in self._engine.step():
                out = outputs.get(rid)
                if out is None:
                    continue
                co = out.outputs[idx]
                if tok is not None:
                    co.token_ids.append(tok)
                    if lp is not None:
                        co.cumulative_logprob += lp[0]
                        co.logprobs.append(self._logprobs(tok, lp, top))
                co.text += delta
                if out.metrics is None:
                    out.metrics = RequestMetrics(times[0], num_cached_tokens=cached)
                if finish is not None:
                    co.text, co.finish_reason, co.stop_reason = full, finish, stop
                    out.metrics.first_token_time = out.metrics.first_token_time or times[1] or None
                    out.metrics.finished_time = times[2]
                    if all(c.finish_reason is not None for c in out.outputs):
                        out.finished = True
                        bar.update(1)
        bar.close()

    def _logprobs(self, tok, lp, top):
        """vLLM's per-token dict: the sampled token and the top-N, each with its rank."""
        decode = (lambda i: self.tokenizer.decode([i], skip_special_tokens=False)) if self.tokenizer else (lambda i: None)
        entry = {i: Logprob(l, rank + 1, decode(i)) for rank, (i, l) in enumerate(top)}
        entry[tok] = Logprob(lp[0], lp[1], decode(tok))
        return entry
