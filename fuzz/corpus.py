"""The corpus: saved schedules, one JSON file per finding, replayed by pytest forever.

Our own format, not Hypothesis's database (whose entries are keyed by the machine's source and
re-interpreted against the current model, so they do not survive code changes). A file holds a
format version, the variant (a built-in name, or a user's ``file.py:NAME``), the configuration,
the property, the expected verdict, the schedule as named actions (one per line in the file,
readable in a diff), its length, and how and when it was found.

Replay applies the actions by name, checks each is enabled, and compares the verdict. A step
that is no longer enabled is *drift*, reported with the file, the step and what was enabled
instead. Writes are atomic (a temporary file, then a hard link that fails if the name exists),
so nothing already saved is ever overwritten or lost; identical findings share a name.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from protocol import PROPERTIES, VARIANTS, Config, ParseError, Variant, World, parse

if TYPE_CHECKING:
    from collections.abc import Iterator

    from protocol import Action

FORMAT: Final = 1
EXPECTS: Final = ("violates", "holds")


class CorpusError(Exception):
    """Unreadable or invalid input: one line naming the file (and step), no traceback."""


@attrs.frozen
class Entry:
    """One corpus file, parsed."""

    variant: Variant
    variant_ref: str  # what the file says: a built-in name or "path.py:NAME"
    config: Config
    prop: str
    expect: str
    schedule: tuple[Action, ...]
    found: dict[str, Any] = attrs.field(factory=dict)
    note: str = ""
    path: Path | None = None


def load_variant(ref: str, base: Path | None = None) -> Variant:
    """A built-in variant name, or ``path/to/file.py:NAME`` naming a Variant in a user's file
    (relative paths are taken from ``base``, then from the working directory)."""
    if ref in VARIANTS:
        return VARIANTS[ref]
    if ":" not in ref:
        known = ", ".join(VARIANTS)
        raise CorpusError(f"unknown variant {ref!r} (built-in: {known}; or file.py:NAME)")
    file, _, attr = ref.rpartition(":")
    path = Path(file)
    if not path.is_absolute() and base is not None and (base / path).exists():
        path = base / path
    if not path.is_file():
        raise CorpusError(f"variant file {file} not found")
    name = "tlbfuzz_user_variant_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CorpusError(f"{file}: cannot load as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise CorpusError(f"{file}: raised {type(e).__name__} on import: {e}") from None
    v = getattr(module, attr, None)
    if not isinstance(v, Variant):
        raise CorpusError(f"{file}: {attr!r} is not a protocol.Variant")
    return v


def _field(d: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in d:
        raise CorpusError(f"{where}: missing field {key!r}")
    if not isinstance(d[key], kind):
        raise CorpusError(f"{where}: field {key!r} must be {kind.__name__}")
    return d[key]


def load(path: Path) -> Entry:
    """Read and validate one corpus file."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CorpusError(f"{where}: cannot read: {e.strerror}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise CorpusError(f"{where}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(d, dict):
        raise CorpusError(f"{where}: expected a JSON object")
    if d.get("format") != FORMAT:
        raise CorpusError(
            f"{where}: unknown format {d.get('format')!r} (this tlbfuzz reads {FORMAT})"
        )
    ref = _field(d, "variant", str, where)
    try:
        variant = load_variant(ref, path.parent)
    except CorpusError as e:
        raise CorpusError(f"{where}: {e}") from None
    prop = _field(d, "property", str, where)
    if prop not in PROPERTIES:
        raise CorpusError(f"{where}: unknown property {prop!r}")
    expect = _field(d, "expect", str, where)
    if expect not in EXPECTS:
        raise CorpusError(f"{where}: expect must be 'violates' or 'holds', not {expect!r}")
    try:
        config = Config.from_dict(_field(d, "config", dict, where))
    except (TypeError, ValueError) as e:
        raise CorpusError(f"{where}: bad config: {e}") from None
    lines = _field(d, "schedule", list, where)
    schedule = []
    for i, line in enumerate(lines, 1):
        if not isinstance(line, str):
            raise CorpusError(f"{where}: step {i}: not a string")
        try:
            schedule.append(parse(line))
        except ParseError as e:
            raise CorpusError(f"{where}: step {i}: {e}: {line!r}") from None
    length = d.get("length", len(schedule))
    if length != len(schedule):
        raise CorpusError(f"{where}: says length {length} but holds {len(schedule)} steps")
    return Entry(
        variant,
        ref,
        config,
        prop,
        expect,
        tuple(schedule),
        d.get("found") or {},
        d.get("note", ""),
        path,
    )


def to_json(e: Entry) -> str:
    d = {
        "format": FORMAT,
        "variant": e.variant_ref,
        "property": e.prop,
        "expect": e.expect,
        "length": len(e.schedule),
        "config": e.config.to_dict(),
        "found": e.found,
        "note": e.note,
        "schedule": [str(a) for a in e.schedule],
    }
    return json.dumps(d, indent=2) + "\n"


def digest(e: Entry) -> str:
    body = json.dumps(
        [e.variant_ref, e.prop, e.expect, e.config.to_dict(), [str(a) for a in e.schedule]]
    )
    return hashlib.sha256(body.encode()).hexdigest()[:10]


def file_name(e: Entry) -> str:
    return f"{e.prop}-{len(e.schedule)}-{digest(e)}.json"


def save(e: Entry, corpus: Path) -> tuple[Path, bool]:
    """Save atomically under corpus/<variant>/; never overwrites. Returns (path, created):
    an identical finding already saved is not written again."""
    folder = corpus / _safe(e.variant_ref)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e2:
        raise CorpusError(f"{folder}: cannot create: {e2.strerror}") from None
    target = folder / file_name(e)
    if target.exists():
        return target, False
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(to_json(e))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, target)  # atomic, and fails rather than replace an existing file
        except FileExistsError:
            return target, False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return target, True


