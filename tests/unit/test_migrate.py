"""Moving a service between hosts: the planned move (pure), apply's split of the plan, and the
destination's owner mapping (run for real on this machine's filesystem)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest

from mcfleet.apply.events import ApplyEvents, Status
from mcfleet.apply.migrate import Ids, Mover, moves_from_plan, parse_ids, restore_script
from mcfleet.apply.planwork import work_from_plan
from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import HostEntry
from mcfleet.phase import Phase
from mcfleet.plan.planner import build
from mcfleet.plan.render import render_text
from mcfleet.plan.saved import read_plan, save_plan
from mcfleet.transport.base import Node
from mcfleet.transport.local import LocalNode
from tests.unit.test_plan_cases import CASES, case_facts, write_case_fleet


def _moved_plan(tmp_path: Path):  # type: ignore[no-untyped-def]
    case = json.loads((CASES / "service-moved-between-hosts.json").read_text())
    loaded = write_case_fleet(tmp_path / "fleet", case)
    from datetime import datetime

    plan = build(loaded, case_facts(loaded, case), now=datetime.fromisoformat(case["now"]), check_backends=False)
    return loaded, plan


def test_the_move_is_one_action_and_the_plan_says_the_order(tmp_path: Path) -> None:
    _loaded, plan = _moved_plan(tmp_path)
    moves = [a for a in plan.actions if a.kind == "move"]
    assert [(m.host, m.phase, m.subject) for m in moves] == [("orion", Phase.migrate, "service web")]
    move = moves[0]
    assert move.before["host"] == "rift" and move.after["host"] == "orion"
    assert move.after["dns"] == ["web.svc.mcp.example.test"]
    assert move.after["routes"] == ["443/web.svc.mcp.example.test"]
    assert not [a for a in plan.actions if a.phase == Phase.deploy and a.subject == "service web"]
    text = render_text(plan)
    assert "> service web  moved rift → orion: stop on rift, snapshot /srv/web/" in text
    assert "only then remove it from rift" in text
    assert "1 to move" in text
    # a saved plan carries it (and passes the saved-plan schema check)
    save_plan(plan, tmp_path / "plan.json")
    again = read_plan(tmp_path / "plan.json")
    assert [a.kind for a in again.actions if a.subject == "service web"] == ["move"]
    works = moves_from_plan(again)
    assert [(w.service, w.source, w.dest) for w in works] == [("web", "rift", "orion")]
    assert sorted(f"{p.host} {p.phase} {p.kind} {p.subject}" for p in works[0].parts) == [
        "orion dns create dns web.svc.mcp.example.test",
        "orion files create file /srv/web/web.conf",
        "orion route create route 443/web.svc.mcp.example.test",
        "rift cert delete cert web",
        "rift deploy delete service old",
        "rift route delete route 443/web.svc.mcp.example.test",
    ]


def test_the_hosts_own_apply_leaves_the_moved_service_to_the_move(tmp_path: Path) -> None:
    loaded, plan = _moved_plan(tmp_path)
    work = {w.name: w for w in work_from_plan(plan, loaded, desired_state(loaded))}
    assert [f"{a.phase} {a.kind} {a.subject}" for a in work["orion"].actions] == [
        "cert create cert web",
        "manifest update manifest",
    ]
    assert [f"{a.phase} {a.kind} {a.subject}" for a in work["rift"].actions] == ["manifest update manifest"]
    orion = work["orion"].desired
    assert "web" not in orion.services and not orion.files and not orion.routes
    assert "web.svc.mcp.example.test" not in orion.records


def test_ids_are_read_from_the_nodes_answer() -> None:
    said = "uid=850 gid=850\nsubuid=100000:65536\nsubgid=\n"
    assert parse_ids(said) == Ids(850, 850, (100000, 65536), None)


@pytest.mark.lab
def test_restore_maps_owners_between_subuid_ranges(tmp_path: Path) -> None:
    """Needs root (chown): A's agent uid and subuid range become B's; other ids stay."""
    if os.geteuid() != 0:
        pytest.fail("this test runs as root (it chowns files), as the lab tests do")
    src = tmp_path / "src" / "web"
    (src / "certs").mkdir(parents=True)
    owners = {"mcp.txt": (850, 850), "certs/ca.pem": (100999, 100999), "root.txt": (0, 0), "edge.txt": (165535, 850)}
    for rel, (uid, gid) in owners.items():
        (src / rel).write_text(rel)
        os.chown(src / rel, uid, gid)
    os.chown(src, 850, 850)
    os.chown(src / "certs", 100000, 100000)
    archive = tmp_path / "web.tar.zst"
    subprocess.run(["tar", "--numeric-owner", "--zstd", "-C", str(src.parent), "-cf", str(archive), "web"], check=True)
    srv = tmp_path / "srv"
    (srv / "web").mkdir(parents=True)  # a folder B had, with content: kept aside
    (srv / "web" / "old.txt").write_text("B's own")
    a = Ids(850, 850, (100000, 65536), (100000, 65536))
    b = Ids(901, 902, (200000, 65536), (300000, 65536))
    script = restore_script("web", str(archive), "T", a, b, srv=str(srv))
    done = subprocess.run(["sh", "-c", script], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "mapped=" in done.stdout and (srv / ".web.before-migrate.T" / "old.txt").read_text() == "B's own"
    assert not archive.exists()  # B's copy of the archive is removed once restored

    def ids(rel: str) -> tuple[int, int]:
        st = os.lstat(srv / "web" / rel)
        return st.st_uid, st.st_gid

    assert ids("") == (901, 902)
    assert ids("mcp.txt") == (901, 902)
    assert ids("certs") == (200000, 300000)
    assert ids("certs/ca.pem") == (200999, 300999)
    assert ids("root.txt") == (0, 0)
    assert ids("edge.txt") == (265535, 902)
    assert (srv / "web" / "certs" / "ca.pem").read_text() == "certs/ca.pem"

    # a destination range too small for an id in use: refused, nothing put in place (an empty folder: replaced)
    (srv / "web").rename(srv / "kept")
    subprocess.run(["tar", "--numeric-owner", "--zstd", "-C", str(src.parent), "-cf", str(archive), "web"], check=True)
    small = Ids(901, 902, (200000, 1000), (300000, 65536))
    done = subprocess.run(["sh", "-c", restore_script("web", str(archive), "U", a, small, srv=str(srv))],
                          check=False, capture_output=True, text=True)  # fmt: skip
    assert done.returncode != 0 and "has no place in the destination range 200000:1000" in done.stderr
    assert not (srv / "web").exists()


def test_prune_keeps_each_services_newest_snapshots() -> None:
    from mcfleet.apply.snapshot import SNAPSHOT_NAME, select_pruned

    names = [
        "web-20260101T000000Z.tar.zst",
        "web-20260102T000000Z.tar.zst",
        "web-20260103T000000Z.tar.zst",
        "db-data-20260101T000000Z.tar.zst",
    ]
    assert all(__import__("re").fullmatch(SNAPSHOT_NAME, n) for n in names)
    assert sorted(select_pruned(names, None, 1)) == names[:2]
    assert sorted(select_pruned(names, "web", 0)) == names[:3]
    assert select_pruned(names, "db-data", 0) == [names[3]]
    assert select_pruned(names, "db", 0) == []  # a service name is matched whole, not as a prefix


def test_a_move_planned_for_the_destination_alone_is_refused(tmp_path: Path) -> None:
    """Planned for orion only, web's `+ service` there would start it empty while rift, left out of
    the plan, keeps running it with its data: plan_fleet reads rift's manifest and refuses."""
    from datetime import datetime

    from mcfleet.kinds.migrate import moves_left_out
    from mcfleet.observe.facts import Facts

    case = json.loads((CASES / "service-moved-between-hosts.json").read_text())
    loaded = write_case_fleet(tmp_path / "fleet", case)
    facts = case_facts(loaded, case)
    desired = desired_state(loaded)
    only_dest = build(loaded, {"orion": facts["orion"]}, now=datetime.fromisoformat(case["now"]), check_backends=False)
    assert [a.kind for a in only_dest.actions if a.subject == "service web"] == ["create"]
    rift = facts["rift"]
    assert isinstance(rift, Facts)
    [refusal] = moves_left_out(only_dest.actions, {"rift": rift.manifest}, desired)
    assert (refusal.host, refusal.kind, refusal.phase) == ("orion", "refuse", Phase.migrate)
    assert refusal.before == {"host": "rift"} and refusal.subject == "service web"
    assert refusal.hint == "plan both hosts so that it is one move: --on rift --on orion"
    # a host that does not record web (or did not answer) is no reason to refuse
    assert moves_left_out(only_dest.actions, {"rift": None}, desired) == []


