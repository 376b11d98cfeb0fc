"""Importing this module (every seldon-load locustfile does) registers seldon-load with Locust:
its options, the listeners that run a test (``seldon_load.locust.listeners``) and the Locust
patches (``seldon_load.locust.patches``). ``SeldonLoadShape`` is the shape a locustfile exposes.
"""

from __future__ import annotations

from locust import events

from seldon_load.locust import patches
from seldon_load.locust.listeners import on_init
from seldon_load.locust.shape import SeldonLoadShape
from seldon_load.options import add_arguments

__all__ = ["SeldonLoadShape"]

patches.set_module_constants()


@events.init_command_line_parser.add_listener
def _add_options(parser, **_kw) -> None:
    add_arguments(parser)


events.init.add_listener(on_init)
