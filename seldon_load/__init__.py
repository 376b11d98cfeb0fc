"""seldon-load: open-loop, distributed load tests for Open Inference Protocol services."""

__version__ = "0.1.0"
