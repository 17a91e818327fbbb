"""linux-current without the smp_mb() of switch_mm_irqs_off()'s lazy path: a lazy CPU back on
its mm stores ``is_lazy = false`` and reads ``mm->context.tlb_gen``. tlb.c: "The barrier
synchronizes with the tlb_gen increment in the TLB shootdown code." Without it, under x86-TSO
the store waits in the store buffer past the read: the flusher increments tlb_gen, reads
``is_lazy`` (still true in memory), skips the IPI, frees the page, and the CPU keeps using a TLB
entry it believes up to date. Under SC the same kernel holds.

    tlbfuzz explore -v examples/lazy_no_smp_mb.py:VARIANT --memory-model tso \\
        --mms 1 --file-pages 0 --budget cpu0:madvise=1 --budget cpu1:switch=2
"""

from __future__ import annotations

import attrs

from tlbfuzz.protocol import VARIANTS, Site, Variant


@attrs.frozen
class NoSmpMb(Variant):
    def smp_mb_before_lazy_tlb_gen_read(self, at: Site) -> bool:
        return False  # no "smp_mb();" before "next_tlb_gen = atomic64_read(...)"


VARIANT = NoSmpMb(
    **{
        **attrs.asdict(VARIANTS["linux-current"], recurse=False),
        "name": "lazy-no-smp-mb",
        "summary": "linux-current without the smp_mb() before a lazy CPU reads tlb_gen",
        "kernel_ref": "arch/x86/mm/tlb.c: switch_mm_irqs_off(), the smp_mb() removed",
    }
)
