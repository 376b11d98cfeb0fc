"""Find a model's load saturation point with open-loop RPS stages (or --auto).

    locust -f locustfiles/saturation.py --headless --host http://127.0.0.1:8080 \
        --model synth-5ms --stages 50:5s:20s,100:5s:20s,200:5s:20s
"""

from seldon_load.locustfile import OIPUser, OpenLoopUser, SeldonLoadShape  # noqa: F401
