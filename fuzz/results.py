"""Machine-readable results: one record per (variant, property), as JSON and as JUnit XML.

``fuzz``, ``explore`` and ``replay`` write the same document (``--json PATH``), described by the
JSON Schema shipped beside this module (``fuzz/schema/results.schema.json``), and the same
records as JUnit test cases (``--junit PATH``): the variant is the class, the property the test,
and a violation (or a replay that does not match) a failure.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
import textwrap
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from xml.etree import ElementTree as ET

import attrs

from tlbfuzz.fuzz.changes import add_summaries, said_nothing_of, summary_lines
from tlbfuzz.fuzz.mail import prose
from tlbfuzz.fuzz.user import replay_command

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from tlbfuzz.fuzz.corpus import Replay

SCHEMA_VERSION: Final = 1
VERDICTS: Final = ("violates", "holds", "drift", "error", "incomplete")
"""``violates``/``holds``: what was found; ``drift``: a replayed step is no longer enabled;
``error``: unreadable input; ``incomplete``: the work for it was lost (a worker died) or
interrupted before it had a verdict."""


@attrs.define
class Record:
    """The result for one (variant, property): of a campaign, a search or a replayed file."""

    variant: str | None
    property: str | None
    verdict: str
    length: int | None = None
    """Steps of the shortest violating schedule found (or of the replayed schedule)."""
    schedule_file: str | None = None
    seed: int | None = None
    examples: int | None = None
    steps: int | None = None
    """Model steps run (fuzz), or unique states visited (explore)."""
    seconds: float = 0.0
    message: str = ""
    expect: str | None = None
    """What a replayed file expects; None for fuzz and explore."""
    ok: bool = True
    """As expected: a replay that matches, a search that finished. A violation found by
    ``fuzz`` or ``explore`` is not ok (the JUnit failure)."""
    new: bool = False
    """The schedule file was created by this run (not already in the corpus)."""
    windows: dict[str, int] | None = None
    """A held record's reachability windows (``tlbfuzz.protocol.windows``): per window, the model
    steps (fuzz) or unique states (explore) in it, added up over runs; 0: never reached, so
    the search never looked where the property could break there. None: not measured (not
    held, or every run of it was stopped by the time budget)."""
    changes: dict[str, Any] | None = None
    """A held record of a user's variant: the decisions it changes from its base, and how
    often the search reached each and answered otherwise (``tlbfuzz.fuzz.changes.summary``),
    added up over runs. None: a built-in variant, or not measured."""
    extra: dict[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["seconds"] = round(self.seconds, 3)
        if d["windows"] is None:
            del d["windows"]
        if d["changes"] is None:
            del d["changes"]
        if not d["extra"]:
            del d["extra"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        fields = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


def stamp() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def document(
    command: str, records: Sequence[Record], seconds: float, **meta: Any
) -> dict[str, Any]:
    """The JSON document: what ran, then the records."""
    return {
        "schema": SCHEMA_VERSION,
        "command": command,
        "finished": stamp(),
        "seconds": round(seconds, 3),
        **meta,
        "results": [r.to_dict() for r in records],
    }


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, doc: dict[str, Any]) -> None:
    _atomic_write(path, json.dumps(doc, indent=2) + "\n")


def schema() -> dict[str, Any]:
    """The JSON Schema of ``--json`` documents (shipped as package data)."""
    text = resources.files("tlbfuzz.fuzz").joinpath("schema/results.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def write_junit(path: Path, command: str, records: Sequence[Record], seconds: float) -> None:
    """JUnit XML: one testsuite for the command, one testcase per record."""
    failures = sum(1 for r in records if not r.ok and r.verdict in ("violates", "drift", "holds"))
    errors = sum(1 for r in records if r.verdict in ("error", "incomplete"))
    suite = ET.Element(
        "testsuite",
        name=f"tlbfuzz {command}",
        tests=str(len(records)),
        failures=str(failures),
        errors=str(errors),
        time=f"{seconds:.3f}",
        timestamp=stamp(),
    )
    for r in records:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=r.variant or "unreadable",
            name=_case_name(r),
            time=f"{r.seconds:.3f}",
        )
        summary = _summary(r)
        if r.verdict in ("error", "incomplete"):
            ET.SubElement(case, "error", message=summary, type=r.verdict).text = r.message
        elif not r.ok:
            ET.SubElement(case, "failure", message=summary, type=r.verdict).text = r.message
        else:
            lines = [summary]
            if r.windows is not None:
                lines += windows_lines(r.windows, _unit(command))
            ET.SubElement(case, "system-out").text = "\n".join(lines)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    _atomic_write(path, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")


def _case_name(r: Record) -> str:
    """The property; for a replayed file, the file (a property has several files)."""
    if r.expect is not None or r.property is None:
        return Path(r.schedule_file).name if r.schedule_file else "?"
    return r.property


def _summary(r: Record) -> str:
    parts = [r.verdict]
    if r.length is not None:
        parts.append(f"{r.length} steps")
    if r.examples is not None:
        parts.append(f"{r.examples} examples")
    if r.schedule_file:
        on = r.extra.get("replayed_from")  # replay --on: the file's variant is another
        cmd = (
            replay_command(r.variant, r.schedule_file)
            if on is None
            else replay_command(on, r.schedule_file, on=r.variant)
        )
        parts.append(f"replay: {cmd}")
    return ", ".join(parts)


# --- a campaign's table ---------------------------------------------------------------------


def merge(records: Iterable[Record]) -> list[Record]:
    """Records of the same (variant, property) from several work items (seeds, rounds, resumed
    sessions) as one: the shortest violation wins; otherwise held, with the examples, steps and
    seconds of every run added up. Order: first appearance."""
    out: dict[tuple[str | None, str | None], Record] = {}
    for r in records:
        key = (r.variant, r.property)
        cur = out.get(key)
        if cur is None:
            out[key] = attrs.evolve(r, extra=dict(r.extra))
            continue
        if r.verdict == "violates" and (
            cur.verdict != "violates" or (r.length or 0) < (cur.length or 0)
        ):
            out[key] = attrs.evolve(r, extra=dict(r.extra), new=r.new or cur.new)
        elif cur.verdict == "violates":
            cur.new = cur.new or r.new
        elif r.verdict == "holds" and cur.verdict in ("holds", "incomplete"):
            cur.verdict = "holds"
            cur.ok = True
            cur.extra.update(r.extra)  # e.g. cut_by_time_budget, if any run was
            cur.examples = (cur.examples or 0) + (r.examples or 0)
            cur.steps = (cur.steps or 0) + (r.steps or 0)
            cur.seconds += r.seconds
            cur.windows = add_windows(cur.windows, r.windows)
            cur.changes = add_summaries(cur.changes, r.changes)
            if cur.changes is not None:
                cur.extra.pop("changes_unmeasured", None)  # another run counted them
            judge_changes(cur)  # merged runs may reach what one did not
    return list(out.values())


def judge_changes(r: Record) -> Record:
    """A held record is a pass unless it is of a user's variant whose changes the search never
    reached (``tlbfuzz.fuzz.changes``), or that changes a barrier and ran under sc, where no
    answer of a barrier changes a step (``sc_blind``), or whose changes were never counted
    (the time budget stopped every run): then the held says nothing about the patch, ``ok``
    is false (JUnit fails it, and ``fuzz`` and ``explore`` exit 4) and ``message`` says why,
    the barriers first, as ``summary_lines`` does."""
    blind, missed = said_nothing_of(r.changes) if r.changes else ([], [])
    said = []
    if blind:  # as summary_lines says it: a barrier under sc, reached or not
        names = ", ".join(f"{n}()" for n in blind)
        verb = "changes" if len(blind) == 1 else "change"
        said.append(f"under sc {names} {verb} nothing (barriers: --memory-model tso)")
    if missed:
        said.append("the search never reached " + ", ".join(f"{n}()" for n in missed))
    if said:
        r.ok = False
        r.message = "held, but " + "; ".join(said)
    elif r.changes is None and r.extra.get("changes_unmeasured"):
        r.ok = False
        r.message = "the time budget stopped it before its changes were counted"
    else:
        r.ok = True
    return r


def unexercised(records: Iterable[Record]) -> bool:
    """Whether a held record says nothing about the user's patch (exit 4)."""
    return any(r.verdict == "holds" and not r.ok for r in records)


