"""Seldon Pipeline specs: the shapes Core 2 accepts, and one clear line for each mistake."""

from __future__ import annotations

import pathlib
import re
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seldon_load.errors import ConfigError
from seldon_load.pipelines import PIPELINE, Pipeline, TensorRef, read_pipelines

PIPELINES_DIR = pathlib.Path(__file__).parents[2] / "seldon_load" / "testbed" / "pipelines"

CHAIN = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: tfsimples
  namespace: seldon-mesh
spec:
  steps:
    - name: tfsimple1
    - name: tfsimple2
      inputs:
      - tfsimple1
      tensorMap:
        tfsimple1.outputs.OUTPUT0: INPUT0
        tfsimple1.outputs.OUTPUT1: INPUT1
  output:
    steps:
    - tfsimple2
"""

MODEL = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata:
  name: tfsimple1
spec:
  storageUri: "gs://seldon-models/triton/simple"
"""


def spec(steps: str, output: str | None = "", name: str = "p") -> str:
    """A Pipeline document with the given (indented-as-written) steps block."""
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), "    ")
    text = f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n  steps:\n{body}\n"
    if output:
        text += f"  output:\n    steps: [{output}]\n"
    return text


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        read_pipelines(text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_single_document_chain():
    (pipe,) = read_pipelines(CHAIN)
    assert pipe.name == "tfsimples" and pipe.namespace == "seldon-mesh"
    assert list(pipe.steps) == ["tfsimple1", "tfsimple2"]
    first, second = pipe.steps.values()
    assert first.model == "tfsimple1"
    assert first.inputs == [TensorRef(PIPELINE, "inputs")]  # implicit: the pipeline's inputs
    assert second.inputs == [TensorRef("tfsimple1", "outputs")]  # bare step name = its outputs
    assert second.tensor_map == {"tfsimple1.outputs.OUTPUT0": "INPUT0", "tfsimple1.outputs.OUTPUT1": "INPUT1"}
    assert pipe.output_refs == [TensorRef("tfsimple2", "outputs")]
    assert pipe.dependencies("tfsimple2") == {"tfsimple1"}
    assert pipe.dependencies("tfsimple1") == set()
    assert pipe.topological_order() == ["tfsimple1", "tfsimple2"]
    assert pipe.dependencies("tfsimple1") == set() and pipe.sinks() == ["tfsimple2"]
    assert first.join_type == "inner" and first.line == 8


def test_multi_document_skips_models_and_reads_every_pipeline():
    other = CHAIN.replace("name: tfsimples", "name: second")
    pipes = read_pipelines(MODEL + "---\n" + CHAIN + "---\n" + other)
    assert [p.name for p in pipes] == ["tfsimples", "second"]


def test_kubectl_list():
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [yaml.safe_load(MODEL), yaml.safe_load(CHAIN)],
        "metadata": {"resourceVersion": ""},
    }
    (pipe,) = read_pipelines(yaml.safe_dump(listing))
    assert pipe.name == "tfsimples" and len(pipe.steps) == 2


def test_path_and_str_path_read_the_file(tmp_path):
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN)
    assert read_pipelines(path)[0].name == "tfsimples"
    assert read_pipelines(str(path))[0].name == "tfsimples"
    message = error(str(tmp_path / "missing.yaml"))
    assert "missing.yaml" in message


def test_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(spec("- name: a\n- name: b\n  inputs: [nope.outputs]\n"))
    with pytest.raises(ConfigError, match=r"bad\.yaml:8: pipeline 'p', step 'b': 'nope.outputs' refers to unknown step 'nope'"):
        read_pipelines(path)


