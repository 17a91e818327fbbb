"""Judge a nightly campaign from its shards' ``--json`` results.

    python -m tlbfuzz.fuzz.gate --expect .ci/nightly-expect.json [--collect DIR] RESULTS.json...

Fails (exit 1) on a violation of a (variant, property) that must hold, and on a known race
window (``must_reach``) that no shard reached although some shard fuzzed that pair; a window
the shards did not cover (a partial run) is reported but does not fail. ``--collect DIR``
copies the schedule files the night created into DIR, for upload. Exit 2: unreadable input.

Fails too on a reachability window (``tlbfuzz.protocol.windows``) that a variant's held runs, over
every shard, never reached: its held properties say nothing about that window. And on a held
property of a user's variant (``-v FILE.py:NAME``) whose changed decisions the night's runs,
over every shard, never reached (``tlbfuzz.fuzz.changes``): such a held says nothing about the
patch, as ``fuzz`` says by exiting 4; a night that only says "held" would pass it. So does a
held property of a user's variant whose changes no run counted (every run stopped by the time
budget first): ``fuzz`` exits 4 on that too. And a user's variant must hold what it was
fuzzed for: a violation of it fails the night, with its replay command. A window a
variant cannot reach by construction is listed, with the reason, under ``unreachable_windows``
(``{variant: {window: reason}}``); such a window that was reached after all fails the night as
well (the reason is false, or the model changed). A user's variant is let off the windows
listed under its own reference and those listed for all its bases (``tlbfuzz.fuzz.changes``),
and reaching one of its bases' is no failure: the patch may open it. A variant with no held
record, or whose every held run was stopped by the time budget, has no window counts:
reported, not failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tlbfuzz.fuzz.changes import bases_of
from tlbfuzz.fuzz.results import Record, base_breaks, judge_changes, merge
from tlbfuzz.fuzz.user import replay_command
from tlbfuzz.protocol import VARIANTS

if TYPE_CHECKING:
    from collections.abc import Sequence


@attrs.frozen
class WindowMiss:
    """A variant's reachability window the night's held runs never reached (or, if listed as
    unreachable, did reach)."""

    variant: str
    window: str
    steps: int
    """The model steps of the variant's held runs that were looked at."""


@attrs.frozen
class Verdict:
    broken_must_hold: list[Record]
    unreached: list[Record]
    uncovered: list[tuple[str, str]]
    new_files: list[str]
    windows_never_reached: list[WindowMiss] = attrs.field(factory=list)
    unreachable_but_reached: list[WindowMiss] = attrs.field(factory=list)
    windows_unmeasured: list[str] = attrs.field(factory=list)
    """Variants with held records but no window counts (cut by the time budget)."""
    unexercised: list[Record] = attrs.field(factory=list)
    """Held records of a user's variant whose changed decisions no run reached, or whose
    changes no run counted."""

    @property
    def ok(self) -> bool:
        return not (
            self.broken_must_hold
            or self.unreached
            or self.windows_never_reached
            or self.unreachable_but_reached
            or self.unexercised
        )


def judge(docs: Sequence[dict[str, Any]], expect: dict[str, Any]) -> Verdict:
    records = merge(Record.from_dict(r) for d in docs for r in d["results"])
    by_key = {(r.variant, r.property): r for r in records}
    must_hold = {(v, p) for v, props in expect["must_hold"].items() for p in props}
    # a user's variant (its reference, ``file.py:NAME``, is never a built-in name) must hold
    # whatever it was fuzzed for: the night on a patch is for finding its races
    broken = [
        r
        for r in records
        if r.verdict == "violates"
        and ((r.variant, r.property) in must_hold or r.variant not in VARIANTS)
    ]
    unreached: list[Record] = []
    uncovered: list[tuple[str, str]] = []
    for v, p in (tuple(k) for k in expect["must_reach"]):
        r = by_key.get((v, p))
        if r is None or r.verdict == "incomplete":
            uncovered.append((v, p))
        elif r.verdict != "violates":
            unreached.append(r)
    new = sorted({r.schedule_file for r in records if r.new and r.schedule_file})
    never, wrong, unmeasured = _judge_windows(records, expect.get("unreachable_windows", {}))
    # merge() added up each held record's changes over every shard; judged as fuzz judges
    # them for its exit 4
    unexercised = [r for r in records if r.verdict == "holds" and not judge_changes(r).ok]
    return Verdict(broken, unreached, uncovered, new, never, wrong, unmeasured, unexercised)


