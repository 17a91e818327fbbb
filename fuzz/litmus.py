"""``tlbfuzz litmus``: the classic x86-TSO litmus tests, explored exhaustively on SC and on the
store-buffer machine (``tlbfuzz.protocol.tso``, ``tlbfuzz.protocol.litmus``), next to the
x86-TSO papers' verdicts.

One line per test: its name, the outcome asked about, the verdict under SC and under x86-TSO
(allowed: some execution ends in that outcome; forbidden: none does, every state explored),
the paper's x86-TSO verdict, "agrees" or "DISAGREES", and the states the TSO search visited.

Exit status: 0 when every TSO verdict agrees with the paper and every SC verdict with SC's,
1 otherwise, 2 on bad usage. Also ``python -m tlbfuzz.fuzz.litmus``.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from tlbfuzz.fuzz import inputs
from tlbfuzz.protocol import tso
from tlbfuzz.protocol.litmus import BY_NAME, TESTS, Row, run_all

if TYPE_CHECKING:
    import argparse

    from tlbfuzz.protocol.litmus import LitmusResult

MAX_BOUND = 8
"""``--bound`` at most: no test here buffers more than two stores per CPU, and the states
grow with the bound for nothing."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options, for ``fuzz/cli.py`` to register ``tlbfuzz litmus`` with."""
    p.add_argument(
        "--bound",
        type=inputs.int_in(1, MAX_BOUND),
        default=tso.DEFAULT_BOUND,
        help=f"store-buffer entries per CPU (default {tso.DEFAULT_BOUND})",
    )
    p.add_argument(
        "-t",
        "--test",
        action="append",
        choices=list(BY_NAME),
        metavar="NAME",
        help=f"run only this test (repeatable): {', '.join(BY_NAME)}",
    )
    p.add_argument("--show", action="store_true", help="also print programs and witnesses")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def _witness(r: LitmusResult) -> list[str] | None:
    return None if r.witness is None else [str(a) for a in r.witness]


def _as_json(rows: list[Row], bound: int) -> dict[str, Any]:
    return {
        "bound": bound,
        "agrees": all(r.agrees for r in rows),
        "tests": [
            {
                "name": r.test.name,
                "outcome": r.test.outcome,
                "sc": r.sc.verdict,
                "tso": r.tso.verdict,
                "paper": r.test.paper,
                "sc_expected": r.test.sc,
                "agrees": r.agrees,
                "states": {"sc": r.sc.states, "tso": r.tso.states},
                "exhausted": r.sc.exhausted and r.tso.exhausted,
                "witness": {"sc": _witness(r.sc), "tso": _witness(r.tso)},
                "source": r.test.source,
            }
            for r in rows
        ],
    }


def _print_table(rows: list[Row], bound: int, show: bool) -> None:
    name_w = max(len("test"), *(len(r.test.name) for r in rows))
    out_w = max(len("outcome"), *(len(r.test.outcome) for r in rows))
    print(
        f"{'test':<{name_w}}  {'outcome':<{out_w}}  {'SC':<9}  {'TSO':<9}  {'paper':<9}  "
        "verdict   TSO states"
    )
    for r in rows:
        verdict = "agrees" if r.agrees else "DISAGREES"
        print(
            f"{r.test.name:<{name_w}}  {r.test.outcome:<{out_w}}  {r.sc.verdict:<9}  "
            f"{r.tso.verdict:<9}  {r.test.paper:<9}  {verdict:<9} {r.tso.states}"
        )
        if show:
            for line in r.test.listing():
                print(f"    {line}")
            for res in (r.sc, r.tso):
                if res.witness is not None:
                    print(f"    {res.model} witness: {', '.join(str(a) for a in res.witness)}")
            print(f"    source: {r.test.source}")
    short = [r.test.name for r in rows if r.test.max_stores > bound]
    if short:
        print(
            f"note: {', '.join(short)} buffer more than {bound} store(s) per CPU: "
            f"a forbidden verdict there holds only for buffers of {bound}"
        )
    bad = sum(not r.agrees for r in rows)
    tail = "all agree with the paper" if not bad else f"{bad} DISAGREE with the paper"
    print(f"{len(rows)} tests, store-buffer bound {bound}: {tail}")


def cmd_litmus(args: argparse.Namespace) -> int:
    """Run the tests the options ask for; 0 if every verdict agrees, 1 if not."""
    tests = [BY_NAME[n] for n in args.test] if args.test else list(TESTS)
    rows = run_all(args.bound, tests)
    if args.json:
        print(json.dumps(_as_json(rows, args.bound), indent=2))
    else:
        _print_table(rows, args.bound, args.show)
    return 0 if all(r.agrees for r in rows) else 1


def run(argv: list[str] | None = None) -> int:
    """``tlbfuzz litmus [--bound N] [--test NAME] [--show] [--json]``."""
    p = inputs.OneLineParser(prog="tlbfuzz litmus", description=__doc__.splitlines()[0])
    add_arguments(p)
    try:
        args = p.parse_args(argv)
    except SystemExit as e:  # argparse printed its one-line error (or the help)
        return 2 if e.code else 0
    try:
        return cmd_litmus(args)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(run())
