"""`python -m lightllm.server`: flags (LightLLM's names, dash or underscore spelling) → an
InProcessEngineClient → build_app → uvicorn. SIGINT / SIGTERM shut down cleanly: uvicorn drains
the connections, the app's lifespan stops the engine thread, the process exits 0."""
import argparse
import logging
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
    if args.tp != 1:
        parser.error(f"--tp {args.tp}: tensor parallelism is not available in this version; use --tp 1")
    import uvicorn
    from lightllm.server.api_server import build_app
    from lightllm.server.engine_client import InProcessEngineClient

    try:
        client = InProcessEngineClient(args.model_dir, args.tokenizer, **engine_args(args))
    except (ValueError, OSError, RuntimeError) as e:
        sys.exit(f"lightllm.server: cannot load the model: {e}")
    name = args.served_model_name or args.model_dir or "lightllm-demo"
    app = build_app(client, client.tokenizer, name, client.stats()["max_model_len"], client.default_params,
                    model_root=args.model_dir)
    logging.getLogger("lightllm").info("serving %s on http://%s:%d", name, args.host, args.port)
    # uvicorn handles SIGINT/SIGTERM (graceful shutdown), then re-raises the signal to the handler
    # it found: make that one a no-op so a signalled shutdown ends with exit status 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=3,
                access_log=args.log_level == "debug")
    return 0
