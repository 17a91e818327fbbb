"""What ``pip install .`` puts in site-packages: one top-level package, ``tlbfuzz``.

The code lives in the top-level folders ``protocol/`` and ``fuzz/``; ``tlbfuzz/protocol`` and
``tlbfuzz/fuzz`` are relative symlinks to them (``tlbfuzz/__init__.py`` says why). The wheel
must hold them as ``tlbfuzz.protocol`` and ``tlbfuzz.fuzz`` (setuptools follows the symlinks)
and no top-level ``protocol`` or ``fuzz``, whose names would collide with anything else
installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "fuzz")
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "findings",
    "nightly-results",
    "*.egg-info",
    "__pycache__",
    ".hypothesis",
    ".*_cache",
    ".benchmarks",
)


def test_tlbfuzz_links_to_the_top_level_folders() -> None:
    assert (ROOT / "tlbfuzz" / "__init__.py").is_file()
    for package in PACKAGES:
        link = ROOT / "tlbfuzz" / package
        assert link.is_symlink(), f"tlbfuzz/{package} is not a symlink"
        assert os.readlink(link) == f"../{package}"  # relative: the checkout can move
        assert (ROOT / package).is_dir()
        assert not (ROOT / package).is_symlink()  # the code's real home


def test_the_checkout_imports_no_bare_package() -> None:
    """Every module imported as ``tlbfuzz.*`` (also those a string names), in a fresh
    process: none loads the top-level folders as ``protocol`` or ``fuzz``, a second copy."""
    code = textwrap.dedent("""
        import pkgutil, sys, tlbfuzz
        for m in pkgutil.walk_packages(tlbfuzz.__path__, "tlbfuzz."):
            if not m.name.endswith("__main__"):
                __import__(m.name)
        print(sorted(n for n in sys.modules if n.split(".")[0] in ("protocol", "fuzz")))
        print(sum(n.startswith("tlbfuzz.") for n in sys.modules))
    """)
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    bare, loaded = r.stdout.splitlines()
    assert bare == "[]"
    files = [f for package in PACKAGES for f in (ROOT / package).rglob("*.py")]
    assert int(loaded) == len(files) - 1  # every module but fuzz/__main__.py


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel ``pip install .`` builds, from a copy of the checkout (symlinks kept), so the
    build neither writes build/ here nor packs a stale build/lib of an earlier build."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=NOT_SOURCE)
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (path,) = tmp.glob("tlbfuzz-*.whl")
    return zipfile.ZipFile(path)


@pytest.mark.slow
def test_the_wheel_installs_only_tlbfuzz(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"tlbfuzz"}
    (info,) = (t for t in top if t.endswith(".dist-info"))
    assert wheel.read(f"{info}/top_level.txt").decode().split() == ["tlbfuzz"]
    entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert "tlbfuzz = tlbfuzz.fuzz.cli:main" in entry_points


@pytest.mark.slow
def test_the_wheel_holds_every_file_of_the_packages(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if path.suffix in {".py", ".typed", ".json"}:
                assert f"tlbfuzz/{path.relative_to(ROOT).as_posix()}" in names
    assert {"tlbfuzz/__init__.py", "tlbfuzz/py.typed"} <= names
    assert "tlbfuzz/fuzz/schema/results.schema.json" in names
    assert "tlbfuzz/protocol/py.typed" in names
    assert "tlbfuzz/fuzz/py.typed" in names
