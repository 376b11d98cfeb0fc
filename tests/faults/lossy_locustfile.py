"""seldon-load's locustfile on a worker that loses the first two plan messages the master sends
it (the plan, and the answer to its ready message), as a worker does when a plan arrives before
its handlers are installed (Locust drops it)."""

from locust import events

from seldon_load.locust.messages import PLAN
from seldon_load.plugin import SeldonLoadShape  # noqa: F401  (registers options and events)
from seldon_load.users import OIPUser, OpenLoopUser  # noqa: F401


@events.init.add_listener
def _lose_the_first_plans(environment, **_kw) -> None:
    runner = environment.runner
    if runner is None or PLAN not in runner.custom_messages:
        return
    listener, concurrent = runner.custom_messages[PLAN]
    lost = []

    def lossy(environment, msg, **kw):
        if len(lost) < 2:
            lost.append(msg)
            return
        listener(environment, msg, **kw)

    runner.custom_messages[PLAN] = (lossy, concurrent)
