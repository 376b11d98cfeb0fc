"""Seldon Core 2 Pipeline specs: read, validate and query the DAG of steps.

The reader applies Seldon Core 2's own checks (scheduler ``pipeline/validate.go``: known
steps, well-formed references, no cycles, step name != pipeline name) plus a few of its own
(duplicate names, misspelt fields, join types), so a bad spec fails before any load is sent,
with one line naming the file, line, pipeline and step. Cyclic pipelines (Core 2's
``allowCycles``) are rejected: a critical path needs a DAG.

Reference grammar (``inputs``, ``triggers``, ``tensorMap`` keys, ``output.steps``)::

    STEP                      = STEP.outputs (all output tensors of STEP)
    STEP.outputs[.TENSOR]     output tensors of STEP
    STEP.inputs[.TENSOR]      the tensors STEP was given
    pipeline | PIPELINE_NAME  = pipeline.inputs (the request sent to the pipeline)
    pipeline.inputs[.TENSOR]  also PIPELINE_NAME.inputs[.TENSOR], Seldon's own spelling

References to the pipeline's inputs are normalised to the step name ``pipeline``, so
``TensorRef.__str__`` (and ``tensor_map`` keys) use one canonical spelling.
Each step runs the model of the same name, as in Seldon Core 2; ``Step.model`` is the name.
"""

from __future__ import annotations

import difflib
import pathlib
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

import yaml

from seldon_load.errors import ConfigError
from seldon_load.limits import MAX_SPEC_BYTES, read_capped, size_text
from seldon_load.safe_text import clip, shown
from seldon_load.safe_yaml import LineDict, load_all

PIPELINE = "pipeline"
"""Pseudo-step name of the pipeline's own inputs in a ``TensorRef``."""

JOIN_TYPES = ("inner", "outer", "any")
STEP_FIELDS = ("name", "inputs", "tensorMap", "triggers", "inputsJoinType", "joinType",
               "triggersJoinType", "joinWindowMs", "batch")
MAX_NAME_CHARS = 253  # Kubernetes resource names (models and pipelines are resources)
_MAX_LIST_DEPTH = 8
_MAX_STEPS = 500  # per pipeline: checks are quadratic in steps; Seldon's examples have under 10
_MAX_HINT_CHARS = 64
_REF_HELP = "expected STEP, STEP.outputs[.TENSOR], STEP.inputs[.TENSOR] or pipeline.inputs[.TENSOR]"


@dataclass(frozen=True)
class TensorRef:
    """One reference to tensors: ``step.kind[.tensor]``; ``tensor=None`` means all of them."""

    step: str
    kind: Literal["inputs", "outputs"]
    tensor: str | None = None

    @classmethod
    def parse(cls, text: object, pipeline_name: str | None = None) -> TensorRef:
        """Parse Seldon's reference syntax; raises ConfigError on a malformed reference."""
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"malformed reference {shown(text)}: {_REF_HELP}")
        parts = text.strip().split(".")
        if len(parts) > 3 or any(not p or p != p.strip() or any(c.isspace() for c in p) for p in parts):
            raise ConfigError(f"malformed reference {shown(text)}: {_REF_HELP}")
        step = PIPELINE if parts[0] in (PIPELINE, pipeline_name) else parts[0]
        if len(parts) == 1:
            return cls(step, "inputs" if step == PIPELINE else "outputs")
        kind = parts[1]
        if kind not in ("inputs", "outputs"):
            raise ConfigError(f"malformed reference {shown(text)}: second part must be 'inputs' or 'outputs'")
        if step == PIPELINE and kind == "outputs":
            raise ConfigError(f"malformed reference {shown(text)}: a step cannot read the pipeline's own outputs")
        return cls(step, kind, parts[2] if len(parts) == 3 else None)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.step}.{self.kind}" + (f".{self.tensor}" if self.tensor else "")


@dataclass
class Step:
    """One step of a pipeline: the model it runs and where its inputs come from."""

    name: str
    model: str
    inputs: list[TensorRef]
    tensor_map: dict[str, str] = field(default_factory=dict)
    triggers: list[TensorRef] = field(default_factory=list)
    join_type: str = "inner"
    triggers_join_type: str = "inner"
    join_window_ms: int | None = None
    batch: dict[str, Any] | None = None
    line: int | None = None

    def refs(self) -> list[TensorRef]:
        """Inputs then triggers: everything the step waits for."""
        return [*self.inputs, *self.triggers]


