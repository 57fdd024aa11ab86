"""Moves: a service without a folder moves with nothing to copy; the source's manifest keeps what the move
carries (route, certificate, DNS records) until the move ran their steps; the folders moves set aside are
listed and pruned with the snapshots; Ctrl-C during a move starts the service on its source again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from mcfleet.apply import migrate as migrate_mod
from mcfleet.apply.events import ApplyEvents, Status
from mcfleet.apply.migrate import PARTS_DONE, Mover, moves_from_plan
from mcfleet.apply.pipeline import ApplyOptions, Pipeline
from mcfleet.apply.planwork import work_from_plan
from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import HostEntry
from mcfleet.kinds.base import ApplyContext
from mcfleet.kinds.providers import CertKind, DnsKind, RouteKind
from mcfleet.observe.facts import Facts
from mcfleet.observe.manifest import Manifest
from mcfleet.phase import Phase
from mcfleet.plan.planner import build
from mcfleet.transport.base import RunResult
from tests.unit.test_plan_cases import CASES, case_facts, write_case_fleet

PROVIDERS = {
    "route": {"kind": "caddy", "admin_url": "unix:/srv/mc-proxy/caddy-admin.sock", "server": "edge", "user": "root"},
    "dns": {"kind": "rfc2136", "server": "10.0.0.1", "key_name": "k", "key_file": "/nonexistent/tsig.secret"},
    "cert": {"kind": "acme", "directory": "https://acme.example.test/dir", "account_key_file": "/nonexistent/a.pem"},
}


def _case(*, folder: bool = True) -> dict[str, Any]:
    case = json.loads((CASES / "service-moved-between-hosts.json").read_text())
    case["fleet"] = {"providers": PROVIDERS}
    if not folder:  # web declares no volume and no file: no /srv/web anywhere
        web = case["hosts"]["orion"]["services"]["web"]
        web["components"][0].pop("volumes")
        web.pop("files")
        for facts in case["facts"].values():
            facts["dirs"] = []
    return case


def _plan(tmp_path: Path, case: dict[str, Any]):  # type: ignore[no-untyped-def]
    from datetime import datetime

    loaded = write_case_fleet(tmp_path / "fleet", case)
    facts = case_facts(loaded, case)
    plan = build(loaded, facts, now=datetime.fromisoformat(case["now"]), check_backends=False)
    return loaded, facts, plan


def _rift_manifest(facts: dict[str, Any]) -> Manifest:
    rift = facts["rift"]
    assert isinstance(rift, Facts) and rift.manifest is not None
    return rift.manifest


def _carried(m: Manifest) -> tuple[list[str], list[str], list[str]]:
    return [r.hostname for r in m.routes], [r.name for r in m.dns], [c.name for c in m.certs]


# ------------------------------------------------------------------ a service without a folder


def test_a_move_of_a_service_without_a_folder_promises_no_snapshot(tmp_path: Path) -> None:
    _loaded, _facts, plan = _plan(tmp_path, _case(folder=False))
    [move] = [a for a in plan.actions if a.kind == "move"]
    assert "nothing to copy (web declares no /srv/web/" in move.reason, move.reason
    assert "snapshot /srv/web/ there (kept), copy it" not in move.reason
    _loaded, _facts, plan = _plan(tmp_path / "with", _case())
    [move] = [a for a in plan.actions if a.kind == "move"]
    assert "snapshot /srv/web/ there (kept), copy it to orion" in move.reason


class _Answer:
    def __init__(self) -> None:
        self.ok, self.error = True, ""


class _Agent:
    """The agent on a node: every call succeeds; the calls are noted in `calls`."""

    calls: list[str] = []  # noqa: RUF012 (one list for the test)

    def __init__(self, target: str, **_kw: object) -> None:
        self.target = target

    async def __aenter__(self) -> _Agent:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def stop(self, name: str) -> _Answer:
        self.calls.append(f"{self.target} stop {name}")
        return _Answer()

    async def start(self, name: str) -> _Answer:
        self.calls.append(f"{self.target} start {name}")
        return _Answer()

    async def reconcile(self, specs: list[Any], *, prune: bool) -> _Answer:
        self.calls.append(f"{self.target} reconcile prune={prune}")
        return _Answer()


class _ShellNode:
    """A node whose root shell is this machine's, with /srv and root's store in a scratch folder."""

    def __init__(self, name: str, root: Path) -> None:
        self.name, self.root = name, root
        self.store = str(root / "store")
        (root / "srv").mkdir(parents=True, exist_ok=True)

    async def forward_unix(self, remote_path: str) -> str:
        return f"{self.name}:{remote_path}"

    async def run(self, command: str, **_kw: object) -> RunResult:
        script = command.replace("/srv", str(self.root / "srv"))
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        return RunResult(proc.returncode or 0, out.decode(), err.decode())


def _mover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: dict[str, Any]) -> tuple[Mover, ApplyEvents]:
    loaded, _facts, plan = _plan(tmp_path, case)
    [work] = moves_from_plan(plan)
    nodes = {h: _ShellNode(h, tmp_path / h) for h in ("rift", "orion")}
    _Agent.calls = []
    monkeypatch.setattr(migrate_mod, "AgentClient", _Agent)

    async def manifest(_node: object, _entry: object) -> Manifest:
        return Manifest()

    monkeypatch.setattr(migrate_mod, "_manifest", manifest)

    async def connect(entry: HostEntry) -> Any:
        return nodes[entry.host.name]

    log = ApplyEvents()
    return Mover(work, loaded, desired_state(loaded), connect, log), log


def test_a_service_without_a_folder_on_its_source_moves_with_nothing_to_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rift has no /srv/web: the move went on to start web on orion (and the switch-over), instead of
    failing at the snapshot with `no folder /srv/web`."""
    mover, log = _mover(tmp_path, monkeypatch, _case(folder=False))
    switched: list[bool] = []

    async def switch(self: Mover, st: Any) -> bool:
        switched.append(st.empty)
        return True

    monkeypatch.setattr(Mover, "_switch_and_clean", switch)
    assert asyncio.run(mover.run()) is True, [e.message for e in log.events]
    assert switched == [True]
    assert _Agent.calls == [
        "rift:/srv/mcp/mcp-agent.sock stop web",
        "orion:/srv/mcp/mcp-agent.sock reconcile prune=False",
    ]
    assert not (tmp_path / "rift" / "store" / "snapshots").exists()  # nothing archived


