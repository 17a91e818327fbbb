"""The mm layer's orderings doing their job (tests/schedules.py: MECHANISMS): the same schedule
breaks the kernel with the ordering moved, the kernel's own ordering refuses it or holds, and
the explorer confirms the moved one is the shortest."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.cli import main
from protocol import DEFAULT_PROPERTIES, Budget, Config, World, parse
from protocol.search import bfs, first_violation, symmetric_fingerprint
from tests.schedules import MECHANISMS, Mechanism

ROOT = Path(__file__).resolve().parent.parent


def _key(m: Mechanism) -> str:
    return m.key


def _config(m: Mechanism) -> Config:
    return Config(budget=Budget.only(**m.budget), reuse=False)


@pytest.mark.parametrize("m", MECHANISMS, ids=_key)
def test_the_schedule_breaks_the_kernel_with_the_ordering_moved(m: Mechanism) -> None:
    start = World.initial(m.moved, _config(m))
    hit = first_violation(start, [parse(s) for s in m.schedule], [m.prop])
    assert hit is not None, f"{m.moved.name} holds {m.prop} on this schedule"
    assert hit[0] == len(m.schedule)


@pytest.mark.parametrize("m", MECHANISMS, ids=_key)
def test_the_kernels_own_ordering_refuses_or_survives_the_schedule(m: Mechanism) -> None:
    w = World.initial(m.kernel, _config(m))
    for i, line in enumerate(m.schedule):
        a = parse(line)
        if i == m.blocked_at:
            assert not w.is_enabled(a), f"{m.kernel.name} allows step {i}: {line}"
            return
        assert w.is_enabled(a), f"step {i} {line!r} is not enabled on {m.kernel.name}"
        w.apply(a)
    assert m.blocked_at is None
    assert not w.violations([m.prop]), w.violations([m.prop])


@pytest.mark.slow
@pytest.mark.parametrize("m", MECHANISMS, ids=_key)
def test_the_moved_schedule_is_the_shortest(m: Mechanism) -> None:
    r = bfs(World.initial(m.moved, _config(m)), [m.prop], 20, key=symmetric_fingerprint)
    assert r.schedule is not None
    assert len(r.schedule) == len(m.schedule), [str(a) for a in r.schedule]


@pytest.mark.nightly
@pytest.mark.parametrize("m", [m for m in MECHANISMS if "switch" not in m.budget], ids=_key)
def test_the_kernel_holds_every_default_property_with_that_budget(m: Mechanism) -> None:
    """A proof over the whole reachable space (without a context switch the 5.2 switch window
    cannot open): hundreds of thousands of states, so nightly."""
    r = bfs(World.initial(m.kernel, _config(m)), DEFAULT_PROPERTIES, 200, key=symmetric_fingerprint)
    assert r.violation is None, [str(a) for a in r.schedule or []]
    assert r.exhausted


EXAMPLES = [
    ("before_99baac21.py", "madvise=1", "no_stale_access_after_return", 6),
    ("flush_after_unlock.py", "madvise=1,writeback=1", "no_lost_write", 5),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "budget", "prop", "length"), EXAMPLES)
def test_an_example_file_moves_one_decision_and_breaks_what_the_kernel_holds(
    name: str, budget: str, prop: str, length: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's commands: a variant file of at most 40 lines, nothing in protocol/
    edited; the unmoved kernel holds that property with that budget
    (test_the_kernel_holds_every_default_property_with_that_budget)."""
    path = ROOT / "examples" / name
    assert len(path.read_text().splitlines()) <= 40
    argv = ["explore", "-v", f"{path}:VARIANT", "--budget", budget, "-p", prop]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert f"{prop}: {length} steps" in " ".join(out.split())
