"""The facts read of the agent binary: it never follows a link planted in the agent's mcp-writable
folder, and it takes the binary's hash from root's record of the install only while the file is the
one installed (same device, inode, size, mtime and ctime)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from mcfleet.apply.nodeio import helper_source
from mcfleet.observe.script import ScriptInputs, probes

FAKE = "f" * 64  # a recorded hash no content has: seeing it proves the record was used


def agent_probe(path: Path, record: Path | None = None) -> str:
    inp = ScriptInputs(users=("mcp",), uids=(850,), gids=(850,), agent_path=str(path), agent_unit="mcp-agent.service",
                       agent_record=str(record or path.with_name("no-record")))  # fmt: skip
    body = next(p.body for p in probes(inp) if p.name == "agent")
    return subprocess.run(["sh", "-c", body], capture_output=True, text=True, check=True).stdout


def test_a_regular_agent_binary_is_hashed(tmp_path: Path) -> None:
    (tmp_path / "mcp-agent").write_bytes(b"bin")
    (tmp_path / "mcp-agent.version").write_text("0.1.0\n")
    out = agent_probe(tmp_path / "mcp-agent")
    assert out.startswith("sha256 51a1f05af85e342e3c849b47d387086476282d5f50dc240c19216d6edfb1eb5a\n")
    assert "version 0.1.0" in out


def test_a_link_in_place_of_the_agent_reads_as_absent(tmp_path: Path) -> None:
    secret = tmp_path / "root-only"
    secret.write_text("not mcp's to read\n")
    (tmp_path / "mcp-agent").symlink_to(secret)  # what mcp could plant in /srv/mcp
    assert agent_probe(tmp_path / "mcp-agent") == "absent\n"


def install(path: Path, data: bytes, record: Path) -> str:
    """What apply does: root's helper puts the binary and records its stat key and hash."""
    owner = f"{os.getuid()}:{os.getgid()}"
    argv = [sys.executable, "-c", helper_source(), "put", str(path), "0755", owner, "--record", str(record)]
    res = subprocess.run(argv, input=data, capture_output=True, check=False)
    assert res.returncode == 0, res.stderr
    path.with_name(f"{path.name}.version").write_text("0.1.0\n")
    return res.stdout.decode().strip()


def stat_key(path: Path) -> str:
    """The key as GNU stat prints it, which the read compares with the record."""
    argv = ["stat", "-c", "%d %i %s %.9Y %.9Z", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_installed_binary_is_not_hashed_again_while_it_is_the_file_root_installed(tmp_path: Path) -> None:
    agent, record = tmp_path / "mcp-agent", tmp_path / "installed"
    assert install(agent, b"v1", record) == f"sha256={sha(b'v1')}"
    key = stat_key(agent)
    assert record.read_text() == f"{key.strip()} {sha(b'v1')}\n"  # the helper writes the key as stat prints it
    assert record.stat().st_mode & 0o777 == 0o600
    assert agent_probe(agent, record) == f"sha256 {sha(b'v1')}\nversion 0.1.0\n"
    record.write_text(f"{key.strip()} {FAKE}\n")
    assert agent_probe(agent, record) == f"sha256 {FAKE}\nversion 0.1.0\n"  # the key matches: the record is believed


def test_a_binary_changed_after_the_install_is_hashed(tmp_path: Path) -> None:
    """Each way the agent's account (or anyone) could change the file moves its stat key."""
    agent, record = tmp_path / "mcp-agent", tmp_path / "installed"
    install(agent, b"v1", record)
    key = record.read_text().rsplit(" ", 1)[0]
    record.write_text(f"{key} {FAKE}\n")
    before = agent.stat()
    with agent.open("r+b") as f:  # written in place, same size, its mtime put back: the ctime still moves
        f.write(b"v2")
    os.utime(agent, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert agent_probe(agent, record) == f"sha256 {sha(b'v2')}\nversion 0.1.0\n"
    install(agent, b"v3", record)
    record.write_text(record.read_text().replace(sha(b"v3"), FAKE))
    swap = tmp_path / "swap"
    swap.write_bytes(b"v4")
    os.replace(swap, agent)  # another file renamed into its place
    assert agent_probe(agent, record) == f"sha256 {sha(b'v4')}\nversion 0.1.0\n"


def test_a_record_that_is_not_a_key_and_a_hash_is_ignored(tmp_path: Path) -> None:
    agent, record = tmp_path / "mcp-agent", tmp_path / "installed"
    install(agent, b"v1", record)
    key = record.read_text().rsplit(" ", 1)[0]
    for text in ("", f"{key} {FAKE[:63]}\n", f"{key} {FAKE}; rm -rf /\n", f"{key} {'F' * 64}\n", FAKE):
        record.write_text(text)
        assert agent_probe(agent, record) == f"sha256 {sha(b'v1')}\nversion 0.1.0\n", text


def test_a_binary_hashed_by_the_read_is_recorded_for_the_next_one(tmp_path: Path) -> None:
    """A binary installed before the record existed (or changed since) is hashed once; the read records its
    key and hash in root's folder, and the next read takes the hash from there."""
    agent, record = tmp_path / "mcp-agent", tmp_path / "store" / "installed"
    agent.write_bytes(b"old install")
    agent.with_name("mcp-agent.version").write_text("0.1.0\n")
    assert agent_probe(agent, record) == f"sha256 {sha(b'old install')}\nversion 0.1.0\n"
    assert not record.parent.exists()  # root's folder is not made by a read
    record.parent.mkdir(mode=0o700)
    assert agent_probe(agent, record) == f"sha256 {sha(b'old install')}\nversion 0.1.0\n"
    key = stat_key(agent)
    assert record.read_text() == f"{key.strip()} {sha(b'old install')}\n"
    assert record.stat().st_mode & 0o777 == 0o600 and os.listdir(record.parent) == ["installed"]
    record.write_text(f"{key.strip()} {FAKE}\n")
    assert agent_probe(agent, record) == f"sha256 {FAKE}\nversion 0.1.0\n"
