"""Lab fixtures: a real local fleet (netns nodes with sshd, systemd-nspawn nodes) and real peers.

Thin wrappers over `mcfleet.lab.Lab` — the same code as `mcfleet lab up` — so tests exercise
what users run.  All fixtures are session-scoped, once per xdist worker; each worker's lab
claims its own bridge and 10.77.<n>.0/24, so workers never collide.  Not root → skipped.

API (see the dataclasses below for every field):

    lab_fleet                 LabFleet: 3 fast nodes + all peers + a fleet dir `mcfleet validate` accepts
      .fleet_dir              Path of the fleet directory (fleet.json, hosts/<node>/host.json)
      .client_key             Path of the client's ed25519 private key (root login on every node)
      .nodes                  list[LabNode]  (.name .address .ssh_port .netns .host_key .sshd_pid .ns_pid)
      .node(name)             one LabNode, refreshed (sshd_pid changes after stop/start)
      .known_hosts(node)      asyncssh known_hosts object pinning that node's host key
      .exec_in(node, argv)    run argv inside the node's namespaces (nsenter) → CompletedProcess[str]
      .stop_sshd(node) / .start_sshd(node)
      .knot .pebble .caddy .haproxy   peer infos (same objects as the fixtures below)
    knot      KnotInfo: server, port, zone, key_name, key_file (secret file), algorithm, secret(),
              node_server (the lab gateway: knot answers there on :53 for the nodes)
    pebble    PebbleInfo: directory (URL), ca_file (listener CA), root_pem(), intermediate_pem()
    caddy     CaddyInfo: admin_url, server ("edge"), https_port, base_config()
    haproxy   HaproxyInfo: admin_socket, map_file, port (SNI frontend), await admin(cmd)
    registry  RegistryInfo: address (gateway:port), ca_file, images (demo/hello:1 ...), catalog(), tags(repo);
              full nodes booted by this lab trust its CA (/etc/containers/certs.d/<address>/ca.crt)
    podman_node   PodmanNode: node (LabNode), socket/url of its podman API, image "localhost/mcfleet-bb:test"
    full_node     FullNode: node (systemd under nspawn), fleet_dir with just that node  [mark tests `full`]
    arm64_node    skipped unless binfmt qemu-aarch64 is enabled                            [mark tests `arm64`]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mcfleet.errors import McfleetError
from mcfleet.lab.lab import Lab, lab_down
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.peers.caddy import CaddyInfo
from mcfleet.lab.peers.haproxy import HaproxyInfo
from mcfleet.lab.peers.knot import KnotInfo
from mcfleet.lab.peers.pebble import PebbleInfo
from mcfleet.lab.peers.registry import RegistryInfo
from mcfleet.lab.podman import PodmanService

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("lab fixtures need root (network namespaces, mounts, sshd)")


def _or_skip(coro: Coroutine[Any, Any, T]) -> T:
    """A missing program skips the test with the hint (e.g. which apt package to install)."""
    from mcfleet.errors import ToolMissing

    try:
        return _run(coro)
    except ToolMissing as exc:
        pytest.skip(exc.format())


@dataclass
class LabFleet:
    lab: Lab
    fleet_dir: Path
    client_key: Path
    knot: KnotInfo
    pebble: PebbleInfo
    caddy: CaddyInfo
    haproxy: HaproxyInfo
    names: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> list[LabNode]:
        return [self.lab.node(n) for n in self.names]

    def node(self, name: str) -> LabNode:
        return self.lab.node(name)

    def known_hosts(self, node: str | LabNode) -> Any:
        import asyncssh

        n = self.lab.node(node if isinstance(node, str) else node.name)
        return asyncssh.import_known_hosts(f"{n.address} {n.host_key}\n")

    def exec_in(self, node: str | LabNode, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        name = node if isinstance(node, str) else node.name
        code, out, err = _run(self.lab.exec_in(name, argv))
        result = subprocess.CompletedProcess(argv, code, out, err)
        if check and code != 0:
            raise AssertionError(f"{argv} in {name} failed ({code}): {err.strip()}")
        return result

    def stop_sshd(self, node: str | LabNode) -> None:
        _run(self.lab.stop_sshd(node if isinstance(node, str) else node.name))

    def start_sshd(self, node: str | LabNode) -> None:
        _run(self.lab.start_sshd(node if isinstance(node, str) else node.name))


@dataclass(frozen=True)
class PodmanNode:
    node: LabNode
    service: PodmanService

    @property
    def socket(self) -> str:
        return self.service.socket

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def image(self) -> str:
        return self.service.image


@dataclass(frozen=True)
class FullNode:
    node: LabNode
    fleet_dir: Path
    client_key: Path


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The worker's lab (network claimed lazily); torn down — everything it made — at session end."""
    _need_root()
    the_lab = Lab(tmp_path_factory.mktemp("lab"))
    yield the_lab
    _run(lab_down(the_lab))


