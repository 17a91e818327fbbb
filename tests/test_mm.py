"""The mm layer's orderings doing their job (tests/schedules.py: MECHANISMS, and TSO_ORDERINGS
for the first two tests; tests/test_tso.py proves those shortest): the same schedule
breaks the kernel with the ordering moved, the kernel's own ordering refuses it or holds, and
the explorer confirms the moved one is the shortest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from tests.schedules import MECHANISMS, TSO_ORDERINGS, GupFastIrqsOn, Mechanism
from tlbfuzz.fuzz.cli import main
from tlbfuzz.protocol import (
    DEFAULT_PROPERTIES,
    VARIANTS,
    Action,
    Budget,
    Config,
    Variant,
    World,
    parse,
)
from tlbfuzz.protocol.search import Collapse, bfs, first_violation

if TYPE_CHECKING:
    from tlbfuzz.protocol import Site

ROOT = Path(__file__).resolve().parent.parent


def _key(m: Mechanism) -> str:
    return m.key


def _config(m: Mechanism) -> Config:
    per_cpu = tuple((cpu, Budget.only(**b)) for cpu, b in m.per_cpu)
    config = Config(budget=Budget.only(**m.budget), cpu_budget=per_cpu, reuse=False)
    shape: dict[str, Any] = dict(m.shape)
    return attrs.evolve(config, **shape)


@pytest.mark.parametrize("m", [*MECHANISMS, *TSO_ORDERINGS], ids=_key)
def test_the_schedule_breaks_the_kernel_with_the_ordering_moved(m: Mechanism) -> None:
    start = World.initial(m.moved, _config(m))
    hit = first_violation(start, [parse(s) for s in m.schedule], [m.prop])
    assert hit is not None, f"{m.moved.name} holds {m.prop} on this schedule"
    assert hit[0] == len(m.schedule)


@pytest.mark.parametrize("m", [*MECHANISMS, *TSO_ORDERINGS], ids=_key)
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


@pytest.mark.parametrize(
    "m", [pytest.param(m, marks=getattr(pytest.mark, m.proof)) for m in MECHANISMS], ids=_key
)
def test_the_moved_schedule_is_the_shortest(m: Mechanism) -> None:
    # per-CPU budgets leave no symmetry to reduce: numbering without renamings is cheaper there
    key = Collapse(symmetric=not m.per_cpu)
    r = bfs(World.initial(m.moved, _config(m)), [m.prop], 20, key=key)
    assert r.schedule is not None
    assert len(r.schedule) == len(m.schedule), [str(a) for a in r.schedule]


@pytest.mark.nightly
@pytest.mark.parametrize("m", [m for m in MECHANISMS if "switch" not in m.budget], ids=_key)
def test_the_kernel_holds_every_default_property_with_that_budget(m: Mechanism) -> None:
    """A proof over the whole reachable space (without a context switch the 5.2 switch window
    cannot open): hundreds of thousands of states, so nightly."""
    r = bfs(
        World.initial(m.kernel, _config(m)), DEFAULT_PROPERTIES, 200, key=Collapse(symmetric=True)
    )
    assert r.violation is None, [str(a) for a in r.schedule or []]
    assert r.exhausted


EXAMPLES = [
    ("before_99baac21.py", ("madvise=1",), "no_stale_access_after_return", 8, ()),
    ("flush_after_unlock.py", ("madvise=1,writeback=1",), "no_lost_write", 6, ()),
    (
        "before_3ea277194daa.py",
        ("cpu0:reclaim=1", "cpu1:mprotect=1"),
        "no_write_after_write_protect",
        6,
        (),
    ),
    ("before_912efa17e512.py", ("cpu0:clear_refs=1",), "no_lost_soft_dirty", 4, ()),
    (
        "before_eb66ae030829.py",
        ("cpu0:mremap=1", "cpu1:migrate=1"),
        "no_use_after_free",
        15,
        ("--mms", "1", "--file-pages", "0"),
    ),
    (
        "before_3ef938c35035.py",
        ("cpu0:collapse=1", "cpu1:switch=2"),
        "no_walk_of_freed_page_table",
        13,
        ("--mms", "1", "--anon-pages", "0"),
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "budgets", "prop", "length", "shape"), EXAMPLES)
def test_an_example_file_moves_one_decision_and_breaks_what_the_kernel_holds(
    name: str,
    budgets: tuple[str, ...],
    prop: str,
    length: int,
    shape: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's commands: a variant file of at most 40 lines, nothing in protocol/
    edited; the unmoved kernel holds that property with that budget
    (test_the_kernel_holds_every_default_property_with_that_budget)."""
    path = ROOT / "examples" / name
    assert len(path.read_text().splitlines()) <= 40
    argv = ["explore", "-v", f"{path}:VARIANT", "-p", prop, *shape]
    for budget in budgets:
        argv += ["--budget", budget]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert f"{prop}: {length} steps" in " ".join(out.split())


