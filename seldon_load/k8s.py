"""`seldon-load k8s render`: the Kubernetes manifests of deploy/kubernetes for given options.

The manifests are the kustomize base and overlays of ``deploy/kubernetes`` (shipped inside
the package as ``k8s_manifests``), so ``kubectl apply -k`` and this command deploy the same
objects. ``build`` implements the small part of kustomize those files use -- ``resources``
(files and directories), ``patches`` (strategic-merge patch files), ``images``, ``replicas``,
``namespace`` -- and rejects any other field, so a manifest cannot start depending on a
kustomize feature this renderer would silently ignore. ``render`` then applies the user's
options (workers, image, namespace, LOCUST_* options, anti-affinity) and prints YAML; no
kubectl or cluster is needed.
"""

from __future__ import annotations

import argparse
import copy
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seldon_load.errors import ConfigError

MANIFESTS = Path(__file__).resolve().parent / "k8s_manifests"
VARIANTS = {
    "web-ui": "overlays/web-ui",
    "headless-job": "overlays/headless-job",
    "results-reader": "results-reader",
}
OPTIONS_CONFIGMAP = "seldon-load-options"
WORKER_DEPLOYMENT = "seldon-load-worker"
RESULTS_PVC = "seldon-load-results"
_KUSTOMIZE_FIELDS = frozenset(("apiVersion", "kind", "resources", "patches", "images", "replicas", "namespace"))
_KIND_ORDER = ("ConfigMap", "PersistentVolumeClaim", "Service", "Deployment", "Job", "Pod")
# Locust's own options that make sense in the ConfigMap (seldon-load's come from settings.py)
_LOCUST_OPTIONS = frozenset(("HOST", "HEADLESS", "EXPECT_WORKERS", "EXPECT_WORKERS_MAX_WAIT", "RUN_TIME",
                             "LOGLEVEL", "WEB_LOGIN", "WEB_BASE_PATH", "CSV", "HTML", "STOP_TIMEOUT"))
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[1-9][0-9]*(Mi|Gi|Ti)$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


