"""How often the ``ci`` profile's engine (the swarm) breaks each race row's property: finds per
budget of model steps, where ``bench_race`` counts only whether a seed found one.

A seed runs the swarm exactly as the race does (``fuzz/swarm.py``: Hypothesis draws a plan
per example with the ``ci`` settings and that seed, the model walks it, 30 steps), but does
not stop at the first violation: it counts every walk that breaks the property within the
budget (``--steps``, 30,000 model steps, the race's). The mean count per seed is a rate with
far less noise than "seeds that found it" over a few seeds, and it says how far a row is from
issue 12's 19 of 20 seeds: if finds come independently (a Poisson count), a seed misses with
probability exp(-rate), so 19 of 20 expected needs a rate of ln 20, about 3.0 finds per
budget. The ``needs`` column is that 3.0 over the measured rate, the factor the search still
has to gain on the row (``met`` where the rate is already there).

    python -m bench.bench_rate --seeds 4 --jobs 2        # the README's table
"""

from __future__ import annotations

import argparse
import math
import statistics
from concurrent.futures import ProcessPoolExecutor
from typing import Final

from hypothesis import given
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings

from tests.schedules import RACE_VARIANTS, RACES
from tlbfuzz.fuzz.machine import configs
from tlbfuzz.fuzz.profiles import NO_SHRINK, PROFILES
from tlbfuzz.fuzz.swarm import Lanes, Plan, plans, walk

TARGET: Final = math.log(20)
"""Finds per budget for a Poisson count to miss in 1 seed of 20 (exp(-rate) = 1/20)."""


def finds(variant: str, prop: str, seed: int, budget: int) -> int:
    """Walks that break ``prop`` in ``budget`` model steps of the swarm with ``seed``."""
    v = RACE_VARIANTS[variant]
    depth = PROFILES["ci"].stateful_step_count
    lanes = Lanes()
    count = [0, 0]  # finds, steps

    def one(plan: Plan) -> None:
        if count[1] >= budget:
            return
        r = walk(v, plan, (prop,), depth, 1, lanes)
        count[1] += r.steps
        count[0] += r.schedule is not None

    s = Settings(PROFILES["ci"], max_examples=budget // depth, phases=NO_SHRINK, database=None)
    test = hypothesis_seed(seed)(s(given(plan=plans(v, configs(v, (2,))))(one)))
    test()
    return count[0]


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_rate", description=__doc__)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30_000, help="model steps per seed")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--only", help="substring of VARIANT:PROPERTY")
    args = ap.parse_args()
    rows = [k for k in RACES if not args.only or args.only in f"{k[0]}:{k[1]}"]
    print(f"{'variant':<34} {'property':<28} {'finds/budget':>12} {'needs':>6}  per seed")
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {
            k: [pool.submit(finds, *k, seed, args.steps) for seed in range(args.seeds)]
            for k in rows
        }
        for k in rows:
            counts = [f.result() for f in futures[k]]
            rate = statistics.mean(counts)
            needs = "met" if rate >= TARGET else f"{TARGET / rate:.1f}" if rate else "inf"
            print(f"{k[0]:<34} {k[1]:<28} {rate:>12.2f} {needs:>6}  {counts}", flush=True)


if __name__ == "__main__":
    main()
