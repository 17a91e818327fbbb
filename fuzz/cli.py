"""``tlbfuzz``: fuzz TLB-shootdown variants, explore them exhaustively, replay the corpus.

Exit status: 0 nothing broke (or every replay matched), 1 violations found (or a replay did not
match), 2 bad usage or unreadable input (one line on stderr, no traceback), 3 a worker process
died, 4 everything held but the search never reached a decision the user's variant changes
(``tlbfuzz.fuzz.changes``), 130 interrupted with nothing found.
"""

from __future__ import annotations

import contextlib
import datetime
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

from tlbfuzz.fuzz import inputs
from tlbfuzz.fuzz.changes import (
    asking_kinds,
    changes_of,
    instrument,
    summary,
    summary_lines,
    whose,
    whose_lines,
)
from tlbfuzz.fuzz.corpus import (
    BOUNDS,
    BUDGET_BOUNDS,
    MAX_PAGES,
    CorpusError,
    Entry,
    folder_for,
    load,
    replay,
    save,
    walk,
)
from tlbfuzz.fuzz.inputs import UsageError
from tlbfuzz.fuzz.mail import FORMATS, machine, render_as
from tlbfuzz.fuzz.narrow import NARROW_STATES
from tlbfuzz.fuzz.results import Record, judge_changes, unexercised, windows_lines
from tlbfuzz.fuzz.user import (
    Registry,
    UserVariantError,
    cli_variant,
    replay_command,
    user_variant,
)
from tlbfuzz.protocol import (
    DEFAULT_PROPERTIES,
    PROPERTIES,
    VARIANTS,
    Config,
    World,
    budget_kinds,
    parse_budgets,
)
from tlbfuzz.protocol.search import replayed

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from tlbfuzz.protocol import Action, Variant, Violation

DEFAULT_CORPUS = Path("corpus")
"""The tracked corpus, replayed by pytest: findings go there only when asked (--corpus)."""
DEFAULT_FINDINGS = Path("findings")
"""Where fuzz and explore --save put findings by default: not tracked (.gitignore)."""


def _fail(msg: str) -> NoReturn:
    raise UsageError(msg)


def _variants(refs: Sequence[str] | None) -> list[tuple[str, Variant]]:
    if not refs:
        return list(VARIANTS.items())
    return [(r, cli_variant(r)) for r in refs]


def _registry(files: Sequence[str] | None) -> Registry:
    """The user variant files passed with --variants: all a corpus file may name."""
    registry = Registry()
    for f in files or ():
        registry.add_file(Path(f))
    return registry


def _props(names: Sequence[str] | None) -> list[str]:
    if not names:
        return list(DEFAULT_PROPERTIES)
    for n in names:
        if n not in PROPERTIES:
            _fail(f"unknown property {n!r} (see: tlbfuzz properties)")
    return list(names)


def cmd_variants(_args: argparse.Namespace) -> int:
    width = max(len(n) for n in VARIANTS)
    for name, v in VARIANTS.items():
        print(f"{name:<{width}}  {v.summary}")
        print(f"{'':<{width}}  models: {v.kernel_ref}")
    return 0


def cmd_properties(_args: argparse.Namespace) -> int:
    width = max(len(n) for n in PROPERTIES)
    for name, p in PROPERTIES.items():
        tag = "" if p.default else "  [strict: not in the default set]"
        print(f"{name:<{width}}  {p.summary}{tag}")
    return 0


def _stamp() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _draw_seed(args: argparse.Namespace) -> int | None:
    """The run's seed: --seed, or drawn (and printed and saved) for the random profiles, so
    that any run can be repeated; ci is derandomized and needs none."""
    if args.seed is not None or args.profile == "ci":
        return args.seed  # type: ignore[no-any-return]
    return secrets.randbelow(1 << 32)


