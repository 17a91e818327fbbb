"""A variant of your own, without editing protocol/: change switches, or override the one
decision point your patch changes.

    tlbfuzz fuzz -v examples/my_variant.py:SKIP_SWITCHING_CPUS
    tlbfuzz fuzz -v examples/my_variant.py:CAUGHT_UP_5_2
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from tlbfuzz.protocol import VARIANTS, Variant

if TYPE_CHECKING:
    from tlbfuzz.protocol import Site, World
    from tlbfuzz.protocol.state import FlushTlbInfo


@attrs.frozen
class SkipSwitchingCpus(Variant):
    """Today's should_flush_tlb() minus its LOADED_MM_SWITCHING case: is it needed?

    It is: the case is fea4e317f9e7 ("x86/mm: Eliminate window where TLB flushes may be
    inadvertently skipped", 2025), and this is the kernel before it (6db2526c1d69 onwards).
    A CPU switching back to an mm reads its tlb_gen in choose_new_asid() before a flush bumps
    it, the flush skips the CPU while loaded_mm is LOADED_MM_SWITCHING, and the CPU loads the
    mm's CR3 with no flush. In two mms, with a madvise on the other CPU (19 steps):

        tlbfuzz explore -v examples/my_variant.py:SKIP_SWITCHING_CPUS --mms 2 \
            --file-pages 0 --budget cpu0:switch=2 --budget cpu1:madvise=1

    ``tests/test_narrow.py`` replays it by hand (``SWITCHING_WINDOW``).
    """

    def should_flush_tlb(self, at: Site, w: World, cpu: int, info: FlushTlbInfo) -> bool:
        c = w.cpus[cpu]
        if info.freed_tables or c.is_lazy:
            return super().should_flush_tlb(at, w, cpu, info)
        return c.loaded_mm == info.mm  # no "loaded_mm == LOADED_MM_SWITCHING" here


SKIP_SWITCHING_CPUS = SkipSwitchingCpus(
    **{
        **attrs.asdict(VARIANTS["linux-current"], recurse=False),
        "name": "skip-switching-cpus",
        "summary": "linux-current whose should_flush_tlb() ignores CPUs in LOADED_MM_SWITCHING",
        "kernel_ref": "examples/my_variant.py (hypothetical patch)",
    }
)

CAUGHT_UP_5_2 = attrs.evolve(
    VARIANTS["linux-5.2"],
    name="linux-5.2-caught-up-check",
    summary="linux-5.2 with today's 'new_tlb_gen <= local_tlb_gen' early return",
    kernel_ref="examples/my_variant.py (a switch changed)",
    skip_caught_up_flush=True,
)
