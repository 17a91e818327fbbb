"""``tlbfuzz``: fuzz TLB-shootdown variants, explore them exhaustively, replay the corpus.

Exit status: 0 nothing broke (or every replay matched), 1 violations found (or a replay did not
match), 2 bad usage or unreadable input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import attrs

from fuzz.corpus import CorpusError, Entry, iter_files, load, load_variant, replay, save
from fuzz.mail import FORMATS, render_as
from fuzz.results import Record
from protocol import BUDGET_KINDS, DEFAULT_PROPERTIES, PROPERTIES, VARIANTS, Budget, Config

if TYPE_CHECKING:
    from collections.abc import Sequence

    from protocol import Action, Variant, Violation

DEFAULT_CORPUS = Path("corpus")


class UsageError(Exception):
    pass


def _fail(msg: str) -> NoReturn:
    raise UsageError(msg)


def _variants(refs: Sequence[str] | None) -> list[tuple[str, Variant]]:
    if not refs:
        return list(VARIANTS.items())
    return [(r, load_variant(r)) for r in refs]


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


def cmd_fuzz(args: argparse.Namespace) -> int:
    from fuzz.campaign import Campaign, CampaignError, Plan, default_workers, parse_shard

    variants = _variants(args.variant)
    props = _props(args.property)
    corpus = Path(args.corpus)
    if args.cpus is not None and args.cpus not in (1, 2, 3, 4):
        _fail("--cpus must be 1 to 4")
    if args.workers is not None and args.workers < 1:
        _fail("--workers must be at least 1")
    if args.time_budget is not None and args.time_budget <= 0:
        _fail("--time-budget must be a positive number of seconds")
    try:
        plan = Plan(
            tuple(ref for ref, _ in variants),
            tuple(props),
            profile=args.profile,
            seed=args.seed,
            max_examples=args.max_examples,
            cpus=args.cpus,
            seconds=args.seconds,
            corpus=str(corpus),
            database=args.database,
            shard=parse_shard(args.shard),
            fmt=args.format,
        )
        workers = args.workers or default_workers()
        campaign = Campaign(plan, workers, args.time_budget, progress=sys.stderr.isatty(), err=_err)
        t0 = time.perf_counter()
        records = campaign.run()
    except CampaignError as e:
        _fail(str(e))
    dt = time.perf_counter() - t0
    if campaign.interrupted:
        _err("interrupted: findings so far are saved")
    from fuzz.results import table_lines

    for line in table_lines(records, props):
        print(line)
    findings = sum(r.verdict == "violates" for r in records)
    print(f"{findings} violation(s) in {dt:.0f}s; corpus: {corpus}/")
    status = 1 if findings else 130 if campaign.interrupted else 3 if campaign.lost else 0
    meta = {
        "profile": args.profile,
        "seed": args.seed,
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
    print(text, file=sys.stderr)


def _write_results(
    args: argparse.Namespace,
    command: str,
    records: Sequence[Record],
    seconds: float,
    meta: dict[str, object] | None = None,
) -> None:
    """``--json PATH`` and ``--junit PATH``, if asked for."""
    from fuzz.results import document, write_json, write_junit

    try:
        if args.json:
            write_json(Path(args.json), document(command, records, seconds, **(meta or {})))
        if args.junit:
            write_junit(Path(args.junit), command, records, seconds)
    except OSError as e:
        _fail(f"cannot write results: {e}")


def cmd_replay(args: argparse.Namespace) -> int:
    from fuzz.results import Record, replay_record

    files = list(iter_files([Path(p) for p in args.paths]))
    if not files:
        _fail("no corpus files found in " + " ".join(args.paths))
    bad = unreadable = 0
    records: list[Record] = []
    t_all = time.perf_counter()
    for f in files:
        t0 = time.perf_counter()
        try:
            r = replay(load(f))
        except CorpusError as e:  # say so, and go on with the other files
            print(f"tlbfuzz: {e}", file=sys.stderr)
            unreadable += 1
            records.append(
                Record(None, None, "error", schedule_file=str(f), message=str(e), ok=False)
            )
            continue
        print(("" if r.ok else "FAIL ") + r.message)
        bad += not r.ok
        records.append(replay_record(r, f, time.perf_counter() - t0))
    print(f"{len(files) - bad - unreadable} passed, {bad + unreadable} failed")
    _write_results(args, "replay", records, time.perf_counter() - t_all)
    return 2 if unreadable else 1 if bad else 0


def cmd_show(args: argparse.Namespace) -> int:
    e = load(Path(args.path))
    if args.format == "python":
        from fuzz.reproducer import render_python

        print(render_python(e), end="")
        return 0
    replay_cmd = f"tlbfuzz replay {args.path}"
    print(
        render_as(
            args.format, e.variant, e.config, e.schedule, e.prop, None, replay_cmd, expect=e.expect
        )
    )
    return 0


def _budget(text: str | None) -> Budget:
    """``madvise=1,switch=1``: those kernel paths per CPU, every other kind 0 (and no frame
    reuse, which never changes a verdict); None: the default budget."""
    if not text:
        return Budget()
    counts = dict.fromkeys(BUDGET_KINDS, 0)
    for part in text.split(","):
        kind, sep, n = part.partition("=")
        if not sep or kind not in counts or not n.isdigit():
            _fail(f"bad --budget {part!r} (want KIND=N with KIND in {', '.join(BUDGET_KINDS)})")
        counts[kind] = int(n)
    return Budget(**counts)


def cmd_explore(args: argparse.Namespace) -> int:
    from protocol import World
    from protocol.search import bfs, symmetric_fingerprint

    _, v = _variants([args.variant])[0]
    props = _props(args.property)
    config = Config(cpus=args.cpus, budget=_budget(args.budget), reuse=not args.budget)
    t0 = time.perf_counter()
    key = None if args.no_symmetry else symmetric_fingerprint

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
            f"{len(schedule)} steps ({config.cpus} CPUs)"
        )
        print(render_as(args.format, v, config, schedule, violation.prop, violation, title=title))
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
            path, created = save(entry, Path(args.corpus))
            records[violation.prop] = attrs.evolve(
                records[violation.prop], schedule_file=str(path), new=created
            )
            print(f"saved: {path}")
        print(flush=True)
        return len(found) < len(props)

    res = None
    with contextlib.suppress(KeyboardInterrupt):  # what was found is printed (and saved)
        res = bfs(
            World.initial(v, config),
            props,
            args.depth,
            args.max_states,
            key=key,
            on_level=progress if tty else None,
            on_violation=report,
        )
    if tty:
        print(file=sys.stderr)
    dt = time.perf_counter() - t0
    if res is None:
        print(f"{v.name}: interrupted after {dt:.1f}s; broken so far: {', '.join(found) or 'none'}")
        status = 1 if found else 130
        for p in props:
            records.setdefault(p, Record(args.variant, p, "incomplete", ok=False))
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
    if held:
        print(f"{v.name}: {verdict} ({', '.join(held)})")
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
            extra={"depth": res.depth, "exhausted": res.exhausted},
        )
    status = 1 if found else 0
    _write_results(args, "explore", [records[p] for p in props], dt, {"exit_status": status})
    return status


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tlbfuzz", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("variants", help="list the protocol variants").set_defaults(fn=cmd_variants)
    sub.add_parser("properties", help="list the safety properties").set_defaults(fn=cmd_properties)
    f = sub.add_parser("fuzz", help="fuzz variants with Hypothesis; save findings to the corpus")
    f.add_argument("-v", "--variant", action="append", help="built-in name or file.py:NAME")
    f.add_argument("-p", "--property", action="append", help="default: the default set")
    f.add_argument("--profile", choices=("dev", "ci", "nightly"), default="dev")
    f.add_argument("--max-examples", type=int)
    f.add_argument("--seed", type=int)
    f.add_argument("--seconds", type=float, help="keep fuzzing each variant this long")
    f.add_argument("--cpus", type=int, help="fix the number of CPUs (default: 2 or 3)")
    f.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    _campaign_options(f)
    _output_options(f)
    f.set_defaults(fn=cmd_fuzz)
    r = sub.add_parser("replay", help="replay corpus files or folders")
    r.add_argument("paths", nargs="+")
    _output_options(r, formats=False)
    r.set_defaults(fn=cmd_replay)
    s = sub.add_parser("show", help="print a corpus file for a mail, as wide lanes, or as a test")
    s.add_argument("path")
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
    e.add_argument("--cpus", type=int, default=2)
    e.add_argument("--depth", type=int, default=30)
    e.add_argument(
        "--max-states",
        type=int,
        default=1_000_000,
        help="stop after this many unique states (about 2.7 KB each at 2 CPUs)",
    )
    e.add_argument(
        "--budget", help="kernel paths per CPU, e.g. madvise=1,switch=1 (others 0; no reuse)"
    )
    e.add_argument("--save", action="store_true", help="save a violation to the corpus")
    e.add_argument(
        "--no-symmetry",
        action="store_true",
        help="store full states, not fingerprints equal for states that differ by CPU names",
    )
    e.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    _output_options(e)
    e.set_defaults(fn=cmd_explore)
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
    p.add_argument("--workers", type=int, help="processes to run (default: the machine's cores)")
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
        type=float,
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
    except (UsageError, CorpusError) as e:
        print(f"tlbfuzz: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
