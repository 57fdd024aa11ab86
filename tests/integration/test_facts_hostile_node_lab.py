"""A node that floods, tried for real on lab nodes: /etc/resolv.conf of 300 MB, or linked
to /dev/zero, fails only that host with a reason naming the file; the healthy host is
still planned; the operator's memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_script
from tests.integration.apply_lab import mcfleet_argv

launch = load_script("bench/plan/launch.py", "bench_plan_launch")

pytestmark = pytest.mark.lab

FLOOD_NODES = ["floodn1", "floodn2"]


def measured_cli(*args: str, timeout: float = 600) -> tuple[int, str, str, int, float]:
    """Run the CLI; return (code, stdout, stderr, its own peak RSS in MiB, seconds).

    Started through bench/plan/launch.py (~8 MB): a child started straight from this test process
    would begin its peak-RSS count at this process's size, and getrusage(RUSAGE_CHILDREN) holds
    the largest of every child this worker ever waited for.
    """
    seconds, _cpu, rss_kib, code, stdout, stderr = launch.captured([*mcfleet_argv(), *args], timeout=timeout)
    return code, stdout, stderr, rss_kib // 1024, seconds


@pytest.fixture(scope="module")
def flood_lab(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    async def up() -> None:
        await asyncio.gather(*(lab.add_fast_node(n, with_podman=False) for n in FLOOD_NODES))

    asyncio.run(up())
    yield lab, lab.write_fleet(tmp_path_factory.mktemp("floodlab") / "fleet", nodes=FLOOD_NODES)


def node_sh(lab: Any, node: str, script: str) -> None:
    code, _out, err = asyncio.run(lab.exec_in(node, ["sh", "-c", script]))
    assert code == 0, f"{script!r} on {node}: {err}"


@pytest.mark.parametrize(
    ("flood", "what"),
    [
        ("truncate -s 300M /etc/resolv.conf", "a 300 MB /etc/resolv.conf"),
        ("rm -f /etc/resolv.conf && ln -s /dev/zero /etc/resolv.conf", "/etc/resolv.conf linked to /dev/zero"),
    ],
)
def test_a_flooding_file_fails_only_its_host_with_the_file_named(
    flood_lab: tuple[Any, Path], flood: str, what: str
) -> None:
    lab, root = flood_lab
    node_sh(lab, "floodn1", f"cp -P /etc/resolv.conf /root/resolv.keep && {{ {flood}; }}")
    try:
        code, out, err, rss_mib, seconds = measured_cli("plan", str(root), "--json")
    finally:
        node_sh(lab, "floodn1", "rm -f /etc/resolv.conf && cp -P /root/resolv.keep /etc/resolv.conf")
    print(f"{what}: plan exit {code}, peak RSS {rss_mib} MiB, {seconds:.1f} s")
    assert "Traceback" not in out + err and "internal error" not in out + err, err
    data = json.loads(out)
    assert set(data["unreachable"]) == {"floodn1"}, data["unreachable"]
    reason = json.dumps(data["unreachable"]["floodn1"])
    assert "'resolv' is larger than 1024 KiB" in reason and "/etc/resolv.conf" in reason, reason
    assert "user mcp" in [a["subject"] for a in data["actions"] if a["host"] == "floodn2"]  # still planned
    # a plan of two hosts peaks at ~60 MiB; each stream's 16 MiB read cap, decoded too, stays well below 160
    assert rss_mib < 160, f"{what}: the operator's machine peaked at {rss_mib} MiB"


@pytest.mark.parametrize(
    ("setup", "undo", "says"),
    [
        (
            "groupadd -g 850 mcp && useradd -u 850 -g 850 mcp && useradd -o -u 850 -g 850 shadowmcp",
            "userdel shadowmcp; userdel mcp; groupdel mcp 2>/dev/null; true",
            "UID 850 pinned for user mcp on floodn2 is also held by account shadowmcp",
        ),
        (
            "groupadd -g 850 docker2 && useradd -u 850 -g 850 -N mcp",
            "userdel mcp; groupdel docker2 2>/dev/null; true",
            "GID 850 pinned for user mcp on floodn2 is held by group docker2",
        ),
    ],
)
def test_a_second_holder_of_a_pinned_id_is_a_refusal(
    flood_lab: tuple[Any, Path], setup: str, undo: str, says: str
) -> None:
    lab, root = flood_lab
    node_sh(lab, "floodn2", setup)
    try:
        code, out, err, _rss, _s = measured_cli("plan", str(root), "--on", "floodn2", "--json")
    finally:
        node_sh(lab, "floodn2", undo)
    assert code == 1, out + err
    refusals = [a for a in json.loads(out)["actions"] if a["kind"] == "refuse" and a["subject"] == "user mcp"]
    assert len(refusals) == 1 and says in refusals[0]["reason"], refusals


def test_the_transport_stops_reading_a_flooding_command(flood_lab: tuple[Any, Path]) -> None:
    """Client side: whatever a node's shell prints, the SSH transport reads at most its cap."""
    from mcfleet.fleet.load import load_fleet
    from mcfleet.transport.base import OutputTooLarge
    from mcfleet.transport.ssh import SshPool

    _lab, root = flood_lab
    entry = load_fleet(root).hosts["floodn1"]

    async def flood() -> str:
        async with SshPool() as pool:
            conn = await pool.connect(entry)
            with pytest.raises(OutputTooLarge, match="printed more than 1024 KiB") as info:
                await conn.run("cat /dev/zero", timeout=120, max_output=1024 * 1024)
            # stderr too, and a first line that never ends (the group id line comes before it)
            with pytest.raises(OutputTooLarge, match=r"\(stderr\) printed more than 1024 KiB"):
                await conn.run("cat /dev/zero >&2", timeout=120, max_output=1024 * 1024)
            after = await conn.run("echo still-connected; printf 'warn\\n\\377' >&2", timeout=60)  # it survives
            assert after.stderr == "warn\n\ufffd", after.stderr  # the group id line taken off, nothing else
            return f"{info.value.location} {after.stdout.strip()}"

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert asyncio.run(flood()) == "floodn1 still-connected"
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
    print(f"cat /dev/zero over SSH with a 1 MiB cap: this process grew {grown_mib} MiB")
    assert grown_mib < 64