def cmd_fuzz(args: argparse.Namespace) -> int:
    """A campaign (``tlbfuzz.fuzz.campaign``): its workers print each finding, then save it,
    canonical (one race, one file); a finding that cannot be saved stays on screen, said in one
    line."""
    from tlbfuzz.fuzz.campaign import (
        Campaign,
        CampaignError,
        Plan,
        default_workers,
        open_database,
        parse_shard,
    )

    variants = _variants(args.variant)
    props = _props(args.property)
    corpus: Path = args.corpus
    for _, v in variants if args.budget else ():  # checked here, made per variant by workers
        _config(v, args.cpus or 2, args.budget, _shape(args))
    try:
        shard = parse_shard(args.shard)
        if args.database is not None:  # before any work: reachable, or a folder
            open_database(args.database, args.profile)
    except CampaignError as e:
        _fail(str(e))
    inputs.check_output_folder(
        corpus, "--corpus", [folder_for(r, corpus).name for r, _ in variants]
    )
    if args.profile == "nightly" and args.database is None:
        from tlbfuzz.fuzz.profiles import NIGHTLY_DB

        inputs.check_output_folder(NIGHTLY_DB, "the nightly example database")
    elif args.database is not None and "://" not in args.database:
        inputs.check_output_folder(Path(args.database), "--database")
    seed = _draw_seed(args)
    plan = Plan(
        tuple(ref for ref, _ in variants),
        tuple(props),
        profile=args.profile,
        seed=seed,
        max_examples=args.max_examples,
        cpus=args.cpus,
        seconds=args.seconds,
        corpus=str(corpus),
        database=args.database,
        shard=shard,
        fmt=args.format,
        budget=tuple(args.budget or ()),
        shape=tuple(sorted(_shape(args).items())),
        narrow_states=args.narrow_states,
    )
    workers = args.workers or default_workers()
    campaign = Campaign(
        plan,
        workers,
        args.time_budget,
        out=lambda text: print(text, flush=True),
        err=_err,
        progress=sys.stderr.isatty(),
        variants=dict(variants),
    )
    t0 = time.perf_counter()
    try:
        records = campaign.run()
    except CampaignError as e:
        _fail(str(e))
    dt = time.perf_counter() - t0
    if campaign.interrupted:
        inputs.warn("interrupted: findings so far are saved")
    from tlbfuzz.fuzz.results import held_windows_lines, table_lines

    for line in [*table_lines(records, props), *held_windows_lines(records)]:
        print(line)
    unchecked = [r for r in records if r.extra.get("cell") == "unchecked"]
    for r in unchecked:
        inputs.warn(f"{r.variant}: {r.property} was not checked (no example ran)")
    findings = sum(r.verdict == "violates" for r in records)
    how = "derandomized" if seed is None else f"seed {seed} (--seed {seed} repeats it)"
    print(
        f"{findings} violation(s) in {dt:.0f}s; {how}; corpus: {corpus}/"
        + (f"; {campaign.unsaved} NOT saved" if campaign.unsaved else "")
    )
    problems = campaign.errors + len(unchecked)  # variants whose code failed, cells unchecked
    if problems:
        status = 2
    else:
        status = (
            1
            if findings
            else 130
            if campaign.interrupted
            else 3
            if campaign.lost
            else 4
            if unexercised(records)
            else 0
        )
    meta = {
        "profile": args.profile,
        "seed": seed,
        "workers": workers,
        "shard": args.shard,
        "database": args.database,
        "complete": campaign.complete,
        "resumed": campaign.resumed,
        "exit_status": status,
    }
    _write_results(args, "fuzz", records, dt, meta)
    return status


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _write_results(
    args: argparse.Namespace,
    command: str,
    records: Sequence[Record],
    seconds: float,
    meta: dict[str, Any] | None = None,
) -> None:
    """``--json PATH`` and ``--junit PATH``, if asked for."""
    from tlbfuzz.fuzz.results import document, write_json, write_junit

    try:
        if args.json:
            write_json(Path(args.json), document(command, records, seconds, **(meta or {})))
        if args.junit:
            write_junit(Path(args.junit), command, records, seconds)
    except OSError as e:
        _fail(f"cannot write results: {e}")


_T = TypeVar("_T")


