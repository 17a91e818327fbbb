"""Run ``python -m fuzz`` in a subprocess of the worktree.

The derandomized ``ci`` stream depends on the integer literals Hypothesis mines from every
local module loaded in the process (``fuzz/profiles.py`` explains it), so a test asserting
what ``ci`` finds runs the command in a fresh process, whose modules are those of
``tlbfuzz fuzz`` itself, whatever the test session has imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    *argv: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ if env is None else env)
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), environ.get("PYTHONPATH", "")) if p
    )
    return subprocess.run(
        [sys.executable, "-m", "fuzz", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def saved(corpus: Path) -> list[dict[str, Any]]:
    """The corpus files under ``corpus``, parsed, in sorted order."""
    return [json.loads(p.read_text()) for p in sorted(corpus.rglob("*.json"))]
