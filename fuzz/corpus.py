"""The corpus: saved schedules, one JSON file per finding, replayed by pytest forever.

Our own format, not Hypothesis's database (whose entries are keyed by the machine's source and
re-interpreted against the current model, so they do not survive code changes). A file holds a
format version, the variant (a built-in name, or a user's ``file.py:NAME``), the configuration,
the property, the expected verdict, the schedule as named actions (one per line in the file,
readable in a diff), its length, and how and when it was found.

A corpus file is data, and untrusted: reading one never runs code (a user variant it names
resolves only against variant files the user passed on the command line, ``tlbfuzz.fuzz.user``), and
every field is checked, with upper bounds where the model's size grows exponentially
(``BOUNDS``). A bad file is one line naming the file and the step.

Replay applies the actions by name, checks each is enabled, and compares the verdict. A step
that is no longer enabled is *drift*, reported with the file, the step and what was enabled
instead. Writes are atomic (a temporary file, then a hard link that fails if the name exists),
so nothing already saved is ever overwritten or lost; identical findings share a name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from typing import TYPE_CHECKING, Any, Final

import attrs

from tlbfuzz.protocol import (
    BUDGET_KINDS,
    PROPERTIES,
    Config,
    ParseError,
    Variant,
    World,
    budget_kinds,
    parse,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from tlbfuzz.fuzz.user import Registry
    from tlbfuzz.protocol import Action

FORMAT: Final = 2
"""2 since issue 9 split ``tlb_gather_mmu()`` from the PTE changes; format 1 is still read,
translated step for step (``tlbfuzz.fuzz.upgrade``)."""
READS: Final = (1, 2)
EXPECTS: Final = ("violates", "holds")

MAX_FILE_BYTES: Final = 1 << 20
"""1 MiB. The largest corpus file is about 2 KB; a 1000-step schedule fits in 60 KB."""
MAX_STEPS: Final = 1000
"""Replay is linear in the schedule, but every step is printed by ``show``."""
MAX_LINE: Final = 200
"""Characters in one schedule line (the longest action is about 60)."""
MAX_DIGITS: Final = 20
"""Digits in a JSON integer: anything longer is no count this model has."""

BOUNDS: Final[dict[str, tuple[int, int]]] = {
    "cpus": (1, 4),
    "mms": (1, 4),
    "anon_pages": (0, 8),
    "file_pages": (0, 8),
    "asids": (1, 6),
    "tlb_single_page_flush_ceiling": (1, 512),
}
"""Config fields, inclusive. The state space grows exponentially in CPUs, pages, mms and
budgets; the CPU bound also keeps symmetry reduction and canonical naming (every renaming of
the CPUs: 4! = 24) cheap. asids: the kernel's TLB_NR_DYN_ASIDS is 6. The flush ceiling is
compared with a page count: 512 PTEs per page table. Each budget kind: ``BUDGET_BOUNDS``."""
MAX_PAGES: Final = 8
"""anon_pages + file_pages: all pages sit under one PMD entry, and each adds actions per CPU."""
BUDGET_BOUNDS: Final = (0, 8)
"""Kernel paths of one kind one CPU may start; the fuzzer draws 1-3, the default is 1-2."""
OTHER_INT_BOUNDS: Final = (0, 64)
"""An integer Config field this version does not know a bound for."""


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
    format: int = FORMAT
    """The format the file was written in (its schedule is translated to today's)."""


def read_capped(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes. Never blocks on a FIFO or a
    device and never reads more than ``limit + 1`` bytes (``/dev/zero``, a huge file)."""
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise CorpusError(f"{where}: cannot read: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise CorpusError(f"{where}: is a folder, not a corpus file")
        if not stat.S_ISREG(st.st_mode):
            raise CorpusError(f"{where}: not a regular file")
        if st.st_size > limit:
            raise CorpusError(f"{where}: larger than {limit >> 20} MiB")
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise CorpusError(f"{where}: cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise CorpusError(f"{where}: larger than {limit >> 20} MiB")
    return data


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _decode(where: str, data: bytes) -> object:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{where}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})"
        ) from None
    try:
        return json.loads(text, parse_int=_parse_int, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise CorpusError(f"{where}: not valid JSON (line {e.lineno}: {e.msg})") from None
    except RecursionError:
        raise CorpusError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError as e:
        raise CorpusError(f"{where}: not valid JSON ({e})") from None


def _field(d: dict[str, Any], key: str, kind: type, where: str, what: str = "") -> Any:
    if key not in d:
        raise CorpusError(f"{where}: missing field {key!r}")
    value = d[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CorpusError(f"{where}: field {key!r} must be {what or kind.__name__}")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int_in(where: str, name: str, value: object, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise CorpusError(f"{where}: {name} must be a whole number, not {_short(value)}")
    if not lo <= value <= hi:
        raise CorpusError(f"{where}: {name} {value} is out of range {lo}-{hi}")
    return value


def check_config(where: str, raw: object, kinds: tuple[str, ...] = BUDGET_KINDS) -> Config:
    """A Config from a corpus file's ``config`` object, within ``BOUNDS``; ``kinds``: the
    budget kinds of the file's variant (a user variant's own paths bring their own). (The
    bounds belong in tlbfuzz.protocol.Config's validators; they are checked here, at the boundary,
    meanwhile.)"""
    if not isinstance(raw, dict):
        raise CorpusError(f"{where}: field 'config' must be an object")
    fields = {f.name: f for f in attrs.fields(Config)}
    values: dict[str, object] = {}
    for key, value in raw.items():
        f = fields.get(key)
        if f is None:
            raise CorpusError(f"{where}: config: unknown field {key!r}")
        if key == "budget":
            values[key] = _check_budget(where, value, kinds)
        elif key == "cpu_budget":
            if not isinstance(value, dict):
                raise CorpusError(f"{where}: config: cpu_budget must be an object")
            per = []
            for cpu, b in value.items():
                if not (cpu.isascii() and cpu.isdigit() and int(cpu) < BOUNDS["cpus"][1]):
                    raise CorpusError(f"{where}: config: cpu_budget: bad CPU {_short(cpu)}")
                per.append((int(cpu), _check_budget(where, b, kinds)))
            values[key] = tuple(sorted(per))
        elif key == "memory_model":
            if value not in ("sc", "tso"):
                raise CorpusError(f'{where}: config: memory_model must be "sc" or "tso"')
            values[key] = value
        elif isinstance(f.default, bool):
            if not isinstance(value, bool):
                raise CorpusError(f"{where}: config: {key} must be true or false")
            values[key] = value
        else:
            lo, hi = BOUNDS.get(key, OTHER_INT_BOUNDS)
            values[key] = _int_in(where, f"config: {key}", value, lo, hi)
    try:
        config = Config(**values)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise CorpusError(f"{where}: bad config: {e}") from None
    if config.pages > MAX_PAGES:
        raise CorpusError(
            f"{where}: config: {config.pages} pages (anon_pages + file_pages) is over {MAX_PAGES}"
        )
    if config.pages == 0:
        raise CorpusError(f"{where}: config: anon_pages + file_pages is 0: the mm maps no page")
    return config


def _check_budget(where: str, raw: object, kinds: tuple[str, ...]) -> object:
    from tlbfuzz.protocol import Budget

    if not isinstance(raw, dict):
        raise CorpusError(f"{where}: config: budget must be an object")
    counts: dict[str, int] = {}
    rest: int | None = 0  # a saved budget names every kind its run had (Budget.from_dict)
    for key, value in raw.items():
        if key == "rest":
            rest = None if value is None else _int_in(where, "config: budget rest", value, 0, 0)
            continue
        if key not in kinds:
            raise CorpusError(
                f"{where}: config: unknown budget kind {_short(key)} (kinds: {', '.join(kinds)})"
            )
        counts[key] = _int_in(where, f"config: budget {key}", value, *BUDGET_BOUNDS)
    return Budget(rest=rest, **counts)


KNOWN_FIELDS: Final = frozenset(
    {"format", "variant", "property", "expect", "length", "config", "found", "note", "schedule"}
)


def load(path: Path, registry: Registry | None = None) -> Entry:
    """Read and validate one corpus file. Runs no code: a user variant (``file.py:NAME``)
    must be in ``registry``, the variant files the user passed on the command line."""
    where = str(path)
    d = _decode(where, read_capped(path))
    if not isinstance(d, dict):
        raise CorpusError(f"{where}: expected a JSON object")
    fmt = d.get("format")
    if isinstance(fmt, bool) or fmt not in READS:
        raise CorpusError(
            f"{where}: unknown format {_short(fmt)} (this tlbfuzz reads {READS[0]} to {FORMAT})"
        )
    unknown = sorted(set(d) - KNOWN_FIELDS)
    if unknown:
        raise CorpusError(f"{where}: unknown field {_short(unknown[0])}")
    ref = _field(d, "variant", str, where)
    if len(ref) > MAX_LINE:
        raise CorpusError(f"{where}: field 'variant' is longer than {MAX_LINE} characters")
    variant = resolve_variant(ref, registry, where)
    prop = _field(d, "property", str, where)
    if prop not in PROPERTIES:
        raise CorpusError(f"{where}: unknown property {_short(prop)}")
    expect = _field(d, "expect", str, where)
    if expect not in EXPECTS:
        raise CorpusError(f"{where}: expect must be 'violates' or 'holds', not {_short(expect)}")
    kinds = tuple(k.name for k in budget_kinds(variant.paths()))
    config = check_config(where, _field(d, "config", dict, where, "an object"), kinds)
    lines = _field(d, "schedule", list, where, "a list of actions")
    if len(lines) > MAX_STEPS:
        raise CorpusError(f"{where}: {len(lines)} steps is over {MAX_STEPS}")
    schedule = []
    for i, line in enumerate(lines, 1):
        if not isinstance(line, str):
            raise CorpusError(f"{where}: step {i}: not a string")
        if len(line) > MAX_LINE:
            raise CorpusError(f"{where}: step {i}: longer than {MAX_LINE} characters")
        try:
            schedule.append(parse(line))
        except ParseError as e:
            raise CorpusError(f"{where}: step {i}: {e}: {_short(line)}") from None
    length = d.get("length", len(schedule))
    if isinstance(length, bool) or length != len(schedule):
        raise CorpusError(f"{where}: says length {_short(length)} but holds {len(schedule)} steps")
    found = d.get("found", {})
    if not isinstance(found, dict):
        raise CorpusError(f"{where}: field 'found' must be an object")
    note = d.get("note", "")
    if not isinstance(note, str):
        raise CorpusError(f"{where}: field 'note' must be a string")
    steps = tuple(schedule)
    if fmt == 1:
        steps = _from_format_1(where, variant, config, steps)
    return Entry(variant, ref, config, prop, expect, steps, found, note, path, fmt)


def _from_format_1(
    where: str, variant: Variant, config: Config, schedule: tuple[Action, ...]
) -> tuple[Action, ...]:
    """A format-1 schedule as format 2 writes it (a user variant's error: the file named)."""
    from tlbfuzz.fuzz.upgrade import from_format_1
    from tlbfuzz.fuzz.user import UserVariantError

    try:
        return from_format_1(World.initial(variant, config), schedule)
    except UserVariantError as err:
        raise UserVariantError(f"{where}: reading format 1: {err}") from None


def resolve_variant(ref: str, registry: Registry | None, where: str) -> Variant:
    """The variant a corpus file names, without running any code."""
    from tlbfuzz.fuzz.user import Registry

    try:
        return (registry or Registry()).resolve(ref)
    except LookupError as e:
        raise CorpusError(f"{where}: {e.args[0]}") from None


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


def folder_for(ref: str, corpus: Path) -> Path:
    """Where findings of variant ``ref`` go: ``corpus/<ref, made a safe file name>``."""
    return corpus / _safe(ref)


def target(e: Entry, corpus: Path) -> Path:
    """The path ``save(e, corpus)`` writes (or finds already there)."""
    return folder_for(e.variant_ref, corpus) / file_name(e)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save(e: Entry, corpus: Path) -> tuple[Path, bool]:
    """Save atomically under corpus/<variant>/; never overwrites. Returns (path, created):
    an identical finding already saved is not written again. Files are created like any
    other (0666 less the umask: 0644 usually), not 0600. Every failure is a CorpusError."""
    folder = folder_for(e.variant_ref, corpus)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e2:
        raise CorpusError(f"{folder}: cannot create: {e2.strerror}") from None
    path = folder / file_name(e)
    if path.exists():
        return path, False
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    except OSError as e2:
        raise CorpusError(f"{folder}: cannot write: {e2.strerror}") from None
    try:
        _fill(fd, e)
        try:
            os.link(tmp, path)  # atomic, and fails rather than replace an existing file
        except FileExistsError:
            return path, False
    except OSError as e2:
        raise CorpusError(f"{path}: cannot write: {e2.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return path, True


def _fill(fd: int, e: Entry) -> None:
    """Write ``e`` into the new temporary file ``fd`` (mode 0666 less the umask), to disk."""
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o666 & ~_umask())
        f.write(to_json(e))
        f.flush()
        os.fsync(f.fileno())


def rewrite(e: Entry, old: Path) -> Path:
    """Write ``e`` in today's format next to ``old`` (the same finding in an older format),
    under its own name, then remove ``old``: the file is replaced atomically if the name is
    the same, and never lost in between."""
    new = old.parent / file_name(e)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=old.parent)
        try:
            _fill(fd, e)
            os.replace(tmp, new)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if new != old:
            old.unlink()
    except OSError as e2:
        raise CorpusError(f"{new}: cannot write: {e2.strerror}") from None
    return new


def _safe(ref: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in ref)


def walk(paths: Iterable[Path]) -> Iterator[Path | CorpusError]:
    """Corpus files named on the command line, and the ``*.json`` files under folders in
    sorted order. What cannot be read is yielded as a CorpusError in its place (an unreadable
    folder, a symlink loop, a dangling link), never skipped; symlinked folders are followed
    once."""
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as e:
            what = "no such file or folder" if isinstance(e, FileNotFoundError) else e.strerror
            yield CorpusError(f"{p}: {what}")
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_folder(p, {(st.st_dev, st.st_ino)})
        else:
            yield p


def _walk_folder(folder: Path, ancestors: set[tuple[int, int]]) -> Iterator[Path | CorpusError]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda x: x.name)
    except OSError as e:
        yield CorpusError(f"{folder}: cannot read folder: {e.strerror}")
        return
    for entry in entries:
        path = folder / entry.name
        try:
            is_dir = entry.is_dir()  # follows a symlink
        except OSError as e:
            yield CorpusError(f"{path}: cannot read: {e.strerror}")
            continue
        if is_dir:
            try:
                st = os.stat(path)
            except OSError as e:
                yield CorpusError(f"{path}: cannot read folder: {e.strerror}")
                continue
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                yield CorpusError(f"{path}: symlink loop (a folder that contains itself)")
                continue
            yield from _walk_folder(path, ancestors | {key})
        elif entry.name.endswith(".json") and not entry.name.startswith(".tmp-"):
            yield path  # a dangling link is reported by load(), as this file's error


