"""Reachability windows: a held property is reported with the windows the search reached, and
a window a variant cannot reach is reported as never reached."""

from __future__ import annotations

import attrs
import pytest

from tests.schedules import TSO_ORDERINGS, munmap_with_ipi
from tests.test_mm import _config as _mechanism_config
from tlbfuzz.protocol import VARIANTS, Budget, Config, World, parse
from tlbfuzz.protocol.search import bfs
from tlbfuzz.protocol.windows import WINDOWS, reached, windows_of

LAZY = TSO_ORDERINGS[0]
"""The smp_mb() before a lazy CPU reads tlb_gen, taken out."""

MADVISE = Config(budget=Budget.only(madvise=1), reuse=False)

GENERAL = {name for name, win in WINDOWS.items() if not win.kinds and not win.memory_model}
"""The windows every search is asked about (the others belong to path kinds, or to x86-TSO)."""


ONE_MADVISE = Config(budget=Budget.only(), cpu_budget=((0, Budget.only(madvise=1)),), reuse=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [
        ONE_MADVISE,  # cpu0 flushes, cpu1 caches and takes IPIs: 2 s
        # a madvise on each CPU: 172,361 states, 68 s since the mm layer
        pytest.param(MADVISE, marks=pytest.mark.nightly),
    ],
    ids=["cpu0-madvise", "madvise-each"],
)
def test_the_posted_rfc_reaches_the_async_window_and_5_2_never_does(config: Config) -> None:
    """5.2's initiator waits in csd_lock_wait() until every target has run its flush, so a
    flush csd can never be pending after it returned: the whole state space never reaches
    that window, and says so; the RFC as posted reaches it."""
    sync = bfs(World.initial(VARIANTS["linux-5.2"], config), [], 200, windows=True)
    assert sync.exhausted
    assert sync.reached["flush_ipi_pending_after_return"] == 0
    assert sync.reached["stale_entry_during_flush"] > 0
    posted = bfs(World.initial(VARIANTS["rfc-async-posted"], config), [], 8, windows=True)
    assert posted.reached["flush_ipi_pending_after_return"] > 0


def test_the_review_schedules_pass_through_their_windows() -> None:
    w = World.initial(VARIANTS["rfc-async-posted"])
    assert reached(w) == []
    w.run(
        [
            "cpu0 user_read va=0x1000",
            "cpu1 madvise_dontneed va=0x1000",
            "cpu1 zap_pte_range",
            "cpu1 tlb_finish_mmu__mm_tlb_flush_nested",
            "cpu1 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu1 native_flush_tlb_multi__send_ipis",
        ]
    )
    assert "stale_entry_during_flush" in reached(w)
    w.run(["cpu1 flush_tlb_mm_range__flush_tlb_func_local", "cpu1 tlb_finish_mmu"])
    assert "flush_ipi_pending_after_return" in reached(w)


def test_a_context_switch_opens_the_cr3_window() -> None:
    w = World.initial(VARIANTS["linux-current"])
    w.run(
        [
            "cpu0 switch_mm_irqs_off__loaded_mm_switching next=B",
        ]
    )
    assert "loaded_mm_cr3_disagree" in reached(w)


def test_every_window_has_a_summary() -> None:
    assert all(win.summary for win in WINDOWS.values())


@pytest.mark.slow
def test_a_held_fuzz_run_says_which_windows_it_reached() -> None:
    from tlbfuzz.fuzz.runner import Held, fuzz_variant

    (o,) = fuzz_variant(VARIANTS["linux-5.2"], ["no_deadlock"], max_examples=150, seed=1)
    assert isinstance(o, Held)
    assert set(o.windows) == GENERAL  # no migrate, wp_fault or clear_refs drawn
    assert o.windows["stale_entry_during_flush"] > 0
    assert o.windows["flush_ipi_pending_after_return"] == 0  # 5.2 waits: never reached


