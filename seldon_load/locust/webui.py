"""seldon-load in Locust's web UI: the Saturation tab, the web login and the request guard.

Locust's React UI renders extra tabs from ``extended_tabs``/``extended_tables`` template
arguments and fills them from an ``extended_stats`` entry of ``/stats/requests``. React
escapes every text it renders; values are plain strings and numbers here.

The guard: Locust serves any ``Host`` and starts a test for any POST (and allows every
origin by CORS), so a web page the user visits could start a test or, by DNS rebinding,
read its statistics. Here a request whose ``Host`` is not the address the UI listens on
(or a name given with ``--web-allowed-host``) is refused, and so is a state-changing
request (any method but GET/HEAD/OPTIONS) whose ``Origin`` (or, without one, ``Referer``)
is not the UI's own, and any request that names a foreign ``Origin``.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from seldon_load.locust import patches

log = logging.getLogger("seldon_load")

KEY = "seldon-saturation"

COLUMNS = [
    ("stage", "Stage"), ("target_rps", "Target RPS"), ("achieved_rps", "Achieved RPS"),
    ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("failures", "Failures"), ("dropped", "Dropped"),
    ("verdict", "Verdict"), ("reasons", "Why"),
]


def live_rows(session) -> list[dict]:
    from seldon_load.analyze.judge import live_headline
    from seldon_load.analyze.stages import stage_table
    from seldon_load.settings import scrub

    c = session.controller
    if c is None or c.t0 is None or session.settings is None:
        return []
    rows = stage_table(session.aggregate, c.plan.stages, session.names(), session.settings.criteria,
                       session.settings.open_loop, until_s=c.elapsed(), live=True,
                       workers_timeline=c.workers_timeline, reruns=c.reruns)
    out = []
    for r in rows:
        verdict = {True: "sustained", False: "NOT sustained", None: "-"}[r.get("sustained")]
        if r.get("partial"):
            verdict += " (so far)"
        out.append({
            "stage": str(r["index"]), "target_rps": r["target_rps"] if r["target_rps"] is not None else "-",
            "achieved_rps": _r(r["achieved_rps"]), "p50_ms": _r(r["latency_ms"].get("p50")),
            "p99_ms": _r(r["latency_ms"].get("p99")), "failures": r["failures"], "dropped": r["dropped"],
            "verdict": verdict, "reasons": scrub("; ".join(r["reasons"]), session.settings.secrets),
        })
    text = scrub(live_headline(rows, session.settings.criteria, session.settings.open_loop), session.settings.secrets)
    out.append({"stage": "verdict", "target_rps": "", "achieved_rps": "", "p50_ms": "", "p99_ms": "",
                "failures": "", "dropped": "", "verdict": text, "reasons": ""})
    return out


def _r(x):
    return None if x is None else round(float(x), 2)


def start_rows(session) -> list[dict]:
    """The tab when the last start sent nothing (preflight or settings failed): the error, quoted."""
    error = session.start_error
    if not error:
        return []
    return [{"stage": "preflight", "target_rps": "", "achieved_rps": "", "p50_ms": "", "p99_ms": "",
             "failures": "", "dropped": "", "verdict": "NOT STARTED: nothing was sent", "reasons": error}]


def install(environment, session) -> None:
    web_ui = environment.web_ui
    web_ui.template_args["extended_tabs"] = [{"title": "Saturation", "key": KEY}]
    web_ui.template_args["extended_tables"] = [
        {"key": KEY, "structure": [{"key": k, "title": t} for k, t in COLUMNS]}
    ]

    @web_ui.app.after_request
    def _extend(response):
        from flask import request

        if request.path != "/stats/requests" or response.status_code != 200:
            return response
        try:
            body = response.get_json()
            body["extended_stats"] = [{"key": KEY, "data": start_rows(session) or live_rows(session)}]
            response.set_data(json.dumps(body))
        except Exception:  # the tab is a view; never break Locust's own stats endpoint
            pass
        return response


def hide_host_credentials(environment) -> None:
    """The web UI shows Locust's host; show it without ``user:password@`` (the run still uses them)."""
    from seldon_load.oip.target import _redact

    def edit(args: dict) -> None:
        args["host"] = _redact(str(args.get("host") or ""))

    patches.wrap_template_args(environment.web_ui, edit)


# ---- the request guard ----------------------------------------------------------------------
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
LOOPBACK_NAMES = ("127.0.0.1", "localhost")
ANY_ADDRESS = ("", "0.0.0.0", "::", "*")