def add_windows(a: dict[str, int] | None, b: dict[str, int] | None) -> dict[str, int] | None:
    """Two runs' window counts added up; None (not measured) adds nothing."""
    if a is None or b is None:
        return None if a is None and b is None else dict(a or b or {})
    return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}


def windows_lines(reached: dict[str, int], unit: str) -> list[str]:
    """What a held claim reached: the reachability windows (``tlbfuzz.protocol.windows``) the search
    visited, with how many ``unit`` in each, and those it never reached, wrapped for a mail.
    ``fuzz`` (below its table) and ``explore`` (below its verdict) print these lines."""
    seen = [f"{name}\xa0({n:,}\xa0{unit})" for name, n in reached.items() if n]  # kept whole
    never = [name for name, n in reached.items() if not n]
    text = "  windows reached: " + (", ".join(seen) or "none")
    lines = textwrap.wrap(text, 72, subsequent_indent="    ")
    if never:
        lines += textwrap.wrap("  never reached: " + ", ".join(never), 72, subsequent_indent="    ")
    return [line.replace("\xa0", " ") for line in lines]


def _unit(command: str) -> str:
    """What a record's window counts count."""
    return "states" if command == "explore" else "steps"


def base_breaks(r: Record) -> bool:
    """Whether a finding's schedule also breaks its variant's base, replayed there
    (``tlbfuzz.fuzz.changes.whose``)."""
    found: dict[str, dict[str, Any]] = r.extra.get("on_bases") or {}
    return any(b.get("verdict") == "breaks" for b in found.values())


