"""The review's concerns as plain schedules (lists of actions), shared by tests and the corpus.

Each concern has the schedule that breaks the variant that has the problem, and the variant that
answers it. Where the answering variant does not even allow the racy step (the initiator is still
spinning in csd_lock_wait()), ``blocked_at`` says which step of the schedule it refuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from tlbfuzz.protocol import VARIANTS, Budget, Config, Variant

if TYPE_CHECKING:
    from tlbfuzz.protocol import Site


@attrs.frozen
class Concern:
    key: str
    question: str
    variant: str
    prop: str
    schedule: tuple[str, ...]
    holds_on: str
    config: Config = attrs.field(factory=Config)
    blocked_at: int | None = None
    """Index of the step the answering variant refuses (None: it runs the whole schedule)."""
    holds_schedule: tuple[str, ...] = ()
    """The same race as the answering variant lets it happen (if it differs)."""


MADVISE_5_2 = (
    "cpu0 madvise_dontneed va=0x1000",
    "cpu0 zap_pte_range",
    "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
    "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
    "cpu0 native_flush_tlb_others__send_ipis",
)
MADVISE_CONCURRENT = (
    "cpu0 madvise_dontneed va=0x1000",
    "cpu0 zap_pte_range",
    "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
    "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu0 native_flush_tlb_multi__send_ipis",
    "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
)

_FLUSH_5_2 = (
    "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
    "cpu0 native_flush_tlb_others__send_ipis",
)
_FLUSH_2019 = (
    "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu0 native_flush_tlb_multi__send_ipis",
    "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
)


def munmap_with_ipi(flush: tuple[str, ...] = _FLUSH_2019) -> tuple[str, ...]:
    """cpu0 munmaps (freed_tables) and flushes (``flush``: the kernel's order of the flush
    steps), cpu1 takes the IPI and flushes, cpu0 stops waiting and frees."""
    return (
        "cpu0 munmap",
        "cpu0 unmap_vmas",
        "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
        *flush,
        "cpu1 flush_smp_call_function_queue",
        "cpu1 flush_tlb_func",
        "cpu0 smp_call_function_many__csd_lock_wait",
        "cpu0 tlb_finish_mmu",
    )


CONCERNS: tuple[Concern, ...] = (
    Concern(
        key="1-free-before-remote-flush",
        question="what stops us freeing a page before the remote CPU is done with it?",
        variant="rfc-async-posted",
        prop="no_use_after_free",
        schedule=(
            "cpu1 user_read va=0x1000",
            *MADVISE_CONCURRENT,
            "cpu0 tlb_finish_mmu",
            "cpu1 user_read va=0x1000",
        ),
        holds_on="linux-5.2",
        holds_schedule=(
            "cpu1 user_read va=0x1000",
            *MADVISE_5_2,
            "cpu1 user_read va=0x1000",
            "cpu1 flush_smp_call_function_queue",
            "cpu1 flush_tlb_func",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 tlb_finish_mmu",
        ),
    ),
    Concern(
        key="1b-free-before-remote-flush-irqs-off",
        question="what if IRQs are off on the remote CPU? (Andy Lutomirski) -- a demonstration; "
        "the shortest schedule for this property is concern 1's",
        variant="rfc-async-posted",
        prop="no_use_after_free",
        schedule=(
            "cpu1 user_read va=0x1000",
            "cpu1 local_irq_disable va=0x1000",
            *MADVISE_CONCURRENT,
            "cpu0 tlb_finish_mmu",
            "cpu1 copy_from_user",
        ),
        holds_on="linux-5.2",
        holds_schedule=(
            "cpu1 user_read va=0x1000",
            "cpu1 local_irq_disable va=0x1000",
            *MADVISE_5_2,
            "cpu1 copy_from_user",
            "cpu1 local_irq_enable",
            "cpu1 flush_smp_call_function_queue",
            "cpu1 flush_tlb_func",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 tlb_finish_mmu",
        ),
    ),
    Concern(
        key="2-speculation-in-handler-before-invlpg",
        question="speculation restarts inside the handler before INVLPG, after the page is "
        "freed and reused (Peter Zijlstra)",
        variant="rfc-async",
        prop="no_stale_entry_at_free",
        schedule=(
            "cpu1 user_read va=0x1000",
            *MADVISE_CONCURRENT,
            "cpu1 flush_smp_call_function_queue",
            "cpu1 csd_unlock",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 tlb_finish_mmu",
        ),
        holds_on="linux-5.2",
        holds_schedule=(
            "cpu1 user_read va=0x1000",
            *MADVISE_5_2,
            "cpu1 flush_smp_call_function_queue",
            "cpu1 flush_tlb_func",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 tlb_finish_mmu",
        ),
    ),
    Concern(
        key="3-nmi-in-the-window",
        question="an NMI that reads user memory between csd_unlock and the flush",
        variant="rfc-async-no-nmi-check",
        prop="nmi_uaccess_safety",
        schedule=(
            "cpu1 user_read va=0x1000",
            *MADVISE_CONCURRENT,
            "cpu1 flush_smp_call_function_queue",
            "cpu1 csd_unlock",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 tlb_finish_mmu",
            "cpu1 nmi va=0x1000",
        ),
        holds_on="rfc-async",
    ),
    Concern(
        key="4-flush-queued-behind-uaccess-ipi",
        question="the flush IPI stuck behind another smp_call_function that does user access",
        variant="rfc-async-batch-ack",
        prop="no_use_after_free",
        schedule=(
            "cpu1 user_read va=0x1000",
            "cpu0 smp_call_function_single target=cpu1 va=0x1000",
            *MADVISE_CONCURRENT,
            "cpu1 flush_smp_call_function_queue",
            "cpu1 csd_unlock",
            "cpu1 csd_unlock",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 tlb_finish_mmu",
            "cpu1 read_user_func",
        ),
        holds_on="rfc-async",
        blocked_at=10,
        holds_schedule=(
            "cpu1 user_read va=0x1000",
            "cpu0 smp_call_function_single target=cpu1 va=0x1000",
            *MADVISE_CONCURRENT,
            "cpu1 flush_smp_call_function_queue",
            "cpu1 csd_unlock",
            "cpu1 read_user_func",
            "cpu1 csd_unlock",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 tlb_finish_mmu",
            "cpu1 flush_tlb_func",
        ),
    ),
    Concern(
        key="5-dirty-bit-read-before-flush",
        question="dirty tracking needs the flush to happen for real before the dirty bit is "
        "read (Andy Lutomirski)",
        variant="rfc-async-posted",
        prop="no_lost_write",
        schedule=(
            "cpu1 user_write va=0x2000",
            "cpu0 clear_page_dirty_for_io mm=A va=0x2000",
            "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu0 native_flush_tlb_multi__send_ipis",
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu0 page_mkclean_one__set_pte_at",
            "cpu0 writepage",
            "cpu1 user_write va=0x2000",
        ),
        holds_on="linux-5.2",
        holds_schedule=(
            "cpu1 user_write va=0x2000",
            "cpu0 clear_page_dirty_for_io mm=A va=0x2000",
            "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu0 native_flush_tlb_others__send_ipis",
            "cpu1 user_write va=0x2000",
            "cpu1 flush_smp_call_function_queue",
            "cpu1 flush_tlb_func",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 page_mkclean_one__set_pte_at",
            "cpu0 writepage",
            "cpu1 user_write va=0x2000",
        ),
    ),
    Concern(
        key="6-page-table-freed-async",
        question="page tables freed while a remote CPU can still walk them speculatively",
        variant="rfc-async-freed-tables",
        prop="no_walk_of_freed_page_table",
        schedule=(
            "cpu1 tlb_fill va=0x1000",
            "cpu0 munmap",
            "cpu0 unmap_vmas",
            "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
            "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu0 native_flush_tlb_multi__send_ipis",
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu1 flush_smp_call_function_queue",
            "cpu1 csd_unlock",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 tlb_finish_mmu",
        ),
        holds_on="rfc-async",
        blocked_at=8,
        holds_schedule=("cpu1 tlb_fill va=0x1000", *munmap_with_ipi()),
    ),
    Concern(
        key="6b-page-table-freed-lazy-cpu",
        question="page tables freed while a lazy CPU still has the mm in CR3 (Rik van Riel 2018)",
        variant="lazy-skip-freed-tables",
        prop="no_walk_of_freed_page_table",
        schedule=(
            "cpu1 tlb_fill va=0x1000",
            "cpu1 enter_lazy_tlb next=kthread",
            "cpu0 munmap",
            "cpu0 unmap_vmas",
            "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
            "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu0 native_flush_tlb_others__send_ipis",
            "cpu0 tlb_finish_mmu",
        ),
        holds_on="linux-5.2",
        blocked_at=8,
        holds_schedule=(
            "cpu1 tlb_fill va=0x1000",
            "cpu1 enter_lazy_tlb next=kthread",
            "cpu0 munmap",
            "cpu0 unmap_vmas",
            "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
            "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu0 native_flush_tlb_others__send_ipis",
            "cpu1 flush_smp_call_function_queue",
            "cpu1 flush_tlb_func",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 tlb_finish_mmu",
        ),
    ),
    Concern(
        key="7-flush-info-reused-before-remote-reads-it",
        question="the remote CPU reads flush_tlb_info after the initiator reused it",
        variant="rfc-async-pointer-info",
        prop="request_integrity",
        schedule=(
            "cpu0 mprotect va=0x2000",
            "cpu0 change_pte_range",
            "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu0 native_flush_tlb_multi__send_ipis",
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu1 flush_smp_call_function_queue",
            "cpu1 csd_unlock",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 madvise_dontneed va=0x1000",
            "cpu0 zap_pte_range",
            "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
            "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu1 flush_tlb_func",
        ),
        holds_on="rfc-async",
    ),
)

TLB_GEN_LOCAL_PARTIAL = Concern(
    key="tlb-gen-local-partial-flush-skips-pending-gen",
    question="without the '+ 1' check, a local partial flush at new_tlb_gen 2 claims gen 2 "
    "while gen 1's flush (another CPU's) is still pending here (found by tlbfuzz fuzz with two "
    "madvises; since the mm layer, mm_tlb_flush_nested() makes those flushes full, and the "
    "shortest race is writeback's flush against mprotect's, which 5.2 does without a gather)",
    variant="flush-no-gen-check",
    prop="tlb_gen_soundness",
    schedule=(
        "cpu0 user_write va=0x2000",
        "cpu0 mprotect va=0x1000",
        "cpu0 change_pte_range",
        "cpu1 clear_page_dirty_for_io mm=A va=0x2000",
        "cpu1 flush_tlb_mm_range__inc_mm_tlb_gen",
        "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
        "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
    ),
    holds_on="linux-5.2",
)

_SWITCH_THEN_FLUSH = (
    "cpu1 switch_mm_irqs_off__choose_new_asid",
    "cpu1 switch_mm_irqs_off__load_new_mm_cr3",
    "cpu1 finish_task_switch",
    "cpu1 flush_smp_call_function_queue",
    "cpu1 flush_tlb_func",
    "cpu0 smp_call_function_many__csd_lock_wait",
    "cpu0 tlb_finish_mmu",
)
"""linux-current: the switching CPU finishes, then takes the IPI it was sent (it stayed in the
cpumask), and only then does the initiator free."""


def _switch_window_free_tables(flush: tuple[str, ...]) -> tuple[str, ...]:
    """cpu1 caches A's page table and starts leaving A (its cpumask bit goes first); cpu0
    munmaps A with the variant's flush order, skips cpu1, and frees the page-table page."""
    return (
        "cpu1 tlb_fill va=0x1000",
        "cpu1 switch_mm_irqs_off__cpumask_set_cpu next=B",
        "cpu0 munmap",
        "cpu0 unmap_vmas",
        "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
        *flush,
        "cpu0 tlb_finish_mmu",
    )