# ---- the kustomize subset ---------------------------------------------------------------
def build(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kustomize build DIRECTORY`` gives for the fields these manifests use."""
    k = _load_one(directory / "kustomization.yaml")
    unknown = set(k) - _KUSTOMIZE_FIELDS
    if unknown:
        raise ValueError(f"{directory}/kustomization.yaml: fields not rendered here: {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        objects.extend(build(path) if path.is_dir() else _load_all(path))
    for patch in k.get("patches", []):
        if set(patch) != {"path"}:
            raise ValueError(f"{directory}: only patches with a path are rendered here, got {patch}")
        for doc in _load_all(directory / patch["path"]):
            target = _find(objects, doc["kind"], doc["metadata"]["name"])
            merged = merge_patch(target, doc)
            target.clear()
            target.update(merged)
    for image in k.get("images", []):
        new = image.get("newName", image["name"]) + (f":{image['newTag']}" if "newTag" in image else "")
        for c in _containers(objects):
            if _image_name(c["image"]) == image["name"]:
                c["image"] = new
    for rep in k.get("replicas", []):
        _find(objects, "Deployment", rep["name"])["spec"]["replicas"] = int(rep["count"])
    if "namespace" in k:
        for obj in objects:
            obj["metadata"]["namespace"] = k["namespace"]
    return objects


def merge_patch(base: Any, patch: Any) -> Any:
    """Strategic merge as kustomize does it for these manifests: maps merge key by key (null
    deletes), lists of named items (containers, env, ports, volumes) merge by ``name``, other
    lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge_patch(base.get(key), value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        out_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            at = next((i for i, old in enumerate(out_list) if old["name"] == item["name"]), None)
            if at is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[at] = merge_patch(out_list[at], item)
        return out_list
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _load_one(path: Path) -> dict[str, Any]:
    docs = _load_all(path)
    if len(docs) != 1:
        raise ValueError(f"{path}: expected one YAML document, found {len(docs)}")
    return docs[0]


def _load_all(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise ValueError(f"no {kind} {name!r} among the resources")


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a Pod, Deployment or Job (None for other kinds)."""
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] in ("Deployment", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def _containers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for obj in objects:
        spec = pod_spec(obj)
        if spec is not None:
            out.extend(spec.get("initContainers", []) + spec["containers"])
    return out


def _image_name(image: str) -> str:
    name = image.split("@", 1)[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


# ---- the user's options -----------------------------------------------------------------
@dataclass
class RenderOptions:
    variant: str = "web-ui"
    workers: int | None = None
    image: str | None = None
    namespace: str | None = None
    options: dict[str, str] = field(default_factory=dict)  # LOCUST_* -> value
    avoid_pods: list[str] = field(default_factory=list)  # label selectors: "key=value" or "key"
    results_size: str | None = None


def render_objects(opts: RenderOptions) -> list[dict[str, Any]]:
    """The variant's objects with the options applied (ConfigError on a bad option)."""
    _check(opts)
    objects = build(MANIFESTS / VARIANTS[opts.variant])
    config = _maybe(objects, "ConfigMap", OPTIONS_CONFIGMAP)
    workers = _maybe(objects, "Deployment", WORKER_DEPLOYMENT)
    if config is not None:
        data = config.setdefault("data", {})
        data.update(opts.options)
        if opts.workers is not None:
            data["LOCUST_EXPECT_WORKERS"] = str(opts.workers)
    if workers is not None and opts.workers is not None:
        workers["spec"]["replicas"] = opts.workers
    if opts.image:
        for c in _containers(objects):
            c["image"] = opts.image
    if opts.results_size:
        pvc = _maybe(objects, "PersistentVolumeClaim", RESULTS_PVC)
        if pvc is not None:
            pvc["spec"]["resources"]["requests"]["storage"] = opts.results_size
    for obj in objects:
        if opts.namespace:
            obj["metadata"]["namespace"] = opts.namespace
        spec = pod_spec(obj)
        if spec is not None and opts.avoid_pods and obj["kind"] != "Pod":
            terms = spec.setdefault("affinity", {}).setdefault("podAntiAffinity", {}).setdefault(
                "preferredDuringSchedulingIgnoredDuringExecution", [])
            terms.extend(_avoid_term(sel) for sel in opts.avoid_pods)
    order = {kind: i for i, kind in enumerate(_KIND_ORDER)}
    return sorted(objects, key=lambda o: (order.get(o["kind"], len(order)), o["metadata"]["name"]))


def render(opts: RenderOptions, command: str = "") -> str:
    """Multi-document YAML for ``kubectl apply -f -``."""
    head = f"# {command}\n" if command else ""
    return head + yaml.safe_dump_all(render_objects(opts), sort_keys=False, explicit_start=True, width=120)


def _maybe(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    return next((o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name), None)


def _avoid_term(selector: str) -> dict[str, Any]:
    """Keep load generators off nodes running pods with this label, in any namespace."""
    key, _, value = selector.partition("=")
    expr = {"key": key, "operator": "In", "values": [value]} if "=" in selector else {"key": key, "operator": "Exists"}
    return {"weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "namespaceSelector": {},
                                              "labelSelector": {"matchExpressions": [expr]}}}


def _check(opts: RenderOptions) -> None:
    if opts.variant not in VARIANTS:
        raise ConfigError(f"--variant {opts.variant!r}: one of {', '.join(VARIANTS)}")
    if opts.workers is not None and not 1 <= opts.workers <= 10000:
        raise ConfigError(f"--workers {opts.workers}: give 1 to 10000")
    if opts.image is not None and (not opts.image or re.search(r"\s", opts.image)):
        raise ConfigError(f"--image {opts.image!r}: an image reference without spaces, e.g. registry/seldon-load:0.1")
    if opts.namespace is not None and not _DNS_LABEL.match(opts.namespace):
        raise ConfigError(f"--namespace {opts.namespace!r}: lower-case letters, digits and '-', at most 63")
    if opts.results_size is not None and not _QUANTITY.match(opts.results_size):
        raise ConfigError(f"--results-size {opts.results_size!r}: a size such as 500Mi, 1Gi or 2Ti")
    for sel in opts.avoid_pods:
        key, eq, value = sel.partition("=")
        if not _LABEL_KEY.match(key) or (eq and not (value and _LABEL_VALUE.match(value))):
            raise ConfigError(f"--avoid-pods-with {sel!r}: a pod label as KEY=VALUE or KEY")


def option_variable(name: str) -> str:
    """``stages``, ``--slo-p99`` or ``LOCUST_SLO_P99`` -> its LOCUST_* variable (ConfigError if unknown)."""
    bare = name.strip()
    if bare.upper().startswith("LOCUST_"):
        bare = bare[len("LOCUST_"):]
    var = bare.lstrip("-").replace("-", "_").upper()
    if var not in _LOCUST_OPTIONS and var not in _seldon_load_variables():
        raise ConfigError(f"--set {name!r}: no such option (see docs/reference/options.md)")
    return "LOCUST_" + var


def _seldon_load_variables() -> set[str]:
    from seldon_load.options import add_arguments

    class _Names:
        def __init__(self) -> None:
            self.names: set[str] = set()

        def add_argument(self, flag: str, **kw: Any) -> None:
            self.names.add(kw["env_var"][len("LOCUST_"):])

    collected = _Names()
    add_arguments(collected)
    return collected.names


# ---- the command ------------------------------------------------------------------------
def add_parser(sub: Any) -> None:
    """Register ``seldon-load k8s render`` on the CLI's sub-command parser."""
    k8s = sub.add_parser("k8s", help="Kubernetes manifests (master, workers, results volume)")
    k8s_sub = k8s.add_subparsers(dest="k8s_command", required=True)
    r = k8s_sub.add_parser(
        "render", help="print the manifests for the given options (kubectl apply -f -)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  seldon-load k8s render --variant headless-job --workers 8 --image registry/seldon-load:0.1 \\\n"
               "      --namespace loadtest --model iris --stages 100:10s:60s,200:10s:60s | kubectl apply -f -\n"
               "  seldon-load k8s render --variant results-reader --namespace loadtest | kubectl apply -f -")
    r.add_argument("--variant", choices=list(VARIANTS), default="web-ui",
                   help="web-ui: master Deployment with the web UI; headless-job: a master Job that runs the "
                        "test and ends; results-reader: a pod to copy the results from (default web-ui)")
    r.add_argument("--workers", type=int, help="worker replicas (and LOCUST_EXPECT_WORKERS)")
    r.add_argument("--image", help="image built from the Dockerfile (default seldon-load:latest)")
    r.add_argument("--namespace", help="namespace of every object (default: kubectl's current one)")
    r.add_argument("--host", help="LOCUST_HOST (default http://seldon-mesh.seldon-mesh:80)")
    r.add_argument("--model", help="LOCUST_MODEL")
    r.add_argument("--pipeline", help="LOCUST_PIPELINE (and LOCUST_MODEL empty)")
    r.add_argument("--stages", help="LOCUST_STAGES")
    r.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help="any other option, e.g. --set slo-p99=50 --set auto=true (repeatable)")
    r.add_argument("--avoid-pods-with", action="append", default=[], metavar="LABEL[=VALUE]",
                   help="prefer nodes without pods carrying this label (your inference servers), repeatable")
    r.add_argument("--results-size", help="size of the results volume (default 1Gi)")


def options_from_args(a: argparse.Namespace) -> RenderOptions:
    options: dict[str, str] = {}
    for item in a.set:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise ConfigError(f"--set {item!r}: give OPTION=VALUE")
        options[option_variable(name)] = value
    _check_test_options(a)
    if a.host is not None:
        options["LOCUST_HOST"] = a.host
    if a.pipeline is not None:
        options["LOCUST_PIPELINE"] = a.pipeline
        options["LOCUST_MODEL"] = ""
    if a.model is not None:
        options["LOCUST_MODEL"] = a.model
    if a.stages is not None:
        options["LOCUST_STAGES"] = a.stages
    return RenderOptions(variant=a.variant, workers=a.workers, image=a.image, namespace=a.namespace,
                         options=options, avoid_pods=list(a.avoid_pods_with), results_size=a.results_size)


def _check_test_options(a: argparse.Namespace) -> None:
    """What would make the master exit 2 in the cluster fails here instead, with the same line."""
    from seldon_load.load.plan import parse_stages
    from seldon_load.oip.target import parse_target

    if a.model is not None and a.pipeline is not None:
        raise ConfigError("give exactly one of --model NAME or --pipeline NAME")
    if a.host is not None or a.model is not None or a.pipeline is not None:
        model = None if a.pipeline is not None else (a.model if a.model is not None else "iris")
        parse_target(a.host if a.host is not None else "http://seldon-mesh.seldon-mesh:80", model, a.pipeline)
    if a.stages is not None:
        parse_stages(a.stages)


def cmd_k8s(a: argparse.Namespace, argv: list[str] | None = None) -> int:
    opts = options_from_args(a)
    command = "seldon-load " + shlex.join(argv) if argv else ""
    print(render(opts, command), end="")
    return 0
