"""llenergymeasure: measure what LLM inference costs (energy, throughput, latency, FLOPs)."""

__version__ = "2.0.0"
