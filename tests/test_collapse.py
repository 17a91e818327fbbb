"""khugepaged's retract_page_tables() against lazy CPUs and GUP-fast: what the collapse path
does when it may not retract, and the 2025 bug it found on 5.2 (the ordering that makes it
safe today is in tests/schedules.py: MECHANISMS, collapse-flush-reaches-lazy-cpus)."""

from __future__ import annotations

import pytest

from tests.schedules import MECHANISMS
from tests.test_copy_paths import _world, settle
from tlbfuzz.fuzz.cli import main
from tlbfuzz.protocol import DEFAULT_PROPERTIES, VARIANTS, Budget, Config, World
from tlbfuzz.protocol.search import Collapse, bfs
from tlbfuzz.protocol.state import FREE, NO_PFN, PGTABLE

_LAZY = next(m for m in MECHANISMS if m.key == "collapse-flush-reaches-lazy-cpus")


def test_collapse_retracts_no_table_that_maps_an_anonymous_page() -> None:
    w = _world("linux-current", {"collapse": 1})  # one anonymous page, one file page
    assert not [a for a in w.enabled_actions() if a.op == "collapse_file"]


def test_collapse_unmaps_the_file_page_and_frees_the_table_after_a_grace_period() -> None:
    w = _world("linux-current", {"collapse": 1}, mms=1, anon_pages=0)
    w.run(["cpu0 collapse_file mm=A va=0x1000"])
    settle(w, 0)  # cpu0's path and the IPIs, not the RCU callback
    assert w.mms[1].pgtable_pfn == NO_PFN
    assert w.frames[0].kind == PGTABLE  # pte_free_defer(): waits for RCU
    assert w.rcu == ((0, 0),)
    w.run(["tlb_remove_table_rcu pfn=0"])
    assert w.frames[0].kind == FREE
    assert w.frames[1].kind != FREE and not w.frames[1].mapped  # stays in the page cache
    assert not w.violations()


def test_5_2_retracts_no_table_while_its_mmap_sem_trylock_fails() -> None:
    w = _world("linux-5.2", {"collapse": 1}, {"mprotect": 1}, mms=1, anon_pages=0)
    w.run(["cpu1 mprotect va=0x1000"])  # mmap_write_lock() held to its return
    w.run(
        [
            "cpu0 collapse_file mm=A va=0x1000",  # cpu1 is in mm_cpumask: the flush is batched
            "cpu0 arch_tlbbatch_flush",
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu0 native_flush_tlb_others__send_ipis",
            "cpu1 flush_smp_call_function_queue",
            "cpu1 flush_tlb_func",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 retract_page_tables",  # down_write_trylock() fails
        ]
    )
    assert w.mms[1].pgtable_pfn != NO_PFN and not w.cpus[0].path  # nothing retracted
    assert not w.violations()


def test_5_2_frees_a_retracted_table_a_lazy_cpu_still_caches_the_bug_3ef938c35035_fixed() -> None:
    """The MECHANISMS schedule on linux-5.2 itself (12 steps: 5.2 frees the table at once,
    with no RCU callback, and sends its local flush first), BFS-minimal."""
    config = Config(
        budget=Budget.only(),
        cpu_budget=((0, Budget.only(collapse=1)), (1, Budget.only(switch=2))),
        reuse=False,
        mms=1,
        anon_pages=0,
    )
    r = bfs(
        World.initial(VARIANTS["linux-5.2"], config),
        ["no_walk_of_freed_page_table"],
        200,
        key=Collapse(symmetric=True),
    )
    assert r.violation is not None and r.schedule is not None
    assert len(r.schedule) == 12
    assert "while cpu1 (lazy) has CR3 = mm A" in r.violation.message
    assert [str(a) for a in r.schedule][-1] == "cpu0 pte_free_defer"


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["linux-current", "linux-5.2"])
def test_collapse_against_gup_fast_holds_every_default_property(variant: str) -> None:
    """GUP-fast walks with IRQs off: the flush IPI waits for it (5.2 frees the table right
    after the flush), and today the RCU grace period too."""
    config = Config(
        budget=Budget.only(),
        cpu_budget=((0, Budget.only(collapse=1)), (1, Budget.only(gup_fast=1))),
        reuse=False,
        anon_pages=0,
    )
    r = bfs(World.initial(VARIANTS[variant], config), DEFAULT_PROPERTIES, 200)
    assert r.exhausted and r.violation is None


