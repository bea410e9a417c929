"""Regenerates generated/ from protos/: messages, gRPC stubs and their .pyi type stubs.

Usage: python scripts/generate_protos.py [OUTPUT_DIR]   (default: generated/)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
# google/api/annotations.proto and http.proto, vendored for buf (see buf.yaml). They are only
# read here: the generated code imports google.api.annotations_pb2 from
# googleapis-common-protos, so no second copy of google/api is generated.
THIRD_PARTY = PROTOS / "third_party"


def generate(out_dir: Path) -> None:
    package_dir = out_dir / "customersegment"
    if package_dir.exists():
        shutil.rmtree(package_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    sources = sorted(
        str(p.relative_to(PROTOS)) for p in (PROTOS / "customersegment").rglob("*.proto")
    )
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{THIRD_PARTY}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for directory in [package_dir, *[p for p in package_dir.rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").write_text("")
    (package_dir / "py.typed").write_text("")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "generated")
