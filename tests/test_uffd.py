"""UFFDIO_WRITEPROTECT against the write fault and migration (the ordering that makes two
write-protects in flight safe, the nested flush, is in tests/schedules.py: MECHANISMS)."""

from __future__ import annotations

from tests.test_copy_paths import _world, settle


def test_5_2_has_no_uffdio_writeprotect() -> None:
    w = _world("linux-5.2", {"uffd_wp": 1})
    assert not [a for a in w.enabled_actions() if a.op == "mwriteprotect_range"]
    w = _world("linux-current", {"uffd_wp": 1})
    assert [a for a in w.enabled_actions() if a.op == "mwriteprotect_range"]


def test_a_write_after_the_ioctl_goes_to_the_monitor_not_to_do_wp_page() -> None:
    w = _world("linux-current", {"uffd_wp": 1}, {"wp_fault": 1}, mms=1, file_pages=0)
    w.run(["cpu0 mwriteprotect_range va=0x1000"])
    settle(w)
    pte = w.mms[1].ptes[0x1000]
    assert pte.present and not pte.writable and pte.uffd_wp
    w.run(["cpu0 user_write va=0x1000"])  # handle_userfault(): the write waits
    assert w.mms[1].ptes[0x1000] == pte
    assert (w.cpus[0].cr3_asid, 0x1000) not in w.cpus[0].tlb
    # and the copying fault path does not take a uffd-wp PTE either
    assert not [a for a in w.enabled_actions() if a.op == "do_wp_page"]
    assert not w.violations()


def test_a_migration_keeps_the_mark_and_maps_the_copy_read_only() -> None:
    w = _world("linux-current", {"uffd_wp": 1}, {"migrate": 1}, mms=1, file_pages=0)
    w.run(["cpu0 mwriteprotect_range va=0x1000"])
    settle(w)
    w.run(["cpu1 try_to_migrate_one mm=A va=0x1000"])
    entry = w.mms[1].ptes[0x1000]
    assert entry.migration and entry.uffd_wp and not entry.writable
    settle(w)
    pte = w.mms[1].ptes[0x1000]
    assert pte.present and pte.pfn != 1 and pte.uffd_wp and not pte.writable
    assert not w.violations()


# --- a model bug found in review, a schedule the model got wrong before its fix ----------------


def test_mainline_records_no_flush_for_a_prot_none_pte_it_write_protects() -> None:
    """x86 pte_needs_flush(): ``if (!(pte_flags(oldpte) & _PAGE_PRESENT)) return false;`` --
    a NUMA-hinted (PROT_NONE) PTE is not present, so uffd-wp (or mprotect) over it asks for
    no flush (the model recorded one, an extra flush that could hide a race); 5.2 counted
    every pte_present() entry (``pages++``) and flushes."""
    for variant, flushes in (("linux-current", False), ("linux-5.2", True)):
        w = _world(variant, {"numa": 1, "mprotect": 1}, mms=1, file_pages=0)
        w.run(["cpu0 change_prot_numa va=0x1000"])
        settle(w)
        assert w.mms[1].ptes[0x1000].protnone and w.mms[1].ptes[0x1000].writable
        w.run(["cpu0 mprotect va=0x1000", "cpu0 change_pte_range"])
        assert w.cpus[0].locals.cleared is flushes, variant
        settle(w)
        assert not w.violations()
