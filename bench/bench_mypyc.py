"""The explorer with the model's step modules compiled by mypyc, against the same tree
interpreted, on issue 12's question, alternately in one run.

Issue 12 asks for ten times the explorer's states per second; the README's measurements
reach 3.65 in pure Python, and PyPy (``bench/bench_pypy.py``) is slower here. mypyc, which
comes with mypy (a test dependency), compiles type-annotated modules to C extensions, and
the model is ``mypy --strict`` clean. What it compiles without a rewrite: the modules that
define no class, the kernel's step functions (``tlb.py``, ``smp.py``, ``hw.py``, ``mm.py``'s
neighbours; the list is derived, printed, and checked to import as extensions). The records
they work on (``World``, ``Cpu``, ``Mm``: attrs classes with generated ``copy()`` and
``snapshot()``, and the copy-on-write list ``Shared``, a ``list`` subclass) are classes
mypyc cannot compile as they stand ("Inheriting from most builtin types is unimplemented";
attrs' slotted classes are built at run time), so they stay interpreted. That is the
measured option: compiled steps over interpreted records.

A copy of ``protocol/`` is compiled in a temporary directory (``python -m mypyc``; needs a C
compiler and the Python headers), then ``bench/bench_states.py`` runs on this tree and on the
copy, alternately, ``--rounds`` times, with the same interpreter. The script stops unless
both reach the same states at the same depth, and prints the median states/s of each.

    python -m bench.bench_mypyc                    # 3 rounds of 60,000 states
    python -m bench.bench_mypyc --rounds 1 --states 30000
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.ab import medians

ROOT = Path(__file__).resolve().parent.parent
STATES = ROOT / "bench" / "bench_states.py"


def classless(protocol: Path) -> list[Path]:
    """The modules of ``protocol`` that define no class (``__init__`` aside)."""
    out = []
    for path in sorted(protocol.rglob("*.py")):
        tree = ast.parse(path.read_text())
        if path.name != "__init__.py" and not any(
            isinstance(n, ast.ClassDef) for n in ast.walk(tree)
        ):
            out.append(path)
    return out


def compiled_copy(into: Path) -> list[str]:
    """A copy of ``tlbfuzz.protocol`` in ``into`` with its class-free modules compiled; their
    module names."""
    package = into / "tlbfuzz" / "protocol"
    shutil.copytree(ROOT / "protocol", package, ignore=shutil.ignore_patterns("__pycache__"))
    (into / "tlbfuzz" / "__init__.py").write_text("")
    modules = classless(package)
    subprocess.run(
        [sys.executable, "-m", "mypyc", *(str(m.relative_to(into)) for m in modules)],
        cwd=into,
        check=True,
        capture_output=True,
        text=True,
    )
    names = [".".join(m.relative_to(into).with_suffix("").parts) for m in modules]
    probe = (
        "import importlib, sys\nfor n in sys.argv[1:]: print(importlib.import_module(n).__file__)"
    )
    files = subprocess.run(
        [sys.executable, "-c", probe, *names],
        cwd=into,
        env=_env(into),
        capture_output=True,
        text=True,
        check=False,
    )
    loaded = files.stdout.split()
    if files.returncode or not all(f.endswith(".so") for f in loaded):
        sys.exit(f"bench_mypyc: the compiled modules did not load: {files.stderr or loaded}")
    return names


def _env(pythonpath: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(pythonpath), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def one(cwd: Path, pythonpath: Path, states: int) -> tuple[str, float]:
    """One run of bench_states: its ``STATES states, depth D`` part and states/s."""
    r = subprocess.run(
        [sys.executable, str(STATES), "--states", str(states)],
        cwd=cwd,
        env=_env(pythonpath),
        capture_output=True,
        text=True,
        check=True,
    )
    head = r.stdout.splitlines()[0]
    reached = head.split(": ", 1)[1].rsplit(",", 1)[0]  # "60000 states, depth 9"
    return reached, medians(r.stdout)[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--states", type=int, default=60_000, help="stop each search after these")
    args = ap.parse_args()
    rate: dict[str, list[float]] = {"interpreted": [], "compiled": []}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        names = compiled_copy(copy)
        print(f"compiled with mypyc: {', '.join(n.rpartition('.')[2] for n in names)}")
        for i in range(args.rounds):
            a = one(ROOT, ROOT, args.states)
            b = one(copy, copy, args.states)
            if a[0] != b[0]:
                sys.exit(f"bench_mypyc: interpreted {a[0]}, compiled {b[0]}: not the same search")
            rate["interpreted"].append(a[1])
            rate["compiled"].append(b[1])
            print(f"round {i + 1}: {a[0]}; interpreted {a[1]:,.0f}, compiled {b[1]:,.0f} states/s")
    i_rate, c_rate = statistics.median(rate["interpreted"]), statistics.median(rate["compiled"])
    print(f"median: interpreted {i_rate:,.0f}, compiled {c_rate:,.0f} states/s")
    print(f"compiled/interpreted: {c_rate / i_rate:.2f}")


if __name__ == "__main__":
    main()
