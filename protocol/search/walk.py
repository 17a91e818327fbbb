"""Random walks over the model: the baseline the fuzzer and the explorer are measured against.

Each walk starts from the initial state and takes up to ``depth`` steps; the first violating
walk is minimised like a fuzz finding. The randomness comes from outside (``rng``: anything with
``random.Random``'s ``randrange``, ``shuffle``, ``sample`` and ``randint``; ``fuzz/walker.py``
passes a seeded one), so this module stays pure. No Hypothesis: a walker's throughput is the
model's own (``bench/bench_model.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import attrs

from tlbfuzz.protocol.search.reduce import fewer_cpus
from tlbfuzz.protocol.world import World

if TYPE_CHECKING:
    from collections.abc import Callable, MutableSequence, Sequence

    from tlbfuzz.protocol.actions import Action
    from tlbfuzz.protocol.config import Config
    from tlbfuzz.protocol.variants import Variant


class Rng(Protocol):
    """The random source a walk draws from (``random.Random`` is one)."""

    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int: ...
    def shuffle(self, x: MutableSequence[Any]) -> None: ...
    def sample(self, population: Sequence[int], k: int) -> list[int]: ...
    def randint(self, a: int, b: int) -> int: ...


@attrs.frozen
class WalkResult:
    schedule: list[Action] | None  # minimised, if a walk broke a property
    config: Config
    walks: int
    steps: int
    found_length: int = 0


def _walks(
    variant: Variant,
    config: Config,
    props: Sequence[str],
    walks: int,
    depth: int,
    new_walk: Callable[[World], Callable[[World, int], Action | None]],
) -> WalkResult:
    """Up to ``walks`` walks of up to ``depth`` steps from the initial state; ``new_walk``
    makes each walk's chooser, which picks step ``i``'s action (None: stop the walk)."""
    steps = 0
    for n in range(1, walks + 1):
        w = World.initial(variant, config)
        choose = new_walk(w)
        schedule: list[Action] = []
        for i in range(depth):
            a = choose(w, i)
            if a is None:
                break
            w.apply(a)
            schedule.append(a)
            steps += 1
            if w.violations(props):
                small_config, small = fewer_cpus(variant, config, schedule, props)
                return WalkResult(small, small_config, n, steps, len(schedule))
    return WalkResult(None, config, walks, steps)


def random_walk(
    variant: Variant,
    config: Config,
    props: Sequence[str],
    rng: Rng,
    walks: int = 10_000,
    depth: int = 20,
) -> WalkResult:
    """Each step uniform among the enabled actions."""

    def uniform(_: World) -> Callable[[World, int], Action | None]:
        def choose(w: World, _i: int) -> Action | None:
            acts = w.enabled_actions()
            return acts[rng.randrange(len(acts))] if acts else None

        return choose

    return _walks(variant, config, props, walks, depth, uniform)


def pct_walk(
    variant: Variant,
    config: Config,
    props: Sequence[str],
    rng: Rng,
    walks: int = 10_000,
    depth: int = 20,
    max_changes: int = 4,
) -> WalkResult:
    """PCT-style priority scheduling (Burckhardt et al., ASPLOS 2010) over the per-CPU lanes.

    Each walk gives every lane (CPU, and the page allocator) a distinct random priority and
    draws ``d - 1`` priority-change points among the ``depth`` steps, ``d`` uniform in
    1..``max_changes`` + 1. At each step the highest-priority lane with an enabled action
    takes one of its actions (uniformly); at the i-th change point the lane that just ran
    drops below every other. A lane never blocks here (a CPU can always take a TLB fill), so
    a walk is a few long runs of one CPU each: the shape of the review's races, where one
    CPU stays put while another runs a whole flush.
    """

    def prioritised(w: World) -> Callable[[World, int], Action | None]:
        prio = list(range(len(w.enabled_by_lane())))
        rng.shuffle(prio)
        changes = set(rng.sample(range(depth), rng.randint(0, max_changes)))
        low = [-1]

        def choose(w: World, i: int) -> Action | None:
            live = [
                (prio[k], k, acts)
                for k, cats in enumerate(w.enabled_by_lane())
                if (acts := [a for cat in cats for a in cat])
            ]
            if not live:
                return None
            _, lane, acts = max(live, key=lambda t: t[0])
            if i in changes:  # this lane runs now, then drops below every other
                prio[lane] = low[0]
                low[0] -= 1
            return acts[rng.randrange(len(acts))]

        return choose

    return _walks(variant, config, props, walks, depth, prioritised)
