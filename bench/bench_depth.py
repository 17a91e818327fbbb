"""How deep the explorer gets in a time budget with the full default budgets (issue 12 asks
for depth 10 in 60 s with 2 CPUs): breadth-first search of every default property, the
unique states and seconds at the end of each level, until the budget runs out.

    python -m bench.bench_depth                        # linux-current, 2 CPUs, 60 s
    python -m bench.bench_depth -v linux-5.2 --cpus 3 --seconds 60 --no-symmetry
"""

from __future__ import annotations

import argparse
import time

from tlbfuzz.protocol import DEFAULT_PROPERTIES, VARIANTS, Config, World
from tlbfuzz.protocol.search import Collapse, bfs


class _OutOfTime(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_depth")
    ap.add_argument("-v", "--variant", default="linux-current")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--no-symmetry", action="store_true", help="no symmetry reduction")
    args = ap.parse_args()
    start = World.initial(VARIANTS[args.variant], Config(cpus=args.cpus))
    t0 = time.perf_counter()

    def level(depth: int, states: int) -> None:
        dt = time.perf_counter() - t0
        print(f"depth {depth:>2} reached: {states:>9,} states {dt:>7.1f} s", flush=True)
        if dt > args.seconds:
            raise _OutOfTime

    key = Collapse(symmetric=not args.no_symmetry)
    try:
        r = bfs(start, DEFAULT_PROPERTIES, 200, 50_000_000, key=key, on_level=level)
        print(f"ended: depth {r.depth}, {r.states:,} states, violation {r.violation}")
    except _OutOfTime:
        print(f"out of time ({args.seconds:.0f} s)")


if __name__ == "__main__":
    main()