def test_pipeline_inputs_every_spelling():
    (pipe,) = read_pipelines(spec("""
        - name: a
          inputs: [pipeline.inputs.x, p.inputs.y, p, pipeline]
        - name: b
          inputs: [a.inputs.z, a.outputs.OUT]
        """))
    assert pipe.steps["a"].inputs == [
        TensorRef(PIPELINE, "inputs", "x"),
        TensorRef(PIPELINE, "inputs", "y"),
        TensorRef(PIPELINE, "inputs"),
        TensorRef(PIPELINE, "inputs"),
    ]
    assert pipe.steps["b"].inputs == [TensorRef("a", "inputs", "z"), TensorRef("a", "outputs", "OUT")]
    assert pipe.dependencies("a") == set()  # its own inputs are no dependency
    assert str(pipe.steps["b"].inputs[0]) == "a.inputs.z"


def test_tensor_map_keys_are_canonical():
    (pipe,) = read_pipelines(spec("""
        - name: a
          tensorMap: {p.inputs.x: INPUT0}
        """))
    assert pipe.steps["a"].tensor_map == {"pipeline.inputs.x": "INPUT0"}


def test_triggers_and_join_types():
    (pipe,) = read_pipelines(spec("""
        - name: check
        - name: a
          inputs: [pipeline.inputs]
          triggers: [check.outputs.ok]
          triggersJoinType: any
        - name: b
          inputs: [a, check]
          inputsJoinType: outer
        - name: c
          inputs: [a, b]
          joinType: ANY
          joinWindowMs: 20
          batch: {size: 4}
        """, output="c"))
    steps = pipe.steps
    assert steps["a"].triggers == [TensorRef("check", "outputs", "ok")]
    assert steps["a"].triggers_join_type == "any" and steps["a"].join_type == "inner"
    assert steps["b"].join_type == "outer"
    assert steps["c"].join_type == "any" and steps["c"].join_window_ms == 20 and steps["c"].batch == {"size": 4}
    assert pipe.dependencies("a") == {"check"}  # a trigger is a dependency
    assert pipe.topological_order() == ["check", "a", "b", "c"]
    assert "check" in pipe.dependencies("b")


def test_output_defaults_to_unconsumed_steps():
    (pipe,) = read_pipelines(spec("- name: a\n- name: b\n  inputs: [a]\n- name: drift\n  inputs: [a]\n", output=None))
    assert pipe.sinks() == ["b", "drift"]


def test_output_tensor_map_and_refs():
    text = spec("- name: a\n- name: b\n  inputs: [a]\n") + (
        "  output:\n    steps: [a.outputs.X, b.outputs]\n    stepsJoin: outer\n"
        "    tensorMap: {a.outputs.X: first}\n"
    )
    (pipe,) = read_pipelines(text)
    assert pipe.output_refs == [TensorRef("a", "outputs", "X"), TensorRef("b", "outputs")]
    assert pipe.output_tensor_map == {"a.outputs.X": "first"} and pipe.output_join_type == "outer"
    assert pipe.sinks() == ["a", "b"]


def test_topological_order_is_stable_in_spec_order():
    (pipe,) = read_pipelines(spec("- name: z\n  inputs: [y]\n- name: y\n- name: x\n"))
    assert pipe.topological_order() == ["y", "x", "z"]


