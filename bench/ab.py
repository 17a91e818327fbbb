"""Old against new in one run: a benchmark run in a checkout of another commit and in this
tree, alternately, so that both see the same machine load.

    python -m bench.ab --rev 9b2dd9e               # bench_model, 3 rounds each
    python -m bench.ab --rev 9b2dd9e --rounds 5 -- --seconds 2
    python -m bench.ab --rev a1944b5 --bench states   # the explorer's states/s (bench_states)

The other commit is checked out with ``git worktree`` into a temporary folder (removed
afterwards). Each round runs ``python -m bench.bench_model`` (with the arguments after
``--``) in the old tree, then in this one; the figure per CPU count is the median over rounds
of each run's "median" line (the median over the variants).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def medians(out: str, label: str = "median") -> dict[int, float]:
    """``median  CPUS  RATE`` lines of bench_model's output (or another ``label``'s)."""
    found = {}
    for line in out.splitlines():
        m = re.match(label + r"\s+(\d+)\s+([\d,]+)", line)
        if m:
            found[int(m.group(1))] = float(m.group(2).replace(",", ""))
    return found


def run(tree: Path, args: list[str], bench: str = "model") -> tuple[dict[int, float], ...]:
    """One run of ``bench_<bench>`` on the model of ``tree``: bench_model as that tree has
    it; bench_states as this tree has it (it imports either layout's model)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    layout = [] if (tree / "tlbfuzz").is_dir() else ["--package", "protocol"]
    own = [str(ROOT / "bench" / f"bench_{bench}.py"), *layout]
    script = ["-m", "bench.bench_model"] if bench == "model" else own
    r = subprocess.run(
        [sys.executable, *script, *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return medians(r.stdout), medians(r.stdout, "rss")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", required=True, help="the old commit")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--bench",
        choices=("model", "states"),
        default="model",
        help="model: actions/s (bench_model); states: the explorer's states/s (bench_states)",
    )
    ap.add_argument("bench_args", nargs="*", help="passed to the benchmark (after --)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(old), args.rev], cwd=ROOT, check=True
        )
        try:
            runs: dict[str, list[dict[int, float]]] = {"old": [], "new": []}
            rss: dict[str, list[dict[int, float]]] = {"old": [], "new": []}
            for i in range(args.rounds):
                for side, tree in (("old", old), ("new", ROOT)):
                    rate, mem = run(tree, args.bench_args, args.bench)
                    runs[side].append(rate)
                    rss[side].append(mem)
                print(f"round {i + 1}: old {runs['old'][-1]}  new {runs['new'][-1]}", flush=True)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False
            )
    unit = "actions/s" if args.bench == "model" else "states/s"
    print(f"\n{'cpus':>4} {'old ' + unit:>14} {'new ' + unit:>14} {'new/old':>8}")
    for cpus in sorted(runs["old"][0]):
        o = statistics.median(r[cpus] for r in runs["old"])
        n = statistics.median(r[cpus] for r in runs["new"])
        print(f"{cpus:>4} {o:>14,.0f} {n:>14,.0f} {n / o:>8.2f}")
    if all(rss["old"]) and all(rss["new"]):  # the benchmark printed its peak memory
        print(f"\n{'cpus':>4} {'old peak MB':>14} {'new peak MB':>14} {'new/old':>8}")
        for cpus in sorted(rss["old"][0]):
            o = statistics.median(r[cpus] for r in rss["old"])
            n = statistics.median(r[cpus] for r in rss["new"])
            print(f"{cpus:>4} {o:>14,.0f} {n:>14,.0f} {n / o:>8.2f}")


if __name__ == "__main__":
    main()
