"""Corpus files of an earlier format, read as today's model runs them.

A corpus file is never rewritten behind its owner's back, and a finding saved by an older
tlbfuzz must still replay: ``load()`` translates the schedule of an older format in memory,
step for step; ``python -m tlbfuzz.fuzz.upgrade FOLDER`` writes the translation back (the
files of this repository's ``corpus/`` were rewritten so).

Format 1 -> 2 (issue 9): ``tlb_gather_mmu()`` (``inc_tlb_flush_pending``) and the PTE changes
under the PTL were one step of madvise, munmap, mprotect and truncation; they are two now, so
that another CPU's gather may open, zap, and check ``mm_tlb_flush_nested()`` in between. The
first step keeps its name (and still starts the path); the PTE changes are the second. The
translation puts the second step where the old merged step ran: right after the start, or,
if the CPU spun on the PTL at its start, where it ran when the PTL came free (the old
schedule's resume, ``cpu0 madvise_dontneed`` without arguments, or ``cpu0 munmap``).
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
    A step that is not enabled ends the translation: the rest is kept as it is, so that
    replay reports the drift at that step."""
    w = world.copy()
    out: list[Action] = []
    for i, old in enumerate(schedule):
        a = old
        second = SPLIT_AT_FORMAT_2.get(a.op)
        if second is not None and a.cpu != GLOBAL and _at(w, a.cpu, a.op, second):
            a = Action(a.cpu, second)  # the resume of a start that spun on the PTL
            second = None
        if not w.is_enabled(a):
            return (*out, *schedule[i:])
        w.apply(a)
        out.append(a)
        if second is not None and _at(w, a.cpu, a.op, second):
            follow = Action(a.cpu, second)
            if w.is_enabled(follow):  # the PTL was free: the old step ran at once
                w.apply(follow)
                out.append(follow)
    return tuple(out)


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
    try:
        for item in list(corpus.iter_files([Path(p) for p in args])):
            e = corpus.load(item)
            if e.format == corpus.FORMAT:
                continue
            r = corpus.replay(e)
            if not r.ok:
                print(f"not upgraded: {r.message}", file=sys.stderr)
                return 1
            new = corpus.rewrite(e, item)
            print(f"{item} -> {new.name}")
    except corpus.CorpusError as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