def table_lines(records: Sequence[Record], props: Sequence[str]) -> list[str]:
    """Variant by property: the length of the shortest violation, ``held``, ``unchecked``
    (nothing ran), ``error`` (the variant's code failed), ``interrupted`` or ``-`` (no
    result), then the examples and steps the variant's held properties were tried with."""
    rows: dict[str, dict[str, str]] = {}
    for r in records:
        if r.variant is None or r.property is None:
            continue
        row = rows.setdefault(r.variant, {})
        if r.verdict == "violates":
            row[r.property] = str(r.length) + (" (base)" if base_breaks(r) else "")
        elif r.verdict == "holds":
            row[r.property] = "held*" if r.extra.get("cut_by_time_budget") else "held"
            row["tried"] = f"{r.examples} examples, {r.steps} steps"
        elif r.verdict == "error":  # the variant's code failed: no verdict
            row[r.property] = "error"
        else:  # unchecked (nothing ran), interrupted, or no result (-)
            row.setdefault(r.property, str(r.extra.get("cell", "-")))
    if not rows:
        return []
    cols = [*props, "tried"]
    w0 = max(len(v) for v in rows)
    widths = [max(len(p), *(len(row.get(p, "")) for row in rows.values())) for p in cols]
    head = " " * w0 + "  " + "  ".join(f"{p:<{w}}" for p, w in zip(cols, widths, strict=True))
    out = ["", head.rstrip()]
    for v, row in rows.items():
        cells = "  ".join(f"{row.get(p, '-'):<{w}}" for p, w in zip(cols, widths, strict=True))
        out.append(f"{v:<{w0}}  {cells}".rstrip())
    out.append(
        "(a number: the length of the shortest violating schedule found, minimised; held: no "
        "violation in the examples and steps tried, added up over the variant's runs"
        + (
            "; (base): the same schedule breaks the variant's base too, so the race is not"
            " the variant's own"
            if any(c.endswith(" (base)") for row in rows.values() for c in row.values())
            else ""
        )
        + (
            "; held*: the time budget stopped its last run"
            if any("held*" in row.values() for row in rows.values())
            else ""
        )
        + (
            "; unchecked, error, interrupted, -: no verdict"
            if any(
                c in ("unchecked", "error", "interrupted", "-")
                for row in rows.values()
                for c in row.values()
            )
            else ""
        )
        + ")"
    )
    return out


def held_windows_lines(records: Sequence[Record]) -> list[str]:
    """Below a campaign's table: per variant with held cells, the windows its runs reached and
    those they never reached. A variant's held properties share their runs, so one block per
    variant; if their counts differ (runs cut or resumed differently), one per property."""
    groups: dict[str, dict[str, list[Record]]] = {}  # variant -> its counts, as JSON -> records
    for r in records:
        if r.verdict == "holds" and r.variant is not None and r.property is not None:
            key = json.dumps([r.windows, r.changes], sort_keys=True)
            groups.setdefault(r.variant, {}).setdefault(key, []).append(r)
    if not groups:
        return []
    out = ["", "windows of the held cells (model steps that ended in each):"]
    for variant, by_counts in groups.items():
        for recs in by_counts.values():
            head = variant if len(by_counts) == 1 else f"{variant} ({_props(recs)})"
            out += prose(head + ":", 72, "", "    ")
            reached = recs[0].windows
            if reached is not None:
                out += windows_lines(reached, "steps")
            elif any(r.extra.get("cut_by_time_budget") for r in recs):
                out.append("  windows: not measured (the time budget stopped every run of it)")
            else:
                out.append("  windows: not measured")
            if recs[0].changes is not None:
                out += summary_lines(recs[0].changes)
            elif recs[0].extra.get("changes_unmeasured"):
                out.append("  changes: NOT COUNTED (the time budget stopped every run of it)")
            never = recs[0].extra.get("never_drawn")
            if never:
                why = (
                    "not in --budget"
                    if recs[0].extra.get("budget_fixed")
                    else f"drawn only when asked, e.g. --budget {never[0]}=1"
                )
                out += prose(f"paths never started ({why}): {', '.join(never)}", 72, "  ", "    ")
    return out


def _props(recs: Sequence[Record]) -> str:
    return ", ".join(r.property or "?" for r in recs)


def replay_record(r: Replay, path: Path, seconds: float) -> Record:
    """A replayed corpus file as a record: the verdict it showed, against the one it expects."""
    e = r.entry
    if r.ok:
        verdict = e.expect
    elif "drift at step" in r.message:
        verdict = "drift"
    else:
        verdict = "holds" if e.expect == "violates" else "violates"
    found = e.found
    seed = found.get("seed")
    examples = found.get("examples")
    return Record(
        e.variant_ref,
        e.prop,
        verdict,
        length=len(e.schedule),
        schedule_file=str(path),
        seed=seed if isinstance(seed, int) else None,
        examples=examples if isinstance(examples, int) else None,
        steps=len(e.schedule),
        seconds=seconds,
        message=r.message,
        expect=e.expect,
        ok=r.ok,
    )
