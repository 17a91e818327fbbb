"""The mm layer's state spaces: ``tlbfuzz explore -v VARIANT --budget KIND=1`` (2 CPUs, every
other kind 0, no frame reuse, symmetry reduction on: the CLI's configuration, with the shape
the kind needs, ``BudgetKind.shape``) for each kind of kernel path the mm/ and fs/ modules
declare, on linux-current and linux-5.2, with every default property. Each search stops at
``--seconds`` and then says how deep it got.

    python -m bench.bench_mm [--seconds 600] [--variant linux-current] [--kind madvise]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from tlbfuzz.protocol import DEFAULT_PROPERTIES, PATHS, VARIANTS, Budget, Config, Step, World
from tlbfuzz.protocol.search import Collapse, bfs

NOT_MM = ("tlbfuzz.protocol.tlb", "tlbfuzz.protocol.smp")
KINDS = tuple(
    dict.fromkeys(
        p.budget.name
        for p in PATHS.values()
        if isinstance(first := p.steps[0], Step) and first.run.__module__ not in NOT_MM
    )
)
"""The kinds of the paths of mm/ and fs/ (derived: a new path's kind comes with it)."""
SHAPE: dict[str, dict[str, Any]] = {p.budget.name: dict(p.budget.shape) for p in PATHS.values()}


class OutOfTime(Exception):
    pass


def run(variant: str, kind: str, seconds: float) -> str:
    config = Config(budget=Budget.only(**{kind: 1}), reuse=False, **SHAPE[kind])
    start = World.initial(VARIANTS[variant], config)
    t0 = time.perf_counter()
    last = [0, 0]

    def level(depth: int, states: int) -> None:
        last[:] = [depth, states]
        if time.perf_counter() - t0 > seconds:
            raise OutOfTime

    try:
        r = bfs(
            start, DEFAULT_PROPERTIES, 200, 20_000_000, key=Collapse(symmetric=True), on_level=level
        )
    except OutOfTime:
        dt = time.perf_counter() - t0
        cut = f"no violation to depth {last[0]} (cut)"
        return f"{variant:<14} {kind:<10} {cut:<34} {last[1]:>9,} states  {dt:6.0f} s"
    dt = time.perf_counter() - t0
    if r.violation is not None and r.schedule is not None:
        verdict = f"{r.violation.prop} in {len(r.schedule)}"
    else:
        verdict = "holds, all states" if r.exhausted else f"no violation to depth {r.depth}"
    return f"{variant:<14} {kind:<10} {verdict:<34} {r.states:>9,} states  {dt:6.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--variant", action="append", choices=("linux-current", "linux-5.2"))
    ap.add_argument("--kind", action="append", choices=KINDS)
    args = ap.parse_args()
    for variant in args.variant or ("linux-current", "linux-5.2"):
        for kind in args.kind or KINDS:
            print(run(variant, kind, args.seconds), flush=True)


if __name__ == "__main__":
    main()
