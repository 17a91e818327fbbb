"""The main job (`tlbfuzz fuzz` over every variant, dev profile) in one process and in N
worker processes, side by side: wall time of each, and their ratio.

    python -m bench.bench_workers [--workers 2] [--seed 1] [--rounds 1]

Both runs get the same seed, so they fuzz the same examples and find the same violations; a
shared corpus would change the printed output, not the work, so each gets a fresh one. Every
``out.json`` is validated against the shipped schema. Other processes on the machine slow the
parallel run most, so measure on a quiet machine: for each run the table gives the CPU time the
run used and the CPU time everything else on the machine used meanwhile (``/proc/stat`` less
this run's own), which should be near 0.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def fuzz_wall(workers: int, seed: int, folder: Path) -> tuple[float, dict[str, object]]:
    out = folder / f"out-{workers}.json"
    argv = [
        sys.executable,
        "-m",
        "tlbfuzz.fuzz",
        "fuzz",
        "--workers",
        str(workers),
        "--seed",
        str(seed),
    ]
    argv += ["--json", str(out), "--corpus", str(folder / f"corpus-{workers}")]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise SystemExit(f"fuzz --workers {workers} failed ({r.returncode}): {r.stderr}")
    doc: dict[str, object] = json.loads(out.read_text())
    try:
        import jsonschema

        from tlbfuzz.fuzz.results import schema

        jsonschema.validate(doc, schema())
    except ImportError:  # pragma: no cover - the test extra has it
        print("(jsonschema missing: out.json not validated)")
    return wall, doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="repeat the pair this many times")
    args = ap.parse_args()
    print(f"cores: {len(os.sched_getaffinity(0))}; seed {args.seed}")
    print("| run | workers | wall s | violations | CPU s used | CPU s used by others meanwhile |")
    print("|---|---|---|---|---|---|")
    for k in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            walls = {}
            for w in (1, args.workers):
                busy0, own0 = busy_seconds(), own_seconds()
                wall, doc = fuzz_wall(w, args.seed, Path(tmp))
                own = own_seconds() - own0
                others = busy_seconds() - busy0 - own
                results = doc["results"]
                assert isinstance(results, list)
                broke = sum(1 for r in results if r["verdict"] == "violates")
                walls[w] = wall
                print(f"| {k + 1} | {w} | {wall:.1f} | {broke} | {own:.1f} | {others:.1f} |")
            ratio = walls[args.workers] / walls[1]
            print(f"round {k + 1}: {args.workers} workers took {ratio:.0%} of one process's time")


if __name__ == "__main__":
    main()
