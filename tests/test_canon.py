"""One race, one name: every spelling of a race canonicalises to one schedule and config."""

from __future__ import annotations

import itertools

import pytest

from tests.schedules import ALL_SCHEDULES
from tlbfuzz.fuzz.canon import ACCESSES, canonical, rename
from tlbfuzz.fuzz.corpus import Entry, file_name
from tlbfuzz.protocol import VARIANTS, Action, Budget, Config, World, parse
from tlbfuzz.protocol.search import first_violation

RACE = [  # the README's finding: rfc-async-posted breaks no_use_after_free in 8 steps
    "cpu0 {fill} va=0x1000",
    "cpu1 madvise_dontneed va=0x1000",
    "cpu1 zap_pte_range",
    "cpu1 tlb_finish_mmu__mm_tlb_flush_nested",
    "cpu1 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu1 native_flush_tlb_multi__send_ipis",
    "cpu1 flush_tlb_mm_range__flush_tlb_func_local",
    "cpu1 tlb_finish_mmu",
    "cpu0 {use} va=0x1000",
]
VARIANT = VARIANTS["rfc-async-posted"]
PROP = "no_use_after_free"


def spellings() -> list[tuple[Config, list[str]]]:
    """The race with every fill and use kind that breaks the property (an NMI too: two runs
    of the main job found it with an NMI and with a fill caching the entry), each CPU
    numbering, under the default and a larger budget."""
    out = []
    for fill, use, swap, budget in itertools.product(
        ACCESSES, ACCESSES, (False, True), (Budget(), Budget(munmap=2, switch=3, ipi=2))
    ):
        actions = [parse(s.format(fill=fill, use=use)) for s in RACE]
        if swap:
            actions = rename(actions, [1, 0])
        config = Config(cpus=2, budget=budget)
        hit = first_violation(World.initial(VARIANT, config), actions, [PROP])
        if hit is not None and hit[0] == len(actions):
            out.append((config, [str(a) for a in actions]))
    return out


def test_every_spelling_of_one_race_gets_one_name() -> None:
    names = set()
    forms = spellings()
    assert len(forms) >= 8  # several fill and use kinds break it, in both numberings
    for config, schedule in forms:
        c, s = canonical(VARIANT, config, [parse(x) for x in schedule], PROP)
        names.add(file_name(Entry(VARIANT, VARIANT.name, c, PROP, "violates", tuple(s))))
    assert len(names) == 1, names


def _swaps(start: World, schedule: list[Action], prop: str) -> list[list[Action]]:
    """The schedule with two adjacent steps of different CPUs swapped, wherever that leaves
    the state after both the same and still breaks ``prop`` at the last step only."""
    out = []
    for i in range(len(schedule) - 1):
        a, b = schedule[i], schedule[i + 1]
        if a.cpu == b.cpu:
            continue
        swapped = [*schedule[:i], b, a, *schedule[i + 2 :]]
        hit = first_violation(start, swapped, [prop])
        if hit is None or hit[0] != len(schedule):
            continue
        one, two = start.copy().run(schedule[: i + 2]), start.copy().run(swapped[: i + 2])
        if one.snapshot() == two.snapshot():
            out.append(swapped)
    return out


@pytest.mark.parametrize("c", ALL_SCHEDULES, ids=lambda c: c.key)
def test_independent_steps_in_either_order_get_one_name(c: object) -> None:
    from tests.schedules import Concern

    assert isinstance(c, Concern)
    variant = VARIANTS[c.variant]
    start = World.initial(variant, c.config)
    schedule = [parse(s) for s in c.schedule]
    for swapped in _swaps(start, schedule, c.prop):
        assert canonical(variant, c.config, swapped, c.prop) == canonical(
            variant, c.config, schedule, c.prop
        )


def test_some_review_schedule_has_independent_steps() -> None:
    """The test above is not empty: concern 6b's lazy CPU may enter lazy mode before or after
    the munmap starts."""
    (c,) = [c for c in ALL_SCHEDULES if c.key == "6b-page-table-freed-lazy-cpu"]
    start = World.initial(VARIANTS[c.variant], c.config)
    assert _swaps(start, [parse(s) for s in c.schedule], c.prop)


@pytest.mark.parametrize("c", ALL_SCHEDULES, ids=lambda c: c.key)
def test_the_canonical_form_still_breaks_at_its_last_step(c: object) -> None:
    from tests.schedules import Concern

    assert isinstance(c, Concern)
    variant = VARIANTS[c.variant]
    config, schedule = canonical(variant, c.config, [parse(s) for s in c.schedule], c.prop)
    assert len(schedule) == len(c.schedule)
    hit = first_violation(World.initial(variant, config), schedule, [c.prop])
    assert hit is not None
    assert hit[0] == len(schedule)


def test_a_schedule_that_does_not_break_is_left_alone() -> None:
    actions = [parse("cpu0 tlb_fill va=0x1000")]
    assert canonical(VARIANT, Config(), actions, PROP) == (Config(), actions)


def test_canonical_naming_is_cheap() -> None:
    """It runs once per finding; with 4 CPUs it tries 24 renamings."""
    import time

    actions = [parse(s.format(fill="user_write", use="user_write")) for s in RACE]
    t0 = time.perf_counter()
    canonical(VARIANT, Config(cpus=4), actions, PROP)
    assert time.perf_counter() - t0 < 1.0


def test_canonical_skips_cpu_renamings_that_per_cpu_budgets_forbid() -> None:
    """Only cpu0 may run clear_refs (``--budget cpu0:clear_refs=1``): the renaming that gives
    it to cpu1 is not a schedule of this config. canonical() applied it anyway and raised
    ActionNotEnabled, so `tlbfuzz fuzz --budget cpu0:...` crashed on its first finding."""
    from tests.schedules import MECHANISMS

    m = next(m for m in MECHANISMS if m.key == "clear-refs-flush-before-return")
    config = Config(budget=Budget.only(), cpu_budget=((0, Budget.only(clear_refs=1)),))
    schedule = [parse(s) for s in m.schedule]
    _, got = canonical(m.moved, config, schedule, m.prop)
    assert [str(a) for a in got] == list(m.schedule)
