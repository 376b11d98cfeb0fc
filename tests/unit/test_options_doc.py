"""docs/reference/options.md cannot rot: every option in the code is documented, with its
LOCUST_* variable and its default, and the documented variables really set the options."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from locust.argument_parser import get_empty_argument_parser, setup_parser_arguments

from seldon_load.cli import build_parser
from seldon_load.options import add_arguments

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "options.md"
# | `--name ARG` | `LOCUST_NAME` | default | meaning | example |
_ROW = re.compile(r"^\|\s*`(--[a-z0-9-]+)[^`]*`\s*\|\s*`(LOCUST_[A-Z0-9_]+)`\s*\|\s*([^|]*?)\s*\|", re.M)


class _Recorder:
    """Stands in for Locust's parser: what add_arguments registers, as given."""

    def __init__(self) -> None:
        self.options: list[tuple[str, dict]] = []

    def add_argument(self, *flags, **kw):
        self.options.append((next(f for f in flags if f.startswith("--")), kw))


def plugin_options() -> list[tuple[str, dict]]:
    rec = _Recorder()
    add_arguments(rec)
    return rec.options


def env_name(flag: str) -> str:
    return "LOCUST_" + flag[2:].replace("-", "_").upper()


def doc_default(kw: dict) -> str:
    """How the options table writes a default."""
    if kw.get("action") == "store_true":
        return "off"
    value = kw.get("default")
    if value in (None, "", []):
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    top = build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


@pytest.fixture(scope="module")
def rows(doc: str) -> dict[str, tuple[str, str]]:
    return {m.group(1): (m.group(2), m.group(3).strip("` ")) for m in _ROW.finditer(doc)}


def test_every_plugin_option_has_a_row_with_its_variable_and_default(rows) -> None:
    options = plugin_options()
    assert len(options) > 30
    for flag, kw in options:
        assert flag in rows, f"{flag} (options.add_arguments) is missing from {DOC.name}"
        variable, default = rows[flag]
        assert variable == kw.get("env_var", env_name(flag)), f"{flag}: documented as {variable}"
        assert default == doc_default(kw), f"{flag}: documented default {default!r}, code has {doc_default(kw)!r}"


def test_every_subcommand_option_is_documented(doc: str) -> None:
    parsers = subcommand_parsers()
    assert {"run", "report", "testbed", "demo"} <= set(parsers)
    for name, parser in parsers.items():
        assert f"`seldon-load {name}" in doc, f"no section for seldon-load {name}"
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert re.search(rf"`{re.escape(flag)}[` ]", doc), f"seldon-load {name} {flag} is not documented"


def test_documented_web_ui_form_matches_the_code(doc: str) -> None:
    line = next(ln for ln in doc.splitlines() if ln.startswith("Web UI form:"))
    documented = set(re.findall(r"`(--[a-z0-9-]+)`", line))
    in_form = {flag for flag, kw in plugin_options() if kw.get("include_in_web_ui")}
    assert documented == in_form


def _sample(kw: dict) -> tuple[str, object]:
    """An environment value for an option and the value it must parse to."""
    if kw.get("action") == "store_true":
        return "true", True
    if kw.get("action") == "append":
        return "[A: 1, B: 2]", ["A: 1", "B: 2"]
    if kw.get("choices"):
        choice = [c for c in kw["choices"] if c and c != kw.get("default")][0]
        return choice, choice
    if kw.get("type") in (int, float):
        return "7", kw["type"](7)
    return "x-from-env", "x-from-env"


def test_documented_variables_set_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the docs (and docker-compose.yml) promise: LOCUST_<NAME> sets --name."""
    expected = {}
    for flag, kw in plugin_options():
        text, value = _sample(kw)
        monkeypatch.setenv(kw.get("env_var", env_name(flag)), text)
        expected[flag] = value
    parser = get_empty_argument_parser(default_config_files=[])  # Locust's parser, as the processes build it
    setup_parser_arguments(parser)
    add_arguments(parser)
    opts = parser.parse_args(["-f", "locustfile.py"])
    wrong = {flag: getattr(opts, flag[2:].replace("-", "_")) for flag, value in expected.items()
             if getattr(opts, flag[2:].replace("-", "_")) != value}
    assert not wrong, f"LOCUST_* variables ignored for {sorted(wrong)} (options.add_arguments needs env_var=...)"
