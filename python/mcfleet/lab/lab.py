"""One lab: its network, nodes and peers, created step by step and undone by `down`.

`mcfleet lab up|status|down` and the pytest fixtures (tests/fixtures_lab.py) both drive this
class, so the tests exercise exactly what a newcomer runs.  Layout of a lab directory:

    <root>/fleet.json, <root>/hosts/<node>/host.json      the fleet directory (validates)
    <root>/.lab/state.json                                every resource made, as it goes
    <root>/.lab/keys/client_ed25519                       the client key (host.json points here)
    <root>/.lab/nodes/<node>/…, <root>/.lab/<peer>/…      runtime files and logs
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mcfleet.errors import LabError, SelectionError
from mcfleet.lab import netns, podman, sshd
from mcfleet.lab.fleetdir import write_fleet_dir
from mcfleet.lab.keys import make_account_key, make_key
from mcfleet.lab.login import Login, login_script
from mcfleet.lab.netns import LabNet
from mcfleet.lab.nodes import LabNode, NodeKind
from mcfleet.lab.peers import start_one
from mcfleet.lab.proc import alive as proc_alive
from mcfleet.lab.proc import installed, require_root, which
from mcfleet.lab.state import LabState, Resource

LAB_ZONE = "svc.mcp.example.test"
SSH_PORT = 22

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Lab:
    def __init__(self, root: Path, *, zone: str = LAB_ZONE, progress: Progress = _quiet) -> None:
        self.root = root.resolve()
        self.run_dir = self.root / ".lab"
        self.zone = zone
        self.progress = progress
        self.state = LabState.load(self.run_dir / "state.json")
        self._locks: dict[int, asyncio.Lock] = {}

    def _net_lock(self) -> asyncio.Lock:
        # One lock per event loop: the fixtures call asyncio.run() once per operation.
        loop = id(asyncio.get_running_loop())
        return self._locks.setdefault(loop, asyncio.Lock())

    # ------------------------------------------------------------------ recorded info

    @property
    def info(self) -> dict[str, Any]:
        return self.state.info

    @property
    def net(self) -> LabNet | None:
        data = self.info.get("network")
        return LabNet(**data) if data else None

    @property
    def nodes(self) -> dict[str, LabNode]:
        return {n: LabNode.from_dict(d) for n, d in self.info.get("nodes", {}).items()}

    @property
    def peers(self) -> dict[str, dict[str, Any]]:
        return dict(self.info.get("peers", {}))

    @property
    def sock_dir(self) -> Path:
        """A short folder for unix sockets (paths over 108 bytes fail; pytest's tmp paths are long)."""
        import hashlib

        short = podman.RUN_BASE / ("s" + hashlib.sha256(str(self.root).encode()).hexdigest()[:10])
        if not short.exists():
            short.mkdir(parents=True, exist_ok=True)
            self.state.add(Resource("dir", str(short)))
        return short

    @property
    def client_key(self) -> Path:
        return self.run_dir / "keys" / "client_ed25519"

    @property
    def account_key(self) -> Path:
        return self.run_dir / "keys" / "acme_account.pem"

    def _record(self, section: str, name: str, data: dict[str, Any]) -> None:
        self.info.setdefault(section, {})[name] = data
        self.state.save()

    # ------------------------------------------------------------------ building

    async def network(self) -> LabNet:
        """The lab's bridge and /24 (claimed once; later calls return the same)."""
        require_root()
        async with self._net_lock():
            if self.net is None:
                which("ip")
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self.info["zone"] = self.zone
                net = await netns.create_network(self.state)
                self.info["network"] = {"n": net.n, "bridge": net.bridge, "gateway": net.gateway}
                self.state.save()
                self.progress(f"network: bridge {net.bridge} {net.cidr}")
            if not self.client_key.exists():
                make_key(self.client_key)
                make_account_key(self.account_key)
            claimed = self.net
            assert claimed is not None
            return claimed

    def reserve_index(self) -> int:
        """The next free node slot (its address is .11 + index)."""
        return self._next_index()

    def record_node(self, node: LabNode) -> None:
        self._record("nodes", node.name, node.as_dict())

    def _next_index(self) -> int:
        index = int(self.info.get("next_index", 0))
        self.info["next_index"] = index + 1
        self.state.save()
        return index

    def _node_name(self, kind: NodeKind) -> str:
        prefix = {"fast": "node", "full": "full", "arm64": "arm"}[kind]
        taken = {n for n in self.nodes}
        i = 1
        while f"{prefix}{i}" in taken or f"{prefix}{i}" in self.info.get("pending", []):
            i += 1
        self.info.setdefault("pending", []).append(f"{prefix}{i}")
        return f"{prefix}{i}"

    async def add_fast_node(self, name: str | None = None, *, with_podman: bool = True) -> LabNode:
        """A netns node with its own sshd, hostname, /srv, /root and copy-on-write /etc."""
        net = await self.network()
        for tool in ("unshare", "nsenter", "sshd"):
            which(tool)
        name = name or self._node_name("fast")
        index = self._next_index()
        node_dir = self.run_dir / "nodes" / name
        node_dir.mkdir(parents=True, exist_ok=True)
        host_key = make_key(node_dir / "ssh_host_ed25519_key")
        (node_dir / "authorized_keys").write_text((self.client_key.with_suffix(".pub")).read_text())
        use_podman = with_podman and installed("podman") and installed("runc")
        if with_podman and not use_podman and not self.info.get("warned_podman"):
            self.info["warned_podman"] = True
            self.progress("podman/runc not installed: nodes run no containers (apt-get install -y podman runc)")
        extra = {}
        if use_podman:
            run_dir = podman.short_run_dir(net.netns(index))
            os.makedirs(run_dir, exist_ok=True)
            self.state.add(Resource("dir", str(run_dir)))
            extra = podman.node_etc_files(node_dir, run_dir)
            os.makedirs("/var/lib/cni", exist_ok=True)  # the holder mounts a per-node tmpfs here
        sshd.prepare_etc(node_dir, name, extra)
        ns, address = await netns.add_node_netns(self.state, net, index)
        sshd.write_config(node_dir, address, SSH_PORT)
        holder = await sshd.start_holder(self.state, ns, name, node_dir)
        assert holder.pid is not None
        sshd_pid = await sshd.start_sshd(
            self.state, name, holder_pid=holder.pid, node_dir=node_dir, address=address, port=SSH_PORT
        )
        if use_podman:
            await podman.import_image(holder.pid, podman.busybox_tar(self.run_dir))
        node = LabNode(name, "fast", index, address, SSH_PORT, ns, host_key, str(node_dir), holder.pid,
                       holder.pid, sshd_pid, podman=use_podman)  # fmt: skip
        self._record("nodes", name, node.as_dict())
        self.progress(f"node {name}: fast, {address}, sshd pid {sshd_pid}")
        return node

    async def add_full_node(self, name: str | None = None, *, login: Login = "root") -> LabNode:
        """A Debian node booted with systemd under systemd-nspawn (rootfs cached).

        `login`: how mcfleet reaches it: as root, or as a non-root user with sudo or doas.
        """
        from dataclasses import replace

        from mcfleet.lab import nspawn, rootfs

        net = await self.network()
        which("systemd-nspawn")
        base = await rootfs.ensure_rootfs(self.progress)
        name = name or self._node_name("full")
        index = self._next_index()
        node_dir = self.run_dir / "nodes" / name
        host_key = make_key(node_dir / "ssh_host_ed25519_key")
        ns, address = await netns.add_node_netns(self.state, net, index)
        node = await nspawn.boot(
            self.state,
            name=name,
            index=index,
            base=base,
            node_dir=node_dir,
            netns=ns,
            address=address,
            host_key=host_key,
            client_key=self.client_key,
        )
        if login != "root":
            code, _, err = await self.exec_in_node(node, ["sh", "-c", login_script(login)])
            if code != 0:
                raise LabError(f"setting up the {login} login on {name} failed: {err.strip()}", location=name)
            node = replace(node, login=login)
        self._record("nodes", name, node.as_dict())
        self.trust_registry(name)
        self.progress(f"node {name}: full (systemd), {address}, nspawn pid {node.main_pid}, login {login}")
        return node

    async def start_peer(self, peer: str) -> dict[str, Any]:
        """Start one peer (knot, pebble, caddy, haproxy) unless it runs already; return its info."""
        if peer in self.peers:
            return self.peers[peer]
        require_root()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # knot also answers on the gateway (the nodes' nameserver in host.json); the registry
        # listens only there (every node reaches it)
        gateway = (await self.network()).gateway if peer in ("knot", "registry") else None
        knot_port = self.peers.get("knot", {}).get("port")
        info = await start_one(peer, self.state, self.run_dir, zone=self.zone, gateway=gateway, knot_port=knot_port,
                               sock_dir=self.sock_dir if peer in ("haproxy", "registry") else None)  # fmt: skip
        self._record("peers", peer, asdict(info))
        self.progress(f"peer {peer}: pid {info.pid}")
        if peer == "registry":
            self.progress(f"registry {info.address}: pushed {', '.join(i.split('/', 1)[1] for i in info.images)}")
            for name, node in self.nodes.items():
                if node.kind == "full":
                    self.trust_registry(name)
        return self.peers[peer]

    async def start_peers(self) -> None:
        await self.start_peer("knot")
        await asyncio.gather(self.start_peer("pebble"), self.start_peer("caddy"), self.start_peer("haproxy"),
                             self.start_peer("registry"))  # fmt: skip

    def trust_registry(self, name: str) -> None:
        """Let podman on a full node pull from the lab registry: its CA in the node's
        /etc/containers/certs.d/<host:port>/ca.crt (written through the node's live root)."""
        registry = self.peers.get("registry")
        node = self.node(name)
        if registry is None or node.kind != "full":
            return
        target = Path(node.dir) / "merged" / "etc/containers/certs.d" / registry["address"] / "ca.crt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(registry["ca_file"]).read_bytes())
        target.chmod(0o644)

    def node(self, name: str) -> LabNode:
        try:
            return self.nodes[name]
        except KeyError:
            # a name the lab never made is a mistyped argument (invalid input, exit 2), not a lab failure
            raise SelectionError(
                f"no lab node named {name!r}",
                location=f"lab {self.root}",
                hint=f"nodes: {', '.join(sorted(self.nodes)) or 'none'}",
            ) from None

    async def exec_in(self, name: str, argv: list[str], *, input_: bytes | None = None) -> tuple[int, str, str]:
        """Run a command inside a node's namespaces (not over SSH); return (code, stdout, stderr)."""
        return await self.exec_in_node(self.node(name), argv, input_=input_)

    @staticmethod
    async def exec_in_node(node: LabNode, argv: list[str], *, input_: bytes | None = None) -> tuple[int, str, str]:
        from mcfleet.lab.proc import run_status

        return await run_status([*node.nsenter(), *argv], input_=input_)

    async def reboot(self, name: str, *, within_s: float = 90.0) -> float:
        """Reboot a full node (`systemctl reboot` inside) and wait until it is back: a new init, sshd
        answering.  Returns the seconds it took."""
        node = self.node(name)
        if node.kind != "full":
            full = ", ".join(n for n, x in sorted(self.nodes.items()) if x.kind == "full") or "none"
            raise LabError(f"{name} is a {node.kind} node: only full nodes (systemd under nspawn) reboot",
                           hint=f"full nodes: {full}")  # fmt: skip
        from mcfleet.lab.nspawn import container_init

        began = time.monotonic()
        before = container_init(node.main_pid)
        if before is None:
            raise LabError(f"{name} is not running", hint="see `mcfleet lab status`")
        await self.exec_in(name, ["systemctl", "reboot"])  # it may end before it can answer: its code says nothing
        deadline = began + within_s
        while (now := container_init(node.main_pid)) in (None, before):
            if time.monotonic() >= deadline or not proc_alive(node.main_pid):
                raise LabError(f"{name} did not come back from its reboot within {within_s:g} s",
                               location=f"{node.dir}/nspawn.log", hint="see the node's nspawn.log")  # fmt: skip
            await asyncio.sleep(0.1)
        left = max(1.0, deadline - time.monotonic())
        await sshd.wait_port(node.address, node.ssh_port, limit_s=left, what=f"sshd of {name} after its reboot")
        self.progress(f"node {name}: rebooted (init {before} -> {now})")
        return time.monotonic() - began

    async def remove_node(self, name: str) -> list[str]:
        """Stop one node, undo its netns, mounts and cgroups, and delete its folder."""
        from mcfleet.lab.teardown import remove_node

        removed = await remove_node(self.state, name)
        if removed:
            self.progress(f"node {name}: removed")
        return removed

    async def stop_sshd(self, name: str) -> None:
        """Make a node unreachable over SSH (its files and other processes stay)."""
        node = self.node(name)
        if node.kind == "arm64":
            raise LabError("stop_sshd is not supported on the arm64 node (sshd is its PID 1)")
        if node.kind == "full":
            await self.exec_in(name, ["systemctl", "stop", "ssh.socket", "ssh.service"])
            return
        if node.sshd_pid is not None:
            res = next((r for r in self.state.resources if r.pid == node.sshd_pid), None)
            from mcfleet.lab.proc import stop

            stop(node.sshd_pid, res.started if res else None)
            if res is not None:
                self.state.drop(res)
        self._record("nodes", name, {**node.as_dict(), "sshd_pid": None})

    async def start_sshd(self, name: str) -> None:
        """Start a node's sshd again (same host key, same address)."""
        node = self.node(name)
        if node.kind == "full":
            await self.exec_in(name, ["systemctl", "start", "ssh.service"])
            await sshd.wait_port(node.address, node.ssh_port, limit_s=15, what=f"sshd of {name}")
            return
        if node.sshd_pid is not None and proc_alive(node.sshd_pid):
            return
        pid = await sshd.start_sshd(
            self.state, name, holder_pid=node.ns_pid, node_dir=Path(node.dir), address=node.address, port=node.ssh_port
        )
        self._record("nodes", name, {**node.as_dict(), "sshd_pid": pid})

    def write_fleet(self, dest: Path | None = None, nodes: list[str] | None = None, *, services: bool = False) -> Path:
        """Write the fleet directory (default: the lab root) for the given nodes (default: all);
        with `services`, the full nodes get the demo services from the lab registry."""
        net = self.net
        chosen = [n for name, n in sorted(self.nodes.items(), key=lambda kv: kv[1].index)
                  if nodes is None or name in nodes]  # fmt: skip
        full = [n for n in chosen if n.kind == "full"]
        return write_fleet_dir(
            dest or self.root,
            zone=self.zone,
            nodes=chosen,
            peers=self.peers,
            client_key=self.client_key,
            account_key=self.account_key if self.account_key.exists() else None,
            nameserver=net.gateway if net else "127.0.0.1",
            services=services,
            node_proxies=bool(full) and all(self._proxies_running(n.name) for n in full),
        )

    def _proxies_running(self, node: str) -> bool:
        """HAProxy and Caddy run inside that node (lab/peers/nodeproxy.py)."""
        names = {f"caddy@{node}", f"haproxy@{node}"}
        found = [r for r in self.state.resources if r.kind == "process" and r.name in names]
        return len(found) == len(names) and all(r.pid and proc_alive(r.pid, r.started) for r in found)

    async def up(
        self,
        *,
        fast: int = 3,
        full: int = 0,
        arm64: bool = False,
        peers: bool = True,
        login: Sequence[Login] = ("root",),
    ) -> None:
        """Everything `mcfleet lab up` brings: network, nodes, peers, fleet directory.

        `login`: how each full node is reached, in order (the last one repeats); fast nodes are
        always reached as root."""
        await self.network()
        if peers:
            await self.start_peers()
        # fast nodes in parallel; full nodes after (they may first need debootstrap)
        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels the sibling nodes
                for _ in range(fast):
                    group.create_task(self.add_fast_node())
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the first error, as it was raised
        for i in range(full):
            await self.add_full_node(login=login[min(i, len(login) - 1)] if login else "root")
        if arm64:
            from mcfleet.lab import arm64 as arm

            await arm.add_arm64_node(self, self._node_name("arm64"))
        if "registry" in self.peers:  # the demo services on the full nodes get their routes there
            from mcfleet.lab.peers.nodeproxy import start_node_proxies

            full_nodes = [n for n in self.nodes.values() if n.kind == "full"]
            await asyncio.gather(*(start_node_proxies(self.state, self.run_dir, n) for n in full_nodes))
        self.write_fleet(services=True)  # with a registry and full nodes: the demo services on them


async def lab_down(lab: Lab) -> list[str]:
    from mcfleet.lab.teardown import down

    return await down(lab.state)
