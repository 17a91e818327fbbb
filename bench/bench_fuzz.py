"""Fuzzer effectiveness per review concern: over N seeds, how often the dev-profile machine
finds the violation within a budget of examples, and at what cost (median time, examples and
model steps to the first failure, misses counted as misses), plus the length reported after
minimisation and the machine's steps per second.

    python -m bench.bench_fuzz --seeds 20 --max-examples 1500       # the README's table
"""

from __future__ import annotations

import argparse
import statistics
import time

from fuzz.runner import Finding, fuzz_variant
from protocol import VARIANTS
from tests.schedules import SHORTEST


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--max-examples", type=int, default=1500)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--only", help="substring of VARIANT:PROPERTY")
    args = ap.parse_args()
    print(
        f"{'variant':<24} {'property':<28} {'found':>6} {'med s':>6} {'med ex':>7} "
        f"{'med steps':>9} {'len':>5} {'min':>4} {'steps/s':>8}"
    )
    for (variant, prop), shortest in SHORTEST.items():
        if args.only and args.only not in f"{variant}:{prop}":
            continue
        times: list[float] = []
        examples: list[int] = []
        steps: list[int] = []
        lengths: list[int] = []
        rate_steps = rate_time = 0.0
        hits = 0
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            (o,) = fuzz_variant(
                VARIANTS[variant],
                [prop],
                profile="dev",
                seed=seed,
                max_examples=args.max_examples,
                cpus=args.cpus,
            )
            dt = time.perf_counter() - t0
            if isinstance(o, Finding):
                hits += 1
                times.append(dt)
                examples.append(o.examples)
                steps.append(o.steps)
                lengths.append(len(o.schedule))
            else:
                rate_steps += o.steps
                rate_time += o.seconds
        med = statistics.median
        print(
            f"{variant:<24} {prop:<28} {hits:>3}/{args.seeds:<2} "
            f"{(med(times) if times else float('nan')):>6.1f} "
            f"{(med(examples) if examples else 0):>7.0f} "
            f"{(med(steps) if steps else 0):>9.0f} "
            f"{(min(lengths) if lengths else 0):>5} {shortest:>4} "
            f"{(rate_steps / rate_time if rate_time else float('nan')):>8.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