SWITCH_WINDOW_5_2 = Concern(
    key="finding-5.2-switch-leaves-cpumask-before-cr3",
    question="(a model finding, not a review question) 5.2's switch_mm_irqs_off() clears prev's "
    "mm_cpumask bit before it loads the new CR3; a freed_tables flush in that window skips the "
    "CPU, which still has prev's page tables in CR3 and in its paging-structure cache",
    variant="linux-5.2",
    prop="no_walk_of_freed_page_table",
    schedule=_switch_window_free_tables(_FLUSH_5_2),
    holds_on="linux-current",
    holds_schedule=(
        "cpu1 tlb_fill va=0x1000",
        "cpu1 switch_mm_irqs_off__loaded_mm_switching next=B",
        "cpu1 switch_mm_irqs_off__cpumask_set_cpu",
        "cpu0 munmap",
        "cpu0 unmap_vmas",
        "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
        "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
        "cpu0 native_flush_tlb_multi__send_ipis",
        "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
        *_SWITCH_THEN_FLUSH,
    ),
)

SWITCH_WINDOW_RFC_ASYNC = Concern(
    key="finding-rfc-async-inherits-the-5.2-switch-window",
    question="(found by tlbfuzz fuzz) rfc-async sits on the 2019 switch_mm_irqs_off(), so a "
    "CPU leaving the mm is skipped while it still caches a translation; shorter than concern 2",
    variant="rfc-async",
    prop="no_stale_entry_at_free",
    schedule=(
        "cpu1 tlb_fill va=0x1000",
        "cpu0 munmap",
        "cpu0 unmap_vmas",
        "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
        "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
        "cpu1 switch_mm_irqs_off__cpumask_set_cpu next=B",
        "cpu0 native_flush_tlb_multi__send_ipis",
        "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
        "cpu0 tlb_finish_mmu",
    ),
    holds_on="linux-current",
    holds_schedule=SWITCH_WINDOW_5_2.holds_schedule,
)