async def _cut_at_start(self: _Agent, specs: list[Any], *, prune: bool) -> _Answer:
    """Ctrl-C while the destination's agent starts the service (its removal there again is answered)."""
    self.calls.append(f"{self.target} reconcile prune={prune}")
    if not prune:
        raise asyncio.CancelledError
    return _Answer()


def test_ctrl_c_during_a_move_starts_the_service_on_its_source_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mover, log = _mover(tmp_path, monkeypatch, _case(folder=False))

    monkeypatch.setattr(_Agent, "reconcile", _cut_at_start)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(mover.run())
    assert _Agent.calls[-1] == "rift:/srv/mcp/mcp-agent.sock start web"  # started on the source again
    said = log.outcome("rift", Phase.migrate)
    assert said is not None and said.status == Status.failed
    assert "web not moved: interrupted at Ctrl-C; removed from orion again, running on rift again" in said.message
    err = capsys.readouterr().err
    assert "web stays stopped on rift and is not started on orion: run apply again" in err


def test_ctrl_c_says_what_is_left_when_the_source_does_not_start_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mover, log = _mover(tmp_path, monkeypatch, _case(folder=False))

    async def no_start(self: _Agent, name: str) -> _Answer:
        answer = _Answer()
        answer.ok, answer.error = False, "no podman"
        return answer

    monkeypatch.setattr(_Agent, "reconcile", _cut_at_start)
    monkeypatch.setattr(_Agent, "start", no_start)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(mover.run())
    said = log.outcome("rift", Phase.migrate)
    assert said is not None
    assert "web is stopped on rift and not started on orion: run apply again" in said.message, said.message


# ------------------------------------------------------------------ the source's record


