"""The node-side parts of apply that run on a plain local folder (LocalNode, /bin/sh); the rest
runs on lab nodes (tests/integration/test_nodesec_lab.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from mcfleet.apply.activate import desired_agent, needs_activation, render_unit, sha256_text
from mcfleet.apply.confirm import rollback_script
from mcfleet.apply.nodeio import STORE, helper_source, write_text
from mcfleet.apply.probe import AgentProbe, parse_probe, probe
from mcfleet.apply.provision import parse_output, provision_script
from mcfleet.fleet.desired import DesiredHost
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.fleet.models import Host
from mcfleet.kinds import ApplyContext
from mcfleet.kinds.agent import AgentKind
from mcfleet.observe.manifest import Manifest, ManifestCorrupt
from mcfleet.transport.local import LocalNode

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def make_host(srv: Path, **users: dict[str, int]) -> Host:
    host = Host.model_validate(
        {
            "name": "n1",
            "os": "debian",
            "arch": "amd64",
            "roles": ["worker"],
            "ssh": {"host_key": KEY},
            "addresses": ["127.0.0.1"],
            "users": users or {"mcp": {"uid": 850, "gid": 850}},
            "dns": {"nameservers": ["10.0.0.53"], "fallback": ["1.1.1.1", "9.9.9.9"]},
        }
    )
    # a scratch folder is not a valid agent folder on a node: set it past validation, for local runs
    agent = host.agent.model_copy(update={"path": f"{srv}/mcp-agent", "socket": f"{srv}/mcp-agent.sock"})
    return host.model_copy(update={"agent": agent})


def bundle(tmp: Path, name: str, text: str) -> tuple[Path, str]:
    path = tmp / name
    path.write_text(text)
    return path, hashlib.sha256(text.encode()).hexdigest()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_probe_removes_leftovers_of_a_killed_run(tmp_path: Path) -> None:
    srv, store = tmp_path / "srv", tmp_path / "store"
    srv.mkdir()
    host = make_host(srv)
    (srv / "mcp-agent").write_text("x")
    (srv / ".mcp-agent.1a2b.tmp").write_text("half")
    store.mkdir(mode=0o700)
    for leftover in (".manifest.json.9f.tmp", "rollback.sh.tmp"):
        (store / leftover).write_text("half")
    (store / "manifest.json").write_text('{"version": 1}')
    state = run(probe(LocalNode("n1", store=str(store)), host))
    assert sorted(p.name for p in srv.iterdir()) == ["mcp-agent"]
    assert sorted(p.name for p in store.iterdir()) == ["manifest.json", "mcfleet-node.py"]
    assert state.binary_sha256 == hashlib.sha256(b"x").hexdigest()
    assert state.prev_sha256 is None and state.unit_sha256 is None and state.store_sha256 is None
    assert state.manifest == Manifest()


def test_a_corrupt_manifest_is_an_error_naming_the_file_never_read_as_empty(tmp_path: Path) -> None:
    srv, store = tmp_path / "srv", tmp_path / "store"
    srv.mkdir()
    host = make_host(srv)
    node = LocalNode("n1", store=str(store))
    store.mkdir(mode=0o700)
    (store / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestCorrupt, match="unreadable manifest") as err:
        run(probe(node, host))
    assert err.value.location == f"n1:{store}/manifest.json"
    (store / "manifest.json").write_text('{"agent": {"sha256": 5}}')
    with pytest.raises(ManifestCorrupt, match="schema at agent/sha256"):
        run(probe(node, host))


def test_write_text_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.json"
    run(write_text(LocalNode("n1"), str(target), '{"a": 1}\n', mode="0600"))
    assert target.read_text() == '{"a": 1}\n'
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


def _rollback(tmp_path: Path, token: Path) -> subprocess.CompletedProcess[str]:
    """The deadman script as rendered, pointed at scratch folders for root's store, /srv/mcp and the units."""
    host = make_host(Path("/srv/mcp"))
    store = tmp_path / "store"
    (store / "mcfleet-node.py").write_text(helper_source())
    text = rollback_script(host, 30)
    for real, scratch in ((STORE, store), ("/etc/systemd/system", tmp_path / "units"), ("/srv/mcp", tmp_path / "srv")):
        text = text.replace(real, str(scratch))
    script = store / "rollback.sh"
    script.write_text(text)
    env = {**os.environ, "MCFLEET_SYSTEMCTL": "true"}
    return subprocess.run(["sh", str(script), str(token)], check=False, capture_output=True, text=True, env=env)


def _scratch_node(tmp_path: Path) -> tuple[Path, Path]:
    srv, store = tmp_path / "srv", tmp_path / "store"
    for folder in (tmp_path / "units", srv, store / "agent"):
        folder.mkdir(parents=True)
    (srv / "mcp-agent").write_text("new")
    (store / "agent" / "current").write_text("new")
    (store / "agent" / "prev").write_text("old")
    (tmp_path / "units" / "mcp-agent.service").write_text("new unit")
    (store / "unit.prev").write_text("old unit")
    return srv, store


