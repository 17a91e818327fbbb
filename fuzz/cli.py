"""``tlbfuzz``: fuzz TLB-shootdown variants, explore them exhaustively, replay the corpus.

Exit status: 0 nothing broke (or every replay matched), 1 violations found (or a replay did not
match), 2 bad usage or unreadable input (one line on stderr, no traceback).
"""

from __future__ import annotations

import contextlib
import datetime
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from fuzz import inputs
from fuzz.canon import canonical
from fuzz.corpus import (
    BUDGET_BOUNDS,
    CorpusError,
    Entry,
    folder_for,
    load,
    replay,
    save,
    target,
    walk,
)
from fuzz.inputs import UsageError
from fuzz.report import render
from fuzz.user import Registry, UserVariantError, cli_variant
from protocol import (
    DEFAULT_PROPERTIES,
    PROPERTIES,
    VARIANTS,
    Config,
    World,
    budget_kinds,
    parse_budgets,
)
from protocol.search import first_violation

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from fuzz.runner import Finding, Outcome
    from protocol import Action, Variant, Violation

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


def _save_finding(o: Finding, ref: str, args: argparse.Namespace, seed: int | None) -> bool:
    """Print a finding, then save it. Returns False if it could not be saved (said in one
    line on stderr; the finding stays on screen)."""
    config, schedule = canonical(o.variant, o.config, o.schedule, o.prop)
    hit = first_violation(World.initial(o.variant, config), schedule, [o.prop])
    violation = o.violation if hit is None else hit[1]  # the canonical schedule's own words
    found = {
        "by": f"tlbfuzz fuzz --profile {args.profile}",
        "seed": seed,
        "when": _stamp(),
        "examples": o.examples,
        "hypothesis_length": o.found_length,
    }
    entry = Entry(
        o.variant, ref, config, o.prop, "violates", tuple(schedule), found, violation.message
    )
    path = target(entry, args.corpus)
    print(
        render(
            o.variant,
            config,
            schedule,
            o.prop,
            violation,
            replay_cmd=f"tlbfuzz replay {path}",
        ),
        flush=True,
    )
    try:
        _, created = save(entry, args.corpus)
    except CorpusError as e:
        print(f"(found after {o.examples} examples in {o.seconds:.1f}s; NOT saved)\n", flush=True)
        inputs.warn(f"could not save the finding above: {e}")
        return False
    print(
        f"(found after {o.examples} examples in {o.seconds:.1f}s, "
        f"{o.found_length} steps before minimising; "
        f"{'saved' if created else 'already in the corpus'})\n",
        flush=True,
    )
    return True


def cmd_fuzz(args: argparse.Namespace) -> int:
    from fuzz.runner import Finding, fuzz_variant

    variants = _variants(args.variant)
    props = _props(args.property)
    corpus: Path = args.corpus
    inputs.check_output_folder(
        corpus, "--corpus", [folder_for(r, corpus).name for r, _ in variants]
    )
    if args.profile == "nightly":
        from fuzz.profiles import NIGHTLY_DB

        inputs.check_output_folder(NIGHTLY_DB, "the nightly example database")
    seed = _draw_seed(args)
    table: dict[str, dict[str, str]] = {}
    findings = unsaved = 0
    problems = 0  # variants whose code failed, cells nothing checked
    tty = sys.stderr.isatty()
    t_all = time.perf_counter()
    interrupted = False
    try:
        for ref, v in variants:
            row = table.setdefault(ref, {})
            if tty:
                print(f"fuzzing {ref} ({args.profile})...", file=sys.stderr, flush=True)

            def show(o: Outcome, ref: str = ref, row: dict[str, str] = row) -> None:
                nonlocal findings, unsaved, problems
                if tty:  # clear the progress line
                    print("\r\033[K", end="", file=sys.stderr, flush=True)
                if isinstance(o, Finding):
                    findings += 1
                    unsaved += not _save_finding(o, ref, args, seed)
                    row[o.prop] = str(len(o.schedule))
                elif o.examples == 0 or o.steps == 0:  # nothing ran: not a verdict
                    row[o.prop] = "unchecked"
                    problems += 1
                    inputs.warn(f"{ref}: {o.prop} was not checked (no example ran)")
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

            try:
                fuzz_variant(
                    v,
                    props,
                    profile=args.profile,
                    seed=seed,
                    max_examples=args.max_examples,
                    cpus=args.cpus,
                    config=_config(v, args.cpus or 2, args.budget) if args.budget else None,
                    on_outcome=show,
                    seconds=args.seconds,
                    on_progress=progress if tty else None,
                )
            except UserVariantError as e:  # the user's code failed: say where, go on
                if tty:
                    print("\r\033[K", end="", file=sys.stderr)
                inputs.warn(str(e))
                problems += 1
                for p in props:
                    row.setdefault(p, "error")
                continue
            if tty:
                print("\r\033[K", end="", file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        clear = "\r\033[K" if tty else ""
        print(f"{clear}interrupted: findings so far are saved", file=sys.stderr)
        for row in table.values():
            for p in props:
                row.setdefault(p, "interrupted")
    _print_table(table, props)
    how = "derandomized" if seed is None else f"seed {seed} (--seed {seed} repeats it)"
    print(
        f"{findings} violation(s) in {time.perf_counter() - t_all:.0f}s; {how}; "
        f"corpus: {corpus}/" + (f"; {unsaved} NOT saved" if unsaved else "")
    )
    if problems:
        return 2
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
        "violation in the examples and steps tried by the variant's last run; unchecked, "
        "error, interrupted: no verdict)"
    )