# --- model bugs found in review, each a schedule that the model allowed before its fix ----------


def _runs_until(v: Variant, schedule: list[str], config: Config | None = None) -> int | None:
    """The index of the first step ``v`` does not allow, or None if all run."""
    w = World.initial(v, config or Config())
    for i, line in enumerate(schedule):
        a = parse(line)
        if not w.is_enabled(a):
            return i
        w.apply(a)
    return None


def test_a_syscall_spins_on_the_ptl_that_writebacks_flush_holds() -> None:
    """Before: madvise's first step looked for the PTL of mm 0, ran inside writeback's
    ptep_clear_flush() and returned before writeback's flush reached cpu0."""
    schedule = [
        "cpu0 user_write va=0x2000",
        "cpu1 clear_page_dirty_for_io mm=A va=0x2000",
        "cpu0 madvise_dontneed va=0x2000",
        "cpu0 zap_pte_range",
        "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
    ]
    assert _runs_until(VARIANTS["linux-current"], schedule) == 3


def test_truncation_frees_a_page_only_after_the_last_gather_drops_it() -> None:
    """Before: truncation freed a page that cpu1's madvise still held in its gather, and cpu0
    read it through the entry cpu1's flush had not yet removed."""
    from examples.before_99baac21 import VARIANT

    schedule = [
        "cpu0 user_read va=0x2000",
        "cpu1 madvise_dontneed va=0x2000",
        "cpu1 zap_pte_range",
        "cpu0 unmap_mapping_range mm=A va=0x2000",
        "cpu0 zap_pte_range",
        "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
        "cpu0 tlb_finish_mmu",
        "cpu0 truncate_inode_pages",
    ]
    assert _runs_until(VARIANT, schedule, Config(budget=Budget(truncate=1))) == 7


def test_truncation_after_munmap_opens_no_gather() -> None:
    w = World.initial(VARIANTS["linux-5.2"], Config(budget=Budget(truncate=1)))
    w.run(
        [
            "cpu0 munmap",
            "cpu0 unmap_vmas",
            "cpu1 unmap_mapping_range mm=A va=0x2000",  # and its zap is skipped
        ]
    )
    assert w.mms[1].tlb_flush_pending == 1  # munmap's only: no vma, no gather
    assert w.cpus[1].locals.ptl is False


def test_writeback_holds_the_page_lock_while_it_spins_on_the_ptl() -> None:
    """Before: the page lock was taken only when clear_page_dirty_for_io() ran, so truncation
    freed the page under a writeback spinning on the PTL (mainline: the rmap stays until the
    forced flush, so page_mkclean() waits for the PTL)."""
    w = World.initial(VARIANTS["linux-current"], Config(budget=Budget(truncate=1)))
    w.run(
        [
            "cpu0 user_write va=0x2000",
            "cpu1 unmap_mapping_range mm=A va=0x2000",
            "cpu1 zap_pte_range",  # forced flush: the PTL stays held
            "cpu0 clear_page_dirty_for_io mm=A va=0x2000",  # spins on it
        ]
    )
    assert w.is_blocked(0)
    from tlbfuzz.protocol.mm import page_locked

    assert page_locked(w, 2)


@attrs.frozen
class RangeOnlyNestedFlush(Variant):
    def nested_flush_is_full(self, at: Site) -> bool:
        return False