SWITCH_WINDOW_FREED_TABLES = Concern(
    key="finding-rfc-async-freed-tables-inherits-the-switch-window",
    question="(found by the fuzzer) the 2019 switch window also frees page tables "
    "under a CPU that is leaving the mm; shorter than concern 6's handler window",
    variant="rfc-async-freed-tables",
    prop="no_walk_of_freed_page_table",
    schedule=_switch_window_free_tables(_FLUSH_2019),
    holds_on="linux-current",
    holds_schedule=SWITCH_WINDOW_5_2.holds_schedule,
)


def _switch_window_nmi(variant: str, prop: str, flush: tuple[str, ...]) -> Concern:
    return Concern(
        key=f"finding-{variant}-nmi-in-the-switch-window",
        question="(found by bench/bench_race.py) between cpumask_clear_cpu(prev) and "
        "loaded_mm = LOADED_MM_SWITCHING, a remote madvise skips this CPU and frees the page; "
        "an NMI there passes nmi_uaccess_okay() (loaded_mm is still current->mm) and reads it "
        "through the stale TLB entry",
        variant=variant,
        prop=prop,
        schedule=(
            "cpu1 user_read va=0x1000",
            "cpu1 switch_mm_irqs_off__cpumask_set_cpu next=B",
            "cpu0 madvise_dontneed va=0x1000",
            "cpu0 zap_pte_range",
            "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
            *flush,
            "cpu0 tlb_finish_mmu",
            "cpu1 nmi va=0x1000",
        ),
        holds_on="linux-current",
        holds_schedule=(
            "cpu1 user_read va=0x1000",
            "cpu1 switch_mm_irqs_off__loaded_mm_switching next=B",
            "cpu1 switch_mm_irqs_off__cpumask_set_cpu",
            "cpu0 madvise_dontneed va=0x1000",
            "cpu0 zap_pte_range",
            "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
            "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu0 native_flush_tlb_multi__send_ipis",
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu1 nmi va=0x1000",
            *_SWITCH_THEN_FLUSH,
        ),
    )


SWITCH_WINDOW_NMI = (
    _switch_window_nmi("linux-5.2", "no_use_after_free", _FLUSH_5_2),
    _switch_window_nmi("rfc-async", "no_use_after_free", _FLUSH_2019),
    _switch_window_nmi("rfc-async-no-nmi-check", "nmi_uaccess_safety", _FLUSH_2019),
    _switch_window_nmi("rfc-async-batch-ack", "no_use_after_free", _FLUSH_2019),
    # found by the ci profile once NMIs became a per-CPU coin in the fuzzer's focus
    _switch_window_nmi("rfc-async-posted", "no_use_after_free", _FLUSH_2019),
    # the same NMI passed nmi_uaccess_okay(): found by `tlbfuzz explore` going on past the
    # first property it broke
    _switch_window_nmi("linux-5.2", "nmi_uaccess_safety", _FLUSH_5_2),
    _switch_window_nmi("rfc-async", "nmi_uaccess_safety", _FLUSH_2019),
)

TLB_GEN_REVERSE_ORDER = Concern(
    key="tlb-gen-two-flushes-processed-in-reverse-order",
    question="flush_tlb_func()'s comment: a full flush 1->2 and a partial flush 2->3 "
    "processed in reverse order (the partial one is a truncation's: it takes no mmap_lock, so "
    "it can overlap munmap)",
    variant="flush-no-gen-check",
    prop="tlb_gen_soundness",
    schedule=(
        "cpu1 user_read va=0x1000",
        "cpu1 user_read va=0x2000",
        "cpu2 unmap_mapping_range mm=A va=0x2000",
        "cpu2 zap_pte_range",
        "cpu2 tlb_finish_mmu__mm_tlb_flush_nested",
        "cpu0 munmap",
        "cpu0 unmap_vmas",
        "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
        "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
        "cpu2 flush_tlb_mm_range__inc_mm_tlb_gen",
        "cpu2 flush_tlb_mm_range__flush_tlb_func_local",
        "cpu2 native_flush_tlb_others__send_ipis",
        "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
        "cpu0 native_flush_tlb_others__send_ipis",
        "cpu1 flush_smp_call_function_queue",
        "cpu1 flush_tlb_func",
    ),
    holds_on="linux-5.2",
    config=Config(cpus=3, tlb_single_page_flush_ceiling=1, budget=Budget(truncate=1)),
)

LOST_WRITE_5_2 = (
    "cpu0 user_write va=0x2000",
    "cpu1 madvise_dontneed va=0x2000",
    "cpu1 zap_pte_range",
    "cpu0 clear_page_dirty_for_io mm=A va=0x2000",
    "cpu0 writepage",
    "cpu0 user_write va=0x2000",
)
RMAP_BEFORE_FLUSH_5_2 = Concern(
    key="finding-5.2-rmap-removed-before-flush",
    question="(a model finding, a real 5.2 bug) zap_pte_range() removes a dirty file page's "
    "rmap before its forced flush, so page_mkclean() sees it unmapped, takes no PTL and "
    "writeback cleans the page while cpu0 still has a writable dirty TLB entry: the next write "
    "is lost (fixed by 5df397dec7c4 'mm: delay page_remove_rmap() until after the TLB has been "
    "flushed', v6.2)",
    variant="linux-5.2",
    prop="no_lost_write",
    schedule=LOST_WRITE_5_2,
    holds_on="linux-current",
    config=Config(budget=Budget.only(madvise=1, writeback=1)),
    blocked_at=4,  # writeback spins on the PTL that cpu1's forced flush holds
    holds_schedule=(
        "cpu0 user_write va=0x2000",
        "cpu1 madvise_dontneed va=0x2000",
        "cpu1 zap_pte_range",
        "cpu0 clear_page_dirty_for_io mm=A va=0x2000",
        "cpu1 flush_tlb_mm_range__inc_mm_tlb_gen",
        "cpu1 native_flush_tlb_multi__send_ipis",
        "cpu1 flush_tlb_mm_range__flush_tlb_func_local",
        "cpu0 flush_smp_call_function_queue",
        "cpu0 flush_tlb_func",
        "cpu1 smp_call_function_many__csd_lock_wait",
        "cpu1 zap_pte_range__pte_unmap_unlock",
        "cpu0 clear_page_dirty_for_io",  # the PTL is free: page_mapped() is false now
        "cpu0 writepage",  # cpu0's entry is gone: its next write faults on the cleared PTE
    ),
)