def _judge_windows(
    records: Sequence[Record], unreachable: dict[str, dict[str, str]]
) -> tuple[list[WindowMiss], list[WindowMiss], list[str]]:
    """Per variant with held records (merged over shards): the windows none of its held runs
    reached, less those listed as unreachable for it; the listed ones that were reached; and
    the variants whose held records carry no window counts. A variant's held properties share
    their runs, so a window is reached if any held record of the variant reached it."""
    reached: dict[str, dict[str, int]] = {}
    steps: dict[str, int] = {}
    held: list[str] = []
    for r in records:
        if r.verdict != "holds" or r.variant is None:
            continue
        if r.variant not in held:
            held.append(r.variant)
        if r.windows is None:
            continue
        counts = reached.setdefault(r.variant, {})
        for name, n in r.windows.items():
            counts[name] = max(counts.get(name, 0), n)
        steps[r.variant] = max(steps.get(r.variant, 0), r.steps or 0)
    never: list[WindowMiss] = []
    wrong: list[WindowMiss] = []
    for variant, counts in reached.items():
        exempt = set(unreachable.get(variant, {}))
        own = variant in VARIANTS  # a user's variant is let off its bases' windows too
        if not own:
            exempt |= _bases_exempt(records, variant, unreachable)
        for name, n in counts.items():
            if n == 0 and name not in exempt:
                never.append(WindowMiss(variant, name, steps[variant]))
            elif n > 0 and name in exempt and own:
                wrong.append(WindowMiss(variant, name, n))
    return never, wrong, [v for v in held if v not in reached]


def _bases_exempt(
    records: Sequence[Record], variant: str, unreachable: dict[str, dict[str, str]]
) -> set[str]:
    """The windows listed as unreachable for every base of a user's variant (the base its
    held records name, ``tlbfuzz.fuzz.changes``; none known: none)."""
    for r in records:
        if r.variant == variant and r.changes is not None:
            listed = (set(unreachable.get(b, {})) for b in bases_of(r.changes))
            return set.intersection(*listed)
    return set()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tlbfuzz.fuzz.gate", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--expect", required=True, help="the expectations file (JSON)")
    ap.add_argument("--collect", help="copy the schedule files the night created here")
    ap.add_argument("results", nargs="+", help="--json documents of the shards")
    args = ap.parse_args(argv)
    try:
        expect = json.loads(Path(args.expect).read_text(encoding="utf-8"))
        docs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.results]
    except (OSError, ValueError) as e:
        print(f"gate: {e}", file=sys.stderr)
        return 2
    v = judge(docs, expect)
    for r in v.broken_must_hold:
        print(f"FAIL {r.variant} must hold {r.property}, but: {r.message}")
        if base_breaks(r):
            print("     (the same schedule breaks its base too: the race is not the variant's own)")
        print(f"     replay: {replay_command(r.variant, r.schedule_file)}")
    for r in v.unreached:
        cut = (
            " (its last run stopped by the time budget)"
            if r.extra.get("cut_by_time_budget")
            else ""
        )
        print(
            f"FAIL {r.variant} {r.property}: a known race window, not reached in "
            f"{r.examples} examples{cut}"
        )
    for m in v.windows_never_reached:
        print(f"FAIL {m.variant}: window {m.window} never reached in {m.steps} held steps")
    for m in v.unreachable_but_reached:
        print(
            f"FAIL {m.variant}: window {m.window} is listed as unreachable, but {m.steps} "
            "steps reached it (fix unreachable_windows or the model)"
        )
    for r in v.unexercised:
        print(f"FAIL {r.variant} {r.property}: {r.message}")
    for variant, prop in v.uncovered:
        print(f"note {variant} {prop}: not fuzzed to the end by these shards")
    for variant in v.windows_unmeasured:
        print(f"note {variant}: windows not measured (every held run cut by the time budget)")
    if args.collect and v.new_files:
        dest = Path(args.collect)
        for f in v.new_files:
            src = Path(f)
            target = dest / src.parent.name / src.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.exists():
                shutil.copy2(src, target)
        print(f"{len(v.new_files)} new schedule file(s) copied to {dest}/")
    print("gate: " + ("ok" if v.ok else "failed") + f" ({len(docs)} shard result(s))")
    return 0 if v.ok else 1


if __name__ == "__main__":
    sys.exit(main())
