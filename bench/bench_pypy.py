"""The explorer under PyPy against CPython, on issue 12's question, alternately in one run.

Issue 12 asks to "measure PyPy as an option" for the explorer's cost per state. PyPy's own
builds (Python 3.10 and 3.11) are not downloadable from this machine; Debian's ``pypy3``
package is (``apt-get install pypy3``: PyPy 7.3.11, Python 3.9). The project needs 3.11, but
the explorer's modules of the model (``protocol/``) use only three names 3.9 lacks, so this
script runs a copy of it in which 3.9 imports them (``protocol/litmus.py``, the litmus tests,
also builds ``X | Y`` unions at run time; the question never imports it):

- ``zip(..., strict=True)`` (3.10) loses ``strict=True``: the lengths are equal wherever the
  model zips, so this drops a check, not a result;
- ``typing.TypeAlias`` (3.10) and ``typing.Self`` (3.11), imported at module level, are given
  to 3.9's ``typing`` as placeholders before the model loads (they mark annotations only).

attrs, the model's one dependency, is pure Python and is copied from this interpreter's
installation. Both interpreters then run ``bench/bench_states.py`` (the explorer's
breadth-first search on ``linux-5.2 --budget madvise=1``, two CPUs, no symmetry reduction,
every default property and window checked, cut at ``--states``), CPython on this tree and
PyPy on the copy, alternately, ``--rounds`` times. The script stops unless both reach the
same number of states at the same depth, and prints the median states/s and peak memory of
each.

    python -m bench.bench_pypy                     # 3 rounds of 60,000 states
    python -m bench.bench_pypy --rounds 1 --states 150000 --pypy /usr/bin/pypy3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import attr
import attrs

from bench.ab import medians

ROOT = Path(__file__).resolve().parent.parent
STATES = ROOT / "bench" / "bench_states.py"

# Run by PyPy before bench_states: give 3.9's typing the later names the model imports.
SHIM = """\
import runpy, sys, typing
typing.TypeAlias = "TypeAlias"
typing.Self = "Self"
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def model_for_39(into: Path) -> None:
    """A copy of ``tlbfuzz.protocol`` and attrs in ``into`` that Python 3.9 imports."""
    shutil.copytree(ROOT / "protocol", into / "tlbfuzz" / "protocol")
    (into / "tlbfuzz" / "__init__.py").write_text("")
    for path in (into / "tlbfuzz" / "protocol").rglob("*.py"):
        text = path.read_text()
        path.write_text(text.replace(", strict=True)", ")"))
    for package in (attr, attrs):
        assert package.__file__ is not None
        src = Path(package.__file__).parent
        shutil.copytree(src, into / src.name)
    (into / "shim.py").write_text(SHIM)


def one(argv: list[str], cwd: Path, pythonpath: Path) -> tuple[str, float, float]:
    """One run of bench_states: its ``STATES states, depth D`` part, states/s and peak MB."""
    r = subprocess.run(
        argv,
        cwd=cwd,
        env={"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    head = r.stdout.splitlines()[0]
    reached = head.split(": ", 1)[1].rsplit(",", 1)[0]  # "60000 states, depth 9"
    return reached, medians(r.stdout)[2], medians(r.stdout, "rss")[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--states", type=int, default=60_000, help="stop each search after these")
    ap.add_argument("--pypy", default=shutil.which("pypy3") or "pypy3", help="PyPy's binary")
    args = ap.parse_args()
    if shutil.which(args.pypy) is None:
        sys.exit(f"bench_pypy: no {args.pypy} (apt-get install pypy3)")
    version = subprocess.run(
        [args.pypy, "-c", "import sys; print(sys.version.replace(chr(10), ' '))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"CPython {sys.version.split()[0]}; PyPy: {version}")
    bench = ["--states", str(args.states)]
    rate: dict[str, list[float]] = {"cpython": [], "pypy": []}
    peak: dict[str, list[float]] = {"cpython": [], "pypy": []}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        model_for_39(copy)
        for i in range(args.rounds):
            c = one([sys.executable, str(STATES), *bench], ROOT, ROOT)
            p = one([args.pypy, str(copy / "shim.py"), str(STATES), *bench], copy, copy)
            if c[0] != p[0]:
                sys.exit(f"bench_pypy: CPython reached {c[0]}, PyPy {p[0]}: not the same search")
            for side, (_, r, m) in (("cpython", c), ("pypy", p)):
                rate[side].append(r)
                peak[side].append(m)
            print(f"round {i + 1}: {c[0]}; CPython {c[1]:,.0f}, PyPy {p[1]:,.0f} states/s")
    c_rate, p_rate = statistics.median(rate["cpython"]), statistics.median(rate["pypy"])
    c_mb, p_mb = statistics.median(peak["cpython"]), statistics.median(peak["pypy"])
    print(f"\n{'':>8} {'states/s':>10} {'peak MB':>8}")
    print(f"{'CPython':>8} {c_rate:>10,.0f} {c_mb:>8,.0f}")
    print(f"{'PyPy':>8} {p_rate:>10,.0f} {p_mb:>8,.0f}")
    print(f"PyPy/CPython: {p_rate / c_rate:.2f} states/s, {p_mb / c_mb:.2f} memory")


if __name__ == "__main__":
    main()