@dataclass
class Pipeline:
    """A validated pipeline; ``steps`` keeps spec order."""

    name: str
    steps: dict[str, Step]
    output_refs: list[TensorRef]
    output_tensor_map: dict[str, str] = field(default_factory=dict)
    output_join_type: str = "inner"
    input: dict[str, Any] | None = None
    namespace: str | None = None
    origin: str = "<spec>"
    line: int | None = None

    def dependencies(self, step: str) -> set[str]:
        """Steps that ``step`` reads from or is triggered by (the pipeline's inputs excluded)."""
        return {r.step for r in self.steps[step].refs() if r.step != PIPELINE}

    def topological_order(self) -> list[str]:
        """Steps so that each comes after its dependencies; ties keep spec order."""
        order: list[str] = []
        placed: set[str] = set()
        while len(order) < len(self.steps):
            ready = [s for s in self.steps if s not in placed and self.dependencies(s) <= placed]
            if not ready:
                _fail(self.origin, self.line, self.name, None, f"cycle {_cycle_text(self)}")
            order.extend(ready)
            placed.update(ready)
        return order

    def sinks(self) -> list[str]:
        """The output steps, in ``spec.output.steps`` order."""
        return list(dict.fromkeys(r.step for r in self.output_refs))


def read_pipelines(source: str | pathlib.Path) -> list[Pipeline]:
    """Read every Seldon Pipeline in a YAML file (a path) or YAML text.

    Accepts one or many documents and ``kind: List`` (``kubectl get pipeline -o yaml``);
    other kinds (Model, Server, ...) are skipped. Raises ConfigError with one line.
    """
    text, origin = _read_source(source)
    try:
        docs = load_all(text)  # a bounded SafeLoader: no objects, no alias bombs
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{origin}:{mark.line + 1}" if mark else origin
        raise ConfigError(f"{where}: invalid YAML: {_one_line(exc.problem or exc.context)}") from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise ConfigError(f"{origin}: invalid YAML: {_one_line(exc)}") from None
    resources: list[dict[str, Any]] = []
    kinds: list[str] = []
    for doc in docs:
        _collect(doc, resources, kinds, 0)
    if not resources:
        found = f" (found: {clip(', '.join(list(dict.fromkeys(kinds))[:5]))})" if kinds else ""
        raise ConfigError(f"{origin}: no Seldon Pipeline resource (kind: Pipeline){found}")
    pipelines: dict[str, Pipeline] = {}
    for res in resources:
        pipe = _build(res, origin)
        if pipe.name in pipelines:
            _fail(origin, pipe.line, pipe.name, None, "pipeline defined twice")
        pipelines[pipe.name] = pipe
    return list(pipelines.values())


def _read_source(source: str | pathlib.Path) -> tuple[str, str]:
    """Return (text, origin for messages); a one-line str naming a file is read as a path.

    Either way the text is at most MAX_SPEC_BYTES: the loader's work is bounded by it.
    """
    if isinstance(source, pathlib.Path) or _looks_like_path(source):
        data = read_capped(source, MAX_SPEC_BYTES, "pipeline spec")
        try:
            return data.decode("utf-8"), clip(source)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"pipeline spec {shown(str(source))}: not UTF-8 text ({exc.reason} at byte "
                              f"{exc.start})") from None
    if not isinstance(source, str):
        raise ConfigError(f"pipeline spec must be a path or YAML text, not {type(source).__name__}")
    if len(source) > MAX_SPEC_BYTES:
        raise ConfigError(f"pipeline spec text: larger than {size_text(MAX_SPEC_BYTES)}")
    return source, "<pipeline spec>"


def _looks_like_path(source: object) -> bool:
    if not isinstance(source, str) or "\n" in source or "\0" in source or len(source) > 4096:
        return False
    if source.strip().lower().endswith((".yaml", ".yml")):
        return True
    try:
        return pathlib.Path(source).is_file()
    except (OSError, ValueError):
        return False


def _collect(doc: object, out: list[dict[str, Any]], kinds: list[str], depth: int) -> None:
    """Append Seldon Pipeline resources found in ``doc`` (descending into Lists)."""
    if not isinstance(doc, dict):
        if doc is not None:
            kinds.append(type(doc).__name__)
        return
    kind = doc.get("kind")
    if kind in ("List", "PipelineList") and isinstance(doc.get("items"), list) and depth < _MAX_LIST_DEPTH:
        for item in doc["items"]:
            _collect(item, out, kinds, depth + 1)
        return
    api = doc.get("apiVersion")
    if kind == "Pipeline" and (api is None or (isinstance(api, str) and api.startswith("mlops.seldon.io/"))):
        out.append(doc)
    else:
        kinds.append(clip(kind, 60) if api is None else f"{clip(kind, 60)} ({clip(api, 60)})")