def test_the_sources_own_apply_keeps_what_the_move_carries_in_its_manifest(tmp_path: Path) -> None:
    """rift's own apply runs before the move: its record keeps web's route, certificate and DNS record
    (the move has not run; if it fails, a later plan must still see them to remove them)."""
    loaded, facts, plan = _plan(tmp_path, _case())
    had = _rift_manifest(facts)
    assert _carried(had) == (["web.svc.mcp.example.test"], ["web.svc.mcp.example.test"], ["web"])
    work = {w.name: w for w in work_from_plan(plan, loaded, desired_state(loaded))}
    pipeline = Pipeline(list(work.values()), loaded=loaded, connect=None, builder=None, options=ApplyOptions(),  # type: ignore[arg-type]
                        log=ApplyEvents(), moves=moves_from_plan(plan), desired=desired_state(loaded))  # fmt: skip
    w = work["rift"]
    ctx = ApplyContext(loaded, w.entry, None, w.desired, had, {})
    new = pipeline._recorded(w, ctx, [RouteKind(), DnsKind(), CertKind()])
    assert _carried(new) == _carried(had)
    assert new.content() == had.content()


def _record(mover: Mover, manifests: dict[str, Manifest], monkeypatch: pytest.MonkeyPatch, *, moved: bool,
            done: dict[str, set[str]]) -> dict[str, Manifest]:  # fmt: skip
    written: dict[str, Manifest] = {}

    async def write(node: Any, new: Manifest) -> None:
        written[node] = new

    monkeypatch.setattr(migrate_mod, "write_manifest", write)
    contexts = {
        h: ApplyContext(mover.loaded, mover.loaded.hosts[h], h, mover.desired[h], m, {PARTS_DONE: done.get(h, set())})
        for h, m in manifests.items()
    }
    asyncio.run(mover._record(contexts, moved=moved))
    return written


def test_a_switch_over_that_failed_keeps_what_did_not_run_in_the_sources_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = _case()
    mover, _log = _mover(tmp_path, monkeypatch, case)
    _loaded, facts, _p = _plan(tmp_path / "again", case)
    had = _rift_manifest(facts)
    # the route's removal on rift ran, the certificate's did not
    written = _record(mover, {"rift": had}, monkeypatch, moved=False,
                      done={"rift": {"route 443/web.svc.mcp.example.test"}})  # fmt: skip
    assert _carried(written["rift"]) == ([], ["web.svc.mcp.example.test"], ["web"])
    # the move succeeded: none of web's is rift's any more (its DNS name is orion's now)
    written = _record(mover, {"rift": had}, monkeypatch, moved=True, done={})
    assert _carried(written["rift"]) == ([], [], [])


# ------------------------------------------------------------------ the folders moves set aside


class _ListNode:
    name = "orion"
    store = "/var/lib/mcfleet"

    def __init__(self) -> None:
        self.ran: list[Any] = []

    async def run(self, command: Any, **_kw: object) -> RunResult:
        self.ran.append(command)
        if isinstance(command, list):
            return RunResult(0, "", "")
        return RunResult(0, "\n".join([
            "10 db-20260101T000000Z.tar.zst",
            "aside 20 .db.before-migrate.20260102T000000Z",
            "aside 30 .db.before-migrate.20260103T000000Z",
            "aside 40 .db.before-restore.20260104T000000Z",
        ]), "")  # fmt: skip


class _Session:
    def __init__(self, loaded: Any, node: _ListNode) -> None:
        self.loaded, self.node = loaded, node

    async def connect(self, _entry: object) -> _ListNode:
        return self.node

    async def gate(self, _hosts: object, _overrides: object) -> None:
        return None


def test_the_folders_moves_set_aside_are_listed_and_pruned(tmp_path: Path) -> None:
    from mcfleet.apply.snapshot import list_script, snapshots

    assert ".*.before-migrate.*" in list_script("/var/lib/mcfleet")
    loaded, _facts, _p = _plan(tmp_path, _case())
    node = _ListNode()
    listed = asyncio.run(snapshots(_Session(loaded, node), "orion", "db", prune=False, keep=1, overrides=[]))  # type: ignore[arg-type]
    assert [a["path"] for a in listed.set_aside] == [
        "/srv/.db.before-migrate.20260102T000000Z",
        "/srv/.db.before-migrate.20260103T000000Z",
        "/srv/.db.before-restore.20260104T000000Z",
    ]
    assert "(the folder a move here replaced)" in listed.render()
    pruned = asyncio.run(snapshots(_Session(loaded, node), "orion", "db", prune=True, keep=1, overrides=[]))  # type: ignore[arg-type]
    assert sorted(pruned.removed) == [
        "/srv/.db.before-migrate.20260102T000000Z",
        "/srv/.db.before-migrate.20260103T000000Z",
    ]
    assert [a["path"] for a in pruned.set_aside] == ["/srv/.db.before-restore.20260104T000000Z"]
