"""States per second of the explorer on one question, runnable against any commit's model.

    python -m bench.bench_states                          # linux-5.2, madvise=1, 60,000 states
    python -m bench.bench_states --variant rfc-async --states 30000
    python -m bench.ab --rev a1944b5 --bench states       # old and new, side by side

The question is issue 12's: ``tlbfuzz explore -v linux-5.2 --budget madvise=1 --no-symmetry``
(two CPUs, plain snapshots as the visited set, every default property checked, windows
counted as the CLI counts them), cut after ``--states`` unique states so that old and slow
commits finish too. The model is imported by name (``--package``: ``tlbfuzz.protocol``, or
``protocol`` in trees before the tlbfuzz layout), so ``bench.ab`` can run this file against
another tree.
Prints ``median 2 RATE`` (the line ``bench.ab`` reads) with the states, depth and seconds, and
``rss 2 MB``, the process's peak resident memory (``bench.ab`` prints it too).
"""

from __future__ import annotations

import argparse
import importlib
import resource
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType


def _model(package: str, name: str) -> ModuleType:
    """``<package><name>``: ``tlbfuzz.protocol.search``, say, or ``protocol.search`` in a tree
    from before the tlbfuzz layout (``bench.ab`` says which)."""
    return importlib.import_module(package + name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="linux-5.2")
    ap.add_argument("--budget", default="madvise=1", help="KIND=N,... for every CPU")
    ap.add_argument("--states", type=int, default=60_000, help="stop after this many")
    ap.add_argument("--package", default="tlbfuzz.protocol", help="the model's package name")
    args = ap.parse_args()
    protocol = _model(args.package, "")
    bfs = _model(args.package, ".search").bfs
    budget = {k: int(n) for k, _, n in (s.partition("=") for s in args.budget.split(","))}
    config = protocol.Config(cpus=2, budget=protocol.Budget.only(**budget), reuse=False)
    start = protocol.World.initial(protocol.VARIANTS[args.variant], config)
    t0 = time.perf_counter()
    r = bfs(
        start,
        protocol.DEFAULT_PROPERTIES,
        200,
        max_states=args.states,
        on_violation=lambda _s, _v: True,
        windows=True,
    )
    dt = time.perf_counter() - t0
    print(f"{args.variant} --budget {args.budget}: {r.states} states, depth {r.depth}, {dt:.1f} s")
    print(f"median 2 {r.states / dt:,.0f}")
    # Peak resident memory of the whole process (the model, the visited set, the frontier).
    print(f"rss 2 {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f}")


if __name__ == "__main__":
    main()
