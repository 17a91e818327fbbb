"""The random walkers that the race benchmark measures the fuzzer against: seeded, so a seed
gives the same walk; a finding comes back minimised and replays; a correct variant stays
clean."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.schedules import MINIMAL_SHAPES
from tlbfuzz.fuzz.walker import WalkResult, pct_walk, random_walk
from tlbfuzz.protocol import VARIANTS, Config, World
from tlbfuzz.protocol.search import ddmin, first_violation

Walk = Callable[..., WalkResult]
WALKERS: list[Walk] = [random_walk, pct_walk]


@pytest.mark.parametrize("walk", WALKERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("variant", "prop"),
    [
        ("flush-no-gen-check", "tlb_gen_soundness"),
        ("lazy-skip-freed-tables", "no_walk_of_freed_page_table"),
    ],
)
def test_a_walker_finds_a_race_and_reports_it_minimised(
    walk: Walk, variant: str, prop: str
) -> None:
    # What is checked is the finding, not the walker's power (bench/bench_race.py measures
    # that): the first finding in ten seeds. The random walk finds the switch window in
    # about 3 seeds of 20 at 3000 walks since munmap's gather is a step of its own, and
    # tlb_gen in one of these ten.
    r = next(
        (
            r
            for seed in range(10)
            if (r := walk(VARIANTS[variant], Config(cpus=2), [prop], seed, walks=3000)).schedule
        ),
        None,
    )
    assert r is not None and r.schedule is not None, f"{walk} missed {variant} {prop} in 10 seeds"
    start = World.initial(VARIANTS[variant], r.config)
    hit = first_violation(start, r.schedule, [prop])
    assert hit is not None and hit[0] == len(r.schedule)
    assert len(ddmin(start, r.schedule, [prop])) == len(r.schedule)  # 1-minimal
    assert len(r.schedule) in MINIMAL_SHAPES[(variant, prop)]


@pytest.mark.parametrize("walk", WALKERS, ids=lambda f: f.__name__)
def test_a_seed_gives_the_same_walks(walk: Walk) -> None:
    a = walk(
        VARIANTS["lazy-skip-freed-tables"],
        Config(cpus=2),
        ["no_walk_of_freed_page_table"],
        7,
        walks=500,
    )
    b = walk(
        VARIANTS["lazy-skip-freed-tables"],
        Config(cpus=2),
        ["no_walk_of_freed_page_table"],
        7,
        walks=500,
    )
    assert a == b


@pytest.mark.parametrize("walk", WALKERS, ids=lambda f: f.__name__)
def test_a_correct_variant_stays_clean(walk: Walk) -> None:
    r = walk(VARIANTS["linux-current"], Config(cpus=2), ["no_use_after_free"], 0, walks=200)
    assert r.schedule is None
    assert r.walks == 200 and r.steps > 200