def test_the_range_only_nested_flush_forgets_freed_tables() -> None:
    """5.2-rc's __tlb_reset_range() in the nested branch cleared freed_tables (7a30df49)."""
    base = attrs.asdict(VARIANTS["linux-5.2"], recurse=False)
    v = RangeOnlyNestedFlush(**{**base, "name": "5.2-rc"})
    w = World.initial(v, Config(budget=Budget(truncate=1)))
    w.run(
        [
            "cpu1 unmap_mapping_range mm=A va=0x2000",
            "cpu1 zap_pte_range",
            "cpu0 munmap",
            "cpu0 unmap_vmas",
            "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
        ]
    )
    lv = w.cpus[0].locals
    assert (lv.cleared, lv.freed_tables, lv.fullmm) == (True, False, False)


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "states"), [("linux-5.2", 14974), ("linux-current", 18446)])
def test_gup_fast_against_munmap_holds_in_the_whole_space(variant: str, states: int) -> None:
    """cpu0 unmaps (and frees the page table: through the page batch on 5.2, by RCU today)
    while cpu1 walks with GUP-fast: every reachable state holds every default property (the
    state count is pinned: if it moves, say why in the commit)."""
    cfg = Config(
        budget=Budget.only(),
        cpu_budget=((0, Budget.only(munmap=1)), (1, Budget.only(gup_fast=1))),
        reuse=False,
    )
    r = bfs(World.initial(VARIANTS[variant], cfg), DEFAULT_PROPERTIES, 200)
    assert r.violation is None, [str(a) for a in r.schedule or []]
    assert r.exhausted
    assert r.states == states


def test_the_rcu_grace_period_alone_keeps_the_table_alive_under_gup_fast() -> None:
    """With a freed_tables flush that does not wait for the walking CPU (asynchronous, as an
    INVLPGB or paravirt flush would be), only the RCU grace period holds the table: an
    IRQs-off walk holds it off, so the kernel holds; a walk with IRQs on does not, and the
    table is freed under it. (Hardware fills, accesses and NMIs left out: the hardware walk
    would be freed under first.)"""
    rcu_only = attrs.evolve(
        VARIANTS["linux-current"],
        name="rcu-only",
        async_flush=True,
        async_freed_tables=True,
        wait_for_csd_unlock=False,
    )
    cfg = Config(
        budget=Budget.only(),
        cpu_budget=((0, Budget.only(munmap=1)), (1, Budget.only(gup_fast=1))),
        reuse=False,
    )
    noise = {"tlb_fill", "user_read", "user_write", "nmi"}

    def allowed(a: Action) -> bool:
        return a.op not in noise

    kernel = bfs(World.initial(rcu_only, cfg), DEFAULT_PROPERTIES, 60, allowed=allowed)
    assert kernel.violation is None
    assert kernel.exhausted
    irqs_on = GupFastIrqsOn(**{**attrs.asdict(rcu_only, recurse=False), "name": "irqs-on"})
    r = bfs(World.initial(irqs_on, cfg), ["no_walk_of_freed_page_table"], 60, allowed=allowed)
    assert r.schedule is not None
    assert [str(a) for a in r.schedule][-1] == "tlb_remove_table_rcu pfn=0"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variant", "states"),
    [  # 5.2's is run nightly, to keep CI under 15 minutes
        pytest.param("linux-5.2", 44733, marks=pytest.mark.nightly),
        ("linux-current", 76036),
    ],
)
def test_munmap_against_truncation_holds_in_the_whole_space(variant: str, states: int) -> None:
    """cpu0 unmaps, cpu1 truncates the file page: every default property in every reachable
    state (the split munmap once let truncation free a mapped page here; pinned)."""
    cfg = Config(
        budget=Budget.only(),
        cpu_budget=((0, Budget.only(munmap=1)), (1, Budget.only(truncate=1))),
        reuse=False,
    )
    r = bfs(World.initial(VARIANTS[variant], cfg), DEFAULT_PROPERTIES, 200)
    assert r.violation is None, [str(a) for a in r.schedule or []]
    assert r.exhausted
    assert r.states == states


@pytest.mark.parametrize("variant", ["linux-5.2", "linux-current"])
def test_truncation_during_munmap_still_finds_the_vma_in_i_mmap(variant: str) -> None:
    """Before: munmap's first step took the vma out of the dict truncation reads, while its
    zap came a step later, so truncation found no vma, skipped the zap and freed a page a
    present PTE still mapped. The vma leaves i_mmap in free_pgtables() (unlink_file_vma()),
    after the zap."""
    w = World.initial(VARIANTS[variant], Config(budget=Budget(truncate=1)))
    w.run(
        [
            "cpu0 munmap",  # the vma leaves the mm's tree; the zap waits for the next step
            "cpu1 unmap_mapping_range mm=A va=0x2000",
            "cpu1 zap_pte_range",
            "cpu1 tlb_finish_mmu__mm_tlb_flush_nested",
        ]
    )
    assert not w.violations(["ptes_map_own_frames"])
    assert not w.mms[1].ptes[0x2000].mapped  # truncation zapped it
