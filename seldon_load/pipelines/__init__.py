"""Seldon Core 2 Pipeline specs, shared by the testbed (which runs them) and analysis (critical path).

A neutral home at the top of the data flow: it knows YAML and nothing of the wire, Locust or gevent.
"""

from seldon_load.pipelines.spec import PIPELINE, Pipeline, Step, TensorRef, read_pipelines

__all__ = ["PIPELINE", "Pipeline", "Step", "TensorRef", "read_pipelines"]
