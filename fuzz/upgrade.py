"""Corpus files of an earlier format, read as today's model runs them.

A corpus file is never rewritten behind its owner's back, and a finding saved by an older
tlbfuzz must still replay: ``load()`` translates the schedule of an older format in memory,
step for step; ``python -m tlbfuzz.fuzz.upgrade FOLDER`` writes the translation back (the
files of this repository's ``corpus/`` were rewritten so).

Format 1 -> 2 (issue 9): ``tlb_gather_mmu()`` (``inc_tlb_flush_pending``) and the PTE changes
under the PTL were one step of madvise, munmap, mprotect and truncation; they are two now, so
that another CPU's gather may open, zap, and check ``mm_tlb_flush_nested()`` in between. The
first step keeps its name (and still starts the path); the PTE changes are the second. The
translation puts both where the old merged step ran: the start and the PTE step together,
at the start if its PTL was free, else where format 1 resumed it when the PTL came free (the
old schedule's ``cpu0 madvise_dontneed`` without arguments, or its second ``cpu0 munmap``),
so that no gather opens earlier than it did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tlbfuzz.protocol import GLOBAL, Action

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tlbfuzz.protocol import World

SPLIT_AT_FORMAT_2: Final = {
    "madvise_dontneed": "zap_pte_range",
    "munmap": "unmap_vmas",
    "mprotect": "change_pte_range",
    "unmap_mapping_range": "zap_pte_range",
}
"""Format 1's merged first step -> format 2's step that makes the PTE changes."""


def from_format_1(world: World, schedule: Sequence[Action]) -> tuple[Action, ...]:
    """``schedule`` (format 1) as format 2 writes it, by running it on a copy of ``world``.

    A start whose merged step ran at once (its PTL was free) becomes the start and the PTE
    step. A start that spun on the PTL is postponed to where format 1 resumed it, and becomes
    the start and the PTE step there: opening the gather earlier would let another CPU's
    ``mm_tlb_flush_nested()`` see it, which format 1 did not allow. Two format-1 steps that
    have nothing left to do are dropped: a ``store_buffer_drain`` of a buffer a fence or IRET
    has drained since (x86-TSO files of format 1), and a resume whose path went past its PTE
    step (a truncation that found no vma). Under x86-TSO a ``csd_unlock()``, which format 1
    wrote to memory at once, is drained right after it. A step that is not enabled ends the
    translation: the rest is kept as it is, so that replay reports the drift at that step."""
    from tlbfuzz.protocol.mm import ptl_free

    w = world.copy()
    out: list[Action] = []
    postponed: dict[int, Action] = {}
    for i, old in enumerate(schedule):
        second = SPLIT_AT_FORMAT_2.get(old.op)
        steps = [old]
        if old.cpu != GLOBAL and old.cpu in postponed and second is not None and not old.args:
            steps = [postponed.pop(old.cpu), Action(old.cpu, second)]  # format 1's resume
        elif second is not None and old.cpu != GLOBAL and w.cpus[old.cpu].path:
            if _at(w, old.cpu, old.op, second):
                steps = [Action(old.cpu, second)]
            elif not old.args and _started_by(w, old.cpu, old.op):
                continue  # the path went past its PTE step (truncation found no vma)
        elif second is not None and old.cpu != GLOBAL and w.is_enabled(old):
            trial = w.copy()
            trial.apply(old)
            if _started_by(trial, old.cpu, old.op) and not ptl_free(trial, old.cpu):
                postponed[old.cpu] = old  # format 1 spun on the PTL here
                continue
            steps = [old]
            if _at(trial, old.cpu, old.op, second):
                steps.append(Action(old.cpu, second))
        elif old.op == "store_buffer_drain" and not w.cpus[old.cpu].store_buffer:
            continue  # drained already, by a fence format 1 did not have
        for a in steps:
            if a.op == second and a is not old and not _at(w, a.cpu, old.op, second):
                continue  # the start skipped its PTE step (a truncation that found no vma)
            if not w.is_enabled(a):
                return (*out, *schedule[i:])
            w.apply(a)
            out.append(a)
            if w.config.memory_model == "tso":
                _drain_csd_unlocks(w, a.cpu, out)
    return (*out, *postponed.values())


def _drain_csd_unlocks(w: World, cpu: int, out: list[Action]) -> None:
    """Format 1 wrote ``csd_unlock()`` to memory at once; format 2 buffers it (x86-TSO): drain
    ``cpu``'s buffer up to and including a buffered csd unlock, so the sender sees it when
    format 1 had it see it (older buffered stores go first, as FIFO requires)."""
    if cpu == GLOBAL:
        return
    c = w.cpus[cpu]
    while any(isinstance(st.loc, tuple) and st.loc[0] == "csd" for st in c.store_buffer):
        drain = Action(cpu, "store_buffer_drain")
        w.apply(drain)
        out.append(drain)


def _started_by(w: World, cpu: int, first: str) -> bool:
    """``cpu`` runs the path whose first step is ``first``."""
    c = w.cpus[cpu]
    return bool(c.path) and w.kernel.steps[c.path][0].name == first


def _at(w: World, cpu: int, first: str, second: str) -> bool:
    """``cpu`` runs the path that ``first`` starts and its next step is ``second``."""
    c = w.cpus[cpu]
    if not c.path or c.irq is not None:
        return False
    steps = w.kernel.steps[c.path]
    return steps[0].name == first and steps[c.pc].name == second


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tlbfuzz.fuzz.upgrade FOLDER...``: rewrite the older-format files under the
    folders in today's format, in the folder they are in. A file is rewritten only if its
    translation replays with the verdict it expects; its name changes with its length and
    digest, and the old file goes only once the new one is saved."""
    import sys
    from pathlib import Path

    from tlbfuzz.fuzz import corpus

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m tlbfuzz.fuzz.upgrade FOLDER...", file=sys.stderr)
        return 2
    status = 0
    try:
        for item in list(corpus.iter_files([Path(p) for p in args])):
            e = corpus.load(item)
            if e.format == corpus.FORMAT:
                continue
            r = corpus.replay(e)
            if not r.ok:  # kept as it is, for its owner: it still loads and replays as it does
                print(f"not upgraded: {r.message}", file=sys.stderr)
                status = 1
                continue
            new = corpus.rewrite(e, item)
            print(f"{item} -> {new.name}")
    except corpus.CorpusError as err:
        print(err, file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())