@pytest.mark.slow
def test_explore_prints_what_a_held_claim_reached(capsys: pytest.CaptureFixture[str]) -> None:
    from tlbfuzz.fuzz.cli import main

    argv = ["explore", "-v", "linux-5.2", "--budget", "madvise=1", "-p", "no_deadlock"]
    assert main([*argv, "--depth", "6"]) == 0
    out = capsys.readouterr().out
    assert "windows reached: stale_entry_during_flush (" in out
    assert "never reached: flush_ipi_pending_after_return" in out
    assert all(len(line) <= 72 for line in out.splitlines() if "reached" in line)


def test_the_mm_layers_schedules_pass_through_their_windows() -> None:
    """Two madvises of one page: the second finds nothing to change while both gathers are
    open; on 5.2 a dirty file page leaves the rmap while a TLB still caches it."""
    w = World.initial(VARIANTS["linux-current"])
    w.run(
        [
            "cpu0 madvise_dontneed va=0x1000",
            "cpu0 zap_pte_range",
            "cpu1 madvise_dontneed va=0x1000",
            "cpu1 zap_pte_range",
        ]
    )
    assert {"nested_gathers", "syscall_found_nothing"} <= set(reached(w))
    old = World.initial(VARIANTS["linux-5.2"])
    old.run(["cpu0 user_write va=0x2000", "cpu1 madvise_dontneed va=0x2000", "cpu1 zap_pte_range"])
    assert "unmapped_page_still_cached" in reached(old)
    now = World.initial(VARIANTS["linux-current"])
    now.run(["cpu0 user_write va=0x2000", "cpu1 madvise_dontneed va=0x2000", "cpu1 zap_pte_range"])
    assert "unmapped_page_still_cached" not in reached(now)  # the rmap waits for the flush


def test_only_rcu_table_freeing_reaches_the_grace_period_window() -> None:
    munmap = munmap_with_ipi()
    current = World.initial(VARIANTS["linux-current"]).run(munmap)
    assert "table_awaiting_grace_period" in reached(current)
    assert [str(a) for a in current.enabled_actions() if a.op == "tlb_remove_table_rcu"] == [
        "tlb_remove_table_rcu pfn=0"
    ]
    concurrent = World.initial(VARIANTS["linux-concurrent"]).run(munmap)
    assert "table_awaiting_grace_period" not in reached(concurrent)


def test_a_missing_barriers_schedule_passes_through_the_store_buffer_window() -> None:
    """LAZY_NO_MB: cpu1's ``is_lazy = false`` waits in its buffer while cpu0 is inside its
    madvise; the window is asked only of a search under tso."""
    config = attrs.evolve(_mechanism_config(LAZY), memory_model="tso")
    w = World.initial(LAZY.moved, config)
    assert "store_buffered_during_kernel_path" in windows_of(w)
    sc = World.initial(LAZY.moved, attrs.evolve(config, memory_model="sc"))
    assert "store_buffered_during_kernel_path" not in windows_of(sc)
    seen = []
    for line in LAZY.schedule:
        w.apply(parse(line))
        seen.append("store_buffered_during_kernel_path" in reached(w))
    assert seen.index(True) == LAZY.schedule.index("cpu1 store_buffer_drain") - 1


@pytest.mark.slow
def test_a_held_run_under_tso_counts_the_store_buffer_window_and_under_sc_leaves_it_out() -> None:
    from tlbfuzz.fuzz.runner import Held, fuzz_variant

    window = "store_buffered_during_kernel_path"
    current = VARIANTS["linux-current"]
    tso = {"memory_model": "tso"}
    (o,) = fuzz_variant(current, ["no_deadlock"], max_examples=60, seed=1, cpus=2, shape=tso)
    assert isinstance(o, Held) and o.windows[window] > 0
    (o,) = fuzz_variant(current, ["no_deadlock"], max_examples=20, seed=1, cpus=2)
    assert isinstance(o, Held) and window not in o.windows
