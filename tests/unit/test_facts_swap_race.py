"""Root's facts script reads files in folders the agent's account owns (a service's declared files, the
agent's version file and binary).  That account can swap such a file with a link to a root-only file
again and again (renameat2 with RENAME_EXCHANGE: the name is always there, one or the other) while the
script runs; a check-then-read by name then reads the root file now and then (its text in the plan's
diff, its first line as the agent's version).  The script must never send it, however the swaps fall."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mcfleet.observe.files import files_probe_body, parse_files
from mcfleet.observe.script import ScriptInputs, probes

RUNS = 120
SECRET = "TOPSECRET-root-only-token-123\n"
AT_FDCWD, RENAME_EXCHANGE = -100, 2
_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def swapping(path: Path, target: Path) -> Iterator[None]:
    """`path` exchanged with a link to `target` as fast as one thread can, until the block ends."""
    decoy = path.with_name(f".{path.name}.swap")
    decoy.symlink_to(target)
    stop = threading.Event()

    def loop() -> None:
        a, b = bytes(path), bytes(decoy)
        while not stop.is_set():
            if _libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
                raise OSError(ctypes.get_errno(), "renameat2")

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    path = private / "token"
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


def _sh(body: str) -> str:
    return subprocess.run(["sh", "-c", body], capture_output=True, text=True, check=False, timeout=30).stdout


def test_a_declared_file_swapped_with_a_link_never_sends_the_root_file(tmp_path: Path, secret: Path) -> None:
    svc = tmp_path / "srv-sni"
    svc.mkdir()
    pem = svc / "tls.pem"
    pem.write_text("the service's own certificate\n")
    body = files_probe_body((str(pem),), (str(pem),))
    secret_sha = hashlib.sha256(SECRET.encode()).hexdigest()
    seen_present = 0
    with swapping(pem, secret):
        for _ in range(RUNS):
            out = _sh(body)
            assert SECRET.strip() not in out and base64.b64encode(SECRET.encode()).decode()[:20] not in out
            (fact,) = parse_files(out)
            assert fact.text is None or SECRET.strip() not in fact.text
            assert fact.sha256 != secret_sha
            seen_present += fact.present
    assert seen_present, "the probe never saw the file itself: the test proves nothing"


def test_the_agents_version_file_swapped_with_a_link_never_sends_the_root_file(tmp_path: Path, secret: Path) -> None:
    agent_dir = tmp_path / "srv-mcp"
    agent_dir.mkdir()
    agent = agent_dir / "mcp-agent"
    agent.write_bytes(b"#!/bin/sh\necho agent\n")
    (agent_dir / "mcp-agent.version").write_text("1.2.3\n")
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    inputs = ScriptInputs((), (), (), str(agent), "mcp-agent.service", agent_record=str(store / "installed"))
    (body,) = [p.body for p in probes(inputs) if p.name == "agent"]
    versions = set()
    with swapping(agent_dir / "mcp-agent.version", secret):
        for _ in range(RUNS):
            out = _sh(body)
            assert SECRET.strip() not in out, out
            versions |= {line for line in out.splitlines() if line.startswith("version ")}
    assert "version 1.2.3" in versions, "the probe never read the version file itself: the test proves nothing"


def test_the_agent_binary_swapped_with_a_link_is_never_hashed_through_it(tmp_path: Path, secret: Path) -> None:
    """Even its hash is not sent: a short secret's hash can be guessed."""
    agent_dir = tmp_path / "srv-mcp"
    agent_dir.mkdir()
    agent = agent_dir / "mcp-agent"
    agent.write_bytes(b"#!/bin/sh\necho agent\n")
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    inputs = ScriptInputs((), (), (), str(agent), "mcp-agent.service", agent_record=str(store / "installed"))
    (body,) = [p.body for p in probes(inputs) if p.name == "agent"]
    secret_sha = hashlib.sha256(SECRET.encode()).hexdigest()
    with swapping(agent, secret):
        for _ in range(RUNS):
            (store / "installed").unlink(missing_ok=True)  # no record: the binary is hashed every run
            assert secret_sha not in _sh(body)
    assert os.path.exists(agent)
