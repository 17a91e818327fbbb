"""tlbfuzz: find racy schedules in x86 Linux TLB-shootdown protocols.

Layout: the code lives in the repository's top-level folders ``protocol/`` (the model) and
``fuzz/`` (the fuzzer, the command line and the corpus). ``tlbfuzz/protocol`` and
``tlbfuzz/fuzz`` are relative symlinks to them, so the importable names are
``tlbfuzz.protocol`` and ``tlbfuzz.fuzz``: ``pip install .`` puts one top-level package,
``tlbfuzz``, in site-packages, where the bare names ``protocol`` and ``fuzz`` could collide
with anything else installed.

In a checkout, ``import protocol`` would still find the top-level folder and load a second
copy of every module (two ``World`` classes, two variant registries). Import them only as
``tlbfuzz.protocol`` and ``tlbfuzz.fuzz``; ruff's TID251 (``pyproject.toml``) rejects the bare
names.
"""
