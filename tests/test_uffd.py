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
