"""segbench: latency, throughput and accuracy of every backend and precision, beside plain PyTorch."""

__version__ = "0.1.0"
