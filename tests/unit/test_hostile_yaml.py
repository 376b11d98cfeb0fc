"""Hostile pipeline specs: no YAML under the size limit makes the reader use unbounded memory or time.

A spec is a file someone else wrote. Nested aliases ("billion laughs") stand for billions of
nodes in a few hundred bytes; before the bounded loader one of 500 bytes took 8 s and 2 GB while
the error message was built. Memory is measured with tracemalloc (peak of Python allocations),
time with the wall clock: both are bounds that show a blow-up, with wide margins, not speed.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seldon_load.errors import ConfigError
from seldon_load.limits import MAX_SPEC_BYTES
from seldon_load.pipelines import read_pipelines
from seldon_load.safe_yaml import MAX_DEPTH, MAX_NODES

PEAK_BOUND_BYTES = 96 * 2**20  # the worst 1 MiB input peaks at about 35 MiB
TIME_BOUND_S = 90.0  # the worst 1 MiB input takes about 10 s under tracemalloc on a busy machine

HEAD = "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: p\n"


def measured(text: str | Path) -> tuple[str, int, float]:
    """(outcome, peak bytes, seconds) of reading ``text``: 'ok' or the ConfigError's message."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        read_pipelines(text)
        outcome = "ok"
    except ConfigError as exc:
        outcome = str(exc)
    finally:
        elapsed = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert "\n" not in outcome and len(outcome) <= 2100
    return outcome, peak, elapsed


def laughs(levels: int, fanout: int = 9) -> str:
    """The classic bomb, its last anchor used where a list of references is expected (the message
    about it once formatted the whole expansion)."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * fanout)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fanout)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\n{HEAD}spec:\n  steps:\n  - name: a\n    inputs: *l{levels - 1}\n"


HOSTILE = {
    # name: (text, what the one error line must say)
    "billion laughs": (laughs(9), "more than 50000 YAML nodes"),
    "billion laughs, wide": (laughs(4, 200), "more than 50000 YAML nodes"),
    "recursive alias": (f"{HEAD}spec: &s\n  steps:\n  - name: a\n    inputs: *s\n", "recursive alias *s"),
    "deep flow nesting": ("[" * (MAX_SPEC_BYTES - 1), f"nested deeper than {MAX_DEPTH} levels"),
    "deep block nesting": ("".join(" " * i + "- " for i in range(0, 400, 2)) + "x\n",
                           f"nested deeper than {MAX_DEPTH} levels"),
    "huge plain scalar": (f"{HEAD}spec:\n  steps:\n  - name: {'a' * (MAX_SPEC_BYTES - 100)}\n", "at most 253 characters"),
    "node flood": ("[" + "a," * ((MAX_SPEC_BYTES - 4) // 2) + "]", "more than 50000 YAML nodes"),
    "document flood": ("---\n" * (MAX_SPEC_BYTES // 4), "more than 50000 YAML nodes"),
    "many steps": (HEAD + "spec:\n  steps:\n" + "".join(f"  - name: s{i}\n" for i in range(600)), "600 steps"),
    "huge integer": (f"{HEAD}spec:\n  steps:\n  - name: a\n    joinWindowMs: {'9' * 100_000}\n", "invalid YAML"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_specs_end_in_one_line_within_bounds(name, tmp_path: Path):
    text, needle = HOSTILE[name]
    assert len(text.encode()) <= MAX_SPEC_BYTES
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    outcome, peak, elapsed = measured(path)
    assert needle in outcome, outcome[:300]
    assert str(path) in outcome
    assert peak < PEAK_BOUND_BYTES, f"{name}: peak {peak / 2**20:.0f} MiB"
    assert elapsed < TIME_BOUND_S, f"{name}: {elapsed:.0f} s"


def test_a_spec_over_the_size_limit_is_refused_unread(tmp_path: Path):
    path = tmp_path / "spec.yaml"
    with path.open("wb") as f:
        f.truncate(MAX_SPEC_BYTES + 1)  # sparse: no disk used
    outcome, peak, _ = measured(path)
    assert "the limit is 1 MiB" in outcome
    assert peak < 2**20  # not read
    outcome, _, _ = measured("x: " + "a" * MAX_SPEC_BYTES)  # as text too
    assert "larger than 1 MiB" in outcome


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    outcome, _, elapsed = measured(fifo)
    assert "is not a file (a FIFO)" in outcome
    assert elapsed < 30


def test_aliases_within_the_budget_still_work():
    """Seldon's specs need no anchors, but YAML written by hand may use them: a few are fine."""
    text = (f"{HEAD}spec:\n  steps:\n  - name: a\n    tensorMap: &tm\n      pipeline.inputs.x: y\n"
            "  - name: b\n    tensorMap: *tm\n  output:\n    steps: [a, b]\n")
    (pipe,) = read_pipelines(text)
    assert pipe.steps["a"].tensor_map == pipe.steps["b"].tensor_map == {"pipeline.inputs.x": "y"}


