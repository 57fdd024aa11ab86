"""`mcfleet exec` on a real sshd: a command that runs past --timeout, or is cut by Ctrl-C, ends on the node
with everything it started (sshd leaves a command without a terminal running when its channel closes), and
a command's own exit and signal are still reported as sshd sees them."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcfleet.cli.commands_ops import Prefixer, run_on
from mcfleet.fleet.load import HostEntry, load_fleet
from mcfleet.transport.ssh import SshPool
from tests.integration import plan_nodes

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def entry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostEntry]:
    reason = plan_nodes.can_run()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("execend")
    nodes, key = plan_nodes.make_nodes(base / "nodes", ["xe1"])
    try:
        nodes[0].start()
        yield load_fleet(plan_nodes.write_fleet(base / "fleet", nodes, key)).hosts["xe1"]
    finally:
        plan_nodes.cleanup(nodes)


def _running(marker: str) -> list[str]:
    """The command lines (this machine's: the loopback node shares its process table) matching `marker`."""
    found = []
    for pid in filter(str.isdecimal, os.listdir("/proc")):
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile
            continue
        if re.search(marker, line):
            found.append(f"{pid} {line}")
    return found


def _started(marker: str, within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while not _running(marker):
        assert time.monotonic() < deadline, f"{marker} did not start on the node"
        time.sleep(0.05)


def _gone(marker: str, within_s: float = 5) -> bool:
    deadline = time.monotonic() + within_s
    while _running(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _running(marker)


def test_a_command_past_its_timeout_is_killed_on_the_node_with_its_children(entry: HostEntry) -> None:
    async def go() -> str | None:
        async with SshPool() as pool:
            result = await run_on(pool, entry, "sleep 7741 & sleep 7742; echo never", Prefixer(["xe1"], quiet=True), 1)
            return result.error

    assert asyncio.run(go()) == "did not finish within 1 s; killed on the node"
    assert _gone("sleep 774[12]"), _running("sleep 774[12]")


def test_a_command_cut_by_ctrl_c_ends_on_the_node(entry: HostEntry) -> None:
    async def go() -> None:
        async with SshPool() as pool:
            task = asyncio.ensure_future(run_on(pool, entry, "sleep 7743", Prefixer(["xe1"], quiet=True), 0))
            await asyncio.to_thread(_started, "sleep 7743")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(go())
    assert _gone("sleep 7743"), _running("sleep 7743")


def test_the_commands_exit_and_signal_are_still_its_own(entry: HostEntry) -> None:
    async def go(line: str) -> tuple[int | None, str | None, list[str]]:
        async with SshPool() as pool:
            r = await run_on(pool, entry, line, Prefixer(["xe1"], quiet=True), 30)
            return r.exit, r.signal, r.stderr

    assert asyncio.run(go("echo oops >&2; exit 3")) == (3, None, ["oops\n"])  # the group id line is not output
    _exit, signal, _err = asyncio.run(go("kill -TERM $$"))
    assert signal == "TERM"