@pytest.fixture(scope="session")
def knot(lab: Lab) -> KnotInfo:
    return KnotInfo(**_or_skip(lab.start_peer("knot")))


@pytest.fixture(scope="session")
def pebble(lab: Lab, knot: KnotInfo) -> PebbleInfo:
    return PebbleInfo(**_or_skip(lab.start_peer("pebble")))


@pytest.fixture(scope="session")
def caddy(lab: Lab) -> CaddyInfo:
    return CaddyInfo(**_or_skip(lab.start_peer("caddy")))


@pytest.fixture(scope="session")
def haproxy(lab: Lab) -> HaproxyInfo:
    return HaproxyInfo(**_or_skip(lab.start_peer("haproxy")))


@pytest.fixture(scope="session")
def registry(lab: Lab) -> RegistryInfo:
    """The lab's OCI registry with the demo images pushed (docker-registry, TLS from a lab CA)."""
    return RegistryInfo(**_or_skip(lab.start_peer("registry")))


@pytest.fixture(scope="session")
def lab_fleet(lab: Lab, knot: KnotInfo, pebble: PebbleInfo, caddy: CaddyInfo, haproxy: HaproxyInfo) -> LabFleet:
    """Three fast nodes (node1..node3) + all peers + the fleet directory at lab.root."""

    async def three() -> list[LabNode]:
        return list(await asyncio.gather(*(lab.add_fast_node(f"node{i}") for i in (1, 2, 3))))

    try:
        nodes = _or_skip(three())
    except McfleetError as exc:
        pytest.fail(f"lab nodes did not come up: {exc.format()}")
    fleet_dir = lab.write_fleet(nodes=[n.name for n in nodes])
    return LabFleet(lab, fleet_dir, lab.client_key, knot, pebble, caddy, haproxy, [n.name for n in nodes])


@pytest.fixture(scope="session")
def podman_node(lab: Lab, lab_fleet: LabFleet) -> PodmanNode:
    """node1's podman API service (node's own storage, runs in node1's namespaces)."""
    from mcfleet.lab.podman import start_service

    node = lab_fleet.nodes[0]
    if not node.podman:
        pytest.skip("podman or runc is not installed (apt-get install -y podman runc)")
    service = _run(start_service(lab.state, node.name, node.ns_pid, Path(node.dir), node.netns))
    return PodmanNode(node, service)


@pytest.fixture(scope="session")
def full_node(lab: Lab, lab_fleet: LabFleet) -> FullNode:
    """A Debian node with real systemd (systemd-nspawn -b); first use builds the rootfs (~75 s)."""
    node = _or_skip(lab.add_full_node("full1"))
    fleet_dir = lab.write_fleet(lab.run_dir / "fleets" / "full", nodes=[node.name])
    return FullNode(node, fleet_dir, lab.client_key)


@pytest.fixture(scope="session")
def arm64_node(lab: Lab, lab_fleet: LabFleet) -> LabNode:
    """An aarch64 node (chroot sshd under qemu-user in its own netns)."""
    from mcfleet.lab import arm64

    reason = arm64.unavailable_reason()
    if reason:
        pytest.skip(reason)
    return _or_skip(arm64.add_arm64_node(lab))