def _each_file(
    paths: Sequence[str], read: Callable[[Path], _T], records: list[Record]
) -> Iterator[tuple[Path, _T, float]]:
    """What ``read`` makes of each corpus file below ``paths``, with the time it began. A
    file it cannot read, or a folder that cannot be walked, is said in one line, recorded in
    ``records`` as an error of no property, and skipped: the other files go on."""
    for item in walk([Path(p) for p in paths]):
        t0 = time.perf_counter()
        try:
            if isinstance(item, CorpusError):
                raise item
            value = read(item)
        except (CorpusError, UserVariantError) as e:
            inputs.warn(str(e))
            where = None if isinstance(item, CorpusError) else str(item)
            records.append(
                Record(None, None, "error", schedule_file=where, message=str(e), ok=False)
            )
            continue
        yield item, value, t0


def _unreadable(records: Sequence[Record]) -> int:
    """The files ``_each_file`` could not read."""
    return sum(r.verdict == "error" and r.property is None for r in records)


def cmd_replay(args: argparse.Namespace) -> int:
    from tlbfuzz.fuzz.results import replay_record

    registry = _registry(args.variants)
    if args.on is not None:
        return _replay_on(args, registry)
    passed = failed = 0
    records: list[Record] = []
    t_all = time.perf_counter()
    for item, r, t0 in _each_file(args.paths, lambda f: replay(load(f, registry)), records):
        print(("" if r.ok else "FAIL ") + r.message, flush=True)
        passed += r.ok
        failed += not r.ok
        records.append(replay_record(r, item, time.perf_counter() - t0))
    unreadable = _unreadable(records)
    if not passed + failed + unreadable:
        _fail("no corpus files found in " + " ".join(args.paths))
    print(
        f"{passed} passed, {failed} failed" + (f", {unreadable} unreadable" if unreadable else "")
    )
    status = 2 if unreadable else 1 if failed else 0
    _write_results(args, "replay", records, time.perf_counter() - t_all, {"exit_status": status})
    return status


def _replay_on(args: argparse.Namespace, registry: Registry) -> int:
    """``replay --on VARIANT``: each file's schedule on VARIANT instead of the variant the file
    names: which known races a patch keeps (exit 1 if any) and which it closes. A variant file
    given with ``--on`` may be named by the corpus files too (it is registered)."""
    from tlbfuzz.fuzz.mail import step_words

    try:
        uv = user_variant(args.on)
    except UserVariantError as err:
        _fail(str(err))
    if uv is not None:
        registry.add(uv)
    on = VARIANTS[args.on] if uv is None else uv.variant
    counts = {"breaks": 0, "holds": 0, "refuses": 0}
    errors = 0
    records: list[Record] = []
    t_all = time.perf_counter()
    for item, entry, t0 in _each_file(args.paths, lambda f: load(f, registry), records):
        try:
            r = replayed(World.initial(on, entry.config), entry.schedule, [entry.prop])
        except UserVariantError as err:  # the --on variant's code failed on this file
            message = f"{item}: replayed on {args.on}: {err}"
            inputs.warn(message)
            errors += 1
            records.append(
                Record(
                    args.on,
                    entry.prop,
                    "error",
                    schedule_file=str(item),
                    message=message,
                    ok=False,
                    expect=entry.expect,
                )
            )
            continue
        if r.verdict == "breaks" and entry.expect == "violates":
            line = f"BREAKS {item}: {entry.prop} breaks on {args.on} too, at step {r.step}"
        elif r.verdict == "breaks":
            line = (
                f"BREAKS {item}: {entry.prop} breaks on {args.on} at step {r.step} "
                f"(on {entry.variant_ref} it holds, as the file expects)"
            )
        elif r.verdict == "holds":
            line = f"{item}: {entry.prop} holds on {args.on} (every step runs)"
        else:
            what = step_words(entry.schedule[r.step - 1])
            line = f"{item}: {args.on} cannot take step {r.step} ({what})"
        print(line, flush=True)
        counts[r.verdict] += 1
        ran = {"breaks": r.step, "refuses": r.step - 1}.get(r.verdict, len(entry.schedule))
        records.append(
            Record(
                args.on,
                entry.prop,
                "violates" if r.verdict == "breaks" else "holds",
                length=len(entry.schedule),
                schedule_file=str(item),
                steps=ran,
                seconds=time.perf_counter() - t0,
                message=line,
                expect=entry.expect,
                ok=r.verdict != "breaks",
                extra={"replayed_from": entry.variant_ref, "outcome": r.verdict, "step": r.step},
            )
        )
    unreadable = _unreadable(records)
    if not sum(counts.values()) + unreadable + errors:
        _fail("no corpus files found in " + " ".join(args.paths))
    print(
        f"on {args.on}: {counts['breaks']} break, {counts['holds']} hold, "
        f"{counts['refuses']} cannot run"
        + (f", {unreadable} unreadable" if unreadable else "")
        + (f", {errors} failed in {args.on}'s code" if errors else "")
    )
    status = 2 if unreadable or errors else 1 if counts["breaks"] else 0
    _write_results(args, "replay", records, time.perf_counter() - t_all, {"exit_status": status})
    return status