# --- the mm layer: each ordering doing its job -------------------------------------------------


@attrs.frozen
class FlushAfterUnlock(Variant):
    """zap_pte_range() drops the PTL before its forced flush (and so removes the rmap before
    it, as tlb_flush_rmaps() must run under the PTL)."""

    def zap_flush_before_unlock(self, at: Site) -> bool:
        return False


@attrs.frozen
class NoNestedFlush(Variant):
    """tlb_finish_mmu() before 99baac21e458: no forced flush when another gather is pending."""

    def tlb_finish_mmu_forces_flush_when_nested(self, at: Site) -> bool:
        return False


@attrs.frozen
class DecBeforeFlush(Variant):
    """dec_tlb_flush_pending() before the flush: a second caller no longer sees it in flight."""

    def dec_tlb_flush_pending_after_flush(self, at: Site) -> bool:
        return False


def _gup_walk_freed(flush: tuple[str, ...], *free: str) -> tuple[str, ...]:
    """cpu1's GUP-fast reads the PMD; cpu0 unmaps and flushes with freed_tables (``flush``:
    the kernel's order of its steps), cpu1 takes the IPI mid-walk (IRQs on), and the table is
    freed (``free``: by RCU's callback, where tables wait for a grace period)."""
    # cpu1's flush_smp_call_function_queue needs IRQs on: with them off, not until the walk ends
    return ("cpu1 gup_fast va=0x1000", *munmap_with_ipi(flush), *free)


@attrs.frozen
class GupFastIrqsOn(Variant):
    """gup_fast() walks with IRQs on (an rcu_read_lock() instead, say, which its comment
    declines): neither the flush IPI nor the RCU grace period waits for the walk."""

    def gup_fast_disables_irqs(self, at: Site) -> bool:
        return False


def _moved(cls: type[Variant], base: str, name: str) -> Variant:
    return cls(**{**attrs.asdict(VARIANTS[base], recurse=False), "name": name})


@attrs.frozen
class Mechanism:
    """An ordering of the mm layer, the kernel that has it, and the same kernel with it moved:
    ``schedule`` breaks ``prop`` on ``moved`` (and is the shortest that does, with ``budget``);
    on ``kernel`` it stops at ``blocked_at`` (the step the ordering refuses) or holds."""

    key: str
    ordering: str
    kernel: Variant
    moved: Variant
    prop: str
    schedule: tuple[str, ...]
    budget: dict[str, int]
    blocked_at: int | None = None
    per_cpu: tuple[tuple[int, dict[str, int]], ...] = ()
    """Budgets of single CPUs, over ``budget`` (a smaller space to prove things in)."""
    shape: tuple[tuple[str, int | str], ...] = ()
    """Config fields other than the budgets (``(("cpus", 3),)``: a third CPU;
    ``("memory_model", "tso")``: store buffers)."""
    proof: str = "slow"
    """The marker of the proof that ``schedule`` is the shortest (``nightly`` if it takes
    over a minute)."""


# Two CPUs race for one page: cpu1 zapped it (cleared, flush pending); cpu0 finds nothing to
# change and returns.
_NESTED_MADVISE = (
    "cpu0 tlb_fill va=0x1000",
    "cpu0 madvise_dontneed va=0x1000",
    "cpu0 zap_pte_range",
    "cpu1 madvise_dontneed va=0x1000",
    "cpu1 zap_pte_range",
    "cpu1 tlb_finish_mmu__mm_tlb_flush_nested",
    "cpu1 tlb_finish_mmu",
    "cpu0 nmi va=0x1000",
)

LINUX_5_2_RCU_TABLES = attrs.evolve(
    VARIANTS["linux-5.2"],
    name="linux-5.2-rcu-tables",
    summary="linux-5.2 freeing page tables through tlb_remove_table() and RCU, as its "
    "paravirt guests did",
    rcu_table_free=True,
)


@attrs.frozen
class NoFlushTlbBatchedPending(Variant):
    """Before 3ea277194daa: change_pte_range() and zap_pte_range() do not flush a batch that
    reclaim left."""

    def flush_tlb_batched_pending(self, at: Site) -> bool:
        return False


@attrs.frozen
class PteAccessibleIgnoresFlushPending(Variant):
    """Before 20841405940e: pte_accessible() is only the present bit."""

    def pte_accessible_checks_flush_pending(self, at: Site) -> bool:
        return False


@attrs.frozen
class CopyBeforeBatchFlush(Variant):
    """migrate_pages_batch() copies a page before try_to_unmap_flush() has flushed the
    translations its unmap left."""

    def migrate_flush_before_copy(self, path: str) -> bool:
        return False


@attrs.frozen
class ClearRefsNoFlush(Variant):
    """clear_refs returns without flushing (5.6 to 5.10: tlb_finish_mmu() elided the flush
    of a gather that batched no page; 912efa17e512 fixed it)."""

    def clear_refs_flushes(self, at: Site) -> bool:
        return False


@attrs.frozen
class ClearRefsReadLock(Variant):
    """clear_refs write-protects under mmap_lock held for read, as before 29a951dfb3c3, in a
    kernel whose do_wp_page() copies a page with an extra reference (09854ba94c6a)."""

    def clear_refs_takes_mmap_write_lock(self, at: Site) -> bool:
        return False


@attrs.frozen
class MremapFlushAfterUnlock(Variant):
    """move_ptes() drops the PTLs before the flush of the old address, as move_page_tables()
    did before eb66ae030829 (v4.19, CVE-2018-18281)."""

    def move_ptes_flush_before_unlock(self, at: Site) -> bool:
        return False


@attrs.frozen
class FlushRangeNoFreedTables(Variant):
    """x86 flush_tlb_range() passes freed_tables = false, as before 3ef938c35035 (2025)."""

    def flush_tlb_range_frees_tables(self, at: Site) -> bool:
        return False


