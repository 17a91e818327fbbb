"""bench/bench_race.py --rows mm: a seed counts for a moved ordering only when what it found is
that ordering's race, not a race the kernel without the move has too (a moved 5.2 keeps 5.2's
switch window, which breaks the same property in fewer steps)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from bench.bench_race import the_moved_race
from tests.schedules import MECHANISMS, SWITCH_WINDOW_5_2, TSO_ORDERINGS
from tests.test_mm import _config, _key
from tlbfuzz.protocol import World, parse
from tlbfuzz.protocol.search import first_violation

if TYPE_CHECKING:
    from tests.schedules import Mechanism


@pytest.mark.parametrize("m", [*MECHANISMS, *TSO_ORDERINGS], ids=_key)
def test_a_mechanisms_own_schedule_is_the_moved_race(m: Mechanism) -> None:
    config = World.initial(m.moved, _config(m)).config
    assert the_moved_race(m, config, [parse(s) for s in m.schedule])


def test_the_5_2_switch_window_on_a_moved_5_2_is_the_kernels_own_race() -> None:
    (m,) = [m for m in MECHANISMS if m.key == "gup-fast-walks-with-irqs-off-on-5.2"]
    assert m.kernel.name == "linux-5.2"
    assert m.prop == SWITCH_WINDOW_5_2.prop
    config = World.initial(m.moved, SWITCH_WINDOW_5_2.config).config
    schedule = [parse(s) for s in SWITCH_WINDOW_5_2.schedule]
    assert first_violation(World.initial(m.moved, config), schedule, [m.prop]) is not None
    assert not the_moved_race(m, config, schedule)
