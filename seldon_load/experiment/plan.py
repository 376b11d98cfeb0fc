"""An experiment plan: base run options and the variants a sweep runs one after another.

A plan comes from ``--vary OPTION=V1,V2`` (repeatable; the matrix is the product) and/or an
``--experiment`` YAML file (base options, a matrix, explicit variants, overrides that apply to
the matrix variants matching some values). Pure: it turns options into one `seldon-load run`
argument list per variant and a readable, unique, file-system-safe name for each; whether the
argument lists are valid runs is checked by the sweep (with run's own parser) before any load.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from seldon_load.errors import ConfigError
from seldon_load.limits import MAX_SPEC_BYTES, read_capped
from seldon_load.safe_yaml import load_all

MAX_PLAN_BYTES = MAX_SPEC_BYTES
MAX_VARIANTS = 256
# a sweep owns these: every variant writes into RESULTS/<variant>/ and runs headless
RESERVED = frozenset({"results", "web-ui", "web-host", "web-port", "web-login", "isolate-steps"})
TRUE_WORDS = frozenset({"true", "on", "yes", "1"})
FALSE_WORDS = frozenset({"false", "off", "no", "0"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


@dataclass
class Variant:
    """One run of a sweep: its name, the values that make it a variant, its run arguments."""

    name: str
    values: dict[str, str]
    args: list[str] = field(default_factory=list)


@dataclass
class Plan:
    base: list[str]
    variants: list[Variant]
    results: str | None = None
    baseline: str | None = None


def option_name(text: str) -> str:
    """``--batch-size``, ``batch-size`` or ``batch_size`` -> ``batch-size``."""
    return str(text).strip().lstrip("-").replace("_", "-").lower()


def parse_vary(text: str) -> tuple[str, list[str]]:
    """``OPTION=V1,V2,...`` (``|`` separates instead when a value holds commas, e.g. stages)."""
    if "=" not in text:
        raise ConfigError(f"--vary {text!r}: expected OPTION=V1,V2,... (e.g. --vary batch-size=1,8)")
    opt, _, raw = text.partition("=")
    sep = "|" if "|" in raw else ","
    values = [v.strip() for v in raw.split(sep)]
    if not option_name(opt) or not values or any(v == "" for v in values):
        raise ConfigError(f"--vary {text!r}: expected OPTION=V1,V2,... with no empty value")
    if len(set(values)) != len(values):
        raise ConfigError(f"--vary {text!r}: a value is repeated")
    return option_name(opt), values


def _scalar(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return str(v)
    raise ConfigError(f"{where}: expected a number, a word or a list of them, got {type(v).__name__}")


def _options(obj: Any, where: str) -> dict[str, list[str]]:
    """A YAML mapping of run options -> {name: [values]} (a list for repeatable options)."""
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{where}: expected a mapping of run options")
    out = {}
    for k, v in obj.items():
        vals = v if isinstance(v, list) else [v]
        out[option_name(str(k))] = [_scalar(x, f"{where}.{k}") for x in vals]
    return out


def _refuse_aliases(text: str, path: str) -> None:
    """Anchors and aliases are how a small YAML file expands into a huge one: refused."""
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
            raise ConfigError(f"{path}: YAML anchors and aliases (&, *) are not accepted in an experiment file")


def read_experiment(path: str) -> dict[str, Any]:
    """The experiment file, read with a size cap and the bounded safe loader; ConfigError naming it."""
    data = read_capped(path, MAX_PLAN_BYTES, "experiment file")
    try:
        text = data.decode("utf-8")
        _refuse_aliases(text, path)
        docs = load_all(text)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"experiment file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if len(docs) != 1:
        raise ConfigError(f"experiment file {path}: expected one YAML document, found {len(docs)}")
    doc = docs[0]
    if not isinstance(doc, Mapping):
        raise ConfigError(f"experiment file {path}: expected a mapping with base, vary, variants, overrides")
    unknown = set(doc) - {"base", "vary", "variants", "overrides", "results", "baseline"}
    if unknown:
        raise ConfigError(f"experiment file {path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    return dict(doc)


def _to_args(options: Mapping[str, list[str]], flags: frozenset[str]) -> list[str]:
    args: list[str] = []
    for name, values in options.items():
        for v in values:
            if name in flags:
                if v.lower() in TRUE_WORDS:
                    args.append(f"--{name}")
                elif v.lower() not in FALSE_WORDS:
                    raise ConfigError(f"--{name} is an on/off option: use true or false (got {v!r})")
            else:
                args += [f"--{name}", v]
    return args


def _drop_flags(args: list[str], options: Mapping[str, list[str]], flags: frozenset[str]) -> list[str]:
    """A variant that turns a flag off removes it from the base arguments."""
    off = {f"--{n}" for n, vals in options.items() if n in flags and vals and vals[-1].lower() in FALSE_WORDS}
    return [a for a in args if a not in off]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-._")[:40] or "x"


def token(option: str, value: str) -> str:
    """A short name part for one varied value: ``grpc``, ``batch8``, ``users16``, ``http-8080``."""
    if option in ("protocol", "model", "pipeline"):
        return _slug(value)
    if option == "batch-size":
        return f"batch{_slug(value)}"
    if option == "host":
        u = urlsplit(value if "://" in value else f"grpc://{value}")
        return _slug(f"{u.scheme}-{u.port}" if u.port else u.scheme or value)
    if option == "header":  # its value may be a secret: the header's name only
        return _slug(f"h-{value.partition(':')[0]}")
    if option in ("payload", "pipeline-spec"):
        return _slug(Path(value).stem)
    return _slug(f"{option}{'-' if option[-1:].isdigit() else ''}{value}")  # users16, slo-p99-50


def unique_names(names: Iterable[str]) -> list[str]:
    """Names as given, a repeated one gets -2, -3..."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out


