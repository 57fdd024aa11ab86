"""A subordinate id range that differs from host.json: moved while nothing lives in it, else refused.

The facts probe and the Debian provisioning script share one shell function
(observe/hostlevel.SUBID_USE_SH); here the plan side and that function, run for real.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from mcfleet.fleet.desired import DesiredAgent, DesiredHost, DesiredUser
from mcfleet.fleet.models import IdRange
from mcfleet.kinds.host import HostKind
from mcfleet.observe.facts import Account, Facts, Group, IdRangeFact
from mcfleet.observe.hostlevel import SUBID_USE_SH, HostLevelFacts, SubidUse, _subid_use
from mcfleet.observe.manifest import Manifest

NEW = IdRange(start=300000, count=65536)
OLD = [IdRangeFact(start=100000, count=65536)]


def _host(os: str = "debian") -> DesiredHost:
    agent = DesiredAgent("/srv/mcp/mcp-agent", "mcp-agent.service", "mcp", "/srv/mcp/mcp-agent.sock", "x", None)
    return DesiredHost("n1", os, "amd64", agent, users=[DesiredUser("mcp", 850, 850, subuid=NEW, subgid=NEW)])


def _facts(use: SubidUse | None) -> Facts:
    return Facts(
        host="n1",
        accounts=[Account(name="mcp", uid=850, gid=850)],
        groups=[Group(name="mcp", gid=850)],
        subuid={"mcp": OLD},
        subgid={"mcp": OLD},
        host_level=HostLevelFacts(subid_use={"mcp": use} if use else {}),
    )


def _subid_actions(d: DesiredHost, f: Facts) -> list[tuple[str, str]]:
    acts = HostKind().diff(d, f, Manifest(), now=datetime.now(UTC))
    return [(a.kind, a.subject) for a in acts if a.subject.startswith("sub")]


def test_an_empty_range_is_moved_and_a_used_one_refused() -> None:
    empty = SubidUse(layers=0, containers=0, files=False)
    assert _subid_actions(_host(), _facts(empty)) == [("update", "subuid mcp"), ("update", "subgid mcp")]
    used = SubidUse(layers=3, containers=1, files=True)
    refused = HostKind().diff(_host(), _facts(used), Manifest(), now=datetime.now(UTC))
    move = next(a for a in refused if a.subject == "subuid mcp")
    assert move.kind == "refuse"
    assert "3 image layers and 1 containers" in move.reason and "nobody (65534)" in move.reason
    assert move.hint is not None and "podman system reset -f" in move.hint
    # not read (older facts) or NixOS (the configuration writes the ranges): refused as before
    assert _subid_actions(_host(), _facts(None))[0][0] == "refuse"
    assert _subid_actions(_host("nixos"), _facts(empty))[0][0] == "refuse"


def test_the_shared_function_counts_storage_and_files_in_the_range(tmp_path: Path) -> None:
    # a home with rootless storage files (user: this test's own account via getent on root)
    store = tmp_path / ".local/share/containers/storage"
    (store / "overlay-layers").mkdir(parents=True)
    (store / "overlay-layers/layers.json").write_text('[{"id":"a"},{"id":"b"}]')
    (store / "overlay-containers").mkdir(parents=True)
    (store / "overlay-containers/containers.json").write_text("[]")
    script = SUBID_USE_SH.replace('h=$(getent passwd "$1" | cut -d: -f6)', f"h={tmp_path}") + '\nsubid_use mcp "" ""'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert _subid_use(out) == {"mcp": SubidUse(layers=2, containers=0, files=False)}
