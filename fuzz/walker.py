"""A seeded random walker over the model: the baseline the fuzzer and the explorer are measured
against. Each walk starts from the initial state and takes up to ``depth`` steps, each chosen
uniformly among the enabled actions; the first violating walk is minimised like a fuzz finding.
No Hypothesis, so its throughput is the model's own (``bench/bench_model.py``)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import attrs

from protocol import World
from protocol.search import fewer_cpus

if TYPE_CHECKING:
    from collections.abc import Sequence

    from protocol import Action, Config, Variant


@attrs.frozen
class WalkResult:
    schedule: list[Action] | None  # minimised, if a walk broke a property
    config: Config
    walks: int
    steps: int
    found_length: int = 0


def random_walk(
    variant: Variant,
    config: Config,
    props: Sequence[str],
    seed: int,
    walks: int = 10_000,
    depth: int = 20,
) -> WalkResult:
    rng = random.Random(seed)
    steps = 0
    for n in range(1, walks + 1):
        w = World.initial(variant, config)
        schedule: list[Action] = []
        for _ in range(depth):
            acts = w.enabled_actions()
            if not acts:
                break
            a = acts[rng.randrange(len(acts))]
            w.apply(a)
            schedule.append(a)
            steps += 1
            if w.violations(props):
                small_config, small = fewer_cpus(variant, config, schedule, props)
                return WalkResult(small, small_config, n, steps, len(schedule))
    return WalkResult(None, config, walks, steps)
