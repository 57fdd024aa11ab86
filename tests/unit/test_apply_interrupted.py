"""Ctrl-C during apply: what finished before it is recorded in the node's manifest, as after a failure, and
neither the cancel nor a further one cuts that write (local nodes, as in test_apply_pipeline)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mcfleet.apply.artifacts import Builder
from mcfleet.apply.events import ApplyEvents, Phase, Status
from mcfleet.apply.pipeline import ApplyOptions, HostWork, Pipeline
from mcfleet.cli.commands_apply import interrupted_text
from mcfleet.fleet.load import HostEntry
from mcfleet.kinds import ApplyContext, Outcome
from mcfleet.observe.manifest import Manifest, ManifestCert
from mcfleet.plan.model import Action
from mcfleet.transport.local import LocalNode
from tests.unit.test_apply_pipeline import CertsAsDeclared, RecordingStep, entry, fleet_of, manifest_on, work


@dataclass
class Hangs(RecordingStep):
    """A phase that never ends (the DNS server stopped with SIGSTOP): it says it began, then waits."""

    records_desired_set: bool = True
    began: asyncio.Event = field(default_factory=asyncio.Event)

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        self.trace.append(f"{ctx.entry.host.name}:{self.phase}")
        self.began.set()
        await asyncio.Event().wait()
        raise AssertionError("never")

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest:
        raise AssertionError("an interrupted phase is not recorded as done")


@dataclass
class SlowManifest(LocalNode):
    """A node whose manifest write takes a while, and that says when it began and whether it ended."""

    writing: asyncio.Event = field(default_factory=asyncio.Event)
    written: list[str] = field(default_factory=list)

    async def run(self, command: Any, **kw: Any) -> Any:
        if isinstance(command, str) and command.startswith("mkdir -p $(dirname") and "manifest.json" in command:
            self.writing.set()
            await asyncio.sleep(0.3)
            res = await super().run(command, **kw)
            self.written.append("manifest")
            return res
        return await super().run(command, **kw)


def steps_and_work(tmp_path: Path) -> tuple[list[Any], Hangs, HostWork]:
    """cert, deploy and route succeed; dns hangs.  The manifest had the certificate `old`."""
    trace: list[str] = []
    hang = Hangs(Phase.dns, trace)
    steps: list[Any] = [CertsAsDeclared(Phase.cert, trace), RecordingStep(Phase.deploy, trace),
                        RecordingStep(Phase.route, trace), hang]  # fmt: skip
    store = tmp_path / ".stores" / "a"
    store.mkdir(parents=True)
    old = Manifest(certs=[ManifestCert(name="old", path="/srv/mc-proxy/certs/old.pem")])
    (store / "manifest.json").write_text(old.to_text())
    return steps, hang, work(entry("a", tmp_path), "cert", "deploy", "route", "dns")


async def interrupt(w: HostWork, steps: list[Any], hang: Hangs, node: LocalNode, *, again: bool = False) -> ApplyEvents:
    """Run the pipeline, cancel it (what asyncio.run does at Ctrl-C) once dns began; `again`: cancel it a
    second time while the manifest is being written.  Returns the events once it raised CancelledError."""
    log = ApplyEvents()

    async def connect(e: HostEntry) -> LocalNode:
        return node

    pipe = Pipeline([w], loaded=fleet_of([w]), connect=connect, builder=Builder(), options=ApplyOptions(), log=log,
                    kinds=steps)  # fmt: skip
    run = asyncio.ensure_future(pipe.run())
    await asyncio.wait_for(hang.began.wait(), 10)
    run.cancel()
    if again:
        assert isinstance(node, SlowManifest)
        await asyncio.wait_for(node.writing.wait(), 10)
        run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 10)
    return log


def test_what_finished_before_ctrl_c_is_recorded(tmp_path: Path) -> None:
    """cert, deploy and route finished, dns hung, Ctrl-C: the manifest lists the certificate and the deployed
    and routed things (was: not written at all, so deleting the service's file later left its route, its
    certificate and key on the node, listed nowhere, removed by no plan); the hung dns is not recorded."""
    steps, hang, w = steps_and_work(tmp_path)
    node = LocalNode("a", store=str(tmp_path / ".stores" / "a"))
    log = asyncio.run(interrupt(w, steps, hang, node))
    recorded = log.outcome("a", Phase.manifest)
    assert recorded is not None and recorded.status == Status.changed, [e.line() for e in log.events]
    assert recorded.message == "recorded what succeeded before the interruption (cert, deploy, route)"
    manifest = manifest_on(tmp_path, "a")
    assert [c["name"] for c in manifest["certs"]] == ["new", "old"]  # `old` kept: its removal may not have run
    assert manifest["steps"] == ["deploy", "route"]
    assert log.outcome("a", Phase.dns) is None  # began, never ended: the journal says "started"
    said = interrupted_text(log)
    assert said.startswith("interrupted: stopped at Ctrl-C (what finished is kept, and recorded in each host's")
    assert "  a: manifest recorded what succeeded before the interruption (cert, deploy, route)" in said


def test_a_second_cancel_does_not_cut_the_manifest_write(tmp_path: Path) -> None:
    """Cancelled again while the manifest is written (a second Ctrl-C, the event loop ending): the write
    goes to its end, then the run stops."""
    steps, hang, w = steps_and_work(tmp_path)
    node = SlowManifest("a", store=str(tmp_path / ".stores" / "a"))
    log = asyncio.run(interrupt(w, steps, hang, node, again=True))
    assert node.written == ["manifest"]
    recorded = log.outcome("a", Phase.manifest)
    assert recorded is not None and recorded.message.startswith("recorded what succeeded before the interruption")
    assert manifest_on(tmp_path, "a")["steps"] == ["deploy", "route"]


def test_ctrl_c_while_the_finished_apply_writes_its_manifest_lets_it_end(tmp_path: Path) -> None:
    """Every phase done, the manifest being written when Ctrl-C comes: it is written whole and said."""
    trace: list[str] = []
    steps: list[Any] = [RecordingStep(Phase.deploy, trace)]
    w = work(entry("a", tmp_path), "deploy")
    node = SlowManifest("a", store=str(tmp_path / ".stores" / "a"))
    log = ApplyEvents()

    async def connect(e: HostEntry) -> LocalNode:
        return node

    async def go() -> None:
        pipe = Pipeline([w], loaded=fleet_of([w]), connect=connect, builder=Builder(), options=ApplyOptions(),
                        log=log, kinds=steps)  # fmt: skip
        run = asyncio.ensure_future(pipe.run())
        await asyncio.wait_for(node.writing.wait(), 10)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(run, 10)

    asyncio.run(go())
    assert node.written == ["manifest"]
    assert log.outcome("a", Phase.manifest).message == "written"  # type: ignore[union-attr]
    assert manifest_on(tmp_path, "a")["steps"] == ["deploy"]


def test_interrupted_text_without_anything_recorded() -> None:
    said = interrupted_text(ApplyEvents())
    assert said.startswith("interrupted: stopped at Ctrl-C (what finished is kept: nothing new to record")
