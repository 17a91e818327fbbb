"""The command line's boundary: every option checked, with upper bounds where cost is
exponential, and every output location checked before any work starts.

Each bad input is one line (``tlbfuzz: ...`` or ``tlbfuzz fuzz: ...``) and exit status 2, never
a traceback. The bounds, and why:

- ``--cpus``: 1-4 (``BOUNDS['cpus']`` of the corpus). States grow exponentially with CPUs, and
  symmetry reduction and canonical naming try every renaming (4! = 24); ``explore --cpus 7``
  spent 7! = 5040 snapshots on every state and never finished a level.
- ``--max-examples``: 1-1,000,000 (the nightly profile runs 20,000).
- ``--seconds``: a finite number, more than 0 and at most a week.
- ``--seed``: 0 to 2**64 - 1.
- ``explore --depth``: 1-200 (the longest race known is 15 steps); ``--max-states``:
  1-20,000,000 (about 2.7 KB a state at 2 CPUs: 54 GB, past this machine).
- ``fuzz --workers``: 1-256 processes; ``--time-budget``: as ``--seconds``.
- ``--budget``: each kind 0-8 (``BUDGET_BOUNDS``), each kind once.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Final, NoReturn

from tlbfuzz.fuzz.corpus import BOUNDS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

MAX_CPUS: Final = BOUNDS["cpus"][1]
MAX_EXAMPLES: Final = 1_000_000
MAX_SECONDS: Final = 7 * 24 * 3600.0
MAX_SEED: Final = 2**64 - 1
MAX_DEPTH: Final = 200
MAX_STATES: Final = 20_000_000
MAX_WORKERS: Final = 256


class UsageError(Exception):
    """A bad option or an unusable output location: one line, exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line (``tlbfuzz fuzz: argument --cpus: ...``), not the
    usage text followed by the error."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: {text} (see {self.prog} --help)\n")


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a decimal integer in [lo, hi]."""

    def parse(text: str) -> int:
        t = text.strip()
        digits = t[1:] if t[:1] in "+-" else t
        if not digits.isascii() or not digits.isdigit() or len(digits) > 20:
            raise argparse.ArgumentTypeError(f"{_short(text)} is not a whole number")
        n = int(t)
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"{n} is out of range {lo}-{hi:,}")
        return n

    parse.__name__ = "integer"
    return parse


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, more than 0 and at most a week."""
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_short(text)} is not a number") from None
    if not math.isfinite(s) or not 0 < s <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{_short(text)} is not a number of seconds in (0, {MAX_SECONDS:.0f}]"
        )
    return s


def _short(text: str) -> str:
    r = repr(text)
    return r if len(r) <= 30 else r[:27] + "..."


def check_output_folder(folder: Path, what: str, subfolders: Iterable[str] = ()) -> None:
    """Fail now, in one line, if findings could not be saved under ``folder`` later: it must
    be a folder (created if missing) in which a file can be created, and so must each of its
    ``subfolders`` that already exists. A real write is tried, not ``os.access``: root ignores
    mode bits, a read-only file system does not."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{what} {folder}: not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{what} {folder}: cannot create: {e.strerror}") from None
    for d in [folder, *(folder / s for s in subfolders)]:
        if d != folder and not d.exists():
            continue
        if not d.is_dir():
            raise UsageError(f"{what} {folder}: {d} is not a folder")
        _probe_write(d, what)


def _probe_write(d: Path, what: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-probe-", dir=d)
    except OSError as e:
        raise UsageError(f"{what} {d}: cannot write there: {e.strerror}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def warn(message: str) -> None:
    """One line on stderr."""
    print(f"tlbfuzz: {' '.join(message.split())}", file=sys.stderr, flush=True)
