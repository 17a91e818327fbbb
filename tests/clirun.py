"""Run ``tlbfuzz`` in a subprocess, as installed.

The derandomized ``ci`` stream depends on the integer literals Hypothesis mines from every
*local* module loaded in the process (``fuzz/profiles.py`` explains it): installed packages
are not local, a checkout is. So a test asserting what ``ci`` finds runs the command in a
fresh process, from a copy of ``tlbfuzz/`` (with ``fuzz/`` and ``protocol/`` in it) in a
``site-packages`` folder, where Hypothesis sees them as it sees them after ``pip install .``:
the stream is the one a user of the README's quick start gets, whatever this test session
imported and whatever literals the sources gain.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def installed() -> Path:
    """A ``site-packages`` folder holding a copy of the project's packages (made once)."""
    base = Path(tempfile.mkdtemp(prefix="tlbfuzz-installed-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    site = base / "site-packages"
    # as in the wheel: tlbfuzz/ with real copies where the checkout has symlinks
    shutil.copytree(
        ROOT / "tlbfuzz", site / "tlbfuzz", ignore=shutil.ignore_patterns("__pycache__")
    )
    (base / "work").mkdir()
    return site


def run_cli(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m tlbfuzz.fuzz ARGV`` with the installed copy, from an empty working directory (so
    that the checkout is not on the path)."""
    site = installed()
    environ = dict(os.environ if env is None else env)
    environ["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "tlbfuzz.fuzz", *argv],
        capture_output=True,
        text=True,
        cwd=cwd or site.parent / "work",
        env=environ,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def saved(corpus: Path) -> list[dict[str, Any]]:
    """The corpus files under ``corpus``, parsed, in sorted order."""
    return [json.loads(p.read_text()) for p in sorted(corpus.rglob("*.json"))]
