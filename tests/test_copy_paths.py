"""Migration, the COW fault and clear_refs against the paths they race with: hand-written
schedules of what each path must do when another changed the PTE under it (the orderings
that make them safe are in tests/schedules.py: MECHANISMS)."""

from __future__ import annotations

from typing import Any

from tlbfuzz.protocol import DEFAULT_PROPERTIES, VARIANTS, Budget, Config, World
from tlbfuzz.protocol.search import bfs
from tlbfuzz.protocol.state import ANON, FREE
from tlbfuzz.protocol.windows import windows_of
from tlbfuzz.protocol.world import HW_OPS, IRQ_OPS

IRQ_ENTRY = "flush_smp_call_function_queue"


def _world(variant: str, *per_cpu: dict[str, int], **shape: Any) -> World:
    budgets = tuple((cpu, Budget.only(**b)) for cpu, b in enumerate(per_cpu))
    config = Config(budget=Budget.only(), cpu_budget=budgets, reuse=False, **shape)
    return World.initial(VARIANTS[variant], config)


def settle(w: World, cpu: int | None = None) -> World:
    """Run every kernel path (or only ``cpu``'s) and the IPIs it sends to their end, in the
    canonical order: no hardware event, NMI or new path."""
    while True:
        acts = [
            a
            for a in w.enabled_actions()
            if a.op not in HW_OPS
            and a.op != "nmi"
            and a not in w.kernel.start_of
            and (cpu is None or a.cpu == cpu or a.op in IRQ_OPS or a.op == IRQ_ENTRY)
        ]
        if not acts:
            return w
        w.apply(acts[0])


def test_a_path_that_allocates_brings_its_spare_frame() -> None:
    plain = _world("linux-current", {"madvise": 1})
    w = _world("linux-current", {"migrate": 1}, {"wp_fault": 1})
    assert len(w.frames) == len(plain.frames) + 2
    assert all(f.kind == FREE and f.version == 0 for f in w.frames[len(plain.frames) :])
    # the allocator's reuse event leaves a never-used spare alone
    reusing = World.initial(VARIANTS["linux-current"], Config(budget=Budget.only(migrate=1)))
    assert not [a for a in reusing.enabled_actions() if a.op == "alloc_page"]


def test_migration_moves_the_page_and_frees_the_old_one() -> None:
    w = _world("linux-current", {"migrate": 1})
    w.run(["cpu1 user_write va=0x1000", "cpu0 try_to_migrate_one mm=A va=0x1000"])
    pte = w.mms[1].ptes[0x1000]
    assert (pte.present, pte.migration, pte.writable, pte.pfn) == (False, True, True, 1)
    settle(w)
    pte = w.mms[1].ptes[0x1000]
    assert pte.present and pte.writable and pte.pfn != 1
    assert w.frames[pte.pfn].kind == ANON and w.frames[pte.pfn].mapped
    assert w.frames[1].kind == FREE
    assert not w.violations()


def test_a_zap_clears_a_migration_entry_and_the_migration_frees_both_pages() -> None:
    """zap_pte_range() clears a migration entry like any non-present one; before, the model
    skipped it and remove_migration_ptes() mapped the page again after madvise returned."""
    w = _world("linux-current", {"migrate": 1}, {"madvise": 1})
    w.run(
        [
            "cpu0 try_to_migrate_one mm=A va=0x1000",
            "cpu1 madvise_dontneed va=0x1000",
        ]
    )
    settle(w, 1)  # flush_tlb_batched_pending() first (the migration's batch), then the zap
    assert not w.mms[1].ptes[0x1000].migration
    settle(w)
    pte = w.mms[1].ptes[0x1000]
    assert not pte.present and not pte.migration
    assert [f.kind for f in w.frames[len(w.frames) - 1 :]] == [FREE]
    assert w.frames[1].kind == FREE
    assert not w.violations()


def test_mprotect_makes_a_migration_entry_readable() -> None:
    """change_pte_range(): ``make_readable_migration_entry()``; the page comes back
    read-only, so mprotect's promise holds after the migration ends."""
    w = _world("linux-current", {"migrate": 1}, {"mprotect": 1})
    w.run(["cpu0 try_to_migrate_one mm=A va=0x1000", "cpu1 mprotect va=0x1000"])
    settle(w, 1)  # the batch flushed first, then change_pte_range(), mprotect returns
    assert w.mms[1].ptes[0x1000].migration and not w.mms[1].ptes[0x1000].writable
    settle(w)
    pte = w.mms[1].ptes[0x1000]
    assert pte.present and not pte.writable
    assert not w.violations()


