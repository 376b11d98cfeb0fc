"""Regenerate ``seldon_load/oip/_generated`` from ``protos/grpc_predict_v2.proto``.

Generated code lives apart from hand-written code and is never edited; a test compares
the committed stubs with a fresh generation so the two cannot drift.
Run with ``python -m seldon_load.oip.gen_protos``.
"""

from __future__ import annotations

import sys
import tempfile
from importlib import resources
from pathlib import Path

PROTO_NAME = "grpc_predict_v2.proto"
REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "protos"
GENERATED_DIR = Path(__file__).resolve().parent / "_generated"

INIT_TEXT = '"""Generated from protos/grpc_predict_v2.proto by seldon_load.oip.gen_protos; do not edit."""\n'
GENERATED_NAMES = ("__init__.py", "grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2_grpc.py")
# MLServer, tritonclient and others register the same ``inference.*`` symbols in protobuf's
# default descriptor pool; a private pool lets these stubs live in the same process as them.
_DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL = "DESCRIPTOR = _descriptor_pool.DescriptorPool().AddSerializedFile("
_ABSOLUTE_IMPORT = "import grpc_predict_v2_pb2 as grpc__predict__v2__pb2"
_RELATIVE_IMPORT = "from . import grpc_predict_v2_pb2 as grpc__predict__v2__pb2"


def _run_protoc(out_dir: Path) -> None:
    from grpc_tools import protoc

    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / PROTO_NAME),
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code} on {PROTO_DIR / PROTO_NAME}")


def generate_texts() -> dict[str, str]:
    """Generate into a temporary directory; return {file name: text} of the package files."""
    with tempfile.TemporaryDirectory(prefix="seldon-load-protos-") as tmp:
        out = Path(tmp)
        _run_protoc(out)
        pb2 = (out / "grpc_predict_v2_pb2.py").read_text()
        grpc_stub = (out / "grpc_predict_v2_pb2_grpc.py").read_text()
    return {
        "__init__.py": INIT_TEXT,
        "grpc_predict_v2_pb2.py": _replace_once(pb2, _DEFAULT_POOL, _PRIVATE_POOL),
        "grpc_predict_v2_pb2_grpc.py": _replace_once(grpc_stub, _ABSOLUTE_IMPORT, _RELATIVE_IMPORT),
    }


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise RuntimeError(f"generated code changed shape: expected one {old!r}")
    return text.replace(old, new)


def committed_texts() -> dict[str, str]:
    """The texts of the committed generated files (a missing file maps to an empty string)."""
    return {name: _read_or_empty(GENERATED_DIR / name) for name in GENERATED_NAMES}


def _read_or_empty(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def write(out_dir: Path = GENERATED_DIR) -> list[Path]:
    """Regenerate the stubs into ``out_dir``; return the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate_texts().items():
        path = out_dir / name
        path.write_text(text)
        written.append(path)
    return written


def main() -> int:
    for path in write():
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