def cmd_show(args: argparse.Namespace) -> int:
    e = load(Path(args.path), _registry(args.variants))
    r = replay(e)
    if r.drift:
        print(f"tlbfuzz: {r.message}", file=sys.stderr)
        return 1
    if args.format == "python":
        from tlbfuzz.fuzz.reproducer import render_python

        print(render_python(e), end="")
        return 0
    replay_cmd = replay_command(e.variant_ref, args.path)
    said: list[str] = []
    if e.prop and e.expect == "violates" and r.ok:  # it breaks, as the file says
        said = whose_lines(e.prop, whose(e.variant, e.config, e.schedule, e.prop), e.schedule)
    print(
        render_as(
            args.format,
            e.variant,
            e.config,
            e.schedule,
            e.prop,
            None,
            replay_cmd,
            expect=e.expect,
            paragraphs=said,
        )
    )
    return 0


HARDWARE_KINDS = ("tlb_fill", "user_read", "user_write", "tlb_evict", "pwc_evict", "nmi")
"""What ``explore --no`` can leave out (frame reuse is off whenever --budget is given)."""


MEMORY_MODELS: Final = ("sc", "tso")


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--memory-model",
        choices=MEMORY_MODELS,
        default="sc",
        help="sc (default): every store seen at once; tso: x86-TSO store buffers",
    )
    p.add_argument("--mms", type=inputs.int_in(1, BOUNDS["mms"][1]), help="address spaces (2)")
    p.add_argument(
        "--anon-pages",
        type=inputs.int_in(0, BOUNDS["anon_pages"][1]),
        help="anonymous pages per mm (1); 0 leaves a page table khugepaged may retract",
    )
    p.add_argument(
        "--file-pages",
        type=inputs.int_in(0, BOUNDS["file_pages"][1]),
        help="shared file pages per mm (1); 0 leaves writeback and truncation nothing to do",
    )


def _shape(args: argparse.Namespace) -> dict[str, Any]:
    """The model's shape from ``--memory-model``, ``--mms``, ``--anon-pages`` and
    ``--file-pages``."""
    out: dict[str, Any] = {}
    if getattr(args, "memory_model", "sc") != "sc":
        out["memory_model"] = args.memory_model
    if getattr(args, "mms", None) is not None:
        out["mms"] = args.mms
    if getattr(args, "anon_pages", None) is not None:
        out["anon_pages"] = args.anon_pages
    if getattr(args, "file_pages", None) is not None:
        out["file_pages"] = args.file_pages
    return out


def _config(
    v: Variant, cpus: int, specs: Sequence[str] | None, shape: Mapping[str, Any] | None = None
) -> Config:
    """``--budget madvise=1,switch=1`` (every CPU) and ``--budget cpu1:switch=2`` (CPU 1):
    those kernel paths, every other kind 0, and no frame reuse (which never changes a
    verdict); no --budget: the default budget, with reuse. ``shape``: the memory model and
    the sizes (``_shape``), and what a kind asked for needs (``BudgetKind.shape``)."""
    shape = dict(shape or {})
    pages = shape.get("anon_pages", 1) + shape.get("file_pages", 1)
    if pages > MAX_PAGES:
        _fail(f"--anon-pages and --file-pages: {pages} pages per mm is over {MAX_PAGES}")
    if pages == 0:
        _fail("--anon-pages 0 --file-pages 0: the mm maps no page")
    if not specs:
        return Config(cpus=cpus, **shape)
    kinds = [k.name for k in budget_kinds(v.paths())]
    try:
        plain, per_cpu = parse_budgets(specs, kinds, most=BUDGET_BOUNDS[1])
    except ValueError as e:
        _fail(str(e))
    bad = [c for c in per_cpu if c >= cpus]
    if bad:
        _fail(f"--budget names cpu{bad[0]}, but there are {cpus} CPUs")
    # A kind that cannot start without a shape of its own (BudgetKind.shape: collapse needs
    # --anon-pages 0) gets it, unless the options say otherwise.
    asked = {k for b in (plain, *per_cpu.values()) for k, n in b.counts if n}
    implied = []
    for k in budget_kinds(v.paths()):
        if k.name in asked:
            for field, value in k.shape:
                if field not in shape:
                    shape[field] = value
                    implied.append(f"--{field.replace('_', '-')} {value} (for {k.name})")
    if shape.get("anon_pages", 1) + shape.get("file_pages", 1) == 0:
        _fail(f"the mm maps no page: --budget implies {', '.join(implied)}")
    return Config(cpus=cpus, budget=plain, cpu_budget=tuple(per_cpu.items()), reuse=False, **shape)