def test_a_cow_fault_whose_pte_changed_drops_its_copy() -> None:
    """wp_page_copy(): ``if (likely(pte_same(...)))`` else the new page is released."""
    w = _world("linux-current", {"clear_refs": 1, "madvise": 1}, {"wp_fault": 1})
    settle(w.run(["cpu0 clear_refs_write"]))  # read-only and clean, flushed, returned
    w.run(["cpu1 do_wp_page va=0x1000", "cpu1 wp_page_copy__cow_user_page"])
    old, new = w.cpus[1].locals.pfns
    assert w.frames[new].kind == ANON
    settle(w.run(["cpu0 madvise_dontneed va=0x1000"]))  # zaps before the fault relocks
    assert w.frames[new].kind == FREE  # the copy was dropped
    assert w.frames[old].kind == FREE  # the zap freed the old page
    assert not w.mms[1].ptes[0x1000].present
    assert not w.violations()


def test_the_5_2_write_fault_reuses_the_page() -> None:
    w = _world("linux-5.2", {"clear_refs": 1}, {"wp_fault": 1})
    settle(w.run(["cpu0 clear_refs_write"]))
    w.run(["cpu1 do_wp_page va=0x1000"])
    pte = w.mms[1].ptes[0x1000]
    assert (pte.present, pte.writable, pte.soft_dirty, pte.pfn) == (True, True, True, 1)
    assert not w.cpus[1].path  # reuse_swap_page(): no copy, the fault is done


def test_a_write_after_clear_refs_faults_and_sets_soft_dirty() -> None:
    w = _world("linux-current", {"clear_refs": 1})
    w.run(["cpu0 user_write va=0x1000"])
    settle(w.run(["cpu0 clear_refs_write"]))
    assert not w.mms[1].ptes[0x1000].soft_dirty
    assert w.run(["cpu0 user_write va=0x1000"]).mms[1].ptes[0x1000].soft_dirty
    assert not w.violations()


def test_two_clear_refs_in_flight_promise_only_what_each_left() -> None:
    """A PTE another clear_refs cleaned again after this one's flush is not this one's
    promise: a write there may count as one before the other. The model first recorded the
    PTE as it found it at return, and broke no_lost_soft_dirty on 5.2 in 13 steps with two
    clear_refs under mmap_lock for read."""
    w = _world("linux-5.2", {"clear_refs": 1}, {"clear_refs": 1})
    w.run(["cpu0 clear_refs_write", "cpu0 clear_refs_pte_range"])
    w.run(
        [
            "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu0 native_flush_tlb_others__send_ipis",
            "cpu1 flush_smp_call_function_queue",
            "cpu1 flush_tlb_func",
            "cpu1 user_write va=0x1000",  # faults: writable, soft-dirty again
            "cpu0 tlb_fill va=0x1000",  # cpu0 caches it writable
            "cpu1 clear_refs_write",
            "cpu1 clear_refs_pte_range",  # cleaned again; cpu1's flush is still to come
            "cpu0 smp_call_function_many__csd_lock_wait",  # cpu0's clear_refs returns
            "cpu0 user_write va=0x1000",
        ]
    )
    assert not w.violations(["no_lost_soft_dirty"])
    assert 0x1000 not in w.mms[1].soft_dirty_clean


def test_copy_windows_are_asked_only_of_searches_that_start_those_paths() -> None:
    assert "page_in_move_still_cached" not in windows_of(_world("linux-current", {"madvise": 1}))
    assert "clean_pte_still_writable" not in windows_of(_world("linux-current", {"madvise": 1}))
    both = windows_of(_world("linux-current", {"migrate": 1}, {"clear_refs": 1}))
    assert {"page_in_move_still_cached", "clean_pte_still_writable"} <= set(both)


def test_the_5_2_fault_never_copies_so_the_move_window_is_never_reached() -> None:
    w = _world("linux-5.2", {"clear_refs": 1}, {"wp_fault": 1}, mms=1, file_pages=0)
    r = bfs(w, DEFAULT_PROPERTIES, 200, windows=True)
    assert r.exhausted and r.violation is None
    assert r.reached["page_in_move_still_cached"] == 0
    assert r.reached["clean_pte_still_writable"] > 0


def test_a_migrated_prot_none_page_comes_back_read_only() -> None:
    """pte_write() of a PROT_NONE entry is false (pte_modify(PAGE_NONE) drops RW), so
    try_to_migrate_one() writes a readable migration entry; the model kept NUMA's W bit and
    mapped the page back writable."""
    w = _world("linux-current", {"numa": 1}, {"migrate": 1})
    settle(w.run(["cpu0 change_prot_numa va=0x1000"]))
    assert w.mms[1].ptes[0x1000].protnone
    w.run(["cpu1 try_to_migrate_one mm=A va=0x1000"])
    assert not w.mms[1].ptes[0x1000].writable
    settle(w)
    pte = w.mms[1].ptes[0x1000]
    assert pte.present and not pte.writable
    assert not w.violations()


