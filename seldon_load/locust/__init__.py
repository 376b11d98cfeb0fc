"""The Locust glue: session, control messages, load shape, web UI, progress line, and the one
module (``patches``) that overrides Locust's behaviour. ``seldon_load.plugin`` registers it."""
