"""Offline generation with LLM.generate().

    python examples/offline_generation.py                 # built-in tiny demo model (no download)
    python examples/offline_generation.py /path/to/hf_checkpoint
"""
import sys

from lightllm import LLM, SamplingParams


def main():
    llm = LLM(sys.argv[1] if len(sys.argv) > 1 else None)
    prompts = ["Hello, my name is", "The capital of France is", {"prompt_token_ids": [1, 2, 3]}]
    params = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=32, seed=1)
    for out in llm.generate(prompts, params):
        c = out.outputs[0]
        print(f"{out.prompt!r} -> {c.text!r} ({len(c.token_ids)} tokens, finish_reason={c.finish_reason})")
    print(llm.stats())


if __name__ == "__main__":
    main()
