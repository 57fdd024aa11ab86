"""Helpers for the apply/provision integration tests: full lab nodes, the agent bundle, the CLI.

Each test gets its own systemd-nspawn nodes (booting one takes ~1 s once the rootfs is
cached), so tests can run on any xdist worker in any order without sharing state.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from mcfleet.apply.events import Status
from mcfleet.errors import McfleetError, ToolMissing
from mcfleet.lab.lab import Lab
from mcfleet.lab.login import Login
from mcfleet.lab.nodes import LabNode
from mcfleet.observe.manifest import MANIFEST_PATH

_COUNTER = iter(range(1, 1000))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Nodes:
    lab: Lab
    fleet_dir: Path
    nodes: list[LabNode]

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def sh(self, name: str, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        code, out, err = asyncio.run(self.lab.exec_in(name, ["sh", "-c", script]))
        if check and code != 0:
            raise AssertionError(f"{script!r} on {name} exited {code}: {err.strip()}")
        return subprocess.CompletedProcess(script, code, out, err)

    def file_sha(self, name: str, path: str) -> str | None:
        out = self.sh(name, f"sha256sum {path} 2>/dev/null | cut -d' ' -f1", check=False).stdout.strip()
        return out or None

    def temp_files(self, name: str) -> list[str]:
        """Temp files and upload folders a run may have left (none may be left)."""
        find = (
            "find /srv/mcp /etc/systemd/system /var/lib/mcfleet -maxdepth 2 -name '*.tmp' 2>/dev/null; "
            "find /root /home -maxdepth 2 -name '.mcfleet-upload.*' 2>/dev/null"
        )
        return self.sh(name, find, check=False).stdout.split()

    def manifest(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.sh(name, f"cat {MANIFEST_PATH}").stdout)
        return result


def stop_nodes(lab: Lab, nodes: list[LabNode]) -> None:
    """Shut our nodes down at the end of a test and remove them: their nspawn (SIGTERM, by PID +
    start time, all at once), then their overlay, netns, cgroups and folder.

    Each booted systemd holds ~8 inotify instances and the kernel's default limit is 128 per
    user, so a session that kept every test's nodes running would starve later boots; and each
    node's folder holds 100-200 MB once deployed to, so keeping them all until the session's
    end filled a CI machine's disk.
    """
    from concurrent.futures import ThreadPoolExecutor

    from mcfleet.lab import proc

    def one(node: LabNode) -> None:
        res = next((r for r in lab.state.resources if r.pid == node.main_pid), None)
        if res is not None:
            proc.stop(node.main_pid, res.started, timeout=20)
            shutil.rmtree(f"/run/systemd/nspawn/propagate/{node.netns}", ignore_errors=True)

    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        list(pool.map(one, nodes))

    async def remove_all() -> None:
        for node in nodes:
            await lab.remove_node(node.name)

    asyncio.run(remove_all())


# One login for every node, or one per node (in order; the last one repeats).
Logins = Login | Sequence[Login]


class MakeNodes(Protocol):
    def __call__(self, count: int, prefix: str, *, login: Logins = "root") -> Nodes: ...


# Every way the real fleet logs in: the tests of what changes a node run under each.
LOGINS = ["root", "sudo", "doas"]


@pytest.fixture(name="agent_bundle", scope="session")
def agent_bundle_fixture() -> Path:
    """The real agent bundle (multi-arch PEX) from the bundle builder (cached by its inputs hash)."""
    from mcfleet.bundle.build import build_agent_bundle

    try:
        return build_agent_bundle().path
    except McfleetError as exc:  # a bundle that stops building is a regression, never a skip
        pytest.fail(f"the agent bundle could not be built: {exc.format()}")


# The full nodes a test made, kept on its item so that a failure report can carry their journals.
NODES_KEY = pytest.StashKey[list["Nodes"]]()
# What a failed lab test's report shows of each of its nodes: the units behind the flakes seen so
# far on freshly booted nodes (sshd dropping connections, mcp's user manager not starting), and
# what runs there (a command that hangs).
JOURNAL_SCRIPT = (
    "journalctl -b --no-pager -o short-monotonic -u ssh.service -u systemd-logind.service "
    "-u 'user@*.service' -u 'user-runtime-dir@*.service' | tail -n 60; "
    "systemctl --failed --no-pager --no-legend; uptime; "
    "ps -eo pid,etime,stat,wchan:18,args --sort=start_time | cut -c1-200 | tail -n 25"
)


def node_journals(nodes: list[Nodes]) -> list[tuple[str, str]]:
    """(section title, text) per node: its journal for the units above, read through nsenter."""
    sections = []
    for fleet in nodes:
        for node in fleet.nodes:
            try:
                text = fleet.sh(node.name, JOURNAL_SCRIPT, check=False).stdout
            except Exception as exc:  # a report must never fail on its diagnostics
                text = f"(could not read the journal: {exc})"
            sections.append((f"lab node {node.name}: journal", text))
    return sections


@pytest.fixture(name="make_nodes")
def make_nodes_fixture(lab: Lab, request: pytest.FixtureRequest) -> Iterator[MakeNodes]:
    """`make_nodes(count, prefix)`: fresh full nodes for one test, shut down when it ends."""
    made: list[Nodes] = []
    request.node.stash[NODES_KEY] = made

    def make(count: int, prefix: str, *, login: Logins = "root") -> Nodes:
        made.append(full_nodes(lab, count, prefix, login=login))
        return made[-1]

    yield make
    for fleet in made:
        stop_nodes(lab, fleet.nodes)


def full_nodes(lab: Lab, count: int, prefix: str, *, login: Logins = "root") -> Nodes:
    """`count` fresh full (systemd) nodes and a fleet directory naming only them, reached by `login`
    (one for all, or one per node in order, the last one repeating)."""
    n = next(_COUNTER)
    names = [f"{prefix}{n}x{i}" for i in range(1, count + 1)]
    logins: list[Login] = [login] if isinstance(login, str) else list(login)

    async def boot() -> list[LabNode]:
        return list(
            await asyncio.gather(
                *(lab.add_full_node(name, login=logins[min(i, len(logins) - 1)]) for i, name in enumerate(names))
            )
        )

    try:
        nodes = asyncio.run(boot())
    except ToolMissing as exc:
        pytest.skip(exc.format())
    except McfleetError as exc:
        pytest.fail(
            f'full lab nodes did not boot: {exc.format()}\n("Failed to allocate manager object" usually means the '
            "inotify instances are used up: sysctl fs.inotify.max_user_instances)"
        )
    fleet_dir = lab.write_fleet(lab.run_dir / "fleets" / f"{prefix}{n}", nodes=names)
    return Nodes(lab, fleet_dir, nodes)


def mcfleet_argv() -> list[str]:
    exe = Path(sys.executable).parent / "mcfleet"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mcfleet.cli.main"]


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for e in self._lines() if e.get("type") == "event"]

    @property
    def summary(self) -> dict[str, Any]:
        found = [e for e in self._lines() if e.get("type") == "summary"]
        assert found, f"no summary line in:\n{self.stdout}\n{self.stderr}"
        return found[-1]

    def _lines(self) -> Iterator[dict[str, Any]]:
        for line in self.stdout.splitlines():
            if line.startswith("{"):
                yield json.loads(line)

    @property
    def why(self) -> str:
        """A failed run's story for an assertion message: what failed first, then the output's tails.

        CI keeps only the end of a long assertion message, and the end of apply's output is the
        summary's "an earlier phase did not succeed" lines: the failed events lead here.
        """
        bad = {s.value for s in Status if s.bad}  # the outcomes that make apply exit 1
        try:
            failed = [e for e in self._lines() if e.get("status") in bad]
        except json.JSONDecodeError:
            failed = []
        lead = "\n".join(f"{e.get('host')} {e.get('phase')} {e.get('status')}: {e.get('message')}" for e in failed)
        tails = f"--- stderr:\n{self.stderr[-2000:]}\n--- stdout:\n{self.stdout[-2500:]}"
        return f"exit {self.code}; failed:\n{lead}\n{tails}"

    def phase(self, host: str, phase: str) -> dict[str, Any]:
        result: dict[str, Any] = self.summary["hosts"][host]["phases"][phase]
        return result


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> CliRun:
    import time

    started = time.monotonic()
    done = subprocess.run(
        [*mcfleet_argv(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return CliRun(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def variant(bundle: Path, dest: Path, tag: str) -> Path:
    """The same agent with another content hash (a different zip comment: the code is identical)."""
    shutil.copyfile(bundle, dest)
    with zipfile.ZipFile(dest, "a") as archive:
        archive.comment = f"mcfleet test variant {tag}".encode()
    dest.chmod(0o755)
    return dest


BROKEN_AGENT = "#!/bin/sh\necho 'this agent is broken on purpose' >&2\nexit 1\n"


def broken_bundle(dest: Path) -> Path:
    """A 'bundle' that dies at start, as a bad release would (shaped as a PEX: --bundle takes only those)."""
    from tests.pex_shaped import pex_shaped

    return pex_shaped(dest, BROKEN_AGENT)
