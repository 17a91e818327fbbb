"""Throughput of the two engines: model steps and examples per second of one run of the
``dev`` profile's settings (30-step examples) on variants that hold the property (so no run
stops early), one core, 2 CPUs; the rule machine (``fuzz/machine.py``) and the swarm
(``fuzz/swarm.py``, the ``ci`` profile's); then the swarm's plans drawn by a test that
does nothing with them, which is Hypothesis's cost per plan.

    python -m bench.bench_machine --examples 1000
"""

from __future__ import annotations

import argparse
import time

from hypothesis import given
from hypothesis import settings as Settings

from tlbfuzz.fuzz.profiles import PROFILES
from tlbfuzz.fuzz.runner import run_machine, run_swarm
from tlbfuzz.fuzz.swarm import Plan, plans
from tlbfuzz.protocol import VARIANTS

CASES = (("linux-current", "no_use_after_free"), ("rfc-async", "no_lost_write"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    s = Settings(PROFILES["dev"], max_examples=args.examples)
    for engine, run in (("machine", run_machine), ("swarm", run_swarm)):
        for variant, prop in CASES:
            t0 = time.perf_counter()
            err, examples, steps = run(VARIANTS[variant], (prop,), s, args.seed, 2)
            dt = time.perf_counter() - t0
            status = "held" if err is None else f"broke {err.violation.prop}"
            print(
                f"{engine:<8} {variant:<16} {prop:<20} {status:<6} {examples:>6} examples "
                f"{steps:>7} steps "
                f"{dt:>6.1f}s {steps / dt:>7,.0f} steps/s {examples / dt:>5,.0f} examples/s",
                flush=True,
            )
    # Hypothesis's own cost per plan: a test that draws the swarm's plans and does nothing
    for variant, prop in CASES:
        drawn: list[Plan] = []

        def keep(plan: Plan) -> None:
            drawn.append(plan)  # noqa: B023 (run at once, in this iteration)

        t0 = time.perf_counter()
        s(given(plans(VARIANTS[variant]))(keep))()
        dt = time.perf_counter() - t0
        print(
            f"{'plans':<8} {variant:<16} {prop:<20} {len(drawn):>6} plans drawn, no walk "
            f"{dt:>6.1f}s {1000 * dt / len(drawn):>6.2f} ms/plan",
            flush=True,
        )


if __name__ == "__main__":
    main()
