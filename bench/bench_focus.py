"""How often a swarm walk finds the 2019 switch-window use-after-free of ``linux-5.2`` when its
plan already has the right focus (cpu0 madvise and a read, cpu1 a context switch, a read and
NMIs, one address): per scheduler, the walks of 30 steps that break ``no_use_after_free``.
It separates the two factors of the ``ci`` profile's hard rows: drawing that focus, and the
order of steps once drawn.

    python -m bench.bench_focus --walks 2000
"""

from __future__ import annotations

import argparse

from tlbfuzz.fuzz.machine import Focus
from tlbfuzz.fuzz.swarm import SCHEDULERS, Lanes, Plan, walk
from tlbfuzz.protocol import VARIANTS, Budget, Config

FOCUS = Focus(
    kinds=(frozenset({"madvise", "user_read"}), frozenset({"context_switch", "user_read", "nmi"})),
    vas=frozenset({0x1000}),
    ipi_weight=4,
)
BUDGET = Budget.only(madvise=1, munmap=1, switch=2, mprotect=1, writeback=1, ipi=1, irqs_off=1)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_focus")
    ap.add_argument("--walks", type=int, default=2000)
    args = ap.parse_args()
    v = VARIANTS["linux-5.2"]
    config = Config(cpus=2, budget=BUDGET)
    lanes = Lanes()
    for scheduler in SCHEDULERS:
        found = sorted(
            len(r.schedule)
            for seed in range(args.walks)
            if (
                r := walk(
                    v, Plan(config, FOCUS, scheduler, seed), ("no_use_after_free",), 30, 1, lanes
                )
            ).schedule
        )
        print(f"{scheduler:<8} {len(found)} of {args.walks} walks, shortest {found[:3]}")


if __name__ == "__main__":
    main()