def test_the_lazy_cpu_schedule_names_cpu1_lazy_at_the_free() -> None:
    m = _LAZY
    per_cpu = tuple((cpu, Budget.only(**b)) for cpu, b in m.per_cpu)
    config = Config(budget=Budget.only(), cpu_budget=per_cpu, reuse=False, mms=1, anon_pages=0)
    w = World.initial(m.moved, config)
    w.run(list(m.schedule))
    (v,) = [v for v in w.found if v.prop == "no_walk_of_freed_page_table"]
    assert "while cpu1 (lazy) has CR3 = mm A" in v.message


def test_explore_gives_a_collapse_budget_the_shape_it_needs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # no --anon-pages: BudgetKind.shape implies 0, and 5.2's bug is found as with it
    argv = ["explore", "-v", "linux-5.2", "--mms", "1", "--budget", "cpu0:collapse=1"]
    argv += ["--budget", "cpu1:switch=2", "-p", "no_walk_of_freed_page_table"]
    assert main(argv) == 1
    assert "no_walk_of_freed_page_table: 12 steps" in " ".join(capsys.readouterr().out.split())


def test_explore_refuses_a_collapse_budget_with_no_page_left_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["explore", "-v", "linux-5.2", "--file-pages", "0", "--budget", "collapse=1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tlbfuzz: the mm maps no page: --budget implies --anon-pages 0 (for collapse)"]


# --- model bugs found in review, each a schedule the model got wrong before its fix ----------


def test_retraction_flushes_mm_cpumask_not_the_batch_it_flushed_before() -> None:
    """x86 arch_tlbbatch_flush() ends with ``cpumask_clear(&batch->cpumask)``: the
    retraction's own flush goes to mm_cpumask, which cpu1 rejoined after the batch was made
    (the model sent it to the stale batch, skipped cpu1 and reported a walk of a freed table
    on 5.2 where the kernel IPIs cpu1)."""
    budgets = ((0, Budget.only(collapse=1)), (1, Budget.only(switch=2)), (2, Budget.only()))
    config = Config(
        budget=Budget.only(), cpu_budget=budgets, reuse=False, cpus=3, mms=2, anon_pages=0
    )
    w = World.initial(VARIANTS["linux-5.2"], config)
    w.run(["cpu1 nmi va=0x1000", "cpu1 switch_mm_irqs_off__cpumask_set_cpu next=B"])
    settle(w, 1)
    assert not w.mms[1].cpumask & 0b010  # cpu1 left mm A's mask (5.2 clears it)
    w.run(
        [
            "cpu0 collapse_file mm=A va=0x1000",  # the batch: mm A's mask, without cpu1
            "cpu0 arch_tlbbatch_flush",
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu0 native_flush_tlb_others__send_ipis",
            "cpu2 flush_smp_call_function_queue",
            "cpu2 flush_tlb_func",
            "cpu0 smp_call_function_many__csd_lock_wait",
        ]
    )
    back = next(a for a in w.enabled_actions() if a.cpu == 1 and "next=A" in str(a))
    w.run([back])
    settle(w, 1)
    w.run(["cpu1 nmi va=0x1000", "cpu0 retract_page_tables"])  # cpu1 caches the PMD again
    settle(w, 0)
    assert w.mms[1].pgtable_pfn == NO_PFN and w.frames[0].kind == FREE
    assert not w.violations()
