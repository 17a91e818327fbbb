"""The x86-TSO store buffers (``tlbfuzz.protocol.tso``) and the litmus tests run on them through the
explorer (``tlbfuzz.protocol.litmus``, ``tlbfuzz litmus``): every verdict agrees with the x86-TSO
papers, SC forbids what store buffering allows, and a deliberately broken machine makes a
named test disagree, so the tests can fail."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import attrs
import pytest

from tests.test_state import fields_missing_from_snapshot
from tlbfuzz.fuzz.litmus import run
from tlbfuzz.protocol import tso
from tlbfuzz.protocol.actions import Action
from tlbfuzz.protocol.litmus import (
    ALLOWED,
    BY_NAME,
    EXISTS,
    FORBIDDEN,
    TESTS,
    UNKNOWN,
    Ld,
    LitmusResult,
    LitmusTest,
    LitmusWorld,
    Machine,
    Mem,
    Mfence,
    Reg,
    Sc,
    St,
    Tso,
    TsoDrainAtFence,
    Xadd,
    Xchg,
    explore,
)
from tlbfuzz.protocol.world import ActionNotEnabled

if TYPE_CHECKING:
    from collections.abc import Callable

# --- store buffers ----------------------------------------------------------------------------


def test_a_store_is_buffered_and_forwarded_to_its_own_cpu_only() -> None:
    b = tso.store(tso.empty(2), 0, "x", 1)
    assert b == ((tso.Store("x", 1),), ())
    assert tso.load(b, (), 0, "x") == 1  # its own buffer first
    assert tso.load(b, (), 1, "x") == 0  # the other CPU sees memory
    assert tso.newest(b, 1, "x") is None


def test_a_load_reads_the_newest_buffered_store_to_its_location() -> None:
    b = tso.empty(1)
    for loc, value in (("x", 1), ("y", 5), ("x", 2)):
        b = tso.store(b, 0, loc, value, bound=3)
    assert tso.load(b, (("x", 9),), 0, "x") == 2
    assert tso.load(b, (("x", 9),), 0, "y") == 5
    assert tso.load(b, (("z", 7),), 0, "z") == 7  # nothing buffered: memory


def test_drains_are_fifo_and_write_memory() -> None:
    b = tso.store(tso.store(tso.empty(1), 0, "x", 1), 0, "x", 2)
    b, s = tso.drain_oldest(b, 0)
    assert s == tso.Store("x", 1)
    b, m = tso.drain(b, tso.write((), s.loc, s.value), 0)
    assert m == (("x", 2),)
    assert tso.drained(b)
    with pytest.raises(tso.TsoError, match="empty"):
        tso.drain_oldest(b, 0)


def test_a_full_buffer_disables_stores() -> None:
    b = tso.empty(2)
    for v in range(tso.DEFAULT_BOUND):
        assert tso.can_store(b, 0)
        b = tso.store(b, 0, "x", v)
    assert not tso.can_store(b, 0)
    assert tso.can_store(b, 1)  # per CPU
    with pytest.raises(tso.TsoError, match="full"):
        tso.store(b, 0, "x", 9)
    assert tso.can_store(b, 0, bound=tso.DEFAULT_BOUND + 1)


def test_fences_and_locked_instructions_wait_for_an_empty_buffer() -> None:
    b = tso.store(tso.empty(2), 0, "x", 1)
    assert not tso.can_fence(b, 0)
    assert not tso.can_lock(b, 0)
    assert tso.can_fence(b, 1)
    assert tso.pending(b) == (0,)
    with pytest.raises(tso.TsoError, match="not empty"):
        tso.locked_rmw(b, (), 0, "x", lambda v: v + 1)
    b, m = tso.drain(b, (), 0)
    assert tso.can_fence(b, 0)
    assert tso.locked_rmw(b, m, 0, "x", lambda v: v + 1) == (1, (("x", 2),))
    assert tso.pending(b) == ()


def test_memory_is_canonical_whatever_the_order_of_writes() -> None:
    a = tso.write(tso.write((), "y", 1), "x", 2)
    b = tso.write(tso.write((), "x", 2), "y", 1)
    assert a == b == (("x", 2), ("y", 1))
    assert tso.write(a, "y", 0) == (("x", 2),)  # 0 is the initial value: not stored
    assert tso.read(a, "z") == 0
    kernel = tso.write(tso.write((), ("tlb_gen", 1), 3), ("loaded_mm", 0), 1)
    assert tso.read(kernel, ("tlb_gen", 1)) == 3  # kernel-style locations


def test_permute_moves_buffers_with_their_cpus() -> None:
    b = tso.store(tso.empty(3), 0, ("loaded_mm", 0), 1)

    def rename(s: tso.Store) -> tso.Store:
        return s._replace(loc=(s.loc[0], 2)) if isinstance(s.loc, tuple) else s

    assert tso.permute(b, (2, 0, 1)) == ((), (), (tso.Store(("loaded_mm", 0), 1),))
    assert tso.permute(b, (2, 0, 1), rename)[2] == (tso.Store(("loaded_mm", 2), 1),)


# --- the litmus world -------------------------------------------------------------------------

SB = BY_NAME["SB"]


def test_the_snapshot_covers_every_state_field_and_a_copy_is_independent() -> None:
    w = LitmusWorld.initial(SB, Tso())
    w.apply(Action(0, "store"))
    w.apply(Action(0, "load"))
    assert fields_missing_from_snapshot(w) == []
    before = w.snapshot()
    twin = w.copy()
    twin.apply(Action(0, "drain"))
    assert w.snapshot() == before
    assert hash(before)


def test_actions_are_next_instructions_and_drains() -> None:
    w = LitmusWorld.initial(SB, Tso())
    assert w.enabled_actions() == [Action(0, "store"), Action(1, "store")]
    w.apply(Action(0, "store"))
    assert w.enabled_actions() == [Action(0, "load"), Action(1, "store"), Action(0, "drain")]
    with pytest.raises(ActionNotEnabled):
        w.apply(Action(1, "drain"))
    with pytest.raises(ActionNotEnabled):
        w.apply(Action(1, "load"))  # cpu1's next instruction is a store


def test_the_outcome_is_reported_only_in_final_states() -> None:
    w = LitmusWorld.initial(SB, Tso())
    for a in ("cpu0 store", "cpu0 load", "cpu1 store", "cpu1 load"):
        cpu, op = a.split()
        w.apply(Action(int(cpu[3:]), op))
    assert w.violations() == []  # both stores still buffered: not final
    w.apply(Action(0, "drain"))
    w.apply(Action(1, "drain"))
    assert w.final()
    (v,) = w.violations()
    assert v.prop == EXISTS
    assert "0:eax=0; 1:ebx=0; x=1; y=1" in v.message
    assert w.violations(["no_use_after_free"]) == []


def test_locked_instructions_wait_for_the_drain_and_do_not_buffer() -> None:
    t = LitmusTest(
        "St+Xadd",
        ((St("y", 1), Xadd("x", 2, "eax"), Xchg("x", 7, "ebx")),),
        (Reg(0, "eax", 0),),
        ALLOWED,
        "unit test",
    )
    w = LitmusWorld.initial(t, Tso())
    w.apply(Action(0, "store"))
    assert w.enabled_actions() == [Action(0, "drain")]  # the XADD waits
    w.apply(Action(0, "drain"))
    w.apply(Action(0, "xadd"))
    w.apply(Action(0, "xchg"))
    assert w.buffers == ((),)
    assert w.memory == (("x", 7), ("y", 1))
    assert w.regs == ((("eax", 0), ("ebx", 2)),)


def test_sc_has_no_buffers() -> None:
    w = LitmusWorld.initial(SB, Sc())
    w.apply(Action(0, "store"))
    assert w.memory == (("x", 1),)
    assert w.enabled_actions() == [Action(0, "load"), Action(1, "store")]


def test_max_stores_counts_stores_between_fences() -> None:
    assert BY_NAME["SB+mfences"].max_stores == 1
    assert BY_NAME["2+2W"].max_stores == 2
    assert BY_NAME["n6"].max_stores == 2
    assert BY_NAME["SB+xchgs"].max_stores == 0


# --- the verdicts -----------------------------------------------------------------------------


@pytest.mark.parametrize("test", TESTS, ids=lambda t: t.name)
def test_every_verdict_agrees_with_the_paper(test: LitmusTest) -> None:
    on_tso = explore(test, Tso())
    on_sc = explore(test, Sc())
    assert on_tso.exhausted and on_sc.exhausted  # forbidden means: no state reaches it
    assert on_tso.verdict == test.paper, test.source
    assert on_sc.verdict == test.sc


def test_store_buffering_is_what_tso_adds_to_sc() -> None:
    """The point of the model: SB's outcome needs both loads to run while both stores are
    buffered; SC forbids it, TSO allows it, and an MFENCE between forbids it again."""
    assert explore(SB, Sc()).verdict == FORBIDDEN
    r = explore(SB, Tso())
    assert r.verdict == ALLOWED
    assert r.witness is not None
    w = LitmusWorld.initial(SB, Tso())
    for a in r.witness:
        w.apply(a)
    assert w.final() and w.violations()
    ops = [str(a) for a in r.witness]
    assert ops.index("cpu0 load") < ops.index("cpu0 drain")  # loaded with x=1 still buffered
    assert explore(BY_NAME["SB+mfences"], Tso()).verdict == FORBIDDEN


def test_a_search_cut_short_gives_no_verdict() -> None:
    cut = LitmusResult(SB, "TSO", allowed=False, witness=None, states=5, exhausted=False)
    assert cut.verdict == UNKNOWN


def test_the_bound_only_removes_executions() -> None:
    """With one entry per CPU, n6 is still allowed (its schedule drains between stores) and
    the forbidden ones stay forbidden; the state space shrinks."""
    for t in TESTS:
        small, big = explore(t, Tso(1)), explore(t, Tso(2))
        assert small.verdict == big.verdict, t.name
        assert small.states <= big.states


# --- broken machines: the litmus tests catch them ---------------------------------------------


@attrs.frozen
class NoForwarding(Tso):
    """Loads ignore the CPU's own buffer."""

    name: str = "no-forwarding"

    def load(self, buffers: tso.Buffers, memory: tso.Memory, cpu: int, loc: str) -> int:
        return tso.read(memory, loc)


