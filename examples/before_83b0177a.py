"""linux-current as it was from 209954cbc7d0 ("x86/mm/tlb: Update mm_cpumask lazily") until
83b0177a6c48 ("x86/mm: Fix SMP ordering in switch_mm_irqs_off()", 2025, reported by Stephen
Dolan): switch_mm_irqs_off() sets the mm_cpumask bit only if it is clear, and then nothing
orders the ``loaded_mm = LOADED_MM_SWITCHING`` store before the ``tlb_gen`` read. Under x86-TSO
the store waits in the store buffer; the flusher increments tlb_gen, reads the old loaded_mm in
should_flush_tlb(), skips the CPU and frees the page, and the CPU, having read the old tlb_gen,
keeps its TLB entries for the mm. Under SC the same kernel holds.

    tlbfuzz explore -v examples/before_83b0177a.py:VARIANT --memory-model tso --file-pages 0 \\
        --budget cpu0:madvise=1 --budget cpu1:switch=2 --no nmi,tlb_evict,pwc_evict \\
        -p no_use_after_free
"""

from __future__ import annotations

import attrs

from tlbfuzz.protocol import VARIANTS, Site, Variant


@attrs.frozen
class Before83b0177a(Variant):
    def smp_mb_if_cpumask_already_set(self, at: Site) -> bool:
        return False  # no "else smp_mb();" after the conditional cpumask_set_cpu()


VARIANT = Before83b0177a(
    **{
        **attrs.asdict(VARIANTS["linux-current"], recurse=False),
        "name": "before-83b0177a",
        "summary": "linux-current without the else smp_mb() of 83b0177a6c48 (2025)",
        "kernel_ref": "arch/x86/mm/tlb.c: switch_mm_irqs_off() before 83b0177a6c48",
    }
)
