"""Closed-loop OIP users against one model (plain Locust style).

    locust -f locustfiles/oip_model.py --headless -u 10 -t 20s \
        --host http://127.0.0.1:8080 --model synth-5ms
"""

import seldon_load.plugin  # noqa: F401  (registers the options, results and web UI tab)
from seldon_load.users import OIPUser  # noqa: F401