def test_shipped_testbed_pipelines():
    (linear,) = read_pipelines(PIPELINES_DIR / "linear.yaml")
    assert linear.name == "linear"
    assert linear.topological_order() == ["synth-2ms", "synth-5ms", "synth-3ms"]
    assert linear.sinks() == ["synth-3ms"]
    (branching,) = read_pipelines(PIPELINES_DIR / "branching.yaml")
    assert branching.name == "branching"
    assert branching.dependencies("synth-1ms") == set() and branching.sinks() == ["join-1ms"]
    assert branching.dependencies("join-1ms") == {"synth-2ms", "synth-8ms"}
    assert branching.steps["join-1ms"].tensor_map == {
        "synth-2ms.outputs.OUTPUT0": "INPUT0",
        "synth-8ms.outputs.OUTPUT0": "INPUT1",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (spec("- name: a\n  inputs: [c]\n- name: b\n  inputs: [a]\n- name: c\n  inputs: [b]\n"),
         r"<pipeline spec>:7: pipeline 'p', step 'a': cycle a -> b -> c -> a$"),
        (spec("- name: a\n  inputs: [a.outputs]\n"), r"step 'a': cycle a -> a$"),
        (spec("- name: a\n- name: b\n  triggers: [ghost]\n"), r"step 'b': 'ghost.outputs' refers to unknown step 'ghost'"),
        (spec("- name: step-a\n- name: b\n  inputs: [step-b]\n"), r"step 'b': .*did you mean 'step-a'\?"),
        (spec("- name: a\n- name: b\n  inputs: [a.output.X]\n"), r":8: pipeline 'p', step 'b': malformed reference 'a.output.X'"),
        (spec("- name: a\n  inputs: [a.outputs.X.Y]\n"), r"step 'a': malformed reference"),
        (spec("- name: a\n  inputs: ['a..x']\n"), r"step 'a': malformed reference"),
        (spec("- name: a\n  inputs: [pipeline.outputs]\n"), r"step 'a': .*pipeline's own outputs"),
        (spec("- name: a\n  inputs: [3]\n"), r"step 'a': inputs must be a list of references"),
        (spec("- name: a\n- name: a\n"), r":8: pipeline 'p', step 'a': duplicate step name"),
        (spec("- name: a\n- inputs: [a]\n"), r":8: pipeline 'p': spec.steps\[1\] has no name"),
        (spec("- name: a\n- 42\n"), r"pipeline 'p': spec.steps\[1\] must be a mapping"),
        (spec("- name: p\n"), r"step 'p': a step may not be named 'p'"),
        (spec("- name: pipeline\n"), r"step 'pipeline': a step may not be named"),
        (spec("- name: a.b\n"), r"step 'a.b': a step name may not contain dots"),
        (spec("- name: a\n  input: [pipeline]\n"), r"step 'a': unknown field 'input'; did you mean 'inputs'\?"),
        (spec("- name: a\n  inputsJoinType: left\n"), r"step 'a': inputsJoinType must be one of inner, outer, any"),
        (spec("- name: a\n  tensorMap: [x]\n"), r"step 'a': tensorMap must map"),
        (spec("- name: a\n  tensorMap: {a.outputs: X}\n"), r"step 'a': tensorMap key 'a.outputs' must name one tensor"),
        (spec("- name: a\n  tensorMap: {a.outputs.X: ''}\n"), r"step 'a': tensorMap value"),
        (spec("- name: a\n  tensorMap: {b.outputs.X: Y}\n"), r"step 'a': 'b.outputs.X' refers to unknown step 'b'"),
        (spec("- name: a\n  joinWindowMs: -1\n"), r"step 'a': joinWindowMs must be"),
        (spec("- name: a\n", output="b"), r"pipeline 'p': spec.output: output refers to unknown step 'b'"),
        (spec("- name: a\n", output="pipeline.inputs"), r"spec.output: output 'pipeline.inputs' must name a step"),
        ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: p\nspec:\n  steps: []\n",
         r":6: pipeline 'p': spec.steps must be a non-empty list"),
        ("kind: Pipeline\nmetadata: {}\nspec:\n  steps: [{name: a}]\n", r"Pipeline has no metadata.name"),
        ("kind: Pipeline\nmetadata: {name: p}\n", r"pipeline 'p': Pipeline has no spec"),
        (CHAIN + "---\n" + CHAIN, r"pipeline 'tfsimples': pipeline defined twice"),
        (MODEL, r"no Seldon Pipeline resource \(kind: Pipeline\) \(found: Model \(mlops.seldon.io/v1alpha1\)\)"),
        ("apiVersion: tekton.dev/v1\nkind: Pipeline\nmetadata: {name: p}\n", r"no Seldon Pipeline resource"),
        ("", r"no Seldon Pipeline resource"),
        ("just some words", r"no Seldon Pipeline resource \(kind: Pipeline\) \(found: str\)"),
        ("kind: Pipeline\nspec: [unclosed\n", r"<pipeline spec>:3: invalid YAML: "),
        ("a: b\n\tc: d\n", r"invalid YAML"),
    ],
)
def test_errors_are_one_line_naming_pipeline_and_step(text, expected):
    message = error(text)
    assert re.search(expected, message), message