MECHANISMS: tuple[Mechanism, ...] = (
    Mechanism(
        key="ptl-zap-flushes-before-unlock",
        ordering="zap_pte_range(): /* Do the actual TLB flush before dropping ptl */",
        kernel=VARIANTS["linux-current"],
        moved=_moved(FlushAfterUnlock, "linux-current", "flush-after-unlock"),
        prop="no_lost_write",
        schedule=LOST_WRITE_5_2,
        budget={"madvise": 1, "writeback": 1},
        blocked_at=4,  # page_mkclean() waits for the PTL; the flush reaches cpu0 first
    ),
    Mechanism(
        key="rmap-removed-after-the-flush",
        ordering="zap_pte_range(): delay_rmap, then tlb_flush_rmaps() after the flush (v6.2)",
        kernel=VARIANTS["linux-current"],
        moved=attrs.evolve(VARIANTS["linux-current"], name="rmap-first", delay_rmap=False),
        prop="no_lost_write",
        schedule=LOST_WRITE_5_2,
        budget={"madvise": 1, "writeback": 1},
        blocked_at=4,
    ),
    Mechanism(
        key="nested-gather-forces-a-flush",
        ordering="tlb_finish_mmu(): if (mm_tlb_flush_nested(tlb->mm)) flush everything",
        kernel=VARIANTS["linux-5.2"],
        moved=_moved(NoNestedFlush, "linux-5.2", "before-99baac21"),
        prop="no_stale_access_after_return",
        schedule=_NESTED_MADVISE,
        budget={"madvise": 1},
        blocked_at=6,  # cpu1 sees tlb_flush_pending == 2 and flushes before it frees
    ),
    Mechanism(
        key="tlb-flush-pending-drops-after-the-flush",
        ordering="tlb_finish_mmu(): tlb_flush_mmu(tlb); ... dec_tlb_flush_pending(tlb->mm);",
        kernel=VARIANTS["linux-current"],
        moved=_moved(DecBeforeFlush, "linux-current", "dec-before-flush"),
        prop="no_stale_access_after_return",
        schedule=(
            "cpu0 tlb_fill va=0x1000",
            "cpu0 madvise_dontneed va=0x1000",
            "cpu0 zap_pte_range",
            "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
            "cpu1 madvise_dontneed va=0x1000",
            "cpu1 zap_pte_range",
            "cpu1 tlb_finish_mmu__mm_tlb_flush_nested",
            "cpu1 tlb_finish_mmu",
            "cpu0 nmi va=0x1000",
        ),
        budget={"madvise": 1},
        blocked_at=7,
    ),
    Mechanism(
        key="page-tables-freed-after-a-grace-period",
        ordering="tlb_remove_table() -> call_rcu(): an IRQs-off CPU holds the free back",
        kernel=LINUX_5_2_RCU_TABLES,
        moved=VARIANTS["linux-5.2"],
        prop="no_walk_of_freed_page_table",
        schedule=_switch_window_free_tables(_FLUSH_5_2),
        budget={"munmap": 1, "switch": 1},
    ),
    Mechanism(
        key="gup-fast-walks-with-irqs-off-on-5.2",
        ordering="gup_fast(): local_irq_save(): the freed_tables flush IPI waits for the walk",
        kernel=VARIANTS["linux-5.2"],
        moved=_moved(GupFastIrqsOn, "linux-5.2", "gup-fast-irqs-on"),
        prop="no_walk_of_freed_page_table",
        schedule=_gup_walk_freed(_FLUSH_5_2),
        budget={},
        per_cpu=((0, {"munmap": 1}), (1, {"gup_fast": 1})),
        blocked_at=7,
    ),
    Mechanism(
        key="gup-fast-walks-with-irqs-off-on-linux-current",
        # The freed_tables flush IPI holds the table first here, as on 5.2; the RCU grace
        # period is a second guard this schedule does not isolate (the moved walk breaks it
        # too: the RCU callback frees the table).
        ordering="gup_fast(): local_irq_save(): the freed_tables flush IPI waits for the walk",
        kernel=VARIANTS["linux-current"],
        moved=_moved(GupFastIrqsOn, "linux-current", "gup-fast-irqs-on"),
        prop="no_walk_of_freed_page_table",
        schedule=_gup_walk_freed(_FLUSH_2019, "tlb_remove_table_rcu pfn=0"),
        budget={},
        per_cpu=((0, {"munmap": 1}), (1, {"gup_fast": 1})),
        blocked_at=7,
    ),
    Mechanism(
        key="flush-tlb-batched-pending",
        ordering="change_pte_range(): flush_tlb_batched_pending(vma->vm_mm) under the PTL",
        kernel=VARIANTS["linux-current"],
        moved=_moved(NoFlushTlbBatchedPending, "linux-current", "before-3ea277194daa"),
        prop="no_write_after_write_protect",
        schedule=(
            "cpu1 user_write va=0x1000",
            "cpu0 try_to_unmap_one mm=A va=0x1000",  # PTE cleared, flush deferred to the batch
            "cpu1 mprotect va=0x1000",
            "cpu1 change_pte_range",  # finds the PTE clear: nothing to change, nothing to flush
            "cpu1 tlb_finish_mmu__mm_tlb_flush_nested",  # mprotect returns
            "cpu1 user_write va=0x1000",  # through the entry reclaim has not flushed yet
        ),
        budget={},
        per_cpu=((0, {"reclaim": 1}), (1, {"mprotect": 1})),
        blocked_at=4,  # cpu1 flushes the batch under the PTL before it can return
    ),
    Mechanism(
        key="pte-accessible-while-flush-pending",
        ordering="pte_accessible(): a PROT_NONE entry counts while tlb_flush_pending is raised",
        kernel=VARIANTS["linux-current"],
        moved=_moved(PteAccessibleIgnoresFlushPending, "linux-current", "before-20841405940e"),
        prop="no_use_after_free",
        schedule=(
            "cpu0 tlb_fill va=0x1000",
            "cpu0 change_prot_numa va=0x1000",  # tlb_flush_pending 1
            "cpu0 change_pte_range",  # PROT_NONE; cpu0 still caches the present entry
            "cpu1 try_to_unmap_one mm=A va=0x1000",  # PROT_NONE and "not accessible": no batch
            "cpu1 free_unref_page_list",
            "cpu0 nmi va=0x1000",
        ),
        budget={},
        per_cpu=((0, {"numa": 1}), (1, {"reclaim": 1})),
        blocked_at=4,  # the kernel batches the flush, and frees only after it
    ),
    Mechanism(
        key="migrate-flush-before-copy",
        ordering="migrate_pages_batch(): try_to_unmap_flush() before migrate_folio_move()",
        kernel=VARIANTS["linux-current"],
        moved=_moved(CopyBeforeBatchFlush, "linux-current", "copy-before-flush"),
        prop="no_write_lost_to_copy",
        schedule=(
            "cpu1 user_write va=0x1000",  # cpu1 caches the page writable and dirty
            "cpu0 try_to_migrate_one mm=A va=0x1000",  # migration entry; flush deferred
            "cpu0 migrate_folio_move__copy",  # the copy is taken
            "cpu0 arch_tlbbatch_flush",
            "cpu0 native_flush_tlb_multi__send_ipis",
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu1 user_write va=0x1000",  # W=1 D=1: no walk, into the old page
            "cpu1 flush_smp_call_function_queue",
            "cpu1 flush_tlb_func",
            "cpu0 smp_call_function_many__csd_lock_wait",
            "cpu0 remove_migration_ptes",  # the PTE now maps the copy, without that write
        ),
        budget={},
        per_cpu=((0, {"migrate": 1}),),
        blocked_at=2,  # the kernel flushes the batch before it copies
    ),
    Mechanism(
        key="clear-refs-flush-before-return",
        ordering="clear_refs_write(): flush_tlb_mm(mm) before returning (912efa17e512)",
        kernel=VARIANTS["linux-current"],
        moved=_moved(ClearRefsNoFlush, "linux-current", "before-912efa17e512"),
        prop="no_lost_soft_dirty",
        schedule=(
            "cpu0 user_write va=0x1000",  # cached writable and dirty
            "cpu0 clear_refs_write",
            "cpu0 clear_refs_pte_range",  # read-only, soft-dirty clear; clear_refs returns
            "cpu0 user_write va=0x1000",  # no fault: the PTE stays clean
        ),
        budget={},
        per_cpu=((0, {"clear_refs": 1}),),
        blocked_at=3,  # the kernel is still flushing: user code does not run on cpu0
    ),
    Mechanism(
        key="clear-refs-mmap-write-lock",
        ordering="clear_refs_write(): mmap_write_lock(), so no COW fault copies a page "
        "before the write-protect is flushed (29a951dfb3c3)",
        kernel=VARIANTS["linux-current"],
        moved=_moved(ClearRefsReadLock, "linux-current", "clear-refs-read-lock"),
        prop="no_write_lost_to_copy",
        schedule=(
            "cpu0 clear_refs_write",
            "cpu2 user_write va=0x1000",  # cpu2 caches the page writable and dirty
            "cpu0 clear_refs_pte_range",  # read-only; its flush has not started
            "cpu1 do_wp_page va=0x1000",  # a write fault: copy (the page has another ref)
            "cpu1 wp_page_copy__cow_user_page",  # the copy is taken
            "cpu1 wp_page_copy",  # ptep_clear_flush(): the PTE is cleared
            "cpu1 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu1 native_flush_tlb_multi__send_ipis",
            "cpu0 flush_smp_call_function_queue",
            "cpu0 flush_tlb_func",
            "cpu1 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu2 user_write va=0x1000",  # W=1 D=1: no walk, into the old page
            "cpu2 flush_smp_call_function_queue",
            "cpu2 flush_tlb_func",
            "cpu1 smp_call_function_many__csd_lock_wait",
            "cpu1 wp_page_copy__set_pte_at",  # the PTE maps the copy, without that write
        ),
        budget={},
        per_cpu=((0, {"clear_refs": 1}), (1, {"wp_fault": 1})),
        shape=(("cpus", 3), ("mms", 1), ("file_pages", 0)),
        blocked_at=3,  # the fault waits for clear_refs' mmap_write_lock, held to its flush
        proof="nightly",  # 16 steps over three CPUs: over a minute of breadth-first search
    ),
    Mechanism(
        key="mremap-flush-before-unlock",
        ordering="move_ptes(): flush_tlb_range() of the old address before pte_unmap_unlock() "
        "(eb66ae030829)",
        kernel=VARIANTS["linux-5.2"],
        moved=_moved(MremapFlushAfterUnlock, "linux-5.2", "before-eb66ae030829"),
        prop="no_use_after_free",
        schedule=(
            "cpu0 tlb_fill va=0x1000",  # cpu0 caches the page at its old address
            "cpu0 mremap va=0x1000",
            "cpu0 move_ptes",  # the PTE moves to 0x2000; the PTL is dropped, no flush yet
            "cpu1 try_to_migrate_one mm=A va=0x2000",  # the rmap finds it at the new address
            "cpu1 flush_tlb_mm_range__inc_mm_tlb_gen",  # ptep_clear_flush(): 0x2000 only
            "cpu1 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu1 native_flush_tlb_others__send_ipis",
            "cpu0 flush_smp_call_function_queue",
            "cpu0 flush_tlb_func",  # flushes 0x2000; 0x1000 stays cached
            "cpu1 smp_call_function_many__csd_lock_wait",
            "cpu1 try_to_migrate_one__unlock",
            "cpu1 migrate_folio_move__copy",
            "cpu1 remove_migration_ptes",
            "cpu1 migrate_folio_done",  # the old page is freed
            "cpu0 nmi va=0x1000",  # through the old address, into the freed page
        ),
        budget={},
        per_cpu=((0, {"mremap": 1}), (1, {"migrate": 1})),
        shape=(("mms", 1), ("file_pages", 0)),
        blocked_at=4,  # migration spins on the PTL in try_to_migrate_one(), held to the flush
    ),
    Mechanism(
        key="collapse-flush-reaches-lazy-cpus",
        ordering="pmdp_collapse_flush(): flush_tlb_range() with freed_tables, so the flush "
        "reaches lazy CPUs before the table is freed (3ef938c35035)",
        kernel=VARIANTS["linux-current"],
        moved=_moved(FlushRangeNoFreedTables, "linux-current", "before-3ef938c35035"),
        prop="no_walk_of_freed_page_table",
        schedule=(
            "cpu0 collapse_file mm=A va=0x1000",  # try_to_unmap(): PTE cleared, flush batched
            "cpu0 arch_tlbbatch_flush",
            "cpu1 nmi va=0x1000",  # a walk: cpu1's paging-structure cache holds the PMD
            "cpu1 enter_lazy_tlb next=kthread",  # cpu1 lazy, CR3 still mm A
            "cpu0 native_flush_tlb_multi__send_ipis",  # lazy cpu1 skipped
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu0 retract_page_tables",  # pmdp_huge_get_and_clear()
            "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu0 native_flush_tlb_multi__send_ipis",  # no freed_tables: lazy cpu1 skipped
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu0 retract_page_tables__unlock",
            "cpu0 pte_free_defer",  # call_rcu(): cpu1 has IRQs on, nothing holds it back
            "tlb_remove_table_rcu pfn=0",  # freed; cpu1 can still walk into it
        ),
        budget={},
        per_cpu=((0, {"collapse": 1}), (1, {"switch": 2})),
        shape=(("mms", 1), ("anon_pages", 0)),
        blocked_at=10,  # freed_tables: the flush IPIs lazy cpu1 and waits for its ack
    ),
    Mechanism(
        key="uffd-wp-nested-flush",
        ordering="uffd_wp_range(): tlb_finish_mmu() flushes when another write-protect of "
        "the mm is in flight (mm_tlb_flush_nested(), 99baac21e458)",
        kernel=VARIANTS["linux-current"],
        moved=_moved(NoNestedFlush, "linux-current", "uffd-wp-no-nested-flush"),
        prop="no_stale_access_after_return",
        schedule=(
            "cpu0 user_write va=0x1000",  # cached writable and dirty
            "cpu0 mwriteprotect_range va=0x1000",
            "cpu1 mwriteprotect_range va=0x1000",  # mmap_read_lock(): both at once
            "cpu1 change_pte_range",  # read-only and marked; cpu1's flush not yet run
            "cpu0 change_pte_range",  # already protected: nothing to flush
            "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",  # the ioctl returns
            "cpu0 user_write va=0x1000",  # no fault: the monitor misses the write
        ),
        budget={"uffd_wp": 1},
        shape=(("mms", 1), ("file_pages", 0)),
        blocked_at=6,  # tlb_flush_pending is 2: cpu0 flushes the whole mm before it returns
    ),
)
"""For each ordering of the mm layer a test moves (tests/test_mm.py)."""


