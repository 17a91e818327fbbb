"""A race between search strategies on the review's concerns (2 CPUs, default budgets), and
on the mm layer's orderings.

The rows (``--rows``):

- ``review`` (default): ``tests/schedules.py: RACES``, the shortest race of each (variant,
  property) of the review, and concern 4's own race with the 2019 switch window closed;
- ``mm``: ``tests/schedules.py: MECHANISMS``, each ordering of the mm layer moved (the
  ``moved`` variant, a patch as a reviewer would write it in a variant file) and the property
  the move breaks. They run as ``tlbfuzz fuzz -v FILE:VARIANT`` runs a reviewer's file: the
  search is steered to the kinds of path that reach the changed decision, the model has the
  mechanism's shape (``--mms 1`` and the like) and CPU count (2 unless it needs 3), and the
  budgets are the defaults. ``min`` is the shortest schedule under the mechanism's own small
  budgets (``tests/test_mm.py`` proves it); the defaults can allow a shorter one. A seed
  counts as found only if its minimised schedule does not break the kernel with the ordering
  in place (replayed on ``kernel``): a moved 5.2 also has 5.2's switch window, and what a seed
  found first there is counted under ``kernel own`` instead. Strategies ``swarm`` and
  ``hyp-ci`` only.
- ``tso``: ``tests/schedules.py: TSO_ORDERINGS``, each barrier of the lazy-TLB handshake taken
  out, run as the ``mm`` rows are, in its shape (``--memory-model tso`` and the sizes the
  handshake lives in); ``tests/test_tso.py`` proves ``min``.

  For these rows, strategy ``narrowed`` is the narrowed search ``tlbfuzz fuzz`` runs on a
  patch the fuzzer held (``fuzz/narrow.py``), alone, at the ``ci`` profile's budget of
  unique states (``narrow.NARROW_STATES``; ``--narrow-states N`` for another, nightly's
  300,000 say): one deterministic run per row, its cell the
  states spent (``execs`` and ``steps``), the seconds, and the length of what it found, or
  0/1 where the budget ran out or every model held. ``swarm`` and ``hyp-ci`` run without it,
  as the fuzzer alone.

Every random strategy gets the same fixed budget of model steps per seed (``--steps``,
30,000 by default) and runs over ``--seeds`` seeds; a seed that spends its budget without a
violation is a miss. Per concern and strategy: seeds that found a violation, median seconds,
executions (examples or walks) and model steps to the first failure (minimisation included
in the time), and the shortest length reported after minimisation.

- ``swarm``: what the ``ci`` profile runs (``fuzz/swarm.py``): Hypothesis draws a plan (focus,
  scheduler, seed) per example and the model walks it, 30 steps, ``steps / 30`` examples,
  seeded (an explicit seed overrides ``derandomize``); ``swarm@N``: N walks per plan;
- ``hyp-ci``: the rule machine (``fuzz/machine.py``, the ``dev`` and ``nightly`` profiles'
  search) with the ``ci`` profile's settings (30-step examples), ``steps / 30`` examples;
- ``hyp-nightly``: the ``nightly`` profile's 50-step examples, ``steps / 50`` examples, with
  Hypothesis's own shrinker off like every other column
  (``tlbfuzz.protocol.search.minimise`` runs on every strategy's finding alike; the nightly
  shrinker only polishes what was found);
- ``hyp-PROFILE@N`` (on request, ``--strategies``): that profile with N-step examples;
- ``walker``: the uniform random walker (``fuzz/walker.py``), 20-step walks;
- ``pct``: PCT-style priority scheduling over the CPU lanes (``fuzz/walker.py: pct_walk``);
- ``bfs``: breadth-first search with symmetry reduction over the budgets the concern needs
  (``tests/test_explore.py: NEEDS``), one deterministic run.

    python -m bench.bench_race --seeds 20 --jobs 2        # the README's table
    python -m bench.bench_race --seeds 20 --jobs 2 --rows mm --strategies swarm
    python -m bench.bench_race --seeds 20 --jobs 2 --rows tso --strategies swarm
    python -m bench.bench_race --jobs 2 --rows mm --strategies narrowed
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from hypothesis import settings as Settings

from tests.schedules import MECHANISMS, RACE_VARIANTS, RACES, TSO_ORDERINGS, Mechanism
from tests.test_explore import NEEDS, config
from tlbfuzz.fuzz.changes import Otherwise, asking_kinds, changes_of, steered_kinds
from tlbfuzz.fuzz.narrow import NARROW_STATES, how_far, ran_kinds
from tlbfuzz.fuzz.narrow import search_shapes as narrow
from tlbfuzz.fuzz.profiles import NO_SHRINK, PROFILES, Engine
from tlbfuzz.fuzz.runner import Finding, fuzz_variant, run_swarm
from tlbfuzz.fuzz.swarm import WALKS_PER_PLAN
from tlbfuzz.fuzz.walker import pct_walk, random_walk
from tlbfuzz.protocol import VARIANTS, Action, Config, World
from tlbfuzz.protocol.search import Collapse, bfs, fewer_cpus, replayed

if TYPE_CHECKING:
    from collections.abc import Sequence

RANDOM: Final = ("swarm", "hyp-ci", "hyp-nightly", "walker", "pct")


class Trial(NamedTuple):
    """One seed of one strategy on one row."""

    found: bool
    seconds: float  # to the first failure, minimisation included
    executions: int
    steps: int
    length: int  # after minimisation
    own: bool = False
    """Moved orderings' rows: what was found first breaks the kernel without the move too
    (5.2's switch window, say): not the moved ordering's race, so not counted as found."""
    reached: str = ""
    """``narrowed``: how far it searched (models, those searched whole, the depths of the
    others, states, seconds), printed after the row."""


class Row(NamedTuple):
    """A row of the table: what is printed first, and what ``trial`` runs."""

    label: str
    prop: str
    min: int
    moved: bool = False  # ``label`` is the key of an ordering (``MOVED``): its moved variant


MOVED: Final = {"mm": MECHANISMS, "tso": TSO_ORDERINGS}
"""The rows of moved orderings, by ``--rows``."""


def rows(which: str) -> list[Row]:
    """The rows ``--rows`` names, from the tests' own tables (nothing listed here)."""
    if which == "review":
        return [Row(v, p, n) for (v, p), n in RACES.items()]
    return [Row(m.key, m.prop, len(m.schedule), moved=True) for m in MOVED[which]]


def mm_trial(key: str, strategy: str, seed: int, budget: int) -> Trial:
    """A mechanism's moved variant fuzzed as ``tlbfuzz fuzz`` fuzzes a reviewer's file (the
    search steered to the changed decision), in the mechanism's shape, with the ``ci``
    profile's engine (``swarm``) or the rule machine (``hyp-ci``)."""
    m = next(m for ms in MOVED.values() for m in ms if m.key == key)
    shape: dict[str, Any] = dict(m.shape)
    cpus = shape.pop("cpus", 2)
    per = PROFILES["ci"].stateful_step_count
    s = Settings(PROFILES["ci"], max_examples=budget // per, phases=NO_SHRINK, database=None)
    engine: Engine = "swarm" if strategy == "swarm" else "machine"
    t0 = time.perf_counter()
    (o,) = fuzz_variant(
        m.moved,
        [m.prop],
        settings=s,
        seed=seed,
        cpus=cpus,
        shape=shape,
        engine=engine,
        narrow_states=0,  # the fuzzer alone: the narrowed search is a column of its own
    )
    if isinstance(o, Finding):
        seconds = time.perf_counter() - t0
        own = not the_moved_race(m, o.config, o.schedule)
        return Trial(not own, seconds, o.examples, o.steps, len(o.schedule), own)
    return Trial(False, 0.0, o.examples, o.steps, 0)


def narrowed_trial(key: str, states: int = NARROW_STATES["ci"]) -> Trial:
    """A mechanism's moved variant given the narrowed search alone, as ``fuzz`` gives it
    after the fuzzer holds: the probe's questions in the mechanism's shape, at ``states``
    (the ``ci`` budget; ``--narrow-states``). Only a race of the moved ordering counts
    (``the_moved_race``)."""
    m = next(m for ms in MOVED.values() for m in ms if m.key == key)
    shape: dict[str, Any] = dict(m.shape)
    changes = changes_of(m.moved)
    if changes is None or shape.get("cpus", 2) != 2:  # the questions are of 2 CPUs
        return Trial(False, 0.0, 0, 0, 0)
    t0 = time.perf_counter()
    reach = asking_kinds(m.moved, changes)
    ran = ran_kinds(m.moved, steered_kinds(m.moved, reach, shape))
    otherwise = Otherwise.of(m.moved, changes)
    n = narrow(m.moved, reach, shape, [m.prop], states, ran, otherwise)
    qs = n.questions
    seconds = time.perf_counter() - t0
    rest = how_far(len(qs), len(n.exhausted), n.unfinished) + (
        " (the budget ran out)" if n.cut and len(n.exhausted) < len(qs) else ""
    )
    reached = f"{len(qs)} models: {rest}; {n.states:,} states in {seconds:.1f} s"
    b = n.found.get(m.prop)
    if b is None:
        return Trial(False, seconds, n.states, n.states, 0, reached=reached)
    own = not the_moved_race(m, b.question.config, b.schedule)
    reached += f"; in {b.question}"
    return Trial(not own, seconds, n.states, n.states, len(b.schedule), own, reached)


def the_moved_race(m: Mechanism, config: Config, schedule: Sequence[Action]) -> bool:
    """Whether ``schedule``, which breaks ``m.prop`` on ``m.moved``, is a race of the moved
    ordering: the kernel with the ordering in place refuses it or survives it."""
    return replayed(World.initial(m.kernel, config), schedule, [m.prop]).verdict != "breaks"


def trial(variant: str, prop: str, strategy: str, seed: int, budget: int) -> Trial:
    v = RACE_VARIANTS[variant]
    t0 = time.perf_counter()
    if strategy.startswith("hyp-"):
        name, _, steps = strategy.removeprefix("hyp-").partition("@")
        base = PROFILES[name]
        per = int(steps) if steps else base.stateful_step_count
        s = Settings(
            base,
            max_examples=budget // per,
            stateful_step_count=per,
            phases=NO_SHRINK,
            database=None,
        )
        (o,) = fuzz_variant(v, [prop], settings=s, seed=seed, cpus=2, engine="machine")
        if isinstance(o, Finding):
            return Trial(True, time.perf_counter() - t0, o.examples, o.steps, len(o.schedule))
        return Trial(False, 0.0, o.examples, o.steps, 0)
    if strategy.startswith("swarm"):
        per_plan = int(strategy.partition("@")[2] or WALKS_PER_PLAN)
        swarm_settings = Settings(
            PROFILES["ci"],
            max_examples=budget // (per_plan * 30),
            phases=NO_SHRINK,
            database=None,
        )
        err, n_examples, n_steps = run_swarm(
            v, (prop,), swarm_settings, seed, 2, walks_per_plan=per_plan
        )
        if err is not None:
            small = fewer_cpus(v, err.config, err.schedule, [prop])
            return Trial(True, time.perf_counter() - t0, n_examples, n_steps, len(small[1]))
        return Trial(False, 0.0, n_examples, n_steps, 0)
    walk = random_walk if strategy == "walker" else pct_walk
    r = walk(v, Config(cpus=2), [prop], seed, walks=budget // 20)
    if r.schedule is not None:
        return Trial(True, time.perf_counter() - t0, r.walks, r.steps, len(r.schedule))
    return Trial(False, 0.0, r.walks, r.steps, 0)


def bfs_trial(variant: str, prop: str) -> Trial:
    t0 = time.perf_counter()
    start = World.initial(VARIANTS[variant], config(**NEEDS[(variant, prop)]))
    b = bfs(start, [prop], 20, 3_000_000, key=Collapse(symmetric=True))
    n = len(b.schedule) if b.schedule else 0
    return Trial(b.schedule is not None, time.perf_counter() - t0, b.states, b.states, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--steps", type=int, default=30_000, help="model steps per seed")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--rows", choices=("review", *MOVED), default="review")
    ap.add_argument("--only", help="substring of VARIANT:PROPERTY (mm, tso: ORDERING:PROPERTY)")
    ap.add_argument("--strategies", default=",".join((*RANDOM, "bfs")))
    ap.add_argument(
        "--narrow-states",
        type=int,
        default=NARROW_STATES["ci"],
        help="the narrowed strategy's budget of unique states (default: the ci profile's)",
    )
    args = ap.parse_args()
    strategies = args.strategies.split(",")
    if args.rows in MOVED and set(strategies) - {"swarm", "hyp-ci", "narrowed"}:
        ap.error(f"--rows {args.rows} runs the strategies swarm, hyp-ci and narrowed only")
    if args.rows not in MOVED and "narrowed" in strategies:
        ap.error("narrowed runs on a patch's rows only: --rows mm or tso")
    table = [r for r in rows(args.rows) if not args.only or args.only in f"{r.label}:{r.prop}"]
    width = max([24, *(len(r.label) for r in table)])
    print(
        f"{'variant' if args.rows == 'review' else 'ordering':<{width}} {'property':<28} "
        f"{'min':>3} {'strategy':<11} {'found':>6} "
        f"{'med s':>6} {'med execs':>9} {'med steps':>9} {'len':>4}"
        + (f" {'kernel own':>10}" if args.rows in MOVED else ""),
        flush=True,
    )

    def jobs(pool: ProcessPoolExecutor, r: Row, s: str) -> list[Future[Trial]]:
        if r.moved and s == "narrowed":
            return [pool.submit(narrowed_trial, r.label, args.narrow_states)]
        if r.moved:
            return [pool.submit(mm_trial, r.label, s, i, args.steps) for i in range(args.seeds)]
        if s == "bfs":  # no BFS budgets for some rows (tests/test_explore.py: NEEDS)
            return [pool.submit(bfs_trial, r.label, r.prop)] if (r.label, r.prop) in NEEDS else []
        return [pool.submit(trial, r.label, r.prop, s, i, args.steps) for i in range(args.seeds)]

    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {(r, s): jobs(pool, r, s) for r in table for s in strategies}
        for r in table:
            for s in strategies:
                results = [f.result() for f in futures[(r, s)]]
                if not results:
                    continue
                hits = [t for t in results if t.found]
                own = sum(t.own for t in results)
                med = statistics.median
                print(
                    f"{r.label:<{width}} {r.prop:<28} {r.min:>3} {s:<11} "
                    f"{len(hits):>3}/{len(results):<2} "
                    f"{(med(t.seconds for t in hits) if hits else float('nan')):>6.1f} "
                    f"{(med(t.executions for t in hits) if hits else 0):>9.0f} "
                    f"{(med(t.steps for t in hits) if hits else 0):>9.0f} "
                    f"{(min(t.length for t in hits) if hits else 0):>4}"
                    + (f" {own:>10}" if r.moved else ""),
                    flush=True,
                )
                for t in results:
                    if t.reached:
                        print(f"    {t.reached}", flush=True)


if __name__ == "__main__":
    main()
