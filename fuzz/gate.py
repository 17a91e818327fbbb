"""Judge a nightly campaign from its shards' ``--json`` results.

    python -m fuzz.gate --expect .ci/nightly-expect.json [--collect DIR] RESULTS.json...

Fails (exit 1) on a violation of a (variant, property) that must hold, and on a known race
window (``must_reach``) that no shard reached although some shard fuzzed that pair; a window
the shards did not cover (a partial run) is reported but does not fail. ``--collect DIR``
copies the schedule files the night created into DIR, for upload. Exit 2: unreadable input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from fuzz.results import Record, merge

if TYPE_CHECKING:
    from collections.abc import Sequence


@attrs.frozen
class Verdict:
    broken_must_hold: list[Record]
    unreached: list[Record]
    uncovered: list[tuple[str, str]]
    new_files: list[str]

    @property
    def ok(self) -> bool:
        return not self.broken_must_hold and not self.unreached


def judge(docs: Sequence[dict[str, Any]], expect: dict[str, Any]) -> Verdict:
    records = merge(Record.from_dict(r) for d in docs for r in d["results"])
    by_key = {(r.variant, r.property): r for r in records}
    must_hold = {(v, p) for v, props in expect["must_hold"].items() for p in props}
    broken = [
        r for r in records if r.verdict == "violates" and (r.variant, r.property) in must_hold
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
    return Verdict(broken, unreached, uncovered, new)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.gate", description=__doc__.splitlines()[0])
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
        print(f"     replay: tlbfuzz replay {r.schedule_file}")
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
    for variant, prop in v.uncovered:
        print(f"note {variant} {prop}: not fuzzed to the end by these shards")
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
