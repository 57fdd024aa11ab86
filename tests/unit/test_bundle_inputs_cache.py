"""The agent's inputs hash is remembered between runs, and still follows every change."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

import mcfleet
from mcfleet.bundle.build import PLATFORM_FILES, PLATFORMS, agent_requirements, inputs_hash, installed_dists_stamp
from mcfleet.bundle.inputs_cache import cached_inputs_hash, index_path

PACKAGE = Path(mcfleet.__file__).parent


def _copy(tmp_path: Path) -> tuple[Path, list[Path]]:
    package = tmp_path / "src" / "mcfleet"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    platforms = [tmp_path / name for name in PLATFORM_FILES]
    for name in PLATFORM_FILES:
        shutil.copy2(PLATFORMS / name, tmp_path / name)
    return package, platforms


def test_a_changed_source_still_changes_the_cached_hash(tmp_path: Path) -> None:
    package, platforms = _copy(tmp_path)
    cache = tmp_path / "cache"
    reqs = agent_requirements()
    calls: list[str] = []

    def cached() -> str:
        def compute() -> str:
            calls.append("walk")
            return inputs_hash(package, reqs, platforms)

        return cached_inputs_hash(cache, package, platforms, "\n".join(reqs), compute)

    base = cached()
    assert base == inputs_hash(package, reqs, platforms) and index_path(cache, package).is_file()
    assert cached() == base and calls == ["walk"]  # second run: no walk of the sources

    server = package / "agent/server.py"
    st = server.stat()
    # same size, mtime put back: the ctime still moves with the write
    text = server.read_text()
    assert text.startswith('"""')  # the edit lands in the docstring
    server.write_text(text[:3] + text[3:].swapcase()[0] + text[4:])
    os.utime(server, ns=(st.st_atime_ns, st.st_mtime_ns))
    edited = cached()
    assert edited != base and edited == inputs_hash(package, reqs, platforms) and len(calls) == 2

    (package / "agent" / "new_module.py").write_text("x = 1\n")  # a new file in the agent
    assert cached() == inputs_hash(package, reqs, platforms) != edited and len(calls) == 3

    platforms[0].write_text(platforms[0].read_text() + " ")
    assert cached() == inputs_hash(package, reqs, platforms) and len(calls) == 4


def test_other_requirements_or_a_broken_index_recompute(tmp_path: Path) -> None:
    package, platforms = _copy(tmp_path)
    cache = tmp_path / "cache"
    assert cached_inputs_hash(cache, package, platforms, "a==1", lambda: "one") == "one"
    assert cached_inputs_hash(cache, package, platforms, "a==2", lambda: "two") == "two"
    index_path(cache, package).write_text("{not json")
    assert cached_inputs_hash(cache, package, platforms, "a==2", lambda: "three") == "three"
    assert cached_inputs_hash(cache, package, platforms, "a==2", lambda: "four") == "three"


def test_the_installed_dists_stamp_names_every_pinned_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache key stands for the pins: each pin's `<name>-<version>.dist-info`, and a new version changes it."""
    stamp = installed_dists_stamp()
    first: dict[str, str] = {}
    for line in stamp.splitlines():
        name, version = Path(line).name.removesuffix(".dist-info").split("-", 1)
        first.setdefault(name.lower().replace("-", "_"), version)
    for pin in agent_requirements():
        name, version = pin.split("==")
        assert first[name.lower().replace("-", "_")] == version, pin
    shadow = tmp_path / "site"
    (shadow / "grpcio-0.0.1.dist-info").mkdir(parents=True)  # an older grpcio first on the path
    monkeypatch.syspath_prepend(str(shadow))
    assert installed_dists_stamp() != stamp and installed_dists_stamp().startswith(f"{shadow}/grpcio-0.0.1.dist-info")


def test_a_cached_bundle_is_hashed_once_and_again_after_any_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from mcfleet.bundle import build

    pex, sha_file = tmp_path / "mcfleet-agent.pex", tmp_path / "mcfleet-agent.pex.sha256"
    pex.write_bytes(b"x" * 4096)
    sha_file.write_text(f"{hashlib.sha256(pex.read_bytes()).hexdigest()}  mcfleet-agent.pex\n")
    hashed: list[Path] = []
    real = build.sha256_file

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(build, "sha256_file", counting)
    assert build.cache_entry_intact(pex, sha_file) and len(hashed) == 1
    assert build.cache_entry_intact(pex, sha_file) and len(hashed) == 1  # remembered: not hashed again
    st = pex.stat()
    time.sleep(0.05)  # file times move with the kernel's coarse clock (a few ms per tick)
    pex.write_bytes(b"y" * 4096)  # same size, mtime put back: the ctime still moves
    os.utime(pex, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not build.cache_entry_intact(pex, sha_file) and len(hashed) == 2