def test_the_moved_services_record_is_named_as_the_sources_not_as_a_stranger(tmp_path: Path) -> None:
    """The destination's manifest does not list the name (the source's does): its DNS part of the move says
    whose record it replaces, not "a record mcfleet did not make"."""
    case = json.loads((CASES / "service-moved-between-hosts.json").read_text())
    case["facts"]["orion"]["dns"] = {"web.svc.mcp.example.test": ["10.0.0.10"]}  # rift's address, at the server
    loaded = write_case_fleet(tmp_path / "fleet", case)
    from datetime import datetime

    plan = build(loaded, case_facts(loaded, case), now=datetime.fromisoformat(case["now"]), check_backends=False)
    [dns] = [a for a in plan.actions if a.phase == Phase.dns]
    assert (dns.host, dns.kind) == ("orion", "update")
    assert dns.reason == (
        "the server answers 10.0.0.10, rift's record, which moves with web; "
        "part of moving web to orion: applied after its health check there"
    )


def test_a_snapshot_in_the_same_second_as_the_last_gets_a_name_of_its_own(tmp_path: Path) -> None:
    """Snapshots are named by the second: the second one in a second replaced the first (`mv -f`)."""
    from mcfleet.apply.snapshot import snapshot_script

    srv, store = tmp_path / "srv", tmp_path / "store"
    (srv / "web").mkdir(parents=True)
    paths = []
    for content in ("first", "second"):
        (srv / "web" / "data.txt").write_text(content)
        script = snapshot_script(str(store), "web", "20260101T000000Z", srv=str(srv))
        done = subprocess.run(["sh", "-c", script], check=False, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        paths.append(done.stdout.split()[0].removeprefix("path="))
    assert paths[0] == f"{store}/snapshots/web-20260101T000000Z.tar.zst"
    assert paths[1] != paths[0] and paths[1].startswith(f"{store}/snapshots/web-")
    listed = subprocess.run(
        ["tar", "--zstd", "-xOf", paths[0], "web/data.txt"], check=True, capture_output=True, text=True
    )
    assert listed.stdout == "first"  # the first snapshot is still there, as it was
    assert sorted(p.name for p in (store / "snapshots").iterdir()) == sorted(Path(p).name for p in paths)


class _ForwardingNode(LocalNode):
    async def forward_unix(self, remote_path: str) -> str:  # a node reached through SSH
        return remote_path


def test_a_move_whose_source_agent_is_not_reached_says_what_is_at_its_socket(tmp_path: Path) -> None:
    """A link at the source agent's socket: nothing is stopped, and the failure names the link and the
    restart that makes the socket again, instead of gRPC's 'failed to connect'."""
    loaded, plan = _moved_plan(tmp_path)
    link = tmp_path / "mcp-agent.sock"
    link.symlink_to(tmp_path / "moved.sock")
    for name, entry in list(loaded.hosts.items()):
        agent = entry.host.agent.model_copy(update={"socket": str(link)})
        loaded.hosts[name] = dataclasses.replace(entry, host=entry.host.model_copy(update={"agent": agent}))
    [work] = moves_from_plan(plan)
    log = ApplyEvents()

    async def connect(_entry: HostEntry) -> Node:
        return _ForwardingNode()

    moved = asyncio.run(Mover(work, loaded, desired_state(loaded), connect, log).run())
    assert moved is False
    said = log.outcome("rift", Phase.migrate)
    assert said is not None and said.status == Status.failed
    assert said.message.startswith(f"web not moved: the agent was not reached: {link} is a link"), said.message
    unit = loaded.hosts["rift"].host.agent.unit
    assert f"on rift: `systemctl restart {unit}` on the node makes it again" in said.message, said.message
    assert "still running on rift" in said.message and "failed to connect" not in said.message