@attrs.frozen
class NewestFirst(Tso):
    """Drains the newest store instead of the oldest (not FIFO)."""

    name: str = "newest-first"

    def drain(
        self, buffers: tso.Buffers, memory: tso.Memory, cpu: int
    ) -> tuple[tso.Buffers, tso.Memory]:
        b = buffers[cpu]
        rest = buffers[:cpu] + (b[:-1],) + buffers[cpu + 1 :]
        return rest, tso.write(memory, b[-1].loc, b[-1].value)


@attrs.frozen
class FenceNoWait(Tso):
    """MFENCE runs with stores still buffered."""

    name: str = "fence-no-wait"

    def can_fence(self, buffers: tso.Buffers, cpu: int) -> bool:
        return True


@attrs.frozen
class LockedStoreBuffered(Tso):
    """A LOCK'd instruction's store goes into the buffer like a plain store."""

    name: str = "locked-store-buffered"

    def rmw(
        self,
        buffers: tso.Buffers,
        memory: tso.Memory,
        cpu: int,
        loc: str,
        update: Callable[[int], int],
    ) -> tuple[int, tso.Buffers, tso.Memory]:
        old = tso.load(buffers, memory, cpu, loc)
        return old, tso.store(buffers, cpu, loc, update(old), self.bound), memory


