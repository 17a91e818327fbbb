"""What partial-order reduction with sleep sets could give the explorer, at most, measured.

Issue 12 asks to try sleep sets (Godefroid, "Partial-Order Methods for the Verification of
Concurrent Systems", LNCS 1032, 1996, ch. 5) where steps really commute, and to keep them
only if they pay. Sleep sets visit every reachable state (unlike persistent sets, so every
state property is still checked on every state) and save *transitions*: after exploring
``a`` then ``b`` from ``x``, the state ``x·b·a`` is ``x·a·b`` when the two commute, so ``a``
sleeps in ``x·b``. The breadth-first explorer takes six to seven transitions per new state on
issue 12's question (the rest lead to states already seen), and a transition is most of its
time, so the question is how many of those a sleep set removes.

This script answers it with an oracle, an upper bound for sleep sets explored in this order
(the enabled actions in the model's order) with this wake-up scheme:

1. **Exact sleep sets.** A breadth-first search with sleep sets and state caching
   (Godefroid's algorithm: a state reached again with a smaller sleep set explores what woke
   up) in which two actions are independent at ``x`` exactly when both orders are enabled and
   reach the same snapshot (``x·a·b == x·b·a``), found by trying both. A real implementation
   would need a cheaper, conservative independence relation (read and write sets of records),
   so it can only sleep less, and it would pay for working that relation out. The extra
   transitions of these checks are not counted. The
   search must reach exactly the plain search's states, each at its plain depth (the
   shortest schedules the corpus tests rely on): the script checks both and stops if not.
2. **The time it could save.** The same breadth-first loop as ``protocol/search/bfs.py``
   (collapsed keys, every default property and window checked on each new state, the enabled
   actions computed for each state expanded) is timed in one process, alternately: taking
   every enabled action, and taking only the actions the oracle explored at that state
   (looked up by key). The ratio of their states per second is the most sleep sets explored
   this way could gain on this question.

    python -m bench.bench_sleep                       # issue 12's question, depth 7
    python -m bench.bench_sleep --depth 6 --variant rfc-async
    python -m bench.bench_sleep --depth 5 --cpus 3
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections import deque
from typing import TYPE_CHECKING

from tlbfuzz.protocol import DEFAULT_PROPERTIES, VARIANTS, Budget, Config, World
from tlbfuzz.protocol.search.bfs import Collapse, Memo
from tlbfuzz.protocol.windows import WINDOWS, windows_of

if TYPE_CHECKING:
    from tlbfuzz.protocol.actions import Action

Key = tuple[int, ...]


def _step(x: World, a: Action) -> World:
    y = x.copy()
    y.apply_enabled(a)
    return y


class Oracle:
    """Breadth-first search with exact sleep sets; per state, the actions it explored."""

    def __init__(self, start: World, depth: int) -> None:
        self.keys = Collapse()
        self.explored: dict[Key, list[Action]] = {}
        self.depths: dict[Key, int] = {}
        self.transitions = 0  # the search's own, not the independence checks
        self.checks = 0
        self.woken = 0  # actions explored again because a state came back less asleep
        self._run(start, depth)

    def _independent(self, xa: World, xb: World, a: Action, b: Action) -> bool:
        self.checks += 1
        if b not in xa.enabled_actions() or a not in xb.enabled_actions():
            return False
        return bool(_step(xa, b).snapshot() == _step(xb, a).snapshot())

    def _run(self, start: World, max_depth: int) -> None:
        k0, m0 = self.keys.key(start, None)
        worlds: dict[Key, tuple[World, Memo]] = {k0: (start, m0)}
        sleep: dict[Key, frozenset[Action]] = {k0: frozenset()}
        done: set[Key] = set()
        self.depths[k0] = 0
        level: list[tuple[Key, frozenset[Action] | None]] = [(k0, None)]
        for d in range(max_depth):
            nxt: list[tuple[Key, frozenset[Action] | None]] = []
            for k, only in level:
                x, memo = worlds[k]
                z = sleep[k]
                todo = [a for a in x.enabled_actions() if a not in z]
                if only is not None:  # woken up: explore just these
                    todo = [a for a in todo if a in only]
                    self.woken += len(todo)
                done.add(k)
                explored: list[Action] = []
                tried: dict[Action, World] = {}
                for a in todo:
                    y = _step(x, a)
                    self.transitions += 1
                    self.explored.setdefault(k, []).append(a)
                    # the key first: copying y (below) clears the record bits it reads
                    ky, my = self.keys.key(y, memo)
                    zy = set()
                    for c in (*z, *explored):
                        xc = tried.get(c)
                        if xc is None:
                            xc = tried[c] = _step(x, c)
                        if self._independent(y, xc, a, c):
                            zy.add(c)
                    explored.append(a)
                    tried[a] = y
                    fz = frozenset(zy)
                    if ky not in worlds:
                        worlds[ky] = (y, my)
                        sleep[ky] = fz
                        self.depths[ky] = d + 1
                        nxt.append((ky, None))
                    elif ky not in done:
                        sleep[ky] &= fz
                    elif sleep[ky] - fz:
                        woke = sleep[ky] - fz
                        sleep[ky] &= fz
                        nxt.append((ky, woke))
            level = nxt


def plain_depths(start: World, max_depth: int, keys: Collapse) -> dict[Key, int]:
    """Every state within ``max_depth`` steps and its least depth (plain BFS)."""
    k0, m0 = keys.key(start, None)
    depths = {k0: 0}
    level = [(start, m0)]
    for d in range(max_depth):
        nxt = []
        for x, memo in level:
            for a in x.enabled_actions():
                y = _step(x, a)
                ky, my = keys.key(y, memo)
                if ky not in depths:
                    depths[ky] = d + 1
                    nxt.append((y, my))
        level = nxt
    return depths


def timed(
    start: World, max_depth: int, keys: Collapse, only: dict[Key, list[Action]] | None
) -> tuple[int, int, float]:
    """``bfs()``'s loop (collapsed keys, properties and windows on each new state), taking
    every enabled action or, with ``only``, the oracle's; (states, transitions, seconds)."""
    props = tuple(DEFAULT_PROPERTIES)
    checks = [WINDOWS[n].reached for n in windows_of(start)]
    t0 = time.perf_counter()
    k0, m0 = keys.key(start, None)
    seen = {k0}
    frontier = deque([(start, m0, k0, 0)])
    transitions = 0
    while frontier:
        x, memo, k, d = frontier.popleft()
        if d >= max_depth:
            continue
        acts = x.enabled_actions()  # a real search with sleep sets needs them too
        if only is not None:
            acts = only.get(k, [])
        for a in acts:
            y = _step(x, a)
            transitions += 1
            ky, my = keys.key(y, memo)
            if ky in seen:
                continue
            seen.add(ky)
            for inside in checks:
                inside(y)
            y.violations(props)
            frontier.append((y, my, ky, d + 1))
    return len(seen), transitions, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_sleep", description=__doc__)
    ap.add_argument("--variant", default="linux-5.2")
    ap.add_argument("--budget", default="madvise=1", help="KIND=N,... for every CPU")
    ap.add_argument("--depth", type=int, default=7)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of each, alternately")
    args = ap.parse_args()
    budget = {k: int(n) for k, _, n in (s.partition("=") for s in args.budget.split(","))}
    config = Config(cpus=args.cpus, budget=Budget.only(**budget), reuse=False)
    start = World.initial(VARIANTS[args.variant], config)
    t0 = time.perf_counter()
    oracle = Oracle(start, args.depth)
    print(f"{args.variant} --budget {args.budget}, {args.cpus} CPUs, depth {args.depth}")
    print(f"oracle: {time.perf_counter() - t0:.1f} s, {oracle.checks:,} independence checks")
    plain = plain_depths(start, args.depth, oracle.keys)
    if plain != oracle.depths:
        lost = len(plain.keys() - oracle.depths.keys())
        deeper = sum(1 for k, n in oracle.depths.items() if plain.get(k) != n)
        raise SystemExit(f"sleep sets lost {lost} states and moved {deeper}: not sound here")
    print(f"same {len(plain):,} states at the same depths as the plain search")
    full: list[float] = []
    slept: list[float] = []
    n = t_full = t_slept = 0
    rounds = max(args.rounds, 1)
    for i in range(rounds):
        for only in (None, oracle.explored) if i % 2 == 0 else (oracle.explored, None):
            gc.collect()
            states, transitions, seconds = timed(start, args.depth, oracle.keys, only)
            if states != len(plain):
                raise SystemExit(f"the timed search visited {states} states, not {len(plain)}")
            n = states
            if only is None:
                t_full = transitions
                full.append(seconds)
            else:
                t_slept = transitions
                slept.append(seconds)
    if t_slept != oracle.transitions:
        raise SystemExit(f"{t_slept} transitions timed, the oracle took {oracle.transitions}")
    a, b = statistics.median(full), statistics.median(slept)
    print(f"transitions per state: plain {t_full / n:.2f}, sleep sets {t_slept / n:.2f}")
    print(f"  (of which woken again: {oracle.woken:,})")
    print(f"states/s, median of {rounds}: plain {n / a:,.0f}, with the oracle's sleep sets")
    print(f"  {n / b:,.0f}: at most {a / b:.2f} times faster")


if __name__ == "__main__":
    main()
