"""Prometheus metrics of one app (its own registry): TTFT and per-token latency histograms and
request counters fed by the EngineClient's finished-request listener; queue length, running batch
size, KV slots used/total, the prefix-cache hit rate, preemptions and the GPU idle fraction read
from the client's stats at scrape."""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from lightllm.server.engine_client import EngineClient, RequestStats

TIME_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0)


class Metrics:
    def __init__(self, client: EngineClient):
        self.client, self.registry = client, CollectorRegistry()
        r = self.registry
        self.ttft = Histogram("lightllm_time_to_first_token_seconds", "Time to first token", registry=r,
                              buckets=TIME_BUCKETS)
        self.tpot = Histogram("lightllm_time_per_output_token_seconds", "Time per output token after the first",
                              registry=r, buckets=TIME_BUCKETS)
        self.success = Counter("lightllm_request_success", "Requests finished", ["finished_reason"], registry=r)
        self.aborted = Counter("lightllm_request_abort", "Requests aborted (client gone, shutdown)", registry=r)
        self.gauges = {k: Gauge(f"lightllm_{k}", doc, registry=r) for k, doc in (
            ("queue_length", "Requests waiting"), ("running_batch_size", "Sequences running"),
            ("kv_slots_used", "KV token slots in use (held or cached)"), ("kv_slots_total", "KV token slots"),
            ("prefix_cache_hit_rate", "Prompt tokens served by the prefix cache / prompt tokens"),
            ("num_preemptions", "Sequences paused for KV room and recomputed later, since start"),
            ("gpu_idle_fraction", "Share of the backend's busy time outside the model forward (GPU waiting "
                                  "for CPU work between steps), since start"))}
        client.on_request_finished(self.observe)

    def observe(self, s: RequestStats):
        if "abort" in s.finish_reasons:
            return self.aborted.inc()
        self.success.labels(s.finish_reasons[0]).inc()
        for hist, value in ((self.ttft, s.time_to_first_token_s), (self.tpot, s.time_per_output_token_s)):
            if value is not None:
                hist.observe(value)

    def render(self) -> bytes:
        st, g = self.client.stats(), self.gauges
        g["queue_length"].set(st["num_waiting"])
        g["running_batch_size"].set(st["num_running"])
        g["kv_slots_used"].set(st["num_kv_slots"] - st["num_free_slots"])
        g["kv_slots_total"].set(st["num_kv_slots"])
        g["prefix_cache_hit_rate"].set(st["num_cached_prompt_tokens"] / max(1, st["num_prompt_tokens"]))
        g["num_preemptions"].set(st["num_preemptions"])
        if st.get("active_s"):
            g["gpu_idle_fraction"].set(max(0.0, 1.0 - st["forward_s"] / st["active_s"]))
        return generate_latest(self.registry)