# --- x86-TSO: the barriers of the lazy-TLB handshake, each taken out as a patch would ---------


@attrs.frozen
class NoSmpMb(Variant):
    def smp_mb_before_lazy_tlb_gen_read(self, at: Site) -> bool:
        return False


@attrs.frozen
class PlainIncMmTlbGen(Variant):
    def inc_mm_tlb_gen_is_locked(self, at: Site) -> bool:
        return False


@attrs.frozen
class Before83b0177a(Variant):
    def smp_mb_if_cpumask_already_set(self, at: Site) -> bool:
        return False


_TSO: Final = (("file_pages", 0), ("memory_model", "tso"))
_MADVISE_AGAINST_SWITCHES: Final = ((0, {"madvise": 1}), (1, {"switch": 2}))

# The lazy CPU's side: cpu1, lazy on the mm, comes back; ``is_lazy = false`` waits in its
# store buffer while it reads tlb_gen; cpu0's flush reads is_lazy (still true) and skips it.
LAZY_NO_MB: Final = (
    "cpu1 tlb_fill va=0x1000",
    "cpu0 madvise_dontneed va=0x1000",
    "cpu0 zap_pte_range",
    "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
    "cpu1 enter_lazy_tlb next=kthread",
    "cpu1 store_buffer_drain",  # is_lazy = true reaches memory
    "cpu1 switch_mm_irqs_off__leave_lazy next=A",  # is_lazy = false waits in the buffer
    "cpu1 switch_mm_irqs_off__lazy_tlb_gen_check",  # reads tlb_gen 0: "up to date"
    "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu0 native_flush_tlb_multi__send_ipis",  # reads is_lazy = true: no IPI to cpu1
    "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
    "cpu0 tlb_finish_mmu",  # the page is freed
    "cpu1 finish_task_switch",
    "cpu1 user_read va=0x1000",  # through the TLB entry of step 1
)