def _left_out(text: str | None) -> frozenset[str]:
    kinds = frozenset(k for k in (text or "").split(",") if k)
    unknown = sorted(kinds - set(HARDWARE_KINDS))
    if unknown:
        _fail(f"bad --no {unknown[0]!r} (want some of {', '.join(HARDWARE_KINDS)})")
    return kinds


def cmd_explore(args: argparse.Namespace) -> int:
    from tlbfuzz.protocol.search import Collapse, bfs

    _, v = _variants([args.variant])[0]
    props = _props(args.property)
    config = World.initial(v, _config(v, args.cpus, args.budget, _shape(args))).config
    left_out = _left_out(args.no)
    if args.save:
        inputs.check_output_folder(
            args.corpus, "--corpus", [folder_for(args.variant, args.corpus).name]
        )
    t0 = time.perf_counter()
    key = Collapse(symmetric=not args.no_symmetry)

    def progress(depth: int, states: int) -> None:
        rate = states / max(time.perf_counter() - t0, 1e-9)
        print(f"\rdepth {depth}: {states} states, {rate:,.0f}/s", end="", file=sys.stderr)

    tty = sys.stderr.isatty()
    found: list[str] = []
    records: dict[str, Record] = {}

    def report(schedule: list[Action], violation: Violation) -> bool:
        found.append(violation.prop)  # first: a Ctrl-C while printing still counts it
        records[violation.prop] = Record(
            args.variant,
            violation.prop,
            "violates",
            length=len(schedule),
            seconds=time.perf_counter() - t0,
            message=violation.message,
            ok=False,
        )
        if tty:
            print(file=sys.stderr)
        title = (
            f"{v.name}: shortest schedule breaking {violation.prop}: "
            f"{len(schedule)} steps ({machine(config)})"
        )
        bases = whose(v, config, schedule, violation.prop)
        if bases:
            records[violation.prop].extra["on_bases"] = {b.base: b.to_dict() for b in bases}
        said = whose_lines(violation.prop, bases, schedule)
        print(
            render_as(
                args.format,
                v,
                config,
                schedule,
                violation.prop,
                violation,
                title=title,
                paragraphs=said,
            )
        )
        if args.save:
            entry = Entry(
                v,
                args.variant,
                config,
                violation.prop,
                "violates",
                tuple(schedule),
                {"by": "tlbfuzz explore", "when": _stamp()},
                violation.message,
            )
            try:
                path, created = save(entry, args.corpus)
            except CorpusError as e:  # printed above; say it was not saved, and go on
                inputs.warn(f"could not save the schedule above: {e}")
            else:
                records[violation.prop].schedule_file = str(path)
                records[violation.prop].new = created
                print(f"saved: {path}")
        print(flush=True)
        return len(found) < len(props)

    changes = changes_of(v)  # a user's variant: count the asks of what it changes
    searched, tally = (v, None) if changes is None else instrument(v, changes)
    res = None
    with contextlib.suppress(KeyboardInterrupt):  # what was found is printed (and saved)
        res = bfs(
            World.initial(searched, config),
            props,
            args.depth,
            args.max_states,
            key=key,
            allowed=(lambda a: a.op not in left_out) if left_out else None,
            on_level=progress if tty else None,
            on_violation=report,
            windows=True,
        )
    if tty:
        print(file=sys.stderr)
    dt = time.perf_counter() - t0
    if res is None:
        print(f"{v.name}: interrupted after {dt:.1f}s; broken so far: {', '.join(found) or 'none'}")
        status = 1 if found else 130
        for p in props:
            records.setdefault(
                p, Record(args.variant, p, "incomplete", ok=False, extra={"cell": "interrupted"})
            )
        _write_results(args, "explore", [records[p] for p in props], dt, {"exit_status": status})
        return status
    rate = res.states / dt if dt else 0.0
    stats = f"{res.states} unique states, depth {res.depth}, {dt:.1f}s, {rate:,.0f} states/s"
    held = [p for p in props if p not in found]
    if res.exhausted:
        verdict = f"no violation in any reachable state (all explored, deepest {res.depth})"
    elif res.complete:
        verdict = f"no violation up to depth {res.depth}"
    else:
        verdict = f"stopped at --max-states; no violation up to depth {res.depth}"
    summarised = None
    if changes is not None and tally is not None:
        counts = tally.take()
        never = any(not reached for reached, _ in counts.values())
        askers = asking_kinds(v, changes) if never else None  # where to look instead
        kinds = tuple(k.name for k in budget_kinds(v.paths()))
        summarised = summary(changes, counts, askers, kinds, config.memory_model)
    if held:
        print(f"{v.name}: {verdict} ({', '.join(held)})")
        for line in windows_lines(res.reached, "states"):
            print(line)
        for line in summary_lines(summarised) if summarised is not None else []:
            print(line)
    if found:
        print(f"{v.name}: broken: " + ", ".join(found))
    print(stats)
    for p in held:
        records[p] = Record(
            args.variant,
            p,
            "holds",
            steps=res.states,
            seconds=dt,
            message=verdict,
            windows=dict(res.reached),
            changes=summarised,
            extra={"depth": res.depth, "exhausted": res.exhausted},
        )
        judge_changes(records[p])
        if not records[p].ok:
            records[p].message = f"{verdict}; {records[p].message}"
    status = 1 if found else 4 if unexercised(records.values()) else 0
    _write_results(args, "explore", [records[p] for p in props], dt, {"exit_status": status})
    return status