def test_the_node_budget_counts_aliases_expanded():
    # under the budget: 7 * 7 * 7 * 7 = 2401 leaves; over it: one more level of 40
    ok = "\n".join(["l0: &l0 [a, a, a, a, a, a, a]"] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 7)}]"
                                                        for i in range(1, 4)])
    assert "no Seldon Pipeline" in measured(ok)[0]
    over = ok + f"\nl9: [{', '.join(['*l3'] * (MAX_NODES // 2401 + 1))}]"
    assert "more than 50000 YAML nodes" in measured(over)[0]


# ---- property: any YAML built from anchors, aliases and nesting, under the size limit

SCALARS = st.sampled_from(["lol", "a", "pipeline.inputs", "", "null", "1", "x.outputs.y", "'q'", "[]", "{}"])


@st.composite
def alias_yaml(draw) -> str:
    """Random anchors that use earlier ones (random fan-out and shape), used anywhere in a spec."""
    count = draw(st.integers(1, 10))
    lines = []
    for i in range(count):
        fanout = draw(st.integers(1, 16))
        if i == 0:
            items = [draw(SCALARS) for _ in range(fanout)]
        else:
            items = [f"*a{draw(st.integers(0, i - 1))}" for _ in range(fanout)]
        if draw(st.booleans()):
            lines.append(f"k{i}: &a{i} [{', '.join(items)}]")
        else:
            lines.append(f"k{i}: &a{i} {{{', '.join(f'f{j}: {x}' for j, x in enumerate(items))}}}")
    last = f"*a{count - 1}"
    slot = draw(st.sampled_from(["steps", "inputs", "tensorMap", "name", "metadata", "output", "triggers"]))
    depth = draw(st.integers(0, 80))
    wrapped = "[" * depth + last + "]" * depth
    spec = {
        "steps": f"spec:\n  steps: {wrapped}\n",
        "metadata": f"spec:\n  steps: [{{name: a}}]\nextra: {wrapped}\n",
        "output": f"spec:\n  steps: [{{name: a}}]\n  output: {wrapped}\n",
    }.get(slot, f"spec:\n  steps:\n  - name: a\n    {slot}: {wrapped}\n")
    return "\n".join(lines) + "\n" + HEAD + spec


TOKENS = st.sampled_from(["&a ", "*a", "&b ", "*b", "[", "]", "{", "}", ", ", ": ", "\n", "\n  ", "- ", "? ",
                          "name", "steps", "lol", "'x'", '"y"', "!!str ", "!!map ", "---\n", "# c\n", "|\n  t\n"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(alias_yaml(), st.lists(TOKENS, max_size=300).map("".join)))
def test_no_yaml_under_the_limit_allocates_or_takes_more_than_a_bound(text):
    outcome, peak, elapsed = measured(text)
    assert peak < PEAK_BOUND_BYTES, (peak, text[:200])
    assert elapsed < TIME_BOUND_S, (elapsed, text[:200])
    assert outcome == "ok" or outcome.startswith("<pipeline spec>")
