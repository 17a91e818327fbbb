"""``bench/bench_mypyc.py``: which of the model's modules it compiles."""

from __future__ import annotations

from pathlib import Path

from bench.bench_mypyc import classless

ROOT = Path(__file__).resolve().parent.parent


def test_the_modules_compiled_are_those_that_define_no_class() -> None:
    """The kernel's step functions are compiled; the records (``World``, ``Cpu``, ``Shared``)
    and the package's ``__init__`` are not."""
    names = {p.name for p in classless(ROOT / "protocol")}
    assert {"tlb.py", "smp.py", "hw.py", "vmscan.py"} <= names
    assert not names & {"state.py", "world.py", "__init__.py", "mm.py", "bfs.py"}