def build_parser() -> argparse.ArgumentParser:
    ap = inputs.OneLineParser(prog="tlbfuzz", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("variants", help="list the protocol variants").set_defaults(fn=cmd_variants)
    sub.add_parser("properties", help="list the safety properties").set_defaults(fn=cmd_properties)
    f = sub.add_parser("fuzz", help="fuzz variants with Hypothesis; save findings")
    f.add_argument("-v", "--variant", action="append", help="built-in name or file.py:NAME")
    f.add_argument("-p", "--property", action="append", help="default: the default set")
    f.add_argument("--profile", choices=("dev", "ci", "nightly"), default="dev")
    f.add_argument("--max-examples", type=inputs.int_in(1, inputs.MAX_EXAMPLES))
    f.add_argument(
        "--seed", type=inputs.int_in(0, inputs.MAX_SEED), help="repeat a run (dev draws one)"
    )
    f.add_argument("--seconds", type=inputs.seconds, help="keep fuzzing each variant this long")
    f.add_argument(
        "--narrow-states",
        type=inputs.int_in(0, inputs.MAX_STATES),
        help="a patch the fuzzer holds: states for the narrowed search (0: none; default: "
        + ", ".join(f"{p} {n}" for p, n in NARROW_STATES.items())
        + ")",
    )
    f.add_argument(
        "--cpus",
        type=inputs.int_in(1, inputs.MAX_CPUS),
        help="fix the number of CPUs (default: 2 or 3)",
    )
    f.add_argument(
        "--budget",
        action="append",
        help="fix the kernel paths per CPU, as for explore (default: drawn per example)",
    )
    f.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_FINDINGS,
        help=f"where findings go (default: {DEFAULT_FINDINGS}/, untracked; "
        f"{DEFAULT_CORPUS}/ is the shipped corpus)",
    )
    _model_options(f)
    _campaign_options(f)
    _output_options(f)
    f.set_defaults(fn=cmd_fuzz)
    user = "a file of user variants that corpus files may name (file.py:NAME); repeatable"
    r = sub.add_parser("replay", help="replay corpus files or folders")
    r.add_argument("paths", nargs="+")
    r.add_argument("--variants", action="append", metavar="FILE.py", help=user)
    r.add_argument(
        "--on",
        metavar="VARIANT",
        help="replay each schedule on VARIANT (built-in, or file.py:NAME) instead of the "
        "variant its file names: which races a patch keeps (exit 1) and which it closes",
    )
    _output_options(r, formats=False)
    r.set_defaults(fn=cmd_replay)
    s = sub.add_parser("show", help="print a corpus file for a mail, as wide lanes, or as a test")
    s.add_argument("path")
    s.add_argument("--variants", action="append", metavar="FILE.py", help=user)
    s.add_argument(
        "--format",
        choices=(*FORMATS, "python"),
        default="mail",
        help="mail: 72 columns (default); wide: lanes with an effect column; python: a test",
    )
    s.set_defaults(fn=cmd_show)
    e = sub.add_parser("explore", help="breadth-first search for a shortest violation")
    e.add_argument("-v", "--variant", required=True)
    e.add_argument("-p", "--property", action="append")
    e.add_argument("--cpus", type=inputs.int_in(1, inputs.MAX_CPUS), default=2)
    e.add_argument("--depth", type=inputs.int_in(1, inputs.MAX_DEPTH), default=30)
    e.add_argument(
        "--max-states",
        type=inputs.int_in(1, inputs.MAX_STATES),
        default=1_000_000,
        help="stop after this many unique states (about 2.7 KB each at 2 CPUs)",
    )
    e.add_argument(
        "--budget",
        action="append",
        help="kernel paths per CPU, e.g. madvise=1,switch=1 (others 0; no reuse); "
        "cpuN:KIND=N,... for CPU N only (repeat the option)",
    )
    e.add_argument(
        "--no",
        metavar="KINDS",
        help=f"leave these hardware events out, e.g. nmi,tlb_evict ({', '.join(HARDWARE_KINDS)})",
    )
    _model_options(e)
    e.add_argument("--save", action="store_true", help="save each violation (see --corpus)")
    e.add_argument(
        "--no-symmetry",
        action="store_true",
        help="states that differ only by CPU names are different states (default: one)",
    )
    e.add_argument("--corpus", type=Path, default=DEFAULT_FINDINGS)
    _output_options(e)
    e.set_defaults(fn=cmd_explore)
    from tlbfuzz.fuzz import litmus

    lt = sub.add_parser(
        "litmus", help="x86-TSO litmus tests on the store-buffer machinery, against the paper"
    )
    litmus.add_arguments(lt)
    lt.set_defaults(fn=litmus.cmd_litmus)
    return ap