def _build(res: dict[str, Any], origin: str) -> Pipeline:
    line = _line(res)
    meta = res.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name.strip():
        _fail(origin, _line(meta) or line, None, None, "Pipeline has no metadata.name")
    if len(name) > MAX_NAME_CHARS:
        _fail(origin, _line(meta) or line, name, None,
              f"metadata.name may have at most {MAX_NAME_CHARS} characters (a Kubernetes resource name)")
    namespace = meta.get("namespace")
    spec = res.get("spec")
    if not isinstance(spec, dict):
        _fail(origin, line, name, None, "Pipeline has no spec (a mapping with 'steps')")
    raw_steps = spec.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        _fail(origin, _line(spec) or line, name, None, "spec.steps must be a non-empty list of steps")
    if len(raw_steps) > _MAX_STEPS:
        _fail(origin, _line(spec) or line, name, None, f"{len(raw_steps)} steps; at most {_MAX_STEPS} are supported")
    steps: dict[str, Step] = {}
    for index, raw in enumerate(raw_steps):
        step = _build_step(raw, index, name, origin, _line(spec) or line)
        if step.name in steps:
            _fail(origin, step.line, name, step.name, "duplicate step name")
        steps[step.name] = step
    pipe = Pipeline(name=name, steps=steps, output_refs=[], origin=origin, line=line,
                    namespace=namespace if isinstance(namespace, str) else None)
    for step in steps.values():
        for ref in step.refs():
            _check_known(pipe, step, ref)
        for key in step.tensor_map:
            _check_known(pipe, step, TensorRef.parse(key))
    _read_output(pipe, spec.get("output"))
    spec_input = spec.get("input")
    if spec_input is not None and not isinstance(spec_input, dict):
        _fail(origin, _line(spec), name, None, "spec.input must be a mapping")
    pipe.input = dict(spec_input) if spec_input else None
    cycle = _find_cycle(pipe)
    if cycle:
        first = pipe.steps[cycle[0]]
        note = " (cyclic pipelines are not supported by seldon-load)" if spec.get("allowCycles") else ""
        _fail(origin, first.line, name, cycle[0], f"cycle {' -> '.join(cycle)}{note}")
    return pipe


def _build_step(raw: object, index: int, pipeline: str, origin: str, spec_line: int | None) -> Step:
    if not isinstance(raw, dict):
        _fail(origin, spec_line, pipeline, None, f"spec.steps[{index}] must be a mapping with a 'name'")
    line = _line(raw) or spec_line
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        _fail(origin, line, pipeline, None, f"spec.steps[{index}] has no name")

    def fail(msg: str) -> NoReturn:
        _fail(origin, line, pipeline, name, msg)

    if name != name.strip() or "." in name or not name.isprintable() or any(c.isspace() for c in name):
        fail("a step name may not contain dots, spaces or control characters")
    if len(name) > MAX_NAME_CHARS:
        fail(f"a step name may have at most {MAX_NAME_CHARS} characters (a Kubernetes resource name)")
    if name in (PIPELINE, pipeline):
        fail(f"a step may not be named {shown(name)} (that name refers to the pipeline's inputs)")
    for key in raw:
        if key not in STEP_FIELDS:
            close = _close_matches(str(key), STEP_FIELDS, cutoff=0.75)
            if close:
                fail(f"unknown field {shown(key)}; did you mean {shown(close[0])}?")
    inputs = [_parse_ref(r, pipeline, fail) for r in _str_list(raw.get("inputs"), "inputs", fail)]
    triggers = [_parse_ref(r, pipeline, fail) for r in _str_list(raw.get("triggers"), "triggers", fail)]
    join = raw.get("inputsJoinType", raw.get("joinType"))
    batch = raw.get("batch")
    if batch is not None and not isinstance(batch, dict):
        fail("batch must be a mapping (size, windowMs)")
    window = raw.get("joinWindowMs")
    if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 0):
        fail(f"joinWindowMs must be a non-negative integer, not {shown(window)}")
    return Step(
        name=name,
        model=name,
        inputs=inputs or [TensorRef(PIPELINE, "inputs")],
        tensor_map=_tensor_map(raw.get("tensorMap"), pipeline, fail),
        triggers=triggers,
        join_type=_join_type(join, "inputsJoinType", fail),
        triggers_join_type=_join_type(raw.get("triggersJoinType"), "triggersJoinType", fail),
        join_window_ms=window,
        batch=dict(batch) if batch else None,
        line=line,
    )