def test_deadman_script_restores_roots_prev_when_not_confirmed(tmp_path: Path) -> None:
    srv, store = _scratch_node(tmp_path)
    token = store / "deadman-token.x"
    token.write_text("armed")
    res = _rollback(tmp_path, token)
    assert res.returncode == 0, res.stderr
    assert (srv / "mcp-agent").read_text() == "old"
    assert (store / "agent" / "current").read_text() == "old"
    assert (store / "agent" / "prev").read_text() == "old"
    assert (tmp_path / "units" / "mcp-agent.service").read_text() == "old unit"
    assert not token.exists()
    assert "rolled back" in (store / "deadman.log").read_text()
    assert not list(srv.glob("*.tmp")) and not list(store.rglob("*.tmp"))


def test_deadman_script_does_nothing_once_confirmed(tmp_path: Path) -> None:
    srv, store = _scratch_node(tmp_path)
    res = _rollback(tmp_path, store / "deadman-token.gone")  # token deleted = confirmed
    assert res.returncode == 0
    assert (srv / "mcp-agent").read_text() == "new"
    assert not (store / "deadman.log").exists()


def test_deadman_script_quotes_every_value() -> None:
    host = make_host(Path("/srv/mcp"))
    text = rollback_script(host, 30)
    assert "STORE=/var/lib/mcfleet\n" in text and "BIN=/srv/mcp/mcp-agent\n" in text
    assert "@" not in text.replace("@DEADLINE@", "")  # every placeholder filled


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


def test_a_dropin_on_the_agents_unit_activates_it_and_plan_and_apply_read_it_alike() -> None:
    """A drop-in overrides the unit while its file stays as installed: apply's probe and the plan's facts
    both read systemd's DropInPaths, and the one decision activates (moving it to root's store).  Only
    .conf files under /etc/systemd or /run/systemd are taken: nothing else is moved as root."""
    from mcfleet.kinds.agent import unit_dropins
    from mcfleet.observe.parse import parse_agent

    host = make_host(Path("/srv/mcp"))
    unit = sha256_text(render_unit(host))
    recorded = Manifest.model_validate({"agent": {"sha256": "a" * 64}})
    edit = "/etc/systemd/system/mcp-agent.service.d/override.conf"
    said = parse_probe(
        f"bin={'a' * 64}\nunit={unit}\nsystemd=1\nactive=active\nenabled=enabled\n"
        f"dropins={edit} /run/systemd/system.control/mcp-agent.service.d/50-MemoryMax.conf\n"
    )
    state = AgentProbe("a" * 64, None, unit, "active", "enabled", recorded, dropins=said.dropins)
    assert needs_activation(state, host, pushed=False) == (
        f"drop-in {edit}, /run/systemd/system.control/mcp-agent.service.d/50-MemoryMax.conf overrides "
        "mcp-agent.service (activation moves it to root's store, /var/lib/mcfleet/dropins)"
    )
    facts = parse_agent("/srv/mcp/mcp-agent", f"sha256 {'a' * 64}", f"active active\nenabled enabled\ndropins {edit}")
    assert facts.unit_dropins == [edit]
    assert parse_agent("/srv/mcp/mcp-agent", "", "active active\ndropins ").unit_dropins == []
    assert parse_agent("/srv/mcp/mcp-agent", "", "active active").unit_dropins is None  # an older facts script
    odd = [
        "/srv/mcp/x.service.d/a.conf",
        "/etc/systemd/system/a.service.d/../../../shadow.conf",
        "/etc/systemd/system/a.service.d/a.conf;rm",
        "relative.d/a.conf",
        "/usr/lib/systemd/system/a.service.d/b.conf",
    ]
    assert unit_dropins(odd) == ()  # fmt: skip
    assert unit_dropins([edit, edit.replace("override", "10-x")]) == (edit.replace("override", "10-x"), edit)
    for everyone in ("/etc/systemd/system/service.d/10-all.conf", "/etc/systemd/system/mcp-.service.d/x.conf"):
        others = AgentProbe("a" * 64, None, unit, "active", "enabled", recorded, dropins=unit_dropins([everyone]))
        assert others.dropins and needs_activation(others, host, pushed=False) is None  # not the agent's alone


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
    ctx = ApplyContext(loaded, entry, LocalNode("n1"), want, current)
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

    host = make_host(tmp_path / "srv")
    state = parse_probe("systemd=0\nactive=unknown\nenabled=unknown\n")
    assert not state.has_systemd
    with pytest.raises(ApplyError, match="does not run systemd"):
        run(activate(LocalNode("n1"), host, state, pushed=True, sha="a" * 64, opts=ActivateOptions()))
    assert not (tmp_path / "srv").exists()  # nothing was written before refusing


def test_the_provision_message_puts_folders_first_when_nothing_else_changed() -> None:
    """Seen on the demo lab: a new service's folder made, nothing else: the phase said "changed" with
    "nothing to change (12 checks ok); folders: /srv/hello (mcp:mcp 0750)"."""
    from mcfleet.apply.provision import with_folders

    made = "/srv/hello (mcp:mcp 0750)"
    assert with_folders(False, "nothing to change (12 checks ok)", made) == (
        "folders: /srv/hello (mcp:mcp 0750); otherwise nothing to change (12 checks ok)"
    )
    assert with_folders(True, "user mcp created with UID 850", made) == (
        "user mcp created with UID 850; folders: /srv/hello (mcp:mcp 0750)"
    )
