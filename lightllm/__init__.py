"""lightllm: an LLM inference and serving engine — C core (lightllm._C), thin Python.

    from lightllm import LLM, SamplingParams
    llm = LLM()                      # built-in tiny demo model; LLM("/path/to/hf_checkpoint")
    out = llm.generate(["Hello"], SamplingParams(temperature=0.7, max_tokens=32))
"""
from lightllm.llm import LLM
from lightllm.outputs import CompletionOutput, Logprob, RequestMetrics, RequestOutput
from lightllm.sampling_params import SamplingParams

__all__ = ["LLM", "SamplingParams", "RequestOutput", "CompletionOutput", "Logprob", "RequestMetrics"]
__version__ = "0.1.0"