def _safe(ref: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in ref)


def iter_files(paths: list[Path]) -> Iterator[Path]:
    """Corpus files named on the command line, folders walked in sorted order."""
    for p in paths:
        if p.is_dir():
            try:
                found = sorted(q for q in p.rglob("*.json") if not q.name.startswith(".tmp-"))
            except OSError as e:
                raise CorpusError(f"{p}: cannot read folder: {e.strerror}") from None
            yield from found
        elif p.exists():
            yield p
        else:
            raise CorpusError(f"{p}: no such file or folder")


@attrs.frozen
class Replay:
    """The outcome of replaying one entry."""

    entry: Entry
    ok: bool
    message: str
    snapshots: tuple[object, ...] = ()
    broke_at: int | None = None


def replay(e: Entry, keep_snapshots: bool = False) -> Replay:
    """Apply the schedule by name; every step must be enabled (else: drift), and the verdict
    must match ``expect``."""
    w = World.initial(e.variant, e.config)
    where = str(e.path or "<entry>")
    snaps: list[object] = [w.snapshot()] if keep_snapshots else []
    broke_at = None
    for i, a in enumerate(e.schedule, 1):
        if not w.is_enabled(a):
            enabled = ", ".join(str(x) for x in w.enabled_actions() if x.cpu == a.cpu) or "nothing"
            return Replay(
                e,
                False,
                f"{where}: drift at step {i}: {a} is not enabled; {_lane(a)} could do: {enabled}",
            )
        w.apply(a)
        if keep_snapshots:
            snaps.append(w.snapshot())
        if broke_at is None and w.violations([e.prop]):
            broke_at = i
    broke = broke_at is not None
    if e.expect == "violates" and not broke:
        return Replay(e, False, f"{where}: expected {e.prop} to break, but it held", tuple(snaps))
    if e.expect == "holds" and broke:
        v = w.violations([e.prop])[0]
        return Replay(
            e,
            False,
            f"{where}: expected {e.prop} to hold, but: {v.message}",
            tuple(snaps),
            broke_at,
        )
    verdict = f"breaks {e.prop} at step {broke_at}" if broke else f"{e.prop} holds"
    return Replay(e, True, f"{where}: ok, {verdict}", tuple(snaps), broke_at)


def _lane(a: Action) -> str:
    return f"cpu{a.cpu}" if a.cpu >= 0 else "the allocator"
