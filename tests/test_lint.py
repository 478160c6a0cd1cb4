"""The tree is clean under ruff (configuration: ``[tool.ruff]`` in pyproject.toml)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _findings() -> dict[str, list[str]]:
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "json", "--no-cache", "."],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 1), out.stderr[-2000:]  # 1 = findings; anything else = ruff itself failed
    found: dict[str, list[str]] = {}
    for f in json.loads(out.stdout):
        rel = str(Path(f["filename"]).resolve().relative_to(REPO))
        found.setdefault(rel, []).append(f"{f['location']['row']}: {f['code']} {f['message']}")
    return found


def test_ruff_finds_nothing() -> None:
    found = _findings()
    assert {path: lines[:5] for path, lines in found.items()} == {}
