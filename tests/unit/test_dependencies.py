"""Every declared runtime dependency is imported by the package: none is carried along unused."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
# distribution name -> the top-level module it provides, where they differ
MODULES = {"grpcio": "grpc", "protobuf": "google", "pyyaml": "yaml"}


def _imported_top_levels() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "seldon_load").rglob("*.py"):
        if "_generated" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def test_every_declared_dependency_is_imported():
    # [project] dependencies, read without tomllib (Python 3.10 has none)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    assert block is not None
    specs = re.findall(r'"([^"]+)"', block.group(1))
    names = [re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in specs]
    imported = _imported_top_levels()
    unused = [n for n in names if MODULES.get(n, n.replace("-", "_")) not in imported]
    assert unused == [], f"declared but never imported by seldon_load: {unused}"
    assert len(names) >= 8