def iter_files(paths: list[Path]) -> Iterator[Path]:
    """The corpus files under ``paths``; raises CorpusError at the first that cannot be
    read (use ``walk`` to go on past it)."""
    for item in walk(paths):
        if isinstance(item, CorpusError):
            raise item
        yield item


@attrs.frozen
class Replay:
    """The outcome of replaying one entry."""

    entry: Entry
    ok: bool
    message: str
    snapshots: tuple[object, ...] = ()
    broke_at: int | None = None
    drift: bool = False  # a step was not enabled


def replay(e: Entry, keep_snapshots: bool = False) -> Replay:
    """Apply the schedule by name; every step must be enabled (else: drift), and the verdict
    must match ``expect``. A user variant's error is raised with the file and step."""
    from tlbfuzz.fuzz.user import UserVariantError

    where = str(e.path or "<entry>")
    step = [0]
    try:
        return _replay(e, where, keep_snapshots, step)
    except UserVariantError as err:
        at = f"step {step[0]}: " if step[0] else ""
        raise UserVariantError(f"{where}: {at}{err}") from None


def _replay(e: Entry, where: str, keep_snapshots: bool, step: list[int]) -> Replay:
    w = World.initial(e.variant, e.config)
    snaps: list[object] = [w.snapshot()] if keep_snapshots else []
    broke_at = None
    for i, a in enumerate(e.schedule, 1):
        step[0] = i
        if not w.is_enabled(a):
            enabled = ", ".join(str(x) for x in w.enabled_actions() if x.cpu == a.cpu) or "nothing"
            return Replay(
                e,
                False,
                f"{where}: drift at step {i}: {a} is not enabled; {_lane(a)} could do: {enabled}",
                drift=True,
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
