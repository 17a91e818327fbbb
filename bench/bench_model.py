"""Model speed: actions per second of a seeded random walk over enabled actions.

Each walk starts from World.initial and takes up to ``--depth`` steps, choosing uniformly
among the enabled actions (the same work a fuzzer asks of the model: enabled_actions() then
apply() per step), plus ``violations()`` per step with ``--check``. One core, one process.

    python -m bench.bench_model            # 2 and 3 CPUs, every variant
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from tlbfuzz.protocol import VARIANTS, Config, World


def walk_rate(variant: str, cpus: int, seconds: float, depth: int, check: bool) -> float:
    rng = random.Random(0)
    v = VARIANTS[variant]
    config = Config(cpus=cpus)
    steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        w = World.initial(v, config)
        for _ in range(depth):
            acts = w.enabled_actions()
            if not acts:
                break
            w.apply(acts[rng.randrange(len(acts))])
            if check:
                w.violations()
            steps += 1
    return steps / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="per variant and CPU count")
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--check", action="store_true", help="also call violations() per step")
    ap.add_argument("-v", "--variant", action="append", help="default: every variant")
    args = ap.parse_args()
    names = args.variant or sorted(VARIANTS)
    print(f"{'variant':<26} {'cpus':>4} {'actions/s':>10}")
    for cpus in (2, 3):
        rates = []
        for name in names:
            r = walk_rate(name, cpus, args.seconds, args.depth, args.check)
            rates.append(r)
            print(f"{name:<26} {cpus:>4} {r:>10,.0f}")
        print(f"{'median':<26} {cpus:>4} {statistics.median(rates):>10,.0f}")


if __name__ == "__main__":
    main()
