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

from fuzz.corpus import CorpusError, Entry, iter_files, load, load_variant, replay, save
from fuzz.report import render
from protocol import (
    DEFAULT_PROPERTIES,
    PROPERTIES,
    VARIANTS,
    Config,
    budget_kinds,
    parse_budgets,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fuzz.runner import Outcome
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
    from fuzz.runner import Finding, fuzz_variant

    variants = _variants(args.variant)
    props = _props(args.property)
    corpus = Path(args.corpus)
    if args.cpus is not None and args.cpus not in (1, 2, 3, 4):
        _fail("--cpus must be 1 to 4")
    table: dict[str, dict[str, str]] = {}
    findings = 0
    tty = sys.stderr.isatty()
    t_all = time.perf_counter()
    interrupted = False
    try:
        for ref, v in variants:
            row = table.setdefault(ref, {})
            if tty:
                print(f"fuzzing {ref} ({args.profile})...", file=sys.stderr, flush=True)

            def show(o: Outcome, ref: str = ref, row: dict[str, str] = row) -> None:
                nonlocal findings
                if tty:  # clear the progress line
                    print("\r\033[K", end="", file=sys.stderr, flush=True)
                if isinstance(o, Finding):
                    findings += 1
                    entry = Entry(
                        o.variant,
                        ref,
                        o.config,
                        o.prop,
                        "violates",
                        tuple(o.schedule),
                        {
                            "by": f"tlbfuzz fuzz --profile {args.profile}",
                            "seed": args.seed,
                            "when": _stamp(),
                            "examples": o.examples,
                            "hypothesis_length": o.found_length,
                        },
                        o.violation.message,
                    )
                    path, created = save(entry, corpus)
                    print(
                        render(
                            o.variant,
                            o.config,
                            o.schedule,
                            o.prop,
                            o.violation,
                            replay_cmd=f"tlbfuzz replay {path}",
                        )
                    )
                    print(
                        f"(found after {o.examples} examples in {o.seconds:.1f}s, "
                        f"{o.found_length} steps before minimising; "
                        f"{'saved' if created else 'already in the corpus'})\n"
                    )
                    row[o.prop] = str(len(o.schedule))
                else:
                    row[o.prop] = "held"
                    row["tried"] = f"{o.examples} examples, {o.steps} steps"
                    if tty:
                        rate = o.steps / o.seconds if o.seconds else 0
                        print(
                            f"  {ref} {o.prop}: held, {o.examples} examples, {o.steps} steps, "
                            f"{rate:,.0f} steps/s",
                            file=sys.stderr,
                        )

            t_variant = time.perf_counter()

            def progress(
                examples: int,
                steps: int,
                ref: str = ref,
                t0: float = t_variant,
                last: list[float] = [0.0],  # noqa: B006  # one list per variant, by design
            ) -> None:
                now = time.perf_counter()
                if now - last[0] < 0.5:
                    return
                last[0] = now
                rate = steps / max(now - t0, 1e-9)
                print(
                    f"\r  {ref}: {examples} examples, {steps} steps, {rate:,.0f} steps/s, "
                    f"{findings} violation(s) so far",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )

            fuzz_variant(
                v,
                props,
                profile=args.profile,
                seed=args.seed,
                max_examples=args.max_examples,
                cpus=args.cpus,
                config=_config(v, args.cpus or 2, args.budget) if args.budget else None,
                on_outcome=show,
                seconds=args.seconds,
                on_progress=progress if tty else None,
            )
            if tty:
                print("\r\033[K", end="", file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        clear = "\r\033[K" if tty else ""
        print(f"{clear}interrupted: findings so far are saved", file=sys.stderr)
    _print_table(table, props)
    print(f"{findings} violation(s) in {time.perf_counter() - t_all:.0f}s; corpus: {corpus}/")
    return 1 if findings else 130 if interrupted else 0


def _print_table(table: dict[str, dict[str, str]], props: list[str]) -> None:
    if not table:
        return
    props = [*props, "tried"]
    w0 = max(len(v) for v in table)
    widths = [max(len(p), *(len(r.get(p, "")) for r in table.values())) for p in props]
    print(
        "\n" + " " * w0 + "  " + "  ".join(f"{p:<{w}}" for p, w in zip(props, widths, strict=True))
    )
    for v, r in table.items():
        cells = "  ".join(f"{r.get(p, '-'):<{w}}" for p, w in zip(props, widths, strict=True))
        print(f"{v:<{w0}}  {cells}")
    print(
        "(a number: the length of the shortest violating schedule found, minimised; held: no "
        "violation in the examples and steps tried by the variant's last run)"
    )


def cmd_replay(args: argparse.Namespace) -> int:
    files = list(iter_files([Path(p) for p in args.paths]))
    if not files:
        _fail("no corpus files found in " + " ".join(args.paths))
    bad = unreadable = 0
    for f in files:
        try:
            r = replay(load(f))
        except CorpusError as e:  # say so, and go on with the other files
            print(f"tlbfuzz: {e}", file=sys.stderr)
            unreadable += 1
            continue
        print(("" if r.ok else "FAIL ") + r.message)
        bad += not r.ok
    print(f"{len(files) - bad - unreadable} passed, {bad + unreadable} failed")
    return 2 if unreadable else 1 if bad else 0


def cmd_show(args: argparse.Namespace) -> int:
    e = load(Path(args.path))
    print(render(e.variant, e.config, e.schedule, e.prop, replay_cmd=f"tlbfuzz replay {args.path}"))
    return 0


HARDWARE_KINDS = ("tlb_fill", "user_read", "user_write", "tlb_evict", "pwc_evict", "nmi")
"""What ``explore --no`` can leave out (frame reuse is off whenever --budget is given)."""


def _config(v: Variant, cpus: int, specs: Sequence[str] | None) -> Config:
    """``--budget madvise=1,switch=1`` (every CPU) and ``--budget cpu1:switch=2`` (CPU 1):
    those kernel paths, every other kind 0, and no frame reuse (which never changes a
    verdict); no --budget: the default budget, with reuse."""
    if not specs:
        return Config(cpus=cpus)
    kinds = [k.name for k in budget_kinds(v.paths())]
    try:
        plain, per_cpu = parse_budgets(specs, kinds)
    except ValueError as e:
        _fail(str(e))
    bad = [c for c in per_cpu if c >= cpus]
    if bad:
        _fail(f"--budget names cpu{bad[0]}, but there are {cpus} CPUs")
    return Config(cpus=cpus, budget=plain, cpu_budget=tuple(per_cpu.items()), reuse=False)


def _left_out(text: str | None) -> frozenset[str]:
    kinds = frozenset(k for k in (text or "").split(",") if k)
    unknown = sorted(kinds - set(HARDWARE_KINDS))
    if unknown:
        _fail(f"bad --no {unknown[0]!r} (want some of {', '.join(HARDWARE_KINDS)})")
    return kinds


def cmd_explore(args: argparse.Namespace) -> int:
    from protocol import World
    from protocol.search import bfs, symmetric_fingerprint

    _, v = _variants([args.variant])[0]
    props = _props(args.property)
    config = World.initial(v, _config(v, args.cpus, args.budget)).config
    left_out = _left_out(args.no)
    t0 = time.perf_counter()
    key = None if args.no_symmetry else symmetric_fingerprint

    def progress(depth: int, states: int) -> None:
        rate = states / max(time.perf_counter() - t0, 1e-9)
        print(f"\rdepth {depth}: {states} states, {rate:,.0f}/s", end="", file=sys.stderr)

    tty = sys.stderr.isatty()
    found: list[str] = []

    def report(schedule: list[Action], violation: Violation) -> bool:
        found.append(violation.prop)  # first: a Ctrl-C while printing still counts it
        if tty:
            print(file=sys.stderr)
        title = (
            f"{v.name}: shortest schedule breaking {violation.prop}: "
            f"{len(schedule)} steps ({config.cpus} CPUs)"
        )
        print(render(v, config, schedule, violation.prop, violation, title=title))
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
            path, _ = save(entry, Path(args.corpus))
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
            allowed=(lambda a: a.op not in left_out) if left_out else None,
            on_level=progress if tty else None,
            on_violation=report,
        )
    if tty:
        print(file=sys.stderr)
    dt = time.perf_counter() - t0
    if res is None:
        print(f"{v.name}: interrupted after {dt:.1f}s; broken so far: {', '.join(found) or 'none'}")
        return 1 if found else 130
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
    return 1 if found else 0


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
    f.add_argument(
        "--budget",
        action="append",
        help="fix the kernel paths per CPU, as for explore (default: drawn per example)",
    )
    f.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    f.set_defaults(fn=cmd_fuzz)
    r = sub.add_parser("replay", help="replay corpus files or folders")
    r.add_argument("paths", nargs="+")
    r.set_defaults(fn=cmd_replay)
    s = sub.add_parser("show", help="print a corpus file as per-CPU lanes")
    s.add_argument("path")
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
    e.add_argument("--save", action="store_true", help="save a violation to the corpus")
    e.add_argument(
        "--no-symmetry",
        action="store_true",
        help="store full states, not fingerprints equal for states that differ by CPU names",
    )
    e.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    e.set_defaults(fn=cmd_explore)
    return ap


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
