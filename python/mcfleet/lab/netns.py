"""The lab network: one bridge per lab with a private /24, one netns + veth per node.

Several labs may run at once (two pytest-xdist workers, a CLI lab beside a test run), so the
/24 is claimed lock-free: creating the bridge `mcl<n>` is atomic in the kernel, so the lab
that creates it owns 10.77.<n>.0/24; on "File exists" it tries the next <n>.  All names are
derived from <n>, which keeps them unique and within the kernel's 15-character limit.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from mcfleet.errors import LabError
from mcfleet.lab.proc import run, run_status
from mcfleet.lab.state import LabState, Resource

SUBNET_BASE = "10.77"
SLOTS = range(1, 250)


@dataclass(frozen=True)
class LabNet:
    n: int
    bridge: str
    gateway: str  # the host's address on the bridge

    @property
    def cidr(self) -> str:
        return f"{SUBNET_BASE}.{self.n}.0/24"

    def address(self, index: int) -> str:
        """Address of node <index> (0-based): .11, .12, ..."""
        return f"{SUBNET_BASE}.{self.n}.{11 + index}"

    def netns(self, index: int) -> str:
        return f"mcl{self.n}n{index}"

    def veth(self, index: int) -> str:
        return f"mcl{self.n}v{index}"


def _subnet_in_use(n: int, routes: str) -> bool:
    net = ipaddress.ip_network(f"{SUBNET_BASE}.{n}.0/24")
    for line in routes.splitlines():
        dest = line.split()[0] if line.split() else ""
        if "/" in dest:
            try:
                if ipaddress.ip_network(dest, strict=False).overlaps(net):
                    return True
            except ValueError:
                continue
    return False


async def create_network(state: LabState, start: int | None = None) -> LabNet:
    """Claim a free 10.77.<n>.0/24 by creating its bridge; record it in the state file."""
    routes = await run(["ip", "-4", "route", "show", "table", "all"])
    first = start if start is not None else (os.getpid() % len(SLOTS)) + SLOTS.start
    order = [*range(first, SLOTS.stop), *range(SLOTS.start, first)]
    for n in order:
        if _subnet_in_use(n, routes):
            continue
        bridge = f"mcl{n}br"
        code, _, _ = await run_status(["ip", "link", "add", bridge, "type", "bridge"])
        if code != 0:  # taken by another lab (or a leftover): try the next slot
            continue
        state.add(Resource("bridge", bridge))
        net = LabNet(n, bridge, f"{SUBNET_BASE}.{n}.1")
        await run(["ip", "addr", "add", f"{net.gateway}/24", "dev", bridge])
        await run(["ip", "link", "set", bridge, "up"])
        return net
    raise LabError("no free 10.77.<n>.0/24 subnet for the lab bridge", hint="run `mcfleet lab down` on old labs")


async def add_node_netns(state: LabState, net: LabNet, index: int) -> tuple[str, str]:
    """Create the node's netns with eth0 on the lab bridge; return (netns, address)."""
    ns, veth, addr = net.netns(index), net.veth(index), net.address(index)
    # recorded before it exists: a crash right after `ip netns add` must not leak it
    # (safe: the name is derived from our claimed <n>, no other lab uses it)
    state.add(Resource("netns", ns))
    await run(["ip", "netns", "add", ns])
    add_veth = ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns]
    code, _, err = await run_status(add_veth)
    if code != 0:
        if "File exists" in err:
            # The host end of a veth whose netns was just deleted (a lab that went down a moment
            # ago in this slot): the kernel destroys a deleted netns's devices asynchronously, so
            # it can outlive `ip netns del`.  Deleting one end of a veth pair deletes both, at once.
            await run_status(["ip", "link", "del", veth])
        await run(add_veth)  # a second failure raises with the command's own message
    await run(["ip", "link", "set", veth, "master", net.bridge, "up"])
    await run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0"])
    await run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    await run(["ip", "-n", ns, "link", "set", "lo", "up"])
    return ns, addr
