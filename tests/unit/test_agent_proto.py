"""The committed gRPC stubs are exactly what scripts/gen-proto.sh generates from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STUBS = REPO / "python/mcfleet/agent/proto"


def test_regenerated_stubs_match_the_committed_ones(tmp_path: Path) -> None:
    done = subprocess.run(
        ["sh", str(REPO / "scripts/gen-proto.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHON": sys.executable, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    fresh = {p.name: p.read_text() for p in (tmp_path / "mcfleet/agent/proto").iterdir() if p.is_file()}
    committed = {p.name: p.read_text() for p in STUBS.iterdir() if p.is_file() and p.name != "__init__.py"}
    assert set(fresh) == set(committed), "stub files were added or removed: run scripts/gen-proto.sh"
    drifted = sorted(name for name in fresh if fresh[name] != committed[name])
    assert drifted == [], f"stale stubs {drifted}: run scripts/gen-proto.sh and commit the result"


def test_every_rpc_of_the_proto_is_served() -> None:
    from mcfleet.agent.proto import agent_pb2
    from mcfleet.agent.server import AgentServicer

    methods = agent_pb2.DESCRIPTOR.services_by_name["Agent"].methods_by_name
    assert set(methods) == {
        "Info", "Facts", "ReconcileServices", "StopService", "StartService", "RestartService", "Recover",
    }  # fmt: skip
    for name in methods:
        assert name in AgentServicer.__dict__, f"{name} is not implemented by the agent"


def test_the_boot_state_of_info_carries_every_field_the_agent_keeps() -> None:
    """Info builds BootState from the agent's BootStatus field for field (`pb.BootState(**asdict(boot))`)."""
    from dataclasses import asdict, fields

    from mcfleet.agent.events import BootStatus
    from mcfleet.agent.proto import agent_pb2

    assert {f.name for f in fields(BootStatus)} == set(agent_pb2.BootState.DESCRIPTOR.fields_by_name)
    sent = agent_pb2.BootState(**asdict(BootStatus(state="failed", stage="core", what="boot", attempt=3, retry_at=9.5)))
    assert (sent.state, sent.stage, sent.what, sent.attempt, sent.retry_at) == ("failed", "core", "boot", 3, 9.5)
