"""Explorer speed and reach: breadth-first search over whole state spaces of 2 CPUs with small
per-CPU budgets (every other kind of kernel path 0, no frame reuse), and the time to the
shortest violation for the review's concerns.

    python -m bench.bench_explore
"""

from __future__ import annotations

import time

from tlbfuzz.protocol import DEFAULT_PROPERTIES, VARIANTS, Budget, Config, World
from tlbfuzz.protocol.search import bfs


def config(**budget: int) -> Config:
    return Config(budget=Budget.only(**budget), reuse=False)


CASES = [
    ("linux-5.2", DEFAULT_PROPERTIES, {"munmap": 1}),
    ("linux-5.2", DEFAULT_PROPERTIES, {"writeback": 1}),
    ("linux-5.2", DEFAULT_PROPERTIES, {"madvise": 1}),
    ("linux-current", DEFAULT_PROPERTIES, {"madvise": 1}),
    ("rfc-async", DEFAULT_PROPERTIES, {"madvise": 1}),
    ("rfc-async-posted", ("no_use_after_free",), {"madvise": 1}),
    ("rfc-async-no-nmi-check", ("nmi_uaccess_safety",), {"madvise": 1}),
]


def main() -> None:
    print(f"{'variant':<24} {'budget':<26} {'result':<30} {'states':>9} {'s':>6} {'states/s':>9}")
    for name, props, budget in CASES:
        t0 = time.perf_counter()
        r = bfs(World.initial(VARIANTS[name], config(**budget)), props, 200, 5_000_000)
        dt = time.perf_counter() - t0
        if r.schedule is not None and r.violation is not None:
            result = f"{r.violation.prop[:18]} in {len(r.schedule)}"
        elif r.exhausted:
            result = f"holds: all states (depth {r.depth})"
        else:
            result = f"stopped at depth {r.depth}"
        b = ",".join(f"{k}={v}" for k, v in budget.items())
        print(f"{name:<24} {b:<26} {result:<30} {r.states:>9} {dt:>6.1f} {r.states / dt:>9,.0f}")


if __name__ == "__main__":
    main()