@pytest.mark.parametrize(
    ("machine", "caught_by"),
    [
        (NoForwarding(), {"n6": FORBIDDEN}),
        (NewestFirst(), {"MP": ALLOWED, "2+2W": ALLOWED}),
        (FenceNoWait(), {"SB+mfences": ALLOWED}),
        (LockedStoreBuffered(), {"SB+xchgs": ALLOWED}),
        (Sc(), {"SB": FORBIDDEN, "n6": FORBIDDEN}),  # the model before issue 11
    ],
    ids=lambda x: getattr(x, "name", ""),
)
def test_a_broken_machine_disagrees_with_the_paper(
    machine: Machine, caught_by: dict[str, str]
) -> None:
    """Each way of getting the store buffer wrong changes the verdict of a named test (and
    only of those): the tests can fail, and which one fails says what is wrong."""
    wrong = {t.name: v for t in TESTS if (v := explore(t, machine).verdict) != t.paper}
    assert wrong == caught_by


@pytest.mark.parametrize("test", TESTS, ids=lambda t: t.name)
def test_draining_at_the_fence_reaches_the_papers_outcomes(test: LitmusTest) -> None:
    """The kernel model runs an MFENCE or a LOCK'd instruction by draining its buffer first,
    not by waiting for it to be empty: every test's verdict is the paper's either way."""
    assert explore(test, TsoDrainAtFence()).verdict == test.paper


# --- the command ------------------------------------------------------------------------------


def test_the_command_prints_one_line_per_test_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run([]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert set(rows) == set(BY_NAME)
    assert rows["SB"][-5:] == ["forbidden", "allowed", "allowed", "agrees", "34"]
    assert lines[-1] == "8 tests, store-buffer bound 2: all agree with the paper"


def test_the_command_exits_1_when_a_verdict_disagrees(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = attrs.evolve(SB, paper=FORBIDDEN)
    monkeypatch.setitem(BY_NAME, "SB", wrong)
    assert run(["--test", "SB", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["agrees"] is False
    assert out["tests"][0]["tso"] == ALLOWED
    assert out["tests"][0]["witness"]["tso"][0] == "cpu0 store"


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--bound", "0"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_conditions_print_herd_style() -> None:
    assert BY_NAME["n6"].outcome == "0:eax=1 /\\ 0:ebx=0 /\\ x=1"
    assert str(Mem("x", 1)) == "x=1"
    assert str(Mfence()) == "MFENCE"
    assert str(Ld("eax", "y")) == "MOV EAX <- [y]"


def test_tlbfuzz_litmus_is_a_command_of_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from tlbfuzz.fuzz.cli import main

    assert main(["litmus", "--test", "SB"]) == 0
    out = capsys.readouterr().out
    assert "SB" in out
    assert "agree" in out
