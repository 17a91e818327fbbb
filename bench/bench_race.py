"""A race between search strategies on the review's concerns (2 CPUs): the random walker
(uniform over enabled actions, walks of 20 steps) and breadth-first search (over the budgets a
concern needs, with symmetry reduction). Per concern: success rate over seeds, median time,
walks and model steps to the first failure, and the length reported after minimisation. The
Hypothesis figures for the same concerns come from bench/bench_fuzz.py.

    python -m bench.bench_race --seeds 20 --walks 20000
"""

from __future__ import annotations

import argparse
import statistics
import time

from fuzz.walker import random_walk
from protocol import VARIANTS, Config, World
from protocol.search import bfs, symmetric_fingerprint
from tests.schedules import SHORTEST
from tests.test_explore import NEEDS, config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--walks", type=int, default=20_000)
    args = ap.parse_args()
    print(
        f"{'variant':<24} {'property':<28} {'min':>3} | {'walker':>6} {'med s':>6} "
        f"{'med walks':>9} {'med steps':>9} {'len':>4} | {'BFS s':>6} {'states':>8} {'len':>4}"
    )
    for (variant, prop), shortest in SHORTEST.items():
        v = VARIANTS[variant]
        times, walks, steps, lengths = [], [], [], []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            r = random_walk(v, Config(cpus=2), [prop], seed, walks=args.walks)
            if r.schedule is not None:
                times.append(time.perf_counter() - t0)
                walks.append(r.walks)
                steps.append(r.steps)
                lengths.append(len(r.schedule))
        t0 = time.perf_counter()
        start = World.initial(v, config(**NEEDS[(variant, prop)]))
        b = bfs(start, [prop], 20, 3_000_000, key=symmetric_fingerprint)
        bfs_s = time.perf_counter() - t0
        med = statistics.median
        print(
            f"{variant:<24} {prop:<28} {shortest:>3} | {len(times):>3}/{args.seeds:<2} "
            f"{(med(times) if times else float('nan')):>6.1f} "
            f"{(med(walks) if walks else 0):>9.0f} {(med(steps) if steps else 0):>9.0f} "
            f"{(min(lengths) if lengths else 0):>4} | {bfs_s:>6.1f} {b.states:>8} "
            f"{(len(b.schedule) if b.schedule else 0):>4}",
            flush=True,
        )


if __name__ == "__main__":
    main()