def _output_options(p: argparse.ArgumentParser, formats: bool = True) -> None:
    if formats:
        p.add_argument(
            "--format",
            choices=FORMATS,
            default="mail",
            help="how schedules print: mail (72 columns, default) or wide (lanes and effects)",
        )
    p.add_argument("--json", metavar="PATH", help="write one record per variant and property")
    p.add_argument("--junit", metavar="PATH", help="write JUnit XML for CI systems")


def _campaign_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=inputs.int_in(1, inputs.MAX_WORKERS),
        help="processes to run (default: the machine's cores)",
    )
    p.add_argument(
        "--shard", default="1/1", help="I/N: run the I-th of N deterministic parts of the work"
    )
    p.add_argument(
        "--database",
        metavar="DIR|redis://HOST:PORT/DB",
        help="Hypothesis's example database, shared by workers and machines; a stopped "
        "campaign resumes from it",
    )
    p.add_argument(
        "--time-budget",
        type=inputs.seconds,
        metavar="SECONDS",
        help="run further rounds with new seeds until this much time has passed",
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:  # argparse already printed its one-line usage error
        return 2 if e.code else 0
    try:
        return int(args.fn(args))
    except (UsageError, CorpusError, UserVariantError) as e:
        inputs.warn(str(e))
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        inputs.warn("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