def cmd_replay(args: argparse.Namespace) -> int:
    registry = _registry(args.variants)
    passed = failed = unreadable = 0
    for item in walk([Path(p) for p in args.paths]):
        try:
            if isinstance(item, CorpusError):
                raise item
            r = replay(load(item, registry))
        except (CorpusError, UserVariantError) as e:  # say so, and go on with the other files
            inputs.warn(str(e))
            unreadable += 1
            continue
        print(("" if r.ok else "FAIL ") + r.message, flush=True)
        passed += r.ok
        failed += not r.ok
    if not passed + failed + unreadable:
        _fail("no corpus files found in " + " ".join(args.paths))
    print(
        f"{passed} passed, {failed} failed" + (f", {unreadable} unreadable" if unreadable else "")
    )
    return 2 if unreadable else 1 if failed else 0


def cmd_show(args: argparse.Namespace) -> int:
    e = load(Path(args.path), _registry(args.variants))
    r = replay(e)
    if r.drift:
        print(f"tlbfuzz: {r.message}", file=sys.stderr)
        return 1
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
        plain, per_cpu = parse_budgets(specs, kinds, most=BUDGET_BOUNDS[1])
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
    from protocol.search import bfs, symmetric_fingerprint

    _, v = _variants([args.variant])[0]
    props = _props(args.property)
    config = World.initial(v, _config(v, args.cpus, args.budget)).config
    left_out = _left_out(args.no)
    if args.save:
        inputs.check_output_folder(
            args.corpus, "--corpus", [folder_for(args.variant, args.corpus).name]
        )
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
            try:
                path, _ = save(entry, args.corpus)
            except CorpusError as e:  # printed above; say it was not saved, and go on
                inputs.warn(f"could not save the schedule above: {e}")
            else:
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
    f.set_defaults(fn=cmd_fuzz)
    user = "a file of user variants that corpus files may name (file.py:NAME); repeatable"
    r = sub.add_parser("replay", help="replay corpus files or folders")
    r.add_argument("paths", nargs="+")
    r.add_argument("--variants", action="append", metavar="FILE.py", help=user)
    r.set_defaults(fn=cmd_replay)
    s = sub.add_parser("show", help="print a corpus file as per-CPU lanes")
    s.add_argument("path")
    s.add_argument("--variants", action="append", metavar="FILE.py", help=user)
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
    e.add_argument("--save", action="store_true", help="save each violation (see --corpus)")
    e.add_argument(
        "--no-symmetry",
        action="store_true",
        help="store full states, not fingerprints equal for states that differ by CPU names",
    )
    e.add_argument("--corpus", type=Path, default=DEFAULT_FINDINGS)
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
