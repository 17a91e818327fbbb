"""Each question of the 2019 review as a hand-written schedule: it breaks the variant that has
the problem and holds on the variant that answers it (no fuzzing here)."""

from __future__ import annotations

import pytest

from tests.schedules import ALL_SCHEDULES, CONCERNS, TLB_GEN_REVERSE_ORDER, Concern
from tlbfuzz.protocol import VARIANTS, Config, World, parse


def run(variant: str, schedule: tuple[str, ...], config: Config) -> World:
    w = World.initial(VARIANTS[variant], config)
    for i, line in enumerate(schedule):
        a = parse(line)
        assert w.is_enabled(a), f"step {i} {line!r} is not enabled on {variant}"
        w.apply(a)
    return w


def props(w: World) -> set[str]:
    return {v.prop for v in w.violations()}


@pytest.mark.parametrize("c", ALL_SCHEDULES, ids=lambda c: c.key)
def test_concern_breaks_the_variant_that_has_it(c: Concern) -> None:
    w = run(c.variant, c.schedule, c.config)
    assert c.prop in props(w), [str(v) for v in w.violations()]


@pytest.mark.parametrize("c", ALL_SCHEDULES, ids=lambda c: c.key)
def test_concern_prefix_is_clean(c: Concern) -> None:
    """The violation appears at the last step, not before: every step is needed."""
    w = run(c.variant, c.schedule[:-1], c.config)
    assert c.prop not in props(w)


@pytest.mark.parametrize("c", ALL_SCHEDULES, ids=lambda c: c.key)
def test_concern_holds_on_the_answering_variant(c: Concern) -> None:
    w = run(c.holds_on, c.holds_schedule or c.schedule, c.config)
    assert c.prop not in props(w), [str(v) for v in w.violations()]


@pytest.mark.parametrize(
    "c", [c for c in CONCERNS if c.blocked_at is not None], ids=lambda c: c.key
)
def test_answering_variant_refuses_the_racy_step(c: Concern) -> None:
    """The answering variant does not allow the racy step: its initiator still spins in
    csd_lock_wait(), or its receiver runs the flush synchronously."""
    assert c.blocked_at is not None
    w = run(c.holds_on, c.schedule[: c.blocked_at], c.config)
    assert not w.is_enabled(parse(c.schedule[c.blocked_at]))


def test_flush_tlb_func_two_flushes_processed_in_reverse_order() -> None:
    """tlb.c's example: CPU1 handles the partial flush (new_tlb_gen 2) before the full one
    (new_tlb_gen 1). With the ``+ 1`` check it does a full flush; without, X stays stale."""
    c = TLB_GEN_REVERSE_ORDER
    good = run("linux-5.2", c.schedule, c.config)
    assert "tlb_gen_soundness" not in props(good)
    assert (0, 0x1000) not in good.cpus[1].tlb  # the full flush removed X
    bad = run("flush-no-gen-check", c.schedule, c.config)
    assert (0, 0x1000) in bad.cpus[1].tlb  # only Y was flushed
    assert "tlb_gen_soundness" in props(bad)


def test_nmi_refused_in_window_on_rfc_async() -> None:
    """nmi_uaccess_okay() is false while flush_tlb_func() is pending after csd_unlock."""
    c = next(c for c in CONCERNS if c.key.startswith("3-"))
    w = run("rfc-async", c.schedule[:-1], c.config)
    assert w.cpus[1].async_func_in_progress == "flush_tlb_func"
    assert not w.variant.nmi_uaccess_okay(w, 1)
    assert VARIANTS["rfc-async-no-nmi-check"].nmi_uaccess_okay(w, 1)


def test_no_stale_entry_at_free_exempts_lazy_cpus() -> None:
    """Upstream leaves stale leaf entries on lazy CPUs (no IPI without freed_tables): the strict
    property must not call that a violation, or it would be misread as an upstream promise."""
    w = run(
        "linux-5.2",
        (
            "cpu1 user_read va=0x1000",
            "cpu1 enter_lazy_tlb next=kthread",
            *(
                "cpu0 madvise_dontneed va=0x1000",
                "cpu0 zap_pte_range",
                "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
                "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
                "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
                "cpu0 native_flush_tlb_others__send_ipis",
            ),
            "cpu0 tlb_finish_mmu",
        ),
        Config(),
    )
    assert (0, 0x1000) in w.cpus[1].tlb
    assert props(w) == set()


def pte_writable(w: World, va: int) -> bool:
    return w.mms[1].ptes[va].writable


def test_writeback_holds_the_page_lock() -> None:
    """Model bug, found by the explorer: two writebacks of one page interleaved (the second
    clear_page_dirty_for_io() ran between the first one's set_pte_at and writepage), which
    lock_page() forbids, and produced a lost write on linux-5.2. It must not be enabled."""
    prefix = (
        "cpu0 user_write va=0x2000",
        "cpu0 clear_page_dirty_for_io mm=A va=0x2000",
        "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
        "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
        "cpu0 native_flush_tlb_others__send_ipis",
        "cpu1 flush_smp_call_function_queue",
        "cpu1 flush_tlb_func",
        "cpu0 smp_call_function_many__csd_lock_wait",
        "cpu0 page_mkclean_one__set_pte_at",
    )
    w = run("linux-5.2", prefix, Config())
    # the write fault sleeps on the page lock: nothing is written, the PTE stays read-only
    w.apply(parse("cpu1 user_write va=0x2000"))
    assert (0, 0x2000) not in w.cpus[1].tlb
    assert not pte_writable(w, 0x2000)
    assert not w.is_enabled(parse("cpu1 clear_page_dirty_for_io mm=A va=0x2000"))
    w.apply(parse("cpu0 writepage"))  # unlock_page(): the retried write fault now completes
    w.apply(parse("cpu1 user_write va=0x2000"))
    assert pte_writable(w, 0x2000)
    assert w.is_enabled(parse("cpu1 clear_page_dirty_for_io mm=A va=0x2000"))


def test_smp_call_function_single_spins_in_csd_lock_on_a_csd_in_use() -> None:
    """``csd_lock(csd)`` waits for the previous use of this CPU's single-call csd to be
    unlocked. The model once ran a path's first step without its guard, so a second
    smp_call_function_single() to the same target overwrote a csd still queued there (found by
    mutation testing): the first request was lost and the second run twice."""
    from tlbfuzz.protocol import Budget

    w = World.initial(VARIANTS["linux-current"], Config(budget=Budget.only(ipi=2)))
    w.run(
        [
            "cpu0 smp_call_function_single target=cpu1 va=0x1000",
            "cpu0 smp_call_function_single target=cpu1 va=0x2000",  # csd_lock() spins
        ]
    )
    (key,) = w.cpus[1].queue
    assert w.csds[key].va == 0x1000  # the queued request is intact
    assert w.is_blocked(0)
    assert parse("cpu0 smp_call_function_single") not in w.enabled_actions()
    w.run(["cpu1 flush_smp_call_function_queue", "cpu1 csd_unlock"])  # ASYNC: unlock first
    w.run(["cpu0 smp_call_function_single"])  # the lock is free: queue the second request
    assert w.csds[key].va == 0x2000
    assert not w.cpus[0].path