def build_plan(base_args: list[str], vary: list[str], experiment: str | None, known: Mapping[str, bool],
               results: str | None = None, baseline: str | None = None) -> Plan:
    """The plan of a sweep; ``known`` maps every run option name to whether it is an on/off flag.

    Base options: the experiment file's, then the command line's (which win). Variants: the
    matrix (product of every ``vary``) with ``overrides`` applied, then explicit ``variants``."""
    flags = frozenset(n for n, is_flag in known.items() if is_flag)
    doc = read_experiment(experiment) if experiment else {}
    where = f"experiment file {experiment}"

    def check(names: Iterable[str], what: str) -> None:
        for n in names:
            if n == "results":
                raise ConfigError(f"{what}: --results belongs to the sweep (each variant writes RESULTS/<variant>/)")
            if n in RESERVED:
                raise ConfigError(f"{what}: --{n} cannot be used in a sweep (each variant is one headless run)")
            if n not in known:
                raise ConfigError(f"{what}: --{n} is not an option of seldon-load run")

    check([t[2:].partition("=")[0] for t in base_args if t.startswith("--") and t[2:].partition("=")[0] in RESERVED],
          "sweep")
    base_opts = _options(doc.get("base"), f"{where}: base")
    check(base_opts, f"{where}: base")
    axes: dict[str, list[str]] = {k: v for k, v in _options(doc.get("vary"), f"{where}: vary").items()}
    check(axes, f"{where}: vary")
    for text in vary:
        name, values = parse_vary(text)
        check([name], f"--vary {text}")
        if name in axes:
            raise ConfigError(f"--vary {text}: {name} is varied twice")
        axes[name] = values
    base = _to_args(base_opts, flags) + list(base_args)
    overrides = doc.get("overrides") or []
    if not isinstance(overrides, list):
        raise ConfigError(f"{where}: overrides must be a list of {{when: {{...}}, set: {{...}}}}")
    rules = []
    for i, rule in enumerate(overrides):
        if not isinstance(rule, Mapping) or set(rule) - {"when", "set"}:
            raise ConfigError(f"{where}: overrides[{i}] must have 'when' and 'set' only")
        when = {k: v[-1] for k, v in _options(rule.get("when"), f"{where}: overrides[{i}].when").items()}
        sets = _options(rule.get("set"), f"{where}: overrides[{i}].set")
        check(sets, f"{where}: overrides[{i}].set")
        rules.append((when, sets))

    variants: list[Variant] = []
    if axes:
        for combo in itertools.product(*axes.values()):
            values = dict(zip(axes, combo, strict=True))
            opts: dict[str, list[str]] = {k: [v] for k, v in values.items()}
            for when, sets in rules:
                if all(values.get(k) == v for k, v in when.items()):
                    opts.update(sets)
            name = "-".join(token(k, v) for k, v in values.items())
            variants.append(Variant(name, values, _drop_flags(base, opts, flags) + _to_args(opts, flags)))
    explicit = doc.get("variants") or []
    if not isinstance(explicit, list):
        raise ConfigError(f"{where}: variants must be a list of mappings with a name and run options")
    for i, item in enumerate(explicit):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{where}: variants[{i}] needs a name")
        opts = _options({k: v for k, v in item.items() if k != "name"}, f"{where}: variants[{i}]")
        check(opts, f"{where}: variants[{i}]")
        values = {k: v[-1] for k, v in opts.items()}
        variants.append(Variant(item["name"], values, _drop_flags(base, opts, flags) + _to_args(opts, flags)))
    if not variants:
        raise ConfigError("a sweep needs variants: --vary OPTION=V1,V2,... or an --experiment file with vary/variants")
    if len(variants) > MAX_VARIANTS:
        raise ConfigError(f"the plan has {len(variants)} variants, more than {MAX_VARIANTS}")
    for v, name in zip(variants, unique_names(v.name for v in variants), strict=True):
        if not _NAME.match(name):
            raise ConfigError(f"variant name {name!r}: use letters, digits, '.', '_' and '-' (at most 80)")
        v.name = name
    baseline = baseline or (str(doc["baseline"]) if doc.get("baseline") is not None else None)
    if baseline is not None and baseline not in {v.name for v in variants}:
        raise ConfigError(f"--baseline {baseline}: no such variant ({', '.join(v.name for v in variants)})")
    res = results or (str(doc["results"]) if doc.get("results") is not None else None)
    return Plan(base=base, variants=variants, results=res, baseline=baseline)