def test_cycle_detected_by_topological_order_on_hand_built_pipeline():
    (pipe,) = read_pipelines(spec("- name: a\n- name: b\n  inputs: [a]\n"))
    pipe.steps["a"].inputs = [TensorRef("b", "outputs")]
    with pytest.raises(ConfigError, match=r"cycle (a -> b -> a|b -> a -> b)"):
        pipe.topological_order()


def test_tensor_ref_parse():
    assert TensorRef.parse("m") == TensorRef("m", "outputs")
    assert TensorRef.parse("m.inputs") == TensorRef("m", "inputs")
    assert TensorRef.parse("pipeline") == TensorRef(PIPELINE, "inputs")
    assert TensorRef.parse("mypipe.inputs.t", pipeline_name="mypipe") == TensorRef(PIPELINE, "inputs", "t")
    for bad in ("", " ", "a b", "a.x", ".a", "a.outputs.", None, 5):
        with pytest.raises(ConfigError):
            TensorRef.parse(bad)


# --- robustness: nothing but ConfigError, whatever the input ---------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12))
_keys = st.sampled_from(
    ["apiVersion", "kind", "metadata", "name", "spec", "steps", "inputs", "triggers", "tensorMap",
     "output", "items", "joinType", "inputsJoinType", "batch", "input", "a", "a.outputs.X"]
)
_values = st.recursive(
    st.one_of(_scalars, st.sampled_from(["Pipeline", "List", "mlops.seldon.io/v1alpha1", "a", "a.outputs", "p"])),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values)
def test_random_structures_raise_only_config_error(doc):
    text = yaml.safe_dump(doc)
    try:
        pipes = read_pipelines(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(isinstance(p, Pipeline) and p.steps for p in pipes)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_raises_only_config_error(text):
    try:
        read_pipelines(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(CHAIN) - 1), st.integers(min_value=0, max_value=40),
       st.text(max_size=8))
def test_garbled_valid_spec_raises_only_config_error(start, length, insert):
    garbled = CHAIN[:start] + insert + CHAIN[start + length:]
    try:
        read_pipelines(garbled)
    except ConfigError as exc:
        assert "\n" not in str(exc)


_refs = st.sampled_from(["a", "b", "c", "a.outputs", "b.outputs.X", "c.inputs", "pipeline", "p.inputs.x", "d", "a.x"])
_step_values = st.one_of(_refs, st.lists(_refs, max_size=3), st.dictionaries(_refs, st.one_of(_refs, _scalars), max_size=2),
                         st.sampled_from(["inner", "outer", "any", "left"]), _scalars)
_steps = st.lists(
    st.dictionaries(st.sampled_from(["name", "inputs", "triggers", "tensorMap", "inputsJoinType", "joinType",
                                     "triggersJoinType", "joinWindowMs", "batch", "input", "inputz"]),
                    _step_values, max_size=5)
    | st.fixed_dictionaries({"name": st.sampled_from(["a", "b", "c"]), "inputs": st.lists(_refs, max_size=3)}),
    max_size=5,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({
    "apiVersion": st.just("mlops.seldon.io/v1alpha1"),
    "kind": st.just("Pipeline"),
    "metadata": st.fixed_dictionaries({"name": st.one_of(st.just("p"), _scalars)}),
    "spec": st.fixed_dictionaries({"steps": _steps}, optional={"output": st.one_of(
        st.fixed_dictionaries({"steps": st.lists(_refs, max_size=2)}, optional={"tensorMap": _step_values}),
        _scalars)}),
}))
def test_random_near_valid_pipelines_raise_only_config_error(doc):
    try:
        (pipe,) = read_pipelines(yaml.safe_dump(doc))
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        order = pipe.topological_order()
        assert sorted(order) == sorted(pipe.steps)
        for name in order:
            assert all(order.index(d) < order.index(name) for d in pipe.dependencies(name))
