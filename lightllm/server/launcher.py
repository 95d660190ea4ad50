"""`python -m lightllm.server`: flags (LightLLM's names, dash or underscore spelling) → the
LightLLM v1.1 processes (this one serves HTTP; a C Router process and a C ModelBackend process
share the requests through shared memory: processes.py, shm_client.py) → build_app → uvicorn.
SIGINT / SIGTERM shut down cleanly (exit 0): uvicorn drains the connections, the children stop,
the shared-memory segments are unlinked. A child that dies makes /health answer 503 and the
server exit with status 1. --single-process serves from one in-process engine thread instead."""
import argparse
import logging
import os
import signal
import sys

# (flag, aliases, argparse keywords); every flag is also accepted with underscores
FLAGS = [
    ("--model-dir", [], dict(default=None, help="Hugging Face checkpoint directory (none: the built-in demo model)")),
    ("--tokenizer", [], dict(default=None, help="tokenizer directory (default: --model-dir)")),
    ("--host", [], dict(default="127.0.0.1")),
    ("--port", [], dict(type=int, default=8000)),
    ("--served-model-name", [], dict(default=None, help="the model name clients send (default: --model-dir)")),
    ("--load-format", [], dict(default="auto", choices=["auto", "dummy"])),
    ("--max-total-token-num", [], dict(type=int, default=None, help="KV cache token slots")),
    ("--running-max-req-size", [], dict(type=int, default=256, help="most sequences running at once")),
    ("--batch-max-tokens", [], dict(type=int, default=None, help="most tokens in one step (default: max(4096, "
                                                                 "--running-max-req-size))")),
    ("--chunked-prefill-size", [], dict(type=int, default=None)),
    ("--max-model-len", ["--max-req-total-len"], dict(type=int, default=None, help="context limit per request")),
    ("--router-max-new-token-len", [], dict(type=int, default=0, help="output length the admission estimate "
                                                                      "assumes (0: each request's max_tokens)")),
    ("--router-interval-ms", [], dict(type=int, default=5, help="router scheduling interval (multi-process router)")),
    ("--tp", [], dict(type=int, default=1, help="tensor-parallel ranks (only 1 for now)")),
    ("--device", [], dict(default="auto", help="auto | cpu | cuda | cuda:N")),
    ("--seed", [], dict(type=int, default=0)),
    ("--disable-prefix-caching", [], dict(action="store_true")),
    ("--num-threads", [], dict(type=int, default=0, help="CPU backend threads (0: all cores)")),
    ("--log-level", [], dict(default="info", choices=["critical", "error", "warning", "info", "debug"])),
    ("--single-process", [], dict(action="store_true", help="no router/backend processes: one engine thread here")),
    ("--disable-overlap", ["--disable-overlap-schedule"], dict(action="store_true", help="one backend inference "
                                                               "thread: no folding of CPU work under the forward")),
    ("--max-grammar-bytes", [], dict(type=int, default=65536, help="a request's grammar spec (JSON Schema, regex, "
                                     "choices, grammar) must be smaller than this many bytes (the shared request "
                                     "slot's grammar region); a multiple of 64")),
    ("--disable-cudagraph", [], dict(action="store_true", help="run decode steps eagerly instead of as CUDA graphs")),
    ("--queue-wait-s", [], dict(type=float, default=30.0, help="how long a request waits for a free request slot "
                                                                "before 503 + Retry-After")),
]


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m lightllm.server", description="lightllm OpenAI-compatible server")
    for flag, aliases, kw in FLAGS:
        names = [flag, *aliases]
        parser.add_argument(*dict.fromkeys(names + ["--" + n[2:].replace("-", "_") for n in names]), **kw)
    return parser


def engine_args(args) -> dict:
    batch_tokens = args.batch_max_tokens or max(4096, args.running_max_req_size)
    return dict(load_format=args.load_format, seed=args.seed, max_model_len=args.max_model_len,
                max_num_seqs=args.running_max_req_size, max_num_batched_tokens=batch_tokens,
                chunked_prefill_size=args.chunked_prefill_size, max_total_token_num=args.max_total_token_num,
                enable_prefix_caching=not args.disable_prefix_caching,
                router_max_new_token_len=args.router_max_new_token_len, num_threads=args.num_threads,
                device=args.device)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_grammar_bytes < 0 or args.max_grammar_bytes % 64 or args.max_grammar_bytes > 1 << 24:
        parser.error(f"--max-grammar-bytes {args.max_grammar_bytes}: must be 0 or a multiple of 64 up to 16 MiB")
    if args.tp != 1:
        parser.error(f"--tp {args.tp}: tensor parallelism is not available in this version; use --tp 1")
    if args.disable_cudagraph:
        os.environ["LIGHTLLM_CUDA_GRAPHS"] = "0"  # read by the CUDA backend, here or in the backend process
    import uvicorn
    from lightllm.server.api_server import build_app

    log = logging.getLogger("lightllm")
    procs = None
    try:
        if args.single_process:
            from lightllm.server.engine_client import InProcessEngineClient
            client = InProcessEngineClient(args.model_dir, args.tokenizer, max_grammar_bytes=args.max_grammar_bytes,
                                           **engine_args(args))
            tokenizer, defaults, max_len = client.tokenizer, client.default_params, client.stats()["max_model_len"]
        else:
            from lightllm.llm import load_model_info
            from lightllm.server.processes import ServerProcesses
            from lightllm.server.shm_client import ShmEngineClient
            config, tokenizer, _, defaults = load_model_info(args.model_dir, args.tokenizer)
            limit = config["max_position_embeddings"]
            if args.max_model_len and args.max_model_len > limit:
                parser.error(f"--max-model-len {args.max_model_len} is larger than the model's max_position_embeddings {limit}")
            max_len = args.max_model_len or limit
            procs = ServerProcesses(args.model_dir, args.tokenizer, engine_args(args), max_len, args.router_interval_ms,
                                    overlap=not args.disable_overlap, max_grammar_bytes=args.max_grammar_bytes)
            procs.start()
            client = ShmEngineClient(procs.server_id, config["vocab_size"], max_len, procs.alive, args.queue_wait_s)
    except (ValueError, OSError, RuntimeError) as e:
        sys.exit(f"lightllm.server: cannot load the model: {e}")
    name = args.served_model_name or args.model_dir or "lightllm-demo"
    app = build_app(client, tokenizer, name, max_len, defaults, model_root=args.model_dir)
    log.info("serving %s on http://%s:%d", name, args.host, args.port)
    # uvicorn handles SIGINT/SIGTERM (graceful shutdown), then re-raises the signal to the handler
    # it found: make that one a no-op so a signalled shutdown ends with exit status 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                           timeout_graceful_shutdown=3, access_log=args.log_level == "debug"))
    if procs is not None:
        def on_death(message):
            log.error("lightllm.server: %s; shutting down", message)
            server.should_exit = True
        procs.monitor(on_death)
    try:
        server.run()
    finally:
        if procs is not None:
            procs.stop()
    return 1 if procs is not None and procs.died else 0
