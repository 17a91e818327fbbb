"""``--database redis://...`` against a real redis-server (Debian's ``redis-server``; .ci/run
installs it): two machines share a finding through Redis, and killing a worker loses nothing it
saved. The fixture starts the server on a free localhost port and stops it afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from tests import procs
from tlbfuzz.fuzz.corpus import load, replay

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

redis = pytest.importorskip("redis", reason="the redis client is missing: pip install '.[test]'")

ARGS = ("-v", "lazy-skip-freed-tables", "-p", "no_walk_of_freed_page_table", "--profile", "ci")
KEY = ("lazy-skip-freed-tables", "no_walk_of_freed_page_table")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("TLBFUZZ_REQUIRE_REDIS"):
            pytest.fail(reason + ", and TLBFUZZ_REQUIRE_REDIS is set (.ci/run)")
        pytest.skip(reason)
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        t0 = time.monotonic()
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() - t0 > 10 or server.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        server.terminate()
        server.wait(10)


@pytest.mark.slow
def test_two_machines_share_a_finding_through_redis(redis_url: str, tmp_path: Path) -> None:
    """Machine A finds the violation after hundreds of examples; machine B (another process,
    another corpus folder) replays A's failing example from Redis first and finds it at once."""
    a = procs.run("fuzz", *ARGS, "--database", redis_url, "--corpus", str(tmp_path / "a"),
                  "--json", str(tmp_path / "a.json"))  # fmt: skip
    assert a.returncode == 1, a.stderr
    b = procs.run("fuzz", *ARGS, "--database", redis_url, "--corpus", str(tmp_path / "b"),
                  "--json", str(tmp_path / "b.json"))  # fmt: skip
    assert b.returncode == 1, b.stderr
    ra, rb = procs.results(tmp_path / "a.json")[KEY], procs.results(tmp_path / "b.json")[KEY]
    assert ra["examples"] > 50
    assert rb["examples"] <= 5
    (fa,) = procs.saved(tmp_path / "a")
    (fb,) = procs.saved(tmp_path / "b")
    assert fa.name == fb.name  # the same schedule, minimised alike


@pytest.mark.slow
def test_killing_a_worker_loses_nothing_it_saved_to_redis(redis_url: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    p = procs.start(
        "fuzz", *ARGS, "-v", "linux-current", "-p", "no_deadlock", "--max-examples", "5000",
        "--workers", "2", "--database", redis_url, "--corpus", str(corpus),
    )  # fmt: skip
    try:
        procs.wait_for(lambda: bool(procs.saved(corpus)), 120, "a saved finding")
        procs.kill(procs.workers_of(p.pid))
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert "died" in err
    (path,) = procs.saved(corpus)
    assert replay(load(path)).ok
    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() > 0  # Hypothesis's entries for the failing example
    # the database key is the machine's: the same variant and property set as the killed run
    r = procs.run("fuzz", *ARGS, "-p", "no_deadlock", "--max-examples", "300", "--database",
                  redis_url, "--corpus", str(tmp_path / "c2"), "--json",
                  str(tmp_path / "again.json"))  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert procs.results(tmp_path / "again.json")[KEY]["examples"] <= 5
