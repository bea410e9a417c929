"""generated/ must be exactly what scripts/generate_protos.py makes of protos/."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_protos.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    committed = ROOT / "generated" / "customersegment"
    fresh = tmp_path / "customersegment"
    committed_files = sorted(
        p.relative_to(committed)
        for p in committed.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    fresh_files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    assert committed_files == fresh_files, "files differ: run `make protos`"
    stale = [
        str(p) for p in fresh_files if not filecmp.cmp(committed / p, fresh / p, shallow=False)
    ]
    assert not stale, f"generated/ is stale against protos/ ({stale}): run `make protos`"
