"""`seldon-load k8s render` and the manifests of deploy/kubernetes, checked offline.

Every rendered object is validated against the Kubernetes API's own JSON schemas (bundled by
kubernetes-validate, strict: an unknown or misspelt field fails), for the oldest and the newest
Kubernetes version the library ships. The end-to-end run of these manifests' commands is in
tests/e2e/test_k8s_manifests.py.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from seldon_load import k8s
from seldon_load.cli import main
from seldon_load.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
VERSIONS = sorted({p.name.split("-")[0].lstrip("v") for p in SCHEMA_DIR.iterdir() if p.name.endswith("-local")},
                  key=lambda v: tuple(map(int, v.split("."))))
K8S_VERSIONS = [VERSIONS[0], VERSIONS[-1]]

CUSTOM = dict(workers=7, image="registry.example/seldon-load:0.1", namespace="loadtest",
              options={"LOCUST_MODEL": "", "LOCUST_PIPELINE": "chain", "LOCUST_SLO_P99": "50"},
              avoid_pods=["seldon-server-name", "app.kubernetes.io/name=mlserver"], results_size="5Gi")


def validate_all(objects: list[dict], version: str) -> None:
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def by(objects: list[dict], kind: str, name: str) -> dict:
    [obj] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", list(k8s.VARIANTS))
@pytest.mark.parametrize("custom", [False, True], ids=["defaults", "options"])
def test_every_rendered_manifest_is_a_valid_kubernetes_object(variant: str, custom: bool, version: str) -> None:
    opts = k8s.RenderOptions(variant=variant, **(CUSTOM if custom else {}))
    text = k8s.render(opts, "seldon-load k8s render")
    objects = list(yaml.safe_load_all(text))
    assert objects and all(o for o in objects)
    validate_all(objects, version)


def test_schema_validation_catches_a_misspelt_field() -> None:
    """The check above could fail: strict schemas reject what the API server would drop."""
    objects = k8s.render_objects(k8s.RenderOptions(variant="headless-job"))
    job = by(objects, "Job", "seldon-load-master")
    job["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # not "resources"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_all(objects, K8S_VERSIONS[-1])


def test_the_package_renders_the_repository_manifests() -> None:
    assert k8s.MANIFESTS.resolve() == (ROOT / "deploy" / "kubernetes").resolve()


@pytest.mark.parametrize("variant", ["web-ui", "headless-job"])
def test_the_shape_of_a_distributed_test(variant: str) -> None:
    objects = k8s.render_objects(k8s.RenderOptions(variant=variant))
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    master_kind = "Deployment" if variant == "web-ui" else "Job"
    assert kinds == {("ConfigMap", "seldon-load-options"), ("Service", "seldon-load-master"),
                     ("Deployment", "seldon-load-worker"), ("PersistentVolumeClaim", "seldon-load-results"),
                     (master_kind, "seldon-load-master")}
    service = by(objects, "Service", "seldon-load-master")
    assert sorted(p["port"] for p in service["spec"]["ports"]) == [5557, 8089]
    master = by(objects, master_kind, "seldon-load-master")
    labels = master["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())  # the Service finds it
    mspec = master["spec"]["template"]["spec"]
    [mc] = mspec["containers"]
    assert mc["envFrom"] == [{"configMapRef": {"name": "seldon-load-options"}}]
    assert mc["volumeMounts"] == [{"name": "results", "mountPath": "/results"}]
    assert mspec["volumes"][0]["persistentVolumeClaim"]["claimName"] == "seldon-load-results"
    assert mspec["securityContext"]["fsGroup"] == 1000  # the image's user writes the volume
    options = by(objects, "ConfigMap", "seldon-load-options")["data"]
    assert options["LOCUST_RESULTS"].startswith("/results/")
    assert options["LOCUST_HEADLESS"] == ("true" if variant == "headless-job" else "false")
    worker = by(objects, "Deployment", "seldon-load-worker")
    [wc] = worker["spec"]["template"]["spec"]["containers"]
    assert wc["resources"]["requests"] == wc["resources"]["limits"]  # one whole CPU: no throttling
    assert wc["resources"]["limits"]["cpu"] == "1"
    assert wc["command"][-2:] == ["--master-host", "seldon-load-master"]
    anti = worker["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"] == worker["spec"]["selector"]["matchLabels"]
    if variant == "headless-job":
        assert master["spec"]["backoffLimit"] == 0 and mspec["restartPolicy"] == "Never"
        assert options["LOCUST_EXPECT_WORKERS"] == str(worker["spec"]["replicas"])


def test_options_reach_every_object() -> None:
    objects = k8s.render_objects(k8s.RenderOptions(variant="headless-job", **CUSTOM))
    assert {o["metadata"]["namespace"] for o in objects} == {"loadtest"}
    assert by(objects, "Deployment", "seldon-load-worker")["spec"]["replicas"] == 7
    data = by(objects, "ConfigMap", "seldon-load-options")["data"]
    assert data["LOCUST_EXPECT_WORKERS"] == "7"
    assert (data["LOCUST_MODEL"], data["LOCUST_PIPELINE"], data["LOCUST_SLO_P99"]) == ("", "chain", "50")
    assert data["LOCUST_HOST"] == "http://seldon-mesh.seldon-mesh:80"  # untouched defaults stay
    for o in objects:
        spec = k8s.pod_spec(o)
        if spec is None:
            continue
        assert {c["image"] for c in spec["containers"]} == {"registry.example/seldon-load:0.1"}
        terms = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        exprs = [t["podAffinityTerm"]["labelSelector"].get("matchExpressions") for t in terms]
        assert [{"key": "seldon-server-name", "operator": "Exists"}] in exprs
        assert [{"key": "app.kubernetes.io/name", "operator": "In", "values": ["mlserver"]}] in exprs
    pvc = by(objects, "PersistentVolumeClaim", "seldon-load-results")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"


def test_default_image_comes_from_the_kustomization() -> None:
    for variant in k8s.VARIANTS:
        objects = k8s.render_objects(k8s.RenderOptions(variant=variant))
        images = {c["image"] for o in objects if (s := k8s.pod_spec(o)) for c in s["containers"]}
        assert images == {"seldon-load:latest"}, variant


def test_cli_prints_yaml_for_kubectl(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["k8s", "render", "--variant", "headless-job", "--workers", "3", "--namespace", "lt",
            "--model", "synth-5ms", "--stages", "20:1s:5s", "--set", "slo-p99=40", "--set", "LOCUST_AUTO=false"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("# seldon-load k8s render --variant headless-job")
    objects = list(yaml.safe_load_all(out))
    data = by(objects, "ConfigMap", "seldon-load-options")["data"]
    assert data["LOCUST_MODEL"] == "synth-5ms" and data["LOCUST_STAGES"] == "20:1s:5s"
    assert data["LOCUST_SLO_P99"] == "40" and data["LOCUST_AUTO"] == "false"
    validate_all(objects, K8S_VERSIONS[-1])


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers 0"),
    (["--namespace", "Load_Test"], "--namespace"),
    (["--image", "a b"], "--image"),
    (["--set", "no-such-option=1"], "no such option"),
    (["--set", "slo-p99"], "OPTION=VALUE"),
    (["--results-size", "lots"], "--results-size"),
    (["--avoid-pods-with", "bad key=x"], "--avoid-pods-with"),
    (["--stages", "fast"], "stage"),
    (["--host", "ftp://x"], "ftp"),
    (["--model", "iris", "--pipeline", "chain"], "exactly one"),
])
def test_bad_options_end_with_one_line_and_code_2(argv: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "render", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("seldon-load: error:") and message in line


def test_option_names_in_every_spelling() -> None:
    assert k8s.option_variable("stages") == "LOCUST_STAGES"
    assert k8s.option_variable("--slo-p99") == "LOCUST_SLO_P99"
    assert k8s.option_variable("LOCUST_EXPECT_WORKERS") == "LOCUST_EXPECT_WORKERS"
    with pytest.raises(ConfigError):
        k8s.option_variable("stagse")


def test_merge_patch_is_kustomizes_strategic_merge_for_named_lists() -> None:
    base = {"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]},
                                    {"name": "b", "image": "y"}], "ports": [1, 2], "gone": 1}}
    patch = {"spec": {"containers": [{"name": "a", "env": [{"name": "B", "value": "2"}]}], "ports": [3],
                      "gone": None}}
    assert k8s.merge_patch(base, patch) == {"spec": {
        "containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                       {"name": "b", "image": "y"}], "ports": [3]}}
    assert base["spec"]["gone"] == 1  # the input is not changed


def test_build_refuses_kustomize_fields_it_does_not_render(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(ValueError, match="commonLabels"):
        k8s.build(tmp_path)


def test_every_kustomization_uses_only_rendered_fields() -> None:
    dirs = [p.parent for p in (ROOT / "deploy" / "kubernetes").rglob("kustomization.yaml")]
    assert len(dirs) == 4  # base, two overlays, the results reader
    for d in dirs:
        assert k8s.build(d)


def test_every_render_option_is_documented() -> None:
    import argparse
    import re

    doc = (ROOT / "docs" / "reference" / "options.md").read_text()
    section = doc[doc.index("## `seldon-load k8s render`"):]
    sub = argparse.ArgumentParser().add_subparsers()
    k8s.add_parser(sub)
    render = sub.choices["k8s"]._subparsers._group_actions[0].choices["render"]
    flags = [f for a in render._actions for f in a.option_strings if f.startswith("--") and f != "--help"]
    assert len(flags) == 11
    for flag in flags:
        assert re.search(rf"`{re.escape(flag)}[` ]", section), f"k8s render {flag} is not documented"