def test_each_copier_of_one_page_knows_whether_a_write_came_after_its_own_copy() -> None:
    """Two copies of one page in flight: a write between them is lost to the first copy
    only. The first ghost was one flag per frame, which the second copy reset, so the
    first copier's install reported nothing (found in review)."""
    from tlbfuzz.protocol.migrate import lost_to_copy, take_copy

    w = _world("linux-current", cpus=3)
    w.run(["cpu2 user_write va=0x1000"])  # cpu2 caches the page writable and dirty
    take_copy(w, 0, 1)
    w.run(["cpu2 user_write va=0x1000"])  # lands after cpu0's copy
    take_copy(w, 1, 1)  # cpu1's copy has it
    assert lost_to_copy(w, 0, 1)
    assert not lost_to_copy(w, 1, 1)
    w.run(["cpu2 user_write va=0x1000"])
    assert lost_to_copy(w, 1, 1)


def test_the_5_2_reuse_waits_for_the_page_lock() -> None:
    """do_wp_page() on 5.2 reuses an anonymous page under its lock (``trylock_page()``,
    else ``lock_page()``): while a migration still holds the new page's lock, after
    remove_migration_ptes() mapped it read-only, the fault leaves the PTE alone (found in
    review: the model reused the page regardless)."""
    w = _world("linux-5.2", {"clear_refs": 1, "migrate": 1}, {"wp_fault": 1})
    settle(w.run(["cpu0 clear_refs_write"]))  # read-only, clean, flushed
    w.run(["cpu0 try_to_migrate_one mm=A va=0x1000"])
    steps = w.kernel.steps["migrate"]
    while steps[w.cpus[0].pc].name != "migrate_folio_done":
        w.apply(next(a for a in w.enabled_actions() if a.op not in HW_OPS and a.op != "nmi"))
    pte = w.mms[1].ptes[0x1000]
    assert pte.present and not pte.writable  # mapped again, the page still locked
    w.run(["cpu1 do_wp_page va=0x1000"])
    assert not w.mms[1].ptes[0x1000].writable
    settle(w)
    w.run(["cpu1 user_write va=0x1000"])  # unlocked now: the inline fault reuses it
    assert w.mms[1].ptes[0x1000].writable


# A finding, on both kernels: clear_soft_dirty() cleans a migration entry's soft-dirty bit
# without write-protecting it (``else if (is_swap_pte(ptent)) { ptent =
# pte_swp_clear_soft_dirty(ptent); set_pte_at(...); }``), and remove_migration_pte() maps a
# writable entry writable (``if (is_writable_migration_entry(entry)) pte = pte_mkwrite()``;
# 5.2 ``maybe_mkwrite()``) with soft-dirty clear: the next write does not fault.
SOFT_DIRTY_THROUGH_MIGRATION = (
    "cpu0 clear_refs_write",
    "cpu1 try_to_migrate_one mm=A va=0x1000",  # a writable migration entry
    "cpu0 clear_refs_pte_range",  # cleans the entry's soft-dirty bit; no write-protect
    "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu0 native_flush_tlb_multi__send_ipis",
    "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
    "cpu1 arch_tlbbatch_flush",
    "cpu1 native_flush_tlb_multi__send_ipis",
    "cpu0 flush_smp_call_function_queue",
    "cpu0 flush_tlb_func",
    "cpu1 flush_tlb_mm_range__flush_tlb_func_local",
    "cpu1 smp_call_function_many__csd_lock_wait",
    "cpu1 migrate_folio_move__copy",
    "cpu1 flush_smp_call_function_queue",
    "cpu1 flush_tlb_func",
    "cpu0 smp_call_function_many__csd_lock_wait",  # clear_refs returns
    "cpu1 remove_migration_ptes",  # writable, soft-dirty clear
    "cpu0 user_write va=0x1000",  # no fault: pagemap never shows it
)


def _clear_refs_against_migrate(variant: str) -> World:
    return _world(variant, {"clear_refs": 1}, {"migrate": 1}, mms=1, file_pages=0)


def test_a_migration_entry_cleaned_by_clear_refs_comes_back_writable_and_clean() -> None:
    w = _clear_refs_against_migrate("linux-current")
    w.run(SOFT_DIRTY_THROUGH_MIGRATION[:-1])
    pte = w.mms[1].ptes[0x1000]
    assert pte.present and pte.writable and not pte.soft_dirty
    w.run(SOFT_DIRTY_THROUGH_MIGRATION[-1:])
    assert [v.prop for v in w.violations()] == ["no_lost_soft_dirty"]


def test_clear_refs_against_migration_loses_a_soft_dirty_bit_on_both_kernels() -> None:
    """The shortest: 18 steps on linux-current (the schedule above), 19 on linux-5.2."""
    for variant, length in (("linux-current", 18), ("linux-5.2", 19)):
        r = bfs(_clear_refs_against_migrate(variant), ["no_lost_soft_dirty"], 20)
        assert r.schedule is not None, variant
        assert len(r.schedule) == length, [str(a) for a in r.schedule]
