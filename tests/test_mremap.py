"""mremap() against the paths that find its page by the rmap (the ordering that makes it safe,
the flush before the PTL is dropped, is in tests/schedules.py: MECHANISMS)."""

from __future__ import annotations

import attrs

from tests.schedules import MECHANISMS
from tests.test_copy_paths import _world, settle
from tlbfuzz.protocol import VARIANTS, Budget, Config, World
from tlbfuzz.protocol.state import FREE
from tlbfuzz.protocol.world import Kernel


def test_the_spare_address_exists_only_where_a_budget_allows_an_mremap() -> None:
    config = Config(budget=Budget.only(madvise=1))
    assert Kernel.of(VARIANTS["linux-current"], config).vas == (0x1000, 0x2000)
    per_cpu = attrs.evolve(config, cpu_budget=((1, Budget.only(mremap=1)),))
    assert Kernel.of(VARIANTS["linux-current"], per_cpu).vas == (0x1000, 0x2000, 0x3000)
    # and the spare address has no vma, PTE or page at first
    w = World.initial(VARIANTS["linux-current"], per_cpu)
    assert 0x3000 not in w.mms[1].vma_writable and 0x3000 not in w.mms[1].ptes


def test_mremap_moves_the_pte_and_the_rmap_address_and_unmaps_the_old_vma() -> None:
    w = _world("linux-current", {"mremap": 1}, mms=1, file_pages=0)
    w.run(["cpu0 user_write va=0x1000", "cpu0 mremap va=0x1000"])
    settle(w)
    mm = w.mms[1]
    assert mm.ptes[0x1000].pfn == -1 and not mm.ptes[0x1000].present
    moved = mm.ptes[0x2000]
    assert moved.present and moved.writable and moved.dirty and moved.soft_dirty
    assert moved.pfn == 1 and w.frames[1].va == 0x2000  # rmap finds it at the new address
    assert 0x1000 not in mm.vma_writable and mm.vma_writable[0x2000]
    assert (w.cpus[0].cr3_asid, 0x1000) not in w.cpus[0].tlb  # the old address is flushed
    assert not w.violations()


def test_a_free_reports_a_stale_entry_at_the_old_address_of_a_moved_page() -> None:
    # the CVE-2018-18281 schedule without its last step: the migration frees the old page
    # while cpu0 still caches it at 0x1000, the address it had before mremap moved it
    m = next(m for m in MECHANISMS if m.key == "mremap-flush-before-unlock")
    budgets = tuple((cpu, Budget.only(**b)) for cpu, b in m.per_cpu)
    config = Config(budget=Budget.only(), cpu_budget=budgets, reuse=False, mms=1, file_pages=0)
    w = World.initial(m.moved, config)
    w.run(list(m.schedule[:-1]))
    assert w.frames[1].kind == FREE
    found = {v.prop: v.message for v in w.found}
    assert "still caches 0x1000 -> pfn 1" in found["no_stale_entry_at_free"]


def test_a_migration_restores_its_entry_where_mremap_moved_it() -> None:
    # cpu1 isolates the page and leaves a migration entry, its flush batched; cpu0's
    # move_ptes() flushes that batch (flush_tlb_batched_pending()) and moves the entry to
    # 0x2000; remove_migration_ptes() finds it there by the rmap, not at 0x1000
    w = _world("linux-current", {"mremap": 1}, {"migrate": 1}, mms=1, file_pages=0)
    w.run(
        [
            "cpu0 mremap va=0x1000",
            "cpu1 try_to_migrate_one mm=A va=0x1000",
            "cpu0 move_ptes",
        ]
    )
    settle(w, 0)
    assert w.mms[1].ptes[0x2000].migration and w.frames[1].va == 0x2000
    settle(w)
    pte = w.mms[1].ptes[0x2000]
    assert pte.present and pte.pfn != 1
    assert w.frames[pte.pfn].va == 0x2000 and w.frames[pte.pfn].mapped
    assert w.frames[1].kind == FREE
    assert not w.violations()


# --- model bugs found in review, each a schedule the model got wrong before its fix ----------


def test_mprotect_of_an_address_mremap_moved_no_page_to_changes_nothing() -> None:
    # reclaim frees the page between mremap's new vma and move_ptes(): the vma moves, no PTE
    # does; mprotect of the new address finds no PTE (the model raised KeyError here)
    w = _world("linux-current", {"mremap": 1, "mprotect": 1}, {"reclaim": 1}, mms=1, file_pages=0)
    w.run(["cpu0 mremap va=0x1000", "cpu1 try_to_unmap_one mm=A va=0x1000"])
    settle(w)
    assert w.mms[1].vma_writable.get(0x2000) and 0x2000 not in w.mms[1].ptes
    w.run(["cpu0 mprotect va=0x2000"])
    settle(w)
    assert not w.cpus[0].path and not w.violations()


def test_a_write_through_the_old_address_after_mremap_is_not_a_lost_soft_dirty_bit() -> None:
    # the moved PTE is soft-dirty (move_soft_dirty_pte()): pagemap shows the write at the new
    # address, so a write through the old address's cached entry loses nothing
    w = _world("linux-current", {"mremap": 1}, {"clear_refs": 1}, mms=1, file_pages=0)
    w.run(
        [
            "cpu1 clear_refs_write",
            "cpu1 clear_refs_pte_range",
            "cpu1 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu1 native_flush_tlb_multi__send_ipis",
            "cpu0 flush_smp_call_function_queue",
            "cpu0 flush_tlb_func",
            "cpu1 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu1 smp_call_function_many__csd_lock_wait",  # clear_refs returns
            "cpu1 user_write va=0x1000",  # faults: writable and soft-dirty again
            "cpu0 mremap va=0x1000",
            "cpu0 move_ptes",  # soft-dirty at 0x2000
            "cpu1 user_write va=0x1000",  # cached W=1 D=1 until the flush
        ]
    )
    assert w.mms[1].ptes[0x2000].soft_dirty
    assert not w.violations()
