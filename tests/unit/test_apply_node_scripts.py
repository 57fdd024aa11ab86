"""The node-side parts of apply, run for real on a plain local folder (LocalRunner, /bin/sh)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from mcfleet.apply.activate import desired_agent, needs_activation, render_unit, sha256_text
from mcfleet.apply.confirm import rollback_script
from mcfleet.apply.nodeio import write_text
from mcfleet.apply.probe import AgentProbe, probe
from mcfleet.apply.provision import parse_output, provision_script
from mcfleet.apply.push import install_script, push_agent
from mcfleet.fleet.desired import DesiredHost
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.fleet.models import Host
from mcfleet.kinds import ApplyContext
from mcfleet.kinds.agent import AgentKind
from mcfleet.observe.manifest import Manifest, ManifestCorrupt
from mcfleet.transport.local import LocalRunner

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def make_host(srv: Path, **users: dict[str, int]) -> Host:
    return Host.model_validate(
        {
            "name": "n1",
            "os": "debian",
            "arch": "amd64",
            "roles": ["worker"],
            "ssh": {"host_key": KEY},
            "addresses": ["127.0.0.1"],
            "users": users or {"mcp": {"uid": 850, "gid": 850}},
            "dns": {"nameservers": ["10.0.0.53"], "fallback": ["1.1.1.1", "9.9.9.9"]},
            "agent": {"path": f"{srv}/mcp-agent", "socket": f"{srv}/mcp-agent.sock"},
        }
    )


def bundle(tmp: Path, name: str, text: str) -> tuple[Path, str]:
    path = tmp / name
    path.write_text(text)
    return path, hashlib.sha256(text.encode()).hexdigest()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_push_is_atomic_content_addressed_and_keeps_a_confirmed_prev(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    host = make_host(srv)
    node = LocalRunner("n1")
    v1, sha1 = bundle(tmp_path, "v1", "#!/bin/sh\necho v1\n")
    v2, sha2 = bundle(tmp_path, "v2", "#!/bin/sh\necho v2\n")

    state = run(probe(node, host))
    first = run(push_agent(node, host, v1, sha1, state))
    assert first.changed and first.bytes_sent == v1.stat().st_size
    assert (srv / "mcp-agent").read_text() == v1.read_text()
    assert os.access(srv / "mcp-agent", os.X_OK)
    assert not (srv / "mcp-agent.prev").exists()

    # same hash: nothing sent
    again = run(push_agent(node, host, v1, sha1, run(probe(node, host))))
    assert not again.changed and again.bytes_sent == 0

    # v1 confirmed (manifest), v2 pushed: v1 becomes .prev
    (srv / "mcfleet-state.json").write_text(json.dumps({"agent": {"sha256": sha1}}))
    state = run(probe(node, host))
    assert state.confirmed_sha256 == sha1 and state.binary_sha256 == sha1
    run(push_agent(node, host, v2, sha2, state))
    assert (srv / "mcp-agent").read_text() == v2.read_text()
    assert (srv / "mcp-agent.prev").read_text() == v1.read_text()

    # v3 pushed over the unconfirmed v2: .prev stays the confirmed v1
    v3, sha3 = bundle(tmp_path, "v3", "#!/bin/sh\necho v3\n")
    run(push_agent(node, host, v3, sha3, run(probe(node, host))))
    assert (srv / "mcp-agent.prev").read_text() == v1.read_text()
    assert sorted(p.name for p in srv.iterdir()) == ["mcfleet-state.json", "mcp-agent", "mcp-agent.prev"]


def test_install_refuses_a_corrupted_upload_and_leaves_the_binary(tmp_path: Path) -> None:
    binary = tmp_path / "mcp-agent"
    binary.write_text("good")
    tmp = tmp_path / ".mcp-agent.abc.tmp"
    tmp.write_text("corrupted")
    script = install_script(str(binary), str(tmp), "0" * 64, None)
    res = subprocess.run(["sh", "-c", script], check=False, capture_output=True, text=True)
    assert res.returncode == 3
    assert "hash mismatch" in res.stderr
    assert binary.read_text() == "good"
    assert not tmp.exists()


def test_probe_removes_leftovers_of_a_killed_run(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    host = make_host(srv)
    (srv / "mcp-agent").write_text("x")
    for leftover in (".mcp-agent.1a2b.tmp", ".mcfleet-state.json.9f.tmp", "mcp-agent.rollback.tmp"):
        (srv / leftover).write_text("half")
    (srv / "mcfleet-state.json").write_text('{"version": 1}')
    state = run(probe(LocalRunner("n1"), host))
    assert sorted(p.name for p in srv.iterdir()) == ["mcfleet-state.json", "mcp-agent"]
    assert state.binary_sha256 == hashlib.sha256(b"x").hexdigest()
    assert state.prev_sha256 is None and state.unit_sha256 is None
    assert state.manifest == Manifest()


def test_a_corrupt_manifest_is_an_error_naming_the_file_never_read_as_empty(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    host = make_host(srv)
    (srv / "mcfleet-state.json").write_text("{not json")
    with pytest.raises(ManifestCorrupt, match="unreadable manifest") as err:
        run(probe(LocalRunner("n1"), host))
    assert err.value.location == f"n1:{srv}/mcfleet-state.json"
    (srv / "mcfleet-state.json").write_text('{"agent": {"sha256": 5}}')
    with pytest.raises(ManifestCorrupt, match="schema at agent/sha256"):
        run(probe(LocalRunner("n1"), host))


def test_write_text_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.json"
    run(write_text(LocalRunner("n1"), str(target), '{"a": 1}\n', mode="0600"))
    assert target.read_text() == '{"a": 1}\n'
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


def _rollback(tmp_path: Path, token: Path) -> subprocess.CompletedProcess[str]:
    srv = tmp_path / "srv"
    host = make_host(srv)
    script = tmp_path / "rollback.sh"
    # the unit file lives in /etc/systemd/system on a node; point it into the scratch folder
    script.write_text(rollback_script(host, 30).replace("/etc/systemd/system", str(tmp_path / "units")))
    env = {**os.environ, "MCFLEET_SYSTEMCTL": "true"}
    return subprocess.run(["sh", str(script), str(token)], check=False, capture_output=True, text=True, env=env)


def test_deadman_script_restores_prev_when_not_confirmed(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    (tmp_path / "units").mkdir()
    srv.mkdir()
    (srv / "mcp-agent").write_text("new")
    (srv / "mcp-agent.prev").write_text("old")
    (tmp_path / "units" / "mcp-agent.service").write_text("new unit")
    (tmp_path / "units" / "mcp-agent.service.prev").write_text("old unit")
    token = srv / ".mcfleet-deadman.x"
    token.write_text("armed")
    res = _rollback(tmp_path, token)
    assert res.returncode == 0, res.stderr
    assert (srv / "mcp-agent").read_text() == "old"
    assert (srv / "mcp-agent.prev").read_text() == "old"
    assert (tmp_path / "units" / "mcp-agent.service").read_text() == "old unit"
    assert not token.exists()
    assert "rolled back" in (srv / "mcfleet-deadman.log").read_text()
    assert not list(srv.glob("*.tmp"))


def test_deadman_script_does_nothing_once_confirmed(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "mcp-agent").write_text("new")
    (srv / "mcp-agent.prev").write_text("old")
    res = _rollback(tmp_path, srv / ".mcfleet-deadman.gone")  # token deleted = confirmed
    assert res.returncode == 0
    assert (srv / "mcp-agent").read_text() == "new"
    assert not (srv / "mcfleet-deadman.log").exists()


def test_unit_runs_the_agent_from_srv_as_mcp_exactly_as_on_nixos() -> None:
    from mcfleet.nix.host_values import agent_unit_text

    host = make_host(Path("/srv/mcp"))
    unit = render_unit(host)
    assert "ExecStart=/srv/mcp/mcp-agent\n" in unit
    assert "User=mcp" in unit and "Group=mcp" in unit
    assert unit == agent_unit_text(HostEntry(host, (), Path(".")))  # the NixOS module's unit, byte for byte


def test_activation_is_skipped_only_when_everything_is_as_applied() -> None:
    host = make_host(Path("/srv/mcp"))
    unit = sha256_text(render_unit(host))
    recorded = Manifest.model_validate({"agent": {"sha256": "a" * 64}})
    good = AgentProbe("a" * 64, None, unit, "active", "enabled", recorded)
    assert needs_activation(good, host, pushed=False) is None
    assert needs_activation(good, host, pushed=True) == "new agent binary"
    assert needs_activation(AgentProbe("a" * 64, None, "x", "active", "enabled", good.manifest), host, False)
    assert "failed" in (
        needs_activation(AgentProbe("a" * 64, None, unit, "failed", "", good.manifest), host, False) or ""
    )
    unconfirmed = AgentProbe("b" * 64, None, unit, "active", "enabled", good.manifest)
    assert needs_activation(unconfirmed, host, pushed=False) == "binary not confirmed by an earlier apply"


def test_manifest_keeps_other_parts_and_ignores_timestamps() -> None:
    host = make_host(Path("/srv/mcp"))
    current = Manifest.model_validate(
        {
            "version": 1,
            "applied_at": "2026-01-01T00:00:00Z",
            "agent": {"path": "/srv/mcp/mcp-agent", "sha256": "a" * 64, "version": "0.1"},
            "users": {"mcp": {"uid": 850, "gid": 850}},
            "services": {"web": {"hash": "h"}},
        }
    )
    want = DesiredHost("n1", "debian", "amd64", desired_agent(host, "a" * 64))
    entry = HostEntry(host, (), Path("."))
    loaded = LoadedFleet(root=Path("."), fleet=None, hosts={"n1": entry})
    ctx = ApplyContext(loaded, entry, LocalRunner("n1"), want, current)
    ctx.data.update(agent_sha256="a" * 64, agent_version=None)
    same = AgentKind().record(current, ctx, [])
    assert same.agent is not None and same.agent.version == "0.1"
    assert same.agent.user == "mcp" and same.agent.unit == "mcp-agent.service"  # what it runs as, recorded
    restamped = same.model_copy(update={"applied_at": "2027-01-01T00:00:00Z", "agent": current.agent})
    assert restamped.content() == current.content()  # the write stamp is not content
    ctx.data.update(agent_sha256="b" * 64, agent_version="0.2")
    new = AgentKind().record(current, ctx, [])
    assert new.content() != current.content()
    assert new.services == current.services


@pytest.mark.parametrize(
    ("users", "expect"),
    [
        # the incident: the pinned GID/UID already belongs to another account -> refused, nothing created
        ({"mcp": {"uid": 850, "gid": 0}}, "GID 0 belongs to group root"),
        # an existing account with other ids is never changed
        ({"daemon": {"uid": 850, "gid": 850}}, "group daemon exists with GID 1, the pin is 850"),
    ],
)
def test_provision_refuses_ids_that_belong_to_someone_else(tmp_path: Path, users: dict, expect: str) -> None:  # type: ignore[type-arg]
    srv = tmp_path / "srv"
    host = make_host(srv, **users)
    name = next(iter(users))
    host = host.model_copy(update={"agent": host.agent.model_copy(update={"user": name})})
    script = provision_script(HostEntry(host, (), tmp_path), None)
    env = {**os.environ, "MCFLEET_ETC": str(tmp_path / "etc")}
    res = subprocess.run(["sh", "-c", script], check=False, capture_output=True, text=True, env=env)
    assert res.returncode == 3, res.stdout + res.stderr
    changed, _ok, refusal = parse_output(res.stdout)
    assert changed == []
    assert refusal is not None and expect in refusal
    assert not srv.exists() and not (tmp_path / "etc").exists()


def test_activation_on_a_node_without_systemd_fails_clearly(tmp_path: Path) -> None:
    from mcfleet.apply.activate import ActivateOptions, activate
    from mcfleet.errors import ApplyError

    if Path("/run/systemd/system").is_dir():
        pytest.skip("this machine runs systemd")
    host = make_host(tmp_path / "srv")
    node = LocalRunner("n1")
    state = run(probe(node, host))
    assert not state.has_systemd
    with pytest.raises(ApplyError, match="does not run systemd"):
        run(activate(node, host, state, pushed=True, sha="a" * 64, opts=ActivateOptions()))
    assert not (tmp_path / "srv").exists()  # nothing was written before refusing
