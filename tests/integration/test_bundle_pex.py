"""The agent bundle: one PEX carrying x86_64 and aarch64 native code, cached, and running on both."""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import subprocess
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from mcfleet import __version__
from mcfleet.agent.client import AgentClient
from mcfleet.bundle.build import build_agent_bundle
from tests.fixtures_agent import AgentRunner

pytestmark = [pytest.mark.slow]
EM_X86_64, EM_AARCH64 = 62, 183
MACHINES = {EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}


def _elf_machine(head: bytes) -> str:
    assert head[:4] == b"\x7fELF", "not an ELF file"
    little = head[5] == 1
    (machine,) = struct.unpack("<H" if little else ">H", head[18:20])
    return MACHINES.get(machine, f"e_machine={machine}")


def test_bundle_carries_native_libraries_for_both_arches(agent_bundle: Any) -> None:
    arches: dict[str, set[str]] = defaultdict(set)
    with zipfile.ZipFile(agent_bundle.path) as pex:
        names = pex.namelist()
        for name in names:
            if name.endswith(".so") or ".so." in name:
                with pex.open(name) as handle:
                    dist = name.split("/")[1].split("-")[0]  # .deps/<dist>-<ver>-<tags>.whl/...
                    arches[dist].add(_elf_machine(handle.read(20)))
        info = json.loads(pex.read("PEX-INFO"))
    for dist in ("grpcio", "pydantic_core", "protobuf"):
        assert arches[dist] == {"x86_64", "aarch64"}, f"{dist}: {arches[dist]}"
    assert set().union(*arches.values()) == {"x86_64", "aarch64"}
    assert info["entry_point"] == "mcfleet.agent.main:main"
    assert "mcfleet/agent/server.py" in names
    assert "mcfleet/agent/proto/agent_pb2.py" in names


def test_bundle_is_content_addressed_and_cached(agent_bundle: Any, tmp_path: Path) -> None:
    digest = hashlib.sha256(agent_bundle.path.read_bytes()).hexdigest()
    assert agent_bundle.sha256 == digest
    sha_file = agent_bundle.path.with_name(agent_bundle.path.name + ".sha256")
    assert sha_file.read_text().split()[0] == digest
    cache = agent_bundle.path.parent.parent
    # (Sources may change between the session fixture and here in a shared tree: build once more
    # first, then the call that must be a cache hit.)
    first = build_agent_bundle(cache_dir=cache)
    again = build_agent_bundle(tmp_path / "out", cache_dir=cache)
    assert again.cached, "same inputs must reuse the cached bundle"
    assert again.sha256 == first.sha256 and again.inputs_hash == first.inputs_hash
    assert hashlib.sha256((tmp_path / "out/mcfleet-agent.pex").read_bytes()).hexdigest() == first.sha256
    assert (tmp_path / "out/mcfleet-agent.pex.sha256").read_text().split()[0] == first.sha256


async def _health_and_info(socket: Path, wait_s: float) -> Any:
    async with AgentClient(str(socket), timeout=60) as client:
        assert await client.wait_serving(wait_s, "mcfleet.agent.v1.Agent") == "SERVING"  # no podman here
        return await client.info()


def test_bundle_runs_on_x86_64(agent_bundle: Any, agent_runner: AgentRunner) -> None:
    python = ["/usr/bin/python3", str(agent_bundle.path)]  # Debian 12's own python3 (3.11)
    done = subprocess.run([*python, "--version"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"mcfleet-agent {__version__} (x86_64, python 3.11.2, bundle {agent_bundle.sha256})"
    agent = agent_runner.start("--podman", "unix:///nonexistent/podman.sock", argv=python, name="pex")
    info = asyncio.run(_health_and_info(agent.socket, 30))
    assert info.arch == "x86_64"
    assert info.version == __version__
    assert info.bundle_sha256 == agent_bundle.sha256
    assert info.python == "3.11.2"


@pytest.mark.arm64
def test_bundle_runs_on_arm64(agent_bundle: Any, agent_runner: AgentRunner, arm64_python: list[str]) -> None:
    done = subprocess.run(
        [*arm64_python, str(agent_bundle.path), "--version"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"mcfleet-agent {__version__} (aarch64, python 3.11")
    agent = agent_runner.start(
        "--podman", "unix:///nonexistent/podman.sock", argv=[*arm64_python, str(agent_bundle.path)], name="arm"
    )
    info = asyncio.run(_health_and_info(agent.socket, 300))
    assert info.arch == "aarch64"
    assert info.bundle_sha256 == agent_bundle.sha256