# The flusher's side: its tlb_gen store waits in its buffer while it reads cpu1's is_lazy
# (true: no IPI); cpu1 leaves lazy mode and, after its own smp_mb(), reads tlb_gen from
# memory: still the old one, so it keeps its entry.
PLAIN_INC: Final = (
    "cpu0 madvise_dontneed va=0x1000",
    "cpu1 tlb_fill va=0x1000",
    "cpu0 zap_pte_range",
    "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
    "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",  # tlb_gen = 1 waits in cpu0's buffer
    "cpu1 enter_lazy_tlb next=kthread",
    "cpu1 store_buffer_drain",  # is_lazy = true reaches memory
    "cpu0 native_flush_tlb_multi__send_ipis",  # reads is_lazy = true: no IPI to cpu1
    "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
    "cpu0 tlb_finish_mmu",  # the page is freed; madvise returns
    "cpu1 switch_mm_irqs_off__leave_lazy next=A",
    "cpu1 switch_mm_irqs_off__lazy_tlb_gen_check",  # smp_mb(), then reads tlb_gen 0
    "cpu1 finish_task_switch",
    "cpu1 user_read va=0x1000",
)

# The switching CPU's side, two mms: cpu1 goes to mm B and back to A; with A's cpumask bit
# kept set (lazily, since 209954cbc7d0) no locked cpumask_set_cpu() orders ``loaded_mm =
# LOADED_MM_SWITCHING`` before the tlb_gen read; the flusher reads the old loaded_mm (B) in
# should_flush_tlb() and skips the CPU, which read the old tlb_gen.
SWITCH_NO_MB: Final = (
    "cpu0 madvise_dontneed va=0x1000",
    "cpu1 tlb_fill va=0x1000",
    "cpu0 zap_pte_range",
    "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
    "cpu1 switch_mm_irqs_off__loaded_mm_switching next=B",
    "cpu1 switch_mm_irqs_off__cpumask_set_cpu",
    "cpu1 switch_mm_irqs_off__choose_new_asid",
    "cpu1 switch_mm_irqs_off__load_new_mm_cr3",
    "cpu1 finish_task_switch",
    "cpu1 store_buffer_drain",  # loaded_mm = B reaches memory
    "cpu1 switch_mm_irqs_off__loaded_mm_switching next=A",  # waits in the buffer
    "cpu1 switch_mm_irqs_off__cpumask_set_cpu",  # already set: no locked RMW, no fence
    "cpu1 switch_mm_irqs_off__choose_new_asid",  # reads tlb_gen 0: A's entries are current
    "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu0 native_flush_tlb_multi__send_ipis",  # should_flush_tlb(): loaded_mm is B, skip
    "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
    "cpu0 tlb_finish_mmu",  # the page is freed
    "cpu1 switch_mm_irqs_off__load_new_mm_cr3",
    "cpu1 finish_task_switch",
    "cpu1 user_read va=0x1000",
)