def _read_output(pipe: Pipeline, output: object) -> None:
    """Fill output refs; without ``spec.output.steps`` the outputs are the unconsumed steps."""
    if output is not None and not isinstance(output, dict):
        _fail(pipe.origin, pipe.line, pipe.name, None, "spec.output must be a mapping with 'steps'")
    output = output or {}
    line = _line(output) or pipe.line

    def fail(msg: str) -> NoReturn:
        _fail(pipe.origin, line, pipe.name, None, f"spec.output: {msg}")

    refs = [_parse_ref(r, pipe.name, fail) for r in _str_list(output.get("steps"), "steps", fail)]
    for ref in refs:
        if ref.step == PIPELINE:
            fail(f"output {shown(str(ref))} must name a step")
        if ref.step not in pipe.steps:
            fail(f"output refers to unknown step {shown(ref.step)}")
    if not refs:
        consumed = {d for s in pipe.steps for d in pipe.dependencies(s)}
        refs = [TensorRef(s, "outputs") for s in pipe.steps if s not in consumed]
    pipe.output_refs = refs
    pipe.output_tensor_map = _tensor_map(output.get("tensorMap"), pipe.name, fail)
    for key in pipe.output_tensor_map:
        ref = TensorRef.parse(key)
        if ref.step != PIPELINE and ref.step not in pipe.steps:
            fail(f"tensorMap key {shown(key)} refers to unknown step {shown(ref.step)}")
    pipe.output_join_type = _join_type(output.get("stepsJoin"), "stepsJoin", fail)


def _check_known(pipe: Pipeline, step: Step, ref: TensorRef) -> None:
    if ref.step != PIPELINE and ref.step not in pipe.steps:
        close = _close_matches(ref.step, list(pipe.steps))
        hint = f"; did you mean {shown(close[0])}?" if close else ""
        _fail(pipe.origin, step.line, pipe.name, step.name,
              f"{shown(str(ref))} refers to unknown step {shown(ref.step)}{hint}")


def _find_cycle(pipe: Pipeline) -> list[str] | None:
    """Return a cycle as [a, b, ..., a] (following 'reads from' edges), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dep in sorted(pipe.dependencies(name), key=list(pipe.steps).index):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                return cycle[::-1]  # data-flow direction: producer -> consumer
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return None

    for name in pipe.steps:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def _cycle_text(pipe: Pipeline) -> str:
    cycle = _find_cycle(pipe)
    return " -> ".join(cycle) if cycle else "(unknown)"


def _parse_ref(text: object, pipeline: str, fail: Any) -> TensorRef:
    try:
        return TensorRef.parse(text, pipeline)
    except ConfigError as exc:
        fail(str(exc))


def _str_list(value: object, what: str, fail: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        fail(f"{what} must be a list of references like 'step.outputs.TENSOR', not {_short(value)}")
    return list(value)


def _tensor_map(value: object, pipeline: str, fail: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(f"tensorMap must map 'step.outputs.TENSOR' to a tensor name, not {_short(value)}")
    mapping: dict[str, str] = {}
    for key, new_name in value.items():
        ref = _parse_ref(key, pipeline, fail)
        if ref.tensor is None:
            fail(f"tensorMap key {shown(key)} must name one tensor (STEP.outputs.TENSOR)")
        if not isinstance(new_name, str) or not new_name.strip():
            fail(f"tensorMap value for {shown(key)} must be a tensor name, not {_short(new_name)}")
        mapping[str(ref)] = new_name
    return mapping


def _join_type(value: object, what: str, fail: Any) -> str:
    if value is None:
        return "inner"
    if not isinstance(value, str) or value.lower() not in JOIN_TYPES:
        fail(f"{what} must be one of {', '.join(JOIN_TYPES)}, not {_short(value)}")
    return value.lower()


def _close_matches(word: str, candidates: list[str] | tuple[str, ...], cutoff: float = 0.6) -> list[str]:
    """A "did you mean" for short names only: difflib's ratio is quadratic in the lengths."""
    if len(word) > _MAX_HINT_CHARS:
        return []
    short = [c for c in candidates[:_MAX_STEPS] if len(c) <= _MAX_HINT_CHARS]
    return difflib.get_close_matches(word, short, n=1, cutoff=cutoff)


def _line(obj: object) -> int | None:
    return getattr(obj, "line", None) if isinstance(obj, LineDict) else None


def _short(value: object) -> str:
    return shown(value, 60)


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _fail(origin: str, line: int | None, pipeline: str | None, step: str | None, msg: str) -> NoReturn:
    where = f"{origin}:{line}" if line else origin
    what = []
    if pipeline is not None:
        what.append(f"pipeline {shown(pipeline)}")
    if step is not None:
        what.append(f"step {shown(step)}")
    prefix = f"{where}: {', '.join(what)}: " if what else f"{where}: "
    raise ConfigError(_one_line(prefix + msg))
