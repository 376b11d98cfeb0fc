"""The locustfile `seldon-load run` uses: open-loop stages, auto search or closed loop.

The shape decides per tick which users run: one ``OpenLoopUser`` per worker process for
open-loop modes (``--stages``, ``--auto``), ``OIPUser`` for closed loop (``-u``, ``--sweep``).
"""

from seldon_load.plugin import SeldonLoadShape  # noqa: F401  (registers options and events)
from seldon_load.users import OIPUser, OpenLoopUser  # noqa: F401