TSO_ORDERINGS: tuple[Mechanism, ...] = (
    Mechanism(
        key="lazy-tlb-gen-read-after-smp-mb",
        ordering="switch_mm_irqs_off(), leaving lazy mode: is_lazy = false, smp_mb(), then "
        "the tlb_gen read",
        kernel=VARIANTS["linux-current"],
        moved=_moved(NoSmpMb, "linux-current", "lazy-no-smp-mb"),
        prop="no_use_after_free",
        schedule=LAZY_NO_MB,
        budget={},
        per_cpu=_MADVISE_AGAINST_SWITCHES,
        shape=(("mms", 1), *_TSO),
        blocked_at=11,  # the barrier drained is_lazy: cpu0 IPIs cpu1 and waits for it
    ),
    Mechanism(
        key="inc-mm-tlb-gen-is-a-locked-rmw",
        ordering="inc_mm_tlb_gen(), a lock xadd: a full barrier before the is_lazy read",
        kernel=VARIANTS["linux-current"],
        moved=_moved(PlainIncMmTlbGen, "linux-current", "plain-inc"),
        prop="no_use_after_free",
        schedule=PLAIN_INC,
        budget={},
        per_cpu=_MADVISE_AGAINST_SWITCHES,
        shape=(("mms", 1), *_TSO),
        blocked_at=13,  # cpu1 read tlb_gen 1 and flushed: no entry left to read through
    ),
    Mechanism(
        key="switch-smp-mb-if-cpumask-already-set",
        ordering="switch_mm_irqs_off(): 'else smp_mb();' when the mm_cpumask bit is already "
        "set (83b0177a6c48)",
        kernel=VARIANTS["linux-current"],
        moved=_moved(Before83b0177a, "linux-current", "before-83b0177a"),
        prop="no_use_after_free",
        schedule=SWITCH_NO_MB,
        budget={},
        per_cpu=_MADVISE_AGAINST_SWITCHES,
        shape=(("mms", 2), *_TSO),
        blocked_at=16,  # the barrier drained loaded_mm: cpu0 IPIs cpu1 and waits for it
    ),
)
"""For each barrier of the lazy-TLB handshake a test takes out (tests/test_tso.py, which
proves each schedule the shortest under x86-TSO, the 20-step one with NMIs, evictions and
switches to a kernel thread left out, and the moved kernel clean under SC)."""


ALL_SCHEDULES: tuple[Concern, ...] = (
    *CONCERNS,
    TLB_GEN_LOCAL_PARTIAL,
    SWITCH_WINDOW_5_2,
    SWITCH_WINDOW_RFC_ASYNC,
    SWITCH_WINDOW_FREED_TABLES,
    *SWITCH_WINDOW_NMI,
    TLB_GEN_REVERSE_ORDER,
    RMAP_BEFORE_FLUSH_5_2,
)

SHORTEST: dict[tuple[str, str], int] = {
    ("rfc-async-posted", "no_use_after_free"): 9,
    ("rfc-async", "no_stale_entry_at_free"): 9,
    ("rfc-async-no-nmi-check", "nmi_uaccess_safety"): 10,
    ("rfc-async-batch-ack", "no_use_after_free"): 10,
    ("rfc-async-posted", "no_lost_write"): 8,
    ("rfc-async-freed-tables", "no_walk_of_freed_page_table"): 9,
    ("lazy-skip-freed-tables", "no_walk_of_freed_page_table"): 9,
    ("rfc-async-pointer-info", "request_integrity"): 13,
    ("flush-no-gen-check", "tlb_gen_soundness"): 7,
    ("linux-5.2", "no_walk_of_freed_page_table"): 9,
    ("linux-5.2", "no_use_after_free"): 10,
    ("rfc-async", "no_use_after_free"): 10,
    ("linux-5.2", "no_lost_write"): 6,
}
"""The shortest violating schedule per (variant, property) with the default 2-CPU config,
established by hand and by minimise() (tests/test_explore.py checks them by breadth-first
search where that is affordable)."""

# rfc-async-batch-ack with today's switch_mm_irqs_off() order: the 2019 switch window is
# closed, so the only use-after-free left is concern 4's own (the flush acknowledged together
# with a cross-call queued ahead of it): 14 steps as CONCERNS writes it, 12 as the nightly
# profile finds it (tests/test_fuzz.py).
CONCERN_4_ALONE = attrs.evolve(
    VARIANTS["rfc-async-batch-ack"],
    clear_cpumask_on_switch=False,
    name="rfc-async-batch-ack-current-switch",
)

RACES: dict[tuple[str, str], int] = {
    **SHORTEST,
    (CONCERN_4_ALONE.name, "no_use_after_free"): 12,
}
"""The race table's rows (``bench/bench_race.py``): SHORTEST, and concern 4's own race with
the switch window closed (issue 12 asks the ci profile for it too)."""
RACE_VARIANTS: dict[str, Variant] = {**VARIANTS, CONCERN_4_ALONE.name: CONCERN_4_ALONE}

MINIMAL_SHAPES: dict[tuple[str, str], set[int]] = {
    **{k: {n} for k, n in SHORTEST.items()},
    # Each syscall's tlb_gather_mmu() is a step of its own since issue 9 (one more per syscall).
    # rfc-async breaks no_stale_entry_at_free two ways: the 2019 switch window (9 steps) and the
    # handler window between csd_unlock and INVLPG (11 steps, concern 2); each is the shortest
    # schedule of its own mechanism, and a run may find either.
    ("rfc-async", "no_stale_entry_at_free"): {9, 11},
    # likewise: the switch window (9) and concern 6's handler window (11)
    ("rfc-async-freed-tables", "no_walk_of_freed_page_table"): {9, 11},
    # an NMI in the switch window (10), or concern 3's / concern 4's handler window (12 / 14)
    ("rfc-async-no-nmi-check", "nmi_uaccess_safety"): {10, 12},
    ("rfc-async-batch-ack", "no_use_after_free"): {10, 14},
    # concern 1's posted-flush window (9) or an NMI in the 2019 switch window (10), as on 5.2
    ("rfc-async-posted", "no_use_after_free"): {9, 10},
    # concern 5's posted flush (8, writeback alone), or, where a budget allows a madvise or a
    # munmap, the zap order rfc-async-posted inherits from 5.2 (6, as linux-5.2 below: the rmap
    # goes before the flush); found by the swarm engine, which draws madvise with writeback
    ("rfc-async-posted", "no_lost_write"): {6, 8},
    # a madvise and an mprotect (13, concern 7), or two mprotects where the budget allows (12)
    ("rfc-async-pointer-info", "request_integrity"): {12, 13},
    # writeback's flush against mprotect's (7), a madvise's forced flush of a dirty file page
    # against another madvise (9), or two madvises whose nested checks both come first (10)
    ("flush-no-gen-check", "tlb_gen_soundness"): {7, 9, 10},
}
