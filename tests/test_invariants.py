"""The invariants a kernel engineer would state, each shown to catch the broken model it is
for (the survivors of mutation runs: a lazy flag left set, a uaccess in the wrong mm, a PTE
left pointing at a freed frame or in a freed page table, an rmap never removed, a
tlb_flush_pending never decremented)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from tlbfuzz.protocol import VARIANTS, BudgetKind, Path, Step, Variant, World, hw
from tlbfuzz.protocol.mm import free_page, present_pte, tlb_gather_mmu
from tlbfuzz.protocol.paths import VA
from tlbfuzz.protocol.properties import (
    PTES_MAP_OWN_FRAMES,
    RMAP_MATCHES_PTES,
    TLB_ENTRY_MATCHES_ITS_PTE,
    TLB_FLUSH_PENDING_BALANCED,
    UACCESS_IN_CURRENT_MM,
    USER_NEVER_LAZY,
)
from tlbfuzz.protocol.state import NO_PFN

if TYPE_CHECKING:
    from collections.abc import Callable

    from tlbfuzz.protocol.world import World as WorldT

LAZY_ROUND_TRIP = [
    "cpu0 enter_lazy_tlb next=kthread",
    "cpu0 switch_mm_irqs_off__leave_lazy next=A",
    "cpu0 switch_mm_irqs_off__lazy_tlb_gen_check",
    "cpu0 finish_task_switch",
]


def test_leaving_lazy_mode_clears_is_lazy() -> None:
    w = World.initial(VARIANTS["linux-current"]).run(LAZY_ROUND_TRIP)
    assert w.violations([USER_NEVER_LAZY]) == []


@attrs.frozen
class KeepsLazyFlag(Variant):
    """switch_mm_irqs_off() for prev == next without ``is_lazy = false``."""

    def path_steps(self, path: Path) -> tuple[Step, ...]:
        steps = super().path_steps(path)
        if path.name != "leave_lazy":
            return steps
        return (Step(steps[0].name, lambda w, cpu: None), *steps[1:])


def test_a_cpu_back_in_user_mode_with_is_lazy_set_is_caught() -> None:
    v = KeepsLazyFlag(**attrs.asdict(VARIANTS["linux-current"], recurse=False))
    w = World.initial(v).run(LAZY_ROUND_TRIP)
    (found,) = w.violations([USER_NEVER_LAZY])
    assert "cpu0 runs a task of mm A with is_lazy set" in found.message


def test_a_kernel_uaccess_in_another_mm_is_caught() -> None:
    w = World.initial(VARIANTS["linux-current"])
    w.run(["cpu0 enter_lazy_tlb next=kthread"])  # loaded_mm A, current->mm NULL
    hw.access(w, 0, 0x1000, write=False, who="IPI callback read_user_func")
    (found,) = w.violations([UACCESS_IN_CURRENT_MM])
    assert "current->mm is NULL (kthread)" in found.message
    user = World.initial(VARIANTS["linux-current"])
    hw.access(user, 0, 0x1000, write=False, who="kernel copy_from_user")
    assert user.violations([UACCESS_IN_CURRENT_MM]) == []


def _extra(name: str, run: Callable[[WorldT, int], None]) -> Variant:
    """linux-current with one more syscall of one step, ``run``, on a page with a PTE."""
    path = Path(name, BudgetKind(name), VA, present_pte, (Step(name, run),), from_user=True)
    return attrs.evolve(VARIANTS["linux-current"], name=name, extra_paths=(path,))


def _free_mapped(w: WorldT, cpu: int) -> None:
    """Frees the page but leaves its PTE present (the mutant: a zap that forgot the PTE)."""
    pte = w.mms[w.cpus[cpu].task].ptes[w.cpus[cpu].locals.va]
    free_page(w, pte.pfn, by=f"cpu{cpu} free_mapped")


def test_a_present_pte_to_a_freed_frame_is_caught() -> None:
    v = _extra("free_mapped", _free_mapped)
    w = World.initial(v).run(["cpu0 free_mapped va=0x1000"])
    (found,) = w.violations([PTES_MAP_OWN_FRAMES])
    assert "mm A PTE 0x1000 is present and maps pfn 1, which is free v1" in found.message
    assert World.initial(v).violations([PTES_MAP_OWN_FRAMES]) == []


def _clear_pte_keep_rmap(w: WorldT, cpu: int) -> None:
    """Clears the PTE under the PTL but never calls page_remove_rmap() (the mutants: a delayed
    rmap that is lost, or set back to mapped)."""
    mm = w.mms[w.cpus[cpu].task]
    va = w.cpus[cpu].locals.va
    mm.ptes[va] = mm.ptes[va]._replace(present=False, seq=mm.ptes[va].seq + 1)


def test_a_page_left_mapped_in_the_rmap_after_its_pte_is_gone_is_caught() -> None:
    v = _extra("zap_keep_rmap", _clear_pte_keep_rmap)
    w = World.initial(v).run(["cpu0 zap_keep_rmap va=0x1000"])
    (found,) = w.violations([RMAP_MATCHES_PTES])
    assert "pfn 1 (anon of mm A at 0x1000 v0): page_mapped() is true but no PTE maps it" in (
        found.message
    )
    assert World.initial(v).violations([RMAP_MATCHES_PTES]) == []


def test_mainlines_delayed_rmap_is_exempt_until_the_flush_then_checked() -> None:
    """linux-current zaps the dirty file page with its rmap delayed until the flush
    (``zap_delays_rmap``): while the gather holds it the page is still mapped with no PTE,
    which the invariant allows; once munmap returns it must be unmapped."""
    w = World.initial(VARIANTS["linux-current"])
    w.run(["cpu0 user_write va=0x2000", "cpu0 munmap"])  # a write to the file page: PTE D=1
    seen = False
    while w.cpus[0].path:
        if 2 in w.cpus[0].locals.rmaps:
            assert w.frames[2].mapped
            assert w.violations([RMAP_MATCHES_PTES]) == []
            seen = True
        cpu0, cpu1 = (lane[0] for lane in w.enabled_by_lane()[:2])
        w.apply((cpu0 or cpu1)[0])  # cpu0's munmap, else cpu1 takes its flush IPI
    assert seen
    assert not w.frames[2].mapped
    assert w.violations([RMAP_MATCHES_PTES]) == []


def _gather_without_dec(w: WorldT, cpu: int) -> None:
    """tlb_gather_mmu() (inc_tlb_flush_pending()), then a return that skips the dec."""
    tlb_gather_mmu(w, cpu, w.cpus[cpu].task, 0x1000, 0x2000)


def test_a_gather_that_returns_without_its_dec_is_caught() -> None:
    v = _extra("gather_no_dec", _gather_without_dec)
    w = World.initial(v).run(["cpu0 gather_no_dec va=0x1000"])
    (found,) = w.violations([TLB_FLUSH_PENDING_BALANCED])
    assert found.message == "mm A tlb_flush_pending is 1, but 0 gather(s) of it are open"
    assert World.initial(v).violations([TLB_FLUSH_PENDING_BALANCED]) == []


def test_an_open_gather_is_counted_until_its_dec() -> None:
    """linux-current's madvise: tlb_flush_pending is 1 from tlb_gather_mmu() to its dec, and
    the invariant holds at every step."""
    w = World.initial(VARIANTS["linux-current"]).run(["cpu0 madvise_dontneed va=0x1000"])
    assert w.mms[1].tlb_flush_pending == 1
    while w.cpus[0].path:
        assert w.violations([TLB_FLUSH_PENDING_BALANCED]) == []
        cpu0, cpu1 = (lane[0] for lane in w.enabled_by_lane()[:2])
        w.apply((cpu0 or cpu1)[0])
    assert w.mms[1].tlb_flush_pending == 0
    assert w.violations([TLB_FLUSH_PENDING_BALANCED]) == []


def _free_table_keep_ptes(w: WorldT, cpu: int) -> None:
    """pmd_clear() of the page table with its PTEs still present (free_pgtables() before
    unmap_vmas(), say)."""
    w.mms[w.cpus[cpu].task].pgtable_pfn = NO_PFN


def test_a_present_pte_in_a_freed_page_table_is_caught() -> None:
    v = _extra("free_table", _free_table_keep_ptes)
    w = World.initial(v).run(["cpu0 free_table va=0x1000"])
    (found,) = w.violations([PTES_MAP_OWN_FRAMES])
    assert "mm A PTE 0x1000 is present (pfn 1) in a page table that was freed" in found.message
    assert World.initial(v).violations([PTES_MAP_OWN_FRAMES]) == []


def _wrprotect_keep_seq(w: WorldT, cpu: int) -> None:
    """Write-protects the PTE without bumping its seq (the mutant: mprotect's PTE change
    that kept its version)."""
    mm = w.mms[w.cpus[cpu].task]
    va = w.cpus[cpu].locals.va
    mm.ptes[va] = mm.ptes[va]._replace(writable=False)


def test_a_pte_change_that_keeps_its_seq_is_caught() -> None:
    v = _extra("wrprotect_keep_seq", _wrprotect_keep_seq)
    w = World.initial(v).run(["cpu1 user_write va=0x1000", "cpu0 wrprotect_keep_seq va=0x1000"])
    (found,) = w.violations([TLB_ENTRY_MATCHES_ITS_PTE])
    assert found.message.startswith("cpu1 caches 0x1000 of mm A as pfn 1 W=1 D=1 from PTE seq 0")
    kernel = World.initial(VARIANTS["linux-current"]).run(
        ["cpu1 user_write va=0x1000", "cpu0 mprotect va=0x1000", "cpu0 change_pte_range"]
    )
    assert kernel.cpus[1].tlb  # the stale writable entry, older than the PTE: not this check's
    assert kernel.violations([TLB_ENTRY_MATCHES_ITS_PTE]) == []
