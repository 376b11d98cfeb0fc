"""Load a Seldon Core 2 pipeline and break its latency down per step.

    locust -f locustfiles/pipeline.py --headless --host http://127.0.0.1:8080 \
        --pipeline branching --pipeline-spec seldon_load/testbed/pipelines/branching.yaml \
        --metrics-url http://127.0.0.1:8082/metrics --stages 20:5s:20s,40:5s:20s
"""

from seldon_load.locustfile import OIPUser, OpenLoopUser, SeldonLoadShape  # noqa: F401