class HostPolicy:
    """Which ``Host`` headers and origins the UI accepts.

    The address it listens on (with its port) under the names 127.0.0.1 and localhost and
    the ``--web-host`` value; names given with ``--web-allowed-host`` (``NAME`` with any port,
    or ``NAME:PORT``) for a UI reached through a proxy or by a DNS name."""

    def __init__(self, web_host: str, port: int, allowed: list[str]) -> None:
        names = set(LOOPBACK_NAMES)
        if web_host not in ANY_ADDRESS:
            names.add(f"[{web_host}]" if ":" in web_host and not web_host.startswith("[") else web_host)
        self.exact = {f"{n.lower()}:{port}" for n in names}
        self.any_port: set[str] = set()
        for a in allowed:
            a = a.strip().lower()
            if a:
                (self.exact if _has_port(a) else self.any_port).add(a)

    def host_ok(self, host: str) -> bool:
        host = host.strip().lower()
        return host in self.exact or _without_port(host) in self.any_port

    @staticmethod
    def same_origin(origin: str, host: str) -> bool:
        """``origin`` (scheme://host[:port]) names the host this request came to (http or https:
        a proxy in front may end TLS)."""
        try:
            parts = urlsplit(origin.strip())
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower()

    def refusal(self, method: str, host: str, origin: str | None, referer: str | None) -> str | None:
        """Why the request is refused, or None to serve it."""
        if not self.host_ok(host):
            return f"Host {host[:100]!r} is not this web UI's address (add it with --web-allowed-host)"
        if origin is not None and not self.same_origin(origin, host):
            return f"cross-origin request from {origin[:100]!r}"
        if method.upper() in SAFE_METHODS:
            return None
        if origin is None and referer is None:
            return "a state-changing request needs an Origin or Referer header of this web UI"
        if origin is None and not self.same_origin(_origin_of(referer or ""), host):
            return f"cross-origin request (Referer {referer[:100]!r})"
        return None


def _has_port(host: str) -> bool:
    tail = host.rsplit("]", 1)[-1]
    return ":" in tail and tail.rsplit(":", 1)[1].isdigit()


def _without_port(host: str) -> str:
    return host.rsplit(":", 1)[0] if _has_port(host) else host


def _origin_of(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return f"{parts.scheme}://{parts.netloc}"


def install_request_guard(environment, allowed: list[str]) -> None:
    """Refuse (403, nothing done) what ``HostPolicy.refusal`` names, before Locust's routes run."""
    from flask import make_response, request

    web_ui = environment.web_ui
    policy = HostPolicy(str(web_ui.host or ""), int(web_ui.port), allowed)

    @web_ui.app.before_request
    def _guard():
        why = policy.refusal(request.method, request.headers.get("Host", ""), request.headers.get("Origin"),
                             request.headers.get("Referer"))
        if why is None:
            return None
        log.warning("web UI refused %s %s: %s", request.method, request.path[:100], why)
        return make_response(f"seldon-load refused this request: {why}\n", 403, {"Content-Type": "text/plain"})


# ---- the web login --------------------------------------------------------------------------
def install_web_login(environment, fail) -> None:
    """Locust's --web-login only marks the pages as protected; this is the login behind it: one user
    (SELDON_LOAD_WEB_USER, default ``admin``) whose password is SELDON_LOAD_WEB_PASSWORD."""
    import hmac
    import os
    import secrets

    from flask import Blueprint, redirect, request, session, url_for
    from flask_login import UserMixin, login_user

    password = os.environ.get("SELDON_LOAD_WEB_PASSWORD", "")
    if not password:
        fail("--web-login needs the password in the environment variable SELDON_LOAD_WEB_PASSWORD")
    username = os.environ.get("SELDON_LOAD_WEB_USER", "admin")
    web_ui = environment.web_ui
    base = getattr(environment.parsed_options, "web_base_path", "") or ""

    class _User(UserMixin):
        def __init__(self, name: str) -> None:
            self.id = name

    web_ui.app.config["SECRET_KEY"] = secrets.token_hex(32)
    web_ui.login_manager.user_loader(lambda name: _User(name) if name == username else None)
    web_ui.auth_args = {"username_password_callback": f"{base}/login_submit"}
    blueprint = Blueprint("seldon_load_login", __name__, url_prefix=base)

    @blueprint.route("/login_submit", methods=["POST"])
    def login_submit():
        given_user = request.form.get("username", "")
        given = request.form.get("password", "")
        if hmac.compare_digest(given_user.encode(), username.encode()) & hmac.compare_digest(
                given.encode(), password.encode()):
            login_user(_User(username))
            return redirect(url_for(patches.INDEX_ENDPOINT))
        session["auth_error"] = "Invalid username or password"
        return redirect(url_for(patches.LOGIN_ENDPOINT))

    web_ui.app.register_blueprint(blueprint)
